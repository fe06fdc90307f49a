"""ipo, hinge, sppo_hard and sppo on the shared pair (x_c = 1, x_r = −1, |y_c| = 2, |y_r| = 4)."""

from __future__ import annotations

import pytest
import torch

from trl_plus import get_loss


def test_ipo(pair) -> None:  # type: ignore[no-untyped-def]
    """h = 1/2 − (−1)/4 = 0.75; β = 0.5 → target 1/(2β) = 1 → (0.75 − 1)² = 0.0625. β = 2/3 puts the target at
    h exactly: zero loss, and no gradient pushing further."""
    assert get_loss("ipo")(pair(), beta=0.5).losses.item() == pytest.approx(0.0625)
    chosen = torch.tensor([-1.0], requires_grad=True)
    loss = get_loss("ipo")(pair(chosen_logps=chosen), beta=2 / 3).losses
    loss.sum().backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12) and chosen.grad.abs().item() < 1e-6  # type: ignore[union-attr]


def test_hinge(pair) -> None:  # type: ignore[no-untyped-def]
    """max(0, 1 − β d) with d = 2: β = 0.5 → 0 (margin met); β = 0.25 → 0.5."""
    assert get_loss("hinge")(pair(), beta=0.5).losses.item() == 0.0
    assert get_loss("slic")(pair(), beta=0.25).losses.item() == pytest.approx(0.5)


def test_sppo_hard(pair) -> None:  # type: ignore[no-untyped-def]
    """(x_c − 1/(2β))² + (x_r + 1/(2β))²: β = 0.5 → (1 − 1)² + (−1 + 1)² = 0; β = 1 → 0.25 + 0.25 = 0.5."""
    assert get_loss("sppo_hard")(pair(), beta=0.5).losses.item() == pytest.approx(0.0)
    assert get_loss("sppo_hard")(pair(), beta=1.0).losses.item() == pytest.approx(0.5)


def test_sppo_soft(pair) -> None:  # type: ignore[no-untyped-def]
    """η = 1/β = 2, P̂_c = 0.75, P̂_r = 1 − P̂_c = 0.25: (1 − 2·0.25)² + (−1 − 2·(−0.25))² = 0.25 + 0.25 = 0.5.
    With P̂_c = 1 it is sppo_hard; an explicit P̂_r = 0.5 zeroes the rejected term: 0.25."""
    soft = pair(chosen_win_probs=torch.tensor([0.75]))
    assert get_loss("sppo")(soft, beta=0.5).losses.item() == pytest.approx(0.5)
    hard = pair(chosen_win_probs=torch.tensor([1.0]))
    assert get_loss("sppo")(hard, beta=1.0).losses.item() == pytest.approx(
        get_loss("sppo_hard")(pair(), beta=1.0).losses.item()
    )
    both = pair(chosen_win_probs=torch.tensor([0.75]), rejected_win_probs=torch.tensor([0.5]))
    assert get_loss("sppo")(both, beta=0.5).losses.item() == pytest.approx(0.25 + 1.0)
    with pytest.raises(ValueError, match="sppo needs estimated win probabilities"):
        get_loss("sppo")(pair())
