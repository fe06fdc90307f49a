"""DiscoPOP, the log-ratio modulated loss (Chris Lu et al., arXiv:2406.08414, Eq. 5), TRL's `discopop`.

With ρ = β·d, d = (c − c_ref) − (r − r_ref), it blends the logistic and exponential losses by a gate on ρ:

    loss = (1 − σ(ρ/τ))·(−log σ(ρ)) + σ(ρ/τ)·exp(−ρ)

τ is the gate's temperature; the paper recommends 0.05 (TRL's `discopop_tau`).

The loss is not monotone in ρ: at τ = 0.05 it has a local maximum near ρ ≈ 0.07 and a local minimum near
ρ ≈ −0.12, so training from policy = reference first pushes the margin slightly negative (the paper notes the
non-convexity; tests/trainers/test_training.py records it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("discopop", paper="arXiv:2406.08414")
def discopop(lp: PairedLogps, *, beta: float = 0.1, tau: float = 0.05) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    logits = beta * (chosen - rejected)
    gate = torch.sigmoid(logits / tau)
    losses = (1 - gate) * -F.logsigmoid(logits) + gate * torch.exp(-logits)
    return with_implicit_rewards(losses, chosen, rejected, beta)
