"""`trl-plus train`: flags and YAML through TRL's parser into the preference, unpaired and reward-model trainers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

import trl_plus.train as train_module
from trl_plus import cli
from trl_plus.reward_model import RewardModel
from trl_plus.synthetic import get_task
from trl_plus.train import load_preference_dataset, main, make_parser
from trl_plus.trainers.unpaired import UnpairedPreferenceTrainer

# Settings every run shares: CPU, a small batch, nothing reported or checkpointed along the way.
FAST = [
    "--use_cpu",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--per_device_train_batch_size",
    "4",
    "--learning_rate",
    "1e-3",
    "--logging_steps",
    "1",
]


@pytest.fixture(scope="module")
def pairs_on_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight synthetic preference pairs saved with `save_to_disk`."""
    path = tmp_path_factory.mktemp("data") / "pairs"
    get_task("transitive").preference_dataset(8).save_to_disk(str(path))
    return path


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The trainers `trl-plus train` builds, kept for inspection."""
    trainers: list[Any] = []
    for name, (config_class, trainer_class) in list(train_module.TRAINERS.items()):
        if not isinstance(trainer_class, type):  # rft and iterative: a loop function, no trainer object
            continue

        class Recording(trainer_class):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                trainers.append(self)

        monkeypatch.setitem(train_module.TRAINERS, name, (config_class, Recording))
    return trainers


def test_flags_train_simpo_and_save_a_loadable_model(
    tiny_checkpoints: dict[str, Path], pairs_on_disk: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_checkpoints["llama"]
    out = tmp_path / "simpo"
    argv = ["--model_name_or_path", str(base), "--dataset_name", str(pairs_on_disk), "--output_dir", str(out)]
    assert main([*argv, *FAST, "--max_steps", "2", "--loss", "simpo"]) == 0

    trained = AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    before = load_file(str(base / "model.safetensors"))
    after = trained.state_dict()
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"]), "two steps at lr 1e-3 moved nothing"
    saved_args = torch.load(out / "training_args.bin", weights_only=False)
    assert saved_args.loss == ["simpo"] and saved_args.max_steps == 2


def test_yaml_config_trains_qlora_with_loss_kwargs(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]
) -> None:
    """QLoRA on CPU: nf4 base weights (bitsandbytes runs 4-bit on CPU), a LoRA adapter, two weighted losses."""
    import bitsandbytes as bnb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "qlora"
    config = {
        "model_name_or_path": str(tiny_checkpoints["llama"]),
        "dataset_name": "synthetic:transitive",
        "synthetic_train_size": 8,
        "output_dir": str(out),
        "loss": ["simpo", "sft"],
        "loss_weights": [1.0, 0.1],
        "loss_kwargs": {"simpo": {"gamma": 0.3}},
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": ["q_proj", "v_proj"],
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "max_steps": 5,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        "per_device_train_batch_size": 4,
    }
    config_file = tmp_path / "qlora.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert main(["--config", str(config_file), "--max_steps", "1"]) == 0  # the flag overrides the file

    (trainer,) = recorded
    assert trainer.state.global_step == 1
    assert trainer.args.loss == ["simpo", "sft"] and trainer.args.loss_weights == [1.0, 0.1]
    assert trainer.args.loss_kwargs == {"simpo": {"gamma": 0.3}, "sft": {}}
    assert any(isinstance(module, bnb.nn.Linear4bit) for module in trainer.model.modules())
    assert (out / "adapter_model.safetensors").exists()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_checkpoints["llama"]), out)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--dataset_name", "{tmp}/no-such-data"], ["no-such-data", "does not exist"]),
        (["--dataset_name", "synthetic:transitive", "--loss", "simpoo"], ["'simpoo'", "Did you mean 'simpo'"]),
        (["--dataset_name", "synthetic:transitive", "--loss", "simpo", "--loss_kwargs", '{"gama": 1}'], ["'gama'"]),
        (["--dataset_name", "synthetic:nope"], ["'nope'", "transitive"]),
        ([], ["No dataset given", "--dataset_name"]),
    ],
    ids=["missing-dataset-path", "unknown-loss", "unknown-hyperparameter", "unknown-task", "no-dataset"],
)
def test_bad_settings_fail_with_one_clear_line(
    tiny_checkpoints: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: list[str],
) -> None:
    argv = ["--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(tmp_path), *FAST]
    argv += [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trl-plus train: error: ")
    for text in expected:
        assert text in err
    assert "Traceback" not in err


def test_unpaired_trainer_from_flags_and_yaml(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]
) -> None:
    """`--trainer unpaired` (or `trainer: unpaired` in the YAML) parses KTOConfig's fields and trains the loss."""
    common = ["--model_name_or_path", str(tiny_checkpoints["llama"]), "--dataset_name", "synthetic:transitive"]
    common += ["--synthetic_train_size", "16", "--max_steps", "2", *FAST]
    argv = [*common, "--output_dir", str(tmp_path / "kto"), "--synthetic_format", "unpaired"]
    assert main([*argv, "--trainer", "unpaired", "--loss", "kto", "--desirable_weight", "1.2"]) == 0
    config_file = tmp_path / "bco.yaml"
    config_file.write_text(yaml.safe_dump({"trainer": "unpaired", "loss": "bco", "beta": 0.2}))
    assert main([*common, "--output_dir", str(tmp_path / "bco"), "--config", str(config_file)]) == 0

    kto, bco = recorded
    assert type(kto).__mro__[1] is UnpairedPreferenceTrainer
    assert kto.args.loss_kwargs == {"kto": {"beta": 0.1, "desirable_weight": 1.2, "undesirable_weight": 1.0}}
    assert kto.state.global_step == 2 and (tmp_path / "kto" / "model.safetensors").exists()
    assert bco.args.loss == ["bco"] and bco.loss_states["bco"].state_dict()["count"] == 2  # pairs, unpaired on the fly


def test_reward_trainer_from_flags(tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]) -> None:
    """`--trainer reward` parses RewardModelConfig (head, head_kwargs as JSON, pooling, soft labels) and saves a
    RewardModel that loads with its head."""
    out = tmp_path / "gpm"
    argv = ["--trainer", "reward", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(out)]
    argv += ["--dataset_name", "synthetic:cyclic", "--synthetic_train_size", "16", "--synthetic_win_prob"]
    argv += ["--head", "gpm", "--head_kwargs", '{"embedding_dim": 4}', "--pooling", "mean", "--max_steps", "2", *FAST]
    assert main(argv) == 0
    (trainer,) = recorded
    assert trainer.args.head_kwargs == {"embedding_dim": 4} and trainer.train_dataset[0]["chosen_win_prob"] > 0
    loaded = RewardModel.from_pretrained(out, head="gpm")
    assert loaded.pooling == "mean" and loaded.head.embedding_dim == 4


def test_ppo_trainer_from_flags_with_the_oracle_and_qlora(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]
) -> None:
    """`--trainer ppo` on a synthetic task's prompts against its oracle, LoRA on a 4-bit base: the saved folder
    holds the policy adapter, the critic adapter and the value head."""
    out = tmp_path / "ppo"
    argv = ["--trainer", "ppo", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(out)]
    argv += ["--dataset_name", "synthetic:transitive", "--synthetic_train_size", "16", "--max_steps", "2", *FAST]
    argv += ["--reward_model_path", "synthetic:transitive", "--use_peft", "--lora_target_modules", "q_proj", "v_proj"]
    argv += ["--load_in_4bit", "--max_completion_length", "6", "--kl_coef", "0.1", "--num_ppo_epochs", "2"]
    assert main(argv) == 0
    (trainer,) = recorded
    assert trainer.args.kl_coef == 0.1 and trainer.args.num_iterations == 2 and trainer.state.global_step == 2
    assert trainer.train_dataset.column_names == ["prompt"]
    assert set(trainer.model.peft_config) == {"default", "critic"}
    for name in ("adapter_model.safetensors", "critic/adapter_model.safetensors", "value_head.safetensors"):
        assert (out / name).is_file(), name


def test_ppo_trainer_from_yaml_against_a_saved_ensemble_reward_model(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]
) -> None:
    """A RewardModel checkpoint as `reward_model_path`, with the ensemble's conservative reward, from YAML."""
    reward_path = tmp_path / "rm"
    RewardModel.from_backbone(str(tiny_checkpoints["llama"]), head="ensemble").save_pretrained(reward_path)
    config_file = tmp_path / "ppo.yaml"
    settings = {"trainer": "ppo", "reward_model_path": str(reward_path), "reward_reduce": "conservative"}
    config_file.write_text(yaml.safe_dump({**settings, "max_completion_length": 4, "max_steps": 1}))
    argv = ["--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(tmp_path / "out")]
    argv += ["--dataset_name", "synthetic:transitive", "--synthetic_train_size", "8", *FAST]
    assert main([*argv, "--config", str(config_file)]) == 0
    (trainer,) = recorded
    (reward,) = trainer.reward_funcs
    assert reward.reduce == "conservative" and reward.model.head_name == "ensemble"
    assert (tmp_path / "out" / "value_model" / "config.json").is_file()  # full fine-tuning: the critic's own body


def test_nash_trainer_from_flags_against_a_saved_gpm_model(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, recorded: list[Any]
) -> None:
    """`--trainer nash` on a synthetic task's prompts, the preference source a gpm RewardModel checkpoint."""
    reward_path = tmp_path / "gpm"
    RewardModel.from_backbone(str(tiny_checkpoints["llama"]), head="gpm").save_pretrained(reward_path)
    out = tmp_path / "nash"
    argv = ["--trainer", "nash", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(out)]
    argv += ["--dataset_name", "synthetic:cyclic", "--synthetic_train_size", "16", "--max_steps", "2", *FAST]
    argv += ["--reward_model_path", str(reward_path), "--max_completion_length", "4", "--opponent", "policy"]
    argv += ["--loss", "sppo_online", "--beta", "0.2"]
    assert main(argv) == 0
    (trainer,) = recorded
    assert trainer.args.opponent == "policy" and trainer.loss_spec.name == "sppo_online" and trainer.args.beta == 0.2
    assert trainer.prefer.source.head_name == "gpm" and trainer.state.global_step == 2
    assert trainer.train_dataset.column_names == ["prompt"] and (out / "config.json").is_file()


def test_nash_without_a_preference_source_is_one_clear_line(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--trainer", "nash", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(tmp_path)]
    assert main([*argv, "--dataset_name", "synthetic:cyclic", *FAST]) == 2
    assert "`--trainer nash` needs a preference source" in capsys.readouterr().err
    assert (
        main(
            [
                *argv,
                "--dataset_name",
                "synthetic:cyclic",
                "--reward_model_path",
                "synthetic:cyclic",
                "--loss",
                "dpo",
                *FAST,
            ]
        )
        == 2
    )
    assert "the Nash trainer needs an online loss" in capsys.readouterr().err


def test_ppo_without_a_reward_is_one_clear_line(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--trainer", "ppo", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(tmp_path)]
    assert main([*argv, "--dataset_name", "synthetic:transitive", *FAST]) == 2
    assert "`--trainer ppo` needs a reward: pass `--reward_model_path`" in capsys.readouterr().err
    argv += ["--dataset_name", "synthetic:transitive", "--reward_model_path", "synthetic:nope", *FAST]
    assert main(argv) == 2
    assert "Unknown synthetic task 'nope' in `--reward_model_path`" in capsys.readouterr().err
    assert main([*argv[: -len(FAST) - 2], "--reward_model_path", "synthetic:transitive", "--kl_coef", "-1", *FAST]) == 2
    assert "PPOConfig.kl_coef must be ≥ 0, got -1.0" in capsys.readouterr().err


def test_unknown_trainer_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--trainer", "kto"]) == 2
    assert (
        "`--trainer` must be one of ['iterative', 'nash', 'ppo', 'preference', 'reward', 'rft', 'unpaired'], got 'kto'"
        in capsys.readouterr().err
    )


def test_missing_model_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dataset_name", "synthetic:transitive", "--output_dir", str(tmp_path), "--use_cpu"]
    assert main(argv) == 2
    assert "No model given" in capsys.readouterr().err
    assert main([*argv, "--model_name_or_path", str(tmp_path / "nothing")]) == 2
    assert "'" + str(tmp_path / "nothing") + "' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["save_to_disk", ".jsonl", ".parquet"])
def test_local_datasets_load_as_a_train_split(tmp_path: Path, suffix: str) -> None:
    pairs = get_task("transitive").preference_dataset(6)
    path = tmp_path / f"pairs{'' if suffix == 'save_to_disk' else suffix}"
    if suffix == "save_to_disk":
        pairs.save_to_disk(str(path))
    elif suffix == ".jsonl":
        pairs.to_json(str(path))
    else:
        pairs.to_parquet(str(path))
    (script_args, *_) = make_parser().parse_args_and_config(
        ["--dataset_name", str(path), "--output_dir", "x", "--use_cpu"]
    )
    loaded = load_preference_dataset(script_args)
    assert list(loaded) == ["train"]
    assert loaded["train"].to_list() == pairs.to_list()


def test_synthetic_ranked_lists() -> None:
    argv = ["--dataset_name", "synthetic:cyclic", "--synthetic_format", "ranked", "--synthetic_k", "3"]
    (script_args, *_) = make_parser().parse_args_and_config(
        [*argv, "--synthetic_train_size", "5", "--output_dir", "x", "--use_cpu"]
    )
    loaded = load_preference_dataset(script_args)
    assert sorted(loaded) == ["test", "train"] and loaded["train"].num_rows == 5
    assert all(len(row["completions"]) == 3 for row in loaded["train"])


@pytest.mark.slow  # a fresh interpreter imports torch, transformers and TRL: most of its time
def test_runs_as_a_module(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """`python -m trl_plus.train`, as `accelerate launch -m trl_plus.train` runs it."""
    out = tmp_path / "module"
    argv = ["--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", str(out), *FAST]
    argv += ["--dataset_name", "synthetic:transitive", "--synthetic_train_size", "4", "--max_steps", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "trl_plus.train", *argv, "--loss", "dpo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").exists()
    assert f"Saved the trained model to {out}" in result.stdout


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "scripts" / "accelerate"


@pytest.mark.parametrize(
    ("name", "distributed_type"),
    [
        ("single_cpu", "NO"),
        ("multi_gpu", "MULTI_GPU"),
        ("deepspeed_zero2", "DEEPSPEED"),
        ("deepspeed_zero3", "DEEPSPEED"),
        ("fsdp", "FSDP"),
    ],
)
def test_accelerate_configs_load(name: str, distributed_type: str) -> None:
    """Each launch config is one accelerate reads without complaint, and its header shows how to launch with it."""
    from accelerate.commands.config.config_args import ClusterConfig

    path = ACCELERATE_CONFIGS / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type.value == distributed_type
    usage = f"accelerate launch --config_file scripts/accelerate/{name}.yaml -m trl_plus.train --config my.yaml"
    assert usage in path.read_text()
    if name.startswith("deepspeed"):
        # Left to the training config ("auto"), so `gradient_accumulation_steps` there cannot disagree with it.
        assert "gradient_accumulation_steps" not in (config.deepspeed_config or {})


@pytest.mark.parametrize("trainer", ["preference", "ppo"])
def test_help_lists_the_common_fields_and_help_all_every_one(trainer: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--trainer", trainer, "--help"])
    assert exit_.value.code == 0
    short = capsys.readouterr().out
    own = "--loss " if trainer == "preference" else "--kl_coef"
    assert own in short and "--learning_rate" in short and "--help-all` lists them all" in short
    assert "--adam_beta1" not in short
    with pytest.raises(SystemExit):
        main(["--trainer", trainer, "--help-all"])
    full = capsys.readouterr().out
    assert "--adam_beta1" in full and own in full
    assert len(full.splitlines()) > 2 * len(short.splitlines())


@pytest.mark.parametrize(
    ("files", "argv", "expected"),
    [
        ({}, [], "nothing to train: pass --model_name_or_path, --dataset_name and --output_dir"),
        (
            {"c.yaml": "- a\n- b\n"},
            ["--config", "c.yaml"],
            "The --config file 'c.yaml' holds a list, not a mapping of field names to values",
        ),
        (
            {"c.yaml": "a: [\n"},
            ["--config", "c.yaml"],
            "The --config file 'c.yaml' is not valid YAML: while parsing a flow node",
        ),
        (
            {"d.jsonl": '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": \n'},
            ["--dataset_name", "d.jsonl", "--output_dir", "out", *FAST],
            "Cannot read the dataset file 'd.jsonl' as json: ArrowInvalid: JSON parse error",
        ),
    ],
    ids=["no-arguments", "yaml-list", "yaml-syntax", "broken-jsonl"],
)
def test_bad_files_and_no_arguments_fail_with_one_clear_line(
    tiny_checkpoints: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str],
    argv: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if "--dataset_name" in argv:
        argv = ["--model_name_or_path", str(tiny_checkpoints["llama"]), *argv]
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert f"trl-plus train: error: {expected}" in err
    assert "Traceback" not in err


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    """Six packing prompts of your own, as a jsonl file with a `prompt` column."""
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in get_task("packing").prompts(6, seed=0)))
    return path


@pytest.fixture
def sampled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    """(policy, prompts) of every batch of samples the loops draw."""
    import trl_plus.synthetic.evaluate as evaluate

    calls: list[tuple[str, list[Any]]] = []
    load, sample = evaluate.load_policy, evaluate.sample_groups
    policies: list[str] = []

    def loading(policy: Any) -> Any:
        policies.append(str(policy))
        return load(policy)

    def sampling(model: Any, tokenizer: Any, prompts: list[Any], n: int, **kwargs: Any) -> Any:
        calls.append((policies[-1], list(prompts)))
        return sample(model, tokenizer, prompts, n, **kwargs)

    monkeypatch.setattr(evaluate, "load_policy", loading)
    monkeypatch.setattr(evaluate, "sample_groups", sampling)
    return calls


@pytest.mark.parametrize(
    ("trainer", "extra"),
    [("rft", ["--reward_model_path", "synthetic:packing", "--top_k", "2"]), ("iterative", ["--loss", "dpo,sft"])],
)
def test_round_trainers_train_your_model_on_your_prompts_in_rounds(
    trainer: str,
    extra: list[str],
    tiny_checkpoints: dict[str, Path],
    prompts_file: Path,
    tmp_path: Path,
    sampled: list[tuple[str, list[Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two rounds of two steps: round 1 samples the given model, round 2 the policy round 1 saved, both on prompts
    of the file; a run again in the same folder resumes with nothing left to train. `iterative` is judged by a
    RewardModel checkpoint, `rft` by the packing oracle."""
    base, out = tiny_checkpoints["llama"], tmp_path / trainer
    if trainer == "iterative":
        RewardModel.from_backbone(str(base), head="bt").save_pretrained(tmp_path / "rm")
        extra = [*extra, "--reward_model_path", str(tmp_path / "rm")]
    argv = ["--trainer", trainer, "--model_name_or_path", str(base), "--dataset_name", str(prompts_file)]
    argv += ["--rounds", "2", "--steps_per_round", "2", "--per_device_train_batch_size", "2", "--num_samples", "3"]
    assert main([*argv, *extra, "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out

    assert [policy for policy, _ in sampled] == [str(base), str(out / "round-01")]
    pool = set(get_task("packing").prompts(6, seed=0))
    assert all(set(prompts) <= pool for _, prompts in sampled)
    assert sampled[0][1] != sampled[1][1]  # each round its own draw
    before = load_file(str(base / "model.safetensors"))["lm_head.weight"]
    for index in (1, 2):
        folder = out / f"round-{index:02d}"
        rows = json.loads((folder / "round.json").read_text())["rows"]
        assert f"round {index}/2: {rows} training rows" in printed
        after = load_file(str(folder / "model.safetensors"))["lm_head.weight"]
        assert not torch.equal(before, after), f"round {index} moved nothing"
        before = after

    assert main([*argv, *extra, "--output_dir", str(out)]) == 0
    assert "Resuming: rounds 1, 2 of 2 are finished" in capsys.readouterr().out
    assert len(sampled) == 2  # nothing sampled again


def test_a_synthetic_task_gives_the_round_trainers_its_prompts_and_oracle(
    tiny_checkpoints: dict[str, Path], tmp_path: Path, sampled: list[tuple[str, list[Any]]]
) -> None:
    argv = ["--trainer", "iterative", "--model_name_or_path", str(tiny_checkpoints["llama"]), "--rounds", "1"]
    argv += ["--dataset_name", "synthetic:packing", "--steps_per_round", "1", "--per_device_train_batch_size", "2"]
    assert main([*argv, "--loss", "dpo", "--num_samples", "2", "--output_dir", str(tmp_path / "out")]) == 0
    ((_, prompts),) = sampled
    assert prompts == get_task("packing").prompts(len(prompts), seed=1, stream="preference")  # seed 0 + round 1
    assert (tmp_path / "out" / "round-01" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("trainer", "extra", "expected"),
    [
        ("rft", [], "`--trainer rft` needs a judge for prompts that are not a synthetic task's"),
        ("rft", ["--dataset_name", "{tmp}/text.jsonl"], "samples answers to the dataset's `prompt` column; "),
        ("rft", ["--rounds", "0"], "`rounds` must be at least 1, got 0."),
        ("iterative", ["--steps_per_round", "0"], "`steps_per_round` must be at least 1, got 0."),
        ("rft", ["--sampling_batch_size", "0"], "`sampling_batch_size` must be at least 1, got 0."),
        ("rft", ["--num_samples", "2", "--top_k", "3"], "`top_k` must lie in [1, num_samples=2], got 3."),
        ("iterative", ["--loss", "dpoo"], "Unknown loss 'dpoo'. Did you mean 'dpo'"),
        ("iterative", ["--loss", "nash_md"], "include an online one"),
        ("iterative", ["--loss", "dpo", "--loss_kwargs", '{"bta": 1}'], "'bta'"),
        ("iterative", ["--use_peft"], "`--trainer iterative` fine-tunes the whole model; it takes no `--use_peft`"),
        ("rft", ["--reward_model_path", "{tmp}/no-rm"], "The reward model path"),
    ],
    ids=[
        "no-judge",
        "no-prompt-column",
        "rounds",
        "steps",
        "sampling-batch",
        "top-k",
        "loss",
        "online-loss",
        "kwargs",
        "peft",
        "rm",
    ],
)
def test_round_trainers_refuse_bad_settings_before_training(
    trainer: str,
    extra: list[str],
    expected: str,
    tiny_checkpoints: dict[str, Path],
    prompts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "text.jsonl").write_text('{"text": "a"}\n')
    argv = ["--trainer", trainer, "--model_name_or_path", str(tiny_checkpoints["llama"]), "--output_dir", "{tmp}/out"]
    argv = [*argv, "--dataset_name", str(prompts_file), *extra]
    assert cli.main(["train", *[arg.replace("{tmp}", str(tmp_path)) for arg in argv]]) == 2
    err = capsys.readouterr().err  # after the dataset's loading messages, one line
    (line,) = [line for line in err.splitlines() if line.startswith("trl-plus train: error: ")]
    assert expected in line and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_round_trainers_help_lists_their_own_fields(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--trainer", "rft", "--help"])
    short = capsys.readouterr().out
    assert "--top_k TOP_K" in short and "--steps_per_round STEPS_PER_ROUND" in short and "--reward_model_path" in short
    assert "--loss_weights LOSS_WEIGHTS" not in short  # iterative's field
    assert "--use_peft [USE_PEFT]" not in short and "--adam_beta1" not in short  # refused; not a field
