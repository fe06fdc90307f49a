"""robust, sigmoid_norm, exo_pair, nca_pair, bco_pair, discopop on the shared pair (x_c = 1, x_r = −1, d = 2)."""

from __future__ import annotations

import math

import pytest

from trl_plus import get_loss


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_robust(pair) -> None:  # type: ignore[no-untyped-def]
    """β = 0.5 → β d = 1; ε = 0.25: (−0.75·log σ(1) + 0.25·log σ(−1)) / 0.5 ≈ −0.1867."""
    expected = (-0.75 * log_sigmoid(1) + 0.25 * log_sigmoid(-1)) / 0.5
    assert get_loss("robust")(pair(), beta=0.5, label_smoothing=0.25).losses.item() == pytest.approx(expected)
    assert expected == pytest.approx(-0.1867, abs=1e-4)
    # ε = 0 is plain DPO.
    dpo = get_loss("dpo")(pair(), beta=0.5).losses
    assert get_loss("robust")(pair(), beta=0.5, label_smoothing=0.0).losses.item() == pytest.approx(dpo.item())
    with pytest.raises(ValueError, match=r"flip rate in \[0, 0.5\), got 0.5"):
        get_loss("robust")(pair(), label_smoothing=0.5)


def test_sigmoid_norm(pair) -> None:  # type: ignore[no-untyped-def]
    """Per-token margin: 1/2 − (−1)/4 = 0.75; β = 0.5 → −log σ(0.375)."""
    assert get_loss("sigmoid_norm")(pair(), beta=0.5).losses.item() == pytest.approx(-log_sigmoid(0.375))


def test_exo_pair(pair) -> None:  # type: ignore[no-untyped-def]
    """β d = 1, ε = 0.1: σ(1)(log σ(1) − log 0.9) + σ(−1)(log σ(−1) − log 0.1)."""
    expected = sigmoid(1) * (log_sigmoid(1) - math.log(0.9)) + sigmoid(-1) * (log_sigmoid(-1) - math.log(0.1))
    assert get_loss("exo_pair")(pair(), beta=0.5, label_smoothing=0.1).losses.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\), got 0.0"):
        get_loss("exo")(pair(), label_smoothing=0.0)


def test_nca_pair(pair) -> None:  # type: ignore[no-untyped-def]
    """Rewards 0.5 and −0.5 at β = 0.5: −log σ(0.5) − ½ log σ(−0.5) − ½ log σ(0.5)."""
    expected = -log_sigmoid(0.5) - 0.5 * log_sigmoid(-0.5) - 0.5 * log_sigmoid(0.5)
    assert get_loss("nca_pair")(pair(), beta=0.5).losses.item() == pytest.approx(expected)


def test_bco_pair(pair) -> None:  # type: ignore[no-untyped-def]
    """−log σ(0.5) − log σ(−(−0.5)) = 2·log(1 + e^−0.5)."""
    assert get_loss("bco_pair")(pair(), beta=0.5).losses.item() == pytest.approx(2 * math.log1p(math.exp(-0.5)))


def test_discopop(pair) -> None:  # type: ignore[no-untyped-def]
    """ρ = 1, τ = 0.05: gate σ(20); loss = (1 − σ(20))·(−log σ(1)) + σ(20)·e^−1 ≈ e^−1. At τ = 1e6 the gate is
    ½ and the loss the plain average of the two components."""
    gate = sigmoid(20)
    expected = (1 - gate) * -log_sigmoid(1) + gate * math.exp(-1)
    assert get_loss("discopop")(pair(), beta=0.5).losses.item() == pytest.approx(expected)
    half = 0.5 * -log_sigmoid(1) + 0.5 * math.exp(-1)
    assert get_loss("discopop")(pair(), beta=0.5, tau=1e6).losses.item() == pytest.approx(half, rel=1e-5)
