"""Kernels compiled once per test session, before any test starts a subprocess.

A test that runs a script or ``python -m factorgraph_ebm`` in a subprocess must not fail
because Numba compiles every kernel there first: with an empty cache that takes 50-110 s
on 2 cores, and several times longer on one loaded core. So the ``warm_kernels`` fixture
(``conftest.py``) compiles, in the test process, the kernels those subprocesses call, with
the argument types they use; Numba writes them to its on-disk cache, which a subprocess
shares (it inherits the environment and so the cache location) and loads in a second or
two. :data:`SUBPROCESS_TIMEOUT` still leaves room for a subprocess that compiles
everything itself.
"""

from __future__ import annotations

import math

import numpy as np

#: Seconds a test's subprocess may run: well above a cold compile of every kernel on one
#: loaded core (107-110 s measured on 2 cores under load, 270 s for this module's
#: warm-up at load 4.5), so that only a hang trips it.
SUBPROCESS_TIMEOUT = 900


def compile_kernels() -> None:
    """Call every kernel that the tests' subprocesses use (the CLI, ``benchmarks/
    bp_speed.py`` and the examples' ``--quick`` runs), with the argument types they use.
    Nothing is checked here: the tests check the results."""
    import factorgraph_ebm as fg
    from factorgraph_ebm import trellis
    from factorgraph_ebm.labeler import SequenceLabeler
    from factorgraph_ebm.losses import EnergyLoss, HingeLoss, LogLoss, NLLLoss, SquareSquareLoss
    from factorgraph_ebm.train import LBFGS, Adam

    rng = np.random.default_rng(0)
    ring = fg.FactorGraph()
    ring.add_variables(range(4), 3)
    ring.add_factors(np.arange(4)[:, None], rng.random((4, 3)), by_index=True)
    ring.add_factors([[0, 1], [1, 2], [2, 3]], rng.random((3, 3, 3)), by_index=True)
    ring.add_potts_factors([[3, 0]], 0.5, by_index=True, dense=False)
    chain = fg.FactorGraph()
    chain.add_variables(range(3), 2)
    chain.add_factors([[0, 1], [1, 2]], rng.random((2, 2, 2)), by_index=True)

    # Belief propagation: every schedule, min-sum and sum-product, with and without
    # evidence and factor beliefs, on the graph's own (read-only) energies and on a
    # caller's writable ones (``energies=``, as the losses and models pass them).
    for graph, schedules in ((ring, ("parallel", "sequential")), (chain, ("tree",))):
        for energies in (None, graph.compile().energies.copy()):
            for beta in (math.inf, 1.0):
                for schedule in schedules:
                    options = dict(beta=beta, schedule=schedule, max_iter=3, warn=False,
                                   energies=energies)
                    for evidence in (None, {0: 1}):
                        fg.belief_propagation(graph, evidence=evidence, method="bp", **options)
                    fg.belief_propagation(graph, factor_beliefs=False, method="bp", **options)
        graph.energy(np.zeros(graph.n_variables, dtype=np.int64))
    # Exact inference (the junction tree), as method="auto" runs it on small loopy models.
    for energies in (None, ring.compile().energies.copy()):
        for beta in (math.inf, 1.0):
            for evidence in (None, {0: 1}):
                fg.belief_propagation(ring, beta=beta, evidence=evidence, energies=energies,
                                      method="exact")
    for loss in (HingeLoss(), NLLLoss(), EnergyLoss(), LogLoss(), SquareSquareLoss()):
        for energies in (None, chain.compile().energies.copy()):
            loss.value_and_grad(chain, {0: 0, 1: 1, 2: 0}, energies=energies)

    # Sequence labelling (the trellis and labeler kernels): every loss and optimizer the
    # examples train with; numeric features, and many sparse attributes in batches of one
    # sequence (the attribute-wise gradient path); the serial and the parallel variant of
    # each batch kernel (trellis.PARALLEL_WORK = 0 sends every batch to the threads).
    numeric = [rng.normal(size=(n, 3)) for n in (3, 1, 4)]
    numeric_y = [[int(v > 0) for v in x[:, 0]] for x in numeric]
    words = np.arange(40).reshape(20, 2)
    attributes = [[{"w": str(w), "bias": 1.0} for w in sentence] for sentence in words]
    attribute_y = [[int(w) % 3 for w in sentence] for sentence in words]
    setups = (("nll", LBFGS()), ("nll", Adam()), ("perceptron", None), ("hinge", Adam()),
              ("hinge_hamming", Adam()), ("log", Adam()))
    saved = trellis.PARALLEL_WORK
    try:
        for work in (saved, 0):
            trellis.PARALLEL_WORK = work
            for X, y, batch_size in ((numeric, numeric_y, 8), (attributes, attribute_y, 1)):
                for loss, optimizer in setups:
                    model = SequenceLabeler(loss, optimizer, n_epochs=2, batch_size=batch_size,
                                            progress=False).fit(X, y)
                    model.predict(X)
                    model.predict_marginals(X)
    finally:
        trellis.PARALLEL_WORK = saved
