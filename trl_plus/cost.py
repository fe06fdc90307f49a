"""What training costs, measured from inside the process: peak resident memory (Linux) and step times.

Shared by `trl-plus compare`, `scripts/bench_preference.py` and `scripts/bench_online.py` (which also share the
ratio-table cells at the end); both report the peak resident set size (VmHWM)
over a span of work minus the RSS just before it, with the kernel's peak mark reset through `/proc/self/clear_refs`
at the start of the span. (The benchmark runs each span in a fresh process; compare runs them one after another in
one process, hence `release_free_memory`.)
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

# Training arguments of every timed benchmark run: fp32 on the CPU, seeded, and nothing (logs, checkpoints, progress
# bars, loader workers) that would land inside a timed step.
TIMED_RUN_ARGS: dict[str, Any] = {
    "bf16": False,
    "fp16": False,
    "logging_steps": 10**6,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "dataloader_num_workers": 0,
    "use_cpu": True,
    "seed": 0,
}


def status_kib(key: str) -> int:
    """A `/proc/self/status` figure in KiB, e.g. `VmRSS` (resident now) or `VmHWM` (peak resident)."""
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key} line; memory is measured on Linux only.")
    return int(match.group(1))


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0); False where that is refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim), so that a span measured
    after earlier work in the same process starts from what is really in use, not from pages freed but kept."""
    gc.collect()
    # Not glibc: nothing to call, and the RSS at the start of a span may then include freed pages.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak RSS over a span minus the RSS at its start, in MiB; `pause()`/`resume()` leave out work inside the
    span (e.g. evaluations during training). `peak_mib` is None where the peak mark cannot be reset."""

    def __init__(self) -> None:
        release_free_memory()
        try:
            self.start_kib = status_kib("VmRSS")
        except (OSError, RuntimeError):  # no /proc (macOS, Windows): no figure rather than a failure
            self.resettable = False
        else:
            self.resettable = reset_peak_rss()
        self._peaks: list[int] = []

    def pause(self) -> None:
        if self.resettable:
            self._peaks.append(status_kib("VmHWM"))

    def resume(self) -> None:
        if self.resettable:
            release_free_memory()  # what the paused work freed but the allocator kept is not the span's
            reset_peak_rss()

    @property
    def peak_mib(self) -> float | None:
        if not self.resettable:
            return None
        return (max([*self._peaks, status_kib("VmHWM")]) - self.start_kib) / 1024


class StepClock(TrainerCallback):  # type: ignore[misc]
    """Timestamps of each optimizer step's end; consecutive differences are whole training-loop iterations."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends.append(time.perf_counter())


# ---- cells of the benchmark scripts' ratio tables ------------------------------------------------------------------


def time_cell(times: list[float], digits: int = 3) -> tuple[str, float | None]:
    """The median of `times` ± half the interquartile range (as a share of the median), and the median."""
    if not times:
        return "—", None
    median = statistics.median(times)
    if len(times) < 2:
        return f"{median:.{digits}f}", median
    q1, _, q3 = statistics.quantiles(times, n=4)
    return f"{median:.{digits}f} ±{100 * (q3 - q1) / 2 / median:.0f}%", median


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None or theirs <= 0 else ours / theirs


def ratio_text(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def target_text(value: float | None, target: float) -> str:
    """ "≤ target" with ✓ or ✗ for a measured ratio."""
    mark = "" if value is None else (" ✓" if value <= target else " ✗")
    return f"≤ {target:g}{mark}"


def error_cell(errors: list[str]) -> str:
    """The first error, on one line and without table bars, cut to 100 characters."""
    text = errors[0].replace("|", "/").replace("\n", " ")
    return "error: " + (text if len(text) <= 100 else text[:97] + "...")
