"""Training: optimizer updates in closed form, L-BFGS against scipy on a brute-force
objective, learning on data labeled by brute force, seeding, history, progress bar, errors."""

import dataclasses
import itertools
import re

import numpy as np
import pytest
import scipy.optimize
from reference import BruteForce, logsumexp

import factorgraph_ebm as fg
from factorgraph_ebm.inference import Options, infer_checked
from factorgraph_ebm.losses import (
    EnergyLoss,
    HingeLoss,
    LogLoss,
    MCELoss,
    MEELoss,
    NLLLoss,
    PerceptronLoss,
)
from factorgraph_ebm.models import LinearModel, TableModel
from factorgraph_ebm.optim import LBFGS, SGD, Adam, _owlqn
from factorgraph_ebm.train import TrainResult, fit, predict, score

N_VARS, N_STATES, N_FEATURES = 3, 2, 2


def chain_model():
    graph = fg.FactorGraph()
    names = [f"y{i}" for i in range(N_VARS)]
    graph.add_variables(names, N_STATES)
    for name in names:
        graph.add_factor([name], np.zeros(N_STATES))
    for a, b in zip(names, names[1:]):
        graph.add_factor([a, b], np.zeros((N_STATES, N_STATES)))
    unary = list(range(N_VARS))
    pairwise = list(range(N_VARS, 2 * N_VARS - 1))
    model = LinearModel(graph, {"emit": unary, "trans": pairwise},
                        {"emit": N_FEATURES, "trans": 1})
    return graph, names, model


def chain_energy(w, features, y):
    """E(y) of the chain written out by hand: sum_i W_emit[y_i] . x_i + sum_i W_trans[y_i,
    y_i+1] (the documented parameter layout: W_emit (states, features) then W_trans
    (states^2, 1), each C order)."""
    w_emit = w[: N_STATES * N_FEATURES].reshape(N_STATES, N_FEATURES)
    w_trans = w[N_STATES * N_FEATURES :].reshape(N_STATES, N_STATES)
    energy = sum(w_emit[y[i]] @ features[i] for i in range(N_VARS))
    return energy + sum(w_trans[y[i], y[i + 1]] for i in range(N_VARS - 1))


def labeled_samples(n_samples, seed, model, graph, names):
    """Inputs with labels from a random 'true' model, decoded by brute force."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(scale=2.0, size=model.n_params)
    samples = []
    for _ in range(n_samples):
        features = rng.normal(size=(N_VARS, N_FEATURES))
        configs = list(itertools.product(range(N_STATES), repeat=N_VARS))
        energies = [chain_energy(w_true, features, y) for y in configs]
        best = configs[int(np.argmin(energies))]
        x = {"emit": features, "trans": np.ones((N_VARS - 1, 1))}
        samples.append((x, dict(zip(names, best))))
    return samples


class RecordingModel:
    """A model that delegates to another and records, per loss evaluation, which sample
    (by the identity of its input ``x``) was visited."""

    def __init__(self, model):
        self.model, self.graph, self.n_params = model, model.graph, model.n_params
        self.inputs = []

    def init_params(self, rng):
        return self.model.init_params(rng)

    def energies(self, params, x):
        self.inputs.append(id(x))
        return self.model.energies(params, x)

    def backward(self, params, x, grad_energies):
        return self.model.backward(params, x, grad_energies)

    def visits(self, samples):
        """Indices of the samples visited, in order."""
        index = {id(x): i for i, (x, _) in enumerate(samples)}
        return [index[i] for i in self.inputs]

    def batches(self, samples, batch_size):
        """The visits cut into consecutive batches of ``batch_size``."""
        order = self.visits(samples)
        return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


# --------------------------------------------------------------------------- optimizers
def test_sgd_momentum_matches_the_closed_form():
    """Constant gradient g: w_t = w_0 - lr g sum_{k=1..t} (1 - mu^k) / (1 - mu)."""
    lr, mu, g = 0.1, 0.8, np.array([1.0, -2.0])
    step = SGD(lr, mu).stepper(2)
    w = np.zeros(2)
    for t in range(1, 6):
        w = step(w, g)
        expected = -lr * g * sum((1 - mu**k) / (1 - mu) for k in range(1, t + 1))
        np.testing.assert_allclose(w, expected)


def test_adam_matches_the_closed_form():
    """Constant gradient: the bias-corrected moments are g and g^2, so every step moves
    each coordinate by lr * g / (|g| + eps)."""
    lr, eps, g = 0.01, 1e-8, np.array([3.0, -0.5, 0.0])
    step = Adam(lr, eps=eps).stepper(3)
    w = np.ones(3)
    for t in range(1, 5):
        w = step(w, g)
        np.testing.assert_allclose(w, 1.0 - t * lr * g / (np.abs(g) + eps))


# --------------------------------------------------------------------------- learning
def nll_objective(samples, names, l2):
    """The documented training objective for the NLL loss at beta = 1, by brute force:
    W -> mean_i [E(W, Y^i, X^i) + ln sum_Y exp(-E(W, Y, X^i))] + l2/2 ||W||^2."""
    configs = list(itertools.product(range(N_STATES), repeat=N_VARS))

    def objective(w):
        total = 0.0
        for x, target in samples:
            energies = np.array([chain_energy(w, x["emit"], y) for y in configs])
            desired = chain_energy(w, x["emit"], tuple(target[n] for n in names))
            total += desired + logsumexp(-energies)
        return total / len(samples) + 0.5 * l2 * w @ w

    return objective


def central_gradient(f, w, h=1e-6):
    """The gradient of f at w by central differences, one coordinate at a time."""
    return np.array([(f(w + h * e) - f(w - h * e)) / (2 * h) for e in np.eye(len(w))])


def test_lbfgs_nll_reaches_the_brute_force_optimum():
    """The trained CRF minimizes mean NLL + l2/2 ||W||^2, written out by brute force and
    minimized independently with scipy's BFGS."""
    graph, names, model = chain_model()
    samples = labeled_samples(12, 0, model, graph, names)
    l2 = 0.1
    objective = nll_objective(samples, names, l2)
    result = fit(model, NLLLoss(1.0), samples, optimizer=LBFGS(tol=1e-10), n_epochs=200,
                   l2=l2, progress=False, accuracy=False)
    reference = scipy.optimize.minimize(objective, np.zeros(model.n_params), method="BFGS",
                                        options={"gtol": 1e-9})
    assert objective(result.params) == pytest.approx(reference.fun, abs=1e-7)
    np.testing.assert_allclose(result.params, reference.x, atol=1e-3)
    history = result.history
    assert history.loss[-1] + 0.5 * l2 * result.params @ result.params == pytest.approx(
        reference.fun, abs=1e-7
    )


@pytest.mark.parametrize(
    ("loss", "optimizer", "batch_size"),
    [
        (HingeLoss(1.0), Adam(0.05), 1),
        (PerceptronLoss(), SGD(0.05, momentum=0.0), 1),
        (NLLLoss(1.0), SGD(0.1, momentum=0.9), 4),
        (NLLLoss(1.0), Adam(0.05), 2),
    ],
    ids=["hinge-adam", "perceptron-sgd", "nll-sgd-momentum", "nll-adam"],
)
def test_training_fits_separable_data(loss, optimizer, batch_size):
    graph, names, model = chain_model()
    samples = labeled_samples(40, 1, model, graph, names)
    result = fit(model, loss, samples, optimizer=optimizer, n_epochs=25,
                   batch_size=batch_size, progress=False)
    history = result.history
    assert len(history.loss) == len(history.accuracy) == len(history.seconds) == 25
    assert history.accuracy[-1] >= 0.9
    assert np.mean(history.loss[-5:]) < history.loss[0]
    # predictions agree with brute force on the trained energies
    x, _ = samples[0]
    bf = BruteForce(_graph_with(graph, model.energies(result.params, x)))
    best = bf.configs[np.argmin(bf.energies)]
    assert predict(model, result.params, x) == dict(zip(names, best.tolist()))


def _graph_with(graph, theta):
    """A copy of ``graph`` whose tables are taken from theta (for the brute force)."""
    copy = fg.FactorGraph()
    copy.add_variables(graph.variables, graph.n_states)
    start = 0
    for f in range(graph.n_factors):
        scope = graph.factor_scope(f)
        shape = tuple(int(graph.n_states[graph.index_of(v)]) for v in scope)
        size = int(np.prod(shape))
        copy.add_factor(scope, theta[start : start + size].reshape(shape))
        start += size
    return copy


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_history_records_the_mean_loss(batch_size):
    """With a negligible step the parameters stay put, so the first epoch's loss is the
    mean NLL at the initial parameters (brute force)."""
    graph, names, model = chain_model()
    samples = labeled_samples(7, 3, model, graph, names)
    params = np.random.default_rng(0).normal(size=model.n_params)
    configs = list(itertools.product(range(N_STATES), repeat=N_VARS))
    expected = np.mean([
        chain_energy(params, x["emit"], tuple(t[n] for n in names))
        + logsumexp([-chain_energy(params, x["emit"], y) for y in configs])
        for x, t in samples
    ])
    result = fit(model, NLLLoss(), samples, optimizer=SGD(1e-12, momentum=0.0), n_epochs=1,
                 batch_size=batch_size, params=params, progress=False)
    assert result.history.loss[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("batch_size", [5, 2])
def test_sgd_step_follows_the_regularized_objective(batch_size):
    """Plain SGD steps W <- W - lr (mean batch gradient + l2 W), checked against finite
    differences of the brute-force objective of each batch (l2/2 ||W||^2 included). The
    batches are recovered by recording which samples each step visits."""
    graph, names, model = chain_model()
    samples = labeled_samples(5, 2, model, graph, names)
    recorder = RecordingModel(model)
    w0 = np.random.default_rng(1).normal(size=model.n_params)
    lr, l2 = 0.3, 0.7
    result = fit(recorder, NLLLoss(), samples, optimizer=SGD(lr, momentum=0.0), n_epochs=1,
                 batch_size=batch_size, l2=l2, params=w0, progress=False, accuracy=False)
    w = w0
    for batch in recorder.batches(samples, batch_size):
        objective = nll_objective([samples[i] for i in batch], names, l2)
        w = w - lr * central_gradient(objective, w)
    np.testing.assert_allclose(result.params, w, rtol=1e-6, atol=1e-7)


def test_training_with_latent_variables_and_a_table_model():
    """A hidden variable between two outputs: accuracy counts only the outputs, and the
    trained table puts the desired pair at the lowest energy (brute force)."""
    graph = fg.FactorGraph()
    graph.add_variables(["a", "h", "b"], [2, 3, 2])
    graph.add_factor(["a", "h"], np.zeros((2, 3)))
    graph.add_factor(["h", "b"], np.zeros((3, 2)))
    model = TableModel(graph)
    samples = [(None, {"a": 1, "b": 0})]
    result = fit(model, NLLLoss(), samples, latent=["h"], optimizer=Adam(0.1),
                   n_epochs=30, progress=False, seed=3,
                   params=np.random.default_rng(0).normal(scale=0.1, size=model.n_params))
    assert result.history.accuracy[-1] == 1.0
    trained = BruteForce(_graph_with(graph, model.energies(result.params)))
    best = trained.configs[np.argmin(trained.energies)]
    assert (best[0], best[2]) == (1, 0)
    assert predict(model, result.params, None, latent=["h"]) == {"a": 1, "b": 0}


# --------------------------------------------------------------------------- runs
def test_each_epoch_visits_a_seeded_permutation():
    """SGD visits every sample once per epoch, in an order that changes between epochs and
    is the same for the same seed."""
    graph, names, model = chain_model()
    samples = labeled_samples(12, 4, model, graph, names)
    orders = []
    for seed in (5, 5, 6):
        recorder = RecordingModel(model)
        fit(recorder, HingeLoss(), samples, optimizer=SGD(0.05), n_epochs=2, seed=seed,
            progress=False, accuracy=False)
        visits = recorder.visits(samples)
        epochs = [visits[:12], visits[12:]]
        assert len(visits) == 24 and all(sorted(e) == list(range(12)) for e in epochs)
        assert epochs[0] != epochs[1]
        orders.append(visits)
    assert orders[0] == orders[1] != orders[2]


def test_same_seed_same_run_and_callbacks():
    graph, names, model = chain_model()
    model.init_scale = 0.3
    samples = labeled_samples(15, 4, model, graph, names)
    seen = []
    runs = [
        fit(model, HingeLoss(), samples, optimizer=SGD(0.05), n_epochs=3, seed=seed,
              progress=False, callback=lambda epoch, params: seen.append(epoch))
        for seed in (7, 7, 8)
    ]
    np.testing.assert_array_equal(runs[0].params, runs[1].params)
    assert runs[0].history.loss == runs[1].history.loss
    assert not np.array_equal(runs[0].params, runs[2].params)
    assert seen == [1, 2, 3] * 3


def test_progress_bar_can_be_switched_off(capsys):
    graph, names, model = chain_model()
    samples = labeled_samples(3, 5, model, graph, names)
    fit(model, HingeLoss(), samples, n_epochs=2, progress=False)
    assert capsys.readouterr().err == ""
    fit(model, HingeLoss(), samples, n_epochs=2)  # None: only on a terminal
    assert capsys.readouterr().err == ""
    fit(model, HingeLoss(), samples, n_epochs=2, progress=True)
    assert "training (hinge)" in capsys.readouterr().err


def test_a_bar_that_stops_early_says_why(capsys):
    graph, names, model = chain_model()
    samples = labeled_samples(6, 5, model, graph, names)
    result = fit(model, NLLLoss(), samples, optimizer=LBFGS(), n_epochs=500, l2=0.1,
                 progress=True)
    assert result.stop_reason.startswith("converged") and len(result.history.loss) < 500
    assert result.stop_reason in capsys.readouterr().err
    result = fit(model, NLLLoss(), samples, optimizer=LBFGS(), n_epochs=2, progress=True)
    assert result.stop_reason is None and "converged" not in capsys.readouterr().err


def test_blas_runs_on_one_thread_while_training():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]:
        pytest.skip("no BLAS library is loaded")
    graph, names, model = chain_model()
    samples = labeled_samples(3, 5, model, graph, names)
    seen = []

    def record(epoch, params):
        seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info()
                    if i["user_api"] == "blas")

    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    for optimizer in (LBFGS(), Adam()):
        fit(model, NLLLoss(), samples, optimizer=optimizer, n_epochs=2, progress=False,
            callback=record)
    assert seen and set(seen) == {1}
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info()] == before


def test_predict_and_score_use_the_inference_options_of_training(monkeypatch):
    """A TrainResult keeps the BP options and latent variables of fit; predict and score
    given it run inference with them (explicit keywords override)."""
    graph = fg.FactorGraph()
    names = ["a", "b", "c", "d"]
    graph.add_variables(names, 2)
    for u, v in zip(names, names[1:] + names[:1]):
        graph.add_factor([u, v], np.zeros((2, 2)))
    model = TableModel(graph)
    target = {"a": 1, "b": 0, "c": 1, "d": 1}
    options = dict(method="bp", damping=0.5, max_iter=300, schedule="parallel", warn=False)
    result = fit(model, HingeLoss(1.0), [(None, target)], optimizer=SGD(0.1), n_epochs=10,
                 progress=False, **options)
    assert result.bp_options == options and result.latent == ()
    calls = []
    run = infer_checked

    def recording(graph, cg, theta, beta, checked, **kwargs):  # training's inference entry
        calls.append(dataclasses.asdict(checked))
        return run(graph, cg, theta, beta, checked, **kwargs)

    monkeypatch.setattr("factorgraph_ebm.train.infer_checked", recording)
    assert predict(model, result, None) == target
    assert score(model, result, [(None, target)]) == 1.0
    assert score(model, result, [(None, {**target, "a": 0})]) == 0.75
    assert len(calls) == 3
    for call in calls:
        assert {k: call[k] for k in options} == options
    predict(model, result, None, damping=0.0)
    assert calls[-1]["damping"] == 0.0 and calls[-1]["schedule"] == "parallel"
    predict(model, result.params, None)  # bare parameters: the defaults
    assert calls[-1] == dataclasses.asdict(Options())
    # latent variables of training stay out of the answer
    hidden = TrainResult(result.params, result.history, options, ("d",))
    assert predict(model, hidden, None) == {k: target[k] for k in "abc"}
    assert score(model, hidden, [(None, {k: target[k] for k in "abc"})]) == 1.0


# --------------------------------------------------------------------------- L1 (OWL-QN)
def test_owlqn_finds_the_soft_thresholded_minimum_of_a_separable_quadratic():
    """min 1/2 sum d_i (x_i - c_i)^2 + l1 |x|_1 has the closed form
    x_i = sign(c_i) max(|c_i| - l1 / d_i, 0)."""
    rng = np.random.default_rng(0)
    c, d, l1 = rng.normal(size=30), rng.uniform(0.5, 3.0, size=30), 0.7
    x, n_iter, _, success, _ = _owlqn(
        lambda x: (0.5 * np.sum(d * (x - c) ** 2), d * (x - c)), np.zeros(30), l1,
        maxiter=200, memory=5, tol=1e-10, callback=lambda x, value: False, ftol=0.0)
    exact = np.sign(c) * np.maximum(np.abs(c) - l1 / d, 0.0)
    assert success and n_iter < 200
    np.testing.assert_allclose(x, exact, atol=1e-8)
    np.testing.assert_array_equal(x == 0, exact == 0)
    assert (exact == 0).sum() >= 5


def test_owlqn_least_squares_meets_the_optimality_conditions():
    """Lasso: at the minimum of 1/2 ||A x - b||^2 + l1 |x|_1, grad_i = -l1 sign(x_i) where
    x_i != 0 and |grad_i| <= l1 where x_i = 0; the value matches scipy's L-BFGS-B on the
    split x = u - v, u, v >= 0."""
    rng = np.random.default_rng(1)
    a, b, l1 = rng.normal(size=(40, 20)), rng.normal(size=40), 3.0

    def smooth(x):
        r = a @ x - b
        return 0.5 * r @ r, a.T @ r

    x, _, _, success, _ = _owlqn(smooth, np.zeros(20), l1, maxiter=1000, memory=10,
                                  tol=1e-9, callback=lambda x, value: False, ftol=0.0)
    grad = smooth(x)[1]
    on = x != 0
    assert success and 0 < on.sum() < 20
    np.testing.assert_allclose(grad[on], -l1 * np.sign(x[on]), atol=1e-6)
    assert np.abs(grad[~on]).max() <= l1 + 1e-9

    def split(z):
        value, g = smooth(z[:20] - z[20:])
        return value + l1 * z.sum(), np.concatenate([g + l1, l1 - g])

    reference = scipy.optimize.minimize(split, np.zeros(40), jac=True, method="L-BFGS-B",
                                        bounds=[(0, None)] * 40,
                                        options={"gtol": 1e-12, "ftol": 1e-15})
    assert smooth(x)[0] + l1 * np.abs(x).sum() == pytest.approx(reference.fun, rel=1e-10)


def test_fit_with_l1_reaches_the_brute_force_optimum():
    """fit(..., l1=) minimizes mean NLL + l2/2 ||W||^2 + l1 ||W||_1, the smooth part written
    out by brute force: the optimality conditions hold with central-difference gradients."""
    graph, names, model = chain_model()
    samples = labeled_samples(12, 0, model, graph, names)
    l2, l1 = 0.05, 0.2
    objective = nll_objective(samples, names, l2)
    result = fit(model, NLLLoss(1.0), samples, optimizer=LBFGS(tol=1e-9), n_epochs=500,
                 l2=l2, l1=l1, progress=False, accuracy=False)
    w = result.params
    grad = central_gradient(objective, w)
    on = w != 0
    assert 0 < on.sum() < len(w)  # some weights exactly 0, some not
    np.testing.assert_allclose(grad[on], -l1 * np.sign(w[on]), atol=1e-4)
    assert np.abs(grad[~on]).max() <= l1 + 1e-4
    assert result.history.loss[-1] + 0.5 * l2 * w @ w == pytest.approx(objective(w), abs=1e-9)


def test_warm_started_loopy_training_learns():
    """A 4-cycle of binary variables with a TableModel, trained by hinge loss with
    warm-started BP messages, ends with the desired answer at the unique lowest energy."""
    graph = fg.FactorGraph()
    names = ["a", "b", "c", "d"]
    graph.add_variables(names, 2)
    for u, v in zip(names, names[1:] + names[:1]):
        graph.add_factor([u, v], np.zeros((2, 2)))
    model = TableModel(graph)
    target = {"a": 1, "b": 0, "c": 1, "d": 1}
    result = fit(model, HingeLoss(1.0), [(None, target)], optimizer=SGD(0.1), n_epochs=20,
                   progress=False, damping=0.3, warn=False)
    bf = BruteForce(_graph_with(graph, model.energies(result.params)))
    order = np.argsort(bf.energies)
    assert tuple(bf.configs[order[0]]) == (1, 0, 1, 1)
    assert bf.energies[order[1]] - bf.energies[order[0]] >= 1.0 - 1e-9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(optimizer="adam"), "optimizer must be SGD, Adam or LBFGS"),
        (dict(n_epochs=0), "n_epochs must be an integer >= 1, got 0"),
        (dict(batch_size=2.0), "batch_size must be an integer >= 1, got 2.0"),
        (dict(l2=-1.0), "the 'l2' parameter of fit must be a number >= 0"),
        (dict(l1=0.1), "l1 > 0 needs the LBFGS optimizer (it runs OWL-QN)"),
        (dict(progress="yes"), "progress must be True, False or None"),
        (dict(params=np.zeros(3)), "params must have shape (8,), got (3,)"),
    ],
)
def test_bad_training_options(kwargs, message):
    graph, names, model = chain_model()
    samples = labeled_samples(2, 6, model, graph, names)
    with pytest.raises(fg.FactorGraphError, match=re.escape(message)):
        fit(model, HingeLoss(), samples, **{"progress": False, **kwargs})
    with pytest.raises(fg.FactorGraphError, match="at least one"):
        fit(model, HingeLoss(), [], progress=False)


def test_lbfgs_takes_only_smooth_losses():
    """L-BFGS is refused for losses with kinks (a minimum over answers, or over latent
    variables), and accepted for free-energy losses."""
    graph, names, model = chain_model()
    samples = labeled_samples(3, 6, model, graph, names)
    options = dict(optimizer=LBFGS(), n_epochs=1, progress=False, accuracy=False)
    for loss in (PerceptronLoss(), HingeLoss(), LogLoss(), MCELoss()):
        with pytest.raises(fg.FactorGraphError, match="LBFGS needs a smooth loss"):
            fit(model, loss, samples, **options)
    for loss in (NLLLoss(), MEELoss(), EnergyLoss()):
        fit(model, loss, samples, **options)
    hidden = fg.FactorGraph()
    hidden.add_variables(["a", "h"], [2, 3])
    hidden.add_factor(["a", "h"], np.zeros((2, 3)))
    table = TableModel(hidden)
    with pytest.raises(fg.FactorGraphError, match="with latent variables has kinks"):
        fit(table, EnergyLoss(), [(None, {"a": 1})], latent=["h"], **options)
    fit(table, EnergyLoss(beta=1.0), [(None, {"a": 1})], latent=["h"], **options)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(0.0), "'learning_rate' parameter of SGD must be a number > 0, got 0.0"),
        (lambda: SGD(0.1, momentum=1.0),
         "'momentum' parameter of SGD must be a number >= 0 and < 1, got 1.0"),
        (lambda: Adam(beta2=1.0), "'beta2' parameter of Adam"),
        (lambda: Adam(eps=0), "'eps' parameter of Adam"),
        (lambda: LBFGS(memory=0), "'memory' parameter of LBFGS must be an integer >= 1"),
    ],
)
def test_bad_optimizer_parameters(make, message):
    with pytest.raises(fg.FactorGraphError, match=re.escape(message)):
        make()


def test_fit_checks_options_once_and_energies_once_per_step(monkeypatch):
    """Training enters inference through the trusted entry: the inference options are
    checked once per fit, each step's energies once (not again inside every inference),
    and the desired answer is clamped as an array of states, not a mapping."""
    import factorgraph_ebm.inference as inference
    import factorgraph_ebm.losses as losses

    hidden = fg.FactorGraph()
    hidden.add_variables(["a", "b", "h"], [2, 2, 3])
    hidden.add_factor(["a", "h"], np.zeros((2, 3)))
    hidden.add_factor(["h", "b"], np.zeros((3, 2)))
    model = TableModel(hidden)
    samples = [(None, {"a": 1, "b": 0}), (None, {"a": 0, "b": 1})]
    counts = {"options": 0, "energies": 0, "observed": []}
    checked, energies, entry = inference.Options.checked, losses.checked_energy_vector, \
        losses.infer_checked

    def count_options(**kwargs):
        counts["options"] += 1
        return checked(**kwargs)

    def count_energies(*args):
        counts["energies"] += 1
        return energies(*args)

    def record_entry(*args, observed=None, **kwargs):
        counts["observed"].append(observed)
        return entry(*args, observed=observed, **kwargs)

    monkeypatch.setattr(inference.Options, "checked", staticmethod(count_options))
    monkeypatch.setattr(losses, "checked_energy_vector", count_energies)
    monkeypatch.setattr(losses, "infer_checked", record_entry)
    fit(model, NLLLoss(), samples, latent=["h"], optimizer=SGD(0.1), n_epochs=3,
        accuracy=False, progress=False, damping=0.1)
    assert counts["options"] == 1
    assert counts["energies"] == 3 * len(samples)
    clamped = [o for o in counts["observed"] if o is not None]
    assert len(clamped) == 3 * len(samples)  # E_C over the latent h: one clamped run a step
    assert all(o.dtype == np.int64 and o.tolist() in ([1, 0, -1], [0, 1, -1]) for o in clamped)


def test_optimizers_and_fit_take_numpy_scalars():
    """NumPy integers and floats are numbers like any other: every optimizer and fit take
    them (one validation, factorgraph_ebm._validation), and the optimizers keep Python
    numbers; a bool is not an integer."""
    lbfgs = LBFGS(tol=np.float32(1e-6), memory=np.int64(5), delta=np.int32(0),
                  period=np.uint8(3))
    sgd = SGD(learning_rate=np.float64(0.1), momentum=np.int64(0))
    adam = Adam(learning_rate=np.int32(1), beta1=np.float16(0.5), eps=np.float64(1e-8))
    assert (lbfgs.memory, lbfgs.period, sgd.momentum, adam.learning_rate) == (5, 3, 0.0, 1.0)
    for value in (lbfgs.memory, lbfgs.period, lbfgs.delta, lbfgs.tol, sgd.learning_rate,
                  sgd.momentum, adam.learning_rate, adam.beta1, adam.eps):
        assert type(value) in (int, float)
    assert lbfgs == LBFGS(tol=float(np.float32(1e-6)), memory=5, delta=0.0, period=3)
    graph, names, model = chain_model()
    samples = labeled_samples(2, 6, model, graph, names)
    for optimizer in (lbfgs, sgd, adam):
        loss = NLLLoss() if optimizer is lbfgs else HingeLoss()
        result = fit(model, loss, samples, optimizer=optimizer, n_epochs=np.int64(2),
                     batch_size=np.int32(2), progress=False)
        assert len(result.history.loss) <= 2
    with pytest.raises(fg.FactorGraphError, match="'memory' parameter of LBFGS must be an "
                                                  "integer >= 1, got True"):
        LBFGS(memory=True)
    with pytest.raises(fg.FactorGraphError, match="n_epochs must be an integer >= 1"):
        fit(model, HingeLoss(), samples, n_epochs=np.bool_(True), progress=False)


def test_lbfgs_crfsuite_stopping_rule():
    rule = LBFGS(delta=0.1, period=2)
    assert not rule.stalled([10.0, 9.0])  # fewer than period + 1 values
    assert not rule.stalled([10.0, 9.0, 8.0])  # improved by 2.0 > 0.1 * 8
    assert rule.stalled([10.0, 9.0, 9.5, 9.4])  # 9.0 - 9.4 < 0.94
    assert not LBFGS().stalled([1.0] * 50)  # delta = 0: rule off
    with pytest.raises(fg.FactorGraphError, match="'period' parameter of LBFGS"):
        LBFGS(period=0)
