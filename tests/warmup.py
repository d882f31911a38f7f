"""Kernels compiled once per test session, before any test starts a subprocess.

A test that runs a script or ``python -m factorgraph_ebm`` in a subprocess must not fail
because Numba compiles kernels there first: with an empty cache that takes 50-110 s on 2
cores, and several times longer on one loaded core. So the ``warm_kernels`` fixture
(``conftest.py``) runs :func:`factorgraph_ebm.compile_kernels` (what ``fgebm compile``
runs: every kernel specialization of the public API, one list for the library and the
tests) in the test process; the kernels go to the on-disk cache, which a subprocess shares
(it inherits the environment and so the cache location) and loads in a second or two.
:data:`SUBPROCESS_TIMEOUT` still leaves room for a subprocess that compiles everything
itself.
"""

from __future__ import annotations

from factorgraph_ebm import compile_kernels

#: Seconds a test's subprocess may run: well above a cold compile of every kernel on one
#: loaded core (107-110 s measured on 2 cores under load, 270 s for the warm-up at load
#: 4.5), so that only a hang trips it.
SUBPROCESS_TIMEOUT = 900

__all__ = ["SUBPROCESS_TIMEOUT", "compile_kernels"]
