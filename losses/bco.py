"""Binary Classifier Optimization, pairwise form (Jung et al., arXiv:2404.04656), TRL's `bco_pair`.

A logistic classifier on implicit rewards: chosen is class 1, rejected class 0:
loss = −log σ(β(c − c_ref)) − log σ(−β(r − r_ref)). The paired form has no reward baseline δ (the unpaired
`bco`, with its running baseline, belongs to the unpaired trainer).
"""

from __future__ import annotations

import torch.nn.functional as F

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("bco_pair", paper="arXiv:2404.04656")
def bco_pair(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    losses = -F.logsigmoid(beta * chosen) - F.logsigmoid(-beta * rejected)
    return with_implicit_rewards(losses, chosen, rejected, beta)
