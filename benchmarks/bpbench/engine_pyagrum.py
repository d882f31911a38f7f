"""pyAgrum: the exact minimum energy, as a reference on small models.

pyAgrum's loopy BP is sum-product on Bayesian networks and its Markov-network inference
(``ShaferShenoyMRFInference``) gives marginals, not a MAP assignment. So the energy model is
encoded as a Bayesian network with the same posterior: each variable gets the prior
``exp(-unary)``, each factor a binary child whose ``P(child = 1 | scope) = exp(-(table -
min table)) / 2``; with every child observed at 1 the posterior is the Gibbs distribution
``exp(-E) / Z``, and ``LazyPropagation.mpe()`` (junction tree, max-product) is an exact
minimum-energy assignment. Models whose junction tree would have a clique over
``MAX_CLIQUE`` entries are skipped, and so are models whose evidence probability would
underflow. pyAgrum 3.3.1's ``mpe()`` fails with "Empty tensor" on some junction trees (a
plain 4 x 4 grid network from ``fastBN`` too, and in 2.3.2): such failures are reported as
rows. One whole exact solve is timed (``n_iter`` = 1).
"""

from __future__ import annotations

import numpy as np

from .common import Options, join_notes, make_row, to_mb
from .measure import best_of, peak_rss_mb, reset_peak, rss_mb, timed
from .workloads import Workload, tiny_like

NAME = "pyagrum"
MAX_CLIQUE = 2e7
MAX_RANDOM_VARS = 60
MAX_LOG10_EVIDENCE = 250


def unavailable() -> str | None:
    """Why pyAgrum cannot run here, or None."""
    try:
        import pyagrum  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc}); pip install 'pyagrum>=2.0'"
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip: a junction tree clique of over MAX_CLIQUE entries, or an evidence
    probability below float64's range (pyAgrum computes it unnormalized)."""
    log10_evidence = workload.n_vars * np.log10(workload.k) + workload.n_factors * np.log10(2)
    if log10_evidence > MAX_LOG10_EVIDENCE:
        return f"exact: P(evidence) ~ 1e-{log10_evidence:.0f} underflows float64 in pyAgrum"
    if workload.grid_shape is not None:
        width = min(workload.grid_shape)
        entries = 2.0 * float(workload.k) ** (width + 1)
        if entries > MAX_CLIQUE:
            return f"exact: junction-tree cliques of ~{entries:.1g} entries (treewidth {width})"
        return None
    if workload.n_vars > MAX_RANDOM_VARS:
        return f"exact: a random hypergraph of {workload.n_vars} variables has a large treewidth"
    return None


def build(workload: Workload):
    """(BayesNet, evidence dict) encoding ``workload`` (see the module docstring)."""
    import pyagrum as gum

    bn = gum.BayesNet("energy")
    for i in range(workload.n_vars):
        bn.add(gum.LabelizedVariable(f"x{i}", f"x{i}", workload.k))
        prior = np.exp(-(workload.unary[i] - workload.unary[i].min()))
        bn.cpt(i)[:] = prior / prior.sum()
    tables = workload.stacked_tables()
    evidence = {}
    for f, scope in enumerate(workload.scopes.tolist()):
        name = f"f{f}"
        node = bn.add(gum.LabelizedVariable(name, name, 2))
        for v in scope:
            bn.addArc(v, node)
        _fill_child(bn.cpt(node), [f"x{v}" for v in scope] + [name], tables[f])
        evidence[name] = 1
    return bn, evidence


def _fill_child(cpt, order: list[str], table: np.ndarray) -> None:
    """Set P(child = 1 | scope) = exp(-(table - min)) in the CPT's own axis order."""
    accept = 0.5 * np.exp(-(table - table.min()))
    values = np.stack([1.0 - accept, accept], axis=-1)
    target = list(reversed(cpt.names))
    cpt[:] = np.ascontiguousarray(values.transpose([order.index(n) for n in target]))


def solve(bn, evidence, n_vars: int) -> np.ndarray:
    """Exact MAP assignment by junction-tree max-product."""
    import pyagrum as gum

    inference = gum.LazyPropagation(bn)
    inference.setEvidence(evidence)
    inference.makeInference()
    states = inference.mpe().todict()
    return np.array([states[f"x{i}"] for i in range(n_vars)], dtype=np.int64)


def run(workload: Workload, options: Options) -> list[dict]:
    """One row: the exact solve."""
    small = tiny_like(workload)
    jit_s = timed(lambda: solve(*build(small), small.n_vars))[0]
    method = reset_peak()
    before = rss_mb()
    build_s, (bn, evidence) = timed(lambda: build(workload))
    seconds, assignment = best_of(
        lambda: solve(bn, evidence, workload.n_vars), options.repeat, options.budget
    )
    peak = peak_rss_mb() - before
    return [
        make_row(
            NAME,
            workload,
            "exact MPE",
            None,
            s_per_iter=seconds,
            fixed_s=0.0,
            n_iter=1,
            converged=True,
            energy=workload.energy(assignment),
            build_s=build_s,
            compile_s=0.0,
            jit_s=jit_s,
            peak_mb=peak,
            bp_peak_mb=peak,
            model_mb=to_mb(8.0 * 2 * workload.table_entries),
            note=join_notes("whole exact solve (junction tree)", method),
        )
    ]
