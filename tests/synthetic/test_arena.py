"""The arena task: cyclic's non-transitive oracle with realm-dealt move words, held-out (realm, time) prompts that no
training stream draws, a base distribution that reads the prompt, and exact ceilings."""

from __future__ import annotations

import numpy as np
import pytest

from trl_plus.synthetic import ArenaTask, get_task
from trl_plus.synthetic.arena import CALL_WORDS, MOVE_WORDS, REALMS, TIMES
from trl_plus.synthetic.cyclic import CLASSES, MALFORMED, PREFERENCE, class_exploitability, class_shares

TASK = ArenaTask(seed=0)


def _prompt(realm: int, time: int) -> str:
    return f"Duel in the {REALMS[realm]} at {TIMES[time]}. Make your move:"


def test_the_realm_deals_the_classes_and_the_time_the_call_words() -> None:
    prompt = _prompt(0, 0)
    call = TASK.calls[0][0]
    rock, scissors, paper, decoy, weak = (TASK.words_of(0, c)[0] for c in ("A", "B", "C", "D", "E1"))
    assert TASK.prefer(prompt, f"{rock} {call}", f"{scissors} {call}") == pytest.approx(0.6)  # A ≻ B
    assert TASK.prefer(prompt, f"{scissors} {call}", f"{paper} {call}") == pytest.approx(0.6)  # B ≻ C
    assert TASK.prefer(prompt, f"{paper} {call}", f"{rock} {call}") == pytest.approx(0.6)  # C ≻ A
    assert TASK.prefer(prompt, f"{decoy} {call}", f"{weak} {call}") == pytest.approx(0.9)  # D farms E1
    assert TASK.prefer(prompt, f"{rock} {call}", f"{decoy} {call}") == pytest.approx(0.55)
    assert TASK.answer_class(prompt, f"{rock.upper()}, {call}.") == "A"  # case and punctuation do not matter
    undealt = next(word for word in MOVE_WORDS if word not in TASK.classes[0])
    wrong_call = next(word for word in CALL_WORDS if word not in TASK.calls[0])
    for bad in (rock, f"{rock} {call} {call}", f"{undealt} {call}", f"{rock} {wrong_call}", ""):
        assert TASK.answer_class(prompt, bad) == MALFORMED and not TASK.is_valid(prompt, bad)
        assert TASK.prefer(prompt, f"{weak} {call}", bad) == pytest.approx(0.95)


def test_each_realm_deals_three_words_to_each_class_and_realms_differ() -> None:
    for realm in range(len(REALMS)):
        assert all(len(TASK.words_of(realm, c)) == 3 for c in CLASSES)
    assert len({tuple(sorted(TASK.classes[r].items())) for r in range(len(REALMS))}) == len(REALMS)
    assert sorted(word for calls in TASK.calls for word in calls) == sorted(CALL_WORDS)  # two per time, disjoint


def test_held_out_prompts_are_never_drawn_for_training() -> None:
    held_out = set(TASK.held_out)
    assert len(held_out) == 9 and not held_out & set(TASK.trained)
    assert {r for r, _ in TASK.trained} == set(range(len(REALMS)))  # training sees every realm and every time
    assert {t for _, t in TASK.trained} == set(range(len(TIMES)))
    training = [
        *TASK.sft_dataset(300)["prompt"],
        *TASK.preference_dataset(300)["prompt"],
        *TASK.ranked_dataset(100)["prompt"],
        *TASK.unpaired_dataset(100)["prompt"],
        *TASK.prompts(300, stream="eval-train"),
    ]
    assert all(TASK.parse_prompt(p) not in held_out for p in training)
    evaluation = TASK.prompts(300, stream="eval")
    assert {TASK.parse_prompt(p) for p in evaluation} == held_out  # only held-out prompts, and all of them


def test_the_base_distribution_reads_the_prompt_but_not_the_preferences() -> None:
    rng = np.random.default_rng(0)
    prompts = TASK.prompts(3000, stream="sft")
    answers = [TASK.sample_response(p, rng) for p in prompts]
    assert all(TASK.is_valid(p, a) for p, a in zip(prompts, answers, strict=True))
    shares = class_shares(answers, prompts, TASK)
    assert shares[MALFORMED] == 0.0 and all(shares[c] == pytest.approx(1 / 6, abs=0.02) for c in CLASSES)
    # The same answers under another realm or time are mostly malformed: the prompt matters.
    moved = [_prompt((TASK.parse_prompt(p)[0] + 1) % len(REALMS), TASK.parse_prompt(p)[1]) for p in prompts]
    assert class_shares(answers, moved, TASK)[MALFORMED] > 0.4
    with pytest.raises(ValueError, match="Not a prompt of the arena task"):
        TASK.answer_class("Round 7. Make your move:", "rock now")


def test_ceilings_match_a_direct_computation_through_the_oracle() -> None:
    """best answer 3.65/6 (a decoy), Nash equilibrium 3.25/6; the best prompt-blind answer, recomputed here from
    `prefer` against every base answer of every held-out prompt."""
    ceilings = TASK.ceilings()
    assert ceilings["best_answer"] == pytest.approx(3.65 / 6)
    assert ceilings["nash_equilibrium"] == pytest.approx(3.25 / 6)

    def against_base(answer: str) -> float:
        rates = []
        for realm, time in TASK.held_out:
            prompt = _prompt(realm, time)
            base = [f"{word} {call}" for word in TASK.classes[realm] for call in TASK.calls[time]]
            rates.append(np.mean([TASK.prefer(prompt, answer, other) for other in base]))
        return float(np.mean(rates))

    best_blind = max(against_base(f"{word} {call}") for word in MOVE_WORDS for call in CALL_WORDS)
    assert ceilings["best_prompt_blind"] == pytest.approx(best_blind)
    assert ceilings["best_prompt_blind"] < ceilings["nash_equilibrium"]


def test_exploitability_is_measured_on_each_answers_own_prompt() -> None:
    """The Nash mix (A, B, C words of each prompt's realm) is unexploitable at ½; always the decoy gives 0.55."""
    prompts = [_prompt(r, t) for r, t in TASK.held_out]
    call = {p: TASK.calls[TASK.parse_prompt(p)[1]][0] for p in prompts}
    nash = [(p, f"{TASK.words_of(TASK.parse_prompt(p)[0], c)[0]} {call[p]}") for p in prompts for c in "ABC"]
    decoy = [(p, f"{TASK.words_of(TASK.parse_prompt(p)[0], 'D')[0]} {call[p]}") for p in prompts]
    for answers, expected in ((nash, 0.5), (decoy, PREFERENCE[0, 3])):
        shares = class_shares([a for _, a in answers], [p for p, _ in answers], TASK)
        assert class_exploitability(shares) == pytest.approx(expected)


def test_the_task_is_registered_and_seeded() -> None:
    assert isinstance(get_task("arena", seed=3), ArenaTask)
    assert get_task("arena", seed=3).classes != TASK.classes
    assert "Held-out prompts (9 of 36)" in TASK.describe()
