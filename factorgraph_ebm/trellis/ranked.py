"""The k lowest-energy paths of each sequence (list Viterbi decoding, Seshadri & Sundberg
1994; see :mod:`factorgraph_ebm.trellis`)."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from .. import _validation as V
from .._config import INF, NJIT_OPTIONS, njit
from ._batch import _Batch, _batched, _block, _longest, _prepare, _transposed, _work
from ._semiring import _row_energy


class KBestResult(NamedTuple):
    """The k lowest-energy state paths of each sequence (see :func:`kbest`).

    Attributes
    ----------
    states : ndarray of shape (k, n_tokens), dtype=int64
        Row q holds the q-th best path of every sequence (q = 0 is the Viterbi path), in
        the token layout of ``unary``; all zeros where that path does not exist.
    labels : ndarray of shape (k, n_tokens), dtype=int64
        ``state_label[states]``.
    energy : ndarray of shape (n_seq, k), dtype=float64
        Non-decreasing along each row; ``+inf`` where the sequence has fewer than q + 1
        paths of finite energy.
    """

    states: np.ndarray
    labels: np.ndarray
    energy: np.ndarray


@njit(**NJIT_OPTIONS)
def _kbest_seq(unary, trans_t, tr0, tstep, start, end, states, energy, sc, bs, br, fj, fr):
    """The ``kk = energy.shape[0]`` best paths of one sequence (list Viterbi); ``trans_t``
    holds the transposed transition matrices.

    ``states`` (kk, T) and ``energy`` (kk,) are outputs; ``sc`` (T, K, kk) float64 and
    ``bs``, ``br`` (T, K, kk) int32 the per-state sorted lists and their back pointers
    (previous state, previous rank); ``fj``, ``fr`` (kk,) int64 scratch.
    """
    n, k = unary.shape
    kk = energy.shape[0]
    for q in range(kk):
        energy[q] = INF
        fj[q] = 0
        fr[q] = 0
    if n == 0:
        energy[0] = 0.0
        return
    for j in range(k):
        sc[0, j, 0] = _row_energy(unary, start, end, 0, n, j)
        for r in range(1, kk):
            sc[0, j, r] = INF
    for t in range(1, n):
        tr_t = trans_t[tr0 + (t - 1) * tstep]
        prev = sc[t - 1]
        for j in range(k):
            vals = sc[t, j]
            bst = bs[t, j]
            brk = br[t, j]
            for r in range(kk):
                vals[r] = INF
                bst[r] = 0
                brk[r] = 0
            worst = INF
            for i in range(k):
                tij = tr_t[j, i]
                if not prev[i, 0] + tij < worst:
                    continue
                for r in range(kk):
                    v = prev[i, r] + tij
                    if not v < worst:
                        break
                    p = kk - 1
                    while p > 0 and v < vals[p - 1]:
                        vals[p] = vals[p - 1]
                        bst[p] = bst[p - 1]
                        brk[p] = brk[p - 1]
                        p -= 1
                    vals[p] = v
                    bst[p] = i
                    brk[p] = r
                    worst = vals[kk - 1]
            e = _row_energy(unary, start, end, t, n, j)
            for r in range(kk):
                vals[r] += e
    for j in range(k):
        prow = sc[n - 1, j]
        for r in range(kk):
            v = prow[r]
            if not v < energy[kk - 1]:
                break
            p = kk - 1
            while p > 0 and v < energy[p - 1]:
                energy[p] = energy[p - 1]
                fj[p] = fj[p - 1]
                fr[p] = fr[p - 1]
                p -= 1
            energy[p] = v
            fj[p] = j
            fr[p] = r
    for q in range(kk):
        if energy[q] == INF:
            for t in range(n):
                states[q, t] = 0
            continue
        j = fj[q]
        r = fr[q]
        for t in range(n - 1, -1, -1):
            states[q, t] = j
            if t > 0:
                j, r = bs[t, j, r], br[t, j, r]


@_batched
def _kbest_batch(lo, hi, unary, trans_t, per_position, tok_off, tr_off, start, end, states,
                 energy, sc, bs, br, fj, fr):
    """``sc`` (rows, T, K, k) float64, ``bs``, ``br`` (rows, T, K, k) int32 and ``fj``,
    ``fr`` (rows, k) int64: :func:`_kbest_seq`'s scratch per thread (T the longest
    sequence)."""
    tstep = 1 if per_position else 0
    rows = sc.shape[0]
    for row in prange(rows):
        first, last = _block(lo, hi, row, rows)
        for s in range(first, last):
            a = tok_off[s]
            b = tok_off[s + 1]
            tr0 = tr_off[s] if per_position else 0
            _kbest_seq(unary[a:b], trans_t, tr0, tstep, start, end, states[:, a:b], energy[s],
                       sc[row], bs[row], br[row], fj[row], fr[row])


def kbest(
    unary,
    transition,
    lengths=None,
    *,
    k=2,
    start=None,
    end=None,
    state_label=None,
    clamp=None,
    n_labels=None,
) -> KBestResult:
    """The ``k`` lowest-energy distinct state paths of every sequence, by list Viterbi
    (the k best prefixes kept per state and token; Seshadri & Sundberg 1994).

    Parameters
    ----------
    unary, transition, lengths, start, end, state_label, clamp, n_labels
        As in :func:`viterbi`.
    k : int, default=2
        Number of paths, >= 1.

    Returns
    -------
    KBestResult
        ``states`` (k, n_tokens), ``labels`` (k, n_tokens), ``energy`` (n_seq, k) in
        non-decreasing order. Paths of exactly equal (computed) energy come in reverse
        lexicographic order of their states, as in :func:`viterbi`, so row 0 is the
        Viterbi path. Where a sequence has fewer than q + 1 paths of finite energy, row q
        has energy ``+inf`` and an all-zero path; an empty sequence has one path (energy 0).

    Raises
    ------
    FactorGraphError
        As :func:`viterbi`; ``k`` that is not an integer >= 1, or so large that the k
        paths and the work arrays (about ``16 k (n_tokens + T K)`` bytes, T the longest
        sequence) exceed the machine's physical memory or ``k * n_tokens`` exceeds 2**40
        (refused before anything is allocated).

    Examples
    --------
    >>> import numpy as np
    >>> from factorgraph_ebm import trellis
    >>> unary = np.array([[0, 1.5], [1, 0.25], [0, 2], [2, 0], [0.5, 0]])
    >>> transition = np.array([[0.0, 1.0], [1.5, 0.0]])     # energy of a switch of state
    >>> two = trellis.kbest(unary, transition, lengths=[3, 2], k=2)
    >>> two.energy.tolist()                   # per sequence, best first
    [[1.0, 2.75], [0.0, 2.0]]
    >>> two.states.tolist()                   # row 0: the Viterbi paths; row 1: runners-up
    [[0, 0, 0, 1, 1], [0, 1, 0, 1, 0]]
    """
    k = int(V.integer(k, "k", low=1))
    batch = _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels)
    n_tokens, n_states = batch.unary.shape
    _check_kbest_size(batch, k)
    states = np.zeros((k, n_tokens), dtype=np.int64)
    energy = np.empty((len(batch.tok_off) - 1, int(k)))
    longest = _longest(batch)
    _kbest_batch(
        _work(batch),
        len(batch.tok_off) - 1,
        lambda rows: (np.empty((rows, longest, n_states, k)),
                      np.empty((rows, longest, n_states, k), dtype=np.int32),
                      np.empty((rows, longest, n_states, k), dtype=np.int32),
                      np.empty((rows, k), dtype=np.int64), np.empty((rows, k), dtype=np.int64)),
        batch.unary,
        _transposed(batch.trans),
        batch.per_position,
        batch.tok_off,
        batch.tr_off,
        batch.start,
        batch.end,
        states,
        energy,
    )
    return KBestResult(states, batch.state_label[states], energy)


def _check_kbest_size(batch: _Batch, k: int) -> None:
    """Refuse a ``k`` whose paths and work arrays cannot fit in memory, before any is
    allocated: the states and labels (k, n_tokens) int64, the energies (n_seq, k), and per
    sequence running at once the (T, K, k) sorted lists (float64 and two int32)."""
    n_tokens, n_states = batch.unary.shape
    n_seq = len(batch.tok_off) - 1
    V.check_count(k * max(n_tokens, n_seq), f"kbest: k = {k} paths times the tokens")
    longest = int(np.diff(batch.tok_off).max(initial=1)) or 1
    at_once = max(1, min(n_seq, numba.get_num_threads()))
    need = 8 * k * (2 * n_tokens + n_seq) + at_once * 16 * longest * n_states * k
    V.require_memory(need, f"kbest with k = {k} ({n_seq} sequences of up to {longest} "
                           f"tokens, K = {n_states})")
