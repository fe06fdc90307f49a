"""Self-Play Preference Optimization (Wu et al., arXiv:2405.00675, Eq. 4.7).

SPPO regresses each completion's log-ratio onto its estimated win probability P̂ against the current policy:

    loss = (c − c_ref − η(P̂_c − ½))² + (r − r_ref − η(P̂_r − ½))²,   η = 1/β

- `sppo` (soft): P̂ from the batch's `chosen_win_probs` (and `rejected_win_probs`; 1 − P̂_c when absent), e.g. a
  dataset column filled by a preference model or an oracle.
- `sppo_hard`: P̂_c = 1, P̂_r = 0, TRL's `sppo_hard`: (c − c_ref − 1/(2β))² + (r − r_ref + 1/(2β))².

η is the paper's step size; it is written as 1/β so that β plays the same role as in the other losses.
"""

from __future__ import annotations

import torch

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


def _sppo(lp: PairedLogps, chosen_p: torch.Tensor, rejected_p: torch.Tensor, beta: float) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    eta = 1 / beta
    losses = (chosen - eta * (chosen_p - 0.5)) ** 2 + (rejected - eta * (rejected_p - 0.5)) ** 2
    return with_implicit_rewards(losses, chosen, rejected, beta)


@register_loss("sppo_hard", paper="arXiv:2405.00675")
def sppo_hard(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    ones = torch.ones_like(lp.chosen_logps)
    return _sppo(lp, ones, torch.zeros_like(ones), beta)


@register_loss("sppo", paper="arXiv:2405.00675")
def sppo(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    if lp.chosen_win_probs is None:
        raise ValueError(
            "sppo needs estimated win probabilities: give the dataset a `chosen_win_prob` column (and optionally "
            "`rejected_win_prob`), or use `sppo_hard`, which takes the labels as certain."
        )
    rejected_p = lp.rejected_win_probs if lp.rejected_win_probs is not None else 1 - lp.chosen_win_probs
    return _sppo(lp, lp.chosen_win_probs, rejected_p, beta)
