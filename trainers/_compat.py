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
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, unpair_preference_dataset
from trl.data_utils import is_conversational
from trl.kernels.chunked_logprob import _use_triton
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer import dpo_trainer as _dpo_module
from trl.trainer import kto_trainer as _kto_module
from trl.trainer.dpo_trainer import DataCollatorForPreference, _tokenize, common_prefix_length
from trl.trainer.utils import FusedCausalLMOutput, add_fused_lm_head, pad, use_adapter

TESTED_TRL = "1.16"

__all__ = [
    "DPOConfig",
    "DPOTrainer",
    "DataCollatorForPreference",
    "FusedCausalLMOutput",
    "KTOConfig",
    "KTOTrainer",
    "add_fused_lm_head",
    "common_prefix_length",
    "disable_gradient_checkpointing",
    "dpo_init_without",
    "is_conversational",
    "is_peft_model",
    "pad",
    "quiet_kto_weight_warning",
    "tokenize",
    "triton_runs_on",
    "unpair_preference_dataset",
    "use_adapter",
]


tokenize = _tokenize


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
