"""Compiled loops in chunks short enough that Python keeps control.

A Numba kernel holds the interpreter until it returns, so Ctrl-C (KeyboardInterrupt, which
Python raises between bytecodes) and progress reports wait for it: a 31.6 s sum-product
call interrupted after 3 s stopped after 29 s. Long loops of independent or resumable steps
(BP sweeps, the sequences of a perceptron epoch or of a trellis batch) therefore run as a
Python loop over kernel calls on ranges of steps, sized from the measured time per step so
that each call lasts about :data:`CHUNK_SECONDS`. Measured on 300x300 grids, that costs
nothing visible (a call's overhead is microseconds against 0.1 s of work).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

#: Seconds of compiled work between two returns to Python (Ctrl-C arrives within about
#: that, or within one step when a step takes longer).
CHUNK_SECONDS = 0.1


def paced(n: int, first: int = 1, seconds: float | None = None,
          least: int = 1) -> Iterator[tuple[int, int]]:
    """Ranges ``(lo, hi)`` covering ``0..n`` in order, for a loop whose body runs steps
    ``lo..hi-1`` in one compiled call.

    The first range has ``first`` steps; each next one is sized from the time the previous
    body took (measured between yields) to last about ``seconds`` (default
    :data:`CHUNK_SECONDS`), growing at most twofold (so that a quick first call, or one
    that measured little, cannot ask for a long one), and at least ``least`` steps (e.g.
    one per thread). Breaking out of the loop early is fine.

    Examples
    --------
    >>> [r for r in paced(5, first=2, seconds=1e9)]   # fast steps: the ranges double
    [(0, 2), (2, 5)]
    """
    seconds = CHUNK_SECONDS if seconds is None else seconds
    lo = 0
    least = max(1, least)
    size = max(least, first)
    while lo < n:
        hi = min(n, lo + size)
        started = time.perf_counter()
        yield lo, hi
        elapsed = time.perf_counter() - started
        done = hi - lo
        size = 2 * done if 2 * elapsed <= seconds else max(least, int(done * seconds / elapsed))
        lo = hi
