"""The "eye pattern" demo of LeCun & Huang (AISTATS 2005): a target with two answers per input.

Training pairs lie on an ellipse, Y = +-0.8 sqrt(1 - X^2), with the branch picked at random
for each sample. No single regressor fits that: Architecture A (a quadratic energy around a
learned regressor G(X)), trained with the energy loss, puts one valley between the branches.
Architecture B (implicit regression ||G1(X) - G2(Y)||^2) trained with the negative
log-likelihood loss learns an energy with two valleys, one per branch. The networks, the
one-variable factor graph and the training loop are those of ``energy_surfaces.py``.

Run ``python examples/eye_pattern.py [--quick] [--out DIR]``: it saves ``eye_pattern.png``
and prints one JSON line ``{"runs": [{"architecture", "loss", "two_valley_rate",
"test_error"}, ...]}``: ``two_valley_rate`` is the fraction of test X (|X| <= 0.8) whose two
lowest local minima of E(., X) lie within 0.1 of the two branches, ``test_error`` the mean
distance from argmin_Y E to the nearer branch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from energy_surfaces import (
    ArchitectureA,
    ArchitectureB,
    nearest_state,
    plot_surfaces,
    train_in_two_phases,
)

from factorgraph_ebm.losses import EnergyLoss, NLLLoss
from factorgraph_ebm.train import predict


def branch(x):
    """The upper branch of the ellipse; the lower one is its mirror image."""
    return 0.8 * np.sqrt(np.clip(1.0 - np.square(x), 0.0, None))


def local_minima(row):
    """Indices of the local minima of a 1-D energy profile, lowest energy first."""
    padded = np.concatenate([[np.inf], row, [np.inf]])
    is_min = (row <= padded[:-2]) & (row <= padded[2:])
    found = np.flatnonzero(is_min)
    return found[np.argsort(row[found])]


def measure(model, params, test_x):
    """(two_valley_rate, test_error) on the test inputs."""
    table, _ = model.energy_table(params, test_x)
    hits, errors = [], []
    for x, row in zip(test_x, table):
        lowest = model.y_values[local_minima(row)[:2]]
        b = branch(x)
        hits.append(len(lowest) == 2 and np.abs(np.sort(lowest) - [-b, b]).max() <= 0.1)
        best = model.y_values[predict(model, params, x)["y"]]
        errors.append(abs(abs(best) - b))
    return float(np.mean(hits)), float(np.mean(errors))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples and epochs (tests)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"),
                        help="directory for the figures (default: examples/output/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    n_train, epochs = (80, 40) if args.quick else (300, 120)
    y_values = np.linspace(-1.0, 1.0, 41)
    rng = np.random.default_rng(args.seed)
    train_x = rng.uniform(-1.0, 1.0, n_train)
    train_y = branch(train_x) * rng.choice([-1.0, 1.0], n_train)
    samples = [(x, {"y": nearest_state(y_values, y)}) for x, y in zip(train_x, train_y)]
    test_x = np.linspace(-0.8, 0.8, 33)
    runs = [("A", "energy", EnergyLoss()), ("B", "nll", NLLLoss(beta=5.0))]
    rows, report = [], []
    for architecture, loss_name, loss in runs:
        model = (ArchitectureA if architecture == "A" else ArchitectureB)(y_values)
        snapshots = train_in_two_phases(
            model, lambda radius, loss=loss: loss, samples, epochs, args.seed
        )
        rate, error = measure(model, snapshots[-1], test_x)
        rows.append((f"{architecture} / {loss_name}", model, snapshots))
        report.append({"architecture": architecture, "loss": loss_name,
                       "two_valley_rate": round(rate, 4), "test_error": round(error, 4)})
    plot_surfaces(rows, np.linspace(-1.0, 1.0, 81), out / "eye_pattern.png",
                  [branch, lambda x: -branch(x)])
    print(json.dumps({"runs": report}))


if __name__ == "__main__":
    main()
