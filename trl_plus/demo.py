"""The offline demo: build a tiny checkpoint, teach it the synthetic task's format with TRL's SFTTrainer, align it
on the task's preference pairs with PreferenceTrainer and any registered loss, and score the result against its
SFT reference with the oracle. No network, no GPU; a few minutes at most on two CPU cores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_plus.synthetic import WinRate, get_task, policy_preference_dataset, win_rate
from trl_plus.testing import make_tiny
from trl_plus.types import InputKind


@dataclass(frozen=True)
class DemoResult:
    base: Path
    sft: Path
    aligned: Path
    sft_vs_base: WinRate
    aligned_vs_sft: WinRate
    seconds: float


def _quiet() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def sft(
    model_path: str | Path,
    out_dir: str | Path,
    task_name: str,
    *,
    steps: int,
    seed: int,
    print_logs: bool = True,
    learning_rate: float = 3e-3,  # tiny random models need a large step to learn the format in a few hundred steps
) -> Path:
    """Supervised fine-tuning on the task's base answers with TRL's SFTTrainer; saves model and tokenizer."""
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    task = get_task(task_name, seed=seed)
    args = SFTConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        logging_steps=max(1, steps // 4),
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
    )
    trainer = SFTTrainer(model=str(model_path), args=args, train_dataset=task.sft_dataset(32 * steps, seed=seed))
    if not print_logs:
        trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(str(out_dir))
    return Path(out_dir)


def loss_kinds(loss: str | list[str]) -> tuple[list[str], set[InputKind]]:
    """The loss names and their input kinds; unpaired losses train on their own, with UnpairedPreferenceTrainer."""
    from trl_plus.registry import get_loss

    names = [loss] if isinstance(loss, str) else loss
    kinds = {get_loss(name).input_kind for name in names}
    if "unpaired" in kinds and kinds != {"unpaired"}:
        raise ValueError(f"The demo trains unpaired losses on their own, not with paired or listwise ones: {names}.")
    return names, kinds


def training_args(
    out_dir: str | Path, *, steps: int, seed: int, batch_size: int, learning_rate: float
) -> dict[str, Any]:
    """The training settings every preference stage of the demo and of `trl-plus compare` shares."""
    return dict(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        # Small steps: with chosen and rejected this alike, larger or longer updates drain probability from both
        # into malformed answers (likelihood displacement) before the margin pays off.
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        logging_steps=max(1, steps // 4),
        # fp32 and no checkpointing: on a CPU without bf16 units both only cost time for a model this small
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
    )


def online_training_args(
    out_dir: str | Path, *, steps: int, seed: int, batch_size: int, learning_rate: float, max_completion_length: int
) -> dict[str, Any]:
    """`training_args` for the online trainers (PPO, GRPO): completions of at most `max_completion_length` tokens
    and a constant learning rate, since they improve while they sample and a decay would stop them early."""
    args = training_args(out_dir, steps=steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate)
    args.update(lr_scheduler_type="constant", warmup_steps=0, max_completion_length=max_completion_length)
    return args


def preference_trainer(
    model_path: str | Path,
    out_dir: str | Path,
    data: Any,
    *,
    loss: str | list[str],
    steps: int,
    seed: int,
    batch_size: int = 16,
    loss_kwargs: dict[str, Any] | None = None,
    learning_rate: float = 5e-5,
    loss_weights: list[float] | None = None,
    ref_model: Any = None,
) -> Any:
    """The demo's preference trainer for `loss` on `data` (pairs, ranked lists, or prompt/completion/label rows),
    not yet trained: PreferenceTrainer for paired and listwise losses, UnpairedPreferenceTrainer for unpaired ones
    (kto, bco...), which unpairs pairs itself. `batch_size` counts rows of `data`; without `ref_model` the
    reference is a frozen copy of `model_path`."""
    from trl_plus.trainers import (
        PreferenceConfig,
        PreferenceTrainer,
        UnpairedPreferenceConfig,
        UnpairedPreferenceTrainer,
    )

    names, kinds = loss_kinds(loss)
    common = training_args(out_dir, steps=steps, seed=seed, batch_size=batch_size, learning_rate=learning_rate)
    common.update(loss=names, loss_kwargs=loss_kwargs, loss_weights=loss_weights)
    if kinds == {"unpaired"}:
        return UnpairedPreferenceTrainer(
            str(model_path), ref_model, args=UnpairedPreferenceConfig(**common), train_dataset=data
        )
    return PreferenceTrainer(str(model_path), ref_model, args=PreferenceConfig(**common), train_dataset=data)


def align(
    model_path: str | Path,
    out_dir: str | Path,
    task_name: str,
    *,
    loss: str | list[str],
    steps: int,
    seed: int,
    loss_kwargs: dict[str, Any] | None = None,
    learning_rate: float = 5e-5,
) -> Path:
    """Preference training from the SFT model; saves model and tokenizer.

    Paired and listwise losses train with PreferenceTrainer; unpaired ones (kto, bco...) with
    UnpairedPreferenceTrainer on the unpaired view of the same pairs, two rows per pair, so every loss sees the same
    completions per step.
    """
    from trl_plus.trainers import unpaired_view

    task = get_task(task_name, seed=seed)
    _, kinds = loss_kinds(loss)
    unpaired = kinds == {"unpaired"}
    # On-policy data: samples of the SFT model itself, labelled by the oracle (see policy_preference_dataset).
    data = policy_preference_dataset(model_path, task, 16 * steps, k=4 if "ranked" in kinds else 2, seed=seed)
    trainer = preference_trainer(
        model_path,
        out_dir,
        unpaired_view(data, seed=seed) if unpaired else data,
        loss=loss,
        steps=steps,
        seed=seed,
        batch_size=32 if unpaired else 16,
        loss_kwargs=loss_kwargs,
        learning_rate=learning_rate,
    )
    trainer.train()
    trainer.save_model(str(out_dir))
    return Path(out_dir)


def _check_loss_kwargs(names: list[str], loss_kwargs: dict[str, Any] | None) -> None:
    """Hyperparameters the losses do not take raise here, as the trainer's config would."""
    from types import SimpleNamespace

    from trl_plus.registry import get_loss
    from trl_plus.trainers.preference import resolve_loss_kwargs

    resolve_loss_kwargs(SimpleNamespace(loss_kwargs=loss_kwargs), [get_loss(name) for name in names], {})


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    arch: str = "llama",
    task_name: str = "transitive",
    sft_steps: int = 300,
    loss: str | list[str] = "dpo",
    loss_kwargs: dict[str, Any] | None = None,
    steps: int = 400,
    eval_prompts: int = 256,
    seed: int = 0,
) -> DemoResult:
    _quiet()
    start = time.perf_counter()
    out = Path(out_dir)
    task = get_task(task_name, seed=seed)
    names = [loss] if isinstance(loss, str) else list(loss)
    label = ",".join(names)
    # Unknown or mixed losses and bad hyperparameters fail now, not after the model is built and fine-tuned.
    trainer_name = "UnpairedPreferenceTrainer" if loss_kinds(names)[1] == {"unpaired"} else "PreferenceTrainer"
    _check_loss_kwargs(names, loss_kwargs)
    print(f"[1/4] Building a tiny random {arch} checkpoint in {out / 'base'}")
    base = make_tiny(arch, out / "base", seed=seed)
    print(f"[2/4] SFT on the {task_name} task's answers for {sft_steps} steps (TRL SFTTrainer, CPU)")
    sft_path = sft(base, out / "sft", task_name, steps=sft_steps, seed=seed)
    sft_vs_base = win_rate(sft_path, base, task, n=eval_prompts, seed=seed)
    print(f"      SFT vs random base: {sft_vs_base}")
    print(f"[3/4] Preference training with loss={label} for {steps} steps (trl-plus {trainer_name}, CPU)")
    aligned = align(
        sft_path, out / "+".join(names), task_name, loss=loss, steps=steps, seed=seed, loss_kwargs=loss_kwargs
    )
    print(f"[4/4] Oracle evaluation on {eval_prompts} held-out prompts")
    aligned_vs_sft = win_rate(aligned, sft_path, task, n=eval_prompts, seed=seed)
    seconds = time.perf_counter() - start
    print(f"{label} vs its SFT reference: {aligned_vs_sft}")
    print(f"Done in {seconds:.0f} s. Models saved under {out} ({label} model: {aligned}).")
    return DemoResult(
        base=base,
        sft=sft_path,
        aligned=aligned,
        sft_vs_base=sft_vs_base,
        aligned_vs_sft=aligned_vs_sft,
        seconds=seconds,
    )
