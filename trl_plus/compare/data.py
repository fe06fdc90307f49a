"""The one training dataset every method and seed shares (`Data`): the user's, split and checked, or on-policy
ranked lists of the reference judged by a task's oracle; the held-out pairs and prompts; and each method's view
of the dataset."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from trl_plus.compare.config import CompareConfig, CompareError
from trl_plus.compare.methods import Method, check_kinds


@dataclass
class Data:
    """The one training dataset, its kind, and what the held-out metrics are computed on."""

    train: Any
    kind: str
    prompts: list[Any]  # held-out prompts, for the KL (task mode: drawn per seed instead)
    pairs: tuple[list[Any], list[Any], list[Any]]  # held-out (prompts, chosen, rejected)


def load_dataset_arg(path: str) -> Any:
    """A dataset saved with `save_to_disk`, a json/jsonl/csv/parquet file, or a hub id."""
    import datasets

    local = Path(path)
    if local.is_dir() and any((local / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        return datasets.load_from_disk(str(local))
    suffix = local.suffix.lstrip(".")
    if local.is_file() and suffix in ("json", "jsonl", "csv", "parquet"):
        builder = "json" if suffix == "jsonl" else suffix
        return datasets.load_dataset(builder, data_files=str(local))
    return datasets.load_dataset(path)


def split_dataset(dataset: Any, n: int) -> tuple[Any, Any]:
    """(train, held-out): the `train` and `test` splits where there are both, else `n` rows (at most a fifth)
    set aside with a fixed seed."""
    if isinstance(dataset, dict):
        if "test" in dataset and "train" in dataset:
            return dataset["train"], dataset["test"]
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    held = min(n, len(dataset) // 5)
    if held < 2:
        raise ValueError(f"The dataset has {len(dataset)} rows; compare needs at least 10 to hold some out.")
    parts = dataset.train_test_split(test_size=held, seed=0, shuffle=True)
    return parts["train"], parts["test"]


def dataset_kind(dataset: Any) -> str:
    from trl_plus.trainers.preference import dataset_kind as preference_kind

    first = dataset[0]
    if {"completion", "label"} <= set(first) and "chosen" not in first:
        return "unpaired"
    return preference_kind(first)


def pairs_of(dataset: Any, kind: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(prompts, chosen, rejected) of a dataset: its pairs; every ordered pair of its ranked lists; every
    desirable × undesirable completion of the same prompt in prompt/completion/label rows."""
    prompts, chosen, rejected = [], [], []
    if kind == "paired":
        return list(dataset["prompt"]), list(dataset["chosen"]), list(dataset["rejected"])
    if kind == "ranked":
        for row in dataset:
            items = row["completions"]
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    prompts.append(row["prompt"])
                    chosen.append(items[i])
                    rejected.append(items[j])
        return prompts, chosen, rejected
    by_prompt: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in dataset:
        good, bad = by_prompt.setdefault(json.dumps(row["prompt"], sort_keys=True), ([], []))
        (good if row["label"] else bad).append(row)
    for good, bad in by_prompt.values():
        for up in good:
            for down in bad:
                prompts.append(up["prompt"])
                chosen.append(up["completion"])
                rejected.append(down["completion"])
    return prompts, chosen, rejected


def unpaired_from_ranked(dataset: Any, *, seed: int) -> Any:
    """Prompt/completion/label rows from ranked lists: the top half of each list desirable, the bottom half
    undesirable (the middle one of an odd list left out); shuffled so that batches mix both."""
    from datasets import Dataset

    rows = []
    for row in dataset:
        items, half = row["completions"], len(row["completions"]) // 2
        rows += [{"prompt": row["prompt"], "completion": c, "label": True} for c in items[:half]]
        rows += [{"prompt": row["prompt"], "completion": c, "label": False} for c in items[len(items) - half :]]
    return Dataset.from_list(rows).shuffle(seed=seed)


def method_view(method: Method, data: Data, *, seed: int, batch_size: int) -> tuple[Any, int]:
    """The dataset as `method`'s trainer takes it, and the batch size (in its rows) that covers the same
    prompts per step as `batch_size` rows of the shared dataset."""
    from datasets import Dataset

    from trl_plus.registry import get_reward_head
    from trl_plus.trainers import unpaired_view

    if method.kind == "online":
        return data.train, batch_size
    if (
        method.head is not None
        and data.kind == "ranked"
        and not hasattr(get_reward_head(method.head).target, "ranked_loss")
    ):
        prompts, chosen, rejected = pairs_of(data.train, "ranked")
        pairs = Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected}).shuffle(seed=seed)
        return pairs, max(1, round(batch_size * len(pairs) / len(data.train)))
    if method.kind != "unpaired" or data.kind == "unpaired":
        return data.train, batch_size
    view = (
        unpaired_view(data.train, seed=seed) if data.kind == "paired" else unpaired_from_ranked(data.train, seed=seed)
    )
    return view, max(1, round(batch_size * len(view) / len(data.train)))


def _sample(rows: tuple[list[Any], list[Any], list[Any]], n: int) -> tuple[list[Any], list[Any], list[Any]]:
    """At most `n` of the pairs, drawn with a fixed seed."""
    import random

    if len(rows[0]) <= n:
        return rows
    keep = sorted(random.Random(0).sample(range(len(rows[0])), n))
    return tuple([part[i] for i in keep] for part in rows)  # type: ignore[return-value]


def load_own_data(config: CompareConfig, methods: Sequence[Method]) -> Data:
    """The user's dataset, split and checked; CompareError for anything compare cannot train or score on."""
    from trl_plus.trainers.preference import check_preference_dataset
    from trl_plus.trainers.unpaired import check_unpaired_dataset

    assert config.dataset is not None
    try:
        train, held = split_dataset(load_dataset_arg(config.dataset), config.n)
        kind, held_kind = dataset_kind(train), dataset_kind(held)
        if held_kind != kind:
            raise ValueError(f"The train split holds {kind} rows but the test split {held_kind} rows.")
        check_kinds(methods, kind)
        for split, name in ((train, "train"), (held, "test")):
            if kind == "unpaired":
                check_unpaired_dataset(split, name)
            else:
                check_preference_dataset(split, name)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise CompareError(f"{config.dataset}: {error}") from error
    scored = _sample(pairs_of(held, kind), config.n)
    if not scored[0]:
        raise CompareError(f"{config.dataset}: the held-out split has no pairs to score (no prompt with both labels).")
    prompts = list(dict.fromkeys(json.dumps(p) for p in held["prompt"]))[: config.n]
    return Data(train, kind, [json.loads(p) for p in prompts], scored)


def sample_task_data(config: CompareConfig, policy: tuple[Any, Any], task: Any, log: TextIO) -> Data:
    """On-policy ranked lists of the reference for training, and held-out pairs of its samples."""
    from trl_plus.synthetic import policy_preference_dataset

    print(f"Sampling the preference data: {config.batch_size * config.steps} prompts × 4 samples", file=log)
    # One dataset for every method and seed: seed 0 draws its prompts, samples and oracle rankings.
    train = policy_preference_dataset(policy, task, config.batch_size * config.steps, k=4, seed=0)
    if len(train) < config.batch_size:
        raise CompareError(
            f"The reference gave {len(train)} prompts with two distinct samples, fewer than one batch: it repeats "
            "itself. Fine-tune it on the task first (--sft-steps)."
        )
    held = policy_preference_dataset(policy, task, config.n, k=2, seed=10_000)
    pairs: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    for row in held:
        p_chosen = task.prefer(row["prompt"], row["chosen"], row["rejected"])
        if p_chosen != 0.5:  # oriented by the oracle's preference, not a drawn label; ties carry no order
            better, worse = (row["chosen"], row["rejected"]) if p_chosen > 0.5 else (row["rejected"], row["chosen"])
            pairs[0].append(row["prompt"])
            pairs[1].append(better)
            pairs[2].append(worse)
    print(f"Held-out: {len(pairs[0])} of {len(held)} pairs with a strict oracle preference", file=log)
    if not pairs[0]:
        print("No held-out pair has a strict oracle preference: the accuracy column stays empty.", file=log)
    return Data(train, "ranked", [], pairs)
