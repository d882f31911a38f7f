"""Peak memory of building, compiling and running belief propagation on a large grid.

Each case runs in a fresh worker process. After the kernels are loaded (a call on a tiny
graph of the same kinds), the worker builds the workload's :class:`FactorGraph`, frees the
workload's own arrays (the caller's data, not the library's), compiles the graph, then makes
one ``belief_propagation`` call. It reports resident memory above the loaded baseline
(``VmRSS``, and ``VmHWM`` reset before each stage: see ``bpbench/measure.py``), in MiB:

- ``graph``: held by the FactorGraph after building (its tables and scopes);
- ``compiled``: held after ``graph.compile()`` (theta and the index arrays), and the peak
  during compilation;
- ``bp peak``: the peak during the call, and ``result``: what its result holds;
- ``messages + theta``: the two message buffers (factor-to-variable and
  variable-to-factor, 8 bytes per entry each) plus theta, the reference of the target
  ``peak <= 2 x (messages + theta)`` (issue 14); ``ratio`` is the overall peak over it.

Prints a Markdown table, then one JSON line ``{"results": [...], "machine": {...}}``.

Usage::

    python benchmarks/memory.py                                  # grid-dense 2000x2000 K=2
    python benchmarks/memory.py --n 1000,2000 --k 2 --schedule parallel --beta inf
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpbench.measure import peak_rss_mb, reset_peak, rss_mb  # noqa: E402
from bpbench.report import machine  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="grid-dense", help="a bpbench workload kind")
    parser.add_argument("--n", default="2000", help="comma list of grid sides")
    parser.add_argument("--k", default="2", help="comma list of numbers of states")
    parser.add_argument("--schedule", default="sequential", help="BP schedule")
    parser.add_argument("--beta", default="inf", help="inverse temperature (inf: min-sum)")
    parser.add_argument("--iters", type=int, default=3, help="BP iterations of the call")
    parser.add_argument("--no-factor-beliefs", action="store_true",
                        help="pass factor_beliefs=False")
    parser.add_argument("--stages", action="store_true",
                        help="also report memory around each stage of the BP call")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(spec: dict) -> dict:
    """Build, compile and run one case in this process; its figures in MiB."""
    from bpbench.engine_ours import build
    from bpbench.workloads import make_workload, tiny_like

    import factorgraph_ebm as fe

    options = dict(beta=spec["beta"], method="bp", schedule=spec["schedule"],
                   max_iter=spec["iters"], tol=0.0, warn=False,
                   factor_beliefs=spec["factor_beliefs"])
    workload = make_workload(spec["workload"], spec["n"], spec["k"], 0)
    fe.belief_propagation(build(tiny_like(workload)), **options)  # load the kernels
    gc.collect()
    base = rss_mb() - _workload_mb(workload)
    graph = build(workload)
    del workload
    gc.collect()
    graph_mb = rss_mb() - base
    reset_peak()
    started = time.perf_counter()
    cg = graph.compile()
    compile_s = time.perf_counter() - started
    compile_peak = peak_rss_mb() - base
    compiled_mb = rss_mb() - base
    stages = StageRecorder(base) if spec.get("stages") else None
    reset_peak()
    started = time.perf_counter()
    result = fe.belief_propagation(graph, **options)
    bp_s = time.perf_counter() - started
    bp_peak = peak_rss_mb() - base
    if stages is not None:
        stages.rows.append({"stage": "(after the last stage)", "peak_before": bp_peak,
                            "before": math.nan, "peak": math.nan, "after": math.nan})
        bp_peak = max(bp_peak, stages.peak)
        stages.close()
    result_mb = rss_mb() - base - compiled_mb
    reference = (2 * 8.0 * cg.n_message_entries + cg.energies.nbytes) / 2**20
    peak = max(compile_peak, bp_peak)
    return {
        "workload": spec["workload"], "n": spec["n"], "k": spec["k"],
        "schedule": spec["schedule"], "beta": spec["beta"], "iters": spec["iters"],
        "factor_beliefs": spec["factor_beliefs"], "graph_mb": graph_mb,
        "compile_peak_mb": compile_peak, "compiled_mb": compiled_mb, "bp_peak_mb": bp_peak,
        "result_mb": result_mb, "reference_mb": reference, "peak_mb": peak,
        "ratio": peak / reference, "compile_s": compile_s, "bp_s": bp_s,
        "energy": result.energy,
        **({"stages": stages.rows} if stages is not None else {}),
    }


#: The stages of a BP call (functions called by ``inference._run_bp``), by module.
STAGES = {
    "factorgraph_ebm.inference": ("checked_energy_vector", "checked_unary",
                                  "_evidence_unary", "_exact_plan_for", "reduce_factors",
                                  "_initial_messages", "factor_kinds", "drop_isolated",
                                  "_decode_order", "_energy"),
    "factorgraph_ebm.messages": ("scratch", "decode", "belief_totals", "factor_beliefs",
                                 "beliefs_from_totals", "normalize_segments",
                                 "variable_bethe_terms"),
    "factorgraph_ebm.messages.schedules": ("schedule", "iterate"),
}


class StageRecorder:
    """Wraps the functions of :data:`STAGES` to record, per call, the resident memory
    before and after it (MiB above ``base``), the peak during it, and, for an outermost
    call, the peak since the previous outermost call ended (Python code between stages:
    ``_run_bp``'s own arrays). Calls made inside a recorded call are indented."""

    def __init__(self, base: float):
        import importlib

        self.base, self.rows, self.peak, self.saved = base, [], 0.0, []
        self.stack = []
        for module_name, names in STAGES.items():
            module = importlib.import_module(module_name)
            for name in names:
                original = getattr(module, name)
                self.saved.append((module, name, original))
                setattr(module, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def wrapper(*args, **kwargs):
            between = self._fold()
            row = {"stage": "  " * len(self.stack) + name,
                   "peak_before": math.nan if self.stack else between,
                   "before": rss_mb() - self.base, "peak": 0.0}
            self.rows.append(row)
            self.stack.append(row)
            try:
                return original(*args, **kwargs)
            finally:
                self._fold()
                self.stack.pop()
                row["after"] = rss_mb() - self.base
                self.peak = max(self.peak, row["peak"])

        return wrapper

    def _fold(self) -> float:
        """The peak since the last reset, folded into the open calls' peaks; resets it."""
        peak = peak_rss_mb() - self.base
        for row in self.stack:
            row["peak"] = max(row["peak"], peak)
        self.peak = max(self.peak, peak)
        reset_peak()
        return peak

    def close(self) -> None:
        """Restore the wrapped functions."""
        for module, name, original in self.saved:
            setattr(module, name, original)


def stage_table(row: dict) -> str:
    """Markdown table of one case's stages."""
    lines = ["| stage | peak before | RSS before | peak during | RSS after |",
             "|---|---|---|---|---|"]
    for s in row["stages"]:
        lines.append(f"| {s['stage']} | {s['peak_before']:.0f} | {s['before']:.0f} "
                     f"| {s['peak']:.0f} | {s['after']:.0f} |")
    return "\n".join(lines)


def _workload_mb(workload) -> float:
    """MiB of the workload's own arrays (resident in the baseline measurement)."""
    arrays = (workload.unary, workload.scopes, workload.tables)
    return sum(a.nbytes for a in arrays) / 2**20


def table(rows: list[dict]) -> str:
    """Markdown table of the rows."""
    head = ("| workload | schedule | beta | graph | compile peak | compiled | BP peak | result "
            "| messages + theta | peak / (messages + theta) |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['error']} |" + " |" * 8)
            continue
        label = f"{r['workload']} {r['n']}x{r['n']} K={r['k']}"
        lines.append(
            f"| {label} | {r['schedule']} | {r['beta']} | {r['graph_mb']:.0f} "
            f"| {r['compile_peak_mb']:.0f} | {r['compiled_mb']:.0f} | {r['bp_peak_mb']:.0f} "
            f"| {r['result_mb']:.0f} | {r['reference_mb']:.0f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines) + "\n\n(MiB above the process with its kernels loaded)"


def main(argv=None) -> int:
    """Run every case in its own worker; print the table and the JSON line."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return 0
    rows = []
    beta = math.inf if args.beta == "inf" else float(args.beta)
    for n in (int(v) for v in args.n.split(",")):
        for k in (int(v) for v in args.k.split(",")):
            spec = {"workload": args.workload, "n": n, "k": k, "schedule": args.schedule,
                    "beta": beta, "iters": args.iters,
                    "factor_beliefs": not args.no_factor_beliefs, "stages": args.stages}
            print(f"# {args.workload} {n}x{n} K={k} ...", file=sys.stderr, flush=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--worker",
                       json.dumps(spec)]
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=args.timeout, env=os.environ)
            lines = done.stdout.strip().splitlines()
            if done.returncode == 0 and lines:
                rows.append(json.loads(lines[-1]))
            else:
                why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                rows.append({"label": f"{args.workload} {n}x{n} K={k}", "error": why})
    print(table(rows))
    for row in rows:
        if "stages" in row:
            print(f"\nStages of {row['workload']} {row['n']}x{row['n']} K={row['k']} "
                  f"({row['schedule']}), MiB:\n\n{stage_table(row)}")
    print(json.dumps({"results": rows, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
