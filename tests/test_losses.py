"""Losses and the most offending incorrect answer, checked against brute force.

References: every loss value is recomputed from brute-force enumeration of all
configurations (:mod:`reference`) with the formulas of LeCun et al.'s tutorial, Table 1;
every gradient is checked against central finite differences of the loss along random
directions, away from kinks (where the left and right slopes differ); the margin column of
Table 1 is checked against the tutorial's Condition 3 on a grid of (E_C, E_I).
"""

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from reference import BruteForce, logsumexp
from strategies import describe, loopy_graphs, trees

import factorgraph_ebm as fg
from factorgraph_ebm.inference import infer_checked
from factorgraph_ebm.losses import (
    EnergyLoss,
    HingeLoss,
    LogLoss,
    LVQ2Loss,
    MarginLoss,
    MCELoss,
    MEELoss,
    NLLLoss,
    PerceptronLoss,
    SquareExpLoss,
    SquareSquareLoss,
    TargetError,
    most_offending,
    value_distance,
)

INF = math.inf


def all_losses(graph=None):
    """One instance of every loss; the last one, a hinge with a forbidden sphere, uses
    Hamming augmentation too (on every output variable, with or without factors)."""
    hamming = 0.3
    return [
        EnergyLoss(),
        EnergyLoss(beta=2.0),
        PerceptronLoss(),
        HingeLoss(0.7),
        LogLoss(),
        LVQ2Loss(delta=0.5),
        MCELoss(),
        SquareSquareLoss(1.5),
        SquareExpLoss(0.8),
        NLLLoss(1.3),
        MEELoss(0.6),
        HingeLoss(0.4, radius=1.0, hamming=hamming),
    ]


# --------------------------------------------------------------------------- references
class Reference:
    """Brute-force energies of one sample: E_C, the free side and the allowed incorrect
    answers, with latent variables minimized or summed over."""

    def __init__(self, graph, target, latent=()):
        self.bf = BruteForce(graph)
        names = graph.variables
        self.outputs = [names.index(v) for v in names if v not in set(latent)]
        self.desired = np.array([target[names[j]] for j in self.outputs], dtype=np.int64)
        self.out_configs = self.bf.configs[:, self.outputs]
        self.match = (self.out_configs == self.desired).all(axis=1)
        self.energies = self.bf.energies

    def correct(self, beta=INF):
        e = self.energies[self.match]
        return float(e.min()) if math.isinf(beta) else -logsumexp(-beta * e) / beta

    def lowest(self):
        return float(self.energies.min())

    def free_energy(self, beta):
        return self.bf.free_energy(beta)

    def allowed(self, radius=0.0, distances=None):
        """bool per configuration: some output variable farther than radius from Y^i."""
        if distances is None or not self.outputs:
            d = np.abs(self.out_configs - self.desired)
        else:
            d = np.stack(
                [distances[k][self.out_configs[:, k]] for k in range(len(self.outputs))], axis=1
            )
        return (d > radius).any(axis=1)

    def hamming(self):
        return (self.out_configs != self.desired).sum(axis=1)

    def incorrect(self, radius=0.0, distances=None, hamming=0.0):
        keep = self.allowed(radius, distances)
        augmented = self.energies - hamming * self.hamming()
        return float(augmented[keep].min()) if keep.any() else INF

    def loss(self, loss):
        """The loss value by the tutorial's formulas (Table 1) on brute-force energies."""
        if isinstance(loss, EnergyLoss):
            return self.correct(loss.beta)
        if isinstance(loss, PerceptronLoss):
            return self.correct() - self.lowest()
        if isinstance(loss, NLLLoss):
            return self.correct(loss.beta) - self.free_energy(loss.beta)
        if isinstance(loss, MEELoss):
            nll = self.correct(loss.beta) - self.free_energy(loss.beta)
            return 1.0 - math.exp(-loss.beta * nll)
        return margin_loss(loss, self.correct(), self.incorrect(loss.radius, None, loss.hamming))


def margin_loss(loss, ec, ei):
    """Q(E_C, E_I) of a generalized margin loss by the tutorial's formulas (Table 1)."""
    if isinstance(loss, HingeLoss):
        return max(0.0, loss.margin + ec - ei)
    if isinstance(loss, LogLoss):
        return math.log1p(math.exp(ec - ei)) if ei < INF else 0.0
    if isinstance(loss, LVQ2Loss):
        if ec <= ei:
            return 0.0
        return 1.0 if ei <= 0 else min(1.0, (ec - ei) / (loss.delta * ei))
    if isinstance(loss, MCELoss):
        return 1.0 / (1.0 + math.exp(ei - ec))
    if isinstance(loss, SquareSquareLoss):
        return ec**2 + max(0.0, loss.margin - ei) ** 2
    if isinstance(loss, SquareExpLoss):
        return ec**2 + loss.gamma * math.exp(-ei)
    raise AssertionError(loss)


@st.composite
def samples(draw, graphs, latent=True):
    """(graph, target, latent names) with a random desired answer and latent subset."""
    graph = draw(graphs)
    names = graph.variables
    hidden = set()
    if latent:
        hidden = {v for v in names if draw(st.booleans()) and draw(st.booleans())}
    target = {
        v: draw(st.integers(0, int(k) - 1))
        for v, k in zip(names, graph.n_states)
        if v not in hidden
    }
    return graph, target, [v for v in names if v in hidden]


def directional_check(loss, graph, target, latent, theta, rng, n_directions=3, h=1e-6, **bp):
    """Compare <grad, v> with central differences along random directions v (finite
    entries only), skipping directions where the left and right slopes differ (a kink)."""
    result = loss.value_and_grad(graph, target, energies=theta, latent=latent, **bp)
    assert result.grad.shape == theta.shape
    assert np.isfinite(result.grad).all()
    checked = 0
    for _ in range(n_directions):
        v = np.where(np.isfinite(theta), rng.normal(size=theta.shape), 0.0)
        plus = loss.value_and_grad(graph, target, energies=theta + h * v, latent=latent, **bp)
        minus = loss.value_and_grad(graph, target, energies=theta - h * v, latent=latent, **bp)
        right = (plus.value - result.value) / h
        left = (result.value - minus.value) / h
        if abs(right - left) > 1e-4 * (1.0 + abs(right)):
            continue  # a kink (a tie in an argmin, a hinge corner) within h
        central = (plus.value - minus.value) / (2 * h)
        analytic = float(np.dot(result.grad, v))
        assert analytic == pytest.approx(central, abs=2e-5, rel=2e-5), (loss, v)
        checked += 1
    return result, checked


# --------------------------------------------------------------------------- values
def exact_graphs(max_variables, max_configs, allow_inf=True):
    """Trees (BP's two-pass schedule is exact) and small loopy graphs (the junction tree is):
    with method="auto" every loss is exact on both."""
    return st.one_of(
        trees(max_variables=max_variables, max_configs=max_configs, allow_inf=allow_inf),
        loopy_graphs(max_variables=max_variables, max_configs=max_configs, allow_inf=allow_inf),
    )


@given(samples(exact_graphs(max_variables=6, max_configs=300)))
def test_values_match_brute_force_on_trees_and_small_loopy_graphs(sample):
    graph, target, latent = sample
    note(describe(graph))
    note(f"target={target} latent={latent}")
    ref = Reference(graph, target, latent)
    if ref.correct() == INF:
        with pytest.raises(TargetError, match="energy \\+inf"):
            HingeLoss().value_and_grad(graph, target, latent=latent)
        return
    for loss in all_losses(graph):
        result = loss.value_and_grad(graph, target, latent=latent)
        assert result.exact
        expected = ref.loss(loss)
        assert result.value == pytest.approx(expected, abs=1e-9, rel=1e-9), loss
        beta = getattr(loss, "beta", INF)
        assert result.energy_correct == pytest.approx(ref.correct(beta), abs=1e-9, rel=1e-9)


@given(samples(exact_graphs(max_variables=6, max_configs=300, allow_inf=False)), st.randoms())
def test_gradients_match_finite_differences_on_exact_graphs(sample, random):
    graph, target, latent = sample
    note(describe(graph))
    rng = np.random.default_rng(random.getrandbits(32))
    theta = graph.compile().energies + rng.normal(scale=0.3, size=graph.compile().energies.shape)
    for loss in all_losses(graph):
        directional_check(loss, graph, target, latent, theta, rng)


def test_gradients_are_checked_away_from_kinks():
    """On a fixed chain with latent variables and continuous energies, every direction of
    every loss is checked (no direction is skipped as a kink)."""
    rng = np.random.default_rng(7)
    graph = chain(rng, [3, 2, 3, 2, 3])
    target = {"v0": 2, "v2": 0, "v4": 1}
    theta = graph.compile().energies
    for loss in all_losses():
        _, checked = directional_check(loss, graph, target, ["v1", "v3"], theta, rng, 4)
        assert checked == 4, loss


@given(samples(loopy_graphs(max_variables=5, max_configs=200, allow_inf=False)), st.randoms())
def test_gradients_match_finite_differences_on_loopy_graphs(sample, random):
    """Loopy graphs: BP's answers are approximate, but the loss is still a function of the
    energies whose gradient is the reported one (for NLL: the Bethe free energy, whose
    derivative is the factor beliefs at a fixed point)."""
    graph, target, latent = sample
    note(describe(graph))
    rng = np.random.default_rng(random.getrandbits(32))
    theta = graph.compile().energies
    theta = 0.5 * theta + rng.normal(scale=0.1, size=theta.shape)  # no exact ties
    # Loopy BP on the graph as given (absorb=False: the strategy's repeated pairs stay a
    # 2-cycle, so the answers stay approximate).
    bp = dict(method="bp", absorb=False, damping=0.5, max_iter=2000, tol=1e-12, warn=False)
    for loss in [HingeLoss(0.5), LogLoss(), SquareSquareLoss(), NLLLoss(1.0), MEELoss(0.7)]:
        converged = all(
            r.converged
            for r in (
                fg.sum_product(graph, 1.0, energies=theta, **bp),
                fg.min_sum(graph, energies=theta, **bp),
            )
        )
        assume(converged)
        result, _ = directional_check(loss, graph, target, latent, theta, rng, **bp)
        assert not result.exact


# --------------------------------------------------------------------------- Ybar
@given(
    samples(exact_graphs(max_variables=5, max_configs=300)),
    st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    st.sampled_from([0.0, 0.4, 1.5]),
    st.booleans(),
)
def test_most_offending_is_exact_on_trees_and_small_loopy_graphs(sample, radius, hamming,
                                                                 coordinates):
    graph, target, latent = sample
    note(describe(graph))
    ref = Reference(graph, target, latent)
    distances, distance = None, None
    if coordinates:  # states stand for unequally spaced values
        values = {v: np.cumsum(np.arange(1, k + 1) * 0.4) for v, k in
                  zip(graph.variables, graph.n_states.tolist())}
        distance = value_distance(values)
        distances = [
            np.abs(values[graph.variables[j]] - values[graph.variables[j]][y])
            for j, y in zip(ref.outputs, ref.desired)
        ]
    found = most_offending(
        graph, target, latent=latent, radius=radius, distance=distance, hamming=hamming
    )
    expected = ref.incorrect(radius, distances, hamming)
    assert found.exact
    if expected == INF:
        assert found.assignment is None and found.energy == INF
        return
    assert found.augmented_energy == pytest.approx(expected, abs=1e-9)
    y = found.assignment
    index = np.flatnonzero((ref.bf.configs == y).all(axis=1))[0]
    assert ref.allowed(radius, distances)[index], "Ybar is inside the forbidden sphere"
    assert found.energy == pytest.approx(ref.bf.model.energy(tuple(y)), abs=1e-9)
    assert found.augmented_energy == pytest.approx(
        found.energy - hamming * ref.hamming()[index], abs=1e-9
    )


@given(samples(loopy_graphs(max_variables=5, max_configs=300, allow_inf=False)))
def test_most_offending_on_loopy_graphs_is_flagged_and_allowed(sample):
    graph, target, latent = sample
    ref = Reference(graph, target, latent)
    found = most_offending(graph, target, latent=latent, radius=0.5, method="bp", absorb=False,
                           warn=False)
    assert not found.exact
    expected = ref.incorrect(0.5)
    if found.assignment is None:
        return
    index = np.flatnonzero((ref.bf.configs == found.assignment).all(axis=1))[0]
    assert ref.allowed(0.5)[index]
    assert found.energy == pytest.approx(ref.bf.model.energy(tuple(found.assignment)), abs=1e-9)
    assert found.energy >= expected - 1e-9


def test_forbidden_sphere_on_one_ordinal_variable():
    """One discretized output: Ybar is the lowest-energy state *farther* than epsilon (states
    at distance exactly epsilon are inside the sphere); with epsilon = 0, Y^i is excluded
    even when it has the lowest energy; a sphere that covers every state leaves no Ybar and
    nothing to push up. State values are multiples of 1/8, so every distance is exact."""
    values = np.arange(9) / 8.0
    energies = (values - 0.5) ** 2 + 0.01 * values  # minimum at state 4; left side lower
    graph = fg.FactorGraph()
    graph.add_variable("y", 9)
    graph.add_factor(["y"], energies)
    distance = value_distance(values)
    for radius, expected in [(0.0, 3), (1 / 8, 2), (2 / 8, 1), (3 / 8, 0), (0.49, 0), (0.5, None)]:
        found = most_offending(graph, {"y": 4}, radius=radius, distance=distance)
        if expected is None:
            assert found.assignment is None and found.energy == INF
        else:
            assert found.assignment.tolist() == [expected], radius
            assert found.energy == energies[expected]
    result = HingeLoss(1.0, radius=0.5, distance=distance).value_and_grad(graph, {"y": 4})
    assert result.value == 0.0 and not result.grad.any()


def no_other_answer_cases():
    """(graph, target, latent) where Y^i is the only answer of finite energy."""
    one_state = fg.FactorGraph()
    one_state.add_variable("y", 1)
    one_state.add_factor(["y"], [0.3])
    forbidden = fg.FactorGraph()
    forbidden.add_variables(["a", "b"], 2)
    forbidden.add_factor(["a"], [0.5, -0.2])
    forbidden.add_factor(["a", "b"], [[0.0, INF], [INF, INF]])
    hidden = fg.FactorGraph()
    hidden.add_variables(["a", "z"], [2, 3])
    hidden.add_factor(["a", "z"], [[0.4, 1.0, 2.0], [INF, INF, INF]])
    return [(one_state, {"y": 0}, []), (forbidden, {"a": 0, "b": 0}, []),
            (hidden, {"a": 0}, ["z"])]


@pytest.mark.parametrize("case", range(3), ids=["one-state", "all-forbidden", "latent"])
def test_losses_when_no_incorrect_answer_exists(case):
    """One output variable with one state; every other answer +inf, without and with a
    latent variable. Then there is no Ybar (E_I = +inf): margin losses keep only their E_C
    terms and push nothing up, F_beta = E_C (NLL = MEE = 0), the perceptron loss is 0.
    Values against brute force, gradients against finite differences."""
    graph, target, latent = no_other_answer_cases()[case]
    ref = Reference(graph, target, latent)
    assert ref.incorrect() == INF
    found = most_offending(graph, target, latent=latent)
    assert found.assignment is None and found.energy == INF and found.exact
    theta = graph.compile().energies
    rng = np.random.default_rng(case)
    for loss in all_losses():
        result, checked = directional_check(loss, graph, target, latent, theta, rng)
        assert checked == 3, loss
        assert result.value == pytest.approx(ref.loss(loss), abs=1e-12), loss
        assert not result.grad[np.isinf(theta)].any(), loss
        if isinstance(loss, (NLLLoss, MEELoss, PerceptronLoss)):
            assert result.value == pytest.approx(0.0, abs=1e-12), loss
            assert not result.grad.any(), loss


def test_ties_when_every_energy_is_equal():
    """All energies 0 (a common start of training), one latent variable: Ybar is some other
    output answer with E_I = E_C = 0, so hinge = m, log = ln 2, and the gradient moves the
    entries of Y^i and Ybar by +1 and -1; NLL = ln(number of output answers) / beta."""
    graph = fg.FactorGraph()
    graph.add_variables(["a", "z", "b"], [2, 3, 2])
    graph.add_factor(["a", "z"], np.zeros((2, 3)))
    graph.add_factor(["z", "b"], np.zeros((3, 2)))
    target, latent = {"a": 1, "b": 0}, ["z"]
    found = most_offending(graph, target, latent=latent)
    assert found.energy == 0.0
    assert (found.assignment[0], found.assignment[2]) != (1, 0)
    hinge = HingeLoss(0.7).value_and_grad(graph, target, latent=latent)
    assert hinge.value == pytest.approx(0.7)
    assert hinge.grad.sum() == 0.0 and np.abs(hinge.grad).max() == 1.0
    assert LogLoss().value_and_grad(graph, target, latent=latent).value == pytest.approx(
        math.log(2.0)
    )
    assert PerceptronLoss().value_and_grad(graph, target, latent=latent).value == 0.0
    nll = NLLLoss(2.0).value_and_grad(graph, target, latent=latent)
    assert nll.value == pytest.approx(math.log(4.0) / 2.0)


def test_tied_answers_have_identical_energies():
    """An output variable that no factor touches makes Ybar (Y^i with that variable flipped)
    tie with Y^i. E_C (found by inference over the latent variable) and E_I must then be
    equal to the last bit, however many factors are summed; a one-ulp difference would
    make LVQ2, a step when E_I <= 0, jump from 0 to 1."""
    rng = np.random.default_rng(3)
    graph = fg.FactorGraph()
    graph.add_variables(["a", "z", "b", "isolated"], [2, 3, 2, 2])
    for _ in range(3):  # more than 8 factors: summation order matters
        graph.add_factor(["a"], rng.uniform(-3, 3, 2))
        graph.add_factor(["b"], rng.uniform(-3, 3, 2))
        graph.add_factor([], rng.uniform(-3, 3))
        graph.add_factor(["z"], rng.uniform(-3, 3, 3))
    graph.add_factor(["a", "z"], rng.uniform(-3, 3, (2, 3)))
    graph.add_factor(["z", "b"], rng.uniform(-3, 3, (3, 2)))
    bf = BruteForce(graph)
    best = bf.configs[np.argmin(bf.energies)]
    target = {"a": int(best[0]), "b": int(best[2]), "isolated": int(best[3])}
    hinge = HingeLoss(0.0).value_and_grad(graph, target, latent=["z"])
    assert hinge.energy_correct == hinge.energy_contrast == bf.min_energy
    assert hinge.energy_correct < 0.0
    assert LVQ2Loss().value_and_grad(graph, target, latent=["z"]).value == 0.0


def test_perceptron_is_zero_when_loopy_bp_misses_the_minimum():
    """A frustrated complete graph on four binary variables on which damped min-sum BP
    converges to an answer above the true minimum (brute force), its min-marginals 1.3
    apart at every variable (no tie decides it; on a single cycle converged min-sum is
    exact where its beliefs have no ties, Weiss 2000). With the true minimum as Y^i,
    E(Y^i) - E(BP's answer) < 0: the loss is 0 (nothing better was found), with zero
    gradient, flagged approximate."""
    graph = fg.FactorGraph()
    names = ["a", "b", "c", "d"]
    graph.add_variables(names, 2)
    tables = ([[-1.1, -0.5], [0.4, 0.9]], [[-0.8, 0.2], [-0.5, -1.4]],
              [[-0.4, 1.2], [1.3, -1.4]], [[0.0, 1.3], [1.0, -1.4]],
              [[1.1, 0.3], [1.4, -1.4]], [[-0.6, 1.0], [1.3, 0.9]])
    for scope, table in zip(itertools.combinations(names, 2), tables):
        graph.add_factor(list(scope), table)
    for name, table in zip(names, ([-0.2, -0.8], [0.7, 0.8], [-1.2, 0.9], [0.5, 1.2])):
        graph.add_factor([name], table)
    bf = BruteForce(graph)
    bp = dict(method="bp", damping=0.5, max_iter=500)
    decoded = fg.min_sum(graph, **bp)
    assert decoded.converged and decoded.energy > bf.min_energy + 0.1  # BP misses it
    beliefs = np.asarray(decoded.variable_beliefs).reshape(4, 2)
    assert np.abs(beliefs[:, 0] - beliefs[:, 1]).min() > 1.0  # and not by a tie
    target = dict(zip(names, bf.configs[np.argmin(bf.energies)].tolist()))
    result = PerceptronLoss().value_and_grad(graph, target, **bp)
    assert result.value == 0.0 and not result.grad.any() and not result.exact


# --------------------------------------------------------------------------- margins
GRID = np.round(np.arange(0.0, 4.0 + 1e-9, 0.1), 10)


def loss_on_grid(loss):
    """Q(E_C, E_I) on GRID x GRID through a one-variable graph whose states have energies
    (E_C, E_I, E_I + 10): state 0 is desired, state 1 the most offending."""
    graph = fg.FactorGraph()
    graph.add_variable("y", 3)
    graph.add_factor(["y"], np.zeros(3))
    e_c, e_i = np.meshgrid(GRID, GRID, indexing="ij")
    values = np.empty_like(e_c)
    for idx in np.ndindex(e_c.shape):
        theta = np.array([e_c[idx], e_i[idx], e_i[idx] + 10.0])
        values[idx] = loss.value_and_grad(graph, {"y": 0}, energies=theta).value
    return e_c, e_i, values


def condition3(e_c, e_i, values, m):
    """Tutorial Condition 3: the loss is strictly lower somewhere in HP1 = {E_C + m < E_I}
    than anywhere in HP2 = {E_C + m >= E_I}."""
    hp1 = e_c + m < e_i - 1e-9
    return values[hp1].min() < values[~hp1].min() - 1e-9


#: The margin column of the tutorial's Table 1 (LeCun et al. 2006), one row per loss.
TABLE_1_MARGINS = [
    (EnergyLoss(), "none"),
    (PerceptronLoss(), "0"),
    (HingeLoss(1.0), "m"),
    (LogLoss(), ">0"),
    (LVQ2Loss(delta=1.0), "0"),
    (MCELoss(), ">0"),
    (SquareSquareLoss(1.0), "m"),
    (SquareExpLoss(1.0), ">0"),
    (NLLLoss(1.0), ">0"),
    (MEELoss(1.0), ">0"),
]


@pytest.mark.parametrize(("loss", "kind"), TABLE_1_MARGINS, ids=lambda p: getattr(p, "name", p))
def test_margin_property_of_table_1(loss, kind):
    """The margin each loss documents is Table 1's, and the loss's values on the grid have
    it (Condition 3 holds for exactly the margins the column says)."""
    assert loss.margin_kind == kind
    e_c, e_i, values = loss_on_grid(loss)
    if isinstance(loss, MarginLoss):  # the grid covers every branch (e.g. LVQ2's saturation)
        expected = np.vectorize(lambda c, i: margin_loss(loss, c, i))(e_c, e_i)
        np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12)
    if kind == ">0":
        assert all(condition3(e_c, e_i, values, m) for m in (0.5, 1.0, 2.0))
    elif kind == "m":
        assert all(condition3(e_c, e_i, values, m) for m in (0.3, 0.5, 0.9))
        assert not any(condition3(e_c, e_i, values, m) for m in (1.5, 2.0))
    elif kind == "0":
        assert not any(condition3(e_c, e_i, values, m) for m in (0.1, 0.5, 1.0))
        lowest = values.min()
        assert (values[e_c < e_i] == lowest).all()  # any correct ordering is optimal
        assert (values[e_c > e_i] > lowest).any()
    else:
        assert kind == "none"
        assert not any(condition3(e_c, e_i, values, m) for m in (0.0, 0.5, 1.0))
        assert (values == values[:, :1]).all()  # E_I plays no part


# --------------------------------------------------------------------------- signs and zeros
def chain(rng, n_states, scale=1.0):
    graph = fg.FactorGraph()
    names = [f"v{i}" for i in range(len(n_states))]
    graph.add_variables(names, n_states)
    for name, k in zip(names, n_states):
        graph.add_factor([name], rng.normal(scale=scale, size=k))
    for a, b, ka, kb in zip(names, names[1:], n_states, n_states[1:]):
        graph.add_factor([a, b], rng.normal(scale=scale, size=(ka, kb)))
    return graph


@pytest.mark.parametrize("seed", range(6))
def test_every_loss_pushes_the_desired_answer_down_and_others_up(seed):
    """On one variable (no shared table entries), dL/dE is >= 0 at the desired state and
    <= 0 at every other state; every contrastive loss is active somewhere."""
    rng = np.random.default_rng(seed)
    graph = fg.FactorGraph()
    graph.add_variable("y", 5)
    graph.add_factor(["y"], np.zeros(5))
    theta = rng.uniform(0.0, 2.0, size=5)
    target = {"y": int(rng.integers(5))}
    for loss in all_losses():
        grad = loss.value_and_grad(graph, target, energies=theta).grad
        assert grad[target["y"]] >= 0.0, loss
        assert (np.delete(grad, target["y"]) <= 0.0).all(), loss


@pytest.mark.parametrize("seed", range(5))
def test_perceptron_is_zero_exactly_at_the_minimum(seed):
    rng = np.random.default_rng(seed)
    graph = chain(rng, [2, 3, 2, 3])
    bf = BruteForce(graph)
    names = graph.variables
    best = bf.configs[np.argmin(bf.energies)]
    result = PerceptronLoss().value_and_grad(graph, dict(zip(names, best.tolist())))
    assert result.value == 0.0 and not result.grad.any()
    for config, energy in zip(bf.configs, bf.energies):
        if energy > bf.min_energy + 1e-9:
            result = PerceptronLoss().value_and_grad(graph, dict(zip(names, config.tolist())))
            assert result.value == pytest.approx(energy - bf.min_energy)
            assert result.value > 0.0


@pytest.mark.parametrize("seed", range(5))
def test_hinge_is_zero_once_the_margin_holds(seed):
    rng = np.random.default_rng(seed)
    graph = chain(rng, [3, 3, 2])
    bf = BruteForce(graph)
    names = graph.variables
    for config, energy in zip(bf.configs, bf.energies):
        target = dict(zip(names, config.tolist()))
        gap = np.delete(bf.energies, np.flatnonzero((bf.configs == config).all(1))).min() - energy
        for m in (0.1, 0.5, 2.0):
            result = HingeLoss(m).value_and_grad(graph, target)
            if gap >= m + 1e-9:
                assert result.value == 0.0 and not result.grad.any()
            elif gap <= m - 1e-9:
                assert result.value == pytest.approx(m - gap)
                assert result.value > 0.0


def test_square_square_is_zero_only_at_zero_energy_and_margin():
    graph = fg.FactorGraph()
    graph.add_variable("y", 3)
    graph.add_factor(["y"], np.zeros(3))
    loss = SquareSquareLoss(1.0)
    assert loss.value_and_grad(graph, {"y": 0}, energies=[0.0, 1.0, 3.0]).value == 0.0
    assert loss.value_and_grad(graph, {"y": 0}, energies=[0.1, 1.0, 3.0]).value > 0.0
    assert loss.value_and_grad(graph, {"y": 0}, energies=[0.0, 0.9, 3.0]).value > 0.0


@pytest.mark.parametrize("seed", range(4))
def test_likelihood_losses_are_bounded(seed):
    rng = np.random.default_rng(seed)
    graph = chain(rng, [2, 3, 2], scale=0.5)
    names = graph.variables
    for config in BruteForce(graph).configs:
        target = dict(zip(names, config.tolist()))
        assert NLLLoss(2.0).value_and_grad(graph, target).value > 0.0
        assert 0.0 < MEELoss(1.0).value_and_grad(graph, target).value < 1.0


def test_hamming_augmentation_is_margin_rescaling():
    """With hamming=h and margin 0, the hinge is the structured SVM loss
    max_{Y != Y^i} [E(Y^i) - E(Y) + h * Hamming(Y, Y^i)]^+ (brute force)."""
    rng = np.random.default_rng(3)
    graph = chain(rng, [3, 3, 3, 3])
    bf = BruteForce(graph)
    names = graph.variables
    target = dict(zip(names, [0, 1, 2, 0]))
    desired = np.array([0, 1, 2, 0])
    wrong = (bf.configs != desired).sum(axis=1)
    energy_c = bf.energies[wrong == 0][0]
    expected = max(0.0, (energy_c - bf.energies + 0.8 * wrong)[wrong > 0].max())
    result = HingeLoss(0.0, hamming=0.8).value_and_grad(graph, target)
    assert result.value == pytest.approx(expected)


def test_hamming_augmentation_reaches_variables_without_factors():
    """The augmentation is a per-state energy on each output variable, so a variable that
    no factor touches is augmented too (it used to be refused: the augmentation edited a
    factor table of each variable)."""
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], [2, 3])
    graph.add_factor(["a"], [0.0, 1.0])
    found = most_offending(graph, {"a": 0, "b": 1}, hamming=1.0)
    # E(a, b) - 1.0 * Hamming: a=0 costs 0, a=1 costs 0; b != 1 gains 1: (0, 0) or (0, 2)
    assert found.augmented_energy == pytest.approx(-1.0)
    assert found.energy == 0.0 and found.assignment[0] == 0 and found.assignment[1] != 1
    result = HingeLoss(0.0, hamming=1.0).value_and_grad(graph, {"a": 0, "b": 1})
    assert result.value == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["exact", "bp"])
def test_hamming_augmentation_passes_per_state_energies_not_edited_tables(method, monkeypatch):
    """Every inference call of the augmented search gets the caller's theta unchanged (so a
    Potts factor keeps its O(K) messages) and the augmentation as ``unary``; the answer is
    brute force's on the augmented model, by junction tree and by BP (a tree)."""
    import factorgraph_ebm.losses as losses_module

    rng = np.random.default_rng(5)
    graph = chain(rng, [3, 3, 3])
    graph.add_variable("v3", 3)
    graph.add_potts_factors([("v2", "v3")], 0.7)
    theta = graph.compile().energies.copy()
    calls = []

    def spy(graph, cg, energies, *args, **kwargs):  # the losses' inference entry
        calls.append({**kwargs, "energies": energies})
        return infer_checked(graph, cg, energies, *args, **kwargs)

    monkeypatch.setattr(losses_module, "infer_checked", spy)
    target = {"v0": 2, "v1": 0, "v2": 1, "v3": 1}
    found = most_offending(graph, target, hamming=0.5, method=method)
    assert calls
    for kwargs in calls:
        np.testing.assert_array_equal(kwargs["energies"], theta)
        assert kwargs["unary"].min() == -0.5
    bf = BruteForce(graph)
    wrong = (bf.configs != [2, 0, 1, 1]).sum(axis=1)
    assert found.exact
    assert found.augmented_energy == pytest.approx(
        (bf.energies - 0.5 * wrong)[wrong > 0].min(), abs=1e-12)


# --------------------------------------------------------------------------- warm starts
def test_messages_store_is_filled_and_reused():
    rng = np.random.default_rng(0)
    graph = chain(rng, [2, 2, 2])
    graph.add_factor(["v0", "v2"], rng.normal(size=(2, 2)))  # a cycle
    store = {}
    target = {"v0": 0, "v1": 1, "v2": 0}
    first = NLLLoss().value_and_grad(graph, target, messages=store)
    assert set(store) == {("free", 1.0)}
    second = NLLLoss().value_and_grad(graph, target, messages=store)
    assert second.value == pytest.approx(first.value, abs=1e-8)
    HingeLoss().value_and_grad(graph, target, messages=store)
    assert ("free", INF) in store


# --------------------------------------------------------------------------- errors
@pytest.fixture
def small_graph():
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b", "z"], [2, 3, 2])
    graph.add_factor(["a", "b"], np.zeros((2, 3)))
    graph.add_factor(["b", "z"], [[0.0, 1.0], [0.0, np.inf], [np.inf, np.inf]])
    return graph


@pytest.mark.parametrize(
    ("target", "latent", "message"),
    [
        ({"a": 0, "b": 0, "q": 1}, ["z"], "target names unknown variable 'q'"),
        ({"a": 2, "b": 0}, ["z"], "target state of 'a' is 2, out of range 0..1"),
        ({"a": 0, "b": -1}, ["z"], "target state of 'b' is -1, out of range 0..2"),
        ({"a": 0.0, "b": 0}, ["z"], "target state of 'a' must be an integer, got 0.0"),
        ({"a": True, "b": 0}, ["z"], "target state of 'a' must be an integer, got True"),
        ({"a": 0, "b": 0, "z": 0}, ["z"], "target gives a state to 'z', which is latent"),
        ({"a": 0}, ["z"], "target has no state for output variable 'b' (1 missing)"),
        ({"a": 0, "b": 0}, ["w"], "latent names unknown variable 'w'"),
        ({"a": 0, "b": 0}, "z", "latent must be a collection of variable names, got 'z'"),
        ([("a", 0)], ["z"], "target must be a mapping from output variable names to states"),
        ({"a": 0, "b": 2}, ["z"], "the desired answer {'a': 0, 'b': 2} has energy +inf"),
    ],
)
def test_bad_targets_raise_target_error(small_graph, target, latent, message):
    for loss in (HingeLoss(), NLLLoss(), EnergyLoss()):
        with pytest.raises(TargetError, match=re.escape(message)):
            loss.value_and_grad(small_graph, target, latent=latent)
    assert issubclass(TargetError, fg.FactorGraphError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: HingeLoss(-1.0), "'margin' parameter of HingeLoss must be a number >= 0"),
        (lambda: SquareSquareLoss(0.0), "'margin' parameter of SquareSquareLoss must be a"),
        (lambda: NLLLoss(0.0), "'beta' parameter of NLLLoss must be a number > 0"),
        (lambda: NLLLoss(INF), "'beta' parameter of NLLLoss must be a number > 0"),
        (lambda: MEELoss("1"), "'beta' parameter of MEELoss must be a number > 0"),
        (lambda: EnergyLoss(-1.0), "'beta' parameter of EnergyLoss must be a number > 0"),
        (lambda: SquareExpLoss(0.0), "'gamma' parameter of SquareExpLoss"),
        (lambda: LVQ2Loss(0.0), "'delta' parameter of LVQ2Loss"),
        (lambda: LogLoss(radius=-0.1), "'radius' parameter of LogLoss must be a number >= 0"),
        (lambda: MCELoss(hamming=math.nan), "'hamming' parameter of MCELoss"),
    ],
)
def test_bad_loss_parameters(make, message):
    with pytest.raises(fg.FactorGraphError, match=re.escape(message)):
        make()


def test_bad_offending_options(small_graph):
    target = {"a": 0, "b": 0}
    with pytest.raises(fg.FactorGraphError, match="'radius' parameter of most_offending"):
        most_offending(small_graph, target, latent=["z"], radius=-1)
    with pytest.raises(fg.FactorGraphError, match=re.escape("must return shape (3,)")):
        most_offending(
            small_graph, target, latent=["z"], distance=lambda name, y: np.zeros(2)
        )
    with pytest.raises(fg.FactorGraphError, match="no state values for variable 'b'"):
        most_offending(small_graph, target, latent=["z"], distance=value_distance({"a": [0, 1]}))
    with pytest.raises(fg.FactorGraphError, match=re.escape("energies must have shape (12,)")):
        HingeLoss().value_and_grad(small_graph, target, latent=["z"], energies=np.zeros(3))
    with pytest.raises(fg.FactorGraphError, match="graph must be a FactorGraph"):
        HingeLoss().value_and_grad("graph", target)
