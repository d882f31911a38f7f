"""Training's batched graph backend (factorgraph_ebm.graph_backend.GraphBatch): a mini-batch
runs each inference of the loss once for the whole batch, with the loss values, gradients
and trained weights of the per-sample loop, bit for bit (the batched calls are the single
calls bit for bit; the sums run in the loop's order)."""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from strategies import describe, loopy_graphs, trees

import factorgraph_ebm as fg
import factorgraph_ebm.graph_backend as graph_backend
import factorgraph_ebm.train as train
from factorgraph_ebm.losses import (
    EnergyLoss,
    HingeLoss,
    LogLoss,
    MCELoss,
    MEELoss,
    NLLLoss,
    PerceptronLoss,
    SquareSquareLoss,
    TargetError,
)
from factorgraph_ebm.models import TableModel
from factorgraph_ebm.optim import LBFGS, Adam
from factorgraph_ebm.train import _Run, fit

LOSSES = [
    EnergyLoss(), EnergyLoss(beta=0.7), PerceptronLoss(), NLLLoss(), NLLLoss(beta=2.0),
    MEELoss(), HingeLoss(), HingeLoss(margin=0.5, hamming=1.0), HingeLoss(radius=1.0),
    LogLoss(), MCELoss(hamming=0.5), SquareSquareLoss(),
]


def _outcome(run, params, indices):
    """``run.batch``'s (value, grad), or the exception it raises as (type, message)."""
    try:
        return run.batch(params, indices)
    except fg.FactorGraphError as exc:
        return type(exc), str(exc)


def _same(a, b):
    if isinstance(a[0], type) or isinstance(b[0], type):
        return a == b
    value_a, value_b = a[0], b[0]
    same_value = value_a == value_b or (math.isnan(value_a) and math.isnan(value_b))
    return same_value and np.array_equal(a[1], b[1], equal_nan=True)


@st.composite
def cases(draw):
    loopy = draw(st.booleans())
    if loopy:
        graph = draw(loopy_graphs(max_variables=5, max_configs=300))
        options = draw(st.sampled_from([{}, {"method": "exact"}, {"method": "trws"},
                                        {"method": "bp", "damping": 0.5, "warn": False},
                                        {"method": "bp", "schedule": "parallel",
                                         "damping": 0.3, "max_iter": 30, "warn": False}]))
    else:
        graph = draw(trees(max_variables=5, max_configs=300))
        options = draw(st.sampled_from([{}, {"method": "bp"}, {"schedule": "tree"},
                                        {"method": "exact"}]))
    n = graph.n_variables
    latent = [graph.variables[i] for i in range(n)
              if n > 1 and i < n - 1 and draw(st.booleans())]
    n_samples = draw(st.integers(2, 5))
    samples = []
    for _ in range(n_samples):
        target = {name: draw(st.integers(0, k - 1))
                  for name, k in zip(graph.variables, graph.n_states.tolist())
                  if name not in latent}
        samples.append((None, target))
    loss = draw(st.sampled_from(LOSSES))
    seed = draw(st.integers(0, 2**16))
    return graph, options, latent, samples, loss, seed, loopy


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases())
def test_batched_terms_equal_the_loop_bit_for_bit(case):
    """On random trees and loopy graphs (+inf entries included), with and without latent
    variables, every loss: the batched objective's summed loss and gradient are those of
    the per-sample loop bit for bit (or both raise the same error). On forests the loop
    runs warm-started (its second call reads the first call's messages), which the
    two-pass schedule ignores; on loopy graphs batching runs without warm start. TRW-S
    with a loss at a finite beta is refused when the objective is built."""
    graph, options, latent, samples, loss, seed, loopy = case
    note(describe(graph))
    model = TableModel(graph)
    rng = np.random.default_rng(seed)
    base = graph.compile().energies
    warm = not loopy or options.get("method") in ("exact", "trws")
    if options.get("method") == "trws" and math.isfinite(getattr(loss, "beta", math.inf)):
        with pytest.raises(fg.FactorGraphError, match="method='trws' finds a lowest"):
            _Run(model, loss, samples, tuple(latent), warm, options)
        return  # refused before any sample, so the loop and the batch cannot differ
    batched = _Run(model, loss, samples, tuple(latent), warm, options)
    assert batched.batched
    looped = _Run(model, loss, samples, tuple(latent), warm, options)
    looped.batched = False
    for _ in range(2):  # the loop's second step starts from the first step's messages
        params = np.where(np.isinf(base), np.inf, rng.normal(size=model.n_params))
        indices = [int(i) for i in rng.permutation(len(samples))]
        result, expected = _outcome(batched, params, indices), _outcome(looped, params, indices)
        assert _same(result, expected), (result, expected)


def _chain(n, k, loop=False):
    graph = fg.FactorGraph()
    graph.add_variables(range(n), k)
    for i in range(n):
        graph.add_factor([i], np.zeros(k))
    pairs = graph.add_factors([(i, i + 1) for i in range(n - 1)], np.zeros((n - 1, k, k)))
    if loop:
        graph.add_factor([0, n - 1], np.zeros((k, k)))
    return graph, pairs


def _samples(n_samples, n, k, seed):
    rng = np.random.default_rng(seed)
    return [(None, {i: int(s) for i, s in enumerate(rng.integers(0, k, n))})
            for _ in range(n_samples)]


@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("latent", [(), (2,)])
@pytest.mark.parametrize("make", [
    lambda: (NLLLoss(), Adam(0.05), 4),
    lambda: (HingeLoss(hamming=1.0), Adam(0.05), 3),
    lambda: (NLLLoss(), LBFGS(), 1),
])
def test_trained_weights_equal_the_loop(monkeypatch, make, latent, loop):
    """fit with mini-batches (Adam) and the full batch (L-BFGS): the trained weights and
    history of the batched objective are those of the loop, bit for bit."""
    graph, pairs = _chain(5, 3, loop)
    model = TableModel(graph, tie=[pairs])
    samples = [(x, {v: s for v, s in t.items() if v not in latent})
               for x, t in _samples(11, 5, 3, seed=1)]
    loss, optimizer, batch_size = make()
    kwargs = dict(optimizer=optimizer, n_epochs=4, batch_size=batch_size, l2=0.1,
                  latent=latent, progress=False, warm_start=not loop)
    batched = fit(model, loss, samples, **kwargs)
    monkeypatch.setattr(train, "batches_loss", lambda loss: False)
    looped = fit(model, loss, samples, **kwargs)
    assert np.array_equal(batched.params, looped.params)
    assert batched.history.loss == looped.history.loss


def test_a_mini_batch_is_one_inference_per_term(monkeypatch):
    """The batched objective runs one batched inference per term and mini-batch, and no
    single-sample inference."""
    import factorgraph_ebm.losses as losses

    calls = {"batched": [], "single": 0}
    batched_entry, single_entry = graph_backend.batch_infer_checked, losses.infer_checked

    def batched(graph, cg, thetas, *args, **kwargs):
        calls["batched"].append(len(thetas))
        return batched_entry(graph, cg, thetas, *args, **kwargs)

    def single(*args, **kwargs):
        calls["single"] += 1
        return single_entry(*args, **kwargs)

    monkeypatch.setattr(graph_backend, "batch_infer_checked", batched)
    monkeypatch.setattr(losses, "infer_checked", single)
    graph, _ = _chain(6, 2)
    model = TableModel(graph)
    fit(model, NLLLoss(), _samples(10, 6, 2, seed=0), optimizer=Adam(), batch_size=4,
        n_epochs=1, accuracy=False, progress=False)
    assert calls == {"batched": [4, 4, 2], "single": 0}


class _OwnTerms(NLLLoss):
    """A loss with terms of its own (the batch cannot know what they ask for)."""

    def terms(self, backend):
        return backend.correct(self.beta), backend.lowest(self.beta)


@pytest.mark.parametrize(("loop", "loss", "warm_start", "options", "expected"), [
    (False, NLLLoss(), True, {}, True),                       # forest: two-pass BP
    (False, NLLLoss(), True, {"schedule": "parallel"}, False),  # warm-started flooding
    (True, NLLLoss(), True, {"method": "bp"}, False),          # warm-started loopy BP
    (True, NLLLoss(), True, {}, False),  # "auto": BP when the junction tree does not fit
    (True, NLLLoss(), False, {"method": "bp"}, True),          # no warm start
    (True, NLLLoss(), True, {"method": "exact"}, True),        # junction tree
    (True, HingeLoss(), True, {"method": "trws"}, True),       # TRW-S
    (False, _OwnTerms(), True, {}, False),                      # terms of its own
])
def test_where_training_falls_back_to_the_loop(loop, loss, warm_start, options, expected):
    graph, _ = _chain(4, 2, loop)
    run = _Run(TableModel(graph), loss, _samples(3, 4, 2, seed=0), (), warm_start,
               options)
    assert run.batched is expected


def test_a_forbidden_desired_answer_raises_as_in_the_loop():
    """A sample whose desired answer has energy +inf: the batch raises the loop's
    TargetError, naming that sample's answer."""
    graph = fg.FactorGraph()
    graph.add_variables(["a", "b"], 2)
    graph.add_factor(["a", "b"], [[0.0, 1.0], [np.inf, 0.5]])
    model = TableModel(graph)
    samples = [(None, {"a": 0, "b": 1}), (None, {"a": 1, "b": 0}), (None, {"a": 1, "b": 1})]
    run = _Run(model, HingeLoss(), samples, (), True, {})
    assert run.batched
    params = graph.compile().energies
    with pytest.raises(TargetError, match=re.escape("{'a': 1, 'b': 0} has energy +inf")):
        run.batch(params, [0, 1, 2])
    run.batched = False
    with pytest.raises(TargetError, match=re.escape("{'a': 1, 'b': 0} has energy +inf")):
        run.batch(params, [0, 1, 2])
