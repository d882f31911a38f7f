"""examples/distributed_training.py in its --quick mode: CoNLL-2000 chunking trained serially
and on LocalClusters of 1 and 2 worker processes (skipped without the data or Dask)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from warmup import SUBPROCESS_TIMEOUT

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "distributed_training.py"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"


def test_distributed_training_quick(warm_kernels):
    pytest.importorskip("distributed", reason="dask.distributed is not installed: pip "
                        "install 'factorgraph-ebm[dask]'")
    if not (DATA / "train.txt").exists():
        pytest.skip(f"data missing: {DATA / 'train.txt'}")
    done = subprocess.run([sys.executable, str(EXAMPLE), "--quick"], capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| workers |")
    rows = json.loads(lines[-1])["rows"]
    assert [row["workers"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert set(row) == {"workers", "train_seconds", "token_accuracy",
                            "max_abs_weight_diff_vs_serial"}
        assert row["max_abs_weight_diff_vs_serial"] <= 1e-8
        assert row["train_seconds"] > 0
        # 200 sentences, 5 L-BFGS iterations: the same tagger every time, a fair one
        assert row["token_accuracy"] == rows[0]["token_accuracy"] > 0.8
