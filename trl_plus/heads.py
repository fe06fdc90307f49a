"""Reward-model heads: what a reward model computes on top of a backbone's pooled hidden states (DESIGN.md).

Every head maps the hidden state of a response's last token (and, where it uses one, of the prompt's last token) to
its output, and answers the same question: `prefer(a, b, prompt) → P(a ≻ b)`, with P(a ≻ b) = 1 − P(b ≻ a).

- `bt` (Bradley & Terry, 1952; TRL's RewardTrainer): scalar reward r; trained with −log σ(r_c − r_r − m) for a
  per-pair margin m, plus `center_rewards_coefficient`·(r_c + r_r)² when set (Eisenstein et al., arXiv:2312.09244).
- `pl` (Plackett, 1975; Luce, 1959): scalar reward trained on ranked lists, −Σ_k log(exp r_k / Σ_{j≥k} exp r_j),
  best first; on pairs it is `bt`.
- `gpm` (Zhang et al., arXiv:2410.02197): response embedding v ∈ R^{2k} (unit length), a skew-symmetric operator
  R(x) = blockdiag(λ_l(x)·[[0, −1], [1, 0]]) with prompt-dependent gates λ_l(x) = softplus(·) ≥ 0, and
  P(a ≻ b) = σ(⟨R v_a, v_b⟩ / τ). Skew-symmetry makes ⟨R v_a, v_a⟩ = 0 and lets it represent cycles.
- `ensemble`: K scalar heads on one backbone (independent initialisation), each trained with the `bt` loss on its
  own bootstrap resample of every batch (Poisson(1) weights per example and head, the online bootstrap) unless
  `bootstrap=False`. Reports the mean, the std and the conservative mean − `k`·std.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trl_plus.registry import register_reward_head
from trl_plus.types import LossOutput


def preference_nll(logits: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """−log P(chosen ≻ rejected) from its log-odds; with a soft `target` t = P*(chosen ≻ rejected) (e.g. the mean
    of several annotators), the cross-entropy −t·log σ(x) − (1 − t)·log σ(−x). t = 1 is the hard label."""
    if target is None:
        return -F.logsigmoid(logits)
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center_rewards_coefficient: float | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-pair −log σ(r_c − r_r − m) [+ c·(r_c + r_r)²], shape [B]; a soft `target` as in `preference_nll`."""
    difference = chosen - rejected - (0 if margin is None else margin)
    losses = preference_nll(difference, target)
    if center_rewards_coefficient is not None:
        losses = losses + center_rewards_coefficient * (chosen + rejected) ** 2
    return losses


def plackett_luce_loss(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-list −Σ_k log softmax over the completions ranked k or below, [B, K] best first → [B]; ragged lists are
    padded on the right (`mask` False), and the last present completion adds log 1 = 0."""
    masked = rewards.masked_fill(~mask, float("-inf"))
    # Reverse cumulative logsumexp: log Σ_{j≥k} exp r_j.
    tail = torch.logcumsumexp(masked.flip(-1), dim=-1).flip(-1)
    terms = (rewards - tail).masked_fill(~mask, 0.0)
    return -terms.sum(-1)


class RewardHead(nn.Module):
    """A head: `forward(response, prompt)` gives its output per response; `prefer` and `pairwise_loss` use it."""

    #: "reward" for a scalar per response ([B], or [B, K] for ensembles), "embedding" for vectors to compare.
    output: ClassVar[str] = "reward"

    def rewards(self, outputs: torch.Tensor) -> torch.Tensor:
        """One scalar reward per response from `forward`'s output (the ensemble's mean)."""
        return outputs

    @staticmethod
    def linear_reward(state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """From the head's state dict: the weight w [1, H] when the scalar reward is w·h of the pooled state, which is
        what a sequence-classification model's `score` layer computes; None when it is not (embeddings, a bias, a
        nonlinearity), and the checkpoint then keeps trl-plus's own format."""
        return None

    def prefer(self, a: torch.Tensor, b: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """P(a ≻ b) from two `forward` outputs: σ(r_a − r_b) for a scalar reward."""
        return torch.sigmoid(self.rewards(a) - self.rewards(b))

    def pairwise_loss(
        self,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        prompt: torch.Tensor | None = None,
        margin: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> LossOutput:
        """Per-pair losses for `forward` outputs of chosen and rejected; `margin` [B] is subtracted from the
        preference log-odds (as TRL's margin), `target` [B] gives soft labels P*(chosen ≻ rejected)."""
        raise NotImplementedError


@register_reward_head("bt", paper="Bradley & Terry (1952)")
class BradleyTerryHead(RewardHead):
    """A linear scalar reward without bias, as TRL's `AutoModelForSequenceClassification(num_labels=1)` head."""

    def __init__(self, hidden_size: int, *, center_rewards_coefficient: float | None = None) -> None:
        super().__init__()
        if center_rewards_coefficient is not None and center_rewards_coefficient < 0:
            raise ValueError(f"center_rewards_coefficient must be ≥ 0, got {center_rewards_coefficient}.")
        self.center_rewards_coefficient = center_rewards_coefficient
        self.score = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, response: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(response).squeeze(-1)

    @staticmethod
    def linear_reward(state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return state["score.weight"]

    def pairwise_loss(
        self,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        prompt: torch.Tensor | None = None,
        margin: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> LossOutput:
        losses = bradley_terry_loss(chosen, rejected, margin, self.center_rewards_coefficient, target)
        return LossOutput(losses, chosen.detach(), rejected.detach())


@register_reward_head("pl", input_kind="ranked", paper="Plackett (1975), Luce (1959)")
class PlackettLuceHead(BradleyTerryHead):
    """`bt`'s scalar reward, trained on ranked lists with the Plackett-Luce likelihood."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)

    def ranked_loss(self, rewards: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        last = mask.sum(-1) - 1
        worst = rewards.gather(-1, last[:, None]).squeeze(-1)
        return LossOutput(plackett_luce_loss(rewards, mask), rewards[:, 0].detach(), worst.detach())


@register_reward_head("gpm", paper="arXiv:2410.02197")
class GeneralPreferenceHead(RewardHead):
    """Embeddings v ∈ R^{2k} compared through a prompt-gated skew-symmetric operator; see the module docstring."""

    output: ClassVar[str] = "embedding"

    def __init__(self, hidden_size: int, *, embedding_dim: int = 8, tau: float = 0.1) -> None:
        super().__init__()
        if embedding_dim < 2 or embedding_dim % 2:
            raise ValueError(
                f"gpm needs an even embedding_dim ≥ 2 (2k dimensions, paired into k skew-symmetric blocks), got "
                f"{embedding_dim}."
            )
        if not tau > 0:
            raise ValueError(f"gpm's temperature tau must be > 0, got {tau}.")
        self.embedding_dim, self.tau = embedding_dim, tau
        self.embed = nn.Linear(hidden_size, embedding_dim)
        self.gates = nn.Linear(hidden_size, embedding_dim // 2)

    def forward(self, response: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.embed(response), dim=-1)

    def gate_values(self, prompt: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """λ(x) ≥ 0 per block, [B, k]; without a prompt state, the prompt-independent λ = softplus(bias)."""
        if prompt is None:
            return F.softplus(self.gates.bias).expand(like.shape[0], -1)
        return F.softplus(self.gates(prompt))

    def score(self, a: torch.Tensor, b: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """⟨R v_a, v_b⟩ = Σ_l λ_l (a_{2l} b_{2l+1} − a_{2l+1} b_{2l}): antisymmetric in (a, b)."""
        a_even, a_odd = a[..., 0::2], a[..., 1::2]
        b_even, b_odd = b[..., 0::2], b[..., 1::2]
        return (self.gate_values(prompt, a) * (a_even * b_odd - a_odd * b_even)).sum(-1)

    def prefer(self, a: torch.Tensor, b: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.score(a, b, prompt) / self.tau)

    def pairwise_loss(
        self,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        prompt: torch.Tensor | None = None,
        margin: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> LossOutput:
        logits = self.score(chosen, rejected, prompt) / self.tau
        losses = preference_nll(logits - (0 if margin is None else margin), target)
        return LossOutput(losses, metrics={"logit": logits.detach().mean()})


@register_reward_head("ensemble", paper="arXiv:2310.02743")
class EnsembleHead(RewardHead):
    """K scalar heads on one backbone: `forward` gives [B, K]; `rewards` the mean; `summary` mean/std/conservative."""

    def __init__(self, hidden_size: int, *, num_heads: int = 4, bootstrap: bool = True, k: float = 1.0) -> None:
        super().__init__()
        if num_heads < 2:
            raise ValueError(f"An ensemble needs num_heads ≥ 2, got {num_heads}.")
        self.num_heads, self.bootstrap, self.k = num_heads, bootstrap, k
        self.score = nn.Linear(hidden_size, num_heads, bias=False)  # each row initialised independently

    def forward(self, response: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(response)

    def rewards(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.mean(-1)

    @staticmethod
    def linear_reward(state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return state["score.weight"].mean(0, keepdim=True)  # the mean of K linear rewards is linear

    def summary(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        mean, std = outputs.mean(-1), outputs.std(-1)
        return {"mean": mean, "std": std, "conservative": mean - self.k * std}

    def prefer(self, a: torch.Tensor, b: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """The heads' average of σ(r_a^k − r_b^k)."""
        return torch.sigmoid(a - b).mean(-1)

    def pairwise_loss(
        self,
        chosen: torch.Tensor,
        rejected: torch.Tensor,
        prompt: torch.Tensor | None = None,
        margin: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> LossOutput:
        per_head = bradley_terry_loss(
            chosen,
            rejected,
            None if margin is None else margin[:, None],
            target=None if target is None else target[:, None],
        )
        if self.bootstrap and self.training:
            weights = torch.poisson(torch.ones_like(per_head))
            losses = (weights * per_head).sum(-1) / self.num_heads
        else:
            losses = per_head.mean(-1)
        return LossOutput(losses, self.rewards(chosen).detach(), self.rewards(rejected).detach())
