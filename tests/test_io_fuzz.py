"""Fuzzing the readers with mutated real files.

Every mutated file must either load or raise a ``FactorGraphError`` whose message starts with
``file:line:``. Any other exception, or a read that hangs (over SECONDS_PER_READ), fails the
test and names the case (seed, file, mutations) so that it can be replayed.
"""

import random
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from factorgraph_ebm import FactorGraphError
from factorgraph_ebm.io import (
    read_evidence_samples,
    read_map,
    read_mar,
    read_model,
    read_pr,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SEEDS = [
    ROOT / "examples" / "models" / name
    for name in ("pdb1akg.uai", "pdb1akg.uai.MAP", "pdb1akg.uai.PR")
] + [
    path
    for path in [
        *(SHARED / "uai" / name for name in (
            "grid4x4.uai", "bn_cancer.uai", "bn_asia.uai", "bn_child.uai", "BN_0.uai.evid",
            "Pedigree_11.uai.evid", "grid4x4.uai.MAR", "bn_asia.uai.MAP", "CSP_12.uai.PR",
        )),
        *(SHARED / "libdai_fg" / name for name in (
            "testfast.fg", "hoi1.fg", "hoi4.fg", "twofactors.fg", "zeroes1.fg",
            "maxprodbug.fg", "jtreemapbug.fg",
        )),
    ]
    if path.exists()
]
N_MUTATIONS = 3000
#: A hang detector, not a benchmark: the slowest of the 3000 reads took 0.35 s at load 5.7
#: on 2 cores; this bound leaves room for one slow, loaded core.
SECONDS_PER_READ = 60

NUMBERS = [b"-1", b"0", b"1", b"2", b"3", b"17", b"2.5", b"-0.5", b"1e300", b"1e-320",
           b"nan", b"inf", b"-inf", b"99999999999999999999", b"0x10", b"1e", b"00007"]
GARBAGE = [b"abc", b"#", b"# comment\n", b"\x00", b"\xff\xfe", b"\n", b"\t", b"\r", b"-",
           b"MARKOV", b"MAP", b"1 2 3", b"9" * 5000, b"\xc3\xa9", b"1,5", b"+", b"."]


def read(path: Path):
    """The reader for a file, by its name."""
    name = path.name
    if name.endswith((".uai", ".fg")):
        return read_model(path)
    if name.endswith(".evid"):
        return read_evidence_samples(path)
    return {"MAP": read_map, "MAR": read_mar, "PR": read_pr}[name.rsplit(".", 1)[1]](path)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """One to three random edits of ``data``; also returns what was done."""
    done = []
    for _ in range(rng.randint(1, 3)):
        tokens = list(re.finditer(rb"\S+", data))
        kind = rng.choice(["truncate", "delete", "duplicate", "flip", "garbage", "swap"])
        if kind == "truncate" or not tokens:
            cut = rng.randrange(len(data) + 1)
            data, what = data[:cut], f"truncate at {cut}"
        else:
            t = rng.choice(tokens)
            if kind == "delete":
                data, what = data[: t.start()] + data[t.end():], f"delete {t.group()!r}"
            elif kind == "duplicate":
                data, what = data[: t.end()] + b" " + t.group() + data[t.end():], \
                    f"duplicate {t.group()!r}"
            elif kind == "flip":
                new = rng.choice(NUMBERS)
                data, what = data[: t.start()] + new + data[t.end():], \
                    f"flip {t.group()!r} -> {new!r}"
            elif kind == "garbage":
                at, new = rng.randrange(len(data) + 1), rng.choice(GARBAGE)
                data, what = data[:at] + new + data[at:], f"insert {new[:20]!r} at {at}"
            else:
                u = rng.choice(tokens)
                (a, b) = sorted((t, u), key=lambda m: m.start())
                if a.start() == b.start():
                    continue
                data = (data[: a.start()] + b.group() + data[a.end(): b.start()] + a.group()
                        + data[b.end():])
                what = f"swap {a.group()!r} and {b.group()!r}"
        done.append(what)
    return data, done


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer (Unix)")
def test_mutated_files_load_or_fail_with_a_line_number(tmp_path):
    rng = random.Random(20240611)
    originals = {path: path.read_bytes() for path in SEEDS}
    outcomes = {"loaded": 0, "error": 0}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(N_MUTATIONS):
            seed = rng.choice(SEEDS)
            data, edits = mutate(originals[seed], rng)
            path = tmp_path / f"case{case}_{seed.name}"
            path.write_bytes(data)
            where = f"case {case} ({seed.name}: {'; '.join(edits)})"
            result = None
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_READ)
            started = time.perf_counter()
            try:
                result = read(path)
            except FactorGraphError as exc:
                outcomes["error"] += 1
                assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(exc)), \
                    f"{where}: message without file:line: {exc}"
            except _Timeout:
                pytest.fail(f"{where}: reading took over {SECONDS_PER_READ} s")
            except Exception as exc:  # noqa: BLE001 - the point of the test
                pytest.fail(f"{where}: {type(exc).__name__} escaped: {exc}")
            else:
                outcomes["loaded"] += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert time.perf_counter() - started < SECONDS_PER_READ, where
            # A model: usable, no NaN energies. Checked outside the time limit, since its
            # first compile() may JIT-compile a kernel (seconds on a cold cache).
            if hasattr(result, "compile"):
                assert not np.isnan(result.compile().energies).any(), where
            path.unlink()
    finally:
        signal.signal(signal.SIGALRM, previous)
    # both outcomes occur: the mutations are neither all harmless nor all fatal
    assert outcomes["loaded"] > 100 and outcomes["error"] > 1000, outcomes
