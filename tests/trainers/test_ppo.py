"""PPOTrainer: the rollout's KL and gradient against independent computations, QLoRA with two adapters on one 4-bit
base, reward sources, checkpoints and clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from trl_plus.losses import ppo as ppo_math
from trl_plus.synthetic import get_task
from trl_plus.testing import max_relative_difference, qlora_kwargs, train_adapters_only
from trl_plus.trainers import PPOConfig, PPOTrainer
from trl_plus.trainers._online import completions_in_context

TASK = get_task("transitive")


@pytest.fixture
def prompts() -> Dataset:
    return Dataset.from_dict({"prompt": TASK.prompts(32, stream="sft")})


@pytest.fixture
def make_trainer(
    llama: Path, prompts: Dataset, training_args: Callable[..., dict[str, Any]]
) -> Callable[..., PPOTrainer]:
    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> PPOTrainer:
        kwargs.setdefault("train_dataset", prompts)
        settings = training_args(**{"max_completion_length": 6, "bf16": False, "num_ppo_epochs": 1, **(config or {})})
        settings.pop("dataset_num_proc")  # GRPO prepares no dataset
        kwargs.setdefault("reward_funcs", TASK)
        model = kwargs.pop("model", str(llama))
        return PPOTrainer(model, args=PPOConfig(**settings), **kwargs)

    return make


def plain_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int) -> torch.Tensor:
    """Per-token log-probs of the last `length` tokens from full logits (no fused head, no chunking)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -length - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, input_ids[:, -length:, None]).squeeze(-1)


def rollout(trainer: PPOTrainer) -> dict[str, Any]:
    trainer.model.train()
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def sequences(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    return input_ids, attention_mask, batch["completion_mask"].float(), batch["completion_ids"].size(1)


def perturb(model: Any, scale: float = 0.05) -> None:
    """Move the policy away from the reference, so the KL terms are not zero."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))


def perturbed_rollout(trainer: PPOTrainer) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]:
    """A rollout of the perturbed policy: (batch, mask, policy and reference log-probs from full logits)."""
    perturb(trainer.model)
    batch = rollout(trainer)
    input_ids, attention_mask, mask, length = sequences(batch)
    with torch.no_grad():
        policy = plain_logps(trainer.model, input_ids, attention_mask, length)
        reference = plain_logps(trainer.ref_model, input_ids, attention_mask, length)
    return batch, mask, policy, reference


def test_rollout_kl_is_the_sequence_log_ratio(make_trainer: Callable[..., PPOTrainer]) -> None:
    """objective/kl = mean over completions of Σ_t (log π − log π_ref), recomputed here from full logits."""
    trainer = make_trainer({"kl_coef": 0.1})
    batch, mask, policy, reference = perturbed_rollout(trainer)
    expected = ((policy - reference) * mask).sum(1).mean().item()
    assert abs(expected) > 0.05, "the perturbed policy should differ from the reference"
    assert trainer._metrics["train"]["objective/kl"][-1] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(batch["old_per_token_logps"] * mask, policy * mask, atol=1e-5, rtol=1e-4)


def test_one_epoch_one_mini_batch_zero_critic_is_reinforce(make_trainer: Callable[..., PPOTrainer]) -> None:
    """num_ppo_epochs=1, one mini-batch, γ = λ = 1 and a zero critic: the first step is on-policy (ratio 1, no
    clipping), so PPO's policy gradient is REINFORCE's −mean_t Ĝ_t ∇log π_t, with Ĝ the whitened reward-to-go of
    the KL-shaped reward −β·(log π − log π_ref) + score on the last token. Checked on every policy parameter."""
    beta = 0.1

    def varied(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        # The tiny random model's answers score apart. Stripped: PPOTrainer hands reward functions the completion as
        # it reads after its prompt (a leading space where the tokenizer has one), batch_decode below does not.
        return [float(sum(map(ord, c.strip())) % 7) for c in completions]

    trainer = make_trainer({"kl_coef": beta, "gamma": 1.0, "lam": 1.0}, reward_funcs=varied)
    perturb(trainer.model)
    batch = rollout(trainer)
    assert trainer._rewards_per_func.std() > 0.5
    assert torch.count_nonzero(batch["values"]) == 0  # the value head starts at zero
    with trainer.compute_loss_context_manager():
        loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    ppo_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()

    input_ids, attention_mask, mask, length = sequences(batch)
    # Scored again here: the rollout's rows are shuffled after scoring.
    texts = trainer.processing_class.batch_decode(batch["completion_ids"] * mask.long(), skip_special_tokens=True)
    scores = torch.tensor(varied([], texts))
    logps = plain_logps(trainer.model, input_ids, attention_mask, length)
    with torch.no_grad():
        ref_logps = plain_logps(trainer.ref_model, input_ids, attention_mask, length)
    rewards = -beta * (logps.detach() - ref_logps) * mask
    for row in range(len(scores)):
        rewards[row, int(mask[row].sum()) - 1] += scores[row]
    reward_to_go = torch.zeros_like(rewards)
    running = torch.zeros(len(scores))
    for t in reversed(range(length)):
        running = running + rewards[:, t]
        reward_to_go[:, t] = running * mask[:, t]
    real = reward_to_go[mask.bool()]
    whitened = (reward_to_go - real.mean()) / real.std() * mask
    surrogate = -(whitened * logps * mask).sum() / mask.sum()
    surrogate.backward()
    reinforce_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    assert max_relative_difference(reinforce_grads, ppo_grads) < 1e-3


def test_qlora_trains_policy_and_critic_adapters_on_one_frozen_4bit_base(
    make_trainer: Callable[..., PPOTrainer], llama: Path
) -> None:
    """Two adapters ("default" = policy, "critic") and a value head train; the 4-bit base does not; and the
    reference (adapters off) gives exactly the 4-bit base's log-probs after training."""
    from transformers import AutoModelForCausalLM

    kwargs = qlora_kwargs()
    trainer = make_trainer({"max_steps": 2, "num_ppo_epochs": 2, "learning_rate": 1e-2}, **kwargs)
    assert set(trainer.model.peft_config) == {"default", "critic"}
    changed = train_adapters_only(trainer)
    assert any(".default." in name and "lora_B" in name for name in changed), sorted(changed)
    assert any(".critic." in name and "lora_B" in name for name in changed), sorted(changed)
    assert torch.count_nonzero(trainer.critic.head.weight) > 0

    batch = trainer._generate_and_score_completions([{"prompt": p} for p in TASK.prompts(4)])
    input_ids, attention_mask, mask, length = sequences(batch)
    base = AutoModelForCausalLM.from_pretrained(str(llama), quantization_config=kwargs["quantization_config"])
    base.train()  # the trainer's mode: on CPU, bitsandbytes runs 4-bit layers with another kernel in eval mode
    with torch.no_grad():
        expected = plain_logps(base, input_ids, attention_mask, length)
        policy = plain_logps(trainer.model, input_ids, attention_mask, length)
    torch.testing.assert_close(batch["ref_per_token_logps"] * mask, expected * mask, atol=1e-4, rtol=1e-4)
    assert ((policy - expected) * mask).abs().max() > 1e-3, "the trained policy should differ from the base"


def test_reward_sources_side_by_side(make_trainer: Callable[..., PPOTrainer], llama: Path, tmp_path: Path) -> None:
    """A RewardModel, a sequence-classification checkpoint (by path), the oracle and a function, weighted."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trl_plus import RewardModel

    classifier = tmp_path / "classifier"
    AutoModelForSequenceClassification.from_pretrained(str(llama), num_labels=1).save_pretrained(classifier)
    AutoTokenizer.from_pretrained(str(llama)).save_pretrained(classifier)

    def length_reward(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [float(len(c.split())) for c in completions]

    sources = [RewardModel.from_backbone(str(llama), head="ensemble"), str(classifier), TASK, length_reward]
    trainer = make_trainer({"reward_weights": [1.0, 0.5, 1.0, 0.1]}, reward_funcs=sources)
    batch = rollout(trainer)
    rewards = trainer._rewards_per_func
    assert rewards.shape == (4, 4) and torch.isfinite(rewards).all()
    expected = rewards @ torch.tensor([1.0, 0.5, 1.0, 0.1])
    assert trainer._metrics["train"]["objective/scores"][-1] == pytest.approx(expected.mean().item(), rel=1e-5)
    names = set(trainer._metrics["train"])
    assert {
        "rewards/reward_model_ensemble/mean",
        "rewards/oracle_transitive/mean",
        "rewards/length_reward/mean",
    } <= names
    assert batch["advantages"].shape == batch["completion_ids"].shape


def test_reward_functions_get_the_completion_as_it_reads_after_the_prompt(
    make_trainer: Callable[..., PPOTrainer],
) -> None:
    """The tiny llama's SentencePiece-style tokenizer drops a leading space when completion ids are decoded alone;
    reward functions get the text as written after the prompt, so prompt + completion re-tokenises to the same ids."""
    seen: list[tuple[str, str, list[int]]] = []

    def record(prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_: Any) -> list[float]:
        seen.extend(zip(prompts, completions, completion_ids, strict=True))
        return [0.0] * len(completions)

    trainer = make_trainer(reward_funcs=record)
    rollout(trainer)
    tokenizer = trainer.processing_class
    for prompt, completion, ids in seen:
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert prompt + completion == tokenizer.decode(prompt_ids + list(ids), skip_special_tokens=True)
    # The case that matters, by hand: an answer the SFT model writes, " kite map".
    prompt = seen[0][0]
    ids = tokenizer(" kite map", add_special_tokens=False)["input_ids"]
    alone = tokenizer.decode(ids, skip_special_tokens=True)
    assert alone == "kite map"  # what TRL hands on
    assert completions_in_context(tokenizer, [prompt], [alone], [ids]) == [" kite map"]


def test_missing_eos_penalty_lowers_the_score(make_trainer: Callable[..., PPOTrainer]) -> None:
    """A random tiny model rarely stops within 2 tokens: each completion without EOS loses the penalty."""
    plain = make_trainer({"max_completion_length": 2})
    rollout(plain)
    penalised = make_trainer({"max_completion_length": 2, "missing_eos_penalty": 3.0})
    rollout(penalised)
    ends = penalised._metrics["train"]["val/num_eos_tokens"][-1]
    raw = penalised._rewards_per_func[:, 0].mean().item()
    assert penalised._metrics["train"]["objective/scores"][-1] == pytest.approx(raw - 3.0 * (4 - ends) / 4, rel=1e-5)
    assert ends < 4


def test_save_writes_critic_and_value_head(make_trainer: Callable[..., PPOTrainer], tmp_path: Path) -> None:
    kwargs = qlora_kwargs()
    trainer = make_trainer({"learning_rate": 1e-2}, **kwargs)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    assert (saved / "adapter_config.json").is_file()
    assert (saved / "critic" / "adapter_model.safetensors").is_file()
    assert (saved / "value_head.safetensors").is_file()
    fresh = make_trainer({}, **qlora_kwargs())
    fresh.critic.load(saved)
    torch.testing.assert_close(fresh.critic.head.weight, trainer.critic.head.weight)
    critic = {n: p for n, p in trainer.model.named_parameters() if ".critic." in n}
    loaded = dict(fresh.model.named_parameters())
    assert critic and all(torch.equal(loaded[n], p) for n, p in critic.items())


def test_separate_value_model_from_a_reward_model(
    make_trainer: Callable[..., PPOTrainer], llama: Path, tmp_path: Path
) -> None:
    """value_model=RewardModel: the critic trains a copy of its backbone; the reward model itself is untouched."""
    from trl_plus import RewardModel

    reward_model = RewardModel.from_backbone(str(llama), head="bt")
    before = {n: p.clone() for n, p in reward_model.named_parameters()}
    # Two steps: the value head starts at zero, so the backbone gets a gradient from the second step on.
    trainer = make_trainer({"learning_rate": 1e-2, "max_steps": 2}, reward_funcs=reward_model, value_model=reward_model)
    critic_before = {n: p.clone() for n, p in trainer.critic.named_parameters()}
    trainer.train()
    assert all(torch.equal(before[n], p) for n, p in reward_model.named_parameters())
    moved = [n for n, p in trainer.critic.named_parameters() if not torch.equal(critic_before[n], p)]
    assert any(n.startswith("backbone.") for n in moved) and "head.weight" in moved
    # Saved under value_model/ and value_head.safetensors; a fresh critic loads the trained one back.
    trainer.save_model(str(tmp_path / "saved"))
    fresh = make_trainer(reward_funcs=reward_model, value_model=reward_model)
    fresh.critic.load(tmp_path / "saved")
    trained = dict(trainer.critic.named_parameters())
    assert all(torch.equal(trained[n], p) for n, p in fresh.critic.named_parameters())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kl_coef", -0.1, "kl_coef must be ≥ 0"),
        ("lam", 1.5, "lam must be in"),
        ("gamma", -0.1, "gamma must be in"),
        ("kl_estimator", "k2", "kl_estimator must be one of"),
        ("num_mini_batches", 0, "num_mini_batches must be ≥ 1"),
        ("generation_batch_size", 8, "sets the rollout size itself"),
        ("num_generations", 3, "must be divisible by num_generations=3"),
    ],
)
def test_config_errors_name_the_field(
    training_args: Callable[..., dict[str, Any]], field: str, value: Any, message: str
) -> None:
    settings = training_args(**{field: value})
    settings.pop("dataset_num_proc")
    with pytest.raises(ValueError, match=message):
        PPOConfig(**settings)


def test_errors_before_training(make_trainer: Callable[..., PPOTrainer], llama: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from trl_plus import RewardModel

    with pytest.raises(ValueError, match="needs a 'prompt' column"):
        make_trainer(train_dataset=Dataset.from_dict({"text": ["a"]}))
    with pytest.raises(ValueError, match="needs a reward"):
        make_trainer(reward_funcs=None)
    words = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1}, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    foreign = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", pad_token="<unk>")
    reward_model = RewardModel.from_backbone(str(llama), head="bt", tokenizer=foreign)
    with pytest.raises(ValueError, match="cannot read the policy's prompts"):
        make_trainer(reward_funcs=reward_model)


def test_nan_reward_stops_with_the_step(make_trainer: Callable[..., PPOTrainer]) -> None:
    def broken(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        return [float("nan")] * len(completions)

    trainer = make_trainer(reward_funcs=broken)
    with pytest.raises(FloatingPointError, match="Step 0: a completion got no reward"):
        trainer.train()


def test_k3_rollout_kl_matches_the_formula(make_trainer: Callable[..., PPOTrainer]) -> None:
    trainer = make_trainer({"kl_coef": 0.1, "kl_estimator": "k3"})
    _, mask, policy, reference = perturbed_rollout(trainer)
    expected = ppo_math.per_token_kl(policy, reference, mask, "k3").sum(1).mean().item()
    assert trainer._metrics["train"]["objective/kl"][-1] == pytest.approx(expected, rel=1e-3)
