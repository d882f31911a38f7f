"""The sequential schedule's sweep from per-variable totals (messages.sequential_sweep)
against the textbook sequential update: each factor's incoming messages summed afresh from
its variables' current messages (factor_sweep in MODE_FRESH), in the same order."""

import math

import numpy as np
import pytest

import factorgraph_ebm as fg
from factorgraph_ebm import messages as K
from factorgraph_ebm.messages import schedules as S
from factorgraph_ebm.structured import KIND_DENSE


def _mixed_graph(seed, side=5, k=4, inf_share=0.1, truncated=True):
    """A grid of unary, Potts, truncated linear (or, without ``truncated``, Potts again),
    dense pairwise (some +inf entries) and triple factors, and one constant factor."""
    rng = np.random.default_rng(seed)
    n = side * side
    g = fg.FactorGraph()
    g.add_variables(range(n), k)
    unary = rng.random((n, k))
    unary[rng.random(unary.shape) < inf_share] = np.inf
    unary[:, 0] = rng.random(n)  # every variable keeps a finite state
    g.add_factors(np.arange(n)[:, None], unary, by_index=True)
    index = np.arange(n).reshape(side, side)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    g.add_potts_factors(horizontal[::2], 0.4, by_index=True)
    if truncated:
        g.add_truncated_linear_factors(horizontal[1::2], 0.3, 1.0, by_index=True, dense=False)
    else:
        g.add_potts_factors(horizontal[1::2], 0.7, by_index=True)
    tables = rng.random((len(vertical), k, k))
    tables[rng.random(tables.shape) < inf_share / 2] = np.inf
    g.add_factors(vertical, tables, by_index=True)
    triples = np.stack([index[:-1, :-1].ravel(), index[1:, :-1].ravel(),
                        index[:-1, 1:].ravel()], 1)[::5]
    g.add_factors(triples, rng.random((len(triples), k, k, k)), by_index=True)
    g.add_factor((), 1.5)
    return g


def _forbid_first_states(cg, rng):
    """The energies with state 1 of the first scope variable forbidden in every other
    dense pairwise and arity-3 table (all +inf along it): such a factor's first new message
    is +inf there although all totals were finite."""
    theta = cg.energies.copy()
    for a in range(cg.n_factors):
        arity = cg.scope_ptr[a + 1] - cg.scope_ptr[a]
        lo, hi = cg.table_offset[a], cg.table_offset[a + 1]
        if arity in (2, 3) and cg.factor_kind[a] == KIND_DENSE and hi > lo \
                and rng.random() < 0.5:
            table = theta[lo:hi].reshape(cg.n_states[cg.scope_vars[cg.scope_ptr[a]]], -1)
            table[1] = np.inf
    return theta


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize("damping", [0.0, 0.5])
@pytest.mark.parametrize("warm", [False, True])
def test_sweep_from_totals_is_the_textbook_sequential_sweep(seed, beta, damping, warm):
    """Cold: from zero messages, with +inf entries and evidence. Warm: from random finite
    messages, with rows of +inf in tables and no other +inf, so that a message first
    becomes +inf in the middle of a sweep whose totals were all finite (a bug of the
    finite path once counted the other variable's old message twice there)."""
    # Warm: no other +inf and only factors of the finite path's own kernels (no truncated
    # linear ones, which go through factor_sweep's general rules), so the sweep is on the
    # finite path when it meets the first +inf message.
    cg = _mixed_graph(seed, inf_share=0.0 if warm else 0.1, truncated=not warm).compile()
    temperature = 0.0 if math.isinf(beta) else 1.0 / beta
    unary = np.zeros(int(cg.state_offset[-1]))
    if not warm:
        unary[cg.state_offset[3] + 1 : cg.state_offset[4]] = np.inf  # evidence: state 0
    order = S.sequential_order(cg)
    rng = np.random.default_rng(seed)
    energies = _forbid_first_states(cg, rng) if warm else cg.energies
    fast = rng.uniform(0.0, 2.0, cg.n_message_entries) if warm else \
        np.zeros(cg.n_message_entries)
    slow = fast.copy()
    v2f = np.zeros_like(fast)
    sweeps = S.schedule("sequential", cg, energies, cg.factor_kind, cg.factor_param, unary,
                        fast, v2f, temperature, damping, 0.0)
    work = K.scratch(cg)
    no_totals = (np.empty(0), np.empty(0, dtype=np.int32))
    for _ in range(5):
        fast_change = np.empty(1)
        sweeps.run(fast_change)
        slow_change = K.factor_sweep(
            energies, cg.factor_kind, cg.factor_param, unary, cg.n_states, cg.state_offset,
            cg.scope_ptr, cg.scope_vars, cg.edge_stride, cg.msg_offset, cg.table_offset,
            cg.var_edge_ptr, cg.var_edges, order, 0, len(order), K.MODE_FRESH, slow,
            np.zeros_like(slow), *no_totals, temperature, damping, K.unclamped(cg),
            work.counter, work.lowest, work.new, np.empty(0), work.env_v, work.env_z,
            work.lows,
        )
        # The same infinities; finite messages within rounding (a total minus a message
        # against a fresh sum: a few ulps of the largest term).
        np.testing.assert_array_equal(np.isinf(fast), np.isinf(slow))
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
        assert fast_change[0] == pytest.approx(slow_change, rel=1e-9, abs=1e-12)
        slow[:] = fast  # compare sweep by sweep, not trajectories


def test_sequential_order_is_by_block_then_factor_with_unary_factors_first_in_place():
    g = fg.FactorGraph()
    g.add_variables(range(4), 2)
    g.add_factor((), 1.0)
    for scope in ([3, 1], [2], [0, 3], [1], [1, 2]):
        g.add_factor(scope, np.zeros((2,) * len(scope)))
    g.add_factor((), 2.0)
    cg = g.compile()
    order = S.sequential_order(cg)
    assert not order.flags.writeable
    # Spans 2, 3, 1: blocks of 2 variables. Constant factors first; block 0 (lowest
    # variable 0 or 1) by factor index, the unary factor of variable 1 (4) just before
    # the first factor whose lowest variable is 1 (1); block 1: the unary factor of
    # variable 2, which is no factor's lowest variable.
    assert S.block_width(cg) == 2
    assert order.tolist() == [0, 6, 4, 1, 3, 5, 2]


def _textbook_sweeps(cg, order, n_sweeps):
    """Messages after ``n_sweeps`` textbook sequential sweeps (MODE_FRESH) in ``order``."""
    f2v = np.zeros(cg.n_message_entries)
    work = K.scratch(cg)
    no_totals = (np.empty(0), np.empty(0, dtype=np.int32))
    for _ in range(n_sweeps):
        K.factor_sweep(
            cg.energies, cg.factor_kind, cg.factor_param, np.zeros(int(cg.state_offset[-1])),
            cg.n_states, cg.state_offset, cg.scope_ptr, cg.scope_vars, cg.edge_stride,
            cg.msg_offset, cg.table_offset, cg.var_edge_ptr, cg.var_edges, order, 0,
            len(order), K.MODE_FRESH, f2v, np.zeros_like(f2v), *no_totals, 0.0, 0.0,
            K.unclamped(cg), work.counter, work.lowest, work.new, np.empty(0), work.env_v,
            work.env_z, work.lows,
        )
    return f2v


@pytest.mark.parametrize("shape", [(5, 7), (7, 4)])
def test_block_order_on_a_grid_sends_the_raster_scans_messages(shape):
    # On a grid numbered row by row the blocks are rows (unary and horizontal factors,
    # then vertical ones), and each factor sees the same new and old messages as in the
    # raster scan by lowest variable (ties by factor index): the same messages.
    height, width = shape
    rng = np.random.default_rng(height)
    n = height * width
    g = fg.FactorGraph()
    g.add_variables(range(n), 3)
    g.add_factors(np.arange(n)[:, None], rng.random((n, 3)), by_index=True)
    index = np.arange(n).reshape(height, width)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    scopes = np.concatenate([horizontal, vertical])
    g.add_factors(scopes, rng.random((len(scopes), 3, 3)), by_index=True)
    cg = g.compile()
    assert S.block_width(cg) == width
    lowest = np.minimum.reduceat(cg.scope_vars, cg.scope_ptr[:-1])
    raster = np.argsort(lowest, kind="stable").astype(cg.factor_order.dtype)
    blocked = S.sequential_order(cg)
    assert not np.array_equal(blocked, raster)
    np.testing.assert_allclose(_textbook_sweeps(cg, blocked, 3),
                               _textbook_sweeps(cg, raster, 3), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_triple_min_sum_is_the_generic_message_and_brute_force(seed):
    # The one-pass arity-3 min-sum rule against the counter walk of generic_message (the
    # same sums in the same order: equal) and numpy's minima, with +inf entries and +inf
    # incoming messages.
    from factorgraph_ebm.messages.generic import generic_message, triple_min_sum

    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 5, size=3))
    g = fg.FactorGraph()
    g.add_variables(range(3), list(shape))
    table = rng.random(shape)
    table[rng.random(shape) < 0.2] = np.inf
    g.add_factor([0, 1, 2], table)
    cg = g.compile()
    v2f = rng.random(cg.n_message_entries)
    v2f[rng.random(len(v2f)) < 0.2] = np.inf
    m = cg.msg_offset
    stride = max(shape)
    new = np.full(3 * stride, np.nan)
    triple_min_sum(cg.energies, cg.table_offset[0], *shape, v2f, m[0], m[1], m[2], new, stride)
    incoming = [v2f[m[q]:m[q + 1]] for q in range(3)]
    work = K.scratch(cg)
    for q in range(3):
        out = np.empty(stride)
        generic_message(cg.energies, cg.n_states, cg.scope_ptr, cg.scope_vars, cg.msg_offset,
                        cg.table_offset, v2f, q, 0, 0.0, K.unclamped(cg), out, work.counter,
                        work.lowest)
        mine = new[q * stride:q * stride + shape[q]]
        np.testing.assert_array_equal(mine, out[:shape[q]])
        others = [p for p in range(3) if p != q]
        z = table.copy()
        for p in others:
            z = z + incoming[p].reshape([-1 if r == p else 1 for r in range(3)])
        expected = z.min(axis=tuple(others))
        np.testing.assert_allclose(mine, expected, rtol=1e-12, atol=1e-12)
