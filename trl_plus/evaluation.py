"""Policy metrics that need no oracle: how far a policy drifted from its reference, and whether its implicit reward
orders held-out pairs. They work on any causal LM and preference data; `trl-plus compare` reports them next to the
oracle's win rate on the synthetic tasks.

- `kl_estimate`: KL(π‖π_ref) on the policy's own samples, the Monte-Carlo mean of log π(y|x) − log π_ref(y|x) over
  y ~ π, computed on the sampled token ids themselves (no decode/re-encode round trip).
- `implicit_reward_accuracy`: the share of held-out pairs whose chosen completion has the larger implicit reward
  log π(y|x) − log π_ref(y|x) (DPO's reward up to β), and the mean margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trl_plus.synthetic.evaluate import eval_mode, prompt_texts, sampled_batches, sampling


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error over `n` samples."""

    mean: float
    stderr: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {1.96 * self.stderr:.3f} (n={self.n})"


def _estimate(values: Sequence[float]) -> Estimate:
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Estimate(mean, math.sqrt(variance / n), n)


@torch.no_grad()
def completion_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
    """Summed log-probs of tokens `start:` of each row under `model` (rows padded on the right after `start`, and
    on the left before it), [B]. Positions count real tokens only, as `generate` counts them for left padding."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
    logits = outputs.logits[:, start - 1 : -1]
    logps = torch.log_softmax(logits.float(), dim=-1)
    targets = input_ids[:, start:]
    token_logps = logps.gather(-1, targets[..., None]).squeeze(-1)
    return (token_logps * attention_mask[:, start:]).sum(-1)


@torch.no_grad()
def kl_estimate(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    seed: int = 0,
) -> Estimate:
    """KL(policy ‖ reference) per prompt (plain text, or chat messages through the chat template): sample
    y ~ policy (temperature 1, full distribution, up to `max_new_tokens`, stopping at eos), then average
    log π(y|x) − log π_ref(y|x) over the prompts.

    The estimate is unbiased for the KL between the two models' distributions over completions of at most
    `max_new_tokens` tokens; single values can be negative, their mean converges to a non-negative number.
    """
    values: list[float] = []
    with sampling([policy, reference], tokenizer, seed):
        texts, add_special_tokens = prompt_texts(tokenizer, prompts)
        samples = sampled_batches(
            policy,
            tokenizer,
            texts,
            add_special_tokens=add_special_tokens,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        for batch, output in samples:
            start = batch["input_ids"].shape[1]
            generated = output[:, start:]
            # A sample ends at its first eos (kept: its probability is part of the completion's); after it, padding.
            is_eos = generated == tokenizer.eos_token_id
            after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
            mask = torch.cat([batch["attention_mask"], (~after_eos).long()], dim=-1)
            policy_logps = completion_logps(policy, output, mask, start)
            reference_logps = completion_logps(reference, output, mask, start)
            values.extend((policy_logps - reference_logps).tolist())
    return _estimate(values)


@dataclass(frozen=True)
class ImplicitRewardAccuracy:
    """Held-out pairs ordered by the implicit reward log π(y|x) − log π_ref(y|x)."""

    accuracy: float
    margin: Estimate

    def __str__(self) -> str:
        return f"implicit-reward accuracy {self.accuracy:.3f}, margin {self.margin}"


@torch.no_grad()
def implicit_reward_accuracy(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    chosen: Sequence[Any],
    rejected: Sequence[Any],
    *,
    batch_size: int = 32,
) -> ImplicitRewardAccuracy:
    """The share of pairs with (log π − log π_ref)(chosen) > (log π − log π_ref)(rejected), ties counting half, and
    the mean margin between the two, with both models in eval mode. Pairs are tokenised as TRL's trainers tokenise
    them: plain text with the eos appended, chat messages through the chat template."""
    margins: list[float] = []
    with eval_mode([policy, reference]):
        for begin in range(0, len(prompts), batch_size):
            part = slice(begin, begin + batch_size)
            rewards = [
                _implicit_rewards(policy, reference, tokenizer, prompts[part], side[part])
                for side in (chosen, rejected)
            ]
            margins.extend((rewards[0] - rewards[1]).tolist())
    accuracy = sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)
    return ImplicitRewardAccuracy(accuracy, _estimate(margins))


def _implicit_rewards(
    policy: Any, reference: Any, tokenizer: Any, prompts: Sequence[Any], completions: Sequence[Any]
) -> torch.Tensor:
    from trl_plus.trainers import _compat

    rows, starts = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids, (ids,) = _compat.tokenize_prompt_completions(tokenizer, prompt, [completion], tokenizer.eos_token)
        rows.append(ids)
        starts.append(_compat.common_prefix_length(prompt_ids, ids))
    rewards = []
    device = next(policy.parameters()).device
    # One row at a time keeps each completion's start exact (prompts differ in length); the tiny models make it cheap.
    for ids, start in zip(rows, starts, strict=True):
        input_ids = torch.tensor([ids], device=device)
        mask = torch.ones_like(input_ids)
        rewards.append(
            completion_logps(policy, input_ids, mask, start) - completion_logps(reference, input_ids, mask, start)
        )
    return torch.cat(rewards)
