"""The README's tables are generated from the registry; regenerate with `python scripts/update_readme.py`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
