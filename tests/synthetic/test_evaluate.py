"""Oracle evaluation end to end: tokenize, generate, decode, score, interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.synthetic import TransitiveTask, sample_completions, win_rate


class ScriptedPolicy(torch.nn.Module):
    """A stand-in model whose `generate` appends the tokens of a fixed answer (then EOS), for exact win rates."""

    def __init__(self, tokenizer: Any, answer_for: Any) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.answer_for = answer_for
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.prompts_seen: list[str] = []

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            prompt = self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            self.prompts_seen.append(prompt)
            answer = self.tokenizer(" " + self.answer_for(prompt), add_special_tokens=False)["input_ids"]
            rows.append([*answer, self.tokenizer.eos_token_id])
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        completion = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
        return torch.cat([input_ids, completion], dim=1)


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoints: dict[str, Path]) -> Any:
    return AutoTokenizer.from_pretrained(tiny_checkpoints["llama"])


def test_win_rate_of_scripted_policies_is_exact(tokenizer: Any) -> None:
    task = TransitiveTask(seed=0)
    best = ScriptedPolicy(tokenizer, task.best_response)
    broken = ScriptedPolicy(tokenizer, lambda prompt: "unicorn")
    result = win_rate((best, tokenizer), (broken, tokenizer), task, n=40, seed=0)
    prompts = task.prompts(40, seed=0)
    expected = sum(task.prefer(p, task.best_response(p), "unicorn") for p in prompts) / 40
    assert result.win_rate == pytest.approx(expected)
    assert result.valid_a == 1.0 and result.valid_b == 0.0
    assert result.ci_low <= result.win_rate <= result.ci_high <= 1.0
    assert best.prompts_seen == prompts  # the policy saw the held-out prompts as plain text
    # Swapping the sides mirrors the rate.
    mirrored = win_rate((broken, tokenizer), (best, tokenizer), task, n=40, seed=0)
    assert mirrored.win_rate == pytest.approx(1 - expected)


def test_a_policy_against_itself_is_even(tokenizer: Any) -> None:
    task = TransitiveTask(seed=0)
    best = ScriptedPolicy(tokenizer, task.best_response)
    result = win_rate((best, tokenizer), (best, tokenizer), task, n=10)
    assert result.win_rate == pytest.approx(0.5) and result.ci_low == pytest.approx(0.5)


def test_conversational_prompts_go_through_the_chat_template(tokenizer: Any) -> None:
    task = TransitiveTask(seed=0)
    policy = ScriptedPolicy(tokenizer, lambda prompt: "kite map")
    completions = sample_completions(policy, tokenizer, ["Packing for the beach. Name 2 items:"], conversational=True)
    assert completions == ["kite map"]
    assert policy.prompts_seen[0].startswith("[INST]") and policy.prompts_seen[0].endswith("[/INST]")
    assert task.is_valid("Packing for the beach. Name 2 items:", completions[0])


def test_real_tiny_models_run_end_to_end_from_paths(tiny_checkpoints: dict[str, Path]) -> None:
    path = tiny_checkpoints["qwen2"]
    result = win_rate(path, path, TransitiveTask(seed=0), n=8, max_new_tokens=4)
    assert result.n == 8 and 0.0 <= result.ci_low <= result.win_rate <= result.ci_high <= 1.0


def test_sampling_is_seeded_and_restores_state(tiny_checkpoints: dict[str, Path]) -> None:
    path = tiny_checkpoints["gpt2"]
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts = TransitiveTask().prompts(4)
    padding_side = tok.padding_side
    torch.manual_seed(123)
    marker = torch.rand(1)
    torch.manual_seed(123)
    first = sample_completions(model, tok, prompts, seed=5, max_new_tokens=6)
    assert torch.equal(torch.rand(1), marker)  # the caller's random stream is untouched
    assert first == sample_completions(model, tok, prompts, seed=5, max_new_tokens=6)
    assert first != sample_completions(model, tok, prompts, seed=6, max_new_tokens=6)
    assert tok.padding_side == padding_side  # generation pads left only while it runs


def test_needs_two_prompts_for_an_interval(tokenizer: Any) -> None:
    policy = ScriptedPolicy(tokenizer, lambda p: "kite map")
    with pytest.raises(ValueError, match="n must be at least 2"):
        win_rate((policy, tokenizer), (policy, tokenizer), TransitiveTask(), n=1)


def test_win_rate_on_training_prompts_draws_only_from_them(tokenizer: Any) -> None:
    """packing holds out attribute combinations: "eval" scores on those only, "eval-train" on the trained ones."""
    from trl_plus.synthetic import PackingTask

    task = PackingTask(seed=0)
    for stream, triples in (("eval", task.held_out), ("eval-train", task.trained)):
        best = ScriptedPolicy(tokenizer, task.best_response)
        result = win_rate((best, tokenizer), (best, tokenizer), task, n=24, seed=0, stream=stream)
        assert result.valid_a == 1.0
        assert {task.parse_prompt(p)[0] for p in best.prompts_seen} <= set(triples)
    with pytest.raises(ValueError, match="stream must be"):
        win_rate((best, tokenizer), (best, tokenizer), task, n=4, stream="preference")
