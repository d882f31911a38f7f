"""Between the tables of a model file and a :class:`~factorgraph_ebm.graph.FactorGraph`.

Shared by the model formats (:mod:`~factorgraph_ebm.io.uai`, :mod:`~factorgraph_ebm.io.fg`):
checks of what a reader found (scopes, potentials), the conversion ``E = -ln(potential)``
(natural log; a potential of 0 is energy ``+inf``) and back, the assembly of a graph from
scopes and tables, and the factors of a graph as scopes and tables for the writers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..compiled import require_tables
from ..exceptions import FactorGraphError
from ..graph import FactorGraph
from ._text import Numbers, TokenReader, first_repeat


def check_distinct(reader: TokenReader, scope: Numbers, what: str) -> None:
    """Refuse a scope that lists a variable twice."""
    j = first_repeat(scope.values)
    if j >= 0:
        raise reader.error(
            f"expected distinct variables in the scope of {what}, found "
            f"{int(scope.values[j])} twice",
            scope.line_of(j),
        )


def first_bad_potential(values: np.ndarray) -> int:
    """Index of the first NaN, negative or infinite potential in ``values``, or -1."""
    if not values.size or (values.min() >= 0 and values.max() < np.inf):
        return -1
    return int(np.flatnonzero(~((values >= 0) & (values < np.inf)))[0])


def to_energies(potentials: np.ndarray) -> np.ndarray:
    """Energies ``-ln(potentials)`` (natural log), float64; ``+inf`` where a potential is 0."""
    with np.errstate(divide="ignore"):
        return -np.log(potentials)


def potentials_of(graph: FactorGraph) -> np.ndarray:
    """``exp(-E)`` of every energy-table entry of ``graph`` (flat, compiled layout).

    Raises
    ------
    FactorGraphError
        If a finite energy has no float64 potential (``exp(-E)`` overflows, or underflows
        to 0, which would read back as a forbidden configuration), or if the graph has
        compact structured factors (no tables in theta).
    """
    require_tables(graph, "writing a model file")
    energies = graph.compile().energies
    with np.errstate(over="ignore", under="ignore"):
        potentials = np.exp(-energies)
    bad = np.flatnonzero(np.isfinite(energies) & ((potentials == 0) | np.isinf(potentials)))
    if bad.size:
        entry = int(bad[0])
        factor = graph.compile().factor_of_entry(entry)
        raise FactorGraphError(
            f"factor {factor}: energy {energies[entry]} cannot be written as a potential "
            "exp(-energy) in float64 (finite energies must lie in about [-709, 745])"
        )
    return potentials


def factor_tables(graph: FactorGraph) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(scope, potentials)`` of every factor of ``graph``, in graph order.

    ``scope`` holds variable indices in the factor's scope order; ``potentials`` is its flat
    table ``exp(-E)`` in C order of that scope (what :func:`build_graph` takes).

    Raises
    ------
    FactorGraphError
        As :func:`potentials_of`.
    """
    cg = graph.compile()
    potentials = potentials_of(graph)
    return [
        (
            cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]],
            potentials[cg.table_offset[a] : cg.table_offset[a + 1]],
        )
        for a in range(cg.n_factors)
    ]


def build_graph(names, cards: np.ndarray, scopes: Sequence[np.ndarray], tables) -> FactorGraph:
    """A :class:`FactorGraph` of variables ``names`` and factors in file order.

    Parameters
    ----------
    names : sequence of hashable, length n
    cards : ndarray of shape (n,), dtype=int64
    scopes : sequence of m int64 arrays of variable indices (validated)
    tables : sequence of m float64 arrays of potentials (validated), C order in scope order,
        flat or shaped; energies are ``-ln`` of them.

    Consecutive factors with one table shape go in as one block.
    """
    graph = FactorGraph()
    graph.add_variables(names, cards)
    shapes = [tuple(cards[scope].tolist()) for scope in scopes]
    start = 0
    for stop in range(1, len(scopes) + 1):
        if stop == len(scopes) or shapes[stop] != shapes[start]:
            shape = shapes[start]
            graph.add_factors(
                np.array(scopes[start:stop], dtype=np.int64).reshape(stop - start, len(shape)),
                to_energies(np.array(tables[start:stop], dtype=np.float64)).reshape(
                    stop - start, *shape
                ),
                by_index=True,
            )
            start = stop
    return graph
