"""Anchored Preference Optimization (D'Oosterlinck et al., arXiv:2408.06266), TRL's `apo_zero`/`apo_down`.

With log-ratios x_c = c − c_ref and x_r = r − r_ref:

- `apo_zero` (Eq. 7), when the chosen answers are better than the model's own: raise chosen, lower rejected.
  loss = (1 − σ(β x_c)) + σ(β x_r)
- `apo_down` (Eq. 8), when the chosen answers are worse than the model's own: lower both, rejected more.
  loss = σ(β x_c) + (1 − σ(β (x_c − x_r)))
"""

from __future__ import annotations

import torch

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("apo_zero", paper="arXiv:2408.06266")
def apo_zero(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    losses = (1 - torch.sigmoid(beta * chosen)) + torch.sigmoid(beta * rejected)
    return with_implicit_rewards(losses, chosen, rejected, beta)


@register_loss("apo_down", paper="arXiv:2408.06266")
def apo_down(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    losses = torch.sigmoid(beta * chosen) + (1 - torch.sigmoid(beta * (chosen - rejected)))
    return with_implicit_rewards(losses, chosen, rejected, beta)
