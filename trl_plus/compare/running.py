"""Training: the reference model, every method trained and scored once per seed by its driver (a trainer with a
`_Probe` for step times, memory and the curve; an iterative or rft loop; best-of-N sampling), and `compare`,
which runs every method in turn and writes the report."""

from __future__ import annotations

import contextlib
import io
import math
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from trl_plus.compare.config import REWARD_EPOCHS, CompareConfig, check_config, task_budget
from trl_plus.compare.data import Data, load_own_data, method_view, sample_task_data
from trl_plus.compare.methods import LOOPS, Method
from trl_plus.compare.reporting import Comparison, summary_line, write_plots, write_tables
from trl_plus.compare.results import MethodResult, Run
from trl_plus.compare.scoring import Evaluator
from trl_plus.cost import PeakMemory, StepClock

GRPO_GROUP = 4  # completions per prompt for GRPO rows
NASH_BETA = 0.05  # Nash rows' KL regularisation (NashConfig's other defaults: nash_md, mixture opponent, μ = 0.5)


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


def _train_and_score(
    method: Method,
    seed: int,
    config: CompareConfig,
    reference_path: Path,
    data: Data,
    evaluator: Evaluator,
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
    reward = None
    if method.online:
        reward = _with_format_rule(
            method, _online_reward(method, seed, config, reference_path, data, evaluator), config, evaluator
        )
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
    evaluator: Evaluator,
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
        "learning_rate": config.offline_learning_rate,
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
    method: Method, seed: int, config: CompareConfig, evaluator: Evaluator, metrics: Sequence[str], bar: Any
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
    method: Method, seed: int, config: CompareConfig, reference_path: Path, data: Data, evaluator: Evaluator
) -> Any:
    """The reward an online row trains against: the task's oracle, or a reward model with the row's head trained
    on the same data and budget as the `rm:HEAD` row (once per seed; its training is not counted in the row's cost)."""
    from transformers import PrinterCallback

    if method.head is None:
        return evaluator.task
    key = (method.head, seed)
    if key not in evaluator.reward_models and config.reward_pairs is not None:
        evaluator.reward_models[key] = _demo_reward_model(method.head, seed, config, reference_path)
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


def _demo_reward_model(head: str, seed: int, config: CompareConfig, reference_path: Path) -> Any:
    """A reward model trained as the demo trained its own: on `config.reward_pairs` pairs of the task's base answers
    with the oracle's probabilities as soft labels, for REWARD_EPOCHS at the demo recipe's learning rate."""
    from trl_plus.demo import RECIPES
    from trl_plus.reward_bench import fit_reward_model

    assert config.task is not None and config.reward_pairs is not None
    recipe = RECIPES[config.task]
    model, _ = fit_reward_model(
        reference_path,
        config.task,
        head,
        n=config.reward_pairs,
        epochs=REWARD_EPOCHS,
        learning_rate=recipe.reward_learning_rate,
        head_learning_rate=config.head_learning_rate,
        seed=seed,
        pooling=config.reward_pooling,
    )
    return model


def _with_format_rule(method: Method, reward: Any, config: CompareConfig, evaluator: Evaluator) -> Any:
    """A ppo:HEAD or grpo:HEAD row's reward model, plus the task's format check as a penalty when one is set."""
    from trl_plus.rewards import RuleReward

    if method.head is None or method.online not in ("ppo", "grpo") or not config.format_penalty:
        return reward
    return [reward, RuleReward(evaluator.task.is_valid, penalty=config.format_penalty, name="format")]


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
    from trl_plus.demo import online_trainer

    defaults = {
        "ppo": {"num_ppo_epochs": 4},
        "nash": {"beta": NASH_BETA},
        "grpo": {"num_generations": GRPO_GROUP, "num_iterations": 4, "beta": 0.05},
    }[str(method.online)]
    return online_trainer(
        str(method.online),
        reference_path,
        out_dir,
        prompts.select_columns(["prompt"]),
        reward,
        steps=config.steps,
        seed=seed,
        batch_size=batch_size,
        learning_rate=config.online_learning_rate,
        max_completion_length=config.online_max_new_tokens or config.max_new_tokens,
        config={**defaults, **(method.online_kwargs or {})},
    )


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
            learning_rate=method.learning_rate or config.offline_learning_rate,
        )
    trainer.remove_callback(PrinterCallback)  # it prints the logs, which would mix with the table on stdout
    return trainer


def _reward_trainer(
    head: str, reference_path: Path, out_dir: Path, data: Any, config: CompareConfig, *, seed: int, batch_size: int
) -> Any:
    from trl_plus.demo import training_args
    from trl_plus.trainers.reward import RewardModelConfig, RewardModelTrainer

    args = training_args(
        out_dir, steps=config.steps, seed=seed, batch_size=batch_size, learning_rate=config.offline_learning_rate
    )
    # Mean pooling (by default) and a faster head, as `trl_plus.reward_bench` trains them on these tasks.
    config_ = RewardModelConfig(
        **args, head=head, pooling=config.reward_pooling, head_learning_rate=config.head_learning_rate
    )
    return RewardModelTrainer(str(reference_path), args=config_, train_dataset=data)


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

    from trl_plus.demo import quiet_libraries
    from trl_plus.synthetic import get_task

    begin = time.perf_counter()
    quiet_libraries()
    own_data = load_own_data(config, methods) if config.dataset is not None else None
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference_path = _task_reference(config, log) if own_data is None else Path(str(config.model))
    reference, tokenizer = _load_reference(reference_path)
    task = get_task(config.task, seed=0) if config.task is not None else None
    data = own_data or sample_task_data(config, (reference, tokenizer), task, log)
    evaluator = Evaluator(config, reference, tokenizer, data, task)

    for method in methods:
        budget = task_budget(method, config)
        if budget is not None:
            given = (method.loss_kwargs or {}).get(method.losses[0], {})
            kwargs = ", ".join(f"{k} {v}" for k, v in given.items())
            settings = f"learning rate {method.learning_rate:g}" + (f", {kwargs}" if kwargs else "")
            own = method.learning_rate == budget.learning_rate and given == budget.loss_kwargs
            source = "its budget on the synthetic tasks" if own else "its budget, under your settings"
            print(f"{method.label}: {settings} ({source}, TASK_BUDGETS)", file=log)
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
