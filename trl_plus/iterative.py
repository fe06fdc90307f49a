"""Iterative on-policy preference training: every round, sample K answers per prompt from the current policy, rank
them with the task's oracle or any judge (`prefer(prompts, a, b) → P(a ≻ b)`, e.g. `RewardModel.prefer`), and
train a few steps on them with any registered loss through `PreferenceTrainer` (`UnpairedPreferenceTrainer` for
unpaired losses). The next round samples from the result.

One round of offline pairs only teaches what the reference's own samples can show; fresh samples of the moving
policy keep the data where the policy is (see the README's demo section for the measured difference). Each round is
saved under `out_dir/round-NN` with a `round.json`; a run started again in the same folder resumes after the last
finished round.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_plus.synthetic import SyntheticTask, policy_preference_dataset

ROUND_FILE = "round.json"
REFERENCES = ("previous", "initial")


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
    task: SyntheticTask,
    *,
    loss: list[str],
    rows: int,
    k: int,
    seed: int,
    judge: Any = None,
    draw_rankings: bool = False,
) -> Any:
    """One round's training rows: `k` samples per prompt of `policy`, ranked by the oracle (or `judge`), given to
    the losses in the form they take (ranked lists, every ordered pair, or the unpaired view of those pairs)."""
    from trl_plus.demo import loss_kinds
    from trl_plus.trainers import unpaired_view

    _, kinds = loss_kinds(loss)
    per_list = k * (k - 1) // 2
    lists = rows if "ranked" in kinds else -(-rows // per_list)  # enough lists for `rows` pairs
    data = policy_preference_dataset(policy, task, lists, k=k, seed=seed, judge=judge, draw_rankings=draw_rankings)
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


def iterative_training(
    model: str | Path,
    out_dir: str | Path,
    task: SyntheticTask,
    *,
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
) -> list[Round]:
    """Train `rounds` rounds from `model`; returns one `Round` per round (the last one's `path` is the final policy).

    `reference`: "previous" regularises each round towards the policy it starts from (so the policy can move far
    from `model` over many rounds, a little per round); "initial" keeps `model` as the reference throughout.
    `final_learning_rate`: the last round's learning rate, the rounds in between interpolated linearly (None: every
    round at `learning_rate`); within a round the rate follows the demo's cosine schedule. Smaller late steps let
    the policy settle instead of oscillating around the optimum (measured in the README's demo section).
    `on_round(round)` is called after each round, e.g. to evaluate it. `judge(prompts, a, b) → P(a ≻ b)` ranks the
    samples instead of the task's oracle (which then only gives the prompts): a reward model's `prefer`, an LLM
    judge, any callable. `draw_rankings` draws each ranking from the judge's probabilities rather than sorting by
    them (see `judge_rankings`).
    """
    from trl_plus.demo import loss_kinds, preference_trainer

    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be at least 1, got {rounds} and {steps_per_round}.")
    if k < 2:
        raise ValueError(f"k must be at least 2 samples per prompt to rank, got {k}.")
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}.")
    names, kinds = loss_kinds(loss)
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


def run_rounds(
    model: str | Path, out_dir: str | Path, rounds: int, train_round: Any, on_round: Any = None
) -> list[Round]:
    """Rounds 1..`rounds` under `out_dir/round-NN`: `train_round(index, policy, path) → rows` trains from `policy`
    (the model, then each round's result) and saves to `path`; finished rounds found on disk are skipped."""
    out = Path(out_dir)
    policy: Any = model
    done: list[Round] = []
    for index in range(1, rounds + 1):
        path = out / f"round-{index:02d}"
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
    task: SyntheticTask,
    prompts: int,
    *,
    n: int = 4,
    top_k: int = 1,
    judge: Any = None,
    seed: int = 0,
    max_new_tokens: int = 16,
) -> Any:
    """Prompt/completion rows for SFT: `n` samples of `policy` for each of `prompts` training prompts, ranked by
    `judge` (default: the task's oracle), the best `top_k` distinct ones kept."""
    from datasets import Dataset

    from trl_plus.judges import task_judge
    from trl_plus.synthetic.evaluate import distinct_answers, judge_rankings, load_policy, sample_groups

    if not 1 <= top_k <= n:
        raise ValueError(f"Need 1 <= top_k <= n, got top_k={top_k}, n={n}.")
    model, tokenizer = load_policy(policy)
    texts = task.prompts(prompts, seed=seed, stream="preference")
    answers = distinct_answers(sample_groups(model, tokenizer, texts, n, seed=seed, max_new_tokens=max_new_tokens))
    ranked = judge_rankings(judge or task_judge(task), texts, answers)
    rows = [{"prompt": p, "completion": c} for p, best in zip(texts, ranked, strict=True) for c in best[:top_k]]
    return Dataset.from_list(rows)


def rejection_sampling_training(
    model: str | Path,
    out_dir: str | Path,
    task: SyntheticTask,
    *,
    rounds: int = 1,
    steps_per_round: int = 100,
    n: int = 4,
    top_k: int = 1,
    judge: Any = None,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    seed: int = 0,
    on_round: Any = None,
) -> list[Round]:
    """Rejection-sampling fine-tuning with TRL's SFTTrainer: keep the best `top_k` of `n` samples per prompt (by
    `judge`, default the oracle) and fine-tune on them. One round samples once from `model` (offline); more rounds
    sample again from each round's result (online). Rounds are saved and resumed as in `iterative_training`."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from trl_plus.demo import training_args

    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds and steps_per_round must be at least 1, got {rounds} and {steps_per_round}.")

    def train_round(index: int, policy: Any, path: Path) -> int:
        prompts = -(-batch_size * steps_per_round // top_k)
        data = rejection_sampling_data(policy, task, prompts, n=n, top_k=top_k, judge=judge, seed=seed + index)
        args = training_args(
            path, steps=steps_per_round, seed=seed + index, batch_size=batch_size, learning_rate=learning_rate
        )
        trainer = SFTTrainer(model=str(policy), args=SFTConfig(**args), train_dataset=data)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        trainer.save_model(str(path))
        return len(data)

    return run_rounds(model, out_dir, rounds, train_round, on_round)
