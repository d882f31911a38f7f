"""CPU time of one BP iteration against the hand-written full-iteration loop (issue 16).

On a shared machine the wall-clock figures of ``bp_speed.py`` depend on who else runs;
this script takes the CPU time of the one thread (``time.process_time``: not charged for
being descheduled), best of ``REPEAT``, with the hand-written loop of
``bpbench/engine_roofline.py``, our parallel schedule (one thread) and our sequential
schedule run one iteration each, in turn, in one process. With ``--dense`` on a Potts
grid, also our parallel schedule on the same grid with the Potts tables added as dense
tables.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/kernel_cpu.py grid-potts 300 8 [REPEAT] [--dense]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bpbench import engine_roofline  # noqa: E402
from bpbench.engine_ours import build  # noqa: E402
from bpbench.workloads import make_workload  # noqa: E402


def schedules(workload, dense: bool = False) -> dict:
    """Our parallel (one thread) and sequential schedules on ``workload``, warmed up."""
    from factorgraph_ebm.inference import _initial_messages
    from factorgraph_ebm.messages import schedules as S

    cg = build(workload, dense=dense).compile()
    kinds = cg.factor_kind if cg.factor_kind.any() else None
    unary = np.zeros(int(cg.state_offset[-1]))
    out = {}
    for name in ("parallel", "sequential"):
        f2v = _initial_messages(cg, None)
        out[name] = S.schedule(name, cg, cg.energies, kinds, cg.factor_param, unary, f2v,
                               np.zeros(len(f2v)), 0.0, 0.0, 0.0, 1)
        out[name].run(np.empty(2))
    return out


def main(argv: list[str]) -> None:
    dense = "--dense" in argv
    args = [a for a in argv if a != "--dense"]
    kind, n, k = args[0], int(args[1]), int(args[2])
    repeat = int(args[3]) if len(args) > 3 else 5
    workload = make_workload(kind, n, k)
    kernel, arguments = engine_roofline._full_args(workload, kind == "grid-potts")
    kernel(*arguments)
    ours = schedules(workload)
    runs = {
        "hand": lambda: kernel(*arguments),
        "parallel": lambda: ours["parallel"].run(np.empty(1)),
        "sequential": lambda: ours["sequential"].run(np.empty(1)),
    }
    if dense and kind == "grid-potts":
        tables = schedules(workload, dense=True)
        runs["dense tables"] = lambda: tables["parallel"].run(np.empty(1))
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best.get(name, np.inf), time.process_time() - start)
    hand = best["hand"]
    figures = ", ".join(f"{name} {s * 1e3:.1f} ms ({s / hand:.2f}x hand)"
                        for name, s in best.items())
    ratio = best["sequential"] / best["parallel"]
    print(f"{workload.label} CPU: {figures}; sequential / parallel {ratio:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
