"""`trl-plus compare`: small real runs (a tiny SFT reference, a few steps), its outputs, failures and errors."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from trl_plus.cli import main
from trl_plus.compare import (
    PLOT_HINT,
    CompareConfig,
    Comparison,
    Method,
    MethodResult,
    Run,
    compare,
    pairs_of,
    parse_methods,
    pooled,
    table_cells,
    unpaired_from_ranked,
    write_plots,
    write_tables,
)
from trl_plus.registry import LOSSES, register_loss
from trl_plus.types import LossOutput, PairedLogps

# control=False: the tests name their rows; test_task_runs_add_the_sft_control_row covers the control row.
SMALL = dict(steps=3, seeds=2, n=16, curve_points=1, curve_prompts=8, progress=False, control=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama fine-tuned on the transitive task (100 steps, enough for well-formed answers): the reference
    every method starts from."""
    from trl_plus.demo import sft
    from trl_plus.testing import make_tiny

    root = tmp_path_factory.mktemp("compare")
    return sft(make_tiny("llama", root / "base"), root / "sft", "transitive", steps=100, seed=0, print_logs=False)


def _csv_rows(path: Path) -> list[dict[str, Any]]:
    """compare.csv with its numbers parsed back (empty cells as None)."""
    rows = []
    with path.open() as file:
        for row in csv.DictReader(file):
            parsed: dict[str, Any] = dict(row)
            for key, value in row.items():
                if key not in ("method", "input", "status"):
                    parsed[key] = None if value == "" else float(value)
            parsed["seeds"] = int(parsed["seeds"])
            rows.append(parsed)
    return rows


def _table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]  # past the header


def test_a_small_comparison_writes_the_table_the_csv_and_the_plots(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = CompareConfig(
        losses="dpo,simpo", heads="bt", task="transitive", model=str(reference), out_dir=tmp_path, **SMALL
    )
    comparison = compare(config)
    out = capsys.readouterr().out
    rows = _csv_rows(tmp_path / "compare.csv")
    assert [row["method"] for row in rows] == ["dpo", "simpo", "rm:bt"]
    *policies, reward_model = rows
    # A reward model: its head's held-out accuracy and cost; no samples, so no win rate and no KL.
    assert reward_model["status"] == "ok" and reward_model["input"] == "reward model"
    assert 0.0 <= reward_model["accuracy"] <= 1.0 and math.isfinite(reward_model["margin"])
    assert reward_model["win_rate"] is None and reward_model["kl"] is None and reward_model["step_time_s"] > 0
    for row in policies:
        assert row["status"] == "ok" and row["seeds"] == 2
        assert 0.0 <= row["win_rate_ci_low"] <= row["win_rate"] <= row["win_rate_ci_high"] <= 1.0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert math.isfinite(row["margin"]) and math.isfinite(row["kl"]) and row["kl_ci_half"] >= 0
        assert row["step_time_s"] > 0
        assert row["peak_mem_mib"] > 0  # at least the trainer's model and optimizer state
    # The table on stdout and in compare.md says what the CSV says, cell for cell.
    table = _table_rows(out)
    assert table == [table_cells(row, oracle=True) for row in rows]
    assert _table_rows((tmp_path / "compare.md").read_text()) == table
    assert "Compared 3 method(s) on the transitive task, 2 seed(s) × 3 steps" in out
    # Per-seed runs, and the curve at steps 0 and 3 for each method and seed.
    with (tmp_path / "runs.csv").open() as file:
        runs = [(r["method"], r["seed"]) for r in csv.DictReader(file)]
    assert runs == [(m, s) for m in ("dpo", "simpo", "rm:bt") for s in "01"]
    with (tmp_path / "curves.csv").open() as file:
        points = [(r["method"], r["seed"], r["step"]) for r in csv.DictReader(file)]
    assert sorted(points) == sorted((m, s, step) for m in ("dpo", "simpo") for s in "01" for step in ("0", "3"))
    pytest.importorskip("matplotlib")
    for name in ("win_rate_vs_kl.png", "win_rate_curve.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
        assert tmp_path / name in comparison.files


def test_online_methods_train_on_the_prompts_against_the_oracle_or_a_reward_model(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ppo` (oracle reward), `ppo:bt` / `grpo:bt` (a bt reward model trained first, once per seed, shared) and
    `nash:gpm` (a gpm model as the preference)."""
    config = CompareConfig(
        losses=(),
        online="ppo,ppo:bt,grpo:bt,nash:gpm",
        task="transitive",
        model=str(reference),
        out_dir=tmp_path,
        **SMALL,
    )
    comparison = compare(config)
    rows = _csv_rows(tmp_path / "compare.csv")
    assert [row["method"] for row in rows] == ["ppo", "ppo:bt", "grpo:bt", "nash:gpm"]
    for row in rows:
        assert row["status"] == "ok" and row["input"] == "online" and row["seeds"] == 2, row
        assert 0.0 <= row["win_rate_ci_low"] <= row["win_rate"] <= row["win_rate_ci_high"] <= 1.0
        assert math.isfinite(row["kl"]) and row["step_time_s"] > 0
        assert 0.0 < row["exploitability"] <= 1.0
    with (tmp_path / "curves.csv").open() as file:
        points = {(r["method"], r["seed"], r["step"]) for r in csv.DictReader(file)}
    assert ("ppo:bt", "1", "3") in points and ("ppo", "0", "0") in points
    assert "Compared 4 method(s)" in capsys.readouterr().out
    assert all(result.runs for result in comparison.results)


def test_iterative_and_rft_rows_run_their_rounds(reference: Path, tmp_path: Path) -> None:
    """4 steps in 2 rounds: each row trains and is scored (rft ranking by a bt reward model trained first); with 2
    curve points, its curve is at 0, 2 and 4."""
    kwargs = {"iterative:simpo+sft": {"final_learning_rate": 1e-5}}
    config = CompareConfig(
        losses=(),
        online="iterative:simpo+sft,rft@bt",
        online_kwargs=kwargs,
        task="transitive",
        model=str(reference),
        out_dir=tmp_path,
        rounds=2,
        **{**SMALL, "steps": 4, "seeds": 1, "curve_points": 2},
    )
    compare(config)
    rows = _csv_rows(tmp_path / "compare.csv")
    assert [row["method"] for row in rows] == ["iterative:simpo+sft", "rft@bt"]  # rft@bt: a bt model judges
    for row in rows:
        assert row["status"] == "ok" and row["input"] == "online", row
        assert 0.0 <= row["win_rate"] <= 1.0 and math.isfinite(row["kl"]) and row["step_time_s"] > 0
    with (tmp_path / "curves.csv").open() as file:
        points = sorted((r["method"], int(r["step"])) for r in csv.DictReader(file))
    assert points == sorted((m, step) for m in ("iterative:simpo+sft", "rft@bt") for step in (0, 2, 4))


def test_best_of_n_rows_need_no_training(reference: Path, tmp_path: Path) -> None:
    """bon:1 is one sample against another of the same model; bon:4 has the analytic KL bound log 4 − 3/4."""
    config = CompareConfig(
        losses=(), online="bon:1,bon:4", task="transitive", model=str(reference), out_dir=tmp_path, **SMALL
    )
    compare(config)
    one, four = _csv_rows(tmp_path / "compare.csv")
    assert (one["method"], four["method"]) == ("bon:1", "bon:4") and one["status"] == four["status"] == "ok"
    assert one["kl"] == 0.0 and four["kl"] == pytest.approx(math.log(4) - 0.75)
    assert four["win_rate"] > 0.5 and one["accuracy"] is None and one["step_time_s"] is None


def test_online_rows_take_their_own_config_fields_and_completion_length(reference: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    from trl_plus.compare import parse_online
    from trl_plus.compare.running import _online_trainer
    from trl_plus.synthetic import get_task

    task = get_task("transitive")
    kwargs = {"ppo": {"kl_coef": 0.3, "lam": 0.9}, "grpo": {"beta": 0.2}, "nash": {"opponent": "policy"}}
    config = CompareConfig(losses=(), online="ppo,grpo,nash", online_kwargs=kwargs, online_max_new_tokens=5, **SMALL)
    prompts = Dataset.from_dict({"prompt": task.prompts(8)})
    ppo, grpo, nash = (
        _online_trainer(method, tmp_path / method.label, prompts, 4, config, reference, 0, task)
        for method in parse_online(config.online, oracle=True, online_kwargs=kwargs)
    )
    assert (ppo.args.kl_coef, ppo.args.lam, ppo.args.num_ppo_epochs, ppo.args.max_completion_length) == (0.3, 0.9, 4, 5)
    assert (grpo.args.beta, grpo.args.num_generations, grpo.args.max_completion_length) == (0.2, 4, 5)
    assert (nash.args.opponent, nash.args.beta, nash.args.loss, nash.args.max_completion_length) == (
        "policy",
        0.05,
        "nash_md",
        5,
    )


def test_reward_pairs_train_the_online_rows_reward_model_as_the_demo_did_and_the_format_rule_joins_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--reward-pairs N: N soft-labelled base pairs for REWARD_EPOCHS at the demo's learning rate, once per head
    and seed; --format-penalty: ppo:HEAD and grpo:HEAD rows get the task's format check as a second reward."""
    from trl_plus import reward_bench
    from trl_plus.compare import parse_online
    from trl_plus.compare.config import REWARD_EPOCHS
    from trl_plus.compare.running import _online_reward, _with_format_rule
    from trl_plus.compare.scoring import Evaluator
    from trl_plus.demo import RECIPES
    from trl_plus.rewards import RuleReward
    from trl_plus.synthetic import get_task

    calls: list[dict[str, Any]] = []

    def fake_train(model: Any, pairs: Any, head: str, **kwargs: Any) -> tuple[str, float]:
        calls.append({"pairs": pairs, "head": head, **kwargs})
        return f"rm-{head}-{kwargs['seed']}", 0.0

    monkeypatch.setattr(reward_bench, "train_reward_model", fake_train)
    config = CompareConfig(losses=(), online="ppo,ppo:bt", task="packing", reward_pairs=64, format_penalty=10.0)
    evaluator = Evaluator(config, None, None, None, get_task("packing"))  # type: ignore[arg-type]
    oracle_row, bt_row = parse_online(config.online, oracle=True)
    assert _online_reward(bt_row, 1, config, tmp_path, None, evaluator) == "rm-bt-1"  # type: ignore[arg-type]
    assert _online_reward(bt_row, 1, config, tmp_path, None, evaluator) == "rm-bt-1"  # type: ignore[arg-type]
    (call,) = calls  # trained once for the seed, then shared
    recipe = RECIPES["packing"]
    assert len(call["pairs"]) == 64 and "chosen_win_prob" in call["pairs"].column_names
    assert (call["epochs"], call["learning_rate"]) == (REWARD_EPOCHS, recipe.reward_learning_rate)
    assert call["seed"] == 1 and call["head"] == "bt"

    rm, rule = _with_format_rule(bt_row, "rm", config, evaluator)
    assert rm == "rm" and isinstance(rule, RuleReward)
    prompt = get_task("packing").prompts(1, stream="eval-train")[0]
    assert rule([prompt, prompt], [get_task("packing").best_response(prompt), "kite kite"]) == [0.0, -10.0]
    assert _with_format_rule(oracle_row, "oracle", config, evaluator) == "oracle"  # the oracle needs no rule
    no_rule = CompareConfig(losses=(), online="ppo:bt", task="packing")
    assert _with_format_rule(bt_row, "rm", no_rule, evaluator) == "rm"


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_reward_rows_pool_as_asked(pooling: str, reference: Path, tmp_path: Path) -> None:
    from trl_plus.compare.running import _reward_trainer
    from trl_plus.synthetic import get_task

    config = CompareConfig(losses=(), heads="bt", reward_pooling=pooling, **SMALL)
    pairs = get_task("transitive").preference_dataset(8)
    trainer = _reward_trainer("bt", reference, tmp_path, pairs, config, seed=0, batch_size=4)
    assert trainer.reward_model.pooling == pooling
    with pytest.raises(ValueError, match="reward_pooling must be 'mean' or 'last', got 'max'"):
        compare(
            CompareConfig(
                losses=(), heads="bt", reward_pooling="max", task="transitive", out_dir=tmp_path / "x", **SMALL
            )
        )


@pytest.fixture
def broken_loss() -> Any:
    @register_loss("compare_broken_plugin", requires_reference=False, paper="a plugin that raises")
    def compare_broken_plugin(lp: PairedLogps) -> LossOutput:
        raise RuntimeError("deliberately broken")

    yield "compare_broken_plugin"
    LOSSES.remove("compare_broken_plugin")


def test_a_broken_plugin_loss_is_a_failed_row_and_the_others_complete(
    reference: Path, broken_loss: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", "--task", "transitive", "--model", str(reference), "--losses", f"{broken_loss},dpo"]
    argv += ["--steps", "2", "--seeds", "2", "--n", "8", "--curve-points", "0", "--out", str(tmp_path)]
    assert main([*argv, "--no-progress"]) == 1  # a failed method: exit status 1, after every row is done
    rows = {row["method"]: row for row in _csv_rows(tmp_path / "compare.csv")}
    broken, dpo = rows[broken_loss], rows["dpo"]
    assert broken["status"] == "failed: RuntimeError: deliberately broken"
    assert broken["seeds"] == 0 and broken["win_rate"] is None and broken["kl"] is None
    assert dpo["status"] == "ok" and dpo["seeds"] == 2 and 0 <= dpo["win_rate"] <= 1
    out = capsys.readouterr().out
    assert f"| {broken_loss} | paired | 0 | – |" in out and "failed: compare_broken_plugin" in out
    assert "deliberately broken" in (tmp_path / "errors.log").read_text()  # with the traceback


def test_same_seeds_give_the_same_rows_whatever_runs_before(reference: Path, tmp_path: Path) -> None:
    """A method's scores and curve repeat exactly (same process, same thread count), alone or after another method
    that trains, samples and evaluates first: no state leaks from one run into the next."""
    scores = ("win_rate", "win_rate_ci_low", "accuracy", "margin", "kl", "kl_ci_half")
    rows, curves = [], []
    for run, losses in (("after", "dpo,kto"), ("alone", "kto")):
        config = CompareConfig(losses=losses, task="transitive", model=str(reference), out_dir=tmp_path / run, **SMALL)
        compare(config, out=sys.stderr)
        rows.append(
            {k: row[k] for row in _csv_rows(tmp_path / run / "compare.csv") if row["method"] == "kto" for k in scores}
        )
        with (tmp_path / run / "curves.csv").open() as file:
            curves.append([r for r in csv.DictReader(file) if r["method"] == "kto"])
    assert rows[0] == rows[1] and curves[0] == curves[1] and len(curves[0]) == 4


def test_step_times_leave_out_the_first_step_and_the_curve_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl_plus.compare import running

    clock = iter([0.0, 10.0, 11.0, 14.0, 16.0, 16.0, 21.0, 22.0])
    monkeypatch.setattr(running.time, "perf_counter", lambda: next(clock))

    class Bar:
        def update(self, n: int) -> None: ...

    class State:
        global_step = 0

    state = State()
    probe = running._Probe(Bar(), None, {0, 2}, lambda model: 0.5)
    probe.on_train_begin(None, state, None)  # clock: curve at step 0 from 0 to 10; the first step starts at 11
    for step in (1, 2, 3):
        state.global_step = step
        probe.on_step_end(None, state, None)
    # Steps end at 14, 16 (then the curve runs from 16 to 21: left out) and 22: step times 3, 2 and 1.
    assert probe.curve == [(0, 0.5), (2, 0.5)]
    assert probe.step_times() == [2.0, 1.0]  # the first step (3 s) pays one-off costs and is dropped


def test_each_method_sees_the_same_prompts_per_step() -> None:
    from datasets import Dataset

    from trl_plus.compare.data import Data, method_view

    lists = Dataset.from_list([{"prompt": f"p{i}", "completions": ["a", "b", "c", "d"]} for i in range(10)])
    data = Data(lists, "ranked", [], ([], [], []))
    dpo, kto, pl = parse_methods("dpo,kto,plackett_luce")
    assert method_view(dpo, data, seed=0, batch_size=4) == (lists, 4)
    assert method_view(pl, data, seed=0, batch_size=4) == (lists, 4)
    unpaired, batch = method_view(kto, data, seed=0, batch_size=4)
    assert len(unpaired) == 40 and batch == 16  # 4 rows per list: 2 up, 2 down
    bt = Method("rm:bt", (), "reward model", head="bt")
    pairs, batch = method_view(bt, data, seed=0, batch_size=4)
    assert len(pairs) == 60 and batch == 24  # 6 ordered pairs per list
    pl_head = Method("rm:pl", (), "reward model", head="pl")
    assert method_view(pl_head, data, seed=0, batch_size=4) == (lists, 4)  # a listwise head takes the lists


@pytest.mark.parametrize("conversational", [False, True])
def test_own_dataset_without_an_oracle(
    conversational: bool, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trl_plus.synthetic import get_task

    data = tmp_path / "pairs.jsonl"
    rows = get_task("transitive").preference_dataset(60, seed=3, conversational=conversational)
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = CompareConfig(losses="dpo,kto", dataset=str(data), model=str(reference), out_dir=tmp_path / "out", **SMALL)
    compare(config)
    out = capsys.readouterr().out
    assert "win rate" not in out.splitlines()[0]
    for row in _csv_rows(tmp_path / "out" / "compare.csv"):
        assert row["status"] == "ok" and row["win_rate"] is None
        assert 0.0 <= row["accuracy"] <= 1.0 and math.isfinite(row["kl"]) and row["step_time_s"] > 0
    assert "best held-out accuracy" in out
    if "matplotlib" in sys.modules:
        assert (tmp_path / "out" / "accuracy_vs_kl.png").exists() and (tmp_path / "out" / "accuracy_curve.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--losses", "dpp,simpo"], "Unknown loss 'dpp'. Did you mean 'dpo_pl' or 'dpo'?"),
        (["--losses", "kto+dpo"], "mixes unpaired losses with paired or listwise ones"),
        (["--losses", "dpo", "--loss-kwargs", '{"dpo": {"betta": 1}}'], "Did you mean 'beta'?"),
        (["--losses", "dpo", "--loss-kwargs", '{"simpo": {"beta": 1}}'], "which no compared method uses"),
        (["--losses", "dpo", "--metrics", "win_rate,speed"], "Unknown metric(s) ['speed']"),
        (["--losses", "dpo", "--dataset", "data.jsonl"], "--dataset needs --model"),
        (["--losses", "dpo", "--steps", "0"], "steps must be at least 1"),
        (["--losses", "dpo,sigmoid"], "'sigmoid' and 'dpo' are the same method"),
        (["--losses", "dpo", "--heads", "gmp"], "Unknown reward head 'gmp'. Did you mean 'gpm'?"),
        (["--losses", "dpo", "--curve-prompts", "1"], "curve_prompts must be at least 2"),
        (["--losses", "dpo", "--loss-kwargs", "[1]"], "loss_kwargs must map names to hyperparameters"),
        (
            ["--online", "dppo"],
            "Unknown online method 'dppo': use one of ['ppo', 'grpo', 'nash', 'iterative', 'rft', 'bon']",
        ),
        (["--online", "ppo:gpm"], "Use grpo:gpm, or a scalar head with ppo"),
        (["--online", "ppo:btt"], "Unknown reward head 'btt'"),
        (["--online", "ppo,ppo"], "Online method named twice: 'ppo'"),
        (["--online", "ppo", "--online-kwargs", "{"], "--online-kwargs is not JSON"),
        (["--online", "ppo", "--online-kwargs", '{"grpo": {"beta": 0}}'], "names ['grpo'], which no compared online"),
        (["--online", "ppo", "--online-kwargs", '{"ppo": {"kl_coeff": 0}}'], "which PPOConfig does not have"),
        (["--online", "ppo", "--online-max-new-tokens", "0"], "online_max_new_tokens must be at least 1"),
        (["--online", "ppo:bt", "--reward-pairs", "1"], "reward_pairs must be at least 2"),
        (["--online", "ppo:bt", "--format-penalty", "-1"], "format_penalty must be 0 or more"),
        (
            ["--dataset", "pairs.json", "--model", "m", "--online", "ppo:bt", "--format-penalty", "1"],
            "reward_pairs and format_penalty need a synthetic task",
        ),
        (["--online", "nash", "--online-kwargs", '{"nash": {"kl_coef": 0}}'], "which NashConfig does not have"),
        (["--online", "rft:bt"], "rft takes no ':' part"),
        (["--online", "bon:x"], "write best-of-N as bon:N"),
        (["--online", "ppo@bt"], "is for iterative and rft rows"),
        (["--online", "rft@btt"], "Unknown reward head 'btt'"),
        (["--online", "iterative:nash_md"], "are online losses"),
        (["--online", "iterative:dpoo"], "Unknown loss 'dpoo'"),
        (
            ["--online", "iterative", "--online-kwargs", '{"iterative:dpo+sft": {"top_k": 2}}'],
            "iterative_training takes",
        ),
    ],
)
def test_bad_settings_fail_before_any_work(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", *argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing built, trained or written


def test_an_oracle_metric_or_a_kind_mismatch_on_own_data_fails_before_training(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trl_plus.synthetic import get_task

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in get_task("transitive").preference_dataset(40)))
    common = ["compare", "--dataset", str(data), "--model", str(reference), "--out", str(tmp_path / "out")]
    assert main([*common, "--losses", "dpo", "--metrics", "win_rate,kl"]) == 2
    assert "['win_rate'] need a synthetic task's oracle, and --dataset has none" in capsys.readouterr().err
    assert main([*common, "--losses", "dpo,plackett_luce"]) == 2
    err = capsys.readouterr().err
    assert "The dataset holds paired rows, which ['plackett_luce'] cannot train on" in err
    assert not (tmp_path / "out").exists()  # stopped before writing anything


def test_methods_sum_losses_and_keep_their_own_hyperparameters() -> None:
    methods = parse_methods("dpo+sft, kto,plackett_luce", {"sigmoid": {"beta": 0.3}, "kto": {"beta": 0.2}})
    assert methods == [
        Method("dpo+sft", ("dpo", "sft"), "paired", {"dpo": {"beta": 0.3}}),
        Method("kto", ("kto",), "unpaired", {"kto": {"beta": 0.2}}),
        Method("plackett_luce", ("plackett_luce",), "ranked", None),
    ]
    with pytest.raises(ValueError, match="named twice"):
        parse_methods("dpo,dpo")


def test_pooled_interval() -> None:
    """One seed: ±1.96 se. Three seeds of means 0.5, 0.6, 0.7 (variance 0.01, so 0.01/3 for the mean; t(2) =
    4.303) with stderrs 0.01 (sampling: 1.96·√(3·0.01²)/3 = 0.0113): the spread wins. Two seeds that agree exactly
    keep their sampling error, 1.96·√(0.03² + 0.04²)/2 = 0.049."""
    assert pooled([0.6], [0.02]) == pytest.approx((0.6, 1.96 * 0.02))
    mean, half = pooled([0.5, 0.6, 0.7], [0.01] * 3)
    assert mean == pytest.approx(0.6) and half == pytest.approx(4.303 * math.sqrt(0.01 / 3))
    assert pooled([0.6, 0.6], [0.03, 0.04]) == pytest.approx((0.6, 0.049))


def test_ranked_lists_split_into_halves_and_pairs() -> None:
    from datasets import Dataset

    lists = Dataset.from_list(
        [{"prompt": "p", "completions": ["a", "b", "c"]}, {"prompt": "q", "completions": ["x", "y"]}]
    )
    rows = sorted((r["prompt"], r["completion"], r["label"]) for r in unpaired_from_ranked(lists, seed=0))
    assert rows == [("p", "a", True), ("p", "c", False), ("q", "x", True), ("q", "y", False)]
    assert pairs_of(lists, "ranked") == (["p", "p", "p", "q"], ["a", "a", "b", "x"], ["b", "c", "c", "y"])
    labelled = Dataset.from_list(
        [
            {"prompt": "p", "completion": "a", "label": True},
            {"prompt": "p", "completion": "b", "label": False},
            {"prompt": "q", "completion": "c", "label": True},  # no undesirable partner: no pair
        ]
    )
    assert pairs_of(labelled, "unpaired") == (["p"], ["a"], ["b"])


def test_without_matplotlib_tables_only_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    run = Run(seed=0, win_rate=0.6, win_rate_stderr=0.01, accuracy=0.7, margin=0.2, kl=0.1, kl_stderr=0.01)
    run.curve = [(0, 0.5), (3, 0.6)]
    result = MethodResult(Method("dpo", ("dpo",), "paired"), [run])
    comparison = Comparison(CompareConfig(task="transitive"), True, [result], 1.0, [])
    files = write_tables(comparison, tmp_path) + write_plots(comparison, tmp_path, sys.stderr)
    assert PLOT_HINT in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))
    assert {f.name for f in files} == {"compare.md", "compare.csv", "runs.csv", "curves.csv"}


@pytest.mark.parametrize(("task", "expected"), [("transitive", 300), ("packing", 900)])
def test_the_tiny_reference_gets_the_demo_recipes_sft_budget(
    task: str, expected: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import trl_plus.compare.running
    import trl_plus.demo
    import trl_plus.testing

    budgets: list[int] = []
    monkeypatch.setattr(trl_plus.testing, "make_tiny", lambda arch, out, seed=0: Path(out))
    monkeypatch.setattr(trl_plus.demo, "sft", lambda ref, out, task_name, *, steps, **_: budgets.append(steps) or out)
    config = CompareConfig(task=task, out_dir=str(tmp_path))
    trl_plus.compare.running._task_reference(config, io.StringIO())
    assert budgets == [expected]


def test_task_runs_add_the_sft_control_row() -> None:
    """Every table on a task shows what imitation alone gets, unless a row is sft already or the run opts out."""
    from trl_plus.compare.config import check_config

    def labels(**kwargs: Any) -> list[str]:
        return [method.label for method in check_config(CompareConfig(**kwargs))[0]]

    assert labels(losses="dpo", task="packing") == ["sft", "dpo"]
    assert labels(losses="dpo,sft", task="packing") == ["dpo", "sft"]
    assert labels(losses="dpo", task="packing", control=False) == ["dpo"]
    assert labels(losses="dpo", dataset="pairs.jsonl", model="some/model") == ["dpo"]  # no oracle, no control


def test_task_runs_on_the_tiny_model_give_simpo_and_orpo_their_budgets_under_the_users_settings() -> None:
    """TASK_BUDGETS' learning rate and hyperparameters reach the rows named by the loss alone; the user's settings
    win, and sums, other losses, --model runs and --dataset runs keep compare's defaults."""
    from trl_plus.compare.config import DEFAULT_LEARNING_RATE, TASK_BUDGETS, check_config, task_budget

    def rows(**kwargs: Any) -> dict[str, tuple[float | None, Any]]:
        methods = check_config(CompareConfig(**kwargs))[0]
        return {m.label: (m.learning_rate, m.loss_kwargs) for m in methods}

    loop_run = CompareConfig(losses="orpo", task="packing", online="iterative:orpo")
    budgets = {m.label: task_budget(m, loop_run) for m in check_config(loop_run)[0]}
    assert budgets == {"sft": None, "orpo": TASK_BUDGETS["orpo"], "iterative:orpo": None}  # the run logs only orpo's

    orpo, simpo = TASK_BUDGETS["orpo"], TASK_BUDGETS["simpo"]
    got = rows(losses="dpo,simpo,orpo,orpo+sft", task="packing", online="iterative:orpo")
    assert got["sft"] == got["dpo"] == (DEFAULT_LEARNING_RATE, None)
    assert got["simpo"] == (simpo.learning_rate, None)
    assert got["orpo"] == (orpo.learning_rate, {"orpo": orpo.loss_kwargs})
    assert got["orpo+sft"] == (DEFAULT_LEARNING_RATE, None)
    assert got["iterative:orpo"] == (None, None)  # a loop: it trains at the offline learning rate, no budget
    assert orpo.learning_rate != DEFAULT_LEARNING_RATE and orpo.loss_kwargs  # else this test checks nothing
    got = rows(losses="orpo", task="packing", learning_rate=5e-5, loss_kwargs={"orpo": {"beta": 0.3}})
    assert got["orpo"] == (5e-5, {"orpo": {**orpo.loss_kwargs, "beta": 0.3}})
    assert rows(losses="orpo", task="packing", model="my/model")["orpo"] == (DEFAULT_LEARNING_RATE, None)
    assert rows(losses="orpo", dataset="pairs.jsonl", model="my/model")["orpo"] == (DEFAULT_LEARNING_RATE, None)
