"""The ``fgebm`` command line, in-process (``cli.main``) and as ``python -m factorgraph_ebm``."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

from factorgraph_ebm import cli
from factorgraph_ebm.io import read_map, read_mar, read_pr, read_uai

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "models" / "pdb1akg.uai"

CHAIN = "MARKOV\n3\n2 3 2\n2\n2 0 1\n2 1 2\n6 1 2 3 4 5 6\n6 6 5 4 3 2 1\n"
TRIANGLE = "MARKOV\n3\n2 2 2\n3\n2 0 1\n2 1 2\n2 0 2\n4 1 2 3 4\n4 4 1 2 3\n4 2 5 1 3\n"
INFEASIBLE = "MARKOV\n2\n2 2\n2\n2 0 1\n1 1\n4 0 0 0 0\n2 1 1\n"


@pytest.fixture
def model(tmp_path):
    def make(text, name="m.uai"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return make


def run(capsys, *argv):
    """``cli.main(argv)``: (exit status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_info(capsys):
    status, out, _ = run(capsys, "info", EXAMPLE)
    assert status == 0
    assert "variables      14" in out and "factors        25" in out
    assert "arity          1: 14, 2: 11" in out
    assert "loopy" in out and "5 connected component(s)" in out
    status, out, _ = run(capsys, "info", EXAMPLE, "--json")
    stats = json.loads(out)
    assert stats["arity_histogram"] == {"1": 14, "2": 11}
    assert stats["cardinality_histogram"] == {"2": 3, "3": 6, "6": 1, "9": 3, "18": 1}
    assert (stats["forest"], stats["components"], stats["forbidden_entries"]) == (False, 5, 3)


def test_map_answer_json_and_output_file(capsys, tmp_path):
    out_file = tmp_path / "answer.MAP"
    status, out, err = run(capsys, "map", EXAMPLE, "--json", "-o", out_file)
    assert status == 0
    figures = json.loads(out)
    assert set(figures) == {"assignment", "energy", "converged", "n_iter", "seconds", "method",
                            "exact", "feasible", "induced_width"}
    assert figures["method"] == "exact" and figures["feasible"] is True
    graph = read_uai(EXAMPLE)
    assert figures["energy"] == pytest.approx(graph.energy(figures["assignment"]), abs=1e-12)
    assert figures["energy"] == pytest.approx(6.048465202448768, abs=1e-9)  # the optimum
    assert read_map(out_file, graph).tolist() == figures["assignment"]
    assert "energy 6.048465202" in err and "exact (junction tree, induced width 2)" in err
    status, out, _ = run(capsys, "map", EXAMPLE)  # answer on stdout
    assert out.splitlines() == ["MAP", "14 " + " ".join(map(str, figures["assignment"]))]


def test_mar_and_pr(capsys, model, tmp_path):
    path = model(CHAIN)
    status, out, err = run(capsys, "mar", path, "--json", "-o", tmp_path / "a.MAR")
    figures = json.loads(out)
    assert status == 0 and figures["converged"]
    assert set(figures) == {"marginals", "log_partition", "log10_Z", "converged", "n_iter",
                            "seconds", "method", "exact", "feasible", "induced_width"}
    joint = np.arange(1, 7).reshape(2, 3)[:, :, None] * np.arange(6, 0, -1).reshape(3, 2)[None]
    assert figures["log_partition"] == pytest.approx(math.log(joint.sum()), abs=1e-12)
    assert figures["log10_Z"] == pytest.approx(math.log10(joint.sum()), abs=1e-12)
    want = [joint.sum(axis=(1, 2)), joint.sum(axis=(0, 2)), joint.sum(axis=(0, 1))]
    for got, marginal in zip(read_mar(tmp_path / "a.MAR"), want, strict=True):
        np.testing.assert_allclose(got, marginal / joint.sum(), atol=1e-12)
    status, out, err = run(capsys, "pr", path, "-o", tmp_path / "a.PR", "--verbose")
    assert status == 0 and out == ""
    assert read_pr(tmp_path / "a.PR") == pytest.approx(math.log10(joint.sum()), abs=1e-12)
    assert "log10 Z" in err and "3 variables, 2 factors" in err and "inference" in err
    status, out, _ = run(capsys, "pr", path, "--json", "--beta", "2")
    assert json.loads(out)["log_partition"] == pytest.approx(
        math.log((joint.astype(float) ** 2).sum()), abs=1e-12
    )


def test_verbose_compares_with_reference_answers_beside_the_model(capsys, model):
    _, _, err = run(capsys, "map", EXAMPLE, "--verbose")
    assert "reference pdb1akg.uai.MAP: energy 6.048465202, gap 0" in err
    _, _, err = run(capsys, "pr", EXAMPLE, "--verbose")
    assert re.search(r"reference pdb1akg\.uai\.PR: log10 Z -2\.160408167, error \S+e-1\d", err)
    path = model(CHAIN)
    Path(path + ".MAR").write_text("MAR\n3 2 0.5 0.5\n")
    status, _, err = run(capsys, "mar", path, "--verbose")
    assert status == 0
    assert re.search(r"reference m\.uai\.MAR not compared: .*m\.uai\.MAR:2: expected the "
                     r"cardinality of variable 1", err)


def test_infeasible_model_prints_minus_infinity(capsys, model, tmp_path):
    path = model(INFEASIBLE)
    status, out, _ = run(capsys, "pr", path, "--json", "-o", tmp_path / "x.PR")
    assert status == 0
    assert '"log_partition": -Infinity' in out and '"log10_Z": -Infinity' in out
    assert read_pr(tmp_path / "x.PR") == -math.inf
    status, out, _ = run(capsys, "map", path, "--json")
    assert '"energy": Infinity' in out


def test_evidence_is_explicit_only(capsys, model):
    path = model(CHAIN)
    Path(path + ".evid").write_text("1 1 2\n")  # beside the model: not picked up
    _, out, _ = run(capsys, "map", path, "--json")
    free = json.loads(out)["assignment"]
    _, out, _ = run(capsys, "map", path, "--json", "--evid", path + ".evid")
    clamped = json.loads(out)["assignment"]
    assert free[1] != 2 and clamped[1] == 2


def test_evidence_on_fg_model_uses_variable_order(capsys, model, tmp_path):
    path = model("2\n\n1\n7\n2\n2\n0 1\n1 2\n\n1\n3\n3\n3\n0 3\n1 2\n2 1\n", "m.fg")
    _, out, _ = run(capsys, "map", path, "--json")
    assert json.loads(out)["assignment"] == [0, 1]  # variables by label: 3, then 7
    (tmp_path / "e.evid").write_text("1 1 0\n")  # index 1 = label 7
    _, out, _ = run(capsys, "map", path, "--json", "--evid", tmp_path / "e.evid")
    assert json.loads(out)["assignment"] == [0, 0]


def test_non_convergence_still_answers(capsys, model):
    status, out, err = run(capsys, "mar", model(TRIANGLE),
                           "--max-iter", "1", "--method", "bp", "--schedule", "parallel",
                           "--json")
    assert status == 0
    assert json.loads(out)["converged"] is False
    assert "did NOT converge in 1 iterations" in err


def test_seed_gives_random_but_reproducible_starts(capsys):
    runs = [json.loads(run(capsys, "pr", EXAMPLE, "--json", "--seed", s)[1]) for s in (1, 1, 2)]
    assert runs[0]["log10_Z"] == runs[1]["log10_Z"]
    for figures in runs:
        assert figures["log10_Z"] == pytest.approx(-2.1604081673072315, abs=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["map", "missing.uai"], "No such file"),
        (["map", "{bad}"], r"bad\.uai:3: expected the cardinalities"),
        (["map", "{good}", "--damping", "2"], r"damping must be in \[0, 1\)"),
        (["map", "{good}", "--evid", "{evid}"], r"e\.evid:1: expected a variable index in 0\.\.2"),
        (["pr", "{good}", "--max-iter", "0"], "max_iter must be an integer >= 1"),
        (["map", "{good}", "--method", "bp", "--schedule", "tree"], "needs a forest"),
        (["info", "{good}.txt"], "unknown model format"),
        (["frobnicate"], "invalid choice"),
        (["map"], "the following arguments are required: MODEL"),
        (["map", "{good}", "--beta", "2"], "unrecognized arguments: --beta 2"),
    ],
)
def test_bad_input_exits_2_without_traceback(argv, message, capsys, model, tmp_path):
    names = {"bad": model("MARKOV\n2\n2 x\n", "bad.uai"), "good": model(TRIANGLE),
             "evid": tmp_path / "e.evid"}
    (tmp_path / "e.evid").write_text("1 5 0\n")
    status, _, err = run(capsys, *[a.format(**names) for a in argv])
    assert status == 2
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_help_exits_0(capsys):
    status, out, _ = run(capsys, "map", "--help")
    assert status == 0 and "--max-iter" in out and "--seed" in out


def test_internal_error_exits_1(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "belief_propagation", broken)
    status, _, err = run(capsys, "map", EXAMPLE)
    assert status == 1
    assert "RuntimeError: boom" in err and "internal error" in err


def test_python_dash_m_subprocess(tmp_path, warm_kernels):
    """Two real processes: the example's PR, and a malformed file (exit 2, no traceback)."""
    done = subprocess.run(
        [sys.executable, "-m", "factorgraph_ebm", "pr", str(EXAMPLE), "--json"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 0, done.stderr
    reference = read_pr(Path(f"{EXAMPLE}.PR"))
    assert json.loads(done.stdout)["log10_Z"] == pytest.approx(reference, abs=1e-9)
    bad = tmp_path / "bad.uai"
    bad.write_text("MARKOV\n1\n2\n1\n1 0\n2\n0.5 -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "factorgraph_ebm", "map", str(bad)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:7: expected a potential" in done.stderr and "Traceback" not in done.stderr
