"""Contrastive Preference Optimization (Xu et al., arXiv:2401.08417, Eq. 3 + NLL): no reference model.

    loss = −log σ(β·(c − r)) + α·(−c/|y_c|)

The first term is DPO with the reference dropped; the second is the chosen completion's negative
log-likelihood per token, weighted by α. Deviation from TRL's experimental CPOTrainer: its NLL is the token
mean over the whole batch, here it is the mean per sequence (the same when lengths are equal).
"""

from __future__ import annotations

import torch.nn.functional as F

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("cpo", requires_reference=False, paper="arXiv:2401.08417")
def cpo(lp: PairedLogps, *, beta: float = 0.1, alpha: float = 1.0) -> LossOutput:
    preference = -F.logsigmoid(beta * (lp.chosen_logps - lp.rejected_logps))
    nll = -lp.chosen_logps / lp.chosen_lengths
    return LossOutput(
        preference + alpha * nll,
        beta * lp.chosen_logps,
        beta * lp.rejected_logps,
        metrics={"nll_loss": nll.detach().mean(), "preference_loss": preference.detach().mean()},
    )
