from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus import list_losses, list_reward_heads
from trl_plus.cli import main


def test_losses_table_has_a_row_per_loss(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "aliases", "input", "reference", "hyperparameters", "paper"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {spec.name for spec in list_losses()}
    assert "sigmoid" in rows["dpo"] and "beta=0.1, label_smoothing=0.0" in rows["dpo"]
    assert "arXiv:2305.18290" in rows["dpo"]


def test_losses_json_and_kind_filter(capsys: pytest.CaptureFixture[str]) -> None:
    main(["losses", "--format", "json"])
    described = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert described["dpo"]["requires_reference"] is True
    assert described["dpo"]["hyperparameters"] == {"beta": "0.1", "label_smoothing": "0.0"}
    main(["losses", "--kind", "ranked"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split()[0] for row in rows] == [spec.name for spec in list_losses("ranked")] == ["plackett_luce"]


def test_reward_heads_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reward-heads"]) == 0
    out = capsys.readouterr().out
    names = [spec.name for spec in list_reward_heads()]
    if names:
        assert [line.split()[0] for line in out.splitlines()[2:]] == names
    else:
        assert out.strip() == "No reward heads registered."


def test_make_tiny_builds_a_loadable_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny-qwen3"
    assert main(["make-tiny", "--arch", "qwen3", "--out", str(out), "--hidden-size", "32", "--layers", "1"]) == 0
    assert str(out) in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "qwen3" and model.config.hidden_size == 32
    assert model.config.num_hidden_layers == 1
    AutoTokenizer.from_pretrained(out)


def test_make_tiny_rejects_unknown_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["make-tiny", "--arch", "mistral", "--out", "x"])
    assert "invalid choice: 'mistral'" in capsys.readouterr().err


def test_task_prints_the_oracle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", "cyclic", "--examples", "3"]) == 0
    out = capsys.readouterr().out
    assert "| A | 0.50 | 0.60 | 0.40 | 0.55 |" in out and out.count("≻") >= 4


def test_win_rate_command(tiny_checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tiny_checkpoints["gpt2"])
    assert main(["win-rate", path, path, "--n", "4", "--max-new-tokens", "3"]) == 0
    assert "win rate" in capsys.readouterr().out


def test_a_fixable_error_is_one_line_and_debug_gives_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRL_PLUS_DEBUG", "0")  # restored after the test, which `--debug` sets to 1
    a_file = tmp_path / "model.txt"
    a_file.write_text("not a folder")
    assert main(["make-tiny", "--arch", "llama", "--out", str(a_file)]) == 2
    err = capsys.readouterr().err
    message = f"The output path {str(a_file)!r} is a file; give a folder (it is created if missing)."
    assert err == f"trl-plus make-tiny: error: {message}\n"
    with pytest.raises(ValueError, match="is a file"):
        main(["make-tiny", "--arch", "llama", "--out", str(a_file), "--debug"])


def test_a_long_library_error_keeps_its_first_line() -> None:
    from trl_plus.errors import short

    assert short(OSError("Can't load the model.\n\nMake sure that:\n- it exists")) == (
        "Can't load the model. (+2 more lines; TRL_PLUS_DEBUG=1 shows them with the traceback)"
    )


def test_a_closed_pipe_ends_quietly() -> None:
    """`trl-plus losses | head`: once the reader is gone, no BrokenPipeError traceback, SIGPIPE's status."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader (`head`) has exited before the first write
    command = [sys.executable, "-c", "import sys; from trl_plus.cli import main; sys.exit(main(['losses']))"]
    try:
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_every_flag_of_every_command_has_help() -> None:
    import argparse

    from trl_plus.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._HelpAction)
    ]
    assert not missing, missing


def test_best_of_n_command_keeps_the_judges_best(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from trl_plus.synthetic import get_task

    out = tmp_path / "best.jsonl"
    argv = ["best-of-n", "--model", str(tiny_checkpoints["llama"]), "--task", "transitive", "--n", "3"]
    assert main([*argv, "--judge", "synthetic:transitive", "--samples", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    task = get_task("transitive")
    assert [row["prompt"] for row in rows] == task.prompts(3, seed=0, stream="eval")
    assert all(row["completion"].startswith(" ") for row in rows)
    assert main([*argv, "--judge", "synthetic:nope", "--out", str(out)]) == 2


def test_constitution_command_saves_pairs(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from datasets import load_from_disk

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Packing for the beach. Name 2 items:\n\nPacking for the city. Name 3 items:\n")
    out = tmp_path / "pairs"
    argv = ["constitution", "--model", str(tiny_checkpoints["llama"]), "--prompts-file", str(prompts)]
    assert main([*argv, "--principle", "Be brief.", "--max-new-tokens", "4", "--out", str(out)]) == 0
    rows = load_from_disk(str(out))
    assert set(rows.column_names) == {"prompt", "chosen", "rejected"} and len(rows) <= 2
