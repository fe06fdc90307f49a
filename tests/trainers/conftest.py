"""Fixtures for the trainer tests: quiet logs, a tiny Llama, and common training arguments."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def _quiet() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def llama(tiny_checkpoints: dict[str, Path]) -> Path:
    return tiny_checkpoints["llama"]


@pytest.fixture
def training_args(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Settings shared by every trainer under test: CPU, one small batch, nothing saved or reported."""

    def make(**overrides: Any) -> dict[str, Any]:
        return {**_BASE_ARGS, "output_dir": str(tmp_path), **overrides}

    return make


_BASE_ARGS: dict[str, Any] = {
    "per_device_train_batch_size": 4,
    "max_steps": 1,
    "learning_rate": 1e-3,
    "report_to": [],
    "use_cpu": True,
    "seed": 0,
    "save_strategy": "no",
    "disable_tqdm": True,
    "logging_steps": 1,
    "dataset_num_proc": None,
}
