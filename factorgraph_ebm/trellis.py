"""Chains (trellises): Viterbi, forward-backward, k-best paths, the most offending incorrect
path and latent states, on ragged batches of sequences.

Energy of one state path y = (y_0, ..., y_{T-1}) of a sequence of length T::

    E(y) = sum_t unary[t, y_t] + sum_{t >= 1} transition_t[y_{t-1}, y_t] + start[y_0] + end[y_{T-1}]

Energies are unitless, lower is better, ``+inf`` forbids a state or a transition (a hard
constraint); NaN and ``-inf`` are refused. Logarithms are natural. A chain is the simplest
factor graph (unary factors on the tokens, pairwise factors between neighbours), on which
min-sum and sum-product belief propagation are exact; this module runs the same dynamic
programs directly on the trellis, many sequences at once, with no graph to build
(Viterbi 1967; Rabiner 1989, "A tutorial on hidden Markov models", sec. III and V.A for the
scaled forward-backward; Seshadri & Sundberg 1994, "List Viterbi decoding algorithms" for
k-best paths; LeCun, Chopra, Hadsell, Ranzato & Huang 2006, "A Tutorial on Energy-Based
Learning", sec. 2.2 and 6, for the most offending incorrect answer and free energies).

Batch layout (ragged)
---------------------
``unary`` : float64 (n_tokens, K), all sequences concatenated. ``lengths`` : int (n_seq,),
each >= 0, summing to n_tokens; ``None`` means one sequence of all n_tokens tokens.
``transition`` : (K, K) shared by all positions of all sequences, or per position
(n_tokens - n_nonempty_sequences, K, K): for each sequence in order, its T_i - 1 matrices
(matrix p between tokens t - 1 and t), concatenated. ``start``, ``end`` : optional (K,),
zero when absent. Tables are NumPy C order, ``transition[i, j]`` being the energy of
moving from state i (at t - 1) to state j (at t).

Latent states
-------------
``state_label`` : optional int (K,) maps each hidden state to a label in 0..L-1 (several
states may share a label: the trellis form of the tutorial's latent variable Z; default the
identity, L = K). ``clamp`` : optional int (n_tokens,) of labels restricts position t to the
states whose label is ``clamp[t]`` (-1 leaves it free). Clamped Viterbi gives the energy of
the desired answer with latent states, ``min_Z E(Y^i, Z)``; clamped forward-backward gives its
free energy ``-1/beta ln sum_Z exp(-beta E(Y^i, Z))`` and the marginals its gradient needs.

Tie rule and infeasible sequences
---------------------------------
Viterbi and k-best order paths by the energy the dynamic program computes (left-to-right
sums: ``((E_0 + tr) + E_1) + ...``, the order :func:`path_energy` uses, so that the two agree
bit for bit) and break exact ties in reverse lexicographic order of the state path: the
path with the lower last state first, then the lower second-to-last state, and so on.
A sequence whose every path has energy ``+inf`` gets energy ``+inf`` and the all-zero state
path; an empty sequence has one path, the empty one, of energy 0.

Numerics of forward-backward
----------------------------
With a shared transition matrix the forward and backward recursions run in the scaled
probability domain (Rabiner's scaling): ``M = exp(-beta (transition - min))`` once, then per
token one (K,) vector-matrix product and K exponentials, the vectors renormalized and their
log scales summed. Every quantity kept is either exactly zero because no feasible path
reaches it (checked) or at least 1e-290, so nothing underflows silently; when that cannot be
guaranteed (a transition range ``beta * (max - min)`` above 300, a state that would
underflow, per-position transitions) that sequence runs the log-domain recursion instead:
max-shifted soft minima kept in energy units (so that ``beta * energy`` never overflows),
about 3 K^2 exponentials per token, tens of times slower. Free energies are accumulated in
energy units, ln Z = -beta F derived from them. Results never contain NaN.

Batches and threads
-------------------
Sequences are independent: a batch of several sequences with enough work (tokens x K^2 at
least :data:`PARALLEL_WORK`) runs on Numba's threads (``prange``), a small one serially.
Every per-sequence result is the same as that of a one-sequence call; the shared transition
marginals are summed over fixed chunks of sequences in a fixed order, so they do not depend
on the number of threads either (they may differ from a sum of one-sequence calls in the
last bits). A batch runs as several kernel calls on ranges of its sequences (of its fixed
chunks, for forward-backward) of about 0.1 s each, so that Ctrl-C stops it
(:mod:`factorgraph_ebm._pacing`); the results are those of one call, bit for bit. The
kernels' work arrays are allocated in Python, one row per thread.

Numba kernels for other njit code
---------------------------------
:func:`viterbi_kernel` ``(unary (T, K), transition (K, K), start (K,), end (K,),
out_states (T,) int64) -> float`` and :func:`path_energy_kernel` ``(unary, transition,
start, end, states) -> float`` are ``@njit`` functions on one sequence, callable from other
``@njit`` code (e.g. a perceptron training loop): float64 arrays (start and end as zero
arrays when absent), validated by the caller; the tie rule is the one above. They allocate
only NumPy scratch arrays and never raise.
"""

from __future__ import annotations

import math
import types
from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from . import _validation as V
from ._config import NJIT_OPTIONS, njit
from ._pacing import paced
from .exceptions import FactorGraphError
from .inference import checked_beta

__all__ = [
    "ForwardBackwardResult",
    "KBestResult",
    "ViterbiResult",
    "best_incorrect",
    "forward_backward",
    "kbest",
    "path_energy",
    "path_energy_kernel",
    "viterbi",
    "viterbi_kernel",
]

INF = np.inf
#: Smallest value the scaled forward-backward keeps (far above the subnormal range).
TINY = 1e-290
#: Largest ``beta * (max - min)`` over the finite shared transition energies for which the
#: scaled probability domain is used; beyond it the log domain.
SCALED_RANGE = 300.0
#: At most this many partial sums of shared transition marginals (fixed, so that results do
#: not depend on the number of threads).
MAX_CHUNKS = 32
#: Memory cap of those partial sums, bytes.
CHUNK_BYTES = 64 * 2**20

#: Work (tokens x K^2) from which a batch of several sequences runs on several threads.
PARALLEL_WORK = 2_000_000


class _Batched:
    """A batch kernel compiled twice: serial and ``parallel=True`` (its ``prange`` loop over
    threads, each taking a block of the items: sequences or chunks). Results are the same;
    small batches run serially, where starting the threads would cost more than it saves
    (on a busy machine, up to a scheduler time slice).

    Call as ``kernel(work, n_items, scratch, *args)``: the kernel runs as
    ``kernel(lo, hi, *args, *scratch(rows))`` on paced ranges of items
    (:func:`~factorgraph_ebm._pacing.paced`: about 0.1 s each, so that Ctrl-C and other
    signals get through), the first one of about :data:`PARALLEL_WORK` tokens x K^2.
    ``scratch(rows)`` allocates the kernel's work arrays, one row per thread (``rows`` = 1
    for the serial copy), in Python: the kernels allocate nothing (an allocation failing
    in a kernel leaks what it allocated before; see :mod:`factorgraph_ebm.messages`).
    """

    def __init__(self, fn):
        # A copy under another name, so that the two versions have distinct cache files.
        serial = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
        )
        serial.__qualname__ = fn.__qualname__ + "_serial"
        serial.__doc__ = fn.__doc__
        self.serial = njit(**NJIT_OPTIONS)(serial)
        self.parallel = njit(parallel=True, **NJIT_OPTIONS)(fn)
        self.__doc__ = fn.__doc__

    def __call__(self, work, n_items, scratch, *args):
        threaded = n_items > 1 and work >= PARALLEL_WORK and numba.get_num_threads() > 1
        kernel = self.parallel if threaded else self.serial
        buffers = scratch(min(numba.get_num_threads(), n_items) if threaded else 1)
        first = max(1, n_items * PARALLEL_WORK // max(work, 1))
        for lo, hi in paced(n_items, first=first):
            kernel(lo, hi, *args, *buffers)


@njit(inline="always", **NJIT_OPTIONS)
def _block(lo, hi, row, rows):
    """Items of thread ``row`` of ``rows`` in ``lo..hi-1``: a contiguous block, as a static
    schedule gives them."""
    n = hi - lo
    return lo + n * row // rows, lo + n * (row + 1) // rows


_batched = _Batched


# --------------------------------------------------------------------------- results
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


class ForwardBackwardResult(NamedTuple):
    """Marginals and free energies of a batch (see :func:`forward_backward`).

    Attributes
    ----------
    marginals : ndarray of shape (n_tokens, K), dtype=float64
        Finite beta: P(y_t = k), each row summing to 1 (all 0 in a sequence of which every
        path is forbidden). ``beta=inf``: absolute min-marginals, the lowest energy of any
        path of the sequence with y_t = k (``+inf`` if none).
    label_marginals : ndarray of shape (n_tokens, L), dtype=float64
        The same per label: sums over the states of each label (finite beta), minima
        (``beta=inf``). The very same array as ``marginals`` without ``state_label``.
    log_partition : ndarray of shape (n_seq,), dtype=float64
        ln Z = ln sum_y exp(-beta E(y)) = -beta F (natural log), ``-inf`` if every path is
        forbidden, 0 for an empty sequence; it overflows to +-inf only where beta * abs(F)
        exceeds the double range. NaN for ``beta=inf`` (no meaningful value).
    free_energy : ndarray of shape (n_seq,), dtype=float64
        F = -ln Z / beta in energy units, computed directly (never through ln Z);
        ``+inf`` if every path is forbidden. For ``beta=inf`` the minimum energy, the limit
        of F.
    transition_marginals : ndarray or None
        Finite beta: the gradient dF/d(transition), i.e. expected transition counts. Shape
        (K, K), summed over all positions and sequences, for a shared transition; shape
        (n_tokens - n_nonempty, K, K), laid out like ``transition``, for per-position
        transitions. None for ``beta=inf``.
    start_marginals, end_marginals : ndarray of shape (K,) or None
        Finite beta: dF/d(start) and dF/d(end), the marginals of the first and last tokens
        summed over sequences. None for ``beta=inf``.
    """

    marginals: np.ndarray
    label_marginals: np.ndarray
    log_partition: np.ndarray
    free_energy: np.ndarray
    transition_marginals: np.ndarray | None
    start_marginals: np.ndarray | None
    end_marginals: np.ndarray | None


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


# --------------------------------------------------------------------------- kernels
@njit(inline="always", **NJIT_OPTIONS)
def _row_energy(unary, start, end, t, n, j):
    """Energy of state j at token t of a sequence of length n, start and end included."""
    e = unary[t, j]
    if t == 0:
        e += start[j]
    if t == n - 1:
        e += end[j]
    return e


# Inner loops over a (K, K) matrix, four source rows at a time: one load and store of the
# output per four rows, and branch-free selects, which LLVM vectorizes. Ties keep the
# lowest source row. Energies are finite or +inf, so no sum is ever NaN.
@njit(inline="always", **NJIT_OPTIONS)
def _minplus_arg(x, mat, out, arg):
    """out[j] = min_i (x[i] + mat[i, j]) and arg[j] = the lowest minimizing i (int32;
    0 when every term is +inf)."""
    k = x.shape[0]
    for j in range(k):
        out[j] = INF
        arg[j] = 0
    i = 0
    while i + 4 <= k:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        r0, r1, r2, r3 = mat[i], mat[i + 1], mat[i + 2], mat[i + 3]
        i0, i1, i2, i3 = np.int32(i), np.int32(i + 1), np.int32(i + 2), np.int32(i + 3)
        for j in range(k):
            v = x0 + r0[j]
            b = i0
            w = x1 + r1[j]
            if w < v:
                v = w
                b = i1
            w = x2 + r2[j]
            if w < v:
                v = w
                b = i2
            w = x3 + r3[j]
            if w < v:
                v = w
                b = i3
            c = out[j]
            better = v < c
            out[j] = v if better else c
            arg[j] = b if better else arg[j]
        i += 4
    while i < k:
        xi = x[i]
        row = mat[i]
        state = np.int32(i)
        for j in range(k):
            v = xi + row[j]
            c = out[j]
            better = v < c
            out[j] = v if better else c
            arg[j] = state if better else arg[j]
        i += 1


@njit(inline="always", **NJIT_OPTIONS)
def _minplus(x, mat, out):
    """out[j] = min_i (x[i] + mat[i, j])."""
    k = x.shape[0]
    for j in range(k):
        out[j] = INF
    i = 0
    while i + 4 <= k:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        r0, r1, r2, r3 = mat[i], mat[i + 1], mat[i + 2], mat[i + 3]
        for j in range(k):
            v = min(min(x0 + r0[j], x1 + r1[j]), min(x2 + r2[j], x3 + r3[j]))
            c = out[j]
            out[j] = v if v < c else c
        i += 4
    while i < k:
        xi = x[i]
        row = mat[i]
        for j in range(k):
            v = xi + row[j]
            c = out[j]
            out[j] = v if v < c else c
        i += 1


@njit(inline="always", **NJIT_OPTIONS)
def _vecmat(x, mat, out):
    """out[j] = sum_i x[i] mat[i, j] (finite non-negative entries)."""
    k = x.shape[0]
    for j in range(k):
        out[j] = 0.0
    i = 0
    while i + 4 <= k:
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        r0, r1, r2, r3 = mat[i], mat[i + 1], mat[i + 2], mat[i + 3]
        for j in range(k):
            out[j] += (x0 * r0[j] + x1 * r1[j]) + (x2 * r2[j] + x3 * r3[j])
        i += 4
    while i < k:
        xi = x[i]
        row = mat[i]
        for j in range(k):
            out[j] += xi * row[j]
        i += 1


@njit(inline="always", **NJIT_OPTIONS)
def _outer_sum(alpha, g, acc):
    """acc += sum_{t >= 1} outer(alpha[t - 1], g[t]), four tokens at a time."""
    n, k = alpha.shape
    t = 1
    while t + 4 <= n:
        a0, a1, a2, a3 = alpha[t - 1], alpha[t], alpha[t + 1], alpha[t + 2]
        g0, g1, g2, g3 = g[t], g[t + 1], g[t + 2], g[t + 3]
        for i in range(k):
            c0, c1, c2, c3 = a0[i], a1[i], a2[i], a3[i]
            row = acc[i]
            for j in range(k):
                row[j] += (c0 * g0[j] + c1 * g1[j]) + (c2 * g2[j] + c3 * g3[j])
        t += 4
    while t < n:
        a0 = alpha[t - 1]
        g0 = g[t]
        for i in range(k):
            c0 = a0[i]
            row = acc[i]
            for j in range(k):
                row[j] += c0 * g0[j]
        t += 1


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


# ----------------------------------------------------------------- min-sum forward-backward
@njit(**NJIT_OPTIONS)
def _minsum_seq(unary, trans, trans_t, tr0, tstep, start, end, out, tmp):
    """Absolute min-marginals of one sequence into ``out`` (T, K); returns the minimum
    energy. ``trans_t`` holds the transposed matrices; ``tmp`` (3, K) is scratch."""
    n, k = unary.shape
    if n == 0:
        return 0.0
    for j in range(k):
        out[0, j] = _row_energy(unary, start, end, 0, n, j)
    for t in range(1, n):
        cur = out[t]
        _minplus(out[t - 1], trans[tr0 + (t - 1) * tstep], cur)
        for j in range(k):
            cur[j] += _row_energy(unary, start, end, t, n, j)
    low = INF
    for j in range(k):
        if out[n - 1, j] < low:
            low = out[n - 1, j]
    if low == INF:
        for t in range(n):
            for j in range(k):
                out[t, j] = INF
        return INF
    back = tmp[0]
    h = tmp[1]
    for j in range(k):
        back[j] = 0.0
    for t in range(n - 1, 0, -1):
        for j in range(k):
            h[j] = _row_energy(unary, start, end, t, n, j) + back[j]
        _minplus(h, trans_t[tr0 + (t - 1) * tstep], back)
        for i in range(k):
            out[t - 1, i] += back[i]
    return low


@_batched
def _minsum_batch(lo, hi, unary, trans, trans_t, per_position, tok_off, tr_off, start, end, out,
                  low, tmp):
    """``tmp`` (rows, 3, K): :func:`_minsum_seq`'s scratch per thread."""
    tstep = 1 if per_position else 0
    rows = tmp.shape[0]
    for row in prange(rows):
        first, last = _block(lo, hi, row, rows)
        for s in range(first, last):
            a = tok_off[s]
            b = tok_off[s + 1]
            tr0 = tr_off[s] if per_position else 0
            low[s] = _minsum_seq(unary[a:b], trans, trans_t, tr0, tstep, start, end, out[a:b],
                                 tmp[row])


# ------------------------------------------------------------ sum-product forward-backward
@njit(**NJIT_OPTIONS)
def _fb_scaled_seq(unary, start, end, mat, mat_t, beta, alpha, u, out, vec):
    """Scaled forward-backward of one sequence with a shared transition (module docstring).

    ``mat`` = exp(-beta (transition - c)) and ``mat_t`` its transpose. Writes the marginals
    into ``out`` (T, K). On success ``alpha[t - 1] / D_t`` and ``g_t`` (t >= 1) are left in
    ``alpha[t - 1]`` and ``u[t]``: the expected transition counts of the sequence are
    ``mat * sum_t outer(alpha[t - 1], u[t])``. ``alpha``, ``u`` (T, K) and ``vec`` (4, K)
    are scratch.

    Returns (ok, F - (T - 1) c) with F = -ln Z / beta the free energy. ok is False when the
    scaled domain could lose precision (the caller then runs :func:`_fb_log_seq`); F is
    ``+inf`` when every path is forbidden (``out`` then untouched). In both cases
    ``alpha`` and ``u`` hold garbage.
    """
    n, k = unary.shape
    if n == 0:
        return True, 0.0
    free = 0.0
    v = vec[0]
    erow = vec[1]
    for t in range(n):
        low = INF
        for j in range(k):
            e = _row_energy(unary, start, end, t, n, j)
            erow[j] = e
            if e < low:
                low = e
        if low == INF:
            return True, INF
        for j in range(k):
            u[t, j] = np.exp(-beta * (erow[j] - low))
        if t == 0:
            for j in range(k):
                v[j] = u[0, j]
        else:
            _vecmat(alpha[t - 1], mat, v)
            for j in range(k):
                v[j] *= u[t, j]
        total = 0.0
        for j in range(k):
            total += v[j]
        for j in range(k):
            # A kept value is exactly 0 (no feasible predecessor) or >= TINY.
            if v[j] < TINY and erow[j] < INF:
                if v[j] > 0.0 or t == 0:
                    return False, 0.0
                for i in range(k):
                    if alpha[t - 1, i] > 0.0 and mat[i, j] > 0.0:
                        return False, 0.0
        if total == 0.0:
            return True, INF
        inv = 1.0 / total
        for j in range(k):
            alpha[t, j] = v[j] * inv
        free += low - np.log(total) / beta

    b = vec[1]
    bb = vec[3]
    for j in range(k):
        b[j] = 1.0
    for t in range(n - 1, 0, -1):
        g = u[t]
        for j in range(k):
            g[j] *= b[j]
        _vecmat(g, mat_t, bb)
        d = 0.0
        for i in range(k):
            a = alpha[t - 1, i]
            if a > 0.0:
                if bb[i] < TINY:
                    if bb[i] > 0.0:
                        return False, 0.0
                    for j in range(k):
                        if mat[i, j] > 0.0 and alpha[t, j] > 0.0 and b[j] > 0.0:
                            return False, 0.0
                d += a * bb[i]
        if d < TINY:
            return False, 0.0
        _scaled_marginal(alpha[t], b, out[t])
        # alpha[t - 1] / D: marginals only need alpha[t - 1] up to a factor
        inv = 1.0 / d
        for i in range(k):
            alpha[t - 1, i] *= inv
        top = 0.0
        for i in range(k):
            if bb[i] > top:
                top = bb[i]
        for i in range(k):
            b[i] = bb[i] / top
    _scaled_marginal(alpha[0], b, out[0])
    return True, free


@njit(inline="always", **NJIT_OPTIONS)
def _scaled_marginal(alpha, b, out):
    dot = 0.0
    for j in range(alpha.shape[0]):
        dot += alpha[j] * b[j]
    inv = 1.0 / dot
    for j in range(alpha.shape[0]):
        out[j] = alpha[j] * b[j] * inv


@njit(inline="always", **NJIT_OPTIONS)
def _energy_marginal(fa, fb, beta, out):
    """out = softmax(-beta (fa + fb)) over one token (entries +inf give 0)."""
    k = fa.shape[0]
    low = INF
    for j in range(k):
        x = fa[j] + fb[j]
        if x < low:
            low = x
    total = 0.0
    for j in range(k):
        x = fa[j] + fb[j]
        if x < INF:
            total += np.exp(-beta * (x - low))
    inv = 1.0 / total
    for j in range(k):
        x = fa[j] + fb[j]
        out[j] = np.exp(-beta * (x - low)) * inv if x < INF else 0.0


@njit(**NJIT_OPTIONS)
def _fb_log_seq(unary, start, end, trans, trans_t, tr0, tstep, beta, fa, out, xi, xi0, xistep, vec):
    """Log-domain forward-backward of one sequence (any transitions), kept in energy units
    so that ``beta * energy`` never overflows: soft minima
    ``softmin(z) = min(z) - ln sum exp(-beta (z - min(z))) / beta``, each row shifted to
    minimum 0.

    Writes the marginals into ``out`` (T, K) (untouched if every path is forbidden) and
    adds the expected transition counts of position t into ``xi[xi0 + (t - 1) * xistep]``.
    ``fa`` (T, K) and ``vec`` (5, K) are scratch. Returns the free energy F = -ln Z / beta
    (``+inf`` if every path is forbidden).
    """
    n, k = unary.shape
    if n == 0:
        return 0.0
    mn = vec[0]
    sm = vec[1]
    fb = vec[2]
    h = vec[3]
    nb = vec[4]
    low = INF
    for j in range(k):
        x = _row_energy(unary, start, end, 0, n, j)
        fa[0, j] = x
        if x < low:
            low = x
    if low == INF:
        return INF
    for j in range(k):
        fa[0, j] -= low
    free = low
    for t in range(1, n):
        tr = trans[tr0 + (t - 1) * tstep]
        for j in range(k):
            mn[j] = INF
            sm[j] = 0.0
        for i in range(k):
            a = fa[t - 1, i]
            if a == INF:
                continue
            for j in range(k):
                x = a + tr[i, j]
                if x < mn[j]:
                    mn[j] = x
        for i in range(k):
            a = fa[t - 1, i]
            if a == INF:
                continue
            for j in range(k):
                x = a + tr[i, j]
                if x < INF:
                    sm[j] += np.exp(-beta * (x - mn[j]))
        low = INF
        for j in range(k):
            x = INF
            if mn[j] < INF:
                x = mn[j] - np.log(sm[j]) / beta + _row_energy(unary, start, end, t, n, j)
            fa[t, j] = x
            if x < low:
                low = x
        if low == INF:
            return INF
        for j in range(k):
            fa[t, j] -= low
        free += low
    total = 0.0
    for j in range(k):
        if fa[n - 1, j] < INF:
            total += np.exp(-beta * fa[n - 1, j])
    free -= np.log(total) / beta

    for j in range(k):
        fb[j] = 0.0
    _energy_marginal(fa[n - 1], fb, beta, out[n - 1])
    for t in range(n - 1, 0, -1):
        tr = trans[tr0 + (t - 1) * tstep]
        tr_t = trans_t[tr0 + (t - 1) * tstep]
        for j in range(k):
            h[j] = _row_energy(unary, start, end, t, n, j) + fb[j]
            mn[j] = INF
            sm[j] = 0.0
        for j in range(k):
            hj = h[j]
            if hj == INF:
                continue
            for i in range(k):
                x = hj + tr_t[j, i]
                if x < mn[i]:
                    mn[i] = x
        for j in range(k):
            hj = h[j]
            if hj == INF:
                continue
            for i in range(k):
                x = hj + tr_t[j, i]
                if x < INF:
                    sm[i] += np.exp(-beta * (x - mn[i]))
        for i in range(k):
            nb[i] = mn[i] - np.log(sm[i]) / beta if mn[i] < INF else INF
        # z_t = softmin_i(fa[t-1, i] + nb[i]): the normalizer of position t's counts.
        zlow = INF
        for i in range(k):
            x = fa[t - 1, i] + nb[i]
            if x < zlow:
                zlow = x
        zsum = 0.0
        for i in range(k):
            x = fa[t - 1, i] + nb[i]
            if x < INF:
                zsum += np.exp(-beta * (x - zlow))
        z_t = zlow - np.log(zsum) / beta
        slab = xi[xi0 + (t - 1) * xistep]
        for i in range(k):
            a = fa[t - 1, i]
            if a == INF or nb[i] == INF:
                continue
            row = slab[i]
            for j in range(k):
                x = a + tr[i, j] + h[j]
                if x < INF:
                    row[j] += np.exp(-beta * (x - z_t))
        low = INF
        for i in range(k):
            if nb[i] < low:
                low = nb[i]
        for i in range(k):
            fb[i] = nb[i] - low
        _energy_marginal(fa[t - 1], fb, beta, out[t - 1])
    return free


@_batched
def _fb_scaled_batch(
    lo, hi, unary, mat, mat_t, shift, beta, tok_off, chunk_off, start, end, out, free, alpha,
    g, xi_chunks, log_domain, vecs,
):
    """Scaled forward-backward at finite beta on a batch with a shared transition
    (:func:`_fb_scaled_seq`): marginals into ``out``, free energies into ``free``, and, per
    fixed chunk of sequences, the partial sums sum_t outer(alpha[t - 1], g[t]) of the
    expected transition counts into ``xi_chunks[c]`` (the counts once multiplied by ``mat``
    elementwise; summed by the caller in chunk order, so that results do not depend on the
    number of threads). ``alpha`` and ``g`` (N, K) are scratch, and ``vecs`` (rows, 5, K)
    per thread. A sequence that the scaled domain cannot take is left to
    :func:`_fb_log_batch`: ``log_domain[s]`` becomes True. Chunks ``lo..hi-1``.
    """
    rows = vecs.shape[0]
    for row in prange(rows):
        vec = vecs[row]
        c_first, c_last = _block(lo, hi, row, rows)
        for c in range(c_first, c_last):
            acc = xi_chunks[c]
            for s in range(chunk_off[c], chunk_off[c + 1]):
                a = tok_off[s]
                b = tok_off[s + 1]
                if a == b:
                    free[s] = 0.0
                    continue
                ok, f = _fb_scaled_seq(
                    unary[a:b], start, end, mat, mat_t, beta, alpha[a:b], g[a:b], out[a:b],
                    vec,
                )
                if not ok:
                    log_domain[s] = True
                elif f == INF:
                    out[a:b] = 0.0
                    free[s] = INF
                else:
                    free[s] = f + (b - a - 1) * shift
                    _outer_sum(alpha[a:b], g[a:b], acc)


@_batched
def _fb_log_batch(
    lo, hi, unary, trans, trans_t, per_position, beta, tok_off, tr_off, chunk_off, start, end,
    out, free, xi_log, xi_pos, log_domain, vecs, locals3, fas,
):
    """Log-domain forward-backward at finite beta (:func:`_fb_log_seq`) on the sequences
    ``s`` of a batch with ``log_domain[s]``: marginals into ``out``, free energies into
    ``free``; the expected transition counts per fixed chunk of sequences into
    ``xi_log[c]`` (shared transition), or laid out like ``trans`` into ``xi_pos``
    (per-position transitions). A kernel of its own, so that a batch that the scaled domain
    takes whole (:func:`_fb_scaled_batch`) never compiles it (about 3 s on first use).
    Chunks ``lo..hi-1``; per thread, ``vecs`` (rows, 5, K), ``locals3`` (rows, 1, K, K) and
    ``fas`` (rows, T, K) with T the longest sequence are scratch.
    """
    k = unary.shape[1]
    # int64s, not literals, for both calls of _fb_log_seq: one specialization, not two.
    zero = np.int64(0)
    one = np.int64(1)
    rows = vecs.shape[0]
    for row in prange(rows):
        vec = vecs[row]
        local3 = locals3[row]
        local = local3[0]
        fa = fas[row]
        c_first, c_last = _block(lo, hi, row, rows)
        for c in range(c_first, c_last):
            for s in range(chunk_off[c], chunk_off[c + 1]):
                if not log_domain[s]:
                    continue
                a = tok_off[s]
                b = tok_off[s + 1]
                if a == b:
                    free[s] = 0.0
                    continue
                out[a:b] = 0.0
                if per_position:
                    tr0 = tr_off[s]
                    free[s] = _fb_log_seq(
                        unary[a:b], start, end, trans, trans_t, tr0, one, beta, fa, out[a:b],
                        xi_pos, tr0, one, vec,
                    )
                else:
                    local[:, :] = 0.0
                    free[s] = _fb_log_seq(
                        unary[a:b], start, end, trans, trans_t, zero, zero, beta, fa,
                        out[a:b], local3, zero, zero, vec,
                    )
                    acc_log = xi_log[c]
                    for i in range(k):
                        for j in range(k):
                            acc_log[i, j] += local[i, j]


# --------------------------------------------------------------------------- k-best
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


# ------------------------------------------------------------- most offending incorrect
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


# --------------------------------------------------------------------------- validation
class _Batch(NamedTuple):
    """Validated, coerced inputs shared by the public functions."""

    unary: np.ndarray  # (N, K) float64, clamping applied
    trans: np.ndarray  # (1 or P, K, K) float64
    per_position: bool
    tok_off: np.ndarray  # (n_seq + 1,) int64
    tr_off: np.ndarray  # (n_seq + 1,) int64
    start: np.ndarray  # (K,)
    end: np.ndarray  # (K,)
    state_label: np.ndarray  # (K,) int64
    n_labels: int
    identity_labels: bool


def _where_token(tok_off, t) -> str:
    s = int(np.searchsorted(tok_off, t, side="right")) - 1
    return f"(sequence {s}, position {t - int(tok_off[s])})"


def _check_energies(name, arr, where) -> None:
    """Refuse NaN and -inf, naming the first bad entry; ``where(index) -> str``."""
    bad = np.isnan(arr) | (arr == -np.inf)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        shown = ", ".join(map(str, idx))
        raise FactorGraphError(
            f"{name}[{shown}] {where(idx)}is {arr[idx]}; energies must be finite or +inf"
        )


def _float_array(name, value) -> np.ndarray:
    return np.ascontiguousarray(V.real_array(value, name, copy=False))


def _int_array(name, value, shape) -> np.ndarray:
    arr = V.integer_array(value, name)
    if arr.shape != shape:
        raise FactorGraphError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels) -> _Batch:
    u = _float_array("unary", unary)
    if u.ndim != 2 or u.shape[1] < 1:
        raise FactorGraphError(
            f"unary must have shape (n_tokens, K) with K >= 1 states, got shape {u.shape}"
        )
    n_tokens, k = u.shape

    if lengths is None:
        lens = np.array([n_tokens], dtype=np.int64)
    else:
        lens = V.integer_array(lengths, "lengths")
        if lens.ndim != 1:
            raise FactorGraphError(f"lengths must have shape (n_seq,), got shape {lens.shape}")
        if lens.size and lens.min() < 0:
            s = int(np.argmin(lens))
            raise FactorGraphError(f"lengths[{s}] = {lens[s]}; lengths must be >= 0")
        if int(lens.sum()) != n_tokens:
            raise FactorGraphError(
                f"lengths must sum to n_tokens = unary.shape[0] = {n_tokens}, "
                f"got sum {int(lens.sum())}"
            )
    tok_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=tok_off[1:])
    tr_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(np.maximum(lens - 1, 0), out=tr_off[1:])
    n_pos = int(tr_off[-1])
    _check_energies("unary", u, lambda idx: _where_token(tok_off, idx[0]) + " ")

    tr = _float_array("transition", transition)
    if tr.ndim == 2:
        if tr.shape != (k, k):
            raise FactorGraphError(
                f"transition must have shape (K, K) = {(k, k)} (shared) or "
                f"(n_tokens - n_nonempty_sequences, K, K) = {(n_pos, k, k)} (per position), "
                f"got {tr.shape}"
            )
        _check_energies("transition", tr, lambda idx: "")
        trans = tr.reshape(1, k, k)
        per_position = False
    elif tr.ndim == 3 and tr.shape == (n_pos, k, k):
        trans = tr
        per_position = True

        def where(idx):
            s = int(np.searchsorted(tr_off, idx[0], side="right")) - 1
            t = idx[0] - int(tr_off[s]) + 1
            return f"(sequence {s}, between positions {t - 1} and {t}) "

        _check_energies("transition", tr, where)
    else:
        raise FactorGraphError(
            f"transition must have shape (K, K) = {(k, k)} (shared) or "
            f"(n_tokens - n_nonempty_sequences, K, K) = {(n_pos, k, k)} (per position), "
            f"got {tr.shape}"
        )

    ends = []
    for name, value in (("start", start), ("end", end)):
        if value is None:
            ends.append(np.zeros(k))
            continue
        arr = _float_array(name, value)
        if arr.shape != (k,):
            raise FactorGraphError(f"{name} must have shape (K,) = ({k},), got {arr.shape}")
        _check_energies(name, arr, lambda idx: "")
        ends.append(arr)

    if state_label is None:
        labels = np.arange(k, dtype=np.int64)
        identity = n_labels is None or n_labels == k
    else:
        labels = _int_array("state_label", state_label, (k,))
        identity = False
    if n_labels is None:
        n_lab = int(labels.max()) + 1 if k else 0
    else:
        n_lab = V.integer(n_labels, "n_labels", low=1)
    bad = np.flatnonzero((labels < 0) | (labels >= n_lab))
    if bad.size:
        i = int(bad[0])
        raise FactorGraphError(
            f"state_label[{i}] = {labels[i]} is out of range: labels must be in 0..{n_lab - 1}"
        )
    identity = identity and n_lab == k

    if clamp is not None:
        cl = _int_array("clamp", clamp, (n_tokens,))
        bad = np.flatnonzero((cl < -1) | (cl >= n_lab))
        if bad.size:
            t = int(bad[0])
            raise FactorGraphError(
                f"clamp[{t}] {_where_token(tok_off, t)} = {cl[t]} is out of range: expected a "
                f"label in 0..{n_lab - 1}, or -1 for an unconstrained position"
            )
        mask = (cl[:, None] >= 0) & (labels[None, :] != cl[:, None])
        if mask.any():
            u = u.copy()
            u[mask] = np.inf
    return _Batch(
        u, trans, per_position, tok_off, tr_off, ends[0], ends[1], labels, n_lab, identity
    )


def _work(batch: _Batch) -> int:
    """Tokens x K^2: the cost of a pass over the batch."""
    n_tokens, k = batch.unary.shape
    return n_tokens * k * k


def _longest(batch: _Batch) -> int:
    """Tokens of the longest sequence, at least 1 (the rows of the per-thread scratch)."""
    return max(1, int(np.diff(batch.tok_off).max(initial=1)))




def _transposed(trans) -> np.ndarray:
    return np.ascontiguousarray(trans.transpose(0, 2, 1))


# --------------------------------------------------------------------------- public API
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


def forward_backward(
    unary,
    transition,
    lengths=None,
    *,
    beta=1.0,
    start=None,
    end=None,
    state_label=None,
    clamp=None,
    n_labels=None,
) -> ForwardBackwardResult:
    """Marginals, free energies and their gradients on every sequence of a batch.

    At finite inverse temperature ``beta`` > 0: the Gibbs distribution
    P(y) = exp(-beta E(y)) / Z per sequence, its state marginals P(y_t = k), ln Z and the
    free energy F = -ln Z / beta, with ``dF/d unary = marginals``,
    ``dF/d transition = transition_marginals``, ``dF/d start = start_marginals`` and
    ``dF/d end = end_marginals`` (what negative log-likelihood training needs; LeCun et al.
    2006, sec. 2.2 and 6). Forward-backward in the scaled probability domain, or the
    log domain where scaling could underflow (module docstring; Rabiner 1989).

    At ``beta=inf``: min-sum forward-backward, the absolute min-marginals (lowest energy of
    the paths with y_t = k) and the minimum energy as ``free_energy``.

    Parameters
    ----------
    unary, transition, lengths, start, end, state_label, clamp, n_labels
        As in :func:`viterbi`. With ``clamp`` the free energy is that of the desired labels
        over the latent states, -1/beta ln sum_Z exp(-beta E(Y, Z)).
    beta : float, default=1.0
        Inverse temperature, > 0; ``inf`` for min-sum.

    Returns
    -------
    ForwardBackwardResult
        See its attributes. A sequence of which every path is forbidden has
        ``log_partition = -inf``, ``free_energy = +inf`` and all-zero marginals (min-sum:
        all ``+inf`` min-marginals); an empty one has ln Z = 0 and F = 0. For
        ``beta=inf``, ``log_partition`` is NaN and the transition, start and end marginals
        are None.

    Raises
    ------
    FactorGraphError
        As :func:`viterbi`, and a ``beta`` that is not > 0.

    Examples
    --------
    The batch of :func:`viterbi`'s example; ln Z of the second sequence by brute force
    over its four paths (energies 2.5, 3, 2 and 0):

    >>> import numpy as np
    >>> from factorgraph_ebm import trellis
    >>> unary = np.array([[0, 1.5], [1, 0.25], [0, 2], [2, 0], [0.5, 0]])
    >>> transition = np.array([[0.0, 1.0], [1.5, 0.0]])     # energy of a switch of state
    >>> fb = trellis.forward_backward(unary, transition, lengths=[3, 2], beta=1.0)
    >>> np.round(fb.log_partition, 6).tolist()
    [-0.561388, 0.236816]
    >>> round(float(np.log(np.exp(-np.array([2.5, 3.0, 2.0, 0.0])).sum())), 6)
    0.236816
    >>> np.round(fb.marginals[3:], 4).tolist()     # P(y_t = k) on the second sequence
    [[0.1041, 0.8959], [0.1716, 0.8284]]
    """
    beta = checked_beta(beta)
    batch = _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels)
    n_tokens, k = batch.unary.shape
    n_seq = len(batch.tok_off) - 1
    out = np.zeros((n_tokens, k))
    trans_t = _transposed(batch.trans)
    if math.isinf(beta):
        low = np.empty(n_seq)
        _minsum_batch(
            _work(batch),
            n_seq,
            lambda rows: (np.empty((rows, 3, k)),),
            batch.unary,
            batch.trans,
            trans_t,
            batch.per_position,
            batch.tok_off,
            batch.tr_off,
            batch.start,
            batch.end,
            out,
            low,
        )
        return ForwardBackwardResult(
            out, _label_marginals(out, batch, True), np.full(n_seq, np.nan), low, None, None, None
        )

    shift = 0.0
    scaled = False
    mat = np.zeros((k, k))
    if not batch.per_position:
        table = batch.trans[0]
        finite = table[np.isfinite(table)]
        if finite.size:
            shift = float(finite.min())
            with np.errstate(over="ignore"):
                scaled = beta * (float(finite.max()) - shift) <= SCALED_RANGE
        else:
            scaled = True
        if scaled:
            mat = np.exp(-beta * (table - shift))
    mat_t = np.ascontiguousarray(mat.T)
    n_chunks = min(n_seq, MAX_CHUNKS, max(1, CHUNK_BYTES // (8 * k * k)))
    chunk_off = (np.arange(n_chunks + 1, dtype=np.int64) * n_seq) // max(n_chunks, 1)
    if batch.per_position:
        xi_chunks = xi_log = np.zeros((n_chunks, 1, 1))
        xi_pos = np.zeros(batch.trans.shape)
    else:
        xi_chunks = np.zeros((n_chunks, k, k))
        xi_log = np.zeros((n_chunks, k, k))
        xi_pos = np.zeros((1, 1, 1))
    free = np.zeros(n_seq)
    work = _work(batch)
    log_domain = np.full(n_seq, not scaled)
    if scaled:
        _fb_scaled_batch(work, n_chunks, lambda rows: (np.empty((rows, 5, k)),), batch.unary,
                         mat, mat_t, shift, beta, batch.tok_off, chunk_off, batch.start,
                         batch.end, out, free, np.empty((n_tokens, k)), np.empty((n_tokens, k)),
                         xi_chunks, log_domain)
    if log_domain.any():
        longest = _longest(batch)
        _fb_log_batch(work, n_chunks,
                      lambda rows: (np.empty((rows, 5, k)), np.zeros((rows, 1, k, k)),
                                    np.empty((rows, longest, k))),
                      batch.unary, batch.trans, trans_t, batch.per_position, beta,
                      batch.tok_off, batch.tr_off, chunk_off, batch.start, batch.end, out,
                      free, xi_log, xi_pos, log_domain)
    if batch.per_position:
        xi = xi_pos
    else:
        xi = mat * xi_chunks.sum(axis=0) + xi_log.sum(axis=0)
    lens = np.diff(batch.tok_off)
    first = batch.tok_off[:-1][lens > 0]
    last = batch.tok_off[1:][lens > 0] - 1
    start_marg = out[first].sum(axis=0)
    end_marg = out[last].sum(axis=0)
    with np.errstate(over="ignore"):
        log_z = 0.0 - beta * free
    return ForwardBackwardResult(
        out,
        _label_marginals(out, batch, False),
        log_z,
        free,
        xi,
        start_marg,
        end_marg,
    )


def _label_marginals(out, batch: _Batch, minimum: bool) -> np.ndarray:
    if batch.identity_labels:
        return out
    n_tokens = out.shape[0]
    if not minimum:
        onehot = np.zeros((len(batch.state_label), batch.n_labels))
        onehot[np.arange(len(batch.state_label)), batch.state_label] = 1.0
        return out @ onehot
    result = np.full((n_tokens, batch.n_labels), np.inf)
    for lab in range(batch.n_labels):
        members = np.flatnonzero(batch.state_label == lab)
        if members.size:
            result[:, lab] = out[:, members].min(axis=1)
    return result


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
