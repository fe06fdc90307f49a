from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from trl_plus.synthetic import TransitiveTask, get_task
from trl_plus.synthetic.transitive import ITEMS, MALFORMED_REWARD, TOPICS


def test_oracle_on_hand_picked_answers() -> None:
    """Weights are whatever the seed drew; the oracle must be σ of the difference of their sums.

    With seed 0, beach weights: kite +0.41, map +1.24, lamp −0.69, towel −1.45 (see `describe()`), so
    r*("kite map") = 1.65, r*("lamp towel") = −2.14, and P = σ(3.79) ≈ 0.978.
    """
    task = TransitiveTask(seed=0)
    beach = TOPICS.index("beach")
    w = {item: task.weights[beach, ITEMS.index(item)] for item in ITEMS}
    prompt = "Packing for the beach. Name 2 items:"
    assert task.reward(prompt, "kite map") == pytest.approx(w["kite"] + w["map"])
    expected = 1 / (1 + math.exp(-(w["kite"] + w["map"] - w["lamp"] - w["towel"])))
    assert task.prefer(prompt, "kite map", "lamp towel") == pytest.approx(expected)
    assert expected == pytest.approx(0.978, abs=0.002)  # the docstring's numbers, from this seed
    assert task.prefer(prompt, "lamp towel", "kite map") == pytest.approx(1 - expected)
    assert task.prefer(prompt, "kite map", "map kite") == 0.5  # order does not matter
    assert task.prefer(prompt, "Kite, Map.", "kite map") == 0.5  # case and punctuation neither


@pytest.mark.parametrize("bad", ["kite", "kite map tent", "kite kite", "kite unicorn", "", "kite map!!! extra"])
def test_malformed_answers_lose_to_any_well_formed_one(bad: str) -> None:
    task = TransitiveTask(seed=0)
    prompt = "Packing for the city. Name 2 items:"
    assert task.reward(prompt, bad) == MALFORMED_REWARD and not task.is_valid(prompt, bad)
    worst = min(
        (task.reward(prompt, f"{a} {b}") for a in ITEMS for b in ITEMS if a != b),
    )
    assert worst > MALFORMED_REWARD
    assert task.prefer(prompt, bad, task.best_response(prompt)) < 0.01


def test_prompts_of_other_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="Not a prompt of the transitive task"):
        TransitiveTask().reward("Round 3. Make your move:", "kite map")


def test_conversational_inputs_score_like_plain_text() -> None:
    task = TransitiveTask(seed=0)
    prompt = "Packing for the forest. Name 3 items:"
    plain = task.prefer(prompt, "rope tent lamp", "hat book map")
    chat = task.prefer(
        [{"role": "user", "content": prompt}],
        [{"role": "assistant", "content": "rope tent lamp"}],
        [{"role": "assistant", "content": "hat book map"}],
    )
    assert plain == chat and plain > 0.95


def test_datasets_are_deterministic_for_a_seed_and_differ_across_seeds() -> None:
    task = get_task("transitive", seed=0)
    assert task.preference_dataset(50, seed=1).to_list() == task.preference_dataset(50, seed=1).to_list()
    assert task.preference_dataset(50, seed=1).to_list() != task.preference_dataset(50, seed=2).to_list()
    assert task.sft_dataset(20, seed=1).to_list() == TransitiveTask(seed=0).sft_dataset(20, seed=1).to_list()
    assert not np.array_equal(TransitiveTask(seed=0).weights, TransitiveTask(seed=1).weights)


def test_preference_labels_follow_the_oracle() -> None:
    """Labels drawn from P make the oracle's favourite the chosen one with probability max(P, 1 − P); over many
    draws the empirical rate must match the mean of that (calibration)."""
    task = TransitiveTask(seed=0)
    data = task.preference_dataset(4000, seed=0, oracle_column=True)
    p_chosen = np.array(data["chosen_win_prob"])
    # If labels are drawn from P, then E[1{chosen is the oracle favourite}] = E[max(P, 1−P)].
    agrees = (p_chosen > 0.5).mean()
    expected = np.mean([max(p, 1 - p) for p in p_chosen])
    assert abs(agrees - expected) < 0.03
    assert all(row["chosen"] != row["rejected"] for row in data)
    assert all(task.is_valid(row["prompt"], row["chosen"]) for row in data)


def test_label_noise_flips_labels() -> None:
    task = TransitiveTask(seed=0)
    clean = np.array(task.preference_dataset(3000, seed=0, oracle_column=True)["chosen_win_prob"])
    noisy = np.array(task.preference_dataset(3000, seed=0, oracle_column=True, label_noise=0.3)["chosen_win_prob"])
    # Noise moves chosen toward the worse side: the mean win probability of chosen drops.
    assert noisy.mean() < clean.mean() - 0.05
    with pytest.raises(ValueError, match="label_noise must be in"):
        task.preference_dataset(5, label_noise=0.7)


def test_ranked_lists_are_best_first_and_ragged() -> None:
    task = TransitiveTask(seed=0)
    data = task.ranked_dataset(1500, k=4, min_k=2, seed=0)
    sizes = Counter(len(row["completions"]) for row in data)
    assert set(sizes) == {2, 3, 4}
    # Plackett-Luce with Gumbel noise: the top answer has the higher hidden reward far more often than not.
    top_beats_bottom = [
        task.reward(row["prompt"], row["completions"][0]) > task.reward(row["prompt"], row["completions"][-1])
        for row in data
    ]
    assert np.mean(top_beats_bottom) > 0.7
    with pytest.raises(ValueError, match="Need 2 <= min_k <= k"):
        task.ranked_dataset(3, k=3, min_k=1)


def test_unpaired_labels_match_win_probability_against_the_base() -> None:
    task = TransitiveTask(seed=0)
    data = task.unpaired_dataset(3000, seed=0)
    labels = np.array(data["label"])
    assert 0.35 < labels.mean() < 0.65  # a thumbs-up about half the time against a random opponent
    rewards = np.array([task.reward(row["prompt"], row["completion"]) for row in data])
    assert rewards[labels].mean() > rewards[~labels].mean() + 0.5


def test_conversational_format() -> None:
    row = TransitiveTask().preference_dataset(1, conversational=True)[0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    ranked = TransitiveTask().ranked_dataset(1, k=3, conversational=True)[0]
    assert [c[0]["role"] for c in ranked["completions"]] == ["assistant"] * 3
