"""The loopy schedules of belief propagation: Python drivers of the kernels of
:mod:`factorgraph_ebm.messages` (and of :mod:`factorgraph_ebm.messages.residual` for the residual
schedule), run in paced chunks of iterations.

A schedule object holds one run's state besides the messages (its scratch, its chunks of
work) and has two methods: ``run(residuals)`` does up to ``len(residuals)`` iterations from
the current messages, stopping after the first whose largest message change is at most
``tol``, and returns (iterations done, converged); ``finish()`` writes the
variable-to-factor messages of the final factor-to-variable ones and ends the run (the
flooding schedules free their per-state totals and factor order first: they are not needed
for it, and keeping them raised the peak of a 2000 x 2000 grid by 167 MiB). The factor-to-variable
messages are the whole state of BP between iterations, so any split of the iterations into
``run`` calls gives the same results, bit for bit (tested).

:func:`iterate` runs a schedule in chunks of iterations lasting about
:data:`~factorgraph_ebm._pacing.CHUNK_SECONDS` each (:func:`~factorgraph_ebm._pacing.paced`),
so that Ctrl-C stops BP within a fraction of a second (or one iteration, when an iteration
takes longer), and reports progress to a callback between chunks. The residual history
grows with the iterations done, never with ``max_iter``, and keeps the last
:data:`MAX_RESIDUALS`.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import structured as S
from .._pacing import paced
from . import sweeps as K
from .residual import Residual
from .scratch import scratch, unclamped
from .variables import variable_sweep, variable_totals

#: The residual history (``InferenceResult.residuals``) keeps the last this many
#: iterations' changes (8 MiB): BP "until convergence" (a huge ``max_iter``) on a model
#: that never converges would otherwise fill memory with them.
MAX_RESIDUALS = 2**20

#: Message entries from which flooding uses every thread when ``threads`` is None.
THREADED_ENTRIES = 2**14


class Sequential:
    """The sequential schedule: factors in :func:`sequential_order`, each sending all its
    messages from its variables' current totals minus its own messages, the totals then
    updated with its new messages (:func:`.sweeps.sequential_sweep`); the totals are
    summed afresh at the start of each iteration, so that rounding never accumulates over
    iterations and the messages alone are the state between them. Undamped, the unary
    factors are sent in the run's first iteration only: their messages are fixed after it.

    A Python loop of kernel calls: a compiled loop would take the whole of
    :func:`~factorgraph_ebm.messages.sequential_sweep` into its own compilation again
    (seconds on first use) to save microseconds per iteration.
    """

    def __init__(self, cg, energies, kinds, params, unary, f2v, v2f, temperature, damping,
                 tol):
        self.cg, self.unary, self.f2v, self.v2f, self.tol = cg, unary, f2v, v2f, tol
        self.damping = damping
        work = scratch(cg)
        self.lowest = work.lowest
        n_total = int(cg.state_offset[-1])
        self.args = (
            energies, kinds, params, unary, cg.n_states, cg.state_offset, cg.scope_ptr,
            cg.scope_vars, cg.edge_stride, cg.msg_offset, cg.table_offset, cg.var_edge_ptr,
            cg.var_edges, sequential_order(cg),
        )
        self.skip_unary = False
        self.rest = (f2v, v2f, np.empty(n_total), np.empty(n_total, dtype=np.int32),
                     temperature, damping, unclamped(cg), work.counter, work.lowest,
                     work.new, work.inc, work.env_v, work.env_z, work.lows)

    def run(self, residuals: np.ndarray) -> tuple[int, bool]:
        for it in range(len(residuals)):
            residuals[it] = K.sequential_sweep(*self.args, self.skip_unary, *self.rest)
            self.skip_unary = self.damping == 0.0
            if residuals[it] <= self.tol:
                return it + 1, True
        return len(residuals), False

    def finish(self) -> None:
        cg = self.cg
        self.args = self.rest = None
        variable_sweep(self.unary, cg.n_states, cg.state_offset, cg.var_edge_ptr,
                         cg.var_edges, cg.msg_offset, 0, cg.n_variables, self.f2v, self.v2f,
                         self.lowest)


class Flooding:
    """Flooding on one thread: :class:`Threaded` with one chunk, as a Python loop over the
    very kernel calls that :func:`~factorgraph_ebm.messages.sweeps.flood_phase` makes
    (:func:`~factorgraph_ebm.messages.variable_totals`, the class kernels of
    :func:`~factorgraph_ebm.messages.flood_factors`,
    :func:`~factorgraph_ebm.messages.variable_sweep`), so the results are the same bit for
    bit. Graphs that run on one thread never compile the ``parallel=True`` kernels (tens of
    seconds on first use), and only the class kernels of the factors they have (a pairwise
    min-sum model: not :func:`~factorgraph_ebm.messages.factor_sweep`; a first call on one,
    16.3 -> 12.5 s CPU from this alone)."""

    def __init__(self, cg, energies, kinds, params, unary, f2v, v2f, temperature, damping,
                 tol):
        self.cg, self.energies, self.f2v, self.v2f, self.tol = cg, energies, f2v, v2f, tol
        self.kinds, self.params, self.unary = kinds, params, unary
        self.temperature, self.damping = temperature, damping
        self.order, classes = flood_order(cg, kinds, temperature)
        self.classes = tuple(int(b) for b in classes)
        n_total = int(cg.state_offset[-1])
        self.total = np.empty(n_total)
        self.n_inf = np.empty(n_total, dtype=np.int32)
        self.work = scratch(cg)
        self.free = unclamped(cg)
        self.variables = (unary, cg.n_states, cg.state_offset, cg.var_edge_ptr, cg.var_edges,
                          cg.msg_offset, 0, cg.n_variables, f2v)

    def run(self, residuals: np.ndarray) -> tuple[int, bool]:
        cg, order, work, f2v = self.cg, self.order, self.work, self.f2v
        u_lo, d_lo, s_lo, o_lo, o_hi = self.classes
        for it in range(len(residuals)):
            n_infinite = variable_totals(*self.variables, self.total, self.n_inf)
            mode = K.MODE_FUSED_FINITE if n_infinite == 0 else K.MODE_FUSED
            change = 0.0
            if u_lo < d_lo:
                change = K.flood_unary(self.energies, cg.scope_ptr, cg.msg_offset,
                                       cg.table_offset, order, u_lo, d_lo, f2v, self.damping)
                if self.damping == 0.0:
                    u_lo = d_lo  # fixed from now on (see flood_unary)
                    self.classes = (u_lo, d_lo, s_lo, o_lo, o_hi)
            if d_lo < s_lo:
                change = max(change, K.flood_dense_min_sum(
                    self.energies, cg.state_offset, cg.scope_ptr, cg.scope_vars,
                    cg.msg_offset, cg.table_offset, order, d_lo, s_lo, mode, f2v, self.total,
                    self.n_inf, self.damping, work.inc, work.new,
                ))
            if s_lo < o_lo:
                change = max(change, K.flood_structured_min_sum(
                    self.energies, self.kinds, self.params, cg.state_offset, cg.scope_ptr,
                    cg.scope_vars, cg.edge_stride, cg.msg_offset, cg.table_offset, order, s_lo,
                    o_lo, mode, f2v, self.total, self.n_inf, self.damping, work.inc, work.new,
                    work.env_v, work.env_z,
                ))
            if o_lo < o_hi:
                change = max(change, K.factor_sweep(
                    self.energies, self.kinds, self.params, self.unary, cg.n_states,
                    cg.state_offset, cg.scope_ptr, cg.scope_vars, cg.edge_stride,
                    cg.msg_offset, cg.table_offset, cg.var_edge_ptr, cg.var_edges, order, o_lo,
                    o_hi, mode, f2v, self.v2f, self.total, self.n_inf, self.temperature,
                    self.damping, self.free, work.counter, work.lowest, work.new, work.inc,
                    work.env_v, work.env_z, work.lows,
                ))
            residuals[it] = change
            if change <= self.tol:
                return it + 1, True
        return len(residuals), False

    def finish(self) -> None:
        self.total = self.n_inf = None
        variable_sweep(*self.variables, self.v2f, self.work.lowest)


class Threaded:
    """Flooding on ``threads`` threads (:func:`messages.flood_sweeps`): every
    variable-to-factor message, then every factor-to-variable message from those, per
    iteration.

    The variable side computes, per variable and state, the sum of the finite incoming
    terms and the number of infinite ones (:func:`messages.variable_totals`, S numbers
    instead of the D x K variable-to-factor messages); the factor side derives each
    incoming message as that total minus its own message (no ``inf - inf``) and writes the
    new messages straight into ``f2v`` (they depend only on the totals and on the factor's
    own old messages, read before they are overwritten), so no third buffer is needed. The
    variable-to-factor messages are written once, by :meth:`finish`. Both halves are
    ``prange`` loops (:func:`.sweeps.flood_phase`) over ``4 * threads`` chunks of variables
    and of factors, balanced by work: bitwise the same on any number of threads and chunks.
    """

    def __init__(self, cg, energies, kinds, params, unary, f2v, v2f, temperature, damping,
                 tol, threads):
        self.threads = threads
        n_chunks = 4 * threads
        order, classes = flood_order(cg, kinds, temperature)
        fac_work = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(np.diff(cg.table_offset)[order], out=fac_work[1:])
        n_total = int(cg.state_offset[-1])
        self.bounds = (balanced_chunks(cg.msg_offset[cg.var_edge_ptr], n_chunks),
                       balanced_chunks(fac_work, n_chunks), np.zeros(n_chunks))
        self.free = unclamped(cg)
        self.work = scratch(cg, rows=threads)  # one row per thread (see flood_phase)
        self.totals = (np.empty(n_total), np.empty(n_total, dtype=np.int32))
        self.args = (cg, energies, kinds, params, unary, f2v, v2f, temperature, damping, tol)
        self.order, self.classes = order, classes

    def run(self, residuals: np.ndarray) -> tuple[int, bool]:
        with _threads(self.threads):
            return K.flood_sweeps(*self.args, residuals, self.order, self.classes,
                                  *self.bounds, *self.totals, self.free, self.work)

    def finish(self) -> None:
        cg, energies, kinds, params, unary, f2v, v2f, temperature, damping, _ = self.args
        var_bounds, fac_bounds, changes = self.bounds
        # Not read by phase 2: freed before it writes v2f (of the same types).
        self.totals = (np.empty(0), np.empty(0, dtype=np.int32))
        self.order, self.free = cg.factor_order, np.empty(0, dtype=np.int64)
        with _threads(self.threads):
            K.flood_phase(
                2, len(changes), var_bounds, fac_bounds, changes, energies, kinds, params,
                unary, cg.n_states, cg.state_offset, cg.scope_ptr, cg.scope_vars,
                cg.edge_stride, cg.msg_offset, cg.table_offset, cg.var_edge_ptr, cg.var_edges,
                self.order, self.classes, f2v, v2f, *self.totals, temperature, damping,
                self.free, self.work, K.MODE_FUSED,
            )


class _threads:
    """Context: Numba's threads set to ``n`` inside, restored after."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.previous = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


def schedule(name: str, cg, energies, kinds, params, unary, f2v, v2f, temperature,
             damping: float = 0.0, tol: float = 0.0, threads: int | None = None):
    """The schedule object of ``name`` ("sequential", "residual" or "parallel", i.e.
    flooding) for one run on compiled graph ``cg`` from messages ``f2v`` (updated in place;
    ``v2f`` written by ``finish``).

    ``threads`` (flooding only): at most Numba's ``NUMBA_NUM_THREADS``; None uses them all
    on graphs of more than :data:`THREADED_ENTRIES` message entries, one thread on smaller
    ones. One thread runs :class:`Flooding`, more :class:`Threaded`: the same results.
    """
    args = (cg, energies, kinds, params, unary, f2v, v2f, temperature, float(damping),
            float(tol))
    if name == "sequential":
        return Sequential(*args)
    if name == "residual":
        return Residual(*args)
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        threads = limit if cg.n_message_entries > THREADED_ENTRIES else 1
    threads = min(threads, limit)
    return Flooding(*args) if threads == 1 else Threaded(*args, threads)


def iterate(sweeps, max_iter: int, callback=None,
            finish: bool = True) -> tuple[int, bool, np.ndarray]:
    """Run schedule ``sweeps`` for up to ``max_iter`` iterations in paced chunks, then
    ``finish`` it (with ``finish``; :func:`~factorgraph_ebm.messages.decode` does not
    need it).

    Parameters
    ----------
    sweeps : Sequential, Residual, Flooding or Threaded
    max_iter : int
        Iterations at most (any size: nothing is allocated by it).
    callback : callable, optional
        Called as ``callback(n_iter, residual)`` after each chunk, with the iterations done
        so far and the last one's largest message change.

    Returns
    -------
    n_iter : int
    converged : bool
    residuals : ndarray of shape (min(n_iter, MAX_RESIDUALS),), dtype=float64
        The largest message change of each of the last iterations.
    """
    kept: list[np.ndarray] = []
    n_kept = n_iter = 0
    converged = False
    for lo, hi in paced(max_iter):
        residuals = np.empty(hi - lo)
        done, converged = sweeps.run(residuals)
        kept.append(residuals[:done])
        n_iter += done
        n_kept += done
        if n_kept > 2 * MAX_RESIDUALS:
            kept = [np.concatenate(kept)[-MAX_RESIDUALS:]]
            n_kept = MAX_RESIDUALS
        if callback is not None:
            callback(n_iter, float(residuals[done - 1]))
        if converged:
            break
    if finish:
        sweeps.finish()
    return n_iter, converged, np.concatenate(kept)[-MAX_RESIDUALS:]


def flood_order(cg, kinds, temperature):
    """The factors sorted by the kernel that floods them, and the class boundaries.

    Returns ``order`` (F,), read-only, of ``cg``'s index dtype, and ``classes`` (5,) int64:
    ``order[classes[0]:classes[1]]`` are the unary factors
    (:func:`~factorgraph_ebm.messages.flood_unary`); when ``temperature == 0``,
    ``order[classes[1]:classes[2]]`` the dense pairwise factors
    (:func:`~factorgraph_ebm.messages.flood_dense_min_sum`) and
    ``order[classes[2]:classes[3]]`` the structured ones
    (:func:`~factorgraph_ebm.messages.flood_structured_min_sum`); the rest the others
    (:func:`~factorgraph_ebm.messages.factor_sweep`), each class in factor order. A flooding
    factor's new messages depend only on the previous iteration's, so the order changes
    nothing, bit for bit.
    """
    arity = np.diff(cg.scope_ptr)
    code = np.full(len(arity), 3, dtype=np.int64)
    code[arity == 1] = 0
    if temperature == 0.0:
        code[(arity == 2) & (True if kinds is None else kinds == S.KIND_DENSE)] = 1
        if kinds is not None:
            code[(arity == 2) & (kinds != S.KIND_DENSE)] = 2
    order = np.argsort(code, kind="stable").astype(cg.factor_order.dtype)
    # Read-only and of the index dtype, as cg.factor_order (the sequential schedule's
    # order): factor_sweep compiles once for both.
    order.flags.writeable = False
    classes = np.zeros(5, dtype=np.int64)
    classes[1:] = np.cumsum(np.bincount(code, minlength=4))
    return order, classes


def sequential_order(cg) -> np.ndarray:
    """The sequential schedule's factor order; (F,) read-only, of ``cg``'s index dtype (as
    :func:`flood_order`'s, so :func:`~factorgraph_ebm.messages.factor_sweep` compiles once
    for both).

    The variables are cut into blocks of :func:`block_width` consecutive indices, and the
    factors are taken block by block, by their lowest variable's block (constant factors,
    without variables, first); within a block, by factor index, each unary factor just
    before the first factor of more variables whose lowest variable is its own (at the end
    of the block if there is none).

    A choice for memory locality that keeps the order of information flow. On a grid
    numbered row by row a block is a row: its unary and horizontal factors, then its
    vertical ones, each in memory order, so the dense tables are read as two long runs
    instead of alternating between two places, and the messages are those of the raster
    scan by lowest variable (each factor sees the same new and old messages: the same
    decoded energies on the benchmark grids). A 300 x 300 grid with dense K=32 tables, one
    thread: 346 ms per sweep by lowest variable, 192 ms in this order; the raster scan had
    replaced a breadth-first order (137.7 -> 57.7 ms on a Potts K=8 grid).
    """
    n = cg.n_factors
    arity = np.diff(cg.scope_ptr)
    lowest = np.full(n, -1, dtype=np.int64)  # constant factors first
    has = arity > 0
    if has.any():  # the starts of the scopes that have variables: whole segments
        lowest[has] = np.minimum.reduceat(cg.scope_vars, cg.scope_ptr[:-1][has])
    # Within a block: factor a at 2a; a unary factor at 2b - 1, b the first factor of more
    # variables whose lowest variable is its own (2n - 1, the block's end, if none).
    position = 2 * np.arange(n, dtype=np.int64)
    multi = np.flatnonzero(arity > 1)
    first = np.full(cg.n_variables, 2 * n, dtype=np.int64)
    np.minimum.at(first, lowest[multi], 2 * multi)
    unary = np.flatnonzero(arity == 1)
    position[unary] = first[lowest[unary]] - 1
    block = np.where(lowest < 0, -1, lowest // block_width(cg))
    # One integer key and a stable sort, spans of a sample: 0.53 -> 0.09 s on a 1000 x
    # 1000 grid against a lexsort of float positions and every factor's span (the raster
    # scan's argsort: 0.05 s).
    order = np.argsort(block * (2 * n + 1) + position, kind="stable")
    order = order.astype(cg.factor_order.dtype)
    order.flags.writeable = False
    return order


#: :func:`block_width` reads the spans of at most about this many factors, evenly spaced.
SPAN_SAMPLE = 2**16


def block_width(cg) -> int:
    """The block width of :func:`sequential_order`: the 90th percentile of the index spans
    (largest minus smallest variable index) of the factors of two or more variables (of
    :data:`SPAN_SAMPLE` of them, evenly spaced, on larger graphs), at least 1. On a grid
    numbered row by row, the row width (the vertical factors' span); on a chain 1 (the
    order is then by lowest variable); on a graph numbered at random about the number of
    variables (the order is then by factor index)."""
    arity = np.diff(cg.scope_ptr)
    multi = np.flatnonzero(arity > 1)
    if len(multi) == 0:
        return 1
    sample = multi[:: max(1, len(multi) // SPAN_SAMPLE)]
    counts = arity[sample]
    segment = np.cumsum(counts) - counts  # each sampled scope's start, back to back
    picked = cg.scope_vars[np.repeat(cg.scope_ptr[sample] - segment, counts)
                           + np.arange(int(counts.sum()))]
    spans = np.maximum.reduceat(picked, segment) - np.minimum.reduceat(picked, segment)
    return max(1, int(np.percentile(spans, 90, method="lower")))


def balanced_chunks(work_ptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Boundaries (n_chunks + 1,) int64 splitting items 0..len(work_ptr)-2 into contiguous
    chunks of about equal work, where item j's work is ``work_ptr[j+1] - work_ptr[j]`` plus
    one (``work_ptr`` is a nondecreasing prefix sum): chunk c starts at the first item whose
    work before it reaches c / n_chunks of the total."""
    n = len(work_ptr) - 1
    before = work_ptr[:n] - work_ptr[0] + np.arange(n)  # work before item j
    total = int(work_ptr[n] - work_ptr[0]) + n
    goals = total * np.arange(1, n_chunks, dtype=np.int64) // n_chunks
    bounds = np.empty(n_chunks + 1, dtype=np.int64)
    bounds[0], bounds[n_chunks] = 0, n
    bounds[1:n_chunks] = np.searchsorted(before, goals, side="left")
    return bounds
