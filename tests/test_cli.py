"""The ``fgebm`` command line, in-process (``cli.main``) and as ``python -m factorgraph_ebm``."""

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm
from factorgraph_ebm import _pacing, cli
from factorgraph_ebm.io import read_map, read_mar, read_pr, read_uai

ROOT = Path(__file__).resolve().parents[1]

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


def strict_loads(text):
    """json.loads that refuses Infinity and NaN, as JSON parsers of other languages do."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def grid_uai(side=3, seed=0, coupling=2.0):
    """A loopy side x side binary grid with random pairwise potentials (UAI text)."""
    rng = np.random.default_rng(seed)
    n = side * side
    edges = [(r * side + c, r * side + c + 1) for r in range(side) for c in range(side - 1)]
    edges += [(r * side + c, (r + 1) * side + c) for r in range(side - 1) for c in range(side)]
    lines = ["MARKOV", str(n), " ".join(["2"] * n), str(n + len(edges))]
    lines += [f"1 {i}" for i in range(n)] + [f"2 {i} {j}" for i, j in edges]
    for _ in range(n):
        lines.append("2 " + " ".join(map(repr, np.exp(rng.normal(size=2)).tolist())))
    for _ in edges:
        lines.append("4 " + " ".join(map(repr, np.exp(coupling * rng.normal(size=4)).tolist())))
    return "\n".join(lines) + "\n"


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
                            "exact", "feasible", "induced_width", "lower_bound", "gap",
                            "optimal", "non_finite"}
    assert figures["non_finite"] == {}
    assert figures["method"] == "exact" and figures["feasible"] is True
    # An exact answer is its own lower bound.
    assert figures["lower_bound"] == figures["energy"] and figures["gap"] == 0.0
    assert figures["optimal"] is True
    graph = read_uai(EXAMPLE)
    assert figures["energy"] == pytest.approx(graph.energy(figures["assignment"]), abs=1e-12)
    assert figures["energy"] == pytest.approx(6.048465202448768, abs=1e-9)  # the optimum
    assert read_map(out_file, graph).tolist() == figures["assignment"]
    assert "energy 6.048465202" in err and "exact (junction tree, induced width 2)" in err
    status, out, _ = run(capsys, "map", EXAMPLE)  # answer on stdout
    assert out.splitlines() == ["MAP", "14 " + " ".join(map(str, figures["assignment"]))]


def test_map_with_trws_reports_bound_and_gap(capsys):
    status, out, err = run(capsys, "map", EXAMPLE, "--method", "trws", "--json")
    assert status == 0
    figures = json.loads(out)
    graph = read_uai(EXAMPLE)
    assert figures["method"] == "trws" and figures["exact"] is False
    assert figures["energy"] == pytest.approx(graph.energy(figures["assignment"]), abs=1e-12)
    optimum = 6.048465202448768  # the junction tree's answer above
    assert figures["lower_bound"] <= optimum + 1e-9 <= figures["energy"] + 2e-9
    assert figures["gap"] == pytest.approx(figures["energy"] - figures["lower_bound"])
    assert figures["optimal"] is True  # a tight relaxation on this protein model
    assert "lower bound" in err and "gap" in err and "TRW-S, certified optimal" in err
    status, _, err = run(capsys, "mar", EXAMPLE, "--method", "trws")
    assert status == 2 and "method='trws'" in err


def test_mar_and_pr(capsys, model, tmp_path):
    path = model(CHAIN)
    status, out, err = run(capsys, "mar", path, "--json", "-o", tmp_path / "a.MAR")
    figures = json.loads(out)
    assert status == 0 and figures["converged"]
    assert set(figures) == {"marginals", "log_partition", "log10_Z", "converged", "n_iter",
                            "seconds", "method", "exact", "feasible", "induced_width",
                            "non_finite"}
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


def test_json_is_strict_null_and_a_flag_for_infinities(capsys, model, tmp_path):
    path = model(INFEASIBLE)
    status, out, _ = run(capsys, "pr", path, "--json", "-o", tmp_path / "x.PR")
    assert status == 0
    figures = strict_loads(out)
    assert figures["log_partition"] is None and figures["log10_Z"] is None
    assert figures["non_finite"] == {"log_partition": "-Infinity", "log10_Z": "-Infinity"}
    assert figures["feasible"] is False
    assert read_pr(tmp_path / "x.PR") == -math.inf  # the UAI answer file keeps -inf
    status, out, _ = run(capsys, "map", path, "--json")
    figures = strict_loads(out)
    assert figures["energy"] is None and figures["lower_bound"] is None
    assert figures["non_finite"] == {"energy": "Infinity", "lower_bound": "Infinity"}
    assert figures["gap"] == 0.0 and figures["optimal"] is True  # proven infeasible
    status, out, _ = run(capsys, "info", path, "--json")
    assert strict_loads(out)["non_finite"] == {}


def test_strict_json_names_every_non_finite_number():
    text = cli.strict_json({"a": 1.5, "marginals": [[0.5, math.nan], [-math.inf]],
                            "nested": {"b": math.inf}, "n": 3, "s": "x"})
    assert strict_loads(text) == {
        "a": 1.5, "marginals": [[0.5, None], [None]], "nested": {"b": None}, "n": 3,
        "s": "x", "non_finite": {"marginals[0][1]": "NaN", "marginals[1][0]": "-Infinity",
                                 "nested.b": "Infinity"}}


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


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        (["--max-iter", "1"], "estimate: try --damping 0.5\n"),
        (["--max-iter", "1", "--damping", "0.5"], "estimate: try a larger --tol\n"),
        (["--max-iter", "1", "--damping", "0", "--tol", "1e-12"], "estimate\n"),
        (["--max-iter=1", "--damp", "0.1", "--tol=1e-12"], "estimate\n"),  # abbreviations
    ],
)
def test_non_convergence_hint_skips_options_already_given(capsys, model, options, hint):
    _, _, err = run(capsys, "mar", model(TRIANGLE), "--method", "bp", "--schedule",
                    "parallel", *options)
    assert "did NOT converge" in err and err.endswith(hint), err


def test_non_convergence_hint_with_no_option_given():
    assert cli._convergence_hint(set()) == ": try --damping 0.5 or a larger --max-iter"
    assert cli._convergence_hint({"damping"}) == ": try a larger --max-iter"


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
        (["pr", "{good}", "--max-iter", "0", "--progress"], "max_iter must be an integer >= 1"),
        (["map", "{good}", "--method", "bp", "--schedule", "tree"], "needs a forest"),
        (["info", "{good}.txt"], "unknown model format"),
        (["frobnicate"], "invalid choice"),
        (["map"], "the following arguments are required: MODEL"),
        (["map", "{good}", "--beta", "2"], "unrecognized arguments: --beta 2"),
        (["pr", "{good}", "--beta", "inf"], "beta = inf is min-sum, which has no partition "
         "function or marginals; fgebm map finds"),
        (["mar", "{good}", "--beta", "Infinity"], "beta = inf is min-sum"),
        (["pr", "{good}", "--beta", "0"], "beta must be a finite number > 0, got '0'"),
        (["mar", "{good}", "--beta", "-1"], "beta must be a finite number > 0"),
        (["pr", "{good}", "--beta", "nan"], "beta must be a finite number > 0"),
        (["pr", "{good}", "--beta", "x"], "argument --beta: not a number: 'x'"),
        (["pr", "{good}", "--json", "-o", "-"], "--json and -o - both write to stdout"),
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
    """Real processes: the example's PR from its file and through a pipe, and a malformed
    file (exit 2, no traceback)."""
    done = subprocess.run(
        [sys.executable, "-m", "factorgraph_ebm", "pr", str(EXAMPLE), "--json"],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 0, done.stderr
    reference = read_pr(Path(f"{EXAMPLE}.PR"))
    assert json.loads(done.stdout)["log10_Z"] == pytest.approx(reference, abs=1e-9)
    done = subprocess.run(  # the model through a pipe, the answer to stdout
        [sys.executable, "-m", "factorgraph_ebm", "pr", "-", "-o", "-"],
        input=EXAMPLE.read_text(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "PR"
    assert float(done.stdout.split()[1]) == pytest.approx(reference, abs=1e-9)
    bad = tmp_path / "bad.uai"
    bad.write_text("MARKOV\n1\n2\n1\n1 0\n2\n0.5 -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "factorgraph_ebm", "map", str(bad)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:7: expected a potential" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- --version
def test_version_is_the_package_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out == f"fgebm (factorgraph-ebm) {factorgraph_ebm.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", factorgraph_ebm.__version__)


# --------------------------------------------------------------------------- stdin, stdout
def feed_stdin(monkeypatch, text):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (CHAIN, "m.uai"),
        ("c a comment line\n" + CHAIN.lower(), "m.uai"),  # UAI comments, lower-case preamble
        ("# libDAI comment\n2\n\n1\n7\n2\n2\n0 1\n1 2\n\n1\n3\n3\n3\n0 3\n1 2\n2 1\n", "m.fg"),
    ],
)
def test_model_from_stdin_answers_as_from_a_file(capsys, monkeypatch, model, text, name):
    path = model(text, name)
    _, from_file, _ = run(capsys, "mar", path, "--json")
    feed_stdin(monkeypatch, text)
    status, from_stdin, _ = run(capsys, "mar", "-", "--json")
    assert status == 0
    keep = ("marginals", "log_partition", "method")
    assert {k: json.loads(from_stdin)[k] for k in keep} == {
        k: json.loads(from_file)[k] for k in keep}
    feed_stdin(monkeypatch, text)
    status, out, _ = run(capsys, "info", "-", "--json")
    assert status == 0 and json.loads(out)["model"] == "<stdin>"


def test_model_from_stdin_errors_name_stdin(capsys, monkeypatch):
    feed_stdin(monkeypatch, "MARKOV\n2\n2 x\n")
    status, _, err = run(capsys, "map", "-")
    assert status == 2
    assert "fgebm: error: <stdin>:3: expected the cardinalities" in err
    assert "Traceback" not in err and "fgebm-" not in err  # no temporary path


def test_output_dash_writes_the_answer_to_stdout(capsys, model):
    path = model(CHAIN)
    _, to_stdout, _ = run(capsys, "pr", path)
    status, dash, _ = run(capsys, "pr", path, "-o", "-")
    assert status == 0 and dash == to_stdout and dash.startswith("PR\n")
    assert not Path("-").exists()


# --------------------------------------------------------------------------- --verbose references
CHAIN_MAP_FREE = [1, 0, 0]  # argmax of the product 2..6 x 6..1 over the chain's 12 states
CHAIN_MAP_X1_IS_2 = [1, 2, 0]


def chain_energy(states):
    first = np.arange(1, 7).reshape(2, 3)
    second = np.arange(6, 0, -1).reshape(3, 2)
    return -math.log(first[states[0], states[1]] * second[states[1], states[2]])


def test_hand_worked_chain_maps():
    """The MAP states below, by enumeration of the 12 configurations."""
    import itertools

    states = list(itertools.product(range(2), range(3), range(2)))
    assert list(min(states, key=chain_energy)) == CHAIN_MAP_FREE
    assert list(min((s for s in states if s[1] == 2), key=chain_energy)) == CHAIN_MAP_X1_IS_2


def test_verbose_compares_only_with_the_evidence_the_reference_assumes(capsys, model, tmp_path):
    path = model(CHAIN)
    Path(path + ".MAP").write_text("MAP\n3 " + " ".join(map(str, CHAIN_MAP_X1_IS_2)) + "\n")
    Path(path + ".evid").write_text("1 1 2\n")
    # Without --evid the run has no evidence: no comparison, and the way to get one.
    _, _, err = run(capsys, "map", path, "--verbose")
    assert (f"reference m.uai.MAP not compared: it is for the evidence in m.uai.evid "
            f"(1 observed), this run has none; rerun with --evid {path}.evid") in err
    assert not re.search(r"reference m\.uai\.MAP[^\n]*: energy", err)  # no comparison
    # With the reference's evidence: compared, and said so.
    _, _, err = run(capsys, "map", path, "--verbose", "--evid", path + ".evid")
    energy = chain_energy(CHAIN_MAP_X1_IS_2)
    assert f"reference m.uai.MAP (evidence of m.uai.evid): energy {energy:.10g}, gap 0" in err
    # Other evidence: not compared.
    (tmp_path / "other.evid").write_text("1 1 0\n")
    _, _, err = run(capsys, "map", path, "--verbose", "--evid", tmp_path / "other.evid")
    assert "not compared: it is for the evidence in m.uai.evid (1 observed), this run has " \
           "other evidence (1 observed)" in err
    # A MODEL.evid without evidence (UAI's "0") and a run without: compared.
    Path(path + ".evid").write_text("0\n")
    Path(path + ".MAP").write_text("MAP\n3 " + " ".join(map(str, CHAIN_MAP_FREE)) + "\n")
    _, _, err = run(capsys, "map", path, "--verbose")
    assert f"reference m.uai.MAP: energy {chain_energy(CHAIN_MAP_FREE):.10g}, gap 0" in err
    # No MODEL.evid at all: the reference is for no evidence.
    Path(path + ".evid").unlink()
    (tmp_path / "e.evid").write_text("1 1 2\n")
    _, _, err = run(capsys, "map", path, "--verbose", "--evid", tmp_path / "e.evid")
    assert ("reference m.uai.MAP not compared: it is for no evidence (m.uai.evid is absent), "
            "this run has other evidence (1 observed); rerun without --evid") in err


PROMEDUS = ROOT.parent / "shared" / "data" / "uai" / "Promedus_11.uai"


@pytest.mark.skipif(not PROMEDUS.exists(), reason="../shared/data/uai is absent")
def test_promedus_reference_needs_its_evidence(capsys):
    """The issue's case: without --evid the MAP 'gap' was -21.1 (another problem's answer)."""
    _, _, err = run(capsys, "map", PROMEDUS, "--verbose")
    assert "Promedus_11.uai.MAP not compared: it is for the evidence in " \
           "Promedus_11.uai.evid (8 observed), this run has none" in err
    _, _, err = run(capsys, "map", PROMEDUS, "--verbose", "--evid", f"{PROMEDUS}.evid")
    assert re.search(r"reference Promedus_11\.uai\.MAP \(evidence of Promedus_11\.uai\.evid\): "
                     r"energy \S+, gap (0|-?\d\.\d+e-1\d)\n", err), err


# --------------------------------------------------------------------------- progress
def count_bp_calls(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("max_iter"))
        return factorgraph_ebm.belief_propagation(*args, **kwargs)

    monkeypatch.setattr(cli, "belief_propagation", counted)
    return calls


def every_chunk_one_iteration(monkeypatch):
    """The bar at once, and BP's chunks of one iteration each (so one report per
    iteration)."""
    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(_pacing, "CHUNK_SECONDS", 0.0)


def test_progress_shows_iterations_and_residual_on_stderr(capsys, monkeypatch, model):
    every_chunk_one_iteration(monkeypatch)
    path = model(grid_uai(seed=3))
    status, out, err = run(capsys, "mar", path, "--method", "bp", "--schedule", "parallel",
                           "--max-iter", "12", "--progress", "--json")
    assert status == 0 and not json.loads(out)["converged"]
    lines = err.replace("\r", "\n")
    assert re.search(r"fgebm BP: 100%.* 12/12 .*residual \d", lines), lines
    status, out, err = run(capsys, "mar", path, "--method", "bp", "--damping", "0.3",
                           "--max-iter", "500", "--progress", "--json")
    figures = json.loads(out)
    assert figures["converged"] and figures["n_iter"] < 500
    # A bar that stops early says why.
    assert re.search(rf" {figures['n_iter']}/500 .*converged, residual \d", err), err


def test_progress_only_on_a_terminal_or_when_asked(capsys, monkeypatch, model):
    every_chunk_one_iteration(monkeypatch)
    path = model(grid_uai(seed=3))
    calls = count_bp_calls(monkeypatch)
    argv = ["mar", path, "--method", "bp", "--schedule", "parallel", "--max-iter", "6"]
    _, _, err = run(capsys, *argv)  # stderr is not a terminal here
    assert calls == [6] and "fgebm BP" not in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    calls.clear()
    _, _, err = run(capsys, *argv)
    assert calls == [6] and re.search(r"fgebm BP: 100%.* 6/6 ", err.replace("\r", "\n"))
    calls.clear()
    _, _, err = run(capsys, *argv, "--no-progress")
    assert calls == [6] and "fgebm BP" not in err


def test_progress_leaves_exact_runs_without_a_bar(capsys, monkeypatch):
    every_chunk_one_iteration(monkeypatch)
    calls = count_bp_calls(monkeypatch)
    status, out, err = run(capsys, "pr", EXAMPLE, "--progress", "--json")
    assert status == 0 and json.loads(out)["method"] == "exact"
    assert len(calls) == 1 and "fgebm BP" not in err
