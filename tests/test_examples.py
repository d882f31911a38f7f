"""The demos in examples/: their hand-derived network gradients against finite differences,
and their quick runs (fixed seeds) against what the paper's figures show."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    """Import examples/<name>.py as a module (without putting examples/ on sys.path)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


energy_surfaces = load_example("energy_surfaces")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory, warm_kernels):
    """Both demos with --quick, run concurrently: {script: (last JSON line, out dir)}."""
    out = tmp_path_factory.mktemp("demos")
    scripts = ("energy_surfaces.py", "eye_pattern.py")
    processes = {
        script: subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for script in scripts
    }
    results = {}
    try:
        for script, process in processes.items():
            stdout, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert process.returncode == 0, stderr
            results[script] = json.loads(stdout.strip().splitlines()[-1])
    finally:  # after a failure or a timeout, no demo is left running
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results, out


def runs_by_name(report):
    return {(run["architecture"], run["loss"]): run for run in report["runs"]}


def test_y_equals_x_squared_demo(quick_runs):
    results, out = quick_runs
    runs = runs_by_name(results["energy_surfaces.py"])
    assert set(runs) == {("A", "energy"), ("B", "energy"), ("B", "square_square"),
                         ("B", "nll"), ("B", "hinge")}
    assert not runs["A", "energy"]["collapsed"]
    assert runs["A", "energy"]["test_error"] < 0.1
    assert runs["B", "energy"]["collapsed"]
    assert runs["B", "energy"]["energy_gap"] < energy_surfaces.COLLAPSE_GAP
    for loss in ("square_square", "nll", "hinge"):
        assert not runs["B", loss]["collapsed"], loss
        assert runs["B", loss]["energy_gap"] > 0.5, loss
        assert runs["B", loss]["test_error"] < 0.1, loss
    assert (out / "y_equals_x2.png").stat().st_size > 10_000


def test_eye_pattern_demo(quick_runs):
    results, out = quick_runs
    runs = runs_by_name(results["eye_pattern.py"])
    assert runs["A", "energy"]["two_valley_rate"] <= 0.2
    assert runs["A", "energy"]["test_error"] > 0.3
    assert runs["B", "nll"]["two_valley_rate"] >= 0.8
    assert runs["B", "nll"]["test_error"] < 0.1
    assert (out / "eye_pattern.png").stat().st_size > 10_000


@pytest.mark.parametrize("architecture", ["A", "B"])
def test_network_gradients_match_finite_differences(architecture):
    """backward(params, x, G) is the gradient of <G, energies(params, x)> (central
    differences over every parameter)."""
    rng = np.random.default_rng(0)
    make = getattr(energy_surfaces, f"Architecture{architecture}")
    model = make(np.linspace(0.0, 1.0, 7), n_hidden=5)
    params = model.init_params(rng)
    x = 0.37
    grad_energies = rng.normal(size=7)
    analytic = model.backward(params, x, grad_energies)
    h = 1e-6
    numeric = np.empty_like(params)
    for k in range(len(params)):
        step = np.zeros_like(params)
        step[k] = h
        up = grad_energies @ model.energies(params + step, x)
        down = grad_energies @ model.energies(params - step, x)
        numeric[k] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert model.energies(params, x).shape == (7,)
    assert model.graph.n_variables == 1
