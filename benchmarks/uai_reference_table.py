"""Our answers against the UAI reference answers, instance by instance.

Runs ``fgebm map`` and ``fgebm mar`` (in-process, ``--json``) on every instance listed in
``REFERENCES.json`` of the UAI data folder (with its ``.evid`` when there is one), and
prints a Markdown table: the method that ran (``exact``: the junction tree; ``bp``), the
MAP energy gap (decoded energy minus the reference minimum energy; 0 = optimal, ``inf`` =
the decoded assignment breaks a hard constraint), the log10 Z error (ours minus the exact
or competition value), the largest marginal error against the ``.MAR`` reference,
convergence and time. The last line is one JSON object with every figure (``-Infinity`` /
``Infinity`` / ``NaN`` for non-finite ones).

Usage::

    python benchmarks/uai_reference_table.py [--data DIR] [--method M] [--memory-limit S]
                                             [--max-iter N] [--damping D] [--schedule S]

Data: ``../shared/data/uai`` beside the repository (see its ``SOURCE.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from factorgraph_ebm import cli
from factorgraph_ebm.io import read_mar, read_uai

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uai"


def solve(task: str, model: Path, options: list[str]) -> dict:
    """``fgebm TASK MODEL [--evid MODEL.evid] OPTIONS --json``, run in-process."""
    argv = [task, str(model), "--json", *options]
    evid = Path(f"{model}.evid")
    if evid.exists():
        argv += ["--evid", str(evid)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main(argv)
    if status != 0:
        raise RuntimeError(f"fgebm {' '.join(argv)} exited {status}: {stderr.getvalue()}")
    figures = json.loads(stdout.getvalue())
    for key, value in figures.pop("non_finite").items():  # strict JSON: null + the value
        figures[key] = float(value)
    return figures


def compare(entry: dict, data: Path, options: list[str]) -> dict:
    """Every figure of one instance of ``REFERENCES.json``."""
    model = data / f"{entry['name']}.uai"
    refs = entry["references"]
    started = time.perf_counter()
    found = solve("map", model, options)
    marginals = solve("mar", model, options)
    seconds = time.perf_counter() - started
    row = {
        "instance": entry["name"],
        "variables": entry["structure"]["n_vars"],
        "factors": entry["structure"]["n_factors"],
        "evidence": entry["structure"]["n_evidence"],
        "forest": read_uai(model).is_forest(),
        "method": found["method"],
        "exact": found["exact"],
        "map_converged": found["converged"],
        "energy": found["energy"],
        "ref_min_energy": refs["MAP"]["min_energy"],
        "map_gap": found["energy"] - refs["MAP"]["min_energy"],
        "pr_converged": marginals["converged"],
        "log10_Z": marginals["log10_Z"],
        "ref_log10_Z": refs["PR"]["log10Z"] if refs.get("PR") else None,
        "mar_max_error": None,
        "seconds": seconds,
    }
    if row["ref_log10_Z"] is not None:
        row["log10_Z_error"] = row["log10_Z"] - row["ref_log10_Z"]
    if refs.get("MAR"):
        reference = read_mar(data / refs["MAR"]["file"])
        row["mar_max_error"] = max(
            float(np.abs(np.subtract(mine, theirs)).max())
            for mine, theirs in zip(marginals["marginals"], reference, strict=True)
        )
    return row


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""

    def number(value, digits=4):
        if value is None:
            return "—"
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)

    lines = [
        "| instance | vars | factors | evid | tree | MAP conv | MAP energy | ref min energy | "
        "gap | PR conv | log10 Z | ref log10 Z | error | MAR max err | method | s |",
        "|---|---:|---:|---:|:-:|:-:|---:|---:|---:|:-:|---:|---:|---:|---:|:-:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['instance']} | {r['variables']} | {r['factors']} | {r['evidence']} | "
            f"{'yes' if r['forest'] else ''} | {'yes' if r['map_converged'] else 'no'} | "
            f"{number(r['energy'])} | {number(r['ref_min_energy'])} | {number(r['map_gap'])} | "
            f"{'yes' if r['pr_converged'] else 'no'} | {number(r['log10_Z'])} | "
            f"{number(r['ref_log10_Z'])} | {number(r.get('log10_Z_error'))} | "
            f"{number(r['mar_max_error'], 5)} | {r['method']} | {r['seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help=f"default: {DATA}")
    parser.add_argument("--max-iter", default="200")
    parser.add_argument("--damping", default="0")
    parser.add_argument("--schedule", default="auto")
    parser.add_argument("--method", default="auto", choices=("auto", "exact", "bp"))
    parser.add_argument("--memory-limit", default="4G")
    args = parser.parse_args(argv)
    references = args.data / "REFERENCES.json"
    if not references.exists():
        print(f"no {references}: the UAI data folder is missing", file=sys.stderr)
        return 2
    options = ["--max-iter", args.max_iter, "--damping", args.damping, "--schedule", args.schedule,
               "--method", args.method, "--memory-limit", args.memory_limit]
    rows = [compare(entry, args.data, options) for entry in json.loads(references.read_text())]
    print(markdown(rows))
    optimal = sum(abs(r["map_gap"]) <= 1e-6 for r in rows)
    exact = sum(bool(r["exact"]) for r in rows)
    print(f"\n{optimal} of {len(rows)} decoded MAP assignments are optimal (gap <= 1e-6); "
          f"{exact} instances answered exactly.")
    print(json.dumps({"options": options, "instances": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
