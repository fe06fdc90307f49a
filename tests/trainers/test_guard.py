"""A NaN never trains silently: a non-finite loss or gradient stops training before the optimizer step (or skips
the step with `on_nonfinite="skip"`), and bad soft labels fail before training."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from trl_plus.registry import LOSSES, register_loss
from trl_plus.synthetic import get_task
from trl_plus.trainers import (
    PreferenceConfig,
    PreferenceTrainer,
    RewardModelConfig,
    RewardModelTrainer,
    UnpairedPreferenceConfig,
    UnpairedPreferenceTrainer,
)
from trl_plus.trainers._guard import NonFiniteLossError
from trl_plus.types import LossOutput, PairedLogps, UnpairedLogps

TASK = get_task("transitive", seed=0)
CALLS = {"count": 0}


@pytest.fixture
def broken_losses() -> Iterator[None]:
    """`nan_paired` / `nan_unpaired` return NaN; `nan_grad` is 0 with an infinite gradient (√0); `nan_second`
    returns NaN on its second training call only."""

    @register_loss("nan_paired", requires_reference=False)
    def nan_paired(lp: PairedLogps) -> LossOutput:
        return LossOutput(lp.chosen_logps * float("nan"))

    @register_loss("nan_unpaired", requires_reference=False)
    def nan_unpaired(lp: UnpairedLogps) -> LossOutput:
        return LossOutput(lp.logps * float("nan"))

    @register_loss("nan_grad", requires_reference=False)
    def nan_grad(lp: PairedLogps) -> LossOutput:
        return LossOutput((lp.chosen_logps - lp.chosen_logps.detach()).sqrt())

    @register_loss("nan_second", requires_reference=False)
    def nan_second(lp: PairedLogps) -> LossOutput:
        CALLS["count"] += 1
        losses = -lp.chosen_logps / 10
        return LossOutput(losses * float("nan") if CALLS["count"] == 3 else losses)  # call 1 is the preflight

    yield
    for name in ("nan_paired", "nan_unpaired", "nan_grad", "nan_second"):
        LOSSES.remove(name)


def weights(trainer: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


@pytest.mark.parametrize(
    ("loss", "message"),
    [("nan_paired", "Step 1: the loss is nan"), ("nan_grad", "the loss is finite (0) but the gradient of model.")],
)
def test_a_nan_loss_or_gradient_stops_before_the_weights_change(
    broken_losses: None, loss: str, message: str, llama: Path, training_args: Any, tmp_path: Path
) -> None:
    args = PreferenceConfig(loss=loss, **training_args(max_steps=3, save_strategy="steps", save_steps=1))
    trainer = PreferenceTrainer(str(llama), args=args, train_dataset=TASK.preference_dataset(12))
    before = weights(trainer)
    with pytest.raises(NonFiniteLossError, match=message.replace("(", r"\(").replace(")", r"\)")):
        trainer.train()
    after = weights(trainer)
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert not list(tmp_path.glob("checkpoint-*"))  # nothing saved, not even step 1


def test_the_unpaired_trainer_stops_too(broken_losses: None, llama: Path, training_args: Any) -> None:
    args = UnpairedPreferenceConfig(loss="nan_unpaired", **training_args())
    trainer = UnpairedPreferenceTrainer(str(llama), args=args, train_dataset=TASK.unpaired_dataset(8))
    with pytest.raises(NonFiniteLossError, match="Step 1: the loss is nan"):
        trainer.train()


def test_skip_drops_the_bad_step_and_trains_on(broken_losses: None, llama: Path, training_args: Any) -> None:
    CALLS["count"] = 0
    args = PreferenceConfig(loss="nan_second", on_nonfinite="skip", **training_args(max_steps=3))
    trainer = PreferenceTrainer(str(llama), args=args, train_dataset=TASK.preference_dataset(12))
    before = weights(trainer)
    trainer.train()
    assert trainer.nonfinite_steps == [2]
    after = weights(trainer)
    assert all(torch.isfinite(value).all() for value in after.values())
    assert any(not torch.equal(before[name], after[name]) for name in before)  # steps 1 and 3 trained


def test_on_nonfinite_must_be_stop_or_skip(training_args: Any) -> None:
    with pytest.raises(ValueError, match=r"`on_nonfinite` must be one of \['stop', 'skip'\], got 'ignore'"):
        PreferenceConfig(on_nonfinite="ignore", **training_args())


@pytest.mark.parametrize("bad", [float("nan"), 1.5, None])
def test_soft_labels_are_checked_before_training(bad: Any, llama: Path, training_args: Any) -> None:
    rows = TASK.preference_dataset(4).to_list()
    probs = [0.7, 0.6, bad, 0.9]
    data = Dataset.from_list([{**row, "chosen_win_prob": p} for row, p in zip(rows, probs, strict=True)])
    with pytest.raises(ValueError, match=f"Row 2 of the train dataset has chosen_win_prob={bad!r}"):
        PreferenceTrainer(str(llama), args=PreferenceConfig(loss="sppo", **training_args()), train_dataset=data)
    with pytest.raises(ValueError, match=f"Row 2 of the train dataset has chosen_win_prob={bad!r}"):
        RewardModelTrainer(str(llama), args=RewardModelConfig(**training_args()), train_dataset=data)
