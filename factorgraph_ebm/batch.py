"""Batched inference: many energy vectors and/or evidence sets on one compiled graph.

Training samples of one model, frames of a video, images of one size, evidence sets of one
network: each is a single call of :func:`~factorgraph_ebm.belief_propagation` costing ~70-100 us
of Python overhead and one kernel launch, which dominates on small graphs. Here a batch of B
items (energy vectors ``energies`` of shape (B, M), evidence sets, per-state energies of
shape (B, S)) is solved on the one compiled graph by kernels that loop over the items with
``prange`` (items in parallel; each item's sweeps on one thread), calling the very per-sweep
kernels of :mod:`factorgraph_ebm.messages` that a single call runs, in the same order: the
results are those of one-by-one calls, bit for bit (tested).

What is batched, and what is not (a choice):

- belief propagation, min-sum and sum-product: the exact two-pass schedule of forests, and
  the sequential and parallel (flooding) loopy schedules, each item stopping at its own
  convergence;
- the junction tree (``method="exact"``, and "auto" on a loopy graph whose tables fit):
  one plan per distinct evidence pattern (one for a batch of energy vectors), reused for
  every item of that pattern, run item by item (its kernels are already whole-table loops);
- TRW-S (``method="trws"``, and "auto" for min-sum on loopy graphs too large for the
  junction tree): item by item, as single calls do (no batched kernel);
- any other BP schedule (one added later runs through the single-call runner), and a graph
  with an isolated variable larger than every other (which BP runs without it,
  :func:`~factorgraph_ebm.compiled.drop_isolated`): item by item.

Like every kernel of the package, the batched ones allocate nothing: their scratch (one
row per item) comes from Python. They run in paced chunks (:func:`~factorgraph_ebm._pacing.paced`),
so Ctrl-C stops a batch within about 0.1 s: groups of items, each group run to its end
(its schedule, in chunks of iterations for the loopy ones, then decoding, energies and
beliefs) before the next, so that an item's arrays stay in cache from its iterations to its
beliefs, as in a single call. Each item does what a single call does: no final variable
sweep, decoding in :func:`~factorgraph_ebm.messages.decode_order`, flooding without the
unary factors once their messages are fixed, and factor beliefs deferred to first access
(``InferenceResult.factor_beliefs``) unless the Bethe pass makes them or ``energies`` is an
array of the caller's.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from . import _validation as V
from . import certified as C
from . import exact as X
from . import inference as single
from . import messages as K
from ._config import NJIT_OPTIONS, njit
from ._pacing import paced
from .compiled import drop_isolated
from .energy import energies_of
from .exceptions import ConvergenceWarning, FactorGraphError, NoFiniteAssignmentWarning
from .graph import FactorGraph
from .messages import schedules as S
from .messages.beliefs import _factor_beliefs
from .reduction import reduce_factors
from .results import Deferred, InferenceResult

PARALLEL_OPTIONS = dict(NJIT_OPTIONS, parallel=True)

#: The BP schedules run by the batched kernels; any other runs item by item.
BATCHED_SCHEDULES = ("tree", "sequential", "parallel")

#: Message entries (items x entries per item, or iterations x items x entries) in the first
#: paced chunk of a batch; later chunks are sized from its time (about 0.1 s each). A call
#: of a ``prange`` kernel costs 1.4 us on one thread but 28 ms on two on a loaded machine
#: (load 12 on 2 cores: the second thread waits for a time slice), so a batch starts with
#: a chunk of a few milliseconds of work rather than one item.
FIRST_CHUNK_ENTRIES = 2**22

__all__ = ["BatchResult", "batch_belief_propagation", "batch_min_sum", "batch_sum_product"]


@dataclass(frozen=True, eq=False)
class BatchResult:
    """The results of a batch, item by item, with the per-item figures stacked.

    A sequence of :class:`~factorgraph_ebm.InferenceResult` (``result[b]``, ``len``,
    iteration), each what a single call on item b returns (``seconds`` is the batch's
    wall-clock time divided by the number of items).

    Attributes
    ----------
    items : tuple of InferenceResult
    seconds : float
        Wall-clock time of the whole batch.
    """

    items: tuple
    seconds: float

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def __iter__(self):
        return iter(self.items)

    @property
    def assignment(self) -> np.ndarray:
        """ndarray of shape (B, n_variables), dtype=int64: each item's decoded assignment."""
        return np.stack([r.assignment for r in self.items])

    @property
    def energy(self) -> np.ndarray:
        """ndarray of shape (B,), dtype=float64: E(assignment) of each item."""
        return np.array([r.energy for r in self.items], dtype=np.float64)

    @property
    def variable_beliefs(self) -> np.ndarray:
        """ndarray of shape (B, S), dtype=float64: min-marginals (min-sum) or marginals
        (sum-product), flat per item as ``InferenceResult.variable_beliefs``."""
        return np.stack([r.variable_beliefs for r in self.items])

    @property
    def factor_beliefs(self) -> np.ndarray | None:
        """ndarray of shape (B, M), dtype=float64, or None (``factor_beliefs=False``)."""
        if any(r.factor_beliefs is None for r in self.items):
            return None
        return np.stack([r.factor_beliefs for r in self.items])

    @property
    def free_energy(self) -> np.ndarray | None:
        """ndarray of shape (B,), dtype=float64, or None (``free_energy=False``)."""
        if any(r.free_energy is None for r in self.items):
            return None
        return np.array([r.free_energy for r in self.items], dtype=np.float64)

    @property
    def log_partition(self) -> np.ndarray | None:
        """ndarray of shape (B,), dtype=float64 (ln Z, sum-product), or None."""
        if any(r.log_partition is None for r in self.items):
            return None
        return np.array([r.log_partition for r in self.items], dtype=np.float64)

    @property
    def converged(self) -> np.ndarray:
        """ndarray of shape (B,), dtype=bool."""
        return np.array([r.converged for r in self.items], dtype=bool)

    @property
    def n_iter(self) -> np.ndarray:
        """ndarray of shape (B,), dtype=int64: iterations done by each item."""
        return np.array([r.n_iter for r in self.items], dtype=np.int64)


def batch_belief_propagation(
    graph: FactorGraph,
    *,
    beta: float = math.inf,
    energies=None,
    evidence=None,
    unary=None,
    method: str = "auto",
    memory_limit: float = X.DEFAULT_MAX_BYTES,
    schedule: str = "auto",
    max_iter: int = 200,
    tol: float = 1e-9,
    damping: float = 0.0,
    warn: bool = True,
    factor_beliefs: bool = True,
    free_energy: bool = True,
    check_sweep: bool = True,
    absorb: bool = True,
    threads: int | None = None,
) -> BatchResult:
    """Inference on a batch of B items of one factor graph: each item an energy vector,
    an evidence set and/or per-state energies; item b's result is that of
    ``belief_propagation(graph, energies=energies[b], evidence=evidence[b],
    unary=unary[b], **options)``, bit for bit.

    Belief propagation runs the whole batch in one kernel call per chunk of work, the items
    in parallel (``prange``; each item's sweeps on one thread) through the per-sweep
    kernels of single calls. The junction tree runs item by item with one plan per distinct
    evidence pattern, TRW-S item by item (see the module docstring).

    Parameters
    ----------
    graph : FactorGraph
    beta : float, default=inf
        Inverse temperature (``inf``: min-sum), as :func:`~factorgraph_ebm.belief_propagation`.
    energies : array_like of shape (B, M) or (M,), float64, optional
        One energy vector theta per item (C-order tables concatenated in factor order), or
        one for every item; None: the graph's own.
    evidence : mapping or sequence of B mappings (or None), optional
        Observed variables (name -> state), one mapping per item, or one for every item.
    unary : array_like of shape (B, S) or (S,), a mapping, or a sequence of B of those, optional
        Soft evidence, as the ``unary`` of :func:`~factorgraph_ebm.belief_propagation`
        (S = ``graph.compile().state_offset[-1]``): per item, or one for every item.
    method, memory_limit, schedule, max_iter, tol, damping, warn, factor_beliefs, \
free_energy, check_sweep, absorb
        As :func:`~factorgraph_ebm.belief_propagation`, for every item.
    threads : int or None, default=None
        Threads that work on the items, at most Numba's ``NUMBA_NUM_THREADS``. None uses
        them all when the batch has more than 2**14 message entries in all, one thread
        otherwise (as single calls' flooding). The results do not depend on it.

    Returns
    -------
    BatchResult
        A sequence of B :class:`~factorgraph_ebm.InferenceResult`, with stacked views
        (``assignment`` (B, V), ``energy`` (B,), ...). The batch size B is the length of
        whichever of ``energies``, ``evidence`` and ``unary`` is given per item (they must
        agree); 1 when none is.

    Raises
    ------
    FactorGraphError
        As :func:`~factorgraph_ebm.belief_propagation`; a per-item error names the item
        (``item 3: ...``); batch sizes that disagree.
    EvidenceError
        Bad evidence of an item (naming the item).

    Warns
    -----
    ConvergenceWarning
        Once per batch, when some items' loopy BP did not converge within ``max_iter``
        (saying how many; their results say ``converged=False``).
    NoFiniteAssignmentWarning
        Once per batch, when loopy BP decoded an assignment of energy ``+inf`` for some
        items on a model not proven infeasible.

    Examples
    --------
    A chain of three binary variables, and four energy vectors of it (the graph's own, and
    three with a unary term of the first variable shifted):

    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.batch import batch_belief_propagation
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b", "c"], 2).tolist()
    [0, 1, 2]
    >>> g.add_factors([("a", "b"), ("b", "c")], [[0.0, 1.0], [1.0, 0.0]]).tolist()
    [0, 1]
    >>> g.add_factor(["a"], [0.0, 0.5])
    2
    >>> theta = np.tile(g.compile().energies, (4, 1))
    >>> theta[1:, 8] = [1.0, 2.0, 3.0]           # factor 2's entry of state a = 0
    >>> batch = batch_belief_propagation(g, energies=theta)
    >>> batch.assignment.tolist()
    [[0, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]]
    >>> batch.energy.tolist(), batch[0].schedule
    ([0.0, 0.5, 0.5, 0.5], 'tree')
    >>> r = fe.min_sum(g, energies=theta[1])       # the same as a single call
    >>> bool((r.variable_beliefs == batch[1].variable_beliefs).all())
    True

    Evidence sets at beta = 1 (with a = 0 observed, ln Z = 2 ln(1 + 1/e) = 0.6265):

    >>> batch = batch_belief_propagation(g, beta=1.0, evidence=[{"a": 0}, {"c": 1}, None])
    >>> np.round(batch.log_partition, 4).tolist()
    [0.6265, 0.3537, 1.1006]
    """
    started = time.perf_counter()
    temperature = single.temperature_of(beta)
    single._check_options(schedule, max_iter, tol, damping)
    single._check_method(method, memory_limit)
    n_threads = single._check_threads(threads)
    V.require_memory(graph.inference_bytes(), "inference on this graph (compiled arrays, "
                     "messages and beliefs)")
    cg = graph.compile()
    n = _batch_size(energies, evidence, unary)
    thetas, rows = _checked_energies(cg, energies, n)
    units, has_soft = _checked_unaries(graph, cg, thetas, rows, evidence, unary, n)
    single.check_method_for_beta(method, beta)

    options = single.Options(method=method, memory_limit=memory_limit, schedule=schedule,
                             max_iter=int(max_iter), tol=float(tol), damping=float(damping),
                             warn=warn, factor_beliefs=factor_beliefs,
                             free_energy=free_energy, check_sweep=check_sweep,
                             threads=n_threads, absorb=absorb)
    return _solve(graph, cg, thetas, rows, units, has_soft, temperature, options, started,
                  shared_theta=energies is None,
                  defer_factor_beliefs=not single.borrows(energies, thetas))


def batch_infer_checked(graph, cg, thetas, beta, options, *, observed=None,
                        unary=None) -> BatchResult:
    """:func:`batch_belief_propagation` on inputs that are already checked, item b that of
    :func:`~factorgraph_ebm.inference.infer_checked` on ``thetas[b]`` (the package's internal
    entry: training calls it on every mini-batch).

    Parameters
    ----------
    graph : FactorGraph
    cg : CompiledGraph
        ``graph.compile()``.
    thetas : ndarray of shape (B, M), float64
        Checked energy rows (finite or +inf), read-only.
    beta : float
        A checked inverse temperature (``inf``: min-sum).
    options : Options
        From :meth:`~factorgraph_ebm.inference.Options.checked`; its ``callback`` must be
        None (batched kernels take none).
    observed : ndarray of shape (B, n_variables), int64, optional
        Each item's observed states, -1 where unobserved (each state in range).
    unary : ndarray of shape (B, S), float64, optional
        Each item's soft evidence.

    Returns
    -------
    BatchResult

    Raises
    ------
    EvidenceError
        Evidence of an item that leaves some factor only +inf energies (naming the item).
    FactorGraphError
        As :func:`~factorgraph_ebm.inference.infer_checked`.
    """
    started = time.perf_counter()
    thetas = thetas.view()
    thetas.flags.writeable = False  # the type of single calls' energies: no new compilation
    n = len(thetas)
    units = np.empty((n, int(cg.state_offset[-1])))
    for b in range(n):
        units[b] = _item(b, single._evidence_unary, graph, cg, thetas[b],
                         None if observed is None else observed[b])
    if unary is not None:
        units += unary  # as infer_checked: evidence, then soft evidence
    return _solve(graph, cg, thetas, np.arange(n, dtype=np.int64), units, unary is not None,
                  single.temperature_of(beta), options, started)


def _solve(graph, cg, thetas, rows, units, has_soft, temperature, options, started, *,
           shared_theta=False, defer_factor_beliefs=True) -> BatchResult:
    """Every item by the method a single call picks (see the module docstring): the
    junction tree and TRW-S item by item, BP in batched kernels."""
    n = len(rows)
    items: list = [None] * n
    plans = _exact_plans(graph, cg, units, options.method, options.memory_limit)
    bp = []
    for b in range(n):
        # The graph's own vector itself when none is given, as single calls pass it on.
        theta = cg.energies if shared_theta else thetas[rows[b]]
        soft = units[b] if has_soft else None
        if plans is not None and plans[b] is not None:
            items[b] = single._exact_result(graph, cg, theta, units[b], soft, temperature,
                                            plans[b], options.factor_beliefs,
                                            options.free_energy, started)
        elif options.method == "trws" or (options.method == "auto" and temperature == 0.0
                                          and not cg.is_forest):
            items[b] = C.run_trws(graph, cg, theta, units[b], soft, started,
                                  max_iter=options.max_iter, tol=options.tol,
                                  absorb=options.absorb, warn=options.warn)
        else:
            bp.append(b)
    if bp:
        kwargs = dict(schedule=options.schedule, max_iter=options.max_iter, tol=options.tol,
                      damping=options.damping, warn=options.warn,
                      factor_beliefs=options.factor_beliefs,
                      free_energy=options.free_energy, check_sweep=options.check_sweep,
                      threads=options.threads, defer_factor_beliefs=defer_factor_beliefs)
        chosen = np.asarray(bp, dtype=np.int64)
        for b, result in zip(bp, _bp_batch(graph, cg, thetas, rows[chosen], units[chosen],
                                           has_soft, temperature, options.absorb, started,
                                           kwargs)):
            items[b] = result
    seconds = time.perf_counter() - started
    share = seconds / max(n, 1)
    return BatchResult(tuple(r.replace(seconds=share) for r in items), seconds)


def batch_min_sum(graph: FactorGraph, **options) -> BatchResult:
    """``batch_belief_propagation(graph, beta=inf, **options)``: min-sum on a batch (see
    :func:`batch_belief_propagation`)."""
    return batch_belief_propagation(graph, beta=math.inf, **options)


def batch_sum_product(graph: FactorGraph, beta: float = 1.0, **options) -> BatchResult:
    """``batch_belief_propagation(graph, beta=beta, **options)``: sum-product on a batch
    (see :func:`batch_belief_propagation`)."""
    return batch_belief_propagation(graph, beta=beta, **options)


# --------------------------------------------------------------------------- inputs
def _form(value, what: str) -> str:
    """How an ``evidence`` or ``unary`` argument is given: "none", "shared" (one for every
    item), "mappings" (a sequence of per-item mappings or None) or "rows" (an array of
    per-item rows, ``unary`` only)."""
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return "shared"
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, Mapping)
                                                for v in value):
        return "mappings"
    if what == "evidence":
        raise FactorGraphError(
            f"evidence must be a mapping (variable name -> state) or a sequence of them "
            f"(one per item, None for none), got {type(value).__name__}"
        )
    return "rows" if np.ndim(value) == 2 else "shared"


def _batch_size(energies, evidence, unary) -> int:
    """B: the length of whichever argument is given per item (they must agree), else 1."""
    sizes = {}
    if energies is not None and np.ndim(energies) == 2:
        sizes["energies"] = len(energies)
    if _form(evidence, "evidence") == "mappings":
        sizes["evidence"] = len(evidence)
    if _form(unary, "unary") in ("mappings", "rows"):
        sizes["unary"] = len(unary)
    if len(set(sizes.values())) > 1:
        told = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise FactorGraphError(f"batch sizes disagree ({told}); give one item per row")
    n = next(iter(sizes.values()), 1)
    if n < 1:
        raise FactorGraphError("an empty batch: give at least one item")
    return n


def _checked_energies(cg, energies, n):
    """(R, M) read-only energy rows (R = 1 or n) and each item's row, (n,) int64."""
    if energies is None:
        thetas = cg.energies[None]
    elif np.ndim(energies) == 2:
        thetas = np.ascontiguousarray(V.real_array(energies, "energies", copy=False))
        if thetas.shape[1] != cg.n_energy_entries:
            raise FactorGraphError(
                f"energies must have shape (B, {cg.n_energy_entries}) (all factor tables, "
                f"flattened in factor order, one row per item), got {thetas.shape}"
            )
        bad = np.argwhere(np.isnan(thetas) | (thetas == -np.inf))
        if len(bad):
            b, j = (int(x) for x in bad[0])
            raise FactorGraphError(
                f"item {b}: energies[{b}, {j}] (factor {cg.factor_of_entry(j)}) is "
                f"{thetas[b, j]}; energies must be finite or +inf"
            )
    else:
        thetas = single.checked_energy_vector(cg, energies)[None]
    thetas = thetas.view()
    thetas.flags.writeable = False  # the type of single calls' energies: no new compilation
    rows = np.zeros(n, dtype=np.int64) if len(thetas) == 1 else np.arange(n, dtype=np.int64)
    return thetas, rows


def _checked_unaries(graph, cg, thetas, rows, evidence, unary, n):
    """(n, S) per-state energies of every item (evidence plus soft evidence, as single
    calls make them), and whether soft evidence was given."""
    n_entries = int(cg.state_offset[-1])
    if evidence is None and unary is None:
        return np.zeros((n, n_entries)), False
    form = _form(unary, "unary")
    if form == "shared":
        shared = single.checked_unary(graph, cg, unary)
        soft = [shared] * n
    elif form == "rows":
        table = V.real_array(unary, "unary energies")
        if table.shape != (n, n_entries):
            raise FactorGraphError(
                f"unary must have shape ({n}, {n_entries}) (every variable's states, one "
                f"row per item), got {table.shape}"
            )
        soft = [_item(b, single.checked_unary, graph, cg, table[b]) for b in range(n)]
    elif form == "mappings":
        soft = [np.zeros(n_entries) if u is None else
                _item(b, single.checked_unary, graph, cg, u) for b, u in enumerate(unary)]
    per_item = _form(evidence, "evidence") == "mappings"
    units = np.empty((n, n_entries))
    for b in range(n):
        given = evidence[b] if per_item else evidence
        units[b] = _item(b, _evidence_unary, graph, cg, thetas[rows[b]], given)
        if form != "none":
            units[b] += soft[b]
    return units, form != "none"


def _evidence_unary(graph, cg, theta, evidence) -> np.ndarray:
    """The flat unary energies of ``evidence`` (a mapping or None), as a single call's."""
    return single._evidence_unary(graph, cg, theta, single._observed_states(graph, cg, evidence))


def _item(b, check, *args):
    """``check(*args)``, its FactorGraphError (or subclass) naming item ``b``."""
    try:
        return check(*args)
    except FactorGraphError as exc:
        raise type(exc)(f"item {b}: {exc}") from None


def _exact_plans(graph, cg, units, method, memory_limit):
    """Each item's junction-tree plan (None: not the junction tree), one per distinct set
    of clamped states; or None when no item runs the junction tree."""
    if method in ("bp", "trws") or (method == "auto" and cg.is_forest):
        return None
    plans, by_key = [], {}
    for b in range(len(units)):
        key = X.clamped_states(cg, units[b]).tobytes()
        if key not in by_key:
            by_key[key] = _item(b, single._exact_plan_for, graph, cg, units[b], method,
                                memory_limit)
        plans.append(by_key[key])
    return plans


# --------------------------------------------------------------------------- BP
def _bp_batch(graph, cg, thetas, rows, units, has_soft, temperature, absorb, started,
              options):
    """BP on every item (see :func:`batch_belief_propagation`), as ``inference._run_bp``
    and the absorption of repeated and nested scopes of single calls."""
    reduction = reduce_factors(graph) if absorb else None
    if reduction is None:
        return _run_bp_batch(graph, cg, thetas, rows, units, has_soft, temperature, started,
                             **options)
    small = reduction.graph
    small_cg = small.compile()
    small_thetas = np.stack([reduction.energies(t) for t in thetas])
    inner = _run_bp_batch(small, small_cg, small_thetas, rows, units, has_soft, temperature,
                          started, **options)
    out = []
    for b, r in enumerate(inner):
        energy = single._energy(cg, thetas[rows[b]], units[b] if has_soft else None, r.assignment)
        out.append(r.replace(
            graph=graph,
            energy=energy,
            **single._exact_certificate(temperature, r.exact, energy),
            free_energy=energy if temperature == 0.0 else r.free_energy,
            factor_beliefs=single.original_factor_beliefs(reduction, cg, small_cg, r,
                                                          temperature),
        ))
    return out


def _run_bp_batch(graph, cg, thetas, rows, units, has_soft, temperature, started, *,
                  schedule, max_iter, tol, damping, warn, factor_beliefs, free_energy,
                  check_sweep, threads, defer_factor_beliefs) -> list:
    """``inference._run_bp`` on every item: the items' kernels in parallel."""
    n = len(rows)
    if schedule == "auto":
        schedule = "tree" if cg.is_forest else "sequential"
    if schedule == "tree" and not cg.is_forest:
        raise FactorGraphError(
            "schedule='tree' needs a forest, but this factor graph has a cycle; "
            "use 'parallel' or 'sequential'"
        )
    if drop_isolated(cg)[1] is not None or schedule not in BATCHED_SCHEDULES:
        # Rare (an isolated variable larger than every other), or a schedule without a
        # batched driver: the single calls' runner, item by item.
        return [single._run_bp(graph, cg, thetas[rows[b]], units[b], units[b] if has_soft else None,
                          temperature, started, schedule=schedule, max_iter=max_iter, tol=tol,
                          damping=damping, init_messages=None, messages_checked=False, warn=warn,
                          factor_beliefs=factor_beliefs, free_energy=free_energy,
                          check_sweep=check_sweep, n_threads=None, callback=None,
                          defer_factor_beliefs=defer_factor_beliefs)
                for b in range(n)]
    kinds = _kinds_rows(cg, thetas)
    orders, classes = _orders(cg, kinds, len(thetas), temperature, schedule == "sequential")
    e, s = cg.n_message_entries, int(cg.state_offset[-1])
    f2v, v2f = np.zeros((n, e)), np.zeros((n, e))
    work = K.scratch(cg, rows=n)
    free = K.unclamped(cg)
    totals = schedule in ("parallel", "sequential") or (schedule == "tree" and check_sweep)
    total = np.empty((n, s) if totals else (n, 0))
    n_inf = np.empty((n, s) if totals else (n, 0), dtype=np.int32)
    common = (cg, thetas, rows, kinds, cg.factor_param, units, f2v, v2f, temperature)
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None:  # the threshold of single calls' flooding, over the whole batch
        threads = limit if n * cg.n_message_entries > S.THREADED_ENTRIES else 1
    n_threads = min(threads, limit)
    bethe = temperature > 0.0 and free_energy
    store = factor_beliefs and (bethe or not defer_factor_beliefs)  # as inference._run_bp
    loopy = schedule != "tree"
    ends = _Ends(cg, n, store, bethe)
    decode_order = single._decode_order(graph, cg, cg)
    n_iter = np.zeros(n, dtype=np.int64) if loopy else np.ones(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    histories: list = [None] * n
    residual = np.zeros(n)
    steps = min(max_iter, 32) if loopy else 1  # a guess of the iterations, for the first group

    # Groups of items, each run to its end (iterations, decoding, energies, beliefs) before
    # the next: an item's arrays stay in cache through its iterations and its end, as in a
    # single call. Before, every paced chunk of iterations ran every item, so on 1,000
    # grids of 20 x 20 (K=8) each item came back from memory once per iteration.
    with S._threads(n_threads):
        for lo, hi in paced(n, first=_first(n_threads, e * steps), least=n_threads):
            if loopy:
                _iterate(common, free, work, schedule == "sequential", orders, classes, total,
                         n_inf, damping, tol, max_iter, lo, hi, n_iter, active, histories)
            else:
                _tree_items(*common, free, work, check_sweep, orders, classes, total,
                            n_inf, residual, np.int64(lo), np.int64(hi))
            _decode_items(*common, work, decode_order, ends.var_raw, ends.n_inf,
                          ends.assignment, np.int64(lo), np.int64(hi))
            ends.energy[lo:hi] = _energies(cg, thetas, rows, units if has_soft else None,
                                           ends.assignment, lo, hi)
            if temperature == 0.0:
                # As inference._run_bp: absolute min-marginals where the energy is finite
                # (or the graph a forest).
                part = ends.energy[lo:hi]
                ends.shift[lo:hi] = np.where(np.isfinite(part) | cg.is_forest, part, 0.0)
            ends.beliefs(common, work, temperature, np.int64(lo), np.int64(hi))
    if loopy:
        converged = ~active
    else:
        converged = np.ones(n, dtype=bool)
        histories = [residual[b : b + 1] for b in range(n)]
    energy, assignment, var_raw = ends.energy, ends.assignment, ends.var_raw
    exact = cg.is_forest & converged
    finite = np.isfinite(energy)
    if bethe:
        free_energies = ends.factor_part + ends.var_part
        log_partitions = -free_energies / temperature

    if warn and not converged.all():
        k = int((~converged).sum())
        warnings.warn(
            f"belief propagation ({schedule} schedule) did not converge in {max_iter} "
            f"iterations for {k} of {n} items (first: item {int(np.argmin(converged))}); "
            "try damping=0.5 or more iterations",
            ConvergenceWarning,
            stacklevel=4,
        )
    unproven = ~finite & ~exact
    if warn and unproven.any():
        warnings.warn(
            f"belief propagation decoded an assignment of energy +inf for "
            f"{int(unproven.sum())} of {n} items (first: item {int(np.argmax(unproven))}), "
            "and the model is not proven infeasible; try method='exact' (if the junction "
            "tree fits) or another schedule",
            NoFiniteAssignmentWarning,
            stacklevel=4,
        )

    beta = math.inf if temperature == 0.0 else 1.0 / temperature
    messages = single._read_only(f2v)  # deferred factor beliefs read f2v itself
    out = []
    for b in range(n):
        e_b = float(energy[b])
        if temperature == 0.0:
            free_b, log_z = e_b, None
        elif bethe:
            free_b, log_z = float(free_energies[b]), float(log_partitions[b])
        else:
            free_b, log_z = None, None
        if not factor_beliefs:
            beliefs = None
        elif store:
            beliefs = ends.fac_raw[b]
        else:
            beliefs = Deferred(K.normalized_factor_beliefs, cg, thetas[rows[b]], units[b],
                               f2v[b], temperature, float(ends.shift[b]))
        out.append(InferenceResult(
            graph=graph,
            beta=beta,
            assignment=assignment[b],
            energy=e_b,
            variable_beliefs=var_raw[b],
            factor_beliefs=beliefs,
            free_energy=free_b,
            log_partition=log_z,
            converged=bool(converged[b]),
            n_iter=int(n_iter[b]),
            residuals=histories[b],
            messages=messages[b],
            schedule=schedule,
            exact=bool(exact[b]),
            seconds=0.0,
            method="bp",
            feasible=True if finite[b] else (False if exact[b] else None),
            **single._exact_certificate(temperature, bool(exact[b]), e_b),
        ))
    return out


def _first(least: int, entries_per_step: int) -> int:
    """Steps of the first paced chunk: about FIRST_CHUNK_ENTRIES message entries, at least
    ``least``."""
    return max(least, FIRST_CHUNK_ENTRIES // max(entries_per_step, 1))


def _kinds_rows(cg, thetas):
    """The factor kinds of each energy row, (R, F) read-only (``inference.factor_kinds``),
    or None for a plain graph (the kernels' lean specialization)."""
    if not cg.factor_kind.any():
        if cg.max_arity <= 2:
            return None
        kinds = np.broadcast_to(cg.factor_kind, (len(thetas), cg.n_factors)).copy()
    else:
        kinds = np.stack([single.factor_kinds(cg, t) for t in thetas])
        if cg.max_arity <= 2 and not kinds.any():
            return None
    kinds.flags.writeable = False
    return kinds


def _orders(cg, kinds, n_rows, temperature, sequential):
    """The factor order of each energy row, (R, F) read-only, and its flooding classes
    (R, 5) (:func:`~factorgraph_ebm.schedules.flood_order`)."""
    if sequential:
        orders = np.broadcast_to(S.sequential_order(cg), (n_rows, cg.n_factors)).copy()
        classes = np.zeros((n_rows, 5), dtype=np.int64)
    else:
        pairs = [S.flood_order(cg, None if kinds is None else kinds[r], temperature)
                 for r in range(n_rows)]
        orders = np.stack([p[0] for p in pairs])
        classes = np.stack([p[1] for p in pairs])
    orders.flags.writeable = False  # read-only, as the orders of single calls
    return orders, classes


def _iterate(common, free, work, sequential, orders, classes, total, n_inf, damping, tol,
             max_iter, lo, hi, n_iter, active, histories):
    """The loopy schedule on items lo..hi-1, in paced chunks of iterations (as
    :func:`~factorgraph_ebm.schedules.iterate`, each item stopping at its convergence):
    adds their iterations to ``n_iter``, clears ``active`` where they converged, and puts
    their residual histories in ``histories``."""
    size = hi - lo
    done = np.zeros(len(n_iter), dtype=np.int64)
    kept: list[list] = [[] for _ in range(size)]
    n_kept = np.zeros(size, dtype=np.int64)
    for s_lo, s_hi in paced(max_iter, first=_first(1, size * common[0].n_message_entries)):
        residuals = np.empty((size, s_hi - s_lo))
        _loopy_items(*common, damping, tol, sequential, orders, classes, free, work, total,
                     n_inf, active, n_iter, done, residuals, np.int64(lo), np.int64(hi))
        for j in np.flatnonzero(done[lo:hi]):
            kept[j].append(residuals[j, : done[lo + j]])
            n_kept[j] += done[lo + j]
            if n_kept[j] > 2 * S.MAX_RESIDUALS:
                kept[j] = [np.concatenate(kept[j])[-S.MAX_RESIDUALS:]]
                n_kept[j] = S.MAX_RESIDUALS
        n_iter[lo:hi] += done[lo:hi]
        if not active[lo:hi].any():
            break
    for j in range(size):
        histories[lo + j] = np.concatenate(kept[j])[-S.MAX_RESIDUALS:]


class _Ends:
    """What every item's end produces (as ``inference._run_bp`` after its schedule), and
    the scratch of its beliefs (one row per item): the decoded assignments, their energies
    and the beliefs' shifts, the variable beliefs, and, with ``store``, the normalized
    factor beliefs; the factors' and variables' Bethe terms with ``bethe``."""

    def __init__(self, cg, n, store, bethe):
        self.store, self.bethe = store, bethe
        n_total = int(cg.state_offset[-1])
        self.assignment = np.empty((n, cg.n_variables), dtype=np.int64)
        self.energy = np.empty(n)
        self.shift = np.zeros(n)
        self.var_raw = np.empty((n, n_total))
        self.n_inf = np.empty((n, n_total), dtype=np.int8)
        self.fac_raw = np.empty((n, cg.n_energy_entries if store else 0))
        # The scratch of messages.factor_beliefs, per item.
        tables = store or bethe
        largest = 0 if store or not tables else int(np.diff(cg.table_offset).max(initial=0))
        largest_compact = 0
        if bethe:
            first = cg.scope_ptr[cg.compact_factors()]
            largest_compact = int((cg.n_states[cg.scope_vars[first]]
                                   * cg.n_states[cg.scope_vars[first + 1]]).max(initial=0))
        self.tables = (np.empty((n, largest)), np.empty((n, largest_compact)),
                       np.empty((n, largest_compact)),
                       np.empty((n, max(cg.max_arity, 1) * cg.max_states if tables else 0)))
        self.factor_part, self.var_part = np.zeros(n), np.zeros(n)

    def beliefs(self, common, work, temperature, lo, hi):
        """Items lo..hi-1 (decoded, with their shifts): :func:`_belief_items`."""
        cg, thetas, rows, _, _, unary, f2v = common[:7]
        _belief_items(cg, thetas, rows, unary, f2v, temperature, self.bethe, self.store,
                      self.shift, self.var_raw, self.n_inf, self.fac_raw, *self.tables,
                      work.counter, self.factor_part, self.var_part, lo, hi)


def _energies(cg, thetas, rows, soft, assignment, lo, hi) -> np.ndarray:
    """E(assignment) of items lo..hi-1 (``inference._energy``), one kernel call per
    energy row."""
    energy = np.empty(hi - lo)
    part = rows[lo:hi]
    for r in np.unique(part):
        chosen = np.flatnonzero(part == r)
        energy[chosen] = energies_of(cg, thetas[r], assignment[lo + chosen])
    if soft is not None:
        for j in range(hi - lo):
            energy[j] += float(soft[lo + j][cg.state_offset[:-1] + assignment[lo + j]].sum())
    return energy


# --------------------------------------------------------------------------- kernels
@njit(inline="always", **NJIT_OPTIONS)
def _kinds_of(kinds, r):
    """Row ``r`` of the kinds, or None for a plain graph (pruned at compile time)."""
    if kinds is None:
        return None
    return kinds[r]


@njit(inline="always", **NJIT_OPTIONS)
def _scratch_of(work, b):
    """Item ``b``'s :class:`~factorgraph_ebm.messages.Scratch` (row b of each array)."""
    return K.Scratch(work.counter[b], work.lowest[b], work.score[b], work.new[b], work.inc[b],
                     work.env_v[b], work.env_z[b], work.lows[b])


@njit(inline="always", **NJIT_OPTIONS)
def _flood_once(cg, theta, kinds, params, unary, f2v, v2f, temperature, damping, order,
                classes, start, free, w, total, n_inf):
    """One flooding iteration of one item: the kernel calls of
    :class:`~factorgraph_ebm.schedules.Flooding` (``flood_factors`` makes them by class),
    from factor ``order[start]`` (``classes[1]`` skips the unary factors, as Flooding does
    once their messages are fixed)."""
    n_infinite = K.variable_totals(unary, cg.n_states, cg.state_offset, cg.var_edge_ptr,
                                   cg.var_edges, cg.msg_offset, np.int64(0),
                                   np.int64(len(cg.n_states)), f2v, total, n_inf)
    mode = np.int64(K.MODE_FUSED_FINITE) if n_infinite == 0 else np.int64(K.MODE_FUSED)
    return K.flood_factors(
        theta, kinds, params, unary, cg.n_states, cg.state_offset, cg.scope_ptr,
        cg.scope_vars, cg.edge_stride, cg.msg_offset, cg.table_offset, cg.var_edge_ptr,
        cg.var_edges, order, classes, start, np.int64(len(order)), mode, f2v, v2f,
        total, n_inf, temperature, damping, free, w.counter, w.lowest, w.new, w.inc, w.env_v,
        w.env_z, w.lows,
    )


@njit(**PARALLEL_OPTIONS)
def _tree_items(cg, thetas, rows, kinds, params, unary, f2v, v2f, temperature, free, work,
                check, orders, classes, total, n_inf, residual, lo, hi):
    """Items lo..hi-1: the exact two-pass schedule (:func:`messages.run_two_pass`), then,
    with ``check``, one flooding sweep whose change goes to ``residual[b]`` (as single
    calls)."""
    for b in prange(lo, hi):
        r = rows[b]
        theta = thetas[r]
        k = _kinds_of(kinds, r)
        w = _scratch_of(work, b)
        K.run_two_pass(cg, theta, k, params, unary[b], f2v[b], v2f[b], temperature, free, w)
        if check:
            residual[b] = _flood_once(cg, theta, k, params, unary[b], f2v[b], v2f[b],
                                      temperature, 0.0, orders[r], classes[r], np.int64(0),
                                      free, w, total[b], n_inf[b])


@njit(**PARALLEL_OPTIONS)
def _loopy_items(cg, thetas, rows, kinds, params, unary, f2v, v2f, temperature, damping, tol,
                 sequential, orders, classes, free, work, total, n_inf, active, n_iter, done,
                 residuals, lo, hi):
    """Up to ``residuals.shape[1]`` iterations of every active item b of lo..hi-1
    (``active[b]``; ``n_iter[b]`` done before), each stopping after its first iteration
    whose largest message change (``residuals[b - lo, t]``) is at most ``tol`` (then
    ``active[b] = False``); ``done[b]``: its iterations in this call (:func:`_loopy_item`).
    """
    for b in prange(lo, hi):
        done[b] = 0
        if not active[b]:
            continue
        r = rows[b]
        steps, converged = _loopy_item(
            cg, thetas[r], _kinds_of(kinds, r), params, unary[b], f2v[b], v2f[b], temperature,
            damping, tol, sequential, orders[r], classes[r], free, _scratch_of(work, b),
            total[b], n_inf[b], n_iter[b], residuals[b - lo])
        done[b] = steps
        if converged:
            active[b] = False


@njit(**NJIT_OPTIONS)
def _loopy_item(cg, theta, kinds, params, unary, f2v, v2f, temperature, damping, tol,
                sequential, order, classes, free, w, total, n_inf, n_before, residuals):
    """Up to ``len(residuals)`` iterations of one item that did ``n_before`` already,
    stopping after the first whose largest change is at most ``tol``; returns (iterations
    done, converged). Sequential: :func:`messages.sequential_sweep`, as
    :class:`~factorgraph_ebm.schedules.Sequential`; else flooding, as
    :class:`~factorgraph_ebm.schedules.Flooding` (both undamped without the unary factors
    after the item's first iteration: their messages are fixed).

    A function of its own, called from the ``prange`` loop: written in that loop's body, the
    same iterations compiled 19% slower (a 20 x 20 grid, K=2, sum-product, one thread:
    43.5 against 36.5 ms per iteration of 200 items, and 1.25 -> 1.08 s for the batch)."""
    for it in range(len(residuals)):
        if sequential:
            # Undamped, the unary messages are fixed after the item's first sweep.
            skip_unary = damping == 0.0 and n_before + it > 0
            change = K.sequential_sweep(
                theta, kinds, params, unary, cg.n_states, cg.state_offset, cg.scope_ptr,
                cg.scope_vars, cg.edge_stride, cg.msg_offset, cg.table_offset,
                cg.var_edge_ptr, cg.var_edges, order, skip_unary, f2v, v2f, total, n_inf,
                temperature, damping, free, w.counter, w.lowest, w.new, w.inc, w.env_v,
                w.env_z, w.lows,
            )
        else:
            start = np.int64(0)
            if damping == 0.0 and n_before + it > 0:
                start = classes[1]
            change = _flood_once(cg, theta, kinds, params, unary, f2v, v2f, temperature,
                                 damping, order, classes, start, free, w, total, n_inf)
        residuals[it] = change
        if change <= tol:
            return it + 1, True
    return len(residuals), False


@njit(**PARALLEL_OPTIONS)
def _decode_items(cg, thetas, rows, kinds, params, unary, f2v, v2f, temperature, work, order,
                  var_total, n_inf, assignment, lo, hi):
    """Items lo..hi-1, as single calls: the variables' totals
    (:func:`messages.belief_totals`, into ``var_total`` and ``n_inf``), then
    :func:`messages.decode` in ``order`` (``inference._decode_order``), from the
    factor-to-variable messages and those totals (no final variable sweep)."""
    for b in prange(lo, hi):
        r = rows[b]
        K.belief_totals(cg, unary[b], f2v[b], var_total[b], n_inf[b])
        K.decode(cg, thetas[r], _kinds_of(kinds, r), params, unary[b], v2f[b], f2v[b],
                 var_total[b], n_inf[b], order, temperature, assignment[b],
                 _scratch_of(work, b))


@njit(**PARALLEL_OPTIONS)
def _belief_items(cg, thetas, rows, unary, f2v, temperature, bethe, store, shift, var_raw,
                  n_inf, fac_raw, fac_scratch, compact_beliefs, compact_table, incoming,
                  counter, factor_part, var_part, lo, hi):
    """Items lo..hi-1, the kernel calls of ``inference._run_bp`` after decoding, from the
    variables' totals that :func:`_decode_items` left in ``var_raw`` and ``n_inf``: with
    ``store`` or ``bethe`` the factor beliefs normalized in the same pass (stored with
    ``store``) and the factors' Bethe terms (``factor_part[b]``); the raw variable beliefs,
    with ``bethe`` their Bethe terms (``var_part[b]``), then normalized with
    ``shift[b]``."""
    tables = store or bethe
    for b in prange(lo, hi):
        if tables:
            factor_part[b] = _factor_beliefs(
                cg, thetas[rows[b]], f2v[b], var_raw[b], n_inf[b], temperature, bethe, store,
                True, shift[b], fac_raw[b], counter[b], fac_scratch[b], compact_beliefs[b],
                compact_table[b], incoming[b])
        K.beliefs_from_totals(var_raw[b], n_inf[b])
        if bethe:
            var_part[b] = K.variable_bethe_terms(cg, unary[b], var_raw[b], temperature)
        K.normalize_segments(var_raw[b], cg.state_offset, temperature, shift[b], var_raw[b])
