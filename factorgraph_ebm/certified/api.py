"""Certified MAP: TRW-S with a lower bound, a decoding that keeps hard constraints, local
search; the public :func:`trws` and the runner that :func:`~factorgraph_ebm.belief_propagation`
calls for ``method="trws"``."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping

import numpy as np

from .. import _validation as V
from ..energy import energies_of
from ..exceptions import FactorGraphError, NoFiniteAssignmentWarning
from ..graph import FactorGraph
from ..reduction import reduce_factors
from ..results import InferenceResult
from .consistency import edge_values, enforce_all, initial_domains, scratch_for
from .decode import INFEASIBLE, search
from .local_search import block_icm, icm
from .problem import build_problem
from .trws import dual_bound, dual_pass, min_marginal_bounds

#: A result is certified optimal when ``energy - lower_bound <= OPTIMALITY_ATOL +
#: OPTIMALITY_RTOL * |energy|``: the bound is computed in float64 from sums of up to a few
#: million terms, whose rounding stays orders of magnitude below these.
OPTIMALITY_ATOL = 1e-6
OPTIMALITY_RTOL = 1e-9
#: Dead ends that one decoding may meet before it gives up (see :mod:`.decode`): decodings
#: start with DECODE_START and, while none has found a finite-energy assignment, each may
#: meet four times as many, up to ``decode_budget``.
DECODE_BUDGET = 100_000
DECODE_START = 1000
#: The share of ``time_limit`` that TRW-S's iterations may take when a BP candidate follows.
TRWS_SHARE = 0.6
#: The share of the time left after TRW-S's iterations that the BP candidate may take.
BP_SHARE = 0.5
#: Sweeps of the BP candidate per call (each call also decodes, about one sweep's work).
BP_CHUNK = 20
#: Rounds of local search at most (a round: a sweep of ICM, of chain moves, of block ICM).
SEARCH_ROUNDS = 50
#: Variables (or blocks) per kernel call of a local-search sweep, between which the
#: deadline is checked: about 1-10 ms of work on grids.
SEARCH_SLICE = 1 << 13
#: Block ICM tries every joint state of a coupling factor's scope when the factor has at
#: most BLOCK_MAX_ENTRIES entries, and only while one sweep over all such blocks costs at
#: most BLOCK_MAX_WORK entry evaluations (table entries times the factors they touch).
BLOCK_MAX_ENTRIES = 4096
BLOCK_MAX_WORK = 2e8


def trws(
    graph: FactorGraph,
    *,
    evidence: Mapping | None = None,
    unary=None,
    energies=None,
    max_iter: int = 200,
    tol: float = 1e-9,
    time_limit: float | None = None,
    decode_budget: int = DECODE_BUDGET,
    local_search: bool = True,
    bp_candidate: bool = True,
    absorb: bool = True,
    order=None,
    warn: bool = True,
) -> InferenceResult:
    """A lowest-energy assignment with a proven lower bound: sequential tree-reweighted
    message passing (TRW-S, Kolmogorov 2006), on any factor graph.

    TRW-S maximizes a lower bound on the minimum energy (the dual of the local-polytope LP
    relaxation) by passes of messages over the variables in ``order``, forward and back; the
    bound never decreases. On pairwise models this is Kolmogorov's (2006) TRW-S, with the
    O(K) messages of Potts and truncated factors; factors of arity >= 3 are handled as in
    SRMP (Kolmogorov 2015). See :mod:`factorgraph_ebm.certified.trws`. Before the passes,
    arc consistency removes every state that no finite-energy assignment uses (proving
    infeasibility when a variable has none left). After each pass pair an assignment is
    decoded (:mod:`factorgraph_ebm.certified.decode`: the variables clamped in ``order``,
    hard constraints kept arc consistent, backtracking at dead ends), and the best one
    found is kept; with ``local_search`` it is then improved by iterated conditional modes.

    Parameters
    ----------
    graph : FactorGraph
    evidence : mapping variable name -> state, optional
        Observed variables (as in :func:`~factorgraph_ebm.belief_propagation`).
    unary : mapping or array_like, optional
        Soft evidence: per-state energies added for this call (as in
        :func:`~factorgraph_ebm.belief_propagation`).
    energies : array_like of shape (M,), float64, optional
        Replacement energy vector theta.
    max_iter : int, default=200
        Iterations (a forward and a backward pass each) at most; >= 1.
    tol : float, default=1e-9
        Stop when an iteration raised the bound by at most ``tol * max(1, |bound|)``.
    time_limit : float, optional
        Seconds after which no new iteration starts (TRW-S's stop at 60% of them when a BP
        candidate follows), nor any slice of about 8000 variables of a local-search sweep,
        nor any expansion move (one minimum cut), nor any chunk of BP sweeps (1, 2, 4, ...
        up to 20, no more than fit in the time left at the last chunk's pace). The first
        iteration and its decoding always run whole, so that there is an assignment: the
        call may overrun the limit by one iteration, one slice, one move and one sweep (the
        local search and the BP candidate stop one iteration's time before the limit, which
        the final min-marginal bounds take). ``time_limited`` in the result says whether the
        limit stopped anything.
    decode_budget : int, default=100000
        Dead ends that one decoding may meet before it finishes greedily (decodings start
        with 1000 and allow four times more each time, up to this, until one finds a
        finite-energy assignment).
    local_search : bool, default=True
        Improve the best decoded assignment by local search, which only lowers its energy:
        ICM, exact moves of whole chains of variables (rows and columns on a grid,
        :mod:`factorgraph_ebm.certified.chains`), and ICM over the joint states of each
        coupling factor's scope (:mod:`factorgraph_ebm.certified.local_search`).
    bp_candidate : bool, default=True
        When the gap did not close, also decode sequential min-sum BP (from zero messages,
        ``max_iter`` sweeps or until it converges, on the same graph; with ``time_limit``
        in at most half the time left after TRW-S's iterations) and keep its assignment,
        after local search, if its energy is lower: the answer is then never worse than
        BP's (when ``time_limit`` cuts BP short, than that shorter BP's). Local search
        improves the lower of the two decodings first.
    absorb : bool, default=True
        First absorb factors on a repeated scope, or on a scope inside another's, into
        that factor (:mod:`factorgraph_ebm.reduction`): the same energy, a tighter
        relaxation.
    order : array_like of int, shape (n_variables,), optional
        The variable order of the passes and of decoding (a permutation of the indices).
        Default: index order (rows then columns on grids built row by row), or the
        breadth-first order on forests.
    warn : bool, default=True
        Emit a :class:`NoFiniteAssignmentWarning` when no finite-energy assignment was found
        and the model is not proven infeasible.

    Returns
    -------
    InferenceResult
        ``method="trws"``, ``schedule="sequential"``; ``energy`` of ``assignment``,
        ``lower_bound`` (the bound Phi of the final messages, evaluated in full), ``gap``
        and ``optimal`` (see :data:`OPTIMALITY_ATOL`); ``variable_beliefs``: per state, a
        lower bound on the min-marginal (the lowest energy with ``y_i = x``); ``residuals``:
        the bound's rise per iteration; ``converged``: the gap closed or the bound stopped
        rising (within ``tol``); ``time_limited``: ``time_limit`` stopped the iterations,
        the local search or the BP candidate before their end; ``exact=False``;
        ``factor_beliefs`` and ``messages`` are None. A model proven infeasible has
        ``feasible=False`` and energy, bound ``+inf``, gap 0 and ``optimal=True``.

    Raises
    ------
    FactorGraphError
        Invalid options, ``energies``, ``unary`` or ``order``.
    EvidenceError
        As :func:`~factorgraph_ebm.belief_propagation`.

    Warns
    -----
    NoFiniteAssignmentWarning
        See ``warn``.

    Examples
    --------
    A cycle of four variables whose factors favour agreement, and unary energies that pull
    two of them apart: TRW-S proves its answer optimal.

    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.certified import trws
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b", "c", "d"], 2).tolist()
    [0, 1, 2, 3]
    >>> ring = [("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")]
    >>> g.add_potts_factors(ring, 1.0).tolist()
    [0, 1, 2, 3]
    >>> g.add_factors([["a"], ["c"]], [[0.0, 1.5], [1.25, 0.0]]).tolist()
    [4, 5]
    >>> r = trws(g)
    >>> r.energy, r.lower_bound, r.gap, r.optimal, r.assignment.tolist()
    (1.25, 1.25, 0.0, True, [0, 0, 0, 0])

    A frustrated cycle (three "disagree" factors on two states cannot all be satisfied)
    is where the relaxation is loose: the bound is 0.25 below the minimum, 1.0.

    >>> h = fe.FactorGraph()
    >>> h.add_variables(["x", "y", "z"], 2).tolist()
    [0, 1, 2]
    >>> h.add_factors([("x", "y"), ("y", "z"), ("x", "z")], [[1.0, 0.0], [0.0, 1.0]]).tolist()
    [0, 1, 2]
    >>> h.add_factor(["x"], [0.0, 0.5])
    3
    >>> r = trws(h)
    >>> r.energy, r.lower_bound, r.optimal
    (1.0, 0.25, False)
    """
    from ..inference import (
        _evidence_unary,
        _observed_states,
        checked_energy_vector,
        checked_unary,
    )

    started = time.perf_counter()
    cg = graph.compile()
    theta = checked_energy_vector(cg, energies)
    soft = checked_unary(graph, cg, unary)
    per_state = _evidence_unary(graph, cg, theta, _observed_states(graph, cg, evidence))
    if soft is not None:
        per_state += soft
        soft = per_state
    return run_trws(graph, cg, theta, per_state, soft, started, max_iter=max_iter, tol=tol,
                    time_limit=time_limit, decode_budget=decode_budget,
                    local_search=local_search, bp_candidate=bp_candidate, absorb=absorb,
                    order=order, warn=warn)


def run_trws(graph, cg, theta, unary, soft, started, *, max_iter=200, tol=1e-9,
             time_limit=None, decode_budget=DECODE_BUDGET, local_search=True,
             bp_candidate=True, absorb=True, order=None, warn=True) -> InferenceResult:
    """:func:`trws` on validated inputs: ``unary`` (S,) holds evidence and soft evidence;
    ``soft`` is ``unary`` when there is soft evidence (then counted in ``energy``), else
    None."""
    _check_options(max_iter, tol, time_limit, decode_budget, local_search, bp_candidate)
    order = _checked_order(cg, order)
    run_graph, run_theta = graph, theta
    reduction = reduce_factors(graph) if absorb else None
    if reduction is not None:
        run_graph = reduction.graph
        run_theta = (run_graph.compile().energies if theta is cg.energies
                     else reduction.energies(theta))
    answer = _solve(run_graph, run_theta, unary, order, max_iter=max_iter, tol=tol,
                    time_limit=time_limit, decode_budget=decode_budget,
                    local_search=local_search, bp_candidate=bp_candidate, started=started)
    energy = _energy(cg, theta, soft, answer["assignment"])
    bound = answer["bound"]
    if answer["feasible"] is False:
        energy = math.inf
    gap = 0.0 if bound == math.inf and energy == math.inf else energy - bound
    feasible = answer["feasible"] if answer["feasible"] is False else (
        True if math.isfinite(energy) else None)
    if feasible is None and warn:
        warnings.warn(
            "TRW-S decoded no finite-energy assignment, and the model is not proven "
            "infeasible; try a larger decode_budget, or method='exact' if it fits",
            NoFiniteAssignmentWarning,
            stacklevel=3,
        )
    return InferenceResult(
        graph=graph,
        beta=math.inf,
        assignment=answer["assignment"],
        energy=energy,
        variable_beliefs=answer["beliefs"],
        factor_beliefs=None,
        free_energy=energy,
        log_partition=None,
        converged=answer["converged"],
        n_iter=answer["n_iter"],
        residuals=answer["residuals"],
        messages=None,
        schedule="sequential",
        exact=False,
        seconds=time.perf_counter() - started,
        method="trws",
        feasible=feasible,
        lower_bound=bound,
        gap=gap,
        optimal=gap == 0.0 or _certified(energy, bound),
        time_limited=answer["time_limited"],
    )


def _certified(energy: float, bound: float) -> bool:
    """Whether ``energy`` is within the optimality tolerance of ``bound`` (both finite)."""
    return bool(math.isfinite(energy) and
                energy - bound <= OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(energy))


def _solve(graph, theta, unary, order, *, max_iter, tol, time_limit, decode_budget,
           local_search, bp_candidate, started) -> dict:
    """TRW-S iterations with decoding on ``graph`` (see :func:`trws`)."""
    from ..inference import factor_kinds

    cg = graph.compile()
    kinds = factor_kinds(cg, theta)
    params = cg.factor_param
    problem = build_problem(cg, theta, unary, order)
    sc = scratch_for(cg)
    dom = initial_domains(cg, problem.coupling_edges, problem.node_energy)
    args = (cg, theta, kinds, params)
    coupling = (problem.coupling_ptr, problem.coupling_edges)
    n_vars = cg.n_variables
    if problem.constant == math.inf or not enforce_all(*args, *coupling, dom, sc):
        return _infeasible(cg, problem.node_energy)
    alive = dom.alive.copy()
    v2f = np.zeros(cg.n_message_entries)
    edge_values(cg, problem.coupling_edges, alive, 0.0, v2f)
    hard = _has_hard_constraints(cg, theta, problem.is_coupling)
    state_var = np.repeat(np.arange(n_vars, dtype=np.int64), cg.n_states)
    theta_i = np.empty(cg.max_states)
    passes = (problem.node_energy, problem.order, *coupling, problem.before, problem.after,
              problem.weight, alive, v2f)
    assignment = np.zeros(n_vars, dtype=np.int64)

    def decode(budget):
        status, _ = search(*args, problem.node_energy, problem.order, *coupling,
                           problem.before, problem.after, state_var, v2f, dom, hard, budget,
                           sc, assignment)
        if status == INFEASIBLE:  # (the assignment is partial)
            return status, math.inf
        return status, _energy(cg, theta, unary, assignment)

    best, best_energy = None, math.inf
    deadline = math.inf if time_limit is None else started + time_limit
    # With a BP candidate, TRW-S's iterations leave it a share of the time.
    iterations_end = started + (time_limit or math.inf) * (TRWS_SHARE if bp_candidate else 1)
    budget = min(DECODE_START, decode_budget)
    bounds = []
    converged = False
    cut = False  # some stage stopped at the time limit
    lap = 0.0  # seconds of the last iteration
    for _ in range(max_iter):
        lap_start = time.perf_counter()
        dual_pass(*args, *passes, True, sc, theta_i)
        bound = problem.constant + dual_pass(*args, *passes, False, sc, theta_i)
        bounds.append(bound)
        status, energy = decode(budget)
        if status == INFEASIBLE:
            return _infeasible(cg, problem.node_energy, n_iter=len(bounds))
        if best is None or energy < best_energy:
            best, best_energy = assignment.copy(), energy
        budget = min(DECODE_START if best_energy < math.inf else 4 * budget, decode_budget)
        lap = time.perf_counter() - lap_start
        if _certified(best_energy, bound):
            converged = True
            break
        if len(bounds) > 1 and bounds[-1] - bounds[-2] <= tol * max(1.0, abs(bound)):
            converged = True
            break
        if time.perf_counter() > iterations_end:
            cut = len(bounds) < max_iter
            break
    if best_energy == math.inf and hard and budget < decode_budget:
        status, energy = decode(decode_budget)  # a last decoding with the whole budget
        if status == INFEASIBLE:
            return _infeasible(cg, problem.node_energy, n_iter=len(bounds))
        if energy < best_energy:
            best, best_energy = assignment.copy(), energy
    bound = problem.constant + dual_bound(*args, problem.node_energy, problem.is_coupling,
                                          *coupling, alive, v2f, sc, theta_i)
    # The min-marginal bounds below cost about one pass: leave them an iteration's time.
    deadline -= lap
    improve = _local_search(cg, theta, problem) if local_search else (lambda *_: True)
    if not _certified(best_energy, bound):
        candidates = [(best_energy, 0, best)]
        if bp_candidate:
            # BP first, in at most BP_SHARE of the time left, so that its answer gets local
            # search too when the time limit would not leave it any after TRW-S's (on the
            # dense 300x300 K=8 grid in 30 s the answer was 0.13% above BP's without).
            now = time.perf_counter()
            other, finished = _bp_assignment(graph, theta, unary, max_iter,
                                             now + BP_SHARE * (deadline - now))
            cut |= not finished
            if other is not None:
                candidates.append((_energy(cg, theta, unary, other), 1, other))
        for _, _, candidate in sorted(candidates, key=lambda c: c[:2]):  # lowest first
            if _certified(best_energy, bound):
                break
            cut |= not improve(candidate, deadline)
            energy = _energy(cg, theta, unary, candidate)
            if energy < best_energy or candidate is best:  # (local search only lowers)
                best, best_energy = candidate, energy
    beliefs = np.empty(len(alive))
    min_marginal_bounds(*args, problem.node_energy, *coupling, alive, v2f, bound, sc, beliefs)
    history = np.asarray(bounds)
    return dict(assignment=best, bound=bound, beliefs=beliefs, converged=converged,
                n_iter=len(bounds), residuals=np.diff(history, prepend=history[:1]),
                feasible=None, time_limited=cut)


def _local_search(cg, theta, problem):
    """A function ``improve(assignment, deadline)`` that improves an assignment in place by
    rounds of ICM, chain moves and block ICM (:mod:`.local_search`, :mod:`.chains`), until a
    round makes no move, at most SEARCH_ROUNDS; each sweep runs in slices of about
    SEARCH_SLICE variables, and none starts after ``deadline`` (``time.perf_counter()``
    seconds). It returns False when the deadline stopped it, else True."""
    from .chains import build_chains, chain_icm
    from .expansion import make_expansion

    params = cg.factor_param
    coupling = (problem.coupling_ptr, problem.coupling_edges)
    arity = np.diff(cg.scope_ptr)
    log_sizes = np.zeros(cg.n_factors)
    np.add.at(log_sizes, cg.edge_factor, np.log(cg.n_states[cg.scope_vars]))
    blocks = np.flatnonzero(problem.is_coupling &
                            (log_sizes <= math.log(BLOCK_MAX_ENTRIES) + 1e-9))
    degree = np.diff(problem.coupling_ptr)
    touched = np.zeros(cg.n_factors)
    np.add.at(touched, cg.edge_factor, degree[cg.scope_vars])
    work = float((np.exp(log_sizes[blocks]) * (touched[blocks] + arity[blocks])).sum())
    if work > BLOCK_MAX_WORK:
        blocks = blocks[:0]
    chain_sets = []
    for farthest in (False, True):
        ptr, members, links = build_chains(cg, *coupling, problem.order, problem.rank,
                                           farthest)
        if (np.diff(ptr) >= 2).any():
            # Slices of whole chains of about SEARCH_SLICE variables each.
            ends = np.unique(np.searchsorted(ptr, np.arange(SEARCH_SLICE, ptr[-1],
                                                            SEARCH_SLICE)))
            cuts = np.unique(np.concatenate([[0], ends, [len(ptr) - 1]]))
            chain_sets.append(((ptr, members, links), cuts))
    icm_cuts = np.unique(np.r_[np.arange(0, cg.n_variables, SEARCH_SLICE), cg.n_variables])
    block_cuts = np.unique(np.r_[np.arange(0, len(blocks), SEARCH_SLICE), len(blocks)])

    def sweeps(assignment, deadline):
        """One round; None when the deadline stopped it, else the number of moves."""
        moves = 0
        for lo, hi in zip(icm_cuts[:-1], icm_cuts[1:]):
            if time.perf_counter() > deadline:
                return None
            moves += icm(cg, theta, params, problem.node_energy, problem.order, lo, hi,
                         *coupling, assignment)
        for chains, cuts in chain_sets:
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                if time.perf_counter() > deadline:
                    return None
                moves += chain_icm(cg, theta, params, problem.node_energy, *coupling,
                                   *chains, lo, hi, assignment)
        for lo, hi in zip(block_cuts[:-1], block_cuts[1:]):
            if time.perf_counter() > deadline:
                return None
            moves += block_icm(cg, theta, params, problem.node_energy, *coupling, blocks,
                               lo, hi, assignment)
        return moves

    expand = make_expansion(cg, theta, problem.node_energy)

    def descend(assignment, deadline):
        for _ in range(SEARCH_ROUNDS):
            moves = sweeps(assignment, deadline)
            if moves is None:
                return False
            if moves == 0:
                break
        return True

    def improve(assignment, deadline=math.inf) -> bool:
        if not descend(assignment, deadline):
            return False
        if expand is None:
            return True
        moves, finished = expand(assignment, deadline)
        return finished and (moves == 0 or descend(assignment, deadline))

    return improve


def _bp_assignment(graph, theta, unary, max_iter, deadline):
    """The assignment that sequential min-sum BP decodes on ``graph`` with energies
    ``theta`` and per-state energies ``unary`` after ``max_iter`` sweeps (or convergence),
    and whether it ran them all: in chunks of 1, 2, 4, ... up to BP_CHUNK sweeps, each
    warm-started from the last one's messages (the same sweeps as one call), none started
    after ``deadline`` (``time.perf_counter()`` seconds) and none of more sweeps than fit
    in the time left at the last chunk's pace; (None, False) when the deadline has passed
    before the first."""
    from ..inference import belief_propagation

    cg = graph.compile()
    options = dict(unary=unary, energies=None if theta is cg.energies else theta,
                   method="bp", schedule="sequential", absorb=False, warn=False,
                   factor_beliefs=False)
    done, messages, assignment, chunk = 0, None, None, 1
    while done < max_iter:
        now = time.perf_counter()
        if now > deadline or chunk < 1:
            return assignment, False
        chunk = min(chunk, max_iter - done)
        result = belief_propagation(graph, max_iter=chunk, init_messages=messages, **options)
        done += chunk
        messages, assignment = result.messages, result.assignment.copy()
        if result.converged:
            break
        # The next chunk doubles, but only as many sweeps as the last ones' pace fits
        # before the deadline (a chunk of 20 sweeps of a 300x300 grid takes 3-6 s).
        pace = (time.perf_counter() - now) / chunk
        fits = (deadline - time.perf_counter()) / pace if pace > 0 else math.inf
        chunk = int(min(2 * chunk, BP_CHUNK, fits))
    return assignment, True


def _infeasible(cg, node_energy, n_iter=0) -> dict:
    """The answer for a model proven infeasible: no assignment has finite energy."""
    assignment = np.array([int(np.argmin(node_energy[lo:hi])) for lo, hi in
                           zip(cg.state_offset[:-1], cg.state_offset[1:])], dtype=np.int64)
    return dict(assignment=assignment, bound=math.inf,
                beliefs=np.full(len(node_energy), math.inf), converged=True, n_iter=n_iter,
                residuals=np.zeros(max(n_iter, 1)), feasible=False, time_limited=False)


def _energy(cg, theta, soft, assignment) -> float:
    """E(assignment) on ``cg`` plus the per-state energies ``soft`` (None: none)."""
    energy = float(energies_of(cg, theta, assignment[None])[0])
    if soft is not None:
        energy += float(soft[cg.state_offset[:-1] + assignment].sum())
    return energy


def _has_hard_constraints(cg, theta, is_coupling) -> bool:
    """Whether some coupling factor forbids a configuration (a +inf table entry, or a
    compact Potts factor of weight +inf)."""
    sizes = np.diff(cg.table_offset)
    forbidden = np.isinf(theta)
    if forbidden.any():
        stored = np.flatnonzero(sizes > 0)
        per_factor = np.logical_or.reduceat(forbidden, cg.table_offset[stored])
        if (per_factor & is_coupling[stored]).any():
            return True
    return bool(np.isinf(cg.factor_param[(sizes == 0) & is_coupling, 0]).any())


def _checked_order(cg, order) -> np.ndarray | None:
    if order is None:
        return None
    values = np.asarray(order)
    if (values.shape != (cg.n_variables,) or (values.size and values.dtype.kind not in "iu")
            or not np.array_equal(np.sort(values), np.arange(cg.n_variables))):
        raise FactorGraphError(
            f"order must be a permutation of the {cg.n_variables} variable indices, got "
            f"{order!r:.80}"
        )
    return values.astype(np.int64)


def _check_options(max_iter, tol, time_limit, decode_budget, local_search,
                   bp_candidate) -> None:
    V.integer(max_iter, "max_iter", low=1)
    if not (isinstance(tol, (int, float, np.floating)) and tol >= 0):
        raise FactorGraphError(f"tol must be a number >= 0, got {tol!r}")
    if time_limit is not None and not (
        isinstance(time_limit, (int, float, np.floating)) and time_limit > 0
    ):
        raise FactorGraphError(f"time_limit must be None or a number of seconds > 0, got "
                               f"{time_limit!r}")
    V.integer(decode_budget, "decode_budget", low=0)
    for name, value in (("local_search", local_search), ("bp_candidate", bp_candidate)):
        if not isinstance(value, (bool, np.bool_)):
            raise FactorGraphError(f"{name} must be True or False, got {value!r}")
