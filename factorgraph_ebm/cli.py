"""The ``fgebm`` command line: describe a model, or answer the UAI MAP, MAR and PR tasks on it,
exactly by junction tree where its tables fit ``--memory-limit``, else by belief propagation.

Usage::

    fgebm info MODEL [--json]
    fgebm map  MODEL [--evid FILE] [-o OUT] [BP options] [--json] [--verbose]
    fgebm mar  MODEL [--evid FILE] [-o OUT] [BP options] [--beta B] [--json] [--verbose]
    fgebm pr   MODEL [--evid FILE] [-o OUT] [BP options] [--beta B] [--json] [--verbose]

``MODEL`` is a ``.uai`` or libDAI ``.fg`` file. Evidence is used only when given with
``--evid`` (as in the UAI competitions, where the solver is passed the evidence file): a
``MODEL.evid`` beside the model is not picked up on its own. Its variable indices refer to
the model's variable order (for ``.fg``, variables sorted by label).

The answer goes to ``-o OUT``, else to stdout, in the UAI format of the task (``MAP``:
states; ``MAR``: marginals; ``PR``: log10 Z). With ``--json`` stdout gets one JSON object
instead, with the keys ``assignment`` (map), ``marginals`` (mar), ``energy`` (map: of the
assignment, -sum of ln potentials), ``log_partition`` (mar, pr: natural log), ``log10_Z``
(mar, pr), ``method`` ("exact" or "bp"), ``exact``, ``feasible`` (true, false: proven
infeasible, null: unknown), ``induced_width`` (exact runs), ``converged``, ``n_iter`` and
``seconds``; infinities print as ``Infinity`` /
``-Infinity``. A one-line summary goes to stderr; ``--verbose`` adds the model size, the
timings and, when the UAI reference answer ``MODEL.MAP`` (map), ``MODEL.PR`` (pr) or
``MODEL.MAR`` (mar) lies beside the model, the comparison with it.

``fgebm compile`` compiles every Numba kernel ahead of time (otherwise each compiles on
first use, tens of seconds in all, and is cached for later runs); a first-use compilation
says so on stderr.

Exit status: 0 on success (also when BP did not converge: the answer is written and stderr
says so), 2 on bad input (a malformed file, bad evidence or options; the message on stderr),
1 on an internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from .exact import AUTO_MAX_WORK, DEFAULT_MAX_BYTES, clamped_states, exact_plan
from .exceptions import FactorGraphError
from .inference import METHODS, SCHEDULES, belief_propagation
from .io import (
    read_evidence,
    read_map,
    read_mar,
    read_model,
    read_pr,
    write_map,
    write_mar,
    write_pr,
)
from .reduction import reduce_factors

_TASKS = {
    "map": "lowest-energy configuration (min-sum); writes the UAI MAP format",
    "mar": "marginal of every variable (sum-product); writes the UAI MAR format",
    "pr": "log10 of the partition function Z (sum-product); writes the UAI PR format",
}
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def memory_size(text: str) -> float:
    """Bytes of a size such as ``4G``, ``512M``, ``1.5g`` or ``1000000`` (binary units)."""
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4G, 512M)") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"a size must be >= 0, got {text!r}")
    return number * _UNITS[unit]


def _add_method_options(sub) -> None:
    sub.add_argument("--method", choices=METHODS, default="auto", help="exact = junction "
                     "tree, bp = belief propagation; auto (default) = exact where the tables "
                     "fit --memory-limit (BP's two-pass schedule on forests), else loopy BP")
    sub.add_argument("--memory-limit", type=memory_size, default=DEFAULT_MAX_BYTES,
                     metavar="SIZE", help="memory the junction tree's tables may take, e.g. "
                     f"512M or 8G (default: {DEFAULT_MAX_BYTES // 2**30}G)")


def main(argv: list[str] | None = None) -> int:
    """Run ``fgebm`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Returns
    -------
    int
        0 success, 1 internal error, 2 bad input or usage.
    """
    parser = build_parser()
    _log_notices_to_stderr()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits after --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.command(args)
    except (FactorGraphError, OSError) as exc:
        print(f"fgebm: error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print("fgebm: internal error (a bug: please report it with the traceback above)",
              file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fgebm`` (each sub-command sets ``command``)."""
    parser = argparse.ArgumentParser(
        prog="fgebm",
        description="Factor-graph models (.uai, libDAI .fg): statistics, and the UAI MAP, "
        "MAR and PR tasks by belief propagation.",
        epilog="Exit status: 0 success (also when BP did not converge; stderr says so), "
        "2 bad input, 1 internal error.",
    )
    commands = parser.add_subparsers(dest="task", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="variables, factors, arity and cardinality "
                               "histograms, tree or loopy, components")
    info.add_argument("model", metavar="MODEL", help="a .uai or .fg model file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--evid", metavar="FILE", help="UAI evidence file (observed variables "
                      "leave the junction tree)")
    _add_method_options(info)
    info.set_defaults(command=run_info)
    compile_ = commands.add_parser(
        "compile", help="compile every Numba kernel ahead of time into the per-user cache "
        "(otherwise each compiles on first use)")
    compile_.set_defaults(command=run_compile)
    for task, help_text in _TASKS.items():
        sub = commands.add_parser(task, help=help_text, description=help_text + ".")
        sub.add_argument("model", metavar="MODEL", help="a .uai or .fg model file")
        sub.add_argument("--evid", metavar="FILE", help="UAI evidence file (only used when "
                         "given; MODEL.evid is not picked up on its own)")
        sub.add_argument("-o", "--output", metavar="OUT",
                         help="write the UAI answer file here (default: stdout)")
        _add_method_options(sub)
        sub.add_argument("--max-iter", type=int, default=200, help="BP sweeps at most "
                         "(default: 200)")
        sub.add_argument("--tol", type=float, default=1e-9, help="convergence threshold on "
                         "the largest message change, in energy units (default: 1e-9)")
        sub.add_argument("--damping", type=float, default=0.0, help="message damping in "
                         "[0, 1) (default: 0)")
        sub.add_argument("--schedule", choices=SCHEDULES, default="auto", help="message "
                         "schedule; auto = exact two-pass on forests, else sequential")
        sub.add_argument("--seed", type=int, help="start BP from random messages drawn with "
                         "this seed (default: all-zero messages)")
        if task != "map":
            sub.add_argument("--beta", type=float, default=1.0, help="inverse temperature: "
                             "potentials are raised to the power beta (default: 1)")
        sub.add_argument("--json", action="store_true", help="print one JSON object with "
                         "every figure on stdout instead of the answer file")
        sub.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr, "
                         f"and the comparison with MODEL.{task.upper()} if it exists")
        sub.set_defaults(command=run_task)
    return parser


# --------------------------------------------------------------------------- info
def run_info(args: argparse.Namespace) -> int:
    """``fgebm info``: print the statistics of a model."""
    graph = read_model(args.model)
    evidence = read_evidence(args.evid, graph) if args.evid else {}
    stats = model_statistics(graph, evidence, args.memory_limit, args.method)
    if args.json:
        print(json.dumps({"model": args.model, **stats}))
        return 0
    print(f"model          {args.model}")
    print(f"variables      {stats['variables']}")
    print(f"factors        {stats['factors']}")
    print(f"arity          {_histogram_text(stats['arity_histogram'])}")
    print(f"cardinality    {_histogram_text(stats['cardinality_histogram'])}")
    print(f"table entries  {stats['table_entries']} ({stats['forbidden_entries']} forbidden, "
          "energy +inf)")
    shape = "tree (forest): BP is exact" if stats["forest"] else "loopy: BP is approximate"
    print(f"structure      {shape}, {stats['components']} connected component(s)")
    width = stats["induced_width"]
    bound = "" if stats["junction_tree_fits"] else "at least "
    print(f"junction tree  induced width {bound}{width} (min-fill, {stats['observed']} observed), "
          f"largest clique table {stats['largest_clique_table']:.4g} entries, "
          f"{bound}{stats['junction_tree_bytes'] / 2**20:.4g} MiB of tables")
    print(f"method         {stats['method']} (--method {args.method}, --memory-limit "
          f"{args.memory_limit / 2**20:.4g} MiB)")
    return 0


def model_statistics(graph, evidence=None, memory_limit=DEFAULT_MAX_BYTES,
                     method="auto") -> dict:
    """Size and structure of a model, and the junction tree its inference would use.

    Parameters
    ----------
    graph : FactorGraph
    evidence : mapping variable index -> state, optional
    memory_limit : float
        Bytes the junction tree may take (see :func:`belief_propagation`).
    method : {"auto", "exact", "bp"}

    Returns
    -------
    dict
        ``variables``, ``factors``, ``arity_histogram`` and ``cardinality_histogram``
        (dicts {value: count}), ``table_entries``, ``forbidden_entries`` (energy ``+inf``),
        ``forest`` (no cycle: BP is exact), ``components`` (connected components, isolated
        variables included), ``observed`` (variables clamped by evidence or with one state),
        ``induced_width`` (of the min-fill order; a lower bound when the search stopped at
        the budget), ``largest_clique_table`` (entries), ``junction_tree_bytes``,
        ``junction_tree_fits`` and ``method`` (what ``--method`` runs: "exact", "bp" on a
        forest or "loopy bp").
    """
    cg = graph.compile()
    arities = np.diff(cg.scope_ptr)
    unary = np.zeros(int(cg.state_offset[-1]))
    for i, state in (evidence or {}).items():
        unary[cg.state_offset[i]:cg.state_offset[i + 1]] = np.inf
        unary[cg.state_offset[i] + state] = 0.0
    plan = exact_plan(graph, cg, unary, memory_limit,
                      AUTO_MAX_WORK if method == "auto" else math.inf)
    if method == "bp" or (method == "auto" and cg.is_forest):
        chosen = "bp" if cg.is_forest else "loopy bp"
    elif plan.fits:
        chosen = "exact"
    else:
        chosen = "none: does not fit" if method == "exact" else "loopy bp"
    return {
        "variables": cg.n_variables,
        "factors": cg.n_factors,
        "arity_histogram": _histogram(arities),
        "cardinality_histogram": _histogram(cg.n_states),
        "table_entries": cg.n_energy_entries,
        "forbidden_entries": int(np.isinf(cg.energies).sum()),
        "forest": cg.is_forest,
        "components": cg.n_components,
        "observed": int((clamped_states(cg, unary) >= 0).sum()),
        "induced_width": plan.elimination.induced_width,
        "largest_clique_table": plan.elimination.largest_table,
        "junction_tree_bytes": plan.memory_bytes,
        "junction_tree_fits": plan.fits,
        "method": chosen,
    }


def _histogram(values: np.ndarray) -> dict[int, int]:
    keys, counts = np.unique(values, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))


def _histogram_text(histogram: dict) -> str:
    return ", ".join(f"{key}: {count}" for key, count in histogram.items()) or "-"


# --------------------------------------------------------------------------- compile
def run_compile(args: argparse.Namespace) -> int:
    """``fgebm compile``: compile (or load from the cache) every kernel specialization that
    the library uses, and say how many, where and how long it took."""
    from ._jit_cache import compile_kernels

    report = compile_kernels(progress=lambda step: print(f"  {step}", file=sys.stderr,
                                                         flush=True))
    where = report["cache_dir"] or "nowhere (no writable cache directory)"
    print(f"fgebm compile: {report['compiled']} kernel specializations compiled and "
          f"{report['loaded']} loaded from the cache ({report['kernels']} kernels) in "
          f"{report['seconds']:.1f} s; cached in {where}")
    return 0


class _StderrHandler(logging.Handler):
    """Writes log records to the ``sys.stderr`` of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _log_notices_to_stderr() -> None:
    """Show the library's log notices (e.g. that kernels compile for first use) on stderr."""
    logger = logging.getLogger("factorgraph_ebm")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())


# --------------------------------------------------------------------------- tasks
def run_task(args: argparse.Namespace) -> int:
    """``fgebm map|mar|pr``: run BP, write the answer, report on stderr."""
    started = time.perf_counter()
    graph = read_model(args.model)
    evidence = {}
    if args.evid:
        names = graph.variables
        evidence = {names[i]: s for i, s in read_evidence(args.evid, graph).items()}
    read_seconds = time.perf_counter() - started
    init = None
    if args.seed is not None:  # messages of the graph BP runs on (scopes absorbed)
        reduced = reduce_factors(graph)
        bp_graph = graph if reduced is None else reduced.graph
        init = np.random.default_rng(args.seed).random(bp_graph.compile().n_message_entries)
    result = belief_propagation(
        graph,
        beta=math.inf if args.task == "map" else args.beta,
        evidence=evidence,
        method=args.method,
        memory_limit=args.memory_limit,
        schedule=args.schedule,
        max_iter=args.max_iter,
        tol=args.tol,
        damping=args.damping,
        init_messages=init,
        warn=False,
        factor_beliefs=False,  # never printed (CSP_11 exact: 67.7 -> 25.9 s)
        # The tree schedule's check-sweep residual is never printed either; skipping it
        # spares a first run compiling the flooding kernels (2-variable model: ~2 s of 8).
        check_sweep=False,
    )
    figures = task_figures(args.task, result)
    if args.output:
        _write_answer(args.output, args.task, figures)
    if args.json:
        print(json.dumps(figures))
    elif not args.output:
        _write_answer(sys.stdout, args.task, figures)
    _report(args, graph, evidence, result, figures, read_seconds)
    return 0


def task_figures(task: str, result) -> dict:
    """The figures of a task, as JSON-ready Python values.

    Parameters
    ----------
    task : {"map", "mar", "pr"}
    result : InferenceResult

    Returns
    -------
    dict
        map: ``assignment`` (list of int, every variable in file order, evidence included)
        and ``energy``; mar: ``marginals`` (list of lists); mar and pr: ``log_partition``
        (ln Z) and ``log10_Z``; all: ``method``, ``exact``, ``feasible``,
        ``induced_width``, ``converged``, ``n_iter``, ``seconds``.
    """
    figures: dict = {}
    if task == "map":
        figures["assignment"] = result.assignment.tolist()
        figures["energy"] = float(result.energy)
    else:
        if task == "mar":
            figures["marginals"] = [m.tolist() for m in result.marginals]
        figures["log_partition"] = float(result.log_partition)
        figures["log10_Z"] = float(result.log_partition) / math.log(10)
    figures.update(
        method=result.method, exact=bool(result.exact), feasible=result.feasible,
        induced_width=result.induced_width,
        converged=bool(result.converged), n_iter=int(result.n_iter),
        seconds=float(result.seconds),
    )
    return figures


def _write_answer(target, task: str, figures: dict) -> None:
    if task == "map":
        write_map(target, figures["assignment"])
    elif task == "mar":
        write_mar(target, figures["marginals"])
    else:
        write_pr(target, figures["log10_Z"])


def _report(args, graph, evidence, result, figures, read_seconds: float) -> None:
    """The summary on stderr: the figure, convergence, and with --verbose the details."""
    if args.task == "map":
        headline = f"energy {figures['energy']:.10g}"
    else:
        headline = (f"log10 Z {figures['log10_Z']:.10g} (ln Z {figures['log_partition']:.10g}, "
                    f"beta {args.beta:g})")
    if result.method == "exact":
        how = f"exact (junction tree, induced width {result.induced_width})"
    else:
        how = "BP, exact on a forest" if result.exact else "loopy BP, approximate"
    if result.feasible is False:
        how += "; the model is infeasible (no finite-energy configuration)"
    elif result.feasible is None:
        how += "; no finite-energy assignment found (the model may still be feasible)"
    if result.method == "exact":
        status = "one collect and one distribute pass"
    elif result.converged:
        status = f"converged in {result.n_iter} iteration(s)"
    else:
        status = (f"did NOT converge in {result.n_iter} iterations (last message change "
                  f"{result.residuals[-1]:.3g} > tol {args.tol:g}); the answer is BP's last "
                  "estimate: try --damping 0.5 or a larger --max-iter")
    schedule = "" if result.method == "exact" else f"{result.schedule} schedule, "
    print(f"fgebm {args.task}: {headline}; {schedule}{how}; {status}", file=sys.stderr)
    if args.verbose:
        print(f"  model {args.model}: {graph.n_variables} variables, {graph.n_factors} factors; "
              f"{len(evidence)} observed (evidence {args.evid or 'none'})", file=sys.stderr)
        print(f"  read {read_seconds:.3f} s, inference {result.seconds:.3f} s", file=sys.stderr)
        comparison = compare_with_reference(args.task, args.model, graph, figures)
        if comparison:
            print(f"  {comparison}", file=sys.stderr)


def compare_with_reference(task: str, model: str, graph, figures: dict) -> str | None:
    """How ``figures`` compare with the UAI reference answer ``MODEL.MAP|PR|MAR``, if any.

    Returns
    -------
    str or None
        None when there is no reference file; a note when it cannot be read.
    """
    path = Path(f"{model}.{task.upper()}")
    if not path.exists():
        return None
    try:
        if task == "map":
            reference = graph.energy(read_map(path, graph))
            return (f"reference {path.name}: energy {reference:.10g}, gap "
                    f"{figures['energy'] - reference:.3g}")
        if task == "pr":
            reference = read_pr(path)
            return (f"reference {path.name}: log10 Z {reference:.10g}, error "
                    f"{figures['log10_Z'] - reference:.3g}")
        error = max(float(np.abs(np.subtract(mine, theirs)).max()) for mine, theirs in
                    zip(figures["marginals"], read_mar(path, graph), strict=True))
        return f"reference {path.name}: largest marginal error {error:.3g}"
    except FactorGraphError as exc:
        return f"reference {path.name} not compared: {exc}"
