"""EXO for pairwise preferences (Ji et al., arXiv:2402.00856, Eq. 16), TRL's `exo_pair`.

Minimises the reverse KL from the policy's implied preference p = σ(β·d) over {chosen, rejected} to the
smoothed label distribution (1 − ε, ε), d = (c − c_ref) − (r − r_ref):

    loss = σ(β d)·(log σ(β d) − log(1 − ε)) + σ(−β d)·(log σ(−β d) − log ε)

ε must be in (0, 1); the paper recommends 1e-3 (ε = 0 would put log 0 in the loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("exo_pair", aliases=("exo",), paper="arXiv:2402.00856")
def exo_pair(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 1e-3) -> LossOutput:
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(f"exo_pair: label_smoothing must be in (0, 1), got {label_smoothing}; the paper uses 1e-3.")
    chosen, rejected = log_ratios(lp)
    logits = beta * (chosen - rejected)
    win = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-label_smoothing))
    lose = torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(label_smoothing))
    return with_implicit_rewards(win + lose, chosen, rejected, beta)
