"""Best-of-N keeps the sample a judge or scorer likes best; the task judge is the oracle, batched."""

from __future__ import annotations

from pathlib import Path

import pytest

from trl_plus.judges import best_of_n, task_judge
from trl_plus.synthetic import get_task, sample_completions
from trl_plus.synthetic.evaluate import load_policy


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
