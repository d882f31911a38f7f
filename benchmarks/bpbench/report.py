"""The report: machine description, Markdown tables and the log-log scaling plot."""

from __future__ import annotations

import math
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "numba", "llvmlite", "jax", "jaxlib", "pgmax", "pgmpy", "pyagrum")

COLUMNS = (
    ("engine", "engine"),
    ("workload", "label"),
    ("schedule", "schedule"),
    ("damping", "damping"),
    ("threads", "threads"),
    ("s/iter", "s_per_iter"),
    ("fixed s/call", "fixed_s"),
    ("fixed, iterations' worth", "fixed_iters"),
    ("iters to 1e-6", "n_iter"),
    ("energy", "energy"),
    ("build s", "build_s"),
    ("compile s", "compile_s"),
    ("JIT warm-up s", "jit_s"),
    ("peak MiB", "peak_mb"),
    ("BP peak MiB", "bp_peak_mb"),
    ("msg MiB", "msg_mb"),
    ("Mmsg/s", "msgs_per_s"),
    ("GB/s", "gbytes_per_s"),
    ("Gop/s", "gops_per_s"),
    ("load", "load_1m"),
    ("note", "note"),
)


def machine() -> dict:
    """Cores, CPU model, memory, Python and package versions, load average."""
    info = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR"),
    }
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def _cpu_model() -> str | None:
    """The first "model name" of /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    """MemTotal of /proc/meminfo in GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def fmt(value, key: str = "") -> str:
    """One table cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        if key == "energy":
            return f"{value:.4f}"
        if key == "msgs_per_s":
            return f"{value / 1e6:.3g}"
        if key == "damping":
            return f"{value:g}"
        return f"{value:.3g}"
    return str(value).replace("|", "/")


def _iterations(row: dict) -> str:
    """The "iters to 1e-6" cell: the count, "(cap)" when not converged."""
    if row["n_iter"] is None:
        return ""
    return f"{row['n_iter']}" if row["converged"] else f"{row['n_iter']} (cap)"


def markdown_table(rows: list[dict]) -> str:
    """All rows as one Markdown table."""
    lines = [
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [
            _iterations(row) if key == "n_iter" else fmt(row.get(key), key) for _, key in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def startup_table(figures: dict) -> str:
    """Start-up seconds as a Markdown table."""
    lines = ["| fresh process | seconds |", "|---|---|"]
    lines += [f"| `{name}` | {seconds:.2f} |" for name, seconds in figures.items()]
    return "\n".join(lines)


def energy_check(rows: list[dict]) -> str:
    """Per workload, the decoded min-sum energies of every engine and schedule (damping 0
    or exact) and their excess over the lowest."""
    by_workload: dict[str, list[tuple[str, float]]] = {}
    for row in rows:
        skip = row["damping"] not in (None, 0.0) or "sum-product" in row["schedule"]
        if row["energy"] is None or skip:
            continue
        name = f"{row['engine']} {row['schedule']}"
        by_workload.setdefault(row["label"], []).append((name, row["energy"]))
    lines = []
    for label, pairs in by_workload.items():
        low = min(e for _, e in pairs)
        cells = ", ".join(f"{name} {energy:.4f} (+{energy - low:.3g})" for name, energy in pairs)
        lines.append(f"- {label}: {cells}")
    return "\n".join(lines)


ENGINE_COLORS = {
    "ours": "tab:blue",
    "numpy": "tab:orange",
    "numba-dense": "tab:green",
    "pgmax": "tab:red",
    "pgmpy": "tab:purple",
    "pyagrum": "tab:brown",
}
SCHEDULE_STYLES = {"sequential": "--", "dense K^2": ":", "potts O(K)": "-."}
KIND_MARKERS = {"grid-potts": "o", "grid-dense": "s", "chain": "^", "random": "D"}
EXACT = ("tree", "tree-sum-product", "exact MPE")


def scaling_plot(rows: list[dict], path: Path) -> Path | None:
    """Seconds per iteration against factor-graph edges, log-log: one line per (engine,
    schedule, workload kind, K) at damping 0; colour = engine, line style = schedule,
    marker = workload kind; exact whole-call solves left out. Returns the PNG path, or None
    without matplotlib or data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[tuple, list[tuple[int, float]]] = {}
    for row in rows:
        if not row["s_per_iter"] or row["damping"] not in (None, 0.0):
            continue
        if row["schedule"] in EXACT:
            continue
        key = (row["engine"], row["schedule"], row["workload"], row["k"])
        series.setdefault(key, []).append((row["n_edges"], row["s_per_iter"]))
    if not series:
        return None
    figure, axes = plt.subplots(figsize=(12, 6.5))
    for (engine, schedule, kind, k), points in sorted(series.items()):
        points.sort()
        axes.loglog(
            [p[0] for p in points],
            [p[1] for p in points],
            color=ENGINE_COLORS.get(engine, "black"),
            linestyle=SCHEDULE_STYLES.get(schedule, "-"),
            marker=KIND_MARKERS.get(kind, "x"),
            label=f"{engine} {schedule} / {kind} K={k}",
        )
    axes.set_xlabel("factor-graph edges of the non-unary factors (messages per iteration)")
    axes.set_ylabel("seconds per iteration")
    axes.set_title("Min-sum BP, seconds per iteration (damping 0)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
