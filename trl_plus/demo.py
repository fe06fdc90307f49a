"""The offline demo, the RLHF loop on a synthetic task: build a tiny checkpoint, teach it the task's format with
TRL's SFTTrainer, collect preference data and train a reward model on them, align the SFT model with one of
`METHODS` (online rejection-sampling fine-tuning, iterative on-policy preference training, offline preference
training with any registered loss, PPO, Nash-MD), and score the result against its SFT reference with the oracle. No
network, no GPU; a few minutes on two CPU cores."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trl_plus.iterative import DEFAULT_LOSS, DEFAULT_LOSS_WEIGHTS
from trl_plus.judges import as_preference, with_rule
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


# fp32 and no gradient checkpointing: on a CPU without bf16 units both only cost time for a model this small (TRL's
# configs default to bf16 autocast with checkpointing, which makes the tiny models' SFT about twice as slow).
CPU_FP32: dict[str, Any] = {"bf16": False, "gradient_checkpointing": False}


def quiet_libraries() -> None:
    """Silence the progress bars and info logs of datasets and transformers, and transformers' warnings about the
    checkpointing names TRL still uses: the demo, compare and the experiments print their own progress."""
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
    fp32: bool = False,
) -> Path:
    """Supervised fine-tuning on the task's base answers with TRL's SFTTrainer; saves model and tokenizer.

    By default with TRL's precision settings (bf16 autocast, gradient checkpointing), as `trl-plus compare`'s
    references are trained. `fp32` trains without either: about twice as fast on a CPU without bf16 units, and a
    different model, since bf16 rounds every step."""
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
        **(CPU_FP32 if fp32 else {}),
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
        **CPU_FP32,
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
    data: Any,
    *,
    loss: str | list[str],
    steps: int,
    seed: int,
    loss_kwargs: dict[str, Any] | None = None,
    learning_rate: float = 5e-5,
    loss_weights: list[float] | None = None,
) -> Path:
    """Offline preference training from the SFT model on `data` (pairs, or ranked lists for listwise losses); saves
    model and tokenizer.

    Paired and listwise losses train with PreferenceTrainer; unpaired ones (kto, bco...) with
    UnpairedPreferenceTrainer on the unpaired view of the same pairs, two rows per pair, so every loss sees the same
    completions per step.
    """
    from trl_plus.trainers import unpaired_view

    unpaired = loss_kinds(loss)[1] == {"unpaired"}
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


METHODS = ("iterative", "offline", "rft", "ppo", "nash_md")
JUDGES = ("reward-model", "oracle")


@dataclass(frozen=True)
class Recipe:
    """A method's demo settings on a task, found by measurement (README, "The demo"). The demo's flags override
    `steps`, `learning_rate`, `rounds` and the loss settings."""

    steps: int  # per round for the loops (iterative, rft); in all for the others
    learning_rate: float
    rounds: int = 1  # iterative and rft: rounds of fresh samples
    loss: tuple[str, ...] = ("dpo",)  # iterative and offline
    loss_weights: tuple[float, ...] | None = None
    last_round_lr_ratio: float = 1.0  # iterative: the last round's learning rate over the first's, linear in between
    batch_size: int = 16  # iterative and rft: rows per optimizer step
    sampling_batch_size: int = 64  # iterative and rft: prompts per `generate` call
    config: tuple[tuple[str, Any], ...] = ()  # ppo and nash_md: PPOConfig / NashConfig fields


@dataclass(frozen=True)
class TaskRecipe:
    """A task's demo: SFT, the preference data and reward model, and each method's `Recipe`."""

    sft_steps: int
    method: str  # the default
    methods: dict[str, Recipe]
    pairs: int = 16384  # the reward model's preference data: the task's pairs of base answers, soft labels
    reward_epochs: float = 3.0
    reward_learning_rate: float = 1e-3
    reward_pooling: str = "mean"
    sft_fp32: bool = False  # the reference's SFT without bf16 autocast (`sft`'s `fp32`)
    # The online trainers' completions while training. transitive's and cyclic's answers take at most 3 tokens of
    # the tiny tokenizer; packing's take up to 19 and arena's 12 (31 % and 16 % of base answers over 8), so they
    # sample as long as the evaluation does: a cut-off answer is malformed, and the policy would learn short words.
    online_max_new_tokens: int = 8


# The loops and online trainers, as measured on packing (README, "The demo").
ONLINE = {
    # 24 rounds of 100 steps, each on every ordered pair of 4 fresh samples per prompt of the policy ranked by the
    # judge, the learning rate falling from 5e-4 to 5e-5 over the rounds. The small sft term keeps the answers
    # well-formed while dpo moves probability between them.
    "iterative": Recipe(
        steps=100,
        learning_rate=5e-4,
        rounds=24,
        loss=DEFAULT_LOSS,
        loss_weights=DEFAULT_LOSS_WEIGHTS,
        last_round_lr_ratio=0.1,
    ),
    # The default on packing: 12 rounds, each fine-tuning for 100 steps of 12 rows on the judge's best of 4 fresh
    # samples for 1,200 prompts, sampled 1,024 prompts a `generate` call. From the same reference and reward model,
    # 16 rows a step took 26 s longer for 0.761 against 0.758; 8 rows scored 0.736 (README).
    "rft": Recipe(steps=100, learning_rate=5e-4, rounds=12, batch_size=12, sampling_batch_size=1024),
    # One pass per rollout: with 4 passes over 16 completions PPO fits the reward model's errors (compare's ppo:bt on
    # packing, 5 seeds: 0.494–0.529 with 4 passes, 0.572 and 0.577 with 1 at kl_coef 0.5 and 0.2; README).
    "ppo": Recipe(steps=400, learning_rate=1e-3, config=(("kl_coef", 0.5), ("num_ppo_epochs", 1))),
    "nash_md": Recipe(steps=400, learning_rate=1e-3, config=(("beta", 0.1),)),
}
# The first demo: one round of 400 steps on the preference pairs, at a small learning rate.
FIRST_DEMO = {**ONLINE, "offline": Recipe(steps=400, learning_rate=5e-5)}
RECIPES = {
    # fp32 SFT and a reward model of one epoch (agreement 0.877; 0.924 with three) bring the demo within 3 minutes.
    "packing": TaskRecipe(
        sft_steps=900,
        method="rft",
        methods={**ONLINE, "offline": Recipe(400, 2e-4)},
        reward_epochs=1.0,
        sft_fp32=True,
        online_max_new_tokens=16,
    ),
    "transitive": TaskRecipe(sft_steps=300, method="offline", methods=FIRST_DEMO),
    "cyclic": TaskRecipe(sft_steps=300, method="offline", methods=FIRST_DEMO),
    # 900 steps: 96 % of the SFT model's answers are well-formed on held-out and on training prompts (README).
    "arena": TaskRecipe(sft_steps=900, method="offline", methods=FIRST_DEMO, online_max_new_tokens=16),
}
# PPO's format rule, as a reward: more than the whole range of the demo reward model's scores on well-formed answers
# (-2.6 to 4.9 over 512 base answers), so a malformed answer scores below almost any well-formed one.
FORMAT_PENALTY = 10.0


def reward_model(
    sft_path: Path, out_dir: Path, pairs: Any, recipe: TaskRecipe, task: Any, *, seed: int
) -> tuple[Any, Any]:
    """A `bt` reward model trained from the SFT model on the preference pairs, saved to `out_dir`; (the model in
    eval mode, its agreement with the oracle on held-out pairs)."""
    from trl_plus.reward_bench import train_reward_model
    from trl_plus.synthetic import oracle_agreement

    model, _ = train_reward_model(
        sft_path,
        pairs,
        "bt",
        epochs=recipe.reward_epochs,
        learning_rate=recipe.reward_learning_rate,
        head_learning_rate=1e-2,
        seed=seed,
        pooling=recipe.reward_pooling,
    )
    model.save_pretrained(out_dir)
    return model, oracle_agreement(model.prefer, task, 1000, seed=seed + 1000, stream="eval")


def online_trainer(
    trainer: str,
    model_path: str | Path,
    out_dir: str | Path,
    prompts: Any,
    source: Any,
    *,
    steps: int,
    seed: int,
    learning_rate: float,
    max_completion_length: int,
    batch_size: int = 16,
    config: dict[str, Any] | None = None,
) -> Any:
    """An online trainer on `prompts` (a dataset with a prompt column), not yet trained: "ppo" (PPOTrainer against
    the reward `source`), "nash" (NashTrainer against it as a preference) or "grpo" (TRL's GRPOTrainer against it as
    a reward function); `config` holds the trainer's own config fields."""
    from trl import GRPOConfig, GRPOTrainer

    from trl_plus.rewards import as_reward_func
    from trl_plus.trainers import NashConfig, NashTrainer, PPOConfig, PPOTrainer

    args = online_training_args(
        out_dir,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_completion_length=max_completion_length,
    )
    args.update(config or {})
    if trainer == "ppo":
        return PPOTrainer(str(model_path), reward_funcs=source, args=PPOConfig(**args), train_dataset=prompts)
    if trainer == "nash":
        return NashTrainer(str(model_path), preference=source, args=NashConfig(**args), train_dataset=prompts)
    funcs = [as_reward_func(s) for s in source] if isinstance(source, list) else as_reward_func(source)
    return GRPOTrainer(str(model_path), reward_funcs=funcs, args=GRPOConfig(**args), train_dataset=prompts)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    arch: str = "llama",
    task_name: str = DEMO_TASK,
    method: str | None = None,
    judge: str = "reward-model",
    sft_steps: int | None = None,
    loss: str | list[str] | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    loss_weights: list[float] | None = None,
    steps: int | None = None,
    rounds: int | None = None,
    learning_rate: float | None = None,
    pairs: int | None = None,
    eval_prompts: int = 512,
    seed: int = 0,
) -> DemoResult:
    """The RLHF loop on `task_name`: a tiny model, SFT, preference data and a reward model, then `method` (default:
    the task's), then the oracle's verdict. Arguments left None take the task's `RECIPES` entry (a `loss` given
    without `loss_weights` weighs its losses equally); `steps` are per round for the loops. `judge`: what ranks the
    loops' samples and rewards the online trainers, the reward model or the task's oracle itself."""
    quiet_libraries()
    start = time.perf_counter()
    out = Path(out_dir)
    task = get_task(task_name, seed=seed)
    plan = RECIPES[task_name]
    method = plan.method if method is None else method
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; the demo runs one of {', '.join(METHODS)}.")
    if judge not in JUDGES:
        raise ValueError(f"Unknown judge {judge!r}; one of {', '.join(JUDGES)}.")
    recipe = plan.methods[method]
    takes_loss = method in ("iterative", "offline")
    if not takes_loss and (loss is not None or loss_kwargs is not None or loss_weights is not None):
        raise ValueError(f"A loss and its settings are for the iterative and offline methods, not {method}.")
    names = list(recipe.loss) if loss is None else [loss] if isinstance(loss, str) else list(loss)
    if loss is None and loss_weights is None and recipe.loss_weights is not None:
        loss_weights = list(recipe.loss_weights)
    sft_steps = plan.sft_steps if sft_steps is None else sft_steps
    plan = plan if pairs is None else replace(plan, pairs=pairs)
    steps = recipe.steps if steps is None else steps
    rounds = recipe.rounds if rounds is None else rounds
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    label = ",".join(names) if takes_loss else method
    # Unknown or mixed losses and bad hyperparameters fail now, not after the model is built and fine-tuned.
    trainer_name = "UnpairedPreferenceTrainer" if loss_kinds(names)[1] == {"unpaired"} else "PreferenceTrainer"
    given = _check_loss_kwargs(names, loss_kwargs)
    if loss_weights is not None and len(loss_weights) != len(names):
        raise ValueError(f"Got {len(loss_weights)} loss weights for {len(names)} losses ({label}).")
    if rounds < 1 or steps < 1 or plan.pairs < 2:
        raise ValueError(f"rounds and steps must be at least 1 and pairs 2, got {rounds}, {steps} and {plan.pairs}.")
    learns_from_judge = method != "offline"
    print(f"[1/5] Building a tiny random {arch} checkpoint in {out / 'base'}")
    base = make_tiny(arch, out / "base", seed=seed)
    precision = "fp32" if plan.sft_fp32 else "TRL's bf16 autocast"
    print(f"[2/5] SFT on the {task_name} task's answers for {sft_steps} steps (TRL SFTTrainer, {precision}, CPU)")
    sft_path = sft(base, out / "sft", task_name, steps=sft_steps, seed=seed, fp32=plan.sft_fp32)
    sft_vs_base = win_rate(sft_path, base, task, n=eval_prompts, seed=seed)
    print(f"      SFT vs random base: {sft_vs_base}")
    data = None
    source: Any = task
    if method == "offline" or judge == "reward-model":
        kinds = loss_kinds(names)[1]
        if learns_from_judge:
            # The task's preference pairs (answers of the base distribution the SFT model imitates) with soft labels,
            # the share of raters preferring each answer (the oracle's probability): with 0/1 labels, or pairs of the
            # SFT model's own samples, this tiny reward model agrees with the oracle far less often (README).
            data = task.preference_dataset(plan.pairs, seed=seed, oracle_column=True)
            print(
                f"[3/5] Preference data: {len(data)} pairs of base answers to training prompts, soft-labelled by the "
                "oracle in place of human raters; a bt reward model trained on them (trl-plus RewardModelTrainer)"
            )
            source, agreement = reward_model(sft_path, out / "reward", data, plan, task, seed=seed)
            print(f"      reward model: {agreement}")
        else:
            k = 4 if "ranked" in kinds else 2
            data = policy_preference_dataset(sft_path, task, 16 * steps, k=k, seed=seed)  # a batch of 16 per step
            print(
                f"[3/5] Preference data: {len(data)} {'ranked lists' if k > 2 else 'pairs'} of the SFT model's answers "
                "to training prompts, labelled by the oracle in place of human raters"
            )
    else:
        print("[3/5] No preference data or reward model: the oracle itself judges (--judge oracle)")
    folder = out / (f"{method}-{'+'.join(names)}" if takes_loss else method)
    weights = "" if loss_weights is None else f" (weights {', '.join(f'{w:g}' for w in loss_weights)})"
    # A learned judge knows only the answers its data showed; a format rule, which needs no preference data, ranks
    # the malformed answers a policy drifts to below every well-formed one.
    prefer = None if source is task else with_rule(as_preference(source), task.is_valid)
    judged_by = "the oracle" if prefer is None else "the reward model (malformed answers last, by a format rule)"

    def report(done: Any) -> None:
        print(f"      round {done.index}/{rounds}: {done.rows} rows, {done.seconds:.0f} s", flush=True)

    # What the two loops (iterative, rft) share.
    loop: dict[str, Any] = dict(
        rounds=rounds,
        steps_per_round=steps,
        batch_size=recipe.batch_size,
        sampling_batch_size=recipe.sampling_batch_size,
        learning_rate=learning_rate,
        seed=seed,
        on_round=report,
        judge=prefer,
    )

    if method == "offline":
        print(
            f"[4/5] Offline preference training with loss={label}{weights} for {steps} steps on the preference data "
            f"(trl-plus {trainer_name}, CPU)"
        )
        aligned = align(
            sft_path,
            folder,
            data,
            loss=names,
            steps=steps,
            seed=seed,
            loss_kwargs=loss_kwargs,
            learning_rate=learning_rate,
            loss_weights=loss_weights,
        )
    elif method == "iterative":
        from trl_plus.iterative import iterative_training

        final_lr = learning_rate * recipe.last_round_lr_ratio
        print(
            f"[4/5] Iterative preference training with loss={label}{weights}: {rounds} rounds × {steps} steps, each "
            f"on 4 fresh samples per prompt of the current policy ranked by {judged_by}, learning rate "
            f"{learning_rate:g} → {final_lr:g} (trl-plus {trainer_name}, CPU)"
        )
        finished = iterative_training(
            sft_path,
            folder,
            task,
            loss=names,
            final_learning_rate=final_lr,
            loss_kwargs=loss_kwargs,
            loss_weights=loss_weights,
            **loop,
        )
        aligned = finished[-1].path
    elif method == "rft":
        from trl_plus.iterative import rejection_sampling_training

        print(
            f"[4/5] Rejection-sampling fine-tuning: {rounds} rounds × {steps} steps of {recipe.batch_size} rows, "
            f"each on the best of 4 fresh samples per prompt of the current policy by {judged_by}, learning rate "
            f"{learning_rate:g} (TRL SFTTrainer, CPU)"
        )
        finished = rejection_sampling_training(sft_path, folder, task, **loop)
        aligned = finished[-1].path
    else:
        from datasets import Dataset

        from trl_plus.rewards import RuleReward

        against: Any = prefer or source
        against_text = judged_by
        if method == "ppo" and prefer is not None:  # the reward model's score, less a penalty for broken formats
            against = [source, RuleReward(task.is_valid, penalty=FORMAT_PENALTY, name="format")]
            against_text = f"the reward model's score ({FORMAT_PENALTY:g} less for a malformed answer)"
        settings = ", ".join(f"{key} {value}" for key, value in recipe.config)
        trainer_class = "PPOTrainer" if method == "ppo" else "NashTrainer"
        print(
            f"[4/5] {method} against {against_text} for {steps} steps, learning rate {learning_rate:g}, {settings} "
            f"(trl-plus {trainer_class}, CPU)"
        )
        prompts = Dataset.from_dict({"prompt": task.prompts(16 * steps, seed=seed, stream="preference")})
        trainer = online_trainer(
            "ppo" if method == "ppo" else "nash",
            sft_path,
            folder,
            prompts,
            against,
            steps=steps,
            seed=seed,
            learning_rate=learning_rate,
            max_completion_length=plan.online_max_new_tokens,
            config=dict(recipe.config),
        )
        trainer.train()
        trainer.save_model(str(folder))
        aligned = folder
    held_out = "fresh prompts"
    if task.holds_out_prompts:
        held_out = "held-out prompts (attribute combinations no training stage saw)"
    print(f"[5/5] Oracle evaluation on {eval_prompts} {held_out}")
    aligned_vs_sft = win_rate(aligned, sft_path, task, n=eval_prompts, seed=seed)
    print(f"{label} vs its SFT reference: {aligned_vs_sft}")
    on_training = None
    if task.holds_out_prompts:
        on_training = win_rate(aligned, sft_path, task, n=eval_prompts, seed=seed, stream="eval-train")
        print(f"  the same on training prompts: {on_training}")
    # The KL-regularised ceiling is for a reward-and-KL objective: the losses' β, or PPO's KL coefficient.
    beta = _beta(names, given) if takes_loss else dict(recipe.config).get("kl_coef")
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
    if "nash_equilibrium" in ceilings:  # non-transitive tasks: the policy no answer beats on average
        parts.append(f"Nash equilibrium {ceilings['nash_equilibrium']:.3f}")
    return ", ".join(parts)
