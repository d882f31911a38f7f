"""Data-parallel training on Dask: a CRF chunker on CoNLL-2000, serially and on 1 and 2 workers.

The :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` of ``chunking_conll2000.py``
(CRFsuite's attributes, NLL, L2 c2 = 1 as ``l2 = 2 c2 / N``) is trained by full-batch L-BFGS
for a fixed number of iterations (no early stop, so every run does the same work), first in
this process, then with ``fit(..., client=...)`` on a :class:`~distributed.LocalCluster` of
N worker processes (one thread each) or on the cluster of ``--scheduler ADDRESS``. The
sentences are partitioned over the workers once; every L-BFGS evaluation sends the weights to
each worker and sums the workers' losses and gradients in a fixed tree
(:mod:`factorgraph_ebm.data_parallel`), so the trained weights are the same for every
number of workers and equal to the serial run's within rounding (the last column).

``train_seconds`` is the wall time of ``fit`` (building the attribute vocabulary, scattering
the partitions, the iterations); the cluster is started, and the kernels loaded in every
process by a small untimed run, before. On 2 shared cores, workers
only compete with each other and with the serial run's own two Numba threads: the figures
show the overhead of the protocol, not a speed-up (see ``benchmarks/distributed_training.py``
and ``benchmarks/README.md`` for the scaling study).

Usage::

    python examples/distributed_training.py                    # 2,000 sentences, 1 and 2 workers
    python examples/distributed_training.py --quick            # 200 sentences, a few iterations
    python examples/distributed_training.py --workers 1,2,4 --train 8936
    python examples/distributed_training.py --scheduler tcp://10.0.0.5:8786

Prints a Markdown table, then one JSON line ``{"rows": [{"workers", "train_seconds",
"token_accuracy", "max_abs_weight_diff_vs_serial"}, ...]}`` (``workers`` 0 is the serial
run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numba
import numpy as np

from factorgraph_ebm.losses import NLLLoss
from factorgraph_ebm.optim import LBFGS
from factorgraph_ebm.sequence.datasets import read_conll2000
from factorgraph_ebm.sequence.features import crfsuite_chunking_attributes
from factorgraph_ebm.sequence.labeler import SequenceLabeler
from factorgraph_ebm.sequence.metrics import token_accuracy

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"
C2 = 1.0  # CRFsuite's L2 coefficient on the summed NLL


def parameters(labeler) -> np.ndarray:
    """Every trained parameter of a labeler (W, A, s, e), flat."""
    return np.concatenate([np.ravel(getattr(labeler, name))
                           for name in ("weights_", "transition_", "start_", "end_")])


def train(X, y, X_test, y_test, iterations, client=None) -> tuple:
    """(seconds, token accuracy on the test set, parameters) of one training run."""
    labeler = SequenceLabeler(NLLLoss(1.0), LBFGS(memory=6), n_epochs=iterations,
                              l2=2.0 * C2 / len(X), delta=0.0, progress=False)
    started = time.perf_counter()
    labeler.fit(X, y, client=client)
    seconds = time.perf_counter() - started
    return seconds, token_accuracy(y_test, labeler.predict(X_test)), parameters(labeler)


def markdown(rows) -> str:
    lines = ["| workers | train s | token accuracy | max abs weight diff vs serial |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers'] or 'serial'} | {r['train_seconds']:.1f} | "
                     f"{100 * r['token_accuracy']:.2f} % | "
                     f"{r['max_abs_weight_diff_vs_serial']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with train.txt and test.txt (default: %(default)s)")
    parser.add_argument("--train", type=int, default=2000,
                        help="training sentences, the first of the file (default: %(default)s)")
    parser.add_argument("--test", type=int, default=500,
                        help="test sentences (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=30,
                        help="L-BFGS iterations (default: %(default)s)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts of LocalClusters (default: "
                        "%(default)s)")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler address: train on its workers instead of "
                        "LocalClusters")
    parser.add_argument("--quick", action="store_true",
                        help="200 training and 100 test sentences, 5 iterations")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.iterations = 200, 100, 5
    try:
        counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, got {args.workers!r}")
    if not counts or min(counts) < 1:
        parser.error("--workers: give worker counts >= 1")
    try:
        import distributed
    except ImportError:
        sys.exit("this example needs dask.distributed: pip install 'factorgraph-ebm[dask]'")

    train_set = read_conll2000(args.data / "train.txt")[: args.train]
    test_set = read_conll2000(args.data / "test.txt")[: args.test]
    X = [crfsuite_chunking_attributes(s) for s in train_set]
    y = [list(s.chunks) for s in train_set]
    X_test = [crfsuite_chunking_attributes(s) for s in test_set]
    y_test = [list(s.chunks) for s in test_set]
    print(f"CoNLL-2000: {len(X)} training, {len(X_test)} test sentences, {args.iterations} "
          f"L-BFGS iterations; numba threads {numba.get_num_threads()}", file=sys.stderr)

    rows = []

    def add(workers, seconds, accuracy, params):
        diff = float(np.max(np.abs(params - serial))) if rows else 0.0
        rows.append({"workers": workers, "train_seconds": round(seconds, 3),
                     "token_accuracy": round(accuracy, 5),
                     "max_abs_weight_diff_vs_serial": diff})
        print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)

    def warm(client=None):  # loads the kernels here or on the workers, untimed
        train(X[:20], y[:20], X_test[:5], y_test[:5], 1, client)

    warm()
    seconds, accuracy, serial = train(X, y, X_test, y_test, args.iterations)
    add(0, seconds, accuracy, serial)
    if args.scheduler is not None:
        with distributed.Client(args.scheduler) as client:
            n = len(client.scheduler_info()["workers"])
            warm(client)
            add(n, *train(X, y, X_test, y_test, args.iterations, client))
    else:
        for n in counts:
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          host="127.0.0.1", dashboard_address=None,
                                          silence_logs=logging.CRITICAL) as cluster, \
                    distributed.Client(cluster) as client:
                warm(client)
                add(n, *train(X, y, X_test, y_test, args.iterations, client))
    print(markdown(rows))
    report = {"rows": rows}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
