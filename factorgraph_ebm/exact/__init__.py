"""Exact inference by junction tree (bucket elimination with a downward pass), in both
semirings at temperature T = 1/beta: the exact minimum energy, a joint minimum and absolute
min-marginals (T = 0), or exact marginals, factor marginals and ln Z (T > 0).

- :mod:`.order`: greedy min-fill / min-weight elimination orders and the junction tree they
  give (the elimination tree, non-maximal cliques merged), sized before allocating;
- :mod:`.junction_tree`: the tree as flat arrays, each clique table walked in blocks;
- :mod:`.kernels`: the Numba passes (collect; decode; distribute, which also gives the
  variable and factor beliefs).

Variables whose unary energies allow a single state (evidence, or one-state variables) are
clamped: they leave the interaction graph, and the factors' tables are indexed at their
states. Factors on the same scope, or on a scope inside another's, simply land in the same
clique: no preprocessing is needed for exactness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._config import NJIT_OPTIONS, njit
from ..structured import dense_tables
from . import kernels
from .junction_tree import JunctionTree, build_junction_tree
from .order import EliminationPlan, plan_elimination

#: Default memory budget of exact inference, bytes (a quarter of a 16-24 GB machine's RAM).
DEFAULT_MAX_BYTES = 4 * 2**30
#: How much searching for an elimination order ``method="auto"`` allows before it runs BP
#: instead, in neighbour visits (:func:`plan_elimination`'s ``max_work``): 1-3 s of Python
#: on a 328x400 grid; every development instance of the UAI set plans within 1e6.
AUTO_MAX_WORK = 2e6

__all__ = [
    "AUTO_MAX_WORK",
    "DEFAULT_MAX_BYTES",
    "ExactPlan",
    "EliminationPlan",
    "JunctionTree",
    "exact_plan",
    "plan_elimination",
    "run_exact",
]


@dataclass(frozen=True)
class ExactPlan:
    """What exact inference on one graph, with one set of clamped variables, needs.

    Attributes
    ----------
    elimination : EliminationPlan
    clamped : ndarray of shape (V,), dtype=int64
        The clamped state of each variable, -1 for a free one.
    memory_bytes : float
        Bytes that :func:`run_exact` allocates (clique, separator and factor-belief tables);
        a lower bound when the order search stopped early.
    max_bytes : float
        The budget the plan was made for.
    """

    elimination: EliminationPlan
    clamped: np.ndarray
    memory_bytes: float
    max_bytes: float

    @property
    def fits(self) -> bool:
        """Whether exact inference fits ``max_bytes``."""
        return self.elimination.fits and self.memory_bytes <= self.max_bytes

    def describe(self) -> str:
        """One line: induced width, largest clique table, memory and the budget."""
        e = self.elimination
        if e.gave_up:
            return ("no elimination order found within the search budget (a large graph; "
                    "method='exact' searches without one)")
        width = "at least " if not e.fits else ""
        return (f"induced width {width}{e.induced_width} (min-fill), largest clique table "
                f"{e.largest_table:.4g} entries, {'at least ' if not e.fits else ''}"
                f"{self.memory_bytes / 2**20:.4g} MiB of tables (budget "
                f"{self.max_bytes / 2**20:.4g} MiB)")


def clamped_states(cg, unary) -> np.ndarray:
    """The state of each variable whose unary energies allow exactly one state, else -1.

    Parameters
    ----------
    cg : CompiledGraph
    unary : ndarray of shape (S,), dtype=float64
        Per-state unary energies (evidence is +inf at every state but the observed one).

    Returns
    -------
    ndarray of shape (V,), dtype=int64
    """
    clamped = np.empty(cg.n_variables, dtype=np.int64)
    _clamped_states(unary, cg.state_offset, clamped)
    return clamped


@njit(**NJIT_OPTIONS)
def _clamped_states(unary, state_offset, out):
    """:func:`clamped_states` into ``out``; in Numba, as it runs on every call (seven NumPy
    calls took 10-15 us on a 5-variable model)."""
    for v in range(len(out)):
        state = -1
        for x in range(state_offset[v], state_offset[v + 1]):
            if np.isfinite(unary[x]):
                if state != -1:
                    state = -1
                    break
                state = x - state_offset[v]
        out[v] = state


def exact_plan(graph, cg, unary, max_bytes: float = DEFAULT_MAX_BYTES,
               max_work: float = math.inf) -> ExactPlan:
    """Plan exact inference (cached on ``graph`` per compiled structure and clamped set).

    Parameters
    ----------
    graph : FactorGraph
    cg : CompiledGraph
        ``graph.compile()``.
    unary : ndarray of shape (S,), dtype=float64
        Evidence as unary energies.
    max_bytes : float
        Memory budget; the elimination stops early once the tables exceed it.
    max_work : float, default=inf
        Budget of the order search (see :func:`plan_elimination`).

    Returns
    -------
    ExactPlan
    """
    clamped = clamped_states(cg, unary)
    key = (id(cg), clamped.tobytes(), float(max_bytes), float(max_work))
    cache = graph.__dict__.setdefault("_exact_plans", {})
    if cache.get("cg") is not cg:
        cache.clear()
        cache["cg"] = cg
    if key in cache:
        return cache[key]
    n_extra = _dense_table_entries(cg) + int(cg.state_offset[-1])
    budget = max(max_bytes / 8.0 - n_extra, 0.0)
    free = clamped < 0
    elimination = plan_elimination(cg.n_states, cg.scope_ptr, cg.scope_vars, free,
                                   max_entries=budget, max_work=max_work)
    memory = elimination.memory_bytes(n_extra)
    if len(elimination.order) < int(np.count_nonzero(free)):
        # A search stopped early: merging non-maximal cliques could at most halve what
        # it found, so half of it is what the whole tree needs at least.
        memory = (memory - 8.0 * n_extra) / 2.0 + 8.0 * n_extra
    plan = ExactPlan(elimination, clamped, memory, float(max_bytes))
    if len(cache) > 16:  # a training loop with many evidence sets: keep memory bounded
        cache.clear()
        cache["cg"] = cg
    cache[key] = plan
    return plan


def _dense_table_entries(cg) -> int:
    """Entries of theta with the compact factors' tables materialized."""
    return int(_dense_offsets(cg)[-1])


def _dense_offsets(cg) -> np.ndarray:
    """Where every factor's dense table starts when the compact structured factors' tables
    (K x K) follow theta in factor order; ``cg.table_offset`` when there are none."""
    compact = cg.compact_factors()
    if not len(compact):
        return cg.table_offset
    offsets = cg.table_offset.copy()
    position = cg.n_energy_entries
    for a in compact:
        offsets[a] = position
        position += int(cg.n_states[cg.scope_vars[cg.scope_ptr[a]]]) ** 2
    offsets[-1] = position
    return offsets


def _dense_energies(cg, theta) -> np.ndarray:
    """theta with the compact structured factors' tables appended (see _dense_offsets)."""
    compact = cg.compact_factors()
    if not len(compact):
        return theta
    chunks = [theta]
    for a in compact:
        k = int(cg.n_states[cg.scope_vars[cg.scope_ptr[a]]])
        table = dense_tables(int(cg.factor_kind[a]), cg.factor_param[a:a + 1], k, False)
        chunks.append(np.ascontiguousarray(table[0], dtype=np.float64).reshape(-1))
    return np.concatenate(chunks)


@dataclass(frozen=True)
class ExactAnswer:
    """The raw figures of one exact run (see :func:`run_exact`)."""

    assignment: np.ndarray
    free_energy: float
    variable_beliefs: np.ndarray
    factor_beliefs: np.ndarray | None


def run_exact(cg, theta, unary, temperature: float, plan: ExactPlan,
              factor_beliefs: bool = True) -> ExactAnswer:
    """Exact inference with a fitting plan.

    Parameters
    ----------
    cg : CompiledGraph
    theta : ndarray of shape (M,), dtype=float64
        Validated energy vector (finite or +inf).
    unary : ndarray of shape (S,), dtype=float64
        Validated unary energies (evidence).
    temperature : float
        T = 1/beta >= 0; 0 is min-sum.
    plan : ExactPlan
        From :func:`exact_plan` with the same ``unary``; ``plan.fits`` must hold.
    factor_beliefs : bool, default=True
        Compute the factor beliefs (laid out as theta).

    Returns
    -------
    ExactAnswer
        ``assignment`` (int64, (V,)): a joint minimum at T = 0, ties to the lowest state of
        each variable in reverse elimination order; at T > 0 each variable in that order
        takes its most probable state given those before. ``free_energy``: the exact
        F = -T ln Z (the minimum energy at T = 0; ``+inf`` when the model is infeasible).
        ``variable_beliefs`` (S,) and ``factor_beliefs`` (M,): absolute min-marginals at
        T = 0, probabilities at T > 0.
    """
    layout = _layout_of(cg, plan)
    tree = layout.tree
    # theta itself unless compact factors' tables are to be appended
    dense = theta if layout.n_dense_entries == len(theta) else _dense_energies(cg, theta)
    psi = np.zeros(int(tree.table_offset[-1]))
    up = np.empty(int(tree.sep_offset[-1]))
    kernels.collect(tree, dense, unary, cg.state_offset, temperature, psi, up)

    clamped = plan.clamped
    constant = float(dense[layout.constant_base].sum() + unary[layout.clamped_positions].sum())
    free = constant + float(up[layout.roots].sum())

    assignment = np.maximum(clamped, 0)  # the clamped states, 0 where free (decode's)
    kernels.decode(tree, psi, temperature, assignment)

    n_states_total = int(cg.state_offset[-1])
    sure = np.inf if temperature == 0.0 else 0.0  # "ruled out", in each semiring
    if free == np.inf:  # infeasible: every belief is +inf (T = 0) or 0 (T > 0)
        var_out = np.full(n_states_total, sure)
        fac = np.full(cg.n_energy_entries, sure) if factor_beliefs else None
        return ExactAnswer(assignment, free, var_out, fac)

    # What a root's belief lacks: at T = 0 the whole free energy (the constant and the
    # other components' minima); at T > 0 nothing (its probability is exp(-psi / T)).
    up[layout.roots] = free if temperature == 0.0 else 1.0
    certain = free if temperature == 0.0 else 1.0  # a clamped state, a constant factor
    var_out = np.empty(n_states_total)
    fac = np.full(layout.n_dense_entries if factor_beliefs else 0, sure)
    kernels.distribute(tree, temperature, psi, up, cg.state_offset, var_out, fac,
                       factor_beliefs)
    del psi, up
    if len(layout.clamped_positions):
        var_out[layout.clamped_states_mask] = sure
        var_out[layout.clamped_positions] = certain
    if factor_beliefs:
        fac[layout.constant_base] = certain
        fac = fac[: cg.n_energy_entries]
    else:
        fac = None
    if temperature > 0.0:  # sums of probabilities: exactly 1 after rounding
        kernels.normalize_sums(var_out, cg.state_offset)
        if fac is not None:
            kernels.normalize_sums(fac, cg.table_offset)
    return ExactAnswer(assignment, free, var_out, fac)


class _Layout(NamedTuple):
    """What :func:`run_exact` needs of a plan besides the energies, built once per plan."""

    tree: JunctionTree
    constant_base: np.ndarray  # theta index of each constant factor's entry (clamped)
    roots: np.ndarray  # positions of the roots' separators (one entry each) in ``up``
    clamped_positions: np.ndarray  # flat state index of each clamped variable's state
    clamped_states_mask: np.ndarray  # (S,) bool: every state of a clamped variable
    n_dense_entries: int  # theta's entries with the compact factors' tables appended


def _layout_of(cg, plan: ExactPlan) -> _Layout:
    """The junction tree of ``plan`` and the clamped variables' positions (built once per
    plan, which is cached per graph: a repeated call skips all of it)."""
    cached = plan.__dict__.get("_layout")
    if cached is None:
        offsets = _dense_offsets(cg)
        tree, _, constant_base = build_junction_tree(cg, plan.elimination, offsets,
                                                     plan.clamped)
        clamped = plan.clamped
        fixed = np.flatnonzero(clamped >= 0)
        cached = _Layout(
            tree=tree,
            constant_base=constant_base,
            roots=tree.sep_offset[np.flatnonzero(tree.parent < 0)],
            clamped_positions=cg.state_offset[fixed] + clamped[fixed],
            clamped_states_mask=np.repeat(clamped >= 0, cg.n_states),
            n_dense_entries=int(offsets[-1]),
        )
        object.__setattr__(plan, "_layout", cached)
    return cached
