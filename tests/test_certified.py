"""Certified MAP (factorgraph_ebm.certified): TRW-S's lower bound, decoding that keeps hard
constraints, local search; checked against brute force on small graphs."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import BruteForce, factor_table
from strategies import describe, evidence_for, loopy_graphs, trees

import factorgraph_ebm as fe
from factorgraph_ebm.certified import OPTIMALITY_ATOL, OPTIMALITY_RTOL, trws
from factorgraph_ebm.certified.api import _bp_assignment, _local_search
from factorgraph_ebm.certified.chains import build_chains, chain_icm
from factorgraph_ebm.certified.consistency import (
    edge_values,
    enforce_all,
    initial_domains,
    scratch_for,
)
from factorgraph_ebm.certified.expansion import cut_graph, make_expansion
from factorgraph_ebm.certified.maxflow import min_cut
from factorgraph_ebm.certified.problem import build_problem
from factorgraph_ebm.certified.trws import dual_bound, dual_pass
from factorgraph_ebm.exceptions import EvidenceError, FactorGraphError
from factorgraph_ebm.inference import factor_kinds

#: Rounding slack when comparing a bound or an energy with brute force.
SLACK = 1e-9


def run(graph, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trws(graph, **options)


def tolerance(energy):
    return OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(energy)


def check_against_brute_force(graph, result, brute):
    """The bound is at most the minimum, the energy at least it; a finite-energy assignment
    whenever one exists; the certificate is true."""
    low = brute.min_energy
    why = f"min {low}, energy {result.energy}, bound {result.lower_bound}\n{describe(graph)}"
    scale = 1 + abs(low) if math.isfinite(low) else 1
    assert result.lower_bound <= low + SLACK * scale, why
    assert result.energy >= low - SLACK * scale, why
    if math.isfinite(low):
        assert math.isfinite(result.energy) and result.feasible is True, why
        assert result.gap == pytest.approx(result.energy - result.lower_bound)
        assert result.gap >= -SLACK * scale, why
        if result.optimal:
            assert result.energy <= low + tolerance(low), why
    else:
        assert result.feasible is False, why
        assert result.lower_bound == math.inf and result.gap == 0.0 and result.optimal


# --------------------------------------------------------------------------- the bound
@given(loopy_graphs(max_variables=6, max_configs=1500), st.booleans())
def test_bound_and_energy_bracket_the_minimum(graph, absorb):
    result = run(graph, absorb=absorb)
    brute = BruteForce(graph)
    check_against_brute_force(graph, result, brute)
    if math.isfinite(brute.min_energy):
        assert result.energy == pytest.approx(graph.energy(result.assignment), abs=1e-9)


@given(loopy_graphs(max_variables=6, max_configs=1500, allow_inf=False), st.data())
def test_bound_with_evidence_and_soft_evidence(graph, data):
    evidence = data.draw(evidence_for(graph))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    soft = rng.uniform(-1, 1, size=int(graph.n_states.sum()))
    try:
        result = run(graph, evidence=evidence, unary=soft)
    except EvidenceError:
        return
    # Brute force with the soft evidence as unary factors and the evidence conditioned on.
    with_soft = fe.FactorGraph()
    with_soft.add_variables(graph.variables, graph.n_states)
    for f in range(graph.n_factors):
        with_soft.add_factor(graph.factor_scope(f), factor_table(graph, f))
    offsets = graph.compile().state_offset
    for i, name in enumerate(graph.variables):
        with_soft.add_factor([name], soft[offsets[i]:offsets[i + 1]])
    check_against_brute_force(graph, result, BruteForce(with_soft, evidence))


@given(loopy_graphs(max_variables=5, max_configs=600))
def test_bound_never_decreases(graph):
    result = run(graph, max_iter=30, tol=0.0)
    if result.feasible is False:
        return
    assert result.residuals[0] == 0.0
    assert (result.residuals >= -1e-9 * (1 + abs(result.lower_bound))).all()


@given(loopy_graphs(max_variables=5, max_configs=600, allow_inf=False))
def test_min_marginal_bounds(graph):
    result = run(graph)
    brute = BruteForce(graph)
    for bound, exact in zip(result.min_marginals, brute.min_marginals()):
        assert (bound <= exact + SLACK * (1 + np.abs(exact))).all()
        assert bound.min() >= result.lower_bound - SLACK * (1 + abs(result.lower_bound))


@given(loopy_graphs(max_variables=6, max_configs=1500, inf_levels=(0.0, 0.3, 0.6)))
def test_public_entry_points_keep_the_guarantees(graph):
    """``min_sum(method="trws")`` and ``method="auto"`` with the junction tree ruled out
    (``memory_limit=0``) go through the same wrapper: bound <= brute-force minimum <=
    energy, a finite-energy assignment whenever one exists (hard constraints included),
    the energy of the returned assignment."""
    brute = BruteForce(graph)
    for method in ("trws", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fe.min_sum(graph, method=method, memory_limit=0)
        assert result.method == "trws"  # loopy_graphs have a cycle: not the tree schedule
        check_against_brute_force(graph, result, brute)
        if math.isfinite(brute.min_energy):
            assert result.energy == pytest.approx(graph.energy(result.assignment), abs=1e-9)


# --------------------------------------------------------------------------- trees
@given(trees(max_variables=7, max_configs=2000))
def test_exact_and_certified_on_trees(graph):
    # The default order on a forest is breadth-first: TRW-S alone (no local search, no BP
    # candidate) finds the minimum and proves it.
    brute = BruteForce(graph)
    result = run(graph, max_iter=500, tol=0.0, local_search=False, bp_candidate=False)
    check_against_brute_force(graph, result, brute)
    if brute.feasible:
        assert result.optimal
        assert result.energy == pytest.approx(brute.min_energy, abs=1e-9)


@given(trees(max_variables=7, max_configs=2000), st.randoms(use_true_random=False))
def test_tight_bound_on_trees_in_any_order(graph, random):
    # In any order the bound reaches the minimum; decoding in an order where two variables
    # come before their common neighbour can split a tie the wrong way, which the default
    # local search and BP candidate repair.
    order = list(range(graph.n_variables))
    random.shuffle(order)
    brute = BruteForce(graph)
    result = run(graph, max_iter=500, tol=0.0, order=order)
    check_against_brute_force(graph, result, brute)
    if brute.feasible:
        # The bound may approach the minimum only geometrically: within the tolerance.
        assert result.lower_bound >= brute.min_energy - tolerance(brute.min_energy)
        assert result.optimal


# --------------------------------------------------------------------------- hard constraints
@given(loopy_graphs(max_variables=6, max_configs=1500, inf_levels=(0.3, 0.5, 0.7)))
def test_hard_constraints_decode_feasibly(graph):
    result = run(graph, local_search=False, bp_candidate=False)
    brute = BruteForce(graph)
    check_against_brute_force(graph, result, brute)


def test_infeasibility_proven_by_propagation_and_by_search():
    # x != y, y != z, x != z on two states: arc consistent, infeasible only by search.
    g = fe.FactorGraph()
    g.add_variables("xyz", 2)
    differ = [[math.inf, 0.0], [0.0, math.inf]]
    g.add_factors([("x", "y"), ("y", "z"), ("x", "z")], differ)
    result = run(g)
    assert result.feasible is False and result.energy == math.inf
    assert result.lower_bound == math.inf and result.optimal and result.gap == 0.0
    # A constant +inf factor, and a unary factor forbidding every state.
    for add in (lambda h: h.add_factor([], math.inf),
                lambda h: h.add_factor(["x"], [math.inf, math.inf])):
        h = fe.FactorGraph()
        h.add_variables("xy", 2)
        h.add_factor(["x", "y"], [[0.0, 1.0], [1.0, 0.0]])
        add(h)
        assert run(h).feasible is False


def test_search_finds_the_one_feasible_assignment():
    # A chain of "next = previous + 1 (mod 5)" constraints closed into a ring of length 5
    # has five solutions; forbid all but one through a unary factor on the last variable.
    g = fe.FactorGraph()
    g.add_variables(range(5), 5)
    step = np.full((5, 5), math.inf)
    step[np.arange(5), (np.arange(5) + 1) % 5] = 0.0
    g.add_factors([[i, (i + 1) % 5] for i in range(5)], step, by_index=True)
    g.add_factor([4], [math.inf, math.inf, math.inf, 2.0, math.inf])
    result = run(g, bp_candidate=False)
    assert result.energy == 2.0 and result.optimal
    assert result.assignment.tolist() == [4, 0, 1, 2, 3]


# --------------------------------------------------------------------------- structured
@pytest.mark.parametrize("kind", ["potts", "linear", "quadratic"])
@pytest.mark.parametrize("dense", [True, False])
def test_structured_factors_match_their_dense_tables(kind, dense):
    rng = np.random.default_rng(3)
    side, k = 3, 4
    pairs = [[r * side + c, r * side + c + 1] for r in range(side) for c in range(side - 1)]
    pairs += [[r * side + c, (r + 1) * side + c] for r in range(side - 1) for c in range(side)]
    unary = rng.uniform(0, 3, size=(side * side, k))
    graphs = []
    for structured in (True, False):
        g = fe.FactorGraph()
        g.add_variables(range(side * side), k)
        g.add_factors(np.arange(side * side)[:, None], unary, by_index=True)
        if structured:
            add = {"potts": g.add_potts_factors, "linear": g.add_truncated_linear_factors,
                   "quadratic": g.add_truncated_quadratic_factors}[kind]
            weights = {"potts": (1.3,), "linear": (0.8, 2.0), "quadratic": (0.6, 2.5)}[kind]
            add(pairs, *weights, by_index=True, dense=dense)
        else:
            tables = np.stack([graphs[0].factor_energies(side * side + f)
                               for f in range(len(pairs))])
            g.add_factors(pairs, tables, by_index=True)
        graphs.append(g)
    brute = BruteForce(graphs[1])
    results = [run(g) for g in graphs]
    for g, result in zip(graphs, results):
        check_against_brute_force(g, result, brute)
    assert results[0].lower_bound == pytest.approx(results[1].lower_bound, abs=1e-9)


def test_potts_grid_is_certified():
    # Attractive Potts grids with noisy unaries: the relaxation is nearly always tight.
    rng = np.random.default_rng(0)
    side, k = 12, 3
    g = fe.FactorGraph()
    g.add_variables(range(side * side), k)
    g.add_factors(np.arange(side * side)[:, None], rng.uniform(0, 2, (side * side, k)),
                  by_index=True)
    horizontal = [[r * side + c, r * side + c + 1] for r in range(side) for c in range(side - 1)]
    vertical = [[r * side + c, (r + 1) * side + c] for r in range(side - 1) for c in range(side)]
    g.add_potts_factors(horizontal + vertical, 0.4, by_index=True, dense=False)
    result = run(g)
    exact = fe.min_sum(g, method="exact")
    assert result.lower_bound <= exact.energy + SLACK * abs(exact.energy)
    assert result.optimal and result.energy == pytest.approx(exact.energy, abs=1e-9)


# --------------------------------------------------------------------------- local search
@given(loopy_graphs(max_variables=6, max_configs=1500), st.data())
def test_local_search_only_lowers_the_energy(graph, data):
    cg = graph.compile()
    problem = build_problem(cg, cg.energies, np.zeros(int(cg.state_offset[-1])))
    improve = _local_search(cg, cg.energies, problem)
    start = np.array([data.draw(st.integers(0, k - 1)) for k in graph.n_states.tolist()],
                     dtype=np.int64)
    before = graph.energy(start)
    after = start.copy()
    improve(after)
    reached = graph.energy(after)
    assert reached <= before
    if not math.isfinite(reached):
        return
    # A local minimum: no move of one variable, or of one factor's scope, lowers the energy.
    blocks = [[i] for i in range(graph.n_variables)] + [
        cg.scope_vars[cg.scope_ptr[a]:cg.scope_ptr[a + 1]].tolist()
        for a in range(cg.n_factors) if cg.scope_ptr[a + 1] - cg.scope_ptr[a] >= 2]
    for farthest in (False, True):  # and no chain move either
        ptr, members, _ = build_chains(cg, problem.coupling_ptr, problem.coupling_edges,
                                       problem.order, problem.rank, farthest)
        blocks += [members[lo:hi].tolist() for lo, hi in zip(ptr[:-1], ptr[1:])]
    for block in blocks:
        for states in itertools.product(*[range(graph.n_states[v]) for v in block]):
            moved = after.copy()
            moved[block] = states
            assert graph.energy(moved) >= reached - 1e-9 * (1 + abs(reached))


@given(loopy_graphs(max_variables=7, max_configs=3000), st.data(), st.booleans())
def test_chains_are_induced_paths_and_their_moves_exact(graph, data, farthest):
    cg = graph.compile()
    problem = build_problem(cg, cg.energies, np.zeros(int(cg.state_offset[-1])))
    ptr, members, links = build_chains(cg, problem.coupling_ptr, problem.coupling_edges,
                                       problem.order, problem.rank, farthest)
    assert sorted(members.tolist()) == list(range(graph.n_variables))
    scopes = [set(cg.scope_vars[cg.scope_ptr[a]:cg.scope_ptr[a + 1]].tolist())
              for a in range(cg.n_factors)]
    for c in range(len(ptr) - 1):
        chain = members[ptr[c]:ptr[c + 1]].tolist()
        assert links[ptr[c]] == -1
        for t in range(1, len(chain)):  # each link: a pairwise factor on the two neighbours
            e = links[ptr[c] + t]
            assert cg.scope_vars[e] == chain[t]
            assert scopes[cg.edge_factor[e]] == {chain[t - 1], chain[t]}
        shared = [s for s in scopes if len(s & set(chain)) >= 2]  # induced: links only
        assert len(shared) == len(chain) - 1
        # The move: the chain's lowest energy given the rest (brute force over its states).
        start = np.array([data.draw(st.integers(0, k - 1)) for k in graph.n_states.tolist()],
                         dtype=np.int64)
        moved = start.copy()
        chain_icm(cg, cg.energies, cg.factor_param, problem.node_energy,
                  problem.coupling_ptr, problem.coupling_edges, ptr, members, links, c, c + 1,
                  moved)
        assert np.array_equal(np.delete(moved, chain), np.delete(start, chain))
        low = math.inf
        for states in itertools.product(*[range(graph.n_states[v]) for v in chain]):
            trial = start.copy()
            trial[chain] = states
            low = min(low, graph.energy(trial))
        reached = graph.energy(moved)
        assert reached <= graph.energy(start)
        if len(chain) >= 2 and math.isfinite(low):
            assert reached == pytest.approx(low, rel=1e-9, abs=1e-9)


@given(st.integers(3, 7), st.integers(2, 3), st.booleans(), st.data())
def test_expansion_moves_lower_the_energy_to_an_expansion_minimum(n, k, potts, data):
    # Potts factors make every move's binary problem submodular: the cut is then the best
    # move (up to the rounding of energies to integer capacities), so no expansion
    # of the result lowers its energy. Dense random tables: the energy never rises.
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = fe.FactorGraph()
    g.add_variables(range(n), k)
    pairs = [(v, (v + 1) % n) for v in range(n)] + [
        (a, b) for a, b in itertools.combinations(range(n), 2) if rng.random() < 0.3]
    pairs = sorted({tuple(sorted(p)) for p in pairs})
    if potts:
        g.add_potts_factors(np.array(pairs), rng.random(len(pairs)), by_index=True,
                            dense=False)
    else:
        g.add_factors(pairs, rng.random((len(pairs), k, k)), by_index=True)
    g.add_factors([[v] for v in range(n)], rng.random((n, k)), by_index=True)
    cg = g.compile()
    problem = build_problem(cg, cg.energies, np.zeros(int(cg.state_offset[-1])))
    expand = make_expansion(cg, cg.energies, problem.node_energy)
    start = rng.integers(0, k, n)
    after = start.copy()
    moves, finished = expand(after)
    assert finished and g.energy(after) <= g.energy(start)
    assert moves == 0 or g.energy(after) < g.energy(start)
    if not potts:
        return
    reached = g.energy(after)
    for alpha in range(k):
        for switch in itertools.product([False, True], repeat=n):
            moved = np.where(switch, alpha, after)
            assert g.energy(moved) >= reached - 1e-5 * (1 + abs(reached))
    assert _local_search(cg, cg.energies, problem)(after) is True


@given(st.integers(1, 10), st.data())
def test_min_cut_equals_scipys_maximum_flow(n, data):
    # Random graphs with parallel and one-way arcs and terminal links of both signs: the
    # flow equals SciPy's maximum flow (Dinic), and the returned cut has that capacity.
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    m = int(rng.integers(0, 4 * n + 1))
    left, right = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = left != right
    left, right = left[keep].astype(np.int64), right[keep].astype(np.int64)
    forward = rng.integers(0, 7, len(left))
    backward = rng.integers(0, 7, len(left)) * (rng.random(len(left)) < 0.5)
    terminal = rng.integers(-9, 10, n) * (rng.random(n) < 0.7)
    first, head, sister, pair_arc = cut_graph(n, left, right)
    r_cap = np.zeros(len(head), dtype=np.int64)
    r_cap[pair_arc] = forward
    r_cap[sister[pair_arc]] = backward
    sink_side = np.zeros(n, dtype=bool)
    flow = min_cut(first, head, sister, r_cap, terminal.astype(np.int64), sink_side)
    source, sink = n, n + 1
    up, down = np.flatnonzero(terminal > 0), np.flatnonzero(terminal < 0)
    graph = csr_matrix(
        (np.concatenate([forward, backward, terminal[up], -terminal[down]]).astype(np.int32),
         (np.concatenate([left, right, np.full(len(up), source), down]),
          np.concatenate([right, left, up, np.full(len(down), sink)]))),
        shape=(n + 2, n + 2))
    graph.sum_duplicates()
    assert flow == maximum_flow(graph, source, sink).flow_value
    s = ~sink_side
    capacity = (terminal[up][sink_side[up]].sum() - terminal[down][s[down]].sum()
                + forward[s[left] & sink_side[right]].sum()
                + backward[s[right] & sink_side[left]].sum())
    assert capacity == flow


def test_expansion_is_offered_only_on_pairwise_models_without_hard_constraints():
    g = fe.FactorGraph()
    g.add_variables(range(3), 2)
    g.add_factor([0, 1], [[0.0, math.inf], [1.0, 0.0]])
    cg = g.compile()
    node = np.zeros(6)
    assert make_expansion(cg, cg.energies, node) is None
    h = fe.FactorGraph()
    h.add_variables(range(3), 2)
    h.add_factor([0, 1, 2], np.zeros((2, 2, 2)))
    assert make_expansion(h.compile(), h.compile().energies, node) is None
    u = fe.FactorGraph()
    u.add_variables(range(2), 2)
    u.add_factor([0], [math.inf, 0.0])  # a unary +inf is fine
    u.add_factor([0, 1], [[0.0, 1.0], [1.0, 0.0]])
    assert make_expansion(u.compile(), u.compile().energies, np.zeros(4)) is not None


# --------------------------------------------------------------------------- API
def test_result_fields_and_defaults():
    g = fe.FactorGraph()
    g.add_variables("ab", 2)
    g.add_factor(["a", "b"], [[0.0, 1.0], [1.0, 0.0]])
    g.add_factor(["a"], [0.5, 0.0])
    result = trws(g)
    assert result.method == "trws" and result.schedule == "sequential"
    assert result.assignment.tolist() == [1, 1] and result.energy == 0.0
    assert result.lower_bound == pytest.approx(0.0, abs=1e-12) and result.optimal
    assert result.factor_beliefs is None and result.messages is None
    assert result.log_partition is None and result.free_energy == result.energy
    assert len(result.residuals) == result.n_iter
    assert result.time_limited is False


@pytest.mark.parametrize("options, message", [
    ({"max_iter": 0}, "max_iter"),
    ({"tol": -1.0}, "tol"),
    ({"time_limit": 0.0}, "time_limit"),
    ({"decode_budget": -1}, "decode_budget"),
    ({"local_search": 1}, "local_search"),
    ({"bp_candidate": None}, "bp_candidate"),
    ({"order": [0, 0]}, "permutation"),
    ({"order": [0, 1, 2]}, "permutation"),
])
def test_bad_options_are_refused(options, message):
    g = fe.FactorGraph()
    g.add_variables("ab", 2)
    g.add_factor(["a", "b"], [[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(FactorGraphError, match=message):
        trws(g, **options)


def test_empty_and_variable_free_graphs():
    g = fe.FactorGraph()
    g.add_factor([], 2.5)
    result = trws(g)
    assert result.energy == 2.5 and result.lower_bound == 2.5 and result.optimal
    h = fe.FactorGraph()
    h.add_variables("ab", [3, 1])
    result = trws(h)
    assert result.energy == 0.0 and result.optimal and result.assignment.tolist() == [0, 0]


def test_finite_where_loopy_bp_decodes_an_impossible_assignment():
    # The model of tests/test_exact.py on which sequential min-sum BP decodes +inf.
    inf = np.inf
    g = fe.FactorGraph()
    g.add_variables(range(4), 3)
    tables = [[[2, inf, 1], [0, inf, 0], [inf, 2, 1]], [[2, 2, 0], [inf, 0, 0], [2, 0, inf]],
              [[1, inf, inf], [inf, 2, 1], [inf, inf, 0]], [[inf, inf, 0], [2, 0, inf],
                                                            [inf, inf, inf]]]
    g.add_factors([(0, 1), (0, 2), (1, 2), (1, 3)], np.array(tables))
    for method in ("trws", "auto"):
        result = fe.min_sum(g, method=method, memory_limit=0)
        assert result.method == "trws" and result.feasible is True
        check_against_brute_force(g, result, BruteForce(g))


def test_replacement_energies_demote_structured_factors():
    # A Potts factor whose table a replacement theta changes is no longer Potts: TRW-S must
    # read the new table (as BP does), and its answer is that of the new energies.
    rng = np.random.default_rng(5)
    g = fe.FactorGraph()
    g.add_variables(range(4), 3)
    g.add_factors(np.arange(4)[:, None], rng.uniform(0, 1, (4, 3)), by_index=True)
    g.add_potts_factors([[0, 1], [1, 2], [2, 3], [3, 0]], 0.7, by_index=True)
    theta = g.compile().energies.copy()
    first = g.compile().table_offset[4]
    theta[first:first + 9] = rng.uniform(-1, 1, 9)
    changed = fe.FactorGraph()
    changed.add_variables(range(4), 3)
    offsets = g.compile().table_offset
    for f in range(g.n_factors):
        shape = tuple(g.n_states[list(g.factor_scope(f))])
        changed.add_factor(g.factor_scope(f), theta[offsets[f]:offsets[f + 1]].reshape(shape))
    result = run(g, energies=theta)
    check_against_brute_force(changed, result, BruteForce(changed))
    assert result.energy == pytest.approx(changed.energy(result.assignment))


def test_time_limit_stops_after_the_first_iteration():
    g = fe.FactorGraph()
    g.add_variables(range(3), 2)
    g.add_factors([[0, 1], [1, 2], [2, 0]], [[1.0, 0.0], [0.0, 1.0]], by_index=True)
    g.add_factor([0], [0.0, 0.5])
    result = run(g, time_limit=1e-9, max_iter=50, tol=0.0)
    assert result.n_iter == 1 and not result.converged
    assert result.time_limited and not result.optimal
    assert result.feasible and result.energy == g.energy(result.assignment)


def test_time_limit_stops_local_search_and_bp_inside_their_rounds():
    # The deadline passed already: nothing of either starts, and both say so (no wall
    # clock is compared: a deadline of -inf has always passed).
    g = fe.FactorGraph()
    g.add_variables(range(9), 3)
    g.add_factors([[v, v + 1] for v in range(8)] + [[0, 8], [2, 6]],
                  np.random.default_rng(1).random((10, 3, 3)), by_index=True)
    cg = g.compile()
    problem = build_problem(cg, cg.energies, np.zeros(int(cg.state_offset[-1])))
    improve = _local_search(cg, cg.energies, problem)
    start = np.arange(9, dtype=np.int64) % 3
    stopped = start.copy()
    assert improve(stopped, -math.inf) is False
    assert stopped.tolist() == start.tolist()
    assert improve(stopped) is True and g.energy(stopped) <= g.energy(start)
    assert _bp_assignment(g, cg.energies, np.zeros(int(cg.state_offset[-1])), 50,
                          -math.inf) == (None, False)
    assignment, finished = _bp_assignment(g, cg.energies, np.zeros(27), 50, math.inf)
    assert finished and assignment.shape == (9,)


def test_one_state_variables_and_all_evidence():
    g = fe.FactorGraph()
    g.add_variables("abc", [1, 3, 2])
    g.add_factor(["a", "b"], [[0.5, 0.0, 2.0]])
    g.add_factor(["b", "c"], [[0.0, 1.0], [3.0, 0.0], [1.0, 1.0]])
    g.add_factor(["c", "a"], [[0.25], [0.0]])
    result = run(g)
    check_against_brute_force(g, result, BruteForce(g))
    assert result.optimal
    evidence = {"a": 0, "b": 2, "c": 1}
    result = run(g, evidence=evidence)
    assert result.assignment.tolist() == [0, 2, 1] and result.optimal
    assert result.energy == pytest.approx(g.energy(evidence))


@given(loopy_graphs(max_variables=6, max_configs=1500))
def test_bound_gathered_in_the_pass_is_the_full_dual(graph):
    # After a backward pass every coupling factor has just given its min-marginal to its
    # first variable (minimum 0), so Kolmogorov's bound (the variables' minima, gathered in
    # the pass) equals the dual objective evaluated in full.
    cg = graph.compile()
    theta = cg.energies
    problem = build_problem(cg, theta, np.zeros(int(cg.state_offset[-1])))
    sc = scratch_for(cg)
    dom = initial_domains(cg, problem.coupling_edges, problem.node_energy)
    args = (cg, theta, factor_kinds(cg, theta), cg.factor_param)
    coupling = (problem.coupling_ptr, problem.coupling_edges)
    if problem.constant == math.inf or not enforce_all(*args, *coupling, dom, sc):
        return
    v2f = np.zeros(cg.n_message_entries)
    edge_values(cg, problem.coupling_edges, dom.alive, 0.0, v2f)
    scratch = np.empty(cg.max_states)
    passes = (problem.node_energy, problem.order, *coupling, problem.before, problem.after,
              problem.weight, dom.alive, v2f)
    for _ in range(3):
        dual_pass(*args, *passes, True, sc, scratch)
        gathered = dual_pass(*args, *passes, False, sc, scratch)
        full = dual_bound(*args, problem.node_energy, problem.is_coupling, *coupling,
                          dom.alive, v2f, sc, scratch)
        assert gathered == pytest.approx(full, rel=1e-12, abs=1e-9)


@given(st.integers(0, 2**32 - 1), st.sampled_from(["potts", "linear", "quadratic"]),
       st.booleans())
def test_structured_factors_with_random_weights(seed, kind, dense):
    # Random weights per factor (negative Potts weights favour disagreement), random
    # truncations (some infinite), on a small loopy graph: against brute force.
    rng = np.random.default_rng(seed)
    n, k = 5, 3
    g = fe.FactorGraph()
    g.add_variables(range(n), k)
    g.add_factors(np.arange(n)[:, None], rng.uniform(-1, 1, (n, k)), by_index=True)
    pairs = [[i, (i + 1) % n] for i in range(n)] + [[0, 2], [1, 3]]
    if kind == "potts":
        g.add_potts_factors(pairs, rng.uniform(-1, 1, len(pairs)), by_index=True, dense=dense)
    else:
        truncation = np.where(rng.random(len(pairs)) < 0.3, np.inf,
                              rng.uniform(0, 2, len(pairs)))
        add = (g.add_truncated_linear_factors if kind == "linear"
               else g.add_truncated_quadratic_factors)
        add(pairs, rng.uniform(0, 1, len(pairs)), truncation, by_index=True, dense=dense)
    check_against_brute_force(g, run(g), BruteForce(g))
