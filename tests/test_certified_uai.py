"""TRW-S on every instance of the UAI development set (../shared/data/uai): its lower bound
never exceeds the reference minimum energy, and it decodes a finite-energy assignment on
every (feasible) instance. A few dozen iterations each (the bound is valid after any
number); ``benchmarks/certified_map.py`` runs them in full."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from factorgraph_ebm.certified import OPTIMALITY_ATOL, OPTIMALITY_RTOL, trws
from factorgraph_ebm.io import read_evidence, read_uai

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uai"
REFERENCES = (json.loads((DATA / "REFERENCES.json").read_text())
              if (DATA / "REFERENCES.json").exists() else [])
#: Model files above this size are left to the benchmark (as in test_uai_references.py).
MAX_TEST_BYTES = 2_000_000

pytestmark = pytest.mark.skipif(
    not REFERENCES, reason=f"UAI data folder {DATA} (with REFERENCES.json) not found"
)


@pytest.mark.parametrize("entry", REFERENCES, ids=lambda entry: entry["name"])
def test_bound_is_valid_and_decoding_feasible(entry):
    model = DATA / f"{entry['name']}.uai"
    if model.stat().st_size > MAX_TEST_BYTES:
        pytest.skip(f"{model.name} is over {MAX_TEST_BYTES} bytes: see "
                    "benchmarks/certified_map.py")
    graph = read_uai(model)
    evid = Path(f"{model}.evid")
    evidence = {}
    if evid.exists():
        evidence = {graph.variables[i]: s for i, s in read_evidence(evid, graph).items()}
    reference = entry["references"]["MAP"]["min_energy"]
    slack = OPTIMALITY_ATOL + OPTIMALITY_RTOL * abs(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = trws(graph, evidence=evidence, max_iter=20, bp_candidate=False)
    assert result.lower_bound <= reference + slack
    assert math.isfinite(result.energy) and result.feasible is True
    assert result.energy >= reference - slack
    assert result.energy == pytest.approx(graph.energy(result.assignment), abs=1e-9)
    assert result.gap >= -slack
