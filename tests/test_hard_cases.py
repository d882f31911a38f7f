"""Hard and degenerate cases, each checked exactly against brute force or a closed form."""

import math
import time
import warnings

import numpy as np
import pytest
from reference import (
    BruteForce,
    PlainBP,
    chain_log_z,
    chain_marginals,
    chain_min_marginals,
    chain_viterbi,
    logsumexp,
)

import factorgraph_ebm as fg
import factorgraph_ebm.messages as kernels

ATOL = 1e-9
RTOL = 1e-12


def approx(value, rel=RTOL, atol=ATOL):
    return pytest.approx(value, rel=rel, abs=atol)


def assert_no_nan(result):
    for name in ("variable_beliefs", "factor_beliefs", "messages", "residuals"):
        value = getattr(result, name)  # messages: None after exact inference
        assert value is None or not np.isnan(value).any(), f"NaN in result.{name}"
    for name in ("energy", "free_energy", "log_partition"):
        value = getattr(result, name)
        assert value is None or not math.isnan(value), f"result.{name} is NaN"


def assert_exact(graph, evidence=None, betas=(1.0,)):
    """Min-sum and sum-product on ``graph`` equal brute force (feasible model)."""
    bf = BruteForce(graph, evidence)
    assert bf.feasible
    result = fg.min_sum(graph, evidence=evidence)
    assert_no_nan(result)
    assert result.energy == approx(bf.min_energy)
    assert tuple(result.assignment.tolist()) in bf.minimizers()
    for got, want in zip(result.min_marginals, bf.min_marginals()):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    for beta in betas:
        result = fg.sum_product(graph, beta=beta, evidence=evidence)
        assert_no_nan(result)
        assert result.log_partition == approx(bf.log_z(beta))
        assert result.free_energy == approx(bf.free_energy(beta))
        for got, want in zip(result.marginals, bf.marginals(beta)):
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    return bf


def random_chain_graph(rng, n_states, scale=1.0, names=None):
    """A chain with unary and pairwise factors; returns (graph, unaries, pairwise)."""
    n = len(n_states)
    names = names or [f"x{i}" for i in range(n)]
    graph = fg.FactorGraph()
    graph.add_variables(names, n_states)
    unaries = [rng.uniform(-scale, scale, size=k) for k in n_states]
    pairwise = [
        rng.uniform(-scale, scale, size=(n_states[i], n_states[i + 1])) for i in range(n - 1)
    ]
    for i in range(n):
        graph.add_factor((names[i],), unaries[i])
    for i in range(n - 1):
        graph.add_factor((names[i], names[i + 1]), pairwise[i])
    return graph, unaries, pairwise


# --------------------------------------------------------------------------- structure
def test_disconnected_graph_every_component_solved_and_log_z_adds():
    rng = np.random.default_rng(0)
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "c"], [2, 3, 2])  # chain a-b-c
    graph.add_variables(["p", "q", "r"], 2)  # one 3-ary factor
    graph.add_variable("lonely", 3)  # no factor at all
    graph.add_variables(["s", "t"], [3, 1])  # a pair with a one-state variable
    graph.add_factor(("a", "b"), rng.normal(size=(2, 3)))
    graph.add_factor(("c", "b"), rng.normal(size=(2, 3)))
    graph.add_factor(("p", "q", "r"), rng.normal(size=(2, 2, 2)))
    graph.add_factor(("s", "t"), rng.normal(size=(3, 1)))
    graph.add_factor(("q",), [0.5, -0.5])
    cg = graph.compile()
    assert cg.n_components == 4
    assert sorted(map(sorted, graph.connected_components())) == sorted(
        [["a", "b", "c"], ["p", "q", "r"], ["lonely"], ["s", "t"]]
    )
    bf = assert_exact(graph, betas=(0.5, 2.0))

    # log Z and min energy add over the components, each one brute-forced on its own
    parts = []
    for names, factors in [
        (["a", "b", "c"], [0, 1]),
        (["p", "q", "r"], [2, 4]),
        (["lonely"], []),
        (["s", "t"], [3]),
    ]:
        part = fg.FactorGraph()
        part.add_variables(names, graph.n_states[graph.index_of(names)])
        for f in factors:
            part.add_factor(graph.factor_scope(f), graph.factor_energies(f))
        parts.append(BruteForce(part))
    result = fg.sum_product(graph, beta=0.5)
    assert result.log_partition == approx(sum(p.log_z(0.5) for p in parts))
    assert fg.min_sum(graph).energy == approx(sum(p.min_energy for p in parts))
    assert bf.min_energy == approx(sum(p.min_energy for p in parts))


def test_disconnected_loopy_components_bethe_adds():
    """The Bethe free energy of a graph is the sum over its connected components (the
    flooding schedule runs on each component independently)."""
    rng = np.random.default_rng(1)

    def ring(graph, names):
        graph.add_variables(names, 2)
        for a, b in zip(names, names[1:] + names[:1]):
            graph.add_factor((a, b), rng.normal(size=(2, 2)))

    whole = fg.FactorGraph()
    ring(whole, ["a", "b", "c"])
    ring(whole, ["d", "e", "f", "g"])
    first, second = fg.FactorGraph(), fg.FactorGraph()
    for f in range(3):
        if f == 0:
            first.add_variables(["a", "b", "c"], 2)
        first.add_factor(whole.factor_scope(f), whole.factor_energies(f))
    second.add_variables(["d", "e", "f", "g"], 2)
    for f in range(3, 7):
        second.add_factor(whole.factor_scope(f), whole.factor_energies(f))
    options = dict(beta=1.0, schedule="parallel", max_iter=500, tol=1e-13)
    total = fg.belief_propagation(whole, **options)
    parts = [fg.belief_propagation(g, **options) for g in (first, second)]
    assert total.converged
    assert total.log_partition == approx(sum(p.log_partition for p in parts), atol=1e-10)


def test_single_variable_without_factors():
    graph = fg.FactorGraph()
    graph.add_variable("x", 5)
    for beta in (0.1, 1.0, 7.0):
        result = fg.sum_product(graph, beta=beta)
        np.testing.assert_allclose(result.belief("x"), np.full(5, 0.2), atol=1e-15)
        assert result.log_partition == approx(math.log(5))
        assert result.free_energy == approx(-math.log(5) / beta)
    result = fg.min_sum(graph)
    assert result.energy == 0.0
    np.testing.assert_array_equal(result.belief("x"), np.zeros(5))
    assert result.state("x") == 0  # documented: ties go to the lowest state index


def test_empty_graph():
    graph = fg.FactorGraph()
    result = fg.sum_product(graph, beta=2.0)
    assert result.log_partition == 0.0 and result.free_energy == 0.0
    assert fg.min_sum(graph).energy == 0.0
    assert fg.min_sum(graph).assignment.shape == (0,)


def test_variables_with_one_state():
    rng = np.random.default_rng(2)
    graph = fg.FactorGraph()
    graph.add_variables(["u", "v", "w", "x"], [1, 3, 1, 2])
    graph.add_factor(("u", "v"), rng.normal(size=(1, 3)))
    graph.add_factor(("v", "w", "x"), rng.normal(size=(3, 1, 2)))
    graph.add_factor(("w",), [0.25])
    assert_exact(graph, betas=(0.5, 3.0))

    only_ones = fg.FactorGraph()
    only_ones.add_variables(["a", "b", "c"], 1)
    only_ones.add_factor(("a", "b"), [[1.5]])
    only_ones.add_factor(("c", "b"), [[-0.25]])
    only_ones.add_factor(("a", "c"), [[2.0]])  # a loop: nothing to approximate though
    result = fg.sum_product(only_ones, beta=2.0)
    assert result.log_partition == approx(-2.0 * 3.25)
    assert fg.min_sum(only_ones).energy == approx(3.25)
    np.testing.assert_array_equal(fg.min_sum(only_ones).assignment, [0, 0, 0])


def test_constant_factors_shift_energy_free_energy_and_log_z():
    rng = np.random.default_rng(3)
    base, _, _ = random_chain_graph(rng, [2, 3, 2])
    bf = BruteForce(base)
    shifted, _, _ = random_chain_graph(np.random.default_rng(3), [2, 3, 2])
    shifted.add_factor((), 4.0)
    shifted.add_factor((), -1.5)
    c = 2.5
    beta = 0.7
    r0, r1 = fg.sum_product(base, beta=beta), fg.sum_product(shifted, beta=beta)
    assert r1.log_partition == approx(bf.log_z(beta) - beta * c)
    assert r1.free_energy == approx(bf.free_energy(beta) + c)
    for p0, p1 in zip(r0.marginals, r1.marginals):
        np.testing.assert_allclose(p1, p0, atol=1e-12)
    assert r1.factor_belief(shifted.n_factors - 1) == approx(1.0)
    m1 = fg.min_sum(shifted)
    assert m1.energy == approx(bf.min_energy + c)
    for got, want in zip(m1.min_marginals, bf.min_marginals()):
        np.testing.assert_allclose(got, want + c, atol=ATOL)
    # only constants
    consts = fg.FactorGraph()
    consts.add_factor((), 3.0)
    assert fg.min_sum(consts).energy == 3.0
    assert fg.sum_product(consts, beta=2.0).log_partition == approx(-6.0)


def test_constant_factor_shifts_bethe_free_energy_on_loopy_graph():
    rng = np.random.default_rng(4)
    graph = fg.FactorGraph()
    graph.add_variables(range(4), 2)
    for i in range(4):
        graph.add_factor((i, (i + 1) % 4), rng.normal(size=(2, 2)))
    before = fg.sum_product(graph, beta=1.0)
    graph.add_factor((), 10.0)
    after = fg.sum_product(graph, beta=1.0)
    assert before.converged and after.converged
    assert after.free_energy == approx(before.free_energy + 10.0, atol=1e-8)


# --------------------------------------------------------------------------- ties
def test_tie_in_a_single_pairwise_factor():
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor(("a", "b"), [[0.0, 1.0], [1.0, 0.0]])
    for schedule in ("tree", "parallel", "sequential"):
        result = fg.min_sum(graph, schedule=schedule)
        assert tuple(result.assignment.tolist()) in {(0, 0), (1, 1)}
        # documented: ties go to the lowest state index
        assert tuple(result.assignment.tolist()) == (0, 0)
        assert result.energy == 0.0
        np.testing.assert_array_equal(result.belief("a"), [0.0, 0.0])
    result = fg.sum_product(graph, beta=1.0)
    np.testing.assert_allclose(result.belief("b"), [0.5, 0.5], atol=1e-15)


@pytest.mark.parametrize("schedule", ["tree", "parallel", "sequential"])
def test_xor_chain_with_two_optimal_assignments(schedule):
    """x0 - x1 - ... - x7 with 'equal' and 'different' pairwise preferences: exactly two
    minimizers (one the flip of the other); every variable is tied in its min-marginal, so
    decoding each variable independently would mix the two."""
    same = [[0.0, 1.0], [1.0, 0.0]]
    diff = [[1.0, 0.0], [0.0, 1.0]]
    names = [f"x{i}" for i in range(8)]
    graph = fg.FactorGraph()
    graph.add_variables(names, 2)
    pattern = [diff, same, diff, diff, same, diff, same]
    for i, table in enumerate(pattern):
        # alternate the scope order so both table orientations are used
        scope = (names[i], names[i + 1]) if i % 2 else (names[i + 1], names[i])
        graph.add_factor(scope, table)
    bf = BruteForce(graph)
    assert len(bf.minimizers()) == 2
    result = fg.min_sum(graph, schedule=schedule)
    assert tuple(result.assignment.tolist()) in bf.minimizers()
    assert result.energy == 0.0
    for mm in result.min_marginals:
        np.testing.assert_array_equal(mm, [0.0, 0.0])


def test_parity_factors_with_many_ties():
    """3-ary XOR factors (energy 0 on even parity, 1 on odd) in a chain: 2^(n-k) minimizers."""
    parity = np.array([[[(a + b + c) % 2 for c in range(2)] for b in range(2)] for a in range(2)],
                      dtype=float)
    graph = fg.FactorGraph()
    graph.add_variables(range(7), 2)
    graph.add_factor((0, 1, 2), parity)
    graph.add_factor((2, 3, 4), parity)
    graph.add_factor((4, 5, 6), parity)
    bf = BruteForce(graph)
    assert len(bf.minimizers()) == 16
    for schedule in ("tree", "sequential"):
        result = fg.min_sum(graph, schedule=schedule)
        assert tuple(result.assignment.tolist()) in bf.minimizers()
    assert_exact(graph, betas=(1.0,))


def test_ties_on_a_cycle_decode_to_a_true_minimizer():
    """A ring of 'equal' factors: BP's min-marginals are all tied; decoding with clamping
    must still produce one of the two consistent assignments."""
    graph = fg.FactorGraph()
    graph.add_variables(range(6), 2)
    for i in range(6):
        graph.add_factor((i, (i + 1) % 6), [[0.0, 1.0], [1.0, 0.0]])
    for schedule in ("parallel", "sequential"):
        result = fg.min_sum(graph, schedule=schedule)
        assert tuple(result.assignment.tolist()) in {(0,) * 6, (1,) * 6}
        assert result.energy == 0.0


# --------------------------------------------------------------------------- hard constraints
def test_hard_constraints_on_a_tree_never_nan():
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "c", "d"], [3, 2, 3, 2])
    graph.add_factor(("a", "b"), [[inf, 0.5], [1.0, inf], [inf, inf]])
    graph.add_factor(("b", "c", "d"), np.where(np.arange(12).reshape(2, 3, 2) % 3 == 0, inf,
                                               np.linspace(-1, 1, 12).reshape(2, 3, 2)))
    graph.add_factor(("c",), [0.0, inf, 2.0])
    bf = assert_exact(graph, betas=(0.5, 1.0, 3.0))
    for beta in (math.inf, 1.0):
        result = fg.belief_propagation(graph, beta=beta)
        for f in range(graph.n_factors):
            belief = result.factor_belief(f)
            table = np.asarray(graph.factor_energies(f))
            if beta == math.inf:
                np.testing.assert_allclose(belief, bf.factor_min_marginals(f), atol=ATOL)
            else:
                # forbidden entries have probability exactly 0
                assert (belief[np.isinf(table)] == 0.0).all()
                np.testing.assert_allclose(belief, bf.factor_marginals(f, beta), atol=ATOL)


def test_infeasible_tree_reports_infinite_free_energy():
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "c"], 2)
    graph.add_factor(("a", "b"), [[0.0, inf], [inf, 0.0]])  # a == b
    graph.add_factor(("b", "c"), [[0.0, inf], [inf, 0.0]])  # b == c
    graph.add_factor(("a",), [0.0, inf])  # a = 0
    graph.add_factor(("c",), [inf, 0.0])  # c = 1
    assert not BruteForce(graph).feasible
    for schedule in ("tree", "parallel", "sequential"):
        for beta in (0.5, 1.0, 1e3):
            result = fg.sum_product(graph, beta=beta, schedule=schedule)
            assert_no_nan(result)
            assert result.free_energy == math.inf
            assert result.log_partition == -math.inf
            for p in result.marginals:
                assert np.isfinite(p).all()
        result = fg.min_sum(graph, schedule=schedule)
        assert_no_nan(result)
        assert result.energy == math.inf and result.free_energy == math.inf
        for mm in result.min_marginals:
            np.testing.assert_array_equal(mm, [inf, inf])


def test_infeasible_constant_factor():
    """Engine bug (regression in 5c46d2c): with an infeasible constant (+inf, empty-scope)
    factor on a forest, min-sum reports min-marginals and factor min-marginals of 0 instead
    of +inf. Constants send no messages, so the beliefs stay finite, and
    ``belief_propagation`` now shifts by 0 instead of by ``energy`` when the decoded energy
    is +inf."""
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor(("a", "b"), [[0.0, 1.0], [2.0, 3.0]])
    graph.add_factor((), math.inf)
    result = fg.sum_product(graph, beta=1.0)
    assert_no_nan(result)
    assert result.free_energy == math.inf and result.log_partition == -math.inf
    result = fg.min_sum(graph)
    assert_no_nan(result)
    assert result.energy == math.inf and result.free_energy == math.inf
    # documented (exact on forests): the lowest energy of any configuration with y_i = x,
    # which is +inf for every state of an infeasible model
    for mm in result.min_marginals:
        np.testing.assert_array_equal(mm, [math.inf, math.inf])
    np.testing.assert_array_equal(result.factor_belief(0), np.full((2, 2), math.inf))


def test_infeasible_component_makes_every_min_marginal_infinite():
    """Engine bug (regression in 5c46d2c, same cause as test_infeasible_constant_factor):
    one component of a forest is infeasible, so every configuration of the whole model has
    energy +inf and every min-marginal is +inf (documented as exact on forests). The
    feasible component's min-marginals come out finite (shifted by 0, not by the +inf
    energy); so does a constant factor's min-marginal."""
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "c"], 2)
    graph.add_factor(("a", "b"), [[0.0, inf], [inf, 0.0]])  # a == b
    graph.add_factor(("a",), [0.0, inf])  # a = 0
    graph.add_factor(("b",), [inf, 0.0])  # b = 1: component {a, b} is infeasible
    graph.add_factor(("c",), [1.0, 2.0])  # component {c} is fine
    graph.add_factor((), 0.5)
    bf = BruteForce(graph)
    assert not bf.feasible
    result = fg.min_sum(graph)
    assert result.energy == inf
    for i, mm in enumerate(result.min_marginals):
        np.testing.assert_array_equal(mm, bf.min_marginals()[i], err_msg=f"variable {i}")
    for f in range(graph.n_factors):
        np.testing.assert_array_equal(result.factor_belief(f), bf.factor_min_marginals(f),
                                      err_msg=f"factor {f}")


def test_impossible_evidence_raises_before_iterating(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("belief propagation ran despite impossible evidence")

    for name in ("flood_sweeps", "factor_sweep", "flood_unary", "flood_dense_min_sum",
                 "run_two_pass"):
        monkeypatch.setattr(kernels, name, must_not_run)
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "c"], [2, 3, 2])
    graph.add_factor(("a", "b"), [[0.0, inf, 1.0], [0.0, 0.0, 0.0]])
    graph.add_factor(("b", "c"), [[inf, inf], [0.0, 1.0], [inf, inf]], name="bc")
    with pytest.raises(fg.EvidenceError, match=r"factor 1.*\('b', 'c'\)"):
        fg.min_sum(graph, evidence={"b": 2})
    with pytest.raises(fg.EvidenceError, match=r"factor 0"):
        fg.sum_product(graph, evidence={"a": 0, "b": 1})
    with pytest.raises(fg.EvidenceError, match="impossible evidence"):
        fg.sum_product(graph, evidence={"b": 0}, schedule="parallel")


def test_impossible_evidence_after_an_infeasible_factor():
    """Documented: EvidenceError for evidence that leaves some factor with only +inf
    energies. Engine bug: ``first_infeasible_factor`` returns the first factor that is
    infeasible for any reason; when that one is +inf everywhere on its own, the later
    factor that the evidence contradicts is never checked and no error is raised."""
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor((), inf)  # infeasible by itself, not because of the evidence
    graph.add_factor(("a", "b"), [[inf, 0.0], [inf, 0.0]])
    with pytest.raises(fg.EvidenceError, match="impossible evidence"):
        fg.min_sum(graph, evidence={"b": 0})


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_evidence_contradicted_only_through_propagation(beta):
    """Evidence a=1 with a == b and b == 0: every single factor allows it (no EvidenceError
    is due), but the conditioned model is infeasible. The result must keep the observed
    state (documented: observed variables "stay in the result with their observed state")
    and so report energy +inf. (Regression test: ``decode`` used to take state 0 when every
    conditional score was +inf, returning a=0 with a finite energy 0.0.)"""
    inf = math.inf
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor(("a", "b"), [[0.0, inf], [inf, 0.0]])  # a == b
    graph.add_factor(("b",), [0.0, inf])  # b == 0
    assert not BruteForce(graph, {"a": 1}).feasible
    result = fg.belief_propagation(graph, beta=beta, evidence={"a": 1})
    assert_no_nan(result)
    assert result.free_energy == math.inf
    if beta != math.inf:
        assert result.log_partition == -math.inf
    assert result.state("a") == 1
    assert result.energy == math.inf


def test_evidence_that_breaks_every_cycle_makes_loopy_bp_exact():
    """Clamping one variable of a ring turns it into a chain: BP (any schedule) is then exact
    for the conditioned model."""
    rng = np.random.default_rng(5)
    graph = fg.FactorGraph()
    graph.add_variables(range(5), [2, 3, 2, 3, 2])
    for i in range(5):
        j = (i + 1) % 5
        graph.add_factor((i, j), rng.normal(size=(graph.n_states[i], graph.n_states[j])))
    graph.add_factor((1, 2, 3), rng.normal(size=(3, 2, 3)) + np.where(
        rng.random((3, 2, 3)) < 0.2, np.inf, 0.0))
    evidence = {0: 1, 2: 0}
    bf = BruteForce(graph, evidence)
    for schedule in ("parallel", "sequential"):
        result = fg.sum_product(graph, beta=1.0, evidence=evidence, schedule=schedule)
        assert result.converged
        assert result.log_partition == approx(bf.log_z(1.0), atol=1e-8)
        for got, want in zip(result.marginals, bf.marginals(1.0)):
            np.testing.assert_allclose(got, want, atol=1e-8)
        result = fg.min_sum(graph, evidence=evidence, schedule=schedule)
        assert result.energy == approx(bf.min_energy)
        assert tuple(result.assignment.tolist()) in bf.minimizers()


def test_evidence_on_a_variable_without_factors():
    graph = fg.FactorGraph()
    graph.add_variables(["x", "y"], [3, 2])
    graph.add_factor(("y",), [1.0, 2.0])
    result = fg.sum_product(graph, beta=1.0, evidence={"x": 2})
    np.testing.assert_allclose(result.belief("x"), [0.0, 0.0, 1.0])
    assert result.log_partition == approx(logsumexp([-1.0, -2.0]))
    assert fg.min_sum(graph, evidence={"x": 2}).assignment.tolist() == [2, 0]


# --------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("beta", [1e-3, 1.0, 10.0, 1e3])
def test_large_energies_and_large_beta_do_not_overflow(beta):
    rng = np.random.default_rng(6)
    graph = fg.FactorGraph()
    graph.add_variables(range(6), [3, 2, 3, 2, 3, 2])
    for i, j in [(0, 1), (1, 2), (1, 3), (3, 4), (3, 5)]:
        table = rng.uniform(-1e6, 1e6, size=(graph.n_states[i], graph.n_states[j]))
        graph.add_factor((i, j), table)
    graph.add_factor((4,), [1e6, -1e6, 0.0])
    bf = BruteForce(graph)
    result = fg.sum_product(graph, beta=beta)
    assert_no_nan(result)
    assert result.log_partition == approx(bf.log_z(beta))
    assert result.free_energy == approx(bf.free_energy(beta))
    for got, want in zip(result.marginals, bf.marginals(beta)):
        np.testing.assert_allclose(got, want, atol=ATOL)
    result = fg.min_sum(graph)
    assert result.energy == approx(bf.min_energy)


def test_large_energies_on_a_loopy_graph_stay_finite():
    rng = np.random.default_rng(7)
    graph = fg.FactorGraph()
    graph.add_variables(range(5), 3)
    for i in range(5):
        graph.add_factor((i, (i + 1) % 5), rng.uniform(-1e6, 1e6, size=(3, 3)))
    bf = BruteForce(graph)
    for beta in (1.0, 1e3):
        result = fg.belief_propagation(graph, beta=beta, damping=0.5, max_iter=500, warn=False)
        assert_no_nan(result)
        assert np.isfinite(result.free_energy)
        for p in result.marginals:
            assert np.isfinite(p).all() and p.sum() == approx(1.0)
    result = fg.min_sum(graph, warn=False)
    assert result.energy >= bf.min_energy - 1e-6
    assert result.energy == approx(bf.model.energy(tuple(result.assignment.tolist())))


def test_500_states_per_variable():
    rng = np.random.default_rng(8)
    graph, unaries, pairwise = random_chain_graph(rng, [500, 500, 500, 7], scale=3.0)
    result = fg.min_sum(graph)
    assert result.energy == approx(chain_viterbi(unaries, pairwise))
    for got, want in zip(result.min_marginals, chain_min_marginals(unaries, pairwise)):
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
    for beta in (0.5, 2.0):
        result = fg.sum_product(graph, beta=beta)
        assert result.log_partition == approx(chain_log_z(unaries, pairwise, beta))
        for got, want in zip(result.marginals, chain_marginals(unaries, pairwise, beta)):
            np.testing.assert_allclose(got, want, atol=ATOL)


def test_chain_of_100000_variables():
    rng = np.random.default_rng(9)
    n, k = 100_000, 3
    unaries = rng.uniform(-1.0, 1.0, size=(n, k))
    pairwise = rng.uniform(-1.0, 1.0, size=(n - 1, k, k))
    started = time.perf_counter()
    graph = fg.FactorGraph()
    graph.add_variables(range(n), k)
    graph.add_factors(np.arange(n)[:, None], unaries, by_index=True)
    graph.add_factors(np.stack([np.arange(n - 1), np.arange(1, n)], axis=1), pairwise,
                      by_index=True)
    cg = graph.compile()
    assert cg.is_forest and cg.n_components == 1
    result = fg.min_sum(graph)
    assert result.energy == approx(chain_viterbi(unaries, pairwise), rel=1e-11)
    y = result.assignment
    own_energy = unaries[np.arange(n), y].sum() + pairwise[np.arange(n - 1), y[:-1], y[1:]].sum()
    assert result.energy == approx(own_energy, rel=1e-11)
    for beta in (0.3, 1.0):
        result = fg.sum_product(graph, beta=beta)
        assert_no_nan(result)
        assert result.log_partition == approx(chain_log_z(unaries, pairwise, beta), rel=1e-11)
        # marginals at both ends and in the middle (no underflow along the chain)
        for i in (0, n // 2, n - 1):
            assert result.marginals[i].sum() == approx(1.0)
            assert (result.marginals[i] > 0).all()
    print(f"chain of {n} variables: build + 3 inference runs in "
          f"{time.perf_counter() - started:.2f} s")


def test_star_of_2000_pairwise_factors():
    """A centre variable with 2000 leaves (centre listed last, so breadth-first search starts
    at a leaf). Closed form: condition on the centre state c, the leaves are independent."""
    rng = np.random.default_rng(10)
    n_leaves, k_centre, k_leaf = 2000, 3, 2
    tables = rng.uniform(-1.0, 1.0, size=(n_leaves, k_centre, k_leaf))
    graph = fg.FactorGraph()
    graph.add_variables([("leaf", i) for i in range(n_leaves)], k_leaf)
    centre = graph.add_variable("centre", k_centre)
    # half the factors list the centre first, half list it second
    half = n_leaves // 2
    leaves = np.arange(n_leaves)
    graph.add_factors(np.stack([np.full(half, centre), leaves[:half]], 1), tables[:half],
                      by_index=True)
    graph.add_factors(np.stack([leaves[half:], np.full(n_leaves - half, centre)], 1),
                      tables[half:].transpose(0, 2, 1), by_index=True)
    assert graph.compile().is_forest

    per_centre = tables.min(axis=2).sum(axis=0)  # min energy given the centre state
    result = fg.min_sum(graph)
    assert result.energy == approx(per_centre.min())
    np.testing.assert_allclose(result.belief("centre"), per_centre, atol=ATOL, rtol=RTOL)
    c = int(np.argmin(per_centre))
    leaf_best = tables[:, c, :].argmin(axis=1)
    assert result.state("centre") == c
    np.testing.assert_array_equal(result.assignment[:n_leaves], leaf_best)
    for beta in (0.5, 2.0):
        result = fg.sum_product(graph, beta=beta)
        log_z_given = np.array([
            sum(logsumexp(-beta * tables[i, cc]) for i in range(n_leaves))
            for cc in range(k_centre)
        ])
        log_z = logsumexp(log_z_given)
        assert result.log_partition == approx(log_z)
        np.testing.assert_allclose(result.belief("centre"), np.exp(log_z_given - log_z),
                                   atol=ATOL)
        # a leaf's marginal mixes its conditionals by the centre's marginal
        p_centre = np.exp(log_z_given - log_z)
        cond = np.exp(-beta * tables[7] - np.array([logsumexp(-beta * t) for t in tables[7]])[
            :, None])
        np.testing.assert_allclose(result.belief(("leaf", 7)), p_centre @ cond, atol=ATOL)


# --------------------------------------------------------------------------- iterations
def _loopy_grid(rng, side=4, k=2, coupling=0.3):
    graph = fg.FactorGraph()
    names = [(r, c) for r in range(side) for c in range(side)]
    graph.add_variables(names, k)
    for r, c in names:
        graph.add_factor(((r, c),), rng.normal(size=k))
        if r + 1 < side:
            graph.add_factor(((r, c), (r + 1, c)), coupling * rng.normal(size=(k, k)))
        if c + 1 < side:
            graph.add_factor(((r, c), (r, c + 1)), coupling * rng.normal(size=(k, k)))
    return graph


@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_warm_start_from_converged_messages(schedule):
    graph = _loopy_grid(np.random.default_rng(11))
    first = fg.sum_product(graph, beta=1.0, method="bp", schedule=schedule, tol=1e-10)
    assert first.converged and first.n_iter > 2
    again = fg.sum_product(graph, beta=1.0, method="bp", schedule=schedule, tol=1e-10,
                           init_messages=first.messages)
    assert again.converged and again.n_iter == 1
    assert again.log_partition == approx(first.log_partition, atol=1e-8)
    for p, q in zip(again.marginals, first.marginals):
        np.testing.assert_allclose(p, q, atol=1e-8)
    # the messages are the same fixed point, checked by the plain update
    plain = PlainBP(graph, beta=1.0)
    plain.set_flat(again.messages)
    assert plain.sweep() < 1e-8
    # and init_messages was copied, not written into
    assert first.messages is not again.messages


def test_non_convergence_warns_and_reports_converged_false():
    """A frustrated ring (an odd cycle of 'different' factors) with max_iter=2."""
    graph = fg.FactorGraph()
    graph.add_variables(range(5), 2)
    for i in range(5):
        graph.add_factor((i, (i + 1) % 5), [[1.0, -1.0], [-1.0, 1.0]])
    graph.add_factor((0,), [0.0, 0.3])
    for beta in (math.inf, 1.0):
        with pytest.warns(fg.ConvergenceWarning, match="did not converge in 2 iterations"):
            result = fg.belief_propagation(graph, beta=beta, method="bp", max_iter=2)
        assert result.converged is False
        assert result.exact is False
        assert result.n_iter == 2 and len(result.residuals) == 2
        assert result.residuals[-1] > 1e-9
        assert_no_nan(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fg.ConvergenceWarning)
        result = fg.belief_propagation(graph, method="bp", beta=1.0, max_iter=2, warn=False)
    assert result.converged is False
