"""Smoke test of ``benchmarks/exact_speed.py`` on two tiny UAI instances with our engine only:
it runs, its last line is the JSON report, and our exact answers match the references. No
timing is asserted. Skipped when the UAI data folder is absent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "exact_speed.py"
DATA = ROOT.parent / "shared" / "data" / "uai"
INSTANCES = ("bn_asia", "grid4x4")

pytestmark = pytest.mark.skipif(
    not all((DATA / f"{name}.uai").exists() for name in INSTANCES)
    or not (DATA / "REFERENCES.json").exists(),
    reason=f"UAI data folder {DATA} (with REFERENCES.json, bn_asia, grid4x4) not found",
)


def test_exact_speed_runs_and_ours_is_correct():
    command = [sys.executable, str(SCRIPT), "--data", str(DATA),
               "--instances", ",".join(INSTANCES), "--engines", "ours", "--timeout", "300"]
    # Generous: the worker compiles the Numba kernels cold on a possibly loaded machine.
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| instance | width |")
    report = json.loads(lines[-1])
    assert {"rows", "engines", "command", "date", "machine", "tolerances"} <= report.keys()
    assert report["engines"] == ["ours"]
    rows = {row["instance"]: row for row in report["rows"]}
    assert set(rows) == set(INSTANCES)
    required = {
        "instance", "induced_width", "ours_pr_mar_s", "ours_pr_mar_repeat_s",
        "ours_pr_mar_lean_s", "ours_map_s", "pgmpy_pr_mar_s", "pgmpy_map_s",
        "pyagrum_pr_mar_s", "ratio_pyagrum_over_ours", "ours_pr_mar_lean_cpu_s",
        "pyagrum_pr_mar_cpu_s", "ratio_pyagrum_over_ours_lean_cpu", "correct", "not_solved",
        "engines",
    }
    for name, row in rows.items():
        assert required <= row.keys(), name
        assert row["not_solved"] == {}, row["not_solved"]
        assert row["correct"]["ours"] == {"pr": True, "mar": True, "map": True}, name
        assert isinstance(row["induced_width"], int), name
        for key in ("ours_pr_mar_s", "ours_pr_mar_repeat_s", "ours_pr_mar_lean_s",
                    "ours_map_s", "ours_pr_mar_lean_cpu_s"):
            assert row[key] is not None and row[key] >= 0, (name, key)
        assert row["pgmpy_pr_mar_s"] is None and row["pyagrum_pr_mar_s"] is None
        assert "breakdown" in row["engines"]["ours"]["calls"]["pr_mar"]
