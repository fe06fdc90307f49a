"""Never train on garbage silently: a non-finite loss or gradient stops training (or skips the step), and soft
labels are checked before training starts.

Without this, a loss that returns NaN trains every step: transformers' Trainer logs the NaN loss as the previous
average (`logging_nan_inf_filter`), the optimizer writes NaN into every weight, and the checkpoint saved at the end
holds nothing else. The check runs after each backward pass and before the optimizer step, so with the default
`on_nonfinite="stop"` the weights are those of the last good step and nothing broken is saved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import Trainer as _Base
else:
    _Base = object

logger = logging.getLogger(__name__)

ON_NONFINITE = ("stop", "skip")
WIN_PROB_COLUMNS = ("chosen_win_prob", "rejected_win_prob")


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss or gradient and stopped before the optimizer step."""


@dataclass
class NonFiniteFields:
    """The config field of `FiniteGuardMixin`, shared by the trl-plus configs."""

    on_nonfinite: str = field(
        default="stop",
        metadata={
            "help": "What a NaN or infinite loss or gradient does: 'stop' raises before the optimizer step, naming "
            "the step (the weights are those of the last good step); 'skip' drops that optimizer step's gradients, "
            "counts it (`nonfinite_steps`) and trains on.",
            "choices": list(ON_NONFINITE),
        },
    )

    def __post_init__(self) -> None:
        if self.on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"`on_nonfinite` must be one of {list(ON_NONFINITE)}, got {self.on_nonfinite!r}.")
        super().__post_init__()  # type: ignore[misc]


class FiniteGuardMixin(_Base):
    """Checks the loss and the gradients after every backward pass (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.nonfinite_steps: list[int] = []  # the steps `on_nonfinite="skip"` dropped
        super().__init__(*args, **kwargs)

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        problem = _nonfinite(loss, model)
        if problem is None:
            return loss
        step = self.state.global_step + 1
        if getattr(self.args, "on_nonfinite", "stop") == "skip":
            model.zero_grad(set_to_none=True)  # no gradient: the optimizer leaves the weights and moments alone
            self.nonfinite_steps.append(step)
            logger.warning("Step %d: %s; skipped that optimizer step (on_nonfinite='skip').", step, problem)
            return loss
        raise NonFiniteLossError(
            f"Step {step}: {problem}. Training stopped before the optimizer step, so the model still holds the "
            f"weights of step {step - 1} and nothing broken was saved. Look for rows that make the loss blow up "
            "(empty completions, extreme labels), a too-high learning rate, or half precision overflowing; or set "
            "on_nonfinite='skip' to drop such steps and train on."
        )


def _nonfinite(loss: torch.Tensor, model: Any) -> str | None:
    """What is not finite, or None: the loss first, else the gradients (one device sync for all of them)."""
    if not torch.isfinite(loss).all():
        return f"the loss is {loss.detach().float().mean().item()}"
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    # The max-abs norm is NaN or inf exactly when an entry is, and allocates nothing the size of the gradient.
    peaks = torch.stack([torch.linalg.vector_norm(grad.detach(), float("inf")).float() for _, grad in named])
    if bool(torch.isfinite(peaks).all()):
        return None
    bad = [name for (name, _), peak in zip(named, peaks, strict=True) if not torch.isfinite(peak)]
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return f"the loss is finite ({loss.detach().float().mean().item():.4g}) but the gradient of {shown} is not"


def check_win_probs(dataset: Any, name: str) -> None:
    """Soft-label columns (`chosen_win_prob`, `rejected_win_prob`) must be finite probabilities, checked before
    training rather than found as a NaN loss mid-run. Streaming datasets are not read ahead."""
    columns = getattr(dataset, "column_names", None)
    if not isinstance(columns, list):
        return
    for column in WIN_PROB_COLUMNS:
        if column not in columns:
            continue
        for index, value in enumerate(dataset[column]):
            # NaN fails the range check too.
            if value is None or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(
                    f"Row {index} of the {name} dataset has {column}={value!r}; soft labels are probabilities, "
                    "finite numbers in [0, 1]. Fix or drop the row."
                )
