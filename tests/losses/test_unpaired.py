"""Unpaired losses on hand-picked numbers: a desirable completion with log-ratio +1, an undesirable one with −1."""

from __future__ import annotations

import math

import pytest
import torch

from trl_plus import UnpairedLogps, get_loss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def batch(kl_logps: float | None) -> UnpairedLogps:
    """ρ = logp − ref = (−1 − (−2), −3 − (−2)) = (+1, −1); the KL pair gives kl_logps − (−5)."""
    kl = None if kl_logps is None else torch.tensor([kl_logps, kl_logps])
    return UnpairedLogps(
        logps=torch.tensor([-1.0, -3.0]),
        lengths=torch.tensor([2, 2]),
        desirable=torch.tensor([True, False]),
        ref_logps=torch.tensor([-2.0, -2.0]),
        kl_logps=kl,
        ref_kl_logps=None if kl is None else torch.full((2,), -5.0),
    )


def test_kto_with_a_positive_kl_estimate() -> None:
    """z0 = −4 − (−5) = 1. Desirable: 1 − σ(0.1·(1 − 1)) = 0.5, times λ_D = 2 → 1.0.
    Undesirable: 1 − σ(0.1·(1 − (−1))) = 1 − σ(0.2) ≈ 0.450166."""
    output = get_loss("kto")(batch(-4.0), desirable_weight=2.0)
    assert output.losses.tolist() == pytest.approx([1.0, 1 - sigmoid(0.2)])
    assert output.metrics["kl"].item() == pytest.approx(1.0)


def test_kto_clamps_a_negative_kl_estimate_to_zero() -> None:
    """mean(−6 − (−5)) = −1 → z0 = 0: both losses are 1 − σ(0.1) ≈ 0.475021."""
    output = get_loss("kto")(batch(-6.0))
    assert output.losses.tolist() == pytest.approx([1 - sigmoid(0.1)] * 2)


def test_kto_rewards_sit_in_their_class_slot() -> None:
    output = get_loss("kto")(batch(-4.0))
    assert output.chosen_rewards is not None and output.rejected_rewards is not None
    assert output.chosen_rewards[0].item() == pytest.approx(0.1) and math.isnan(output.chosen_rewards[1].item())
    assert output.rejected_rewards[1].item() == pytest.approx(-0.1) and math.isnan(output.rejected_rewards[0].item())


def test_kto_reference_point_does_not_carry_gradient() -> None:
    lp = batch(-4.0)
    assert lp.kl_logps is not None
    lp.kl_logps.requires_grad_(True)
    lp.logps.requires_grad_(True)
    get_loss("kto")(lp).losses.sum().backward()
    assert lp.kl_logps.grad is None and lp.logps.grad is not None


def test_apo_zero_unpaired() -> None:
    """Desirable: 1 − σ(0.1·1) ≈ 0.475021; undesirable: σ(0.1·(−1)) ≈ 0.475021; the KL pair is ignored."""
    output = get_loss("apo_zero_unpaired")(batch(-4.0))
    assert output.losses.tolist() == pytest.approx([1 - sigmoid(0.1), sigmoid(-0.1)])
    assert torch.equal(output.losses, get_loss("apo_zero_unpaired")(batch(None)).losses)


def test_bco_with_a_baseline() -> None:
    """Rewards 0.1·(+1, −1) = (0.1, −0.1), δ = 0.05. Desirable: −log σ(0.1 − 0.05) = −log σ(0.05) ≈ 0.668479.
    Undesirable: −log σ(−(−0.1 − 0.05)) = −log σ(0.15) ≈ 0.621503."""
    output = get_loss("bco")(batch(-4.0), baseline=0.05)
    assert output.losses.tolist() == pytest.approx([-math.log(sigmoid(0.05)), -math.log(sigmoid(0.15))])
    assert output.metrics["baseline"] == 0.05


def test_bco_baseline_is_the_running_mean_of_batch_mean_rewards() -> None:
    """Step 1: mean reward 0.1·mean(+1, −1) = 0 → δ = 0. Step 2 with ρ shifted by +2: mean 0.2 → δ = (0 + 0.2)/2.
    Evaluation (`update=False`) reads δ and leaves it alone."""
    spec = get_loss("bco")
    assert spec.state is not None and spec.state_provides == ("baseline",)
    state = spec.state()
    lp = batch(None)
    assert state.step(lp, {"beta": 0.1}, update=True, mean=lambda t: t) == {"baseline": 0.0}
    lp.logps = lp.logps + 2
    assert state.step(lp, {"beta": 0.1}, update=True, mean=lambda t: t)["baseline"] == pytest.approx(0.1)
    assert state.step(lp, {"beta": 0.1}, update=False, mean=lambda t: t)["baseline"] == pytest.approx(0.1)
    restored = spec.state()
    restored.load_state_dict(state.state_dict())
    assert restored.state_dict() == {"mean": pytest.approx(0.1), "count": 2}


def test_sft_unpaired_is_the_token_mean_nll_of_desirable_completions() -> None:
    """Desirable logps (−1, −3) over 2 + 6 tokens: the batch mean of the losses is (1 + 3)/8 = 0.5; the undesirable
    completion (−10) contributes 0."""
    lp = UnpairedLogps(
        logps=torch.tensor([-1.0, -10.0, -3.0]),
        lengths=torch.tensor([2, 5, 6]),
        desirable=torch.tensor([True, False, True]),
    )
    losses = get_loss("sft_unpaired")(lp).losses
    assert losses[1].item() == 0.0
    assert losses.mean().item() == pytest.approx(0.5)


def test_sft_unpaired_without_desirable_completions_is_zero() -> None:
    lp = UnpairedLogps(logps=torch.tensor([-1.0]), lengths=torch.tensor([2]), desirable=torch.tensor([False]))
    assert get_loss("sft_unpaired")(lp).losses.tolist() == [0.0]
