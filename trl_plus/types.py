"""What a loss reads and what it returns (the loss contract of DESIGN.md).

Every log-probability is a sum over completion tokens, one number per sequence. Constructors validate shapes and
values so that a loss never sees a malformed batch; messages name the field and the offending shape or value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol

import torch

InputKind = Literal["paired", "unpaired", "ranked", "online"]


def _check_logps(name: str, value: torch.Tensor, shape: torch.Size) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}.")
    if not value.is_floating_point():
        raise TypeError(f"`{name}` must hold floating-point log-probabilities, got dtype {value.dtype}.")
    if value.shape != shape:
        raise ValueError(f"`{name}` has shape {tuple(value.shape)}, expected {tuple(shape)} like the policy log-probs.")


def _check_lengths(name: str, value: torch.Tensor, shape: torch.Size, where: torch.Tensor | None = None) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of token counts, got {type(value).__name__}.")
    if value.shape != shape:
        raise ValueError(f"`{name}` has shape {tuple(value.shape)}, expected {tuple(shape)} like the policy log-probs.")
    present = value if where is None else value[where]
    if present.numel() and bool((present <= 0).any()):
        bad = present[present <= 0][0].item()
        raise ValueError(
            f"`{name}` must be positive token counts, found {bad}: an empty completion carries no log-probability."
        )


def _check_reference_pair(names: tuple[str, ...], values: tuple[torch.Tensor | None, ...]) -> None:
    given = [name for name, value in zip(names, values, strict=True) if value is not None]
    if given and len(given) != len(names):
        missing = [name for name in names if name not in given]
        raise ValueError(f"Reference log-probs are all-or-nothing: got {given} but not {missing}.")


@dataclass
class PairedLogps:
    """Per-sequence log-probs of a batch of (chosen, rejected) pairs, each tensor of shape [B].

    `chosen_win_probs`/`rejected_win_probs` are optional estimates of each completion's probability of winning
    (soft labels, e.g. for SPPO), in [0, 1].
    """

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    chosen_win_probs: torch.Tensor | None = None
    rejected_win_probs: torch.Tensor | None = None

    kind: InputKind = field(default="paired", init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.chosen_logps, torch.Tensor) or self.chosen_logps.dim() != 1:
            shape = tuple(getattr(self.chosen_logps, "shape", ()))
            raise ValueError(f"`chosen_logps` must be a 1-D tensor of shape [B], got shape {shape}.")
        shape = self.chosen_logps.shape
        for name in ("chosen_logps", "rejected_logps"):
            _check_logps(name, getattr(self, name), shape)
        for name in ("chosen_lengths", "rejected_lengths"):
            _check_lengths(name, getattr(self, name), shape)
        _check_reference_pair(
            ("ref_chosen_logps", "ref_rejected_logps"), (self.ref_chosen_logps, self.ref_rejected_logps)
        )
        for name in ("ref_chosen_logps", "ref_rejected_logps"):
            if getattr(self, name) is not None:
                _check_logps(name, getattr(self, name), shape)
        for name in ("chosen_win_probs", "rejected_win_probs"):
            value = getattr(self, name)
            if value is not None:
                _check_logps(name, value, shape)
                outside = (value < 0) | (value > 1)
                if bool(outside.any()):
                    bad = value[outside][0].item()
                    raise ValueError(f"`{name}` must be probabilities in [0, 1], found {bad}.")

    @property
    def has_reference(self) -> bool:
        return self.ref_chosen_logps is not None

    @property
    def batch_size(self) -> int:
        return self.chosen_logps.shape[0]


@dataclass
class UnpairedLogps:
    """Per-sequence log-probs of single completions with a thumbs-up/down label (KTO-style), shapes [B].

    `kl_logps`/`ref_kl_logps` are the log-probs of mismatched prompt/completion pairs from which KTO estimates
    the reference point; they may have their own batch size.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    desirable: torch.Tensor
    ref_logps: torch.Tensor | None = None
    kl_logps: torch.Tensor | None = None
    ref_kl_logps: torch.Tensor | None = None

    kind: InputKind = field(default="unpaired", init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.logps, torch.Tensor) or self.logps.dim() != 1:
            shape = tuple(getattr(self.logps, "shape", ()))
            raise ValueError(f"`logps` must be a 1-D tensor of shape [B], got shape {shape}.")
        shape = self.logps.shape
        _check_logps("logps", self.logps, shape)
        _check_lengths("lengths", self.lengths, shape)
        if not isinstance(self.desirable, torch.Tensor) or self.desirable.dtype != torch.bool:
            dtype = getattr(self.desirable, "dtype", type(self.desirable).__name__)
            raise TypeError(f"`desirable` must be a bool tensor (True = thumbs up), got {dtype}.")
        if self.desirable.shape != shape:
            raise ValueError(f"`desirable` has shape {tuple(self.desirable.shape)}, expected {tuple(shape)}.")
        if self.ref_logps is not None:
            _check_logps("ref_logps", self.ref_logps, shape)
        _check_reference_pair(("kl_logps", "ref_kl_logps"), (self.kl_logps, self.ref_kl_logps))
        if self.kl_logps is not None:
            if self.kl_logps.dim() != 1:
                raise ValueError(f"`kl_logps` must be 1-D, got shape {tuple(self.kl_logps.shape)}.")
            _check_logps("ref_kl_logps", self.ref_kl_logps, self.kl_logps.shape)  # type: ignore[arg-type]

    @property
    def has_reference(self) -> bool:
        return self.ref_logps is not None

    @property
    def batch_size(self) -> int:
        return self.logps.shape[0]


@dataclass
class RankedLogps:
    """Per-sequence log-probs of K ranked completions per prompt, shapes [B, K], best first.

    Ragged lists are padded on the right: `mask[b, k]` is True for the completions that exist, and every row
    has its present entries first.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    mask: torch.Tensor
    ref_logps: torch.Tensor | None = None

    kind: InputKind = field(default="ranked", init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.logps, torch.Tensor) or self.logps.dim() != 2:
            shape = tuple(getattr(self.logps, "shape", ()))
            raise ValueError(f"`logps` must be a 2-D tensor of shape [B, K], got shape {shape}.")
        shape = self.logps.shape
        _check_logps("logps", self.logps, shape)
        if not isinstance(self.mask, torch.Tensor) or self.mask.dtype != torch.bool or self.mask.shape != shape:
            got = (getattr(self.mask, "dtype", None), tuple(getattr(self.mask, "shape", ())))
            raise ValueError(f"`mask` must be a bool tensor of shape {tuple(shape)}, got dtype/shape {got}.")
        # Present entries first: a True after a False would put a missing completion above a present one.
        if bool((self.mask[:, 1:] & ~self.mask[:, :-1]).any()):
            row = int((self.mask[:, 1:] & ~self.mask[:, :-1]).any(dim=1).nonzero()[0])
            raise ValueError(f"`mask` row {row} is {self.mask[row].tolist()}: present completions must come first.")
        if bool((self.mask.sum(dim=1) < 1).any()):
            row = int((self.mask.sum(dim=1) < 1).nonzero()[0])
            raise ValueError(f"`mask` row {row} has no completion.")
        _check_lengths("lengths", self.lengths, shape, where=self.mask)
        if self.ref_logps is not None:
            _check_logps("ref_logps", self.ref_logps, shape)

    @property
    def has_reference(self) -> bool:
        return self.ref_logps is not None

    @property
    def batch_size(self) -> int:
        return self.logps.shape[0]


@dataclass
class OnlineLogps:
    """One sample y per row from the policy during online training, with its preference over an opponent, shapes [B].

    `preferences[b]` = P(y ≻ y′ | x) by the preference source, y′ the opponent's sample (or the mean over several
    opponents, e.g. the other samples of the prompt). `opponent_log_ratios` is log π(y′)/π_ref(y′) of the opponent
    sample, as a constant, where the opponent is the policy itself (self-play); losses that compare two policy
    samples (online IPO) need it.
    """

    logps: torch.Tensor
    lengths: torch.Tensor
    preferences: torch.Tensor
    ref_logps: torch.Tensor | None = None
    opponent_log_ratios: torch.Tensor | None = None

    kind: InputKind = field(default="online", init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.logps, torch.Tensor) or self.logps.dim() != 1:
            shape = tuple(getattr(self.logps, "shape", ()))
            raise ValueError(f"`logps` must be a 1-D tensor of shape [B], got shape {shape}.")
        shape = self.logps.shape
        _check_logps("logps", self.logps, shape)
        _check_lengths("lengths", self.lengths, shape)
        _check_logps("preferences", self.preferences, shape)
        if bool(((self.preferences < 0) | (self.preferences > 1)).any()):
            bad = self.preferences[(self.preferences < 0) | (self.preferences > 1)][0].item()
            raise ValueError(f"`preferences` are probabilities P(y ≻ y′) in [0, 1], found {bad}.")
        for name in ("ref_logps", "opponent_log_ratios"):
            if getattr(self, name) is not None:
                _check_logps(name, getattr(self, name), shape)

    @property
    def has_reference(self) -> bool:
        return self.ref_logps is not None

    @property
    def batch_size(self) -> int:
        return self.logps.shape[0]


LogpsInput = PairedLogps | UnpairedLogps | RankedLogps | OnlineLogps


class LossState(Protocol):
    """State a trainer keeps for a loss between steps (BCO's running reward baseline, say).

    Before each call of the loss, `step` turns the batch into the hyperparameters named in `provides`;
    `update=False` (evaluation) reads the state without changing it. `mean` averages a tensor over processes,
    so every process holds the same state. The state goes into checkpoints through `state_dict`.
    """

    provides: ClassVar[tuple[str, ...]]

    def step(
        self,
        inputs: LogpsInput,
        hyperparameters: dict[str, Any],
        *,
        update: bool,
        mean: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LossOutput:
    """Unreduced per-example losses [B], detached implicit rewards [B], and extra metrics to log.

    `chosen_rewards`/`rejected_rewards` are None where a loss has no notion of them (SFT, say). For ranked input
    they are the rewards of the best and worst present completion; for unpaired input, of the desirable and
    undesirable examples (NaN where an example is of the other kind).
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor | None = None
    rejected_rewards: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.losses, torch.Tensor) or self.losses.dim() != 1:
            shape = tuple(getattr(self.losses, "shape", ()))
            raise ValueError(f"`losses` must be unreduced, a 1-D tensor of shape [B]; got shape {shape}.")
        # Rewards are for logging only: they must never carry gradient back into the policy.
        for spec in fields(self):
            if spec.name in ("chosen_rewards", "rejected_rewards"):
                value = getattr(self, spec.name)
                if value is not None:
                    setattr(self, spec.name, value.detach())
