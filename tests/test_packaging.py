"""What the package ships: the installed package's files, and the sdist and wheel built
from a source checkout (their metadata, and an sdist whose test suite runs where it is
unpacked)."""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm

ROOT = Path(__file__).resolve().parents[1]
#: Tracked files that the sdist leaves out on purpose (CI plumbing, git configuration).
NOT_SHIPPED = (".ci/", ".gitignore")


def test_py_typed_marker_is_in_the_package():
    """PEP 561: the ``py.typed`` marker tells type checkers to use the package's inline
    annotations. It must sit in the package directory (in a wheel: installed as package
    data, declared in pyproject.toml)."""
    package = Path(factorgraph_ebm.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    pyproject = package.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout
        assert 'factorgraph_ebm = ["py.typed"]' in pyproject.read_text()


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """``python -m build`` on the checkout: the sdist, then the wheel built from it, and
    the build's output. Skips outside a source checkout, without the ``build`` package,
    or when the isolated build environment cannot get setuptools (offline, no local
    wheel of it)."""
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a source checkout")
    pytest.importorskip("build", reason="`build` is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode and ("No matching distribution found for setuptools" in log
                            or "Could not find a version that satisfies" in log):
        pytest.skip("the isolated build cannot install setuptools>=77 (offline?)")
    assert proc.returncode == 0, log
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel, log


def test_build_has_no_deprecation_warnings(dists):
    """The SPDX ``license`` expression replaced the deprecated table form, which made
    setuptools warn on every build and install."""
    log = dists[2]
    assert "deprecat" not in log.lower(), log


@pytest.mark.parametrize("which", ["sdist", "wheel"])
def test_metadata(dists, which):
    """PEP 639 licence fields, the version of ``factorgraph_ebm.__version__`` (its one
    source), classifiers and project URLs."""
    sdist, wheel, _ = dists
    if which == "sdist":
        with tarfile.open(sdist) as tar:
            text = tar.extractfile(f"{sdist.name[:-len('.tar.gz')]}/PKG-INFO").read()
    else:
        with zipfile.ZipFile(wheel) as whl:
            name = wheel.name.split("-py3")[0]
            text = whl.read(f"{name}.dist-info/METADATA")
    meta = Parser().parsestr(text.decode())
    assert meta["Name"] == "factorgraph-ebm"
    assert meta["Version"] == factorgraph_ebm.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["License"] is None  # the deprecated free-text field
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert {url.split(",")[0] for url in meta.get_all("Project-URL")} >= {"Homepage", "Issues"}


def test_wheel_contents(dists):
    """The wheel holds the package with its marker and the licence, and nothing else."""
    with zipfile.ZipFile(dists[1]) as whl:
        names = whl.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"factorgraph_ebm", f"factorgraph_ebm-{factorgraph_ebm.__version__}.dist-info"}
    assert "factorgraph_ebm/py.typed" in names
    assert "factorgraph_ebm/exact/kernels.py" in names
    assert f"factorgraph_ebm-{factorgraph_ebm.__version__}.dist-info/licenses/LICENSE" in names


def test_sdist_ships_every_tracked_file(dists):
    """The sdist is the source tree: every file git tracks except CI plumbing, so tests/
    with its helpers (conftest.py, reference.py, strategies.py, roundtrip.py, warmup.py),
    the examples and benchmarks the tests run, the docs and the Makefile."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    with tarfile.open(dists[0]) as tar:
        shipped = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [f for f in tracked if not f.startswith(NOT_SHIPPED) and f not in shipped]
    assert not missing
    assert {"tests/conftest.py", "tests/warmup.py", "LICENSE", "CHANGELOG.md"} <= shipped
    assert not [f for f in shipped if "__pycache__" in f or f.endswith(".pyc")]


def test_sdist_test_suite_collects(dists, tmp_path):
    """Unpacked, the sdist's test suite imports: pytest collects every test module (its
    helpers are there) against the unpacked package, without errors. Tests that need
    ``../shared/data`` skip there, as they do in any checkout without it."""
    with tarfile.open(dists[0]) as tar:
        # filter="data" (Python 3.10.12+): no links or paths outside tmp_path.
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (tree,) = tmp_path.iterdir()
    where = subprocess.run(
        [sys.executable, "-c", "import factorgraph_ebm; print(factorgraph_ebm.__file__)"],
        cwd=tree, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=True,
    ).stdout
    assert Path(where.strip()).resolve().is_relative_to(tree.resolve())  # not this checkout
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tree, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
    )
    # A helper missing from the sdist is an import error at collection: exit status 2.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
    shipped = {f"tests/{p.name}" for p in (tree / "tests").glob("test_*.py")}
    # (A module that skips itself for a missing optional dependency collects nothing.)
    assert "tests/test_packaging.py" in collected and collected <= shipped
