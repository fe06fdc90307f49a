"""`trl_plus.tables`: the text tables the CLI and compare print."""

from __future__ import annotations

from trl_plus.tables import format_table


def test_format_table() -> None:
    plain = format_table(["a", "bb"], [["xyz", "1"]])
    assert plain.splitlines() == ["a    bb", "---  --", "xyz  1"]
    assert format_table(["a"], [["x|y"]], markdown=True).splitlines()[-1] == "| x\\|y |"
