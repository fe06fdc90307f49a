"""What the online trainers (PPO, Nash) share on top of TRL's GRPOTrainer: reading completions in context and
sampling from a policy other than the one GRPO samples from (a geometric mixture, the reference, past weights)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def default_args(model: Any, args: Any, config_class: type, suffix: str, trainer: str) -> Any:
    """`args`, or a default config named after the model (as TRL's trainers do), checked to be a `config_class`."""
    if args is None:
        name = model if isinstance(model, str) else model.config._name_or_path
        args = config_class(f"{str(name).rstrip('/').split('/')[-1]}-{suffix}")
    if not isinstance(args, config_class):
        raise TypeError(f"{trainer} needs a {config_class.__name__}, got {type(args).__name__}.")
    return args


def check_prompt_columns(trainer: str, **datasets: Any) -> None:
    """Online trainers read prompts only: refuse a dataset without a `prompt` column before any work."""
    for name, dataset in datasets.items():
        columns = getattr(dataset, "column_names", None)
        if isinstance(columns, list) and "prompt" not in columns:
            raise ValueError(f"{trainer}'s {name} needs a 'prompt' column; it has {columns}.")


def rollout_sequences(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, completion mask) of a GRPO rollout batch: prompt and completion side by side, and
    the float 0/1 mask of the completion tokens a loss counts (tool outputs left out)."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    mask = batch["completion_mask"].float()
    if "tool_mask" in batch:
        mask = mask * batch["tool_mask"]
    return input_ids, attention_mask, mask


def completions_in_context(tokenizer: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
    """Plain-text completions as they read after their prompt. TRL decodes the completion ids alone, and
    SentencePiece-style tokenizers then drop the first word's leading space (" kite map" becomes "kite map"), so a
    reward or preference model reading prompt + completion would see other tokens than the policy wrote."""
    if not completions or not isinstance(completions[0], str) or not isinstance(prompts[0], str):
        return completions
    fixed = []
    for prompt, completion, ids in zip(prompts, completions, completion_ids_list, strict=True):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        prefix = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        full = tokenizer.decode(list(prompt_ids) + list(ids), skip_special_tokens=True)
        in_context = full[len(prefix) :] if full.startswith(prefix) else completion
        fixed.append(in_context if in_context.strip() == completion.strip() else completion)
    return fixed


@dataclass
class Component:
    """One factor of a geometric mixture: `weight`·log-softmax of `model`'s logits, computed inside `context()`
    (e.g. with the PEFT adapters off, for the reference)."""

    weight: float
    model: Any
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext


def mixture_log_probs(logits: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """log π̃ ∝ Σ_i w_i·log softmax(z_i), renormalised over the vocabulary (last dimension)."""
    mixed = sum(w * torch.log_softmax(z.float(), dim=-1) for w, z in zip(weights, logits, strict=True))
    return torch.log_softmax(mixed, dim=-1)  # type: ignore[arg-type]


@torch.no_grad()
def sample_mixture(
    components: Sequence[Component],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample completions token by token from the geometric mixture of `components` (left-padded prompts).

    Returns (completion ids [B, T] padded with `pad_token_id` after EOS, the mixture's log-prob of each sampled token
    at temperature 1, [B, T], 0 on padding). Each component keeps its own KV cache. The models run in the mode they
    are in, as GRPO generates: on CPU, a bitsandbytes 4-bit layer run once in eval mode repacks its weights for an
    inference kernel with no backward, so a trainer must not switch its policy to eval mode to sample.
    """
    from transformers import DynamicCache

    caches = [DynamicCache() for _ in components]
    batch = prompt_ids.size(0)
    device = prompt_ids.device
    attention = prompt_mask.long()
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    inputs = prompt_ids
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    eos = torch.tensor(list(eos_token_ids), device=device)
    tokens, logps = [], []
    for _ in range(max_new_tokens):
        logits = []
        for component, cache in zip(components, caches, strict=True):
            with component.context():
                out = component.model(
                    input_ids=inputs,
                    attention_mask=attention,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                )
            logits.append(out.logits[:, -1, :])
        log_probs = mixture_log_probs(logits, [c.weight for c in components])
        probs = torch.softmax(log_probs / temperature, dim=-1)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        token_logp = log_probs.gather(1, token[:, None]).squeeze(1)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        tokens.append(token)
        logps.append(torch.where(finished, torch.zeros_like(token_logp), token_logp))
        finished = finished | torch.isin(token, eos)
        if bool(finished.all()):
            break
        inputs = token[:, None]
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    return torch.stack(tokens, dim=1), torch.stack(logps, dim=1)


class ParameterSnapshots:
    """Copies of a model's trainable parameters: an exponential moving average, or the last few snapshots. `use(i)`
    swaps snapshot i into the model for a forward and back out (only the trainable weights are stored; with PEFT,
    only the adapters)."""

    def __init__(self, model: nn.Module, *, keep: int) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.keep = keep
        self.snapshots: list[list[torch.Tensor]] = []
        self.take()

    def take(self) -> None:
        self.snapshots.append([p.detach().clone() for p in self.params])
        del self.snapshots[: -self.keep]

    @torch.no_grad()
    def update_average(self, decay: float) -> None:
        for saved, param in zip(self.snapshots[-1], self.params, strict=True):
            saved.lerp_(param.detach().to(saved.dtype), 1 - decay)

    @contextlib.contextmanager
    def use(self, index: int) -> Iterator[None]:
        current = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for param, saved in zip(self.params, self.snapshots[index], strict=True):
                param.copy_(saved)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self.params, current, strict=True):
                    param.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": [[t.cpu() for t in snap] for snap in self.snapshots]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.params[0].device if self.params else "cpu"
        self.snapshots = [[t.to(device) for t in snap] for snap in state["snapshots"]]


__all__ = [
    "Component",
    "ParameterSnapshots",
    "check_prompt_columns",
    "completions_in_context",
    "default_args",
    "mixture_log_probs",
    "rollout_sequences",
    "sample_mixture",
]
