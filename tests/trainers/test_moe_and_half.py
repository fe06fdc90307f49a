"""Mixture-of-experts models get their router's load-balancing loss on every log-prob path and in both preference
trainers, and a half-precision head under fp32 hidden states trains on the chunked path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from trl_plus.synthetic import get_task
from trl_plus.trainers import (
    PreferenceConfig,
    PreferenceTrainer,
    UnpairedPreferenceConfig,
    UnpairedPreferenceTrainer,
)
from trl_plus.trainers.logprobs import add_chunked_lm_head, chunked_token_logps


@pytest.fixture(scope="module")
def moe(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-MoE (4 experts, 2 per token) with the tiny llama's tokenizer."""
    from transformers import AutoTokenizer, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoints["llama"])
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        router_aux_loss_coef=0.01,
        decoder_sparse_step=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("moe")
    Qwen3MoeForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_the_chunked_forward_gives_the_models_own_aux_loss(moe: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(moe).eval()
    ids = torch.randint(3, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    expected = model(input_ids=ids, attention_mask=mask, output_router_logits=True).aux_loss
    add_chunked_lm_head(model)
    got = model(input_ids=ids, attention_mask=mask, labels=ids, output_router_logits=True, chunked_lm_head=True)
    assert expected is not None and got.aux_loss is not None
    torch.testing.assert_close(got.aux_loss, expected)
    plain = model(input_ids=ids, attention_mask=mask, labels=ids, chunked_lm_head=True)
    assert plain.aux_loss is None  # not asked for


@pytest.mark.parametrize("path", ["chunked", "logits"])
def test_preference_trainer_adds_the_aux_loss(path: str, moe: Path, training_args: Any) -> None:
    pairs = get_task("transitive", seed=0).preference_dataset(8, seed=0)
    trainer = PreferenceTrainer(
        str(moe), args=PreferenceConfig(loss="dpo", logprob_path=path, **training_args()), train_dataset=pairs
    )
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["aux_loss"] > 0 and torch.isfinite(torch.tensor(logged["loss"]))


def test_unpaired_trainer_adds_the_aux_loss(moe: Path, training_args: Any) -> None:
    rows = get_task("transitive", seed=0).unpaired_dataset(8, seed=0)
    trainer = UnpairedPreferenceTrainer(
        str(moe), args=UnpairedPreferenceConfig(loss="kto", **training_args()), train_dataset=rows
    )
    trainer.train()
    assert trainer.state.log_history[0]["aux_loss"] > 0


def test_a_half_precision_head_under_fp32_states_runs_forward_and_backward() -> None:
    """As under autocast, where a model's last norm hands fp32 states to an fp16 head: backward recomputes the tiles
    outside autocast and must still meet the head's dtype."""
    torch.manual_seed(0)
    hidden = torch.randn(6, 8, requires_grad=True)
    weight = torch.randn(20, 8).half().requires_grad_()
    targets = torch.randint(0, 20, (6,))
    logps, *_ = chunked_token_logps(hidden, weight, None, targets, chunk_tokens=4)
    logps.sum().backward()
    assert hidden.grad is not None and hidden.grad.dtype == torch.float32
    assert weight.grad is not None and weight.grad.dtype == torch.float16
    reference = torch.log_softmax(hidden.detach().half().float() @ weight.detach().float().t(), -1)
    torch.testing.assert_close(logps.detach(), reference.gather(1, targets[:, None]).squeeze(1), atol=2e-2, rtol=0)
