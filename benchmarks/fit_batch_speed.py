"""fit with batched inference against fit's per-sample loop (issue 18), interleaved in one run.

Workloads (``--samples`` samples each, default 1,000, labels decoded from a random "true"
model of the same form):

- ``chain``: a chain of 20 variables with K = 4 states, a LinearModel (unary energies linear
  in 5 features per position, one shared transition table); a forest, so training runs
  BP's exact two-pass schedule and batching applies with the default warm start;
- ``grid``: a 5x5 grid of binary variables, unary energies linear in 3 features per pixel,
  one shared pairwise table; loopy BP (``method="bp"``, flooding-free sequential
  schedule, ``damping=0.5``) with ``warm_start=False`` (batched calls take no warm-start
  messages, so warm-started loopy training runs the loop).

Trainings, per workload: NLL with Adam (``batch_size=32``, ``--epochs`` epochs), hinge
(loss-augmented, ``hamming=1``) with Adam, and NLL with L-BFGS (``--lbfgs-iters``
iterations, the full batch per evaluation). ``accuracy=False`` (the per-epoch accuracy is
one min-sum run per sample, not batched).

Engines: ``batched`` is fit as it is (its mini-batches through
:class:`~factorgraph_ebm.graph_backend.GraphBatch`); ``loop`` is the same fit with the
batched backend switched off (the per-sample loop of one-sample calls). The two alternate
within every round (``--repeat`` rounds, the fastest of each counts), after a warm-up that
compiles the kernels. ``identical``: the trained weights of the two are equal bit for bit.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/fit_batch_speed.py [--samples 1000] [--repeat 3]

Prints a Markdown table, then one JSON line ``{"rows": [...], "load": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from unittest import mock

import numpy as np

import factorgraph_ebm as fe
import factorgraph_ebm.train as train


def chain_workload(n_samples, seed):
    n, k, f = 20, 4, 5
    g = fe.FactorGraph()
    ids = g.add_variables(range(n), k)
    unary = g.add_factors(ids[:, None], np.zeros((n, k)), by_index=True)
    pairs = g.add_factors(np.stack([ids[:-1], ids[1:]], axis=1), np.zeros((n - 1, k, k)),
                          by_index=True)
    model = fe.LinearModel(g, {"emit": unary.tolist(), "trans": pairs.tolist()},
                           {"emit": f, "trans": 1})
    inputs = lambda rng: {"emit": rng.normal(size=(n, f)), "trans": np.ones((n - 1, 1))}  # noqa: E731
    return model, _labeled(model, inputs, n_samples, seed), {}


def grid_workload(n_samples, seed):
    side, k, f = 5, 2, 3
    g = fe.FactorGraph()
    ids = g.add_variables(range(side * side), k)
    unary = g.add_factors(ids[:, None], np.zeros((side * side, k)), by_index=True)
    edges = [(i * side + j, i * side + j + 1) for i in range(side) for j in range(side - 1)]
    edges += [(i * side + j, (i + 1) * side + j) for i in range(side - 1) for j in range(side)]
    pairs = g.add_factors(np.array(edges), np.zeros((len(edges), k, k)), by_index=True)
    model = fe.LinearModel(g, {"emit": unary.tolist(), "trans": pairs.tolist()},
                           {"emit": f, "trans": 1})
    inputs = lambda rng: {"emit": rng.normal(size=(side * side, f)),  # noqa: E731
                          "trans": np.ones((len(edges), 1))}
    options = {"method": "bp", "damping": 0.5, "max_iter": 50, "warn": False,
               "warm_start": False}
    return model, _labeled(model, inputs, n_samples, seed, options), options


def _labeled(model, inputs, n_samples, seed, options=None):
    """Samples (x, target) with the min-sum answers of a random 'true' model."""
    bp = {k: v for k, v in (options or {}).items() if k != "warm_start"}
    rng = np.random.default_rng(seed)
    w_true = rng.normal(scale=2.0, size=model.n_params)
    samples = []
    for _ in range(n_samples):
        x = inputs(rng)
        answer = fe.min_sum(model.graph, energies=model.energies(w_true, x), **bp).assignment
        samples.append((x, dict(zip(model.graph.variables, answer.tolist()))))
    return samples


WORKLOADS = {"chain": chain_workload, "grid": grid_workload}


def trainings(epochs, lbfgs_iters):
    return {
        "NLL Adam b=32": (lambda: fe.NLLLoss(), lambda: fe.Adam(0.05), 32, epochs),
        "hinge Adam b=32": (lambda: fe.HingeLoss(hamming=1.0), lambda: fe.Adam(0.05), 32,
                            epochs),
        "NLL L-BFGS": (lambda: fe.NLLLoss(), lambda: fe.LBFGS(), 1, lbfgs_iters),
    }


def run_fit(model, samples, options, training, batched):
    make_loss, make_optimizer, batch_size, n_epochs = training
    kwargs = dict(options)
    started = time.perf_counter()
    if batched:
        result = fe.fit(model, make_loss(), samples, optimizer=make_optimizer(),
                        n_epochs=n_epochs, batch_size=batch_size, l2=1e-3, accuracy=False,
                        progress=False, **kwargs)
    else:
        # The per-sample loop: fit with the batched backend switched off.
        with mock.patch.object(train, "batches_loss", lambda loss: False):
            result = fe.fit(model, make_loss(), samples, optimizer=make_optimizer(),
                            n_epochs=n_epochs, batch_size=batch_size, l2=1e-3,
                            accuracy=False, progress=False, **kwargs)
    return time.perf_counter() - started, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lbfgs-iters", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", default="chain,grid")
    parser.add_argument("--trainings", default="all",
                        help="comma-separated names of the trainings, or 'all'")
    args = parser.parse_args(argv)
    chosen = trainings(args.epochs, args.lbfgs_iters)
    if args.trainings != "all":
        chosen = {k: v for k, v in chosen.items() if k in args.trainings.split(",")}
    load_before = os.getloadavg()
    rows = []
    for name in args.workloads.split(","):
        model, samples, options = WORKLOADS[name](args.samples, seed=0)
        for label, training in chosen.items():
            small = samples[:40]
            for batched in (True, False):  # warm-up: compile the kernels (not timed)
                run_fit(model, small, options, training, batched)
            best = {True: np.inf, False: np.inf}
            params = {}
            for _ in range(args.repeat):
                for batched in (True, False):
                    seconds, result = run_fit(model, samples, options, training, batched)
                    best[batched] = min(best[batched], seconds)
                    params[batched] = result.params
            rows.append({
                "workload": name, "training": label, "samples": len(samples),
                "batched_s": round(best[True], 3), "loop_s": round(best[False], 3),
                "speedup": round(best[False] / best[True], 2),
                "identical": bool(np.array_equal(params[True], params[False])),
            })
            print(rows[-1], flush=True)
    print()
    print("| workload | training | samples | batched s | loop s | speedup | identical |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['training']} | {r['samples']} | {r['batched_s']} | "
              f"{r['loop_s']} | {r['speedup']} | {r['identical']} |")
    report = {"rows": rows, "load": [load_before, os.getloadavg()],
              "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
              "python": platform.python_version(), "repeat": args.repeat}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
