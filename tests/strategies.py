"""Hypothesis strategies for small factor graphs (brute-force enumerable).

Graphs have 1..7 variables of 1..4 states with at most ``max_configs`` configurations in
all, factors of arity 0..3 (arity 0 = a constant energy), energies uniform in a bounded
range (or small integers, which makes ties likely) with optional ``+inf`` entries (hard
constraints). Structure is drawn by Hypothesis (so it shrinks); the energy values come from
a NumPy generator seeded by a drawn integer.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from reference import factor_table

from factorgraph_ebm import FactorGraph

NAME_STYLES = ("str", "int", "tuple")


def _name(style, i):
    if style == "str":
        return f"v{i}"
    if style == "int":
        return 100 + i
    return ("var", i)


@st.composite
def _variables(draw, max_variables, max_configs, min_variables=1):
    n = draw(st.integers(min_variables, max_variables))
    states = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    while math.prod(states) > max_configs:
        states[int(np.argmax(states))] -= 1
    style = draw(st.sampled_from(NAME_STYLES))
    return [_name(style, i) for i in range(n)], states


INF_LEVELS = (0.0, 0.0, 0.1, 0.3)


@st.composite
def _energy_maker(draw, allow_inf, inf_levels=INF_LEVELS):
    """A function shape -> energy table (same generator for the whole graph)."""
    seed = draw(st.integers(0, 2**32 - 1))
    mode = draw(st.sampled_from(["uniform", "uniform", "integer"]))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    p_inf = draw(st.sampled_from(inf_levels)) if allow_inf else 0.0
    rng = np.random.default_rng(seed)

    def make(shape):
        if mode == "uniform":
            table = rng.uniform(-scale, scale, size=shape)
        else:
            table = rng.integers(0, 3, size=shape).astype(np.float64)
        if p_inf:
            table = np.where(rng.random(size=shape) < p_inf, np.inf, table)
        return np.asarray(table, dtype=np.float64)

    return make


def _add(graph, draw, scope, table, k):
    """Add one factor, sometimes with a name, sometimes through add_factors."""
    how = draw(st.sampled_from(["plain", "named", "batch"]))
    if how == "plain":
        graph.add_factor(scope, table)
    elif how == "named":
        graph.add_factor(scope, table, name=f"f{k}")
    else:
        graph.add_factors([scope], table[None])


def _build_variables(graph, draw, names, states):
    if draw(st.booleans()):
        graph.add_variables(names, states)
    else:
        for name, k in zip(names, states):
            graph.add_variable(name, k)


@st.composite
def trees(
    draw,
    max_variables=7,
    max_configs=2000,
    allow_inf=True,
    allow_constant=True,
    max_factors=None,
    inf_levels=INF_LEVELS,
):
    """A random factor forest: factors of arity >= 2 only join distinct components.
    ``inf_levels``: the probabilities of a +inf entry to draw from."""
    names, states = draw(_variables(max_variables, max_configs))
    make = draw(_energy_maker(allow_inf, inf_levels))
    graph = FactorGraph()
    _build_variables(graph, draw, names, states)
    n = len(names)
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    n_factors = draw(st.integers(0, max_factors if max_factors is not None else 2 * n + 1))
    arities = [0, 1, 2, 3] if allow_constant else [1, 2, 3]
    for k in range(n_factors):
        arity = draw(st.sampled_from(arities))
        roots = sorted({find(i) for i in range(n)})
        arity = min(arity, len(roots)) if arity >= 2 else arity
        if arity >= 2:
            chosen_roots = draw(st.permutations(roots))[:arity]
            scope_idx = []
            for r in chosen_roots:
                members = [i for i in range(n) if find(i) == r]
                scope_idx.append(draw(st.sampled_from(members)))
            for r in chosen_roots[1:]:
                parent[r] = chosen_roots[0]
        elif arity == 1:
            scope_idx = [draw(st.integers(0, n - 1))]
        else:
            scope_idx = []
        scope = tuple(names[i] for i in scope_idx)
        table = make(tuple(states[i] for i in scope_idx))
        _add(graph, draw, scope, table, k)
    return graph


@st.composite
def loopy_graphs(
    draw,
    max_variables=6,
    max_configs=2000,
    allow_inf=True,
    allow_constant=True,
    max_extra_factors=6,
    min_states=1,
    inf_levels=INF_LEVELS,
):
    """A random factor graph with at least one cycle (a ring of pairwise factors, or two
    factors over the same pair), plus random extra factors of arity 0..3."""
    names, states = draw(_variables(max_variables, max_configs, min_variables=2))
    states = [max(k, min_states) for k in states]
    while math.prod(states) > max_configs:
        states[int(np.argmax(states))] -= 1
    make = draw(_energy_maker(allow_inf, inf_levels))
    graph = FactorGraph()
    _build_variables(graph, draw, names, states)
    n = len(names)
    k = 0
    if n >= 3 and draw(st.booleans()):
        ring = draw(st.permutations(range(n)))[: draw(st.integers(3, n))]
        for a, b in zip(ring, ring[1:] + ring[:1]):
            _add(graph, draw, (names[a], names[b]), make((states[a], states[b])), k)
            k += 1
    else:
        a, b = draw(st.permutations(range(n)))[:2]
        _add(graph, draw, (names[a], names[b]), make((states[a], states[b])), k)
        _add(graph, draw, (names[b], names[a]), make((states[b], states[a])), k + 1)
        k += 2
    arities = [0, 1, 2, 3] if allow_constant else [1, 2, 3]
    for _ in range(draw(st.integers(0, max_extra_factors))):
        arity = min(draw(st.sampled_from(arities)), n)
        scope_idx = draw(st.permutations(range(n)))[:arity]
        scope = tuple(names[i] for i in scope_idx)
        _add(graph, draw, scope, make(tuple(states[i] for i in scope_idx)), k)
        k += 1
    return graph


@st.composite
def evidence_for(draw, graph):
    """A random partial assignment {name: state} of the graph's variables. Sometimes it
    observes every variable of one factor at a forbidden (+inf) entry, which makes the
    evidence impossible."""
    evidence = {}
    for name, k in zip(graph.variables, graph.n_states.tolist()):
        if draw(st.booleans()):
            evidence[name] = draw(st.integers(0, k - 1))
    forbidding = [
        f for f in range(graph.n_factors)
        if graph.factor_scope(f) and np.isinf(factor_table(graph, f)).any()
    ]
    if forbidding and draw(st.booleans()):
        f = draw(st.sampled_from(forbidding))
        entries = np.argwhere(np.isinf(factor_table(graph, f)))
        entry = entries[draw(st.integers(0, len(entries) - 1))]
        for name, state in zip(graph.factor_scope(f), entry.tolist()):
            evidence[name] = state
    return evidence


def describe(graph) -> str:
    """A readable dump of a graph (for ``hypothesis.note`` in failing examples)."""
    lines = [repr(graph)]
    lines.append("variables: " + ", ".join(
        f"{name!r}:{k}" for name, k in zip(graph.variables, graph.n_states.tolist())
    ))
    for f in range(graph.n_factors):
        table = np.array2string(factor_table(graph, f), precision=3)
        lines.append(f"factor {f} {graph.factor_scope(f)}: {table}")
    return "\n".join(lines)
