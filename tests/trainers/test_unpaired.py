"""UnpairedPreferenceTrainer against TRL's KTOTrainer: same tiny model, data, seed and (perturbed) reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from trl import KTOConfig, KTOTrainer

from trl_plus.synthetic import get_task
from trl_plus.testing import first_step, max_relative_difference, perturbed_copy
from trl_plus.trainers import UnpairedPreferenceConfig, UnpairedPreferenceTrainer


@pytest.fixture(scope="module")
def thumbs() -> Dataset:
    return get_task("transitive", seed=0).unpaired_dataset(8, seed=0)


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
def test_one_step_matches_kto_trainer(loss_type: str, llama: Path, thumbs: Dataset, training_args: Any) -> None:
    common = training_args(desirable_weight=1.5, undesirable_weight=0.8)

    def step(trainer_class: Any, config: Any) -> Any:
        return first_step(
            lambda: trainer_class(str(llama), ref_model=perturbed_copy(llama), args=config, train_dataset=thumbs)
        )

    trl = step(KTOTrainer, KTOConfig(loss_type=loss_type, **common))
    ours = step(UnpairedPreferenceTrainer, UnpairedPreferenceConfig(loss=loss_type, **common))
    assert ours.loss == pytest.approx(trl.loss, rel=1e-5, abs=1e-7)
    assert max_relative_difference(trl.grads, ours.grads) < 1e-5


def test_a_kto_config_is_accepted_as_is(llama: Path, thumbs: Dataset, training_args: Any) -> None:
    trainer = UnpairedPreferenceTrainer(str(llama), args=KTOConfig(beta=0.2, **training_args()), train_dataset=thumbs)
    assert trainer.args.loss == ["kto"]
    assert trainer.args.loss_kwargs == {"kto": {"beta": 0.2, "desirable_weight": 1.0, "undesirable_weight": 1.0}}
    trainer.train()
    assert "kl" in trainer.state.log_history[0]


def test_paired_losses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PreferenceTrainer"):
        UnpairedPreferenceConfig(output_dir=str(tmp_path), loss="dpo", use_cpu=True)
