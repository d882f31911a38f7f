"""Numba settings shared by every kernel module.

Numba writes its on-disk cache (``cache=True``) beside the source files by default, which
fails in read-only installs. Unless the user chose a place with ``NUMBA_CACHE_DIR``, we use
a per-user cache directory. This must run before numba is imported.
"""

import os
from pathlib import Path

if "NUMBA_CACHE_DIR" not in os.environ:
    _base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(Path(_base) / "factorgraph_ebm" / "numba")

import numba  # noqa: E402

#: Keyword arguments of every ``@njit`` in the package.
NJIT_OPTIONS = {"cache": True, "nogil": True}

njit = numba.njit
