"""`PreferenceTrainer`: TRL's `DPOTrainer` with its loss taken from the registry.

Everything up to the per-sequence log-probs is TRL's: dataset preparation, the collator, reference handling
(separate model, PEFT adapters disabled, or precomputed), PEFT/4-bit loading, accelerate. Two things are added:
the step from log-probs to the loss goes through `trl_plus.registry` (any number of weighted losses), and the
log-probs themselves come from the path that suits the device (`logprob_path`, see `trl_plus.trainers.logprobs`).

Ranked datasets (a prompt and K ≥ 2 completions, best first, column `completions`) train listwise losses such as
`plackett_luce` directly. Pairwise losses on a ranked dataset see every ordered pair (i better than j, i < j) from
one forward pass over the K completions (`ranked_pairs="all"`), or only neighbours in the ranking
(`ranked_pairs="adjacent"`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from datasets import Dataset, IterableDataset

from trl_plus.registry import LossSpec, get_loss
from trl_plus.trainers import _compat
from trl_plus.trainers._guard import FiniteGuardMixin, NonFiniteFields, check_win_probs
from trl_plus.trainers._state import LossStateMixin
from trl_plus.trainers.logprobs import LOGPROB_PATHS, add_chunked_lm_head, logits_token_logps, resolve_logprob_path
from trl_plus.types import LossOutput, PairedLogps, RankedLogps

# DPOConfig values that become a loss's hyperparameter of the same meaning when the loss takes it.
_CONFIG_HYPERPARAMETERS = {"beta": "beta", "label_smoothing": "label_smoothing", "discopop_tau": "tau"}
_TRL_DEFAULT_LOSS_TYPE = ["sigmoid"]
ConfigT = TypeVar("ConfigT")
_NON_MODEL_KEYS = {
    "completion_mask",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "chosen_win_probs",
    "rejected_win_probs",
    "rank_index",
}


@dataclass
class PreferenceConfig(NonFiniteFields, _compat.DPOConfig):
    """`DPOConfig` plus the registry: which losses, how they are weighted, their hyperparameters, the log-prob path.

    `loss_type` (TRL's field) still works: its names are aliases of registry losses. `beta` and `label_smoothing`
    default to None, meaning "each loss's own default" (TRL's value where TRL has the loss, the paper's
    otherwise); set them to apply one value to every loss that takes it. `loss_kwargs` wins over both.
    """

    loss: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Registry name(s) of the loss(es) to train with, e.g. `simpo` or `dpo,sft` (see "
            "`trl-plus losses`). Defaults to `loss_type`, whose TRL names are aliases."
        },
    )
    loss_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": 'Hyperparameters per loss, keyed by loss name, e.g. `{"simpo": {"gamma": 0.3}}`. With a single '
            'loss the inner dict may be given directly, e.g. `{"gamma": 0.3}`.'
        },
    )
    beta: float | None = field(  # type: ignore[assignment]
        default=None,
        metadata={"help": "β for every loss that takes one. None: each loss's default (0.1 for DPO, 2.0 for SimPO)."},
    )
    # TRL's default is ["sigmoid"]; None here tells "not set" from "set to sigmoid", so that `loss_type="sigmoid"`
    # next to `loss="simpo"` is an error rather than silently ignored. After __post_init__ it equals `loss`.
    loss_type: list[str] | None = field(  # type: ignore[assignment]
        default=None,
        metadata={
            "help": "TRL's name for `loss` (its names are registry aliases); set one of the two. Default sigmoid."
        },
    )
    label_smoothing: float | None = field(  # type: ignore[assignment]
        default=None,
        metadata={"help": "Label smoothing ε in [0, 0.5) for every loss that takes one. None: each loss's default."},
    )
    logprob_path: str = field(
        default="auto",
        metadata={
            "help": "How per-token log-probs are computed: `fused` (TRL's fused LM head, Triton on CUDA), `chunked` "
            "(token tiles, logits never materialised, recomputed in backward), `logits` (full logits) or `auto` "
            "(fused where Triton runs, chunked elsewhere).",
            "choices": list(LOGPROB_PATHS),
        },
    )
    logprob_chunk_size: int | None = field(
        default=None,
        metadata={"help": "Tokens per tile on the chunked path. None: about 16M logits per tile."},
    )
    ranked_pairs: str = field(
        default="all",
        metadata={
            "help": "Pairs a pairwise loss sees on a ranked dataset: `all` ordered pairs or `adjacent` ones.",
            "choices": ["all", "adjacent"],
        },
    )

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [*_compat.DPOConfig._VALID_DICT_FIELDS, "loss_kwargs"]

    def __post_init__(self) -> None:
        self.loss = loss_names(self.loss, self.loss_type, _TRL_DEFAULT_LOSS_TYPE, default_is_unset=False)
        if isinstance(self.loss_kwargs, str):
            self.loss_kwargs = json.loads(self.loss_kwargs) if self.loss_kwargs.strip() else None
        specs = [get_loss(name) for name in self.loss]  # unknown names raise here, with suggestions
        for spec in specs:
            if spec.input_kind == "unpaired":
                raise ValueError(
                    f"The loss {spec.name!r} takes unpaired (thumbs-up/down) data; PreferenceTrainer trains on pairs "
                    "or ranked lists. Use UnpairedPreferenceTrainer for it."
                )
        if self.beta is not None and not self.beta > 0:
            raise ValueError(f"`beta` must be > 0, got {self.beta}.")
        if self.label_smoothing is not None and not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"`label_smoothing` must lie in [0, 0.5), got {self.label_smoothing}.")
        if self.logprob_path not in LOGPROB_PATHS:
            raise ValueError(f"`logprob_path` must be one of {list(LOGPROB_PATHS)}, got {self.logprob_path!r}.")
        if self.logprob_chunk_size is not None and self.logprob_chunk_size < 1:
            raise ValueError(f"`logprob_chunk_size` must be a positive token count, got {self.logprob_chunk_size}.")
        if self.ranked_pairs not in ("all", "adjacent"):
            raise ValueError(f"`ranked_pairs` must be 'all' or 'adjacent', got {self.ranked_pairs!r}.")
        _reject_unsupported(self)
        # Mirror the registry names into TRL's field, so DPOConfig's checks (loss_weights length) and saved configs
        # describe what actually trains.
        self.loss_type = list(self.loss)
        super().__post_init__()
        self.loss_kwargs = resolve_loss_kwargs(self, specs, _CONFIG_HYPERPARAMETERS)


def from_trl_config(target: type[ConfigT], base: type, args: Any) -> ConfigT:
    """The same settings as a TRL config (`DPOConfig`, `KTOConfig`), so a TRL script's config is drop-in."""
    return target(**{f.name: getattr(args, f.name) for f in dataclasses.fields(base) if f.init})


def loss_names(
    loss: list[str] | str | None,
    loss_type: list[str] | str | None,
    trl_default: list[str],
    *,
    default_is_unset: bool = True,
) -> list[str]:
    """`loss` as a list of names ("a,b" splits), or TRL's `loss_type` when unset; the two may not disagree.

    `loss_type` None is unset; so is a value equal to `trl_default` when the config cannot tell it from the default
    (`default_is_unset`)."""
    given = None if loss_type is None else [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if loss is None:
        return trl_default if given is None else given
    names = [name.strip() for name in loss.split(",")] if isinstance(loss, str) else list(loss)
    if not names or not all(names):
        raise ValueError(f"`loss` must name at least one registered loss, got {loss!r}.")
    unset = given is None or (default_is_unset and given == trl_default)
    if not unset and [get_loss(n).name for n in given] != [get_loss(n).name for n in names]:
        raise ValueError(f"Both `loss={names}` and `loss_type={loss_type}` are set and disagree; set only `loss`.")
    return names


# The losses whose preference signal is the log-ratio, which an f-divergence replaces by f'(π/π_ref) (TRL's list), and
# `sft`, which ignores the reference and trains on the untransformed log-probs.
F_DIVERGENCE_LOSSES = {"dpo", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft"}
F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


def _reject_unsupported(config: PreferenceConfig) -> None:
    """DPOConfig features that change how log-probs become scores: checked here, applied by `sequence_logps` and
    `f_divergence_scores`; WPO's weights are the one refusal."""
    kind = config.f_divergence_type
    if kind not in F_DIVERGENCES:
        raise ValueError(f"`f_divergence_type` must be one of {F_DIVERGENCES}, got {kind!r}.")
    names = {get_loss(name).name for name in config.loss}
    if kind != "reverse_kl" and not names <= F_DIVERGENCE_LOSSES:
        raise ValueError(
            f"`f_divergence_type={kind!r}` replaces the log-ratio of {sorted(F_DIVERGENCE_LOSSES - {'sft'})} "
            f"(and leaves `sft` as is); {sorted(names - F_DIVERGENCE_LOSSES)} use the log-probs otherwise."
        )
    if config.use_weighting:
        raise ValueError(
            "`use_weighting=True` (WPO) weighs each pair by the policy's probability of it, normalised over the "
            "whole vocabulary at every token: full logits, which PreferenceTrainer's chunked and fused log-prob paths "
            "never build. Use TRL's DPOTrainer for WPO."
        )
    if config.ld_alpha is not None and not 0.0 <= config.ld_alpha <= 1.0:
        raise ValueError(f"`ld_alpha` must lie in [0, 1], got {config.ld_alpha}.")


def sequence_logps(per_token: torch.Tensor, mask: torch.Tensor, ld_alpha: float | None = None) -> torch.Tensor:
    """Per-sequence log-probs [N] from per-token ones [N, T] (zero outside the completion, `mask` 1 inside).

    The sum; with `ld_alpha` (LD-DPO, arXiv:2409.06411) the rows are pairs (chosen rows, then rejected rows) and
    the tokens beyond the shorter completion of each pair count `ld_alpha` times, so a longer answer's extra
    tokens move the score less.
    """
    if ld_alpha is None:
        return per_token.sum(dim=1)
    position = mask.cumsum(dim=1)
    chosen_len, rejected_len = mask.sum(dim=1).chunk(2)
    shared = torch.minimum(chosen_len, rejected_len).repeat(2)
    weights = torch.where(position <= shared[:, None], 1.0, ld_alpha).to(per_token.dtype)
    return (per_token * weights * mask).sum(dim=1)


def f_divergence_scores(logratios: torch.Tensor, kind: str, alpha: float = 1.0) -> torch.Tensor:
    """f'(π/π_ref) of log-ratios for f-DPO (arXiv:2309.16240): the log-ratio itself under the reverse KL,
    1 − π_ref/π under the forward KL, log 2 + log σ(log-ratio) under Jensen-Shannon, and
    ((π/π_ref)^(α−1) − 1)/(α − 1) under the α-divergence (the reverse KL at α = 1)."""
    if kind == "reverse_kl" or (kind == "alpha_divergence" and abs(alpha - 1.0) < 1e-6):
        return logratios
    if kind == "forward_kl":
        return 1 - torch.exp(-logratios)
    if kind == "js_divergence":
        return math.log(2) + torch.nn.functional.logsigmoid(logratios)
    if kind == "alpha_divergence":
        # exp clamped as TRL does, so the scores stay finite in half precision too
        limit = {torch.float16: 11.0, torch.bfloat16: 80.0}.get(logratios.dtype, 80.0)
        scaled = torch.clamp(((alpha - 1.0) * logratios).float(), max=limit)
        return ((torch.exp(scaled) - 1.0) / (alpha - 1.0)).to(logratios.dtype)
    raise ValueError(f"Unknown f-divergence {kind!r}; choose one of {F_DIVERGENCES}.")


def resolve_loss_kwargs(
    config: Any, specs: Sequence[LossSpec], config_hyperparameters: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per-loss hyperparameters: config-wide values (`config_hyperparameters` maps config field → hyperparameter
    name), then `config.loss_kwargs`, keyed by loss name or, with one loss, given flat.

    Every name is checked against the loss's signature here, before any model is loaded.
    """
    given: dict[str, Any] = dict(config.loss_kwargs or {})
    names = [spec.name for spec in specs]
    keyed_by_loss = bool(given) and all(
        isinstance(value, dict) and key in {*names, *(a for s in specs for a in s.aliases)}
        for key, value in given.items()
    )
    if given and not keyed_by_loss:
        if len(specs) > 1:
            raise ValueError(
                f"With several losses ({names}), `loss_kwargs` must be keyed by loss name, e.g. "
                f'{{"{names[0]}": {{...}}}}; got keys {sorted(given)}.'
            )
        given = {names[0]: given}
    per_loss = {get_loss(key).name: value for key, value in given.items()}
    resolved: dict[str, dict[str, Any]] = {}
    for spec in specs:
        takes = {hp.name for hp in spec.hyperparameters}
        kwargs: dict[str, Any] = {}
        for config_name, hp_name in config_hyperparameters.items():
            value = getattr(config, config_name, None)
            # None means "the loss's own default". discopop_tau has a non-None DPOConfig default equal to the
            # loss's own; passing it is harmless.
            if hp_name in takes and value is not None:
                kwargs[hp_name] = value
        user_given = per_loss.get(spec.name, {})
        clash = sorted(set(spec.state_provides) & set(user_given))
        if clash:
            raise ValueError(
                f"The loss {spec.name!r} gets {clash} from its running state during training; do not set it in "
                "`loss_kwargs`. Call the loss function directly to use a fixed value."
            )
        kwargs.update(user_given)
        spec.check_kwargs(kwargs)
        if "beta" in kwargs and not kwargs["beta"] > 0:
            raise ValueError(f"The loss {spec.name!r} got beta={kwargs['beta']}; beta must be > 0.")
        if "label_smoothing" in kwargs and not 0.0 <= kwargs["label_smoothing"] < 0.5:
            raise ValueError(
                f"The loss {spec.name!r} got label_smoothing={kwargs['label_smoothing']}; it must lie in [0, 0.5)."
            )
        resolved[spec.name] = kwargs
    return resolved


@dataclass
class DataCollatorForRankedPreference:
    """Pads the present completions of a batch of ranked lists into one [N, T] batch, with `rank_index` [B, K]
    mapping each (prompt, rank) to its row, −1 where a ragged list has no completion.
    """

    pad_token_id: int
    max_length: int | None = None
    truncation_mode: str = "keep_start"
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        k_max = max(len(example["completion_ids"]) for example in examples)
        rank_index = torch.full((len(examples), k_max), -1, dtype=torch.long)
        for row, example in enumerate(examples):
            for rank, completion in enumerate(example["completion_ids"]):
                ids = example["prompt_ids"] + completion
                mask = [0] * len(example["prompt_ids"]) + [1] * len(completion)
                if self.max_length is not None:
                    keep = (
                        slice(None, self.max_length)
                        if self.truncation_mode == "keep_start"
                        else slice(-self.max_length, None)
                    )
                    ids, mask = ids[keep], mask[keep]
                rank_index[row, rank] = len(sequences)
                sequences.append(torch.tensor(ids))
                masks.append(torch.tensor(mask, dtype=torch.long))
        pad_args = {"padding_side": "right", "pad_to_multiple_of": self.pad_to_multiple_of}
        return {
            "input_ids": _compat.pad(sequences, padding_value=self.pad_token_id, **pad_args),
            "attention_mask": _compat.pad([torch.ones_like(m) for m in masks], padding_value=0, **pad_args),
            "completion_mask": _compat.pad(masks, padding_value=0, **pad_args),
            "rank_index": rank_index,
        }


class _PairedCollator(_compat.DataCollatorForPreference):
    """TRL's preference collator, plus the optional `chosen_win_prob` column (soft labels for SPPO)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        for column in ("chosen_win_prob", "rejected_win_prob"):
            if column in examples[0]:
                output[f"{column}s"] = torch.tensor([float(example[column]) for example in examples])
        return output


def dataset_kind(example: dict[str, Any]) -> str:
    """`ranked` for a prompt with a `completions` list (or its tokenised form), `paired` for chosen/rejected."""
    if "completions" in example or "completion_ids" in example:
        return "ranked"
    if ("chosen" in example and "rejected" in example) or "chosen_ids" in example:
        return "paired"
    raise ValueError(
        f"A preference dataset needs `chosen` and `rejected` columns (pairs) or a `completions` column (a ranked "
        f"list, best first), each with a `prompt`; found columns {sorted(example)}."
    )


def is_empty_completion(completion: Any) -> bool:
    if isinstance(completion, str):
        return not completion.strip()
    if isinstance(completion, list):  # conversational: the assistant turns
        return all(not str(message.get("content") or "").strip() for message in completion)
    return completion is None


def check_model_path(model: Any, what: str = "model") -> None:
    """A model given by name must be an existing checkpoint folder or a valid Hub id: a file, or a missing path
    that no Hub id can spell, fails here with that said, not in the hub client ("Repo id must be in the form...")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(model, (str, os.PathLike)):
        return
    name = str(model)
    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(f"The {what} path {name!r} is a file; pass the folder that holds its config.json.")
    if path.exists():
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(f"The {what} path {name!r} does not exist, and it is not a Hub model id either.") from None
    if name.startswith(("~", ".", "/")):
        raise ValueError(f"The {what} path {name!r} does not exist.")


def first_row(dataset: Any, name: str) -> dict[str, Any]:
    """The dataset's first row; an empty dataset is an error here rather than a bare StopIteration later."""
    for row in dataset:
        return dict(row)
    raise ValueError(f"The {name} dataset is empty: it has no rows to train or evaluate on.")


def check_text(value: Any, index: int, column: str, name: str) -> None:
    """A prompt or completion is text, or a conversation (a list of {"role", "content"} messages)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(m, dict) for m in value)):
        return
    raise TypeError(
        f"Row {index} of the {name} dataset has `{column}`={value!r} ({type(value).__name__}); prompts and "
        "completions are strings, or lists of chat messages. Fix or drop the row."
    )


def check_preference_dataset(dataset: Dataset | IterableDataset, name: str) -> str:
    """Validate a raw (untokenised) dataset and return its kind; errors name the row and the column."""
    first = first_row(dataset, name)
    kind = dataset_kind(first)
    check_win_probs(dataset, name)
    if "prompt_ids" in first:  # already tokenised
        return kind
    if kind == "ranked" and "prompt" not in first:
        raise ValueError(f"The ranked {name} dataset needs a `prompt` column next to `completions`.")
    rows = dataset if isinstance(dataset, Dataset) else [first]
    columns = ("completions",) if kind == "ranked" else ("chosen", "rejected")
    for index, example in enumerate(rows):
        if "prompt" in example:
            check_text(example["prompt"], index, "prompt", name)
        for column in columns:
            values = example[column] if kind == "ranked" else [example[column]]
            if kind == "ranked" and len(values) < 2:
                raise ValueError(
                    f"Row {index} of the {name} dataset ranks {len(values)} completion(s); a ranked list needs at "
                    "least two."
                )
            for value in values:
                check_text(value, index, column, name)
                if is_empty_completion(value):
                    raise ValueError(
                        f"Row {index} of the {name} dataset has an empty `{column}` completion; it carries no "
                        "preference signal. Drop or fix the row."
                    )
    return kind


class PreferenceTrainer(FiniteGuardMixin, LossStateMixin, _compat.DPOTrainer):
    """Drop-in for `DPOTrainer` whose loss comes from the registry (`PreferenceConfig.loss`).

    Reference-free losses (SimPO, CPO, ORPO, SFT, ...) never load or run a reference model.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "dpo", "trl-plus", "preference"]  # TRL's tags kept for its Hub listings
    _name = "Preference"

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: PreferenceConfig | _compat.DPOConfig | None = None,
        data_collator: Any = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_metrics: Any = None,
        callbacks: Any = None,
        optimizers: Any = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
    ) -> None:
        if args is None:
            model_name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model")
            args = PreferenceConfig(f"{str(model_name).split('/')[-1]}-Preference")
        elif not isinstance(args, PreferenceConfig):
            args = from_trl_config(PreferenceConfig, _compat.DPOConfig, args)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        self.loss_specs = [get_loss(name) for name in args.loss]  # type: ignore[union-attr]
        self.loss_weights_ = list(args.loss_weights or [1.0] * len(self.loss_specs))
        self.loss_kwargs_: dict[str, dict[str, Any]] = dict(args.loss_kwargs)  # type: ignore[arg-type]
        self._init_loss_states(self.loss_specs)
        self.requires_reference = any(spec.requires_reference for spec in self.loss_specs)
        train_kind = check_preference_dataset(train_dataset, "train")
        self._ranked_input = train_kind == "ranked"
        eval_sets = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
        for dataset in eval_sets:
            if dataset is not None and check_preference_dataset(dataset, "eval") != train_kind:
                raise ValueError("The eval dataset must have the same format (paired or ranked) as the train dataset.")
        self._check_loss_kinds()
        self._preflight(train_dataset, args)
        if self._ranked_input and args.precompute_ref_log_probs and self.requires_reference:
            raise ValueError(
                "`precompute_ref_log_probs=True` is not supported for ranked datasets yet; set it to False."
            )
        if ref_model is not None and not self.requires_reference:
            warnings.warn(
                f"The losses {args.loss} are reference-free: the `ref_model` passed in is never run.", stacklevel=2
            )
            ref_model = None
        check_model_path(model)  # after the data checks, which need no model
        check_model_path(ref_model, "ref_model")
        self._own_collator = data_collator is None
        with _compat.dpo_init_without(
            args,
            reference_model=self.requires_reference,
            policy_from_path=isinstance(model, str),
        ):
            super().__init__(
                model,
                ref_model=ref_model,
                args=args,
                data_collator=data_collator,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                compute_metrics=compute_metrics,
                callbacks=callbacks,
                optimizers=optimizers,
                quantization_config=quantization_config,
                peft_config=peft_config,
            )
        _compat.release_trainer_checkpoints(self)
        if self._own_collator:
            # DPOTrainer settled the pad token and built its collator; keep its settings, add what ours need.
            base: Any = self.data_collator  # type: ignore[has-type]
            collator_class = DataCollatorForRankedPreference if self._ranked_input else _PairedCollator
            self.data_collator = collator_class(
                pad_token_id=base.pad_token_id,
                max_length=base.max_length,
                truncation_mode=base.truncation_mode,
                pad_to_multiple_of=base.pad_to_multiple_of,
            )
        self.logprob_path = resolve_logprob_path(args.logprob_path, self.accelerator.device, self.model)
        if self.logprob_path == "chunked":
            for target in (self.model, self.ref_model):
                if target is not None:
                    unwrapped = self.accelerator.unwrap_model(target)
                    base_model = unwrapped.get_base_model() if _compat.is_peft_model(unwrapped) else unwrapped
                    add_chunked_lm_head(base_model, chunk_tokens=args.logprob_chunk_size)

    def _check_loss_kinds(self) -> None:
        # Unpaired losses never get this far: PreferenceConfig refuses them.
        for spec in self.loss_specs:
            if spec.input_kind == "ranked" and not self._ranked_input:
                raise ValueError(
                    f"The loss {spec.name!r} is listwise and needs a ranked dataset (a `prompt` and a `completions` "
                    "list, best first), but the train dataset has chosen/rejected pairs. On pairs, Plackett-Luce is "
                    "DPO: use loss='dpo', or build ranked lists."
                )

    def _preflight(self, dataset: Dataset | IterableDataset, args: PreferenceConfig) -> None:
        """Call every loss once on a one-example stand-in batch shaped like the dataset, before any model loads.

        Losses validate their own hyperparameter values and inputs (robust's ε range, sppo's win-probability
        column...); this surfaces those errors now rather than after the model, reference and data are prepared.
        """
        first = next(iter(dataset))
        one = torch.ones(1)
        win = torch.tensor([0.7]) if "chosen_win_prob" in first else None
        for spec in self.loss_specs:
            ref = spec.requires_reference
            loss_input: PairedLogps | RankedLogps
            if spec.input_kind == "ranked":
                logps = torch.tensor([[-1.0, -2.0]])
                loss_input = RankedLogps(
                    logps, torch.ones(1, 2), torch.ones(1, 2, dtype=torch.bool), logps - 0.5 if ref else None
                )
            else:
                loss_input = PairedLogps(
                    -one,
                    -2 * one,
                    one,
                    one,
                    -1.5 * one if ref else None,
                    -1.5 * one if ref else None,
                    win,
                    None if win is None else 1 - win,
                )
            try:
                spec(loss_input, **self.loss_kwargs_[spec.name])
            except (ValueError, TypeError) as error:
                raise ValueError(f"The loss {spec.name!r} cannot train on this dataset and config: {error}") from error

    # ---- data ---------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        first = next(iter(dataset))
        if dataset_kind(first) != "ranked":
            prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if isinstance(prepared, Dataset) and len(prepared) == 0:  # TRL drops prompts that fill max_length
                raise ValueError(
                    f"Every row of the {dataset_name} dataset has a prompt of at least max_length={args.max_length} "
                    "tokens, so truncation would leave no completion token to learn from and TRL drops them all. "
                    "Raise max_length, or set truncation_mode='keep_end'."
                )
            return prepared
        return tokenize_ranked(
            dataset, processing_class, self._tokenizer.eos_token, args.dataset_num_proc, dataset_name
        )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        columns: list[str] | None = self._signature_columns  # type: ignore[has-type]
        if columns is not None:
            self._signature_columns = [*columns, "completion_ids", "chosen_win_prob", "rejected_win_prob"]

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        if not self.requires_reference:
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    # ---- log-probs ----------------------------------------------------------------------------------------------

    def _token_logps(self, model: Any, model_kwargs: dict[str, Any], labels: torch.Tensor) -> Any:
        """Per-token log-probs [N, T−1] (and logging statistics) on the configured path."""
        if self.logprob_path == "fused":
            return model(**model_kwargs, labels=labels, fused_lm_head=True)
        if self.logprob_path == "chunked":
            return model(**model_kwargs, labels=labels, chunked_lm_head=True)
        outputs = model(**model_kwargs)
        return _compat.FusedCausalLMOutput(
            **logits_token_logps(outputs.logits, labels), aux_loss=getattr(outputs, "aux_loss", None)
        )

    def _reference_logps(
        self, inputs: dict[str, Any], model_kwargs: dict[str, Any], labels: torch.Tensor
    ) -> torch.Tensor:
        if self.precompute_ref_logps:
            return torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]])
        ref_kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        seq_len = labels.size(1) - 1
        with (
            torch.no_grad(),
            _compat.disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            # The reference runs under the policy's autocast: DPOTrainer gets it from accelerate's wrapper of the
            # reference forward, which the chunked head bypasses.
            self.accelerator.autocast(),
        ):
            if self.ref_model is None and _compat.is_peft_model(self.accelerator.unwrap_model(self.model)):
                unwrapped = self.accelerator.unwrap_model(self.model)
                with _compat.use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    outputs = self._token_logps(self.model, ref_kwargs, labels)
            elif self.ref_model is None:
                raise RuntimeError("No reference model is available for a loss that needs one.")
            else:
                outputs = self._token_logps(self.ref_model, ref_kwargs, labels)
        return sequence_logps(outputs.log_probs[:, -seq_len:], labels[:, 1:] != -100, self._ld_alpha(inputs))

    def _ld_alpha(self, inputs: dict[str, Any]) -> float | None:
        """LD-DPO's weight for the tokens beyond the shorter completion, on pairs (ranked lists have no pairs)."""
        return None if "rank_index" in inputs else self.args.ld_alpha

    # ---- loss -----------------------------------------------------------------------------------------------------

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[:, 1:]
        seq_len = shift_mask.size(1)
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)

        outputs = self._token_logps(model, model_kwargs, labels)
        # Prompt-learning PEFT prepends virtual tokens; keep the positions of the real ones.
        per_token_logps = outputs.log_probs[:, -seq_len:]
        logps = sequence_logps(per_token_logps, shift_mask, self._ld_alpha(inputs))
        lengths = shift_mask.sum(dim=1)
        ref_logps = self._reference_logps(inputs, model_kwargs, labels) if self.requires_reference else None

        loss: torch.Tensor | float = 0.0
        reported: LossOutput | None = None
        for spec, weight in zip(self.loss_specs, self.loss_weights_, strict=True):
            loss_input = self._loss_input(spec, inputs, logps, lengths, ref_logps)
            output = self._call_loss(spec, loss_input, self.loss_kwargs_[spec.name], mode == "train")
            component = output.losses.mean()
            loss = loss + weight * component
            if len(self.loss_specs) > 1:
                self._log_metric(mode, f"loss/{spec.name}", component.detach())
            for key, value in output.metrics.items():
                self._log_metric(mode, f"{spec.name}/{key}", torch.as_tensor(value, dtype=torch.float32).detach())
            if reported is None and output.chosen_rewards is not None:
                reported = output

        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._log_metric(mode, "aux_loss", outputs.aux_loss.detach())
        self._log_token_metrics(mode, inputs, outputs, seq_len, shift_mask)
        chosen, rejected = self._split_best_worst(inputs, logps)
        self._metrics[mode]["logps/chosen"].append(self.accelerator.gather(chosen.detach()).mean().item())
        self._metrics[mode]["logps/rejected"].append(self.accelerator.gather(rejected.detach()).mean().item())
        if reported is not None:
            assert reported.rejected_rewards is not None and reported.chosen_rewards is not None
            chosen_rewards = self.accelerator.gather(reported.chosen_rewards)
            rejected_rewards = self.accelerator.gather(reported.rejected_rewards)
            self._metrics[mode]["rewards/chosen"].append(chosen_rewards.mean().item())
            self._metrics[mode]["rewards/rejected"].append(rejected_rewards.mean().item())
            self._metrics[mode]["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
            self._metrics[mode]["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())

        assert isinstance(loss, torch.Tensor)
        if return_outputs:
            with torch.no_grad():
                full = model(**model_kwargs)
            return loss, full
        return loss

    def _split_best_worst(self, inputs: dict[str, Any], logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if "rank_index" not in inputs:
            chosen, rejected = logps.chunk(2, dim=0)
            return chosen, rejected
        index = inputs["rank_index"]
        last = (index >= 0).sum(dim=1) - 1
        return logps[index[:, 0]], logps[index.gather(1, last[:, None]).squeeze(1)]

    def _loss_input(
        self,
        spec: LossSpec,
        inputs: dict[str, Any],
        logps: torch.Tensor,
        lengths: torch.Tensor,
        ref_logps: torch.Tensor | None,
    ) -> PairedLogps | RankedLogps:
        ref = ref_logps if spec.requires_reference else None
        kind = self.args.f_divergence_type
        if ref is not None and kind != "reverse_kl":
            # f-DPO: the loss sees f'(π/π_ref) where it would see the log-ratio, as scores against a zero reference.
            logps = f_divergence_scores(logps - ref, kind, self.args.f_alpha_divergence_coef)
            ref = torch.zeros_like(logps)
        if "rank_index" not in inputs:
            chosen, rejected = logps.chunk(2)
            chosen_len, rejected_len = lengths.chunk(2)
            ref_chosen, ref_rejected = ref.chunk(2) if ref is not None else (None, None)
            win = inputs.get("chosen_win_probs")
            rejected_win = inputs.get("rejected_win_probs", None if win is None else 1 - win)
            return PairedLogps(
                chosen,
                rejected,
                chosen_len,
                rejected_len,
                ref_chosen,
                ref_rejected,
                chosen_win_probs=None if win is None else win.to(logps.dtype),
                rejected_win_probs=None if rejected_win is None else rejected_win.to(logps.dtype),
            )
        index = inputs["rank_index"]
        mask = index >= 0
        safe = index.clamp(min=0)
        if spec.input_kind == "ranked":
            return RankedLogps(
                logps[safe].masked_fill(~mask, 0.0),
                lengths[safe].masked_fill(~mask, 1),
                mask,
                None if ref is None else ref[safe].masked_fill(~mask, 0.0),
            )
        better, worse = ranked_pairs(index, adjacent=self.args.ranked_pairs == "adjacent")
        return PairedLogps(
            logps[better],
            logps[worse],
            lengths[better],
            lengths[worse],
            None if ref is None else ref[better],
            None if ref is None else ref[worse],
        )

    # ---- logging ----------------------------------------------------------------------------------------------

    def _log_metric(self, mode: str, name: str, value: torch.Tensor) -> None:
        self._metrics[mode][name].append(self.accelerator.gather_for_metrics(value.reshape(1)).float().mean().item())

    def _log_token_metrics(
        self, mode: str, inputs: dict[str, Any], outputs: Any, seq_len: int, shift_mask: torch.Tensor
    ) -> None:
        """TRL's entropy, token count, mean logits and token accuracy, where the log-prob path provides them."""
        gather = self.accelerator.gather_for_metrics
        if mode == "train":
            tokens = gather(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        if outputs.entropy is None:
            return
        total = gather(shift_mask.sum()).sum()
        entropy = gather((outputs.entropy[:, -seq_len:].detach() * shift_mask).sum()).sum()
        self._metrics[mode]["entropy"].append((entropy / total).item() if total > 0 else 0.0)
        if "rank_index" in inputs:
            return
        chosen_mask, rejected_mask = shift_mask.bool().chunk(2)
        if outputs.mean_logits is not None:
            chosen_logits, rejected_logits = outputs.mean_logits[:, -seq_len:].chunk(2)
            for name, values, mask in (
                ("chosen", chosen_logits, chosen_mask),
                ("rejected", rejected_logits, rejected_mask),
            ):
                count = gather(mask.sum()).sum().item()
                value = gather(values[mask].sum()).sum().item()
                self._metrics[mode][f"logits/{name}"].append(value / count if count > 0 else 0.0)
        if outputs.is_top1 is not None:
            chosen_top1, _ = outputs.is_top1[:, -seq_len:].chunk(2)
            correct = gather((chosen_top1 & chosen_mask).sum()).sum()
            count = gather(chosen_mask.sum()).sum()
            self._metrics[mode]["mean_token_accuracy"].append((correct / count).item() if count > 0 else 0.0)


def tokenize_ranked(
    dataset: Any, processing_class: Any, eos_token: str, num_proc: int | None, dataset_name: str
) -> Any:
    """Tokenise a ranked dataset into `prompt_ids` and `completion_ids` (one list per completion, best first), as TRL
    tokenises pairs: plain completions get the eos appended; the completion starts where the prompt alone and
    prompt + completion diverge. Already tokenised datasets pass through."""
    if "completion_ids" in next(iter(dataset)):
        return dataset

    def tokenize(example: dict[str, Any]) -> dict[str, Any]:
        prompt_ids, full = _compat.tokenize_prompt_completions(
            processing_class, example["prompt"], example["completions"], eos_token
        )
        prompt_len = min(_compat.common_prefix_length(prompt_ids, ids) for ids in full)
        return {"prompt_ids": prompt_ids[:prompt_len], "completion_ids": [ids[prompt_len:] for ids in full]}

    map_kwargs: dict[str, Any] = {}
    if isinstance(dataset, Dataset):
        map_kwargs = {"num_proc": num_proc, "desc": f"Tokenizing {dataset_name} dataset"}
    return dataset.map(tokenize, **map_kwargs)


def ranked_pairs(rank_index: torch.Tensor, adjacent: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (better, worse) of every ordered pair i < j of each ranked list, or of neighbours only."""
    k = rank_index.shape[1]
    i, j = torch.triu_indices(k, k, offset=1, device=rank_index.device)
    if adjacent:
        keep = j == i + 1
        i, j = i[keep], j[keep]
    better, worse = rank_index[:, i].reshape(-1), rank_index[:, j].reshape(-1)
    present = (better >= 0) & (worse >= 0)
    return better[present], worse[present]
