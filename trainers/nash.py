"""`NashTrainer`: Nash learning from human feedback on TRL's `GRPOTrainer`, with any registered online loss.

GRPO samples `num_generations` completions y per prompt from the policy and computes the reference log-probs. This
trainer adds an opponent and a preference source:

- the opponent y′ of each sample (`NashConfig.opponent`), drawn without gradients:
  `mixture` (Nash-MD): the per-token geometric mixture log π̃ ∝ (1 − μ)·log π_θ + μ·log π_ref (`mixture_coef` μ);
  `policy` (self-play): the other samples of the same prompt (P is the mean preference over them);
  `reference`: π_ref itself; `ema`: an exponential moving average of the policy's weights;
  `snapshots`: one of the last `num_snapshots` policies, saved every `snapshot_every` steps, drawn per rollout;
- P(y ≻ y′) from the preference source (`trl_plus.judges.as_preference`: a `RewardModel` of any head, a
  sequence-classification reward model, a synthetic task's oracle, or a callable);
- the loss: a registered loss of input kind "online" (`nash_md`, `sppo_online`, `online_ipo`, or a plugin's),
  given the policy's and reference's summed log-probs of y and P, with `beta` the KL regularisation.

With PEFT the reference is the base model with the adapters truly off (TRL's `use_adapter(model, None)`), not
`get_base_model()`, which leaves LoRA layers active. The opponent's weights (EMA, snapshots) are copies of the
trainable parameters only: with LoRA, of the adapters.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate.utils import gather_object

from trl_plus.judges import as_preference
from trl_plus.registry import get_loss, list_losses
from trl_plus.trainers import _compat
from trl_plus.trainers._online import (
    Component,
    ParameterSnapshots,
    check_prompt_columns,
    completions_in_context,
    default_args,
    rollout_sequences,
    sample_mixture,
)
from trl_plus.trainers.preference import check_model_path

OPPONENTS = ("mixture", "policy", "reference", "ema", "snapshots")
SNAPSHOTS_FILE = "nash_opponent.pt"


@dataclass
class NashConfig(_compat.GRPOConfig):
    """GRPOConfig plus the opponent, the loss and its hyperparameters (defaults from TRL's last NashMDConfig where
    it had them)."""

    loss: str = field(default="nash_md", metadata={"help": "A registered loss of input kind 'online'."})
    loss_kwargs: dict[str, Any] | None = field(
        default=None, metadata={"help": "Further hyperparameters of the loss (beta comes from `beta`)."}
    )
    beta: float = field(default=0.1, metadata={"help": "KL regularisation towards the reference (the papers' τ)."})
    opponent: str = field(default="mixture", metadata={"help": f"Where y′ comes from: one of {OPPONENTS}."})
    mixture_coef: list[float] = field(
        default_factory=lambda: [0.5],
        metadata={
            "help": "μ of the geometric mixture (opponent='mixture'): one value, or one per epoch (the last one "
            "holds after); a float works too."
        },
    )
    ema_decay: float = field(default=0.99, metadata={"help": "Decay of the policy average (opponent='ema')."})
    snapshot_every: int = field(default=50, metadata={"help": "Steps between snapshots (opponent='snapshots')."})
    num_snapshots: int = field(default=5, metadata={"help": "Snapshots kept (opponent='snapshots')."})
    num_generations: int | None = field(default=2, metadata={"help": "Policy samples per prompt."})

    def __post_init__(self) -> None:
        if not isinstance(self.mixture_coef, list):
            self.mixture_coef = [float(self.mixture_coef)]
        coefs = self.mixture_coef
        checks = [
            ("beta", self.beta > 0, "must be > 0 (the reference anchors every Nash loss)"),
            ("opponent", self.opponent in OPPONENTS, f"must be one of {OPPONENTS}"),
            ("mixture_coef", bool(coefs) and all(0 <= c <= 1 for c in coefs), "must be in [0, 1]"),
            ("ema_decay", 0 <= self.ema_decay < 1, "must be in [0, 1)"),
            ("snapshot_every", self.snapshot_every >= 1, "must be ≥ 1"),
            ("num_snapshots", self.num_snapshots >= 1, "must be ≥ 1"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"NashConfig.{name} {rule}, got {getattr(self, name)!r}.")
        spec = get_loss(self.loss)
        if spec.input_kind != "online":
            raise ValueError(
                f"NashConfig.loss {self.loss!r} takes {spec.input_kind} data; the Nash trainer needs an online loss "
                f"({', '.join(s.name for s in list_losses('online'))})."
            )
        spec.check_kwargs({"beta": self.beta, **(self.loss_kwargs or {})})
        if self.opponent == "policy" and (self.num_generations or 0) < 2:
            raise ValueError("opponent='policy' plays the samples of a prompt against each other: num_generations ≥ 2.")
        if spec.name == "online_ipo" and self.opponent != "policy":
            raise ValueError("online_ipo compares two policy samples; use it with opponent='policy'.")
        super().__post_init__()


def partners(count: int, size: int) -> torch.Tensor:
    """Each sample's self-play partner: the next sample of its group of `size` consecutive rows, cyclically."""
    index = torch.arange(count)
    return index - index % size + (index % size + 1) % size


class NashTrainer(_compat.GRPOTrainer):
    """Nash learning against a preference source, on TRL's GRPO rollout (generation, reference, PEFT, logging)."""

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "nash"]

    def __init__(
        self,
        model: Any,
        preference: Any = None,
        args: NashConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        callbacks: Any = None,
        optimizers: tuple[Any, Any] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
    ) -> None:
        args = default_args(model, args, NashConfig, "Nash", "NashTrainer")
        if preference is None:
            raise ValueError(
                "NashTrainer needs a preference source: a RewardModel (e.g. the gpm head), a sequence-classification "
                "reward model or path, a synthetic task, or a callable judge(prompts, a, b) -> P(a ≻ b)."
            )
        check_prompt_columns("NashTrainer", train_dataset=train_dataset, eval_dataset=eval_dataset)
        check_model_path(model)
        self.prefer = as_preference(preference)

        def preference_placeholder(prompts: Any, completions: Any, **_: Any) -> list[float]:
            raise RuntimeError("NashTrainer scores completions itself (_calculate_rewards).")

        preference_placeholder.__name__ = "preference"
        super().__init__(
            model,
            reward_funcs=[preference_placeholder],
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        _compat.release_trainer_checkpoints(self)
        self.loss_spec = get_loss(args.loss)
        self.loss_kwargs = {"beta": args.beta, **(args.loss_kwargs or {})}
        self.snapshots: ParameterSnapshots | None = None
        if args.opponent in ("ema", "snapshots"):
            keep = 1 if args.opponent == "ema" else args.num_snapshots
            self.snapshots = ParameterSnapshots(self.accelerator.unwrap_model(self.model), keep=keep)
        self._opponent_generator = torch.Generator(device="cpu").manual_seed(args.seed)

    # ---- the opponent ---------------------------------------------------------------------------------------------

    def mixture_coef(self) -> float:
        coefs = self.args.mixture_coef
        return float(coefs[min(int(self.state.epoch or 0), len(coefs) - 1)])

    def _reference(self) -> Component:
        if self.ref_model is not None:
            return Component(1.0, self.ref_model)
        model = self.accelerator.unwrap_model(self.model)
        name = "ref" if "ref" in getattr(model, "peft_config", {}) else None
        return Component(1.0, model, lambda: _compat.use_adapter(model, adapter_name=name))

    def opponent_components(self) -> tuple[list[Component], contextlib.AbstractContextManager[Any]]:
        """(the mixture's components, a context to sample in) for this rollout's opponent."""
        args: NashConfig = self.args  # type: ignore[assignment]
        policy = self.accelerator.unwrap_model(self.model)
        if args.opponent == "mixture":
            mu = self.mixture_coef()
            reference = self._reference()
            return [
                Component(1 - mu, policy),
                Component(mu, reference.model, reference.context),
            ], contextlib.nullcontext()
        if args.opponent == "reference":
            return [self._reference()], contextlib.nullcontext()
        assert self.snapshots is not None
        index = (
            -1
            if args.opponent == "ema"
            else random.Random(self.state.global_step).randrange(len(self.snapshots.snapshots))
        )
        return [Component(1.0, policy)], self.snapshots.use(index)

    def _sample_opponents(self, prompts: list[Any]) -> list[Any]:
        prompt_ids, _, _ = self._tokenize_prompts(prompts)
        tokenizer = self._tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        device = self.accelerator.device
        prompt_tensors = [torch.tensor(tokens, device=device) for tokens in prompt_ids]
        ids = _compat.pad(prompt_tensors, padding_value=pad, padding_side="left")
        mask = _compat.pad([torch.ones_like(row) for row in prompt_tensors], padding_value=0, padding_side="left")
        components, context = self.opponent_components()
        policy = self.accelerator.unwrap_model(self.model)
        # Sample in training mode, as GRPO generates (see sample_mixture), with checkpointing off for the KV cache.
        no_checkpointing = _compat.disable_gradient_checkpointing(policy, self.args.gradient_checkpointing_kwargs)
        with context, no_checkpointing:
            completion_ids, _ = sample_mixture(
                components,
                ids,
                mask,
                max_new_tokens=self.max_completion_length,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=pad,
                temperature=self.temperature,
                generator=self._opponent_generator if device.type == "cpu" else None,
            )
        eos = set(self.eos_token_ids)
        rows = []
        for row in completion_ids.tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            rows.append(row[:cut])
        texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
        texts = completions_in_context(tokenizer, prompts, texts, rows)
        if _compat.is_conversational({"prompt": prompts[0]}):
            return [[{"role": "assistant", "content": text}] for text in texts]
        return texts

    # ---- scoring: P(y ≻ y′) -------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        """P(y ≻ y′) of each sample over its opponent, gathered over processes as GRPO's rewards are (GRPO logs it as
        the `preference` reward)."""
        args: NashConfig = self.args  # type: ignore[assignment]
        completions = completions_in_context(self._tokenizer, prompts, completions, completion_ids_list)
        device = self.accelerator.device
        if args.opponent == "policy":
            # A prompt's group can be split over processes: gather every sample, score all, keep everyone's.
            all_prompts, all_completions = gather_object(list(prompts)), gather_object(list(completions))
            self._rewards_gathered = self._self_play_preferences(all_prompts, all_completions).to(device)[:, None]
        else:
            opponents = self._sample_opponents(list(prompts))
            local = self.prefer(list(prompts), list(completions), opponents).to(device)
            self._rewards_gathered = self.accelerator.gather(local)[:, None]
        return self._rewards_gathered

    def _self_play_preferences(self, prompts: list[Any], completions: list[Any]) -> torch.Tensor:
        """Each sample's mean P(y ≻ y_j) over the other samples of its group (the `num_generations` consecutive rows
        of one prompt), all pairs in one call; also records each sample's partner (the next one in its group)."""
        size = self.num_generations if self.model.training else self.num_generations_eval
        pairs = [
            (i, j)
            for start in range(0, len(prompts), size)
            for i in range(start, start + size)
            for j in range(start, start + size)
            if i < j
        ]
        p = self.prefer(
            [prompts[i] for i, _ in pairs], [completions[i] for i, _ in pairs], [completions[j] for _, j in pairs]
        )
        total = torch.zeros(len(prompts))
        for (i, j), value in zip(pairs, p.tolist(), strict=True):
            total[i] += value
            total[j] += 1 - value
        self._partner_preference = self._partner_table(pairs, p, len(prompts), size)
        return total / max(size - 1, 1)

    @staticmethod
    def _partner_table(pairs: list[tuple[int, int]], p: torch.Tensor, count: int, size: int) -> torch.Tensor:
        """P(y_i ≻ y_partner(i)) for every sample i (see `partners`)."""
        lookup = {pair: value for pair, value in zip(pairs, p.tolist(), strict=True)}
        out = torch.zeros(count)
        for i, j in enumerate(partners(count, size).tolist()):
            out[i] = lookup[(i, j)] if (i, j) in lookup else 1 - lookup[(j, i)]
        return out

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        # Every value is a probability: `as_preference` refuses NaN and anything outside [0, 1] as it scores.
        output["preferences"] = self._rewards_gathered[local, 0]
        if self.loss_spec.name == "online_ipo":
            output.update(self._partner_log_ratios(output, local))
        return output

    def _partner_log_ratios(self, output: dict[str, Any], local: slice) -> dict[str, torch.Tensor]:
        """For self-play: each sample's partner's log π/π_ref at rollout time (a constant in the loss) and P over it."""
        input_ids, attention_mask, mask = rollout_sequences(output)
        with torch.no_grad():
            logps = output.get("old_per_token_logps")
            if logps is None:
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model,
                    input_ids,
                    attention_mask,
                    mask.size(1),
                    batch_size=self.args.per_device_train_batch_size,
                )
        ratio = ((logps - output["ref_per_token_logps"]) * mask).sum(1)
        everyone = self.accelerator.gather(ratio)
        size = self.num_generations if self.model.training else self.num_generations_eval
        partner = partners(everyone.numel(), size).to(everyone.device)
        return {
            "opponent_log_ratios": everyone[partner][local],
            "partner_preferences": self._partner_preference.to(everyone.device)[local],
        }

    # ---- the loss -----------------------------------------------------------------------------------------------

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> torch.Tensor:
        from trl_plus.types import OnlineLogps

        mode = "train" if self.model.training else "eval"
        completion_ids = inputs["completion_ids"]
        input_ids, attention_mask, mask = rollout_sequences(inputs)
        per_token, _, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_aux_loss=self.aux_loss_enabled
        )
        logps = (per_token.float() * mask).sum(1)
        ref_logps = (inputs["ref_per_token_logps"].float() * mask).sum(1)
        pairwise = self.loss_spec.name == "online_ipo"
        batch = OnlineLogps(
            logps=logps,
            lengths=mask.sum(1).long().clamp(min=1),
            preferences=(inputs["partner_preferences"] if pairwise else inputs["preferences"]).to(logps.dtype),
            ref_logps=ref_logps,
            opponent_log_ratios=inputs.get("opponent_log_ratios"),
        )
        output = self.loss_spec(batch, **self.loss_kwargs)
        loss = output.losses.mean()
        if aux_loss is not None:
            loss = loss + self.router_aux_loss_coef * aux_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Step {self.state.global_step}: the {self.loss_spec.name} loss is not finite. Training stopped "
                "before the update; lower the learning rate or check the preference source."
            )
        reduce = self.accelerator.gather
        metrics = self._metrics[mode]
        metrics["objective/kl"].append(reduce((logps - ref_logps).detach().mean()).mean().item())
        metrics[f"loss/{self.loss_spec.name}"].append(reduce(loss.detach()).mean().item())
        for name, value in output.metrics.items():
            metrics[f"{self.loss_spec.name}/{name}"].append(
                reduce(torch.as_tensor(value, device=loss.device)).mean().item()
            )
        steps = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return loss / (steps if mode == "train" else 1.0)

    # ---- EMA / snapshot opponents -------------------------------------------------------------------------------

    def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> None:
        # Called once per optimizer step, after it: the place to move the EMA or take a snapshot.
        self._update_opponent()
        super()._maybe_log_save_evaluate(*args, **kwargs)

    def _update_opponent(self) -> None:
        cfg: NashConfig = self.args  # type: ignore[assignment]
        if self.snapshots is None:
            return
        if cfg.opponent == "ema":
            self.snapshots.update_average(cfg.ema_decay)
        elif self.state.global_step % cfg.snapshot_every == 0 and self.state.global_step > 0:
            self.snapshots.take()

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.snapshots is not None:
            torch.save(self.snapshots.state_dict(), Path(output_dir or self.args.output_dir) / SNAPSHOTS_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / SNAPSHOTS_FILE
        if self.snapshots is not None and path.is_file():
            self.snapshots.load_state_dict(torch.load(path, weights_only=True))


__all__ = ["OPPONENTS", "NashConfig", "NashTrainer"]
