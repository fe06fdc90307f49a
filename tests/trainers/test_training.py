"""Training moves the policy the right way: every paired and ranked loss in the registry raises the log-ratio
margin of oracle-preferred over dispreferred completions on held-out prompts, and QLoRA trains adapters only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.registry import list_losses
from trl_plus.synthetic import get_task
from trl_plus.testing import qlora_kwargs, train_adapters_only
from trl_plus.trainers import PreferenceConfig, PreferenceTrainer

TASK = get_task("transitive", seed=0)
STEPS = 12
# The soft-label and listwise losses need their own data; every other loss trains on plain pairs.
RANKED = {spec.name for spec in list_losses("ranked")}
PAIRED = sorted(spec.name for spec in list_losses("paired"))


def completion_logps(model: Any, tokenizer: Any, prompts: list[str], completions: list[str]) -> torch.Tensor:
    """Summed log-probs of each completion (plus EOS) after its prompt, from full logits, in one padded batch."""
    sequences, starts = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        starts.append(len(tokenizer(prompt)["input_ids"]))
        sequences.append(tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"])
    width = max(map(len, sequences))
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in sequences])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in sequences])
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    logps = logits.log_softmax(-1).gather(2, input_ids[:, 1:, None]).squeeze(2)
    positions = torch.arange(1, width)[None, :]
    completion = (positions >= torch.tensor(starts)[:, None]) & attention[:, 1:].bool()
    return (logps * completion).sum(dim=1)


def held_out_margin_gain(before: Any, after: Any, tokenizer: Any, held_out: Dataset) -> float:
    """Mean over held-out pairs of (c − c₀) − (r − r₀): how much more the trained policy prefers the better
    completion than the starting policy did. Zero before training, for every loss (reference-free ones too)."""
    prompts, chosen, rejected = held_out["prompt"], held_out["chosen"], held_out["rejected"]
    gains = []
    for model in (after, before):
        model.eval()
        gains.append(
            completion_logps(model, tokenizer, prompts, chosen) - completion_logps(model, tokenizer, prompts, rejected)
        )
    return (gains[0] - gains[1]).mean().item()


def train_data(loss: str) -> Dataset:
    if loss in RANKED:
        return TASK.ranked_dataset(8 * STEPS, k=3, seed=1)
    return TASK.preference_dataset(8 * STEPS, seed=1, oracle_column=loss == "sppo")


@pytest.fixture(scope="module")
def held_out() -> Dataset:
    return TASK.preference_dataset(24, seed=99)


# DiscoPOP's loss is not monotone in the margin: with TRL's τ = 0.05 it has a local maximum just above a zero
# margin and a local minimum just below (at β·d ≈ −0.12), so from policy = reference it first lowers the margin.
# That is the paper's formula (Eq. 5) and TRL's; the strict xfail records it and fails if it ever changes.
DISCOPOP = pytest.param(
    "discopop", marks=pytest.mark.xfail(strict=True, reason="local minimum of DiscoPOP's loss at a negative margin")
)


@pytest.mark.parametrize("loss", [DISCOPOP if name == "discopop" else name for name in PAIRED + sorted(RANKED)])
def test_each_loss_raises_the_held_out_margin(loss: str, llama: Path, held_out: Dataset, training_args: Any) -> None:
    args = PreferenceConfig(
        loss=loss,
        **training_args(
            max_steps=STEPS, per_device_train_batch_size=8, learning_rate=2e-3, bf16=False, gradient_checkpointing=False
        ),
    )
    trainer = PreferenceTrainer(str(llama), args=args, train_dataset=train_data(loss))
    trainer.train()
    tokenizer = AutoTokenizer.from_pretrained(llama)
    gain = held_out_margin_gain(AutoModelForCausalLM.from_pretrained(llama), trainer.model, tokenizer, held_out)
    assert gain > 0.0, f"{loss}: held-out margin moved by {gain:.4f}"


@pytest.mark.parametrize("loss", ["dpo", "simpo", "plackett_luce"])
def test_qlora_trains_the_adapters_and_leaves_the_4bit_base_frozen(loss: str, llama: Path, training_args: Any) -> None:
    data = TASK.ranked_dataset(16, k=3, seed=0) if loss == "plackett_luce" else TASK.preference_dataset(16, seed=0)
    trainer = PreferenceTrainer(
        str(llama), args=PreferenceConfig(loss=loss, **training_args(max_steps=2)), train_dataset=data, **qlora_kwargs()
    )
    train_adapters_only(trainer)
    # With PEFT there is no separate reference: it is the base with adapters disabled.
    assert trainer.ref_model is None
