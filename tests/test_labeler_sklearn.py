"""SequenceLabeler as a scikit-learn estimator: tags, fitted state, clone, the model-selection
tools with a sequence scorer and two worker processes, pickling, and progress bars that stay
out of cross-validation folds. Skipped when scikit-learn (>= 1.6, the tags protocol) is
missing: ``pip install -e ".[dev]"`` installs it."""

import io
import pickle

import numpy as np
import pytest
from test_labeler import synthetic_tagging

from factorgraph_ebm.exceptions import FactorGraphError, NotFittedError
from factorgraph_ebm.optim import LBFGS
from factorgraph_ebm.sequence.labeler import SequenceLabeler
from factorgraph_ebm.sequence.metrics import token_accuracy

sklearn = pytest.importorskip(
    "sklearn", minversion="1.6",
    reason="scikit-learn >= 1.6 is not installed (pip install -e '.[dev]')",
)
from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.exceptions import NotFittedError as SklearnNotFittedError  # noqa: E402
from sklearn.metrics import make_scorer  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_val_score,
    cross_validate,
)
from sklearn.utils import get_tags  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

FITTED = ("weights_", "n_weights_", "transition_", "start_", "end_")
accuracy_scorer = make_scorer(token_accuracy)


@pytest.fixture(scope="module")
def data():
    X, Y = synthetic_tagging(60, 0)
    return X, Y


def small(**params):
    return SequenceLabeler(**{"loss": "nll", "optimizer": LBFGS(), "n_epochs": 15, "l2": 1e-2,
                              "progress": False, **params})


def test_tags_say_an_estimator_that_is_not_a_classifier():
    labeler = SequenceLabeler()
    tags = get_tags(labeler)
    assert tags.estimator_type is None and tags.requires_fit and tags.target_tags.required
    assert not tags.input_tags.two_d_array
    assert not is_classifier(labeler) and not is_regressor(labeler)


def test_not_fitted_before_fit_and_fitted_after(data):
    X, Y = data
    labeler = small()
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(labeler)
    for name in FITTED:
        assert not hasattr(labeler, name)
    # scikit-learn's class and ours, which is a FactorGraphError (a ValueError)
    with pytest.raises(SklearnNotFittedError, match="not fitted"):
        labeler.predict(X)
    with pytest.raises(NotFittedError):
        labeler.predict_marginals(X)
    with pytest.raises(FactorGraphError):
        labeler.score(X, Y)
    labeler.fit(X, Y)
    check_is_fitted(labeler)
    assert all(hasattr(labeler, name) for name in FITTED)
    error = pytest.raises(NotFittedError, SequenceLabeler().predict, X).value
    assert isinstance(pickle.loads(pickle.dumps(error)), NotFittedError)


def test_clone_is_unfitted_with_equal_parameters(data):
    X, Y = data
    labeler = small(labels=["A", "B", "C", "D"]).fit(X, Y)
    twin = clone(labeler)
    assert twin.get_params() == labeler.get_params() and twin.labels is not labeler.labels
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(twin)
    assert twin.fit(X, Y).predict(X) == labeler.predict(X)


def manual_scores(make, X, Y, n_splits):
    """The per-fold token accuracies, fitted and scored here by hand."""
    scores = []
    for train, test in KFold(n_splits).split(X):
        model = make().fit([X[i] for i in train], [Y[i] for i in train])
        scores.append(token_accuracy([Y[i] for i in test], model.predict([X[i] for i in test])))
    return scores


def test_cross_val_score_with_a_sequence_scorer_in_two_processes(data):
    X, Y = data
    small().fit(X[:5], Y[:5]).predict(X[:2])  # the kernels, cached for the workers
    scores = cross_val_score(small(), X, Y, cv=3, scoring=accuracy_scorer, n_jobs=2)
    assert scores.tolist() == pytest.approx(manual_scores(small, X, Y, 3), abs=1e-12)
    assert min(scores) > 0.8
    default = cross_val_score(small(), X, Y, cv=3)  # the labeler's own score method
    assert default.tolist() == pytest.approx(scores.tolist(), abs=1e-12)


def test_grid_and_randomized_search_in_two_processes(data):
    X, Y = data
    small().fit(X[:5], Y[:5]).predict(X[:2])
    grid = GridSearchCV(small(), {"l2": [1e-3, 10.0]}, scoring=accuracy_scorer, cv=3,
                        n_jobs=2).fit(X, Y)
    for l2, mean in zip(grid.cv_results_["param_l2"], grid.cv_results_["mean_test_score"]):
        expected = np.mean(manual_scores(lambda l2=l2: small().set_params(l2=l2), X, Y, 3))
        assert mean == pytest.approx(expected, abs=1e-12)
    assert grid.best_params_ == {"l2": 1e-3}  # 10.0 flattens every energy
    refit = small(l2=1e-3).fit(X, Y)
    assert grid.best_estimator_.predict(X) == refit.predict(X)
    assert grid.score(X, Y) == pytest.approx(token_accuracy(Y, refit.predict(X)), abs=1e-12)

    scipy_stats = pytest.importorskip("scipy.stats")
    search = RandomizedSearchCV(small(), {"l2": scipy_stats.loguniform(1e-4, 1e-1)}, n_iter=2,
                                scoring=accuracy_scorer, cv=2, n_jobs=2, random_state=0)
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 2
    assert 1e-4 <= search.best_params_["l2"] <= 1e-1
    check_is_fitted(search.best_estimator_)


def test_declared_labels_give_every_fold_the_same_classes(data):
    X, Y = data
    Y = [list(y) for y in Y]
    Y[0][0] = "rare"  # in one fold's test part only
    results = cross_validate(small(labels=["A", "B", "C", "rare"]), X, Y, cv=3,
                             scoring=accuracy_scorer, return_estimator=True)
    assert all(m.classes_ == ["A", "B", "C", "rare"] for m in results["estimator"])
    without = cross_validate(small(), X, Y, cv=3, return_estimator=True)["estimator"]
    assert sorted(len(m.classes_) for m in without) == [3, 4, 4]


def test_pickle_round_trip_and_no_growth_after_predict(data):
    X, Y = data
    labeler = small().fit(X, Y)
    size = len(pickle.dumps(labeler))
    labeler.predict(X)
    labeler.predict_marginals(X)
    labeler.score(X, Y)
    assert len(pickle.dumps(labeler)) == size
    copy = pickle.loads(pickle.dumps(labeler))
    assert copy.predict(X) == labeler.predict(X)
    np.testing.assert_array_equal(copy.weights_, labeler.weights_)
    assert pickle.loads(pickle.dumps(SequenceLabeler())).get_params() == \
        SequenceLabeler().get_params()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a person watching a run has."""

    def isatty(self):
        return True


def test_progress_bar_only_where_a_person_watches(data, monkeypatch, capsys):
    X, Y = data
    make = dict(loss="nll", optimizer=LBFGS(), n_epochs=15, l2=1e-2)
    SequenceLabeler(**make).fit(X, Y)  # progress=None, stderr captured: no terminal
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    SequenceLabeler(**make).fit(X, Y)
    assert "SequenceLabeler (nll)" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    cross_val_score(SequenceLabeler(**make), X, Y, cv=2, n_jobs=1)  # folds in this process
    clone(SequenceLabeler(**make)).fit(X, Y)
    assert terminal.getvalue() == ""
    clone(SequenceLabeler(progress=True, **make)).fit(X, Y)  # asked for: shown
    assert "SequenceLabeler (nll)" in terminal.getvalue()
    with pytest.raises(FactorGraphError, match="progress must be"):
        SequenceLabeler(progress="yes").fit(X, Y)
