"""Building factor graphs, evaluating energies and reading the structure."""

import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from reference import BruteForce, Model
from strategies import describe, loopy_graphs, trees

import factorgraph_ebm as fg
from factorgraph_ebm import FactorNode

any_graph = st.one_of(trees(), loopy_graphs())


def test_add_variables_returns_indices_and_states():
    g = fg.FactorGraph()
    assert g.add_variable("a", 2) == 0
    np.testing.assert_array_equal(g.add_variables(["b", "c", "d"], [3, 1, 4]), [1, 2, 3])
    np.testing.assert_array_equal(g.add_variables([("t", 0), 7], 5), [4, 5])
    assert g.n_variables == 6
    assert g.variables == ["a", "b", "c", "d", ("t", 0), 7]
    np.testing.assert_array_equal(g.n_states, [2, 3, 1, 4, 5, 5])
    assert g.n_states.dtype == np.int64
    assert g.index_of("d") == 3
    assert g.index_of(("t", 0)) == 4
    np.testing.assert_array_equal(g.index_of(["c", 7, "a"]), [2, 5, 0])
    # the variables property is a copy
    g.variables.append("zzz")
    assert g.n_variables == 6


def test_add_factor_by_names_and_add_factors_by_index_agree():
    rng = np.random.default_rng(0)
    tables = rng.normal(size=(3, 2, 3))
    one = fg.FactorGraph()
    one.add_variables(["a", "b", "c", "d"], [2, 3, 2, 3])
    two = fg.FactorGraph()
    two.add_variables(["a", "b", "c", "d"], [2, 3, 2, 3])
    three = fg.FactorGraph()
    three.add_variables(["a", "b", "c", "d"], [2, 3, 2, 3])
    scopes = [("a", "b"), ("c", "d"), ("a", "d")]
    for scope, table in zip(scopes, tables):
        one.add_factor(scope, table)
    np.testing.assert_array_equal(two.add_factors(scopes, tables), [0, 1, 2])
    np.testing.assert_array_equal(
        three.add_factors([[0, 1], [2, 3], [0, 3]], tables, by_index=True), [0, 1, 2]
    )
    for g in (one, two, three):
        assert g.n_factors == 3
        for f, scope in enumerate(scopes):
            assert g.factor_scope(f) == scope
            np.testing.assert_array_equal(g.factor_energies(f), tables[f])
    configs = BruteForce(one).configs
    np.testing.assert_array_equal(one.energy(configs), two.energy(configs))
    np.testing.assert_array_equal(one.energy(configs), three.energy(configs))


def test_add_factors_with_one_shared_table():
    g = fg.FactorGraph()
    g.add_variables(range(4), 2)
    shared = np.array([[0.0, 1.0], [2.0, 3.0]])
    g.add_factors([[0, 1], [1, 2], [2, 3]], shared, by_index=True)
    g.add_factors([(3,), (0,)], [5.0, 7.0])  # one shared unary table (not one per factor)
    assert g.n_factors == 5
    for f in range(3):
        np.testing.assert_array_equal(g.factor_energies(f), shared)
    y = [1, 0, 1, 1]
    expected = shared[1, 0] + shared[0, 1] + shared[1, 1] + 7.0 + 7.0
    assert g.energy(y) == expected


def test_table_axes_follow_the_declared_scope_order():
    g = fg.FactorGraph()
    g.add_variables(["a", "b", "c"], [2, 3, 4])
    table = np.arange(24, dtype=float).reshape(3, 4, 2)  # axes (b, c, a)
    g.add_factor(("b", "c", "a"), table)
    for a in range(2):
        for b in range(3):
            for c in range(4):
                assert g.energy({"a": a, "b": b, "c": c}) == table[b, c, a]
    assert g.energy([1, 2, 3]) == 2 * 8 + 3 * 2 + 1  # C order: last axis fastest


@given(any_graph, st.integers(0, 2**32 - 1))
def test_energy_of_one_assignment_and_of_a_batch(graph, seed):
    note(describe(graph))
    model = Model(graph)
    rng = np.random.default_rng(seed)
    batch = np.stack(
        [rng.integers(0, k, size=7) for k in graph.n_states.tolist()], axis=1
    ).reshape(7, graph.n_variables)
    expected = np.array([model.energy(tuple(y)) for y in batch])
    got = graph.energy(batch)
    assert got.shape == (7,) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    for y, e in zip(batch[:3], expected[:3]):
        single = graph.energy(y)
        assert isinstance(single, float)
        assert single == pytest.approx(e, rel=1e-12, abs=1e-12)
        as_dict = dict(zip(graph.variables, y.tolist()))
        assert graph.energy(as_dict) == pytest.approx(e, rel=1e-12, abs=1e-12)


def test_energy_of_a_forbidden_configuration_is_inf():
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(("a", "b"), [[0.0, np.inf], [1.0, 2.0]])
    np.testing.assert_array_equal(g.energy([[0, 0], [0, 1], [1, 0]]), [0.0, np.inf, 1.0])


def test_duplicate_factors_add():
    rng = np.random.default_rng(1)
    t1, t2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    t3 = rng.normal(size=(3, 2))
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], [2, 3])
    g.add_factor(("a", "b"), t1)
    g.add_factor(("a", "b"), t2)
    g.add_factor(("b", "a"), t3)  # same pair, other order
    assert g.n_factors == 3
    assert not g.is_forest()  # two factors sharing two variables form a cycle
    single = fg.FactorGraph()
    single.add_variables(["a", "b"], [2, 3])
    total = t1 + t2 + t3.T
    single.add_factor(("a", "b"), total)
    for a in range(2):
        for b in range(3):
            assert g.energy([a, b]) == pytest.approx(total[a, b], rel=1e-14)
    bf = BruteForce(g)
    assert bf.min_energy == pytest.approx(total.min())
    # min-sum on the doubled pair agrees with the summed single factor (exact on a tree)
    result = fg.min_sum(single)
    assert result.energy == pytest.approx(total.min())
    assert g.energy(result.assignment) == pytest.approx(total.min())


@given(any_graph)
def test_to_networkx_is_the_bipartite_factor_graph(graph):
    note(describe(graph))
    nxg = graph.to_networkx()
    variables = set(graph.variables)
    factors = {FactorNode(f) for f in range(graph.n_factors)}
    assert set(nxg.nodes) == variables | factors
    for name, k in zip(graph.variables, graph.n_states.tolist()):
        assert nxg.nodes[name]["bipartite"] == 0
        assert nxg.nodes[name]["n_states"] == k
    for node in factors:
        assert nxg.nodes[node]["bipartite"] == 1
    expected_edges = {
        frozenset((FactorNode(f), v)) for f in range(graph.n_factors)
        for v in graph.factor_scope(f)
    }
    assert {frozenset(e) for e in nxg.edges} == expected_edges
    assert nx.is_bipartite(nxg)
    for u, v in nxg.edges:
        assert isinstance(u, FactorNode) != isinstance(v, FactorNode)


def _union_find_structure(graph):
    """Components (as sets of variable names) and whether the bipartite graph is a forest,
    by union-find over the scopes (independent of networkx and of the compiled BFS)."""
    parent = {("v", name): ("v", name) for name in graph.variables}
    for f in range(graph.n_factors):
        parent[("f", f)] = ("f", f)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    forest = True
    for f in range(graph.n_factors):
        for name in graph.factor_scope(f):
            a, b = find(("f", f)), find(("v", name))
            if a == b:
                forest = False
            parent[a] = b
    comps = {}
    for name in graph.variables:
        comps.setdefault(find(("v", name)), set()).add(name)
    return list(comps.values()), forest


@given(any_graph)
def test_is_forest_and_components_agree_with_compile(graph):
    note(describe(graph))
    cg = graph.compile()
    comps, forest = _union_find_structure(graph)
    assert graph.is_forest() == cg.is_forest == forest
    found = graph.connected_components()
    assert len(found) == cg.n_components == len(comps)
    assert sorted(map(sorted, map(list, found)), key=repr) == sorted(
        map(sorted, map(list, comps)), key=repr
    )


@given(trees())
def test_strategy_trees_are_forests(graph):
    assert _union_find_structure(graph)[1]
    assert graph.compile().is_forest


@given(any_graph)
def test_compiled_message_layout_is_factor_by_factor_in_scope_order(graph):
    """The documented flat layout the reference's differential checks rely on."""
    cg = graph.compile()
    model = Model(graph)
    np.testing.assert_array_equal(cg.msg_offset, model.message_offsets())
    assert cg.n_message_entries == sum(graph.n_states[v] for (_, _, v) in model.edges())
    assert cg.n_energy_entries == sum(t.size for t in model.tables)
    flat = np.concatenate([t.ravel() for t in model.tables]) if model.tables else np.zeros(0)
    np.testing.assert_array_equal(cg.energies, flat)


@given(any_graph, st.booleans())
def test_compiled_index_arrays_match_their_definitions(graph, structured):
    """Every index array of the compiled graph, against its definition (module docstring of
    factorgraph_ebm.compiled) written out from the graph's factors one by one."""
    note(describe(graph))
    if structured and graph.n_variables >= 2:  # a compact block (no table) among the others
        k = int(graph.n_states[0])
        same = [v for v in range(1, graph.n_variables) if graph.n_states[v] == k]
        if same:
            graph.add_potts_factors([[0, same[0]]], 0.5, by_index=True, dense=False)
    cg = graph.compile()
    names = graph.variables
    scopes = [[names.index(v) for v in graph.factor_scope(a)] for a in range(graph.n_factors)]
    cards = graph.n_states.tolist()
    compact = set(cg.compact_factors().tolist())
    edges = [(a, v) for a, scope in enumerate(scopes) for v in scope]
    np.testing.assert_array_equal(cg.state_offset, np.cumsum([0] + cards))
    np.testing.assert_array_equal(cg.scope_ptr, np.cumsum([0] + [len(s) for s in scopes]))
    np.testing.assert_array_equal(cg.scope_vars, [v for _, v in edges])
    np.testing.assert_array_equal(cg.edge_factor, [a for a, _ in edges])
    sizes = [0 if a in compact else int(np.prod([cards[v] for v in s])) for a, s in
             enumerate(scopes)]
    np.testing.assert_array_equal(cg.table_offset, np.cumsum([0] + sizes))
    strides = [int(np.prod([cards[w] for w in s[j + 1:]])) for s in scopes for j in range(len(s))]
    np.testing.assert_array_equal(cg.edge_stride, strides)
    partner, e = [], 0
    for s in scopes:
        partner += ([e] if len(s) == 1 else [e + 1, e] if len(s) == 2 else [-1] * len(s))
        e += len(s)
    np.testing.assert_array_equal(cg.edge_partner, partner)
    for v in range(graph.n_variables):
        mine = cg.var_edges[cg.var_edge_ptr[v] : cg.var_edge_ptr[v + 1]].tolist()
        assert mine == [e for e, (_, w) in enumerate(edges) if w == v]
    assert cg.max_arity == max(map(len, scopes), default=0)
    for array in cg[:-4]:
        assert array.flags.c_contiguous and not array.flags.writeable
    assert {cg.scope_ptr.dtype, cg.var_edges.dtype, cg.msg_offset.dtype} == {np.dtype(np.int32)}


def test_compile_is_cached_until_the_graph_changes():
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(("a", "b"), np.eye(2))
    first = g.compile()
    assert g.compile() is first
    g.add_factor(("a",), [0.0, 1.0])
    second = g.compile()
    assert second is not first and second.n_factors == 2
    g.add_variable("c", 3)
    assert g.compile().n_variables == 3


def test_factor_energies_is_a_read_only_view():
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(("a", "b"), [[0.0, 1.0], [2.0, 3.0]])
    table = g.factor_energies(0)
    assert not table.flags.writeable
    with pytest.raises(ValueError):
        table[0, 0] = 5.0


def test_factor_energies_of_constant_factor():
    """Engine bug: ``factor_energies`` of a factor with an empty scope raises
    ``ValueError: Cannot set flags on array scalars`` (indexing the block's (n,) table array
    yields a NumPy scalar, whose ``.view()`` has no settable flags)."""
    g = fg.FactorGraph()
    g.add_variable("a", 2)
    g.add_factor((), 2.5)
    g.add_factors([(), ()], [1.0, -1.0])
    assert g.factor_scope(0) == ()
    table = g.factor_energies(0)
    assert np.shape(table) == () and float(table) == 2.5
    assert float(g.factor_energies(2)) == -1.0
    assert g.energy([0]) == 2.5


def test_energy_tables_are_copied_at_insertion():
    """Engine bug: ``add_factor``/``add_factors`` keep a reference to the caller's float64
    array (``np.asarray`` does not copy), so mutating it afterwards changes the graph and
    bypasses validation: a NaN written later reaches ``energy()`` and inference."""
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 2)
    table = np.zeros((2, 2))
    g.add_factor(("a", "b"), table)
    shared = np.zeros((2, 2))
    g.add_factors([("a", "b")], shared)
    table[0, 0] = np.nan
    shared[1, 1] = 7.0
    np.testing.assert_array_equal(g.factor_energies(0), np.zeros((2, 2)))
    np.testing.assert_array_equal(g.factor_energies(1), np.zeros((2, 2)))
    assert g.energy([0, 0]) == 0.0


def test_result_lookups_by_name():
    g = fg.FactorGraph()
    g.add_variables(["a", ("b", 1)], [2, 3])
    g.add_factor(("a", ("b", 1)), [[5.0, 0.0, 5.0], [5.0, 5.0, -1.0]])
    result = fg.min_sum(g)
    assert result.assignment_dict() == {"a": 1, ("b", 1): 2}
    assert result.state(("b", 1)) == 2
    np.testing.assert_allclose(result.belief("a"), [0.0, -1.0])
    np.testing.assert_allclose(result.factor_belief(0), [[5.0, 0.0, 5.0], [5.0, 5.0, -1.0]])
    with pytest.raises(fg.FactorGraphError, match="unknown variable 'zz'"):
        result.belief("zz")
    with pytest.raises(fg.FactorGraphError, match="unknown factor 3"):
        result.factor_belief(3)


def test_grid_1000_by_1000_builds_and_compiles():
    side, k = 1000, 2
    started = time.perf_counter()
    g = fg.FactorGraph()
    g.add_variables(range(side * side), k)
    ids = np.arange(side * side).reshape(side, side)
    horizontal = np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], axis=1)
    vertical = np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], axis=1)
    table = np.array([[0.0, 1.0], [1.0, 0.0]])
    g.add_factors(np.concatenate([horizontal, vertical]), table, by_index=True)
    built = time.perf_counter()
    cg = g.compile()
    compiled = time.perf_counter()
    print(f"1000x1000 grid: build {built - started:.2f} s, compile {compiled - built:.2f} s")
    n_factors = 2 * side * (side - 1)
    assert g.n_variables == cg.n_variables == side * side
    assert g.n_factors == cg.n_factors == n_factors
    assert cg.n_edges == 2 * n_factors
    assert cg.n_message_entries == 2 * n_factors * k
    assert cg.n_energy_entries == n_factors * k * k
    assert cg.n_components == 1
    assert not cg.is_forest
    assert cg.max_states == k and cg.max_arity == 2
    # spot checks of the layout: a corner has 2 factors, an interior node 4
    degree = np.diff(cg.var_edge_ptr)
    assert degree[0] == 2 and degree[side + 1] == 4
    assert degree.sum() == cg.n_edges
    np.testing.assert_array_equal(cg.energies[:8], [0.0, 1.0, 1.0, 0.0] * 2)


# ----------------------------------------------------------------- range-named variables
def _name_steps():
    """Calls of add_variables: a range (step 1, maybe empty or negative), a contiguous
    integer array, or a list of mixed names (ints, floats equal to ints, bools, strings,
    tuples) that may repeat or collide with earlier ones."""
    small_int = st.integers(-4, 12)
    run = st.tuples(small_int, st.integers(0, 6)).map(lambda p: range(p[0], p[0] + p[1]))
    array = run.filter(len).map(lambda r: np.arange(r.start, r.stop, dtype=np.int32))
    name = st.one_of(small_int, small_int.map(float), st.booleans(),
                     st.sampled_from(["a", "b", ("t", 1)]), st.just(2.5))
    return st.lists(st.one_of(run, array, st.lists(name, max_size=4)), max_size=8)


@given(_name_steps())
def test_range_names_behave_as_a_list_and_a_dict(steps):
    """Against the reference semantics (every name in a list and a dict): the same indices,
    names, lookups (3, 3.0 and np.int64(3) are one name) and the same refusals."""
    g = fg.FactorGraph()
    names, index = [], {}
    for step in steps:
        new = list(step.tolist() if isinstance(step, np.ndarray) else step)
        clash, seen = None, set(index)
        for n in new:
            if n in seen:
                clash = n
                break
            seen.add(n)
        note(f"add {step!r}; clash {clash!r}")
        if clash is not None:
            with pytest.raises(fg.FactorGraphError, match="already in the graph"):
                g.add_variables(step, 2)
            assert g.n_variables == len(names)  # nothing was added
            continue
        got = g.add_variables(step, 2)
        np.testing.assert_array_equal(got, np.arange(len(names), len(names) + len(new)))
        index.update((n, i) for i, n in enumerate(new, len(names)))
        names += new
    assert g.n_variables == len(names)
    assert g.variables == names
    assert [type(a) for a in g.variables] == [type(b) for b in names]
    for probe in [*names, *range(-6, 15), 2.5, 7.0, np.int64(3), np.float32(4), True, "a",
                  "zz", ("t", 1), None]:
        if probe in index:
            assert g.index_of(probe) == index[probe]
        else:
            with pytest.raises(fg.FactorGraphError, match="unknown variable"):
                g.index_of(probe)
    with pytest.raises(fg.FactorGraphError, match="unknown variable"):
        g.index_of([[1, 2]])  # unhashable


def test_range_named_graph_works_through_names_everywhere(tmp_path):
    """A grid named by range(n): evidence, unary, assignment dicts, marginals by name,
    writers and readers, reduction, isolated variables and the junction tree take and
    give the same names as a graph named by a list of the same ints."""
    from factorgraph_ebm.io import read_fg, read_uai, write_fg, write_uai

    rng = np.random.default_rng(1)
    n = 3
    pairs = np.array([[r * n + c, r * n + c + 1] for r in range(n) for c in range(n - 1)]
                     + [[r * n + c, r * n + c + n] for r in range(n - 1) for c in range(n)])
    tables = rng.normal(size=(len(pairs), 2, 2))
    unary = rng.normal(size=(n * n, 2))
    graphs = []
    for names in (range(n * n), list(range(n * n))):
        g = fg.FactorGraph()
        g.add_variables(names, 2)
        g.add_variable("isolated", 3)
        g.add_factors(pairs, tables, by_index=True)
        g.add_factors([[v] for v in range(n * n)], unary)
        g.add_factor([0, 1], np.zeros((2, 2)))  # a repeated scope: BP absorbs it
        graphs.append(g)
    ranged, listed = graphs
    options = dict(beta=1.0, evidence={4: 1, 5.0: 0}, unary={"isolated": [0.0, 1.0, 0.5]})
    for method in ("bp", "exact"):
        a = fg.belief_propagation(ranged, method=method, **options)
        b = fg.belief_propagation(listed, method=method, **options)
        assert a.assignment_dict() == b.assignment_dict()
        assert list(a.assignment_dict()) == [*range(n * n), "isolated"]
        assert a.state(4) == 1 and a.state(np.int64(5)) == 0
        for name in (0, 8, "isolated"):
            np.testing.assert_allclose(a.belief(name), b.belief(name), atol=1e-9)
    assert ranged.energy({**{v: 0 for v in range(n * n)}, "isolated": 2}) == pytest.approx(
        listed.energy({**{v: 0 for v in range(n * n)}, "isolated": 2}))
    assert ranged.factor_scope(0) == (0, 1) and ranged.connected_components() == \
        listed.connected_components()
    want = fg.min_sum(ranged, method="exact").energy
    for write, read, path in ((write_uai, read_uai, "r.uai"), (write_fg, read_fg, "r.fg")):
        offsets = write(tmp_path / path, ranged)  # the file's energies are E - offsets
        back = read(tmp_path / path)
        assert back.n_variables == ranged.n_variables
        got = fg.min_sum(back, method="exact").energy + offsets.sum()
        assert got == pytest.approx(want, abs=1e-9)
