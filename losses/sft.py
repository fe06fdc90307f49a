"""Supervised fine-tuning on the chosen completion, for combinations such as DPO + SFT (RPO, MPO).

Per example: −c_i / mean_j |y_c,j|. Averaged over the batch this is Σ c / Σ |y_c|, the token-level mean
negative log-likelihood that TRL's DPOTrainer computes for `loss_type="sft"`, so combinations match TRL.
No reference model.
"""

from __future__ import annotations

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


@register_loss("sft", requires_reference=False)
def sft(lp: PairedLogps) -> LossOutput:
    return LossOutput(-lp.chosen_logps / lp.chosen_lengths.float().mean())
