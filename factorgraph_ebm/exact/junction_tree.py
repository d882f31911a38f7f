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

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

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


def _prefix(sizes) -> list[int]:
    """The offsets ``[0, s0, s0 + s1, ...]`` of a list of sizes. In Python: 3 us against
    NumPy's 10 for the short lists of small models, where this layout's NumPy calls were
    most of its time."""
    return [0, *itertools.accumulate(sizes)]


def _c_strides(cards: list[int]) -> list[int]:
    """Strides of a C-order table of shape ``cards``: ``prod(cards[j+1:])`` for axis j."""
    strides = [1] * len(cards)
    for j in range(len(cards) - 2, -1, -1):
        strides[j] = strides[j + 1] * cards[j + 1]
    return strides


@functools.lru_cache(maxsize=4096)
def merged_axes(cards: tuple[int, ...], strides: tuple[int, ...]):
    """The axes of a C-order table of shape ``cards`` walked with ``strides`` into another
    table, merged where possible, with the longest axis last (the kernels' inner loop).

    Axis j joins the axes after it when stepping it equals stepping past all of them in
    the other table (``strides[j] == stride * card`` of the merged group; in the table
    itself it always does), and one-state axes are dropped. Returns (cards, strides, self
    strides), tuples of at least one axis. Cached: the factors of a model repeat a few
    shapes (grid4x4's 51 maps: 3 -> 0.5 us each).
    """
    out_cards: list[int] = []
    out_strides: list[int] = []
    out_self: list[int] = []
    own = 1
    for card, stride in zip(reversed(cards), reversed(strides)):
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
        return (1,), (0,), (0,)
    longest = out_cards.index(max(out_cards))  # innermost after the reversal below
    for axis in (out_cards, out_strides, out_self):
        axis[0], axis[longest] = axis[longest], axis[0]
    return tuple(out_cards[::-1]), tuple(out_strides[::-1]), tuple(out_self[::-1])


def block_split(cards: list[int], n_elim: int, block_entries: int) -> tuple[int, int]:
    """(number of high axes, entries of a block) of a clique table of shape ``cards``: the
    longest run of last axes with at most ``block_entries`` entries, but always the
    ``n_elim`` row axes."""
    n_high = len(cards) - n_elim
    size = math.prod(cards[n_high:])
    while n_high > 0 and size * cards[n_high - 1] <= block_entries:
        n_high -= 1
        size *= cards[n_high]
    return n_high, size


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
    # Plain Python ints and lists throughout: the tables here are a few entries each, and
    # NumPy's per-call overhead made this layout cost 3x the planning on tb2_network.
    if block_entries is None:
        block_entries = BLOCK_ENTRIES
    n_states = cg.n_states.tolist()
    n_elim = plan.n_elim.tolist()
    cliques = [c.tolist() for c in plan.cliques]
    n_cliques = len(cliques)
    clique_cards = [[n_states[v] for v in c] for c in cliques]
    table_sizes = [math.prod(k) for k in clique_cards]
    rows = [math.prod(k[len(k) - e:]) for k, e in zip(clique_cards, n_elim)]
    splits = [block_split(k, e, block_entries) for k, e in zip(clique_cards, n_elim)]
    n_high = [h for h, _ in splits]
    # The clique that eliminates each free variable.
    clique_of = [n_cliques] * len(n_states)
    for c, (clique, e) in enumerate(zip(cliques, n_elim)):
        for v in clique[len(clique) - e:]:
            clique_of[v] = c

    def split_map(c, strides):
        """(high strides, merged axes of a block or of a row, kind) of clique c's table
        walked into another table with ``strides``."""
        cards = clique_cards[c]
        h = n_high[c]
        r = len(cards) - n_elim[c]
        if not any(strides[h:r]):
            kind, walked = MAP_ROW, r
        elif h and not any(strides[:h]):
            kind, walked = MAP_FIXED, h
        else:
            kind, walked = MAP_BLOCK, h
        return ((strides[:h],) + merged_axes(tuple(cards[walked:]), tuple(strides[walked:]))
                + (kind,))

    # Factors: the clique that eliminates the first free variable of the scope.
    scope_ptr = cg.scope_ptr.tolist()
    scope_vars = cg.scope_vars.tolist()
    edge_stride = cg.edge_stride.tolist()
    states = clamped.tolist()
    offsets = table_offset.tolist()
    assigned, ids, bases, factor_maps = [], [], [], []
    constant_factors, constant_base = [], []
    for a in range(cg.n_factors):
        base = offsets[a]
        lookup = {}
        for e in range(scope_ptr[a], scope_ptr[a + 1]):
            v = scope_vars[e]
            if states[v] >= 0:
                base += edge_stride[e] * states[v]
            else:
                lookup[v] = edge_stride[e]
        if not lookup:
            constant_factors.append(a)
            constant_base.append(base)
            continue
        c = min(clique_of[v] for v in lookup)
        factor_maps.append(split_map(c, [lookup.get(v, 0) for v in cliques[c]]))
        assigned.append(c)
        ids.append(a)
        bases.append(base)
    order = sorted(range(len(assigned)), key=assigned.__getitem__)
    counts = [0] * n_cliques
    for c in assigned:
        counts[c] += 1
    factor_ptr = _prefix(counts)
    maps = [factor_maps[i] for i in order]

    # Messages: each separator is inside the parent clique.
    parent = plan.parent.tolist()
    children: list[list[int]] = [[] for _ in range(n_cliques)]
    for c in range(n_cliques):
        p = parent[c]
        if p < 0:
            maps.append(([], (1,), (0,), (0,), MAP_BLOCK))  # unused
            continue
        children[p].append(c)
        separator = cliques[c][:len(cliques[c]) - n_elim[c]]
        sep_strides = dict(zip(separator, _c_strides([n_states[v] for v in separator])))
        maps.append(split_map(p, [sep_strides.get(v, 0) for v in cliques[p]]))

    def flat(i):
        return [x for m in maps for x in m[i]]

    arrays = _int64_arrays(
        parent=parent,
        child_ptr=_prefix([len(k) for k in children]),
        child_id=[q for k in children for q in k],
        scope_ptr=_prefix([len(c) for c in cliques]),
        scope_vars=[v for c in cliques for v in c],
        scope_card=[k for c in clique_cards for k in c],
        n_elim=n_elim,
        row=rows,
        table_offset=_prefix(table_sizes),
        sep_offset=_prefix([t // r for t, r in zip(table_sizes, rows)]),
        block=[b for _, b in splits],
        n_high=n_high,
        factor_ptr=factor_ptr,
        factor_id=[ids[i] for i in order],
        factor_base=[bases[i] for i in order],
        high_ptr=_prefix([len(m[0]) for m in maps]),
        high_stride=flat(0),
        map_ptr=_prefix([len(m[1]) for m in maps]),
        map_card=flat(1),
        map_stride=flat(2),
        map_self=flat(3),
        map_kind=[m[4] for m in maps],
        constant_factors=constant_factors,
        constant_base=constant_base,
    )
    constant_factors = arrays.pop("constant_factors")
    constant_base = arrays.pop("constant_base")
    tree = JunctionTree(
        **arrays,
        max_axes=max([len(m[1]) for m in maps] + n_high + [1]),
        max_row=max(rows, default=1),
        max_block=max([b for _, b in splits], default=1),
    )
    return tree, constant_factors, constant_base


def _int64_arrays(**lists) -> dict:
    """Each list of ints as an int64 array, all views of one buffer: one NumPy call instead
    of one per array (24 of them took ~30 us of a 5-variable model's layout)."""
    flat = np.array(list(itertools.chain.from_iterable(lists.values())), dtype=np.int64)
    out, start = {}, 0
    for name, values in lists.items():
        out[name] = flat[start : start + len(values)]
        start += len(values)
    return out
