"""Evaluation of sequence labelings: token accuracy and conlleval chunk scores.

:func:`chunk_scores` reproduces the CoNLL shared-task evaluation script ``conlleval`` (Erik
Tjong Kim Sang, version 2004-01-26; CoNLL-2000 chunking, CoNLL-2002/2003 NER): a tag
``"B-NP"`` is split at its first ``-`` into a chunk tag (``B``) and a type (``NP``); a tag
without ``-`` (``"O"``) has an empty type. A chunk starts and ends by the script's
``startOfChunk``/``endOfChunk`` rules, which read IOB2 (``B`` at every chunk start), IOB1
(``B`` only between adjacent chunks of one type; ``O I`` or a type change also starts a
chunk), IOE1/IOE2 (``E`` ends a chunk) and the bracket tags ``[``, ``]``. Sentences are
separated as by the script's blank lines: every chunk ends at the end of its sentence. A
predicted chunk is correct when it starts and ends at the same tokens as a true chunk and has
its type. Precision, recall and F1 are fractions in [0, 1] here (conlleval prints percent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .exceptions import FactorGraphError

__all__ = ["ChunkScores", "chunk_scores", "chunks", "token_accuracy"]


def _check_pair(y_true, y_pred) -> tuple[list, list]:
    """Lists of the two label sequences, after checking that they align."""
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if isinstance(y, (str, bytes)) or not isinstance(y, Sequence):
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
        Aligned: the same number of sequences, each of the same length in both.

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
    """conlleval's ``endOfChunk``: a chunk ended between the previous and current token."""
    return (
        (prev_tag in ("B", "I") and tag in ("B", "O"))
        or (prev_tag == "E" and tag in ("E", "I", "O"))
        or (prev_tag not in ("O", ".") and prev_type != kind)
        or prev_tag in ("]", "[")
    )


def _start_of_chunk(prev_tag, tag, prev_type, kind) -> bool:
    """conlleval's ``startOfChunk``: a chunk started between the previous and current
    token."""
    return (
        (prev_tag in ("B", "I", "O") and tag == "B")
        or (prev_tag == "O" and tag in ("I", "E"))
        or (prev_tag == "E" and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != kind)
        or tag in ("[", "]")
    )


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence by conlleval's rules.

    Parameters
    ----------
    tags : sequence of str
        Chunk tags of one sentence (``"B-NP"``, ``"I-NP"``, ``"O"``, ...).

    Returns
    -------
    list of (type, start, end)
        In order; ``end`` is exclusive (the chunk covers ``tags[start:end]``).

    Raises
    ------
    FactorGraphError
        A tag that is not a str.
    """
    found = []
    prev_tag, prev_type, start = "O", "", None
    for t, tag in enumerate([*tags, "O"]):
        tag, kind = _split(tag, 0, t)
        if start is not None and _end_of_chunk(prev_tag, tag, prev_type, kind):
            found.append((prev_type, start, t))
            start = None
        if t < len(tags) and _start_of_chunk(prev_tag, tag, prev_type, kind):
            if start is not None:  # a start without an end closes the open chunk
                found.append((prev_type, start, t))
            start = t
        prev_tag, prev_type = tag, kind
    return found


class ChunkScores(NamedTuple):
    """Chunk-level scores (conlleval).

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


def chunk_scores(y_true, y_pred) -> ChunkScores:
    """Chunk precision, recall and F1 exactly as the ``conlleval`` script computes them.

    The script's state machine runs over the sentences, each followed by a sentence break
    (tag ``O``): a chunk found in both sequences stays a candidate while both continue with
    one type, and counts as correct when both end at the same token with the same type.

    Parameters
    ----------
    y_true, y_pred : list of sequences of str
        True and predicted chunk tags, aligned.

    Returns
    -------
    ChunkScores

    Raises
    ------
    FactorGraphError
        Sequences that do not align, or a tag that is not a str (naming sequence and
        position).
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    counts: dict[str, list[int]] = {}  # type -> [correct, true, predicted]

    def bump(kind, slot):
        counts.setdefault(kind, [0, 0, 0])[slot] += 1

    last_c, last_c_type, last_g, last_g_type = "O", "", "O", ""
    in_correct = False
    for i, (true_tags, pred_tags) in enumerate(zip(y_true, y_pred)):
        n = len(true_tags)
        for t in range(n + 1):  # position n is the sentence break
            if t < n:
                c, c_type = _split(true_tags[t], i, t)
                g, g_type = _split(pred_tags[t], i, t)
            else:
                c, c_type, g, g_type = "O", "", "O", ""
            end_c = _end_of_chunk(last_c, c, last_c_type, c_type)
            end_g = _end_of_chunk(last_g, g, last_g_type, g_type)
            start_c = _start_of_chunk(last_c, c, last_c_type, c_type)
            start_g = _start_of_chunk(last_g, g, last_g_type, g_type)
            if in_correct:
                if end_c and end_g and last_g_type == last_c_type:
                    in_correct = False
                    bump(last_c_type, 0)
                elif end_c != end_g or g_type != c_type:
                    in_correct = False
            if start_c and start_g and g_type == c_type:
                in_correct = True
            if start_c:
                bump(c_type, 1)
            if start_g:
                bump(g_type, 2)
            last_c, last_c_type, last_g, last_g_type = c, c_type, g, g_type
    if in_correct:
        bump(last_c_type, 0)
    total = [sum(v[k] for v in counts.values()) for k in range(3)]
    by_type = {kind: _scores(*v, {}) for kind, v in sorted(counts.items()) if kind}
    return _scores(*total, by_type)
