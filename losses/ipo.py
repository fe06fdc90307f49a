"""IPO (Azar et al., arXiv:2310.12036, Eq. 17): (h − 1/(2β))², a squared loss that stops pushing once the
margin reaches 1/(2β), so it does not overfit deterministic preferences as DPO can.

h = (c − c_ref)/|y_c| − (r − r_ref)/|y_r|. Deviation from the paper, as in TRL: the log-ratios are averaged
per token rather than summed, so β means the same at any completion length (the IPO authors confirmed the
paper's results use this form). β is the paper's τ.
"""

from __future__ import annotations

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("ipo", paper="arXiv:2310.12036")
def ipo(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    margin = chosen / lp.chosen_lengths - rejected / lp.rejected_lengths
    return with_implicit_rewards((margin - 1 / (2 * beta)) ** 2, chosen, rejected, beta)
