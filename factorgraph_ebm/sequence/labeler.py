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

import numpy as np
import scipy.sparse

from .. import _validation as V
from .._pacing import paced
from ..data_parallel import data_parallel
from ..exceptions import FactorGraphError, NotFittedError, TargetError
from ..losses import PerceptronLoss
from ..optim import LBFGS, SGD, Adam, Session, check_optimizer_for, minimize
from ..trellis import forward_backward, viterbi
from .chain import _Chain, _ChainObjective, _Design, _perceptron_epoch
from .features import AttributeIndexer, AttributeMatrix
from .metrics import token_accuracy
from .persistence import (
    FORMAT_NAME,
    FORMAT_VERSION,
    _check_labels,
    _checked_header,
    _loss_state,
    _read_archive,
    _resolve_loss,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SequenceLabeler"]


_DEFAULT_EPOCHS = {"lbfgs": 100, "online": 20, "minibatch": 10}


# --------------------------------------------------------------------------- data


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


