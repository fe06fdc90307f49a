"""Judges (preference sources) and best-of-N sampling.

A judge is any callable `judge(prompts, a, b) → P(a ≻ b)`, one probability per row: a synthetic task's oracle
(`task_judge`), `RewardModel.prefer` (any head, `gpm` included), or a plain function. `as_preference` turns any
source (those, a sequence-classification reward model: σ(r_a − r_b), or a checkpoint path) into one that returns a
float tensor and refuses values outside [0, 1]; the online trainers (Nash) take their sources through it.

`best_of_n` samples N answers per prompt and keeps the best by a pointwise `score(prompts, completions)` or, with
a pairwise judge, by summed win probability against the other samples; `iterative_training` and
`policy_preference_dataset` take the same judges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from trl_plus.synthetic import SyntheticTask
from trl_plus.synthetic.base import as_text
from trl_plus.synthetic.evaluate import Policy, judge_rankings, load_policy, sample_groups, score_rankings

Judge = Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], Sequence[float]]
Scorer = Callable[[Sequence[Any], Sequence[Any]], Sequence[float]]


def task_judge(task: SyntheticTask) -> Judge:
    """The task's oracle as a batched judge: P(a ≻ b | prompt) per row (no label noise drawn)."""

    def judge(prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> list[float]:
        return [task.prefer(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]

    return judge


def with_rule(judge: Judge, rule: Callable[[Any, Any], bool]) -> Judge:
    """`judge`, except that an answer keeping `rule(prompt, completion)` (a format check, say) beats one that breaks
    it outright. A learned judge only knows the answers its training data showed; a policy it ranks drifts to
    answers outside them, malformed ones included, where its verdicts are arbitrary. A rule that needs no
    preference data covers those."""

    def ruled(prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> list[float]:
        verdicts = [float(p) for p in judge(prompts, a, b)]
        for index, (prompt, x, y) in enumerate(zip(prompts, a, b, strict=True)):
            keeps_x, keeps_y = rule(prompt, x), rule(prompt, y)
            if keeps_x != keeps_y:
                verdicts[index] = 1.0 if keeps_x else 0.0
        return verdicts

    inner = getattr(judge, "score", None)
    if inner is not None:  # ranks as the pairs do: every answer keeping the rule above every one breaking it

        def score(prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
            scores = [float(s) for s in inner(prompts, completions)]
            return [s if rule(p, c) else s - RULE_OFFSET for s, p, c in zip(scores, prompts, completions, strict=True)]

        ruled.score = score  # type: ignore[attr-defined]
    return ruled


RULE_OFFSET = 1e9  # below any reward a model gives, far enough that broken answers keep their own order


class SequenceClassifierPreference:
    """A scalar reward model (`AutoModelForSequenceClassification`, one label) as a preference: σ(r_a − r_b)."""

    def __init__(self, model: Any, tokenizer: Any = None, *, batch_size: int = 32) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if isinstance(model, (str, Path)):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model))
            model = AutoModelForSequenceClassification.from_pretrained(str(model), num_labels=1)
        if tokenizer is None:
            name = getattr(model.config, "_name_or_path", "")
            if not name:
                raise ValueError("A loaded sequence-classification model needs its tokenizer: pass tokenizer=.")
            tokenizer = AutoTokenizer.from_pretrained(name)
        if model.config.num_labels != 1:
            raise ValueError(
                f"A reward classifier has one label (a scalar reward); this one has {model.config.num_labels}."
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = model.config.pad_token_id or tokenizer.pad_token_id
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @torch.no_grad()
    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> torch.Tensor:
        texts = [as_text(p) + as_text(c) for p, c in zip(prompts, completions, strict=True)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size], padding=True, return_tensors="pt", add_special_tokens=False
            ).to(self.model.device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def __call__(self, prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> torch.Tensor:
        return torch.sigmoid(self.score(prompts, a) - self.score(prompts, b))


def as_preference(source: Any) -> Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], torch.Tensor]:
    """Any preference source as `prefer(prompts, a, b) → tensor [N]` of P(a ≻ b), checked to lie in [0, 1].

    Takes a `RewardModel` (any head; `gpm` represents non-transitive preferences), a sequence-classification reward
    model or checkpoint path (σ(r_a − r_b)), a RewardModel checkpoint path, a `SyntheticTask` (its oracle), or a
    callable judge.
    """
    from trl_plus.heads import RewardHead
    from trl_plus.reward_model import HEAD_CONFIG, RewardModel

    if isinstance(source, (str, Path)):
        path = Path(source)
        source = (
            RewardModel.from_pretrained(path) if (path / HEAD_CONFIG).is_file() else SequenceClassifierPreference(path)
        )
    scores: Scorer | None = None
    if isinstance(source, RewardModel):
        model = source.eval()

        @torch.no_grad()
        def judge(prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> Any:
            parts = [
                model.prefer(prompts[i : i + 32], a[i : i + 32], b[i : i + 32]).float().cpu()
                for i in range(0, len(prompts), 32)
            ]
            return torch.cat(parts) if parts else torch.zeros(0)

        raw: Callable[..., Any] = judge
        if model.head.output == "reward" and type(model.head).prefer is RewardHead.prefer:  # σ(r_a − r_b)

            def reward(prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
                return [
                    float(r)
                    for i in range(0, len(prompts), 256)
                    for r in model.score(prompts[i : i + 256], completions[i : i + 256]).float().cpu()
                ]

            scores = reward
    elif isinstance(source, SyntheticTask):
        raw = task_judge(source)
    elif hasattr(source, "config") and getattr(source.config, "num_labels", None) is not None and callable(source):
        raw = SequenceClassifierPreference(source)
    elif callable(source):
        raw = source
    else:
        raise TypeError(
            f"Not a preference source: {type(source).__name__}. Give a RewardModel, a sequence-classification "
            "reward model or path, a SyntheticTask, or a callable judge(prompts, a, b) -> P(a ≻ b)."
        )

    def prefer(prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> torch.Tensor:
        values = torch.as_tensor(raw(prompts, a, b)).detach().float().cpu().reshape(-1)
        if values.numel() != len(prompts):
            raise ValueError(f"The preference source returned {values.numel()} values for {len(prompts)} pairs.")
        if not bool(((values >= 0) & (values <= 1)).all()):
            bad = values[~((values >= 0) & (values <= 1))][0].item()
            raise ValueError(f"The preference source returned {bad}, not a probability P(a ≻ b) in [0, 1].")
        return values

    prefer.source = source  # type: ignore[attr-defined]
    if scores is not None:
        # A Bradley-Terry judge's pointwise reward: `judge_rankings` sorts by it, one forward per answer instead of
        # one per pair and answer (the same order: the summed σ(r_a − r_b) over the others grows with r_a).
        prefer.score = scores  # type: ignore[attr-defined]
    return prefer


def load_judge(spec: str) -> Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], torch.Tensor]:
    """A judge from text, as the command line names it: `synthetic:<task>` (the oracle), `llm:<path>` (an LLM judge
    from a causal LM checkpoint), or a RewardModel / sequence-classification checkpoint path."""
    from trl_plus.synthetic import TASKS, get_task

    if spec.startswith("synthetic:"):
        name = spec.removeprefix("synthetic:")
        if name not in TASKS:
            raise ValueError(f"Unknown synthetic task {name!r} in the judge {spec!r}; one of {sorted(TASKS)}.")
        return as_preference(get_task(name))
    if spec.startswith("llm:"):
        from trl_plus.llm_judge import LLMJudge

        return as_preference(LLMJudge(spec.removeprefix("llm:")))
    if not Path(spec).expanduser().exists():
        raise ValueError(
            f"The judge {spec!r} is neither synthetic:<task>, llm:<path>, nor an existing reward-model checkpoint."
        )
    return as_preference(Path(spec).expanduser())


def best_of_n(
    policy: Policy,
    prompts: Sequence[str],
    judge: Judge | None = None,
    *,
    score: Scorer | None = None,
    n: int = 4,
    seed: int = 0,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> list[str]:
    """The best of `n` samples of `policy` for each prompt (as `sample_completions` returns them).

    Give `score` (higher is better, e.g. `RewardModel.score`) or a pairwise `judge`; with a judge all n(n−1)/2
    pairs of every prompt go in one batched call. Ties keep the earlier sample.
    """
    if (judge is None) == (score is None):
        raise ValueError("Give exactly one of `judge` (pairwise) or `score` (pointwise).")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    model, tokenizer = load_policy(policy)
    answers = sample_groups(
        model,
        tokenizer,
        list(prompts),
        n,
        seed=seed,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        batch_size=batch_size,
    )
    ranked = judge_rankings(judge, prompts, answers) if judge is not None else score_rankings(score, prompts, answers)
    return [best[0] for best in ranked]  # ties: the earlier sample
