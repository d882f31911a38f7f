"""Bad input is refused where it enters, with a message naming the factor or variable."""

import math

import numpy as np
import pytest

import factorgraph_ebm as fg
from factorgraph_ebm import EvidenceError, FactorGraphError


@pytest.fixture
def graph():
    """a (2 states) - b (3 states), one named factor."""
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], [2, 3])
    g.add_factor(("a", "b"), np.zeros((2, 3)), name="pair")
    return g


@pytest.fixture
def loopy():
    g = fg.FactorGraph()
    g.add_variables(["x", "y"], 2)
    g.add_factor(("x", "y"), np.eye(2))
    g.add_factor(("y", "x"), np.eye(2))
    return g


def test_evidence_error_is_a_factor_graph_error():
    assert issubclass(EvidenceError, FactorGraphError)
    assert issubclass(FactorGraphError, ValueError)


# --------------------------------------------------------------------------- building
def test_unknown_variable_in_scope(graph):
    with pytest.raises(FactorGraphError, match=r"factor 1 \('f'.*unknown variable 'z'"):
        graph.add_factor(("a", "z"), np.zeros((2, 2)), name="f")
    assert graph.n_factors == 1  # nothing was added


def test_unknown_variable_index(graph):
    with pytest.raises(FactorGraphError, match=r"factor 1: unknown variable index 5"):
        graph.add_factors([[0, 5]], np.zeros((2, 2)), by_index=True)
    with pytest.raises(FactorGraphError, match=r"unknown variable index -1"):
        graph.add_factors([[-1, 0]], np.zeros((2, 2)), by_index=True)


def test_unknown_variable_in_add_factors_by_name(graph):
    with pytest.raises(FactorGraphError, match=r"factor 2 \(scope \('b', 'q'\)\).*'q'"):
        graph.add_factors([("a", "b"), ("b", "q")], np.zeros((2, 3)))
    assert graph.n_factors == 1


def test_wrong_table_shape_names_factor_and_variable(graph):
    with pytest.raises(
        FactorGraphError, match=r"factor 1 \('f', scope \('a', 'b'\)\).*variable 'a' with 2"
    ):
        graph.add_factor(("a", "b"), np.zeros((3, 2)), name="f")
    with pytest.raises(FactorGraphError, match=r"factor 2 \(scope \('b', 'a'\)\).*'b'"):
        graph.add_factors([("a", "b"), ("b", "a")], np.zeros((2, 3)))
    assert graph.n_factors == 1


def test_wrong_table_shape_message_prints_plain_integers(graph):
    """Cosmetic engine bug: the expected shape is printed from an int64 array, which under
    NumPy 2 reads 'expected (np.int64(2), np.int64(3))' instead of '(2, 3)'."""
    with pytest.raises(FactorGraphError, match=r"expected \(2, 3\)"):
        graph.add_factor(("a", "b"), np.zeros((3, 2)), name="f")


def test_wrong_number_of_table_axes_names_the_factor(graph):
    """Engine bug: a table with the wrong number of axes gives 'factors 1..1: expected 1
    energy tables of 2 axes' without the factor's name or scope (the docs promise errors
    naming the factor; ``name`` is 'a label used in error messages')."""
    with pytest.raises(FactorGraphError, match=r"'flat'.*scope \('a', 'b'\)"):
        graph.add_factor(("a", "b"), np.zeros(6), name="flat")


def test_nan_energy(graph):
    table = np.zeros((2, 3))
    table[1, 2] = np.nan
    with pytest.raises(FactorGraphError, match=r"factor 1 \('bad'.*energy at \(1, 2\) is nan"):
        graph.add_factor(("a", "b"), table, name="bad")
    assert graph.n_factors == 1


def test_minus_inf_energy(graph):
    table = np.zeros((3,))
    table[2] = -np.inf
    with pytest.raises(FactorGraphError, match=r"factor 1 \(scope \('b',\)\): energy at \(2,\)"
                                               r" is -inf"):
        graph.add_factor(("b",), table)
    # the second of the new factors (index 2) is the one named
    with pytest.raises(FactorGraphError, match=r"factor 2 \(scope \('b',\)\).*-inf"):
        graph.add_factors([("b",), ("b",)], np.stack([np.zeros(3), table]))


def test_non_numeric_energies(graph):
    with pytest.raises(FactorGraphError, match=r"factor 1 .*energies must be numeric"):
        graph.add_factor(("a",), ["x", "y"])


def test_variable_repeated_in_scope(graph):
    with pytest.raises(FactorGraphError, match=r"'twice'.*variable 'a' appears twice"):
        graph.add_factor(("a", "a"), np.zeros((2, 2)), name="twice")
    with pytest.raises(FactorGraphError, match=r"factor 1 .*variable 'b' appears twice"):
        graph.add_factors([[1, 0, 1]], np.zeros((3, 2, 3)), by_index=True)


def test_zero_states(graph):
    with pytest.raises(FactorGraphError, match=r"variable 'c': number of states must be >= 1"):
        graph.add_variable("c", 0)
    with pytest.raises(FactorGraphError, match=r"variable 'e'.*>= 1, got -2"):
        graph.add_variables(["d", "e"], [2, -2])
    assert graph.n_variables == 2


def test_non_integer_states(graph):
    with pytest.raises(FactorGraphError, match="n_states must be integers"):
        graph.add_variable("c", 2.5)
    with pytest.raises(FactorGraphError, match="one integer or one per variable"):
        graph.add_variables(["c", "d"], [2, 2, 2])


def test_duplicate_variable_name(graph):
    with pytest.raises(FactorGraphError, match=r"variable 'a' is already in the graph"):
        graph.add_variable("a", 2)
    with pytest.raises(FactorGraphError, match=r"variable 'c' is already"):
        graph.add_variables(["c", "c"], 2)
    assert graph.n_variables == 2
    assert graph.variables == ["a", "b"]


def test_mixed_arities_in_add_factors(graph):
    with pytest.raises(FactorGraphError, match="one arity"):
        graph.add_factors([("a", "b"), ("b",)], np.zeros((2, 3)))


def test_unknown_factor_index(graph):
    with pytest.raises(FactorGraphError, match="unknown factor 4"):
        graph.factor_energies(4)
    with pytest.raises(FactorGraphError, match="unknown factor -1"):
        graph.factor_scope(-1)


def test_unknown_variable_lookup(graph):
    with pytest.raises(FactorGraphError, match="unknown variable 'zz'"):
        graph.index_of("zz")


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("beta", [0, -1.0, math.nan, -math.inf])
def test_bad_beta(graph, beta):
    with pytest.raises(FactorGraphError, match="beta must be > 0"):
        fg.belief_propagation(graph, beta=beta)


def test_non_numeric_beta(graph):
    with pytest.raises(FactorGraphError, match="beta must be a positive number"):
        fg.sum_product(graph, beta="hot")


@pytest.mark.parametrize("damping", [1.0, -0.1, 1.5, math.nan, "half"])
def test_bad_damping(graph, damping):
    with pytest.raises(FactorGraphError, match=r"damping must be in \[0, 1\)"):
        fg.sum_product(graph, damping=damping)


@pytest.mark.parametrize("max_iter", [0, -3, 2.0, True, "10"])
def test_bad_max_iter(graph, max_iter):
    with pytest.raises(FactorGraphError, match="max_iter must be an integer >= 1"):
        fg.min_sum(graph, max_iter=max_iter)


@pytest.mark.parametrize("tol", [-1e-9, math.nan, "small"])
def test_bad_tol(graph, tol):
    with pytest.raises(FactorGraphError, match="tol must be a number >= 0"):
        fg.min_sum(graph, tol=tol)


@pytest.mark.parametrize("schedule", ["bogus", "Tree", None])
def test_bad_schedule(graph, schedule):
    with pytest.raises(FactorGraphError, match="schedule must be one of"):
        fg.min_sum(graph, schedule=schedule)


def test_tree_schedule_on_loopy_graph(loopy):
    with pytest.raises(FactorGraphError, match="schedule='tree' needs a forest"):
        fg.min_sum(loopy, method="bp", absorb=False, schedule="tree")
    assert fg.min_sum(loopy, schedule="sequential").energy == 0.0  # the graph itself is fine


# --------------------------------------------------------------------------- vectors
def test_energies_override_wrong_length(graph):
    with pytest.raises(FactorGraphError, match=r"energies must have shape \(6,\).*got \(5,\)"):
        fg.min_sum(graph, energies=np.zeros(5))
    with pytest.raises(FactorGraphError, match=r"energies must have shape \(6,\)"):
        fg.min_sum(graph, energies=np.zeros((2, 3)))


def test_energies_override_with_nan_names_the_factor(graph):
    graph.add_factor(("b",), [0.0, 1.0, 2.0], name="u")
    theta = np.zeros(9)
    theta[7] = np.nan
    with pytest.raises(FactorGraphError, match=r"energies\[7\] \(factor 1\) is nan"):
        fg.sum_product(graph, energies=theta)


def test_energies_override_with_minus_inf(graph):
    theta = np.zeros(6)
    theta[2] = -np.inf
    with pytest.raises(FactorGraphError, match=r"energies\[2\] \(factor 0\) is -inf"):
        fg.min_sum(graph, energies=theta)


def test_init_messages_wrong_length(graph):
    with pytest.raises(FactorGraphError, match=r"init_messages must have shape \(5,\), got \(4,\)"):
        fg.sum_product(graph, init_messages=np.zeros(4))


def test_init_messages_with_nan(graph):
    with pytest.raises(FactorGraphError, match="init_messages contains NaN"):
        fg.sum_product(graph, init_messages=np.full(5, np.nan), schedule="parallel")


# --------------------------------------------------------------------------- evidence
def test_evidence_unknown_variable(graph):
    with pytest.raises(EvidenceError, match="evidence: unknown variable 'zz'"):
        fg.min_sum(graph, evidence={"zz": 0})


@pytest.mark.parametrize("state", [3, -1, 100])
def test_evidence_state_out_of_range(graph, state):
    with pytest.raises(EvidenceError, match=rf"variable 'b': state {state} is out of range 0..2"):
        fg.min_sum(graph, evidence={"b": state})


@pytest.mark.parametrize("state", [1.0, "1", True, None, 0.5])
def test_evidence_non_integer_state(graph, state):
    with pytest.raises(EvidenceError, match=r"variable 'a': state must be an integer"):
        fg.sum_product(graph, evidence={"a": state})


def test_evidence_accepts_numpy_integers(graph):
    result = fg.min_sum(graph, evidence={"a": np.int64(1), "b": np.int32(2)})
    assert result.assignment.tolist() == [1, 2]


def test_impossible_evidence_names_factor_and_variables():
    g = fg.FactorGraph()
    g.add_variables(["a", "b"], 2)
    g.add_factor(("a", "b"), [[np.inf, 0.0], [np.inf, 0.0]])
    with pytest.raises(EvidenceError, match=r"impossible evidence \{'b': 0\}: factor 0 "
                                            r"\(scope \('a', 'b'\)\)"):
        fg.sum_product(g, evidence={"b": 0})


# --------------------------------------------------------------------------- assignments
def test_assignment_out_of_range(graph):
    with pytest.raises(FactorGraphError, match=r"variable 'b': state 3 is out of range 0..2"):
        graph.energy([0, 3])
    with pytest.raises(FactorGraphError, match=r"variable 'a': state 2 is out of range 0..1"):
        graph.energy([[0, 0], [2, 0]])
    with pytest.raises(FactorGraphError, match=r"variable 'a': state -1"):
        graph.energy({"a": -1, "b": 0})


def test_assignment_wrong_shape(graph):
    with pytest.raises(FactorGraphError, match=r"shape \(2,\) or \(n_samples, 2\), got \(3,\)"):
        graph.energy([0, 1, 1])
    with pytest.raises(FactorGraphError, match=r"got \(1, 2, 2\)"):
        graph.energy(np.zeros((1, 2, 2), dtype=int))


def test_assignment_non_integer(graph):
    with pytest.raises(FactorGraphError, match="states must be integers"):
        graph.energy([0.0, 1.0])


def test_assignment_mapping_missing_or_unknown(graph):
    with pytest.raises(FactorGraphError, match=r"no state for variable 'b'"):
        graph.energy({"a": 0})
    with pytest.raises(FactorGraphError, match=r"unknown variable 'c'"):
        graph.energy({"a": 0, "b": 0, "c": 1})
