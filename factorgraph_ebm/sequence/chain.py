"""The linear chain of a :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler`: its
parameter layout (W in a fixed CSR sparsity pattern, then the transition, start and end
energies), the design matrix of a batch of sequences, the Numba kernels that multiply them,
the online perceptron's epoch, and the labeler's objective for
:func:`factorgraph_ebm.optim.minimize` (loss and gradient on the chain backend of the
losses, :class:`~factorgraph_ebm.chain_backend.ChainBatch`)."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse

from .._config import NJIT_OPTIONS, njit
from ..chain_backend import ChainBatch
from ..losses import Loss
from ..trellis.paths import _viterbi_seq
from .features import AttributeMatrix

# --------------------------------------------------------------------------- kernels
# The trainable weights of W (n_features, L) are its entries in a fixed sparsity pattern,
# in CSR form: for attribute a, the entries w_ptr[a] .. w_ptr[a + 1] - 1 of (w_label,
# w_value) are its labels and weights. With all_possible_states=False only the (attribute,
# label) pairs seen in training are entries (CRFsuite's default feature set); the others are
# fixed at 0. The products with the design matrix read the stored entries only: no dense
# (n_features, L) copy of W exists (2,715,110 attributes x 2,242 labels would be 45 GiB).


@njit(parallel=True, **NJIT_OPTIONS)
def _unary_kernel(indptr, indices, data, rows, w_ptr, w_label, w_value, out):
    """``out[r] += X[rows[r]] @ W`` for every r: design-matrix rows (CSR) times W's stored
    entries (CSR, see above), in parallel over rows."""
    for r in numba.prange(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            a = indices[p]
            x = data[p]
            for q in range(w_ptr[a], w_ptr[a + 1]):
                out[r, w_label[q]] += x * w_value[q]


@njit(**NJIT_OPTIONS)
def _weight_grad_kernel(indptr, indices, data, rows, w_ptr, w_label, grad_unary, out):
    """``out[q] += (X[rows].T @ grad_unary)[a, w_label[q]]`` for every stored entry q of W
    (attribute a), summed token by token in row order: only the attributes present are
    visited."""
    for r in range(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            a = indices[p]
            x = data[p]
            for q in range(w_ptr[a], w_ptr[a + 1]):
                out[q] += x * grad_unary[r, w_label[q]]


@njit(**NJIT_OPTIONS)
def _find_entry(w_ptr, w_label, a, label):
    """The entry of W at (attribute a, label), or -1 when it is not stored."""
    for q in range(w_ptr[a], w_ptr[a + 1]):
        if w_label[q] == label:
            return q
    return -1


@njit(**NJIT_OPTIONS)
def _perceptron_epoch(
    indptr, indices, data, y, offsets, order, w_ptr, w_label, w_value, transitions, start, end,
    sum_value, sum_transition, sum_start, sum_end, count, boundary, total_loss, unary,
    predicted, score, back,
):  # pragma: no cover - compiled
    """A pass of the (averaged) structured perceptron over the sequences ``order`` (the
    online trainer calls it on paced chunks of an epoch's order, see ``_fit_online``).

    For each sequence: unary energies from its CSR rows, Viterbi, and when the lowest-energy
    labeling ``p`` differs from ``y``, the update ``theta -= onehot(y) - onehot(p)`` (only
    the entries where they differ change; weights that are not stored stay 0). ``sum_*``
    accumulate ``count * update`` for lazy averaging (averaged theta = theta - sum / count;
    Daume III 2006, sec. 2.1.1). Returns ``(total_loss + summed perceptron loss
    E(y) - E(p), new count)``.

    ``transitions`` is the transition matrix as a (1, L, L) view of theta, updated in place
    (Viterbi reads it as it is: no copy per sequence). Scratch, from the caller: ``unary``
    (T, L), ``predicted`` (T,) int64, ``score`` (2, L) and ``back`` (T, L) int32, with T the
    longest sequence.
    """
    transition = transitions[0]
    zero = np.int64(0)  # not a literal: the specialization of the trellis batch kernels
    for s in order:
        first = offsets[s]
        length = offsets[s + 1] - first
        u = unary[:length]
        u[:] = 0.0
        for t in range(length):
            row = first + t
            for p in range(indptr[row], indptr[row + 1]):
                a = indices[p]
                x = data[p]
                for q in range(w_ptr[a], w_ptr[a + 1]):
                    u[t, w_label[q]] += x * w_value[q]
        path = predicted[:length]
        lowest = _viterbi_seq(u, transitions, zero, zero, start, end, path, score, back)
        correct = start[y[first]] + end[y[first + length - 1]]
        differs = False
        for t in range(length):
            correct += u[t, y[first + t]]
            if t > 0:
                correct += transition[y[first + t - 1], y[first + t]]
            if path[t] != y[first + t]:
                differs = True
        if differs:
            total_loss += correct - lowest
            for t in range(length):
                good = y[first + t]
                bad = path[t]
                if good != bad:
                    row = first + t
                    for p in range(indptr[row], indptr[row + 1]):
                        a = indices[p]
                        x = data[p]
                        q = _find_entry(w_ptr, w_label, a, good)
                        if q >= 0:
                            w_value[q] -= x
                            sum_value[q] -= count * x
                        q = _find_entry(w_ptr, w_label, a, bad)
                        if q >= 0:
                            w_value[q] += x
                            sum_value[q] += count * x
                if t > 0:
                    good_prev = y[first + t - 1]
                    bad_prev = path[t - 1]
                    if good_prev != bad_prev or good != bad:
                        transition[good_prev, good] -= 1.0
                        transition[bad_prev, bad] += 1.0
                        sum_transition[good_prev, good] -= count
                        sum_transition[bad_prev, bad] += count
            if boundary:
                if y[first] != path[0]:
                    start[y[first]] -= 1.0
                    start[path[0]] += 1.0
                    sum_start[y[first]] -= count
                    sum_start[path[0]] += count
                last = first + length - 1
                if y[last] != path[length - 1]:
                    end[y[last]] -= 1.0
                    end[path[length - 1]] += 1.0
                    sum_end[y[last]] -= count
                    sum_end[path[length - 1]] += count
        count += 1
    return total_loss, count


class _Design(NamedTuple):
    """A design matrix as the kernels take it: CSR arrays (int64 indices), lengths and the
    first row of each sequence."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, attributes: AttributeMatrix) -> _Design:
        m = attributes.matrix
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64),
                   np.ascontiguousarray(m.data, dtype=np.float64), attributes.lengths,
                   attributes.offsets)


def _token_rows(offsets: np.ndarray, sequences: np.ndarray) -> np.ndarray:
    """int64: the token rows of the given sequences, concatenated in their order."""
    lengths = offsets[sequences + 1] - offsets[sequences]
    starts = np.repeat(offsets[sequences] - np.cumsum(lengths) + lengths, lengths)
    return starts + np.arange(lengths.sum(), dtype=np.int64)


class _Chain:
    """The layout of the flat parameter vector and the energy computations.

    theta = [w_value (n_weights), A.ravel() (L * L), s (L), e (L)], float64; the stored
    weights' pattern is (w_ptr, w_label) (CSR of W, see the kernels). No dense
    (n_features, L) array is ever built, except by :meth:`dense_weights` when asked.
    """

    def __init__(self, w_ptr, w_label, n_labels: int, boundary: bool):
        self.w_ptr = np.asarray(w_ptr, dtype=np.int64)
        self.w_label = np.asarray(w_label, dtype=np.int64)
        self.n_features = len(self.w_ptr) - 1
        self.n_weights = len(self.w_label)
        self.n_labels, self.boundary = n_labels, boundary
        self.n_params = self.n_weights + n_labels * n_labels + 2 * n_labels
        #: flat index of every stored weight in the dense (n_features, L) array
        self.w_flat = (np.repeat(np.arange(self.n_features, dtype=np.int64),
                                 np.diff(self.w_ptr)) * n_labels + self.w_label)

    @classmethod
    def for_data(cls, attributes: AttributeMatrix, codes, n_labels, boundary, all_states):
        """All (attribute, label) pairs, or those seen in the training data."""
        n_features = attributes.matrix.shape[1]
        if all_states:
            w_ptr = np.arange(n_features + 1, dtype=np.int64) * n_labels
            w_label = np.tile(np.arange(n_labels, dtype=np.int64), n_features)
        else:
            onehot = scipy.sparse.csr_matrix(
                (np.ones(len(codes)), (np.arange(len(codes)), codes)),
                shape=(len(codes), n_labels),
            )
            seen = (abs(attributes.matrix).T @ onehot).tocsr()
            seen.sort_indices()
            w_ptr, w_label = seen.indptr, seen.indices
        return cls(w_ptr, w_label, n_labels, boundary)

    def unpack(self, theta):
        """Views ``(w_value (n_weights,), A (L, L), s (L,), e (L,))`` into theta."""
        n, k = self.n_weights, self.n_labels
        return (theta[:n], theta[n : n + k * k].reshape(k, k), theta[n + k * k : n + k * k + k],
                theta[n + k * k + k :])

    def trellis_args(self, theta):
        _, a, s, e = self.unpack(theta)
        return a, (s if self.boundary else None), (e if self.boundary else None)

    def dense_weights(self, theta) -> np.ndarray:
        """W as a dense (n_features, L) array (zeros where no weight is stored)."""
        w = np.zeros((self.n_features, self.n_labels))
        w.ravel()[self.w_flat] = theta[: self.n_weights]
        return w

    def unary(self, theta, design: _Design, rows=None) -> np.ndarray:
        """Unary energies (len(rows), L) of the given token rows (default all): X[rows] @ W,
        from W's stored entries."""
        if rows is None:
            rows = np.arange(len(design.indptr) - 1, dtype=np.int64)
        out = np.zeros((len(rows), self.n_labels))
        _unary_kernel(design.indptr, design.indices, design.data, rows, self.w_ptr,
                      self.w_label, np.ascontiguousarray(theta[: self.n_weights]), out)
        return out

    def add_weight_grad(self, design: _Design, rows, grad_unary, out):
        """``out += (X[rows].T @ grad_unary)`` at the stored weights' entries, (n_weights,)."""
        _weight_grad_kernel(design.indptr, design.indices, design.data, rows, self.w_ptr,
                            self.w_label, grad_unary, out)

    def flat_grad(self, grad, design: _Design, rows) -> np.ndarray:
        """The gradient with respect to theta (flat) of a
        :class:`~factorgraph_ebm.chain_backend.ChainGradient` over the token rows ``rows``:
        ``X[rows].T @ dL/dU`` at the stored weights, then A, s, e."""
        flat = np.zeros(self.n_params)
        _, grad_a, grad_s, grad_e = self.unpack(flat)
        grad_a[...] = grad.transition
        if self.boundary:
            grad_s[...] = grad.start
            grad_e[...] = grad.end
        self.add_weight_grad(design, rows, grad.unary, flat[: self.n_weights])
        return flat


def _value_and_grad(chain: _Chain, loss: Loss, theta, design: _Design, rows, y, lengths):
    """Summed loss over a batch of sequences and its gradient with respect to theta (flat),
    by the loss on the chain backend (:class:`~factorgraph_ebm.chain_backend.ChainBatch`).

    ``rows`` int64: the token rows of the batch's sequences in the design matrix, ``y`` int64
    their labels, ``lengths`` int64 (n_seq,) the sequence lengths.
    """
    a, s, e = chain.trellis_args(theta)
    batch = ChainBatch(chain.unary(theta, design, rows), a, s, e, y, lengths)
    found = loss.evaluate(batch)
    return float(np.sum(found.value)), chain.flat_grad(found.grad, design, rows)


class _ChainObjective:
    """The labeler's objective for :func:`factorgraph_ebm.optim.minimize`: ``n_samples``
    sequences and ``batch(theta, indices) -> (summed loss, summed gradient)``, each batch
    evaluated at once on the trellis (:func:`_value_and_grad`)."""

    def __init__(self, chain, loss, design, codes):
        self.chain, self.loss, self.design, self.codes = chain, loss, design, codes
        self.n_samples = len(design.lengths)

    def partition(self, start, stop) -> _ChainObjective:
        """The objective over sequences ``start .. stop - 1`` (for a data-parallel worker)."""
        d = self.design
        first, last = int(d.offsets[start]), int(d.offsets[stop])
        lo, hi = int(d.indptr[first]), int(d.indptr[last])
        part = _Design(d.indptr[first : last + 1] - lo, d.indices[lo:hi], d.data[lo:hi],
                       d.lengths[start:stop], d.offsets[start : stop + 1] - first)
        return _ChainObjective(self.chain, self.loss, part, self.codes[first:last])

    def batch(self, theta, indices):
        rows = _token_rows(self.design.offsets, indices)
        return _value_and_grad(self.chain, self.loss, theta, self.design, rows,
                               self.codes[rows], self.design.lengths[indices])
