"""RewardModelTrainer: parity with TRL's RewardTrainer, every head, ranked lists, QLoRA, checkpoints, the reward
function for GRPO, and what the heads learn on the synthetic tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from trl_plus import UnknownNameError
from trl_plus.reward_model import RewardFunction, RewardModel
from trl_plus.synthetic import get_task, oracle_agreement
from trl_plus.synthetic.cyclic import scalar_ceiling
from trl_plus.testing import qlora_kwargs, train_adapters_only
from trl_plus.trainers import RewardModelConfig, RewardModelTrainer


@pytest.fixture(scope="module")
def pairs() -> Dataset:
    return get_task("transitive", seed=0).preference_dataset(16, seed=0, oracle_column=True)


def reward_args(training_args: Any, **overrides: Any) -> dict[str, Any]:
    # RewardConfig defaults to bf16, which a CPU run refuses.
    return training_args(bf16=False, **overrides)


@pytest.mark.parametrize("options", [{}, {"center_rewards_coefficient": 0.1, "margin": 0.5}], ids=["plain", "centred"])
def test_bt_matches_reward_trainer_at_step_one(
    options: dict[str, Any], llama: Path, pairs: Dataset, training_args: Any
) -> None:
    data = pairs.remove_columns("chosen_win_prob")
    if "margin" in options:
        data = data.add_column("margin", [options["margin"]] * len(data))
    centring = {k: v for k, v in options.items() if k == "center_rewards_coefficient"}
    trl = RewardTrainer(str(llama), args=RewardConfig(**reward_args(training_args, **centring)), train_dataset=data)
    ours_model = RewardModel.from_backbone(llama, head="bt", head_kwargs=centring)
    # TRL's head is a fresh Linear(H, 1, bias=False), as `bt`'s; start both from the same weights.
    ours_model.head.score.weight.data.copy_(trl.model.score.weight.data)
    config = RewardModelConfig(**reward_args(training_args, **centring))
    ours = RewardModelTrainer(ours_model, args=config, train_dataset=data)
    trl.train()
    ours.train()
    assert ours.state.log_history[0]["loss"] == pytest.approx(trl.state.log_history[0]["loss"], rel=1e-5)
    assert ours.state.log_history[0]["accuracy"] == trl.state.log_history[0]["accuracy"]
    assert torch.allclose(ours_model.head.score.weight, trl.model.score.weight, atol=1e-6)


def test_a_trl_reward_config_is_accepted(llama: Path, pairs: Dataset, training_args: Any) -> None:
    trainer = RewardModelTrainer(str(llama), args=RewardConfig(**reward_args(training_args)), train_dataset=pairs)
    assert isinstance(trainer.args, RewardModelConfig) and trainer.reward_model.head_name == "bt"


@pytest.mark.parametrize(
    ("head", "head_kwargs"), [("bt", {}), ("gpm", {"embedding_dim": 4}), ("ensemble", {"num_heads": 3}), ("pl", {})]
)
def test_every_head_trains_on_pairs_and_saves(
    head: str, head_kwargs: dict[str, Any], llama: Path, pairs: Dataset, training_args: Any, tmp_path: Path
) -> None:
    config = RewardModelConfig(head=head, head_kwargs=head_kwargs, **reward_args(training_args, max_steps=2))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=pairs, eval_dataset=pairs)
    before = {name: p.detach().clone() for name, p in trainer.reward_model.head.named_parameters()}
    trainer.train()
    moved = [name for name, p in trainer.reward_model.head.named_parameters() if not torch.equal(before[name], p)]
    assert moved, "the head did not train"
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    trainer.save_model(str(tmp_path / "saved"))
    loaded = RewardModel.from_pretrained(tmp_path / "saved").eval()
    assert loaded.head_name == head
    model = trainer.reward_model.eval()
    args = (pairs["prompt"][:4], pairs["chosen"][:4], pairs["rejected"][:4])
    assert torch.allclose(loaded.prefer(*args), model.prefer(*args), atol=1e-6)


def test_eval_accuracy_is_the_evaluate_metric_over_the_whole_set(
    llama: Path, pairs: Dataset, training_args: Any
) -> None:
    config = RewardModelConfig(**reward_args(training_args, per_device_eval_batch_size=3))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=pairs, eval_dataset=pairs)
    metrics = trainer.evaluate()
    model = trainer.reward_model.eval()
    p = model.prefer(pairs["prompt"], pairs["chosen"], pairs["rejected"])
    assert metrics["eval_accuracy"] == pytest.approx(float((p > 0.5).float().mean()))
    # predict() runs the same loop: its batches neither leak into the next evaluate() nor lose their prefix.
    other = get_task("cyclic", seed=0).preference_dataset(16, seed=3)
    predicted = trainer.predict(other).metrics
    assert "test_accuracy" in predicted and "eval_accuracy" not in predicted
    assert trainer.evaluate()["eval_accuracy"] == metrics["eval_accuracy"]


def test_soft_labels_train_toward_the_given_probability(llama: Path, training_args: Any) -> None:
    # Every pair says P(chosen ≻ rejected) = 0.3: the soft loss must learn to prefer the *rejected* answer, which a
    # hard-label loss (chosen always wins) never would.
    data = get_task("transitive", seed=0).preference_dataset(8, seed=0)
    data = data.add_column("chosen_win_prob", [0.3] * 8)
    config = RewardModelConfig(**reward_args(training_args, max_steps=40, learning_rate=1e-2))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=data)
    trainer.train()
    p = trainer.reward_model.eval().prefer(data["prompt"], data["chosen"], data["rejected"])
    assert float(p.mean()) == pytest.approx(0.3, abs=0.1)


def test_head_learning_rate_gets_its_own_parameter_groups(llama: Path, pairs: Dataset, training_args: Any) -> None:
    config = RewardModelConfig(head_learning_rate=0.5, **reward_args(training_args, learning_rate=1e-4))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=pairs)
    optimizer = trainer.create_optimizer()
    head = {id(p) for p in trainer.reward_model.head.parameters()}
    rates = {(id(p) in head, group["lr"]) for group in optimizer.param_groups for p in group["params"]}
    assert rates == {(True, 0.5), (False, 1e-4)}
    grouped = sum(len(group["params"]) for group in optimizer.param_groups)
    assert grouped == sum(1 for p in trainer.reward_model.parameters() if p.requires_grad)
    own = torch.optim.SGD(trainer.reward_model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="with your own optimizer"):
        RewardModelTrainer(str(llama), args=config, train_dataset=pairs, optimizers=(own, None))


def test_pl_trains_on_ragged_ranked_lists_and_reports_kendall_tau(llama: Path, training_args: Any) -> None:
    ranked = get_task("transitive", seed=0).ranked_dataset(12, k=4, min_k=2, seed=0)
    assert len(set(map(len, ranked["completions"]))) > 1  # ragged
    config = RewardModelConfig(head="pl", **reward_args(training_args, max_steps=2))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=ranked, eval_dataset=ranked)
    trainer.train()
    metrics = trainer.evaluate()
    assert -1.0 <= metrics["eval_kendall_tau"] <= 1.0 and 0.0 <= metrics["eval_accuracy"] <= 1.0
    # A RewardModel with the pl head passed in (config head unset) trains on the lists too, and max_length drops
    # the lists that do not fit, as TRL drops long pairs.
    lengths = sorted(len(r["prompt_ids"]) + max(map(len, r["completion_ids"])) for r in trainer.train_dataset)
    limit = lengths[-1] - 1  # drops the longest lists
    short = RewardModelConfig(**reward_args(training_args, max_steps=1, max_length=limit))
    again = RewardModelTrainer(trainer.reward_model, args=short, train_dataset=ranked)
    kept = again.train_dataset
    assert 0 < len(kept) < len(ranked)
    assert all(len(r["prompt_ids"]) + max(map(len, r["completion_ids"])) <= limit for r in kept)
    # The logged τ is the per-list τ of the model's own scores.
    from trl_plus.metrics import kendall_tau_b

    model = trainer.reward_model.eval()
    taus = [
        kendall_tau_b(
            model.score([row["prompt"]] * len(row["completions"]), row["completions"]).tolist(),
            list(range(len(row["completions"]))),
        )
        for row in ranked
    ]
    taus = [t for t in taus if t is not None]
    assert metrics["eval_kendall_tau"] == pytest.approx(sum(taus) / len(taus), abs=1e-4)


def test_bad_input_is_refused_before_training(llama: Path, pairs: Dataset, training_args: Any) -> None:
    ranked = get_task("transitive", seed=0).ranked_dataset(4, k=3, seed=0)
    with pytest.raises(ValueError, match=r"Ranked lists .* train the Plackett-Luce head"):
        RewardModelTrainer(str(llama), args=RewardModelConfig(**reward_args(training_args)), train_dataset=ranked)
    short = Dataset.from_list([{"prompt": "Hi", "completions": [" one"]}])
    with pytest.raises(ValueError, match="a ranked list needs at least two"):
        config = RewardModelConfig(head="pl", **reward_args(training_args))
        RewardModelTrainer(str(llama), args=config, train_dataset=short)
    with pytest.raises(UnknownNameError, match="Did you mean 'gpm'"):
        RewardModelConfig(head="gmp", **reward_args(training_args))
    with pytest.raises(ValueError, match="even embedding_dim"):
        config = RewardModelConfig(head="gpm", head_kwargs={"embedding_dim": 5}, **reward_args(training_args))
        RewardModelTrainer(str(llama), args=config, train_dataset=pairs)
    with pytest.raises(ValueError, match="does not take it"):
        RewardModelConfig(head="gpm", center_rewards_coefficient=0.1, **reward_args(training_args))
    with pytest.raises(ValueError, match=r"chosen_win_prob=1\.5; soft labels are probabilities"):
        bad = pairs.remove_columns("chosen_win_prob").add_column("chosen_win_prob", [1.5] * len(pairs))
        RewardModelTrainer(str(llama), args=RewardModelConfig(**reward_args(training_args)), train_dataset=bad)
    model = RewardModel.from_backbone(llama, head="gpm")
    with pytest.raises(ValueError, match="has the 'gpm' head, but the config asks for 'bt'"):
        config = RewardModelConfig(head="bt", **reward_args(training_args))
        RewardModelTrainer(model, args=config, train_dataset=pairs)


def test_qlora_trains_the_adapters_and_the_full_precision_head(llama: Path, pairs: Dataset, training_args: Any) -> None:
    config = RewardModelConfig(head="gpm", **reward_args(training_args, max_steps=2))
    trainer = RewardModelTrainer(str(llama), args=config, train_dataset=pairs, **qlora_kwargs())
    layers = trainer.model.backbone.base_model.model.layers
    changed = train_adapters_only(trainer, layers=layers, also_trained=("head.",))
    assert any(name.startswith("head.embed") for name in changed)
    assert all(p.dtype == torch.float32 for p in trainer.reward_model.head.parameters())


def test_checkpoints_load_as_reward_models_and_resume(
    llama: Path, pairs: Dataset, training_args: Any, tmp_path: Path
) -> None:
    common = reward_args(training_args, max_steps=2, save_strategy="steps", save_steps=2, output_dir=str(tmp_path))
    first = RewardModelTrainer(str(llama), args=RewardModelConfig(head="gpm", **common), train_dataset=pairs)
    first.train()
    checkpoint = tmp_path / "checkpoint-2"
    saved = RewardModel.from_pretrained(checkpoint)
    assert all(
        torch.equal(a, b) for a, b in zip(saved.head.parameters(), first.reward_model.head.parameters(), strict=True)
    )
    # A second trainer starts from another random head; resuming must bring back the checkpoint's weights.
    second = RewardModelTrainer(
        str(llama), args=RewardModelConfig(head="gpm", **{**common, "seed": 1}), train_dataset=pairs
    )
    assert not torch.equal(second.reward_model.head.embed.weight, saved.head.embed.weight)
    second.train(resume_from_checkpoint=str(checkpoint))
    assert torch.equal(second.reward_model.head.embed.weight, saved.head.embed.weight)


def test_reward_function_gives_one_float_per_completion(llama: Path) -> None:
    prompts = ["Packing for the beach. Name 2 items:"] * 3 + ["Packing for the city. Name 3 items:"] * 3
    completions = [" kite map", " lamp rope", " hat book", " tent radio snacks", " kite map hat", " boots book lamp"]
    bt = RewardModel.from_backbone(llama, head="bt")
    rewards = RewardFunction(bt)(prompts=prompts, completions=completions, completion_ids=None)
    assert isinstance(rewards, list) and len(rewards) == 6 and all(isinstance(r, float) for r in rewards)
    assert rewards == pytest.approx(bt.score(prompts, completions).tolist(), abs=1e-6)
    gpm = RewardFunction(RewardModel.from_backbone(llama, head="gpm"))
    assert gpm.__name__ == "reward_model_gpm"
    wins = gpm(prompts=prompts[:2] + prompts[3:4], completions=completions[:2] + completions[3:4])
    assert wins[0] + wins[1] == pytest.approx(1.0) and wins[2] == 0.5  # a pair, and a prompt with one completion
    assert wins[0] != pytest.approx(0.5, abs=1e-6)  # compared with its partner, not left alone
    chat = [[{"role": "user", "content": p}] for p in prompts]
    answers = [[{"role": "assistant", "content": c.strip()}] for c in completions]
    assert len(RewardFunction(bt)(prompts=chat, completions=answers)) == 6
    ensemble = RewardModel.from_backbone(llama, head="ensemble")
    conservative = RewardFunction(ensemble, reduce="conservative")(prompts=prompts, completions=completions)
    mean = RewardFunction(ensemble)(prompts=prompts, completions=completions)
    assert all(c < m for c, m in zip(conservative, mean, strict=True))
    with pytest.raises(ValueError, match="needs the ensemble head"):
        RewardFunction(bt, reduce="conservative")


def test_reward_function_reads_trl_completions_after_their_prompt(llama: Path) -> None:
    """TRL decodes completion ids alone ("kite map", the leading space lost); with `completion_ids` the reward model
    scores " kite map" after the prompt, as it was trained to read it."""
    bt = RewardModel.from_backbone(llama, head="bt")
    tokenizer = bt.tokenizer
    prompts = ["Packing for the beach. Name 2 items:"] * 2
    ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in (" kite map", " lamp rope")]
    alone = tokenizer.batch_decode(ids, skip_special_tokens=True)
    assert alone == ["kite map", "lamp rope"]
    rewards = RewardFunction(bt)(prompts=prompts, completions=alone, completion_ids=ids)
    assert rewards == pytest.approx(bt.score(prompts, [" kite map", " lamp rope"]).tolist(), abs=1e-6)
    assert rewards != pytest.approx(bt.score(prompts, alone).tolist(), abs=1e-6)


@pytest.mark.parametrize("online", ["grpo", "rloo"])
def test_trl_online_trainers_take_the_reward_function(online: str, llama: Path, training_args: Any) -> None:
    import trl

    config_class, trainer_class = {
        "grpo": (trl.GRPOConfig, trl.GRPOTrainer),
        "rloo": (trl.RLOOConfig, trl.RLOOTrainer),
    }[online]
    prompts = Dataset.from_dict({"prompt": get_task("transitive", seed=0).prompts(4, seed=0)})
    function = RewardFunction(RewardModel.from_backbone(llama, head="gpm"))
    settings = reward_args(training_args, per_device_train_batch_size=4)
    settings.pop("dataset_num_proc")  # not a field of the online configs
    config = config_class(**settings, num_generations=2, max_completion_length=6)
    trainer = trainer_class(model=str(llama), reward_funcs=[function], args=config, train_dataset=prompts)
    trainer.train()
    logged = trainer.state.log_history[0]
    # Each completion's win probability against the other of its group: they differ from ½ (a completion compared
    # with nothing would get ½, and every reward would be ½).
    assert logged["rewards/reward_model_gpm/std"] > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["cyclic", "transitive"])
def test_gpm_fits_the_cycle_a_scalar_reward_cannot(task_name: str, llama: Path) -> None:
    from trl_plus.reward_bench import fit_reward_model

    task = get_task(task_name)
    scores = {}
    for head in ("bt", "gpm"):
        model, _ = fit_reward_model(llama, task_name, head, n=4096, epochs=3)
        scores[head] = oracle_agreement(model.prefer, task, 1000)
    if task_name == "cyclic":
        # 13/14: every scalar reward gets one edge of the A ≻ B ≻ C ≻ A cycle wrong.
        assert scores["bt"].agreement <= scalar_ceiling() + 0.01
        assert scores["gpm"].agreement >= scalar_ceiling() + 0.02
        assert scores["gpm"].expected_accuracy >= scores["gpm"].oracle_accuracy - 0.01
    else:
        assert scores["bt"].agreement >= 0.9 and scores["gpm"].agreement >= 0.9


def test_a_loaded_model_without_processing_class_gets_its_tokenizer(
    llama: Path, pairs: Dataset, training_args: Any
) -> None:
    """As TRL's RewardTrainer: a model passed in loaded brings the tokenizer of the path it was loaded from."""
    from transformers import AutoModel

    args = RewardModelConfig(**reward_args(training_args))
    trainer = RewardModelTrainer(AutoModel.from_pretrained(llama), args=args, train_dataset=pairs)
    assert trainer.processing_class.name_or_path == str(llama)
    nameless = AutoModel.from_pretrained(llama)
    nameless.config._name_or_path = ""
    with pytest.raises(ValueError, match="pass `processing_class=`"):
        RewardModelTrainer(nameless, args=args, train_dataset=pairs)


def test_legacy_tokenised_columns_train_as_in_trl(llama: Path, training_args: Any) -> None:
    """`chosen_input_ids`/`rejected_input_ids` (deprecated in TRL, still accepted there) give TRL's first step."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama)
    pairs = get_task("transitive", seed=0).preference_dataset(8, seed=0)
    rows = [
        {
            "chosen_input_ids": tokenizer(p + c + tokenizer.eos_token)["input_ids"],
            "rejected_input_ids": tokenizer(p + r + tokenizer.eos_token)["input_ids"],
        }
        for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], strict=True)
    ]
    data = Dataset.from_list(rows)
    with pytest.warns(FutureWarning, match="chosen_input_ids"):
        trl = RewardTrainer(str(llama), args=RewardConfig(**reward_args(training_args)), train_dataset=data)
    ours_model = RewardModel.from_backbone(llama, head="bt")
    ours_model.head.score.weight.data.copy_(trl.model.score.weight.data)
    with pytest.warns(FutureWarning, match=r"chosen_input_ids.*will not be supported in v1"):  # TRL's words
        ours = RewardModelTrainer(ours_model, args=RewardModelConfig(**reward_args(training_args)), train_dataset=data)
    trl.train()
    ours.train()
    assert ours.state.log_history[0]["loss"] == pytest.approx(trl.state.log_history[0]["loss"], rel=1e-5)


def test_config_trust_remote_code_reaches_the_loaders(
    llama: Path, pairs: Dataset, training_args: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`RewardConfig(trust_remote_code=True)` loads a custom architecture in TRL; it must reach every loader here."""
    from transformers import AutoConfig

    flags: list[object] = []
    original = AutoConfig.from_pretrained

    def record(*args: object, **kwargs: object) -> object:
        flags.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", record)
    args = RewardModelConfig(**reward_args(training_args), trust_remote_code=True)
    RewardModelTrainer(str(llama), args=args, train_dataset=pairs.remove_columns("chosen_win_prob"))
    assert flags and all(flag is True for flag in flags), flags
