"""Step time and peak memory of `PreferenceTrainer` next to TRL's own trainers, printed as a markdown table.

    python scripts/bench_preference.py            # default workload, about 10 minutes on 2 CPU cores
    python scripts/bench_preference.py --quick    # smoke check, under a minute
    python scripts/bench_preference.py --only dpo --repeats 5 --out bench.md

Comparisons, each on the same model, data, seed and settings as its TRL baseline:

- `dpo`: `PreferenceTrainer(loss="dpo")` on each log-prob path (fused, chunked, logits) vs
  `DPOTrainer(loss_type="sigmoid")`, on the tiny llama at its tokenizer's vocabulary (about 630 tokens) unless
  `--dpo-vocab-size` says otherwise. Targets: time ratio ≤ 1.03, memory ratio ≤ 1.02.
- `simpo`, `cpo`, `orpo`: the reference-free losses on each path vs `trl.experimental.cpo.CPOTrainer`
  (`loss_type="simpo"`, `cpo_alpha=0` / `loss_type="sigmoid"`, `cpo_alpha=1`) and `trl.experimental.orpo.ORPOTrainer`,
  on the tiny llama padded to a 128k vocabulary (`--vocab-size`). Targets: memory ≤ 0.5× TRL's, no slower.
  A step takes seconds here, so these get their own, smaller counts (`--large-steps`, `--large-repeats`).
- `kto`: `UnpairedPreferenceTrainer(loss="kto")` (fused log-probs, its only path) vs `KTOTrainer(loss_type="kto")`
  on the dpo model, both unpairing the same pairs on the fly: `--batch-size` completions per step, plus as many
  mismatched ones for the KL estimate. Targets: time ratio ≤ 1.03, memory ratio ≤ 1.02.

What is measured:

- Step time: wall time of one optimizer step as the training loop sees it (collation, forward, backward,
  clipping, optimizer), taken between consecutive `on_step_end` callbacks of `trainer.train()`. The first
  `--warmup` steps are dropped; the median is over the timed steps of all repeats pooled, with ± half the
  interquartile range as a share of the median.
- Peak memory: peak resident set size (VmHWM) during `trainer.train()` minus the RSS just before it, in MiB. The
  model, the reference model (dpo, kto) and the tokenised dataset are already loaded, so the figure counts what
  training adds: gradients, AdamW state, activations, logits and their gradients. The peak is reset through
  `/proc/self/clear_refs` before training (falling back to `ru_maxrss` where that is not allowed). Median over
  repeats.
- Each configuration runs in its own process, forked from this one after the heavy imports: one run's allocations
  cannot pollute another's, and no run pays the import time. Repeats interleave the configurations (A, B, C, ...,
  then in reverse order) so that drift on a shared machine hits all of them alike.

All runs use fp32 (`bf16=False`: CPU), AdamW at lr 1e-6, `gradient_checkpointing=True` (the TRL configs' default;
`--no-gradient-checkpointing` turns it off everywhere), no logging or saving during the timed steps, CPU only, one
torch thread per run (`--threads`): with two threads on a shared 2-core machine, step times of the same run varied
up to 40-fold whenever another process took a core.

Workload: the synthetic `transitive` task's pairs stretched to `--seq-len` tokens per sequence. Each prompt is
preceded by words of other solved examples as context (half the budget), and each chosen/rejected answer is continued
with item words drawn at random from the task's items (the other half), so chosen and rejected have the same length
to within a token or two and nothing is truncated. `--batch-size` pairs per step, i.e. twice as many sequences.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Set before transformers is imported: the benchmark builds its models locally and must never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning thread whose partner lost its core
# turned 0.03 s steps into 2.6 s ones. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datasets
import numpy as np
import torch
import transformers
import trl
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
from transformers.utils import logging as hf_logging
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

from trl_plus.cost import (
    TIMED_RUN_ARGS,
    StepClock,
    error_cell,
    ratio,
    ratio_text,
    reset_peak_rss,
    status_kib,
    target_text,
    time_cell,
)
from trl_plus.synthetic import get_task
from trl_plus.synthetic.transitive import ITEMS
from trl_plus.testing import make_tiny
from trl_plus.trainers import PreferenceConfig, PreferenceTrainer, UnpairedPreferenceConfig, UnpairedPreferenceTrainer

PATHS = ("fused", "chunked", "logits")
COMPARISONS = ("dpo", "simpo", "cpo", "orpo", "kto")
# Comparisons on the small-vocabulary model, with the dpo step counts.
SMALL = ("dpo", "kto")
# make_tiny builds its models with 512 positions.
MAX_POSITIONS = 512


@dataclass
class Settings:
    steps: int
    warmup: int
    repeats: int
    large_steps: int
    large_repeats: int
    vocab_size: int
    dpo_vocab_size: int | None
    seq_len: int
    batch_size: int
    gradient_checkpointing: bool
    threads: int
    only: list[str]
    out: Path | None = None

    @property
    def max_length(self) -> int:
        # A little headroom over the built length, so that no trainer truncates (their truncation rules differ).
        return min(self.seq_len + 16, MAX_POSITIONS)

    def counts(self, comparison: str) -> tuple[int, int]:
        """(timed steps, repeats) for a comparison: the large-vocabulary ones take seconds per step."""
        return (self.steps, self.repeats) if comparison in SMALL else (self.large_steps, self.large_repeats)


@dataclass
class RunSpec:
    """One configuration: which trainer, which loss and hyperparameters, which model."""

    comparison: str
    trainer: str  # "preference", "unpaired", "dpo", "kto", "cpo" or "orpo"
    model: str  # "dpo" or "large": which of the two tiny checkpoints
    config: dict[str, Any]
    label: str
    steps: int

    @property
    def key(self) -> str:
        return f"{self.comparison}/{self.label}"


@dataclass
class Comparison:
    name: str
    baseline: RunSpec
    candidates: list[RunSpec]
    time_target: float
    memory_target: float
    repeats: int


@dataclass
class Measurement:
    step_times: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# ---- comparisons --------------------------------------------------------------------------------------------------

# The same hyperparameters on both sides; they only matter for the loss values, not for cost.
_OURS: dict[str, dict[str, Any]] = {
    "dpo": {"loss": "dpo", "beta": 0.1},
    "simpo": {"loss": "simpo", "beta": 2.0, "loss_kwargs": {"gamma": 0.5}},
    "cpo": {"loss": "cpo", "beta": 0.1, "loss_kwargs": {"alpha": 1.0}},
    "orpo": {"loss": "orpo", "beta": 0.1},
    "kto": {"loss": "kto", "beta": 0.1},
}
_BASELINES: dict[str, tuple[str, dict[str, Any], str]] = {
    "dpo": ("dpo", {"loss_type": ["sigmoid"], "beta": 0.1}, "DPOTrainer(loss_type=sigmoid)"),
    "simpo": (
        "cpo",
        {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 0.5},
        "CPOTrainer(loss_type=simpo, cpo_alpha=0)",
    ),
    "cpo": (
        "cpo",
        {"loss_type": "sigmoid", "cpo_alpha": 1.0, "beta": 0.1},
        "CPOTrainer(loss_type=sigmoid, cpo_alpha=1)",
    ),
    "orpo": ("orpo", {"beta": 0.1}, "ORPOTrainer"),
    "kto": ("kto", {"loss_type": "kto", "beta": 0.1}, "KTOTrainer(loss_type=kto)"),
}


def comparisons(settings: Settings) -> list[Comparison]:
    result = []
    for name in settings.only:
        model = "dpo" if name in SMALL else "large"
        trainer, config, label = _BASELINES[name]
        steps, repeats = settings.counts(name)
        baseline = RunSpec(name, trainer, model, config, label, steps)
        if name == "kto":
            candidates = [RunSpec(name, "unpaired", model, _OURS[name], "kto, fused", steps)]
        else:
            candidates = [
                RunSpec(name, "preference", model, {**_OURS[name], "logprob_path": path}, f"{name}, {path}", steps)
                for path in PATHS
            ]
        # DPO and KTO must cost what TRL's trainers cost; the reference-free losses must beat TRL's experimental ones.
        targets = (1.03, 1.02) if name in SMALL else (1.0, 0.5)
        result.append(Comparison(name, baseline, candidates, *targets, repeats))
    return result


# ---- setup: checkpoints and data ----------------------------------------------------------------------------------


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _fill(tokenizer: Any, words: Iterator[str], budget: int, start: str = "") -> str:
    """`start` followed by words from `words` while the text stays within `budget` tokens."""
    text = start
    for word in words:
        candidate = f"{text} {word}" if text else word
        if _token_count(tokenizer, candidate) > budget:
            break
        text = candidate
    return text


def _random_items(rng: np.random.Generator) -> Iterator[str]:
    while True:
        yield ITEMS[int(rng.integers(len(ITEMS)))]


def build_rows(tokenizer: Any, n_rows: int, seq_len: int, seed: int = 0) -> list[dict[str, str]]:
    """Transitive-task pairs stretched to about `seq_len` tokens per sequence (see the module docstring)."""
    task = get_task("transitive", seed=seed)
    pairs = task.preference_dataset(n_rows * 4, seed=seed)
    rng = np.random.default_rng(seed)
    # BOS and EOS take one token each; the prompt gets half of the rest.
    prompt_budget = (seq_len - 2) // 2
    completion_budget = seq_len - 2 - prompt_budget
    rows = []
    for index in range(n_rows):
        row = pairs[index]
        # Other examples of the task, prompt and answer, as context before this one's prompt.
        context = (f"{pairs[j]['prompt']} {pairs[j]['chosen']}" for j in itertools.cycle(range(n_rows, len(pairs))))
        words = itertools.chain.from_iterable(text.split() for text in context)
        head_budget = prompt_budget - _token_count(tokenizer, " " + row["prompt"])
        prompt = f"{_fill(tokenizer, words, head_budget)} {row['prompt']}"

        def completion(answer: str) -> str:
            # A leading space: every trainer tokenises prompt + completion as one string.
            return " " + _fill(tokenizer, _random_items(rng), completion_budget - 1, start=answer)

        rows.append({"prompt": prompt, "chosen": completion(row["chosen"]), "rejected": completion(row["rejected"])})
    return rows


def setup(settings: Settings, root: Path) -> dict[str, Any]:
    """Build the tiny checkpoints and the dataset (in a child process: the parent stays free of torch work)."""
    _quiet()
    model_dirs = {}
    if any(name in SMALL for name in settings.only):
        model_dirs["dpo"] = str(make_tiny("llama", root / "dpo", vocab_size=settings.dpo_vocab_size))
    if any(name not in SMALL for name in settings.only):
        model_dirs["large"] = str(make_tiny("llama", root / "large", vocab_size=settings.vocab_size))
    tokenizer = AutoTokenizer.from_pretrained(next(iter(model_dirs.values())))
    most_steps = max(settings.counts(name)[0] for name in settings.only)
    rows = build_rows(tokenizer, settings.batch_size * (settings.warmup + most_steps), settings.seq_len)
    lengths = [
        len(tokenizer(row["prompt"] + row[side])["input_ids"]) + 1 for row in rows for side in ("chosen", "rejected")
    ]
    prompts = [len(tokenizer(row["prompt"])["input_ids"]) for row in rows]
    vocab = {name: AutoModelForCausalLM.from_pretrained(path).config.vocab_size for name, path in model_dirs.items()}
    return {
        "model_dirs": model_dirs,
        "rows": rows,
        "tokens": (min(lengths), max(lengths), statistics.mean(prompts)),
        "vocab": vocab,
    }


# ---- one measured run -----------------------------------------------------------------------------------------------


def build_trainer(spec: RunSpec, settings: Settings, model_dir: str, rows: list[dict[str, str]], out: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dataset = Dataset.from_list(rows)
    common: dict[str, Any] = {
        **TIMED_RUN_ARGS,
        "output_dir": out,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": settings.warmup + spec.steps,
        "learning_rate": 1e-6,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "max_length": settings.max_length,
    }
    data = {"train_dataset": dataset, "processing_class": tokenizer}
    if spec.trainer == "preference":
        return PreferenceTrainer(model, args=PreferenceConfig(**common, **spec.config), **data)
    if spec.trainer == "dpo":
        return DPOTrainer(model, args=DPOConfig(**common, **spec.config), **data)
    if spec.trainer == "unpaired":
        return UnpairedPreferenceTrainer(model, args=UnpairedPreferenceConfig(**common, **spec.config), **data)
    if spec.trainer == "kto":
        return KTOTrainer(model, args=KTOConfig(**common, **spec.config), **data)
    # The experimental trainers are imported only where they run, so that one that fails to import is one error row.
    if spec.trainer == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        # remove_unused_columns=False: the trainer forces it for its collator, with a warning.
        return CPOTrainer(model, args=CPOConfig(**common, **spec.config, remove_unused_columns=False), **data)
    if spec.trainer == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(model, args=ORPOConfig(**common, **spec.config, remove_unused_columns=False), **data)
    raise ValueError(f"Unknown trainer {spec.trainer!r}; expected preference, unpaired, dpo, kto, cpo or orpo.")


def _quiet() -> None:
    # Progress bars and per-run notices would bury the table; errors still reach stderr.
    warnings.simplefilter("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def measure(spec: RunSpec, settings: Settings, context: dict[str, Any], out: str) -> dict[str, Any]:
    _quiet()
    torch.set_num_threads(settings.threads)
    trainer = build_trainer(spec, settings, context["model_dirs"][spec.model], context["rows"], out)
    trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics
    clock = StepClock()
    trainer.add_callback(clock)
    gc.collect()
    rss_before = status_kib("VmRSS")
    if reset_peak_rss():
        trainer.train()
        peak = status_kib("VmHWM")
    else:
        # ru_maxrss (KiB on Linux) is the lifetime peak: still right as long as training peaks above construction.
        trainer.train()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if len(clock.ends) != settings.warmup + spec.steps:
        raise RuntimeError(f"expected {settings.warmup + spec.steps} optimizer steps, saw {len(clock.ends)}")
    # The first timed step starts where the last warm-up step ended.
    timed = clock.ends[settings.warmup - 1 :]
    return {"step_times": [b - a for a, b in itertools.pairwise(timed)], "peak_mib": (peak - rss_before) / 1024}


def _child(target: Any, conn: Connection, *args: Any) -> None:
    try:
        conn.send(target(*args))
    except Exception as error:  # reported as a table row, not a crash
        traceback.print_exc()
        conn.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        conn.close()


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    """`target(*args)` in a forked process; its result, or {"error": ...} if it raised or died."""
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_child, args=(target, sender, *args))
    process.start()
    sender.close()
    try:
        result: dict[str, Any] = receiver.recv()
    except EOFError:
        result = {"error": "the worker process died without a result (killed for memory?)"}
    process.join()
    if process.exitcode and "error" not in result:
        result = {"error": f"the worker process exited with code {process.exitcode}"}
    return result


# ---- report -------------------------------------------------------------------------------------------------------


def _memory_cell(peaks: list[float]) -> tuple[str, float | None]:
    if not peaks:
        return "—", None
    median = statistics.median(peaks)
    return f"{median:.0f}", median


def render(
    settings: Settings, context: dict[str, Any], groups: list[Comparison], results: dict[str, Measurement], wall: float
) -> str:
    lowest, highest, prompt_mean = context["tokens"]
    vocab = context["vocab"]
    token_range = f"{lowest}" if lowest == highest else f"{lowest}–{highest}"
    lines = [
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} ({settings.threads} intra-op thread(s) per run), trl {trl.__version__}, "
        f"transformers {transformers.__version__}, Python {platform.python_version()}",
        f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        f"Workload: tiny llama (hidden 64, 2 layers; vocab {', '.join(f'{v}' for v in vocab.values())}), "
        f"{settings.batch_size} pairs ({2 * settings.batch_size} sequences) per step, {token_range} tokens per "
        f"sequence (prompt ≈ {prompt_mean:.0f}); fp32 (bf16=False), gradient_checkpointing="
        f"{settings.gradient_checkpointing}, AdamW lr 1e-6, max_length {settings.max_length}, CPU.",
        f"Step time: seconds per optimizer step (whole loop iteration) after {settings.warmup} warm-up step(s), median "
        f"of {settings.steps} steps × {settings.repeats} repeat(s) for dpo and kto, {settings.large_steps} × "
        f"{settings.large_repeats} for the others, ± half the interquartile range. "
        "Peak mem: peak RSS during `trainer.train()` minus RSS just before it (model, reference and data loaded), "
        "MiB, median over repeats; each run in its own forked process. Ratios are trl-plus / TRL, lower is better.",
        "Hyperparameters, both sides: dpo β 0.1; simpo β 2.0, γ 0.5; cpo β 0.1, α 1.0; orpo β 0.1; kto β 0.1. "
        "kto: the pairs unpaired, --batch-size completions per step plus as many mismatched ones for the KL estimate.",
        "",
        "| comparison | trl-plus config | TRL baseline | median step (s) ours | median step (s) TRL | time ratio "
        "| peak mem (MiB) ours | peak mem (MiB) TRL | memory ratio | targets (time, memory) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    errors = []
    for group in groups:
        base = results[group.baseline.key]
        base_time, base_seconds = time_cell(base.step_times)
        base_memory, base_mib = _memory_cell(base.peak_mib)
        if base.errors:
            base_time = base_memory = error_cell(base.errors)
            errors.append(f"{group.baseline.label}: {base.errors[0]}")
        model_vocab = vocab[group.baseline.model]
        for spec in group.candidates:
            ours = results[spec.key]
            time_text, seconds = time_cell(ours.step_times)
            memory_text, mib = _memory_cell(ours.peak_mib)
            if ours.errors:
                time_text = memory_text = error_cell(ours.errors)
                errors.append(f"{spec.label}: {ours.errors[0]}")
            time_ratio, memory_ratio = ratio(seconds, base_seconds), ratio(mib, base_mib)
            verdicts = [target_text(time_ratio, group.time_target), target_text(memory_ratio, group.memory_target)]
            lines.append(
                f"| {group.name} (V={model_vocab}) | `{spec.label}` | `{group.baseline.label}` | {time_text} "
                f"| {base_time} | {ratio_text(time_ratio)} | {memory_text} | {base_memory} "
                f"| {ratio_text(memory_ratio)} | {', '.join(verdicts)} |"
            )
    lines += ["", f"Total wall time {wall / 60:.1f} min."]
    lines += [f"Error: {error}" for error in dict.fromkeys(errors)]
    return "\n".join(lines) + "\n"


# ---- main -----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per dpo/kto run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per dpo/kto configuration, interleaved")
    parser.add_argument("--large-steps", type=int, default=2, help="timed steps per simpo/cpo/orpo run")
    parser.add_argument("--large-repeats", type=int, default=1, help="runs per simpo/cpo/orpo configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones (at least 1)")
    parser.add_argument("--vocab-size", type=int, default=128256, help="vocabulary of the simpo/cpo/orpo model")
    parser.add_argument("--dpo-vocab-size", type=int, default=None, help="vocabulary of the dpo model (tokenizer's)")
    parser.add_argument("--seq-len", type=int, default=400, help="tokens per sequence, prompt + completion")
    parser.add_argument("--batch-size", type=int, default=4, help="preference pairs per step")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads per run (1: steadiest on a shared machine; ratios compare like with like)",
    )
    parser.add_argument("--only", nargs="+", choices=COMPARISONS, default=list(COMPARISONS))
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke check (< 1 minute)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.large_steps, args.large_repeats, args.warmup = 2, 1, 1, 1, 1
        args.vocab_size, args.seq_len, args.batch_size = 4096, 48, 2
    for name in ("steps", "warmup", "repeats", "large_steps", "large_repeats", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if not 16 <= args.seq_len <= MAX_POSITIONS - 16:
        parser.error(f"--seq-len must lie in [16, {MAX_POSITIONS - 16}] (make_tiny's models have 512 positions).")
    return Settings(
        args.steps,
        args.warmup,
        args.repeats,
        args.large_steps,
        args.large_repeats,
        args.vocab_size,
        args.dpo_vocab_size,
        args.seq_len,
        args.batch_size,
        args.gradient_checkpointing,
        args.threads,
        list(dict.fromkeys(args.only)),
        args.out,
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    start = time.perf_counter()
    groups = comparisons(settings)
    specs = [spec for group in groups for spec in (group.baseline, *group.candidates)]
    results = {spec.key: Measurement() for spec in specs}
    with tempfile.TemporaryDirectory(prefix="bench_preference_") as root:
        context = in_child(setup, settings, Path(root))
        if "error" in context:
            raise SystemExit(f"Building the checkpoints and data failed: {context['error']}")
        runs = []
        for repeat in range(max(group.repeats for group in groups)):
            specs_now = [s for g in groups if g.repeats > repeat for s in (g.baseline, *g.candidates)]
            # Alternate the order between repeats, so slow drift of the machine does not favour one side.
            runs += specs_now if repeat % 2 == 0 else specs_now[::-1]
        for index, spec in enumerate(runs, start=1):
            began = time.perf_counter()
            result = in_child(measure, spec, settings, context, str(Path(root) / "out"))
            measurement = results[spec.key]
            if "error" in result:
                measurement.errors.append(result["error"])
                summary = result["error"]
            else:
                measurement.step_times += result["step_times"]
                measurement.peak_mib.append(result["peak_mib"])
                summary = f"{statistics.median(result['step_times']):.3f} s/step, {result['peak_mib']:.0f} MiB"
            elapsed = time.perf_counter() - began
            print(f"[{index}/{len(runs)}] {spec.key}: {summary} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
        table = render(settings, context, groups, results, time.perf_counter() - start)
    print(table)
    if settings.out is not None:
        settings.out.write_text(table)


if __name__ == "__main__":
    main()
