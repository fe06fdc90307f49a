"""UnpairedPreferenceTrainer against TRL's KTOTrainer: same tiny model, data, seed and (perturbed) reference."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from trl import KTOConfig, KTOTrainer

from trl_plus.synthetic import get_task
from trl_plus.testing import first_step, max_relative_difference, perturbed_copy, qlora_kwargs, train_adapters_only
from trl_plus.trainers import UnpairedPreferenceConfig, UnpairedPreferenceTrainer, unpaired_view
from trl_plus.trainers._state import LOSS_STATE_FILE


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


def test_bco_baseline_survives_a_save_and_resume(llama: Path, thumbs: Dataset, training_args: Any) -> None:
    """Four steps straight through and two steps resumed from the step-2 checkpoint end on the same baseline; a
    resume that lost the state would count 2 steps, not 4."""

    def trainer(output_dir: Path) -> UnpairedPreferenceTrainer:
        config = UnpairedPreferenceConfig(
            loss="bco", **training_args(output_dir=str(output_dir), max_steps=4, save_strategy="steps", save_steps=2)
        )
        return UnpairedPreferenceTrainer(str(llama), ref_model=perturbed_copy(llama), args=config, train_dataset=thumbs)

    straight = trainer(tmp := Path(training_args()["output_dir"]) / "straight")
    straight.train()
    saved = json.loads((tmp / "checkpoint-2" / LOSS_STATE_FILE).read_text())["bco"]
    assert saved["count"] == 2
    final = straight.loss_states["bco"].state_dict()
    assert final["count"] == 4 and final["mean"] != 0.0

    resumed = trainer(Path(training_args()["output_dir"]) / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp / "checkpoint-2"))
    assert resumed.loss_states["bco"].state_dict() == {"mean": pytest.approx(final["mean"], rel=1e-4), "count": 4}
    assert "bco/baseline" in straight.state.log_history[0]


def test_sft_means_the_unpaired_sft_and_combines_with_kto(llama: Path, thumbs: Dataset, training_args: Any) -> None:
    config = UnpairedPreferenceConfig(
        loss="kto,sft", loss_weights=[1.0, 0.5], loss_kwargs={"sft": {}}, **training_args(max_steps=2)
    )
    trainer = UnpairedPreferenceTrainer(str(llama), ref_model=perturbed_copy(llama), args=config, train_dataset=thumbs)
    assert trainer.args.loss == ["kto", "sft_unpaired"]
    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss/kto" in log]
    assert len(steps) == 2
    assert max(log["loss/sft_unpaired"] for log in steps) > 0  # a batch may hold no desirable row: then 0


def _rows(labels: list[Any], **extra: Any) -> Dataset:
    rows = [{"prompt": "p", "completion": f" c{i}", "label": label} for i, label in enumerate(labels)]
    return Dataset.from_list([{**row, **extra} for row in rows])


@pytest.mark.parametrize(
    ("dataset", "error", "match"),
    [
        (_rows([True, True, True]), ValueError, r"Every label .* desirable \(True\)"),
        (_rows([False, False]), ValueError, r"Every label .* undesirable \(False\)"),
        (_rows([1, 0, 1]), TypeError, r"`label` column must hold booleans.*int64.*cast_column"),
        (_rows(["good", "bad"]), TypeError, r"must hold booleans.*string"),
        (_rows([True, False]).remove_columns("prompt"), ValueError, r"no \['prompt'\] column"),
        (_rows([True, False]).rename_column("label", "thumbs"), ValueError, r"no \['label'\] column"),
    ],
)
def test_bad_datasets_fail_before_any_model_loads(dataset: Dataset, error: type, match: str, tmp_path: Path) -> None:
    config = UnpairedPreferenceConfig(output_dir=str(tmp_path), use_cpu=True)
    with pytest.raises(error, match=match):
        UnpairedPreferenceTrainer("no/such-model", args=config, train_dataset=dataset)


def test_unknown_losses_and_state_hyperparameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Unknown loss 'ktoo'.*'kto'"):
        UnpairedPreferenceConfig(output_dir=str(tmp_path), loss="ktoo", use_cpu=True)
    with pytest.raises(ValueError, match=r"gets \['baseline'\] from its running state"):
        UnpairedPreferenceConfig(output_dir=str(tmp_path), loss="bco", loss_kwargs={"baseline": 0.3}, use_cpu=True)


@pytest.mark.parametrize(
    ("labels", "weights", "warns"),
    [
        ([True] * 6 + [False] * 2, {}, True),  # 3:1
        ([True] * 6 + [False] * 2, {"undesirable_weight": 2.5}, False),  # 6:5 sits in [1, 4/3]
        ([True, False] * 4, {}, False),
        ([True, False] * 4, {"desirable_weight": 2.0}, True),
    ],
)
def test_class_ratio_warning(
    labels: list[bool], weights: dict[str, float], warns: bool, llama: Path, training_args: Any
) -> None:
    config = UnpairedPreferenceConfig(loss="kto", **weights, **training_args())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        UnpairedPreferenceTrainer(str(llama), args=config, train_dataset=_rows(labels))
    advice = [str(w.message) for w in caught if "KTO paper recommends" in str(w.message)]
    assert bool(advice) == warns, advice


def test_qlora_trains_the_adapters_only(llama: Path, thumbs: Dataset, training_args: Any) -> None:
    config = UnpairedPreferenceConfig(loss="kto", **training_args(max_steps=2))
    train_adapters_only(UnpairedPreferenceTrainer(str(llama), args=config, train_dataset=thumbs, **qlora_kwargs()))


def test_unpaired_view_turns_each_pair_into_two_labelled_rows() -> None:
    pairs = get_task("transitive", seed=0).preference_dataset(6, seed=0)
    view = unpaired_view(pairs, seed=0)
    assert sorted(view.column_names) == ["completion", "label", "prompt"]
    assert len(view) == 12 and sum(view["label"]) == 6
    assert sorted(view.filter(lambda row: row["label"])["completion"]) == sorted(pairs["chosen"])
    assert view["label"] != [True] * 6 + [False] * 6  # shuffled, so batches mix both classes
    with pytest.raises(ValueError, match="takes prompt/chosen/rejected pairs"):
        unpaired_view(view)


@pytest.mark.parametrize(
    ("name", "expected"), [("sft", "sft_unpaired"), ("apo_zero", "apo_zero_unpaired"), ("kto", "kto")]
)
def test_paired_names_with_an_unpaired_twin_map_to_it(name: str, expected: str, tmp_path: Path) -> None:
    assert UnpairedPreferenceConfig(output_dir=str(tmp_path), loss=name, use_cpu=True).loss == [expected]


def test_aot_unpaired_is_paired_and_refused(tmp_path: Path) -> None:
    """`aot_unpaired` is AOT over unpaired *batches* of pairs, not a twin: `aot` stays a paired loss, refused here."""
    with pytest.raises(ValueError, match="'aot' takes paired data"):
        UnpairedPreferenceConfig(output_dir=str(tmp_path), loss="aot", use_cpu=True)
