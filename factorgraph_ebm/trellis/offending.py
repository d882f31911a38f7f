"""The most offending incorrect path of each sequence: the lowest-energy path whose labels
differ from the target's (LeCun et al. 2006, sec. 2.2; see :mod:`factorgraph_ebm.trellis`)."""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import INF, NJIT_OPTIONS, njit
from ..exceptions import FactorGraphError
from ._batch import _batched, _block, _int_array, _longest, _prepare, _where_token, _work
from ._semiring import _minplus_arg, _row_energy
from .paths import ViterbiResult


@njit(**NJIT_OPTIONS)
def _incorrect_seq(unary, trans, tr0, tstep, start, end, label, target, states, work, back):
    """Lowest-energy path whose label sequence differs from ``target`` somewhere.

    Dynamic program over (state, deviated-yet flag): ``work`` (2, T, K) holds the best
    prefix energies with flag 0 and 1, ``back`` (3, T, K) int32 the previous state of the
    flag-0 and flag-1 entries and the previous flag of the flag-1 entries. Returns the
    energy (``+inf`` if there is no incorrect path) and writes ``states``.
    """
    n, k = unary.shape
    if n == 0:
        return INF
    s0 = work[0]
    s1 = work[1]
    b0 = back[0]
    b1 = back[1]
    f1 = back[2]
    for j in range(k):
        e = _row_energy(unary, start, end, 0, n, j)
        if label[j] == target[0]:
            s0[0, j] = e
            s1[0, j] = INF
        else:
            s0[0, j] = INF
            s1[0, j] = e
    for t in range(1, n):
        tr = trans[tr0 + (t - 1) * tstep]
        m0 = s0[t]
        m1 = s1[t]
        _minplus_arg(s0[t - 1], tr, m0, b0[t])
        _minplus_arg(s1[t - 1], tr, m1, b1[t])
        for j in range(k):
            f1[t, j] = 1
        for j in range(k):
            e = _row_energy(unary, start, end, t, n, j)
            if label[j] == target[t]:
                m0[j] += e
                m1[j] += e
            else:
                if m0[j] < m1[j] or (m0[j] == m1[j] and m0[j] < INF and b0[t, j] < b1[t, j]):
                    m1[j] = m0[j]
                    b1[t, j] = b0[t, j]
                    f1[t, j] = 0
                m1[j] += e
                m0[j] = INF
    best = INF
    arg = 0
    for j in range(k):
        if s1[n - 1, j] < best:
            best = s1[n - 1, j]
            arg = j
    if best == INF:
        for t in range(n):
            states[t] = 0
        return INF
    j = arg
    flag = 1
    for t in range(n - 1, 0, -1):
        states[t] = j
        if flag == 1:
            flag = f1[t, j]
            j = b1[t, j]
        else:
            j = b0[t, j]
    states[0] = j
    return best


@_batched
def _incorrect_batch(
    lo, hi, unary, trans, per_position, tok_off, tr_off, start, end, label, target, states,
    energy, work, back,
):
    """``work`` (rows, 2, T, K) and ``back`` (rows, 3, T, K) int32: :func:`_incorrect_seq`'s
    scratch per thread (T the longest sequence)."""
    tstep = 1 if per_position else 0
    rows = work.shape[0]
    for row in prange(rows):
        first, last = _block(lo, hi, row, rows)
        for s in range(first, last):
            a = tok_off[s]
            b = tok_off[s + 1]
            tr0 = tr_off[s] if per_position else 0
            energy[s] = _incorrect_seq(
                unary[a:b], trans, tr0, tstep, start, end, label, target[a:b], states[a:b],
                work[row], back[row],
            )


def best_incorrect(
    unary,
    transition,
    target,
    lengths=None,
    *,
    start=None,
    end=None,
    state_label=None,
    clamp=None,
    n_labels=None,
) -> ViterbiResult:
    """The most offending incorrect answer: the lowest-energy path whose label sequence
    differs from ``target`` in at least one position, Ybar = argmin_{Y != Y^i} E(Y)
    (LeCun et al. 2006, sec. 2.2), minimized over the latent states too.

    Exact, by a Viterbi recursion over (state, "already differs from the target") pairs.

    Parameters
    ----------
    unary, transition, lengths, start, end, state_label, clamp, n_labels
        As in :func:`viterbi`.
    target : array_like of int, shape (n_tokens,)
        The desired labels Y^i, in 0..L-1.

    Returns
    -------
    ViterbiResult
        The path, its labels and its energy per sequence: ``+inf`` (all-zero path) when
        there is no incorrect path of finite energy, e.g. for an empty sequence or L = 1.
        Ties: when backtracking, the lowest previous state, and for the same previous
        state the prefix that already differs from the target.

    Raises
    ------
    FactorGraphError
        As :func:`viterbi`, and ``target`` of the wrong shape or out of range.

    Examples
    --------
    With the Viterbi paths as targets, the most offending incorrect answers are the
    second-best paths (see :func:`kbest`):

    >>> import numpy as np
    >>> from factorgraph_ebm import trellis
    >>> unary = np.array([[0, 1.5], [1, 0.25], [0, 2], [2, 0], [0.5, 0]])
    >>> transition = np.array([[0.0, 1.0], [1.5, 0.0]])     # energy of a switch of state
    >>> bad = trellis.best_incorrect(unary, transition, [0, 0, 0, 1, 1], lengths=[3, 2])
    >>> bad.labels.tolist(), bad.energy.tolist()
    ([0, 1, 0, 1, 0], [2.75, 2.0])
    """
    batch = _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels)
    n_tokens = batch.unary.shape[0]
    tgt = _int_array("target", target, (n_tokens,))
    bad = np.flatnonzero((tgt < 0) | (tgt >= batch.n_labels))
    if bad.size:
        t = int(bad[0])
        raise FactorGraphError(
            f"target[{t}] {_where_token(batch.tok_off, t)} = {tgt[t]} is out of range: "
            f"expected a label in 0..{batch.n_labels - 1}"
        )
    states = np.zeros(n_tokens, dtype=np.int64)
    energy = np.empty(len(batch.tok_off) - 1)
    longest, n_states = _longest(batch), batch.unary.shape[1]
    _incorrect_batch(
        _work(batch),
        len(batch.tok_off) - 1,
        lambda rows: (np.empty((rows, 2, longest, n_states)),
                      np.empty((rows, 3, longest, n_states), dtype=np.int32)),
        batch.unary,
        batch.trans,
        batch.per_position,
        batch.tok_off,
        batch.tr_off,
        batch.start,
        batch.end,
        batch.state_label,
        tgt,
        states,
        energy,
    )
    return ViterbiResult(states, batch.state_label[states], energy)
