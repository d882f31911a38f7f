"""Text machinery shared by every reader and writer of :mod:`factorgraph_ebm.io`.

Reading: the error type :class:`ModelFileError` (``file:line: what was expected, what was
found``) and :class:`TokenReader`, which streams whitespace-separated tokens and long runs
of numbers with their line numbers, from plain or gzip-compressed text with any line
ending (``\n``, ``\r\n`` or ``\r``: Python's universal newlines). Writing:
:func:`open_for_writing` (gzip when the path ends in ``.gz``) and the number formatting
every writer uses (shortest round-trip ``repr``, so files read back exactly).
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import zlib
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import numpy as np

from ..exceptions import FactorGraphError

_TOKEN = re.compile(r"\S+", re.ASCII)
_SPACE = re.compile(r"\s", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_REAL = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf|infinity)", re.IGNORECASE
)
_NOT_PRINTABLE_ASCII = re.compile(r"[^\t-\r -~]")
_INT64_LIMITS = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)
_LONG_INTEGER = re.compile(r"[0-9]{19}")
_COUNT_CHUNK = 2**20


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
        The file, plain text or gzip-compressed (recognized by its first two bytes, whatever
        its name). Bytes that are not UTF-8 are read as U+FFFD and refused where a token is
        parsed.
    comment : str, optional
        Lines whose first non-blank characters are this string are comments, skipped.
    inline_comment : str, optional
        Text from this string to the end of its line is a comment, skipped (anywhere on a
        line).
    """

    def __init__(self, path, comment: str | None = None, inline_comment: str | None = None):
        self.path = os.fspath(path)
        self._gzip = is_gzip(self.path)
        if self._gzip:
            self._file = gzip.open(self.path, "rt", encoding="utf-8", errors="replace")
        else:
            self._file = open(self.path, encoding="utf-8", errors="replace")
        self._comment = comment
        self._inline_comment = inline_comment
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
            line = self._readline()
            if not line:
                self._pos = len(self._text)
                return False
            self.line += 1
            if self._inline_comment:
                cut = line.find(self._inline_comment)
                line = line if cut < 0 else line[:cut]
            if not (self._comment and line.lstrip().startswith(self._comment)):
                self._text = line
                match = _TOKEN.search(line)
        self._pos = match.start()
        return True

    def _readline(self) -> str:
        """The next line ('' at end of file); corrupt gzip data is a ModelFileError."""
        if not self._gzip:
            return self._file.readline()
        try:
            return self._file.readline()
        except (OSError, EOFError, zlib.error) as exc:
            raise self.error(f"expected gzip-compressed text, found corrupt or truncated "
                             f"gzip data ({exc})", self.line + 1) from None

    def line_is_done(self) -> bool:
        """Whether only whitespace (or a comment) is left on the current line."""
        return _TOKEN.search(self._text, self._pos) is None

    def next_token_on_line(self) -> str:
        """The next token of the current line (call only when :meth:`line_is_done` is
        False)."""
        return _TOKEN.search(self._text, self._pos).group()

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
            bounds = bounds_text(low, high)
            raise self.error(f"expected {expected} (an integer{bounds}), found {shown(token)}")
        return value

    def read_keyword(self, what: str, words: tuple[str, ...], ignore_case: bool = False) -> str:
        """The next token, which must be one of ``words``; ``what`` names it (``the header``)."""
        expected = f"{what} {' or '.join(words)}"
        token = self.next_token(expected)
        if (token.upper() if ignore_case else token) not in words:
            raise self.error(f"expected {expected}, found {shown(token)}")
        return token

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
    number of ``dtype`` (an int64 overflow included).

    :func:`numpy.fromstring` raises at a token it cannot parse on NumPy 2, but on NumPy 1.x
    it stops there with only a DeprecationWarning (``0.2 0x10 0.3`` read as [0.2, 0]): so
    the numbers read must also be as many as the tokens, whatever the NumPy version.
    """
    if _NOT_PRINTABLE_ASCII.search(segment):
        return None
    try:
        values = np.fromstring(segment, dtype=dtype, sep=" ")
    except (ValueError, DeprecationWarning):  # the warning, where warnings are errors
        return None
    if len(values) != _count_tokens(segment):
        return None
    if dtype is np.int64 and _LONG_INTEGER.search(segment) and (
        values.min() == _INT64_LIMITS[0] or values.max() == _INT64_LIMITS[1]
    ):
        return None  # fromstring saturates integers that overflow int64 (19+ digits)
    return values


def _count_tokens(segment: str) -> int:
    """Whitespace-separated tokens of ``segment``, printable ASCII (whitespace is then every
    byte <= 32). A long segment's token starts are counted vectorized, 2**20 characters at a
    time, so that a long line costs a few MiB more, not three copies of itself (measured on
    a 3.8 MB line: a tenth of the parse's time; ``str.split`` takes a quarter and builds
    every token as a string)."""
    if len(segment) <= _COUNT_CHUNK // 256:  # short: str.split is quicker than NumPy here
        return len(segment.split())
    count, before = 0, False  # whether the character before the chunk is in a token
    for start in range(0, len(segment), _COUNT_CHUNK):
        text = np.frombuffer(segment[start : start + _COUNT_CHUNK].encode("ascii"),
                             dtype=np.uint8) > 32
        count += int(text[0] and not before) + int(np.count_nonzero(text[1:] > text[:-1]))
        before = bool(text[-1])
    return count


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


def bounds_text(low: int | None, high: int | None) -> str:
    """`` in low..high``, `` >= low``, `` <= high`` or ``""``: integer bounds for a message."""
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" >= {low}"
    return "" if high is None else f" <= {high}"


def is_gzip(path) -> bool:
    """Whether the file at ``path`` starts with the gzip magic bytes (RFC 1952)."""
    with open(path, "rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


@contextmanager
def open_for_writing(target):
    """A text stream for ``target``: a path (opened, then closed; gzip-compressed when it
    ends in ``.gz``) or an open text file."""
    if hasattr(target, "write"):
        with nullcontext(target) as stream:
            yield stream
    elif os.fspath(target).lower().endswith(".gz"):
        with gzip.open(os.fspath(target), "wt", encoding="utf-8") as stream:
            yield stream
    else:
        with open(os.fspath(target), "w", encoding="utf-8") as stream:
            yield stream


def format_numbers(values) -> str:
    """Space-separated shortest round-trip representations."""
    return " ".join(map(repr, np.asarray(values).tolist()))


def format_counted(values, count: int | None = None) -> str:
    """``count`` (default: the number of ``values``), then :func:`format_numbers` of them."""
    return f"{len(values) if count is None else count} {format_numbers(values)}".rstrip()


def first_repeat(values: np.ndarray) -> int:
    """Index of the first entry equal to an earlier one, or -1 if all are distinct."""
    _, first = np.unique(values, return_index=True)
    if len(first) == len(values):
        return -1
    return int(np.setdiff1d(np.arange(len(values)), first)[0])
