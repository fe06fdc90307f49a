"""Best-of-N keeps the sample a judge or scorer likes best; the task judge is the oracle, batched."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trl_plus.judges import best_of_n, task_judge, with_rule
from trl_plus.synthetic import get_task, sample_completions
from trl_plus.synthetic.evaluate import judge_rankings, load_policy


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return get_task("packing", seed=0).prompts(6, seed=0)


def test_best_of_n_picks_the_judges_and_the_scorers_favourite(tiny_checkpoints: dict[str, Path], prompts) -> None:  # type: ignore[no-untyped-def]
    policy = tiny_checkpoints["llama"]
    model, tokenizer = load_policy(policy)
    samples = [sample_completions(model, tokenizer, prompts, seed=1000 * j) for j in range(3)]  # what best_of_n draws

    def shorter(p, a, b):  # type: ignore[no-untyped-def]
        return [1.0 if len(x) < len(y) else 0.0 if len(x) > len(y) else 0.5 for x, y in zip(a, b, strict=True)]

    by_judge = best_of_n(policy, prompts, shorter, n=3)
    by_score = best_of_n(policy, prompts, score=lambda p, c: [-len(x) for x in c], n=3)
    for i, (judged, scored) in enumerate(zip(by_judge, by_score, strict=True)):
        candidates = [column[i] for column in samples]
        assert judged in candidates and len(judged) == min(map(len, candidates))
        assert scored == min(candidates, key=len)  # the first of the shortest


def test_task_judge_is_the_oracle_and_bad_calls_are_refused(tiny_checkpoints: dict[str, Path], prompts) -> None:  # type: ignore[no-untyped-def]
    task = get_task("packing", seed=0)
    judge = task_judge(task)
    best = [task.best_response(p) for p in prompts]
    assert judge(prompts, best, ["rope rope"] * len(prompts)) == [
        task.prefer(p, b, "rope rope") for p, b in zip(prompts, best, strict=True)
    ]
    with pytest.raises(ValueError, match="exactly one"):
        best_of_n(tiny_checkpoints["llama"], prompts, judge, score=lambda p, c: [0.0] * len(c))
    with pytest.raises(ValueError, match="n must be"):
        best_of_n(tiny_checkpoints["llama"], prompts, judge, n=0)


def test_a_rule_overrules_the_judge_only_where_one_answer_breaks_it(prompts) -> None:  # type: ignore[no-untyped-def]
    task = get_task("packing", seed=0)
    best = [task.best_response(p) for p in prompts]
    ruled = with_rule(lambda p, a, b: [0.3] * len(p), task.is_valid)
    assert ruled(prompts, best, ["rope rope"] * len(prompts)) == [1.0] * len(prompts)  # only the first keeps it
    assert ruled(prompts, ["rope rope"] * len(prompts), best) == [0.0] * len(prompts)
    assert ruled(prompts, best, best) == [0.3] * len(prompts)  # both keep it: the judge decides
    assert ruled(prompts, ["rope rope"] * len(prompts), ["x"] * len(prompts)) == [0.3] * len(prompts)  # both break it


def test_drawn_rankings_follow_the_judges_probabilities() -> None:
    """Sorted rankings put the judge's favourite first every time; drawn ones (Plackett-Luce on the log-odds)
    put it first as often as a Bradley-Terry judge says: for rewards (1, 0, 0), e / (e + 2) of the time."""
    rewards = {"a": 1.0, "b": 0.0, "c": 0.0}

    def bradley_terry(prompts, a, b):  # type: ignore[no-untyped-def]
        return [1.0 / (1.0 + math.exp(rewards[y] - rewards[x])) for x, y in zip(a, b, strict=True)]

    answers = [["b", "a", "c"]] * 4000
    prompts = ["p"] * len(answers)
    assert {tuple(r) for r in judge_rankings(bradley_terry, prompts, answers)} == {("a", "b", "c")}
    drawn = judge_rankings(bradley_terry, prompts, answers, rng=np.random.default_rng(0))
    first = sum(ranking[0] == "a" for ranking in drawn) / len(drawn)
    assert first == pytest.approx(math.e / (math.e + 2), abs=0.025)
    assert all(sorted(ranking) == ["a", "b", "c"] for ranking in drawn)
