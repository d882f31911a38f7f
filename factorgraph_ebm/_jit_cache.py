"""The on-disk cache of the package's Numba kernels: one per-user place, robust, and only ours.

Every kernel of the package is made by :func:`njit` (through :mod:`._config`), which with
``cache=True`` gives the dispatcher a cache of its own instead of Numba's default one:

- **Where**: ``factorgraph_ebm/<version>-<hash>/`` under ``NUMBA_CACHE_DIR`` when the user
  set it, else under the platform's user cache directory (``$XDG_CACHE_HOME`` or
  ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows),
  whatever the import order. Nothing process-wide changes: no environment variable is set
  and Numba's own locators are untouched, so other code's ``cache=True`` functions cache
  where they always did.
- **Freshness**: ``<hash>`` is a SHA-256 over the kernel source files (the package's
  ``.py`` files that contain ``njit``) and the Numba version, so an edited or upgraded
  package never loads a kernel that inlined an older helper from another module (Numba's
  own check looks only at the file of the function itself). Kernels take their global
  constants from kernel source files only.
- **Robustness**: an unwritable location falls back to a private directory under the
  system's temporary directory, else kernels run uncached, with one :class:`JitCacheWarning`;
  a corrupted or truncated cache file is a cache miss (the kernel compiles again and the
  file is rewritten); data files are named after their index key and written before the
  index that points at them, so processes that compile into one cache at once never read
  each other's half-written or mismatched entries.
- **Pruning**: the directories of other versions or kernel sources beside it are removed
  once no process has used them for a day, except the two most recently used
  (:func:`prune_stale`), so that upgrades and edits do not fill the disk.
- **First use**: the first compilation of a kernel whose module has nothing in the cache
  yet logs one WARNING on the ``factorgraph_ebm`` logger (compiling for first use, and
  roughly how long it takes); :func:`compile_kernels` compiles everything ahead of time.

Numba's caching classes are private API. If they are missing (a Numba we do not know),
kernels run uncached, with one :class:`JitCacheWarning`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numba

from . import __version__  # set before the package imports its modules

PACKAGE_DIR = Path(__file__).resolve().parent
logger = logging.getLogger("factorgraph_ebm")

#: Every dispatcher made by :func:`njit`, in definition order.
KERNELS: list = []


class JitCacheWarning(UserWarning):
    """The kernel cache cannot be used where it should be: kernels are cached in a
    temporary directory instead, or not at all (then every process compiles them)."""


# --------------------------------------------------------------------------- location
def source_key_of(package_dir: Path) -> str:
    """``<version>-<hash>``: the package version and 16 hex digits of a SHA-256 over the
    Numba version and the kernel source files under ``package_dir`` (relative path and
    bytes of each ``.py`` file that contains ``njit``)."""
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(Path(package_dir).rglob("*.py")):
        data = path.read_bytes()
        if b"njit" in data:
            digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(data).digest())
    return f"{__version__}-{digest.hexdigest()[:16]}"


@functools.lru_cache(maxsize=None)
def source_key() -> str:
    """:func:`source_key_of` this package, computed once (a few milliseconds)."""
    return source_key_of(PACKAGE_DIR)


def user_cache_root() -> Path:
    """The directory under which the kernels are cached: ``NUMBA_CACHE_DIR`` when set
    (environment, or Numba's configuration), else the platform's user cache directory;
    ``factorgraph_ebm`` below either."""
    numba_dir = os.environ.get("NUMBA_CACHE_DIR") or numba.config.CACHE_DIR
    if numba_dir:
        return Path(numba_dir) / "factorgraph_ebm"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else Path.home() / ".cache"
    return Path(base) / "factorgraph_ebm"


def _usable(path: Path, private: bool = False) -> bool:
    """Whether ``path`` exists or can be made, and files can be written in it; with
    ``private``, also that it belongs to this user and nobody else can write in it."""
    try:
        path.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private and hasattr(os, "getuid"):
            st = path.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


@functools.lru_cache(maxsize=None)
def cache_dir() -> Path | None:
    """The directory of this package version's kernels (see the module docstring), or a
    private temporary fallback, or None (uncached) when neither can be written; one
    :class:`JitCacheWarning` for either fallback. Decided once per process, which marks the
    directory as used and prunes its stale siblings (:func:`prune_stale`)."""
    chosen = _choose_cache_dir()
    if chosen is not None:
        mark_used(chosen)
        try:
            prune_stale(chosen.parent, keep=chosen.name)
        except OSError as exc:  # e.g. a directory listing refused: prune another time
            logger.debug("stale kernel caches not pruned: %r", exc)
    return chosen


def _choose_cache_dir() -> Path | None:
    try:
        wanted = user_cache_root() / source_key()
    except RuntimeError:  # no home directory
        wanted = None
    if wanted is not None and _usable(wanted):
        return wanted
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    fallback = Path(tempfile.gettempdir()) / f"factorgraph_ebm-{user}"
    if _usable(fallback, private=True) and _usable(fallback / source_key()):
        chosen, outcome = fallback / source_key(), f"caching them in {fallback} instead"
    else:
        chosen, outcome = None, ("running them uncached: every new process compiles the "
                                 "kernels it uses again (tens of seconds)")
    _warn_once(f"factorgraph_ebm cannot write its Numba kernel cache in {wanted}; {outcome}. "
               "Set NUMBA_CACHE_DIR to a writable directory to choose the place.")
    return chosen


# --------------------------------------------------------------------------- pruning
#: A sibling cache directory (another package version or kernel source) is removed once no
#: process has used it for this many seconds...
STALE_SECONDS = 24 * 3600
#: ...unless it is one of this many most recently used siblings (e.g. two installed versions
#: used in turn).
KEEP_RECENT = 2
_KEY_NAME = re.compile(r".+-[0-9a-f]{16}")  # the name of a source_key() directory
#: Numba's index and data files, and the temporary files of an interrupted write.
_CACHE_FILE = re.compile(r".+\.nb[ic](\.tmp\.[0-9a-f]+)?")


def mark_used(directory: Path) -> None:
    """Set the modification time of ``directory`` to now: :func:`prune_stale` keeps the
    directories of recent use. Every process that uses a cache directory marks it when it
    chooses it and whenever it loads a kernel from it."""
    try:
        os.utime(directory)
    except OSError:  # read-only: then nobody can prune it either
        pass


def prune_stale(root: Path, keep: str, now: float | None = None) -> list[Path]:
    """Remove the stale kernel cache directories under ``root`` (the siblings of the one
    in use, ``keep``) and return them.

    A sibling is removed when its name is that of a :func:`source_key` directory, it holds
    nothing but Numba cache files, it is not among the :data:`KEEP_RECENT` most recently
    used siblings, and no process has used it for :data:`STALE_SECONDS` (its modification
    time, see :func:`mark_used`). A process that still had such a directory open (idle for
    longer than that) only compiles the kernels it loads next again. Anything else under
    ``root`` is left alone. Each directory is first renamed, atomically, so that two
    processes never remove one at once; errors leave a directory in place.
    """
    now = time.time() if now is None else now
    siblings = []
    for path in Path(root).iterdir():
        if path.name != keep and _KEY_NAME.fullmatch(path.name) and path.is_dir():
            siblings.append((path.stat().st_mtime, path))
    siblings.sort(reverse=True)
    removed = []
    for used, path in siblings[KEEP_RECENT:]:
        if now - used <= STALE_SECONDS or not _only_cache_files(path):
            continue
        doomed = path.with_name(f".removing-{path.name}-{os.getpid()}")
        try:
            path.rename(doomed)
        except OSError:  # another process took it, or it cannot be moved
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    return removed


def _only_cache_files(directory: Path) -> bool:
    """Whether every file below ``directory`` is a Numba index or data file."""
    return all(p.is_dir() or _CACHE_FILE.fullmatch(p.name) for p in directory.rglob("*"))


_warned = False


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, JitCacheWarning, stacklevel=2)


# --------------------------------------------------------------------------- Numba glue
try:
    from numba.core.caching import (
        CompileResultCacheImpl,
        FunctionCache,
        IndexDataCacheFile,
        _CacheLocator,
    )
except ImportError:  # Numba's private API moved: run uncached
    _PackageCache = None
else:

    class _PackageLocator(_CacheLocator):
        """Places the cache files of a function of this package in :func:`cache_dir`
        (a subdirectory per subpackage); the source stamp is :func:`source_key`."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            relative = Path(py_file).resolve().parent.relative_to(PACKAGE_DIR)
            self._cache_path = str(cache_dir() / relative)

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return source_key()

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if cache_dir() is None or not Path(py_file).resolve().is_relative_to(PACKAGE_DIR):
                return None
            return cls(py_func, py_file)

    class _PackageCacheImpl(CompileResultCacheImpl):
        _locator_classes = [_PackageLocator]

    class _IndexFile(IndexDataCacheFile):
        """Numba's index and data files, tolerant of corrupted files, with data files named
        after the index key and written before the index entry that points at them."""

        def __init__(self, cache_path, filename_base, source_stamp):
            super().__init__(cache_path, filename_base, source_stamp)
            self._filename_base = filename_base

        def _load_index(self):
            try:
                overloads = super()._load_index()
                if isinstance(overloads, dict):
                    return overloads
                raise TypeError(f"index is a {type(overloads).__name__}")
            except Exception as exc:  # truncated or corrupted: start a new index
                logger.debug("unreadable kernel cache index %s: %r", self._index_path, exc)
                return {}

        def save(self, key, data):
            tag = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
            name = f"{self._filename_base}.{tag}.nbc"
            self._save_data(name, data)
            overloads = self._load_index()
            overloads[key] = name
            self._save_index(overloads)

    class _PackageCache(FunctionCache):
        """A kernel's cache: a failed load is a miss (the kernel compiles again), a failed
        save is skipped; a miss may log the first-use notice."""

        _impl_class = _PackageCacheImpl

        def __init__(self, py_func):
            super().__init__(py_func)
            self._cache_file = _IndexFile(
                self._cache_path, self._impl.filename_base, source_key()
            )

        def load_overload(self, sig, target_context):
            try:
                loaded = super().load_overload(sig, target_context)
            except Exception as exc:  # a corrupted data file: compile again
                logger.debug("unreadable kernel cache entry of %s: %r", self._name, exc)
                loaded = None
            if loaded is None:
                _first_use_notice(self._cache_path, self._impl.filename_base)
            else:
                mark_used(cache_dir())
            return loaded

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception as exc:  # e.g. the disk is full: stay uncached
                logger.debug("kernel cache entry of %s not saved: %r", self._name, exc)


def njit(function=None, **options):
    """``numba.njit`` for the package's kernels: with ``cache=True`` the kernel is cached
    in :func:`cache_dir` (see the module docstring) instead of Numba's default place.

    Parameters
    ----------
    function : callable, optional
        The Python function; without it, a decorator is returned.
    **options
        Options of ``numba.njit``.

    Returns
    -------
    numba.core.registry.CPUDispatcher or callable
        The dispatcher, or a decorator that makes one.
    """
    cache = options.pop("cache", False)

    def decorate(fn):
        dispatcher = numba.njit(**options)(fn)
        if not hasattr(dispatcher, "py_func"):  # NUMBA_DISABLE_JIT: the function itself
            return dispatcher
        KERNELS.append(dispatcher)
        if cache:
            _enable_cache(dispatcher)
        return dispatcher

    return decorate if function is None else decorate(function)


def _enable_cache(dispatcher) -> None:
    if cache_dir() is None:
        return
    try:
        if _PackageCache is None or not hasattr(dispatcher, "_cache"):
            raise AttributeError("numba.core.caching has changed")
        dispatcher._cache = _PackageCache(dispatcher.py_func)
    except Exception as exc:
        _warn_once(f"factorgraph_ebm cannot use Numba {numba.__version__}'s cache API ({exc}); "
                   "running its kernels uncached: every new process compiles the kernels it "
                   "uses again (tens of seconds)")


# --------------------------------------------------------------------------- first use
_noticed = False
_cold_modules: dict[str, bool] = {}


def _first_use_notice(cache_path: str, filename_base: str) -> None:
    """Log once per process that kernels compile for first use, at the first cache miss of
    a kernel whose module (e.g. ``trellis``) has no index file in the cache yet."""
    global _noticed
    if _noticed:
        return
    module = filename_base.split(".", 1)[0]
    where = os.path.join(cache_path, module)
    if where not in _cold_modules:
        try:
            names = os.listdir(cache_path)
        except OSError:
            names = []
        _cold_modules[where] = not any(
            n.startswith(module + ".") and n.endswith(".nbi") for n in names
        )
    if _cold_modules[where]:
        _noticed = True
        logger.warning(
            "factorgraph_ebm: compiling Numba kernels for first use, once: a first call "
            "takes 5-15 s (longer on a busy machine); later runs load the kernels from %s. "
            "`fgebm compile` compiles all of them ahead of time.", cache_dir(),
        )


# --------------------------------------------------------------------------- ahead of time
def compile_kernels(progress=None) -> dict:
    """Compile (or load from the cache) every kernel specialization that the public API
    uses, so that later processes only load them.

    Runs belief propagation (every schedule, min-sum and sum-product, with evidence, a
    replacement energy vector and structured factors), exact inference, TRW-S, training, the
    trellis functions, and :class:`SequenceLabeler` training with each kind of loss and
    optimizer, on tiny inputs.

    Parameters
    ----------
    progress : callable, optional
        Called with a short description before each step (e.g. ``print``).

    Returns
    -------
    dict
        ``seconds`` (wall clock), ``compiled`` (specializations compiled in this call),
        ``loaded`` (loaded from the cache), ``kernels`` (kernels with at least one
        specialization) and ``cache_dir`` (str, or None when uncached).
    """
    global _noticed
    _noticed = True  # no first-use notice: this is the compilation ahead of time
    started = time.perf_counter()
    before = _counts()
    for name, step in _warmup_steps():
        if progress is not None:
            progress(name)
        with warnings.catch_warnings():  # e.g. convergence: the results are thrown away
            warnings.simplefilter("ignore")
            step()
    after = _counts()
    return {
        "seconds": time.perf_counter() - started,
        "compiled": after[0] - before[0],
        "loaded": after[1] - before[1],
        "kernels": sum(1 for d in KERNELS if d.overloads),
        "cache_dir": None if cache_dir() is None else str(cache_dir()),
    }


def _counts() -> tuple[int, int]:
    """(cache misses, cache hits) over all kernels: compiled and loaded specializations."""
    misses = sum(sum(d._cache_misses.values()) for d in KERNELS)
    hits = sum(sum(d._cache_hits.values()) for d in KERNELS)
    return misses, hits


def _warmup_steps() -> list:
    """(description, callable) pairs that together call every kernel the public API uses,
    with the argument types it uses, on tiny inputs."""
    import itertools

    import numpy as np

    from . import FactorGraph, TableModel, belief_propagation, fit, losses, trellis
    from .optim import Adam
    from .sequence.labeler import SequenceLabeler

    rng = np.random.default_rng(0)
    threads = [1, 2] if numba.config.NUMBA_NUM_THREADS > 1 else [1]

    def graph(loopy: bool, plain: bool = False) -> FactorGraph:
        """Every kind of factor, on a forest or with a cycle; ``plain``: unary and dense
        pairwise tables only (the kernels' other specialization, see factorgraph_ebm.messages)."""
        g = FactorGraph()
        g.add_variables(range(8), 3)
        g.add_factors(np.arange(8)[:, None], rng.random((8, 3)), by_index=True)
        g.add_factors([[0, 1], [1, 2]], rng.random((2, 3, 3)), by_index=True)
        if plain:
            g.add_factors([[2, 3], [3, 4], [4, 0] if loopy else [4, 5]],
                          rng.random((3, 3, 3)), by_index=True)
            return g
        g.add_potts_factors([[2, 3]], 0.5, by_index=True)
        g.add_truncated_linear_factors([[3, 4]], 0.5, 1.0, by_index=True, dense=False)
        g.add_truncated_quadratic_factors([[4, 5]], 0.5, 1.0, by_index=True)
        g.add_factors([[0, 6, 5] if loopy else [5, 6, 7]], rng.random((1, 3, 3, 3)),
                      by_index=True)
        return g

    def bp():
        for loopy, plain in itertools.product((False, True), (False, True)):
            g = graph(loopy, plain)
            theta = g.compile().energies * 1.5
            for beta in (np.inf, 1.0):
                for schedule in ("tree", "sequential", "residual", "parallel") if not loopy else (
                        "sequential", "residual", "parallel"):
                    for n in threads if schedule == "parallel" else [None]:
                        belief_propagation(g, beta=beta, method="bp", schedule=schedule,
                                           threads=n, max_iter=3, warn=False)
                belief_propagation(g, beta=beta, method="bp", evidence={0: 1}, energies=theta,
                                   max_iter=3, warn=False)
            g.energy(np.zeros((2, 8), dtype=np.int64))
        g.add_variable("isolated", 4)  # more states than any in a factor: lowest_states
        belief_propagation(g, method="bp", max_iter=3, warn=False)

    def exact():
        g = graph(loopy=True)
        theta = g.compile().energies * 1.5
        for beta in (np.inf, 1.0):
            belief_propagation(g, beta=beta, method="exact")
            belief_propagation(g, beta=beta, method="exact", evidence={0: 1}, energies=theta,
                               factor_beliefs=False)

    def certified():
        g = graph(loopy=True)
        theta = g.compile().energies * 1.5
        belief_propagation(g, method="trws", max_iter=3, warn=False)
        belief_propagation(g, method="trws", evidence={0: 1}, energies=theta, max_iter=3,
                           warn=False)
        g.add_factor([6, 7], [[np.inf, 0.0, 0.0], [0.0, np.inf, 0.0], [0.0, 0.0, np.inf]])
        belief_propagation(g, method="trws", max_iter=3, warn=False)  # hard constraints
        frustrated = FactorGraph()  # a loose relaxation: never certified, so local search runs
        frustrated.add_variables(range(3), 2)
        frustrated.add_potts_factors([[0, 1], [1, 2], [2, 0]], -1.0, by_index=True)
        belief_propagation(frustrated, method="trws", max_iter=3, warn=False)

    def train():
        g = FactorGraph()
        g.add_variables(range(3), 2)
        g.add_factors([[0, 1], [1, 2]], rng.random((2, 2, 2)), by_index=True)
        g.add_factors(np.arange(3)[:, None], rng.random((3, 2)), by_index=True)
        samples = [(None, {0: 1, 1: 0, 2: 1})]
        for loss in (losses.PerceptronLoss(), losses.NLLLoss(), losses.HingeLoss()):
            fit(TableModel(g), loss, samples, n_epochs=1, progress=False, max_iter=3,
                warn=False)

    def batches():
        from .batch import batch_belief_propagation

        for loopy, plain in itertools.product((False, True), (False, True)):
            g = graph(loopy, plain)
            thetas = g.compile().energies * np.array([[1.0], [1.5]])
            for beta in (np.inf, 1.0):
                for schedule in ("tree", "sequential", "parallel") if not loopy else (
                        "sequential", "parallel"):
                    batch_belief_propagation(g, energies=thetas, beta=beta, method="bp",
                                             schedule=schedule, max_iter=3, warn=False)
                batch_belief_propagation(g, energies=thetas, beta=beta, method="bp",
                                         evidence=[{0: 1}, {}], max_iter=3, warn=False)

    def chains():
        lengths = np.array([3, 0, 2])
        unary = rng.random((5, 3))
        shared, per_position = rng.random((3, 3)), rng.random((3, 3, 3))
        target = np.array([0, 1, 2, 0, 1])
        for transition in (shared, per_position):
            trellis.viterbi(unary, transition, lengths)
            for beta in (1.0, np.inf):
                trellis.forward_backward(unary, transition, lengths, beta=beta)
            trellis.kbest(unary, transition, lengths, k=2)
            trellis.best_incorrect(unary, transition, target, lengths)
            trellis.path_energy(unary, transition, target, lengths)
        states = np.zeros(3, dtype=np.int64)
        trellis.viterbi_kernel(unary[:3], shared, np.zeros(3), np.zeros(3), states)
        trellis.path_energy_kernel(unary[:3], shared, np.zeros(3), np.zeros(3), states)

    def parallel_chains():
        from .trellis import _batch

        threshold = _batch.PARALLEL_WORK
        _batch.PARALLEL_WORK = 0  # the parallel variants of the batch kernels too
        try:
            chains()
        finally:
            _batch.PARALLEL_WORK = threshold

    def labeler():
        words = [[{"w=a": 1.0}, {"w=b": 1.0}], [{"w=b": 1.0}, {"w=c": 1.0}, {"w=a": 1.0}]]
        tags = [["A", "B"], ["B", "B", "A"]]
        for loss, optimizer, hashing in (("nll", None, None), ("perceptron", None, None),
                                         ("hinge", Adam(0.1), 64)):
            # Hashed into 64 columns, one sequence per batch: the small-batch gradient path.
            model = SequenceLabeler(loss, optimizer, n_epochs=2, batch_size=1,
                                    n_features=hashing, progress=False)
            model.fit(words, tags)
            model.predict(words)
            model.predict_marginals(words)

    steps = [("belief propagation", bp), ("exact inference (junction tree)", exact),
             ("certified MAP (TRW-S)", certified), ("batches", batches),
             ("training (fit)", train),
             ("trellis", chains)]
    if len(threads) > 1:
        steps.append(("trellis, parallel kernels", parallel_chains))
    steps.append(("SequenceLabeler", labeler))
    return steps
