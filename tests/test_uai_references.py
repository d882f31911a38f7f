"""``fgebm`` and the API on every UAI instance of the shared data folder, against its
reference answers.

Exact answers (the junction tree within the default memory limit, or BP on a forest): MAP
energy equal to the reference minimum energy to 1e-9 relative, log10 Z to 1e-9, marginals
within 1e-6 of the ``.MAR`` files' 6 significant digits, with the instance's evidence. The
instances whose tree does not fit (:data:`DOES_NOT_FIT`): ``method="exact"`` refuses them,
``fgebm`` runs loopy BP, of which only what BP guarantees is checked (a decoded energy not
below the minimum, finite normalised figures when the model is feasible). Every instance,
exact or not, is tabulated by ``benchmarks/uai_reference_table.py``; the exact ones are
timed by ``benchmarks/exact_speed.py``. The two largest trees (ObjectDetection_28, 2.4 GB
of tables; CSP_11, 1.7 GB) take 5-10 s of CPU here.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm as fe
from factorgraph_ebm import FactorGraphError, cli
from factorgraph_ebm.io import read_evidence, read_map, read_mar, read_uai

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uai"
REFERENCES = (
    json.loads((DATA / "REFERENCES.json").read_text()) if (DATA / "REFERENCES.json").exists()
    else []
)
#: The folder's files are at most 0.3 MB; a held-back instance with a file above this size is
#: left to the benchmark.
MAX_TEST_BYTES = 2_000_000

pytestmark = pytest.mark.skipif(
    not REFERENCES, reason=f"UAI data folder {DATA} (with REFERENCES.json) not found"
)


#: Instances whose junction tree does not fit the default memory limit (4 GiB): tables of at
#: least 6.4-96 GiB (the planner's lower bounds, in benchmarks/README.md).
DOES_NOT_FIT = {"Grids_15", "Grids_16", "linkage_14", "linkage_16", "linkage_21",
                "2bitcomp_5.cnf"}


def fgebm(capsys, task: str, model: Path, evid: Path | None) -> dict:
    """``fgebm TASK MODEL [--evid EVID] --json`` in-process (its default memory limit);
    the JSON figures."""
    argv = [task, str(model), "--json"]
    argv += ["--evid", str(evid)] if evid else []
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    figures = json.loads(out)
    for key, value in figures.pop("non_finite").items():  # strict JSON: null + the value
        figures[key] = float(value)
    return figures


@pytest.fixture(params=REFERENCES, ids=lambda entry: entry["name"])
def instance(request):
    entry = request.param
    model = DATA / f"{entry['name']}.uai"
    if model.stat().st_size > MAX_TEST_BYTES:
        pytest.skip(f"{model.name} is over {MAX_TEST_BYTES} bytes: run it with "
                    "benchmarks/uai_reference_table.py")
    evid = Path(f"{model}.evid")
    return entry, model, evid if evid.exists() else None


def test_every_model_file_has_a_reference_entry():
    names = {entry["name"] for entry in REFERENCES}
    assert {path.name.removesuffix(".uai") for path in DATA.glob("*.uai")} == names


def test_reader_agrees_with_reference_structure_and_map_value(instance):
    entry, model, evid = instance
    graph = read_uai(model)
    structure = entry["structure"]
    assert (graph.n_variables, graph.n_factors) == (structure["n_vars"], structure["n_factors"])
    assert graph.is_forest() == structure["factor_graph_acyclic"]
    evidence = read_evidence(evid, graph) if evid else {}
    assert len(evidence) == structure["n_evidence"]
    reference = read_map(DATA / entry["references"]["MAP"]["assignment_file"], graph)
    assert all(reference[v] == s for v, s in evidence.items())
    # the energy of the reference assignment, from our reading of the tables
    min_energy = entry["references"]["MAP"]["min_energy"]
    assert graph.energy(reference) == pytest.approx(min_energy, rel=1e-9, abs=1e-6)


def test_cli_answers_against_references(instance, capsys):
    entry, model, evid = instance
    refs = entry["references"]
    graph = read_uai(model)
    evidence = read_evidence(evid, graph) if evid else {}
    found = fgebm(capsys, "map", model, evid)
    marginals = fgebm(capsys, "mar", model, evid)
    pr = fgebm(capsys, "pr", model, evid)
    assert pr["log10_Z"] == marginals["log10_Z"]
    assert pr["log_partition"] == pytest.approx(pr["log10_Z"] * math.log(10), rel=1e-12)

    assignment = np.array(found["assignment"])
    assert assignment.shape == (graph.n_variables,)
    assert found["energy"] == graph.energy(assignment)
    min_energy = refs["MAP"]["min_energy"]
    assert found["energy"] >= min_energy - 1e-6  # nothing beats the optimum

    assert math.isfinite(marginals["log10_Z"])  # every instance here is feasible
    for i, p in enumerate(marginals["marginals"]):
        assert len(p) == graph.n_states[i] and np.isfinite(p).all()
        assert sum(p) == pytest.approx(1.0, abs=1e-9)
        if i in evidence:
            assert p[evidence[i]] == 1.0

    assert found["exact"] == pr["exact"] == marginals["exact"]
    assert found["exact"] == (entry["name"] not in DOES_NOT_FIT)
    if found["exact"]:  # the junction tree, or BP on a forest
        assert found["converged"] and marginals["converged"] and found["feasible"] is True
        assert found["energy"] == pytest.approx(min_energy, rel=1e-9, abs=1e-9)
        assert math.isclose(pr["log10_Z"], refs["PR"]["log10Z"], rel_tol=1e-9, abs_tol=1e-9)
        reference = read_mar(DATA / refs["MAR"]["file"], graph)
        for mine, theirs in zip(marginals["marginals"], reference, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-6)  # 6 significant digits

    assert all(assignment[v] == s for v, s in evidence.items())


def test_python_dash_m_with_evidence(warm_kernels):
    """One real process on an instance with evidence: its MAP energy is the optimum."""
    entry = next((e for e in REFERENCES if e["name"] == "BN_0"), None)
    if entry is None:
        pytest.skip("BN_0 is not in this data folder")
    model = DATA / "BN_0.uai"
    done = subprocess.run(
        [sys.executable, "-m", "factorgraph_ebm", "map", str(model), "--evid", f"{model}.evid",
         "--json"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 0, done.stderr
    energy = json.loads(done.stdout)["energy"]
    assert energy == pytest.approx(entry["references"]["MAP"]["min_energy"], abs=1e-6)


def test_api_is_exact_on_every_instance_that_fits(instance):
    """The library's API (``min_sum`` / ``sum_product``, ``method="exact"``, the default
    memory limit, the instance's evidence) against the references on every instance whose
    junction tree fits: the minimum energy to 1e-9 relative, log10 Z to 1e-9, marginals
    within 1e-6 (the ``.MAR`` files' 6 digits); the others are refused with the reason."""
    entry, model, evid = instance
    refs = entry["references"]
    graph = read_uai(model)
    evidence = read_evidence(evid, graph) if evid else {}
    if entry["name"] in DOES_NOT_FIT:
        with pytest.raises(FactorGraphError, match="does not fit memory_limit"):
            fe.min_sum(graph, evidence=evidence, method="exact")
        return
    best = fe.min_sum(graph, evidence=evidence, method="exact")
    assert best.exact and best.method == "exact" and best.feasible is True
    min_energy = refs["MAP"]["min_energy"]
    assert math.isclose(best.energy, min_energy, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(graph.energy(best.assignment), best.energy, rel_tol=1e-12,
                        abs_tol=1e-9)
    assert all(best.assignment[v] == s for v, s in evidence.items())

    soft = fe.sum_product(graph, evidence=evidence, method="exact", factor_beliefs=False)
    assert soft.exact and soft.method == "exact"
    log10_z = soft.log_partition / math.log(10.0)
    assert math.isclose(log10_z, refs["PR"]["log10Z"], rel_tol=1e-9, abs_tol=1e-9)
    reference = read_mar(DATA / refs["MAR"]["file"], graph)
    for mine, theirs in zip(soft.marginals, reference, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)  # 6 significant digits
