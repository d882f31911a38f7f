"""Training energy-based models on factor graphs: :func:`fit`, :func:`predict`, :func:`score`.

:func:`fit` minimizes the regularized empirical loss (LeCun et al. 2006, "A Tutorial on
Energy-Based Learning", eq. 1) for a model (:mod:`factorgraph_ebm.models`: W, X -> energies
theta) and a loss (:mod:`factorgraph_ebm.losses`: theta, Y^i -> L, dL/d(theta)) with the
optimizers and the epoch loop of :mod:`factorgraph_ebm.optim`. Each step runs inference on
its samples' graphs (one batched call for a batch of samples,
:class:`~factorgraph_ebm.graph_backend.GraphBatch`, where warm start does not apply), takes
the loss gradient with respect to the energies and back-propagates it through the model.
Belief propagation is warm-started from the previous step's messages of the same sample
(which speeds up loopy graphs; trees are solved exactly in one pass anyway).
The inference options of training (``damping``, ``schedule``, ...) are kept in the
:class:`TrainResult`, and :func:`predict` and :func:`score` given that result use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _validation as V
from .data_parallel import data_parallel
from .exceptions import FactorGraphError
from .graph_backend import GraphBatch, batches_loss, warm_start_unused
from .inference import Options, check_method_for_beta, checked_energy_vector, infer_checked
from .losses import Loss, _Sample
from .optim import LBFGS, SGD, Adam, History, Session, check_optimizer_for, minimize

__all__ = ["TrainResult", "fit", "predict", "score"]

#: At most this many samples per batched inference call of training, and at most this
#: much inference memory (bytes) for them; larger batches run in chunks.
BATCH_ITEMS = 1024
BATCH_BYTES = 2**26


# --------------------------------------------------------------------------- results
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


# --------------------------------------------------------------------------- training
def _bar_disable(progress):
    """tqdm's ``disable`` for ``progress``: True shows the bar, False hides it, None shows it
    only when stderr is a terminal (tqdm's ``disable=None``)."""
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise FactorGraphError(f"progress must be True, False or None, got {progress!r}")
    return None if progress is None else not progress


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
    client=None,
    n_jobs: int | None = None,
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
        Samples per step (SGD, Adam); the gradient is the batch mean. A batch runs each
        inference of the loss once for all its samples (batched inference, the same
        results as one sample at a time) where batching applies: see ``warm_start``.
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
        the same sample. Batched inference (mini-batches, L-BFGS) takes no warm-start
        messages, so it is used only where inference does not read them (forests with
        BP's two-pass schedule, ``method="exact"`` or ``"trws"``) or with
        ``warm_start=False``; warm-started loopy BP runs one sample at a time.
    progress : bool or None, default=None
        Show a tqdm progress bar on stderr: True always, False never, None only when stderr
        is a terminal (tqdm's ``disable=None``). A bar that stops early says why.
    callback : callable, optional
        ``callback(epoch, params)`` after every epoch (epoch counts from 1).
    client : distributed.Client or str, optional
        Data-parallel training on Dask: the samples are partitioned over this client's
        workers (or those of the scheduler at this address) once, and every step sums the
        workers' losses and gradients
        (:class:`~factorgraph_ebm.data_parallel.DataParallelObjective`: the same weights
        for any number of workers; within rounding of a run without workers).
    n_jobs : int, optional
        The same on a :class:`~distributed.LocalCluster` of this many worker processes,
        started and closed by ``fit``.
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
    V.parameter("fit", "l2", l2, allow_zero=True)
    V.parameter("fit", "l1", l1, allow_zero=True)
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
    with data_parallel(run, client, n_jobs) as objective, session:
        params, session.stop_reason = minimize(objective, params, optimizer, n_epochs,
                                               session=session, rng=rng,
                                               batch_size=batch_size, l2=l2, l1=l1)
    return TrainResult(params, session.history, dict(bp_options), latent,
                       session.stop_reason)


class _Run:
    """The objective of :func:`fit` (see :func:`minimize`): a model's factor graphs, one
    per sample, with the graph backend of the losses. Inference options are checked once
    here (:class:`~factorgraph_ebm.inference.Options`), then trusted at every step.

    A batch of samples (a mini-batch, the full batch of L-BFGS) runs each inference of the
    loss once for the whole batch (:class:`~factorgraph_ebm.graph_backend.GraphBatch`: the
    model's samples share its one graph), with the same values and gradients, bit for bit,
    as the samples one by one. It falls back to the loop of one-sample calls where batching
    does not apply: warm-started loopy belief propagation (batched calls take no warm-start
    messages; see :func:`~factorgraph_ebm.graph_backend.warm_start_unused`; with
    ``warm_start=False`` loopy BP is batched too), a loss whose terms are not the package's
    (:func:`~factorgraph_ebm.graph_backend.batches_loss`), and an inference ``callback``.
    """

    def __init__(self, model, loss, samples, latent, warm_start, bp_options):
        self.model, self.loss, self.samples = model, loss, samples
        self.latent, self.bp_options = latent, bp_options
        self.options = _checked_options(model, bp_options)
        # Refused before any sample: the loop and the batch would otherwise meet it at
        # different samples, after different errors of their own.
        check_method_for_beta(self.options.method, getattr(loss, "beta", math.inf))
        self.stores = [{} if warm_start else None for _ in samples]
        self.desired = [None] * len(samples)  # each sample's desired states, once checked
        self.outputs = _outputs(model.graph, latent)
        self.batched = (batches_loss(loss) and self.options.callback is None
                        and (not warm_start
                             or warm_start_unused(model.graph.compile(), self.options)))
        # Items per batched call: their inference memory within BATCH_BYTES.
        self.chunk = max(1, min(BATCH_ITEMS, BATCH_BYTES // max(1, model.graph.inference_bytes())))

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def partition(self, start, stop) -> _Run:
        """The objective over samples ``start .. stop - 1`` (for a data-parallel worker)."""
        return _Run(self.model, self.loss, self.samples[start:stop], self.latent,
                    self.stores[0] is not None, self.bp_options)

    def batch(self, params, indices):
        """Summed loss and summed dL/dW over the samples ``indices`` (in their order)."""
        if self.batched and len(indices) > 1:
            return self._batched(params, indices)
        total, grad = 0.0, np.zeros(self.model.n_params)
        for i in indices:
            x = self.samples[i][0]
            found = self.loss.evaluate(self._sample(params, i, self.stores[i]))
            total += float(found.value[0])
            grad += self.model.backward(params, x, found.grad)
        return total, grad

    def _batched(self, params, indices):
        """:meth:`batch` through :class:`GraphBatch`, in chunks of ``self.chunk`` samples;
        the sums run in the order of the loop."""
        model = self.model
        total, grad = 0.0, np.zeros(model.n_params)
        indices = list(indices)
        for start in range(0, len(indices), self.chunk):
            part = indices[start:start + self.chunk]
            found = self.loss.evaluate(GraphBatch([self._sample(params, i, None)
                                                   for i in part]))
            for b, i in enumerate(part):
                total += float(found.value[b])
                grad += model.backward(params, self.samples[i][0], found.grad[b])
        return total, grad

    def _sample(self, params, i, messages) -> _Sample:
        """Sample i as the graph backend sees it at ``params``."""
        x, target = self.samples[i]
        sample = _Sample(self.model.graph, target, self.model.energies(params, x),
                         self.latent, messages, self.options, self.desired[i])
        self.desired[i] = sample.desired
        return sample

    def accuracy(self, params) -> float:
        return _accuracy(self.model, params, self.samples, self.outputs, self.stores,
                         self.options)
