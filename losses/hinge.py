"""SLiC-HF's calibration loss (Zhao et al., arXiv:2305.10425), TRL's `hinge`: max(0, 1 − β·d),
d = (c − c_ref) − (r − r_ref). The margin the paper calls δ is 1/β here, as in TRL.
"""

from __future__ import annotations

import torch

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("hinge", aliases=("slic",), paper="arXiv:2305.10425")
def hinge(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    return with_implicit_rewards(torch.relu(1 - beta * (chosen - rejected)), chosen, rejected, beta)
