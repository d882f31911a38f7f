"""Soft evidence: per-state energies ``unary=`` added to the model for one inference call.

The reference is brute force on a copy of the graph with those energies as explicit unary
factors (built from the public views only); exact inference (junction tree) and BP on trees
must agree with it to 1e-9 (absolute, energies of order 1-10 and probabilities), +inf
entries and evidence included. Loopy BP is compared with loopy BP on that copy.
"""

import math

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from reference import BruteForce, factor_table
from strategies import describe, evidence_for, loopy_graphs, trees

import factorgraph_ebm as fe
from factorgraph_ebm import EvidenceError, FactorGraph, FactorGraphError

TOL = 1e-9


@st.composite
def unaries(draw, graph):
    """Per-variable energies: zeros, uniform in [-2, 2], some +inf entries, or (rarely)
    +inf at every state; as a mapping (some variables) or the flat (S,) vector."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = {}
    for name, k in zip(graph.variables, graph.n_states.tolist()):
        kind = draw(st.sampled_from(["zero", "uniform", "uniform", "some inf", "all inf"]
                                    if draw(st.integers(0, 9)) == 0 else
                                    ["zero", "uniform", "uniform", "some inf"]))
        row = np.zeros(k) if kind == "zero" else rng.uniform(-2.0, 2.0, k)
        if kind == "some inf":
            row[rng.random(k) < 0.4] = math.inf
        elif kind == "all inf":
            row[:] = math.inf
        rows[name] = row
    if draw(st.booleans()):
        return rows, np.concatenate([rows[v] for v in graph.variables])
    kept = {v: r for v, r in rows.items() if draw(st.booleans())}
    return kept, kept


def with_unary_factors(graph: FactorGraph, rows: dict) -> FactorGraph:
    """A copy of ``graph`` (public views only) with one more factor ``[v]`` per row."""
    copy = FactorGraph()
    copy.add_variables(graph.variables, graph.n_states)
    for f in range(graph.n_factors):
        copy.add_factor(graph.factor_scope(f), factor_table(graph, f))
    for name, row in rows.items():
        copy.add_factor([name], row)
    return copy


def _case(data, beta, method):
    graph = data.draw(trees(max_variables=6, max_configs=600) if method == "bp" else
                      st.one_of(loopy_graphs(max_variables=6, max_configs=600),
                                trees(max_variables=6, max_configs=600)))
    rows, unary = data.draw(unaries(graph))
    evidence = data.draw(evidence_for(graph)) if data.draw(st.booleans()) else None
    note(describe(graph))
    note(f"unary={unary!r} evidence={evidence!r}")
    cg = graph.compile()
    try:
        result = fe.belief_propagation(graph, beta=beta, evidence=evidence, unary=unary,
                                       method=method, warn=False)
    except EvidenceError:  # evidence that empties a factor, refused with or without unary
        event("evidence refused")
        with pytest.raises(EvidenceError):
            fe.belief_propagation(graph, beta=beta, evidence=evidence, method=method)
        return None
    assert graph.compile() is cg  # nothing was rebuilt
    assert result.exact
    bf = BruteForce(with_unary_factors(graph, rows), evidence)
    event("feasible" if bf.feasible else "infeasible")
    return graph, bf, result


@pytest.mark.parametrize("method", ["exact", "bp"])
@given(data=st.data())
def test_min_sum_with_unary_matches_brute_force(method, data):
    case = _case(data, math.inf, method)
    if case is None:
        return
    graph, bf, result = case
    if not bf.feasible:
        assert result.energy == math.inf and result.feasible is False
        return
    assert result.feasible is True
    assert math.isclose(result.energy, bf.min_energy, abs_tol=TOL)  # unary energies included
    assert tuple(result.assignment.tolist()) in bf.minimizers(atol=1e-7)
    for mine, theirs in zip(result.min_marginals, bf.min_marginals(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(graph.n_factors):
        np.testing.assert_allclose(result.factor_belief(f), bf.factor_min_marginals(f),
                                   rtol=0, atol=TOL)


@pytest.mark.parametrize("method", ["exact", "bp"])
@given(data=st.data(), beta=st.sampled_from([0.3, 1.0, 2.5]))
def test_sum_product_with_unary_matches_brute_force(method, data, beta):
    case = _case(data, beta, method)
    if case is None:
        return
    graph, bf, result = case
    if not bf.feasible:
        assert result.log_partition == -math.inf and result.feasible is False
        assert not any(np.isnan(m).any() for m in result.marginals)
        return
    assert math.isclose(result.log_partition, bf.log_z(beta), abs_tol=TOL)
    assert math.isclose(result.free_energy, bf.free_energy(beta), abs_tol=TOL)
    for mine, theirs in zip(result.marginals, bf.marginals(beta), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(graph.n_factors):
        np.testing.assert_allclose(result.factor_belief(f), bf.factor_marginals(f, beta),
                                   rtol=0, atol=TOL)


def grid(seed: int, n: int = 3, k: int = 3) -> tuple[FactorGraph, dict]:
    """An n x n grid of weak random couplings (BP has one fixed point) and random unary
    energies for every variable."""
    rng = np.random.default_rng(seed)
    graph = FactorGraph()
    names = [(r, c) for r in range(n) for c in range(n)]
    graph.add_variables(names, k)
    for r, c in names:
        for other in ((r + 1, c), (r, c + 1)):
            if other in graph.variables:
                graph.add_factor([(r, c), other], rng.uniform(-0.3, 0.3, (k, k)))
    rows = {v: rng.uniform(-1.0, 1.0, k) for v in names}
    return graph, rows


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_loopy_bp_with_unary_equals_bp_with_unary_factors(seed, schedule):
    """On a loopy grid, BP with ``unary`` reaches the fixed point of BP on the graph with
    explicit unary factors (absorb=False: factors as given): the same marginals and Bethe
    ln Z (to 1e-9, both converged to tol 1e-13), and the same min-sum assignment."""
    graph, rows = grid(seed)
    copy = with_unary_factors(graph, rows)
    options = dict(method="bp", absorb=False, schedule=schedule, tol=1e-13, max_iter=2000)
    for beta in (1.0, math.inf):
        mine = fe.belief_propagation(graph, beta=beta, unary=rows, **options)
        theirs = fe.belief_propagation(copy, beta=beta, **options)
        assert mine.converged and theirs.converged and not mine.exact
        if beta == math.inf:
            np.testing.assert_array_equal(mine.assignment, theirs.assignment)
            assert mine.energy == pytest.approx(theirs.energy, abs=TOL)
            continue
        assert mine.log_partition == pytest.approx(theirs.log_partition, abs=TOL)
        for a, b in zip(mine.marginals, theirs.marginals, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=TOL)


def test_mapping_and_flat_forms_are_the_same_and_evidence_adds_on_top():
    graph, rows = grid(0, n=2)
    flat = np.concatenate([rows[v] for v in graph.variables])
    a = fe.sum_product(graph, unary=rows)
    b = fe.sum_product(graph, unary=flat)
    assert a.log_partition == b.log_partition
    np.testing.assert_array_equal(a.variable_beliefs, b.variable_beliefs)
    observed = graph.variables[1]
    both = fe.sum_product(graph, unary=rows, evidence={observed: 2})
    bf = BruteForce(with_unary_factors(graph, rows), {observed: 2})
    assert both.log_partition == pytest.approx(bf.log_z(1.0), abs=TOL)
    # a variable left out of the mapping gets 0; the graph's own energies never change
    theta = graph.compile().energies.copy()
    only = fe.min_sum(graph, unary={observed: [0.0, 0.0, -50.0]}, method="exact")
    assert only.assignment[1] == 2
    np.testing.assert_array_equal(graph.compile().energies, theta)
    assert only.energy == pytest.approx(graph.energy(only.assignment) - 50.0, abs=TOL)


UNARY_ERRORS = {  # unary: message
    "unknown variable": ({"nope": [0.0, 1.0]}, "unknown variable 'nope'"),
    "wrong row shape": ({"a": [0.0, 1.0, 2.0]}, r"variable 'a': expected shape \(2,\)"),
    "wrong flat shape": (np.zeros(3), r"array of shape \(5,\) .*got shape \(3,\)"),
    "nan": ({"b": [0.0, math.nan, 1.0]}, "variable 'b' at state 1 is nan"),
    "minus inf": (np.array([0, 0, 0, 0, -math.inf]), "variable 'b' at state 2 is -inf"),
    "not numeric": ({"a": ["x", 1.0]}, "unary energies of variable 'a' must be numeric"),
}


@pytest.mark.parametrize("case", UNARY_ERRORS, ids=str)
def test_bad_unary_is_refused(case):
    graph = FactorGraph()
    graph.add_variables(["a", "b"], [2, 3])
    graph.add_factor(["a", "b"], np.zeros((2, 3)))
    unary, message = UNARY_ERRORS[case]
    with pytest.raises(FactorGraphError, match=message):
        fe.min_sum(graph, unary=unary)


@pytest.mark.parametrize("method", ["exact", "bp"])
def test_soft_evidence_that_forbids_the_observed_state_is_infeasible(method):
    """Evidence v0 = 2 and unary +inf at state 2 (found by Hypothesis: the energy used to
    leave out the evidence and report a finite energy for an infeasible model)."""
    graph = FactorGraph()
    graph.add_variables(["v0", "v1"], [4, 2])
    graph.add_factor(["v0", "v1"], np.zeros((4, 2)))
    unary = {"v0": [-1.8, 0.07, math.inf, math.inf]}
    best = fe.min_sum(graph, evidence={"v0": 2}, unary=unary, method=method)
    assert best.energy == math.inf and best.feasible is False
    soft = fe.sum_product(graph, evidence={"v0": 2}, unary=unary, method=method)
    assert soft.log_partition == -math.inf and soft.feasible is False
    assert not any(np.isnan(m).any() for m in soft.marginals)
