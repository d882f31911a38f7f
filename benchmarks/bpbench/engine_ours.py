"""factorgraph_ebm: the engine under test (Numba kernels). The sequential and tree
schedules run on one thread; the parallel schedule once per thread count of ``--threads``
(default 1 and 2: the "threads" column says which).

Per (schedule, damping): t(1) and t(I) of ``belief_propagation(g, beta=inf, schedule=...,
max_iter=..., tol=0, damping=..., warn=False)``; per iteration is (t(I) - t(1)) / (I - 1),
and t(1) minus that is the fixed cost of a call (allocation, beliefs, decoding). A separate
run with tol = 1e-6 and ``max_iter = cap`` gives the iterations to converge and the decoded
energy. On the chain the exact two-pass schedule is timed too, min-sum (Viterbi) and
sum-product at beta = 1 (forward-backward), as whole calls.
"""

from __future__ import annotations

import gc
import math

import numpy as np

from .common import (
    CONVERGENCE_TOL,
    Options,
    join_notes,
    make_row,
    message_bytes,
    minsum_bytes_per_iter,
    to_mb,
)
from .measure import best_of, peak_rss_mb, per_iteration, reset_peak, rss_mb, timed
from .workloads import POTTS_WEIGHT, Workload, tiny_like

NAME = "ours"


def unavailable() -> str | None:
    """None: the package is always there."""
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip when the estimated memory exceeds 70% of the available MiB."""
    need = to_mb(_estimated_bytes(workload))
    if need > 0.7 * available:
        return f"needs ~{need:.0f} MiB, {available:.0f} MiB available"
    return None


def _estimated_bytes(workload: Workload) -> float:
    """Tables copied per factor (theta; none for the compact Potts factors; plus the
    caller's stacked tables), two message buffers and per-state arrays (no factor beliefs:
    the runs pass ``factor_beliefs=False``)."""
    tables = 0 if workload.kind == "grid-potts" else workload.table_entries
    entries = tables + workload.unary.size
    stacked = 0 if workload.shared else 8.0 * workload.table_entries
    return 8.0 * entries + stacked + 2.5 * message_bytes(workload) + 40.0 * workload.unary.size


def build(workload: Workload, dense: bool = False):
    """The FactorGraph of ``workload``, built with the batch API; Potts workloads with
    compact ``add_potts_factors(..., dense=False)`` (O(K) messages, no tables in theta)
    unless ``dense``."""
    from factorgraph_ebm import FactorGraph

    graph = FactorGraph()
    graph.add_variables(range(workload.n_vars), workload.k)
    graph.add_factors(np.arange(workload.n_vars)[:, None], workload.unary, by_index=True)
    if workload.kind == "grid-potts" and not dense:
        graph.add_potts_factors(workload.scopes, POTTS_WEIGHT, by_index=True, dense=False)
    else:
        graph.add_factors(workload.scopes, workload.tables, by_index=True)
    return graph


def _bp(graph, schedule: str, damping: float, max_iter: int, tol: float, beta=math.inf,
        threads: int = 1):
    """One call; returns only (n_iter, converged, assignment), so that the result's large
    arrays (messages, beliefs) are freed before the next call and peaks do not add up."""
    from factorgraph_ebm import belief_propagation

    result = belief_propagation(
        graph,
        beta=beta,
        method="bp",
        schedule=schedule,
        max_iter=max_iter,
        tol=tol,
        damping=damping,
        warn=False,
        factor_beliefs=False,
        threads=threads,
    )
    return result.n_iter, result.converged, result.assignment


def warm_up(workload: Workload, options: Options) -> float:
    """Seconds of the first calls on a tiny graph of the same kinds (JIT compilation, or
    loading from Numba's on-disk cache when it is warm)."""
    seconds, graph = timed(lambda: build(tiny_like(workload)))
    total = seconds
    for schedule in _schedules(workload, options):
        for threads in options.threads if schedule == "parallel" else (1,):
            total += timed(lambda s=schedule, t=threads: _bp(graph, s, 0.5, 2, 0.0, threads=t))[0]
    if workload.kind == "chain":
        total += timed(lambda: _bp(graph, "tree", 0.0, 1, 0.0, beta=1.0))[0]
    return total


def _schedules(workload: Workload, options: Options) -> list[str]:
    """The schedules to warm up: the requested ones, and the tree on the chain."""
    extra = ["tree"] if workload.kind == "chain" else []
    return list(options.schedules) + extra


def run(workload: Workload, options: Options) -> list[dict]:
    """Every row of this engine on ``workload``."""
    jit_s = warm_up(workload, options)
    method = reset_peak()
    before_build = rss_mb()
    build_s, graph = timed(lambda: build(workload))
    compile_s, cg = timed(graph.compile)
    build_peak = peak_rss_mb() - before_build
    gc.collect()
    reset_peak()
    before_bp = rss_mb()
    common = {
        "build_s": build_s,
        "compile_s": compile_s,
        "jit_s": jit_s,
        "msg_mb": to_mb(2 * 8.0 * cg.n_message_entries),
        "model_mb": to_mb(cg.energies.nbytes),
        "bytes_per_iter": minsum_bytes_per_iter(workload, workload.table_entries),
        "note": method,
    }
    rows = []
    for schedule in options.schedules:
        for damping in options.dampings:
            for threads in options.threads if schedule == "parallel" else (1,):
                rows.append(
                    _loopy_row(workload, graph, schedule, damping, options, common, threads)
                )
    if workload.kind == "chain":
        rows.extend(_tree_rows(workload, graph, options, common))
    bp_peak = peak_rss_mb() - before_bp
    for row in rows:
        row.update(peak_mb=max(build_peak, before_bp - before_build + bp_peak), bp_peak_mb=bp_peak)
    if workload.kind == "grid-potts" and 8.0 * workload.table_entries < DENSE_COMPARISON_BYTES:
        del graph, cg
        gc.collect()
        rows.append(_dense_potts_row(workload, options, jit_s))
    return rows


#: The dense-table comparison row on Potts grids runs when the tables take less than this.
DENSE_COMPARISON_BYTES = 4e9


def _dense_potts_row(workload, options, jit_s) -> dict:
    """The same Potts grid with the Potts tables added as dense tables (the O(K^2) path),
    flooding, damping 0: the comparison for the O(K) path."""
    build_s, graph = timed(lambda: build(workload, dense=True))
    compile_s, cg = timed(graph.compile)
    common = {
        "build_s": build_s,
        "compile_s": compile_s,
        "jit_s": jit_s,
        "msg_mb": to_mb(2 * 8.0 * cg.n_message_entries),
        "model_mb": to_mb(cg.energies.nbytes),
        "bytes_per_iter": minsum_bytes_per_iter(workload, workload.table_entries),
        "note": "Potts tables as dense tables (add_factors): the O(K^2) path",
    }
    row = _loopy_row(workload, graph, "parallel", 0.0, options, common)
    row["schedule"] = "parallel (dense tables)"
    return row


def _loopy_row(workload, graph, schedule, damping, options, common, threads=1) -> dict:
    """Per-iteration time, fixed cost, convergence and decoded energy of one schedule."""
    t_one, _ = best_of(
        lambda: _bp(graph, schedule, damping, 1, 0.0, threads=threads),
        options.repeat,
        options.budget,
    )
    t_many, result = best_of(
        lambda: _bp(graph, schedule, damping, options.iters, 0.0, threads=threads),
        options.repeat,
        options.budget,
    )
    s_per_iter = per_iteration(t_one, t_many, result[0])
    n_iter = converged = None
    if options.cap > 0:  # cap 0: no convergence run, the energy of the timed run
        result = _bp(graph, schedule, damping, options.cap, CONVERGENCE_TOL, threads=threads)
        n_iter, converged = result[0], result[1]
    return make_row(
        NAME,
        workload,
        schedule,
        damping,
        threads=threads,
        s_per_iter=s_per_iter,
        fixed_s=max(t_one - s_per_iter, 0.0),
        n_iter=n_iter,
        converged=converged,
        energy=workload.energy(result[2]),
        **common,
    )


def _tree_rows(workload, graph, options, common) -> list[dict]:
    """The exact two-pass schedule on the chain: Viterbi (min-sum) and forward-backward
    (sum-product, beta = 1), timed as whole calls (``s_per_iter`` is the call time)."""
    rows = []
    for label, beta in (("tree", math.inf), ("tree-sum-product", 1.0)):
        seconds, result = best_of(
            lambda b=beta: _bp(graph, "tree", 0.0, 1, 0.0, beta=b),
            options.repeat,
            options.budget,
        )
        rows.append(
            make_row(
                NAME,
                workload,
                label,
                0.0,
                s_per_iter=seconds,
                fixed_s=0.0,
                n_iter=result[0],
                converged=result[1],
                energy=workload.energy(result[2]),
                **{**common, "note": join_notes("whole call (exact two-pass)", common["note"])},
            )
        )
    return rows
