"""Parameterizations: energies and back-propagation checked against plain per-factor loops
(the reference reads tables through the graph's public views) and the adjoint identity
<backward(G), dW> = <G, d theta> of a linear map."""

import re

import numpy as np
import pytest
import scipy.sparse
from reference import factor_table

import factorgraph_ebm as fg
from factorgraph_ebm.models import EnergyModel, LinearModel, TableModel


def chain_graph(n=5, k=3, forbid=True):
    """Chain of n variables with k states: unary factors 0..n-1, pairwise n..2n-2 (random
    tables), and a constant factor; one +inf entry in a unary and a pairwise table."""
    rng = np.random.default_rng(0)
    graph = fg.FactorGraph()
    names = [f"y{i}" for i in range(n)]
    graph.add_variables(names, k)
    for name in names:
        graph.add_factor([name], rng.normal(size=k))
    for a, b in zip(names, names[1:]):
        graph.add_factor([a, b], rng.normal(size=(k, k)))
    graph.add_factor([], 0.5)
    if forbid:
        graph.add_factor([names[0]], [np.inf] + [0.0] * (k - 1))
        graph.add_factor([names[1], names[2]], np.where(np.eye(k) > 0, np.inf, 0.0))
    return graph, names


def flat_offsets(graph):
    """Start of each factor's table in theta (tables concatenated in factor order)."""
    sizes = [factor_table(graph, f).size for f in range(graph.n_factors)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


def test_table_model_untied_is_the_identity_on_finite_entries():
    graph, _ = chain_graph()
    model = TableModel(graph)
    assert isinstance(model, EnergyModel)
    offsets = flat_offsets(graph)
    assert model.n_params == offsets[-1]
    theta = model.energies(model.init_params(np.random.default_rng(0)))
    for f in range(graph.n_factors):
        np.testing.assert_array_equal(theta[offsets[f] : offsets[f + 1]],
                                      factor_table(graph, f).ravel())
    grad = np.arange(model.n_params, dtype=float)
    expected = np.where(np.isinf(theta), 0.0, grad)
    np.testing.assert_array_equal(model.backward(None, None, grad), expected)


def test_table_model_tied_factors_share_a_table():
    graph, names = chain_graph(n=5, k=3)
    unary, pairwise = list(range(5)), list(range(5, 9))
    model = TableModel(graph, tie=[pairwise, unary[1:]])
    offsets = flat_offsets(graph)
    sizes = np.diff(offsets)
    # tables in the order of their first factor: unary 0, unary 1 (tied 1-4), pairwise 5
    # (tied 5-8), then the constant 9 and the two constraint factors 10, 11
    first_of = {f: f for f in range(graph.n_factors)}
    first_of.update({f: 1 for f in unary[1:]})
    first_of.update({f: 5 for f in pairwise})
    tables = sorted(set(first_of.values()))
    start = dict(zip(tables, np.concatenate([[0], np.cumsum([sizes[t] for t in tables])])))
    assert model.n_params == sum(sizes[t] for t in tables)
    rng = np.random.default_rng(1)
    params = rng.normal(size=model.n_params)
    theta = model.energies(params)
    grad = rng.normal(size=offsets[-1])
    expected_grad = np.zeros(model.n_params)
    for f in range(graph.n_factors):
        table = params[start[first_of[f]] : start[first_of[f]] + sizes[f]].copy()
        hard = np.isinf(factor_table(graph, f).ravel())
        table[hard] = np.inf
        np.testing.assert_array_equal(theta[offsets[f] : offsets[f + 1]], table)
        expected_grad[start[first_of[f]] : start[first_of[f]] + sizes[f]] += np.where(
            hard, 0.0, grad[offsets[f] : offsets[f + 1]]
        )
    np.testing.assert_allclose(model.backward(params, None, grad), expected_grad)
    # initial tables come from each table's first factor
    init = model.init_params()
    np.testing.assert_array_equal(init[start[5] : start[5] + 9], factor_table(graph, 5).ravel())


def linear_setup(sparse):
    graph, names = chain_graph(n=6, k=3)
    unary, pairwise = list(range(6)), list(range(6, 11))
    model = LinearModel(graph, {"emit": unary, "trans": pairwise}, {"emit": 4, "trans": 1},
                        init_scale=0.5)
    rng = np.random.default_rng(2)
    emit = rng.normal(size=(6, 4)) * (rng.random((6, 4)) < 0.5)
    x = {"emit": scipy.sparse.csr_matrix(emit) if sparse else emit, "trans": np.ones((5, 1))}
    return graph, model, x, emit, unary, pairwise, rng


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_linear_model_matches_a_per_factor_loop(sparse):
    graph, model, x, emit, unary, pairwise, rng = linear_setup(sparse)
    params = model.init_params(rng)
    w_emit = params[:12].reshape(3, 4)
    w_trans = params[12:].reshape(9, 1)
    offsets = flat_offsets(graph)
    theta = model.energies(params, x)
    grad = rng.normal(size=offsets[-1])
    expected_grad = np.zeros_like(params)
    for f in range(graph.n_factors):
        table = factor_table(graph, f).ravel()
        hard = np.isinf(table)
        if f in unary:
            phi = emit[unary.index(f)]
            expected = w_emit @ phi
            expected_grad[:12] += np.outer(np.where(hard, 0, grad[offsets[f]:offsets[f + 1]]),
                                           phi).ravel()
        elif f in pairwise:
            expected = w_trans[:, 0].copy()
            expected_grad[12:] += np.where(hard, 0, grad[offsets[f] : offsets[f + 1]])
        else:
            expected = table.copy()
        expected[hard] = np.inf
        np.testing.assert_allclose(theta[offsets[f] : offsets[f + 1]], expected)
    np.testing.assert_allclose(model.backward(params, x, grad), expected_grad)
    views = model.unpack(params)
    np.testing.assert_array_equal(views["emit"], w_emit)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_linear_model_backward_is_the_adjoint(sparse):
    """For a linear map theta(W): <backward(G), dW> = <G, theta(W + dW) - theta(W)>."""
    graph, model, x, *_, rng = linear_setup(sparse)
    params = model.init_params(rng)
    theta = model.energies(params, x)
    finite = np.isfinite(theta)
    for _ in range(3):
        grad = rng.normal(size=theta.shape)
        step = rng.normal(size=params.shape)
        moved = model.energies(params + step, x)
        lhs = model.backward(params, x, grad) @ step
        rhs = grad[finite] @ (moved[finite] - theta[finite])
        assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_linear_model_initialization_is_seeded():
    _, model, *_ = linear_setup(False)
    a = model.init_params(np.random.default_rng(5))
    b = model.init_params(np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.std() == pytest.approx(0.5, rel=0.5)
    graph, _ = chain_graph()
    assert not LinearModel(graph, {"u": [0, 1]}, 2).init_params(None).any()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda g: TableModel(g, tie=[[0, 5]]),
         "TableModel tie group 0: factor 5 has arity 2, factor 0 has 1"),
        (lambda g: TableModel(g, tie=[[0, 1], [1, 2]]),
         "TableModel tie group 1: factor 1 is already in another group"),
        (lambda g: TableModel(g, tie=[[0, 0]]), "TableModel tie group 0: lists a factor twice"),
        (lambda g: TableModel(g, tie=[[0, 99]]), "unknown factor 99; the graph has"),
        (lambda g: TableModel(g, tie=[[]]), "TableModel tie group 0: needs at least one factor"),
        (lambda g: TableModel(g, tie=[[0.5]]), "expected a 1-D sequence of factor indices"),
        (lambda g: LinearModel(g, {"u": [0, 1]}, 0), "n_features of group 'u' must be an integer"),
        (lambda g: LinearModel(g, {"u": [0, 1]}, {"v": 2}), "n_features of group 'u'"),
        (lambda g: LinearModel(g, {}, 2), "groups must be a non-empty mapping"),
        (lambda g: LinearModel(g, {"u": [0], "w": [0]}, 1), "factor 0 is already in another"),
    ],
)
def test_model_construction_errors(make, message):
    graph, _ = chain_graph()
    graph.add_variable("big", 4)
    graph.add_factor(["big"], np.zeros(4))
    with pytest.raises(fg.FactorGraphError, match=re.escape(message)):
        make(graph)


def test_tied_tables_need_one_shape():
    graph, _ = chain_graph()
    graph.add_variable("big", 4)
    big = graph.add_factor(["big"], np.zeros(4))
    with pytest.raises(fg.FactorGraphError, match=re.escape(
        f"factor {big} has table shape (4,), factor 0 has (3,)"
    )):
        TableModel(graph, tie=[[0, big]])


def test_linear_model_feature_errors():
    _, model, x, *_ = linear_setup(False)
    params = model.init_params(None)
    with pytest.raises(fg.FactorGraphError, match="group 'trans' is missing"):
        model.energies(params, {"emit": x["emit"]})
    with pytest.raises(fg.FactorGraphError, match=re.escape(
        "features of group 'emit' must have shape (6, 4) (one row per factor of the group), "
        "got (6, 3)"
    )):
        model.energies(params, {"emit": np.zeros((6, 3)), "trans": x["trans"]})
