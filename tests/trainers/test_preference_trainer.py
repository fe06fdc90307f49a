"""PreferenceTrainer beyond parity: reference-free losses, ranked lists, combinations, soft labels, drop-in use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from trl_plus.registry import LOSSES, register_loss
from trl_plus.synthetic import get_task
from trl_plus.testing import first_step, max_relative_difference, perturbed_copy
from trl_plus.trainers import PreferenceConfig, PreferenceTrainer
from trl_plus.trainers._state import LOSS_STATE_FILE
from trl_plus.trainers.preference import ranked_pairs
from trl_plus.types import LossOutput, PairedLogps

TASK = get_task("transitive", seed=0)


@pytest.fixture(scope="module")
def pairs() -> Dataset:
    return TASK.preference_dataset(8, seed=0)


@pytest.mark.parametrize("loss", ["simpo", "cpo", "orpo", "sft"])
def test_reference_free_losses_never_load_or_run_a_reference(
    loss: str, llama: Path, pairs: Dataset, training_args: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_reference(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the reference model ran")

    monkeypatch.setattr(PreferenceTrainer, "_reference_logps", no_reference)
    trainer = PreferenceTrainer(str(llama), args=PreferenceConfig(loss=loss, **training_args()), train_dataset=pairs)
    assert trainer.ref_model is None
    trainer.train()
    assert trainer.state.global_step == 1


def test_a_reference_loss_gets_a_reference_model(llama: Path, pairs: Dataset, training_args: Any) -> None:
    """The control for the test above: the same set-up with `dpo` does build a reference."""
    trainer = PreferenceTrainer(str(llama), args=PreferenceConfig(loss="dpo", **training_args()), train_dataset=pairs)
    assert trainer.ref_model is not None


def test_reference_free_with_precompute_skips_the_precompute(llama: Path, pairs: Dataset, training_args: Any) -> None:
    args = PreferenceConfig(loss="simpo", precompute_ref_log_probs=True, **training_args())
    trainer = PreferenceTrainer(str(llama), args=args, train_dataset=pairs)
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    assert trainer.ref_model is None


def test_plackett_luce_on_two_item_lists_is_dpo_on_the_pairs(llama: Path, training_args: Any) -> None:
    """Plackett-Luce over K = 2 is DPO, so the ranked path (collator, rank index, RankedLogps) must reproduce the
    paired path on the same data: same loss and gradients at step 1."""
    pairs = TASK.preference_dataset(8, seed=3)
    ranked = Dataset.from_dict(
        {"prompt": pairs["prompt"], "completions": list(zip(pairs["chosen"], pairs["rejected"], strict=True))}
    )
    common = {**training_args(), "logprob_path": "chunked"}
    paired = first_step(
        lambda: PreferenceTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=PreferenceConfig(loss="dpo", **common),
            train_dataset=pairs,
        )
    )
    listwise = first_step(
        lambda: PreferenceTrainer(
            str(llama),
            ref_model=perturbed_copy(llama),
            args=PreferenceConfig(loss="plackett_luce", **common),
            train_dataset=ranked,
        )
    )
    assert listwise.loss == pytest.approx(paired.loss, rel=1e-6)
    assert max_relative_difference(paired.grads, listwise.grads) < 1e-5


def test_ragged_ranked_lists_train_listwise_and_pairwise(llama: Path, training_args: Any) -> None:
    ranked = TASK.ranked_dataset(8, k=4, min_k=2, seed=0)
    for loss in ("plackett_luce", "dpo"):
        trainer = PreferenceTrainer(
            str(llama), args=PreferenceConfig(loss=loss, **training_args(max_steps=2)), train_dataset=ranked
        )
        trainer.train()
        logged = trainer.state.log_history[0]
        assert torch.isfinite(torch.tensor(logged["loss"]))
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= logged.keys()
        # A loss's own metrics are logged under its name.
        assert ("plackett_luce/ranking_accuracy" in logged) == (loss == "plackett_luce")


def test_ranked_pairs_all_and_adjacent() -> None:
    # Row 0 ranks sequences 0 > 1 > 2; row 1 ranks 3 > 4 and has no third completion.
    index = torch.tensor([[0, 1, 2], [3, 4, -1]])
    better, worse = ranked_pairs(index)
    assert sorted(zip(better.tolist(), worse.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    better, worse = ranked_pairs(index, adjacent=True)
    assert sorted(zip(better.tolist(), worse.tolist(), strict=True)) == [(0, 1), (1, 2), (3, 4)]


def test_combined_losses_log_each_component(llama: Path, pairs: Dataset, training_args: Any) -> None:
    args = PreferenceConfig(loss=["dpo", "sft"], loss_weights=[1.0, 0.5], **training_args())
    trainer = PreferenceTrainer(str(llama), args=args, train_dataset=pairs)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["loss"] == pytest.approx(logged["loss/dpo"] + 0.5 * logged["loss/sft"], rel=1e-4)


def test_soft_sppo_reads_the_win_probability_column(llama: Path, training_args: Any) -> None:
    """With P̂ = 1 for every chosen completion, soft SPPO is sppo_hard: the column must reach the loss."""
    data = TASK.preference_dataset(8, seed=0)
    certain = data.add_column("chosen_win_prob", [1.0] * len(data))
    common = training_args()
    soft = first_step(
        lambda: PreferenceTrainer(str(llama), args=PreferenceConfig(loss="sppo", **common), train_dataset=certain)
    )
    hard = first_step(
        lambda: PreferenceTrainer(str(llama), args=PreferenceConfig(loss="sppo_hard", **common), train_dataset=data)
    )
    assert soft.loss == pytest.approx(hard.loss, rel=1e-6)
    halves = data.add_column("chosen_win_prob", [0.5] * len(data))
    neutral = first_step(
        lambda: PreferenceTrainer(str(llama), args=PreferenceConfig(loss="sppo", **common), train_dataset=halves)
    )
    assert neutral.loss == pytest.approx(0.0, abs=1e-3)  # policy = reference, P̂ = ½: targets 0 (hard: 50)


def test_a_dpo_config_is_accepted_as_is(llama: Path, pairs: Dataset, training_args: Any) -> None:
    """Drop-in: the DPOTrainer script's own DPOConfig, handed to PreferenceTrainer, trains identically."""
    config = DPOConfig(loss_type=["ipo"], beta=0.2, **training_args())
    trl = first_step(lambda: DPOTrainer(str(llama), ref_model=perturbed_copy(llama), args=config, train_dataset=pairs))
    ours = first_step(
        lambda: PreferenceTrainer(str(llama), ref_model=perturbed_copy(llama), args=config, train_dataset=pairs)
    )
    assert isinstance(ours.trainer.args, PreferenceConfig)
    assert ours.trainer.args.loss_kwargs == {"ipo": {"beta": 0.2}}
    assert ours.loss == pytest.approx(trl.loss, rel=1e-5)


def test_logprob_paths_agree(llama: Path, pairs: Dataset, training_args: Any) -> None:
    steps = {
        path: first_step(
            lambda path=path: PreferenceTrainer(
                str(llama),
                ref_model=perturbed_copy(llama),
                args=PreferenceConfig(loss="dpo", logprob_path=path, **training_args()),
                train_dataset=pairs,
            )
        )
        for path in ("fused", "chunked", "logits")
    }
    for path in ("chunked", "logits"):
        assert steps[path].loss == pytest.approx(steps["fused"].loss, rel=1e-5)
        assert max_relative_difference(steps["fused"].grads, steps[path].grads) < 1e-5


def test_auto_path_is_chunked_on_cpu(llama: Path, pairs: Dataset, training_args: Any) -> None:
    trainer = PreferenceTrainer(str(llama), args=PreferenceConfig(loss="simpo", **training_args()), train_dataset=pairs)
    assert trainer.logprob_path == "chunked"


@dataclass
class _StepCount:
    """A toy loss state: it counts training calls and hands the count to the loss as `offset`."""

    provides: ClassVar[tuple[str, ...]] = ("offset",)
    calls: int = 0

    def step(self, inputs: Any, hyperparameters: dict[str, Any], *, update: bool, mean: Any) -> dict[str, Any]:
        self.calls += int(update)
        return {"offset": float(self.calls)}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]


def test_a_paired_loss_with_state_gets_it_and_checkpoints_it(llama: Path, pairs: Dataset, training_args: Any) -> None:
    """The state mechanism is the trainers' shared one: PreferenceTrainer fills `offset` and saves the state too."""
    seen: list[float] = []

    @register_loss("counted_test", requires_reference=False, state=_StepCount)
    def counted_test(lp: PairedLogps, *, offset: float = 0.0) -> LossOutput:
        seen.append(offset)
        return LossOutput(-lp.chosen_logps / lp.chosen_lengths)

    try:
        with pytest.raises(ValueError, match=r"gets \['offset'\] from its running state"):
            PreferenceConfig(loss="counted_test", loss_kwargs={"offset": 1.0}, **training_args())
        config = PreferenceConfig(
            loss="counted_test", **training_args(max_steps=2, save_strategy="steps", save_steps=2)
        )
        trainer = PreferenceTrainer(str(llama), args=config, train_dataset=pairs)
        trainer.train()
        assert seen[-2:] == [1.0, 2.0]
        saved = json.loads((Path(config.output_dir) / "checkpoint-2" / LOSS_STATE_FILE).read_text())
        assert saved == {"counted_test": {"calls": 2}}
    finally:
        LOSSES.remove("counted_test")
