"""examples/invariant_recognition.py: the pose-template model's hand-written backward pass
against central finite differences, the library's min-sum over (category, pose) against
brute force over the 26 x 25 energy table, the translation invariance the latent pose
buys, and a --quick run on the OCR letters (with the PyTorch CNN rows when PyTorch is
installed)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm as fe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_example(name):
    """Import examples/<name>.py as a module (without putting examples/ on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ir = load_example("invariant_recognition")


def random_field(rng, model, ink=0.3):
    """A random binary letter in the middle of the model's blank field."""
    letter = (rng.random((16, 8)) < ink).astype(np.float64)
    return np.pad(letter, model.margin)


def random_params(rng, model):
    return rng.normal(scale=0.5, size=model.n_params)


@pytest.mark.parametrize("margin, max_shift", [(2, 3), (2, 0), (0, 1)])
def test_backward_matches_finite_differences(margin, max_shift):
    """backward(params, x, G) is the gradient of <G, energies(params, x)> (central
    differences over every parameter; with max_shift > margin some pose windows leave the
    field)."""
    rng = np.random.default_rng(margin * 10 + max_shift)
    model = ir.PoseTemplateModel(margin, max_shift=max_shift, n_channels=2)
    params = random_params(rng, model)
    x = random_field(rng, model)
    weights = rng.normal(size=ir.N_CATEGORIES * model.n_poses)
    analytic = model.backward(params, x, weights)
    numeric = np.empty(model.n_params)
    step = 1e-6
    for i in range(model.n_params):
        shift = np.zeros(model.n_params)
        shift[i] = step
        numeric[i] = (weights @ model.energies(params + shift, x)
                      - weights @ model.energies(params - shift, x)) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_energy_table_is_a_squared_distance():
    """E[y, z] = 1/C ||G(X) - T_z R_y||^2 over a field extended by zeros (the zero fill),
    computed the slow way for every entry, poses beyond the margin included."""
    rng = np.random.default_rng(1)
    model = ir.PoseTemplateModel(2, max_shift=3, n_channels=3)
    params = random_params(rng, model)
    x = random_field(rng, model)
    maps = model.features(params, x[None])[0].reshape(model.n_channels, *model.field)
    extended = np.pad(maps, ((0, 0), (1, 1), (1, 1)))  # margin 2 + 1 = max_shift
    refs = model.unpack(params)["R"]
    table = model.energies(params, x).reshape(ir.N_CATEGORIES, model.n_poses)
    assert table.shape == (26, 49)
    for z, (dy, dx) in enumerate(model.shifts):
        placed = np.zeros((ir.N_CATEGORIES, *extended.shape))
        placed[:, :, 3 + dy:19 + dy, 3 + dx:11 + dx] = refs
        expected = ((extended[None] - placed) ** 2).sum((1, 2, 3)) / model.n_channels
        np.testing.assert_allclose(table[:, z], expected, rtol=1e-10)


@pytest.mark.parametrize("max_shift", [2, 3])
def test_library_inference_equals_brute_force(max_shift):
    """Min-sum on the (category, pose) factor graph finds the minimum of the 26 x 25
    (26 x 49) table, and sum-product's free energy is -1/beta log sum exp(-beta E) over
    the table."""
    rng = np.random.default_rng(2)
    model = ir.PoseTemplateModel(max_shift=max_shift)
    assert model.graph.n_states.tolist() == [26, (2 * max_shift + 1) ** 2]
    params = random_params(rng, model)
    fields = np.stack([random_field(rng, model) for _ in range(8)])
    categories, poses = model.infer(params, fields)
    tables, _ = model.energy_tables(params, fields)
    for k, table in enumerate(tables):
        y, z = np.unravel_index(np.argmin(table), table.shape)
        assert (categories[k], poses[k]) == (y, z)
        result = fe.min_sum(model.graph, energies=table.ravel())
        assert result.energy == pytest.approx(table.min(), rel=1e-12)
        np.testing.assert_allclose(result.min_marginals[0], table.min(1), rtol=1e-12)
        beta = 0.7
        free = fe.sum_product(model.graph, beta=beta, energies=table.ravel()).free_energy
        low = table.min()
        assert free == pytest.approx(low - np.log(np.exp(-beta * (table - low)).sum()) / beta)


def test_shifting_the_input_shifts_the_best_pose():
    """Translating a letter by (dy, dx) inside the blank field changes every category's
    energy at the correspondingly translated pose by one common constant: min over the
    pose makes the category decision invariant (as long as the pose stays in range)."""
    rng = np.random.default_rng(3)
    model = ir.PoseTemplateModel()
    params = random_params(rng, model)
    x = random_field(rng, model)
    table = model.energies(params, x).reshape(ir.N_CATEGORIES, model.n_poses)
    identity = model.n_poses // 2
    for dy, dx in [(1, 0), (-2, 1), (2, 2)]:
        moved = ir.translate(x[None], dy, dx)[0]
        moved_table = model.energies(params, moved).reshape(ir.N_CATEGORIES, model.n_poses)
        z = int(np.flatnonzero((model.shifts == (dy, dx)).all(1))[0])
        difference = moved_table[:, z] - table[:, identity]
        np.testing.assert_allclose(difference, difference[0], atol=1e-9)


def test_translate_zero_fills():
    images = np.arange(12).reshape(1, 3, 4) + 1
    moved = ir.translate(images, 1, -2)[0]
    assert moved.tolist() == [[0, 0, 0, 0], [3, 4, 0, 0], [7, 8, 0, 0]]


@pytest.mark.skipif(not (DATA / "ocr_letters").is_dir(),
                    reason=f"OCR letters not found at {DATA / 'ocr_letters'}")
def test_quick_run(tmp_path, warm_kernels):
    """--quick on the real letters: the JSON line's shape, the latent-pose model well above
    chance (1/26) and the figures written."""
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / "invariant_recognition.py"), "--quick",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert set(report) == {"rows"}
    rows = report["rows"]
    expected = {(model, loss) for model in ("latent-pose", "no-pose")
                for loss in ("hinge", "nll", "square_square", "energy")}
    if ir.cnn_available():  # the PyTorch rows (torch extra)
        expected |= {(model, loss) for model in ("latent-pose-cnn", "no-pose-cnn")
                     for loss in ("hinge", "nll")}
    assert {(row["model"], row["loss"]) for row in rows} == expected
    for row in rows:
        keys = {"model", "loss", "accuracy", "accuracy_shifted", "train_seconds"}
        if "cnn" in row["model"]:  # averaged over training seeds (one in quick mode)
            keys |= {"seeds", "accuracy_sd", "accuracy_shifted_sd"}
            assert row["seeds"] == [0] and row["accuracy_sd"] == 0.0
        assert set(row) == keys
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["accuracy_shifted"] <= 1.0
        assert row["train_seconds"] > 0.0
    by_key = {(row["model"], row["loss"]): row for row in rows}
    for loss in ("hinge", "nll"):
        latent = by_key["latent-pose", loss]
        assert latent["accuracy"] > 0.3, latent
        assert latent["accuracy_shifted"] > 0.3, latent
        assert latent["accuracy_shifted"] > by_key["no-pose", loss]["accuracy_shifted"], loss
    if ir.cnn_available():  # trained end to end through factorgraph_ebm.torch
        cnn = by_key["latent-pose-cnn", "hinge"]
        assert cnn["accuracy_shifted"] > 0.2, cnn
        assert cnn["accuracy_shifted"] > by_key["no-pose-cnn", "hinge"]["accuracy_shifted"]
    for name in ("invariant_references.png", "invariant_poses.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name


@pytest.mark.skipif(not ir.cnn_available(), reason="PyTorch is not installed (torch extra)")
@pytest.mark.parametrize(("max_shift", "n_templates"), [(0, 1), (1, 1), (4, 1), (1, 3)])
def test_cnn_energy_table_is_a_squared_distance(max_shift, n_templates):
    """The CNN model's table (one cross-correlation) is 1/C ||G(X) - T_z R_y,k||^2 entry by
    entry, in the pose order of PoseTemplateModel (template-major with several templates),
    poses beyond the margin included."""
    import torch

    rng = np.random.default_rng(4)
    numpy_model = ir.PoseTemplateModel(2, max_shift=max_shift)
    network = ir.pose_template_cnn(2, max_shift, width=4, n_channels=3, seed=1,
                                   n_templates=n_templates)
    with torch.no_grad():
        network.references.normal_()
    x = random_field(rng, numpy_model)
    with torch.no_grad():
        table = network(x[None]).double().numpy().reshape(ir.N_CATEGORIES, n_templates, -1)
        maps = network.features(x[None])[0].double().numpy()
        refs = network.references.double().numpy().reshape(ir.N_CATEGORIES, n_templates,
                                                           3, 16, 8)
    assert network.n_poses == n_templates * numpy_model.n_poses
    assert table.shape == (26, n_templates, numpy_model.n_poses)
    s, o = max_shift, network.offset  # o: the letter box's corner in the feature map
    assert maps.shape == (3, 20 + 2 * network.context, 12 + 2 * network.context)
    extended = np.pad(maps, ((0, 0), (s, s), (s, s)))
    for k in range(n_templates):
        for z, (dy, dx) in enumerate(numpy_model.shifts):
            placed = np.zeros((ir.N_CATEGORIES, *extended.shape))
            placed[:, :, o + s + dy:o + 16 + s + dy, o + s + dx:o + 8 + s + dx] = refs[:, k]
            expected = ((extended[None] - placed) ** 2).sum((1, 2, 3)) / 3
            np.testing.assert_allclose(table[:, k, z], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not ir.cnn_available(), reason="PyTorch is not installed (torch extra)")
def test_cnn_is_exactly_shift_equivariant_with_context():
    """With the field extended by the receptive radius (context 4), a letter shifted by
    (dy, dx) inside the field has the energy table of the unshifted letter moved by
    (dy, dx) in pose, entry for entry, even when the shift brings the letter's ink to the
    field's edge; without context (context=0) the features cut at that edge change it."""
    import torch

    rng = np.random.default_rng(6)
    x = random_field(rng, ir.PoseTemplateModel(2, max_shift=3), ink=0.5)[None]
    x[0, 2:18, 2:10] = rng.random((16, 8)) < 0.5  # ink up to the letter box's edges
    shifted = ir.translate(x, 2, -2)  # the box now touches the field's bottom and left
    s = 4
    for context, exact in ((4, True), (0, False)):
        network = ir.pose_template_cnn(2, s, width=4, n_channels=3, seed=2, context=context)
        with torch.no_grad():
            network.references.normal_()
            table = network(x).double().numpy().reshape(26, 2 * s + 1, 2 * s + 1)
            moved = network(shifted).double().numpy().reshape(26, 2 * s + 1, 2 * s + 1)
        # pose (dy, dx) of x is pose (dy + 2, dx - 2) of the shifted letter
        same = np.allclose(moved[:, 2:, :-2], table[:, :-2, 2:], rtol=1e-5, atol=1e-4)
        assert same == exact, context


@pytest.mark.skipif(not ir.cnn_available(), reason="PyTorch is not installed (torch extra)")
def test_cnn_references_start_at_class_means_or_kmeans_centroids():
    """One template: each category's mean identity window; two: k-means centroids, whose
    mean weighted by cluster sizes is the class mean (each point goes to its nearest
    centroid, which is the mean of its cluster)."""
    import torch

    rng = np.random.default_rng(5)
    images = (rng.random((60, 20, 12)) < 0.3).astype(np.uint8)
    images[:, :2] = images[:, -2:] = images[:, :, :2] = images[:, :, -2:] = 0
    labels = np.arange(60) % 26
    for k in (1, 2):
        network = ir.pose_template_cnn(2, 1, width=4, n_channels=3, seed=1, n_templates=k)
        ir.init_references(network, images, labels, seed=0)
        with torch.no_grad():
            windows = network.windows_at_identity(images).double().numpy()
            refs = network.references.double().numpy().reshape(26, k, -1)
        for y in range(26):
            mine = windows[labels == y].reshape(int((labels == y).sum()), -1)
            if k == 1 or len(mine) < k:
                np.testing.assert_allclose(refs[y], mine.mean(0)[None].repeat(k, 0),
                                           atol=1e-5)
                continue
            nearest = ((mine[:, None] - refs[y][None]) ** 2).sum(-1).argmin(1)
            for c in range(k):
                if (nearest == c).any():
                    np.testing.assert_allclose(refs[y, c], mine[nearest == c].mean(0),
                                               atol=1e-5)
