"""The roofline reference: a hand-written Numba loop that does nothing but the dense K^2
min-plus update of both messages of every pairwise factor,

    out_a[f, x] = min_y T_f[x, y] + in_b[f, y],    out_b[f, y] = min_x T_f[x, y] + in_a[f, x],

with stacked (one table per factor) or one shared table, float64, one thread. No variable
side, no normalization, no damping: a bound on what a dense min-sum iteration can cost.
One "op" is one add-and-compare; an iteration is 2 F K^2 ops.

On Potts workloads a second row times the O(K) Potts update ``m(x) = min(in[x],
min_y in[y] + w)``, the target of an O(K) path.

Those two rows are update-only. The "full iteration" rows time what one flooding
iteration of BP must do, hand-written for the grid: the variable side (each variable's
belief = unary + incoming messages; each outgoing message = belief - the message on that
edge, shifted to minimum 0) and then the factor side (the dense or O(K) update of both
messages, each shifted to minimum 0). That is the reference of issue 16's "full parallel
iteration within 2x (structured) / 1.5x (dense) of the hand-written loop".
"""

from __future__ import annotations

import numba
import numpy as np

from .common import Options, make_row, message_bytes, to_mb
from .measure import best_of, timed
from .workloads import POTTS_WEIGHT, Workload, make_workload

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


@numba.njit(cache=True, nogil=True)
def variable_side(unary, edge_ptr, edges, f2v, v2f):  # pragma: no cover - JIT
    """Variable-to-factor messages of every edge (``f2v``/``v2f`` of shape (2 F, K), edge
    ``2 f + side``; ``edges[edge_ptr[v]:edge_ptr[v + 1]]`` the edges of variable v)."""
    n_vars, k = unary.shape
    belief = np.empty(k)
    for v in range(n_vars):
        for x in range(k):
            belief[x] = unary[v, x]
        for j in range(edge_ptr[v], edge_ptr[v + 1]):
            e = edges[j]
            for x in range(k):
                belief[x] += f2v[e, x]
        for j in range(edge_ptr[v], edge_ptr[v + 1]):
            e = edges[j]
            low = np.inf
            for x in range(k):
                value = belief[x] - f2v[e, x]
                v2f[e, x] = value
                low = min(low, value)
            for x in range(k):
                v2f[e, x] -= low


@numba.njit(cache=True, nogil=True)
def full_dense(tables, shared, unary, edge_ptr, edges, f2v, v2f):  # pragma: no cover - JIT
    """One flooding min-sum iteration with dense K x K tables (``tables[0]`` for all
    factors when ``shared``), every message shifted to minimum 0."""
    variable_side(unary, edge_ptr, edges, f2v, v2f)
    n_factors = f2v.shape[0] // 2
    k = unary.shape[1]
    for f in range(n_factors):
        table = tables[0] if shared else tables[f]
        a, b = 2 * f, 2 * f + 1
        low_a = np.inf
        for x in range(k):
            low = np.inf
            for y in range(k):
                low = min(low, table[x, y] + v2f[b, y])
            f2v[a, x] = low
            low_a = min(low_a, low)
        for x in range(k):
            f2v[a, x] -= low_a
        for y in range(k):
            f2v[b, y] = table[0, y] + v2f[a, 0]
        for x in range(1, k):
            incoming = v2f[a, x]
            for y in range(k):
                f2v[b, y] = min(f2v[b, y], table[x, y] + incoming)
        low_b = np.inf
        for y in range(k):
            low_b = min(low_b, f2v[b, y])
        for y in range(k):
            f2v[b, y] -= low_b


@numba.njit(cache=True, nogil=True)
def full_potts(weight, unary, edge_ptr, edges, f2v, v2f):  # pragma: no cover - JIT
    """One flooding min-sum iteration with Potts factors in O(K). The incoming messages
    have minimum 0 (the variable side shifts them), so the outgoing ones have minimum 0
    too: ``min(in[x], 0 + w)`` needs no shift."""
    variable_side(unary, edge_ptr, edges, f2v, v2f)
    n_factors = f2v.shape[0] // 2
    k = unary.shape[1]
    for f in range(n_factors):
        a, b = 2 * f, 2 * f + 1
        for x in range(k):
            f2v[a, x] = min(v2f[b, x], weight)
            f2v[b, x] = min(v2f[a, x], weight)


def edge_lists(workload: Workload) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the pairwise edges of each variable: (edge_ptr, edges), edge ``2 f + side``."""
    owners = workload.scopes.ravel()  # edge 2 f + side belongs to scopes[f, side]
    edges = np.argsort(owners, kind="stable").astype(np.int64)
    counts = np.bincount(owners, minlength=workload.n_vars)
    edge_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return edge_ptr, edges


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
    rows.append(_full_row(workload, options))
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
    if workload.kind == "grid-potts":
        rows.append(_full_row(workload, options, potts=True))
    return rows


def _full_args(workload: Workload, potts: bool) -> tuple:
    """(kernel, arguments) of the full iteration on ``workload``, messages random."""
    edge_ptr, edges = edge_lists(workload)
    f2v = np.random.default_rng(0).random((workload.n_edges, workload.k))
    structure = (workload.unary, edge_ptr, edges, f2v, np.empty_like(f2v))
    if potts:
        return full_potts, (POTTS_WEIGHT, *structure)
    tables = workload.tables[None] if workload.shared else workload.tables
    return full_dense, (tables, workload.shared, *structure)


def _full_row(workload: Workload, options: Options, potts: bool = False) -> dict:
    """The full-iteration row (variable side, factor side, shifts), dense or O(K) Potts."""
    k = workload.k
    kernel, arguments = _full_args(workload, potts)
    jit_s = timed(lambda: kernel(*_full_args(make_workload(workload.kind, 2, 2), potts)[1]))[0]
    seconds, _ = best_of(
        lambda: [kernel(*arguments) for _ in range(options.iters)], options.repeat, options.budget
    )
    if potts:
        n_ops, table_bytes = workload.n_edges * k, 0.0  # one min per message entry
    else:
        n_ops = 2 * workload.n_factors * k * k
        table_bytes = 8.0 * k * k * (1 if workload.shared else workload.n_factors)
    return make_row(
        NAME,
        workload,
        "potts O(K) full iteration" if potts else "dense K^2 full iteration",
        None,
        s_per_iter=seconds / options.iters,
        jit_s=jit_s,
        msg_mb=to_mb(2 * message_bytes(workload)),
        bytes_per_iter=table_bytes + 8.0 * workload.unary.size + 4 * message_bytes(workload),
        ops_per_iter=n_ops,
        note="one flooding iteration: variable side, factor side, messages shifted to min 0",
    )


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
