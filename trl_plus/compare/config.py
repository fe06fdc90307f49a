"""A comparison's settings (`CompareConfig`) and every check on them, made before anything is built or trained."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trl_plus.compare.methods import Method, parse_heads, parse_methods, parse_online

DEFAULT_LOSSES = "dpo,ipo,simpo,orpo,kto,plackett_luce"
METRICS = ("win_rate", "exploitability", "accuracy", "kl", "cost")
ORACLE_METRICS = ("win_rate", "exploitability")
DEFAULT_LEARNING_RATE = 1e-4  # offline losses, reward models and the loops
# --reward-pairs reward models' epochs: the demo's when the README's ppo:bt figures were measured (the demo now trains
# packing's for one, to fit its 3 minutes).
REWARD_EPOCHS = 3.0


@dataclass(frozen=True)
class Budget:
    """A loss's own settings in task runs on the tiny model built here, where its defaults (its paper's) learn too
    little in compare's default budget to tell it from the sft control."""

    learning_rate: float | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)


# Found by measurement on packing, 2 seeds per setting, then checked at the default 5 (README, "trl-plus compare").
# A row named by the loss alone gets its budget; --learning-rate and --loss-kwargs override it.
TASK_BUDGETS: dict[str, Budget] = {
    "simpo": Budget(learning_rate=6e-4),
    "orpo": Budget(learning_rate=6e-4, loss_kwargs={"beta": 2.0}),
}


class CompareError(ValueError):
    """A setting or dataset compare cannot work with, found before any training."""


@dataclass
class CompareConfig:
    losses: str | Sequence[str] = DEFAULT_LOSSES
    heads: str | Sequence[str] = ()  # reward-model heads trained on the same data, scored by held-out accuracy
    online: str | Sequence[str] = ()  # online methods: ppo, grpo, or ppo:HEAD / grpo:HEAD against a reward model
    task: str | None = None
    dataset: str | None = None
    model: str | None = None
    out_dir: str | Path = "runs/compare"
    # Every row's budget: 400 steps of 16 pairs at `learning_rate` (offline losses, reward models, the loops) or
    # `online_learning_rate` (ppo, grpo, nash), over 5 seeds. On packing, 5 seeds separate dpo, ipo, kto and
    # plackett_luce from the sft control; with 3, the t(2) factor of 4.3 leaves only kto's interval clear (README).
    steps: int = 400
    seeds: int = 5
    sft_steps: int | None = None  # default: the demo recipe's for the tiny model built here, 0 for --model
    sft_learning_rate: float | None = None  # default: 3e-3 for the tiny model built here, 2e-5 for --model
    n: int = 256  # held-out prompts per seed (win rate, KL), and at most this many held-out pairs
    curve_points: int = 4
    curve_prompts: int = 64
    metrics: Sequence[str] | None = None  # default: every metric the mode has
    loss_kwargs: dict[str, dict[str, Any]] | None = None
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATE, or a loss's TASK_BUDGETS entry in task runs
    online_learning_rate: float = 1e-3  # online methods: PPO with the oracle reached 0.85 at 1e-3, 0.62 at 3e-4
    online_kwargs: dict[str, dict[str, Any]] | None = None  # config fields by online row: {"ppo:bt": {"kl_coef": 0.2}}
    online_max_new_tokens: int | None = None  # online methods' completions while training (default max_new_tokens)
    rounds: int = 4  # iterative and rft rows: the steps split into this many rounds of fresh samples
    head_learning_rate: float = 1e-2  # reward models' freshly initialised heads
    reward_pooling: str = "mean"  # reward models' pooling: "mean" or "last" (see RewardModel)
    # Online rows against a reward model (ppo:bt, ...; task runs): train it on this many soft-labelled pairs of the
    # task's base answers for REWARD_EPOCHS at the demo's learning rate, instead of on the comparison's data with
    # its budget (None).
    reward_pairs: int | None = None
    # ppo:HEAD and grpo:HEAD rows (task runs): this much less reward for an answer the task's format check rejects.
    format_penalty: float = 0.0
    batch_size: int = 16  # lists or pairs per step; unpaired methods get as many completions
    max_new_tokens: int = 16
    threads: int | None = None
    progress: bool = True
    control: bool = True  # task runs add an `sft` row, if no method is sft alone: what imitation without margins gets

    @property
    def offline_learning_rate(self) -> float:
        """The reward models' and loops' learning rate, and the offline rows' without a budget of their own."""
        return DEFAULT_LEARNING_RATE if self.learning_rate is None else self.learning_rate


def check_config(config: CompareConfig) -> tuple[list[Method], list[str]]:
    """The methods and metrics to run; every mistake the settings can hold raises CompareError here."""
    try:
        return _check_config(config)
    except (ValueError, TypeError) as error:  # unknown names (ValueError), hyperparameters a loss lacks (TypeError)
        raise CompareError(str(error)) from error


def _check_config(config: CompareConfig) -> tuple[list[Method], list[str]]:
    from trl_plus.synthetic import TASKS

    if (config.task is None) == (config.dataset is None):
        raise ValueError("Give a synthetic task (--task, e.g. transitive) or your own --dataset, one of the two.")
    if config.task is not None and config.task not in TASKS:
        raise ValueError(f"Unknown task {config.task!r}; the synthetic tasks are {sorted(TASKS)}.")
    if config.dataset is not None and config.model is None:
        raise ValueError("--dataset needs --model: the reference policy every method starts from.")
    for name in ("steps", "seeds", "n", "batch_size", "curve_prompts", "rounds"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}.")
    if config.n < 2:
        raise ValueError(f"n must be at least 2 to give an interval, got {config.n}.")
    if config.curve_points < 0:
        raise ValueError(f"curve_points must be 0 (no curve) or more, got {config.curve_points}.")
    if config.curve_points and config.curve_prompts < 2:
        raise ValueError(f"curve_prompts must be at least 2 to score a curve point, got {config.curve_prompts}.")
    if config.sft_steps is not None and config.sft_steps < 0:
        raise ValueError(f"sft_steps must be 0 or more, got {config.sft_steps}.")
    if config.threads is not None and config.threads < 1:
        raise ValueError(f"threads must be at least 1, got {config.threads}.")
    for name in ("loss_kwargs", "online_kwargs"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())):
            example = '{"dpo": {"beta": 0.2}}' if name == "loss_kwargs" else '{"ppo": {"kl_coef": 0.2}}'
            raise ValueError(f"{name} must map names to hyperparameters, e.g. {example}; got {value!r}.")
    if config.reward_pooling not in ("mean", "last"):  # RewardModel's poolings
        raise ValueError(f"reward_pooling must be 'mean' or 'last', got {config.reward_pooling!r}.")
    if config.online_max_new_tokens is not None and config.online_max_new_tokens < 1:
        raise ValueError(f"online_max_new_tokens must be at least 1, got {config.online_max_new_tokens}.")
    oracle = config.task is not None
    if config.reward_pairs is not None and config.reward_pairs < 2:
        raise ValueError(f"reward_pairs must be at least 2, got {config.reward_pairs}.")
    if config.format_penalty < 0:
        raise ValueError(f"format_penalty must be 0 or more, got {config.format_penalty}.")
    if not oracle and (config.reward_pairs is not None or config.format_penalty):
        raise ValueError(
            "reward_pairs and format_penalty need a synthetic task (its base answers, its format check); with "
            "--dataset the reward model trains on that data."
        )
    metrics = list(config.metrics) if config.metrics else [m for m in METRICS if oracle or m not in ORACLE_METRICS]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"Unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    oracle_only = [m for m in metrics if m in ORACLE_METRICS]
    if oracle_only and not oracle:
        raise ValueError(
            f"{oracle_only} need a synthetic task's oracle, and --dataset has none. Leave them out of --metrics "
            "(held-out accuracy, KL and cost work on any data) or compare on a --task."
        )
    methods = parse_methods(config.losses, config.loss_kwargs) if config.losses else []
    if oracle and config.control and not any(method.losses == ("sft",) for method in methods):
        methods = [*parse_methods("sft"), *methods]
    if config.learning_rate is not None and config.learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {config.learning_rate}.")
    methods = [_with_budget(method, config) for method in methods]
    methods += parse_heads(config.heads)
    methods += parse_online(config.online, oracle=oracle, online_kwargs=config.online_kwargs)
    if config.online_learning_rate <= 0:
        raise ValueError(f"online_learning_rate must be positive, got {config.online_learning_rate}.")
    if not methods:
        raise ValueError("Nothing to compare: name losses (--losses), reward heads (--heads) or online methods.")
    return methods, metrics


def task_budget(method: Method, config: CompareConfig) -> Budget | None:
    """The loss's TASK_BUDGETS entry when `method` is that loss alone, as an offline row, in a task run on the tiny
    model built here (where the budgets were measured); else None."""
    if config.task is None or config.model is not None or method.online is not None or len(method.losses) != 1:
        return None  # the loops (iterative:orpo, ...) train at the offline learning rate, with no budget
    return TASK_BUDGETS.get(method.losses[0])


def _with_budget(method: Method, config: CompareConfig) -> Method:
    """`method` with its learning rate set, and its budget's loss settings under what the user gave."""
    from trl_plus.registry import get_loss

    budget = task_budget(method, config) or Budget()
    learning_rate = config.learning_rate or budget.learning_rate or config.offline_learning_rate
    if not budget.loss_kwargs:
        return replace(method, learning_rate=learning_rate)
    name = method.losses[0]
    kwargs = {name: {**budget.loss_kwargs, **(method.loss_kwargs or {}).get(name, {})}}
    get_loss(name).check_kwargs(kwargs[name])
    return replace(method, learning_rate=learning_rate, loss_kwargs=kwargs)
