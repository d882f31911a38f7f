"""Every loss on the chain backend (the trellis kernels over a batch of sequences) against the
same loss on the equivalent FactorGraph chains (the graph backend: belief propagation, exact
on a tree), its gradient against central differences, and every loss training a
SequenceLabeler through the shared training loop."""

import numpy as np
import pytest
from test_labeler import synthetic_tagging

import factorgraph_ebm as fg
from factorgraph_ebm import losses as L
from factorgraph_ebm.chain_backend import ChainBatch
from factorgraph_ebm.exceptions import FactorGraphError
from factorgraph_ebm.optim import Adam
from factorgraph_ebm.sequence.labeler import SequenceLabeler

N_LABELS = 3
LENGTHS = np.array([3, 1, 4, 2], dtype=np.int64)

#: Every loss class, with and without loss augmentation where the margin has it.
ALL_LOSSES = [
    L.EnergyLoss(),
    L.PerceptronLoss(),
    L.HingeLoss(margin=1.0),
    L.HingeLoss(margin=0.5, hamming=1.0),
    L.LogLoss(),
    L.LogLoss(hamming=0.5),
    L.LVQ2Loss(delta=2.0),
    L.LVQ2Loss(delta=0.5, hamming=0.3),
    L.MCELoss(),
    L.MCELoss(hamming=0.3),
    L.SquareSquareLoss(margin=2.0),
    L.SquareSquareLoss(margin=8.0, hamming=0.5),  # E_I below the margin: pushed up
    L.SquareExpLoss(gamma=0.7),
    L.SquareExpLoss(gamma=1.0, hamming=0.5),
    L.NLLLoss(1.0),
    L.NLLLoss(2.5),
    L.MEELoss(1.0),
    L.MEELoss(0.5),
]


def energies(seed, boundary=True):
    """Random chain energies, mostly positive (so that LVQ2 and the square losses leave
    their flat zones): U (n_tokens, L), A (L, L), s and e (L,) or None, and targets."""
    rng = np.random.default_rng(seed)
    n = int(LENGTHS.sum())
    unary = rng.normal(size=(n, N_LABELS)) + 1.5
    transition = rng.normal(size=(N_LABELS, N_LABELS)) + 0.5
    start = rng.normal(size=N_LABELS) + 0.5 if boundary else None
    end = rng.normal(size=N_LABELS) + 0.5 if boundary else None
    target = rng.integers(0, N_LABELS, size=n)
    return unary, transition, start, end, target


def chain_graph(unary, transition, start, end):
    """The FactorGraph of one sequence: a unary factor per token, then the start and end
    factors (when given), then one pairwise factor per consecutive pair."""
    length = len(unary)
    graph = fg.FactorGraph()
    graph.add_variables(range(length), N_LABELS)
    for t in range(length):
        graph.add_factor([t], unary[t])
    if start is not None:
        graph.add_factor([0], start)
        graph.add_factor([length - 1], end)
    for t in range(1, length):
        graph.add_factor([t - 1, t], transition)
    return graph


def graph_backend(loss, unary, transition, start, end, target):
    """Per-sequence values and the summed gradient with respect to (U, A, s, e), each
    sequence a FactorGraph chain through ``Loss.value_and_grad``."""
    k = N_LABELS
    values = []
    grad_u, grad_a = np.zeros_like(unary), np.zeros((k, k))
    grad_s, grad_e = np.zeros(k), np.zeros(k)
    for first, length in zip(np.cumsum(LENGTHS) - LENGTHS, LENGTHS):
        rows = slice(first, first + length)
        graph = chain_graph(unary[rows], transition, start, end)
        result = loss.value_and_grad(graph, dict(enumerate(target[rows].tolist())))
        assert result.exact
        values.append(result.value)
        grad = result.grad
        grad_u[rows] = grad[: length * k].reshape(length, k)
        rest = grad[length * k :]
        if start is not None:
            grad_s += rest[:k]
            grad_e += rest[k : 2 * k]
            rest = rest[2 * k :]
        grad_a += rest.reshape(length - 1, k, k).sum(axis=0)
    return np.array(values), (grad_u, grad_a, grad_s, grad_e)


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
@pytest.mark.parametrize("boundary", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_chain_backend_equals_the_graph_backend(loss, boundary, seed):
    """The same loss on the trellis and on the FactorGraph chains: values per sequence and
    gradients equal to 1e-9."""
    unary, transition, start, end, target = energies(seed, boundary)
    found = loss.evaluate(ChainBatch(unary, transition, start, end, target, LENGTHS))
    values, (grad_u, grad_a, grad_s, grad_e) = graph_backend(
        loss, unary, transition, start, end, target)
    np.testing.assert_allclose(found.value, values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(found.grad.unary, grad_u, rtol=0, atol=1e-9)
    np.testing.assert_allclose(found.grad.transition, grad_a, rtol=0, atol=1e-9)
    np.testing.assert_allclose(found.grad.start, grad_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(found.grad.end, grad_e, rtol=0, atol=1e-9)
    assert found.exact


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=repr)
def test_chain_gradient_matches_central_differences(loss):
    """d(sum of the losses)/d(U, A, s, e) on the chain backend against central differences
    (random energies: away from the kinks of the min-sum losses)."""
    unary, transition, start, end, target = energies(2)
    parts = [unary, transition, start, end]

    def total(arrays):
        batch = ChainBatch(*arrays, target, LENGTHS)
        return float(loss.evaluate(batch).value.sum())

    grad = loss.evaluate(ChainBatch(*parts, target, LENGTHS)).grad
    h = 1e-6
    for name, array, analytic in zip("UAse", parts, grad):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            moved = [p.copy() for p in parts]
            which = "UAse".index(name)
            moved[which][index] += h
            up = total(moved)
            moved[which][index] -= 2 * h
            numeric[index] = (up - total(moved)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6, err_msg=name)


def test_mee_weights_the_marginals_of_each_sequence():
    """MEE's gradient weights each sequence's marginals by beta P(Y^i) of that sequence: the
    batch gradient is the sum of the single-sequence gradients (transition marginals
    included, which the trellis sums over a batch)."""
    unary, transition, start, end, target = energies(3)
    loss = L.MEELoss(1.0)
    whole = loss.evaluate(ChainBatch(unary, transition, start, end, target, LENGTHS)).grad
    summed = np.zeros_like(transition)
    for first, length in zip(np.cumsum(LENGTHS) - LENGTHS, LENGTHS):
        rows = slice(first, first + length)
        one = loss.evaluate(ChainBatch(unary[rows], transition, start, end, target[rows],
                                       np.array([length])))
        summed += one.grad.transition
        np.testing.assert_allclose(whole.unary[rows], one.grad.unary, rtol=0, atol=1e-12)
    np.testing.assert_allclose(whole.transition, summed, rtol=0, atol=1e-12)


def test_a_forbidden_sphere_is_refused_on_a_chain():
    unary, transition, start, end, target = energies(0)
    batch = ChainBatch(unary, transition, start, end, target, LENGTHS)
    with pytest.raises(FactorGraphError, match="forbidden sphere"):
        L.HingeLoss(radius=1.0).evaluate(batch)
    with pytest.raises(FactorGraphError, match="forbidden sphere"):
        SequenceLabeler(L.HingeLoss(radius=1.0)).fit([[{"w": "a"}]], [["A"]])


@pytest.fixture(scope="module")
def tagging():
    return synthetic_tagging(150, 0), synthetic_tagging(100, 1)


@pytest.mark.parametrize("loss", ["mce", "square_square", "square_exp", "mee"])
def test_every_margin_and_free_energy_loss_trains_a_labeler(tagging, loss):
    """The losses that trained only factor graphs before train a labeler through the same
    loop (Adam on mini-batches), to the accuracy of NLL and hinge on this task."""
    (X, Y), (X_test, Y_test) = tagging
    model = SequenceLabeler(loss, Adam(learning_rate=0.1), n_epochs=10, batch_size=16,
                            l2=1e-4, progress=False).fit(X, Y, X_test, Y_test)
    assert model.score(X_test, Y_test) >= 0.97
    assert len(model.history_["loss"]) == model.n_epochs_ == 10
    assert model.history_["loss"][-1] < model.history_["loss"][0]


def test_lvq2_and_energy_losses_train_as_their_margins_say(tagging):
    """LVQ2 (margin 0) is 0, with zero gradient, at the all-zero start where every answer
    ties: nothing moves. The energy loss (no margin) only pushes E(Y^i) down, without bound
    on a linear energy: its loss falls every epoch."""
    (X, Y), _ = tagging
    lvq2 = SequenceLabeler("lvq2", Adam(learning_rate=0.1), n_epochs=2, batch_size=16,
                           progress=False).fit(X, Y)
    assert lvq2.history_["loss"] == [0.0, 0.0]
    assert not np.any(lvq2.transition_) and not np.any(lvq2.weights_)
    energy = SequenceLabeler("energy", Adam(learning_rate=0.1), n_epochs=4, batch_size=16,
                             progress=False).fit(X, Y)
    assert np.all(np.diff(energy.history_["loss"]) < 0)
