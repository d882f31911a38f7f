"""Numba kernels of exact inference on a junction tree, both semirings at temperature T.

The tree is the elimination (bucket) tree of :mod:`factorgraph_ebm.exact.order`: clique
``c`` holds the variable ``var[c]`` eliminated at step ``c`` (its last, fastest-changing
axis) and the variables adjacent to it then (its separator, the other axes, in C order).
Its parent has a higher index, so a loop over ``c`` upwards is the collect pass and a loop
downwards the distribute pass (Shafer & Shenoy 1990; Lauritzen & Spiegelhalter 1988 for
the Hugin form of the downward messages used here; Dechter 1999 for bucket elimination).

In the energy domain, with softmin_T(z) = -T log sum exp(-z / T) and softmin_0 = min:

- collect: ``psi_c`` = the factors assigned to ``c`` + the unary energies of ``var[c]`` +
  the upward messages of its children; ``up_c(s) = softmin_T over var[c] of psi_c(s, .)``;
- decode: from the roots down, ``var[c]`` takes the first state of lowest ``psi_c`` given
  its separator's states (exact joint minimum at T = 0; at T > 0 each variable takes its
  most probable state given the ones decoded before, which is exact conditioning);
- distribute, in place: ``belief_c = psi_c + down_c`` where ``down_c(s)`` =
  softmin_T of the parent's belief over the entries that agree with ``s``, minus
  ``up_c(s)``; where ``up_c(s)`` is ``+inf`` every belief of ``c`` with that ``s`` is
  ``+inf`` anyway, and ``down_c(s)`` is set to ``+inf`` (the energy form of Hugin's
  0/0 = 0), so ``inf - inf`` never happens.

After distribute, ``belief_c`` is the exact min-marginal (T = 0) or marginal free energy
(T > 0) of the clique's variables, absolute: its softmin over all entries is the free
energy F = -T ln Z of the whole model (the minimum energy at T = 0).

Every table is visited by an odometer over its axes with a stride per axis into the other
table (0 for an axis the other table lacks), the last axis as a plain inner loop. The
kernels assume validated input and never raise.
"""

import numpy as np

from .._config import NJIT_OPTIONS, njit

INF = np.inf


@njit(inline="always", **NJIT_OPTIONS)
def _advance(digits, cards, strides, n, index):
    """Step the odometer over axes 0..n-2 (the last axis is the caller's inner loop);
    returns the new index into the other table."""
    j = n - 2
    while j >= 0:
        digits[j] += 1
        index += strides[j]
        if digits[j] < cards[j]:
            return index
        index -= cards[j] * strides[j]
        digits[j] = 0
        j -= 1
    return index


@njit(inline="always", **NJIT_OPTIONS)
def _gather_add(dst, lo, cards, strides, n, src, base, digits):
    """``dst[lo + e] += src[base + idx(e)]`` over the C-order table of shape ``cards[:n]``."""
    inner = cards[n - 1]
    step = strides[n - 1]
    outer = 1
    for j in range(n - 1):
        outer *= cards[j]
        digits[j] = 0
    index = base
    e = lo
    for _ in range(outer):
        for x in range(inner):
            dst[e] += src[index + x * step]
            e += 1
        index = _advance(digits, cards, strides, n, index)


@njit(inline="always", **NJIT_OPTIONS)
def _scatter_min(src, lo, cards, strides, n, dst, base, digits):
    """``dst[base + idx(e)] = min(dst[...], src[lo + e])`` over the table ``cards[:n]``."""
    inner = cards[n - 1]
    step = strides[n - 1]
    outer = 1
    for j in range(n - 1):
        outer *= cards[j]
        digits[j] = 0
    index = base
    e = lo
    for _ in range(outer):
        for x in range(inner):
            k = index + x * step
            if src[e] < dst[k]:
                dst[k] = src[e]
            e += 1
        index = _advance(digits, cards, strides, n, index)


@njit(inline="always", **NJIT_OPTIONS)
def _scatter_sum_exp(src, lo, cards, strides, n, low, base, acc, acc_base, temperature,
                     digits):
    """``acc[acc_base + idx(e)] += exp(-(src[lo + e] - low[base + idx(e)]) / T)`` where
    ``low`` (the minimum from :func:`_scatter_min`) is finite."""
    inner = cards[n - 1]
    step = strides[n - 1]
    outer = 1
    for j in range(n - 1):
        outer *= cards[j]
        digits[j] = 0
    index = 0
    e = lo
    for _ in range(outer):
        for x in range(inner):
            k = index + x * step
            m = low[base + k]
            if m < INF:
                acc[acc_base + k] += np.exp(-(src[e] - m) / temperature)
            e += 1
        index = _advance(digits, cards, strides, n, index)


@njit(**NJIT_OPTIONS)
def collect(jt, theta, unary, state_offset, temperature, psi, up):
    """Upward pass: fills ``psi`` (zeros on entry) and the upward messages ``up``."""
    digits = np.zeros(jt.max_scope, dtype=np.int64)
    n_cliques = len(jt.var)
    for c in range(n_cliques):
        lo = jt.table_offset[c]
        a = jt.scope_ptr[c]
        n = jt.scope_ptr[c + 1] - a
        cards = jt.scope_card[a : a + n]
        for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
            strides = jt.factor_stride[jt.factor_stride_ptr[j] : jt.factor_stride_ptr[j + 1]]
            _gather_add(psi, lo, cards, strides, n, theta, jt.factor_base[j], digits)
        k = cards[n - 1]
        first = state_offset[jt.var[c]]
        so = jt.sep_offset[c]
        n_sep = jt.sep_offset[c + 1] - so
        for s in range(n_sep):
            row = lo + s * k
            low = INF
            for x in range(k):
                psi[row + x] += unary[first + x]
                if psi[row + x] < low:
                    low = psi[row + x]
            if temperature > 0.0 and low < INF:
                total = 0.0
                for x in range(k):
                    total += np.exp(-(psi[row + x] - low) / temperature)
                low -= temperature * np.log(total)
            up[so + s] = low
        p = jt.parent[c]
        if p >= 0:
            pa = jt.scope_ptr[p]
            pn = jt.scope_ptr[p + 1] - pa
            strides = jt.parent_stride[jt.parent_stride_ptr[c] : jt.parent_stride_ptr[c + 1]]
            _gather_add(psi, jt.table_offset[p], jt.scope_card[pa : pa + pn], strides, pn,
                        up, so, digits)


@njit(**NJIT_OPTIONS)
def decode(jt, psi, assignment):
    """Top-down decoding: each eliminated variable takes the first state of lowest
    ``psi`` given its separator's states. ``assignment`` holds the clamped states on
    entry. Run between :func:`collect` and :func:`distribute`."""
    for c in range(len(jt.var) - 1, -1, -1):
        a = jt.scope_ptr[c]
        n = jt.scope_ptr[c + 1] - a
        s = 0
        for j in range(n - 1):
            s = s * jt.scope_card[a + j] + assignment[jt.scope_vars[a + j]]
        k = jt.scope_card[a + n - 1]
        row = jt.table_offset[c] + s * k
        best = 0
        for x in range(1, k):
            if psi[row + x] < psi[row + best]:
                best = x
        assignment[jt.var[c]] = best


@njit(**NJIT_OPTIONS)
def distribute(jt, temperature, psi, up, down, root_down, scratch):
    """Downward pass, turning ``psi`` into the clique beliefs in place. ``root_down[c]``
    is what a root's belief lacks: the constant energy plus the other components' free
    energies. ``scratch`` holds at least the largest separator table."""
    digits = np.zeros(jt.max_scope, dtype=np.int64)
    for c in range(len(jt.var) - 1, -1, -1):
        so = jt.sep_offset[c]
        n_sep = jt.sep_offset[c + 1] - so
        p = jt.parent[c]
        if p < 0:
            down[so] = root_down[c]
        else:
            pa = jt.scope_ptr[p]
            pn = jt.scope_ptr[p + 1] - pa
            cards = jt.scope_card[pa : pa + pn]
            strides = jt.parent_stride[jt.parent_stride_ptr[c] : jt.parent_stride_ptr[c + 1]]
            plo = jt.table_offset[p]
            for s in range(n_sep):
                down[so + s] = INF
            _scatter_min(psi, plo, cards, strides, pn, down, so, digits)
            if temperature > 0.0:
                for s in range(n_sep):
                    scratch[s] = 0.0
                _scatter_sum_exp(psi, plo, cards, strides, pn, down, so, scratch, 0,
                                 temperature, digits)
                for s in range(n_sep):
                    if down[so + s] < INF:
                        down[so + s] -= temperature * np.log(scratch[s])
            for s in range(n_sep):
                u = up[so + s]
                down[so + s] = INF if u == INF else down[so + s] - u
        k = jt.scope_card[jt.scope_ptr[c + 1] - 1]
        lo = jt.table_offset[c]
        for s in range(n_sep):
            d = down[so + s]
            for x in range(k):
                psi[lo + s * k + x] += d


@njit(**NJIT_OPTIONS)
def variable_beliefs(jt, temperature, belief, state_offset, out):
    """Raw beliefs of the eliminated variables (softmin_T of their clique's belief over the
    separator) into the flat per-state ``out``."""
    for c in range(len(jt.var)):
        k = jt.scope_card[jt.scope_ptr[c + 1] - 1]
        first = state_offset[jt.var[c]]
        lo = jt.table_offset[c]
        n_sep = jt.sep_offset[c + 1] - jt.sep_offset[c]
        for x in range(k):
            low = INF
            for s in range(n_sep):
                b = belief[lo + s * k + x]
                if b < low:
                    low = b
            if temperature > 0.0 and low < INF:
                total = 0.0
                for s in range(n_sep):
                    total += np.exp(-(belief[lo + s * k + x] - low) / temperature)
                low -= temperature * np.log(total)
            out[first + x] = low


@njit(**NJIT_OPTIONS)
def factor_beliefs(jt, temperature, belief, table_offset, out, scratch):
    """Raw factor beliefs (softmin_T of the clique belief over the clique's other
    variables) into ``out`` (laid out as theta; ``+inf`` on entry, and where evidence
    rules a table entry out). ``scratch`` holds at least the largest table."""
    digits = np.zeros(jt.max_scope, dtype=np.int64)
    for c in range(len(jt.var)):
        lo = jt.table_offset[c]
        a = jt.scope_ptr[c]
        n = jt.scope_ptr[c + 1] - a
        cards = jt.scope_card[a : a + n]
        for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
            strides = jt.factor_stride[jt.factor_stride_ptr[j] : jt.factor_stride_ptr[j + 1]]
            base = jt.factor_base[j]
            _scatter_min(belief, lo, cards, strides, n, out, base, digits)
            if temperature > 0.0:
                f = jt.factor_id[j]
                t0 = table_offset[f]
                size = table_offset[f + 1] - t0
                for i in range(size):
                    scratch[i] = 0.0
                _scatter_sum_exp(belief, lo, cards, strides, n, out, base, scratch,
                                 base - t0, temperature, digits)
                for i in range(size):
                    if out[t0 + i] < INF:
                        out[t0 + i] -= temperature * np.log(scratch[i])
