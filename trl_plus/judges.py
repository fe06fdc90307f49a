"""Judges and best-of-N sampling.

A judge is any callable `judge(prompts, a, b) → P(a ≻ b)`, one probability per row: a synthetic task's oracle
(`task_judge`), `RewardModel.prefer` (any head, `gpm` included), or a plain function. `best_of_n` samples N answers
per prompt and keeps the best by a pointwise `score(prompts, completions)` or, with a pairwise judge, by summed win
probability against the other samples; `iterative_training` and `policy_preference_dataset` take the same judges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trl_plus.synthetic import SyntheticTask
from trl_plus.synthetic.evaluate import Policy, judge_rankings, load_policy, sample_groups

Judge = Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], Sequence[float]]
Scorer = Callable[[Sequence[Any], Sequence[Any]], Sequence[float]]


def task_judge(task: SyntheticTask) -> Judge:
    """The task's oracle as a batched judge: P(a ≻ b | prompt) per row (no label noise drawn)."""

    def judge(prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> list[float]:
        return [task.prefer(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]

    return judge


def best_of_n(
    policy: Policy,
    prompts: Sequence[str],
    judge: Judge | None = None,
    *,
    score: Scorer | None = None,
    n: int = 4,
    seed: int = 0,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> list[str]:
    """The best of `n` samples of `policy` for each prompt (as `sample_completions` returns them).

    Give `score` (higher is better, e.g. `RewardModel.score`) or a pairwise `judge`; with a judge all n(n−1)/2
    pairs of every prompt go in one batched call. Ties keep the earlier sample.
    """
    if (judge is None) == (score is None):
        raise ValueError("Give exactly one of `judge` (pairwise) or `score` (pointwise).")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    model, tokenizer = load_policy(policy)
    answers = sample_groups(
        model,
        tokenizer,
        list(prompts),
        n,
        seed=seed,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=batch_size,
    )
    if judge is not None:
        return [ranked[0] for ranked in judge_rankings(judge, prompts, answers)]
    assert score is not None
    flat = [float(s) for s in score([p for p in prompts for _ in range(n)], [a for row in answers for a in row])]
    best = []
    for i, row in enumerate(answers):
        scores = flat[i * n : (i + 1) * n]
        best.append(row[scores.index(max(scores))])  # the first of equal scores
    return best
