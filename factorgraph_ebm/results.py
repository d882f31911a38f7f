"""The result of belief propagation, with lookups by variable name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .graph import FactorGraph


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """What one run of belief propagation found.

    Attributes
    ----------
    graph : FactorGraph
        The graph the run was on (for lookups by name).
    beta : float
        Inverse temperature; ``inf`` for min-sum.
    assignment : ndarray of shape (n_variables,), dtype=int64
        A decoded configuration, evidence included. Min-sum: on a forest, one consistent
        joint minimum (sequential decoding with clamping in breadth-first order, ties to the
        lowest state); on a loopy graph, BP's decoding, which never picks a state of
        infinite conditional energy when a finite one exists. Sum-product: each variable in
        turn takes its most probable state given the ones chosen before.
    energy : float
        E(assignment), evaluated exactly from the tables (``+inf`` if it is forbidden).
    variable_beliefs : ndarray of shape (n_states.sum(),), dtype=float64
        Flat per-variable beliefs (variable i at ``state_offset[i]:state_offset[i+1]`` of
        the compiled graph): min-marginals (min-sum) or marginals (sum-product).
        See :attr:`min_marginals` and :attr:`marginals`.
    factor_beliefs : ndarray of shape (M,), dtype=float64
        Flat per-factor beliefs in the layout of the energy vector (C order, scope order):
        factor min-marginals (min-sum; the lowest energy of any configuration agreeing with
        the table entry) or factor marginals (sum-product; each table sums to 1).
        None when the run was asked for ``factor_beliefs=False``. When they are computed
        (the values are the same either way): belief propagation computes them from its
        final ``messages`` on the first access of this attribute (or of
        :meth:`factor_belief`, or when the result is pickled or copied), and caches them;
        at the call itself only when they come out of a pass it makes anyway (sum-product
        with the Bethe free energy) or when ``energies`` was an array of the caller's,
        which could change after the call. The junction tree computes them at the call.
    free_energy : float
        Sum-product: the Bethe free energy F = -1/beta ln Z (exact on forests, where an
        infeasible model gives ``+inf``; on loopy graphs BP may miss an infeasibility that
        only a cycle reveals, e.g. a triangle of "not equal" constraints on two states).
        Min-sum: ``energy``, the beta -> inf limit. None for a sum-product run with
        ``free_energy=False``.
    log_partition : float or None
        ln Z = -beta F (natural log; ``-inf`` when infeasible). None for min-sum.
    converged : bool
        Whether the largest message change fell to ``tol`` (always True for the exact
        two-pass schedule).
    n_iter : int
        Sweeps done (1 for the two-pass schedule).
    residuals : ndarray of shape (min(n_iter, 2**20),), dtype=float64
        Largest message change per sweep (for the two-pass schedule, the change that one
        more flooding sweep makes: ~0 at the exact fixed point); of a run longer than
        2**20 sweeps (:data:`factorgraph_ebm.messages.schedules.MAX_RESIDUALS`), those of the last
        2**20.
    messages : ndarray of shape (n_message_entries,), dtype=float64, or None
        BP: final factor-to-variable messages (energy domain, each shifted to minimum 0),
        read-only (the factor beliefs may still be computed from them); pass as
        ``init_messages`` to warm-start. None after exact inference.
    schedule : str
        The schedule that ran: "tree", "parallel" or "sequential" (BP), "junction_tree"
        (exact inference).
    exact : bool
        True when the results are exact: the junction tree ran, or BP ran on a forest and
        converged.
    seconds : float
        Wall-clock time of the call.
    method : str
        "exact" (junction tree), "bp" (belief propagation) or "trws" (TRW-S, see
        :func:`factorgraph_ebm.certified.trws`).
    feasible : bool or None
        True when the decoded assignment has finite energy (so the model is feasible);
        False when the model is proven infeasible (an exact run found no finite-energy
        configuration: ``energy`` is ``+inf`` and ``log_partition`` is ``-inf``); None when
        loopy BP decoded ``+inf`` and nothing is proven.
    induced_width : int or None
        Exact inference: the induced width of the elimination order (largest clique size
        minus one). None for BP.
    lower_bound : float or None
        Min-sum: a proven lower bound on the minimum energy (evidence and soft evidence
        included): TRW-S's dual bound (``method="trws"``), or ``energy`` itself when the
        result is exact; ``+inf`` when the model is proven infeasible. None for loopy BP
        and for sum-product, which prove no bound.
    gap : float or None
        ``energy - lower_bound`` (>= 0 up to rounding; 0 when both are ``+inf``, a proven
        infeasibility). None when ``lower_bound`` is.
    optimal : bool or None
        Whether the gap closed: ``gap <= OPTIMALITY_ATOL + OPTIMALITY_RTOL * |energy|``
        (:mod:`factorgraph_ebm.certified`; 1e-6 and 1e-9), a certificate that ``energy`` is
        the minimum. None when ``lower_bound`` is.
    time_limited : bool or None
        TRW-S: whether ``time_limit`` stopped some stage (the iterations, the local search,
        the BP candidate) before its end; the answer is then still a full assignment with
        its bound. None for the other methods.

    Examples
    --------
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["x", "y"], 2)
    >>> _ = g.add_factor(["x", "y"], [[0.0, 2.0], [1.0, 0.5]])
    >>> r = fe.min_sum(g)
    >>> r.energy, r.assignment_dict(), r.state("y")
    (0.0, {'x': 0, 'y': 0}, 0)
    >>> r.belief("x").tolist()           # min-marginal: lowest energy with x = 0, x = 1
    [0.0, 0.5]
    >>> r.factor_belief(0).tolist()      # lowest energy agreeing with each table entry
    [[0.0, 2.0], [1.0, 0.5]]
    >>> r.method, r.exact, r.feasible, r.log_partition
    ('bp', True, True, None)
    """

    graph: FactorGraph = field(repr=False)
    beta: float
    assignment: np.ndarray = field(repr=False)
    energy: float
    variable_beliefs: np.ndarray = field(repr=False)
    factor_beliefs: np.ndarray | None = field(repr=False)
    free_energy: float | None
    log_partition: float | None
    converged: bool
    n_iter: int
    residuals: np.ndarray = field(repr=False)
    messages: np.ndarray | None = field(repr=False)
    schedule: str
    exact: bool
    seconds: float = field(repr=False)
    method: str = "bp"
    feasible: bool | None = None
    induced_width: int | None = None
    lower_bound: float | None = None
    gap: float | None = None
    optimal: bool | None = None
    time_limited: bool | None = None

    def __getstate__(self) -> dict:
        # Pickles and copies hold the factor beliefs themselves, not their recipe.
        state = dict(self.__dict__)
        state["_factor_beliefs"] = self.factor_beliefs
        return state

    def replace(self, **changes) -> InferenceResult:
        """``dataclasses.replace(self, **changes)``, without computing pending factor
        beliefs (``dataclasses.replace`` reads every field)."""
        changes.setdefault("factor_beliefs", self.__dict__["_factor_beliefs"])
        return dataclasses.replace(self, **changes)

    @property
    def is_min_sum(self) -> bool:
        """True for a min-sum (beta = inf) result."""
        return np.isinf(self.beta)

    def _per_variable(self) -> list[np.ndarray]:
        offsets = self.graph.compile().state_offset
        return np.split(self.variable_beliefs, offsets[1:-1])

    @property
    def min_marginals(self) -> list[np.ndarray] | None:
        """Min-sum only (else None): list of n_variables arrays of shape (n_states[i],).

        Entry x of variable i is the lowest energy of any configuration with y_i = x: exact
        on forests ("absolute" min-marginals); BP's estimate on loopy graphs, shifted so
        that its minimum equals ``energy`` (or 0 when the loopy decoding has energy +inf).
        """
        return self._per_variable() if self.is_min_sum else None

    @property
    def marginals(self) -> list[np.ndarray] | None:
        """Sum-product only (else None): list of n_variables probability arrays of shape
        (n_states[i],), P_beta(y_i = x) (Bethe approximation on loopy graphs)."""
        return None if self.is_min_sum else self._per_variable()

    def belief(self, name) -> np.ndarray:
        """Min-marginal (min-sum) or marginal (sum-product) of the variable called ``name``.

        Raises
        ------
        FactorGraphError
            If no variable has that name.
        """
        i = self.graph.index_of(name)
        offsets = self.graph.compile().state_offset
        return self.variable_beliefs[offsets[i] : offsets[i + 1]]

    def state(self, name) -> int:
        """Decoded state of the variable called ``name``."""
        return int(self.assignment[self.graph.index_of(name)])

    def assignment_dict(self) -> dict:
        """The decoded assignment as {variable name: state}."""
        return dict(zip(self.graph.variables, self.assignment.tolist()))

    def factor_belief(self, factor: int) -> np.ndarray:
        """Belief table of factor ``factor``, shape (K_1, ..., K_k), C order in scope order."""
        cg = self.graph.compile()
        if not 0 <= factor < cg.n_factors:
            from .exceptions import FactorGraphError

            raise FactorGraphError(f"unknown factor {factor}; the graph has {cg.n_factors}")
        if cg.table_offset[factor] == cg.table_offset[factor + 1]:
            from .exceptions import FactorGraphError

            raise FactorGraphError(
                f"factor {factor} is a compact structured factor (added with dense=False): "
                "its belief is not stored; add it with dense=True to get it"
            )
        scope = cg.scope_vars[cg.scope_ptr[factor] : cg.scope_ptr[factor + 1]]
        flat = self.factor_beliefs[cg.table_offset[factor] : cg.table_offset[factor + 1]]
        return flat.reshape(tuple(cg.n_states[scope]))


class Deferred:
    """A value computed when first asked for: ``function(*args)``, then each step of
    :meth:`then` applied in turn. What :class:`InferenceResult` holds for factor beliefs
    not yet computed (it calls it once and keeps the value)."""

    __slots__ = ("function", "args")

    def __init__(self, function, *args):
        self.function = function
        self.args = args

    def then(self, step) -> Deferred:
        """The value of ``step(value)``, deferred as well."""
        return Deferred(_chain, self, step)

    def __call__(self):
        return self.function(*self.args)


def _chain(first: Deferred, step):
    return step(first())


def _get_factor_beliefs(self):
    value = self.__dict__["_factor_beliefs"]
    if isinstance(value, Deferred):
        value = value()
        self.__dict__["_factor_beliefs"] = value  # frozen: cached past __setattr__
    return value


def _set_factor_beliefs(self, value):
    # Only dataclass __init__ reaches this (a frozen dataclass refuses other assignments).
    self.__dict__["_factor_beliefs"] = value


# A property over the dataclass field: its __init__ (and dataclasses.replace) take an array,
# None or a Deferred, and reading the attribute computes a Deferred once.
InferenceResult.factor_beliefs = property(
    _get_factor_beliefs, _set_factor_beliefs,
    doc="ndarray of shape (M,) or None: see the class's attributes.")
