"""Loopy belief propagation: bounds against brute force and differential checks of the
kernels against the plain NumPy message update of :mod:`reference`.

On a graph with cycles BP is approximate, so the exact checks are the ones that hold for any
graph: the decoded energy is the true energy of the decoded assignment and never below the
true minimum; at a converged fixed point the messages are a fixed point of the textbook
update; beliefs, marginals and the Bethe free energy follow from the messages by the
textbook formulas; and the flooding schedule follows the textbook flooding trajectory.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, event, given, note
from hypothesis import strategies as st
from reference import BruteForce, PlainBP
from strategies import describe, evidence_for, loopy_graphs

import factorgraph_ebm as fg

BETAS = (math.inf, 1.0, 0.5)


def run_quietly(graph, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.ConvergenceWarning)
        warnings.simplefilter("ignore", fg.NoFiniteAssignmentWarning)  # tested in test_exact
        return fg.belief_propagation(graph, method="bp", **options)


def assert_no_nan(result):
    for name in ("variable_beliefs", "factor_beliefs", "messages", "residuals"):
        assert not np.isnan(getattr(result, name)).any(), f"NaN in result.{name}"
    assert not math.isnan(result.energy)
    assert not math.isnan(result.free_energy)
    if result.log_partition is not None:
        assert not math.isnan(result.log_partition)


@given(loopy_graphs(), st.sampled_from([0.25, 1.0, 4.0]))
def test_exact_free_energy_bounds(graph, temperature):
    """Brute force: E_min - T ln(#configs) <= F_T <= E_min (reference sanity on loopy
    models), and the graph really has a cycle."""
    note(describe(graph))
    assert not graph.compile().is_forest
    assert not graph.is_forest()
    bf = BruteForce(graph)
    beta = 1.0 / temperature
    f = bf.free_energy(beta)
    if not bf.feasible:
        assert f == math.inf
        return
    n_configs = len(bf.configs)
    assert bf.min_energy - temperature * math.log(n_configs) - 1e-9 <= f <= bf.min_energy + 1e-9
    # and the feasible configurations alone give the same bound tighter
    n_feasible = int(np.isfinite(bf.energies).sum())
    assert f >= bf.min_energy - temperature * math.log(n_feasible) - 1e-9


@given(loopy_graphs(), st.sampled_from(["parallel", "sequential", "auto"]))
def test_min_sum_decoding_on_loopy_graphs(graph, schedule):
    note(describe(graph))
    bf = BruteForce(graph)
    result = run_quietly(graph, beta=math.inf, schedule=schedule, max_iter=50)
    assert_no_nan(result)
    assert result.schedule == ("sequential" if schedule == "auto" else schedule)
    assert not result.exact
    y = tuple(int(s) for s in result.assignment)
    assert result.energy == pytest.approx(bf.model.energy(y), abs=1e-9, rel=1e-12)
    assert result.energy == graph.energy(result.assignment)
    assert result.energy >= bf.min_energy - 1e-9
    if not bf.feasible:
        assert result.energy == math.inf
    # min-marginals are shifted so that their minimum is the decoded energy
    for mm in result.min_marginals:
        if np.isfinite(mm).any() and np.isfinite(result.energy):
            assert mm.min() == pytest.approx(result.energy, abs=1e-9)


@given(loopy_graphs(), st.sampled_from([1.0, 0.5, 2.0]))
def test_bethe_log_partition_finite_when_converged(graph, beta):
    note(describe(graph))
    bf = BruteForce(graph)
    result = run_quietly(graph, beta=beta, damping=0.5, max_iter=300)
    assert_no_nan(result)
    assert result.log_partition == pytest.approx(-beta * result.free_energy)
    event(f"converged={result.converged}, feasible={bf.feasible}")
    if result.converged and bf.feasible:
        assert math.isfinite(result.log_partition)
        assert math.isfinite(result.free_energy)
        for p in result.marginals:
            assert p.sum() == pytest.approx(1.0, abs=1e-9)
            assert (p >= 0).all()


def _flat_messages_equal(actual, expected, atol):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    assert not np.isnan(actual).any()
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], atol=atol, rtol=0)


@given(loopy_graphs(), st.sampled_from(BETAS), st.sampled_from(["parallel", "sequential"]))
def test_converged_messages_are_a_fixed_point_of_plain_update(graph, beta, schedule):
    """Differential check: after convergence, one textbook flooding update (plain NumPy)
    maps the package's factor-to-variable messages to themselves."""
    note(describe(graph))
    result = run_quietly(graph, beta=beta, schedule=schedule, max_iter=300, tol=1e-11)
    event(f"converged={result.converged}")
    if not result.converged:
        return
    plain = PlainBP(graph, beta=beta)
    plain.set_flat(result.messages)
    update = plain.factor_to_variable(plain.variable_to_factor())
    flat_update = np.concatenate([update[k] for k in plain.keys])
    _flat_messages_equal(flat_update, result.messages, atol=1e-8)


@given(
    loopy_graphs(max_variables=5),
    st.sampled_from(BETAS),
    st.integers(1, 6),
    st.sampled_from([0.0, 0.3]),
)
def test_parallel_schedule_follows_plain_flooding(graph, beta, n_iter, damping):
    """Differential check: the flooding schedule's messages after n sweeps (damped or not)
    equal those of the plain NumPy flooding update after n sweeps."""
    note(describe(graph))
    result = fg.belief_propagation(
        graph, beta=beta, method="bp", schedule="parallel", max_iter=n_iter, tol=0.0,
        damping=damping,
        warn=False,
    )
    plain = PlainBP(graph, beta=beta)
    changes = [plain.sweep(damping) for _ in range(n_iter)]
    _flat_messages_equal(result.messages, plain.flat(), atol=1e-9)
    # residuals are the largest message change of each sweep
    assert len(result.residuals) == result.n_iter
    np.testing.assert_allclose(result.residuals, changes[: result.n_iter], atol=1e-9, rtol=0)


@given(loopy_graphs(), st.sampled_from([1.0, 0.5]))
def test_beliefs_and_bethe_free_energy_follow_from_messages(graph, beta):
    """Differential check of the belief and Bethe free energy computation: from the
    package's final messages, the textbook formulas give the package's marginals, factor
    marginals and free energy (converged or not)."""
    note(describe(graph))
    result = run_quietly(graph, beta=beta, max_iter=7)
    plain = PlainBP(graph, beta=beta)
    plain.set_flat(result.messages)
    f = plain.bethe_free_energy()
    if f == math.inf:
        assert result.free_energy == math.inf
        assert result.log_partition == -math.inf
    else:
        assert result.free_energy == pytest.approx(f, abs=1e-9, rel=1e-12)
        assert result.log_partition == pytest.approx(-beta * f, abs=1e-9, rel=1e-12)
    for got, want in zip(result.marginals, plain.marginals()):
        np.testing.assert_allclose(got, want, atol=1e-12)
    for factor, want in enumerate(plain.factor_marginals()):
        np.testing.assert_allclose(result.factor_belief(factor), want, atol=1e-12)


@given(loopy_graphs(allow_inf=False), st.sampled_from(["parallel", "sequential"]))
def test_weak_coupling_bp_close_to_exact(graph, schedule):
    """With every energy scaled down 50-fold (weak coupling, no hard constraints), loopy BP
    at beta = 1 converges and is nearly exact: marginals and log Z within 0.05 of brute
    force."""
    note(describe(graph))
    cg = graph.compile()
    theta = np.asarray(cg.energies) * 0.02
    result = run_quietly(graph, beta=1.0, energies=theta, schedule=schedule, max_iter=200)
    assert result.converged
    scaled = fg.FactorGraph()
    scaled.add_variables(graph.variables, graph.n_states)
    for f in range(graph.n_factors):
        lo, hi = cg.table_offset[f], cg.table_offset[f + 1]
        scope = graph.factor_scope(f)
        shape = tuple(int(graph.n_states[graph.index_of(v)]) for v in scope)
        scaled.add_factor(scope, theta[lo:hi].reshape(shape))
    bf = BruteForce(scaled)
    assert result.log_partition == pytest.approx(bf.log_z(1.0), abs=0.05)
    for got, want in zip(result.marginals, bf.marginals(1.0)):
        np.testing.assert_allclose(got, want, atol=0.05)


@given(st.data())
def test_evidence_on_loopy_graphs(data):
    """Evidence on a loopy graph: impossible evidence is refused up front; otherwise the
    decoded assignment keeps the observed states, its energy is exact, no NaN anywhere,
    and the observed variables' marginals are one-hot."""
    graph = data.draw(loopy_graphs(inf_levels=(0.0, 0.2, 0.4)))
    evidence = data.draw(evidence_for(graph))
    beta = data.draw(st.sampled_from(BETAS))
    note(describe(graph))
    note(f"evidence: {evidence}, beta: {beta}")
    bf = BruteForce(graph, evidence)
    assume(all(np.isfinite(t).any() for t in bf.model.tables))  # see test_hard_cases.py
    if _evidence_is_impossible(bf.model):
        with pytest.raises(fg.EvidenceError, match="impossible evidence"):
            run_quietly(graph, beta=beta, evidence=evidence)
        return
    result = run_quietly(graph, beta=beta, evidence=evidence, max_iter=50)
    assert_no_nan(result)
    for name, state in evidence.items():
        assert result.state(name) == state
        if beta != math.inf and math.isfinite(result.free_energy):
            expected = np.zeros(len(result.belief(name)))
            expected[state] = 1.0
            np.testing.assert_array_equal(result.belief(name), expected)
    y = tuple(int(s) for s in result.assignment)
    assert result.energy == pytest.approx(bf.model.energy(y), abs=1e-9, rel=1e-12)
    assert result.energy >= bf.min_energy - 1e-9


def _evidence_is_impossible(model):
    """Some factor with a finite entry has no finite entry consistent with the evidence."""
    for scope, table in zip(model.scopes, model.tables):
        allowed = table.copy()
        for axis, v in enumerate(scope):
            shape = [1] * len(scope)
            shape[axis] = -1
            allowed = allowed + model.unary[v].reshape(shape)
        if np.isfinite(table).any() and not np.isfinite(allowed).any():
            return True
    return False
