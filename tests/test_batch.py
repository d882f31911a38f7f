"""Batched inference (factorgraph_ebm.batch): every item's result is the single call's.

Where a batch runs the same kernels as a single call (BP on the items in parallel, the
junction tree and TRW-S item by item), the results are compared bit for bit (same inputs,
same floating-point operations, same machine: nothing crosses exp/log/text). One test
checks a batch against brute force directly (tests/reference.py), independently of the
single calls.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from reference import BruteForce
from strategies import describe, evidence_for, loopy_graphs, trees

import factorgraph_ebm as fe
from factorgraph_ebm import _pacing
from factorgraph_ebm.batch import (
    BatchResult,
    batch_belief_propagation,
    batch_min_sum,
    batch_sum_product,
)

FIELDS = ("assignment", "energy", "variable_beliefs", "factor_beliefs", "free_energy",
          "log_partition", "converged", "n_iter", "residuals", "messages", "schedule",
          "exact", "method", "feasible", "induced_width", "lower_bound", "gap", "optimal",
          "beta")

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_same(batch_item, single, where=""):
    """Every field of two InferenceResults equal, bit for bit (NaN equal to NaN)."""
    for name in FIELDS:
        a, b = getattr(batch_item, name), getattr(single, name)
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            assert a is not None and b is not None, (where, name)
            assert a.dtype == b.dtype and a.shape == b.shape, (where, name)
            assert np.array_equal(a, b, equal_nan=True), (where, name, a, b)
        else:
            assert a == b or (a != a and b != b), (where, name, a, b)


def singles(graph, energies=None, evidence=None, unary=None, n=None, **options):
    """The single calls of a batch, item by item."""
    out = []
    for b in range(n):
        theta = None if energies is None else (energies[b] if np.ndim(energies) == 2
                                               else energies)
        ev = evidence[b] if isinstance(evidence, list) else evidence
        un = unary[b] if unary is not None and np.ndim(unary) == 2 else unary
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(fe.belief_propagation(graph, energies=theta, evidence=ev, unary=un,
                                             **options))
    return out


def perturbed(graph, n, seed, scale=1.0):
    """n energy vectors: the graph's own plus noise (its +inf entries kept)."""
    theta = graph.compile().energies
    rng = np.random.default_rng(seed)
    return theta + scale * rng.normal(size=(n, len(theta)))


def chain(n=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables([f"x{i}" for i in range(n)], k)
    for i in range(n - 1):
        g.add_factor([f"x{i}", f"x{i + 1}"], rng.normal(size=(k, k)))
    for i in range(n):
        g.add_factor([f"x{i}"], rng.normal(size=k))
    return g


def grid(n=4, k=2, seed=0, potts=False, dense=True):
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables([(i, j) for i in range(n) for j in range(n)], k)
    for i in range(n):
        for j in range(n):
            g.add_factor([(i, j)], rng.normal(size=k))
            for nb in ((i + 1, j), (i, j + 1)):
                if max(nb) < n:
                    if potts:
                        g.add_potts_factors([((i, j), nb)], float(rng.uniform(0.1, 1.0)),
                                            dense=dense)
                    else:
                        g.add_factor([(i, j), nb], rng.normal(size=(k, k)))
    return g


def run(graph, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return batch_belief_propagation(graph, **kwargs)


# --------------------------------------------------------------------------- bit for bit
@pytest.mark.parametrize("beta", [math.inf, 1.0, 0.3])
def test_tree_batch_of_energies_is_single_calls(beta):
    g = chain()
    theta = perturbed(g, 6, seed=1)
    theta[2, 5] = np.inf  # a forbidden entry in one item
    batch = run(g, beta=beta, energies=theta)
    assert isinstance(batch, BatchResult) and len(batch) == 6
    for b, single in enumerate(singles(g, theta, n=6, beta=beta)):
        assert batch[b].schedule == "tree"
        assert_same(batch[b], single, b)


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_loopy_batch_of_energies_is_single_calls(schedule, beta, damping):
    g = grid()
    theta = perturbed(g, 7, seed=2)
    options = dict(beta=beta, method="bp", schedule=schedule, max_iter=40, damping=damping)
    batch = run(g, energies=theta, **options)
    if damping == 0.0:
        assert len(set(batch.n_iter.tolist())) > 1  # items stop at their own convergence
    for b, single in enumerate(singles(g, theta, n=7, **options)):
        assert_same(batch[b], single, b)


@pytest.mark.parametrize("beta", [math.inf, 2.0])
def test_structured_factors_demoted_per_item(beta):
    # Potts factors: item 0 keeps the structure, the others lose it in some factors.
    g = grid(potts=True, k=3)
    compact = grid(potts=True, k=3, dense=False)  # no tables in theta: only unary entries
    batch = run(compact, beta=beta, energies=perturbed(compact, 3, seed=3), method="bp")
    for b, single in enumerate(singles(compact, perturbed(compact, 3, seed=3), n=3,
                                       beta=beta, method="bp")):
        assert_same(batch[b], single, b)
    cg = g.compile()
    theta = np.tile(cg.energies, (4, 1))
    rng = np.random.default_rng(3)
    for b in (1, 2, 3):
        entries = rng.choice(cg.n_energy_entries, size=5 * b, replace=False)
        theta[b, entries] += rng.normal(size=len(entries))
    for schedule in ("sequential", "parallel"):
        options = dict(beta=beta, method="bp", schedule=schedule, max_iter=30)
        batch = run(g, energies=theta, **options)
        for b, single in enumerate(singles(g, theta, n=4, **options)):
            assert_same(batch[b], single, (schedule, b))


@given(graph=trees(max_variables=6), data=st.data(), beta=st.sampled_from([math.inf, 1.0]))
@SETTINGS
def test_random_forests(graph, data, beta):
    note(describe(graph))
    n = data.draw(st.integers(1, 4))
    theta = perturbed(graph, n, seed=data.draw(st.integers(0, 2**31)), scale=0.5)
    evidence = [data.draw(evidence_for(graph)) for _ in range(n)]
    try:
        expected = singles(graph, theta, evidence, n=n, beta=beta)
    except fe.EvidenceError:
        with pytest.raises(fe.EvidenceError, match="item"):
            run(graph, beta=beta, energies=theta, evidence=evidence)
        return
    batch = run(graph, beta=beta, energies=theta, evidence=evidence)
    for b, single in enumerate(expected):
        assert_same(batch[b], single, b)


@given(graph=loopy_graphs(max_variables=5), data=st.data(),
       beta=st.sampled_from([math.inf, 1.0]),
       method=st.sampled_from(["bp", "bp", "auto", "exact"]),
       schedule=st.sampled_from(["sequential", "parallel"]))
@SETTINGS
def test_random_loopy_graphs(graph, data, beta, method, schedule):
    # Arity 0..3 factors, repeated scopes (absorbed), +inf entries, isolated variables.
    note(describe(graph))
    n = data.draw(st.integers(1, 4))
    evidence = [data.draw(evidence_for(graph)) for _ in range(n)]
    theta = graph.compile().energies if data.draw(st.booleans()) else perturbed(
        graph, n, seed=data.draw(st.integers(0, 2**31)), scale=0.5)
    options = dict(beta=beta, method=method, schedule=schedule, max_iter=25)
    try:
        expected = singles(graph, theta, evidence, n=n, **options)
    except fe.EvidenceError:
        with pytest.raises(fe.EvidenceError, match="item"):
            run(graph, energies=theta, evidence=evidence, **options)
        return
    batch = run(graph, energies=theta, evidence=evidence, **options)
    for b, single in enumerate(expected):
        assert_same(batch[b], single, b)


def test_evidence_sets_and_soft_evidence():
    g = grid(k=3)
    cg = g.compile()
    rng = np.random.default_rng(4)
    evidence = [{(0, 0): 1}, None, {(1, 2): 2, (3, 3): 0}, {}]
    unary = rng.normal(size=(4, int(cg.state_offset[-1])))
    unary[1, 3] = np.inf
    for beta in (math.inf, 1.0):
        options = dict(beta=beta, method="bp", max_iter=30)
        batch = run(g, evidence=evidence, unary=unary, **options)
        for b, single in enumerate(singles(g, None, evidence, unary, n=4, **options)):
            assert_same(batch[b], single, b)
    # One evidence set, a batch of energies; a mapping of soft evidence for every item.
    theta = perturbed(g, 3, seed=5)
    soft = {(2, 2): [0.0, 1.0, np.inf]}
    batch = run(g, energies=theta, evidence={(0, 1): 2}, unary=soft, method="bp")
    for b, single in enumerate(singles(g, theta, {(0, 1): 2}, soft, n=3, method="bp")):
        assert_same(batch[b], single, b)


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_junction_tree_and_trws_items(beta):
    g = grid(n=3, k=2)
    theta = perturbed(g, 4, seed=6)
    evidence = [{(0, 0): 1}, {(0, 0): 1}, None, {(2, 2): 0}]
    for method in ("exact", "auto") + (("trws",) if beta == math.inf else ()):
        batch = run(g, beta=beta, energies=theta, evidence=evidence, method=method)
        expected = singles(g, theta, evidence, n=4, beta=beta, method=method)
        for b, single in enumerate(expected):
            assert_same(batch[b], single, (method, b))
        assert batch[0].method == ("trws" if method == "trws" else "exact")


def test_batch_against_brute_force():
    # Not through single calls: the exact answers of each item by enumeration.
    g = chain(n=5, k=3, seed=7)
    theta = perturbed(g, 3, seed=8)
    evidence = [None, {"x2": 1}, {"x0": 0, "x4": 2}]
    for beta in (math.inf, 1.5):
        batch = batch_belief_propagation(g, beta=beta, energies=theta, evidence=evidence)
        for b in range(3):
            h = fe.FactorGraph()
            h.add_variables(g.variables, g.n_states.tolist())
            cg = g.compile()
            for f in range(g.n_factors):
                table = theta[b, cg.table_offset[f]:cg.table_offset[f + 1]]
                h.add_factor(g.factor_scope(f), table.reshape(g.factor_energies(f).shape))
            model = BruteForce(h, evidence[b])
            if beta == math.inf:
                assert batch[b].energy == pytest.approx(model.min_energy, abs=1e-12)
                for i, mm in enumerate(model.min_marginals()):
                    np.testing.assert_allclose(batch[b].min_marginals[i], mm, atol=1e-12)
            else:
                assert batch[b].log_partition == pytest.approx(model.log_z(beta), abs=1e-12)
                for i, p in enumerate(model.marginals(beta)):
                    np.testing.assert_allclose(batch[b].marginals[i], p, atol=1e-12)


def test_results_do_not_depend_on_threads_or_chunks(monkeypatch):
    g = grid()
    theta = perturbed(g, 5, seed=9)
    options = dict(beta=1.0, method="bp", schedule="parallel", max_iter=30)
    reference = run(g, energies=theta, threads=1, **options)
    monkeypatch.setattr(_pacing, "CHUNK_SECONDS", 0.0)  # one iteration / item per chunk
    chunked = run(g, energies=theta, threads=2, **options)
    for b in range(5):
        assert_same(chunked[b], reference[b], b)


def test_stacked_views_and_shortcuts():
    g = chain(n=4, k=2)
    theta = perturbed(g, 3, seed=10)
    batch = batch_min_sum(g, energies=theta)
    assert batch.assignment.shape == (3, 4) and batch.assignment.dtype == np.int64
    assert batch.energy.tolist() == [r.energy for r in batch]
    assert batch.variable_beliefs.shape == (3, 8)
    assert batch.factor_beliefs.shape == (3, g.compile().n_energy_entries)
    assert batch.log_partition is None and batch.converged.all()
    soft = batch_sum_product(g, beta=2.0, energies=theta, factor_beliefs=False,
                             free_energy=False)
    assert soft.factor_beliefs is None and soft.free_energy is None
    assert soft[0].beta == 2.0
    one = batch_belief_propagation(g)  # nothing per item: a batch of one
    assert len(one) == 1
    assert_same(one[0], fe.min_sum(g))
    # The graph's own energies (None), item by item through the junction tree and TRW-S,
    # and absorbed repeated scopes: as single calls.
    loopy = grid(n=3)
    loopy.add_factor([(0, 0), (0, 1)], [[0.0, 0.3], [0.2, 0.0]])
    for method in ("auto", "exact", "trws", "bp"):
        batch = run(loopy, evidence=[None, {(1, 1): 0}], method=method)
        for b, ev in enumerate([None, {(1, 1): 0}]):
            assert_same(batch[b], fe.min_sum(loopy, evidence=ev, method=method), method)


def test_one_warning_per_batch():
    g = grid()
    theta = perturbed(g, 5, seed=11)
    with pytest.warns(fe.ConvergenceWarning, match=r"for \d of 5 items") as caught:
        batch_belief_propagation(g, energies=theta, method="bp", max_iter=2)
    assert len([w for w in caught if issubclass(w.category, fe.ConvergenceWarning)]) == 1


# --------------------------------------------------------------------------- bad input
def test_bad_input_names_the_item():
    g = chain(n=4, k=2)
    cg = g.compile()
    theta = perturbed(g, 3, seed=12)
    theta[1, 4] = np.nan
    with pytest.raises(fe.FactorGraphError, match=r"item 1: energies\[1, 4\] \(factor"):
        batch_belief_propagation(g, energies=theta)
    with pytest.raises(fe.FactorGraphError, match=r"shape \(B, "):
        batch_belief_propagation(g, energies=np.zeros((2, 3)))
    with pytest.raises(fe.FactorGraphError, match="batch sizes disagree"):
        batch_belief_propagation(g, energies=perturbed(g, 3, 0), evidence=[None, None])
    with pytest.raises(fe.EvidenceError, match="item 1: evidence"):
        batch_belief_propagation(g, evidence=[{"x0": 1}, {"x0": 5}])
    with pytest.raises(fe.EvidenceError, match="item 0: evidence"):
        batch_belief_propagation(g, evidence=[{"nope": 1}])
    with pytest.raises(fe.FactorGraphError, match="item 1: unary"):
        unary = np.zeros((2, int(cg.state_offset[-1])))
        unary[1, 2] = -np.inf
        batch_belief_propagation(g, unary=unary)
    with pytest.raises(fe.FactorGraphError, match="empty batch"):
        batch_belief_propagation(g, evidence=[])
    with pytest.raises(fe.FactorGraphError, match="evidence must be a mapping"):
        batch_belief_propagation(g, evidence=3)
    with pytest.raises(fe.FactorGraphError, match="method='trws'"):
        batch_belief_propagation(g, beta=1.0, method="trws")


def test_benchmark_script_smoke(capsys):
    # benchmarks/batch_speed.py on tiny workloads: its table, its JSON line, and every
    # batched row identical to the loop of single calls (no timing asserted).
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "batch_speed.py"
    spec = importlib.util.spec_from_file_location("batch_speed", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    report = script.main(["--items", "5", "--size", "3", "--chain-length", "4", "--iters",
                          "5", "--repeat", "1"])
    out = capsys.readouterr()[0].strip().splitlines()
    assert out[0].startswith("| workload |") and json.loads(out[-1]) == json.loads(
        json.dumps(report))
    rows = report["rows"]
    assert {r["engine"] for r in rows} >= {"batched", "batched-1-thread", "loop",
                                           "pgmax-vmap"}
    assert all(r["identical_to_loop"] for r in rows if r["engine"].startswith("batched"))
