"""Optimizers and the training loop shared by every learner: SGD, Adam, L-BFGS (OWL-QN with an
L1 term), the epoch loop :func:`minimize` and its bookkeeping (:class:`Session`, :class:`History`).

What trains is an *objective*: ``n_samples`` and ``batch(params, indices) -> (summed loss,
summed dL/dW)``. :func:`factorgraph_ebm.train.fit` gives one over a model's factor graphs,
:class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` one over its sequences on the
trellis; any other object with those two members (a data-parallel sum over workers, say)
trains the same way. The loop minimizes the regularized empirical loss (LeCun et al. 2006,
"A Tutorial on Energy-Based Learning", eq. 1 with R(W) = l2/2 ||W||^2, plus ``l1 ||W||_1``
with :class:`LBFGS`)

    (1/N) sum_i L(W, Y^i, X^i) + l2/2 ||W||^2.

BLAS runs on one thread while training (``threadpoolctl``, in :class:`Session`): the
optimizers' vector operations are too small to gain from BLAS threads, whose hand-offs cost
far more than the work (SequenceLabeler's NLL on 1,000 CoNLL-2000 sentences: 31-34 s with
OpenBLAS's 2 threads against 10.5-11.1 s with one, on 2 shared cores; 12 % of the time on
all 8,936). Numba's own threads are not affected.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import _validation as V
from .exceptions import ConvergenceWarning, FactorGraphError

if TYPE_CHECKING:
    from .losses import Loss

__all__ = ["SGD", "Adam", "LBFGS", "History", "Session", "check_optimizer_for", "minimize"]

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
        _checked_fields(self, learning_rate=V.parameter("SGD", "learning_rate",
                                                          self.learning_rate),
                        momentum=V.parameter("SGD", "momentum", self.momentum,
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
            learning_rate=V.parameter("Adam", "learning_rate", self.learning_rate),
            beta1=V.parameter("Adam", "beta1", self.beta1, allow_zero=True, below=1),
            beta2=V.parameter("Adam", "beta2", self.beta2, allow_zero=True, below=1),
            eps=V.parameter("Adam", "eps", self.eps),
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
    :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler`) the same iterations run as OWL-QN
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
            tol=V.parameter("LBFGS", "tol", self.tol, allow_zero=True),
            delta=V.parameter("LBFGS", "delta", self.delta, allow_zero=True),
            **{name: V.integer(getattr(self, name), f"the {name!r} parameter of LBFGS", low=1)
               for name in ("memory", "period")},
        )

    def stalled(self, objective: Sequence[float]) -> bool:
        """Whether CRFsuite's rule stops at the last value of ``objective`` (per iteration)."""
        if self.delta <= 0 or len(objective) <= self.period:
            return False
        past, now = objective[-1 - self.period], objective[-1]
        return past - now <= self.delta * max(abs(now), 1e-300)



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



class Session:
    """The bookkeeping of one training run, whatever trains: the :class:`History`, a tqdm
    progress bar, a per-epoch metric, a callback, and BLAS on one thread (see the module
    docstring). A context manager: the bar is closed on leaving, saying why training
    stopped early (``stop_reason``) if it did.

    :func:`fit` runs one; :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` runs one over
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
        graphs, :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` one over its sequences
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
