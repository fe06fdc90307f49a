"""Best-of-N with the oracle as judge on the packing task's held-out prompts: the win rate against one sample of
the same model, for several N (the oracle ceiling that a reward model's best-of-N would approach).

    python scripts/best_of_n.py --model runs/demo/sft --n 1,2,4,8,16
"""

from __future__ import annotations

import argparse

import torch

from trl_plus.judges import best_of_n, task_judge
from trl_plus.synthetic import get_task, sample_completions
from trl_plus.synthetic.evaluate import completions_win_rate, load_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/sft", help="the policy (default: the demo's SFT model)")
    parser.add_argument("--task", default="packing", help="synthetic task (default packing)")
    parser.add_argument("--n", default="1,2,4,8,16", help="sample counts, comma-separated")
    parser.add_argument("--prompts", type=int, default=512, help="held-out prompts (default 512)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task, seed=0)
    prompts = task.prompts(args.prompts, seed=0, stream="eval")
    policy = load_policy(args.model)
    baseline = sample_completions(*policy, prompts, seed=1)  # one sample each, other draws than best_of_n's
    print("| N | win rate vs one sample [95% CI] | well-formed |")
    print("|---|---|---|")
    for n in (int(x) for x in args.n.split(",")):
        best = best_of_n(policy, prompts, task_judge(task), n=n, seed=0)
        result = completions_win_rate(task, prompts, best, baseline)
        print(
            f"| {n} | {result.win_rate:.3f} [{result.ci_low:.3f}, {result.ci_high:.3f}] | {result.valid_a:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
