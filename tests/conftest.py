"""Shared fixtures. Tests run offline against the installed package (see scripts/test.sh)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:
    import trl_plus.losses  # noqa: F401  (only an installed package maps `losses/` into `trl_plus`)
except ImportError as error:  # pragma: no cover - a set-up error, not a test failure
    raise pytest.UsageError("trl-plus is not installed: run `bash scripts/test.sh` or `pip install -e .`.") from error

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random checkpoint per architecture, built once per test session."""
    from trl_plus.testing import ARCHITECTURES, make_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny(arch, root / arch) for arch in ARCHITECTURES}
