"""A finished comparison (`Comparison`) as a markdown table and a summary line, CSV files (per method, per seed,
curve points) and PNG plots; it reads only the results and the settings."""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from trl_plus.compare.config import CompareConfig
from trl_plus.compare.results import CSV_COLUMNS, MethodResult, Run, summary
from trl_plus.tables import format_table

PLOT_HINT = "Plots skipped: matplotlib is not installed; `pip install 'trl-plus[plot]'` adds them."


@dataclass
class Comparison:
    """What `compare` returns: every method's result, the settings, the time taken and the files written."""

    config: CompareConfig
    oracle: bool
    results: list[MethodResult]
    seconds: float
    files: list[Path]

    def rows(self) -> list[dict[str, Any]]:
        return [summary(result) for result in self.results]

    def markdown(self) -> str:
        return markdown_table(self.rows(), oracle=self.oracle)


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_cells(row: dict[str, Any], *, oracle: bool) -> list[str]:
    """A summary row as table text; the CSV holds the same numbers unrounded."""
    cells = [row["method"], row["input"], str(row["seeds"])]
    if oracle:
        interval = (
            "–"
            if row["win_rate"] is None
            else f"{row['win_rate']:.3f} [{row['win_rate_ci_low']:.3f}, {row['win_rate_ci_high']:.3f}]"
        )
        cells += [interval, _number(row["exploitability"])]
    kl = "–" if row["kl"] is None else f"{row['kl']:.3f} ± {row['kl_ci_half']:.3f}"
    cells += [_number(row["accuracy"]), _number(row["margin"]), kl, _number(row["step_time_s"], 4)]
    cells += [_number(row["peak_mem_mib"], 0), row["status"]]
    return cells


def table_headers(*, oracle: bool) -> list[str]:
    headers = ["method", "input", "seeds"]
    if oracle:
        headers += ["win rate vs reference [95% CI]", "exploitability"]
    return [*headers, "held-out acc.", "margin", "KL(π‖π_ref) ± 95%", "step time (s)", "peak mem (MiB)", "status"]


def markdown_table(rows: Sequence[dict[str, Any]], *, oracle: bool) -> str:
    return format_table(table_headers(oracle=oracle), [table_cells(row, oracle=oracle) for row in rows], markdown=True)


def summary_line(comparison: Comparison) -> str:
    config, rows = comparison.config, comparison.rows()
    where = f"the {config.task} task" if config.task else str(config.dataset)
    ok = [row for row in rows if row["status"] == "ok"]
    key, name = ("win_rate", "win rate") if comparison.oracle else ("accuracy", "held-out accuracy")
    scored = [row for row in ok if row[key] is not None]
    best = max(scored, key=lambda row: row[key]) if scored else None
    parts = [
        f"Compared {len(rows)} method(s) on {where}, {config.seeds} seed(s) × {config.steps} steps, "
        f"in {comparison.seconds:.0f} s",
        f"best {name}: {best['method']} ({best[key]:.3f})" if best else f"no {name} measured",
        f"failed: {', '.join(row['method'] for row in rows if row['status'] != 'ok') or 'none'}",
        f"results in {Path(config.out_dir)}",
    ]
    return "; ".join(parts) + "."


def write_tables(comparison: Comparison, out_dir: Path) -> list[Path]:
    """compare.md and compare.csv (one row per method), runs.csv (per seed) and curves.csv (metric over steps)."""
    rows = comparison.rows()
    files = [out_dir / "compare.md", out_dir / "compare.csv", out_dir / "runs.csv", out_dir / "curves.csv"]
    files[0].write_text(comparison.markdown() + "\n")
    files[1].write_text(_csv(CSV_COLUMNS, [[row[c] for c in CSV_COLUMNS] for row in rows]))
    run_columns = ["method", "seed", "win_rate", "win_rate_stderr", "accuracy", "margin", "kl", "kl_stderr"]
    run_columns += ["median_step_time_s", "peak_mem_mib", "seconds"]
    runs = [[result.method.label, *_run_values(run)] for result in comparison.results for run in result.runs]
    files[2].write_text(_csv(run_columns, runs))
    metric = "win_rate" if comparison.oracle else "accuracy"
    points = [
        [result.method.label, run.seed, step, value]
        for result in comparison.results
        for run in result.runs
        for step, value in run.curve
    ]
    files[3].write_text(_csv(("method", "seed", "step", metric), points))
    return files


def write_plots(comparison: Comparison, out_dir: Path, log: TextIO) -> list[Path]:
    """The PNGs, or a one-line hint without matplotlib; a plotting error is reported, not raised, since the tables
    are written by then."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(PLOT_HINT, file=log)
        return []
    try:
        return plot(comparison, out_dir)
    except Exception as error:
        print(f"Plots failed ({type(error).__name__}: {error}); the tables are written.", file=log)
        return []


def _run_values(run: Run) -> list[Any]:
    step_time = statistics.median(run.step_times) if run.step_times else None
    values = [run.seed, run.win_rate, run.win_rate_stderr, run.accuracy, run.margin, run.kl, run.kl_stderr]
    return [*values, step_time, run.peak_mib, run.seconds]


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue()


def plot(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Two PNGs: the headline metric against KL per method (with 95% intervals), and the metric over training
    steps (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    oracle = comparison.oracle
    metric, name = ("win_rate", "win rate vs reference") if oracle else ("accuracy", "held-out accuracy")
    stem = "win_rate" if oracle else "accuracy"
    where = comparison.config.task or Path(str(comparison.config.dataset)).name
    files = []
    rows = [row for row in comparison.rows() if row[metric] is not None and row["kl"] is not None]
    if rows:
        figure, axes = plt.subplots(figsize=(6, 4.5))
        for row in rows:
            y_error = None
            if oracle:
                y_error = [[row[metric] - row["win_rate_ci_low"]], [row["win_rate_ci_high"] - row[metric]]]
            axes.errorbar(
                row["kl"], row[metric], xerr=row["kl_ci_half"], yerr=y_error, fmt="o", capsize=3, label=row["method"]
            )
        if oracle:
            axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="the reference itself")
        axes.legend(fontsize="small")
        axes.set_xlabel("KL(π‖π_ref), nats per completion")
        axes.set_ylabel(name)
        axes.set_title(f"{name} vs drift on {where}")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        files.append(out_dir / f"{stem}_vs_kl.png")
        figure.savefig(files[-1], dpi=120)
        plt.close(figure)
    curves = [result for result in comparison.results if result.error is None and result.runs and result.runs[0].curve]
    if curves:
        figure, axes = plt.subplots(figsize=(6, 4.5))
        for result in curves:
            steps = [step for step, _ in result.runs[0].curve]
            means = [statistics.fmean(run.curve[i][1] for run in result.runs) for i in range(len(steps))]
            axes.plot(steps, means, marker="o", label=result.method.label)
        axes.set_xlabel("training step")
        axes.set_ylabel(f"{name} ({comparison.config.curve_prompts} prompts, mean over seeds)")
        axes.set_title(f"{name} during training on {where}")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        files.append(out_dir / f"{stem}_curve.png")
        figure.savefig(files[-1], dpi=120)
        plt.close(figure)
    return files
