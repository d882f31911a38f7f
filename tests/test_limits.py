"""Size limits (issue 14): every count the engine allocates is bounded, refused before
anything is allocated with a figure, never a crash, a NumPy error or a frozen machine."""

import math
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from reference import BruteForce, logsumexp
from strategies import describe, loopy_graphs, trees

import factorgraph_ebm as fe
from factorgraph_ebm import FactorGraphError, cli, trellis
from factorgraph_ebm import _validation as V
from factorgraph_ebm.compiled import drop_isolated
from factorgraph_ebm.io import ModelFileError, read_fg, read_model, read_uai
from factorgraph_ebm.io.fg import MAX_FILE_ENTRIES

TOL = 1e-9


@pytest.fixture
def small_memory(monkeypatch):
    """A machine with 1 GiB of memory, for the checks against physical memory."""
    monkeypatch.setattr(V, "physical_memory", lambda: 2**30)


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


# --------------------------------------------------------------------------- variables
@pytest.mark.parametrize(
    "n_states, figure",
    [(2**62, "32 EiB"), (2**41, "16 TiB"), (np.uint64(2**63 + 5), "64 EiB"),
     (2.0**50, "8 PiB"), (10**30, "6.94e+12 EiB")],
    ids=["2**62", "2**41", "uint64", "float", "python int"],
)
def test_a_variable_with_too_many_states_is_refused(n_states, figure):
    g = fe.FactorGraph()
    g.add_variable("small", 2)
    with pytest.raises(FactorGraphError, match=r"variable 'big': its number of states would "
                       r"be \d+, more than MAX_ENTRIES = 2\*\*40 .*would take "
                       + re.escape(figure)):
        g.add_variable("big", n_states)
    assert g.variables == ["small"]  # nothing was added


def test_states_in_all_are_bounded():
    g = fe.FactorGraph()
    g.add_variable(3, 2**39)
    with pytest.raises(FactorGraphError, match=r"variables 4\.\.: the graph's number of states "
                       r"in all would be 1649267441664, more than MAX_ENTRIES.*12 TiB"):
        g.add_variables([4, 5], 2**39)  # 1.5 * 2**40 in all, each below the limit
    assert g.n_variables == 1


def test_a_graph_at_the_limit_is_built():
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], [2**39, 2**39])
    assert int(g.n_states.sum()) == V.MAX_ENTRIES
    with pytest.raises(FactorGraphError, match="number of states in all"):
        g.add_variable("c", 1)


def test_table_and_message_totals_are_bounded_before_compiling():
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 2**11)
    scopes = np.tile([0, 1], (2**19, 1))
    # One shared 2**22-entry table for 2**19 factors: 2**41 entries in theta at compile.
    with pytest.raises(FactorGraphError, match=r"factors 0\.\.524287: the graph's energy-table "
                       r"entries in all would be 2199023255552.*16 TiB"):
        g.add_factors(scopes, np.zeros((2**11, 2**11)), by_index=True)
    assert g.n_factors == 0
    h = fe.FactorGraph()
    h.add_variables(["a", "b"], 2**30)
    h.add_potts_factors(np.tile([0, 1], (2**9, 1)), 1.0, by_index=True, dense=False)  # 2**40
    with pytest.raises(FactorGraphError, match=r"factor 512: the graph's message entries in "
                       r"all \(states summed over the scopes\) would be 1101659111424, more "
                       r"than MAX_ENTRIES"):
        h.add_potts_factors([("a", "b")], 1.0, dense=False)
    assert h.n_factors == 2**9


def test_a_huge_broadcast_table_is_refused_before_it_is_copied():
    g = fe.FactorGraph()
    g.add_variables("abc", 2**14)
    table = np.broadcast_to(0.0, (2**14,) * 3)  # 2**42 entries, 8 bytes of memory
    with pytest.raises(FactorGraphError, match=r"factor 0 .*energies: its entries would be "
                       r"4398046511104, more than MAX_ENTRIES"):
        g.add_factor(("a", "b", "c"), table)


# --------------------------------------------------------------------------- memory
def test_inference_is_refused_when_the_model_exceeds_the_memory(small_memory):
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(["a", "b"], [[0.0, 1.0], [1.0, 0.0]])
    assert fe.min_sum(g).energy == 0.0  # a small model runs
    g.add_variable("big", 2**27)  # two float64 vectors over its states: 2 GiB
    assert g.inference_bytes() > 2**31
    with pytest.raises(FactorGraphError, match=r"inference on this graph .* needs about "
                       r"2 GiB, more than the 1 GiB of memory of this machine"):
        fe.min_sum(g)


def test_inference_bytes_follows_what_is_allocated():
    """The estimate counts at least the arrays that certainly exist: theta and the two
    message buffers of the compiled graph, two vectors over all states."""
    g = fe.FactorGraph()
    g.add_variables(range(100), 7)
    g.add_factors([[i, i + 1] for i in range(99)], np.zeros((7, 7)), by_index=True)
    cg = g.compile()
    certain = 8 * (2 * cg.n_energy_entries + 2 * cg.n_message_entries + 2 * 700)
    assert certain <= g.inference_bytes() <= 3 * certain


# --------------------------------------------------------------------------- scratch
def test_kernel_scratch_is_sized_by_the_variables_in_factors():
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 3)
    g.add_factor(["a", "b"], np.zeros((3, 3)))
    g.add_variable("big", 10**8)  # in no factor: its states are only in per-state vectors
    g.add_variable("c", 5)
    cg = g.compile()
    assert cg.max_states == 10**8
    small, kept = drop_isolated(cg)
    assert small.max_states == 3 and kept.tolist() == [0, 1]
    assert small.n_variables == 2 and small.n_components == 1
    np.testing.assert_array_equal(small.msg_offset, cg.msg_offset)  # the same messages
    h = fe.FactorGraph()
    h.add_variables(["a", "b"], 3)
    h.add_factor(["a", "b"], np.zeros((3, 3)))
    h.add_variable("small", 2)
    assert drop_isolated(h.compile())[1] is None  # nothing to gain: the graph as it is


def test_a_large_isolated_variable_is_decoded_from_its_own_energies():
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
    g.add_variable("big", 10**6)
    u = np.linspace(5.0, 0.0, 10**6)
    u[777] = -1.0
    best = fe.min_sum(g, unary={"big": u})
    assert best.assignment[2] == 777 and best.energy == pytest.approx(-1.0, abs=TOL)
    assert best.min_marginals[2][777] == pytest.approx(-1.0, abs=TOL)
    soft = fe.sum_product(g, unary={"big": u})
    pair = math.log(2 + 2 * math.exp(-1.0))
    assert soft.log_partition == pytest.approx(pair + logsumexp(-u), abs=TOL)
    assert soft.marginals[2][777] == pytest.approx(math.exp(1.0 - logsumexp(-u)), rel=1e-9)
    forbidden = fe.min_sum(g, unary={"big": np.full(10**6, np.inf)})
    assert forbidden.assignment[2] == 0 and forbidden.energy == math.inf  # ties: lowest


def _bp_runs(graph, schedules, unary=None):
    """min-sum and sum-product results of ``graph`` for each schedule."""
    runs = {}
    for schedule in schedules:
        options = dict(method="bp", schedule=schedule, max_iter=50, warn=False, unary=unary)
        runs[schedule] = (fe.min_sum(graph, **options), fe.sum_product(graph, **options))
    return runs


@settings(max_examples=40)
@given(data=st.data())
def test_isolated_variables_do_not_change_bp(data):
    """BP with a large isolated variable (run without the isolated variables:
    compiled.drop_isolated) gives the graph's own results for the other variables, and each
    isolated variable its lowest-energy state, min-marginals and Boltzmann marginals over
    its unary energies (soft evidence)."""
    graph = data.draw(st.one_of(trees(max_configs=200), loopy_graphs(max_configs=200)))
    note(describe(graph))
    schedules = ["tree", "sequential", "parallel"] if graph.is_forest() else [
        "sequential", "parallel"]
    alone = _bp_runs(graph, schedules)
    brute = BruteForce(graph) if graph.is_forest() else None
    n = graph.n_variables
    big = int(graph.n_states.max()) + data.draw(st.integers(1, 3))
    sizes = [big] + data.draw(st.lists(st.integers(1, big), max_size=2))
    names = [("isolated", j) for j in range(len(sizes))]
    graph.add_variables(names, sizes)
    assert drop_isolated(graph.compile())[0].max_states < big
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    unary = {name: np.where(rng.random(k) < 0.2, np.inf, rng.normal(size=k))
             for name, k in zip(names, sizes)}
    lowest = sum(unary[name].min() for name in names)
    log_z = sum(logsumexp(-unary[name]) for name in names)
    for schedule, (best, soft) in _bp_runs(graph, schedules, unary).items():
        best_alone, soft_alone = alone[schedule]
        np.testing.assert_array_equal(best.assignment[:n], best_alone.assignment)
        assert best.energy == pytest.approx(best_alone.energy + lowest, abs=TOL)
        for i in range(n):
            np.testing.assert_allclose(soft.marginals[i], soft_alone.marginals[i], atol=TOL)
        if soft_alone.log_partition is not None:
            assert soft.log_partition == pytest.approx(soft_alone.log_partition + log_z,
                                                       abs=1e-8)
        for j, name in enumerate(names):
            u = unary[name]
            assert best.assignment[n + j] == int(np.argmin(u))  # ties: the lowest state
            if math.isfinite(best.energy):
                np.testing.assert_allclose(best.min_marginals[n + j], u - u.min() + best.energy,
                                           rtol=1e-9, atol=TOL)
            if math.isfinite(logsumexp(-u)):
                np.testing.assert_allclose(soft.marginals[n + j], np.exp(-u - logsumexp(-u)),
                                           atol=TOL)
        if brute is not None and schedule == "tree":  # exact: against brute force as well
            assert best.energy == pytest.approx(brute.min_energy + lowest, abs=TOL)
            if brute.feasible and math.isfinite(log_z):
                assert soft.log_partition == pytest.approx(brute.log_z(1.0) + log_z, abs=1e-8)


# --------------------------------------------------------------------------- variable names
def _bytes_per_variable(add, n):
    """Bytes that a graph keeps per variable after ``add(graph)`` added ``n`` of them
    (tracemalloc: NumPy's allocations and Python objects alike)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        graph = fe.FactorGraph()
        add(graph)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert graph.n_variables == n
    return held / n, graph


@pytest.mark.parametrize("names", ["range", "continued ranges", "arange"])
def test_integer_names_cost_no_memory_per_variable(names):
    """Issue 14: the 4 million names of add_variables(range(n)) were 496 MiB of Python ints,
    a list and a dict (~124 bytes per variable); a run of integers is now one range, so a
    graph keeps its int64 number of states per variable (8 bytes) and nothing more."""
    n = 300_000
    add = {
        "range": lambda g: g.add_variables(range(n), 2),
        "continued ranges": lambda g: [g.add_variables(range(i, i + n // 3), 2)
                                       for i in range(0, n, n // 3)],
        "arange": lambda g: g.add_variables(np.arange(n), 2),
    }[names]
    per_variable, graph = _bytes_per_variable(add, n)
    assert per_variable < 16, per_variable  # generous: 8 of them are n_states
    assert graph.index_of(n - 1) == n - 1 and graph.factor_scope(
        graph.add_factor([n - 1, 0], np.zeros((2, 2)))) == (n - 1, 0)
    # The reference: names that are not a run take a list and a dict entry each.
    listed, _ = _bytes_per_variable(lambda g: g.add_variables(list(range(n)), 2), n)
    assert listed > 4 * per_variable, (listed, per_variable)


def test_compiling_keeps_no_second_copy_of_the_scopes():
    """The graph's factor scopes become views of the compiled scope_vars (like its tables
    of theta): after compiling, they take no memory of their own."""
    n = 100_000
    g = fe.FactorGraph()
    g.add_variables(range(n), 2)
    pairs = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    g.add_factors(pairs, np.zeros((n - 1, 2, 2)), by_index=True)
    cg = g.compile()
    scopes = g._blocks[0].scopes
    assert np.shares_memory(scopes, cg.scope_vars) and not scopes.flags.writeable
    np.testing.assert_array_equal(scopes, pairs)
    assert g.factor_scope(n - 2) == (n - 2, n - 1)
    g.add_factor([0, 2], np.zeros((2, 2)))  # recompiled: a new layout, the same scopes
    assert g.compile().scope_vars[-2:].tolist() == [0, 2]
    np.testing.assert_array_equal(g._blocks[0].scopes, pairs)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_factor_beliefs_from_totals_equal_those_from_variable_messages(seed):
    """BP frees the variable-to-factor buffer before the factor beliefs (the peak of a
    large call) and makes each incoming message as the variable's total less the factor's
    own message: the same beliefs as from m_{i->a} = U_i + sum_{b != a} m_{b->i}, with
    +inf wherever an infinite term is left (never inf - inf)."""
    from factorgraph_ebm import messages as K

    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables(range(5), rng.integers(1, 4, size=5))
    for arity in (1, 2, 3, 2, 3, 1):
        scope = rng.choice(5, size=arity, replace=False).tolist()
        shape = tuple(g.n_states[scope])
        table = np.where(rng.random(shape) < 0.2, np.inf, rng.normal(size=shape))
        g.add_factor(scope, table)
    cg = g.compile()
    n_states = int(cg.state_offset[-1])
    unary = np.where(rng.random(n_states) < 0.2, np.inf, rng.normal(size=n_states))
    f2v = np.where(rng.random(cg.n_message_entries) < 0.3, np.inf,
                   rng.normal(size=cg.n_message_entries))
    total, n_inf = np.empty(n_states), np.empty(n_states, dtype=np.int32)
    K.variable_totals(unary, cg.n_states, cg.state_offset, cg.var_edge_ptr, cg.var_edges,
                      cg.msg_offset, 0, cg.n_variables, f2v, total, n_inf)
    got = np.empty(cg.n_energy_entries)
    K.factor_beliefs(cg, cg.energies, f2v, total, n_inf, 0.0, False, True, got)
    # The reference, factor by factor, from the variable-to-factor messages.
    want = []
    for a in range(cg.n_factors):
        edges = range(cg.scope_ptr[a], cg.scope_ptr[a + 1])
        table = np.array(g.factor_energies(a), dtype=float)
        for axis, e in enumerate(edges):
            i = cg.scope_vars[e]
            lo = cg.state_offset[i]
            message = unary[lo : cg.state_offset[i + 1]].copy()
            for e2 in cg.var_edges[cg.var_edge_ptr[i] : cg.var_edge_ptr[i + 1]]:
                if e2 != e:
                    message += f2v[cg.msg_offset[e2] : cg.msg_offset[e2 + 1]]
            shape = [1] * table.ndim
            shape[axis] = -1
            table = np.where(table < np.inf, table + message.reshape(shape), np.inf)
        want.append(table.reshape(-1))
    want = np.concatenate(want)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], atol=1e-12)


# --------------------------------------------------------------------------- compact factors
@pytest.mark.parametrize("add", ["add_potts_factors", "add_truncated_linear_factors",
                                 "add_truncated_quadratic_factors"])
def test_compact_structured_factors_insert_in_constant_memory(add):
    """K = 30,000: inserting took 4.2 s and 1.8 GB (a K x K boolean table); now O(1)."""
    k = 30_000
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], k)
    tracemalloc.start()
    try:
        getattr(g, add)([("a", "b"), ("b", "a")], 2.0, dense=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak  # K x K booleans would be 900 MB
    assert g.compile().n_energy_entries == 0
    with pytest.raises(FactorGraphError, match="weight must be finite|weight must be not"):
        getattr(g, add)([("a", "b")], np.nan, dense=False)


def test_compact_potts_with_many_states_runs():
    k = 30_000
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], k)
    g.add_potts_factors([("a", "b")], 2.0, dense=False)
    u = np.zeros(k)
    u[12345] = -3.0
    best = fe.min_sum(g, unary={"a": u})
    assert best.assignment.tolist() == [12345, 12345] and best.energy == pytest.approx(-3.0)


# --------------------------------------------------------------------------- files
def test_uai_cardinality_beyond_the_limit_is_a_model_file_error(tmp_path):
    path = tmp_path / "big.uai"
    path.write_text("MARKOV\n1\n4611686018427387904\n0\n")
    assert path.stat().st_size == 31
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:3: expected the "
                       r"cardinality of variable 0 \(an integer in 1\.\.MAX_ENTRIES = 2\*\*40\), "
                       r"found 4611686018427387904: .* 32 EiB"):
        read_uai(path)
    path.write_text("MARKOV\n3\n2\n549755813888\n549755813888 549755813888\n0\n")
    with pytest.raises(ModelFileError, match=r":5: expected at most MAX_ENTRIES = 2\*\*40 "
                       r"states in all, found 1099511627778 with variable 2: .* 8 TiB"):
        read_uai(path)


def test_uai_tables_beyond_the_limit_are_refused_before_reading(tmp_path):
    path = tmp_path / "wide.uai"
    path.write_text("MARKOV\n3\n65536 65536 65536\n1\n3 0 1 2\n281474976710656\n1 2 3\n")
    with pytest.raises(ModelFileError, match=r":6: expected at most MAX_ENTRIES = "
                       r"1099511627776 table entries in all, found 281474976710656 with the "
                       r"table of factor 0: the tables would take 2 PiB as float64"):
        read_uai(path)


def test_fg_budget_counts_the_dense_entries_of_the_whole_file(tmp_path):
    # Two factors of 6 dense entries each, one listed entry each.
    text = "2\n\n2\n0 1\n2 3\n1\n0 0.5\n\n2\n1 2\n3 2\n1\n5 2.0\n"
    path = tmp_path / "two.fg"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:11: expected at most "
                       r"max_entries = 10 table entries in all, found 12 with the table of "
                       r"factor 1: the tables would take 96 B as float64; raise max_entries"):
        read_fg(path, max_entries=10)
    g = read_fg(path, max_entries=12)
    assert g.compile().n_energy_entries == 12
    expected = np.full((2, 3), np.inf)
    expected[0, 0] = -math.log(0.5)
    np.testing.assert_allclose(g.factor_energies(0), expected)
    second = np.full((3, 2), np.inf)
    second[2, 1] = -math.log(2.0)  # libDAI index 5 of (3, 2): first variable fastest
    np.testing.assert_allclose(g.factor_energies(1), second)
    assert read_model(path, max_entries=12).compile().n_energy_entries == 12
    with pytest.raises(ModelFileError, match="max_entries = 10 "):
        read_model(path, max_entries=10)
    with pytest.raises(FactorGraphError, match="max_entries must be an integer"):
        read_fg(path, max_entries=2.5)


def test_a_tiny_fg_file_cannot_ask_for_a_gigabyte(tmp_path, capsys):
    path = tmp_path / "tiny.fg"
    path.write_text("1\n1\n0\n134217728\n0\n")  # 18 bytes, 2**27 dense entries (1 GiB)
    with pytest.raises(ModelFileError, match=rf":4: expected at most max_entries = "
                       rf"{MAX_FILE_ENTRIES} table entries in all, found 134217728 .* 1 GiB"):
        read_fg(path)
    status, out, err = run(capsys, "info", path)
    assert status == 2 and out == "" and "Traceback" not in err
    assert "1 GiB" in err and "--max-entries" in err
    path.write_text("1\n1\n0\n1000\n0\n")
    status, out, err = run(capsys, "info", path, "--max-entries", 999)
    assert status == 2 and "max_entries = 999" in err
    assert run(capsys, "info", path, "--max-entries", 1000)[0] == 0


def test_cli_refuses_huge_models_with_a_figure(tmp_path, capsys, small_memory):
    path = tmp_path / "big.uai"
    path.write_text("MARKOV\n1\n4611686018427387904\n0\n")
    for task in ("info", "map"):
        status, out, err = run(capsys, task, path)
        assert status == 2 and out == "" and "Traceback" not in err
        assert "32 EiB" in err
    path.write_text("MARKOV\n1\n134217728\n0\n")  # fits the limits, not 1 GiB of memory
    status, out, err = run(capsys, "map", path)
    assert status == 2 and "Traceback" not in err
    assert re.search(r"needs about 2 GiB, more than the 1 GiB of memory", err)


def test_cli_maps_memory_error_to_exit_2_with_the_size(tmp_path, capsys, monkeypatch):
    path = tmp_path / "m.uai"
    path.write_text("MARKOV\n2\n2 2\n1\n2 0 1\n4 1 2 3 4\n")

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 TiB for an array with shape (1,)")

    monkeypatch.setattr(cli, "run_inference", out_of_memory)
    status, out, err = run(capsys, "map", path)
    assert status == 2 and "Traceback" not in err
    assert err.startswith("fgebm: error: out of memory (Unable to allocate 3.00 TiB")
    assert re.search(r"this model needs about \d+ B for belief propagation", err)
    monkeypatch.setattr(cli, "read_model", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    status, out, err = run(capsys, "info", path)
    assert status == 2 and err.startswith("fgebm: error: out of memory (MemoryError)")


# --------------------------------------------------------------------------- trellis
def test_kbest_with_an_enormous_k_is_refused(small_memory):
    unary, transition = np.zeros((3, 2)), np.zeros((2, 2))
    with pytest.raises(FactorGraphError, match=r"kbest: k = 1000000000000 paths times the "
                       r"tokens would be 3000000000000, more than MAX_ENTRIES.*21.8 TiB"):
        trellis.kbest(unary, transition, k=10**12)
    with pytest.raises(FactorGraphError, match=r"kbest with k = 10000000 \(1 sequences of up "
                       r"to 3 tokens, K = 2\) needs about 1.42 GiB, more than the 1 GiB"):
        trellis.kbest(unary, transition, k=10**7)
    few = trellis.kbest(unary, transition, k=10)  # only 8 paths: rows 8, 9 are +inf
    assert few.energy[0, :8].tolist() == [0.0] * 8 and few.energy[0, 8:].tolist() == [np.inf] * 2
