"""The `trl-plus` command line: inspect the registries, build tiny checkpoints, look at and score synthetic tasks,
train, and compare methods."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl_plus.errors import DEBUG_ENV, quiet_checkpointing_renames, run_reporting_errors
from trl_plus.registry import LossSpec, RewardHeadSpec, list_losses, list_reward_heads, plugin_errors
from trl_plus.tables import format_table

LOSS_HEADERS = ("name", "aliases", "input", "reference", "hyperparameters", "paper")
HEAD_HEADERS = ("name", "aliases", "input", "hyperparameters", "paper")


def loss_rows(specs: Sequence[LossSpec]) -> list[list[str]]:
    return [
        [
            spec.name,
            ", ".join(spec.aliases),
            spec.input_kind,
            "yes" if spec.requires_reference else "no",
            ", ".join(str(hp) for hp in spec.hyperparameters),
            spec.paper or "",
        ]
        for spec in specs
    ]


def head_rows(specs: Sequence[RewardHeadSpec]) -> list[list[str]]:
    return [
        [
            spec.name,
            ", ".join(spec.aliases),
            spec.input_kind,
            ", ".join(map(str, spec.hyperparameters)),
            spec.paper or "",
        ]
        for spec in specs
    ]


def _describe(spec: LossSpec | RewardHeadSpec) -> dict[str, object]:
    described: dict[str, object] = {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "input_kind": spec.input_kind,
        "hyperparameters": {hp.name: repr(hp.default) for hp in spec.hyperparameters},
        "paper": spec.paper,
        "origin": spec.origin,
    }
    if isinstance(spec, LossSpec):
        described["requires_reference"] = spec.requires_reference
    return described


def _print_registry(
    specs: Sequence[LossSpec] | Sequence[RewardHeadSpec],
    headers: Sequence[str],
    rows: list[list[str]],
    fmt: str,
    what: str,
) -> int:
    if fmt == "json":
        print(json.dumps([_describe(spec) for spec in specs], indent=2))
    else:
        print(format_table(headers, rows, markdown=fmt == "markdown") if specs else f"No {what} registered.")
    for error in plugin_errors():
        print(f"warning: plugin failed to load: {error}", file=sys.stderr)
    return 0


def _cmd_losses(args: argparse.Namespace) -> int:
    specs = list_losses(args.kind)
    return _print_registry(specs, LOSS_HEADERS, loss_rows(specs), args.format, "losses")


def _cmd_reward_heads(args: argparse.Namespace) -> int:
    specs = list_reward_heads()
    return _print_registry(specs, HEAD_HEADERS, head_rows(specs), args.format, "reward heads")


def _cmd_make_tiny(args: argparse.Namespace) -> int:
    from trl_plus.testing import make_tiny

    out = make_tiny(
        args.arch,
        args.out,
        vocab_size=args.vocab_size,
        tokenizer_vocab_size=args.tokenizer_vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        num_heads=args.heads,
        seed=args.seed,
    )
    print(f"Saved a tiny {args.arch} checkpoint to {out}")
    return 0


def _cmd_task(args: argparse.Namespace) -> int:
    from trl_plus.synthetic import get_task

    task = get_task(args.name, seed=args.seed)
    print(task.describe())
    print("\nExample preference pairs (labels drawn from the oracle):")
    for row in task.preference_dataset(args.examples, seed=args.seed, oracle_column=True):
        print(f"  {row['prompt']!r}: {row['chosen']!r} ≻ {row['rejected']!r}  (P = {row['chosen_win_prob']:.2f})")
    return 0


def _cmd_win_rate(args: argparse.Namespace) -> int:
    from trl_plus.synthetic import get_task, win_rate

    result = win_rate(
        args.policy_a,
        args.policy_b,
        get_task(args.task, seed=args.task_seed),
        n=args.n,
        seed=args.seed,
        conversational=args.conversational,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"{args.policy_a} vs {args.policy_b} on {args.task}: {result}")
    return 0


def _prompts(args: argparse.Namespace) -> list[str]:
    """Prompts from --prompts-file (one per line) or --task's held-out stream."""
    if args.prompts_file:
        lines = Path(args.prompts_file).read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line.strip()][: args.n]
    from trl_plus.synthetic import get_task

    return get_task(args.task).prompts(args.n, seed=args.seed, stream="eval")


def _cmd_best_of_n(args: argparse.Namespace) -> int:
    from trl_plus.judges import best_of_n, load_judge

    judge = load_judge(args.judge)
    prompts = _prompts(args)
    best = best_of_n(args.model, prompts, judge, n=args.samples, seed=args.seed, max_new_tokens=args.max_new_tokens)
    rows = [{"prompt": p, "completion": " " + b.strip()} for p, b in zip(prompts, best, strict=True)]
    with open(args.out, "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)
    cost = getattr(getattr(judge, "source", None), "cost", None)
    print(
        f"Best of {args.samples} for {len(rows)} prompts written to {args.out}"
        + (f"; judge cost: {cost}" if cost else "")
    )
    return 0


def _cmd_constitution(args: argparse.Namespace) -> int:
    from trl_plus.constitution import constitutional_dataset, constitutional_examples

    examples = constitutional_examples(
        args.model, _prompts(args), args.principle, seed=args.seed, max_new_tokens=args.max_new_tokens
    )
    rows = constitutional_dataset(examples)
    rows.save_to_disk(args.out)
    print(f"{len(rows)} (revision ≻ answer) pairs of {len(examples)} prompts saved to {args.out}")
    return 0


def _json_flag(args: argparse.Namespace, flag: str) -> Any:
    """The JSON value of `--flag` (None when not given); text that is not JSON is a ValueError naming the flag."""
    value = getattr(args, flag)
    try:
        return json.loads(value) if value else None
    except json.JSONDecodeError as error:
        raise ValueError(f"--{flag.replace('_', '-')} is not JSON: {error}") from None


def _cmd_demo(args: argparse.Namespace) -> int:
    from trl_plus.demo import run_demo

    loss_kwargs = _json_flag(args, "loss_kwargs")
    weights = None
    if args.loss_weights is not None:
        try:
            weights = [float(w) for w in args.loss_weights.split(",")]
        except ValueError:
            raise ValueError(f"--loss-weights takes numbers separated by commas, got {args.loss_weights!r}.") from None
    run_demo(
        args.out,
        arch=args.arch,
        task_name=args.task,
        method=args.method,
        judge=args.judge,
        sft_steps=args.sft_steps,
        loss=None if args.loss is None else [name.strip() for name in args.loss.split(",")],
        loss_kwargs=loss_kwargs,
        loss_weights=weights,
        steps=args.steps,
        rounds=args.rounds,
        learning_rate=args.learning_rate,
        pairs=args.pairs,
        eval_prompts=args.n,
        seed=args.seed,
    )
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from trl_plus.compare import CompareConfig, CompareError, compare

    kwargs = {flag: _json_flag(args, flag) for flag in ("loss_kwargs", "online_kwargs")}
    try:
        config = CompareConfig(
            losses=args.losses,
            heads=args.heads or (),
            online=args.online or (),
            online_learning_rate=args.online_learning_rate,
            online_max_new_tokens=args.online_max_new_tokens,
            rounds=args.rounds,
            reward_pooling=args.reward_pooling,
            reward_pairs=args.reward_pairs,
            format_penalty=args.format_penalty,
            task=args.task if args.task or args.dataset else "packing",
            dataset=args.dataset,
            model=args.model,
            out_dir=args.out,
            steps=args.steps,
            seeds=args.seeds,
            sft_steps=args.sft_steps,
            n=args.n,
            curve_points=args.curve_points,
            curve_prompts=args.curve_prompts,
            metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
            learning_rate=args.learning_rate,
            sft_learning_rate=args.sft_learning_rate,
            batch_size=args.batch_size,
            threads=args.threads,
            progress=not args.no_progress,
            control=not args.no_control,
            **kwargs,
        )
        comparison = compare(config)
    except CompareError as error:  # bad settings or data, found before any training
        print(f"trl-plus compare: error: {error}", file=sys.stderr)
        return 2
    return 1 if any(result.error for result in comparison.results) else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trl_plus.help_cache import cached_help

    text = cached_help(args.train_args, "trl-plus train")
    if text is not None:  # the short help, without importing the trainers
        print(text, end="")
        return 0
    from trl_plus.train import main as train_main

    return train_main(args.train_args, prog="trl-plus train")


def build_parser() -> argparse.ArgumentParser:
    from trl_plus.demo import JUDGES, METHODS
    from trl_plus.synthetic import DEMO_TASK, TASKS
    from trl_plus.testing import ARCHITECTURES

    parser = argparse.ArgumentParser(prog="trl-plus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    losses = commands.add_parser("losses", help="list the registered losses")
    losses.add_argument(
        "--kind", choices=("paired", "unpaired", "ranked", "online"), help="only losses of this input kind"
    )
    losses.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="output format")
    losses.set_defaults(func=_cmd_losses)

    heads = commands.add_parser("reward-heads", help="list the registered reward-model heads")
    heads.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="output format")
    heads.set_defaults(func=_cmd_reward_heads)

    tiny = commands.add_parser("make-tiny", help="build a tiny random checkpoint offline")
    tiny.add_argument("--arch", choices=ARCHITECTURES, required=True, help="model family (config and tokenizer)")
    tiny.add_argument("--out", required=True, help="directory to save the model and tokenizer to")
    tiny.add_argument("--vocab-size", type=int, help="model vocabulary (default: the tokenizer's); e.g. 128256")
    tiny.add_argument("--tokenizer-vocab-size", type=int, default=1024, help="BPE target size (default 1024)")
    tiny.add_argument("--hidden-size", type=int, default=64, help="hidden size (default 64)")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    tiny.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    tiny.set_defaults(func=_cmd_make_tiny)

    task = commands.add_parser("task", help="print a synthetic task's oracle and example pairs")
    task.add_argument("name", choices=sorted(TASKS), help="the task")
    task.add_argument("--seed", type=int, default=0, help="seed of the task's hidden oracle (default 0)")
    task.add_argument("--examples", type=int, default=5, help="example pairs to print (default 5)")
    task.set_defaults(func=_cmd_task)

    rate = commands.add_parser("win-rate", help="oracle win rate of policy A against policy B on a synthetic task")
    rate.add_argument("policy_a", help="path (or hub id) of policy A")
    rate.add_argument("policy_b", help="path (or hub id) of policy B")
    rate.add_argument("--task", choices=sorted(TASKS), default="transitive", help="the task (default transitive)")
    rate.add_argument("--task-seed", type=int, default=0, help="seed of the task's hidden oracle")
    rate.add_argument("--n", type=int, default=256, help="number of held-out prompts")
    rate.add_argument("--seed", type=int, default=0, help="sampling seed")
    rate.add_argument("--conversational", action="store_true", help="prompt through the chat template")
    rate.add_argument("--max-new-tokens", type=int, default=16, help="completion length (default 16)")
    rate.set_defaults(func=_cmd_win_rate)

    for name, helptext in (
        ("best-of-n", "sample N answers per prompt and keep the judge's best (JSON lines out)"),
        ("constitution", "answer → critique → revision by principles, saved as (revision ≻ answer) pairs"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--model", required=True, help="the policy checkpoint")
        sub.add_argument("--task", choices=sorted(TASKS), default=DEMO_TASK, help="held-out prompts of this task")
        sub.add_argument("--prompts-file", help="one prompt per line instead of --task")
        sub.add_argument("--n", type=int, default=64, help="prompts (default 64)")
        sub.add_argument("--seed", type=int, default=0, help="sampling seed (and --task's prompt draw)")
        sub.add_argument("--max-new-tokens", type=int, default=16, help="answer length (default 16)")
        sub.add_argument("--out", required=True, help="output file (best-of-n) or dataset folder (constitution)")
        if name == "best-of-n":
            sub.add_argument(
                "--judge", required=True, help="synthetic:<task>, llm:<causal LM path>, or a reward-model checkpoint"
            )
            sub.add_argument("--samples", type=int, default=4, help="N, answers sampled per prompt (default 4)")
            sub.set_defaults(func=_cmd_best_of_n)
        else:
            sub.add_argument("--principle", action="append", required=True, help="a principle (repeat the flag)")
            sub.set_defaults(func=_cmd_constitution)

    demo = commands.add_parser(
        "demo",
        help="the RLHF loop: tiny model → SFT → preference data and a reward model → --method → oracle win rate",
    )
    demo.add_argument("--out", default="runs/demo", help="where to save the checkpoints (default runs/demo)")
    demo.add_argument("--arch", choices=ARCHITECTURES, default="llama", help="model family (default llama)")
    demo.add_argument("--task", choices=sorted(TASKS), default=DEMO_TASK, help=f"synthetic task (default {DEMO_TASK})")
    recipe = "default: the task's recipe, see trl_plus.demo.RECIPES"
    demo.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="iterative: rounds of fresh samples ranked by the judge; offline: one round of --loss on the preference "
        f"data; rft: rejection-sampling fine-tuning; ppo; nash_md ({recipe})",
    )
    demo.add_argument(
        "--judge",
        choices=JUDGES,
        default="reward-model",
        help="what ranks or rewards the online methods' samples: the reward model trained on the preference data "
        "(default), or the task's oracle",
    )
    demo.add_argument("--sft-steps", type=int, default=None, help=f"SFT steps before preference training ({recipe})")
    demo.add_argument(
        "--loss", default=None, help=f"registered loss(es) for the preference stage, e.g. simpo or dpo,sft ({recipe})"
    )
    demo.add_argument("--loss-kwargs", default=None, help="JSON hyperparameters, e.g. '{\"beta\": 0.2}'")
    demo.add_argument("--loss-weights", default=None, help="one weight per loss, e.g. 1,0.2 (default: equal)")
    demo.add_argument("--rounds", type=int, default=None, help=f"rounds of fresh samples, iterative and rft ({recipe})")
    demo.add_argument(
        "--steps", type=int, default=None, help=f"training steps (per round for the loops), batches of 16 ({recipe})"
    )
    demo.add_argument("--learning-rate", type=float, default=None, help=f"preference stage ({recipe})")
    demo.add_argument("--pairs", type=int, default=None, help=f"the reward model's preference pairs ({recipe})")
    demo.add_argument("--n", type=int, default=512, help="held-out prompts for the oracle evaluation (default 512)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the model, task and sampling (default 0)")
    demo.set_defaults(func=_cmd_demo)

    cmp = commands.add_parser(
        "compare",
        help="train several losses from one reference on one dataset; table, CSV and plots of who wins at what cost",
        description="Train each method with the same steps, data and seeds, then report the oracle win rate vs the "
        "reference (synthetic tasks), held-out implicit-reward accuracy and margin, KL(π‖π_ref), step time and peak "
        "memory (training runs on the CPU). Exit status 1 when a method failed (its row says why), 2 for bad settings.",
    )
    cmp.add_argument("--losses", default="dpo,ipo,simpo,orpo,kto,plackett_luce", help="methods; `a+b` sums losses")
    cmp.add_argument("--heads", help="reward-model heads to train on the same data too, e.g. bt,gpm (rows rm:NAME)")
    cmp.add_argument(
        "--online",
        help="online methods on the same prompts: ppo, grpo, nash (the oracle), ppo:bt, nash:gpm (a reward model); "
        "iterative[:dpo+sft], rft (rounds judged by the oracle)",
    )
    cmp.add_argument("--online-learning-rate", type=float, default=1e-3, help="for the online methods (default 1e-3)")
    cmp.add_argument(
        "--online-kwargs",
        help='JSON PPOConfig/GRPOConfig/NashConfig fields by online row, e.g. \'{"ppo:bt": {"kl_coef": 0.2}}\'',
    )
    cmp.add_argument(
        "--reward-pooling", choices=("mean", "last"), default="mean", help="reward models' pooling (default mean)"
    )
    cmp.add_argument(
        "--reward-pairs",
        type=int,
        help="ppo:HEAD and other rows against a reward model: train it on N soft-labelled pairs of the task's base "
        "answers for 3 epochs, as the demo did before it trained packing's for one (default: on the comparison's data)",
    )
    cmp.add_argument(
        "--format-penalty",
        type=float,
        default=0.0,
        help="ppo:HEAD and grpo:HEAD rows: this much less reward for an answer the task's format check rejects",
    )
    cmp.add_argument(
        "--online-max-new-tokens", type=int, help="online methods' completion length while training (default 16)"
    )
    cmp.add_argument(
        "--rounds", type=int, default=4, help="iterative and rft rows: rounds of fresh samples in --steps (default 4)"
    )
    cmp.add_argument("--task", choices=sorted(TASKS), help="synthetic task with an oracle (default packing)")
    cmp.add_argument("--dataset", help="your preference data instead: save_to_disk dir, json/csv/parquet, hub id")
    cmp.add_argument("--model", help="the reference every method starts from (default: a tiny llama, SFT here)")
    cmp.add_argument("--steps", type=int, default=400, help="training steps per method and seed (default 400)")
    cmp.add_argument("--seeds", type=int, default=5, help="training runs per method, seeds 0..N-1 (default 5)")
    cmp.add_argument(
        "--sft-steps", type=int, help="SFT of the reference on the task (default: the demo's, 300; 900 for packing)"
    )
    cmp.add_argument("--sft-learning-rate", type=float, help="default 3e-3 for the tiny model, 2e-5 for --model")
    cmp.add_argument("--n", type=int, default=256, help="held-out prompts per seed, and at most as many pairs")
    cmp.add_argument("--curve-points", type=int, default=4, help="curve points after step 0 (0: no curve)")
    cmp.add_argument("--curve-prompts", type=int, default=64, help="prompts per evaluation during training")
    cmp.add_argument(
        "--metrics", help="comma list of win_rate, exploitability, accuracy, kl, cost (default: all the data allows)"
    )
    cmp.add_argument("--loss-kwargs", help='JSON hyperparameters by loss, e.g. \'{"simpo": {"beta": 2.5}}\'')
    cmp.add_argument(
        "--learning-rate",
        type=float,
        help="offline losses, reward models and the loops (default 1e-4, or a loss's own on a task with the tiny "
        "model: trl_plus.compare.config.TASK_BUDGETS)",
    )
    cmp.add_argument("--batch-size", type=int, default=16, help="pairs or ranked lists per step (default 16)")
    cmp.add_argument("--threads", type=int, help="torch threads; results repeat exactly for the same count")
    cmp.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    cmp.add_argument("--no-progress", action="store_true", help="no progress bars")
    cmp.add_argument(
        "--no-control", action="store_true", help="task runs: leave out the sft control row added when no row is sft"
    )
    cmp.set_defaults(func=_cmd_compare)

    # `trl-plus train` has its own parser (TRL's TrlParser); `main` hands it every argument after `train`.
    train = commands.add_parser(
        "train",
        help="train with any trl-plus trainer (preference, unpaired, reward, ppo, nash, rft, iterative): TRL-style "
        "flags or --config YAML (see `trl-plus train --help`)",
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER, help="arguments of `trl-plus train`")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors a user can fix print as one line (see `trl_plus.errors`; `--debug` for tracebacks)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"
    if argv[:1] == ["train"]:  # past argparse, so `--help` and every flag reach the train parser
        return _cmd_train(argparse.Namespace(train_args=argv[1:]))
    args = build_parser().parse_args(argv)
    quiet_checkpointing_renames()
    return run_reporting_errors(f"trl-plus {argv[0]}", lambda: int(args.func(args)))


if __name__ == "__main__":
    sys.exit(main())
