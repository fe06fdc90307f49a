"""Bad input fails before training starts, with a message that says what was wrong and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from trl_plus.registry import UnknownNameError
from trl_plus.synthetic import get_task
from trl_plus.trainers import PreferenceConfig, PreferenceTrainer

TASK = get_task("transitive", seed=0)


def config(tmp_path: Path, **fields: Any) -> PreferenceConfig:
    return PreferenceConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **fields)


def test_unknown_loss_suggests_the_closest_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="simpo"):
        config(tmp_path, loss="simpoo")


def test_loss_weights_must_match_the_losses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loss_weights"):
        config(tmp_path, loss=["dpo", "sft"], loss_weights=[1.0])


def test_a_hyperparameter_the_loss_does_not_take_names_the_loss_and_what_it_takes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"'simpo' takes no hyperparameter 'gama'.*beta=2\.0, gamma=0\.5.*'gamma'"):
        config(tmp_path, loss="simpo", loss_kwargs={"gama": 0.3})


def test_loss_kwargs_for_several_losses_must_be_keyed_by_loss(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keyed by loss name"):
        config(tmp_path, loss=["dpo", "sft"], loss_kwargs={"beta": 0.2})
    resolved = config(tmp_path, loss="dpo,sft", loss_kwargs='{"dpo": {"beta": 0.2}}').loss_kwargs
    assert resolved == {"dpo": {"beta": 0.2}, "sft": {}}


@pytest.mark.parametrize("beta", [0.0, -0.1])
def test_beta_must_be_positive(tmp_path: Path, beta: float) -> None:
    with pytest.raises(ValueError, match=f"beta.*{beta}"):
        config(tmp_path, beta=beta)
    with pytest.raises(ValueError, match="beta"):
        config(tmp_path, loss="ipo", loss_kwargs={"beta": beta})


@pytest.mark.parametrize("smoothing", [-0.1, 0.5, 0.7])
def test_label_smoothing_must_lie_in_zero_to_a_half(tmp_path: Path, smoothing: float) -> None:
    with pytest.raises(ValueError, match=r"label_smoothing.*\[0, 0\.5\)"):
        config(tmp_path, label_smoothing=smoothing)


def test_config_values_reach_only_losses_that_take_them(tmp_path: Path) -> None:
    resolved = config(tmp_path, loss="dpo,simpo,sft", beta=0.3).loss_kwargs
    assert resolved == {"dpo": {"beta": 0.3}, "simpo": {"beta": 0.3}, "sft": {}}
    # None means each loss's own default: SimPO keeps the paper's beta = 2.0.
    assert config(tmp_path, loss="simpo").loss_kwargs == {"simpo": {}}


def test_loss_and_loss_type_may_not_disagree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="disagree"):
        config(tmp_path, loss="simpo", loss_type=["ipo"])
    with pytest.raises(ValueError, match="disagree"):  # TRL's default name, set by hand, is not ignored either
        config(tmp_path, loss="simpo", loss_type="sigmoid")
    assert config(tmp_path, loss_type=["sigmoid"]).loss == ["sigmoid"]
    assert config(tmp_path).loss == ["sigmoid"]  # neither set: TRL's default
    assert config(tmp_path, loss="dpo", loss_type=["sigmoid"]).loss == ["dpo"]  # aliases agree


def test_unpaired_losses_point_to_the_unpaired_trainer(tmp_path: Path) -> None:
    from trl_plus.registry import LOSSES, register_loss
    from trl_plus.types import LossOutput, UnpairedLogps

    @register_loss("thumbs_test", requires_reference=False)
    def thumbs_test(lp: UnpairedLogps) -> LossOutput:
        return LossOutput(-lp.logps)

    try:
        with pytest.raises(ValueError, match="UnpairedPreferenceTrainer"):
            config(tmp_path, loss="thumbs_test")
    finally:
        LOSSES.remove("thumbs_test")


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"use_weighting": True}, "full logits.*Use TRL's DPOTrainer for WPO"),  # names the alternative
        ({"f_divergence_type": "js_divergence", "loss": "simpo"}, r"use the log-probs otherwise"),
        ({"f_divergence_type": "chi2"}, "must be one of"),
        ({"ld_alpha": 1.5}, r"must lie in \[0, 1\]"),
    ],
)
def test_dpo_config_features_are_checked(tmp_path: Path, fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config(tmp_path, **fields)


# ---- dataset checks: raised by the trainer before any model is loaded (the model path does not exist) ----------

MISSING_MODEL = "/nonexistent/model"


def trainer(tmp_path: Path, data: Dataset, **fields: Any) -> PreferenceTrainer:
    return PreferenceTrainer(MISSING_MODEL, args=config(tmp_path, **fields), train_dataset=data)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    data = Dataset.from_dict({"prompt": ["a"], "answer": ["b"]})
    with pytest.raises(ValueError, match=r"`chosen` and `rejected`.*`completions`.*\['answer', 'prompt'\]"):
        trainer(tmp_path, data)


def test_a_listwise_loss_on_pairs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"listwise.*ranked dataset"):
        trainer(tmp_path, TASK.preference_dataset(4), loss="plackett_luce")


@pytest.mark.parametrize("column", ["chosen", "rejected"])
def test_empty_completions_are_refused(tmp_path: Path, column: str) -> None:
    data = TASK.preference_dataset(4).to_dict()
    data[column][2] = "  "
    with pytest.raises(ValueError, match=f"Row 2 .* empty `{column}`"):
        trainer(tmp_path, Dataset.from_dict(data))


def test_ranked_lists_need_two_completions(tmp_path: Path) -> None:
    data = Dataset.from_dict({"prompt": ["p", "q"], "completions": [["a", "b"], ["c"]]})
    with pytest.raises(ValueError, match=r"Row 1 .* 1 completion"):
        trainer(tmp_path, data, loss="plackett_luce")


def test_soft_sppo_without_its_column_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chosen_win_prob"):
        trainer(tmp_path, TASK.preference_dataset(4), loss="sppo")


def test_out_of_range_loss_specific_values_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"exo_pair.*label_smoothing"):
        trainer(tmp_path, TASK.preference_dataset(4), loss="exo_pair", loss_kwargs={"label_smoothing": 0.0})


EMPTY_PAIRS = Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (EMPTY_PAIRS, "The train dataset is empty"),
        (
            Dataset.from_dict({"prompt": ["a", "b"], "chosen": [1, 2], "rejected": ["y", "z"]}),
            r"Row 0 .*`chosen`=1 \(int\)",
        ),
        (
            Dataset.from_dict({"prompt": ["a", None], "chosen": ["x", "w"], "rejected": ["y", "z"]}),
            r"Row 1 .*`prompt`=None",
        ),
    ],
)
def test_empty_datasets_and_non_text_rows_are_named(tmp_path: Path, data: Dataset, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        trainer(tmp_path, data)


def test_the_other_trainers_name_an_empty_or_blank_dataset_too(tmp_path: Path) -> None:
    from trl_plus.trainers import (
        RewardModelConfig,
        RewardModelTrainer,
        UnpairedPreferenceConfig,
        UnpairedPreferenceTrainer,
    )

    with pytest.raises(ValueError, match="The train dataset is empty"):
        RewardModelTrainer(
            MISSING_MODEL, args=RewardModelConfig(output_dir=str(tmp_path), use_cpu=True), train_dataset=EMPTY_PAIRS
        )
    blank = Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", " "], "label": [True, False]})
    with pytest.raises(ValueError, match="Row 1 of the train dataset has an empty `completion`"):
        UnpairedPreferenceTrainer(
            MISSING_MODEL, args=UnpairedPreferenceConfig(str(tmp_path), use_cpu=True), train_dataset=blank
        )


@pytest.mark.parametrize(
    ("make_model", "message"),
    [
        (lambda root: root / "model.safetensors", "is a file; pass the folder that holds its config.json"),
        (lambda root: root / "nowhere", "does not exist, and it is not a Hub model id either"),
        (lambda root: "./nowhere", "'./nowhere' does not exist"),
    ],
)
def test_a_model_path_that_is_a_file_or_missing_is_named(tmp_path: Path, make_model: Any, message: str) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    model = str(make_model(tmp_path))
    with pytest.raises(ValueError, match=message):
        PreferenceTrainer(model, args=config(tmp_path), train_dataset=TASK.preference_dataset(4))


def test_a_max_length_that_drops_every_row_says_so(llama: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"at least max_length=2 tokens.*truncation_mode='keep_end'"):
        PreferenceTrainer(str(llama), args=config(tmp_path, max_length=2), train_dataset=TASK.preference_dataset(4))


def test_hub_tags_keep_trls_and_add_trl_plus() -> None:
    """Models trained with the drop-in trainers stay in TRL's Hub listings (its `dpo`, `kto`, `reward-trainer`
    tags) and are findable as trl-plus models."""
    from trl import DPOTrainer, KTOTrainer, RewardTrainer

    from trl_plus.trainers import PreferenceTrainer, RewardModelTrainer, UnpairedPreferenceTrainer

    for ours, theirs in (
        (PreferenceTrainer, DPOTrainer),
        (UnpairedPreferenceTrainer, KTOTrainer),
        (RewardModelTrainer, RewardTrainer),
    ):
        assert set(theirs._tag_names) <= set(ours._tag_names) and "trl-plus" in ours._tag_names
