"""SequenceLabeler: loss gradients against finite differences, the averaged perceptron against
a plain reference, learning, determinism, files, and errors."""

import itertools
import json
import warnings

import numpy as np
import pytest
import scipy.sparse

from factorgraph_ebm.exceptions import FactorGraphError, TargetError
from factorgraph_ebm.features import AttributeMatrix
from factorgraph_ebm.labeler import (
    FORMAT_NAME,
    SequenceLabeler,
    _Chain,
    _Design,
    _value_and_grad,
)
from factorgraph_ebm.losses import HingeLoss, LogLoss, MCELoss, NLLLoss, PerceptronLoss
from factorgraph_ebm.train import LBFGS, SGD, Adam

LOSSES = [
    NLLLoss(1.0),
    NLLLoss(2.5),
    PerceptronLoss(),
    HingeLoss(margin=1.0),
    HingeLoss(margin=0.5, hamming=1.0),
    LogLoss(),
    LogLoss(hamming=0.5),
    MCELoss(),
]


def tiny_problem(seed=1, n_features=5, n_labels=3, lengths=(3, 1, 4)):
    rng = np.random.default_rng(seed)
    lengths = np.array(lengths, dtype=np.int64)
    n = int(lengths.sum())
    dense = rng.normal(size=(n, n_features)) * (rng.random((n, n_features)) < 0.6)
    attributes = AttributeMatrix(scipy.sparse.csr_matrix(dense), lengths)
    y = rng.integers(0, n_labels, size=n)
    return attributes, y, rng


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@pytest.mark.parametrize("boundary", [True, False])
@pytest.mark.parametrize("all_states", [True, False])
def test_gradient_matches_central_differences(loss, boundary, all_states):
    attributes, y, rng = tiny_problem()
    chain = _Chain.for_data(attributes, y, 3, boundary, all_states)
    design = _Design.of(attributes)
    rows = np.arange(len(y), dtype=np.int64)
    theta = rng.normal(size=chain.n_params)

    def value(t):
        return _value_and_grad(chain, loss, t, design, rows, y, attributes.lengths)[0]

    _, grad = _value_and_grad(chain, loss, theta, design, rows, y, attributes.lengths)
    h = 1e-6
    numeric = np.array([
        (value(theta + h * e) - value(theta - h * e)) / (2 * h) for e in np.eye(len(theta))
    ])
    if not boundary:  # s and e are not used: no gradient
        numeric[-6:] = 0.0
    np.testing.assert_allclose(grad, numeric, atol=1e-6)


def test_nll_value_is_brute_force_negative_log_likelihood():
    attributes, y, rng = tiny_problem(lengths=(3,))
    chain = _Chain.for_data(attributes, y, 3, True, True)
    theta = rng.normal(size=chain.n_params)
    value, _ = _value_and_grad(chain, NLLLoss(1.0), theta, _Design.of(attributes),
                               np.arange(3), y, attributes.lengths)
    w = chain.dense_weights(theta)
    _, a, s, e = chain.unpack(theta)
    unary = attributes.matrix.toarray() @ w

    def energy(path):
        return (sum(unary[t, k] for t, k in enumerate(path)) + s[path[0]] + e[path[-1]]
                + sum(a[i, j] for i, j in zip(path, path[1:])))

    log_z = np.logaddexp.reduce([-energy(p) for p in itertools.product(range(3), repeat=3)])
    assert value == pytest.approx(energy(tuple(y)) + log_z)


def reference_averaged_perceptron(X, y, orders, n_labels):
    """Collins' averaged perceptron with explicit averaging (the mean of the weights after
    every sequence), dense weights, start/end energies; energies = -scores."""
    n_features = X[0].shape[1]
    w = np.zeros((n_features, n_labels))
    a = np.zeros((n_labels, n_labels))
    s = np.zeros(n_labels)
    e = np.zeros(n_labels)
    total = [np.zeros_like(w), np.zeros_like(a), np.zeros_like(s), np.zeros_like(e)]
    count = 0
    for order in orders:
        for i in order:
            x, labels = X[i], y[i]
            unary = x @ w
            paths = itertools.product(range(n_labels), repeat=len(labels))

            def energy(p, unary=unary):
                return (sum(unary[t, k] for t, k in enumerate(p)) + s[p[0]] + e[p[-1]]
                        + sum(a[i, j] for i, j in zip(p, p[1:])))

            # ties: the lowest last label first, then the lowest earlier ones
            best = min(paths, key=lambda p: (energy(p), p[::-1]))
            if tuple(best) != tuple(labels):
                for t, (g, b) in enumerate(zip(labels, best)):
                    w[:, g] -= x[t]
                    w[:, b] += x[t]
                    if t:
                        a[labels[t - 1], g] -= 1
                        a[best[t - 1], b] += 1
                s[labels[0]] -= 1
                s[best[0]] += 1
                e[labels[-1]] -= 1
                e[best[-1]] += 1
            for acc, value in zip(total, (w, a, s, e)):
                acc += value
            count += 1
    return [acc / count for acc in total]


def test_online_averaged_perceptron_equals_the_plain_definition():
    rng = np.random.default_rng(3)
    X = [rng.integers(0, 2, size=(n, 4)).astype(float) for n in (3, 2, 4, 1, 3)]
    y = [list(rng.integers(0, 3, size=len(x))) for x in X]
    model = SequenceLabeler("perceptron", n_epochs=3, all_possible_states=True, seed=5,
                            progress=False).fit(X, y)
    gen = np.random.default_rng(5)
    orders = [gen.permutation(5) for _ in range(3)]
    w, a, s, e = reference_averaged_perceptron(X, y, orders, 3)
    # zero rows of the design matrix keep their weights at 0 in both
    np.testing.assert_allclose(model.weights_, w, atol=1e-12)
    np.testing.assert_allclose(model.transition_, a, atol=1e-12)
    np.testing.assert_allclose(model.start_, s, atol=1e-12)
    np.testing.assert_allclose(model.end_, e, atol=1e-12)


def synthetic_tagging(n_sequences, seed):
    """Words 0..11; label A for 0-3, B for 4-7, and for 8-11 A after a B, else C: a task a
    linear chain solves only with its transitions."""
    rng = np.random.default_rng(seed)
    X, Y = [], []
    for _ in range(n_sequences):
        words = rng.integers(0, 12, size=rng.integers(2, 9))
        labels, previous = [], None
        for word in words:
            label = "A" if word < 4 else "B" if word < 8 else ("A" if previous == "B" else "C")
            labels.append(label)
            previous = label
        X.append([{"w": str(word), "bias": 1.0} for word in words])
        Y.append(labels)
    return X, Y


@pytest.fixture(scope="module")
def tagging():
    return synthetic_tagging(150, 0), synthetic_tagging(100, 1)


@pytest.mark.parametrize(
    ("loss", "optimizer", "n_epochs"),
    [
        ("nll", None, 60),
        ("nll", Adam(learning_rate=0.1), 15),
        ("perceptron", None, 5),
        ("perceptron", SGD(learning_rate=0.1), 10),
        ("hinge", Adam(learning_rate=0.1), 10),
        ("hinge_hamming", Adam(learning_rate=0.1), 10),
        ("log", Adam(learning_rate=0.1), 10),
    ],
)
def test_learns_a_tagging_task_that_needs_transitions(tagging, loss, optimizer, n_epochs):
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler(loss, optimizer, n_epochs=n_epochs, batch_size=16, l2=1e-4
                            if loss != "perceptron" or optimizer else 0.0, progress=False)
    model.fit(X, Y, X_test, Y_test)
    assert model.score(X_test, Y_test) >= 0.97
    assert len(model.history_["loss"]) == model.n_epochs_ == len(model.history_["dev_accuracy"])
    assert model.classes_ == ["A", "B", "C"]


def test_same_seed_same_model_other_seed_other_model(tagging):
    (X, Y), _ = tagging

    def train(seed):
        return SequenceLabeler("hinge", Adam(0.05), n_epochs=2, batch_size=8, seed=seed,
                               progress=False).fit(X, Y)

    first, second, other = train(7), train(7), train(8)
    np.testing.assert_array_equal(first.weights_, second.weights_)
    np.testing.assert_array_equal(first.transition_, second.transition_)
    assert not np.array_equal(first.weights_, other.weights_)


def test_predict_marginals_are_distributions_that_favour_the_prediction(tagging):
    (X, Y), (X_test, _) = tagging
    model = SequenceLabeler("nll", n_epochs=30, l2=1e-3, progress=False).fit(X, Y)
    marginals = model.predict_marginals(X_test[:20])
    predicted = model.predict(X_test[:20])
    for m, labels in zip(marginals, predicted):
        assert m.shape == (len(labels), 3)
        np.testing.assert_allclose(m.sum(axis=1), 1.0)
        assert [model.classes_[k] for k in m.argmax(axis=1)] == labels


@pytest.mark.parametrize("hashing", [None, 64])
def test_save_load_round_trip(tmp_path, tagging, hashing):
    (X, Y), (X_test, _) = tagging
    model = SequenceLabeler("log", Adam(0.05), n_epochs=2, n_features=hashing,
                            progress=False).fit(X, Y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = SequenceLabeler.load(path)
    assert loaded.predict(X_test) == model.predict(X_test)
    np.testing.assert_array_equal(loaded.weights_, model.weights_)
    np.testing.assert_array_equal(loaded.transition_, model.transition_)
    assert loaded.classes_ == model.classes_
    assert repr(loaded._loss) == repr(model._loss)
    with np.load(path, allow_pickle=False) as archive:  # no pickle anywhere
        header = json.loads(archive["header"].tobytes())
    assert header["format"] == FORMAT_NAME and header["version"] == 1


def test_numeric_features_and_integer_labels_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(n, 3)) for n in (4, 2, 5)]
    y = [list((x[:, 0] > 0).astype(int)) for x in X]
    model = SequenceLabeler("nll", n_epochs=20, progress=False).fit(X, y)
    assert model.indexer_ is None and model.classes_ == [0, 1]
    model.save(tmp_path / "m.npz")
    loaded = SequenceLabeler.load(tmp_path / "m.npz")
    assert loaded.predict(X) == model.predict(X)
    with pytest.raises(FactorGraphError, match="sequence 0 has 4 features, expected 3"):
        loaded.predict([rng.normal(size=(2, 4))])
    with pytest.raises(FactorGraphError, match="numeric arrays"):
        loaded.predict([[{"a": 1.0}]])


def write_archive(path, header, **arrays):
    blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, header=blob, **arrays)


def test_load_refuses_other_formats_and_newer_versions(tmp_path, tagging):
    (X, Y), _ = tagging
    good = tmp_path / "good.npz"
    SequenceLabeler("perceptron", n_epochs=1, progress=False).fit(X, Y).save(good)
    with np.load(good, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop("header").tobytes())
    newer = tmp_path / "newer.npz"
    write_archive(newer, {**header, "version": 2}, **arrays)
    with pytest.raises(FactorGraphError, match="version 2.*newer factorgraph_ebm"):
        SequenceLabeler.load(newer)
    other = tmp_path / "other.npz"
    write_archive(other, {**header, "format": "something else"}, **arrays)
    with pytest.raises(FactorGraphError, match="format 'something else'"):
        SequenceLabeler.load(other)
    broken = tmp_path / "broken.npz"
    write_archive(broken, header, **{**arrays, "transition": np.zeros((2, 2))})
    with pytest.raises(FactorGraphError, match="'transition' has shape"):
        SequenceLabeler.load(broken)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(FactorGraphError, match="not a SequenceLabeler"):
        SequenceLabeler.load(junk)


def test_bad_inputs_give_clear_errors(tagging):
    (X, Y), _ = tagging
    with pytest.raises(TargetError, match="sequence 1 has .* tokens but its y has"):
        SequenceLabeler(progress=False).fit(X[:3], [Y[0], Y[1][:-1], Y[2]])
    with pytest.raises(TargetError, match="X has 3 sequences, y has 2"):
        SequenceLabeler(progress=False).fit(X[:3], Y[:2])
    with pytest.raises(TargetError, match="all be str or all be int"):
        SequenceLabeler(progress=False).fit([[{"a": 1.0}, {"b": 1.0}]], [["x", 1]])
    with pytest.raises(FactorGraphError, match="unknown loss 'svm'"):
        SequenceLabeler("svm", progress=False).fit(X, Y)
    with pytest.raises(FactorGraphError, match="LBFGS needs a smooth loss"):
        SequenceLabeler("hinge", LBFGS(), progress=False).fit(X, Y)
    with pytest.raises(FactorGraphError, match="online perceptron has no L2"):
        SequenceLabeler("perceptron", l2=0.1, progress=False).fit(X, Y)
    with pytest.raises(FactorGraphError, match="forbidden sphere"):
        SequenceLabeler(HingeLoss(radius=1.0), progress=False).fit(X, Y)
    with pytest.raises(FactorGraphError, match="n_epochs must be an integer"):
        SequenceLabeler(n_epochs=0, progress=False).fit(X, Y)
    with pytest.raises(FactorGraphError, match="not fitted"):
        SequenceLabeler().predict(X)
    with pytest.raises(FactorGraphError, match="sequence 0, position 1"):
        SequenceLabeler(progress=False).fit([[{"a": 1.0}, {"b": "x", "c": [1]}]], [["x", "y"]])


def test_estimator_protocol(tagging):
    model = SequenceLabeler("hinge", Adam(0.05), l2=0.01, seed=3)
    params = model.get_params()
    assert params["loss"] == "hinge" and params["l2"] == 0.01 and params["seed"] == 3
    assert model.set_params(l2=0.5) is model and model.l2 == 0.5
    with pytest.raises(FactorGraphError, match="no parameter 'C'"):
        model.set_params(C=1.0)
    assert repr(SequenceLabeler("log", n_epochs=3)) == "SequenceLabeler('log', n_epochs=3)"
    base = pytest.importorskip("sklearn.base")
    clone = base.clone(model)
    assert clone.get_params() == model.get_params() and clone is not model


def test_stages_run_in_turn_and_refuse_a_global_n_epochs(tagging):
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler("nll", [(Adam(0.1), 2), (LBFGS(), 5)], l2=1e-3, progress=False)
    model.fit(X, Y)
    assert 2 < model.n_epochs_ <= 7 and len(model.history_["loss"]) == model.n_epochs_
    losses = model.history_["loss"]
    assert losses[-1] < losses[1]  # the L-BFGS stage ran after Adam and kept descending
    with pytest.raises(FactorGraphError, match="leave n_epochs=None"):
        SequenceLabeler("nll", [(Adam(0.1), 2)], n_epochs=3).fit(X, Y)
    with pytest.raises(FactorGraphError, match="pair"):
        SequenceLabeler("nll", [Adam(0.1)]).fit(X, Y)


def test_weight_gradient_paths_agree():
    """Small batches gather the gradient attribute by attribute, large ones all at once."""
    rng = np.random.default_rng(4)
    n_tokens, n_features = 40, 500
    dense = rng.normal(size=(n_tokens, n_features)) * (rng.random((n_tokens, n_features)) < 0.01)
    attributes = AttributeMatrix(scipy.sparse.csr_matrix(dense), np.array([n_tokens]))
    y = rng.integers(0, 4, size=n_tokens)
    chain = _Chain.for_data(attributes, y, 4, True, False)
    design = _Design.of(attributes)
    grad_unary = rng.normal(size=(n_tokens, 4))
    expected = (dense.T @ grad_unary).ravel()[chain.w_flat]
    for rows in (np.arange(3), np.arange(n_tokens)):  # 3 rows: the attribute-wise path
        out = np.zeros(chain.n_weights)
        chain.add_weight_grad(design, rows, grad_unary[rows], out)
        want = (dense[rows].T @ grad_unary[rows]).ravel()[chain.w_flat]
        np.testing.assert_allclose(out, want, atol=1e-12)
        assert not chain._grad.any()  # the work array is left clean after either path
    np.testing.assert_allclose(out, expected, atol=1e-12)  # all rows: the whole product


def test_crfsuite_stopping_rule_ends_lbfgs_quietly(tagging):
    (X, Y), _ = tagging
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        early = SequenceLabeler("nll", LBFGS(), n_epochs=500, l2=1e-3, delta=1e-3,
                                progress=False).fit(X, Y)
    full = SequenceLabeler("nll", LBFGS(), n_epochs=500, l2=1e-3, delta=0.0,
                           progress=False).fit(X, Y)
    assert 10 < early.n_epochs_ < full.n_epochs_
    assert len(early.history_["loss"]) == early.n_epochs_


def test_numpy_integer_options_fit_and_save(tagging, tmp_path):
    (X, Y), _ = tagging
    model = SequenceLabeler("nll", LBFGS(), n_epochs=3, seed=np.int64(1), period=np.int64(2),
                            progress=False)
    model.fit(X, Y)
    model.save(tmp_path / "m.npz")
    assert SequenceLabeler.load(tmp_path / "m.npz").predict(X[:2]) == model.predict(X[:2])
