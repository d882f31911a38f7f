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


@njit(**NJIT_OPTIONS)
def collect(jt, theta, unary, state_offset, temperature, psi, up):
    """Upward pass: fills ``psi`` (zeros on entry) and the upward messages ``up``."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    n_assigned = len(jt.factor_id)
    for c in range(len(jt.var)):
        lo = jt.table_offset[c]
        for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
            cards, strides, own, n = _map(jt, j)
            _gather_add(psi, lo, cards, strides, own, n, theta, jt.factor_base[j], digits)
        k = jt.scope_card[jt.scope_ptr[c + 1] - 1]
        first = state_offset[jt.var[c]]
        so = jt.sep_offset[c]
        for s in range(jt.sep_offset[c + 1] - so):
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
            cards, strides, own, n = _map(jt, n_assigned + c)
            _gather_add(psi, jt.table_offset[p], cards, strides, own, n, up, so, digits)


@njit(**NJIT_OPTIONS)
def decode(jt, psi, assignment):
    """Top-down decoding: each eliminated variable takes the first state of lowest
    ``psi`` given its separator's states. ``assignment`` holds the clamped states on
    entry. Run between :func:`collect` and the distribute pass."""
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
def distribute(jt, temperature, free_energy, psi, up, down, root_down):
    """Downward pass. T = 0: turns ``psi`` into the clique beliefs (absolute min-marginals)
    in place. T > 0: into the cliques' joint probabilities. ``down`` is scratch for one
    separator table (the largest); ``root_down[c]`` is what a root's belief lacks: the
    constant energy plus the other components' free energies. ``free_energy`` (T > 0)
    must be finite."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    n_assigned = len(jt.factor_id)
    for c in range(len(jt.var) - 1, -1, -1):
        so = jt.sep_offset[c]
        n_sep = jt.sep_offset[c + 1] - so
        p = jt.parent[c]
        if p < 0:
            down[0] = root_down[c]
        else:
            cards, strides, own, n = _map(jt, n_assigned + c)
            plo = jt.table_offset[p]
            if temperature == 0.0:
                for s in range(n_sep):
                    down[s] = INF
                _scatter_min(psi, plo, cards, strides, own, n, down, 0, digits)
            else:  # the parent holds probabilities: sum them, back to energies
                for s in range(n_sep):
                    down[s] = 0.0
                _scatter_add(psi, plo, cards, strides, own, n, down, 0, digits)
                for s in range(n_sep):
                    q = down[s]
                    down[s] = free_energy - temperature * np.log(q) if q > 0.0 else INF
            for s in range(n_sep):
                u = up[so + s]
                down[s] = INF if u == INF else down[s] - u
        k = jt.scope_card[jt.scope_ptr[c + 1] - 1]
        lo = jt.table_offset[c]
        for s in range(n_sep):
            d = down[s]
            row = lo + s * k
            if temperature == 0.0:
                for x in range(k):
                    psi[row + x] += d
            else:
                for x in range(k):
                    b = psi[row + x] + d
                    psi[row + x] = np.exp(-(b - free_energy) / temperature) if b < INF else 0.0


@njit(**NJIT_OPTIONS)
def variable_beliefs(jt, temperature, belief, state_offset, out):
    """The eliminated variables' min-marginals (T = 0: minimum over the separator of the
    clique belief) or marginals (T > 0: sum of the clique probabilities), into the flat
    per-state ``out``."""
    for c in range(len(jt.var)):
        k = jt.scope_card[jt.scope_ptr[c + 1] - 1]
        first = state_offset[jt.var[c]]
        lo = jt.table_offset[c]
        n_sep = jt.sep_offset[c + 1] - jt.sep_offset[c]
        for x in range(k):
            out[first + x] = INF if temperature == 0.0 else 0.0
        for s in range(n_sep):
            row = lo + s * k
            for x in range(k):
                if temperature == 0.0:
                    if belief[row + x] < out[first + x]:
                        out[first + x] = belief[row + x]
                else:
                    out[first + x] += belief[row + x]


@njit(**NJIT_OPTIONS)
def factor_beliefs(jt, temperature, belief, out):
    """Factor min-marginals (T = 0; ``out`` is ``+inf`` on entry) or marginals (T > 0;
    ``out`` is 0 on entry), laid out as theta, from each factor's clique. Entries that
    evidence rules out keep their initial value."""
    digits = np.zeros(jt.max_axes, dtype=np.int64)
    for c in range(len(jt.var)):
        lo = jt.table_offset[c]
        for j in range(jt.factor_ptr[c], jt.factor_ptr[c + 1]):
            cards, strides, own, n = _map(jt, j)
            if temperature == 0.0:
                _scatter_min(belief, lo, cards, strides, own, n, out, jt.factor_base[j], digits)
            else:
                _scatter_add(belief, lo, cards, strides, own, n, out, jt.factor_base[j], digits)


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
