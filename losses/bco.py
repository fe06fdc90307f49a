"""Binary Classifier Optimization (Jung et al., arXiv:2404.04656): a logistic classifier on implicit rewards.

With the implicit reward r = β·(logp − logp_ref), desirable completions are class 1 and undesirable class 0.

- `bco` (unpaired, Eq. 9 with the reward shift of Sec. 3.2): −log σ(r − δ) for a desirable completion,
  −log σ(−(r − δ)) for an undesirable one. δ, the `baseline`, is the mean over training steps of each batch's mean
  reward, current batch included (as TRL's BCOTrainer kept it). The trainer holds δ (`RunningRewardMean`), fills it
  in before each call and saves it in checkpoints; called directly, the loss uses the `baseline` it is given.
  Not implemented: the paper's underlying-distribution matching (a prompt classifier that reweights examples).
- `bco_pair` (TRL's pairwise form): −log σ(β(c − c_ref)) − log σ(−β(r − r_ref)), with no baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from trl_plus.losses.dpo import log_ratios, with_implicit_rewards
from trl_plus.losses.kto import split_rewards
from trl_plus.registry import register_loss
from trl_plus.types import LogpsInput, LossOutput, PairedLogps, UnpairedLogps


@dataclass
class RunningRewardMean:
    """BCO's δ: the running mean of per-step batch-mean rewards β·(logp − logp_ref), averaged over processes."""

    provides: ClassVar[tuple[str, ...]] = ("baseline",)
    mean: float = 0.0
    count: int = 0

    def step(
        self,
        inputs: LogpsInput,
        hyperparameters: dict[str, Any],
        *,
        update: bool,
        mean: Callable[[torch.Tensor], torch.Tensor],
    ) -> dict[str, Any]:
        if update:
            assert isinstance(inputs, UnpairedLogps) and inputs.ref_logps is not None
            rewards = hyperparameters["beta"] * (inputs.logps - inputs.ref_logps).detach()
            self.count += 1
            self.mean += (float(mean(rewards.float().mean())) - self.mean) / self.count
        return {"baseline": self.mean}

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.count = float(state["mean"]), int(state["count"])


@register_loss("bco", paper="arXiv:2404.04656", state=RunningRewardMean)
def bco(lp: UnpairedLogps, *, beta: float = 0.1, baseline: float = 0.0) -> LossOutput:
    assert lp.ref_logps is not None  # the registry checks this
    rewards = beta * (lp.logps - lp.ref_logps)
    losses = torch.where(lp.desirable, -F.logsigmoid(rewards - baseline), -F.logsigmoid(baseline - rewards))
    chosen, rejected = split_rewards(rewards.detach(), lp.desirable)
    return LossOutput(losses, chosen_rewards=chosen, rejected_rewards=rejected, metrics={"baseline": baseline})


@register_loss("bco_pair", paper="arXiv:2404.04656")
def bco_pair(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    losses = -F.logsigmoid(beta * chosen) - F.logsigmoid(-beta * rejected)
    return with_implicit_rewards(losses, chosen, rejected, beta)
