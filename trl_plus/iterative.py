"""Iterative on-policy preference training: every round, sample K answers per prompt from the current policy, rank
them with the task's oracle or any judge (`prefer(prompts, a, b) → P(a ≻ b)`, e.g. `RewardModel.prefer`), and
train a few steps on them with any registered loss through `PreferenceTrainer` (`UnpairedPreferenceTrainer` for
unpaired losses). The next round samples from the result.

One round of offline pairs only teaches what the reference's own samples can show; fresh samples of the moving
policy keep the data where the policy is (see the README's demo section for the measured difference). Each round is
saved under `out_dir/round-NN` with a `round.json`; a run started again in the same folder resumes after the last
finished round.

The prompts come from a synthetic task's preference stream (its oracle then ranks unless a judge is given), or from
`prompts=`, your own list (plain text or chat messages) with a `judge`: each round draws its prompts from a fresh
shuffle of the list, seeded by the round (`draw_prompts`). `RejectionSamplingConfig` and `IterativeConfig` are the
settings of `trl-plus train --trainer rft|iterative`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl_plus.synthetic import SyntheticTask, policy_preference_dataset
from trl_plus.synthetic.evaluate import chat_answers, check_sources, draw_prompts
from trl_plus.types import InputKind

ROUND_FILE = "round.json"
REFERENCES = ("previous", "initial")
# The demo's iterative recipe (`trl_plus.demo.RECIPES`, README "The demo") and `IterativeConfig`'s default: dpo, and
# a small sft term that keeps the answers well-formed.
DEFAULT_LOSS = ("dpo", "sft")
DEFAULT_LOSS_WEIGHTS = (1.0, 0.2)


@dataclass(frozen=True)
class Round:
    index: int  # 1-based
    path: Path
    rows: int  # training rows (pairs, ranked lists or unpaired rows) sampled for this round
    seconds: float
    resumed: bool = False  # found finished on disk, not trained in this call


def every_pair(ranked: Any, *, seed: int) -> Any:
    """Prompt/chosen/rejected rows from ranked lists (best first): every ordered pair of each list, shuffled."""
    from datasets import Dataset

    rows = [
        {"prompt": row["prompt"], "chosen": answers[i], "rejected": answers[j]}
        for row in ranked
        for answers in [row["completions"]]
        for i in range(len(answers))
        for j in range(i + 1, len(answers))
    ]
    return Dataset.from_list(rows).shuffle(seed=seed)


def round_data(
    policy: str | Path,
    task: SyntheticTask | None = None,
    *,
    loss: list[str],
    rows: int,
    k: int,
    seed: int,
    judge: Any = None,
    draw_rankings: bool = False,
    prompts: Sequence[Any] | None = None,
    max_new_tokens: int = 16,
    sampling_batch_size: int = 64,
) -> Any:
    """One round's training rows: `k` samples per prompt of `policy`, ranked by the oracle (or `judge`), given to
    the losses in the form they take (ranked lists, every ordered pair, or the unpaired view of those pairs). The
    prompts come from `task`, or from the list `prompts` (then `judge` is required when there is no task)."""
    from trl_plus.demo import loss_kinds
    from trl_plus.trainers import unpaired_view

    _, kinds = loss_kinds(loss)
    per_list = k * (k - 1) // 2
    lists = rows if "ranked" in kinds else -(-rows // per_list)  # enough lists for `rows` pairs
    data = policy_preference_dataset(
        policy,
        task,
        lists,
        k=k,
        seed=seed,
        judge=judge,
        draw_rankings=draw_rankings,
        prompts=prompts,
        max_new_tokens=max_new_tokens,
        batch_size=sampling_batch_size,
    )
    if k == 2:  # pairs already (chosen, rejected); a ranked loss takes them as lists of two
        if "ranked" in kinds:
            return data.map(
                lambda row: {"completions": [row["chosen"], row["rejected"]]}, remove_columns=["chosen", "rejected"]
            )
        pairs = data
    elif "ranked" in kinds:
        return data
    else:
        pairs = every_pair(data, seed=seed)
    return unpaired_view(pairs, seed=seed) if kinds == {"unpaired"} else pairs


def check_loss_settings(
    loss: str | Sequence[str], loss_kwargs: dict[str, Any] | None, loss_weights: Sequence[float] | None
) -> tuple[list[str], set[InputKind]]:
    """The loss names and their input kinds, once unknown names, online losses, mixed unpaired and paired losses,
    hyperparameters a loss does not take and a wrong number of weights have raised: before any sampling."""
    from trl_plus.demo import _check_loss_kwargs, loss_kinds

    names, kinds = loss_kinds(loss if isinstance(loss, str) else list(loss))
    if "online" in kinds:
        raise ValueError(
            f"Iterative training takes offline losses (paired, ranked or unpaired); {names} include an online one. "
            "Train online losses with `trl-plus train --trainer nash` or `--trainer ppo`."
        )
    _check_loss_kwargs(names, loss_kwargs)
    if loss_weights is not None and len(loss_weights) != len(names):
        raise ValueError(f"Got {len(loss_weights)} loss weights for {len(names)} losses {names}.")
    return names, kinds


def iterative_training(
    model: str | Path,
    out_dir: str | Path,
    task: SyntheticTask | None = None,
    *,
    prompts: Sequence[Any] | None = None,
    loss: str | list[str],
    rounds: int,
    steps_per_round: int,
    k: int = 4,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    final_learning_rate: float | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    loss_weights: list[float] | None = None,
    reference: str = "previous",
    seed: int = 0,
    on_round: Any = None,
    judge: Any = None,
    draw_rankings: bool = False,
    max_new_tokens: int = 16,
    sampling_batch_size: int = 64,
) -> list[Round]:
    """Train `rounds` rounds from `model`; returns one `Round` per round (the last one's `path` is the final policy).

    The prompts come from `task`'s preference stream, or from `prompts`, a list of your own (text or chat messages)
    drawn as in `draw_prompts`; without a task, `judge` is required.

    `reference`: "previous" regularises each round towards the policy it starts from (so the policy can move far
    from `model` over many rounds, a little per round); "initial" keeps `model` as the reference throughout.
    `final_learning_rate`: the last round's learning rate, the rounds in between interpolated linearly (None: every
    round at `learning_rate`); within a round the rate follows the demo's cosine schedule. Smaller late steps let
    the policy settle instead of oscillating around the optimum (measured in the README's demo section).
    `on_round(round)` is called after each round, e.g. to evaluate it. `judge(prompts, a, b) → P(a ≻ b)` ranks the
    samples instead of the task's oracle (which then only gives the prompts): a reward model's `prefer`, an LLM
    judge, any callable. `draw_rankings` draws each ranking from the judge's probabilities rather than sorting by
    them (see `judge_rankings`). `max_new_tokens`: the longest answer sampled (the synthetic tasks' fit in 16).
    `sampling_batch_size`: prompts per `generate` call; larger is faster where memory allows, and changes which
    samples a seed draws.
    """
    from trl_plus.demo import preference_trainer

    check_sources(task, prompts, judge)
    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be at least 1, got {rounds} and {steps_per_round}.")
    if k < 2:
        raise ValueError(f"k must be at least 2 samples per prompt to rank, got {k}.")
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}.")
    names, kinds = check_loss_settings(loss, loss_kwargs, loss_weights)
    initial = None
    if reference == "initial":
        from transformers import AutoModelForCausalLM

        initial = AutoModelForCausalLM.from_pretrained(str(model)) if isinstance(model, (str, Path)) else model

    def train_round(index: int, policy: Any, path: Path) -> int:
        rate = learning_rate
        if final_learning_rate is not None and rounds > 1:
            rate = learning_rate + (final_learning_rate - learning_rate) * (index - 1) / (rounds - 1)
        # Unpaired losses see two rows per pair, so twice the rows per step, as in the demo's single round.
        rows_per_step = 2 * batch_size if kinds == {"unpaired"} else batch_size
        data = round_data(
            policy,
            task,
            loss=names,
            rows=batch_size * steps_per_round,
            k=k,
            seed=seed + index,
            judge=judge,
            draw_rankings=draw_rankings,
            prompts=prompts,
            max_new_tokens=max_new_tokens,
            sampling_batch_size=sampling_batch_size,
        )
        trainer = preference_trainer(
            policy,
            path,
            data,
            loss=names,
            steps=steps_per_round,
            seed=seed + index,
            batch_size=rows_per_step,
            loss_kwargs=loss_kwargs,
            loss_weights=loss_weights,
            learning_rate=rate,
            ref_model=initial if index > 1 else None,
        )
        trainer.train()
        trainer.save_model(str(path))
        return len(data)

    return run_rounds(model, out_dir, rounds, train_round, on_round)


def round_path(out_dir: str | Path, index: int) -> Path:
    """Where round `index` (1-based) is saved: `out_dir/round-NN`."""
    return Path(out_dir) / f"round-{index:02d}"


def run_rounds(
    model: str | Path, out_dir: str | Path, rounds: int, train_round: Any, on_round: Any = None
) -> list[Round]:
    """Rounds 1..`rounds` under `out_dir/round-NN`: `train_round(index, policy, path) → rows` trains from `policy`
    (the model, then each round's result) and saves to `path`; finished rounds found on disk are skipped."""
    out = Path(out_dir)
    policy: Any = model
    done: list[Round] = []
    for index in range(1, rounds + 1):
        path = round_path(out, index)
        if (path / ROUND_FILE).is_file():  # finished by an earlier call: resume after it
            saved = json.loads((path / ROUND_FILE).read_text())
            done.append(Round(index, path, saved["rows"], saved["seconds"], resumed=True))
            policy = path
            continue
        start = time.perf_counter()
        rows = train_round(index, policy, path)
        finished = Round(index, path, rows, time.perf_counter() - start)
        (path / ROUND_FILE).write_text(json.dumps({"rows": finished.rows, "seconds": finished.seconds}) + "\n")
        done.append(finished)
        policy = path
        if on_round is not None:
            on_round(finished)
    return done


def rejection_sampling_data(
    policy: Any,
    task: SyntheticTask | None,
    n_prompts: int,
    *,
    n: int = 4,
    top_k: int = 1,
    judge: Any = None,
    seed: int = 0,
    max_new_tokens: int = 16,
    prompts: Sequence[Any] | None = None,
    sampling_batch_size: int = 64,
) -> Any:
    """Prompt/completion rows for SFT: `n` samples of `policy` for each of `n_prompts` training prompts, ranked by
    `judge` (default: the task's oracle), the best `top_k` distinct ones kept. The prompts come from `task`, or
    from the list `prompts` (`draw_prompts`; then `judge` is required when there is no task)."""
    from datasets import Dataset

    from trl_plus.judges import task_judge
    from trl_plus.synthetic.evaluate import distinct_answers, judge_rankings, load_policy, sample_groups

    check_sources(task, prompts, judge)
    if not 1 <= top_k <= n:
        raise ValueError(f"Need 1 <= top_k <= n, got top_k={top_k}, n={n}.")
    model, tokenizer = load_policy(policy)
    texts = draw_prompts(task, prompts, n_prompts, seed=seed)
    groups = sample_groups(
        model, tokenizer, texts, n, seed=seed, max_new_tokens=max_new_tokens, batch_size=sampling_batch_size
    )
    answers = chat_answers(texts, distinct_answers(groups))
    ranked = judge_rankings(judge or task_judge(task), texts, answers)  # type: ignore[arg-type]  # a task if no judge
    rows = [{"prompt": p, "completion": c} for p, best in zip(texts, ranked, strict=True) for c in best[:top_k]]
    return Dataset.from_list(rows)


def rejection_sampling_training(
    model: str | Path,
    out_dir: str | Path,
    task: SyntheticTask | None = None,
    *,
    prompts: Sequence[Any] | None = None,
    rounds: int = 1,
    steps_per_round: int = 100,
    n: int = 4,
    top_k: int = 1,
    judge: Any = None,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    seed: int = 0,
    on_round: Any = None,
    max_new_tokens: int = 16,
    sampling_batch_size: int = 64,
) -> list[Round]:
    """Rejection-sampling fine-tuning with TRL's SFTTrainer: keep the best `top_k` of `n` samples per prompt (by
    `judge`, default the oracle) and fine-tune on them. One round samples once from `model` (offline); more rounds
    sample again from each round's result (online). Rounds are saved and resumed as in `iterative_training`, whose
    `task`/`prompts` it takes the same way."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from trl_plus.demo import training_args

    check_sources(task, prompts, judge)
    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be at least 1, got {rounds} and {steps_per_round}.")
    if not 1 <= top_k <= n:
        raise ValueError(f"Need 1 <= top_k <= n, got top_k={top_k}, n={n}.")

    def train_round(index: int, policy: Any, path: Path) -> int:
        data = rejection_sampling_data(
            policy,
            task,
            -(-batch_size * steps_per_round // top_k),  # prompts enough for the round's rows
            n=n,
            top_k=top_k,
            judge=judge,
            seed=seed + index,
            max_new_tokens=max_new_tokens,
            prompts=prompts,
            sampling_batch_size=sampling_batch_size,
        )
        args = training_args(
            path, steps=steps_per_round, seed=seed + index, batch_size=batch_size, learning_rate=learning_rate
        )
        trainer = SFTTrainer(model=str(policy), args=SFTConfig(**args), train_dataset=data)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        trainer.save_model(str(path))
        return len(data)

    return run_rounds(model, out_dir, rounds, train_round, on_round)


@dataclass
class RoundsConfig:
    """What the two loops share as `trl-plus train --trainer rft|iterative` settings: rounds of sampling answers from
    the current policy, ranking them with the judge and training on them, on the CPU with the demo's schedule
    (`trl_plus.demo.training_args`). Every field is a flag and a `--config` YAML key."""

    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the rounds are saved, as `round-01`, `round-02`, ... (the last is the final policy). A run "
            "started again in the same folder resumes after the last finished round."
        },
    )
    rounds: int = field(
        default=4, metadata={"help": "Rounds of fresh samples; each samples from the policy the round before trained."}
    )
    steps_per_round: int = field(
        default=100,
        metadata={"help": "Optimizer steps per round. Each round samples for as many prompts as these steps need."},
    )
    num_samples: int = field(default=4, metadata={"help": "Answers sampled per prompt for the judge to rank."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Training rows per optimizer step."})
    learning_rate: float = field(
        default=5e-4,
        metadata={
            "help": "Peak learning rate of each round (cosine schedule within the round). The default suits the "
            "testbed's tiny models; pretrained ones want far less (around 1e-6 to 1e-5)."
        },
    )
    max_new_tokens: int = field(
        default=16,
        metadata={"help": "Longest sampled answer, in tokens: the synthetic tasks' answers fit in 16; yours may not."},
    )
    sampling_batch_size: int = field(
        default=64,
        metadata={
            "help": "Prompts per `generate` call while sampling. Larger is faster where memory allows (the testbed's "
            "tiny models sample about twice as fast at 1024); it also changes which samples the seed draws."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of round r's prompt draw, sampling and training: seed + r."})

    def __post_init__(self) -> None:
        for name in (
            "rounds",
            "steps_per_round",
            "num_samples",
            "per_device_train_batch_size",
            "max_new_tokens",
            "sampling_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}.")

    def loop_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the loop function that these settings stand for."""
        return dict(
            rounds=self.rounds,
            steps_per_round=self.steps_per_round,
            batch_size=self.per_device_train_batch_size,
            learning_rate=self.learning_rate,
            max_new_tokens=self.max_new_tokens,
            sampling_batch_size=self.sampling_batch_size,
            seed=self.seed,
        )


@dataclass
class RejectionSamplingConfig(RoundsConfig):
    """`trl-plus train --trainer rft`: `rejection_sampling_training`, SFT on the judge's best `top_k` of
    `num_samples` answers per prompt."""

    top_k: int = field(default=1, metadata={"help": "Best answers per prompt kept for SFT, at most `num_samples`."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.top_k <= self.num_samples:
            raise ValueError(f"`top_k` must lie in [1, num_samples={self.num_samples}], got {self.top_k}.")

    def loop_kwargs(self) -> dict[str, Any]:
        return {**super().loop_kwargs(), "n": self.num_samples, "top_k": self.top_k}


@dataclass
class IterativeConfig(RoundsConfig):
    """`trl-plus train --trainer iterative`: `iterative_training`, any registered offline loss on the judge's
    rankings of `num_samples` answers per prompt (every ordered pair, the ranked list, or the unpaired view)."""

    loss: list[str] | str | None = field(
        default=None,
        metadata={
            "help": "Registry name(s) of the loss(es), e.g. `dpo` or `simpo,sft` (`trl-plus losses` lists them). "
            "Default: dpo,sft weighted 1, 0.2 (the demo's recipe)."
        },
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per loss. Default: equal, or 1, 0.2 for the default loss."}
    )
    loss_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": 'Hyperparameters per loss, keyed by loss name, e.g. `{"dpo": {"beta": 0.2}}`; with one loss the '
            "inner dict may be given directly."
        },
    )
    reference: str = field(
        default="previous",
        metadata={
            "help": "The reference model: `previous`, the policy each round starts from, or `initial`, the model "
            "given, throughout.",
            "choices": list(REFERENCES),
        },
    )
    final_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "The last round's learning rate, the rounds between interpolated linearly (the demo's recipe "
            "falls to a tenth). Default: every round at `learning_rate`."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 2:
            raise ValueError(f"`num_samples` must be at least 2 (a pair to rank), got {self.num_samples}.")
        if self.reference not in REFERENCES:
            raise ValueError(f"`reference` must be one of {REFERENCES}, got {self.reference!r}.")
        if self.final_learning_rate is not None and not self.final_learning_rate > 0:
            raise ValueError(f"`final_learning_rate` must be > 0, got {self.final_learning_rate}.")
        if isinstance(self.loss_kwargs, str):
            self.loss_kwargs = json.loads(self.loss_kwargs) if self.loss_kwargs.strip() else None
        if self.loss is None:
            self.loss = list(DEFAULT_LOSS)
            self.loss_weights = list(DEFAULT_LOSS_WEIGHTS) if self.loss_weights is None else self.loss_weights
        elif isinstance(self.loss, str):
            self.loss = [name.strip() for name in self.loss.split(",")]
        check_loss_settings(self.loss, self.loss_kwargs, self.loss_weights)  # type: ignore[arg-type]

    def loop_kwargs(self) -> dict[str, Any]:
        return {
            **super().loop_kwargs(),
            "k": self.num_samples,
            "loss": list(self.loss or DEFAULT_LOSS),
            "loss_weights": self.loss_weights,
            "loss_kwargs": self.loss_kwargs,
            "reference": self.reference,
            "final_learning_rate": self.final_learning_rate,
        }
