from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.testing import ARCHITECTURES, build_config, build_tokenizer, make_tiny

PROMPT = "Packing for the beach. Name 2 items:"


def test_runs_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_loads_through_auto_classes_and_generates(arch: str, tiny_checkpoints: dict[str, Path]) -> None:
    path = tiny_checkpoints[arch]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == arch
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    inputs = tokenizer([PROMPT], return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert output.shape == (1, inputs["input_ids"].shape[1] + 5) or tokenizer.eos_token_id in output[0].tolist()
    assert isinstance(tokenizer.decode(output[0], skip_special_tokens=True), str)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_takes_a_training_step(arch: str, tiny_checkpoints: dict[str, Path]) -> None:
    path = tiny_checkpoints[arch]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    batch = tokenizer([PROMPT + " kite map", PROMPT + " tent"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(**batch, labels=labels).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    # Random init: the loss is near log(vocab), the cross-entropy of a uniform guess.
    assert abs(loss.item() - torch.log(torch.tensor(float(len(tokenizer)))).item()) < 1.0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert changed == len(before)
    assert model(**batch, labels=labels).loss < loss


CONVENTIONS = {
    # arch: (bos, eos, pad, BOS prepended to plain text)
    "llama": ("<s>", "</s>", "<pad>", True),
    "qwen2": (None, "<|im_end|>", "<|endoftext|>", False),
    "qwen3": (None, "<|im_end|>", "<|endoftext|>", False),
    "gpt2": ("<|endoftext|>", "<|endoftext|>", "<|endoftext|>", False),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tokenizer_conventions_survive_the_round_trip(arch: str, tiny_checkpoints: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoints[arch])
    config = AutoModelForCausalLM.from_pretrained(tiny_checkpoints[arch]).config
    bos, eos, pad, prepends_bos = CONVENTIONS[arch]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (bos, eos, pad)
    assert (config.eos_token_id, config.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    ids = tokenizer(PROMPT + " kite map")["input_ids"]
    assert (ids[0] == tokenizer.bos_token_id) == prepends_bos
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT + " kite map"
    assert tokenizer.unk_token_id not in ids  # the task vocabulary is covered
    # Task words are single tokens (they were in the tokenizer's training text), which keeps tiny models quick.
    assert len(tokenizer(" kite", add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_chat_template_renders_prompt_as_a_prefix_and_marks_the_answer(
    arch: str, tiny_checkpoints: dict[str, Path]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoints[arch])
    prompt = [{"role": "user", "content": PROMPT}]
    answer = [{"role": "assistant", "content": "kite map"}]
    prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(prompt + answer, return_dict=True, return_assistant_tokens_mask=True)
    # TRL splits prompt from completion where the two tokenizations diverge: the prompt must be a prefix.
    assert full["input_ids"][: len(prompt_ids)] == prompt_ids
    marked = [t for t, m in zip(full["input_ids"], full["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(marked, skip_special_tokens=True).strip() == "kite map"
    assert marked[-1] == tokenizer.eos_token_id  # the answer's end is trained, so the model learns to stop


def test_large_vocabulary_variant(tmp_path: Path) -> None:
    path = make_tiny("llama", tmp_path, vocab_size=128256, hidden_size=32, num_layers=1)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == 128256 and model.get_output_embeddings().weight.shape == (128256, 32)
    assert len(tokenizer) < 2000


def test_same_seed_same_weights(tmp_path: Path) -> None:
    first = AutoModelForCausalLM.from_pretrained(make_tiny("gpt2", tmp_path / "a", seed=3))
    second = AutoModelForCausalLM.from_pretrained(make_tiny("gpt2", tmp_path / "b", seed=3))
    third = AutoModelForCausalLM.from_pretrained(make_tiny("gpt2", tmp_path / "c", seed=4))
    weights = [dict(m.named_parameters()) for m in (first, second, third)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(ValueError, match=r"Unknown architecture 'mistral'; choose one of \['llama'"):
        build_tokenizer("mistral")
    tokenizer = build_tokenizer("gpt2", vocab_size=300)
    with pytest.raises(ValueError, match="vocab_size=10 is smaller than the tokenizer's"):
        build_config("gpt2", tokenizer, vocab_size=10)
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        build_config("llama", tokenizer, hidden_size=64, num_heads=3)
