"""`python -m trl_plus.reward_hacking` with tiny settings: the table, the curves' CSV and the PNG are written and
well-formed. (Whether the reward gets hacked is the experiment's finding, not asserted here.)"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from trl_plus.reward_hacking import CSV_COLUMNS, ENSEMBLE, LARGE, SMALL, Settings, SpacedReward, main


@pytest.mark.slow
def test_a_tiny_run_writes_the_table_the_curves_and_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "docs" / "hacking.png"
    tiny = ["--sft-steps", "10", "--pairs", "16", "--rm-epochs", "1", "--steps", "8", "--eval-every", "4", "--n", "8"]
    assert main([*tiny, "--out", str(tmp_path / "out"), "--plot", str(png)]) == 0
    out = capsys.readouterr().out

    with (tmp_path / "out" / "curves.csv").open() as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    runs = [SMALL, LARGE, ENSEMBLE]
    assert [row["run"] for row in rows] == [run for run in runs for _ in range(3)]
    assert [int(row["step"]) for row in rows] == [0, 4, 8] * 3
    assert [float(row["kl_coef"]) for row in rows[::3]] == [0.01, 0.2, 0.01]
    for row in rows:
        assert 0.0 <= float(row["win_rate"]) <= 1.0 and 0.0 <= float(row["well_formed"]) <= 1.0, row
        assert all(math.isfinite(float(row[c])) for c in ("rm_score", "win_rate_stderr", "kl", "kl_stderr")), row
        # PPO logs every --eval-every steps (a rollout serves 4 steps, one per PPO epoch); step 0 precedes them all.
        assert (row["train_score"] == "") == (row["step"] == "0"), row
    starts = [row for row in rows if row["step"] == "0"]
    # Every run starts from the same SFT policy, evaluated on the same prompts and seed: its KL to itself is 0 and
    # the win rate is the same; the two bt runs also share the learned reward's score.
    assert all(float(row["kl"]) == 0.0 for row in starts)
    assert len({row["win_rate"] for row in starts}) == 1
    assert starts[0]["rm_score"] == starts[1]["rm_score"]

    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | reward | kl_coef | final win rate")
    assert [line.split(" | ")[0].removeprefix("| ") for line in table[1:]] == runs
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_spaced_reward_restores_the_leading_space_only_where_it_is_missing() -> None:
    seen: list[list[object]] = []

    def reward(prompts: list[object], completions: list[object], **kwargs: object) -> list[float]:
        seen.append(completions)
        return [0.0] * len(completions)

    messages = [{"role": "assistant", "content": "kite map"}]
    SpacedReward(reward)(["p"] * 3, ["kite map", " kite map", messages])
    assert seen == [[" kite map", " kite map", messages]]


@pytest.mark.parametrize(("field", "value"), [("n", 1), ("steps", 0), ("ensemble_heads", 1), ("large_kl", -0.1)])
def test_settings_name_the_bad_value(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"{field} must be"):
        Settings(**{field: value})


def test_the_command_line_rejects_bad_settings_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--steps", "0", "--no-plot"])
    assert exit_info.value.code == 2
    assert "steps must be > 0, got 0" in capsys.readouterr().err
