"""LLM-as-judge on tiny local checkpoints: position-bias averaging, choice read-out, principles, cost, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trl_plus.judges import as_preference, best_of_n
from trl_plus.llm_judge import LLMJudge, judge_dataset, pairwise_text
from trl_plus.synthetic import get_task

TASK = get_task("transitive")
PROMPTS = TASK.prompts(6, stream="eval")
A = [" kite map", " tent rope", " hat", " lamp book", " radio", " boots snacks"]
B = [" rope", " kite", " map lamp hat", " tent", " book hat", " kite kite"]


@pytest.fixture(scope="module")
def judge(tiny_checkpoints: dict[str, Path]) -> LLMJudge:
    return LLMJudge(str(tiny_checkpoints["llama"]), batch_size=5)


def test_swapping_the_answers_flips_the_preference_exactly(judge: LLMJudge) -> None:
    forward, backward = judge.prefer(PROMPTS, A, B), judge.prefer(PROMPTS, B, A)
    assert torch.allclose(forward + backward, torch.ones(6), atol=1e-6)
    assert bool(((forward > 0) & (forward < 1)).all()) and not torch.allclose(forward, torch.full((6,), 0.5))
    assert torch.allclose(judge.prefer(PROMPTS, A, A), torch.full((6,), 0.5), atol=1e-6)


def test_the_preference_is_the_average_of_both_orders(judge: LLMJudge) -> None:
    """P(a ≻ b) = ½·[P("A" | a shown first) + P("B" | a shown second)], read from full-sequence log-probs."""
    from trl_plus.trainers._compat import common_prefix_length

    model, tokenizer = judge.model, judge.tokenizer

    def choice_logp(context: str, choice: str) -> float:
        context_ids = tokenizer(context)["input_ids"]
        ids = tokenizer(context + choice)["input_ids"]
        start = common_prefix_length(context_ids, ids)
        with torch.no_grad():
            logps = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
        return float(sum(logps[t - 1, ids[t]] for t in range(start, len(ids))))

    first, second = pairwise_text(PROMPTS[0], A[0], B[0]), pairwise_text(PROMPTS[0], B[0], A[0])
    p_first = torch.tensor([choice_logp(first, " A"), choice_logp(first, " B")]).softmax(0)[0]
    p_second = torch.tensor([choice_logp(second, " A"), choice_logp(second, " B")]).softmax(0)[1]
    assert judge.prefer(PROMPTS[:1], A[:1], B[:1]).item() == pytest.approx(float(p_first + p_second) / 2, abs=1e-5)


def test_principles_reach_the_prompt_and_cost_is_counted(tiny_checkpoints: dict[str, Path]) -> None:
    judge = LLMJudge(str(tiny_checkpoints["llama"]), principles=["Prefer items that suit the terrain."])
    assert "Principles:\n- Prefer items that suit the terrain.\n" in judge.pairwise_context(PROMPTS[0], A[0], B[0])
    before = judge.prefer(PROMPTS[:2], A[:2], B[:2])
    plain = LLMJudge(judge.model, judge.tokenizer).prefer(PROMPTS[:2], A[:2], B[:2])
    assert not torch.allclose(before, plain)  # the principles are read
    assert judge.cost.calls == 1 and judge.cost.rows == 2 * 2 * 2 and judge.cost.tokens > 0
    assert "1 calls, 8 rows" in str(judge.cost)


def test_pointwise_score_is_an_expected_rating(judge: LLMJudge) -> None:
    scores = judge.score(PROMPTS, A)
    assert scores.shape == (6,) and bool(((scores >= 1) & (scores <= 10)).all())
    assert judge.score(PROMPTS, A, scores=(3, 7)).min() >= 3


def test_an_llm_judge_is_a_preference_source_and_ranks_best_of_n(
    judge: LLMJudge, tiny_checkpoints: dict[str, Path]
) -> None:
    prefer = as_preference(judge)
    assert torch.allclose(prefer(PROMPTS, A, B), judge.prefer(PROMPTS, A, B))
    best = best_of_n(str(tiny_checkpoints["llama"]), PROMPTS[:2], judge, n=3, max_new_tokens=4)
    assert len(best) == 2


def test_judge_dataset_names_the_chosen_answer() -> None:
    rows = judge_dataset(TASK, 64, seed=0)
    pairs = TASK.preference_dataset(64, seed=0)
    assert set(rows["completion"]) == {" A", " B"}
    for row, pair in zip(rows, pairs, strict=True):
        shown_a = row["prompt"].split("Answer A: ")[1].split("\n")[0]
        assert (shown_a == pair["chosen"].strip()) == (row["completion"] == " A")


def test_bad_templates_are_refused(judge: LLMJudge) -> None:
    with pytest.raises(ValueError, match=r"\{b\}"):
        LLMJudge(judge.model, judge.tokenizer, template="{question} {a}")
    with pytest.raises(ValueError, match="two different choices"):
        LLMJudge(judge.model, judge.tokenizer, choices=(" A", " A"))


@pytest.mark.slow
def test_a_tiny_judge_trained_offline_agrees_with_the_oracle(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """The default recipe (1,200 SFT steps on 38,400 labelled transitive pairs): measured 0.926 agreement on 500
    held-out pairs (expected accuracy 0.743, the oracle's 0.757); with SFTConfig's defaults it had been 0.862."""
    from trl_plus.llm_judge import train_llm_judge
    from trl_plus.synthetic import oracle_agreement

    judge = LLMJudge(train_llm_judge(tiny_checkpoints["llama"], TASK, tmp_path / "judge"))
    score = oracle_agreement(judge, TASK, 500)
    assert score.agreement > 0.75 and score.expected_accuracy > 0.65, score
    assert judge.cost.rows == 4 * 500
