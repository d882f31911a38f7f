"""The junction tree of an elimination plan as flat arrays, the layout the kernels of
:mod:`factorgraph_ebm.exact.kernels` read.

Counts: ``C`` cliques (numbered so that a clique's parent comes after it), ``L`` clique
scope entries in all, ``A`` factors assigned to cliques.

- cliques: ``scope_ptr[C+1]``, ``scope_vars[L]``, ``scope_card[L]``: the separator's
  variables first (ascending), then the ``n_elim[c]`` variables the clique eliminates, the
  one eliminated first last. The table (C order) is ``table_offset[c]`` in one buffer; its
  last ``n_elim[c]`` axes make rows of ``row[c]`` entries, one per separator entry; the
  separator table (one entry per row) is at ``sep_offset[c]`` in the message buffer.
  ``parent[C]`` (-1 at roots; ``parent[c] > c``); the children of ``c`` are
  ``child_id[child_ptr[c]:child_ptr[c+1]]``.
- blocks: every pass walks a clique table block by block, ``block[c]`` entries (whole
  rows: the product of the last axes) at a time, the first ``n_high[c]`` axes (the *high*
  axes) fixed within a block, so that all the factors and messages of the clique are
  applied to one block while it is in cache.
- factors: ``factor_ptr[C+1]`` lists the factors assigned to each clique (the clique that
  eliminates the first of their free variables to be eliminated, which holds the whole
  scope): ``factor_id[A]``, ``factor_base[A]`` (the table's offset in theta plus the
  clamped variables' part of the index), and a *map* from the clique table to the factor's
  table;
- messages: per non-root clique, a map from its parent's table to its separator table.

A map ``m`` has a stride into the other table for each high axis,
``high_stride[high_ptr[m]:high_ptr[m+1]]`` (all 0: the same for every block, applied once
per clique), and walks one block (one row, when the other table depends on the block's
axes only through the row's; ``map_kind[m]``, see :data:`.kernels.MAP_BLOCK`) as a few axes,
``map_card[map_ptr[m]:map_ptr[m+1]]``, with one stride each into the other table,
``map_stride[...]``, and one into the block itself, ``map_self[...]``: the block's axes
merged wherever the other table steps through them as through one axis (runs of axes it
does not depend on, of stride 0, above all), then the longest axis moved innermost. A
pairwise factor in a block of 12 binary axes is walked as at most five axes with an inner
loop of dozens of entries, instead of twelve axes of two states.
Factor ``j``'s map is ``m = j``; clique ``c``'s message map is ``m = A + c``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._config import NJIT_OPTIONS, njit
from .kernels import MAP_BLOCK, MAP_FIXED, MAP_ROW

#: Entries of a clique table walked at once (whole rows, at least one): 8192 float64 are
#: 64 KiB, in a core's L2 cache with the factor tables and message slices they meet
#: (DBN_11's collect: 4096-8192 fastest, 32768 1.8x and 262144 3x slower).
BLOCK_ENTRIES = 8192


class JunctionTree(NamedTuple):
    """Flat int64 arrays of a junction tree (see the module docstring for the layout)."""

    parent: np.ndarray
    child_ptr: np.ndarray
    child_id: np.ndarray
    scope_ptr: np.ndarray
    scope_vars: np.ndarray
    scope_card: np.ndarray
    n_elim: np.ndarray
    row: np.ndarray
    table_offset: np.ndarray
    sep_offset: np.ndarray
    block: np.ndarray
    n_high: np.ndarray
    factor_ptr: np.ndarray
    factor_id: np.ndarray
    factor_base: np.ndarray
    high_ptr: np.ndarray
    high_stride: np.ndarray
    map_ptr: np.ndarray
    map_card: np.ndarray
    map_stride: np.ndarray
    map_self: np.ndarray
    map_kind: np.ndarray
    max_axes: int
    max_row: int
    max_block: int


def build_junction_tree(cg, plan, table_offset, clamped, block_entries=None):
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
    block_entries : int, optional
        Entries of a block (default :data:`BLOCK_ENTRIES`); tests use small ones to walk
        small tables in several blocks.

    Returns
    -------
    tree : JunctionTree
    constant_factors : ndarray of int64
        Factors with no free variable in their scope (their energy is a constant).
    constant_base : ndarray of int64
        The theta index of each constant factor's one entry consistent with the clamps.
    """
    if block_entries is None:
        block_entries = BLOCK_ENTRIES
    sizes = [len(c) for c in plan.cliques]
    clique_ptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=clique_ptr[1:])
    clique_vars = (np.concatenate(plan.cliques) if sizes else np.zeros(0, dtype=np.int64))
    *arrays, constant_factors, constant_base, max_axes, max_row, max_block = _layout(
        np.ascontiguousarray(cg.n_states, dtype=np.int64), clique_ptr,
        clique_vars.astype(np.int64, copy=False),
        np.ascontiguousarray(plan.n_elim, dtype=np.int64),
        np.ascontiguousarray(plan.parent, dtype=np.int64),
        np.ascontiguousarray(cg.scope_ptr, dtype=np.int64),
        np.ascontiguousarray(cg.scope_vars, dtype=np.int64),
        np.ascontiguousarray(cg.edge_stride, dtype=np.int64),
        np.ascontiguousarray(table_offset, dtype=np.int64),
        np.ascontiguousarray(clamped, dtype=np.int64), int(block_entries))
    tree = JunctionTree(*arrays, max_axes=max_axes, max_row=max_row, max_block=max_block)
    return tree, constant_factors, constant_base


@njit(**NJIT_OPTIONS)
def _layout(n_states, clique_ptr, clique_vars, n_elim, parent, scope_ptr, scope_vars,
            edge_stride, table_offset, clamped, block_entries):
    """:func:`build_junction_tree` on flat arrays (the cliques in CSR form). In Numba: the
    same in Python, per factor and per clique, was the largest part of a cold call on a
    small model (bn_cancer 62 us, pdb1akg 153 us of 0.26 and 0.48 ms).

    Returns the :class:`JunctionTree` arrays in field order, then the constant factors,
    their bases, ``max_axes``, ``max_row`` and ``max_block``.
    """
    n_cliques = len(n_elim)
    n_vars = len(n_states)
    n_factors = len(scope_ptr) - 1
    scope_card = np.empty(len(clique_vars), dtype=np.int64)
    for k in range(len(clique_vars)):
        scope_card[k] = n_states[clique_vars[k]]
    table_off = np.zeros(n_cliques + 1, dtype=np.int64)
    sep_off = np.zeros(n_cliques + 1, dtype=np.int64)
    row = np.empty(n_cliques, dtype=np.int64)
    n_high = np.empty(n_cliques, dtype=np.int64)
    block = np.empty(n_cliques, dtype=np.int64)
    clique_of = np.full(n_vars, n_cliques, dtype=np.int64)  # who eliminates each variable
    max_axes = 1
    for c in range(n_cliques):
        lo, hi = clique_ptr[c], clique_ptr[c + 1]
        size = 1
        for k in range(lo, hi):
            size *= scope_card[k]
        r = 1
        for k in range(hi - n_elim[c], hi):
            r *= scope_card[k]
            clique_of[clique_vars[k]] = c
        row[c] = r
        table_off[c + 1] = table_off[c] + size
        sep_off[c + 1] = sep_off[c] + size // r
        # The block: the longest run of last axes within block_entries, at least the row.
        h = hi - lo - n_elim[c]
        b = r
        while h > 0 and b * scope_card[lo + h - 1] <= block_entries:
            h -= 1
            b *= scope_card[lo + h]
        n_high[c] = h
        block[c] = b
        max_axes = max(max_axes, h)

    # Factors: the clique that eliminates the first free variable of the scope, and the
    # table's offset plus the clamped variables' part of the index.
    assigned = np.full(n_factors, -1, dtype=np.int64)
    base = np.empty(n_factors, dtype=np.int64)
    n_constant = 0
    for a in range(n_factors):
        base[a] = table_offset[a]
        for e in range(scope_ptr[a], scope_ptr[a + 1]):
            v = scope_vars[e]
            if clamped[v] >= 0:
                base[a] += edge_stride[e] * clamped[v]
            elif assigned[a] < 0 or clique_of[v] < assigned[a]:
                assigned[a] = clique_of[v]
        if assigned[a] < 0:
            n_constant += 1
    constant_factors = np.empty(n_constant, dtype=np.int64)
    constant_base = np.empty(n_constant, dtype=np.int64)
    factor_ptr = np.zeros(n_cliques + 1, dtype=np.int64)
    j = 0
    for a in range(n_factors):
        if assigned[a] < 0:
            constant_factors[j] = a
            constant_base[j] = base[a]
            j += 1
        else:
            factor_ptr[assigned[a] + 1] += 1
    for c in range(n_cliques):
        factor_ptr[c + 1] += factor_ptr[c]
    n_assigned = factor_ptr[n_cliques]
    factor_id = np.empty(n_assigned, dtype=np.int64)
    fill = factor_ptr[:-1].copy()
    for a in range(n_factors):  # by clique, in factor order within a clique
        if assigned[a] >= 0:
            factor_id[fill[assigned[a]]] = a
            fill[assigned[a]] += 1
    factor_base = np.empty(n_assigned, dtype=np.int64)
    for i in range(n_assigned):
        factor_base[i] = base[factor_id[i]]

    # Maps: factor i's is map i, clique c's message map is n_assigned + c.
    n_maps = n_assigned + n_cliques
    room = 1
    for i in range(n_assigned):
        c = assigned[factor_id[i]]
        room += clique_ptr[c + 1] - clique_ptr[c]
    for c in range(n_cliques):
        if parent[c] >= 0:
            room += clique_ptr[parent[c] + 1] - clique_ptr[parent[c]]
        else:
            room += 1
    high_ptr = np.zeros(n_maps + 1, dtype=np.int64)
    map_ptr = np.zeros(n_maps + 1, dtype=np.int64)
    high_stride = np.empty(room, dtype=np.int64)
    map_card = np.empty(room, dtype=np.int64)
    map_stride = np.empty(room, dtype=np.int64)
    map_self = np.empty(room, dtype=np.int64)
    map_kind = np.empty(n_maps, dtype=np.int64)
    stride_of = np.zeros(n_vars, dtype=np.int64)  # into the other table; 0: not in it
    strides = np.empty(max(1, len(clique_vars)), dtype=np.int64)
    for m in range(n_maps):
        if m < n_assigned:
            a = factor_id[m]
            c = assigned[a]
            for e in range(scope_ptr[a], scope_ptr[a + 1]):
                if clamped[scope_vars[e]] < 0:
                    stride_of[scope_vars[e]] = edge_stride[e]
        else:
            child = m - n_assigned
            c = parent[child]
            if c < 0:  # a root sends no message: an unused map of one empty axis
                high_ptr[m + 1] = high_ptr[m]
                map_card[map_ptr[m]] = 1
                map_stride[map_ptr[m]] = 0
                map_self[map_ptr[m]] = 0
                map_ptr[m + 1] = map_ptr[m] + 1
                map_kind[m] = MAP_BLOCK
                continue
            # The child's separator, a C-order table, is inside the parent clique.
            stride = 1
            for k in range(clique_ptr[child + 1] - n_elim[child] - 1, clique_ptr[child] - 1,
                           -1):
                stride_of[clique_vars[k]] = stride
                stride *= scope_card[k]
        lo, hi = clique_ptr[c], clique_ptr[c + 1]
        for k in range(lo, hi):
            strides[k - lo] = stride_of[clique_vars[k]]
        if m < n_assigned:  # stride_of back to zeros
            for e in range(scope_ptr[a], scope_ptr[a + 1]):
                stride_of[scope_vars[e]] = 0
        else:
            for k in range(clique_ptr[child], clique_ptr[child + 1] - n_elim[child]):
                stride_of[clique_vars[k]] = 0
        n_axes = _split_map(scope_card[lo:hi], strides[: hi - lo], n_high[c], n_elim[c],
                            m, high_ptr, high_stride, map_ptr, map_card, map_stride,
                            map_self, map_kind)
        max_axes = max(max_axes, n_axes)

    child_ptr = np.zeros(n_cliques + 1, dtype=np.int64)
    for c in range(n_cliques):
        if parent[c] >= 0:
            child_ptr[parent[c] + 1] += 1
    for c in range(n_cliques):
        child_ptr[c + 1] += child_ptr[c]
    child_id = np.empty(child_ptr[n_cliques], dtype=np.int64)
    fill = child_ptr[:-1].copy()
    for c in range(n_cliques):
        if parent[c] >= 0:
            child_id[fill[parent[c]]] = c
            fill[parent[c]] += 1
    return (parent.copy(), child_ptr, child_id, clique_ptr.copy(), clique_vars.copy(),
            scope_card, n_elim.copy(), row, table_off, sep_off, block, n_high, factor_ptr,
            factor_id, factor_base, high_ptr, high_stride[: high_ptr[n_maps]].copy(),
            map_ptr, map_card[: map_ptr[n_maps]].copy(), map_stride[: map_ptr[n_maps]].copy(),
            map_self[: map_ptr[n_maps]].copy(), map_kind, constant_factors, constant_base,
            max_axes, max(1, row.max()) if n_cliques else 1,
            max(1, block.max()) if n_cliques else 1)


@njit(inline="always", **NJIT_OPTIONS)
def _split_map(cards, strides, h, n_elim, m, high_ptr, high_stride, map_ptr, map_card,
               map_stride, map_self, map_kind):
    """Map ``m``: a clique table of shape ``cards`` (``h`` high axes, ``n_elim`` row axes)
    walked with ``strides`` into another table. Its kind: MAP_ROW when the other table
    depends on the block only through the row, MAP_FIXED when not on the high axes (the
    same for every block), else MAP_BLOCK; the high axes' strides; then the axes walked
    (the row's for MAP_ROW, the block's otherwise), merged wherever the other table steps
    through them as through one axis (axis j joins the axes after it when its stride is
    the merged group's stride times its cardinality; one-state axes are dropped), the
    longest moved innermost (last), as ``map_card``, ``map_stride`` and ``map_self`` (the
    stride in the clique's own block). Returns the number of axes walked."""
    r = len(cards) - n_elim
    kind = MAP_ROW
    for k in range(h, r):
        if strides[k] != 0:
            kind = MAP_BLOCK
    walked = r
    if kind == MAP_BLOCK:
        walked = h
        fixed = h > 0
        for k in range(h):
            if strides[k] != 0:
                fixed = False
        if fixed:
            kind = MAP_FIXED
    map_kind[m] = kind
    lo = high_ptr[m]
    for k in range(h):
        high_stride[lo + k] = strides[k]
    high_ptr[m + 1] = lo + h
    # Merged axes, innermost first, written at the map's end of the buffers and reversed.
    start = map_ptr[m]
    n = 0
    own = 1
    for k in range(len(cards) - 1, walked - 1, -1):
        card = cards[k]
        if card == 1:
            continue
        if n and strides[k] == map_stride[start + n - 1] * map_card[start + n - 1]:
            map_card[start + n - 1] *= card
        else:
            map_card[start + n] = card
            map_stride[start + n] = strides[k]
            map_self[start + n] = own
            n += 1
        own *= card
    if n == 0:
        map_card[start] = 1
        map_stride[start] = 0
        map_self[start] = 0
        n = 1
    else:
        longest = 0
        for i in range(1, n):
            if map_card[start + i] > map_card[start + longest]:
                longest = i
        for axis in (map_card, map_stride, map_self):
            axis[start], axis[start + longest] = axis[start + longest], axis[start]
            for i in range(n // 2):
                axis[start + i], axis[start + n - 1 - i] = (axis[start + n - 1 - i],
                                                            axis[start + i])
    map_ptr[m + 1] = start + n
    return n
