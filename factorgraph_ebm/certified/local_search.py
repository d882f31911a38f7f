"""Local search that only lowers the energy of an assignment: iterated conditional modes,
one variable at a time and one factor's scope at a time.

ICM (Besag 1986, "On the statistical analysis of dirty pictures", JRSS B 48(3)) visits the
variables in turn and moves each to the state of lowest energy given all the others, when
that is strictly lower than its current one; it stops after a sweep without a move (or
after ``max_sweeps``). Block ICM does the same for the joint states of the variables of one
coupling factor (every configuration of its scope; O(deg K + K^2) for a pair). Every move
lowers E(y) by the difference of two conditional energies, so the energy never rises.
"""

from __future__ import annotations

import numpy as np

from .._config import NJIT_OPTIONS, njit
from ..structured import pair_entry

INF = np.inf


@njit(**NJIT_OPTIONS)
def conditional_energies(cg, energies, params, node_energy, coupling_ptr, coupling_edges,
                         assignment, i, out, exclude=-1, exclude2=-1):
    """``out[x]`` = the energy terms that depend on y_i, at y_i = x, with every other
    variable at its state in ``assignment``; without the factors that contain variable
    ``exclude`` or ``exclude2`` (each when >= 0)."""
    n = cg.n_states[i]
    soff = cg.state_offset[i]
    for x in range(n):
        out[x] = node_energy[soff + x]
    for q in range(coupling_ptr[i], coupling_ptr[i + 1]):
        e = coupling_edges[q]
        a = cg.edge_factor[e]
        if (exclude >= 0 and _contains(cg, a, exclude)) or (
                exclude2 >= 0 and _contains(cg, a, exclude2)):
            continue
        toff = cg.table_offset[a]
        if cg.table_offset[a + 1] == toff:  # compact pairwise
            y = assignment[cg.scope_vars[cg.edge_partner[e]]]
            for x in range(n):
                out[x] += pair_entry(cg.factor_kind[a], params[a, 0], params[a, 1], x, y)
            continue
        base = toff
        for t in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
            if t != e:
                base += cg.edge_stride[t] * assignment[cg.scope_vars[t]]
        stride = cg.edge_stride[e]
        for x in range(n):
            out[x] += energies[base + x * stride]


@njit(inline="always", **NJIT_OPTIONS)
def _contains(cg, a, v):
    """Whether variable v is in factor a's scope."""
    for t in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
        if cg.scope_vars[t] == v:
            return True
    return False


@njit(**NJIT_OPTIONS)
def icm(cg, energies, params, node_energy, order, lo, hi, coupling_ptr, coupling_edges,
        assignment):
    """One sweep of iterated conditional modes over ``order[lo:hi]``, in place on
    ``assignment``; returns the number of moves made. (A sweep in slices lets the caller
    check a deadline between them.)"""
    cond = np.empty(cg.max_states)
    moves = 0
    for k in range(lo, hi):
        i = order[k]
        conditional_energies(cg, energies, params, node_energy, coupling_ptr,
                             coupling_edges, assignment, i, cond)
        current = cond[assignment[i]]
        best = assignment[i]
        for x in range(cg.n_states[i]):
            if cond[x] < cond[best]:
                best = x
        if best != assignment[i] and _strictly_lower(cond[best], current):
            assignment[i] = best
            moves += 1
    return moves


@njit(inline="always", **NJIT_OPTIONS)
def _strictly_lower(new, current):
    """A strict gain beyond rounding, so that moves cannot cycle."""
    return new < current and (current == INF or new < current - 1e-12 * (1.0 + abs(current)))


@njit(**NJIT_OPTIONS)
def _entry(cg, energies, params, b, assignment):
    """E_b at the states of ``assignment``."""
    toff = cg.table_offset[b]
    first = cg.scope_ptr[b]
    if cg.table_offset[b + 1] == toff:  # compact pairwise
        return pair_entry(cg.factor_kind[b], params[b, 0], params[b, 1],
                          assignment[cg.scope_vars[first]],
                          assignment[cg.scope_vars[first + 1]])
    index = toff
    for t in range(first, cg.scope_ptr[b + 1]):
        index += cg.edge_stride[t] * assignment[cg.scope_vars[t]]
    return energies[index]


@njit(**NJIT_OPTIONS)
def _block_energy(cg, energies, params, node_energy, coupling_ptr, coupling_edges, a,
                  position, assignment):
    """The energy terms that depend on the variables of factor a's scope (each factor once),
    at ``assignment``; ``position[v]`` is v's place in a's scope, -1 off it."""
    total = 0.0
    first = cg.scope_ptr[a]
    for q in range(first, cg.scope_ptr[a + 1]):
        v = cg.scope_vars[q]
        total += node_energy[cg.state_offset[v] + assignment[v]]
        for r in range(coupling_ptr[v], coupling_ptr[v + 1]):
            b = cg.edge_factor[coupling_edges[r]]
            lowest = q - first
            for t in range(cg.scope_ptr[b], cg.scope_ptr[b + 1]):
                p = position[cg.scope_vars[t]]
                if p >= 0 and p < lowest:
                    lowest = p
            if lowest == q - first:  # counted at its first variable in a's scope
                total += _entry(cg, energies, params, b, assignment)
    return total


@njit(**NJIT_OPTIONS)
def block_icm(cg, energies, params, node_energy, coupling_ptr, coupling_edges, blocks, lo, hi,
              assignment):
    """One sweep of ICM over blocks ``blocks[lo:hi]``: for each factor a in turn, the joint
    states of a's scope of lowest energy given all other variables (every configuration of
    the scope is tried), taken when strictly lower than the current ones. In place on
    ``assignment``; returns the number of moves."""
    position = np.full(len(cg.n_states), -1, dtype=np.int64)
    arity_max = max(cg.max_arity, 1)
    old = np.empty(arity_max, dtype=np.int64)
    best_states = np.empty(arity_max, dtype=np.int64)
    k = cg.max_states
    cond_i, cond_j, joint = np.empty(k), np.empty(k), np.empty(k * k)
    moves = 0
    for k in range(lo, hi):
        a = blocks[k]
        first = cg.scope_ptr[a]
        arity = cg.scope_ptr[a + 1] - first
        if arity == 2:
            outcome = _pair_move(cg, energies, params, node_energy, coupling_ptr,
                                 coupling_edges, a, assignment, cond_i, cond_j, joint)
            moves += outcome == 1
            if outcome >= 0:
                continue
        for q in range(arity):
            v = cg.scope_vars[first + q]
            position[v] = q
            old[q] = assignment[v]
            best_states[q] = old[q]
        current = _block_energy(cg, energies, params, node_energy, coupling_ptr,
                                coupling_edges, a, position, assignment)
        best = current
        for q in range(arity):
            assignment[cg.scope_vars[first + q]] = 0
        while True:
            energy = _block_energy(cg, energies, params, node_energy, coupling_ptr,
                                   coupling_edges, a, position, assignment)
            if energy < best:
                best = energy
                for q in range(arity):
                    best_states[q] = assignment[cg.scope_vars[first + q]]
            q = arity - 1  # the next configuration, last variable fastest
            while q >= 0:
                v = cg.scope_vars[first + q]
                assignment[v] += 1
                if assignment[v] < cg.n_states[v]:
                    break
                assignment[v] = 0
                q -= 1
            if q < 0:
                break
        gain = _strictly_lower(best, current)
        for q in range(arity):
            v = cg.scope_vars[first + q]
            position[v] = -1
            assignment[v] = best_states[q] if gain else old[q]
        moves += gain
    return moves


@njit(**NJIT_OPTIONS)
def _pair_move(cg, energies, params, node_energy, coupling_ptr, coupling_edges, a,
               assignment, cond_i, cond_j, joint):
    """The block move of pairwise factor a = (i, j): the joint states of lowest energy given
    the rest, from the conditional energies of i and j without the factors on both, plus
    those factors' tables (O(deg K + K^2)). Moves when strictly lower. Returns 1 (moved),
    0 (no gain), or -1 when a factor of arity >= 3 contains both i and j (not handled
    here: the caller enumerates)."""
    first = cg.scope_ptr[a]
    i = cg.scope_vars[first]
    j = cg.scope_vars[first + 1]
    ni = cg.n_states[i]
    nj = cg.n_states[j]
    conditional_energies(cg, energies, params, node_energy, coupling_ptr, coupling_edges,
                         assignment, i, cond_i, j)
    conditional_energies(cg, energies, params, node_energy, coupling_ptr, coupling_edges,
                         assignment, j, cond_j, i)
    for x in range(ni):
        for y in range(nj):
            joint[x * nj + y] = cond_i[x] + cond_j[y]
    for q in range(coupling_ptr[i], coupling_ptr[i + 1]):
        b = cg.edge_factor[coupling_edges[q]]
        if not _contains(cg, b, j):
            continue
        fb = cg.scope_ptr[b]
        if cg.scope_ptr[b + 1] - fb != 2:
            return -1
        toff = cg.table_offset[b]
        compact = cg.table_offset[b + 1] == toff
        i_first = cg.scope_vars[fb] == i
        si = cg.edge_stride[fb] if i_first else cg.edge_stride[fb + 1]
        sj = cg.edge_stride[fb + 1] if i_first else cg.edge_stride[fb]
        for x in range(ni):
            for y in range(nj):
                if compact:
                    joint[x * nj + y] += pair_entry(cg.factor_kind[b], params[b, 0],
                                                    params[b, 1], x if i_first else y,
                                                    y if i_first else x)
                else:
                    joint[x * nj + y] += energies[toff + x * si + y * sj]
    current = joint[assignment[i] * nj + assignment[j]]
    best = assignment[i] * nj + assignment[j]
    for c in range(ni * nj):
        if joint[c] < joint[best]:
            best = c
    if best == assignment[i] * nj + assignment[j] or not _strictly_lower(joint[best], current):
        return 0
    assignment[i] = best // nj
    assignment[j] = best % nj
    return 1
