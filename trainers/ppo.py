"""`PPOTrainer`: PPO for RLHF on TRL 1.x, a thin subclass of TRL's `GRPOTrainer`.

TRL's GRPOTrainer already samples completions (HF generate or vLLM), calls reward functions, computes the rollout
and reference log-probs, repeats each rollout `num_iterations` times in mini-batches, logs and checkpoints. PPO
changes two things and reuses the rest:

- after scoring, each completion gets a per-token reward −kl_coef·KL_t plus its score on the last token, a critic
  V(s_t), and GAE advantages and returns (`_generate_and_score_completions`);
- the loss is PPO's clipped policy loss plus vf_coef × the clipped value loss (`_compute_loss`).

The critic: with PEFT (the default for QLoRA), a second LoRA adapter named "critic" on the policy's own base plus a
linear value head, so one (4-bit) base carries policy, critic and — with the adapters off — the reference. Without
PEFT, or with `value_model=`, a separate backbone plus the value head. The critic runs its own forward through the
decoder: TRL's patched causal-LM forward returns log-probs, not hidden states.

Config mapping onto GRPO: `num_ppo_epochs` → `num_iterations`; a rollout is `num_mini_batches` optimizer steps
(`steps_per_generation` = `gradient_accumulation_steps` × `num_mini_batches`); `kl_coef` → `beta` (only so that
TRL computes the reference log-probs; with kl_coef = 0 no reference is built).
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trl_plus.losses import ppo as ppo_math
from trl_plus.rewards import as_reward_func, reward_tokenizers
from trl_plus.trainers import _compat
from trl_plus.trainers._online import check_prompt_columns, completions_in_context, default_args, rollout_sequences
from trl_plus.trainers.preference import check_model_path

CRITIC_ADAPTER = "critic"
VALUE_HEAD_WEIGHTS = "value_head.safetensors"
VALUE_MODEL_DIR = "value_model"


@dataclass
class PPOConfig(_compat.GRPOConfig):
    """GRPOConfig plus PPO's hyperparameters (defaults from TRL's last PPOTrainer)."""

    kl_coef: float = field(default=0.05, metadata={"help": "β of the per-token KL penalty −β·KL_t in the reward."})
    kl_estimator: str = field(
        default="k1",
        metadata={"help": "KL estimate per token: 'k1' = log π − log π_ref (unbiased), 'k3' (non-negative)."},
    )
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the score of a completion that does not end with EOS."}
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount factor of GAE, in [0, 1]."})
    lam: float = field(default=0.95, metadata={"help": "λ of GAE, in [0, 1]."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Whiten the per-token rewards before GAE."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout (GRPO's num_iterations)."})
    num_mini_batches: int = field(
        default=1,
        metadata={
            "help": "Optimizer steps per pass over a rollout; the rollout holds num_mini_batches × "
            "per_device_train_batch_size × processes × gradient_accumulation_steps completions."
        },
    )
    cliprange: float = field(default=0.2, metadata={"help": "ε of the clipped policy ratio."})
    cliprange_value: float = field(default=0.2, metadata={"help": "ε of the clipped value prediction."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss in the total loss."})
    num_generations: int | None = field(
        default=1, metadata={"help": "Completions per prompt (PPO needs no group; GRPO's default is 8)."}
    )

    def __post_init__(self) -> None:
        checks = [
            ("kl_coef", self.kl_coef >= 0, "must be ≥ 0"),
            ("gamma", 0 <= self.gamma <= 1, "must be in [0, 1]"),
            ("lam", 0 <= self.lam <= 1, "must be in [0, 1]"),
            ("num_ppo_epochs", self.num_ppo_epochs >= 1, "must be ≥ 1"),
            ("num_mini_batches", self.num_mini_batches >= 1, "must be ≥ 1"),
            ("cliprange", self.cliprange > 0, "must be > 0"),
            ("cliprange_value", self.cliprange_value > 0, "must be > 0"),
            ("vf_coef", self.vf_coef >= 0, "must be ≥ 0"),
            ("kl_estimator", self.kl_estimator in ppo_math.KL_ESTIMATORS, f"must be one of {ppo_math.KL_ESTIMATORS}"),
            ("missing_eos_penalty", self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, "must be ≥ 0"),
            ("num_generations", self.num_generations is not None and self.num_generations >= 1, "must be ≥ 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"PPOConfig.{name} {rule}, got {getattr(self, name)!r}.")
        if self.generation_batch_size is not None or self.steps_per_generation is not None:
            raise ValueError(
                "PPOConfig sets the rollout size itself: num_mini_batches × per_device_train_batch_size × processes "
                "× gradient_accumulation_steps completions. Set num_mini_batches (and the batch size) instead of "
                f"generation_batch_size={self.generation_batch_size} / steps_per_generation="
                f"{self.steps_per_generation}."
            )
        self.steps_per_generation = self.gradient_accumulation_steps * self.num_mini_batches
        self.num_iterations = self.num_ppo_epochs
        self.beta = self.kl_coef
        self.epsilon = self.cliprange
        # The process count before TrainingArguments has set up its distributed state (launchers export it).
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        rollout = self.per_device_train_batch_size * processes * self.steps_per_generation
        generations = self.num_generations
        if rollout % generations != 0:
            raise ValueError(
                f"The rollout ({rollout} completions = num_mini_batches {self.num_mini_batches} × "
                f"per_device_train_batch_size {self.per_device_train_batch_size} × {processes} processes × "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps}) must be divisible by "
                f"num_generations={generations}."
            )
        if generations == 1:
            # GRPO needs a group of ≥ 2 to centre its rewards; PPO's critic does not. GRPO's config refuses 1, so
            # its checks run with one group per rollout and the value is put back after.
            if rollout < 2:
                raise ValueError(
                    f"A PPO rollout needs at least 2 completions (advantages are whitened over it); got {rollout}. "
                    "Raise per_device_train_batch_size, gradient_accumulation_steps or num_mini_batches."
                )
            if self.num_generations_eval is None:
                self.num_generations_eval = 1
            self.num_generations = rollout
        try:
            super().__post_init__()
        finally:
            self.num_generations = generations


class Critic(nn.Module):
    """V(s) at every position: a backbone's last hidden states through a linear value head (zero-initialised, so
    V starts at 0 and the first advantages are the shaped rewards themselves).

    `peft_policy` set: the backbone is the policy's own decoder run with the "critic" LoRA adapter (kept outside
    this module's parameters, which are then only the head). Otherwise `backbone` is a separate model.
    """

    def __init__(self, hidden_size: int, *, backbone: Any = None, peft_policy: Any = None) -> None:
        super().__init__()
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.backbone = backbone
        self._peft_policy = [peft_policy] if peft_policy is not None else []  # a list: not registered as a module

    @property
    def shares_policy(self) -> bool:
        return bool(self._peft_policy)

    def adapter_parameters(self) -> list[nn.Parameter]:
        if not self.shares_policy:
            return []
        return [p for name, p in self._peft_policy[0].named_parameters() if f".{CRITIC_ADAPTER}." in name]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [*self.adapter_parameters(), *self.parameters()]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """V at every position, [B, T] in float32."""
        if self.shares_policy:
            policy = self._peft_policy[0]
            with critic_adapter(policy, self.adapter_parameters()):
                hidden = _decoder(policy.get_base_model())(
                    input_ids=input_ids, attention_mask=attention_mask, use_cache=False
                ).last_hidden_state
        else:
            hidden = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()

    def save(self, path: str | Path) -> None:
        """The value head to `value_head.safetensors`; a separate backbone to `value_model/`. (The critic adapter
        is saved by PEFT with the policy's adapters, in `critic/`.)"""
        path = Path(path)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()},
            str(path / VALUE_HEAD_WEIGHTS),
        )
        if self.backbone is not None:
            self.backbone.save_pretrained(str(path / VALUE_MODEL_DIR))

    def load(self, path: str | Path) -> None:
        path = Path(path)
        device = self.head.weight.device
        self.head.load_state_dict(load_file(str(path / VALUE_HEAD_WEIGHTS), device=str(device)))
        if self.shares_policy:
            from peft import load_peft_weights, set_peft_model_state_dict

            weights = load_peft_weights(str(path / CRITIC_ADAPTER), device=str(device))
            set_peft_model_state_dict(self._peft_policy[0], weights, adapter_name=CRITIC_ADAPTER)
        elif self.backbone is not None:
            from trl_plus.reward_model import load_model_weights

            load_model_weights(self.backbone, path / VALUE_MODEL_DIR, device)


def _decoder(causal_lm: Any) -> Any:
    """The transformer body of a causal LM (hidden states out, no LM head)."""
    return causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm


class critic_adapter:
    """The PEFT policy with the critic adapter active. PEFT's `set_adapter` freezes the inactive adapters; both stay
    trainable here (each is only used in its own forward), so one optimizer step updates policy and critic."""

    def __init__(self, policy: Any, critic_params: list[nn.Parameter]) -> None:
        self.policy, self.critic_params = policy, critic_params

    def __enter__(self) -> None:
        self.previous = self.policy.active_adapter
        self.trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.policy.set_adapter(CRITIC_ADAPTER)
        self._restore()

    def __exit__(self, *_: object) -> None:
        self.policy.set_adapter(self.previous)
        self._restore()

    def _restore(self) -> None:
        for param in [*self.trainable, *self.critic_params]:
            param.requires_grad_(True)


class PPOTrainer(_compat.GRPOTrainer):
    """PPO with a learned critic, GAE and a per-token KL penalty, on TRL's GRPO machinery.

    `reward_funcs` takes any reward source (see `trl_plus.rewards`): a `RewardModel`, a synthetic task, a
    sequence-classification checkpoint or a function; several with `args.reward_weights`. `value_model` (a path,
    a loaded model or a `RewardModel`, whose backbone is copied) gives the critic its own backbone.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "ppo"]

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: PPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: Any = None,
        optimizers: tuple[Any, Any] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        value_model: Any = None,
    ) -> None:
        args = default_args(model, args, PPOConfig, "PPO", "PPOTrainer")
        if reward_funcs is None:
            raise ValueError(
                "PPOTrainer needs a reward: pass reward_funcs= a RewardModel, a synthetic task, a sequence-"
                "classification checkpoint or a function (prompts, completions, **kwargs) -> list[float]."
            )
        if optimizers[0] is not None:
            raise ValueError(
                "PPOTrainer builds its optimizer itself so that it also covers the critic; pass the optimizer's "
                "settings through PPOConfig (optim, learning_rate, weight_decay, ...) instead of optimizers=."
            )
        check_prompt_columns("PPOTrainer", train_dataset=train_dataset, eval_dataset=eval_dataset)
        check_model_path(model)
        check_model_path(value_model, "value_model")
        sources = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        _check_reward_tokenizers(sources, train_dataset)
        super().__init__(
            model,
            reward_funcs=[as_reward_func(source) for source in sources],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        _compat.release_trainer_checkpoints(self)
        self.critic = self._build_critic(value_model).to(self.accelerator.device)

    # ---- the critic ---------------------------------------------------------------------------------------------

    def _build_critic(self, value_model: Any) -> Critic:
        policy = self.model
        hidden_size = policy.config.get_text_config().hidden_size
        if value_model is None and _compat.is_peft_model(policy):
            policy.add_adapter(CRITIC_ADAPTER, copy.deepcopy(policy.peft_config[policy.active_adapter]))
            critic = Critic(hidden_size, peft_policy=policy)
            policy_dtype = next(p.dtype for n, p in policy.named_parameters() if "lora_" in n and p.requires_grad)
            for param in critic.adapter_parameters():
                param.data = param.data.to(policy_dtype)  # the policy adapter's dtype, as TRL/PEFT chose it
                param.requires_grad_(True)
            return critic
        if value_model is None:
            # Full fine-tuning: the critic starts from a copy of the policy's body (as the old PPOTrainer's value
            # model usually did); it is trained separately from the policy.
            return Critic(hidden_size, backbone=copy.deepcopy(_decoder(policy)))
        return Critic(_hidden_size(value_model), backbone=_value_backbone(value_model))

    def create_optimizer(self, model: Any = None) -> Any:
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        present = {id(p) for group in optimizer.param_groups for p in group["params"]}
        extra = [p for p in self.critic.trainable_parameters() if id(p) not in present]
        if extra:
            optimizer.add_param_group({"params": extra, "weight_decay": self.args.weight_decay})
        return optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        super()._save(output_dir, state_dict)
        self.critic.save(output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.critic.load(resume_from_checkpoint)

    # ---- rollout: scores, KL-shaped rewards, values, GAE --------------------------------------------------------

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        completions = completions_in_context(self._tokenizer, prompts, completions, completion_ids_list)
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rewards_per_func = rewards_per_func  # gathered over processes; the rollout below takes its own slice
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        args: PPOConfig = self.args  # type: ignore[assignment]
        completion_ids = output["completion_ids"]
        input_ids, attention_mask, mask = rollout_sequences(output)
        length = completion_ids.size(1)

        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        rewards_per_func = self._rewards_per_func[local]
        if torch.isnan(rewards_per_func).all(dim=1).any():
            raise FloatingPointError(
                f"Step {self.state.global_step}: a completion got no reward (every reward function returned None "
                "or NaN). PPO needs a score for every completion; check the reward functions."
            )
        scores = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)).nansum(dim=1)
        eos = torch.tensor(self.eos_token_ids, device=completion_ids.device)
        ends_with_eos = (torch.isin(completion_ids, eos) & (mask > 0)).any(dim=1)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~ends_with_eos).float()

        with torch.no_grad(), self.accelerator.autocast():
            logps = output.get("old_per_token_logps")
            if logps is None:
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, length, batch_size=args.per_device_train_batch_size
                )
                output["old_per_token_logps"] = logps
            values = self._values(input_ids, attention_mask, length, batch_size=args.per_device_train_batch_size)
        values = values * mask
        ref_logps = output.get("ref_per_token_logps")
        kl = (
            ppo_math.per_token_kl(logps.float(), ref_logps.float(), mask, args.kl_estimator)
            if ref_logps is not None
            else torch.zeros_like(mask)
        )
        rewards = ppo_math.shaped_rewards(scores, kl, mask, args.kl_coef)
        if args.whiten_rewards:
            rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = ppo_math.gae(rewards, values, mask, gamma=args.gamma, lam=args.lam)
        advantages = ppo_math.masked_whiten(advantages, mask)
        for name, tensor in (("scores", scores), ("values", values), ("advantages", advantages)):
            if not torch.isfinite(tensor).all():
                raise FloatingPointError(
                    f"Step {self.state.global_step}: the PPO {name} are not finite (NaN or inf). Training stopped "
                    "before the update; check the reward source, the learning rate and the critic."
                )
        output.update(advantages=advantages, values=values, returns=returns)

        gather = self.accelerator.gather
        non_score = (-args.kl_coef * kl).sum(1)
        metrics = self._metrics[mode]
        metrics["objective/kl"].append(gather(kl.sum(1).mean()).mean().item())
        metrics["objective/entropy"].append(gather((-logps.float() * mask).sum(1).mean()).mean().item())
        metrics["objective/non_score_reward"].append(gather(non_score.mean()).mean().item())
        metrics["objective/rlhf_reward"].append(gather((scores + non_score).mean()).mean().item())
        metrics["objective/scores"].append(gather(scores.mean()).mean().item())
        metrics["val/num_eos_tokens"].append(gather(ends_with_eos.sum().float()).sum().item())
        return output

    def _critic_forward(self) -> Any:
        """A shared-base critic runs without activation checkpointing: its recomputation would happen in the
        backward pass, where the policy's adapter is active again."""
        if not self.critic.shares_policy:
            return contextlib.nullcontext()
        return _compat.disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)

    def _values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, length: int, batch_size: int
    ) -> torch.Tensor:
        """V(s_t) for each completion token t: the critic at the position before it, [B, length]."""
        chunks = []
        for start in range(0, input_ids.size(0), batch_size):
            part = slice(start, start + batch_size)
            chunks.append(self.critic(input_ids[part], attention_mask[part])[:, -length - 1 : -1])
        return torch.cat(chunks)

    # ---- the loss -----------------------------------------------------------------------------------------------

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        args: PPOConfig = self.args  # type: ignore[assignment]
        mode = "train" if self.model.training else "eval"
        completion_ids = inputs["completion_ids"]
        input_ids, attention_mask, mask = rollout_sequences(inputs)
        length = completion_ids.size(1)
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, length, compute_entropy=True, compute_aux_loss=self.aux_loss_enabled
        )
        policy = ppo_math.policy_loss(
            logps.float(), inputs["old_per_token_logps"].float(), inputs["advantages"], mask, cliprange=args.cliprange
        )
        with self.accelerator.autocast(), self._critic_forward():
            values = self.critic(input_ids, attention_mask)[:, -length - 1 : -1]
        value, value_clipfrac = ppo_math.value_loss(
            values, inputs["values"], inputs["returns"], mask, cliprange_value=args.cliprange_value
        )
        loss = policy.loss + args.vf_coef * value
        if aux_loss is not None:
            loss = loss + self.router_aux_loss_coef * aux_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Step {self.state.global_step}: the PPO loss is not finite (policy {policy.loss.item()}, value "
                f"{value.item()}). Training stopped before the update; lower the learning rate or check the reward."
            )

        reduce = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["policy/approxkl_avg"].append(reduce(policy.approxkl).mean().item())
        metrics["policy/clipfrac_avg"].append(reduce(policy.clipfrac).mean().item())
        metrics["loss/policy_avg"].append(reduce(policy.loss.detach()).mean().item())
        metrics["loss/value_avg"].append(reduce(value.detach()).mean().item())
        metrics["val/clipfrac_avg"].append(reduce(value_clipfrac).mean().item())
        metrics["val/vpred"].append(reduce(ppo_math.masked_mean(values.detach(), mask)).mean().item())
        metrics["val/error"].append(
            reduce(ppo_math.masked_mean((values.detach() - inputs["returns"]) ** 2, mask)).mean().item()
        )
        metrics["val/ratio"].append(reduce(policy.ratio).mean().item())
        if entropies is not None:
            metrics["policy/entropy_avg"].append(reduce(ppo_math.masked_mean(entropies.detach(), mask)).mean().item())
        # HF's loss scaling over gradient accumulation is off for GRPO (it scales its own loss), so scale here.
        steps = getattr(self, "current_gradient_accumulation_steps", args.gradient_accumulation_steps)
        return loss / (steps if mode == "train" else 1.0)


def _value_backbone(value_model: Any) -> Any:
    from transformers import AutoModel

    from trl_plus.reward_model import RewardModel

    if isinstance(value_model, (str, Path)):
        with _compat.backbone_of_causal_lm(str(value_model), {}):
            return AutoModel.from_pretrained(str(value_model))
    if isinstance(value_model, RewardModel):
        return copy.deepcopy(value_model.backbone)  # the reward model keeps scoring; its copy learns values
    if hasattr(value_model, "base_model_prefix") and hasattr(value_model, value_model.base_model_prefix):
        return getattr(value_model, value_model.base_model_prefix)  # a causal LM or classifier: its body
    return value_model


def _hidden_size(value_model: Any) -> int:
    backbone = _value_backbone(value_model) if isinstance(value_model, (str, Path)) else value_model
    return int(backbone.config.get_text_config().hidden_size)


def _check_reward_tokenizers(sources: list[Any], dataset: Any) -> None:
    """Refuse a reward model that cannot read the policy's prompts (no tokenizer, or mostly unknown tokens)."""
    if dataset is None or not hasattr(dataset, "select"):
        return
    sample = [row["prompt"] for row in dataset.select(range(min(8, len(dataset))))]
    texts = [p if isinstance(p, str) else " ".join(str(m.get("content", "")) for m in p) for p in sample]
    for name, tokenizer in reward_tokenizers(sources):
        if tokenizer is None:
            raise ValueError(f"The {name} has no tokenizer; give it one (RewardModel.from_backbone(..., tokenizer=)).")
        unk = tokenizer.unk_token_id
        ids = [i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
        unknown = sum(i == unk for i in ids) if unk is not None else 0
        if not ids or unknown > 0.1 * len(ids):
            raise ValueError(
                f"The {name}'s tokenizer cannot read the policy's prompts: {unknown} of {len(ids)} tokens are "
                f"unknown ({tokenizer.unk_token!r}) on {texts[0]!r}. Train or load the reward model with a tokenizer "
                "that covers the policy's text."
            )


__all__ = ["Critic", "PPOConfig", "PPOTrainer"]
