"""The offline demo: build a tiny checkpoint, teach it the synthetic task's format with TRL's SFTTrainer, align it
on the task's preference pairs with PreferenceTrainer and any registered loss, and score the result against its
SFT reference with the oracle. No network, no GPU; a few minutes at most on two CPU cores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trl_plus.synthetic import DEMO_TASK, WinRate, get_task, policy_preference_dataset, win_rate
from trl_plus.testing import make_tiny
from trl_plus.types import InputKind


@dataclass(frozen=True)
class DemoResult:
    base: Path
    sft: Path
    aligned: Path
    sft_vs_base: WinRate
    aligned_vs_sft: WinRate  # on held-out prompts
    seconds: float
    on_training_prompts: WinRate | None = None  # the same on training prompts, for tasks that hold prompts out


def _quiet() -> None:
    import datasets
    import transformers

    from trl_plus.errors import quiet_checkpointing_renames

    quiet_checkpointing_renames()

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
    loss_weights: list[float] | None = None,
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
        loss_weights=loss_weights,
    )
    trainer.train()
    trainer.save_model(str(out_dir))
    return Path(out_dir)


def _check_loss_kwargs(names: list[str], loss_kwargs: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The hyperparameters given per loss; those the losses do not take raise here, as the trainer's config would."""
    from types import SimpleNamespace

    from trl_plus.registry import get_loss
    from trl_plus.trainers.preference import resolve_loss_kwargs

    return resolve_loss_kwargs(SimpleNamespace(loss_kwargs=loss_kwargs), [get_loss(name) for name in names], {})


@dataclass(frozen=True)
class Recipe:
    """A task's demo settings, found by measurement (README, "The demo"); any flag overrides its field."""

    sft_steps: int
    loss: tuple[str, ...]
    steps: int  # per round
    rounds: int  # 1: one round of pairs sampled from the SFT model; more: iterative on-policy rounds
    learning_rate: float
    loss_weights: tuple[float, ...] | None = None
    last_round_lr_ratio: float = 1.0  # the last round's learning rate over the first's, linear in between


RECIPES = {
    # Iterative: 24 rounds of 100 steps, each on every ordered pair of 4 fresh samples per prompt of the policy, the
    # learning rate falling from 5e-4 to 5e-5 over the rounds. The small sft term keeps the answers well-formed
    # while dpo moves probability between them.
    "packing": Recipe(
        sft_steps=900,
        loss=("dpo", "sft"),
        steps=100,
        rounds=24,
        learning_rate=5e-4,
        loss_weights=(1.0, 0.2),
        last_round_lr_ratio=0.1,
    ),
    # The first demo: one round of 400 steps on pairs of the SFT model's samples, at a small learning rate.
    "transitive": Recipe(sft_steps=300, loss=("dpo",), steps=400, rounds=1, learning_rate=5e-5),
    "cyclic": Recipe(sft_steps=300, loss=("dpo",), steps=400, rounds=1, learning_rate=5e-5),
}


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    arch: str = "llama",
    task_name: str = DEMO_TASK,
    sft_steps: int | None = None,
    loss: str | list[str] | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    loss_weights: list[float] | None = None,
    steps: int | None = None,
    rounds: int | None = None,
    learning_rate: float | None = None,
    eval_prompts: int = 512,
    seed: int = 0,
) -> DemoResult:
    """The demo on `task_name` with its `RECIPES` entry; arguments left None take the recipe's value (a `loss`
    given without `loss_weights` weighs its losses equally). `steps` are per round."""
    _quiet()
    start = time.perf_counter()
    out = Path(out_dir)
    task = get_task(task_name, seed=seed)
    recipe = RECIPES[task_name]
    names = list(recipe.loss) if loss is None else [loss] if isinstance(loss, str) else list(loss)
    if loss is None and loss_weights is None and recipe.loss_weights is not None:
        loss_weights = list(recipe.loss_weights)
    sft_steps = recipe.sft_steps if sft_steps is None else sft_steps
    steps = recipe.steps if steps is None else steps
    rounds = recipe.rounds if rounds is None else rounds
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    label = ",".join(names)
    # Unknown or mixed losses and bad hyperparameters fail now, not after the model is built and fine-tuned.
    trainer_name = "UnpairedPreferenceTrainer" if loss_kinds(names)[1] == {"unpaired"} else "PreferenceTrainer"
    given = _check_loss_kwargs(names, loss_kwargs)
    if loss_weights is not None and len(loss_weights) != len(names):
        raise ValueError(f"Got {len(loss_weights)} loss weights for {len(names)} losses ({label}).")
    if rounds < 1 or steps < 1:
        raise ValueError(f"rounds and steps must be at least 1, got {rounds} and {steps}.")
    print(f"[1/4] Building a tiny random {arch} checkpoint in {out / 'base'}")
    base = make_tiny(arch, out / "base", seed=seed)
    print(f"[2/4] SFT on the {task_name} task's answers for {sft_steps} steps (TRL SFTTrainer, CPU)")
    sft_path = sft(base, out / "sft", task_name, steps=sft_steps, seed=seed)
    sft_vs_base = win_rate(sft_path, base, task, n=eval_prompts, seed=seed)
    print(f"      SFT vs random base: {sft_vs_base}")
    weights = "" if loss_weights is None else f" (weights {', '.join(f'{w:g}' for w in loss_weights)})"
    folder = out / "+".join(names)
    if rounds == 1:
        print(
            f"[3/4] Preference training with loss={label}{weights} for {steps} steps on pairs of the SFT model's "
            f"samples (trl-plus {trainer_name}, CPU)"
        )
        aligned = align(
            sft_path,
            folder,
            task_name,
            loss=names,
            steps=steps,
            seed=seed,
            loss_kwargs=loss_kwargs,
            learning_rate=learning_rate,
            loss_weights=loss_weights,
        )
    else:
        from trl_plus.iterative import iterative_training

        final_lr = learning_rate * recipe.last_round_lr_ratio
        print(
            f"[3/4] Iterative preference training with loss={label}{weights}: {rounds} rounds × {steps} steps, each "
            f"on 4 fresh samples per prompt of the current policy ranked by the oracle, learning rate "
            f"{learning_rate:g} → {final_lr:g} (trl-plus {trainer_name}, CPU)"
        )

        def report(done: Any) -> None:
            print(f"      round {done.index}/{rounds}: {done.rows} rows, {done.seconds:.0f} s", flush=True)

        finished = iterative_training(
            sft_path,
            folder,
            task,
            loss=names,
            rounds=rounds,
            steps_per_round=steps,
            learning_rate=learning_rate,
            final_learning_rate=final_lr,
            loss_kwargs=loss_kwargs,
            loss_weights=loss_weights,
            seed=seed,
            on_round=report,
        )
        aligned = finished[-1].path
    held_out = "fresh prompts"
    if task.holds_out_prompts:
        held_out = "held-out prompts (attribute combinations no training stage saw)"
    print(f"[4/4] Oracle evaluation on {eval_prompts} {held_out}")
    aligned_vs_sft = win_rate(aligned, sft_path, task, n=eval_prompts, seed=seed)
    print(f"{label} vs its SFT reference: {aligned_vs_sft}")
    on_training = None
    if task.holds_out_prompts:
        on_training = win_rate(aligned, sft_path, task, n=eval_prompts, seed=seed, stream="eval-train")
        print(f"  the same on training prompts: {on_training}")
    beta = _beta(names, given)
    ceilings = task.ceilings(beta)
    if ceilings:
        print(
            "  ceilings (exact, against the base distribution the SFT model imitates): "
            + describe_ceilings(ceilings, beta)
        )
    seconds = time.perf_counter() - start
    print(f"Done in {seconds:.0f} s. Models saved under {out} ({label} model: {aligned}).")
    return DemoResult(
        base=base,
        sft=sft_path,
        aligned=aligned,
        sft_vs_base=sft_vs_base,
        aligned_vs_sft=aligned_vs_sft,
        seconds=seconds,
        on_training_prompts=on_training,
    )


def _beta(names: list[str], given: dict[str, dict[str, Any]]) -> float | None:
    """The β of the first loss that has one (as `given` per loss, else its default), for the KL-regularised
    ceiling."""
    from trl_plus.registry import get_loss

    for spec in (get_loss(name) for name in names):
        defaults = {hp.name: hp.default for hp in spec.hyperparameters}
        if "beta" in defaults:
            return float(given.get(spec.name, {}).get("beta", defaults["beta"]))
    return None


def describe_ceilings(ceilings: dict[str, float], beta: float | None) -> str:
    """E.g. "best answer 0.918, best prompt-blind answer 0.659, KL-regularised optimum at β 0.1: 0.845"."""
    parts = [
        f"best answer {ceilings['best_answer']:.3f}",
        f"best prompt-blind answer {ceilings['best_prompt_blind']:.3f}",
    ]
    if "kl_optimum" in ceilings:
        parts.append(f"KL-regularised optimum at β {beta:g}: {ceilings['kl_optimum']:.3f}")
    return ", ".join(parts)
