"""CPU time of one BP iteration against the hand-written full-iteration loop (issue 16).

On a shared machine the wall-clock figures of ``bp_speed.py`` depend on who else runs;
this script takes the CPU time of the one thread (``time.process_time``: not charged for
being descheduled), best of ``REPEAT``, with the hand-written loop of
``bpbench/engine_roofline.py``, our parallel schedule (one thread) and our sequential
schedule (with ``--residual`` also the residual one) run one iteration each, in turn, in
one process. With ``--dense`` on a Potts grid, also our parallel schedule on the same grid
with the Potts tables added as dense tables. The ``random`` workload (arity-3 factors) has
no hand-written loop.

``--compare DIR`` runs a second worker process on the package of another checkout ``DIR``
(e.g. ``main``'s worktree) beside one on this checkout, both warmed up, and alternates
single timed iterations between them (before, after, before, ...): a before/after table
from one interleaved run. ``--energies ITERS`` also prints, per checkout, the energy that
``belief_propagation`` decodes after ``ITERS`` sequential iterations (damping 0).

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/kernel_cpu.py grid-potts 300 8 [REPEAT] [--dense]
    NUMBA_NUM_THREADS=1 python benchmarks/kernel_cpu.py random 10000 4 6 --compare ../main
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bpbench import engine_roofline  # noqa: E402
from bpbench.engine_ours import build  # noqa: E402
from bpbench.workloads import make_workload, workload_label  # noqa: E402


def schedules(workload, names, dense: bool = False) -> dict:
    """Our schedules ``names`` (parallel on one thread) on ``workload``, warmed up."""
    from factorgraph_ebm.inference import _initial_messages
    from factorgraph_ebm.messages import schedules as S

    cg = build(workload, dense=dense).compile()
    # None (the kernels' lean specialization) only for a plain graph, as inference does:
    # it prunes the arity >= 3 rules.
    plain = cg.max_arity <= 2 and not cg.factor_kind.any()
    kinds = None if plain else cg.factor_kind
    unary = np.zeros(int(cg.state_offset[-1]))
    out = {}
    for name in names:
        f2v = _initial_messages(cg, None)
        out[name] = S.schedule(name, cg, cg.energies, kinds, cg.factor_param, unary, f2v,
                               np.zeros(len(f2v)), 0.0, 0.0, 0.0, 1)
        out[name].run(np.empty(2))
    return out


def runs(workload, dense: bool, residual: bool) -> dict:
    """The timed callables, by name, warmed up."""
    out = {}
    if workload.kind != "random":
        kernel, arguments = engine_roofline._full_args(workload, workload.kind == "grid-potts")
        kernel(*arguments)
        out["hand"] = lambda: kernel(*arguments)
    names = ("parallel", "sequential") + (("residual",) if residual else ())
    for name, sweeps in schedules(workload, names).items():
        out[name] = lambda sweeps=sweeps: sweeps.run(np.empty(1))
    if dense and workload.kind == "grid-potts":
        tables = schedules(workload, ("parallel",), dense=True)["parallel"]
        out["dense tables"] = lambda: tables.run(np.empty(1))
    return out


def decoded_energy(workload, iters: int) -> float:
    """The energy ``belief_propagation`` decodes after ``iters`` sequential iterations."""
    from factorgraph_ebm import belief_propagation

    result = belief_propagation(build(workload), beta=np.inf, method="bp",
                                schedule="sequential", max_iter=iters, tol=0.0, damping=0.0,
                                warn=False, factor_beliefs=False)
    return float(result.energy)


def worker(spec: dict) -> None:
    """Serve timings over stdin/stdout: a name in, its CPU seconds out (one line each)."""
    workload = make_workload(spec["kind"], spec["n"], spec["k"])
    timed = runs(workload, spec["dense"], spec["residual"])
    print(json.dumps(list(timed)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if name.startswith("energy "):
            print(json.dumps(decoded_energy(workload, int(name.split()[1]))), flush=True)
            continue
        start = time.process_time()
        timed[name]()
        print(json.dumps(time.process_time() - start), flush=True)


def start_worker(root: str, spec: dict) -> subprocess.Popen:
    """A worker process with checkout ``root``'s package first on the path."""
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env, cwd=root)


def ask(process: subprocess.Popen, request: str):
    process.stdin.write(request + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return
    flags = {a for a in argv if a in ("--dense", "--residual")}
    compare = energies = None
    args = []
    it = iter(argv)
    for a in it:
        if a == "--compare":
            compare = next(it)
        elif a == "--energies":
            energies = int(next(it))
        elif a not in flags:
            args.append(a)
    spec = {"kind": args[0], "n": int(args[1]), "k": int(args[2]),
            "dense": "--dense" in flags, "residual": "--residual" in flags}
    repeat = int(args[3]) if len(args) > 3 else 5
    here = str(HERE.parent)
    versions = {"this": here} if compare is None else {
        "before": str(Path(compare).resolve()), "after": here}
    workers = {v: start_worker(root, spec) for v, root in versions.items()}
    names = [json.loads(w.stdout.readline()) for w in workers.values()][0]
    best = {v: {} for v in versions}
    for _ in range(repeat):
        for name in names:
            for v, w in workers.items():  # alternate the checkouts on each iteration
                best[v][name] = min(best[v].get(name, np.inf), ask(w, name))
    label = workload_label(spec["kind"], spec["n"], spec["k"])
    for v, times in best.items():
        figures = ", ".join(f"{name} {s * 1e3:.1f} ms" for name, s in times.items())
        ratios = "; ".join(f"{name} / parallel {times[name] / times['parallel']:.2f}"
                           for name in ("sequential", "residual") if name in times)
        hand = f"; parallel / hand {times['parallel'] / times['hand']:.2f}" if "hand" in times \
            else ""
        print(f"{label} [{v}] CPU: {figures}; {ratios}{hand}")
    if energies:
        for v, w in workers.items():
            print(f"{label} [{v}] sequential energy after {energies}: "
                  f"{ask(w, f'energy {energies}'):.4f}")
    for w in workers.values():
        w.stdin.close()
        w.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
