"""Beliefs from converged messages: variable beliefs (min-marginals at T = 0, marginals in
the energy domain at T > 0), factor beliefs, their normalization, and the variable terms of
the Bethe free energy (Yedidia, Freeman & Weiss 2005).
"""

import numpy as np

from .._config import INF, NJIT_OPTIONS, njit
from ..structured import pair_entry
from .generic import _advance
from .variables import incoming_from_totals


@njit(**NJIT_OPTIONS)
def variable_beliefs(cg, unary, f2v, out):
    """Unnormalized energy-domain beliefs B_i(x) = U_i(x) + sum_a m_{a->i}(x), flat (S,)."""
    n_states = cg.n_states
    state_offset = cg.state_offset
    var_edge_ptr = cg.var_edge_ptr
    var_edges = cg.var_edges
    msg_offset = cg.msg_offset
    for i in range(len(n_states)):
        soff = state_offset[i]
        n = n_states[i]
        for x in range(n):
            out[soff + x] = unary[soff + x]
        for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            moff = msg_offset[var_edges[k]]
            for x in range(n):
                out[soff + x] += f2v[moff + x]


@njit(**NJIT_OPTIONS)
def belief_totals(cg, unary, f2v, total, n_inf):
    """Per variable and state, the sum of the finite terms among U_i and the incoming
    factor messages (``total``, flat (S,) float64) and the number of +inf terms, saturated
    at 2 (``n_inf``, flat (S,) int8): the rule of :func:`~.variables.variable_totals`, whose
    readers (:func:`~.variables.incoming_from_totals`) only ask whether that number is 0 or
    1, so int8 is exact for any degree (8 instead of 31 MiB at the peak of a 2000 x 2000
    binary grid). ``total`` is the raw belief of :func:`variable_beliefs` where ``n_inf``
    is 0, bit for bit (the same terms in the same order)."""
    n_states = cg.n_states
    state_offset = cg.state_offset
    var_edge_ptr = cg.var_edge_ptr
    var_edges = cg.var_edges
    msg_offset = cg.msg_offset
    for i in range(len(n_states)):
        n = n_states[i]
        soff = state_offset[i]
        for x in range(n):
            u = unary[soff + x]
            if u < INF:
                total[soff + x] = u
                n_inf[soff + x] = 0
            else:
                total[soff + x] = 0.0
                n_inf[soff + x] = 1
        for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            moff = msg_offset[var_edges[k]]
            for x in range(n):
                m = f2v[moff + x]
                if m < INF:
                    total[soff + x] += m
                elif n_inf[soff + x] < 2:
                    n_inf[soff + x] += 1


@njit(**NJIT_OPTIONS)
def beliefs_from_totals(total, n_inf):
    """The raw variable beliefs from :func:`belief_totals`, in place: +inf where a term
    is +inf."""
    for s in range(len(total)):
        if n_inf[s] > 0:
            total[s] = INF


def factor_beliefs(cg, energies, f2v, var_total, n_inf, temperature, bethe, store, out,
                   normalize=False, shift=0.0):
    """Energy-domain factor beliefs B_a(x_a) = E_a(x_a) + sum_j m_{j->a}(x_j), with each
    variable-to-factor message made from the factor-to-variable messages ``f2v`` and the
    variables' totals (``var_total``, ``n_inf``: :func:`belief_totals`, or
    :func:`~.variables.variable_totals`; the rule of :func:`incoming_from_totals`), so that
    the variable-to-factor buffer can be freed first (305 MiB of the peak on a 2000 x 2000
    binary grid; the same beliefs up to rounding, after normalization). Written into
    ``out`` (flat (M,), the layout of ``energies``) when ``store``: raw, or with
    ``normalize`` as :func:`normalize_segments` at ``temperature`` with ``shift`` leaves
    them, bit for bit, in the same pass over each table. With ``bethe`` (and T > 0) this
    returns the factors' part of the Bethe free energy, sum_a <b_a, E_a> - T H(b_a) (+inf
    when some factor's belief is +inf everywhere); else 0.0.

    Without ``store`` only one table-sized scratch array is used. Compact factors (no
    table in ``energies``) get their beliefs in scratch, and only for the Bethe free
    energy: they count in it but are not stored (before, min-sum made them too, for
    nothing: 2 x 7.2 GB of scratch for one K = 30,000 Potts factor). The scratch is
    allocated here, in Python (:class:`Scratch`).
    """
    largest = 0 if store else int(np.diff(cg.table_offset).max(initial=0))
    largest_compact = 0
    if bethe and temperature > 0.0:  # else compact factors are skipped
        first = cg.scope_ptr[cg.compact_factors()]
        largest_compact = int((cg.n_states[cg.scope_vars[first]]
                               * cg.n_states[cg.scope_vars[first + 1]]).max(initial=0))
    return _factor_beliefs(
        cg, energies, f2v, var_total, n_inf, temperature, bethe, store, normalize,
        float(shift), out, np.zeros(max(cg.max_arity, 1), dtype=np.int64), np.empty(largest),
        np.empty(largest_compact), np.empty(largest_compact),
        np.empty(max(cg.max_arity, 1) * cg.max_states),
    )


@njit(**NJIT_OPTIONS)
def _factor_beliefs(cg, energies, f2v, var_total, n_inf, temperature, bethe, store,
                    normalize, shift, out, counter, scratch, compact_beliefs, compact_table,
                    incoming):
    """:func:`factor_beliefs` with its scratch: ``scratch`` as large as the largest table
    (without ``store``), ``compact_beliefs`` and ``compact_table`` as the largest compact
    factor's table, ``incoming`` (max_arity * max_states) one factor's incoming messages
    (scope position q at ``q * max_states``)."""
    n_states = cg.n_states
    scope_ptr = cg.scope_ptr
    scope_vars = cg.scope_vars
    state_offset = cg.state_offset
    table_offset = cg.table_offset
    msg_offset = cg.msg_offset
    k = cg.max_states
    n_factors = len(scope_ptr) - 1
    kinds = cg.factor_kind
    params = cg.factor_param
    entropy = bethe and temperature > 0.0
    total = 0.0
    for a in range(n_factors):
        first = scope_ptr[a]
        arity = scope_ptr[a + 1] - first
        toff = table_offset[a]
        size = table_offset[a + 1] - toff
        stored = store and size > 0
        if size == 0 and not entropy:
            continue  # a compact factor: nothing to store, no Bethe term
        # The beliefs go to buf[boff:boff + size], the energies are read from table[toff:].
        buf = out if store else scratch
        boff = toff if store else 0
        table = energies
        for q in range(arity):
            v = scope_vars[first + q]
            incoming_from_totals(var_total, n_inf, f2v, state_offset[v], msg_offset[first + q],
                                 n_states[v], False, incoming, q * k)
        if arity == 2:
            n0 = n_states[scope_vars[first]]
            n1 = n_states[scope_vars[first + 1]]
            if size == 0:  # compact: the table and the beliefs in scratch
                size = n0 * n1
                buf = compact_beliefs
                boff = 0
                table = compact_table
                toff = 0
                for x in range(n0):
                    for y in range(n1):
                        table[x * n1 + y] = pair_entry(kinds[a], params[a, 0], params[a, 1], x, y)
            for x in range(n0):
                in0 = incoming[x]
                row = x * n1
                for y in range(n1):
                    z = table[toff + row + y]
                    if z < INF:
                        z += in0 + incoming[k + y]
                    buf[boff + row + y] = z
        elif arity == 1:
            for x in range(size):
                z = energies[toff + x]
                if z < INF:
                    z += incoming[x]
                buf[boff + x] = z
        else:
            for q in range(arity):
                counter[q] = 0
            for flat in range(size):
                z = energies[toff + flat]
                if z < INF:
                    for q in range(arity):
                        z += incoming[q * k + counter[q]]
                buf[boff + flat] = z
                _advance(n_states, scope_vars, first, arity, counter)
        term = 0.0
        if stored and normalize:
            term = _normalize_table(buf, boff, table, toff, size, temperature, shift, entropy)
        elif entropy and total < INF:
            if boff == toff:
                term = _entropy_term(buf, table, boff, boff + size, 1.0, temperature)
            else:
                term = _entropy_term(buf, table[toff - boff :], boff, boff + size, 1.0,
                                     temperature)
        if entropy and total < INF:
            total += term
    return total


def normalized_factor_beliefs(cg, energies, unary, f2v, temperature, shift):
    """The normalized factor beliefs of a BP result, flat (M,) in the layout of
    ``energies``, from its final factor-to-variable messages ``f2v`` and per-state energies
    ``unary`` (S,): :func:`belief_totals`, then :func:`factor_beliefs` with
    ``normalize`` and ``shift`` (the minimum energy of min-sum's absolute min-marginals,
    else 0). The same kernels with the same arguments as a BP call's own pass, so the same
    values bit for bit whenever they are computed (``InferenceResult.factor_beliefs``
    defers this call to its first access)."""
    total = np.empty(int(cg.state_offset[-1]))
    n_inf = np.empty(len(total), dtype=np.int8)
    belief_totals(cg, unary, f2v, total, n_inf)
    out = np.empty(len(energies))
    factor_beliefs(cg, energies, f2v, total, n_inf, temperature, False, True, out,
                   normalize=True, shift=shift)
    return out


@njit(inline="always", **NJIT_OPTIONS)
def _normalize_table(buf, boff, table, toff, size, temperature, shift, entropy):
    """One factor's raw beliefs ``buf[boff:boff + size]`` normalized in place as
    :func:`normalize_segments` does, and, with ``entropy`` (T > 0), their Bethe term as
    :func:`_entropy_term` computes it (``table[toff:toff + size]`` their energies), from
    the same exponentials: two per entry instead of three."""
    low = INF
    for j in range(boff, boff + size):
        if buf[j] < low:
            low = buf[j]
    if temperature == 0.0:
        for j in range(boff, boff + size):
            buf[j] = buf[j] - low + shift if low < INF else INF
        return 0.0
    if low == INF:
        for j in range(boff, boff + size):
            buf[j] = 0.0
        return INF
    z = 0.0
    for j in range(boff, boff + size):
        z += np.exp(-(buf[j] - low) / temperature)
    t_log_z = temperature * np.log(z)
    term = 0.0
    for j in range(size):
        belief = buf[boff + j]
        b = np.exp(-(belief - low) / temperature) / z
        if entropy and b > 0.0:
            t_log_b = -(belief - low) - t_log_z
            term += b * (table[toff + j] + 1.0 * t_log_b)
        buf[boff + j] = b
    return term


@njit(**NJIT_OPTIONS)
def normalize_segments(beliefs, offsets, temperature, shift, out):
    """Per segment [offsets[s], offsets[s+1]): with T == 0, ``beliefs - min + shift``
    (absolute min-marginals when ``shift`` is the minimum energy); with T > 0, the
    probabilities ``exp(-beliefs / T)`` normalized to sum 1. An all-``+inf`` segment (an
    infeasible model) gives ``+inf`` (T == 0) or NaN-free zeros (T > 0). ``out`` may be
    ``beliefs`` (in place)."""
    for s in range(len(offsets) - 1):
        lo = offsets[s]
        hi = offsets[s + 1]
        low = INF
        for k in range(lo, hi):
            if beliefs[k] < low:
                low = beliefs[k]
        if temperature == 0.0:
            for k in range(lo, hi):
                out[k] = beliefs[k] - low + shift if low < INF else INF
        else:
            total = 0.0
            for k in range(lo, hi):
                out[k] = np.exp(-(beliefs[k] - low) / temperature) if low < INF else 0.0
                total += out[k]
            if total > 0.0:
                for k in range(lo, hi):
                    out[k] /= total


@njit(**NJIT_OPTIONS)
def variable_bethe_terms(cg, unary, var_beliefs, temperature):
    """The variables' part of the Bethe free energy in energy form at T > 0:
    sum_i [<b_i, U_i> + T (d_i - 1) H(b_i)], with d_i the number of factors of variable i.

    With the factors' part from :func:`factor_beliefs`, F = sum_a [<b_a, E_a> - T H(b_a)] +
    this (Yedidia, Freeman & Weiss 2005, eq. 26; libDAI's ``BP::logZ``). Exact, F = -T ln Z,
    on a forest at the fixed point. +inf when some belief is +inf everywhere.
    """
    total = 0.0
    for i in range(len(cg.n_states)):
        degree = cg.var_edge_ptr[i + 1] - cg.var_edge_ptr[i]
        lo = cg.state_offset[i]
        term = _entropy_term(var_beliefs, unary, lo, lo + cg.n_states[i], 1.0 - degree, temperature)
        if term == INF:
            return INF
        total += term
    return total


@njit(**NJIT_OPTIONS)
def _entropy_term(beliefs, energy, lo, hi, entropy_weight, temperature):
    """<b, energy> - entropy_weight * T * H(b) for b = softmax(-beliefs[lo:hi] / T), using
    T log b = -(B - min B) - T log Z so that no log(0) is ever taken. ``energy`` is indexed
    like ``beliefs``."""
    low = INF
    for k in range(lo, hi):
        if beliefs[k] < low:
            low = beliefs[k]
    if low == INF:
        return INF
    z = 0.0
    for k in range(lo, hi):
        z += np.exp(-(beliefs[k] - low) / temperature)
    t_log_z = temperature * np.log(z)
    term = 0.0
    for k in range(lo, hi):
        b = np.exp(-(beliefs[k] - low) / temperature) / z
        if b > 0.0:
            t_log_b = -(beliefs[k] - low) - t_log_z
            term += b * (energy[k] + entropy_weight * t_log_b)
    return term
