"""Proximal Policy Optimization for RLHF (Schulman et al., arXiv:1707.06347; Ouyang et al., arXiv:2203.02155).

Per-token math over a rollout of completions, all tensors [B, T] with a 0/1 `mask` of real completion tokens:

- KL-shaped reward: r_t = −β·kl_t, plus the sequence score on the last real token; kl_t is the k1 estimate
  log π − log π_ref or the k3 estimate (ρ − 1) − log ρ with ρ = π_ref/π (non-negative, lower variance);
- GAE (arXiv:1506.02438, Eq. 16): δ_t = r_t + γ·V_{t+1} − V_t, A_t = Σ_l (γλ)^l δ_{t+l}, returns R_t = A_t + V_t;
  V past the last real token is 0 (the episode has ended);
- clipped policy loss: max(−A·ρ_t, −A·clip(ρ_t, 1 ± ε)), ρ_t = π/π_old, averaged over real tokens;
- clipped value loss: ½·max((V − R)², (clip(V, V_old ± ε_v) − R)²), averaged over real tokens.

These are the defaults and conventions of TRL's last PPOTrainer (kept in `trl.experimental` up to 1.9.x). The loop
that uses them is `trl_plus.trainers.PPOTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KL_ESTIMATORS = ("k1", "k3")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """(values − mean) / std over the real tokens (unbiased variance, as TRL); shift_mean=False keeps the mean."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    variance = masked_mean((values - mean) ** 2, mask) * count / (count - 1).clamp(min=1)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    return (whitened if shift_mean else whitened + mean) * mask


def per_token_kl(
    logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """KL(π ‖ π_ref) per sampled token: k1 = log π − log π_ref, k3 = (ρ − 1) − log ρ with ρ = π_ref / π."""
    log_ratio = ref_logps - logps
    if estimator == "k1":
        kl = -log_ratio
    elif estimator == "k3":
        kl = log_ratio.exp() - 1 - log_ratio
    else:
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {estimator!r}.")
    return kl * mask


def shaped_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """r_t = −kl_coef·kl_t on every real token, plus `scores` [B] on each row's last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * (mask.sum(1) > 0)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation, zero past each row's last real token."""
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clipfrac: torch.Tensor  # share of tokens where the clipped term was the larger
    approxkl: torch.Tensor  # ½·(log π − log π_old)², TRL's approximate KL to the rollout policy
    ratio: torch.Tensor  # mean π / π_old


def policy_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, cliprange: float
) -> PolicyLoss:
    log_ratio = logps - old_logps
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    return PolicyLoss(
        loss=masked_mean(torch.max(unclipped, clipped), mask),
        clipfrac=masked_mean((clipped > unclipped).float(), mask).detach(),
        approxkl=masked_mean(0.5 * log_ratio.detach() ** 2, mask),
        ratio=masked_mean(ratio.detach(), mask),
    )


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(½·max((V − R)², (V_clip − R)²) averaged over real tokens, the share of tokens where the clipped term won)."""
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float(), mask).detach()
