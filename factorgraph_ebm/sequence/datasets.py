"""Readers for the public sequence-labeling corpora used by the examples and benchmarks.

- :func:`read_conll2000`: the CoNLL-2000 chunking corpus (word, POS tag, IOB2 chunk tag per
  line, sentences separated by blank lines; Tjong Kim Sang & Buchholz, 2000).
- :func:`load_ocr_letters`: Taskar et al.'s OCR handwritten words (16 x 8 binary letter
  images, ``letter.data`` layout, optionally gzipped; Taskar, Guestrin & Koller, NIPS 2003).

Both raise :class:`~factorgraph_ebm.io.ModelFileError` (``file:line: ...``) on a malformed line.
The data are not shipped with the package; see ``../shared/data/*/SOURCE.md`` for origin and
licence.
"""

from __future__ import annotations

import gzip
import os
from typing import NamedTuple

import numpy as np

from ..io._text import ModelFileError

__all__ = ["ConllSentence", "OcrWords", "load_ocr_letters", "read_conll2000"]

OCR_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
OCR_SHAPE = (16, 8)
_OCR_FIELDS = 6 + OCR_SHAPE[0] * OCR_SHAPE[1]


class ConllSentence(NamedTuple):
    """One sentence of a CoNLL-2000 file: three equally long tuples of strings."""

    words: tuple[str, ...]
    pos: tuple[str, ...]
    chunks: tuple[str, ...]


def _open_text(path):
    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="ascii", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_conll2000(path) -> list[ConllSentence]:
    """Read a CoNLL-2000 chunking file.

    Parameters
    ----------
    path : str or os.PathLike
        A file of ``word POS chunk`` lines (space separated; ``.gz`` is decompressed);
        sentences are separated by blank lines.

    Returns
    -------
    list of ConllSentence
        In file order; a file without a trailing blank line still yields its last sentence.

    Raises
    ------
    ModelFileError
        A non-blank line without exactly three fields (names the file and line).
    """
    sentences: list[ConllSentence] = []
    rows: list[list[str]] = []

    def flush():
        if rows:
            words, pos, chunks = zip(*rows)
            sentences.append(ConllSentence(words, pos, chunks))
            rows.clear()

    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                flush()
                continue
            if len(fields) != 3:
                raise ModelFileError(
                    path, number, f"expected 3 fields (word POS chunk), found {len(fields)}"
                )
            rows.append(fields)
    flush()
    return sentences


class OcrWords(NamedTuple):
    """Taskar's OCR words, one entry per word.

    Attributes
    ----------
    images : list of ndarray, uint8, shape (T_i, 16, 8)
        Binary letter images of each word (row-major 16 rows x 8 columns).
    labels : list of ndarray, int64, shape (T_i,)
        Letter indices 0..25 (``OCR_ALPHABET``).
    folds : ndarray, int64, shape (n_words,)
        Cross-validation fold 0..9 of each word.
    words : list of str
        The words as text.
    """

    images: list
    labels: list
    folds: np.ndarray
    words: list


def load_ocr_letters(path) -> OcrWords:
    """Read Taskar's OCR letters (``letter.data`` layout, tab separated, optionally gzipped).

    Parameters
    ----------
    path : str or os.PathLike
        E.g. ``../shared/data/ocr_letters/ocr_letters.data.gz``. Columns: id, letter,
        next_id, word_id, position, fold, then 128 pixels p_i_j (row-major 16 x 8).

    Returns
    -------
    OcrWords
        Words in file order (letters of a word are on consecutive lines).

    Raises
    ------
    ModelFileError
        A line with the wrong number of fields, a letter outside a..z, a pixel or
        number that does not parse, or a word whose letters are not consecutive.
    """
    images, labels, folds, words = [], [], [], []
    current_word = None
    pixels: list[list[int]] = []
    letters: list[str] = []
    fold = -1

    def flush():
        if letters:
            images.append(np.asarray(pixels, dtype=np.uint8).reshape(-1, *OCR_SHAPE))
            labels.append(np.fromiter((OCR_ALPHABET.index(c) for c in letters), np.int64))
            folds.append(fold)
            words.append("".join(letters))
            pixels.clear()
            letters.clear()

    seen_words: set[int] = set()
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").rstrip("\t").split("\t")
            if fields == [""]:
                continue
            if len(fields) != _OCR_FIELDS:
                raise ModelFileError(
                    path,
                    number,
                    f"expected {_OCR_FIELDS} tab-separated fields, found {len(fields)}",
                )
            letter = fields[1]
            if len(letter) != 1 or letter not in OCR_ALPHABET:
                raise ModelFileError(path, number, f"expected a letter a..z, found {letter!r}")
            try:
                word_id = int(fields[3])
                word_fold = int(fields[5])
                row = [int(value) for value in fields[6:]]
            except ValueError as error:
                raise ModelFileError(path, number, f"expected integers: {error}") from None
            if any(value not in (0, 1) for value in row):
                raise ModelFileError(path, number, "expected binary pixels 0/1")
            if word_id != current_word:
                if word_id in seen_words:
                    raise ModelFileError(
                        path,
                        number,
                        f"word {word_id} resumes after other words; "
                        "letters of a word must be consecutive",
                    )
                flush()
                seen_words.add(word_id)
                current_word = word_id
                fold = word_fold
            letters.append(letter)
            pixels.append(row)
    flush()
    return OcrWords(images, labels, np.asarray(folds, dtype=np.int64), words)
