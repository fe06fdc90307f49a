#!/usr/bin/env bash
# Set up and run the main job offline: the loss registry, then the demo, the RLHF loop on a synthetic task (tiny
# model → SFT → preference data and a reward model → --method, default online rejection-sampling fine-tuning
# judged by the reward model → oracle win rate against the SFT reference). Extra arguments go to `trl-plus demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${TRL_PLUS_VENV:-.venv}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$venv/bin/trl-plus" losses
"$venv/bin/trl-plus" demo "$@"
