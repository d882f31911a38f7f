"""Elimination orders and the size of the junction tree they give, known before anything
is allocated.

A greedy order eliminates, at each step, the variable that adds the fewest fill edges to
the interaction graph (min-fill), ties broken by the smallest clique table (min-weight:
the product of the clique's cardinalities, so mixed domains are compared by table size,
not by variable count), then by the lowest variable index. This is the heuristic of
Kjaerulff (1990) and of libDAI's and pgmpy's elimination orders; the cliques it creates
are those of the elimination (bucket) tree of Dechter (1999). A clique whose scope is its
child's separator (non-maximal) is merged into that child where that saves work (see
:func:`_merge_nonmaximal`): the child then eliminates several variables, and the tree
keeps (nearly) only the maximal cliques of the triangulated graph, as a junction tree
built from them would.

The greedy search is written here, in Numba, rather than taken from ``networkx.algorithms.
approximation.treewidth_min_fill_in``: that function has no weights (mixed domains) and no
way to stop as soon as the tables exceed a budget, which decides "exact or not" on a
300x300 grid in a fraction of the time a complete order takes; and in Python it was the
whole cost of small models (tb2_network: 17 ms of Python, 1 ms in Numba).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .._config import NJIT_OPTIONS, njit

#: Merging a non-maximal clique into its child is worth it when its factors and other
#: children's messages, times (the child's row - 1), are at most this many (see
#: :func:`_merge_nonmaximal`): of 8, 32 and 128, 32 ran CSP_11, DBN_12, Pedigree_11,
#: ObjectDetection_11 and Grids_11 fastest overall (128 doubled DBN_12's upward pass).
MERGE_WORK = 32
#: Largest row (product of the eliminated variables' cardinalities) of a merged clique.
MAX_MERGED_ROW = 1024


@dataclass(frozen=True)
class EliminationPlan:
    """An elimination order and the junction tree it creates.

    Attributes
    ----------
    order : ndarray of shape (n_free,), dtype=int64
        Free (not clamped) variables in elimination order.
    cliques : list of ndarray of int64
        ``cliques[c]``: the variables of clique ``c`` (``C`` cliques, at most one per free
        variable): its separator first (ascending index), then the ``n_elim[c]`` variables
        it eliminates, the last eliminated first (so the first eliminated is the last
        axis of its table). The cliques of the elimination (bucket) tree, one per
        variable, with each non-maximal one merged into the child that contains it where
        that saves work (:data:`MERGE_WORK`). A partial plan (``fits`` False) has one
        clique per variable eliminated so far.
    parent : ndarray of shape (C,), dtype=int64
        The clique into which clique ``c``'s message goes (the clique that eliminates the
        first variable of its separator to be eliminated); -1 at roots (one per connected
        component). ``parent[c] > c`` always.
    table_entries : ndarray of shape (C,), dtype=float64
        Entries of each clique table (float: may exceed int64 for a plan that does not
        fit).
    separator_entries : ndarray of shape (C,), dtype=float64
        Entries of each clique's separator table (the clique table over the states of the
        variables it eliminates).
    induced_width : int
        Largest clique size minus one (-1 when no variable is free).
    fits : bool
        Whether the plan is complete and its clique tables within the budget it was made
        for. When False, the plan stopped early (its tables went over twice the budget,
        more than merging can save) or is over budget after merging, or the search itself
        ran out of work budget (``gave_up``): ``order`` and ``cliques`` may be partial and
        ``largest_table`` is the largest clique so far.
    gave_up : bool
        The search stopped at its ``max_work`` budget, not at a table over budget: the
        graph may still have a junction tree that fits, but finding it costs more than
        it was allowed.
    n_elim : ndarray of shape (C,), dtype=int64
        How many variables each clique eliminates (ones when not given).
    """

    order: np.ndarray
    cliques: list
    parent: np.ndarray
    table_entries: np.ndarray
    separator_entries: np.ndarray
    induced_width: int
    fits: bool
    gave_up: bool = False
    n_elim: np.ndarray | None = None

    def __post_init__(self):
        if self.n_elim is None:
            object.__setattr__(self, "n_elim", np.ones(len(self.cliques), dtype=np.int64))

    @property
    def largest_table(self) -> float:
        """Entries of the largest clique table (0 when no variable is free)."""
        return float(self.table_entries.max()) if len(self.table_entries) else 0.0

    @property
    def total_entries(self) -> float:
        """Entries of all clique tables together."""
        return float(self.table_entries.sum())

    def memory_bytes(self, n_energy_entries: int = 0) -> float:
        """Bytes that exact inference allocates with this plan, all float64: the clique
        tables, the separator tables (messages) and ``n_energy_entries`` factor beliefs."""
        separators = float(self.separator_entries.sum())
        return 8.0 * (self.total_entries + separators + n_energy_entries)


def plan_elimination(n_states, scope_ptr, scope_vars, free, max_entries: float = math.inf,
                     max_work: float = math.inf) -> EliminationPlan:
    """Greedy min-fill / min-weight elimination over the free variables.

    Parameters
    ----------
    n_states : ndarray of shape (V,), dtype=int64
        Cardinality of every variable.
    scope_ptr : ndarray of shape (F+1,), dtype=int64
    scope_vars : ndarray of shape (D,), dtype=int64
        The factor scopes in CSR form (variable indices of factor ``a`` at
        ``scope_vars[scope_ptr[a]:scope_ptr[a+1]]``); clamped variables are ignored.
    free : ndarray of shape (V,), dtype=bool
        The variables to eliminate (the others are clamped by evidence and take no part).
    max_entries : float, default=inf
        Budget on the total entries of the clique tables (after merging): the plan says
        ``fits=False`` when they exceed it; the search stops as soon as the tables created
        so far exceed twice it.
    max_work : float, default=inf
        Budget on the search itself, in neighbour visits (scope entries read, neighbours
        scored; about 1 us each): past it the search stops with ``gave_up=True``. A
        deterministic bound, so that "exact or not" never depends on the machine's speed.

    Returns
    -------
    EliminationPlan
    """
    n_states = np.ascontiguousarray(n_states, dtype=np.int64)
    free = np.ascontiguousarray(free, dtype=np.bool_)
    scope_ptr = np.ascontiguousarray(scope_ptr, dtype=np.int64)
    scope_vars = np.ascontiguousarray(scope_vars, dtype=np.int64)
    if len(scope_vars) > max_work:
        return _gave_up()
    order, clique_ptr, clique_vars, entries, status = _greedy_order(
        n_states, scope_ptr, scope_vars, free, float(max_entries), float(max_work))
    sizes = np.diff(clique_ptr).tolist()
    width = max(sizes, default=0) - 1
    if status != _DONE:
        return EliminationPlan(
            order=order,
            cliques=[np.append(np.sort(c[:-1]), c[-1:])
                     for c in np.split(clique_vars, clique_ptr[1:-1])] if len(order) else [],
            parent=np.full(len(order), -1, dtype=np.int64),
            table_entries=entries,
            separator_entries=entries / n_states[order].astype(np.float64),
            induced_width=width,
            fits=False,
            gave_up=status == _GAVE_UP,
        )
    ptr, members, parent, n_elim, entries, rows = _merge_nonmaximal(
        len(n_states), n_states, order, clique_ptr, clique_vars, scope_ptr, scope_vars)
    bounds = ptr.tolist()
    plan = EliminationPlan(
        order=order,
        cliques=[members[bounds[c] : bounds[c + 1]] for c in range(len(parent))],
        parent=parent,
        table_entries=entries,
        separator_entries=entries / rows,
        induced_width=width,
        fits=True,
        n_elim=n_elim,
    )
    if plan.total_entries > max_entries:
        plan = dataclasses.replace(plan, fits=False)
    return plan


_DONE, _OVER, _GAVE_UP = 0, 1, 2
_GROUP = 128  # variables per group of the best-score search in _greedy_order


@njit(**NJIT_OPTIONS)
def _grown(a, need):
    """``a`` in an array of at least ``need`` entries (doubling), contents kept."""
    if need <= len(a):
        return a
    out = np.empty(max(2 * len(a), need), dtype=a.dtype)
    for i in range(len(a)):  # a loop: slice assignment compiles 2 s of generic code
        out[i] = a[i]
    return out


@njit(inline="always", **NJIT_OPTIONS)
def _better(fill, weight, u, v):
    """Whether variable u comes before v (v < 0: none): fewer fill edges, then a smaller
    table, then the lower index."""
    if v < 0:
        return True
    if fill[u] != fill[v]:
        return fill[u] < fill[v]
    if weight[u] != weight[v]:
        return weight[u] < weight[v]
    return u < v


@njit(**NJIT_OPTIONS)
def _neighbour_lists(n_states, scope_ptr, scope_vars, free):
    """The interaction graph of the free variables: (start, degree, capacity, pool), each
    variable's neighbours at ``pool[start[v]:start[v] + degree[v]]``, room for
    ``capacity[v]``; built from each variable's factors (found by a counting sort) with
    a marker per variable, so no sorting."""
    n = len(n_states)
    first = np.zeros(n + 1, dtype=np.int64)
    for e in range(len(scope_vars)):
        first[scope_vars[e] + 1] += 1
    for v in range(n):
        first[v + 1] += first[v]
    filled = np.empty(n, dtype=np.int64)
    for v in range(n):
        filled[v] = first[v]
    factor_of = np.empty(len(scope_vars), dtype=np.int64)
    for a in range(len(scope_ptr) - 1):
        for e in range(scope_ptr[a], scope_ptr[a + 1]):
            factor_of[filled[scope_vars[e]]] = a
            filled[scope_vars[e]] += 1
    mark = np.empty(n, dtype=np.int64)
    for v in range(n):
        mark[v] = -1
    degree = np.zeros(n, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    capacity = np.zeros(n, dtype=np.int64)
    pool = np.empty(16, dtype=np.int64)
    end = 0
    for fill_pass in range(2):  # count, then fill
        for u in range(n):
            if not free[u]:
                continue
            mark[u] = u + fill_pass * n
            for f in range(first[u], first[u + 1]):
                a = factor_of[f]
                for e in range(scope_ptr[a], scope_ptr[a + 1]):
                    w = scope_vars[e]
                    if free[w] and mark[w] != u + fill_pass * n:
                        mark[w] = u + fill_pass * n
                        if fill_pass == 1:
                            pool[start[u] + degree[u]] = w
                        degree[u] += 1
            if fill_pass == 0:
                capacity[u] = max(2 * degree[u], 4)
                start[u] = end
                end += capacity[u]
                degree[u] = 0
        if fill_pass == 0:
            pool = np.empty(2 * end + 16, dtype=np.int64)
    return start, degree, capacity, pool, end


@njit(**NJIT_OPTIONS)
def _greedy_order(n_states, scope_ptr, scope_vars, free, max_entries, max_work):
    """The greedy min-fill / min-weight search of :func:`plan_elimination` on flat arrays.

    The interaction graph is kept as one neighbour list per variable, each in its own
    segment of a pool that grows by doubling; fill edges are counted by marking a
    variable's neighbours and visiting theirs. Each step rescores the variables whose
    score may have changed; the best is found by keeping the best of each group of
    :data:`_GROUP` variables (rescanned when one of them changes) and scanning those: a
    heap costs 2 s more to compile, a scan of every score 4.7 s on a 328x400 grid. Work is
    counted in neighbour visits as documented there, so that the budget is deterministic.

    Returns (order, clique_ptr, clique_vars, entries, status): the cliques in CSR form
    (separator in no particular order, then the eliminated variable), their table
    entries, and _DONE, _OVER (tables over twice ``max_entries``) or _GAVE_UP
    (``max_work``).
    """
    n = len(n_states)
    work = float(len(scope_vars))
    start, degree, capacity, adj, end = _neighbour_lists(n_states, scope_ptr, scope_vars, free)
    mark = np.zeros(n, dtype=np.int64)
    stamp = 0
    fill = np.zeros(n, dtype=np.int64)
    weight = np.zeros(n, dtype=np.float64)
    n_groups = (n + _GROUP - 1) // _GROUP
    group_best = np.empty(n_groups, dtype=np.int64)
    stale = np.ones(n_groups, dtype=np.bool_)
    done = np.zeros(n, dtype=np.bool_)
    touched = np.empty(n, dtype=np.int64)
    n_touched = 0
    for v in range(n):
        done[v] = not free[v]
        if free[v]:
            touched[n_touched] = v
            n_touched += 1
    n_free = n_touched
    order = np.empty(n, dtype=np.int64)
    entries = np.empty(n, dtype=np.float64)
    clique_ptr = np.zeros(n + 1, dtype=np.int64)
    clique_vars = np.empty(4 * n + 1, dtype=np.int64)
    n_order = 0
    total = 0.0
    status = _DONE
    while True:
        # Rescore the touched variables: fill edges, then the clique's table size.
        for t in range(n_touched):
            v = touched[t]
            d = degree[v]
            s = start[v]
            work += d + 1
            stamp += 1
            for i in range(d):
                mark[adj[s + i]] = stamp
            present = 0
            table = float(n_states[v])
            for i in range(d):
                u = adj[s + i]
                table *= n_states[u]
                for j in range(start[u], start[u] + degree[u]):
                    if mark[adj[j]] == stamp:
                        present += 1
            fill[v] = (d * (d - 1) - present) // 2
            weight[v] = table
            stale[v // _GROUP] = True
        if n_order == n_free:
            break
        if work > max_work:
            status = _GAVE_UP
            break
        # The best variable: the best of the groups' best.
        v = -1
        for g in range(n_groups):
            if stale[g]:
                best = -1
                for u in range(g * _GROUP, min(n, (g + 1) * _GROUP)):
                    if not done[u] and _better(fill, weight, u, best):
                        best = u
                group_best[g] = best
                stale[g] = False
            u = group_best[g]
            if u >= 0 and _better(fill, weight, u, v):
                v = u
        # Eliminate v: its clique is its neighbours and itself.
        done[v] = True
        stale[v // _GROUP] = True
        d = degree[v]
        s = start[v]
        lo = clique_ptr[n_order]
        clique_vars = _grown(clique_vars, lo + d + 1)
        for i in range(d):
            clique_vars[lo + i] = adj[s + i]
        clique_vars[lo + d] = v
        clique_ptr[n_order + 1] = lo + d + 1
        table = float(n_states[v])
        for i in range(d):
            table *= n_states[adj[s + i]]
        order[n_order] = v
        entries[n_order] = table
        n_order += 1
        total += table
        # Merging non-maximal cliques at most halves the tables (each is at most half
        # of the child it merges into), so past twice the budget nothing can fit.
        if total > 2.0 * max_entries:
            status = _OVER
            break
        for i in range(d):  # v leaves its neighbours' lists
            u = clique_vars[lo + i]
            for j in range(start[u], start[u] + degree[u]):
                if adj[j] == v:
                    degree[u] -= 1
                    adj[j] = adj[start[u] + degree[u]]
                    break
        for i in range(d):  # and its neighbours become a clique
            u = clique_vars[lo + i]
            stamp += 1
            mark[u] = stamp
            for j in range(start[u], start[u] + degree[u]):
                mark[adj[j]] = stamp
            for i2 in range(d):
                w = clique_vars[lo + i2]
                if mark[w] == stamp:
                    continue
                if degree[u] == capacity[u]:  # move u's list to a segment twice as long
                    adj = _grown(adj, end + 2 * capacity[u])
                    for j in range(degree[u]):
                        adj[end + j] = adj[start[u] + j]
                    start[u] = end
                    capacity[u] *= 2
                    end += capacity[u]
                adj[start[u] + degree[u]] = w
                degree[u] += 1
        # Rescore the neighbours and their neighbours.
        stamp += 1
        n_touched = 0
        for i in range(d):
            u = clique_vars[lo + i]
            if mark[u] != stamp:
                mark[u] = stamp
                touched[n_touched] = u
                n_touched += 1
            for j in range(start[u], start[u] + degree[u]):
                w = adj[j]
                if mark[w] != stamp:
                    mark[w] = stamp
                    touched[n_touched] = w
                    n_touched += 1
    return (order[:n_order], clique_ptr[:n_order + 1], clique_vars[:clique_ptr[n_order]],
            entries[:n_order], status)


@njit(**NJIT_OPTIONS)
def _merge_nonmaximal(n_vars, n_states, order, clique_ptr, clique_vars, scope_ptr, scope_vars):
    """The elimination tree of :func:`_greedy_order`'s cliques (in CSR form, separator in no
    order then the eliminated variable), with each non-maximal clique merged into the child
    that contains it where that saves work.

    Each clique's parent is the clique of the first of its separator's variables to be
    eliminated; each factor goes to the clique of the first of its variables eliminated. A
    clique ``p`` is non-maximal when its scope is its child ``c``'s separator: then ``c``
    can eliminate ``p``'s variable too, right after its own, and ``p``'s table, ``c``'s
    message and their passes disappear; but ``p``'s factors and other children's messages
    then meet a table ``row(c)`` times larger. The merge (of the child with the smallest
    row, the first such) is made when (factors + other children of ``p``) x (``row(c)`` -
    1) <= :data:`MERGE_WORK`, and the merged clique's row stays within
    :data:`MAX_MERGED_ROW` entries. In Numba: in Python, with NumPy for the links, this
    was most of the planning of a small model (bn_cancer: ~25 of 30 us).

    Returns (ptr, members, parent, n_elim, entries, rows) of the cliques kept: their
    variables ``members[ptr[c]:ptr[c+1]]`` (separator ascending, then the variables
    eliminated, the last eliminated first), parent (-1 at roots), variables eliminated,
    table entries and row entries (float64).
    """
    n = len(order)
    position = np.full(n_vars, n, dtype=np.int64)
    for c in range(n):
        position[order[c]] = c
    parent = np.full(n, -1, dtype=np.int64)
    n_children = np.zeros(n + 1, dtype=np.int64)
    for c in range(n):
        clique_vars[clique_ptr[c] : clique_ptr[c + 1] - 1].sort()  # the separator
        best = n
        for k in range(clique_ptr[c], clique_ptr[c + 1] - 1):
            best = min(best, position[clique_vars[k]])
        if best < n:
            parent[c] = best
            n_children[best + 1] += 1
    n_factors_of = np.zeros(n, dtype=np.int64)
    for a in range(len(scope_ptr) - 1):
        first = n
        for e in range(scope_ptr[a], scope_ptr[a + 1]):
            first = min(first, position[scope_vars[e]])
        if first < n:
            n_factors_of[first] += 1
    child_ptr = np.cumsum(n_children)
    children = np.empty(max(n, 1), dtype=np.int64)
    fill = child_ptr[:-1].copy()
    for c in range(n):  # each clique's children in increasing order
        if parent[c] >= 0:
            children[fill[parent[c]]] = c
            fill[parent[c]] += 1
    size = np.empty(n, dtype=np.int64)
    n_elim = np.ones(n, dtype=np.int64)
    row = np.empty(n, dtype=np.int64)
    for c in range(n):
        size[c] = clique_ptr[c + 1] - clique_ptr[c]
        row[c] = n_states[order[c]]
    merged_into = np.full(n, -1, dtype=np.int64)
    merged_child = np.full(n, -1, dtype=np.int64)
    for p in range(n):
        c = -1
        for i in range(child_ptr[p], child_ptr[p + 1]):
            q = children[i]
            if size[q] - n_elim[q] == size[p] and (c < 0 or row[q] < row[c]):
                c = q
        if c < 0:
            continue
        k = n_states[order[p]]
        n_others = n_factors_of[p] + child_ptr[p + 1] - child_ptr[p] - 1
        if row[c] * k > MAX_MERGED_ROW or n_others * (row[c] - 1) > MERGE_WORK:
            continue
        merged_into[c] = p
        merged_child[p] = c
        size[p] += n_elim[c]
        n_elim[p] = n_elim[c] + 1
        row[p] = row[c] * k
    index = np.full(n, -1, dtype=np.int64)
    n_kept = 0
    total = 0
    for t in range(n):
        if merged_into[t] < 0:
            index[t] = n_kept
            n_kept += 1
            total += size[t]
    ptr = np.zeros(n_kept + 1, dtype=np.int64)
    members = np.empty(total, dtype=np.int64)
    out_parent = np.full(n_kept, -1, dtype=np.int64)
    out_elim = np.empty(n_kept, dtype=np.int64)
    entries = np.empty(n_kept, dtype=np.float64)
    rows = np.empty(n_kept, dtype=np.float64)
    for t in range(n):
        if merged_into[t] >= 0:
            continue
        j = index[t]
        at = ptr[j]
        table = 1.0
        for k in range(clique_ptr[t], clique_ptr[t + 1]):  # its own clique
            members[at] = clique_vars[k]
            table *= n_states[clique_vars[k]]
            at += 1
        c = merged_child[t]
        while c >= 0:  # then the variables of the children merged into it
            members[at] = order[c]
            table *= n_states[order[c]]
            at += 1
            c = merged_child[c]
        ptr[j + 1] = at
        q = parent[t]
        while q >= 0 and merged_into[q] >= 0:  # the group that holds the parent
            q = merged_into[q]
        if q >= 0:
            out_parent[j] = index[q]
        out_elim[j] = n_elim[t]
        entries[j] = table
        rows[j] = row[t]
    return ptr, members, out_parent, out_elim, entries, rows


def _gave_up() -> EliminationPlan:
    empty = np.zeros(0, dtype=np.int64)
    return EliminationPlan(empty, [], empty, np.zeros(0), np.zeros(0), -1, False, True)
