"""Residual belief propagation: the message that would change most is sent first.

Residual BP (Elidan, McGraw & Koller 2006, "Residual belief propagation: informed
scheduling for asynchronous message passing"; libDAI's ``updates=SEQMAX``) keeps, for every
factor-to-variable message, the *candidate* message that the factor would send now and the
*residual*, the largest absolute change between the candidate and the message in force. It
repeatedly commits the message of largest residual, then recomputes the candidates that
this commit changes: a new message ``a -> i`` changes the variable-to-factor message
``i -> b`` of every other factor ``b`` of ``i``, hence the candidates of ``b``'s messages
(unary factors, whose messages depend on nothing, are not recomputed), and with damping the
candidates of ``a`` itself (damped against the message in force). The residuals sit
in an indexed binary max-heap over flat arrays (``heap`` holds edges, ``pos`` each edge's
place in it; ties go to the lower edge index, so a run is deterministic), so both the
choice and an update of a residual cost O(log D).

The messages follow the rules of :func:`factorgraph_ebm.messages.factor_sweep`, called on
one factor with :data:`~factorgraph_ebm.messages.MODE_READ` on the candidate buffer:
normalization to minimum 0, damping against the message in force, every structured kind,
both semirings. An equal pair of infinities counts as no change.

One *iteration* is D message commits (D = number of edges, so that an iteration sends as
many messages as a sweep of the other schedules, libDAI's convention); after it, the
residual reported is the largest residual left (the change the next commit would make),
and the run has converged once that is at most ``tol``, checked before every commit: then
every message is within ``tol`` of what its factor would send, a fixed point of BP to
``tol``. It runs on one thread.
"""

from __future__ import annotations

import numpy as np

from .._config import NJIT_OPTIONS, njit
from . import sweeps as K
from .scratch import scratch, unclamped
from .variables import variable_message, variable_sweep


class Residual:
    """The residual schedule, with the interface of
    :class:`factorgraph_ebm.schedules.Sequential` (``run``, ``finish``): its whole state
    (messages in force, candidates, residuals, heap) lives in this object, so any split of
    the iterations into ``run`` calls gives the same results, bit for bit.

    Memory: one more message buffer (the candidates) and three D-long arrays.
    """

    def __init__(self, cg, energies, kinds, params, unary, f2v, v2f, temperature, damping,
                 tol):
        self.cg, self.unary, self.f2v, self.v2f, self.tol = cg, unary, f2v, v2f, tol
        work = scratch(cg)
        self.lowest = work.lowest
        n_edges = cg.n_edges
        place = np.empty(cg.n_factors, dtype=np.int64)  # factor -> its place in factor_order
        place[cg.factor_order] = np.arange(cg.n_factors)
        self.resid = np.zeros(n_edges)
        self.heap = np.arange(n_edges, dtype=np.int64)
        self.pos = np.arange(n_edges, dtype=np.int64)
        no_totals = (np.empty(0), np.empty(0, dtype=np.int32))
        self.args = (
            energies, kinds, params, unary, cg.n_states, cg.state_offset, cg.scope_ptr,
            cg.scope_vars, cg.edge_factor, cg.edge_stride, cg.msg_offset, cg.table_offset,
            cg.var_edge_ptr, cg.var_edges, cg.factor_order, place, f2v, np.empty_like(f2v),
            v2f, *no_totals, temperature, damping, unclamped(cg), work.counter,
            work.lowest, work.new, work.inc, work.env_v, work.env_z, work.lows, self.resid,
            self.heap, self.pos,
        )
        residual_start(*self.args)

    def run(self, residuals: np.ndarray) -> tuple[int, bool]:
        n_updates = self.cg.n_edges
        for it in range(len(residuals)):
            residuals[it] = residual_updates(*self.args, n_updates, self.tol)
            if residuals[it] <= self.tol:
                return it + 1, True
        return len(residuals), False

    def finish(self) -> None:
        cg = self.cg
        variable_sweep(self.unary, cg.n_states, cg.state_offset, cg.var_edge_ptr,
                         cg.var_edges, cg.msg_offset, 0, cg.n_variables, self.f2v, self.v2f,
                         self.lowest)


# --------------------------------------------------------------------------- kernels
@njit(inline="always", **NJIT_OPTIONS)
def candidates(graph, work, resid, heap, pos, temperature, damping, a):
    """Factor ``a``'s candidate messages into ``cand`` (from the variable-to-factor
    messages of the messages in force ``f2v``, damped against them) and their residuals
    into the heap. ``graph`` and ``work`` are tuples of the kernels' arrays (Numba inlines
    a function of at most 30 arguments; inlined, the call costs no reference counting)."""
    (energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
     edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, place) = graph
    (f2v, cand, v2f, var_total, n_inf, free, counter, lowest, new, inc, env_v, env_z,
     lows) = work
    first = scope_ptr[a]
    last = scope_ptr[a + 1]
    for e in range(first, last):
        for j in range(msg_offset[e], msg_offset[e + 1]):
            cand[j] = f2v[j]  # damping and the Potts fast path read the old message here
        variable_message(n_states, state_offset, scope_vars, var_edge_ptr, var_edges,
                           msg_offset, unary, f2v, v2f, e)
    k = place[a]
    K.factor_sweep(
        energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
        edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, k, k + 1,
        K.MODE_READ, cand, v2f, var_total, n_inf, temperature, damping, free, counter,
        lowest, new, inc, env_v, env_z, lows,
    )
    for e in range(first, last):
        change = 0.0
        for j in range(msg_offset[e], msg_offset[e + 1]):
            diff = abs(cand[j] - f2v[j])
            if diff > change:  # NaN (equal infinities): no change
                change = diff
        set_key(resid, heap, pos, e, change)


@njit(**NJIT_OPTIONS)
def residual_start(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_factor, edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order,
    place, f2v, cand, v2f, var_total, n_inf, temperature, damping, free, counter, lowest,
    new, inc, env_v, env_z, lows, resid, heap, pos,
):
    """Every factor's candidates and residuals, from messages ``f2v``, into a valid heap
    (``heap`` and ``pos`` enter as the identity, ``resid`` as zeros)."""
    graph = (energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
             edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, place)
    work = (f2v, cand, v2f, var_total, n_inf, free, counter, lowest, new, inc, env_v, env_z,
            lows)
    for a in range(len(scope_ptr) - 1):
        candidates(graph, work, resid, heap, pos, temperature, damping, a)


@njit(**NJIT_OPTIONS)
def residual_updates(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_factor, edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order,
    place, f2v, cand, v2f, var_total, n_inf, temperature, damping, free, counter, lowest,
    new, inc, env_v, env_z, lows, resid, heap, pos, n_updates, tol,
):
    """Up to ``n_updates`` commits of the message of largest residual, stopping when that
    residual is at most ``tol``; returns the largest residual left (0.0 without edges)."""
    if len(heap) == 0:
        return 0.0
    graph = (energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
             edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, place)
    work = (f2v, cand, v2f, var_total, n_inf, free, counter, lowest, new, inc, env_v, env_z,
            lows)
    for _ in range(n_updates):
        e = heap[0]
        if resid[e] <= tol:
            break
        for j in range(msg_offset[e], msg_offset[e + 1]):
            f2v[j] = cand[j]
        set_key(resid, heap, pos, e, 0.0)
        i = scope_vars[e]
        a = edge_factor[e]
        for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            b = edge_factor[var_edges[k]]
            # With damping the candidate of a's own message moves with the message in force.
            if (b != a and scope_ptr[b + 1] - scope_ptr[b] >= 2) or (b == a and damping > 0.0):
                candidates(graph, work, resid, heap, pos, temperature, damping, b)
    return resid[heap[0]]


# --------------------------------------------------------------------------- indexed heap
@njit(inline="always", **NJIT_OPTIONS)
def _above(resid, e, f):
    """Whether edge ``e`` goes above edge ``f`` in the heap: larger residual, or equal and
    lower index."""
    return resid[e] > resid[f] or (resid[e] == resid[f] and e < f)


@njit(inline="always", **NJIT_OPTIONS)
def set_key(resid, heap, pos, e, value):
    """Set edge ``e``'s residual to ``value`` and restore the heap order (sift up or
    down from its place)."""
    resid[e] = value
    n = len(heap)
    p = pos[e]
    while p > 0:  # up
        parent = (p - 1) // 2
        f = heap[parent]
        if not _above(resid, e, f):
            break
        heap[p] = f
        pos[f] = p
        p = parent
    while True:  # down
        child = 2 * p + 1
        if child >= n:
            break
        if child + 1 < n and _above(resid, heap[child + 1], heap[child]):
            child += 1
        f = heap[child]
        if not _above(resid, f, e):
            break
        heap[p] = f
        pos[f] = p
        p = child
    heap[p] = e
    pos[e] = p
