"""Nash learning without a language model: exact Nash-MD and the registered online losses on finite answer sets.

Matrices: a 3-answer cycle (each beats the next with 0.6; equilibrium uniform) and the `cyclic` task's six classes
(equilibrium uniform over A, B, C; counting wins favours the decoy D). Reference: uniform.
"""

from __future__ import annotations

import numpy as np
import pytest

from trl_plus.nash import (
    exploitability,
    geometric_mixture,
    nash_md_exact,
    regularised_equilibrium,
    rock_paper_scissors,
    train_tabular,
)
from trl_plus.synthetic.cyclic import CLASSES, PREFERENCE

CYCLIC = PREFERENCE[: len(CLASSES), : len(CLASSES)]
UNIFORM6 = np.full(6, 1 / 6)


def test_exploitability_is_half_exactly_at_the_equilibrium() -> None:
    assert exploitability(rock_paper_scissors(), np.full(3, 1 / 3)) == pytest.approx(0.5)
    assert exploitability(CYCLIC, np.array([1, 1, 1, 0, 0, 0]) / 3) == pytest.approx(0.5)
    # The Borda winner D is beaten by A, B and C with 0.55; the uniform policy by D with 3.65/6.
    assert exploitability(CYCLIC, np.eye(6)[3]) == pytest.approx(0.55)
    assert exploitability(CYCLIC, UNIFORM6) == pytest.approx(3.65 / 6)


def test_exploitability_refuses_a_matrix_that_is_not_a_preference() -> None:
    with pytest.raises(ValueError, match="P \\+ Pᵀ = 1"):
        exploitability(np.array([[0.5, 0.9], [0.9, 0.5]]), np.array([0.5, 0.5]))


def test_geometric_mixture() -> None:
    mix = geometric_mixture(np.array([0.8, 0.2]), np.array([0.2, 0.8]), 0.5)
    assert mix == pytest.approx([0.5, 0.5])
    assert geometric_mixture(np.array([0.8, 0.2]), np.array([0.2, 0.8]), 0.0) == pytest.approx([0.8, 0.2])


def test_regularised_equilibrium_solves_its_fixed_point_equation() -> None:
    for matrix, reference, beta in [
        (rock_paper_scissors(), np.full(3, 1 / 3), 0.05),
        (rock_paper_scissors(), np.array([0.6, 0.3, 0.1]), 0.05),
        (CYCLIC, UNIFORM6, 0.01),
        (CYCLIC, UNIFORM6, 0.1),
    ]:
        policy = regularised_equilibrium(matrix, reference, beta)
        fixed_point = reference * np.exp((matrix @ policy) / beta)
        assert policy == pytest.approx(fixed_point / fixed_point.sum(), abs=1e-9)
    # With a uniform reference the 3-answer cycle's is uniform; on cyclic at β = 0.01 it is 99.8 % on A, B, C.
    assert regularised_equilibrium(rock_paper_scissors(), np.full(3, 1 / 3), 0.05) == pytest.approx(np.full(3, 1 / 3))
    policy = regularised_equilibrium(CYCLIC, UNIFORM6, 0.01)
    assert policy[:3].sum() > 0.997 and 0.5 <= exploitability(CYCLIC, policy) < 0.5002


@pytest.mark.parametrize(
    ("matrix", "reference"),
    [(rock_paper_scissors(), np.array([0.6, 0.3, 0.1])), (CYCLIC, UNIFORM6)],
    ids=["three-answer-cycle", "cyclic"],
)
def test_exact_nash_md_converges_near_the_regularised_equilibrium(matrix: np.ndarray, reference: np.ndarray) -> None:
    """β = 0.03 (cyclic) / 0.05: at ηβ = 0.05 the last iterate stops moving (< 10⁻¹²) within 2,000 iterations,
    within 0.01 of π*; a step four times smaller lands about four times nearer (the O(η) bias)."""
    beta = 0.03 if matrix.shape[0] == 6 else 0.05
    target = regularised_equilibrium(matrix, reference, beta)
    gaps = []
    for step in (0.05, 0.0125):
        policy, steps = nash_md_exact(matrix, reference, beta=beta, learning_rate=step / beta, steps=10_000)
        assert steps < (2000 if step == 0.05 else 10_000)
        gaps.append(float(np.abs(policy - target).max()))
    assert gaps[0] < 0.01 and gaps[1] < gaps[0] / 3


@pytest.mark.parametrize(
    ("loss", "opponent"),
    [("nash_md", "mixture"), ("nash_md", "policy"), ("sppo_online", "policy"), ("online_ipo", "policy")],
)
def test_registered_losses_reach_the_equilibrium_by_sampling(loss: str, opponent: str) -> None:
    """3,000 Adam steps (lr 0.02) of 64 sampled answers, β = 0.03, where the regularised equilibrium's exploitability
    is 0.504: the average of the second half of the iterates gets within 0.003 of it on cyclic and within 0.002 of
    ½ on the 3-answer cycle. Self-play's last iterate circles the equilibrium; the mixture opponent's stays nearer."""
    equilibrium = exploitability(CYCLIC, regularised_equilibrium(CYCLIC, UNIFORM6, 0.03))
    assert equilibrium == pytest.approx(0.5043, abs=1e-4)
    run = train_tabular(CYCLIC, UNIFORM6, loss=loss, opponent=opponent, beta=0.03, learning_rate=0.02)
    assert exploitability(CYCLIC, run.average) < equilibrium + 0.003
    assert run.exploitability < (0.515 if opponent == "mixture" else 0.53)
    assert run.average[:3].sum() > 0.85  # the equilibrium: 0.924
    cycle = train_tabular(
        rock_paper_scissors(), np.full(3, 1 / 3), loss=loss, opponent=opponent, beta=0.03, learning_rate=0.02
    )
    assert exploitability(rock_paper_scissors(), cycle.average) < 0.502


def test_playing_against_the_reference_alone_favours_the_decoy() -> None:
    """Against the fixed reference, P(y ≻ π_ref) is a Borda score, and D has the highest: the policy drifts onto D and
    stays exploitable (≥ 0.53), as a scalar reward fit would."""
    run = train_tabular(CYCLIC, UNIFORM6, loss="nash_md", opponent="reference", beta=0.03, learning_rate=0.02)
    assert run.policy.argmax() == CLASSES.index("D")
    assert run.exploitability > 0.53


def test_train_tabular_refuses_offline_losses_and_unknown_opponents() -> None:
    with pytest.raises(ValueError, match="online samples"):
        train_tabular(CYCLIC, UNIFORM6, loss="dpo")
    with pytest.raises(ValueError, match="opponent"):
        train_tabular(CYCLIC, UNIFORM6, opponent="ema")
