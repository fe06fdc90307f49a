"""DPO and the variants of TRL's DPOTrainer that are logistic in the margin d.

Let d = (c − c_ref) − (r − r_ref), c, r the summed log-probs of the chosen and rejected completions.

- `dpo` (Rafailov et al., arXiv:2305.18290), TRL's `sigmoid`: −(1 − ε)·log σ(β·d) − ε·log σ(−β·d). ε is
  conservative label smoothing (cDPO); ε = 0 is the paper's loss.
- `robust` (Chowdhury et al., arXiv:2403.00409): (−(1 − ε)·log σ(β·d) + ε·log σ(−β·d)) / (1 − 2ε), an unbiased
  loss under labels flipped with probability ε. The default ε = 0.1 is the paper's suggestion; TRL's default is
  0, where the loss equals `dpo`.
- `sigmoid_norm`: −log σ(β·d̄) with d̄ the per-token margin (c − c_ref)/|y_c| − (r − r_ref)/|y_r|, as TRL
  computes it (length-normalised DPO).

β sets how far the policy may move from the reference: larger β, less movement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, PairedLogps


def log_ratios(lp: PairedLogps) -> tuple[torch.Tensor, torch.Tensor]:
    """(c − c_ref, r − r_ref): how much more likely the policy makes each completion than the reference."""
    assert lp.ref_chosen_logps is not None and lp.ref_rejected_logps is not None  # the registry checks this
    return lp.chosen_logps - lp.ref_chosen_logps, lp.rejected_logps - lp.ref_rejected_logps


def with_implicit_rewards(
    losses: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor, beta: float
) -> LossOutput:
    """The losses with the implicit rewards β·log(π/π_ref) of both completions, as TRL logs them."""
    return LossOutput(losses, chosen_rewards=beta * chosen, rejected_rewards=beta * rejected)


def smoothed_logistic(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """−(1 − ε)·log σ(x) − ε·log σ(−x): the logistic loss with labels flipped at rate ε."""
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


@register_loss("dpo", aliases=("sigmoid",), paper="arXiv:2305.18290")
def dpo(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    return with_implicit_rewards(smoothed_logistic(beta * (chosen - rejected), label_smoothing), chosen, rejected, beta)


@register_loss("robust", paper="arXiv:2403.00409")
def robust(lp: PairedLogps, *, beta: float = 0.1, label_smoothing: float = 0.1) -> LossOutput:
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust: label_smoothing is a flip rate in [0, 0.5), got {label_smoothing}.")
    chosen, rejected = log_ratios(lp)
    logits = beta * (chosen - rejected)
    clean = -(1 - label_smoothing) * F.logsigmoid(logits)
    flipped = -label_smoothing * F.logsigmoid(-logits)
    return with_implicit_rewards((clean - flipped) / (1 - 2 * label_smoothing), chosen, rejected, beta)


@register_loss("sigmoid_norm", paper="arXiv:2305.18290")
def sigmoid_norm(lp: PairedLogps, *, beta: float = 0.1) -> LossOutput:
    chosen, rejected = log_ratios(lp)
    margin = chosen / lp.chosen_lengths - rejected / lp.rejected_lengths
    return with_implicit_rewards(-F.logsigmoid(beta * margin), chosen, rejected, beta)
