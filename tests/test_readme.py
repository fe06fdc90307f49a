"""The README's tables are generated from the registry; regenerate with `python scripts/update_readme.py`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _updater():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("update_readme", REPO / "scripts" / "update_readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_loss_table_matches_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    assert _updater().render(readme) == readme, "README is stale: run `python scripts/update_readme.py`"


def test_readme_opens_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    head = readme[: readme.index("\n## ", readme.index("```"))]
    assert "bash scripts/demo.sh" in head and "bash scripts/test.sh" in head
    ci = (REPO / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci


def test_the_write_your_own_loss_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's own-loss script, executed as written (in a scratch directory, offline)."""
    import re

    from trl_plus.registry import LOSSES

    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- example:own-loss -->\n```python\n(.*?)```", readme, re.S)
    assert match is not None, "the own-loss example is missing from the README"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    try:
        exec(compile(match.group(1), "README.md:own-loss", "exec"), namespace)
    finally:
        if "margin_simpo" in LOSSES:
            LOSSES.remove("margin_simpo")
    assert (tmp_path / "runs" / "tiny-llama" / "config.json").exists()
    assert (tmp_path / "runs" / "margin-simpo").is_dir()
