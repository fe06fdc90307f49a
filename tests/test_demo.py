"""The demo end to end, shortened: tiny model → SFT → preference training → oracle scores → saved models."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from trl_plus.cli import main
from trl_plus.demo import run_demo


@pytest.mark.parametrize("loss", ["dpo", "plackett_luce"])
def test_demo_runs_end_to_end(loss: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_demo(tmp_path, sft_steps=10, loss=loss, steps=3, eval_prompts=16)
    out = capsys.readouterr().out
    assert f"{loss} vs its SFT reference: win rate" in out
    assert 0.0 <= result.aligned_vs_sft.win_rate <= 1.0
    assert result.aligned == tmp_path / loss
    model = AutoModelForCausalLM.from_pretrained(result.aligned)
    assert model.config.vocab_size > 0


def test_demo_command_takes_a_loss_and_its_hyperparameters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = ["--out", str(tmp_path), "--sft-steps", "10", "--steps", "2", "--n", "8"]
    code = main(["demo", *short, "--loss", "simpo,sft", "--loss-kwargs", '{"simpo": {"gamma": 0.3}}'])
    assert code == 0
    assert "simpo,sft vs its SFT reference" in capsys.readouterr().out
    assert (tmp_path / "simpo+sft" / "config.json").exists()  # a folder name without a comma


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "dpoo"], "Unknown loss 'dpoo'"),
        (["--loss", "simpo", "--loss-kwargs", '{"gama": 0.3}'], "'simpo' takes no hyperparameter 'gama'"),
        (["--loss-kwargs", "{"], "--loss-kwargs is not JSON"),
    ],
)
def test_bad_demo_settings_fail_before_building_anything(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_kto_on_the_unpaired_view_beats_its_sft_reference(tmp_path: Path) -> None:
    """The full demo with `kto`: the oracle win rate against the SFT reference, over 512 held-out prompts, has its
    95% confidence interval above ½. (Measured 0.544 [0.513, 0.575]; the same run with chosen and rejected swapped
    gave 0.504 [0.473, 0.536], so the gain comes from the labels.)"""
    result = run_demo(tmp_path, loss="kto", eval_prompts=512)
    assert result.aligned_vs_sft.ci_low > 0.5, result.aligned_vs_sft
