"""`trl-plus train --help` without importing transformers or TRL.

Building the parser of `trl-plus train` imports every trainer (torch, transformers, TRL, PEFT: several seconds on a
small machine) just to list the fields. The short help of each trainer is therefore kept as text in
`trl_plus/train-help/<trainer>.txt`, written by `python scripts/update_help.py` with the versions of TRL,
transformers and trl-plus it was made with on its first line. `trl-plus train [--trainer X] --help` prints that text
when the installed versions match, and builds the live parser otherwise (and always for `--help-all`, a `--config`
file, or a trainer without a file). A test checks that every file equals the live help.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HELP_DIR = Path(__file__).parent / "train-help"  # a dash: a data folder, not an importable package
PROG = "trl-plus train"  # the program name the stored text is formatted with (usage lines wrap after it)
WIDTH = 100  # the stored text is formatted for this many columns


def versions() -> str | None:
    """The first line of a help file: the versions its fields come from (None when trl-plus is not installed)."""
    try:
        return (
            f"trl {version('trl')}, transformers {version('transformers')}, peft {version('peft')}, "
            f"trl-plus {version('trl-plus')}"
        )
    except PackageNotFoundError:
        return None


def trainer_flags(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(`--trainer`, `--config`) from the flags, each None when absent: read before the full parse, since the
    trainer decides which config class the parser is built from."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--trainer")
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(list(argv))
    return known.trainer, known.config


def cached_help(argv: Sequence[str], prog: str) -> str | None:
    """The stored short help for `argv`, when it asks for it and the stored text is current; else None."""
    if not {"-h", "--help"} & set(argv) or "--help-all" in argv:
        return None
    trainer, config = trainer_flags(argv)
    path = HELP_DIR / f"{trainer or 'preference'}.txt"
    current = versions()
    if config is not None or current is None or not path.is_file():
        return None
    header, _, text = path.read_text(encoding="utf-8").partition("\n")
    return text if header == current and prog == PROG else None


def render(trainer: str) -> str:
    """The live short help of `trainer`, as stored (imports the trainers)."""
    from trl_plus.train import make_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return make_parser(PROG, trainer, every_field=False).format_help()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def write(folder: Path = HELP_DIR) -> list[Path]:
    """Write one help file per trainer into `folder` (the checkout's `trl_plus/train-help`); returns their paths."""
    from trl_plus.train import TRAINERS

    header = versions()
    if header is None:
        raise RuntimeError("trl-plus is not installed: install it (pip install .) so the files record its version.")
    folder.mkdir(exist_ok=True)
    paths = []
    for trainer in TRAINERS:
        path = folder / f"{trainer}.txt"
        path.write_text(f"{header}\n{render(trainer)}", encoding="utf-8")
        paths.append(path)
    return paths


__all__ = ["HELP_DIR", "cached_help", "render", "trainer_flags", "versions", "write"]
