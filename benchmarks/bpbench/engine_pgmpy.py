"""pgmpy: MPLP (``pgmpy.inference.Mplp``), its only iterative MAP message passing.

pgmpy's ``BeliefPropagation`` is junction-tree based and ``BeliefPropagationWithMessagePassing``
refuses loopy graphs, so the comparison is MPLP (Globerson & Jaakkola 2008), a block
coordinate descent on the dual of the MAP LP relaxation: a different message passing
algorithm, in pure Python over ``DiscreteFactor`` objects, hence small models only.

Factor values are scores to maximize, ``max(table) - table`` (>= 0: pgmpy's MPLP keeps the
best assignment only while its score beats 0). ``map_query(init_iter=I,
tighten_triplet=False)`` with both thresholds 0 runs exactly I iterations, on a freshly
built model each call (MPLP updates the model's factors in place). The convergence run uses
pgmpy's own test (dual decrease or integrality gap below 2e-4, after at least 16
iterations), not the 1e-6 message change of the other engines.
"""

from __future__ import annotations

import itertools

import numpy as np

from .common import Options, join_notes, make_row
from .measure import peak_rss_mb, per_iteration, reset_peak, rss_mb, timed
from .workloads import Workload, tiny_like

NAME = "pgmpy"
MAX_FACTORS = 2_500


def unavailable() -> str | None:
    """Why pgmpy cannot run here, or None."""
    try:
        from pgmpy.inference import Mplp  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc}); pip install 'pgmpy>=1.1'"
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip: more than MAX_FACTORS factors (MPLP's setup is quadratic in the
    number of edges and every update goes through Python objects)."""
    if workload.n_factors > MAX_FACTORS:
        return f"{workload.n_factors} factors > {MAX_FACTORS} (pure-Python MPLP, small sizes only)"
    return None


def build(workload: Workload):
    """A fresh ``Mplp`` over a ``DiscreteMarkovNetwork`` of ``workload``."""
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.inference import Mplp
    from pgmpy.models import DiscreteMarkovNetwork

    names = [f"x{i}" for i in range(workload.n_vars)]
    model = DiscreteMarkovNetwork()
    model.add_nodes_from(names)
    for scope in workload.scopes.tolist():
        model.add_edges_from((names[a], names[b]) for a, b in itertools.combinations(scope, 2))
    factors = [
        DiscreteFactor([name], [workload.k], unary.max() - unary)
        for name, unary in zip(names, workload.unary)
    ]
    tables = workload.stacked_tables()
    for scope, table in zip(workload.scopes.tolist(), tables):
        variables = [names[v] for v in scope]
        factors.append(
            DiscreteFactor(variables, [workload.k] * len(scope), (table.max() - table).ravel())
        )
    model.add_factors(*factors)
    return Mplp(model)


def solve(mplp, workload: Workload, n_iter: int, exact_count: bool) -> tuple[np.ndarray, int]:
    """Run MPLP; return (assignment, iterations done). ``exact_count`` disables pgmpy's
    stopping test so that exactly ``n_iter`` iterations run."""
    calls = [0]
    decode = mplp._local_decode

    def counted():
        calls[0] += 1
        decode()

    mplp._local_decode = counted
    threshold = 0 if exact_count else 0.0002
    states = mplp.map_query(
        init_iter=n_iter,
        tighten_triplet=False,
        dual_threshold=threshold,
        integrality_gap_threshold=threshold,
    )
    assignment = np.array([states.get(f"x{i}", 0) for i in range(workload.n_vars)])
    return assignment, calls[0]


def _timed_fresh(workload: Workload, n_iter: int, options: Options) -> float:
    """Fastest ``solve`` of exactly ``n_iter`` iterations, each on a freshly built model."""
    best = float("inf")
    spent = 0.0
    for _ in range(max(1, options.repeat)):
        mplp = build(workload)
        seconds = timed(lambda m=mplp: solve(m, workload, n_iter, True))[0]
        best, spent = min(best, seconds), spent + seconds
        if spent >= options.budget:
            break
    return best


def run(workload: Workload, options: Options) -> list[dict]:
    """One row: MPLP's per-iteration time and its own convergence."""
    jit_s = timed(lambda: solve(build(tiny_like(workload)), tiny_like(workload), 2, True))[0]
    method = reset_peak()
    before = rss_mb()
    build_s, mplp = timed(lambda: build(workload))
    t_one = _timed_fresh(workload, 1, options)
    t_many = _timed_fresh(workload, options.iters, options)
    s_per_iter = per_iteration(t_one, t_many, options.iters)
    assignment, n_iter = solve(mplp, workload, options.cap, False)
    peak = peak_rss_mb() - before
    return [
        make_row(
            NAME,
            workload,
            "MPLP",
            None,
            s_per_iter=s_per_iter,
            fixed_s=max(t_one - s_per_iter, 0.0),
            n_iter=n_iter,
            converged=n_iter < options.cap,
            energy=workload.energy(assignment),
            build_s=build_s,
            compile_s=0.0,
            jit_s=jit_s,
            peak_mb=peak,
            bp_peak_mb=peak,
            note=join_notes("MPLP (LP dual), pgmpy's own stopping test", method),
        )
    ]
