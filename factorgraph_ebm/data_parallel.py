"""Data-parallel training on Dask: an objective whose loss and gradient are summed over
partitions of the training set held by the workers.

:class:`DataParallelObjective` wraps the objective of a learner (:func:`factorgraph_ebm.fit`,
:class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler`) and is itself an objective of
:func:`factorgraph_ebm.optim.minimize` (``n_samples``, ``batch(params, indices)``), so that
L-BFGS (full batch), Adam and SGD (mini-batches) train through it unchanged. The training
set is cut into partitions that are scattered to the workers once; each evaluation sends the
parameters and the indices of the partition's samples in the batch to each worker, which
returns the summed loss and gradient of its samples; the client adds them up.

Sums that do not depend on the workers
--------------------------------------
Floating-point addition is not associative, so a sum regrouped by another number of workers
differs in the last bits, and L-BFGS's line search or an Adam run can amplify that. The
samples are therefore cut into ``n_blocks`` fixed blocks (contiguous, of equal size up to
one; 16 by default), independent of the number of workers, and the batch sum is always the
same binary tree over the blocks: a block's sum is the objective's own ``batch`` over the
batch's samples in that block (in the batch's order), and each inner node adds its two halves
(left + right, the halves of ``[lo, hi)`` split at ``(lo + hi) // 2``). A worker holds a
contiguous range of blocks and returns the sums of the largest tree nodes inside its range
(one node when the blocks divide evenly by a power of two of workers, at most
``2 log2(n_blocks)`` in general); the client completes the tree. Every addition is the
same as in a run without workers (``client=None`` here), so the result is the same bit for
bit for any number of workers up to ``n_blocks`` (more workers than blocks leave some idle).
We chose this over sending every sample's gradient to the client (also exact, but N
gradients per evaluation instead of about one per worker).

Against the learner's own objective without this wrapper (one sum over the batch in its
order) the results differ by rounding only: the tests find the trained weights within 1e-8
(:file:`tests/test_data_parallel.py`).

Dask is an optional dependency: ``pip install "factorgraph-ebm[dask]"``.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from .exceptions import FactorGraphError

__all__ = ["DataParallelObjective", "data_parallel"]

#: Blocks of the fixed summation tree (see the module docstring): results are the same for
#: any number of workers up to this.
N_BLOCKS = 16


def _add(x, y):
    """The sum of two (value, gradient) pairs, None standing for an empty one."""
    if x is None:
        return y
    if y is None:
        return x
    return x[0] + y[0], x[1] + y[1]


def _subtree(lo, hi, leaf):
    """The sum over blocks ``lo..hi-1`` by the fixed tree; ``leaf(b)`` is block b's."""
    if hi - lo == 1:
        return leaf(lo)
    mid = (lo + hi) // 2
    return _add(_subtree(lo, mid, leaf), _subtree(mid, hi, leaf))


def _covering_nodes(lo, hi, a, b, leaf, out):
    """Append ``((lo', hi'), sum)`` for the largest tree nodes below ``[lo, hi)`` inside
    ``[a, b)`` (the canonical decomposition of a range in a segment tree)."""
    if b <= lo or hi <= a:
        return
    if a <= lo and hi <= b:
        out.append(((lo, hi), _subtree(lo, hi, leaf)))
        return
    mid = (lo + hi) // 2
    _covering_nodes(lo, mid, a, b, leaf, out)
    _covering_nodes(mid, hi, a, b, leaf, out)


def _assemble(lo, hi, nodes):
    """The tree's sum over ``[lo, hi)`` from the node sums the workers returned (a node
    missing is empty: no sample of the batch in it)."""
    if (lo, hi) in nodes:
        return nodes[(lo, hi)]
    if hi - lo == 1:
        return None
    mid = (lo + hi) // 2
    return _add(_assemble(lo, mid, nodes), _assemble(mid, hi, nodes))


def _block_edges(n_samples: int, n_blocks: int) -> np.ndarray:
    """int64 (n_blocks + 1,): block b holds samples ``edges[b] .. edges[b + 1] - 1``."""
    return np.arange(n_blocks + 1, dtype=np.int64) * n_samples // n_blocks


def _leaves(objective, params, indices, edges, offset=0):
    """``leaf(b)``: the objective's batch over the samples of ``indices`` (in their order)
    that fall in block b, None when there are none; ``offset`` is subtracted from the
    indices (a partition numbers its samples from 0)."""
    blocks = np.searchsorted(edges, indices, side="right") - 1

    def leaf(b):
        chosen = indices[blocks == b]
        if not len(chosen):
            return None
        value, grad = objective.batch(params, chosen - offset)
        return float(value), np.asarray(grad, dtype=np.float64)

    return leaf


class _Partition:
    """What a worker holds: the objective over its samples (numbered from 0) and its range
    of blocks."""

    def __init__(self, objective, edges, first_block, last_block):
        self.objective = objective
        self.edges = edges  # of every block (global sample numbers)
        self.first, self.last = first_block, last_block  # blocks first..last-1
        self.offset = int(edges[first_block])

    def node_sums(self, params, indices):
        """``[((lo, hi), (value, grad)), ...]`` over the samples ``indices`` (global)."""
        leaf = _leaves(self.objective, params, indices, self.edges, self.offset)
        out = []
        _covering_nodes(0, len(self.edges) - 1, self.first, self.last, leaf, out)
        return [(key, total) for key, total in out if total is not None]


def _node_sums(partition, params, indices):  # a module-level function: Dask ships it by name
    """``(seconds spent, node sums)`` of a partition, run on its worker."""
    started = time.perf_counter()
    nodes = partition.node_sums(params, indices)
    return time.perf_counter() - started, nodes


class DataParallelObjective:
    """An objective (see :func:`~factorgraph_ebm.optim.minimize`) summed over partitions of
    the samples on the workers of a Dask client, by a fixed tree over blocks (see the module
    docstring): the result does not depend on the number of workers.

    Parameters
    ----------
    objective : object
        The learner's objective: ``n_samples``, ``batch(params, indices) -> (summed loss,
        summed gradient (n_params,) float64)`` and ``partition(start, stop)`` -> the
        objective over samples ``start .. stop - 1`` (numbered from 0 there), which must be
        picklable for process workers.
    client : distributed.Client or None
        The workers. None evaluates the same blocks and tree in this process (the serial
        reference, bit for bit the same as on any number of workers).
    n_blocks : int, default=16
        Blocks of the summation tree (at most ``n_samples``); also the largest useful
        number of workers.

    Attributes
    ----------
    n_samples : int
    bytes_sent, bytes_received : int
        Bytes of parameters sent to the workers and of gradients received, over all
        evaluations so far (the array payloads; Dask's framing not counted).
    evaluations : int
    worker_seconds : float
        Time the workers spent computing (summed over workers and evaluations): the rest of
        an evaluation's wall time is communication, scheduling and the client's work.

    Raises
    ------
    FactorGraphError
        From :meth:`batch`, when a worker fails or is lost: the message names the partition,
        its samples and the worker. Errors of the objective itself (e.g. a
        :class:`~factorgraph_ebm.losses.TargetError`) are raised as they are.

    Notes
    -----
    Each call of :meth:`batch` is one round trip to every worker that holds samples of the
    batch: full-batch L-BFGS and large mini-batches pay off, SGD with ``batch_size=1``
    does not. Warm-start messages of belief propagation stay on the worker that holds the
    sample, and every sample is evaluated in the same sequence as without workers.
    """

    def __init__(self, objective, client=None, *, n_blocks: int = N_BLOCKS):
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
            raise FactorGraphError(f"n_blocks must be an integer >= 1, got {n_blocks!r}")
        self.objective = objective
        self.n_samples = int(objective.n_samples)
        self.n_blocks = min(n_blocks, max(self.n_samples, 1))
        self.edges = _block_edges(self.n_samples, self.n_blocks)
        self.client = client
        self.bytes_sent = self.bytes_received = self.evaluations = 0
        self.worker_seconds = 0.0
        self._parts = []  # (first sample, stop, worker address, future)
        if client is not None:
            self._scatter()

    def _scatter(self):
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise FactorGraphError("data-parallel training: the Dask client has no workers")
        n_workers = len(workers)
        for w, address in enumerate(workers):
            first = w * self.n_blocks // n_workers
            last = (w + 1) * self.n_blocks // n_workers
            if first == last:
                continue  # more workers than blocks
            start, stop = int(self.edges[first]), int(self.edges[last])
            part = _Partition(self.objective.partition(start, stop), self.edges, first, last)
            [future] = self.client.scatter([part], workers=[address], broadcast=False,
                                           hash=False)
            self._parts.append((start, stop, address, future))

    def batch(self, params, indices):
        """Summed loss and gradient over the samples ``indices`` (int64, in the batch's
        order): ``(float, ndarray (n_params,))``."""
        indices = np.asarray(indices, dtype=np.int64)
        params = np.asarray(params, dtype=np.float64)
        self.evaluations += 1
        if self.client is None:
            total = _subtree(0, self.n_blocks, _leaves(self.objective, params, indices,
                                                       self.edges))
        else:
            nodes = {}
            for key, pair in self._gathered(params, indices):
                nodes[key] = pair
                self.bytes_received += pair[1].nbytes
            total = _assemble(0, self.n_blocks, nodes)
        if total is None:  # no samples
            return 0.0, np.zeros(len(params))
        return total

    def _gathered(self, params, indices):
        """The node sums of every partition with samples in the batch, in partition order."""
        futures = []
        for start, stop, address, part in self._parts:
            mine = indices[(indices >= start) & (indices < stop)]
            if len(mine):
                futures.append((start, stop, address, self.client.submit(
                    _node_sums, part, params, mine, workers=[address],
                    allow_other_workers=False, pure=False)))
                self.bytes_sent += params.nbytes
        out = []
        for start, stop, address, future in futures:
            try:
                seconds, nodes = future.result()
            except (FactorGraphError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a lost worker raises CancelledError, a BaseException
                for *_, other in futures:
                    other.cancel()
                lost = "Cancelled" in type(exc).__name__ or "KilledWorker" in type(exc).__name__
                raise FactorGraphError(
                    f"data-parallel training: the partition of samples {start}..{stop - 1} "
                    f"failed on worker {address}: {type(exc).__name__}: {exc}"
                    + ("; the worker was lost with its partition, so training stops (start "
                       "it again on a healthy cluster)" if lost else "")
                ) from exc
            out.extend(nodes)
            self.worker_seconds += seconds
        return out

    def close(self):
        """Release the partitions on the workers."""
        for *_, future in self._parts:
            future.release()
        self._parts = []


@contextlib.contextmanager
def data_parallel(objective, client=None, n_jobs=None):
    """The objective itself (no workers asked), or a :class:`DataParallelObjective` on a
    client: ``client`` (a :class:`~distributed.Client`, or a scheduler address such as
    ``"tcp://10.0.0.5:8786"``) or a :class:`~distributed.LocalCluster` of ``n_jobs`` worker
    processes started for the block (and closed after it). The hook of
    :func:`factorgraph_ebm.fit` and :meth:`SequenceLabeler.fit
    <factorgraph_ebm.sequence.labeler.SequenceLabeler.fit>`.

    Raises
    ------
    FactorGraphError
        Both ``client`` and ``n_jobs``, or ``n_jobs`` not a positive integer.
    ImportError
        Dask is not installed.
    """
    if client is None and n_jobs is None:
        yield objective
        return
    if client is not None and n_jobs is not None:
        raise FactorGraphError("give client or n_jobs, not both")
    from .distributed import connected  # Dask and tqdm only when asked

    scheduler = client if isinstance(client, str) else None
    given = None if isinstance(client, str) else client
    with connected(given, scheduler, n_jobs, processes=True) as dask_client:
        wrapped = DataParallelObjective(objective, dask_client)
        try:
            yield wrapped
        finally:
            wrapped.close()
