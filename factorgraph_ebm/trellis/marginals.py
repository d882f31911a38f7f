"""Marginals and free energies: forward-backward in the scaled probability domain or the log
domain (Rabiner 1989), and min-sum forward-backward (absolute min-marginals) at ``beta=inf``
(see :mod:`factorgraph_ebm.trellis`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from .._config import INF, NJIT_OPTIONS, njit
from ..inference import temperature_of
from ._batch import (
    CHUNK_BYTES,
    MAX_CHUNKS,
    _Batch,
    _batched,
    _block,
    _longest,
    _prepare,
    _transposed,
    _work,
)
from ._semiring import _minplus, _outer_sum, _row_energy, _vecmat

#: Smallest value the scaled forward-backward keeps (far above the subnormal range).
TINY = 1e-290


#: Largest ``beta * (max - min)`` over the finite shared transition energies for which the
#: scaled probability domain is used; beyond it the log domain.
SCALED_RANGE = 300.0


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


@njit(**NJIT_OPTIONS)
def _fb_scaled_seq(unary, start, end, mat, mat_t, temperature, alpha, u, out, vec):
    """Scaled forward-backward of one sequence with a shared transition (module docstring),
    at temperature T = 1/beta > 0 (the engine's convention, :mod:`factorgraph_ebm.messages`).

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
    beta = 1.0 / temperature
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
def _fb_log_seq(unary, start, end, trans, trans_t, tr0, tstep, temperature, fa, out, xi, xi0,
                xistep, vec):
    """Log-domain forward-backward of one sequence (any transitions) at temperature T > 0,
    kept in energy units
    so that ``beta * energy`` never overflows: soft minima
    ``softmin(z) = min(z) - ln sum exp(-beta (z - min(z))) / beta``, each row shifted to
    minimum 0.

    Writes the marginals into ``out`` (T, K) (untouched if every path is forbidden) and
    adds the expected transition counts of position t into ``xi[xi0 + (t - 1) * xistep]``.
    ``fa`` (T, K) and ``vec`` (5, K) are scratch. Returns the free energy F = -ln Z / beta
    (``+inf`` if every path is forbidden).
    """
    beta = 1.0 / temperature
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
    lo, hi, unary, mat, mat_t, shift, temperature, tok_off, chunk_off, start, end, out, free,
    alpha,
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
                    unary[a:b], start, end, mat, mat_t, temperature, alpha[a:b], g[a:b], out[a:b],
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
    lo, hi, unary, trans, trans_t, per_position, temperature, tok_off, tr_off, chunk_off, start,
    end,
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
                        unary[a:b], start, end, trans, trans_t, tr0, one, temperature, fa, out[a:b],
                        xi_pos, tr0, one, vec,
                    )
                else:
                    local[:, :] = 0.0
                    free[s] = _fb_log_seq(
                        unary[a:b], start, end, trans, trans_t, zero, zero, temperature, fa,
                        out[a:b], local3, zero, zero, vec,
                    )
                    acc_log = xi_log[c]
                    for i in range(k):
                        for j in range(k):
                            acc_log[i, j] += local[i, j]


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
    temperature = temperature_of(beta)  # the kernels take T = 1/beta, as the engine's do
    batch = _prepare(unary, transition, lengths, start, end, state_label, clamp, n_labels)
    n_tokens, k = batch.unary.shape
    n_seq = len(batch.tok_off) - 1
    out = np.zeros((n_tokens, k))
    trans_t = _transposed(batch.trans)
    if temperature == 0.0:
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
                scaled = (float(finite.max()) - shift) / temperature <= SCALED_RANGE
        else:
            scaled = True
        if scaled:
            mat = np.exp(-(table - shift) / temperature)
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
                         mat, mat_t, shift, temperature, batch.tok_off, chunk_off, batch.start,
                         batch.end, out, free, np.empty((n_tokens, k)), np.empty((n_tokens, k)),
                         xi_chunks, log_domain)
    if log_domain.any():
        longest = _longest(batch)
        _fb_log_batch(work, n_chunks,
                      lambda rows: (np.empty((rows, 5, k)), np.zeros((rows, 1, k, k)),
                                    np.empty((rows, longest, k))),
                      batch.unary, batch.trans, trans_t, batch.per_position, temperature,
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
