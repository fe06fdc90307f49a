"""Held-out scores of a trained policy or reward model against the reference model (`Evaluator`): the oracle's
win rate, exploitability, implicit-reward (or reward-model) accuracy and margin, KL; and the curve's
evaluations during training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trl_plus.compare.config import CompareConfig
from trl_plus.compare.data import Data
from trl_plus.compare.results import Run


class Evaluator:
    """The held-out scores of a trained policy against the reference model."""

    def __init__(self, config: CompareConfig, reference: Any, tokenizer: Any, data: Data, task: Any) -> None:
        self.config, self.reference, self.tokenizer, self.data, self.task = config, reference, tokenizer, data, task
        self.reward_models: dict[tuple[str, int], Any] = {}  # (head, seed) → the reward model online rows train on

    def win_rate(self, policy: Any, seed: int, n: int) -> Any:
        from trl_plus.synthetic import win_rate

        return win_rate(
            (policy, self.tokenizer),
            (self.reference, self.tokenizer),
            self.task,
            n=n,
            seed=seed,
            max_new_tokens=self.config.max_new_tokens,
        )

    def accuracy(self, policy: Any, pairs: int | None = None) -> Any:
        from trl_plus.evaluation import implicit_reward_accuracy

        prompts, chosen, rejected = (part[:pairs] for part in self.data.pairs)
        return implicit_reward_accuracy(policy, self.reference, self.tokenizer, prompts, chosen, rejected)

    def curve(self, seed: int) -> Callable[[Any], float]:
        if self.task is not None:
            return lambda model: self.win_rate(model, seed, self.config.curve_prompts).win_rate
        return lambda model: self.accuracy(model, self.config.curve_prompts).accuracy

    def score_reward_model(self, run: Run, model: Any, metrics: Sequence[str], batch_size: int = 64) -> None:
        """A reward model's held-out accuracy (`PreferenceAccuracy`: P(chosen ≻ rejected) > ½, a tie counts ½), and
        its mean margin in logits, log P/(1 − P) (for a scalar head, r(chosen) − r(rejected))."""
        import torch

        from trl_plus.metrics import PreferenceAccuracy

        if "accuracy" not in metrics or not self.data.pairs[0]:
            return
        model.eval()
        prompts, chosen, rejected = self.data.pairs
        with torch.no_grad():
            probabilities = torch.cat(
                [
                    model.prefer(prompts[i : i + batch_size], chosen[i : i + batch_size], rejected[i : i + batch_size])
                    for i in range(0, len(prompts), batch_size)
                ]
            ).double()
        accuracy = PreferenceAccuracy().compute(predictions=probabilities.tolist(), references=[1] * len(prompts))
        run.accuracy = accuracy["accuracy"]
        run.margin = float(torch.logit(probabilities, eps=1e-12).mean())

    def score(self, run: Run, policy: Any, metrics: Sequence[str]) -> None:
        from trl_plus.evaluation import kl_estimate

        seed = run.seed
        if "win_rate" in metrics:
            result = self.win_rate(policy, seed, self.config.n)
            run.win_rate, run.win_rate_stderr = result.win_rate, result.stderr
        if "exploitability" in metrics:
            from trl_plus.synthetic import exploitability

            run.exploitability = exploitability(
                (policy, self.tokenizer),
                self.task,
                n=self.config.n,
                seed=seed,
                reference=(self.reference, self.tokenizer),
                max_new_tokens=self.config.max_new_tokens,
            )
        if "accuracy" in metrics and self.data.pairs[0]:
            accuracy = self.accuracy(policy)
            run.accuracy, run.margin = accuracy.accuracy, accuracy.margin.mean
        if "kl" in metrics:
            prompts = self.task.prompts(self.config.n, seed=seed, stream="eval") if self.task else self.data.prompts
            kl = kl_estimate(
                policy, self.reference, self.tokenizer, prompts, max_new_tokens=self.config.max_new_tokens, seed=seed
            )
            run.kl, run.kl_stderr = kl.mean, kl.stderr
