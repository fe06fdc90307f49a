from __future__ import annotations

import math

import pytest
import torch

from trl_plus import PairedLogps, get_loss


def _batch(**kwargs: torch.Tensor) -> PairedLogps:
    return PairedLogps(
        chosen_lengths=torch.tensor([3, 3]),
        rejected_lengths=torch.tensor([2, 5]),
        **kwargs,  # type: ignore[arg-type]
    )


def test_formula_on_hand_picked_numbers() -> None:
    """Row 0: c − c_ref = −1 − (−2) = 1, r − r_ref = −3 − (−2) = −1, so d = 2 and with β = 0.5:
    loss = −log σ(1) = log(1 + e^−1) ≈ 0.3133, rewards β·1 = 0.5 and β·(−1) = −0.5.
    Row 1: d = 0, loss = log 2. With ε = 0.2 row 0 becomes 0.8·log(1 + e^−1) + 0.2·log(1 + e^1)."""
    lp = _batch(
        chosen_logps=torch.tensor([-1.0, -4.0]),
        rejected_logps=torch.tensor([-3.0, -4.0]),
        ref_chosen_logps=torch.tensor([-2.0, -4.0]),
        ref_rejected_logps=torch.tensor([-2.0, -4.0]),
    )
    out = get_loss("dpo")(lp, beta=0.5)
    assert torch.allclose(out.losses, torch.tensor([math.log1p(math.exp(-1)), math.log(2)]))
    assert torch.allclose(out.chosen_rewards, torch.tensor([0.5, 0.0]))  # type: ignore[arg-type]
    assert torch.allclose(out.rejected_rewards, torch.tensor([-0.5, 0.0]))  # type: ignore[arg-type]
    smoothed = get_loss("dpo")(lp, beta=0.5, label_smoothing=0.2)
    assert smoothed.losses[0].item() == pytest.approx(0.8 * math.log1p(math.exp(-1)) + 0.2 * math.log1p(math.e))


def test_gradient_matches_the_closed_form() -> None:
    """∂loss/∂c = −β·σ(−β d) and ∂loss/∂r = +β·σ(−β d) for ε = 0; the reference gets no gradient here."""
    chosen = torch.tensor([-1.0], requires_grad=True)
    rejected = torch.tensor([-3.0], requires_grad=True)
    lp = PairedLogps(
        chosen_logps=chosen,
        rejected_logps=rejected,
        chosen_lengths=torch.tensor([3]),
        rejected_lengths=torch.tensor([2]),
        ref_chosen_logps=torch.tensor([-2.0]),
        ref_rejected_logps=torch.tensor([-2.0]),
    )
    get_loss("dpo")(lp, beta=0.5).losses.sum().backward()
    slope = 0.5 * torch.sigmoid(torch.tensor(-1.0))
    assert chosen.grad is not None and rejected.grad is not None
    assert torch.allclose(chosen.grad, -slope) and torch.allclose(rejected.grad, slope)
