"""The conformance harness's own logic (scripts/trl_conformance.py and its pytest plugin), without TRL's test files:
reading a checkout, the stand-in datasets' loader, and the comparison table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return _load("trl_conformance")


def outcome(kind: str, message: str = "") -> dict[str, str]:
    return {"outcome": kind, "message": message}


def test_compare_counts_runs_passes_and_the_differences(harness: ModuleType) -> None:
    dpo = "tests/test_dpo_trainer.py::TestDPOTrainer::"
    trl = {
        dpo + "test_same": outcome("passed"),
        dpo + "test_ours_fail": outcome("passed"),
        dpo + "test_designed[a]": outcome("passed"),
        dpo + "test_both_fail": outcome("failed", "OSError: no such model"),
        dpo + "test_only_ours_pass": outcome("failed", "KeyError: 'x'"),
        dpo + "test_skipped": outcome("skipped", "test requires liger-kernel"),
        dpo + "test_expected_failure": outcome("xfailed", "known bug"),
        dpo + "test_not_run_with_ours": outcome("passed"),
        "tests/test_kto_trainer.py::TestKTOTrainer::test_other_suite": outcome("passed"),
    }
    plus = {
        dpo + "test_same": outcome("passed"),
        dpo + "test_ours_fail": outcome("failed", "AttributeError: no 'x'\nmore lines"),
        dpo + "test_designed[a]": outcome("failed", "ValueError: refused"),
        dpo + "test_both_fail": outcome("failed", "OSError: no such model"),
        dpo + "test_only_ours_pass": outcome("passed"),
        dpo + "test_skipped": outcome("skipped", "test requires liger-kernel"),
        dpo + "test_expected_failure": outcome("xfailed", "known bug"),
    }
    known = {dpo + "test_designed": "refused on purpose"}
    [result] = harness.compare(trl, plus, {"dpo": "tests/test_dpo_trainer.py"}, known)
    assert (result.trainer, result.run, result.pass_trl, result.pass_plus) == ("DPOTrainer", 7, 5, 3)
    assert result.differing == {
        "TestDPOTrainer::test_ours_fail": "AttributeError: no 'x'\nmore lines",
        "TestDPOTrainer::test_designed[a]": "ValueError: refused",
        "TestDPOTrainer::test_not_run_with_ours": "not run with trl-plus's classes",
    }
    assert result.known == {"TestDPOTrainer::test_designed[a]": "refused on purpose"}
    assert result.plus_only == {"TestDPOTrainer::test_only_ours_pass": "KeyError: 'x'"}
    assert set(result.not_comparable) == {"TestDPOTrainer::test_both_fail", "TestDPOTrainer::test_only_ours_pass"}

    table = harness.render([result]).splitlines()
    assert "| DPOTrainer | 7 | 5 | 3 | 3 | 1 |" in table
    assert "  TestDPOTrainer::test_ours_fail: AttributeError: no 'x' more lines" in table  # one line per test
    assert "    by design: refused on purpose" in table
    assert "  TestDPOTrainer::test_both_fail: OSError: no such model" in table


def test_a_collection_error_counts_as_one_failed_test(harness: ModuleType) -> None:
    path = "tests/test_reward_trainer.py"
    trl = {path: outcome("failed", "collection error: ImportError: cannot import name 'x'")}
    [result] = harness.compare(trl, trl, {"reward": path}, {})
    assert (result.run, result.pass_trl, result.not_comparable) == (1, 0, {path: trl[path]["message"]})


def test_a_checkout_is_read_from_a_work_tree_or_its_git_directory(harness: ModuleType, tmp_path: Path) -> None:
    tree = tmp_path / "trl"
    (tree / "tests" / "data").mkdir(parents=True)
    (tree / "tests" / "test_dpo_trainer.py").write_text("def test_x(): pass\n")
    (tree / "tests" / "data" / "template.jinja").write_text("{{ messages }}")
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "tests"], check=True)
    for source in (harness.TrlSource(tree), harness.TrlSource(tree / ".git")):
        assert source.files("tests/data") == ["tests/data/template.jinja"]
        dest = tmp_path / f"copy-{source.worktree}"
        missing = source.copy(["tests/test_dpo_trainer.py", "tests/testing_utils.py"], dest)
        assert missing == ["tests/testing_utils.py"]
        assert (dest / "tests" / "test_dpo_trainer.py").read_text() == "def test_x(): pass\n"
    with pytest.raises(SystemExit, match="neither a TRL work tree"):
        harness.TrlSource(tmp_path / "elsewhere")


def test_the_plugin_loads_stand_in_datasets_by_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    plugin = _load("trl_conformance_plugin")
    monkeypatch.setattr(datasets, "load_dataset", datasets.load_dataset)  # undone after the test
    splits = {"train": datasets.Dataset.from_dict({"x": [1, 2]}), "test": datasets.Dataset.from_dict({"x": [3]})}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "org" / "zen" / "standard_preference"))
    plugin._patch_load_dataset(tmp_path)
    assert datasets.load_dataset("org/zen", "standard_preference", split="test")["x"] == [3]
    assert set(datasets.load_dataset("org/zen", "standard_preference")) == {"train", "test"}
    streamed = datasets.load_dataset("org/zen", "standard_preference", split="train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset) and [row["x"] for row in streamed] == [1, 2]
