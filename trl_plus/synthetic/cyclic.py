"""The cyclic task ("Borda trap"): a non-transitive preference no scalar reward can represent.

Prompt: "Round {k}. Make your move:" (k = 1..99; the oracle ignores it). A well-formed answer is a move word,
optionally followed by one filler word: "boulder now". The move word decides the answer's class:

    A: rock, stone, boulder      B: scissors, blade, shears     C: paper, sheet, scroll
    D: lizard, gecko, iguana     E1: sponge, foam, cork         E2: twig, straw, reed

P(row ≻ column), from DESIGN.md (answers of one class tie at ½; X = malformed):

          A     B     C     D     E1    E2    X
    A    .50   .60   .40   .55   .60   .60   .95
    B    .40   .50   .60   .55   .60   .60   .95
    C    .60   .40   .50   .55   .60   .60   .95
    D    .45   .45   .45   .50   .90   .90   .95
    E1   .40   .40   .40   .10   .50   .50   .95
    E2   .40   .40   .40   .10   .50   .50   .95
    X    .05   .05   .05   .05   .05   .05   .50

A ≻ B ≻ C ≻ A each with 0.6. Against the base policy (uniform over the six classes), D wins most often
(3.65/6 ≈ 0.608 vs 3.25/6 ≈ 0.542 for A, B, C), so counting wins — and a Bradley-Terry reward fit — ranks D
first. But the Nash equilibrium is uniform over {A, B, C}: it beats D with 0.55 and never loses on average.
"""

from __future__ import annotations

import itertools
import re
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from trl_plus.synthetic.base import SyntheticTask, Text, as_text

CLASSES = ("A", "B", "C", "D", "E1", "E2")
MALFORMED = "X"
MOVES: dict[str, tuple[str, ...]] = {
    "A": ("rock", "stone", "boulder"),
    "B": ("scissors", "blade", "shears"),
    "C": ("paper", "sheet", "scroll"),
    "D": ("lizard", "gecko", "iguana"),
    "E1": ("sponge", "foam", "cork"),
    "E2": ("twig", "straw", "reed"),
}
FILLERS = ("now", "again", "quickly", "first")
_CLASS_OF_WORD = {word: cls for cls, words in MOVES.items() for word in words}
_VALID_BEATS_MALFORMED = 0.95


def preference_matrix() -> np.ndarray:
    """P[i, j] = P(class i ≻ class j) over CLASSES + (MALFORMED,); P + Pᵀ = 1 by construction."""
    labels = (*CLASSES, MALFORMED)
    wins = {("A", "B"): 0.6, ("B", "C"): 0.6, ("C", "A"): 0.6}
    for strong in ("A", "B", "C"):
        wins[(strong, "D")] = 0.55
        for weak in ("E1", "E2"):
            wins[(strong, weak)] = 0.6
    for weak in ("E1", "E2"):
        wins[("D", weak)] = 0.9
    for cls in CLASSES:
        wins[(cls, MALFORMED)] = _VALID_BEATS_MALFORMED
    matrix = np.full((len(labels), len(labels)), 0.5)
    for (winner, loser), p in wins.items():
        i, j = labels.index(winner), labels.index(loser)
        matrix[i, j], matrix[j, i] = p, 1.0 - p
    return matrix


PREFERENCE = preference_matrix()
_INDEX = {label: i for i, label in enumerate((*CLASSES, MALFORMED))}


class ClassGameTask(SyntheticTask):
    """A task whose oracle compares answers by class with `PREFERENCE`; subclasses say which class an answer to a
    prompt falls in (MALFORMED for a broken one)."""

    @abstractmethod
    def answer_class(self, prompt: Text, response: Text) -> str:
        """One of CLASSES, or MALFORMED."""

    def is_valid(self, prompt: Text, response: Text) -> bool:
        return self.answer_class(prompt, response) != MALFORMED

    def prefer(self, prompt: Text, a: Text, b: Text) -> float:
        return float(PREFERENCE[_INDEX[self.answer_class(prompt, a)], _INDEX[self.answer_class(prompt, b)]])


class CyclicTask(ClassGameTask):
    """Rock-paper-scissors among A, B, C, a decoy D that farms wins off the weak E1, E2."""

    name = "cyclic"

    def sample_prompt(self, rng: np.random.Generator) -> str:
        return f"Round {int(rng.integers(1, 100))}. Make your move:"

    def sample_response(self, prompt: str, rng: np.random.Generator) -> str:
        words = MOVES[CLASSES[int(rng.integers(len(CLASSES)))]]
        move = words[int(rng.integers(len(words)))]
        return f"{move} {FILLERS[int(rng.integers(len(FILLERS)))]}"

    def classify(self, response: Text) -> str:
        """The class of an answer: decided by its move word; anything else is MALFORMED."""
        words = [w for w in re.split(r"[\s,.;!]+", as_text(response).strip().lower()) if w]
        if not 1 <= len(words) <= 2 or words[0] not in _CLASS_OF_WORD:
            return MALFORMED
        if len(words) == 2 and words[1] not in FILLERS:
            return MALFORMED
        return _CLASS_OF_WORD[words[0]]

    def answer_class(self, prompt: Text, response: Text) -> str:
        return self.classify(response)  # the prompt is only a round number

    def describe(self) -> str:
        labels = (*CLASSES, MALFORMED)
        lines = ["Cyclic task: P(row ≻ column) by answer class; the move word decides the class."]
        lines.append("| ≻ | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for i, label in enumerate(labels):
            lines.append(f"| {label} | " + " | ".join(f"{p:.2f}" for p in PREFERENCE[i]) + " |")
        lines.append("Classes: " + "; ".join(f"{cls}: {', '.join(words)}" for cls, words in MOVES.items()))
        return "\n".join(lines)


def borda_scores(weights: np.ndarray | None = None) -> dict[str, float]:
    """Expected win probability of each class against a mixture of classes (uniform by default)."""
    weights = np.full(len(CLASSES), 1 / len(CLASSES)) if weights is None else np.asarray(weights, dtype=float)
    block = PREFERENCE[: len(CLASSES), : len(CLASSES)]
    return {cls: float(block[i] @ weights) for i, cls in enumerate(CLASSES)}


def majority_pairs() -> list[tuple[str, str]]:
    """Class pairs (winner, loser) where the winner is preferred with probability > ½."""
    return [
        (a, b) if PREFERENCE[_INDEX[a], _INDEX[b]] > 0.5 else (b, a)
        for a, b in itertools.combinations(CLASSES, 2)
        if PREFERENCE[_INDEX[a], _INDEX[b]] != 0.5
    ]


def scalar_agreement(rewards: dict[str, float]) -> float:
    """The fraction of majority pairs a scalar reward orders the same way (a tie counts as wrong)."""
    pairs = majority_pairs()
    return sum(rewards[winner] > rewards[loser] for winner, loser in pairs) / len(pairs)


def scalar_ceiling() -> float:
    """The best `scalar_agreement` any scalar reward can reach: 13/14, since any order breaks the A≻B≻C≻A cycle.

    Computed by brute force over every strict order of the classes (any scalar reward induces one).
    """
    best = 0.0
    for order in itertools.permutations(CLASSES):
        rewards = {cls: float(-rank) for rank, cls in enumerate(order)}
        best = max(best, scalar_agreement(rewards))
    return best


def class_shares(
    completions: Sequence[Text], prompts: Sequence[Text] | None = None, task: ClassGameTask | None = None
) -> dict[str, float]:
    """The share of each class (A … E2 and X, malformed) among `completions`, answers to `prompts` (needed where the
    class depends on the prompt, as on `arena`) on `task` (default: `cyclic`)."""
    task = CyclicTask() if task is None else task
    prompts = [""] * len(completions) if prompts is None else prompts
    labels = (*CLASSES, MALFORMED)
    counts = dict.fromkeys(labels, 0)
    for prompt, completion in zip(prompts, completions, strict=True):
        counts[task.answer_class(prompt, completion)] += 1
    total = max(len(completions), 1)
    return {label: counts[label] / total for label in labels}


def class_exploitability(shares: dict[str, float]) -> float:
    """The best response's win rate against a policy with these class shares: max over well-formed classes y of
    Σ_c share(c)·P(y ≻ c). ½ at the Nash equilibrium (uniform over A, B, C); 0.55 for a policy that always plays D."""
    weights = np.array([shares.get(label, 0.0) for label in (*CLASSES, MALFORMED)])
    return float((PREFERENCE[: len(CLASSES)] @ weights).max() / max(weights.sum(), 1e-12))
