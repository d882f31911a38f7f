"""libDAI ``.fg`` format: index order, reference values of libDAI's test files, round trips
with ``.uai``, one error test per bad input."""

import io
import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from roundtrip import assert_same_energies, assert_written_up_to_offsets

from factorgraph_ebm import FactorGraph, min_sum, sum_product
from factorgraph_ebm.io import ModelFileError, read_fg, read_model, read_uai, write_fg, write_uai
from factorgraph_ebm.io.fg import MAX_FILE_ENTRIES

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FG = SHARED / "libdai_fg"
UAI = SHARED / "uai"
needs_fg = pytest.mark.skipif(
    not FG.is_dir(), reason=f"libDAI data folder {FG} not found (../shared/data/libdai_fg)"
)
FG_FILES = sorted(FG.rglob("*.fg")) if FG.is_dir() else []
UAI_FILES = sorted(UAI.glob("*.uai")) if UAI.is_dir() else []


@pytest.fixture(scope="module")
def expected():
    if not FG.is_dir():
        pytest.skip(f"libDAI data folder {FG} not found")
    return json.loads((FG / "expected_values.json").read_text())


def brute_force(graph: FactorGraph):
    """All configurations (rows, variable index order) and their energies."""
    states = np.array(list(itertools.product(*[range(k) for k in graph.n_states.tolist()])))
    return states, graph.energy(states)


def exact_log_partition(energies: np.ndarray) -> float:
    low = energies.min()
    return float(-low + np.log(np.exp(-(energies - low)).sum()))


# --------------------------------------------------------------------------- index order
def test_first_variable_changes_fastest(tmp_path):
    """libDAI lists entries with the FIRST variable fastest; C order is the opposite."""
    path = tmp_path / "order.fg"
    path.write_text("1\n\n2\n7 3\n2 3\n5\n0 1\n1 2\n2 3\n3 4\n5 6\n")
    graph = read_fg(path)
    assert graph.variables == [3, 7]  # named by label, ordered by label
    assert graph.factor_scope(0) == (7, 3)  # scope in file order
    table = graph.factor_energies(0)
    assert table.shape == (2, 3)
    # linear index = x7 + 2 * x3
    for x7, x3 in itertools.product(range(2), range(3)):
        potential = {0: 1, 1: 2, 2: 3, 3: 4, 5: 6}.get(x7 + 2 * x3, 0)
        want = -math.log(potential) if potential else math.inf
        # -ln by NumPy (the reader) and by math.log may differ in the last bits
        assert_same_energies([table[x7, x3], graph.energy({7: x7, 3: x3})], [want, want])


def test_comments_and_constant_factor(tmp_path):
    path = tmp_path / "c.fg"
    path.write_text("# a comment\n2\n\n# another\n0\n\n\n1\n0 2.5\n\n1\n4\n3\n1\n2 0.5\n")
    graph = read_fg(path)
    assert graph.factor_scope(0) == ()
    assert graph.energy([2]) == pytest.approx(-math.log(2.5) - math.log(0.5))
    assert graph.energy([0]) == math.inf


# --------------------------------------------------------------------------- libDAI values
@needs_fg
def test_testfast_bethe_log_partition_matches_libdai(expected):
    """libDAI's BP on testfast.fg: ln Z error +7.187e-04 against exact ln Z 14.328233."""
    graph = read_fg(FG / "testfast.fg")
    result = sum_product(graph, method="bp", schedule="sequential", tol=1e-12, max_iter=10000)
    assert result.converged
    assert abs(result.log_partition - 14.328952) < 1e-6
    assert abs(result.log_partition - (14.328233 + 7.187e-4)) < 1e-6
    exact = expected["testfast.fg"]
    assert result.log_partition == pytest.approx(
        exact["loopy_bp_sumproduct_bethe_logZ_flooding_undamped_300it"], abs=1e-9
    )
    # libDAI's own output: the BP line and its marginals (4 significant digits)
    lines = (FG / "testfast.out").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["BP"])
    max_var_err, logz_err = float(lines[start].split()[1]), float(lines[start].split()[5])
    assert result.log_partition - exact["exact_logZ"] == pytest.approx(logz_err, abs=5e-8)
    marginals = np.array(result.marginals)
    exact_marginals = np.array([exact["exact_marginals"][str(v)] for v in graph.variables])
    assert np.abs(marginals - exact_marginals).max() == pytest.approx(max_var_err, abs=5e-7)
    libdai = np.array(
        [[float(p) for p in re.findall(r"[-+0-9.e]+(?=[,)])", line.split("}")[1])]
         for line in lines[start + 1 : start + 1 + graph.n_variables]]
    )
    np.testing.assert_allclose(marginals, libdai, atol=5e-5)


@needs_fg
@pytest.mark.parametrize("name", ["testfast.fg", "hoi1.fg", "twofactors.fg", "maxprodbug.fg",
                                  "jtreemapbug.fg"])
def test_reader_matches_brute_force_expected_values(name, expected):
    """Exact ln Z, marginals and MAP by enumeration: checks the reader's index order."""
    graph = read_fg(FG / name)
    want = expected[name]
    assert {str(v): int(k) for v, k in zip(graph.variables, graph.n_states, strict=True)} == \
        want["variables"]
    assert graph.n_factors == want["n_factors"]
    states, energies = brute_force(graph)
    assert exact_log_partition(energies) == pytest.approx(want["exact_logZ"], abs=1e-9)
    p = np.exp(-(energies - energies.min()))
    p /= p.sum()
    for i, v in enumerate(graph.variables):
        marginal = np.bincount(states[:, i], weights=p, minlength=graph.n_states[i])
        np.testing.assert_allclose(marginal, want["exact_marginals"][str(v)], atol=1e-9)
    assert energies.min() == pytest.approx(-want["max_log_score"], abs=1e-9)
    assert np.isclose(energies, energies.min(), rtol=0, atol=1e-12).sum() == \
        want["n_tied_MAP_configurations"]


@needs_fg
@pytest.mark.parametrize("name", ["twofactors.fg", "jtreemapbug.fg"])
def test_forests_are_exact(name, expected):
    graph = read_fg(FG / name)
    assert graph.is_forest()
    want = expected[name]
    result = sum_product(graph)
    assert result.exact
    assert result.log_partition == pytest.approx(want["exact_logZ"], abs=1e-9)
    for v, marginal in zip(graph.variables, result.marginals, strict=True):
        np.testing.assert_allclose(marginal, want["exact_marginals"][str(v)], atol=1e-9)
    assert min_sum(graph).energy == pytest.approx(-want["max_log_score"], abs=1e-9)
    if name == "twofactors.fg":
        assert len(graph.connected_components()) == 2
        decoded = min_sum(graph).assignment_dict()
        assert {str(v): s for v, s in decoded.items()} == want["one_MAP_configuration"]


@needs_fg
@pytest.mark.parametrize("name", ["maxprodbug.fg", "jtreemapbug.fg"])
def test_tied_maps_decode_to_a_true_minimum(name):
    """Two tied optima: the decoded assignment is one of them, never a mix of the two."""
    graph = read_fg(FG / name)
    states, energies = brute_force(graph)
    minima = {tuple(row) for row in states[np.isclose(energies, energies.min(), atol=1e-12)]}
    assert len(minima) == 2
    for schedule in ("auto", "parallel", "sequential"):
        result = min_sum(graph, schedule=schedule)
        assert tuple(result.assignment.tolist()) in minima
        assert result.energy == pytest.approx(energies.min(), abs=1e-12)


@needs_fg
def test_hoi1_loopy_bethe_matches_flooding_reference(expected):
    graph = read_fg(FG / "hoi1.fg")
    assert not graph.is_forest()
    result = sum_product(graph, method="bp", schedule="parallel", tol=1e-12, max_iter=300)
    want = expected["hoi1.fg"]
    assert result.log_partition == pytest.approx(
        want["loopy_bp_sumproduct_bethe_logZ_flooding_undamped_300it"], abs=1e-6
    )
    for v, marginal in zip(graph.variables, result.marginals, strict=True):
        np.testing.assert_allclose(marginal, want["loopy_bp_beliefs"][str(v)], atol=1e-6)


# --------------------------------------------------------------------------- round trips
@needs_fg
@pytest.mark.parametrize("path", FG_FILES, ids=lambda p: p.name)
def test_fg_round_trips_through_fg_and_uai(path, tmp_path):
    graph = read_model(path)
    offsets = write_fg(tmp_path / "copy.fg", graph)
    again = read_fg(tmp_path / "copy.fg")
    assert again.variables == graph.variables
    assert again.n_factors == graph.n_factors
    assert_written_up_to_offsets(again, graph, offsets)
    assert f"sum of the c: {float(np.sum(offsets))!r}\n" in (tmp_path / "copy.fg").read_text()
    offsets = write_uai(tmp_path / "copy.uai", graph)
    as_uai = read_uai(tmp_path / "copy.uai")
    assert as_uai.variables == list(range(graph.n_variables))  # labels become indices
    assert as_uai.n_factors == graph.n_factors
    assert_written_up_to_offsets(as_uai, graph, offsets)


@pytest.mark.skipif(not UAI_FILES, reason=f"UAI data folder {UAI} not found")
@pytest.mark.parametrize("path", UAI_FILES, ids=lambda p: p.name)
def test_uai_round_trips_through_fg(path, tmp_path):
    """Every energy survives .uai -> .fg -> .uai, +inf (unlisted entries) included, up to
    the per-factor shifts the writers return."""
    graph = read_uai(path)
    offsets = write_fg(tmp_path / "m.fg", graph)
    via_fg = read_fg(tmp_path / "m.fg")
    assert via_fg.variables == graph.variables
    assert_written_up_to_offsets(via_fg, graph, offsets)
    # a variable in no factor comes back with a factor of energy 0 (a .fg file knows
    # variables only through factors)
    isolated = np.flatnonzero(np.diff(graph.compile().var_edge_ptr) == 0).tolist()
    extra = range(graph.n_factors, via_fg.n_factors)
    assert [via_fg.factor_scope(f) for f in extra] == [(v,) for v in isolated]
    assert all(not via_fg.factor_energies(f).any() for f in extra)  # -ln(1.0) is exactly 0
    # Written tables have their lowest finite energy at 0 (potential 1.0, read as -0.0):
    # the second write shifts by 0.
    offsets = write_uai(tmp_path / "back.uai", via_fg)
    assert not np.any(offsets)
    assert_written_up_to_offsets(read_uai(tmp_path / "back.uai"), via_fg, offsets)


def test_write_fg_labels_and_stream():
    graph = FactorGraph()
    graph.add_variables(["a", "b"], [2, 3])
    graph.add_factor(["b", "a"], np.arange(6.0).reshape(3, 2))
    out = io.StringIO()
    write_fg(out, graph)
    # names are not ints: labels are indices; first listed variable (b = 1) fastest
    lines = out.getvalue().splitlines()
    assert lines[1:6] == ["1", "", "2", "1 0", "3 2"]
    entries = [tuple(map(float, line.split())) for line in lines[7:]]
    assert [int(i) for i, _ in entries] == list(range(6))
    np.testing.assert_allclose(
        [p for _, p in entries], np.exp(-np.arange(6.0).reshape(3, 2).ravel(order="F"))
    )


# --------------------------------------------------------------------------- errors
HEAD = "1\n\n2\n0 1\n2 2\n"
FG_ERRORS = {  # kind: (file content, line of the error, message after "file:line: ")
    "non-integer count": ("1.5\n", 1, r"expected the number of factors \(an integer >= 0\)"),
    "negative label": (
        "1\n\n1\n-3\n2\n0\n", 4, "expected the labels of factor 0 to be integers >= 0, found -3"
    ),
    "variable twice": (
        "1\n\n2\n4 4\n2 2\n0\n", 4, "expected distinct variables in the scope of factor 0"
    ),
    "zero cardinality": ("1\n\n1\n0\n0\n0\n", 5, "cardinality of variable 0 .*found 0$"),
    "inconsistent cardinality": (
        "2\n\n1\n0\n2\n0\n\n1\n0\n3\n0\n", 10,
        "cardinality of variable 0 in factor 1 .*found 3, but it had 2 in an earlier factor",
    ),
    "too many entries": (HEAD + "5\n", 6, r"listed entries of factor 0 \(an integer in 0\.\.4\)"),
    "index out of range": (
        HEAD + "2\n0 1\n4 1\n", 8, r"linear index of factor 0 \(an integer in 0\.\.3\), found 4"
    ),
    "index not an integer": (HEAD + "1\n1.5 1\n", 7, "linear index .*found 1.5"),
    "index twice": (
        HEAD + "2\n1 0.5\n1 0.7\n", 8, "each linear index of factor 0 listed once, found 1 again"
    ),
    "negative potential": (
        HEAD + "2\n0 1\n3 -2\n", 8, "expected a potential .* at index 3 of factor 0, found -2"
    ),
    "nan potential": (HEAD + "1\n2 nan\n", 7, "expected a potential .*, found nan"),
    "truncated": (HEAD + "3\n0 1\n1 1\n", 8, r"\(6 numbers\), found end of file after 4"),
    "extra data": (HEAD + "1\n0 1\n0 1\n", 8, "expected end of file after the 1 factors"),
    "garbage": (HEAD + "1\n0 one\n", 7, r"\(a number\), found 'one'"),
    "table too large": (
        "1\n\n2\n0 1\n100000 100000\n0\n", 5,
        f"at most max_entries = {MAX_FILE_ENTRIES} table entries in all, found 10000000000 "
        "with the table of factor 0: the tables would take 74.5 GiB",
    ),
}


@pytest.mark.parametrize("case", FG_ERRORS, ids=str)
def test_fg_error_messages(case, tmp_path):
    text, line, message = FG_ERRORS[case]
    path = tmp_path / "bad.fg"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:{line}: .*{message}"):
        read_fg(path)


TWO_FACTORS = "2\n\n1\n0\n2\n2\n0 0.5\n1 2\n\n1\n1\n3\n1\n2 4\n"
ENTRY_LINE_ERRORS = {  # kind: (file content, line of the error, message after "file:line: ")
    # libDAI's reader takes the next factor's header "1 / 1 / 3" as the missing entry
    "entry commented out": (
        TWO_FACTORS.replace("1 2\n", "# 1 2\n"), 10,
        r"expected entry 1 of the 2 listed entries of factor 0 on a line of its own "
        r"\('index value'\), found a line of 1 number \(an entry line missing",
    ),
    "entry deleted": (TWO_FACTORS.replace("1 2\n", ""), 9, "expected entry 1 of the 2 listed"),
    "two entries on a line": (
        TWO_FACTORS.replace("0 0.5\n1 2", "0 0.5 1 2"), 7, "expected entry 0 .*a line of 4 numbers"
    ),
    "entry split over lines": (
        TWO_FACTORS.replace("0 0.5", "0\n0.5"), 7, "expected entry 0 .*a line of 1 number "
    ),
    "token after the last entry": (
        TWO_FACTORS.replace("1 2\n", "1 2 7\n"), 8,
        "expected the last of the 2 listed entries of factor 0 to end its line .*found '7'",
    ),
}


@pytest.mark.parametrize("case", ENTRY_LINE_ERRORS, ids=str)
def test_entry_count_not_met_is_an_error_at_its_line(case, tmp_path):
    """A sparse table whose declared count is not met never reads the next factor's header
    as entries: the first line that is not one 'index value' entry is the error."""
    text, line, message = ENTRY_LINE_ERRORS[case]
    path = tmp_path / "bad.fg"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        read_fg(path)
    path.write_text(TWO_FACTORS)  # the file as written reads
    graph = read_fg(path)
    assert graph.energy([1, 2]) == pytest.approx(-math.log(2) - math.log(4))


def test_zero_entries_are_forbidden_configurations(tmp_path):
    path = tmp_path / "z.fg"
    path.write_text(HEAD + "2\n0 0\n3 2\n")
    assert_same_energies(read_fg(path).factor_energies(0),
                         [[math.inf, math.inf], [math.inf, -math.log(2)]])


@needs_fg
def test_every_libdai_model_is_exact_by_junction_tree(expected):
    """libDAI's test models (loopy ones included): the junction tree reproduces the exact
    ln Z, marginals and lowest energy of expected_values.json, and decodes a minimizer."""
    for name, want in expected.items():
        graph = read_fg(FG / name)
        soft = sum_product(graph, method="exact")
        assert soft.log_partition == pytest.approx(want["exact_logZ"], rel=1e-12, abs=1e-12)
        for v, marginal in zip(graph.variables, soft.marginals, strict=True):
            np.testing.assert_allclose(marginal, want["exact_marginals"][str(v)], atol=1e-9)
        if "max_log_score" in want:
            best = min_sum(graph, method="exact")
            assert best.energy == pytest.approx(-want["max_log_score"], rel=1e-12, abs=1e-12)
            assert best.feasible is True
