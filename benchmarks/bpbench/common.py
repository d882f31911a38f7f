"""Run options and the result row shared by all engine adapters."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .measure import MB
from .workloads import Workload, workload_label

#: Convergence threshold (largest message change, energy units) of the convergence runs.
CONVERGENCE_TOL = 1e-6


@dataclass(frozen=True)
class Options:
    """What to run and how long to measure.

    ``iters`` is I of the timed runs (per iteration = (t(I) - t(1)) / (I - 1)); ``cap`` the
    iteration cap of the convergence run (tol = 1e-6); each timing is the fastest of up to
    ``repeat`` calls, stopping once ``budget`` seconds are spent. ``threads``: the thread
    counts ours' parallel schedule runs with (each a row); every other row is one thread.
    """

    iters: int = 10
    cap: int = 50
    repeat: int = 3
    budget: float = 2.0
    schedules: tuple[str, ...] = ("parallel", "sequential")
    dampings: tuple[float, ...] = (0.0, 0.5)
    #: Thread counts of ours' parallel schedule (the others are sequential by nature).
    threads: tuple[int, ...] = (1, 2)

    def to_dict(self) -> dict:
        """Plain dict (for passing to a worker process)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Options:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["schedules"] = tuple(data["schedules"])
        data["dampings"] = tuple(data["dampings"])
        data["threads"] = tuple(data.get("threads", (1,)))
        return cls(**data)


#: Figures of a row, None until measured.
FIGURES = (
    "s_per_iter",
    "fixed_s",
    "n_iter",
    "converged",
    "energy",
    "build_s",
    "compile_s",
    "jit_s",
    "peak_mb",
    "bp_peak_mb",
    "msg_mb",
    "model_mb",
    "bytes_per_iter",
    "ops_per_iter",
)


def make_row(engine: str, workload: Workload, schedule: str, damping: float | None, **fields):
    """A result row with the identifying columns of ``workload`` and the given figures.

    ``fields`` may hold any of :data:`FIGURES` and ``note`` (missing figures are None).
    Rates (messages/s, bytes/s, Gop/s) are derived from ``s_per_iter`` and
    ``bytes_per_iter`` / ``ops_per_iter``.
    """
    row = _identity(engine, workload.kind, workload.n, workload.k, schedule, damping)
    row.update(n_vars=workload.n_vars, n_edges=workload.n_edges)
    row.update(fields)
    seconds = row["s_per_iter"]
    if seconds and seconds > 0:
        if row["fixed_s"] is not None:
            row["fixed_iters"] = row["fixed_s"] / seconds  # the fixed cost in iterations
        row["msgs_per_s"] = workload.n_edges / seconds
        if row["bytes_per_iter"]:
            row["gbytes_per_s"] = row["bytes_per_iter"] / seconds / 1e9
        if row["ops_per_iter"]:
            row["gops_per_s"] = row["ops_per_iter"] / seconds / 1e9
    return row


def error_row(engine: str, kind: str, n: int, k: int, note: str) -> dict:
    """A row for a worker process that died or timed out (no workload at hand)."""
    row = _identity(engine, kind, n, k, "-", None)
    row["note"] = note
    return row


def _identity(engine, kind, n, k, schedule, damping) -> dict:
    """A row with its identifying columns set and every figure None."""
    row = {
        "engine": engine,
        "workload": kind,
        "n": n,
        "k": k,
        "label": workload_label(kind, n, k),
        "n_vars": None,
        "n_edges": None,
        "schedule": schedule,
        "damping": damping,
        "threads": 1,
    }
    row.update(dict.fromkeys(FIGURES))
    row["note"] = ""
    return row


def skipped_row(engine: str, workload: Workload, note: str) -> dict:
    """A row saying that ``engine`` did not run on ``workload`` and why (``note`` starts
    with "skipped:" or "failed:")."""
    return make_row(engine, workload, "-", None, note=note)


def message_bytes(workload: Workload) -> float:
    """Bytes of one float64 buffer of factor-to-variable messages over the non-unary factors."""
    return 8.0 * workload.n_edges * workload.k


def minsum_bytes_per_iter(workload: Workload, table_entries: int) -> float:
    """Compulsory memory traffic of one min-sum flooding iteration, in bytes: every table
    entry read once, both message buffers (variable-to-factor and factor-to-variable) each
    written once and read once, the unary energies read once (float64)."""
    return 8.0 * (table_entries + workload.unary.size) + 4.0 * message_bytes(workload)


def join_notes(*notes: str) -> str:
    """The non-empty notes joined by "; "."""
    return "; ".join(note for note in notes if note)


def to_mb(n_bytes: float) -> float:
    """Bytes to MiB."""
    return n_bytes / MB
