"""Certified MAP (TRW-S) against sequential min-sum BP on the UAI development set.

For every instance of ``REFERENCES.json`` in the UAI data folder whose reference minimum
energy is finite (with its ``.evid`` when there is one), with the loopy methods forced (no
junction tree): sequential min-sum BP (``method="bp", schedule="sequential"``) and
:func:`factorgraph_ebm.certified.trws`. Prints a Markdown table: each method's energy minus
the reference minimum (0 = optimal, ``inf`` = an impossible assignment), TRW-S's lower bound
below the reference (``ref - bound``, >= 0 unless the bound is wrong), its gap to its own
bound, whether it is certified optimal, and the seconds of each. Then a summary (instances
at the reference optimum, certified, bound violations, TRW-S at most BP's energy) and one
JSON line with every figure (``Infinity`` for non-finite numbers).

With ``--grids`` it runs instead the seeded grids of ``bp_speed.py`` (``grid-potts`` with
compact Potts factors, ``grid-dense``; ``--grid N K`` for each size): parallel and
sequential BP for ``--bp-iter`` iterations, residual BP for ``--residual-iter`` (each D
message updates), TRW-S for ``--max-iter`` within ``--time-limit``, and pytoulbar2 (the
``bench`` extra; skipped, and said so, when it is not installed) with its default search
and a CPU-time limit of ``--toulbar2-seconds`` in a worker process (building its model is
not counted). Prints the energy of each, TRW-S's bound and gap, seconds per iteration
(TRW-S's include a decoding per iteration; its total also the local search and BP
candidate), then the issue's goals for TRW-S, met or not, per grid.

Usage::

    python benchmarks/certified_map.py [--data DIR] [--max-iter N] [--time-limit S]
                                       [--no-bp-candidate] [--only NAME ...]
    python benchmarks/certified_map.py --grids [--grid N K ...] [--kinds KIND ...]
                                       [--max-iter N] [--time-limit S] [--bp-iter N]
                                       [--residual-iter N] [--toulbar2-seconds S]

Data: ``../shared/data/uai`` beside the repository (see its ``SOURCE.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

import factorgraph_ebm as fe
from factorgraph_ebm.certified import OPTIMALITY_ATOL, OPTIMALITY_RTOL, trws
from factorgraph_ebm.io import read_evidence, read_uai

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uai"


def load(data: Path, name: str):
    """The instance's graph and evidence {variable name: state}."""
    graph = read_uai(data / f"{name}.uai")
    evid = data / f"{name}.uai.evid"
    evidence = {}
    if evid.exists():
        evidence = {graph.variables[i]: s for i, s in read_evidence(evid, graph).items()}
    return graph, evidence


def at_reference(energy: float, reference: float) -> bool:
    """Whether ``energy`` is the reference minimum, within the optimality tolerance."""
    return math.isfinite(energy) and abs(energy - reference) <= (
        OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(reference))


def compare(data: Path, entry: dict, options: dict) -> dict:
    """Both methods on one instance of ``REFERENCES.json``."""
    name = entry["name"]
    reference = entry["references"]["MAP"]["min_energy"]
    graph, evidence = load(data, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence, +inf decodings: in the table
        started = time.perf_counter()
        bp = fe.min_sum(graph, evidence=evidence, method="bp", schedule="sequential",
                        max_iter=options["max_iter"], factor_beliefs=False)
        bp_seconds = time.perf_counter() - started
        started = time.perf_counter()
        certified = trws(graph, evidence=evidence, **options)
        seconds = time.perf_counter() - started
    bound = certified.lower_bound
    return {
        "name": name,
        "reference": reference,
        "bp_energy": bp.energy,
        "bp_seconds": bp_seconds,
        "energy": certified.energy,
        "lower_bound": bound,
        "gap": certified.gap,
        "optimal": bool(certified.optimal),
        "at_reference": at_reference(certified.energy, reference),
        "bound_violation": bound > reference + OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(
            reference),
        "not_worse_than_bp": certified.energy <= bp.energy + OPTIMALITY_ATOL
        + OPTIMALITY_RTOL * abs(reference),
        "n_iter": certified.n_iter,
        "seconds": seconds,
    }


def figure(value: float, reference: float) -> str:
    """``value`` (a difference of energies near ``reference``) to 3 digits; 0 within the
    optimality tolerance (rounding)."""
    if value == math.inf:
        return "inf"
    if abs(value) <= OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(reference):
        return "0"
    return f"{value:.3g}"


def table(rows: list[dict]) -> str:
    lines = [
        "| instance | BP - ref | TRW-S - ref | ref - bound | gap | certified | TRW-S it | "
        "BP s | TRW-S s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ref = row["reference"]
        lines.append(
            f"| `{row['name']}` | {figure(row['bp_energy'] - ref, ref)} | "
            f"{figure(row['energy'] - ref, ref)} | "
            f"{figure(ref - row['lower_bound'], ref)} | {figure(row['gap'], ref)} | "
            f"{'yes' if row['optimal'] else ''} | {row['n_iter']} | "
            f"{row['bp_seconds']:.2f} | {row['seconds']:.2f} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    return {
        "instances": len(rows),
        "finite_energy": sum(math.isfinite(r["energy"]) for r in rows),
        "bp_finite_energy": sum(math.isfinite(r["bp_energy"]) for r in rows),
        "at_reference": sum(r["at_reference"] for r in rows),
        "bp_at_reference": sum(at_reference(r["bp_energy"], r["reference"]) for r in rows),
        "certified_optimal": sum(r["optimal"] for r in rows),
        "bound_violations": sum(r["bound_violation"] for r in rows),
        "not_worse_than_bp": sum(r["not_worse_than_bp"] for r in rows),
        "trws_seconds": sum(r["seconds"] for r in rows),
        "bp_seconds": sum(r["bp_seconds"] for r in rows),
    }


#: BP schedules of the grid comparison.
GRID_SCHEDULES = ("parallel", "sequential", "residual")


def grid_row(kind: str, n: int, k: int, max_iter: int, time_limit: float | None,
             bp_iter: int, residual_iter: int, toulbar2_seconds: float) -> dict:
    """Parallel, sequential and residual BP (``bp_iter`` iterations, the residual schedule
    ``residual_iter``), TRW-S and toulbar2 on one seeded grid of ``bp_speed.py``."""
    from bpbench.engine_ours import build
    from bpbench.workloads import make_workload

    workload = make_workload(kind, n, k)
    graph = build(workload)
    graph.compile()
    row = {"workload": workload.label, "kind": kind, "n": n, "k": k}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for schedule in GRID_SCHEDULES:
            fe.min_sum(graph, method="bp", schedule=schedule, max_iter=1, factor_beliefs=False)
            started = time.perf_counter()
            cpu = time.process_time()
            iterations = residual_iter if schedule == "residual" else bp_iter
            bp = fe.min_sum(graph, method="bp", schedule=schedule, max_iter=iterations,
                            tol=0.0, factor_beliefs=False)
            seconds = time.perf_counter() - started
            row[f"bp_{schedule}"] = {"energy": bp.energy, "seconds": seconds,
                                     "cpu_seconds": time.process_time() - cpu,
                                     "n_iter": bp.n_iter, "per_iter": seconds / bp.n_iter}
            print(f"  {workload.label} BP {schedule}: {bp.energy:.6g}, {seconds:.1f} s",
                  flush=True)
        # Compile (or load) TRW-S's kernels, local search included, on a small grid of the
        # same kind: the same kernel signatures, without a full local search on this one.
        trws(build(make_workload(kind, 8, k)), max_iter=1, bp_candidate=False)
        started = time.perf_counter()
        cpu = time.process_time()
        certified = trws(graph, max_iter=max_iter, tol=0.0, time_limit=time_limit)
        seconds = time.perf_counter() - started
    row["trws"] = {"energy": certified.energy, "lower_bound": certified.lower_bound,
                   "gap_percent": 100 * certified.gap / abs(certified.energy),
                   "n_iter": certified.n_iter, "seconds": seconds,
                   "cpu_seconds": time.process_time() - cpu, "per_iter": None}
    print(f"  {workload.label} TRW-S: {certified.energy:.6g} >= {certified.lower_bound:.6g}, "
          f"{certified.n_iter} it, {seconds:.1f} s", flush=True)
    # Iterations alone (no local search, no BP candidate), for the cost per iteration.
    started = time.perf_counter()
    cpu = time.process_time()
    trws(graph, max_iter=certified.n_iter, tol=0.0, local_search=False, bp_candidate=False)
    row["trws"]["per_iter"] = (time.perf_counter() - started) / certified.n_iter
    row["trws"]["cpu_per_iter"] = (time.process_time() - cpu) / certified.n_iter
    del graph
    row["toulbar2"] = toulbar2_in_worker(kind, n, k, toulbar2_seconds)
    print(f"  {workload.label} toulbar2: {row['toulbar2']}", flush=True)
    return row


#: Costs of the toulbar2 model: energies times COST_SCALE, rounded (6 decimals).
COST_SCALE = 10**6


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as right-aligned decimal text, space-padded: uint8 array of
    shape ``values.shape + (width,)`` (vectorized: a model file of 10^8 entries is written
    in seconds, where Python string formatting takes minutes)."""
    values = np.asarray(values, dtype=np.int64)
    out = np.full(values.shape + (width,), ord(" "), dtype=np.uint8)
    rest = values.copy()
    for q in range(width - 1, -1, -1):
        digit = (rest % 10).astype(np.uint8) + ord("0")
        out[..., q] = np.where((rest > 0) | (q == width - 1), digit, ord(" "))
        rest //= 10
    if (rest > 0).any():
        raise ValueError(f"a value does not fit in {width} digits")
    return out


def write_wcsp(workload, path: Path) -> None:
    """The workload as a toulbar2 ``.wcsp`` file (integer costs: energies times
    COST_SCALE, rounded): a unary cost function per variable, a binary one per factor
    (a shared table's most common cost as the default, only the other tuples listed)."""
    n, k = workload.n_vars, workload.k
    unary = np.rint(workload.unary * COST_SCALE).astype(np.int64)
    tables = workload.stacked_tables().reshape(workload.n_factors, k * k)
    cost_width = len(str(int(max(unary.max(), np.rint(tables.max() * COST_SCALE))))) + 1
    var_width = len(str(n)) + 1
    values = np.arange(k * k)
    if workload.shared:
        table = np.rint(tables[0] * COST_SCALE).astype(np.int64)
        found, counts = np.unique(table, return_counts=True)
        default = int(found[np.argmax(counts)])
        listed = np.flatnonzero(table != default)
    else:
        default, listed = 0, values
    upper = (int(unary.max(axis=1).sum()) + workload.n_factors
             * int(np.rint(tables.max() * COST_SCALE)) + 1)
    space, newline = np.uint8(ord(" ")), np.uint8(ord("\n"))

    def lines(*columns):
        """Rows of text: the columns (uint8 arrays (rows, width)) joined by spaces."""
        parts = []
        for column in columns:
            parts += [column, np.full((len(column), 1), space)]
        parts[-1] = np.full((len(columns[0]), 1), newline)
        return np.concatenate(parts, axis=1)

    tuple_prefix = lines(_digits(listed // k, 3), _digits(listed % k, 3))[:, :-1]  # "a b"
    with open(path, "wb") as out:
        out.write(f"grid {n} {k} {n + workload.n_factors} {upper}\n".encode())
        out.write((" ".join([str(k)] * n) + "\n").encode())
        for lo in range(0, n, 1 << 16):  # unary functions: "1 v 0 k", then "a cost"
            rows = np.arange(lo, min(n, lo + (1 << 16)))
            head = lines(np.full((len(rows), 1), ord("1"), np.uint8),
                         _digits(rows, var_width), _digits(np.zeros(len(rows)), 1),
                         _digits(np.full(len(rows), k), 4))
            body = lines(np.broadcast_to(_digits(np.arange(k), 3), (len(rows), k, 3))
                         .reshape(-1, 3), _digits(unary[rows].reshape(-1), cost_width))
            out.write(np.concatenate([head, body.reshape(len(rows), -1)], axis=1).tobytes())
        step = max(1, (1 << 24) // max(1, len(listed)))
        scopes = workload.scopes
        for lo in range(0, workload.n_factors, step):  # "2 i j default n", then "a b cost"
            rows = np.arange(lo, min(workload.n_factors, lo + step))
            head = lines(np.full((len(rows), 1), ord("2"), np.uint8),
                         _digits(scopes[rows, 0], var_width),
                         _digits(scopes[rows, 1], var_width),
                         _digits(np.full(len(rows), default), cost_width),
                         _digits(np.full(len(rows), len(listed)), 5))
            costs = np.rint(tables[rows][:, listed] * COST_SCALE).astype(np.int64)
            body = np.concatenate([np.broadcast_to(tuple_prefix, (len(rows),) + tuple_prefix
                                                   .shape),
                                   _digits(costs, cost_width),
                                   np.full(costs.shape + (1,), newline)], axis=2)
            out.write(np.concatenate([head, body.reshape(len(rows), -1)], axis=1).tobytes())


def toulbar2_best(kind: str, n: int, k: int, seconds: float) -> dict:
    """pytoulbar2's best assignment within ``seconds`` of its CPU-time limit (default
    options: hybrid best-first search) on the workload, with its energy evaluated by
    ``Workload.energy``; ``{"status": "absent"}`` without pytoulbar2. The model is written
    to a ``.wcsp`` file (:func:`write_wcsp`, costs to 6 decimals) that toulbar2 reads:
    building it by pytoulbar2's Python calls had not finished in 9 minutes on the dense
    300x300 K=32 grid."""
    try:
        import pytoulbar2
    except ImportError:
        return {"status": "absent"}
    import tempfile

    from bpbench.workloads import make_workload

    workload = make_workload(kind, n, k)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grid.wcsp"
        write_wcsp(workload, path)
        file_bytes = path.stat().st_size
        cfn = pytoulbar2.CFN(verbose=-1)
        cfn.Read(str(path))
    build_seconds = time.perf_counter() - started
    cpu = time.process_time()
    started = time.perf_counter()
    answer = cfn.Solve(timeLimit=int(math.ceil(seconds)))
    out = {"build_seconds": build_seconds, "file_bytes": file_bytes,
           "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
    if answer is None:
        return out | {"status": "no solution", "energy": math.inf}
    assignment, primal, _ = answer
    dual = cfn.GetDDualBound()
    return out | {"status": "optimal" if primal <= dual + 1e-6 else "time limit",
                  "energy": workload.energy(assignment), "dual_bound": dual / COST_SCALE}


def toulbar2_in_worker(kind: str, n: int, k: int, seconds: float) -> dict:
    """:func:`toulbar2_best` in a fresh process (its memory is freed after; a crash or a
    hang of the solver does not end the benchmark: 20x ``seconds`` of wall clock at most)."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(toulbar2_best, kind, n, k, seconds)
        try:
            return future.result(timeout=20 * seconds + 600)
        except concurrent.futures.TimeoutError:
            for process in pool._processes.values():  # the worker we started
                process.kill()
            return {"status": "wall-clock timeout", "energy": math.inf}
        except Exception as exc:  # noqa: BLE001 - reported in the table
            return {"status": f"error: {exc!r}", "energy": math.inf}


def grid_table(rows: list[dict]) -> str:
    lines = ["| workload | BP parallel E | BP sequential E | BP residual E | TRW-S E | "
             "TRW-S bound | gap % | TRW-S it | TRW-S s | toulbar2 30 s E | "
             "s/it par / seq / res / TRW-S |", "|---|" + "---|" * 10]
    for row in rows:
        par, seq, res, t = (row["bp_parallel"], row["bp_sequential"], row["bp_residual"],
                            row["trws"])
        tb2 = row["toulbar2"]
        tb2_text = (f"{tb2['energy']:.6g} ({tb2['status']})" if "energy" in tb2
                    else tb2["status"])
        lines.append(
            f"| {row['workload']} | {par['energy']:.6g} | {seq['energy']:.6g} | "
            f"{res['energy']:.6g} | {t['energy']:.6g} | {t['lower_bound']:.6g} | "
            f"{t['gap_percent']:.3f} | {t['n_iter']} | {t['seconds']:.1f} | {tb2_text} | "
            f"{par['per_iter']:.3f} / {seq['per_iter']:.3f} / {res['per_iter']:.3f} / "
            f"{t['per_iter']:.3f} |")
    return "\n".join(lines)


def grid_goals(rows: list[dict], seconds: float) -> list[str]:
    """The issue's goals per grid, met or not, with the figures."""
    lines = []
    for row in rows:
        t, seq, tb2 = row["trws"], row["bp_sequential"], row["toulbar2"]
        ratio = t["per_iter"] / seq["per_iter"]
        checks = [
            (f"within 1% of its bound ({t['gap_percent']:.3f}%)", t["gap_percent"] <= 1.0),
            (f"in at most {seconds:g} s ({t['seconds']:.1f} s)", t["seconds"] <= seconds),
            (f"per-iteration cost within 1.5x of sequential BP's ({ratio:.2f}x)",
             ratio <= 1.5),
        ]
        if "energy" in tb2 and math.isinf(tb2["energy"]):
            checks.append((f"at most toulbar2's energy (toulbar2: {tb2['status']})", True))
        elif "energy" in tb2:
            checks.append((f"at most toulbar2's energy ({t['energy']:.6g} vs "
                           f"{tb2['energy']:.6g})", t["energy"] <= tb2["energy"] + 1e-6))
        else:
            checks.append(("toulbar2 comparison skipped (pytoulbar2 not installed)", None))
        for text, met in checks:
            verdict = "skipped" if met is None else "met" if met else "NOT met"
            lines.append(f"- {row['workload']}: TRW-S {text}: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--time-limit", type=float, default=None)
    parser.add_argument("--no-bp-candidate", action="store_true",
                        help="TRW-S's own decodings only (bp_candidate=False)")
    parser.add_argument("--only", nargs="*", help="instance names (default: all)")
    parser.add_argument("--grids", action="store_true", help="the bp_speed.py grids instead")
    parser.add_argument("--grid", nargs=2, type=int, action="append", metavar=("N", "K"),
                        help="grid size and states (default: 300 8, 300 32, 1000 8)")
    parser.add_argument("--kinds", nargs="+", default=["grid-potts", "grid-dense"],
                        choices=["grid-potts", "grid-dense"])
    parser.add_argument("--bp-iter", type=int, default=50, help="BP iterations (--grids)")
    parser.add_argument("--residual-iter", type=int, default=10,
                        help="residual BP iterations (--grids; each is D message updates)")
    parser.add_argument("--toulbar2-seconds", type=float, default=30.0,
                        help="pytoulbar2's CPU-time limit per grid (--grids)")
    args = parser.parse_args(argv)
    if args.grids:
        rows = []
        for n, k in args.grid or [(300, 8), (300, 32), (1000, 8)]:
            for kind in args.kinds:
                rows.append(grid_row(kind, n, k, args.max_iter, args.time_limit,
                                     args.bp_iter, args.residual_iter,
                                     args.toulbar2_seconds))
                print(rows[-1], flush=True)
        print()
        print(grid_table(rows))
        print()
        print("\n".join(grid_goals(rows, args.time_limit or math.inf)))
        print(json.dumps({"options": vars(args) | {"data": str(args.data)}, "rows": rows}))
        return 0
    entries = json.loads((args.data / "REFERENCES.json").read_text())
    entries = [e for e in entries if math.isfinite(e["references"]["MAP"]["min_energy"])
               and (not args.only or e["name"] in args.only)]
    options = dict(max_iter=args.max_iter, time_limit=args.time_limit,
                   bp_candidate=not args.no_bp_candidate)
    with warnings.catch_warnings():  # compile (or load) every kernel first: no timing
        warnings.simplefilter("ignore")  # below includes a compilation
        for entry in entries:
            graph, evidence = load(args.data, entry["name"])
            fe.min_sum(graph, evidence=evidence, method="bp", schedule="sequential",
                       max_iter=1, factor_beliefs=False)
            trws(graph, evidence=evidence, max_iter=1)
    rows = []
    for entry in entries:
        rows.append(compare(args.data, entry, options))
        row = rows[-1]
        print(f"{row['name']}: TRW-S {row['energy']:.6g} (bound {row['lower_bound']:.6g}), "
              f"BP {row['bp_energy']:.6g}, reference {row['reference']:.6g}", flush=True)
    print()
    print(table(rows))
    print()
    totals = summary(rows)
    print(", ".join(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in totals.items()))
    print(json.dumps({"options": options, "summary": totals, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
