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
then only a proposal. The minimum cut is computed by :mod:`.maxflow` (Boykov-Kolmogorov),
on integer capacities: energies are scaled so that all finite terms together stay below
2^59 units, and rounded. So every move is checked on the exact energy and kept only when
strictly lower: the energy never rises.

The graph's arcs (two per pairwise factor) are laid out once per model; a move only fills
in capacities, cuts, and evaluates the energy, all in one kernel.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .._config import NJIT_OPTIONS, njit
from ..structured import pair_entry
from .maxflow import min_cut

INF = np.inf
#: All finite capacities together stay below 2^FINITE_BITS units; a +inf term is
#: 2^FINITE_BITS units (more than any cut of finite terms), so no sum overflows int64.
FINITE_BITS = 59
#: Moves at most, in cycles over the states: EXPANSION_CYCLES times the number of states.
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
    b_i = 1 less that of b_i = 0 (``+inf`` when i has no state alpha or it is forbidden,
    ``-inf`` when only i's current state is), ``capacity[f]`` (len(pairs),) the truncated
    B + C - A - D of pairwise factor ``pairs[f]``."""
    n_states = cg.n_states
    for i in range(len(n_states)):
        soff = cg.state_offset[i]
        if alpha >= n_states[i] or node_energy[soff + alpha] == INF:
            cost[i] = INF
        elif node_energy[soff + assignment[i]] == INF:
            cost[i] = -INF
        else:
            cost[i] = node_energy[soff + alpha] - node_energy[soff + assignment[i]]
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


@njit(**NJIT_OPTIONS)
def expansion_move(cg, energies, params, node_energy, pairs, assignment, alpha, first, head,
                   sister, pair_arc, cost, capacity, r_cap, tr_cap, switch):
    """The expansion move to ``alpha``, in place on ``assignment`` when it lowers the
    energy strictly; returns whether it did. ``first``, ``head``, ``sister``: the arcs of
    the cut graph (see :mod:`.maxflow`), ``pair_arc[f]`` the arc from ``pairs[f]``'s first
    variable to its second; the other arguments are scratch of matching sizes."""
    expansion_terms(cg, energies, params, node_energy, pairs, assignment, alpha, cost,
                    capacity)
    largest = 1e-300
    for i in range(len(cost)):
        if abs(cost[i]) < INF:
            largest = max(largest, abs(cost[i]))
    for f in range(len(capacity)):
        largest = max(largest, capacity[f])
    infinite = 1 << FINITE_BITS
    scale = infinite / (largest * (len(cost) + len(capacity) + 1))
    for i in range(len(cost)):
        c = cost[i]
        tr_cap[i] = infinite if c == INF else -infinite if c == -INF else round(c * scale)
    for f in range(len(capacity)):
        r_cap[pair_arc[f]] = round(capacity[f] * scale)
        r_cap[sister[pair_arc[f]]] = 0
    min_cut(first, head, sister, r_cap, tr_cap, switch)
    changed = False
    for i in range(len(switch)):
        if switch[i] and assignment[i] != alpha:
            changed = True
            break
    if not changed:
        return False
    before = pairwise_energy(cg, energies, params, node_energy, pairs, assignment)
    old = assignment.copy()
    for i in range(len(switch)):
        if switch[i]:
            assignment[i] = alpha
    after = pairwise_energy(cg, energies, params, node_energy, pairs, assignment)
    if after < before and (before == INF or after < before - 1e-12 * (1.0 + abs(before))):
        return True
    assignment[:] = old
    return False


def cut_graph(n_vars: int, left: np.ndarray, right: np.ndarray):
    """The arcs of the cut graph of pairwise factors on variables (``left[f]``,
    ``right[f]``), in the CSR layout of :mod:`.maxflow`: (first, head, sister, pair_arc),
    ``pair_arc[f]`` the arc left[f] -> right[f] (its sister the reverse arc)."""
    n_pairs = len(left)
    tails = np.concatenate([left, right])
    heads = np.concatenate([right, left])
    order = np.argsort(tails, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    first = np.zeros(n_vars + 1, dtype=np.int64)
    np.cumsum(np.bincount(tails, minlength=n_vars), out=first[1:])
    reverse = np.concatenate([np.arange(n_pairs, 2 * n_pairs), np.arange(n_pairs)])
    sister = np.empty(2 * n_pairs, dtype=np.int64)
    sister[position] = position[reverse]
    return (first, np.ascontiguousarray(heads[order], dtype=np.int64), sister,
            position[:n_pairs].astype(np.int64))


def make_expansion(cg, theta, node_energy):
    """A function ``expand(assignment, deadline)`` that runs expansion moves in place, the
    states in turn, until every state in a row has been tried without a gain (at most
    EXPANSION_CYCLES cycles over the states), none started after ``deadline``
    (``time.perf_counter()`` seconds); it returns (moves kept, whether it finished). None
    when the model has no pairwise factor, one of arity >= 3, or a non-finite pairwise
    energy (hard constraints: a cut through them is rarely a feasible proposal).
    """
    arity = np.diff(cg.scope_ptr)
    sizes = np.diff(cg.table_offset)
    # The factors of the non-finite entries (not a per-entry arity array: 1.5 GB on a dense
    # 300x300 K=32 grid).
    owners = np.searchsorted(cg.table_offset, np.flatnonzero(~np.isfinite(theta)),
                             side="right") - 1
    if ((arity > 2).any() or (arity[owners[owners < cg.n_factors]] == 2).any()
            or not np.isfinite(cg.factor_param[(arity == 2) & (sizes == 0), 0]).all()):
        return None
    pairs = np.flatnonzero(arity == 2)
    if not len(pairs):
        return None
    first = cg.scope_ptr[pairs]
    n_vars = cg.n_variables
    arcs = cut_graph(n_vars, cg.scope_vars[first].astype(np.int64),
                     cg.scope_vars[first + 1].astype(np.int64))
    scratch = (np.empty(n_vars), np.empty(len(pairs)), np.empty(2 * len(pairs), np.int64),
               np.empty(n_vars, np.int64), np.empty(n_vars, np.bool_))
    n_labels = int(cg.max_states)

    def expand(assignment, deadline=math.inf):
        moves = 0
        failures = 0  # states tried in a row without a gain
        for step in range(EXPANSION_CYCLES * n_labels):
            if failures == n_labels:
                break
            if time.perf_counter() > deadline:
                return moves, False
            if expansion_move(cg, theta, cg.factor_param, node_energy, pairs, assignment,
                              step % n_labels, *arcs, *scratch):
                moves += 1
                failures = 0
            else:
                failures += 1
        return moves, True

    return expand
