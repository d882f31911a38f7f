"""Structured pairwise factor kinds: their codes, their one entry formula, their tables.

A structured factor is pairwise with one of the kinds below and two parameters per factor,
weight ``w`` and truncation ``tau`` (``CompiledGraph.factor_kind`` and ``factor_param``):

- :data:`KIND_POTTS`: ``E(x, y) = w [x != y]``;
- :data:`KIND_TRUNCATED_LINEAR`: ``E(x, y) = min(w |x - y|, tau)``;
- :data:`KIND_TRUNCATED_QUADRATIC`: ``E(x, y) = min(w (x - y)^2, tau)``.

Their min-sum messages cost O(K) instead of O(K^2) (Felzenszwalb & Huttenlocher 2006,
"Efficient belief propagation for early vision"; :mod:`factorgraph_ebm.messages.pairwise`).
:func:`pair_entry` is the one formula of an entry: the kernels use it wherever a compact
factor's table would be read, and :func:`dense_tables` fills the tables of dense structured
factors with it. :func:`structured_kinds` demotes to :data:`KIND_DENSE` the factors whose
table in a replacement energy vector (learning) no longer follows their formula.
"""

import numpy as np

from ._config import NJIT_OPTIONS, njit

#: ``CompiledGraph.factor_kind`` codes.
KIND_DENSE = 0
KIND_POTTS = 1
KIND_TRUNCATED_LINEAR = 2
KIND_TRUNCATED_QUADRATIC = 3


@njit(inline="always", **NJIT_OPTIONS)
def pair_entry(kind, w, tau, x, y):
    """Table entry (x, y) of a structured pairwise factor, computed as the constructors of
    :class:`~factorgraph_ebm.graph.FactorGraph` compute their tables (compact factors)."""
    d = abs(x - y)
    if kind == KIND_POTTS:
        return 0.0 if d == 0 else w
    if kind == KIND_TRUNCATED_LINEAR:
        return min(w * d, tau)
    return min(w * (d * d), tau)


def dense_tables(kind, params, k: int, shared: bool) -> np.ndarray:
    """The dense tables of ``len(params)`` structured factors of ``kind`` on K = ``k``
    states: float64 of shape (n, k, k), filled by :func:`pair_entry`. ``params`` (n, 2)
    float64 holds (weight, truncation) per factor; when ``shared`` (every row the same)
    one table is filled and broadcast (a read-only view)."""
    n = len(params)
    tables = np.empty((1 if shared else n, k, k))
    if n:
        _fill_tables(kind, params[: len(tables)], tables)
    if shared:
        return np.broadcast_to(tables[0] if n else np.zeros((k, k)), (n, k, k))
    return tables


@njit(**NJIT_OPTIONS)
def _fill_tables(kind, params, out):
    """:func:`dense_tables` into ``out`` (n, k, k)."""
    for a in range(out.shape[0]):
        for x in range(out.shape[1]):
            for y in range(out.shape[2]):
                out[a, x, y] = pair_entry(kind, params[a, 0], params[a, 1], x, y)


def structured_kinds(cg, energies):
    """``cg.factor_kind`` with every structured factor whose table in ``energies`` (e.g. a
    replacement vector during learning) no longer has its structure demoted to
    :data:`KIND_DENSE`. The tables are compared entry by entry with the formula, computed
    exactly as the constructors compute it."""
    kinds = cg.factor_kind.copy()
    _demote_changed(cg, energies, kinds)
    return kinds


@njit(**NJIT_OPTIONS)
def _demote_changed(cg, energies, kinds):
    """:func:`structured_kinds` in place in ``kinds``."""
    params = cg.factor_param
    for a in range(len(kinds)):
        kind = kinds[a]
        if kind == KIND_DENSE or cg.table_offset[a + 1] == cg.table_offset[a]:
            continue  # dense, or compact (no table that could have changed)
        first = cg.scope_ptr[a]
        n0 = cg.n_states[cg.scope_vars[first]]
        n1 = cg.n_states[cg.scope_vars[first + 1]]
        toff = cg.table_offset[a]
        w = params[a, 0]
        tau = params[a, 1]
        same = True
        for x in range(n0):
            for y in range(n1):
                value = pair_entry(kind, w, tau, x, y)
                if energies[toff + x * n1 + y] != value:
                    same = False
                    break
            if not same:
                break
        if not same:
            kinds[a] = KIND_DENSE
