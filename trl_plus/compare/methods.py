"""The rows of a comparison (`Method`): offline losses from `--losses`, reward models from `--heads`, online
methods from `--online`; unknown names, mixed input kinds and hyperparameters a trainer lacks raise here, before
any training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    """One row of the comparison: a loss, or several summed (`dpo+sft`), with its hyperparameters; or a reward
    model's head (`rm:gpm`)."""

    label: str
    losses: tuple[str, ...]
    kind: str  # what the trainer takes: paired, ranked or unpaired rows, "reward model", or "online" (prompts)
    loss_kwargs: dict[str, dict[str, Any]] | None = None
    learning_rate: float | None = None  # offline rows: set by compare's settings and the loss's budget (config.py)
    head: str | None = None  # a reward model's head; for an online method, the head of the reward it trains against
    online: str | None = None  # "ppo" or "grpo"
    online_kwargs: dict[str, Any] | None = None  # an online row's PPOConfig / GRPOConfig fields


def _names(value: str | Sequence[str]) -> list[str]:
    """`a, b,c` (or a list of names) as stripped names, empty ones dropped."""
    names = value.split(",") if isinstance(value, str) else value
    return [name.strip() for name in names if name.strip()]


def parse_methods(losses: str | Sequence[str], loss_kwargs: dict[str, dict[str, Any]] | None = None) -> list[Method]:
    """Methods from `dpo,simpo,dpo+sft`; unknown names, mixed input kinds and bad hyperparameters raise here."""
    from trl_plus.demo import loss_kinds
    from trl_plus.registry import get_loss

    labels = _names(losses)
    if not labels:
        raise ValueError("No losses to compare; name registered losses, e.g. --losses dpo,simpo.")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"Losses named twice: {repeated}; each method is one row.")
    given = {get_loss(name).name: kwargs for name, kwargs in (loss_kwargs or {}).items()}
    methods: list[Method] = []
    used: set[str] = set()
    for label in labels:
        specs = [get_loss(name.strip()) for name in label.split("+")]
        names = [spec.name for spec in specs]
        try:
            _, kinds = loss_kinds(names)
        except ValueError:
            raise ValueError(
                f"The method {label!r} mixes unpaired losses with paired or listwise ones; they need different "
                "trainers. Compare them as separate methods."
            ) from None
        kwargs = {spec.name: given[spec.name] for spec in specs if spec.name in given}
        for spec in specs:
            spec.check_kwargs(kwargs.get(spec.name, {}))
        used |= set(kwargs)
        kind = "unpaired" if kinds == {"unpaired"} else "ranked" if "ranked" in kinds else "paired"
        same = [m.label for m in methods if m.losses == tuple(names)]
        if same:
            raise ValueError(f"{label!r} and {same[0]!r} are the same method (aliases); name it once.")
        methods.append(Method(label, tuple(names), kind, kwargs or None))
    unused = sorted(set(given) - used)
    if unused:
        raise ValueError(f"loss_kwargs names {unused}, which no compared method uses.")
    return methods


def parse_heads(heads: str | Sequence[str]) -> list[Method]:
    """Reward-model rows from `bt,gpm`; unknown heads raise here, with suggestions."""
    from trl_plus.registry import get_reward_head

    specs = [get_reward_head(name) for name in _names(heads)]
    repeated = sorted({spec.name for spec in specs if [s.name for s in specs].count(spec.name) > 1})
    if repeated:
        raise ValueError(f"Reward heads named twice (or by an alias): {repeated}; each is one row.")
    return [Method(f"rm:{spec.name}", (), "reward model", head=spec.name) for spec in specs]


ONLINE = ("ppo", "grpo", "nash", "iterative", "rft", "bon")
LOOPS = ("iterative", "rft")  # rounds of sampling, judging (the oracle) and training, not one trainer
ITERATIVE_LOSSES = ("dpo", "sft")  # `iterative` alone: the demo's dpo+sft


def parse_online(
    online: str | Sequence[str], *, oracle: bool, online_kwargs: dict[str, dict[str, Any]] | None = None
) -> list[Method]:
    """Online rows from `ppo,grpo:bt`, with their config fields from `online_kwargs` (keyed by row); unknown trainers,
    heads or fields, kwargs for a row not compared, and an oracle reward without a task raise here."""
    methods: list[Method] = []
    for label in _names(online):
        base, _, judge = label.partition("@")
        trainer, _, head = base.partition(":")
        if judge and trainer not in LOOPS:
            raise ValueError(f"{label!r}: '@HEAD' (a reward model as the judge) is for iterative and rft rows.")
        if trainer not in ONLINE:
            raise ValueError(f"Unknown online method {label!r}: use one of {list(ONLINE)}, optionally ':HEAD'.")
        if trainer == "bon":
            method = _best_of_n_method(label, head, oracle=oracle)
        elif trainer in LOOPS:
            method = _loop_method(label, trainer, head, judge, oracle=oracle, online_kwargs=online_kwargs)
        else:
            method = _trainer_method(label, trainer, head, oracle=oracle, online_kwargs=online_kwargs)
        if any(m.label == method.label for m in methods):
            raise ValueError(f"Online method named twice: {method.label!r}; each is one row.")
        methods.append(method)
    unused = sorted(set(online_kwargs or {}) - {m.label for m in methods})
    if unused:
        raise ValueError(f"online_kwargs names {unused}, which no compared online row is (rows: ppo, ppo:bt...).")
    return methods


def _trainer_method(
    label: str, trainer: str, head: str, *, oracle: bool, online_kwargs: dict[str, dict[str, Any]] | None
) -> Method:
    """A `ppo` / `grpo` / `nash` row, against the oracle or (`:HEAD`) a reward model; its `online_kwargs` must be
    fields of the trainer's config."""
    import dataclasses

    from trl_plus.registry import get_reward_head
    from trl_plus.trainers._compat import GRPOConfig
    from trl_plus.trainers.nash import NashConfig
    from trl_plus.trainers.ppo import PPOConfig

    if head:
        head = get_reward_head(head).name
        if trainer == "ppo" and get_reward_head(head).target.output == "embedding":
            raise ValueError(
                f"{label!r}: the {head} head scores a completion against the others of its prompt, and PPO samples "
                f"one completion per prompt. Use grpo:{head}, or a scalar head with ppo."
            )
    elif not oracle:
        raise ValueError(f"{label!r} trains against the task's oracle; with --dataset name a head: {label}:bt.")
    name = f"{trainer}:{head}" if head else trainer
    kwargs = (online_kwargs or {}).get(name)
    config_class = {"ppo": PPOConfig, "grpo": GRPOConfig, "nash": NashConfig}[trainer]
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(kwargs or {}) - fields)
    if unknown:
        raise ValueError(f"online_kwargs[{name!r}] names {unknown}, which {config_class.__name__} does not have.")
    return Method(name, (), "online", head=head or None, online=trainer, online_kwargs=kwargs)


def _best_of_n_method(label: str, suffix: str, *, oracle: bool) -> Method:
    """A `bon:N` row: no training; the reference's best of N samples per prompt by the oracle, at inference."""
    if not oracle:
        raise ValueError(f"{label!r} picks the best sample with the task's oracle: it needs --task.")
    if not suffix.isdigit() or int(suffix) < 1:
        raise ValueError(f"{label!r}: write best-of-N as bon:N with N a whole number ≥ 1, e.g. bon:4.")
    return Method(f"bon:{int(suffix)}", (), "online", online="bon", online_kwargs={"n": int(suffix)})


def _loop_method(
    label: str,
    trainer: str,
    suffix: str,
    judge: str,
    *,
    oracle: bool,
    online_kwargs: dict[str, dict[str, Any]] | None,
) -> Method:
    """An `iterative[:LOSS+LOSS][@HEAD]` or `rft[@HEAD]` row: rounds judged by the task's oracle, or with `@HEAD` by a
    reward model with that head (trained as the `rm:HEAD` row is, once per seed); settings from `online_kwargs` (any
    keyword of `iterative_training` / `rejection_sampling_training` that compare does not set itself)."""
    import inspect

    from trl_plus.iterative import iterative_training, rejection_sampling_training
    from trl_plus.registry import get_loss, get_reward_head

    if not oracle:
        raise ValueError(f"{label!r} draws its prompts from the task and is scored by its oracle: it needs --task.")
    if trainer == "rft" and suffix:
        raise ValueError(f"{label!r}: rft takes no ':' part (it fine-tunes on the best samples with SFT).")
    losses = tuple(get_loss(name).name for name in suffix.split("+")) if suffix else ()
    if trainer == "iterative":
        losses = losses or ITERATIVE_LOSSES
        online = [name for name in losses if get_loss(name).input_kind == "online"]
        if online:
            raise ValueError(f"{label!r}: {online} are online losses; iterative training takes offline ones.")
    head = get_reward_head(judge).name if judge else None
    name = f"iterative:{'+'.join(losses)}" if trainer == "iterative" else "rft"
    name += f"@{head}" if head else ""
    kwargs = (online_kwargs or {}).get(name)
    function = iterative_training if trainer == "iterative" else rejection_sampling_training
    set_here = {
        "model",
        "out_dir",
        "task",
        "prompts",  # compare's rows draw the task's prompts
        "loss",
        "rounds",
        "steps_per_round",
        "batch_size",
        "seed",
        "on_round",
        "judge",
    }
    allowed = {p for p in inspect.signature(function).parameters if p not in set_here}
    unknown = sorted(set(kwargs or {}) - allowed)
    if unknown:
        raise ValueError(f"online_kwargs[{name!r}] names {unknown}; {function.__name__} takes {sorted(allowed)}.")
    return Method(name, losses, "online", head=head, online=trainer, online_kwargs=kwargs)


def check_kinds(methods: Sequence[Method], dataset_kind: str) -> None:
    """Every method must be able to train on the dataset: paired losses and reward models on pairs or ranked lists
    (every ordered pair), listwise ones on ranked lists, unpaired ones on anything (pairs and lists are split up)."""
    takes = {"paired": {"paired", "ranked"}, "ranked": {"ranked"}, "unpaired": {"paired", "ranked", "unpaired"}}
    takes["reward model"] = takes["paired"]
    takes["online"] = {"paired", "ranked", "unpaired"}  # every kind has prompts
    wrong = [m.label for m in methods if dataset_kind not in takes[m.kind]]
    if wrong:
        needs = {m.label: m.kind for m in methods if m.label in wrong}
        raise ValueError(
            f"The dataset holds {dataset_kind} rows, which {wrong} cannot train on (input kinds {needs}): listwise "
            "losses need ranked lists (`prompt`, `completions`), paired ones pairs (`prompt`, `chosen`, `rejected`) "
            "or ranked lists. Leave them out or use a dataset of that kind."
        )
