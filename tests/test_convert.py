"""Converters from and to pgmpy and pyAgrum, checked against those libraries' own exact
inference on their example networks (pgmpy's bundled bnlearn networks, pyAgrum's fastBN
and fastMRF): marginals, ln Z or ln P(evidence), and the energy of the MAP assignment.

Tolerances: both sides compute the same exact quantities in float64 (pgmpy by variable
elimination, pyAgrum by lazy propagation or Shafer-Shenoy, ours by junction tree), so they
agree to rounding: 1e-12 (absolute for marginals, ln Z and energies of a few tens).
Bayesian networks are normalized first (CPT columns summing to 1 within 1e-16): pgmpy
prunes barren nodes, exact only for normalized CPTs, and sachs' columns sum to 1 only
within 1e-7 (marginals then differed by 2e-8).
"""

import gzip
import importlib.util
import itertools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from roundtrip import assert_written_up_to_offsets

import factorgraph_ebm as fe
from factorgraph_ebm import FactorGraph, FactorGraphError
from factorgraph_ebm.io import from_pgmpy, from_pyagrum, read_uai, to_pgmpy

HAVE_PGMPY = importlib.util.find_spec("pgmpy") is not None
HAVE_PYAGRUM = importlib.util.find_spec("pyagrum") is not None
needs_pgmpy = pytest.mark.skipif(
    not HAVE_PGMPY, reason="pgmpy is not installed (pip install factorgraph-ebm[convert])"
)
needs_pyagrum = pytest.mark.skipif(
    not HAVE_PYAGRUM, reason="pyagrum is not installed (pip install factorgraph-ebm[convert])"
)
TOL = 1e-12
#: pgmpy's bundled bnlearn networks used here: small ones (pgmpy's MAP query builds the
#: joint table: 1.25 GiB on child, 86 GiB on alarm) and medium ones (marginals, P(e)).
PGMPY_SMALL = ["asia", "cancer", "sachs"]
PGMPY_MEDIUM = ["child", "insurance", "alarm"]


def pgmpy_example(name):
    """pgmpy's bundled network ``name`` with every CPT normalized (see the module doc)."""
    from pgmpy.utils import get_example_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for load_model (1.3)
        model = get_example_model(name)
    for cpd in model.get_cpds():
        cpd.normalize()
    return model


def pgmpy_states(model, graph, assignment) -> dict:
    """pgmpy's ``{variable: state name}`` as our ``{variable: state index}``."""
    return {v: model.states[v].index(s) for v, s in assignment.items()}


def brute_force(graph: FactorGraph):
    states = np.array(list(itertools.product(*[range(k) for k in graph.n_states.tolist()])))
    return states, graph.energy(states)


def log_sum_exp(energies) -> float:
    finite = energies[np.isfinite(energies)]
    return float(-finite.min() + np.log(np.exp(-(finite - finite.min())).sum()))


# --------------------------------------------------------------------------- pgmpy
@needs_pgmpy
@pytest.mark.parametrize("name", PGMPY_SMALL + PGMPY_MEDIUM)
def test_from_pgmpy_matches_variable_elimination(name):
    from pgmpy.inference import VariableElimination

    model = pgmpy_example(name)
    graph = from_pgmpy(model)
    assert graph.variables == list(model.nodes())
    assert graph.n_states.tolist() == [len(model.states[v]) for v in graph.variables]
    assert graph.n_factors == len(model.get_cpds())
    ve = VariableElimination(model)
    result = fe.sum_product(graph, method="exact")
    assert result.log_partition == pytest.approx(0.0, abs=TOL)  # a normalized network
    for i, v in enumerate(graph.variables):
        q = ve.query([v], show_progress=False)
        want = [q.values[q.state_names[v].index(s)] for s in model.states[v]]
        np.testing.assert_allclose(result.marginals[i], want, rtol=0, atol=TOL, err_msg=v)
    # evidence on two variables: ln P(e) and the conditional marginals
    last, before = graph.variables[-1], graph.variables[-2]
    evidence = {last: 1, before: 0}
    named = {v: model.states[v][s] for v, s in evidence.items()}
    joint = ve.query(list(named), joint=True, show_progress=False)
    p_e = joint.get_value(**named)
    conditioned = fe.sum_product(graph, method="exact", evidence=evidence)
    assert conditioned.log_partition == pytest.approx(math.log(p_e), abs=TOL)
    first = graph.variables[0]
    q = ve.query([first], evidence=named, show_progress=False)
    want = [q.values[q.state_names[first].index(s)] for s in model.states[first]]
    np.testing.assert_allclose(conditioned.marginals[0], want, rtol=0, atol=TOL)


@needs_pgmpy
@pytest.mark.parametrize("name", PGMPY_SMALL)
def test_from_pgmpy_map_matches_pgmpy(name):
    """pgmpy's MAP over every variable (its map_query) has our lowest energy (ties allowed:
    the energies are compared), with and without evidence."""
    from pgmpy.inference import VariableElimination

    model = pgmpy_example(name)
    graph = from_pgmpy(model)
    ve = VariableElimination(model)
    theirs = ve.map_query(graph.variables, show_progress=False)
    ours = fe.min_sum(graph, method="exact")
    assert ours.energy == pytest.approx(graph.energy(pgmpy_states(model, graph, theirs)),
                                        abs=TOL)
    evidence = {graph.variables[-1]: 1}
    named = {v: model.states[v][s] for v, s in evidence.items()}
    theirs = ve.map_query(graph.variables[:-1], evidence=named, show_progress=False)
    ours = fe.min_sum(graph, method="exact", evidence=evidence)
    theirs = pgmpy_states(model, graph, {**theirs, **named})
    assert ours.energy == pytest.approx(graph.energy(theirs), abs=TOL)


def random_graph(seed: int) -> FactorGraph:
    """A loopy model with what a conversion must keep: energies far outside exp's range,
    +inf entries, a 3-variable factor, two factors on one scope, a constant factor and a
    variable in no factor."""
    rng = np.random.default_rng(seed)
    graph = FactorGraph()
    graph.add_variables(["a", "b", "c", "d", "lonely"], [2, 3, 4, 2, 3])
    graph.add_factor(["a", "b"], 900.0 + rng.uniform(0, 3, (2, 3)))
    graph.add_factor(["b", "c"], -1200.0 + rng.uniform(0, 3, (3, 4)))
    graph.add_factor(["c", "a"], rng.uniform(0, 3, (4, 2)))
    graph.add_factor(["b", "a"], rng.uniform(0, 3, (3, 2)))
    table = rng.uniform(0, 3, (4, 2, 2))
    table[0, 1, 1] = table[2, 0, 0] = np.inf
    graph.add_factor(["c", "d", "a"], table)
    graph.add_factor([], 7.5)
    return graph


@needs_pgmpy
@pytest.mark.parametrize("seed", [0, 1])
def test_to_pgmpy_matches_pgmpy_inference_up_to_the_returned_constant(seed):
    from pgmpy.inference import VariableElimination

    graph = random_graph(seed)
    model, offsets = to_pgmpy(graph)
    model.check_model()
    assert set(model.nodes()) == set(graph.variables)
    # ln Z = ln Z_pgmpy - sum(offsets) (pgmpy multiplies every factor: exact and small here)
    _, energies = brute_force(graph)
    log_z = log_sum_exp(energies)
    log_z_pgmpy = math.log(model.get_partition_function())
    assert log_z_pgmpy - offsets.sum() == pytest.approx(log_z, rel=TOL)
    ours = fe.sum_product(graph, method="exact")
    assert ours.log_partition == pytest.approx(log_z, rel=TOL)
    ve = VariableElimination(model)
    for i, v in enumerate(graph.variables):
        q = ve.query([v], show_progress=False)
        np.testing.assert_allclose(ours.marginals[i], q.values / q.values.sum(), rtol=0,
                                   atol=TOL, err_msg=v)
    theirs = ve.map_query(graph.variables, show_progress=False)
    assert fe.min_sum(graph, method="exact").energy == pytest.approx(
        graph.energy(theirs), abs=TOL * 1000)  # energies near 1000: ulps of 1e-13
    # and back: the same factors, up to the same shifts (plus pgmpy's factor on "lonely")
    again = from_pgmpy(model)
    assert again.variables == graph.variables
    assert again.n_factors == graph.n_factors + 1
    assert_written_up_to_offsets(again, graph, offsets)


@needs_pgmpy
def test_from_pgmpy_matches_axes_and_states_by_name():
    """A factor stored with its variables and a variable's states in another order than
    the model's: the converted table is indexed by name, not by position. The states are
    the model's ``states`` order (a DiscreteMarkovNetwork takes them from its last factor),
    or the first factor's (a pgmpy FactorGraph has no ``states``)."""
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork
    from pgmpy.models import FactorGraph as PgmpyFactorGraph

    values = np.arange(1.0, 7.0).reshape(2, 3)
    first = DiscreteFactor(["a", "b"], [2, 3], values,
                           state_names={"a": ["x", "y"], "b": ["p", "q", "r"]})
    second = DiscreteFactor(["b", "a"], [3, 2], values.T[::-1, ::-1],
                            state_names={"b": ["r", "q", "p"], "a": ["y", "x"]})
    for model in (DiscreteMarkovNetwork([("a", "b")]), PgmpyFactorGraph()):
        if isinstance(model, PgmpyFactorGraph):
            model.add_nodes_from(["a", "b", first, second])
            model.add_edges_from([("a", first), ("b", first), ("a", second), ("b", second)])
        model.add_factors(first, second)
        graph = from_pgmpy(model)
        assert graph.variables == ["a", "b"]
        assert graph.factor_scope(1) == ("b", "a")
        # values[i, j] is the potential of a = ("x", "y")[i], b = ("p", "q", "r")[j]
        want = values if not hasattr(model, "states") else values[::-1, ::-1]
        if hasattr(model, "states"):
            assert model.states == {"a": ["y", "x"], "b": ["r", "q", "p"]}
        np.testing.assert_allclose(graph.factor_energies(0), -np.log(want), rtol=1e-15)
        np.testing.assert_allclose(graph.factor_energies(1), -np.log(want.T), rtol=1e-15)


@needs_pgmpy
def test_from_pgmpy_errors():
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork

    with pytest.raises(FactorGraphError, match="from_pgmpy needs a pgmpy .*got object"):
        from_pgmpy(object())
    model = DiscreteMarkovNetwork([("a", "b")])
    model.add_factors(DiscreteFactor(["a", "b"], [2, 2], [1.0, -2.0, 3.0, 4.0]))
    with pytest.raises(FactorGraphError, match=r"pgmpy factor 0 \(scope \('a', 'b'\)\): "
                                               r"expected a probability .* at \{'a': 0, "
                                               r"'b': 1\}, found -2\.0"):
        from_pgmpy(model)
    compact = FactorGraph()
    compact.add_variables(["a", "b"], 2)
    compact.add_potts_factors([("a", "b")], 1.0, dense=False)
    with pytest.raises(FactorGraphError, match="to_pgmpy.*dense=True"):
        to_pgmpy(compact)


# --------------------------------------------------------------------------- pyAgrum
FAST_BNS = [  # pyAgrum's fastBN syntax; CPTs with up to 3 parents of unequal domains
    "a{x|y}->c{p|q|r|s};b{u|v|w}->c;d[5]->c;a->b;c->e[3];e->f[2];d->f",
    "r[3]->s[2]->t[4]->u[3];r->t;s->u;r->u;u->v[2];t->v;w[5]->v",
]


def pyagrum_bn(spec: str, seed: int):
    import pyagrum as gum

    gum.initRandom(seed)
    return gum.fastBN(spec)


@needs_pyagrum
@pytest.mark.parametrize("spec", FAST_BNS)
def test_from_pyagrum_bayes_net_matches_lazy_propagation(spec):
    import pyagrum as gum

    bn = pyagrum_bn(spec, seed=7)
    graph = from_pyagrum(bn)
    assert graph.variables == [bn.variable(n).name() for n in sorted(bn.nodes())]
    # each table by name: every entry equals pyAgrum's, looked up by an Instantiation
    for f in range(graph.n_factors):
        scope = graph.factor_scope(f)
        cpt = bn.cpt(scope[0])
        assert tuple(cpt.names) == scope
        for states in itertools.product(*[range(k) for k in graph.factor_energies(f).shape]):
            at = gum.Instantiation(cpt)
            for v, s in zip(scope, states):
                at.chgVal(v, s)
            assert graph.factor_energies(f)[states] == pytest.approx(-math.log(cpt.get(at)),
                                                                     rel=1e-15, abs=1e-15)
    result = fe.sum_product(graph, method="exact")
    assert result.log_partition == pytest.approx(0.0, abs=TOL)
    lazy = gum.LazyPropagation(bn)
    lazy.makeInference()
    for i, v in enumerate(graph.variables):
        np.testing.assert_allclose(result.marginals[i], lazy.posterior(v).toarray(), rtol=0,
                                   atol=TOL, err_msg=v)
    mpe = lazy.mpe()
    theirs = {v: mpe.val(v) for v in graph.variables}
    assert fe.min_sum(graph, method="exact").energy == pytest.approx(graph.energy(theirs),
                                                                      abs=TOL)
    evidence = {graph.variables[-1]: 1, graph.variables[1]: 0}
    lazy = gum.LazyPropagation(bn)
    lazy.setEvidence(evidence)
    lazy.makeInference()
    conditioned = fe.sum_product(graph, method="exact", evidence=evidence)
    assert conditioned.log_partition == pytest.approx(math.log(lazy.evidenceProbability()),
                                                      abs=TOL)
    np.testing.assert_allclose(conditioned.marginals[0],
                               lazy.posterior(graph.variables[0]).toarray(), rtol=0, atol=TOL)
    mpe = lazy.mpe()
    theirs = {v: mpe.val(v) for v in graph.variables}
    best = fe.min_sum(graph, method="exact", evidence=evidence)
    assert best.energy == pytest.approx(graph.energy(theirs), abs=TOL)


@needs_pyagrum
def test_from_pyagrum_markov_random_field_matches_shafer_shenoy():
    """pyAgrum's MRF inference gives marginals and P(e) (not Z): ln Z and the MAP are
    checked by enumeration (360 configurations)."""
    import pyagrum as gum

    gum.initRandom(11)
    mrf = gum.fastMRF("a{x|y}--c{p|q|r|s}--b{u|v|w};a--b;d[5]--a;d--e[3]")
    graph = from_pyagrum(mrf)
    assert graph.n_factors == len(mrf.factors())
    states, energies = brute_force(graph)
    ours = fe.sum_product(graph, method="exact")
    assert ours.log_partition == pytest.approx(log_sum_exp(energies), abs=TOL)
    assert fe.min_sum(graph, method="exact").energy == pytest.approx(energies.min(), abs=TOL)
    inference = gum.ShaferShenoyMRFInference(mrf)
    inference.makeInference()
    for i, v in enumerate(graph.variables):
        np.testing.assert_allclose(ours.marginals[i], inference.posterior(v).toarray(),
                                   rtol=0, atol=TOL, err_msg=v)
    evidence = {"a": 1, "e": 2}
    inference.setEvidence(evidence)
    inference.makeInference()
    conditioned = fe.sum_product(graph, method="exact", evidence=evidence)
    assert conditioned.log_partition - ours.log_partition == pytest.approx(
        math.log(inference.evidenceProbability()), abs=TOL)


@needs_pyagrum
def test_from_pyagrum_errors():
    with pytest.raises(FactorGraphError, match="from_pyagrum needs a pyAgrum .*got object"):
        from_pyagrum(object())


@needs_pyagrum
@needs_pgmpy
@pytest.mark.parametrize("name", ["asia", "alarm"])
def test_both_libraries_read_the_same_bif_network_into_the_same_model(name, tmp_path):
    """pgmpy's bundled BIF file parsed by each library: after conversion the same energies
    for every variable and state (matched by name), table by table."""
    import pgmpy
    import pyagrum as gum

    bundled = os.path.join(os.path.dirname(pgmpy.__file__), "utils", "example_models",
                           f"{name}.bif.gz")
    path = tmp_path / f"{name}.bif"
    path.write_bytes(gzip.decompress(Path(bundled).read_bytes()))
    bn = gum.loadBN(str(path))  # kept alive: its variables are views into it
    by_pyagrum = from_pyagrum(bn)
    model = pgmpy_example(name)
    by_pgmpy = from_pgmpy(model)
    assert sorted(by_pyagrum.variables) == sorted(by_pgmpy.variables)
    labels = {v: list(bn.variable(v).labels()) for v in by_pyagrum.variables}
    for f in range(by_pyagrum.n_factors):
        scope = by_pyagrum.factor_scope(f)
        g = next(g for g in range(by_pgmpy.n_factors) if by_pgmpy.factor_scope(g)[0] == scope[0])
        assert set(by_pgmpy.factor_scope(g)) == set(scope)
        theirs = np.transpose(by_pgmpy.factor_energies(g),
                              [by_pgmpy.factor_scope(g).index(v) for v in scope])
        for axis, v in enumerate(scope):  # pyAgrum's label order -> pgmpy's state order
            theirs = np.take(theirs, [model.states[v].index(s) for s in labels[v]], axis=axis)
        # pgmpy's CPTs were normalized (see pgmpy_example); the files' columns sum to 1
        # within 1e-7 at worst
        np.testing.assert_allclose(by_pyagrum.factor_energies(f), theirs, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- .uai writers
@needs_pyagrum
@needs_pgmpy
def test_other_writers_table_orders_are_as_documented(tmp_path):
    """What factorgraph_ebm.io.uai says of pyAgrum 3.3's and pgmpy 1.1's .uai writers (a
    record of their behaviour: if a new version changes it, update the docs). A 2-parent
    CPT and 3-variable MRF factor: read as written they are another model; permuted as the
    docs say, the same."""
    import pgmpy
    import pyagrum as gum
    from pgmpy.readwrite import UAIWriter

    if not (gum.__version__.startswith("3.3") and pgmpy.__version__.startswith("1.1")):
        pytest.skip(f"documented for pyAgrum 3.3 and pgmpy 1.1, found {gum.__version__} and "
                    f"{pgmpy.__version__}")
    gum.initRandom(5)
    bn = gum.fastBN("a{x|y}->c{p|q|r|s};b{u|v|w}->c;a->b")
    gum.saveBN(bn, str(tmp_path / "bn.uai"))
    read = read_uai(tmp_path / "bn.uai")  # variables by node id: a=0, c=1, b=2
    c = next(f for f in range(read.n_factors) if len(read.factor_scope(f)) == 3)
    assert read.factor_scope(c) == (0, 2, 1)  # scope: parents a, b, then the child c
    converted = from_pyagrum(bn)
    table = next(converted.factor_energies(f) for f in range(converted.n_factors)
                 if converted.factor_scope(f) == ("c", "a", "b"))  # pyAgrum's CPT of c
    written = read.factor_energies(c)  # axes as read: (a, b, c)
    # values are C order of (b, a, c): the parents reversed
    as_documented = written.reshape(3, 2, 4).transpose(2, 1, 0)
    np.testing.assert_allclose(as_documented, table, rtol=0, atol=1e-5)  # 6 digits
    assert np.abs(written.transpose(2, 0, 1) - table).max() > 0.01

    mrf = gum.fastMRF("a{x|y}--c{p|q|r|s}--b{u|v|w};a--b;d[5]--a")
    gum.saveMRF(mrf, str(tmp_path / "mrf.uai"))
    read = read_uai(tmp_path / "mrf.uai")  # variables by node id
    names = [mrf.variable(n).name() for n in sorted(mrf.nodes())]
    converted = from_pyagrum(mrf)
    n_differ = 0
    for f in range(read.n_factors):
        scope = [names[v] for v in read.factor_scope(f)]
        g = next(g for g in range(converted.n_factors)
                 if set(converted.factor_scope(g)) == set(scope))
        internal = list(converted.factor_scope(g))  # pyAgrum's order, first fastest
        table = converted.factor_energies(g)
        # the values are C order of reversed(internal), whatever the scope line says
        shape = [mrf.variable(v).domainSize() for v in reversed(internal)]
        np.testing.assert_allclose(read.factor_energies(f).reshape(shape), table.T, rtol=0,
                                   atol=1e-5)
        as_read = np.transpose(table, [internal.index(v) for v in scope])  # axes: scope
        n_differ += np.abs(read.factor_energies(f) - as_read).max() > 0.01
    assert n_differ >= 1  # read by the format's rule, some factor is another table

    model = pgmpy_example("asia")  # 'either' has parents: lung, tub
    UAIWriter(model).write(str(tmp_path / "asia.uai"))
    read = read_uai(tmp_path / "asia.uai")  # variables sorted by name
    names = sorted(model.nodes())
    either = next(f for f in range(read.n_factors)
                  if names[read.factor_scope(f)[-1]] == "either")
    scope = [names[v] for v in read.factor_scope(either)]
    cpd = model.get_cpds("either")
    assert scope == list(reversed(cpd.variables[1:])) + ["either"]  # parents reversed, child
    # values: C order of (child, parents...) as in TabularCPD
    values = np.exp(-read.factor_energies(either)).reshape(cpd.values.shape)
    np.testing.assert_allclose(values, cpd.values, rtol=1e-12)
