"""The README's Python code blocks run, each on its own, and show what they claim.

Each ```python block runs alone in a fresh namespace and a temporary working directory
(a block may write files), so a block that leans on names from an earlier one fails. A
line that is an expression and whose comment starts with a Python literal, e.g.
``fe.predict(...)  # {0: 0, 1: 1}`` or ``best.energy, ...  # (0.0, {...}): the lowest
energy``, is evaluated and compared with that literal (floats to 1e-9, relatively).
The ```sh blocks are command synopses, not scripts, and are not run. A block that imports
torch is skipped when PyTorch (the ``torch`` extra) is not installed.
"""

import ast
import io
import math
import re
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks():
    """(first line number in the README, source) of every ```python block."""
    if not README.is_file():
        return []
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks()


def literal_prefix(comment):
    """The Python literal that a comment starts with, or None: the longest prefix that
    parses as one and ends at the comment's end or before ``:``, ``;``, ``,`` or a space."""
    for i in range(len(comment), 0, -1):
        if i == len(comment) or comment[i] in ":;, ":
            try:
                return (ast.literal_eval(comment[:i].strip()),)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
    return None


def comments_by_line(source):
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string[1:].strip()
    return found


def same(actual, expected):
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, (list, tuple)):
        return (type(actual) is type(expected) and len(actual) == len(expected)
                and all(same(a, e) for a, e in zip(actual, expected)))
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and actual.keys() == expected.keys()
                and all(same(actual[k], expected[k]) for k in expected))
    return actual == expected


def run_block(source, first_line):
    """Run a block statement by statement; check expressions with a literal comment.
    Returns the number of checks made."""
    comments = comments_by_line(source)
    namespace = {"__name__": "__readme__"}
    checks = 0
    for statement in ast.parse(source).body:
        where = f"README.md:{first_line + statement.lineno - 1}"
        claim = comments.get(statement.end_lineno)
        expected = literal_prefix(claim) if claim and isinstance(statement, ast.Expr) else None
        if expected is None:
            code = compile(ast.Module([statement], type_ignores=[]), where, "exec")
            exec(code, namespace)
            continue
        value = eval(compile(ast.Expression(statement.value), where, "eval"), namespace)
        assert same(value, expected[0]), f"{where}: got {value!r}, the README says {claim!r}"
        checks += 1
    return checks


def test_readme_has_python_blocks_with_checked_claims():
    if not BLOCKS:
        pytest.skip("README.md is not beside the tests")
    assert len(BLOCKS) >= 3
    claims = sum(
        literal_prefix(c) is not None for _, src in BLOCKS for c in comments_by_line(src).values()
    )
    assert claims >= 3


@pytest.mark.parametrize("first_line, source", BLOCKS, ids=[f"line{n}" for n, _ in BLOCKS])
def test_readme_block_runs_alone(first_line, source, tmp_path, monkeypatch):
    if "import torch" in source:  # the PyTorch bridge's block needs the torch extra
        pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra)")
    monkeypatch.chdir(tmp_path)
    run_block(source, first_line)


def test_literal_prefix():
    assert literal_prefix('(0.0, {"a": 0}): the lowest energy') == ((0.0, {"a": 0}),)
    assert literal_prefix("{0: 0, 1: 1}") == ({0: 0, 1: 1},)
    assert literal_prefix("[['D', 'N']]") == ([["D", "N"]],)
    assert literal_prefix("per variable: lowest energy with y_i = x") is None
    assert literal_prefix("+inf: forbidden configurations") is None
    assert literal_prefix("ln Z (natural log); soft.free_energy = -ln Z / beta") is None


def test_a_wrong_claim_fails():
    with pytest.raises(AssertionError, match="README.md:2: got 3"):
        run_block("x = 1\nx + 2  # 4\n", 1)
    assert run_block("x = 1\nx + 2  # 3: the sum\n", 1) == 1
