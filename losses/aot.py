"""Alignment via Optimal Transport (Melnyk et al., arXiv:2406.05882), TRL's `aot` and `aot_unpaired`.

AOT asks for first-order stochastic dominance of the chosen reward distribution over the rejected one across
the batch: it sorts both sides and applies the (smoothed) logistic loss to the sorted pairs.

- `aot`: sorts the policy margins c − r and the reference margins c_ref − r_ref; δ_k = sorted(c − r)_k −
  sorted(c_ref − r_ref)_k.
- `aot_unpaired`: sorts the chosen log-ratios and the rejected log-ratios separately; δ_k = sorted(c − c_ref)_k −
  sorted(r − r_ref)_k.

loss_k = −(1 − ε)·log σ(β δ_k) − ε·log σ(−β δ_k). The k-th loss belongs to the k-th *sorted* position, not to
the k-th example: only the batch mean is meaningful (as in TRL), so these losses suit unweighted batches.
"""

from __future__ import annotations

import torch

from trl_plus.losses.dpo import log_ratios, smoothed_logistic, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("aot", paper="arXiv:2406.05882")
def aot(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    policy_margins, _ = torch.sort(lp.chosen_logps - lp.rejected_logps, dim=0)
    ref_margins, _ = torch.sort(lp.ref_chosen_logps - lp.ref_rejected_logps, dim=0)  # type: ignore[operator]
    losses = smoothed_logistic(beta * (policy_margins - ref_margins), label_smoothing)
    return with_implicit_rewards(losses, chosen, rejected, beta)


@register_loss("aot_unpaired", paper="arXiv:2406.05882")
def aot_unpaired(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    delta = torch.sort(chosen, dim=0)[0] - torch.sort(rejected, dim=0)[0]
    return with_implicit_rewards(smoothed_logistic(beta * delta, label_smoothing), chosen, rejected, beta)
