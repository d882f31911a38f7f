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
from .factor import edge_message, shift_damp_store, store_message
from .generic import generic_message
from .pairwise import pair_message, table_pair_message
from .variables import (
    incoming_from_totals,
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


@njit(**NJIT_OPTIONS)
def flood_unary(energies, scope_ptr, msg_offset, table_offset, order, lo, hi, f2v, damping):
    """Flooding, unary factors ``order[lo:hi]``: each message is the factor's normalized
    table, damped and stored in ``f2v``; returns the largest change."""
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
        # Eight, then four rows (columns) at a time: independent min chains, so the
        # latency of one chain does not bound the pass (a min is exact: the order does
        # not change the result).
        low0 = INF
        x = 0
        while x + 8 <= n0:
            b0 = toff + x * n1
            r0 = INF
            r1 = INF
            r2 = INF
            r3 = INF
            r4 = INF
            r5 = INF
            r6 = INF
            r7 = INF
            for y in range(n1):
                z = inc[n0 + y]
                r0 = min(r0, energies[b0 + y] + z)
                r1 = min(r1, energies[b0 + n1 + y] + z)
                r2 = min(r2, energies[b0 + 2 * n1 + y] + z)
                r3 = min(r3, energies[b0 + 3 * n1 + y] + z)
                r4 = min(r4, energies[b0 + 4 * n1 + y] + z)
                r5 = min(r5, energies[b0 + 5 * n1 + y] + z)
                r6 = min(r6, energies[b0 + 6 * n1 + y] + z)
                r7 = min(r7, energies[b0 + 7 * n1 + y] + z)
            new[x] = r0
            new[x + 1] = r1
            new[x + 2] = r2
            new[x + 3] = r3
            new[x + 4] = r4
            new[x + 5] = r5
            new[x + 6] = r6
            new[x + 7] = r7
            low0 = min(low0, min(min(min(r0, r1), min(r2, r3)),
                                 min(min(r4, r5), min(r6, r7))))
            x += 8
        while x + 4 <= n0:
            b0 = toff + x * n1
            r0 = INF
            r1 = INF
            r2 = INF
            r3 = INF
            for y in range(n1):
                z = inc[n0 + y]
                r0 = min(r0, energies[b0 + y] + z)
                r1 = min(r1, energies[b0 + n1 + y] + z)
                r2 = min(r2, energies[b0 + 2 * n1 + y] + z)
                r3 = min(r3, energies[b0 + 3 * n1 + y] + z)
            new[x] = r0
            new[x + 1] = r1
            new[x + 2] = r2
            new[x + 3] = r3
            low0 = min(low0, min(min(r0, r1), min(r2, r3)))
            x += 4
        while x < n0:
            base = toff + x * n1
            low = INF
            for y in range(n1):
                low = min(low, energies[base + y] + inc[n0 + y])
            new[x] = low
            low0 = min(low0, low)
            x += 1
        low1 = INF
        y = 0
        while y + 8 <= n1:
            c0 = INF
            c1 = INF
            c2 = INF
            c3 = INF
            c4 = INF
            c5 = INF
            c6 = INF
            c7 = INF
            for x in range(n0):
                b0 = toff + x * n1 + y
                z = inc[x]
                c0 = min(c0, energies[b0] + z)
                c1 = min(c1, energies[b0 + 1] + z)
                c2 = min(c2, energies[b0 + 2] + z)
                c3 = min(c3, energies[b0 + 3] + z)
                c4 = min(c4, energies[b0 + 4] + z)
                c5 = min(c5, energies[b0 + 5] + z)
                c6 = min(c6, energies[b0 + 6] + z)
                c7 = min(c7, energies[b0 + 7] + z)
            new[n0 + y] = c0
            new[n0 + y + 1] = c1
            new[n0 + y + 2] = c2
            new[n0 + y + 3] = c3
            new[n0 + y + 4] = c4
            new[n0 + y + 5] = c5
            new[n0 + y + 6] = c6
            new[n0 + y + 7] = c7
            low1 = min(low1, min(min(min(c0, c1), min(c2, c3)),
                                 min(min(c4, c5), min(c6, c7))))
            y += 8
        while y + 4 <= n1:
            c0 = INF
            c1 = INF
            c2 = INF
            c3 = INF
            for x in range(n0):
                b0 = toff + x * n1 + y
                z = inc[x]
                c0 = min(c0, energies[b0] + z)
                c1 = min(c1, energies[b0 + 1] + z)
                c2 = min(c2, energies[b0 + 2] + z)
                c3 = min(c3, energies[b0 + 3] + z)
            new[n0 + y] = c0
            new[n0 + y + 1] = c1
            new[n0 + y + 2] = c2
            new[n0 + y + 3] = c3
            low1 = min(low1, min(min(c0, c1), min(c2, c3)))
            y += 4
        while y < n1:
            low = INF
            for x in range(n0):
                low = min(low, energies[toff + x * n1 + y] + inc[x])
            new[n0 + y] = low
            low1 = min(low1, low)
            y += 1
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
def factor_sweep(
    energies, kinds, params, unary, n_states, state_offset, scope_ptr, scope_vars,
    edge_stride, msg_offset, table_offset, var_edge_ptr, var_edges, order, lo, hi,
    mode, f2v, v2f, var_total, n_inf, temperature, damping, free, counter, lowest, new, inc,
    env_v, env_z, lows,
):
    """Every message of the factors ``order[lo:hi]``, normalized, damped and stored in
    ``f2v``; returns the largest change. The incoming messages depend on ``mode``:
    :data:`MODE_FRESH` computes them from the variables' current incoming messages (the
    sequential schedule); :data:`MODE_FUSED` derives them from the per-state totals
    ``var_total`` (finite terms) and ``n_inf`` (number of +inf terms) of
    :func:`variable_totals` minus the factor's own message (flooding); :data:`MODE_READ`
    reads ``v2f`` as it is. ``inc`` (2 * max_states) is scratch for the fused mode.

    Any factor in any mode; flooding sends its unary and its dense min-sum pairwise factors
    to :func:`flood_unary` and :func:`flood_dense_min_sum` instead (see
    :func:`flood_order`), so that a graph of only those never compiles this kernel (7-8 s,
    40% of a first BP call's compilation). ``kinds=None``: a plain graph (see the module
    docstring).

    The per-edge rules are helpers inlined at the Numba IR level (``inline="always"``) that
    take whole arrays and offsets, never slices: a slice per edge, or a real call, costs
    reference counting on every edge, several times the O(K) work itself. ``new`` has room
    for max_arity * max_states entries; ``env_v``/``env_z`` for max_states + 2.
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
                    min1 = INF
                    for y in range(n_o):
                        min1 = min(min1, src[m_o + y])
                    # The message's minimum is min1 (w >= 0): normalize, damp and store
                    # in the same pass (-inf in lows: stored already).
                    start = msg_offset[e]
                    shift = min1 if min1 < INF else 0.0
                    cap = min1 + w - shift
                    for x in range(n_t):
                        value = min(src[m_o + x] - shift, cap)
                        old = f2v[start + x]
                        if damping > 0.0:
                            value = damping * old + (1.0 - damping) * value
                        diff = abs(value - old)
                        if diff > change:
                            change = diff
                        f2v[start + x] = value
                    lows[q] = -INF
                elif structured:
                    pair_message(energies, toff, table_offset[a + 1] > toff, s_t, s_o, n_t,
                                 n_o, src, m_o, kind, w, tau, temperature, new, out, env_v,
                                 env_z)
                else:
                    table_pair_message(energies, toff, True, s_t, s_o, n_t, n_o, src, m_o,
                                       KIND_DENSE, 0.0, 0.0, temperature, new, out)
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
    o_lo = max(lo, classes[2])
    o_hi = min(hi, classes[3])
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
    :class:`~factorgraph_ebm.messages.schedules.Threaded`'s."""
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
