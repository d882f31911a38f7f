"""Evaluating the energy E(y) = sum_a E_a(y_a) of assignments on a compiled graph."""

import numpy as np

from ._config import NJIT_OPTIONS, njit
from .structured import pair_entry


@njit(**NJIT_OPTIONS)
def energies_of(cg, energies, states):
    """Energies of a batch of assignments.

    Parameters
    ----------
    cg : CompiledGraph
    energies : ndarray of shape (M,), dtype=float64
        Flat energy tables (C order, declared scope order), ``cg.energies`` or replacements.
    states : ndarray of shape (n_samples, V), dtype=int64
        Validated states (0 <= states[:, i] < n_states[i]).

    Returns
    -------
    ndarray of shape (n_samples,), dtype=float64
        ``+inf`` for a configuration that some factor forbids.
    """
    out = np.zeros(states.shape[0])
    for s in range(states.shape[0]):
        entries = table_entries_of(cg, states[s])
        for a in range(len(entries)):
            index = entries[a]
            if index >= 0:
                out[s] += energies[index]
            else:  # a compact structured factor: its entry from the formula
                first = cg.scope_ptr[a]
                out[s] += pair_entry(
                    cg.factor_kind[a], cg.factor_param[a, 0], cg.factor_param[a, 1],
                    states[s, cg.scope_vars[first]], states[s, cg.scope_vars[first + 1]],
                )
    return out


@njit(**NJIT_OPTIONS)
def table_entries_of(cg, states):
    """Flat index into the energy vector of each factor's entry under one assignment.

    Parameters
    ----------
    cg : CompiledGraph
    states : ndarray of shape (V,), dtype=int64

    Returns
    -------
    ndarray of shape (F,), dtype=int64
        ``energies[table_entries_of(cg, y)].sum()`` is E(y); a one-hot of these entries is
        dE(y)/d(theta). -1 for a compact structured factor (no table in theta).
    """
    n_factors = len(cg.scope_ptr) - 1
    out = np.empty(n_factors, dtype=np.int64)
    for a in range(n_factors):
        index = cg.table_offset[a]
        if cg.table_offset[a + 1] == index:
            out[a] = -1
            continue
        for e in range(cg.scope_ptr[a], cg.scope_ptr[a + 1]):
            index += cg.edge_stride[e] * states[cg.scope_vars[e]]
        out[a] = index
    return out
