"""Every reader on the same content with other line endings (CRLF, CR) and gzip-compressed:
the same model, evidence and answers, and errors at the same lines."""

import gzip
import re

import numpy as np
import pytest

from factorgraph_ebm import FactorGraphError
from factorgraph_ebm.io import (
    ModelFileError,
    read_evidence,
    read_fg,
    read_map,
    read_mar,
    read_model,
    read_pr,
    read_uai,
    write_evidence,
    write_fg,
    write_uai,
)

UAI = """c a comment line
MARKOV
3
2 3 2
2
2 0 1 # a pyAgrum-style comment
1 2

6
0.1 0.2 0.3
0.4 0.5 0.6
2
0 1.5
"""
FG = "# a comment\n2\n\n2\n0 1\n2 3\n3\n0 0.5\n3 2\n5 1\n\n1\n2\n2\n1\n1 4\n"
READERS = {  # name: (content, reader, what is compared)
    "model.uai": (UAI, read_uai, lambda g: (g.variables, g.compile().energies.tolist())),
    "model.fg": (FG, read_fg, lambda g: (g.variables, g.compile().energies.tolist())),
    "x.evid": ("2\n0 1\n2 0\n", read_evidence, lambda e: e),
    "x.MAP": ("MAP\n3 1 0 2\n", read_map, lambda a: a.tolist()),
    "x.MAR": ("MAR\n2 2 0.25 0.75\n3 0.1 0.2 0.7\n", read_mar, lambda m: [x.tolist() for x in m]),
    "x.PR": ("PR\n-2.5\n", read_pr, lambda v: v),
}
ENDINGS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}


def encode(text: str, ending: str, compress: bool) -> bytes:
    data = text.replace("\n", ending).encode()
    return gzip.compress(data) if compress else data


@pytest.mark.parametrize("name", READERS, ids=str)
@pytest.mark.parametrize("ending", ENDINGS, ids=str)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_line_endings_and_gzip_read_the_same(name, ending, compress, tmp_path):
    """The same text gives the same result, exactly: the tokens are the same strings."""
    text, reader, seen = READERS[name]
    plain = tmp_path / name
    plain.write_bytes(text.encode())
    other = tmp_path / f"other-{name}{'.gz' if compress else ''}"
    other.write_bytes(encode(text, ENDINGS[ending], compress))
    assert seen(reader(other)) == seen(reader(plain))


@pytest.mark.parametrize("ending", ENDINGS, ids=str)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_errors_name_the_same_line(ending, compress, tmp_path):
    bad = UAI.replace("0.5 0.6", "0.5 x")  # line 11
    path = tmp_path / "bad.uai"
    path.write_bytes(encode(bad, ENDINGS[ending], compress))
    with pytest.raises(ModelFileError, match=r"bad\.uai:11: expected the table of factor 0 "
                                             r"\(a number\), found 'x'$"):
        read_uai(path)


def test_gzip_is_recognized_by_content_and_read_model_looks_through_gz(tmp_path):
    (tmp_path / "m.uai.gz").write_bytes(gzip.compress(UAI.encode()))
    (tmp_path / "no-suffix.uai").write_bytes(gzip.compress(UAI.encode()))
    (tmp_path / "m.fg.GZ").write_bytes(gzip.compress(FG.encode()))
    reference = read_uai(_plain(tmp_path, "m.uai", UAI)).compile().energies
    for name in ("m.uai.gz", "no-suffix.uai"):
        np.testing.assert_array_equal(read_model(tmp_path / name).compile().energies, reference)
    np.testing.assert_array_equal(read_model(tmp_path / "m.fg.GZ").compile().energies,
                                  read_fg(_plain(tmp_path, "m.fg", FG)).compile().energies)
    with pytest.raises(FactorGraphError, match=r"unknown model format '\.txt'; expected one of "
                                               r"\.uai, \.fg \(optionally followed by \.gz\)"):
        read_model(tmp_path / "m.txt.gz")


def test_writers_compress_when_the_path_ends_in_gz(tmp_path):
    graph = read_uai(_plain(tmp_path, "m.uai", UAI))
    write_uai(tmp_path / "copy.uai.gz", graph)
    write_fg(tmp_path / "copy.fg.gz", graph)
    write_evidence(tmp_path / "e.evid.gz", {0: 1, 2: 0})
    for name in ("copy.uai.gz", "copy.fg.gz", "e.evid.gz"):
        assert (tmp_path / name).read_bytes()[:2] == b"\x1f\x8b"
    assert read_evidence(tmp_path / "e.evid.gz", graph) == {0: 1, 2: 0}
    for name in ("copy.uai.gz", "copy.fg.gz"):
        again = read_model(tmp_path / name)
        np.testing.assert_array_equal(again.n_states, graph.n_states)
        assert again.n_factors == graph.n_factors


@pytest.mark.parametrize("cut", [12, 30], ids=lambda c: f"cut at {c}")
def test_corrupt_gzip_is_a_model_file_error(cut, tmp_path):
    data = gzip.compress(UAI.encode() * 50)
    path = tmp_path / "broken.uai.gz"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError, match=rf"^{re.escape(str(path))}:\d+: expected "
                                             "gzip-compressed text, found corrupt or truncated"):
        read_model(path)


def _plain(folder, name, text):
    path = folder / name
    path.write_text(text)
    return path
