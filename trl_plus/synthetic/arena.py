"""The arena task (testbed v2's `cyclic`): the same non-transitive preference, with evaluation prompts that no
training stage sees and a base distribution that has to read the prompt.

Prompt: "Duel in the {realm} at {time}. Make your move:", 6 realms × 6 times = 36 prompts. A well-formed answer is
two words, one of the realm's move words and then one of the time's call words: "gecko swiftly".

Each realm deals 18 of the 36 MOVE_WORDS to cyclic's six classes, three each, drawn from the task seed: a word can
be a rock in one realm, the decoy in another, and malformed in a third. Each time allows two of the twelve
CALL_WORDS. The oracle is cyclic's matrix over the answers' classes (`cyclic.PREFERENCE`; answers of one class tie,
a malformed one is X): A ≻ B ≻ C ≻ A with 0.6, the decoy D farms wins off E1 and E2, and the Nash equilibrium of
every prompt is uniform over its realm's A, B and C words, which a Bradley-Terry reward ranks below D.

The classes depend on the realm alone and the format on realm and time, so a policy that learned each realm's
classes and each time's call words plays as well on (realm, time) pairs it never trained on.

Held-out prompts: a quarter of the (realm, time) pairs, drawn from the task seed so that every realm and every time
still occurs in training. `prompts(stream="eval")` draws only from them; every other stream only from the rest.

Base distribution (what the SFT reference imitates): uniform over the realm's 18 move words and the time's two call
words. It reads the prompt (a word or call word of the wrong realm or time is malformed) but not the preferences:
every class is equally likely.
"""

from __future__ import annotations

import re

import numpy as np

from trl_plus.synthetic.base import HeldOutPromptsTask, Text, as_text, split_combinations, words
from trl_plus.synthetic.cyclic import CLASSES, MALFORMED, PREFERENCE, ClassGameTask, borda_scores

REALMS = ("forest", "desert", "harbor", "castle", "swamp", "glacier")
TIMES = ("dawn", "noon", "dusk", "night", "spring", "winter")
MOVE_WORDS = (
    "rock", "stone", "boulder", "scissors", "blade", "shears", "paper", "sheet", "scroll",
    "lizard", "gecko", "iguana", "sponge", "foam", "cork", "twig", "straw", "reed",
    "pebble", "flint", "axe", "sword", "cloth", "leaf", "newt", "toad", "moss",
    "feather", "petal", "spear", "net", "shield", "torch", "hook", "chain", "bell",
)  # fmt: skip
CALL_WORDS = (
    "now", "again", "quickly", "first", "boldly", "softly",
    "twice", "slowly", "loudly", "calmly", "swiftly", "together",
)  # fmt: skip
WORDS_PER_CLASS = 3
HELD_OUT_SHARE = 0.25
_PROMPT = re.compile(r"Duel in the (\w+) at (\w+)\. Make your move:")

Pair = tuple[int, int]


class ArenaTask(HeldOutPromptsTask, ClassGameTask):
    """Cyclic's rock-paper-scissors with a decoy, dealt to different words in each realm; held-out prompts."""

    name = "arena"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        rng = np.random.default_rng([seed, 20])
        dealt = len(CLASSES) * WORDS_PER_CLASS
        # classes[realm][word] = the class of a move word in that realm; words it does not deal are absent.
        self.classes: list[dict[str, str]] = []
        for _ in REALMS:
            chosen = rng.choice(len(MOVE_WORDS), size=dealt, replace=False)
            self.classes.append({MOVE_WORDS[w]: CLASSES[i // WORDS_PER_CLASS] for i, w in enumerate(chosen.tolist())})
        order = rng.permutation(len(CALL_WORDS)).tolist()
        self.calls: list[tuple[str, ...]] = [
            tuple(sorted(CALL_WORDS[c] for c in order[2 * t : 2 * t + 2])) for t in range(len(TIMES))
        ]
        sizes = (len(REALMS), len(TIMES))
        held_out, trained = split_combinations(sizes, HELD_OUT_SHARE, np.random.default_rng([seed, 21]))
        self.held_out: list[Pair] = [(r, t) for r, t in held_out]
        self.trained: list[Pair] = [(r, t) for r, t in trained]

    # -- prompts -----------------------------------------------------------------------------------------------
    def prompt_for(self, pair: Pair, rng: np.random.Generator) -> str:
        return f"Duel in the {REALMS[pair[0]]} at {TIMES[pair[1]]}. Make your move:"

    def parse_prompt(self, prompt: Text) -> Pair:
        match = _PROMPT.search(as_text(prompt))
        if match is None or match[1] not in REALMS or match[2] not in TIMES:
            raise ValueError(f"Not a prompt of the arena task: {as_text(prompt)!r}.")
        return REALMS.index(match[1]), TIMES.index(match[2])

    # -- the oracle --------------------------------------------------------------------------------------------
    def answer_class(self, prompt: Text, response: Text) -> str:
        realm, time = self.parse_prompt(prompt)
        said = words(as_text(response))
        if len(said) != 2 or said[0] not in self.classes[realm] or said[1] not in self.calls[time]:
            return MALFORMED
        return self.classes[realm][said[0]]

    def words_of(self, realm: int, cls: str) -> list[str]:
        """The move words of class `cls` in `realm`."""
        return [word for word, found in self.classes[realm].items() if found == cls]

    # -- the base distribution ---------------------------------------------------------------------------------
    def sample_response(self, prompt: str, rng: np.random.Generator) -> str:
        realm, time = self.parse_prompt(prompt)
        dealt = sorted(self.classes[realm])
        calls = self.calls[time]
        return f"{dealt[int(rng.integers(len(dealt)))]} {calls[int(rng.integers(len(calls)))]}"

    # -- ceilings ----------------------------------------------------------------------------------------------
    def ceilings(self, beta: float | None = 0.1) -> dict[str, float]:
        """Oracle win rates against the base distribution on the held-out prompts, exact:

        - `best_answer`: the single best answer to each prompt, a decoy (D) word: counting wins favours it;
        - `best_prompt_blind`: the best single answer given to every prompt (malformed wherever its realm or time
          does not allow it);
        - `nash_equilibrium`: uniform over the realm's A, B and C words, the policy no answer beats on average.

        `beta` is accepted for the common signature; a non-transitive oracle has no KL-regularised reward optimum.
        """
        borda = borda_scores()  # every class against the base distribution, which is uniform over the classes
        malformed = float(PREFERENCE[-1, : len(CLASSES)].mean())
        best_blind = max(
            np.mean(
                [
                    borda[self.classes[r][word]] if word in self.classes[r] and call in self.calls[t] else malformed
                    for r, t in self.held_out
                ]
            )
            for word in MOVE_WORDS
            for call in CALL_WORDS
        )
        return {
            "best_answer": max(borda.values()),
            "best_prompt_blind": float(best_blind),
            "nash_equilibrium": float(np.mean([borda[c] for c in ("A", "B", "C")])),
        }

    def describe(self) -> str:
        lines = [
            "Arena task: cyclic's class matrix (`trl-plus task cyclic`) over answers `<move word> <call word>`; the "
            "realm deals the move words to classes, the time allows two call words.",
            "| realm | " + " | ".join(CLASSES) + " |",
            "|---" * (len(CLASSES) + 1) + "|",
        ]
        for r, realm in enumerate(REALMS):
            lines.append(f"| {realm} | " + " | ".join(", ".join(self.words_of(r, c)) for c in CLASSES) + " |")
        lines.append("Call words: " + "; ".join(f"{time}: {', '.join(self.calls[t])}" for t, time in enumerate(TIMES)))
        held_out = ", ".join(f"{REALMS[r]} at {TIMES[t]}" for r, t in self.held_out)
        total = len(self.held_out) + len(self.trained)
        lines.append(f"Held-out prompts ({len(self.held_out)} of {total}): {held_out}.")
        return "\n".join(lines)
