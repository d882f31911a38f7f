"""The work arrays of the message kernels, allocated in Python (the kernels allocate none:
see :mod:`factorgraph_ebm.messages`).
"""
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
