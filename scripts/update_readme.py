"""Regenerate the README's registry tables between their markers: `python scripts/update_readme.py`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from trl_plus import list_losses
from trl_plus.cli import LOSS_HEADERS, loss_rows
from trl_plus.tables import format_table

README = Path(__file__).resolve().parents[1] / "README.md"


def tables() -> dict[str, str]:
    return {"losses": format_table(LOSS_HEADERS, loss_rows(list_losses()), markdown=True)}


def render(text: str) -> str:
    for name, table in tables().items():
        pattern = re.compile(rf"(<!-- {name}-table:start -->\n).*?(<!-- {name}-table:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README has no <!-- {name}-table:start --> ... <!-- {name}-table:end --> block.")
        text = pattern.sub(lambda m, table=table: m.group(1) + table + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    current = README.read_text()
    updated = render(current)
    if "--check" in sys.argv[1:]:
        sys.exit(0 if updated == current else "README tables are stale: run python scripts/update_readme.py")
    README.write_text(updated)
