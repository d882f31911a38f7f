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
def _log_at_least_one(t):
    """ln(t) for finite t >= 1, within 2 ulp of libm's. Branch-free arithmetic that LLVM
    vectorizes in a kernel compiled with ``error_model="numpy"`` (see :func:`collect`):
    1.2 against 3.4 ns for libm's ``log``, which at T > 0 costs one per row (DBN_12's and
    CSP_11's rows of 2 entries). t = 2^e m with m in [sqrt(1/2),
    sqrt(2)), ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172, by its series to
    s^23 (truncation error < 1e-18)."""
    bits = _float_bits(t)
    m = _bits_float((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    # The exponent as a float without an int-to-float conversion (which blocks the
    # vectorization): its field in the low bits of 2^52's mantissa, minus 2^52 + 1023.
    e = _bits_float((bits >> 52) | 0x4330000000000000) - 4503599627371519.0
    high = m > 1.4142135623730951
    m = m * 0.5 if high else m
    e = e + 1.0 if high else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    # e ln 2 in two parts (the high one exact in e up to 2^11) plus 2 s + 2 s z p.
    return (e * 6.93147180369123816490e-01 + (2.0 * s + (2.0 * s * z * p
            + e * 1.90821492927058770002e-10)))


#: Rows shorter than this are walked a column (one entry of every row) at a time, so that
#: the loops run over the block's rows and not over a row's 2-7 entries (DBN_12's and
#: CSP_11's rows of 2: the per-row loops cost 2-3x the arithmetic).
SHORT_ROW = 8


@njit(inline="always", **NJIT_OPTIONS)
def _condition(block, k, row_vector, temperature, up, lows, spread):
    """Add ``row_vector`` to each row of ``k`` entries of ``block`` (a view of whole rows),
    turn each into its conditional and write its softmin_T to ``up`` (one entry per row;
    see the module docstring). ``lows`` is scratch of an entry per row, ``spread`` of the
    block's. Every step is a pass over the block or over its rows (a column at a time for
    short rows), so that LLVM vectorizes the ``exp`` and ``log`` loops. Those index views
    from 0: LLVM vectorizes that, not ``a[at + e]`` (whose index might be negative, for all
    it knows): 9 -> 1.5 ns per ``exp``. Per entry, on blocks of 8192 (rows of 2 / 11 /
    64): 1.3 / 0.8 / 0.8 ns at T = 0, 3.8 / 2.5 / 2.4 ns at T > 0, against 1.9 / 1.1 / 0.8
    and 5.9 / 2.8 / 2.6 ns when each step looped over a row and took libm's ``log``."""
    n_rows = len(up)
    n = n_rows * k
    short = k < SHORT_ROW
    # The row minima (``lows``), the row vector added.
    if short:
        for r in range(n_rows):
            lows[r] = INF
        for x in range(k):
            add = row_vector[x]
            for r in range(n_rows):
                v = block[r * k + x] + add
                block[r * k + x] = v
                lows[r] = min(lows[r], v)
    else:
        for r in range(n_rows):
            low = INF
            for x in range(k):
                v = block[r * k + x] + row_vector[x]
                block[r * k + x] = v
                low = min(low, v)
            lows[r] = low
    # Each row's shift: its minimum (0 for a row of +inf, which stays +inf at T = 0 and
    # becomes 0 at T > 0).
    for r in range(n_rows):
        up[r] = lows[r]
        lows[r] = lows[r] if lows[r] < INF else 0.0
    if temperature == 0.0:
        if short:
            for x in range(k):
                for r in range(n_rows):
                    block[r * k + x] -= lows[r]
        else:
            for r in range(n_rows):
                low = lows[r]
                for x in range(k):
                    block[r * k + x] -= low
        return
    # At T > 0 the shift spread over the block, so that the exp loop runs over the block.
    if short:
        for x in range(k):
            for r in range(n_rows):
                spread[r * k + x] = lows[r]
    else:
        for r in range(n_rows):
            for x in range(k):
                spread[r * k + x] = lows[r]
    inverse = 1.0 / temperature
    for e in range(n):
        block[e] = _exp_nonpositive((spread[e] - block[e]) * inverse)
    # Row sums (the row minimum's own exp(0) = 1: at least 1 when the row is finite).
    for r in range(n_rows):
        lows[r] = 0.0
    if short:
        for x in range(k):
            for r in range(n_rows):
                lows[r] += block[r * k + x]
    else:
        for r in range(n_rows):
            total = 0.0
            for x in range(k):
                total += block[r * k + x]
            lows[r] = total
    for r in range(n_rows):
        total = max(lows[r], 1.0)
        up[r] = up[r] - temperature * _log_at_least_one(total)  # +inf stays +inf
        lows[r] = 1.0 / total
    if short:
        for x in range(k):
            for r in range(n_rows):
                block[r * k + x] *= lows[r]
    else:
        for r in range(n_rows):
            scale = lows[r]
            for x in range(k):
                block[r * k + x] *= scale


# error_model="numpy": Numba's default checks every float division for a zero divisor
# (to raise ZeroDivisionError), which keeps LLVM from vectorizing the loops of
# _log_at_least_one and of the row scales (7.0 -> 1.2 ns per log); no divisor here is 0.
@njit(error_model="numpy", **NJIT_OPTIONS)
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


@njit(error_model="numpy", **NJIT_OPTIONS)  # see collect
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
                table = psi[at:at + nb]
                sent = up[first:first + rows_per_block]
                if k < SHORT_ROW:  # a column at a time (see SHORT_ROW)
                    for x in range(k):
                        total = empty
                        for r in range(rows_per_block):
                            e = r * k + x
                            v = table[e] + sent[r] if minimum else table[e] * sent[r]
                            belief[e] = v
                            total = min(total, v) if minimum else total + v
                        row_totals[x] = total
                else:
                    for x in range(k):
                        row_totals[x] = empty
                    for r in range(rows_per_block):
                        d = sent[r]
                        for x in range(k):
                            v = table[r * k + x] + d if minimum else table[r * k + x] * d
                            belief[r * k + x] = v
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
