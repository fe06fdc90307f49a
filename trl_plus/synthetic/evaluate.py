"""Oracle evaluation: sample completions from two policies and score them against each other.

The win rate is the mean over prompts of the oracle probability P(a ≻ b | prompt) — the expected outcome of a
Bernoulli comparison, with less variance than drawing it. The interval is the normal approximation, mean ±
1.96 standard errors, clipped to [0, 1].
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trl_plus.synthetic.base import SyntheticTask

if TYPE_CHECKING:
    import numpy as np
    from datasets import Dataset

Policy = str | Path | tuple[Any, Any]


@dataclass(frozen=True)
class WinRate:
    """How often policy A's completions beat policy B's under the oracle."""

    win_rate: float
    ci_low: float
    ci_high: float
    n: int
    valid_a: float
    valid_b: float
    stderr: float  # of `win_rate` over the n prompts; the interval is ± 1.96 of it, clipped to [0, 1]

    def __str__(self) -> str:
        return (
            f"win rate {self.win_rate:.3f} [95% CI {self.ci_low:.3f}, {self.ci_high:.3f}] over {self.n} prompts "
            f"(well-formed: A {self.valid_a:.0%}, B {self.valid_b:.0%})"
        )


def load_policy(policy: Policy) -> tuple[Any, Any]:
    """A (model, tokenizer) pair from a local path or hub id, or passed through as given."""
    if isinstance(policy, tuple):
        return policy
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(policy)), AutoTokenizer.from_pretrained(str(policy))


@contextlib.contextmanager
def eval_mode(models: list[Any]) -> Iterator[None]:
    """Models in eval mode (no dropout) for the duration, each back in its own mode afterwards."""
    was_training = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, mode in zip(models, was_training, strict=True):
            model.train(mode)


@contextlib.contextmanager
def sampling(models: list[Any], tokenizer: Any, seed: int) -> Iterator[None]:
    """Models in eval mode, left padding (decoder-only models continue from the right edge) and the torch RNG seeded
    with `seed`, for the duration; each restored afterwards, so sampling leaves no trace on the caller."""
    padding_side = tokenizer.padding_side
    generator_state = torch.random.get_rng_state()
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    try:
        with eval_mode(models):
            yield
    finally:
        torch.random.set_rng_state(generator_state)
        tokenizer.padding_side = padding_side


def sampled_batches(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    add_special_tokens: bool = True,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> Iterator[tuple[Any, torch.Tensor]]:
    """Ancestral samples of `model` (the full distribution: no top-k, no top-p) for `texts`, a batch at a time:
    (the left-padded prompt batch, prompt + sampled ids). Use inside `sampling(...)` for left padding and a seed."""
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token; set tokenizer.pad_token (e.g. to the eos token) first.")
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        ).to(device)
        with torch.no_grad():
            output = model.generate(
                **batch,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        yield batch, output


def prompt_texts(tokenizer: Any, prompts: Sequence[Any]) -> tuple[list[str], bool]:
    """The texts a model continues for `prompts`, and whether the tokenizer adds its special tokens to them: plain
    prompts as they are, with the specials (as TRL tokenises them for training); chat messages through the chat
    template with the generation prompt, which holds its specials already."""
    if prompts and not isinstance(prompts[0], str):
        texts = [tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True) for p in prompts]
        return texts, False
    return list(prompts), True


@torch.no_grad()
def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    conversational: bool = False,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
) -> list[str]:
    """Sample one completion per prompt (ancestral sampling from the full distribution), decoded without specials.

    Plain prompts are tokenized as TRL tokenizes them for training (with the tokenizer's own special tokens);
    conversational ones go through the chat template with the generation prompt.
    """
    messages = [[{"role": "user", "content": p}] for p in prompts] if conversational else prompts
    texts, add_special_tokens = prompt_texts(tokenizer, messages)
    completions: list[str] = []
    with sampling([model], tokenizer, seed):
        for batch, output in sampled_batches(
            model,
            tokenizer,
            texts,
            add_special_tokens=add_special_tokens,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_size=batch_size,
        ):
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            completions.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return completions


def sample_groups(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    n: int,
    *,
    seed: int = 0,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> list[list[str]]:
    """`n` completions per prompt, [prompts][n]: `sample_completions` run n times, the j-th with seed + 1000·j."""
    columns = [
        sample_completions(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_size=batch_size,
            seed=seed + 1000 * j,
        )
        for j in range(n)
    ]
    return [[column[i] for column in columns] for i in range(len(prompts))]


def distinct_answers(groups: list[list[str]]) -> list[list[str]]:
    """Each group's non-empty completions without repeats, in sampling order, with the leading space of the task's
    own datasets (see synthetic.base._format)."""
    return [list(dict.fromkeys(" " + s for s in group if s)) for group in groups]


def win_rate(
    policy_a: Policy,
    policy_b: Policy,
    task: SyntheticTask,
    *,
    n: int = 256,
    seed: int = 0,
    conversational: bool = False,
    max_new_tokens: int = 16,
    temperature: float = 1.0,
    batch_size: int = 64,
    stream: str = "eval",
) -> WinRate:
    """The oracle win rate of policy A against policy B on `n` held-out prompts of `task`.

    `stream="eval-train"` draws the prompts from the training prompts instead (the same as "eval" for tasks
    whose prompts are all seen in training), so that the gap between the two shows what did not generalise.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 to give an interval, got {n}.")
    if stream not in ("eval", "eval-train"):
        raise ValueError(f'stream must be "eval" or "eval-train", got {stream!r}.')
    prompts = task.prompts(n, seed=seed, stream=stream)

    def sample(policy: Policy, sample_seed: int) -> list[str]:
        model, tokenizer = load_policy(policy)
        return sample_completions(
            model,
            tokenizer,
            prompts,
            conversational=conversational,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            batch_size=batch_size,
            seed=sample_seed,
        )

    # Different seeds for the two sides, so a policy played against itself does not draw identical answers.
    return completions_win_rate(task, prompts, sample(policy_a, seed), sample(policy_b, seed + 1))


def completions_win_rate(
    task: SyntheticTask, prompts: Sequence[Any], completions_a: Sequence[Any], completions_b: Sequence[Any]
) -> WinRate:
    """The oracle win rate of completions A over completions B of the same prompts (at least 2), with its interval."""
    n = len(prompts)
    wins = [task.prefer(p, a, b) for p, a, b in zip(prompts, completions_a, completions_b, strict=True)]
    mean = sum(wins) / n
    stderr = math.sqrt(sum((w - mean) ** 2 for w in wins) / (n - 1) / n)
    half = 1.96 * stderr
    return WinRate(
        win_rate=mean,
        ci_low=max(0.0, mean - half),
        ci_high=min(1.0, mean + half),
        n=n,
        valid_a=sum(task.is_valid(p, a) for p, a in zip(prompts, completions_a, strict=True)) / n,
        valid_b=sum(task.is_valid(p, b) for p, b in zip(prompts, completions_b, strict=True)) / n,
        stderr=stderr,
    )


def exploitability(
    policy: Policy,
    task: SyntheticTask,
    *,
    n: int = 256,
    k: int = 4,
    seed: int = 0,
    reference: Policy | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 64,
) -> float:
    """How far a best response beats the policy: max over answers y of E_{y′~π}[P(y ≻ y′)], averaged over `n`
    held-out prompts. ½ at a Nash equilibrium; higher is more exploitable.

    On `cyclic` and `arena` it is exact at the class level (from the class shares of n·k samples, pooled over the
    prompts: the best response plays one class everywhere; see `cyclic.class_exploitability`). Elsewhere it is
    estimated per prompt from k samples of the policy, the best response taken among those samples and k of
    `reference` (when given): a lower bound on the true value.
    """
    from trl_plus.synthetic.cyclic import ClassGameTask, class_exploitability, class_shares

    model, tokenizer = load_policy(policy)
    prompts = task.prompts(n, seed=seed, stream="eval")
    groups = sample_groups(
        model, tokenizer, prompts, k, seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    if isinstance(task, ClassGameTask):
        answers = [(prompt, a) for prompt, group in zip(prompts, groups, strict=True) for a in group]
        return class_exploitability(class_shares([a for _, a in answers], [p for p, _ in answers], task))
    rivals = groups
    if reference is not None:
        ref_model, ref_tokenizer = load_policy(reference)
        rivals = sample_groups(
            ref_model, ref_tokenizer, prompts, k, seed=seed + 1, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
    total = 0.0
    for prompt, own, extra in zip(prompts, groups, rivals, strict=True):
        candidates = list(dict.fromkeys([*own, *extra]))
        total += max(sum(task.prefer(prompt, y, other) for other in own) / len(own) for y in candidates)
    return total / len(prompts)


def check_sources(task: SyntheticTask | None, prompts: Sequence[Any] | None, judge: Any) -> None:
    """Refuse a call with nothing to draw prompts from, or nothing to rank the answers: without a task, `prompts`
    gives the prompts and `judge` ranks (a task gives both, its oracle ranking by default)."""
    if prompts is not None and (isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0):
        raise ValueError(f"`prompts` must be a non-empty list of prompts (text or chat messages), got {prompts!r}.")
    if task is None and prompts is None:
        raise ValueError("No prompts: give a synthetic task, or `prompts`, a list of prompts to draw from.")
    if task is None and judge is None:
        raise ValueError(
            "No judge: without a synthetic task (whose oracle ranks by default) give `judge`, e.g. "
            "trl_plus.judges.load_judge('path/to/reward-model')."
        )


def draw_prompts(task: SyntheticTask | None, prompts: Sequence[Any] | None, n: int, *, seed: int) -> list[Any]:
    """`n` prompts: from the list `prompts` when given, else the task's preference stream (`task.prompts(n,
    seed=seed, stream="preference")`). A list is drawn as a shuffled cycle: in an order shuffled with `seed`, then a
    fresh shuffle whenever it runs out, so no prompt comes twice before every one has come once."""
    if prompts is None:
        assert task is not None, "check_sources first"
        return task.prompts(n, seed=seed, stream="preference")
    import numpy as np

    rng = np.random.default_rng(seed)
    drawn: list[Any] = []
    while len(drawn) < n:
        drawn.extend(prompts[int(i)] for i in rng.permutation(len(prompts))[: n - len(drawn)])
    return drawn


def chat_answers(prompts: Sequence[Any], groups: list[list[str]]) -> list[list[Any]]:
    """Each prompt's answers in its format: assistant turns for a chat prompt (TRL's conversational format, which
    the trainers and a RewardModel judge take), the text as it is for a plain prompt."""
    return [
        group if isinstance(prompt, str) else [[{"role": "assistant", "content": text.strip()}] for text in group]
        for prompt, group in zip(prompts, groups, strict=True)
    ]


def policy_preference_dataset(
    policy: Policy,
    task: SyntheticTask | None,
    n: int,
    *,
    k: int = 2,
    seed: int = 0,
    max_new_tokens: int = 16,
    batch_size: int = 64,
    judge: Any = None,
    oracle_column: bool = False,
    draw_rankings: bool = False,
    prompts: Sequence[Any] | None = None,
) -> Dataset:
    """On-policy preference data: `k` samples from `policy` per prompt, ordered by the oracle, or by `judge`.

    k = 2 gives prompt/chosen/rejected pairs with a label drawn from the oracle; k > 2 gives ranked lists (column
    `completions`, best first, a Plackett-Luce draw as in `task.ranked_dataset`). Unlike the task's own datasets
    (well-formed base answers), these cover what the policy actually says, malformed answers included, so a
    preference loss also learns to avoid those. `oracle_column` (k = 2, no judge) adds `chosen_win_prob`, the
    oracle's P(chosen ≻ rejected): soft labels, as the share of many raters preferring `chosen` would give.
    Duplicate and empty samples are dropped, and prompts left with fewer than two distinct samples are skipped, so
    the result can hold fewer than `n` rows.

    `judge(prompts, a, b) → P(a ≻ b)` per row (e.g. `RewardModel.prefer`, or any callable) replaces the oracle:
    every pair of a prompt's samples is judged, in one batched call, and the samples are ranked by their summed
    win probabilities (ties keep sampling order); with k = 2 the more likely winner is chosen. `draw_rankings` draws
    them from the judge's probabilities instead (see `judge_rankings`). The task then only supplies the prompts.

    `prompts`: a list of your own prompts (text or chat messages) to draw the `n` from instead of the task's
    (`draw_prompts`); without a task, `judge` ranks. Answers to chat prompts come as assistant turns.
    """
    from datasets import Dataset

    check_sources(task, prompts, judge)
    if k < 2:
        raise ValueError(f"k must be at least 2 (a pair), got {k}.")
    if oracle_column and (k != 2 or judge is not None):
        raise ValueError("oracle_column is for pairs (k = 2) labelled by the oracle, not by a judge.")
    model, tokenizer = load_policy(policy)
    drawn = draw_prompts(task, prompts, n, seed=seed)
    groups = sample_groups(model, tokenizer, drawn, k, seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if task is None:
        import numpy as np

        rng = np.random.default_rng(seed)
    else:
        rng = task.rng("policy-preference", seed)
    answers = chat_answers(drawn, distinct_answers(groups))
    judged = None if judge is None else judge_rankings(judge, drawn, answers, rng=rng if draw_rankings else None)
    rows: list[dict[str, Any]] = []
    for index, prompt in enumerate(drawn):
        distinct = answers[index]
        if len(distinct) < 2:
            continue
        if judged is not None:
            ranked = judged[index]
            pair = {"prompt": prompt, "chosen": ranked[0], "rejected": ranked[1]}
            rows.append(pair if k == 2 else {"prompt": prompt, "completions": ranked})
        elif k == 2:
            assert task is not None  # no judge: check_sources required a task, whose oracle ranks
            a, b = distinct
            p_a = task.prefer(prompt, a, b)
            a_wins = bool(rng.random() < p_a)
            chosen, rejected = (a, b) if a_wins else (b, a)
            row: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            if oracle_column:
                row["chosen_win_prob"] = p_a if a_wins else 1.0 - p_a
            rows.append(row)
        else:
            assert task is not None
            rows.append({"prompt": prompt, "completions": task.rank(prompt, distinct, rng)})
    return Dataset.from_list(rows)


def judge_rankings(
    judge: Any, prompts: Sequence[Any], answers: list[list[str]], *, rng: np.random.Generator | None = None
) -> list[list[str]]:
    """Each prompt's answers, best first by their summed P(answer ≻ other) under `judge(prompts, a, b)`, from one
    batched call over every unordered pair (P(b ≻ a) is taken as 1 − P(a ≻ b)).

    With `rng`, each ranking is drawn instead, as a rater would give it: Plackett-Luce on each answer's log-odds of
    winning, summed over the others and divided by the group's size, which for a Bradley-Terry judge (σ(r_a − r_b))
    are its rewards less their mean. Sorted rankings put the judge's favourite first every time; drawn ones keep
    its uncertainty, as the oracle's drawn labels do. Which trains better depends on the judge: on packing, with
    the demo's earlier reward model (3 epochs), drawn rankings scored lower (README, "The demo").

    A judge with a pointwise `score(prompts, completions)` whose pairwise P grows with the score difference (as
    `judges.as_preference` gives a Bradley-Terry reward model, kept by `with_rule`) is sorted by that score, one
    call per answer instead of one per pair: the same order, ties kept in sampling order."""
    score = getattr(judge, "score", None)
    if rng is None and score is not None:
        return score_rankings(score, prompts, answers)
    calls: list[tuple[int, int, int]] = [
        (row, i, j) for row, group in enumerate(answers) for i in range(len(group)) for j in range(i + 1, len(group))
    ]
    wins = [[0.0] * len(group) for group in answers]
    log_odds = [[0.0] * len(group) for group in answers]
    if calls:
        probs = judge(
            [prompts[row] for row, _, _ in calls],
            [answers[row][i] for row, i, _ in calls],
            [answers[row][j] for row, _, j in calls],
        )
        probs = [float(p) for p in probs]
        if len(probs) != len(calls):
            raise ValueError(f"The judge returned {len(probs)} probabilities for {len(calls)} pairs.")
        for (row, i, j), p in zip(calls, probs, strict=True):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"The judge returned {p} for P(a ≻ b); it must be a probability in [0, 1].")
            wins[row][i] += p
            wins[row][j] += 1.0 - p
            clipped = min(max(p, 1e-6), 1.0 - 1e-6)
            odds = math.log(clipped / (1.0 - clipped)) / len(answers[row])
            log_odds[row][i] += odds
            log_odds[row][j] -= odds
    if rng is not None:  # Gumbel-max: sorting score + Gumbel noise draws a Plackett-Luce ranking
        wins = [[score + float(rng.gumbel()) for score in scores] for scores in log_odds]
    return [
        [group[i] for i in sorted(range(len(group)), key=lambda i: -wins[row][i])] for row, group in enumerate(answers)
    ]


def score_rankings(score: Any, prompts: Sequence[Any], answers: list[list[Any]]) -> list[list[Any]]:
    """Each prompt's answers, best first by a pointwise `score(prompts, completions)` (higher is better), from one
    call over every answer; equal scores keep sampling order."""
    flat = [
        float(s)
        for s in score(
            [p for p, group in zip(prompts, answers, strict=True) for _ in group],
            [a for group in answers for a in group],
        )
    ]
    ranked, start = [], 0
    for group in answers:
        values = flat[start : start + len(group)]
        ranked.append([group[i] for i in sorted(range(len(group)), key=lambda i: -values[i])])
        start += len(group)
    return ranked


@dataclass(frozen=True)
class OracleAgreement:
    """How well a preference model's P(a ≻ b) matches the oracle on held-out pairs of base answers.

    `agreement`: the share of pairs with a strict oracle preference (P* ≠ ½) whose direction the model gets right
    (P > ½ where P* > ½); a scalar reward's ceiling on the cyclic task is `cyclic.scalar_ceiling()`, the oracle's 1.
    `expected_accuracy`: the mean oracle probability that the completion the model prefers wins (a tie counts ½),
    i.e. the accuracy expected against labels drawn from the oracle; `oracle_accuracy` is the same for the oracle
    itself, the best any model can do.
    """

    agreement: float
    expected_accuracy: float
    oracle_accuracy: float
    n: int

    def __str__(self) -> str:
        return (
            f"agreement with the oracle {self.agreement:.3f}, expected accuracy {self.expected_accuracy:.3f} "
            f"(oracle {self.oracle_accuracy:.3f}) over {self.n} held-out pairs"
        )


def oracle_agreement(
    prefer: Any,
    task: SyntheticTask,
    n: int = 2000,
    *,
    seed: int = 1000,
    batch_size: int = 256,
    stream: str = "preference",
) -> OracleAgreement:
    """Score `prefer(prompts, completions_a, completions_b) → P(a ≻ b)` (e.g. `RewardModel.prefer`) against the
    oracle on `n` held-out pairs drawn with `seed` (keep it apart from the training data's seed); `stream="eval"`
    puts them on the held-out prompts of tasks that hold prompts out."""
    pairs = task.preference_dataset(n, seed=seed, oracle_column=True, stream=stream)
    prompts, chosen, rejected = pairs["prompt"], pairs["chosen"], pairs["rejected"]
    predicted: list[float] = []
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        predicted.extend(float(p) for p in prefer(prompts[part], chosen[part], rejected[part]))
    truth = pairs["chosen_win_prob"]
    strict = [(p, q) for p, q in zip(predicted, truth, strict=True) if q != 0.5]
    agreement = sum((p > 0.5) == (q > 0.5) for p, q in strict) / max(len(strict), 1)
    expected = [q if p > 0.5 else (1 - q if p < 0.5 else 0.5) for p, q in zip(predicted, truth, strict=True)]
    return OracleAgreement(
        agreement=agreement,
        expected_accuracy=sum(expected) / n,
        oracle_accuracy=sum(max(q, 1 - q) for q in truth) / n,
        n=n,
    )
