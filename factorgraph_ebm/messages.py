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
PGMax). Infinite energies never meet ``inf - inf``: a variable's outgoing messages are
built from prefix and suffix sums of its incoming ones, or, in flooding, as the sum of the
finite incoming terms minus the factor's own message, with a separate count of the infinite
terms (exact in exact arithmetic; in floating point within a few ulps of the total).

Structured pairwise factors (``kinds[a]`` != :data:`KIND_DENSE`, with weight ``w`` and
truncation ``tau`` in ``params[a]``) get their messages without reading the table (Felzenszwalb
& Huttenlocher 2006, "Efficient belief propagation for early vision"):

- Potts ``E = w [x != y]``: ``m(x) = min(in(x), min_{y != x} in(y) + w)`` in O(K), equal bit
  for bit to the dense path; sum-product in O(K) from the sum over all other states;
- truncated linear ``E = min(w |x - y|, tau)``: a two-pass l1 distance transform, O(K);
- truncated quadratic ``E = min(w (x - y)^2, tau)``: the lower envelope of parabolas, O(K).

The truncated kinds use the dense path at T > 0, and every kind keeps its dense table in
``energies`` (for factor beliefs, the Bethe free energy, decoding and learning), except
*compact* factors (``dense=False``, an empty table in ``energies``), whose entries the
kernels compute with :func:`pair_entry` wherever a table would be read.

Plain graphs. The kernels that take ``kinds`` (:func:`factor_sweep`, :func:`edge_message`,
:func:`run_two_pass`, :func:`decode` and the flooding drivers) accept ``kinds=None`` for a
*plain* graph: every factor of arity <= 2 with a dense table (no structured kind), the
graphs of most models. Numba prunes the branches on ``kinds is None`` before typing, so that
specialization compiles neither the structured messages nor the generic (arity >= 3) ones:
with the flooding split below, a first tree-BP call compiles in half the time (measured
17.4 -> 8.7 s CPU).

Performance notes. Numba charges ~100 ns per call of a function with array arguments, and
keeps per-array reference counting in loops that call helpers taking the compiled graph
(a NamedTuple). So each kernel unpacks the arrays it needs once, the per-edge work is
written in the loop bodies or in helpers inlined at the Numba IR level that take plain
arrays, and only the generic (arity >= 3) factor message is a real call. Flooding runs its
variable side and its factor side as ``prange`` loops over chunks balanced by work: each new
message depends only on the previous iteration's messages, so the result is the same, bit
for bit, on any number of threads, and in any order of the factors: flooding takes each
class of factors with its own kernel (:func:`flood_order`), so that a call compiles only the
kernels of the classes its graph has.

The kernels assume validated input (see :mod:`factorgraph_ebm.inference`) and never raise.
Nor do they allocate: their work arrays come from Python (:class:`Scratch`), because an
allocation that fails inside a kernel leaks every array the kernel allocated before it
(measured: 2.4 GB for good after one failed call), and inside a ``prange`` loop surfaces as a
``SystemError``; in Python it is a plain ``MemoryError`` that frees what it must.
Tables are NumPy C order in the factor's declared scope order. The iteration loops of the
loopy schedules are in :mod:`factorgraph_ebm.schedules`.
"""

from typing import NamedTuple

import numpy as np
from numba import prange

from ._config import NJIT_OPTIONS, njit

INF = np.inf

#: ``CompiledGraph.factor_kind`` codes.
KIND_DENSE = 0
KIND_POTTS = 1
KIND_TRUNCATED_LINEAR = 2
KIND_TRUNCATED_QUADRATIC = 3

PARALLEL_OPTIONS = dict(NJIT_OPTIONS, parallel=True)

#: Where :func:`factor_sweep` gets a factor's incoming messages from.
MODE_READ = 0
MODE_FRESH = 1
MODE_FUSED = 2
MODE_FUSED_FINITE = 3  # MODE_FUSED when no total has an infinite term (a plain subtraction)




class Scratch(NamedTuple):
    """Work arrays of one kernel call (see :func:`scratch`); the kernels allocate none.

    ``counter`` (max_arity,) int64: a mixed-radix counter over a table; ``lowest`` and
    ``score`` (max_states,); ``new`` (max(max_arity, 2) * max_states,): new messages of one
    factor; ``inc`` (2 * max_states,): a pairwise factor's incoming messages; ``env_v``
    (max_states + 1,) int64 and ``env_z`` (max_states + 2,): the lower envelope of the
    truncated quadratic kind; ``lows`` (2,): the minima of a factor's two new messages.
    The arrays of the threaded flooding kernel (:func:`flood_phase`) have one more leading
    axis, one row per thread.
    """

    counter: np.ndarray
    lowest: np.ndarray
    score: np.ndarray
    new: np.ndarray
    inc: np.ndarray
    env_v: np.ndarray
    env_z: np.ndarray
    lows: np.ndarray


def scratch(cg, rows: int | None = None) -> Scratch:
    """The :class:`Scratch` of the kernels on compiled graph ``cg``: of one call, or with
    ``rows``, one row per thread of the threaded flooding kernel. A few times max_states
    floats (per row); a ``MemoryError`` here is raised before any kernel runs."""
    k = cg.max_states
    arity = max(cg.max_arity, 1)
    lead = () if rows is None else (rows,)
    return Scratch(
        counter=np.zeros(lead + (arity,), dtype=np.int64),
        lowest=np.empty(lead + (k,)),
        score=np.empty(lead + (k,)),
        new=np.empty(lead + (max(arity, 2) * k,)),
        inc=np.empty(lead + (2 * k,)),
        env_v=np.empty(lead + (k + 1,), dtype=np.int64),
        env_z=np.empty(lead + (k + 2,)),
        lows=np.empty(lead + (2,)),
    )


def unclamped(cg) -> np.ndarray:
    """The ``clamp`` argument of :func:`generic_message` that clamps no variable: -1 for
    each, (V,) int64."""
    return np.full(cg.n_variables, -1, dtype=np.int64)


# --------------------------------------------------------------------------- factor side
@njit(inline="always", **NJIT_OPTIONS)
def pair_entry(kind, w, tau, x, y):
    """Table entry (x, y) of a structured pairwise factor, computed as the constructors of
    :class:`~factorgraph_ebm.graph.FactorGraph` compute their tables (compact factors)."""
    d = abs(x - y)
    if kind == KIND_POTTS:
        return 0.0 if d == 0 else w
    if kind == KIND_TRUNCATED_LINEAR:
        return min(w * d, tau)
    return min(w * (d * d), tau)


@njit(inline="always", **NJIT_OPTIONS)
def pair_message(
    energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w, tau, temperature, out,
    env_v, env_z,
):
    """Message of a pairwise factor to its target variable, unnormalized, into ``out[:n_t]``.

    The table entry of (target state x, other state y) is ``energies[toff + x*s_t + y*s_o]``;
    the other variable's incoming message is ``v2f[m_o : m_o + n_o]``. Without
    ``has_table`` (a compact factor) entries come from :func:`pair_entry`. ``env_v`` (int64) and
    ``env_z`` (float64), of length max_states + 1, are scratch for the quadratic kind.
    """
    if kind == KIND_POTTS and w >= 0.0 and n_t == n_o and temperature == 0.0:
        # min(in(x), min_y in(y) + w): with w >= 0 the y = x term never wins.
        min1 = INF
        for y in range(n_o):
            min1 = min(min1, v2f[m_o + y])
        cap = min1 + w
        for x in range(n_t):
            out[x] = min(v2f[m_o + x], cap)
    elif kind == KIND_POTTS:
        # min1 at `best` (the first minimum), min2 the minimum over the other states.
        min1 = INF
        best = -1
        for y in range(n_o):
            z = v2f[m_o + y]
            if z < min1:
                min1 = z
                best = y
        min2 = INF
        for y in range(n_o):
            if y != best:
                min2 = min(min2, v2f[m_o + y])
        for x in range(n_t):
            other = min2 if x == best else min1
            low = other + w
            if x < n_o:
                low = min(low, v2f[m_o + x])
            out[x] = low
        if temperature > 0.0:
            # sum over y != x of exp(-(in(y) - min1) / T): all states but x. For x != best it
            # contains the term 1 of `best`, so the subtraction loses no precision.
            total = 0.0
            for y in range(n_o):
                total += np.exp(-(v2f[m_o + y] - min1) / temperature)
            for x in range(n_t):
                low = out[x]
                if low == INF:
                    continue
                same = v2f[m_o + x] if x < n_o else INF
                acc = np.exp(-(same - low) / temperature) if same < INF else 0.0
                other = min2 if x == best else min1
                if other < INF and w < INF:
                    if x == best:
                        rest = 0.0
                        for y in range(n_o):
                            if y != x:
                                rest += np.exp(-(v2f[m_o + y] - other) / temperature)
                    elif x < n_o:
                        rest = total - np.exp(-(v2f[m_o + x] - other) / temperature)
                    else:
                        rest = total
                    acc += np.exp(-(other + w - low) / temperature) * rest
                out[x] = low - temperature * np.log(acc)
    elif kind == KIND_TRUNCATED_LINEAR and temperature == 0.0:
        # l1 distance transform: forward and backward passes, then the truncation.
        low = INF
        for x in range(n_t):
            z = v2f[m_o + x]
            out[x] = z
            if z < low:
                low = z
        for x in range(1, n_t):
            z = out[x - 1] + w
            if z < out[x]:
                out[x] = z
        for x in range(n_t - 2, -1, -1):
            z = out[x + 1] + w
            if z < out[x]:
                out[x] = z
        cap = low + tau
        for x in range(n_t):
            if cap < out[x]:
                out[x] = cap
    elif kind == KIND_TRUNCATED_QUADRATIC and temperature == 0.0:
        low = INF
        for y in range(n_o):
            if v2f[m_o + y] < low:
                low = v2f[m_o + y]
        if low == INF or w == 0.0:
            for x in range(n_t):
                out[x] = low
        else:
            # Lower envelope of the parabolas y -> in(q) + w (y - q)^2 of the finite in(q).
            k = -1
            for q in range(n_o):
                fq = v2f[m_o + q]
                if fq == INF:
                    continue
                hq = fq + w * q * q
                if k < 0:
                    k = 0
                    env_v[0] = q
                    env_z[0] = -INF
                    env_z[1] = INF
                    continue
                while True:  # z[0] = -inf stops this at k = 0 at the latest
                    p = env_v[k]
                    s = (hq - (v2f[m_o + p] + w * p * p)) / (2.0 * w * (q - p))
                    if s <= env_z[k]:
                        k -= 1
                    else:
                        break
                k += 1
                env_v[k] = q
                env_z[k] = s
                env_z[k + 1] = INF
            j = 0
            for x in range(n_t):
                while env_z[j + 1] < x:
                    j += 1
                p = env_v[j]
                d = x - p
                out[x] = v2f[m_o + p] + w * (d * d)
        cap = low + tau
        for x in range(n_t):
            if cap < out[x]:
                out[x] = cap
    else:
        table_pair_message(energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w,
                           tau, temperature, out)


@njit(inline="always", **NJIT_OPTIONS)
def table_pair_message(energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w, tau,
                       temperature, out):
    """:func:`pair_message` from the table entries, read from ``energies`` (or, without
    ``has_table``, computed by :func:`pair_entry`): O(K^2), any kind."""
    for x in range(n_t):
        base = toff + x * s_t
        low = INF
        for y in range(n_o):
            t = energies[base + y * s_o] if has_table else pair_entry(kind, w, tau, x, y)
            low = min(low, t + v2f[m_o + y])
        out[x] = low
    if temperature > 0.0:
        for x in range(n_t):
            low = out[x]
            if low < INF:
                base = toff + x * s_t
                total = 0.0
                for y in range(n_o):
                    t = (energies[base + y * s_o] if has_table
                         else pair_entry(kind, w, tau, x, y))
                    z = t + v2f[m_o + y]
                    total += np.exp(-(z - low) / temperature)
                out[x] = low - temperature * np.log(total)


@njit(**NJIT_OPTIONS)
def generic_message(
    energies,
    n_states,
    scope_ptr,
    scope_vars,
    msg_offset,
    table_offset,
    v2f,
    edge,
    a,
    temperature,
    clamp,
    out,
    counter,
    lowest,
):
    """Message from factor ``a`` to the variable of ``edge``, written into ``out[:K]``, for a
    factor of any arity (its table iterated with a mixed-radix counter).

    ``clamp[j] >= 0`` fixes variable j to that state (used by decoding; pass -1 everywhere
    for a plain message): table entries that disagree are skipped and j's incoming message
    is not added. ``counter`` (max_arity,) and ``lowest`` (max_states,) are scratch.
    """
    first = scope_ptr[a]
    arity = scope_ptr[a + 1] - first
    target_pos = edge - first
    n_target = n_states[scope_vars[edge]]
    toff = table_offset[a]
    n_entries = table_offset[a + 1] - toff

    for x in range(n_target):
        lowest[x] = INF
    # Pass 1: the minimum over each target state (the whole message when T == 0).
    for q in range(arity):
        counter[q] = 0
    for flat in range(n_entries):
        z = _entry_energy(
            energies, scope_vars, msg_offset, v2f, first, arity, target_pos, clamp, counter,
            toff + flat,
        )
        x = counter[target_pos]
        if z < lowest[x]:
            lowest[x] = z
        _advance(n_states, scope_vars, first, arity, counter)
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
            energies, scope_vars, msg_offset, v2f, first, arity, target_pos, clamp, counter,
            toff + flat,
        )
        x = counter[target_pos]
        if z < INF:
            out[x] += np.exp(-(z - lowest[x]) / temperature)
        _advance(n_states, scope_vars, first, arity, counter)
    for x in range(n_target):
        if lowest[x] < INF:
            out[x] = lowest[x] - temperature * np.log(out[x])
        else:
            out[x] = INF


@njit(inline="always", **NJIT_OPTIONS)
def _entry_energy(
    energies, scope_vars, msg_offset, v2f, first, arity, target_pos, clamp, counter, index
):
    """E_a at table entry ``index`` plus the incoming messages of the free non-target
    variables; +inf where a clamped variable disagrees with ``counter``."""
    z = energies[index]
    if z < INF:
        for q in range(arity):
            if q == target_pos:
                continue
            var = scope_vars[first + q]
            if clamp[var] >= 0:
                if clamp[var] != counter[q]:
                    z = INF
                    break
            else:
                z += v2f[msg_offset[first + q] + counter[q]]
    return z


@njit(inline="always", **NJIT_OPTIONS)
def _advance(n_states, scope_vars, first, arity, counter):
    """Step a mixed-radix counter over a table in C order (last axis fastest)."""
    q = arity - 1
    while q >= 0:
        counter[q] += 1
        if counter[q] < n_states[scope_vars[first + q]]:
            break
        counter[q] = 0
        q -= 1


@njit(inline="always", **NJIT_OPTIONS)
def store_message(new, f2v, start, n, damping):
    """Normalize ``new[:n]`` to minimum 0, damp it against ``f2v[start:start+n]``, store it
    there and return the largest absolute change (equal infinities count as no change)."""
    low = INF
    for x in range(n):
        low = min(low, new[x])
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


@njit(**NJIT_OPTIONS)
def edge_message(
    energies,
    kinds,
    params,
    n_states,
    scope_ptr,
    scope_vars,
    edge_factor,
    edge_stride,
    edge_partner,
    msg_offset,
    table_offset,
    v2f,
    e,
    temperature,
    free,
    out,
    counter,
    lowest,
    env_v,
    env_z,
):
    """The unnormalized message of ``e``'s factor to ``e``'s variable, into ``out``.

    A real call (not inlined) from decoding and the two-pass schedule: one compiled copy of
    every kind's code instead of one per caller cuts the first compilation by ~20% for
    ~130 ns per edge. ``kinds=None``: a plain graph (see the module docstring)."""
    a = edge_factor[e]
    other = edge_partner[e]
    toff = table_offset[a]
    if other == e:
        for x in range(n_states[scope_vars[e]]):
            out[x] = energies[toff + x]
    elif kinds is None:  # a plain graph: a dense pairwise factor
        table_pair_message(energies, toff, True, edge_stride[e], edge_stride[other],
                           n_states[scope_vars[e]], n_states[scope_vars[other]], v2f,
                           msg_offset[other], KIND_DENSE, 0.0, 0.0, temperature, out)
    elif other >= 0:
        pair_message(
            energies,
            toff,
            table_offset[a + 1] > toff,
            edge_stride[e],
            edge_stride[other],
            n_states[scope_vars[e]],
            n_states[scope_vars[other]],
            v2f,
            msg_offset[other],
            kinds[a],
            params[a, 0],
            params[a, 1],
            temperature,
            out,
            env_v,
            env_z,
        )
    else:
        generic_message(
            energies, n_states, scope_ptr, scope_vars, msg_offset, table_offset, v2f, e, a,
            temperature, free, out, counter, lowest,
        )


# --------------------------------------------------------------------------- variable side
@njit(inline="always", **NJIT_OPTIONS)
def variable_messages(n_states, state_offset, var_edge_ptr, var_edges, msg_offset, unary,
                      f2v, v2f, i, running):
    """All messages from variable i to its factors, m_{i->a} = U_i + sum_{b != a} m_{b->i},
    from prefix and suffix sums (exact, O(degree * K), no subtraction)."""
    n = n_states[i]
    soff = state_offset[i]
    for x in range(n):
        running[x] = unary[soff + x]
    for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
        moff = msg_offset[var_edges[k]]
        for x in range(n):
            v2f[moff + x] = running[x]
            running[x] += f2v[moff + x]
    for x in range(n):
        running[x] = 0.0
    for k in range(var_edge_ptr[i + 1] - 1, var_edge_ptr[i] - 1, -1):
        moff = msg_offset[var_edges[k]]
        for x in range(n):
            v2f[moff + x] += running[x]
            running[x] += f2v[moff + x]


@njit(inline="always", **NJIT_OPTIONS)
def variable_message(n_states, state_offset, scope_vars, var_edge_ptr, var_edges, msg_offset,
                     unary, f2v, v2f, edge):
    """The one message from the edge's variable to the edge's factor (sequential schedule)."""
    i = scope_vars[edge]
    n = n_states[i]
    soff = state_offset[i]
    moff = msg_offset[edge]
    for x in range(n):
        v2f[moff + x] = unary[soff + x]
    for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
        other = var_edges[k]
        if other == edge:
            continue
        ooff = msg_offset[other]
        for x in range(n):
            v2f[moff + x] += f2v[ooff + x]


# --------------------------------------------------------------------------- schedules
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
        if low == INF:
            low = 0.0
        if damping > 0.0:
            for x in range(n):
                old = f2v[start + x]
                value = damping * old + (1.0 - damping) * (energies[toff + x] - low)
                diff = abs(value - old)
                if diff > change:
                    change = diff
                f2v[start + x] = value
        else:
            for x in range(n):
                value = energies[toff + x] - low
                diff = abs(value - f2v[start + x])
                if diff > change:
                    change = diff
                f2v[start + x] = value
    return change


@njit(**NJIT_OPTIONS)
def flood_dense_min_sum(energies, state_offset, scope_ptr, scope_vars, msg_offset,
                        table_offset, order, lo, hi, mode, f2v, var_total, n_inf, damping,
                        inc, new):
    """Flooding, min-sum, dense pairwise factors ``order[lo:hi]`` (the hot path): both
    messages of each factor from the totals of :func:`variable_totals` (``mode``
    :data:`MODE_FUSED` or :data:`MODE_FUSED_FINITE`, as in :func:`factor_sweep`),
    normalized, damped and stored in ``f2v``; returns the largest change. ``inc`` and
    ``new`` are scratch of 2 * max_states entries."""
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

    The per-edge code is written out here, not in helpers: inlined helpers with array
    arguments cost reference counting on every edge, several times the O(K) work itself.
    ``new`` has room for max_arity * max_states entries; ``env_v``/``env_z`` for
    max_states + 2.
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
                i = scope_vars[e]
                n = n_states[i]
                soff = state_offset[i]
                moff = msg_offset[e]
                for x in range(n):
                    v2f[moff + x] = unary[soff + x]
                for k2 in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
                    other = var_edges[k2]
                    if other != e:
                        ooff = msg_offset[other]
                        for x in range(n):
                            v2f[moff + x] += f2v[ooff + x]
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
                if mode == MODE_FUSED_FINITE:
                    for x in range(n):
                        dst[doff + x] = var_total[soff + x] - f2v[moff + x]
                    continue
                for x in range(n):
                    own = f2v[moff + x]
                    if own < INF:
                        dst[doff + x] = var_total[soff + x] - own if n_inf[soff + x] == 0 else INF
                    else:
                        dst[doff + x] = var_total[soff + x] if n_inf[soff + x] == 1 else INF
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
                elif structured and kind == KIND_POTTS:
                    min1 = INF
                    best = -1
                    for y in range(n_o):
                        z = src[m_o + y]
                        if z < min1:
                            min1 = z
                            best = y
                    min2 = INF
                    for y in range(n_o):
                        if y != best:
                            min2 = min(min2, src[m_o + y])
                    for x in range(n_t):
                        other = min2 if x == best else min1
                        low = other + w
                        if x < n_o:
                            low = min(low, src[m_o + x])
                        new[out + x] = low
                    if temperature > 0.0:
                        total = 0.0
                        for y in range(n_o):
                            total += np.exp(-(src[m_o + y] - min1) / temperature)
                        for x in range(n_t):
                            low = new[out + x]
                            if low == INF:
                                continue
                            same = src[m_o + x] if x < n_o else INF
                            acc = np.exp(-(same - low) / temperature) if same < INF else 0.0
                            other = min2 if x == best else min1
                            if other < INF and w < INF:
                                if x == best:
                                    rest = 0.0
                                    for y in range(n_o):
                                        if y != x:
                                            rest += np.exp(-(src[m_o + y] - other) / temperature)
                                elif x < n_o:
                                    rest = total - np.exp(-(src[m_o + x] - other) / temperature)
                                else:
                                    rest = total
                                acc += np.exp(-(other + w - low) / temperature) * rest
                            new[out + x] = low - temperature * np.log(acc)
                elif structured and kind == KIND_TRUNCATED_LINEAR and temperature == 0.0:
                    low = INF
                    for x in range(n_t):
                        z = src[m_o + x]
                        new[out + x] = z
                        low = min(low, z)
                    for x in range(1, n_t):
                        new[out + x] = min(new[out + x], new[out + x - 1] + w)
                    for x in range(n_t - 2, -1, -1):
                        new[out + x] = min(new[out + x], new[out + x + 1] + w)
                    cap = low + tau
                    for x in range(n_t):
                        new[out + x] = min(new[out + x], cap)
                elif structured and kind == KIND_TRUNCATED_QUADRATIC and temperature == 0.0:
                    low = INF
                    for y in range(n_o):
                        low = min(low, src[m_o + y])
                    if low == INF or w == 0.0:
                        for x in range(n_t):
                            new[out + x] = low
                    else:
                        # Lower envelope of the parabolas of the finite in(q).
                        j = -1
                        for q2 in range(n_o):
                            fq = src[m_o + q2]
                            if fq == INF:
                                continue
                            hq = fq + w * q2 * q2
                            if j < 0:
                                j = 0
                                env_v[0] = q2
                                env_z[0] = -INF
                                env_z[1] = INF
                                continue
                            while True:  # env_z[0] = -inf stops this at j = 0
                                p = env_v[j]
                                sec = (hq - (src[m_o + p] + w * p * p)) / (2.0 * w * (q2 - p))
                                if sec <= env_z[j]:
                                    j -= 1
                                else:
                                    break
                            j += 1
                            env_v[j] = q2
                            env_z[j] = sec
                            env_z[j + 1] = INF
                        j = 0
                        for x in range(n_t):
                            while env_z[j + 1] < x:
                                j += 1
                            p = env_v[j]
                            d = x - p
                            new[out + x] = src[m_o + p] + w * (d * d)
                    cap = low + tau
                    for x in range(n_t):
                        new[out + x] = min(new[out + x], cap)
                else:
                    has_table = table_offset[a + 1] > toff
                    for x in range(n_t):
                        base = toff + x * s_t
                        low = INF
                        for y in range(n_o):
                            t = (energies[base + y * s_o] if has_table
                                 else pair_entry(kind, w, tau, x, y))
                            low = min(low, t + src[m_o + y])
                        new[out + x] = low
                    if temperature > 0.0:
                        for x in range(n_t):
                            low = new[out + x]
                            if low < INF:
                                base = toff + x * s_t
                                total = 0.0
                                for y in range(n_o):
                                    t = (energies[base + y * s_o] if has_table
                                         else pair_entry(kind, w, tau, x, y))
                                    z = t + src[m_o + y]
                                    total += np.exp(-(z - low) / temperature)
                                new[out + x] = low - temperature * np.log(total)
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
def variable_sweep(unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset, lo, hi,
                   f2v, v2f, running):
    """All messages of variables lo..hi-1 to their factors, m_{i->a} = U_i + sum_{b != a}
    m_{b->i}, from prefix and suffix sums (exact, O(degree * K), no subtraction)."""
    for i in range(lo, hi):
        n = n_states[i]
        soff = state_offset[i]
        for x in range(n):
            running[x] = unary[soff + x]
        for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            moff = msg_offset[var_edges[k]]
            for x in range(n):
                v2f[moff + x] = running[x]
                running[x] += f2v[moff + x]
        for x in range(n):
            running[x] = 0.0
        for k in range(var_edge_ptr[i + 1] - 1, var_edge_ptr[i] - 1, -1):
            moff = msg_offset[var_edges[k]]
            for x in range(n):
                v2f[moff + x] += running[x]
                running[x] += f2v[moff + x]


@njit(**NJIT_OPTIONS)
def variable_totals(unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset, lo, hi,
                    f2v, total, n_inf):
    """For variables lo..hi-1 and each state, the sum of the finite terms among U_i and the
    incoming factor messages (``total``) and the number of +inf terms (``n_inf``): the
    message to factor a is then ``total - m_{a->i}`` (or +inf) without ``inf - inf``.
    Returns the number of infinite terms of these variables."""
    count = 0
    for i in range(lo, hi):
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
                else:
                    n_inf[soff + x] += 1
        for x in range(n):
            count += n_inf[soff + x]
    return count


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
    :func:`~factorgraph_ebm.schedules.flood_order` (``classes`` its class boundaries): each
    class's part by its kernel (:func:`flood_unary`, :func:`flood_dense_min_sum`,
    :func:`factor_sweep`, with the scratch of a :class:`Scratch` row); returns the largest
    change. The threaded schedule's per-chunk step; one thread calls the class kernels from
    Python (:class:`~factorgraph_ebm.schedules.Flooding`), so that it compiles only those it
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
    :class:`~factorgraph_ebm.schedules.Threaded`'s."""
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


# --------------------------------------------------------------------------- beliefs
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


def factor_beliefs(cg, energies, v2f, temperature, store, out):
    """Unnormalized energy-domain factor beliefs B_a(x_a) = E_a(x_a) + sum_j m_{j->a}(x_j),
    written into ``out`` (flat (M,), the layout of ``energies``) when ``store``, and, when
    T > 0, the factors' part of the Bethe free energy, sum_a <b_a, E_a> - T H(b_a), which
    this returns (0.0 at T == 0; +inf when some factor's belief is +inf everywhere).

    Without ``store`` only one table-sized scratch array is used. Compact factors (no
    table in ``energies``) get their beliefs in scratch: they count in the free energy but
    are not stored. The scratch is allocated here, in Python (:class:`Scratch`).
    """
    largest = 0 if store else int(np.diff(cg.table_offset).max(initial=0))
    first = cg.scope_ptr[cg.compact_factors()]
    largest_compact = int((cg.n_states[cg.scope_vars[first]]
                           * cg.n_states[cg.scope_vars[first + 1]]).max(initial=0))
    return _factor_beliefs(
        cg, energies, v2f, temperature, store, out,
        np.zeros(max(cg.max_arity, 1), dtype=np.int64), np.empty(largest),
        np.empty(largest_compact), np.empty(largest_compact),
    )


@njit(**NJIT_OPTIONS)
def _factor_beliefs(cg, energies, v2f, temperature, store, out, counter, scratch,
                    compact_beliefs, compact_table):
    """:func:`factor_beliefs` with its scratch: ``scratch`` as large as the largest table
    (without ``store``), ``compact_beliefs`` and ``compact_table`` as the largest compact
    factor's table."""
    n_states = cg.n_states
    scope_ptr = cg.scope_ptr
    scope_vars = cg.scope_vars
    table_offset = cg.table_offset
    msg_offset = cg.msg_offset
    n_factors = len(scope_ptr) - 1
    kinds = cg.factor_kind
    params = cg.factor_param
    total = 0.0
    for a in range(n_factors):
        first = scope_ptr[a]
        arity = scope_ptr[a + 1] - first
        toff = table_offset[a]
        size = table_offset[a + 1] - toff
        buf = out[toff : toff + size] if store else scratch[:size]
        table = energies
        if arity == 2:
            n0 = n_states[scope_vars[first]]
            n1 = n_states[scope_vars[first + 1]]
            m0 = msg_offset[first]
            m1 = msg_offset[first + 1]
            if size == 0:  # compact: the table and the beliefs in scratch
                size = n0 * n1
                buf = compact_beliefs[:size]
                table = compact_table
                toff = 0
                for x in range(n0):
                    for y in range(n1):
                        table[x * n1 + y] = pair_entry(kinds[a], params[a, 0], params[a, 1], x, y)
            for x in range(n0):
                in0 = v2f[m0 + x]
                for y in range(n1):
                    z = table[toff + x * n1 + y]
                    if z < INF:
                        z += in0 + v2f[m1 + y]
                    buf[x * n1 + y] = z
        else:
            for q in range(arity):
                counter[q] = 0
            for flat in range(size):
                z = energies[toff + flat]
                if z < INF:
                    for q in range(arity):
                        z += v2f[msg_offset[first + q] + counter[q]]
                buf[flat] = z
                _advance(n_states, scope_vars, first, arity, counter)
        if temperature > 0.0 and total < INF:
            total += _entropy_term(buf, table[toff : toff + size], 0, size, 1.0, temperature)
    return total


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


# --------------------------------------------------------------------------- decoding
@njit(**NJIT_OPTIONS)
def decode(cg, energies, kinds, params, unary, v2f, beliefs, temperature, assignment, work):
    """Sequential decoding with clamping, in breadth-first order.

    Each variable takes the state of lowest conditional belief: its unary energy plus, from
    each of its factors, the message computed with the variables decoded so far clamped to
    their states. Ties go to the lowest state index. On a forest after the exact schedule this
    yields one consistent joint minimum (T == 0); on any graph, a state of finite conditional
    energy is chosen whenever one exists. With T > 0 each step takes the most probable state
    given the earlier ones. At a dead end (every state +inf given the earlier choices, which
    only loopy graphs reach) the variable takes the state of lowest unconditional belief
    ``beliefs`` (flat (S,)), so evidence is always kept. ``kinds=None``: a plain graph (see
    the module docstring). ``work``: a :class:`Scratch`.
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
    var_order = cg.var_order
    compiled_kinds = cg.factor_kind
    counter = work.counter
    lowest = work.lowest
    message = work.new
    score = work.score
    env_v = work.env_v
    env_z = work.env_z
    for i in range(len(n_states)):
        assignment[i] = -1
    for k0 in range(len(var_order)):
        i = var_order[k0]
        n = n_states[i]
        soff = state_offset[i]
        for x in range(n):
            score[x] = unary[soff + x]
        for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
            e = var_edges[k]
            other = edge_partner[e]
            a = edge_factor[e]
            if other >= 0 and other != e and assignment[scope_vars[other]] >= 0:
                y = assignment[scope_vars[other]]
                if table_offset[a + 1] > table_offset[a]:
                    offset = table_offset[a] + y * edge_stride[other]
                    for x in range(n):
                        message[x] = energies[offset + x * edge_stride[e]]
                else:
                    for x in range(n):
                        message[x] = pair_entry(compiled_kinds[a], params[a, 0], params[a, 1],
                                                x, y)
            elif other >= 0:
                edge_message(
                    energies, kinds, params, n_states, scope_ptr, scope_vars, edge_factor,
                    edge_stride, edge_partner, msg_offset, table_offset, v2f, e, temperature,
                    assignment, message, counter, lowest, env_v, env_z,
                )
            elif kinds is not None:  # arity >= 3 (a plain graph has none)
                generic_message(
                    energies, n_states, scope_ptr, scope_vars, msg_offset, table_offset, v2f,
                    e, a, temperature, assignment, message, counter, lowest,
                )
            for x in range(n):
                score[x] += message[x]
        best = _argmin(score, np.int64(0), n)  # not a literal: one specialization
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


def infeasible_factors(cg, energies, unary):
    """bool (F,): factors none of whose entries is finite with every variable in a state of
    finite unary energy (e.g. allowed by the evidence)."""
    blocked = np.ones(cg.n_factors, dtype=np.bool_)
    _infeasible_factors(cg, energies, unary, np.zeros(max(cg.max_arity, 1), dtype=np.int64),
                        blocked)
    return blocked


@njit(**NJIT_OPTIONS)
def _infeasible_factors(cg, energies, unary, counter, blocked):
    """:func:`infeasible_factors` into ``blocked`` (all True on entry)."""
    n_states = cg.n_states
    scope_vars = cg.scope_vars
    for a in range(len(blocked)):
        first = cg.scope_ptr[a]
        arity = cg.scope_ptr[a + 1] - first
        toff = cg.table_offset[a]
        if cg.table_offset[a + 1] == toff:  # compact pairwise
            v0 = scope_vars[first]
            v1 = scope_vars[first + 1]
            o0 = cg.state_offset[v0]
            o1 = cg.state_offset[v1]
            for x in range(n_states[v0]):
                if unary[o0 + x] == INF:
                    continue
                for y in range(n_states[v1]):
                    if unary[o1 + y] < INF and pair_entry(
                        cg.factor_kind[a], cg.factor_param[a, 0], cg.factor_param[a, 1], x, y
                    ) < INF:
                        blocked[a] = False
                        break
                if not blocked[a]:
                    break
            continue
        for q in range(arity):
            counter[q] = 0
        for flat in range(cg.table_offset[a + 1] - toff):
            if energies[toff + flat] < INF:
                allowed = True
                for q in range(arity):
                    var = scope_vars[first + q]
                    if unary[cg.state_offset[var] + counter[q]] == INF:
                        allowed = False
                        break
                if allowed:
                    blocked[a] = False
                    break
            _advance(n_states, scope_vars, first, arity, counter)


def structured_kinds(cg, energies):
    """``cg.factor_kind`` with every structured factor whose table in ``energies`` (e.g. a
    replacement vector during learning) no longer has its structure demoted to
    :data:`KIND_DENSE`. The tables are compared entry by entry with the formula, computed
    exactly as the constructors compute it."""
    kinds = cg.factor_kind.copy()
    _demote_changed(cg, energies, kinds)
    return kinds


@njit(**NJIT_OPTIONS)
def _demote_changed(cg, energies, kinds):
    """:func:`structured_kinds` in place in ``kinds``."""
    params = cg.factor_param
    for a in range(len(kinds)):
        kind = kinds[a]
        if kind == KIND_DENSE or cg.table_offset[a + 1] == cg.table_offset[a]:
            continue  # dense, or compact (no table that could have changed)
        first = cg.scope_ptr[a]
        n0 = cg.n_states[cg.scope_vars[first]]
        n1 = cg.n_states[cg.scope_vars[first + 1]]
        toff = cg.table_offset[a]
        w = params[a, 0]
        tau = params[a, 1]
        same = True
        for x in range(n0):
            for y in range(n1):
                value = pair_entry(kind, w, tau, x, y)
                if energies[toff + x * n1 + y] != value:
                    same = False
                    break
            if not same:
                break
        if not same:
            kinds[a] = KIND_DENSE
