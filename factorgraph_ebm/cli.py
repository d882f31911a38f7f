"""The ``fgebm`` command line: describe a model, or answer the UAI MAP, MAR and PR tasks on it,
exactly by junction tree where its tables fit ``--memory-limit``, else by TRW-S with a lower
bound (MAP) or belief propagation.

Usage::

    fgebm info MODEL [--json]
    fgebm map  MODEL [--evid FILE] [-o OUT] [BP options] [--json] [--verbose] [--progress]
    fgebm mar  MODEL [--evid FILE] [-o OUT] [BP options] [--beta B] [--json] [--verbose]
    fgebm pr   MODEL [--evid FILE] [-o OUT] [BP options] [--beta B] [--json] [--verbose]
    fgebm map|mar|pr MODEL... [--evid FILE]... [--jobs N | --scheduler ADDRESS] [--json]
    fgebm --version

``MODEL`` is a ``.uai`` or libDAI ``.fg`` file, or ``-`` for standard input (read as
``.uai`` when its first token after comment lines is a word, ``MARKOV`` or ``BAYES``, else
as ``.fg``; errors name it ``<stdin>``). Evidence is used only when given with ``--evid``
(as in the UAI competitions, where the solver is passed the evidence file): a
``MODEL.evid`` beside the model is not picked up on its own. Its variable indices refer to
the model's variable order (for ``.fg``, variables sorted by label).

The answer goes to ``-o OUT`` (``-o -``: stdout), else to stdout, in the UAI format of the
task (``MAP``: states; ``MAR``: marginals; ``PR``: log10 Z). ``--beta`` is a finite
inverse temperature > 0 (``inf`` is min-sum, which has no partition function: ``fgebm
map``). With ``--json`` stdout gets one strict JSON object instead (RFC 8259, no
``Infinity`` or ``NaN``), with the keys ``assignment`` (map), ``marginals`` (mar),
``energy`` (map: of the assignment, -sum of ln potentials), ``lower_bound``, ``gap`` and
``optimal`` (map: a proven lower bound on the minimum energy, ``energy - lower_bound``, and
whether that gap closed; null when the method proves none, loopy BP),
``log_partition`` (mar, pr: natural log), ``log10_Z`` (mar, pr), ``method`` ("exact",
"bp" or "trws"), ``exact``,
``feasible`` (true, false: proven infeasible, null: unknown), ``induced_width`` (exact
runs), ``converged``, ``n_iter``, ``seconds`` and ``non_finite``: a number that is not
finite (the energy +inf, ln Z -inf of an infeasible model) is ``null``, and
``non_finite`` maps its key to ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (an empty
object when every number is finite). A one-line summary goes to stderr; ``--verbose`` adds
the model size, the timings and the comparison with the UAI reference answer ``MODEL.MAP``
(map), ``MODEL.PR`` (pr) or ``MODEL.MAR`` (mar) when it lies beside the model. Those
answers are for the evidence in ``MODEL.evid`` (none when it is absent): they are compared
only when the run's evidence is the same, else stderr says why not and which ``--evid``
to give.

BP shows its progress on stderr (iterations, the last message change) when the run lasts
longer than two seconds and stderr is a terminal, or with ``--progress``
(``--no-progress``: never).

``fgebm compile`` compiles every Numba kernel ahead of time (otherwise each compiles on
first use, tens of seconds in all, and is cached for later runs); a first-use compilation
says so on stderr.

A ``.fg`` file lists only its non-zero entries, so a short file can ask for huge tables:
its dense tables may have ``--max-entries`` entries in all (default 2**26, 512 MiB).

Several models (or ``--jobs N`` / ``--scheduler ADDRESS`` with one): the models are solved
independently, serially in this process, on a local Dask cluster of N worker processes
(``--jobs``), or on the Dask cluster of a running scheduler (``--scheduler``; see
:mod:`factorgraph_ebm.distributed`), with the same options and the same answers as one
model at a time. Each model is read where it runs; ``--evid`` is then given once per
model, in the same order (or not at all). Results are printed as they finish, one line
per model on stdout: with ``--json`` the JSON object above with the key ``model`` (its
path) first, or ``{"model": ..., "error": "..."}`` for a model that failed; without, the
model and its headline figure. A failing model is reported (stdout with ``--json``, and
stderr) and the others go on; the exit status is then 2. ``-o`` and ``--seed`` take one
model; a progress bar (models done) shows on stderr as for BP.

Exit status: 0 on success (also when BP did not converge: the answer is written and stderr
says so), 2 on bad input (a malformed file, bad evidence or options, a model too large for
the size limits or for this machine's memory, running out of memory; the message on
stderr, with the size needed), 1 on an internal error.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__
from ._validation import format_bytes
from .exact import AUTO_MAX_WORK, DEFAULT_MAX_BYTES, clamped_states, exact_plan
from .exceptions import FactorGraphError
from .inference import METHODS, SCHEDULES, belief_propagation
from .io import (
    ModelFileError,
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
#: BP options whose defaults the non-convergence hint may suggest changing.
_BP_DEFAULTS = {"max_iter": 200, "tol": 1e-9, "damping": 0.0}
#: Seconds before BP's progress bar appears: a run longer than that shows it.
PROGRESS_DELAY = 2.0
#: How an error message names a model read from standard input.
STDIN_NAME = "<stdin>"


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


def inverse_temperature(text: str) -> float:
    """``--beta``: a finite number > 0 (min-sum, beta = inf, is ``fgebm map``)."""
    try:
        beta = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isinf(beta) and beta > 0:
        raise argparse.ArgumentTypeError(
            "beta = inf is min-sum, which has no partition function or marginals; "
            "fgebm map finds the lowest-energy configuration")
    if not (math.isfinite(beta) and beta > 0):
        raise argparse.ArgumentTypeError(f"beta must be a finite number > 0, got {text!r}")
    return beta


def _add_model_options(sub, several: bool = False) -> None:
    if several:
        sub.add_argument("model", metavar="MODEL", nargs="+", help="a .uai or .fg model "
                         "file, or - for standard input (one model); or several files")
    else:
        sub.add_argument("model", metavar="MODEL", help="a .uai or .fg model file, or - "
                         "for standard input")
    sub.add_argument("--max-entries", type=int, default=None, metavar="N",
                     help="dense table entries a .fg file may have in all (its unlisted "
                     "entries are 0; default: 2**26)")


def _add_method_options(sub) -> None:
    sub.add_argument("--method", choices=METHODS, default="auto", help="exact = junction "
                     "tree, bp = belief propagation, trws = TRW-S with a lower bound (map "
                     "only); auto (default) = exact where the tables fit --memory-limit "
                     "(BP's two-pass schedule on forests), else TRW-S for map and loopy BP "
                     "for mar and pr")
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
    except MemoryError as exc:  # NumPy's message gives the size of the failed allocation
        graph = getattr(args, "graph", None)  # set by the commands once the model is read
        need = "" if graph is None else (f"; this model needs about "
                                         f"{format_bytes(graph.inference_bytes())} for belief "
                                         "propagation")
        print(f"fgebm: error: out of memory ({str(exc) or 'MemoryError'}){need}",
              file=sys.stderr)
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
        "MAR and PR tasks, exactly by junction tree where its tables fit, else by belief "
        "propagation.",
        epilog="MODEL may be - (standard input). Exit status: 0 success (also when BP "
        "did not converge; stderr says so), 2 bad input, 1 internal error.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s (factorgraph-ebm) {__version__}")
    commands = parser.add_subparsers(dest="task", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="variables, factors, arity and cardinality "
                               "histograms, tree or loopy, components")
    _add_model_options(info)
    info.add_argument("--json", action="store_true", help="print one strict JSON object "
                      "(a number that is not finite is null, named in non_finite)")
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
        _add_model_options(sub, several=True)
        sub.add_argument("--evid", metavar="FILE", action="append", help="UAI evidence file "
                         "(only used when given; MODEL.evid is not picked up on its own); "
                         "with several models, once per model in their order")
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--jobs", type=int, metavar="N", help="solve the models on a "
                           "local Dask cluster of N worker processes (pip install "
                           "'factorgraph-ebm[dask]')")
        where.add_argument("--scheduler", metavar="ADDRESS", help="solve the models on the "
                           "Dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786")
        sub.add_argument("-o", "--output", metavar="OUT",
                         help="write the UAI answer file here; - or no -o: stdout")
        _add_method_options(sub)
        # Defaults None: the non-convergence hint suggests only options not given.
        sub.add_argument("--max-iter", type=int, help="BP sweeps at most (default: "
                         f"{_BP_DEFAULTS['max_iter']})")
        sub.add_argument("--tol", type=float, help="convergence threshold on the largest "
                         f"message change, in energy units (default: {_BP_DEFAULTS['tol']:g})")
        sub.add_argument("--damping", type=float, help="message damping in [0, 1) "
                         f"(default: {_BP_DEFAULTS['damping']:g})")
        sub.add_argument("--schedule", choices=SCHEDULES, default="auto", help="message "
                         "schedule; auto = exact two-pass on forests, else sequential; residual = "
                         "residual BP (largest message change first)")
        sub.add_argument("--seed", type=int, help="start BP from random messages drawn with "
                         "this seed (default: all-zero messages)")
        if task != "map":
            sub.add_argument("--beta", type=inverse_temperature, default=1.0,
                             help="inverse temperature, finite and > 0: potentials are "
                             "raised to the power beta (default: 1; min-sum is fgebm map)")
        sub.add_argument("--json", action="store_true", help="print one strict JSON object "
                         "with every figure on stdout instead of the answer file (a number "
                         "that is not finite is null, named in non_finite)")
        sub.add_argument("-v", "--verbose", action="store_true", help="more detail on stderr, "
                         f"and the comparison with MODEL.{task.upper()} if it exists (made "
                         "only when the run's evidence is that of MODEL.evid)")
        sub.add_argument("--progress", action=argparse.BooleanOptionalAction, help="show "
                         "BP's iterations and last message change on stderr when the run "
                         "lasts over 2 s (default: only when stderr is a terminal)")
        sub.set_defaults(command=run_task)
    return parser


# --------------------------------------------------------------------------- info
def run_info(args: argparse.Namespace) -> int:
    """``fgebm info``: print the statistics of a model."""
    graph = args.graph = read_model_argument(args.model, args.max_entries)
    evidence = read_evidence(args.evid, graph) if args.evid else {}
    stats = model_statistics(graph, evidence, args.memory_limit, args.method)
    name = _model_name(args.model)
    if args.json:
        print(strict_json({"model": name, **stats}))
        return 0
    print(f"model          {name}")
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
    method : {"auto", "exact", "bp", "trws"}

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
        forest, "loopy bp", or "trws (map), loopy bp (mar, pr)").
    """
    cg = graph.compile()
    arities = np.diff(cg.scope_ptr)
    unary = np.zeros(int(cg.state_offset[-1]))
    for i, state in (evidence or {}).items():
        unary[cg.state_offset[i]:cg.state_offset[i + 1]] = np.inf
        unary[cg.state_offset[i] + state] = 0.0
    plan = exact_plan(graph, cg, unary, memory_limit,
                      AUTO_MAX_WORK if method == "auto" else math.inf)
    loopy = "trws (map), loopy bp (mar, pr)"
    if method == "trws":
        chosen = "trws (map only)"
    elif method == "bp" or (method == "auto" and cg.is_forest):
        chosen = "bp" if cg.is_forest else "loopy bp"
    elif plan.fits:
        chosen = "exact"
    else:
        chosen = "none: does not fit" if method == "exact" else loopy
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
    """``fgebm map|mar|pr``: run BP, write the answer, report on stderr (several models:
    :func:`run_many`)."""
    if len(args.model) > 1 or args.jobs is not None or args.scheduler is not None:
        return run_many(args)
    args.model = args.model[0]
    if args.evid is not None and len(args.evid) > 1:
        raise FactorGraphError(f"--evid given {len(args.evid)} times for one model")
    args.evid = args.evid[0] if args.evid else None
    if args.json and args.output == "-":
        raise FactorGraphError("--json and -o - both write to stdout; give -o a file name")
    args.given = {key for key in _BP_DEFAULTS if getattr(args, key) is not None}
    for key, default in _BP_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    started = time.perf_counter()
    graph = args.graph = read_model_argument(args.model, args.max_entries)
    evidence = read_evidence(args.evid, graph) if args.evid else {}
    read_seconds = time.perf_counter() - started
    init = None
    if args.seed is not None:  # messages of the graph BP runs on (scopes absorbed)
        reduced = reduce_factors(graph)
        bp_graph = graph if reduced is None else reduced.graph
        init = np.random.default_rng(args.seed).random(bp_graph.compile().n_message_entries)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = run_inference(
        graph,
        max_iter=args.max_iter,
        init_messages=init,
        progress=progress,
        beta=math.inf if args.task == "map" else args.beta,
        evidence={graph.variables[i]: state for i, state in evidence.items()},
        method=args.method,
        memory_limit=args.memory_limit,
        schedule=args.schedule,
        tol=args.tol,
        damping=args.damping,
        warn=False,
        factor_beliefs=False,  # never printed (CSP_11 exact: 67.7 -> 25.9 s)
        # The tree schedule's check-sweep residual is never printed either; skipping it
        # spares a first run compiling the flooding kernels (2-variable model: ~2 s of 8).
        check_sweep=False,
    )
    figures = task_figures(args.task, result)
    if args.output and args.output != "-":
        _write_answer(args.output, args.task, figures)
    if args.json:
        print(strict_json(figures))
    elif not args.output or args.output == "-":
        _write_answer(sys.stdout, args.task, figures)
    _report(args, graph, evidence, result, figures, read_seconds)
    return 0


def run_many(args: argparse.Namespace) -> int:
    """``fgebm map|mar|pr MODEL...``: every model solved on its own (serially, ``--jobs``
    local Dask workers, or the cluster of ``--scheduler``), one line per model on stdout
    as they finish; 2 when some failed (each reported), else 0."""
    from .distributed import map_inference

    models = args.model
    if "-" in models:
        raise FactorGraphError("standard input (-) holds one model; give files to solve "
                               "several")
    if args.output is not None:
        raise FactorGraphError("-o writes one model's answer; with several models use "
                               "--json (one line per model)")
    if args.seed is not None:
        raise FactorGraphError("--seed draws the messages of one model; give one model")
    if args.evid is not None and len(args.evid) != len(models):
        raise FactorGraphError(f"--evid given {len(args.evid)} times for {len(models)} "
                               "models: give it once per model, in their order, or not at all")
    if args.jobs is not None and args.jobs < 1:
        raise FactorGraphError(f"--jobs must be at least 1, got {args.jobs}")
    options = dict(
        beta=math.inf if args.task == "map" else args.beta,
        method=args.method, memory_limit=args.memory_limit, schedule=args.schedule,
        max_iter=_BP_DEFAULTS["max_iter"] if args.max_iter is None else args.max_iter,
        tol=_BP_DEFAULTS["tol"] if args.tol is None else args.tol,
        damping=_BP_DEFAULTS["damping"] if args.damping is None else args.damping,
        warn=False, factor_beliefs=False, check_sweep=False,  # as for one model
    )
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    failed = 0
    outcomes = map_inference(
        models, args.evid, n_jobs=args.jobs, scheduler=args.scheduler, progress=progress,
        reduce=functools.partial(task_figures, args.task),
        read_options={"max_entries": args.max_entries}, **options)
    for outcome in outcomes:
        if outcome.ok:
            figures = outcome.value
            if args.json:
                print(strict_json({"model": outcome.model, **figures}), flush=True)
            else:
                print(f"{outcome.model}: {_headline(args.task, figures)}", flush=True)
        else:
            failed += 1
            if args.json:
                print(strict_json({"model": outcome.model, "error": outcome.error}),
                      flush=True)
            print(f"fgebm: {outcome.model}: error: {outcome.error}", file=sys.stderr)
    if failed:
        print(f"fgebm {args.task}: {failed} of {len(models)} models failed", file=sys.stderr)
    return 2 if failed else 0


def _headline(task: str, figures: dict) -> str:
    """One model's figure in a line (several models, without --json)."""
    if task == "map":
        text = f"energy {figures['energy']:.10g}"
    else:
        text = f"log10 Z {figures['log10_Z']:.10g}"
    exact = "exact" if figures["exact"] else "approximate"
    return f"{text} ({figures['method']}, {exact}, {figures['seconds']:.3f} s)"


def run_inference(graph, max_iter: int, init_messages=None, progress: bool = False,
                  **options):
    """:func:`belief_propagation` with a progress bar on stderr.

    The bar (tqdm: iterations, the last message change) is drawn by BP's ``callback``,
    which loopy BP calls between its chunks of iterations (about every 0.1 s), and appears
    after :data:`PROGRESS_DELAY` seconds; the junction tree and the two-pass schedule run
    without one.

    Parameters
    ----------
    graph : FactorGraph
    max_iter : int
        BP iterations at most.
    init_messages : array_like, optional
        As in :func:`belief_propagation`.
    progress : bool, default=False
        Show the bar on ``sys.stderr``.
    **options
        The other keywords of :func:`belief_propagation`.

    Returns
    -------
    InferenceResult
    """
    if not progress:
        return belief_propagation(graph, max_iter=max_iter, init_messages=init_messages,
                                  **options)
    bar = None

    def show(n_iter: int, residual: float) -> None:
        nonlocal bar
        if bar is None:  # created on the first report: never for exact runs
            bar = tqdm(total=max_iter, desc="fgebm BP", unit="it", file=sys.stderr,
                       delay=PROGRESS_DELAY, dynamic_ncols=True)
        bar.set_postfix_str(f"residual {residual:.3g}", refresh=False)
        bar.update(n_iter - bar.n)

    result = None
    try:
        result = belief_propagation(graph, max_iter=max_iter, init_messages=init_messages,
                                    callback=show, **options)
    finally:
        if bar is not None:
            if result is not None and result.converged:  # a bar that stops early says why
                bar.set_postfix_str(f"converged, residual {result.residuals[-1]:.3g}",
                                    refresh=False)
            bar.close()
    return result


def read_model_argument(model: str, max_entries: int | None = None):
    """The model named on the command line: :func:`read_model` of a file, or with ``-`` of
    standard input (see the module docstring); ``max_entries``: the budget of a ``.fg``
    file.

    The readers take a path, so standard input is copied to a temporary file first, named
    by the format its first token suggests; errors name the model ``<stdin>``.
    """
    if model != "-":
        return read_model(model, max_entries=max_entries)
    with tempfile.TemporaryDirectory(prefix="fgebm-") as folder:
        path = os.path.join(folder, "stdin")
        with open(path, "wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy)
        named = path + _stdin_format(path)
        os.rename(path, named)
        try:
            return read_model(named, max_entries=max_entries)
        except ModelFileError as exc:
            raise ModelFileError(STDIN_NAME, exc.line, exc.problem) from None
        except FactorGraphError as exc:
            raise FactorGraphError(str(exc).replace(named, STDIN_NAME)) from None


def _stdin_format(path: str) -> str:
    """``.uai`` when the first token after comment lines (``c`` in UAI, ``#`` in libDAI
    files) is a word (``MARKOV``, ``BAYES``), else ``.fg``."""
    with open(path, encoding="utf-8", errors="replace") as text:
        for line in text:
            token = line.split("#", 1)[0].split()
            if token and token[0].lower() != "c":
                return ".uai" if token[0][:1].isalpha() else ".fg"
    return ".uai"


def _model_name(model: str) -> str:
    return STDIN_NAME if model == "-" else model


def strict_json(figures: dict) -> str:
    """``figures`` as one line of strict JSON (RFC 8259: no ``Infinity`` or ``NaN``).

    Every float that is not finite becomes ``null``, and the key ``non_finite`` maps its
    path (``"energy"``, ``"marginals[2][0]"``) to ``"Infinity"``, ``"-Infinity"`` or
    ``"NaN"`` (the spellings that JavaScript's ``Number`` and Python's ``float`` read); it
    is an empty object when every number is finite.
    """
    non_finite: dict[str, str] = {}

    def clean(value, path: str):
        if isinstance(value, float) and not math.isfinite(value):
            non_finite[path] = "NaN" if math.isnan(value) else (
                "Infinity" if value > 0 else "-Infinity")
            return None
        if isinstance(value, dict):
            return {key: clean(item, f"{path}.{key}" if path else str(key))
                    for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    cleaned = clean(figures, "")
    return json.dumps({**cleaned, "non_finite": non_finite}, allow_nan=False)


def task_figures(task: str, result) -> dict:
    """The figures of a task, as JSON-ready Python values.

    Parameters
    ----------
    task : {"map", "mar", "pr"}
    result : InferenceResult

    Returns
    -------
    dict
        map: ``assignment`` (list of int, every variable in file order, evidence included),
        ``energy``, ``lower_bound``, ``gap`` and ``optimal`` (None without a bound); mar:
        ``marginals`` (list of lists); mar and pr: ``log_partition``
        (ln Z) and ``log10_Z``; all: ``method``, ``exact``, ``feasible``,
        ``induced_width``, ``converged``, ``n_iter``, ``seconds``.
    """
    figures: dict = {}
    if task == "map":
        figures["assignment"] = result.assignment.tolist()
        figures["energy"] = float(result.energy)
        figures["lower_bound"] = None if result.lower_bound is None else float(
            result.lower_bound)
        figures["gap"] = None if result.gap is None else float(result.gap)
        figures["optimal"] = result.optimal
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
        if result.lower_bound is not None:
            headline += (f", lower bound {result.lower_bound:.10g}, gap {result.gap:.3g}"
                         + (" (optimal)" if result.optimal else ""))
    else:
        headline = (f"log10 Z {figures['log10_Z']:.10g} (ln Z {figures['log_partition']:.10g}, "
                    f"beta {args.beta:g})")
    if result.method == "exact":
        how = f"exact (junction tree, induced width {result.induced_width})"
    elif result.method == "trws":
        how = "TRW-S, " + ("certified optimal" if result.optimal else "not proven optimal")
    else:
        how = "BP, exact on a forest" if result.exact else "loopy BP, approximate"
    if result.feasible is False:
        how += "; the model is infeasible (no finite-energy configuration)"
    elif result.feasible is None:
        how += "; no finite-energy assignment found (the model may still be feasible)"
    if result.method == "exact":
        status = "one collect and one distribute pass"
    elif result.method == "trws":
        status = f"{result.n_iter} iteration(s): " + (
            "the gap closed" if result.optimal else "the bound stopped rising"
            if result.converged else "stopped at --max-iter, the bound still rising")
    elif result.converged:
        status = f"converged in {result.n_iter} iteration(s)"
    else:
        status = (f"did NOT converge in {result.n_iter} iterations (last message change "
                  f"{result.residuals[-1]:.3g} > tol {args.tol:g}); the answer is BP's last "
                  f"estimate{_convergence_hint(args.given)}")
    schedule = "" if result.method == "exact" else f"{result.schedule} schedule, "
    print(f"fgebm {args.task}: {headline}; {schedule}{how}; {status}", file=sys.stderr)
    if args.verbose:
        print(f"  model {_model_name(args.model)}: {graph.n_variables} variables, "
              f"{graph.n_factors} factors; {len(evidence)} observed (evidence "
              f"{args.evid or 'none'})", file=sys.stderr)
        print(f"  read {read_seconds:.3f} s, inference {result.seconds:.3f} s", file=sys.stderr)
        comparison = compare_with_reference(args.task, args.model, graph, figures, evidence)
        if comparison:
            print(f"  {comparison}", file=sys.stderr)


def _convergence_hint(given: set) -> str:
    """``: try ...`` with the BP options that the user did not give, or ``""``."""
    hints = []
    if "damping" not in given:
        hints.append("--damping 0.5")
    if "max_iter" not in given:
        hints.append("a larger --max-iter")
    if not hints and "tol" not in given:
        hints.append("a larger --tol")
    return f": try {' or '.join(hints)}" if hints else ""


def compare_with_reference(task: str, model: str, graph, figures: dict,
                           evidence=None) -> str | None:
    """How ``figures`` compare with the UAI reference answer ``MODEL.MAP|PR|MAR``, if any.

    The reference answers are for the evidence in ``MODEL.evid`` (none when that file is
    absent), so they are compared only when the run's ``evidence`` is the same.

    Parameters
    ----------
    task : {"map", "mar", "pr"}
    model : str
        The model's path (``-``: standard input, which has no reference beside it).
    graph : FactorGraph
    figures : dict
        :func:`task_figures` of the run.
    evidence : mapping variable index -> state, optional
        The run's evidence.

    Returns
    -------
    str or None
        None when there is no reference file; a note saying why not when it is not
        compared (other evidence, a file that does not read).
    """
    path = Path(f"{model}.{task.upper()}")
    if model == "-" or not path.exists():
        return None
    evid = Path(f"{model}.evid")
    try:
        assumed = read_evidence(evid, graph) if evid.exists() else {}
    except FactorGraphError as exc:
        return f"reference {path.name} not compared: the evidence it assumes does not read: {exc}"
    given = dict(evidence or {})
    if given != assumed:
        theirs = (f"the evidence in {evid.name} ({len(assumed)} observed)" if assumed
                  else f"no evidence ({evid.name} {'has none' if evid.exists() else 'is absent'})")
        ours = (f"other evidence ({len(given)} observed)" if given else "none")
        fix = f"rerun with --evid {evid}" if assumed else "rerun without --evid"
        return f"reference {path.name} not compared: it is for {theirs}, this run has {ours}; {fix}"
    name = f"{path.name} (evidence of {evid.name})" if assumed else path.name
    try:
        if task == "map":
            reference = graph.energy(read_map(path, graph))
            return (f"reference {name}: energy {reference:.10g}, gap "
                    f"{figures['energy'] - reference:.3g}")
        if task == "pr":
            reference = read_pr(path)
            return (f"reference {name}: log10 Z {reference:.10g}, error "
                    f"{figures['log10_Z'] - reference:.3g}")
        error = max(float(np.abs(np.subtract(mine, theirs)).max()) for mine, theirs in
                    zip(figures["marginals"], read_mar(path, graph), strict=True))
        return f"reference {name}: largest marginal error {error:.3g}"
    except FactorGraphError as exc:
        return f"reference {path.name} not compared: {exc}"
