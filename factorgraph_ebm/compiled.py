"""The compiled factor graph: flat, read-only arrays that the Numba kernels iterate over.

Counts: ``V`` variables, ``F`` factors, ``D`` edges (one per scope entry, numbered factor by
factor in scope order), ``S`` variable states in all (sum of ``n_states``), ``M`` energy-table
entries in all (theta, the flat parameter vector of the energies).

Layout (CSR, after libDAI's bipartite graph with dual indices made flat):

- variables: ``n_states[V]``; ``state_offset[V+1]`` locates a variable's states in flat
  per-state arrays (unary energies, beliefs);
- factors: ``scope_ptr[F+1]``, ``scope_vars[D]`` (edge ``e`` joins factor ``edge_factor[e]``
  and variable ``scope_vars[e]``); ``table_offset[F+1]`` locates each table in ``energies[M]``,
  stored in NumPy C order in the declared scope order; ``edge_stride[D]`` is the stride of the
  edge's variable inside its table; ``edge_partner[D]`` is the edge itself for a unary
  factor, the other edge for a pairwise one, -1 otherwise (the kernels' fast paths);
- structure: ``factor_kind[F]`` (0 dense, 1 Potts, 2 truncated linear, 3 truncated
  quadratic; see :mod:`factorgraph_ebm.messages`) and ``factor_param[F, 2]`` (weight ``w``,
  truncation ``tau``) of the pairwise factors built by the structured constructors of
  :class:`~factorgraph_ebm.graph.FactorGraph`, whose messages then cost O(K); their dense
  tables are in ``energies`` all the same, except for *compact* factors (``dense=False``),
  whose table is empty (``table_offset[a] == table_offset[a + 1]``; every other factor has
  at least one entry) and whose entries the kernels compute from ``factor_param``;
- messages: ``msg_offset[D+1]`` locates the ``n_states`` entries of edge ``e`` in the flat
  factor-to-variable and variable-to-factor message buffers;
- transpose: ``var_edge_ptr[V+1]``, ``var_edges[D]`` list the edges incident to each variable;
- schedule: a breadth-first order of variables and factors over every connected component,
  with the edge to each node's parent (``-1`` at roots), used by the exact two-pass schedule
  on forests, by the sequential schedule and by decoding.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._config import NJIT_OPTIONS, njit


class CompiledGraph(NamedTuple):
    """Flat arrays of a factor graph (see the module docstring for the layout).

    All integer arrays are int64 and ``energies`` and ``factor_param`` float64, C-contiguous
    and read-only.
    Built by :meth:`FactorGraph.compile`; passed as one argument into the Numba kernels.
    """

    n_states: np.ndarray
    state_offset: np.ndarray
    scope_ptr: np.ndarray
    scope_vars: np.ndarray
    edge_factor: np.ndarray
    edge_stride: np.ndarray
    edge_partner: np.ndarray
    table_offset: np.ndarray
    msg_offset: np.ndarray
    var_edge_ptr: np.ndarray
    var_edges: np.ndarray
    var_order: np.ndarray
    var_parent_edge: np.ndarray
    factor_order: np.ndarray
    factor_parent_edge: np.ndarray
    factor_kind: np.ndarray
    factor_param: np.ndarray
    energies: np.ndarray
    max_states: int
    max_arity: int
    n_components: int
    is_forest: bool

    @property
    def n_variables(self) -> int:
        """Number of variables V."""
        return len(self.n_states)

    @property
    def n_factors(self) -> int:
        """Number of factors F."""
        return len(self.scope_ptr) - 1

    @property
    def n_edges(self) -> int:
        """Number of edges D (scope entries)."""
        return len(self.scope_vars)

    @property
    def n_message_entries(self) -> int:
        """Length of one flat message buffer, sum over edges of the variable's states."""
        return int(self.msg_offset[-1])

    @property
    def n_energy_entries(self) -> int:
        """Length M of the flat energy vector theta."""
        return int(self.table_offset[-1])

    def compact_factors(self) -> np.ndarray:
        """int64 indices of the compact structured factors (no table in theta)."""
        return np.flatnonzero(self.table_offset[1:] == self.table_offset[:-1])

    def factor_of_entry(self, entry: int) -> int:
        """The factor whose table holds flat energy entry ``entry``."""
        return int(np.searchsorted(self.table_offset, entry, side="right") - 1)


def compile_graph(n_states: np.ndarray, blocks) -> CompiledGraph:
    """Build the :class:`CompiledGraph` of a graph's variables and factor blocks.

    Parameters
    ----------
    n_states : ndarray of shape (V,), dtype=int64
    blocks : sequence of factor blocks with ``scopes`` (n, arity) int64 and ``tables``
        (n, K_1, ..., K_arity) float64, validated already by :class:`FactorGraph`.
    """
    n_states = np.ascontiguousarray(n_states, dtype=np.int64)
    n_vars = len(n_states)
    state_offset = _prefix_sum(n_states)

    # Per block, plain Python ints and lists: a model read from a file has one block per
    # factor, and NumPy calls per block made this 3 ms for pdb2fdn's 94 factors.
    counts, arities, block_sizes, kinds, strides = [], [], [], [], []
    scope_chunks, param_chunks = [], []
    for block in blocks:
        n, arity = block.scopes.shape
        shape = block.tables.shape[1:]
        counts.append(n)
        arities.append(arity)
        block_sizes.append(0 if getattr(block, "compact", False) else math.prod(shape))
        kinds.append(getattr(block, "kind", 0))
        scope_chunks.append(block.scopes.reshape(-1))
        block_strides = [1] * arity
        for j in range(arity - 2, -1, -1):
            block_strides[j] = block_strides[j + 1] * int(shape[j + 1])
        strides.extend(block_strides * n)
        params = getattr(block, "params", None)
        param_chunks.append(np.zeros((n, 2)) if params is None else params)

    def cat(chunks):
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)

    arity = np.repeat(np.array(arities, dtype=np.int64), counts)
    scope_ptr = _prefix_sum(arity)
    scope_vars = cat(scope_chunks).astype(np.int64)
    edge_stride = np.array(strides, dtype=np.int64)
    table_offset = _prefix_sum(np.repeat(np.array(block_sizes, dtype=np.int64), counts))
    # One allocation, each block copied (or broadcast, for a shared table) into place.
    energies = np.empty(int(table_offset[-1]))
    for block, n, size in zip(blocks, counts, block_sizes):
        if getattr(block, "compact", False):
            continue
        start = int(table_offset[block.first])
        energies[start:start + n * size].reshape(block.tables.shape)[...] = block.tables
    factor_kind = np.repeat(np.array(kinds, dtype=np.int64), counts)
    factor_param = (
        np.ascontiguousarray(np.concatenate(param_chunks), dtype=np.float64)
        if param_chunks
        else np.zeros((0, 2))
    )
    n_factors = len(arity)
    edge_factor = np.repeat(np.arange(n_factors, dtype=np.int64), arity)
    msg_offset = _prefix_sum(n_states[scope_vars])
    edge_arity = np.repeat(arity, arity)
    edge_partner = np.full(len(scope_vars), -1, dtype=np.int64)
    edge_ids = np.arange(len(scope_vars), dtype=np.int64)
    edge_partner[edge_arity == 1] = edge_ids[edge_arity == 1]
    pair_first = edge_ids[(edge_arity == 2)][::2]
    edge_partner[pair_first] = pair_first + 1
    edge_partner[pair_first + 1] = pair_first
    var_edges = np.argsort(scope_vars, kind="stable").astype(np.int64)
    var_edge_ptr = _prefix_sum(np.bincount(scope_vars, minlength=n_vars).astype(np.int64))

    var_order, var_parent, factor_order, factor_parent, n_components, is_forest = (
        _breadth_first_schedule(
            n_vars, n_factors, scope_ptr, scope_vars, edge_factor, var_edge_ptr, var_edges
        )
    )
    arrays = dict(
        n_states=n_states,
        state_offset=state_offset,
        scope_ptr=scope_ptr,
        scope_vars=scope_vars,
        edge_factor=edge_factor,
        edge_stride=edge_stride,
        edge_partner=edge_partner,
        table_offset=table_offset,
        msg_offset=msg_offset,
        var_edge_ptr=var_edge_ptr,
        var_edges=var_edges,
        var_order=var_order,
        var_parent_edge=var_parent,
        factor_order=factor_order,
        factor_parent_edge=factor_parent,
        factor_kind=factor_kind,
        factor_param=factor_param,
        energies=energies,
    )
    for array in arrays.values():
        array.flags.writeable = False
    return CompiledGraph(
        **arrays,
        max_states=int(n_states.max(initial=1)),
        max_arity=int(arity.max(initial=0)),
        n_components=int(n_components),
        is_forest=bool(is_forest),
    )


def require_tables(graph, what: str) -> None:
    """Raise :class:`FactorGraphError` when ``graph`` has compact structured factors, whose
    tables are not in theta, for ``what`` (e.g. "TableModel"), which needs every table."""
    from .exceptions import FactorGraphError

    compact = graph.compile().compact_factors()
    if compact.size:
        f = int(compact[0])
        raise FactorGraphError(
            f"{what} needs every factor's energy table in theta, but factor {f} (scope "
            f"{graph.factor_scope(f)}) and {compact.size - 1} more are compact structured "
            "factors without one; add them with dense=True"
        )


def _prefix_sum(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@njit(**NJIT_OPTIONS)
def _breadth_first_schedule(
    n_vars, n_factors, scope_ptr, scope_vars, edge_factor, var_edge_ptr, var_edges
):
    """Breadth-first search over the bipartite graph, one root variable per component.

    Returns the variable order, each variable's parent edge (-1 at roots), the factor order
    (factors with an empty scope last), each factor's parent edge, the number of components
    and whether the graph is a forest (no node is reached twice).
    """
    var_order = np.empty(n_vars, dtype=np.int64)
    var_parent = np.full(n_vars, -1, dtype=np.int64)
    factor_order = np.empty(n_factors, dtype=np.int64)
    factor_parent = np.full(n_factors, -1, dtype=np.int64)
    var_seen = np.zeros(n_vars, dtype=np.bool_)
    factor_seen = np.zeros(n_factors, dtype=np.bool_)
    n_var_done = 0
    n_factor_done = 0
    head = 0
    n_components = 0
    is_forest = True
    for root in range(n_vars):
        if var_seen[root]:
            continue
        n_components += 1
        var_seen[root] = True
        var_order[n_var_done] = root
        n_var_done += 1
        while head < n_var_done:
            i = var_order[head]
            head += 1
            for k in range(var_edge_ptr[i], var_edge_ptr[i + 1]):
                e = var_edges[k]
                if e == var_parent[i]:
                    continue
                a = edge_factor[e]
                if factor_seen[a]:
                    is_forest = False
                    continue
                factor_seen[a] = True
                factor_parent[a] = e
                factor_order[n_factor_done] = a
                n_factor_done += 1
                for e2 in range(scope_ptr[a], scope_ptr[a + 1]):
                    if e2 == e:
                        continue
                    j = scope_vars[e2]
                    if var_seen[j]:
                        is_forest = False
                        continue
                    var_seen[j] = True
                    var_parent[j] = e2
                    var_order[n_var_done] = j
                    n_var_done += 1
    for a in range(n_factors):
        if not factor_seen[a]:
            factor_order[n_factor_done] = a
            n_factor_done += 1
    return var_order, var_parent, factor_order, factor_parent, n_components, is_forest
