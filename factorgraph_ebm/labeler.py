"""A scikit-learn-style sequence labeler: a linear-chain energy model trained with the losses
of energy-based learning.

The energy of a label sequence ``y = (y_0, ..., y_{T-1})`` for an input sequence of attribute
vectors ``x_0, ..., x_{T-1}`` (rows of a sparse design matrix, see
:mod:`factorgraph_ebm.features`) is

    E(y, x) = sum_t x_t . W[:, y_t] + sum_{t>=1} A[y_{t-1}, y_t] + s[y_0] + e[y_{T-1}]

(lower is better): unary energies ``U = X @ W`` of shape (n_tokens, n_labels), one transition
table A (n_labels, n_labels) shared by all positions, and optional start and end energies
s, e (n_labels,). A CRF's scores are the negated energies. W is sparse: by default it has a
weight only for the (attribute, label) pairs seen in training (CRFsuite's default feature
set). ``U = X @ W`` is a sparse-sparse product computed by a Numba kernel over whole
batches of tokens, inference runs on the trellis (:mod:`factorgraph_ebm.trellis`) over whole
batches of sequences at once, and the gradient with respect to W is the sparse product
``X.T @ G`` (``G = dL/dU``, n_tokens x n_labels) restricted to W's pattern.

Losses (LeCun et al. 2006, "A Tutorial on Energy-Based Learning", sec. 2.2 and 6):

- :class:`~factorgraph_ebm.losses.PerceptronLoss` (Collins 2002): by default an online
  averaged perceptron (one update per sequence, learning rate 1, lazily averaged weights,
  as CRFsuite's ``ap``), or mini-batch SGD/Adam on the perceptron loss;
- :class:`~factorgraph_ebm.losses.HingeLoss`, :class:`~factorgraph_ebm.losses.LogLoss` and
  every other :class:`~factorgraph_ebm.losses.MarginLoss` (``q(E_C, E_I)``) with the most
  offending incorrect answer ``Ybar = argmin_{Y != Y^i} E(Y)``, loss-augmented with
  ``hamming > 0`` (margin rescaling: ``E(Y) - hamming * Hamming(Y, Y^i)`` is minimized, the
  structured SVM of Taskar et al. 2003 / Tsochantaridis et al. 2005);
- :class:`~factorgraph_ebm.losses.NLLLoss`: ``E(Y^i) - F_beta``, a linear-chain CRF (Lafferty
  et al. 2001) at beta = 1.

Training minimizes ``(1/N) sum_i L_i + l2/2 ||theta||^2`` over all parameters theta (W, A, s,
e), as :func:`factorgraph_ebm.train.fit` does. CRFsuite minimizes
``sum_i NLL_i + c2 ||theta||^2``; dividing by N shows that its ``c2`` is ``l2 = 2 c2 / N``
here (e.g. c2 = 1 on the 8,936 CoNLL-2000 training sentences is l2 = 2.238e-4).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse
from tqdm.auto import tqdm

from . import losses as _losses
from ._config import NJIT_OPTIONS, njit
from .exceptions import FactorGraphError, TargetError
from .features import AttributeIndexer, AttributeMatrix
from .losses import Loss, MarginLoss, NLLLoss, PerceptronLoss, _check_number
from .metrics import token_accuracy
from .train import LBFGS, SGD, Adam, _train_lbfgs
from .trellis import best_incorrect, forward_backward, path_energy, viterbi, viterbi_kernel

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SequenceLabeler"]

#: The ``format`` field of the JSON header of a saved model.
FORMAT_NAME = "factorgraph_ebm.SequenceLabeler"
#: The newest file format version this module writes and reads.
FORMAT_VERSION = 1

_LOSS_NAMES = {
    "perceptron": lambda: PerceptronLoss(),
    "hinge": lambda: _losses.HingeLoss(margin=1.0),
    "hinge_hamming": lambda: _losses.HingeLoss(margin=0.0, hamming=1.0),
    "log": lambda: _losses.LogLoss(),
    "nll": lambda: NLLLoss(1.0),
    "crf": lambda: NLLLoss(1.0),
}
_DEFAULT_EPOCHS = {"lbfgs": 100, "online": 20, "minibatch": 10}


def _check_count(name, value) -> int:
    """``int(value)`` after checking that it is an integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FactorGraphError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _resolve_loss(loss) -> Loss:
    """A Loss instance from a Loss or a short name (see :class:`SequenceLabeler`)."""
    if isinstance(loss, str):
        if loss not in _LOSS_NAMES:
            raise FactorGraphError(
                f"unknown loss {loss!r}; use one of {sorted(_LOSS_NAMES)} or a Loss instance"
            )
        return _LOSS_NAMES[loss]()
    if isinstance(loss, MarginLoss):
        if loss.radius != 0.0 or loss.distance is not None:
            raise FactorGraphError(
                f"{loss!r}: a forbidden sphere (radius > 0 or a distance) is not defined for "
                "sequence labels; the labeler excludes only Y^i itself"
            )
        return loss
    if isinstance(loss, (PerceptronLoss, NLLLoss)):
        return loss
    raise FactorGraphError(
        f"SequenceLabeler supports PerceptronLoss, NLLLoss and the margin losses (HingeLoss, "
        f"LogLoss, ...), or the names {sorted(_LOSS_NAMES)}; got {loss!r}"
    )


def _loss_state(loss: Loss) -> dict:
    """JSON-able ``{"class", "params"}`` of a loss (rebuilt by :func:`_loss_from_state`)."""
    params = {k: v for k, v in vars(loss).items() if k != "distance"}
    return {"class": type(loss).__name__, "params": params}


def _loss_from_state(state) -> Loss:
    cls = getattr(_losses, state["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, Loss)):
        raise FactorGraphError(f"saved model names an unknown loss class {state['class']!r}")
    return cls(**state["params"])


# --------------------------------------------------------------------------- kernels
# The trainable weights of W (n_features, L) are its entries in a fixed sparsity pattern,
# in CSR form: for attribute a, the entries w_ptr[a] .. w_ptr[a + 1] - 1 of (w_label,
# w_value) are its labels and weights. With all_possible_states=False only the (attribute,
# label) pairs seen in training are entries (CRFsuite's default feature set); the others are
# fixed at 0. The products with the design matrix run on a dense (n_features, L) copy of W,
# whose rows of L contiguous floats vectorize well.


@njit(parallel=True, **NJIT_OPTIONS)
def _unary_kernel(indptr, indices, data, rows, weights, out):
    """``out[r] += X[rows[r]] @ W`` for every r: design-matrix rows (CSR) times the dense
    weights (n_features, L), in parallel over rows."""
    n_labels = weights.shape[1]
    for r in numba.prange(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            a = indices[p]
            x = data[p]
            for label in range(n_labels):
                out[r, label] += x * weights[a, label]


@njit(**NJIT_OPTIONS)
def _weight_grad_kernel(indptr, indices, data, rows, grad_unary, out):
    """``out += X[rows].T @ grad_unary``, dense (n_features, L), touching only the rows of
    ``out`` of the attributes present."""
    n_labels = out.shape[1]
    for r in range(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            a = indices[p]
            x = data[p]
            for label in range(n_labels):
                out[a, label] += x * grad_unary[r, label]


@njit(**NJIT_OPTIONS)
def _gather_touched(indptr, indices, rows, w_ptr, w_label, dense, out):
    """``out[q] += dense[a, w_label[q]]`` for the pattern entries q of every attribute a
    present in ``rows``, and reset those rows of ``dense`` to 0 (a repeated attribute adds
    0 the second time)."""
    for r in range(rows.shape[0]):
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            a = indices[p]
            for q in range(w_ptr[a], w_ptr[a + 1]):
                out[q] += dense[a, w_label[q]]
            dense[a, :] = 0.0


@njit(**NJIT_OPTIONS)
def _find_entry(w_ptr, w_label, a, label):
    """The entry of W at (attribute a, label), or -1 when it is not stored."""
    for q in range(w_ptr[a], w_ptr[a + 1]):
        if w_label[q] == label:
            return q
    return -1


@njit(**NJIT_OPTIONS)
def _perceptron_epoch(
    indptr, indices, data, y, offsets, order, w_ptr, w_label, w_value, transition, start, end,
    sum_value, sum_transition, sum_start, sum_end, count, boundary,
):  # pragma: no cover - compiled
    """One online pass of the (averaged) structured perceptron over the sequences ``order``.

    For each sequence: unary energies from its CSR rows, Viterbi, and when the lowest-energy
    labeling ``p`` differs from ``y``, the update ``theta -= onehot(y) - onehot(p)`` (only
    the entries where they differ change; weights that are not stored stay 0). ``sum_*``
    accumulate ``count * update`` for lazy averaging (averaged theta = theta - sum / count;
    Daume III 2006, sec. 2.1.1). Returns ``(summed perceptron loss E(y) - E(p), new
    count)``.
    """
    n_labels = transition.shape[0]
    total_loss = 0.0
    longest = 0
    for s in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[s + 1] - offsets[s])
    unary = np.zeros((longest, n_labels))
    predicted = np.zeros(longest, dtype=np.int64)
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
        lowest = viterbi_kernel(u, transition, start, end, path)
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


# --------------------------------------------------------------------------- data
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
    weights' pattern is (w_ptr, w_label) (CSR of W, see the kernels). Holds two dense
    (n_features, L) work arrays while training (:meth:`release` frees them).
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
        self._weights = self._grad = None

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

    def release(self):
        """Free the dense work arrays (they are rebuilt when needed)."""
        self._weights = self._grad = None

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

    def unary(self, theta, design: _Design, rows) -> np.ndarray:
        """Unary energies (len(rows), L) of the given token rows: X[rows] @ W."""
        if self._weights is None:
            self._weights = np.zeros((self.n_features, self.n_labels))
        self._weights.ravel()[self.w_flat] = theta[: self.n_weights]
        out = np.zeros((len(rows), self.n_labels))
        _unary_kernel(design.indptr, design.indices, design.data, rows, self._weights, out)
        return out

    def add_weight_grad(self, design: _Design, rows, grad_unary, out):
        """``out += (X[rows].T @ grad_unary)`` at the stored weights' entries, (n_weights,)."""
        if self._grad is None:
            self._grad = np.zeros((self.n_features, self.n_labels))
        _weight_grad_kernel(design.indptr, design.indices, design.data, rows, grad_unary,
                            self._grad)
        nnz = int(np.sum(design.indptr[rows + 1] - design.indptr[rows]))
        if nnz * 4 < self.n_features:  # a small batch: visit only its attributes
            _gather_touched(design.indptr, design.indices, rows, self.w_ptr, self.w_label,
                            self._grad, out)
        else:
            out += self._grad.ravel()[self.w_flat]
            self._grad.fill(0.0)

    def path_grad(self, states, lengths, weights, grad_unary, grad):
        """Add ``weights[i] * dE(states_i)/d(A, s, e)`` of every sequence i to ``grad`` (flat)
        and ``weights[i] * onehot(states_i)`` to ``grad_unary`` (n_tokens, L), in place."""
        k = self.n_labels
        token_weight = np.repeat(weights, lengths)
        np.add.at(grad_unary, (np.arange(len(states)), states), token_weight)
        _, grad_a, grad_s, grad_e = self.unpack(grad)
        ends = np.cumsum(lengths)
        first, last = ends - lengths, ends - 1
        inner = np.ones(len(states), dtype=bool)
        inner[first] = False
        pairs = states[:-1][inner[1:]] * k + states[1:][inner[1:]]
        grad_a += np.bincount(pairs, token_weight[1:][inner[1:]], minlength=k * k).reshape(k, k)
        if self.boundary:
            grad_s += np.bincount(states[first], weights, minlength=k)
            grad_e += np.bincount(states[last], weights, minlength=k)


def _value_and_grad(chain: _Chain, loss: Loss, theta, design: _Design, rows, y, lengths):
    """Summed loss over a batch of sequences and its gradient with respect to theta (flat).

    ``rows`` int64: the token rows of the batch's sequences in the design matrix, ``y`` int64
    their labels, ``lengths`` int64 (n_seq,) the sequence lengths.
    """
    a, s, e = chain.trellis_args(theta)
    unary = chain.unary(theta, design, rows)
    grad = np.zeros(chain.n_params)
    grad_unary = np.zeros_like(unary)
    n_seq = len(lengths)
    correct = path_energy(unary, a, y, lengths, start=s, end=e)
    if isinstance(loss, NLLLoss):
        fb = forward_backward(unary, a, lengths, beta=loss.beta, start=s, end=e)
        value = float(np.sum(correct - fb.free_energy))
        chain.path_grad(y, lengths, np.ones(n_seq), grad_unary, grad)
        grad_unary -= fb.marginals
        _, grad_a, grad_s, grad_e = chain.unpack(grad)
        grad_a -= fb.transition_marginals
        if chain.boundary:
            grad_s -= fb.start_marginals
            grad_e -= fb.end_marginals
    elif isinstance(loss, PerceptronLoss):
        best = viterbi(unary, a, lengths, start=s, end=e)
        value = float(np.sum(np.maximum(correct - best.energy, 0.0)))
        chain.path_grad(y, lengths, np.ones(n_seq), grad_unary, grad)
        chain.path_grad(best.states, lengths, -np.ones(n_seq), grad_unary, grad)
    else:  # MarginLoss
        scored = unary
        if loss.hamming:
            scored = unary - loss.hamming
            scored[np.arange(len(y)), y] += loss.hamming
        offending = best_incorrect(scored, a, y, lengths, start=s, end=e)
        q = np.array([loss.q(c, i) for c, i in zip(correct.tolist(), offending.energy.tolist())])
        value = float(q[:, 0].sum())
        chain.path_grad(y, lengths, q[:, 1], grad_unary, grad)
        push = np.where(np.isfinite(offending.energy), q[:, 2], 0.0)
        chain.path_grad(offending.states, lengths, push, grad_unary, grad)
    chain.add_weight_grad(design, rows, grad_unary, grad[: chain.n_weights])
    return value, grad


# --------------------------------------------------------------------------- estimator
class SequenceLabeler:
    """Linear-chain sequence labeler trained with an energy-based loss (see the module
    docstring for the energy and the objective).

    Parameters
    ----------
    loss : Loss or str, default="nll"
        A :class:`~factorgraph_ebm.losses.PerceptronLoss`, :class:`~factorgraph_ebm.losses.
        NLLLoss` or :class:`~factorgraph_ebm.losses.MarginLoss` (``radius=0``), or a name:
        ``"perceptron"``, ``"hinge"`` (``HingeLoss(margin=1)``), ``"hinge_hamming"``
        (``HingeLoss(margin=0, hamming=1)``, the margin-rescaled structured SVM), ``"log"``
        (``LogLoss()``), ``"nll"`` or ``"crf"`` (``NLLLoss(beta=1)``).
    optimizer : SGD, Adam, LBFGS or list of (optimizer, n_epochs), optional
        Mini-batch :class:`~factorgraph_ebm.train.SGD` or :class:`~factorgraph_ebm.train.Adam`
        (their ``stepper``), or full-batch :class:`~factorgraph_ebm.train.LBFGS` (smooth losses:
        NLL). Default: L-BFGS for NLL, the online perceptron (no optimizer) for the perceptron
        loss, ``Adam(learning_rate=0.01)`` otherwise. A list of stages runs them in turn,
        each from where the last stopped, e.g. ``[(Adam(0.02), 3), (LBFGS(), 40)]``: a few
        cheap stochastic epochs, then quasi-Newton iterations to the optimum.
    n_epochs : int, optional
        Passes over the data (L-BFGS: iterations at most). Default 100 for L-BFGS, 20 for the
        online perceptron, 10 for SGD/Adam. Leave None when ``optimizer`` is a list of
        stages.
    batch_size : int, default=64
        Sequences per SGD/Adam step (the step follows the batch-mean gradient + l2 theta).
    l2 : float, default=0.0
        L2 weight: ``l2/2 ||theta||^2`` is added to the mean loss (CRFsuite's ``c2`` is
        ``l2 N / 2``). The online perceptron takes none.
    averaging : bool, default=True
        Average the weights of the online perceptron (the averaged perceptron, Collins 2002);
        used only by the online perceptron.
    boundary : bool, default=True
        Learn start and end energies s, e; False fixes them to 0.
    all_possible_states : bool, default=False
        Train a weight for every (attribute, label) pair; by default only for the pairs
        seen in the training data, the others staying 0 (CRFsuite's default
        ``feature.possible_states=0``, sklearn-crfsuite's ``all_possible_states=False``).
        Transitions are always all trained.
    delta, period : float, int, default=1e-5, 10
        CRFsuite's stopping rule for L-BFGS: stop when the objective improved by at most
        ``delta`` (relative to its value) over the last ``period`` iterations; ``delta=0``
        runs the ``n_epochs`` iterations (or to scipy's own tolerances). These replace the
        ``delta``/``period`` of an :class:`~factorgraph_ebm.train.LBFGS` optimizer given here.
    min_freq : int, default=1
        Attributes seen in fewer training tokens are dropped
        (:class:`~factorgraph_ebm.features.AttributeIndexer`).
    n_features : int, optional
        Hash attributes into this many columns instead of fitting a vocabulary.
    seed : int or None, default=0
        Seeds the shuffling of the sequences every epoch; the same seed, data and options
        give the same model.
    progress : bool, default=True
        Show a tqdm progress bar per epoch (on stderr).

    Attributes
    ----------
    classes_ : list
        The labels, sorted; column l of the energies is ``classes_[l]``.
    weights_ : ndarray (n_features, n_labels), float64
        W: unary energy per attribute and label, as a dense array (0 where no weight is
        stored; see ``all_possible_states``).
    n_weights_ : int
        The number of stored (trainable) weights of W.
    transition_ : ndarray (n_labels, n_labels), float64
        A[previous label, label].
    start_, end_ : ndarray (n_labels,), float64
        s and e (zeros with ``boundary=False``).
    indexer_ : AttributeIndexer or None
        The attribute vocabulary (None when X are numeric arrays).
    n_features_in_ : int
        The number of columns of the design matrix.
    history_ : dict of lists
        Per epoch: ``"loss"`` (mean training loss of the epoch; L-BFGS: at the iterate;
        online perceptron: mean ``E(Y^i) - min E`` before each update), ``"seconds"`` (since
        the start of ``fit``), ``"dev_accuracy"`` (token accuracy on ``X_dev``, if given).
    n_epochs_ : int
        Epochs (L-BFGS iterations) run, over all stages.

    Notes
    -----
    X is a list of sequences; a sequence is either a list of items (attribute dicts or lists
    of attribute names, as in sklearn-crfsuite; see :mod:`factorgraph_ebm.features`) or a
    2-D array of numeric features of shape (T, n_features) (e.g. pixels). y is a list of
    label sequences (str or int labels) of the same lengths.

    Examples
    --------
    >>> from factorgraph_ebm import SequenceLabeler
    >>> X = [[{"w": "the"}, {"w": "dog"}], [{"w": "a"}, {"w": "cat"}]]
    >>> y = [["D", "N"], ["D", "N"]]
    >>> tagger = SequenceLabeler(loss="nll", l2=1e-4, progress=False).fit(X, y)
    >>> tagger.classes_
    ['D', 'N']
    >>> tagger.predict([[{"w": "the"}, {"w": "cat"}], [{"w": "a"}]])
    [['D', 'N'], ['D']]
    >>> tagger.score(X, y)                     # token accuracy
    1.0
    """

    def __init__(
        self,
        loss="nll",
        optimizer=None,
        *,
        n_epochs: int | None = None,
        batch_size: int = 64,
        l2: float = 0.0,
        averaging: bool = True,
        boundary: bool = True,
        all_possible_states: bool = False,
        delta: float = 1e-5,
        period: int = 10,
        min_freq: int = 1,
        n_features: int | None = None,
        seed: int | None = 0,
        progress: bool = True,
    ):
        self.loss = loss
        self.optimizer = optimizer
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.averaging = averaging
        self.boundary = boundary
        self.all_possible_states = all_possible_states
        self.delta = delta
        self.period = period
        self.min_freq = min_freq
        self.n_features = n_features
        self.seed = seed
        self.progress = progress

    # ----------------------------------------------------------------- sklearn protocol
    _PARAMS = ("loss", "optimizer", "n_epochs", "batch_size", "l2", "averaging", "boundary",
               "all_possible_states", "delta", "period", "min_freq", "n_features", "seed",
               "progress")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters (scikit-learn's estimator protocol, so that
        ``sklearn.base.clone`` and the model-selection tools work)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> SequenceLabeler:
        """Set constructor parameters; unknown names raise FactorGraphError."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise FactorGraphError(
                    f"SequenceLabeler has no parameter {name!r}; it has {list(self._PARAMS)}"
                )
            setattr(self, name, value)
        return self

    # ----------------------------------------------------------------- options
    def _options(self):
        """Validated ``(loss, stages)``: stages is a list of ``(optimizer or None, mode,
        n_epochs)``, mode "online", "lbfgs" or "minibatch"."""
        loss = _resolve_loss(self.loss)
        _check_number("SequenceLabeler", "l2", self.l2, allow_zero=True)
        _check_count("batch_size", self.batch_size)
        _check_count("period", self.period)
        _check_number("SequenceLabeler", "delta", self.delta, allow_zero=True)
        optimizer = self.optimizer
        if isinstance(optimizer, (list, tuple)):
            if self.n_epochs is not None:
                raise FactorGraphError(
                    "give n_epochs inside the stages, optimizer=[(optimizer, n_epochs), ...], "
                    "and leave n_epochs=None"
                )
            if not optimizer:
                raise FactorGraphError("optimizer=[] has no stage; give (optimizer, n_epochs)")
            for stage in optimizer:
                if not (isinstance(stage, (list, tuple)) and len(stage) == 2):
                    raise FactorGraphError(
                        f"each stage must be a pair (optimizer, n_epochs), got {stage!r}"
                    )
            stages = [(opt, _check_count("n_epochs", n)) for opt, n in optimizer]
        else:
            stages = [(optimizer, self.n_epochs)]
        resolved = []
        for opt, n_epochs in stages:
            if opt is None:
                if isinstance(loss, PerceptronLoss):
                    mode = "online"
                elif isinstance(loss, NLLLoss):
                    opt, mode = LBFGS(), "lbfgs"
                else:
                    opt, mode = Adam(learning_rate=0.01), "minibatch"
            elif isinstance(opt, LBFGS):
                mode = "lbfgs"
                if not loss.is_smooth():
                    raise FactorGraphError(
                        f"LBFGS needs a smooth loss, but {loss!r} has kinks where a minimizing "
                        "answer changes; use SGD or Adam (or NLLLoss)"
                    )
            elif isinstance(opt, (SGD, Adam)):
                mode = "minibatch"
            else:
                raise FactorGraphError(
                    f"optimizer must be SGD, Adam, LBFGS, None or a list of (optimizer, "
                    f"n_epochs) stages, got {opt!r}"
                )
            n_epochs = _DEFAULT_EPOCHS[mode] if n_epochs is None else n_epochs
            resolved.append((opt, mode, _check_count("n_epochs", n_epochs)))
        if any(mode == "online" for _, mode, _ in resolved) and self.l2:
            raise FactorGraphError(
                "the online perceptron has no L2 term; set l2=0, or give an SGD or Adam "
                "optimizer to train the perceptron loss with L2"
            )
        return loss, resolved

    # ----------------------------------------------------------------- data
    def _design(self, X, *, fit: bool) -> AttributeMatrix:
        """The design matrix of X (fitting the vocabulary when ``fit``)."""
        if isinstance(X, (str, bytes)) or not isinstance(X, (Sequence, np.ndarray)):
            raise FactorGraphError(
                f"X must be a list of sequences, got {type(X).__name__}"
            )
        if len(X) == 0:
            raise FactorGraphError("X holds no sequences")
        numeric = isinstance(X[0], np.ndarray)
        if fit:
            self._numeric = numeric
        elif numeric != self._numeric:
            raise FactorGraphError(
                "this labeler was fitted on "
                + ("numeric arrays" if self._numeric else "attribute dicts")
                + "; X must be of the same kind"
            )
        if not numeric:
            if fit:
                self.indexer_ = AttributeIndexer(min_freq=self.min_freq,
                                                 n_features=self.n_features)
                return self.indexer_.fit_transform(X)
            return self.indexer_.transform(X)
        arrays = []
        width = np.asarray(X[0]).shape[-1] if fit else self.n_features_in_
        for i, seq in enumerate(X):
            seq = np.asarray(seq)
            if seq.ndim != 2 or seq.shape[0] == 0:
                raise FactorGraphError(
                    f"sequence {i}: numeric features must be a 2-D array (T >= 1, "
                    f"n_features), got shape {seq.shape}"
                )
            if not np.issubdtype(seq.dtype, np.number) or not np.isfinite(seq).all():
                raise FactorGraphError(f"sequence {i}: features must be finite numbers")
            if seq.shape[1] != width:
                raise FactorGraphError(
                    f"sequence {i} has {seq.shape[1]} features, expected {width}"
                )
            arrays.append(seq)
        if fit:
            self.indexer_ = None
        matrix = scipy.sparse.csr_matrix(np.vstack(arrays).astype(np.float64))
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        return AttributeMatrix(matrix, lengths)

    def _encode(self, y, lengths, *, fit: bool, unknown: int | None = None) -> np.ndarray:
        """int64 (n_tokens,) label indices of y; ``fit`` sets ``classes_``; labels outside
        ``classes_`` raise TargetError, or get the code ``unknown`` when it is given."""
        if isinstance(y, (str, bytes)) or not isinstance(y, (Sequence, np.ndarray)):
            raise TargetError(f"y must be a list of label sequences, got {type(y).__name__}")
        if len(y) != len(lengths):
            raise TargetError(f"X has {len(lengths)} sequences, y has {len(y)}")
        for i, (labels, n) in enumerate(zip(y, lengths.tolist())):
            if isinstance(labels, (str, bytes)) or len(labels) != n:
                got = "a str" if isinstance(labels, (str, bytes)) else f"{len(labels)} labels"
                raise TargetError(f"sequence {i} has {n} tokens but its y has {got}")
        flat = [label for labels in y for label in labels]
        if fit:
            for label in set(flat):
                if not isinstance(label, (str, int, np.integer)) or isinstance(label, bool):
                    raise TargetError(f"labels must be str or int, got {label!r}")
            try:
                self.classes_ = sorted(set(flat))
            except TypeError:
                raise TargetError("labels must all be str or all be int") from None
            self.classes_ = [c if isinstance(c, str) else int(c) for c in self.classes_]
        code = {label: k for k, label in enumerate(self.classes_)}
        if unknown is not None:
            return np.fromiter((code.get(label, unknown) for label in flat), dtype=np.int64,
                               count=len(flat))
        try:
            return np.fromiter((code[label] for label in flat), dtype=np.int64, count=len(flat))
        except KeyError as error:
            where = flat.index(error.args[0])
            seq = int(np.searchsorted(np.cumsum(lengths), where, side="right"))
            raise TargetError(
                f"sequence {seq}, position {where - int(np.sum(lengths[:seq]))}: label "
                f"{error.args[0]!r} was not seen in training (labels: {self.classes_})"
            ) from None

    # ----------------------------------------------------------------- training
    def fit(self, X, y, X_dev=None, y_dev=None) -> SequenceLabeler:
        """Train on sequences X with label sequences y.

        Parameters
        ----------
        X : list of sequences
            Lists of attribute dicts (or lists of attribute names), or 2-D float arrays
            (T_i, n_features); see the class Notes.
        y : list of sequences of str or int
            One label per token.
        X_dev, y_dev : optional
            A held-out set whose token accuracy is recorded after every epoch
            (``history_["dev_accuracy"]``).

        Returns
        -------
        self

        Raises
        ------
        FactorGraphError
            Bad options, malformed X (naming the sequence and position).
        TargetError
            y that does not match X (naming the sequence), or labels of mixed types.
        """
        loss, stages = self._options()
        self.__dict__.pop("_theta", None)  # unfitted until this fit succeeds
        started = time.perf_counter()
        attributes = self._design(X, fit=True)
        codes = self._encode(y, attributes.lengths, fit=True)
        self.n_features_in_ = attributes.matrix.shape[1]
        chain = _Chain.for_data(attributes, codes, len(self.classes_), bool(self.boundary),
                                bool(self.all_possible_states))
        design = _Design.of(attributes)
        del attributes
        self._chain, self._loss = chain, loss
        dev = None
        if X_dev is not None:
            dev_design = _Design.of(self._design(X_dev, fit=False))
            dev = (dev_design, np.arange(len(dev_design.indptr) - 1, dtype=np.int64),
                   self._encode(y_dev, dev_design.lengths, fit=False, unknown=-1))
        rng = np.random.default_rng(self.seed)
        theta = np.zeros(chain.n_params)
        self.history_ = {"loss": [], "seconds": [], "dev_accuracy": []}
        self.n_epochs_ = 0
        bar = tqdm(total=sum(n for _, _, n in stages), desc=f"SequenceLabeler ({loss.name})",
                   unit="epoch", disable=not self.progress)

        def end_epoch(_, params, mean_loss):
            self.n_epochs_ += 1
            self.history_["loss"].append(float(mean_loss))
            self.history_["seconds"].append(time.perf_counter() - started)
            shown = {"loss": f"{mean_loss:.4g}"}
            if dev is not None:
                dev_design, rows, dev_codes = dev
                unary = chain.unary(params, dev_design, rows)
                a, s, e = chain.trellis_args(params)
                states = viterbi(unary, a, dev_design.lengths, start=s, end=e).states
                self.history_["dev_accuracy"].append(float(np.mean(states == dev_codes)))
                shown["dev"] = f"{self.history_['dev_accuracy'][-1]:.4f}"
            bar.set_postfix(shown)
            bar.update()

        try:
            for optimizer, mode, n_epochs in stages:
                if mode == "online":
                    theta = self._fit_online(chain, design, codes, theta, n_epochs, rng,
                                             end_epoch)
                elif mode == "lbfgs":
                    theta = self._fit_lbfgs(chain, loss, optimizer, design, codes, theta,
                                            n_epochs, end_epoch)
                else:
                    theta = self._fit_minibatch(
                        chain, loss, optimizer, design, codes, theta, n_epochs, rng, end_epoch
                    )
        finally:
            bar.close()
            chain.release()
        self._theta = np.array(theta, dtype=np.float64)
        return self

    def _fit_lbfgs(self, chain, loss, optimizer, design, codes, theta, n_epochs, end_epoch):
        """Full-batch L-BFGS (:func:`factorgraph_ebm.train._train_lbfgs`), stopped by
        CRFsuite's rule with this labeler's ``delta`` and ``period``
        (:meth:`factorgraph_ebm.train.LBFGS.stalled`)."""
        optimizer = dataclasses.replace(
            optimizer, delta=float(self.delta), period=int(self.period)
        )
        run = _FullBatch(chain, loss, design, codes, float(self.l2))
        return _train_lbfgs(run, theta, optimizer, n_epochs, end_epoch)

    def _fit_minibatch(self, chain, loss, optimizer, design, codes, theta, n_epochs, rng,
                       end_epoch):
        step = optimizer.stepper(chain.n_params)
        n_seq = len(design.lengths)
        l2 = float(self.l2)
        for epoch in range(1, n_epochs + 1):
            order = rng.permutation(n_seq)
            total = 0.0
            for first in range(0, n_seq, self.batch_size):
                batch = order[first : first + self.batch_size]
                rows = _token_rows(design.offsets, batch)
                value, grad = _value_and_grad(
                    chain, loss, theta, design, rows, codes[rows], design.lengths[batch]
                )
                total += value
                grad /= len(batch)
                if l2:
                    grad += l2 * theta
                theta = step(theta, grad)
            end_epoch(epoch, theta, total / n_seq)
        return theta

    def _fit_online(self, chain, design, codes, theta, n_epochs, rng, end_epoch):
        n_seq = len(design.lengths)
        current = theta.copy()
        sums = np.zeros_like(theta)
        w, a, s, e = chain.unpack(current)
        sw, sa, ss, se = chain.unpack(sums)
        count = 0
        for epoch in range(1, n_epochs + 1):
            order = rng.permutation(n_seq).astype(np.int64)
            total, count = _perceptron_epoch(
                design.indptr, design.indices, design.data, codes, design.offsets, order,
                chain.w_ptr, chain.w_label, w, a, s, e, sw, sa, ss, se, count, chain.boundary,
            )
            averaged = current - sums / count if self.averaging else current.copy()
            end_epoch(epoch, averaged, total / n_seq)
        return averaged

    # ----------------------------------------------------------------- fitted state
    def _check_fitted(self):
        if not hasattr(self, "_theta"):
            raise FactorGraphError("this SequenceLabeler is not fitted; call fit(X, y) first")

    @property
    def weights_(self) -> np.ndarray:
        self._check_fitted()
        return self._chain.dense_weights(self._theta)

    @property
    def n_weights_(self) -> int:
        self._check_fitted()
        return self._chain.n_weights

    @property
    def transition_(self) -> np.ndarray:
        self._check_fitted()
        return self._chain.unpack(self._theta)[1]

    @property
    def start_(self) -> np.ndarray:
        self._check_fitted()
        return self._chain.unpack(self._theta)[2]

    @property
    def end_(self) -> np.ndarray:
        self._check_fitted()
        return self._chain.unpack(self._theta)[3]

    # ----------------------------------------------------------------- prediction
    def _energies(self, X):
        """Unary energies (n_tokens, L), lengths, and the trellis arguments (A, s, e)."""
        self._check_fitted()
        design = _Design.of(self._design(X, fit=False))
        rows = np.arange(len(design.indptr) - 1, dtype=np.int64)
        unary = self._chain.unary(self._theta, design, rows)
        return unary, design.lengths, self._chain.trellis_args(self._theta)

    def predict(self, X) -> list[list]:
        """The lowest-energy label sequence of each input sequence (Viterbi).

        Parameters
        ----------
        X : list of sequences (as in :meth:`fit`)

        Returns
        -------
        list of list
            Labels from ``classes_``, one list per sequence.

        Raises
        ------
        FactorGraphError
            Not fitted, or X of another kind or width than the training data.
        """
        unary, lengths, (a, s, e) = self._energies(X)
        states = viterbi(unary, a, lengths, start=s, end=e).states
        classes = self.classes_
        return [[classes[k] for k in part.tolist()]
                for part in np.split(states, np.cumsum(lengths)[:-1])]

    def predict_marginals(self, X) -> list[np.ndarray]:
        """Per-token label marginals ``P(y_t = l | x)`` at the loss's beta (that of an
        NLLLoss, else 1), by forward-backward.

        Returns
        -------
        list of ndarray of shape (T_i, n_labels), float64
            One array per sequence; rows sum to 1, columns in ``classes_`` order.

        Raises
        ------
        FactorGraphError
            As :meth:`predict`.
        """
        unary, lengths, (a, s, e) = self._energies(X)
        beta = self._loss.beta if isinstance(self._loss, NLLLoss) else 1.0
        fb = forward_backward(unary, a, lengths, beta=beta, start=s, end=e)
        return np.split(fb.marginals, np.cumsum(lengths)[:-1])

    def score(self, X, y) -> float:
        """Token accuracy of :meth:`predict` on X against y (see
        :func:`~factorgraph_ebm.metrics.token_accuracy`)."""
        return token_accuracy(y, self.predict(X))

    # ----------------------------------------------------------------- files
    def save(self, path) -> None:
        """Write the trained model to an ``.npz`` file (no pickle).

        Format (version 1): a NumPy ``.npz`` archive, read with ``allow_pickle=False``:

        - ``header``: uint8, the UTF-8 bytes of a JSON object with ``format``
          (``"factorgraph_ebm.SequenceLabeler"``), ``version`` (1), ``labels`` (the classes,
          str or int, in column order), ``features`` (``{"kind": "attributes", "min_freq",
          "n_features", "attributes"}``: the vocabulary in column order, or null and the hash
          size; or ``{"kind": "numeric", "n_features"}``) and ``options`` (the loss as
          ``{"class", "params"}``, ``l2``, ``boundary``, ``all_possible_states``,
          ``averaging``, ``seed``, ``n_epochs_``);
        - ``weight_ptr`` int64 (n_features + 1,), ``weight_label`` int64 (n_weights,),
          ``weight_value`` float64 (n_weights,): W in CSR form (attribute rows, label
          columns);
        - ``transition`` float64 (n_labels, n_labels), ``start`` and ``end`` float64
          (n_labels,).

        Raises
        ------
        FactorGraphError
            Not fitted, or labels that JSON cannot hold.
        """
        self._check_fitted()
        if self.indexer_ is None:
            features = {"kind": "numeric", "n_features": int(self.n_features_in_)}
        else:
            features = {"kind": "attributes", **self.indexer_.get_state()}
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "labels": list(self.classes_),
            "features": features,
            "options": {
                "loss": _loss_state(self._loss),
                "l2": float(self.l2),
                "boundary": bool(self.boundary),
                "all_possible_states": bool(self.all_possible_states),
                "averaging": bool(self.averaging),
                "seed": None if self.seed is None else int(self.seed),
                "n_epochs_": int(getattr(self, "n_epochs_", 0)),
            },
        }
        blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        chain = self._chain
        w, a, s, e = chain.unpack(self._theta)
        with open(os.fspath(path), "wb") as handle:
            np.savez(handle, header=blob, weight_ptr=chain.w_ptr, weight_label=chain.w_label,
                     weight_value=w, transition=a, start=s, end=e)

    @classmethod
    def load(cls, path) -> SequenceLabeler:
        """Read a model written by :meth:`save`.

        Raises
        ------
        FactorGraphError
            Not such a file, another format, a newer version than :data:`FORMAT_VERSION`, or
            arrays of the wrong shape.
        """
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, ValueError) as error:
            raise FactorGraphError(f"{path}: not a SequenceLabeler .npz file ({error})") from None
        if "header" not in arrays:
            raise FactorGraphError(f"{path}: no 'header' array; not a SequenceLabeler file")
        try:
            header = json.loads(arrays["header"].tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise FactorGraphError(f"{path}: unreadable JSON header ({error})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise FactorGraphError(
                f"{path}: format {header.get('format') if isinstance(header, dict) else None!r}"
                f", expected {FORMAT_NAME!r}"
            )
        version = header.get("version")
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise FactorGraphError(
                f"{path}: file format version {version!r}; this factorgraph_ebm reads "
                f"versions 1..{FORMAT_VERSION} (a newer version needs a newer factorgraph_ebm)"
            )
        try:
            options, features, labels = header["options"], header["features"], header["labels"]
            loss = _loss_from_state(options["loss"])
            model = cls(loss=loss, l2=options["l2"], boundary=options["boundary"],
                        all_possible_states=options["all_possible_states"],
                        averaging=options["averaging"], seed=options["seed"], progress=False)
            if features["kind"] == "numeric":
                model.indexer_, model._numeric = None, True
                n_features = int(features["n_features"])
            else:
                model.indexer_ = AttributeIndexer.from_state(features)
                model._numeric = False
                model.min_freq, model.n_features = features["min_freq"], features["n_features"]
                n_features = model.indexer_.n_features_
            k = len(labels)
            n_weights = arrays["weight_label"].shape if "weight_label" in arrays else None
            expected = {"weight_ptr": (n_features + 1,), "weight_label": n_weights,
                        "weight_value": n_weights, "transition": (k, k), "start": (k,),
                        "end": (k,)}
            for name, shape in expected.items():
                if name not in arrays or shape is None or arrays[name].shape != shape:
                    got = arrays[name].shape if name in arrays else "missing"
                    raise FactorGraphError(
                        f"{path}: array {name!r} has shape {got}, expected {shape}"
                    )
            ptr, lab = arrays["weight_ptr"], arrays["weight_label"]
            if (ptr[0] != 0 or ptr[-1] != len(lab) or (np.diff(ptr) < 0).any()
                    or ((lab < 0) | (lab >= k)).any()):
                raise FactorGraphError(f"{path}: weight_ptr/weight_label are not a valid "
                                       f"CSR pattern of {n_features} x {k} weights")
        except (KeyError, TypeError) as error:
            raise FactorGraphError(f"{path}: incomplete header ({error})") from None
        model.classes_ = list(labels)
        model.n_features_in_ = n_features
        model._loss = loss
        model._chain = _Chain(ptr, lab, k, bool(model.boundary))
        model.n_epochs_ = options.get("n_epochs_", 0)
        model._theta = np.concatenate([arrays[n].astype(np.float64).ravel() for n in
                                       ("weight_value", "transition", "start", "end")])
        model.history_ = {"loss": [], "seconds": [], "dev_accuracy": []}
        return model

    def __repr__(self) -> str:
        defaults = SequenceLabeler.__init__.__kwdefaults__
        shown = [repr(self.loss)] if self.loss != "nll" else []
        shown += [f"optimizer={self.optimizer!r}"] if self.optimizer is not None else []
        shown += [f"{name}={getattr(self, name)!r}" for name in self._PARAMS[2:]
                  if getattr(self, name) != defaults[name]]
        return f"SequenceLabeler({', '.join(shown)})"


class _FullBatch:
    """What :func:`factorgraph_ebm.train._train_lbfgs` needs: ``samples`` (their number),
    ``l2``, and ``batch(theta, indices) -> (summed loss, summed gradient)`` over all
    sequences."""

    def __init__(self, chain, loss, design, codes, l2):
        self.chain, self.loss, self.design, self.codes, self.l2 = chain, loss, design, codes, l2
        self.samples = range(len(design.lengths))
        self.rows = np.arange(len(codes), dtype=np.int64)

    def batch(self, theta, indices):
        return _value_and_grad(self.chain, self.loss, theta, self.design, self.rows,
                               self.codes, self.design.lengths)
