"""Lowest-energy paths: Viterbi (1967) and the energy of given paths, on a ragged batch, and
:func:`viterbi_kernel` / :func:`path_energy_kernel` for other ``@njit`` code (see
:mod:`factorgraph_ebm.trellis`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from .._config import INF, NJIT_OPTIONS, njit
from ..exceptions import FactorGraphError
from ._batch import (
    _Batch,
    _batched,
    _block,
    _int_array,
    _longest,
    _prepare,
    _where_token,
    _work,
)
from ._semiring import _minplus_arg, _row_energy


class ViterbiResult(NamedTuple):
    """Lowest-energy state paths (or most offending incorrect paths) of a batch.

    Attributes
    ----------
    states : ndarray of shape (n_tokens,), dtype=int64
        The state path of every sequence, concatenated like ``unary``. All zeros for a
        sequence of energy ``+inf``.
    labels : ndarray of shape (n_tokens,), dtype=int64
        ``state_label[states]`` (equal to ``states`` without latent states).
    energy : ndarray of shape (n_seq,), dtype=float64
        Energy of each path; ``+inf`` when there is none of finite energy, 0 for an empty
        sequence (``+inf`` for :func:`best_incorrect`, which has no incorrect empty path).
    """

    states: np.ndarray
    labels: np.ndarray
    energy: np.ndarray


@njit(**NJIT_OPTIONS)
def _viterbi_seq(unary, trans, tr0, tstep, start, end, states, score, back):
    """Viterbi on one sequence: unary (T, K), matrix of position t is
    ``trans[tr0 + (t - 1) * tstep]``; writes ``states`` (T,), returns the energy.
    ``score`` (2, K) and ``back`` (T, K) int32 are scratch."""
    n, k = unary.shape
    if n == 0:
        return 0.0
    prev = score[0]
    cur = score[1]
    for j in range(k):
        prev[j] = _row_energy(unary, start, end, 0, n, j)
    for t in range(1, n):
        _minplus_arg(prev, trans[tr0 + (t - 1) * tstep], cur, back[t])
        for j in range(k):
            cur[j] += _row_energy(unary, start, end, t, n, j)
        prev, cur = cur, prev
    best = INF
    arg = 0
    for j in range(k):
        if prev[j] < best:
            best = prev[j]
            arg = j
    if best == INF:
        for t in range(n):
            states[t] = 0
        return INF
    states[n - 1] = arg
    for t in range(n - 1, 0, -1):
        states[t - 1] = back[t, states[t]]
    return best


@njit(**NJIT_OPTIONS)
def viterbi_kernel(unary, transition, start, end, out_states):
    """Viterbi on one sequence with a shared transition matrix, for use in njit code.

    Parameters
    ----------
    unary : ndarray of shape (T, K), float64
    transition : ndarray of shape (K, K), float64
    start, end : ndarray of shape (K,), float64
        Zeros when the model has none.
    out_states : ndarray of shape (T,), int64
        Receives the lowest-energy state path (ties: reverse lexicographic order, see the
        module docstring; all zeros if every path is forbidden).

    Returns
    -------
    float
        Its energy (``+inf`` if every path is forbidden, 0 if T = 0).

    Inputs are not validated (finite or ``+inf`` energies, matching shapes); never raises.
    """
    n, k = unary.shape
    score = np.empty((2, k))
    back = np.empty((max(n, 1), k), dtype=np.int32)
    trans = np.empty((1, k, k))  # a C-contiguous copy, whatever the caller's layout
    trans[0] = transition
    zero = np.int64(0)  # not a literal 0: the specialization of the batch kernels
    return _viterbi_seq(unary, trans, zero, zero, start, end, out_states, score, back)


@njit(**NJIT_OPTIONS)
def _path_energy_seq(unary, trans, tr0, tstep, start, end, states):
    n = unary.shape[0]
    if n == 0:
        return 0.0
    total = _row_energy(unary, start, end, 0, n, states[0])
    for t in range(1, n):
        total = total + trans[tr0 + (t - 1) * tstep, states[t - 1], states[t]]
        total = total + _row_energy(unary, start, end, t, n, states[t])
    return total


@njit(**NJIT_OPTIONS)
def path_energy_kernel(unary, transition, start, end, states):
    """E(states) of one sequence with a shared (K, K) transition, for use in njit code.

    Sums in the order of the Viterbi recursion, so that the energy of the Viterbi path is
    reproduced exactly. ``states`` int64 (T,) in 0..K-1 (not checked).
    """
    zero = np.int64(0)  # not a literal 0: the specialization of the batch kernels
    return _path_energy_seq(unary, np.expand_dims(transition, 0), zero, zero, start, end, states)


@_batched
def _viterbi_batch(lo, hi, unary, trans, per_position, tok_off, tr_off, start, end, states,
                   energy, score, back):
    tstep = 1 if per_position else 0
    rows = score.shape[0]
    for row in prange(rows):
        first, last = _block(lo, hi, row, rows)
        for s in range(first, last):
            a = tok_off[s]
            b = tok_off[s + 1]
            tr0 = tr_off[s] if per_position else 0
            energy[s] = _viterbi_seq(
                unary[a:b], trans, tr0, tstep, start, end, states[a:b], score[row], back[row]
            )


def _viterbi_scratch(batch: _Batch):
    """``scratch(rows)`` of :func:`_viterbi_batch`: score (rows, 2, K), back pointers
    (rows, T, K) int32 with T the longest sequence."""
    k = batch.unary.shape[1]
    longest = _longest(batch)
    return lambda rows: (np.empty((rows, 2, k)), np.empty((rows, longest, k), dtype=np.int32))


@_batched
def _path_energy_batch(lo, hi, unary, trans, per_position, tok_off, tr_off, start, end, states,
                       energy, rows):
    tstep = 1 if per_position else 0
    for row in prange(rows):
        first, last = _block(lo, hi, row, rows)
        for s in range(first, last):
            a = tok_off[s]
            b = tok_off[s + 1]
            tr0 = tr_off[s] if per_position else 0
            energy[s] = _path_energy_seq(unary[a:b], trans, tr0, tstep, start, end,
                                         states[a:b])


def viterbi(
    unary,
    transition,
    lengths=None,
    *,
    start=None,
    end=None,
    state_label=None,
    clamp=None,
    n_labels=None,
) -> ViterbiResult:
    """Lowest-energy state path of every sequence of a batch (Viterbi 1967).

    Parameters
    ----------
    unary : array_like of shape (n_tokens, K), float64
        Energies of the states of every token, sequences concatenated; ``+inf`` forbids.
    transition : array_like of shape (K, K) or (n_tokens - n_nonempty_sequences, K, K)
        Shared, or per position (see the module docstring); ``transition[i, j]`` is the
        energy of state i followed by state j.
    lengths : array_like of int, shape (n_seq,), optional
        Sequence lengths (>= 0, summing to n_tokens); default one sequence.
    start, end : array_like of shape (K,), optional
        Energies of the first and of the last state of each (non-empty) sequence.
    state_label : array_like of int, shape (K,), optional
        Label of each state (latent states; default the identity).
    clamp : array_like of int, shape (n_tokens,), optional
        Label each token is restricted to, -1 for none: the result is then the lowest
        energy of the desired labels over the hidden states, min_Z E(Y, Z).
    n_labels : int, optional
        L, the number of labels (default ``max(state_label) + 1``).

    Returns
    -------
    ViterbiResult
        ``states`` and ``labels`` int64 (n_tokens,), ``energy`` float64 (n_seq,) (``+inf``
        with an all-zero path if every path is forbidden; 0 for an empty sequence). Exact
        ties go to the reverse-lexicographically smallest path (lowest last state first).

    Raises
    ------
    FactorGraphError
        Wrong shapes or dtypes, lengths that are negative or do not sum to n_tokens, NaN or
        ``-inf`` energies (naming the array, the sequence and the position), labels or
        clamps out of range.

    Examples
    --------
    Two sequences of two states, of lengths 3 and 2 (5 tokens):

    >>> import numpy as np
    >>> from factorgraph_ebm import trellis
    >>> unary = np.array([[0, 1.5], [1, 0.25], [0, 2], [2, 0], [0.5, 0]])
    >>> transition = np.array([[0.0, 1.0], [1.5, 0.0]])     # energy of a switch of state
    >>> best = trellis.viterbi(unary, transition, lengths=[3, 2])
    >>> best.states.tolist(), best.energy.tolist()
    ([0, 0, 0, 1, 1], [1.0, 0.0])
    """
    batch = _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels)
    n_tokens = batch.unary.shape[0]
    states = np.zeros(n_tokens, dtype=np.int64)
    energy = np.empty(len(batch.tok_off) - 1)
    _viterbi_batch(
        _work(batch),
        len(batch.tok_off) - 1,
        _viterbi_scratch(batch),
        batch.unary,
        batch.trans,
        batch.per_position,
        batch.tok_off,
        batch.tr_off,
        batch.start,
        batch.end,
        states,
        energy,
    )
    return ViterbiResult(states, batch.state_label[states], energy)


def path_energy(unary, transition, states, lengths=None, *, start=None, end=None) -> np.ndarray:
    """Energy E(y) of given state paths.

    Parameters
    ----------
    unary, transition, lengths, start, end
        As in :func:`viterbi`.
    states : array_like of int, shape (n_tokens,)
        One state path per sequence, concatenated, in 0..K-1.

    Returns
    -------
    ndarray of shape (n_seq,), dtype=float64
        Summed in the order of the Viterbi recursion (so that the energy of the Viterbi
        path is reproduced exactly); ``+inf`` for a forbidden path, 0 for an empty one.

    Raises
    ------
    FactorGraphError
        As :func:`viterbi`, and ``states`` of the wrong shape or out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from factorgraph_ebm import trellis
    >>> unary = np.array([[0, 1.5], [1, 0.25], [0, 2], [2, 0], [0.5, 0]])
    >>> transition = np.array([[0.0, 1.0], [1.5, 0.0]])     # energy of a switch of state
    >>> trellis.path_energy(unary, transition, [0, 1, 0, 1, 1], lengths=[3, 2]).tolist()
    [2.75, 0.0]
    """
    batch = _prepare(unary, transition, lengths, start, end, None, None, None)
    n_tokens, k = batch.unary.shape
    y = _int_array("states", states, (n_tokens,))
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        t = int(bad[0])
        raise FactorGraphError(
            f"states[{t}] {_where_token(batch.tok_off, t)} = {y[t]} is out of range 0..{k - 1}"
        )
    energy = np.empty(len(batch.tok_off) - 1)
    _path_energy_batch(
        batch.unary.shape[0],
        len(batch.tok_off) - 1,
        lambda rows: (rows,),
        batch.unary,
        batch.trans,
        batch.per_position,
        batch.tok_off,
        batch.tr_off,
        batch.start,
        batch.end,
        y,
        energy,
    )
    return energy
