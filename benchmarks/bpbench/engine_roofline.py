"""The roofline reference: a hand-written Numba loop that does nothing but the dense K^2
min-plus update of both messages of every pairwise factor,

    out_a[f, x] = min_y T_f[x, y] + in_b[f, y],    out_b[f, y] = min_x T_f[x, y] + in_a[f, x],

with stacked (one table per factor) or one shared table, float64, one thread. No variable
side, no normalization, no damping: a bound on what a dense min-sum iteration can cost.
One "op" is one add-and-compare; an iteration is 2 F K^2 ops.

On Potts workloads a second row times the O(K) Potts update ``m(x) = min(in[x],
min_y in[y] + w)``, the target of an O(K) path (which factorgraph_ebm does not have yet).
"""

from __future__ import annotations

import numba
import numpy as np

from .common import Options, make_row, message_bytes, to_mb
from .measure import best_of, timed
from .workloads import POTTS_WEIGHT, Workload

NAME = "numba-dense"


def unavailable() -> str | None:
    """None: Numba is a dependency of the package."""
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip: not pairwise, or the arrays do not fit."""
    if workload.arity != 2:
        return "the hand-written loop is for pairwise factors only"
    need = to_mb(2 * message_bytes(workload))
    if need > 0.7 * available:
        return f"needs ~{need:.0f} MiB, {available:.0f} MiB available"
    return None


@numba.njit(cache=True, nogil=True)
def minplus_stacked(tables, in_a, in_b, out_a, out_b):  # pragma: no cover - JIT
    """Both messages of every factor, one K x K table per factor."""
    n_factors, k, _ = tables.shape
    for f in range(n_factors):
        for x in range(k):
            low = np.inf
            for y in range(k):
                low = min(low, tables[f, x, y] + in_b[f, y])
            out_a[f, x] = low
        for y in range(k):
            out_b[f, y] = tables[f, 0, y] + in_a[f, 0]
        for x in range(1, k):
            incoming = in_a[f, x]
            for y in range(k):
                out_b[f, y] = min(out_b[f, y], tables[f, x, y] + incoming)


@numba.njit(cache=True, nogil=True)
def minplus_shared(table, in_a, in_b, out_a, out_b):  # pragma: no cover - JIT
    """Both messages of every factor, one K x K table shared by all factors."""
    n_factors, k = in_a.shape
    for f in range(n_factors):
        for x in range(k):
            low = np.inf
            for y in range(k):
                low = min(low, table[x, y] + in_b[f, y])
            out_a[f, x] = low
        for y in range(k):
            out_b[f, y] = table[0, y] + in_a[f, 0]
        for x in range(1, k):
            incoming = in_a[f, x]
            for y in range(k):
                out_b[f, y] = min(out_b[f, y], table[x, y] + incoming)


@numba.njit(cache=True, nogil=True)
def potts_linear(weight, in_a, in_b, out_a, out_b):  # pragma: no cover - JIT
    """Both messages of every Potts factor in O(K): min(in[x], min(in) + weight)."""
    n_factors, k = in_a.shape
    for f in range(n_factors):
        low_a = np.inf
        low_b = np.inf
        for x in range(k):
            low_a = min(low_a, in_a[f, x])
            low_b = min(low_b, in_b[f, x])
        for x in range(k):
            out_a[f, x] = min(in_b[f, x], low_b + weight)
            out_b[f, x] = min(in_a[f, x], low_a + weight)


def _iterate(kernel, table, buffers, iters: int) -> None:
    """``iters`` back-to-back sweeps of ``kernel``."""
    for _ in range(iters):
        kernel(table, *buffers)


def run(workload: Workload, options: Options) -> list[dict]:
    """A row for the dense loop, and one for the O(K) Potts loop on Potts workloads."""
    rng = np.random.default_rng(0)
    k = workload.k
    buffers = (
        rng.random((workload.n_factors, k)),
        rng.random((workload.n_factors, k)),
        np.empty((workload.n_factors, k)),
        np.empty((workload.n_factors, k)),
    )
    kernel = minplus_shared if workload.shared else minplus_stacked
    tiny_table = workload.tables if workload.shared else workload.tables[:1]
    jit_s = timed(lambda: kernel(tiny_table, *(b[:1] for b in buffers)))[0]
    dense_entries = k * k * (1 if workload.shared else workload.n_factors)
    rows = [
        _row(
            workload,
            options,
            "dense K^2",
            kernel,
            workload.tables,
            buffers,
            8.0 * dense_entries + 2 * message_bytes(workload),
            2 * workload.n_factors * k * k,
            jit_s,
        )
    ]
    if workload.kind == "grid-potts":
        jit_s = timed(lambda: potts_linear(POTTS_WEIGHT, *(b[:1] for b in buffers)))[0]
        rows.append(
            _row(
                workload,
                options,
                "potts O(K)",
                potts_linear,
                POTTS_WEIGHT,
                buffers,
                2 * message_bytes(workload),
                2 * workload.n_factors * k,
                jit_s,
            )
        )
    return rows


def _row(workload, options, schedule, kernel, table, buffers, n_bytes, n_ops, jit_s) -> dict:
    """Seconds per sweep: the fastest of ``repeat`` runs of ``iters`` sweeps, divided."""
    seconds, _ = best_of(
        lambda: _iterate(kernel, table, buffers, options.iters), options.repeat, options.budget
    )
    return make_row(
        NAME,
        workload,
        schedule,
        None,
        s_per_iter=seconds / options.iters,
        jit_s=jit_s,
        msg_mb=to_mb(2 * message_bytes(workload)),
        bytes_per_iter=n_bytes,
        ops_per_iter=n_ops,
        note="min-plus update only (no variable side)",
    )
