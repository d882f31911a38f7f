"""Structured pairwise factors (Potts, truncated linear, truncated quadratic) against the
dense path on the same tables; the parallel kernel on several threads against one thread;
the options that skip work."""

import math
import warnings

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import factorgraph_ebm as fg
from factorgraph_ebm.inference import factor_kinds

KINDS = ("potts", "linear", "quadratic")


def _random_pairs(rng, n_vars, n_factors):
    pairs = []
    for _ in range(n_factors):
        i, j = rng.choice(n_vars, size=2, replace=False)
        pairs.append((int(i), int(j)))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _add_structured(graph, kind, pairs, weight, truncation):
    if kind == "potts":
        return graph.add_potts_factors(pairs, weight, by_index=True)
    if kind == "linear":
        return graph.add_truncated_linear_factors(pairs, weight, truncation, by_index=True)
    return graph.add_truncated_quadratic_factors(pairs, weight, truncation, by_index=True)


def _twin_graphs(seed, n_vars, k, n_factors, kind, weight, truncation, inf_share):
    """The same model twice: structured factors, and dense factors with their tables."""
    rng = np.random.default_rng(seed)
    unary = rng.uniform(-2, 2, size=(n_vars, k))
    unary[rng.random(unary.shape) < inf_share] = np.inf
    unary[np.arange(n_vars), rng.integers(0, k, n_vars)] = rng.uniform(-2, 2, n_vars)
    pairs = _random_pairs(rng, n_vars, n_factors)
    graphs = []
    for structured in (True, False):
        g = fg.FactorGraph()
        g.add_variables(range(n_vars), k)
        g.add_factors(np.arange(n_vars)[:, None], unary, by_index=True)
        if structured:
            ids = _add_structured(g, kind, pairs, weight, truncation)
        else:
            tables = np.stack([graphs[0].factor_energies(int(a)) for a in ids])
            g.add_factors(pairs, tables, by_index=True)
        graphs.append(g)
    assert graphs[0].compile().factor_kind.any()
    assert not graphs[1].compile().factor_kind.any()
    np.testing.assert_array_equal(graphs[0].compile().energies, graphs[1].compile().energies)
    return graphs


def _run(graph, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fg.ConvergenceWarning)
        # The twins are compared factor for factor: no absorption of repeated scopes.
        return fg.belief_propagation(graph, method="bp", absorb=False, tol=0.0, **options)


weights = st.one_of(
    st.floats(0.0, 3.0), st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(-2.0, 0.0)
)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_vars=st.integers(2, 6),
    k=st.integers(1, 7),
    n_factors=st.integers(1, 8),
    kind=st.sampled_from(KINDS),
    weight=weights,
    truncation=st.one_of(st.just(math.inf), st.floats(0.0, 4.0)),
    inf_share=st.sampled_from([0.0, 0.0, 0.3]),
    beta=st.sampled_from([math.inf, 1.0, 0.3]),
    schedule=st.sampled_from(["parallel", "sequential"]),
    damping=st.sampled_from([0.0, 0.5]),
)
def test_structured_messages_equal_the_dense_path(
    seed, n_vars, k, n_factors, kind, weight, truncation, inf_share, beta, schedule, damping
):
    if kind == "potts" and weight == 2.0:
        weight = math.inf  # a hard equality constraint
    if kind != "potts":
        weight = abs(weight)
    fast, dense = _twin_graphs(seed, n_vars, k, n_factors, kind, weight, truncation, inf_share)
    options = dict(beta=beta, schedule=schedule, max_iter=6, damping=damping)
    a, b = _run(fast, **options), _run(dense, **options)
    if kind == "potts" and beta == math.inf:
        # Exactly the same messages, hence the same everything.
        np.testing.assert_array_equal(a.messages, b.messages)
        np.testing.assert_array_equal(a.assignment, b.assignment)
        np.testing.assert_array_equal(a.variable_beliefs, b.variable_beliefs)
        np.testing.assert_array_equal(a.factor_beliefs, b.factor_beliefs)
    else:
        np.testing.assert_allclose(a.messages, b.messages, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.variable_beliefs, b.variable_beliefs, rtol=1e-7, atol=1e-9)
        if beta != math.inf:
            assert a.free_energy == pytest.approx(b.free_energy, rel=1e-9, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(KINDS),
    beta=st.sampled_from([math.inf, 1.0]),
)
def test_structured_factors_on_a_chain_are_exact(seed, kind, beta):
    """On a tree (two-pass schedule and decoding with clamping) the structured graph gives
    the dense graph's exact answer."""
    rng = np.random.default_rng(seed)
    n, k = 6, 5
    fast, dense = fg.FactorGraph(), fg.FactorGraph()
    unary = rng.uniform(0, 3, size=(n, k))
    pairs = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    for g in (fast, dense):
        g.add_variables(range(n), k)
        g.add_factors(np.arange(n)[:, None], unary, by_index=True)
    ids = _add_structured(fast, kind, pairs, 0.7, 2.0)
    dense.add_factors(pairs, np.stack([fast.factor_energies(int(a)) for a in ids]), by_index=True)
    a, b = _run(fast, beta=beta), _run(dense, beta=beta)
    assert a.schedule == "tree" and a.exact
    np.testing.assert_allclose(a.variable_beliefs, b.variable_beliefs, rtol=1e-9, atol=1e-9)
    assert a.energy == pytest.approx(b.energy)
    assert a.free_energy == pytest.approx(b.free_energy)


def test_replacement_energies_that_break_the_structure_use_the_dense_path():
    fast, dense = _twin_graphs(3, 5, 4, 6, "potts", 0.8, math.inf, 0.0)
    cg = fast.compile()
    theta = cg.energies.copy()
    assert factor_kinds(cg, theta).tolist() == cg.factor_kind.tolist()  # unchanged copy
    first = cg.table_offset[5]  # the first Potts factor (5 unary factors before it)
    theta[first + 1] += 0.25
    kinds = factor_kinds(cg, theta)
    assert kinds[5] == 0 and kinds[6] == 1
    a = _run(fast, energies=theta, max_iter=5, schedule="parallel")
    b = _run(dense, energies=theta, max_iter=5, schedule="parallel")
    np.testing.assert_array_equal(a.messages, b.messages)


def _big_mixed_graph(seed=0, side=24, k=6):
    """> 2**14 message entries (so threads=None uses every thread): a grid with Potts,
    truncated and dense pairwise factors, and triples."""
    rng = np.random.default_rng(seed)
    n = side * side
    g = fg.FactorGraph()
    g.add_variables(range(n), k)
    g.add_factors(np.arange(n)[:, None], rng.random((n, k)), by_index=True)
    index = np.arange(n).reshape(side, side)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    g.add_potts_factors(horizontal[::3], 0.4, by_index=True)
    g.add_truncated_linear_factors(horizontal[1::3], 0.3, 1.0, by_index=True)
    g.add_truncated_quadratic_factors(horizontal[2::3], 0.2, 1.5, by_index=True)
    g.add_factors(vertical, rng.random((len(vertical), k, k)), by_index=True)
    triples = np.stack([index[:-1, :-1].ravel(), index[1:, :-1].ravel(), index[:-1, 1:].ravel()], 1)
    g.add_factors(triples[::7], rng.random((len(triples[::7]), k, k, k)), by_index=True)
    return g


@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize("damping", [0.0, 0.5])
@pytest.mark.parametrize("plain", [False, True], ids=["mixed", "plain"])
def test_parallel_kernel_is_bitwise_the_same_on_any_number_of_threads(beta, damping, plain):
    g = _plain_graph(0, side=24, k=6, loopy=True) if plain else _big_mixed_graph()
    assert g.compile().n_message_entries > 2**14
    runs = [
        _run(g, beta=beta, schedule="parallel", max_iter=7, damping=damping, threads=t)
        for t in (1, 2, None)
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].messages, other.messages)
        np.testing.assert_array_equal(runs[0].residuals, other.residuals)
        np.testing.assert_array_equal(runs[0].variable_beliefs, other.variable_beliefs)
        np.testing.assert_array_equal(runs[0].assignment, other.assignment)
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # restored


def _plain_graph(seed, side, k, loopy):
    """A grid (or, without ``loopy``, a comb of chains) of unary and dense pairwise
    factors, some entries +inf: a plain graph."""
    rng = np.random.default_rng(seed)
    n = side * side
    g = fg.FactorGraph()
    g.add_variables(range(n), k)
    unary = rng.random((n, k))
    unary[rng.random(unary.shape) < 0.1] = np.inf
    g.add_factors(np.arange(n)[:, None], unary, by_index=True)
    index = np.arange(n).reshape(side, side)
    pairs = [np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)]
    pairs.append(np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
                 if loopy else np.stack([index[:-1, 0], index[1:, 0]], axis=1))
    pairs = np.concatenate(pairs)
    tables = rng.random((len(pairs), k, k))
    tables[rng.random(tables.shape) < 0.05] = np.inf
    g.add_factors(pairs, tables, by_index=True)
    return g


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_plain_graphs_specialization_gives_the_general_kernels_results(beta):
    """A plain graph (dense tables, arity <= 2) runs the kernels with ``kinds=None``
    (factorgraph_ebm.messages, "Plain graphs"), a specialization without the structured and generic
    code: the same arithmetic, so the same messages, residuals and decoding bit for bit
    as with its (all-dense) kinds array, in every schedule."""
    from factorgraph_ebm import messages as K
    from factorgraph_ebm.messages import schedules as S

    temperature = 0.0 if math.isinf(beta) else 1.0 / beta
    for loopy in (True, False):
        cg = _plain_graph(1, side=6, k=4, loopy=loopy).compile()
        assert not cg.factor_kind.any() and cg.max_arity == 2
        unary = np.zeros(int(cg.state_offset[-1]))
        unary[cg.state_offset[3] + 1 : cg.state_offset[4]] = np.inf  # evidence: state 0
        schedules = [("flooding", 1), ("sequential", None)]
        schedules += [("threads", 3)] if loopy else [("tree", None)]
        for name, threads in schedules:
            outcomes = []
            for kinds in (None, cg.factor_kind):
                f2v = np.zeros(cg.n_message_entries)
                v2f = np.zeros_like(f2v)
                residuals = np.zeros(6)
                common = (cg, cg.energies, kinds, cg.factor_param, unary, f2v, v2f,
                          temperature)
                if name == "tree":
                    K.run_two_pass(*common, K.unclamped(cg), K.scratch(cg))
                else:
                    sweeps = S.schedule("sequential" if name == "sequential" else "parallel",
                                        *common, 0.25, 0.0, threads)
                    sweeps.run(residuals)
                    sweeps.finish()
                assignment = np.empty(cg.n_variables, dtype=np.int64)
                total = np.empty(len(unary))
                n_inf = np.empty(len(unary), dtype=np.int8)
                K.belief_totals(cg, unary, f2v, total, n_inf)
                K.decode(cg, cg.energies, kinds, cg.factor_param, unary, v2f.copy(), f2v,
                         total, n_inf, cg.var_order, temperature, assignment, K.scratch(cg))
                outcomes.append((f2v, v2f, residuals, assignment))
            for plain, general in zip(*outcomes):
                np.testing.assert_array_equal(plain, general, err_msg=name)


def test_options_that_skip_work():
    g = _big_mixed_graph(side=8, k=3)
    full = _run(g, beta=1.0, schedule="parallel", max_iter=20)
    lean = _run(g, beta=1.0, schedule="parallel", max_iter=20, factor_beliefs=False)
    assert lean.factor_beliefs is None and full.factor_beliefs is not None
    assert lean.free_energy == full.free_energy
    np.testing.assert_array_equal(lean.messages, full.messages)
    bare = _run(g, beta=1.0, schedule="parallel", max_iter=20, free_energy=False)
    assert bare.free_energy is None and bare.log_partition is None
    np.testing.assert_array_equal(bare.factor_beliefs, full.factor_beliefs)
    ms = _run(g, schedule="parallel", max_iter=5, factor_beliefs=False, free_energy=False)
    assert ms.free_energy == ms.energy  # min-sum's is always the decoded energy

    chain = fg.FactorGraph()
    chain.add_variables(range(4), 3)
    chain.add_potts_factors([[0, 1], [1, 2], [2, 3]], 1.0, by_index=True)
    checked = _run(chain, schedule="tree")
    unchecked = _run(chain, schedule="tree", check_sweep=False)
    assert unchecked.residuals.tolist() == [0.0]
    np.testing.assert_array_equal(checked.messages, unchecked.messages)
    np.testing.assert_array_equal(checked.assignment, unchecked.assignment)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(threads):
    g = _big_mixed_graph(side=4, k=2)
    with pytest.raises(fg.FactorGraphError, match="threads"):
        fg.min_sum(g, threads=threads)


def test_structured_constructor_validation():
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 3)
    g.add_variable("c", 2)
    with pytest.raises(fg.FactorGraphError, match="same number of states"):
        g.add_potts_factors([("a", "c")], 1.0)
    with pytest.raises(fg.FactorGraphError, match="pairwise"):
        g.add_potts_factors([("a", "b", "c")], 1.0)
    with pytest.raises(fg.FactorGraphError, match="weight"):
        g.add_potts_factors([("a", "b")], np.nan)
    with pytest.raises(fg.FactorGraphError, match="weight"):
        g.add_truncated_linear_factors([("a", "b")], -1.0)
    with pytest.raises(fg.FactorGraphError, match="weight"):
        g.add_truncated_quadratic_factors([("a", "b")], np.inf)
    with pytest.raises(fg.FactorGraphError, match="truncation"):
        g.add_truncated_linear_factors([("a", "b")], 1.0, -0.5)
    with pytest.raises(fg.FactorGraphError, match="one per factor"):
        g.add_potts_factors([("a", "b")], [1.0, 2.0])
    assert g.n_factors == 0
    ids = g.add_potts_factors([("a", "b"), ("b", "a")], [1.0, np.inf])
    np.testing.assert_array_equal(g.factor_energies(int(ids[1])), np.where(np.eye(3), 0, np.inf))
    ids = g.add_truncated_linear_factors([("a", "b")], 2.0, 3.0)
    np.testing.assert_array_equal(
        g.factor_energies(int(ids[0])), [[0, 2, 3], [2, 0, 2], [3, 2, 0]]
    )
    ids = g.add_truncated_quadratic_factors([("a", "b")], 1.0)
    np.testing.assert_array_equal(
        g.factor_energies(int(ids[0])), [[0, 1, 4], [1, 0, 1], [4, 1, 0]]
    )
    cg = g.compile()
    assert cg.factor_kind.tolist() == [1, 1, 2, 3]
    assert cg.factor_param.tolist() == [[1.0, np.inf], [np.inf, np.inf], [2.0, 3.0], [1.0, np.inf]]


# --------------------------------------------------------------------------- compact factors
def _compact_twins(seed, kind, n_vars=7, k=4, n_factors=9, loopy=True, inf_share=0.2):
    """The same structured model twice: compact (``dense=False``) and with dense tables."""
    rng = np.random.default_rng(seed)
    unary = rng.uniform(-2, 2, size=(n_vars, k))
    unary[rng.random(unary.shape) < inf_share] = np.inf
    unary[np.arange(n_vars), rng.integers(0, k, n_vars)] = rng.uniform(-2, 2, n_vars)
    if loopy:
        pairs = _random_pairs(rng, n_vars, n_factors)
    else:
        pairs = np.stack([np.arange(n_vars - 1), np.arange(1, n_vars)], axis=1)
    weight = rng.uniform(0.1, 2.0, len(pairs))
    if kind == "potts":
        weight[0] = math.inf
    graphs = []
    for dense in (False, True):
        g = fg.FactorGraph()
        g.add_variables(range(n_vars), k)
        g.add_factors(np.arange(n_vars)[:, None], unary, by_index=True)
        if kind == "potts":
            g.add_potts_factors(pairs, weight, by_index=True, dense=dense)
        elif kind == "linear":
            g.add_truncated_linear_factors(pairs, weight, 1.5, by_index=True, dense=dense)
        else:
            g.add_truncated_quadratic_factors(pairs, weight, 2.5, by_index=True, dense=dense)
        graphs.append(g)
    return graphs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize("schedule", ["parallel", "sequential", "tree"])
def test_compact_structured_factors_equal_the_dense_ones(kind, beta, schedule):
    compact, dense = _compact_twins(5, kind, loopy=schedule != "tree")
    cg, cd = compact.compile(), dense.compile()
    n_pairs = cg.n_factors - cg.n_variables
    np.testing.assert_array_equal(cg.compact_factors(), np.arange(cg.n_variables, cg.n_factors))
    assert cg.n_energy_entries == cd.n_energy_entries - n_pairs * 16
    np.testing.assert_array_equal(cg.energies, cd.energies[: cg.n_energy_entries])
    for a in range(cg.n_factors):
        np.testing.assert_array_equal(compact.factor_energies(a), dense.factor_energies(a))
    states = np.random.default_rng(1).integers(0, 4, size=(20, cg.n_variables))
    np.testing.assert_array_equal(compact.energy(states), dense.energy(states))
    for evidence in (None, {0: int(np.argmin(compact.factor_energies(0)))}):
        options = dict(beta=beta, schedule=schedule, max_iter=8, evidence=evidence)
        a, b = _run(compact, **options), _run(dense, **options)
        np.testing.assert_array_equal(a.messages, b.messages)
        np.testing.assert_array_equal(a.assignment, b.assignment)
        np.testing.assert_array_equal(a.variable_beliefs, b.variable_beliefs)
        assert a.energy == b.energy
        if beta != math.inf:
            assert a.free_energy == pytest.approx(b.free_energy, rel=1e-12, abs=1e-12)
        # Factor beliefs: stored for the factors with tables (the unary ones) only.
        np.testing.assert_array_equal(
            a.factor_beliefs, b.factor_beliefs[: cg.n_energy_entries]
        )
        np.testing.assert_array_equal(a.factor_belief(0), b.factor_belief(0))
        with pytest.raises(fg.FactorGraphError, match="compact"):
            a.factor_belief(cg.n_factors - 1)


def test_compact_factors_are_refused_where_theta_must_hold_every_table(tmp_path):
    from factorgraph_ebm.io.uai import write_uai

    compact, _ = _compact_twins(2, "potts")
    first = compact.n_variables
    message = f"factor {first} .*dense=True"
    with pytest.raises(fg.FactorGraphError, match=message):
        fg.TableModel(compact)
    with pytest.raises(fg.FactorGraphError, match=message):
        fg.LinearModel(compact, {"all": range(compact.n_factors)}, 2)
    target = dict.fromkeys(range(compact.n_variables), 0)
    with pytest.raises(fg.FactorGraphError, match=message):
        fg.PerceptronLoss().value_and_grad(compact, target)
    with pytest.raises(fg.FactorGraphError, match=message):
        write_uai(tmp_path / "m.uai", compact)
    with pytest.raises(fg.FactorGraphError, match="dense must be True or False"):
        compact.add_potts_factors([(0, 1)], 1.0, by_index=True, dense="no")


def test_compact_replacement_energies_keep_the_structured_path():
    compact, dense = _compact_twins(4, "linear")
    theta = compact.compile().energies + 0.25  # the unary tables change, the pairs cannot
    theta_dense = dense.compile().energies.copy()
    theta_dense[: len(theta)] += 0.25
    a = _run(compact, energies=theta, schedule="parallel", max_iter=5)
    b = _run(dense, energies=theta_dense, schedule="parallel", max_iter=5)
    np.testing.assert_array_equal(a.messages, b.messages)
    assert a.energy == b.energy
