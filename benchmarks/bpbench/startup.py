"""Start-up time of a fresh process: interpreter, import, and import plus a tiny BP run,
with Numba's on-disk cache warm (the default cache directory, after one run) and cold (an
empty temporary ``NUMBA_CACHE_DIR``: every kernel that the run needs is compiled).

The cold figures are the first calls of a new user: a tiny min-sum BP run, ``fgebm map`` on
the small UAI model shipped in ``examples/models`` (exact inference: its junction tree is
small) and on a 2-variable model (BP on a tree), and a first ``SequenceLabeler`` fit and
predict (default options: NLL loss, L-BFGS) on a toy data set. Each cold figure comes
with the CPU seconds of its process (user + system), the main figure on a shared machine,
where wall clock depends on the load of others. Run as a script to print them::

    python benchmarks/bpbench/startup.py [--cold-only]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "examples" / "models" / "pdb1akg.uai"

TINY_BP = (
    "import numpy as np, factorgraph_ebm as f; g = f.FactorGraph(); "
    "g.add_variables(range(4), 3); "
    "g.add_factors(np.arange(4)[:, None], np.random.default_rng(0).random((4, 3)), by_index=True); "
    "g.add_factors([[0, 1], [1, 2], [2, 3], [3, 0]], 1.0 - np.eye(3), by_index=True); "
    "r = f.min_sum(g, method='bp', schedule='parallel', max_iter=10, warn=False); "
    "assert r.energy < 9"
)
#: Two binary variables and one factor (a tree: two-pass BP and its check sweep).
TWO_VARIABLES = "MARKOV\n2\n2 2\n1\n2 0 1\n4 1 2 2 1\n"
LABELER = (
    "import factorgraph_ebm as f; "
    "X = [[{'w=a': 1.0}, {'w=b': 1.0}], [{'w=b': 1.0}, {'w=c': 1.0}, {'w=a': 1.0}]]; "
    "y = [['A', 'B'], ['B', 'B', 'A']]; "
    "m = f.SequenceLabeler(n_epochs=5, progress=False).fit(X, y); "
    "assert len(m.predict(X)[1]) == 3"
)
COMMANDS = {
    "python -c pass": "pass",
    "import factorgraph_ebm": "import factorgraph_ebm",
    "import + tiny min-sum (warm cache)": TINY_BP,
}
COLD = {
    "import + tiny min-sum (cold cache: JIT compile)": ["-c", TINY_BP],
    f"fgebm map {MODEL.name} (cold cache)": ["-m", "factorgraph_ebm", "map", str(MODEL)],
    "fgebm map, 2-variable model (cold cache)": ["-m", "factorgraph_ebm", "map", "{two}"],
    "SequenceLabeler fit + predict (cold cache)": ["-c", LABELER],
}


def _run(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system) of ``python *args`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, env=env, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _wall(args: list[str], env: dict | None = None) -> float:
    """Wall-clock seconds of ``python *args`` in a fresh process."""
    return _run(args, env)[0]


def measure_cold() -> dict:
    """Seconds of each first call of :data:`COLD`, each with its own empty cache: wall
    clock under its name, CPU seconds under its name + ``", CPU"``."""
    figures = {}
    for name, args in COLD.items():
        with tempfile.TemporaryDirectory() as cache:
            two = Path(cache) / "two.uai"
            two.write_text(TWO_VARIABLES)
            args = [arg.replace("{two}", str(two)) for arg in args]
            wall, cpu = _run(args, dict(os.environ, NUMBA_CACHE_DIR=cache))
            figures[name] = wall
            figures[f"{name}, CPU"] = cpu
    return figures


def measure(repeat: int = 3) -> dict:
    """Seconds for each command (fastest of ``repeat``; the first BP run warms the cache)
    and for the first calls with a cold cache."""
    _wall(["-c", TINY_BP])
    figures = {
        name: min(_wall(["-c", code]) for _ in range(repeat)) for name, code in COMMANDS.items()
    }
    figures.update(measure_cold())
    return figures


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    results = measure_cold() if "--cold-only" in sys.argv[1:] else measure()
    for key, seconds in results.items():
        print(f"{seconds:8.2f} s  {key}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
