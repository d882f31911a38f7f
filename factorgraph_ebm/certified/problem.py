"""The MAP problem as the dual methods see it: per-state energies, an order of the
variables, and each variable's edges to the factors that couple it to others.

Unary factors and the per-state energies of evidence and soft evidence are summed into one
flat vector ``node_energy`` (S,), constant factors into ``constant``; only factors of arity
>= 2 (the *coupling* factors) carry messages. With respect to a variable order, a coupling
factor a is *before* variable i (``before[e]`` for i's edge e into a) when a has a variable
earlier than i, and *after* it when a has a later one (a pairwise factor is after its
earlier variable and before its later one; a factor of arity >= 3 may be both).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..compiled import CompiledGraph


class DualProblem(NamedTuple):
    """Flat arrays of a MAP problem for the dual kernels (all C-contiguous).

    Attributes
    ----------
    node_energy : ndarray of shape (S,), dtype=float64
        Per-state energies: evidence and soft evidence plus every unary factor's table
        (``+inf`` allowed), in the layout of ``state_offset``.
    constant : float
        The sum of the constant (empty-scope) factors (``+inf`` makes the model infeasible).
    order : ndarray of shape (V,), dtype=int64
        The variable order of the passes and of decoding.
    rank : ndarray of shape (V,), dtype=int64
        ``rank[order[k]] == k``.
    coupling_ptr, coupling_edges : ndarray of dtype int64
        CSR: the edges of variable i into coupling factors are
        ``coupling_edges[coupling_ptr[i]:coupling_ptr[i + 1]]``.
    before, after : ndarray of shape (D,), dtype=bool
        Per edge: its factor has a variable earlier (later) in the order than the edge's
        variable. False on edges of unary factors.
    weight : ndarray of shape (V,), dtype=float64
        TRW-S's share of a variable's reparameterized energy that each coupling factor gets
        in a pass, ``1 / max(n_before, n_after)`` (Kolmogorov 2006, eq. (9) with one
        monotonic chain per factor), 0 for a variable without coupling factors.
    is_coupling : ndarray of shape (F,), dtype=bool
        Factors of arity >= 2.
    """

    node_energy: np.ndarray
    constant: float
    order: np.ndarray
    rank: np.ndarray
    coupling_ptr: np.ndarray
    coupling_edges: np.ndarray
    before: np.ndarray
    after: np.ndarray
    weight: np.ndarray
    is_coupling: np.ndarray


def build_problem(cg: CompiledGraph, theta: np.ndarray, unary: np.ndarray,
                  order: np.ndarray | None = None) -> DualProblem:
    """The :class:`DualProblem` of compiled graph ``cg`` with energy vector ``theta``.

    Parameters
    ----------
    cg : CompiledGraph
    theta : ndarray of shape (M,), dtype=float64
        Validated energies (``cg.energies`` or a replacement).
    unary : ndarray of shape (S,), dtype=float64
        Per-state energies of evidence and soft evidence (0 where there are none).
    order : ndarray of shape (V,), dtype=int64, optional
        A permutation of the variables; default: index order (row-major grids give TRW-S's
        usual monotonic chains along rows and columns), or on a forest the breadth-first
        order of ``cg`` (each variable after its parent).

    Returns
    -------
    DualProblem
    """
    n_vars = cg.n_variables
    arity = np.diff(cg.scope_ptr)
    node_energy = np.array(unary, dtype=np.float64)
    unary_factors = np.flatnonzero(arity == 1)
    if unary_factors.size:
        # Unary tables are never compact: each has n_states entries from its table_offset.
        edges = cg.scope_ptr[unary_factors]
        variables = cg.scope_vars[edges]
        sizes = cg.n_states[variables]
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        np.add.at(node_energy, np.repeat(cg.state_offset[variables], sizes) + within,
                  theta[np.repeat(cg.table_offset[unary_factors], sizes) + within])
    constants = np.flatnonzero(arity == 0)
    constant = float(theta[cg.table_offset[constants]].sum()) if constants.size else 0.0

    if order is None:
        order = cg.var_order if cg.is_forest else np.arange(n_vars, dtype=np.int64)
    order = np.ascontiguousarray(order, dtype=np.int64)
    rank = np.empty(n_vars, dtype=np.int64)
    rank[order] = np.arange(n_vars, dtype=np.int64)

    is_coupling = arity >= 2
    edge_arity = np.repeat(arity, arity)
    edge_rank = rank[cg.scope_vars]
    if len(edge_rank):
        starts = cg.scope_ptr[:-1][arity > 0]
        low = np.repeat(np.minimum.reduceat(edge_rank, starts), arity[arity > 0])
        high = np.repeat(np.maximum.reduceat(edge_rank, starts), arity[arity > 0])
    else:
        low = high = edge_rank
    coupling_edge = edge_arity >= 2
    before = coupling_edge & (edge_rank > low)
    after = coupling_edge & (edge_rank < high)

    keep = coupling_edge[cg.var_edges]
    coupling_edges = np.ascontiguousarray(cg.var_edges[keep])
    counts = np.bincount(cg.scope_vars[coupling_edges], minlength=n_vars)
    coupling_ptr = np.zeros(n_vars + 1, dtype=np.int64)
    np.cumsum(counts, out=coupling_ptr[1:])
    n_before = np.bincount(cg.scope_vars[before], minlength=n_vars)
    n_after = np.bincount(cg.scope_vars[after], minlength=n_vars)
    most = np.maximum(n_before, n_after)
    weight = np.where(most > 0, 1.0 / np.maximum(most, 1), 0.0)
    return DualProblem(
        node_energy=node_energy,
        constant=constant,
        order=order,
        rank=rank,
        coupling_ptr=coupling_ptr,
        coupling_edges=coupling_edges,
        before=np.ascontiguousarray(before),
        after=np.ascontiguousarray(after),
        weight=weight,
        is_coupling=is_coupling,
    )
