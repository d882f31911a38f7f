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
  variables' part of the index), and a *map* from the clique table to the factor's table;
- messages: per non-root clique, a map from its parent's table to its separator table.

A map walks a C-order table as a few axes, ``map_card[map_ptr[m]:map_ptr[m+1]]``, with one
stride each into the other table, ``map_stride[...]``, and one into the table itself,
``map_self[...]``: the table's axes merged wherever the other table steps through them as
through one axis (runs of axes it does not depend on, of stride 0, above all), then the
longest axis moved innermost. A pairwise factor in a clique of 20 binary variables is
walked as at most five axes with an inner loop of hundreds of entries, instead of twenty
axes of two states.
Factor ``j``'s map is ``m = j``; clique ``c``'s message map is ``m = A + c``.
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
    map_ptr: np.ndarray
    map_card: np.ndarray
    map_stride: np.ndarray
    map_self: np.ndarray
    max_axes: int


def _prefix(sizes) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def _c_strides(cards: np.ndarray) -> np.ndarray:
    """Strides of a C-order table of shape ``cards``: ``prod(cards[j+1:])`` for axis j."""
    if not len(cards):
        return np.zeros(0, dtype=np.int64)
    return np.append(np.cumprod(cards[::-1], dtype=np.int64)[::-1][1:], 1).astype(np.int64)


def merged_axes(cards, strides):
    """The axes of a C-order table of shape ``cards`` walked with ``strides`` into another
    table, merged where possible, with the longest axis last (the kernels' inner loop).

    Axis j joins the axes after it when stepping it equals stepping past all of them in
    the other table (``strides[j] == stride * card`` of the merged group; in the table
    itself it always does), and one-state axes are dropped. Returns (cards, strides, self
    strides), int64 arrays of at least one axis.
    """
    out_cards: list[int] = []
    out_strides: list[int] = []
    out_self: list[int] = []
    own = 1
    for card, stride in zip(reversed(cards.tolist()), reversed(strides.tolist())):
        if card == 1:
            continue
        if out_cards and stride == out_strides[-1] * out_cards[-1]:
            out_cards[-1] *= card
        else:
            out_cards.append(card)
            out_strides.append(stride)
            out_self.append(own)
        own *= card
    if not out_cards:
        return np.ones(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64)
    longest = int(np.argmax(out_cards))  # innermost after the reversal below
    for axis in (out_cards, out_strides, out_self):
        axis[0], axis[longest] = axis[longest], axis[0]
    return (np.array(out_cards[::-1], dtype=np.int64),
            np.array(out_strides[::-1], dtype=np.int64),
            np.array(out_self[::-1], dtype=np.int64))


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
        stride_chunks.append(merged_axes(
            cg.n_states[clique],
            np.array([lookup.get(v, 0) for v in clique.tolist()], dtype=np.int64)))
        assigned.append(c)
        ids.append(a)
        bases.append(base)
    order = np.argsort(np.array(assigned, dtype=np.int64), kind="stable")
    factor_ptr = _prefix(np.bincount(np.array(assigned, dtype=np.int64), minlength=n_cliques))
    maps = [stride_chunks[i] for i in order]

    # Messages: each separator is inside the parent clique.
    for c in range(n_cliques):
        p = plan.parent[c]
        if p < 0:
            maps.append(merged_axes(np.ones(1, np.int64), np.zeros(1, np.int64)))  # unused
            continue
        separator = scope_vars[scope_ptr[c]:scope_ptr[c + 1] - 1]
        sep_strides = dict(zip(separator.tolist(),
                               _c_strides(cg.n_states[separator]).tolist()))
        parent_scope = scope_vars[scope_ptr[p]:scope_ptr[p + 1]]
        maps.append(merged_axes(
            cg.n_states[parent_scope],
            np.array([sep_strides.get(v, 0) for v in parent_scope.tolist()], dtype=np.int64)))

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
        map_ptr=_prefix([len(m[0]) for m in maps]),
        map_card=cat([m[0] for m in maps]),
        map_stride=cat([m[1] for m in maps]),
        map_self=cat([m[2] for m in maps]),
        max_axes=max((len(m[0]) for m in maps), default=1),
    )
    return (tree, np.array(constant_factors, dtype=np.int64),
            np.array(constant_base, dtype=np.int64))
