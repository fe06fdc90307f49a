"""Unpaired preference losses: one completion per example with a thumbs-up or thumbs-down label.

Let ρ = logp − logp_ref be a completion's log-ratio and z0 the reference point.

- `kto` (Ethayarajh et al., arXiv:2402.01306, Eq. 7-8): λ_D·(1 − σ(β(ρ − z0))) for a desirable completion,
  λ_U·(1 − σ(β(z0 − ρ))) for an undesirable one. z0 = max(0, mean(kl_logps − ref_kl_logps)), detached: the KL
  estimate from mismatched prompt/completion pairs of the batch. The mean is over the local batch; TRL's
  KTOTrainer also averages it across processes, which is the same on one process.
- `apo_zero_unpaired` (D'Oosterlinck et al., arXiv:2408.06266, Eq. 7, unpaired as in TRL): 1 − σ(βρ) for a
  desirable completion, σ(βρ) for an undesirable one; no reference point, no KL estimate.

λ_D, λ_U (`desirable_weight`, `undesirable_weight`) rebalance classes in both losses, as in TRL; the paper
advises keeping λ_D·n_D / (λ_U·n_U) within [1, 4/3]. Rewards are β·ρ, NaN in the slot of the other class.
"""

from __future__ import annotations

import torch

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, UnpairedLogps


def _log_ratios(lp: UnpairedLogps) -> torch.Tensor:
    assert lp.ref_logps is not None  # the registry checks this
    return lp.logps - lp.ref_logps


def split_rewards(rewards: torch.Tensor, desirable: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nan = torch.full_like(rewards, float("nan"))
    return torch.where(desirable, rewards, nan), torch.where(desirable, nan, rewards)


def reference_point(lp: UnpairedLogps) -> torch.Tensor:
    """z0 = max(0, mean KL estimate), detached: KTO's reference point (0 without mismatched pairs)."""
    if lp.kl_logps is None or lp.ref_kl_logps is None:
        return lp.logps.new_zeros(())
    return (lp.kl_logps - lp.ref_kl_logps).mean().detach().clamp(min=0)


@register_loss("kto", paper="arXiv:2402.01306")
def kto(
    lp: UnpairedLogps, *, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> LossOutput:
    ratios = _log_ratios(lp)
    z0 = reference_point(lp)
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (ratios - z0)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratios)))
    chosen, rejected = split_rewards(beta * ratios.detach(), lp.desirable)
    return LossOutput(
        torch.where(lp.desirable, desirable_losses, undesirable_losses),
        chosen_rewards=chosen,
        rejected_rewards=rejected,
        metrics={"kl": z0},
    )


@register_loss("apo_zero_unpaired", paper="arXiv:2408.06266")
def apo_zero_unpaired(
    lp: UnpairedLogps, *, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0
) -> LossOutput:
    ratios = _log_ratios(lp)
    losses = torch.where(
        lp.desirable,
        desirable_weight * (1 - torch.sigmoid(beta * ratios)),
        undesirable_weight * torch.sigmoid(beta * ratios),
    )
    chosen, rejected = split_rewards(beta * ratios.detach(), lp.desirable)
    return LossOutput(losses, chosen_rewards=chosen, rejected_rewards=rejected)
