"""PPO's per-token math (trl_plus.losses.ppo) on hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from trl_plus.losses import ppo


def test_gae_two_steps_by_hand() -> None:
    """r = (0.5, 1.0), V = (0.2, 0.4), γ = 0.9, λ = 0.8; V after the last token is 0 (the episode ended):
    δ₁ = 1.0 − 0.4 = 0.6 and A₁ = 0.6; δ₀ = 0.5 + 0.9·0.4 − 0.2 = 0.66 and A₀ = 0.66 + 0.9·0.8·0.6 = 1.092;
    returns R = A + V = (1.292, 1.0). A second row padded after one token: A₀ = δ₀ = 2.0 − 0.5 = 1.5, zeros after."""
    rewards = torch.tensor([[0.5, 1.0], [2.0, 9.0]])
    values = torch.tensor([[0.2, 0.4], [0.5, 7.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    advantages, returns = ppo.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(advantages, torch.tensor([[1.092, 0.6], [1.5, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[1.292, 1.0], [2.0, 0.0]]))


def test_gae_with_lambda_one_is_reward_to_go_minus_value() -> None:
    """γ = λ = 1: A_t = Σ_{t' ≥ t} r_t' − V_t (Monte Carlo), whatever the values."""
    rewards = torch.tensor([[0.1, -0.2, 0.3, 1.0]])
    values = torch.tensor([[0.7, -0.1, 0.2, 0.05]])
    advantages, returns = ppo.gae(rewards, values, torch.ones_like(rewards), gamma=1.0, lam=1.0)
    to_go = rewards.flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(advantages, to_go - values)
    torch.testing.assert_close(returns, to_go)


def test_shaped_rewards_sum_to_score_minus_beta_kl() -> None:
    """Σ_t r_t = score − β·Σ_t (log π − log π_ref) with k1; the score sits on the last real token only."""
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -4.0, 0.0]])
    ref_logps = torch.tensor([[-1.5, -1.0, -0.7], [-0.2, -3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    scores = torch.tensor([2.0, -1.0])
    kl = ppo.per_token_kl(logps, ref_logps, mask, "k1")
    rewards = ppo.shaped_rewards(scores, kl, mask, kl_coef=0.1)
    torch.testing.assert_close(kl.sum(1), ((logps - ref_logps) * mask).sum(1))
    torch.testing.assert_close(rewards.sum(1), scores - 0.1 * torch.tensor([-0.3, -1.1]))
    assert rewards[1, 1] == pytest.approx(-1.0 - 0.1 * (-1.0))  # second row: last real token is index 1
    assert rewards[1, 2] == 0.0


def test_k3_is_non_negative_and_matches_its_formula() -> None:
    """k3 = (ρ − 1) − log ρ with ρ = π_ref/π: for log π − log π_ref = 0.5, ρ = e^−0.5 and k3 = e^−0.5 − 1 + 0.5."""
    logps, ref_logps = torch.tensor([[-1.0, -3.0]]), torch.tensor([[-1.5, -1.0]])
    kl = ppo.per_token_kl(logps, ref_logps, torch.ones(1, 2), "k3")
    assert kl[0, 0].item() == pytest.approx(math.exp(-0.5) - 1 + 0.5)
    assert kl[0, 1].item() == pytest.approx(math.exp(2.0) - 1 - 2.0)
    assert (kl >= 0).all()
    with pytest.raises(ValueError, match="kl_estimator"):
        ppo.per_token_kl(logps, ref_logps, torch.ones(1, 2), "k2")


def test_whitening_ignores_padding() -> None:
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    whitened = ppo.masked_whiten(values, mask)
    # mean 2, unbiased std √2 over the two real tokens
    torch.testing.assert_close(whitened, torch.tensor([[-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]]), atol=1e-6, rtol=0)
    kept = ppo.masked_whiten(values, mask, shift_mean=False)
    torch.testing.assert_close(kept[0, :2], whitened[0, :2] + 2.0)


def test_policy_loss_clips_in_the_direction_of_the_advantage() -> None:
    """ε = 0.2. Token 1: A = +1, ratio e^0.5 ≈ 1.65 > 1.2, clipped: loss −1.2, no gradient. Token 2: A = −1, ratio
    e^−0.5 ≈ 0.61 < 0.8: max(0.61, 0.8) = 0.8, clipped, no gradient. Token 3: A = +2, ratio 1: loss −2, gradient
    −2 on its log-prob. Mean over the 3 tokens."""
    old = torch.zeros(1, 3)
    logps = torch.tensor([[0.5, -0.5, 0.0]], requires_grad=True)
    advantages = torch.tensor([[1.0, -1.0, 2.0]])
    out = ppo.policy_loss(logps, old, advantages, torch.ones(1, 3), cliprange=0.2)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 - 2.0) / 3)
    assert out.clipfrac.item() == pytest.approx(2 / 3)
    assert out.approxkl.item() == pytest.approx((0.125 + 0.125 + 0.0) / 3)
    out.loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, 0.0, -2 / 3]]))


def test_value_loss_takes_the_larger_of_clipped_and_unclipped() -> None:
    """V_old = 0, ε_v = 0.2, R = 1. V = 0.5: clipped to 0.2, max((0.5−1)², (0.2−1)²) = 0.64 (clipped term).
    V = 1.5: clip 0.2, max(0.25, 0.64) = 0.64 as well. Loss = ½·mean = 0.32; both tokens clipped."""
    values = torch.tensor([[0.5, 1.5]])
    loss, clipfrac = ppo.value_loss(values, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), cliprange_value=0.2)
    assert loss.item() == pytest.approx(0.32)
    assert clipfrac.item() == 1.0
