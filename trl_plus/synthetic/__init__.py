"""Synthetic preference tasks with a known oracle, so alignment methods can be trained and scored offline.

task = get_task("transitive", seed=0)
sft = task.sft_dataset(2000)                 # prompt/completion
pairs = task.preference_dataset(2000)        # prompt/chosen/rejected, labels drawn from the oracle
task.prefer(prompt, a, b)                    # P(a ≻ b | prompt)
win_rate((model, tok), "path/to/ref", task)  # oracle win rate with a 95% interval
policy_preference_dataset("path/to/sft", task, 2000)  # on-policy pairs labelled by the oracle
oracle_agreement(reward_model.prefer, task)  # a preference model's agreement with the oracle on held-out pairs
"""

from __future__ import annotations

from trl_plus.synthetic.arena import ArenaTask
from trl_plus.synthetic.base import SyntheticTask, as_text
from trl_plus.synthetic.cyclic import CyclicTask
from trl_plus.synthetic.evaluate import (
    OracleAgreement,
    WinRate,
    exploitability,
    oracle_agreement,
    policy_preference_dataset,
    sample_completions,
    win_rate,
)
from trl_plus.synthetic.packing import PackingTask
from trl_plus.synthetic.transitive import TransitiveTask

TASKS: dict[str, type[SyntheticTask]] = {
    "transitive": TransitiveTask,
    "cyclic": CyclicTask,
    "packing": PackingTask,  # testbed v2's transitive task: held-out prompts
    "arena": ArenaTask,  # testbed v2's cyclic task: held-out prompts
}
DEMO_TASK = "packing"  # the demo's task: its evaluation prompts are held out from training


def get_task(name: str, *, seed: int = 0) -> SyntheticTask:
    """A synthetic task by name ("transitive", "cyclic", "packing" or "arena"); the seed fixes its hidden oracle."""
    if name not in TASKS:
        raise ValueError(f"Unknown synthetic task {name!r}; choose one of {sorted(TASKS)}.")
    return TASKS[name](seed=seed)


__all__ = [
    "DEMO_TASK",
    "TASKS",
    "ArenaTask",
    "CyclicTask",
    "OracleAgreement",
    "PackingTask",
    "SyntheticTask",
    "TransitiveTask",
    "WinRate",
    "as_text",
    "exploitability",
    "get_task",
    "oracle_agreement",
    "policy_preference_dataset",
    "sample_completions",
    "win_rate",
]
