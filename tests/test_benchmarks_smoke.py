"""Smoke test of ``benchmarks/bp_speed.py`` on a tiny chain: it runs, its last line is the
JSON report, and factorgraph_ebm and the NumPy baseline decode the same (exact) energy.
No timing is asserted: the kernels are compiled beforehand (``warm_kernels``) and the
subprocess may take SUBPROCESS_TIMEOUT, which a cold compile on one loaded core meets."""

import json
import math
import subprocess
import sys
from pathlib import Path

from warmup import SUBPROCESS_TIMEOUT

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bp_speed.py"


def test_bp_speed_runs_and_energies_agree(warm_kernels):
    command = [
        sys.executable,
        str(SCRIPT),
        "--workload",
        "chain",
        "--n",
        "30",
        "--k",
        "3",
        "--engines",
        "ours,numpy",
        "--schedules",
        "parallel",
        "--dampings",
        "0",
        "--iters",
        "3",
        "--cap",
        "100",
        "--repeat",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                          check=True)
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert "| engine |" in done.stdout
    rows = report["results"]
    required = {
        "engine",
        "workload",
        "schedule",
        "s_per_iter",
        "n_iter",
        "energy",
        "build_s",
        "compile_s",
        "peak_mb",
    }
    assert rows and all(required <= row.keys() for row in rows)
    energies = {
        (row["engine"], row["schedule"]): row["energy"] for row in rows if row["energy"] is not None
    }
    exact = energies[("ours", "tree")]
    assert math.isclose(energies[("ours", "parallel")], exact, rel_tol=1e-9)
    assert math.isclose(energies[("numpy", "parallel")], exact, rel_tol=1e-9)
