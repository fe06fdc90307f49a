"""Supervised fine-tuning on the preferred completions, for combinations such as DPO + SFT (RPO, MPO) or KTO + SFT.

- `sft` (paired): per example −c_i / mean_j |y_c,j|. Averaged over the batch this is Σ c / Σ |y_c|, the token-level
  mean negative log-likelihood that TRL's DPOTrainer computes for `loss_type="sft"`, so combinations match TRL.
- `sft_unpaired`: the same over the desirable completions only, −logp_i · (B / n_D) / mean_{j∈D} |y_j| for a
  desirable completion and 0 for an undesirable one, so the batch mean is Σ_D logp / Σ_D |y| with a sign flip
  (0 for a batch without desirable completions). The unpaired trainer takes `sft` as this loss.

No reference model.
"""

from __future__ import annotations

import torch

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps, UnpairedLogps


@register_loss("sft", requires_reference=False)
def sft(lp: PairedLogps) -> LossOutput:
    return LossOutput(-lp.chosen_logps / lp.chosen_lengths.float().mean())


@register_loss("sft_unpaired", requires_reference=False)
def sft_unpaired(lp: UnpairedLogps) -> LossOutput:
    desirable = lp.desirable
    count = desirable.sum().clamp(min=1)
    mean_length = torch.where(desirable, lp.lengths, 0).sum().float().clamp(min=1) / count
    scale = lp.batch_size / count / mean_length  # makes the batch mean the token-level mean over desirable ones
    return LossOutput(torch.where(desirable, -lp.logps * scale, torch.zeros_like(lp.logps)))
