"""What every synthetic task shares: an oracle `prefer(prompt, a, b)`, a base response distribution, and the
datasets built from them in TRL's formats.

A task defines three things: how to draw a prompt, how to draw a response from the base distribution (what an
SFT'd policy imitates), and the oracle probability P(a ≻ b | prompt). Everything else — SFT, pairwise, ranked
and unpaired datasets — is derived here the same way for every task, deterministically from a seed.
"""

from __future__ import annotations

import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

Message = dict[str, str]
Text = str | list[Message]

# Separate random streams per dataset kind: the SFT and preference sets for one seed should not share draws.
_STREAMS = {
    "sft": 1,
    "preference": 2,
    "ranked": 3,
    "unpaired": 4,
    "eval": 5,
    "policy-preference": 6,
    "eval-train": 7,  # evaluation on training prompts, for tasks whose "eval" prompts are held out
}


def as_text(value: Text) -> str:
    """The text of a plain string, or of the last message of a conversation (TRL's conversational format)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])
    raise TypeError(f"Expected a string or a list of {{'role', 'content'}} messages, got {value!r}.")


class SyntheticTask(ABC):
    """A task with a known preference oracle. Subclasses set `name` and implement the three abstract methods."""

    name: str = ""
    #: Whether `prompts(stream="eval")` draws from prompts that no training stream ever gives ("eval-train" then
    #: gives the same figures on training prompts); False where every prompt can occur in training.
    holds_out_prompts: bool = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def ceilings(self, beta: float | None = 0.1) -> dict[str, float]:
        """Exact oracle win rates against the base distribution of the best answer, the best prompt-blind answer
        and, with `beta`, the KL-regularised optimum; empty for tasks that do not compute them."""
        return {}

    # -- what a task defines -----------------------------------------------------------------------------------
    @abstractmethod
    def sample_prompt(self, rng: np.random.Generator) -> str:
        """One prompt."""

    @abstractmethod
    def sample_response(self, prompt: str, rng: np.random.Generator) -> str:
        """One well-formed response from the base distribution (uniform over the valid answers)."""

    @abstractmethod
    def prefer(self, prompt: Text, a: Text, b: Text) -> float:
        """The oracle probability that a human would prefer `a` to `b` as an answer to `prompt`."""

    @abstractmethod
    def is_valid(self, prompt: Text, response: Text) -> bool:
        """Whether `response` is a well-formed answer to `prompt`."""

    @abstractmethod
    def describe(self) -> str:
        """The oracle, spelled out so a reader can check any probability by hand."""

    # -- derived datasets ----------------------------------------------------------------------------------------
    def rng(self, stream: str, seed: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _STREAMS[stream], seed])

    def prompts(self, n: int, *, seed: int = 0, stream: str = "eval") -> list[str]:
        rng = self.rng(stream, seed)
        return [self.sample_prompt(rng) for _ in range(n)]

    def sft_dataset(self, n: int = 1000, *, seed: int = 0, conversational: bool = False) -> Dataset:
        """Prompt/completion pairs drawn from the base distribution, so a model learns to answer in format."""
        rng = self.rng("sft", seed)
        rows = []
        for _ in range(n):
            prompt = self.sample_prompt(rng)
            rows.append({"prompt": prompt, "completion": self.sample_response(prompt, rng)})
        return Dataset.from_list([_format(row, conversational) for row in rows])

    def preference_dataset(
        self,
        n: int = 1000,
        *,
        seed: int = 0,
        label_noise: float = 0.0,
        conversational: bool = False,
        oracle_column: bool = False,
        stream: str = "preference",
    ) -> Dataset:
        """Prompt/chosen/rejected triples: two distinct base responses, ordered by a label drawn from the oracle.

        `label_noise` flips each label with that probability after it is drawn. `oracle_column` adds
        `chosen_win_prob`, the oracle's P(chosen ≻ rejected), for losses that use soft labels. Another `stream`
        draws the prompts from `prompts(stream=...)`: "eval" puts the pairs on held-out prompts.
        """
        if not 0.0 <= label_noise <= 0.5:
            raise ValueError(f"label_noise must be in [0, 0.5], got {label_noise}.")
        rng = self.rng("preference", seed)
        given = None if stream == "preference" else self.prompts(n, seed=seed, stream=stream)
        rows = []
        for index in range(n):
            prompt = self.sample_prompt(rng) if given is None else given[index]
            a, b = self._distinct_pair(prompt, rng)
            p_a = self.prefer(prompt, a, b)
            a_wins = bool(rng.random() < p_a)
            if rng.random() < label_noise:
                a_wins = not a_wins
            chosen, rejected = (a, b) if a_wins else (b, a)
            row: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            if oracle_column:
                row["chosen_win_prob"] = p_a if a_wins else 1.0 - p_a
            rows.append(row)
        return Dataset.from_list([_format(row, conversational) for row in rows])

    def ranked_dataset(
        self, n: int = 1000, *, k: int = 4, min_k: int | None = None, seed: int = 0, conversational: bool = False
    ) -> Dataset:
        """A prompt and K distinct base responses in a column `completions`, best first.

        With `min_k < k` each list has a length drawn uniformly from [min_k, k] (ragged lists).
        """
        min_k = k if min_k is None else min_k
        if not 2 <= min_k <= k:
            raise ValueError(f"Need 2 <= min_k <= k, got min_k={min_k}, k={k}.")
        rng = self.rng("ranked", seed)
        rows = []
        for _ in range(n):
            prompt = self.sample_prompt(rng)
            size = int(rng.integers(min_k, k + 1))
            responses = self._distinct(prompt, size, rng)
            rows.append({"prompt": prompt, "completions": self.rank(prompt, responses, rng)})
        return Dataset.from_list([_format(row, conversational) for row in rows])

    def unpaired_dataset(self, n: int = 1000, *, seed: int = 0, conversational: bool = False) -> Dataset:
        """Prompt/completion/label rows (KTO's format): a thumbs-up with the probability that the completion beats
        a fresh base response, drawn as one oracle comparison against one such response."""
        rng = self.rng("unpaired", seed)
        rows = []
        for _ in range(n):
            prompt = self.sample_prompt(rng)
            completion, opponent = self._distinct_pair(prompt, rng)
            label = bool(rng.random() < self.prefer(prompt, completion, opponent))
            rows.append({"prompt": prompt, "completion": completion, "label": label})
        return Dataset.from_list([_format(row, conversational) for row in rows])

    def rank(self, prompt: str, responses: Sequence[str], rng: np.random.Generator) -> list[str]:
        """Order responses best first by a round robin of oracle comparisons (most wins first, ties at random).

        Tasks whose oracle has a scalar reward override this with an exact Plackett-Luce draw.
        """
        wins = np.zeros(len(responses))
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                if rng.random() < self.prefer(prompt, responses[i], responses[j]):
                    wins[i] += 1
                else:
                    wins[j] += 1
        order = np.lexsort((rng.random(len(responses)), -wins))
        return [responses[i] for i in order]

    def _distinct(self, prompt: str, size: int, rng: np.random.Generator, tries: int = 1000) -> list[str]:
        seen: list[str] = []
        for _ in range(tries):
            response = self.sample_response(prompt, rng)
            if response not in seen:
                seen.append(response)
                if len(seen) == size:
                    return seen
        raise RuntimeError(f"Could not draw {size} distinct responses to {prompt!r} in {tries} tries.")

    def _distinct_pair(self, prompt: str, rng: np.random.Generator) -> tuple[str, str]:
        a, b = self._distinct(prompt, 2, rng)
        return a, b

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


class ScalarRewardTask(SyntheticTask):
    """A task whose oracle is Bradley-Terry on a hidden scalar reward: P(a ≻ b) = σ(r*(a) − r*(b)), with every
    malformed answer at `malformed_reward`, below any well-formed one."""

    malformed_reward: float

    @abstractmethod
    def reward(self, prompt: Text, response: Text) -> float:
        """r*(response | prompt), or `malformed_reward`."""

    def is_valid(self, prompt: Text, response: Text) -> bool:
        return self.reward(prompt, response) != self.malformed_reward

    def prefer(self, prompt: Text, a: Text, b: Text) -> float:
        return 1.0 / (1.0 + math.exp(self.reward(prompt, b) - self.reward(prompt, a)))

    def rank(self, prompt: str, responses: Sequence[str], rng: np.random.Generator) -> list[str]:
        """An exact Plackett-Luce draw with utilities r*: sort by r* + Gumbel noise (pairs follow σ(r*_a − r*_b))."""
        keys = [self.reward(prompt, response) + rng.gumbel() for response in responses]
        return [responses[i] for i in np.argsort(keys)[::-1]]


class HeldOutPromptsTask(SyntheticTask):
    """A task whose prompts come from combinations of attributes, a share of them held out (`split_combinations`):
    `prompts(stream="eval")` draws only held-out combinations, every other stream (and `sample_prompt`, which the
    datasets use) only training ones. Subclasses set `held_out` and `trained` and write a combination's prompt."""

    holds_out_prompts = True
    held_out: list[Any]
    trained: list[Any]

    @abstractmethod
    def prompt_for(self, combination: Any, rng: np.random.Generator) -> str:
        """The prompt of one attribute combination (`rng` for any part drawn per prompt)."""

    def sample_prompt(self, rng: np.random.Generator) -> str:
        """A training prompt: the held-out combinations are only for `prompts(stream="eval")`."""
        return self.prompt_for(self.trained[int(rng.integers(len(self.trained)))], rng)

    def prompts(self, n: int, *, seed: int = 0, stream: str = "eval") -> list[str]:
        rng = self.rng(stream, seed)
        combinations = self.held_out if stream == "eval" else self.trained
        return [self.prompt_for(combinations[int(rng.integers(len(combinations)))], rng) for _ in range(n)]


def split_combinations(
    sizes: Sequence[int], share: float, rng: np.random.Generator
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(held-out, training) combinations of prompt attributes with `sizes` values each: `share` of them held out,
    drawn with `rng` so that training still sees every value of every attribute."""
    combinations = list(itertools.product(*(range(size) for size in sizes)))
    held = math.ceil(share * len(combinations))
    for _ in range(1000):
        order = rng.permutation(len(combinations))
        held_out = sorted(combinations[i] for i in order[:held])
        trained = sorted(combinations[i] for i in order[held:])
        if all(len({c[k] for c in trained}) == size for k, size in enumerate(sizes)):
            return held_out, trained
    raise RuntimeError("Could not split the combinations so that training sees every attribute value.")


def words(text: str) -> list[str]:
    """An answer's words, lower-cased, split on spaces and punctuation."""
    return [word for word in re.split(r"[\s,.;]+", text.strip().lower()) if word]


def _format(row: dict[str, Any], conversational: bool) -> dict[str, Any]:
    """Plain answers get a leading space; the conversational form wraps prompts as user turns and answers as
    assistant turns.

    Trainers tokenise prompt + answer as one string, so without the space the first word would be glued to the
    prompt's colon ("items:camera" → 'c', 'amera') and every answer would start with a fragment instead of the
    word itself.
    """
    if not conversational:
        spaced = dict(row)
        for key in ("chosen", "rejected", "completion"):
            if key in spaced:
                spaced[key] = " " + spaced[key]
        if "completions" in spaced:
            spaced["completions"] = [" " + text for text in spaced["completions"]]
        return spaced
    formatted: dict[str, Any] = {}
    for key, value in row.items():
        if key == "prompt":
            formatted[key] = [{"role": "user", "content": value}]
        elif key in ("chosen", "rejected", "completion"):
            formatted[key] = [{"role": "assistant", "content": value}]
        elif key == "completions":
            formatted[key] = [[{"role": "assistant", "content": text}] for text in value]
        else:
            formatted[key] = value
    return formatted
