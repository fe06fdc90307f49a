"""Nash-MD against a general preference model vs GRPO against a Bradley-Terry reward, on the `cyclic` task (or
`arena`, its testbed-v2 form with held-out prompts: `--task arena`).

From one SFT reference (a tiny llama fine-tuned on the task's base answers) and one reward-model recipe:

- (a) TRL's `GRPOTrainer` against a `bt` reward model (a scalar reward: counting wins favours the decoy D);
- (b) `NashTrainer` (`nash_md`, geometric-mixture opponent) against a `gpm` preference model,

each for the same steps and completions per step, each at its own learning rate and KL coefficient. Printed: the
reward models' agreement with the oracle, each policy's class distribution (A … E2, X = malformed) and exact
class-level exploitability, and oracle win rates (b against a, and each against the reference) with 95% intervals.

    python scripts/nash_cyclic.py [--task cyclic] [--steps 600] [--seed 0] [--out runs/nash_cyclic]

The defaults: GRPO at learning rate 1e-4 with β = 0.05 (at 3e-4 and above, or β = 0.02 for 800 steps, it leaves the
well-formed answers altogether: the bt model scores repeated words above any real answer); Nash-MD at 5e-4 with
β = 0.02 (the regularised equilibrium of the gpm model at β = 0.02 puts 5 % on D; at 1e-4 it moved too slowly, at
3e-3 it cycled onto one class).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("cyclic", "arena"), default="cyclic")
    parser.add_argument("--out", default="runs/nash_cyclic")
    parser.add_argument("--steps", type=int, default=600, help="Optimizer steps of each online method.")
    parser.add_argument("--batch-size", type=int, default=16, help="Completions per step.")
    parser.add_argument("--grpo-learning-rate", type=float, default=1e-4)
    parser.add_argument("--grpo-beta", type=float, default=0.05, help="GRPO's KL coefficient.")
    parser.add_argument("--nash-learning-rate", type=float, default=5e-4)
    parser.add_argument("--nash-beta", type=float, default=0.02, help="Nash-MD's KL regularisation.")
    parser.add_argument("--mixture-coef", type=float, default=0.5)
    parser.add_argument("--pairs", type=int, default=8192, help="Pairs the reward models train on.")
    parser.add_argument("--reward-learning-rate", type=float, default=1e-4, help="The reward models' backbones.")
    parser.add_argument("--n", type=int, default=512, help="Held-out prompts for the evaluation.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the online training runs and the evaluation.")
    parser.add_argument(
        "--format-rule",
        action="store_true",
        help="Add the task's format check to both: GRPO's reward less the demo's format penalty for a malformed "
        "answer, and Nash-MD's preference with a well-formed answer beating a malformed one (judges.with_rule).",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import datasets
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    out = Path(args.out)
    reference, tokenizer, reward_models = prepare(out, args.task, args.pairs, args.reward_learning_rate)
    policies = {
        "grpo:bt": train_online("grpo", reference, reward_models["bt"], out / f"grpo-bt-{args.seed}", args),
        "nash:gpm": train_online("nash", reference, reward_models["gpm"], out / f"nash-gpm-{args.seed}", args),
    }
    report(reference, tokenizer, policies, args)
    return 0


def prepare(out: Path, task_name: str, pairs: int, learning_rate: float) -> tuple[Path, Any, dict[str, Any]]:
    """The SFT reference (the demo recipe's steps for the task) and the bt and gpm reward models, trained on `pairs`
    base answers with soft oracle labels from the same tiny random llama the SFT started from (the recipe of
    `python -m trl_plus.reward_bench`: from the SFT model, gpm fits the cycle no better than bt); cached in `out`.
    Agreement with the oracle is measured on pairs on held-out prompts."""
    from transformers import AutoTokenizer

    from trl_plus.demo import RECIPES, sft
    from trl_plus.reward_bench import fit_reward_model
    from trl_plus.reward_model import RewardModel
    from trl_plus.synthetic import get_task, oracle_agreement
    from trl_plus.testing import make_tiny

    reference = out / "sft"
    base = make_tiny("llama", out / "base", seed=0)
    if not (reference / "config.json").exists():
        sft(base, reference, task_name, steps=RECIPES[task_name].sft_steps, seed=0, print_logs=False)
    reward_models = {}
    for head in ("bt", "gpm"):
        path = out / f"rm-{head}"
        if not (path / "reward_head.json").exists():
            model, seconds = fit_reward_model(base, task_name, head, n=pairs, learning_rate=learning_rate)
            model.save_pretrained(path)
            print(f"rm:{head}: trained in {seconds:.0f} s", flush=True)
        model = RewardModel.from_pretrained(path).eval()
        agreement = oracle_agreement(model.prefer, get_task(task_name), 2000, stream="eval")
        print(f"rm:{head}: {agreement}", flush=True)
        reward_models[head] = model
    return reference, AutoTokenizer.from_pretrained(str(reference)), reward_models


def train_online(method: str, reference: Path, reward_model: Any, out: Path, args: argparse.Namespace) -> Path:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from trl_plus.demo import FORMAT_PENALTY, RECIPES, online_training_args
    from trl_plus.judges import as_preference, with_rule
    from trl_plus.rewards import RuleReward, as_reward_func
    from trl_plus.synthetic import get_task
    from trl_plus.trainers import NashConfig, NashTrainer

    if (out / "config.json").exists():
        return out
    settings = online_training_args(
        out,
        steps=args.steps,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.grpo_learning_rate if method == "grpo" else args.nash_learning_rate,
        max_completion_length=RECIPES[args.task].online_max_new_tokens,
    )
    settings.update(save_strategy="no", logging_steps=max(1, args.steps // 10))
    task = get_task(args.task)
    rows = task.prompts(args.steps * args.batch_size, stream="policy-preference")
    prompts = Dataset.from_dict({"prompt": rows})
    start = time.perf_counter()
    if method == "grpo":
        config = GRPOConfig(**settings, num_generations=4, num_iterations=4, beta=args.grpo_beta)
        rewards: Any = as_reward_func(reward_model)
        if args.format_rule:
            rewards = [rewards, RuleReward(task.is_valid, penalty=FORMAT_PENALTY, name="format")]
        trainer: Any = GRPOTrainer(str(reference), reward_funcs=rewards, args=config, train_dataset=prompts)
    else:
        config = NashConfig(**settings, beta=args.nash_beta, mixture_coef=[args.mixture_coef])
        preference = with_rule(as_preference(reward_model), task.is_valid) if args.format_rule else reward_model
        trainer = NashTrainer(str(reference), preference, args=config, train_dataset=prompts)
    trainer.train()
    trainer.save_model(str(out))
    print(f"{method}: {args.steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def report(reference: Path, tokenizer: Any, policies: dict[str, Path], args: argparse.Namespace) -> None:
    from transformers import AutoModelForCausalLM

    from trl_plus.synthetic import get_task, win_rate
    from trl_plus.synthetic.cyclic import CLASSES, MALFORMED, class_exploitability, class_shares
    from trl_plus.synthetic.evaluate import sample_completions

    task = get_task(args.task)
    models = {"reference (SFT)": reference, **policies}
    loaded = {name: AutoModelForCausalLM.from_pretrained(str(path)) for name, path in models.items()}
    labels = (*CLASSES, MALFORMED)
    # Held-out prompts; on a task that holds prompts out (arena), training prompts too, so the gap shows.
    streams = ["eval", "eval-train"] if task.holds_out_prompts else ["eval"]
    results: dict[str, Any] = {}
    for stream in streams:
        where = "held-out" if stream == "eval" else "training"
        prompts = task.prompts(args.n, seed=args.seed, stream=stream)
        print(f"\n| policy ({where} prompts) | {' | '.join(labels)} | exploitability |")
        print("|---" * (len(labels) + 2) + "|")
        for name, model in loaded.items():
            shares = class_shares(sample_completions(model, tokenizer, prompts, seed=args.seed), prompts, task)
            exploitability = class_exploitability(shares)
            results[f"{name} ({where})"] = {"shares": shares, "exploitability": exploitability}
            print(f"| {name} | {' | '.join(f'{shares[c]:.2f}' for c in labels)} | {exploitability:.3f} |")
        print(f"\n| oracle win rate ({where} prompts) | mean [95% interval] |\n|---|---|")
        pairs = [("nash:gpm", "grpo:bt"), ("nash:gpm", "reference (SFT)"), ("grpo:bt", "reference (SFT)")]
        for a, b in pairs:
            result = win_rate(
                (loaded[a], tokenizer), (loaded[b], tokenizer), task, n=args.n, seed=args.seed, stream=stream
            )
            low, high = result.ci_low, result.ci_high
            results[f"{a} vs {b} ({where})"] = {"win_rate": result.win_rate, "interval": [low, high]}
            print(f"| {a} against {b} | {result.win_rate:.3f} [{low:.3f}, {high:.3f}] |")
    path = Path(args.out) / f"results-{args.seed}.json"
    path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
