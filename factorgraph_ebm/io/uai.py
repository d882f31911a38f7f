"""Reading and writing the UAI inference-competition formats.

Formats of the UAI inference competitions (2008-2022; described at
http://www.hlt.utdallas.edu/~vgogate/uai14-competition/modelformat.html and, with comment
lines, http://www.hlt.utdallas.edu/~vgogate/uai16-evaluation/uaiformat.html):

- model ``.uai``: the preamble ``MARKOV`` or ``BAYES``, the number of variables ``n``, ``n``
  cardinalities, the number of factors ``m``, ``m`` scopes ``k v_1 .. v_k`` (0-based variable
  indices) and ``m`` tables ``size p_1 .. p_size`` of non-negative potentials in row-major
  order of the scope (the last scope variable changes fastest). A ``BAYES`` file lists one
  conditional probability table per variable with scope ``parents..., child``; as a factor
  graph it is the same product of potentials. Lines starting with ``c`` are comments
  (UAI 2016).
- evidence ``.evid``: ``N v_1 x_1 .. v_N x_N`` (2014 layout), or the older layout that starts
  with a number of samples ``S`` followed by ``S`` such blocks.
- answers: ``MAP`` then ``n x_0 .. x_{n-1}``; ``MAR`` then ``n`` and, per variable, its
  cardinality and probabilities; ``PR`` then ``log10 Z`` (base-10 logarithm).

Energies are ``E = -ln(potential)`` (natural log); a potential of 0 is a forbidden
configuration, energy ``+inf``. Variables of a graph read from a ``.uai`` file are named by
their integer index ``0 .. n-1``.

This module also holds what every text reader of :mod:`factorgraph_ebm.io` shares: the
error type :class:`ModelFileError`, the streaming :class:`TokenReader` and the assembly of a
:class:`~factorgraph_ebm.graph.FactorGraph` from the tables read.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import numpy as np

from ..exceptions import FactorGraphError
from ..graph import FactorGraph

_TOKEN = re.compile(r"\S+", re.ASCII)
_SPACE = re.compile(r"\s", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_REAL = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)", re.IGNORECASE
)
_NOT_PRINTABLE_ASCII = re.compile(r"[^\t-\r -~]")
_INT64_LIMITS = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
_LONG_INTEGER = re.compile(r"[0-9]{19}")


class ModelFileError(FactorGraphError):
    """A model, evidence or answer file that breaks its format.

    The message reads ``file:line: what was expected, what was found``.

    Attributes
    ----------
    path : str
        The file, as it was given to the reader.
    line : int
        1-based line number of the offending token (the last line at end of file).
    problem : str
        The message without the ``file:line:`` prefix.
    """

    def __init__(self, path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path, self.line, self.problem = str(path), int(line), problem

    def __reduce__(self):
        return type(self), (self.path, self.line, self.problem)


class Numbers(NamedTuple):
    """Numbers read by :meth:`TokenReader.read_numbers`, with where each came from.

    ``values[j]`` was read on line ``lines[i]`` for the last ``i`` with ``starts[i] <= j``.
    """

    values: np.ndarray
    starts: list
    lines: list

    def line_of(self, j: int) -> int:
        """The line of ``values[j]``."""
        return self.lines[bisect.bisect_right(self.starts, j) - 1]


class TokenReader:
    """Whitespace-separated tokens of a text file, streamed line by line with line numbers.

    Single tokens come from :meth:`next_token`; long runs of numbers from
    :meth:`read_numbers`, which parses windows of a line with :func:`numpy.fromstring`
    (no list of tokens is built, however long the line). Errors are :class:`ModelFileError`
    built by :meth:`error`. Use as a context manager.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Bytes that are not UTF-8 are read as U+FFFD and refused where a token is
        parsed.
    comment : str, optional
        Lines whose first non-blank characters are this string are comments, skipped.
    """

    def __init__(self, path, comment: str | None = None) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, encoding="utf-8", errors="replace")
        self._comment = comment
        self._text = ""
        self._pos = 0
        self.line = 0

    def __enter__(self) -> TokenReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()

    def error(self, problem: str, line: int | None = None) -> ModelFileError:
        """A :class:`ModelFileError` at ``line`` (default: the current line)."""
        return ModelFileError(self.path, max(1, self.line if line is None else line), problem)

    def _advance(self) -> bool:
        """Move to the start of the next token; False at end of file."""
        match = _TOKEN.search(self._text, self._pos)
        while match is None:
            line = self._file.readline()
            if not line:
                self._pos = len(self._text)
                return False
            self.line += 1
            if not (self._comment and line.lstrip().startswith(self._comment)):
                self._text = line
                match = _TOKEN.search(line)
        self._pos = match.start()
        return True

    def next_token(self, expected: str) -> str:
        """The next token; ``expected`` describes it for the end-of-file error."""
        if not self._advance():
            raise self.error(f"expected {expected}, found end of file")
        match = _TOKEN.match(self._text, self._pos)
        self._pos = match.end()
        return match.group()

    def read_int(self, expected: str, low: int | None = None, high: int | None = None) -> int:
        """The next token as an integer in ``low .. high`` (inclusive; None = unbounded)."""
        token = self.next_token(expected)
        value = int(token) if _INTEGER.fullmatch(token) else None
        if value is None or (low is not None and value < low) or (
            high is not None and value > high
        ):
            bounds = _bounds_text(low, high)
            raise self.error(f"expected {expected} (an integer{bounds}), found {shown(token)}")
        return value

    def expect_end(self, after: str) -> None:
        """Fail unless only whitespace (and comments) remain."""
        if self._advance():
            token = _TOKEN.match(self._text, self._pos).group()
            raise self.error(f"expected end of file after {after}, found {shown(token)}")

    def read_numbers(self, count: int | None, expected: str, dtype=np.float64) -> Numbers:
        """Read ``count`` numbers (all up to end of file if None) as one array.

        Parameters
        ----------
        count : int or None
        expected : str
            What the numbers are, for error messages.
        dtype : {numpy.float64, numpy.int64}

        Raises
        ------
        ModelFileError
            A token that is not a number of that type (an integer beyond int64 included),
            or end of file before ``count`` numbers.
        """
        chunks, starts, lines = [], [], []
        got = 0
        while count is None or got < count:
            if not self._advance():
                if count is None:
                    break
                plural = "s" if count > 1 else ""
                raise self.error(
                    f"expected {expected} ({count} number{plural}), found end of file "
                    f"after {got}"
                )
            need = None if count is None else count - got
            segment = self._text[self._pos : self._window_end(need)]
            values = _parse(segment, dtype)
            if need is not None and (values is None or len(values) > need):
                segment = segment[: _end_of_token(segment, need)]
                values = _parse(segment, dtype)
            if values is None:
                raise self._bad_token(segment, dtype, expected)
            chunks.append(values)
            starts.append(got)
            lines.append(self.line)
            got += len(values)
            self._pos += len(segment)
        if len(chunks) == 1:
            return Numbers(chunks[0], starts, lines)
        values = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
        return Numbers(values, starts, lines)

    def _window_end(self, need: int | None) -> int:
        """End of a window of the current line that holds about ``need`` tokens or more,
        cut at whitespace (so that parsing cost follows what is read, not the line)."""
        if need is None:
            return len(self._text)
        limit = self._pos + max(256, 32 * need)
        space = _SPACE.search(self._text, limit) if limit < len(self._text) else None
        return space.start() if space else len(self._text)

    def _bad_token(self, segment: str, dtype, expected: str) -> ModelFileError:
        """The error for the first token of ``segment`` that is not a number of ``dtype``."""
        pattern, kind = (_INTEGER, "an integer") if dtype is np.int64 else (_REAL, "a number")
        for match in _TOKEN.finditer(segment):
            token = match.group()
            if not pattern.fullmatch(token) or (
                dtype is np.int64 and not _INT64_LIMITS[0] < int(token) < _INT64_LIMITS[1]
            ):
                return self.error(f"expected {expected} ({kind}), found {shown(token)}")
        return self.error(f"expected {expected} ({kind} per token), found {shown(segment)}")


def _parse(segment: str, dtype) -> np.ndarray | None:
    """All numbers of ``segment`` (which starts with a token), or None if one is not a
    number of ``dtype`` (an int64 overflow included)."""
    if _NOT_PRINTABLE_ASCII.search(segment):
        return None
    try:
        values = np.fromstring(segment, dtype=dtype, sep=" ")
    except ValueError:
        return None
    if dtype is np.int64 and _LONG_INTEGER.search(segment) and (
        values.min() == _INT64_LIMITS[0] or values.max() == _INT64_LIMITS[1]
    ):
        return None  # fromstring saturates integers that overflow int64 (19+ digits)
    return values


def _end_of_token(segment: str, n: int) -> int:
    """Offset just after the ``n``-th token (n >= 1) of ``segment``, or its length if it has
    fewer tokens."""
    if n > len(segment):  # more tokens than it can hold (and beyond re's repeat limit)
        return len(segment)
    match = re.compile(rf"\s*\S+(?:\s+\S+){{{n - 1}}}", re.ASCII).match(segment)
    return match.end() if match else len(segment)


def shown(token: str, limit: int = 40) -> str:
    """``repr`` of a token for an error message, cut to ``limit`` characters."""
    return repr(token if len(token) <= limit else token[:limit] + "...")


def _bounds_text(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" >= {low}"
    return "" if high is None else f" <= {high}"


@contextmanager
def open_for_writing(target):
    """A text stream for ``target``: a path (opened, then closed) or an open text file."""
    if hasattr(target, "write"):
        with nullcontext(target) as stream:
            yield stream
    else:
        with open(os.fspath(target), "w", encoding="utf-8") as stream:
            yield stream


# --------------------------------------------------------------------------- potentials
def first_bad_potential(values: np.ndarray) -> int:
    """Index of the first NaN, negative or infinite potential in ``values``, or -1."""
    if not values.size or (values.min() >= 0 and values.max() < np.inf):
        return -1
    return int(np.flatnonzero(~((values >= 0) & (values < np.inf)))[0])


def to_energies(potentials: np.ndarray) -> np.ndarray:
    """Energies ``-ln(potentials)`` (natural log), float64; ``+inf`` where a potential is 0."""
    with np.errstate(divide="ignore"):
        return -np.log(potentials)


def potentials_of(graph: FactorGraph) -> np.ndarray:
    """``exp(-E)`` of every energy-table entry of ``graph`` (flat, compiled layout).

    Raises
    ------
    FactorGraphError
        If a finite energy has no float64 potential (``exp(-E)`` overflows, or underflows
        to 0, which would read back as a forbidden configuration).
    """
    energies = graph.compile().energies
    with np.errstate(over="ignore", under="ignore"):
        potentials = np.exp(-energies)
    bad = np.flatnonzero(np.isfinite(energies) & ((potentials == 0) | np.isinf(potentials)))
    if bad.size:
        entry = int(bad[0])
        factor = graph.compile().factor_of_entry(entry)
        raise FactorGraphError(
            f"factor {factor}: energy {energies[entry]} cannot be written as a potential "
            "exp(-energy) in float64 (finite energies must lie in about [-709, 745])"
        )
    return potentials


def format_numbers(values) -> str:
    """Space-separated shortest round-trip representations."""
    return " ".join(map(repr, np.asarray(values).tolist()))


def build_graph(names, cards: np.ndarray, scopes: Sequence[np.ndarray], tables) -> FactorGraph:
    """A :class:`FactorGraph` of variables ``names`` and factors in file order.

    Parameters
    ----------
    names : sequence of hashable, length n
    cards : ndarray of shape (n,), dtype=int64
    scopes : sequence of m int64 arrays of variable indices (validated)
    tables : sequence of m float64 arrays of potentials (validated), C order in scope order,
        flat or shaped; energies are ``-ln`` of them.

    Consecutive factors with one table shape go in as one block.
    """
    graph = FactorGraph()
    graph.add_variables(names, cards)
    shapes = [tuple(cards[scope].tolist()) for scope in scopes]
    start = 0
    for stop in range(1, len(scopes) + 1):
        if stop == len(scopes) or shapes[stop] != shapes[start]:
            shape = shapes[start]
            graph.add_factors(
                np.array(scopes[start:stop], dtype=np.int64).reshape(stop - start, len(shape)),
                to_energies(np.array(tables[start:stop], dtype=np.float64)).reshape(
                    stop - start, *shape
                ),
                by_index=True,
            )
            start = stop
    return graph


# --------------------------------------------------------------------------- models
def read_uai(path) -> FactorGraph:
    """Read a ``.uai`` model (``MARKOV`` or ``BAYES``).

    Parameters
    ----------
    path : str or os.PathLike
        Whitespace between tokens is free (line breaks included); lines starting with ``c``
        are comments.

    Returns
    -------
    FactorGraph
        Variables named ``0 .. n-1`` (int) with the file's cardinalities; factor ``i`` is the
        file's factor ``i`` with energies ``-ln(potential)`` (``+inf`` for a potential of 0),
        float64 in C order of the file's scope order.

    Raises
    ------
    ModelFileError
        ``file:line: ...`` for a wrong preamble, a non-integer or out-of-range count, index
        or cardinality, a scope naming an unknown variable or one variable twice, a table
        whose size disagrees with its scope, a NaN, infinite or negative potential, a
        truncated file or data after the last table.
    OSError
        If the file cannot be read.
    """
    with TokenReader(path, comment="c") as reader:
        preamble = reader.next_token("the preamble MARKOV or BAYES")
        if preamble.upper() not in ("MARKOV", "BAYES"):
            raise reader.error(f"expected the preamble MARKOV or BAYES, found {shown(preamble)}")
        n = reader.read_int("the number of variables", low=0)
        cards = reader.read_numbers(n, f"the cardinalities of the {n} variables", np.int64)
        small = np.flatnonzero(cards.values < 1)
        if small.size:
            j = int(small[0])
            raise reader.error(
                f"expected the cardinality of variable {j} (an integer >= 1), found "
                f"{cards.values[j]}",
                cards.line_of(j),
            )
        cards = cards.values
        m = reader.read_int("the number of factors", low=0)
        scopes = [_read_scope(reader, a, n) for a in range(m)]
        tables = [_read_table(reader, a, cards[scope]) for a, scope in enumerate(scopes)]
        reader.expect_end(f"the {m} tables")
    return build_graph(range(n), cards, scopes, tables)


def _read_scope(reader: TokenReader, factor: int, n: int) -> np.ndarray:
    k = reader.read_int(f"the number of variables in the scope of factor {factor}", low=0)
    scope = reader.read_numbers(k, f"the variable indices of factor {factor}", np.int64)
    indices = scope.values.tolist()
    if indices and (min(indices) < 0 or max(indices) >= n):
        j = next(j for j, v in enumerate(indices) if not 0 <= v < n)
        raise reader.error(
            f"expected the variables of factor {factor} to be indices in 0..{n - 1}, "
            f"found {indices[j]}",
            scope.line_of(j),
        )
    check_distinct(reader, scope, f"factor {factor}")
    return scope.values


def check_distinct(reader: TokenReader, scope: Numbers, what: str) -> None:
    """Refuse a scope that lists a variable twice."""
    seen = set()
    for j, v in enumerate(scope.values.tolist()):
        if v in seen:
            raise reader.error(
                f"expected distinct variables in the scope of {what}, found {v} twice",
                scope.line_of(j),
            )
        seen.add(v)


def _read_table(reader: TokenReader, factor: int, shape: np.ndarray) -> np.ndarray:
    expected = math.prod(shape.tolist())
    size = reader.read_int(f"the table size of factor {factor}", low=0)
    if size != expected:
        dims = "x".join(map(str, shape.tolist())) or "no variables"
        raise reader.error(
            f"expected table size {expected} for factor {factor} (cardinalities {dims}), "
            f"found {size}"
        )
    numbers = reader.read_numbers(size, f"the table of factor {factor}")
    j = first_bad_potential(numbers.values)
    if j >= 0:
        raise reader.error(
            f"expected a potential (a finite number >= 0) at entry {j} of the table of factor "
            f"{factor}, found {numbers.values[j]}",
            numbers.line_of(j),
        )
    return numbers.values


def write_uai(target, graph: FactorGraph) -> None:
    """Write ``graph`` as a ``MARKOV`` ``.uai`` model.

    Variables are written by index (names are not stored; :func:`read_uai` names them
    ``0 .. n-1``); factors in graph order with their scope order; potentials
    ``exp(-energy)`` with 17 significant digits, so that reading the file back gives the
    same energies (exactly, for energies read from a file).

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    graph : FactorGraph

    Raises
    ------
    FactorGraphError
        If a finite energy has no float64 potential (below about -709 or above about 745).
    """
    cg = graph.compile()
    potentials = potentials_of(graph)
    with open_for_writing(target) as out:
        out.write(f"MARKOV\n{cg.n_variables}\n{format_numbers(cg.n_states)}\n{cg.n_factors}\n")
        for a in range(cg.n_factors):
            scope = cg.scope_vars[cg.scope_ptr[a] : cg.scope_ptr[a + 1]]
            out.write(f"{len(scope)} {format_numbers(scope)}".rstrip() + "\n")
        for a in range(cg.n_factors):
            table = potentials[cg.table_offset[a] : cg.table_offset[a + 1]]
            out.write(f"\n{len(table)}\n{format_numbers(table)}\n")


# --------------------------------------------------------------------------- evidence
def read_evidence(path, graph: FactorGraph | None = None) -> dict[int, int]:
    """Read a ``.evid`` file holding one evidence sample.

    Parameters
    ----------
    path : str or os.PathLike
        ``N v_1 x_1 .. v_N x_N`` (UAI 2014), or the older layout ``1 N v_1 x_1 ..`` with a
        sample count of 1 (see :func:`read_evidence_samples` for how they are told apart).
    graph : FactorGraph, optional
        The model (read with :func:`read_uai`): variables and states are checked against it.

    Returns
    -------
    dict of int to int
        Observed state of each observed variable, by variable index; ``{}`` for ``0``.

    Raises
    ------
    ModelFileError
        A malformed or truncated file, a count that disagrees with the pairs that follow, a
        variable observed twice, an index or state out of range, or several samples (read
        those with :func:`read_evidence_samples`).
    """
    samples = read_evidence_samples(path, graph)
    if len(samples) != 1:
        raise ModelFileError(
            path, 1, f"expected one evidence sample, found {len(samples)} (older multi-sample "
            "layout); use read_evidence_samples"
        )
    return samples[0]


def read_evidence_samples(path, graph: FactorGraph | None = None) -> list[dict[int, int]]:
    """Read every evidence sample of a ``.evid`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The 2014 layout ``N v_1 x_1 .. v_N x_N`` (one sample) when the number of integers
        is ``1 + 2N``; otherwise the older layout: ``S``, then ``S`` blocks ``N v_1 x_1 ..``.
    graph : FactorGraph, optional
        As in :func:`read_evidence`.

    Returns
    -------
    list of dict of int to int
        One ``{variable index: state}`` per sample.

    Raises
    ------
    ModelFileError
        As :func:`read_evidence` (except for the number of samples).
    """
    with TokenReader(path) as reader:
        numbers = reader.read_numbers(None, "evidence integers", np.int64)
        ints = numbers.values
        if len(ints) == 0 or ints[0] < 0:
            found = "end of file" if len(ints) == 0 else str(ints[0])
            raise reader.error(
                f"expected the number of observed variables (an integer >= 0), found {found}",
                numbers.line_of(0) if len(ints) else None,
            )
        spans = _sample_spans(ints.tolist())
        if spans is None:
            raise reader.error(
                f"expected {ints[0]} observed variables, then {2 * ints[0]} integers "
                f"'variable state' (or the older layout: a number of samples, then each "
                f"sample's count and pairs), found {len(ints) - 1} integers after the count",
                numbers.line_of(0),
            )
        return [_evidence_block(reader, numbers, start, stop, graph) for start, stop in spans]


def _sample_spans(ints: list[int]) -> list[tuple[int, int]] | None:
    """``(start, stop)`` of each sample's block ``N v_1 x_1 ..`` in ``ints``, or None if
    neither layout fits (``ints[0] >= 0``)."""
    if len(ints) == 1 + 2 * ints[0]:
        return [(0, len(ints))]
    spans, at = [], 1
    for _ in range(ints[0]):
        if at >= len(ints) or ints[at] < 0 or at + 1 + 2 * ints[at] > len(ints):
            return None
        spans.append((at, at + 1 + 2 * ints[at]))
        at = spans[-1][1]
    return spans if at == len(ints) else None


def _evidence_block(reader, numbers: Numbers, start: int, stop: int, graph) -> dict[int, int]:
    """Check one sample ``N v_1 x_1 ..`` at ``numbers.values[start:stop]``."""
    pairs = numbers.values[start + 1 : stop]
    variables, states = pairs[0::2], pairs[1::2]
    n = None if graph is None else graph.n_variables
    for j, (var, state) in enumerate(zip(variables.tolist(), states.tolist(), strict=True)):
        if var < 0 or (n is not None and var >= n):
            valid = "a variable index >= 0" if n is None else f"a variable index in 0..{n - 1}"
            raise reader.error(
                f"expected {valid} in evidence pair {j}, found {var}",
                numbers.line_of(start + 1 + 2 * j),
            )
        high = None if graph is None else int(graph.n_states[var]) - 1
        if state < 0 or (high is not None and state > high):
            states_text = "a state >= 0" if high is None else f"a state in 0..{high}"
            raise reader.error(
                f"expected {states_text} for observed variable {var}, found {state}",
                numbers.line_of(start + 2 + 2 * j),
            )
    _, first = np.unique(variables, return_index=True)
    if len(first) < len(variables):
        j = int(np.setdiff1d(np.arange(len(variables)), first)[0])
        raise reader.error(
            f"expected each variable observed once, found variable {variables[j]} again",
            numbers.line_of(start + 1 + 2 * j),
        )
    return dict(zip(variables.tolist(), states.tolist(), strict=True))


def write_evidence(target, evidence: Mapping, graph: FactorGraph | None = None) -> None:
    """Write one evidence sample in the UAI 2014 layout ``N v_1 x_1 .. v_N x_N``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    evidence : mapping of variable to int state
        Keys are variable indices, or names of ``graph`` when it is given.
    graph : FactorGraph, optional
        Maps names to indices (and checks them).

    Raises
    ------
    FactorGraphError
        An unknown variable name (with ``graph``), or a key that is not an index >= 0
        (without).
    """
    items = [(_evidence_index(name, graph), int(state)) for name, state in evidence.items()]
    flat = [value for pair in items for value in pair]
    with open_for_writing(target) as out:
        out.write(f"{len(items)} {format_numbers(flat)}".rstrip() + "\n")


def _evidence_index(name, graph: FactorGraph | None) -> int:
    if graph is not None:
        return graph.index_of(name)
    if isinstance(name, bool) or not isinstance(name, (int, np.integer)) or name < 0:
        raise FactorGraphError(
            f"evidence variable {name!r}: without a graph, keys must be variable indices >= 0"
        )
    return int(name)


# --------------------------------------------------------------------------- answers
def read_map(path, graph: FactorGraph | None = None) -> np.ndarray:
    """Read a MAP answer: the line ``MAP`` (or ``MPE``), then ``n x_0 .. x_{n-1}``.

    Parameters
    ----------
    path : str or os.PathLike
    graph : FactorGraph, optional
        Checks the number of variables and every state.

    Returns
    -------
    ndarray of shape (n,), dtype=int64
        The state of every variable, by index.

    Raises
    ------
    ModelFileError
        Wrong header, truncated or extra data, a state out of range.
    """
    with TokenReader(path) as reader:
        _expect_header(reader, ("MAP", "MPE"))
        n = _read_count(reader, graph)
        states = reader.read_numbers(n, f"the states of the {n} variables", np.int64)
        too_high = False if graph is None else states.values >= graph.n_states
        bad = np.flatnonzero((states.values < 0) | too_high)
        if bad.size:
            j = int(bad[0])
            limit = "" if graph is None else f"..{graph.n_states[j] - 1}"
            raise reader.error(
                f"expected the state of variable {j} (an integer in 0{limit}), found "
                f"{states.values[j]}",
                states.line_of(j),
            )
        reader.expect_end(f"the {n} states")
    return states.values


def write_map(target, assignment) -> None:
    """Write a MAP answer: ``MAP``, then ``n x_0 .. x_{n-1}``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    assignment : array_like of int, shape (n,)
        State of every variable, by index (evidence included).
    """
    states = np.asarray(assignment, dtype=np.int64)
    with open_for_writing(target) as out:
        out.write(f"MAP\n{len(states)} {format_numbers(states)}".rstrip() + "\n")


def read_mar(path, graph: FactorGraph | None = None) -> list[np.ndarray]:
    """Read a MAR answer: ``MAR``, then ``n`` and per variable ``k p_0 .. p_{k-1}``.

    Parameters
    ----------
    path : str or os.PathLike
    graph : FactorGraph, optional
        Checks the number of variables and every cardinality.

    Returns
    -------
    list of n ndarrays of shape (k_i,), dtype=float64
        Marginal probabilities of every variable, by index.

    Raises
    ------
    ModelFileError
        Wrong header, truncated or extra data, a cardinality that disagrees with ``graph``,
        a probability outside [0, 1] or NaN.
    """
    with TokenReader(path) as reader:
        _expect_header(reader, ("MAR",))
        n = _read_count(reader, graph)
        marginals = []
        for i in range(n):
            expected = None if graph is None else int(graph.n_states[i])
            k = reader.read_int(
                f"the cardinality of variable {i}", low=expected or 1, high=expected
            )
            numbers = reader.read_numbers(k, f"the {k} probabilities of variable {i}")
            bad = np.flatnonzero(~((numbers.values >= 0) & (numbers.values <= 1)))
            if bad.size:
                j = int(bad[0])
                raise reader.error(
                    f"expected probabilities in [0, 1] for variable {i}, found "
                    f"{numbers.values[j]}",
                    numbers.line_of(j),
                )
            marginals.append(numbers.values)
        reader.expect_end(f"the marginals of {n} variables")
    return marginals


def write_mar(target, marginals: Sequence) -> None:
    """Write a MAR answer: ``MAR``, then ``n`` and per variable ``k p_0 .. p_{k-1}``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    marginals : sequence of n array_like of shape (k_i,), float64
        Probabilities of every variable, by index.
    """
    parts = [str(len(marginals))]
    for probabilities in marginals:
        parts.append(f"{len(probabilities)} {format_numbers(np.asarray(probabilities, float))}")
    with open_for_writing(target) as out:
        out.write("MAR\n" + " ".join(parts) + "\n")


def read_pr(path) -> float:
    """Read a PR answer: the line ``PR``, then ``log10 Z``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    float
        log10 Z, the base-10 logarithm of the partition function (of the model conditioned
        on its evidence); ``-inf`` when Z = 0. ln Z = log10 Z * ln(10).

    Raises
    ------
    ModelFileError
        Wrong header, a value that is not a number, NaN or ``+inf``, extra data.
    """
    with TokenReader(path) as reader:
        _expect_header(reader, ("PR",))
        numbers = reader.read_numbers(1, "log10 Z")
        value = float(numbers.values[0])
        if np.isnan(value) or value == np.inf:
            raise reader.error(f"expected log10 Z (a number or -inf), found {value!r}")
        reader.expect_end("log10 Z")
    return value


def write_pr(target, log10_z: float) -> None:
    """Write a PR answer: ``PR``, then ``log10 Z`` (base 10; ``-inf`` if Z = 0).

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    log10_z : float
        ``ln Z / ln(10)``.
    """
    with open_for_writing(target) as out:
        out.write(f"PR\n{float(log10_z)!r}\n")


def _expect_header(reader: TokenReader, headers: tuple[str, ...]) -> None:
    token = reader.next_token(f"the header {' or '.join(headers)}")
    if token not in headers:
        raise reader.error(f"expected the header {' or '.join(headers)}, found {shown(token)}")


def _read_count(reader: TokenReader, graph: FactorGraph | None) -> int:
    n = reader.read_int("the number of variables", low=0)
    if graph is not None and n != graph.n_variables:
        raise reader.error(
            f"expected {graph.n_variables} variables (those of the model), found {n}"
        )
    return n
