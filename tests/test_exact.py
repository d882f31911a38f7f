"""Exact inference by junction tree against brute force, in both semirings.

Random loopy graphs (arity 0-3, +inf entries, one-state variables, duplicated and nested
scopes, evidence) are enumerated by ``reference.BruteForce``; every figure must agree to
1e-9 (absolute, on energies of order 1-10 and probabilities), infeasible models exactly.
"""

import json
import math
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from reference import BruteForce
from strategies import describe, evidence_for, loopy_graphs, trees

import factorgraph_ebm as fe
from factorgraph_ebm import EvidenceError, FactorGraphError
from factorgraph_ebm.exact import exact_plan, junction_tree, kernels, plan_elimination

TOL = 1e-9


def _graphs():
    return st.one_of(loopy_graphs(max_variables=6, max_configs=600, max_extra_factors=7),
                     trees(max_variables=6, max_configs=600))


def _solve(graph, beta, evidence=None, block=None):
    """Exact inference, with clique tables walked in blocks of ``block`` entries (whole
    rows; 1: one row per block) instead of the default (one block for these small tables)."""
    with mock.patch.object(junction_tree, "BLOCK_ENTRIES", block or junction_tree.BLOCK_ENTRIES):
        return fe.belief_propagation(graph, beta=beta, evidence=evidence, method="exact")


def _evidence_ok(graph, evidence):
    """Evidence the library accepts (it refuses evidence that empties a factor)."""
    try:
        fe.min_sum(graph, evidence=evidence, method="bp", max_iter=1, warn=False)
    except EvidenceError:
        return False
    return True


def _case(data, beta):
    """A drawn graph (with evidence half the time), its brute force and the exact result;
    None when the library rightly refuses the evidence."""
    graph = data.draw(_graphs())
    evidence = data.draw(evidence_for(graph)) if data.draw(st.booleans()) else None
    if evidence and not _evidence_ok(graph, evidence):
        return None
    note(describe(graph))
    result = _solve(graph, beta, evidence, block=data.draw(st.sampled_from([None, 1, 4])))
    assert result.exact and result.method == "exact"
    return graph, BruteForce(graph, evidence), result


@given(st.data())
def test_min_sum_matches_brute_force(data):
    case = _case(data, math.inf)
    if case is None:
        return
    graph, bf, result = case
    if not bf.feasible:
        assert result.energy == math.inf and result.feasible is False
        assert all(np.isinf(m).all() for m in result.min_marginals)
        return
    assert result.feasible is True
    assert math.isclose(result.energy, bf.min_energy, abs_tol=TOL)
    assert tuple(result.assignment.tolist()) in bf.minimizers(atol=1e-7)
    for mine, theirs in zip(result.min_marginals, bf.min_marginals(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(graph.n_factors):
        np.testing.assert_allclose(result.factor_belief(f), bf.factor_min_marginals(f),
                                   rtol=0, atol=TOL)


@given(st.data(), st.sampled_from([0.3, 1.0, 2.5]))
def test_sum_product_matches_brute_force(data, beta):
    case = _case(data, beta)
    if case is None:
        return
    graph, bf, result = case
    if not bf.feasible:
        assert result.log_partition == -math.inf and result.free_energy == math.inf
        assert result.feasible is False
        return
    assert math.isclose(result.log_partition, bf.log_z(beta), rel_tol=TOL, abs_tol=TOL)
    assert math.isclose(result.free_energy, bf.free_energy(beta), rel_tol=TOL, abs_tol=TOL)
    for mine, theirs in zip(result.marginals, bf.marginals(beta), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(graph.n_factors):
        np.testing.assert_allclose(result.factor_belief(f), bf.factor_marginals(f, beta),
                                   rtol=0, atol=TOL)


def _rebuilt(graph, theta=None, unary=None):
    """A new graph with ``graph``'s variables and factors, the energies ``theta`` (flat, as
    ``energies=`` takes them; None: the graph's) and the per-state energies ``unary`` (flat;
    None: none) as unary factors: the model a call with those options answers for."""
    g = fe.FactorGraph()
    for name, k in zip(graph.variables, graph.n_states.tolist()):
        g.add_variable(name, k)
    cg = graph.compile()
    for a in range(graph.n_factors):
        table = graph.factor_energies(a)
        if theta is not None:
            table = theta[cg.table_offset[a] : cg.table_offset[a + 1]].reshape(table.shape)
        g.add_factor(graph.factor_scope(a), table)
    if unary is not None:
        for i, name in enumerate(graph.variables):
            g.add_factor([name], unary[cg.state_offset[i] : cg.state_offset[i + 1]])
    return g


def _assert_exact(graph, reference, evidence=None, **options):
    """Min-sum and sum-product (beta = 1) on ``graph`` with ``options``, against brute force
    on ``reference`` (the model they answer for)."""
    bf = BruteForce(reference, evidence)
    low = fe.min_sum(graph, evidence=evidence, method="exact", **options)
    soft = fe.sum_product(graph, evidence=evidence, method="exact", **options)
    assert math.isclose(low.energy, bf.min_energy, abs_tol=TOL) or (
        low.energy == bf.min_energy == math.inf)
    if not bf.feasible:
        assert soft.log_partition == -math.inf
        return
    for mine, theirs in zip(low.min_marginals, bf.min_marginals(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    assert math.isclose(soft.log_partition, bf.log_z(1.0), rel_tol=TOL, abs_tol=TOL)
    for mine, theirs in zip(soft.marginals, bf.marginals(1.0), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(graph.n_factors):
        np.testing.assert_allclose(soft.factor_belief(f), bf.factor_marginals(f, 1.0),
                                   rtol=0, atol=TOL)


@settings(max_examples=25)  # ~30 exact calls each
@given(st.data())
def test_cached_plans_follow_every_change_of_the_graph(data):
    """The junction-tree plan and its layout are cached on the graph (per compiled graph and
    clamped set): calls on one graph that change the evidence, the energies, the soft
    evidence, then the graph itself (a factor, a variable) get the fresh exact answer."""
    graph = data.draw(loopy_graphs(max_variables=5, max_configs=300, max_extra_factors=4))
    note(describe(graph))
    seen = set()

    def check(reference, evidence=None, **options):
        if evidence and not _evidence_ok(graph, evidence):
            return
        _assert_exact(graph, reference, evidence, **options)
        _assert_exact(graph, reference, evidence, **options)  # from the cache
        seen.update(k for k in graph.__dict__["_exact_plans"] if k != "cg")

    # Each change clamps other variables than the call before (a plan made for more
    # clamped variables than a call has is wrong for it; one made for fewer is not).
    check(graph, data.draw(evidence_for(graph)))
    check(graph, data.draw(evidence_for(graph)))
    check(graph)
    cg = graph.compile()
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    unary = rng.normal(size=int(cg.state_offset[-1]))
    unary[rng.random(unary.shape) < 0.4] = np.inf  # clamps some variables, empties others
    check(_rebuilt(graph, unary=unary), unary=unary)
    theta = rng.normal(size=cg.n_energy_entries)
    theta[rng.random(theta.shape) < 0.1] = np.inf
    check(_rebuilt(graph, theta=theta), energies=theta)
    assert graph.compile() is cg and len(seen) >= 1
    names, cards = graph.variables, graph.n_states.tolist()
    graph.add_variable("new", 3)
    graph.add_factor(["new", names[1]], rng.normal(size=(3, cards[1])))
    check(graph, {"new": 2})
    graph.add_factor([names[0], names[-1]], rng.normal(size=(cards[0], cards[-1])))
    check(graph)
    assert graph.compile() is not cg


def _bands(n, width, states, seed):
    """A band of ``n`` variables, each tied by a pairwise factor to the ``width`` before
    it, plus unary factors: cliques of ``width + 1`` variables, non-maximal ones at the
    end of the elimination."""
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables(range(n), states)
    g.add_factors([(i,) for i in range(n)], rng.normal(size=(n, states)))
    pairs = [(i, j) for j in range(n) for i in range(max(0, j - width), j)]
    tables = rng.normal(size=(len(pairs), states, states))
    tables[rng.random(size=tables.shape) < 0.05] = np.inf
    g.add_factors(pairs, tables)
    return g


@pytest.mark.parametrize("block", [None, 1, 4, 8])
def test_merged_cliques_in_blocks_match_brute_force(block):
    # Merged cliques (several variables eliminated per row), clique tables of many blocks,
    # maps that depend on a block only through its row, short and long rows, in one model.
    g = _bands(9, 4, 2, seed=5)
    cg = g.compile()
    plan = exact_plan(g, cg, np.zeros(int(cg.state_offset[-1])))
    assert plan.elimination.n_elim.max() >= 3
    with mock.patch.object(junction_tree, "BLOCK_ENTRIES", block or junction_tree.BLOCK_ENTRIES):
        tree = junction_tree.build_junction_tree(cg, plan.elimination, cg.table_offset,
                                                 plan.clamped)[0]
    # Both ways of walking a row: a column at a time (short rows) and a row at a time.
    assert (tree.row < kernels.SHORT_ROW).any() and (tree.row >= kernels.SHORT_ROW).any()
    if block is not None:
        assert (np.diff(tree.table_offset) > tree.block).any()
        kinds = {kernels.MAP_BLOCK, kernels.MAP_ROW} | ({kernels.MAP_FIXED} if block > 1 else set())
        assert kinds <= set(tree.map_kind)
    bf = BruteForce(g, {3: 1})
    low = _solve(g, math.inf, {3: 1}, block)
    assert math.isclose(low.energy, bf.min_energy, abs_tol=TOL)
    assert tuple(low.assignment.tolist()) in bf.minimizers(atol=1e-7)
    for mine, theirs in zip(low.min_marginals, bf.min_marginals(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    soft = _solve(g, 0.7, {3: 1}, block)
    assert math.isclose(soft.log_partition, bf.log_z(0.7), rel_tol=TOL)
    for mine, theirs in zip(soft.marginals, bf.marginals(0.7), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=TOL)
    for f in range(g.n_factors):
        np.testing.assert_allclose(low.factor_belief(f), bf.factor_min_marginals(f),
                                   rtol=0, atol=TOL)
        np.testing.assert_allclose(soft.factor_belief(f), bf.factor_marginals(f, 0.7),
                                   rtol=0, atol=TOL)


def test_merging_is_bounded_by_the_row_size():
    g = _bands(12, 3, 4, seed=1)
    cg = g.compile()
    plan = exact_plan(g, cg, np.zeros(int(cg.state_offset[-1]))).elimination
    rows = [4 ** int(e) for e in plan.n_elim]
    assert max(rows) <= 1024 and plan.n_elim.max() >= 2
    # Every variable is eliminated exactly once, and the tree's tables are the merged ones.
    eliminated = np.concatenate([c[len(c) - e:] for c, e in zip(plan.cliques, plan.n_elim)])
    assert sorted(eliminated.tolist()) == list(range(12))
    assert plan.total_entries == sum(4.0 ** len(c) for c in plan.cliques)


def test_the_kernels_exp_is_libms_to_an_ulp():
    # The vectorizable exp of the row normalization at T > 0 (kernels._exp_nonpositive).
    from factorgraph_ebm.exact.kernels import _exp_nonpositive

    rng = np.random.default_rng(0)
    x = -np.concatenate([rng.uniform(0, 708, 20000), rng.uniform(0, 1e-3, 2000),
                         np.exp(rng.uniform(-700, 0, 2000)), [0.0, 708.0]])
    mine = np.array([_exp_nonpositive(v) for v in x])
    np.testing.assert_allclose(mine, np.exp(x), rtol=4.5e-16, atol=0)
    assert _exp_nonpositive(0.0) == 1.0
    assert _exp_nonpositive(-np.inf) == 0.0 and _exp_nonpositive(-709.0) == 0.0


def test_the_kernels_log_is_libms_to_two_ulp():
    # The vectorizable log of the row sums at T > 0 (kernels._log_at_least_one): sums are
    # at least 1 (the row minimum's own exp(0)) and at most the row length.
    from factorgraph_ebm.exact.kernels import _log_at_least_one

    rng = np.random.default_rng(0)
    x = np.concatenate([1.0 + rng.uniform(0, 1, 20000), 1.0 + np.exp(rng.uniform(-50, 0, 2000)),
                        np.exp(rng.uniform(0, 700, 20000)),
                        [1.0, 2.0, math.sqrt(2.0), np.nextafter(math.sqrt(2.0), 2.0), 1e300]])
    mine = np.array([_log_at_least_one(v) for v in x])
    assert (np.abs(mine - np.log(x)) <= 2 * np.spacing(np.log(x))).all()
    assert _log_at_least_one(1.0) == 0.0


def test_duplicated_factor_gives_the_exact_log_partition():
    # Two factors on one scope (a 2-cycle for BP): ln Z = ln 30 exactly, not Bethe's.
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 3)
    g.add_factor(["a", "b"], np.zeros((3, 3)))
    g.add_factor(["b", "a"], -np.log(np.arange(1.0, 10.0).reshape(3, 3) / 1.5))
    bf = BruteForce(g)
    result = fe.sum_product(g)
    assert result.method == "exact"
    assert math.isclose(result.log_partition, bf.log_z(1.0), rel_tol=1e-12)


def test_triplet_with_a_nested_pair_is_exact():
    rng = np.random.default_rng(3)
    g = fe.FactorGraph()
    g.add_variables("xyz", [2, 3, 2])
    g.add_factor(list("xyz"), rng.normal(size=(2, 3, 2)))
    g.add_factor(list("zy"), rng.normal(size=(2, 3)))
    result = fe.sum_product(g, beta=1.0)
    assert result.exact
    assert math.isclose(result.log_partition, BruteForce(g).log_z(1.0), rel_tol=1e-12)


@pytest.mark.parametrize("task", ["min_sum", "sum_product"])
def test_infeasible_loopy_models_say_so(task):
    # A triangle of "not equal" on binary variables, and a == b with a != b on one pair.
    neq = np.where(np.eye(2) > 0, np.inf, 0.0)
    triangle = fe.FactorGraph()
    triangle.add_variables("abc", 2)
    triangle.add_factors([("a", "b"), ("b", "c"), ("c", "a")], np.stack([neq] * 3))
    pair = fe.FactorGraph()
    pair.add_variables("ab", 2)
    pair.add_factor(["a", "b"], neq)
    pair.add_factor(["a", "b"], np.where(np.eye(2) > 0, 0.0, np.inf))
    for g in (triangle, pair):
        result = getattr(fe, task)(g)
        assert result.exact and result.feasible is False
        assert result.energy == math.inf
        if task == "sum_product":
            assert result.log_partition == -math.inf and result.free_energy == math.inf
            assert not np.isnan(result.variable_beliefs).any()


def test_method_exact_refuses_what_does_not_fit():
    g = fe.FactorGraph()
    g.add_variables(range(9), 4)
    grid = [(i, j) for i in range(9) for j in range(i + 1, 9)]  # a clique of 9: 4^9 entries
    g.add_factors(grid, np.zeros((len(grid), 4, 4)))
    too_big = "induced width at least 8.*largest clique table 2.621e"
    with pytest.raises(FactorGraphError, match=too_big):
        fe.min_sum(g, method="exact", memory_limit=2**20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fallback = fe.min_sum(g, memory_limit=2**20, max_iter=3)
        soft_fallback = fe.sum_product(g, memory_limit=2**20, max_iter=3)
    assert fallback.method == "trws" and not fallback.exact  # min-sum: certified MAP
    assert soft_fallback.method == "bp" and not soft_fallback.exact
    assert fe.min_sum(g).method == "exact"


def test_auto_uses_two_pass_bp_on_forests_and_the_option_is_checked():
    g = fe.FactorGraph()
    g.add_variables("ab", 2)
    g.add_factor(["a", "b"], np.arange(4.0).reshape(2, 2))
    assert fe.min_sum(g).method == "bp" and fe.min_sum(g).exact
    assert fe.min_sum(g, method="exact").method == "exact"
    with pytest.raises(FactorGraphError, match="method must be one of"):
        fe.min_sum(g, method="jtree")
    with pytest.raises(FactorGraphError, match="memory_limit"):
        fe.min_sum(g, memory_limit=-1)


def test_compact_structured_factors_are_exact():
    g = fe.FactorGraph()
    g.add_variables(range(9), 3)
    pairs = [(r * 3 + c, r * 3 + c + 1) for r in range(3) for c in range(2)]
    pairs += [(r * 3 + c, (r + 1) * 3 + c) for r in range(2) for c in range(3)]
    rng = np.random.default_rng(0)
    g.add_factors([(i,) for i in range(9)], rng.normal(size=(9, 3)))
    g.add_potts_factors(pairs, 0.7, dense=False)
    dense = fe.FactorGraph()
    dense.add_variables(range(9), 3)
    dense.add_factors([(i,) for i in range(9)], g.compile().energies.reshape(9, 3))
    dense.add_factors(pairs, np.broadcast_to(0.7 * (1 - np.eye(3)), (len(pairs), 3, 3)))
    bf = BruteForce(dense)
    assert math.isclose(fe.min_sum(g).energy, bf.min_energy, abs_tol=TOL)
    assert math.isclose(fe.sum_product(g).log_partition, bf.log_z(1.0), rel_tol=TOL)


@pytest.mark.filterwarnings("ignore::factorgraph_ebm.ConvergenceWarning")
def test_loopy_bp_flags_an_infinite_decoding():
    # A feasible model (found by random search) on which sequential min-sum BP decodes an
    # assignment of energy +inf: 'feasible' is None and a warning says so (BP also does not
    # converge on it, which is not what this test is about).
    inf = np.inf
    g = fe.FactorGraph()
    g.add_variables(range(4), 3)
    tables = [[[2, inf, 1], [0, inf, 0], [inf, 2, 1]], [[2, 2, 0], [inf, 0, 0], [2, 0, inf]],
              [[1, inf, inf], [inf, 2, 1], [inf, inf, 0]], [[inf, inf, 0], [2, 0, inf],
                                                            [inf, inf, inf]]]
    g.add_factors([(0, 1), (0, 2), (1, 2), (1, 3)], np.array(tables))
    exact = fe.min_sum(g)
    assert exact.feasible is True and exact.energy == BruteForce(g).min_energy
    with pytest.warns(fe.NoFiniteAssignmentWarning, match="no finite-energy assignment"):
        loopy = fe.min_sum(g, method="bp")
    assert loopy.energy == math.inf and loopy.feasible is None and not loopy.exact


def test_plan_matches_known_widths():
    # A 5x5 grid: min-fill reaches the treewidth 5 (cliques of 6).
    n = 5
    scopes = [(r * n + c, r * n + c + 1) for r in range(n) for c in range(n - 1)]
    scopes += [(r * n + c, (r + 1) * n + c) for r in range(n - 1) for c in range(n)]
    ptr = np.arange(0, 2 * len(scopes) + 1, 2)
    flat = np.array(scopes).reshape(-1)
    plan = plan_elimination(np.full(n * n, 2), ptr, flat, np.ones(n * n, dtype=bool))
    assert plan.fits and plan.induced_width == n
    assert (plan.parent[plan.parent >= 0] > np.flatnonzero(plan.parent >= 0)).all()
    # A budget stops the search early and says so.
    small = plan_elimination(np.full(n * n, 2), ptr, flat, np.ones(n * n, dtype=bool),
                             max_entries=40)
    assert not small.fits and not small.gave_up
    hurried = plan_elimination(np.full(n * n, 2), ptr, flat, np.ones(n * n, dtype=bool),
                               max_work=100)
    assert not hurried.fits and hurried.gave_up


def test_evidence_removes_variables_from_the_plan():
    g = fe.FactorGraph()
    g.add_variables(range(6), 2)
    g.add_factors([(i, j) for i in range(6) for j in range(i + 1, 6)], np.zeros((15, 2, 2)))
    cg = g.compile()
    unary = np.zeros(12)
    assert exact_plan(g, cg, unary).elimination.induced_width == 5
    unary[[1, 3, 5]] = np.inf  # variables 0, 1, 2 observed in state 0
    assert exact_plan(g, cg, unary).elimination.induced_width == 2


LIBDAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "libdai_fg"


@pytest.mark.skipif(not (LIBDAI / "expected_values.json").exists(),
                    reason=f"libDAI data folder {LIBDAI} not found")
def test_libdai_models_decode_a_true_minimizer():
    """libDAI's test models (values in tests/test_io_fg.py's junction-tree test): the joint
    minimum decoded by ``method="exact"`` has the lowest energy of expected_values.json, and
    is libDAI's own where the minimum is unique (on maxprodbug / jtreemapbug it is tied)."""
    from factorgraph_ebm.io import read_fg

    expected = json.loads((LIBDAI / "expected_values.json").read_text())
    for name, want in expected.items():
        graph = read_fg(LIBDAI / name)
        best = fe.min_sum(graph, method="exact")
        assert best.exact and best.method == "exact"
        assert math.isclose(graph.energy(best.assignment), -want["max_log_score"],
                            rel_tol=1e-12, abs_tol=1e-12), name
        if want["n_tied_MAP_configurations"] == 1:
            theirs = [want["one_MAP_configuration"][str(v)] for v in graph.variables]
            assert best.assignment.tolist() == theirs, name
