"""simpo, cpo, orpo and sft on the shared pair (c = −1, r = −3, |y_c| = 2, |y_r| = 4), without a reference."""

from __future__ import annotations

import math

import pytest
import torch

from trl_plus import get_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def no_ref(pair):  # type: ignore[no-untyped-def]
    return pair(ref_chosen_logps=None, ref_rejected_logps=None)


def test_simpo(pair) -> None:  # type: ignore[no-untyped-def]
    """β = 2, γ = 0.5: 2·(−1/2) − 2·(−3/4) − 0.5 = 0 → log 2. ∂/∂c = −(β/|y_c|)·σ(0) = −0.5."""
    chosen = torch.tensor([-1.0], requires_grad=True)
    out = get_loss("simpo")(pair(chosen_logps=chosen, ref_chosen_logps=None, ref_rejected_logps=None))
    assert out.losses.item() == pytest.approx(math.log(2))
    assert out.chosen_rewards.item() == pytest.approx(-1.0) and out.rejected_rewards.item() == pytest.approx(-1.5)  # type: ignore[union-attr]
    out.losses.sum().backward()
    assert chosen.grad.item() == pytest.approx(-0.5)  # type: ignore[union-attr]


def test_cpo(pair) -> None:  # type: ignore[no-untyped-def]
    """β = 0.5: −log σ(0.5·(−1 + 3)) = −log σ(1); NLL = 1/2; α = 1 → −log σ(1) + 0.5 ≈ 0.8133."""
    out = get_loss("cpo")(no_ref(pair), beta=0.5)
    assert out.losses.item() == pytest.approx(-log_sigmoid(1) + 0.5)
    assert float(out.metrics["nll_loss"]) == pytest.approx(0.5)
    assert get_loss("cpo")(no_ref(pair), beta=0.5, alpha=0.0).losses.item() == pytest.approx(-log_sigmoid(1))


def test_orpo(pair) -> None:  # type: ignore[no-untyped-def]
    """c̄ = −0.5, r̄ = −0.75; log odds(p) = p − log(1 − eᵖ); loss = −c̄ − β·log σ(log odds(c̄) − log odds(r̄))."""

    def log_odds(p: float) -> float:
        return p - math.log(1 - math.exp(p))

    expected = 0.5 - 0.1 * log_sigmoid(log_odds(-0.5) - log_odds(-0.75))
    assert get_loss("orpo")(no_ref(pair), beta=0.1).losses.item() == pytest.approx(expected, rel=1e-6)


def test_orpo_is_stable_near_certainty(pair) -> None:  # type: ignore[no-untyped-def]
    """Mean log-probs near 0 (p̄ → 1) make 1 − e^p̄ cancel; log1mexp keeps the loss and its gradient finite."""
    chosen = torch.tensor([-1e-6], requires_grad=True)
    batch = pair(chosen_logps=chosen, chosen_lengths=torch.tensor([1]), ref_chosen_logps=None, ref_rejected_logps=None)
    out = get_loss("orpo")(batch)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(chosen.grad).all()  # type: ignore[arg-type]


def test_sft_matches_the_token_level_mean(pair) -> None:  # type: ignore[no-untyped-def]
    """c = [−1, −3], |y_c| = [2, 4]: per example −c/mean|y| = [1/3, 1]; the batch mean 2/3 = Σ(−c)/Σ|y|."""
    batch = pair(
        chosen_logps=torch.tensor([-1.0, -3.0]),
        rejected_logps=torch.tensor([-2.0, -2.0]),
        chosen_lengths=torch.tensor([2, 4]),
        rejected_lengths=torch.tensor([1, 1]),
        ref_chosen_logps=None,
        ref_rejected_logps=None,
    )
    losses = get_loss("sft")(batch).losses
    assert torch.allclose(losses, torch.tensor([1 / 3, 1.0]))
    assert losses.mean().item() == pytest.approx(4 / 6)
