"""factorgraph_ebm.torch, the PyTorch bridge: gradients by torch.autograd.gradcheck (float64
central differences) on the free energies and the NLL, min-sum quantities against central
finite differences away from ties, values against brute force over every configuration, and
agreement with the NumPy path (``Loss.value_and_grad``, the trellis functions).

On loopy graphs the free energy is checked twice: with ``method="exact"`` (junction tree)
against brute force and by gradcheck, and with ``method="bp"`` by gradcheck of the Bethe
free energy, whose gradient at a converged fixed point is BP's beliefs (it differs from the
exact free energy, which the test also shows). Skipped when PyTorch is not installed (the
``torch`` extra), except the ImportError message test.
"""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm as fe
from factorgraph_ebm.energy import table_entries_of
from factorgraph_ebm.exceptions import FactorGraphError, TargetError
from factorgraph_ebm.graph_backend import GraphBatch


def test_import_error_names_the_extra():
    """Without PyTorch, importing the bridge fails with an ImportError naming the extra."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import factorgraph_ebm.torch\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "factorgraph-ebm[torch]" in out.stdout, out.stdout + out.stderr


torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra)")
from factorgraph_ebm.torch import (  # noqa: E402
    ChainEnergyModel,
    GraphEnergyModel,
    chain_free_energy,
    chain_loss,
    chain_min_energy,
    graph_free_energy,
    graph_loss,
    graph_min_energy,
)

torch.set_num_threads(1)
F64 = torch.float64


# --------------------------------------------------------------------------- graphs
def tree_graph():
    """5 variables of 2-3 states: a tree of pairwise factors plus unary factors."""
    g = fe.FactorGraph()
    g.add_variables(["a", "b", "c"], 3)
    g.add_variables(["d", "e"], 2)
    for scope in (("a", "b"), ("b", "c"), ("b", "d"), ("d", "e"), ("a",), ("e",)):
        g.add_factor(scope, np.zeros([g.n_states[g.index_of(v)] for v in scope]))
    return g


def loopy_graph():
    """A 4-cycle of ternary/binary variables with a chord-free loop and a unary factor."""
    g = fe.FactorGraph()
    g.add_variables(["a", "b"], 3)
    g.add_variables(["c", "d"], 2)
    for scope in (("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("a",)):
        g.add_factor(scope, np.zeros([g.n_states[g.index_of(v)] for v in scope]))
    return g


def configurations(graph):
    return np.array(list(itertools.product(*[range(k) for k in graph.n_states])))


def brute_energies(graph, theta):
    """E(y) of every configuration, summed from theta's table entries (independent of BP)."""
    cg = graph.compile()
    out = []
    for y in configurations(graph):
        total = 0.0
        for f in range(cg.n_factors):
            scope = [graph.index_of(v) for v in graph.factor_scope(f)]
            shape = [graph.n_states[i] for i in scope]
            table = theta[cg.table_offset[f]:cg.table_offset[f + 1]].reshape(shape)
            total += table[tuple(y[scope])]
        out.append(total)
    return np.array(out)


def random_theta(graph, rng, batch=None, scale=1.0):
    m = graph.compile().n_energy_entries
    shape = (m,) if batch is None else (batch, m)
    return torch.tensor(rng.normal(scale=scale, size=shape), dtype=F64, requires_grad=True)


def central_differences(fn, theta, step=1e-6):
    """d fn / d theta (theta (M,) float64 numpy), fn: numpy -> float."""
    grad = np.empty_like(theta)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = step
        grad[i] = (fn(theta + e) - fn(theta - e)) / (2 * step)
    return grad


def gap_to_second(energies):
    low = np.sort(energies)
    return low[1] - low[0]


# --------------------------------------------------------------------------- free energy
@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_free_energy_tree_matches_brute_force_and_gradcheck(beta):
    g = tree_graph()
    rng = np.random.default_rng(0)
    theta = random_theta(g, rng, batch=3)
    free = graph_free_energy(g, theta, beta=beta)
    for b in range(3):
        e = brute_energies(g, theta[b].detach().numpy())
        low = e.min()
        expected = low - np.log(np.exp(-beta * (e - low)).sum()) / beta
        assert free[b].item() == pytest.approx(expected, rel=1e-10, abs=1e-10)
    assert torch.autograd.gradcheck(lambda t: graph_free_energy(g, t, beta=beta), (theta,),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_free_energy_loopy_exact_and_bethe():
    """Junction tree: the exact free energy (brute force) and its gradient (gradcheck).
    Loopy BP: the Bethe free energy, which differs from it, with BP's beliefs as its exact
    gradient at the fixed point (gradcheck on the Bethe free energy)."""
    g = loopy_graph()
    assert not g.is_forest()
    rng = np.random.default_rng(1)
    theta = random_theta(g, rng, batch=2)
    exact = graph_free_energy(g, theta, method="exact")
    for b in range(2):
        e = brute_energies(g, theta[b].detach().numpy())
        assert exact[b].item() == pytest.approx(-np.log(np.exp(-e).sum()), rel=1e-10)
    assert torch.autograd.gradcheck(lambda t: graph_free_energy(g, t, method="exact"),
                                    (theta,), eps=1e-6, atol=1e-7, rtol=1e-5)
    options = dict(method="bp", tol=1e-14, max_iter=10_000)
    bethe = graph_free_energy(g, theta, **options)
    assert (bethe - exact).abs().max().item() > 1e-4  # not the exact free energy
    assert torch.autograd.gradcheck(lambda t: graph_free_energy(g, t, **options), (theta,),
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


def test_free_energy_with_infinite_entries_has_finite_gradient():
    """+inf entries (hard constraints) are legal: zero marginal, no NaN."""
    g = tree_graph()
    rng = np.random.default_rng(2)
    theta = random_theta(g, rng)
    with torch.no_grad():
        theta[:3] = float("inf")
    free = graph_free_energy(g, theta)
    free.backward()
    assert torch.isfinite(free) and torch.isfinite(theta.grad).all()
    assert (theta.grad[:3] == 0).all()


# --------------------------------------------------------------------------- NLL
@pytest.mark.parametrize("make, options", [(tree_graph, {}), (loopy_graph, {"method": "exact"})])
def test_nll_gradcheck_and_brute_force(make, options):
    g = make()
    rng = np.random.default_rng(3)
    theta = random_theta(g, rng, batch=3)
    targets = [{"a": 0, "b": 1, "c": 1, "d": 0} | ({"e": 1} if "e" in g.variables else {}),
               {v: 1 for v in g.variables},
               {v: 0 for v in g.variables}]
    loss = fe.NLLLoss(beta=0.8)
    value = graph_loss(g, theta, loss, targets, **options)
    configs = configurations(g)
    for b, target in enumerate(targets):
        e = brute_energies(g, theta[b].detach().numpy())
        y = [target[v] for v in g.variables]
        correct = e[np.flatnonzero((configs == y).all(1))[0]]
        free = -np.log(np.exp(-0.8 * e).sum()) / 0.8
        assert value[b].item() == pytest.approx(correct - free, rel=1e-10)
    assert torch.autograd.gradcheck(lambda t: graph_loss(g, t, loss, targets, **options),
                                    (theta,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_nll_with_latent_variable_gradcheck():
    """Latent variable: E_C is the free energy over it of the clamped graph."""
    g = tree_graph()
    rng = np.random.default_rng(4)
    theta = random_theta(g, rng, batch=2)
    loss = fe.NLLLoss()
    targets = {"a": 2, "b": 0, "c": 1, "e": 1}
    value = graph_loss(g, theta, loss, targets, latent=["d"])
    configs = configurations(g)
    for b in range(2):
        e = brute_energies(g, theta[b].detach().numpy())
        match = (configs[:, [0, 1, 2, 4]] == [2, 0, 1, 1]).all(1)
        expected = -np.log(np.exp(-e[match]).sum()) + np.log(np.exp(-e).sum())
        assert value[b].item() == pytest.approx(expected, rel=1e-10)
    assert torch.autograd.gradcheck(
        lambda t: graph_loss(g, t, loss, targets, latent=["d"]), (theta,), eps=1e-6,
        atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------- min-sum
MIN_SUM_LOSSES = {
    "hinge": fe.HingeLoss(margin=3.0),
    "hinge-hamming": fe.HingeLoss(margin=1.0, hamming=0.7),
    "perceptron": fe.PerceptronLoss(),
    "log": fe.LogLoss(),
    "square-square": fe.SquareSquareLoss(margin=2.0),
}


@pytest.mark.parametrize("name", MIN_SUM_LOSSES)
@pytest.mark.parametrize("make", [tree_graph, loopy_graph])
def test_min_sum_losses_against_finite_differences(name, make):
    """Away from ties (checked by brute force), the backward pass is the derivative."""
    g = make()
    loss = MIN_SUM_LOSSES[name]
    target = {v: i % 2 for i, v in enumerate(g.variables)}
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(10):
        theta = random_theta(g, rng, scale=2.0)
        e = brute_energies(g, theta.detach().numpy())
        if gap_to_second(e) < 1e-3:
            continue
        value = graph_loss(g, theta, loss, target)
        value.backward()

        def numeric(t):
            return loss.value_and_grad(g, target, energies=t).value

        expected = central_differences(numeric, theta.detach().numpy())
        np.testing.assert_allclose(theta.grad.numpy(), expected, atol=1e-6)
        checked += 1
    assert checked >= 5


def test_min_energy_brute_force_and_finite_differences():
    for make in (tree_graph, loopy_graph):
        g = make()
        rng = np.random.default_rng(6)
        theta = random_theta(g, rng, batch=4)
        low = graph_min_energy(g, theta)
        low.sum().backward()
        for b in range(4):
            row = theta[b].detach().numpy()
            e = brute_energies(g, row)
            assert low[b].item() == pytest.approx(e.min(), rel=1e-12)
            assert gap_to_second(e) > 1e-4

            def minimum(t, g=g):
                return brute_energies(g, t).min()

            np.testing.assert_allclose(theta.grad[b].numpy(),
                                       central_differences(minimum, row), atol=1e-6)


# --------------------------------------------------------------------------- NumPy path
@pytest.mark.parametrize("loss", [fe.NLLLoss(beta=0.5), fe.HingeLoss(), fe.PerceptronLoss(),
                                  fe.MEELoss(), fe.EnergyLoss()], ids=repr)
def test_graph_loss_agrees_with_value_and_grad(loss):
    """Batch values and gradients (with per-sample weights from grad_output) are the NumPy
    path's, for float64 and float32 tensors."""
    g = tree_graph()
    rng = np.random.default_rng(7)
    theta64 = random_theta(g, rng, batch=3)
    targets = [{v: int(rng.integers(g.n_states[i])) for i, v in enumerate(g.variables)}
               for _ in range(3)]
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-5)):
        theta = theta64.detach().to(dtype).requires_grad_(True)
        value = graph_loss(g, theta, loss, targets)
        assert value.dtype == dtype and value.shape == (3,)
        (value * weights.to(dtype)).sum().backward()
        assert theta.grad.dtype == dtype
        for b in range(3):
            step = loss.value_and_grad(g, targets[b],
                                       energies=theta[b].detach().double().numpy())
            assert value[b].item() == pytest.approx(step.value, rel=tol, abs=tol)
            np.testing.assert_allclose(theta.grad[b].double().numpy(),
                                       weights[b].item() * step.grad, rtol=tol, atol=tol)


def test_single_sample_shapes_and_bad_input():
    g = tree_graph()
    rng = np.random.default_rng(8)
    theta = random_theta(g, rng)
    assert graph_free_energy(g, theta).shape == ()
    assert graph_loss(g, theta, fe.HingeLoss(), {v: 0 for v in g.variables}).shape == ()
    with pytest.raises(FactorGraphError, match="entries per sample"):
        graph_min_energy(g, theta[:-1])
    with pytest.raises(FactorGraphError, match="floating-point"):
        graph_min_energy(g, torch.zeros(theta.shape[0], dtype=torch.int64))
    with pytest.raises(TargetError, match="sequence of 2"):
        graph_loss(g, torch.stack([theta, theta]), fe.HingeLoss(), [{"a": 0}])
    with pytest.raises(TargetError, match="no state for output variable"):
        graph_loss(g, theta, fe.HingeLoss(), {"a": 0})


# --------------------------------------------------------------------------- chains
def padded_chains(rng, lengths, k, dtype=F64):
    t = max(lengths)
    unary = torch.tensor(rng.normal(size=(len(lengths), t, k)), dtype=dtype, requires_grad=True)
    trans = torch.tensor(rng.normal(size=(k, k)), dtype=dtype, requires_grad=True)
    start = torch.tensor(rng.normal(size=k), dtype=dtype, requires_grad=True)
    end = torch.tensor(rng.normal(size=k), dtype=dtype, requires_grad=True)
    return unary, trans, start, end


def brute_paths(unary, trans, start, end, length):
    """(paths (K^T, T), energies) of one sequence, by enumeration."""
    k = trans.shape[0]
    paths = np.array(list(itertools.product(range(k), repeat=length)))
    energies = []
    for y in paths:
        e = unary[np.arange(length), y].sum() + trans[y[:-1], y[1:]].sum()
        if start is not None:
            e += start[y[0]] + end[y[-1]]
        energies.append(e)
    return paths, np.array(energies)


@pytest.mark.parametrize("boundary", [False, True])
def test_chain_free_energy_brute_force_and_gradcheck(boundary):
    rng = np.random.default_rng(9)
    lengths = [4, 1, 0, 3]
    unary, trans, start, end = padded_chains(rng, lengths, 3)
    if not boundary:
        start = end = None
    free = chain_free_energy(unary, trans, lengths, beta=0.7, start=start, end=end)
    arrays = [None if x is None else x.detach().numpy() for x in (unary, trans, start, end)]
    for b, n in enumerate(lengths):
        if n == 0:
            assert free[b].item() == 0.0
            continue
        _, e = brute_paths(arrays[0][b, :n], *arrays[1:], n)
        expected = -np.log(np.exp(-0.7 * e).sum()) / 0.7
        assert free[b].item() == pytest.approx(expected, rel=1e-10)
    inputs = tuple(x for x in (unary, trans, start, end) if x is not None)

    def fn(*xs):
        s, e = (xs[2], xs[3]) if boundary else (None, None)
        return chain_free_energy(xs[0], xs[1], lengths, beta=0.7, start=s, end=e)

    # gradcheck's random output weights exercise the per-weight transition marginals.
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_chain_nll_gradcheck_and_agrees_with_graph_path():
    """Chain NLL = graph NLL on the same chain built as a FactorGraph (BP on a tree), and
    its gradient passes gradcheck."""
    rng = np.random.default_rng(10)
    lengths = [4, 2]
    unary, trans, start, end = padded_chains(rng, lengths, 3)
    labels = torch.tensor([[0, 2, 1, 1], [1, 0, -5, -5]])  # padding is ignored
    loss = fe.NLLLoss()
    value = chain_loss(unary, trans, labels, loss, lengths, start=start, end=end)
    for b, n in enumerate(lengths):
        g = fe.FactorGraph()
        g.add_variables(range(n), 3)
        u = unary[b, :n].detach().numpy().copy()
        u[0] += start.detach().numpy()
        u[n - 1] += end.detach().numpy()
        for t in range(n):
            g.add_factor([t], u[t])
        for t in range(1, n):
            g.add_factor([t - 1, t], trans.detach().numpy())
        target = {t: int(labels[b, t]) for t in range(n)}
        assert value[b].item() == pytest.approx(loss.value_and_grad(g, target).value,
                                                rel=1e-10)
    assert torch.autograd.gradcheck(
        lambda u, a, s, e: chain_loss(u, a, labels, loss, lengths, start=s, end=e),
        (unary, trans, start, end), eps=1e-6, atol=1e-7, rtol=1e-5)


CHAIN_LOSSES = {
    "hinge": fe.HingeLoss(margin=2.0),
    "hinge-hamming": fe.HingeLoss(margin=1.0, hamming=1.0),
    "perceptron": fe.PerceptronLoss(),
    "energy": fe.EnergyLoss(),
    "log": fe.LogLoss(),
    "lvq2": fe.LVQ2Loss(),
    "mce": fe.MCELoss(),
    "square-square": fe.SquareSquareLoss(margin=2.0, hamming=0.5),
    "square-exp": fe.SquareExpLoss(),
}


def test_chain_mee_brute_force_and_gradcheck():
    """MEE through the bridge (the chain backend's per-sequence weighted marginals): value
    ``1 - P_beta(Y^i)`` by enumerating every path, gradient by gradcheck, an empty sequence
    included (loss 0: its one path is the desired one)."""
    rng = np.random.default_rng(14)
    lengths = [4, 0, 2, 3]
    unary, trans, start, end = padded_chains(rng, lengths, 3)
    labels = torch.tensor([[0, 2, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [2, 2, 0, 0]])
    loss = fe.MEELoss(beta=0.8)
    value = chain_loss(unary, trans, labels, loss, lengths, start=start, end=end)
    arrays = [x.detach().numpy() for x in (unary, trans, start, end)]
    for b, n in enumerate(lengths):
        if n == 0:
            assert value[b].item() == pytest.approx(0.0, abs=1e-12)
            continue
        paths, energy = brute_paths(arrays[0][b, :n], *arrays[1:], n)
        p = np.exp(-0.8 * energy)
        p /= p.sum()
        desired = (paths == labels[b, :n].numpy()).all(1)
        assert value[b].item() == pytest.approx(1.0 - p[desired][0], rel=1e-10)
    # gradcheck's random output weights exercise per-sequence weights on top of MEE's own.
    assert torch.autograd.gradcheck(
        lambda u, a, s, e: chain_loss(u, a, labels, loss, lengths, start=s, end=e),
        (unary, trans, start, end), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradcheck(
        lambda u, a: chain_loss(u, a, labels, loss, lengths),
        (unary, trans), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("loss", [fe.NLLLoss(beta=0.6), fe.MEELoss(beta=0.6),
                                  fe.PerceptronLoss(), fe.EnergyLoss(),
                                  fe.HingeLoss(margin=1.0, hamming=1.0), fe.MCELoss(),
                                  fe.SquareExpLoss(hamming=0.5)],
                         ids=lambda loss: type(loss).__name__)
def test_chain_loss_agrees_with_numpy_chain_backend(loss):
    """chain_loss = Loss.evaluate on ChainBatch (what SequenceLabeler trains with), fed the
    flat float64 arrays: values per sequence and the gradient of their sum, float32 input
    included; an empty sequence gets zero gradient."""
    from factorgraph_ebm.chain_backend import ChainBatch

    rng = np.random.default_rng(15)
    lengths = [4, 1, 0, 3]
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-5)):
        unary, trans, start, end = padded_chains(rng, lengths, 3, dtype=dtype)
        labels = rng.integers(0, 3, size=(len(lengths), max(lengths)))
        value = chain_loss(unary, trans, labels, loss, lengths, start=start, end=end)
        assert value.dtype == dtype
        value.sum().backward()
        mask = np.arange(max(lengths))[None] < np.array(lengths)[:, None]
        arrays = [x.detach().double().numpy() for x in (unary, trans, start, end)]
        found = loss.evaluate(ChainBatch(arrays[0][mask], arrays[1], arrays[2], arrays[3],
                                         labels[mask], np.array(lengths)))
        np.testing.assert_allclose(value.detach().double().numpy(), found.value,
                                   rtol=tol, atol=tol)
        grads = [x.grad.double().numpy() for x in (unary, trans, start, end)]
        np.testing.assert_allclose(grads[0][mask], found.grad.unary, rtol=tol, atol=tol)
        assert not grads[0][~mask].any()            # padding and the empty sequence
        for mine, theirs in zip(grads[1:], found.grad[1:]):
            np.testing.assert_allclose(mine, theirs, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", CHAIN_LOSSES)
def test_chain_min_sum_losses_brute_force_and_finite_differences(name):
    """Value by enumerating every path (Hamming augmentation included); gradient by central
    differences of that brute-force value, away from ties."""
    loss = CHAIN_LOSSES[name]
    rng = np.random.default_rng(11)
    lengths = [3, 2]
    labels = np.array([[0, 1, 1], [2, 0, 0]])
    hamming = getattr(loss, "hamming", 0.0)

    def brute(u, a, s, e):
        out = []
        for b, n in enumerate(lengths):
            paths, energy = brute_paths(u[b, :n], a, s, e, n)
            y = labels[b, :n]
            same = (paths == y).all(1)
            correct = energy[same][0]
            if name == "energy":
                out.append(correct)
            elif name == "perceptron":
                out.append(max(correct - energy.min(), 0.0))
            else:
                augmented = energy - hamming * (paths != y).sum(1)
                out.append(loss.q(correct, augmented[~same].min())[0])
        return np.array(out)

    checked = 0
    for _ in range(6):
        unary, trans, start, end = padded_chains(rng, lengths, 3)
        arrays = [x.detach().numpy() for x in (unary, trans, start, end)]
        if min(gap_to_second(brute_paths(arrays[0][b, :n], *arrays[1:], n)[1])
               for b, n in enumerate(lengths)) < 1e-3:
            continue
        value = chain_loss(unary, trans, labels, loss, lengths, start=start, end=end)
        np.testing.assert_allclose(value.detach().numpy(), brute(*arrays), rtol=1e-10,
                                   atol=1e-12)
        weights = torch.tensor([1.0, 0.5], dtype=F64)
        (value * weights).sum().backward()
        for k, x in enumerate((unary, trans, start, end)):
            def scalar(flat, k=k, arrays=arrays, weights=weights):
                parts = [a.copy() for a in arrays]
                parts[k] = flat.reshape(arrays[k].shape)
                return brute(*parts) @ weights.numpy()

            np.testing.assert_allclose(x.grad.numpy().ravel(),
                                       central_differences(scalar, arrays[k].ravel()),
                                       atol=1e-6)
        checked += 1
    assert checked >= 3


def test_chain_min_energy_agrees_with_viterbi_float32():
    rng = np.random.default_rng(12)
    lengths = [5, 3, 0]
    unary, trans, _, _ = padded_chains(rng, lengths, 4, dtype=torch.float32)
    low = chain_min_energy(unary, trans, lengths)
    assert low.dtype == torch.float32
    flat = np.concatenate([unary[b, :n].detach().double().numpy()
                           for b, n in enumerate(lengths)])
    best = fe.trellis.viterbi(flat, trans.detach().double().numpy(), lengths)
    np.testing.assert_allclose(low.detach().double().numpy(), best.energy, rtol=1e-6)
    low.sum().backward()
    counts = unary.grad.sum((1, 2)).tolist()
    assert counts == [5.0, 3.0, 0.0]            # one state per token of each path
    assert trans.grad.sum().item() == 4 + 2     # one transition per pair of neighbours


def test_chain_bad_input():
    rng = np.random.default_rng(13)
    unary, trans, _, _ = padded_chains(rng, [3, 2], 3)
    with pytest.raises(FactorGraphError, match="out of range 0..3"):
        chain_min_energy(unary, trans, [4, 2])
    with pytest.raises(FactorGraphError, match="transition must have shape"):
        chain_min_energy(unary, trans[:2], [3, 2])
    with pytest.raises(TargetError, match=r"labels\[1, 0\] = 3"):
        chain_loss(unary, trans, [[0, 0, 0], [3, 0, 0]], fe.NLLLoss(), [3, 2])
    with pytest.raises(FactorGraphError, match="must be a Loss"):
        chain_loss(unary, trans, [[0, 0, 0], [0, 0, 0]], "hinge", [3, 2])
    with pytest.raises(FactorGraphError, match="forbidden sphere"):
        chain_loss(unary, trans, [[0, 0, 0], [0, 0, 0]], fe.HingeLoss(radius=1.0), [3, 2])
    forbidding = unary.detach().clone()
    forbidding[0, 0, 0] = float("inf")
    with pytest.raises(TargetError, match="sequence 0 have energy"):
        chain_loss(forbidding, trans, [[0, 0, 0], [0, 0, 0]], fe.NLLLoss(), [3, 2])


# --------------------------------------------------------------------------- modules
def test_graph_energy_model_learns_with_latent_variable():
    """A network over a (category, pose) graph learns categories with the pose latent."""
    g = fe.FactorGraph()
    g.add_variable("category", 3)
    g.add_variable("pose", 2)
    g.add_factor(["category", "pose"], np.zeros((3, 2)))
    torch.manual_seed(0)
    model = GraphEnergyModel(torch.nn.Linear(3, 6), g, fe.HingeLoss(), latent=["pose"])
    x = torch.eye(3)
    targets = [{"category": c} for c in (2, 0, 1)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(50):
        optimizer.zero_grad()
        model(x, targets).mean().backward()
        optimizer.step()
    assert model(x, targets).max().item() == 0.0
    assert model.predict(x)[:, 0].tolist() == [2, 0, 1]


def test_chain_energy_model_learns_a_transition_rule():
    """Labels that only the transitions determine (label t = label t-1 + 1 mod 3 after a
    cue at t = 0): the learned transition table must carry them."""
    torch.manual_seed(0)
    rng = np.random.default_rng(14)
    n, t, k = 20, 6, 3
    first = rng.integers(k, size=n)
    labels = (first[:, None] + np.arange(t)[None]) % k
    x = torch.zeros(n, t, k)
    x[np.arange(n), 0, first] = 1.0  # only the first token is informative
    lengths = rng.integers(1, t + 1, size=n)
    model = ChainEnergyModel(torch.nn.Linear(k, k), k, fe.NLLLoss(), boundary=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        optimizer.zero_grad()
        model(x, torch.as_tensor(labels), lengths).mean().backward()
        optimizer.step()
    predicted = model.predict(x, lengths).numpy()
    mask = np.arange(t)[None] < lengths[:, None]
    assert (predicted[mask] == labels[mask]).all()
    assert (predicted[~mask] == -1).all()


# --------------------------------------------------------------------------- example
CONLL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"


@pytest.mark.skipif(not (CONLL / "train.txt").is_file(), reason=f"no CoNLL-2000 at {CONLL}")
def test_neural_chunker_quick_run():
    """examples/neural_chunker.py --quick: the row format of chunking_conll2000.py and a
    network that learned something in one epoch on 1,000 sentences."""
    example = Path(__file__).resolve().parents[1] / "examples" / "neural_chunker.py"
    process = subprocess.run([sys.executable, str(example), "--quick", "--epochs", "1"],
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert process.returncode == 0, process.stderr
    (only,) = json.loads(process.stdout.strip().splitlines()[-1])["rows"]
    assert set(only) == {"system", "loss", "token_accuracy", "chunk_f1", "train_seconds",
                         "epochs", "weights"}
    assert only["epochs"] == 1 and only["weights"] > 0
    assert only["chunk_f1"] > 0.5, only


# --------------------------------------------------------------------------- batching
class _Counter:
    """Wraps a function of factorgraph_ebm.torch, counting its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def counted(monkeypatch, *names):
    import factorgraph_ebm.torch as bridge

    counters = {name: _Counter(getattr(bridge, name)) for name in names}
    for name, counter in counters.items():
        monkeypatch.setattr(bridge, name, counter)
    return counters


BATCH_CASES = [(tree_graph, {}), (loopy_graph, {"method": "exact"}),
               (loopy_graph, {"method": "bp", "max_iter": 50})]


@pytest.mark.parametrize("make, options", BATCH_CASES, ids=["tree", "exact", "loopy-bp"])
def test_graph_energies_are_one_batched_call_equal_to_single_calls(monkeypatch, make,
                                                                   options):
    """graph_min_energy and graph_free_energy on a batch make exactly one
    batch_belief_propagation call and no single call; values and weighted gradients are
    those of belief_propagation on each row, bit for bit (a designed guarantee of batched
    inference: the same kernels in the same order). With a callback they fall back to one
    single call per row, with the same results."""
    g = make()
    cg = g.compile()
    rng = np.random.default_rng(21)
    theta0 = random_theta(g, rng, batch=4)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    for fn, beta, field in ((graph_min_energy, np.inf, "energy"),
                            (lambda g_, t, **o: graph_free_energy(g_, t, beta=0.7, **o), 0.7,
                             "free_energy")):
        expected_values, expected_grads = [], []
        for b, row in enumerate(theta0.detach().numpy()):
            r = fe.belief_propagation(g, beta=beta, energies=row, **options)
            expected_values.append(getattr(r, field))
            grad = (np.bincount(table_entries_of(cg, r.assignment),
                                minlength=cg.n_energy_entries).astype(np.float64)
                    if field == "energy" else r.factor_beliefs)
            expected_grads.append(weights[b].item() * grad)
        for extra, batched in (({}, True), ({"callback": lambda n, res: None}, False)):
            counters = counted(monkeypatch, "batch_belief_propagation", "belief_propagation")
            theta = theta0.detach().clone().requires_grad_(True)
            value = fn(g, theta, **options, **extra)
            (value * weights).sum().backward()
            assert counters["batch_belief_propagation"].calls == (1 if batched else 0)
            assert counters["belief_propagation"].calls == (0 if batched else 4)
            np.testing.assert_array_equal(value.detach().numpy(), expected_values)
            np.testing.assert_array_equal(theta.grad.numpy(), np.array(expected_grads))
            monkeypatch.undo()


@pytest.mark.parametrize("make, options", BATCH_CASES, ids=["tree", "exact", "loopy-bp"])
@pytest.mark.parametrize("loss", [fe.NLLLoss(beta=0.5), fe.HingeLoss(margin=1.0)], ids=repr)
def test_graph_loss_is_one_batch_equal_to_single_calls(monkeypatch, make, options, loss):
    """graph_loss with a latent variable runs the loss once on a GraphBatch of the whole
    batch (no per-sample value_and_grad), with the values and weighted gradients of
    value_and_grad on each row, bit for bit (GraphBatch's designed guarantee); warm-start
    messages make it fall back to value_and_grad per row."""
    import factorgraph_ebm.torch as bridge

    g = make()
    rng = np.random.default_rng(22)
    theta0 = random_theta(g, rng, batch=4)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    targets = [{v: int(rng.integers(g.n_states[i])) for i, v in enumerate(g.variables)
                if v != "d"} for _ in range(4)]
    steps = [loss.value_and_grad(g, targets[b], energies=row, latent=["d"], **options)
             for b, row in enumerate(theta0.detach().numpy())]
    batches, single = [], _Counter(type(loss).value_and_grad)

    class Counting(GraphBatch):
        def __init__(self, samples):
            super().__init__(samples)
            batches.append(len(self.samples))

    for messages, batched in ((None, True), ([{} for _ in range(4)], False)):
        batches.clear()
        single.calls = 0
        monkeypatch.setattr(bridge, "GraphBatch", Counting)
        monkeypatch.setattr(type(loss), "value_and_grad",
                            lambda self, *args, **kwargs: single(self, *args, **kwargs))
        theta = theta0.detach().clone().requires_grad_(True)
        value = graph_loss(g, theta, loss, targets, latent=["d"], messages=messages,
                           **options)
        (value * weights).sum().backward()
        monkeypatch.undo()
        assert batches == ([4] if batched else [])
        assert single.calls == (0 if batched else 4)
        np.testing.assert_array_equal(value.detach().numpy(), [s.value for s in steps])
        np.testing.assert_array_equal(
            theta.grad.numpy(), np.array([w * s.grad for w, s in zip(weights.tolist(), steps)]))


def test_graph_energy_model_predict_is_one_batched_call(monkeypatch):
    """GraphEnergyModel.predict decodes the batch in one batch_belief_propagation call,
    the assignments of belief_propagation row by row."""
    g = loopy_graph()
    network = torch.nn.Linear(3, g.compile().n_energy_entries).double()
    model = GraphEnergyModel(network, g, fe.HingeLoss(), method="bp")
    x = torch.tensor(np.random.default_rng(23).normal(size=(5, 3)))
    counters = counted(monkeypatch, "batch_belief_propagation", "belief_propagation")
    states = model.predict(x)
    assert counters["batch_belief_propagation"].calls == 1
    assert counters["belief_propagation"].calls == 0
    monkeypatch.undo()
    with torch.no_grad():
        rows = network(x).numpy()
    expected = [fe.belief_propagation(g, energies=row, method="bp").assignment for row in rows]
    np.testing.assert_array_equal(states.numpy(), expected)
