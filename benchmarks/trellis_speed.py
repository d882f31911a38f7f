"""Speed of the chain (trellis) algorithms of ``factorgraph_ebm.trellis`` on one long
sequence, against the general belief-propagation engine on the same chain and a plain
NumPy implementation.

Workload (seeded): one sequence of ``--t`` tokens with ``--k`` states, unary energies
U(0, 1), one shared transition table U(0, 1) of shape (K, K), no start or end energies.

Engines and tasks:

- ``trellis`` (``factorgraph_ebm.trellis``): ``viterbi``; ``forward-backward`` at beta = 1
  (marginals, ln Z, transition marginals); ``min-sum forward-backward`` (beta = inf,
  absolute min-marginals); ``kbest`` (k = 2); ``best_incorrect`` (the most offending
  incorrect path w.r.t. the Viterbi labels); and ``viterbi + forward-backward``, one call of
  each (the target: under 0.05 s at T = 10^4, K = 50);
- ``bp`` (``factorgraph_ebm.min_sum`` / ``sum_product`` on a ``FactorGraph`` chain, schedule
  "auto" = the exact two-pass schedule): ``build graph`` (``add_variables``, two
  ``add_factors`` blocks, ``compile``), ``min-sum`` (decoding and min-marginals, the
  counterpart of Viterbi + min-sum forward-backward) and ``sum-product`` at beta = 1;
- ``numpy`` (vectorized over states, a Python loop over tokens): ``viterbi`` (min-plus with
  argmin and back pointers) and ``forward-backward`` (log domain, max-shifted logsumexp).

Every figure is the fastest of ``--repeat`` calls after one warm-up call (which also
compiles the Numba kernels, or loads them from the cache): wall-clock seconds
(``time.perf_counter``) and CPU seconds of the calling thread (``time.thread_time``, less
sensitive to other processes on a busy machine; the load average is in the JSON). The energies,
ln Z and marginals the engines compute are checked against each other. Prints a Markdown
table, the checks, and as the last line one JSON object
``{"results": [{"engine", "task", "seconds", "cpu_seconds"}, ...], "checks": {...},
"workload": {...}, "machine": {...}}``.

Usage::

    python benchmarks/trellis_speed.py                  # --t 10000 --k 50 --repeat 5
    python benchmarks/trellis_speed.py --t 1000 --k 8 --repeat 3 --engines trellis,numpy
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

ENGINES = ("trellis", "bp", "numpy")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--t", type=int, default=10_000, help="sequence length (default 10000)")
    parser.add_argument("--k", type=int, default=50, help="number of states (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per task (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}"
    )
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}; choose from {', '.join(ENGINES)}")
    if args.t < 2 or args.k < 1 or args.repeat < 1:
        parser.error("need --t >= 2, --k >= 1 and --repeat >= 1")
    return args


def workload(t: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unary energies (t, k) and a shared transition table (k, k), both U(0, 1)."""
    rng = np.random.default_rng([seed, t, k])
    return rng.random((t, k)), rng.random((k, k))


def best_of(fn: Callable, repeat: int):
    """((fastest wall-clock seconds, fastest CPU seconds of this thread) of ``repeat``
    calls after one warm-up, last result). The CPU time is less sensitive to other
    processes on a busy machine; every timed kernel here runs on the calling thread (one
    sequence, so the trellis kernels run serially)."""
    result = fn()
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.thread_time()
        result = fn()
        cpu = min(cpu, time.thread_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return (wall, cpu), result


# --------------------------------------------------------------------------- NumPy baseline
def numpy_viterbi(unary: np.ndarray, transition: np.ndarray) -> tuple[np.ndarray, float]:
    """Min-plus Viterbi vectorized over states: (path, energy)."""
    t_len, k = unary.shape
    back = np.empty((t_len, k), dtype=np.int64)
    score = unary[0].copy()
    for t in range(1, t_len):
        cand = score[:, None] + transition
        back[t] = cand.argmin(axis=0)
        score = cand[back[t], np.arange(k)] + unary[t]
    path = np.empty(t_len, dtype=np.int64)
    path[-1] = int(score.argmin())
    for t in range(t_len - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, float(score.min())


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(x - top).sum(axis=axis))


def numpy_forward_backward(
    unary: np.ndarray, transition: np.ndarray, beta: float = 1.0
) -> tuple[np.ndarray, float]:
    """Log-domain forward-backward vectorized over states: (marginals, ln Z)."""
    t_len, k = unary.shape
    log_t = -beta * transition
    log_u = -beta * unary
    fwd = np.empty((t_len, k))
    bwd = np.zeros((t_len, k))
    fwd[0] = log_u[0]
    for t in range(1, t_len):
        fwd[t] = _logsumexp(fwd[t - 1][:, None] + log_t, axis=0) + log_u[t]
    for t in range(t_len - 2, -1, -1):
        bwd[t] = _logsumexp(log_t + (log_u[t + 1] + bwd[t + 1])[None, :], axis=1)
    log_z = float(_logsumexp(fwd[-1], axis=0))
    return np.exp(fwd + bwd - log_z), log_z


# --------------------------------------------------------------------------- engines
def run_trellis(unary, transition, repeat, rows, checks) -> None:
    from factorgraph_ebm import trellis

    seconds, vit = best_of(lambda: trellis.viterbi(unary, transition), repeat)
    rows.append(("trellis", "viterbi", seconds))
    checks["energy"]["trellis"] = float(vit.energy[0])
    seconds, fb = best_of(lambda: trellis.forward_backward(unary, transition, beta=1.0), repeat)
    rows.append(("trellis", "forward-backward", seconds))
    checks["log_z"]["trellis"] = float(fb.log_partition[0])
    checks["marginals"]["trellis"] = fb.marginals
    seconds, ms = best_of(lambda: trellis.forward_backward(unary, transition, beta=np.inf), repeat)
    rows.append(("trellis", "min-sum forward-backward", seconds))
    checks["min_marginals"]["trellis"] = ms.marginals
    seconds, kb = best_of(lambda: trellis.kbest(unary, transition, k=2), repeat)
    rows.append(("trellis", "kbest (k=2)", seconds))
    checks["kbest"] = [float(e) for e in kb.energy[0]]
    seconds, bi = best_of(lambda: trellis.best_incorrect(unary, transition, vit.labels), repeat)
    rows.append(("trellis", "best_incorrect", seconds))
    checks["best_incorrect"] = float(bi.energy[0])

    def both():
        trellis.viterbi(unary, transition)
        trellis.forward_backward(unary, transition, beta=1.0)

    seconds, _ = best_of(both, repeat)
    rows.append(("trellis", "viterbi + forward-backward", seconds))


def run_bp(unary, transition, repeat, rows, checks) -> None:
    import factorgraph_ebm as fg

    t_len, k = unary.shape

    def build():
        graph = fg.FactorGraph()
        graph.add_variables(range(t_len), k)
        index = np.arange(t_len, dtype=np.int64)
        graph.add_factors(index[:, None], unary, by_index=True)
        graph.add_factors(np.stack([index[:-1], index[1:]], axis=1), transition, by_index=True)
        graph.compile()
        return graph

    seconds, graph = best_of(build, repeat)
    rows.append(("bp", "build graph", seconds))
    seconds, ms = best_of(lambda: fg.min_sum(graph), repeat)
    rows.append(("bp", f"min-sum ({ms.schedule} schedule)", seconds))
    checks["energy"]["bp"] = float(ms.energy)
    checks["min_marginals"]["bp"] = np.array(ms.min_marginals)
    seconds, sp = best_of(lambda: fg.sum_product(graph, beta=1.0), repeat)
    rows.append(("bp", f"sum-product ({sp.schedule} schedule)", seconds))
    checks["log_z"]["bp"] = float(sp.log_partition)
    checks["marginals"]["bp"] = np.array(sp.marginals)


def run_numpy(unary, transition, repeat, rows, checks) -> None:
    seconds, (_, energy) = best_of(lambda: numpy_viterbi(unary, transition), repeat)
    rows.append(("numpy", "viterbi", seconds))
    checks["energy"]["numpy"] = energy
    seconds, (marg, log_z) = best_of(lambda: numpy_forward_backward(unary, transition), repeat)
    rows.append(("numpy", "forward-backward", seconds))
    checks["log_z"]["numpy"] = log_z
    checks["marginals"]["numpy"] = marg


RUNNERS = {"trellis": run_trellis, "bp": run_bp, "numpy": run_numpy}


# --------------------------------------------------------------------------- report
def agreement(checks: dict) -> dict:
    """Largest differences between engines, for each checked quantity."""
    out = {}
    for key in ("energy", "log_z"):
        values = checks[key]
        if values:
            spread = max(values.values()) - min(values.values())
            scale = max(1.0, max(abs(v) for v in values.values()))
            out[key] = {"values": values, "max_relative_difference": spread / scale}
    for key in ("marginals", "min_marginals"):
        arrays = list(checks[key].values())
        if len(arrays) > 1:
            diff = max(float(np.max(np.abs(a - arrays[0]))) for a in arrays[1:])
            out[key] = {"engines": list(checks[key]), "max_abs_difference": diff}
    for key in ("kbest", "best_incorrect"):
        if key in checks:
            out[key] = checks[key]
    return out


def machine() -> dict:
    """Cores, platform, package versions and load average."""
    import numba

    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "load_average": list(os.getloadavg()),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    unary, transition = workload(args.t, args.k, args.seed)
    rows: list[tuple[str, str, tuple[float, float]]] = []
    checks: dict = {"energy": {}, "log_z": {}, "marginals": {}, "min_marginals": {}}
    for engine in args.engines:
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        RUNNERS[engine](unary, transition, args.repeat, rows, checks)

    print(f"## Chains: T = {args.t}, K = {args.k}, best of {args.repeat} (seed {args.seed})\n")
    print("| engine | task | seconds | CPU seconds |")
    print("|---|---|---:|---:|")
    for engine, task, (wall, cpu) in rows:
        print(f"| {engine} | {task} | {wall:.4f} | {cpu:.4f} |")
    agree = agreement(checks)
    print()
    ok = True
    for key in ("energy", "log_z"):
        if key in agree:
            diff = agree[key]["max_relative_difference"]
            ok &= diff < 1e-9
            values = ", ".join(f"{e} {v:.10g}" for e, v in agree[key]["values"].items())
            print(f"- {key}: {values} (largest relative difference {diff:.2g})")
    for key in ("marginals", "min_marginals"):
        if key in agree:
            diff = agree[key]["max_abs_difference"]
            ok &= diff < 1e-6
            print(f"- {key}: largest difference across engines {diff:.2g}")
    if "kbest" in agree:
        print(f"- kbest energies: {agree['kbest']}; best_incorrect: {agree['best_incorrect']}")
    print(f"- engines agree: {ok}\n")
    summary = {
        "results": [
            {"engine": e, "task": t, "seconds": wall, "cpu_seconds": cpu}
            for e, t, (wall, cpu) in rows
        ],
        "checks": {"agree": ok, **agree},
        "workload": {"t": args.t, "k": args.k, "seed": args.seed, "repeat": args.repeat},
        "machine": machine(),
    }
    print(json.dumps(summary))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
