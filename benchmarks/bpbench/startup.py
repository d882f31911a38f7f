"""Start-up time of a fresh process: interpreter, import, and import plus a tiny BP run,
with Numba's on-disk cache warm (the default cache directory, after one run) and cold (an
empty temporary ``NUMBA_CACHE_DIR``: every kernel that the run needs is compiled)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

TINY_BP = (
    "import numpy as np, factorgraph_ebm as f; g = f.FactorGraph(); "
    "g.add_variables(range(4), 3); "
    "g.add_factors(np.arange(4)[:, None], np.random.default_rng(0).random((4, 3)), by_index=True); "
    "g.add_factors([[0, 1], [1, 2], [2, 3], [3, 0]], 1.0 - np.eye(3), by_index=True); "
    "r = f.min_sum(g, schedule='parallel', max_iter=10, warn=False); assert r.energy < 9"
)
COMMANDS = {
    "python -c pass": "pass",
    "import factorgraph_ebm": "import factorgraph_ebm",
    "import + tiny min-sum (warm cache)": TINY_BP,
}


def _wall(code: str, env: dict | None = None) -> float:
    """Wall-clock seconds of ``python -c code`` in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def measure(repeat: int = 3) -> dict:
    """Seconds for each command (fastest of ``repeat``; the first BP run warms the cache)
    and for the tiny run with a cold cache."""
    _wall(TINY_BP)
    figures = {name: min(_wall(code) for _ in range(repeat)) for name, code in COMMANDS.items()}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        figures["import + tiny min-sum (cold cache: JIT compile)"] = _wall(TINY_BP, env)
    return figures
