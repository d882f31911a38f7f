"""Invariant letter recognition with a latent pose: the application of LeCun & Huang
(AISTATS 2005, "EBM for Invariant Recognition"; LeCun et al., "A Tutorial on Energy-Based
Learning", 2006, sec. 4).

Each object model matches the output of a feature extractor to a reference representation
of the category transformed by pose parameters; inference finds the category AND the pose
that minimize the energy:

    E(W, Y, Z, X) = 1/C sum_{c,i,j} (G_W(X)[c,i,j] - (T_Z R_Y)[c,i,j])^2

- X is a 16 x 8 binary letter image (Taskar's OCR letters) in the middle of a 20 x 12 blank
  field (``--margin 2``: the letters fill their 16 x 8 box, so shifting the bare box by 2
  pixels would crop up to a quarter of the letter); Y is one of 26 categories; Z one of the
  49 translations (dy, dx) in -3..3 (``--max-shift 3``; poses beyond the margin compare
  the reference's edge with the zeros outside the field).
- G_W(X) = tanh(K * X) is a learned 3 x 3 convolution with C = 4 channels, zero padding
  and no bias: translation-equivariant, and zero on blank pixels, so shifting X (with zero
  fill) shifts G_W(X).
- R_Y (C, 16, 8) is the learned reference of category Y; T_Z R_Y writes it at the letter
  box translated by (dy, dx), zeros elsewhere in the field.

The energies of one input form a factor graph over two variables, "category" (26 states)
and "pose" (49 states), with one pairwise factor, the 26 x 49 table above. Inference is the
library's min-sum belief propagation (exact: the graph is a tree). Training is
:func:`factorgraph_ebm.fit` with ``latent=["pose"]``: the pose is never supervised, the
energy of the desired category is ``min_Z E(Y^i, Z)`` (the free energy over Z for NLL) and
the most offending incorrect answer is the best wrong category with its own best pose. The
model object below maps (W, X) to the flat energy vector and back-propagates
dL/d(energies) to dL/dW by hand (checked against finite differences in
``tests/test_invariant_example.py``). The "no-pose" baseline is the same model with a
single pose, the identity: same features, same references, same loss.

Because G_W is equivariant and T_Z is a translation, shifting the input by d shifts the best
pose by d and changes every category's energy by one common constant (the feature energy
that leaves the field): the category decision is invariant as long as the pose stays in
range. Training letters use poses other than the identity too (the pose absorbs some
within-class variation), so poses reach one pixel beyond the test shifts: with only the 25
poses -2..2 (``--max-shift 2``), a test shift of 2 pushes such letters' best pose out of
range and the shifted accuracy drops by 3 to 5 points instead of 1 to 2.

Data: train on every letter of fold 1 of ``../shared/data/ocr_letters`` (5,375 letters)
for 2 epochs of Adam (step 0.003, mini-batches of 4, L2 1e-4); test on a seeded random
subsample of the letters of the other nine folds (``--n-test``, default 8,000 of 46,777;
``--n-test 0`` uses all), once as they are and once shifted by a random translation,
dy and dx each uniform in -2..2 (seeded), zero-filled. The references start at each
category's mean feature window at the identity pose, which anchors the pose. Margins and
beta are our choices (hinge m = 1, NLL beta = 0.5, square-square m = 2); the paper gives no
numbers for this application.

A convolutional network instead (``--cnn``, default when PyTorch is installed): G_W(X) is
a small LeNet-like network in PyTorch, three 'same' convolutions (5 x 5, then 3 x 3 twice;
``--cnn-width`` channels, ReLU, the last one ``--cnn-channels`` channels and tanh), no
bias and no pooling, so it stays zero on blank pixels and translation-equivariant. It runs
on the field extended by ``--cnn-context`` 4 blank pixels (its receptive radius), so no
feature is cut at the field's edge and a shifted letter has exactly the shifted feature
map and energy table (without it, a letter shifted to the edge loses the features that
spill over the edge, which cost 1.5 to 3 points of shifted accuracy over three seeds, up
to 7 on one); the learned references R_Y (C, 16, 8) and the energy are as above, the whole
(26, n_poses) table is one cross-correlation of the feature map with the references. It
trains end to end through :mod:`factorgraph_ebm.torch`
(:class:`~factorgraph_ebm.torch.GraphEnergyModel`: the library's min-sum or sum-product on
the (category, pose) graph in the forward pass, its dL/d(energies) in the backward pass,
autograd for the rest) with Adam (step ``--cnn-lr`` 0.003, cosine decay to 0 over
``--cnn-epochs`` 8, mini-batches of 16), the pose latent and never supervised, same losses
(hinge, NLL), same data, same test. Its poses are the 81 translations -4..4
(``--cnn-max-shift``): the learned references settle off-centre as in the NumPy model, and
one more pixel of pose range keeps the test shifts of 2 in range. Rows "latent-pose-cnn"
and "no-pose-cnn" (the identity pose only). ``--cnn-templates K`` gives each category K
references (initialized at the k-means centroids of its identity windows), the latent
variable then running over (template, translation); ``--cnn-seeds 0,1,2`` trains each CNN
row once per seed (network initialization and batch order; the test letters stay those of
``--seed``) and reports the mean.

Run ``python examples/invariant_recognition.py [--quick] [--out DIR]``: it saves
``invariant_references.png`` (the learned references, per category and channel) and
``invariant_poses.png`` (shifted test letters with the inferred pose drawn on them) and
prints one JSON line ``{"rows": [{"model", "loss", "accuracy", "accuracy_shifted",
"train_seconds"}, ...]}`` (``model`` is "latent-pose", "no-pose", "latent-pose-cnn" or
"no-pose-cnn"; the CNN rows for the hinge and NLL losses only, with ``"seeds"`` and the
sample standard deviations ``"accuracy_sd"`` and ``"accuracy_shifted_sd"`` over them, the
accuracies and ``train_seconds`` being means). Progress and the mean spread max - min of
the energy table (near 0: a collapsed, flat energy) go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

# One small matrix product per sample: BLAS threads only add overhead (on a busy 2-core
# machine, a threaded 49 x 512 x 26 product took 10 times longer). Set before numpy loads.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import factorgraph_ebm as fe  # noqa: E402
from factorgraph_ebm.losses import EnergyLoss, HingeLoss, NLLLoss, SquareSquareLoss  # noqa: E402
from factorgraph_ebm.optim import Adam  # noqa: E402
from factorgraph_ebm.sequence.datasets import OCR_ALPHABET, OCR_SHAPE, load_ocr_letters  # noqa: E402
from factorgraph_ebm.train import fit  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ocr_letters"
N_CATEGORIES = len(OCR_ALPHABET)
#: Blank margin around each 16 x 8 letter: the input field is 20 x 12, so that test shifts
#: of up to 2 pixels move the letter inside the field instead of cropping it.
MARGIN = 2
#: L2 regularization weight of every run.
L2 = 1e-4
#: The losses compared (name -> loss); margins and beta are in the energy's units.
LOSSES = {
    "hinge": lambda: HingeLoss(margin=1.0),
    "nll": lambda: NLLLoss(beta=0.5),
    "square_square": lambda: SquareSquareLoss(margin=2.0),
    "energy": lambda: EnergyLoss(),
}


# --------------------------------------------------------------------------- images
def translate(images, dy, dx):
    """Images (n, H, W) translated by (dy, dx) pixels (down, right; ints or int arrays of
    shape (n,), each of magnitude at most H and W), zero-filled."""
    images = np.asarray(images)
    n, height, width = images.shape
    dy = np.broadcast_to(np.asarray(dy, dtype=np.int64), (n,))
    dx = np.broadcast_to(np.asarray(dx, dtype=np.int64), (n,))
    padded = np.pad(images, ((0, 0), (height, height), (width, width)))
    rows = (height - dy)[:, None, None] + np.arange(height)[None, :, None]
    cols = (width - dx)[:, None, None] + np.arange(width)[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def pose_graph(n_poses: int) -> fe.FactorGraph:
    """Variables "category" (26 states) and "pose" (n_poses states) and one pairwise factor,
    whose energy table (26, n_poses), C order, is E(Y, Z, X) for the current input."""
    graph = fe.FactorGraph()
    graph.add_variable("category", N_CATEGORIES)
    graph.add_variable("pose", n_poses)
    graph.add_factor(["category", "pose"], np.zeros((N_CATEGORIES, n_poses)))
    return graph


# --------------------------------------------------------------------------- the model
class PoseTemplateModel:
    """E(Y, Z, X) = 1/C ||G_W(X) - T_Z R_Y||^2, a model for :func:`fe.fit`.

    Inputs x are (16 + 2 margin) x (8 + 2 margin) fields holding one letter in the middle
    (any numeric dtype). G_W(X) = tanh(K * X) is a "same" convolution with zero padding and
    no bias, so a blank pixel has zero features and shifting X shifts G_W(X). R_Y (C, 16, 8)
    is the reference of category Y; T_Z R_Y is R_Y written at the letter box translated by
    pose Z = (dy, dx), zeros elsewhere (parts of the box outside the field compare with
    zeros, the zero fill of a shifted input).

    Parameters are one flat vector, the kernels K (C, k, k) then the references
    R (26, C, 16, 8), each C order. Pose z = (dy + s)(2s + 1) + (dx + s) with
    s = ``max_shift``, so :attr:`shifts` runs through (dy, dx) in lexicographic order and
    the identity is the middle pose.

    With ``S_z`` the (C, 16, 8) window of the features at pose z,
    ``E[y, z] = (||G||^2 - 2 <S_z, R_y> + ||R_y||^2) / C``: one gather of the windows
    and one matrix product give the whole (26, n_poses) table, and the backward pass is two
    more products and one ``np.bincount`` (no loop over table entries).
    """

    def __init__(self, margin: int = MARGIN, max_shift: int = 3, n_channels: int = 4,
                 kernel: int = 3):
        self.margin, self.max_shift = margin, max_shift
        self.n_channels, self.kernel = n_channels, kernel
        box_h, box_w = OCR_SHAPE
        self.field = (box_h + 2 * margin, box_w + 2 * margin)
        height, width = self.field
        side = 2 * max_shift + 1
        self.n_poses = side * side
        dy, dx = np.divmod(np.arange(self.n_poses), side)
        #: (n_poses, 2) int64: the translation (dy, dx) of each pose.
        self.shifts = np.stack([dy, dx], axis=1) - max_shift
        self.graph = pose_graph(self.n_poses)
        self.shapes = {"K": (n_channels, kernel, kernel), "R": (N_CATEGORIES, n_channels,
                                                                 box_h, box_w)}
        sizes = [int(np.prod(shape)) for shape in self.shapes.values()]
        ends = np.cumsum(sizes).tolist()
        self._slices = {name: slice(end - size, end)
                        for name, size, end in zip(self.shapes, sizes, ends)}
        self.n_params = ends[-1]
        # im2col of the field with zero padding: (H*W, k*k) pixel indices, H*W = a zero.
        pad = kernel // 2
        rows, cols = np.divmod(np.arange(height * width), width)
        di, dj = np.divmod(np.arange(kernel * kernel), kernel)
        rows = rows[:, None] + di[None, :] - pad
        cols = cols[:, None] + dj[None, :] - pad
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        self._patches = np.where(inside, rows * width + cols, height * width)
        # Pose windows: (n_poses, C*16*8) indices into the feature map (C*H*W entries,
        # channel-major), C*H*W = a zero for window entries outside the field.
        ch, ii, jj = (a.ravel() for a in np.meshgrid(
            np.arange(n_channels), np.arange(box_h), np.arange(box_w), indexing="ij"))
        rows = ii[None, :] + margin + self.shifts[:, :1]
        cols = jj[None, :] + margin + self.shifts[:, 1:]
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        self._map_len = n_channels * height * width
        self._windows = np.where(inside, (ch * height + rows) * width + cols, self._map_len)
        self._cache = None

    # ----------------------------------------------------------------- parameters
    def unpack(self, params):
        """Views of the parameters: dict name -> array of its shape."""
        params = np.asarray(params, dtype=np.float64)
        return {name: params[part].reshape(self.shapes[name])
                for name, part in self._slices.items()}

    def init_params(self, rng, images=None, labels=None):
        """Kernels: a centered delta plus N(0, 0.3^2) noise. References: zeros, or, when
        training fields and labels are given, each category's mean feature window at the
        identity pose (which anchors the pose: Z is never supervised).

        Returns
        -------
        ndarray of shape (n_params,), dtype=float64
        """
        rng = np.random.default_rng(rng)
        params = np.zeros(self.n_params)
        parts = self.unpack(params)  # views into params
        parts["K"][:] = rng.normal(scale=0.3, size=self.shapes["K"])
        parts["K"][:, self.kernel // 2, self.kernel // 2] += 1.0
        if images is not None:
            labels = np.asarray(labels)
            identity = self.n_poses // 2
            maps = self.features(params, images)[0]
            extended = np.concatenate([maps, np.zeros((len(maps), 1))], axis=1)
            windows = extended[:, self._windows[identity]]  # (n, C*16*8)
            for y in range(N_CATEGORIES):
                if (labels == y).any():
                    parts["R"][y] = windows[labels == y].mean(0).reshape(self.shapes["R"][1:])
        return params

    # ----------------------------------------------------------------- forward
    def features(self, params, images):
        """G_W(X) for fields (n, H, W): ``(maps (n, C*H*W) channel-major, patches
        (n, H*W, k*k))``."""
        images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
        extended = np.concatenate([images, np.zeros((len(images), 1))], axis=1)
        patches = extended[:, self._patches]
        kernels = self.unpack(params)["K"].reshape(self.n_channels, -1)
        maps = np.tanh(patches @ kernels.T)  # (n, H*W, C)
        return maps.transpose(0, 2, 1).reshape(len(images), -1), patches

    def _gather(self, maps):
        """(n, n_poses, C*16*8): the feature window of every pose (zeros outside the field)."""
        extended = np.concatenate([maps, np.zeros((len(maps), 1))], axis=1)
        return extended[:, self._windows]

    def energy_tables(self, params, images):
        """Energies (n, 26, n_poses) for fields (n, H, W), and the cache for backward."""
        maps, patches = self.features(params, images)
        windows = self._gather(maps)
        refs = self.unpack(params)["R"].reshape(N_CATEGORIES, -1)
        cross = np.matmul(windows, refs.T).transpose(0, 2, 1)  # (n, 26, n_poses)
        table = ((maps**2).sum(1)[:, None, None] - 2.0 * cross
                 + (refs**2).sum(1)[None, :, None]) / self.n_channels
        return table, (maps, patches, windows)

    def _forward_one(self, params, x):
        """(theta, cache) for one field, remembered for the next call with equal inputs
        (:func:`fe.fit` calls :meth:`energies`, then :meth:`backward` on the same pair)."""
        params = np.asarray(params, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        cached = self._cache
        if cached is not None and np.array_equal(cached[0], x) and np.array_equal(
                cached[1], params):
            return cached[2], cached[3]
        table, cache = self.energy_tables(params, x[None])
        theta = table[0].ravel()
        self._cache = (x.copy(), params.copy(), theta, cache)
        return theta, cache

    def energies(self, params, x):
        """The flat energy vector theta (26 * n_poses,) for one field x: the table over
        (category, pose) in C order."""
        return self._forward_one(params, x)[0].copy()

    # ----------------------------------------------------------------- backward
    def backward(self, params, x, grad_energies):
        """dL/dW (n_params,) from dL/d(theta) (26 * n_poses,) for one field x."""
        _, (maps, patches, windows) = self._forward_one(params, x)
        g = np.asarray(grad_energies, dtype=np.float64).reshape(N_CATEGORIES, self.n_poses)
        g = g / self.n_channels
        refs = self.unpack(params)["R"].reshape(N_CATEGORIES, -1)
        maps, windows = maps[0], windows[0]
        # dE/dR_y = sum_z g[y, z] 2 (R_y - S_z).
        grad_refs = 2.0 * refs * g.sum(1)[:, None] - 2.0 * (g @ windows)
        # dE/dG = 2 G sum(g) - 2 sum_z (g^T R)[z] written back at window z.
        scattered = np.bincount(self._windows.ravel(), weights=(g.T @ refs).ravel(),
                                minlength=self._map_len + 1)[:-1]
        grad_maps = 2.0 * maps * g.sum() - 2.0 * scattered
        grad_pre = (grad_maps * (1.0 - maps**2)).reshape(self.n_channels, -1)  # (C, H*W)
        grad_kernels = grad_pre @ patches[0]  # (C, k*k)
        return np.concatenate([grad_kernels.ravel(), grad_refs.ravel()])

    # ----------------------------------------------------------------- inference
    def infer(self, params, images, chunk=256):
        """Min-sum inference by the library on the factor graph, for each field:
        ``(categories (n,), poses (n,))`` int64."""
        categories = np.empty(len(images), dtype=np.int64)
        poses = np.empty(len(images), dtype=np.int64)
        for start in range(0, len(images), chunk):
            tables, _ = self.energy_tables(params, images[start:start + chunk])
            for k, table in enumerate(tables):
                result = fe.min_sum(self.graph, energies=table.ravel())
                categories[start + k], poses[start + k] = result.assignment
        return categories, poses


# --------------------------------------------------------------------------- the CNN model
#: The losses of the CNN rows.
CNN_LOSSES = ("hinge", "nll")


def cnn_available() -> bool:
    """Whether PyTorch (the ``torch`` extra) is installed."""
    return importlib.util.find_spec("torch") is not None


def pose_template_cnn(margin: int = MARGIN, max_shift: int = 3, width: int = 32,
                      n_channels: int = 32, seed: int = 0, n_templates: int = 1,
                      dropout: float = 0.0, context: int = 4):
    """A :class:`torch.nn.Module` mapping fields (n, H, W) to the energy tables
    E(Y, Z, X) = 1/C ||G_W(X) - T_Z R_Y||^2, flattened to (n, 26 * n_poses) in the layout of
    :func:`pose_graph` (poses in :class:`PoseTemplateModel`'s order).

    G_W: three zero-padded 'same' convolutions without bias (1 -> width, 5 x 5, ReLU;
    width -> width, 3 x 3, ReLU; width -> C, 3 x 3, tanh): zero on blank pixels and
    equivariant to translations. They run on the field extended by ``context`` blank
    pixels on every side (default 4, their receptive radius 2 + 1 + 1), so G_W(X) is the
    feature map of the letter on an unbounded blank plane: no feature is cut at the field's
    edge, and a letter shifted inside the field has exactly the shifted feature map (with
    ``context=0`` the features of a letter at the field's edge are cut, and those next to
    the edge differ). R (26 * n_templates, C, 16, 8) is a parameter: each category has
    ``n_templates`` references, and the latent variable "pose" runs over (template,
    translation) pairs, template-major (``n_templates * (2 max_shift + 1)**2`` states), so
    one category's energy is its minimum over both. With the feature map zero-padded (or
    cropped) to ``max_shift`` pixels around the letter box, ``conv2d(G, R)`` gives
    <S_z, R_y> for every pose window S_z at once. ``dropout`` is the probability of
    :class:`torch.nn.Dropout2d` (whole channels, which keeps the map equivariant) after
    each hidden convolution, in training mode only.
    """
    import torch

    class PoseTemplateCNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.n_channels, self.max_shift, self.margin = n_channels, max_shift, margin
            self.context = context
            self.offset = margin + context  # the letter box's corner in the feature map
            self.n_templates = n_templates
            self.n_poses = n_templates * (2 * max_shift + 1) ** 2
            self.conv = torch.nn.ModuleList([
                torch.nn.Conv2d(1, width, 5, padding=2, bias=False),
                torch.nn.Conv2d(width, width, 3, padding=1, bias=False),
                torch.nn.Conv2d(width, n_channels, 3, padding=1, bias=False)])
            self.references = torch.nn.Parameter(
                torch.zeros(N_CATEGORIES * n_templates, n_channels, *OCR_SHAPE))
            self.dropout = torch.nn.Dropout2d(dropout)

        def features(self, fields):
            x = torch.as_tensor(np.asarray(fields), dtype=torch.float32)[:, None]
            x = torch.nn.functional.pad(x, (self.context,) * 4)
            x = self.dropout(torch.relu(self.conv[0](x)))
            x = self.dropout(torch.relu(self.conv[1](x)))
            return torch.tanh(self.conv[2](x))

        def windows_at_identity(self, fields):
            """(n, C, 16, 8): the feature window at the identity pose."""
            m = self.offset
            return self.features(fields)[:, :, m:m + OCR_SHAPE[0], m:m + OCR_SHAPE[1]]

        def forward(self, fields):
            g = self.features(fields)
            pad = self.max_shift - self.offset
            if pad >= 0:
                padded = torch.nn.functional.pad(g, (pad,) * 4)
            else:
                padded = g[:, :, -pad:pad, -pad:pad]
            cross = torch.nn.functional.conv2d(padded, self.references)  # (n, 26 K, s, s)
            refs = self.references.pow(2).sum((1, 2, 3))
            table = (g.pow(2).sum((1, 2, 3))[:, None, None, None] - 2.0 * cross
                     + refs[None, :, None, None]) / self.n_channels
            return table.reshape(len(g), -1)  # (category, template, dy, dx), C order

    return PoseTemplateCNN()


def init_references(network, images, labels, seed):
    """References at the identity-pose feature windows of each category: their mean (one
    template, as the NumPy model), or the centroids of a seeded k-means
    (:func:`scipy.cluster.vq.kmeans2`, k-means++) with several templates."""
    import torch
    from scipy.cluster.vq import kmeans2

    k = network.n_templates
    with torch.no_grad():
        windows = network.windows_at_identity(images)
        refs = network.references.view(N_CATEGORIES, k, *windows.shape[1:])
        for y in range(N_CATEGORIES):
            mine = windows[torch.as_tensor(labels == y)]
            if len(mine) == 0:
                continue
            if k == 1 or len(mine) < k:
                refs[y] = mine.mean(0)
            else:
                centres, _ = kmeans2(mine.reshape(len(mine), -1).double().numpy(), k,
                                     minit="++", seed=seed + y)
                refs[y] = torch.as_tensor(centres).reshape(k, *windows.shape[1:])


def train_cnn(network, loss, images, labels, epochs, seed, learning_rate, batch_size=16,
              weight_decay=0.0):
    """End-to-end training through the bridge, references from :func:`init_references`;
    returns (model, seconds)."""
    import torch

    from factorgraph_ebm.torch import GraphEnergyModel

    torch.set_num_threads(1)
    network.eval()  # no dropout in the initial references
    init_references(network, images, labels, seed)
    model = GraphEnergyModel(network, pose_graph(network.n_poses), loss, latent=["pose"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=weight_decay)
    model.train()
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            value = model(images[batch], [{"category": int(y)} for y in labels[batch]])
            value.mean().backward()
            optimizer.step()
            total += float(value.detach().sum())
        schedule.step()
        print(f"  epoch {epoch + 1}: mean loss {total / len(images):.4f}", file=sys.stderr)
    model.eval()
    return model, time.perf_counter() - started


def cnn_row(model_name, loss_name, seeds, runs):
    """The JSON row of a CNN model over training seeds: ``runs`` (n_seeds, 3) holds
    (accuracy, shifted accuracy, seconds) per seed; accuracies are the means over seeds,
    ``*_sd`` their sample standard deviations (0 for one seed)."""
    sd = runs.std(0, ddof=1) if len(runs) > 1 else np.zeros(3)
    return {"model": model_name, "loss": loss_name, "seeds": list(seeds),
            "accuracy": round(float(runs[:, 0].mean()), 4),
            "accuracy_sd": round(float(sd[0]), 4),
            "accuracy_shifted": round(float(runs[:, 1].mean()), 4),
            "accuracy_shifted_sd": round(float(sd[1]), 4),
            "train_seconds": round(float(runs[:, 2].mean()), 1)}


def infer_cnn(model, images, chunk=256):
    """Min-sum by the library on the (category, pose) graph: (categories, poses) int64."""
    import torch

    with torch.no_grad():
        states = np.concatenate([model.predict(images[i:i + chunk]).numpy()
                                 for i in range(0, len(images), chunk)])
    return states[:, 0], states[:, 1]


# --------------------------------------------------------------------------- data
def load_split(n_train: int, n_test: int, seed: int, margin: int = MARGIN):
    """Letters of fold 1 (train) and of the other folds (test), each as (images
    (n, 16 + 2 margin, 8 + 2 margin) uint8, the letter centered in a blank field, labels (n,)
    int64); ``n_train``/``n_test`` > 0 take seeded random subsamples."""
    words = load_ocr_letters(DATA / "ocr_letters.data.gz")
    fold = np.concatenate([np.full(len(y), f) for y, f in zip(words.labels, words.folds)])
    images, labels = np.concatenate(words.images), np.concatenate(words.labels)
    images = np.pad(images, ((0, 0), (margin, margin), (margin, margin)))
    rng = np.random.default_rng(seed)
    split = []
    for chosen, limit in ((fold == 1, n_train), (fold != 1, n_test)):
        index = np.flatnonzero(chosen)
        if 0 < limit < len(index):
            index = np.sort(rng.choice(index, limit, replace=False))
        split.append((images[index], labels[index]))
    return split


# --------------------------------------------------------------------------- figures
def plot_references(model, params, path):
    """The learned references R_Y as one mosaic: one row per feature channel, one column
    per category (blue negative, red positive; one colour scale per channel)."""
    refs = model.unpack(params)["R"]  # (26, C, 16, 8)
    box_h, box_w = OCR_SHAPE
    gap = 1
    mosaic = np.full((model.n_channels * (box_h + gap), N_CATEGORIES * (box_w + gap)), np.nan)
    for c in range(model.n_channels):
        scaled = refs[:, c] / max(np.abs(refs[:, c]).max(), 1e-12)
        for y in range(N_CATEGORIES):
            mosaic[c * (box_h + gap):c * (box_h + gap) + box_h,
                   y * (box_w + gap):y * (box_w + gap) + box_w] = scaled[y]
    fig, ax = plt.subplots(figsize=(9.0, 0.7 + 9.0 * mosaic.shape[0] / mosaic.shape[1]))
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="RdBu_r", vmin=-1, vmax=1,
              interpolation="nearest")
    ax.set_xticks((box_w + gap) * np.arange(N_CATEGORIES) + (box_w - 1) / 2,
                  list(OCR_ALPHABET), fontsize=8)
    ax.set_yticks((box_h + gap) * np.arange(model.n_channels) + (box_h - 1) / 2,
                  [f"channel {c}" for c in range(model.n_channels)], fontsize=8)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("Learned reference representations R_Y (latent-pose model, hinge loss); "
                 "red > 0 > blue, one scale per channel", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_poses(images, shifts, labels, categories, poses, model, path, margin=MARGIN,
               n_show=16):
    """Shifted test letters: dashed blue, the letter's own 16 x 8 box at its true shift;
    solid, the box at the inferred pose (green when the category is right, red otherwise)."""
    fig, axes = plt.subplots(2, n_show // 2, figsize=(0.9 * n_show / 2, 4.0), squeeze=False)
    for k, ax in enumerate(axes.ravel()[:n_show]):
        ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=1)
        dy, dx = shifts[k]
        ax.add_patch(plt.Rectangle((margin + dx - 0.5, margin + dy - 0.5), OCR_SHAPE[1],
                                   OCR_SHAPE[0], fill=False, ec="tab:blue", ls="--", lw=1.0))
        py, px = model.shifts[poses[k]]
        right = categories[k] == labels[k]
        ax.add_patch(plt.Rectangle((margin + px - 0.5, margin + py - 0.5), OCR_SHAPE[1],
                                   OCR_SHAPE[0], fill=False,
                                   ec="tab:green" if right else "tab:red", lw=1.4))
        ax.set_title(f"{OCR_ALPHABET[categories[k]]} ({py:+d},{px:+d})\n"
                     f"true {OCR_ALPHABET[labels[k]]} ({dy:+d},{dx:+d})", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Shifted test letters: inferred category (dy,dx), then the true ones;\n"
                 "solid box = inferred pose (green: right category), dashed = true shift",
                 fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.83, bottom=0.01, wspace=0.1,
                        hspace=0.45)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def train(model, loss, images, labels, epochs, seed, learning_rate):
    """Train from the class-mean initialization; returns (params, seconds)."""
    params = model.init_params(seed, images, labels)
    samples = [(x.astype(np.float64), {"category": int(y)}) for x, y in zip(images, labels)]
    started = time.perf_counter()
    result = fit(model, loss, samples, optimizer=Adam(learning_rate), n_epochs=epochs,
                 batch_size=4, l2=L2, latent=["pose"], seed=seed, params=params,
                 accuracy=False, progress=False)
    return result.params, time.perf_counter() - started


def evaluate(model, params, test_x, test_y, shifted_x):
    """Test accuracy on the letters as they are and shifted (min-sum by the library), the
    inferred categories and poses of the shifted letters, and the mean spread
    max - min of the energy table over the first 500 test letters."""
    predicted, _ = model.infer(params, test_x)
    predicted_shifted, poses = model.infer(params, shifted_x)
    tables, _ = model.energy_tables(params, test_x[:500])
    return {"accuracy": float(np.mean(predicted == test_y)),
            "accuracy_shifted": float(np.mean(predicted_shifted == test_y)),
            "predicted_shifted": predicted_shifted, "poses": poses,
            "spread": float(np.mean(tables.max((1, 2)) - tables.min((1, 2))))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples and epochs (tests)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "output"),
                        help="directory for the figures (default: examples/output/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--n-train", type=int, default=None,
                        help="training letters from fold 1 (default: all; 0 = all)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="test letters from the other folds (default 8000; 0 = all)")
    parser.add_argument("--max-shift", type=int, default=3,
                        help="poses: the translations -s..s in each direction")
    parser.add_argument("--margin", type=int, default=MARGIN,
                        help="blank margin around each letter (0: shifts crop the letter)")
    parser.add_argument("--learning-rate", type=float, default=0.003, help="Adam's step")
    parser.add_argument("--losses", default=",".join(LOSSES),
                        help="comma-separated subset of " + ",".join(LOSSES))
    parser.add_argument("--cnn", action=argparse.BooleanOptionalAction, default=None,
                        help="the PyTorch CNN rows (default: when PyTorch is installed)")
    parser.add_argument("--cnn-epochs", type=int, default=None, help="default 8 (quick: 2)")
    parser.add_argument("--cnn-max-shift", type=int, default=4,
                        help="poses of the latent-pose CNN: translations -s..s (default 4)")
    parser.add_argument("--cnn-lr", type=float, default=0.003, help="Adam's step for the CNN")
    parser.add_argument("--cnn-width", type=int, default=None,
                        help="channels of the first two convolutions (default 32; quick: 8)")
    parser.add_argument("--cnn-channels", type=int, default=None,
                        help="feature channels C of G_W(X) (default 32; quick: 8)")
    parser.add_argument("--cnn-templates", type=int, default=1,
                        help="reference templates per category (default 1)")
    parser.add_argument("--cnn-context", type=int, default=4,
                        help="blank pixels added around the field before the CNN's "
                             "convolutions (default 4, their receptive radius: exact "
                             "equivariance; 0: features cut at the field's edge)")
    parser.add_argument("--cnn-dropout", type=float, default=0.0,
                        help="channel dropout (Dropout2d) after the CNN's two hidden "
                             "convolutions, in training (default 0)")
    parser.add_argument("--cnn-weight-decay", type=float, default=0.0,
                        help="AdamW's decoupled weight decay for the CNN (default 0: Adam)")
    parser.add_argument("--cnn-seeds", default=None,
                        help="comma-separated training seeds of the CNN rows, averaged "
                             "(default: --seed); the test letters stay those of --seed")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not DATA.is_dir():
        parser.error(f"OCR letters not found at {DATA}")

    n_train, n_test, epochs = (300, 500, 2) if args.quick else (0, 8000, 2)
    n_train = n_train if args.n_train is None else args.n_train
    n_test = n_test if args.n_test is None else args.n_test
    epochs = epochs if args.epochs is None else args.epochs
    (train_x, train_y), (test_x, test_y) = load_split(n_train, n_test, args.seed, args.margin)
    rng = np.random.default_rng(args.seed + 1)
    test_shifts = rng.integers(-2, 3, size=(len(test_x), 2))
    shifted_x = translate(test_x, test_shifts[:, 0], test_shifts[:, 1])
    field = test_x.shape[1:]
    print(f"train {len(train_x)} letters (fold 1), test {len(test_x)} (other folds), "
          f"{epochs} epochs, field {field}", file=sys.stderr)

    rows, figure_run = [], None
    models = {"latent-pose": PoseTemplateModel(args.margin, max_shift=args.max_shift),
              "no-pose": PoseTemplateModel(args.margin, max_shift=0)}
    for name, model in models.items():
        start = evaluate(model, model.init_params(args.seed, train_x, train_y), test_x,
                         test_y, shifted_x)
        print(f"{name:12s} {'(class means)':14s} {start['accuracy']:.3f} "
              f"{start['accuracy_shifted']:.3f}          energy spread {start['spread']:.4g}",
              file=sys.stderr)
    for loss_name in args.losses.split(","):
        for model_name, model in models.items():
            params, seconds = train(model, LOSSES[loss_name](), train_x, train_y, epochs,
                                    args.seed, args.learning_rate)
            result = evaluate(model, params, test_x, test_y, shifted_x)
            rows.append({"model": model_name, "loss": loss_name,
                         "accuracy": round(result["accuracy"], 4),
                         "accuracy_shifted": round(result["accuracy_shifted"], 4),
                         "train_seconds": round(seconds, 1)})
            print(f"{model_name:12s} {loss_name:14s} {result['accuracy']:.3f} "
                  f"{result['accuracy_shifted']:.3f} {seconds:6.1f}s  "
                  f"energy spread {result['spread']:.4g}", file=sys.stderr)
            if model_name == "latent-pose" and (figure_run is None or loss_name == "hinge"):
                figure_run = (model, params, result["predicted_shifted"], result["poses"])
    if args.cnn is None:
        args.cnn = cnn_available()
        if not args.cnn:
            print("PyTorch is not installed: no CNN rows (pip install "
                  "'factorgraph-ebm[torch]')", file=sys.stderr)
    if args.cnn:
        width = args.cnn_width or (8 if args.quick else 32)
        channels = args.cnn_channels or (8 if args.quick else 32)
        cnn_epochs = args.cnn_epochs or (2 if args.quick else 8)
        seeds = ([args.seed] if args.cnn_seeds is None
                 else [int(seed) for seed in args.cnn_seeds.split(",")])
        for loss_name in [name for name in args.losses.split(",") if name in CNN_LOSSES]:
            for model_name, max_shift in (("latent-pose-cnn", args.cnn_max_shift),
                                          ("no-pose-cnn", 0)):
                runs = []
                for seed in seeds:
                    network = pose_template_cnn(args.margin, max_shift, width, channels, seed,
                                                args.cnn_templates, args.cnn_dropout,
                                                args.cnn_context)
                    model, seconds = train_cnn(network, LOSSES[loss_name](), train_x,
                                               train_y, cnn_epochs, seed, args.cnn_lr,
                                               weight_decay=args.cnn_weight_decay)
                    runs.append((np.mean(infer_cnn(model, test_x)[0] == test_y),
                                 np.mean(infer_cnn(model, shifted_x)[0] == test_y), seconds))
                    print(f"{model_name:15s} {loss_name:11s} seed {seed}: {runs[-1][0]:.3f} "
                          f"{runs[-1][1]:.3f} {seconds:6.1f}s", file=sys.stderr)
                rows.append(cnn_row(model_name, loss_name, seeds, np.array(runs)))
    model, params, predicted_shifted, poses = figure_run
    plot_references(model, params, out / "invariant_references.png")
    plot_poses(shifted_x, test_shifts, test_y, predicted_shifted, poses, model,
               out / "invariant_poses.png", args.margin)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
