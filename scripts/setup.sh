#!/usr/bin/env bash
# Set up a virtualenv with trl-plus installed (not editable: tests and the demo run the installed package).
#   bash scripts/setup.sh [EXTRAS]      e.g. `bash scripts/setup.sh dev`
# Uses $TRL_PLUS_VENV (default .venv). torch==2.13.0 is installed first when torch is not importable: an
# unpinned torch would pull several GB of CUDA packages onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TRL_PLUS_VENV:-.venv}
extras=${1:-}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
python="$venv/bin/python"
"$python" -m pip install -q --upgrade pip setuptools >/dev/null
"$python" -c "import torch" 2>/dev/null || "$python" -m pip install -q "torch==2.13.0"
rm -rf build  # stale build/ trees can leak deleted modules into the wheel
"$python" -m pip install -q ".${extras:+[$extras]}"
