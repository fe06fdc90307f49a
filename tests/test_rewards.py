"""RuleReward: a check on (prompt, completion) as a reward function, to add to a learned reward."""

from __future__ import annotations

from trl_plus.rewards import RuleReward
from trl_plus.synthetic import get_task


def test_a_rule_costs_its_penalty_only_where_it_breaks() -> None:
    task = get_task("packing", seed=0)
    prompts = task.prompts(3, seed=0)
    answers = [task.best_response(prompts[0]), "rope rope", [{"role": "assistant", "content": "x"}]]
    reward = RuleReward(task.is_valid, penalty=4.0, name="format")
    assert reward(prompts, answers) == [0.0, -4.0, -4.0]  # conversational completions are read as their text
    assert reward.__name__ == "format"  # TRL logs each reward function under its name
