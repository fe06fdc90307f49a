"""PPO end to end on the transitive task: from an SFT reference, against the oracle reward, to a win rate."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from transformers import PrinterCallback

from trl_plus.demo import online_training_args, sft
from trl_plus.synthetic import get_task, win_rate
from trl_plus.testing import make_tiny
from trl_plus.trainers import PPOConfig, PPOTrainer


@pytest.mark.slow
def test_ppo_with_the_oracle_reward_beats_its_sft_reference(tmp_path: Path) -> None:
    """Learning rate 1e-3, 16 completions of at most 8 tokens per step, 4 PPO epochs per rollout, 800 steps (measured
    at 0.742 [0.711, 0.773]): the oracle win rate against the SFT model must clear ½ with its whole 95% interval.
    (With 16-token completions the same run is unstable: 0.447 after 400 steps; see the README.)"""
    task = get_task("transitive")
    reference = sft(
        make_tiny("llama", tmp_path / "base"), tmp_path / "sft", "transitive", steps=300, seed=0, print_logs=False
    )
    settings = online_training_args(
        tmp_path / "ppo", steps=800, seed=0, batch_size=16, learning_rate=1e-3, max_completion_length=8
    )
    args = PPOConfig(**settings, num_ppo_epochs=4)
    prompts = Dataset.from_dict({"prompt": task.prompts(2048, stream="sft")})
    trainer = PPOTrainer(str(reference), reward_funcs=task, args=args, train_dataset=prompts)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    result = win_rate((trainer.model.eval(), trainer.processing_class), str(reference), task, n=256)
    assert result.ci_low > 0.5, result
    assert result.valid_a >= 0.9, result  # it learned the format, not a reward loophole
