"""Factor preprocessing for BP: repeated and nested scopes are absorbed, so a tree with
duplicated factors, or pairs inside a triplet, gets BP's exact answers (not Bethe's), with
beliefs reported for every original factor."""

import math

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st
from reference import BruteForce
from strategies import describe, trees

import factorgraph_ebm as fe
from factorgraph_ebm.reduction import reduce_factors

TOL = 1e-9


@st.composite
def disguised_trees(draw):
    """A factor forest plus copies of its factors of arity >= 2 on the same scope (in a
    shuffled order) or on a part of it (arity >= 2): cycles that hide a tree."""
    graph = draw(trees(max_variables=6, max_configs=400, allow_constant=False))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wide = [f for f in range(graph.n_factors) if len(graph.factor_scope(f)) >= 2]
    if not wide:
        return graph
    for f in draw(st.lists(st.sampled_from(wide), min_size=1, max_size=4)):
        scope = list(graph.factor_scope(f))
        rng.shuffle(scope)
        if len(scope) == 3 and draw(st.booleans()):
            scope = scope[:2]
        shape = [int(graph.n_states[graph.index_of(v)]) for v in scope]
        table = rng.normal(size=shape)
        if draw(st.booleans()):
            table = np.where(rng.random(size=shape) < 0.2, np.inf, table)
        graph.add_factor(scope, table)
    return graph


@given(disguised_trees(), st.sampled_from([math.inf, 1.0, 0.4]))
def test_bp_is_exact_on_trees_in_disguise(graph, beta):
    note(describe(graph))
    bf = BruteForce(graph)
    result = fe.belief_propagation(graph, beta=beta, method="bp")
    assert result.exact and result.method == "bp"
    if not bf.feasible:
        assert result.feasible is False
        return
    if beta == math.inf:
        assert math.isclose(result.energy, bf.min_energy, abs_tol=TOL)
        for mine, theirs in zip(result.min_marginals, bf.min_marginals(), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
        for f in range(graph.n_factors):
            np.testing.assert_allclose(result.factor_belief(f), bf.factor_min_marginals(f),
                                       rtol=0, atol=TOL)
    else:
        assert math.isclose(result.log_partition, bf.log_z(beta), rel_tol=TOL, abs_tol=TOL)
        for mine, theirs in zip(result.marginals, bf.marginals(beta), strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
        for f in range(graph.n_factors):
            np.testing.assert_allclose(result.factor_belief(f), bf.factor_marginals(f, beta),
                                       rtol=0, atol=TOL)


def test_reduction_merges_and_absorbs_and_leaves_the_rest():
    g = fe.FactorGraph()
    g.add_variables("abcd", 2)
    g.add_factor(list("abc"), np.zeros((2, 2, 2)))   # 0: holds 1 and 2
    g.add_factor(list("ca"), np.ones((2, 2)))        # 1: inside 0
    g.add_factor(list("abc"), np.ones((2, 2, 2)))    # 2: same scope as 0
    g.add_factor(list("cd"), np.zeros((2, 2)))       # 3: its own
    g.add_factor(["d"], np.zeros(2))                  # 4: unary, never absorbed
    reduction = reduce_factors(g)
    assert reduction.graph.n_factors == 3
    assert reduction.absorber.tolist() == [0, 0, 0, 1, 2]
    theta = reduction.energies(g.compile().energies)
    np.testing.assert_array_equal(theta[:8], np.full(8, 2.0))  # 0 + 1 + 1, exact sums
    plain = fe.FactorGraph()
    plain.add_variables("ab", 2)
    plain.add_factor(["a", "b"], np.zeros((2, 2)))
    assert reduce_factors(plain) is None


def test_warm_start_uses_the_reduced_messages():
    g = fe.FactorGraph()
    g.add_variables(range(4), 3)
    rng = np.random.default_rng(0)
    for i in range(4):
        g.add_factor([i, (i + 1) % 4], rng.normal(size=(3, 3)))
    g.add_factor([1, 0], rng.normal(size=(3, 3)))  # repeated: absorbed
    first = fe.sum_product(g, method="bp", tol=1e-12)
    again = fe.sum_product(g, method="bp", tol=1e-12, init_messages=first.messages)
    assert again.converged and again.n_iter <= 2
    assert math.isclose(again.log_partition, first.log_partition, rel_tol=1e-10)
