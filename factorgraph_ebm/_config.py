"""Numba settings shared by every kernel module.

Every kernel is made with ``njit(**NJIT_OPTIONS)``, where :func:`njit` caches the kernels
in the package's own per-user place, keyed by its sources, without changing where other
code's Numba functions are cached (see :mod:`factorgraph_ebm._jit_cache`).
"""

import numpy as np

from ._jit_cache import njit

#: Infinity as the kernels spell it (a global constant to Numba).
INF = np.inf

#: Keyword arguments of every ``@njit`` in the package.
NJIT_OPTIONS = {"cache": True, "nogil": True}

__all__ = ["INF", "NJIT_OPTIONS", "njit"]
