"""Reward sources for the online trainers: one argument takes any of them.

- a `RewardModel` of any head (through `RewardFunction`: scalar heads give their reward, `ensemble` its mean or,
  wrapped as `RewardFunction(model, reduce="conservative")`, mean − k·std; `gpm` a group win rate);
- a synthetic task (`OracleReward`: its hidden reward r*, or for tasks without a scalar reward such as `cyclic`,
  the oracle's mean P(completion ≻ other) against the other completions of the same prompt);
- whatever TRL's GRPOTrainer takes itself: a sequence-classification checkpoint (path, Hub id or loaded model)
  or a plain function `f(prompts, completions, **kwargs) -> list[float]`;
- a rule (`RuleReward`: 0 where a check such as the answer's format holds, a penalty where it breaks), to add to a
  learned reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trl_plus.reward_model import RewardFunction, RewardModel, prompt_groups
from trl_plus.synthetic.base import SyntheticTask, as_text


class OracleReward:
    """A synthetic task's oracle as a reward function (TRL's signature)."""

    def __init__(self, task: SyntheticTask) -> None:
        self.task = task
        self.__name__ = f"oracle_{task.name}"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        reward = getattr(self.task, "reward", None)
        if reward is not None:
            return [float(reward(as_text(p), as_text(c))) for p, c in zip(prompts, completions, strict=True)]
        rewards = [0.5] * len(prompts)
        for members in prompt_groups(prompts):
            for i in members:
                others = [j for j in members if j != i]
                if others:
                    prompt = as_text(prompts[i])
                    wins = [self.task.prefer(prompt, as_text(completions[i]), as_text(completions[j])) for j in others]
                    rewards[i] = sum(wins) / len(wins)
        return rewards


class RuleReward:
    """A rule on (prompt, completion), such as a format check, as a reward function (TRL's signature): 0 where it
    holds, −`penalty` where it breaks. Next to a learned reward (`reward_funcs=[model, RuleReward(...)]`) it covers
    the answers the reward model never saw, which an online trainer otherwise drifts to."""

    def __init__(self, rule: Callable[[str, str], bool], *, penalty: float = 10.0, name: str = "rule") -> None:
        self.rule, self.penalty = rule, penalty
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        return [
            0.0 if self.rule(as_text(p), as_text(c)) else -self.penalty
            for p, c in zip(prompts, completions, strict=True)
        ]


def as_reward_func(source: Any) -> Any:
    """A reward source as something GRPOTrainer's `reward_funcs` accepts (other sources pass through unchanged)."""
    if isinstance(source, RewardModel):
        return RewardFunction(source)
    if isinstance(source, SyntheticTask):
        return OracleReward(source)
    return source


def reward_tokenizers(sources: Sequence[Any]) -> list[tuple[str, Any]]:
    """(name, tokenizer) of each source that reads text with a tokenizer of its own."""
    found = []
    for source in sources:
        model = source.model if isinstance(source, RewardFunction) else source
        if isinstance(model, RewardModel):
            found.append((f"reward model ({model.head_name} head)", model.tokenizer))
    return found


__all__ = ["OracleReward", "RuleReward", "as_reward_func", "reward_tokenizers"]
