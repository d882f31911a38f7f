"""Arc consistency over the hard constraints (``+inf`` energies), with a trail for undoing.

A state x of variable i is *supported* by a coupling factor a when some entry of a's table
with ``y_i = x`` is finite and has every other variable in a live state. Generalized arc
consistency (Mackworth 1977, AC-3; Bessiere 2006, "Constraint propagation", Handbook of
Constraint Programming, ch. 3) removes unsupported states until every live state is
supported by every factor. It never removes a state of a finite-energy assignment, so an
emptied domain proves that no finite-energy assignment exists.

Support is tested with the min-sum message kernels of :mod:`factorgraph_ebm.messages`: the
message of factor a to variable i computed from *indicator* messages (0 at live states,
``+inf`` at dead ones) is finite exactly at the supported states, for every kind of factor
(dense, Potts, truncated, any arity), so no second table walker is needed.

State of the propagation (:class:`Domains`): ``alive`` (S,) per state; ``size`` (V,) live
states per variable; ``indicator`` (n_message_entries,) the indicator message of every
coupling edge; ``trail`` (S,) the states removed, in order, ``trail_len`` (1,) its length,
so that :func:`restore` undoes removals back to a mark (used by the search of
:mod:`.decode`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._config import NJIT_OPTIONS, njit
from ..messages import edge_message

INF = np.inf


class Domains(NamedTuple):
    """Live states and the trail of removals (see the module docstring)."""

    alive: np.ndarray
    size: np.ndarray
    indicator: np.ndarray
    trail: np.ndarray
    trail_len: np.ndarray
    stack: np.ndarray
    in_stack: np.ndarray


class Scratch(NamedTuple):
    """Work arrays of the message kernels (sizes from the compiled graph)."""

    out: np.ndarray
    counter: np.ndarray
    lowest: np.ndarray
    env_v: np.ndarray
    env_z: np.ndarray
    free: np.ndarray


def scratch_for(cg) -> Scratch:
    """Fresh :class:`Scratch` for graph ``cg``."""
    k = cg.max_states
    return Scratch(
        out=np.empty(k),
        counter=np.zeros(max(cg.max_arity, 1), dtype=np.int64),
        lowest=np.empty(k),
        env_v=np.empty(k + 1, dtype=np.int64),
        env_z=np.empty(k + 2),
        free=np.full(cg.n_variables, -1, dtype=np.int64),
    )


def initial_domains(cg, coupling_edges, node_energy) -> Domains:
    """Domains with every state of finite ``node_energy`` live (nothing propagated)."""
    alive = np.ascontiguousarray(node_energy < INF)
    size = np.zeros(cg.n_variables, dtype=np.int64)
    if len(alive):
        size[:] = np.add.reduceat(alive.astype(np.int64), cg.state_offset[:-1])
    indicator = np.zeros(cg.n_message_entries)
    edge_values(cg, coupling_edges, alive, 0.0, indicator)
    return Domains(
        alive=alive,
        size=size,
        indicator=indicator,
        trail=np.empty(len(alive), dtype=np.int64),
        trail_len=np.zeros(1, dtype=np.int64),
        stack=np.empty(cg.n_variables, dtype=np.int64),
        in_stack=np.zeros(cg.n_variables, dtype=np.bool_),
    )


@njit(**NJIT_OPTIONS)
def edge_values(cg, edges, alive, value, out):
    """For every edge e of ``edges`` and state x of its variable: ``out[msg_offset[e] + x]``
    = ``value`` at live states, ``+inf`` at dead ones."""
    for k in range(len(edges)):
        e = edges[k]
        v = cg.scope_vars[e]
        soff = cg.state_offset[v]
        moff = cg.msg_offset[e]
        for x in range(cg.n_states[v]):
            out[moff + x] = value if alive[soff + x] else INF


@njit(**NJIT_OPTIONS)
def remove_state(cg, coupling_ptr, coupling_edges, dom, v, x):
    """Remove state x of variable v (live): mark it dead, record it on the trail."""
    s = cg.state_offset[v] + x
    dom.alive[s] = False
    dom.size[v] -= 1
    dom.trail[dom.trail_len[0]] = s
    dom.trail_len[0] += 1
    for q in range(coupling_ptr[v], coupling_ptr[v + 1]):
        dom.indicator[cg.msg_offset[coupling_edges[q]] + x] = INF


@njit(**NJIT_OPTIONS)
def restore(cg, coupling_ptr, coupling_edges, state_var, dom, mark):
    """Bring back every state removed since the trail had length ``mark``."""
    while dom.trail_len[0] > mark:
        dom.trail_len[0] -= 1
        s = dom.trail[dom.trail_len[0]]
        v = state_var[s]
        x = s - cg.state_offset[v]
        dom.alive[s] = True
        dom.size[v] += 1
        for q in range(coupling_ptr[v], coupling_ptr[v + 1]):
            dom.indicator[cg.msg_offset[coupling_edges[q]] + x] = 0.0


@njit(**NJIT_OPTIONS)
def propagate(cg, energies, kinds, params, coupling_ptr, coupling_edges, dom, n_stack, sc):
    """Run AC-3 from the variables ``dom.stack[:n_stack]`` (whose domains changed) until
    every live state is supported. Returns False as soon as a domain empties (the stack is
    then cleared; the removals stay on the trail for :func:`restore`)."""
    n_states = cg.n_states
    state_offset = cg.state_offset
    scope_ptr = cg.scope_ptr
    scope_vars = cg.scope_vars
    edge_factor = cg.edge_factor
    while n_stack > 0:
        n_stack -= 1
        j = dom.stack[n_stack]
        dom.in_stack[j] = False
        for q in range(coupling_ptr[j], coupling_ptr[j + 1]):
            a = edge_factor[coupling_edges[q]]
            for t in range(scope_ptr[a], scope_ptr[a + 1]):
                v = scope_vars[t]
                if v == j:
                    continue
                edge_message(
                    energies, kinds, params, n_states, scope_ptr, scope_vars, edge_factor,
                    cg.edge_stride, cg.edge_partner, cg.msg_offset, cg.table_offset,
                    dom.indicator, t, 0.0, sc.free, sc.out, sc.counter, sc.lowest, sc.env_v,
                    sc.env_z,
                )
                changed = False
                soff = state_offset[v]
                for x in range(n_states[v]):
                    if dom.alive[soff + x] and sc.out[x] == INF:
                        remove_state(cg, coupling_ptr, coupling_edges, dom, v, x)
                        changed = True
                if dom.size[v] == 0:
                    for r in range(n_stack):
                        dom.in_stack[dom.stack[r]] = False
                    return False
                if changed and not dom.in_stack[v]:
                    dom.in_stack[v] = True
                    dom.stack[n_stack] = v
                    n_stack += 1
    return True


@njit(**NJIT_OPTIONS)
def enforce_all(cg, energies, kinds, params, coupling_ptr, coupling_edges, dom, sc):
    """Arc consistency from scratch: propagate from every variable. Returns False when a
    domain is (or becomes) empty: no finite-energy assignment exists."""
    n_vars = len(cg.n_states)
    for v in range(n_vars):
        if dom.size[v] == 0:
            return False
    n_stack = 0
    for v in range(n_vars):
        if coupling_ptr[v + 1] > coupling_ptr[v]:
            dom.in_stack[v] = True
            dom.stack[n_stack] = v
            n_stack += 1
    return propagate(cg, energies, kinds, params, coupling_ptr, coupling_edges, dom, n_stack,
                     sc)
