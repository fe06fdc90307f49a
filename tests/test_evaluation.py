"""Oracle-free policy metrics: the KL estimate and the implicit-reward accuracy, against exact computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.evaluation import completion_logps, implicit_reward_accuracy, kl_estimate
from trl_plus.synthetic import get_task
from trl_plus.testing import perturbed_copy


@pytest.fixture(scope="module")
def models(tiny_checkpoints: dict[str, Path]) -> tuple[torch.nn.Module, torch.nn.Module, object]:
    path = tiny_checkpoints["llama"]
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    return perturbed_copy(path, scale=0.5, seed=1).eval(), reference, AutoTokenizer.from_pretrained(path)


def test_completion_logps_match_a_token_by_token_loop(models: tuple) -> None:
    policy, _, tokenizer = models
    ids = tokenizer("Packing for the beach. Name 2 items: kite map")["input_ids"]
    start = 5
    expected = 0.0
    for t in range(start, len(ids)):
        logits = policy(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
        expected += torch.log_softmax(logits, -1)[ids[t]].item()
    batch = torch.tensor([ids])
    assert completion_logps(policy, batch, torch.ones_like(batch), start).item() == pytest.approx(expected, abs=1e-4)


def test_kl_of_a_model_against_itself_is_zero(models: tuple) -> None:
    _, reference, tokenizer = models
    estimate = kl_estimate(reference, reference, tokenizer, ["Round 3. Make your move:"] * 8, max_new_tokens=4)
    assert estimate.mean == 0.0 and estimate.n == 8


def test_kl_estimate_converges_to_the_exact_one_token_kl(models: tuple) -> None:
    policy, reference, tokenizer = models
    prompts = ["Round 3. Make your move:", "Packing for the city. Name 3 items:"]
    estimate = kl_estimate(policy, reference, tokenizer, prompts * 400, max_new_tokens=1, seed=0)
    exact = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        p = torch.log_softmax(policy(input_ids=ids).logits[0, -1], -1)
        q = torch.log_softmax(reference(input_ids=ids).logits[0, -1], -1)
        exact.append(float((p.exp() * (p - q)).sum()))
    truth = sum(exact) / len(exact)
    assert truth > 0.01  # the perturbation is large enough to measure
    assert abs(estimate.mean - truth) < 4 * estimate.stderr + 1e-3


def test_implicit_reward_accuracy_is_antisymmetric_and_half_for_the_reference(models: tuple) -> None:
    policy, reference, tokenizer = models
    pairs = get_task("transitive", seed=0).preference_dataset(12, seed=0)
    args = (pairs["prompt"], pairs["chosen"], pairs["rejected"])
    forward = implicit_reward_accuracy(policy, reference, tokenizer, *args)
    backward = implicit_reward_accuracy(policy, reference, tokenizer, args[0], args[2], args[1])
    assert forward.accuracy + backward.accuracy == pytest.approx(1.0)
    assert forward.margin.mean == pytest.approx(-backward.margin.mean, abs=1e-5)
    same = implicit_reward_accuracy(reference, reference, tokenizer, *args)
    assert same.accuracy == 0.5 and same.margin.mean == 0.0
