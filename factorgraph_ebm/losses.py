"""Per-sample loss functions of energy-based learning and the most offending incorrect answer.

A loss sees energies, never parameters. For one sample it takes a factor graph, the flat
energy vector theta of shape (M,) (all factor tables, NumPy C order in declared scope order,
concatenated in factor order; see :class:`~factorgraph_ebm.compiled.CompiledGraph`), and the
desired answer Y^i, a mapping from output variable names to states. It returns the loss value
and dL/d(theta), from which any parameterization back-propagates (see
:mod:`factorgraph_ebm.models`). Energies are unitless, lower is better; logarithms are
natural.

Every loss is written with two kinds of inference (LeCun, Chopra, Hadsell, Ranzato & Huang
2006, "A Tutorial on Energy-Based Learning", sec. 2.2 and Table 1; LeCun & Huang 2005,
"Loss Functions for Discriminative Training of Energy-Based Models", AISTATS):

- the energy of the desired answer, ``E_C = E(Y^i)``. With latent variables Z (named by the
  caller; they have no desired state) it is ``min_Z E(Y^i, Z)`` (min-sum) or the free
  energy ``-1/beta ln sum_Z exp(-beta E(Y^i, Z))`` (sum-product), from one inference on the
  graph clamped to Y^i (tutorial sec. 4);
- a contrastive term from the free graph: ``min_Y E`` (perceptron), the free energy
  ``F_beta`` (NLL, MEE), or the energy ``E_I`` of the most offending incorrect answer
  ``Ybar`` (generalized margin losses, :func:`most_offending`).

The gradient is a combination of "parts": ``dE(y)/d(theta)`` is the one-hot vector of the
table entries that configuration y selects, and ``dF_beta/d(theta)`` is the vector of factor
marginals. Margin losses ``L = Q(E_C, E_I)`` share one code path with gradient
``Q_1 onehot(Y^i) + Q_2 onehot(Ybar)``; NLL has ``onehot(Y^i) - factor_marginals``.

Results are exact on forests (trees and chains), where belief propagation is exact. On loopy
graphs the same recipes run on belief propagation's min-marginals, beliefs and Bethe free
energy, and the results say ``exact=False``.

Backends. A loss is its rule over the two terms (:meth:`Loss.rule`); where the terms come
from is an inference backend's business (:meth:`Loss.evaluate`): the graph backend here
(one sample, belief propagation or the junction tree, through the trusted inference entry
:func:`~factorgraph_ebm.inference.infer_checked`), its batch of samples of one graph
(:class:`~factorgraph_ebm.graph_backend.GraphBatch`: each inference one batched call, what
training's mini-batches use), or the chain backend
(:class:`~factorgraph_ebm.chain_backend.ChainBatch`: a batch of sequences on the trellis
kernels). Loss augmentation is one function for all, :func:`hamming_energies`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from . import _validation as V
from .compiled import require_tables
from .energy import energies_of, table_entries_of
from .exceptions import EvidenceError, FactorGraphError, TargetError
from .graph import FactorGraph
from .inference import Options, check_method_for_beta, checked_energy_vector, infer_checked
from .results import InferenceResult

__all__ = [
    "EnergyLoss",
    "Evaluation",
    "HingeLoss",
    "LVQ2Loss",
    "LogLoss",
    "Loss",
    "LossResult",
    "MCELoss",
    "MEELoss",
    "MarginLoss",
    "MostOffending",
    "NLLLoss",
    "PerceptronLoss",
    "SquareExpLoss",
    "SquareSquareLoss",
    "TargetError",
    "Term",
    "hamming_energies",
    "most_offending",
    "value_distance",
]

INF = math.inf


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class LossResult:
    """Value and gradient of a per-sample loss.

    Attributes
    ----------
    value : float
        The loss L(W, Y^i, X^i).
    grad : ndarray of shape (M,), dtype=float64
        dL/d(theta), in the layout of the flat energy vector (C-order tables in scope order,
        concatenated in factor order).
    energy_correct : float
        E_C: the energy of the desired answer (with latent variables, its minimum or free
        energy over them).
    energy_contrast : float or None
        The contrastive energy: E_I of the most offending incorrect answer (margin losses;
        loss-augmented when ``hamming > 0``; ``+inf`` when no incorrect answer is allowed),
        ``min_Y E`` (perceptron) or the free energy F_beta (NLL, MEE); None for the energy
        loss.
    contrast : ndarray of shape (n_variables,), dtype=int64, or None
        The contrastive configuration: Ybar (margin losses) or the lowest-energy
        configuration (perceptron), latent states included; None otherwise.
    exact : bool
        Whether every inference the loss ran was exact: belief propagation on a forest that
        converged. (The energy of Y^i without latent variables needs no inference.)
    """

    value: float
    grad: np.ndarray
    energy_correct: float
    energy_contrast: float | None
    contrast: np.ndarray | None
    exact: bool


@dataclass(frozen=True, eq=False)
class MostOffending:
    """The most offending incorrect answer found by :func:`most_offending`.

    Attributes
    ----------
    assignment : ndarray of shape (n_variables,), dtype=int64, or None
        Ybar, latent states included; None when no allowed answer has a finite energy (or
        the forbidden sphere covers every answer).
    energy : float
        E(Ybar) (its minimum over the latent variables, which ``assignment`` holds);
        ``+inf`` when ``assignment`` is None.
    augmented_energy : float
        ``E(Ybar) - hamming * (number of output variables where Ybar differs from Y^i)``,
        the energy that was minimized; equal to ``energy`` when ``hamming == 0``.
    exact : bool
        True when the search is exact (a forest, BP converged): no allowed answer has a lower
        (augmented) energy. On loopy graphs Ybar comes from BP's min-marginals.
    """

    assignment: np.ndarray | None
    energy: float
    augmented_energy: float
    exact: bool


# --------------------------------------------------------------------------- backends
class Term(NamedTuple):
    """One energy term of a loss, per sample of a batch, as an inference backend gives it.

    Attributes
    ----------
    energy : ndarray of shape (n,), dtype=float64
        The term per sample: E(Y^i) (or its minimum / free energy over latent variables),
        ``min_Y E``, the free energy F_beta, or the (loss-augmented) energy of Ybar
        (``+inf`` where no incorrect answer is allowed).
    grad : object
        The backend's own form of d(energy)/d(energies), which only the backend's
        ``gradient`` reads (the graph: a vector of shape (M,); the chain: a path or
        marginals); None where nothing depends on the energies.
    exact : bool
        Whether the inference behind it was exact.
    answer : ndarray or None
        The configuration behind a min-sum term (Ybar, the lowest-energy answer), else None.
    """

    energy: np.ndarray
    grad: object
    exact: bool
    answer: np.ndarray | None = None


class Evaluation(NamedTuple):
    """What :meth:`Loss.evaluate` returns for a batch of n samples.

    Attributes
    ----------
    value : ndarray of shape (n,), dtype=float64
        The loss of every sample.
    grad : object
        The gradient of the summed loss with respect to the energies, in the backend's
        layout (the graph: ndarray (M,); the chain: see
        :class:`~factorgraph_ebm.chain_backend.ChainBatch`).
    correct : Term
        E_C.
    contrast : Term or None
        The contrastive term (None for the energy loss).
    """

    value: np.ndarray
    grad: object
    correct: Term
    contrast: Term | None

    @property
    def exact(self) -> bool:
        return self.correct.exact and (self.contrast is None or self.contrast.exact)


def hamming_energies(desired, state, hamming: float) -> np.ndarray:
    """Per-state energies of loss augmentation: ``-hamming`` at every state of an output
    variable but its desired one, 0 at the desired state and at latent variables (desired
    state -1). Added to the energy, they make it ``E(Y) - hamming * Hamming(Y, Y^i)``
    (margin rescaling, Taskar et al. 2003; Tsochantaridis et al. 2005). The one
    implementation that the graph and the chain backends share.

    Parameters
    ----------
    desired, state : array_like of int, broadcastable
        The desired state of the variable of each entry (-1: latent), and the entry's state.
    hamming : float
        >= 0.

    Returns
    -------
    ndarray of the broadcast shape, float64
    """
    desired, state = np.asarray(desired), np.asarray(state)
    return np.where((desired >= 0) & (state != desired), -float(hamming), 0.0)


class _Sample:
    """The graph backend: one sample (a graph, its energies, a validated desired answer and
    the inference settings) as the losses see it, a batch of n = 1.

    ``desired`` is int64 (n_variables,): the desired state of each output variable, -1 at
    latent variables. ``messages`` is the caller's warm-start store (or None): it maps
    (kind, beta) to the factor-to-variable messages of the last run of that kind.
    ``options`` are the inference options (a checked :class:`~factorgraph_ebm.inference.
    Options`). Inference runs through the trusted entry :func:`~factorgraph_ebm.inference.
    infer_checked`: theta and the options are validated once, here.
    """

    has_latent: bool

    def __init__(self, graph, target, energies, latent, messages, options, desired=None):
        if not isinstance(graph, FactorGraph):
            raise FactorGraphError(f"graph must be a FactorGraph, got {type(graph).__name__}")
        require_tables(graph, "a loss (dL/d(theta) over every factor's table)")
        self.graph = graph
        self.cg = graph.compile()
        self.theta = checked_energy_vector(self.cg, energies)
        # ``desired``: those of an earlier _Sample of this target (training, every step).
        self.desired = _desired_states(graph, target, latent) if desired is None else desired
        self.messages = messages
        if not isinstance(options, Options):  # else checked by the caller (training)
            options = Options.checked(**options)
            V.require_memory(graph.inference_bytes(), "inference on this graph (compiled "
                             "arrays, messages and beliefs)")
        self.options = options
        self.has_latent = bool((self.desired < 0).any())

    @property
    def evidence(self) -> dict:
        """The desired answer as a mapping (for messages)."""
        names = self.graph.variables
        return {names[i]: int(self.desired[i]) for i in self.outputs.tolist()}

    @property
    def outputs(self) -> np.ndarray:
        """int64 indices of the output (non-latent) variables."""
        return np.flatnonzero(self.desired >= 0)

    def parts(self, assignment) -> np.ndarray:
        """dE(assignment)/d(theta): 1.0 at the table entry each factor selects."""
        entries = table_entries_of(self.cg, assignment)
        return np.bincount(entries, minlength=len(self.theta)).astype(np.float64)

    def energy_of(self, assignment) -> float:
        """E(assignment) (int64 (n_variables,)), summed in factor order exactly as belief
        propagation's ``result.energy`` is, so that tied answers get identical energies."""
        return float(energies_of(self.cg, self.theta, assignment[None])[0])

    def infer(self, kind, beta, observed=None, unary=None) -> InferenceResult:
        """Inference of the given kind (the key of its warm-start messages); ``observed``
        int64 (n_variables,) clamps the variables with a state >= 0."""
        check_method_for_beta(self.options.method, beta)
        key = (kind, beta)
        warm = None if self.messages is None else self.messages.get(key)
        result = infer_checked(self.graph, self.cg, self.theta, beta, self.options,
                               observed=observed, unary=unary, init_messages=warm)
        if self.messages is not None:
            self.messages[key] = result.messages
        return result

    def _soft_min(self, beta, clamped) -> Term:
        """The minimum (beta = inf) or free energy F_beta over the free variables of the
        graph clamped to Y^i (free: its latent variables) or of the free graph; its gradient
        is one-hot (min) or the factor marginals (F_beta)."""
        if clamped and not self.has_latent:
            return Term(np.array([self.energy_of(self.desired)]), self.parts(self.desired),
                        True)
        result = self.infer("clamped" if clamped else "free", beta,
                            observed=self.desired if clamped else None)
        return self.term_of(result, beta)

    def term_of(self, result, beta) -> Term:
        """The term of one inference result: its energy and one-hot gradient at beta = inf
        (with the minimizer), else its free energy and factor marginals."""
        if math.isinf(beta):
            return Term(np.array([result.energy]), self.parts(result.assignment), result.exact,
                        result.assignment)
        return Term(np.array([result.free_energy]), result.factor_beliefs.copy(), result.exact)

    def correct(self, beta) -> Term:
        """E_C at inverse temperature beta (see :meth:`_soft_min`).

        Raises
        ------
        TargetError
            When E_C is +inf (a factor forbids the desired answer).
        """
        try:
            term = self._soft_min(beta, clamped=True)
            value = term.energy[0]
        except EvidenceError:  # clamping to Y^i leaves some factor only +inf entries
            value = INF
        if value == INF:
            raise self.infinite_target()
        return term

    def infinite_target(self) -> TargetError:
        """The error of a desired answer of energy +inf."""
        return TargetError(
            f"the desired answer {self.evidence} has energy +inf (a factor forbids it); "
            "a loss needs a desired answer of finite energy"
        )

    def lowest(self, beta) -> Term:
        """``min_Y E`` (beta = inf, with the minimizer) or F_beta of the free graph."""
        return self._soft_min(beta, clamped=False)

    def offending(self, radius, distance, hamming) -> Term:
        """The (loss-augmented) energy of the most offending incorrect answer
        (:func:`most_offending`), ``+inf`` when none is allowed."""
        found = _most_offending(self, radius, distance, hamming)
        grad = None if found.assignment is None else self.parts(found.assignment)
        return Term(np.array([found.augmented_energy]), grad, found.exact, found.assignment)

    def gradient(self, pairs) -> np.ndarray:
        """``sum coef * dTerm/d(theta)`` over ``(term, coef)`` pairs, coef of shape (1,)."""
        return self.combined([(term.grad, float(coef[0])) for term, coef in pairs])

    def combined(self, pairs) -> np.ndarray:
        """``sum coef * grad`` over ``(grad, coef)`` pairs, grad (M,) or None (nothing
        depends on the energies)."""
        grad = np.zeros(len(self.theta))
        for part, coef in pairs:
            if part is not None and coef != 0.0:
                grad = grad + coef * part
        return grad


def _desired_states(graph, target, latent) -> np.ndarray:
    """int64 (n_variables,): the desired state of each output variable, -1 at latent ones.

    Raises
    ------
    TargetError
        A target that is not a mapping, unknown names, a latent variable given a state, a
        non-integer or out-of-range state, or an output variable without a state.
    """
    if not isinstance(target, Mapping):
        raise TargetError(
            f"target must be a mapping from output variable names to states, got "
            f"{type(target).__name__}"
        )
    if isinstance(latent, (str, bytes)) or not isinstance(latent, Iterable):
        raise TargetError(f"latent must be a collection of variable names, got {latent!r}")
    desired = np.full(graph.n_variables, -2, dtype=np.int64)
    for name in latent:
        try:
            desired[graph.index_of(name)] = -1
        except FactorGraphError:
            raise TargetError(f"latent names unknown variable {name!r}") from None
    n_states = graph.n_states
    for name, state in target.items():
        try:
            i = graph.index_of(name)
        except FactorGraphError:
            raise TargetError(f"target names unknown variable {name!r}") from None
        if desired[i] == -1:
            raise TargetError(
                f"target gives a state to {name!r}, which is latent; latent variables have "
                "no desired state (remove it from the target or from latent)"
            )
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)):
            raise TargetError(f"target state of {name!r} must be an integer, got {state!r}")
        if not 0 <= state < n_states[i]:
            raise TargetError(
                f"target state of {name!r} is {state}, out of range 0..{n_states[i] - 1}"
            )
        desired[i] = state
    missing = np.flatnonzero(desired == -2)
    if missing.size:
        raise TargetError(
            f"target has no state for output variable {graph.variables[missing[0]]!r} "
            f"({missing.size} missing); give one, or name it in latent="
        )
    return desired


# --------------------------------------------------------------------------- Ybar
def value_distance(values) -> Callable[[Hashable, int], np.ndarray]:
    """A distance for the forbidden sphere from the real values that states stand for.

    For an ordinal or discretized continuous output, state x of variable v stands for the
    value ``values[v][x]`` (or ``values[x]`` when one array serves every variable), and the
    distance between states is the absolute difference of their values.

    Parameters
    ----------
    values : mapping or array_like
        Variable name -> array_like of shape (n_states,) of that variable's state values,
        or one array_like of shape (n_states,) for every output variable (float64, in the
        output's own units).

    Returns
    -------
    callable
        ``distance(name, target_state) -> ndarray of shape (n_states,)``, float64: for
        :func:`most_offending` and the margin losses. It raises :class:`FactorGraphError`
        for a variable that ``values`` (a mapping) does not name.
    """
    if isinstance(values, Mapping):
        table = {name: V.real_array(v, f"value_distance: the values of {name!r}", copy=False)
                 for name, v in values.items()}
    else:
        shared = V.real_array(values, "value_distance: the values", copy=False)
        table = None

    def distance(name, target_state):
        if table is not None and name not in table:
            raise FactorGraphError(f"value_distance has no state values for variable {name!r}")
        v = shared if table is None else table[name]
        return np.abs(v - v[target_state])

    return distance


def most_offending(
    graph: FactorGraph,
    target: Mapping,
    *,
    energies=None,
    latent: Iterable = (),
    radius: float = 0.0,
    distance: Callable | None = None,
    hamming: float = 0.0,
    messages: dict | None = None,
    **bp_options,
) -> MostOffending:
    """The most offending incorrect answer, ``Ybar = argmin E(Y)`` over the allowed Y.

    An answer is allowed when some output variable is farther than ``radius`` from its
    desired state: ``max_j distance_j(Y_j, Y^i_j) > radius``. With the defaults
    (``radius=0``, state-index distance) that is every ``Y != Y^i`` (tutorial Def. 1). A
    positive radius is the paper's forbidden sphere for ordinal or discretized continuous
    outputs (Def. 2): every Y within ``radius`` of Y^i in the max-norm over output variables
    is excluded. With latent variables Z, ``E(Y) = min_Z E(Y, Z)`` and Ybar carries its
    minimizing Z.

    The search is exact on forests: the lowest energy over the allowed answers is the lowest
    absolute min-marginal ``min_j min_{x allowed} m_j(x)`` of min-sum BP (every allowed Y has
    some output variable at an allowed state, and conversely), and decoding with that
    variable clamped to that state gives Ybar. When the unconstrained minimum is itself
    allowed, it is Ybar and no second run is needed. On loopy graphs the same recipe runs on
    BP's min-marginals and the result says ``exact=False``.

    Parameters
    ----------
    graph : FactorGraph
    target : mapping output variable name -> int
        The desired answer Y^i; it names every variable that is not latent.
    energies : array_like of shape (M,), float64, optional
        Flat energy vector theta (default: the graph's own tables).
    latent : iterable of variable names, default=()
        Latent variables Z (no desired state; minimized over).
    radius : float, default=0.0
        Forbidden-sphere radius epsilon >= 0, in the units of ``distance``.
    distance : callable, optional
        ``distance(name, target_state) -> ndarray of shape (n_states,)``, nonnegative: the
        distance of each state of output variable ``name`` from its desired state (see
        :func:`value_distance`). Default ``|x - target_state|``.
    hamming : float, default=0.0
        Loss augmentation (margin rescaling, Taskar et al. 2003; Tsochantaridis et al.
        2005): minimize ``E(Y) - hamming * Hamming(Y, Y^i)`` over the output variables
        instead, through per-state energies (``unary=`` of
        :func:`~factorgraph_ebm.inference.belief_propagation`): ``-hamming`` at every state
        of an output variable but its desired one. The energy tables are left as they are
        (structured factors keep their fast messages).
    messages : dict, optional
        Warm-start store, read and updated in place (one per sample).
    **bp_options
        ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
        :func:`~factorgraph_ebm.inference.belief_propagation`.

    Returns
    -------
    MostOffending

    Raises
    ------
    TargetError
        Bad target or latent names.
    FactorGraphError
        A negative radius or hamming weight, a distance of the wrong shape, bad energies or
        BP options.

    Examples
    --------
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> bad = fe.most_offending(g, {"a": 0, "b": 0})   # the lowest answer is the target
    >>> bad.assignment.tolist(), bad.energy, bad.exact
    ([1, 0], 2.0, True)

    Loss-augmented: the lowest ``E(Y) - 1.5 * (number of variables where Y differs)``:

    >>> bad = fe.most_offending(g, {"a": 0, "b": 0}, hamming=1.5)
    >>> bad.assignment.tolist(), bad.energy, bad.augmented_energy   # 2 - 1.5 * 1
    ([1, 0], 2.0, 0.5)
    """
    radius = V.parameter("most_offending", "radius", radius, allow_zero=True)
    hamming = V.parameter("most_offending", "hamming", hamming, allow_zero=True)
    sample = _Sample(graph, target, energies, latent, messages, bp_options)
    return _most_offending(sample, radius, distance, hamming)


def _most_offending(sample: _Sample, radius, distance, hamming) -> MostOffending:
    allowed = _allowed_states(sample, radius, distance)
    unary = _hamming_unary(sample, hamming) if hamming else None
    free = sample.infer("augmented" if hamming else "free", math.inf, unary=unary)
    found = _offending_from_free(sample, free, allowed, hamming)
    if isinstance(found, MostOffending):
        return found
    decoded = sample.infer("offending", math.inf, observed=found, unary=unary)
    return _offending_from_decoded(sample, decoded, free.exact, hamming)


def _offending_from_free(sample: _Sample, free, allowed, hamming):
    """The first step of :func:`most_offending` from the (loss-augmented) min-sum result
    ``free``: a :class:`MostOffending` when it decides (the minimum is allowed, or no
    allowed answer has a finite energy), else the clamp (int64 (n_variables,), -1 where
    free) of the best allowed (variable, state) to decode with."""
    cg = sample.cg
    state_of = cg.state_offset[:-1] + free.assignment
    if allowed[state_of].any():
        return _offending_from_decoded(sample, free, True, hamming)
    # The minimum is excluded: clamp the best allowed (variable, state).
    if not allowed.any():
        return MostOffending(None, INF, INF, free.exact)
    candidates = np.flatnonzero(allowed)
    best = candidates[np.argmin(free.variable_beliefs[candidates])]
    if free.variable_beliefs[best] == INF:
        return MostOffending(None, INF, INF, free.exact)
    var = int(np.searchsorted(cg.state_offset, best, side="right") - 1)
    clamp = np.full(cg.n_variables, -1, dtype=np.int64)
    clamp[var] = best - cg.state_offset[var]
    return clamp


def _offending_from_decoded(sample: _Sample, decoded, exact, hamming) -> MostOffending:
    """Ybar = ``decoded.assignment`` (exact when ``exact`` and ``decoded.exact``), its
    energy and its energy loss-augmented by ``hamming``."""
    assignment, exact = decoded.assignment, exact and decoded.exact
    energy = sample.energy_of(assignment)
    if energy == INF:
        return MostOffending(None, INF, INF, exact)
    outputs = sample.outputs
    differ = int(np.count_nonzero(assignment[outputs] != sample.desired[outputs]))
    return MostOffending(assignment, energy, energy - hamming * differ, exact)


def _allowed_states(sample: _Sample, radius, distance) -> np.ndarray:
    """bool (S,) over the flat variable states: output-variable states farther than
    ``radius`` from the desired state."""
    cg = sample.cg
    var_of_state = np.repeat(np.arange(cg.n_variables), cg.n_states)
    if distance is None:
        state = np.arange(len(var_of_state)) - cg.state_offset[var_of_state]
        desired = sample.desired[var_of_state]
        return (desired >= 0) & (np.abs(state - desired) > radius)
    allowed = np.zeros(len(var_of_state), dtype=bool)
    names = sample.graph.variables
    for j in sample.outputs:
        d = np.asarray(distance(names[j], int(sample.desired[j])), dtype=np.float64)
        if d.shape != (cg.n_states[j],):
            raise FactorGraphError(
                f"distance({names[j]!r}, {sample.desired[j]}) must return shape "
                f"({cg.n_states[j]},), one distance per state; got {d.shape}"
            )
        allowed[cg.state_offset[j] : cg.state_offset[j + 1]] = d > radius
    return allowed


def _hamming_unary(sample: _Sample, hamming) -> np.ndarray:
    """(S,) per-state energies of loss augmentation (:func:`hamming_energies`) over the
    states of every variable of the graph."""
    cg = sample.cg
    var_of_state = np.repeat(np.arange(cg.n_variables), cg.n_states)
    state = np.arange(len(var_of_state)) - cg.state_offset[var_of_state]
    return hamming_energies(sample.desired[var_of_state], state, hamming)


def expit(x: float) -> float:
    """The logistic function 1 / (1 + exp(-x)) without overflow (scipy's ``expit``, here so
    that importing the package does not import scipy.special)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# --------------------------------------------------------------------------- losses
class Loss:
    """Base class of the per-sample losses: ``value_and_grad`` for one sample.

    Attributes
    ----------
    name : str
        Short name ("energy", "hinge", ...).
    margin_kind : {"none", "0", "m", ">0"}
        The margin column of the tutorial's Table 1: the loss never creates an energy gap
        ("none"), only a zero one ("0"), the loss's own margin ``m`` ("m"), or any positive
        margin (">0"), in the sense of the tutorial's Condition 3 (sec. 5).

    Notes
    -----
    A loss is its rule over two energy terms: a subclass implements :meth:`terms` (which
    terms it asks an inference backend for), :meth:`rule` (the loss and its derivatives in
    the two energies, vectorized over a batch) and, when its value is differentiable in the
    energies, :meth:`is_smooth` (the trainer gives L-BFGS only smooth losses). The same
    code then runs on every backend (:meth:`evaluate`).
    """

    name: ClassVar[str]
    margin_kind: ClassVar[str]

    def value_and_grad(
        self,
        graph: FactorGraph,
        target: Mapping,
        *,
        energies=None,
        latent: Iterable = (),
        messages: dict | None = None,
        **bp_options,
    ) -> LossResult:
        """Loss value and gradient with respect to the energies, for one sample.

        Parameters
        ----------
        graph : FactorGraph
            The structure (its own tables are used when ``energies`` is None).
        target : mapping output variable name -> int
            The desired answer Y^i, naming every variable that is not latent.
        energies : array_like of shape (M,), float64, optional
            The flat energy vector theta for this sample (e.g. a model's output), C-order
            tables in scope order, concatenated in factor order.
        latent : iterable of variable names, default=()
            Latent variables Z: minimized over (min-sum losses) or summed over at the loss's
            beta (free-energy losses).
        messages : dict, optional
            Warm-start store for belief propagation, read and updated in place; keep one per
            sample between training steps.
        **bp_options
            ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn`` for
            :func:`~factorgraph_ebm.inference.belief_propagation`.

        Returns
        -------
        LossResult

        Raises
        ------
        TargetError
            Unknown variable, out-of-range or non-integer state, a latent variable in the
            target, an output variable missing from it, or a desired answer of energy +inf.
        FactorGraphError
            Energies of the wrong shape or with NaN or -inf, bad BP options.
        """
        sample = _Sample(graph, target, energies, latent, messages, bp_options)
        found = self.evaluate(sample)
        contrast = found.contrast
        return LossResult(
            float(found.value[0]), found.grad, float(found.correct.energy[0]),
            None if contrast is None else float(contrast.energy[0]),
            None if contrast is None else contrast.answer, found.exact,
        )

    def evaluate(self, backend) -> Evaluation:
        """The loss and its gradient on a batch of samples of an inference backend.

        The loss asks the backend for its two terms (:meth:`terms`), applies its rule
        (:meth:`rule`) sample by sample, and lets the backend combine the terms' gradients:
        ``dL/d(theta) = dQ/dE_C dE_C/d(theta) + dQ/dE_X dE_X/d(theta)``. The backends:
        a factor graph by belief propagation or the junction tree (one sample,
        :meth:`value_and_grad`; a batch of samples of one graph,
        :class:`~factorgraph_ebm.graph_backend.GraphBatch`), and batches of linear chains
        on the trellis
        (:class:`~factorgraph_ebm.chain_backend.ChainBatch`, what
        :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` trains with).

        Parameters
        ----------
        backend : object
            With ``correct(beta)``, ``lowest(beta)``, ``offending(radius, distance,
            hamming)`` (each a :class:`Term` over the batch), ``gradient([(term, coef),
            ...])``.

        Returns
        -------
        Evaluation
        """
        value, pairs = self.linearize(backend)
        contrast = pairs[1][0] if len(pairs) > 1 else None
        return Evaluation(value, backend.gradient(pairs), pairs[0][0], contrast)

    def linearize(self, backend) -> tuple[np.ndarray, list[tuple[Term, np.ndarray]]]:
        """The loss on a batch of an inference backend and its derivatives in the terms,
        before the backend assembles a gradient (what :meth:`evaluate` does with weights
        one; the PyTorch bridge weighs them by the incoming gradient).

        Parameters
        ----------
        backend : object
            As in :meth:`evaluate`.

        Returns
        -------
        value : ndarray of shape (n,), float64
            The loss of every sample.
        pairs : list of (Term, ndarray of shape (n,))
            ``[(E_C, dL/dE_C), (contrastive term, dL/dE_X)]`` (one pair for the energy
            loss): ``backend.gradient([(term, w * coef) for term, coef in pairs])`` is the
            gradient of ``sum_i w_i L_i``.
        """
        correct, contrast = self.terms(backend)
        value, d_correct, d_contrast = self.rule(
            correct.energy, None if contrast is None else contrast.energy
        )
        pairs = [(correct, d_correct)] + ([] if contrast is None else [(contrast, d_contrast)])
        return np.asarray(value, dtype=np.float64), pairs

    def terms(self, backend) -> tuple[Term, Term | None]:
        """``(E_C, contrastive term or None)`` from the backend (see :meth:`evaluate`)."""
        raise NotImplementedError

    def rule(self, correct: np.ndarray, contrast: np.ndarray | None):
        """``(L, dL/dE_C, dL/dE_X)``, arrays of shape (n,), from the terms' energies (n,):
        the loss as a function of the two energies (tutorial Table 1). ``dL/dE_X`` is
        ignored for the energy loss, which has no contrastive term."""
        raise NotImplementedError

    def is_smooth(self, has_latent: bool = False) -> bool:
        """Whether the loss is a differentiable function of the energies theta (under exact
        inference), as quasi-Newton methods such as L-BFGS assume.

        Parameters
        ----------
        has_latent : bool, default=False
            Whether the samples have latent variables.

        Returns
        -------
        bool
            False unless a subclass says otherwise: a loss built on a minimum over answers
            (``min_Y E``, the energy of Ybar, ``min_Z E`` over latent variables) is only
            piecewise smooth, with kinks where the minimizer changes.
        """
        return False

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class EnergyLoss(Loss):
    """Energy loss, ``L = E(Y^i)`` (tutorial sec. 2.2.1, Table 1).

    Margin: none. It only pushes the desired answer's energy down; it trains only
    architectures in which that pushes other energies up (a fixed shape in Y, e.g. a
    regression energy), and collapses others to a flat energy surface.

    With latent variables, E(Y^i) is ``min_Z E(Y^i, Z)`` (``beta=inf``, "Viterbi training")
    or the free energy over Z at ``beta`` ("forward training", LeCun et al. 1998, sec. VI).
    Gradient: ``onehot(Y^i, Z*)``, or the clamped graph's factor marginals.

    Parameters
    ----------
    beta : float, default=inf
        Inverse temperature of the minimization over latent variables.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> step = fe.EnergyLoss().value_and_grad(g, {"a": 1, "b": 0})
    >>> step.value, step.grad.tolist()          # E_C, and it pushes only E(1, 0) down
    (2.0, [0.0, 0.0, 1.0, 0.0])
    """

    name = "energy"
    margin_kind = "none"

    def __init__(self, beta: float = INF):
        self.beta = V.parameter("EnergyLoss", "beta", beta, allow_inf=True)

    def is_smooth(self, has_latent=False):
        """Smooth unless latent variables are minimized over (``beta=inf``)."""
        return not has_latent or math.isfinite(self.beta)

    def terms(self, backend):
        return backend.correct(self.beta), None

    def rule(self, correct, contrast):
        return correct, np.ones_like(correct), None


class _FreeEnergyDifference(Loss):
    """The losses of ``E_C - F_beta``, F_beta the free energy of the free model at the
    loss's beta (``min_Y E`` at beta = inf): perceptron, NLL, MEE."""

    beta: float

    def terms(self, backend):
        return backend.correct(self.beta), backend.lowest(self.beta)


class PerceptronLoss(_FreeEnergyDifference):
    """Generalized perceptron loss, ``L = E(Y^i) - min_Y E(Y)`` (tutorial sec. 2.2.2).

    Margin: 0 (Table 1). The loss is 0 exactly when Y^i is a lowest-energy answer; it never
    asks for a gap, so flat energy surfaces are allowed. (Sub)gradient
    ``onehot(Y^i) - onehot(Y*)``, Y* the min-sum decoding (Collins 2002 for linear
    energies): zero when Y* = Y^i, and still the perceptron update when Y^i only ties with
    Y* (e.g. all energies equal at the start of training). With latent variables both terms
    minimize over Z. On loopy graphs, when BP's decoding has a higher energy than Y^i, the
    loss and its gradient are 0 (nothing better was found).

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> step = fe.PerceptronLoss().value_and_grad(g, {"a": 1, "b": 0})
    >>> step.value, step.contrast.tolist()      # E_C - min E = 2 - 1; the minimizer
    (1.0, [0, 0])
    >>> step.grad.tolist()                      # onehot(1, 0) - onehot(0, 0)
    [-1.0, 0.0, 1.0, 0.0]
    >>> fe.PerceptronLoss().value_and_grad(g, {"a": 0, "b": 0}).value   # already lowest
    0.0
    """

    name = "perceptron"
    margin_kind = "0"
    beta = INF

    def rule(self, correct, contrast):
        gap = correct - contrast
        push = (gap >= 0.0).astype(np.float64)  # below 0: BP found nothing better than Y^i
        return np.maximum(gap, 0.0), push, -push


class NLLLoss(_FreeEnergyDifference):
    """Negative log-likelihood loss, ``L = E(Y^i) - F_beta`` with
    ``F_beta = -1/beta ln sum_Y exp(-beta E(Y))`` (tutorial sec. 2.2.4).

    Margin: any positive margin (Table 1). ``L = -1/beta ln P_beta(Y^i) >= 0``. Gradient
    ``onehot(Y^i) - factor_marginals`` (a CRF's gradient). With latent variables Z,
    ``E(Y^i)`` becomes the free energy over Z of the graph clamped to Y^i, and the gradient
    the clamped graph's factor marginals minus the free graph's ("discriminative forward
    training", LeCun et al. 1998, sec. VI). As beta -> inf it tends to the perceptron loss.

    Parameters
    ----------
    beta : float, default=1.0
        Inverse temperature, > 0.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example, where
    ``P(y) = exp(-E(y)) / Z``:

    >>> import math
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> Z = sum(math.exp(-e) for e in (1.0, 3.0, 2.0, 4.0))
    >>> step = fe.NLLLoss(beta=1.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> round(step.value, 6), round(-math.log(math.exp(-2.0) / Z), 6)   # -ln P(1, 0)
    (1.44019, 1.44019)
    >>> np.round(step.grad, 4).tolist()          # onehot(1, 0) - P(a, b)
    [-0.6439, -0.0871, 0.7631, -0.0321]
    """

    name = "nll"
    margin_kind = ">0"

    def __init__(self, beta: float = 1.0):
        self.beta = V.parameter("NLLLoss", "beta", beta)

    def is_smooth(self, has_latent=False):
        """Always smooth: free energies at finite beta are differentiable."""
        return True

    def rule(self, correct, contrast):
        return correct - contrast, np.ones_like(correct), -np.ones_like(correct)


class MEELoss(_FreeEnergyDifference):
    """Minimum empirical error loss, ``L = 1 - P_beta(Y^i)`` with
    ``P_beta(Y^i) = exp(-beta (E(Y^i) - F_beta))`` (Ljolje, Ephraim & Rabiner 1990; tutorial
    sec. 2.2.4, Table 1).

    Margin: any positive margin (Table 1). Non-convex, bounded in [0, 1]. Gradient
    ``beta P_beta(Y^i) (onehot(Y^i) - factor_marginals)``, the NLL gradient scaled by
    ``beta P``; latent variables as in :class:`NLLLoss`.

    Parameters
    ----------
    beta : float, default=1.0
        Inverse temperature, > 0.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example, where
    ``P(y) = exp(-E(y)) / Z``:

    >>> import math
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> Z = sum(math.exp(-e) for e in (1.0, 3.0, 2.0, 4.0))
    >>> step = fe.MEELoss(beta=1.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> round(step.value, 6), round(1 - math.exp(-2.0) / Z, 6)          # 1 - P(1, 0)
    (0.763117, 0.763117)
    """

    name = "mee"
    margin_kind = ">0"

    def __init__(self, beta: float = 1.0):
        self.beta = V.parameter("MEELoss", "beta", beta)

    def is_smooth(self, has_latent=False):
        """Always smooth: free energies at finite beta are differentiable."""
        return True

    def rule(self, correct, contrast):
        probability = np.exp(-self.beta * (correct - contrast))
        return 1.0 - probability, self.beta * probability, -self.beta * probability


class MarginLoss(Loss):
    """Generalized margin loss ``L = Q(E_C, E_I)`` on the desired answer's energy E_C and the
    most offending incorrect answer's energy E_I (tutorial sec. 2.2.3).

    Gradient ``Q_1 onehot(Y^i) + Q_2 onehot(Ybar)`` with ``(Q_1, Q_2) = (dQ/dE_C, dQ/dE_I)``.
    Ybar comes from :func:`most_offending` (exact on forests): any ``Y != Y^i`` by default,
    outside a forbidden sphere with ``radius > 0``, loss-augmented with ``hamming > 0``, in
    which case E_I is the augmented energy ``E(Ybar) - hamming * Hamming(Ybar, Y^i)`` (so the
    hinge loss becomes the margin-rescaled structured hinge). With latent variables both
    energies minimize over them. When no incorrect answer is allowed, ``E_I = +inf``.

    Subclasses define :meth:`q`.

    Parameters
    ----------
    radius : float, default=0.0
        Forbidden-sphere radius epsilon >= 0 (in the units of ``distance``).
    distance : callable, optional
        ``distance(name, target_state) -> ndarray (n_states,)``; see :func:`most_offending`.
    hamming : float, default=0.0
        Loss-augmentation weight >= 0 per output variable that differs from Y^i.
    """

    def __init__(
        self, *, radius: float = 0.0, distance: Callable | None = None, hamming: float = 0.0
    ):
        owner = type(self).__name__
        self.radius = V.parameter(owner, "radius", radius, allow_zero=True)
        self.distance = distance
        self.hamming = V.parameter(owner, "hamming", hamming, allow_zero=True)

    def q(self, correct: float, incorrect: float) -> tuple[float, float, float]:
        """``(Q, dQ/dE_C, dQ/dE_I)`` at ``E_C = correct``, ``E_I = incorrect``.

        ``incorrect`` is ``+inf`` when no incorrect answer is allowed: there is nothing to
        push up (``dQ/dE_I`` is ignored), while Q and ``dQ/dE_C`` keep their E_C terms.
        """
        raise NotImplementedError

    def terms(self, backend):
        return (backend.correct(INF),
                backend.offending(self.radius, self.distance, self.hamming))

    def rule(self, correct, contrast):
        """:meth:`q` sample by sample; no push up where no Ybar is allowed
        (``E_I = +inf``)."""
        q = np.array([self.q(c, i) for c, i in zip(correct.tolist(), contrast.tolist())],
                     dtype=np.float64).reshape(-1, 3)
        return q[:, 0], q[:, 1], np.where(np.isfinite(contrast), q[:, 2], 0.0)


class HingeLoss(MarginLoss):
    """Hinge loss, ``L = max(0, m + E_C - E_I)`` (tutorial sec. 2.2.3, Table 1).

    Margin: m. Zero, with zero gradient, once ``E_I >= E_C + m``; otherwise gradient
    ``onehot(Y^i) - onehot(Ybar)``. With a linear energy and L2 regularization this is a
    (structured) SVM; with ``hamming > 0``, the margin-rescaled structured SVM.

    Parameters
    ----------
    margin : float, default=1.0
        m >= 0.
    radius, distance, hamming
        See :class:`MarginLoss`.

    Examples
    --------
    Two binary variables, one table ``E(a, b)``; the desired answer is ``a=1, b=0``
    (``E_C = 2``), the most offending incorrect answer ``a=0, b=0`` (``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> step = fe.HingeLoss(margin=1.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> step.energy_correct, step.energy_contrast, step.contrast.tolist()
    (2.0, 1.0, [0, 0])
    >>> step.value                              # max(0, 1 + 2 - 1)
    2.0
    >>> step.grad.tolist()                      # onehot(1, 0) - onehot(0, 0)
    [-1.0, 0.0, 1.0, 0.0]
    """

    name = "hinge"
    margin_kind = "m"

    def __init__(self, margin: float = 1.0, **offending):
        super().__init__(**offending)
        self.margin = V.parameter("HingeLoss", "margin", margin, allow_zero=True)

    def q(self, correct, incorrect):
        gap = self.margin + correct - incorrect
        return (gap, 1.0, -1.0) if gap > 0.0 else (0.0, 0.0, 0.0)


class LogLoss(MarginLoss):
    """Log loss (soft hinge), ``L = log(1 + exp(E_C - E_I))`` (tutorial sec. 2.2.3).

    Margin: any positive margin (Table 1). Gradient ``s (onehot(Y^i) - onehot(Ybar))``,
    ``s = sigmoid(E_C - E_I)``. Parameters as :class:`MarginLoss`.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> import math
    >>> step = fe.LogLoss().value_and_grad(g, {"a": 1, "b": 0})
    >>> round(step.value, 6), round(math.log(1 + math.exp(2 - 1)), 6)
    (1.313262, 1.313262)
    """

    name = "log"
    margin_kind = ">0"

    def q(self, correct, incorrect):
        d = correct - incorrect
        s = float(expit(d))
        return float(np.logaddexp(0.0, d)), s, -s


class LVQ2Loss(MarginLoss):
    """LVQ2 loss, ``L = min(1, max(0, (E_C - E_I) / (delta E_I)))`` (Kohonen's LVQ2;
    tutorial sec. 2.2.3).

    Margin: 0 (Table 1): zero whenever ``E_C <= E_I``. Linear, with gradient
    ``(1 / (delta E_I), -E_C / (delta E_I^2))``, in the zone ``E_I < E_C < (1 + delta) E_I``
    and saturated (zero gradient) beyond it. Non-convex; meant for positive energies: when
    ``E_I <= 0`` the loss is the step ``[E_C > E_I]``. (The tutorial's Table 1 prints the
    variant ``min(M, max(0, E_C - E_I))``.)

    Parameters
    ----------
    delta : float, default=1.0
        Width of the linear zone, relative to E_I, > 0.
    radius, distance, hamming
        See :class:`MarginLoss`.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> step = fe.LVQ2Loss(delta=2.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> step.value                              # (2 - 1) / (2 * 1), in the linear zone
    0.5
    >>> fe.LVQ2Loss(delta=0.5).value_and_grad(g, {"a": 1, "b": 0}).value   # saturated
    1.0
    """

    name = "lvq2"
    margin_kind = "0"

    def __init__(self, delta: float = 1.0, **offending):
        super().__init__(**offending)
        self.delta = V.parameter("LVQ2Loss", "delta", delta)

    def q(self, correct, incorrect):
        if correct <= incorrect:
            return 0.0, 0.0, 0.0
        if incorrect <= 0.0:
            return 1.0, 0.0, 0.0
        ratio = (correct - incorrect) / (self.delta * incorrect)
        if ratio >= 1.0:
            return 1.0, 0.0, 0.0
        scale = self.delta * incorrect
        return ratio, 1.0 / scale, -correct / (scale * incorrect)


class MCELoss(MarginLoss):
    """Minimum classification error loss, ``L = sigmoid(E_C - E_I)`` (Juang, Chou & Lee
    1997; tutorial sec. 2.2.3).

    Margin: any positive margin (Table 1). Non-convex. Gradient
    ``s (1 - s) (onehot(Y^i) - onehot(Ybar))``, ``s = sigmoid(E_C - E_I)``. Parameters as
    :class:`MarginLoss`.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> import math
    >>> step = fe.MCELoss().value_and_grad(g, {"a": 1, "b": 0})
    >>> round(step.value, 6), round(1 / (1 + math.exp(-(2 - 1))), 6)
    (0.731059, 0.731059)
    """

    name = "mce"
    margin_kind = ">0"

    def q(self, correct, incorrect):
        s = float(expit(correct - incorrect))
        slope = s * (1.0 - s)
        return s, slope, -slope


class SquareSquareLoss(MarginLoss):
    """Square-square loss, ``L = E_C^2 + max(0, m - E_I)^2`` (tutorial sec. 2.2.3; Hadsell,
    Chopra & LeCun 2006).

    Margin: m (Table 1). It constrains absolute energies: E_C towards 0, E_I above m, so it
    is meant for nonnegative (distance-like) energies. Gradient
    ``2 E_C onehot(Y^i) - 2 max(0, m - E_I) onehot(Ybar)``.

    Parameters
    ----------
    margin : float, default=1.0
        m > 0.
    radius, distance, hamming
        See :class:`MarginLoss`.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> step = fe.SquareSquareLoss(margin=2.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> step.value                              # 2**2 + max(0, 2 - 1)**2
    5.0
    >>> step.grad.tolist()                      # 2 E_C onehot(1, 0) - 2 (m - E_I) onehot(0, 0)
    [-2.0, 0.0, 4.0, 0.0]
    """

    name = "square_square"
    margin_kind = "m"

    def __init__(self, margin: float = 1.0, **offending):
        super().__init__(**offending)
        self.margin = V.parameter("SquareSquareLoss", "margin", margin)

    def q(self, correct, incorrect):
        short = max(0.0, self.margin - incorrect)
        return correct**2 + short**2, 2.0 * correct, -2.0 * short


class SquareExpLoss(MarginLoss):
    """Square-exponential loss, ``L = E_C^2 + gamma exp(-E_I)`` (tutorial sec. 2.2.3;
    Osadchy, Miller & LeCun 2005).

    Margin: any positive margin (Table 1). Meant for nonnegative energies. Gradient
    ``2 E_C onehot(Y^i) - gamma exp(-E_I) onehot(Ybar)``.

    Parameters
    ----------
    gamma : float, default=1.0
        Weight of the contrastive term, > 0.
    radius, distance, hamming
        See :class:`MarginLoss`.

    Examples
    --------
    The two-variable model of :class:`HingeLoss`'s example (``E_C = 2``, ``E_I = 1``):

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> import math
    >>> step = fe.SquareExpLoss(gamma=1.0).value_and_grad(g, {"a": 1, "b": 0})
    >>> round(step.value, 6), round(2**2 + math.exp(-1), 6)
    (4.367879, 4.367879)
    """

    name = "square_exp"
    margin_kind = ">0"

    def __init__(self, gamma: float = 1.0, **offending):
        super().__init__(**offending)
        self.gamma = V.parameter("SquareExpLoss", "gamma", gamma)

    def q(self, correct, incorrect):
        push = self.gamma * math.exp(-incorrect)
        return correct**2 + push, 2.0 * correct, -push
