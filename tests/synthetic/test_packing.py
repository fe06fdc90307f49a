"""The packing task: an additive hidden reward over prompt attributes, held-out attribute combinations that no
training stream draws, a base distribution that reads the prompt, and exact ceilings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trl_plus.synthetic import get_task
from trl_plus.synthetic.packing import CLIMATES, ITEMS, LENGTHS, MALFORMED_REWARD, TERRAINS, PackingTask

TASK = PackingTask(seed=0)


def test_the_reward_adds_the_climate_terrain_and_length_weights_of_each_item() -> None:
    prompt = "Packing for a rainy desert trip of two weeks. Name 2 items:"
    c, t, ln = CLIMATES.index("rainy"), TERRAINS.index("desert"), LENGTHS.index("two weeks")
    by_hand = sum(
        TASK.climate_weights[c, ITEMS.index(item)]
        + TASK.terrain_weights[t, ITEMS.index(item)]
        + TASK.length_weights[ln, ITEMS.index(item)]
        for item in ("kite", "scarf")
    )
    assert TASK.reward(prompt, "kite scarf") == pytest.approx(by_hand)
    assert TASK.reward(prompt, "Scarf, kite.") == pytest.approx(by_hand)  # order, case, punctuation do not matter
    other = TASK.reward(prompt, "tent map")
    assert TASK.prefer(prompt, "kite scarf", "tent map") == pytest.approx(1 / (1 + math.exp(other - by_hand)))
    for bad in ("kite", "kite kite", "kite unicorn", "kite scarf map", ""):
        assert TASK.reward(prompt, bad) == MALFORMED_REWARD and not TASK.is_valid(prompt, bad)
    worst = min(TASK.reward(prompt, f"{a} {b}") for a in ITEMS for b in ITEMS if a != b)
    assert worst > MALFORMED_REWARD


def test_no_item_is_good_everywhere() -> None:
    """Each weight table is centred per item, so an item's reward averaged over all triples is 0."""
    for table in (TASK.climate_weights, TASK.terrain_weights, TASK.length_weights):
        assert np.allclose(table.mean(0), 0.0)


def test_held_out_prompts_are_never_drawn_for_training() -> None:
    held_out = set(TASK.held_out)
    assert len(held_out) == 18 and not held_out & set(TASK.trained)
    for k, names in enumerate((CLIMATES, TERRAINS, LENGTHS)):  # training sees every attribute value
        assert {t[k] for t in TASK.trained} == set(range(len(names)))
    training = [
        *TASK.sft_dataset(300)["prompt"],
        *TASK.preference_dataset(300)["prompt"],
        *TASK.ranked_dataset(100)["prompt"],
        *TASK.unpaired_dataset(100)["prompt"],
        *TASK.prompts(300, stream="eval-train"),
    ]
    assert all(TASK.parse_prompt(p)[0] not in held_out for p in training)
    evaluation = TASK.prompts(300, stream="eval")
    assert all(TASK.parse_prompt(p)[0] in held_out for p in evaluation)
    assert len({TASK.parse_prompt(p)[0] for p in evaluation}) == len(held_out)  # and draws all of them
    # Pairs on held-out prompts, for scoring a reward model there (oracle_agreement(..., stream="eval")).
    pairs = TASK.preference_dataset(50, oracle_column=True, stream="eval")
    assert pairs["prompt"] == TASK.prompts(50, stream="eval")
    for row in pairs:
        assert row["chosen_win_prob"] == pytest.approx(TASK.prefer(row["prompt"], row["chosen"], row["rejected"]))


def test_the_base_distribution_reads_the_prompt_and_never_repeats() -> None:
    rng = np.random.default_rng(0)
    for prompt in TASK.prompts(200, stream="sft"):
        (_, terrain, _), count = TASK.parse_prompt(prompt)
        answer = TASK.sample_response(prompt, rng)
        indices = [ITEMS.index(word) for word in answer.split()]
        assert TASK.is_valid(prompt, answer) and len(indices) == count
        assert indices == sorted(indices) and set(indices) <= set(TASK.plausible[terrain])
    assert len({TASK.plausible[t] for t in range(len(TERRAINS))}) > 1  # terrains differ


def test_ceilings_are_ordered_and_the_kl_optimum_tends_to_the_reference() -> None:
    """At seed 0: best answer 0.918, best prompt-blind answer 0.659, KL optimum 0.845 at β = 0.1."""
    ceilings = TASK.ceilings(0.1)
    assert ceilings == pytest.approx({"best_answer": 0.918, "best_prompt_blind": 0.659, "kl_optimum": 0.845}, abs=1e-3)
    assert TASK.ceilings(1.0)["kl_optimum"] < ceilings["kl_optimum"] < TASK.ceilings(0.01)["kl_optimum"]
    assert TASK.ceilings(1000.0)["kl_optimum"] == pytest.approx(0.5, abs=1e-3)  # π* → the reference
    assert TASK.ceilings(1e-4)["kl_optimum"] <= ceilings["best_answer"]  # the best answer may lie outside its support
    with pytest.raises(ValueError, match="beta must be positive"):
        TASK.ceilings(0.0)


def test_the_task_is_registered_and_seeded() -> None:
    assert isinstance(get_task("packing", seed=3), PackingTask)
    assert not np.array_equal(get_task("packing", seed=3).climate_weights, TASK.climate_weights)
    assert "Held-out triples (18 of 72)" in TASK.describe()
