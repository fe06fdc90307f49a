"""Reward-model evaluation metrics as `evaluate` metrics, defined here so they load offline (no Hub script).

    >>> PreferenceAccuracy().compute(predictions=[0.9, 0.2, 0.5], references=[1, 1, 0])
    {'accuracy': 0.5}
    >>> KendallTau().compute(predictions=[[3.0, 2.0, 1.0], [1.0, 2.0]], references=[[0, 1, 2], [0, 1]])
    {'kendall_tau': 0.0}

Both accumulate with `add_batch` and compute once, as any `evaluate` metric; RewardModelTrainer uses them for its
eval metrics.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np


class _InMemoryMetric(evaluate.Metric):
    """Kept in memory by default: a trainer's eval set is small, and no cache files are left behind."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)


class PreferenceAccuracy(_InMemoryMetric):
    """Held-out preference accuracy from predicted probabilities P(first ≻ second).

    `references` are 1 where the first completion is the preferred one (a chosen/rejected pair), 0 where the second
    is. A prediction of exactly ½ is a tie and counts half.
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Fraction of pairs whose preferred completion gets P > ½ (ties count half).",
            citation="",
            inputs_description="predictions: P(first ≻ second) per pair; references: 1 if the first is preferred.",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[int]) -> dict[str, float]:
        p = np.asarray(predictions, dtype=float)
        first = np.asarray(references) == 1
        right = np.where(first, p > 0.5, p < 0.5) + 0.5 * (p == 0.5)
        return {"accuracy": float(right.mean())}


class KendallTau(_InMemoryMetric):
    """Mean Kendall τ-b between predicted scores and the true ranking, per list (ragged lists allowed).

    `predictions`: one score per completion (higher is better); `references`: each completion's true rank (0 is the
    best). τ = 1 when the scores order every list exactly as ranked, −1 when exactly reversed; tied scores count
    as neither (τ-b). A list whose scores or ranks are all tied has no τ and is left out.
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Mean per-list Kendall tau-b between predicted scores and true ranks.",
            citation="Kendall (1938), Biometrika 30(1/2).",
            inputs_description="predictions: scores per list (higher is better); references: true ranks (0 = best).",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions: list[list[float]], references: list[list[int]]) -> dict[str, float]:
        taus = [
            tau
            for scores, ranks in zip(predictions, references, strict=True)
            if (tau := kendall_tau_b(scores, ranks)) is not None
        ]
        return {"kendall_tau": float(np.mean(taus)) if taus else float("nan")}


def kendall_tau_b(scores: list[float], ranks: list[int]) -> float | None:
    """τ-b of `scores` (higher is better) against `ranks` (lower is better); None when either is all ties."""
    if len(scores) != len(ranks):
        raise ValueError(f"A list has {len(scores)} scores for {len(ranks)} ranks.")
    s = np.asarray(scores, dtype=float)
    # Higher score should mean lower rank number: compare against negated ranks.
    r = -np.asarray(ranks, dtype=float)
    i, j = np.triu_indices(len(s), k=1)
    ds, dr = np.sign(s[i] - s[j]), np.sign(r[i] - r[j])
    untied_s, untied_r = np.count_nonzero(ds), np.count_nonzero(dr)
    if untied_s == 0 or untied_r == 0:
        return None
    return float((ds * dr).sum() / np.sqrt(untied_s * untied_r))
