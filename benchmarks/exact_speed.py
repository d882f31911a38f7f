"""Exact inference speed on the UAI development set (issue 12): factorgraph_ebm's junction
tree beside pgmpy's ``VariableElimination`` and pyAgrum's ``ShaferShenoyMRFInference``.

For every instance of ``REFERENCES.json`` (with its ``.evid``) and every engine, two tasks
are timed and checked against the reference answers:

- **PR+MAR**: log Z of the model given the evidence and the marginal of every variable;
- **MAP**: the minimum energy (the log of the largest product of factor entries).

Every (engine, instance) pair runs in its own worker process (this script with
``--worker``), which imports the engine, warms it up on a 3-variable model (Numba
compilation for ours), loads and converts the model, then reports each timed call as one
JSON line. Only the inference calls are timed: loading the ``.uai`` file and converting it
to the other engine's objects are reported apart. A call that exceeds ``--timeout`` seconds
gets the worker killed; the tasks after it run in a new worker. Peak RSS is the resident
high-water mark of the worker during the call (``VmHWM``, reset before each call). A call
faster than ``--repeat-under`` seconds (default 0.1) runs ``--repeats`` more times (default
4), each on fresh objects as the first (ours: a freshly loaded graph; pyAgrum: a new
inference object), and the fastest run counts (``seconds_first_run`` and ``runs`` are in the
JSON): on a shared machine a millisecond call is otherwise decided by one preemption.
Every call also records its CPU seconds (``cpu_s``: the process's user + system time, all
threads) and the 1-minute load average (``load``): under load the wall clock waits for a core,
the CPU time much less, so the table gives the ratio of both.

Engines (what exactly is timed):

- ``ours``: ``fe.sum_product(g, beta=1, evidence=ev, method="exact")`` on a freshly loaded
  graph (first call: compiling the graph, planning the junction tree, the kernels), a second
  call on the same graph (the plan is cached on it), the same call with
  ``factor_beliefs=False`` on a fresh graph (variable marginals only, what the other engines
  compute), and ``fe.min_sum(g, evidence=ev, method="exact")`` on a fresh graph. The time
  spent in the planning (``plan_elimination``), the tree layout and each kernel is recorded
  (``breakdown``). Instances whose junction tree does not fit ``memory_limit`` (default
  4 GiB) are reported with the library's reason.
- ``pgmpy``: a ``DiscreteMarkovNetwork`` of ``DiscreteFactor`` tables ``exp(-energy)``, each
  divided by its largest entry (the scale is added back to log Z and the energy; without it
  Z overflows float64 on the grids). PR+MAR: ``VariableElimination(model)``, then one
  ``query([v], evidence=ev)`` per unobserved variable (pgmpy's default: an opt_einsum
  contraction along a greedy path); on a Markov network the result is unnormalized, so its
  sum is Z. MAP: pgmpy 1.x's ``map_query`` is the argmax of the joint table over the query
  variables (the whole model for a MAP assignment), so the timed call is
  ``max_marginal([v], evidence=ev)`` (max-product elimination in pgmpy's order for Markov
  networks, the order of the variable set), whose value is the MAP value. pgmpy drops the
  scalar factors its elimination creates (factors whose whole scope is observed, connected
  components without the query variable), so that value is wrong on such models: the
  check says so.
- ``pyagrum``: a ``MarkovRandomField`` with one factor per distinct scope (factors on the same
  scope multiplied, scaled like pgmpy's); ``ShaferShenoyMRFInference`` with the evidence,
  ``makeInference()``, ``posterior(v)`` of every variable and ``evidenceProbability()``.
  pyAgrum's Markov-network inference normalizes: it gives P(evidence) = Z(e)/Z, not Z, so
  there is no log Z to check; and it has no MAP for Markov networks (``mpe()`` is
  LazyPropagation's, on Bayesian networks): MAP is n/a. pyAgrum runs with its default
  number of threads unless ``--pyagrum-threads`` says otherwise, and its inference memory
  bound (``setMaxMemory``, megabytes) is ``--memory-limit-gb`` like ours' unless
  ``--pyagrum-max-memory-mb`` says otherwise.

Checks: log10 Z within 1e-6 of the reference (or the reference's printed precision when it
is an unverified competition value), every marginal within 1e-5 of the ``.MAR`` file, the
minimum energy within 1e-6 (relative, at least 1e-6 absolute) of ``min_energy``.

Usage::

    python benchmarks/exact_speed.py [--data DIR] [--instances a,b] [--engines ours,pgmpy,pyagrum]
                                     [--timeout S] [--timeout-pgmpy S] [--setup-timeout S]
                                     [--memory-limit-gb G] [--rlimit-gb G] [--pyagrum-threads N]
                                     [--pyagrum-max-memory-mb M] [--repeat-under S] [--repeats N]

Output: a Markdown table on stdout, the instances that an engine did not solve with the
reason, then as the last line one JSON object ``{"rows": [...], ...}`` (strict JSON: null for
missing or non-finite values). Progress goes to stderr.

Data: ``../shared/data/uai`` beside the repository (see its ``SOURCE.md``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "uai"
ENGINES = ("ours", "pgmpy", "pyagrum")
#: Timed calls of each engine, in order. ``pr_mar`` and ``map`` are the two tasks; the others
#: are extra measurements of ours.
CALLS = {
    "ours": ("pr_mar", "pr_mar_repeat", "pr_mar_lean", "map"),
    "pgmpy": ("pr_mar", "map"),
    "pyagrum": ("pr_mar",),
}
LOG10Z_TOL = 1e-6
MAR_TOL = 1e-5
MAP_TOL = 1e-6
PROGRESS_EVERY = 5.0  # seconds between progress lines of a long pgmpy task
MARK = "@@exact_speed "  # prefix of the worker's report lines on stdout
PYAGRUM_NO_MAP = ("pyAgrum has no MAP for Markov networks (mpe() is LazyPropagation's, for "
                  "Bayesian networks)")


# =========================================================================== worker
def emit(**fields) -> None:
    """One report line to the parent."""
    print(MARK + json.dumps(_strict(fields), allow_nan=False), flush=True)


def _strict(value):
    """``value`` with non-finite floats replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalar
        return _strict(value.item())
    return value


def reset_peak() -> None:
    """Reset the RSS high-water mark (Linux >= 4.0); silently keeps it otherwise."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """``VmHWM`` in MiB, or ``ru_maxrss`` when /proc is not there."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+)", Path("/proc/self/status").read_text(), re.M)
        if match:
            return int(match.group(1)) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_instance(data: Path, name: str):
    """(graph, evidence by variable name, seconds) for ``name``."""
    from factorgraph_ebm.io import read_evidence, read_model

    started = time.perf_counter()
    graph = read_model(data / f"{name}.uai")
    evid = data / f"{name}.uai.evid"
    evidence = {}
    if evid.exists():
        evidence = {graph.variables[i]: s for i, s in read_evidence(evid, graph).items()}
    return graph, evidence, time.perf_counter() - started


def tiny_model():
    """A triangle of three binary variables with evidence on one: the warm-up model."""
    import numpy as np

    import factorgraph_ebm as fe

    graph = fe.FactorGraph()
    graph.add_variables(range(3), 2)
    graph.add_variables([3], 3)
    rng = np.random.default_rng(0)
    for scope in ((0, 1), (1, 2), (0, 2), (2, 3), (0,), (0, 1)):
        graph.add_factor(scope, rng.uniform(0, 1, [int(graph.n_states[v]) for v in scope]))
    return graph, {1: 0}


class References:
    """The reference answers of one instance and the checks against them."""

    def __init__(self, data: Path, entry: dict, graph):
        from factorgraph_ebm.io import read_mar

        refs = entry["references"]
        self.pr = refs.get("PR")
        self.log10z = self.pr["log10Z"] if self.pr else None
        self.log10z_tol = LOG10Z_TOL
        if self.pr and not self.pr.get("verified", True):
            # a competition value printed to 6 significant digits
            self.log10z_tol = max(LOG10Z_TOL, 5e-6 * abs(self.log10z))
        self.marginals = None
        if refs.get("MAR") and refs["MAR"].get("file"):
            self.marginals = read_mar(data / refs["MAR"]["file"], graph)
        self.min_energy = refs["MAP"]["min_energy"] if refs.get("MAP") else None

    def check_pr(self, log10z):
        """(error, ok) of a log10 Z; (None, None) without a reference or a value."""
        if self.log10z is None or log10z is None:
            return None, None
        if math.isinf(log10z) or math.isnan(log10z):
            return None, False
        error = log10z - self.log10z
        return error, abs(error) <= self.log10z_tol

    def check_mar(self, marginals):
        """(largest absolute error, ok) over every variable."""
        if self.marginals is None or marginals is None:
            return None, None
        import numpy as np

        worst = 0.0
        for found, ref in zip(marginals, self.marginals):
            found = np.asarray(found, dtype=float).ravel()
            if found.shape != ref.shape or not np.all(np.isfinite(found)):
                return None, False
            worst = max(worst, float(np.abs(found - ref).max()))
        return worst, worst <= MAR_TOL

    def check_map(self, energy):
        """(error, ok) of a minimum energy."""
        if self.min_energy is None or energy is None:
            return None, None
        if not math.isfinite(energy):
            return None, energy == self.min_energy
        error = energy - self.min_energy
        return error, abs(error) <= MAP_TOL * max(1.0, abs(self.min_energy))


def timed(call):
    """(seconds, peak RSS MiB, result, CPU seconds) of one call. CPU seconds are the
    process's (every thread's) user + system time: on a loaded machine they move far less
    than the wall clock (which waits for a core), so the ratios are read from them too."""
    reset_peak()
    cpu = time.process_time()
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    return seconds, peak_rss_mb(), result, time.process_time() - cpu


def best_of(args, measure):
    """(fastest result, seconds of the first, runs) of ``measure()``, which returns a tuple
    starting with seconds: a call under ``--repeat-under`` seconds runs ``--repeats`` more
    times (each with fresh objects, as the first) and the fastest counts, so that a
    millisecond call is not decided by one preemption on a shared machine."""
    first = best = measure()
    runs = 1
    if first[0] < args.repeat_under:
        for _ in range(args.repeats):
            again = measure()
            runs += 1
            if again[0] < best[0]:
                best = again
    return best, first[0], runs


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 400 else text[:397] + "..."


# --------------------------------------------------------------------------- ours
class Breakdown:
    """Seconds spent in the planning, the tree layout and each kernel of exact inference,
    by wrapping those functions (best effort: names that are not there are skipped)."""

    TARGETS = (
        ("factorgraph_ebm.exact", "plan_elimination", "plan"),
        ("factorgraph_ebm.exact", "build_junction_tree", "tree"),
        ("factorgraph_ebm.exact.kernels", "collect", "collect"),
        ("factorgraph_ebm.exact.kernels", "decode", "decode"),
        ("factorgraph_ebm.exact.kernels", "distribute", "distribute"),
        ("factorgraph_ebm.exact.kernels", "variable_beliefs", "variable_beliefs"),
        ("factorgraph_ebm.exact.kernels", "factor_beliefs", "factor_beliefs"),
    )
    KERNELS = ("collect", "decode", "distribute", "variable_beliefs", "factor_beliefs")

    def __init__(self):
        import importlib

        self.seconds: dict[str, float] = {}
        for module_name, attribute, label in self.TARGETS:
            try:
                module = importlib.import_module(module_name)
                function = getattr(module, attribute)
            except (ImportError, AttributeError):
                continue
            setattr(module, attribute, self._wrap(function, label))

    def _wrap(self, function, label):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + (
                    time.perf_counter() - started
                )

        return wrapper

    def measure(self, call):
        """(seconds, peak MiB, result, CPU seconds, breakdown dict) of one call."""
        self.seconds = {}
        seconds, peak, result, cpu = timed(call)
        parts = dict(self.seconds)
        parts["kernels"] = sum(parts.get(k, 0.0) for k in self.KERNELS)
        parts["other"] = seconds - parts["kernels"] - parts.get("plan", 0.0) - parts.get(
            "tree", 0.0)
        return seconds, peak, result, cpu, parts


def run_ours(args, entry, calls):
    import factorgraph_ebm as fe

    started = time.perf_counter()
    graph, evidence = tiny_model()
    fe.sum_product(graph, evidence=evidence, method="exact")
    fe.sum_product(graph, evidence=evidence, method="exact", factor_beliefs=False)
    fe.min_sum(graph, evidence=evidence, method="exact")
    emit(event="warm", warmup_s=time.perf_counter() - started)
    breakdown = Breakdown()
    limit = args.memory_limit_gb * 2**30

    graph, evidence, load_s = load_instance(args.data, entry["name"])
    refs = References(args.data, entry, graph)
    emit(event="ready", load_s=load_s, convert_s=0.0)
    loaded = [graph]  # the first call gets the graph loaded above

    def fresh():
        return loaded.pop() if loaded else load_instance(args.data, entry["name"])[0]

    shared = None  # the graph of the first sum-product call, for the repeated call

    def measure(call):
        g = shared if call == "pr_mar_repeat" and shared is not None else fresh()
        if call.startswith("pr_mar"):
            def run():
                return fe.sum_product(g, beta=1.0, evidence=evidence, method="exact",
                                      memory_limit=limit, factor_beliefs=call != "pr_mar_lean")
        else:
            def run():
                return fe.min_sum(g, evidence=evidence, method="exact", memory_limit=limit)
        return breakdown.measure(run) + (g,)

    for call in calls:
        try:
            (seconds, peak, result, cpu, parts, g), first, runs = best_of(
                args, lambda call=call: measure(call))
        except fe.FactorGraphError as exc:
            emit(event="call", call=call, status="does not fit", error=str(exc))
            continue
        if call == "pr_mar":
            shared = g
        row = dict(event="call", call=call, status="ok", seconds=seconds, peak_rss_mb=peak,
                   cpu_s=cpu, load=os.getloadavg()[0],
                   seconds_first_run=first, runs=runs, breakdown=parts,
                   induced_width=result.induced_width, method=result.method)
        if call.startswith("pr_mar"):
            log10z = result.log_partition / math.log(10.0)
            row["log10Z"] = log10z
            row["log10Z_error"], row["pr_ok"] = refs.check_pr(log10z)
            row["mar_max_error"], row["mar_ok"] = refs.check_mar(result.marginals)
        else:
            row["energy"] = result.energy
            row["energy_error"], row["map_ok"] = refs.check_map(result.energy)
        emit(**row)


# --------------------------------------------------------------------------- pgmpy
def to_pgmpy(graph):
    """(DiscreteMarkovNetwork, ln of the scale taken out of the factors, cards)."""
    import itertools

    import numpy as np
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.models import DiscreteMarkovNetwork

    n = graph.n_variables
    cards = [int(k) for k in graph.n_states]
    model = DiscreteMarkovNetwork()
    model.add_nodes_from(range(n))
    factors, covered, log_scale = [], set(), 0.0
    for a in range(graph.n_factors):
        scope = [graph.index_of(v) for v in graph.factor_scope(a)]
        potential = np.exp(-np.asarray(graph.factor_energies(a), dtype=np.float64))
        top = float(potential.max())
        log_scale += math.log(top) if top > 0 else -math.inf
        if not scope:
            continue
        potential = potential / top if top > 0 else potential
        model.add_edges_from(itertools.combinations(scope, 2))
        factors.append(DiscreteFactor(scope, [cards[v] for v in scope], potential.ravel()))
        covered.update(scope)
    for v in range(n):  # a variable in no factor still needs one for the einsum
        if v not in covered:
            factors.append(DiscreteFactor([v], [cards[v]], np.ones(cards[v])))
    model.add_factors(*factors)
    return model, log_scale, cards


def run_pgmpy(args, entry, calls):
    import warnings

    warnings.simplefilter("ignore")
    import numpy as np
    from pgmpy import config
    from pgmpy.inference import VariableElimination

    config.set_show_progress(False)

    def marginals_and_z(model, evidence, cards, progress=None):
        ve = VariableElimination(model)
        out, z = [], None
        last = time.perf_counter()
        for v in range(len(cards)):
            if v in evidence:
                p = np.zeros(cards[v])
                p[evidence[v]] = 1.0
                out.append(p)
                continue
            values = np.asarray(ve.query([v], evidence=evidence, show_progress=False).values,
                                dtype=np.float64)
            total = float(values.sum())
            z = total if z is None else z
            out.append(values / total if total > 0 else values)
            if progress is not None and time.perf_counter() - last > PROGRESS_EVERY:
                progress(v + 1)
                last = time.perf_counter()
        return out, z

    def max_value(model, evidence, cards):
        free = [v for v in range(len(cards)) if v not in evidence]
        return float(VariableElimination(model).max_marginal(
            variables=free[:1], evidence=evidence or None, show_progress=False))

    started = time.perf_counter()
    tiny, tiny_evidence = tiny_model()
    model, _, cards = to_pgmpy(tiny)
    marginals_and_z(model, tiny_evidence, cards)
    max_value(model, tiny_evidence, cards)
    emit(event="warm", warmup_s=time.perf_counter() - started)

    graph, evidence, load_s = load_instance(args.data, entry["name"])
    refs = References(args.data, entry, graph)
    started = time.perf_counter()
    evidence = {graph.index_of(v): int(s) for v, s in evidence.items()}
    model, log_scale, cards = to_pgmpy(graph)
    emit(event="ready", load_s=load_s, convert_s=time.perf_counter() - started)
    n_free = len(cards) - len(evidence)

    for call in calls:
        try:
            if call == "pr_mar":
                def progress(done):
                    emit(event="progress", call="pr_mar", done=done, of=len(cards))

                (seconds, peak, (marginals, z), cpu), first, runs = best_of(args, lambda: timed(
                    lambda: marginals_and_z(model, evidence, cards, progress)))
                log10z = None if z is None else (
                    (math.log(z) + log_scale) / math.log(10.0) if z > 0 else -math.inf)
                row = dict(event="call", call=call, status="ok", seconds=seconds,
                           seconds_first_run=first, runs=runs, peak_rss_mb=peak,
                           cpu_s=cpu, load=os.getloadavg()[0], log10Z=log10z,
                           n_queries=n_free)
                row["log10Z_error"], row["pr_ok"] = refs.check_pr(log10z)
                row["mar_max_error"], row["mar_ok"] = refs.check_mar(marginals)
            else:
                (seconds, peak, value, cpu), first, runs = best_of(
                    args, lambda: timed(lambda: max_value(model, evidence, cards)))
                energy = -(math.log(value) + log_scale) if value > 0 else math.inf
                row = dict(event="call", call=call, status="ok", seconds=seconds,
                           seconds_first_run=first, runs=runs, peak_rss_mb=peak, cpu_s=cpu,
                           load=os.getloadavg()[0], energy=energy,
                           what="max_marginal([v]): the MAP value, no assignment")
                row["energy_error"], row["map_ok"] = refs.check_map(energy)
            emit(**row)
        except Exception as exc:  # MemoryError, or whatever pgmpy / opt_einsum raise
            emit(event="call", call=call, status="error", error=error_text(exc))


# --------------------------------------------------------------------------- pyAgrum
def to_pyagrum(graph):
    """(MarkovRandomField, ln of the scale taken out of the factors, names)."""
    import numpy as np
    import pyagrum as gum

    n = graph.n_variables
    names = [f"x{i}" for i in range(n)]
    merged, log_scale = {}, 0.0
    for a in range(graph.n_factors):
        scope = [graph.index_of(v) for v in graph.factor_scope(a)]
        potential = np.exp(-np.asarray(graph.factor_energies(a), dtype=np.float64))
        if not scope:
            log_scale += math.log(float(potential)) if float(potential) > 0 else -math.inf
            continue
        key = tuple(sorted(scope))
        potential = potential.transpose([scope.index(v) for v in key])
        merged[key] = merged[key] * potential if key in merged else potential
    mrf = gum.MarkovRandomField()
    for i in range(n):
        mrf.add(gum.LabelizedVariable(names[i], names[i], int(graph.n_states[i])))
    for key, potential in merged.items():
        top = float(potential.max())
        log_scale += math.log(top) if top > 0 else -math.inf
        if top > 0:
            potential = potential / top
        tensor = mrf.addFactor([names[v] for v in key])
        # The NumPy view of a pyAgrum tensor has its variables in reverse order of
        # ``tensor.names`` (checked against the references on bn_asia, grid4x4 and BN_0).
        axes = [names[v] for v in key]
        target = list(reversed(list(tensor.names)))
        tensor[:] = np.ascontiguousarray(potential.transpose([axes.index(t) for t in target]))
    return mrf, log_scale, names


def run_pyagrum(args, entry, calls):
    import numpy as np
    import pyagrum as gum

    if args.pyagrum_threads:
        gum.setNumberOfThreads(args.pyagrum_threads)

    def infer(mrf, evidence, names):
        ie = gum.ShaferShenoyMRFInference(mrf)
        if args.pyagrum_max_memory_mb:
            # pyAgrum 3.3.1 takes megabytes here, whatever its docstring says (gigabytes): 4
            # or 20 reject DBN_11's tree (cliques of 2^21 entries, ~1 GB), 600 accepts it.
            # Over the bound, makeInference raises std::bad_alloc at once.
            ie.setMaxMemory(max(1, round(args.pyagrum_max_memory_mb)))
        ie.setEvidence(evidence)
        ie.makeInference()
        marginals = [np.asarray(ie.posterior(name).toarray(), dtype=np.float64)
                     for name in names]
        return marginals, float(ie.evidenceProbability())

    started = time.perf_counter()
    tiny, tiny_evidence = tiny_model()
    mrf, _, names = to_pyagrum(tiny)
    infer(mrf, {names[v]: s for v, s in tiny_evidence.items()}, names)
    emit(event="warm", warmup_s=time.perf_counter() - started,
         threads=int(gum.getNumberOfThreads()), version=gum.__version__)

    graph, evidence, load_s = load_instance(args.data, entry["name"])
    refs = References(args.data, entry, graph)
    started = time.perf_counter()
    mrf, _, names = to_pyagrum(graph)
    evidence = {names[graph.index_of(v)]: int(s) for v, s in evidence.items()}
    emit(event="ready", load_s=load_s, convert_s=time.perf_counter() - started)

    for call in calls:
        try:
            (seconds, peak, (marginals, p_evidence), cpu), first, runs = best_of(
                args, lambda: timed(lambda: infer(mrf, evidence, names)))
        except Exception as exc:  # pyAgrum raises its own types (and std::bad_alloc)
            emit(event="call", call=call, status="error", error=error_text(exc))
            continue
        row = dict(event="call", call=call, status="ok", seconds=seconds, peak_rss_mb=peak,
                   cpu_s=cpu, load=os.getloadavg()[0], seconds_first_run=first, runs=runs,
                   log10_evidence_probability=(math.log10(p_evidence) if p_evidence > 0
                                               else -math.inf),
                   pr_note="P(evidence) = Z(e)/Z only: pyAgrum's MRF inference normalizes")
        row["mar_max_error"], row["mar_ok"] = refs.check_mar(marginals)
        emit(**row)


WORKERS = {"ours": run_ours, "pgmpy": run_pgmpy, "pyagrum": run_pyagrum}


def worker(args) -> int:
    """Run ``args.calls`` of ``args.worker`` on ``args.instance``; report on stdout."""
    if args.worker != "ours" and args.rlimit_gb:
        limit = int(args.rlimit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    entry = next(e for e in json.loads((args.data / "REFERENCES.json").read_text())
                 if e["name"] == args.instance)
    emit(event="start", pid=os.getpid())
    try:
        WORKERS[args.worker](args, entry, args.calls.split(","))
    except MemoryError as exc:
        emit(event="fatal", error=error_text(exc))
        return 1
    emit(event="done")
    return 0


# =========================================================================== parent
def run_engine(args, name: str, engine: str) -> dict:
    """Every call of ``engine`` on instance ``name``, each in a worker process with a
    timeout (a timed-out call ends its worker; the calls after it get a new one)."""
    timeout = args.timeout_pgmpy if engine == "pgmpy" else args.timeout
    pending = list(CALLS[engine])
    out = {"calls": {}, "notes": []}
    while pending:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", engine,
                   "--instance", name, "--calls", ",".join(pending), "--data", str(args.data),
                   "--memory-limit-gb", str(args.memory_limit_gb),
                   "--rlimit-gb", str(args.rlimit_gb),
                   "--pyagrum-threads", str(args.pyagrum_threads),
                   "--pyagrum-max-memory-mb", str(args.pyagrum_max_memory_mb),
                   "--repeat-under", str(args.repeat_under), "--repeats", str(args.repeats)]
        env = dict(os.environ, PYTHONHASHSEED="0")
        with tempfile.TemporaryFile(mode="w+") as errors:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                       text=True, env=env, start_new_session=True)
            events, timed_out = _follow(process, pending, args.setup_timeout, timeout)
            errors.seek(0)
            stderr_tail = errors.read()[-2000:]
        for event in events:
            if event["event"] in ("warm", "ready"):
                out.update({k: v for k, v in event.items() if k != "event"})
            elif event["event"] == "call":
                out["calls"][event["call"]] = event
                pending.remove(event["call"])
            elif event["event"] == "progress":
                out.setdefault("progress", {})[event["call"]] = event
        if not pending:
            break
        current = pending.pop(0)
        if timed_out == "setup":
            reason = f"set-up (import, warm-up, loading) over {args.setup_timeout:g} s"
            for call in [current, *pending]:
                out["calls"][call] = {"call": call, "status": "error", "error": reason}
            break
        if timed_out == "call":
            status, error = "timeout", f"over {timeout:g} s"
            progress = out.get("progress", {}).get(current)
            if progress:
                error += f" ({progress['done']} of {progress['of']} variables done)"
        else:
            status = "error"
            error = f"worker exited with status {process.returncode}"
            lines = [ln for ln in stderr_tail.splitlines() if ln.strip()]
            fatal = [e for e in events if e["event"] == "fatal"]
            if fatal:
                error += ": " + fatal[0]["error"]
            elif lines:
                error += ": " + lines[-1][:300]
            if process.returncode in (-signal.SIGKILL, 137):
                error += " (killed: out of memory?)"
        out["calls"][current] = {"call": current, "status": status, "error": error}
    return out


def _follow(process, calls, setup_timeout: float, timeout: float):
    """Read the worker's report lines until it exits or a deadline passes (then kill it).
    Returns (events, None | "setup" | "call")."""
    events, buffer = [], ""
    in_setup = True
    deadline = time.monotonic() + setup_timeout
    stream = process.stdout
    fd = stream.fileno()
    os.set_blocking(fd, False)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill(process)
            return events, "setup" if in_setup else "call"
        ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
        if not ready:
            if process.poll() is not None:
                break
            continue
        chunk = os.read(fd, 1 << 16).decode(errors="replace")
        if not chunk:  # EOF
            process.wait()
            break
        buffer += chunk
        *lines, buffer = buffer.split("\n")
        for line in lines:
            if not line.startswith(MARK):
                continue
            event = json.loads(line[len(MARK):])
            events.append(event)
            if event["event"] == "ready" or event["event"] == "call":
                in_setup = False
                deadline = time.monotonic() + timeout  # the next call's clock starts
    process.wait()
    return events, None


def _kill(process) -> None:
    """Kill the worker we started (its own process group) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


# --------------------------------------------------------------------------- report
def call_of(result: dict | None, call: str) -> dict:
    return (result or {}).get("calls", {}).get(call, {})


def seconds_of(result, call, key="seconds"):
    c = call_of(result, call)
    return c.get(key) if c.get("status") == "ok" else None


def summarize(entry: dict, results: dict) -> dict:
    """One JSON row: flat figures for the table, and every engine's details."""
    ours, pgmpy, pyagrum = (results.get(e) for e in ENGINES)
    width = None
    for call in CALLS["ours"]:
        width = call_of(ours, call).get("induced_width", width)
        if width is not None:
            break
    row = {
        "instance": entry["name"],
        "n_vars": entry["structure"]["n_vars"],
        "n_factors": entry["structure"]["n_factors"],
        "n_evidence": entry["structure"]["n_evidence"],
        "reference_width": entry["structure"].get("induced_width_minfill_after_evidence"),
        "induced_width": width,
        "ours_pr_mar_s": seconds_of(ours, "pr_mar"),
        "ours_pr_mar_repeat_s": seconds_of(ours, "pr_mar_repeat"),
        "ours_pr_mar_lean_s": seconds_of(ours, "pr_mar_lean"),
        "ours_map_s": seconds_of(ours, "map"),
        "pgmpy_pr_mar_s": seconds_of(pgmpy, "pr_mar"),
        "pgmpy_map_s": seconds_of(pgmpy, "map"),
        "pyagrum_pr_mar_s": seconds_of(pyagrum, "pr_mar"),
        "pyagrum_map_s": None,
        "ours_pr_mar_lean_cpu_s": seconds_of(ours, "pr_mar_lean", "cpu_s"),
        "pyagrum_pr_mar_cpu_s": seconds_of(pyagrum, "pr_mar", "cpu_s"),
    }
    ratio = lambda a, b: a / b if a is not None and b else None  # noqa: E731
    row["ratio_pyagrum_over_ours"] = ratio(row["pyagrum_pr_mar_s"], row["ours_pr_mar_s"])
    row["ratio_pyagrum_over_ours_lean"] = ratio(row["pyagrum_pr_mar_s"],
                                                row["ours_pr_mar_lean_s"])
    row["ratio_pyagrum_over_ours_lean_cpu"] = ratio(row["pyagrum_pr_mar_cpu_s"],
                                                    row["ours_pr_mar_lean_cpu_s"])
    row["ratio_pgmpy_over_ours"] = ratio(row["pgmpy_pr_mar_s"], row["ours_pr_mar_s"])
    row["ratio_pgmpy_over_ours_map"] = ratio(row["pgmpy_map_s"], row["ours_map_s"])
    correct, unsolved = {}, {}
    for engine in ENGINES:
        if engine not in results:
            continue
        result = results[engine]
        pr, mp = call_of(result, "pr_mar"), call_of(result, "map")
        correct[engine] = {"pr": pr.get("pr_ok"), "mar": pr.get("mar_ok"),
                           "map": mp.get("map_ok")}
        if engine == "ours":
            lean, repeat = call_of(result, "pr_mar_lean"), call_of(result, "pr_mar_repeat")
            for extra in (lean, repeat):
                for key, flag in (("pr", "pr_ok"), ("mar", "mar_ok")):
                    if extra.get(flag) is False:
                        correct[engine][key] = False
        reasons = {}
        for call in CALLS[engine]:
            c = call_of(result, call)
            if c.get("status") not in (None, "ok"):
                reasons[call] = f"{c['status']}: {c.get('error', '')}".strip()
        if reasons:
            unsolved[engine] = reasons
    row["correct"] = correct
    row["not_solved"] = unsolved
    if "ours" in results:
        bd = call_of(ours, "pr_mar").get("breakdown")
        if bd and row["ours_pr_mar_s"]:
            row["ours_pr_mar_kernel_share"] = bd.get("kernels", 0.0) / row["ours_pr_mar_s"]
            if "factor_beliefs" in bd:  # a separate kernel before the fused downward pass
                row["ours_pr_mar_factor_beliefs_share"] = (bd["factor_beliefs"]
                                                           / row["ours_pr_mar_s"])
            row["ours_pr_mar_plan_s"] = bd.get("plan", 0.0) + bd.get("tree", 0.0)
    row["engines"] = results
    return row


def fmt_s(value) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def status_cell(row, engine, call, seconds) -> str:
    """Seconds, or why there are none."""
    if seconds is not None:
        return fmt_s(seconds)
    c = call_of(row["engines"].get(engine), call)
    status = c.get("status")
    if status == "timeout":
        return "timeout"
    if status == "does not fit":
        return "too big"
    if status == "error":
        return "error"
    return "-" if engine in row["engines"] else " "


def flags(correct: dict | None) -> str:
    """log Z, marginals, MAP energy: ✓ right, ✗ wrong, – not checked."""
    if correct is None:
        return ""
    mark = {True: "✓", False: "✗", None: "–"}
    return "".join(mark[correct.get(k)] for k in ("pr", "mar", "map"))


def markdown(rows: list[dict], engines: list[str]) -> str:
    head = ["instance", "width"]
    if "ours" in engines:
        head += ["ours PR+MAR s (1st / 2nd / no fac. beliefs)", "ours MAP s",
                 "ours in kernels (fac. beliefs)"]
    if "pgmpy" in engines:
        head += ["pgmpy PR+MAR s", "pgmpy MAP s"]
    if "pyagrum" in engines:
        head += ["pyAgrum PR+MAR s"]
    if "ours" in engines and "pyagrum" in engines:
        head += ["pyAgrum / ours (1st; no fac. b.)",
                 "CPU s ours no fac. b. / pyAgrum (ratio)"]
    if "ours" in engines and "pgmpy" in engines:
        head += ["pgmpy / ours (PR+MAR; MAP)"]
    head += ["correct " + " / ".join({"ours": "ours", "pgmpy": "pgmpy", "pyagrum": "pyAgrum"}[e]
                                     for e in engines)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        width = row["induced_width"]
        cells = [row["instance"],
                 str(width) if width is not None else f"({row['reference_width']})"]
        if "ours" in engines:
            first = status_cell(row, "ours", "pr_mar", row["ours_pr_mar_s"])
            cells.append(f"{first} / {fmt_s(row['ours_pr_mar_repeat_s'])} / "
                         f"{fmt_s(row['ours_pr_mar_lean_s'])}"
                         if row["ours_pr_mar_s"] is not None else first)
            cells.append(status_cell(row, "ours", "map", row["ours_map_s"]))
            share = row.get("ours_pr_mar_kernel_share")
            fb = row.get("ours_pr_mar_factor_beliefs_share")
            cells.append("-" if share is None else f"{100 * share:.0f}%" if fb is None
                         else f"{100 * share:.0f}% ({100 * fb:.0f}%)")
        if "pgmpy" in engines:
            cells.append(status_cell(row, "pgmpy", "pr_mar", row["pgmpy_pr_mar_s"]))
            cells.append(status_cell(row, "pgmpy", "map", row["pgmpy_map_s"]))
        if "pyagrum" in engines:
            cells.append(status_cell(row, "pyagrum", "pr_mar", row["pyagrum_pr_mar_s"]))
        if "ours" in engines and "pyagrum" in engines:
            a, b = row["ratio_pyagrum_over_ours"], row["ratio_pyagrum_over_ours_lean"]
            cells.append("-" if a is None else f"{fmt_ratio(a)}; {fmt_ratio(b)}")
            c = row["ratio_pyagrum_over_ours_lean_cpu"]
            cells.append("-" if c is None else
                         f"{fmt_s(row['ours_pr_mar_lean_cpu_s'])} / "
                         f"{fmt_s(row['pyagrum_pr_mar_cpu_s'])} ({fmt_ratio(c)})")
        if "ours" in engines and "pgmpy" in engines:
            a, b = row["ratio_pgmpy_over_ours"], row["ratio_pgmpy_over_ours_map"]
            cells.append("-" if a is None and b is None else f"{fmt_ratio(a)}; {fmt_ratio(b)}")
        cells.append(" / ".join(flags(row["correct"].get(e)) for e in engines))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def unsolved_text(rows: list[dict]) -> str:
    """One line per instance and engine; calls that failed for the same reason share it."""
    lines = []
    for row in rows:
        for engine, reasons in row["not_solved"].items():
            by_reason: dict[str, list[str]] = {}
            for call, reason in reasons.items():
                by_reason.setdefault(reason, []).append(call)
            text = "; ".join(f"{', '.join(calls)}: {reason}"
                             for reason, calls in by_reason.items())
            lines.append(f"- `{row['instance']}` {engine}: {text}")
    return "\n".join(lines)


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    try:
        text = Path("/proc/meminfo").read_text()
        info["mem_total_gb"] = int(re.search(r"MemTotal:\s+(\d+)", text).group(1)) / 2**20
    except (OSError, AttributeError):
        pass
    versions = {}
    for module in ("numpy", "numba", "pgmpy", "pyagrum"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    info["versions"] = versions
    return info


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the UAI data folder")
    parser.add_argument("--instances", default="", help="comma list (default: all)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma list of "
                        + ", ".join(ENGINES))
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds allowed to each timed call of an engine (default 120)")
    parser.add_argument("--timeout-pgmpy", type=float, default=None,
                        help="the same for pgmpy (default: --timeout)")
    parser.add_argument("--setup-timeout", type=float, default=900.0,
                        help="seconds for a worker's imports, JIT warm-up, loading and "
                        "conversion (default 900)")
    parser.add_argument("--memory-limit-gb", type=float, default=4.0,
                        help="ours' memory_limit and pyAgrum's setMaxMemory, GiB (default 4)")
    parser.add_argument("--rlimit-gb", type=float, default=8.0,
                        help="address-space limit of the pgmpy and pyAgrum workers, GiB "
                        "(default 8; 0 = none)")
    parser.add_argument("--pyagrum-max-memory-mb", type=float, default=None,
                        help="pyAgrum's setMaxMemory, MB (default: --memory-limit-gb; "
                        "0 = no bound but --rlimit-gb)")
    parser.add_argument("--pyagrum-threads", type=int, default=0,
                        help="pyAgrum's number of threads (default 0: pyAgrum's default)")
    parser.add_argument("--repeat-under", type=float, default=0.1,
                        help="a call faster than this (seconds) runs --repeats more times, "
                             "each on fresh objects, and the fastest counts (default 0.1)")
    parser.add_argument("--repeats", type=int, default=4,
                        help="extra runs of a call under --repeat-under (default 4)")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    parser.add_argument("--calls", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timeout_pgmpy is None:
        args.timeout_pgmpy = args.timeout
    if args.pyagrum_max_memory_mb is None:
        args.pyagrum_max_memory_mb = args.memory_limit_gb * 1024
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        return worker(args)
    references = args.data / "REFERENCES.json"
    if not references.exists():
        print(f"no {references}: pass --data", file=sys.stderr)
        return 2
    entries = json.loads(references.read_text())
    if args.instances:
        wanted = [s.strip() for s in args.instances.split(",") if s.strip()]
        unknown = set(wanted) - {e["name"] for e in entries}
        if unknown:
            print(f"unknown instances: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        entries = [e for e in entries if e["name"] in wanted]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if set(engines) - set(ENGINES):
        print(f"unknown engines: {', '.join(sorted(set(engines) - set(ENGINES)))}",
              file=sys.stderr)
        return 2
    engines = [e for e in ENGINES if e in engines]
    available = []
    for engine in engines:
        module = {"ours": "factorgraph_ebm", "pgmpy": "pgmpy", "pyagrum": "pyagrum"}[engine]
        try:
            __import__(module)
            available.append(engine)
        except ImportError as exc:
            print(f"skipping {engine}: not installed ({exc}); pip install -e '.[bench]'",
                  file=sys.stderr)
    engines = available

    started = datetime.datetime.now()
    rows = []
    for entry in entries:
        results = {}
        for engine in engines:
            t0 = time.perf_counter()
            results[engine] = run_engine(args, entry["name"], engine)
            print(f"{entry['name']}: {engine} done in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        rows.append(summarize(entry, results))
    print(markdown(rows, engines))
    print()
    print("Width: ours (min-fill, after evidence); in parentheses the reference's when ours "
          "did not run. Correct: log Z, marginals, MAP energy against the references "
          "(✓ right, ✗ wrong, – not checked or not available).")
    missing = unsolved_text(rows)
    if missing:
        print("\nNot solved:\n" + missing)
    report = {
        "rows": rows,
        "engines": engines,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now() - started).total_seconds(),
        "options": {"timeout": args.timeout, "timeout_pgmpy": args.timeout_pgmpy,
                    "repeat_under": args.repeat_under, "repeats": args.repeats,
                    "memory_limit_gb": args.memory_limit_gb, "rlimit_gb": args.rlimit_gb,
                    "pyagrum_max_memory_mb": args.pyagrum_max_memory_mb,
                    "pyagrum_threads": args.pyagrum_threads or None},
        "tolerances": {"log10Z": LOG10Z_TOL, "marginals": MAR_TOL, "map_energy": MAP_TOL},
        "machine": machine(),
    }
    print(json.dumps(_strict(report), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
