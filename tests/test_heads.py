"""Reward heads on hand-picked numbers, and GPM's skew-symmetry checked property-style."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_plus import get_reward_head
from trl_plus.heads import bradley_terry_loss, plackett_luce_loss, preference_nll


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_with_margin_and_centring() -> None:
    """r_c = 2, r_r = 0.5, m = 0.5: −log σ(1) ≈ 0.313262; centring 0.01·(2.5)² = 0.0625 on top."""
    chosen, rejected, margin = torch.tensor([2.0]), torch.tensor([0.5]), torch.tensor([0.5])
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(-log_sigmoid(1.0))
    centred = bradley_terry_loss(chosen, rejected, margin, center_rewards_coefficient=0.01)
    assert centred.item() == pytest.approx(-log_sigmoid(1.0) + 0.0625)


def test_plackett_luce_on_a_ragged_list() -> None:
    """Rewards (2, 1, 0) best first: −[2 − log(e²+e+1)] − [1 − log(e+1)] − 0 ≈ 0.407606 + 0.313262 = 0.720869.
    A list of two (1, 0) plus padding is Bradley-Terry: −log σ(1) ≈ 0.313262."""
    rewards = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 99.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected_first = -(2 - math.log(math.e**2 + math.e + 1)) - (1 - math.log(math.e + 1))
    assert plackett_luce_loss(rewards, mask).tolist() == pytest.approx([expected_first, -log_sigmoid(1.0)])


def test_gpm_score_on_hand_picked_embeddings() -> None:
    """k = 1, v_a = (1, 0), v_b = (0, 1), λ = softplus(0) = log 2: ⟨R v_a, v_b⟩ = λ·(1·1 − 0·0) = log 2, so
    P(a ≻ b) = σ(log 2 / τ) with τ = 1: σ(log 2) = 2/3."""
    head = get_reward_head("gpm").build(4, embedding_dim=2, tau=1.0)
    with torch.no_grad():
        head.gates.weight.zero_()
        head.gates.bias.zero_()
    a, b, prompt = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.zeros(1, 4)
    assert head.score(a, b, prompt).item() == pytest.approx(math.log(2))
    assert head.prefer(a, b, prompt).item() == pytest.approx(2 / 3)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.sampled_from([2, 4, 8]), tau=st.floats(0.05, 5.0))
def test_gpm_is_skew_symmetric(seed: int, dim: int, tau: float) -> None:
    torch.manual_seed(seed)
    head = get_reward_head("gpm").build(6, embedding_dim=dim, tau=tau)
    states = torch.randn(3, 5, 6)
    a, b, prompt = head(states[0]), head(states[1]), states[2]
    p_ab, p_ba = head.prefer(a, b, prompt), head.prefer(b, a, prompt)
    assert torch.allclose(p_ab + p_ba, torch.ones(5), atol=1e-6)
    assert torch.allclose(head.prefer(a, a, prompt), torch.full((5,), 0.5), atol=1e-6)


def test_gpm_can_represent_a_cycle_that_no_scalar_reward_can() -> None:
    """Three unit vectors 120° apart in one block: each beats the next with the same probability > ½."""
    head = get_reward_head("gpm").build(2, embedding_dim=2, tau=0.1)
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    v = torch.stack([angles.cos(), angles.sin()], dim=-1)
    p = [head.prefer(v[i : i + 1], v[(i + 1) % 3 : (i + 1) % 3 + 1]).item() for i in range(3)]
    assert min(p) > 0.5 and max(p) - min(p) < 1e-6


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("gpm", {"embedding_dim": 3}, "even embedding_dim"),
        ("gpm", {"tau": 0.0}, "tau must be > 0"),
        ("ensemble", {"num_heads": 1}, "num_heads ≥ 2"),
        ("bt", {"center_rewards_coefficient": -1.0}, "must be ≥ 0"),
    ],
)
def test_bad_head_hyperparameters(name: str, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_reward_head(name).build(4, **kwargs)


def test_ensemble_reports_mean_std_and_conservative_reward() -> None:
    """Heads say (1, 3) for one response: mean 2, std √2, conservative 2 − 1·√2 with k = 1."""
    head = get_reward_head("ensemble").build(2, num_heads=2, k=1.0)
    summary = head.summary(torch.tensor([[1.0, 3.0]]))
    assert summary["mean"].item() == pytest.approx(2.0)
    assert summary["std"].item() == pytest.approx(math.sqrt(2))
    assert summary["conservative"].item() == pytest.approx(2 - math.sqrt(2))


def test_ensemble_bootstrap_weights_the_heads_differently_in_training_only() -> None:
    head = get_reward_head("ensemble").build(2, num_heads=8)
    chosen, rejected = torch.zeros(64, 8), torch.zeros(64, 8)  # every per-head loss is log 2
    head.eval()
    assert torch.allclose(head.pairwise_loss(chosen, rejected).losses, torch.full((64,), math.log(2)))
    head.train()
    torch.manual_seed(0)
    losses = head.pairwise_loss(chosen, rejected).losses
    assert losses.std() > 0  # Poisson(1) resampling weights
    assert losses.mean().item() == pytest.approx(math.log(2), rel=0.2)


def test_soft_targets_are_the_cross_entropy_and_one_is_the_hard_label() -> None:
    logits = torch.tensor([0.4, -1.0])
    assert torch.allclose(preference_nll(logits, torch.ones(2)), preference_nll(logits))
    p = torch.sigmoid(logits)
    expected = -(0.6 * torch.log(p) + 0.4 * torch.log(1 - p))
    assert torch.allclose(preference_nll(logits, torch.full((2,), 0.6)), expected)
    # The soft loss is smallest where the model's probability equals the target.
    grid = torch.linspace(-3, 3, 601)
    best = grid[preference_nll(grid, torch.full_like(grid, 0.6)).argmin()]
    assert torch.sigmoid(best).item() == pytest.approx(0.6, abs=0.005)
