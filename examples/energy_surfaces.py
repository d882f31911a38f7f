"""Energy surfaces of the Y = X^2 demos of LeCun & Huang (AISTATS 2005) and LeCun et al.,
"A Tutorial on Energy-Based Learning" (2006, sec. 3 and 5).

The output Y is discretized into K states on [0, 1] and expressed as a one-variable factor
graph: one unary factor whose energy table E(Y, X), a vector of K energies, is computed by a
small network from the input X. Inference (the lowest-energy Y, the most offending incorrect
answer, the free energy) and the losses all go through ``factorgraph_ebm``; the networks
only map (W, X) to the table and back-propagate dL/d(table) to dL/dW.

- Architecture A: a fixed quadratic energy in Y around a learned regressor,
  E(Y, X) = (G_W(X) - Y)^2. The energy loss works: pulling E(Y^i) down moves the bowl,
  which pushes the other energies up.
- Architecture B: implicit regression, E(Y, X) = ||G1(X) - G2(Y)||^2, with two small
  networks. The energy loss collapses it to a flat surface (G1 and G2 output one constant);
  the square-square loss, the negative log-likelihood and the hinge loss, with the most
  offending answer taken outside a forbidden sphere of radius 0.2 and then 0.1 around Y^i,
  carve a valley along Y = X^2.

Run ``python examples/energy_surfaces.py [--quick] [--out DIR]``: it saves
``y_equals_x2.png`` (the energy surface over the (X, Y) plane before, during and after
training, one row per run) and prints one JSON line:
``{"runs": [{"architecture", "loss", "energy_gap", "test_error", "collapsed"}, ...]}`` where
``energy_gap`` is the mean over test X of (mean energy of the other Y values) - E(desired Y)
(near 0: collapse) and ``test_error`` the mean |argmin_Y E - X^2|.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import factorgraph_ebm as fe  # noqa: E402
from factorgraph_ebm.losses import (  # noqa: E402
    EnergyLoss,
    HingeLoss,
    NLLLoss,
    SquareSquareLoss,
    value_distance,
)
from factorgraph_ebm.optim import Adam  # noqa: E402
from factorgraph_ebm.train import fit, predict  # noqa: E402

#: A flat surface: the desired answer is at most this much below the others on average.
COLLAPSE_GAP = 0.02
#: L2 regularization of every run (it makes the energy loss's collapse complete).
L2 = 1e-3


# --------------------------------------------------------------------------- networks
class MLP:
    """A one-hidden-layer network, ``tanh(u W1 + b1) W2 + b2``, with hand-derived gradients.

    Parameters are one flat vector (W1, b1, W2, b2, each C order); inputs are (n, n_in).
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        self.shapes = [(n_in, n_hidden), (n_hidden,), (n_hidden, n_out), (n_out,)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.n_params = sum(self.sizes)

    def unpack(self, w):
        parts = np.split(w, np.cumsum(self.sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, self.shapes)]

    def init(self, rng, gain=1.5):
        """Random weights (scaled by fan-in), random hidden biases, zero output biases."""
        w1 = rng.normal(scale=gain / np.sqrt(self.shapes[0][0]), size=self.shapes[0])
        b1 = rng.normal(scale=0.5, size=self.shapes[1])
        w2 = rng.normal(scale=1.0 / np.sqrt(self.shapes[2][0]), size=self.shapes[2])
        return np.concatenate([w1.ravel(), b1, w2.ravel(), np.zeros(self.shapes[3])])

    def forward(self, w, inputs):
        """Outputs (n, n_out) and the cache for :meth:`backward`."""
        w1, b1, w2, b2 = self.unpack(w)
        hidden = np.tanh(inputs @ w1 + b1)
        return hidden @ w2 + b2, (inputs, hidden)

    def backward(self, w, cache, grad_out):
        """dL/dw from dL/d(outputs) (n, n_out)."""
        _, _, w2, _ = self.unpack(w)
        inputs, hidden = cache
        grad_hidden = (grad_out @ w2.T) * (1.0 - hidden**2)
        return np.concatenate([
            (inputs.T @ grad_hidden).ravel(), grad_hidden.sum(0),
            (hidden.T @ grad_out).ravel(), grad_out.sum(0),
        ])


def one_variable_graph(n_states: int) -> fe.FactorGraph:
    """The discretized output as a factor graph: variable "y", one unary factor."""
    graph = fe.FactorGraph()
    graph.add_variable("y", n_states)
    graph.add_factor(["y"], np.zeros(n_states))
    return graph


class ArchitectureA:
    """E(Y, X) = (G(X) - Y)^2 over the states' values ``y_values``: a model for
    :func:`factorgraph_ebm.train.fit` whose input x is a float."""

    def __init__(self, y_values, n_hidden=16):
        self.y_values = np.asarray(y_values, dtype=np.float64)
        self.graph = one_variable_graph(len(self.y_values))
        self.net = MLP(1, n_hidden, 1)
        self.n_params = self.net.n_params

    def init_params(self, rng):
        return self.net.init(rng)

    def energy_table(self, params, xs):
        """Energies (n, K) for inputs xs (n,), and the cache for back-propagation."""
        g, cache = self.net.forward(params, np.reshape(xs, (-1, 1)))
        diff = g - self.y_values
        return diff**2, (cache, diff)

    def energies(self, params, x):
        return self.energy_table(params, [x])[0][0]

    def backward(self, params, x, grad_energies):
        _, (cache, diff) = self.energy_table(params, [x])
        grad_g = (2.0 * grad_energies * diff[0]).sum()
        return self.net.backward(params, cache, np.array([[grad_g]]))


class ArchitectureB:
    """E(Y, X) = ||G1(X) - G2(Y)||^2 (implicit regression): both the input and the output go
    through a network (G2 sees the state's value rescaled to [-1, 1])."""

    def __init__(self, y_values, n_hidden=16, n_embed=4):
        self.y_values = np.asarray(y_values, dtype=np.float64)
        low, high = self.y_values.min(), self.y_values.max()
        self.y_inputs = (2.0 * (self.y_values - low) / (high - low) - 1.0)[:, None]
        self.graph = one_variable_graph(len(self.y_values))
        self.g1 = MLP(1, n_hidden, n_embed)
        self.g2 = MLP(1, n_hidden, n_embed)
        self.n_params = self.g1.n_params + self.g2.n_params

    def init_params(self, rng):
        return np.concatenate([self.g1.init(rng), self.g2.init(rng)])

    def _split(self, params):
        return params[: self.g1.n_params], params[self.g1.n_params :]

    def energy_table(self, params, xs):
        w1, w2 = self._split(params)
        left, cache1 = self.g1.forward(w1, np.reshape(xs, (-1, 1)))
        right, cache2 = self.g2.forward(w2, self.y_inputs)
        diff = left[:, None, :] - right[None, :, :]  # (n, K, n_embed)
        return (diff**2).sum(-1), (cache1, cache2, diff)

    def energies(self, params, x):
        return self.energy_table(params, [x])[0][0]

    def backward(self, params, x, grad_energies):
        w1, w2 = self._split(params)
        _, (cache1, cache2, diff) = self.energy_table(params, [x])
        weighted = 2.0 * grad_energies[:, None] * diff[0]  # (K, n_embed)
        return np.concatenate([
            self.g1.backward(w1, cache1, weighted.sum(0, keepdims=True)),
            self.g2.backward(w2, cache2, -weighted),
        ])


# --------------------------------------------------------------------------- evaluation
def nearest_state(y_values, y):
    return int(np.argmin(np.abs(np.asarray(y_values) - y)))


def measure(model, params, test_x, target_of):
    """(energy_gap, test_error) on the test inputs; ``target_of(x)`` is the desired value."""
    table, _ = model.energy_table(params, test_x)
    gaps, errors = [], []
    for x, row in zip(test_x, table):
        desired = nearest_state(model.y_values, target_of(x))
        gaps.append(np.delete(row, desired).mean() - row[desired])
        best = predict(model, params, x)["y"]
        errors.append(abs(model.y_values[best] - target_of(x)))
    return float(np.mean(gaps)), float(np.mean(errors))


def train_in_two_phases(model, make_loss, samples, epochs, seed, radii=(0.2, 0.1)):
    """Train in two phases (forbidden sphere ``radii[0]`` then ``radii[1]``; losses without
    a sphere ignore it). Returns the parameters before, between and after the phases."""
    rng = np.random.default_rng(seed)
    params = model.init_params(rng)
    snapshots = [params]
    for phase, radius in enumerate(radii):
        n_epochs = epochs // 2 if phase == 0 else epochs - epochs // 2
        result = fit(model, make_loss(radius), samples, optimizer=Adam(0.01),
                       n_epochs=n_epochs, batch_size=1, l2=L2, seed=seed + phase,
                       params=params, accuracy=False, progress=False)
        params = result.params
        snapshots.append(params)
    return snapshots


def plot_surfaces(rows, x_grid, path, curves, y_label="Y"):
    """One row per run, one column per snapshot: E(Y, X) as an image, with the target
    curves dashed. The colour scale is shared along a row (0 to the largest 95th percentile
    of its panels), so a collapse shows as a uniformly dark panel."""
    columns = ("before", "during", "after")
    fig, axes = plt.subplots(len(rows), 3, figsize=(10.5, 2.5 * len(rows)), squeeze=False,
                             constrained_layout=True)
    for r, (title, model, snapshots) in enumerate(rows):
        tables = [model.energy_table(params, x_grid)[0].T for params in snapshots]
        top = max(max(float(np.percentile(t, 95)) for t in tables), 1e-12)
        for c, table in enumerate(tables):
            ax = axes[r, c]
            image = ax.pcolormesh(x_grid, model.y_values, table, shading="auto",
                                  cmap="viridis", vmin=0.0, vmax=top)
            for curve in curves:
                ax.plot(x_grid, curve(x_grid), "w--", lw=0.8)
            ax.set_ylim(model.y_values.min(), model.y_values.max())
            ax.set_title(f"{title}, {columns[c]}", fontsize=9)
            ax.set_xlabel("X", fontsize=8)
            ax.set_ylabel(y_label, fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9, label="E(Y, X)")
    fig.suptitle("Energy surfaces E(Y, X): dark = low energy; dashed = the training target")
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples and epochs (tests)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"),
                        help="directory for the figures (default: examples/output/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    n_train, epochs = (60, 40) if args.quick else (200, 120)
    y_values = np.linspace(0.0, 1.0, 41)
    rng = np.random.default_rng(args.seed)
    train_x = rng.uniform(-1.0, 1.0, n_train)
    samples = [(x, {"y": nearest_state(y_values, x**2)}) for x in train_x]
    test_x = np.linspace(-1.0, 1.0, 41)
    distance = value_distance(y_values)
    runs = [
        ("A", "energy", lambda r: EnergyLoss()),
        ("B", "energy", lambda r: EnergyLoss()),
        ("B", "square_square", lambda r: SquareSquareLoss(0.5, radius=r, distance=distance)),
        ("B", "nll", lambda r: NLLLoss(beta=5.0)),
        ("B", "hinge", lambda r: HingeLoss(0.5, radius=r, distance=distance)),
    ]
    rows, report = [], []
    for architecture, loss_name, make_loss in runs:
        model = (ArchitectureA if architecture == "A" else ArchitectureB)(y_values)
        snapshots = train_in_two_phases(model, make_loss, samples, epochs, args.seed)
        gap, error = measure(model, snapshots[-1], test_x, lambda x: x**2)
        rows.append((f"{architecture} / {loss_name}", model, snapshots))
        report.append({"architecture": architecture, "loss": loss_name,
                       "energy_gap": round(gap, 4), "test_error": round(error, 4),
                       "collapsed": bool(gap < COLLAPSE_GAP)})
    plot_surfaces(rows, np.linspace(-1.0, 1.0, 81), out / "y_equals_x2.png",
                  [lambda x: x**2])
    print(json.dumps({"runs": report}))


if __name__ == "__main__":
    main()
