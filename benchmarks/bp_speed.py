"""Speed of min-sum belief propagation: factorgraph_ebm against a NumPy baseline, a
hand-written Numba min-plus loop (the roofline reference), PGMax, pgmpy and pyAgrum.

Workloads are generated from a seed (``bpbench/workloads.py``): 4-connected n x n grids with
Potts (``grid-potts``) or dense random (``grid-dense``) pairwise tables, chains
(``chain``) and random hypergraphs of arity-3 factors (``random``). Every (engine,
workload) pair runs in a fresh worker process, so that peak memory and the JIT warm-up are
its own. Prints a Markdown table, the decoded energies side by side, start-up times, then
one JSON line ``{"results": [...], "startup": {...}, "machine": {...}}``.

Usage::

    python benchmarks/bp_speed.py                       # the default suite (a few minutes)
    python benchmarks/bp_speed.py --workload grid-dense --n 32,100,300,1000 --k 8 \\
        --engines ours,numpy,pgmax,numba-dense --iters 10 --out benchmarks/output

Engines: ours, numpy, numba-dense (alias roofline), pgmax, pgmpy, pyagrum; the optional
ones are skipped with a message when they are not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpbench import engines, report, startup  # noqa: E402
from bpbench.common import Options, error_row  # noqa: E402
from bpbench.workloads import DEFAULT_K, DEFAULT_N, KINDS, workload_label  # noqa: E402

LOOPY = ("ours", "numpy", "numba-dense", "pgmax")


@dataclass(frozen=True)
class Case:
    """One workload, the engines to run on it and per-case option overrides."""

    kind: str
    n: int
    k: int
    engines: tuple[str, ...]
    overrides: dict = field(default_factory=dict)


#: Options of the largest default cases: one schedule, one call per figure, no convergence run.
BIG = {"cap": 0, "schedules": ("parallel",), "dampings": (0.0,), "repeat": 1}

#: The default suite: the targets of issue 6 plus a small exact reference, in a few minutes.
DEFAULT_SUITE = (
    Case("grid-potts", 7, 4, engines.ALL, {"cap": 100}),
    Case("grid-dense", 100, 8, LOOPY, {"cap": 30}),
    Case("grid-dense", 300, 8, LOOPY, {"cap": 20}),
    Case("grid-potts", 300, 32, ("ours", "numba-dense"), {"iters": 4, **BIG}),
    Case(
        "chain",
        10_000,
        50,
        ("ours", "numpy", "pyagrum"),
        {"iters": 5, "cap": 10, "dampings": (0.0,)},
    ),
    Case("random", 1_000, 4, ("ours", "pgmax")),
    Case("grid-potts", 1000, 8, ("ours", "numba-dense"), {"iters": 3, **BIG}),
)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", help=f"comma list of {', '.join(KINDS)}")
    parser.add_argument("--n", help="comma list of sizes (grid side, chain length, variables)")
    parser.add_argument("--k", help="comma list of numbers of states")
    parser.add_argument("--engines", help=f"comma list of {', '.join(engines.ALL)}")
    parser.add_argument("--iters", type=int, help="I of the timed runs (default 10)")
    parser.add_argument("--cap", type=int, help="iteration cap of the convergence run (50)")
    parser.add_argument("--repeat", type=int, help="timed calls per figure, fastest kept (3)")
    parser.add_argument("--budget", type=float, help="seconds per figure before stopping (2)")
    parser.add_argument("--schedules", help="comma list of parallel,sequential")
    parser.add_argument("--dampings", help="comma list of damping factors (0,0.5)")
    parser.add_argument("--threads", help="comma list of ours' parallel thread counts (1,2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per worker")
    parser.add_argument("--out", type=Path, help="directory for results.json, table, plot")
    parser.add_argument("--save-uai", action="store_true", help="also write each model as .uai")
    parser.add_argument(
        "--startup",
        choices=("auto", "yes", "no"),
        default="auto",
        help="measure fresh-process start-up (auto: with the default suite)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _ints(text: str | None) -> list[int] | None:
    """ "32,100" -> [32, 100] (None for no option)."""
    return [int(float(v)) for v in text.split(",")] if text else None


def _list(text: str | None) -> list[str] | None:
    """ "a, b" -> ["a", "b"] (None for no option)."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def base_options(args) -> Options:
    """Options from the command line, defaults elsewhere."""
    given = {
        "iters": args.iters,
        "cap": args.cap,
        "repeat": args.repeat,
        "budget": args.budget,
        "schedules": tuple(_list(args.schedules)) if args.schedules else None,
        "dampings": tuple(float(d) for d in _list(args.dampings)) if args.dampings else None,
        "threads": tuple(_ints(args.threads)) if args.threads else None,
    }
    return Options(**{key: value for key, value in given.items() if value is not None})


def cases_from(args) -> tuple[list[Case], bool]:
    """The cases to run and whether they are the default suite."""
    try:
        chosen = tuple(engines.canonical(e) for e in _list(args.engines) or [])
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if not args.workload:
        if args.n or args.k:
            raise SystemExit("--n and --k need --workload")
        suite = [
            replace(c, engines=tuple(e for e in c.engines if not chosen or e in chosen))
            for c in DEFAULT_SUITE
        ]
        return [c for c in suite if c.engines], True
    cases = []
    for kind in _list(args.workload):
        if kind not in KINDS:
            raise SystemExit(f"unknown workload {kind!r}; choose from {', '.join(KINDS)}")
        for n in _ints(args.n) or [DEFAULT_N[kind]]:
            for k in _ints(args.k) or [DEFAULT_K[kind]]:
                cases.append(Case(kind, n, k, chosen or engines.ALL))
    return cases, False


def options_for(case: Case, base: Options, args) -> Options:
    """The case's overrides, except where the command line set the option."""
    explicit = {
        "iters": args.iters,
        "cap": args.cap,
        "repeat": args.repeat,
        "schedules": args.schedules,
        "dampings": args.dampings,
    }
    keep = {key: value for key, value in case.overrides.items() if explicit.get(key) is None}
    return replace(base, **keep)


def run_worker(spec: str) -> int:
    """Worker process: run one (engine, workload) pair, print its rows as one JSON line."""
    data = json.loads(spec)
    options = Options.from_dict(data.pop("options"))
    rows = engines.run_case(options=options, **data)
    print(json.dumps(rows))
    return 0


def run_case_in_process(engine: str, case: Case, options: Options, seed: int, timeout: float):
    """Rows of one (engine, workload) pair from a fresh worker process."""
    spec = {
        "engine": engine,
        "kind": case.kind,
        "n": case.n,
        "k": case.k,
        "seed": seed,
        "options": options.to_dict(),
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [error_row(engine, case.kind, case.n, case.k, f"failed: timeout {timeout:g} s")]
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    why = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
    status = f"signal {-done.returncode}" if done.returncode < 0 else done.returncode
    return [error_row(engine, case.kind, case.n, case.k, f"failed ({status}): {why[0]}")]


def save_uai(case: Case, seed: int, out: Path) -> None:
    """Write the case's model as a .uai file with factorgraph_ebm.io.write_uai."""
    from bpbench.engine_ours import build
    from bpbench.workloads import make_workload

    from factorgraph_ebm.io import write_uai

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{case.kind}-n{case.n}-k{case.k}-seed{seed}.uai"
    write_uai(path, build(make_workload(case.kind, case.n, case.k, seed)))
    print(f"# wrote {path}", file=sys.stderr)


def run_all(cases: list[Case], args) -> list[dict]:
    """Every case and engine, in order, with progress on stderr."""
    base = base_options(args)
    rows = []
    for case in cases:
        options = options_for(case, base, args)
        if args.save_uai and args.out:
            save_uai(case, args.seed, args.out)
        for engine in case.engines:
            label = workload_label(case.kind, case.n, case.k)
            print(f"# {engine} on {label} ...", file=sys.stderr, flush=True)
            started, load = time.perf_counter(), os.getloadavg()[0]
            new_rows = run_case_in_process(engine, case, options, args.seed, args.timeout)
            for row in new_rows:
                row["load_1m"] = load
            rows += new_rows
            print(f"#   {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def write_outputs(out: Path, text: str, payload: dict) -> None:
    """results.json, results.md and the scaling plot in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot = report.scaling_plot(payload["results"], out / "bp_speed_scaling.png")
    print(f"# wrote {out / 'results.md'}, {out / 'results.json'}, plot: {plot}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the suite and print the report; the last line is the JSON."""
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    cases, is_default = cases_from(args)
    info = report.machine()
    started = time.perf_counter()
    rows = run_all(cases, args)
    figures = {}
    if args.startup == "yes" or (args.startup == "auto" and is_default):
        print("# start-up times ...", file=sys.stderr, flush=True)
        figures = startup.measure()
    info["load_average_after"] = list(os.getloadavg())
    info["wall_s"] = time.perf_counter() - started
    sections = [
        report.markdown_table(rows),
        "Decoded energies (damping 0 or exact):",
        report.energy_check(rows),
    ]
    if figures:
        sections.append(report.startup_table(figures))
    text = "\n\n".join(sections)
    payload = {"results": rows, "startup": figures, "machine": info}
    print(text)
    if args.out:
        write_outputs(args.out, text, payload)
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
