"""`RewardModel`: a backbone loaded with `AutoModel` and a registered reward head, with one interface for every head.

The backbone reads prompt + completion as one sequence (as TRL's RewardTrainer does); the head sees the hidden state
of the last real token, and heads that condition on the prompt (`gpm`) also see the prompt's last token.

Saved layout (`save_pretrained`): the backbone's own files (config, safetensors weights), the tokenizer when there is
one, `reward_head.safetensors` (the head's weights, full precision) and `reward_head.json` (the head's registry
name and hyperparameters). `from_pretrained` rebuilds the same head, and refuses a checkpoint saved with another one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trl_plus.heads import RewardHead
from trl_plus.registry import get_reward_head
from trl_plus.trainers import _compat

HEAD_CONFIG = "reward_head.json"
HEAD_WEIGHTS = "reward_head.safetensors"


def last_token_states(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, H] at position lengths − 1 of each row (right padding), [B, H]."""
    index = (lengths - 1).clamp(min=0).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


class RewardModel(nn.Module):
    """Backbone + head. `score(prompts, completions)` and `prefer(prompts, a, b)` work for every head."""

    def __init__(
        self,
        backbone: Any,
        head: RewardHead,
        head_name: str,
        head_kwargs: dict[str, Any] | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
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
        **load_kwargs: Any,
    ) -> RewardModel:
        """A new reward model: the backbone of `model` (a path, a Hub id or a loaded model; a causal LM gives its
        base model) and a freshly initialised `head`. `load_kwargs` go to `AutoModel.from_pretrained` (dtype,
        quantization_config, revision...); the head stays in full precision."""
        from transformers import AutoModel, AutoTokenizer

        spec = get_reward_head(head)
        kwargs = dict(head_kwargs or {})
        spec.check_kwargs(kwargs)
        if isinstance(model, (str, Path)):
            backbone = AutoModel.from_pretrained(str(model), **load_kwargs)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
        else:
            backbone = model.get_decoder() if hasattr(model, "get_decoder") and hasattr(model, "lm_head") else model
        hidden_size = backbone.config.get_text_config().hidden_size
        return cls(backbone, spec.build(hidden_size, **kwargs), spec.name, kwargs, tokenizer)

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
        backbone = AutoModel.from_pretrained(str(path), **load_kwargs)
        hidden_size = backbone.config.get_text_config().hidden_size
        module = spec.build(hidden_size, **saved["head_kwargs"])
        module.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
        tokenizer = AutoTokenizer.from_pretrained(str(path)) if (path / "tokenizer_config.json").exists() else None
        return cls(backbone, module.to(backbone.device), spec.name, saved["head_kwargs"], tokenizer)

    def save_pretrained(self, path: str | Path, **kwargs: Any) -> None:
        path = Path(path)
        self.backbone.save_pretrained(str(path), **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(path))
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.head.state_dict().items()}
        save_file(state, str(path / HEAD_WEIGHTS))
        (path / HEAD_CONFIG).write_text(
            json.dumps({"head": self.head_name, "head_kwargs": self.head_kwargs}, indent=2) + "\n"
        )

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

    def _tokenize(self, prompts: Sequence[Any], completions: Sequence[Any]) -> dict[str, torch.Tensor]:
        if self.tokenizer is None:
            raise ValueError("This RewardModel has no tokenizer; pass tokenizer= to from_backbone.")
        if len(prompts) != len(completions):
            raise ValueError(f"Got {len(prompts)} prompts for {len(completions)} completions.")
        eos = self.tokenizer.eos_token or ""
        rows, prompt_lengths = [], []
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids = self.tokenizer(prompt)["input_ids"]
            text = completion if completion.endswith(eos) else completion + eos
            ids = self.tokenizer(prompt + text)["input_ids"]
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
    def outputs(self, prompts: Sequence[str], completions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's outputs and the prompt states for plain-text prompt/completion pairs."""
        outputs, prompt = self(**self._tokenize(prompts, completions))
        assert prompt is not None
        return outputs, prompt

    @torch.no_grad()
    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Scalar heads: one reward per completion ([N]; an ensemble gives its mean, see `summary`).
        `gpm`: the completion embeddings ([N, 2k]), to compare with `prefer` or `head.score`."""
        outputs, _ = self.outputs(prompts, completions)
        return outputs if self.head.output == "embedding" else self.head.rewards(outputs)

    @torch.no_grad()
    def prefer(
        self, prompts: Sequence[str], completions_a: Sequence[str], completions_b: Sequence[str]
    ) -> torch.Tensor:
        """P(a ≻ b) per prompt, [N]; prefer(a, b) = 1 − prefer(b, a) for every head."""
        a, prompt = self.outputs(prompts, completions_a)
        b, _ = self.outputs(prompts, completions_b)
        return self.head.prefer(a, b, prompt)
