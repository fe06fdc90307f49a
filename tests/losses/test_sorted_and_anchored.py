"""aot, aot_unpaired, apo_zero, apo_down and plackett_luce on hand-picked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from trl_plus import PairedLogps, RankedLogps, get_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


TWO = PairedLogps(
    chosen_logps=torch.tensor([-1.0, -5.0]),
    rejected_logps=torch.tensor([-3.0, -1.0]),
    chosen_lengths=torch.tensor([2, 2]),
    rejected_lengths=torch.tensor([2, 2]),
    ref_chosen_logps=torch.tensor([-2.0, -2.0]),
    ref_rejected_logps=torch.tensor([-2.0, -1.0]),
)


def test_aot_pairs_sorted_margins() -> None:
    """Policy margins c − r = [2, −4] sort to [−4, 2]; reference margins [0, −1] sort to [−1, 0]; δ = [−3, 2];
    β = 1 → losses [−log σ(−3), −log σ(2)] (by sorted position)."""
    losses = get_loss("aot")(TWO, beta=1.0).losses
    assert torch.allclose(losses, torch.tensor([-log_sigmoid(-3), -log_sigmoid(2)]))


def test_aot_unpaired_sorts_each_side() -> None:
    """Chosen log-ratios [1, −3] sort to [−3, 1]; rejected [−1, 0] to [−1, 0]; δ = [−2, 1]."""
    losses = get_loss("aot_unpaired")(TWO, beta=1.0).losses
    assert torch.allclose(losses, torch.tensor([-log_sigmoid(-2), -log_sigmoid(1)]))


def test_apo(pair) -> None:  # type: ignore[no-untyped-def]
    """x_c = 1, x_r = −1, β = 0.5. zero: (1 − σ(0.5)) + σ(−0.5) = 2σ(−0.5). down: σ(0.5) + 1 − σ(1)."""
    assert get_loss("apo_zero")(pair(), beta=0.5).losses.item() == pytest.approx(2 * sigmoid(-0.5))
    assert get_loss("apo_down")(pair(), beta=0.5).losses.item() == pytest.approx(sigmoid(0.5) + 1 - sigmoid(1))


def test_plackett_luce_on_three_and_ragged_lists() -> None:
    """β = 1, scores s = [2, 1, 0] (best first): −(2 − log(e² + e + 1)) − (1 − log(e + 1)).
    Row 2 has two present completions with scores [1, 3]: −(1 − log(e + e³)) = −log σ(−2), DPO's loss."""
    batch = RankedLogps(
        logps=torch.tensor([[2.0, 1.0, 0.0], [1.0, 3.0, 0.0]]),
        ref_logps=torch.zeros(2, 3),
        lengths=torch.tensor([[1, 1, 1], [1, 1, 0]]),
        mask=torch.tensor([[True, True, True], [True, True, False]]),
    )
    out = get_loss("plackett_luce")(batch, beta=1.0)
    e = math.e
    first = -(2 - math.log(e**2 + e + 1)) - (1 - math.log(e + 1))
    assert torch.allclose(out.losses, torch.tensor([first, -log_sigmoid(-2)]))
    assert out.chosen_rewards.tolist() == [2.0, 1.0] and out.rejected_rewards.tolist() == [0.0, 3.0]  # type: ignore[union-attr]
    assert float(out.metrics["ranking_accuracy"]) == pytest.approx(2 / 3)  # 2 of the 3 adjacent pairs in order


def test_plackett_luce_with_two_completions_is_dpo(pair) -> None:  # type: ignore[no-untyped-def]
    lp = pair()
    ranked = RankedLogps(
        logps=torch.stack([lp.chosen_logps, lp.rejected_logps], dim=1),
        ref_logps=torch.stack([lp.ref_chosen_logps, lp.ref_rejected_logps], dim=1),
        lengths=torch.tensor([[2, 4]]),
        mask=torch.ones(1, 2, dtype=torch.bool),
    )
    assert get_loss("dpo_pl")(ranked, beta=0.3).losses.item() == pytest.approx(
        get_loss("dpo")(lp, beta=0.3).losses.item()
    )


def test_plackett_luce_needs_two_completions() -> None:
    batch = RankedLogps(
        logps=torch.zeros(1, 2),
        ref_logps=torch.zeros(1, 2),
        lengths=torch.tensor([[1, 0]]),
        mask=torch.tensor([[True, False]]),
    )
    with pytest.raises(ValueError, match="at least two completions per prompt"):
        get_loss("plackett_luce")(batch)
