"""Belief propagation is exact on trees and forests: property tests against brute force.

Every quantity the package reports (minimum energy, decoded assignment, absolute
min-marginals, factor min-marginals, marginals, factor marginals, log Z, free energy) is
compared with brute-force enumeration in :mod:`reference`, for the exact two-pass schedule
and for the iterative parallel and sequential schedules (which must reach the same values).
"""

import math

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from reference import BruteForce, Model
from strategies import describe, evidence_for, trees

import factorgraph_ebm as fg

ATOL = 1e-9
RTOL = 1e-12
BETAS = (0.5, 1.0, 3.0)


def assert_close(actual, expected, atol=ATOL, rtol=RTOL, what=""):
    """allclose that also demands +inf exactly where the reference has +inf, and no NaN."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert not np.isnan(actual).any(), f"{what}: NaN in {actual}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def assert_no_nan(result):
    for name in ("variable_beliefs", "factor_beliefs", "messages", "residuals"):
        value = getattr(result, name)
        assert not np.isnan(value).any(), f"NaN in result.{name}"
    assert not math.isnan(result.energy)
    assert not math.isnan(result.free_energy)
    if result.log_partition is not None:
        assert not math.isnan(result.log_partition)


def check_min_sum(graph, result, bf, model=None):
    """Compare a min-sum result with brute force (``bf`` may include evidence)."""
    model = model or bf.model
    assert_no_nan(result)
    assert result.log_partition is None
    assert result.marginals is None
    if bf.feasible:
        assert result.energy == pytest.approx(bf.min_energy, abs=ATOL, rel=RTOL)
        y = tuple(int(s) for s in result.assignment)
        assert y in bf.minimizers(), f"decoded {y} is not a minimizer"
        # the reported energy is E(assignment), evaluated independently
        assert result.energy == pytest.approx(model.energy(y), abs=ATOL, rel=RTOL)
        assert result.free_energy == pytest.approx(bf.min_energy, abs=ATOL, rel=RTOL)
    else:
        assert result.energy == math.inf
        assert result.free_energy == math.inf
    expected = bf.min_marginals()
    assert len(result.min_marginals) == len(expected)
    for i, (got, want) in enumerate(zip(result.min_marginals, expected)):
        assert_close(got, want, what=f"min-marginal of variable {i}")
    for f in range(graph.n_factors):
        assert_close(
            result.factor_belief(f), bf.factor_min_marginals(f), what=f"factor {f} min-marginal"
        )


def check_sum_product(graph, result, bf, beta):
    assert_no_nan(result)
    assert result.beta == pytest.approx(beta)
    assert result.min_marginals is None
    log_z = bf.log_z(beta)
    if not bf.feasible:
        assert result.log_partition == -math.inf
        assert result.free_energy == math.inf
        return
    assert result.log_partition == pytest.approx(log_z, abs=ATOL, rel=RTOL)
    assert result.free_energy == pytest.approx(-log_z / beta, abs=ATOL, rel=RTOL)
    for i, (got, want) in enumerate(zip(result.marginals, bf.marginals(beta))):
        assert_close(got, want, what=f"marginal of variable {i}")
    for f in range(graph.n_factors):
        assert_close(
            result.factor_belief(f), bf.factor_marginals(f, beta), what=f"factor {f} marginal"
        )


@given(trees())
def test_min_sum_exact_on_forests(graph):
    note(describe(graph))
    bf = BruteForce(graph)
    result = fg.min_sum(graph)
    assert graph.compile().is_forest
    assert result.schedule == "tree"
    assert result.converged and result.exact
    # one flooding sweep from the two-pass fixed point changes nothing
    assert result.n_iter == 1 and result.residuals.shape == (1,)
    assert result.residuals[0] <= 1e-9
    check_min_sum(graph, result, bf)


@given(trees())
def test_sum_product_exact_on_forests(graph):
    note(describe(graph))
    bf = BruteForce(graph)
    for beta in BETAS:
        result = fg.sum_product(graph, beta=beta)
        assert result.schedule == "tree" and result.exact
        assert result.residuals.shape == (1,) and result.residuals[0] <= 1e-9
        check_sum_product(graph, result, bf, beta)


@given(trees(), st.sampled_from(["parallel", "sequential"]), st.sampled_from([0.0, 0.0, 0.5]))
def test_iterative_schedules_exact_on_forests(graph, schedule, damping):
    """Flooding and sequential BP (damped or not) converge on a forest to the same exact
    fixed point."""
    note(describe(graph))
    bf = BruteForce(graph)
    result = fg.min_sum(graph, schedule=schedule, max_iter=500, damping=damping, tol=1e-12)
    assert result.converged and result.schedule == schedule
    assert result.exact
    check_min_sum(graph, result, bf)
    result = fg.sum_product(graph, beta=1.0, schedule=schedule, max_iter=500, damping=damping,
                            tol=1e-12)
    assert result.converged and result.exact
    check_sum_product(graph, result, bf, 1.0)


@given(trees(), st.sampled_from(["tree", "parallel", "sequential"]), st.integers(0, 2**32 - 1))
def test_warm_start_from_arbitrary_messages_is_still_exact_on_forests(graph, schedule, seed):
    """On a forest the fixed point is unique: any finite ``init_messages`` leads there."""
    note(describe(graph))
    bf = BruteForce(graph)
    n = graph.compile().n_message_entries
    init = np.random.default_rng(seed).uniform(0.0, 5.0, size=n)
    result = fg.min_sum(graph, schedule=schedule, max_iter=200, init_messages=init)
    assert result.converged
    check_min_sum(graph, result, bf)
    result = fg.sum_product(graph, beta=1.0, schedule=schedule, max_iter=200,
                            init_messages=init)
    assert result.converged
    check_sum_product(graph, result, bf, 1.0)


@given(trees(), st.sampled_from([0.5, 1.0, 3.0]))
def test_sum_product_decoding_is_sequentially_most_probable(graph, beta):
    """Documented: with beta < inf, each variable in turn (breadth-first order of the
    compiled graph) takes its most probable state given the states chosen before it."""
    note(describe(graph))
    bf = BruteForce(graph)
    result = fg.sum_product(graph, beta=beta)
    if not bf.feasible:
        return
    assert math.isfinite(result.energy)
    assert result.energy == pytest.approx(bf.model.energy(tuple(result.assignment)), abs=ATOL)
    p = bf.probabilities(beta)
    keep = np.ones(len(bf.configs), dtype=bool)
    for i in graph.compile().var_order:
        conditional = np.bincount(bf.configs[keep, i], weights=p[keep],
                                  minlength=graph.n_states[i])
        chosen = result.assignment[i]
        assert conditional[chosen] >= conditional.max() * (1 - 1e-9), (
            f"variable {i}: chose {chosen}, conditional {conditional / conditional.sum()}"
        )
        keep &= bf.configs[:, i] == chosen


def _evidence_is_impossible(model, evidence):
    """The documented EvidenceError condition: some factor with a finite entry has no
    finite entry consistent with the evidence."""
    for scope, table in zip(model.scopes, model.tables):
        if not np.isfinite(table).any():
            continue
        allowed = table.copy()
        for axis, v in enumerate(scope):
            shape = [1] * len(scope)
            shape[axis] = -1
            allowed = allowed + model.unary[v].reshape(shape)
        if not np.isfinite(allowed).any():
            return True
    return False


@given(st.data())
def test_evidence_on_forests_matches_conditioned_brute_force(data):
    graph = data.draw(trees(inf_levels=(0.0, 0.2, 0.4)))
    evidence = data.draw(evidence_for(graph))
    schedule = data.draw(st.sampled_from(["auto", "parallel", "sequential"]))
    options = dict(evidence=evidence, schedule=schedule, max_iter=100)
    note(describe(graph))
    note(f"evidence: {evidence}")
    bf = BruteForce(graph, evidence)
    impossible = _evidence_is_impossible(bf.model, evidence)
    event(f"impossible={impossible}, feasible={bf.feasible}")
    if impossible:
        with pytest.raises(fg.EvidenceError, match="impossible evidence"):
            fg.min_sum(graph, **options)
        return
    result = fg.min_sum(graph, **options)
    assert result.converged
    for name, state in evidence.items():
        assert result.state(name) == state
    check_min_sum(graph, result, bf)
    result = fg.sum_product(graph, beta=1.0, **options)
    assert result.converged
    check_sum_product(graph, result, bf, 1.0)
    if bf.feasible:
        for name, state in evidence.items():
            expected = np.zeros(len(result.belief(name)))
            expected[state] = 1.0
            assert_close(result.belief(name), expected, what=f"marginal of observed {name!r}")


@given(trees(allow_inf=False))
def test_energy_override_equals_rebuilt_graph(graph):
    """``energies=theta`` gives the same exact answers as a graph built with theta."""
    note(describe(graph))
    cg = graph.compile()
    rng = np.random.default_rng(graph.n_factors)
    theta = rng.normal(size=cg.n_energy_entries)
    rebuilt = fg.FactorGraph()
    rebuilt.add_variables(graph.variables, graph.n_states)
    for f in range(graph.n_factors):
        lo, hi = cg.table_offset[f], cg.table_offset[f + 1]
        shape = tuple(graph.n_states[graph.index_of(list(graph.factor_scope(f)))])
        rebuilt.add_factor(graph.factor_scope(f), theta[lo:hi].reshape(shape))
    bf = BruteForce(rebuilt)
    check_min_sum(graph, fg.min_sum(graph, energies=theta), bf)
    check_sum_product(graph, fg.sum_product(graph, beta=1.0, energies=theta), bf, 1.0)


def test_model_energy_reference_is_independent():
    """Sanity check of the reference itself on a hand-computed model."""
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], [2, 3])
    g.add_factor(("a", "b"), [[0.0, 1.0, 2.0], [3.0, 4.0, np.inf]])
    g.add_factor(("b",), [10.0, 20.0, 30.0])
    m = Model(g)
    assert m.energy((1, 1)) == 24.0
    assert m.energy((1, 2)) == math.inf
    bf = BruteForce(g)
    assert bf.min_energy == 10.0
    assert bf.minimizers() == {(0, 0)}
    assert bf.log_z(1.0) == pytest.approx(
        math.log(sum(math.exp(-e) for e in [10, 21, 32, 13, 24]))
    )
