"""The work arrays of the message kernels, allocated in Python (the kernels allocate none:
see :mod:`factorgraph_ebm.messages`).
"""
import mmap
from typing import NamedTuple

import numpy as np


class Scratch(NamedTuple):
    """Work arrays of one kernel call (see :func:`scratch`); the kernels allocate none.

    ``counter`` (max_arity,) int64: a mixed-radix counter over a table; ``lowest`` and
    ``score`` (max_states,); ``new`` (max(max_arity, 2) * max_states,): new messages of one
    factor; ``inc`` (2 * max_states,): a pairwise factor's incoming messages; ``env_v``
    (max_states + 1,) int64 and ``env_z`` (max_states + 2,): the lower envelope of the
    truncated quadratic kind; ``lows`` (2,): the minima of a factor's two new messages.
    The arrays of the threaded flooding kernel (:func:`flood_phase`) have one more leading
    axis, one row per thread.
    """

    counter: np.ndarray
    lowest: np.ndarray
    score: np.ndarray
    new: np.ndarray
    inc: np.ndarray
    env_v: np.ndarray
    env_z: np.ndarray
    lows: np.ndarray


def scratch(cg, rows: int | None = None) -> Scratch:
    """The :class:`Scratch` of the kernels on compiled graph ``cg``: of one call, or with
    ``rows``, one row per thread of the threaded flooding kernel. A few times max_states
    floats (per row); a ``MemoryError`` here is raised before any kernel runs."""
    k = cg.max_states
    arity = max(cg.max_arity, 1)
    lead = () if rows is None else (rows,)
    return Scratch(
        counter=np.zeros(lead + (arity,), dtype=np.int64),
        lowest=np.empty(lead + (k,)),
        score=np.empty(lead + (k,)),
        new=np.empty(lead + (max(arity, 2) * k,)),
        inc=np.empty(lead + (2 * k,)),
        env_v=np.empty(lead + (k + 1,), dtype=np.int64),
        env_z=np.empty(lead + (k + 2,)),
        lows=np.empty(lead + (2,)),
    )


def unclamped(cg) -> np.ndarray:
    """The ``clamp`` argument of :func:`generic_message` that clamps no variable: -1 for
    each, (V,) int64."""
    return np.full(cg.n_variables, -1, dtype=np.int64)


#: Arrays of :func:`untouched_zeros` from this size get a mapping of their own.
UNTOUCHED_MIN_BYTES = 2**20


def untouched_zeros(n: int) -> np.ndarray:
    """A writable (n,) float64 array of zeros whose pages stay non-resident until written.

    ``np.zeros`` may take its memory from the C heap, whose free pages glibc has given back
    to the OS (``compiled.release_free_heap``): then it clears them, and they count as
    resident though they only hold zeros (62 MiB, the per-state energies of a 2000 x 2000
    binary grid without evidence, at the peak of a BP call). An anonymous mapping of its
    own is zero-filled by the OS, and reads map its pages to the shared zero page; it is
    unmapped when the array is freed. The same NumPy type as ``np.zeros(n)`` (C-contiguous,
    writable), so the kernels compile no other specialization for it. Below
    :data:`UNTOUCHED_MIN_BYTES`, where that saving is negligible, it is ``np.zeros(n)``
    (one mapping per array would count against the OS's limit of mappings).
    """
    if n * 8 < UNTOUCHED_MIN_BYTES:
        return np.zeros(n)
    try:
        return np.frombuffer(mmap.mmap(-1, n * 8), dtype=np.float64)
    except OSError:  # no mapping to be had (ENOMEM): np.zeros, or its MemoryError
        return np.zeros(n)
