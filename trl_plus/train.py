"""`trl-plus train`: train with `PreferenceTrainer` (or, with `--trainer unpaired`, `UnpairedPreferenceTrainer`; with
`--trainer reward`, `RewardModelTrainer`) from TRL-style flags or a YAML config.

The arguments are TRL's own: `ScriptArguments` (the dataset), `ModelConfig` (model, dtype, 4/8-bit, LoRA) and
`PreferenceConfig` (every `DPOConfig`/`TrainingArguments` field plus `loss`, `loss_kwargs`, `logprob_path`, ...;
with `--trainer unpaired`, `UnpairedPreferenceConfig`: every `KTOConfig` field plus `loss`, `loss_weights`,
`loss_kwargs`; with `--trainer reward`, `RewardModelConfig`: every `RewardConfig` field plus `head`, `head_kwargs`,
`pooling`, `head_learning_rate`; with `--trainer ppo`, `PPOConfig`: every `GRPOConfig` field plus `kl_coef`, `gamma`,
`lam`, `num_ppo_epochs`, `num_mini_batches`, `cliprange`, `vf_coef`, ... and the reward in `--reward_model_path`;
with `--trainer nash`, `NashConfig`: every `GRPOConfig` field plus `loss` (nash_md, sppo_online, online_ipo),
`opponent`, `mixture_coef`, ... and the preference source in `--reward_model_path`),
parsed by `trl.TrlParser`, so any field works as a `--flag` or as a key of the
`--config` YAML file, and flags override the file. `--trainer rft` and `--trainer iterative` run rounds of
`trl_plus.iterative` instead (sample answers from the current policy, rank them with the judge in
`--reward_model_path`, train on them; `RejectionSamplingConfig` / `IterativeConfig`: `rounds`, `steps_per_round`,
`num_samples`, `top_k` or `loss`, ...), saving each round under `output_dir/round-NN`. Examples:

    trl-plus train --model_name_or_path runs/demo/sft --dataset_name synthetic:transitive \\
        --loss simpo --output_dir runs/simpo --use_cpu --report_to none
    trl-plus train --trainer unpaired --loss kto --model_name_or_path runs/demo/sft \\
        --dataset_name synthetic:transitive --synthetic_format unpaired --output_dir runs/kto --use_cpu
    trl-plus train --trainer reward --head gpm --model_name_or_path runs/demo/sft \\
        --dataset_name synthetic:cyclic --synthetic_win_prob --output_dir runs/gpm --use_cpu
    trl-plus train --trainer ppo --model_name_or_path runs/demo/sft --dataset_name synthetic:transitive \\
        --reward_model_path synthetic:transitive --use_peft --output_dir runs/ppo --use_cpu
    trl-plus train --trainer nash --model_name_or_path runs/demo/sft --dataset_name synthetic:cyclic \\
        --reward_model_path runs/gpm --output_dir runs/nash --use_cpu
    trl-plus train --trainer rft --model_name_or_path runs/demo/sft --dataset_name prompts.jsonl \\
        --reward_model_path runs/demo/reward --rounds 4 --steps_per_round 50 --output_dir runs/rft
    trl-plus train --trainer iterative --loss dpo,sft --loss_weights 1 0.2 --model_name_or_path runs/demo/sft \\
        --dataset_name synthetic:packing --rounds 4 --output_dir runs/iterative
    trl-plus train --config my.yaml --learning_rate 1e-5
    python -m trl_plus.train --config my.yaml
    accelerate launch --config_file scripts/accelerate/multi_gpu.yaml -m trl_plus.train --config my.yaml

`--dataset_name` takes a directory saved with `Dataset.save_to_disk`/`DatasetDict.save_to_disk`, a local
.json/.jsonl/.parquet/.csv file (or a directory of them), a Hub dataset id, or `synthetic:<task>` for a
synthetic task's preference data built offline (`trl-plus task <name>` shows the oracle). The unpaired trainer takes
prompt/completion/label rows, or pairs, which it unpairs. The online trainers (PPO, Nash) read the `prompt` column
of any of these (`synthetic:<task>` gives them the task's prompts). So do `rft` and `iterative`, which draw each
round's prompts from a fresh shuffle of that column; with `synthetic:<task>` they draw from the task's preference
stream instead, and its oracle judges unless `--reward_model_path` names another judge.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from trl_plus.errors import quiet_checkpointing_renames, run_reporting_errors
from trl_plus.help_cache import trainer_flags
from trl_plus.iterative import (
    ROUND_FILE,
    IterativeConfig,
    RejectionSamplingConfig,
    RoundsConfig,
    iterative_training,
    rejection_sampling_training,
    round_path,
)
from trl_plus.trainers.nash import NashConfig, NashTrainer
from trl_plus.trainers.ppo import PPOConfig, PPOTrainer
from trl_plus.trainers.preference import PreferenceConfig, PreferenceTrainer
from trl_plus.trainers.reward import RewardModelConfig, RewardModelTrainer
from trl_plus.trainers.unpaired import UnpairedPreferenceConfig, UnpairedPreferenceTrainer

SYNTHETIC_PREFIX = "synthetic:"
# Files `datasets.load_dataset` reads with a packaged builder, by suffix.
_DATA_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
# Each trainer's config class, and the trainer class that trains it; the round trainers map to their loop function.
TRAINERS: dict[str, tuple[type, Any]] = {
    "preference": (PreferenceConfig, PreferenceTrainer),
    "unpaired": (UnpairedPreferenceConfig, UnpairedPreferenceTrainer),
    "reward": (RewardModelConfig, RewardModelTrainer),
    "ppo": (PPOConfig, PPOTrainer),
    "nash": (NashConfig, NashTrainer),
    "rft": (RejectionSamplingConfig, rejection_sampling_training),
    "iterative": (IterativeConfig, iterative_training),
}
TrainingArgs = PreferenceConfig | UnpairedPreferenceConfig | RewardModelConfig | PPOConfig | NashConfig | RoundsConfig
ONLINE_TRAINERS = ("ppo", "nash")


@dataclass
class TrainScriptArguments(ScriptArguments):
    """TRL's `ScriptArguments`, plus the trainer's choice, a local-path loader and offline synthetic data."""

    trainer: str = field(
        default="preference",
        metadata={
            "help": "`preference`: PreferenceTrainer (DPOTrainer's loop; paired and ranked data). `unpaired`: "
            "UnpairedPreferenceTrainer (KTOTrainer's loop; thumbs-up/down rows) with its KTOConfig fields. `reward`: "
            "RewardModelTrainer (RewardTrainer's loop; a reward model with any registered head). `ppo`: PPOTrainer "
            "(GRPOTrainer's loop; a critic, GAE and a per-token KL penalty) against `--reward_model_path`. `nash`: "
            "NashTrainer (GRPOTrainer's loop; Nash-MD, self-play, online SPPO) against the preference source in "
            "`--reward_model_path`. `rft`: rounds of SFT on the judge's best samples of the current policy. "
            "`iterative`: rounds of any registered offline loss on the judge's rankings of those samples.",
            "choices": sorted(TRAINERS),
        },
    )

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "The preference data: a directory saved with `save_to_disk`, a .json/.jsonl/.parquet/.csv file "
            "or a directory of them, a Hub dataset id, or `synthetic:<task>` (e.g. `synthetic:transitive`) to build a "
            "synthetic task's data offline."
        },
    )
    synthetic_train_size: int = field(
        default=512, metadata={"help": "With `synthetic:<task>`: rows in the train split."}
    )
    synthetic_test_size: int = field(default=64, metadata={"help": "With `synthetic:<task>`: rows in the test split."})
    synthetic_format: str = field(
        default="paired",
        metadata={
            "help": "With `synthetic:<task>`: `paired` (prompt/chosen/rejected), `ranked` (prompt and "
            "`synthetic_k` completions, best first, for listwise losses) or `unpaired` (prompt/completion/label).",
            "choices": ["paired", "ranked", "unpaired"],
        },
    )
    synthetic_k: int = field(default=4, metadata={"help": "With `synthetic_format=ranked`: completions per prompt."})
    synthetic_task_seed: int = field(
        default=0,
        metadata={"help": "With `synthetic:<task>`: seed of the task's hidden oracle (as `trl-plus win-rate`)."},
    )
    synthetic_win_prob: bool = field(
        default=False,
        metadata={
            "help": "With `synthetic:<task>` pairs: add the oracle's P(chosen ≻ rejected) as column `chosen_win_prob` "
            "(soft labels for reward models; SPPO's estimate)."
        },
    )
    synthetic_conversational: bool = field(
        default=False, metadata={"help": "With `synthetic:<task>`: chat messages instead of plain text."}
    )
    reward_model_path: str | None = field(
        default=None,
        metadata={
            "help": "With `--trainer ppo`: the reward; with `--trainer nash`: the preference source; with `rft` and "
            "`iterative`: the judge (default with `synthetic:<task>` data: its oracle; `llm:<path>` for an LLM judge "
            "too). A RewardModel checkpoint (saved by `--trainer reward`; any head, gpm for nash), a "
            "sequence-classification checkpoint or Hub id, or `synthetic:<task>` for the task's oracle."
        },
    )
    reward_reduce: str = field(
        default="mean",
        metadata={
            "help": "With `--trainer ppo` and an ensemble RewardModel: `mean`, or `conservative` (mean − k·std).",
            "choices": ["mean", "conservative"],
        },
    )
    value_model_path: str | None = field(
        default=None,
        metadata={
            "help": "With `--trainer ppo`: a checkpoint whose backbone starts the critic (e.g. the reward model's). "
            "Default: a second LoRA adapter on the policy's base with `--use_peft`, else a copy of the policy."
        },
    )

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ValueError(f"`trainer` must be one of {sorted(TRAINERS)}, got {self.trainer!r}.")
        if self.synthetic_format not in ("paired", "ranked", "unpaired"):
            raise ValueError(
                f"`synthetic_format` must be 'paired', 'ranked' or 'unpaired', got {self.synthetic_format!r}."
            )
        for name in ("synthetic_train_size", "synthetic_test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive row count, got {getattr(self, name)}.")
        if self.synthetic_k < 2:
            raise ValueError(f"`synthetic_k` must be at least 2 (a ranked list), got {self.synthetic_k}.")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (as HfArgumentParser shows them) and the module docstring's examples kept as written."""


# The TRL / transformers fields `--help` shows next to trl-plus's own; `--help-all` shows every field.
COMMON_FIELDS = frozenset(
    {
        "config", "model_name_or_path", "dataset_name", "output_dir", "per_device_train_batch_size",
        "gradient_accumulation_steps", "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs",
        "max_steps", "logging_steps", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "seed", "bf16",
        "use_cpu", "report_to", "max_length", "beta", "gradient_checkpointing", "resume_from_checkpoint",
        "push_to_hub", "use_peft", "lora_r", "lora_alpha", "lora_target_modules", "load_in_4bit",
        "bnb_4bit_quant_type", "dtype", "max_completion_length", "num_generations", "dataset_train_split",
        "dataset_test_split",
    }
)  # fmt: skip


def make_parser(prog: str = "trl-plus train", trainer: str = "preference", *, every_field: bool = True) -> TrlParser:
    """The parser of `trl-plus train`: script, training (the `trainer`'s config) and model arguments, plus
    `--config file.yaml`. With `every_field=False` its help lists only trl-plus's own fields and `COMMON_FIELDS`
    (every field still parses)."""
    config_class = TRAINERS[trainer][0]
    # TRL types `dataclass_types` as a NewType over Any, which no class satisfies for mypy.
    dataclass_types: Any = (TrainScriptArguments, config_class, ModelConfig)
    parser = TrlParser(
        dataclass_types,
        prog=prog,
        description=__doc__,
        formatter_class=_HelpFormatter,
        epilog=None
        if every_field
        else "Only trl-plus's fields and the most used TRL ones are listed; every field of "
        "the classes above works. `--help-all` lists them all.",
    )
    if not every_field:
        trl_base = next((c for c in config_class.__mro__[1:] if c.__module__.startswith("trl.")), None)
        inherited = {f.name for f in dataclasses.fields(trl_base)} if trl_base else set()  # none for round trainers
        own = {f.name for f in dataclasses.fields(config_class)} - inherited
        own |= {f.name for f in dataclasses.fields(TrainScriptArguments)}
        # The round trainers read only the model's path of ModelConfig, and none of TRL's training fields.
        shown = own | (COMMON_FIELDS if trl_base else {"config", "model_name_or_path"})
        for action in parser._actions:
            if action.dest not in shown | {"help"}:
                action.help = argparse.SUPPRESS
    return parser


class ArgumentError(ValueError):
    """A setting the user can fix; `main` prints it without a traceback."""


def _looks_like_path(name: str) -> bool:
    """True when `name` cannot be a Hub id, so a missing file is the user's error, not a network lookup."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).suffix in _DATA_FILE_BUILDERS or name.startswith(("~", ".", "/")):
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _synthetic_task(task_name: str, flag: str, script_args: TrainScriptArguments) -> Any:
    """The synthetic task `task_name` named in `flag`, with the oracle seed `--synthetic_task_seed`."""
    from trl_plus.synthetic import TASKS, get_task

    if task_name not in TASKS:
        raise ArgumentError(f"Unknown synthetic task {task_name!r} in `{flag}`; choose one of {sorted(TASKS)}.")
    return get_task(task_name, seed=script_args.synthetic_task_seed)


def synthetic_dataset(task_name: str, script_args: TrainScriptArguments) -> DatasetDict:
    """A synthetic task's preference data, with train and test rows drawn from different seeds."""
    task = _synthetic_task(task_name, f"--dataset_name {SYNTHETIC_PREFIX}{task_name}", script_args)
    sizes = {"train": script_args.synthetic_train_size, "test": script_args.synthetic_test_size}
    conversational = script_args.synthetic_conversational
    splits: dict[str, Dataset] = {}
    for seed, (split, size) in enumerate(sizes.items()):
        if script_args.trainer in ONLINE_TRAINERS:  # online: prompts only; the completions come from the policy
            prompts = task.prompts(size, seed=seed, stream="sft" if split == "train" else "eval")
            rows = [[{"role": "user", "content": p}] for p in prompts] if conversational else prompts
            splits[split] = Dataset.from_dict({"prompt": rows})
        elif script_args.synthetic_format == "ranked":
            splits[split] = task.ranked_dataset(
                size, k=script_args.synthetic_k, seed=seed, conversational=conversational
            )
        elif script_args.synthetic_format == "unpaired":
            splits[split] = task.unpaired_dataset(size, seed=seed, conversational=conversational)
        else:
            splits[split] = task.preference_dataset(
                size, seed=seed, conversational=conversational, oracle_column=script_args.synthetic_win_prob
            )
    return DatasetDict(splits)


def load_preference_dataset(script_args: TrainScriptArguments) -> DatasetDict | IterableDatasetDict:
    """The dataset named by `--dataset_name`, as splits (a single unsplit dataset becomes `train`)."""
    from datasets import load_dataset, load_from_disk
    from datasets.exceptions import DatasetGenerationError

    name = script_args.dataset_name
    if not name:
        raise ArgumentError(
            "No dataset given: pass `--dataset_name` (or `dataset_name:` in the --config YAML) with a local path, a "
            f"Hub dataset id, or `{SYNTHETIC_PREFIX}transitive` for offline synthetic pairs."
        )
    if name.startswith(SYNTHETIC_PREFIX):
        return synthetic_dataset(name.removeprefix(SYNTHETIC_PREFIX), script_args)
    path = Path(name).expanduser()
    loaded: Any
    if path.is_dir() and any((path / marker).exists() for marker in ("dataset_dict.json", "state.json")):
        loaded = load_from_disk(str(path))
    elif path.is_file():
        builder = _DATA_FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise ArgumentError(
                f"Cannot read the dataset file {name!r}: its suffix is not one of {sorted(_DATA_FILE_BUILDERS)}."
            )
        try:
            loaded = load_dataset(builder, data_files=str(path), streaming=script_args.dataset_streaming)
        except DatasetGenerationError as error:  # the file does not parse; the cause names the line
            cause = error.__cause__ or error
            raise ArgumentError(
                f"Cannot read the dataset file {name!r} as {builder}: {type(cause).__name__}: {cause}"
            ) from error
    elif path.is_dir():  # a folder of data files, or a dataset repository cloned locally
        loaded = load_dataset(str(path), name=script_args.dataset_config, streaming=script_args.dataset_streaming)
    elif _looks_like_path(name):
        raise ArgumentError(
            f"The dataset path {name!r} does not exist. Pass a directory saved with `save_to_disk`, a "
            ".json/.jsonl/.parquet/.csv file, a Hub dataset id, or `synthetic:<task>`."
        )
    else:
        try:
            loaded = load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)
        except (FileNotFoundError, ConnectionError) as error:  # DatasetNotFoundError is a FileNotFoundError
            raise ArgumentError(
                f"Could not load the dataset {name!r}: it is not a local path, and loading it from the Hub failed "
                f"({type(error).__name__}: {error})."
            ) from error
    if isinstance(loaded, Dataset):
        return DatasetDict({"train": loaded})
    if isinstance(loaded, IterableDataset):
        return IterableDatasetDict({"train": loaded})
    return loaded


def _split(dataset: DatasetDict | IterableDatasetDict, split: str, flag: str, name: str | None) -> Any:
    if split not in dataset:
        raise ArgumentError(f"The dataset {name!r} has no split {split!r} (`{flag}`); it has {sorted(dataset)}.")
    return dataset[split]


def _check_model(model_args: ModelConfig) -> str:
    """The model to load: an existing local path (with `~` expanded) or a Hub id."""
    name = model_args.model_name_or_path
    if not name:
        raise ArgumentError(
            "No model given: pass `--model_name_or_path` (or `model_name_or_path:` in the --config YAML) with a local "
            "checkpoint or a Hub model id; `trl-plus make-tiny` builds a tiny one offline."
        )
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if _looks_like_path(name):
        raise ArgumentError(f"The model path {name!r} does not exist, and it is not a Hub model id either.")
    return name


def _reward_source(script_args: TrainScriptArguments, missing: str) -> Any:
    """`--reward_model_path` as a synthetic task, a loaded RewardModel, or a checkpoint path / Hub id."""
    from trl_plus.reward_model import HEAD_CONFIG, RewardModel

    name = script_args.reward_model_path
    if not name:
        raise ArgumentError(
            f"{missing}: pass `--reward_model_path` with a RewardModel checkpoint (from `--trainer reward`), a "
            "sequence-classification checkpoint or Hub id, or `synthetic:<task>` for the task's oracle."
        )
    if name.startswith(SYNTHETIC_PREFIX):
        return _synthetic_task(name.removeprefix(SYNTHETIC_PREFIX), "--reward_model_path", script_args)
    path = Path(name).expanduser()
    if (path / HEAD_CONFIG).is_file():
        return RewardModel.from_pretrained(path)
    if path.exists() or not _looks_like_path(name):
        return str(path) if path.exists() else name
    raise ArgumentError(f"The reward model path {name!r} does not exist, and it is not a Hub model id either.")


def _ppo_sources(script_args: TrainScriptArguments) -> dict[str, Any]:
    """PPOTrainer's `reward_funcs` and `value_model` from `--reward_model_path` and `--value_model_path`."""
    from trl_plus.reward_model import RewardFunction, RewardModel

    reward = _reward_source(script_args, "`--trainer ppo` needs a reward")
    if isinstance(reward, RewardModel):
        reward = RewardFunction(reward, reduce=script_args.reward_reduce)
    value = script_args.value_model_path
    if value is not None and not Path(value).expanduser().exists() and _looks_like_path(value):
        raise ArgumentError(f"The value model path {value!r} does not exist, and it is not a Hub model id either.")
    return {"reward_funcs": reward, "value_model": value}


def _round_sources(script_args: TrainScriptArguments) -> tuple[Any, list[Any] | None, Any]:
    """The round trainers' (task, prompts, judge): a synthetic task's preference stream and oracle, or the `prompt`
    column of the dataset and the judge in `--reward_model_path` (which replaces the oracle of a task too)."""
    from trl_plus.judges import as_preference, load_judge

    trainer, name = script_args.trainer, script_args.dataset_name
    task, prompts = None, None
    if name and name.startswith(SYNTHETIC_PREFIX):
        task = _synthetic_task(name.removeprefix(SYNTHETIC_PREFIX), f"--dataset_name {name}", script_args)
    else:
        dataset = load_preference_dataset(script_args)
        rows = _split(dataset, script_args.dataset_train_split, "--dataset_train_split", name)
        if isinstance(rows, IterableDataset):
            raise ArgumentError(
                f"`--trainer {trainer}` draws prompts at random from the whole dataset; it cannot stream one: "
                "leave out `--dataset_streaming`."
            )
        if "prompt" not in rows.column_names:
            raise ArgumentError(
                f"`--trainer {trainer}` samples answers to the dataset's `prompt` column; {name!r} has the columns "
                f"{rows.column_names}. Rename the column of your prompts to `prompt`."
            )
        prompts = list(rows["prompt"])
        if not prompts:
            raise ArgumentError(f"The dataset {name!r} has no rows: `--trainer {trainer}` needs prompts.")
    judge = None
    if script_args.reward_model_path and script_args.reward_model_path.startswith("llm:"):
        judge = load_judge(script_args.reward_model_path)
    elif task is None or script_args.reward_model_path:
        missing = f"`--trainer {trainer}` needs a judge for prompts that are not a synthetic task's"
        judge = as_preference(_reward_source(script_args, missing))
    return task, prompts, judge


def train_rounds(script_args: TrainScriptArguments, config: RoundsConfig, model_args: ModelConfig) -> Path:
    """`--trainer rft|iterative`: check every setting, run the rounds (resuming after those finished in
    `output_dir`) with one line per round, and return the last round's folder, the final policy."""
    trainer = script_args.trainer
    if model_args.use_peft or model_args.load_in_4bit or model_args.load_in_8bit:
        raise ArgumentError(
            f"`--trainer {trainer}` fine-tunes the whole model; it takes no `--use_peft`, `--load_in_4bit` or "
            "`--load_in_8bit`."
        )
    if not config.output_dir:
        raise ArgumentError(f"`--trainer {trainer}` saves its rounds under `--output_dir`: pass one.")
    model = _check_model(model_args)
    task, prompts, judge = _round_sources(script_args)
    out = Path(config.output_dir)
    finished = [i for i in range(1, config.rounds + 1) if (round_path(out, i) / ROUND_FILE).is_file()]
    if finished:
        print(f"Resuming: rounds {', '.join(map(str, finished))} of {config.rounds} are finished in {out}", flush=True)
    start = time.perf_counter()

    def report(done: Any) -> None:
        print(
            f"round {done.index}/{config.rounds}: {done.rows} training rows, {done.seconds:.0f} s "
            f"({time.perf_counter() - start:.0f} s in all), saved to {done.path}",
            flush=True,
        )

    loop = TRAINERS[trainer][1]
    done = loop(model, out, task, prompts=prompts, judge=judge, on_round=report, **config.loop_kwargs())
    print(f"The final policy: {done[-1].path}")
    return Path(done[-1].path)


def train(
    script_args: TrainScriptArguments,
    training_args: TrainingArgs,
    model_args: ModelConfig,
) -> Path:
    """Load the data and the model, train, save to `output_dir`, and return that directory (with `--trainer rft` or
    `iterative`, the last round's folder in it)."""
    if isinstance(training_args, RoundsConfig):
        return train_rounds(script_args, training_args, model_args)
    model = _check_model(model_args)
    dataset = load_preference_dataset(script_args)
    train_dataset = _split(dataset, script_args.dataset_train_split, "--dataset_train_split", script_args.dataset_name)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        test_split = script_args.dataset_test_split
        eval_dataset = _split(dataset, test_split, "--dataset_test_split", script_args.dataset_name)

    quantization_config = get_quantization_config(model_args)
    model_init_kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    if quantization_config is not None and training_args.device.type != "cpu":
        # Each process loads the k-bit model whole onto its own device (as TRL's former `get_kbit_device_map` did);
        # transformers' default, "auto", would spread it over every visible GPU.
        model_init_kwargs["device_map"] = {"": training_args.device}
    model_init_kwargs.update(training_args.model_init_kwargs or {})  # type: ignore[arg-type]
    training_args.model_init_kwargs = model_init_kwargs

    extra = _ppo_sources(script_args) if script_args.trainer == "ppo" else {}
    if script_args.trainer == "nash":
        extra = {"preference": _reward_source(script_args, "`--trainer nash` needs a preference source")}
    trainer = TRAINERS[script_args.trainer][1](
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
        **extra,
    )
    if script_args.ignore_bias_buffers:
        import torch

        # DDP cannot broadcast boolean buffers (transformers#22482).
        trainer.model._ddp_params_and_buffers_to_ignore = [  # type: ignore[union-attr]
            name
            for name, buffer in trainer.model.named_buffers()  # type: ignore[union-attr]
            if buffer.dtype == torch.bool
        ]
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    output_dir = Path(training_args.output_dir or ".")
    trainer.save_model(str(output_dir))
    trainer.save_state()  # trainer_state.json: the full-precision log history, next to the model
    trainer.accelerator.print(f"Saved the trained model to {output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish the trackers, destroy the process group
        # Every process reaches the teardown together: with gloo, a process destroying the group while another is
        # still writing files hung about one run in eight (2 CPU processes under load).
        trainer.accelerator.wait_for_everyone()
        trainer.end()
    return output_dir


def _trainer_choice(argv: Sequence[str]) -> str:
    """`--trainer` from the flags, else `trainer:` from the `--config` YAML, else `preference`: it decides which
    config class the parser is built from, so it is read before the full parse."""
    choice, config = trainer_flags(argv)
    if choice is None and config:
        import yaml

        with open(config) as f:
            try:
                content = yaml.safe_load(f) or {}
            except yaml.YAMLError as error:
                first = str(error).strip().splitlines()
                raise ValueError(f"The --config file {config!r} is not valid YAML: {' '.join(first)}") from None
        if not isinstance(content, dict):
            raise ValueError(
                f"The --config file {config!r} holds a {type(content).__name__}, not a mapping of field names "
                "to values (e.g. `loss: simpo` on its own line)."
            )
        choice = content.get("trainer")
    choice = choice or "preference"
    if choice not in TRAINERS:
        raise ValueError(f"`--trainer` must be one of {sorted(TRAINERS)}, got {choice!r}.")
    return str(choice)


def main(argv: Sequence[str] | None = None, *, prog: str = "trl-plus train") -> int:
    """Parse `argv` (default: `sys.argv[1:]`), train and save; 2 with a one-line message for a bad setting."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_checkpointing_renames()

    def run() -> int:
        if not argv:
            raise ArgumentError(
                "nothing to train: pass --model_name_or_path, --dataset_name and --output_dir (or --config my.yaml); "
                "--help lists the fields."
            )
        every_field = "--help-all" in argv
        args = ["--help" if arg == "--help-all" else arg for arg in argv]
        parser = make_parser(prog, _trainer_choice(args), every_field=every_field or not {"-h", "--help"} & set(args))
        # Config `__post_init__`s raise ValueError for bad values (an unknown loss name, with suggestions) and
        # TypeError for a hyperparameter a loss does not take; an unknown YAML key raises ValueError, a missing YAML
        # file OSError: all reported as one line by `run_reporting_errors`, as errors during training are.
        script_args, training_args, model_args = parser.parse_args_and_config(args=args)
        train(script_args, training_args, model_args)
        return 0

    return run_reporting_errors(prog, run)


if __name__ == "__main__":
    sys.exit(main(prog="python -m trl_plus.train"))
