"""Odds Ratio Preference Optimization (Hong et al., arXiv:2403.07691, Eqs. 4–7): no reference model.

    loss = −c̄ − β·log σ(log odds(c̄) − log odds(r̄)),   odds(p̄) = exp(p̄)/(1 − exp(p̄))

where c̄ = c/|y_c| and r̄ = r/|y_r| are mean token log-probs. β is the paper's λ (TRL's ORPOConfig also calls it
beta). Deviation from TRL's experimental ORPOTrainer: its NLL covers prompt and completion tokens, as a token
mean over the batch; here it is the completion's mean per sequence, as in the paper's Eq. 2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x < 0, switching forms at −log 2 to avoid cancellation."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


@register_loss("orpo", requires_reference=False, paper="arXiv:2403.07691")
def orpo(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    # log1mexp cancels badly in half precision: compute in at least float32 (and never below the input's).
    dtype = torch.promote_types(lp.chosen_logps.dtype, torch.float32)
    chosen = lp.chosen_logps.to(dtype) / lp.chosen_lengths
    rejected = lp.rejected_logps.to(dtype) / lp.rejected_lengths
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    ratio = F.logsigmoid(log_odds)
    return LossOutput(
        (-chosen - beta * ratio).to(lp.chosen_logps.dtype),
        beta * chosen,
        beta * rejected,
        metrics={"log_odds_ratio": ratio.detach().mean(), "log_odds_chosen": log_odds.detach().mean()},
    )
