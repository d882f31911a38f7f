"""Numba kernels of exact inference on a junction tree, both semirings at temperature T.

The tree is the elimination (bucket) tree of :mod:`factorgraph_ebm.exact.order`: clique
``c`` holds the variables it eliminates (its last, fastest-changing axes: a *row* per
state of the other axes) and the variables adjacent to them then (its separator, the
other axes, in C order). Its parent has a higher index, so a loop over ``c`` upwards is
the collect pass and a loop downwards the distribute pass (Shafer & Shenoy 1990;
Lauritzen & Spiegelhalter 1988 for the Hugin form of the downward pass used here; Dechter
1999 for bucket elimination).

In the energy domain, with softmin_T(z) = -T log sum exp(-z / T) and softmin_0 = min:

- collect: ``psi_c`` = the factors assigned to ``c`` + the unary energies of its
  eliminated variables + the upward messages of its children;
  ``up_c(s) = softmin_T of the row psi_c(s, .)``. What is stored is the row's
  *conditional*: ``psi_c(s, x) - up_c(s)`` at T = 0 (``+inf`` rows stay ``+inf``), the
  probability ``exp(-(psi_c(s, x) - up_c(s)) / T)`` at T > 0 (0 for ``+inf``);
- decode: from the roots down, the eliminated variables of each clique, the last
  eliminated first, take the first state of lowest energy (T = 0: minimum over the rest
  of the row; T > 0: highest probability, summed over the rest of the row) given the
  states decoded before: a joint minimum at T = 0, exact conditioning at T > 0;
- distribute: the clique's belief is its conditional combined with what its parent
  sends, per row: ``psi + m(s)`` at T = 0, where ``m(s)`` is the minimum of the parent's
  belief over the entries that agree with ``s`` (absolute min-marginals: their minimum is
  the minimum energy of the whole model; at a root, that energy); ``psi * q(s)`` at T > 0,
  where ``q(s)`` is the sum of the parent's joint probabilities that agree with ``s`` (1
  at a root): the clique's joint probability. Only additions of non-negative energies and
  products of probabilities in [0, 1]: no ``inf - inf``, no overflow, and no ``exp``
  after collect. ``m`` and ``q`` are written over the child's upward message (used by
  then).

Every pass walks a clique table block by block (:mod:`.junction_tree`): all the factors
and messages of the clique meet one block while it is in cache (one pass over the table
per factor cost DBN_11 about 10x more; see ``benchmarks/README.md``). Within a block a
table is walked through a *map*: an odometer over a few merged axes with a stride each
into the other table, the last axis a plain inner loop; a map whose other table depends
on the block's axes only through the row is applied once per block to one row-sized
vector. The kernels assume validated input and never raise.
"""

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .._config import NJIT_OPTIONS, njit

INF = np.inf
#: Kinds of map (``JunctionTree.map_kind``): walked over each block; over the row of each
#: block (the other table depends on the block only through the row's axes); over one
#: block once per clique (the other table does not depend on the high axes: the same for
#: every block, so the blocks are summed, or reduced, first).
MAP_BLOCK, MAP_ROW, MAP_FIXED = 0, 1, 2


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE 754 bits of a float64, as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, x):
    """The float64 of IEEE 754 bits given as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_ROUND = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer, kept in the bits


@njit(inline="always", **NJIT_OPTIONS)
def _exp_nonpositive(x):
    """exp(x) for x <= 0 (``-inf`` included), within 1 ulp of libm's, and 0 below -708
    (where exp(x) < 3.3e-308). Branch-free arithmetic that LLVM vectorizes: 1.4 against
    5.8 ns per entry for ``np.exp``, which is the row normalization's cost at T > 0.
    exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, exp(r) by its Taylor
    series to degree 13 (truncation error < 1e-17)."""
    y = max(x, -708.0)
    t = y * 1.4426950408889634 + _ROUND
    n = t - _ROUND
    r = y - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2^n from its bits: n sits in the low bits of t, the exponent field is n + 1023.
    scale = _bits_float((_float_bits(t) - _float_bits(_ROUND) + 1023) << 52)
    return p * scale if x >= -708.0 else 0.0


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
def _scatter_reduce(src, lo, cards, strides, own, n, dst, base, digits, minimum):
    """``dst[base + idx(e)] = min(dst[...], src[lo + e])`` (``minimum``) or
    ``dst[base + idx(e)] += src[lo + e]`` over the table ``src[lo:]``. One loop for both,
    the choice a predictable branch: a copy per reduction cost 0.6 s more to compile."""
    inner = cards[n - 1]
    step = strides[n - 1]
    hop = own[n - 1]
    index = base
    at = lo
    for _ in range(_outer_size(cards, n, digits)):
        if step == 0:  # a run of entries into one: reduce in a register
            value = INF if minimum else 0.0
            for x in range(inner):
                v = src[at + x * hop]
                value = min(value, v) if minimum else value + v
            dst[index] = min(dst[index], value) if minimum else dst[index] + value
        else:
            for x in range(inner):
                k = index + x * step
                v = src[at + x * hop]
                dst[k] = min(dst[k], v) if minimum else dst[k] + v
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
def _clique_map(jt, c, t, n_assigned):
    """The t-th map of clique ``c`` (its factors', then its children's messages'): the
    map's index, where it starts in its other table (theta, or the message buffer), and
    whether it is a factor's."""
    lo = jt.factor_ptr[c]
    n_factors = jt.factor_ptr[c + 1] - lo
    if t < n_factors:
        return lo + t, jt.factor_base[lo + t], True
    q = jt.child_id[jt.child_ptr[c] + t - n_factors]
    return n_assigned + q, jt.sep_offset[q], False


@njit(inline="always", **NJIT_OPTIONS)
def _n_maps(jt, c):
    return (jt.factor_ptr[c + 1] - jt.factor_ptr[c]) + (jt.child_ptr[c + 1] - jt.child_ptr[c])


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


@njit(inline="always", **NJIT_OPTIONS)
def _condition(block, k, row_vector, temperature, up, lows, spread):
    """Add ``row_vector`` to each row of ``k`` entries of ``block`` (a view of whole rows),
    turn each into its conditional and write its softmin_T to ``up`` (one entry per row;
    see the module docstring). At T > 0 in passes over the whole block, so that the
    ``exp`` loop has no carried dependency and is vectorized whatever the row length;
    ``lows`` is scratch of an entry per row, ``spread`` of the block's.
    That loop indexes a view from 0: LLVM vectorizes that, not ``a[at + e]`` (whose index
    might be negative, for all it knows): 9 -> 1.5 ns per ``exp``."""
    n_rows = len(up)
    for r in range(n_rows):
        low = INF
        for x in range(k):
            v = block[r * k + x] + row_vector[x]
            block[r * k + x] = v
            low = min(low, v)
        if temperature == 0.0:
            if low < INF:
                for x in range(k):
                    block[r * k + x] -= low
            up[r] = low
        else:
            lows[r] = low
            low = low if low < INF else 0.0  # a row of +inf: exp(-inf) = 0
            for x in range(k):
                spread[r * k + x] = low
    if temperature == 0.0:
        return
    inverse = 1.0 / temperature
    for e in range(n_rows * k):
        block[e] = _exp_nonpositive((spread[e] - block[e]) * inverse)
    for r in range(n_rows):
        total = 0.0
        for x in range(k):
            total += block[r * k + x]
        # The row minimum's own exp(0) = 1: total >= 1 when the row is finite.
        total = max(total, 1.0)
        up[r] = lows[r] - temperature * np.log(total) if lows[r] < INF else INF
        scale = 1.0 / total
        for x in range(k):
            block[r * k + x] *= scale


@njit(**NJIT_OPTIONS)
def collect(jt, theta, unary, state_offset, temperature, psi, up):
    """Upward pass: fills ``psi`` (zeros on entry) with each clique's conditional and
    ``up`` with its upward message, block by block."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    hdigits = np.zeros(jt.max_axes, dtype=np.int64)
    row_unary = np.empty(jt.max_row)
    row_vector = np.empty(jt.max_row)
    lows = np.empty(jt.max_block)
    spread = np.empty(jt.max_block)
    fixed = np.empty(jt.max_block)
    n_assigned = len(jt.factor_id)
    for c in range(len(jt.parent)):
        lo = jt.table_offset[c]
        k = jt.row[c]
        nb = jt.block[c]
        nh = jt.n_high[c]
        rows_per_block = nb // k
        _row_unary(jt, c, unary, state_offset, row_unary)
        any_fixed = False
        for j in range(nh):
            hdigits[j] = 0
        # Pass -1 sums the maps that are the same for every block into ``fixed``, once;
        # then each block gets ``fixed`` and each other factor and child message (or,
        # when it depends on the block only through the row, the row vector does).
        for b in range(-1, (jt.table_offset[c + 1] - lo) // nb):
            at = lo + b * nb
            if b >= 0:
                for x in range(k):
                    row_vector[x] = row_unary[x]
                if any_fixed:
                    block = psi[at:at + nb]
                    for e in range(nb):
                        block[e] += fixed[e]
            for t in range(_n_maps(jt, c)):
                m, base, is_factor = _clique_map(jt, c, t, n_assigned)
                kind = jt.map_kind[m]
                if (kind == MAP_FIXED) != (b < 0):
                    continue
                if b < 0 and not any_fixed:
                    for e in range(nb):
                        fixed[e] = 0.0
                    any_fixed = True
                cards, strides, own, n = _map(jt, m)
                if b >= 0:
                    base = _high_base(jt, m, hdigits, nh, base)
                _gather_add(fixed if b < 0 else row_vector if kind == MAP_ROW else psi,
                            at if kind == MAP_BLOCK else 0, cards, strides, own, n,
                            theta if is_factor else up, base, digits)
            if b >= 0:
                first = jt.sep_offset[c] + b * rows_per_block
                _condition(psi[at:at + nb], k, row_vector, temperature,
                           up[first:first + rows_per_block], lows, spread)
                _next_block(jt, c, hdigits, nh)


@njit(**NJIT_OPTIONS)
def decode(jt, psi, temperature, assignment):
    """Top-down decoding from the conditionals left by :func:`collect` (see the module
    docstring). ``assignment`` holds the clamped states on entry. Run between
    :func:`collect` and :func:`distribute`."""
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
            best_value = -INF
            for t in range(card):
                lo = start + t * inner
                if temperature == 0.0:  # the lowest energy, negated
                    value = -INF
                    for x in range(inner):
                        value = max(value, -psi[lo + x])
                else:  # the probability
                    value = 0.0
                    for x in range(inner):
                        value += psi[lo + x]
                if value > best_value:
                    best = t
                    best_value = value
            assignment[jt.scope_vars[j]] = best
            start += best * inner
            size = inner


@njit(**NJIT_OPTIONS)
def distribute(jt, temperature, psi, up, state_offset, var_out, fac_out, with_factors):
    """Downward pass, one clique after the other from the roots, block by block: the
    clique's belief (see the module docstring; ``up`` holds, per row, what the parent
    sent, at a root the minimum energy (T = 0) or 1 (T > 0)) is reduced, while in cache,
    into its children's rows of ``up``, into its eliminated variables' entries of
    ``var_out`` and, when ``with_factors``, into its factors' entries of ``fac_out``
    (``+inf`` (T = 0) or 0 (T > 0) on entry; entries that evidence rules out keep it):
    absolute min-marginals at T = 0, unnormalized marginals at T > 0. ``psi`` is only
    read."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    hdigits = np.zeros(jt.max_axes, dtype=np.int64)
    belief = np.empty(jt.max_block)
    fixed = np.empty(jt.max_block)
    row_totals = np.empty(jt.max_row)
    per_state = np.empty(jt.max_row)
    n_assigned = len(jt.factor_id)
    minimum = temperature == 0.0
    empty = INF if minimum else 0.0  # the reduction's neutral element
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
        # The maps that are the same for every block: the blocks' reduction, once.
        any_fixed = False
        for t in range(_n_maps(jt, c)):
            m, base, is_factor = _clique_map(jt, c, t, n_assigned)
            any_fixed |= jt.map_kind[m] == MAP_FIXED and (with_factors or not is_factor)
        if any_fixed:
            for e in range(nb):
                fixed[e] = empty
        for j in range(nh):
            hdigits[j] = 0
        # After the blocks, one more pass scatters their reduction (``fixed``) into the
        # maps that are the same for every block.
        n_blocks = (jt.table_offset[c + 1] - lo) // nb
        for b in range(n_blocks + 1):
            last = b == n_blocks
            if not last:
                at = lo + b * nb
                first = jt.sep_offset[c] + b * rows_per_block
                for x in range(k):
                    row_totals[x] = empty
                for r in range(rows_per_block):
                    d = up[first + r]
                    table_row = psi[at + r * k:at + (r + 1) * k]
                    belief_row = belief[r * k:(r + 1) * k]
                    for x in range(k):
                        v = table_row[x] + d if minimum else table_row[x] * d
                        belief_row[x] = v
                        row_totals[x] = (min(row_totals[x], v) if minimum
                                         else row_totals[x] + v)
                if any_fixed:
                    for e in range(nb):
                        fixed[e] = (min(fixed[e], belief[e]) if minimum
                                    else fixed[e] + belief[e])
            # Into each factor's beliefs and child's message (from the row totals when
            # the map depends on the block only through the row).
            for t in range(_n_maps(jt, c)):
                m, base, is_factor = _clique_map(jt, c, t, n_assigned)
                kind = jt.map_kind[m]
                if (kind == MAP_FIXED) != last or (is_factor and not with_factors):
                    continue
                cards, strides, own, n = _map(jt, m)
                if not last:
                    base = _high_base(jt, m, hdigits, nh, base)
                _scatter_reduce(fixed if last else row_totals if kind == MAP_ROW else belief,
                                0, cards, strides, own, n, fac_out if is_factor else up, base,
                                digits, minimum)
            if not last:
                for x in range(k):
                    per_state[x] = (min(per_state[x], row_totals[x]) if minimum
                                    else per_state[x] + row_totals[x])
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
                    var_out[t] = min(var_out[t], per_state[x])
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
