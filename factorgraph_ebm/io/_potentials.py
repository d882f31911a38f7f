"""Between the tables of a model file and a :class:`~factorgraph_ebm.graph.FactorGraph`.

Shared by the model formats (:mod:`~factorgraph_ebm.io.uai`, :mod:`~factorgraph_ebm.io.fg`):
checks of what a reader found (scopes, potentials), the conversion ``E = -ln(potential)``
(natural log; a potential of 0 is energy ``+inf``) and back (each table shifted by its
lowest finite energy, see :func:`shifted_potentials`), the assembly of a graph from scopes
and tables, and the factors of a graph as scopes and tables for the writers and converters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .._validation import MAX_ENTRIES, format_bytes
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


def check_cardinalities(reader: TokenReader, cards: Numbers, name_of) -> None:
    """Refuse a cardinality below 1 or above ``MAX_ENTRIES`` (2**40), and cardinalities whose
    sum (the number of states in all) exceeds it, at the line of the offending one;
    ``name_of(j)`` names the variable of ``cards.values[j]`` ("variable 3")."""
    values = cards.values
    bad = np.flatnonzero((values < 1) | (values > MAX_ENTRIES))
    if bad.size:
        j = int(bad[0])
        raise reader.error(
            f"expected the cardinality of {name_of(j)} (an integer in 1..MAX_ENTRIES = "
            f"2**40), found {values[j]}"
            + (f": one float64 vector over its states would take {format_bytes(8 * int(values[j]))}"
               if values[j] > MAX_ENTRIES else ""),
            cards.line_of(j),
        )
    over = np.flatnonzero(np.cumsum(values, dtype=np.float64) > MAX_ENTRIES)
    if over.size:
        j = int(over[0])
        total = int(values[: j + 1].sum(dtype=object))
        raise reader.error(
            f"expected at most MAX_ENTRIES = 2**40 states in all, found {total} with "
            f"{name_of(j)}: one float64 vector over them would take {format_bytes(8 * total)}",
            cards.line_of(j),
        )


def too_many_entries(factor: int, total: int, limit: int, limit_name: str) -> str:
    """The message for tables that would exceed ``limit`` entries in all with ``factor``."""
    return (
        f"expected at most {limit_name} = {limit} table entries in all, found {total} "
        f"with the table of factor {factor}: the tables would take {format_bytes(8 * total)} "
        "as float64"
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


#: Largest spread of finite energies within one factor that a writer accepts: the
#: potential ``exp(-(E - min_a E))`` of every finite entry must be a normal float64
#: (>= 2.2e-308, i.e. a spread of at most -ln(2.2e-308) = 708.39...). A subnormal potential
#: would read back with lost digits (an energy 740 as 739.997), and 0 as ``+inf``.
MAX_ENERGY_SPREAD = float(-np.log(np.finfo(np.float64).tiny))


def shifted_potentials(cg) -> tuple[np.ndarray, np.ndarray]:
    """The potentials a writer stores for every table entry, and each factor's shift.

    Each factor's table is shifted by its lowest finite energy ``c_a`` before ``exp``:
    the potentials are ``exp(-(E - c_a))``, in (0, 1] for finite energies (the lowest is
    exactly 1) and 0 for ``+inf``, so no finite energy overflows or underflows however large
    or small the energies are; only the spread within one factor is bounded
    (:data:`MAX_ENERGY_SPREAD`). A table without finite entries keeps ``c_a = 0``.

    Parameters
    ----------
    cg : CompiledGraph
        Every factor with a table in theta (checked by the callers).

    Returns
    -------
    potentials : ndarray of shape (M,), dtype=float64
        Flat, in the layout of ``cg.energies``.
    offsets : ndarray of shape (F,), dtype=float64
        ``c_a``: reading the written table back gives energies ``E_a - c_a``.

    Raises
    ------
    FactorGraphError
        If a factor's finite energies spread over more than :data:`MAX_ENERGY_SPREAD`,
        naming the factor, the entry and both energies.
    """
    energies = cg.energies
    sizes = np.diff(cg.table_offset)
    offsets = np.zeros(cg.n_factors)
    if cg.n_factors:
        lowest = np.minimum.reduceat(energies, cg.table_offset[:-1])
        offsets = np.where(np.isfinite(lowest), lowest, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        potentials = np.exp(-(energies - np.repeat(offsets, sizes)))
    tiny = np.finfo(np.float64).tiny
    bad = np.flatnonzero(np.isfinite(energies) & ~(potentials >= tiny))
    if bad.size:
        entry = int(bad[0])
        factor = cg.factor_of_entry(entry)
        raise FactorGraphError(
            f"factor {factor}: energy {float(energies[entry])!r} at table entry "
            f"{entry - int(cg.table_offset[factor])} is more than {MAX_ENERGY_SPREAD:.6g} above "
            f"the factor's lowest finite energy {float(offsets[factor])!r}: its potential "
            f"exp(-(energy - lowest)) is not a normal float64 and would not read back; "
            "raise the lowest energies of this factor or cap its energies (or use +inf)"
        )
    return potentials, offsets


def factor_tables(graph: FactorGraph) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """``(scope, potentials)`` of every factor of ``graph``, in graph order, and the shifts.

    ``scope`` holds variable indices in the factor's scope order; ``potentials`` is its flat
    table ``exp(-(E - c_a))`` in C order of that scope (what :func:`build_graph` takes); the
    second value is the ``(F,)`` float64 array of the shifts ``c_a`` (see
    :func:`shifted_potentials`).

    Raises
    ------
    FactorGraphError
        If the graph has compact structured factors (no tables in theta), or as
        :func:`shifted_potentials`.
    """
    require_tables(graph, "writing a model file")
    cg = graph.compile()
    potentials, offsets = shifted_potentials(cg)
    tables = [
        (
            cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]],
            potentials[cg.table_offset[a] : cg.table_offset[a + 1]],
        )
        for a in range(cg.n_factors)
    ]
    return tables, offsets


def build_graph(names, cards: np.ndarray, scopes: Sequence[np.ndarray],
                potentials: np.ndarray) -> FactorGraph:
    """A :class:`FactorGraph` of variables ``names`` and factors in file order.

    Parameters
    ----------
    names : sequence of hashable, length n
    cards : ndarray of shape (n,), dtype=int64
    scopes : sequence of m int64 arrays of variable indices (validated)
    potentials : ndarray of shape (M,), dtype=float64
        Every table (validated), one after the other in factor order, each in C order of
        its scope; turned into energies ``-ln`` in place.

    Consecutive factors with one table shape go in as one block, a view of ``potentials``
    (which the graph copies): the tables are in memory twice at most.
    """
    graph = FactorGraph()
    graph.add_variables(names, cards)
    energies = potentials
    with np.errstate(divide="ignore"):
        np.log(energies, out=energies)
    np.negative(energies, out=energies)
    shapes = [tuple(cards[scope].tolist()) for scope in scopes]
    start = offset = 0
    for stop in range(1, len(scopes) + 1):
        if stop == len(scopes) or shapes[stop] != shapes[start]:
            shape = shapes[start]
            size = (stop - start) * math.prod(shape)
            graph.add_factors(
                np.array(scopes[start:stop], dtype=np.int64).reshape(stop - start, len(shape)),
                energies[offset : offset + size].reshape(stop - start, *shape),
                by_index=True,
            )
            start, offset = stop, offset + size
    return graph
