"""nash_md, sppo_online and online_ipo on hand-picked samples: log π(y) = −1, log π_ref(y) = −2 (h = 1), P = 0.8."""

from __future__ import annotations

import pytest
import torch

from trl_plus import OnlineLogps, get_loss


def sample(logps: torch.Tensor, **overrides: torch.Tensor) -> OnlineLogps:
    fields = {
        "logps": logps,
        "lengths": torch.tensor([3]),
        "preferences": torch.tensor([0.8]),
        "ref_logps": torch.tensor([-2.0]),
    }
    fields.update(overrides)
    return OnlineLogps(**fields)


def test_nash_md_matches_the_papers_gradient() -> None:
    """β = 0.5: loss = −0.3·(−1) + 0.25·1² = 0.55; ∂/∂log π = −(P − ½ − β·h) = −(0.3 − 0.5) = 0.2."""
    logps = torch.tensor([-1.0], requires_grad=True)
    out = get_loss("nash_md")(sample(logps), beta=0.5)
    assert out.losses.item() == pytest.approx(0.55)
    out.losses.sum().backward()
    assert logps.grad.item() == pytest.approx(0.2)  # type: ignore[union-attr]
    assert out.chosen_rewards.item() == pytest.approx(0.5)  # type: ignore[union-attr]
    assert float(out.metrics["preference"]) == pytest.approx(0.8)


def test_nash_md_at_its_fixed_point_has_no_gradient() -> None:
    """h = (P − ½)/β is where Nash-MD-PG stops pushing: P = 0.8, β = 0.3 → h = 1."""
    logps = torch.tensor([-1.0], requires_grad=True)
    get_loss("nash_md")(sample(logps), beta=0.3).losses.sum().backward()
    assert logps.grad.item() == pytest.approx(0.0, abs=1e-7)  # type: ignore[union-attr]


def test_sppo_online() -> None:
    """β = 0.5, η = 2: (1 − 2·0.3)² = 0.16; ∂/∂log π = 2·0.4 = 0.8, i.e. (2/β)·nash_md's 0.2."""
    logps = torch.tensor([-1.0], requires_grad=True)
    out = get_loss("sppo_online")(sample(logps), beta=0.5)
    assert out.losses.item() == pytest.approx(0.16)
    out.losses.sum().backward()
    assert logps.grad.item() == pytest.approx(0.8)  # type: ignore[union-attr]


def test_online_ipo_uses_the_opponent_as_a_constant() -> None:
    """β = 0.5, h′ = −0.5: (1 + 0.5 − 0.6)² = 0.81; the opponent's log-ratio gets no gradient."""
    logps = torch.tensor([-1.0], requires_grad=True)
    opponent = torch.tensor([-0.5], requires_grad=True)
    out = get_loss("online_ipo")(sample(logps, opponent_log_ratios=opponent), beta=0.5)
    assert out.losses.item() == pytest.approx(0.81)
    out.losses.sum().backward()
    assert logps.grad.item() == pytest.approx(1.8) and opponent.grad is None  # type: ignore[union-attr]


def test_online_ipo_needs_the_opponent() -> None:
    with pytest.raises(ValueError, match="opponent_log_ratios"):
        get_loss("online_ipo")(sample(torch.tensor([-1.0])))


@pytest.mark.parametrize("name", ["nash_md", "sppo_online", "online_ipo"])
def test_beta_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match="beta"):
        get_loss(name)(sample(torch.tensor([-1.0]), opponent_log_ratios=torch.tensor([0.0])), beta=0.0)


def test_preferences_are_probabilities() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample(torch.tensor([-1.0]), preferences=torch.tensor([1.5]))
