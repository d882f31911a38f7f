"""The variable side: variable-to-factor messages (a variable's belief minus the message on
the edge, infinite terms counted apart so that ``inf - inf`` never happens) and the totals
flooding subtracts from.
"""


from .._config import INF, NJIT_OPTIONS, njit


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


@njit(**NJIT_OPTIONS)
def variable_sweep(unary, n_states, state_offset, var_edge_ptr, var_edges, msg_offset, lo, hi,
                   f2v, v2f, running):
    """All messages of variables lo..hi-1 to their factors (:func:`variable_messages`)."""
    for i in range(lo, hi):
        variable_messages(n_states, state_offset, var_edge_ptr, var_edges, msg_offset, unary,
                          f2v, v2f, i, running)


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


@njit(inline="always", **NJIT_OPTIONS)
def incoming_from_totals(var_total, n_inf, f2v, soff, moff, n, finite, dst, doff):
    """Flooding's variable-to-factor message of one edge, from the variable's totals
    (:func:`variable_totals`) minus the factor's own message ``f2v[moff:moff + n]``, into
    ``dst[doff:doff + n]``: +inf where an infinite term other than the factor's own
    remains. ``finite``: no total of the graph has an infinite term (a plain subtraction)."""
    if finite:
        for x in range(n):
            dst[doff + x] = var_total[soff + x] - f2v[moff + x]
        return
    for x in range(n):
        own = f2v[moff + x]
        if own < INF:
            dst[doff + x] = var_total[soff + x] - own if n_inf[soff + x] == 0 else INF
        else:
            dst[doff + x] = var_total[soff + x] if n_inf[soff + x] == 1 else INF
