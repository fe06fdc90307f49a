"""pytest plugin for `scripts/trl_conformance.py`: runs TRL's own trainer tests offline, with TRL's classes or
trl-plus's, and records each test's outcome.

Loaded with `-p trl_conformance_plugin` (the harness puts `scripts/` on `PYTHONPATH`). It reads:

- `TRL_CONFORMANCE_CLASSES`: `trl` (leave the tests alone) or `trl-plus` (rebind the trainer and config names in
  each test module to trl-plus's classes, see `SUBSTITUTES`);
- `TRL_CONFORMANCE_DATASETS`: the folder of stand-in datasets, `<org>/<name>/<config>/` each a `save_to_disk`
  `DatasetDict`; `datasets.load_dataset` of such an id loads it instead of going to the Hub (models need no
  patch: the harness writes them into the `HF_HUB_CACHE` layout, which `from_pretrained` reads offline);
- `TRL_CONFORMANCE_REPORT`: the JSON file the outcomes are written to, `{nodeid: {"outcome", "message"}}`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# trl name in the test modules -> trl-plus name in `trl_plus.trainers`.
SUBSTITUTES = {
    "DPOTrainer": "PreferenceTrainer",
    "DPOConfig": "PreferenceConfig",
    "KTOTrainer": "UnpairedPreferenceTrainer",
    "KTOConfig": "UnpairedPreferenceConfig",
    "RewardTrainer": "RewardModelTrainer",
    "RewardConfig": "RewardModelConfig",
}

_outcomes: dict[str, dict[str, str]] = {}


def _patch_load_dataset(root: Path) -> None:
    """`datasets.load_dataset(hub_id, config, split=, streaming=)` reads the stand-in under `root` when there is one.

    Patched on the module before the test modules run `from datasets import load_dataset`, so they bind this one."""
    import datasets

    original = datasets.load_dataset

    def load_dataset(path: str, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        folder = root / path / (name or "default")
        if args or not folder.is_dir():
            return original(path, name, *args, **kwargs)
        split, streaming = kwargs.pop("split", None), kwargs.pop("streaming", False)
        dataset_dict = datasets.load_from_disk(str(folder))
        if streaming:
            dataset_dict = datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in dataset_dict.items()})
        return dataset_dict if split is None else dataset_dict[split]

    datasets.load_dataset = load_dataset


def _answer_missing_availability_checks() -> None:
    """A checkout newer than the installed TRL may import `is_<package>_available` helpers from `trl.import_utils`
    that this TRL lacks (the 2026-07-24 snapshot's `testing_utils` imports `is_joblib_available`, which TRL 1.16
    does not have): answer them with whether the package imports, instead of failing the whole collection."""
    import importlib.util

    import trl.import_utils as import_utils

    def __getattr__(name: str) -> Any:
        package = name.removeprefix("is_").removesuffix("_available")
        if name.startswith("is_") and name.endswith("_available") and package:
            return lambda: importlib.util.find_spec(package) is not None
        raise AttributeError(f"module {import_utils.__name__!r} has no attribute {name!r}")

    if not hasattr(import_utils, "__getattr__"):
        import_utils.__getattr__ = __getattr__  # type: ignore[attr-defined]  # PEP 562: only for missing names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: TRL's slow tests (the harness deselects them)")
    config.addinivalue_line("markers", "low_priority: TRL's low-priority tests (the harness deselects them)")
    _answer_missing_availability_checks()
    if os.environ.get("TRL_CONFORMANCE_DATASETS"):
        _patch_load_dataset(Path(os.environ["TRL_CONFORMANCE_DATASETS"]))


@pytest.fixture
def lazy_shared_datadir(request: pytest.FixtureRequest) -> Path:
    """pytest-datadir's fixture, for when it is not installed: the `data/` folder beside the test module."""
    return Path(request.path).parent / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("TRL_CONFORMANCE_CLASSES", "trl") != "trl-plus":
        return
    import trl_plus.trainers as trainers

    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        for trl_name, ours in SUBSTITUTES.items():
            if hasattr(module, trl_name):
                setattr(module, trl_name, getattr(trainers, ours))


def first_line(report: pytest.TestReport) -> str:
    """The first line of a failure's error (`ExceptionType: message`), or a skip's reason."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:  # a module that does not import: one failed entry under the module's id
        _outcomes[report.nodeid] = {"outcome": "failed", "message": "collection error: " + first_line(report)}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "message": ""})
    if entry["outcome"] != "passed":  # the first failure or skip of a test is its outcome (setup, call, teardown)
        return
    if report.failed:
        entry.update(outcome="failed", message=first_line(report))
    elif report.skipped:
        xfail = hasattr(report, "wasxfail")
        entry.update(
            outcome="xfailed" if xfail else "skipped", message=report.wasxfail if xfail else first_line(report)
        )
    elif report.when == "call" and hasattr(report, "wasxfail"):
        entry.update(outcome="xpassed", message=report.wasxfail)


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("TRL_CONFORMANCE_REPORT")
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=1, sort_keys=True))
