"""What a comparison measured: one training run's scores (`Run`), a method's runs (`MethodResult`), and its
summary row over seeds, with 95% intervals that pool the seeds' spread and each seed's sampling error."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trl_plus.compare.methods import Method


@dataclass
class Run:
    """One method trained with one seed, and its scores."""

    seed: int
    win_rate: float | None = None
    win_rate_stderr: float | None = None
    exploitability: float | None = None
    accuracy: float | None = None
    margin: float | None = None
    kl: float | None = None
    kl_stderr: float | None = None
    step_times: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class MethodResult:
    method: Method
    runs: list[Run] = field(default_factory=list)
    error: str | None = None


# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom; beyond, 1.96 + 2.4/df is within 0.01.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


def pooled(means: Sequence[float], stderrs: Sequence[float]) -> tuple[float, float]:
    """The mean over seeds and the half-width of its 95% interval.

    One seed: ± 1.96 standard errors of its sampling. Several: the wider of two intervals, one from the seeds'
    spread (which holds training and sampling noise; Student's t with seeds − 1 degrees of freedom, as the spread
    of a few seeds is itself uncertain) and one from the sampling error alone (normal: hundreds of prompts), so
    that seeds which happen to agree do not hide the sampling error.
    """
    count = len(means)
    mean = sum(means) / count
    sampling = 1.96 * math.sqrt(sum(se**2 for se in stderrs)) / count
    if count == 1:
        return mean, sampling
    return mean, max(t95(count - 1) * math.sqrt(statistics.variance(means) / count), sampling)


CSV_COLUMNS = (
    "method",
    "input",
    "seeds",
    "win_rate",
    "win_rate_ci_low",
    "win_rate_ci_high",
    "exploitability",
    "accuracy",
    "margin",
    "kl",
    "kl_ci_half",
    "step_time_s",
    "peak_mem_mib",
    "status",
)


def summary(result: MethodResult) -> dict[str, Any]:
    """One method's row: means over seeds (None where not measured), keyed by `CSV_COLUMNS`."""
    runs = result.runs if result.error is None else []
    row: dict[str, Any] = dict.fromkeys(CSV_COLUMNS)
    row.update(method=result.method.label, input=result.method.kind, seeds=len(runs))
    row["status"] = "ok" if result.error is None else f"failed: {result.error}"[:300]
    if not runs:
        return row
    if runs[0].win_rate is not None:
        mean, half = pooled([r.win_rate or 0.0 for r in runs], [r.win_rate_stderr or 0.0 for r in runs])
        row.update(win_rate=mean, win_rate_ci_low=max(0.0, mean - half), win_rate_ci_high=min(1.0, mean + half))
    if runs[0].exploitability is not None:
        row["exploitability"] = statistics.fmean(r.exploitability or 0.0 for r in runs)
    if runs[0].accuracy is not None:
        row["accuracy"] = statistics.fmean(r.accuracy or 0.0 for r in runs)
        row["margin"] = statistics.fmean(r.margin or 0.0 for r in runs)
    if runs[0].kl is not None:
        row["kl"], row["kl_ci_half"] = pooled([r.kl or 0.0 for r in runs], [r.kl_stderr or 0.0 for r in runs])
    times = [t for r in runs for t in r.step_times]
    if times:
        row["step_time_s"] = statistics.median(times)
    peaks = [r.peak_mib for r in runs if r.peak_mib is not None]
    if peaks:
        row["peak_mem_mib"] = statistics.median(peaks)
    return row
