"""LLM-as-judge from any local causal LM: pairwise P(a ≻ b) and a pointwise score, read from next-token log-probs.

`LLMJudge(model)` shows the judge the question, two answers labelled A and B, and optional principles (a
constitution: a list of strings), then reads how likely it is to continue with " A" or " B" (each choice's full
log-probability by teacher forcing, so multi-token labels work with any tokenizer). Every pair is asked in both
orders and the two readings averaged, which cancels position bias exactly: prefer(a, b) = 1 − prefer(b, a).
`score` reads the expected value of a 1–10 rating the same way. Judges batch their inputs, run without gradients
and count their cost (`judge.cost`).

`train_llm_judge` fine-tunes a small local model into a judge on a synthetic task's labelled pairs with TRL's
`SFTTrainer` (completion-only loss on " A"/" B"), so the whole path runs offline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trl_plus.synthetic.base import SyntheticTask, as_text

PAIRWISE_TEMPLATE = "{principles}Question: {question}\nAnswer A: {a}\nAnswer B: {b}\nBetter answer:"
POINTWISE_TEMPLATE = "{principles}Question: {question}\nAnswer: {answer}\nScore from 1 to 10:"
CHOICES = (" A", " B")
SCORES = tuple(range(1, 11))


def principles_text(principles: Sequence[str]) -> str:
    return "Principles:\n" + "".join(f"- {p}\n" for p in principles) if principles else ""


def pairwise_text(
    prompt: Any, a: Any, b: Any, *, principles: Sequence[str] = (), template: str = PAIRWISE_TEMPLATE
) -> str:
    """What the judge reads for one ordered pair (answer `a` shown as A)."""
    return template.format(
        principles=principles_text(principles), question=as_text(prompt), a=as_text(a).strip(), b=as_text(b).strip()
    )


def check_template(name: str, template: str, keys: Sequence[str]) -> None:
    """Refuse a prompt template that leaves out one of the fields it must show."""
    missing = [key for key in keys if key not in template]
    if missing:
        raise ValueError(f"The {name} must contain {missing}: {template!r}.")


@dataclass
class JudgeCost:
    """What a judge has spent: calls, rows scored (contexts × choices), tokens read, and seconds."""

    calls: int = 0
    rows: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.calls} calls, {self.rows} rows, {self.tokens} tokens, {self.seconds:.1f} s"


@dataclass
class LLMJudge:
    """A causal LM (a path or a loaded model) as a pairwise and pointwise judge."""

    model: Any
    tokenizer: Any = None
    principles: Sequence[str] = ()
    template: str = PAIRWISE_TEMPLATE
    score_template: str = POINTWISE_TEMPLATE
    choices: tuple[str, str] = CHOICES
    batch_size: int = 16
    cost: JudgeCost = field(default_factory=JudgeCost)

    def __post_init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(self.model, (str, Path)):
            self.tokenizer = self.tokenizer or AutoTokenizer.from_pretrained(str(self.model))
            self.model = AutoModelForCausalLM.from_pretrained(str(self.model))
        if self.tokenizer is None:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model.config._name_or_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if len(set(self.choices)) != 2:
            raise ValueError(f"A pairwise judge needs two different choices, got {self.choices!r}.")
        check_template("judge's template", self.template, ("{question}", "{a}", "{b}"))
        check_template("judge's score_template", self.score_template, ("{question}", "{answer}"))
        self.model.eval()

    def pairwise_context(self, prompt: Any, a: Any, b: Any) -> str:
        return pairwise_text(prompt, a, b, principles=self.principles, template=self.template)

    @torch.no_grad()
    def choice_probs(self, contexts: Sequence[str], choices: Sequence[str]) -> torch.Tensor:
        """P(choice | context) normalised over `choices`, [len(contexts), len(choices)], each choice's log-prob the
        sum over its tokens after the context (teacher forcing)."""
        from trl_plus.evaluation import completion_logps
        from trl_plus.trainers._compat import common_prefix_length

        start_time = time.perf_counter()
        tokenizer = self.tokenizer
        rows, starts = [], []
        for context in contexts:
            context_ids = _without_eos(tokenizer, tokenizer(context)["input_ids"])
            for choice in choices:
                ids = _without_eos(tokenizer, tokenizer(context + choice)["input_ids"])
                start = common_prefix_length(context_ids, ids)
                if start >= len(ids):
                    raise ValueError(f"The choice {choice!r} adds no token after the judge's context.")
                rows.append(ids)
                starts.append(start)
        device = next(self.model.parameters()).device
        pad = tokenizer.pad_token_id
        logps = []
        for first in range(0, len(rows), self.batch_size):
            batch = list(
                zip(rows[first : first + self.batch_size], starts[first : first + self.batch_size], strict=True)
            )
            # Contexts padded on the left, choices on the right: every choice starts at the same column.
            head = max(start for _, start in batch)
            width = head + max(len(ids) - start for ids, start in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for i, (ids, start) in enumerate(batch):
                begin = head - start
                input_ids[i, begin : begin + len(ids)] = torch.tensor(ids)
                mask[i, begin : begin + len(ids)] = 1
            logps.append(completion_logps(self.model, input_ids.to(device), mask.to(device), head).cpu())
        self.cost.calls += 1
        self.cost.rows += len(rows)
        self.cost.tokens += sum(len(ids) for ids in rows)
        self.cost.seconds += time.perf_counter() - start_time
        return torch.cat(logps).view(len(contexts), len(choices)).softmax(-1)

    def prefer(self, prompts: Sequence[Any], a: Sequence[Any], b: Sequence[Any]) -> torch.Tensor:
        """P(a ≻ b) per row: the judge's P("A") with a shown first, averaged with its P("B") with a shown second."""
        if not len(prompts) == len(a) == len(b):
            raise ValueError(f"prompts, a and b differ in length: {len(prompts)}, {len(a)}, {len(b)}.")
        if not len(prompts):
            return torch.zeros(0)
        shown_first = [self.pairwise_context(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]
        shown_second = [self.pairwise_context(p, y, x) for p, x, y in zip(prompts, a, b, strict=True)]
        probs = self.choice_probs(shown_first + shown_second, self.choices)
        n = len(prompts)
        return (probs[:n, 0] + probs[n:, 1]) / 2

    __call__ = prefer

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], scores: Sequence[int] = SCORES) -> torch.Tensor:
        """The expected rating Σ_s s·P(s) over `scores`, one per completion."""
        contexts = [
            self.score_template.format(
                principles=principles_text(self.principles), question=as_text(p), answer=as_text(c).strip()
            )
            for p, c in zip(prompts, completions, strict=True)
        ]
        if not contexts:
            return torch.zeros(0)
        probs = self.choice_probs(contexts, [f" {s}" for s in scores])
        return probs @ torch.tensor([float(s) for s in scores])


def _without_eos(tokenizer: Any, ids: list[int]) -> list[int]:
    """Token ids without an EOS the tokenizer appended: the judge's answer is read before any end of text."""
    eos = tokenizer.eos_token_id
    return ids[:-1] if ids and eos is not None and ids[-1] == eos else ids


def judge_dataset(task: SyntheticTask, n: int, *, seed: int = 0, principles: Sequence[str] = ()) -> Any:
    """Prompt/completion rows teaching a judge the task's labels: each labelled pair shown in a random order, the
    completion " A" or " B" naming the chosen answer."""
    import numpy as np
    from datasets import Dataset

    pairs = task.preference_dataset(n, seed=seed)
    rng = np.random.default_rng(seed)
    prompts, completions = [], []
    for row in pairs:
        chosen_first = bool(rng.integers(2))
        a, b = (row["chosen"], row["rejected"]) if chosen_first else (row["rejected"], row["chosen"])
        prompts.append(pairwise_text(row["prompt"], a, b, principles=principles))
        completions.append(CHOICES[0] if chosen_first else CHOICES[1])
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def train_llm_judge(
    model: str | Path,
    task: SyntheticTask,
    out_dir: str | Path,
    *,
    n: int = 38_400,
    steps: int = 1200,
    learning_rate: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> Path:
    """Fine-tune `model` into a judge of `task` (SFT on `judge_dataset`, loss on the answer token only); saved to
    `out_dir` with its tokenizer."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from trl_plus.demo import training_args

    settings = training_args(out_dir, steps=steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate)
    args = SFTConfig(**settings)
    trainer = SFTTrainer(model=str(model), args=args, train_dataset=judge_dataset(task, n, seed=seed))
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(str(out_dir))
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    """`python -m trl_plus.llm_judge`: train a tiny judge on a synthetic task; print its agreement with the oracle."""
    import argparse
    import tempfile
    import warnings

    import datasets
    import transformers

    from trl_plus.synthetic import get_task, oracle_agreement
    from trl_plus.testing import make_tiny

    parser = argparse.ArgumentParser(prog="python -m trl_plus.llm_judge", description=main.__doc__)
    parser.add_argument("--task", default="transitive")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--pairs", type=int, default=38_400, help="labelled pairs to train on")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--out", help="where to save the judge (default: a temporary folder)")
    args = parser.parse_args(argv)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    task = get_task(args.task)
    with tempfile.TemporaryDirectory() as scratch:
        base = make_tiny("llama", Path(scratch) / "base", seed=0)
        start = time.perf_counter()
        path = train_llm_judge(
            base,
            task,
            args.out or Path(scratch) / "judge",
            n=args.pairs,
            steps=args.steps,
            learning_rate=args.learning_rate,
        )
        print(
            f"Trained a tiny llama judge on {args.pairs} {args.task} pairs, {args.steps} steps, "
            f"in {time.perf_counter() - start:.0f} s"
        )
        judge = LLMJudge(path)
        print(f"LLM judge: {oracle_agreement(judge, task, args.held_out)}")
        print(f"Judging cost: {judge.cost}")
    return 0


__all__ = ["CHOICES", "JudgeCost", "LLMJudge", "judge_dataset", "pairwise_text", "train_llm_judge"]


if __name__ == "__main__":
    raise SystemExit(main())
