"""Two CPU processes are the same run as one: `torchrun --nproc_per_node 2` with half the per-device batch gives
the one-process step-1 loss and gradient norm, and both runs exit on their own (no teardown hang)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT_S = 240  # a run takes about 15 s on 2 cores; a hang in the process group's teardown would exceed this


def _train(command: list[str], out: Path, per_device: int, model: Path) -> dict[str, float]:
    flags = [
        *("--model_name_or_path", str(model), "--dataset_name", "synthetic:transitive", "--loss", "simpo"),
        *("--max_steps", "1", "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no"),
        *("--seed", "0", "--use_cpu", "true", "--learning_rate", "1e-3", "--output_dir", str(out)),
        *("--per_device_train_batch_size", str(per_device)),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, "-m", "trl_plus.train", *flags], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    return state["log_history"][0]  # type: ignore[no-any-return]


def test_two_processes_match_one_with_the_same_global_batch(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    model = tiny_checkpoints["llama"]
    one = _train([sys.executable], tmp_path / "one", 4, model)
    with socket.socket() as probe:  # a free port, so parallel test runs do not meet in one process group
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    two = _train(torchrun, tmp_path / "two", 2, model)
    assert two["num_tokens"] == one["num_tokens"]  # both processes trained: the global batch is the same
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    # Each process pads its half of the batch to its own longest row and DDP sums the halves' gradients: float
    # rounding, measured at 1.4e-4 relative (6.0993 against 6.1001); a wrong batch split or scaling is 10% or more.
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-3)
