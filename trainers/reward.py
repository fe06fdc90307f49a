"""`RewardModelTrainer`: TRL's `RewardTrainer` loop for every registered reward head.

Swap `RewardTrainer` → `RewardModelTrainer` and `RewardConfig` → `RewardModelConfig` and pick `head="gpm"` (or `pl`,
`ensemble`, a plugin's head). TRL's dataset preparation (eos, chat templates, `max_length` filter), its pairwise
collator, margins, metrics and loop stay; what changes:

- The model is a `RewardModel`: an `AutoModel` backbone and the head, built from a path, a Hub id or a loaded
  model. With `peft_config` the adapters go on the backbone only, and the head trains in full precision next to
  them (QLoRA: pass a 4-bit `quantization_config`).
- Pairs also carry each prompt's length, so heads that condition on the prompt (`gpm`'s gates) see its last token.
- An optional `chosen_win_prob` column gives soft labels P*(chosen ≻ rejected) (e.g. the share of annotators who
  chose it): the loss becomes the cross-entropy against it, which carries far more signal per pair than a 0/1 label.
- `head_learning_rate` trains the freshly initialised head faster than the pretrained backbone.
- Ranked lists (a `prompt` and a `completions` column, best first, K ≥ 2, ragged allowed) train `pl` with the
  Plackett-Luce likelihood; pairs train every head, `pl` included (on pairs it is `bt`).
- Checkpoints and `save_model` use `RewardModel.save_pretrained`, so `RewardModel.from_pretrained` loads them.
- Eval metrics come from `trl_plus.metrics` (`evaluate` metrics): `accuracy` on held-out pairs (of P(chosen ≻
  rejected) > ½) and, on ranked lists, `kendall_tau` and the `accuracy` of P(best ≻ worst) > ½.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from datasets import Dataset

from trl_plus.metrics import KendallTau, PreferenceAccuracy
from trl_plus.registry import get_reward_head
from trl_plus.reward_model import POOLINGS, RewardModel
from trl_plus.trainers import _compat
from trl_plus.trainers._guard import FiniteGuardMixin, NonFiniteFields, check_win_probs
from trl_plus.trainers.preference import (
    DataCollatorForRankedPreference,
    check_model_path,
    check_preference_dataset,
    dataset_kind,
    first_row,
    tokenize_ranked,
)

SOFT_LABEL = "chosen_win_prob"


@dataclass
class RewardModelConfig(NonFiniteFields, _compat.RewardConfig):
    """`RewardConfig` plus the reward head; every `RewardConfig` field works as in TRL."""

    head: str | None = field(
        default=None,
        metadata={
            "help": "Registered reward head: `bt`, `pl`, `gpm`, `ensemble` or a plugin's (`trl-plus reward-heads` "
            "lists them). None: `bt` for a new model, the head of a RewardModel passed in."
        },
    )
    head_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": 'The head\'s hyperparameters, e.g. `{"embedding_dim": 8, "tau": 0.1}` for gpm.'},
    )

    pooling: str | None = field(
        default=None,
        metadata={
            "help": "What the head sees of each sequence: `last`, the last token's hidden state (as TRL's reward "
            "models), or `mean`, the mean over the completion's tokens. None: `last` for a new model, the pooling "
            "of a RewardModel passed in.",
            "choices": [None, *POOLINGS],
        },
    )

    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the head's parameters. None: `learning_rate`, as the backbone's."},
    )

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [*_compat.RewardConfig._VALID_DICT_FIELDS, "head_kwargs"]

    def __post_init__(self) -> None:
        if isinstance(self.head_kwargs, str):
            self.head_kwargs = json.loads(self.head_kwargs) if self.head_kwargs.strip() else None
        super().__post_init__()
        if self.head_learning_rate is not None and not self.head_learning_rate > 0:
            raise ValueError(f"`head_learning_rate` must be > 0, got {self.head_learning_rate}.")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}, got {self.pooling!r}.")
        spec = get_reward_head(self.head or "bt")  # an unknown name raises here, with suggestions
        kwargs = dict(self.head_kwargs or {})
        if self.center_rewards_coefficient is not None:
            if "center_rewards_coefficient" not in {hp.name for hp in spec.hyperparameters}:
                raise ValueError(
                    f"`center_rewards_coefficient` centres a scalar Bradley-Terry reward; the {spec.name!r} head does "
                    "not take it. Use head='bt', or unset it."
                )
            if kwargs.get("center_rewards_coefficient", self.center_rewards_coefficient) != (
                self.center_rewards_coefficient
            ):
                raise ValueError(
                    "`center_rewards_coefficient` is set twice, with different values (config and head_kwargs)."
                )
            kwargs["center_rewards_coefficient"] = self.center_rewards_coefficient
        spec.check_kwargs(kwargs)
        self.head_kwargs = kwargs or None


class _PairCollator(_compat.RewardCollator):
    """TRL's reward collator, plus each pair's prompt length (`prompt_lengths`, [B]) and, when the data has them,
    soft labels (`chosen_win_probs`, [B])."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        if "prompt_length" in examples[0]:
            output["prompt_lengths"] = torch.tensor([example["prompt_length"] for example in examples])
        if SOFT_LABEL in examples[0]:
            output["chosen_win_probs"] = torch.tensor([float(example[SOFT_LABEL]) for example in examples])
        return output


class RewardModelTrainer(FiniteGuardMixin, _compat.RewardTrainer):
    """Drop-in for `RewardTrainer` that trains a `RewardModel` with any registered head (`RewardModelConfig.head`)."""

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "reward-trainer"]

    def __init__(
        self,
        model: str | Path | Any,
        args: RewardModelConfig | _compat.RewardConfig | None = None,
        data_collator: Any = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        compute_metrics: Any = None,
        callbacks: Any = None,
        optimizers: Any = (None, None),
        optimizer_cls_and_kwargs: Any = None,
        preprocess_logits_for_metrics: Any = None,
        quantization_config: Any = None,
        peft_config: Any = None,
    ) -> None:
        if args is None:
            name = Path(str(model)).name if isinstance(model, (str, Path)) else type(model).__name__
            args = RewardModelConfig(f"{name}-Reward")
        elif not isinstance(args, RewardModelConfig):
            args = RewardModelConfig(**{f: getattr(args, f) for f in _init_fields(_compat.RewardConfig)})
        if train_dataset is None:
            raise ValueError("`train_dataset` is required")
        if getattr(args, "head_learning_rate", None) is not None and (
            optimizers[0] is not None or optimizer_cls_and_kwargs
        ):
            raise ValueError(
                "`head_learning_rate` splits the optimizer RewardModelTrainer builds; with your own optimizer, give "
                "the head's parameters (`model.head.parameters()`) their own param group instead."
            )
        train_dataset = legacy_tokenised_columns(train_dataset)
        if isinstance(eval_dataset, dict):
            eval_dataset = {name: legacy_tokenised_columns(data) for name, data in eval_dataset.items()}
        else:
            eval_dataset = legacy_tokenised_columns(eval_dataset)
        self._ranked = self._check_data(args, train_dataset, eval_dataset, model)

        from transformers import set_seed

        set_seed(args.seed)  # the head's initialisation
        model = self._build_model(model, args, processing_class, quantization_config)
        if peft_config is not None:
            model.backbone = _with_adapters(model.backbone, peft_config, args)
        processing_class = processing_class or model.tokenizer
        if processing_class is None:
            raise ValueError(
                "The model passed in has no tokenizer and no name to load one from: pass `processing_class=`."
            )
        model.tokenizer = processing_class  # saved with the model
        if data_collator is None:
            pad_token = args.pad_token or processing_class.pad_token or processing_class.eos_token
            pad_id = processing_class.convert_tokens_to_ids(pad_token)
            if self._ranked:
                data_collator = DataCollatorForRankedPreference(pad_id, pad_to_multiple_of=args.pad_to_multiple_of)
            else:
                data_collator = _PairCollator(pad_token_id=pad_id, pad_to_multiple_of=args.pad_to_multiple_of)
        self._eval_accuracy, self._eval_kendall = PreferenceAccuracy(), KendallTau()
        self._eval_pending: list[Any] = []  # metrics with batches added since their last compute
        with _compat.reward_init_with(args, model):
            super().__init__(
                model=model,
                args=args,
                data_collator=data_collator,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                compute_metrics=compute_metrics,
                callbacks=callbacks,
                optimizers=optimizers,
                optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
                preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            )

    # ---- set-up ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_data(args: RewardModelConfig, train_dataset: Any, eval_dataset: Any, model: Any) -> bool:
        """Validate the datasets before any model loads; True for ranked lists."""

        def kind(dataset: Any, name: str) -> str:
            first = first_row(dataset, name)
            if "chosen_ids" not in first:
                return check_preference_dataset(dataset, name)  # which checks the soft labels too
            check_win_probs(dataset, name)
            return dataset_kind(first)

        kinds = {"train": kind(train_dataset, "train")}
        evals = eval_dataset if isinstance(eval_dataset, dict) else {"eval": eval_dataset}
        for name, dataset in evals.items():
            if dataset is not None:
                kinds[name] = kind(dataset, name)
        if len(set(kinds.values())) > 1:
            raise ValueError(f"The train and eval datasets must be the same kind (pairs or ranked lists); got {kinds}.")
        ranked = kinds["train"] == "ranked"
        head = get_reward_head(args.head or (model.head_name if isinstance(model, RewardModel) else "bt"))
        if ranked and not hasattr(head.target, "ranked_loss"):
            raise ValueError(
                f"Ranked lists (a `completions` column) train the Plackett-Luce head, head='pl'; the {head.name!r} "
                "head trains on pairs (`chosen`/`rejected`)."
            )
        return ranked

    @staticmethod
    def _build_model(model: Any, args: RewardModelConfig, tokenizer: Any, quantization_config: Any) -> RewardModel:
        if isinstance(model, RewardModel):
            if args.head is not None and get_reward_head(args.head).name != model.head_name:
                raise ValueError(
                    f"The RewardModel passed in has the {model.head_name!r} head, but the config asks for "
                    f"{args.head!r}. Unset `head`, or build a new model with RewardModel.from_backbone."
                )
            if args.head_kwargs and args.head_kwargs != model.head_kwargs:
                raise ValueError(
                    f"The RewardModel passed in was built with head_kwargs={model.head_kwargs}, not "
                    f"{args.head_kwargs}; its head already exists, so set them when building it."
                )
            if args.pooling is not None and args.pooling != model.pooling:
                raise ValueError(
                    f"The RewardModel passed in pools with {model.pooling!r}, but the config asks for {args.pooling!r}."
                )
            return model
        check_model_path(model)
        load_kwargs: dict[str, Any] = {"dtype": torch.float32, **(args.model_init_kwargs or {})}
        load_kwargs.setdefault("trust_remote_code", args.trust_remote_code)  # as TRL's RewardTrainer does
        if quantization_config is not None:
            if "quantization_config" in load_kwargs:
                raise ValueError(
                    "You set `quantization_config` both as a trainer argument and in `args.model_init_kwargs`; set it "
                    "in one place."
                )
            load_kwargs["quantization_config"] = quantization_config
        if not isinstance(model, (str, Path)):
            load_kwargs = {}
        return RewardModel.from_backbone(
            model,
            args.head or "bt",
            args.head_kwargs,  # type: ignore[arg-type]  # a dict once __post_init__ ran
            tokenizer=tokenizer,
            pooling=args.pooling or "last",
            **load_kwargs,
        )

    # ---- data -----------------------------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        first = next(iter(dataset))
        if dataset_kind(first) == "ranked":
            eos = processing_class.eos_token
            ranked = tokenize_ranked(dataset, processing_class, eos, args.dataset_num_proc, dataset_name)
            if args.max_length is None:
                return ranked
            # As TRL filters pairs: drop the lists whose prompt + longest completion exceeds max_length.
            longest = args.max_length
            return ranked.filter(lambda row: len(row["prompt_ids"]) + max(map(len, row["completion_ids"])) <= longest)
        prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if "prompt_length" in next(iter(prepared)):
            return prepared

        def add_prompt_length(example: dict[str, Any]) -> dict[str, Any]:
            # Where the prompt's tokens end inside prompt + chosen; without a `prompt` column (implicit prompts,
            # tokenised data) the prompt is what chosen and rejected share.
            shared = _compat.common_prefix_length(example["chosen_ids"], example["rejected_ids"])
            if "prompt" in example:
                prompt = example["prompt"]
                if _compat.is_conversational({"prompt": prompt}):
                    ids = _compat.tokenize(processing_class, prompt, add_generation_prompt=True)["input_ids"]
                else:
                    ids = _compat.tokenize(processing_class, prompt)["input_ids"]
                shared = min(shared, _compat.common_prefix_length(ids, example["chosen_ids"]))
            return {"prompt_length": max(shared, 1)}

        map_kwargs: dict[str, Any] = {}
        if isinstance(prepared, Dataset):
            map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Finding prompt lengths in {dataset_name}"}
        return prepared.map(add_prompt_length, **map_kwargs)

    def _set_signature_columns_if_needed(self) -> None:
        # Pairs (TRL's columns, prompt lengths, soft labels) and ranked lists (prompt and completion ids).
        pairs = ["chosen_ids", "rejected_ids", "margin", "prompt_length", SOFT_LABEL]
        current: list[str] | None = self._signature_columns  # type: ignore[has-type]
        self._signature_columns = current or [*pairs, "prompt_ids", "completion_ids"]

    # ---- loss -----------------------------------------------------------------------------------------------------

    @property
    def reward_model(self) -> RewardModel:
        model = self.accelerator.unwrap_model(self.model)
        assert isinstance(model, RewardModel)
        return model

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        mode = "train" if self.model.training else "eval"
        head = self.reward_model.head
        if "rank_index" in inputs:
            loss, preference, first, last = self._ranked_loss(model, inputs, mode)
        else:
            lengths = inputs.get("prompt_lengths")
            outputs, prompt = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                prompt_lengths=None if lengths is None else lengths.repeat(2),
            )
            chosen, rejected = outputs.chunk(2)
            prompt = None if prompt is None else prompt.chunk(2)[0]
            target = inputs.get("chosen_win_probs")
            loss = head.pairwise_loss(chosen, rejected, prompt, inputs.get("margin"), target).losses.mean()
            with torch.no_grad():
                preference = head.prefer(chosen, rejected, prompt)
                first, last = chosen, rejected

        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        self._log_batch(mode, preference, first, last)
        return (loss, {"preference": preference}) if return_outputs else loss

    def _ranked_loss(
        self, model: Any, inputs: dict[str, Any], mode: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Plackett-Luce over each list; returns (loss, P(best ≻ worst) per list, best outputs, worst outputs)."""
        head = self.reward_model.head
        attention_mask = inputs["attention_mask"]
        prompt_lengths = (attention_mask - inputs["completion_mask"]).sum(-1)
        outputs, _ = model(input_ids=inputs["input_ids"], attention_mask=attention_mask, prompt_lengths=prompt_lengths)
        index = inputs["rank_index"]
        mask = index >= 0
        rewards = outputs[index.clamp(min=0)]
        loss = head.ranked_loss(rewards, mask).losses.mean()  # type: ignore[operator]
        with torch.no_grad():
            last = mask.sum(-1) - 1
            best, worst = rewards[:, 0], rewards.gather(-1, last[:, None]).squeeze(-1)
            if mode == "eval":
                scores = rewards.masked_fill(~mask, float("nan"))
                scores = self.accelerator.pad_across_processes(scores, dim=1, pad_index=float("nan"))
                scores = self.accelerator.gather_for_metrics(scores)
                self._eval_add(
                    self._eval_kendall,
                    predictions=[row[~row.isnan()].tolist() for row in scores.float().cpu()],
                    references=[list(range(int((~row.isnan()).sum()))) for row in scores.cpu()],
                )
        return loss, head.prefer(best, worst), best, worst

    def _log_batch(self, mode: str, preference: torch.Tensor, first: torch.Tensor, last: torch.Tensor) -> None:
        """TRL's reward metrics (reward min/mean/max, margin, accuracy) for scalar heads; accuracy for every head.
        In eval, accuracy goes to the `evaluate` metric and is computed once over the whole eval set."""
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self._total_train_tokens]
        gather = self.accelerator.gather_for_metrics
        if mode == "eval":
            probabilities = gather(preference.detach()).float().cpu()
            self._eval_add(self._eval_accuracy, predictions=probabilities.tolist(), references=[1] * len(probabilities))
        else:
            right = (preference > 0.5).float() + 0.5 * (preference == 0.5).float()
            metrics["accuracy"].append(gather(right.mean()).mean().item())
        head = self.reward_model.head
        if head.output == "reward":
            r_first, r_last = head.rewards(first), head.rewards(last)
            rewards = self.accelerator.gather(torch.cat([r_first, r_last]).detach())  # as TRL: min/max need no trim
            metrics["min_reward"].append(rewards.min().item())
            metrics["mean_reward"].append(rewards.mean().item())
            metrics["max_reward"].append(rewards.max().item())
            metrics["margin"].append(gather((r_first - r_last).mean()).mean().item())

    def _eval_add(self, metric: Any, **batch: Any) -> None:
        metric.add_batch(**batch)
        if metric not in self._eval_pending:
            self._eval_pending.append(metric)

    def predict(self, test_dataset: Any, ignore_keys: Any = None, metric_key_prefix: str = "test") -> Any:
        """As TRL's `evaluate`: a raw dataset is prepared (tokenised) first, so `predict` takes what `evaluate` takes.
        The predictions are P(chosen ≻ rejected) per pair ([B]), not TRL's logits."""
        test_dataset = self._prepare_dataset(test_dataset, self.processing_class, self.args, metric_key_prefix)
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """Trainer's loop (evaluate and predict), with the `evaluate` metrics started afresh and computed once at
        the end over everything the loop saw, under the loop's metric prefix."""
        self._eval_accuracy, self._eval_kendall = PreferenceAccuracy(), KendallTau()
        self._eval_pending = []
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
        while self._eval_pending:
            output.metrics.update({f"{prefix}_{k}": v for k, v in self._eval_pending.pop(0).compute().items()})
        return output

    def create_optimizer(self, model: Any = None) -> Any:
        """TRL's optimizer; with `head_learning_rate`, the head's parameters get their own groups at that rate
        (the scheduler then scales every group alike)."""
        built_here = self.optimizer is None
        optimizer = super().create_optimizer(model)
        rate = getattr(self.args, "head_learning_rate", None)
        if rate is None or not built_here:
            return optimizer
        head = {id(p) for p in self.reward_model.head.parameters()}
        groups = optimizer.param_groups
        optimizer.param_groups = []
        for group in groups:
            for in_head in (False, True):
                params = [p for p in group["params"] if (id(p) in head) == in_head]
                if params:
                    optimizer.add_param_group({**group, "params": params, **({"lr": rate} if in_head else {})})
        return optimizer

    # ---- saving and loading ---------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """`RewardModel.save_pretrained` (backbone or adapters, tokenizer, head), as `Trainer._save` does for a
        `PreTrainedModel`; a plain `nn.Module` would get one state-dict file that `from_pretrained` cannot read."""
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        self.reward_model.save_pretrained(output_dir, state_dict=state_dict)
        torch.save(self.args, Path(output_dir) / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        self.reward_model.load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self.reward_model.load_weights(self.state.best_model_checkpoint)  # type: ignore[arg-type]


def _init_fields(config_class: type) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(config_class) if f.init]


def _with_adapters(backbone: Any, peft_config: Any, args: RewardModelConfig) -> Any:
    """PEFT adapters on the backbone alone: the head is an ordinary module next to it and trains in full.

    The backbone is a bare `AutoModel`, so the config's `task_type` (a TRL script may say SEQ_CLS or CAUSAL_LM) is
    dropped, and so is `score` from `modules_to_save`: it names the head of TRL's sequence-classification model,
    which a RewardModel does not have (its head trains anyway).
    """
    import dataclasses

    from peft import PeftConfig, get_peft_model

    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"`peft_config` must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}.")
    if _compat.is_peft_model(backbone):
        raise ValueError(
            "The backbone already has PEFT adapters and a peft_config was passed too; merge and unload the adapters "
            "first, or pass no peft_config."
        )
    modules = [name for name in (getattr(peft_config, "modules_to_save", None) or []) if name != "score"]
    changes: dict[str, Any] = {"task_type": None}
    if hasattr(peft_config, "modules_to_save"):
        changes["modules_to_save"] = modules or None
    backbone = get_peft_model(backbone, dataclasses.replace(peft_config, **changes))
    if args.gradient_checkpointing:
        backbone.enable_input_require_grads()
    return backbone


def legacy_tokenised_columns(dataset: Any) -> Any:
    """`chosen_input_ids`/`rejected_input_ids`, the tokenised columns TRL's RewardTrainer still accepts with a
    deprecation warning, renamed to today's `chosen_ids`/`rejected_ids` with the same warning."""
    columns = getattr(dataset, "column_names", None) or []
    if "chosen_input_ids" not in columns or "rejected_input_ids" not in columns or "chosen_ids" in columns:
        return dataset
    warnings.warn(  # TRL's wording, which its tests match ("will not be supported in v1")
        "Detected legacy dataset columns `chosen_input_ids`/`rejected_input_ids`; they are deprecated and will not be "
        "supported in v1. They are read as `chosen_ids`/`rejected_ids`; rename them to silence this warning.",
        FutureWarning,
        stacklevel=3,
    )
    return dataset.rename_columns({"chosen_input_ids": "chosen_ids", "rejected_input_ids": "rejected_ids"})
