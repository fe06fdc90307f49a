"""`UnpairedPreferenceTrainer`: TRL's `KTOTrainer` with its loss taken from the registry (input `UnpairedLogps`).

Dataset preparation (prompt/completion/label rows, or pairs unpaired on the fly), the collator, the mismatched
prompt/completion pairs behind the KL estimate, reference handling and PEFT/4-bit loading stay TRL's; only the
step from per-sequence log-probs to the loss goes through the registry. Log-probs come from TRL's fused head.
The KL estimate is computed unless every loss is KL-free (`apo_zero_unpaired`, `bco`, `sft`), as in TRL.
Stateful losses (`bco`'s running baseline) keep their state in the trainer and in checkpoints (`_state.py`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from datasets import Dataset, IterableDataset, Value

from trl_plus.registry import LossSpec, UnknownNameError, get_loss
from trl_plus.trainers import _compat
from trl_plus.trainers._guard import FiniteGuardMixin, NonFiniteFields
from trl_plus.trainers._state import LossStateMixin
from trl_plus.trainers.preference import (
    check_model_path,
    check_text,
    first_row,
    from_trl_config,
    is_empty_completion,
    loss_names,
    resolve_loss_kwargs,
)
from trl_plus.types import LossOutput, UnpairedLogps

_KL_FREE = {"apo_zero_unpaired", "bco", "sft_unpaired"}
# KTOConfig values that become a loss's hyperparameter of the same name when the loss takes it.
_CONFIG_HYPERPARAMETERS = {name: name for name in ("beta", "desirable_weight", "undesirable_weight")}
# The KTO paper's advice (Sec. 4.2, Eq. 8): λ_D·n_D / (λ_U·n_U) within [1, 4/3].
_RECOMMENDED_CLASS_RATIO = (1.0, 4 / 3)


def unpaired_name(name: str) -> str:
    """The registered name of `name` for unpaired data: a paired loss with an `<name>_unpaired` twin maps to it
    (`sft` → `sft_unpaired`, `apo_zero` → `apo_zero_unpaired`); every other name is returned as registered."""
    spec = get_loss(name)
    if spec.input_kind != "unpaired":
        try:
            twin = get_loss(f"{spec.name}_unpaired")
        except UnknownNameError:
            return spec.name
        if twin.input_kind == "unpaired":  # `aot_unpaired` is a paired loss (AOT on unpaired *batches*)
            return twin.name
    return spec.name


def unpaired_view(dataset: Any, *, seed: int | None = 0, **map_kwargs: Any) -> Any:
    """The thumbs-up/down view of a paired dataset: each prompt/chosen/rejected row becomes a desirable and an
    undesirable prompt/completion/label row (TRL's `unpair_preference_dataset`), shuffled with `seed` so that
    batches mix both classes (`seed=None` keeps TRL's order: each batch of pairs' chosen rows, then its rejected).
    Streamed datasets are unpaired but never shuffled."""
    first = next(iter(dataset.values() if isinstance(dataset, dict) else [dataset]))
    columns = set(first.column_names or next(iter(first)))
    if not {"chosen", "rejected"} <= columns:
        raise ValueError(
            f"unpaired_view takes prompt/chosen/rejected pairs; the dataset has columns {sorted(columns)}."
        )
    unpaired = _compat.unpair_preference_dataset(dataset, **map_kwargs)
    if seed is None or isinstance(unpaired, IterableDataset):
        return unpaired
    return unpaired.shuffle(seed=seed)


def check_unpaired_dataset(dataset: Any, name: str) -> tuple[int, int] | None:
    """Check columns and labels; return (desirable, undesirable) counts, or None for pairs or streamed data."""
    first = first_row(dataset, name)
    columns = set(dataset.column_names or first)
    if {"chosen", "rejected"} <= columns:
        return None  # TRL unpairs these: one desirable and one undesirable row per pair
    missing = [column for column in ("prompt", "completion", "label") if column not in columns]
    if missing:
        raise ValueError(
            f"The {name} dataset has no {missing} column(s) (it has {sorted(columns)}). UnpairedPreferenceTrainer "
            "takes prompt/completion/label rows (label True for a thumbs up), or prompt/chosen/rejected pairs, "
            "which it unpairs."
        )
    feature = dataset.features.get("label") if dataset.features is not None else None
    if not isinstance(feature, Value) or feature.dtype != "bool":
        found = feature if feature is not None else type(first["label"]).__name__
        raise TypeError(
            f"The {name} dataset's `label` column must hold booleans (True = desirable), found {found}. If 1 means "
            "desirable, convert it with `dataset.cast_column('label', datasets.Value('bool'))`."
        )
    rows = [first] if isinstance(dataset, IterableDataset) else dataset
    for index, row in enumerate(rows):
        check_text(row["prompt"], index, "prompt", name)
        check_text(row["completion"], index, "completion", name)
        if is_empty_completion(row["completion"]):
            raise ValueError(
                f"Row {index} of the {name} dataset has an empty `completion`; a thumbs up or down on nothing "
                "teaches nothing. Drop or fix the row."
            )
    if isinstance(dataset, IterableDataset):
        return None
    desirable = sum(dataset["label"])
    undesirable = len(dataset) - desirable
    if name == "train" and (desirable == 0 or undesirable == 0):
        only = "desirable (True)" if undesirable == 0 else "undesirable (False)"
        raise ValueError(
            f"Every label in the train dataset is {only} ({len(dataset)} rows): unpaired losses learn from the "
            "contrast between thumbs up and thumbs down, so the dataset needs both."
        )
    return desirable, undesirable


def warn_on_class_ratio(counts: tuple[int, int], specs: Sequence[LossSpec], kwargs: dict[str, dict[str, Any]]) -> None:
    """Warn when λ_D·n_D / (λ_U·n_U) falls outside the KTO paper's recommended [1, 4/3]."""
    desirable, undesirable = counts
    low, high = _RECOMMENDED_CLASS_RATIO
    for spec in specs:
        defaults = spec.defaults()
        if "desirable_weight" not in defaults:
            continue
        weights = {key: kwargs[spec.name].get(key, defaults[key]) for key in ("desirable_weight", "undesirable_weight")}
        ratio = weights["desirable_weight"] * desirable / (weights["undesirable_weight"] * undesirable)
        if not low <= ratio <= high:
            scale = weights["undesirable_weight"] * undesirable / desirable
            warnings.warn(
                f"The loss {spec.name!r} weighs desirable:undesirable as {ratio:.2f}:1 ({desirable} desirable and "
                f"{undesirable} undesirable rows, desirable_weight={weights['desirable_weight']}, "
                f"undesirable_weight={weights['undesirable_weight']}); the KTO paper recommends a ratio in "
                f"[1, 4/3]. For example, set desirable_weight in [{scale * low:.3g}, {scale * high:.3g}].",
                stacklevel=3,
            )


@dataclass
class UnpairedPreferenceConfig(NonFiniteFields, _compat.KTOConfig):
    """`KTOConfig` plus the registry: `loss` (names; `loss_type` is the default), `loss_weights`, `loss_kwargs`."""

    loss: list[str] | str | None = field(
        default=None,
        metadata={"help": "Registry name(s) of unpaired losses, e.g. `kto`. Defaults to `loss_type`."},
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per loss in `loss`; all 1.0 when unset."}
    )
    loss_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Hyperparameters per loss, keyed by loss name; a flat dict when there is one loss."},
    )

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [*_compat.KTOConfig._VALID_DICT_FIELDS, "loss_kwargs"]

    def __post_init__(self) -> None:
        self.loss = [unpaired_name(name) for name in loss_names(self.loss, self.loss_type, ["kto"])]  # type: ignore[has-type]
        specs = [get_loss(name) for name in self.loss]
        for spec in specs:
            if spec.input_kind != "unpaired":
                raise ValueError(
                    f"The loss {spec.name!r} takes {spec.input_kind} data; UnpairedPreferenceTrainer trains on "
                    "thumbs-up/down examples. Use PreferenceTrainer for it."
                )
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss):
            raise ValueError(f"`loss_weights` has {len(self.loss_weights)} weights for {len(self.loss)} losses.")
        if not self.beta > 0:
            raise ValueError(f"`beta` must be > 0, got {self.beta}.")
        if isinstance(self.loss_kwargs, str):
            self.loss_kwargs = json.loads(self.loss_kwargs) if self.loss_kwargs.strip() else None
        if self.loss_kwargs and all(isinstance(value, dict) for value in self.loss_kwargs.values()):
            # Keyed by loss: `{"sft": {...}}` means the unpaired twin, like `loss="sft"` does.
            with contextlib.suppress(UnknownNameError):
                self.loss_kwargs = {unpaired_name(key): value for key, value in self.loss_kwargs.items()}
        super().__post_init__()
        self.loss_kwargs = resolve_loss_kwargs(self, specs, _CONFIG_HYPERPARAMETERS)


class UnpairedPreferenceTrainer(FiniteGuardMixin, LossStateMixin, _compat.KTOTrainer):
    """Drop-in for `KTOTrainer` whose loss comes from the registry (`UnpairedPreferenceConfig.loss`)."""

    _tag_names: ClassVar[list[str]] = ["trl", "kto", "trl-plus", "unpaired-preference"]  # TRL's tags kept

    def __init__(
        self,
        model: Any,
        ref_model: Any = None,
        args: Any = None,
        data_collator: Any = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Any = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = UnpairedPreferenceConfig("UnpairedPreference")
        elif not isinstance(args, UnpairedPreferenceConfig):
            args = from_trl_config(UnpairedPreferenceConfig, _compat.KTOConfig, args)
        if train_dataset is None:
            raise ValueError("`train_dataset` is required.")
        self.loss_specs = [get_loss(name) for name in args.loss]
        self.unpaired_loss_weights = list(args.loss_weights or [1.0] * len(self.loss_specs))
        self.unpaired_loss_kwargs: dict[str, dict[str, Any]] = dict(args.loss_kwargs)
        self._init_loss_states(self.loss_specs)
        counts = check_unpaired_dataset(train_dataset, "train")
        eval_sets = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
        for dataset in eval_sets:
            if dataset is not None:
                check_unpaired_dataset(dataset, "eval")
        if counts is not None:
            warn_on_class_ratio(counts, self.loss_specs, self.unpaired_loss_kwargs)
        self._preflight()
        check_model_path(model)  # after the data checks, which need no model
        check_model_path(ref_model, "ref_model")
        saved = args.loss_type
        # TRL decides from `loss_type` whether to build the KL pairs: keep them unless every loss is KL-free.
        args.loss_type = "apo_zero_unpaired" if {s.name for s in self.loss_specs} <= _KL_FREE else "kto"
        try:
            with _compat.quiet_kto_weight_warning():  # ours above knows each loss's own weights
                super().__init__(
                    model,
                    ref_model=ref_model,
                    args=args,
                    train_dataset=train_dataset,
                    eval_dataset=eval_dataset,
                    **kwargs,
                )
        finally:
            args.loss_type = saved
        _compat.release_trainer_checkpoints(self)

    def _preflight(self) -> None:
        """Call every loss once on a two-example stand-in batch, so bad hyperparameter values fail before loading."""
        logps = torch.tensor([-1.0, -2.0])
        stand_in = UnpairedLogps(
            logps, torch.ones(2), torch.tensor([True, False]), logps - 0.5, kl_logps=logps, ref_kl_logps=logps - 0.1
        )
        for spec in self.loss_specs:
            self._call_loss(spec, stand_in, self.unpaired_loss_kwargs[spec.name], training=False)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        batch = {k: (v.to(self.accelerator.device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        kl_logps = self._compute_kl_logps(model, batch)
        skip = {"completion_mask", "label", "ref_logps", "ref_KL_logps"}
        model_kwargs = {k: v for k, v in batch.items() if k not in skip and not k.startswith("KL_")}
        model_kwargs["use_cache"] = False
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        # Mixture-of-experts: the router's load-balancing loss joins the loss, as in KTOTrainer.
        router = {"output_router_logits": True} if self.aux_loss_enabled else {}
        outputs = model(**model_kwargs, **router, labels=labels, fused_lm_head=True)
        seq_len = batch["input_ids"].size(1) - 1
        logps = outputs.log_probs[:, -seq_len:].sum(-1)
        ref_logps, ref_kl_logps = self._reference(batch, model_kwargs, labels, seq_len)
        desirable = torch.as_tensor(batch["label"], dtype=torch.bool, device=logps.device)
        loss_input = UnpairedLogps(
            logps=logps,
            lengths=batch["completion_mask"][:, 1:].sum(-1),
            desirable=desirable,
            ref_logps=ref_logps,
            kl_logps=kl_logps,
            ref_kl_logps=ref_kl_logps if kl_logps is not None else None,
        )
        loss: torch.Tensor | float = 0.0
        reported: LossOutput | None = None
        for spec, weight in zip(self.loss_specs, self.unpaired_loss_weights, strict=True):
            output = self._call_loss(spec, loss_input, self.unpaired_loss_kwargs[spec.name], mode == "train")
            component = output.losses.nanmean()
            loss = loss + weight * component
            if len(self.loss_specs) > 1:
                self._metrics[mode][f"loss/{spec.name}"].append(component.item())
            for key, value in output.metrics.items():
                name = key if key == "kl" else f"{spec.name}/{key}"  # TRL logs KTO's estimate as `kl`
                self._metrics[mode][name].append(float(torch.as_tensor(value).item()))
            reported = reported or (output if output.chosen_rewards is not None else None)
        self._log_rewards(mode, reported, logps, desirable)
        assert isinstance(loss, torch.Tensor)
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())
        if return_outputs:
            with torch.no_grad():
                return loss, model(**model_kwargs)
        return loss

    def _reference(
        self, batch: dict[str, Any], model_kwargs: dict[str, Any], labels: torch.Tensor, seq_len: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.precompute_ref_logps:
            return batch["ref_logps"], batch.get("ref_KL_logps")
        with (
            torch.no_grad(),
            _compat.disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
        ):
            if _compat.is_peft_model(self.model) and self.ref_model is None:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with _compat.use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    ref_kl = self._compute_kl_logps(self.model, batch)
                    outputs = self.model(**model_kwargs, labels=labels, fused_lm_head=True)
            else:
                ref_kl = self._compute_kl_logps(self.ref_model, batch)
                outputs = self.ref_model(**model_kwargs, labels=labels, fused_lm_head=True)
        return outputs.log_probs[:, -seq_len:].sum(-1), ref_kl

    def _log_rewards(
        self, mode: str, reported: LossOutput | None, logps: torch.Tensor, desirable: torch.Tensor
    ) -> None:
        gather = self.accelerator.gather_for_metrics
        for name, rewards, mask in (
            ("chosen", None if reported is None else reported.chosen_rewards, desirable),
            ("rejected", None if reported is None else reported.rejected_rewards, ~desirable),
        ):
            count = gather(mask.sum()).sum().item()
            if count == 0:
                continue
            self._metrics[mode][f"logps/{name}"].append(gather(logps.detach()[mask].sum()).sum().item() / count)
            if rewards is not None:
                self._metrics[mode][f"rewards/{name}"].append(gather(rewards[mask].nansum()).sum().item() / count)
        if "rewards/chosen" in self._metrics[mode] and "rewards/rejected" in self._metrics[mode]:
            margin = self._metrics[mode]["rewards/chosen"][-1] - self._metrics[mode]["rewards/rejected"][-1]
            self._metrics[mode]["rewards/margins"].append(margin)
