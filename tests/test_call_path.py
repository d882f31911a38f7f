"""The work of a BP call after its iterations (issues 14 and 16): decoding in a
cache-friendly order from the factor-to-variable messages alone, the variables' totals with
saturated int8 counts, factor beliefs normalized in their own pass, and per-state zeros
that cost no resident memory. Each against a reference written independently."""

import math

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st

import factorgraph_ebm as fe
from factorgraph_ebm import messages as K

INF = math.inf


def _random_graph(rng, integer=True):
    """A loopy graph of 3..7 variables (1..3 states) numbered at random, with factors of
    arity 1..3 (some +inf entries), a ring for the cycle, and a compact Potts factor;
    integer energies when ``integer`` (so that every sum below is exact)."""
    n = int(rng.integers(3, 8))
    g = fe.FactorGraph()
    names = [f"v{i}" for i in rng.permutation(n)]
    g.add_variables(names, rng.integers(1, 4, size=n))

    def table(shape):
        values = rng.integers(0, 5, size=shape).astype(float) if integer else rng.normal(
            size=shape)
        return np.where(rng.random(shape) < 0.15, INF, values)

    for a in range(n):  # a ring
        scope = [names[a], names[(a + 1) % n]]
        g.add_factor(scope, table(tuple(g.n_states[[a, (a + 1) % n]])))
    for _ in range(int(rng.integers(0, 6))):
        arity = int(rng.integers(1, 4))
        idx = rng.choice(n, size=arity, replace=False)
        g.add_factor([names[i] for i in idx], table(tuple(g.n_states[idx])))
    pair = rng.choice(n, size=2, replace=False)
    if g.n_states[pair[0]] == g.n_states[pair[1]]:
        g.add_potts_factors([[names[pair[0]], names[pair[1]]]], 2.0, dense=False)
    return g


def _messages(rng, cg, integer=True):
    """Random per-state energies and factor-to-variable messages, some +inf."""
    def draw(size):
        values = rng.integers(0, 4, size=size).astype(float) if integer else rng.normal(
            size=size)
        return np.where(rng.random(size) < 0.1, INF, values)
    return draw(int(cg.state_offset[-1])), draw(cg.n_message_entries)


def _reference_decode(g, cg, unary, f2v):
    """Decoding at T = 0 written directly: in ``cg.var_order``, each variable's score is
    U_i plus, per factor, the minimum over the factor's other variables of its table plus
    their variable-to-factor messages (U_j + the other incoming messages), the decoded
    ones clamped; the first lowest state, at a dead end that of the beliefs, then U_i."""
    assignment = -np.ones(cg.n_variables, dtype=np.int64)

    def states(i):
        return slice(cg.state_offset[i], cg.state_offset[i + 1])

    def to_factor(j, edge):
        message = unary[states(j)].copy()
        for e2 in cg.var_edges[cg.var_edge_ptr[j] : cg.var_edge_ptr[j + 1]]:
            if e2 != edge:
                message = message + f2v[cg.msg_offset[e2] : cg.msg_offset[e2 + 1]]
        return message

    for i in cg.var_order:
        score = unary[states(i)].copy()
        for e in cg.var_edges[cg.var_edge_ptr[i] : cg.var_edge_ptr[i + 1]]:
            a = cg.edge_factor[e]
            edges = list(range(cg.scope_ptr[a], cg.scope_ptr[a + 1]))
            table = np.array(g.factor_energies(a), dtype=float).reshape(
                [cg.n_states[cg.scope_vars[e2]] for e2 in edges])
            for axis, e2 in enumerate(edges):
                if e2 == e:
                    continue
                j = cg.scope_vars[e2]
                shape = [1] * table.ndim
                shape[axis] = -1
                if assignment[j] >= 0:
                    keep = np.full(cg.n_states[j], INF)
                    keep[assignment[j]] = 0.0
                    table = table + keep.reshape(shape)
                else:
                    table = table + to_factor(j, e2).reshape(shape)
            target = edges.index(e)
            others = tuple(q for q in range(table.ndim) if q != target)
            score = score + (table.min(axis=others) if others else table)
        if np.isinf(score.min()):
            score = unary[states(i)].copy()
            for e2 in cg.var_edges[cg.var_edge_ptr[i] : cg.var_edge_ptr[i + 1]]:
                score = score + f2v[cg.msg_offset[e2] : cg.msg_offset[e2 + 1]]
            if np.isinf(score.min()):
                score = unary[states(i)]
        assignment[i] = int(np.argmin(score))
    return assignment


def _decode(cg, unary, f2v, order, temperature):
    assignment = np.empty(cg.n_variables, dtype=np.int64)
    kinds = cg.factor_kind
    if cg.max_arity <= 2 and not kinds.any():
        kinds = None
    v2f = np.full(cg.n_message_entries, np.nan)  # never read before written
    total, n_inf = np.empty(len(unary)), np.empty(len(unary), dtype=np.int8)
    K.belief_totals(cg, unary, f2v, total, n_inf)
    K.decode(cg, cg.energies, kinds, cg.factor_param, unary, v2f, f2v, total, n_inf, order,
             temperature, assignment, K.scratch(cg))
    return assignment


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_decode_equals_the_rule_written_directly_in_either_order(seed):
    rng = np.random.default_rng(seed)
    g = _random_graph(rng)
    cg = g.compile()
    unary, f2v = _messages(rng, cg)
    note(f"{g!r}, order {cg.var_order.tolist()}")
    want = _reference_decode(g, cg, unary, f2v)
    for order in (cg.var_order, K.decode_order(cg)):
        np.testing.assert_array_equal(_decode(cg, unary, f2v, order, 0.0), want)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_decode_order_keeps_the_breadth_first_result_at_any_temperature(seed):
    rng = np.random.default_rng(seed)
    g = _random_graph(rng, integer=False)
    cg = g.compile()
    unary, f2v = _messages(rng, cg, integer=False)
    order = K.decode_order(cg)
    for temperature in (0.0, 0.7):
        np.testing.assert_array_equal(_decode(cg, unary, f2v, order, temperature),
                                      _decode(cg, unary, f2v, cg.var_order, temperature))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_decode_order_is_an_order_with_the_same_precedence_between_neighbours(seed):
    rng = np.random.default_rng(seed)
    cg = _random_graph(rng).compile()
    order = K.decode_order(cg)
    if not len(order):
        order = np.arange(cg.n_variables)
    assert sorted(order.tolist()) == list(range(cg.n_variables))
    old = np.empty(cg.n_variables, dtype=np.int64)
    old[cg.var_order] = np.arange(cg.n_variables)
    new = np.empty(cg.n_variables, dtype=np.int64)
    new[order] = np.arange(cg.n_variables)
    for a in range(cg.n_factors):
        scope = cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]]
        for u in scope:
            for v in scope:
                assert (old[u] < old[v]) == (new[u] < new[v])


def test_decode_order_of_a_grid_numbered_row_by_row_is_the_index_order():
    g = fe.FactorGraph()
    g.add_variables(range(20), 2)
    pairs = [(r * 5 + c, r * 5 + c + 1) for r in range(4) for c in range(4)]
    pairs += [(r * 5 + c, r * 5 + c + 5) for r in range(3) for c in range(5)]
    g.add_factors(pairs, np.eye(2))
    cg = g.compile()
    assert not np.array_equal(cg.var_order, np.arange(20))  # breadth-first differs
    assert K.decode_order(cg).size == 0  # empty: the index order, no memory


def test_belief_totals_saturate_counts_where_variable_totals_count():
    """A variable of degree 300 (more than int8 holds) with many +inf messages."""
    rng = np.random.default_rng(3)
    g = fe.FactorGraph()
    g.add_variables(range(301), 2)
    g.add_factors([(0, j) for j in range(1, 301)], np.zeros((300, 2, 2)))
    cg = g.compile()
    unary, f2v = _messages(rng, cg, integer=False)
    f2v[rng.random(len(f2v)) < 0.5] = INF
    n = len(unary)
    total, n_inf = np.empty(n), np.empty(n, dtype=np.int32)
    K.variable_totals(unary, cg.n_states, cg.state_offset, cg.var_edge_ptr, cg.var_edges,
                      cg.msg_offset, 0, cg.n_variables, f2v, total, n_inf)
    total8, n_inf8 = np.empty(n), np.empty(n, dtype=np.int8)
    K.belief_totals(cg, unary, f2v, total8, n_inf8)
    assert n_inf.max() > 127
    np.testing.assert_array_equal(n_inf8, np.minimum(n_inf, 2))
    np.testing.assert_allclose(total8, total, rtol=0, atol=1e-12)
    beliefs = np.empty(n)
    K.variable_beliefs(cg, unary, f2v, beliefs)
    K.beliefs_from_totals(total8, n_inf8)
    np.testing.assert_array_equal(np.isinf(total8), np.isinf(beliefs))
    finite = np.isfinite(beliefs)
    np.testing.assert_allclose(total8[finite], beliefs[finite], rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.5, 2.0]))
def test_factor_beliefs_normalized_in_their_pass(seed, temperature):
    """``normalize=True``: the beliefs normalize_segments makes of the raw ones, and the
    same Bethe term as from the raw ones."""
    rng = np.random.default_rng(seed)
    cg = _random_graph(rng, integer=False).compile()
    unary, f2v = _messages(rng, cg, integer=False)
    n = len(unary)
    total, n_inf = np.empty(n), np.empty(n, dtype=np.int8)
    K.belief_totals(cg, unary, f2v, total, n_inf)
    raw = np.empty(cg.n_energy_entries)
    term_raw = K.factor_beliefs(cg, cg.energies, f2v, total, n_inf, temperature, True, True,
                                raw)
    shift = float(rng.normal())
    want = np.empty_like(raw)
    K.normalize_segments(raw, cg.table_offset, temperature, shift, want)
    got = np.empty_like(raw)
    term = K.factor_beliefs(cg, cg.energies, f2v, total, n_inf, temperature, True, True,
                            got, normalize=True, shift=shift)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-12)
    if temperature == 0.0:
        assert term == term_raw == 0.0
    else:
        assert term == term_raw or math.isclose(term, term_raw, rel_tol=1e-12, abs_tol=1e-12)


def test_untouched_zeros_are_writable_contiguous_float64_zeros():
    for n in (0, 5, 2**18, 2**21 + 3):
        z = K.untouched_zeros(n)
        assert z.shape == (n,) and z.dtype == np.float64
        assert z.flags.c_contiguous and z.flags.writeable
        assert not z.any()
        if n:
            z[-1] = 1.5
            assert z.sum() == 1.5
