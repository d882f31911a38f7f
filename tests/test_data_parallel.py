"""Data-parallel training (factorgraph_ebm.data_parallel): the fixed summation tree, and
fit / SequenceLabeler.fit on Dask LocalClusters of 1, 2 and 4 workers (threads) against
serial runs.

Two references: the serial run with the same blocks (``DataParallelObjective(objective,
None)``, the same additions in the same order: equal bit for bit, same process and kernels)
and the plain serial run of the learner (one sum over each batch: equal within rounding,
1e-8 on the trained weights). The Dask tests skip, saying so, when dask.distributed is not
installed.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import factorgraph_ebm as fe
from factorgraph_ebm.data_parallel import (
    DataParallelObjective,
    _assemble,
    _covering_nodes,
    _subtree,
    data_parallel,
)
from factorgraph_ebm.sequence.labeler import SequenceLabeler

OPTIMIZERS = {
    "lbfgs": (fe.LBFGS(), 15, 1),
    "adam": (fe.Adam(0.05), 3, 7),
    "sgd": (fe.SGD(0.05), 3, 5),
}


def needs_dask():
    return pytest.importorskip(
        "distributed", reason="dask.distributed is not installed: pip install "
        "'factorgraph-ebm[dask]' to run the Dask tests")


@pytest.fixture(scope="module")
def clients():
    """Clients of LocalClusters (threads) of 1, 2 and 4 workers."""
    distributed = needs_dask()
    made = {}
    try:
        for n in (1, 2, 4):
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                               processes=False, dashboard_address=None,
                                               silence_logs=logging.CRITICAL)
            made[n] = (cluster, distributed.Client(cluster))
        yield {n: client for n, (_, client) in made.items()}
    finally:
        for cluster, client in made.values():
            client.close()
            cluster.close()


# --------------------------------------------------------------------------- the tree
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.integers(1, 12))
def test_tree_of_any_split_is_the_serial_tree(values, n_parts):
    """The node sums of any contiguous partition of the blocks, completed by the client,
    are the serial tree's sum, bit for bit (the same additions)."""
    n = len(values)

    def leaf(b):
        return values[b], np.array([values[b], -values[b] / 3])

    serial = _subtree(0, n, leaf)
    nodes = {}
    for w in range(n_parts):
        out = []
        _covering_nodes(0, n, w * n // n_parts, (w + 1) * n // n_parts, leaf, out)
        assert len(out) <= 2 * max(1, n.bit_length())
        nodes.update(out)
    combined = _assemble(0, n, nodes)
    assert combined[0] == serial[0]
    np.testing.assert_array_equal(combined[1], serial[1])
    # and it is a sum of the leaves (to rounding)
    assert combined[0] == pytest.approx(sum(values), abs=1e-6 * n)


# --------------------------------------------------------------------------- fit
def chain_model():
    g = fe.FactorGraph()
    g.add_variables(range(5), 3)
    g.add_factor([0], np.zeros(3))
    pairs = g.add_factors([(i, i + 1) for i in range(4)], np.zeros((3, 3)))
    return fe.TableModel(g, tie=[pairs])


def chain_samples(n=30, seed=1):
    rng = np.random.default_rng(seed)
    return [(None, {i: int(rng.integers(3)) for i in range(5)}) for _ in range(n)]


def fit_chain(name, **kwargs):
    optimizer, n_epochs, batch_size = OPTIMIZERS[name]
    return fe.fit(chain_model(), fe.NLLLoss(), chain_samples(), optimizer=optimizer,
                  n_epochs=n_epochs, batch_size=batch_size, l2=0.1, seed=3, progress=False,
                  accuracy=False, **kwargs).params


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_on_1_2_4_workers_equals_serial(clients, name):
    plain = fit_chain(name)
    blocked = _blocked_fit(name)
    for n, client in clients.items():
        params = fit_chain(name, client=client)
        np.testing.assert_array_equal(params, blocked, err_msg=f"{n} workers")
        np.testing.assert_allclose(params, plain, rtol=0, atol=1e-8, err_msg=f"{n} workers")
    assert np.abs(plain).max() > 0.1  # it trained


def _blocked_fit(name):
    """The serial run with the blocks of the data-parallel one (no workers)."""
    from factorgraph_ebm import train

    original = train.data_parallel

    def in_process(objective, client=None, n_jobs=None):
        return _yielding(DataParallelObjective(objective, None))

    train.data_parallel = in_process
    try:
        return fit_chain(name, client="unused")
    finally:
        train.data_parallel = original


class _yielding:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def test_loopy_warm_start_on_workers(clients):
    """Loopy BP warm-started from each sample's last messages: the messages stay with the
    sample on its worker, so the run is the serial one."""
    g = fe.FactorGraph()
    g.add_variables("abcd", 2)
    g.add_factors([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], np.zeros((4, 2, 2)))
    rng = np.random.default_rng(0)
    samples = [(None, dict(zip("abcd", rng.integers(2, size=4).tolist()))) for _ in range(12)]
    kwargs = dict(optimizer=fe.Adam(0.1), n_epochs=3, batch_size=4, progress=False,
                  accuracy=False, method="bp", damping=0.5, warn=False)
    plain = fe.fit(fe.TableModel(g), fe.NLLLoss(), samples, **kwargs).params
    for client in clients.values():
        params = fe.fit(fe.TableModel(g), fe.NLLLoss(), samples, client=client,
                        **kwargs).params
        np.testing.assert_allclose(params, plain, rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- labeler
def sequences(n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "a", "dog", "cat", "runs", "sleeps", "big", "old"]
    tags = {"the": "D", "a": "D", "dog": "N", "cat": "N", "runs": "V", "sleeps": "V",
            "big": "J", "old": "J"}
    X, y = [], []
    for _ in range(n):
        sentence = rng.choice(words, size=int(rng.integers(0, 7))).tolist()
        X.append([{"w": w, "suffix": w[-2:]} for w in sentence])
        y.append([tags[w] if rng.random() > 0.1 else "N" for w in sentence])
    return X, y


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_labeler_on_1_2_4_workers_equals_serial(clients, name):
    optimizer, n_epochs, batch_size = OPTIMIZERS[name]
    X, y = sequences()

    def trained(**kwargs):
        labeler = SequenceLabeler("nll", optimizer, n_epochs=n_epochs, batch_size=batch_size,
                                  l2=0.01, seed=2, progress=False)
        return labeler.fit(X, y, **kwargs).weights_

    plain = trained()
    for n, client in clients.items():
        np.testing.assert_allclose(trained(client=client), plain, rtol=0, atol=1e-8,
                                   err_msg=f"{n} workers")
    assert np.abs(plain).max() > 0.1


def test_labeler_partition_sums_bit_for_bit(clients):
    """The labeler's objective on workers equals its blocked serial evaluation bit for bit,
    for the full batch and a shuffled mini-batch."""
    X, y = sequences(n=80, seed=4)
    X, y = zip(*[(xs, ys) for xs, ys in zip(X, y) if xs])  # fit drops empty sequences
    X, y = list(X[:50]), list(y[:50])
    labeler = SequenceLabeler("nll", fe.LBFGS(), n_epochs=2, progress=False).fit(X, y)
    from factorgraph_ebm.sequence.chain import _ChainObjective, _Design

    design = _Design.of(labeler._design(X, fit=False))
    codes = labeler._encode(y, design.lengths, fit=False)
    objective = _ChainObjective(labeler._chain, labeler._loss, design, codes)
    assert objective.n_samples == 50
    theta = np.random.default_rng(0).normal(size=labeler._chain.n_params)
    batches = [np.arange(50), np.random.default_rng(1).permutation(50)[:17]]
    serial = DataParallelObjective(objective, None)
    for client in clients.values():
        wrapped = DataParallelObjective(objective, client)
        for batch in batches:
            value, grad = wrapped.batch(theta, batch)
            ref_value, ref_grad = serial.batch(theta, batch)
            assert value == ref_value
            np.testing.assert_array_equal(grad, ref_grad)
            plain_value, plain_grad = objective.batch(theta, batch)
            assert value == pytest.approx(plain_value, rel=1e-12)
            np.testing.assert_allclose(grad, plain_grad, rtol=1e-10, atol=1e-10)
        assert wrapped.bytes_received > 0 and wrapped.bytes_sent > 0
        wrapped.close()


# --------------------------------------------------------------------------- failures
class _Sum:
    """A toy objective: loss sum(x), gradient params * sum(x)."""

    def __init__(self, x):
        self.x, self.n_samples = x, len(x)

    def partition(self, start, stop):
        return _Sum(self.x[start:stop])

    def batch(self, params, indices):
        return float(self.x[indices].sum()), params * self.x[indices].sum()


def test_lost_worker_is_a_clear_error():
    distributed = needs_dask()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None,
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as client:
        wrapped = DataParallelObjective(_Sum(np.arange(10.0)), client)
        value, grad = wrapped.batch(np.ones(2), np.arange(10))
        assert value == 45.0 and grad.tolist() == [45.0, 45.0]
        worker = list(cluster.workers.values())[1]
        client.sync(worker.close)
        with pytest.raises(fe.FactorGraphError,
                           match=r"partition of samples 5\.\.9 failed on worker .* lost"):
            wrapped.batch(np.ones(2), np.arange(10))


def test_errors_of_the_objective_propagate_as_they_are(clients):
    bad = [(None, {i: 0 for i in range(5)}), (None, {0: 0})]  # the second misses states
    with pytest.raises(fe.TargetError, match="no state for output variable"):
        fe.fit(chain_model(), fe.NLLLoss(), bad, optimizer=fe.LBFGS(), n_epochs=2,
               progress=False, accuracy=False, client=clients[2])


def test_arguments():
    objective = _Sum(np.arange(4.0))
    with data_parallel(objective) as same:
        assert same is objective
    with pytest.raises(fe.FactorGraphError, match="not both"):
        with data_parallel(objective, client="tcp://localhost:1", n_jobs=2):
            pass
    with pytest.raises(fe.FactorGraphError, match="n_blocks"):
        DataParallelObjective(objective, None, n_blocks=0)
    # more blocks than samples: one per sample; no samples in a batch: zeros
    serial = DataParallelObjective(objective, None, n_blocks=64)
    assert serial.n_blocks == 4
    value, grad = serial.batch(np.ones(3), np.array([], dtype=np.int64))
    assert value == 0.0 and grad.tolist() == [0.0, 0.0, 0.0]
    assert serial.batch(np.ones(1), np.array([3, 1]))[0] == 4.0


def test_n_jobs_worker_processes(warm_kernels):
    """Real worker processes (``n_jobs``): the objectives travel pickled."""
    needs_dask()
    X, y = sequences(n=30, seed=5)
    kwargs = dict(n_epochs=5, l2=0.01, progress=False)
    plain = SequenceLabeler("nll", fe.LBFGS(), **kwargs).fit(X, y).weights_
    parallel = SequenceLabeler("nll", fe.LBFGS(), **kwargs).fit(X, y, n_jobs=2).weights_
    np.testing.assert_allclose(parallel, plain, rtol=0, atol=1e-8)
