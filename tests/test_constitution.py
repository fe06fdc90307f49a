"""Constitutional data: answer → critique → revision, written as (revision ≻ answer) pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trl_plus import constitution
from trl_plus.constitution import ConstitutionalExample, constitutional_dataset, constitutional_examples

PRINCIPLES = ["Name items that suit the terrain.", "Answer with two words."]


def test_each_step_reads_the_last_and_the_principles(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(model: Any, tokenizer: Any, texts: list[str], **kwargs: Any) -> list[str]:
        seen.append(list(texts))
        step = len(seen)
        return [f"out{step}-{i}" for i in range(len(texts))]

    monkeypatch.setattr(constitution, "sample_completions", fake)
    monkeypatch.setattr(constitution, "load_policy", lambda policy: ("model", "tokenizer"))
    examples = constitutional_examples("policy", ["P0", "P1"], PRINCIPLES)
    answers, critiques, revisions = seen
    assert answers == ["P0", "P1"]
    assert critiques[1] == (
        "Principles:\n- Name items that suit the terrain.\n- Answer with two words.\n"
        "Question: P1\nAnswer: out1-1\nCritique:"
    )
    assert revisions[0].endswith("Answer: out1-0\nCritique: out2-0\nRevised answer:")
    assert examples[1] == ConstitutionalExample("P1", "out1-1", "out2-1", "out3-1")


def test_the_dataset_keeps_real_revisions_only() -> None:
    rows = constitutional_dataset(
        [
            ConstitutionalExample("P0", "kite map", "too long", "kite"),
            ConstitutionalExample("P1", "tent", "fine", "tent"),  # no change: no preference
            ConstitutionalExample("P2", "hat", "bad", " "),  # empty revision
        ]
    )
    assert rows.to_list() == [{"prompt": "P0", "chosen": " kite", "rejected": " kite map"}]
    assert constitutional_dataset([]).column_names == ["prompt", "chosen", "rejected"]


def test_end_to_end_on_a_tiny_model(tiny_checkpoints: dict[str, Path]) -> None:
    from trl_plus.synthetic import get_task

    prompts = get_task("transitive").prompts(4)
    examples = constitutional_examples(str(tiny_checkpoints["llama"]), prompts, PRINCIPLES, max_new_tokens=4)
    assert [e.prompt for e in examples] == prompts
    assert all(isinstance(e.revision, str) and isinstance(e.critique, str) for e in examples)
    rows = constitutional_dataset(examples)
    assert set(rows.column_names) == {"prompt", "chosen", "rejected"} and len(rows) <= 4


def test_a_constitution_needs_principles_and_complete_templates() -> None:
    with pytest.raises(ValueError, match="at least one principle"):
        constitutional_examples("policy", ["P"], [])
    with pytest.raises(ValueError, match=r"\{critique\}"):
        constitutional_examples("policy", ["P"], PRINCIPLES, revision_template="{question} {answer}")
