"""4-bit loading lets go of the full-precision checkpoint file: after the trainers (and `RewardModel`) load a
quantized model, no page of its safetensors file stays mapped, tied weights stay tied and outputs do not change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM

from trl_plus.reward_model import RewardModel
from trl_plus.synthetic import get_task
from trl_plus.testing import make_tiny, qlora_kwargs
from trl_plus.trainers import PPOConfig, PPOTrainer, PreferenceConfig, PreferenceTrainer
from trl_plus.trainers._compat import release_checkpoint_mapping

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps")


def mapped(checkpoint: Path) -> bool:
    """Whether any region of this process maps a file of `checkpoint`."""
    folder = str(checkpoint.resolve())
    return any(folder in line for line in Path("/proc/self/smaps").read_text().splitlines() if "-" in line[:20])


@pytest.fixture
def qwen2(tmp_path: Path) -> Path:
    """A fresh checkpoint per test (tied embeddings), so no other test's model maps its file."""
    return make_tiny("qwen2", tmp_path / "qwen2")


def test_release_keeps_ties_and_outputs_and_unmaps_the_file(qwen2: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen2, quantization_config=qlora_kwargs()["quantization_config"])
    assert mapped(qwen2)  # transformers' loading leaves the unquantized weights as views of the file
    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    release_checkpoint_mapping(model)
    assert not mapped(qwen2)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


def test_full_precision_models_are_left_as_they_are(qwen2: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(qwen2)
    pointer = model.model.embed_tokens.weight.data_ptr()
    release_checkpoint_mapping(model)
    assert model.model.embed_tokens.weight.data_ptr() == pointer


def test_trainers_and_reward_models_release_what_they_load_in_4bit(qwen2: Path, tmp_path: Path) -> None:
    task = get_task("transitive")
    shared = dict(per_device_train_batch_size=4, max_steps=1, report_to="none", use_cpu=True)
    trainer = PreferenceTrainer(
        str(qwen2),
        args=PreferenceConfig(output_dir=str(tmp_path / "dpo"), loss="dpo", **shared),
        train_dataset=task.preference_dataset(8),
        **qlora_kwargs(),
    )
    assert not mapped(qwen2)
    del trainer
    reward = RewardModel.from_backbone(qwen2, "bt", quantization_config=qlora_kwargs()["quantization_config"])
    assert not mapped(qwen2)
    prompts = Dataset.from_dict({"prompt": task.prompts(8)})
    config = PPOConfig(output_dir=str(tmp_path / "ppo"), max_completion_length=4, **shared)
    ppo = PPOTrainer(str(qwen2), reward_funcs=task, args=config, train_dataset=prompts, **qlora_kwargs())
    assert not mapped(qwen2)
    for model in (reward.backbone, ppo.model):  # still quantized, and alive while the file was looked for
        assert getattr(model, "hf_quantizer", None) is not None
