"""Converting models of pgmpy and pyAgrum to and from :class:`~factorgraph_ebm.graph.FactorGraph`.

Both libraries keep variable names on the axes of their tables (pgmpy's
``DiscreteFactor.variables``, pyAgrum's ``Tensor.names``), so a converted table keeps its
meaning whatever order either side stores it in; this is why converting the objects is
safer than exchanging ``.uai`` files, whose table orders these libraries' writers do not
all follow (see :mod:`factorgraph_ebm.io.uai`).

Energies are ``-ln(value)`` (natural log; a value of 0 is ``+inf``). A Bayesian network
becomes one factor per conditional probability table, so its ``ln Z`` is 0 and, with
evidence, ``ln P(evidence)``. The libraries are optional dependencies (the ``convert``
extra: ``pip install factorgraph-ebm[convert]``); :func:`from_pgmpy` and
:func:`from_pyagrum` only read the objects given to them and import nothing.
"""

from __future__ import annotations

import numpy as np

from ..compiled import require_tables
from ..exceptions import FactorGraphError
from ..graph import FactorGraph
from ._potentials import first_bad_potential, shifted_potentials, to_energies


def from_pgmpy(model) -> FactorGraph:
    """A :class:`FactorGraph` from a pgmpy discrete model.

    Parameters
    ----------
    model : pgmpy.models.DiscreteBayesianNetwork, DiscreteMarkovNetwork or FactorGraph
        With its CPDs or factors added (pgmpy >= 1.0).

    Returns
    -------
    FactorGraph
        Variables named as in pgmpy, in the model's node order (``model.nodes()``,
        factor nodes left out); variable ``v`` has one
        state per pgmpy state name, state ``i`` being ``model.states[v][i]`` (for a
        ``FactorGraph``, which has no ``states``: the state names of the first factor on
        ``v``). One factor per CPD (scope ``child, parents...``, as
        ``TabularCPD.to_factor``) or per ``DiscreteFactor`` (its own variable order), in the
        model's order, with energies ``-ln(value)``; each table's axes are matched to the
        variables by name and its states by state name.

    Raises
    ------
    FactorGraphError
        Not a discrete pgmpy model, a variable whose cardinality or state names differ
        between factors, a table that does not match its cardinalities, a negative, NaN or
        infinite value (naming the factor), or a variable without factors or state names.
    """
    if hasattr(model, "get_cpds"):
        factors = [cpd.to_factor() for cpd in model.get_cpds()]
        what = "CPD"
    elif hasattr(model, "get_factors"):
        factors = list(model.get_factors())
        what = "factor"
    else:
        raise FactorGraphError(
            f"from_pgmpy needs a pgmpy DiscreteBayesianNetwork, DiscreteMarkovNetwork or "
            f"FactorGraph, got {type(model).__name__}"
        )
    variables = list(model.nodes())
    if hasattr(model, "get_variable_nodes"):  # a FactorGraph: its factors are nodes too
        kept = set(model.get_variable_nodes())  # a set's order would vary between runs
        variables = [v for v in variables if v in kept]
    states = {v: list(s) for v, s in getattr(model, "states", {}).items()}
    for factor in factors:
        for v in factor.variables:
            states.setdefault(v, list(factor.state_names[v]))
    tables = []
    for a, factor in enumerate(factors):
        label = f"pgmpy {what} {a} (scope {tuple(factor.variables)})"
        values = np.asarray(factor.values, dtype=np.float64)
        for axis, v in enumerate(factor.variables):
            values = _to_state_order(values, axis, list(factor.state_names[v]), states.get(v),
                                     v, label)
        tables.append((label, list(factor.variables), values))
    return _build(variables, {v: len(s) for v, s in states.items()}, tables)


def to_pgmpy(graph: FactorGraph):
    """A pgmpy ``DiscreteMarkovNetwork`` with the factors of ``graph``, and each factor's
    energy shift.

    Each factor becomes a ``DiscreteFactor`` over its scope (variable names as in
    ``graph``, states ``0 .. K-1``) with values ``exp(-(E - c_a))``, ``c_a`` its lowest
    finite energy, as the file writers store them (:func:`~factorgraph_ebm.io.write_uai`):
    no energy overflows or underflows, and pgmpy's model is ``graph``'s up to the constant
    ``C = offsets.sum()``: its unnormalized measure is ``exp(-(E(y) - C))``, so
    ``ln Z = ln Z_pgmpy - C`` (``beta = 1``); marginals and the most probable assignment are
    the same. The network has an edge between every two variables of a scope (pgmpy
    requires factors over cliques), and a factor of ones on every variable that no factor
    touches (pgmpy requires a factor on every variable). Empty-scope factors are kept
    (pgmpy multiplies them in).

    Parameters
    ----------
    graph : FactorGraph
        Every factor with a table (no compact structured factors).

    Returns
    -------
    model : pgmpy.models.DiscreteMarkovNetwork
    offsets : ndarray of shape (n_factors,), dtype=float64
        ``c_a`` of every factor of ``graph`` (0 for a table without finite entries).

    Raises
    ------
    FactorGraphError
        A compact structured factor, or a factor whose finite energies spread over more
        than :data:`~factorgraph_ebm.io.MAX_ENERGY_SPREAD` (as the writers).
    ImportError
        If pgmpy is not installed.
    """
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork

    require_tables(graph, "to_pgmpy")
    cg = graph.compile()
    potentials, offsets = shifted_potentials(cg)
    names = graph.variables
    model = DiscreteMarkovNetwork()
    model.add_nodes_from(names)
    factors = []
    for a in range(cg.n_factors):
        scope = cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]].tolist()
        values = potentials[cg.table_offset[a] : cg.table_offset[a + 1]]
        factors.append(DiscreteFactor([names[v] for v in scope], cg.n_states[scope].tolist(),
                                      values.copy()))
        model.add_edges_from((names[u], names[v]) for i, u in enumerate(scope)
                             for v in scope[i + 1 :])
    for v in np.flatnonzero(np.diff(cg.var_edge_ptr) == 0).tolist():
        factors.append(DiscreteFactor([names[v]], [int(cg.n_states[v])],
                                      np.ones(cg.n_states[v])))
    model.add_factors(*factors)
    return model, offsets


def from_pyagrum(model) -> FactorGraph:
    """A :class:`FactorGraph` from a pyAgrum ``BayesNet`` or ``MarkovRandomField``.

    Parameters
    ----------
    model : pyagrum.BayesNet or pyagrum.MarkovRandomField
        The tables are read with ``names`` and ``toarray()``, whose axes are
        ``reversed(names)`` (pyAgrum's documented order; checked with pyAgrum 3.3).

    Returns
    -------
    FactorGraph
        Variables named as in pyAgrum, in the order of their node ids; state ``i`` of a
        variable is pyAgrum's label ``i`` (``model.variable(name).label(i)``). One factor
        per CPT, in node-id order (scope ``child, parents...``, pyAgrum's own variable order
        of the CPT), or per MRF factor in ``model.factors()`` order, with energies
        ``-ln(value)``.

    Raises
    ------
    FactorGraphError
        Not a BayesNet or MarkovRandomField, a table whose shape does not match its
        variables, or a negative, NaN or infinite value (naming the table).
    """
    if hasattr(model, "cpt"):
        tensors = [(f"pyAgrum CPT of {model.variable(n).name()!r}", model.cpt(n))
                   for n in sorted(model.nodes())]
    elif hasattr(model, "factors") and hasattr(model, "factor"):
        tensors = []
        for nodes in model.factors():
            tensor = model.factor(nodes)
            tensors.append((f"pyAgrum factor {tuple(tensor.names)}", tensor))
    else:
        raise FactorGraphError(
            f"from_pyagrum needs a pyAgrum BayesNet or MarkovRandomField, got "
            f"{type(model).__name__}"
        )
    nodes = sorted(model.nodes())
    variables = [model.variable(n).name() for n in nodes]
    cards = {model.variable(n).name(): int(model.variable(n).domainSize()) for n in nodes}
    # toarray()'s axes are reversed(names) (pyAgrum's documented order): transposing
    # reverses them back, one axis per name of ``names``.
    tables = [(label, list(tensor.names), np.transpose(np.asarray(tensor.toarray(), float)))
              for label, tensor in tensors]
    return _build(variables, cards, tables)


def _to_state_order(values: np.ndarray, axis: int, have: list, want: list | None, variable,
                    label: str) -> np.ndarray:
    """``values`` with ``axis`` reordered from the state names ``have`` to ``want``."""
    if want is None or have == want:
        return values
    if len(have) != len(want) or set(have) != set(want):
        raise FactorGraphError(
            f"{label}: variable {variable!r} has states {have}, but {want} elsewhere in the "
            "model"
        )
    return np.take(values, [have.index(s) for s in want], axis=axis)


def _build(variables: list, cards: dict, tables: list) -> FactorGraph:
    """A graph of ``variables`` (cardinalities ``cards``) and ``tables``: (label, scope
    names, values with one axis per scope variable)."""
    missing = [v for v in variables if v not in cards]
    if missing:
        raise FactorGraphError(
            f"variable {missing[0]!r} has no factor and no state names: its number of states "
            "is unknown"
        )
    graph = FactorGraph()
    graph.add_variables(variables, [cards[v] for v in variables])
    for label, scope, values in tables:
        unknown = [v for v in scope if v not in cards]
        if unknown:
            raise FactorGraphError(f"{label}: unknown variable {unknown[0]!r}")
        shape = tuple(cards[v] for v in scope)
        if values.shape != shape:
            raise FactorGraphError(
                f"{label}: table of shape {values.shape}, expected {shape} (the cardinalities "
                f"of {tuple(scope)})"
            )
        j = first_bad_potential(values.ravel())
        if j >= 0:
            where = tuple(int(i) for i in np.unravel_index(j, shape))
            raise FactorGraphError(
                f"{label}: expected a probability or potential (a finite number >= 0) at "
                f"{dict(zip(scope, where))}, found {values.ravel()[j]}"
            )
        graph.add_factor(scope, to_energies(values), name=label)
    return graph


__all__ = ["from_pgmpy", "from_pyagrum", "to_pgmpy"]
