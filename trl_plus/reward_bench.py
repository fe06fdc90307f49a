"""Reward heads on the synthetic tasks: how close each head gets to the oracle (`python -m trl_plus.reward_bench`).

Each head trains with `RewardModelTrainer` on a tiny local llama checkpoint (built here unless `--model` is given),
on base-answer pairs of the task, then `oracle_agreement` scores its P(a ≻ b) on held-out pairs. The recipe is the
same for every head: mean pooling over the completion, the head at `--head-lr`, the backbone at `--lr`, and soft
labels (the oracle's P*(chosen ≻ rejected), column `chosen_win_prob`) unless `--hard-labels`.

    python -m trl_plus.reward_bench                          # cyclic and transitive, bt and gpm, soft labels
    python -m trl_plus.reward_bench --tasks cyclic --hard-labels
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_plus.synthetic import get_task, oracle_agreement
from trl_plus.synthetic.cyclic import scalar_ceiling
from trl_plus.synthetic.evaluate import OracleAgreement


@dataclass(frozen=True)
class HeadResult:
    task: str
    head: str
    labels: str
    score: OracleAgreement
    seconds: float


def fit_reward_model(
    model: str | Path,
    task_name: str,
    head: str,
    *,
    n: int = 8192,
    epochs: float = 3.0,
    soft_labels: bool = True,
    learning_rate: float = 1e-4,
    head_learning_rate: float = 1e-2,
    head_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    pooling: str = "mean",
) -> tuple[Any, float]:
    """Train a `head` reward model on `n` pairs of a synthetic task; (the RewardModel in eval mode, train seconds)."""
    task = get_task(task_name)
    pairs = task.preference_dataset(n, seed=seed, oracle_column=True)
    if not soft_labels:
        pairs = pairs.remove_columns("chosen_win_prob")
    return train_reward_model(
        model,
        pairs,
        head,
        epochs=epochs,
        learning_rate=learning_rate,
        head_learning_rate=head_learning_rate,
        head_kwargs=head_kwargs,
        seed=seed,
        output_dir=output_dir,
        pooling=pooling,
    )


def train_reward_model(
    model: str | Path,
    pairs: Any,
    head: str,
    *,
    epochs: float,
    learning_rate: float,
    head_learning_rate: float,
    head_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    output_dir: str | Path | None = None,
    pooling: str = "mean",
) -> tuple[Any, float]:
    """A `head` reward model trained from `model` on `pairs` with mean pooling (by default), a constant learning rate
    and a faster head, as these experiments train them; (the RewardModel in eval mode, train seconds)."""
    from transformers import PrinterCallback

    from trl_plus.demo import CPU_FP32
    from trl_plus.trainers.reward import RewardModelConfig, RewardModelTrainer

    with tempfile.TemporaryDirectory() as scratch:
        args = RewardModelConfig(
            str(output_dir or scratch),
            head=head,
            head_kwargs=head_kwargs,
            pooling=pooling,
            learning_rate=learning_rate,
            head_learning_rate=head_learning_rate,
            lr_scheduler_type="constant",
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            seed=seed,
            use_cpu=True,
            **CPU_FP32,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_steps=10_000,
        )
        trainer = RewardModelTrainer(str(model), args=args, train_dataset=pairs)
        trainer.remove_callback(PrinterCallback)  # the per-run summary says what matters
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return trainer.reward_model.eval(), seconds


def run(
    model: str | Path,
    tasks: list[str],
    heads: list[str],
    *,
    soft_labels: bool = True,
    n: int = 8192,
    epochs: float = 3.0,
    held_out: int = 2000,
) -> list[HeadResult]:
    results = []
    for task_name in tasks:
        for head in heads:
            reward_model, seconds = fit_reward_model(
                model, task_name, head, n=n, epochs=epochs, soft_labels=soft_labels
            )
            score = oracle_agreement(reward_model.prefer, get_task(task_name), held_out)
            labels = "soft" if soft_labels else "hard"
            results.append(HeadResult(task_name, head, labels, score, seconds))
            print(f"{task_name} {head} ({labels} labels): {score}; trained in {seconds:.0f} s", flush=True)
    return results


def markdown(results: list[HeadResult]) -> str:
    lines = [
        "| task | head | labels | agreement with the oracle | best scalar reward | expected accuracy | oracle's "
        "| train time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ceiling = f"{scalar_ceiling():.3f}" if r.task == "cyclic" else "1.000"
        lines.append(
            f"| {r.task} | {r.head} | {r.labels} | {r.score.agreement:.3f} | {ceiling} | "
            f"{r.score.expected_accuracy:.3f} | {r.score.oracle_accuracy:.3f} | {r.seconds:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trl_plus.reward_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="Backbone checkpoint (default: a tiny llama built in a temporary folder).")
    parser.add_argument("--tasks", default="cyclic,transitive")
    parser.add_argument("--heads", default="bt,gpm")
    parser.add_argument("--pairs", type=int, default=8192, help="Training pairs per task.")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--held-out", type=int, default=2000, help="Held-out pairs scored against the oracle.")
    parser.add_argument("--hard-labels", action="store_true", help="Train on 0/1 labels drawn from the oracle.")
    args = parser.parse_args(argv)
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from trl_plus.testing import make_tiny

            model = make_tiny("llama", Path(scratch) / "tiny-llama")
        results = run(
            model,
            args.tasks.split(","),
            args.heads.split(","),
            soft_labels=not args.hard_labels,
            n=args.pairs,
            epochs=args.epochs,
            held_out=args.held_out,
        )
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
