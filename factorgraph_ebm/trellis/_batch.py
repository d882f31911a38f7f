"""The batch layout shared by the trellis functions: input checks and coercion
(:func:`_prepare`, errors naming the sequence and position), offsets of the ragged batch, and
:class:`_Batched`, a batch kernel compiled serial and parallel, run in paced ranges."""

from __future__ import annotations

import types
from typing import NamedTuple

import numba
import numpy as np

from .. import _validation as V
from .._config import NJIT_OPTIONS, njit
from .._pacing import paced
from ..exceptions import FactorGraphError

#: At most this many partial sums of shared transition marginals (fixed, so that results do
#: not depend on the number of threads).
MAX_CHUNKS = 32


#: Memory cap of those partial sums, bytes.
CHUNK_BYTES = 64 * 2**20


#: Work (tokens x K^2) from which a batch of several sequences runs on several threads.
PARALLEL_WORK = 2_000_000


class _Batched:
    """A batch kernel compiled twice: serial and ``parallel=True`` (its ``prange`` loop over
    threads, each taking a block of the items: sequences or chunks). Results are the same;
    small batches run serially, where starting the threads would cost more than it saves
    (on a busy machine, up to a scheduler time slice).

    Call as ``kernel(work, n_items, scratch, *args)``: the kernel runs as
    ``kernel(lo, hi, *args, *scratch(rows))`` on paced ranges of items
    (:func:`~factorgraph_ebm._pacing.paced`: about 0.1 s each, so that Ctrl-C and other
    signals get through), the first one of about :data:`PARALLEL_WORK` tokens x K^2.
    ``scratch(rows)`` allocates the kernel's work arrays, one row per thread (``rows`` = 1
    for the serial copy), in Python: the kernels allocate nothing (an allocation failing
    in a kernel leaks what it allocated before; see :mod:`factorgraph_ebm.messages`).
    """

    def __init__(self, fn):
        # A copy under another name, so that the two versions have distinct cache files.
        serial = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
        )
        serial.__qualname__ = fn.__qualname__ + "_serial"
        serial.__doc__ = fn.__doc__
        self.serial = njit(**NJIT_OPTIONS)(serial)
        self.parallel = njit(parallel=True, **NJIT_OPTIONS)(fn)
        self.__doc__ = fn.__doc__

    def __call__(self, work, n_items, scratch, *args):
        threaded = n_items > 1 and work >= PARALLEL_WORK and numba.get_num_threads() > 1
        kernel = self.parallel if threaded else self.serial
        buffers = scratch(min(numba.get_num_threads(), n_items) if threaded else 1)
        first = max(1, n_items * PARALLEL_WORK // max(work, 1))
        for lo, hi in paced(n_items, first=first):
            kernel(lo, hi, *args, *buffers)


@njit(inline="always", **NJIT_OPTIONS)
def _block(lo, hi, row, rows):
    """Items of thread ``row`` of ``rows`` in ``lo..hi-1``: a contiguous block, as a static
    schedule gives them."""
    n = hi - lo
    return lo + n * row // rows, lo + n * (row + 1) // rows


_batched = _Batched


class _Batch(NamedTuple):
    """Validated, coerced inputs shared by the public functions."""

    unary: np.ndarray  # (N, K) float64, clamping applied
    trans: np.ndarray  # (1 or P, K, K) float64
    per_position: bool
    tok_off: np.ndarray  # (n_seq + 1,) int64
    tr_off: np.ndarray  # (n_seq + 1,) int64
    start: np.ndarray  # (K,)
    end: np.ndarray  # (K,)
    state_label: np.ndarray  # (K,) int64
    n_labels: int
    identity_labels: bool


def _where_token(tok_off, t) -> str:
    s = int(np.searchsorted(tok_off, t, side="right")) - 1
    return f"(sequence {s}, position {t - int(tok_off[s])})"


def _check_energies(name, arr, where) -> None:
    """Refuse NaN and -inf, naming the first bad entry; ``where(index) -> str``."""
    bad = np.isnan(arr) | (arr == -np.inf)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        shown = ", ".join(map(str, idx))
        raise FactorGraphError(
            f"{name}[{shown}] {where(idx)}is {arr[idx]}; energies must be finite or +inf"
        )


def _float_array(name, value) -> np.ndarray:
    return np.ascontiguousarray(V.real_array(value, name, copy=False))


def _int_array(name, value, shape) -> np.ndarray:
    arr = V.integer_array(value, name)
    if arr.shape != shape:
        raise FactorGraphError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels) -> _Batch:
    u = _float_array("unary", unary)
    if u.ndim != 2 or u.shape[1] < 1:
        raise FactorGraphError(
            f"unary must have shape (n_tokens, K) with K >= 1 states, got shape {u.shape}"
        )
    n_tokens, k = u.shape

    if lengths is None:
        lens = np.array([n_tokens], dtype=np.int64)
    else:
        lens = V.integer_array(lengths, "lengths")
        if lens.ndim != 1:
            raise FactorGraphError(f"lengths must have shape (n_seq,), got shape {lens.shape}")
        if lens.size and lens.min() < 0:
            s = int(np.argmin(lens))
            raise FactorGraphError(f"lengths[{s}] = {lens[s]}; lengths must be >= 0")
        if int(lens.sum()) != n_tokens:
            raise FactorGraphError(
                f"lengths must sum to n_tokens = unary.shape[0] = {n_tokens}, "
                f"got sum {int(lens.sum())}"
            )
    tok_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=tok_off[1:])
    tr_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(np.maximum(lens - 1, 0), out=tr_off[1:])
    n_pos = int(tr_off[-1])
    _check_energies("unary", u, lambda idx: _where_token(tok_off, idx[0]) + " ")

    tr = _float_array("transition", transition)
    if tr.ndim == 2:
        if tr.shape != (k, k):
            raise FactorGraphError(
                f"transition must have shape (K, K) = {(k, k)} (shared) or "
                f"(n_tokens - n_nonempty_sequences, K, K) = {(n_pos, k, k)} (per position), "
                f"got {tr.shape}"
            )
        _check_energies("transition", tr, lambda idx: "")
        trans = tr.reshape(1, k, k)
        per_position = False
    elif tr.ndim == 3 and tr.shape == (n_pos, k, k):
        trans = tr
        per_position = True

        def where(idx):
            s = int(np.searchsorted(tr_off, idx[0], side="right")) - 1
            t = idx[0] - int(tr_off[s]) + 1
            return f"(sequence {s}, between positions {t - 1} and {t}) "

        _check_energies("transition", tr, where)
    else:
        raise FactorGraphError(
            f"transition must have shape (K, K) = {(k, k)} (shared) or "
            f"(n_tokens - n_nonempty_sequences, K, K) = {(n_pos, k, k)} (per position), "
            f"got {tr.shape}"
        )

    ends = []
    for name, value in (("start", start), ("end", end)):
        if value is None:
            ends.append(np.zeros(k))
            continue
        arr = _float_array(name, value)
        if arr.shape != (k,):
            raise FactorGraphError(f"{name} must have shape (K,) = ({k},), got {arr.shape}")
        _check_energies(name, arr, lambda idx: "")
        ends.append(arr)

    if state_label is None:
        labels = np.arange(k, dtype=np.int64)
        identity = n_labels is None or n_labels == k
    else:
        labels = _int_array("state_label", state_label, (k,))
        identity = False
    if n_labels is None:
        n_lab = int(labels.max()) + 1 if k else 0
    else:
        n_lab = V.integer(n_labels, "n_labels", low=1)
    bad = np.flatnonzero((labels < 0) | (labels >= n_lab))
    if bad.size:
        i = int(bad[0])
        raise FactorGraphError(
            f"state_label[{i}] = {labels[i]} is out of range: labels must be in 0..{n_lab - 1}"
        )
    identity = identity and n_lab == k

    if clamp is not None:
        cl = _int_array("clamp", clamp, (n_tokens,))
        bad = np.flatnonzero((cl < -1) | (cl >= n_lab))
        if bad.size:
            t = int(bad[0])
            raise FactorGraphError(
                f"clamp[{t}] {_where_token(tok_off, t)} = {cl[t]} is out of range: expected a "
                f"label in 0..{n_lab - 1}, or -1 for an unconstrained position"
            )
        mask = (cl[:, None] >= 0) & (labels[None, :] != cl[:, None])
        if mask.any():
            u = u.copy()
            u[mask] = np.inf
    return _Batch(
        u, trans, per_position, tok_off, tr_off, ends[0], ends[1], labels, n_lab, identity
    )


def _work(batch: _Batch) -> int:
    """Tokens x K^2: the cost of a pass over the batch."""
    n_tokens, k = batch.unary.shape
    return n_tokens * k * k


def _longest(batch: _Batch) -> int:
    """Tokens of the longest sequence, at least 1 (the rows of the per-thread scratch)."""
    return max(1, int(np.diff(batch.tok_off).max(initial=1)))


def _transposed(trans) -> np.ndarray:
    return np.ascontiguousarray(trans.transpose(0, 2, 1))
