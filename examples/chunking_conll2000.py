"""CoNLL-2000 chunking: the energy-based losses side by side, and python-crfsuite.

Every system gets the same attributes, those of CRFsuite's ``example/chunking.py`` (tokens
and POS tags at offsets -2..2, word bigrams w[-1]|w[0] and w[0]|w[1], POS bigrams and
trigrams, ``__BOS__``/``__EOS__``; a template is skipped where an offset falls outside the
sentence): :func:`factorgraph_ebm.sequence.features.crfsuite_chunking_attributes`. Our linear-chain
:class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` is trained with

- NLL (a CRF) on CRFsuite's objective (its default feature set: a weight for every
  attribute-label pair seen in training; L2 weight c2 = 1, which is ``l2 = 2 c2 / N`` in our
  per-sequence-mean convention): 3 epochs of mini-batch Adam, then full-batch L-BFGS with
  CRFsuite's settings (6 corrections; stop when the objective improved by less than 1e-5,
  relatively, over the last 10 iterations);
- NLL with L1 and L2 (``nll_l1``: CRFsuite's c1 = 0.1, c2 = 0.1, the sklearn-crfsuite
  tutorial's values; ``l1 = c1 / N``) by OWL-QN from 0, as CRFsuite, with its settings;
- the averaged perceptron (online, 50 epochs, like CRFsuite's ``ap``);
- the hinge loss with the most offending incorrect answer (margin 1), the Hamming
  loss-augmented hinge (margin rescaling, a structured SVM) and the log loss: 8 epochs of
  mini-batch Adam, with the same L2 weight;
- on request (``--systems mce,square_square,square_exp,lvq2,mee``), the other losses of
  the tutorial's Table 1 through the same path (every loss trains a labeler as it trains a
  factor graph), with the hinge rows' settings: MCE and square-square (margin 1) train a
  tagger; square-exponential, LVQ2 and MEE do not with these settings (LVQ2 does not move
  from the all-zero start, where every answer ties; MEE's gradient ``beta P(Y^i)``
  vanishes on long sentences).

When python-crfsuite is installed (``pip install -e ".[bench]"``) it is trained on the same
attributes with L-BFGS (c2 = 1, its default stopping rule: delta 1e-5 over 10 iterations),
with L-BFGS and L1 (OWL-QN, c1 = 0.1, c2 = 0.1) and with its averaged perceptron (50
iterations), as on CRFsuite's benchmark page. Training
time is wall-clock seconds from attribute dicts to a trained model (ours: ``fit``, which
includes building the attribute vocabulary; CRFsuite: ``Trainer.append`` for every
sentence, then ``train``). Accuracy is token (item) accuracy, CRFsuite's figure; chunk F1
is conlleval's; "weights" counts the nonzero parameters of the trained model.

Usage::

    python examples/chunking_conll2000.py            # the whole protocol (several minutes)
    python examples/chunking_conll2000.py --quick    # a small subset, < 30 s
    python examples/chunking_conll2000.py --data DIR --systems nll,crfsuite_lbfgs
    python examples/chunking_conll2000.py --systems mce,square_square   # the other losses

Prints a Markdown table, then one JSON line ``{"rows": [{"system", "loss",
"token_accuracy", "chunk_f1", "train_seconds", "epochs", "weights"}, ...]}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from factorgraph_ebm.losses import (
    HingeLoss,
    LogLoss,
    LVQ2Loss,
    MCELoss,
    MEELoss,
    NLLLoss,
    SquareExpLoss,
    SquareSquareLoss,
)
from factorgraph_ebm.optim import LBFGS, Adam
from factorgraph_ebm.sequence.datasets import read_conll2000
from factorgraph_ebm.sequence.features import crfsuite_chunking_attributes
from factorgraph_ebm.sequence.labeler import SequenceLabeler
from factorgraph_ebm.sequence.metrics import chunk_scores, token_accuracy

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"
SYSTEMS = ("nll", "crfsuite_lbfgs", "nll_l1", "crfsuite_lbfgs_l1", "perceptron", "crfsuite_ap",
           "hinge", "hinge_hamming", "log", "mce", "square_square", "square_exp", "lvq2", "mee")
DEFAULT_SYSTEMS = SYSTEMS[:9]  # the others on request: --systems mce,square_square,...
C2 = 1.0  # CRFsuite's L2 coefficient on the summed NLL (its benchmark's setting)
C1_L1, C2_L1 = 0.1, 0.1  # c1 and c2 of the L1 rows (the sklearn-crfsuite tutorial's)


def our_labelers(n_train: int, quick: bool) -> dict:
    """name -> (loss label for the table, a factory of SequenceLabeler)."""
    l2 = 2.0 * C2 / n_train  # CRFsuite's c2 in our per-sequence-mean convention, for all
    margin = {"optimizer": Adam(learning_rate=0.01), "n_epochs": 2 if quick else 8,
              "batch_size": 64, "l2": l2, "progress": False}
    return {
        "nll": ("nll (Adam, then L-BFGS)", lambda: SequenceLabeler(
            NLLLoss(1.0), [(Adam(learning_rate=0.02), 1 if quick else 3),
                           (LBFGS(memory=6), 10 if quick else 300)],
            batch_size=128, l2=l2, progress=False)),
        # from 0, as CRFsuite: a dense warm start would leave OWL-QN to zero most weights
        "nll_l1": (f"nll + L1 (OWL-QN; c1={C1_L1:g}, c2={C2_L1:g})", lambda: SequenceLabeler(
            NLLLoss(1.0), LBFGS(memory=6), n_epochs=20 if quick else 1000,
            l1=C1_L1 / n_train, l2=2.0 * C2_L1 / n_train, progress=False)),
        "perceptron": ("perceptron (averaged)", lambda: SequenceLabeler(
            "perceptron", n_epochs=5 if quick else 50, progress=False)),
        "hinge": ("hinge, most offending", lambda: SequenceLabeler(
            HingeLoss(margin=1.0), **margin)),
        "hinge_hamming": ("hinge, Hamming-augmented", lambda: SequenceLabeler(
            HingeLoss(margin=0.0, hamming=1.0), **margin)),
        "log": ("log, most offending", lambda: SequenceLabeler(LogLoss(), **margin)),
        "mce": ("MCE, most offending", lambda: SequenceLabeler(MCELoss(), **margin)),
        "square_square": ("square-square (margin 1), most offending", lambda: SequenceLabeler(
            SquareSquareLoss(margin=1.0), **margin)),
        "square_exp": ("square-exp, most offending", lambda: SequenceLabeler(
            SquareExpLoss(), **margin)),
        "lvq2": ("LVQ2, most offending", lambda: SequenceLabeler(LVQ2Loss(), **margin)),
        "mee": ("MEE (1 - P(Y^i))", lambda: SequenceLabeler(MEELoss(1.0), **margin)),
    }


def crfsuite_row(algorithm, X_train, y_train, X_test, y_test, quick: bool, tmp: str):
    """Train python-crfsuite with ``algorithm`` ("lbfgs": c2 = 1 and its default stopping
    rule; "lbfgs_l1": c1 = 0.1, c2 = 0.1; "ap": 50 iterations) and return its row, or None
    when it is not installed."""
    try:
        import pycrfsuite
    except ImportError:
        return None
    if algorithm.startswith("lbfgs"):
        if algorithm == "lbfgs":
            loss, params = "nll (L-BFGS, c2=1)", {"c1": 0.0, "c2": C2}
        else:
            loss = f"nll + L1 (OWL-QN; c1={C1_L1:g}, c2={C2_L1:g})"
            params = {"c1": C1_L1, "c2": C2_L1}
        algorithm = "lbfgs"
        if quick:
            params["max_iterations"] = 20
    else:
        loss, params = "perceptron (averaged)", {"max_iterations": 5 if quick else 50}
    started = time.perf_counter()
    trainer = pycrfsuite.Trainer(algorithm=algorithm, verbose=False)
    for x, y in zip(X_train, y_train):
        trainer.append(x, y)
    trainer.set_params(params)
    model = os.path.join(tmp, f"{algorithm}.crfsuite")
    trainer.train(model)
    seconds = time.perf_counter() - started
    tagger = pycrfsuite.Tagger()
    tagger.open(model)
    predicted = [tagger.tag(x) for x in X_test]
    info = tagger.info()
    weights = sum(w != 0 for w in [*info.state_features.values(), *info.transitions.values()])
    tagger.close()
    version = importlib.metadata.version("python-crfsuite")
    return row(f"python-crfsuite {version} ({algorithm})", loss, y_test, predicted, seconds,
               len(trainer.logparser.iterations), weights)


def nonzero_weights(labeler) -> int:
    """The nonzero parameters of a trained SequenceLabeler (W, A, s, e)."""
    return sum(int(np.count_nonzero(getattr(labeler, name)))
               for name in ("weights_", "transition_", "start_", "end_"))


def row(system, loss, y_true, y_pred, seconds, epochs, weights) -> dict:
    return {
        "system": system,
        "loss": loss,
        "token_accuracy": round(token_accuracy(y_true, y_pred), 5),
        "chunk_f1": round(chunk_scores(y_true, y_pred).f1, 5),
        "train_seconds": round(seconds, 2),
        "epochs": int(epochs),
        "weights": int(weights),
    }


def markdown(rows) -> str:
    lines = ["| system | loss | token accuracy | chunk F1 | train s | epochs | weights |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['system']} | {r['loss']} | {100 * r['token_accuracy']:.2f} % | "
                     f"{100 * r['chunk_f1']:.2f} | {r['train_seconds']:.1f} | {r['epochs']} | "
                     f"{r['weights']:,} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with train.txt and test.txt (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 training and 300 test sentences, few epochs")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help="comma-separated subset of " + ",".join(SYSTEMS)
                        + " (default: %(default)s)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {','.join(SYSTEMS)}")

    train = read_conll2000(args.data / "train.txt")
    test = read_conll2000(args.data / "test.txt")
    if args.quick:
        train, test = train[:1000], test[:300]
    X_train = [crfsuite_chunking_attributes(s) for s in train]
    X_test = [crfsuite_chunking_attributes(s) for s in test]
    y_train = [list(s.chunks) for s in train]
    y_test = [list(s.chunks) for s in test]
    print(f"CoNLL-2000: {len(train)} training, {len(test)} test sentences; numba threads "
          f"{numba.get_num_threads()}", file=sys.stderr)

    rows = []
    ours = our_labelers(len(train), args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        for name in SYSTEMS:  # each CRFsuite run right after ours, under the same load
            if name not in chosen:
                continue
            if name.startswith("crfsuite_"):
                result = crfsuite_row(name.removeprefix("crfsuite_"), X_train, y_train,
                                      X_test, y_test, args.quick, tmp)
                if result is None:
                    print(f"python-crfsuite is not installed (pip install python-crfsuite): "
                          f"no {name} row", file=sys.stderr)
                    continue
            else:
                loss, make = ours[name]
                labeler = make()
                started = time.perf_counter()
                labeler.fit(X_train, y_train)
                seconds = time.perf_counter() - started
                result = row("factorgraph_ebm", loss, y_test, labeler.predict(X_test), seconds,
                             labeler.n_epochs_, nonzero_weights(labeler))
            rows.append(result)
            print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)
    print(markdown(rows))
    report = {"rows": rows}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
