"""The packing task (testbed v2, work in progress): prompts from a combinatorial space, with evaluation prompts that
no training stage sees, and a hidden reward that makes them learnable.

Prompt: "Packing for a {climate} {terrain} trip of {length}. Name {n} items:", with 4 climates × 6 terrains × 3
lengths × n in {2, 3}: 144 prompts. A well-formed answer names n distinct items from ITEMS (order does not matter).

Hidden reward: r*(y | prompt) = Σ_{item in y} (C[climate, item] + T[terrain, item] + L[length, item]), each table
drawn i.i.d. uniform(−1, 1) from the task seed and centred per item (no item is good everywhere). It is additive
over the prompt's attributes, so a policy that learned what each climate, terrain and length wants scores well on
combinations it never trained on. Malformed answers get MALFORMED_REWARD, below any well-formed one. Oracle:
P(a ≻ b) = σ(r*(a) − r*(b)), as in `transitive`.

Held-out prompts: a quarter of the (climate, terrain, length) triples, drawn from the task seed so that every
climate, terrain and length still occurs in training. `prompts(stream="eval")` draws only from them; every other
stream (SFT, preference, ranked, unpaired data, on-policy pairs, and "eval-train" for the same figures on training
prompts) only from the other triples.

Base distribution (what the SFT reference imitates): n distinct items from the terrain's eight plausible ones (a
set drawn per terrain, independent of the hidden reward), written in catalogue order. It reads the prompt but not
the preferences, and an answer in catalogue order never repeats an item, so an SFT model can learn the format.
"""

from __future__ import annotations

import itertools
import re

import numpy as np

from trl_plus.synthetic.base import HeldOutPromptsTask, ScalarRewardTask, Text, as_text, split_combinations, words

CLIMATES = ("hot", "cold", "rainy", "windy")
TERRAINS = ("beach", "mountain", "city", "forest", "desert", "lake")
LENGTHS = ("one day", "a weekend", "two weeks")
ITEMS = (
    "kite", "lamp", "rope", "towel", "camera", "map", "boots", "hat",
    "book", "tent", "radio", "snacks", "scarf", "sunscreen", "umbrella", "compass",
)  # fmt: skip
COUNTS = (2, 3)
PLAUSIBLE = 8  # items per terrain in the base distribution
HELD_OUT_SHARE = 0.25
MALFORMED_REWARD = -6.0 * max(COUNTS) - 1.0  # below any well-formed answer (a centred entry is above −2)
_PROMPT = re.compile(r"Packing for an? (\w+) (\w+) trip of ([\w ]+)\. Name (\d) items:")

Triple = tuple[int, int, int]


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


class PackingTask(HeldOutPromptsTask, ScalarRewardTask):
    """Additive hidden preferences over climate, terrain and trip length; held-out attribute combinations."""

    name = "packing"
    malformed_reward = MALFORMED_REWARD

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        rng = np.random.default_rng([seed, 10])
        # Each table centred per item, so that averaged over prompts every item is worth 0: no answer is good
        # everywhere, and a policy that ignores the prompt gains little (see `ceilings`).
        tables = [rng.uniform(-1.0, 1.0, size=(len(names), len(ITEMS))) for names in (CLIMATES, TERRAINS, LENGTHS)]
        self.climate_weights, self.terrain_weights, self.length_weights = (t - t.mean(0) for t in tables)
        # Independent of the weights (its own stream): the base distribution knows the format, not the preferences.
        plausible_rng = np.random.default_rng([seed, 11])
        self.plausible = [
            tuple(sorted(plausible_rng.choice(len(ITEMS), size=PLAUSIBLE, replace=False).tolist())) for _ in TERRAINS
        ]
        sizes = (len(CLIMATES), len(TERRAINS), len(LENGTHS))
        self.held_out, self.trained = split_combinations(sizes, HELD_OUT_SHARE, np.random.default_rng([seed, 12]))

    # -- prompts -----------------------------------------------------------------------------------------------
    def prompt_for(self, triple: Triple, rng: np.random.Generator) -> str:
        climate, terrain, length = CLIMATES[triple[0]], TERRAINS[triple[1]], LENGTHS[triple[2]]
        article = "an" if climate[0] in "aeiou" else "a"
        count = COUNTS[int(rng.integers(len(COUNTS)))]
        return f"Packing for {article} {climate} {terrain} trip of {length}. Name {count} items:"

    def parse_prompt(self, prompt: Text) -> tuple[Triple, int]:
        match = _PROMPT.search(as_text(prompt))
        if match is None or match[1] not in CLIMATES or match[2] not in TERRAINS or match[3] not in LENGTHS:
            raise ValueError(f"Not a prompt of the packing task: {as_text(prompt)!r}.")
        triple = (CLIMATES.index(match.group(1)), TERRAINS.index(match.group(2)), LENGTHS.index(match.group(3)))
        return triple, int(match.group(4))

    # -- the oracle --------------------------------------------------------------------------------------------
    def item_rewards(self, triple: Triple) -> np.ndarray:
        """r* of each item under the prompt's attributes, [len(ITEMS)]."""
        climate, terrain, length = triple
        return self.climate_weights[climate] + self.terrain_weights[terrain] + self.length_weights[length]

    def reward(self, prompt: Text, response: Text) -> float:
        triple, count = self.parse_prompt(prompt)
        items = words(as_text(response))
        if len(items) != count or len(set(items)) != count or any(item not in ITEMS for item in items):
            return MALFORMED_REWARD
        per_item = self.item_rewards(triple)
        return float(sum(per_item[ITEMS.index(item)] for item in items))

    # -- the base distribution ---------------------------------------------------------------------------------
    def sample_response(self, prompt: str, rng: np.random.Generator) -> str:
        (_, terrain, _), count = self.parse_prompt(prompt)
        picks = sorted(rng.choice(self.plausible[terrain], size=count, replace=False).tolist())
        return " ".join(ITEMS[i] for i in picks)

    def base_support(self, triple: Triple, count: int) -> list[tuple[int, ...]]:
        """The base distribution's answers to a prompt (uniform over them), as item-index tuples."""
        return list(itertools.combinations(self.plausible[triple[1]], count))

    def best_response(self, prompt: Text) -> str:
        triple, count = self.parse_prompt(prompt)
        best = np.argsort(self.item_rewards(triple))[::-1][:count]
        return " ".join(ITEMS[i] for i in sorted(best))

    # -- ceilings ----------------------------------------------------------------------------------------------
    def ceilings(self, beta: float | None = 0.1) -> dict[str, float]:
        """Oracle win rates against the base distribution, averaged over the held-out prompts (every held-out
        triple × count, equally weighted), computed exactly:

        - `best_answer`: the single best answer to each prompt;
        - `best_prompt_blind`: the best answer that ignores the prompt (one fixed answer per count);
        - `kl_optimum`: π*(y) ∝ π_base(y)·exp(r*(y)/β), the optimum of the KL-regularised objective DPO solves
          (left out when `beta` is None).

        The SFT reference only approximates the base distribution, so measured win rates against it can differ.
        """
        if beta is not None and beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}.")
        best, kl_optimum = [], []
        blind: dict[int, list[np.ndarray]] = {count: [] for count in COUNTS}
        every = {count: np.array(list(itertools.combinations(range(len(ITEMS)), count))) for count in COUNTS}
        for triple in self.held_out:
            per_item = self.item_rewards(triple)
            for count in COUNTS:
                base = per_item[np.array(self.base_support(triple, count))].sum(1)  # r* of each base answer
                top = np.sort(per_item)[::-1][:count].sum()
                best.append(float(np.mean(_sigmoid(top - base))))
                if beta is not None:
                    tilt = np.exp((base - base.max()) / beta)
                    wins = _sigmoid(base[:, None] - base[None, :])
                    kl_optimum.append(float(tilt / tilt.sum() @ wins.mean(1)))
                answers = per_item[every[count]].sum(1)
                blind[count].append(np.mean(_sigmoid(answers[:, None] - base[None, :]), axis=1))
        best_blind = [float(np.mean(np.stack(rows), axis=0).max()) for rows in blind.values()]
        found = {"best_answer": float(np.mean(best)), "best_prompt_blind": float(np.mean(best_blind))}
        return found if beta is None else {**found, "kl_optimum": float(np.mean(kl_optimum))}

    def describe(self) -> str:
        def table(title: str, names: tuple[str, ...], weights: np.ndarray) -> list[str]:
            header = f"| {title} | " + " | ".join(ITEMS) + " |"
            rule = "|---" * (len(ITEMS) + 1) + "|"
            rows = [f"| {n} | " + " | ".join(f"{w:+.2f}" for w in weights[i]) + " |" for i, n in enumerate(names)]
            return [header, rule, *rows, ""]

        held_out = ", ".join(f"{CLIMATES[c]} {TERRAINS[t]} {LENGTHS[ln]}" for c, t, ln in self.held_out)
        return "\n".join(
            [
                f"Packing task (seed {self.seed}): r*(y) = Σ over items of climate + terrain + length weights; "
                f"P(a ≻ b) = σ(r*(a) − r*(b)); malformed answers score {MALFORMED_REWARD}.",
                f"Held-out triples ({len(self.held_out)} of {len(self.held_out) + len(self.trained)}): {held_out}.",
                "",
                *table("climate", CLIMATES, self.climate_weights),
                *table("terrain", TERRAINS, self.terrain_weights),
                *table("length", LENGTHS, self.length_weights),
            ]
        )
