"""Batch jobs on Dask: inference mapped over many models or many evidence sets.

:func:`map_inference` runs :func:`~factorgraph_ebm.belief_propagation` on each item (a
model, or one model with many evidence sets) on a Dask cluster (``dask.distributed``): a
:class:`~distributed.Client` you give, one connected to a scheduler address, or a
:class:`~distributed.LocalCluster` of ``n_jobs`` workers started (and closed) for the call;
without any of them, in this process, one item after the other (no Dask needed). Results
stream back as they finish, with a tqdm progress bar; an item that fails (a bad file, bad
evidence, a worker that died) comes back with its error and the others go on. Each item
runs the very call a serial run makes, so its result is the serial one (bit for bit on the
same machine). Dask is an optional dependency: ``pip install "factorgraph-ebm[dask]"``.

Scheduling is Dask's (we build none): items are independent tasks, so Dask balances them
over the workers; a model given as a file path is read on the worker (only the path
travels), and the one model of a batch of evidence sets is scattered to every worker once.
On a real cluster::

    dask scheduler                      # prints the address, e.g. tcp://10.0.0.5:8786
    dask worker tcp://10.0.0.5:8786     # on each machine (the package installed there)
    fgebm map models/*.uai --scheduler tcp://10.0.0.5:8786 --json
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from .exceptions import FactorGraphError
from .graph import FactorGraph

__all__ = ["Outcome", "infer_many", "map_inference"]


@dataclass(frozen=True)
class Outcome:
    """What one item of :func:`map_inference` gave.

    Attributes
    ----------
    index : int
        The item's position in the input.
    model : str or int
        The model's file path, or its index among the models given as graphs.
    value : object
        The item's :class:`~factorgraph_ebm.InferenceResult`, or what ``reduce`` made of it;
        None when it failed.
    error : str or None
        ``"ExceptionType: message"`` when the item failed (a worker that died included),
        else None.
    """

    index: int
    model: object
    value: object
    error: str | None

    @property
    def ok(self) -> bool:
        """Whether the item succeeded."""
        return self.error is None


def map_inference(
    models,
    evidence=None,
    *,
    client=None,
    scheduler: str | None = None,
    n_jobs: int | None = None,
    processes: bool = True,
    progress: bool = False,
    reduce=None,
    read_options: dict | None = None,
    **options,
) -> Iterator[Outcome]:
    """Inference on many models, or on one model with many evidence sets, streamed as the
    items finish.

    Parameters
    ----------
    models : FactorGraph, path, or sequence of FactorGraph or paths
        The models: graphs, or ``.uai`` / ``.fg`` files (read where the item runs, with
        :func:`factorgraph_ebm.io.read_model`). One model with a sequence of evidence sets
        is a batch of evidence sets (the graph is scattered to the workers once).
    evidence : mapping, path, or sequence of those (or None), optional
        Observed variables (name -> state; for a model read from a file, names are the
        variable indices of the file) or a UAI ``.evid`` file: one for every item, or one
        per item.
    client : distributed.Client, optional
        Run on this client's cluster.
    scheduler : str, optional
        Connect to the Dask scheduler at this address (e.g. ``"tcp://10.0.0.5:8786"``).
    n_jobs : int, optional
        Start a :class:`~distributed.LocalCluster` of this many workers (one thread each;
        closed at the end).
    processes : bool, default=True
        With ``n_jobs``: workers in processes (False: threads of this process, which
        start faster; the kernels release the GIL).
    progress : bool, default=False
        Show a tqdm progress bar (items done) on stderr.
    reduce : callable, optional
        Applied to each result where it ran (e.g. to send back only some figures); must be
        importable by the workers (a module-level function, or a partial of one).
    read_options : dict, optional
        Keywords of :func:`factorgraph_ebm.io.read_model` for models given as files
        (e.g. ``max_entries``).
    **options
        Keywords of :func:`~factorgraph_ebm.belief_propagation` (``beta``, ``method``,
        ``max_iter``, ...), the same for every item.

    Yields
    ------
    Outcome
        One per item, in the order they finish (``outcome.index`` is the item's position).

    Raises
    ------
    FactorGraphError
        Bad arguments (before anything runs): no models, evidence of another length, more
        than one of ``client``, ``scheduler``, ``n_jobs``.
    ImportError
        ``client``, ``scheduler`` or ``n_jobs`` without Dask installed (the message says
        how to install it).
    """
    items = _items(models, evidence)
    given = [name for name, value in (("client", client), ("scheduler", scheduler),
                                      ("n_jobs", n_jobs)) if value is not None]
    if len(given) > 1:
        raise FactorGraphError(f"give one of client, scheduler and n_jobs, got {given}")
    bar = tqdm(total=len(items), desc="fgebm", unit="model", disable=not progress,
               dynamic_ncols=True)
    try:
        if not given:
            for index, (model, ev, key) in enumerate(items):
                yield _outcome(index, key, solve(model, ev, options, reduce, read_options))
                bar.update()
            return
        for outcome in _on_dask(items, client, scheduler, n_jobs, processes, options, reduce,
                                read_options):
            yield outcome
            bar.update()
    finally:
        bar.close()


def infer_many(models, evidence=None, **kwargs) -> list[Outcome]:
    """:func:`map_inference`, collected in the input order.

    Returns
    -------
    list of Outcome
        ``outcomes[i]`` is item i's.
    """
    outcomes = list(map_inference(models, evidence, **kwargs))
    return sorted(outcomes, key=lambda o: o.index)


def solve(model, evidence, options: dict, reduce=None, read_options=None) -> tuple:
    """Run one item where it is scheduled: ``("ok", value)`` or ``("error", text)``.

    ``model`` is a graph or a model file (read with ``read_options``), ``evidence`` a
    mapping, an ``.evid`` file or None. Exceptions become their text, so that one bad item
    never stops the others.
    """
    from .inference import belief_propagation

    try:
        if isinstance(model, (str, os.PathLike)):
            from .io import read_model

            model = read_model(model, **(read_options or {}))
        if isinstance(evidence, (str, os.PathLike)):
            from .io import read_evidence

            evidence = {model.variables[i]: s
                        for i, s in read_evidence(evidence, model).items()}
        result = belief_propagation(model, evidence=evidence, **options)
        return "ok", (result if reduce is None else reduce(result))
    except Exception as exc:  # reported with the item; the other items go on
        return "error", _describe(exc)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, (FactorGraphError, OSError)):  # a bug or a lost worker
        text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    return text


def _outcome(index, key, answer) -> Outcome:
    status, value = answer
    return Outcome(index, key, value if status == "ok" else None,
                   None if status == "ok" else value)


def _items(models, evidence) -> list:
    """(model, evidence, key) per item."""
    if isinstance(models, (FactorGraph, str, os.PathLike)):
        if evidence is None or isinstance(evidence, (Mapping, str, os.PathLike)):
            return [(models, evidence, _key(models, 0))]
        return [(models, ev, _key(models, 0)) for ev in evidence]
    if not isinstance(models, Sequence) or not len(models):
        raise FactorGraphError("models: give a FactorGraph, a model file, or a non-empty "
                               "sequence of them")
    if evidence is None or isinstance(evidence, (Mapping, str, os.PathLike)):
        evidence = [evidence] * len(models)
    elif len(evidence) != len(models):
        raise FactorGraphError(f"evidence: {len(evidence)} sets for {len(models)} models; "
                               "give one per model, or one for all")
    return [(m, ev, _key(m, i)) for i, (m, ev) in enumerate(zip(models, evidence))]


def _key(model, index):
    return str(model) if isinstance(model, (str, os.PathLike)) else index


def _dask():
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "running on Dask needs dask.distributed: pip install 'factorgraph-ebm[dask]' "
            f"(or 'dask[distributed]>=2024.1'); {exc}"
        ) from None
    return distributed


@contextlib.contextmanager
def connected(client=None, scheduler=None, n_jobs=None, processes=True):
    """A Dask client: ``client`` itself, one connected to ``scheduler``, or one on a
    :class:`~distributed.LocalCluster` of ``n_jobs`` workers (one thread each; in processes,
    or threads of this one); what is started here is closed on leaving.

    Raises
    ------
    FactorGraphError
        ``n_jobs`` not an integer >= 1.
    ImportError
        Dask is not installed.
    """
    distributed = _dask()
    cluster = None
    own = client is None
    if n_jobs is not None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise FactorGraphError(f"n_jobs must be an integer >= 1, got {n_jobs!r}")
        # Processes listen on this machine only (threads talk in-process).
        where = {"host": "127.0.0.1"} if processes else {}
        cluster = distributed.LocalCluster(n_workers=n_jobs, threads_per_worker=1,
                                           processes=processes, dashboard_address=None,
                                           silence_logs=logging.ERROR, **where)
        client = distributed.Client(cluster)
    elif scheduler is not None:
        client = distributed.Client(scheduler)
    try:
        yield client
    finally:
        if own and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _on_dask(items, client, scheduler, n_jobs, processes, options, reduce, read_options):
    """The items on a Dask client, yielded as they finish; a cluster or client started
    here is closed at the end (also when the caller stops early)."""
    distributed = _dask()
    with connected(client, scheduler, n_jobs, processes) as client:
        # A graph in many items (a batch of evidence sets): sent to every worker once.
        uses = Counter(id(m) for m, _, _ in items if isinstance(m, FactorGraph))
        shared = {}
        for model, _, _ in items:
            if uses[id(model)] > 1 and id(model) not in shared:
                shared[id(model)] = client.scatter(model, broadcast=True)
        futures = {}
        for index, (model, ev, key) in enumerate(items):
            future = client.submit(solve, shared.get(id(model), model), ev, options, reduce,
                                   read_options, pure=False)
            futures[future] = (index, key)
        for future in distributed.as_completed(futures):
            index, key = futures.pop(future)
            if future.status == "finished":
                outcome = _outcome(index, key, future.result())
            else:  # the task itself failed (e.g. KilledWorker): reported, not raised
                try:
                    problem = _describe(future.exception())
                except BaseException as exc:  # a cancelled future has no exception
                    problem = f"{type(exc).__name__}: the task was {future.status} ({exc})"
                outcome = Outcome(index, key, None, problem)
            future.release()
            yield outcome
