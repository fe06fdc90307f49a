"""Every registered loss, parametrised from the registry: the loss contract holds for each."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from trl_plus import LossOutput, LossSpec, OnlineLogps, PairedLogps, RankedLogps, UnpairedLogps, list_losses
from trl_plus.registry import REQUIRED

SPECS = list_losses()


def make_batch(spec: LossSpec, *, reference: bool = True, seed: int = 0) -> tuple[object, list[torch.Tensor]]:
    """A random batch of the loss's input kind, with the policy log-probs as leaves that require grad."""
    generator = torch.Generator().manual_seed(seed)

    def logps(*shape: int, grad: bool = False) -> torch.Tensor:
        return (-5 * torch.rand(*shape, generator=generator, dtype=torch.float64)).requires_grad_(grad)

    if spec.input_kind == "paired":
        chosen, rejected = logps(6, grad=True), logps(6, grad=True)
        batch = PairedLogps(
            chosen_logps=chosen,
            rejected_logps=rejected,
            chosen_lengths=torch.randint(1, 9, (6,), generator=generator),
            rejected_lengths=torch.randint(1, 9, (6,), generator=generator),
            ref_chosen_logps=logps(6) if reference else None,
            ref_rejected_logps=logps(6) if reference else None,
            chosen_win_probs=torch.rand(6, generator=generator, dtype=torch.float64),
        )
        return batch, [chosen, rejected]
    if spec.input_kind == "ranked":
        policy = logps(4, 3, grad=True)
        mask = torch.tensor([[True, True, True], [True, True, False], [True, True, True], [True, True, False]])
        batch = RankedLogps(
            logps=policy,
            lengths=torch.randint(1, 9, (4, 3), generator=generator),
            mask=mask,
            ref_logps=logps(4, 3) if reference else None,
        )
        return batch, [policy]
    if spec.input_kind == "online":
        policy = logps(6, grad=True)
        batch = OnlineLogps(
            logps=policy,
            lengths=torch.randint(1, 9, (6,), generator=generator),
            preferences=torch.rand(6, generator=generator, dtype=torch.float64),
            ref_logps=logps(6) if reference else None,
            opponent_log_ratios=logps(6) - logps(6),
        )
        return batch, [policy]
    policy = logps(6, grad=True)
    batch = UnpairedLogps(
        logps=policy,
        lengths=torch.randint(1, 9, (6,), generator=generator),
        desirable=torch.tensor([True, False] * 3),
        ref_logps=logps(6) if reference else None,
        kl_logps=logps(6) if reference else None,
        ref_kl_logps=logps(6) if reference else None,
    )
    return batch, [policy]


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_loss_contract(spec: LossSpec) -> None:
    batch, leaves = make_batch(spec, reference=spec.requires_reference)
    output = spec(batch)
    assert isinstance(output, LossOutput)
    assert output.losses.shape == (batch.batch_size,) and torch.isfinite(output.losses).all()  # type: ignore[attr-defined]
    for rewards in (output.chosen_rewards, output.rejected_rewards):
        assert rewards is None or (rewards.shape == (batch.batch_size,) and not rewards.requires_grad)  # type: ignore[attr-defined]
    output.losses.mean().backward()
    assert leaves[0].grad is not None and torch.isfinite(leaves[0].grad).all() and leaves[0].grad.abs().sum() > 0


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_gradients_match_finite_differences(spec: LossSpec) -> None:
    batch, leaves = make_batch(spec, reference=spec.requires_reference, seed=1)

    def mean_loss(*values: torch.Tensor) -> torch.Tensor:
        fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch) if f.init}  # type: ignore[arg-type]
        names = ["chosen_logps", "rejected_logps"] if spec.input_kind == "paired" else ["logps"]
        fields.update(zip(names, values, strict=True))
        return spec(type(batch)(**fields)).losses.mean()

    assert torch.autograd.gradcheck(mean_loss, tuple(leaves), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_registration_is_documented(spec: LossSpec) -> None:
    assert all(hp.default is not REQUIRED for hp in spec.hyperparameters), "built-ins carry the paper's defaults"
    module = importlib.import_module(spec.target.__module__)
    assert module.__doc__ and len(module.__doc__) > 80
    if spec.paper:
        assert spec.paper.removeprefix("arXiv:") in module.__doc__


@pytest.mark.parametrize("spec", [s for s in SPECS if not s.requires_reference], ids=lambda s: s.name)
def test_reference_free_losses_ignore_the_reference(spec: LossSpec) -> None:
    with_ref, _ = make_batch(spec, reference=True, seed=2)
    without_ref, _ = make_batch(spec, reference=False, seed=2)
    assert torch.equal(spec(with_ref).losses, spec(without_ref).losses)


PREFERENCE_SPECS = [s for s in SPECS if s.input_kind in ("paired", "ranked")]


@pytest.mark.parametrize("spec", PREFERENCE_SPECS, ids=lambda s: s.name)
def test_swapping_the_preference_raises_the_loss(spec: LossSpec) -> None:
    """Labels flipped, loss up. The better completion has log-prob −2 against −12 (equal lengths, reference −7
    for both), so every log-ratio margin is 10: at β = 0.1 that puts DiscoPOP past its non-monotone region
    (see losses/discopop.py). Soft labels stay with their slot: the swap says the other completion won."""
    three = torch.ones(3, dtype=torch.float64)
    if spec.input_kind == "ranked":
        ranked = torch.tensor([[-2.0, -7.0, -12.0]] * 3, dtype=torch.float64)
        mask = torch.ones(3, 3, dtype=torch.bool)
        lengths = torch.full((3, 3), 5)
        reference = torch.full((3, 3), -7.0, dtype=torch.float64)
        right = spec(RankedLogps(ranked, lengths, mask, reference)).losses.mean()
        wrong = spec(RankedLogps(ranked.flip(-1), lengths, mask, reference)).losses.mean()
    else:

        def pair(chosen: float, rejected: float) -> PairedLogps:
            return PairedLogps(
                chosen * three, rejected * three, 5 * three, 5 * three, -7 * three, -7 * three, 0.9 * three, 0.1 * three
            )

        right, wrong = spec(pair(-2.0, -12.0)).losses.mean(), spec(pair(-12.0, -2.0)).losses.mean()
    assert wrong > right


def test_loss_files_stay_small() -> None:
    for spec in SPECS:
        source = importlib.import_module(spec.target.__module__).__file__
        assert source is not None
        with open(source) as handle:
            assert len(handle.readlines()) <= 100, f"{source}: one loss family per file, 40-100 lines"
