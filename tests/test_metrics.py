"""The reward-model metrics: PreferenceAccuracy and KendallTau as `evaluate` metrics, on hand-picked numbers."""

from __future__ import annotations

import math

import pytest

from trl_plus.metrics import KendallTau, PreferenceAccuracy, kendall_tau_b


def test_preference_accuracy_counts_ties_as_half() -> None:
    metric = PreferenceAccuracy()
    metric.add_batch(predictions=[0.9, 0.2], references=[1, 1])
    metric.add_batch(predictions=[0.5, 0.1], references=[0, 0])
    assert metric.compute() == {"accuracy": pytest.approx((1 + 0 + 0.5 + 1) / 4)}


def test_kendall_tau_b_on_hand_picked_lists() -> None:
    assert kendall_tau_b([3.0, 2.0, 1.0], [0, 1, 2]) == 1.0  # scores in rank order
    assert kendall_tau_b([1.0, 2.0, 3.0], [0, 1, 2]) == -1.0
    # One discordant pair of three: (2 − 1) / 3.
    assert kendall_tau_b([3.0, 1.0, 2.0], [0, 1, 2]) == pytest.approx(1 / 3)
    # A tie in the scores: τ-b = (concordant − discordant) / sqrt(untied scores · untied ranks) = 2 / sqrt(2 · 3).
    assert kendall_tau_b([2.0, 1.0, 1.0], [0, 1, 2]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_b([1.0, 1.0], [0, 1]) is None
    with pytest.raises(ValueError, match="2 scores for 3 ranks"):
        kendall_tau_b([1.0, 2.0], [0, 1, 2])


def test_kendall_tau_averages_ragged_lists_and_skips_all_tied_ones() -> None:
    result = KendallTau().compute(
        predictions=[[3.0, 2.0, 1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], references=[[0, 1, 2, 3], [0, 1], [0, 1]]
    )
    assert result == {"kendall_tau": pytest.approx(0.0)}  # (1 + (−1)) / 2; the tied list has no τ
