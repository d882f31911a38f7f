"""The message of a factor of any arity to one of its variables, by a walk over its table
with a mixed-radix counter (the general path; arity >= 3 and clamped variables), and the
three min-sum messages of an arity-3 factor in one pass over its table
(:func:`triple_min_sum`: on 10,000 random arity-3 factors, K=4, one thread, a flooding
iteration took 3.9 ms instead of 54 ms).
"""

import numpy as np

from .._config import INF, NJIT_OPTIONS, njit


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
def triple_min_sum(energies, toff, n0, n1, n2, v2f, m0, m1, m2, new, stride):
    """The three min-sum messages of a factor of arity 3 with a dense table
    (``energies[toff:]``, n0 x n1 x n2, C order) from its incoming messages
    ``v2f[m0:m0 + n0]``, ``v2f[m1:m1 + n1]`` and ``v2f[m2:m2 + n2]``, unnormalized, into
    ``new[q * stride:]`` for target q, in one pass over the table instead of
    :func:`generic_message`'s three counter walks. Each sum takes the terms in
    :func:`generic_message`'s order (the table entry, then the other variables' messages
    in scope order), so the messages are the same bit for bit; an infinite entry gives
    infinite sums here as it is skipped there."""
    for y in range(n1):
        new[stride + y] = INF
    for z in range(n2):
        new[2 * stride + z] = INF
    for x in range(n0):
        a0 = v2f[m0 + x]
        r0 = INF
        for y in range(n1):
            a1 = v2f[m1 + y]
            base = toff + (x * n1 + y) * n2
            r1 = new[stride + y]
            for z in range(n2):
                e = energies[base + z]
                a2 = v2f[m2 + z]
                r0 = min(r0, (e + a1) + a2)
                r1 = min(r1, (e + a0) + a2)
                new[2 * stride + z] = min(new[2 * stride + z], (e + a0) + a1)
            new[stride + y] = r1
        new[x] = r0
