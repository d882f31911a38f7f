"""Training energy-based models: optimizers and the training loop.

The loop minimizes the regularized empirical loss (LeCun et al. 2006, "A Tutorial on
Energy-Based Learning", eq. 1 with an L2 regularizer R(W) = l2/2 ||W||^2)

    (1/P) sum_i L(W, Y^i, X^i) + l2/2 ||W||^2

(plus ``l1 ||W||_1`` with :class:`LBFGS`, minimized by OWL-QN) for a model
(:mod:`factorgraph_ebm.models`: W, X -> energies theta) and a loss
(:mod:`factorgraph_ebm.losses`: theta, Y^i -> L, dL/d(theta)). Each step runs inference on one
sample's graph, takes the loss gradient with respect to the energies and back-propagates it
through the model. Belief propagation is warm-started from the previous step's messages of the
same sample (which speeds up loopy graphs; trees are solved exactly in one pass anyway).
The inference options of training (``damping``, ``schedule``, ...) are kept in the
:class:`TrainResult`, and :func:`predict` and :func:`score` given that result use them.

BLAS runs on one thread while training (``threadpoolctl``): the optimizers' vector
operations are too small to gain from BLAS threads, whose hand-offs cost far more than the
work (SequenceLabeler's NLL on 1,000 CoNLL-2000 sentences: 31-34 s with OpenBLAS's 2 threads
against 10.5-11.1 s with one, on 2 shared cores; 12 % of the time on all 8,936). Numba's own
threads are not affected.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V
from .exceptions import ConvergenceWarning, FactorGraphError
from .inference import Options, checked_energy_vector, infer_checked
from .losses import Loss, _check_number, _Sample

__all__ = ["SGD", "Adam", "LBFGS", "History", "Session", "TrainResult", "fit", "minimize",
           "predict", "score"]


# --------------------------------------------------------------------------- optimizers
def _checked_fields(optimizer, **values) -> None:
    """Store the checked values (Python ``int`` and ``float``, also for NumPy scalars
    given) in the fields of a frozen optimizer dataclass."""
    for name, value in values.items():
        object.__setattr__(optimizer, name, value)


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum:
    ``v <- momentum v - learning_rate g``, ``W <- W + v``.

    Parameters
    ----------
    learning_rate : float, default=0.01
        > 0.
    momentum : float, default=0.9
        In [0, 1); 0 is plain SGD.
    """

    learning_rate: float = 0.01
    momentum: float = 0.9

    def __post_init__(self):
        _checked_fields(self, learning_rate=_check_number("SGD", "learning_rate",
                                                          self.learning_rate),
                        momentum=_check_number("SGD", "momentum", self.momentum,
                                               allow_zero=True, below=1))

    def stepper(self, n_params: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A fresh update function ``step(params, grad) -> new params`` with its own state."""
        velocity = np.zeros(n_params)

        def step(params, grad):
            velocity[:] = self.momentum * velocity - self.learning_rate * grad
            return params + velocity

        return step


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1), with bias-corrected moment estimates.

    Parameters
    ----------
    learning_rate : float, default=0.001
        Step size alpha, > 0.
    beta1, beta2 : float, default=0.9, 0.999
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float, default=1e-8
        > 0.
    """

    learning_rate: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        _checked_fields(
            self,
            learning_rate=_check_number("Adam", "learning_rate", self.learning_rate),
            beta1=_check_number("Adam", "beta1", self.beta1, allow_zero=True, below=1),
            beta2=_check_number("Adam", "beta2", self.beta2, allow_zero=True, below=1),
            eps=_check_number("Adam", "eps", self.eps),
        )

    def stepper(self, n_params: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A fresh update function ``step(params, grad) -> new params`` with its own state."""
        first = np.zeros(n_params)
        second = np.zeros(n_params)
        count = [0]

        def step(params, grad):
            count[0] += 1
            t = count[0]
            first[:] = self.beta1 * first + (1.0 - self.beta1) * grad
            second[:] = self.beta2 * second + (1.0 - self.beta2) * grad**2
            m_hat = first / (1.0 - self.beta1**t)
            v_hat = second / (1.0 - self.beta2**t)
            return params - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)

        return step


@dataclass(frozen=True)
class LBFGS:
    """Full-batch L-BFGS (scipy's L-BFGS-B without bounds) for smooth losses: one "epoch" is
    one L-BFGS iteration.

    With an L1 term (``l1 > 0`` in :func:`fit` or
    :class:`~factorgraph_ebm.labeler.SequenceLabeler`) the same iterations run as OWL-QN
    (Andrew & Gao 2007, "Scalable training of L1-regularized log-linear models"; CRFsuite's
    ``c1``): L-BFGS on the orthant of the current iterate, steered by the pseudo-gradient of
    ``f + l1 ||W||_1``, with a backtracking line search projected onto that orthant, so
    that weights reach exactly 0. scipy has no OWL-QN, hence our own (:func:`_owlqn`).

    Smooth means differentiable in the energies (:meth:`Loss.is_smooth
    <factorgraph_ebm.losses.Loss.is_smooth>`): NLL, MEE, and the energy loss without latent
    variables or at finite beta. :func:`fit` refuses the others (perceptron and every margin
    loss, whose ``min_Y E`` or ``E(Ybar)`` has kinks where the minimizer changes, and
    min-over-latent energies), which can stall L-BFGS's line search; use :class:`SGD` or
    :class:`Adam` for those.

    Parameters
    ----------
    tol : float, default=1e-8
        Stop when the largest gradient component is at most ``tol`` (scipy's ``gtol``; with
        L1, of the pseudo-gradient). Both also stop, as scipy does by default, when an
        iteration lowers the objective by at most 2.2e-9 relative to its value.
    memory : int, default=10
        Number of correction pairs kept (scipy's ``maxcor``).
    delta : float, default=0.0
        CRFsuite's stopping rule (Okazaki, CRFsuite 0.12, ``lbfgs`` ``delta``/``period``):
        stop when the objective f (mean loss + l2/2 ||W||^2) improved by at most
        ``delta`` relative to its current value over the last ``period`` iterations,
        ``f[k - period] - f[k] <= delta |f[k]|``. 0 turns the rule off.
    period : int, default=10
        The window of that rule, in iterations.
    """

    tol: float = 1e-8
    memory: int = 10
    delta: float = 0.0
    period: int = 10

    def __post_init__(self):
        _checked_fields(
            self,
            tol=_check_number("LBFGS", "tol", self.tol, allow_zero=True),
            delta=_check_number("LBFGS", "delta", self.delta, allow_zero=True),
            **{name: V.integer(getattr(self, name), f"the {name!r} parameter of LBFGS", low=1)
               for name in ("memory", "period")},
        )

    def stalled(self, objective: Sequence[float]) -> bool:
        """Whether CRFsuite's rule stops at the last value of ``objective`` (per iteration)."""
        if self.delta <= 0 or len(objective) <= self.period:
            return False
        past, now = objective[-1 - self.period], objective[-1]
        return past - now <= self.delta * max(abs(now), 1e-300)


# --------------------------------------------------------------------------- results
@dataclass
class History:
    """Per-epoch training record.

    Attributes
    ----------
    loss : list of float
        Mean per-sample loss of the epoch (without the L2 term): with SGD and Adam, the mean
        of the losses computed at each step; with L-BFGS, the full-batch loss at the iterate.
    accuracy : list of float
        Fraction of output variables whose min-sum prediction equals the desired state, over
        the training samples at the end of the epoch (empty when ``accuracy=False``).
    seconds : list of float
        Wall-clock time since the start of training, at the end of each epoch.
    """

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    params : ndarray of shape (n_params,), dtype=float64
        The trained parameters.
    history : History
        The per-epoch record.
    bp_options : dict
        The inference options training used (``damping``, ``schedule``, ``max_iter``, ...):
        :func:`predict` and :func:`score` given this result use them too.
    latent : tuple
        The latent variables of training; left out of :func:`predict`'s answer.
    stop_reason : str or None
        Why training stopped before ``n_epochs`` (L-BFGS: converged, or its line search
        failed); None when every epoch ran.
    """

    params: np.ndarray
    history: History
    bp_options: dict = field(default_factory=dict)
    latent: tuple = ()
    stop_reason: str | None = None


# --------------------------------------------------------------------------- prediction
def _predicted(model, params, x, messages, options: Options) -> np.ndarray:
    """The min-sum assignment (int64, (n_variables,)) of the model's energies for ``x``
    (the energies checked here, the options already)."""
    warm = None if messages is None else messages.get(("predict", math.inf))
    graph = model.graph
    cg = graph.compile()
    theta = checked_energy_vector(cg, model.energies(params, x))
    result = infer_checked(graph, cg, theta, math.inf, options, init_messages=warm)
    if messages is not None:
        messages[("predict", math.inf)] = result.messages
    return result.assignment


def _trained(params, latent, bp_options) -> tuple[np.ndarray, tuple, dict]:
    """``(params, latent, bp_options)``: those of a TrainResult, overridden by the given
    ones, or the given ones."""
    if isinstance(params, TrainResult):
        latent = params.latent if latent is None else latent
        bp_options = {**params.bp_options, **bp_options}
        params = params.params
    return params, tuple(() if latent is None else latent), bp_options


def predict(model, params, x, *, latent: Iterable | None = None, **bp_options) -> dict:
    """The lowest-energy answer of the model for input ``x`` (min-sum: exact on forests and
    wherever the junction tree fits, loopy BP otherwise).

    Parameters
    ----------
    model : EnergyModel
    params : TrainResult or ndarray of shape (n_params,)
        A :class:`TrainResult` brings its parameters, latent variables and the inference
        options of training (a model trained with ``damping=0.5`` is decoded with it);
        keyword arguments given here override them.
    x : the model's input
    latent : iterable of variable names, optional
        Latent variables, left out of the answer (minimized over). Default: those of the
        TrainResult, else none.
    **bp_options
        ``method``, ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
        :func:`~factorgraph_ebm.inference.belief_propagation`.

    Returns
    -------
    dict
        Output variable name -> predicted state.

    Examples
    --------
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 3)
    >>> _ = g.add_factor(["a", "b"], np.zeros((3, 3)))
    >>> model = fe.TableModel(g)
    >>> params = np.arange(9.0)[::-1]            # the lowest entry is the last: a=2, b=2
    >>> fe.predict(model, params, None)
    {'a': 2, 'b': 2}
    """
    params, latent, bp_options = _trained(params, latent, bp_options)
    assignment = _predicted(model, params, x, None, _checked_options(model, bp_options))
    hidden = set(latent)
    return {
        name: int(state)
        for name, state in zip(model.graph.variables, assignment.tolist())
        if name not in hidden
    }


def _checked_options(model, bp_options) -> Options:
    """The inference options, checked, and the memory inference on the model's graph needs
    (as :func:`~factorgraph_ebm.inference.belief_propagation` checks them)."""
    options = Options.checked(**bp_options)
    V.require_memory(model.graph.inference_bytes(), "inference on this graph (compiled "
                     "arrays, messages and beliefs)")
    return options


def _accuracy(model, params, samples, outputs, stores, options) -> float:
    """Fraction of the output variables (indices ``outputs``) whose min-sum state equals the
    desired one, over ``samples``; ``stores`` holds each sample's warm-start messages."""
    names = model.graph.variables
    correct = 0
    for (x, target), store in zip(samples, stores):
        assignment = _predicted(model, params, x, store, options)
        correct += sum(int(assignment[i]) == target[names[i]] for i in outputs.tolist())
    return correct / max(1, len(outputs) * len(samples))


def _outputs(graph, latent) -> np.ndarray:
    """int64: the indices of the variables that are not latent."""
    hidden = set(latent)
    return np.array([i for i, name in enumerate(graph.variables) if name not in hidden],
                    dtype=np.int64)


def score(model, params, samples, *, latent: Iterable | None = None, **bp_options) -> float:
    """Accuracy of :func:`predict` on samples: the fraction of output variables whose
    predicted state is the desired one (what :attr:`History.accuracy` records).

    Parameters
    ----------
    model : EnergyModel
    params : TrainResult or ndarray of shape (n_params,)
        As in :func:`predict`: a TrainResult brings the inference options of training.
    samples : sequence of (x, target)
        Inputs and desired answers (output variable name -> state).
    latent : iterable of variable names, optional
        As in :func:`predict`.
    **bp_options
        Override the TrainResult's inference options.

    Returns
    -------
    float
        In [0, 1]; 0.0 without samples.

    Examples
    --------
    A model trained with damped loopy BP is scored (and decoded) with the same damping:

    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables("abcd", 2)
    >>> _ = g.add_factors([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], np.zeros((4, 2, 2)))
    >>> model = fe.TableModel(g)
    >>> target = {"a": 1, "b": 0, "c": 1, "d": 1}
    >>> result = fe.fit(model, fe.HingeLoss(), [(None, target)], optimizer=fe.SGD(0.1),
    ...                 n_epochs=20, progress=False, method="bp", damping=0.5, warn=False)
    >>> result.bp_options
    {'method': 'bp', 'damping': 0.5, 'warn': False}
    >>> fe.predict(model, result, None) == target
    True
    >>> fe.score(model, result, [(None, target), (None, {**target, "a": 0})])
    0.875
    """
    params, latent, bp_options = _trained(params, latent, bp_options)
    samples = list(samples)
    return _accuracy(model, params, samples, _outputs(model.graph, latent),
                     [None] * len(samples), _checked_options(model, bp_options))


def _bar_disable(progress):
    """tqdm's ``disable`` for ``progress``: True shows the bar, False hides it, None shows it
    only when stderr is a terminal (tqdm's ``disable=None``)."""
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise FactorGraphError(f"progress must be True, False or None, got {progress!r}")
    return None if progress is None else not progress


class Session:
    """The bookkeeping of one training run, whatever trains: the :class:`History`, a tqdm
    progress bar, a per-epoch metric, a callback, and BLAS on one thread (see the module
    docstring). A context manager: the bar is closed on leaving, saying why training
    stopped early (``stop_reason``) if it did.

    :func:`fit` runs one; :class:`~factorgraph_ebm.labeler.SequenceLabeler` runs one over
    its stages (L-BFGS, SGD/Adam through :func:`minimize`, the online perceptron).

    Parameters
    ----------
    total : int
        Epochs expected (the bar's length).
    desc : str
        The bar's title.
    disable : bool or None
        tqdm's ``disable`` (None: only without a terminal).
    metric : callable, optional
        ``metric(params) -> float`` after every epoch, recorded in ``history.accuracy`` and
        shown on the bar as ``metric_name``.
    metric_name : str, default="accuracy"
    callback : callable, optional
        ``callback(epoch, params)`` after every epoch.
    started : float, optional
        ``time.perf_counter()`` when training started (``history.seconds`` count from it);
        default now.
    """

    def __init__(self, *, total, desc, disable, metric=None, metric_name="accuracy",
                 callback=None, started=None):
        from tqdm.auto import tqdm  # imported when training, not with the package

        self.history = History()
        self.metric, self.metric_name, self.callback = metric, metric_name, callback
        self.stop_reason = None
        self.started = time.perf_counter() if started is None else started
        self.bar = tqdm(total=total, desc=desc, unit="epoch", disable=disable)
        self._blas = None

    def end_epoch(self, epoch, params, mean_loss) -> None:
        """Record an epoch's mean loss, time and metric; update the bar; call back."""
        history = self.history
        history.loss.append(float(mean_loss))
        shown = {"loss": f"{mean_loss:.4g}"}
        if self.metric is not None:
            history.accuracy.append(float(self.metric(params)))
            shown[self.metric_name] = f"{history.accuracy[-1]:.4f}"
        history.seconds.append(time.perf_counter() - self.started)
        self.bar.set_postfix(shown)
        self.bar.update()
        if self.callback is not None:
            self.callback(epoch, params)

    def __enter__(self) -> Session:
        from threadpoolctl import threadpool_limits

        self._blas = threadpool_limits(limits=1, user_api="blas")  # see the module docstring
        return self

    def __exit__(self, *exc) -> None:
        self._blas.restore_original_limits()
        bar = self.bar
        if self.stop_reason is not None and not bar.disable:
            shown = getattr(bar, "postfix", None)
            bar.set_postfix_str(f"{shown}, {self.stop_reason}" if shown else self.stop_reason)
        bar.close()


def check_optimizer_for(optimizer, loss: Loss, *, has_latent: bool = False) -> None:
    """Refuse L-BFGS for a loss that is not smooth (:meth:`Loss.is_smooth
    <factorgraph_ebm.losses.Loss.is_smooth>`), whose kinks can stall its line search.

    Raises
    ------
    FactorGraphError
        "LBFGS needs a smooth loss, but ...".
    """
    if isinstance(optimizer, LBFGS) and not loss.is_smooth(has_latent):
        raise FactorGraphError(
            f"LBFGS needs a smooth loss, but {loss!r}"
            + (" with latent variables" if has_latent else "")
            + " has kinks where a minimizing answer changes; use SGD or Adam"
        )


def minimize(objective, params, optimizer, n_epochs, *, session: Session, rng,
             batch_size: int = 1, l2: float = 0.0, l1: float = 0.0):
    """The training loop: ``n_epochs`` epochs of SGD or Adam over mini-batches, or L-BFGS
    iterations (OWL-QN with ``l1 > 0``) on the full batch, of
    ``(1/N) sum_i L_i + l2/2 ||W||^2 (+ l1 ||W||_1)``.

    Parameters
    ----------
    objective : object
        ``n_samples`` (N) and ``batch(params, indices) -> (summed loss, summed dL/dW)``
        over the samples ``indices`` (int64). :func:`fit` gives one over a model's factor
        graphs, :class:`~factorgraph_ebm.labeler.SequenceLabeler` one over its sequences
        on the trellis.
    params : ndarray of shape (n_params,), float64
        The start (not modified).
    optimizer : SGD, Adam or LBFGS
    n_epochs : int
        Epochs (L-BFGS: iterations at most).
    session : Session
        Its ``end_epoch`` is called after every epoch.
    rng : numpy.random.Generator
        Shuffles the samples every SGD/Adam epoch.
    batch_size : int, default=1
        SGD/Adam: samples per step; the step follows the batch-mean gradient + l2 W.
    l2, l1 : float, default=0.0
        Regularization weights; ``l1 > 0`` needs :class:`LBFGS`.

    Returns
    -------
    params : ndarray of shape (n_params,)
    stop_reason : str or None
        Why L-BFGS stopped before ``n_epochs`` (None when every epoch ran).
    """
    if isinstance(optimizer, LBFGS):
        return _train_lbfgs(objective, params, optimizer, n_epochs, session.end_epoch,
                            l2=l2, l1=l1)
    if l1:
        raise FactorGraphError(
            f"l1 > 0 needs the LBFGS optimizer (it runs OWL-QN), got {optimizer!r}"
        )
    n = objective.n_samples
    step = optimizer.stepper(len(params))
    for epoch in range(1, n_epochs + 1):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            value, grad = objective.batch(params, batch)
            total += value
            params = step(params, grad / len(batch) + l2 * params)
        session.end_epoch(epoch, params, total / n)
    return params, None


# --------------------------------------------------------------------------- training
def fit(
    model,
    loss: Loss,
    samples: Sequence,
    *,
    optimizer: SGD | Adam | LBFGS | None = None,
    n_epochs: int = 10,
    batch_size: int = 1,
    l2: float = 0.0,
    l1: float = 0.0,
    latent: Iterable = (),
    seed: int | None = 0,
    params: np.ndarray | None = None,
    accuracy: bool = True,
    warm_start: bool = True,
    progress: bool | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
    **bp_options,
) -> TrainResult:
    """Train a model's parameters by minimizing a loss over samples.

    Parameters
    ----------
    model : EnergyModel
        Maps (params, x) to the energies of ``model.graph`` and back-propagates
        (:class:`~factorgraph_ebm.models.TableModel`,
        :class:`~factorgraph_ebm.models.LinearModel`, or any object with ``graph``,
        ``n_params``, ``init_params``, ``energies`` and ``backward``).
    loss : Loss
        The per-sample loss (:mod:`factorgraph_ebm.losses`).
    samples : sequence of (x, target)
        Inputs for the model and desired answers (mappings output variable name -> state).
    optimizer : SGD, Adam or LBFGS, default=Adam()
        Mini-batch SGD with momentum, Adam, or full-batch L-BFGS (smooth losses only; it
        ignores ``batch_size``).
    n_epochs : int, default=10
        Passes over the samples (L-BFGS: iterations at most), >= 1.
    batch_size : int, default=1
        Samples per step (SGD, Adam); the gradient is the batch mean.
    l2 : float, default=0.0
        L2 regularization weight: ``l2/2 ||W||^2`` is added to the mean loss, so every
        SGD/Adam step follows ``mean batch gradient + l2 W`` (and L-BFGS minimizes the full
        objective).
    l1 : float, default=0.0
        L1 regularization weight: ``l1 ||W||_1`` is added to the objective, which
        :class:`LBFGS` then minimizes by OWL-QN (weights reach exactly 0). Needs LBFGS.
    latent : iterable of variable names, default=()
        Latent variables of the graph (see :meth:`Loss.value_and_grad`).
    seed : int or None, default=0
        Seed of the generator that initializes the parameters and shuffles the samples each
        epoch; the same seed gives the same run.
    params : ndarray of shape (n_params,), optional
        Initial parameters (default ``model.init_params(rng)``); not modified.
    accuracy : bool, default=True
        Record the training accuracy at the end of every epoch (one min-sum run per sample).
    warm_start : bool, default=True
        Start belief propagation from the messages of the previous run of the same kind on
        the same sample.
    progress : bool or None, default=None
        Show a tqdm progress bar on stderr: True always, False never, None only when stderr
        is a terminal (tqdm's ``disable=None``). A bar that stops early says why.
    callback : callable, optional
        ``callback(epoch, params)`` after every epoch (epoch counts from 1).
    **bp_options
        ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
        :func:`~factorgraph_ebm.inference.belief_propagation`.

    Returns
    -------
    TrainResult
        With the inference options and latent variables used, for :func:`predict` and
        :func:`score`.

    Raises
    ------
    FactorGraphError
        Bad options or no samples; ``l1 > 0`` without :class:`LBFGS`; :class:`LBFGS` with a
        loss that is not smooth (see
        :meth:`Loss.is_smooth <factorgraph_ebm.losses.Loss.is_smooth>`); errors of the loss
        (e.g. :class:`~factorgraph_ebm.losses.TargetError`) and of the model propagate.

    Examples
    --------
    A chain of 4 three-state variables: a unary table on the first and one pairwise table
    shared along the chain, trained by NLL with L-BFGS and L2 on one desired answer:

    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(range(4), 3)
    >>> _ = g.add_factor([0], np.zeros(3))
    >>> pairs = g.add_factors([(i, i + 1) for i in range(3)], np.zeros((3, 3)))
    >>> model = fe.TableModel(g, tie=[pairs])
    >>> target = {0: 0, 1: 1, 2: 2, 3: 0}
    >>> result = fe.fit(model, fe.NLLLoss(), [(None, target)], optimizer=fe.LBFGS(),
    ...                 n_epochs=100, l2=0.1, progress=False)
    >>> fe.predict(model, result.params, None)
    {0: 0, 1: 1, 2: 2, 3: 0}
    >>> round(result.history.loss[-1], 2), result.history.accuracy[-1]
    (0.58, 1.0)
    """
    optimizer = Adam() if optimizer is None else optimizer
    if not isinstance(optimizer, (SGD, Adam, LBFGS)):
        raise FactorGraphError(f"optimizer must be SGD, Adam or LBFGS, got {optimizer!r}")
    for name, value in (("n_epochs", n_epochs), ("batch_size", batch_size)):
        V.integer(value, name, low=1)
    _check_number("fit", "l2", l2, allow_zero=True)
    _check_number("fit", "l1", l1, allow_zero=True)
    if l1 and not isinstance(optimizer, LBFGS):
        raise FactorGraphError(
            f"l1 > 0 needs the LBFGS optimizer (it runs OWL-QN), got {optimizer!r}"
        )
    samples = list(samples)
    if not samples:
        raise FactorGraphError("fit needs at least one (x, target) sample")
    latent = tuple(latent)
    check_optimizer_for(optimizer, loss, has_latent=bool(latent))
    rng = np.random.default_rng(seed)
    params = model.init_params(rng) if params is None else np.array(params, dtype=np.float64)
    if params.shape != (model.n_params,):
        raise FactorGraphError(
            f"params must have shape ({model.n_params},), got {params.shape}"
        )
    run = _Run(model, loss, samples, latent, warm_start, bp_options)
    session = Session(total=n_epochs, desc=f"training ({loss.name})",
                      disable=_bar_disable(progress),
                      metric=run.accuracy if accuracy else None, callback=callback)
    with session:
        params, session.stop_reason = minimize(run, params, optimizer, n_epochs,
                                               session=session, rng=rng,
                                               batch_size=batch_size, l2=l2, l1=l1)
    return TrainResult(params, session.history, dict(bp_options), latent,
                       session.stop_reason)


class _Run:
    """The objective of :func:`fit` (see :func:`minimize`): a model's factor graphs, one
    per sample, with the graph backend of the losses. Inference options are checked once
    here (:class:`~factorgraph_ebm.inference.Options`), then trusted at every step."""

    def __init__(self, model, loss, samples, latent, warm_start, bp_options):
        self.model, self.loss, self.samples = model, loss, samples
        self.latent, self.bp_options = latent, bp_options
        self.options = _checked_options(model, bp_options)
        self.stores = [{} if warm_start else None for _ in samples]
        self.outputs = _outputs(model.graph, latent)

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def batch(self, params, indices):
        """Summed loss and summed dL/dW over the samples ``indices``."""
        total, grad = 0.0, np.zeros(self.model.n_params)
        for i in indices:
            x, target = self.samples[i]
            sample = _Sample(self.model.graph, target, self.model.energies(params, x),
                             self.latent, self.stores[i], self.options)
            found = self.loss.evaluate(sample)
            total += float(found.value[0])
            grad += self.model.backward(params, x, found.grad)
        return total, grad

    def accuracy(self, params) -> float:
        return _accuracy(self.model, params, self.samples, self.outputs, self.stores,
                         self.options)


def _train_lbfgs(run, params, optimizer: LBFGS, n_epochs, end_epoch, *, l2: float = 0.0,
                 l1: float = 0.0):
    """Minimize the full-batch objective (mean loss + l2/2 ||W||^2 + l1 ||W||_1): scipy's
    L-BFGS-B, or :func:`_owlqn` when ``l1 > 0``, calling ``end_epoch(iteration, W, mean
    loss)`` after every iteration.

    ``run`` has ``n_samples`` and ``batch(W, indices) -> (summed loss, summed gradient)``.

    Returns
    -------
    params : ndarray (n_params,)
    stop_reason : str or None
        Why it stopped before ``n_epochs`` iterations, None when it ran them all.

    Warns
    -----
    ConvergenceWarning
        When it stops early without converging (a failed line search).
    """
    n = run.n_samples
    everything = np.arange(n)

    def objective(w):  # the smooth part
        value, grad = run.batch(w, everything)
        return value / n + 0.5 * l2 * w @ w, grad / n + l2 * w

    def penalty(w):
        return 0.5 * l2 * w @ w + (l1 * np.abs(w).sum() if l1 else 0.0)

    # The objective per iteration, from the start value as liblbfgs keeps it for the
    # delta/period rule (so it can stop at iteration `period`).
    history: list[float] = []
    if optimizer.delta > 0:
        history.append(float(objective(params)[0] + (l1 * np.abs(params).sum() if l1 else 0)))
    first = len(history)

    def each_iteration(w, value) -> bool:
        """Record the iterate; True when CRFsuite's rule says stop."""
        history.append(float(value))
        end_epoch(len(history) - first, w.copy(), history[-1] - float(penalty(w)))
        return optimizer.stalled(history)

    stalled = (f"converged: the objective improved by <= {optimizer.delta:g} (relative) over "
               f"{optimizer.period} iterations")
    if l1:
        x, n_iter, message, success, stopped = _owlqn(
            objective, params, l1, maxiter=n_epochs, memory=optimizer.memory,
            tol=optimizer.tol, callback=each_iteration,
        )
    else:
        import scipy.optimize  # imported when used, not with the package

        stopped = False

        def callback(intermediate_result):
            nonlocal stopped
            stopped = each_iteration(intermediate_result.x, intermediate_result.fun)
            if stopped:
                raise StopIteration  # scipy (>= 1.11) ends the minimization at this iterate

        result = scipy.optimize.minimize(
            objective,
            params,
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": n_epochs, "gtol": optimizer.tol, "maxcor": optimizer.memory},
        )
        x, n_iter, message, success = result.x, result.nit, result.message, result.success
    if stopped:
        return x, stalled
    if n_iter >= n_epochs:
        return x, None
    if success:
        return x, f"converged: {message}"
    warnings.warn(
        f"L-BFGS stopped after {n_iter} iterations: {message} (a non-smooth "
        "loss, or a start at a kink such as all-equal energies, can cause this; try SGD "
        "or Adam, or a random start)",
        ConvergenceWarning,
        stacklevel=3,
    )
    return x, f"stopped: {message}"


#: Relative decrease of the objective at which OWL-QN stops, scipy L-BFGS-B's default
#: ``ftol`` (factr 1e7 times the float64 epsilon).
_FTOL = 2.220446049250313e-09


def _pseudo_gradient(x, g, l1) -> np.ndarray:
    """The minimum-norm subgradient of ``f + l1 ||x||_1`` at x, given ``g = grad f(x)``
    (Andrew & Gao 2007, eq. 4): 0 exactly where x = 0 is optimal along that coordinate."""
    pg = g + l1 * np.sign(x)
    zero = x == 0
    gz = g[zero]
    pg[zero] = np.where(gz + l1 < 0, gz + l1, np.where(gz - l1 > 0, gz - l1, 0.0))
    return pg


def _owlqn(objective, x0, l1, *, maxiter, memory, tol, callback, ftol=_FTOL):
    """Minimize ``f(x) + l1 ||x||_1`` by OWL-QN (Andrew & Gao 2007, Algorithm 1, as
    liblbfgs implements it for CRFsuite's ``c1``).

    Each iteration: the pseudo-gradient ``pg`` (:func:`_pseudo_gradient`); the L-BFGS
    direction ``d = -H pg`` from the last ``memory`` pairs of steps and changes of ``grad
    f``, with the components that do not descend along ``-pg`` set to 0; a backtracking
    line search (halving from 1, or ``1/||pg||`` at the first iteration) of ``x + a d``
    projected onto the orthant of x (of ``-pg`` where x = 0), accepted when ``F(new) <=
    F(x) + 1e-4 pg.(new - x)``.

    Parameters
    ----------
    objective : callable
        ``objective(x) -> (f, grad f)``, the smooth part.
    x0 : ndarray (n,)
    l1 : float
        > 0.
    maxiter, memory : int
    tol : float
        Stop when ``max |pg| <= tol``.
    callback : callable
        ``callback(x, F)`` after every iteration; True stops.
    ftol : float, default=2.2e-9
        Stop when an iteration lowers F by at most ``ftol * max(|F|, 1)``.

    Returns
    -------
    x, n_iter, message, success, stopped_by_callback
    """
    x = np.array(x0, dtype=np.float64)
    f, g = objective(x)
    value = f + l1 * np.abs(x).sum()
    steps: deque = deque(maxlen=memory)  # (s, y, 1 / y.s)
    for n_iter in range(maxiter):
        pg = _pseudo_gradient(x, g, l1)
        if np.max(np.abs(pg), initial=0.0) <= tol:
            return x, n_iter, "the pseudo-gradient is <= tol", True, False
        d = -_two_loop(pg, steps)
        d[d * pg >= 0] = 0.0
        orthant = np.where(x != 0, np.sign(x), -np.sign(pg))
        step = 1.0 if steps else 1.0 / np.linalg.norm(pg)
        for _ in range(60):
            new = x + step * d
            new[np.sign(new) != orthant] = 0.0
            new_f, new_g = objective(new)
            new_value = new_f + l1 * np.abs(new).sum()
            if new_value <= value + 1e-4 * (pg @ (new - x)):
                break
            step *= 0.5
        else:
            return x, n_iter, "the line search found no decrease", False, False
        s_k, y_k = new - x, new_g - g
        curvature = y_k @ s_k
        if curvature > 1e-12 * (s_k @ s_k):
            steps.append((s_k, y_k, 1.0 / curvature))
        decrease = value - new_value
        x, g, value = new, new_g, new_value
        if callback(x, value):
            return x, n_iter + 1, "stopped by the callback", True, True
        if decrease <= ftol * max(abs(value), abs(value + decrease), 1.0):
            return x, n_iter + 1, "the relative reduction of the objective is <= ftol", True, False
    return x, maxiter, "the iteration limit is reached", False, False


def _two_loop(grad, steps) -> np.ndarray:
    """``H grad`` for the L-BFGS inverse-Hessian estimate H of the pairs ``steps`` (Nocedal
    & Wright 2006, Algorithm 7.4, with H0 = (s.y / y.y) I from the newest pair)."""
    q = grad.copy()
    alphas = []
    for s_k, y_k, rho in reversed(steps):
        alpha = rho * (s_k @ q)
        q -= alpha * y_k
        alphas.append(alpha)
    if steps:
        s_k, y_k, rho = steps[-1]
        q *= 1.0 / (rho * (y_k @ y_k))
    for (s_k, y_k, rho), alpha in zip(steps, reversed(alphas)):
        q += (alpha - rho * (y_k @ q)) * s_k
    return q
