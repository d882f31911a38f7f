"""Inner loops of the trellis recursions, inlined into the kernels: min-plus and
sum-product vector-matrix products over one transition matrix, and a token's energy with its
start and end terms."""

from __future__ import annotations

import numpy as np

from .._config import INF, NJIT_OPTIONS, njit


@njit(inline="always", **NJIT_OPTIONS)
def _row_energy(unary, start, end, t, n, j):
    """Energy of state j at token t of a sequence of length n, start and end included."""
    e = unary[t, j]
    if t == 0:
        e += start[j]
    if t == n - 1:
        e += end[j]
    return e


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
