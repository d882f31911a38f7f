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

import heapq
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EliminationPlan:
    """An elimination order and the cliques it creates.

    Attributes
    ----------
    order : ndarray of shape (n_free,), dtype=int64
        Free (not clamped) variables in elimination order.
    cliques : list of ndarray of int64
        ``cliques[c]``: the variables of the clique created by eliminating ``order[c]``,
        the other variables first (ascending index), ``order[c]`` last.
    parent : ndarray of shape (n_free,), dtype=int64
        The clique into which clique ``c``'s message goes: the clique of the first
        variable of ``cliques[c][:-1]`` to be eliminated after ``order[c]``; -1 at roots
        (one per connected component). ``parent[c] > c`` always.
    table_entries : ndarray of shape (n_free,), dtype=float64
        Entries of each clique table (float: may exceed int64 for a plan that does not
        fit).
    separator_entries : ndarray of shape (n_free,), dtype=float64
        Entries of each clique's separator table (the clique table over the eliminated
        variable's states).
    induced_width : int
        Largest clique size minus one (-1 when no variable is free).
    fits : bool
        Whether the plan is complete and within the budget it was made for. When False,
        the plan stopped at the first clique over budget (or when the search itself ran
        out of work budget, ``gave_up``): ``order`` and ``cliques`` are partial and
        ``largest_table`` is the largest clique so far.
    gave_up : bool
        The search stopped at its ``max_work`` budget, not at a table over budget: the
        graph may still have a junction tree that fits, but finding it costs more than
        it was allowed.
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
        tables, the upward separator tables, one downward separator (the largest), and
        ``n_energy_entries`` factor beliefs."""
        separators = float(self.separator_entries.sum())
        scratch = float(self.separator_entries.max()) if len(self.separator_entries) else 0.0
        return 8.0 * (self.total_entries + separators + scratch + n_energy_entries)


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
        Budget on the total entries of the clique tables: the search stops as soon as
        the tables created so far exceed it, and the plan says ``fits=False``.
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
        if total > max_entries:
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

    parent = np.full(len(order), -1, dtype=np.int64)
    if fits:
        for c, clique in enumerate(cliques):
            if len(clique) > 1:
                parent[c] = min(position[int(u)] for u in clique[:-1])
    width = max((len(c) for c in cliques), default=0) - 1
    return EliminationPlan(
        order=np.array(order, dtype=np.int64),
        cliques=cliques,
        parent=parent,
        table_entries=np.array(entries, dtype=np.float64),
        separator_entries=np.array(entries, dtype=np.float64) / n_states[order].astype(np.float64),
        induced_width=width,
        fits=fits,
        gave_up=gave_up,
    )


def _gave_up() -> EliminationPlan:
    empty = np.zeros(0, dtype=np.int64)
    return EliminationPlan(empty, [], empty, np.zeros(0), np.zeros(0), -1, False, True)
