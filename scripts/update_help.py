"""Regenerate the stored short help of `trl-plus train` (trl_plus/train-help/*.txt): `python scripts/update_help.py`.

Run it after changing a trainer's config fields or upgrading TRL/transformers/PEFT; a test fails until the files
match the live help.
"""

from __future__ import annotations

from pathlib import Path

from trl_plus.help_cache import write

if __name__ == "__main__":
    for path in write(Path(__file__).resolve().parents[1] / "trl_plus" / "train-help"):
        print(f"wrote {path}")
