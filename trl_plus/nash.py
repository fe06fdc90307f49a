"""Nash learning on a finite set of answers with an exact preference matrix: the checks that need no language model.

`matrix[i, j]` = P(answer i ≻ answer j), with P + Pᵀ = 1. A policy is a probability vector over the answers.

- `exploitability(matrix, policy)`: the best response's win rate against the policy, max_y P(y ≻ π). It is ≥ ½;
  a Nash equilibrium has exactly ½ (no answer beats it on average).
- `regularised_equilibrium(matrix, reference, beta)`: π* ∝ π_ref·exp(P(y ≻ π*)/β), the β-regularised Nash
  equilibrium that Nash-MD targets (Munos et al., arXiv:2312.00886, Theorem 1); as β → 0 it tends to a Nash
  equilibrium.
- `nash_md_exact`: the paper's tabular Nash-MD, mirror descent against the geometric mixture of the policy and the
  reference; its last iterate converges to within O(η) of π*.
- `train_tabular`: a softmax policy trained by sampling — the *registered* online losses (`nash_md`, `sppo_online`,
  `online_ipo`, …) on sampled answers, with the same opponents as `NashTrainer` — so the losses the language-model
  trainer uses are checked against the known equilibrium.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trl_plus.registry import get_loss
from trl_plus.types import OnlineLogps

OPPONENTS = ("mixture", "policy", "reference")


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"The preference matrix must be square, got shape {matrix.shape}.")
    if not np.allclose(matrix + matrix.T, 1.0, atol=1e-9):
        raise ValueError("The preference matrix must satisfy P + Pᵀ = 1 (P(i ≻ j) = 1 − P(j ≻ i)).")
    return matrix


def exploitability(matrix: np.ndarray, policy: np.ndarray) -> float:
    """max over answers y of P(y ≻ π) = Σ_y′ π(y′)·P(y ≻ y′); ½ at a Nash equilibrium."""
    return float((_check_matrix(matrix) @ np.asarray(policy, dtype=float)).max())


def geometric_mixture(policy: np.ndarray, reference: np.ndarray, mixture_coef: float) -> np.ndarray:
    """π^μ ∝ π^{1−μ}·π_ref^μ."""
    log_mix = (1 - mixture_coef) * np.log(policy) + mixture_coef * np.log(reference)
    mix = np.exp(log_mix - log_mix.max())
    return mix / mix.sum()


def _normalise(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def nash_md_exact(
    matrix: np.ndarray,
    reference: np.ndarray,
    *,
    beta: float,
    learning_rate: float,
    steps: int = 100_000,
    tolerance: float = 1e-12,
) -> tuple[np.ndarray, int]:
    """(last iterate, iterations run) of the paper's tabular Nash-MD from π_0 = π_ref, stopping when an iterate
    moves less than `tolerance` (max absolute change):

        π_t^μ ∝ π_t^{1−ηβ}·π_ref^{ηβ},   π_{t+1} ∝ π_t^μ·exp(η·P(y ≻ π_t^μ)),

    the mixture coefficient tied to the step as in the paper (μ = ηβ). Its last iterate settles within O(η) of the
    regularised equilibrium."""
    matrix = _check_matrix(matrix)
    mixture_coef = learning_rate * beta
    if not 0 < mixture_coef <= 1:
        raise ValueError(f"Nash-MD needs 0 < learning_rate·beta ≤ 1, got {mixture_coef}.")
    reference = np.asarray(reference, dtype=float)
    policy = reference.copy()
    for step in range(1, steps + 1):
        opponent = geometric_mixture(policy, reference, mixture_coef)
        new = _normalise(np.log(opponent) + learning_rate * (matrix @ opponent))
        moved = float(np.abs(new - policy).max())
        policy = new
        if moved < tolerance:
            return policy, step
    return policy, steps


def regularised_equilibrium(matrix: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """The β-regularised Nash equilibrium, π* ∝ π_ref·exp(P(y ≻ π*)/β), by damped fixed-point iteration
    (log π ← (1 − ηβ)·log π + ηβ·log π_ref + η·P(y ≻ π), ηβ = 0.02) to a residual below 10⁻¹⁰."""
    matrix = _check_matrix(matrix)
    log_reference = np.log(np.asarray(reference, dtype=float))
    step = 0.02
    policy = np.exp(log_reference)
    for _ in range(200_000):
        policy = _normalise((1 - step) * np.log(policy) + step * log_reference + (step / beta) * (matrix @ policy))
        if np.abs(policy - _normalise(log_reference + (matrix @ policy) / beta)).max() < 1e-10:
            return policy
    raise RuntimeError(f"The regularised equilibrium did not converge at beta={beta}; try a larger beta.")


@dataclass
class TabularRun:
    policy: np.ndarray  # the last iterate
    average: np.ndarray  # the average of the iterates over the second half of training
    exploitability: float  # of the last iterate


def train_tabular(
    matrix: np.ndarray,
    reference: np.ndarray,
    *,
    loss: str = "nash_md",
    opponent: str = "mixture",
    beta: float = 0.1,
    mixture_coef: float = 0.5,
    steps: int = 3000,
    batch_size: int = 64,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> TabularRun:
    """A softmax policy over the answers (initialised to π_ref) trained with a registered online loss on sampled
    answers: each step draws `batch_size` answers y ~ π and one opponent answer y′ each (from the geometric mixture,
    the policy itself, or the reference), P = matrix[y, y′], and takes an Adam step on the mean loss."""
    matrix = _check_matrix(matrix)
    if opponent not in OPPONENTS:
        raise ValueError(f"opponent must be one of {OPPONENTS}, got {opponent!r}.")
    spec = get_loss(loss)
    if spec.input_kind != "online":
        raise ValueError(f"The loss {loss!r} takes {spec.input_kind} input, not online samples.")
    generator = torch.Generator().manual_seed(seed)
    log_ref = torch.log(torch.as_tensor(reference, dtype=torch.float64))
    logits = log_ref.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=learning_rate)
    pref = torch.as_tensor(matrix, dtype=torch.float64)
    history = []
    for _ in range(steps):
        log_policy = torch.log_softmax(logits, dim=0)
        with torch.no_grad():
            if opponent == "mixture":
                log_opponent = torch.log_softmax((1 - mixture_coef) * log_policy + mixture_coef * log_ref, dim=0)
            else:
                log_opponent = log_policy if opponent == "policy" else log_ref
            answers = torch.multinomial(log_policy.exp(), batch_size, replacement=True, generator=generator)
            rivals = torch.multinomial(log_opponent.exp(), batch_size, replacement=True, generator=generator)
        inputs = OnlineLogps(
            logps=log_policy[answers],
            lengths=torch.ones(batch_size, dtype=torch.long),
            preferences=pref[answers, rivals],
            ref_logps=log_ref[answers],
            opponent_log_ratios=(log_policy - log_ref).detach()[rivals],
        )
        optimizer.zero_grad()
        spec(inputs, beta=beta).losses.mean().backward()
        optimizer.step()
        history.append(torch.softmax(logits.detach(), dim=0).numpy())
    policy = history[-1]
    average = np.mean(history[len(history) // 2 :], axis=0)
    return TabularRun(policy=policy, average=average, exploitability=exploitability(matrix, policy))


def rock_paper_scissors(p: float = 0.6) -> np.ndarray:
    """Three answers in a cycle, each beating the next with probability p: the equilibrium is uniform."""
    return np.array([[0.5, p, 1 - p], [1 - p, 0.5, p], [p, 1 - p, 0.5]])


__all__ = [
    "OPPONENTS",
    "TabularRun",
    "exploitability",
    "geometric_mixture",
    "nash_md_exact",
    "regularised_equilibrium",
    "rock_paper_scissors",
    "train_tabular",
]
