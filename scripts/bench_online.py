"""Rollout time and peak memory of `PPOTrainer` next to TRL 1.9.2's PPO and TRL's GRPO, printed as markdown tables.

    python scripts/bench_online.py              # default workload, about 10 minutes on 2 CPU cores (+2 on first use)
    python scripts/bench_online.py --quick      # smoke check, under 2 minutes once the TRL 1.9.2 venv exists
    python scripts/bench_online.py --only ppo-qlora trl19-ppo --rollouts 5 --out bench.md
    python scripts/bench_online.py --family nash   # NashTrainer next to TRL 1.9.2's NashMDTrainer

Configurations, all on the same tiny llama, the same sequence-classification reward model, prompts, rollout size,
generation length, PPO epochs and seed. The llama is built locally (`trl_plus.testing.make_tiny`; by default hidden
768, 8 layers, embedding padded to 8192 rows: 55M parameters, 210 MiB in fp32) so that weights, not the library,
dominate memory; the reward model is `AutoModelForSequenceClassification` on the same checkpoint (seeded score head),
saved once and loaded by every run:

- `ppo-qlora` (the headline): `trl_plus.trainers.PPOTrainer` on one 4-bit nf4 base carrying the policy as LoRA
  adapter "default" and the critic as LoRA adapter "critic" plus a linear value head; the reference is the base with
  the adapters off (`trl_plus.testing.qlora_kwargs`: rank 8 on q_proj and v_proj).
- `ppo-full`: `PPOTrainer` in fp32 without PEFT: policy, reference, critic backbone (a copy of the policy's) + head.
- `trl19-ppo` (the baseline of every ratio): TRL 1.9.2's `trl.experimental.ppo.PPOTrainer`, the last TRL with PPO,
  with separate fp32 `model`, `ref_model`, `value_model` and `reward_model` (value and reward are
  `AutoModelForSequenceClassification` models, the value model initialised from the reward model as in TRL's
  example). It runs in a virtualenv of its own (`--venv`, created on first use: torch, then `trl==1.9.2` with the
  project's transformers version), never in the project's.
- `grpo-qlora`, `grpo-full`: TRL's own `GRPOTrainer` (the project's TRL) with the same reward model, `beta` = the
  PPO `kl_coef` (so it keeps a reference) and groups of `--grpo-group` completions per prompt: the cost of GRPO
  machinery without a critic, on the same nf4 base + LoRA or in fp32.

Targets (from the issue), for `ppo-qlora` against `trl19-ppo`: peak memory ≤ 0.4×, rollout time ≤ 1.0×.

`--family nash` runs the Nash-MD comparison instead, on the same checkpoints and prompts:

- `nash-full` (the headline): `trl_plus.trainers.NashTrainer` (`nash_md`, geometric-mixture opponent, μ = 0.5) in
  fp32: policy and reference, the reward model read as the preference σ(r_y − r_y′);
- `nash-qlora`: the same on one nf4 base + LoRA (the reference and the mixture's second factor = adapters off);
- `trl19-nash` (the baseline): TRL 1.9.2's `trl.experimental.nash_md.NashMDTrainer` with its fp32 `ref_model` and
  the same reward model (its probability is the same σ of the score difference).

One rollout is one optimizer step on `--batch-size` policy completions, each scored against one mixture sample.
Targets (from the issue), for `nash-full` against `trl19-nash`: time ≤ 1.0×, memory ≤ 1.0×.

What is measured:

- Rollout time: wall time of one PPO iteration, i.e. generating `--batch-size` completions of `--completion-length`
  new tokens, scoring them (old and reference log-probs, values, reward model) and `--ppo-epochs` passes over them
  in one mini-batch each, that is `--ppo-epochs` optimizer steps. TRL 1.9.2's PPO ends one `global_step` per
  rollout, so its time is between consecutive `on_step_end` callbacks; the GRPO-based trainers end one step per
  optimizer step and generate inside the first of each `--ppo-epochs` steps, so theirs is between the ends of the
  last steps of consecutive rollouts. The first `--warmup` rollouts are dropped; the median is over the timed
  rollouts of all repeats pooled, with ± half the interquartile range as a share of the median. "per step" is the
  rollout time divided by its optimizer steps (generation amortised over them).
- Peak memory: unlike `bench_preference.py`, the models are part of the cost here (four fp32 models against one
  4-bit base is the point of the comparison), so the span starts in the worker right after its imports, before any
  model is loaded, and ends after `trainer.train()`: peak resident set size (VmHWM) over the span minus the RSS at
  its start, in MiB, as `trl_plus.cost` measures it; median over repeats. RSS counts the pages of the checkpoint
  files that transformers memory-maps while loading. Where a model keeps using them (an fp32 model's weights are
  views of the mapping) they are its weights; but pages that back no live tensor any more also stay mapped as long
  as any tensor of the file does: in the nf4 runs, the fp32 source of every quantized layer, read once to quantize
  it, stays in RSS because the embeddings, norms and lm_head, left in fp32, are views of the same mapping. Those
  pages are clean and the kernel reclaims them under memory pressure, so the second table also gives the peak less
  them ("unused checkpoint pages": pages of the checkpoint files present in this process's page tables, from
  /proc/self/pagemap, that no parameter or buffer of any live module lies on, counted after training; such pages
  are read while loading, before the peak, and stay).
- Every run is a fresh process started with the Python of its side (the project's, or the TRL 1.9.2 venv's), so
  the two installs cannot share a process. Repeats interleave the configurations (A, B, C, ..., then in reverse)
  so that drift on a shared machine hits all of them alike.

All runs: fp32 compute (`bf16=False`: CPU), AdamW at lr 3e-6, sampling at temperature 0.7, KL coefficient 0.05,
`gradient_checkpointing=False` unless `--gradient-checkpointing`, no logging or saving during the timed rollouts,
CPU only, one torch thread per run (`--threads`; see `bench_preference.py` for why). The model is randomly
initialised, so end-of-sequence is rare (about 1/vocab per token) and nearly every completion runs to
`--completion-length` tokens (the GRPO-based runs report their mean length under the tables). TRL 1.9.2's PPO has a
training loop of its own that never turns gradient checkpointing on; with `--gradient-checkpointing` the script turns
it on for that run's policy, as its policy-and-value wrapper would.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

# This file runs in two virtualenvs: the project's (the parent and the trl-plus/GRPO workers) and the TRL 1.9.2 one,
# where neither trl_plus nor the project's TRL is installed. Third-party imports therefore live in the functions of
# the side that needs them; the parent itself imports none.

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".bench-venvs" / "trl-1.9.2"
LEGACY_TRL = "1.9.2"
# A plain `pip install torch` would pull several GB of CUDA wheels onto a CPU machine (see scripts/setup.sh).
LEGACY_TORCH = "2.13.0"
BASELINE = "trl19-ppo"
HEADLINE = "ppo-qlora"
# Issue targets for the headline configuration against the baseline: (rollout time, peak memory).
TARGETS = (1.0, 0.4)
LEARNING_RATE = 3e-6
TEMPERATURE = 0.7
KL_COEF = 0.05
WORKER_TIMEOUT_S = 1800


@dataclass(frozen=True)
class RunSpec:
    key: str
    trainer: str  # "trl_plus_ppo", "grpo", "trl_plus_nash", "legacy_ppo" or "legacy_nash"
    qlora: bool
    label: str
    holds: str  # which models the run keeps in memory

    @property
    def legacy(self) -> bool:
        return self.trainer.startswith("legacy_")


SPECS = {
    spec.key: spec
    for spec in (
        RunSpec(
            "ppo-qlora",
            "trl_plus_ppo",
            True,
            "trl-plus `PPOTrainer`, nf4 base + LoRA policy & critic",
            "one nf4 base (policy = LoRA `default`, critic = LoRA `critic` + value head, reference = adapters off) "
            "+ fp32 reward model",
        ),
        RunSpec(
            "ppo-full",
            "trl_plus_ppo",
            False,
            "trl-plus `PPOTrainer`, fp32, no PEFT",
            "fp32 policy, reference, critic backbone + value head, reward model",
        ),
        RunSpec(
            "trl19-ppo",
            "legacy_ppo",
            False,
            f"TRL {LEGACY_TRL} `experimental.ppo.PPOTrainer`",
            "fp32 policy, ref_policy, value_model, reward_model",
        ),
        RunSpec(
            "grpo-qlora",
            "grpo",
            True,
            "TRL `GRPOTrainer`, nf4 base + LoRA policy",
            "one nf4 base (policy = LoRA, reference = adapters off) + fp32 reward model; no critic",
        ),
        RunSpec(
            "grpo-full",
            "grpo",
            False,
            "TRL `GRPOTrainer`, fp32, no PEFT",
            "fp32 policy, reference, reward model; no critic",
        ),
        RunSpec(
            "nash-full",
            "trl_plus_nash",
            False,
            "trl-plus `NashTrainer` (nash_md), fp32, no PEFT",
            "fp32 policy, reference, reward model (as the preference σ(r_a − r_b))",
        ),
        RunSpec(
            "nash-qlora",
            "trl_plus_nash",
            True,
            "trl-plus `NashTrainer` (nash_md), nf4 base + LoRA policy",
            "one nf4 base (policy = LoRA, reference = adapters off) + fp32 reward model",
        ),
        RunSpec(
            "trl19-nash",
            "legacy_nash",
            False,
            f"TRL {LEGACY_TRL} `experimental.nash_md.NashMDTrainer`",
            "fp32 policy, ref_model, reward model",
        ),
    )
}


@dataclass(frozen=True)
class Family:
    """One comparison: its runs, the baseline of every ratio, the headline run and its (time, memory) targets."""

    runs: tuple[str, ...]
    baseline: str
    headline: str
    targets: tuple[float, float]


FAMILIES = {
    "ppo": Family(("ppo-qlora", "ppo-full", "trl19-ppo", "grpo-qlora", "grpo-full"), BASELINE, HEADLINE, TARGETS),
    # Nash: the targets (≤ 1.0× time and memory) for the like-for-like fp32 run; QLoRA shown as well.
    "nash": Family(("nash-full", "nash-qlora", "trl19-nash"), "trl19-nash", "nash-full", (1.0, 1.0)),
}
MIXTURE_COEF = 0.5


@dataclass
class Settings:
    rollouts: int
    warmup: int
    repeats: int
    batch_size: int
    completion_length: int
    ppo_epochs: int
    grpo_group: int
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    gradient_checkpointing: bool
    threads: int
    only: list[str]
    venv: Path
    out: Path | None = None
    family: str = "ppo"

    @property
    def total_rollouts(self) -> int:
        return self.warmup + self.rollouts


@dataclass
class Measurement:
    rollout_times: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    unused_mib: list[float] = field(default_factory=list)
    completion_length: float | None = None
    errors: list[str] = field(default_factory=list)


# ---- worker side: one measured run in a fresh process ---------------------------------------------------------------


def _quiet() -> None:
    # Progress bars and per-run notices would bury the table; errors still reach stderr.
    warnings.simplefilter("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()


def _cost_module(legacy: bool) -> ModuleType:
    """`trl_plus.cost`, the same measuring code on both sides: the TRL 1.9.2 venv has no trl_plus, so it loads the
    checkout's file, which needs only the standard library and transformers."""
    if not legacy:
        import trl_plus.cost

        return trl_plus.cost
    spec = importlib.util.spec_from_file_location("trl_plus_cost", REPO / "trl_plus" / "cost.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {REPO / 'trl_plus' / 'cost.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_checkpoints(job: dict[str, Any]) -> dict[str, Any]:
    """The tiny policy, a sequence-classification reward model on the same body, and the prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from trl_plus.synthetic import get_task
    from trl_plus.testing import make_tiny

    settings = job["settings"]
    root = Path(job["root"])
    policy = make_tiny(
        "llama",
        root / "policy",
        vocab_size=settings["vocab_size"],
        hidden_size=settings["hidden_size"],
        num_layers=settings["num_layers"],
        num_heads=settings["num_heads"],
    )
    tokenizer = AutoTokenizer.from_pretrained(policy)
    torch.manual_seed(1)  # the score head is new: seeded, so every run scores with the same reward model
    reward = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
    reward.config.pad_token_id = tokenizer.pad_token_id
    reward.save_pretrained(root / "reward")
    tokenizer.save_pretrained(root / "reward")
    # More prompts than any run consumes (batch_size per rollout, GRPO batch_size / grpo_group).
    prompts = get_task("transitive", seed=0).prompts(
        4 * settings["batch_size"] * settings["total_rollouts"], stream="sft"
    )
    policy_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(policy).parameters())
    return {
        "policy": str(policy),
        "reward": str(root / "reward"),
        "prompts": prompts,
        "checkpoint_files": [str(f) for d in (policy, root / "reward") for f in sorted(Path(d).glob("*.safetensors"))],
        "prompt_tokens": statistics.mean(len(tokenizer(p)["input_ids"]) for p in prompts),
        "policy_params": policy_params,
        "reward_params": sum(p.numel() for p in reward.parameters()),
    }


def _common_config(job: dict[str, Any]) -> dict[str, Any]:
    settings = job["settings"]
    return {
        **_cost_module(SPECS[job["key"]].legacy).TIMED_RUN_ARGS,
        "output_dir": job["out"],
        "per_device_train_batch_size": settings["batch_size"],
        "gradient_accumulation_steps": 1,
        "learning_rate": LEARNING_RATE,
        "temperature": TEMPERATURE,
        "gradient_checkpointing": settings["gradient_checkpointing"],
    }


def _build_trainer(job: dict[str, Any]) -> tuple[Any, int]:
    """The trainer of `job` and how many `on_step_end` callbacks one rollout makes."""
    spec = SPECS[job["key"]]
    settings = job["settings"]
    paths = job["context"]
    epochs = settings["ppo_epochs"]
    common = _common_config(job)
    if spec.trainer == "legacy_ppo":
        return _build_legacy_trainer(job), 1  # one global step per rollout; its epochs step the optimizer inside
    if spec.trainer == "legacy_nash":
        return _build_legacy_nash_trainer(job), 1  # one global step per batch: generate, score, one update

    from datasets import Dataset

    dataset = Dataset.from_dict({"prompt": paths["prompts"]})
    qlora: dict[str, Any] = {}
    if spec.qlora:
        from trl_plus.testing import qlora_kwargs

        qlora = qlora_kwargs()
    steps = settings["total_rollouts"] * epochs
    if spec.trainer == "trl_plus_ppo":
        # The module, not the package: the package loads PPO lazily, which type checkers see as `object`.
        from trl_plus.trainers.ppo import PPOConfig, PPOTrainer

        ppo_args = PPOConfig(
            **common,
            max_steps=steps,
            num_ppo_epochs=epochs,
            num_mini_batches=1,
            max_completion_length=settings["completion_length"],
            kl_coef=KL_COEF,
        )
        return PPOTrainer(
            paths["policy"], reward_funcs=paths["reward"], args=ppo_args, train_dataset=dataset, **qlora
        ), epochs
    if spec.trainer == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(
            **common,
            max_steps=steps,
            num_generations=settings["grpo_group"],
            num_iterations=epochs,  # one rollout of batch_size completions reused for `epochs` optimizer steps
            max_completion_length=settings["completion_length"],
            beta=KL_COEF,
        )
        return GRPOTrainer(
            paths["policy"], reward_funcs=paths["reward"], args=args, train_dataset=dataset, **qlora
        ), epochs
    if spec.trainer == "trl_plus_nash":
        from trl_plus.trainers.nash import NashConfig, NashTrainer

        # One optimizer step per rollout, as TRL's NashMDTrainer: batch_size completions (2 per prompt), each
        # against its own sample of the geometric mixture of policy and reference.
        nash_args = NashConfig(
            **common,
            max_steps=settings["total_rollouts"],
            max_completion_length=settings["completion_length"],
            beta=KL_COEF,
            mixture_coef=[MIXTURE_COEF],
        )
        return NashTrainer(
            paths["policy"], preference=paths["reward"], args=nash_args, train_dataset=dataset, **qlora
        ), 1
    raise ValueError(f"Unknown trainer {spec.trainer!r}; expected trl_plus_ppo, grpo, trl_plus_nash or legacy_*.")


def _build_legacy_trainer(job: dict[str, Any]) -> Any:
    """TRL 1.9.2's PPO with the four separate models it requires, configured as the PPOTrainer runs are."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    settings = job["settings"]
    paths = job["context"]
    # Left padding: the trainer generates from the end of the padded prompts.
    tokenizer = AutoTokenizer.from_pretrained(paths["policy"], padding_side="left")
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in paths["prompts"]]})
    policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
    ref_policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
    value_model = AutoModelForSequenceClassification.from_pretrained(paths["reward"], num_labels=1)
    reward_model = AutoModelForSequenceClassification.from_pretrained(paths["reward"], num_labels=1)
    if settings["gradient_checkpointing"]:
        # Its own training loop never turns checkpointing on; its policy-and-value wrapper would, on the policy only.
        policy.gradient_checkpointing_enable()
    args = PPOConfig(
        **_common_config(job),
        total_episodes=settings["total_rollouts"] * settings["batch_size"],
        num_ppo_epochs=settings["ppo_epochs"],
        num_mini_batches=1,
        response_length=settings["completion_length"],
        stop_token="eos",  # stop at EOS as the GRPO-based trainers do
        kl_coef=KL_COEF,
        num_sample_generations=0,  # no sample tables printed between rollouts
        local_rollout_forward_batch_size=settings["batch_size"],
    )
    return PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=dataset,
        eval_dataset=dataset.select(range(settings["batch_size"])),
    )


def _build_legacy_nash_trainer(job: dict[str, Any]) -> Any:
    """TRL 1.9.2's Nash-MD with its separate reference and a sequence-classification reward model, configured as the
    NashTrainer runs are: batch_size prompts per step, each with one policy and one mixture completion."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.nash_md import NashMDConfig, NashMDTrainer

    settings = job["settings"]
    paths = job["context"]
    tokenizer = AutoTokenizer.from_pretrained(paths["policy"], padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
    ref_policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
    reward_model = AutoModelForSequenceClassification.from_pretrained(paths["reward"], num_labels=1)
    # batch_size prompts per step, each with one policy and one mixture completion; the NashTrainer runs take
    # batch_size completions (two per prompt) with one mixture sample each: the same sequences sampled, scored and
    # trained on.
    args = NashMDConfig(
        **_common_config(job),
        max_steps=settings["total_rollouts"],
        max_new_tokens=settings["completion_length"],
        beta=KL_COEF,
        mixture_coef=MIXTURE_COEF,
    )
    dataset = Dataset.from_dict({"prompt": paths["prompts"]})
    return NashMDTrainer(
        model=policy,
        ref_model=ref_policy,
        reward_funcs=reward_model,
        args=args,
        processing_class=tokenizer,
        train_dataset=dataset,
    )


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """One run: memory from just after the imports to the end of training, and the time of each rollout."""
    spec = SPECS[job["key"]]
    import torch
    import transformers
    import transformers.models.llama.modeling_llama  # resolved lazily otherwise, inside the span
    from transformers import PrinterCallback, TrainerCallback

    if spec.trainer == "legacy_ppo":
        import trl.experimental.ppo
    elif spec.legacy:
        import trl.experimental.nash_md  # noqa: F401
    else:
        # Imported before the span on this side too: the nf4 runs would otherwise pay for them inside it.
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401

        import trl_plus.trainers  # noqa: F401
    _quiet()
    torch.set_num_threads(job["settings"]["threads"])
    cost = _cost_module(spec.legacy)

    cost.release_free_memory()
    start_kib = cost.status_kib("VmRSS")
    if not cost.reset_peak_rss():
        raise RuntimeError("cannot reset the peak-RSS mark (/proc/self/clear_refs): no memory figure on this system")
    trainer, clock_steps = _build_trainer(job)
    trainer.remove_callback(PrinterCallback)  # it prints every rollout's metrics
    clock = cost.StepClock()
    trainer.add_callback(clock)

    class CompletionLengths(TrainerCallback):  # type: ignore[misc]
        """GRPO's own mean completion length of each rollout, read before the end-of-training log clears it."""

        def __init__(self) -> None:
            self.lengths: list[float] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            metrics = getattr(trainer, "_metrics", {}).get("train", {})
            self.lengths = list(metrics.get("completions/mean_length", self.lengths))

    lengths = CompletionLengths()
    trainer.add_callback(lengths)
    began = time.perf_counter()
    trainer.train()
    peak_kib = cost.status_kib("VmHWM")

    expected = job["settings"]["total_rollouts"] * clock_steps
    if len(clock.ends) != expected:
        raise RuntimeError(f"expected {expected} steps, saw {len(clock.ends)}")
    rollout_ends = [began, *clock.ends[clock_steps - 1 :: clock_steps]]
    times = [b - a for a, b in itertools.pairwise(rollout_ends)]
    return {
        "rollout_times": times[job["settings"]["warmup"] :],
        "peak_mib": (peak_kib - start_kib) / 1024,
        "unused_mib": unused_checkpoint_mib(job["context"]["checkpoint_files"]),
        "completion_length": statistics.mean(lengths.lengths) if lengths.lengths else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": _trl_version()},
    }


def _trl_version() -> str:
    import trl

    return str(trl.__version__)


def unused_checkpoint_mib(files: list[str]) -> float:
    """Pages of `files`' memory mappings that are present in this process's page tables (so counted in its RSS) but
    hold no parameter or buffer of any live `nn.Module`, in MiB (Linux: /proc/self/maps and /proc/self/pagemap)."""
    import gc

    import torch

    page = os.sysconf("SC_PAGE_SIZE")
    wanted = {str(Path(f).resolve()) for f in files}
    mappings = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] in wanted:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mappings.append((start, end))
    if not mappings:
        return 0.0
    live = [bytearray((end - start) // page) for start, end in mappings]
    for module in (obj for obj in gc.get_objects() if isinstance(obj, torch.nn.Module)):
        for tensor in itertools.chain(module.parameters(recurse=False), module.buffers(recurse=False)):
            storage = tensor.untyped_storage()
            first, last = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
            for (start, end), mask in zip(mappings, live, strict=True):
                if first < end and last > start:
                    lo, hi = (max(first, start) - start) // page, (min(last, end) - start - 1) // page + 1
                    mask[lo:hi] = b"\x01" * (hi - lo)
    unused = 0
    with open("/proc/self/pagemap", "rb") as pagemap:
        for (start, end), mask in zip(mappings, live, strict=True):
            pagemap.seek(start // page * 8)
            entries = memoryview(pagemap.read((end - start) // page * 8)).cast("Q")
            unused += sum(1 for entry, used in zip(entries, mask, strict=True) if entry >> 63 and not used)
    return unused * page / 2**20


def run_worker(job_path: Path) -> None:
    """Entry point of a worker process (`--worker JOB.json`): runs the job, writes its result next to it."""
    job = json.loads(job_path.read_text())
    try:
        result = build_checkpoints(job) if job["key"] == "setup" else measure(job)
    except Exception as error:  # reported as a table row, not a crash
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    Path(job["result"]).write_text(json.dumps(result))


# ---- parent side: the TRL 1.9.2 venv, the runs, the table ------------------------------------------------------------


def _worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",  # the benchmark builds its models locally and must never reach the Hub
        TOKENIZERS_PARALLELISM="false",
        # Idle OpenMP threads sleep instead of spinning (see bench_preference.py). Set before torch loads.
        OMP_WAIT_POLICY="PASSIVE",
        OMP_NUM_THREADS=str(threads),
        TRL_EXPERIMENTAL_SILENCE="1",
    )
    # The venv's python must not pick up the project venv's packages through an inherited PYTHONPATH.
    env.pop("PYTHONPATH", None)
    return env


def in_worker(python: str, job: dict[str, Any], root: Path, threads: int) -> dict[str, Any]:
    """`job` in a fresh process of `python`; its result, or {"error": ...} if it failed."""
    job_file = root / f"job-{len(list(root.glob('job-*.json')))}.json"
    job = {**job, "result": str(root / f"result-{job_file.stem}.out")}
    job_file.write_text(json.dumps(job))
    command = [python, str(Path(__file__).resolve()), "--worker", str(job_file)]
    try:
        process = subprocess.run(
            command, env=_worker_env(threads), capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the worker ran past {WORKER_TIMEOUT_S} s and was stopped"}
    result_file = Path(job["result"])
    if result_file.exists():
        result: dict[str, Any] = json.loads(result_file.read_text())
    else:
        result = {"error": f"the worker exited with code {process.returncode} without a result (killed for memory?)"}
    if "error" in result:
        print(process.stderr[-4000:], file=sys.stderr)
    return result


def _pip(python: Path, *requirements: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        capture_output=True,
        text=True,
        check=False,
    )


def _pip_failure(process: subprocess.CompletedProcess[str]) -> str:
    # pip's own complaints, without the index-location warnings some machines print for every package.
    lines = [line for line in process.stderr.splitlines() if line.strip() and "is ignored" not in line]
    return " ".join(lines[-6:]) or f"pip exited with code {process.returncode}"


def legacy_python(venv: Path) -> tuple[str | None, str]:
    """The TRL 1.9.2 venv's python, created and installed on first use, and a line saying what it runs, or
    (None, what stopped it)."""
    python = venv / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import torch, transformers, trl; from trl.experimental.ppo import PPOTrainer; "
        "from trl.experimental.nash_md import NashMDTrainer; "
        "print(trl.__version__, transformers.__version__, torch.__version__)",
    ]

    def versions() -> subprocess.CompletedProcess[str]:
        return subprocess.run(check, capture_output=True, text=True, env=_worker_env(1), check=False)

    if python.exists():
        found = versions()
        if found.returncode == 0 and found.stdout.split()[:1] == [LEGACY_TRL]:
            return str(python), _venv_line(venv, found.stdout)
    print(f"Creating {venv} with trl=={LEGACY_TRL} (first run only) ...", file=sys.stderr, flush=True)
    created = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if created.returncode != 0:
        return None, f"`python -m venv {venv}` failed: {created.stderr.strip()[-500:]}"
    torch = _pip(python, f"torch=={LEGACY_TORCH}")
    if torch.returncode != 0:
        return None, f"`pip install torch=={LEGACY_TORCH}` in {venv} failed: {_pip_failure(torch)}"
    # The project's transformers where TRL 1.9.2 accepts it, so that both sides run the same model and generate
    # code; whatever pip resolves for trl==1.9.2 otherwise.
    project_transformers = importlib.metadata.version("transformers")
    # `requests`: TRL 1.9.2's Nash-MD imports its judges module, which needs it but does not declare it.
    installed = _pip(python, f"trl=={LEGACY_TRL}", f"transformers=={project_transformers}", "requests")
    if installed.returncode != 0:
        installed = _pip(python, f"trl=={LEGACY_TRL}", "requests")
    if installed.returncode != 0:
        return None, f"`pip install trl=={LEGACY_TRL}` in {venv} failed: {_pip_failure(installed)}"
    found = versions()
    if found.returncode != 0:
        error = found.stderr.strip().splitlines()[-1] if found.stderr.strip() else f"exit code {found.returncode}"
        return None, f"TRL {LEGACY_TRL} installed in {venv} but its PPO or Nash-MD trainer does not import: {error}"
    return str(python), _venv_line(venv, found.stdout)


def _venv_line(venv: Path, versions: str) -> str:
    trl, transformers, torch = versions.split()[:3]
    try:
        shown = venv.relative_to(REPO)
    except ValueError:
        shown = venv
    return f"TRL {trl} baseline: its own venv `{shown}` (transformers {transformers}, torch {torch})"


def render(
    settings: Settings,
    context: dict[str, Any],
    results: dict[str, Measurement],
    venv_line: str,
    project_versions: dict[str, str],
    wall: float,
) -> str:
    cost = _cost_module(legacy=False)  # the report runs in the project's environment
    mib = 1024 * 1024
    policy_mib = context["policy_params"] * 4 / mib
    reward_mib = context["reward_params"] * 4 / mib
    policy_params, reward_params = context["policy_params"] / 1e6, context["reward_params"] / 1e6
    family = FAMILIES[settings.family]
    epochs = settings.ppo_epochs if settings.family == "ppo" else 1
    model_line = (
        f"Workload: tiny llama (hidden {settings.hidden_size}, {settings.num_layers} layers, "
        f"{settings.num_heads} heads, vocab {settings.vocab_size}): policy {policy_params:.1f}M parameters "
        f"({policy_mib:.0f} MiB in fp32), reward model {reward_params:.1f}M ({reward_mib:.0f} MiB). "
    )
    if settings.family == "ppo":
        workload = (
            f"One rollout = {settings.batch_size} completions of {settings.completion_length} new tokens (GRPO: groups "
            f"of {settings.grpo_group}) from transitive-task prompts of {context['prompt_tokens']:.0f} tokens, then "
            f"{epochs} PPO epochs × 1 mini-batch = {epochs} optimizer steps"
        )
    else:
        workload = (
            f"One rollout = {settings.batch_size} policy completions and as many samples of the geometric mixture "
            f"(μ = {MIXTURE_COEF}) of policy and reference, {settings.completion_length} new tokens each, from "
            f"transitive-task prompts of {context['prompt_tokens']:.0f} tokens (trl-plus: 2 completions per prompt; "
            f"TRL: one per prompt), the reward model's σ(r_y − r_y′) as P(y ≻ y′), then 1 optimizer step"
        )
    lines = [
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{settings.threads} torch intra-op thread(s) per run, Python {platform.python_version()}",
        f"trl-plus and GRPO: trl {project_versions.get('trl', '?')}, transformers "
        f"{project_versions.get('transformers', '?')}, torch {project_versions.get('torch', '?')}. {venv_line}.",
        f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        f"{model_line}{workload}; fp32 compute, AdamW lr {LEARNING_RATE:g}, temperature {TEMPERATURE}, "
        f"KL coef {KL_COEF}, gradient_checkpointing={settings.gradient_checkpointing}, CPU.",
        f"Rollout time: seconds per rollout (generation + scoring + {epochs} optimizer step(s)) after "
        f"{settings.warmup} warm-up rollout(s), median of {settings.rollouts} rollout(s) × {settings.repeats} "
        f"repeat(s), ± half the interquartile range; per step = rollout / {epochs}. Peak mem: peak RSS from just after "
        "the imports (before any model is loaded) to the end of `trainer.train()`, minus the RSS at that start, MiB "
        f"(trl_plus.cost), median over repeats. Each run in its own process. Ratios are run / "
        f"{SPECS[family.baseline].label}, lower is better; the targets apply to the headline (bold) row.",
        "",
        "| run | s/rollout | s/step | time ratio | peak mem (MiB) | memory ratio | targets (time, memory) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = results.get(family.baseline)
    base_seconds = _median(base.rollout_times) if base else None
    base_mib = _median(base.peak_mib) if base else None
    base_used = None if base is None or base_mib is None else base_mib - (_median(base.unused_mib) or 0.0)
    memory_rows = []
    errors = []
    for key in settings.only:
        spec, measurement = SPECS[key], results[key]
        time_text, seconds = cost.time_cell(measurement.rollout_times, digits=2)
        step_text = "—" if seconds is None else f"{seconds / epochs:.2f}"
        peak, unused = _median(measurement.peak_mib), _median(measurement.unused_mib)
        peak_text = "—" if peak is None else f"{peak:.0f}"
        if measurement.errors:
            time_text = peak_text = cost.error_cell(measurement.errors)
            errors.append(f"{key}: {measurement.errors[0]}")
        time_ratio, memory_ratio = cost.ratio(seconds, base_seconds), cost.ratio(peak, base_mib)
        if key == family.headline:
            targets = ", ".join(
                cost.target_text(value, target)
                for value, target in zip((time_ratio, memory_ratio), family.targets, strict=True)
            )
        else:
            targets = "baseline" if key == family.baseline else "—"
        name = f"**{spec.label}**" if key == family.headline else spec.label
        lines.append(
            f"| {name} | {time_text} | {step_text} | {cost.ratio_text(time_ratio, digits=2)} | {peak_text} "
            f"| {cost.ratio_text(memory_ratio, digits=2)} | {targets} |"
        )
        used = None if peak is None or unused is None else peak - unused
        memory_rows.append(
            f"| {name} | {spec.holds} | {peak_text} | {'—' if unused is None else f'{unused:.0f}'} "
            f"| {'—' if used is None else f'{used:.0f}'} | {cost.ratio_text(cost.ratio(used, base_used), digits=2)} |"
        )
    lines += [
        "",
        "Where the memory is. Unused checkpoint pages: pages of the checkpoint files mapped while loading that no "
        "live parameter or buffer lies on (in the nf4 runs, the fp32 source of the quantized layers); clean page "
        "cache the kernel can reclaim, but counted in RSS. The last column compares the peak less those pages.",
        "",
        "| run | models held | peak mem (MiB) | unused checkpoint pages (MiB) | peak less those (MiB) | ratio |",
        "|---|---|---|---|---|---|",
        *memory_rows,
    ]
    lengths = {k: results[k].completion_length for k in settings.only if results[k].completion_length is not None}
    if lengths:
        shown = ", ".join(f"{k} {v:.1f}" for k, v in lengths.items())
        lines += ["", f"Mean completion length (tokens, the GRPO-based trainers' own metric): {shown}."]
    lines += ["", f"Total wall time {wall / 60:.1f} min."]
    lines += [f"Error: {error}" for error in dict.fromkeys(errors)]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# ---- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Settings | Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=3, help="timed rollouts per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rollouts before the timed ones (at least 1)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs per configuration, interleaved (on a shared machine, another "
        "job's load made single runs up to 1.5× slower)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="completions per rollout")
    parser.add_argument("--completion-length", type=int, default=16, help="new tokens per completion")
    parser.add_argument("--ppo-epochs", type=int, default=4, help="passes (= optimizer steps) over each rollout")
    parser.add_argument("--grpo-group", type=int, default=4, help="GRPO completions per prompt (divides --batch-size)")
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--num-layers", type=int, default=8)
    parser.add_argument("--num-heads", type=int, default=12)
    parser.add_argument("--vocab-size", type=int, default=8192, help="embedding rows (the tokenizer has 1024 tokens)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per run")
    parser.add_argument(
        "--family", choices=list(FAMILIES), default="ppo", help="ppo (PPO and GRPO runs) or nash (Nash-MD runs)"
    )
    parser.add_argument("--only", nargs="+", choices=list(SPECS), default=None, help="default: the family's runs")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the TRL 1.9.2 virtualenv (created if absent)")
    parser.add_argument("--quick", action="store_true", help="small model and counts for a smoke check")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args.worker
    if args.quick:
        args.rollouts, args.warmup, args.repeats, args.batch_size, args.completion_length = 2, 1, 1, 8, 8
        args.hidden_size, args.num_layers, args.num_heads, args.vocab_size = 128, 2, 4, 1024
    for name in ("rollouts", "warmup", "repeats", "batch_size", "completion_length", "ppo_epochs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.grpo_group < 2 or args.batch_size % args.grpo_group:
        parser.error(f"--grpo-group must be ≥ 2 and divide --batch-size {args.batch_size}, got {args.grpo_group}.")
    if args.vocab_size < 1024:
        parser.error(f"--vocab-size must be at least the tokenizer's 1024 tokens, got {args.vocab_size}.")
    if args.hidden_size % args.num_heads:
        parser.error(f"--hidden-size {args.hidden_size} must be divisible by --num-heads {args.num_heads}.")
    only = list(dict.fromkeys(args.only or FAMILIES[args.family].runs))
    if args.family == "nash" and args.batch_size % 2:
        parser.error(
            f"--batch-size must be even for the Nash runs (two completions per prompt), got {args.batch_size}."
        )
    return Settings(
        args.rollouts,
        args.warmup,
        args.repeats,
        args.batch_size,
        args.completion_length,
        args.ppo_epochs,
        args.grpo_group,
        args.hidden_size,
        args.num_layers,
        args.num_heads,
        args.vocab_size,
        args.gradient_checkpointing,
        args.threads,
        [key for key in SPECS if key in only],
        args.venv.resolve(),
        args.out,
        args.family,
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    if isinstance(settings, Path):
        run_worker(settings)
        return
    start = time.perf_counter()
    results = {key: Measurement() for key in settings.only}
    venv_line = "TRL 1.9.2 baseline: not requested (--only)"
    legacy: str | None = None
    legacy_keys = [key for key in settings.only if SPECS[key].legacy]
    if legacy_keys:
        legacy, venv_line = legacy_python(settings.venv)
        if legacy is None:
            print(f"TRL {LEGACY_TRL} baseline not run: {venv_line}", file=sys.stderr, flush=True)
            for key in legacy_keys:
                results[key].errors.append(venv_line)
            venv_line = f"TRL {LEGACY_TRL} baseline not run: {venv_line}"
    # What the workers need of the settings, as JSON.
    worker_settings = {**asdict(settings), "total_rollouts": settings.total_rollouts}
    del worker_settings["venv"], worker_settings["out"]
    shared = {"settings": worker_settings}
    project_versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_online_") as tmp:
        root = Path(tmp)
        setup_job = {**shared, "key": "setup", "root": str(root)}
        context = in_worker(sys.executable, setup_job, root, settings.threads)
        if "error" in context:
            raise SystemExit(f"Building the checkpoints failed: {context['error']}")
        runnable = [key for key in settings.only if not results[key].errors]
        runs = []
        for repeat in range(settings.repeats):
            # Alternate the order between repeats, so slow drift of the machine does not favour one side.
            runs += runnable if repeat % 2 == 0 else runnable[::-1]
        for index, key in enumerate(runs, start=1):
            began = time.perf_counter()
            python = legacy if SPECS[key].legacy else sys.executable
            job = {**shared, "key": key, "context": context, "out": str(root / "out")}
            result = in_worker(str(python), job, root, settings.threads)
            measurement = results[key]
            if "error" in result:
                measurement.errors.append(result["error"])
                summary = result["error"]
            else:
                measurement.rollout_times += result["rollout_times"]
                measurement.peak_mib.append(result["peak_mib"])
                measurement.unused_mib.append(result["unused_mib"])
                measurement.completion_length = result["completion_length"]
                if not SPECS[key].legacy:
                    project_versions = result["versions"]
                summary = (
                    f"{statistics.median(result['rollout_times']):.2f} s/rollout, {result['peak_mib']:.0f} MiB peak"
                )
            elapsed = time.perf_counter() - began
            print(f"[{index}/{len(runs)}] {key}: {summary} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
    table = render(settings, context, results, venv_line, project_versions, time.perf_counter() - start)
    print(table)
    if settings.out is not None:
        settings.out.write_text(table)


if __name__ == "__main__":
    main()
