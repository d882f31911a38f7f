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

After distribute, ``belief_c`` is the exact min-marginal (T = 0) of the clique's variables,
absolute: its minimum is the minimum energy of the whole model. At T > 0 the beliefs are
absolute too (their softmin is the free energy F = -T ln Z), so each is turned into the
clique's joint probability ``exp(-(belief - F) / T)`` <= 1 as soon as it is complete: the
separator, variable and factor marginals below it are then plain sums, one ``exp`` per
clique entry in all instead of one per entry and per child or factor (a probability under
1e-308 is taken as 0).

Every table is walked through a *map* (:mod:`.junction_tree`): an odometer over a few
merged axes with a stride each into the other table, the last axis a plain inner loop. The
kernels assume validated input and never raise.
"""

import numpy as np

from .._config import NJIT_OPTIONS, njit

INF = np.inf


@njit(inline="always", **NJIT_OPTIONS)
def _advance(digits, cards, strides, own, n, index, at):
    """Step the odometer over axes 0..n-2 (the last axis is the caller's inner loop);
    returns the new index into the other table and into the table itself."""
    j = n - 2
    while j >= 0:
        digits[j] += 1
        index += strides[j]
        at += own[j]
        if digits[j] < cards[j]:
            return index, at
        index -= cards[j] * strides[j]
        at -= cards[j] * own[j]
        digits[j] = 0
        j -= 1
    return index, at


@njit(inline="always", **NJIT_OPTIONS)
def _outer_size(cards, n, digits):
    outer = 1
    for j in range(n - 1):
        outer *= cards[j]
        digits[j] = 0
    return outer


@njit(inline="always", **NJIT_OPTIONS)
def _map(jt, m):
    lo = jt.map_ptr[m]
    hi = jt.map_ptr[m + 1]
    return jt.map_card[lo:hi], jt.map_stride[lo:hi], jt.map_self[lo:hi], hi - lo


@njit(inline="always", **NJIT_OPTIONS)
def _gather_add(dst, lo, cards, strides, own, n, src, base, digits):
    """``dst[lo + e] += src[base + idx(e)]`` over the table ``dst[lo:]`` walked by the map."""
    inner = cards[n - 1]
    step = strides[n - 1]
    hop = own[n - 1]
    index = base
    at = lo
    for _ in range(_outer_size(cards, n, digits)):
        if step == 0:
            value = src[index]
            for x in range(inner):
                dst[at + x * hop] += value
        else:
            for x in range(inner):
                dst[at + x * hop] += src[index + x * step]
        index, at = _advance(digits, cards, strides, own, n, index, at)


@njit(inline="always", **NJIT_OPTIONS)
def _scatter_min(src, lo, cards, strides, own, n, dst, base, digits):
    """``dst[base + idx(e)] = min(dst[...], src[lo + e])`` over the table ``src[lo:]``."""
    inner = cards[n - 1]
    step = strides[n - 1]
    hop = own[n - 1]
    index = base
    at = lo
    for _ in range(_outer_size(cards, n, digits)):
        if step == 0:
            low = dst[index]
            for x in range(inner):
                if src[at + x * hop] < low:
                    low = src[at + x * hop]
            dst[index] = low
        else:
            for x in range(inner):
                k = index + x * step
                if src[at + x * hop] < dst[k]:
                    dst[k] = src[at + x * hop]
        index, at = _advance(digits, cards, strides, own, n, index, at)


@njit(inline="always", **NJIT_OPTIONS)
def _scatter_add(src, lo, cards, strides, own, n, dst, base, digits):
    """``dst[base + idx(e)] += src[lo + e]`` over the table ``src[lo:]``."""
    inner = cards[n - 1]
    step = strides[n - 1]
    hop = own[n - 1]
    index = base
    at = lo
    for _ in range(_outer_size(cards, n, digits)):
        if step == 0:
            total = 0.0
            for x in range(inner):
                total += src[at + x * hop]
            dst[index] += total
        else:
            for x in range(inner):
                dst[index + x * step] += src[at + x * hop]
        index, at = _advance(digits, cards, strides, own, n, index, at)


@njit(inline="always", **NJIT_OPTIONS)
def _high_base(jt, m, hdigits, nh, base):
    """Where map ``m`` starts in its other table for the block at the high axes' digits."""
    h = jt.high_ptr[m]
    for j in range(nh):
        base += hdigits[j] * jt.high_stride[h + j]
    return base


@njit(inline="always", **NJIT_OPTIONS)
def _next_block(jt, c, hdigits, nh):
    """Step the odometer over clique ``c``'s high axes to the next block."""
    lo = jt.scope_ptr[c]
    j = nh - 1
    while j >= 0:
        hdigits[j] += 1
        if hdigits[j] < jt.scope_card[lo + j]:
            return
        hdigits[j] = 0
        j -= 1


@njit(inline="always", **NJIT_OPTIONS)
def _softmin(values, lo, n, temperature):
    """softmin_T of ``values[lo:lo+n]`` (the minimum at T = 0; +inf when all are)."""
    low = INF
    for x in range(n):
        if values[lo + x] < low:
            low = values[lo + x]
    if temperature > 0.0 and low < INF:
        total = 0.0
        for x in range(n):
            total += np.exp(-(values[lo + x] - low) / temperature)
        low -= temperature * np.log(total)
    return low


@njit(inline="always", **NJIT_OPTIONS)
def _row_unary(jt, c, unary, state_offset, out):
    """``out[x]``: the unary energies of clique ``c``'s eliminated variables at row entry x."""
    hi = jt.scope_ptr[c + 1]
    k = jt.row[c]
    for x in range(k):
        out[x] = 0.0
    inner = 1
    for a in range(hi - 1, hi - 1 - jt.n_elim[c], -1):
        card = jt.scope_card[a]
        first = state_offset[jt.scope_vars[a]]
        for x in range(k):
            out[x] += unary[first + (x // inner) % card]
        inner *= card


@njit(**NJIT_OPTIONS)
def collect(jt, theta, unary, state_offset, temperature, psi, up):
    """Upward pass: fills ``psi`` (zeros on entry) with each clique's table minus its
    upward message ``up`` (per row), block by block."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    hdigits = np.zeros(jt.max_axes, dtype=np.int64)
    row_unary = np.empty(jt.max_row)
    n_assigned = len(jt.factor_id)
    for c in range(len(jt.parent)):
        lo = jt.table_offset[c]
        k = jt.row[c]
        nb = jt.block[c]
        nh = jt.n_high[c]
        rows_per_block = nb // k
        _row_unary(jt, c, unary, state_offset, row_unary)
        for j in range(nh):
            hdigits[j] = 0
        for b in range((jt.table_offset[c + 1] - lo) // nb):
            at = lo + b * nb
            for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
                cards, strides, own, n = _map(jt, j)
                base = _high_base(jt, j, hdigits, nh, jt.factor_base[j])
                _gather_add(psi, at, cards, strides, own, n, theta, base, digits)
            for i in range(jt.child_ptr[c], jt.child_ptr[c + 1]):
                q = jt.child_id[i]
                cards, strides, own, n = _map(jt, n_assigned + q)
                base = _high_base(jt, n_assigned + q, hdigits, nh, jt.sep_offset[q])
                _gather_add(psi, at, cards, strides, own, n, up, base, digits)
            first = jt.sep_offset[c] + b * rows_per_block
            for r in range(rows_per_block):
                row = at + r * k
                for x in range(k):
                    psi[row + x] += row_unary[x]
                low = _softmin(psi, row, k, temperature)
                if low < INF:
                    for x in range(k):
                        psi[row + x] -= low
                up[first + r] = low
            _next_block(jt, c, hdigits, nh)


@njit(**NJIT_OPTIONS)
def decode(jt, psi, temperature, assignment):
    """Top-down decoding: the variables of each clique, the last eliminated first, take
    the first state of lowest softmin_T of ``psi`` over the rest of the row given the
    states decoded before (T = 0: a joint minimum). ``assignment`` holds the clamped
    states on entry. Run between :func:`collect` and :func:`distribute`."""
    for c in range(len(jt.parent) - 1, -1, -1):
        a = jt.scope_ptr[c]
        hi = jt.scope_ptr[c + 1]
        e = jt.n_elim[c]
        s = 0
        for j in range(a, hi - e):
            s = s * jt.scope_card[j] + assignment[jt.scope_vars[j]]
        size = jt.row[c]
        start = jt.table_offset[c] + s * size
        for j in range(hi - e, hi):
            card = jt.scope_card[j]
            inner = size // card
            best = 0
            best_value = INF
            for t in range(card):
                value = _softmin(psi, start + t * inner, inner, temperature)
                if value < best_value:
                    best = t
                    best_value = value
            assignment[jt.scope_vars[j]] = best
            start += best * inner
            size = inner


@njit(**NJIT_OPTIONS)
def distribute(jt, temperature, psi, up, state_offset, var_out, fac_out, with_factors):
    """Downward pass, one clique after the other from the roots, block by block: the
    clique's belief (T = 0: absolute min-marginals, ``psi + up``; T > 0: the joint
    probability, ``up * exp(-psi / T)``, where ``up`` holds, per row, what the clique's
    parent sent: at a root the free energy (T = 0) or 1) is reduced, while in cache, into
    its children's rows of ``up`` (overwriting their upward messages, which are no longer
    needed), into its eliminated variables' ``var_out`` and, when ``with_factors``, into
    its factors' entries of ``fac_out`` (``+inf`` (T = 0) or 0 (T > 0) on entry; entries
    that evidence rules out keep it). ``psi`` is only read."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    hdigits = np.zeros(jt.max_axes, dtype=np.int64)
    belief = np.empty(jt.max_block)
    per_state = np.empty(jt.max_row)
    n_assigned = len(jt.factor_id)
    empty = INF if temperature == 0.0 else 0.0  # the reduction's neutral element
    for c in range(len(jt.parent) - 1, -1, -1):
        lo = jt.table_offset[c]
        k = jt.row[c]
        nb = jt.block[c]
        nh = jt.n_high[c]
        rows_per_block = nb // k
        for i in range(jt.child_ptr[c], jt.child_ptr[c + 1]):
            q = jt.child_id[i]
            for s in range(jt.sep_offset[q], jt.sep_offset[q + 1]):
                up[s] = empty
        for x in range(k):
            per_state[x] = empty
        for j in range(nh):
            hdigits[j] = 0
        for b in range((jt.table_offset[c + 1] - lo) // nb):
            at = lo + b * nb
            first = jt.sep_offset[c] + b * rows_per_block
            for r in range(rows_per_block):
                d = up[first + r]
                row = r * k
                if temperature == 0.0:
                    for x in range(k):
                        v = psi[at + row + x] + d
                        belief[row + x] = v
                        if v < per_state[x]:
                            per_state[x] = v
                else:
                    for x in range(k):
                        v = d * np.exp(-psi[at + row + x] / temperature)
                        belief[row + x] = v
                        per_state[x] += v
            if with_factors:
                for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
                    cards, strides, own, n = _map(jt, j)
                    base = _high_base(jt, j, hdigits, nh, jt.factor_base[j])
                    if temperature == 0.0:
                        _scatter_min(belief, 0, cards, strides, own, n, fac_out, base, digits)
                    else:
                        _scatter_add(belief, 0, cards, strides, own, n, fac_out, base, digits)
            for i in range(jt.child_ptr[c], jt.child_ptr[c + 1]):
                q = jt.child_id[i]
                cards, strides, own, n = _map(jt, n_assigned + q)
                base = _high_base(jt, n_assigned + q, hdigits, nh, jt.sep_offset[q])
                if temperature == 0.0:
                    _scatter_min(belief, 0, cards, strides, own, n, up, base, digits)
                else:
                    _scatter_add(belief, 0, cards, strides, own, n, up, base, digits)
            _next_block(jt, c, hdigits, nh)
        # The row totals, per state of each eliminated variable.
        hi = jt.scope_ptr[c + 1]
        inner = 1
        for a in range(hi - 1, hi - 1 - jt.n_elim[c], -1):
            card = jt.scope_card[a]
            first = state_offset[jt.scope_vars[a]]
            for t in range(card):
                var_out[first + t] = empty
            for x in range(k):
                t = first + (x // inner) % card
                if temperature == 0.0:
                    if per_state[x] < var_out[t]:
                        var_out[t] = per_state[x]
                else:
                    var_out[t] += per_state[x]
            inner *= card


@njit(**NJIT_OPTIONS)
def normalize_sums(values, offsets):
    """Divide each segment [offsets[s], offsets[s+1]) by its sum (left alone when 0)."""
    for s in range(len(offsets) - 1):
        total = 0.0
        for k in range(offsets[s], offsets[s + 1]):
            total += values[k]
        if total > 0.0:
            for k in range(offsets[s], offsets[s + 1]):
                values[k] /= total
