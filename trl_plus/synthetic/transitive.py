"""The transitive task: a hidden scalar reward, labels drawn from Bradley-Terry.

Prompt: "Packing for the {topic}. Name {n} items:" with a topic from TOPICS and n in {2, 3}. A well-formed
answer names n distinct items from ITEMS, separated by spaces (order does not matter), e.g. "kite map tent".

Hidden reward: r*(y | topic) = Σ_{item in y} W[topic, item], with W drawn i.i.d. uniform(−1.5, 1.5) from the
task seed. A malformed answer (unknown word, repeated item, wrong count) gets MALFORMED_REWARD, below any
well-formed one. Oracle: P(a ≻ b) = σ(r*(a) − r*(b)). Every preference-learning loss should lift a policy's
win rate against its base well above ½ here.
"""

from __future__ import annotations

import re

import numpy as np

from trl_plus.synthetic.base import ScalarRewardTask, Text, as_text, words

TOPICS = ("beach", "mountain", "city", "forest")
ITEMS = ("kite", "lamp", "rope", "towel", "camera", "map", "boots", "hat", "book", "tent", "radio", "snacks")
COUNTS = (2, 3)
WEIGHT_RANGE = 1.5
MALFORMED_REWARD = -WEIGHT_RANGE * max(COUNTS) - 1.0
_PROMPT = re.compile(r"Packing for the (\w+)\. Name (\d) items:")


class TransitiveTask(ScalarRewardTask):
    """Hidden per-topic item weights; the better answer packs the items the topic likes."""

    name = "transitive"
    malformed_reward = MALFORMED_REWARD

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        rng = np.random.default_rng([seed, 0])
        self.weights = rng.uniform(-WEIGHT_RANGE, WEIGHT_RANGE, size=(len(TOPICS), len(ITEMS)))

    def sample_prompt(self, rng: np.random.Generator) -> str:
        topic = TOPICS[int(rng.integers(len(TOPICS)))]
        count = COUNTS[int(rng.integers(len(COUNTS)))]
        return f"Packing for the {topic}. Name {count} items:"

    def sample_response(self, prompt: str, rng: np.random.Generator) -> str:
        _, count = self._parse_prompt(prompt)
        picks = rng.choice(len(ITEMS), size=count, replace=False)
        return " ".join(ITEMS[i] for i in picks)

    def reward(self, prompt: Text, response: Text) -> float:
        """r*(response | prompt): the sum of the topic's weights of the items named, or MALFORMED_REWARD."""
        topic, count = self._parse_prompt(as_text(prompt))
        items = words(as_text(response))
        if len(items) != count or len(set(items)) != count or any(item not in ITEMS for item in items):
            return MALFORMED_REWARD
        return float(sum(self.weights[topic, ITEMS.index(item)] for item in items))

    def best_response(self, prompt: Text) -> str:
        """The highest-reward answer, for reference."""
        topic, count = self._parse_prompt(as_text(prompt))
        best = np.argsort(self.weights[topic])[::-1][:count]
        return " ".join(ITEMS[i] for i in best)

    def _parse_prompt(self, prompt: str) -> tuple[int, int]:
        match = _PROMPT.search(prompt)
        if match is None or match.group(1) not in TOPICS:
            raise ValueError(f"Not a prompt of the transitive task: {prompt!r}.")
        return TOPICS.index(match.group(1)), int(match.group(2))

    def describe(self) -> str:
        header = "| topic | " + " | ".join(ITEMS) + " |"
        rule = "|---" * (len(ITEMS) + 1) + "|"
        rows = [
            f"| {topic} | " + " | ".join(f"{w:+.2f}" for w in self.weights[t]) + " |" for t, topic in enumerate(TOPICS)
        ]
        return "\n".join(
            [
                f"Transitive task (seed {self.seed}): r*(y) = sum of the topic's item weights; "
                f"P(a ≻ b) = σ(r*(a) − r*(b)); malformed answers score {MALFORMED_REWARD}.",
                header,
                rule,
                *rows,
            ]
        )
