"""Constitutional preference data (Bai et al., arXiv:2212.08073): answer → critique → revision, as DPO pairs.

For each prompt the model writes an answer; then, shown the principles (a constitution: a list of strings), it
writes a critique of that answer; then a revision given the critique. Each (revision ≻ answer) becomes a row in TRL's
preference format, `{"prompt", "chosen", "rejected"}`, ready for `PreferenceTrainer` (or `trl-plus train`). Rows
whose revision repeats the answer, or is empty, are dropped: they carry no preference.

The templates are plain strings with `{principles}`, `{question}`, `{answer}` and `{critique}` fields; the default
ones are short, for small models. Sampling is seeded (`trl_plus.synthetic.sample_completions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trl_plus.llm_judge import check_template, principles_text
from trl_plus.synthetic.evaluate import Policy, load_policy, sample_completions

CRITIQUE_TEMPLATE = "{principles}Question: {question}\nAnswer: {answer}\nCritique:"
REVISION_TEMPLATE = "{principles}Question: {question}\nAnswer: {answer}\nCritique: {critique}\nRevised answer:"


@dataclass(frozen=True)
class ConstitutionalExample:
    prompt: str
    answer: str
    critique: str
    revision: str


def constitutional_examples(
    policy: Policy,
    prompts: Sequence[str],
    principles: Sequence[str],
    *,
    critic: Policy | None = None,
    critique_template: str = CRITIQUE_TEMPLATE,
    revision_template: str = REVISION_TEMPLATE,
    max_new_tokens: int = 16,
    critique_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 64,
) -> list[ConstitutionalExample]:
    """Answer, critique and revision for each prompt. `policy` answers; `critic` (default: the policy) critiques and
    revises."""
    if not principles:
        raise ValueError("A constitution needs at least one principle.")
    check_template("critique_template", critique_template, ("{question}", "{answer}"))
    check_template("revision_template", revision_template, ("{question}", "{answer}", "{critique}"))
    model, tokenizer = load_policy(policy)
    critic_model, critic_tokenizer = (model, tokenizer) if critic is None else load_policy(critic)
    rules = principles_text(principles)
    prompts = list(prompts)

    def generate(m: Any, tok: Any, texts: list[str], tokens: int, offset: int) -> list[str]:
        return sample_completions(m, tok, texts, max_new_tokens=tokens, seed=seed + offset, batch_size=batch_size)

    answers = generate(model, tokenizer, prompts, max_new_tokens, 0)
    critiques = generate(
        critic_model,
        critic_tokenizer,
        [
            critique_template.format(principles=rules, question=p, answer=a)
            for p, a in zip(prompts, answers, strict=True)
        ],
        critique_tokens,
        1,
    )
    revisions = generate(
        critic_model,
        critic_tokenizer,
        [
            revision_template.format(principles=rules, question=p, answer=a, critique=c)
            for p, a, c in zip(prompts, answers, critiques, strict=True)
        ],
        max_new_tokens,
        2,
    )
    return [
        ConstitutionalExample(p, a, c, r) for p, a, c, r in zip(prompts, answers, critiques, revisions, strict=True)
    ]


def constitutional_dataset(examples: Sequence[ConstitutionalExample]) -> Any:
    """(revision ≻ answer) pairs in TRL's preference format, with the leading space the task datasets use; rows
    whose revision is empty or repeats the answer are left out."""
    from datasets import Dataset

    rows = [
        {"prompt": e.prompt, "chosen": " " + e.revision.strip(), "rejected": " " + e.answer.strip()}
        for e in examples
        if e.revision.strip() and e.revision.strip() != e.answer.strip()
    ]
    return Dataset.from_list(rows) if rows else Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})


__all__ = ["ConstitutionalExample", "constitutional_dataset", "constitutional_examples"]
