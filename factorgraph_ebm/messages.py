"""Numba kernels of belief propagation in the energy (negative log) domain.

One code path serves both semirings through a scalar ``temperature`` T = 1/beta:

    m_{a->i}(x_i) = softmin_T over x_{a - i} of [E_a(x_a) + sum_{j in a, j != i} m_{j->a}(x_j)]
    softmin_T(z) = -T log sum exp(-z / T),   softmin_0(z) = min(z)

so min-sum is the T -> 0 (beta -> inf) limit of log-domain sum-product (Yedidia, Freeman &
Weiss 2005, "Constructing free-energy approximations and generalized belief propagation
algorithms"; LeCun et al. 2006, "A Tutorial on Energy-Based Learning", sec. 6). Kernels
branch on ``temperature == 0.0`` once per message, never per table entry.

Every factor-to-variable message is shifted so that its minimum is 0 (a message that is
``+inf`` everywhere, an infeasible factor, stays ``+inf``), then damped as
``m <- damping * m_old + (1 - damping) * m_new`` (0 means no damping, as in libDAI and
PGMax). Infinite energies never meet ``inf - inf``: sums are only ever added, and a
variable's outgoing messages are built from prefix and suffix sums of its incoming ones.

The kernels assume validated input (see :mod:`factorgraph_ebm.inference`) and never raise.
Tables are NumPy C order in the factor's declared scope order.
"""

import numpy as np

from ._config import NJIT_OPTIONS, njit

INF = np.inf


# --------------------------------------------------------------------------- factor side
@njit(inline="always", **NJIT_OPTIONS)
def small_factor_message(cg, energies, v2f, edge, temperature, clamp, out):
    """Fast path of :func:`factor_message` for the edges with ``cg.edge_partner[edge] >= 0``:
    unary factors (partner = the edge itself) and pairwise factors (partner = the other
    edge). The caller checks that condition.

    Inlined into the schedule loops, with no call, no early return and no return value:
    otherwise Numba keeps a reference-count update per array of ``cg`` in those loops,
    which costs more than a small message.
    """
    a = cg.edge_factor[edge]
    other = cg.edge_partner[edge]
    toff = cg.table_offset[a]
    n_target = cg.n_states[cg.scope_vars[edge]]
    if other == edge:
        for x in range(n_target):
            out[x] = energies[toff + x]
    elif clamp[cg.scope_vars[other]] >= 0:
        offset = toff + clamp[cg.scope_vars[other]] * cg.edge_stride[other]
        for x in range(n_target):
            out[x] = energies[offset + x * cg.edge_stride[edge]]
    else:
        n_other = cg.n_states[cg.scope_vars[other]]
        s_target = cg.edge_stride[edge]
        s_other = cg.edge_stride[other]
        m_other = cg.msg_offset[other]
        for x in range(n_target):
            base = toff + x * s_target
            low = INF
            for y in range(n_other):
                z = energies[base + y * s_other] + v2f[m_other + y]
                if z < low:
                    low = z
            out[x] = low
        if temperature > 0.0:
            for x in range(n_target):
                low = out[x]
                if low < INF:
                    base = toff + x * s_target
                    total = 0.0
                    for y in range(n_other):
                        z = energies[base + y * s_other] + v2f[m_other + y]
                        total += np.exp(-(z - low) / temperature)
                    out[x] = low - temperature * np.log(total)


@njit(**NJIT_OPTIONS)
def factor_message(cg, energies, v2f, edge, temperature, clamp, out, counter, lowest):
    """Message from the factor of ``edge`` to the edge's variable, written into ``out[:K]``,
    for a factor of any arity (its table iterated with a mixed-radix counter).

    ``clamp[j] >= 0`` fixes variable j to that state (used by decoding; pass -1 everywhere
    for a plain message): table entries that disagree are skipped and j's incoming message
    is not added. ``counter`` (max_arity,) and ``lowest`` (max_states,) are scratch.
    """
    a = cg.edge_factor[edge]
    first = cg.scope_ptr[a]
    arity = cg.scope_ptr[a + 1] - first
    target_pos = edge - first
    n_target = cg.n_states[cg.scope_vars[edge]]
    toff = cg.table_offset[a]
    n_entries = cg.table_offset[a + 1] - toff

    for x in range(n_target):
        lowest[x] = INF
    # Pass 1: the minimum over each target state (the whole message when T == 0).
    for q in range(arity):
        counter[q] = 0
    for flat in range(n_entries):
        z = _entry_energy(
            cg, energies, v2f, a, first, arity, target_pos, clamp, counter, toff, flat
        )
        x = counter[target_pos]
        if z < lowest[x]:
            lowest[x] = z
        _advance(cg, first, arity, counter)
    if temperature == 0.0:
        for x in range(n_target):
            out[x] = lowest[x]
        return
    # Pass 2 (T > 0): out = lowest - T log sum exp(-(z - lowest) / T).
    for x in range(n_target):
        out[x] = 0.0
    for q in range(arity):
        counter[q] = 0
    for flat in range(n_entries):
        z = _entry_energy(
            cg, energies, v2f, a, first, arity, target_pos, clamp, counter, toff, flat
        )
        x = counter[target_pos]
        if z < INF:
            out[x] += np.exp(-(z - lowest[x]) / temperature)
        _advance(cg, first, arity, counter)
    for x in range(n_target):
        if lowest[x] < INF:
            out[x] = lowest[x] - temperature * np.log(out[x])
        else:
            out[x] = INF


@njit(**NJIT_OPTIONS)
def _entry_energy(cg, energies, v2f, a, first, arity, target_pos, clamp, counter, toff, flat):
    """E_a at table entry ``flat`` plus the incoming messages of the free non-target
    variables; +inf where a clamped variable disagrees with ``counter``."""
    z = energies[toff + flat]
    if z == INF:
        return INF
    for q in range(arity):
        if q == target_pos:
            continue
        var = cg.scope_vars[first + q]
        if clamp[var] >= 0:
            if clamp[var] != counter[q]:
                return INF
        else:
            z += v2f[cg.msg_offset[first + q] + counter[q]]
    return z


@njit(**NJIT_OPTIONS)
def _advance(cg, first, arity, counter):
    """Step a mixed-radix counter over a table in C order (last axis fastest)."""
    q = arity - 1
    while q >= 0:
        counter[q] += 1
        if counter[q] < cg.n_states[cg.scope_vars[first + q]]:
            return
        counter[q] = 0
        q -= 1


@njit(**NJIT_OPTIONS)
def store_message(new, f2v, start, n, damping):
    """Normalize ``new[:n]`` to minimum 0, damp it against ``f2v[start:start+n]``, store it
    there and return the largest absolute change (equal infinities count as no change)."""
    low = INF
    for x in range(n):
        if new[x] < low:
            low = new[x]
    if low < INF:
        for x in range(n):
            new[x] -= low
    change = 0.0
    for x in range(n):
        old = f2v[start + x]
        value = new[x]
        if damping > 0.0:
            value = damping * old + (1.0 - damping) * value
        if value != old:
            diff = abs(value - old)
            if diff > change:
                change = diff
        f2v[start + x] = value
    return change


# --------------------------------------------------------------------------- variable side
@njit(inline="always", **NJIT_OPTIONS)
def variable_messages(cg, unary, f2v, v2f, i, running):
    """All messages from variable i to its factors, m_{i->a} = U_i + sum_{b != a} m_{b->i},
    from prefix and suffix sums (exact, O(degree * K), no subtraction)."""
    n = cg.n_states[i]
    soff = cg.state_offset[i]
    for x in range(n):
        running[x] = unary[soff + x]
    for k in range(cg.var_edge_ptr[i], cg.var_edge_ptr[i + 1]):
        moff = cg.msg_offset[cg.var_edges[k]]
        for x in range(n):
            v2f[moff + x] = running[x]
            running[x] += f2v[moff + x]
    for x in range(n):
        running[x] = 0.0
    for k in range(cg.var_edge_ptr[i + 1] - 1, cg.var_edge_ptr[i] - 1, -1):
        moff = cg.msg_offset[cg.var_edges[k]]
        for x in range(n):
            v2f[moff + x] += running[x]
            running[x] += f2v[moff + x]


@njit(inline="always", **NJIT_OPTIONS)
def variable_message(cg, unary, f2v, v2f, edge):
    """The one message from the edge's variable to the edge's factor (sequential schedule)."""
    i = cg.scope_vars[edge]
    n = cg.n_states[i]
    soff = cg.state_offset[i]
    moff = cg.msg_offset[edge]
    for x in range(n):
        v2f[moff + x] = unary[soff + x]
    for k in range(cg.var_edge_ptr[i], cg.var_edge_ptr[i + 1]):
        other = cg.var_edges[k]
        if other == edge:
            continue
        ooff = cg.msg_offset[other]
        for x in range(n):
            v2f[moff + x] += f2v[ooff + x]


# --------------------------------------------------------------------------- schedules
@njit(**NJIT_OPTIONS)
def _scratch(cg):
    free = np.full(len(cg.n_states), -1, dtype=np.int64)
    counter = np.zeros(max(cg.max_arity, 1), dtype=np.int64)
    lowest = np.empty(cg.max_states)
    new = np.empty(cg.max_states)
    return free, counter, lowest, new


@njit(**NJIT_OPTIONS)
def run_parallel(cg, energies, unary, f2v, v2f, temperature, damping, max_iter, tol, residuals):
    """Flooding schedule: every variable-to-factor message, then every factor-to-variable
    message from those, per iteration. Returns (n_iter, converged); ``residuals[t]`` is the
    largest message change of iteration t."""
    free, counter, lowest, new = _scratch(cg)
    n_edges = len(cg.scope_vars)
    fresh = np.empty(cg.msg_offset[n_edges])
    for it in range(max_iter):
        for i in range(len(cg.n_states)):
            variable_messages(cg, unary, f2v, v2f, i, new)
        for e in range(n_edges):
            start = cg.msg_offset[e]
            out = fresh[start:]
            if cg.edge_partner[e] >= 0:
                small_factor_message(cg, energies, v2f, e, temperature, free, out)
            else:
                factor_message(cg, energies, v2f, e, temperature, free, out, counter, lowest)
        change = 0.0
        for e in range(n_edges):
            start = cg.msg_offset[e]
            n = cg.msg_offset[e + 1] - start
            change = max(change, store_message(fresh[start:], f2v, start, n, damping))
        residuals[it] = change
        if change <= tol:
            _refresh_variable_messages(cg, unary, f2v, v2f, new)
            return it + 1, True
    _refresh_variable_messages(cg, unary, f2v, v2f, new)
    return max_iter, False


@njit(**NJIT_OPTIONS)
def run_sequential(cg, energies, unary, f2v, v2f, temperature, damping, max_iter, tol, residuals):
    """Sequential schedule: factors in breadth-first order, each sending all its messages
    from freshly computed incoming ones. Returns (n_iter, converged)."""
    free, counter, lowest, new = _scratch(cg)
    for it in range(max_iter):
        change = 0.0
        for a in cg.factor_order:
            for e in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
                variable_message(cg, unary, f2v, v2f, e)
            for e in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
                start = cg.msg_offset[e]
                if cg.edge_partner[e] >= 0:
                    small_factor_message(cg, energies, v2f, e, temperature, free, new)
                else:
                    factor_message(cg, energies, v2f, e, temperature, free, new, counter, lowest)
                n = cg.msg_offset[e + 1] - start
                change = max(change, store_message(new, f2v, start, n, damping))
        residuals[it] = change
        if change <= tol:
            _refresh_variable_messages(cg, unary, f2v, v2f, new)
            return it + 1, True
    _refresh_variable_messages(cg, unary, f2v, v2f, new)
    return max_iter, False


@njit(**NJIT_OPTIONS)
def run_two_pass(cg, energies, unary, f2v, v2f, temperature):
    """Exact schedule on a forest: leaves to roots, then roots to leaves (each message once).

    Afterwards every message, and so every belief, is exact (Pearl 1988; Kschischang, Frey &
    Loeliger 2001, "Factor graphs and the sum-product algorithm", sec. III).
    """
    free, counter, lowest, new = _scratch(cg)
    # Upward: a factor sends to its parent once all its children have sent to it.
    for k in range(len(cg.factor_order) - 1, -1, -1):
        a = cg.factor_order[k]
        parent = cg.factor_parent_edge[a]
        if parent < 0:
            continue
        for e in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
            if e != parent:
                variable_message(cg, unary, f2v, v2f, e)
        if cg.edge_partner[parent] >= 0:
            small_factor_message(cg, energies, v2f, parent, temperature, free, new)
        else:
            factor_message(cg, energies, v2f, parent, temperature, free, new, counter, lowest)
        start = cg.msg_offset[parent]
        store_message(new, f2v, start, cg.msg_offset[parent + 1] - start, 0.0)
    # Downward: a variable, once its parent factor has sent, sends to all its children,
    # which then send on to their own children.
    for i in cg.var_order:
        variable_messages(cg, unary, f2v, v2f, i, new)
        for k in range(cg.var_edge_ptr[i], cg.var_edge_ptr[i + 1]):
            e = cg.var_edges[k]
            if e == cg.var_parent_edge[i]:
                continue
            a = cg.edge_factor[e]
            for child in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
                if child == e:
                    continue
                if cg.edge_partner[child] >= 0:
                    small_factor_message(cg, energies, v2f, child, temperature, free, new)
                else:
                    factor_message(
                        cg, energies, v2f, child, temperature, free, new, counter, lowest
                    )
                start = cg.msg_offset[child]
                store_message(new, f2v, start, cg.msg_offset[child + 1] - start, 0.0)
    _refresh_variable_messages(cg, unary, f2v, v2f, new)


@njit(**NJIT_OPTIONS)
def _refresh_variable_messages(cg, unary, f2v, v2f, running):
    for i in range(len(cg.n_states)):
        variable_messages(cg, unary, f2v, v2f, i, running)


# --------------------------------------------------------------------------- beliefs
@njit(**NJIT_OPTIONS)
def variable_beliefs(cg, unary, f2v, out):
    """Unnormalized energy-domain beliefs B_i(x) = U_i(x) + sum_a m_{a->i}(x), flat (S,)."""
    for i in range(len(cg.n_states)):
        soff = cg.state_offset[i]
        n = cg.n_states[i]
        for x in range(n):
            out[soff + x] = unary[soff + x]
        for k in range(cg.var_edge_ptr[i], cg.var_edge_ptr[i + 1]):
            moff = cg.msg_offset[cg.var_edges[k]]
            for x in range(n):
                out[soff + x] += f2v[moff + x]


@njit(**NJIT_OPTIONS)
def factor_beliefs(cg, energies, v2f, out):
    """Unnormalized energy-domain factor beliefs B_a(x_a) = E_a(x_a) + sum_j m_{j->a}(x_j),
    flat (M,) in the layout of ``energies``."""
    counter = np.zeros(max(cg.max_arity, 1), dtype=np.int64)
    for a in range(len(cg.scope_ptr) - 1):
        first = cg.scope_ptr[a]
        arity = cg.scope_ptr[a + 1] - first
        toff = cg.table_offset[a]
        for q in range(arity):
            counter[q] = 0
        for flat in range(cg.table_offset[a + 1] - toff):
            z = energies[toff + flat]
            if z < INF:
                for q in range(arity):
                    z += v2f[cg.msg_offset[first + q] + counter[q]]
            out[toff + flat] = z
            _advance(cg, first, arity, counter)


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
def bethe_free_energy(cg, energies, unary, var_beliefs, fac_beliefs, temperature):
    """Bethe free energy in energy form at temperature T > 0:

        F = sum_a [<b_a, E_a> - T H(b_a)] + sum_i [<b_i, U_i> + T (d_i - 1) H(b_i)]

    with b the normalized beliefs and d_i the number of factors of variable i (Yedidia,
    Freeman & Weiss 2005, eq. 26; libDAI's ``BP::logZ``). Exact, F = -T ln Z, on a forest at
    the fixed point. Returns +inf when some belief is +inf everywhere (infeasible model).
    """
    total = 0.0
    for a in range(len(cg.scope_ptr) - 1):
        term = _entropy_term(
            fac_beliefs, energies, cg.table_offset[a], cg.table_offset[a + 1], 1.0, temperature
        )
        if term == INF:
            return INF
        total += term
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
    T log b = -(B - min B) - T log Z so that no log(0) is ever taken."""
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


# --------------------------------------------------------------------------- decoding
@njit(**NJIT_OPTIONS)
def decode(cg, energies, unary, v2f, beliefs, temperature, assignment):
    """Sequential decoding with clamping, in breadth-first order.

    Each variable takes the state of lowest conditional belief: its unary energy plus, from
    each of its factors, the message computed with the variables decoded so far clamped to
    their states. Ties go to the lowest state index. On a forest after the exact schedule this
    yields one consistent joint minimum (T == 0); on any graph, a state of finite conditional
    energy is chosen whenever one exists. With T > 0 each step takes the most probable state
    given the earlier ones. At a dead end (every state +inf given the earlier choices, which
    only loopy graphs reach) the variable takes the state of lowest unconditional belief
    ``beliefs`` (flat (S,)), so evidence is always kept.
    """
    counter = np.zeros(max(cg.max_arity, 1), dtype=np.int64)
    lowest = np.empty(cg.max_states)
    message = np.empty(cg.max_states)
    score = np.empty(cg.max_states)
    for i in range(len(cg.n_states)):
        assignment[i] = -1
    for i in cg.var_order:
        n = cg.n_states[i]
        soff = cg.state_offset[i]
        for x in range(n):
            score[x] = unary[soff + x]
        for k in range(cg.var_edge_ptr[i], cg.var_edge_ptr[i + 1]):
            e = cg.var_edges[k]
            if cg.edge_partner[e] >= 0:
                small_factor_message(cg, energies, v2f, e, temperature, assignment, message)
            else:
                factor_message(
                    cg, energies, v2f, e, temperature, assignment, message, counter, lowest
                )
            for x in range(n):
                score[x] += message[x]
        best = _argmin(score, 0, n)
        if score[best] == INF:
            best = _argmin(beliefs, soff, n)
            if beliefs[soff + best] == INF:
                best = _argmin(unary, soff, n)
        assignment[i] = best


@njit(**NJIT_OPTIONS)
def _argmin(values, start, n):
    """Index (from ``start``) of the first minimum of ``values[start:start+n]``."""
    best = 0
    for x in range(1, n):
        if values[start + x] < values[start + best]:
            best = x
    return best


@njit(**NJIT_OPTIONS)
def infeasible_factors(cg, energies, unary):
    """bool (F,): factors none of whose entries is finite with every variable in a state of
    finite unary energy (e.g. allowed by the evidence)."""
    counter = np.zeros(max(cg.max_arity, 1), dtype=np.int64)
    n_factors = len(cg.scope_ptr) - 1
    blocked = np.ones(n_factors, dtype=np.bool_)
    for a in range(n_factors):
        first = cg.scope_ptr[a]
        arity = cg.scope_ptr[a + 1] - first
        toff = cg.table_offset[a]
        for q in range(arity):
            counter[q] = 0
        for flat in range(cg.table_offset[a + 1] - toff):
            if energies[toff + flat] < INF:
                allowed = True
                for q in range(arity):
                    var = cg.scope_vars[first + q]
                    if unary[cg.state_offset[var] + counter[q]] == INF:
                        allowed = False
                        break
                if allowed:
                    blocked[a] = False
                    break
            _advance(cg, first, arity, counter)
    return blocked
