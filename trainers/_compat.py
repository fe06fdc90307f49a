"""Every import of TRL internals, and every assumption about them, in one place.

trl-plus subclasses TRL's public trainers but also leans on a few private helpers and on the order of work in
`DPOTrainer.__init__`. When a TRL release moves them, this file is the one to fix; the TRL version these were
written against is `TESTED_TRL`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import (
    DPOConfig,
    DPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    KTOConfig,
    KTOTrainer,
    RewardConfig,
    RewardTrainer,
    unpair_preference_dataset,
)
from trl.data_utils import is_conversational
from trl.kernels.chunked_logprob import _use_triton
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer import dpo_trainer as _dpo_module
from trl.trainer import kto_trainer as _kto_module
from trl.trainer import reward_trainer as _reward_module
from trl.trainer.dpo_trainer import DataCollatorForPreference, _tokenize, common_prefix_length
from trl.trainer.utils import FusedCausalLMOutput, add_fused_lm_head, pad, use_adapter

TESTED_TRL = "1.16"

__all__ = [
    "DPOConfig",
    "DPOTrainer",
    "DataCollatorForPreference",
    "FusedCausalLMOutput",
    "GRPOConfig",
    "GRPOTrainer",
    "KTOConfig",
    "KTOTrainer",
    "RewardCollator",
    "RewardConfig",
    "RewardTrainer",
    "add_fused_lm_head",
    "backbone_of_causal_lm",
    "common_prefix_length",
    "disable_gradient_checkpointing",
    "dpo_init_without",
    "is_conversational",
    "is_peft_model",
    "pad",
    "quiet_kto_weight_warning",
    "release_checkpoint_mapping",
    "release_trainer_checkpoints",
    "reward_init_with",
    "tokenize",
    "tokenize_prompt_completions",
    "triton_runs_on",
    "unpair_preference_dataset",
    "use_adapter",
]


tokenize = _tokenize


def tokenize_prompt_completions(
    processing_class: Any, prompt: Any, completions: list[Any], eos_token: str | None
) -> tuple[list[int], list[list[int]]]:
    """(prompt ids, prompt + completion ids for each completion), tokenised as TRL's trainers tokenise pairs: chat
    messages through the chat template (the prompt with the generation prompt), plain completions with the eos
    appended when missing. Where the completion starts is `common_prefix_length(prompt ids, full ids)`: a
    completion can merge with the prompt's last token."""
    if is_conversational({"prompt": prompt}):
        prompt_ids = tokenize(processing_class, prompt, add_generation_prompt=True)["input_ids"]
        return prompt_ids, [tokenize(processing_class, prompt + c)["input_ids"] for c in completions]
    eos = eos_token or ""
    texts = [c if c.endswith(eos) else c + eos for c in completions]
    prompt_ids = tokenize(processing_class, prompt)["input_ids"]
    return prompt_ids, [tokenize(processing_class, prompt + text)["input_ids"] for text in texts]


# The reward trainer's own pairwise collator (chosen rows, then rejected rows, and the optional margins).
RewardCollator = _reward_module.DataCollatorForPreference


def triton_runs_on(device: torch.device) -> bool:
    """Whether TRL's fused LM head runs its Triton kernels (rather than the torch fallback) on `device`."""
    return bool(_use_triton(device))


@contextlib.contextmanager
def dpo_init_without(args: DPOConfig, *, reference_model: bool, policy_from_path: bool) -> Iterator[None]:
    """Run `DPOTrainer.__init__` without the parts that do not apply to registry losses.

    - Always: hide `args.loss_type` during init. TRL validates its own loss names against its own
      hyperparameters there (e.g. `robust` needs `label_smoothing` in [0, 0.5)); the registry validates ours.
    - `reference_model=False`: the reference-free losses never load a reference. `DPOTrainer.__init__` builds it
      with `create_model_from_path` right after the policy (which the same function loads when `model` is a path),
      so every call past the policy's returns None, and the trainer sees no reference model.
    """
    saved_loss_type = args.loss_type
    original = _dpo_module.create_model_from_path
    calls = {"n": 0}

    def create_model_from_path(*a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1 and policy_from_path:
            return original(*a, **kw)
        return None

    args.loss_type = ["sigmoid"]
    if not reference_model:
        _dpo_module.create_model_from_path = create_model_from_path
    try:
        yield
    finally:
        args.loss_type = saved_loss_type
        _dpo_module.create_model_from_path = original


@contextlib.contextmanager
def quiet_kto_weight_warning() -> Iterator[None]:
    """Silence `KTOTrainer._prepare_dataset`'s class-weight advice, which reads the config's weights rather than
    each loss's; `UnpairedPreferenceTrainer` gives its own, per loss."""

    def keep(record: logging.LogRecord) -> bool:
        return "don't seem to be in an ideal range" not in record.getMessage()

    logger = logging.getLogger(_kto_module.__name__)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


@contextlib.contextmanager
def reward_init_with(args: RewardConfig, model: Any) -> Iterator[None]:
    """Run `RewardTrainer.__init__` on a `RewardModel` that trl-plus has already built (backbone, head, PEFT).

    - `model_init_kwargs` were used to load the backbone; hidden, so TRL does not warn that they are ignored.
    - TRL requires `config.num_labels == 1` of an instantiated model (a sequence-classification head with one
      output). A RewardModel's outputs come from its head, so the backbone's config passes the check for the
      duration of init and keeps its own labels afterwards.
    """
    saved_kwargs = args.model_init_kwargs
    config = model.config
    saved_labels = (config.id2label, config.label2id)
    args.model_init_kwargs = None
    config.num_labels = 1
    try:
        yield
    finally:
        args.model_init_kwargs = saved_kwargs
        config.id2label, config.label2id = saved_labels


@contextlib.contextmanager
def backbone_of_causal_lm(name: str, load_kwargs: dict[str, Any]) -> Iterator[None]:
    """Load `AutoModel` from a causal-LM or sequence-classification checkpoint without transformers' report that
    `lm_head.*` or `score.*` went unused: a reward model keeps the backbone and drops the LM head on purpose (as TRL's
    RewardTrainer does for its sequence-classification head), and reads its own head's weights from its own file."""
    from transformers import AutoConfig, AutoModel

    try:
        # trust_remote_code passed on, so a custom architecture is not asked about interactively a second time.
        config = AutoConfig.from_pretrained(
            name, revision=load_kwargs.get("revision"), trust_remote_code=load_kwargs.get("trust_remote_code", False)
        )
        model_class: Any = AutoModel._model_mapping[type(config)]
    except (OSError, KeyError, ValueError):  # let from_pretrained raise its own error
        yield
        return
    saved = model_class.__dict__.get("_keys_to_ignore_on_load_unexpected")
    model_class._keys_to_ignore_on_load_unexpected = [*(saved or []), r"^lm_head\.", r"^score\."]
    try:
        yield
    finally:
        if saved is None:
            del model_class._keys_to_ignore_on_load_unexpected
        else:
            model_class._keys_to_ignore_on_load_unexpected = saved


def release_checkpoint_mapping(model: Any) -> None:
    """Copy a quantized model's floating-point weights (embeddings, norms, LM head) out of the checkpoint file.

    transformers memory-maps the safetensors file and leaves the weights it does not quantize as views of that
    mapping, which keeps the whole file mapped, including the full-precision source of every quantized layer, read
    once to quantize it: on a small model that is most of the resident memory the 4-bit loading was meant to save.
    A private copy of the few unquantized weights lets the mapping close. Full-precision models are left alone (their
    weights are the mapping, so a copy would save nothing); tied weights stay tied (one Parameter, copied once)."""
    if getattr(model, "hf_quantizer", None) is None:  # a PEFT model passes the attribute on from its base
        return
    for param in model.parameters():  # each Parameter once, so tied weights get one copy
        if param.dtype.is_floating_point:  # 4-bit and 8-bit weights are stored as integers
            param.data = param.data.clone()


def release_trainer_checkpoints(trainer: Any) -> None:
    """`release_checkpoint_mapping` for the policy and, where there is one, the separate reference of a trainer."""
    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            release_checkpoint_mapping(trainer.accelerator.unwrap_model(model))
