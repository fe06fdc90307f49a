"""DPO with the Plackett-Luce model over K ranked completions (Rafailov et al., arXiv:2305.18290, App. A.3).

With scores s_k = β·(logp_k − logp_ref_k) and completions ranked best first,

    loss = −Σ_{k=1}^{K−1} log( exp(s_k) / Σ_{j≥k} exp(s_j) )

the likelihood of the whole ranking; for K = 2 it is DPO's loss. Ragged lists use only their present
completions (the mask). Rewards reported are those of the best and the worst present completion.
"""

from __future__ import annotations

import torch

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, RankedLogps


@register_loss("plackett_luce", aliases=("dpo_pl",), paper="arXiv:2305.18290")
def plackett_luce(lp: RankedLogps, *, beta: float = 0.1) -> LossOutput:
    assert lp.ref_logps is not None  # the registry checks this
    if bool((lp.mask.sum(dim=1) < 2).any()):
        raise ValueError("plackett_luce needs at least two completions per prompt; a row of the batch has one.")
    scores = beta * (lp.logps - lp.ref_logps)
    # Absent completions get a very negative finite score: exp() makes them vanish from every denominator
    # without the inf − inf that −inf would produce in the gradient.
    masked = scores.masked_fill(~lp.mask, torch.finfo(scores.dtype).min / 2)
    # Σ_{j≥k} exp(s_j) for every k: a log-cum-sum-exp from the right.
    tail = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    terms = (masked - tail).masked_fill(~lp.mask, 0.0)
    last = lp.mask.sum(dim=1) - 1
    rows = torch.arange(scores.shape[0], device=scores.device)
    adjacent_correct = (scores[:, :-1] > scores[:, 1:]) & lp.mask[:, 1:]
    return LossOutput(
        -terms.sum(dim=1),
        chosen_rewards=scores[:, 0],
        rejected_rewards=scores[rows, last],
        metrics={"ranking_accuracy": adjacent_correct.sum() / lp.mask[:, 1:].sum()},
    )
