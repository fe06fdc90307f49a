"""`trl-plus compare`: alignment methods trained side by side, from one reference model on one preference dataset
with the same budget and seeds, and scored per method.

Two modes:

- `--task NAME` (a synthetic task with an oracle): the reference is `--model`, or a tiny llama built here and
  fine-tuned on the task (SFT); the dataset is one set of on-policy ranked lists (4 samples of the reference per
  prompt, ranked by the oracle), shared by every method and seed. Paired losses see every ordered pair of each
  list, listwise losses the whole list, unpaired ones the top half as desirable and the bottom half as undesirable.
- `--dataset PATH --model PATH` (your own data, no oracle): pairs, ranked lists or prompt/completion/label rows;
  a held-out split (its `test` split, or `--n` rows set aside) gives the held-out metrics.

`--heads bt,gpm` adds reward models (rows `rm:bt`, `rm:gpm`) trained from the same reference on the same data and
budget (`RewardModelTrainer`; every ordered pair of each list, or the lists themselves for a listwise head), scored
by their head's held-out accuracy; they have no samples, so no win rate or KL.

`--online ppo,grpo,nash,ppo:bt` adds online methods (`PPOTrainer`, TRL's `GRPOTrainer`, `NashTrainer`): they train
on the dataset's prompts, sampling their own completions, for the same steps and seeds, at `--online-learning-rate`.
`ppo` / `grpo` / `nash` use the task's oracle (reward, or preference for nash); `ppo:HEAD` / `grpo:HEAD` / `nash:HEAD`
a reward model with that head, first trained on the same data and budget as the `rm:HEAD` row (trained once per seed,
shared by the rows that use it; nash reads it as a preference, P(a ≻ b), so `nash:gpm` plays a general preference
model). Each step takes `--batch-size` completions (GRPO: groups of 4 per prompt; PPO: one per prompt; Nash: two per
prompt, each against its own sample of the geometric mixture of policy and reference, Nash-MD with β = 0.05). PPO and
GRPO use each rollout for 4 passes (`num_ppo_epochs`, `num_iterations`), so they sample steps × batch size / 4
completions; Nash uses each once. `--online-max-new-tokens` caps their completions while training (default: the
evaluation's 16; 8 made PPO stable on the synthetic tasks, whose answers are 2–3 words), and
`--online-kwargs '{"ppo:bt": {"kl_coef": 0.2}}'` sets any `PPOConfig` / `GRPOConfig` / `NashConfig` field of one row.

`--online iterative:dpo+sft,rft` adds the loops of `trl_plus.iterative` (task mode): `--steps` split into `--rounds`
rounds (default 4), each sampling 4 answers per prompt from the last round's policy, ranked by the task's oracle;
`iterative:LOSSES` trains any registry losses on every ordered pair (`iterative` alone: dpo+sft), `rft` fine-tunes on
the best of 4 with TRL's `SFTTrainer`. They train at `--learning-rate` and `--batch-size` like the offline rows, and
`--online-kwargs` passes further keywords (`{"iterative:dpo+sft": {"final_learning_rate": 5e-5}}`). Their curve
is taken at the round ends that fall on the curve's steps, and their step time is the loop's time over its steps,
sampling included. `iterative:dpo+sft@bt` or `rft@bt` rank with a reward model of that head instead of the oracle
(trained as the `rm:bt` row is, once per seed, not counted in the row's cost).

`--online bon:4,bon:16` adds best-of-N at inference: no training, the reference's best of N samples per prompt by the
oracle against one sample of the reference, with the analytic KL bound log N − (N−1)/N.

Training runs on the CPU. Per method, over `--seeds` training runs (seed s orders the data and draws the `--n`
held-out prompts and the samples for the win rate and KL; the held-out pairs are the same for every seed):

- `win rate`: the oracle's win rate of the method's samples against the reference's (task mode), its mean over
  seeds and a 95% interval that counts both the seeds' spread and each seed's sampling error (see `pooled`);
- `exploitability` (task mode): the best response's win rate against the policy, ½ at a Nash equilibrium; exact at
  the class level on `cyclic`, elsewhere a lower bound from 4 samples per prompt of the policy and the reference
  (`trl_plus.synthetic.exploitability`), the mean over seeds;
- `accuracy` / `margin`: held-out pairs ordered by the implicit reward log π − log π_ref, the same for every method
  (DPO's reward up to β), or by a reward model's P(chosen ≻ rejected); in task mode the pairs are two samples of
  the reference per prompt, oriented by the oracle's preference (pairs the oracle ties are left out);
- `KL`: KL(π‖π_ref) estimated on the policy's own samples (`trl_plus.evaluation.kl_estimate`);
- `step time`: the median training-loop iteration, in seconds (the first step of each run left out);
- `peak mem`: peak RSS while building the trainer (policy, reference, tokenised data) and training it, minus the
  RSS before, with the in-training evaluations left out; the median over seeds (see `trl_plus.cost`).

Every method runs in this process, one after another, with torch's thread count fixed (`--threads`): with the same
seeds and thread count the table repeats exactly; another thread count can change float sums and so the samples.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from trl_plus.cost import PeakMemory, StepClock

DEFAULT_LOSSES = "dpo,ipo,simpo,orpo,kto,plackett_luce"
METRICS = ("win_rate", "exploitability", "accuracy", "kl", "cost")
ORACLE_METRICS = ("win_rate", "exploitability")
PLOT_HINT = "Plots skipped: matplotlib is not installed; `pip install 'trl-plus[plot]'` adds them."


class CompareError(ValueError):
    """A setting or dataset compare cannot work with, found before any training."""


@dataclass(frozen=True)
class Method:
    """One row of the comparison: a loss, or several summed (`dpo+sft`), with its hyperparameters; or a reward
    model's head (`rm:gpm`)."""

    label: str
    losses: tuple[str, ...]
    kind: str  # what the trainer takes: paired, ranked or unpaired rows, "reward model", or "online" (prompts)
    loss_kwargs: dict[str, dict[str, Any]] | None = None
    head: str | None = None  # a reward model's head; for an online method, the head of the reward it trains against
    online: str | None = None  # "ppo" or "grpo"
    online_kwargs: dict[str, Any] | None = None  # an online row's PPOConfig / GRPOConfig fields


@dataclass
class CompareConfig:
    losses: str | Sequence[str] = DEFAULT_LOSSES
    heads: str | Sequence[str] = ()  # reward-model heads trained on the same data, scored by held-out accuracy
    online: str | Sequence[str] = ()  # online methods: ppo, grpo, or ppo:HEAD / grpo:HEAD against a reward model
    task: str | None = None
    dataset: str | None = None
    model: str | None = None
    out_dir: str | Path = "runs/compare"
    steps: int = 200
    seeds: int = 3
    sft_steps: int | None = None  # default: the demo recipe's for the tiny model built here, 0 for --model
    sft_learning_rate: float | None = None  # default: 3e-3 for the tiny model built here, 2e-5 for --model
    n: int = 256  # held-out prompts per seed (win rate, KL), and at most this many held-out pairs
    curve_points: int = 4
    curve_prompts: int = 64
    metrics: Sequence[str] | None = None  # default: every metric the mode has
    loss_kwargs: dict[str, dict[str, Any]] | None = None
    learning_rate: float = 1e-4
    online_learning_rate: float = 1e-3  # online methods: PPO with the oracle reached 0.85 at 1e-3, 0.62 at 3e-4
    online_kwargs: dict[str, dict[str, Any]] | None = None  # config fields by online row: {"ppo:bt": {"kl_coef": 0.2}}
    online_max_new_tokens: int | None = None  # online methods' completions while training (default max_new_tokens)
    rounds: int = 4  # iterative and rft rows: the steps split into this many rounds of fresh samples
    head_learning_rate: float = 1e-2  # reward models' freshly initialised heads
    reward_pooling: str = "mean"  # reward models' pooling: "mean" or "last" (see RewardModel)
    batch_size: int = 16  # lists or pairs per step; unpaired methods get as many completions
    max_new_tokens: int = 16
    threads: int | None = None
    progress: bool = True


@dataclass
class Run:
    """One method trained with one seed, and its scores."""

    seed: int
    win_rate: float | None = None
    win_rate_stderr: float | None = None
    exploitability: float | None = None
    accuracy: float | None = None
    margin: float | None = None
    kl: float | None = None
    kl_stderr: float | None = None
    step_times: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class MethodResult:
    method: Method
    runs: list[Run] = field(default_factory=list)
    error: str | None = None


@dataclass
class Comparison:
    config: CompareConfig
    oracle: bool
    results: list[MethodResult]
    seconds: float
    files: list[Path]

    def rows(self) -> list[dict[str, Any]]:
        return [summary(result) for result in self.results]

    def markdown(self) -> str:
        return markdown_table(self.rows(), oracle=self.oracle)


# -- validation, before any training ---------------------------------------------------------------------------


def _names(value: str | Sequence[str]) -> list[str]:
    """`a, b,c` (or a list of names) as stripped names, empty ones dropped."""
    names = value.split(",") if isinstance(value, str) else value
    return [name.strip() for name in names if name.strip()]


def parse_methods(losses: str | Sequence[str], loss_kwargs: dict[str, dict[str, Any]] | None = None) -> list[Method]:
    """Methods from `dpo,simpo,dpo+sft`; unknown names, mixed input kinds and bad hyperparameters raise here."""
    from trl_plus.demo import loss_kinds
    from trl_plus.registry import get_loss

    labels = _names(losses)
    if not labels:
        raise ValueError("No losses to compare; name registered losses, e.g. --losses dpo,simpo.")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"Losses named twice: {repeated}; each method is one row.")
    given = {get_loss(name).name: kwargs for name, kwargs in (loss_kwargs or {}).items()}
    methods: list[Method] = []
    used: set[str] = set()
    for label in labels:
        specs = [get_loss(name.strip()) for name in label.split("+")]
        names = [spec.name for spec in specs]
        try:
            _, kinds = loss_kinds(names)
        except ValueError:
            raise ValueError(
                f"The method {label!r} mixes unpaired losses with paired or listwise ones; they need different "
                "trainers. Compare them as separate methods."
            ) from None
        kwargs = {spec.name: given[spec.name] for spec in specs if spec.name in given}
        for spec in specs:
            spec.check_kwargs(kwargs.get(spec.name, {}))
        used |= set(kwargs)
        kind = "unpaired" if kinds == {"unpaired"} else "ranked" if "ranked" in kinds else "paired"
        same = [m.label for m in methods if m.losses == tuple(names)]
        if same:
            raise ValueError(f"{label!r} and {same[0]!r} are the same method (aliases); name it once.")
        methods.append(Method(label, tuple(names), kind, kwargs or None))
    unused = sorted(set(given) - used)
    if unused:
        raise ValueError(f"loss_kwargs names {unused}, which no compared method uses.")
    return methods


def parse_heads(heads: str | Sequence[str]) -> list[Method]:
    """Reward-model rows from `bt,gpm`; unknown heads raise here, with suggestions."""
    from trl_plus.registry import get_reward_head

    specs = [get_reward_head(name) for name in _names(heads)]
    repeated = sorted({spec.name for spec in specs if [s.name for s in specs].count(spec.name) > 1})
    if repeated:
        raise ValueError(f"Reward heads named twice (or by an alias): {repeated}; each is one row.")
    return [Method(f"rm:{spec.name}", (), "reward model", head=spec.name) for spec in specs]


ONLINE = ("ppo", "grpo", "nash", "iterative", "rft", "bon")
LOOPS = ("iterative", "rft")  # rounds of sampling, judging (the oracle) and training, not one trainer
ITERATIVE_LOSSES = ("dpo", "sft")  # `iterative` alone: the demo's dpo+sft
GRPO_GROUP = 4  # completions per prompt for GRPO rows
NASH_BETA = 0.05  # Nash rows' KL regularisation (NashConfig's other defaults: nash_md, mixture opponent, μ = 0.5)


def parse_online(
    online: str | Sequence[str], *, oracle: bool, online_kwargs: dict[str, dict[str, Any]] | None = None
) -> list[Method]:
    """Online rows from `ppo,grpo:bt`, with their config fields from `online_kwargs` (keyed by row); unknown trainers,
    heads or fields, kwargs for a row not compared, and an oracle reward without a task raise here."""
    methods: list[Method] = []
    for label in _names(online):
        base, _, judge = label.partition("@")
        trainer, _, head = base.partition(":")
        if judge and trainer not in LOOPS:
            raise ValueError(f"{label!r}: '@HEAD' (a reward model as the judge) is for iterative and rft rows.")
        if trainer not in ONLINE:
            raise ValueError(f"Unknown online method {label!r}: use one of {list(ONLINE)}, optionally ':HEAD'.")
        if trainer == "bon":
            method = _best_of_n_method(label, head, oracle=oracle)
        elif trainer in LOOPS:
            method = _loop_method(label, trainer, head, judge, oracle=oracle, online_kwargs=online_kwargs)
        else:
            method = _trainer_method(label, trainer, head, oracle=oracle, online_kwargs=online_kwargs)
        if any(m.label == method.label for m in methods):
            raise ValueError(f"Online method named twice: {method.label!r}; each is one row.")
        methods.append(method)
    unused = sorted(set(online_kwargs or {}) - {m.label for m in methods})
    if unused:
        raise ValueError(f"online_kwargs names {unused}, which no compared online row is (rows: ppo, ppo:bt...).")
    return methods


def _trainer_method(
    label: str, trainer: str, head: str, *, oracle: bool, online_kwargs: dict[str, dict[str, Any]] | None
) -> Method:
    """A `ppo` / `grpo` / `nash` row, against the oracle or (`:HEAD`) a reward model; its `online_kwargs` must be
    fields of the trainer's config."""
    import dataclasses

    from trl_plus.registry import get_reward_head
    from trl_plus.trainers._compat import GRPOConfig
    from trl_plus.trainers.nash import NashConfig
    from trl_plus.trainers.ppo import PPOConfig

    if head:
        head = get_reward_head(head).name
        if trainer == "ppo" and get_reward_head(head).target.output == "embedding":
            raise ValueError(
                f"{label!r}: the {head} head scores a completion against the others of its prompt, and PPO samples "
                f"one completion per prompt. Use grpo:{head}, or a scalar head with ppo."
            )
    elif not oracle:
        raise ValueError(f"{label!r} trains against the task's oracle; with --dataset name a head: {label}:bt.")
    name = f"{trainer}:{head}" if head else trainer
    kwargs = (online_kwargs or {}).get(name)
    config_class = {"ppo": PPOConfig, "grpo": GRPOConfig, "nash": NashConfig}[trainer]
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(kwargs or {}) - fields)
    if unknown:
        raise ValueError(f"online_kwargs[{name!r}] names {unknown}, which {config_class.__name__} does not have.")
    return Method(name, (), "online", head=head or None, online=trainer, online_kwargs=kwargs)


def _best_of_n_method(label: str, suffix: str, *, oracle: bool) -> Method:
    """A `bon:N` row: no training; the reference's best of N samples per prompt by the oracle, at inference."""
    if not oracle:
        raise ValueError(f"{label!r} picks the best sample with the task's oracle: it needs --task.")
    if not suffix.isdigit() or int(suffix) < 1:
        raise ValueError(f"{label!r}: write best-of-N as bon:N with N a whole number ≥ 1, e.g. bon:4.")
    return Method(f"bon:{int(suffix)}", (), "online", online="bon", online_kwargs={"n": int(suffix)})


def _loop_method(
    label: str,
    trainer: str,
    suffix: str,
    judge: str,
    *,
    oracle: bool,
    online_kwargs: dict[str, dict[str, Any]] | None,
) -> Method:
    """An `iterative[:LOSS+LOSS][@HEAD]` or `rft[@HEAD]` row: rounds judged by the task's oracle, or with `@HEAD` by a
    reward model with that head (trained as the `rm:HEAD` row is, once per seed); settings from `online_kwargs` (any
    keyword of `iterative_training` / `rejection_sampling_training` that compare does not set itself)."""
    import inspect

    from trl_plus.iterative import iterative_training, rejection_sampling_training
    from trl_plus.registry import get_loss, get_reward_head

    if not oracle:
        raise ValueError(f"{label!r} draws its prompts from the task and is scored by its oracle: it needs --task.")
    if trainer == "rft" and suffix:
        raise ValueError(f"{label!r}: rft takes no ':' part (it fine-tunes on the best samples with SFT).")
    losses = tuple(get_loss(name).name for name in suffix.split("+")) if suffix else ()
    if trainer == "iterative":
        losses = losses or ITERATIVE_LOSSES
        online = [name for name in losses if get_loss(name).input_kind == "online"]
        if online:
            raise ValueError(f"{label!r}: {online} are online losses; iterative training takes offline ones.")
    head = get_reward_head(judge).name if judge else None
    name = f"iterative:{'+'.join(losses)}" if trainer == "iterative" else "rft"
    name += f"@{head}" if head else ""
    kwargs = (online_kwargs or {}).get(name)
    function = iterative_training if trainer == "iterative" else rejection_sampling_training
    set_here = {
        "model",
        "out_dir",
        "task",
        "loss",
        "rounds",
        "steps_per_round",
        "batch_size",
        "seed",
        "on_round",
        "judge",
    }
    allowed = {p for p in inspect.signature(function).parameters if p not in set_here}
    unknown = sorted(set(kwargs or {}) - allowed)
    if unknown:
        raise ValueError(f"online_kwargs[{name!r}] names {unknown}; {function.__name__} takes {sorted(allowed)}.")
    return Method(name, losses, "online", head=head, online=trainer, online_kwargs=kwargs)


def check_kinds(methods: Sequence[Method], dataset_kind: str) -> None:
    """Every method must be able to train on the dataset: paired losses and reward models on pairs or ranked lists
    (every ordered pair), listwise ones on ranked lists, unpaired ones on anything (pairs and lists are split up)."""
    takes = {"paired": {"paired", "ranked"}, "ranked": {"ranked"}, "unpaired": {"paired", "ranked", "unpaired"}}
    takes["reward model"] = takes["paired"]
    takes["online"] = {"paired", "ranked", "unpaired"}  # every kind has prompts
    wrong = [m.label for m in methods if dataset_kind not in takes[m.kind]]
    if wrong:
        needs = {m.label: m.kind for m in methods if m.label in wrong}
        raise ValueError(
            f"The dataset holds {dataset_kind} rows, which {wrong} cannot train on (input kinds {needs}): listwise "
            "losses need ranked lists (`prompt`, `completions`), paired ones pairs (`prompt`, `chosen`, `rejected`) "
            "or ranked lists. Leave them out or use a dataset of that kind."
        )


def check_config(config: CompareConfig) -> tuple[list[Method], list[str]]:
    """The methods and metrics to run; every mistake the settings can hold raises CompareError here."""
    try:
        return _check_config(config)
    except (ValueError, TypeError) as error:  # unknown names (ValueError), hyperparameters a loss lacks (TypeError)
        raise CompareError(str(error)) from error


def _check_config(config: CompareConfig) -> tuple[list[Method], list[str]]:
    from trl_plus.synthetic import TASKS

    if (config.task is None) == (config.dataset is None):
        raise ValueError("Give a synthetic task (--task, e.g. transitive) or your own --dataset, one of the two.")
    if config.task is not None and config.task not in TASKS:
        raise ValueError(f"Unknown task {config.task!r}; the synthetic tasks are {sorted(TASKS)}.")
    if config.dataset is not None and config.model is None:
        raise ValueError("--dataset needs --model: the reference policy every method starts from.")
    for name in ("steps", "seeds", "n", "batch_size", "curve_prompts", "rounds"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.n < 2:
        raise ValueError(f"n must be at least 2 to give an interval, got {config.n}.")
    if config.curve_points < 0:
        raise ValueError(f"curve_points must be 0 (no curve) or more, got {config.curve_points}.")
    if config.curve_points and config.curve_prompts < 2:
        raise ValueError(f"curve_prompts must be at least 2 to score a curve point, got {config.curve_prompts}.")
    if config.sft_steps is not None and config.sft_steps < 0:
        raise ValueError(f"sft_steps must be 0 or more, got {config.sft_steps}.")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be at least 1, got {config.threads}.")
    for name in ("loss_kwargs", "online_kwargs"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
            example = '{"dpo": {"beta": 0.2}}' if name == "loss_kwargs" else '{"ppo": {"kl_coef": 0.2}}'
            raise ValueError(f"{name} must map names to hyperparameters, e.g. {example}; got {value!r}.")
    if config.reward_pooling not in ("mean", "last"):  # RewardModel's poolings
        raise ValueError(f"reward_pooling must be 'mean' or 'last', got {config.reward_pooling!r}.")
    if config.online_max_new_tokens is not None and config.online_max_new_tokens < 1:
        raise ValueError(f"online_max_new_tokens must be at least 1, got {config.online_max_new_tokens}.")
    oracle = config.task is not None
    metrics = list(config.metrics) if config.metrics else [m for m in METRICS if oracle or m not in ORACLE_METRICS]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    oracle_only = [m for m in metrics if m in ORACLE_METRICS]
    if oracle_only and not oracle:
        raise ValueError(
            f"{oracle_only} need a synthetic task's oracle, and --dataset has none. Leave them out of --metrics "
            "(held-out accuracy, KL and cost work on any data) or compare on a --task."
        )
    methods = parse_methods(config.losses, config.loss_kwargs) if config.losses else []
    methods += parse_heads(config.heads)
    methods += parse_online(config.online, oracle=oracle, online_kwargs=config.online_kwargs)
    if config.online_learning_rate <= 0:
        raise ValueError(f"online_learning_rate must be positive, got {config.online_learning_rate}.")
    if not methods:
        raise ValueError("Nothing to compare: name losses (--losses), reward heads (--heads) or online methods.")
    return methods, metrics


# -- data --------------------------------------------------------------------------------------------------------


@dataclass
class Data:
    """The one training dataset, its kind, and what the held-out metrics are computed on."""

    train: Any
    kind: str
    prompts: list[Any]  # held-out prompts, for the KL (task mode: drawn per seed instead)
    pairs: tuple[list[Any], list[Any], list[Any]]  # held-out (prompts, chosen, rejected)


def load_dataset_arg(path: str) -> Any:
    """A dataset saved with `save_to_disk`, a json/jsonl/csv/parquet file, or a hub id."""
    import datasets

    local = Path(path)
    if local.is_dir() and any((local / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        return datasets.load_from_disk(str(local))
    suffix = local.suffix.lstrip(".")
    if local.is_file() and suffix in ("json", "jsonl", "csv", "parquet"):
        builder = "json" if suffix == "jsonl" else suffix
        return datasets.load_dataset(builder, data_files=str(local))
    return datasets.load_dataset(path)


def split_dataset(dataset: Any, n: int) -> tuple[Any, Any]:
    """(train, held-out): the `train` and `test` splits where there are both, else `n` rows (at most a fifth)
    set aside with a fixed seed."""
    if isinstance(dataset, dict):
        if "test" in dataset and "train" in dataset:
            return dataset["train"], dataset["test"]
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    held = min(n, len(dataset) // 5)
    if held < 2:
        raise ValueError(f"The dataset has {len(dataset)} rows; compare needs at least 10 to hold some out.")
    parts = dataset.train_test_split(test_size=held, seed=0, shuffle=True)
    return parts["train"], parts["test"]


def dataset_kind(dataset: Any) -> str:
    from trl_plus.trainers.preference import dataset_kind as preference_kind

    first = dataset[0]
    if {"completion", "label"} <= set(first) and "chosen" not in first:
        return "unpaired"
    return preference_kind(first)


def pairs_of(dataset: Any, kind: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(prompts, chosen, rejected) of a dataset: its pairs; every ordered pair of its ranked lists; every
    desirable × undesirable completion of the same prompt in prompt/completion/label rows."""
    prompts, chosen, rejected = [], [], []
    if kind == "paired":
        return list(dataset["prompt"]), list(dataset["chosen"]), list(dataset["rejected"])
    if kind == "ranked":
        for row in dataset:
            items = row["completions"]
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    prompts.append(row["prompt"])
                    chosen.append(items[i])
                    rejected.append(items[j])
        return prompts, chosen, rejected
    by_prompt: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in dataset:
        good, bad = by_prompt.setdefault(json.dumps(row["prompt"], sort_keys=True), ([], []))
        (good if row["label"] else bad).append(row)
    for good, bad in by_prompt.values():
        for up in good:
            for down in bad:
                prompts.append(up["prompt"])
                chosen.append(up["completion"])
                rejected.append(down["completion"])
    return prompts, chosen, rejected


def unpaired_from_ranked(dataset: Any, *, seed: int) -> Any:
    """Prompt/completion/label rows from ranked lists: the top half of each list desirable, the bottom half
    undesirable (the middle one of an odd list left out); shuffled so that batches mix both."""
    from datasets import Dataset

    rows = []
    for row in dataset:
        items, half = row["completions"], len(row["completions"]) // 2
        rows += [{"prompt": row["prompt"], "completion": c, "label": True} for c in items[:half]]
        rows += [{"prompt": row["prompt"], "completion": c, "label": False} for c in items[len(items) - half :]]
    return Dataset.from_list(rows).shuffle(seed=seed)


def method_view(method: Method, data: Data, *, seed: int, batch_size: int) -> tuple[Any, int]:
    """The dataset as `method`'s trainer takes it, and the batch size (in its rows) that covers the same
    prompts per step as `batch_size` rows of the shared dataset."""
    from datasets import Dataset

    from trl_plus.registry import get_reward_head
    from trl_plus.trainers import unpaired_view

    if method.kind == "online":
        return data.train, batch_size
    if (
        method.head is not None
        and data.kind == "ranked"
        and not hasattr(get_reward_head(method.head).target, "ranked_loss")
    ):
        prompts, chosen, rejected = pairs_of(data.train, "ranked")
        pairs = Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected}).shuffle(seed=seed)
        return pairs, max(1, round(batch_size * len(pairs) / len(data.train)))
    if method.kind != "unpaired" or data.kind == "unpaired":
        return data.train, batch_size
    view = (
        unpaired_view(data.train, seed=seed) if data.kind == "paired" else unpaired_from_ranked(data.train, seed=seed)
    )
    return view, max(1, round(batch_size * len(view) / len(data.train)))


# -- statistics --------------------------------------------------------------------------------------------------

# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom; beyond, 1.96 + 2.4/df is within 0.01.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


def pooled(means: Sequence[float], stderrs: Sequence[float]) -> tuple[float, float]:
    """The mean over seeds and the half-width of its 95% interval.

    One seed: ± 1.96 standard errors of its sampling. Several: the wider of two intervals, one from the seeds'
    spread (which holds training and sampling noise; Student's t with seeds − 1 degrees of freedom, as the spread
    of a few seeds is itself uncertain) and one from the sampling error alone (normal: hundreds of prompts), so
    that seeds which happen to agree do not hide the sampling error.
    """
    count = len(means)
    mean = sum(means) / count
    sampling = 1.96 * math.sqrt(sum(se**2 for se in stderrs)) / count
    if count == 1:
        return mean, sampling
    return mean, max(t95(count - 1) * math.sqrt(statistics.variance(means) / count), sampling)


# -- one training run --------------------------------------------------------------------------------------------


class _Probe(StepClock):
    """Step times, the progress bar, and the curve's evaluations at chosen steps, left out of time and memory."""

    def __init__(
        self, bar: Any, memory: PeakMemory | None, curve_at: set[int], evaluate: Callable[[Any], float] | None
    ) -> None:
        super().__init__()
        self.bar, self.memory, self.curve_at, self.evaluate = bar, memory, curve_at, evaluate
        self.curve: list[tuple[int, float]] = []
        self.excluded = 0.0

    def _point(self, step: int, model: Any) -> None:
        if self.evaluate is None or step not in self.curve_at:
            return
        begin = time.perf_counter()
        if self.memory is not None:
            self.memory.pause()
        self.curve.append((step, self.evaluate(model)))
        if self.memory is not None:
            self.memory.resume()
        self.excluded += time.perf_counter() - begin

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._point(0, model)
        self.excluded = 0.0
        self.ends.append(time.perf_counter())

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        # The step ends now; the evaluation after it belongs to neither this step nor the next.
        self.ends.append(time.perf_counter() - self.excluded)
        self.bar.update(1)
        self._point(state.global_step, model)

    def step_times(self) -> list[float]:
        times = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        return times[1:]  # the first step pays one-off costs (allocations, lazy initialisation)


def _curve_steps(steps: int, points: int) -> set[int]:
    if points == 0:
        return set()
    return {0} | {round(steps * (i + 1) / points) for i in range(points)}


class _Evaluator:
    """The held-out scores of a trained policy against the reference model."""

    def __init__(self, config: CompareConfig, reference: Any, tokenizer: Any, data: Data, task: Any) -> None:
        self.config, self.reference, self.tokenizer, self.data, self.task = config, reference, tokenizer, data, task
        self.reward_models: dict[tuple[str, int], Any] = {}  # (head, seed) → the reward model online rows train on

    def win_rate(self, policy: Any, seed: int, n: int) -> Any:
        from trl_plus.synthetic import win_rate

        return win_rate(
            (policy, self.tokenizer),
            (self.reference, self.tokenizer),
            self.task,
            n=n,
            seed=seed,
            max_new_tokens=self.config.max_new_tokens,
        )

    def accuracy(self, policy: Any, pairs: int | None = None) -> Any:
        from trl_plus.evaluation import implicit_reward_accuracy

        prompts, chosen, rejected = (part[:pairs] for part in self.data.pairs)
        return implicit_reward_accuracy(policy, self.reference, self.tokenizer, prompts, chosen, rejected)

    def curve(self, seed: int) -> Callable[[Any], float]:
        if self.task is not None:
            return lambda model: self.win_rate(model, seed, self.config.curve_prompts).win_rate
        return lambda model: self.accuracy(model, self.config.curve_prompts).accuracy

    def score_reward_model(self, run: Run, model: Any, metrics: Sequence[str], batch_size: int = 64) -> None:
        """A reward model's held-out accuracy (`PreferenceAccuracy`: P(chosen ≻ rejected) > ½, a tie counts ½), and
        its mean margin in logits, log P/(1 − P) (for a scalar head, r(chosen) − r(rejected))."""
        import torch

        from trl_plus.metrics import PreferenceAccuracy

        if "accuracy" not in metrics or not self.data.pairs[0]:
            return
        model.eval()
        prompts, chosen, rejected = self.data.pairs
        with torch.no_grad():
            probabilities = torch.cat(
                [
                    model.prefer(prompts[i : i + batch_size], chosen[i : i + batch_size], rejected[i : i + batch_size])
                    for i in range(0, len(prompts), batch_size)
                ]
            ).double()
        accuracy = PreferenceAccuracy().compute(predictions=probabilities.tolist(), references=[1] * len(prompts))
        run.accuracy = accuracy["accuracy"]
        run.margin = float(torch.logit(probabilities, eps=1e-12).mean())

    def score(self, run: Run, policy: Any, metrics: Sequence[str]) -> None:
        from trl_plus.evaluation import kl_estimate

        seed = run.seed
        if "win_rate" in metrics:
            result = self.win_rate(policy, seed, self.config.n)
            run.win_rate, run.win_rate_stderr = result.win_rate, result.stderr
        if "exploitability" in metrics:
            from trl_plus.synthetic import exploitability

            run.exploitability = exploitability(
                (policy, self.tokenizer),
                self.task,
                n=self.config.n,
                seed=seed,
                reference=(self.reference, self.tokenizer),
                max_new_tokens=self.config.max_new_tokens,
            )
        if "accuracy" in metrics and self.data.pairs[0]:
            accuracy = self.accuracy(policy)
            run.accuracy, run.margin = accuracy.accuracy, accuracy.margin.mean
        if "kl" in metrics:
            prompts = self.task.prompts(self.config.n, seed=seed, stream="eval") if self.task else self.data.prompts
            kl = kl_estimate(
                policy, self.reference, self.tokenizer, prompts, max_new_tokens=self.config.max_new_tokens, seed=seed
            )
            run.kl, run.kl_stderr = kl.mean, kl.stderr


def _train_and_score(
    method: Method,
    seed: int,
    config: CompareConfig,
    reference_path: Path,
    data: Data,
    evaluator: _Evaluator,
    metrics: Sequence[str],
    bar: Any,
) -> Run:
    if method.online in LOOPS:
        judge = None
        if method.head is not None:  # the row's reward model, trained on the same data as the rm:HEAD row
            judge = _online_reward(method, seed, config, reference_path, data, evaluator).prefer
        return _loop_and_score(method, seed, config, reference_path, evaluator, metrics, bar, judge)
    if method.online == "bon":
        return _best_of_n_and_score(method, seed, config, evaluator, metrics, bar)
    begin = time.perf_counter()
    run = Run(seed=seed)
    view, batch_size = method_view(method, data, seed=seed, batch_size=config.batch_size)
    reward = _online_reward(method, seed, config, reference_path, data, evaluator) if method.online else None
    memory = PeakMemory() if "cost" in metrics else None
    # Nothing is saved (save_strategy "no"), but trainers want an output_dir: a scratch one, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="trl-plus-compare-") as scratch:
        trainer = _trainer(method, Path(scratch), view, batch_size, config, reference_path, seed, reward)
        curve_at = _curve_steps(config.steps, config.curve_points)
        # A reward model has no samples to score during training: its row has no curve.
        curve = evaluator.curve(seed) if curve_at and method.kind != "reward model" else None
        probe = _Probe(bar, memory, curve_at, curve)
        trainer.add_callback(probe)
        trainer.train()
    if memory is not None:
        run.step_times, run.peak_mib = probe.step_times(), memory.peak_mib
    run.curve = probe.curve
    if method.kind == "reward model":
        evaluator.score_reward_model(run, trainer.reward_model, metrics)
    else:
        evaluator.score(run, trainer.model, metrics)
    run.seconds = time.perf_counter() - begin
    return run


def _loop_and_score(
    method: Method,
    seed: int,
    config: CompareConfig,
    reference_path: Path,
    evaluator: _Evaluator,
    metrics: Sequence[str],
    bar: Any,
    judge: Any = None,
) -> Run:
    """An iterative or rft row: `config.steps` split into `config.rounds` rounds, each sampling afresh from the last
    round's policy and ranking by the oracle (or `judge`). Its curve is taken at the round ends among the curve's
    steps and after the last round; its step time is the loop's time, sampling included, over its steps."""
    from transformers import AutoModelForCausalLM

    from trl_plus.iterative import iterative_training, rejection_sampling_training

    begin = time.perf_counter()
    run = Run(seed=seed)
    rounds = min(config.rounds, config.steps)
    steps_per_round = config.steps // rounds
    memory = PeakMemory() if "cost" in metrics else None
    curve_at = _curve_steps(config.steps, config.curve_points)
    if curve_at:
        curve_at.add(rounds * steps_per_round)  # the final policy, when the rounds do not fill the steps exactly
    # The probe's evaluations at chosen steps, left out of time and memory; the loop has no trainer to call it.
    probe = _Probe(bar, memory, curve_at, evaluator.curve(seed) if curve_at else None)

    def on_round(done: Any) -> None:
        bar.update(steps_per_round)
        step = done.index * steps_per_round
        if step in curve_at:
            probe._point(step, AutoModelForCausalLM.from_pretrained(str(done.path)))

    probe._point(0, evaluator.reference)
    settings = {
        "rounds": rounds,
        "steps_per_round": steps_per_round,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": seed,
        "on_round": on_round,
        "judge": judge,
        **(method.online_kwargs or {}),
    }
    # The loops' trainers print their logs; here they would mix with the table on stdout.
    with tempfile.TemporaryDirectory(prefix="trl-plus-compare-") as scratch, contextlib.redirect_stdout(io.StringIO()):
        if method.online == "iterative":
            done = iterative_training(reference_path, scratch, evaluator.task, loss=list(method.losses), **settings)
        else:
            done = rejection_sampling_training(reference_path, scratch, evaluator.task, **settings)
        model = AutoModelForCausalLM.from_pretrained(str(done[-1].path))
    run.curve = probe.curve
    if memory is not None:
        loop_seconds = time.perf_counter() - begin - probe.excluded
        run.step_times, run.peak_mib = [loop_seconds / (rounds * steps_per_round)], memory.peak_mib
    bar.update(config.steps - rounds * steps_per_round)
    evaluator.score(run, model, metrics)
    run.seconds = time.perf_counter() - begin
    return run


def _best_of_n_and_score(
    method: Method, seed: int, config: CompareConfig, evaluator: _Evaluator, metrics: Sequence[str], bar: Any
) -> Run:
    """A `bon:N` row: the win rate of the reference's best of N samples (by the oracle) against one sample of the
    reference, on the seed's held-out prompts; its KL is the analytic bound log N − (N − 1)/N (Beirami et al.,
    arXiv:2401.01879). No training, so no accuracy, curve or cost."""
    from trl_plus.judges import best_of_n, task_judge
    from trl_plus.synthetic import sample_completions
    from trl_plus.synthetic.evaluate import completions_win_rate

    begin = time.perf_counter()
    run = Run(seed=seed)
    n = int((method.online_kwargs or {})["n"])
    task, policy = evaluator.task, (evaluator.reference, evaluator.tokenizer)
    if "win_rate" in metrics:
        prompts = task.prompts(config.n, seed=seed, stream="eval")
        best = best_of_n(policy, prompts, task_judge(task), n=n, seed=seed, max_new_tokens=config.max_new_tokens)
        others = sample_completions(*policy, prompts, seed=seed + 1, max_new_tokens=config.max_new_tokens)
        result = completions_win_rate(task, prompts, best, others)
        run.win_rate, run.win_rate_stderr = result.win_rate, result.stderr
    if "kl" in metrics:
        run.kl, run.kl_stderr = math.log(n) - (n - 1) / n, 0.0
    bar.update(config.steps)
    run.seconds = time.perf_counter() - begin
    return run


def _online_reward(
    method: Method, seed: int, config: CompareConfig, reference_path: Path, data: Data, evaluator: _Evaluator
) -> Any:
    """The reward an online row trains against: the task's oracle, or a reward model with the row's head trained
    on the same data and budget as the `rm:HEAD` row (once per seed; its training is not counted in the row's cost)."""
    from transformers import PrinterCallback

    if method.head is None:
        return evaluator.task
    key = (method.head, seed)
    if key not in evaluator.reward_models:
        head_method = Method(f"rm:{method.head}", (), "reward model", head=method.head)
        view, batch_size = method_view(head_method, data, seed=seed, batch_size=config.batch_size)
        with tempfile.TemporaryDirectory(prefix="trl-plus-compare-") as scratch:
            trainer = _reward_trainer(
                method.head, reference_path, Path(scratch), view, config, seed=seed, batch_size=batch_size
            )
            trainer.remove_callback(PrinterCallback)
            trainer.train()
        evaluator.reward_models[key] = trainer.reward_model.eval()
    return evaluator.reward_models[key]


def _online_trainer(
    method: Method,
    out_dir: Path,
    prompts: Any,
    batch_size: int,
    config: CompareConfig,
    reference_path: Path,
    seed: int,
    reward: Any,
) -> Any:
    from trl import GRPOConfig, GRPOTrainer

    from trl_plus.demo import online_training_args
    from trl_plus.rewards import as_reward_func
    from trl_plus.trainers.nash import NashConfig, NashTrainer
    from trl_plus.trainers.ppo import PPOConfig, PPOTrainer

    args = online_training_args(
        out_dir,
        steps=config.steps,
        seed=seed,
        batch_size=batch_size,
        learning_rate=config.online_learning_rate,
        max_completion_length=config.online_max_new_tokens or config.max_new_tokens,
    )
    prompts = prompts.select_columns(["prompt"])
    if method.online == "ppo":
        args.update({"num_ppo_epochs": 4, **(method.online_kwargs or {})})
        return PPOTrainer(str(reference_path), reward_funcs=reward, args=PPOConfig(**args), train_dataset=prompts)
    if method.online == "nash":
        args.update({"beta": NASH_BETA, **(method.online_kwargs or {})})
        return NashTrainer(str(reference_path), preference=reward, args=NashConfig(**args), train_dataset=prompts)
    args.update({"num_generations": GRPO_GROUP, "num_iterations": 4, "beta": 0.05, **(method.online_kwargs or {})})
    grpo = GRPOConfig(**args)
    return GRPOTrainer(str(reference_path), reward_funcs=as_reward_func(reward), args=grpo, train_dataset=prompts)


def _trainer(
    method: Method,
    out_dir: Path,
    view: Any,
    batch_size: int,
    config: CompareConfig,
    reference_path: Path,
    seed: int,
    reward: Any = None,
) -> Any:
    from transformers import PrinterCallback

    from trl_plus.demo import preference_trainer

    if method.online is not None:
        trainer = _online_trainer(method, out_dir, view, batch_size, config, reference_path, seed, reward)
    elif method.head is not None:
        trainer = _reward_trainer(method.head, reference_path, out_dir, view, config, seed=seed, batch_size=batch_size)
    else:
        trainer = preference_trainer(
            reference_path,
            out_dir,
            view,
            loss=list(method.losses),
            steps=config.steps,
            seed=seed,
            batch_size=batch_size,
            loss_kwargs=method.loss_kwargs,
            learning_rate=config.learning_rate,
        )
    trainer.remove_callback(PrinterCallback)  # it prints the logs, which would mix with the table on stdout
    return trainer


def _reward_trainer(
    head: str, reference_path: Path, out_dir: Path, data: Any, config: CompareConfig, *, seed: int, batch_size: int
) -> Any:
    from trl_plus.demo import training_args
    from trl_plus.trainers.reward import RewardModelConfig, RewardModelTrainer

    args = training_args(
        out_dir, steps=config.steps, seed=seed, batch_size=batch_size, learning_rate=config.learning_rate
    )
    # Mean pooling (by default) and a faster head, as `trl_plus.reward_bench` trains them on these tasks.
    config_ = RewardModelConfig(
        **args, head=head, pooling=config.reward_pooling, head_learning_rate=config.head_learning_rate
    )
    return RewardModelTrainer(str(reference_path), args=config_, train_dataset=data)


# -- the whole comparison ----------------------------------------------------------------------------------------


def _load_reference(path: str | Path) -> tuple[Any, Any]:
    """The reference model in float32, as the trainers load the policy from the same path, so that KL and margins
    measure training, not a precision difference; and its tokenizer, padded as TRL's trainers pad."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _sample(rows: tuple[list[Any], list[Any], list[Any]], n: int) -> tuple[list[Any], list[Any], list[Any]]:
    """At most `n` of the pairs, drawn with a fixed seed."""
    import random

    if len(rows[0]) <= n:
        return rows
    keep = sorted(random.Random(0).sample(range(len(rows[0])), n))
    return tuple([part[i] for i in keep] for part in rows)  # type: ignore[return-value]


def _own_data(config: CompareConfig, methods: Sequence[Method]) -> Data:
    """The user's dataset, split and checked; CompareError for anything compare cannot train or score on."""
    from trl_plus.trainers.preference import check_preference_dataset
    from trl_plus.trainers.unpaired import check_unpaired_dataset

    assert config.dataset is not None
    try:
        train, held = split_dataset(load_dataset_arg(config.dataset), config.n)
        kind, held_kind = dataset_kind(train), dataset_kind(held)
        if held_kind != kind:
            raise ValueError(f"The train split holds {kind} rows but the test split {held_kind} rows.")
        check_kinds(methods, kind)
        for split, name in ((train, "train"), (held, "test")):
            if kind == "unpaired":
                check_unpaired_dataset(split, name)
            else:
                check_preference_dataset(split, name)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise CompareError(f"{config.dataset}: {error}") from error
    scored = _sample(pairs_of(held, kind), config.n)
    if not scored[0]:
        raise CompareError(f"{config.dataset}: the held-out split has no pairs to score (no prompt with both labels).")
    prompts = list(dict.fromkeys(json.dumps(p) for p in held["prompt"]))[: config.n]
    return Data(train, kind, [json.loads(p) for p in prompts], scored)


def _task_reference(config: CompareConfig, log: TextIO) -> Path:
    """The reference for a task: --model, or a tiny llama built here; fine-tuned on the task first when asked."""
    from trl_plus.demo import RECIPES, sft
    from trl_plus.testing import make_tiny

    assert config.task is not None
    out = Path(config.out_dir)
    # The tiny model's SFT budget is the demo's for the task (300 steps; 900 for packing's larger prompt space).
    default = RECIPES[config.task].sft_steps if config.model is None else 0
    steps = default if config.sft_steps is None else config.sft_steps
    reference = Path(config.model) if config.model is not None else make_tiny("llama", out / "base", seed=0)
    if steps:
        default_lr = 3e-3 if config.model is None else 2e-5  # a tiny random model needs big steps; a real one not
        lr = config.sft_learning_rate or default_lr
        print(f"SFT of {reference} on {config.task}: {steps} steps at learning rate {lr}", file=log)
        reference = sft(
            reference, out / "reference", config.task, steps=steps, seed=0, print_logs=False, learning_rate=lr
        )
    return reference


def _task_data(config: CompareConfig, policy: tuple[Any, Any], task: Any, log: TextIO) -> Data:
    """On-policy ranked lists of the reference for training, and held-out pairs of its samples."""
    from trl_plus.synthetic import policy_preference_dataset

    print(f"Sampling the preference data: {config.batch_size * config.steps} prompts × 4 samples", file=log)
    # One dataset for every method and seed: seed 0 draws its prompts, samples and oracle rankings.
    train = policy_preference_dataset(policy, task, config.batch_size * config.steps, k=4, seed=0)
    if len(train) < config.batch_size:
        raise CompareError(
            f"The reference gave {len(train)} prompts with two distinct samples, fewer than one batch: it repeats "
            "itself. Fine-tune it on the task first (--sft-steps)."
        )
    held = policy_preference_dataset(policy, task, config.n, k=2, seed=10_000)
    pairs: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for row in held:
        p_chosen = task.prefer(row["prompt"], row["chosen"], row["rejected"])
        if p_chosen != 0.5:  # oriented by the oracle's preference, not a drawn label; ties carry no order
            better, worse = (row["chosen"], row["rejected"]) if p_chosen > 0.5 else (row["rejected"], row["chosen"])
            pairs[0].append(row["prompt"])
            pairs[1].append(better)
            pairs[2].append(worse)
    print(f"Held-out: {len(pairs[0])} of {len(held)} pairs with a strict oracle preference", file=log)
    if not pairs[0]:
        print("No held-out pair has a strict oracle preference: the accuracy column stays empty.", file=log)
    return Data(train, "ranked", [], pairs)


def compare(config: CompareConfig, *, out: TextIO | None = None, log: TextIO | None = None) -> Comparison:
    """Train and score every method; write compare.md, compare.csv, runs.csv, curves.csv and the plots to
    `config.out_dir`; print the table and a summary line to `out` (stdout) and progress to `log` (stderr).

    CompareError (before any training) for settings or data it cannot work with; a method that fails while
    training or scoring becomes a failed row instead. Global state (warning filters, torch's thread count) is
    restored on return."""
    import torch

    out = sys.stdout if out is None else out
    log = sys.stderr if log is None else log
    methods, metrics = check_config(config)
    threads = torch.get_num_threads()
    with warnings.catch_warnings():
        # TRL's configs warn about deprecated names they set themselves; the table is what the user is here for.
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            if config.threads:
                torch.set_num_threads(config.threads)
            return _compare(config, methods, metrics, out, log)
        finally:
            torch.set_num_threads(threads)


def _compare(config: CompareConfig, methods: list[Method], metrics: list[str], out: TextIO, log: TextIO) -> Comparison:
    from tqdm.auto import tqdm

    from trl_plus.demo import _quiet
    from trl_plus.synthetic import get_task

    begin = time.perf_counter()
    _quiet()
    own_data = _own_data(config, methods) if config.dataset is not None else None
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_path = _task_reference(config, log) if own_data is None else Path(str(config.model))
    reference, tokenizer = _load_reference(reference_path)
    task = get_task(config.task, seed=0) if config.task is not None else None
    data = own_data or _task_data(config, (reference, tokenizer), task, log)
    evaluator = _Evaluator(config, reference, tokenizer, data, task)

    results = []
    errors = out_dir / "errors.log"
    errors.unlink(missing_ok=True)
    for method in methods:
        result = MethodResult(method)
        bar = tqdm(
            total=config.seeds * config.steps, desc=method.label, unit="step", file=log, disable=not config.progress
        )
        for seed in range(config.seeds):
            bar.set_postfix_str(f"seed {seed}")
            try:
                result.runs.append(
                    _train_and_score(method, seed, config, reference_path, data, evaluator, metrics, bar)
                )
            except Exception as error:  # a failed method is a row of its own; the others go on
                message = " ".join(str(error).split())  # one line, for the table
                result.error = f"{type(error).__name__}: {message}" + (f" (seed {seed})" if seed else "")
                with errors.open("a") as file:
                    file.write(f"== {method.label}, seed {seed}\n{traceback.format_exc()}\n")
                break
        bar.set_postfix_str("failed" if result.error else "done")
        bar.close()
        results.append(result)

    comparison = Comparison(config, task is not None, results, time.perf_counter() - begin, [])
    comparison.files = write_tables(comparison, out_dir)
    print(comparison.markdown(), file=out)
    print(summary_line(comparison), file=out)
    comparison.files += write_plots(comparison, out_dir, log)
    if any(result.error for result in results):
        print(f"Tracebacks of the failed methods: {errors}", file=log)
    return comparison


# -- reporting ---------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "method",
    "input",
    "seeds",
    "win_rate",
    "win_rate_ci_low",
    "win_rate_ci_high",
    "exploitability",
    "accuracy",
    "margin",
    "kl",
    "kl_ci_half",
    "step_time_s",
    "peak_mem_mib",
    "status",
)


def summary(result: MethodResult) -> dict[str, Any]:
    """One method's row: means over seeds (None where not measured), keyed by `CSV_COLUMNS`."""
    runs = result.runs if result.error is None else []
    row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS)
    row.update(method=result.method.label, input=result.method.kind, seeds=len(runs))
    row["status"] = "ok" if result.error is None else f"failed: {result.error}"[:300]
    if not runs:
        return row
    if runs[0].win_rate is not None:
        mean, half = pooled([r.win_rate or 0.0 for r in runs], [r.win_rate_stderr or 0.0 for r in runs])
        row.update(win_rate=mean, win_rate_ci_low=max(0.0, mean - half), win_rate_ci_high=min(1.0, mean + half))
    if runs[0].exploitability is not None:
        row["exploitability"] = statistics.fmean(r.exploitability or 0.0 for r in runs)
    if runs[0].accuracy is not None:
        row["accuracy"] = statistics.fmean(r.accuracy or 0.0 for r in runs)
        row["margin"] = statistics.fmean(r.margin or 0.0 for r in runs)
    if runs[0].kl is not None:
        row["kl"], row["kl_ci_half"] = pooled([r.kl or 0.0 for r in runs], [r.kl_stderr or 0.0 for r in runs])
    times = [t for r in runs for t in r.step_times]
    if times:
        row["step_time_s"] = statistics.median(times)
    peaks = [r.peak_mib for r in runs if r.peak_mib is not None]
    if peaks:
        row["peak_mem_mib"] = statistics.median(peaks)
    return row


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_cells(row: dict[str, Any], *, oracle: bool) -> list[str]:
    """A summary row as table text; the CSV holds the same numbers unrounded."""
    cells = [row["method"], row["input"], str(row["seeds"])]
    if oracle:
        interval = (
            "–"
            if row["win_rate"] is None
            else f"{row['win_rate']:.3f} [{row['win_rate_ci_low']:.3f}, {row['win_rate_ci_high']:.3f}]"
        )
        cells += [interval, _number(row["exploitability"])]
    kl = "–" if row["kl"] is None else f"{row['kl']:.3f} ± {row['kl_ci_half']:.3f}"
    cells += [_number(row["accuracy"]), _number(row["margin"]), kl, _number(row["step_time_s"], 4)]
    cells += [_number(row["peak_mem_mib"], 0), row["status"]]
    return cells


def table_headers(*, oracle: bool) -> list[str]:
    headers = ["method", "input", "seeds"]
    if oracle:
        headers += ["win rate vs reference [95% CI]", "exploitability"]
    return [*headers, "held-out acc.", "margin", "KL(π‖π_ref) ± 95%", "step time (s)", "peak mem (MiB)", "status"]


def markdown_table(rows: Sequence[dict[str, Any]], *, oracle: bool) -> str:
    from trl_plus.cli import format_table

    return format_table(table_headers(oracle=oracle), [table_cells(row, oracle=oracle) for row in rows], markdown=True)


def summary_line(comparison: Comparison) -> str:
    config, rows = comparison.config, comparison.rows()
    where = f"the {config.task} task" if config.task else str(config.dataset)
    ok = [row for row in rows if row["status"] == "ok"]
    key, name = ("win_rate", "win rate") if comparison.oracle else ("accuracy", "held-out accuracy")
    scored = [row for row in ok if row[key] is not None]
    best = max(scored, key=lambda row: row[key]) if scored else None
    parts = [
        f"Compared {len(rows)} method(s) on {where}, {config.seeds} seed(s) × {config.steps} steps, "
        f"in {comparison.seconds:.0f} s",
        f"best {name}: {best['method']} ({best[key]:.3f})" if best else f"no {name} measured",
        f"failed: {', '.join(row['method'] for row in rows if row['status'] != 'ok') or 'none'}",
        f"results in {Path(config.out_dir)}",
    ]
    return "; ".join(parts) + "."


def write_tables(comparison: Comparison, out_dir: Path) -> list[Path]:
    """compare.md and compare.csv (one row per method), runs.csv (per seed) and curves.csv (metric over steps)."""
    rows = comparison.rows()
    files = [out_dir / "compare.md", out_dir / "compare.csv", out_dir / "runs.csv", out_dir / "curves.csv"]
    files[0].write_text(comparison.markdown() + "\n")
    files[1].write_text(_csv(CSV_COLUMNS, [[row[c] for c in CSV_COLUMNS] for row in rows]))
    run_columns = ["method", "seed", "win_rate", "win_rate_stderr", "accuracy", "margin", "kl", "kl_stderr"]
    run_columns += ["median_step_time_s", "peak_mem_mib", "seconds"]
    runs = [[result.method.label, *_run_values(run)] for result in comparison.results for run in result.runs]
    files[2].write_text(_csv(run_columns, runs))
    metric = "win_rate" if comparison.oracle else "accuracy"
    points = [
        [result.method.label, run.seed, step, value]
        for result in comparison.results
        for run in result.runs
        for step, value in run.curve
    ]
    files[3].write_text(_csv(("method", "seed", "step", metric), points))
    return files


def write_plots(comparison: Comparison, out_dir: Path, log: TextIO) -> list[Path]:
    """The PNGs, or a one-line hint without matplotlib; a plotting error is reported, not raised, since the tables
    are written by then."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(PLOT_HINT, file=log)
        return []
    try:
        return plot(comparison, out_dir)
    except Exception as error:
        print(f"Plots failed ({type(error).__name__}: {error}); the tables are written.", file=log)
        return []


def _run_values(run: Run) -> list[Any]:
    step_time = statistics.median(run.step_times) if run.step_times else None
    values = [run.seed, run.win_rate, run.win_rate_stderr, run.accuracy, run.margin, run.kl, run.kl_stderr]
    return [*values, step_time, run.peak_mib, run.seconds]


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue()


def plot(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Two PNGs: the headline metric against KL per method (with 95% intervals), and the metric over training
    steps (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oracle = comparison.oracle
    metric, name = ("win_rate", "win rate vs reference") if oracle else ("accuracy", "held-out accuracy")
    stem = "win_rate" if oracle else "accuracy"
    where = comparison.config.task or Path(str(comparison.config.dataset)).name
    files = []
    rows = [row for row in comparison.rows() if row[metric] is not None and row["kl"] is not None]
    if rows:
        figure, axes = plt.subplots(figsize=(6, 4.5))
        for row in rows:
            y_error = None
            if oracle:
                y_error = [[row[metric] - row["win_rate_ci_low"]], [row["win_rate_ci_high"] - row[metric]]]
            axes.errorbar(
                row["kl"], row[metric], xerr=row["kl_ci_half"], yerr=y_error, fmt="o", capsize=3, label=row["method"]
            )
        if oracle:
            axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="the reference itself")
        axes.legend(fontsize="small")
        axes.set_xlabel("KL(π‖π_ref), nats per completion")
        axes.set_ylabel(name)
        axes.set_title(f"{name} vs drift on {where}")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        files.append(out_dir / f"{stem}_vs_kl.png")
        figure.savefig(files[-1], dpi=120)
        plt.close(figure)
    curves = [result for result in comparison.results if result.error is None and result.runs and result.runs[0].curve]
    if curves:
        figure, axes = plt.subplots(figsize=(6, 4.5))
        for result in curves:
            steps = [step for step, _ in result.runs[0].curve]
            means = [statistics.fmean(run.curve[i][1] for run in result.runs) for i in range(len(steps))]
            axes.plot(steps, means, marker="o", label=result.method.label)
        axes.set_xlabel("training step")
        axes.set_ylabel(f"{name} ({comparison.config.curve_prompts} prompts, mean over seeds)")
        axes.set_title(f"{name} during training on {where}")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        files.append(out_dir / f"{stem}_curve.png")
        figure.savefig(files[-1], dpi=120)
        plt.close(figure)
    return files
