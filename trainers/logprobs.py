"""Per-token log-probabilities of completion tokens, on the path that suits the device.

Three paths give the same numbers (to float rounding) at different costs:

- `"fused"`: TRL's fused LM head (`add_fused_lm_head`). Triton kernels on CUDA/XPU; elsewhere its torch fallback
  folds 32k-token tiles with extra statistics, which on CPU is slower and larger than plain logits.
- `"chunked"`: `chunked_token_logps` below. Only positions with a label are projected, a few hundred tokens at a
  time, so the [tokens, vocab] logits never exist in full; backward recomputes each tile from the saved hidden
  states instead of keeping it.
- `"logits"`: the model's own forward, then log-softmax over the full logits. The reference point.

`"auto"` picks `"fused"` where TRL would run Triton and `"chunked"` everywhere else.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Literal

import torch
import torch.nn.functional as F

from trl_plus.trainers import _compat

LogprobPath = Literal["auto", "fused", "chunked", "logits"]
LOGPROB_PATHS: tuple[str, ...] = ("auto", "fused", "chunked", "logits")

# About 64 MiB of float32 logits per tile: large enough for efficient matmuls, small enough to stay in cache-sized
# working sets on CPU.
_TILE_ELEMENTS = 1 << 24


def resolve_logprob_path(path: str, device: torch.device, model: torch.nn.Module | None = None) -> str:
    """The concrete path for `path` on `device`: `"auto"` means fused where Triton runs, chunked elsewhere."""
    if path not in LOGPROB_PATHS:
        raise ValueError(f"`logprob_path` must be one of {list(LOGPROB_PATHS)}, got {path!r}.")
    if path != "auto":
        return path
    if _compat.triton_runs_on(device):
        return "fused"
    # Logit soft-capping or scaling (Gemma 2, Cohere, Granite...) is handled by TRL's head, not by ours.
    if model is not None and _unsupported_logit_transform(model) is not None:
        return "fused"
    return "chunked"


def _unsupported_logit_transform(model: torch.nn.Module) -> str | None:
    config = model.config.get_text_config()  # type: ignore[union-attr,operator]
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(config, name, None) is not None:
            return name
    return None


def default_chunk_tokens(vocab_size: int) -> int:
    return max(16, _TILE_ELEMENTS // max(vocab_size, 1))


class _ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(h·Wᵀ + b)[target] for each row of `hidden`, tile by tile, recomputing tiles in backward.

    Saved for backward: hidden, weight, bias, targets and the per-token log-partition, O(N·H + N) instead of O(N·V).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_tokens: int,
        with_stats: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        n_tokens = hidden.shape[0]
        logps = hidden.new_empty(n_tokens, dtype=torch.float32)
        log_z = hidden.new_empty(n_tokens, dtype=torch.float32)
        entropy = hidden.new_empty(n_tokens, dtype=torch.float32) if with_stats else None
        mean_logits = hidden.new_empty(n_tokens, dtype=torch.float32) if with_stats else None
        is_top1 = hidden.new_empty(n_tokens, dtype=torch.bool) if with_stats else None
        # The head's dtype, explicitly: under autocast a model's last norm can hand fp32 states to an fp16 head,
        # and backward, which recomputes the tiles, runs outside the autocast context.
        hidden_dtype, hidden = hidden.dtype, hidden.to(weight.dtype)
        for start in range(0, n_tokens, chunk_tokens):
            rows = slice(start, min(start + chunk_tokens, n_tokens))
            logits = F.linear(hidden[rows], weight, bias).float()
            tile_log_z = torch.logsumexp(logits, dim=-1)
            target_logits = logits.gather(1, targets[rows, None]).squeeze(1)
            log_z[rows] = tile_log_z
            logps[rows] = target_logits - tile_log_z
            if with_stats:
                assert entropy is not None and mean_logits is not None and is_top1 is not None
                probs = torch.exp(logits - tile_log_z[:, None])
                entropy[rows] = tile_log_z - (probs * logits).sum(dim=-1)
                mean_logits[rows] = logits.mean(dim=-1)
                is_top1[rows] = logits.argmax(dim=-1) == targets[rows]
        ctx.save_for_backward(hidden, weight, bias, targets, log_z)
        ctx.chunk_tokens, ctx.hidden_dtype = chunk_tokens, hidden_dtype
        ctx.mark_non_differentiable(*(t for t in (entropy, mean_logits, is_top1) if t is not None))
        return logps, entropy, mean_logits, is_top1

    @staticmethod
    def backward(ctx: Any, grad_logps: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        hidden, weight, bias, targets, log_z = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if grad_logps is None:
            return None, None, None, None, None, None
        grad_hidden = torch.zeros_like(hidden) if needs_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if needs_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if needs_bias else None
        grad_logps = grad_logps.float()
        for start in range(0, hidden.shape[0], ctx.chunk_tokens):
            rows = slice(start, min(start + ctx.chunk_tokens, hidden.shape[0]))
            logits = F.linear(hidden[rows], weight, bias).float()
            # d log p_t / d logits = onehot(t) − softmax; scaled by the incoming gradient, in place on the tile.
            grad_logits = torch.exp(logits.sub_(log_z[rows, None])).mul_(-grad_logps[rows, None])
            grad_logits.scatter_add_(1, targets[rows, None], grad_logps[rows, None])
            if grad_hidden is not None:
                grad_hidden[rows] = (grad_logits @ weight.float()).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.t(), hidden[rows].float())
            if grad_bias is not None:
                grad_bias.add_(grad_logits.sum(dim=0))
        return (
            None if grad_hidden is None else grad_hidden.to(ctx.hidden_dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
            None,
        )


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_tokens: int | None = None,
    with_stats: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Log-prob of `targets` [N] under `hidden` [N, H] projected by `weight` [V, H]; never builds [N, V] at once.

    Returns (log_probs, entropy, mean_logits, is_top1), the last three None unless `with_stats` (they carry no
    gradient and serve logging).
    """
    chunk = chunk_tokens or default_chunk_tokens(weight.shape[0])
    return _ChunkedTokenLogps.apply(hidden, weight, bias, targets, chunk, with_stats)  # type: ignore[no-any-return]


def add_chunked_lm_head(model: torch.nn.Module, chunk_tokens: int | None = None, with_stats: bool = True) -> None:
    """Patch `model.forward` so that `model(..., labels=labels, chunked_lm_head=True)` returns per-token log-probs.

    Like TRL's fused head, the output is a `FusedCausalLMOutput` whose `log_probs` has shape [batch, seq − 1] and is
    zero where the shifted label is −100. Without `chunked_lm_head=True` the previous forward runs unchanged, so
    generation and TRL's own fused head keep working. Patch the base model before PEFT wraps it, or the PEFT
    model's base model after.
    """
    if (name := _unsupported_logit_transform(model)) is not None:
        raise ValueError(
            f"The chunked log-prob path does not implement the model's `{name}` logit transform; "
            "use logprob_path='fused' or 'logits' for this model."
        )
    previous_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, chunked_lm_head: bool = False, labels: Any = None, **kwargs: Any) -> Any:
        if not chunked_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return previous_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        outputs = self.base_model(*args, **kwargs)
        hidden_states = outputs.last_hidden_state[:, :-1]
        shifted = labels[:, 1:]
        head = self.get_output_embeddings()
        hidden_states = hidden_states.to(head.weight.device)
        shifted = shifted.to(head.weight.device)
        mask = shifted != -100
        per_token = chunked_token_logps(
            hidden_states[mask], head.weight, head.bias, shifted[mask], chunk_tokens, with_stats
        )
        # masked_scatter keeps an all-masked batch connected to the graph (a differentiable zero).
        log_probs, entropy, mean_logits, is_top1 = (
            None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token
        )
        assert log_probs is not None
        loss = -log_probs.sum() / mask.sum().clamp(min=1)
        return _compat.FusedCausalLMOutput(
            loss=loss,
            log_probs=log_probs,
            entropy=entropy,
            mean_logits=mean_logits,
            is_top1=is_top1,
            label_mask=mask,
            aux_loss=router_aux_loss(self, outputs, kwargs.get("attention_mask")),
        )

    model.forward = types.MethodType(forward, model)  # type: ignore[method-assign]


def router_aux_loss(model: Any, outputs: Any, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A mixture-of-experts model's load-balancing loss from its base model's router logits, as its own causal-LM
    forward computes it (None when the router logits were not asked for or the model has no such loss)."""
    import sys

    router_logits = getattr(outputs, "router_logits", None)
    balancing = getattr(sys.modules[type(model).__module__], "load_balancing_loss_func", None)
    if router_logits is None or balancing is None:
        return None
    config = model.config.get_text_config()
    experts = getattr(model, "num_experts", None) or getattr(config, "num_local_experts", None) or config.num_experts
    top_k = getattr(model, "num_experts_per_tok", None) or config.num_experts_per_tok
    return balancing(router_logits, experts, top_k, attention_mask)  # type: ignore[no-any-return]


def logits_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The plain path: per-token log-probs and logging statistics from full logits [B, T, V] and labels [B, T].

    log p = logit[target] − logsumexp(logits) keeps no [B, T, V] log-softmax alive for backward; the logging
    statistics are computed one sequence at a time without gradient.
    """
    logits = logits[:, :-1]
    shifted = labels[:, 1:]
    mask = shifted != -100
    target_logits = logits.gather(-1, shifted.clamp(min=0)[..., None]).squeeze(-1).float()
    log_probs = (target_logits - torch.logsumexp(logits.float(), dim=-1)) * mask
    entropy = torch.zeros_like(log_probs)
    mean_logits = torch.zeros_like(log_probs)
    with torch.no_grad():
        for row in range(logits.shape[0]):
            row_logits = logits[row].float()
            log_softmax = row_logits.log_softmax(dim=-1)
            entropy[row] = -(log_softmax.exp() * log_softmax).sum(dim=-1)
            mean_logits[row] = row_logits.mean(dim=-1)
        is_top1 = (logits.argmax(dim=-1) == shifted) & mask
    return {
        "log_probs": log_probs,
        "entropy": entropy * mask,
        "mean_logits": mean_logits * mask,
        "is_top1": is_top1,
    }
