"""Expansion moves for local search on pairwise models: every variable may switch to one
state alpha at once, the best such move found by a minimum cut (Boykov, Veksler & Zabih
2001, "Fast approximate energy minimization via graph cuts", TPAMI 23(11)).

The move is a binary problem: b_i = 1 when variable i switches to alpha. Its energy is a
sum of unary terms and, per pairwise factor (i, j) with A = E(y_i, y_j), B = E(y_i, alpha),
C = E(alpha, y_j), D = E(alpha, alpha),

    A + (C - A) b_i + (D - C) b_j + (B + C - A - D) (1 - b_i) b_j,

a cut in a graph with an edge i -> j of capacity B + C - A - D (Kolmogorov & Zabih 2004,
"What energy functions can be minimized via graph cuts?", TPAMI 26(2)). Where that is
negative (a non-submodular term: dense tables in general; never Potts or truncated
factors, which are metrics) it is truncated to 0, as in Rother et al. (2005); the cut is
then only a proposal. The minimum cut is computed by SciPy's maximum flow (Dinic's
algorithm), which needs integer capacities: energies are scaled to about 2^24 units of the
largest finite term and rounded. So every move is checked on the exact energy and kept only
when strictly lower: the energy never rises.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from .._config import NJIT_OPTIONS, njit
from ..structured import pair_entry

INF = np.inf
#: Capacities: the largest finite term becomes FINITE_UNITS; +inf terms become INF_UNITS
#: (int32 edges, so that sums of a few stay below 2^31).
FINITE_UNITS = 2.0**24
INF_UNITS = 2**28
#: Cycles over all states at most.
EXPANSION_CYCLES = 5


@njit(inline="always", **NJIT_OPTIONS)
def _pair(cg, energies, params, a, x, y):
    """E_a at (x, y): x the state of a's first variable, y of its second."""
    toff = cg.table_offset[a]
    first = cg.scope_ptr[a]
    if cg.table_offset[a + 1] == toff:
        return pair_entry(cg.factor_kind[a], params[a, 0], params[a, 1], x, y)
    return energies[toff + x * cg.edge_stride[first] + y * cg.edge_stride[first + 1]]


@njit(**NJIT_OPTIONS)
def expansion_terms(cg, energies, params, node_energy, pairs, assignment, alpha, cost,
                    capacity):
    """The binary problem of the move to ``alpha``: ``cost[i]`` (V,) is the energy of
    b_i = 1 less that of b_i = 0 (``+inf`` when i has no state alpha), ``capacity[f]``
    (len(pairs),) the truncated B + C - A - D of pairwise factor ``pairs[f]``."""
    n_states = cg.n_states
    for i in range(len(n_states)):
        if alpha < n_states[i]:
            soff = cg.state_offset[i]
            cost[i] = node_energy[soff + alpha] - node_energy[soff + assignment[i]]
        else:
            cost[i] = INF
    for f in range(len(pairs)):
        a = pairs[f]
        first = cg.scope_ptr[a]
        i = cg.scope_vars[first]
        j = cg.scope_vars[first + 1]
        xi = assignment[i]
        xj = assignment[j]
        ai = alpha if alpha < n_states[i] else xi  # no state alpha: b = 0 forced
        aj = alpha if alpha < n_states[j] else xj
        e_a = _pair(cg, energies, params, a, xi, xj)
        e_b = _pair(cg, energies, params, a, xi, aj)
        e_c = _pair(cg, energies, params, a, ai, xj)
        e_d = _pair(cg, energies, params, a, ai, aj)
        cost[i] += e_c - e_a
        cost[j] += e_d - e_c
        capacity[f] = max(e_b + e_c - e_a - e_d, 0.0)


@njit(**NJIT_OPTIONS)
def pairwise_energy(cg, energies, params, node_energy, pairs, assignment):
    """E(assignment) less the constant factors, on a model whose coupling factors are
    ``pairs`` (all pairwise): the per-state energies plus the pairwise entries."""
    total = 0.0
    for i in range(len(cg.n_states)):
        total += node_energy[cg.state_offset[i] + assignment[i]]
    for f in range(len(pairs)):
        a = pairs[f]
        first = cg.scope_ptr[a]
        total += _pair(cg, energies, params, a, assignment[cg.scope_vars[first]],
                       assignment[cg.scope_vars[first + 1]])
    return total


def make_expansion(cg, theta, node_energy):
    """A function ``expand(assignment, deadline)`` that runs expansion moves in place, for
    each alpha in turn, until a cycle over all states lowers nothing (at most
    EXPANSION_CYCLES cycles), none started after ``deadline`` (``time.perf_counter()``
    seconds); it returns (moves kept, whether it finished). None when the model has no
    pairwise factor, one of arity >= 3, or a non-finite pairwise energy (hard constraints:
    a cut through them is rarely a feasible proposal).
    """
    arity = np.diff(cg.scope_ptr)
    sizes = np.diff(cg.table_offset)
    entry_arity = np.repeat(arity, sizes)
    if ((arity > 2).any() or not np.isfinite(theta[:len(entry_arity)][entry_arity == 2]).all()
            or not np.isfinite(cg.factor_param[(arity == 2) & (sizes == 0), 0]).all()):
        return None
    pairs = np.flatnonzero(arity == 2)
    if not len(pairs):
        return None
    first = cg.scope_ptr[pairs]
    left, right = cg.scope_vars[first], cg.scope_vars[first + 1]
    n_vars = cg.n_variables
    source, sink = n_vars, n_vars + 1
    cost = np.empty(n_vars)
    capacity = np.empty(len(pairs))
    params = cg.factor_param

    def move(assignment, alpha) -> bool:
        expansion_terms(cg, theta, params, node_energy, pairs, assignment, alpha, cost,
                        capacity)
        finite = np.abs(cost[np.isfinite(cost)])
        largest = max(float(finite.max()) if finite.size else 0.0,
                      float(capacity.max()), 1e-300)
        scale = FINITE_UNITS / largest
        units = np.where(np.isfinite(cost), np.rint(cost * scale), np.sign(cost) * INF_UNITS)
        pair_units = np.rint(capacity * scale)
        up, down, link = units > 0, units < 0, pair_units > 0
        rows = np.concatenate([np.full(int(up.sum()), source), np.flatnonzero(down),
                               left[link]])
        cols = np.concatenate([np.flatnonzero(up), np.full(int(down.sum()), sink),
                               right[link]])
        values = np.concatenate([units[up], -units[down], pair_units[link]]).astype(np.int32)
        graph = sp.csr_matrix((values, (rows, cols)), shape=(n_vars + 2, n_vars + 2))
        graph.sum_duplicates()
        flow = maximum_flow(graph, source, sink, method="dinic").flow
        residual = (graph - flow).tocsr()
        residual.data[residual.data < 0] = 0
        residual.eliminate_zeros()
        kept = np.zeros(n_vars + 2, dtype=bool)  # the source side: b = 0
        kept[breadth_first_order(residual, source, directed=True,
                                 return_predecessors=False)] = True
        switch = ~kept[:n_vars] & (assignment != alpha)
        if not switch.any():
            return False
        before = pairwise_energy(cg, theta, params, node_energy, pairs, assignment)
        old = assignment[switch]
        assignment[switch] = alpha
        after = pairwise_energy(cg, theta, params, node_energy, pairs, assignment)
        if after < before and (before == math.inf or
                               after < before - 1e-12 * (1.0 + abs(before))):
            return True
        assignment[switch] = old
        return False

    def expand(assignment, deadline=math.inf):
        moves = 0
        for _ in range(EXPANSION_CYCLES):
            moved = False
            for alpha in range(int(cg.max_states)):
                if time.perf_counter() > deadline:
                    return moves, False
                if move(assignment, alpha):
                    moves += 1
                    moved = True
            if not moved:
                break
        return moves, True

    return expand

