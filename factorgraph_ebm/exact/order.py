"""Elimination orders and the size of the junction tree they give, known before anything
is allocated.

A greedy order eliminates, at each step, the variable that adds the fewest fill edges to
the interaction graph (min-fill), ties broken by the smallest clique table (min-weight:
weight = log2 of the product of the clique's cardinalities, so mixed domains are
compared by table size, not by variable count), then by the lowest variable index. This is
the heuristic of Kjaerulff (1990) and of libDAI's and pgmpy's elimination orders; the
cliques it creates are those of the elimination (bucket) tree of Dechter (1999).

The greedy search is written here rather than taken from ``networkx.algorithms.
approximation.treewidth_min_fill_in``: that function has no weights (mixed domains) and no
way to stop as soon as the tables exceed a budget, which decides "exact or not" on a
300x300 grid in a fraction of the time a complete order takes.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from dataclasses import dataclass

import numpy as np

#: Merging a non-maximal clique into its child is worth it when its factors and other
#: children's messages, times (the child's row - 1), are at most this many (see
#: :func:`_merge_nonmaximal`).
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
    n_states = np.asarray(n_states, dtype=np.int64)
    free = np.asarray(free, dtype=bool)
    log_card = np.log2(np.maximum(n_states, 1).astype(np.float64))
    neighbours: dict[int, set[int]] = {int(v): set() for v in np.flatnonzero(free)}
    work = float(len(scope_vars))
    if work > max_work:
        return _gave_up()
    is_free = free.tolist()
    members_of = scope_vars.tolist()
    bounds = scope_ptr.tolist()
    for a in range(len(bounds) - 1):
        members = [v for v in members_of[bounds[a]:bounds[a + 1]] if is_free[v]]
        for i, u in enumerate(members):
            for v in members[i + 1 :]:
                if u != v:
                    neighbours[u].add(v)
                    neighbours[v].add(u)

    def score(v: int) -> tuple:
        nonlocal work
        nbrs = neighbours[v]
        work += len(nbrs) + 1
        # Fill edges: pairs of neighbours not yet adjacent. Each set difference also
        # counts u itself (u is not its own neighbour), and each missing pair twice.
        missing = sum(len(nbrs - neighbours[u]) for u in nbrs) - len(nbrs)
        weight = log_card[v] + sum(log_card[u] for u in nbrs)
        return (missing // 2, weight, v)

    heap = [score(v) for v in neighbours]
    heapq.heapify(heap)
    current = {entry[2]: entry for entry in heap}
    position: dict[int, int] = {}
    order: list[int] = []
    cliques: list[np.ndarray] = []
    entries: list[float] = []
    total = 0.0
    fits = True
    gave_up = False
    while heap:
        if work > max_work:
            fits, gave_up = False, True
            break
        entry = heapq.heappop(heap)
        v = entry[2]
        if current.get(v) is not entry:
            continue  # a stale score
        del current[v]
        nbrs = neighbours.pop(v)
        clique = np.array(sorted(nbrs) + [v], dtype=np.int64)
        size = float(np.prod(n_states[clique].astype(np.float64)))
        position[v] = len(order)
        order.append(v)
        cliques.append(clique)
        entries.append(size)
        total += size
        # Merging non-maximal cliques at most halves the tables (each is at most half
        # of the child it merges into), so past twice the budget nothing can fit.
        if total > 2 * max_entries:
            fits = False
            break
        touched = set(nbrs)
        for u in nbrs:
            adjacent = neighbours[u]
            adjacent.discard(v)
            adjacent.update(nbrs)
            adjacent.discard(u)
        for u in nbrs:
            touched.update(neighbours[u])
        for u in touched:
            fresh = score(u)
            current[u] = fresh
            heapq.heappush(heap, fresh)

    width = max((len(c) for c in cliques), default=0) - 1
    if not fits:
        return EliminationPlan(
            order=np.array(order, dtype=np.int64),
            cliques=cliques,
            parent=np.full(len(order), -1, dtype=np.int64),
            table_entries=np.array(entries, dtype=np.float64),
            separator_entries=np.array(entries) / n_states[order].astype(np.float64),
            induced_width=width,
            fits=False,
            gave_up=gave_up,
        )
    parent = [min(position[u] for u in clique[:-1].tolist()) if len(clique) > 1 else -1
              for clique in cliques]
    # The factors of each clique: the clique of the first of their variables eliminated.
    n_factors_of = [0] * len(order)
    for a in range(len(bounds) - 1):
        steps = [position[v] for v in members_of[bounds[a]:bounds[a + 1]] if is_free[v]]
        if steps:
            n_factors_of[min(steps)] += 1
    plan = _merge_nonmaximal(order, cliques, parent, n_states, n_factors_of, width)
    if plan.total_entries > max_entries:
        plan = dataclasses.replace(plan, fits=False)
    return plan


def _merge_nonmaximal(order, cliques, parent, n_states, n_factors_of, width):
    """The elimination tree with each non-maximal clique merged into the child that
    contains it, where that saves work.

    A clique ``p`` is non-maximal when its scope is its child ``c``'s separator: then
    ``c`` can eliminate ``p``'s variable too, right after its own, and ``p``'s table,
    ``c``'s message and their passes disappear; but ``p``'s factors and other children's
    messages then meet a table ``row(c)`` times larger. The merge is made when
    (factors + other children of ``p``) x (``row(c)`` - 1) <= :data:`MERGE_WORK`, and the
    merged clique's row stays within :data:`MAX_MERGED_ROW` entries.
    """
    n = len(cliques)
    cards = n_states.tolist()
    scope = [clique.tolist() for clique in cliques]  # per group, keyed by its top clique
    n_elim = [1] * n
    row = [cards[clique[-1]] for clique in scope]
    children: list[list[int]] = [[] for _ in range(n)]
    for c in range(n):
        if parent[c] >= 0:
            children[parent[c]].append(c)
    members = [[c] for c in range(n)]
    owner = list(range(n))
    for p in range(n):
        size = len(scope[p])
        candidates = [c for c in children[p] if len(scope[c]) - n_elim[c] == size]
        if not candidates:
            continue
        c = min(candidates, key=lambda g: row[g])
        k = cards[scope[p][-1]]
        if (row[c] * k > MAX_MERGED_ROW
                or (n_factors_of[p] + len(children[p]) - 1) * (row[c] - 1) > MERGE_WORK):
            continue
        scope[p] = scope[p] + scope[c][len(scope[c]) - n_elim[c]:]
        n_elim[p] = n_elim[c] + 1
        row[p] = row[c] * k
        children[p] = [q for q in children[p] if q != c] + children[c]
        for m in members[c]:
            owner[m] = p
        members[p] += members[c]
        members[c] = []
    tops = [t for t in range(n) if members[t]]
    index = {t: i for i, t in enumerate(tops)}
    merged = [np.array(scope[t], dtype=np.int64) for t in tops]
    entries = np.array([float(np.prod(n_states[s].astype(np.float64))) for s in merged])
    rows = np.array([float(row[t]) for t in tops])
    return EliminationPlan(
        order=np.array(order, dtype=np.int64),
        cliques=merged,
        parent=np.array([index[owner[parent[t]]] if parent[t] >= 0 else -1 for t in tops],
                        dtype=np.int64),
        table_entries=entries,
        separator_entries=entries / rows,
        induced_width=width,
        fits=True,
        n_elim=np.array([n_elim[t] for t in tops], dtype=np.int64),
    )


def _gave_up() -> EliminationPlan:
    empty = np.zeros(0, dtype=np.int64)
    return EliminationPlan(empty, [], empty, np.zeros(0), np.zeros(0), -1, False, True)
