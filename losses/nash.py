"""Online losses of Nash learning from human feedback: one policy sample y per row, its preference P(y ≻ y′) over
an opponent's sample y′ (`OnlineLogps`), and the log-ratio h = log π(y) − log π_ref(y).

- `nash_md` (Munos et al., arXiv:2312.00886, Nash-MD-PG): the paper's gradient ∇log π(y)·[P(y ≻ y′) − ½ − β·h]
  with y′ from the geometric mixture of π and π_ref (the trainer's `opponent`). Written as the loss
  −(P − ½)·log π(y) + (β/2)·h², whose gradient is exactly that (no stop-gradient needed).
- `sppo_online` (Wu et al., arXiv:2405.00675, Eq. 4.7): (h − η(P̂ − ½))², η = 1/β, with P̂ the sample's win
  probability against the current policy (the other samples of its prompt). Its per-sample gradient is 2/β times
  Nash-MD-PG's: the two differ in the opponent, not in the update.
- `online_ipo` (Calandriello et al., arXiv:2403.08635): IPO on a pair of policy samples with a soft label,
  (h − h′ − (P(y ≻ y′) − ½)/β)², h′ the opponent's log-ratio as a constant. Over the two orderings of a pair the
  gradient is twice IPO's on the pair.

β is the KL regularisation (the papers' τ): larger β keeps the policy nearer the reference.
"""

from __future__ import annotations

import torch

from trl_plus.registry import register_loss
from trl_plus.types import LossOutput, OnlineLogps


def _log_ratio(lp: OnlineLogps) -> torch.Tensor:
    assert lp.ref_logps is not None  # the registry checks this
    return lp.logps - lp.ref_logps


def _output(losses: torch.Tensor, lp: OnlineLogps, h: torch.Tensor, beta: float) -> LossOutput:
    """Logged: the implicit reward β·h of the sample, and its preference over the opponent."""
    metrics = {"preference": lp.preferences.detach().float().mean(), "log_ratio": h.detach().float().mean()}
    return LossOutput(losses, chosen_rewards=beta * h, metrics=metrics)


def _check_beta(name: str, beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"{name}: beta is the KL regularisation and must be > 0, got {beta}.")


@register_loss("nash_md", paper="arXiv:2312.00886")
def nash_md(lp: OnlineLogps, *, beta: float = 0.1) -> LossOutput:
    _check_beta("nash_md", beta)
    h = _log_ratio(lp)
    losses = -(lp.preferences - 0.5) * lp.logps + 0.5 * beta * h**2
    return _output(losses, lp, h, beta)


@register_loss("sppo_online", paper="arXiv:2405.00675")
def sppo_online(lp: OnlineLogps, *, beta: float = 0.1) -> LossOutput:
    _check_beta("sppo_online", beta)
    h = _log_ratio(lp)
    return _output((h - (lp.preferences - 0.5) / beta) ** 2, lp, h, beta)


@register_loss("online_ipo", paper="arXiv:2403.08635")
def online_ipo(lp: OnlineLogps, *, beta: float = 0.1) -> LossOutput:
    _check_beta("online_ipo", beta)
    if lp.opponent_log_ratios is None:
        raise ValueError(
            "online_ipo compares two policy samples: it needs `opponent_log_ratios` (the trainer gives them when the "
            "opponent is the policy itself, opponent='policy')."
        )
    h = _log_ratio(lp)
    losses = (h - lp.opponent_log_ratios.detach() - (lp.preferences - 0.5) / beta) ** 2
    return _output(losses, lp, h, beta)
