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

import ctypes
import functools
import math
import platform
from typing import NamedTuple

import numpy as np

from ._config import NJIT_OPTIONS, njit


class CompiledGraph(NamedTuple):
    """Flat arrays of a factor graph (see the module docstring for the layout).

    ``n_states`` is int64; the other integer arrays (indices and offsets) are int32, or
    int64 for graphs with 2**31 or more of something (see :func:`compile_graph`);
    ``energies`` and ``factor_param`` are float64. All C-contiguous and read-only.
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


#: Index arrays are int32 when every count and offset of the graph is below this (all but
#: huge graphs), else int64.
INT32_LIMIT = 2**31


def compile_graph(n_states: np.ndarray, blocks) -> CompiledGraph:
    """Build the :class:`CompiledGraph` of a graph's variables and factor blocks.

    The index arrays (every integer array but ``n_states``) are int32 when every count and
    offset fits (:data:`INT32_LIMIT`), else int64: on a 2000 x 2000 binary grid they were
    2.0 GB of int64, twice messages and theta. The kernels compile once per index dtype,
    so only graphs of 2**31 entries or more compile the int64 variant (on first use).
    Non-shared tables of ``blocks`` are re-pointed to read-only views of theta once copied
    there (one copy of the energies, not two), and their scopes to read-only views of
    ``scope_vars``. After a graph of :data:`TRIM_EDGES` edges or more, the C heap's free
    pages go back to the OS (:func:`release_free_heap`).

    Parameters
    ----------
    n_states : ndarray of shape (V,), dtype=int64
    blocks : sequence of factor blocks with ``scopes`` (n, arity) of integers, ``shape``
        (K_1, ..., K_arity) and ``tables`` (n, K_1, ..., K_arity) float64 (None for compact
        structured factors), validated already by :class:`FactorGraph`.
    """
    compiled = _compile(n_states, blocks)
    if compiled.n_edges >= TRIM_EDGES:  # its temporaries are freed now
        release_free_heap()
    return compiled


def _compile(n_states: np.ndarray, blocks) -> CompiledGraph:
    """:func:`compile_graph` but for returning the free heap."""
    n_states = np.ascontiguousarray(n_states, dtype=np.int64)
    n_vars = len(n_states)
    # Per block, plain Python ints: a model read from a file has one block per factor, and
    # NumPy calls per block or per array made compiling bn_cancer's 5 factors ~0.1 ms; the
    # per-edge and per-factor arrays are then filled by one kernel (_fill_layout).
    counts, arities, block_sizes, scope_chunks = [], [], [], []
    n_edges = n_table = n_message = 0
    for block in blocks:
        n, arity = block.scopes.shape
        shape = [int(k) for k in block.shape]  # the scope's cardinalities (validated)
        size = 0 if block.compact else math.prod(shape)
        counts.append(n)
        arities.append(arity)
        block_sizes.append(size)
        scope_chunks.append(block.scopes.reshape(-1))
        n_edges += n * arity
        n_table += n * size
        n_message += n * sum(shape)
    n_factors = sum(counts)
    largest = max(n_vars, n_factors, n_edges, int(n_states.sum()), n_message, n_table)
    ix = np.int32 if largest < INT32_LIMIT else np.int64
    scope_vars = (np.concatenate(scope_chunks, dtype=ix, casting="same_kind") if blocks
                  else np.zeros(0, dtype=ix))
    block_info = np.array([counts, arities, block_sizes], dtype=np.int64).reshape(3, -1)
    state_offset = np.empty(n_vars + 1, dtype=ix)
    scope_ptr = np.empty(n_factors + 1, dtype=ix)
    table_offset = np.empty(n_factors + 1, dtype=ix)
    edge_factor = np.empty(n_edges, dtype=ix)
    edge_stride = np.empty(n_edges, dtype=ix)
    edge_partner = np.empty(n_edges, dtype=ix)
    msg_offset = np.empty(n_edges + 1, dtype=ix)
    var_edge_ptr = np.empty(n_vars + 1, dtype=ix)
    var_edges = np.empty(n_edges, dtype=ix)
    var_order = np.empty(n_vars, dtype=ix)
    var_parent = np.empty(n_vars, dtype=ix)
    factor_order = np.empty(n_factors, dtype=ix)
    factor_parent = np.empty(n_factors, dtype=ix)
    n_components, is_forest = _fill_layout(
        n_states, block_info, scope_vars, state_offset, scope_ptr, table_offset, edge_factor,
        edge_stride, edge_partner, msg_offset, var_edge_ptr, var_edges, var_order, var_parent,
        factor_order, factor_parent)
    # The blocks keep views of scope_vars instead of their own int64 scopes (152 MiB on
    # the 2000 x 2000 grid), as their tables become views of theta below; not small blocks
    # (see REPOINT_ENTRIES).
    for block in blocks:
        n, k = block.scopes.shape
        if n * k >= REPOINT_ENTRIES:
            start = int(scope_ptr[block.first])
            view = scope_vars[start : start + n * k].reshape(n, k)
            view.flags.writeable = False
            block.scopes = view
    # Zeros written only where a block is structured: pages never written take no physical
    # memory, so a graph of dense factors keeps neither array resident (229 MiB on the
    # 2000 x 2000 grid).
    factor_kind = np.zeros(n_factors, dtype=ix)
    factor_param = np.zeros((n_factors, 2))
    # One allocation for theta, each block copied (or broadcast, for a shared table) into
    # place; the block then keeps a view of it instead of its own copy.
    energies = np.empty(n_table)
    start = 0
    for block, size in zip(blocks, block_sizes):
        first, n = block.first, len(block.scopes)
        if block.kind:
            factor_kind[first : first + n] = block.kind
        if block.params is not None:
            factor_param[first : first + n] = block.params
        if block.compact:
            continue
        place = energies[start : start + n * size].reshape((n, *block.shape))
        start += n * size
        place[...] = block.tables
        # not a shared (broadcast) table, nor a small one
        if n * size >= REPOINT_ENTRIES and block.tables.strides[0] != 0:
            view = place.view()
            view.flags.writeable = False
            block.tables = view
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
        max_arity=max(arities, default=0),
        n_components=int(n_components),
        is_forest=bool(is_forest),
    )


@njit(**NJIT_OPTIONS)
def _fill_layout(n_states, block_info, scope_vars, state_offset, scope_ptr, table_offset,
                 edge_factor, edge_stride, edge_partner, msg_offset, var_edge_ptr, var_edges,
                 var_order, var_parent, factor_order, factor_parent):
    """Fill the index arrays of :func:`compile_graph` (see the module docstring) from the
    factor blocks' counts, arities and table sizes (``block_info`` rows), in one pass per
    array; then the breadth-first schedule. Returns (components, is_forest)."""
    n_vars = len(n_states)
    state_offset[0] = 0
    for v in range(n_vars):
        state_offset[v + 1] = state_offset[v] + n_states[v]
    a = 0
    e = 0
    scope_ptr[0] = 0
    table_offset[0] = 0
    msg_offset[0] = 0
    for b in range(block_info.shape[1]):
        arity = block_info[1, b]
        size = block_info[2, b]
        for _ in range(block_info[0, b]):
            scope_ptr[a + 1] = scope_ptr[a] + arity
            table_offset[a + 1] = table_offset[a] + size
            stride = 1
            for j in range(arity - 1, -1, -1):
                edge_stride[e + j] = stride
                stride *= n_states[scope_vars[e + j]]
            for j in range(arity):
                edge_factor[e + j] = a
                edge_partner[e + j] = e + j if arity == 1 else (e + 1 - j if arity == 2
                                                                else -1)
                msg_offset[e + j + 1] = msg_offset[e + j] + n_states[scope_vars[e + j]]
            e += arity
            a += 1
    # The edges of each variable, in edge order (a counting sort).
    for v in range(n_vars + 1):
        var_edge_ptr[v] = 0
    for e in range(len(scope_vars)):
        var_edge_ptr[scope_vars[e] + 1] += 1
    for v in range(n_vars):
        var_edge_ptr[v + 1] += var_edge_ptr[v]
    for v in range(n_vars):
        var_parent[v] = var_edge_ptr[v]  # the next free slot of v, before the search
    for e in range(len(scope_vars)):
        v = scope_vars[e]
        var_edges[var_parent[v]] = e
        var_parent[v] += 1
    for v in range(n_vars):
        var_parent[v] = -1
    for a in range(len(factor_parent)):
        factor_parent[a] = -1
    return _breadth_first_schedule(
        scope_ptr, scope_vars, edge_factor, var_edge_ptr, var_edges, var_order, var_parent,
        factor_order, factor_parent, np.zeros(n_vars, dtype=np.bool_),
        np.zeros(len(factor_parent), dtype=np.bool_),
    )


#: Blocks of fewer scope entries (or table entries) keep their own arrays at compile instead
#: of views of the compiled ones: the memory saved is nothing, and the three NumPy calls per
#: block were a quarter of compiling a model read from a file (one block per factor: pdb1akg,
#: 25 factors, ~35 of 118 us).
REPOINT_ENTRIES = 4096

#: Graphs of at least this many edges return the free heap after compiling.
TRIM_EDGES = 2**20


def release_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``; nothing
    elsewhere).

    Building and compiling a large graph free many temporaries of 1-32 MiB, which glibc
    takes from its heap once its dynamic mmap threshold has risen, and it keeps up to
    twice that threshold free at the top of the heap, and every hole, resident: 90-130 MiB
    on the 2000 x 2000 grid, 5-7 % of the peak of BP on it. Written here (ctypes, a few
    lines): no well-kept package wraps it.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def drop_isolated(cg: CompiledGraph) -> tuple[CompiledGraph, np.ndarray | None]:
    """``cg`` without its isolated variables (in no factor), when one of them has more
    states than every variable in a factor; else ``(cg, None)``.

    The message-passing kernels size their scratch by ``max_states``: one isolated variable
    of 10**8 states made min-sum allocate ~3.2 GB of scratch for nothing. The graph returned
    has the same factors and edges (so the same message layout, ``msg_offset``), the kept
    variables renumbered in order, and ``max_states`` over them.

    Returns
    -------
    CompiledGraph
    kept : ndarray of shape (V',), dtype=int64, or None
        The original indices of the kept variables (None: nothing dropped).
    """
    ptr, n = cg.var_edge_ptr, cg.n_variables
    step = 2**20  # in chunks: no V-sized temporaries when nothing is isolated (most graphs)
    if not any(np.any(ptr[lo + 1 : min(lo + step, n) + 1] == ptr[lo : min(lo + step, n)])
               for lo in range(0, n, step)):
        return cg, None
    isolated = np.diff(ptr) == 0
    in_factors = int(cg.n_states[~isolated].max(initial=1))
    if in_factors >= cg.max_states:
        return cg, None
    kept = np.flatnonzero(~isolated)
    ix = cg.scope_vars.dtype  # the index dtype stays: the kernels' specialization
    new_index = (np.cumsum(~isolated) - 1).astype(ix)  # old variable -> new (where kept)
    n_states = cg.n_states[kept]
    order = cg.var_order[~isolated[cg.var_order]]
    arrays = dict(
        n_states=n_states,
        state_offset=_prefix_sum(n_states, ix),
        scope_vars=new_index[cg.scope_vars],
        var_edge_ptr=np.concatenate(([0], cg.var_edge_ptr[1:][kept])).astype(ix),
        var_order=new_index[order],
        var_parent_edge=cg.var_parent_edge[kept],
    )
    for array in arrays.values():
        array.flags.writeable = False
    return cg._replace(**arrays, max_states=in_factors,
                       n_components=cg.n_components - int(isolated.sum())), kept


@njit(**NJIT_OPTIONS)
def lowest_states(values, state_offset, variables, out):
    """``out[j]``: the first state of lowest ``values`` (flat (S,)) of variable
    ``variables[j]``, as decoding chooses (ties to the lowest state; 0 when all are +inf)."""
    for j in range(len(variables)):
        lo = state_offset[variables[j]]
        best = 0
        for x in range(1, state_offset[variables[j] + 1] - lo):
            if values[lo + x] < values[lo + best]:
                best = x
        out[j] = best


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


def _prefix_sum(counts: np.ndarray, dtype=np.int64) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=dtype)
    np.cumsum(counts, out=out[1:])
    return out


@njit(**NJIT_OPTIONS)
def _breadth_first_schedule(
    scope_ptr, scope_vars, edge_factor, var_edge_ptr, var_edges, var_order, var_parent,
    factor_order, factor_parent, var_seen, factor_seen,
):
    """Breadth-first search over the bipartite graph, one root variable per component.

    Writes the variable order, each variable's parent edge (-1 at roots; ``var_parent``
    all -1 on entry), the factor order (factors with an empty scope last) and each factor's
    parent edge (``factor_parent`` all -1 on entry); ``var_seen`` and ``factor_seen`` are
    all False on entry. Returns the number of components and whether the graph is a forest
    (no node is reached twice).
    """
    n_vars = len(var_order)
    n_factors = len(factor_order)
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
    return n_components, is_forest
