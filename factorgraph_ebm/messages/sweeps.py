"""Sweeps over the factors: flooding (the parallel schedule: every message from the previous
iteration's, ``prange`` over chunks balanced by work, one kernel per class of factors), the
sequential sweep in a given order (:func:`factor_sweep`), and the exact two-pass schedule on
forests (:func:`run_two_pass`). The Python drivers of the iterations are in
:mod:`factorgraph_ebm.messages.schedules`.
"""

import numpy as np
from numba import prange

from .._config import INF, NJIT_OPTIONS, njit
from ..structured import (
    KIND_DENSE,
    KIND_POTTS,
)
from .factor import edge_message, potts_store, potts_store_total, shift_damp_store, store_message
from .generic import generic_message, triple_min_sum
from .pairwise import dense_pair_min_sum, pair_message, table_pair_message
from .variables import (
    add_to_totals,
    incoming_from_totals,
    take_from_totals,
    variable_message,
    variable_messages,
    variable_sweep,
    variable_totals,
)

PARALLEL_OPTIONS = dict(NJIT_OPTIONS, parallel=True)

#: Where :func:`factor_sweep` gets a factor's incoming messages from.
MODE_READ = 0
MODE_FRESH = 1
MODE_FUSED = 2
MODE_FUSED_FINITE = 3  # MODE_FUSED when no total has an infinite term (a plain subtraction)
MODE_SEQUENTIAL = 4


@njit(**NJIT_OPTIONS)
def flood_unary(energies, scope_ptr, msg_offset, table_offset, order, lo, hi, f2v, damping):
    """Flooding, unary factors ``order[lo:hi]``: each message is the factor's normalized
    table, damped and stored in ``f2v``; returns the largest change.

    Undamped, one call leaves these messages fixed: a second would store the same values
    and return a change of 0, so the flooding drivers call it once per run (a 300 x 300
    grid, K=32, one thread: 8 ms of the 152 ms an iteration took then)."""
    change = 0.0
    for k in range(lo, hi):
        a = order[k]
        first = scope_ptr[a]
        toff = table_offset[a]
        # A unary factor's message is its normalized table: straight into the store.
        start = msg_offset[first]
        n = msg_offset[first + 1] - start
        low = INF
        for x in range(n):
            low = min(low, energies[toff + x])
        change = shift_damp_store(energies, toff, low, f2v, start, n, damping, change)
    return change


@njit(**NJIT_OPTIONS)
def flood_dense_min_sum(energies, state_offset, scope_ptr, scope_vars, msg_offset,
                        table_offset, order, lo, hi, mode, f2v, var_total, n_inf, damping,
                        inc, new):
    """Flooding, min-sum, dense pairwise factors ``order[lo:hi]`` (the hot path): both
    messages of each factor from the totals of :func:`variable_totals` (``mode``
    :data:`MODE_FUSED` or :data:`MODE_FUSED_FINITE`, as in :func:`factor_sweep`),
    normalized, damped and stored in ``f2v``; returns the largest change. ``inc`` and
    ``new`` are scratch of 2 * max_states entries.

    The rules of :func:`~.variables.incoming_from_totals` and
    :func:`~.factor.shift_damp_store` are written out here, not called: inlined, they made
    this kernel 26% slower (a 300 x 300 K=8 grid, one thread, quiet machine: 18.0 -> 22.7
    ms per sweep), and this is the hot path of flooding. Tests hold it to the general
    kernels bit for bit (tests/test_structured.py)."""
    change = 0.0
    for k in range(lo, hi):
        a = order[k]
        first = scope_ptr[a]
        toff = table_offset[a]
        # Dense pairwise min-sum, fused (the flooding hot path): incoming messages into
        # inc[:n0] and inc[n0:], then one row pass and one column pass over the table
        # (reductions into scalars, no store in the inner loops; the table is in L1
        # for the second pass), normalize, damp and store.
        m0 = msg_offset[first]
        m1 = msg_offset[first + 1]
        n0 = m1 - m0
        n1 = msg_offset[first + 2] - m1
        s0 = state_offset[scope_vars[first]]
        s1 = state_offset[scope_vars[first + 1]]
        if mode == MODE_FUSED_FINITE:
            for x in range(n0):
                inc[x] = var_total[s0 + x] - f2v[m0 + x]
            for y in range(n1):
                inc[n0 + y] = var_total[s1 + y] - f2v[m1 + y]
        else:
            for q in range(2):
                s_q = s0 if q == 0 else s1
                m_q = m0 if q == 0 else m1
                n_q = n0 if q == 0 else n1
                d_q = 0 if q == 0 else n0
                for x in range(n_q):
                    own = f2v[m_q + x]
                    if own < INF:
                        inc[d_q + x] = (var_total[s_q + x] - own if n_inf[s_q + x] == 0
                                        else INF)
                    else:
                        inc[d_q + x] = var_total[s_q + x] if n_inf[s_q + x] == 1 else INF
        low0, low1 = dense_pair_min_sum(energies, toff, n0, n1, inc, new)
        for q in range(2):
            start = m0 if q == 0 else m1
            n = n0 if q == 0 else n1
            out = 0 if q == 0 else n0
            low = low0 if q == 0 else low1
            if low == INF:
                low = 0.0
            if damping > 0.0:
                for x in range(n):
                    old = f2v[start + x]
                    value = damping * old + (1.0 - damping) * (new[out + x] - low)
                    diff = abs(value - old)
                    if diff > change:
                        change = diff
                    f2v[start + x] = value
            else:
                for x in range(n):
                    value = new[out + x] - low
                    diff = abs(value - f2v[start + x])
                    if diff > change:
                        change = diff
                    f2v[start + x] = value
    return change


@njit(**NJIT_OPTIONS)
def flood_structured_min_sum(energies, kinds, params, state_offset, scope_ptr, scope_vars,
                             edge_stride, msg_offset, table_offset, order, lo, hi, mode, f2v,
                             var_total, n_inf, damping, inc, new, env_v, env_z):
    """Flooding, min-sum, structured pairwise factors ``order[lo:hi]`` (Potts, truncated
    linear and quadratic, compact or not): both O(K) messages of each factor
    (:func:`~.pairwise.pair_message`) from the totals of :func:`variable_totals` (``mode``
    as in :func:`flood_dense_min_sum`), normalized, damped and stored in ``f2v``; returns
    the largest change. ``inc`` and ``new`` are scratch of 2 * max_states entries,
    ``env_v``/``env_z`` of max_states + 2.

    The same arithmetic as :func:`factor_sweep` (so the same messages bit for bit) in a
    kernel of its own: through :func:`factor_sweep`'s general loop the factors of a
    300 x 300 Potts grid took 41.5 ms per sweep at K=8 and 133 ms at K=32, in this kernel
    9.1 and 30 ms (one thread, interleaved in one process, load 4-8)."""
    change = 0.0
    finite = mode == MODE_FUSED_FINITE
    for k in range(lo, hi):
        a = order[k]
        first = scope_ptr[a]
        m0 = msg_offset[first]
        m1 = msg_offset[first + 1]
        n0 = m1 - m0
        n1 = msg_offset[first + 2] - m1
        s0 = state_offset[scope_vars[first]]
        s1 = state_offset[scope_vars[first + 1]]
        if finite:
            # Unsigned indices (no negative-index wraparound): these loops vectorize.
            for x in range(np.uint64(n0)):
                inc[x] = var_total[np.uint64(s0) + x] - f2v[np.uint64(m0) + x]
            for y in range(np.uint64(n1)):
                inc[np.uint64(n0) + y] = var_total[np.uint64(s1) + y] - f2v[np.uint64(m1) + y]
        else:
            incoming_from_totals(var_total, n_inf, f2v, s0, m0, n0, False, inc, 0)
            incoming_from_totals(var_total, n_inf, f2v, s1, m1, n1, False, inc, n0)
        kind = kinds[a]
        w = params[a, 0]
        tau = params[a, 1]
        if kind == KIND_POTTS and w >= 0.0 and n0 == n1:
            change = potts_store(inc, n0, n0, w, f2v, m0, damping, change)
            change = potts_store(inc, 0, n0, w, f2v, m1, damping, change)
            continue
        has_table = table_offset[a + 1] > table_offset[a]
        for q in range(2):
            e = first + q
            o = first + 1 - q
            pair_message(energies, table_offset[a], has_table, edge_stride[e], edge_stride[o],
                         n1 if q else n0, n0 if q else n1, inc, 0 if q else n0, kind, w, tau,
                         0.0, new, 0, env_v, env_z)
            start = m1 if q else m0
            n = n1 if q else n0
            low = INF
            for x in range(n):
                low = min(low, new[x])
            change = shift_damp_store(new, 0, low, f2v, start, n, damping, change)
    return change


@njit(**NJIT_OPTIONS)
def factor_sweep(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, lo, hi,
    mode, f2v, v2f, var_total, n_inf, temperature, damping, free, counter, lowest, new, inc,
    env_v, env_z, lows,
):
    """Every message of the factors ``order[lo:hi]``, normalized, damped and stored in
    ``f2v``; returns the largest change. The incoming messages depend on ``mode``:
    :data:`MODE_FRESH` computes them from the variables' current incoming messages (O(degree)
    per edge); :data:`MODE_FUSED` derives them from the per-state totals ``var_total``
    (finite terms) and ``n_inf`` (number of +inf terms) of :func:`variable_totals` minus
    the factor's own message (flooding); :data:`MODE_SEQUENTIAL` does the same and then
    adds the factor's new messages to the totals, so that the next factor sees them (the
    sequential schedule, through :func:`sequential_sweep`: O(1) per edge, not O(degree));
    :data:`MODE_READ` reads ``v2f`` as it is. ``inc`` (2 * max_states) is scratch for the
    fused and sequential modes.

    Any factor in any mode; flooding sends its unary and its dense min-sum pairwise factors
    to :func:`flood_unary` and :func:`flood_dense_min_sum` instead (see
    :func:`flood_order`), so that a graph of only those never compiles this kernel (7-8 s,
    40% of a first BP call's compilation). ``kinds=None``: a plain graph (see the module
    docstring).

    The per-edge rules are helpers inlined at the Numba IR level (``inline="always"``) that
    take whole arrays and offsets, never slices: a slice per edge, or a real call, costs
    reference counting on every edge, several times the O(K) work itself. ``new`` has room
    for max_arity * max_states entries; ``env_v``/``env_z`` for max_states + 2. Arity-3
    min-sum factors with a table and no clamped variable take
    :func:`~.generic.triple_min_sum` (one pass over the table), the other factors of
    arity >= 3 :func:`~.generic.generic_message`.
    """
    stride = len(lowest)
    change = 0.0
    for k in range(lo, hi):
        a = order[k]
        first = scope_ptr[a]
        last = scope_ptr[a + 1]
        arity = last - first
        toff = table_offset[a]
        src = v2f
        src0 = msg_offset[first]
        src1 = msg_offset[first + 1] if arity >= 2 else 0
        if mode == MODE_FRESH:
            for e in range(first, last):
                variable_message(n_states, state_offset, scope_vars, var_edge_ptr, var_edges,
                                 msg_offset, unary, f2v, v2f, e)
        elif mode == MODE_SEQUENTIAL:
            # The factor's own messages out of its variables' totals, the rest its incoming
            # messages (the new messages go back in after the store, below).
            for e in range(first, last):
                i = scope_vars[e]
                dst = inc if arity == 2 else v2f
                doff = (e - first) * stride if arity == 2 else msg_offset[e]
                take_from_totals(var_total, n_inf, f2v, state_offset[i], msg_offset[e],
                                 n_states[i], False, dst, doff)
            if arity == 2:
                src = inc
                src0 = 0
                src1 = stride
        elif mode >= MODE_FUSED and arity >= 2:
            # Incoming messages from the variables' totals of the previous iteration minus
            # the factor's own message (which only this factor writes, after reading it).
            for e in range(first, last):
                i = scope_vars[e]
                n = n_states[i]
                soff = state_offset[i]
                moff = msg_offset[e]
                if arity == 2:
                    dst = inc
                    doff = (e - first) * stride
                else:
                    dst = v2f
                    doff = moff
                incoming_from_totals(var_total, n_inf, f2v, soff, moff, n,
                                     mode == MODE_FUSED_FINITE, dst, doff)
            if arity == 2:
                src = inc
                src0 = 0
                src1 = stride
        # Without kinds (a plain graph: dense tables, arity <= 2) the branches that test
        # `structured` are pruned before typing: that specialization never compiles them.
        structured = kinds is not None
        kind = kinds[a] if structured else KIND_DENSE
        lows[0] = np.nan  # NaN: the store loop finds the minimum itself
        lows[1] = np.nan
        if arity == 1:
            low = INF
            for x in range(n_states[scope_vars[first]]):
                new[x] = energies[toff + x]
                low = min(low, new[x])
            lows[0] = low
        elif arity == 2 and kind == KIND_DENSE and temperature == 0.0:
            # Both messages in one pass over the table (rows: first variable).
            m0 = src0
            m1 = src1
            n0 = msg_offset[first + 1] - msg_offset[first]
            n1 = msg_offset[first + 2] - msg_offset[first + 1]
            for y in range(n1):
                new[stride + y] = INF
            low0 = INF
            for x in range(n0):
                base = toff + x * n1
                incoming = src[m0 + x]
                low = INF
                for y in range(n1):
                    t = energies[base + y]
                    low = min(low, t + src[m1 + y])
                    new[stride + y] = min(new[stride + y], t + incoming)
                new[x] = low
                low0 = min(low0, low)
            lows[0] = low0
        elif arity == 2:
            w = params[a, 0] if structured else 0.0
            tau = params[a, 1] if structured else 0.0
            for q in range(2):
                e = first + q
                o = first + 1 - q
                out = q * stride
                n_t = msg_offset[e + 1] - msg_offset[e]
                n_o = msg_offset[o + 1] - msg_offset[o]
                m_o = src1 if q == 0 else src0
                s_t = edge_stride[e]
                s_o = edge_stride[o]
                if (structured and kind == KIND_POTTS and w >= 0.0 and n_t == n_o
                        and temperature == 0.0):
                    change = potts_store(src, m_o, n_t, w, f2v, msg_offset[e], damping,
                                         change)
                    lows[q] = -INF
                elif structured:
                    pair_message(energies, toff, table_offset[a + 1] > toff, s_t, s_o, n_t,
                                 n_o, src, m_o, kind, w, tau, temperature, new, out, env_v,
                                 env_z)
                else:
                    table_pair_message(energies, toff, True, s_t, s_o, n_t, n_o, src, m_o,
                                       KIND_DENSE, 0.0, 0.0, temperature, new, out)
        elif (structured and arity == 3 and temperature == 0.0 and table_offset[a + 1] > toff
              and free[scope_vars[first]] < 0 and free[scope_vars[first + 1]] < 0
              and free[scope_vars[first + 2]] < 0):
            m0 = msg_offset[first]
            m1 = msg_offset[first + 1]
            m2 = msg_offset[first + 2]
            triple_min_sum(energies, toff, m1 - m0, m2 - m1, msg_offset[first + 3] - m2, v2f,
                           m0, m1, m2, new, stride)
        elif structured:  # arity >= 3
            for e in range(first, last):
                generic_message(
                    energies, n_states, scope_ptr, scope_vars, msg_offset, table_offset, v2f,
                    e, a, temperature, free, new[(e - first) * stride :], counter, lowest,
                )
        # Normalize to minimum 0, damp, store, track the largest change (a NaN difference,
        # of two equal infinities, is no change).
        for e in range(first, last):
            out = (e - first) * stride
            start = msg_offset[e]
            n = msg_offset[e + 1] - start
            low = lows[e - first] if e - first < 2 else np.nan
            if low == -INF:
                continue
            if np.isnan(low):
                low = INF
                for x in range(n):
                    low = min(low, new[out + x])
            change = shift_damp_store(new, out, low, f2v, start, n, damping, change)
        if mode == MODE_SEQUENTIAL:
            for e in range(first, last):
                i = scope_vars[e]
                add_to_totals(var_total, n_inf, f2v, state_offset[i], msg_offset[e],
                              n_states[i], False, inc, 0)
    return change


@njit(inline="always", **NJIT_OPTIONS)
def pair_class(kinds, params, msg_offset, first, a):
    """The min-sum rule of :func:`sequential_pairs` for pairwise factor ``a`` (its first
    edge ``first``): 1 its dense table (:func:`~.pairwise.dense_pair_min_sum`), 2 Potts
    (:func:`~.factor.potts_store`: weight >= 0, both variables with as many states), 0
    neither (a truncated kind, a negative Potts weight)."""
    if kinds is None or kinds[a] == KIND_DENSE:
        return 1
    n0 = msg_offset[first + 1] - msg_offset[first]
    n1 = msg_offset[first + 2] - msg_offset[first + 1]
    if kinds[a] == KIND_POTTS and params[a, 0] >= 0.0 and n0 == n1:
        return 2
    return 0


@njit(inline="always", **NJIT_OPTIONS)
def _pair_run(energies, kinds, params, state_offset, scope_ptr, scope_vars, msg_offset,
              table_offset, order, k, skip_unary, f2v, var_total, n_inf, finite, damping, inc,
              new, change):
    """:func:`sequential_pairs` with ``finite`` a constant of the caller: it stops after a
    factor that puts an infinite entry into the totals when ``finite``."""
    while k < len(order):
        a = order[k]
        first = scope_ptr[a]
        arity = scope_ptr[a + 1] - first
        if arity == 1 and skip_unary:
            k += 1
            continue
        if arity != 2:
            break
        rule = pair_class(kinds, params, msg_offset, first, a)
        if rule == 0:
            break
        k += 1
        m0 = msg_offset[first]
        m1 = msg_offset[first + 1]
        n0 = m1 - m0
        n1 = msg_offset[first + 2] - m1
        s0 = state_offset[scope_vars[first]]
        s1 = state_offset[scope_vars[first + 1]]
        take_from_totals(var_total, n_inf, f2v, s0, m0, n0, finite, inc, 0)
        take_from_totals(var_total, n_inf, f2v, s1, m1, n1, finite, inc, n0)
        if rule == 2:
            w = params[a, 0]
            # Finite in, finite out: the totals are written in the store loops.
            change = potts_store_total(inc, n0, n0, w, f2v, m0, damping, change, finite,
                                       var_total, s0, inc, 0)
            change = potts_store_total(inc, 0, n0, w, f2v, m1, damping, change, finite,
                                       var_total, s1, inc, n0)
            if finite:
                continue
        else:
            low0, low1 = dense_pair_min_sum(energies, table_offset[a], n0, n1, inc, new)
            change = shift_damp_store(new, 0, low0, f2v, m0, n0, damping, change)
            change = shift_damp_store(new, n0, low1, f2v, m1, n1, damping, change)
        # Both calls take the factor's entry state: in the finite mode neither variable's
        # totals were touched by take_from_totals, whatever the other message holds.
        still0 = add_to_totals(var_total, n_inf, f2v, s0, m0, n0, finite, inc, 0)
        still1 = add_to_totals(var_total, n_inf, f2v, s1, m1, n1, finite, inc, n0)
        if finite and not (still0 and still1):
            return k, change, False
    return k, change, finite


@njit(**NJIT_OPTIONS)
def sequential_pairs(energies, kinds, params, state_offset, scope_ptr, scope_vars, msg_offset,
                     table_offset, order, k, skip_unary, f2v, var_total, n_inf, finite,
                     damping, inc, new, change):
    """:func:`sequential_sweep`'s min-sum pairwise factors: from ``order[k]`` on, the run of
    factors that are pairwise with a :func:`pair_class` (or, with ``skip_unary``, unary,
    then skipped), each taking its incoming messages from the totals and putting its new
    ones back (``finite``: no total has an infinite term; the run then stops after a
    factor that adds one). Returns (the index of the first factor it did not take, the
    largest change so far, ``finite`` after the run).

    A kernel of its own, called once per run (on a grid, once per sweep after the first),
    with one copy of the loop per value of ``finite``, each knowing it: with these rules
    in :func:`sequential_sweep`'s loop among the other kinds', and the infinite rules
    beside the finite ones, a 300 x 300 Potts grid's pairwise factors took 14.7 ms per
    sweep at K=8, against 5.6 ms for the finite rules alone in a loop of their own (one
    thread, interleaved in one process)."""
    if finite:
        return _pair_run(energies, kinds, params, state_offset, scope_ptr, scope_vars,
                         msg_offset, table_offset, order, k, skip_unary, f2v, var_total,
                         n_inf, True, damping, inc, new, change)
    return _pair_run(energies, kinds, params, state_offset, scope_ptr, scope_vars, msg_offset,
                     table_offset, order, k, skip_unary, f2v, var_total, n_inf, False, damping,
                     inc, new, change)


@njit(**NJIT_OPTIONS)
def sequential_sweep(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, skip_unary, f2v,
    v2f, var_total, n_inf, temperature, damping, free, counter, lowest, new, inc, env_v,
    env_z, lows,
):
    """One sweep of the sequential schedule over the factors ``order``; returns the largest
    change.

    First the variables' totals (:func:`variable_totals`, summed afresh, so rounding never
    accumulates over sweeps), then the factors in turn, each taking its incoming messages
    as its variables' totals minus its own messages and putting its new messages back
    (:func:`factor_sweep` in :data:`MODE_SEQUENTIAL`). While no total has an infinite term
    the sweep takes plain subtractions. With ``skip_unary`` the unary factors are skipped:
    undamped, after one sweep their messages are their normalized tables for good (a 300 x
    300 Potts grid, K=8, one thread: a third of the factors). Runs of min-sum pairwise
    factors with a dense table or Potts go to :func:`sequential_pairs`; unary factors and
    arity-3 min-sum factors with a table (:func:`~.generic.triple_min_sum`) are sent here,
    the others through a call of :func:`factor_sweep` each (~100 ns): the same arithmetic
    as :func:`factor_sweep`, bit for bit. ``kinds=None``: a plain graph (see the module
    docstring)."""
    change = 0.0
    finite = variable_totals(unary, n_states, state_offset, var_edge_ptr, var_edges,
                             msg_offset, np.int64(0), np.int64(len(n_states)), f2v, var_total,
                             n_inf) == 0
    k = 0
    while k < len(order):
        a = order[k]
        first = scope_ptr[a]
        arity = scope_ptr[a + 1] - first
        kind = KIND_DENSE if kinds is None else kinds[a]
        if temperature == 0.0 and ((arity == 1 and skip_unary) or (
                arity == 2 and pair_class(kinds, params, msg_offset, first, a) > 0)):
            k, change, finite = sequential_pairs(
                energies, kinds, params, state_offset, scope_ptr, scope_vars, msg_offset,
                table_offset, order, k, skip_unary, f2v, var_total, n_inf, finite, damping,
                inc, new, change,
            )
            continue
        k += 1
        if arity == 0 or (arity == 1 and skip_unary):
            continue  # a constant factor (no messages), or a fixed unary message
        if arity == 1:
            i = scope_vars[first]
            start = msg_offset[first]
            n = n_states[i]
            take_from_totals(var_total, n_inf, f2v, state_offset[i], start, n, finite, v2f,
                             start)
            toff = table_offset[a]
            low = INF
            for x in range(n):
                low = min(low, energies[toff + x])
            change = shift_damp_store(energies, toff, low, f2v, start, n, damping, change)
            finite = add_to_totals(var_total, n_inf, f2v, state_offset[i], start, n, finite,
                                   v2f, start)
            continue
        if arity == 3 and temperature == 0.0 and (kinds is None or kind == KIND_DENSE) \
                and table_offset[a + 1] > table_offset[a]:
            stride = len(lowest)
            for q in range(3):
                e = first + q
                i = scope_vars[e]
                take_from_totals(var_total, n_inf, f2v, state_offset[i], msg_offset[e],
                                 n_states[i], finite, v2f, msg_offset[e])
            n0 = msg_offset[first + 1] - msg_offset[first]
            n1 = msg_offset[first + 2] - msg_offset[first + 1]
            n2 = msg_offset[first + 3] - msg_offset[first + 2]
            triple_min_sum(energies, table_offset[a], n0, n1, n2, v2f, msg_offset[first],
                           msg_offset[first + 1], msg_offset[first + 2], new, stride)
            for q in range(3):
                e = first + q
                start = msg_offset[e]
                n = msg_offset[e + 1] - start
                low = INF
                for x in range(n):
                    low = min(low, new[q * stride + x])
                change = shift_damp_store(new, q * stride, low, f2v, start, n, damping,
                                          change)
            entry = finite  # each variable's totals as take_from_totals left them
            for q in range(3):
                e = first + q
                i = scope_vars[e]
                still = add_to_totals(var_total, n_inf, f2v, state_offset[i], msg_offset[e],
                                      n_states[i], entry, v2f, msg_offset[e])
                finite = finite and still
            continue
        finite = False  # factor_sweep takes the general rules
        change = max(change, factor_sweep(
            energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
            edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, k - 1, k,
            MODE_SEQUENTIAL, f2v, v2f, var_total, n_inf, temperature, damping, free, counter,
            lowest, new, inc, env_v, env_z, lows,
        ))
    return change


@njit(**PARALLEL_OPTIONS)
def flood_phase(
    phase, n_chunks, var_bounds, fac_bounds, changes, energies, kinds, params, unary,
    n_states, state_offset, scope_ptr, scope_vars, edge_stride, msg_offset, table_offset,
    var_edge_ptr, var_edges, order, classes, f2v, v2f, total, n_inf, temperature, damping,
    free, work, mode,
):
    """One ``prange`` loop over ``n_chunks`` chunks for every half-iteration of flooding:
    phase 0 the variables' totals (:func:`variable_totals`), phase 1 the factors' messages
    (:func:`flood_factors`; chunk maxima of the change into ``changes``), phase 2 the
    variable-to-factor messages (:func:`variable_sweep`). One parallel loop, not three, to
    keep the first compilation short. Phase 0 leaves each chunk's number of infinite terms
    in ``changes``; ``mode`` is phase 1's :data:`MODE_FUSED` or :data:`MODE_FUSED_FINITE`.

    ``work`` is a :class:`Scratch` with one row per thread (R rows, R dividing
    ``n_chunks``): the ``prange`` loop runs over the rows, row t taking chunks
    ``t * n_chunks / R`` to ``(t + 1) * n_chunks / R - 1`` with its scratch, as a static
    schedule would give them to thread t.
    """
    n_rows = work.lowest.shape[0]
    per_row = n_chunks // n_rows
    for t in prange(n_rows):
        for c in range(t * per_row, (t + 1) * per_row):
            if phase == 0:
                changes[c] = variable_totals(
                    unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset,
                    var_bounds[c], var_bounds[c + 1], f2v, total, n_inf,
                )
            elif phase == 1:
                changes[c] = flood_factors(
                    energies, kinds, params, unary, n_states, state_offset, scope_ptr,
                    scope_vars, edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges,
                    order, classes, fac_bounds[c], fac_bounds[c + 1], mode, f2v, v2f, total,
                    n_inf, temperature, damping, free, work.counter[t], work.lowest[t],
                    work.new[t], work.inc[t], work.env_v[t], work.env_z[t], work.lows[t],
                )
            else:
                variable_sweep(
                    unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset,
                    var_bounds[c], var_bounds[c + 1], f2v, v2f, work.lowest[t],
                )


@njit(**NJIT_OPTIONS)
def flood_factors(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, classes, lo, hi,
    mode, f2v, v2f, total, n_inf, temperature, damping, free, counter, lowest, new, inc,
    env_v, env_z, lows,
):
    """Flooding's factor side for the factors ``order[lo:hi]`` of an order sorted by
    :func:`~factorgraph_ebm.messages.schedules.flood_order` (``classes`` its class boundaries): each
    class's part by its kernel (:func:`flood_unary`, :func:`flood_dense_min_sum`,
    :func:`factor_sweep`, with the scratch of a :class:`Scratch` row); returns the largest
    change. The threaded schedule's per-chunk step; one thread calls the class kernels from
    Python (:class:`.schedules.Flooding`), so that it compiles only those it
    needs."""
    change = 0.0
    u_lo = max(lo, classes[0])
    u_hi = min(hi, classes[1])
    if u_lo < u_hi:
        change = max(change, flood_unary(energies, scope_ptr, msg_offset, table_offset,
                                         order, u_lo, u_hi, f2v, damping))
    d_lo = max(lo, classes[1])
    d_hi = min(hi, classes[2])
    if d_lo < d_hi:
        change = max(change, flood_dense_min_sum(
            energies, state_offset, scope_ptr, scope_vars, msg_offset, table_offset, order,
            d_lo, d_hi, mode, f2v, total, n_inf, damping, inc, new,
        ))
    s_lo = max(lo, classes[2])
    s_hi = min(hi, classes[3])
    if kinds is not None and s_lo < s_hi:  # pruned for a plain graph (kinds=None)
        change = max(change, flood_structured_min_sum(
            energies, kinds, params, state_offset, scope_ptr, scope_vars, edge_stride,
            msg_offset, table_offset, order, s_lo, s_hi, mode, f2v, total, n_inf, damping,
            inc, new, env_v, env_z,
        ))
    o_lo = max(lo, classes[3])
    o_hi = min(hi, classes[4])
    if o_lo < o_hi:
        change = max(change, factor_sweep(
            energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
            edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, o_lo, o_hi,
            mode, f2v, v2f, total, n_inf, temperature, damping, free, counter, lowest, new,
            inc, env_v, env_z, lows,
        ))
    return change


@njit(**NJIT_OPTIONS)
def flood_sweeps(
    cg, energies, kinds, params, unary, f2v, v2f, temperature, damping, tol, residuals, order,
    classes, var_bounds, fac_bounds, changes, total, n_inf, free, work,
):
    """Threaded flooding: up to ``len(residuals)`` iterations, each the variables' totals
    then the factors' messages (:func:`flood_phase`, phases 0 and 1), stopping after the
    first whose largest message change (``residuals[t]``) is at most ``tol``. Returns
    (iterations done, converged). The variable-to-factor messages are not written (phase 2,
    once after the last call). The set-up (chunks, totals, scratch) is
    :class:`~factorgraph_ebm.messages.schedules.Threaded`'s. Undamped, the unary class is
    emptied in ``classes`` after the first iteration (see :func:`flood_unary`)."""
    n_chunks = len(changes)
    # Plain int64s, not literals: a literal argument would compile flood_phase once per value.
    totals = np.int64(0)
    factors = np.int64(1)
    for it in range(len(residuals)):
        flood_phase(
            totals, n_chunks, var_bounds, fac_bounds, changes, energies, kinds, params,
            unary, cg.n_states, cg.state_offset, cg.scope_ptr, cg.scope_vars, cg.edge_stride,
            cg.msg_offset, cg.table_offset, cg.var_edge_ptr, cg.var_edges, order, classes,
            f2v, v2f, total, n_inf, temperature, damping, free, work, np.int64(MODE_FUSED),
        )
        n_infinite = 0.0
        for c in range(n_chunks):
            n_infinite += changes[c]
        mode = MODE_FUSED_FINITE if n_infinite == 0.0 else MODE_FUSED
        flood_phase(
            factors, n_chunks, var_bounds, fac_bounds, changes, energies, kinds, params,
            unary, cg.n_states, cg.state_offset, cg.scope_ptr, cg.scope_vars, cg.edge_stride,
            cg.msg_offset, cg.table_offset, cg.var_edge_ptr, cg.var_edges, order, classes,
            f2v, v2f, total, n_inf, temperature, damping, free, work, np.int64(mode),
        )
        change = 0.0
        for c in range(n_chunks):
            change = max(change, changes[c])
        if damping == 0.0:
            classes[0] = classes[1]  # the unary messages are fixed now (see flood_unary)
        residuals[it] = change
        if change <= tol:
            return it + 1, True
    return len(residuals), False


@njit(**NJIT_OPTIONS)
def run_two_pass(cg, energies, kinds, params, unary, f2v, v2f, temperature, free, work):
    """Exact schedule on a forest: leaves to roots, then roots to leaves (each message once).

    Afterwards every message, and so every belief, is exact (Pearl 1988; Kschischang, Frey &
    Loeliger 2001, "Factor graphs and the sum-product algorithm", sec. III). ``kinds=None``:
    a plain graph (see the module docstring). ``free``: :func:`unclamped`; ``work``: a
    :class:`Scratch`.
    """
    n_states = cg.n_states
    state_offset = cg.state_offset
    scope_ptr = cg.scope_ptr
    scope_vars = cg.scope_vars
    edge_factor = cg.edge_factor
    edge_stride = cg.edge_stride
    edge_partner = cg.edge_partner
    table_offset = cg.table_offset
    msg_offset = cg.msg_offset
    var_edge_ptr = cg.var_edge_ptr
    var_edges = cg.var_edges
    factor_order = cg.factor_order
    factor_parent_edge = cg.factor_parent_edge
    var_order = cg.var_order
    var_parent_edge = cg.var_parent_edge
    counter = work.counter
    lowest = work.lowest
    new = work.new
    env_v = work.env_v
    env_z = work.env_z
    # Upward: a factor sends to its parent once all its children have sent to it.
    for k in range(len(factor_order) - 1, -1, -1):
        a = factor_order[k]
        parent = factor_parent_edge[a]
        if parent < 0:
            continue
        for e in range(scope_ptr[a], scope_ptr[a + 1]):
            if e != parent:
                variable_message(
                    n_states, state_offset, scope_vars, var_edge_ptr, var_edges, msg_offset,
                    unary, f2v, v2f, e,
                )
        edge_message(
            energies, kinds, params, n_states, scope_ptr, scope_vars, edge_factor, edge_stride,
            edge_partner, msg_offset, table_offset, v2f, parent, temperature, free, new,
            counter, lowest, env_v, env_z,
        )
        start = msg_offset[parent]
        store_message(new, f2v, start, msg_offset[parent + 1] - start, 0.0)
    # Downward: a variable, once its parent factor has sent, sends to all its children,
    # which then send on to their own children.
    for k in range(len(var_order)):
        i = var_order[k]
        variable_messages(
            n_states, state_offset, var_edge_ptr, var_edges, msg_offset, unary, f2v, v2f, i,
            new,
        )
        for k2 in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            e = var_edges[k2]
            if e == var_parent_edge[i]:
                continue
            a = edge_factor[e]
            for child in range(scope_ptr[a], scope_ptr[a + 1]):
                if child == e:
                    continue
                edge_message(
                    energies, kinds, params, n_states, scope_ptr, scope_vars, edge_factor,
                    edge_stride, edge_partner, msg_offset, table_offset, v2f, child,
                    temperature, free, new, counter, lowest, env_v, env_z,
                )
                start = msg_offset[child]
                store_message(new, f2v, start, msg_offset[child + 1] - start, 0.0)
    # The same loop as flooding's variable side: one compiled copy, not a third inlined one.
    variable_sweep(unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset,
                   np.int64(0), len(n_states), f2v, v2f, new)
