"""Noise Contrastive Alignment, pairwise form (Chen et al., arXiv:2402.05369), TRL's `nca_pair`.

With rewards r_c = β(c − c_ref), r_r = β(r − r_ref):  loss = −log σ(r_c) − ½·log σ(−r_c) − ½·log σ(−r_r).
Unlike DPO it optimises absolute rewards, so the chosen likelihood is not pushed down with the rejected one.
"""

from __future__ import annotations

import torch.nn.functional as F

from trl_plus.losses.dpo import log_ratios
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("nca_pair", aliases=("nca",), paper="arXiv:2402.05369")
def nca_pair(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    chosen_reward, rejected_reward = beta * chosen, beta * rejected
    losses = -F.logsigmoid(chosen_reward) - 0.5 * F.logsigmoid(-chosen_reward) - 0.5 * F.logsigmoid(-rejected_reward)
    return LossOutput(losses, chosen_reward, rejected_reward)
