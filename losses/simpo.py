"""SimPO (Meng et al., arXiv:2405.14734, Eq. 6): −log σ(β·c/|y_c| − β·r/|y_r| − γ). No reference model.

The implicit reward is the length-normalised log-likelihood β·log π(y|x)/|y|; γ is a target margin between
chosen and rejected rewards. Defaults follow the paper's range (β = 2.0, γ = 0.5); TRL's experimental CPO
trainer writes the same loss with `simpo_gamma` = γ.
"""

from __future__ import annotations

import torch.nn.functional as F

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("simpo", requires_reference=False, paper="arXiv:2405.14734")
def simpo(lp: PairedLogps, *, beta: float = 2.0, gamma: float = 0.5) -> LossOutput:
    chosen = beta * lp.chosen_logps / lp.chosen_lengths
    rejected = beta * lp.rejected_logps / lp.rejected_lengths
    return LossOutput(-F.logsigmoid(chosen - rejected - gamma), chosen, rejected)
