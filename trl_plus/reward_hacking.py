"""Reward hacking, shown on the transitive task: PPO against a reward model learned from a limited set of preference
pairs (`python -m trl_plus.reward_hacking`).

A tiny llama is fine-tuned on the task's answers (SFT). Its own samples, two per prompt and labelled by the oracle
(`synthetic.policy_preference_dataset`), train two reward models from the SFT checkpoint with `RewardModelTrainer`:
a `bt` head and an `ensemble` head (K heads on bootstrap resamples of the same pairs). PPO then trains the SFT
policy three times, and every `--eval-every` steps its samples on held-out prompts are scored twice: by the learned
reward the run maximizes, and by the task's oracle, as the win rate against the SFT policy (`synthetic.win_rate`).
`evaluation.kl_estimate` gives the drift KL(π‖π_SFT) on the same prompts.

| run | reward PPO maximizes | KL penalty |
|---|---|---|
| `bt, small KL` | the bt reward model | `--small-kl` |
| `bt, large KL` | the bt reward model | `--large-kl` |
| `ensemble, small KL` | the ensemble's conservative reward, mean − k·std over its heads | `--small-kl` |

Reward hacking is the learned reward rising while the oracle's verdict falls. Here the blind spot PPO finds is
malformed answers, above all answers that repeat an item ("tent tent"), which the oracle scores below every
well-formed answer: the `well-formed` column and the sample answers printed after each run show it. The table reports
what the runs did (win rate at the end and at its best, with the step), the curves go to a CSV and one PNG. How
much the oracle's win rate rises before it falls, and whether the larger KL penalty or the ensemble holds up,
change with the seed: compare a few (`--seed`) before reading much into one run.

    python -m trl_plus.reward_hacking                        # a few minutes on one CPU core
    python -m trl_plus.reward_hacking --seed 1 --steps 400   # another task, SFT model and reward models
"""

from __future__ import annotations

import argparse
import csv
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TASK = "transitive"
SMALL, LARGE, ENSEMBLE = "bt, small KL", "bt, large KL", "ensemble, small KL"
CSV_COLUMNS = (
    "run",
    "reward",
    "kl_coef",
    "step",
    "rm_score",
    "win_rate",
    "win_rate_stderr",
    "kl",
    "kl_stderr",
    "well_formed",
    "train_score",
    "train_kl",
)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    """Everything one experiment depends on; `main` fills it from the command line."""

    out_dir: Path = Path("runs/reward_hacking")
    plot: Path | None = Path("docs/ppo_reward_hacking.png")
    sft: Path | None = None  # an SFT checkpoint of the task to start from; None: build a tiny llama and fine-tune it
    sft_steps: int = 300
    pairs: int = 1024
    base_pairs: bool = False  # the task's well-formed base answers instead of SFT samples
    rm_epochs: float = 10.0
    rm_learning_rate: float = 1e-3
    rm_head_learning_rate: float = 1e-2
    ensemble_heads: int = 4
    ensemble_k: float = 1.0
    steps: int = 800
    learning_rate: float = 1e-4
    batch_size: int = 16
    max_completion_length: int = 8
    small_kl: float = 0.01
    large_kl: float = 0.2
    eval_every: int = 50
    n: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("sft_steps", "pairs", "rm_epochs", "steps", "batch_size", "max_completion_length", "eval_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if self.n < 2:
            raise ValueError(f"n must be at least 2 (the win rate's interval needs two prompts), got {self.n}.")
        for name in ("small_kl", "large_kl", "ensemble_k"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be ≥ 0, got {getattr(self, name)!r}.")
        if self.ensemble_heads < 2:
            raise ValueError(f"ensemble_heads must be at least 2, got {self.ensemble_heads}.")


@dataclass(frozen=True)
class Point:
    """One evaluation during training. `rm_score` (the learned reward the run maximizes), `win_rate`, `kl` and
    `well_formed` are measured on the same samples of the same held-out prompts; `train_score` and `train_kl` are
    PPO's logs (objective/scores, objective/kl): the means over the rollouts since the previous point, None at step 0
    or where no rollout fell in between (one rollout serves `num_ppo_epochs` = 4 steps)."""

    step: int
    rm_score: float
    win_rate: float
    win_rate_stderr: float
    kl: float
    kl_stderr: float
    well_formed: float
    train_score: float | None = None
    train_kl: float | None = None


@dataclass
class RunResult:
    name: str
    reward: str
    kl_coef: float
    points: list[Point] = field(default_factory=list)
    seconds: float = 0.0  # training, evaluations included
    samples: list[tuple[str, str, float]] = field(default_factory=list)  # the last evaluation's answers

    def peak(self) -> Point:
        """The point with the highest oracle win rate (the earliest of equals)."""
        return max(self.points, key=lambda point: point.win_rate)


# -- reward models ------------------------------------------------------------------------------------------------


def preference_pairs(sft_path: str | Path, settings: Settings) -> Any:
    """The reward models' training data, labels drawn from the oracle: two samples of the SFT model per prompt (a
    prompt whose samples coincide is dropped), or with `base_pairs` two of the task's well-formed base answers."""
    from trl_plus.synthetic import get_task, policy_preference_dataset

    task = get_task(TASK, seed=settings.seed)
    if settings.base_pairs:
        return task.preference_dataset(settings.pairs, seed=settings.seed)
    return policy_preference_dataset(
        sft_path, task, settings.pairs, seed=settings.seed, max_new_tokens=settings.max_completion_length
    )


def fit_reward_model(
    sft_path: str | Path, pairs: Any, head: str, settings: Settings, head_kwargs: dict[str, Any] | None = None
) -> Any:
    """A `head` reward model trained from the SFT checkpoint on `pairs`, in eval mode (mean pooling and a faster
    head, as `trl_plus.reward_bench` trains heads on these tasks)."""
    from trl_plus.reward_bench import train_reward_model

    reward_model, _ = train_reward_model(
        sft_path,
        pairs,
        head,
        epochs=settings.rm_epochs,
        learning_rate=settings.rm_learning_rate,
        head_learning_rate=settings.rm_head_learning_rate,
        head_kwargs=head_kwargs,
        seed=settings.seed,
        batch_size=16,
    )
    return reward_model


class SpacedReward:
    """A reward function that hands the reward model each completion as it read answers in training, with the
    leading space. TRL's GRPOTrainer decodes a completion's tokens on their own, and a SentencePiece-style tokenizer
    (the tiny llama's) drops the space of the first piece, so the reward model would read prompt + completion as
    "items:kite map" ('kit', 'e', '▁map') instead of "items: kite map" ('▁kite', '▁map')."""

    def __init__(self, reward: Any) -> None:
        self.reward = reward
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)  # TRL names the logged metrics after it

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        spaced = [c if not isinstance(c, str) or c.startswith(" ") else " " + c for c in completions]
        return self.reward(prompts, spaced, **kwargs)


# -- evaluation during PPO ----------------------------------------------------------------------------------------


class Evaluator:
    """Scores a policy on `n` held-out prompts: the learned reward of its samples, the oracle win rate against the
    SFT policy, KL(π‖π_SFT) and the share of well-formed answers. Every evaluation draws with the same seed, and the
    torch RNG is restored afterwards (`synthetic.evaluate.sampling`), so evaluating leaves training unchanged."""

    def __init__(self, reference: tuple[Any, Any], reward: Any, settings: Settings) -> None:
        from trl_plus.synthetic import get_task

        self.reference, self.reward, self.settings = reference, reward, settings
        self.task = get_task(TASK, seed=settings.seed)
        self.prompts = self.task.prompts(settings.n, seed=settings.seed, stream="eval")
        self.last: list[tuple[str, str, float]] = []  # (prompt, completion, learned reward) of the latest call

    def __call__(self, model: Any, tokenizer: Any, step: int) -> Point:
        from trl_plus.evaluation import kl_estimate
        from trl_plus.synthetic import sample_completions, win_rate

        s = self.settings
        length = s.max_completion_length  # as long as PPO's completions
        wins = win_rate((model, tokenizer), self.reference, self.task, n=s.n, seed=s.seed, max_new_tokens=length)
        # The same draws as the win rate's policy side (same prompts, seed and length), and as kl_estimate's.
        completions = sample_completions(model, tokenizer, self.prompts, max_new_tokens=length, seed=s.seed)
        scores = self.reward(self.prompts, completions)
        self.last = list(zip(self.prompts, completions, scores, strict=True))
        kl = kl_estimate(model, self.reference[0], tokenizer, self.prompts, max_new_tokens=length, seed=s.seed)
        return Point(
            step=step,
            rm_score=sum(scores) / len(scores),
            win_rate=wins.win_rate,
            win_rate_stderr=wins.stderr,
            kl=kl.mean,
            kl_stderr=kl.stderr,
            well_formed=wins.valid_a,
        )


def curve_callback(evaluator: Evaluator, result: RunResult, every: int, log: Log | None = None) -> Any:
    """A `TrainerCallback` that evaluates at step 0, every `every` steps and at the last step, appends the points to
    `result.points` (passing each to `log` when given), and adds PPO's logged score and KL of the same steps (the
    trainer logs every `every` steps)."""
    from transformers import TrainerCallback

    class Curve(TrainerCallback):
        def __init__(self) -> None:
            self.logs: dict[int, dict[str, float]] = {}

        def _evaluate(self, step: int, kwargs: dict[str, Any]) -> None:
            point = evaluator(kwargs["model"], kwargs["processing_class"], step)
            result.points.append(point)
            if log is not None:
                log(
                    f"        step {step:>4}: learned reward {point.rm_score:+.2f}, win rate {point.win_rate:.3f}, "
                    f"KL {point.kl:.2f}, well-formed {point.well_formed:.0%}"
                )

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._evaluate(0, kwargs)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                self._evaluate(state.global_step, kwargs)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and "objective/scores" in logs:
                self.logs[state.global_step] = logs

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            for index, point in enumerate(result.points):
                logs = self.logs.get(point.step)
                if logs is not None:
                    result.points[index] = replace(
                        point, train_score=logs["objective/scores"], train_kl=logs.get("objective/kl")
                    )

    return Curve()


# -- the runs -----------------------------------------------------------------------------------------------------


def run_ppo(
    name: str,
    reward: Any,
    reward_label: str,
    kl_coef: float,
    sft_path: str | Path,
    reference: tuple[Any, Any],
    settings: Settings,
    out_dir: str | Path,
    log: Log | None = None,
) -> RunResult:
    """PPO from the SFT checkpoint against `reward` (a reward function), evaluated along the way."""
    from datasets import Dataset
    from transformers import PrinterCallback

    from trl_plus.demo import online_training_args
    from trl_plus.synthetic import get_task
    from trl_plus.trainers.ppo import PPOConfig, PPOTrainer

    s = settings
    task = get_task(TASK, seed=s.seed)
    prompts = Dataset.from_dict({"prompt": task.prompts(4096, seed=s.seed, stream="sft")})
    common = online_training_args(
        out_dir,
        steps=s.steps,
        seed=s.seed,
        batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        max_completion_length=s.max_completion_length,
    )
    # A constant rate (as online_training_args sets): a decay would slow the policy down by itself and blur where
    # the reward stops paying.
    args = PPOConfig(**{**common, "logging_steps": s.eval_every}, num_ppo_epochs=4, kl_coef=kl_coef)
    result = RunResult(name, reward_label, kl_coef)
    evaluator = Evaluator(reference, reward, s)
    trainer = PPOTrainer(
        str(sft_path),
        reward_funcs=reward,
        args=args,
        train_dataset=prompts,
        callbacks=[curve_callback(evaluator, result, s.eval_every, log)],
    )
    trainer.remove_callback(PrinterCallback)  # the curve's lines say what matters
    start = time.perf_counter()
    trainer.train()
    result.seconds = time.perf_counter() - start
    result.samples = list(evaluator.last)
    return result


def experiment(settings: Settings, log: Log | None = None) -> list[RunResult]:
    """SFT (unless `settings.sft` is given), the two reward models, and the three PPO runs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_plus.demo import sft
    from trl_plus.reward_model import RewardFunction
    from trl_plus.synthetic import TransitiveTask, oracle_agreement
    from trl_plus.testing import make_tiny

    s = settings
    log = log or functools.partial(print, flush=True)
    task = TransitiveTask(seed=s.seed)  # its hidden reward r* explains the answers printed after each run
    with tempfile.TemporaryDirectory(prefix="trl-plus-reward-hacking-") as scratch:
        root = Path(scratch)
        sft_path = s.sft
        if sft_path is None:
            log(f"[1/4] A tiny llama, fine-tuned on the {TASK} task's answers for {s.sft_steps} steps (SFT)")
            base = make_tiny("llama", root / "base", seed=s.seed)
            sft_path = sft(base, root / "sft", TASK, steps=s.sft_steps, seed=s.seed, print_logs=False)
        else:
            log(f"[1/4] The SFT checkpoint {sft_path}")
        tokenizer = AutoTokenizer.from_pretrained(str(sft_path))
        reference = (AutoModelForCausalLM.from_pretrained(str(sft_path)).eval(), tokenizer)

        pairs = preference_pairs(sft_path, s)
        kind = "pairs of base answers" if s.base_pairs else "pairs of SFT samples"
        log(f"[2/4] Two reward models from the SFT checkpoint, on the same {len(pairs)} {kind} (oracle labels)")
        bt = fit_reward_model(sft_path, pairs, "bt", s)
        ensemble = fit_reward_model(sft_path, pairs, "ensemble", s, {"num_heads": s.ensemble_heads, "k": s.ensemble_k})
        for label, model in (("bt", bt), (f"ensemble of {s.ensemble_heads}", ensemble)):
            log(f"      {label}: {oracle_agreement(model.prefer, task, 1000)}")

        runs = [
            (SMALL, SpacedReward(RewardFunction(bt)), "bt", s.small_kl),
            (LARGE, SpacedReward(RewardFunction(bt)), "bt", s.large_kl),
            (
                ENSEMBLE,
                SpacedReward(RewardFunction(ensemble, reduce="conservative")),
                f"ensemble mean − {s.ensemble_k:g}·std",
                s.small_kl,
            ),
        ]
        log(
            f"[3/4] PPO from the SFT policy, {s.steps} steps per run; every {s.eval_every} steps, {s.n} held-out "
            "prompts scored by the learned reward and by the oracle (win rate vs SFT)"
        )
        results = []
        for name, reward, label, kl_coef in runs:
            log(f"      {name}: PPO against the {label} reward, kl_coef {kl_coef:g}")
            result = run_ppo(name, reward, label, kl_coef, sft_path, reference, s, root / "ppo", log)
            log(f"        {result.seconds:.0f} s. Answers at the end (learned reward; oracle reward r*):")
            shown: dict[str, tuple[str, float]] = {}
            for prompt, completion, score in result.samples:
                shown.setdefault(prompt, (completion, score))  # one answer per prompt
            for prompt, (completion, score) in list(shown.items())[:4]:
                log(f"          {prompt} {completion!r}: {score:+.2f}; r* {task.reward(prompt, completion):+.2f}")
            results.append(result)
    return results


# -- outputs ------------------------------------------------------------------------------------------------------


def markdown(results: list[RunResult]) -> str:
    lines = [
        "| run | reward | kl_coef | final win rate [95% CI] | peak win rate (step) | learned reward, start → end "
        "| final KL | well-formed, start → end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        first, final, peak = r.points[0], r.points[-1], r.peak()
        half = 1.96 * final.win_rate_stderr
        low, high = max(0.0, final.win_rate - half), min(1.0, final.win_rate + half)
        lines.append(
            f"| {r.name} | {r.reward} | {r.kl_coef:g} | {final.win_rate:.3f} [{low:.3f}, {high:.3f}] | "
            f"{peak.win_rate:.3f} ({peak.step}) | {first.rm_score:+.2f} → {final.rm_score:+.2f} | {final.kl:.2f} | "
            f"{first.well_formed:.0%} → {final.well_formed:.0%} |"
        )
    return "\n".join(lines)


def write_csv(results: list[RunResult], path: Path) -> Path:
    """One row per run and evaluated step, columns `CSV_COLUMNS` (empty where PPO logged nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in results:
            for p in r.points:
                row = [r.name, r.reward, r.kl_coef, p.step, p.rm_score, p.win_rate, p.win_rate_stderr, p.kl]
                row += [p.kl_stderr, p.well_formed, p.train_score, p.train_kl]
                writer.writerow(["" if value is None else value for value in row])
    return path


def plot(results: list[RunResult], path: Path, settings: Settings) -> Path:
    """Two panels over PPO steps: the learned reward each run maximizes, and the oracle win rate against SFT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True)
    for r in results:
        steps = [p.step for p in r.points]
        label = f"{r.name} (kl_coef {r.kl_coef:g})"
        color = top.plot(steps, [p.rm_score for p in r.points], marker=".", label=label)[0].get_color()
        wins = [p.win_rate for p in r.points]
        halves = [1.96 * p.win_rate_stderr for p in r.points]
        bottom.plot(steps, wins, marker=".", color=color, label=label)
        low = [w - h for w, h in zip(wins, halves, strict=True)]
        high = [w + h for w, h in zip(wins, halves, strict=True)]
        bottom.fill_between(steps, low, high, color=color, alpha=0.12, linewidth=0)
    top.set_ylabel("learned reward of the policy's answers\n(the reward each run maximizes)")
    top.set_title(f"PPO against a learned reward ({TASK} task, seed {settings.seed})")
    bottom.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="the SFT policy itself")
    bottom.set_ylabel(f"oracle win rate vs the SFT policy\n({settings.n} held-out prompts, 95% CI)")
    bottom.set_xlabel("PPO step")
    bottom.set_ylim(0, 1)
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m trl_plus.reward_hacking", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=defaults.out_dir, help="Folder for curves.csv.")
    parser.add_argument("--plot", type=Path, default=defaults.plot, help="The PNG's path.")
    parser.add_argument("--no-plot", action="store_true", help="Skip the PNG (matplotlib comes with the `plot` extra).")
    parser.add_argument("--sft", type=Path, help="An SFT checkpoint of the task to start from (default: build one).")
    parser.add_argument("--sft-steps", type=int, default=defaults.sft_steps)
    parser.add_argument(
        "--pairs", type=int, default=defaults.pairs, help="Prompts sampled for the reward models' pairs."
    )
    parser.add_argument(
        "--base-pairs", action="store_true", help="Pairs of the task's well-formed base answers, not SFT samples."
    )
    parser.add_argument("--rm-epochs", type=float, default=defaults.rm_epochs)
    parser.add_argument("--rm-lr", type=float, default=defaults.rm_learning_rate, help="Reward models' backbone rate.")
    parser.add_argument("--ensemble-heads", type=int, default=defaults.ensemble_heads)
    parser.add_argument("--ensemble-k", type=float, default=defaults.ensemble_k, help="k of mean − k·std.")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="PPO steps per run.")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="PPO learning rate.")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="PPO completions per step.")
    parser.add_argument("--small-kl", type=float, default=defaults.small_kl)
    parser.add_argument("--large-kl", type=float, default=defaults.large_kl)
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="PPO steps between evaluations.")
    parser.add_argument("--n", type=int, default=defaults.n, help="Held-out prompts per evaluation.")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="Task, tiny model, data and training seed.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads. One is as fast for a model this small, and immune to other processes on the cores "
        "(with two threads on a busy machine, each forward pass waited ~50× longer).",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings(
            out_dir=args.out,
            plot=None if args.no_plot else args.plot,
            sft=args.sft,
            sft_steps=args.sft_steps,
            pairs=args.pairs,
            base_pairs=args.base_pairs,
            rm_epochs=args.rm_epochs,
            rm_learning_rate=args.rm_lr,
            ensemble_heads=args.ensemble_heads,
            ensemble_k=args.ensemble_k,
            steps=args.steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            small_kl=args.small_kl,
            large_kl=args.large_kl,
            eval_every=args.eval_every,
            n=args.n,
            seed=args.seed,
        )
    except ValueError as error:
        parser.error(str(error))
    if settings.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("The plot needs matplotlib: `pip install 'trl-plus[plot]'`, or pass --no-plot.")
    import warnings

    import torch

    from trl_plus.demo import quiet_libraries

    quiet_libraries()
    warnings.filterwarnings("ignore", category=FutureWarning)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        results = experiment(settings)
    finally:
        torch.set_num_threads(threads)
    files = [write_csv(results, settings.out_dir / "curves.csv")]
    if settings.plot is not None:
        files.append(plot(results, settings.plot, settings))
    print(
        f"[4/4] Done in {time.perf_counter() - start:.0f} s ({args.threads} torch thread(s), seed {settings.seed}); "
        f"wrote {', '.join(map(str, files))}",
        flush=True,
    )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
