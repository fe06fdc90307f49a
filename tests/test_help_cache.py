"""The stored short help of `trl-plus train` equals the live one, and the CLI prints it without importing TRL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trl_plus import help_cache
from trl_plus.train import TRAINERS

STORED = Path(__file__).resolve().parents[1] / "trl_plus" / "train-help"


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_stored_help_is_the_live_help(trainer: str) -> None:
    header, _, text = (STORED / f"{trainer}.txt").read_text(encoding="utf-8").partition("\n")
    assert header == help_cache.versions(), "stale help files: run python scripts/update_help.py"
    assert text == help_cache.render(trainer), "stale help files: run python scripts/update_help.py"


def test_cached_help_only_for_the_short_help_of_current_files() -> None:
    assert help_cache.cached_help(["--trainer", "nash", "--help"], "trl-plus train") is not None
    assert "--mixture_coef" in (help_cache.cached_help(["--trainer=nash", "-h"], "trl-plus train") or "")
    assert help_cache.cached_help(["--help-all"], "trl-plus train") is None
    assert help_cache.cached_help(["--model_name_or_path", "x"], "trl-plus train") is None
    assert help_cache.cached_help(["--config", "my.yaml", "--help"], "trl-plus train") is None
    assert help_cache.cached_help(["--trainer", "kto", "--help"], "trl-plus train") is None
    assert help_cache.cached_help(["--help"], "python -m trl_plus.train") is None


def test_the_cli_prints_it_without_importing_trl() -> None:
    code = (
        "import sys; from trl_plus.cli import main; rc = main(['train', '--trainer', 'ppo', '--help']); "
        "print('TRL-IMPORTED' if 'trl' in sys.modules else 'NO-TRL'); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--kl_coef" in result.stdout and "--help-all` lists them all" in result.stdout
    assert result.stdout.rstrip().endswith("NO-TRL")
