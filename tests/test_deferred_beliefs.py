"""Factor beliefs computed on first access (issue 16): a BP result defers them unless the
Bethe pass makes them anyway or the caller's energy array could change after the call.
Deferred and eager values are the same kernels on the same inputs (bit for bit by design);
both are held to brute force on trees, and pickles, copies, batches and absorbed scopes
see the values, never the recipe."""

import copy
import itertools
import math
import pickle

import numpy as np
import pytest

import factorgraph_ebm as fe
from factorgraph_ebm.batch import batch_belief_propagation
from factorgraph_ebm.results import Deferred

INF = math.inf


def _grid(n=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    ids = g.add_variables(range(n * n), k)
    g.add_factors(ids[:, None], rng.normal(size=(n * n, k)), by_index=True)
    pairs = [(i * n + j, i * n + j + 1) for i in range(n) for j in range(n - 1)]
    pairs += [(i * n + j, (i + 1) * n + j) for i in range(n - 1) for j in range(n)]
    tables = rng.normal(size=(len(pairs), k, k))
    tables[0, 0, 1] = INF
    g.add_factors(np.array(pairs), tables, by_index=True)
    return g


def _chain(seed=1):
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables(["a", "b", "c", "d"], [2, 3, 2, 3])
    g.add_factor(["a"], rng.normal(size=2))
    g.add_factor(["a", "b"], np.where(rng.random((2, 3)) < 0.2, INF, rng.normal(size=(2, 3))))
    g.add_factor(["b", "c"], rng.normal(size=(3, 2)))
    g.add_factor(["c", "d"], rng.normal(size=(2, 3)))
    return g


def _pending(result) -> bool:
    return isinstance(result.__dict__["_factor_beliefs"], Deferred)


def _brute_factor_min_marginals(g, evidence=None):
    """Lowest energy of any configuration agreeing with each table entry (theta layout)."""
    cg = g.compile()
    states = np.array(list(itertools.product(*[range(k) for k in cg.n_states])))
    if evidence:
        for name, x in evidence.items():
            states = states[states[:, g.index_of(name)] == x]
    energy = g.energy(states)
    out = np.full(cg.n_energy_entries, INF)
    for a in range(cg.n_factors):
        scope = cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]]
        flat = np.ravel_multi_index(states[:, scope].T, tuple(cg.n_states[scope]))
        np.minimum.at(out, cg.table_offset[a] + flat, energy)
    return out


@pytest.mark.parametrize("evidence", [None, {"b": 2}])
def test_deferred_min_sum_factor_beliefs_are_brute_force_on_a_chain(evidence):
    g = _chain()
    r = fe.min_sum(g, evidence=evidence)
    assert _pending(r)
    want = _brute_factor_min_marginals(g, evidence)
    got = r.factor_beliefs
    assert not _pending(r) and got is r.factor_beliefs  # computed once, then kept
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-9)


@pytest.mark.parametrize("beta", [INF, 0.7])
@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_deferred_equals_eager_bit_for_bit(beta, schedule):
    """Deferred (energies None) and eager (an array of the caller's: it could change)."""
    g = _grid()
    theta = np.array(g.compile().energies)
    options = dict(beta=beta, method="bp", schedule=schedule, max_iter=7, warn=False,
                   free_energy=False)
    lazy = fe.belief_propagation(g, **options)
    eager = fe.belief_propagation(g, energies=theta, **options)
    assert _pending(lazy) and not _pending(eager)
    np.testing.assert_array_equal(lazy.factor_beliefs, eager.factor_beliefs)
    np.testing.assert_array_equal(lazy.variable_beliefs, eager.variable_beliefs)


def test_the_bethe_pass_stores_them_at_the_call():
    g = _grid()
    r = fe.sum_product(g, beta=1.0, method="bp", max_iter=5, warn=False)
    assert not _pending(r)
    plain = fe.sum_product(g, beta=1.0, method="bp", max_iter=5, warn=False,
                           free_energy=False)
    assert _pending(plain)
    np.testing.assert_array_equal(r.factor_beliefs, plain.factor_beliefs)


def test_a_changed_energy_array_after_the_call_changes_nothing():
    g = _grid()
    theta = np.array(g.compile().energies)
    r = fe.min_sum(g, energies=theta, method="bp", max_iter=5, warn=False)
    want = fe.min_sum(g, method="bp", max_iter=5, warn=False).factor_beliefs
    theta[:] = 0.0
    np.testing.assert_array_equal(r.factor_beliefs, want)


def test_messages_are_read_only_and_warm_starts_still_work():
    g = _grid()
    r = fe.min_sum(g, method="bp", max_iter=3, warn=False)
    assert not r.messages.flags.writeable
    with pytest.raises(ValueError):
        r.messages[0] = 1.0
    again = fe.min_sum(g, method="bp", max_iter=3, warn=False, init_messages=r.messages)
    assert again.messages.flags.c_contiguous


def test_pickles_and_copies_hold_the_values():
    g = _grid()
    r = fe.min_sum(g, method="bp", max_iter=4, warn=False)
    want = fe.min_sum(g, energies=np.array(g.compile().energies), method="bp", max_iter=4,
                      warn=False).factor_beliefs
    assert _pending(r)
    loaded = pickle.loads(pickle.dumps(r))
    assert not _pending(loaded)
    np.testing.assert_array_equal(loaded.factor_beliefs, want)
    np.testing.assert_array_equal(copy.deepcopy(r).factor_beliefs, want)
    assert copy.copy(fe.min_sum(g, factor_beliefs=False, method="bp", max_iter=2,
                                warn=False)).factor_beliefs is None


def test_replace_keeps_them_pending_and_frozen_refuses_assignment():
    import dataclasses

    r = fe.min_sum(_grid(), method="bp", max_iter=2, warn=False)
    moved = r.replace(seconds=1.0)
    assert _pending(moved) and moved.seconds == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.factor_beliefs = None
    np.testing.assert_array_equal(moved.factor_beliefs, r.factor_beliefs)


def test_absorbed_scopes_defer_the_mapping_too():
    """A repeated scope and a nested one are absorbed: the original factors' beliefs come
    from the reduced graph's, deferred, equal to brute force on this tree."""
    g = _chain()
    g.add_factor(["b", "a"], np.arange(6.0).reshape(3, 2))
    g.add_factor(["c"], [0.5, -0.25])
    r = fe.min_sum(g, method="bp")
    assert _pending(r) and r.exact
    want = _brute_factor_min_marginals(g)
    got = r.factor_beliefs
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=0, atol=1e-9)
    eager = fe.min_sum(g, method="bp", energies=np.array(g.compile().energies))
    np.testing.assert_array_equal(got, eager.factor_beliefs)


@pytest.mark.parametrize("beta", [INF, 1.0])
def test_batch_items_defer_them_as_single_calls(beta):
    g = _grid()
    cg = g.compile()
    rng = np.random.default_rng(3)
    thetas = np.tile(cg.energies, (3, 1)) + rng.normal(size=(3, cg.n_energy_entries))
    options = dict(beta=beta, method="bp", schedule="parallel", max_iter=6, warn=False,
                   free_energy=False)
    mine = batch_belief_propagation(g, energies=thetas, **options)  # the caller's: eager
    ours = fe.batch.batch_infer_checked(
        g, cg, thetas.copy(), beta,
        fe.inference.Options.checked(method="bp", schedule="parallel", max_iter=6,
                                     warn=False, free_energy=False))
    assert not any(_pending(r) for r in mine) and all(_pending(r) for r in ours)
    for b in range(3):
        single = fe.belief_propagation(g, energies=thetas[b], **options)
        np.testing.assert_array_equal(mine[b].factor_beliefs, single.factor_beliefs)
        np.testing.assert_array_equal(ours[b].factor_beliefs, single.factor_beliefs)
    np.testing.assert_array_equal(ours.factor_beliefs, mine.factor_beliefs)
