"""Inference entry points: min-sum (beta = inf) and sum-product at inverse temperature beta,
exact by junction tree wherever its tables fit a memory budget, by belief propagation
otherwise (exact on forests, approximate on loopy graphs).

The public functions validate and coerce every input, pick the method, then hand flat
arrays to the kernels of :mod:`factorgraph_ebm.exact` or :mod:`factorgraph_ebm.messages`.
Energies are unitless; lower is better; logarithms are natural.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping

import numpy as np

from . import _validation as V
from . import certified as C
from . import exact as X
from . import messages as K
from . import structured
from .compiled import TRIM_EDGES, drop_isolated, lowest_states, release_free_heap
from .energy import energies_of
from .exceptions import (
    ConvergenceWarning,
    EvidenceError,
    FactorGraphError,
    NoFiniteAssignmentWarning,
)
from .graph import FactorGraph
from .messages import schedules as S
from .reduction import reduce_factors
from .results import Deferred, InferenceResult

SCHEDULES = ("auto", "parallel", "sequential", "residual", "tree")
METHODS = ("auto", "exact", "bp", "trws")


def belief_propagation(
    graph: FactorGraph,
    *,
    beta: float = math.inf,
    evidence: Mapping | None = None,
    unary=None,
    energies=None,
    method: str = "auto",
    memory_limit: float = X.DEFAULT_MAX_BYTES,
    schedule: str = "auto",
    max_iter: int = 200,
    tol: float = 1e-9,
    damping: float = 0.0,
    init_messages=None,
    warn: bool = True,
    factor_beliefs: bool = True,
    free_energy: bool = True,
    check_sweep: bool = True,
    threads: int | None = None,
    absorb: bool = True,
    callback=None,
) -> InferenceResult:
    """Inference on a factor graph: exact (junction tree) where it fits, else belief
    propagation.

    Min-sum (``beta=inf``) finds a lowest-energy configuration and min-marginals;
    sum-product at finite ``beta`` gives marginals and the free energy
    F_beta = -1/beta ln Z. Belief propagation runs one message-passing code path at
    temperature T = 1/beta (LeCun et al. 2006, "A Tutorial on Energy-Based Learning", sec. 6;
    Yedidia, Freeman & Weiss 2005), exact on forests, the Bethe approximation on loopy
    graphs. The junction tree (:mod:`factorgraph_ebm.exact`; Lauritzen & Spiegelhalter
    1988, Shafer & Shenoy 1990) runs the same two semirings exactly on any graph whose
    clique tables fit ``memory_limit``.

    Parameters
    ----------
    graph : FactorGraph
    beta : float, default=inf
        Inverse temperature, a real number >= 1e-300 (below, T = 1/beta times ln Z
        overflows float64); ``inf`` is min-sum.
    evidence : mapping variable name -> state, optional
        Observed variables, clamped to their states (conditioning). They stay in the result
        with their observed state.
    unary : mapping variable name -> array_like of shape (K_v,), or array_like of shape
        (S,), float64, optional
        Soft evidence: per-state energies added to the model for this call, ``U_v[x]`` to
        every configuration with ``y_v = x`` (finite or ``+inf``; NaN and ``-inf``
        refused). A mapping names some variables (the others get 0); the flat form holds
        every variable's states, variable by variable, in the layout of
        ``graph.compile().state_offset``. Nothing is recompiled: both methods take them as
        the per-state energies that also carry ``evidence`` (which adds on top). Every
        figure of the result is of the model ``E(y) + sum_v U_v(y_v)``: ``energy``,
        min-marginals, marginals, ``free_energy`` and ``log_partition``; factor beliefs
        are still laid out as theta.
    energies : array_like of shape (M,), float64, optional
        Replacement for the graph's flat energy vector theta (``graph.compile().energies``,
        C-order tables concatenated in factor order), e.g. during training.
    method : {"auto", "exact", "bp", "trws"}, default="auto"
        "exact": the junction tree of a greedy min-fill elimination order (FactorGraphError
        naming the induced width and table sizes when it does not fit ``memory_limit``).
        "bp": belief propagation. "trws": min-sum only, TRW-S with a lower bound
        (:func:`factorgraph_ebm.certified.trws` with its defaults, ``max_iter``, ``tol``
        and ``absorb`` passed on; the BP options are not used). "auto": the two-pass BP
        schedule on forests, the junction tree on other graphs whose tables fit
        ``memory_limit``, otherwise TRW-S for min-sum and loopy BP for sum-product (also
        when the greedy order search exceeds its budget, ``exact.AUTO_MAX_WORK``, on very
        large graphs; the plan is cached on the graph, so this is paid once).
        ``result.method`` and ``result.exact`` say what ran.
    memory_limit : float, default=4 GiB
        Bytes that the junction tree's tables may take (clique, separator and
        factor-belief tables, float64); known before anything is allocated.
    schedule : {"auto", "parallel", "sequential", "residual", "tree"}, default="auto"
        "parallel" is flooding, "sequential" updates factors block by block of their
        lowest variable index, by factor index within a block
        (:func:`~factorgraph_ebm.messages.schedules.sequential_order`),
        "residual" sends the message that would change most first (residual BP, Elidan et
        al. 2006; :mod:`factorgraph_ebm.messages.residual`; an iteration is as many messages as the
        graph has edges), "tree" is the exact two-pass schedule (forests only). "auto" picks
        "tree" on forests and "sequential" otherwise. BP only (ignored by the junction
        tree).
    max_iter : int, default=200
        Iterations (sweeps over all messages) at most; >= 1, of any size (nothing is
        allocated in proportion: ``10**10`` runs until convergence or Ctrl-C). Loopy BP
        runs them in chunks of about 0.1 s of compiled work
        (:data:`factorgraph_ebm._pacing.CHUNK_SECONDS`), so Ctrl-C (KeyboardInterrupt)
        stops it within a fraction of a second, or within one iteration when an iteration
        takes longer; the results do not depend on the chunks.
    tol : float, default=1e-9
        Convergence when the largest change of a factor-to-variable message (in energy units)
        is at most ``tol``.
    damping : float, default=0.0
        In [0, 1): ``m <- damping * m_old + (1 - damping) * m_new``; 0 is no damping.
    init_messages : array_like, optional
        Warm start of BP: factor-to-variable messages, e.g. ``previous_result.messages``
        (ignored by the junction tree, whose results have ``messages=None``). BP runs on
        the graph with repeated and nested scopes absorbed (:mod:`factorgraph_ebm.reduction`),
        so their length is that graph's number of message entries. A message whose lowest
        entry is beyond +-1e290 is shifted to minimum 0 (as BP stores its own: a message is
        defined up to a constant); finite entries more than 1e290 above their message's
        lowest are refused (sums of them would overflow).
    warn : bool, default=True
        Emit a :class:`ConvergenceWarning` when BP stops at ``max_iter`` unconverged.
    factor_beliefs : bool, default=True
        Compute ``result.factor_beliefs`` (an array as long as theta). With False it is
        None, which saves that memory and time on large graphs; the Bethe free energy is
        still computed, table by table.
    free_energy : bool, default=True
        Sum-product only: compute the Bethe free energy; with False, ``free_energy`` and
        ``log_partition`` are None. (Min-sum's ``free_energy`` is the decoded energy and
        always there.)
    check_sweep : bool, default=True
        Tree schedule only: after the exact two-pass schedule, run one flooding sweep whose
        largest message change becomes ``residuals[0]`` (~0 at the exact fixed point). With
        False that sweep is skipped and ``residuals`` is ``[0.0]``.
    absorb : bool, default=True
        BP only: first absorb factors on a repeated scope, or on a scope inside another's,
        into that factor (:mod:`factorgraph_ebm.reduction`), so that such spurious cycles
        never hide a tree. False runs BP on the factor graph as given, as libDAI and PGMax
        do.
    threads : int or None, default=None
        Threads of the parallel (flooding) schedule, at most Numba's ``NUMBA_NUM_THREADS``.
        None uses them all on graphs of more than 2**14 message entries and one thread on
        smaller ones. The results do not depend on it, bit for bit. Other schedules run
        on one thread.
    callback : callable, optional
        Loopy BP only: called as ``callback(n_iter, residual)`` after each chunk of
        iterations (about every 0.1 s, see ``max_iter``, and after the last), with the
        iterations done so far and the last one's largest message change; e.g. for a
        progress bar (``fgebm`` draws its own with it). An exception it raises stops BP and
        propagates.

    Returns
    -------
    InferenceResult

    Raises
    ------
    FactorGraphError
        Invalid options (a string where a number is expected included), an ``energies``,
        ``unary`` or ``init_messages`` vector that is not real numbers, of the wrong length
        or with NaN (or ``-inf`` energies), ``init_messages`` entries too far apart,
        ``schedule="tree"`` on a graph with a cycle when BP runs, ``method="exact"`` when
        the junction tree does not fit ``memory_limit``, ``method="trws"`` with a finite
        ``beta``; a graph whose compiled arrays,
        messages and beliefs (:meth:`FactorGraph.inference_bytes`) would need more than the
        machine's physical memory (refused before anything is allocated).
    EvidenceError
        Evidence that is not a mapping, on an unknown variable, a state out of range, or
        evidence that leaves some factor with only ``+inf`` energies (detected before
        iterating).

    Warns
    -----
    ConvergenceWarning
        When the loopy schedule did not converge within ``max_iter`` (the result says
        ``converged=False``).
    NoFiniteAssignmentWarning
        When loopy BP (or TRW-S) decoded an assignment of energy ``+inf`` on a model not
        proven infeasible (``result.feasible`` is None).

    Examples
    --------
    A loopy model (a triangle of "disagree" factors on binary variables, which cannot all
    be satisfied, and two unary terms), small enough for the junction tree:

    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b", "c"], 2).tolist()
    [0, 1, 2]
    >>> disagree = [[1.0, 0.0], [0.0, 1.0]]
    >>> g.add_factors([("a", "b"), ("b", "c"), ("c", "a")], disagree).tolist()
    [0, 1, 2]
    >>> g.add_factors([["a"], ["c"]], [[0.0, 0.3], [0.0, 0.5]]).tolist()
    [3, 4]
    >>> r = fe.belief_propagation(g)                  # beta=inf: min-sum
    >>> r.method, r.exact, r.induced_width, r.energy, r.assignment_dict()
    ('exact', True, 2, 1.0, {'a': 0, 'b': 1, 'c': 0})
    >>> r = fe.belief_propagation(g, evidence={"b": 0})
    >>> round(r.energy, 6), r.assignment_dict()
    (1.3, {'a': 1, 'b': 0, 'c': 0})

    Loopy belief propagation instead, at beta = 1 (the Bethe approximation):

    >>> r = fe.belief_propagation(g, beta=1.0, method="bp")
    >>> r.method, r.schedule, r.exact, r.converged
    ('bp', 'sequential', False, True)
    """
    started = time.perf_counter()
    checked_beta(beta)
    options = Options.checked(
        method=method, memory_limit=memory_limit, schedule=schedule, max_iter=max_iter,
        tol=tol, damping=damping, warn=warn, factor_beliefs=factor_beliefs,
        free_energy=free_energy, check_sweep=check_sweep, threads=threads, absorb=absorb,
        callback=callback,
    )
    V.require_memory(graph.inference_bytes(), "inference on this graph (compiled arrays, "
                     "messages and beliefs)")
    cg = graph.compile()
    theta = checked_energy_vector(cg, energies)
    soft = checked_unary(graph, cg, unary)
    observed = _observed_states(graph, cg, evidence)
    check_method_for_beta(method, beta)
    return infer_checked(graph, cg, theta, beta, options, observed=observed, unary=soft,
                         init_messages=init_messages, messages_checked=False, started=started,
                         defer_factor_beliefs=not borrows(energies, theta))


@dataclasses.dataclass(frozen=True)
class Options:
    """The inference options of :func:`belief_propagation` but the model's inputs (beta,
    evidence, unary, energies, init_messages), checked once by :meth:`checked` and then
    trusted by :func:`infer_checked` (e.g. through every step of training)."""

    method: str = "auto"
    memory_limit: float = X.DEFAULT_MAX_BYTES
    schedule: str = "auto"
    max_iter: int = 200
    tol: float = 1e-9
    damping: float = 0.0
    warn: bool = True
    factor_beliefs: bool = True
    free_energy: bool = True
    check_sweep: bool = True
    threads: int | None = None
    absorb: bool = True
    callback: object = None

    @classmethod
    def checked(cls, **options) -> Options:
        """The options, validated as :func:`belief_propagation` validates them.

        Raises
        ------
        TypeError
            An unknown option name (as for a function's unknown keyword argument).
        FactorGraphError
            An option of the wrong type or value.
        """
        made = cls(**options)
        _check_options(made.schedule, made.max_iter, made.tol, made.damping)
        _check_method(made.method, made.memory_limit)
        max_iter, threads = int(made.max_iter), _check_threads(made.threads)
        if max_iter is made.max_iter and threads is made.threads:
            return made  # plain ints already (dataclasses.replace: 5 us of a 0.3 ms call)
        return dataclasses.replace(made, max_iter=max_iter, threads=threads)


def infer_checked(graph, cg, theta, beta, options: Options, *, observed=None, unary=None,
                  init_messages=None, messages_checked=True, started=None,
                  defer_factor_beliefs=True) -> InferenceResult:
    """:func:`belief_propagation` on inputs that are already checked: the internal entry
    of the package (the losses and training call it on every step).

    Parameters
    ----------
    graph : FactorGraph
    cg : CompiledGraph
        ``graph.compile()``.
    theta : ndarray of shape (M,), float64
        Energies as :func:`checked_energy_vector` returns them.
    beta : float
        A checked inverse temperature (``inf``: min-sum).
    options : Options
        From :meth:`Options.checked`.
    observed : ndarray of shape (n_variables,), int64, optional
        Evidence: the observed state of each variable, -1 where unobserved (each state
        in range).
    unary : ndarray of shape (S,), float64, optional
        Soft evidence as :func:`checked_unary` returns it (a flat array of its own).
    init_messages : ndarray, optional
        Warm-start messages: with ``messages_checked``, the ``messages`` of a result on the
        same graph (only copied: BP writes into its own); else any array, checked as
        :func:`belief_propagation` checks it (against the graph BP runs on).
    started : float, optional
        ``time.perf_counter()`` at the start of the call, for ``result.seconds``.
    defer_factor_beliefs : bool, default=True
        BP: compute the factor beliefs on first access (``InferenceResult.factor_beliefs``)
        unless they come out of the Bethe pass; then ``theta`` must not change in place
        while the result may still read it (the package's callers make a fresh ``theta``
        per call, or read the result at once). False: at the call.

    Raises
    ------
    EvidenceError
        Evidence that leaves some factor with only ``+inf`` energies.
    FactorGraphError
        As :func:`belief_propagation`, for what depends on the graph (``schedule="tree"``
        on a loopy graph, a junction tree that does not fit ``method="exact"``).
    """
    started = time.perf_counter() if started is None else started
    temperature = 0.0 if math.isinf(beta) else 1.0 / beta
    soft = unary
    unary = _evidence_unary(graph, cg, theta, observed)
    if soft is not None:
        # Evidence adds 0 at observed states, so energies count the whole vector: +inf
        # when soft +inf entries leave an observed variable no state (infeasible).
        unary += soft
        soft = unary
    method = options.method
    plan = _exact_plan_for(graph, cg, unary, method, options.memory_limit)
    if plan is not None:
        return _exact_result(graph, cg, theta, unary, soft, temperature, plan,
                             options.factor_beliefs, options.free_energy, started)
    if method == "trws" or (method == "auto" and temperature == 0.0 and not cg.is_forest):
        return C.run_trws(graph, cg, theta, unary, soft, started, max_iter=options.max_iter,
                          tol=options.tol, absorb=options.absorb, warn=options.warn)
    bp = dict(schedule=options.schedule, max_iter=options.max_iter, tol=options.tol,
              damping=options.damping,
              init_messages=init_messages, messages_checked=messages_checked,
              warn=options.warn, factor_beliefs=options.factor_beliefs,
              free_energy=options.free_energy, check_sweep=options.check_sweep,
              n_threads=options.threads, callback=options.callback,
              defer_factor_beliefs=defer_factor_beliefs)
    reduction = reduce_factors(graph) if options.absorb else None
    if reduction is None:
        return _run_bp(graph, cg, theta, unary, soft, temperature, started, **bp)
    # BP on the graph with repeated and nested scopes absorbed; the same variables, so the
    # same per-state energies.
    small = reduction.graph
    inner = _run_bp(small, small.compile(), reduction.energies(theta), unary, soft,
                    temperature, started, **bp)
    energy = _energy(cg, theta, soft, inner.assignment)
    return inner.replace(
        graph=graph,
        energy=energy,
        **_exact_certificate(temperature, inner.exact, energy),
        free_energy=energy if temperature == 0.0 else inner.free_energy,
        factor_beliefs=original_factor_beliefs(reduction, cg, small.compile(), inner,
                                               temperature),
        seconds=time.perf_counter() - started,
    )


def original_factor_beliefs(reduction, cg, small_cg, inner, temperature):
    """The factor beliefs of the original graph ``cg`` from those of a result ``inner`` on
    the reduced graph (:meth:`Reduction.factor_beliefs`): None, an array, or deferred like
    ``inner``'s."""
    pending = inner.__dict__["_factor_beliefs"]
    if pending is None:
        return None

    def step(beliefs):
        return reduction.factor_beliefs(cg, small_cg, beliefs, temperature)

    return pending.then(step) if isinstance(pending, Deferred) else step(pending)


def borrows(energies, theta) -> bool:
    """Whether the checked ``theta`` may share memory with the caller's ``energies`` (which
    the caller could change after the call, so the factor beliefs are computed at once)."""
    if energies is None or isinstance(energies, (list, tuple)):
        return False
    return bool(np.may_share_memory(theta, np.asarray(energies)))


def _energy(cg, theta, soft, assignment) -> float:
    """E(assignment) + the per-state energies ``soft`` at its states (None: none)."""
    energy = float(energies_of(cg, theta, assignment[None])[0])
    if soft is not None:
        energy += float(soft[cg.state_offset[:-1] + assignment].sum())
    return energy


def _run_bp(graph, cg, theta, unary, soft, temperature, started, *, schedule, max_iter, tol,
            damping, init_messages, messages_checked, warn, factor_beliefs, free_energy,
            check_sweep, n_threads, callback, defer_factor_beliefs=False) -> InferenceResult:
    """Belief propagation on validated inputs (see :func:`belief_propagation`): ``unary``
    holds the evidence and the soft evidence; ``soft`` is ``unary`` when there is soft
    evidence (then counted in ``energy``), else None."""
    kinds = factor_kinds(cg, theta)
    params = cg.factor_param
    if cg.max_arity <= 2 and not kinds.any():
        kinds = None  # a plain graph: the kernels' lean specialization (see messages)

    if schedule == "auto":
        schedule = "tree" if cg.is_forest else "sequential"
    if schedule == "tree" and not cg.is_forest:
        raise FactorGraphError(
            "schedule='tree' needs a forest, but this factor graph has a cycle; "
            "use 'parallel' or 'sequential'"
        )
    # Messages and decoding run on the graph without its isolated variables when one of
    # them would size the kernels' scratch (compiled.drop_isolated): same edges, same
    # messages. Beliefs and energies use the whole graph. The decoding order is made (or
    # found in the cache) before the messages exist: its transient arrays are no peak.
    mp, kept = drop_isolated(cg)
    order = _decode_order(graph, cg, mp)
    if cg.n_edges >= TRIM_EDGES:
        # The free heap of the set-up (reduce_factors' temporaries: 77 MiB on a 2000 x 2000
        # grid, resident through the call) before the messages are allocated.
        release_free_heap()
    if (messages_checked and isinstance(init_messages, np.ndarray)
            and init_messages.shape == (cg.n_message_entries,)):
        f2v = np.array(init_messages, dtype=np.float64)  # BP's own: a copy, not re-checked
    else:
        f2v = _initial_messages(cg, init_messages)
    # Untouched until a kernel writes it: flooding on a pairwise graph never does (the
    # sequential schedule uses it as scratch; decoding, some factors' messages).
    v2f = K.untouched_zeros(len(f2v))
    mp_unary = unary if kept is None else unary[_state_positions(cg, kept)]
    work = K.scratch(mp)
    messages = (mp, theta, kinds, params, mp_unary, f2v, v2f, temperature)
    if schedule == "tree":
        K.run_two_pass(*messages, K.unclamped(mp), work)
        residuals = np.zeros(1)
        if check_sweep:
            # One flooding sweep from the two-pass fixed point measures how fixed it is.
            sweep = S.schedule("parallel", *messages, threads=n_threads)
            sweep.run(residuals)
            del sweep
        n_iter, converged = 1, True
    else:
        sweeps = S.schedule(schedule, *messages, damping, tol, n_threads)
        # No final variable sweep: decoding makes the variable-to-factor messages it
        # reads (messages.decode).
        n_iter, converged, residuals = S.iterate(sweeps, int(max_iter), callback,
                                                 finish=False)
        del sweeps  # its scratch, before the beliefs are allocated
        if not converged and warn:
            warnings.warn(
                f"belief propagation ({schedule} schedule) did not converge in {max_iter} "
                f"iterations: last message change {residuals[-1]:.3g} > tol {tol:g}; "
                "try damping=0.5 or more iterations",
                ConvergenceWarning,
                stacklevel=2,
            )
    if cg.n_edges >= TRIM_EDGES:
        release_free_heap()  # the schedule's freed arrays (compiled.release_free_heap)

    # The variables' totals (the raw beliefs where no term is +inf, S entries, fewer than
    # the schedule's freed ones), from which decoding makes its variable-to-factor messages
    # and the factor beliefs are made (messages.factor_beliefs). Decoding first, while the
    # variable-to-factor buffer exists (untouched on pairwise flooding); the beliefs after,
    # from f2v alone, so that no two message-sized buffers and the beliefs coexist.
    var_raw = np.empty(int(cg.state_offset[-1]))
    n_inf = np.empty(len(var_raw), dtype=np.int8)
    K.belief_totals(cg, unary, f2v, var_raw, n_inf)
    assignment = np.empty(cg.n_variables, dtype=np.int64)
    if kept is None:
        K.decode(cg, theta, kinds, params, unary, v2f, f2v, var_raw, n_inf, order,
                 temperature, assignment, work)
    else:
        part = np.empty(len(kept), dtype=np.int64)
        mp_total = np.empty(int(mp.state_offset[-1]))
        mp_n_inf = np.empty(len(mp_total), dtype=np.int8)
        K.belief_totals(mp, mp_unary, f2v, mp_total, mp_n_inf)
        K.decode(mp, theta, kinds, params, mp_unary, v2f, f2v, mp_total, mp_n_inf, order,
                 temperature, part, work)
        del mp_total, mp_n_inf
        assignment[kept] = part
        # An isolated variable's belief is its unary energy: decoding takes its lowest.
        isolated = np.setdiff1d(np.arange(cg.n_variables), kept)
        lowest = np.empty(len(isolated), dtype=np.int64)
        lowest_states(unary, cg.state_offset, isolated, lowest)
        assignment[isolated] = lowest
    del messages, v2f, mp_unary
    energy = _energy(cg, theta, soft, assignment)
    exact = cg.is_forest and bool(converged)
    if math.isfinite(energy):
        feasible = True
    elif exact:
        feasible = False  # exact on a forest: no finite-energy assignment exists
    else:
        feasible = None
        if warn:
            warnings.warn(
                "belief propagation decoded an assignment of energy +inf, and the model is "
                "not proven infeasible: no finite-energy assignment was found; "
                "try method='exact' (if the junction tree fits) or another schedule",
                NoFiniteAssignmentWarning,
                stacklevel=2,
            )
    bethe = temperature > 0.0 and free_energy
    if temperature == 0.0:
        # Absolute min-marginals: shifted so that their minimum is the decoded energy (exact
        # on forests, where +inf means infeasible). A loopy decoding can hit +inf where BP's
        # beliefs are finite; then they stay relative (minimum 0) rather than all +inf.
        shift = energy if math.isfinite(energy) or cg.is_forest else 0.0
    else:
        shift = 0.0

    # Factor beliefs normalized in the pass that makes them: here when the Bethe free
    # energy makes that pass anyway (storing them costs little more), or when asked to;
    # else on first access (messages.normalized_factor_beliefs, the same kernels: a
    # 300 x 300 K=8 min-sum call spent 3.5 iterations' worth on them).
    store = factor_beliefs and (bethe or not defer_factor_beliefs)
    fac_raw = np.empty(len(theta)) if store else np.empty(0)
    factor_part = 0.0
    if store or bethe:
        factor_part = K.factor_beliefs(cg, theta, f2v, var_raw, n_inf, temperature, bethe,
                                       store, fac_raw, normalize=True, shift=shift)
    if not factor_beliefs:
        fac_raw = None
    elif not store:
        fac_raw = Deferred(K.normalized_factor_beliefs, cg, theta, unary, f2v, temperature,
                           float(shift))
    K.beliefs_from_totals(var_raw, n_inf)
    del n_inf
    if temperature == 0.0:
        free, log_partition = energy, None
    elif bethe:
        free = float(factor_part + K.variable_bethe_terms(cg, unary, var_raw, temperature))
        log_partition = -free / temperature
    else:
        free, log_partition = None, None
    # In place: the raw beliefs are not needed any more.
    K.normalize_segments(var_raw, cg.state_offset, temperature, shift, var_raw)

    return InferenceResult(
        graph=graph,
        beta=math.inf if temperature == 0.0 else 1.0 / temperature,
        assignment=assignment,
        energy=energy,
        variable_beliefs=var_raw,
        factor_beliefs=fac_raw,
        free_energy=free,
        log_partition=log_partition,
        converged=bool(converged),
        n_iter=int(n_iter),
        residuals=residuals,
        messages=_read_only(f2v),  # deferred factor beliefs read f2v itself
        schedule=schedule,
        exact=exact,
        seconds=time.perf_counter() - started,
        method="bp",
        feasible=feasible,
        **_exact_certificate(temperature, exact, energy),
    )


def _decode_order(graph, cg, mp) -> np.ndarray:
    """:func:`messages.decode_order` of ``mp`` (``cg``, or ``cg`` without its isolated
    variables: :func:`compiled.drop_isolated`), cached on the graph for ``cg``."""
    cached = graph.__dict__.get("_decode_order")
    if cached is not None and cached[0] is cg:
        return cached[1]
    order = K.decode_order(mp)
    graph.__dict__["_decode_order"] = (cg, order)
    return order


def _state_positions(cg, variables: np.ndarray) -> np.ndarray:
    """int64 positions in the flat per-state layout of the states of ``variables``, variable
    by variable."""
    counts = cg.n_states[variables]
    starts = np.cumsum(counts) - counts
    return np.repeat(cg.state_offset[variables] - starts, counts) + np.arange(counts.sum())


def _exact_plan_for(graph, cg, unary, method, memory_limit):
    """The junction-tree plan to run, or None for BP (see ``method`` of
    :func:`belief_propagation`)."""
    if method in ("bp", "trws") or (method == "auto" and cg.is_forest):
        return None
    plan = X.exact_plan(graph, cg, unary, memory_limit,
                        X.AUTO_MAX_WORK if method == "auto" else math.inf)
    if plan.fits:
        return plan
    if method == "exact":
        raise FactorGraphError(
            f"method='exact': the junction tree does not fit memory_limit: "
            f"{plan.describe()}; raise memory_limit or use method='bp'"
        )
    return None


def _exact_result(graph, cg, theta, unary, soft, temperature, plan, factor_beliefs,
                  free_energy, started) -> InferenceResult:
    """Run the junction tree and wrap its answer like BP's (see :func:`belief_propagation`)."""
    answer = X.run_exact(cg, theta, unary, temperature, plan, factor_beliefs)
    energy = _energy(cg, theta, soft, answer.assignment)
    if temperature == 0.0:
        free, log_partition = energy, None
    elif free_energy:
        free = answer.free_energy
        log_partition = -math.inf if free == math.inf else -free / temperature
    else:
        free, log_partition = None, None
    return InferenceResult(
        graph=graph,
        beta=math.inf if temperature == 0.0 else 1.0 / temperature,
        assignment=answer.assignment,
        energy=energy,
        variable_beliefs=answer.variable_beliefs,
        factor_beliefs=answer.factor_beliefs,
        free_energy=free,
        log_partition=log_partition,
        converged=True,
        n_iter=1,
        residuals=np.zeros(1),
        messages=None,
        schedule="junction_tree",
        exact=True,
        seconds=time.perf_counter() - started,
        method="exact",
        feasible=answer.free_energy < math.inf,
        induced_width=plan.elimination.induced_width,
        **_exact_certificate(temperature, True, energy),
    )


def _exact_certificate(temperature, exact, energy) -> dict:
    """``lower_bound``, ``gap``, ``optimal`` of a result: an exact min-sum answer is its own
    bound (a proven infeasibility included); otherwise None."""
    if temperature != 0.0 or not exact:
        return {}
    return dict(lower_bound=energy, gap=0.0, optimal=True)


def min_sum(graph: FactorGraph, **options) -> InferenceResult:
    """Min-sum belief propagation: a lowest-energy configuration and min-marginals.

    ``belief_propagation(graph, beta=inf, **options)``; see :func:`belief_propagation`.
    On a forest the result is exact: ``result.energy`` is the minimum energy and
    ``result.min_marginals[i][x]`` the lowest energy of any configuration with ``y_i = x``.

    Examples
    --------
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b", "c"], 3).tolist()
    [0, 1, 2]
    >>> g.add_factor(["a"], [0.0, 1.0, 2.0])
    0
    >>> g.add_factor(["a", "b"], 1.0 - np.eye(3))
    1
    >>> g.add_factor(["b", "c"], [[0, np.inf, 1]] * 3)
    2
    >>> best = fe.min_sum(g)                       # a chain: BP's exact two-pass schedule
    >>> best.energy, best.assignment_dict(), best.schedule, best.exact
    (0.0, {'a': 0, 'b': 0, 'c': 0}, 'tree', True)
    >>> [m.tolist() for m in best.min_marginals]   # lowest energy with y_i = x
    [[0.0, 1.0, 2.0], [0.0, 1.0, 1.0], [0.0, inf, 1.0]]
    """
    return belief_propagation(graph, beta=math.inf, **options)


def sum_product(graph: FactorGraph, beta: float = 1.0, **options) -> InferenceResult:
    """Log-domain sum-product belief propagation at inverse temperature ``beta``.

    ``belief_propagation(graph, beta=beta, **options)``; see :func:`belief_propagation`.
    Gives marginals, factor marginals, the Bethe free energy ``F = -1/beta ln Z`` and
    ``log_partition = ln Z`` (natural log), exact on forests.

    Examples
    --------
    The chain of :func:`min_sum`'s example, and ln Z by brute force over its 27
    configurations:

    >>> import itertools
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b", "c"], 3).tolist()
    [0, 1, 2]
    >>> g.add_factor(["a"], [0.0, 1.0, 2.0])
    0
    >>> g.add_factor(["a", "b"], 1.0 - np.eye(3))
    1
    >>> g.add_factor(["b", "c"], [[0, np.inf, 1]] * 3)
    2
    >>> soft = fe.sum_product(g, beta=1.0)
    >>> every = np.array(list(itertools.product(range(3), repeat=3)))
    >>> round(soft.log_partition, 6), round(float(np.log(np.exp(-g.energy(every)).sum())), 6)
    (1.272312, 1.272312)
    >>> round(soft.free_energy, 6)                # -ln Z / beta
    -1.272312
    >>> np.round(soft.marginals[2], 4).tolist()   # P(y_c = x); state 1 is forbidden
    [0.7311, 0.0, 0.2689]
    >>> np.round(soft.factor_belief(2).sum(axis=0), 4).tolist()   # the same, from a table
    [0.7311, 0.0, 0.2689]
    """
    return belief_propagation(graph, beta=beta, **options)


# --------------------------------------------------------------------------- validation
def checked_beta(beta) -> float:
    """``beta`` as a float in [1e-300, inf] (``inf`` for min-sum; see
    :data:`factorgraph_ebm._validation.MIN_BETA`); FactorGraphError otherwise (a string, a
    bool, NaN, <= 0 or too small)."""
    return V.inverse_temperature(beta)


def check_method_for_beta(method, beta) -> None:
    """Refuse ``method="trws"`` at a finite ``beta``: TRW-S is min-sum only.

    Raises
    ------
    FactorGraphError
        "method='trws' finds a lowest-energy assignment (min-sum, beta=inf), got beta=...".
    """
    if method == "trws" and not math.isinf(beta):
        raise FactorGraphError(
            f"method='trws' finds a lowest-energy assignment (min-sum, beta=inf), got "
            f"beta={beta!r}; use method='bp' or 'exact' for sum-product"
        )


def temperature_of(beta) -> float:
    """The temperature T = 1/beta the kernels take (0.0 for min-sum, ``beta=inf``), from a
    ``beta`` checked by :func:`checked_beta`."""
    beta = checked_beta(beta)
    return 0.0 if math.isinf(beta) else 1.0 / beta


def _check_method(method, memory_limit) -> None:
    if method not in METHODS:
        raise FactorGraphError(f"method must be one of {METHODS}, got {method!r}")
    V.number(memory_limit, "memory_limit (bytes)", allow_zero=True, allow_inf=True)


def _check_options(schedule, max_iter, tol, damping) -> None:
    if schedule not in SCHEDULES:
        raise FactorGraphError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    V.integer(max_iter, "max_iter", low=1)
    V.number(tol, "tol", allow_zero=True, allow_inf=True)
    V.number(damping, "damping", allow_zero=True, below=1, expected="in [0, 1)")


def factor_kinds(cg, theta) -> np.ndarray:
    """The structure code of every factor for energy vector ``theta``: the compiled codes,
    except that structured factors whose table in ``theta`` lost its structure (e.g. after a
    learning step) take the dense path."""
    if theta is cg.energies or not cg.factor_kind.any():
        return cg.factor_kind
    return _read_only(structured.structured_kinds(cg, theta))


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``, as the compiled graph's arrays are: Numba compiles a
    kernel once per argument type, and a read-only array is another type than a writable
    one, so this spares the kernels a second compilation (seconds each) for replacement
    energies."""
    view = array.view()
    view.flags.writeable = False
    return view


def _check_threads(threads) -> int | None:
    if threads is None:
        return None
    return V.integer(threads, "threads (None or an integer)", low=1)


def checked_energy_vector(cg, energies) -> np.ndarray:
    """``energies`` validated as a replacement energy vector theta of ``cg`` (float64,
    C-contiguous, shape (M,), finite or +inf; a read-only view), or ``cg.energies`` when it
    is None.

    Raises
    ------
    FactorGraphError
        Not real numbers (e.g. a string), wrong shape, NaN or -inf entries (naming the
        factor).
    """
    if energies is None:
        return cg.energies
    theta = np.ascontiguousarray(V.real_array(energies, "energies", copy=False))
    if theta.shape != (cg.n_energy_entries,):
        raise FactorGraphError(
            f"energies must have shape ({cg.n_energy_entries},) (all factor tables, "
            f"flattened in factor order), got {theta.shape}"
        )
    bad = np.flatnonzero(np.isnan(theta) | (theta == -np.inf))
    if bad.size:
        raise FactorGraphError(
            f"energies[{bad[0]}] (factor {cg.factor_of_entry(bad[0])}) is {theta[bad[0]]}; "
            "energies must be finite or +inf"
        )
    return _read_only(theta)


def checked_unary(graph: FactorGraph, cg, unary) -> np.ndarray | None:
    """``unary`` (see :func:`belief_propagation`) as a flat (S,) float64 vector of
    per-state energies, or None when it is None.

    Raises
    ------
    FactorGraphError
        An unknown variable, a vector of the wrong shape, a non-numeric value, or a NaN or
        ``-inf`` entry (naming the variable and the state).
    """
    if unary is None:
        return None
    n_entries = int(cg.state_offset[-1])
    if isinstance(unary, Mapping):
        flat = np.zeros(n_entries)
        for name, values in unary.items():
            i = graph.index_of(name)
            row = V.real_array(values, f"unary energies of variable {name!r}", copy=False)
            if row.shape != (cg.n_states[i],):
                raise FactorGraphError(
                    f"unary energies of variable {name!r}: expected shape "
                    f"({cg.n_states[i]},) (one per state), got {row.shape}"
                )
            flat[cg.state_offset[i] : cg.state_offset[i + 1]] = row
    else:
        flat = V.real_array(unary, "unary energies")
    if flat.shape != (n_entries,):
        raise FactorGraphError(
            f"unary must be a mapping variable -> energies of shape (K_v,), or an array of "
            f"shape ({n_entries},) (every variable's states, variable by variable: "
            f"graph.compile().state_offset); got shape {flat.shape}"
        )
    bad = np.flatnonzero(np.isnan(flat) | (flat == -np.inf))
    if bad.size:
        i = int(np.searchsorted(cg.state_offset, bad[0], side="right") - 1)
        raise FactorGraphError(
            f"unary energy of variable {graph.variables[i]!r} at state "
            f"{int(bad[0] - cg.state_offset[i])} is {flat[bad[0]]}; unary energies must be "
            "finite or +inf"
        )
    return flat


#: The largest magnitude of the finite entries of an initial message, after the shift of
#: :func:`_initial_messages`: BP adds messages up, and the degree of a variable (at most
#: 2**40) times this stays far below the float64 maximum, 1.8e308.
MAX_INIT_MESSAGE = 1e290


def _initial_messages(cg, init_messages) -> np.ndarray:
    """The factor-to-variable messages BP starts from: zeros, or ``init_messages``.

    A message is defined up to a constant, and BP stores its own shifted to minimum 0; an
    initial message whose lowest entry is beyond +-MAX_INIT_MESSAGE is shifted so too
    (finite entries near 1e308 overflowed when added up: log Z = -inf, "converged", on a
    feasible model). Other messages are kept as given, so that a warm start from
    ``result.messages`` continues bit for bit. Finite entries more than
    MAX_INIT_MESSAGE above their message's lowest are refused.
    """
    if init_messages is None:
        return np.zeros(cg.n_message_entries)
    f2v = V.real_array(init_messages, "init_messages")  # a copy: BP writes into it
    if f2v.shape != (cg.n_message_entries,):
        raise FactorGraphError(
            f"init_messages must have shape ({cg.n_message_entries},), got {f2v.shape}; "
            "pass the .messages of a result on the same graph"
        )
    if np.isnan(f2v).any() or (f2v == -np.inf).any():
        raise FactorGraphError("init_messages contains NaN or -inf")
    if not f2v.size:
        return f2v
    lowest = np.minimum.reduceat(f2v, cg.msg_offset[:-1])
    far = np.isfinite(lowest) & (np.abs(lowest) > MAX_INIT_MESSAGE)
    if far.any():
        f2v -= np.repeat(np.where(far, lowest, 0.0), np.diff(cg.msg_offset))
        lowest[far] = 0.0
    lowest[~np.isfinite(lowest)] = 0.0  # an all-+inf message
    spread = f2v - np.repeat(lowest, np.diff(cg.msg_offset))
    bad = np.flatnonzero(np.isfinite(f2v) & (spread > MAX_INIT_MESSAGE))
    if bad.size:
        j = int(bad[0])
        e = int(np.searchsorted(cg.msg_offset, j, side="right") - 1)
        raise FactorGraphError(
            f"init_messages[{j}] (factor {int(cg.edge_factor[e])} to variable "
            f"{int(cg.scope_vars[e])}, state {j - int(cg.msg_offset[e])}) is "
            f"{float(f2v[j]):.6g} above the lowest entry of its message; finite entries must "
            f"be at most {MAX_INIT_MESSAGE:g} above it (larger ones overflow float64 when "
            "BP adds messages up); use +inf for a forbidden state"
        )
    return f2v


def _observed_states(graph: FactorGraph, cg, evidence) -> np.ndarray | None:
    """Evidence (a mapping variable name -> state, or None) as int64 (n_variables,): the
    observed state of each variable, -1 where unobserved; None without evidence.

    Raises
    ------
    EvidenceError
        Not a mapping, an unknown variable, a state that is not an integer in range.
    """
    if evidence is None:
        return None
    V.mapping(evidence, "evidence (variable name -> observed state)", EvidenceError)
    if not evidence:
        return None
    observed = np.full(cg.n_variables, -1, dtype=np.int64)
    for name, state in evidence.items():
        try:
            i = graph.index_of(name)
        except FactorGraphError as exc:
            raise EvidenceError(f"evidence: {exc}") from None
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)):
            raise EvidenceError(
                f"evidence for variable {name!r}: state must be an integer, got {state!r}"
            )
        if not 0 <= state < cg.n_states[i]:
            raise EvidenceError(
                f"evidence for variable {name!r}: state {state} is out of range "
                f"0..{cg.n_states[i] - 1}"
            )
        observed[i] = state
    return observed


def _evidence_unary(graph: FactorGraph, cg, theta, observed) -> np.ndarray:
    """Flat (S,) unary energies: 0, or +inf at every state of an observed variable but the
    observed one (``observed`` int64 (n_variables,), -1 where unobserved, or None).

    Raises
    ------
    EvidenceError
        When the evidence leaves a factor only +inf energies (naming it).
    """
    # Without evidence, zeros that cost no resident memory (messages.untouched_zeros).
    unary = K.untouched_zeros(int(cg.state_offset[-1]))
    if observed is None:
        return unary
    seen = np.flatnonzero(observed >= 0)
    if not seen.size:
        return unary
    unary[_state_positions(cg, seen)] = np.inf
    unary[cg.state_offset[seen] + observed[seen]] = 0.0
    blocked = K.infeasible_factors(cg, theta, unary)
    if blocked.any():
        # Factors infeasible only under the evidence (not +inf everywhere by themselves).
        blocked &= ~K.infeasible_factors(cg, theta, np.zeros_like(unary))
    if blocked.any():
        bad = int(np.flatnonzero(blocked)[0])
        scope_vars = cg.scope_vars[cg.scope_ptr[bad] : cg.scope_ptr[bad + 1]]
        names = graph.variables
        found = {names[v]: int(observed[v]) for v in scope_vars.tolist() if observed[v] >= 0}
        raise EvidenceError(
            f"impossible evidence {found}: factor {bad} (scope "
            f"{tuple(names[v] for v in scope_vars.tolist())}) has energy +inf for every "
            "configuration consistent with it"
        )
    return unary
