"""NashTrainer on a tiny Llama, judged by completion length (`longer`) or the cyclic task's oracle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from trl_plus.synthetic import get_task
from trl_plus.testing import qlora_kwargs, train_adapters_only
from trl_plus.trainers import NashConfig, NashTrainer
from trl_plus.trainers._online import Component, mixture_log_probs, sample_mixture

TASK = get_task("cyclic")


def longer(prompts: Any, a: Any, b: Any) -> list[float]:
    """A judge with an opinion even about a random model's answers (the oracle calls them all malformed, a tie)."""
    return [0.5 + 0.4 * ((len(x) > len(y)) - (len(x) < len(y))) for x, y in zip(a, b, strict=True)]


@pytest.fixture
def prompts() -> Dataset:
    return Dataset.from_dict({"prompt": TASK.prompts(16, stream="sft")})


@pytest.fixture
def make_trainer(
    llama: Path, prompts: Dataset, training_args: Callable[..., dict[str, Any]]
) -> Callable[..., NashTrainer]:
    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> NashTrainer:
        kwargs.setdefault("train_dataset", prompts)
        settings = training_args(**{"max_completion_length": 4, "bf16": False, **(config or {})})
        settings.pop("dataset_num_proc")
        kwargs.setdefault("preference", longer)
        model = kwargs.pop("model", str(llama))
        return NashTrainer(model, args=NashConfig(**settings), **kwargs)

    return make


def rollout(trainer: NashTrainer) -> dict[str, Any]:
    trainer.model.train()
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def completion_logps(
    model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Full-sequence log-softmax of every vocabulary entry at each completion position, [B, T, V]."""
    input_ids = torch.cat([prompt_ids, ids], 1)
    mask = torch.cat([prompt_mask, torch.ones_like(ids)], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    return logits[:, prompt_ids.size(1) - 1 : -1].float().log_softmax(-1)


def test_geometric_mixture_per_token(llama: Path) -> None:
    """The sampler's log-prob of each token it drew equals (1 − μ)·log π + μ·log π_ref renormalised, recomputed
    from full forwards of both models over the finished sequences (so the KV caches and positions are right)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_plus.testing import perturbed_copy

    tokenizer = AutoTokenizer.from_pretrained(str(llama))
    tokenizer.padding_side = "left"
    policy, reference = perturbed_copy(llama, scale=0.3).eval(), AutoModelForCausalLM.from_pretrained(str(llama)).eval()
    batch = tokenizer(TASK.prompts(3, stream="sft"), return_tensors="pt", padding=True, add_special_tokens=False)
    mu = 0.3
    ids, logps = sample_mixture(
        [Component(1 - mu, policy), Component(mu, reference)],
        batch["input_ids"],
        batch["attention_mask"],
        max_new_tokens=5,
        eos_token_ids=[-1],  # no early stop: every position is checked
        pad_token_id=tokenizer.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        pi = completion_logps(policy, batch["input_ids"], batch["attention_mask"], ids)
        ref = completion_logps(reference, batch["input_ids"], batch["attention_mask"], ids)
    expected = torch.log_softmax((1 - mu) * pi + mu * ref, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert torch.allclose(logps, expected, atol=1e-4)
    assert torch.allclose(mixture_log_probs([pi, ref], [1 - mu, mu]), torch.log_softmax((1 - mu) * pi + mu * ref, -1))
    # μ = 0 and μ = 1 are the two models themselves.
    assert torch.allclose(mixture_log_probs([pi, ref], [1.0, 0.0]), pi, atol=1e-6)


@pytest.mark.parametrize("opponent", ["mixture", "policy", "reference", "ema", "snapshots"])
def test_rollout_scores_each_sample_against_its_opponent(
    make_trainer: Callable[..., NashTrainer], opponent: str
) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def judge(prompts: Any, a: Any, b: Any) -> list[float]:
        seen.extend(zip(prompts, a, b, strict=True))
        return [TASK.prefer(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]

    trainer = make_trainer({"opponent": opponent}, preference=judge)
    batch = rollout(trainer)
    preferences = batch["preferences"]
    assert preferences.shape == (4,) and bool(((preferences >= 0) & (preferences <= 1)).all())
    completions = trainer.processing_class.batch_decode(batch["completion_ids"], skip_special_tokens=True)
    if opponent == "policy":
        # Two samples per prompt: each one's P is its preference over the other, and the pair's sum is 1.
        assert len(seen) == 2 and torch.allclose(preferences[0::2] + preferences[1::2], torch.ones(2))
    else:
        # (GRPO shuffles the rollout before it is split into steps, so compare as sets.)
        assert len(seen) == 4 and sorted(a.strip() for _, a, _ in seen) == sorted(c.strip() for c in completions)


def test_opponents_never_receive_gradients(make_trainer: Callable[..., NashTrainer]) -> None:
    """The opponent samples under no_grad, and a training step leaves the EMA copy as it was before the step's
    update (it moves only by the average, after the optimizer)."""
    trainer = make_trainer({"opponent": "ema", "ema_decay": 0.5, "max_steps": 2})
    assert trainer.snapshots is not None
    before = [t.clone() for t in trainer.snapshots.snapshots[-1]]
    assert all(not t.requires_grad for t in before)
    components, context = trainer.opponent_components()
    with context:
        ids = torch.tensor([[1, 5, 6]])
        _, logps = sample_mixture(
            components, ids, torch.ones_like(ids), max_new_tokens=2, eos_token_ids=[-1], pad_token_id=0
        )
    assert not logps.requires_grad
    trainer.train()
    after = trainer.snapshots.snapshots[-1]
    params = trainer.snapshots.params
    # Two EMA updates with decay ½ from the initial weights θ₀: ¼·θ₀ + ¼·θ₁ + ½·θ₂, not the live weights.
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert any(not torch.equal(a, p.detach()) for a, p in zip(after, params, strict=True))
    assert all(not t.requires_grad and t.grad is None for t in after)


def test_snapshot_swap_restores_the_live_weights(make_trainer: Callable[..., NashTrainer]) -> None:
    trainer = make_trainer({"opponent": "snapshots", "snapshot_every": 1, "num_snapshots": 2})
    assert trainer.snapshots is not None
    live = [p.detach().clone() for p in trainer.snapshots.params]
    with torch.no_grad():
        trainer.snapshots.params[0].add_(1.0)
    with trainer.snapshots.use(0):
        assert torch.equal(trainer.snapshots.params[0], live[0])
    assert torch.equal(trainer.snapshots.params[0], live[0] + 1.0)


def test_loss_is_the_registered_loss_of_the_rollout(make_trainer: Callable[..., NashTrainer]) -> None:
    """The trainer's loss = the registered loss on (Σ log π, Σ log π_ref, P) of each sample, log-probs recomputed
    from full logits of the (perturbed) policy and the reference."""
    from trl_plus import OnlineLogps, get_loss

    trainer = make_trainer({"beta": 0.2})
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in trainer.model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    batch = rollout(trainer)
    mask = batch["completion_mask"].float()
    with torch.no_grad():
        policy = completion_logps(trainer.model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"])
        ref = completion_logps(trainer.ref_model, batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"])
        ids = batch["completion_ids"][..., None]
        logps = (policy.gather(-1, ids).squeeze(-1) * mask).sum(1)
        ref_logps = (ref.gather(-1, ids).squeeze(-1) * mask).sum(1)
        got = trainer._compute_loss(trainer.model, batch)
    inputs = OnlineLogps(logps, mask.sum(1).long(), batch["preferences"], ref_logps=ref_logps)
    expected = get_loss("nash_md")(inputs, beta=0.2).losses.mean()
    assert (logps - ref_logps).abs().max() > 0.01  # the KL term is in play
    assert got.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("loss", ["nash_md", "sppo_online", "online_ipo"])
def test_each_online_loss_trains(make_trainer: Callable[..., NashTrainer], loss: str) -> None:
    opponent = "policy" if loss != "nash_md" else "mixture"
    trainer = make_trainer({"loss": loss, "opponent": opponent, "max_steps": 2, "logging_steps": 1})
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, trainer.model.parameters(), strict=True))
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"objective/kl", f"loss/{loss}", "rewards/preference/mean"} <= logged


def test_qlora_trains_only_adapters_and_the_reference_is_the_base(make_trainer: Callable[..., NashTrainer]) -> None:
    """4-bit nf4 base + LoRA: only adapters move; the mixture's reference is the base with adapters off."""
    from trl_plus.trainers import _compat

    trainer = make_trainer({"max_steps": 2, "learning_rate": 1e-2}, **qlora_kwargs())
    assert trainer.ref_model is None
    # Forwards in training mode: on CPU an eval-mode pass repacks the 4-bit weights for an inference-only kernel.
    trainer.model.train()
    components, _ = trainer.opponent_components()
    ids = torch.tensor([[1, 5, 6]])
    with torch.no_grad():
        lora_b = next(p for n, p in trainer.model.named_parameters() if "lora_B" in n)
        lora_b.add_(0.5)  # make the adapter matter
        with components[1].context():
            ref = components[1].model(input_ids=ids).logits
        with _compat.use_adapter(trainer.model, adapter_name=None):
            base = trainer.model(input_ids=ids).logits
        policy = trainer.model(input_ids=ids).logits
        lora_b.sub_(0.5)
    assert torch.equal(ref, base) and not torch.equal(ref, policy)
    train_adapters_only(trainer)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"beta": 0.0}, "beta"),
        ({"opponent": "past"}, "opponent"),
        ({"mixture_coef": 1.5}, "mixture_coef"),
        ({"loss": "dpo"}, "online loss"),
        ({"loss": "online_ipo"}, "opponent='policy'"),
        ({"opponent": "policy", "num_generations": 1}, "num_generations"),
        ({"loss_kwargs": {"gamma": 1.0}}, "gamma"),
    ],
)
def test_bad_config_is_refused(
    training_args: Callable[..., dict[str, Any]], config: dict[str, Any], message: str
) -> None:
    settings = training_args(**config)
    settings.pop("dataset_num_proc")
    with pytest.raises((ValueError, TypeError), match=message):
        NashConfig(**settings)


def test_missing_preference_and_prompt_column_are_refused(make_trainer: Callable[..., NashTrainer]) -> None:
    with pytest.raises(ValueError, match="preference source"):
        make_trainer(preference=None)
    with pytest.raises(ValueError, match="'prompt' column"):
        make_trainer(train_dataset=Dataset.from_dict({"text": ["a", "b"]}))


def test_a_preference_source_out_of_range_stops_training(make_trainer: Callable[..., NashTrainer]) -> None:
    trainer = make_trainer(preference=lambda p, a, b: [2.0] * len(p))
    with pytest.raises(ValueError, match="not a probability"):
        rollout(trainer)
