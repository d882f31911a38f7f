"""Evaluation of sequence labelings: token accuracy and chunk scores.

:func:`chunk_scores` scores chunks (phrases, named entities) as the CoNLL shared tasks do
with their script ``conlleval`` (Erik Tjong Kim Sang, version 2004-01-26; CoNLL-2000
chunking, CoNLL-2002/2003 NER): a tag ``"B-NP"`` is split at its first ``-`` into a chunk
tag (``B``) and a type (``NP``); a tag without ``-`` (``"O"``, or untyped ``"B"``, ``"I"``)
has an empty type. Every chunk ends at the end of its sentence. A predicted chunk is correct
when it covers the same tokens as a true chunk and has its type. Precision, recall and F1
are fractions in [0, 1] here (conlleval prints percent).

Two modes read the chunks out of the tags:

- ``"conlleval"`` (default): conlleval's ``startOfChunk``/``endOfChunk`` rules, which accept
  IOB1, IOB2, IOE1, IOE2 and the bracket tags ``[``, ``]``, leniently: a chunk may start
  with ``I`` (after ``O`` or a type change) or end without ``E``. The script's rules miss
  two boundaries, fixed here: ``E`` followed by ``B`` (conlleval reads ``B E B E`` as one
  chunk) and the single-token chunk tag ``S`` of IOBES (``S S`` was one chunk). So a chunk
  ends after every ``E`` and ``S``, and ``B`` and ``S`` always start one; these are
  seqeval's default rules. On tags without ``S`` and without ``E`` followed by ``B`` (all
  IOB and IOE data) the counts are conlleval's, token for token.
- ``"strict"``: only well-formed chunks of the ``scheme`` count (as seqeval's
  ``mode="strict"``). IOB2: ``B-X`` followed by any ``I-X``; IOBES: ``S-X``, or ``B-X``, any
  ``I-X``, then ``E-X``. Tags that are not part of such a chunk (``I-X`` after ``O``, a
  ``B-X I-X`` run without its ``E-X``) are in no chunk, so a tagger is not credited for
  invalid sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..exceptions import FactorGraphError

__all__ = ["CHUNK_MODES", "CHUNK_SCHEMES", "ChunkScores", "chunk_scores", "chunks",
           "token_accuracy"]

#: The values of ``mode`` of :func:`chunk_scores` and :func:`chunks`.
CHUNK_MODES = ("conlleval", "strict")
#: Tagging schemes of ``mode="strict"``, each with the chunk tags it allows.
CHUNK_SCHEMES = {"IOB2": ("B", "I", "O"), "IOBES": ("B", "I", "E", "S", "O")}


def _check_pair(y_true, y_pred) -> tuple[list, list]:
    """Lists of the two label sequences (lists, tuples or NumPy arrays, also 2-D), after
    checking that they align."""
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if isinstance(y, (str, bytes)) or not isinstance(y, (Sequence, np.ndarray)):
            raise FactorGraphError(
                f"{name} must be a list of label sequences, got {type(y).__name__}"
            )
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise FactorGraphError(
            f"y_true has {len(y_true)} sequences, y_pred has {len(y_pred)}; they must match"
        )
    for i, (a, b) in enumerate(zip(y_true, y_pred)):
        if len(a) != len(b):
            raise FactorGraphError(
                f"sequence {i}: y_true has {len(a)} labels, y_pred has {len(b)}"
            )
    return y_true, y_pred


def token_accuracy(y_true, y_pred) -> float:
    """Fraction of tokens whose predicted label equals the true one (CRFsuite's "item
    accuracy").

    Parameters
    ----------
    y_true, y_pred : list of sequences of labels
        Aligned: the same number of sequences, each of the same length in both. NumPy
        arrays are accepted at either level (a 2-D array is a batch of equal-length
        sequences).

    Returns
    -------
    float
        In [0, 1]; 0.0 when there are no tokens.

    Raises
    ------
    FactorGraphError
        Sequences that do not align (naming the first sequence that differs in length).

    Examples
    --------
    >>> from factorgraph_ebm import token_accuracy
    >>> token_accuracy([["D", "N"], ["D", "N", "V"]], [["D", "N"], ["D", "V", "V"]])
    0.8
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    total = correct = 0
    for a, b in zip(y_true, y_pred):
        total += len(a)
        correct += sum(1 for u, v in zip(a, b) if u == v)
    return correct / total if total else 0.0


def _split(tag, i, t) -> tuple[str, str]:
    """``(chunk tag, type)`` of a tag, as conlleval's ``/^([^-]*)-(.*)$/``."""
    if not isinstance(tag, str):
        raise FactorGraphError(
            f"sequence {i}, position {t}: chunk tags must be str like 'B-NP', got {tag!r}"
        )
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash else (tag, "")


def _end_of_chunk(prev_tag, tag, prev_type, kind) -> bool:
    """conlleval's ``endOfChunk`` with exact ``E``/``S`` boundaries: a chunk ended between
    the previous and the current token."""
    return (
        (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or prev_tag in ("E", "S")  # conlleval: only before E, I or O
        or (prev_tag not in ("O", ".") and prev_type != kind)
        or prev_tag in ("]", "[")
    )


def _start_of_chunk(prev_tag, tag, prev_type, kind) -> bool:
    """conlleval's ``startOfChunk`` with exact ``E``/``S`` boundaries: a chunk started
    between the previous and the current token."""
    return (
        tag in ("B", "S")  # conlleval: B only after B, I or O
        or (prev_tag in ("O", "E", "S") and tag in ("I", "E"))
        or (tag not in ("O", ".") and prev_type != kind)
        or tag in ("[", "]")
    )


def _conlleval_chunks(tags, i) -> list[tuple[str, int, int]]:
    found = []
    prev_tag, prev_type, start = "O", "", None
    for t, tag in enumerate([*tags, "O"]):  # "O": the sentence break
        tag, kind = _split(tag, i, t)
        if start is not None and _end_of_chunk(prev_tag, tag, prev_type, kind):
            found.append((prev_type, start, t))
            start = None
        if t < len(tags) and _start_of_chunk(prev_tag, tag, prev_type, kind):
            if start is not None:  # a start without an end closes the open chunk
                found.append((prev_type, start, t))
            start = t
        prev_tag, prev_type = tag, kind
    return found


def _strict_chunks(tags, i, scheme) -> list[tuple[str, int, int]]:
    allowed = CHUNK_SCHEMES[scheme]
    split = [_split(tag, i, t) for t, tag in enumerate(tags)]
    for t, (tag, _) in enumerate(split):
        if tag not in allowed:
            raise FactorGraphError(
                f"sequence {i}, position {t}: {tags[t]!r} is not a tag of scheme "
                f"{scheme!r} (chunk tags {', '.join(allowed)})"
            )
    found = []
    t, n = 0, len(split)
    while t < n:
        tag, kind = split[t]
        if tag == "S":
            found.append((kind, t, t + 1))
        if tag != "B":
            t += 1
            continue
        end = t + 1
        while end < n and split[end] == ("I", kind):
            end += 1
        if scheme == "IOB2":
            found.append((kind, t, end))
        elif end < n and split[end] == ("E", kind):
            end += 1
            found.append((kind, t, end))
        t = end  # IOBES without its E: no chunk
    return found


def _chunk_reader(mode: str, scheme: str | None):
    """``read(tags, i)``: the chunks of sequence ``i`` in ``mode`` (options checked)."""
    if mode == "conlleval":
        if scheme is not None:
            raise FactorGraphError(
                f"scheme={scheme!r} is for mode='strict'; mode='conlleval' reads every scheme"
            )
        return _conlleval_chunks
    if mode == "strict":
        if scheme not in CHUNK_SCHEMES:
            raise FactorGraphError(
                f"mode='strict' needs scheme='IOB2' or 'IOBES', got {scheme!r}"
            )
        return lambda tags, i: _strict_chunks(tags, i, scheme)
    raise FactorGraphError(f"mode must be one of {CHUNK_MODES}, got {mode!r}")


def chunks(tags: Sequence[str], mode: str = "conlleval",
           scheme: str | None = None) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence.

    Parameters
    ----------
    tags : sequence of str
        Chunk tags of one sentence (``"B-NP"``, ``"I-NP"``, ``"O"``, ...).
    mode : {"conlleval", "strict"}, default="conlleval"
        How chunks are read (see :mod:`factorgraph_ebm.sequence.metrics`).
    scheme : {"IOB2", "IOBES"}, optional
        The tagging scheme; needed by ``mode="strict"`` only.

    Returns
    -------
    list of (type, start, end)
        In order; ``end`` is exclusive (the chunk covers ``tags[start:end]``).

    Raises
    ------
    FactorGraphError
        A tag that is not a str, bad ``mode`` or ``scheme``, or (strict) a tag outside
        the scheme.

    Examples
    --------
    >>> chunks(["B-NP", "E-NP", "B-NP", "E-NP"])
    [('NP', 0, 2), ('NP', 2, 4)]
    >>> chunks(["O", "I-NP", "B-VP"])
    [('NP', 1, 2), ('VP', 2, 3)]
    >>> chunks(["O", "I-NP", "B-VP"], mode="strict", scheme="IOB2")
    [('VP', 2, 3)]
    """
    return _chunk_reader(mode, scheme)(tags, 0)


class ChunkScores(NamedTuple):
    """Chunk-level scores.

    Attributes
    ----------
    precision, recall, f1 : float
        ``n_correct / n_pred``, ``n_correct / n_true`` and their harmonic mean, in [0, 1]
        (0.0 when undefined, as conlleval prints 0.00).
    n_correct, n_true, n_pred : int
        Correctly predicted chunks, true chunks, predicted chunks.
    by_type : dict str -> ChunkScores
        The same per chunk type (empty inside the per-type entries); like conlleval's table
        it leaves out the empty type of tags without ``-``.
    """

    precision: float
    recall: float
    f1: float
    n_correct: int
    n_true: int
    n_pred: int
    by_type: dict


def _scores(n_correct, n_true, n_pred, by_type) -> ChunkScores:
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return ChunkScores(precision, recall, f1, n_correct, n_true, n_pred, by_type)


def chunk_scores(y_true, y_pred, mode: str = "conlleval",
                 scheme: str | None = None) -> ChunkScores:
    """Chunk precision, recall and F1, as conlleval computes them or strictly.

    Each sequence is a sentence; a chunk is correct when the true and the predicted tags of
    its sentence have a chunk of the same type on the same tokens.

    Parameters
    ----------
    y_true, y_pred : list of sequences of str
        True and predicted chunk tags, aligned.
    mode : {"conlleval", "strict"}, default="conlleval"
        "conlleval": the script's lenient reading of IOB1/IOB2/IOE1/IOE2, with exact
        ``E``/``S`` boundaries (IOBES); "strict": only chunks well formed in ``scheme``
        (see :mod:`factorgraph_ebm.sequence.metrics`).
    scheme : {"IOB2", "IOBES"}, optional
        Needed by ``mode="strict"`` (and refused by "conlleval").

    Returns
    -------
    ChunkScores

    Raises
    ------
    FactorGraphError
        Sequences that do not align, a tag that is not a str or (strict) not of the
        scheme (naming sequence and position), or bad ``mode`` / ``scheme``.

    Examples
    --------
    >>> y_true = [["B-NP", "I-NP", "O", "B-VP"]]
    >>> chunk_scores(y_true, [["B-NP", "I-NP", "O", "I-VP"]]).f1
    1.0
    >>> chunk_scores(y_true, [["B-NP", "I-NP", "O", "I-VP"]], "strict", "IOB2").f1
    0.6666666666666666
    """
    read = _chunk_reader(mode, scheme)
    y_true, y_pred = _check_pair(y_true, y_pred)
    counts: dict[str, list[int]] = {}  # type -> [correct, true, predicted]

    def bump(found, slot):
        for kind, _, _ in found:
            counts.setdefault(kind, [0, 0, 0])[slot] += 1

    for i, (true_tags, pred_tags) in enumerate(zip(y_true, y_pred)):
        true_chunks, pred_chunks = set(read(true_tags, i)), set(read(pred_tags, i))
        bump(true_chunks & pred_chunks, 0)
        bump(true_chunks, 1)
        bump(pred_chunks, 2)
    total = [sum(v[k] for v in counts.values()) for k in range(3)]
    by_type = {kind: _scores(*v, {}) for kind, v in sorted(counts.items()) if kind}
    return _scores(*total, by_type)
