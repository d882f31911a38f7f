"""Timing and memory measurement shared by the engine adapters.

Memory is the resident set size of the process from ``/proc/self/status``: ``VmRSS`` now
and ``VmHWM``, its high-water mark, which :func:`reset_peak` resets (``echo 5 >
/proc/self/clear_refs``, Linux >= 4.0). Where that is not possible, ``resource.getrusage``
``ru_maxrss`` is used, which cannot be reset (the peak is then only an upper bound of the
growth). Every (engine, workload) pair runs in its own process, so peaks never mix.
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Callable
from pathlib import Path

MB = 1024.0 * 1024.0
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def rss_mb() -> float:
    """Current resident set size in MiB."""
    return _status_kib("VmRSS") / 1024.0


def peak_rss_mb() -> float:
    """High-water mark of the resident set size in MiB since the last :func:`reset_peak`."""
    peak = _status_kib("VmHWM")
    if peak < 0:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0


def reset_peak() -> str:
    """Reset the RSS high-water mark. Returns "" on success, else a note for the row
    saying that the peak is ``ru_maxrss`` (an upper bound)."""
    try:
        _CLEAR_REFS.write_text("5")
        return ""
    except OSError:
        return "peak: ru_maxrss, not resettable (upper bound)"


def _status_kib(key: str) -> int:
    """A "kB" field of /proc/self/status, or -1."""
    try:
        match = re.search(rf"^{key}:\s+(\d+)", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return -1
    return int(match.group(1)) if match else -1


def available_mb() -> float:
    """``MemAvailable`` from ``/proc/meminfo`` in MiB (inf when unknown)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return float("inf")
    match = re.search(r"^MemAvailable:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else float("inf")


def timed(call: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def best_of(call: Callable[[], object], repeat: int, budget: float) -> tuple[float, object]:
    """Fastest of up to ``repeat`` calls, stopping early once ``budget`` seconds are spent
    (at least one call). Returns (seconds, result of the fastest call)."""
    best, best_result, spent = float("inf"), None, 0.0
    for _ in range(max(1, repeat)):
        seconds, result = timed(call)
        spent += seconds
        if seconds < best:
            best, best_result = seconds, result
        if spent >= budget:
            break
    return best, best_result


def per_iteration(t_one: float, t_many: float, n_many: int) -> float:
    """Seconds per iteration from a 1-iteration and an ``n_many``-iteration call:
    ``(t(I) - t(1)) / (I - 1)``, which removes per-call costs (setup, decoding, beliefs).
    With ``n_many == 1`` the whole call time is returned."""
    if n_many <= 1:
        return t_one
    return max(t_many - t_one, 0.0) / (n_many - 1)


def first_converged(deltas, tol: float) -> int | None:
    """1-based index of the first iteration whose message change is <= tol, or None."""
    for index, delta in enumerate(deltas):
        if delta <= tol:
            return index + 1
    return None
