#!/usr/bin/env bash
# Set up and run the main job offline: the loss registry, then the demo (tiny model → SFT → preference training
# with --loss, default dpo → oracle win rate against the SFT reference). Extra arguments go to `trl-plus demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${TRL_PLUS_VENV:-.venv}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/trl-plus" losses
"$venv/bin/trl-plus" demo "$@"
