"""The `trl-plus` command line: inspect the registries, build tiny checkpoints, look at and score synthetic tasks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from trl_plus.registry import LossSpec, RewardHeadSpec, list_losses, list_reward_heads, plugin_errors


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool = False) -> str:
    """Rows as a markdown table, or as plain columns padded to line up in a terminal."""
    if markdown:
        escape = [[cell.replace("|", "\\|") for cell in row] for row in rows]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in escape])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


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


def _cmd_demo(args: argparse.Namespace) -> int:
    from trl_plus.demo import run_demo

    loss_kwargs = json.loads(args.loss_kwargs) if args.loss_kwargs else None
    run_demo(
        args.out,
        arch=args.arch,
        task_name=args.task,
        sft_steps=args.sft_steps,
        loss=[name.strip() for name in args.loss.split(",")],
        loss_kwargs=loss_kwargs,
        steps=args.steps,
        eval_prompts=args.n,
        seed=args.seed,
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trl_plus.train import main as train_main

    return train_main(args.train_args, prog="trl-plus train")


def build_parser() -> argparse.ArgumentParser:
    from trl_plus.synthetic import TASKS
    from trl_plus.testing import ARCHITECTURES

    parser = argparse.ArgumentParser(prog="trl-plus", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    losses = commands.add_parser("losses", help="list the registered losses")
    losses.add_argument("--kind", choices=("paired", "unpaired", "ranked"), help="only losses of this input kind")
    losses.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    losses.set_defaults(func=_cmd_losses)

    heads = commands.add_parser("reward-heads", help="list the registered reward-model heads")
    heads.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    heads.set_defaults(func=_cmd_reward_heads)

    tiny = commands.add_parser("make-tiny", help="build a tiny random checkpoint offline")
    tiny.add_argument("--arch", choices=ARCHITECTURES, required=True)
    tiny.add_argument("--out", required=True, help="directory to save the model and tokenizer to")
    tiny.add_argument("--vocab-size", type=int, help="model vocabulary (default: the tokenizer's); e.g. 128256")
    tiny.add_argument("--tokenizer-vocab-size", type=int, default=1024, help="BPE target size (default 1024)")
    tiny.add_argument("--hidden-size", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_cmd_make_tiny)

    task = commands.add_parser("task", help="print a synthetic task's oracle and example pairs")
    task.add_argument("name", choices=sorted(TASKS))
    task.add_argument("--seed", type=int, default=0)
    task.add_argument("--examples", type=int, default=5)
    task.set_defaults(func=_cmd_task)

    rate = commands.add_parser("win-rate", help="oracle win rate of policy A against policy B on a synthetic task")
    rate.add_argument("policy_a", help="path (or hub id) of policy A")
    rate.add_argument("policy_b", help="path (or hub id) of policy B")
    rate.add_argument("--task", choices=sorted(TASKS), default="transitive")
    rate.add_argument("--task-seed", type=int, default=0, help="seed of the task's hidden oracle")
    rate.add_argument("--n", type=int, default=256, help="number of held-out prompts")
    rate.add_argument("--seed", type=int, default=0, help="sampling seed")
    rate.add_argument("--conversational", action="store_true", help="prompt through the chat template")
    rate.add_argument("--max-new-tokens", type=int, default=16)
    rate.set_defaults(func=_cmd_win_rate)

    demo = commands.add_parser(
        "demo", help="tiny model → SFT → preference training with --loss → oracle win rate vs the SFT reference"
    )
    demo.add_argument("--out", default="runs/demo", help="where to save the checkpoints (default runs/demo)")
    demo.add_argument("--arch", choices=ARCHITECTURES, default="llama")
    demo.add_argument("--task", choices=sorted(TASKS), default="transitive")
    demo.add_argument("--sft-steps", type=int, default=300)
    demo.add_argument(
        "--loss", default="dpo", help="registered loss(es) for the preference stage, e.g. simpo or dpo,sft"
    )
    demo.add_argument("--loss-kwargs", default=None, help="JSON hyperparameters, e.g. '{\"beta\": 0.2}'")
    demo.add_argument("--steps", type=int, default=400, help="preference training steps (batches of 16 pairs)")
    demo.add_argument("--n", type=int, default=256, help="held-out prompts for the oracle evaluation")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    # `trl-plus train` has its own parser (TRL's TrlParser); `main` hands it every argument after `train`.
    train = commands.add_parser(
        "train", help="train with PreferenceTrainer: TRL-style flags or --config YAML (see `trl-plus train --help`)"
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER, help="arguments of `trl-plus train`")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # past argparse, so `--help` and every flag reach the train parser
        return _cmd_train(argparse.Namespace(train_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
