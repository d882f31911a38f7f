"""Attribute dicts -> sparse design matrices, for sequence labeling.

A sequence is a list of items (tokens; it may be empty); an item is a mapping from attribute
names to values, as in sklearn-crfsuite and python-crfsuite:

- ``{"w[0]": "dog"}``: a string value makes the attribute ``"w[0]=dog"`` with weight 1;
- ``{"__BOS__": 1.0}``, ``{"length": 3}``: a number is the weight of the attribute (float64,
  finite); ``True`` is 1, ``False`` and 0 leave the attribute out;
- a list, tuple or set of strings, ``["w[0]=dog", "__BOS__"]``: each has weight 1.

Nested values are flattened as python-crfsuite's ``ItemSequence`` flattens them (checked
against python-crfsuite 0.9.12 by the tests): a dict value prefixes its keys with the key and
``:``, at any depth (``{"p": {"w": 2.0}}`` is ``"p:w"`` with weight 2); a list, tuple or set
value of strings gives one attribute per member, prefixed the same way (``{"p": ["a",
"b"]}`` is ``"p:a"`` and ``"p:b"``, weight 1). Bytes names and values are read as UTF-8
text (sklearn-crfsuite's own test fixture uses ``b"v"``). One difference is kept on purpose:
a string value is joined to its name with ``=`` (``{"p": {"w": "x"}}`` is ``"p:w=x"``), where
python-crfsuite writes ``:`` (``"p:w:x"``), so that the attribute names of saved models stay
valid; both read the same features. An attribute repeated in one item adds up, as in
CRFsuite.

:class:`AttributeIndexer` turns a list of sequences into one CSR matrix of shape
``(n_tokens, n_attributes)`` (rows: the tokens of all sequences, concatenated in order) plus
the sequence lengths. Columns come from a vocabulary fitted on training data (attributes seen
in at least ``min_freq`` tokens; unknown attributes are ignored at prediction time), or from a
stable hash of the attribute name (``n_features=...``: CRC-32 of the UTF-8 name modulo
``n_features``; the same on every machine and Python run, unlike the salted built-in
``hash``). Duplicate attributes of one item add up.

:func:`crfsuite_chunking_attributes` produces exactly the attributes of CRFsuite's
``example/chunking.py`` (Okazaki 2010-2011, the CRF++ chunking template) for a CoNLL-2000
sentence.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import count, repeat
from typing import NamedTuple

import numpy as np
import scipy.sparse

from .. import _validation as V
from ..exceptions import FactorGraphError

__all__ = [
    "CHUNKING_TEMPLATES",
    "AttributeIndexer",
    "AttributeMatrix",
    "crfsuite_chunking_attributes",
    "stable_hash",
]


class AttributeMatrix(NamedTuple):
    """Sequences of attribute vectors, concatenated.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of shape (n_tokens, n_attributes), dtype=float64
        Row ``offsets[i] + t`` holds token t of sequence i. Canonical CSR (sorted column
        indices, no duplicates, int32 or int64 indices).
    lengths : ndarray of shape (n_sequences,), dtype=int64
        The number of tokens of each sequence (>= 0).
    """

    matrix: scipy.sparse.csr_matrix
    lengths: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """int64 (n_sequences + 1,): the first row of each sequence, then ``n_tokens``."""
        return np.concatenate(([0], np.cumsum(self.lengths))).astype(np.int64)


def stable_hash(name: str) -> int:
    """CRC-32 (zlib) of the UTF-8 encoding of ``name``: an int in [0, 2**32), the same on
    every platform and run (Python's built-in ``hash`` of a str is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def _locate(row_lengths: np.ndarray, lengths: np.ndarray, entry: int) -> tuple[int, int]:
    """(sequence, position) of flat entry ``entry``, given the entries per token and the
    tokens per sequence."""
    row = int(np.searchsorted(np.cumsum(row_lengths), entry, side="right"))
    seq = int(np.searchsorted(np.cumsum(lengths), row, side="right"))
    return seq, row - int(np.sum(lengths[:seq]))


def _flatten(X) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """All attribute entries of X, token by token.

    Returns
    -------
    names : list of str
        Attribute names, ``"key=value"`` for str values, nested keys joined by ``:``.
    weights : ndarray (n_entries,), float64
        Their weights (finite; zero weights kept).
    row_lengths : ndarray (n_tokens,), int64
        Entries per token.
    lengths : ndarray (n_sequences,), int64
        Tokens per sequence.

    Raises
    ------
    FactorGraphError
        Malformed sequences or items, names that are not str (or UTF-8 bytes), values that
        are not str, bytes, bool, finite numbers or containers of them; the message names
        the sequence and position.
    """
    X = _check_sequences(X)
    names: list = []
    values: list = []
    row_lengths: list = []
    for i, seq in enumerate(X):
        for t, item in enumerate(seq):
            if item.__class__ is dict or isinstance(item, Mapping):
                names.extend(item)
                values.extend(item.values())
                row_lengths.append(len(item))
            elif isinstance(item, (list, tuple, set, frozenset)):
                names.extend(sorted(item, key=str) if isinstance(item, (set, frozenset)) else item)
                values.extend([1.0] * len(item))
                row_lengths.append(len(item))
            else:
                raise FactorGraphError(
                    f"sequence {i}, position {t}: an item must be a dict of attributes or a "
                    f"list of attribute names, got {type(item).__name__}"
                )
    row_lengths = np.asarray(row_lengths, dtype=np.int64)
    lengths = np.fromiter((len(seq) for seq in X), dtype=np.int64, count=len(X))
    if set(map(type, values)) <= {float, int, bool} and set(map(type, names)) <= {str}:
        weights = np.fromiter(values, dtype=np.float64, count=len(values))
    else:  # str, bytes or nested values, or names that are not str: one slower pass
        names, weights, row_lengths = _expand(names, values, row_lengths, lengths)
    bad = ~np.isfinite(weights)
    if bad.any():
        j = int(np.argmax(bad))
        i, t = _locate(row_lengths, lengths, j)
        raise FactorGraphError(
            f"sequence {i}, position {t}: attribute {names[j]!r} has weight {weights[j]}; "
            "weights must be finite"
        )
    return names, weights, row_lengths, lengths


def _expand(names, values, row_lengths, lengths) -> tuple[list, np.ndarray, np.ndarray]:
    """``(names, weights, row_lengths)`` of entries whose values may be str, bytes, numbers
    or nested (see the module docstring)."""
    out_names: list = []
    out_weights: list = []
    out_rows: list = []
    rows = np.repeat(np.arange(len(row_lengths)), row_lengths).tolist()
    for j, (name, value) in enumerate(zip(names, values)):
        kind = value.__class__
        if name.__class__ is str and (kind is str or kind is float or kind is int):
            # flat entries skip the generator: indexing 212k CoNLL-2000 tokens with
            # sklearn-crfsuite-style str features took 3.6 s through it, 2.2 s so
            out_names.append(f"{name}={value}" if kind is str else name)
            out_weights.append(1.0 if kind is str else value)
            out_rows.append(rows[j])
            continue
        try:
            for leaf, weight in _leaves(_text(name, "attribute names"), value):
                out_names.append(leaf)
                out_weights.append(weight)
                out_rows.append(rows[j])
        except _BadValue as error:
            i, t = _locate(row_lengths, lengths, j)
            raise FactorGraphError(f"sequence {i}, position {t}: {error}") from None
    counts = np.bincount(np.asarray(out_rows, dtype=np.int64), minlength=len(row_lengths))
    return out_names, np.asarray(out_weights, dtype=np.float64), counts.astype(np.int64)


class _BadValue(Exception):
    """An attribute name or value that cannot be read (the caller adds the place)."""


def _text(value, what) -> str:
    """A str, or bytes decoded as UTF-8."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise _BadValue(f"{what} must be UTF-8 text, got {value!r} ({error})") from None
    raise _BadValue(f"{what} must be str, got {value!r}")


def _leaves(name: str, value):
    """``(attribute name, weight)`` of one entry, nested values flattened as python-crfsuite
    does."""
    if isinstance(value, (str, bytes, bytearray)):
        yield f"{name}={_text(value, 'attribute values')}", 1.0
    elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        yield name, float(value)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            yield from _leaves(f"{name}:{_text(key, 'attribute names')}", inner)
    elif isinstance(value, (list, tuple, set, frozenset)):
        members = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        for member in members:
            if not isinstance(member, (str, bytes, bytearray)):
                raise _BadValue(
                    f"attribute {name!r}: a list value holds attribute names (str), got "
                    f"{member!r}"
                )
            yield f"{name}:{_text(member, 'attribute names')}", 1.0
    else:
        raise _BadValue(
            f"attribute {name!r} has value {value!r}; expected a str (becomes 'key=value' "
            "with weight 1), a bool, a finite int or float weight, or a dict or list of them "
            "(flattened as python-crfsuite does)"
        )


def _check_sequences(X) -> list:
    """``list(X)`` after checking that X is a sequence of sequences of items."""
    if isinstance(X, (str, bytes, Mapping)) or not isinstance(X, (Sequence, np.ndarray)):
        raise FactorGraphError(
            f"X must be a list of sequences (lists of attribute dicts), got {type(X).__name__}"
        )
    X = list(X)
    for i, seq in enumerate(X):
        if isinstance(seq, (str, bytes, Mapping)) or not isinstance(seq, (Sequence, np.ndarray)):
            raise FactorGraphError(
                f"sequence {i} must be a list of items (attribute dicts), got "
                f"{type(seq).__name__}"
            )
    return X


class AttributeIndexer:
    """Map attribute dicts to columns of a sparse design matrix.

    Parameters
    ----------
    min_freq : int, default=1
        Keep only attributes that occur (with a nonzero weight) at least ``min_freq`` times
        in the training data (in as many tokens, unless an item repeats an attribute).
        CRFsuite's ``feature.minfreq = m`` drops attribute-label features seen at most m
        times; ``min_freq = m + 1`` is the attribute-level analogue. Ignored with hashing.
    n_features : int, optional
        Hash attributes into this many columns (``stable_hash(name) % n_features``, colliding
        attributes add up) instead of fitting a vocabulary.

    Attributes
    ----------
    vocabulary_ : dict str -> int or None
        Attribute name -> column, in order of first appearance in the training data (None
        when hashing).
    n_features_ : int
        The number of columns.

    Raises
    ------
    FactorGraphError
        ``min_freq`` not an integer >= 1, ``n_features`` not an integer >= 1.
    """

    def __init__(self, *, min_freq: int = 1, n_features: int | None = None):
        for name, value in (("min_freq", min_freq), ("n_features", n_features)):
            if value is None and name == "n_features":
                continue
            V.integer(value, f"the {name!r} parameter of AttributeIndexer", low=1)
        self.min_freq = int(min_freq)
        self.n_features = None if n_features is None else int(n_features)
        self.vocabulary_: dict | None = None
        self.n_features_: int | None = self.n_features

    @property
    def hashing(self) -> bool:
        """Whether columns come from :func:`stable_hash` rather than a vocabulary."""
        return self.n_features is not None

    @property
    def attributes_(self) -> list:
        """The attribute name of each column (vocabulary only)."""
        self._check_fitted()
        if self.hashing:
            raise FactorGraphError("a hashing AttributeIndexer has no list of attribute names")
        return list(self.vocabulary_)

    def fit(self, X) -> AttributeIndexer:
        """Fit the vocabulary on training sequences (with hashing, only check X).

        Parameters
        ----------
        X : list of sequences of items
            See the module docstring.

        Returns
        -------
        self

        Raises
        ------
        FactorGraphError
            Malformed sequences or items (naming the sequence and position), or no attribute
            left after ``min_freq`` (also when X holds no token).
        """
        self._fit_flat(*_flatten(X))
        return self

    def _fit_flat(self, names, weights, row_lengths, lengths):
        """Fit on flattened entries (see :func:`_flatten`); return the column of every entry
        (int64, -1 for dropped attributes), or None when hashing."""
        if self.hashing:
            self.n_features_ = self.n_features
            return None
        index = defaultdict(count().__next__)  # name -> first-appearance number, in C
        columns = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
        seen = np.bincount(columns, weights=weights != 0.0, minlength=len(index))
        keep = seen >= self.min_freq
        if not keep.any():
            raise FactorGraphError(
                f"no attribute occurs in at least min_freq={self.min_freq} tokens of the "
                "training data"
            )
        if keep.all():
            self.vocabulary_ = dict(index)
        else:
            kept = [name for name, k in zip(index, keep.tolist()) if k]
            self.vocabulary_ = dict(zip(kept, range(len(kept))))
            renumber = np.cumsum(keep) - 1
            renumber[~keep] = -1
            columns = renumber[columns]
        self.n_features_ = len(self.vocabulary_)
        return columns

    def transform(self, X) -> AttributeMatrix:
        """Turn sequences into one CSR matrix; attributes outside the vocabulary are ignored.

        Parameters
        ----------
        X : list of sequences of items

        Returns
        -------
        AttributeMatrix
            ``matrix`` (n_tokens, ``n_features_``) float64 CSR, ``lengths`` int64 (n_sequences,).

        Raises
        ------
        FactorGraphError
            Not fitted, or malformed sequences or items (naming the sequence and position).
        """
        self._check_fitted()
        return self._transform_flat(*_flatten(X))

    def _transform_flat(self, names, weights, row_lengths, lengths, columns=None):
        if columns is not None:
            pass
        elif self.hashing:
            columns = np.fromiter(
                (stable_hash(name) for name in names), dtype=np.int64, count=len(names)
            )
            columns %= self.n_features
        else:
            columns = np.fromiter(
                map(self.vocabulary_.get, names, repeat(-1)), dtype=np.int64, count=len(names)
            )
        rows = np.repeat(np.arange(len(row_lengths), dtype=np.int64), row_lengths)
        keep = (columns >= 0) & (weights != 0.0)
        matrix = scipy.sparse.csr_matrix(
            (weights[keep], (rows[keep], columns[keep])),
            shape=(len(row_lengths), self.n_features_),
        )
        matrix.sum_duplicates()
        matrix.sort_indices()
        return AttributeMatrix(matrix, lengths)

    def fit_transform(self, X) -> AttributeMatrix:
        """:meth:`fit` then :meth:`transform` on the same sequences (reading X once)."""
        flat = _flatten(X)
        return self._transform_flat(*flat, columns=self._fit_flat(*flat))

    def _check_fitted(self):
        if self.n_features_ is None:
            raise FactorGraphError("this AttributeIndexer is not fitted; call fit(X) first")

    # ----------------------------------------------------------------- state for files
    def get_state(self) -> dict:
        """The JSON-able state: ``{"min_freq", "n_features", "attributes"}`` (attributes in
        column order; None when hashing)."""
        self._check_fitted()
        return {
            "min_freq": self.min_freq,
            "n_features": self.n_features,
            "attributes": None if self.hashing else list(self.vocabulary_),
        }

    @classmethod
    def from_state(cls, state: Mapping) -> AttributeIndexer:
        """Rebuild a fitted indexer from :meth:`get_state`'s dict.

        Raises
        ------
        FactorGraphError
            A state without the expected keys or with neither attributes nor a hash size.
        """
        try:
            indexer = cls(min_freq=state["min_freq"], n_features=state["n_features"])
            attributes = state["attributes"]
        except (KeyError, TypeError) as error:
            raise FactorGraphError(f"bad AttributeIndexer state: missing {error}") from None
        if indexer.hashing:
            indexer.n_features_ = indexer.n_features
        else:
            if not isinstance(attributes, list) or not attributes:
                raise FactorGraphError("bad AttributeIndexer state: no attribute list")
            indexer.vocabulary_ = {name: j for j, name in enumerate(attributes)}
            if len(indexer.vocabulary_) != len(attributes):
                raise FactorGraphError("bad AttributeIndexer state: repeated attribute names")
            indexer.n_features_ = len(attributes)
        return indexer


# --------------------------------------------------------------------------- CRFsuite chunking
#: The 19 attribute templates of CRFsuite's ``example/chunking.py`` (the CRF++ chunking
#: template): tuples of (field, offset); field "w" is the token, "pos" its POS tag.
CHUNKING_TEMPLATES = (
    (("w", -2),),
    (("w", -1),),
    (("w", 0),),
    (("w", 1),),
    (("w", 2),),
    (("w", -1), ("w", 0)),
    (("w", 0), ("w", 1)),
    (("pos", -2),),
    (("pos", -1),),
    (("pos", 0),),
    (("pos", 1),),
    (("pos", 2),),
    (("pos", -2), ("pos", -1)),
    (("pos", -1), ("pos", 0)),
    (("pos", 0), ("pos", 1)),
    (("pos", 1), ("pos", 2)),
    (("pos", -2), ("pos", -1), ("pos", 0)),
    (("pos", -1), ("pos", 0), ("pos", 1)),
    (("pos", 0), ("pos", 1), ("pos", 2)),
)
_TEMPLATE_NAMES = tuple(
    "|".join(f"{f}[{o}]" for f, o in template) for template in CHUNKING_TEMPLATES
)


def crfsuite_chunking_attributes(sentence) -> list[dict]:
    """The attributes of CRFsuite's ``example/chunking.py`` for one sentence.

    For every token t and template ``((field_1, o_1), ...)`` the attribute
    ``"field_1[o_1]|field_2[o_2]=v_1|v_2"`` (e.g. ``"pos[-1]|pos[0]=DT|NN"``), skipped when
    some ``t + o_k`` falls outside the sentence (no padding), in template order; then
    ``"__BOS__"`` on the first token and ``"__EOS__"`` on the last. Every ':' is written
    ``"__COLON__"``, as CRFsuite's ``crfutils.escape`` does. All weights are 1.

    Parameters
    ----------
    sentence : ConllSentence or object with ``words`` and ``pos``
        Equally long sequences of str (see
        :func:`~factorgraph_ebm.sequence.datasets.read_conll2000`).

    Returns
    -------
    list of dict str -> float
        One dict per token, ``{attribute: 1.0}`` in CRFsuite's order; python-crfsuite and
        :class:`AttributeIndexer` read it as is.

    Raises
    ------
    FactorGraphError
        ``words`` and ``pos`` of different lengths.
    """
    words, pos = list(sentence.words), list(sentence.pos)
    if len(words) != len(pos):
        raise FactorGraphError(
            f"a sentence needs one POS tag per word: {len(words)} words, {len(pos)} tags"
        )
    n = len(words)
    fields = {"w": [w.replace(":", "__COLON__") for w in words],
              "pos": [p.replace(":", "__COLON__") for p in pos]}
    columns = []  # per template: the attribute of every token, None where skipped
    for template, name in zip(CHUNKING_TEMPLATES, _TEMPLATE_NAMES):
        low = max(0, -min(o for _, o in template))
        high = min(n, n - max(o for _, o in template))
        parts = [fields[f][low + o : high + o] for f, o in template]
        column = [None] * n
        column[low:high] = [f"{name}={'|'.join(v)}" for v in zip(*parts)]
        columns.append(column)
    items = [dict.fromkeys([a for a in row if a is not None], 1.0) for row in zip(*columns)]
    if n:
        items[0]["__BOS__"] = 1.0
        items[-1]["__EOS__"] = 1.0
    return items
