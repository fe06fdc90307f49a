from __future__ import annotations

import numpy as np
import pytest
import torch

from trl_plus.synthetic import CyclicTask
from trl_plus.synthetic.cyclic import (
    CLASSES,
    PREFERENCE,
    borda_scores,
    majority_pairs,
    scalar_agreement,
    scalar_ceiling,
)

PROMPT = "Round 7. Make your move:"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("rock now", "shears again", 0.6),  # A ≻ B
        ("blade", "scroll first", 0.6),  # B ≻ C
        ("paper quickly", "boulder", 0.6),  # C ≻ A
        ("gecko now", "stone", 0.45),  # D loses to A
        ("iguana", "cork first", 0.9),  # D ≻ E1
        ("sheet", "reed", 0.6),  # C ≻ E2
        ("foam", "straw now", 0.5),  # E1 vs E2 tie
        ("rock", "stone again", 0.5),  # same class
        ("rock", "rock banana", 0.95),  # unknown filler makes the answer malformed
        ("hello there", "twig", 0.05),
    ],
)
def test_oracle_matches_the_documented_matrix(a: str, b: str, expected: float) -> None:
    task = CyclicTask()
    assert task.prefer(PROMPT, a, b) == pytest.approx(expected)
    assert task.prefer(PROMPT, b, a) == pytest.approx(1 - expected)


def test_matrix_is_a_preference_matrix() -> None:
    assert np.allclose(PREFERENCE + PREFERENCE.T, 1.0)
    assert np.allclose(np.diag(PREFERENCE), 0.5)


def test_cycle_is_non_transitive() -> None:
    task = CyclicTask()
    a, b, c = "rock", "scissors", "paper"
    assert task.prefer(PROMPT, a, b) > 0.5 and task.prefer(PROMPT, b, c) > 0.5 and task.prefer(PROMPT, c, a) > 0.5


def test_borda_trap() -> None:
    """Against the uniform base, D wins 3.65/6 and A, B, C win 3.25/6: counting wins ranks D first,
    but the uniform mix over {A, B, C} beats D with 0.55 and is never beaten on average (a Nash equilibrium)."""
    scores = borda_scores()
    assert max(scores, key=scores.__getitem__) == "D"
    assert scores["D"] == pytest.approx(3.65 / 6) and scores["A"] == pytest.approx(3.25 / 6)
    nash = np.array([1 / 3, 1 / 3, 1 / 3, 0, 0, 0])
    block = PREFERENCE[:6, :6]
    against_each_class = nash @ block  # P(nash ≻ class j)
    assert against_each_class[CLASSES.index("D")] == pytest.approx(0.55)
    assert (against_each_class >= 0.5 - 1e-12).all()


def test_scalar_ceiling_is_13_of_14() -> None:
    assert len(majority_pairs()) == 14
    assert scalar_ceiling() == pytest.approx(13 / 14)
    assert scalar_agreement({"A": 5, "B": 4, "C": 3, "D": 2, "E1": 1, "E2": 0}) == pytest.approx(13 / 14)


def test_a_fitted_bradley_terry_reward_cannot_pass_the_ceiling_and_falls_into_the_trap() -> None:
    """Fit one scalar per class by maximum likelihood on oracle-labelled pairs; it orders at most 13 of the 14
    majority pairs right, puts D on top, and its likelihood stays below the true matrix's."""
    task = CyclicTask(seed=0)
    data = task.preference_dataset(6000, seed=0)
    index = {cls: i for i, cls in enumerate(CLASSES)}
    chosen = torch.tensor([index[task.classify(c)] for c in data["chosen"]])
    rejected = torch.tensor([index[task.classify(r)] for r in data["rejected"]])
    rewards = torch.zeros(len(CLASSES), requires_grad=True)
    optimizer = torch.optim.LBFGS([rewards], max_iter=200)

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -torch.nn.functional.logsigmoid(rewards[chosen] - rewards[rejected]).mean()
        loss.backward()
        return loss

    optimizer.step(nll)
    fitted = {cls: rewards[i].item() for cls, i in index.items()}
    assert scalar_agreement(fitted) <= scalar_ceiling() < 1.0
    assert max(fitted, key=fitted.__getitem__) == "D"
    true_p = torch.tensor(PREFERENCE)[chosen, rejected]
    true_nll = -torch.log(true_p).mean().item()
    assert nll().item() > true_nll + 0.005  # no scalar can match the cyclic matrix's fit


def test_deterministic_and_well_formed() -> None:
    task = CyclicTask(seed=0)
    first, second = task.preference_dataset(100, seed=4), task.preference_dataset(100, seed=4)
    assert first.to_list() == second.to_list()
    assert all(task.is_valid(row["prompt"], row["chosen"]) for row in first)
    classes = {task.classify(row["completion"]) for row in task.sft_dataset(300, seed=0)}
    assert classes == set(CLASSES)  # the base policy covers every class


def test_ranking_by_round_robin_puts_stronger_classes_first() -> None:
    task = CyclicTask(seed=0)
    data = task.ranked_dataset(2000, k=3, seed=0)
    last = [task.classify(row["completions"][-1]) for row in data]
    first = [task.classify(row["completions"][0]) for row in data]
    assert np.mean([c in ("E1", "E2") for c in last]) > np.mean([c in ("E1", "E2") for c in first]) + 0.15
