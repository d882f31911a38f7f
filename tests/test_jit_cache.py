"""The package's own Numba kernel cache (:mod:`factorgraph_ebm._jit_cache`), the first-use
notice and ``fgebm compile``.

Most tests run fresh processes on a copy of the package with a tiny probe kernel module
added (a kernel that calls a helper from another module), each with its own empty cache
directory, so that they compile in about a second instead of the minute that the real
kernels take on a cold cache.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numba
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm
from factorgraph_ebm import _jit_cache, cli

PACKAGE = Path(factorgraph_ebm.__file__).resolve().parent
TIMEOUT = SUBPROCESS_TIMEOUT

HELPER = """\
from ._config import NJIT_OPTIONS, njit


@njit(**NJIT_OPTIONS)
def helper(x):
    return x + 1.0
"""
PROBE = """\
from ._config import NJIT_OPTIONS, njit
from ._probe_helper import helper


@njit(**NJIT_OPTIONS)
def kernel(x):
    return helper(x) * 2.0
"""
# Run in the child: call the probe kernel on the given values and print what happened.
RUN_PROBE = """\
import json, os, sys, warnings
{before}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from factorgraph_ebm import _probe
    values = [float(_probe.kernel(x)) for x in {args}]
{after}
stats = _probe.kernel.stats
print(json.dumps({{
    "file": _probe.__file__,
    "values": values,
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
    "cache_path": stats.cache_path,
    "warnings": [str(w.message) for w in caught
                 if type(w.message).__name__ == "JitCacheWarning"],
    "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
}}))
"""


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package with the probe modules, importable from ``tmp/src``."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "factorgraph_ebm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (src / "factorgraph_ebm" / "_probe_helper.py").write_text(HELPER)
    (src / "factorgraph_ebm" / "_probe.py").write_text(PROBE)
    return src


def environment(src, **variables):
    """os.environ with ``src`` on PYTHONPATH, without the Numba and cache variables that
    the tests set themselves, plus ``variables`` (None removes one)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_DEBUG_CACHE")}
    env["PYTHONPATH"] = str(src)
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def start_probe(src, env, args=(1.0,), before="", after=""):
    code = RUN_PROBE.format(args=list(args), before=before, after=after)
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=src.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    report["stderr"] = err
    return report


def run_probe(src, env, args=(1.0,), before="", after=""):
    """Run the probe kernel in a fresh process; its report (see RUN_PROBE) and stderr."""
    report = finish(start_probe(src, env, args, before, after))
    assert Path(report["file"]).is_relative_to(src), "the package copy was not imported"
    return report


def cache_files(directory, pattern="*.nb[ic]"):
    return sorted(Path(directory).rglob(pattern))


# --------------------------------------------------------------------------- location
@pytest.mark.parametrize("numba_first", [False, True], ids=["package-first", "numba-first"])
def test_kernels_go_to_the_user_cache_directory_whatever_the_import_order(
    package_copy, tmp_path, numba_first
):
    """Without NUMBA_CACHE_DIR: the package's kernels go to $XDG_CACHE_HOME/factorgraph_ebm,
    also when numba (and a user's module) was imported first; nothing is written beside
    the package; a user's own cache=True function still caches where Numba puts it by
    default (its __pycache__); the environment is untouched."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "userfn.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
    )
    env = environment(package_copy, XDG_CACHE_HOME=tmp_path / "xdg", HOME=tmp_path / "home",
                      PYTHONPATH=f"{package_copy}{os.pathsep}{user}")
    before = "import numba, userfn" if numba_first else ""
    after = "import userfn; assert userfn.twice(21) == 42"
    report = run_probe(package_copy, env, before=before, after=after)
    assert report["values"] == [4.0]
    assert report["numba_cache_dir"] is None
    ours = tmp_path / "xdg" / "factorgraph_ebm" / _jit_cache.source_key_of(
        package_copy / "factorgraph_ebm")
    assert Path(report["cache_path"]) == ours
    assert [p.name for p in cache_files(ours, "*.nbi")] == [
        "_probe.kernel-5.py%d%d.nbi" % sys.version_info[:2],
        "_probe_helper.helper-4.py%d%d.nbi" % sys.version_info[:2],
    ]
    assert cache_files(package_copy) == []
    assert cache_files(user / "__pycache__", "userfn.twice-*.nbi")
    assert not (tmp_path / "home").exists()
    again = run_probe(package_copy, env)
    assert (again["hits"], again["misses"]) == (1, 0)


def test_numba_cache_dir_is_honoured_without_moving_other_functions(package_copy, tmp_path):
    """With NUMBA_CACHE_DIR the kernels go to NUMBA_CACHE_DIR/factorgraph_ebm/<key>; the
    user's functions stay where Numba puts them (NUMBA_CACHE_DIR/<Numba's subpath>)."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "userfn.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"
    )
    numba_dir = tmp_path / "numba-cache"
    env = environment(package_copy, NUMBA_CACHE_DIR=numba_dir,
                      PYTHONPATH=f"{package_copy}{os.pathsep}{user}")
    report = run_probe(package_copy, env, after="import userfn; assert userfn.twice(2) == 4")
    assert report["values"] == [4.0]
    assert Path(report["cache_path"]).parent == numba_dir / "factorgraph_ebm"
    theirs = [p for p in cache_files(numba_dir, "*.nbi") if "userfn" in p.name]
    assert len(theirs) == 1 and "factorgraph_ebm" not in theirs[0].parts


def test_every_kernel_has_the_package_cache():
    from factorgraph_ebm import messages, trellis

    # A kernel caches in the cache directory, under the path of its module's folder.
    for kernel, folder in ((messages.factor_sweep, "messages"), (messages.flood_phase, "messages"),
                           (trellis.viterbi_kernel, "trellis")):
        assert isinstance(kernel._cache, _jit_cache._PackageCache)
        assert Path(kernel._cache.cache_path) == _jit_cache.cache_dir() / folder
    assert _jit_cache.cache_dir().name == _jit_cache.source_key()
    assert _jit_cache.source_key().startswith(factorgraph_ebm.__version__ + "-")


# --------------------------------------------------------------------------- unwritable
@pytest.mark.parametrize("blocked", ["NUMBA_CACHE_DIR", "HOME"])
def test_unwritable_location_falls_back_to_a_private_temporary_directory(
    package_copy, tmp_path, blocked
):
    """A cache location that cannot be created (here: below a regular file, which stops
    root as well as anyone) gives one JitCacheWarning and a private directory under the
    temporary directory; the next process loads from there."""
    wall = tmp_path / "a-file"
    wall.write_text("")
    temp = tmp_path / "tmp"
    temp.mkdir()
    if blocked == "HOME":
        env = environment(package_copy, HOME=wall / "home", XDG_CACHE_HOME=None, TMPDIR=temp)
    else:
        env = environment(package_copy, NUMBA_CACHE_DIR=wall / "cache", TMPDIR=temp)
    report = run_probe(package_copy, env)
    assert report["values"] == [4.0]
    assert len(report["warnings"]) == 1, report["warnings"]
    assert "cannot write its Numba kernel cache" in report["warnings"][0]
    fallback = next(temp.glob("factorgraph_ebm-*"))
    assert Path(report["cache_path"]).parent == fallback
    assert cache_files(fallback, "_probe.kernel-*.nbi")
    again = run_probe(package_copy, env)
    assert (again["values"], again["hits"], again["misses"]) == ([4.0], 1, 0)


def test_no_writable_location_runs_uncached_with_one_warning(package_copy, tmp_path):
    wall = tmp_path / "a-file"
    wall.write_text("")
    temp = tmp_path / "tmp"
    temp.mkdir()
    # The private fallback directory's name is taken by a file: no fallback either.
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    (temp / f"factorgraph_ebm-{uid}").write_text("")
    env = environment(package_copy, NUMBA_CACHE_DIR=wall / "cache", TMPDIR=temp)
    report = run_probe(package_copy, env, args=(1.0, 2.0))
    assert report["values"] == [4.0, 6.0]
    assert len(report["warnings"]) == 1 and "uncached" in report["warnings"][0]
    assert report["cache_path"] is None
    assert cache_files(tmp_path) == []


def test_numba_api_drift_runs_uncached_with_one_warning(monkeypatch):
    monkeypatch.setattr(_jit_cache, "_PackageCache", None)
    monkeypatch.setattr(_jit_cache, "_warned", False)
    monkeypatch.setattr(_jit_cache, "KERNELS", [])
    with pytest.warns(_jit_cache.JitCacheWarning, match="uncached") as caught:
        first = _jit_cache.njit(cache=True)(lambda x: x + 1)
        second = _jit_cache.njit(cache=True)(lambda x: x - 1)
    assert len(caught) == 1
    assert (first(1), second(1)) == (2, 0)
    assert first.stats.cache_path is None


# --------------------------------------------------------------------------- corruption
def test_corrupted_or_truncated_cache_files_are_compiled_again(package_copy, tmp_path):
    env = environment(package_copy, NUMBA_CACHE_DIR=tmp_path / "cache")
    assert run_probe(package_copy, env)["misses"] == 1
    for index in cache_files(tmp_path / "cache", "*.nbi"):  # truncated index
        index.write_bytes(index.read_bytes()[:7])
    report = run_probe(package_copy, env)
    assert (report["values"], report["misses"]) == ([4.0], 1)
    for data in cache_files(tmp_path / "cache", "*.nbc"):  # truncated, then garbage data
        data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])
    report = run_probe(package_copy, env)
    assert (report["values"], report["misses"]) == ([4.0], 1)
    for data in cache_files(tmp_path / "cache", "*.nbc"):
        data.write_bytes(b"not a pickle")
    for index in cache_files(tmp_path / "cache", "*.nbi"):
        index.write_bytes(b"")
    report = run_probe(package_copy, env)
    assert (report["values"], report["misses"]) == ([4.0], 1)
    report = run_probe(package_copy, env)  # and the rewritten files load
    assert (report["values"], report["hits"], report["misses"]) == ([4.0], 1, 0)


# --------------------------------------------------------------------------- staleness
def test_an_edited_helper_in_another_module_is_never_stale(package_copy, tmp_path):
    """The kernel inlines a helper of another module; Numba's own check (the kernel's
    source file) would load the old kernel after the helper is edited. The cache key
    covers every kernel source file."""
    env = environment(package_copy, NUMBA_CACHE_DIR=tmp_path / "cache")
    first = run_probe(package_copy, env)
    assert first["values"] == [4.0]
    helper = package_copy / "factorgraph_ebm" / "_probe_helper.py"
    helper.write_text(HELPER.replace("x + 1.0", "x + 2.0"))
    edited = run_probe(package_copy, env)
    assert (edited["values"], edited["misses"]) == ([6.0], 1)
    assert edited["cache_path"] != first["cache_path"]


def test_the_key_covers_version_numba_and_kernel_sources(tmp_path, monkeypatch):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "kernels.py").write_text("from ._config import njit\n")
    (src / "plain.py").write_text("x = 1\n")
    key = _jit_cache.source_key_of(src)
    assert key.startswith(factorgraph_ebm.__version__ + "-")
    (src / "plain.py").write_text("x = 2\n")  # no kernel in it: the same kernels
    assert _jit_cache.source_key_of(src) == key
    (src / "kernels.py").write_text("from ._config import njit  # edited\n")
    assert _jit_cache.source_key_of(src) != key
    edited = _jit_cache.source_key_of(src)
    monkeypatch.setattr(_jit_cache.numba, "__version__", "0.0.1")
    assert _jit_cache.source_key_of(src) != edited


# --------------------------------------------------------------------------- pruning
DAY = _jit_cache.STALE_SECONDS


def fake_cache(root, name, age, files=("m.f-3.py312.nbi", "m.f-3.py312.0123abcd.nbc")):
    """A cache directory ``root/name`` last used ``age`` seconds ago."""
    directory = root / name
    (directory / "exact").mkdir(parents=True)
    for file in files:
        (directory / file).write_bytes(b"x")
    (directory / "exact" / "k.f-9.py312.nbi").write_bytes(b"x")
    used = time.time() - age
    os.utime(directory, (used, used))
    return directory


def test_prune_removes_only_stale_cache_directories_beyond_the_most_recent(tmp_path):
    current = fake_cache(tmp_path, "0.2.0-" + "a" * 16, age=10 * DAY)  # the one in use
    kept = [fake_cache(tmp_path, "0.1.9-" + "b" * 16, age=DAY / 2),  # the two most recent
            fake_cache(tmp_path, "0.1.8-" + "b" * 16, age=2 * DAY)]
    stale = [fake_cache(tmp_path, f"0.0.{i}-" + "c" * 16, age=(3 + i) * DAY) for i in range(3)]
    # An interrupted write's temporary file is a cache file too.
    stale.append(fake_cache(tmp_path, "0.0.7-" + "f" * 16, age=9 * DAY,
                            files=("x.nbi", "x.nbc.tmp.9a")))
    foreign = [
        fake_cache(tmp_path, "numba", age=9 * DAY),  # not a key's name
        fake_cache(tmp_path, "0.0.8-" + "e" * 16, age=9 * DAY, files=("notes.txt",)),
    ]
    (tmp_path / ("0.0.6-" + "0" * 16)).write_text("a file, not a directory")
    removed = _jit_cache.prune_stale(tmp_path, keep=current.name)
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in [current, *kept, *foreign]] + ["0.0.6-" + "0" * 16]
    )


def test_prune_keeps_directories_used_within_a_day(tmp_path):
    current = fake_cache(tmp_path, "0.2.0-" + "a" * 16, age=0)
    today = [fake_cache(tmp_path, f"0.1.{i}-" + "b" * 16, age=DAY - 60 * i - 60)
             for i in range(5)]
    assert _jit_cache.prune_stale(tmp_path, keep=current.name) == []
    assert all(p.exists() for p in today)
    later = time.time() + 2 * DAY
    assert len(_jit_cache.prune_stale(tmp_path, keep=current.name, now=later)) == 3


def test_a_process_marks_its_cache_used_and_prunes_stale_siblings(package_copy, tmp_path):
    env = environment(package_copy, NUMBA_CACHE_DIR=tmp_path / "cache")
    first = run_probe(package_copy, env)
    mine = Path(first["cache_path"])
    root = mine.parent
    old = time.time() - 30 * DAY
    os.utime(mine, (old, old))
    stale = [fake_cache(root, f"0.0.{i}-" + "c" * 16, age=(3 + i) * DAY) for i in range(4)]
    again = run_probe(package_copy, env)
    assert (again["values"], again["hits"]) == ([4.0], 1)
    assert time.time() - mine.stat().st_mtime < DAY  # marked as used
    assert [p.exists() for p in stale] == [True, True, False, False]


# --------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("n_processes", [4])
def test_processes_compiling_into_one_empty_cache_all_answer_correctly(
    package_copy, tmp_path, n_processes
):
    env = environment(package_copy, NUMBA_CACHE_DIR=tmp_path / "cache")
    args = [(1.0, 2, 3.5), (2, 1.0, 3.5), (3.5, 2, 1.0), (1.0, 3.5, 2)][:n_processes]
    processes = [start_probe(package_copy, env, a) for a in args]
    for process, a in zip(processes, args):
        report = finish(process)
        assert report["values"] == [2.0 * (x + 1.0) for x in a]
    # Entries may have been lost to a concurrent index update (then compiled again here),
    # never mixed up.
    report = run_probe(package_copy, env, args=(1.0, 2, 3.5))
    assert report["values"] == [4.0, 6.0, 9.0]
    assert report["hits"] + report["misses"] == 2  # float64 and int64
    report = run_probe(package_copy, env, args=(1.0, 2, 3.5))
    assert (report["values"], report["hits"], report["misses"]) == ([4.0, 6.0, 9.0], 2, 0)


# --------------------------------------------------------------------------- first use
def test_first_use_notice_once_on_a_cold_cache_only(package_copy, tmp_path):
    env = environment(package_copy, NUMBA_CACHE_DIR=tmp_path / "cache")
    cold = run_probe(package_copy, env, args=(1.0, 2))
    assert cold["stderr"].count("compiling Numba kernels for first use") == 1
    assert "fgebm compile" in cold["stderr"]
    warm = run_probe(package_copy, env, args=(1.0, 2))
    assert "first use" not in warm["stderr"]


def test_cli_says_on_stderr_that_kernels_compile_for_first_use(tmp_path):
    """``fgebm info`` compiles one small kernel (the graph's breadth-first schedule)."""
    model = tmp_path / "m.uai"
    model.write_text("MARKOV\n2\n2 2\n1\n2 0 1\n4 1 2 3 4\n")
    env = environment(PACKAGE.parent, NUMBA_CACHE_DIR=tmp_path / "cache")
    command = [sys.executable, "-m", "factorgraph_ebm", "info", str(model)]
    cold = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count("compiling Numba kernels for first use") == 1
    warm = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert warm.returncode == 0 and warm.stderr == ""


def test_cli_routes_library_notices_to_stderr(capsys):
    cli._log_notices_to_stderr()
    cli._log_notices_to_stderr()  # idempotent: one handler
    logging.getLogger("factorgraph_ebm").warning("a notice")
    assert capsys.readouterr().err == "a notice\n"


# --------------------------------------------------------------------------- ahead of time
def test_fgebm_compile_compiles_every_kernel(capsys):
    """``fgebm compile`` (compile_kernels) reaches every kernel of the package: each has a
    specialization in this process (compiled, or loaded from a warm cache) or, when it is
    only called from other kernels, which were loaded whole, an index in the cache."""
    assert cli.main(["compile"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("fgebm compile: ") and "loaded from the cache" in out
    assert "belief propagation" in err and "SequenceLabeler" in err
    assert "first use" not in err
    # With one thread (a one-core machine, taskset -c 0) the threaded paths never run, so
    # their kernels are not reachable: the parallel=True ones, the threaded iteration loop
    # and its per-chunk factor step.
    one_thread = numba.config.NUMBA_NUM_THREADS == 1
    threaded = {"flood_sweeps", "flood_factors"}
    missing = [
        f"{k.py_func.__module__}.{k.__name__}" for k in _jit_cache.KERNELS
        if k.targetoptions.get("inline") != "always"
        and not (one_thread and (k.targetoptions.get("parallel") or k.__name__ in threaded))
        and not k.overloads and not Path(k._cache._cache_file._index_path).exists()
    ]
    assert missing == [], "compile_kernels() does not reach these kernels"
