"""The fixed cost of a belief-propagation call (issue 16): what a call costs beyond its
iterations (set-up, the schedule's final variable sweep, decoding, variable and factor
beliefs, the Bethe free energy, the result), in seconds and in parallel iterations' worth.

For each grid and semiring, ``belief_propagation(g, beta=..., method="bp",
schedule="parallel", max_iter=m, tol=0, threads=T)`` with the library's defaults otherwise
(``factor_beliefs=True`` unless ``--no-factor-beliefs``; ``--read`` also reads
``result.factor_beliefs`` within the timed call, which computes them where the result
defers them to first access; at finite beta ``free_energy=True``: the Bethe free energy;
always the decoded assignment, its energy and the variable beliefs) is timed at m = 1 and
m = I, alternated, best of R each, in CPU
seconds of the process (one thread; ``--clock wall``: wall-clock seconds). Per iteration is
(t(I) - t(1)) / (I - 1); the fixed cost is t(1) minus one iteration. ``--stages`` adds the
time spent in each function of the call (the stages of ``memory.py``), fastest of the R
calls with m = 1.

``--compare DIR`` runs every case twice per round, alternating this checkout with the
package of another checkout ``DIR`` (e.g. ``main``'s worktree): a before/after table from
one run. Each case and checkout runs in its own worker process.

Usage::

    python benchmarks/call_cost.py                               # 300 and 1000, K=8
    python benchmarks/call_cost.py --n 300 --betas inf --stages
    python benchmarks/call_cost.py --compare /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bpbench.report import machine  # noqa: E402

#: The functions timed by ``--stages``, by module (a subset of ``memory.STAGES``).
STAGES = {
    "factorgraph_ebm.inference": ("_evidence_unary", "reduce_factors", "_initial_messages",
                                  "factor_kinds", "drop_isolated", "_decode_order",
                                  "_energy"),
    "factorgraph_ebm.messages": ("scratch", "variable_beliefs", "decode", "variable_totals",
                                 "belief_totals", "factor_beliefs", "beliefs_from_totals",
                                 "normalized_factor_beliefs", "normalize_segments",
                                 "variable_bethe_terms"),
    "factorgraph_ebm.messages.schedules": ("schedule", "iterate"),
}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="grid-dense", help="a bpbench workload kind")
    parser.add_argument("--n", default="300,1000", help="comma list of grid sides")
    parser.add_argument("--k", default="8", help="comma list of numbers of states")
    parser.add_argument("--betas", default="inf,1", help="comma list (inf: min-sum)")
    parser.add_argument("--schedule", default="parallel", help="BP schedule")
    parser.add_argument("--threads", type=int, default=1, help="threads of the call")
    parser.add_argument("--iters", type=int, default=6, help="I of the long calls")
    parser.add_argument("--repeat", type=int, default=5, help="R: calls per figure")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --compare: alternations per case (best of all)")
    parser.add_argument("--no-factor-beliefs", action="store_true",
                        help="pass factor_beliefs=False")
    parser.add_argument("--read", action="store_true",
                        help="read result.factor_beliefs in the timed call (computing them "
                             "where the result defers them)")
    parser.add_argument("--stages", action="store_true", help="time each stage of a call")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="CPU seconds of the process (default) or wall-clock seconds")
    parser.add_argument("--compare", help="another checkout: a before column")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(spec: dict) -> dict:
    """Time one case in this process."""
    from bpbench.engine_ours import build
    from bpbench.workloads import make_workload, tiny_like

    import factorgraph_ebm as fe

    options = dict(beta=spec["beta"], method="bp", schedule=spec["schedule"], tol=0.0,
                   warn=False, threads=spec["threads"],
                   factor_beliefs=spec["factor_beliefs"])
    workload = make_workload(spec["workload"], spec["n"], spec["k"], 0)
    tiny = build(tiny_like(workload))
    fe.belief_propagation(tiny, max_iter=2, **options)  # load the kernels
    graph = build(workload)
    graph.compile()
    fe.belief_propagation(graph, max_iter=1, **options)  # caches (reduction, plan)
    t_one = t_many = math.inf
    clock = CLOCK[spec["clock"]]

    def call(max_iter):
        result = fe.belief_propagation(graph, max_iter=max_iter, **options)
        if spec.get("read"):
            _ = result.factor_beliefs
        return result

    for _ in range(spec["repeat"]):
        t_one = min(t_one, _timed(lambda: call(max_iter=1), clock))
        t_many = min(t_many, _timed(lambda: call(max_iter=spec["iters"]), clock))
    row = {**spec, "package": fe.__file__, **_figures(t_one, t_many, spec["iters"])}
    if spec.get("stages"):
        row["stage_seconds"] = _stage_times(fe, graph, options, spec["repeat"])
    return row


def _figures(t_one: float, t_many: float, iters: int) -> dict:
    """Per iteration and the fixed cost from the best t(1) and t(I)."""
    per_iter = max(t_many - t_one, 0.0) / (iters - 1)
    fixed = t_one - per_iter
    return {"t_one": t_one, "t_many": t_many, "per_iter": per_iter, "fixed": fixed,
            "fixed_iters": fixed / per_iter if per_iter > 0 else math.inf}


#: The clock of the figures: CPU seconds of this process (the calls run on one thread),
#: steadier than wall-clock seconds on a shared, loaded machine; ``--clock wall`` for those.
CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}


def _timed(call, clock=time.process_time) -> float:
    started = clock()
    result = call()
    seconds = clock() - started
    del result
    return seconds


def _stage_times(fe, graph, options, repeat) -> dict:
    """Fastest seconds of each stage over ``repeat`` calls with ``max_iter=1`` (nested
    stages counted in their callers too)."""
    import importlib

    best: dict[str, float] = {}
    saved = []
    calls: dict[str, float] = {}

    def wrap(name, original):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                calls[name] = calls.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    for module_name, names in STAGES.items():
        module = importlib.import_module(module_name)
        for name in names:
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, wrap(name, getattr(module, name)))
    try:
        for _ in range(repeat):
            calls.clear()
            calls["(whole call)"] = _timed(lambda: fe.belief_propagation(graph, max_iter=1,
                                                                         **options))
            for name, seconds in calls.items():
                best[name] = min(best.get(name, math.inf), seconds)
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
    return best


def table(rows: list[dict], compare: bool) -> str:
    """Markdown table of the rows."""
    head = ("| workload | beta | factor beliefs | read | threads | version | t(1) s | t(I) s "
            "| s/iter | fixed s | fixed, iterations' worth |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        label = f"{r['workload']} {r['n']}x{r['n']} K={r['k']}"
        version = r["version"] if compare else "this"
        lines.append(
            f"| {label} | {r['beta']} | {'yes' if r['factor_beliefs'] else 'no'} "
            f"| {'yes' if r.get('read') else 'no'} "
            f"| {r['threads']} | {version} | {r['t_one']:.4f} "
            f"| {r['t_many']:.4f} | {r['per_iter']:.4f} | {r['fixed']:.4f} "
            f"| {r['fixed_iters']:.2f} |"
        )
    return "\n".join(lines)


def stage_table(row: dict) -> str:
    """Markdown table of one row's stages."""
    lines = ["| stage | seconds |", "|---|---|"]
    for name, seconds in sorted(row["stage_seconds"].items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds:.4f} |")
    return "\n".join(lines)


def _worker(spec: dict, package_root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=package_root)
    command = [sys.executable, str(HERE / "call_cost.py"), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(done.stderr.strip()[-2000:])
    return json.loads(lines[-1])


def main(argv=None) -> int:
    """Run every case in its own worker; print the tables and one JSON line."""
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(run_worker(spec)))
        return 0
    here_root = str(HERE.parent)
    versions = [("this", here_root)]
    if args.compare:
        versions = [("before", str(Path(args.compare).resolve())), ("after", here_root)]
    rows = []
    for n in (int(v) for v in args.n.split(",")):
        for k in (int(v) for v in args.k.split(",")):
            for beta_text in args.betas.split(","):
                beta = math.inf if beta_text == "inf" else float(beta_text)
                spec = {"workload": args.workload, "n": n, "k": k, "beta": beta,
                        "schedule": args.schedule, "threads": args.threads,
                        "iters": args.iters, "repeat": args.repeat, "stages": args.stages,
                        "factor_beliefs": not args.no_factor_beliefs, "clock": args.clock,
                        "read": args.read}
                best: dict[str, dict] = {}
                for _ in range(max(1, args.rounds) if args.compare else 1):
                    for version, root in versions:
                        print(f"# {spec['workload']} {n} K={k} beta={beta} {version}",
                              file=sys.stderr, flush=True)
                        row = {**_worker(spec, root), "version": version}
                        if version in best:  # the best t(1) and t(I) of the rounds
                            t_one = min(row["t_one"], best[version]["t_one"])
                            t_many = min(row["t_many"], best[version]["t_many"])
                            row.update(_figures(t_one, t_many, spec["iters"]))
                        best[version] = row
                rows.extend(best[version] for version, _ in versions)
    print(table(rows, bool(args.compare)))
    for row in rows:
        if "stage_seconds" in row:
            print(f"\nStages, {row['workload']} {row['n']}x{row['n']} K={row['k']} "
                  f"beta={row['beta']} ({row['version']}), seconds of a max_iter=1 call:\n\n"
                  f"{stage_table(row)}")
    print(json.dumps({"results": rows, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
