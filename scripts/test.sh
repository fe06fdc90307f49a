#!/usr/bin/env bash
# Set up and run the checks offline: ruff, then pytest against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,plot  # plot: the compare tests check its PNGs too
venv=${TRL_PLUS_VENV:-.venv}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/ruff" check .
"$venv/bin/pytest" "$@"
