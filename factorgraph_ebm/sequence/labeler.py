"""A scikit-learn-style sequence labeler: a linear-chain energy model trained with the losses
of energy-based learning.

The energy of a label sequence ``y = (y_0, ..., y_{T-1})`` for an input sequence of attribute
vectors ``x_0, ..., x_{T-1}`` (rows of a sparse design matrix, see
:mod:`factorgraph_ebm.sequence.features`) is

    E(y, x) = sum_t x_t . W[:, y_t] + sum_{t>=1} A[y_{t-1}, y_t] + s[y_0] + e[y_{T-1}]

(lower is better): unary energies ``U = X @ W`` of shape (n_tokens, n_labels), one transition
table A (n_labels, n_labels) shared by all positions, and optional start and end energies
s, e (n_labels,). A CRF's scores are the negated energies. W is sparse: by default it has a
weight only for the (attribute, label) pairs seen in training (CRFsuite's default feature
set). ``U = X @ W`` is a sparse-sparse product computed by a Numba kernel over whole
batches of tokens, inference runs on the trellis (:mod:`factorgraph_ebm.trellis`) over whole
batches of sequences at once, and the gradient with respect to W is the sparse product
``X.T @ G`` (``G = dL/dU``, n_tokens x n_labels) restricted to W's pattern.

Losses (LeCun et al. 2006, "A Tutorial on Energy-Based Learning", sec. 2.2 and 6): every
:class:`~factorgraph_ebm.losses.Loss`, evaluated by the loss itself on the chain backend
(:class:`~factorgraph_ebm.chain_backend.ChainBatch`: the trellis kernels over a whole batch
of sequences) and trained by the loop of :func:`factorgraph_ebm.train.fit`
(:func:`factorgraph_ebm.optim.minimize`), e.g.

- :class:`~factorgraph_ebm.losses.PerceptronLoss` (Collins 2002): by default an online
  averaged perceptron (one update per sequence, learning rate 1, lazily averaged weights,
  as CRFsuite's ``ap``), or mini-batch SGD/Adam on the perceptron loss;
- :class:`~factorgraph_ebm.losses.HingeLoss`, :class:`~factorgraph_ebm.losses.LogLoss` and
  every other :class:`~factorgraph_ebm.losses.MarginLoss` (``q(E_C, E_I)``) with the most
  offending incorrect answer ``Ybar = argmin_{Y != Y^i} E(Y)``, loss-augmented with
  ``hamming > 0`` (margin rescaling: ``E(Y) - hamming * Hamming(Y, Y^i)`` is minimized, the
  structured SVM of Taskar et al. 2003 / Tsochantaridis et al. 2005);
- :class:`~factorgraph_ebm.losses.NLLLoss`: ``E(Y^i) - F_beta``, a linear-chain CRF (Lafferty
  et al. 2001) at beta = 1; :class:`~factorgraph_ebm.losses.MEELoss`, ``1 - P(Y^i)``.

Training minimizes ``(1/N) sum_i L_i + l2/2 ||theta||^2 + l1 ||theta||_1`` over all
parameters theta (W, A, s, e), as :func:`factorgraph_ebm.train.fit` does (the L1 term by
OWL-QN). CRFsuite minimizes ``sum_i NLL_i + c1 ||theta||_1 + c2 ||theta||^2``; dividing by N
shows that its ``c2`` is ``l2 = 2 c2 / N`` and its ``c1`` is ``l1 = c1 / N`` here (e.g.
c2 = 1 on the 8,936 CoNLL-2000 training sentences is l2 = 2.238e-4). Empty sequences are
left out of N: they contribute nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse

from .. import _validation as V
from .. import losses as _losses
from .._config import NJIT_OPTIONS, njit
from .._pacing import paced
from ..chain_backend import ChainBatch, check_loss
from ..data_parallel import data_parallel
from ..exceptions import FactorGraphError, NotFittedError, TargetError
from ..losses import Loss, PerceptronLoss
from ..optim import LBFGS, SGD, Adam, Session, check_optimizer_for, minimize
from ..trellis import forward_backward, viterbi
from ..trellis.paths import _viterbi_seq
from .features import AttributeIndexer, AttributeMatrix
from .metrics import token_accuracy

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
    "lvq2": lambda: _losses.LVQ2Loss(),
    "mce": lambda: _losses.MCELoss(),
    "square_square": lambda: _losses.SquareSquareLoss(),
    "square_exp": lambda: _losses.SquareExpLoss(),
    "energy": lambda: _losses.EnergyLoss(),
    "nll": lambda: _losses.NLLLoss(1.0),
    "crf": lambda: _losses.NLLLoss(1.0),
    "mee": lambda: _losses.MEELoss(1.0),
}
_DEFAULT_EPOCHS = {"lbfgs": 100, "online": 20, "minibatch": 10}


def _resolve_loss(loss) -> Loss:
    """A Loss instance from a Loss or a short name (see :class:`SequenceLabeler`); every
    loss trains a labeler but a forbidden sphere, which sequence labels do not define."""
    if isinstance(loss, str):
        if loss not in _LOSS_NAMES:
            raise FactorGraphError(
                f"unknown loss {loss!r}; use one of {sorted(_LOSS_NAMES)} or a Loss instance"
            )
        return _LOSS_NAMES[loss]()
    if not isinstance(loss, Loss) or not hasattr(loss, "name"):  # a base class has none
        raise FactorGraphError(
            f"loss must be a Loss (factorgraph_ebm.losses) or one of the names "
            f"{sorted(_LOSS_NAMES)}; got {loss!r}"
        )
    check_loss(loss)
    return loss


def _loss_state(loss: Loss) -> dict:
    """JSON-able ``{"class", "params"}`` of a loss (rebuilt by :meth:`SequenceLabeler.load`)."""
    params = {k: v for k, v in vars(loss).items() if k != "distance"}
    return {"class": type(loss).__name__, "params": params}


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


# --------------------------------------------------------------------------- estimator
@functools.cache
def _with_base(base: type) -> type:
    """:class:`NotFittedError` that is also a subclass of ``base`` (scikit-learn's)."""
    return type("NotFittedError", (NotFittedError, base),
                {"__module__": NotFittedError.__module__, "__doc__": NotFittedError.__doc__})


def _not_fitted_error() -> NotFittedError:
    """The error of a SequenceLabeler used before ``fit``: a :class:`NotFittedError`, and
    also a ``sklearn.exceptions.NotFittedError`` when scikit-learn is loaded (whoever can
    catch that class has imported it; importing it here would cost seconds)."""
    cls = NotFittedError
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is not None:
        cls = _with_base(sklearn_exceptions.NotFittedError)
    return cls("this SequenceLabeler is not fitted yet; call fit(X, y) first")


def _check_labels(labels) -> list:
    """The sorted distinct labels (str, or int as Python int); TargetError for other types
    or a mix."""
    distinct = set(labels)
    for label in distinct:
        if not isinstance(label, (str, int, np.integer)) or isinstance(label, (bool, np.bool_)):
            raise TargetError(f"labels must be str or int, got {label!r}")
    try:
        ordered = sorted(distinct)
    except TypeError:
        raise TargetError("labels must all be str or all be int") from None
    return [c if isinstance(c, str) else int(c) for c in ordered]


def _split(flat: np.ndarray, lengths: np.ndarray) -> list:
    """``flat`` (n_tokens, ...) cut into one piece per sequence."""
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


class SequenceLabeler:
    """Linear-chain sequence labeler trained with an energy-based loss (see the module
    docstring for the energy and the objective).

    A scikit-learn estimator (``get_params``/``set_params``, ``__sklearn_tags__``,
    ``__sklearn_is_fitted__``; scikit-learn >= 1.6 for its tools): ``clone``,
    ``GridSearchCV``, ``RandomizedSearchCV``, ``cross_val_score`` (with ``n_jobs``) and
    ``check_is_fitted`` work, with a sequence scorer such as
    ``make_scorer(token_accuracy)``. It is not tagged a classifier: stratified folds cannot
    split label sequences, so the searches use plain K-fold splits.

    Parameters
    ----------
    loss : Loss or str, default="nll"
        Any :class:`~factorgraph_ebm.losses.Loss` (a margin loss with ``radius=0`` and no
        ``distance``: sequence labels have no forbidden sphere), or a name:
        ``"perceptron"``, ``"hinge"`` (``HingeLoss(margin=1)``), ``"hinge_hamming"``
        (``HingeLoss(margin=0, hamming=1)``, the margin-rescaled structured SVM), ``"log"``
        (``LogLoss()``), ``"lvq2"``, ``"mce"``, ``"square_square"``, ``"square_exp"``,
        ``"energy"`` (those losses with their default parameters), ``"nll"`` or ``"crf"``
        (``NLLLoss(beta=1)``), ``"mee"`` (``MEELoss(beta=1)``).
    optimizer : SGD, Adam, LBFGS or list of (optimizer, n_epochs), optional
        Mini-batch :class:`~factorgraph_ebm.optim.SGD` or :class:`~factorgraph_ebm.optim.Adam`
        (their ``stepper``), or full-batch :class:`~factorgraph_ebm.optim.LBFGS` (smooth losses:
        NLL, MEE, energy). Default: the online perceptron (no optimizer) for the perceptron
        loss, L-BFGS for the smooth losses, ``Adam(learning_rate=0.01)`` otherwise. A list of
        stages runs them in turn, each from where the last stopped, e.g.
        ``[(Adam(0.02), 3), (LBFGS(), 40)]``: a few cheap stochastic epochs, then
        quasi-Newton iterations to the optimum.
    n_epochs : int, optional
        Passes over the data (L-BFGS: iterations at most). Default 100 for L-BFGS, 20 for the
        online perceptron, 10 for SGD/Adam. Leave None when ``optimizer`` is a list of
        stages.
    batch_size : int, default=64
        Sequences per SGD/Adam step (the step follows the batch-mean gradient + l2 theta).
    l2 : float, default=0.0
        L2 weight: ``l2/2 ||theta||^2`` is added to the mean loss (CRFsuite's ``c2`` is
        ``l2 N / 2``). The online perceptron takes none.
    l1 : float, default=0.0
        L1 weight: ``l1 ||theta||_1`` is added to the objective (CRFsuite's ``c1`` is
        ``l1 N``), minimized by OWL-QN (:class:`~factorgraph_ebm.optim.LBFGS`), which sets
        weights exactly to 0. Needs a last stage of L-BFGS; earlier SGD/Adam stages are a
        warm start that leaves the L1 term out.
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
        ``delta``/``period`` of an :class:`~factorgraph_ebm.optim.LBFGS` optimizer given here.
    min_freq : int, default=1
        Attributes seen in fewer training tokens are dropped
        (:class:`~factorgraph_ebm.sequence.features.AttributeIndexer`).
    n_features : int, optional
        Hash attributes into this many columns instead of fitting a vocabulary.
    labels : sequence of str or int, optional
        The label set, declared: ``classes_`` is these labels (sorted) whether or not the
        training data holds them all, so every cross-validation fold has the same columns
        and data with a rare label can be scored. A label absent from training keeps its
        column: no attribute weight is stored for it (with ``all_possible_states=False``),
        its transition and boundary energies are trained (pushed up by NLL), and its
        marginals stay finite. Training labels outside the set raise TargetError. Default:
        the labels of the training data.
    seed : int or None, default=0
        Seeds the shuffling of the sequences every epoch; the same seed, data and options
        give the same model.
    progress : bool or None, default=None
        A tqdm progress bar per epoch on stderr: True always, False never, None only when
        stderr is a terminal (tqdm's ``disable=None``) and the labeler is not a copy made by
        ``sklearn.base.clone`` (what the model-selection tools fit in every fold). A bar
        that stops early says why (e.g. L-BFGS converged).

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
        Per epoch, lists of equal length (``pandas.DataFrame(history_)`` is a table):
        ``"loss"`` (mean training loss of the epoch; L-BFGS: at the iterate; online
        perceptron: mean ``E(Y^i) - min E`` before each update), ``"seconds"`` (since the
        start of ``fit``), and ``"dev_accuracy"`` (token accuracy on ``X_dev``) when a
        development set is given.
    n_epochs_ : int
        Epochs (L-BFGS iterations) run, over all stages.
    stop_reason_ : str or None
        Why the last L-BFGS stage stopped before its ``n_epochs`` (converged by CRFsuite's
        rule or scipy's tolerances), None when every epoch ran.

    Notes
    -----
    X is a list of sequences; a sequence is either a list of items (attribute dicts or lists
    of attribute names, as in sklearn-crfsuite and python-crfsuite: nested dicts, list
    values and bytes are read as python-crfsuite reads them, see
    :mod:`factorgraph_ebm.sequence.features`) or a 2-D array of numeric features of shape
    (T, n_features) (e.g. pixels). y is a list of label sequences (str or int labels) of the
    same lengths. A sequence may be empty: it contributes nothing to training (the model is
    the one trained without it), and its prediction is ``[]``; training data without any
    token is an error.

    The fitted attributes raise :class:`~factorgraph_ebm.exceptions.NotFittedError` (an
    ``AttributeError``) before ``fit``, so ``hasattr(labeler, "weights_")`` is False.
    Pickling keeps the trained model (a pickle does not grow with use: prediction attaches
    no work array); :meth:`save` writes a portable ``.npz`` file without pickle.

    Examples
    --------
    >>> from factorgraph_ebm import SequenceLabeler
    >>> X = [[{"w": "the"}, {"w": "dog"}], [{"w": "a"}, {"w": "cat"}]]
    >>> y = [["D", "N"], ["D", "N"]]
    >>> tagger = SequenceLabeler(loss="nll", l2=1e-4, progress=False).fit(X, y)
    >>> tagger.classes_
    ['D', 'N']
    >>> tagger.predict([[{"w": "the"}, {"w": "cat"}], [{"w": "a"}], []])
    [['D', 'N'], ['D'], []]
    >>> tagger.predict_single([{"w": "a"}, {"w": "dog"}])
    ['D', 'N']
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
        l1: float = 0.0,
        averaging: bool = True,
        boundary: bool = True,
        all_possible_states: bool = False,
        delta: float = 1e-5,
        period: int = 10,
        min_freq: int = 1,
        n_features: int | None = None,
        labels=None,
        seed: int | None = 0,
        progress: bool | None = None,
    ):
        self.loss = loss
        self.optimizer = optimizer
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.l2 = l2
        self.l1 = l1
        self.averaging = averaging
        self.boundary = boundary
        self.all_possible_states = all_possible_states
        self.delta = delta
        self.period = period
        self.min_freq = min_freq
        self.n_features = n_features
        self.labels = labels
        self.seed = seed
        self.progress = progress

    # ----------------------------------------------------------------- sklearn protocol
    _PARAMS = ("loss", "optimizer", "n_epochs", "batch_size", "l2", "l1", "averaging",
               "boundary", "all_possible_states", "delta", "period", "min_freq", "n_features",
               "labels", "seed", "progress")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters (scikit-learn's estimator protocol, so that
        ``sklearn.base.clone`` and the model-selection tools work)."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> SequenceLabeler:
        """Set constructor parameters; unknown names raise FactorGraphError (a ValueError,
        as scikit-learn raises)."""
        for name, value in params.items():
            if name not in self._PARAMS:
                raise FactorGraphError(
                    f"SequenceLabeler has no parameter {name!r}; it has {list(self._PARAMS)}"
                )
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (scikit-learn >= 1.6; imported only when asked):
        no estimator type (not a classifier: stratified folds cannot split label sequences),
        targets required, X neither a 2-D array nor sparse (a list of sequences)."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=True),
                    input_tags=InputTags(two_d_array=False), requires_fit=True)

    def __sklearn_is_fitted__(self) -> bool:
        """Whether :meth:`fit` has succeeded (``sklearn.utils.validation.check_is_fitted``)."""
        return "_theta" in self.__dict__

    def __sklearn_clone__(self) -> SequenceLabeler:
        """``sklearn.base.clone``: a new unfitted labeler with deep copies of the parameters,
        as scikit-learn's default clone makes, marked as a copy so that ``progress=None``
        shows no bar in every cross-validation fold."""
        twin = type(self)(**copy.deepcopy(self.get_params()))
        twin._cloned = True
        return twin

    # ----------------------------------------------------------------- options
    def _options(self):
        """Validated ``(loss, stages)``: stages is a list of ``(optimizer or None, mode,
        n_epochs)``, mode "online", "lbfgs" or "minibatch"."""
        loss = _resolve_loss(self.loss)
        V.parameter("SequenceLabeler", "l2", self.l2, allow_zero=True)
        V.parameter("SequenceLabeler", "l1", self.l1, allow_zero=True)
        V.integer(self.batch_size, "batch_size", low=1)
        V.integer(self.period, "period", low=1)
        V.parameter("SequenceLabeler", "delta", self.delta, allow_zero=True)
        if self.progress is not None and not isinstance(self.progress, (bool, np.bool_)):
            raise FactorGraphError(f"progress must be True, False or None, got "
                                   f"{self.progress!r}")
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
            stages = [(opt, V.integer(n, "n_epochs", low=1)) for opt, n in optimizer]
        else:
            stages = [(optimizer, self.n_epochs)]
        resolved = []
        for opt, n_epochs in stages:
            if opt is None:
                if isinstance(loss, PerceptronLoss):
                    mode = "online"  # Collins's algorithm, a kernel of its own
                elif loss.is_smooth():
                    opt, mode = LBFGS(), "lbfgs"
                else:
                    opt, mode = Adam(learning_rate=0.01), "minibatch"
            elif isinstance(opt, LBFGS):
                mode = "lbfgs"
                check_optimizer_for(opt, loss)
            elif isinstance(opt, (SGD, Adam)):
                mode = "minibatch"
            else:
                raise FactorGraphError(
                    f"optimizer must be SGD, Adam, LBFGS, None or a list of (optimizer, "
                    f"n_epochs) stages, got {opt!r}"
                )
            n_epochs = _DEFAULT_EPOCHS[mode] if n_epochs is None else n_epochs
            resolved.append((opt, mode, V.integer(n_epochs, "n_epochs", low=1)))
        if any(mode == "online" for _, mode, _ in resolved) and (self.l2 or self.l1):
            raise FactorGraphError(
                "the online perceptron has no L2 or L1 term; set l2=0 and l1=0, or give an "
                "SGD or Adam optimizer to train the perceptron loss with L2"
            )
        if self.l1 and resolved[-1][1] != "lbfgs":
            raise FactorGraphError(
                "l1 > 0 needs L-BFGS as the last stage (it runs OWL-QN); e.g. "
                "optimizer=LBFGS(), or [(Adam(0.02), 3), (LBFGS(), 100)] with loss='nll'"
            )
        return loss, resolved

    def _bar_disabled(self) -> bool | None:
        """tqdm's ``disable``: None lets tqdm decide (off without a terminal)."""
        if self.progress is None:
            return True if getattr(self, "_cloned", False) else None
        return not self.progress

    # ----------------------------------------------------------------- data
    def _design(self, X, *, fit: bool) -> AttributeMatrix:
        """The design matrix of X (fitting the vocabulary when ``fit``); FactorGraphError
        "no tokens" when fitting on sequences that are all empty."""
        if isinstance(X, (str, bytes)) or not isinstance(X, (Sequence, np.ndarray)):
            raise FactorGraphError(
                f"X must be a list of sequences, got {type(X).__name__}"
            )
        if len(X) == 0:
            raise FactorGraphError("X holds no sequences")
        nonempty = next((seq for seq in X if _length(seq)), None)
        if nonempty is None and fit:
            raise FactorGraphError(
                "no tokens: every training sequence is empty (an empty sequence contributes "
                "nothing to training, but some sequence needs a token)"
            )
        numeric = self._numeric if nonempty is None else isinstance(nonempty, np.ndarray)
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
        width = np.asarray(nonempty).shape[-1] if fit else self.n_features_in_
        for i, seq in enumerate(X):
            seq = np.asarray(seq)
            if seq.size == 0 and len(seq) == 0:  # an empty sequence: [] or shape (0, ...)
                seq = np.zeros((0, width))
            if seq.ndim != 2:
                raise FactorGraphError(
                    f"sequence {i}: numeric features must be a 2-D array (T, n_features), "
                    f"got shape {seq.shape}"
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
        """int64 (n_tokens,) label indices of y; ``fit`` sets ``classes_`` (the declared
        ``labels``, or those of y); labels outside ``classes_`` raise TargetError, or get the
        code ``unknown`` when it is given."""
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
            if self.labels is None:
                self.classes_ = _check_labels(flat)
            else:
                if isinstance(self.labels, (str, bytes)) or not np.iterable(self.labels):
                    raise TargetError(f"labels must be a list of labels, got {self.labels!r}")
                self.classes_ = _check_labels(self.labels)
                if not self.classes_:
                    raise TargetError("labels=[] declares no label")
        code = {label: k for k, label in enumerate(self.classes_)}
        if unknown is not None:
            return np.fromiter((code.get(label, unknown) for label in flat), dtype=np.int64,
                               count=len(flat))
        try:
            return np.fromiter((code[label] for label in flat), dtype=np.int64, count=len(flat))
        except (KeyError, TypeError) as error:
            label = next(label for label in flat if not _is_known(label, code))
            where = flat.index(label)
            seq = int(np.searchsorted(np.cumsum(lengths), where, side="right"))
            known = "is not among the declared labels" if self.labels is not None else (
                "was not seen in training")
            raise TargetError(
                f"sequence {seq}, position {where - int(np.sum(lengths[:seq]))}: label "
                f"{label!r} {known} (labels: {self.classes_})"
            ) from error

    # ----------------------------------------------------------------- training
    def fit(self, X, y, X_dev=None, y_dev=None, *, client=None,
            n_jobs: int | None = None) -> SequenceLabeler:
        """Train on sequences X with label sequences y.

        Parameters
        ----------
        X : list of sequences
            Lists of attribute dicts (or lists of attribute names), or 2-D float arrays
            (T_i, n_features); see the class Notes. Empty sequences are skipped.
        y : list of sequences of str or int
            One label per token.
        X_dev, y_dev : optional
            A held-out set whose token accuracy is recorded after every epoch
            (``history_["dev_accuracy"]``); labels outside ``classes_`` count as errors.
        client : distributed.Client or str, optional
            Data-parallel training on Dask (L-BFGS, SGD, Adam; the online perceptron runs
            here): the sequences are partitioned over this client's workers (or those of the
            scheduler at this address) once, and each evaluation sums their losses and
            gradients (:class:`~factorgraph_ebm.data_parallel.DataParallelObjective`: the
            same weights for any number of workers).
        n_jobs : int, optional
            The same on a :class:`~distributed.LocalCluster` of this many worker processes.

        Returns
        -------
        self

        Raises
        ------
        FactorGraphError
            Bad options, malformed X (naming the sequence and position), or no token at all
            ("no tokens").
        TargetError
            y that does not match X (naming the sequence), labels of mixed types, or labels
            outside the declared ``labels``.
        """
        loss, stages = self._options()
        self.__dict__.pop("_theta", None)  # unfitted until this fit succeeds
        started = time.perf_counter()
        attributes = self._design(X, fit=True)
        codes = self._encode(y, attributes.lengths, fit=True)
        # empty sequences have no rows and no labels: without their lengths, training is
        # the same as without them
        attributes = attributes._replace(lengths=attributes.lengths[attributes.lengths > 0])
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
        self.stop_reason_ = None

        def dev_accuracy(params):
            dev_design, rows, dev_codes = dev
            unary = chain.unary(params, dev_design, rows)
            a, s, e = chain.trellis_args(params)
            states = viterbi(unary, a, dev_design.lengths, start=s, end=e).states
            return float(np.mean(states == dev_codes)) if len(states) else 0.0

        session = Session(total=sum(n for _, _, n in stages),
                          desc=f"SequenceLabeler ({loss.name})", disable=self._bar_disabled(),
                          metric=None if dev is None else dev_accuracy, metric_name="dev",
                          started=started)
        history = session.history
        self.history_ = {"loss": history.loss, "seconds": history.seconds}
        if dev is not None:
            self.history_["dev_accuracy"] = history.accuracy

        objective = _ChainObjective(chain, loss, design, codes)
        with data_parallel(objective, client, n_jobs) as objective, session:
            for optimizer, mode, n_epochs in stages:
                if mode == "online":
                    theta = self._fit_online(chain, design, codes, theta, n_epochs, rng,
                                             session.end_epoch)
                    continue
                if mode == "lbfgs":  # CRFsuite's stopping rule with this labeler's settings
                    optimizer = dataclasses.replace(optimizer, delta=float(self.delta),
                                                    period=int(self.period))
                theta, self.stop_reason_ = minimize(
                    objective, theta, optimizer, n_epochs, session=session, rng=rng,
                    batch_size=int(self.batch_size), l2=float(self.l2),
                    l1=float(self.l1) if mode == "lbfgs" else 0.0,
                )
                session.stop_reason = self.stop_reason_
        self.n_epochs_ = len(history.loss)
        self._theta = np.array(theta, dtype=np.float64)
        return self

    def _fit_online(self, chain, design, codes, theta, n_epochs, rng, end_epoch):
        """The online (averaged) perceptron: each epoch a pass over the sequences in a new
        random order, in paced chunks (:func:`~factorgraph_ebm._pacing.paced`: Ctrl-C
        stops an epoch within a fraction of a second; the result does not depend on the
        chunks)."""
        n_seq = len(design.lengths)
        current = theta.copy()
        sums = np.zeros_like(theta)
        w, a, s, e = chain.unpack(current)
        sw, sa, ss, se = chain.unpack(sums)
        k = chain.n_labels
        transitions = a.reshape(1, k, k)  # a view of theta: updated in place
        longest = max(1, int(design.lengths.max(initial=1)))
        scratch = (np.zeros((longest, k)), np.zeros(longest, dtype=np.int64), np.empty((2, k)),
                   np.empty((longest, k), dtype=np.int32))
        count = 0
        for epoch in range(1, n_epochs + 1):
            order = rng.permutation(n_seq).astype(np.int64)
            total = 0.0
            for lo, hi in paced(n_seq):
                total, count = _perceptron_epoch(
                    design.indptr, design.indices, design.data, codes, design.offsets,
                    order[lo:hi], chain.w_ptr, chain.w_label, w, transitions, s, e, sw, sa, ss,
                    se, count, chain.boundary, total, *scratch,
                )
            averaged = current - sums / count if self.averaging else current.copy()
            end_epoch(epoch, averaged, total / n_seq)
        return averaged

    # ----------------------------------------------------------------- fitted state
    def _check_fitted(self):
        if "_theta" not in self.__dict__:
            raise _not_fitted_error()

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
        unary = self._chain.unary(self._theta, design)
        return unary, design.lengths, self._chain.trellis_args(self._theta)

    def predict(self, X) -> list[list]:
        """The lowest-energy label sequence of each input sequence (Viterbi).

        Parameters
        ----------
        X : list of sequences (as in :meth:`fit`)

        Returns
        -------
        list of list
            Labels from ``classes_``, one list per sequence (``[]`` for an empty one).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        FactorGraphError
            X of another kind or width than the training data, or malformed.
        """
        unary, lengths, (a, s, e) = self._energies(X)
        states = viterbi(unary, a, lengths, start=s, end=e).states
        classes = self.classes_
        return [[classes[k] for k in part.tolist()] for part in _split(states, lengths)]

    def predict_single(self, xseq) -> list:
        """:meth:`predict` of one sequence (sklearn-crfsuite's ``predict_single``).

        Parameters
        ----------
        xseq : sequence of items, or a 2-D array (T, n_features)

        Returns
        -------
        list
            One label from ``classes_`` per token.
        """
        return self.predict([xseq])[0]

    def predict_marginals(self, X) -> list[np.ndarray]:
        """Per-token label marginals ``P(y_t = l | x)`` at the loss's beta (that of a
        free-energy loss, NLL or MEE; else 1), by forward-backward.

        Returns
        -------
        list of ndarray of shape (T_i, n_labels), float64
            One array per sequence; rows sum to 1, columns in ``classes_`` order (every
            declared label has its column, finite).

        Raises
        ------
        NotFittedError, FactorGraphError
            As :meth:`predict`.
        """
        unary, lengths, (a, s, e) = self._energies(X)
        beta = getattr(self._loss, "beta", 1.0)
        beta = beta if math.isfinite(beta) else 1.0
        fb = forward_backward(unary, a, lengths, beta=beta, start=s, end=e)
        return _split(fb.marginals, lengths)

    def score(self, X, y) -> float:
        """Token accuracy of :meth:`predict` on X against y (see
        :func:`~factorgraph_ebm.sequence.metrics.token_accuracy`); labels outside ``classes_`` count
        as errors."""
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
          ``averaging``, ``seed``, ``n_epochs_``, and the keys ``l1`` and ``labels`` (the
          declared label set or null), which a reader takes as 0 and null when absent);
        - ``weight_ptr`` int64 (n_features + 1,), ``weight_label`` int64 (n_weights,),
          ``weight_value`` float64 (n_weights,): W in CSR form (attribute rows, label
          columns);
        - ``transition`` float64 (n_labels, n_labels), ``start`` and ``end`` float64
          (n_labels,).

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        FactorGraphError
            Labels that JSON cannot hold.
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
                "l1": float(self.l1),
                "labels": None if self.labels is None else list(self.classes_),
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

        The file is closed whatever happens, and every field of the header is checked:
        its type (a number where a number is expected, a bool where a bool is, not a
        string), its value, and that the labels are distinct and in ``classes_`` order as
        :meth:`save` writes them (repeated or reordered labels would name predictions
        wrongly).

        Raises
        ------
        FactorGraphError
            Naming the file: unreadable, empty, truncated or corrupted (not an ``.npz``
            archive, or one that fails to decompress), another format, a newer version
            than :data:`FORMAT_VERSION`, a header field missing or of the wrong type or
            value, an unsupported loss, arrays of the wrong dtype or shape, a weight
            pattern that is not a CSR pattern, or weights that are not finite.
        """
        path = os.fspath(path)
        arrays = _read_archive(path)
        header = _checked_header(path, arrays)
        options, features, labels = header["options"], header["features"], header["labels"]
        model = cls(loss=header["loss"], l2=options["l2"], l1=options.get("l1", 0.0),
                    boundary=options["boundary"],
                    all_possible_states=options["all_possible_states"],
                    averaging=options["averaging"], labels=options.get("labels"),
                    seed=options["seed"])
        if header["indexer"] is None:
            model.indexer_, model._numeric = None, True
        else:
            model.indexer_, model._numeric = header["indexer"], False
            model.min_freq, model.n_features = features["min_freq"], features["n_features"]
        model.classes_ = list(labels)
        model.n_features_in_ = header["n_features"]
        model._loss = header["loss"]
        model._chain = _Chain(arrays["weight_ptr"], arrays["weight_label"], len(labels),
                              bool(model.boundary))
        model.n_epochs_ = options.get("n_epochs_", 0)
        model._theta = np.concatenate([arrays[n].astype(np.float64).ravel() for n in
                                       ("weight_value", "transition", "start", "end")])
        model.history_ = {"loss": [], "seconds": []}
        model.stop_reason_ = None
        return model

    def __repr__(self) -> str:
        defaults = SequenceLabeler.__init__.__kwdefaults__
        shown = [repr(self.loss)] if not _same(self.loss, "nll") else []
        shown += [f"optimizer={self.optimizer!r}"] if self.optimizer is not None else []
        shown += [f"{name}={getattr(self, name)!r}" for name in self._PARAMS[2:]
                  if not _same(getattr(self, name), defaults[name])]
        return f"SequenceLabeler({', '.join(shown)})"


def _read_archive(path: str) -> dict:
    """Every array of the ``.npz`` file ``path``, read with ``allow_pickle=False``; the file
    is closed in every case (``np.load`` of a path leaves it open when the archive is
    truncated)."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except MemoryError:
        raise FactorGraphError(f"{path}: its arrays do not fit in memory") from None
    except Exception as error:  # noqa: BLE001 - the zip and npy readers raise many kinds
        # (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, zlib.error,
        # ValueError, ...): every one means this is not a readable model file.
        raise FactorGraphError(f"{path}: not a SequenceLabeler .npz file, or a damaged one "
                               f"({type(error).__name__}: {error})") from None


def _checked_header(path: str, arrays: dict) -> dict:
    """The JSON header of a saved model, every field checked (see
    :meth:`SequenceLabeler.save` for the format), and its arrays checked against it.
    Returns the header with three more keys: ``loss`` (the Loss), ``indexer`` (the
    AttributeIndexer, None for numeric features) and ``n_features``.

    Raises
    ------
    FactorGraphError
        "<path>: <what is wrong>", for the first problem found.
    """
    def bad(problem: str) -> FactorGraphError:
        return FactorGraphError(f"{path}: {problem}")

    blob = arrays.get("header")
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise bad("no 'header' array (uint8 JSON bytes); not a SequenceLabeler file")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f"unreadable JSON header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else None
        raise bad(f"format {found!r}, expected {FORMAT_NAME!r}")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise bad(f"file format version {version!r}; this factorgraph_ebm reads versions "
                  f"1..{FORMAT_VERSION} (a newer version needs a newer factorgraph_ebm)")

    def field(where: dict, key: str, name: str, check, expected: str, default=...):
        if key not in where:
            if default is not ...:
                return default
            raise bad(f"header field {name!r} is missing")
        value = where[key]
        if not check(value):
            raise bad(f"header field {name!r} must be {expected}, got {value!r}")
        return value

    def is_int(value, low=0):
        return type(value) is int and value >= low

    def is_weight(value):
        return type(value) in (int, float) and math.isfinite(value) and value >= 0

    labels = field(header, "labels", "labels", lambda v: isinstance(v, list) and v,
                   "a non-empty list")
    try:
        ordered = _check_labels(labels)
    except (TargetError, TypeError) as error:
        raise bad(f"header field 'labels': {error}") from None
    if ordered != labels:
        raise bad(f"header field 'labels' must list distinct labels in sorted order (as "
                  f"save writes classes_), got {labels!r}")
    features = field(header, "features", "features", lambda v: isinstance(v, dict),
                     "an object")
    kind = field(features, "kind", "features.kind",
                 lambda v: v in ("numeric", "attributes"), "'numeric' or 'attributes'")
    if kind == "numeric":
        indexer = None
        n_features = field(features, "n_features", "features.n_features",
                           lambda v: is_int(v, 1), "an integer >= 1")
    else:
        field(features, "min_freq", "features.min_freq", lambda v: is_int(v, 1),
              "an integer >= 1")
        field(features, "n_features", "features.n_features",
              lambda v: v is None or is_int(v, 1), "null or an integer >= 1")
        field(features, "attributes", "features.attributes",
              lambda v: v is None or (isinstance(v, list)
                                      and all(isinstance(a, str) for a in v)),
              "null or a list of strings")
        try:
            indexer = AttributeIndexer.from_state(features)
        except FactorGraphError as error:
            raise bad(f"header field 'features': {error}") from None
        n_features = indexer.n_features_
    options = field(header, "options", "options", lambda v: isinstance(v, dict), "an object")
    state = field(options, "loss", "options.loss",
                  lambda v: (isinstance(v, dict) and isinstance(v.get("class"), str)
                             and isinstance(v.get("params"), dict)),
                  'an object {"class": name, "params": {...}}')
    loss_class = getattr(_losses, state["class"], None)
    if not (isinstance(loss_class, type) and issubclass(loss_class, Loss)):
        raise bad(f"header field 'options.loss' names an unknown loss class "
                  f"{state['class']!r}")
    try:
        loss = _resolve_loss(loss_class(**state["params"]))
    except (FactorGraphError, TypeError, ValueError) as error:
        raise bad(f"header field 'options.loss' ({state['class']}): {error}") from None
    for key in ("l2", "l1"):
        field(options, key, f"options.{key}", is_weight, "a finite number >= 0",
              default=0.0 if key == "l1" else ...)
    for key in ("boundary", "all_possible_states", "averaging"):
        field(options, key, f"options.{key}", lambda v: type(v) is bool, "true or false")
    field(options, "seed", "options.seed", lambda v: v is None or is_int(v), "null or an "
          "integer >= 0")
    field(options, "labels", "options.labels", lambda v: v is None or v == labels,
          "null or the header's labels", default=None)
    field(options, "n_epochs_", "options.n_epochs_", is_int, "an integer >= 0", default=0)

    k = len(labels)
    n_weights = arrays["weight_label"].shape if "weight_label" in arrays else None
    expected = {"weight_ptr": ((n_features + 1,), "iu"), "weight_label": (n_weights, "iu"),
                "weight_value": (n_weights, "f"), "transition": ((k, k), "f"),
                "start": ((k,), "f"), "end": ((k,), "f")}
    for name, (shape, kinds) in expected.items():
        got = arrays.get(name)
        want = "integers" if kinds == "iu" else "floats"
        if got is None or shape is None:
            raise bad(f"array {name!r} is missing")
        if got.shape != shape or got.dtype.kind not in kinds:
            raise bad(f"array {name!r} has shape {got.shape} and dtype {got.dtype}, expected "
                      f"{want} of shape {shape}")
        if kinds == "f" and not np.isfinite(got).all():
            raise bad(f"array {name!r} has entries that are not finite")
    ptr, lab = arrays["weight_ptr"], arrays["weight_label"]
    valid = ptr[0] == 0 and ptr[-1] == len(lab) and (np.diff(ptr) >= 0).all()
    if valid:
        same_row = np.ones(len(lab), dtype=bool)  # entry j is in the row of entry j - 1
        same_row[ptr[:-1][ptr[:-1] < ptr[1:]]] = False
        valid = (not ((lab < 0) | (lab >= k)).any()
                 and not (np.diff(lab)[same_row[1:]] <= 0).any())
    if not valid:
        raise bad(f"weight_ptr/weight_label are not a CSR pattern of {n_features} x {k} "
                  "weights (labels in 0..L-1, increasing within each attribute)")
    return {**header, "loss": loss, "indexer": indexer, "n_features": n_features}


def _same(value, default) -> bool:
    """Whether a parameter equals its default (arrays and other odd values never do)."""
    if value is default:
        return True
    try:
        return bool(type(value) is type(default) and value == default)
    except (TypeError, ValueError):
        return False


def _length(seq) -> int:
    """The number of tokens of a sequence (1 for what is not a sequence: the checks that
    follow report it)."""
    try:
        return len(seq)
    except TypeError:
        return 1


def _is_known(label, code) -> bool:
    try:
        return label in code
    except TypeError:  # unhashable
        return False


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
