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


def test_a_bradley_terry_reward_model_ranks_by_its_score_in_the_pairs_order(tiny_checkpoints: dict[str, Path]) -> None:
    """`as_preference` gives a bt model a pointwise `score`; `judge_rankings` sorts by it (one forward per answer)
    into the order the summed pairwise probabilities give, with or without a format rule. Heads whose P is not
    σ(r_a − r_b) (ensemble: the heads' mean of σ; gpm) get no score and are ranked by their pairs."""
    import torch

    from trl_plus.judges import as_preference
    from trl_plus.reward_model import RewardModel

    torch.manual_seed(0)
    task = get_task("packing", seed=0)
    prompts = task.prompts(24, seed=3, stream="eval-train")
    rng = np.random.default_rng(0)
    answers = [[task.sample_response(p, rng) for _ in range(3)] + ["rope rope", "kite"] for p in prompts]
    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt").eval()
    judge = as_preference(model)
    assert hasattr(judge, "score")

    def pairs_only(p, a, b):  # type: ignore[no-untyped-def]
        return judge(p, a, b)  # the same probabilities, without the score

    for ranker, pairwise in (
        (judge, pairs_only),
        (with_rule(judge, task.is_valid), with_rule(pairs_only, task.is_valid)),
    ):
        by_score = judge_rankings(ranker, prompts, answers)
        assert by_score == judge_rankings(pairwise, prompts, answers)
        assert len({tuple(r) for r in by_score}) > 1  # not a trivial order

    def score_only(p, a, b):  # type: ignore[no-untyped-def]
        raise AssertionError("ranked by pairs, not by the score")

    score_only.score = judge.score  # type: ignore[attr-defined]
    assert judge_rankings(score_only, prompts, answers) == judge_rankings(pairs_only, prompts, answers)
    assert judge_rankings(with_rule(score_only, task.is_valid), prompts, answers) == judge_rankings(
        with_rule(pairs_only, task.is_valid), prompts, answers
    )
    ruled = judge_rankings(with_rule(judge, task.is_valid), prompts, answers)
    assert all(not task.is_valid(p, r[-1]) and not task.is_valid(p, r[-2]) for p, r in zip(prompts, ruled, strict=True))
    for head in ("ensemble", "gpm"):
        assert not hasattr(as_preference(RewardModel.from_backbone(tiny_checkpoints["llama"], head=head)), "score")
