"""Iterative on-policy training: rounds saved and resumed, each loss kind fed the rows it takes, the reference
choice honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trl_plus.iterative import iterative_training, round_data
from trl_plus.synthetic import get_task


@pytest.fixture(scope="module")
def task():  # type: ignore[no-untyped-def]
    return get_task("packing", seed=0)


@pytest.mark.parametrize(
    ("loss", "columns"),
    [("dpo", {"chosen", "rejected"}), ("plackett_luce", {"completions"}), ("kto", {"completion", "label"})],
)
def test_each_loss_kind_gets_its_rows(loss: str, columns: set[str], tiny_checkpoints: dict[str, Path], task) -> None:  # type: ignore[no-untyped-def]
    data = round_data(tiny_checkpoints["llama"], task, loss=[loss], rows=12, k=3, seed=0)
    assert columns <= set(data.column_names)
    if loss == "dpo":  # every ordered pair of each ranked list of 3: up to 3 pairs per list, at least 12 pairs
        assert len(data) >= 12


def test_rounds_are_saved_and_a_second_call_resumes(tiny_checkpoints: dict[str, Path], task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    kwargs = dict(loss="dpo", rounds=2, steps_per_round=2, k=3, batch_size=4, on_round=lambda r: seen.append(r.index))
    first = iterative_training(tiny_checkpoints["llama"], tmp_path, task, **kwargs)  # type: ignore[arg-type]
    assert [r.index for r in first] == [1, 2] and seen == [1, 2]
    assert all((r.path / "config.json").is_file() and not r.resumed for r in first)
    assert json.loads((first[0].path / "round.json").read_text())["rows"] == first[0].rows

    stamp = (first[1].path / "model.safetensors").stat().st_mtime_ns
    again = iterative_training(tiny_checkpoints["llama"], tmp_path, task, **{**kwargs, "rounds": 3})  # type: ignore[arg-type]
    assert [r.resumed for r in again] == [True, True, False]  # only the new third round trained
    assert (first[1].path / "model.safetensors").stat().st_mtime_ns == stamp
    assert seen == [1, 2, 3]


def test_bad_settings_are_refused(tiny_checkpoints: dict[str, Path], task, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tiny_checkpoints["llama"]
    with pytest.raises(ValueError, match="reference must be one of"):
        iterative_training(model, tmp_path, task, loss="dpo", rounds=1, steps_per_round=1, reference="sft")
    with pytest.raises(ValueError, match="k must be at least 2"):
        iterative_training(model, tmp_path, task, loss="dpo", rounds=1, steps_per_round=1, k=1)
    with pytest.raises(ValueError, match="at least 1"):
        iterative_training(model, tmp_path, task, loss="dpo", rounds=0, steps_per_round=1)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("reference", "expected"), [("previous", [None, None]), ("initial", [None, "model"])])
def test_the_reference_is_the_round_start_or_the_initial_model(
    reference: str,
    expected: list[str | None],
    tiny_checkpoints: dict[str, Path],
    task,
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    import trl_plus.demo

    model = tiny_checkpoints["llama"]
    real, refs = trl_plus.demo.preference_trainer, []

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        ref = kwargs["ref_model"]  # None: a frozen copy of the policy the round starts from
        refs.append(None if ref is None else ref.config._name_or_path)
        return real(*args, **kwargs)

    monkeypatch.setattr(trl_plus.demo, "preference_trainer", recording)
    iterative_training(
        model, tmp_path, task, loss="dpo", rounds=2, steps_per_round=1, k=2, batch_size=2, reference=reference
    )
    assert refs == [None if e is None else str(model) for e in expected]


def test_the_learning_rate_falls_linearly_over_the_rounds(
    tiny_checkpoints: dict[str, Path],
    task,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    import trl_plus.demo

    real, rates = trl_plus.demo.preference_trainer, []

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        rates.append(kwargs["learning_rate"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trl_plus.demo, "preference_trainer", recording)
    iterative_training(
        tiny_checkpoints["llama"],
        tmp_path,
        task,
        loss="dpo",
        rounds=3,
        steps_per_round=1,
        k=2,
        batch_size=2,
        learning_rate=1e-3,
        final_learning_rate=1e-4,
    )
    assert rates == pytest.approx([1e-3, 5.5e-4, 1e-4])


def test_a_judge_ranks_the_samples_instead_of_the_oracle(tiny_checkpoints: dict[str, Path], task) -> None:  # type: ignore[no-untyped-def]
    """Any `prefer(prompts, a, b)` callable ranks: here one that prefers shorter answers, deterministically."""
    calls = []

    def shorter(prompts, a, b):  # type: ignore[no-untyped-def]
        calls.append(len(prompts))
        return [1.0 if len(x) < len(y) else 0.0 if len(x) > len(y) else 0.5 for x, y in zip(a, b, strict=True)]

    ranked = round_data(tiny_checkpoints["llama"], task, loss=["plackett_luce"], rows=6, k=3, seed=0, judge=shorter)
    assert len(calls) == 1  # every pair of every prompt in one batched call
    for answers in ranked["completions"]:
        assert [len(x) for x in answers] == sorted(len(x) for x in answers)
    pairs = round_data(tiny_checkpoints["llama"], task, loss=["dpo"], rows=6, k=2, seed=0, judge=shorter)
    assert all(len(c) <= len(r) for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True))
    # Drawn rankings: a certain judge's (probabilities 0 and 1) come out sorted; a coin-flip judge's in any order.
    drawn = round_data(
        tiny_checkpoints["llama"], task, loss=["dpo"], rows=6, k=2, seed=0, judge=shorter, draw_rankings=True
    )
    certain = [(c, r) for c, r in zip(drawn["chosen"], drawn["rejected"], strict=True) if len(c) != len(r)]
    assert certain and all(len(c) < len(r) for c, r in certain)

    def coin(prompts, a, b):  # type: ignore[no-untyped-def]
        return [0.5] * len(prompts)

    flips = round_data(tiny_checkpoints["llama"], task, loss=["dpo"], rows=64, k=2, seed=0, judge=coin)
    drawn = round_data(
        tiny_checkpoints["llama"], task, loss=["dpo"], rows=64, k=2, seed=0, judge=coin, draw_rankings=True
    )
    assert drawn["prompt"] == flips["prompt"]
    swapped = sum(a != b for a, b in zip(flips["chosen"], drawn["chosen"], strict=True))
    assert 0 < swapped < len(flips)  # sorted ties keep the sampling order; draws swap about half of them


def test_soft_labels_are_the_oracles_probability_of_the_drawn_label(tiny_checkpoints: dict[str, Path], task) -> None:  # type: ignore[no-untyped-def]
    from trl_plus.synthetic import policy_preference_dataset

    plain = policy_preference_dataset(tiny_checkpoints["llama"], task, 12, seed=0)
    soft = policy_preference_dataset(tiny_checkpoints["llama"], task, 12, seed=0, oracle_column=True)
    assert soft.remove_columns("chosen_win_prob").to_list() == plain.to_list()  # the same pairs and labels
    for row in soft:
        assert row["chosen_win_prob"] == pytest.approx(task.prefer(row["prompt"], row["chosen"], row["rejected"]))
    with pytest.raises(ValueError, match="oracle_column is for pairs"):
        policy_preference_dataset(tiny_checkpoints["llama"], task, 4, k=3, oracle_column=True)


def test_a_reward_model_judges_and_bad_judges_are_refused(tiny_checkpoints: dict[str, Path], task) -> None:  # type: ignore[no-untyped-def]
    from trl_plus.reward_model import RewardModel

    model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt").eval()
    ranked = round_data(
        tiny_checkpoints["llama"], task, loss=["plackett_luce"], rows=4, k=3, seed=0, judge=model.prefer
    )
    for prompt, answers in zip(ranked["prompt"], ranked["completions"], strict=True):
        scores = model.score([prompt] * len(answers), answers).tolist()
        assert scores == sorted(scores, reverse=True)  # a scalar reward's win-probability sums follow its order
    with pytest.raises(ValueError, match="must be a probability"):
        round_data(
            tiny_checkpoints["llama"], task, loss=["dpo"], rows=4, k=2, seed=0, judge=lambda p, a, b: [2.0] * len(p)
        )


def test_rejection_sampling_keeps_the_judges_top_k_and_trains_in_rounds(
    tiny_checkpoints: dict[str, Path],
    task,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from trl_plus.iterative import rejection_sampling_data, rejection_sampling_training

    def shorter(p, a, b):  # type: ignore[no-untyped-def]
        return [1.0 if len(x) < len(y) else 0.0 if len(x) > len(y) else 0.5 for x, y in zip(a, b, strict=True)]

    model = tiny_checkpoints["llama"]
    one = rejection_sampling_data(model, task, 5, n=4, top_k=1, judge=shorter)
    two = rejection_sampling_data(model, task, 5, n=4, top_k=2, judge=shorter)
    assert one.column_names == ["prompt", "completion"] and len(one) == 5
    for prompt, completion in zip(one["prompt"], one["completion"], strict=True):
        kept = [c for p, c in zip(two["prompt"], two["completion"], strict=True) if p == prompt]
        assert completion in kept and len(completion) == min(map(len, kept))  # the best of the top two
    with pytest.raises(ValueError, match="top_k"):
        rejection_sampling_data(model, task, 5, n=2, top_k=3)

    rounds = rejection_sampling_training(model, tmp_path, task, rounds=2, steps_per_round=2, batch_size=2, n=2)
    assert [r.index for r in rounds] == [1, 2] and (rounds[-1].path / "model.safetensors").is_file()
    again = rejection_sampling_training(model, tmp_path, task, rounds=2, steps_per_round=2, batch_size=2, n=2)
    assert all(r.resumed for r in again)


def test_your_own_prompts_are_drawn_as_a_shuffled_cycle() -> None:
    from trl_plus.synthetic.evaluate import draw_prompts

    pool = [f"prompt {i}" for i in range(5)]
    first = draw_prompts(None, pool, 12, seed=3)
    assert sorted(first[:5]) == pool and sorted(first[5:10]) == pool  # every prompt once before any comes twice
    assert set(first[10:]) < set(pool) and len(set(first[10:])) == 2
    assert draw_prompts(None, pool, 12, seed=3) == first  # the seed fixes the draw
    assert draw_prompts(None, pool, 5, seed=4) != first[:5]
    task = get_task("packing", seed=0)  # with no list, the task's preference stream, as before
    assert draw_prompts(task, None, 4, seed=1) == task.prompts(4, seed=1, stream="preference")


def test_without_a_task_the_prompts_and_a_judge_are_required(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    from trl_plus.iterative import rejection_sampling_training

    model, one = tiny_checkpoints["llama"], {"rounds": 1, "steps_per_round": 1}
    with pytest.raises(ValueError, match="No prompts: give a synthetic task, or `prompts`"):
        iterative_training(model, tmp_path, loss="dpo", judge=len, **one)
    with pytest.raises(ValueError, match="No judge: without a synthetic task"):
        iterative_training(model, tmp_path, prompts=["a:"], loss="dpo", **one)
    with pytest.raises(ValueError, match="must be a non-empty list of prompts"):
        rejection_sampling_training(model, tmp_path, prompts="a:", judge=len, **one)
    with pytest.raises(ValueError, match=r"'nash_md'.*online"):
        iterative_training(model, tmp_path, prompts=["a:"], loss="nash_md", judge=len, **one)
    with pytest.raises(ValueError, match="Got 1 loss weights for 2 losses"):
        iterative_training(model, tmp_path, prompts=["a:"], loss=["dpo", "sft"], loss_weights=[1.0], judge=len, **one)
    assert not any(tmp_path.iterdir())


def test_chat_prompts_of_your_own_get_answers_as_assistant_turns(tiny_checkpoints: dict[str, Path]) -> None:
    """Prompts from a list, chat messages here, ranked by a RewardModel judge that takes the chat format itself."""
    from trl_plus.iterative import rejection_sampling_data
    from trl_plus.judges import as_preference
    from trl_plus.reward_model import RewardModel

    pool = [[{"role": "user", "content": p}] for p in get_task("packing").prompts(4, seed=0)]
    reward_model = RewardModel.from_backbone(tiny_checkpoints["llama"], head="bt").eval()
    judge = as_preference(reward_model)
    ranked = round_data(
        tiny_checkpoints["llama"], prompts=pool, judge=judge, loss=["plackett_luce"], rows=4, k=3, seed=0
    )
    assert len(ranked) > 0 and all(row["prompt"] in pool for row in ranked)
    for prompt, answers in zip(ranked["prompt"], ranked["completions"], strict=True):
        assert all(answer[0]["role"] == "assistant" for answer in answers)
        scores = reward_model.score([prompt] * len(answers), answers).tolist()
        assert scores == sorted(scores, reverse=True)
    best = rejection_sampling_data(tiny_checkpoints["llama"], None, 3, prompts=pool, judge=judge, n=2)
    assert len(best) == 3 and all(row["completion"][0]["role"] == "assistant" for row in best)


def test_both_loops_sample_in_batches_of_the_size_given(
    tiny_checkpoints: dict[str, Path],
    task,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import trl_plus.synthetic.evaluate as evaluate
    from trl_plus.iterative import (
        IterativeConfig,
        RejectionSamplingConfig,
        rejection_sampling_data,
        rejection_sampling_training,
    )

    real = evaluate.sampled_batches
    sizes: list[int] = []

    def spy(model, tokenizer, texts, **kwargs):  # type: ignore[no-untyped-def]
        for batch, output in real(model, tokenizer, texts, **kwargs):
            sizes.append(len(batch["input_ids"]))
            yield batch, output

    monkeypatch.setattr(evaluate, "sampled_batches", spy)
    model = tiny_checkpoints["llama"]
    rejection_sampling_data(model, task, 5, n=2, sampling_batch_size=2)
    assert sizes == [2, 2, 1] * 2  # 5 prompts in batches of 2, once per sample
    sizes.clear()
    rejection_sampling_data(model, task, 5, n=2)
    assert sizes == [5, 5]  # the default, 64 prompts a call
    sizes.clear()
    round_data(model, task, loss=["dpo"], rows=3, k=2, seed=0, sampling_batch_size=2)
    assert sizes == [2, 1] * 2

    # The loops hand it on, and so do the `trl-plus train --trainer rft|iterative` settings.
    loop = dict(rounds=1, steps_per_round=1, batch_size=3, sampling_batch_size=2)
    sizes.clear()
    rejection_sampling_training(model, tmp_path / "rft", task, n=2, **loop)  # type: ignore[arg-type]
    assert sizes == [2, 1] * 2  # 3 prompts for one step of 3 rows
    sizes.clear()
    iterative_training(model, tmp_path / "iterative", task, loss="dpo", k=2, **loop)  # type: ignore[arg-type]
    assert sizes == [2, 1] * 2  # 3 pairs of 2 samples
    for config in (RejectionSamplingConfig(sampling_batch_size=7), IterativeConfig(sampling_batch_size=7)):
        assert config.loop_kwargs()["sampling_batch_size"] == 7
