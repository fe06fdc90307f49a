"""`RewardModel`: a backbone loaded with `AutoModel` and a registered reward head, with one interface for every head.

The backbone reads prompt + completion as one sequence (as TRL's RewardTrainer does); the head sees the hidden state
of the last real token (`pooling="last"`) or the mean over the completion's tokens (`pooling="mean"`), and heads that
condition on the prompt (`gpm`) also see the prompt's last token. `RewardFunction` turns a model into a reward
function for TRL's GRPOTrainer and RLOOTrainer.

Saved layout (`save_pretrained`): the tokenizer when there is one, `reward_head.safetensors` (the head's weights, full
precision) and `reward_head.json` (the head's registry name, hyperparameters and pooling), which `from_pretrained`
reads to rebuild the same head (it refuses a checkpoint saved with another one); and the weights, in one of two forms:

- a scalar reward that is linear in the last token's state (`bt`, `pl`, `ensemble`'s mean, pooling "last", a full
  backbone) saves as a standard sequence-classification checkpoint: `num_labels=1`, the reward as `score.weight`,
  the backbone under its usual prefix. `AutoModelForSequenceClassification.from_pretrained` loads it without
  trl-plus, so TRL's online trainers, reward serving stacks and the Hub get the same rewards as `score`;
- anything else (`gpm`, mean pooling, a PEFT backbone's adapters) saves the backbone's own files; a
  sequence-classification load of those would start from a random `score` layer, so the config says what the
  checkpoint is (`trl_plus_reward_head`) and `config.json`'s architectures name the backbone, not a classifier.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trl_plus.heads import RewardHead
from trl_plus.registry import get_reward_head
from trl_plus.trainers import _compat

logger = logging.getLogger(__name__)
HEAD_CONFIG = "reward_head.json"
HEAD_WEIGHTS = "reward_head.safetensors"
SCORE_KEY = "score.weight"  # the sequence-classification layer of transformers' *ForSequenceClassification


POOLINGS = ("last", "mean")


def load_model_weights(model: Any, path: str | Path, device: torch.device | str) -> None:
    """Load what `save_pretrained` wrote to `path` (one safetensors file or shards) into `model`, in place; a
    sequence-classification checkpoint's backbone prefix and `score` layer are taken off."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    files = ["model.safetensors"]
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(path / name), device=str(device)))
    prefix = f"{model.base_model_prefix}."
    if SCORE_KEY in state:
        state = {k.removeprefix(prefix): v for k, v in state.items() if k != SCORE_KEY}
    model.load_state_dict(state)


def sequence_classification_class(config: Any) -> str | None:
    """The name of transformers' sequence-classification class for `config`'s architecture, or None."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(getattr(config, "model_type", None))


def prompt_groups(prompts: Sequence[Any]) -> list[list[int]]:
    """Indices of equal prompts (plain text or chat messages), in order of first appearance: the completions that
    answer the same prompt, as GRPO and RLOO sample them."""
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(prompt, sort_keys=True), []).append(index)
    return list(groups.values())


def last_token_states(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, H] at position lengths − 1 of each row (right padding), [B, H]."""
    index = (lengths - 1).clamp(min=0).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def completion_mean_states(hidden: torch.Tensor, attention_mask: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """The mean of hidden [B, T, H] over each row's completion tokens (from `starts` to the last real token)."""
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    mask = attention_mask.bool() & (positions[None, :] >= starts.to(hidden.device)[:, None])
    weights = mask.to(hidden.dtype)
    return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)


def _tokenizer_kwargs(load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The model-loading settings that apply to its tokenizer too."""
    return {key: load_kwargs[key] for key in ("revision", "trust_remote_code") if key in load_kwargs}


def _sequence_classifier_parts(model: Any) -> tuple[Any, Any]:
    """(backbone, `score` layer) of a loaded `*ForSequenceClassification` model (PEFT-wrapped or not), as TRL's
    RewardTrainer takes one; (None, None) for any other model. One label only, as TRL requires."""
    inner = model.get_base_model() if _compat.is_peft_model(model) else model
    if not type(inner).__name__.endswith("ForSequenceClassification"):
        return None, None
    labels = getattr(inner.config, "num_labels", None)
    if labels != 1:
        raise ValueError(
            f"The model has `num_labels={labels}`, but reward models require `num_labels=1`: one scalar reward per "
            "sequence. Load it with `num_labels=1`, or pass the checkpoint's path or Hub id instead."
        )
    return getattr(inner, inner.base_model_prefix), getattr(inner, "score", None)


def _scores_like(head: nn.Module, score: Any) -> bool:
    """Whether `head` reads the reward through a `score` layer of the classifier's shape (bt and pl do)."""
    own = getattr(head, "score", None)
    weight = getattr(score, "weight", None)
    return isinstance(own, nn.Linear) and weight is not None and own.weight.shape == weight.shape


class RewardModel(nn.Module):
    """Backbone + head. `score(prompts, completions)` and `prefer(prompts, a, b)` work for every head."""

    def __init__(
        self,
        backbone: Any,
        head: RewardHead,
        head_name: str,
        head_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.pooling = pooling
        self.backbone = backbone
        self.head = head
        self.head_name = head_name
        self.head_kwargs = dict(head_kwargs or {})
        self.tokenizer = tokenizer
        self.config = backbone.config

    # ---- construction -----------------------------------------------------------------------------------------

    @classmethod
    def from_backbone(
        cls,
        model: str | Path | Any,
        head: str = "bt",
        head_kwargs: dict[str, Any] | None = None,
        *,
        tokenizer: Any = None,
        pooling: str = "last",
        **load_kwargs: Any,
    ) -> RewardModel:
        """A new reward model: the backbone of `model` (a path, a Hub id or a loaded model; a causal LM gives its
        base model) and a freshly initialised `head`. `load_kwargs` go to `AutoModel.from_pretrained` (dtype,
        quantization_config, revision...); the head stays in full precision."""
        from transformers import AutoModel, AutoTokenizer

        spec = get_reward_head(head)
        kwargs = dict(head_kwargs or {})
        spec.check_kwargs(kwargs)
        score = None
        if isinstance(model, (str, Path)):
            with _compat.backbone_of_causal_lm(str(model), load_kwargs):
                backbone = AutoModel.from_pretrained(str(model), **load_kwargs)
            _compat.release_checkpoint_mapping(backbone)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model), **_tokenizer_kwargs(load_kwargs))
        else:
            backbone, score = _sequence_classifier_parts(model)
            if backbone is None:
                backbone = model.get_decoder() if hasattr(model, "get_decoder") and hasattr(model, "lm_head") else model
            source = getattr(model.config, "_name_or_path", "")
            if tokenizer is None and source:  # as TRL's trainers do for a model passed in loaded
                tokenizer = AutoTokenizer.from_pretrained(source, **_tokenizer_kwargs(load_kwargs))
        hidden_size = backbone.config.get_text_config().hidden_size
        module = spec.build(hidden_size, **kwargs)
        if score is not None and pooling == "last" and _scores_like(module, score):
            # A trained sequence classifier keeps its reward: its `score` is the linear head on the last token.
            with torch.no_grad():
                module.score.weight.copy_(score.weight)
        return cls(backbone, module, spec.name, kwargs, tokenizer, pooling)

    @classmethod
    def from_pretrained(cls, path: str | Path, head: str | None = None, **load_kwargs: Any) -> RewardModel:
        """Load a model saved with `save_pretrained`; `head`, when given, must name the head it was saved with."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / HEAD_CONFIG).is_file():
            raise FileNotFoundError(
                f"{path} has no {HEAD_CONFIG}: it is not a RewardModel checkpoint. Build a new reward model from a "
                "backbone with RewardModel.from_backbone(path, head=...)."
            )
        saved = json.loads((path / HEAD_CONFIG).read_text())
        spec = get_reward_head(saved["head"])
        if head is not None and get_reward_head(head).name != spec.name:
            raise ValueError(
                f"{path} was saved with the {spec.name!r} head, not {head!r}. Load it with head={spec.name!r} (or "
                "no head), or train a new reward model with the head you want."
            )
        with _compat.backbone_of_causal_lm(str(path), load_kwargs):
            backbone = AutoModel.from_pretrained(str(path), **load_kwargs)
        _compat.release_checkpoint_mapping(backbone)
        hidden_size = backbone.config.get_text_config().hidden_size
        module = spec.build(hidden_size, **saved["head_kwargs"])
        module.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
        has_tokenizer = (path / "tokenizer_config.json").exists()
        tokenizer = (
            AutoTokenizer.from_pretrained(str(path), **_tokenizer_kwargs(load_kwargs)) if has_tokenizer else None
        )
        pooling = saved.get("pooling", "last")
        return cls(backbone, module.to(backbone.device), spec.name, saved["head_kwargs"], tokenizer, pooling)

    def save_pretrained(
        self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None, **kwargs: Any
    ) -> None:
        """Save the model; `state_dict` (this module's, `backbone.*` and `head.*` keys) replaces the live weights,
        as a trainer gathers them under DeepSpeed ZeRO-3 or FSDP."""
        path = Path(path)
        head_state = self.head.state_dict()
        backbone_state = None
        if state_dict is not None:
            backbone_state = {
                k.removeprefix("backbone."): v for k, v in state_dict.items() if k.startswith("backbone.")
            }
            head_state = {k.removeprefix("head."): v for k, v in state_dict.items() if k.startswith("head.")}
        weight = self.head.linear_reward(head_state) if self.pooling == "last" else None
        classifier = sequence_classification_class(self.backbone.config)
        if weight is not None and classifier is not None and not _compat.is_peft_model(self.backbone):
            # A standard sequence-classification checkpoint: the backbone under its prefix, the reward as `score`.
            prefix = self.backbone.base_model_prefix
            backbone_state = self.backbone.state_dict() if backbone_state is None else backbone_state
            kwargs["state_dict"] = {f"{prefix}.{k}": v for k, v in backbone_state.items()}
            kwargs["state_dict"][SCORE_KEY] = weight.detach().to(self.backbone.dtype).contiguous()
            self.backbone.save_pretrained(str(path), **kwargs)
            self._sequence_classification_config(classifier).save_pretrained(str(path))
        else:
            if backbone_state is not None:
                kwargs["state_dict"] = backbone_state
            self.backbone.save_pretrained(str(path), **kwargs)
            config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else None
            if config is not None:  # a full backbone (PEFT saves adapters and their own config)
                config["trl_plus_reward_head"] = self.head_name
                (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path))
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in head_state.items()}
        save_file(state, str(path / HEAD_WEIGHTS))
        (path / HEAD_CONFIG).write_text(
            json.dumps({"head": self.head_name, "head_kwargs": self.head_kwargs, "pooling": self.pooling}, indent=2)
            + "\n"
        )

    def _sequence_classification_config(self, classifier: str) -> Any:
        """The backbone's config as a one-label sequence classifier, padding with the tokenizer's pad token."""
        import copy

        config = copy.deepcopy(self.backbone.config)
        config.architectures = [classifier]
        config.num_labels = 1
        config.trl_plus_reward_head = self.head_name
        pad = None if self.tokenizer is None else self.tokenizer.pad_token_id
        if pad is not None:
            config.pad_token_id = pad
            if pad == self.tokenizer.eos_token_id:
                logger.warning(
                    "The tokenizer pads with its eos token: a sequence-classification model reads the last token "
                    "that is not padding, so loaded with AutoModelForSequenceClassification this reward model "
                    "scores the token before a final eos, while RewardModel.score reads the eos itself. Give the "
                    "tokenizer a pad token of its own for identical rewards."
                )
        return config

    def load_weights(self, path: str | Path) -> None:
        """Load the weights `save_pretrained` wrote to `path` into this model (a PEFT backbone loads its adapters);
        the trainer resumes checkpoints with it."""
        path = Path(path)
        if _compat.is_peft_model(self.backbone):
            from peft import load_peft_weights, set_peft_model_state_dict

            set_peft_model_state_dict(self.backbone, load_peft_weights(str(path), device=str(self.head_device)))
        else:
            load_model_weights(self.backbone, path, self.head_device)
        self.head.load_state_dict(load_file(str(path / HEAD_WEIGHTS), device=str(self.head_device)))

    @property
    def head_device(self) -> torch.device:
        return next(self.head.parameters()).device

    # ---- what transformers' Trainer asks of a model (delegated to the backbone) ---------------------------------

    @property
    def supports_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone, "supports_gradient_checkpointing", False))

    def gradient_checkpointing_enable(self, **kwargs: Any) -> None:
        self.backbone.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.gradient_checkpointing_disable()

    # transformers' newer names: Trainer calls these when they exist, and warns when only the old ones do.
    def activation_checkpointing_enable(self, **kwargs: Any) -> None:
        self.backbone.activation_checkpointing_enable(**kwargs)

    def activation_checkpointing_disable(self) -> None:
        self.backbone.activation_checkpointing_disable()

    def enable_input_require_grads(self) -> None:
        self.backbone.enable_input_require_grads()

    def add_model_tags(self, tags: list[str] | str) -> None:
        if hasattr(self.backbone, "add_model_tags"):
            self.backbone.add_model_tags(tags)

    def can_generate(self) -> bool:
        return False  # it scores sequences; TRL's `clone_chat_template` then leaves generation settings alone

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        """The backbone's, for tokens a cloned chat template adds (`chat_template_path`)."""
        return self.backbone.resize_token_embeddings(*args, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self.backbone.get_input_embeddings().num_embeddings

    @property
    def model_tags(self) -> list[str]:
        """The Hub tags the model card gets (the trainers add theirs), read from the backbone as transformers does."""
        return list(getattr(self.backbone, "model_tags", None) or [])

    # ---- computation ------------------------------------------------------------------------------------------

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(response states [B, H], prompt states [B, H] or None), in the head's dtype."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        dtype = next(self.head.parameters()).dtype
        if self.pooling == "mean":
            if prompt_lengths is None:
                raise ValueError("pooling='mean' averages the completion's tokens and needs `prompt_lengths`.")
            response = completion_mean_states(hidden, attention_mask, prompt_lengths).to(dtype)
        else:
            response = last_token_states(hidden, attention_mask.sum(-1)).to(dtype)
        prompt = None if prompt_lengths is None else last_token_states(hidden, prompt_lengths).to(dtype)
        return response, prompt

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_lengths: torch.Tensor | None = None,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the head's outputs per sequence, the prompt states or None)."""
        response, prompt = self.encode(input_ids, attention_mask, prompt_lengths)
        return self.head(response, prompt), prompt

    def _ids(self, prompt: Any, completion: Any) -> tuple[list[int], list[int]]:
        """(prompt ids, prompt + completion ids), tokenised as RewardModelTrainer tokenises its data: plain text gets
        the eos appended; chat messages go through the tokenizer's chat template."""
        if not _compat.is_conversational({"prompt": prompt}) and not (
            isinstance(prompt, str) and isinstance(completion, str)
        ):
            raise TypeError(
                "Prompts and completions must both be strings, or both be lists of chat messages; got "
                f"{type(prompt).__name__} and {type(completion).__name__}."
            )
        prompt_ids, (ids,) = _compat.tokenize_prompt_completions(
            self.tokenizer, prompt, [completion], self.tokenizer.eos_token
        )
        return prompt_ids, ids

    def _tokenize(self, prompts: Sequence[Any], completions: Sequence[Any]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError("This RewardModel has no tokenizer; pass tokenizer= to from_backbone.")
        for name, value in (("prompts", prompts), ("completions", completions)):
            if isinstance(value, str):  # a string is a sequence too: it would be read one character per row
                raise TypeError(
                    f"`{name}` is one string ({value[:40]!r}); pass a list, one entry per row: [{value[:20]!r}]."
                )
        if len(prompts) != len(completions):
            raise ValueError(f"Got {len(prompts)} prompts for {len(completions)} completions.")
        rows, prompt_lengths = [], []
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids, ids = self._ids(prompt, completion)
            rows.append(ids)
            # The prompt ends where its tokens stop matching (a completion can merge with the prompt's last token).
            prompt_lengths.append(max(_compat.common_prefix_length(prompt_ids, ids), 1))
        width = max(len(ids) for ids in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention_mask[i, : len(ids)] = 1
        device = next(self.parameters()).device
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": attention_mask.to(device),
            "prompt_lengths": torch.tensor(prompt_lengths, device=device),
        }

    @torch.no_grad()
    def outputs(self, prompts: Sequence[Any], completions: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's outputs and the prompt states for prompt/completion pairs (plain text or chat messages)."""
        outputs, prompt = self(**self._tokenize(prompts, completions))
        assert prompt is not None
        return outputs, prompt

    @torch.no_grad()
    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        """Scalar heads: one reward per completion ([N]; an ensemble gives its mean, see `summary`).
        `gpm`: the completion embeddings ([N, 2k]), to compare with `prefer` or `head.score`."""
        outputs, _ = self.outputs(prompts, completions)
        return outputs if self.head.output == "embedding" else self.head.rewards(outputs)

    @torch.no_grad()
    def prefer(
        self, prompts: Sequence[Any], completions_a: Sequence[Any], completions_b: Sequence[Any]
    ) -> torch.Tensor:
        """P(a ≻ b) per prompt, [N]; prefer(a, b) = 1 − prefer(b, a) for every head."""
        a, prompt = self.outputs(prompts, completions_a)
        b, _ = self.outputs(prompts, completions_b)
        return self.head.prefer(a, b, prompt)


class RewardFunction:
    """A RewardModel as a reward function for TRL's online trainers: `GRPOTrainer(reward_funcs=[RewardFunction(rm)])`
    (or `RLOOTrainer`). Called with `prompts` and `completions` (plain text or chat messages), it returns one float
    per completion:

    - scalar heads (`bt`, `pl`): the reward; `ensemble`: the mean, or mean − k·std with `reduce="conservative"`;
    - `gpm`, which has no scalar reward: the completion's mean P(completion ≻ other) against the other completions
      of the same prompt in the call (GRPO and RLOO sample a group per prompt); ½ for a completion with no other.
      Under several processes a group can be split across them; each process compares within what it sees.

    The model is put in eval mode (no dropout, no ensemble bootstrap).
    """

    def __init__(self, model: RewardModel, *, reduce: str = "mean", batch_size: int = 32) -> None:
        if reduce not in ("mean", "conservative"):
            raise ValueError(f"reduce must be 'mean' or 'conservative', got {reduce!r}.")
        if reduce == "conservative" and model.head_name != "ensemble":
            raise ValueError(f"reduce='conservative' needs the ensemble head; this model has {model.head_name!r}.")
        self.model, self.reduce, self.batch_size = model.eval(), reduce, batch_size
        # TRL names each reward function's logged metrics after `__name__`.
        self.__name__ = f"reward_model_{model.head_name}"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None, **_: Any
    ) -> list[float]:
        if completion_ids is not None and self.model.tokenizer is not None:
            # TRL decodes completions alone, which drops a SentencePiece first word's leading space; read them as
            # they follow the prompt (left as they are when this tokenizer decodes the ids to other text).
            from trl_plus.trainers._online import completions_in_context

            completions = completions_in_context(self.model.tokenizer, prompts, completions, completion_ids)
        outputs, states = [], []
        for start in range(0, len(prompts), self.batch_size):
            part = slice(start, start + self.batch_size)
            output, state = self.model.outputs(prompts[part], completions[part])
            outputs.append(output)
            states.append(state)
        output, state = torch.cat(outputs), torch.cat(states)
        head = self.model.head
        if head.output == "embedding":
            return self._group_win_rates(prompts, output, state)
        if self.reduce == "conservative":
            return head.summary(output)["conservative"].float().tolist()  # type: ignore[operator]
        return head.rewards(output).float().tolist()

    def _group_win_rates(self, prompts: Sequence[Any], embeddings: torch.Tensor, states: torch.Tensor) -> list[float]:
        rewards = [0.5] * len(prompts)
        for members in prompt_groups(prompts):
            if len(members) < 2:
                continue
            group = torch.tensor(members, device=embeddings.device)
            size = len(members)
            a = embeddings[group][:, None].expand(size, size, -1)
            b = embeddings[group][None, :].expand(size, size, -1)
            state = states[group][:, None].expand(size, size, -1)
            with torch.no_grad():
                wins = self.model.head.prefer(a, b, state)  # wins[i, j] = P(i ≻ j); the diagonal is ½
            mean_wins = (wins.sum(-1) - wins.diagonal()) / (size - 1)
            for member, value in zip(members, mean_wins.float().tolist(), strict=True):
                rewards[member] = value
        return rewards
