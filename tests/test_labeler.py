"""SequenceLabeler: loss gradients against finite differences, the averaged perceptron against
a plain reference, learning, determinism, files, and errors."""

import gc
import itertools
import json
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from factorgraph_ebm.exceptions import FactorGraphError, TargetError
from factorgraph_ebm.losses import (
    EnergyLoss,
    HingeLoss,
    LogLoss,
    LVQ2Loss,
    MCELoss,
    MEELoss,
    NLLLoss,
    PerceptronLoss,
    SquareExpLoss,
    SquareSquareLoss,
)
from factorgraph_ebm.optim import LBFGS, SGD, Adam
from factorgraph_ebm.sequence.chain import _Chain, _ChainObjective, _Design, _value_and_grad
from factorgraph_ebm.sequence.features import AttributeMatrix
from factorgraph_ebm.sequence.labeler import FORMAT_NAME, SequenceLabeler

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

LOSSES = [
    NLLLoss(1.0),
    NLLLoss(2.5),
    PerceptronLoss(),
    HingeLoss(margin=1.0),
    HingeLoss(margin=0.5, hamming=1.0),
    LogLoss(),
    LogLoss(hamming=0.5),
    MCELoss(),
    MEELoss(1.0),
    SquareSquareLoss(margin=2.0),
    SquareExpLoss(),
    LVQ2Loss(delta=2.0),
    EnergyLoss(),
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


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tagging):
    """The bytes of a saved model, its arrays and its JSON header."""
    (X, Y), _ = tagging
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    SequenceLabeler("perceptron", n_epochs=1, progress=False).fit(X, Y).save(path)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return path.read_bytes(), arrays, json.loads(arrays.pop("header").tobytes())


def load_closing_the_file(path):
    """SequenceLabeler.load(path), failing the test if the file is left open."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            return SequenceLabeler.load(path)
        finally:
            gc.collect()  # an unclosed file warns when it is collected
            leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
            assert not leaks, [str(w.message) for w in leaks]


@pytest.mark.parametrize("damage", ["empty", "truncated", "cut short", "corrupted", "bad crc",
                                    "a directory", "missing"])
def test_load_of_a_damaged_file_is_a_clear_error_and_closes_it(tmp_path, saved_model, damage):
    """Empty, truncated and corrupted files raised zipfile.BadZipFile, EOFError or
    NotImplementedError and left the file open: every one is a FactorGraphError naming the
    file."""
    data, _, _ = saved_model
    path = tmp_path / "model.npz"
    middle = len(data) // 2
    if damage == "a directory":
        path.mkdir()
    elif damage != "missing":
        path.write_bytes({
            "empty": b"",
            "truncated": data[:middle],
            "cut short": data[:-30],
            "corrupted": data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64])
            + data[middle + 64 :],
            "bad crc": data.replace(b'"format"', b'"formaT"', 1),  # the header's bytes
        }[damage])
    with pytest.raises(FactorGraphError, match=re.escape(str(path))):
        load_closing_the_file(path)


_TAMPERED = {
    "repeated labels": (lambda h: h.update(labels=["B-NP", "B-NP", "O"]), "distinct"),
    "reordered labels": (lambda h: h.update(labels=h["labels"][::-1]), "sorted order"),
    "labels as a string": (lambda h: h.update(labels="BIO"), "'labels' must be a non-empty"),
    "labels of floats": (lambda h: h.update(labels=[0.5, 1.5, 2.5]), "str or int"),
    "no labels": (lambda h: h.pop("labels"), "'labels' is missing"),
    "bool version": (lambda h: h.update(version=True), "version True"),
    "unknown loss class": (lambda h: h["options"]["loss"].update({"class": "Bogus"}),
                           "unknown loss class 'Bogus'"),
    "base loss class": (lambda h: h["options"]["loss"].update({"class": "Loss"}),
                        "options.loss"),
    "loss with bad params": (lambda h: h["options"]["loss"].update(params={"margin": "x"}),
                             "options.loss"),
    "l2 as a string": (lambda h: h["options"].update(l2="0.1"), "'options.l2' must be"),
    "negative l1": (lambda h: h["options"].update(l1=-1.0), "'options.l1' must be"),
    "boundary as a string": (lambda h: h["options"].update(boundary="yes"),
                             "'options.boundary' must be true or false"),
    "averaging as a number": (lambda h: h["options"].update(averaging=1),
                              "'options.averaging'"),
    "seed as a string": (lambda h: h["options"].update(seed="0"), "'options.seed'"),
    "epochs as a float": (lambda h: h["options"].update(n_epochs_=2.5), "'options.n_epochs_'"),
    "features of another kind": (lambda h: h["features"].update(kind="images"),
                                 "'features.kind'"),
    "min_freq as a string": (lambda h: h["features"].update(min_freq="1"),
                             "'features.min_freq'"),
    "attributes not strings": (lambda h: h["features"].update(attributes=[[1], [2]]),
                               "'features.attributes'"),
    "options not an object": (lambda h: h.update(options=[1, 2]), "'options' must be"),
}


@pytest.mark.parametrize("tampering", sorted(_TAMPERED))
def test_load_validates_the_header(tmp_path, saved_model, tampering):
    """Tampered headers loaded silently (repeated labels made predictions wrong): every
    field is checked, and the error names the file and the field."""
    _, arrays, header = saved_model
    edit, message = _TAMPERED[tampering]
    tampered = json.loads(json.dumps(header))
    edit(tampered)
    path = tmp_path / "model.npz"
    write_archive(path, tampered, **arrays)
    with pytest.raises(FactorGraphError, match=f"model.npz: .*{message}"):
        load_closing_the_file(path)


@pytest.mark.parametrize("tampering", ["nan weight", "float pattern", "label out of range",
                                       "repeated entry", "pointer past the end"])
def test_load_validates_the_arrays(tmp_path, saved_model, tampering):
    _, arrays, header = saved_model
    arrays = dict(arrays)
    if tampering == "nan weight":
        arrays["weight_value"] = arrays["weight_value"].copy()
        arrays["weight_value"][0] = np.nan
    elif tampering == "float pattern":
        arrays["weight_label"] = arrays["weight_label"].astype(float)
    elif tampering == "label out of range":
        arrays["weight_label"] = arrays["weight_label"].copy()
        arrays["weight_label"][-1] = len(header["labels"])
    elif tampering == "repeated entry":
        ptr = arrays["weight_ptr"]
        row = int(np.flatnonzero(np.diff(ptr) >= 2)[0])
        arrays["weight_label"] = arrays["weight_label"].copy()
        arrays["weight_label"][ptr[row] + 1] = arrays["weight_label"][ptr[row]]
    else:
        arrays["weight_ptr"] = arrays["weight_ptr"].copy()
        arrays["weight_ptr"][1] = 10**9
    path = tmp_path / "model.npz"
    write_archive(path, header, **arrays)
    with pytest.raises(FactorGraphError, match="model.npz: .*(not finite|weight_label|CSR)"):
        load_closing_the_file(path)


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


def test_weight_gradient_from_the_stored_entries():
    """The gradient of W, X[rows].T @ grad_unary at W's stored entries, for a few rows and
    for all: no dense (n_features, L) array is involved."""
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


# --------------------------------------------------------------------------- empty sequences
@pytest.mark.parametrize(("loss", "optimizer", "n_epochs"),
                         [("nll", LBFGS(), 20), ("perceptron", None, 3),
                          ("hinge", Adam(0.05), 3)])
def test_an_empty_training_sequence_contributes_nothing(tagging, loss, optimizer, n_epochs):
    (X, Y), _ = tagging
    X, Y = X[:40], Y[:40]

    def train(X, Y):
        return SequenceLabeler(loss, optimizer, n_epochs=n_epochs, batch_size=8,
                               progress=False).fit(X, Y)

    plain = train(X, Y)
    padded = train([[], *X[:20], [], *X[20:], []], [[], *Y[:20], [], *Y[20:], []])
    for name in ("weights_", "transition_", "start_", "end_"):  # the same computation
        np.testing.assert_array_equal(getattr(padded, name), getattr(plain, name))
    assert padded.history_["loss"] == plain.history_["loss"]


def test_empty_sequences_predict_empty_lists(tagging):
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler("nll", n_epochs=10, progress=False).fit(X, Y)
    assert model.predict([[]]) == [[]]
    assert model.predict([[], X_test[0], []]) == [[], model.predict([X_test[0]])[0], []]
    assert model.predict_single([]) == []
    marginals = model.predict_marginals([[], X_test[0]])
    assert marginals[0].shape == (0, 3) and marginals[1].shape == (len(X_test[0]), 3)
    assert model.score([[], X_test[0]], [[], model.predict_single(X_test[0])]) == 1.0
    model.fit(X[:20], Y[:20], X_dev=[[], *X_test[:5]], y_dev=[[], *Y_test[:5]])
    assert len(model.history_["dev_accuracy"]) == model.n_epochs_


def test_only_all_empty_training_data_is_an_error():
    for X in ([[]], [[], []], [np.zeros((0, 3))]):
        with pytest.raises(FactorGraphError, match="no tokens") as error:
            SequenceLabeler(progress=False).fit(X, [[] for _ in X])
        assert isinstance(error.value, ValueError)
    with pytest.raises(TargetError, match="sequence 0 has 0 tokens but its y has 1 labels"):
        SequenceLabeler(progress=False).fit([[], [{"a": 1.0}]], [["x"], ["y"]])


def test_numeric_sequences_may_be_empty():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(n, 3)) for n in (4, 2, 5)]
    y = [list((x[:, 0] > 0).astype(int)) for x in X]
    plain = SequenceLabeler("nll", n_epochs=20, progress=False).fit(X, y)
    padded = SequenceLabeler("nll", n_epochs=20, progress=False).fit(
        [np.zeros((0, 3)), *X, []], [[], *y, []])
    np.testing.assert_array_equal(padded.weights_, plain.weights_)
    assert padded.predict([[], np.zeros((0, 3)), X[0]]) == [[], [], plain.predict_single(X[0])]


# --------------------------------------------------------------------------- declared labels
def test_declared_labels_keep_an_absent_label(tagging, tmp_path):
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler("nll", n_epochs=30, l2=1e-3, labels=["C", "Z", "B", "A"],
                            progress=False)
    model.fit(X, Y)
    assert model.classes_ == ["A", "B", "C", "Z"]  # sorted, as without labels=
    assert not model.weights_[:, 3].any()  # no attribute weight for a label never seen
    for m in model.predict_marginals(X_test[:20]):
        assert m.shape[1] == 4 and np.isfinite(m).all()
        np.testing.assert_allclose(m.sum(axis=1), 1.0)
        assert (m[:, 3] < 0.05).all()
    plain = SequenceLabeler("nll", n_epochs=30, l2=1e-3, progress=False).fit(X, Y)
    assert model.score(X_test, Y_test) >= plain.score(X_test, Y_test) - 0.01
    # data that holds the absent label: scored (those tokens count as errors), and as X_dev
    Y_rare = [list(y) for y in Y_test]
    Y_rare[0][0] = "Z"
    predicted = model.predict(X_test)
    assert model.score(X_test, Y_rare) == pytest.approx(
        sum(p == t for ps, ts in zip(predicted, Y_rare) for p, t in zip(ps, ts))
        / sum(map(len, Y_rare)))
    model.fit(X, Y, X_test, Y_rare)
    assert len(model.history_["dev_accuracy"]) == model.n_epochs_
    model.save(tmp_path / "m.npz")
    loaded = SequenceLabeler.load(tmp_path / "m.npz")
    assert loaded.classes_ == model.classes_ and loaded.labels == model.classes_
    assert loaded.predict(X_test) == predicted


def test_training_labels_outside_the_declared_set_are_refused(tagging):
    (X, Y), _ = tagging
    i = next(i for i, labels in enumerate(Y) if "C" in labels)
    with pytest.raises(TargetError, match=f"sequence {i}, position {Y[i].index('C')}: label "
                                          "'C' is not among the declared labels"):
        SequenceLabeler(labels=["A", "B"], progress=False).fit(X, Y)
    with pytest.raises(TargetError, match="all be str or all be int"):
        SequenceLabeler(labels=["A", 1], progress=False).fit(X, Y)
    with pytest.raises(TargetError, match="declares no label"):
        SequenceLabeler(labels=[], progress=False).fit(X, Y)
    with pytest.raises(TargetError, match="list of labels"):
        SequenceLabeler(labels="ABC", progress=False).fit(X, Y)


# --------------------------------------------------------------------------- L1 (OWL-QN)
def objective_of(model, X, Y, l1, l2):
    """The training objective of a fitted labeler's parameter layout, and its smooth part's
    gradient: (1/N) sum NLL + l2/2 ||theta||^2 (+ l1 ||theta||_1), through _value_and_grad
    (itself checked against central differences above)."""
    attributes = model._design(X, fit=False)
    design = _Design.of(attributes)
    codes = model._encode(Y, attributes.lengths, fit=False)
    rows = np.arange(len(codes), dtype=np.int64)
    n = len(Y)

    def smooth(theta):
        value, grad = _value_and_grad(model._chain, model._loss, theta, design, rows, codes,
                                      attributes.lengths)
        return value / n + 0.5 * l2 * theta @ theta, grad / n + l2 * theta

    def full(theta):
        return smooth(theta)[0] + l1 * np.abs(theta).sum()

    return smooth, full


@pytest.mark.parametrize("l1", [1e-2, 5e-2])
def test_l1_reaches_the_optimum_of_a_split_variable_reference(tagging, l1):
    """OWL-QN against scipy's L-BFGS-B on theta = u - v, u, v >= 0 (the same minimum), run
    to tight tolerances; and the optimality conditions of the L1 problem."""
    import scipy.optimize

    (X, Y), _ = tagging
    l2 = 1e-3
    model = SequenceLabeler("nll", LBFGS(), n_epochs=1000, l1=l1, l2=l2, delta=0.0,
                            progress=False).fit(X, Y)
    assert model.stop_reason_.startswith("converged")
    smooth, full = objective_of(model, X, Y, l1, l2)
    theta = model._theta
    n = len(theta)

    def split(z):
        value, grad = smooth(z[:n] - z[n:])
        return value + l1 * z.sum(), np.concatenate([grad + l1, l1 - grad])

    reference = scipy.optimize.minimize(
        split, np.zeros(2 * n), jac=True, method="L-BFGS-B", bounds=[(0, None)] * (2 * n),
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 20000})
    best = reference.x[:n] - reference.x[n:]
    assert full(theta) == pytest.approx(full(best), rel=1e-7)
    np.testing.assert_array_equal(theta == 0, best == 0)  # the same weights are exactly 0
    np.testing.assert_allclose(theta, best, atol=1e-2)
    grad = smooth(theta)[1]
    on = theta != 0
    assert np.abs(grad[on] + l1 * np.sign(theta[on])).max() < 1e-3
    assert np.abs(grad[~on]).max() <= l1 + 1e-3
    assert (~on).sum() >= 5


def test_l1_makes_weights_exactly_zero_and_more_with_a_larger_weight(tagging):
    (X, Y), (X_test, Y_test) = tagging
    zeros = []
    for l1 in (0.0, 1e-3, 1e-2, 5e-2):
        model = SequenceLabeler("nll", [(Adam(0.05), 2), (LBFGS(), 300)], l1=l1, l2=1e-3,
                                progress=False).fit(X, Y)
        zeros.append(int((model._theta == 0).sum()))
        assert model.score(X_test, Y_test) >= 0.97
    assert zeros[0] == 0 and zeros == sorted(zeros) and zeros[-1] > zeros[1]


def test_l1_needs_a_last_lbfgs_stage(tagging):
    (X, Y), _ = tagging
    with pytest.raises(FactorGraphError, match="l1 > 0 needs L-BFGS as the last stage"):
        SequenceLabeler("hinge", Adam(0.1), l1=0.1).fit(X, Y)
    with pytest.raises(FactorGraphError, match="online perceptron has no L2 or L1"):
        SequenceLabeler("perceptron", l1=0.1).fit(X, Y)
    with pytest.raises(FactorGraphError, match="l1"):
        SequenceLabeler(l1=-1.0).fit(X, Y)


def test_l1_matches_python_crfsuite_c1_on_conll2000():
    """CRFsuite's L1 (c1, OWL-QN) and ours minimize the same objective on 100 CoNLL-2000
    sentences: its feature set (seen attribute-label pairs, every transition with
    possible_transitions, no start/end energies), c1 = 0.5, c2 = 0.01 on the summed NLL.
    Its weights, read back from its model, give our objective the same value as ours."""
    pycrfsuite = pytest.importorskip("pycrfsuite", reason="python-crfsuite is not installed")
    from factorgraph_ebm.sequence.datasets import read_conll2000
    from factorgraph_ebm.sequence.features import crfsuite_chunking_attributes

    path = DATA / "conll2000" / "train.txt"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    sentences = read_conll2000(path)[:100]
    X = [crfsuite_chunking_attributes(s) for s in sentences]
    Y = [list(s.chunks) for s in sentences]
    n, c1, c2 = len(X), 0.5, 0.01
    ours = SequenceLabeler("nll", LBFGS(memory=6), n_epochs=1000, l1=c1 / n, l2=2 * c2 / n,
                           boundary=False, delta=1e-7, progress=False).fit(X, Y)
    trainer = pycrfsuite.Trainer(algorithm="lbfgs", verbose=False)
    for x, y in zip(X, Y):
        trainer.append(x, y)
    trainer.set_params({"c1": c1, "c2": c2, "feature.possible_transitions": True,
                        "max_iterations": 1000, "delta": 1e-7, "epsilon": 1e-7})
    model_file = str(Path(tempfile.mkdtemp()) / "c1.crfsuite")
    trainer.train(model_file)
    tagger = pycrfsuite.Tagger()
    tagger.open(model_file)
    info = tagger.info()
    tagger.close()
    chain, classes = ours._chain, ours.classes_
    column = ours.indexer_.vocabulary_
    dense = np.zeros((chain.n_features, chain.n_labels))
    for (attribute, label), weight in info.state_features.items():
        dense[column[attribute], classes.index(label)] = -weight  # energy = -score
    theirs = np.zeros(chain.n_params)
    theirs[: chain.n_weights] = dense.ravel()[chain.w_flat]
    assert np.abs(theirs).sum() == pytest.approx(np.abs(dense).sum())  # all in our pattern
    transition = chain.unpack(theirs)[1]
    for (previous, label), weight in info.transitions.items():
        transition[classes.index(previous), classes.index(label)] = -weight
    _, full = objective_of(ours, X, Y, c1 / n, 2 * c2 / n)
    assert full(ours._theta) == pytest.approx(full(theirs), rel=1e-5)
    nonzero = np.count_nonzero(ours._theta), np.count_nonzero(theirs)
    assert abs(nonzero[0] - nonzero[1]) <= 0.02 * nonzero[1]
    assert nonzero[0] < 0.1 * chain.n_params  # sparse: L2 alone keeps every weight


# --------------------------------------------------------------------------- odds and ends
def test_predict_single_is_predict_of_one(tagging):
    (X, Y), (X_test, _) = tagging
    model = SequenceLabeler("perceptron", n_epochs=2, progress=False).fit(X, Y)
    assert [model.predict_single(x) for x in X_test[:10]] == model.predict(X_test[:10])


def test_history_is_a_table(tagging):
    pandas = pytest.importorskip("pandas", reason="pandas is not installed")
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler("nll", [(Adam(0.1), 2), (LBFGS(), 5)], progress=False)
    table = pandas.DataFrame(model.fit(X, Y).history_)
    assert list(table.columns) == ["loss", "seconds"] and len(table) == model.n_epochs_
    table = pandas.DataFrame(model.fit(X, Y, X_test, Y_test).history_)
    assert list(table.columns) == ["loss", "seconds", "dev_accuracy"]
    assert len(table) == model.n_epochs_ and table["seconds"].is_monotonic_increasing


def test_blas_runs_on_one_thread_while_training(tagging, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]:
        pytest.skip("no BLAS library is loaded")
    (X, Y), _ = tagging
    seen = []
    batch = _ChainObjective.batch

    def recording(self, theta, indices):
        seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info()
                    if i["user_api"] == "blas")
        return batch(self, theta, indices)

    monkeypatch.setattr(_ChainObjective, "batch", recording)
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    SequenceLabeler("nll", LBFGS(), n_epochs=3, progress=False).fit(X, Y)
    assert seen and set(seen) == {1}
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info()] == before


def test_a_bar_that_stops_early_says_why(tagging, capsys):
    (X, Y), _ = tagging
    SequenceLabeler("nll", LBFGS(), n_epochs=500, l2=1e-3, delta=1e-3, progress=True).fit(X, Y)
    assert "converged: the objective improved by <= 0.001" in capsys.readouterr().err
    model = SequenceLabeler("nll", LBFGS(), n_epochs=3, progress=True).fit(X, Y)
    assert model.stop_reason_ is None and "converged" not in capsys.readouterr().err
