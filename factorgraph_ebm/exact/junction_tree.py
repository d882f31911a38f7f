"""The junction tree of an elimination plan as flat arrays, the layout the kernels of
:mod:`factorgraph_ebm.exact.kernels` read.

Counts: ``C`` cliques (one per free variable, numbered in elimination order), ``L`` clique
scope entries in all, ``A`` factors assigned to cliques.

- cliques: ``var[C]`` (the variable eliminated by each, the last axis of its table),
  ``parent[C]`` (-1 at roots; ``parent[c] > c``), ``scope_ptr[C+1]``, ``scope_vars[L]``,
  ``scope_card[L]`` (separator variables first, ascending, then ``var[c]``);
  ``table_offset[C+1]`` locates each clique table (C order) in one buffer, ``sep_offset[C+1]``
  each separator table (the clique's axes but the last) in the message buffers;
- factors: ``factor_ptr[C+1]`` lists the factors assigned to each clique (the clique of the
  first variable of their scope to be eliminated, which holds the whole scope):
  ``factor_id[A]``, ``factor_base[A]`` (the table's offset in theta plus the clamped
  variables' part of the index), and per factor one stride per clique axis into its table
  (0 for an axis not in its scope) at ``factor_stride[factor_stride_ptr[j]:...[j+1]]``;
- messages: per non-root clique, one stride per axis of its parent into its own separator
  table, at ``parent_stride[parent_stride_ptr[c]:...[c+1]]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class JunctionTree(NamedTuple):
    """Flat int64 arrays of a junction tree (see the module docstring for the layout)."""

    var: np.ndarray
    parent: np.ndarray
    scope_ptr: np.ndarray
    scope_vars: np.ndarray
    scope_card: np.ndarray
    table_offset: np.ndarray
    sep_offset: np.ndarray
    factor_ptr: np.ndarray
    factor_id: np.ndarray
    factor_base: np.ndarray
    factor_stride_ptr: np.ndarray
    factor_stride: np.ndarray
    parent_stride_ptr: np.ndarray
    parent_stride: np.ndarray
    max_scope: int


def _prefix(sizes) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _c_strides(cards: np.ndarray) -> np.ndarray:
    """Strides of a C-order table of shape ``cards``: ``prod(cards[j+1:])`` for axis j."""
    if not len(cards):
        return np.zeros(0, dtype=np.int64)
    return np.append(np.cumprod(cards[::-1], dtype=np.int64)[::-1][1:], 1).astype(np.int64)


def build_junction_tree(cg, plan, table_offset, clamped):
    """Lay out the junction tree of ``plan`` for compiled graph ``cg``.

    Parameters
    ----------
    cg : CompiledGraph
    plan : EliminationPlan
        A complete plan (``plan.fits``) over the free variables.
    table_offset : ndarray of shape (F+1,), dtype=int64
        Where each factor's dense table starts in the energy vector used (``cg.table_offset``,
        or the offsets of an energy vector with compact factors' tables appended).
    clamped : ndarray of shape (V,), dtype=int64
        The clamped state of each variable, -1 for a free one.

    Returns
    -------
    tree : JunctionTree
    constant_factors : ndarray of int64
        Factors with no free variable in their scope (their energy is a constant).
    constant_base : ndarray of int64
        The theta index of each constant factor's one entry consistent with the clamps.
    """
    n_cliques = len(plan.order)
    position = np.full(len(cg.n_states), n_cliques, dtype=np.int64)
    position[plan.order] = np.arange(n_cliques)
    scope_sizes = np.array([len(c) for c in plan.cliques], dtype=np.int64)
    scope_ptr = _prefix(scope_sizes)
    scope_vars = (np.concatenate(plan.cliques) if n_cliques else np.zeros(0)).astype(np.int64)
    scope_card = cg.n_states[scope_vars]
    table_sizes = np.array([int(np.prod(scope_card[scope_ptr[c]:scope_ptr[c + 1]]))
                            for c in range(n_cliques)], dtype=np.int64)
    sep_sizes = table_sizes // np.maximum(cg.n_states[plan.order], 1)

    # Factors: the clique of the first free variable of the scope to be eliminated.
    assigned, ids, bases, stride_chunks = [], [], [], []
    constant_factors, constant_base = [], []
    for a in range(cg.n_factors):
        lo, hi = cg.scope_ptr[a], cg.scope_ptr[a + 1]
        variables = cg.scope_vars[lo:hi]
        strides = cg.edge_stride[lo:hi]
        states = clamped[variables]
        is_free = states < 0
        base = int(table_offset[a] + (strides[~is_free] * states[~is_free]).sum())
        if not is_free.any():
            constant_factors.append(a)
            constant_base.append(base)
            continue
        c = int(position[variables[is_free]].min())
        clique = scope_vars[scope_ptr[c]:scope_ptr[c + 1]]
        lookup = dict(zip(variables[is_free].tolist(), strides[is_free].tolist()))
        stride_chunks.append(np.array([lookup.get(v, 0) for v in clique.tolist()],
                                      dtype=np.int64))
        assigned.append(c)
        ids.append(a)
        bases.append(base)
    order = np.argsort(np.array(assigned, dtype=np.int64), kind="stable")
    factor_ptr = _prefix(np.bincount(np.array(assigned, dtype=np.int64), minlength=n_cliques))
    stride_chunks = [stride_chunks[i] for i in order]
    factor_stride_ptr = _prefix([len(s) for s in stride_chunks])

    # Messages: each separator is inside the parent clique.
    parent_chunks = []
    for c in range(n_cliques):
        p = plan.parent[c]
        if p < 0:
            parent_chunks.append(np.zeros(0, dtype=np.int64))
            continue
        separator = scope_vars[scope_ptr[c]:scope_ptr[c + 1] - 1]
        sep_strides = dict(zip(separator.tolist(),
                               _c_strides(cg.n_states[separator]).tolist()))
        parent_scope = scope_vars[scope_ptr[p]:scope_ptr[p + 1]]
        parent_chunks.append(np.array([sep_strides.get(v, 0) for v in parent_scope.tolist()],
                                      dtype=np.int64))

    def cat(chunks):
        return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)

    tree = JunctionTree(
        var=plan.order.astype(np.int64),
        parent=plan.parent.astype(np.int64),
        scope_ptr=scope_ptr,
        scope_vars=scope_vars,
        scope_card=scope_card.astype(np.int64),
        table_offset=_prefix(table_sizes),
        sep_offset=_prefix(sep_sizes),
        factor_ptr=factor_ptr,
        factor_id=np.array(ids, dtype=np.int64)[order],
        factor_base=np.array(bases, dtype=np.int64)[order],
        factor_stride_ptr=factor_stride_ptr,
        factor_stride=cat(stride_chunks),
        parent_stride_ptr=_prefix([len(s) for s in parent_chunks]),
        parent_stride=cat(parent_chunks),
        max_scope=int(scope_sizes.max()) if n_cliques else 1,
    )
    return (tree, np.array(constant_factors, dtype=np.int64),
            np.array(constant_base, dtype=np.int64))
