"""`pip install .` and `pip install -e .` both give `trl_plus`, `trl_plus.losses`, `trl_plus.trainers`, and no
top-level `losses`/`trainers`. Each install goes into a throwaway virtualenv that sees this environment's
dependencies (not its own trl-plus) through a .pth file, built from a copy of the repo without network or build
isolation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = """
import importlib.util, json, trl_plus, trl_plus.losses, trl_plus.trainers
print(json.dumps({
    "losses": trl_plus.losses.__file__,
    "top_level": [name for name in ("losses", "trainers") if importlib.util.find_spec(name) is not None],
    "dpo": trl_plus.get_loss("dpo").name,
    "typed": (__import__("pathlib").Path(trl_plus.__file__).parent / "py.typed").exists(),
}))
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "runs", ".*_cache")
    return Path(shutil.copytree(REPO, tmp_path / "src", ignore=ignore))


def _venv(root: Path) -> Path:
    """A bare virtualenv that sees this environment's dependencies, but not its own copy of trl-plus."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = root / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("trl_plus", "__editable__")) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    Path(site, "deps.pth").write_text(f"{deps}\n")
    return python


@pytest.mark.slow
@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install(editable: bool, source: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    target = ["-e", str(source)] if editable else [str(source)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            *target,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([str(python), "-c", CHECK], cwd=elsewhere, check=True, capture_output=True, text=True)
    result = __import__("json").loads(out.stdout)
    assert result["top_level"] == [] and result["dpo"] == "dpo" and result["typed"]
    if editable:  # the editable finder maps trl_plus.losses onto the source folder `losses/`
        assert Path(result["losses"]) == source / "losses" / "__init__.py"
    else:
        assert Path(result["losses"]).parts[-3:] == ("trl_plus", "losses", "__init__.py")
        assert str(source) not in result["losses"]
    script = tmp_path / "venv" / "bin" / "trl-plus"
    listing = subprocess.run([str(script), "losses"], cwd=elsewhere, check=True, capture_output=True, text=True)
    assert listing.stdout.splitlines()[0].split() == [
        "name",
        "aliases",
        "input",
        "reference",
        "hyperparameters",
        "paper",
    ]
