"""UAI formats: models, evidence and answers; round trips; one error test per bad input."""

import io
import itertools
import math
import re
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from roundtrip import (
    ROUND_TRIP,
    assert_same_energies,
    assert_written_up_to_offsets,
    lowest_finite,
)

from factorgraph_ebm import FactorGraph, FactorGraphError
from factorgraph_ebm.io import (
    MAX_ENERGY_SPREAD,
    ModelFileError,
    read_evidence,
    read_evidence_samples,
    read_map,
    read_mar,
    read_model,
    read_pr,
    read_uai,
    write_evidence,
    write_map,
    write_mar,
    write_pr,
    write_uai,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uai"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"UAI data folder {DATA} not found (../shared/data/uai)"
)
MODELS = sorted(DATA.glob("*.uai")) if DATA.is_dir() else []

SMALL = """MARKOV
3
2 3 2
2
2 0 1
1 2

6
0.1 0.2 0.3
0.4 0.5 0.6
2
0 1.5
"""


def write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_same_model(actual: FactorGraph, expected: FactorGraph) -> None:
    """Same variables and scopes, and the same energies factor by factor: ``+inf`` at the
    same entries, finite energies within the tolerance of an exp/log round trip (see
    roundtrip.py: NumPy's exp and log differ in the last bit between CPUs)."""
    ca, cb = actual.compile(), expected.compile()
    assert actual.variables == expected.variables
    for key in ("n_states", "scope_ptr", "scope_vars", "table_offset"):
        np.testing.assert_array_equal(getattr(ca, key), getattr(cb, key), err_msg=key)
    assert_same_energies(ca.energies, cb.energies, "energies")


def written_potentials(text: str) -> np.ndarray:
    """Every table entry of a ``MARKOV`` file, in file order (one whitespace-separated
    layout, as ``write_uai`` writes it)."""
    tokens = text.split()
    n_vars = int(tokens[1])
    n_factors = int(tokens[2 + n_vars])
    at = 3 + n_vars
    for _ in range(n_factors):  # the scopes
        at += 1 + int(tokens[at])
    values = []
    for _ in range(n_factors):
        size = int(tokens[at])
        values.extend(float(token) for token in tokens[at + 1 : at + 1 + size])
        at += 1 + size
    assert at == len(tokens)
    return np.array(values)


def approx_energy(value: float):
    """``value`` within the tolerance of an energy read as ``-ln(potential)``: NumPy's log
    (the reader) and ``math.log`` (the expected value) may differ in the last bits."""
    return pytest.approx(value, rel=ROUND_TRIP["rtol"], abs=ROUND_TRIP["atol"])


# --------------------------------------------------------------------------- models
def test_read_uai_c_order_names_and_zero_potential(tmp_path):
    graph = read_uai(write(tmp_path, "small.uai", SMALL))
    assert graph.variables == [0, 1, 2]
    assert graph.n_states.tolist() == [2, 3, 2]
    assert graph.factor_scope(0) == (0, 1)
    table = graph.factor_energies(0)
    assert table.shape == (2, 3)
    # last scope variable fastest: entry (x0=1, x1=0) is the 4th number
    assert table[1, 0] == approx_energy(-math.log(0.4))
    assert table[0, 2] == approx_energy(-math.log(0.3))
    assert_same_energies(graph.factor_energies(1), [math.inf, -math.log(1.5)])
    assert graph.energy([0, 1, 1]) == approx_energy(-math.log(0.2) - math.log(1.5))


def test_read_uai_bayes_network_is_normalised(tmp_path):
    text = "BAYES\n2\n2 2\n2\n1 0\n2 0 1\n2 0.3 0.7\n4 0.9 0.1 0.2 0.8\n"
    graph = read_uai(write(tmp_path, "bn.uai", text))
    states = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert np.exp(-graph.energy(states)).sum() == pytest.approx(1.0)
    assert graph.energy([1, 0]) == pytest.approx(-math.log(0.7 * 0.2))


def test_read_uai_comments_constant_factor_and_free_layout(tmp_path):
    text = "c a comment line (UAI 2016)\nMARKOV 2 2 2 2 0 2 0 1\n  c another\n1 2.0 4 1 2 3 4"
    graph = read_uai(write(tmp_path, "flat.uai", text))
    assert graph.factor_scope(0) == ()
    assert graph.energy([1, 1]) == pytest.approx(-math.log(2.0) - math.log(4.0))


def test_hash_starts_a_comment_anywhere_on_a_line(tmp_path):
    """pyAgrum's layout (pyAgrum 3.3 writes ``# name`` after scopes and counts): text from
    '#' to the end of the line is skipped; the model equals the same file without it."""
    commented = (
        "MARKOV\n3 # nbr Nodes\n2 3 2 \n2 # nbr Factors \n2 0 1   # a b\n1 2 #c\n\n"
        "6 # {0, 1}\n  0.1 0.2 0.3 \n  0.4 0.5 0.6 \n#\n2 # {2}\n0 1.5#no space\n"
    )
    assert_same_model(read_uai(write(tmp_path, "hash.uai", commented)),
                      read_uai(write(tmp_path, "plain.uai", SMALL)))
    # a comment cannot hide a truncated table: the error names the line after it
    truncated = "MARKOV\n1\n2\n1\n1 0\n2 0.5 # 0.5\n"
    with pytest.raises(ModelFileError, match=r"bad\.uai:6: expected the table of factor 0 "
                                             r"\(2 numbers\), found end of file after 1"):
        read_uai(write(tmp_path, "bad.uai", truncated))


def test_read_model_dispatches_on_extension(tmp_path):
    assert read_model(write(tmp_path, "m.UAI", SMALL)).n_variables == 3
    with pytest.raises(FactorGraphError, match=r"unknown model format '\.txt'"):
        read_model(write(tmp_path, "m.txt", SMALL))


@needs_data
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_every_data_model_round_trips(path, tmp_path):
    graph = read_uai(path)
    out = tmp_path / "copy.uai"
    offsets = write_uai(out, graph)
    # The text is exact: the potentials written are exp(-(E - c)), c the factor's lowest
    # finite energy, to the last bit (repr) ...
    cg = graph.compile()
    shifts = np.repeat([lowest_finite(graph.factor_energies(a)) for a in range(cg.n_factors)],
                       np.diff(cg.table_offset))
    np.testing.assert_array_equal(written_potentials(out.read_text()),
                                  np.exp(-(cg.energies - shifts)))
    # ... and reading them back gives E - c within a few ulps (exp and log).
    again = read_uai(out)
    assert again.variables == graph.variables
    assert_written_up_to_offsets(again, graph, offsets)
    assert again.n_factors == graph.n_factors


def test_written_model_differs_by_the_returned_constant(tmp_path):
    """E(y) = E_file(y) + sum(offsets) for every y, and ln Z = ln Z_file - beta * sum at
    any beta: by enumeration, on a model whose energies no potential exp(-E) could hold."""
    rng = np.random.default_rng(3)
    graph = FactorGraph()
    graph.add_variables(range(4), [2, 3, 2, 3])
    graph.add_factor([0, 1], rng.uniform(800.0, 1400.0, (2, 3)))
    graph.add_factor([1, 2, 3], rng.uniform(-2000.0, -1500.0, (3, 2, 3)))
    graph.add_factor([3], [np.inf, 5.0, np.inf])
    graph.add_factor([], 1e6)
    offsets = write_uai(tmp_path / "m.uai", graph)
    again = read_uai(tmp_path / "m.uai")
    states = np.array(list(itertools.product(*[range(k) for k in (2, 3, 2, 3)])))
    constant = float(np.sum(offsets))
    # Energies near 1e6 carry ulps of 1e-10: compare relative to that scale.
    e, e_file = graph.energy(states), again.energy(states)
    finite = np.isfinite(e)
    np.testing.assert_array_equal(np.isfinite(e_file), finite)
    np.testing.assert_allclose(e_file[finite] + constant, e[finite], rtol=0, atol=1e-14 * 1e6)
    for beta in (1.0, 0.25):
        def log_z(energies, beta=beta):
            low = energies[np.isfinite(energies)].min()
            return -beta * low + math.log(np.exp(-beta * (energies[np.isfinite(energies)] - low)
                                                 ).sum())
        assert log_z(e_file) - beta * constant == pytest.approx(log_z(e), rel=1e-14)


def test_write_uai_to_a_stream():
    graph = FactorGraph()
    graph.add_variables([0, 1], 2)
    graph.add_factor([0, 1], [[0.0, np.inf], [1.0, 2.0]])
    buffer = io.StringIO()
    assert write_uai(buffer, graph).tolist() == [0.0]
    assert buffer.getvalue().startswith("MARKOV\n2\n2 2\n1\n2 0 1\n")
    assert "1.0 0.0 " in buffer.getvalue()  # energy 0: potential 1; +inf energy: potential 0


@pytest.mark.parametrize("table", [
    [800.0, 801.5, np.inf], [-1000.0, -999.0, -300.0], [740.0, 741.0, 743.0],
    [0.0, 700.0, 708.3], [1e300, 1e300, np.inf],
], ids=str)
def test_energies_past_the_exp_limits_round_trip(table, tmp_path):
    """Energies far past exp's range (exp(-800) is 0, exp(1000) overflows; 740-743 were
    subnormals that read back as 739.997-743.054): each table is written shifted by its
    lowest finite energy and reads back within ROUND_TRIP, up to that returned shift."""
    graph = FactorGraph()
    graph.add_variables(["a"], 3)
    graph.add_factor(["a"], table)
    offsets = write_uai(tmp_path / "m.uai", graph)
    assert_written_up_to_offsets(read_uai(tmp_path / "m.uai"), graph, offsets)
    assert offsets.tolist() == [min(table)]


@pytest.mark.parametrize("table", [[0.0, 709.0], [3.0, 743.0], [-1e300, 1e300]], ids=str)
def test_writer_refuses_a_spread_no_normal_potential_holds(table):
    """Within one factor, finite energies more than MAX_ENERGY_SPREAD (708.39...) above the
    lowest have a subnormal or zero potential: an error naming the factor, never a file
    that reads back another model."""
    assert MAX_ENERGY_SPREAD == pytest.approx(-math.log(np.finfo(np.float64).tiny), rel=1e-15)
    assert 708.39 < MAX_ENERGY_SPREAD < 708.40
    graph = FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor(["b"], [0.0, 1.0])
    graph.add_factor(["a"], table)
    with pytest.raises(FactorGraphError, match=r"^factor 1: energy .* at table entry 1 is more "
                                               r"than 708\.396 above the factor's lowest"):
        write_uai(io.StringIO(), graph)


def test_large_single_line_table_is_streamed(tmp_path):
    """A 2**20-entry table on one line: parsed in numpy chunks, not a list of tokens."""
    k = 20
    values = np.random.default_rng(0).random(2**k) + 0.5
    text = (
        f"MARKOV\n{k}\n{' '.join(['2'] * k)}\n1\n{k} {' '.join(map(str, range(k)))}\n"
        f"{2**k} {' '.join(map(repr, values.tolist()))}\n"
    )
    path = write(tmp_path, "big.uai", text)
    tracemalloc.start()
    started = time.perf_counter()
    graph = read_uai(path)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the text is exact (repr), the energies pass through NumPy's log: see roundtrip.py
    assert_same_energies(graph.factor_energies(0).ravel(), -np.log(values))
    # Not a benchmark (a second or two here): a bound that only a pathological (e.g. quadratic)
    # parse exceeds, even on one loaded core.
    assert seconds < 120, seconds
    # the line (20 MB of text) and a few float64 copies (8 MB each): ~48 MB; splitting
    # the line into a list of 2**20 token strings alone would take ~78 MB more
    assert peak < 1.2 * len(text) + 4 * values.nbytes


# --------------------------------------------------------------------------- evidence
def test_read_evidence_both_layouts(tmp_path):
    graph = read_uai(write(tmp_path, "small.uai", SMALL))
    assert read_evidence(write(tmp_path, "a.evid", "2 0 1 2 0\n"), graph) == {0: 1, 2: 0}
    assert read_evidence(write(tmp_path, "b.evid", "1\n2 0 1 2 0\n"), graph) == {0: 1, 2: 0}
    assert read_evidence(write(tmp_path, "c.evid", "0"), graph) == {}
    multi = write(tmp_path, "d.evid", "2\n1 0 1\n2 1 2 2 1\n")  # older layout, 2 samples
    assert read_evidence_samples(multi, graph) == [{0: 1}, {1: 2, 2: 1}]
    with pytest.raises(ModelFileError, match=r"d\.evid:1: .*found 2 .*read_evidence_samples"):
        read_evidence(multi, graph)


def test_write_evidence_round_trip(tmp_path):
    graph = FactorGraph()
    graph.add_variables(["a", "b", "c"], 3)
    path = tmp_path / "e.evid"
    write_evidence(path, {"c": 2, "a": 0}, graph)
    assert path.read_text() == "2 2 2 0 0\n"
    assert read_evidence(path) == {2: 2, 0: 0}
    write_evidence(path, {})
    assert read_evidence(path) == {}
    with pytest.raises(FactorGraphError, match="keys must be variable indices"):
        write_evidence(path, {"a": 1})


# --------------------------------------------------------------------------- answers
def test_answer_round_trips(tmp_path):
    write_map(tmp_path / "x.MAP", [1, 0, 2])
    assert (tmp_path / "x.MAP").read_text() == "MAP\n3 1 0 2\n"
    assert read_map(tmp_path / "x.MAP").tolist() == [1, 0, 2]
    marginals = [np.array([0.25, 0.75]), np.array([0.1, 0.2, 0.7])]
    write_mar(tmp_path / "x.MAR", marginals)
    for got, want in zip(read_mar(tmp_path / "x.MAR"), marginals, strict=True):
        np.testing.assert_array_equal(got, want)
    for value in (-2.160408167307231, -math.inf):
        write_pr(tmp_path / "x.PR", value)
        assert read_pr(tmp_path / "x.PR") == value


@needs_data
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_every_data_answer_and_evidence_file_reads(path):
    graph = read_uai(path)
    evid = Path(f"{path}.evid")
    evidence = read_evidence(evid, graph) if evid.exists() else {}
    assert read_map(Path(f"{path}.MAP"), graph).shape == (graph.n_variables,)
    assert math.isfinite(read_pr(Path(f"{path}.PR")))
    mar = Path(f"{path}.MAR")
    if mar.exists():
        marginals = read_mar(mar, graph)
        for i, state in evidence.items():
            assert marginals[i][state] == pytest.approx(1.0)


# --------------------------------------------------------------------------- errors
MODEL_ERRORS = {  # kind: (file content, line of the error, message after "file:line: ")
    "preamble": (
        "MARKOF\n1\n2\n0\n", 1, "expected the preamble MARKOV or BAYES, found 'MARKOF'"
    ),
    "non-integer count": (
        "MARKOV\n2.5\n", 2, r"expected the number of variables \(an integer >= 0\), found '2\.5'"
    ),
    "negative count": (
        "MARKOV\n2\n2 2\n-1\n", 4, r"expected the number of factors \(an integer >= 0\), found '-1'"
    ),
    "zero cardinality": (
        "MARKOV\n2\n2\n0\n0\n", 4, r"expected the cardinality of variable 1 .*found 0"
    ),
    "unknown variable": (
        "MARKOV\n2\n2 2\n1\n2 0 2\n4 1 1 1 1\n", 5,
        r"expected the variables of factor 0 to be indices in 0\.\.1, found 2",
    ),
    "variable twice": (
        "MARKOV\n2\n2 2\n1\n2 1 1\n4 1 1 1 1\n", 5,
        "expected distinct variables in the scope of factor 0, found 1 twice",
    ),
    "wrong table size": (
        "MARKOV\n2\n2 2\n1\n2 0 1\n\n3\n1 1 1\n", 7,
        r"expected table size 4 for factor 0 \(cardinalities 2x2\), found 3",
    ),
    "negative potential": (
        "MARKOV\n1\n2\n1\n1 0\n2\n0.5\n-0.5\n", 8,
        r"expected a potential .* at entry 1 of the table of factor 0, found -0\.5",
    ),
    "nan potential": (
        "MARKOV\n1\n2\n1\n1 0\n2\n0.5 nan\n", 7, "expected a potential .*, found nan"
    ),
    "infinite potential": (
        "MARKOV\n1\n2\n1\n1 0\n2\n0.5 1e999\n", 7, "expected a potential .*, found inf"
    ),
    "garbage token": (
        "MARKOV\n1\n2\n1\n1 0\n2\n0.5 0.5x\n", 7,
        r"expected the table of factor 0 \(a number\), found '0\.5x'",
    ),
    "truncated table": (
        "MARKOV\n1\n2\n1\n1 0\n2\n0.5\n", 7,
        r"expected the table of factor 0 \(2 numbers\), found end of file after 1",
    ),
    "truncated scopes": (
        "MARKOV\n1\n2\n2\n1 0\n", 5,
        "expected the number of variables in the scope of factor 1, found end of file",
    ),
    "count disagrees with data": (
        "MARKOV\n1\n2\n1\n1 0\n2 1 1\n2 1 1\n", 7,
        "expected end of file after the 1 tables, found '2'",
    ),
    "integer overflow": (
        "MARKOV\n1\n99999999999999999999\n", 3,
        r"expected the cardinalities of the 1 variables \(an integer\), found '9+'",
    ),
    "not utf-8": (
        b"MARKOV\n1\n2\n1\n1 0\n2\n0.5 \xff\n", 7,
        "expected the table of factor 0 \\(a number\\), found '\ufffd'",
    ),
    "empty file": ("", 1, "expected the preamble MARKOV or BAYES, found end of file"),
}


@pytest.mark.parametrize("case", MODEL_ERRORS, ids=str)
def test_model_error_messages(case, tmp_path):
    text, line, message = MODEL_ERRORS[case]
    path = tmp_path / "bad.uai"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        read_uai(path)


def test_zero_potential_is_legal(tmp_path):
    graph = read_uai(write(tmp_path, "z.uai", "MARKOV\n1\n2\n1\n1 0\n2\n0 0\n"))
    assert graph.factor_energies(0).tolist() == [math.inf, math.inf]


EVIDENCE_ERRORS = {
    "variable out of range": (
        "1 3 0\n", 1, r"expected a variable index in 0\.\.2 in evidence pair 0, found 3"
    ),
    "state out of range": (
        "1\n0\n2\n", 3, r"expected a state in 0\.\.1 for observed variable 0, found 2"
    ),
    "negative state": (
        "1 0 -1", 1, r"expected a state in 0\.\.1 for observed variable 0, found -1"
    ),
    "count disagrees": (
        "2 0 1\n", 1,
        r"expected 2 observed variables, then 4 integers .*, found 2 integers after the count",
    ),
    "negative count": (
        "-1\n", 1, r"expected the number of observed variables \(an integer >= 0\), found -1"
    ),
    "variable twice": (
        "2 0 1\n0 1\n", 2, "expected each variable observed once, found variable 0 again"
    ),
    "not an integer": ("1 0 1.0", 1, r"expected evidence integers \(an integer\), found '1\.0'"),
    "empty": ("\n", 1, "expected the number of observed variables .*, found end of file"),
}


@pytest.mark.parametrize("case", EVIDENCE_ERRORS, ids=str)
def test_evidence_error_messages(case, tmp_path):
    graph = read_uai(write(tmp_path, "small.uai", SMALL))
    text, line, message = EVIDENCE_ERRORS[case]
    path = write(tmp_path, "bad.evid", text)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        read_evidence(path, graph)


ANSWER_ERRORS = {
    "MAP header": (read_map, "MPA\n1 0\n", 1, "expected the header MAP or MPE, found 'MPA'"),
    "MAP count": (read_map, "MAP\n2 0 1\n", 2, "expected 3 variables .*found 2"),
    "MAP state": (
        read_map, "MAP\n3 0 3 1\n", 2,
        r"expected the state of variable 1 \(an integer in 0\.\.2\), found 3",
    ),
    "MAP extra": (
        read_map, "MAP\n3 0 0 0 0\n", 2, "expected end of file after the 3 states, found '0'"
    ),
    "MAR cardinality": (
        read_mar, "MAR\n3 2 .5 .5 2 .5 .5\n", 2,
        r"expected the cardinality of variable 1 \(an integer in 3\.\.3\), found '2'",
    ),
    "MAR probability": (
        read_mar, "MAR\n3 2 .5 1.5\n", 2,
        r"expected probabilities in \[0, 1\] for variable 0, found 1\.5",
    ),
    "MAR truncated": (
        read_mar, "MAR\n3 2 .5 .5 3 .5\n", 2,
        r"expected the 3 probabilities of variable 1 \(3 numbers\), found end of file after 1",
    ),
    "PR nan": (read_pr, "PR\nnan\n", 2, r"expected log10 Z \(a number or -inf\), found nan"),
    "PR missing": (read_pr, "PR\n", 1, r"expected log10 Z \(1 number\), found end of file after 0"),
}


@pytest.mark.parametrize("case", ANSWER_ERRORS, ids=str)
def test_answer_error_messages(case, tmp_path):
    graph = read_uai(write(tmp_path, "small.uai", SMALL))
    reader, text, line, message = ANSWER_ERRORS[case]
    path = write(tmp_path, "bad.answer", text)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        reader(path) if reader is read_pr else reader(path, graph)
