"""Training energy-based models: optimizers and the training loop.

The loop minimizes the regularized empirical loss (LeCun et al. 2006, "A Tutorial on
Energy-Based Learning", eq. 1 with an L2 regularizer R(W) = l2/2 ||W||^2)

    (1/P) sum_i L(W, Y^i, X^i) + l2/2 ||W||^2

for a model (:mod:`factorgraph_ebm.models`: W, X -> energies theta) and a loss
(:mod:`factorgraph_ebm.losses`: theta, Y^i -> L, dL/d(theta)). Each step runs inference on one
sample's graph, takes the loss gradient with respect to the energies and back-propagates it
through the model. Belief propagation is warm-started from the previous step's messages of the
same sample (which speeds up loopy graphs; trees are solved exactly in one pass anyway).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V
from .exceptions import ConvergenceWarning, FactorGraphError
from .inference import belief_propagation
from .losses import Loss, _check_number

__all__ = ["SGD", "Adam", "LBFGS", "History", "TrainResult", "fit", "predict"]


# --------------------------------------------------------------------------- optimizers
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
        _check_number("SGD", "learning_rate", self.learning_rate)
        _check_number("SGD", "momentum", self.momentum, allow_zero=True, below=1)

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
        _check_number("Adam", "learning_rate", self.learning_rate)
        _check_number("Adam", "beta1", self.beta1, allow_zero=True, below=1)
        _check_number("Adam", "beta2", self.beta2, allow_zero=True, below=1)
        _check_number("Adam", "eps", self.eps)

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

    Smooth means differentiable in the energies (:meth:`Loss.is_smooth
    <factorgraph_ebm.losses.Loss.is_smooth>`): NLL, MEE, and the energy loss without latent
    variables or at finite beta. :func:`fit` refuses the others (perceptron and every margin
    loss, whose ``min_Y E`` or ``E(Ybar)`` has kinks where the minimizer changes, and
    min-over-latent energies), which can stall L-BFGS's line search; use :class:`SGD` or
    :class:`Adam` for those.

    Parameters
    ----------
    tol : float, default=1e-8
        Stop when the largest gradient component is at most ``tol`` (scipy's ``gtol``).
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
        _check_number("LBFGS", "tol", self.tol, allow_zero=True)
        _check_number("LBFGS", "delta", self.delta, allow_zero=True)
        for name in ("memory", "period"):
            V.integer(getattr(self, name), f"the {name!r} parameter of LBFGS", low=1)

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
    """

    params: np.ndarray
    history: History


# --------------------------------------------------------------------------- prediction
def _predicted(model, params, x, messages, bp_options) -> np.ndarray:
    """The min-sum assignment (int64, (n_variables,)) of the model's energies for ``x``."""
    warm = None if messages is None else messages.get(("predict", math.inf))
    result = belief_propagation(
        model.graph, energies=model.energies(params, x), init_messages=warm, **bp_options
    )
    if messages is not None:
        messages[("predict", math.inf)] = result.messages
    return result.assignment


def predict(model, params, x, *, latent: Iterable = (), **bp_options) -> dict:
    """The lowest-energy answer of the model for input ``x`` (min-sum BP; exact on forests).

    Parameters
    ----------
    model : EnergyModel
    params : ndarray of shape (n_params,)
    x : the model's input
    latent : iterable of variable names, default=()
        Latent variables, left out of the answer (minimized over).
    **bp_options
        ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
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
    assignment = _predicted(model, params, x, None, bp_options)
    hidden = set(latent)
    return {
        name: int(state)
        for name, state in zip(model.graph.variables, assignment.tolist())
        if name not in hidden
    }


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
    latent: Iterable = (),
    seed: int | None = 0,
    params: np.ndarray | None = None,
    accuracy: bool = True,
    warm_start: bool = True,
    progress: bool = True,
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
    progress : bool, default=True
        Show a tqdm progress bar (on stderr).
    callback : callable, optional
        ``callback(epoch, params)`` after every epoch (epoch counts from 1).
    **bp_options
        ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
        :func:`~factorgraph_ebm.inference.belief_propagation`.

    Returns
    -------
    TrainResult

    Raises
    ------
    FactorGraphError
        Bad options or no samples; :class:`LBFGS` with a loss that is not smooth (see
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
    samples = list(samples)
    if not samples:
        raise FactorGraphError("fit needs at least one (x, target) sample")
    latent = tuple(latent)
    if isinstance(optimizer, LBFGS) and not loss.is_smooth(bool(latent)):
        raise FactorGraphError(
            f"LBFGS needs a smooth loss, but {loss!r}"
            + (" with latent variables" if latent else "")
            + " has kinks where a minimizing answer changes; use SGD or Adam"
        )
    rng = np.random.default_rng(seed)
    params = model.init_params(rng) if params is None else np.array(params, dtype=np.float64)
    if params.shape != (model.n_params,):
        raise FactorGraphError(
            f"params must have shape ({model.n_params},), got {params.shape}"
        )
    run = _Run(model, loss, samples, latent, l2, warm_start, bp_options)
    history = History()
    started = time.perf_counter()
    from tqdm.auto import tqdm  # imported when training, not with the package

    bar = tqdm(total=n_epochs, desc=f"training ({loss.name})", unit="epoch", disable=not progress)

    def end_epoch(epoch, params, mean_loss):
        history.loss.append(mean_loss)
        if accuracy:
            history.accuracy.append(run.accuracy(params))
        history.seconds.append(time.perf_counter() - started)
        shown = {"loss": f"{mean_loss:.4g}"}
        if accuracy:
            shown["accuracy"] = f"{history.accuracy[-1]:.3f}"
        bar.set_postfix(shown)
        bar.update()
        if callback is not None:
            callback(epoch, params)

    try:
        if isinstance(optimizer, LBFGS):
            params = _train_lbfgs(run, params, optimizer, n_epochs, end_epoch)
        else:
            step = optimizer.stepper(model.n_params)
            for epoch in range(1, n_epochs + 1):
                order = rng.permutation(len(samples))
                total = 0.0
                for start in range(0, len(order), batch_size):
                    batch = order[start : start + batch_size]
                    value, grad = run.batch(params, batch)
                    total += value
                    params = step(params, grad / len(batch) + l2 * params)
                end_epoch(epoch, params, total / len(samples))
    finally:
        bar.close()
    return TrainResult(params, history)


class _Run:
    """The fixed parts of one training run: model, loss, data, warm-start stores."""

    def __init__(self, model, loss, samples, latent, l2, warm_start, bp_options):
        self.model, self.loss, self.samples = model, loss, samples
        self.latent, self.l2, self.bp_options = latent, l2, bp_options
        self.stores = [{} if warm_start else None for _ in samples]
        graph = model.graph
        hidden = set(latent)
        self.outputs = np.array(
            [i for i, name in enumerate(graph.variables) if name not in hidden], dtype=np.int64
        )

    def batch(self, params, indices):
        """Summed loss and summed dL/dW over the samples ``indices``."""
        total, grad = 0.0, np.zeros(self.model.n_params)
        for i in indices:
            x, target = self.samples[i]
            result = self.loss.value_and_grad(
                self.model.graph,
                target,
                energies=self.model.energies(params, x),
                latent=self.latent,
                messages=self.stores[i],
                **self.bp_options,
            )
            total += result.value
            grad += self.model.backward(params, x, result.grad)
        return total, grad

    def accuracy(self, params) -> float:
        names = self.model.graph.variables
        correct = 0
        for (x, target), store in zip(self.samples, self.stores):
            assignment = _predicted(self.model, params, x, store, self.bp_options)
            correct += sum(
                int(assignment[i]) == target[names[i]] for i in self.outputs.tolist()
            )
        return correct / max(1, len(self.outputs) * len(self.samples))


def _train_lbfgs(run: _Run, params, optimizer: LBFGS, n_epochs, end_epoch):
    """Minimize the full-batch objective (mean loss + l2/2 ||W||^2) with scipy's L-BFGS-B,
    calling ``end_epoch`` after every iteration; returns the final parameters (n_params,).
    Warns (ConvergenceWarning) when it stops early without success."""
    everything = np.arange(len(run.samples))
    n = len(run.samples)

    def objective(w):
        value, grad = run.batch(w, everything)
        return value / n + 0.5 * run.l2 * w @ w, grad / n + run.l2 * w

    # The objective per iteration, from the start value as liblbfgs keeps it for the
    # delta/period rule (so it can stop at iteration `period`).
    history: list[float] = [float(objective(params)[0])] if optimizer.delta > 0 else []
    first = len(history)

    def each_iteration(intermediate_result):
        w = intermediate_result.x
        history.append(float(intermediate_result.fun))
        end_epoch(len(history) - first, w.copy(), history[-1] - float(0.5 * run.l2 * w @ w))
        if optimizer.stalled(history):
            raise StopIteration  # scipy (>= 1.11) ends the minimization at this iterate

    import scipy.optimize  # imported when used, not with the package

    result = scipy.optimize.minimize(
        objective,
        params,
        jac=True,
        method="L-BFGS-B",
        callback=each_iteration,
        options={"maxiter": n_epochs, "gtol": optimizer.tol, "maxcor": optimizer.memory},
    )
    if not result.success and result.nit < n_epochs and not optimizer.stalled(history):
        warnings.warn(
            f"L-BFGS stopped after {result.nit} iterations: {result.message} (a non-smooth "
            "loss, or a start at a kink such as all-equal energies, can cause this; try SGD "
            "or Adam, or a random start)",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result.x
