"""Scaling of data-parallel training (issue 18): one full-batch evaluation of the CRF
chunker's objective (NLL loss and gradient over every training sentence, what an L-BFGS
iteration costs, line search aside) serially and on Dask LocalClusters of 1, 2 and 4
worker processes, in the same run.

Corpus: CoNLL-2000's training sentences (``--train``, default all 8,936), optionally
``--scale`` times as many by resampling them with replacement (the issue's "10x CoNLL" is
``--scale 10``; memory and time grow accordingly). Attributes: CRFsuite's chunking
attributes, the parameters those of a SequenceLabeler fitted for one iteration, the
evaluation point a random vector (seeded).

Rows, interleaved (one evaluation of each in turn, ``--repeat`` rounds; best and median):

- ``serial``: the labeler's objective in this process (one batch over all sentences);
- ``serial, 16 blocks``: :class:`~factorgraph_ebm.data_parallel.DataParallelObjective`
  without a client (the blocks and tree of the parallel runs, in this process);
- ``N workers``: the same on a LocalCluster of N processes (one thread each; partitions
  scattered before timing, kernels loaded by a first untimed evaluation).

Each row also gives the bytes of arrays sent (parameters) and received (node gradients) per
evaluation, and the client-side time of the tree's additions. The serial rows run with
NUMBA_NUM_THREADS as set (workers get the same setting); the machine's load is recorded.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/distributed_training.py [--workers 1,2,4]
        [--scale 1] [--train 8936] [--repeat 5]

Prints a Markdown table, then one JSON line ``{"rows": [...], "load": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

import numba
import numpy as np

from factorgraph_ebm.data_parallel import DataParallelObjective, _assemble
from factorgraph_ebm.optim import LBFGS
from factorgraph_ebm.sequence.chain import _ChainObjective, _Design
from factorgraph_ebm.sequence.datasets import read_conll2000
from factorgraph_ebm.sequence.features import crfsuite_chunking_attributes
from factorgraph_ebm.sequence.labeler import SequenceLabeler

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"


def objective_of(n_train: int, scale: int, seed: int = 0):
    """The labeler's objective over the corpus, and its number of parameters."""
    sentences = read_conll2000(DATA / "train.txt")[:n_train]
    if scale > 1:
        rng = np.random.default_rng(seed)
        sentences = [sentences[i] for i in rng.integers(len(sentences),
                                                        size=scale * len(sentences))]
    X = [crfsuite_chunking_attributes(s) for s in sentences]
    y = [list(s.chunks) for s in sentences]
    labeler = SequenceLabeler("nll", LBFGS(), n_epochs=1, progress=False).fit(X, y)
    design = _Design.of(labeler._design(X, fit=False))
    codes = labeler._encode(y, design.lengths, fit=False)
    return _ChainObjective(labeler._chain, labeler._loss, design, codes), labeler._chain.n_params


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--train", type=int, default=8936)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import distributed

    counts = [int(n) for n in args.workers.split(",")]
    objective, n_params = objective_of(args.train, args.scale)
    n = objective.n_samples
    theta = np.random.default_rng(1).normal(scale=0.1, size=n_params)
    everything = np.arange(n)
    engines = {"serial": objective, "serial, 16 blocks": DataParallelObjective(objective)}
    clusters = []
    try:
        for k in counts:
            cluster = distributed.LocalCluster(n_workers=k, threads_per_worker=1,
                                               processes=True, host="127.0.0.1",
                                               dashboard_address=None,
                                               silence_logs=logging.CRITICAL)
            client = distributed.Client(cluster)
            clusters.append((cluster, client))
            started = time.perf_counter()
            wrapped = DataParallelObjective(objective, client)
            scatter = time.perf_counter() - started
            wrapped.batch(theta, everything)  # loads the kernels on the workers
            wrapped.bytes_sent = wrapped.bytes_received = wrapped.evaluations = 0
            wrapped.worker_seconds = 0.0
            wrapped.scatter_seconds = scatter
            engines[f"{k} worker{'s' if k > 1 else ''}"] = wrapped
        objective.batch(theta, everything)  # and here
        times = {name: [] for name in engines}
        reference = None
        for _ in range(args.repeat):
            for name, engine in engines.items():
                started = time.perf_counter()
                value, grad = engine.batch(theta, everything)
                times[name].append(time.perf_counter() - started)
                if reference is None:
                    reference = (value, grad)
                assert abs(value - reference[0]) <= 1e-9 * abs(reference[0])
        # the client's share: the tree's additions over the workers' node sums
        nodes = {(w * 16 // 4, (w + 1) * 16 // 4): (1.0, np.ones(n_params)) for w in range(4)}
        started = time.perf_counter()
        for _ in range(20):
            _assemble(0, 16, nodes)
        assemble = (time.perf_counter() - started) / 20
        rows = []
        for name, engine in engines.items():
            per = max(getattr(engine, "evaluations", 0), 1)
            rows.append({
                "engine": name,
                "best_seconds": round(min(times[name]), 4),
                "median_seconds": round(statistics.median(times[name]), 4),
                "bytes_sent": int(getattr(engine, "bytes_sent", 0) / per),
                "bytes_received": int(getattr(engine, "bytes_received", 0) / per),
                "scatter_seconds": round(getattr(engine, "scatter_seconds", 0.0), 3),
                "worker_seconds_per_evaluation": round(
                    getattr(engine, "worker_seconds", 0.0) / per, 4),
            })
    finally:
        for cluster, client in clusters:
            client.close()
            cluster.close()
    lines = ["| engine | best s | median s | workers' compute s | bytes sent | bytes received "
             "| scatter s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['engine']} | {r['best_seconds']:.3f} | {r['median_seconds']:.3f} "
                     f"| {r['worker_seconds_per_evaluation']:.3f} | {r['bytes_sent']:,} | "
                     f"{r['bytes_received']:,} | "
                     f"{r['scatter_seconds']:.2f} |")
    print("\n".join(lines))
    report = {"rows": rows, "sentences": n, "tokens": int(objective.design.lengths.sum()),
              "n_params": n_params, "tree_assembly_seconds_4_nodes": assemble,
              "numba_threads": numba.get_num_threads(), "load": os.getloadavg()[0],
              "cpus": os.cpu_count()}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
