"""Direct Preference Optimization (Rafailov et al., arXiv:2305.18290), TRL's `loss_type="sigmoid"`.

    loss = −(1 − ε)·log σ(β·d) − ε·log σ(−β·d),   d = (c − c_ref) − (r − r_ref)

where c, r are the summed log-probs of the chosen and rejected completions. β sets how far the policy may move
from the reference (larger β, less movement); ε is conservative label smoothing (cDPO), the assumed probability
that a preference label is flipped; ε = 0 gives the paper's loss.
"""

from __future__ import annotations

import torch.nn.functional as F

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("dpo", aliases=("sigmoid",), paper="arXiv:2305.18290")
def dpo(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    assert lp.ref_chosen_logps is not None and lp.ref_rejected_logps is not None  # enforced by the registry
    chosen_ratio = lp.chosen_logps - lp.ref_chosen_logps
    rejected_ratio = lp.rejected_logps - lp.ref_rejected_logps
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return LossOutput(losses, chosen_rewards=beta * chosen_ratio, rejected_rewards=beta * rejected_ratio)
