"""The demo end to end, shortened: tiny model → SFT → preference training → oracle scores → saved models."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from trl_plus.cli import main
from trl_plus.demo import run_demo


@pytest.mark.parametrize(
    ("method", "loss", "rounds"), [("offline", "dpo", 1), ("offline", "plackett_luce", 1), ("iterative", "dpo", 2)]
)
def test_demo_runs_end_to_end(
    method: str, loss: str, rounds: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_demo(
        tmp_path, method=method, sft_steps=10, loss=loss, steps=3, rounds=rounds, pairs=48, eval_prompts=16
    )
    out = capsys.readouterr().out
    assert f"{loss} vs its SFT reference: win rate" in out
    assert "the same on training prompts: win rate" in out  # the demo's task holds its evaluation prompts out
    assert "ceilings (exact" in out and "KL-regularised optimum at β 0.1" in out
    assert 0.0 <= result.aligned_vs_sft.win_rate <= 1.0 and result.on_training_prompts is not None
    folder = tmp_path / f"{method}-{loss}"
    assert result.aligned == (folder if method == "offline" else folder / "round-02")
    # Offline losses learn from the preference data directly; the iterative loop from the reward model trained on it.
    assert ("reward model: agreement with the oracle" in out) == (method == "iterative")
    assert (tmp_path / "reward").is_dir() == (method == "iterative")
    if rounds > 1:
        assert "round 2/2:" in out and "ranked by the reward model" in out
    model = AutoModelForCausalLM.from_pretrained(result.aligned)
    assert model.config.vocab_size > 0


@pytest.mark.parametrize("method", ["rft", "ppo", "nash_md"])
def test_every_method_runs_against_the_reward_model(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_demo(tmp_path, method=method, sft_steps=5, steps=2, rounds=2, pairs=32, eval_prompts=8)
    out = capsys.readouterr().out
    assert "reward model: agreement with the oracle" in out
    assert "against the reward model" in out or "by the reward model" in out
    assert f"{method} vs its SFT reference: win rate" in out
    assert result.aligned == (tmp_path / method / "round-02" if method == "rft" else tmp_path / method)
    assert AutoModelForCausalLM.from_pretrained(result.aligned).config.vocab_size > 0


def test_the_oracle_can_judge_instead_of_a_reward_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_demo(tmp_path, method="iterative", judge="oracle", sft_steps=5, steps=1, rounds=1, eval_prompts=4)
    out = capsys.readouterr().out
    assert "the oracle itself judges" in out and "ranked by the oracle" in out
    assert not (tmp_path / "reward").exists()


def test_the_recipe_fills_what_is_not_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The packing recipe's loss weights go with its own losses only: a loss given alone weighs equally."""
    run_demo(tmp_path / "a", method="iterative", sft_steps=5, steps=1, rounds=2, pairs=16, eval_prompts=4)
    assert "loss=dpo,sft (weights 1, 0.2): 2 rounds × 1 steps" in capsys.readouterr().out
    run_demo(tmp_path / "b", method="offline", sft_steps=5, loss=["dpo", "sft"], steps=1, pairs=16, eval_prompts=4)
    out = capsys.readouterr().out
    assert "loss=dpo,sft for 1 steps" in out and "weights" not in out


def test_demo_command_takes_a_loss_and_its_hyperparameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = ["--out", str(tmp_path), "--sft-steps", "10", "--steps", "2", "--pairs", "32", "--n", "8"]
    code = main(
        ["demo", *short, "--method", "offline", "--loss", "simpo,sft", "--loss-kwargs", '{"simpo": {"gamma": 0.3}}']
    )
    assert code == 0
    assert "simpo,sft vs its SFT reference" in capsys.readouterr().out
    assert (tmp_path / "offline-simpo+sft" / "config.json").exists()  # a folder name without a comma


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "dpoo"], "Unknown loss 'dpoo'"),
        (["--loss", "simpo", "--loss-kwargs", '{"gama": 0.3}'], "'simpo' takes no hyperparameter 'gama'"),
        (["--loss-kwargs", "{"], "--loss-kwargs is not JSON"),
        (["--loss-weights", "1,x"], "--loss-weights takes numbers"),
        (["--loss", "dpo,sft", "--loss-weights", "1"], "Got 1 loss weights for 2 losses"),
        (["--rounds", "0"], "rounds and steps must be at least 1"),
        (["--method", "ppo", "--loss", "simpo"], "A loss and its settings are for the iterative and offline methods"),
    ],
)
def test_bad_demo_settings_fail_before_building_anything(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--method", "iterative", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_an_unknown_method_or_judge_fails_before_building_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown method 'dpo'; the demo runs one of iterative, offline"):
        run_demo(tmp_path, method="dpo")
    with pytest.raises(ValueError, match="Unknown judge 'human'"):
        run_demo(tmp_path, judge="human")
    assert not any(tmp_path.iterdir())


def test_kto_on_the_unpaired_view_beats_its_sft_reference(tmp_path: Path) -> None:
    """The full demo with `kto`: the oracle win rate against the SFT reference, over 512 held-out prompts, has its
    95% confidence interval above ½. (Measured 0.544 [0.513, 0.575]; the same run with chosen and rejected swapped
    gave 0.504 [0.473, 0.536], so the gain comes from the labels.)"""
    result = run_demo(tmp_path, task_name="transitive", loss="kto", eval_prompts=512)
    assert result.aligned == tmp_path / "offline-kto"  # transitive's demo: one offline round
    assert result.aligned_vs_sft.ci_low > 0.5, result.aligned_vs_sft


@pytest.mark.slow
def test_the_default_demo_wins_on_held_out_prompts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's first command as it runs by default: `rft` on packing, judged by the reward model, scored by the
    oracle on held-out prompts. Measured 0.758 [0.740, 0.777] (seed 0, 165 s alone on two cores); the bound is the
    issue's, an interval above 0.7, so a different CPU's rounding cannot flip it while a broken recipe would (the
    SFT model against itself scores ½)."""
    result = run_demo(tmp_path)
    out = capsys.readouterr().out
    assert "fp32" in out and "12 rounds × 100 steps of 12 rows" in out
    assert result.aligned == tmp_path / "rft" / "round-12"
    assert result.aligned_vs_sft.ci_low > 0.7, result.aligned_vs_sft
    assert result.aligned_vs_sft.valid_a > 0.9, result.aligned_vs_sft
