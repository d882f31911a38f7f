"""PGMax 0.6.1 (JAX on CPU): max-product loopy BP in the log domain, flooding schedule.

Log potentials are the negated energies; the unary energies go in as evidence. One
``jax.jit`` function per iteration count runs ``bp.run_with_diffs`` at temperature 0 (the
damping is a traced argument); the first calls (tracing and XLA compilation) are timed
apart as ``compile_s``, and every timed call ends with ``block_until_ready``. Decoding is
``decode_map_states(get_beliefs)``, inside the timed calls like the other engines'
decoding. The convergence run chains I-iteration calls, each from the last messages, up to
the cap. JAX computes in float32 unless ``JAX_ENABLE_X64`` is set; XLA may use both cores.
"""

from __future__ import annotations

import functools
import itertools

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
from .measure import (
    best_of,
    first_converged,
    peak_rss_mb,
    per_iteration,
    reset_peak,
    rss_mb,
    timed,
)
from .workloads import Workload, tiny_like

NAME = "pgmax"
#: Peak resident bytes per pairwise-table entry: 4.7 GB for the 11.5 M entries of the
#: 300 x 300, K = 8 grid; a 300 x 300, K = 32 grid passed 18 GB and was stopped.
BYTES_PER_ENTRY = 420
REQUIREMENTS = 'pip install "jax==0.4.30" "jaxlib==0.4.30" && pip install --no-deps pgmax==0.6.1'


def unavailable() -> str | None:
    """Why PGMax cannot run here, or None."""
    try:
        import jax  # noqa: F401
        from pgmax import fgraph  # noqa: F401
    except Exception as exc:  # ImportError, or an AttributeError of a mismatched JAX
        return f"not installed or broken ({type(exc).__name__}: {exc}); {REQUIREMENTS}"
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip: the estimated peak memory (``BYTES_PER_ENTRY`` per table entry, as
    measured) over half the available memory, or a Python-side build over 500,000 factors."""
    if workload.n_factors > 500_000:
        return f"{workload.n_factors} factors: PGMax's Python-side build takes minutes"
    need = to_mb(BYTES_PER_ENTRY * workload.table_entries + 6 * message_bytes(workload))
    if need > 0.5 * available:
        return f"needs ~{need / 1024:.0f} GiB (~{BYTES_PER_ENTRY} B per table entry), " + (
            f"{available / 1024:.0f} GiB available"
        )
    return None


def build(workload: Workload):
    """(inferer, initial BPArrays, variable group) of ``workload``."""
    from pgmax import fgraph, fgroup, infer, vgroup

    variables = vgroup.NDVarArray(num_states=workload.k, shape=(workload.n_vars,))
    names = [(name, workload.k) for name in variables.variable_hashes.tolist()]
    scopes = [[names[v] for v in scope] for scope in workload.scopes.tolist()]
    graph = fgraph.FactorGraph(variable_groups=variables)
    if workload.arity == 2:
        group = fgroup.PairwiseFactorGroup(
            variables_for_factors=scopes, log_potential_matrix=-workload.tables
        )
    else:
        configs = np.array(list(itertools.product(range(workload.k), repeat=workload.arity)))
        group = fgroup.EnumFactorGroup(
            variables_for_factors=scopes,
            factor_configs=configs,
            log_potentials=-workload.tables.reshape(workload.n_factors, -1),
        )
    graph.add_factors(group)
    bp = infer.build_inferer(graph.bp_state, backend="bp")
    arrays = bp.init(evidence_updates={variables: -workload.unary})
    return bp, arrays, variables


class Runner:
    """Jitted PGMax runs of ``n_iter`` iterations at temperature 0 (one XLA compilation
    per iteration count; the damping is a traced argument), decoding included."""

    def __init__(self, bp, variables, n_iter: int):
        import jax

        self.bp, self.variables, self.n_iter = bp, variables, n_iter
        self.run = jax.jit(functools.partial(bp.run_with_diffs, num_iters=n_iter, temperature=0.0))

    def step(self, arrays, damping: float):
        """(new BPArrays, message changes per iteration as a NumPy array)."""
        out, deltas = self.run(arrays, damping=np.float32(damping))
        return out, np.asarray(deltas)

    def decode(self, arrays) -> np.ndarray:
        """MAP states from the beliefs of ``arrays``."""
        import jax
        from pgmax import infer

        states = infer.decode_map_states(self.bp.get_beliefs(arrays))[self.variables]
        return np.asarray(jax.block_until_ready(states))

    def __call__(self, arrays, damping: float) -> np.ndarray:
        """One timed call: ``n_iter`` iterations from ``arrays``, then decoding."""
        return self.decode(self.step(arrays, damping)[0])

    def converge(self, arrays, damping: float, cap: int) -> tuple[np.ndarray, int | None]:
        """Chained calls until a message change <= 1e-6 or ``cap`` iterations; returns
        (decoded states, iterations to converge or None)."""
        done = 0
        while done < cap:
            arrays, deltas = self.step(arrays, damping)
            hit = first_converged(deltas, CONVERGENCE_TOL)
            if hit is not None:
                return self.decode(arrays), done + hit
            done += self.n_iter
        return self.decode(arrays), None


def warm_up(workload: Workload) -> float:
    """Seconds to build and run a tiny model of the same kinds (JAX start-up, tracing and
    XLA compilation of the small shapes; PGMax's own Numba wiring helpers)."""

    def tiny():
        small = tiny_like(workload)
        bp, arrays, variables = build(small)
        Runner(bp, variables, 2)(arrays, 0.5)

    return timed(tiny)[0]


def run(workload: Workload, options: Options) -> list[dict]:
    """Rows for the flooding schedule at each damping."""
    jit_s = warm_up(workload)
    method = reset_peak()
    before = rss_mb()
    build_s, (bp, arrays, variables) = timed(lambda: build(workload))
    one, many = Runner(bp, variables, 1), Runner(bp, variables, options.iters)
    compile_s = timed(lambda: one(arrays, 0.0))[0] + timed(lambda: many(arrays, 0.0))[0]
    compile_s -= timed(lambda: one(arrays, 0.0))[0] + timed(lambda: many(arrays, 0.0))[0]
    peak = peak_rss_mb() - before
    common = {
        "build_s": build_s,
        "compile_s": max(compile_s, 0.0),
        "jit_s": jit_s,
        "peak_mb": peak,
        "bp_peak_mb": peak,
        "msg_mb": to_mb(message_bytes(workload)),
        "model_mb": to_mb(4.0 * workload.table_entries),
        "bytes_per_iter": minsum_bytes_per_iter(workload, workload.table_entries) / 2,
        "note": join_notes("float32", method),
    }
    return [
        _row(workload, options, arrays, one, many, damping, common) for damping in options.dampings
    ]


def _row(workload, options, arrays, one, many, damping, common) -> dict:
    """Per-iteration time, fixed cost, convergence and decoded energy at one damping."""
    t_one, _ = best_of(lambda: one(arrays, damping), options.repeat, options.budget)
    t_many, states = best_of(lambda: many(arrays, damping), options.repeat, options.budget)
    s_per_iter = per_iteration(t_one, t_many, options.iters)
    n_iter, converged = None, None
    if options.cap > 0:
        states, n_iter = many.converge(arrays, damping, options.cap)
        n_iter, converged = n_iter or options.cap, n_iter is not None
    return make_row(
        NAME,
        workload,
        "parallel",
        damping,
        s_per_iter=s_per_iter,
        fixed_s=max(t_one - s_per_iter, 0.0),
        n_iter=n_iter,
        converged=converged,
        energy=workload.energy(states),
        **common,
    )
