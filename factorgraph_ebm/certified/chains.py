"""Chain moves for local search: the exact lowest-energy states of a whole chain of
variables given all the others (Viterbi), chain after chain.

A *chain* is a path v_0 - v_1 - ... - v_L of variables, consecutive ones joined by a
pairwise factor (the *link*), that shares no other factor between its members (an induced
path): given the variables off the chain, its energy is then a sum of per-variable terms
and of the links' tables, and min-sum dynamic programming along it (forward messages with
the O(K) rules of Potts and truncated factors, :func:`~factorgraph_ebm.messages.pair_message`,
then backtracking) finds its exact minimum in O(L K^2), O(L K) for those kinds. This is
ICM with chains as blocks; on a grid the chains are (mostly) its rows and its columns, the
block move that Besag (1986, sec. 2.5) and, for stereo, "scanline" optimization use.

:func:`build_chains` covers the variables with chains greedily, in the TRW-S order: each
chain starts at the first variable not yet covered and grows from its tail to a later
neighbour (``farthest``: the one latest in the order, else the next one) that keeps the path
induced. On a grid numbered row by row, ``farthest=False`` gives chains along rows and
``farthest=True`` along columns (each ending with a turn along the last row or column).
Written here rather than taken from networkx: it is a pass over the flat edge arrays, and
the move must run inside the Numba kernels anyway.
"""

from __future__ import annotations

import numpy as np

from .._config import NJIT_OPTIONS, njit
from ..messages import pair_message
from ..structured import KIND_DENSE, pair_entry
from .local_search import _strictly_lower, conditional_energies

INF = np.inf


@njit(**NJIT_OPTIONS)
def build_chains(cg, coupling_ptr, coupling_edges, order, rank, farthest):
    """Chains covering the variables (see the module docstring), as CSR arrays:
    ``chain_vars[chain_ptr[c]:chain_ptr[c + 1]]`` are chain c's variables in path order, and
    ``chain_link[t]`` is the edge of ``chain_vars[t]`` into its link with
    ``chain_vars[t - 1]`` (-1 at a chain's first variable). Chains of one variable included.
    """
    n_vars = len(order)
    used = np.zeros(n_vars, dtype=np.bool_)
    in_chain = np.zeros(n_vars, dtype=np.bool_)
    chain_ptr = np.zeros(n_vars + 1, dtype=np.int64)
    chain_vars = np.empty(n_vars, dtype=np.int64)
    chain_link = np.empty(n_vars, dtype=np.int64)
    scope_ptr = cg.scope_ptr
    scope_vars = cg.scope_vars
    n_chains = 0
    pos = 0
    for k in range(n_vars):
        v = order[k]
        if used[v]:
            continue
        chain_ptr[n_chains] = pos
        n_chains += 1
        chain_vars[pos] = v
        chain_link[pos] = -1
        pos += 1
        used[v] = True
        in_chain[v] = True
        tail = v
        while True:
            best_edge = -1
            best_rank = -1
            for q in range(coupling_ptr[tail], coupling_ptr[tail + 1]):
                e = coupling_edges[q]
                a = cg.edge_factor[e]
                if scope_ptr[a + 1] - scope_ptr[a] != 2:
                    continue
                o = cg.edge_partner[e]
                u = scope_vars[o]
                if used[u] or rank[u] < rank[tail]:
                    continue
                if best_edge >= 0 and (rank[u] < best_rank if farthest
                                       else rank[u] > best_rank):
                    continue
                induced = True  # u shares no factor but the link with the chain
                for q2 in range(coupling_ptr[u], coupling_ptr[u + 1]):
                    b = cg.edge_factor[coupling_edges[q2]]
                    for t in range(scope_ptr[b], scope_ptr[b + 1]):
                        w = scope_vars[t]
                        if w != u and in_chain[w] and not (b == a and w == tail):
                            induced = False
                if induced:
                    best_edge = o
                    best_rank = rank[u]
            if best_edge < 0:
                break
            u = scope_vars[best_edge]
            chain_vars[pos] = u
            chain_link[pos] = best_edge
            pos += 1
            used[u] = True
            in_chain[u] = True
            tail = u
        for t in range(chain_ptr[n_chains - 1], pos):
            in_chain[chain_vars[t]] = False
    chain_ptr[n_chains] = pos
    return chain_ptr[:n_chains + 1].copy(), chain_vars, chain_link


@njit(inline="always", **NJIT_OPTIONS)
def _link_entry(cg, energies, params, e, x, y):
    """The link factor of edge e at (state x of e's variable, state y of its partner)."""
    a = cg.edge_factor[e]
    toff = cg.table_offset[a]
    if cg.table_offset[a + 1] == toff:  # compact: a symmetric structured kind
        return pair_entry(cg.factor_kind[a], params[a, 0], params[a, 1], x, y)
    return energies[toff + x * cg.edge_stride[e] + y * cg.edge_stride[cg.edge_partner[e]]]


@njit(**NJIT_OPTIONS)
def chain_icm(cg, energies, params, node_energy, coupling_ptr, coupling_edges, chain_ptr,
              chain_vars, chain_link, lo, hi, assignment):
    """One sweep of chain moves over chains ``lo:hi`` of :func:`build_chains`' arrays: each
    chain (of two variables or more) takes its lowest-energy states given all the other
    variables, when strictly lower than its current ones. In place on ``assignment``;
    returns the number of moves."""
    n_states = cg.n_states
    f = np.empty(len(node_energy))  # forward min-sum values, chain position by position
    cond = np.empty(cg.max_states)
    out = np.empty(cg.max_states)
    env_v = np.empty(cg.max_states + 2, dtype=np.int64)
    env_z = np.empty(cg.max_states + 2)
    moves = 0
    for c in range(lo, hi):
        p0 = chain_ptr[c]
        p1 = chain_ptr[c + 1]
        if p1 - p0 < 2:
            continue
        current = 0.0
        off = 0
        prev_off = 0
        for t in range(p0, p1):
            i = chain_vars[t]
            n = n_states[i]
            before = chain_vars[t - 1] if t > p0 else -1
            after = chain_vars[t + 1] if t + 1 < p1 else -1
            conditional_energies(cg, energies, params, node_energy, coupling_ptr,
                                 coupling_edges, assignment, i, cond, before, after)
            current += cond[assignment[i]]
            for x in range(n):
                f[off + x] = cond[x]
            if t > p0:
                e = chain_link[t]
                a = cg.edge_factor[e]
                o = cg.edge_partner[e]
                current += _link_entry(cg, energies, params, e, assignment[i],
                                       assignment[before])
                toff = cg.table_offset[a]
                compact = cg.table_offset[a + 1] == toff
                pair_message(energies, toff, not compact, cg.edge_stride[e],
                             cg.edge_stride[o], n, n_states[before], f, prev_off,
                             cg.factor_kind[a] if compact else KIND_DENSE, params[a, 0],
                             params[a, 1], 0.0, out, 0, env_v, env_z)
                for x in range(n):
                    f[off + x] += out[x]
            prev_off = off
            off += n
        # off: the end of the last variable's values; prev_off: their start.
        last = chain_vars[p1 - 1]
        x = 0
        for z in range(1, n_states[last]):
            if f[prev_off + z] < f[prev_off + x]:
                x = z
        if not _strictly_lower(f[prev_off + x], current):
            continue
        moves += 1
        start = prev_off
        for t in range(p1 - 1, p0, -1):
            i = chain_vars[t]
            assignment[i] = x
            before = chain_vars[t - 1]
            n_before = n_states[before]
            start -= n_before
            e = chain_link[t]
            best = 0
            low = INF
            for y in range(n_before):
                z = f[start + y] + _link_entry(cg, energies, params, e, x, y)
                if z < low:
                    low = z
                    best = y
            x = best
        assignment[chain_vars[p0]] = x
    return moves
