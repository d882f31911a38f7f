"""The residual schedule (residual BP, factorgraph_ebm.messages.residual) against references.

- Forests: it converges to the exact answer, compared with brute force (min-sum: minimum
  energy, a minimizer, min-marginals; sum-product: log Z, marginals), from zero or random
  messages, damped or not, every factor kind and arity included.
- Loopy graphs: its converged messages are a fixed point of the textbook update
  (reference.PlainBP, plain NumPy), and on weakly coupled graphs (a unique fixed point)
  they equal the sequential schedule's converged messages to a tolerance.
- Determinism: the same results bit for bit on any number of threads and for any split of
  the iterations into chunks; the iteration budget and the callback work as documented.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st
from reference import BruteForce, PlainBP
from strategies import describe, loopy_graphs, trees
from test_bp_exact import check_min_sum, check_sum_product

import factorgraph_ebm as fe
from factorgraph_ebm.messages import schedules as S
from factorgraph_ebm.reduction import reduce_factors


def residual(graph, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fe.ConvergenceWarning)
        warnings.simplefilter("ignore", fe.NoFiniteAssignmentWarning)
        return fe.belief_propagation(graph, method="bp", schedule="residual", **options)


def bp_view(graph):
    """The graph BP runs on (repeated and nested scopes absorbed), for PlainBP."""
    reduction = reduce_factors(graph)
    return graph if reduction is None else reduction.graph


@given(trees(), st.sampled_from([0.0, 0.0, 0.5]))
def test_exact_on_forests(graph, damping):
    """On a forest the residual schedule converges to the exact fixed point: brute-force
    minimum, minimizer and min-marginals; log Z and marginals at beta = 1."""
    note(describe(graph))
    bf = BruteForce(graph)
    result = residual(graph, max_iter=500, tol=1e-12, damping=damping)
    assert result.converged and result.schedule == "residual" and result.exact
    check_min_sum(graph, result, bf)
    result = residual(graph, beta=1.0, max_iter=500, tol=1e-12, damping=damping)
    assert result.converged and result.exact
    check_sum_product(graph, result, bf, 1.0)


@given(trees(), st.integers(0, 2**32 - 1))
def test_exact_on_forests_from_random_messages(graph, seed):
    """The fixed point on a forest is unique: any finite start reaches it."""
    note(describe(graph))
    bf = BruteForce(graph)
    init = np.random.default_rng(seed).uniform(0.0, 5.0, graph.compile().n_message_entries)
    result = residual(graph, max_iter=500, tol=1e-12, init_messages=init)
    assert result.converged
    check_min_sum(graph, result, bf)


def structured_chain(rng, n=6, k=5, compact=False):
    """A chain of every pairwise kind (dense, Potts of both signs, truncated linear and
    quadratic) plus a ternary factor on distinct variables, unary terms on all: a forest."""
    g = fe.FactorGraph()
    g.add_variables(range(n + 2), k)
    g.add_factors(np.arange(n + 2)[:, None], rng.random((n + 2, k)) * 3, by_index=True)
    g.add_factors([[0, 1]], rng.random((1, k, k)), by_index=True)
    g.add_potts_factors([[1, 2]], 0.7, by_index=True, dense=not compact)
    g.add_potts_factors([[2, 3]], -0.4, by_index=True)
    g.add_truncated_linear_factors([[3, 4]], 0.5, 1.2, by_index=True, dense=not compact)
    g.add_truncated_quadratic_factors([[4, 5]], 0.3, 2.0, by_index=True, dense=not compact)
    g.add_factors([[5, 6, 7]], rng.random((1, k, k, k)), by_index=True)
    return g


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_structured_kinds_exact_on_a_chain(compact, beta):
    """Every structured message rule (the O(K) Potts, truncated linear and quadratic
    messages, compact tables) and an arity-3 factor, on a tree: exact against brute
    force."""
    graph = structured_chain(np.random.default_rng(3), compact=compact)
    bf = BruteForce(graph)
    result = residual(graph, beta=beta, max_iter=500, tol=1e-12)
    assert result.converged and result.exact
    if beta == math.inf:  # (compact factors have no belief table: check_min_sum's)
        assert result.energy == pytest.approx(bf.min_energy, abs=1e-9)
        assert tuple(int(s) for s in result.assignment) in bf.minimizers()
        for got, want in zip(result.min_marginals, bf.min_marginals()):
            np.testing.assert_allclose(got, want, atol=1e-9)
    else:
        assert result.log_partition == pytest.approx(bf.log_z(beta), abs=1e-9)
        for got, want in zip(result.marginals, bf.marginals(beta)):
            np.testing.assert_allclose(got, want, atol=1e-9)


@given(loopy_graphs(), st.sampled_from([math.inf, 1.0, 0.5]))
def test_converged_messages_are_a_fixed_point_of_plain_update(graph, beta):
    """Differential check: after convergence, one textbook flooding update (plain NumPy)
    maps the residual schedule's messages to themselves: they satisfy the BP equations."""
    graph = bp_view(graph)
    note(describe(graph))
    result = residual(graph, beta=beta, max_iter=300, tol=1e-11)
    event(f"converged={result.converged}")
    assert not np.isnan(result.messages).any()
    if not result.converged:
        return
    plain = PlainBP(graph, beta=beta)
    plain.set_flat(result.messages)
    update = plain.factor_to_variable(plain.variable_to_factor())
    want = np.concatenate([update[key] for key in plain.keys]) if plain.keys else np.zeros(0)
    np.testing.assert_array_equal(np.isinf(result.messages), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(result.messages[finite], want[finite], atol=1e-8, rtol=0)


@given(loopy_graphs(allow_inf=False), st.sampled_from([1.0, 0.5]))
def test_weak_coupling_same_fixed_point_as_sequential(graph, beta):
    """Sum-product with every energy scaled down 50-fold (weak coupling: a unique BP fixed
    point), the residual and the sequential schedules converge to the same messages and
    beliefs. (Min-sum is scale-invariant: scaling gives it no unique fixed point.)"""
    graph = bp_view(graph)
    note(describe(graph))
    theta = np.asarray(graph.compile().energies) * 0.02
    options = dict(beta=beta, energies=theta, max_iter=1000, tol=1e-12)
    got = residual(graph, **options)
    want = fe.belief_propagation(graph, method="bp", schedule="sequential", warn=False,
                                 **options)
    assert got.converged and want.converged
    np.testing.assert_allclose(got.messages, want.messages, atol=1e-9, rtol=0)
    np.testing.assert_allclose(got.variable_beliefs, want.variable_beliefs, atol=1e-9, rtol=0)
    assert got.free_energy == pytest.approx(want.free_energy, abs=1e-9)


def grid(rng, n=7, k=4, coupling=1.0):
    g = fe.FactorGraph()
    g.add_variables(range(n * n), k)
    g.add_factors(np.arange(n * n)[:, None], rng.random((n * n, k)), by_index=True)
    right = [(r * n + c, r * n + c + 1) for r in range(n) for c in range(n - 1)]
    down = [(r * n + c, (r + 1) * n + c) for r in range(n - 1) for c in range(n)]
    pairs = right + down
    g.add_factors(pairs, coupling * rng.random((len(pairs), k, k)), by_index=True)
    return g


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_same_results_on_any_number_of_threads(beta):
    """``threads`` (a flooding option) changes nothing for the residual schedule: the same
    messages, assignment and residuals, bit for bit."""
    graph = grid(np.random.default_rng(0))
    runs = [residual(graph, beta=beta, max_iter=7, tol=0.0, threads=n) for n in (1, 2)]
    np.testing.assert_array_equal(runs[0].messages, runs[1].messages)
    np.testing.assert_array_equal(runs[0].assignment, runs[1].assignment)
    np.testing.assert_array_equal(runs[0].residuals, runs[1].residuals)


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_chunks_do_not_change_the_results(beta):
    """Iterations split into run() calls of 1, 2 and 4 iterations, or done in one call,
    give the same messages and residuals bit for bit (the schedule keeps its candidates,
    residuals and heap between calls)."""
    graph = grid(np.random.default_rng(1))
    cg = graph.compile()
    temperature = 0.0 if beta == math.inf else 1.0 / beta
    outcomes = []
    for split in ([7], [1, 2, 4]):
        f2v = np.zeros(cg.n_message_entries)
        v2f = np.zeros_like(f2v)
        sweeps = S.schedule("residual", cg, cg.energies, None, cg.factor_param,
                            np.zeros(int(cg.state_offset[-1])), f2v, v2f, temperature)
        residuals = []
        for n in split:
            chunk = np.empty(n)
            done, converged = sweeps.run(chunk)
            assert (done, converged) == (n, False)
            residuals.extend(chunk)
        sweeps.finish()
        outcomes.append((f2v, v2f, np.array(residuals)))
    for want, got in zip(outcomes[0], outcomes[1]):
        np.testing.assert_array_equal(got, want)


def test_iterations_residuals_and_callback():
    """An iteration is D message commits; ``residuals`` has one entry per iteration (the
    largest change left), ``max_iter`` caps the iterations with a ConvergenceWarning, the
    callback sees the iterations done, and an exception it raises stops BP."""
    graph = grid(np.random.default_rng(2), coupling=3.0)
    seen = []
    with pytest.warns(fe.ConvergenceWarning, match="residual schedule"):
        result = fe.min_sum(graph, method="bp", schedule="residual", max_iter=3, tol=0.0,
                            callback=lambda n, r: seen.append((n, r)))
    assert result.n_iter == 3 and not result.converged
    assert result.residuals.shape == (3,) and (result.residuals >= 0).all()
    assert seen[-1] == (3, result.residuals[-1])

    def stop(n, r):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fe.min_sum(graph, method="bp", schedule="residual", max_iter=10**9, callback=stop)


def test_fewer_message_updates_than_sequential_on_a_loopy_grid():
    """The point of the schedule (Elidan et al. 2006): on a weakly coupled grid it reaches
    the sequential schedule's fixed point, and in fewer message computations' worth of
    iterations; both decode the same assignment."""
    graph = grid(np.random.default_rng(4), n=10, coupling=0.3)
    got = residual(graph, max_iter=500, tol=1e-10)
    want = fe.min_sum(graph, method="bp", schedule="sequential", max_iter=500, tol=1e-10)
    assert got.converged and want.converged
    np.testing.assert_array_equal(got.assignment, want.assignment)
    np.testing.assert_allclose(got.messages, want.messages, atol=1e-8)
    assert got.n_iter < want.n_iter


def test_hard_constraints_and_evidence_on_a_tree():
    """+inf energies and evidence: exact on a tree, no NaN, forbidden states stay +inf."""
    g = fe.FactorGraph()
    g.add_variables(["a", "b", "c", "d"], 3)
    neq = np.where(np.eye(3, dtype=bool), np.inf, 0.0)
    g.add_factors([("a", "b"), ("b", "c"), ("b", "d")], [neq, neq + 0.5, np.ones((3, 3))])
    g.add_factors([["a"], ["d"]], [[0.0, 2.0, np.inf], [1.0, 0.0, 3.0]])
    bf = BruteForce(g, evidence={"c": 1})
    result = residual(g, evidence={"c": 1}, max_iter=100, tol=1e-12)
    assert result.converged
    check_min_sum(g, result, bf)
    assert result.assignment_dict()["c"] == 1


def test_kernel_heap_stays_ordered():
    """The indexed heap: after random key changes the root holds the largest residual
    (ties: the lowest edge) and ``pos`` inverts ``heap``."""
    from factorgraph_ebm.messages.residual import set_key

    rng = np.random.default_rng(5)
    n = 37
    resid = np.zeros(n)
    heap = np.arange(n, dtype=np.int64)
    pos = np.arange(n, dtype=np.int64)
    for _ in range(500):
        e = int(rng.integers(n))
        set_key(resid, heap, pos, e, float(rng.choice([0.0, 1.0, np.inf, rng.random()])))
        np.testing.assert_array_equal(heap[pos], np.arange(n))
        best = max(range(n), key=lambda f: (resid[f], -f))
        assert heap[0] == best
        for p in range(1, n):  # the heap property, parent above child
            parent, child = heap[(p - 1) // 2], heap[p]
            assert (resid[parent], -parent) > (resid[child], -child)


def test_cli_accepts_the_residual_schedule(tmp_path, capsys):
    """``fgebm map --schedule residual`` runs BP with that schedule."""
    from factorgraph_ebm import cli
    from factorgraph_ebm.io import write_uai

    path = tmp_path / "grid.uai"
    write_uai(path, grid(np.random.default_rng(6), n=3))
    assert cli.main(["map", str(path), "--method", "bp", "--schedule", "residual",
                     "--json"]) == 0
    assert "residual schedule" in capsys.readouterr().err

