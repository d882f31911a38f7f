"""The sequential schedule's sweep from per-variable totals (messages.sequential_sweep)
against the textbook sequential update: each factor's incoming messages summed afresh from
its variables' current messages (factor_sweep in MODE_FRESH), in the same order."""

import math

import numpy as np
import pytest

import factorgraph_ebm as fg
from factorgraph_ebm import messages as K
from factorgraph_ebm.messages import schedules as S


def _mixed_graph(seed, side=5, k=4, inf_share=0.1):
    """A grid of unary, Potts, truncated linear, dense pairwise (some +inf entries) and
    triple factors, and one constant factor."""
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
    g.add_truncated_linear_factors(horizontal[1::2], 0.3, 1.0, by_index=True, dense=False)
    tables = rng.random((len(vertical), k, k))
    tables[rng.random(tables.shape) < inf_share / 2] = np.inf
    g.add_factors(vertical, tables, by_index=True)
    triples = np.stack([index[:-1, :-1].ravel(), index[1:, :-1].ravel(),
                        index[:-1, 1:].ravel()], 1)[::5]
    g.add_factors(triples, rng.random((len(triples), k, k, k)), by_index=True)
    g.add_factor((), 1.5)
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_sweep_from_totals_is_the_textbook_sequential_sweep(seed, beta, damping):
    cg = _mixed_graph(seed).compile()
    temperature = 0.0 if math.isinf(beta) else 1.0 / beta
    unary = np.zeros(int(cg.state_offset[-1]))
    unary[cg.state_offset[3] + 1 : cg.state_offset[4]] = np.inf  # evidence: state 0
    order = S.sequential_order(cg)
    fast = np.zeros(cg.n_message_entries)
    slow = fast.copy()
    v2f = np.zeros_like(fast)
    sweeps = S.schedule("sequential", cg, cg.energies, cg.factor_kind, cg.factor_param, unary,
                        fast, v2f, temperature, damping, 0.0)
    work = K.scratch(cg)
    no_totals = (np.empty(0), np.empty(0, dtype=np.int32))
    for _ in range(5):
        fast_change = np.empty(1)
        sweeps.run(fast_change)
        slow_change = K.factor_sweep(
            cg.energies, cg.factor_kind, cg.factor_param, unary, cg.n_states, cg.state_offset,
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


def test_sequential_order_is_by_lowest_variable_then_factor():
    g = fg.FactorGraph()
    g.add_variables(range(4), 2)
    g.add_factor((), 1.0)
    for scope in ([3, 1], [2], [0, 3], [1], [1, 2]):
        g.add_factor(scope, np.zeros((2,) * len(scope)))
    g.add_factor((), 2.0)
    order = S.sequential_order(g.compile())
    assert not order.flags.writeable
    # Constant factors (lowest -1) first, then by lowest variable, ties by factor index.
    assert order.tolist() == [0, 6, 3, 1, 4, 5, 2]
