"""Batch jobs (factorgraph_ebm.distributed, ``fgebm map|mar|pr MODEL...``): serially and on
Dask LocalClusters of two workers (threads, and one test with real processes).

Every item runs the very call of a serial run, so results are compared bit for bit with
serial single calls (same machine, nothing crosses text, except where the CLI's JSON is
compared with serial JSON, which is the same text). The Dask tests skip, saying so, when
dask.distributed is not installed (``pip install "factorgraph-ebm[dask]"``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import factorgraph_ebm as fe
from factorgraph_ebm import cli
from factorgraph_ebm.distributed import infer_many, map_inference, solve
from factorgraph_ebm.io import read_model

FIELDS = ("assignment", "energy", "variable_beliefs", "factor_beliefs", "free_energy",
          "log_partition", "converged", "n_iter", "residuals", "method", "exact")

CHAIN = "MARKOV\n3\n2 3 2\n2\n2 0 1\n2 1 2\n6 1 2 3 4 5 6\n6 6 5 4 3 2 1\n"
TRIANGLE = "MARKOV\n3\n2 2 2\n3\n2 0 1\n2 1 2\n2 0 2\n4 1 2 3 4\n4 4 1 2 3\n4 2 5 1 3\n"
BROKEN = "MARKOV\n3\n2 2\n"


def needs_dask():
    return pytest.importorskip(
        "distributed", reason="dask.distributed is not installed: pip install "
        "'factorgraph-ebm[dask]' to run the Dask tests")


def assert_same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert x == y, (name, x, y)


def grid(n=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables([(i, j) for i in range(n) for j in range(n)], k)
    for i in range(n):
        for j in range(n):
            g.add_factor([(i, j)], rng.normal(size=k))
            for nb in ((i + 1, j), (i, j + 1)):
                if max(nb) < n:
                    g.add_factor([(i, j), nb], rng.normal(size=(k, k)))
    return g


EVIDENCE = [{(0, 0): 1}, None, {(1, 1): 2, (3, 3): 0}, {(0, 0): 7}, {(2, 2): 0}]
OPTIONS = dict(beta=1.0, method="bp", max_iter=50)


def serial(g, evidence, options):
    out = []
    for ev in evidence:
        try:
            out.append(fe.belief_propagation(g, evidence=ev, warn=False, **options))
        except fe.FactorGraphError as exc:
            out.append(exc)
    return out


def check_evidence_outcomes(outcomes, expected):
    assert [o.index for o in outcomes] == list(range(len(expected)))
    for o, e in zip(outcomes, expected):
        if isinstance(e, Exception):
            assert not o.ok and o.value is None
            assert o.error == f"{type(e).__name__}: {e}"  # the item's own error
        else:
            assert o.ok and o.error is None
            assert_same(o.value, e)


# --------------------------------------------------------------------------- serial
def test_serial_many_evidence_sets_one_model():
    g = grid()
    outcomes = infer_many(g, EVIDENCE, warn=False, **OPTIONS)
    check_evidence_outcomes(outcomes, serial(g, EVIDENCE, OPTIONS))
    assert outcomes[3].error.startswith("EvidenceError: evidence for variable (0, 0)")


def test_serial_many_model_files(tmp_path):
    files = []
    for name, text in (("chain.uai", CHAIN), ("broken.uai", BROKEN), ("tri.uai", TRIANGLE)):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    files.append(str(tmp_path / "missing.uai"))
    outcomes = list(map_inference(files, method="exact"))
    assert [o.model for o in outcomes] == files
    assert [o.ok for o in outcomes] == [True, False, True, False]
    assert "broken.uai" in outcomes[1].error and outcomes[3].error.startswith(
        "FileNotFoundError")
    for o in (outcomes[0], outcomes[2]):
        assert_same(o.value, fe.min_sum(read_model(o.model), method="exact"))


def test_unexpected_errors_keep_their_traceback():
    def broken(result):
        raise ZeroDivisionError("in reduce")

    status, text = solve(grid(n=2), None, {}, broken)
    assert status == "error" and text.startswith("ZeroDivisionError: in reduce\nTraceback")


def test_bad_arguments():
    g = grid(n=2)
    with pytest.raises(fe.FactorGraphError, match="3 sets for 2 models"):
        infer_many([g, g], [None, None, None])
    with pytest.raises(fe.FactorGraphError, match="non-empty"):
        infer_many([])
    with pytest.raises(fe.FactorGraphError, match="one of client, scheduler and n_jobs"):
        infer_many(g, n_jobs=2, scheduler="tcp://127.0.0.1:1")


# --------------------------------------------------------------------------- Dask
def test_local_cluster_threads_evidence_sets():
    needs_dask()
    g = grid()
    outcomes = list(map_inference(g, EVIDENCE, n_jobs=2, processes=False, progress=True,
                                  warn=False, **OPTIONS))
    assert sorted(o.index for o in outcomes) == list(range(len(EVIDENCE)))
    check_evidence_outcomes(sorted(outcomes, key=lambda o: o.index),
                            serial(g, EVIDENCE, OPTIONS))


def test_given_client_many_graphs_min_sum():
    distributed = needs_dask()
    graphs = [grid(seed=s) for s in range(4)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        outcomes = infer_many(graphs, {(0, 0): 1}, client=client, method="exact")
        assert client.status == "running"  # a client we were given stays open
    for o, g in zip(outcomes, graphs):
        assert_same(o.value, fe.min_sum(g, evidence={(0, 0): 1}, method="exact"))


def test_local_cluster_processes_cli(tmp_path, capsys, warm_kernels):
    # Real worker processes (spawned: they load the kernels from the on-disk cache).
    needs_dask()
    files = []
    for name, text in (("chain.uai", CHAIN), ("broken.uai", BROKEN), ("tri.uai", TRIANGLE)):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    status = cli.main(["mar", *files, "--json", "--jobs", "2"])
    out, err = capsys.readouterr()
    assert status == 2 and "1 of 3 models failed" in err
    lines = {json.loads(line)["model"]: json.loads(line) for line in out.splitlines()}
    assert set(lines) == set(files) and "error" in lines[files[1]]
    for path in (files[0], files[2]):
        assert cli.main(["mar", path, "--json"]) == 0
        single = json.loads(capsys.readouterr()[0])
        assert lines[path] == {"model": path, **{k: v for k, v in single.items()
                                                if k != "seconds"},
                               "seconds": lines[path]["seconds"]}


# --------------------------------------------------------------------------- CLI
def test_cli_several_models_serially(tmp_path, capsys):
    files = []
    for name, text in (("chain.uai", CHAIN), ("tri.uai", TRIANGLE)):
        (tmp_path / name).write_text(text)
        files.append(str(tmp_path / name))
    (tmp_path / "chain.uai.evid").write_text("1 1 2\n")
    status = cli.main(["pr", *files, "--json", "--evid", f"{files[0]}.evid",
                       "--evid", str(tmp_path / "none.evid")])
    out, err = capsys.readouterr()
    assert status == 2  # the second evidence file is missing: that model fails
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["model"] == files[0] and second["error"].startswith("FileNotFoundError")
    assert cli.main(["pr", files[0], "--json", "--evid", f"{files[0]}.evid"]) == 0
    single = json.loads(capsys.readouterr()[0])
    assert math.isclose(first["log10_Z"], single["log10_Z"], rel_tol=0, abs_tol=0)

    assert cli.main(["map", *files]) == 0
    out, _ = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == files
    assert all("energy" in line for line in out.splitlines())


@pytest.mark.parametrize("extra, message", [
    (["-o", "x.MAR"], "-o writes one model's answer"),
    (["--seed", "1"], "--seed draws the messages of one model"),
    (["--evid", "a.evid"], "--evid given 1 times for 2 models"),
    (["--jobs", "0"], "--jobs must be at least 1"),
])
def test_cli_several_models_bad_options(tmp_path, capsys, extra, message):
    (tmp_path / "a.uai").write_text(CHAIN)
    files = [str(tmp_path / "a.uai")] * 2
    assert cli.main(["mar", *files, *extra]) == 2
    assert message in capsys.readouterr()[1]


def test_cli_jobs_and_scheduler_exclusive(capsys):
    assert cli.main(["map", "a.uai", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "not allowed with argument" in capsys.readouterr()[1]
