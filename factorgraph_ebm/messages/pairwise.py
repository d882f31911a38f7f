"""The message of a pairwise factor to one of its variables: dense tables in O(K^2), the
structured kinds of :mod:`factorgraph_ebm.structured` in O(K) at T = 0 (Felzenszwalb &
Huttenlocher 2006): Potts by the minimum over the other states, truncated linear by a
two-pass l1 distance transform, truncated quadratic by the lower envelope of parabolas.
"""

import numpy as np

from .._config import INF, NJIT_OPTIONS, njit
from ..structured import KIND_POTTS, KIND_TRUNCATED_LINEAR, KIND_TRUNCATED_QUADRATIC, pair_entry


@njit(inline="always", **NJIT_OPTIONS)
def pair_message(
    energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w, tau, temperature, out,
    oo, env_v, env_z,
):
    """Message of a pairwise factor to its target variable, unnormalized, into
    ``out[oo:oo + n_t]``.

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
            out[oo + x] = min(v2f[m_o + x], cap)
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
            out[oo + x] = low
        if temperature > 0.0:
            # sum over y != x of exp(-(in(y) - min1) / T): all states but x. For x != best it
            # contains the term 1 of `best`, so the subtraction loses no precision.
            total = 0.0
            for y in range(n_o):
                total += np.exp(-(v2f[m_o + y] - min1) / temperature)
            for x in range(n_t):
                low = out[oo + x]
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
                out[oo + x] = low - temperature * np.log(acc)
    elif kind == KIND_TRUNCATED_LINEAR and temperature == 0.0:
        # l1 distance transform: forward and backward passes, then the truncation.
        low = INF
        for x in range(n_t):
            z = v2f[m_o + x]
            out[oo + x] = z
            if z < low:
                low = z
        for x in range(1, n_t):
            z = out[oo + x - 1] + w
            if z < out[oo + x]:
                out[oo + x] = z
        for x in range(n_t - 2, -1, -1):
            z = out[oo + x + 1] + w
            if z < out[oo + x]:
                out[oo + x] = z
        cap = low + tau
        for x in range(n_t):
            if cap < out[oo + x]:
                out[oo + x] = cap
    elif kind == KIND_TRUNCATED_QUADRATIC and temperature == 0.0:
        low = INF
        for y in range(n_o):
            if v2f[m_o + y] < low:
                low = v2f[m_o + y]
        if low == INF or w == 0.0:
            for x in range(n_t):
                out[oo + x] = low
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
                out[oo + x] = v2f[m_o + p] + w * (d * d)
        cap = low + tau
        for x in range(n_t):
            if cap < out[oo + x]:
                out[oo + x] = cap
    else:
        table_pair_message(energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w,
                           tau, temperature, out, oo)


@njit(inline="always", **NJIT_OPTIONS)
def table_pair_message(energies, toff, has_table, s_t, s_o, n_t, n_o, v2f, m_o, kind, w, tau,
                       temperature, out, oo):
    """:func:`pair_message` from the table entries, read from ``energies`` (or, without
    ``has_table``, computed by :func:`pair_entry`): O(K^2), any kind."""
    for x in range(n_t):
        base = toff + x * s_t
        low = INF
        for y in range(n_o):
            t = energies[base + y * s_o] if has_table else pair_entry(kind, w, tau, x, y)
            low = min(low, t + v2f[m_o + y])
        out[oo + x] = low
    if temperature > 0.0:
        for x in range(n_t):
            low = out[oo + x]
            if low < INF:
                base = toff + x * s_t
                total = 0.0
                for y in range(n_o):
                    t = (energies[base + y * s_o] if has_table
                         else pair_entry(kind, w, tau, x, y))
                    z = t + v2f[m_o + y]
                    total += np.exp(-(z - low) / temperature)
                out[oo + x] = low - temperature * np.log(total)


@njit(inline="always", **NJIT_OPTIONS)
def dense_pair_min_sum(energies, toff, n0, n1, inc, new):
    """Both min-sum messages of a dense pairwise factor (table ``energies[toff:]``, n0 x n1,
    C order) from its incoming messages ``inc[:n0]`` (first variable) and
    ``inc[n0:n0 + n1]``, unnormalized, into ``new[:n0]`` and ``new[n0:n0 + n1]``; returns
    their minima (low0, low1). One row pass and one column pass over the table (reductions
    into scalars, no store in the inner loops; the table is in L1 for the second pass).
    """
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
    return low0, low1
