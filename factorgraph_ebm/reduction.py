"""Factor preprocessing for belief propagation: factors on the same scope are merged, and a
factor whose scope lies inside another's is absorbed into it, so that no spurious cycle
hides a tree from BP.

Two factors on one pair of variables form a 2-cycle of the factor graph, and a pair inside
a triplet's scope a cycle too: BP then gives the Bethe approximation where the model is a
tree in disguise (ln Z 3.39672 instead of ln 30 = 3.40120 on two variables with a
duplicated factor). Absorbing such factors (adding their tables, broadcast and permuted
to the absorbing factor's scope order) leaves the energy unchanged and the graph smaller.
Only factors of arity >= 2 are absorbed (unary and constant factors never close a cycle);
graphs with compact structured factors (no tables) are left as they are.

The reduced graph is built once per compiled graph and cached on the :class:`FactorGraph`;
each call maps theta to the reduced theta (a gather and adds) and maps the reduced factor
beliefs back to every original factor (the absorbing factor's belief, marginalized onto the
absorbed factor's scope: minimum at T = 0, sum of probabilities at T > 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reduction:
    """How a graph's factors map onto its reduced graph.

    Attributes
    ----------
    graph : FactorGraph
        The reduced graph: the same variables in the same order, the kept factors in their
        order, with the merged tables of the original graph's own energies.
    absorber : ndarray of shape (F,), dtype=int64
        For each original factor, the reduced factor that holds its table.
    sources, targets : ndarray of int64
        ``theta_reduced[targets] += theta[sources]``: every original table broadcast into
        the reduced table that holds it.
    axes : list of (tuple, tuple)
        Per original factor: the axes of the holding table to drop, and the transpose that
        puts the rest in the factor's own scope order.
    """

    graph: object
    absorber: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    axes: list

    def energies(self, theta: np.ndarray) -> np.ndarray:
        """The reduced graph's theta from the original theta (exact sums, +inf kept)."""
        out = np.zeros(self.graph.compile().n_energy_entries)
        np.add.at(out, self.targets, theta[self.sources])
        return out

    def factor_beliefs(self, cg, reduced_cg, beliefs: np.ndarray, temperature: float):
        """Original factors' beliefs (theta layout) from the reduced ones: the absorbing
        factor's table marginalized onto each absorbed factor's scope."""
        out = np.empty(cg.n_energy_entries)
        for a in range(cg.n_factors):
            lo, hi = cg.table_offset[a], cg.table_offset[a + 1]
            r = self.absorber[a]
            rlo, rhi = reduced_cg.table_offset[r], reduced_cg.table_offset[r + 1]
            scope = reduced_cg.scope_vars[reduced_cg.scope_ptr[r]:reduced_cg.scope_ptr[r + 1]]
            table = beliefs[rlo:rhi].reshape(tuple(reduced_cg.n_states[scope]))
            keep, drop = self.axes[a]
            if drop:
                table = table.min(axis=drop) if temperature == 0.0 else table.sum(axis=drop)
            out[lo:hi] = np.transpose(table, keep).reshape(-1)
        return out


def reduce_factors(graph):
    """The :class:`Reduction` of ``graph``, or None when no factor is absorbed.

    Cached on the graph for its current compiled structure.
    """
    cg = graph.compile()
    cached = graph.__dict__.get("_reduction")
    if cached is not None and cached[0] is cg:
        return cached[1]
    reduction = _build(graph, cg)
    graph.__dict__["_reduction"] = (cg, reduction)
    return reduction


def _may_nest(cg) -> bool:
    """False when no factor of arity >= 2 can be absorbed: all of arity <= 2 and no pair
    of variables repeated (vectorized: the common case of large pairwise grids)."""
    arity = np.diff(cg.scope_ptr)
    if arity.max(initial=0) > 2:
        return True
    pairs = cg.scope_vars.reshape(-1)[np.repeat(arity == 2, arity)].reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    return len(np.unique(pairs, axis=0)) < len(pairs)


def _build(graph, cg):
    # A forest has no repeated or nested scope of arity >= 2 (two such factors would share
    # two variables: a cycle); a pairwise graph has one only if a pair repeats.
    if cg.is_forest or len(cg.compact_factors()) or not _may_nest(cg):
        return None
    scopes = [cg.scope_vars[cg.scope_ptr[a]:cg.scope_ptr[a + 1]].tolist()
              for a in range(cg.n_factors)]
    # Candidates to absorb into: every factor of arity >= 2, largest first. A factor's
    # superset, if any, contains its first variable: look only among those (no F^2 scan).
    by_size = sorted((a for a in range(cg.n_factors) if len(scopes[a]) >= 2),
                     key=lambda a: (-len(scopes[a]), a))
    holder: dict[frozenset, int] = {}
    absorber = np.arange(cg.n_factors)
    absorbed = False
    sets = {a: frozenset(scopes[a]) for a in by_size}
    chosen_with: dict[int, list[int]] = {}
    for a in by_size:
        home = holder.get(sets[a])
        if home is None:
            home = next((b for b in chosen_with.get(scopes[a][0], ()) if sets[a] < sets[b]),
                        None)
        if home is None:
            holder[sets[a]] = a
            for v in scopes[a]:
                chosen_with.setdefault(v, []).append(a)
        else:
            absorber[a] = home
            absorbed = True
    if not absorbed:
        return None

    kept = [a for a in range(cg.n_factors) if absorber[a] == a]
    position = {a: i for i, a in enumerate(kept)}
    shapes = [tuple(cg.n_states[scopes[a]].tolist()) for a in kept]
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum([math.prod(shape) for shape in shapes], out=offsets[1:])
    sources, targets, axes = [], [], []
    for a in range(cg.n_factors):
        home = absorber[a]
        r = position[home]
        home_scope = scopes[home]
        own = scopes[a]
        # Index of every entry of the holding table into a's table (a's axes among them).
        grid = np.indices(shapes[r]).reshape(len(home_scope), -1) if home_scope else \
            np.zeros((0, 1), dtype=np.int64)
        index = np.zeros(grid.shape[1], dtype=np.int64)
        for e, v in zip(range(cg.scope_ptr[a], cg.scope_ptr[a + 1]), own):
            index += cg.edge_stride[e] * grid[home_scope.index(v)]
        sources.append(cg.table_offset[a] + index)
        targets.append(offsets[r] + np.arange(grid.shape[1]))
        keep = tuple(home_scope.index(v) for v in own)
        drop = tuple(i for i in range(len(home_scope)) if i not in keep)
        # After dropping, the kept axes are renumbered in the home order; transpose to a's.
        order = sorted(keep)
        axes.append((tuple(order.index(k) for k in keep), drop))
    sources, targets = np.concatenate(sources), np.concatenate(targets)
    theta = np.zeros(int(offsets[-1]))
    np.add.at(theta, targets, cg.energies[sources])
    reduced = graph._same_variables()  # a standalone equivalent graph, merged tables
    for a, shape, lo, hi in zip(kept, shapes, offsets[:-1], offsets[1:]):
        reduced.add_factors([scopes[a]], theta[lo:hi].reshape((1, *shape)), by_index=True)
    return Reduction(reduced, np.array([position[absorber[a]] for a in range(cg.n_factors)]),
                     sources, targets, axes)
