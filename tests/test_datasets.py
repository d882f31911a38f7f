"""The corpus readers: real files where present, malformed lines named by file and line."""

from pathlib import Path

import numpy as np
import pytest

from factorgraph_ebm.io import ModelFileError
from factorgraph_ebm.sequence.datasets import OCR_ALPHABET, load_ocr_letters, read_conll2000

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ocr_line(letter_id, letter, word_id, position, fold, pixels):
    fields = [letter_id, letter, -1, word_id, position, fold, *pixels]
    return "\t".join(str(value) for value in fields) + "\n"


def test_conll_sentences_and_trailing_sentence(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("He PRP B-NP\nran VBD B-VP\n\n\nOK UH O\n")
    sentences = read_conll2000(path)
    assert [s.words for s in sentences] == [("He", "ran"), ("OK",)]
    assert sentences[0].pos == ("PRP", "VBD")
    assert sentences[0].chunks == ("B-NP", "B-VP")


def test_conll_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("He PRP B-NP\nran VBD\n")
    with pytest.raises(ModelFileError, match=r"bad\.txt:2: expected 3 fields"):
        read_conll2000(path)


def test_ocr_words_grouped_and_pixels_row_major(tmp_path):
    first = [0] * 128
    first[8] = 1  # row 1, column 0
    lines = [
        _ocr_line(1, "a", 7, 1, 3, first),
        _ocr_line(2, "z", 7, 2, 3, [1] * 128),
        _ocr_line(3, "b", 9, 1, 0, [0] * 128),
    ]
    path = tmp_path / "letters.data"
    path.write_text("".join(lines))
    words = load_ocr_letters(path)
    assert words.words == ["az", "b"]
    assert words.folds.tolist() == [3, 0]
    assert words.labels[0].tolist() == [0, 25]
    assert words.images[0].shape == (2, 16, 8)
    assert words.images[0][0, 1, 0] == 1 and words.images[0][0].sum() == 1


@pytest.mark.parametrize(
    "line, problem",
    [
        (_ocr_line(1, "A", 1, 1, 0, [0] * 128), "expected a letter a..z"),
        (_ocr_line(1, "a", 1, 1, 0, [0] * 127), "expected 134 tab-separated fields"),
        (_ocr_line(1, "a", 1, 1, 0, [2] + [0] * 127), "binary pixels"),
        (_ocr_line(1, "a", "x", 1, 0, [0] * 128), "expected integers"),
    ],
)
def test_ocr_malformed_line_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "letters.data"
    path.write_text(_ocr_line(1, "a", 1, 1, 0, [0] * 128) + line)
    with pytest.raises(ModelFileError, match=rf"letters\.data:2: .*{problem}"):
        load_ocr_letters(path)


def test_ocr_word_split_across_the_file_is_refused(tmp_path):
    lines = [_ocr_line(i, "a", word, 1, 0, [0] * 128) for i, word in enumerate([1, 2, 1], 1)]
    path = tmp_path / "letters.data"
    path.write_text("".join(lines))
    with pytest.raises(ModelFileError, match=r":3: word 1 resumes"):
        load_ocr_letters(path)


@pytest.mark.skipif(not (DATA / "conll2000").is_dir(), reason="../shared/data not present")
def test_conll2000_counts_match_source_md():
    train = read_conll2000(DATA / "conll2000" / "train.txt")
    test = read_conll2000(DATA / "conll2000" / "test.txt")
    assert (len(train), sum(len(s.words) for s in train)) == (8936, 211727)
    assert (len(test), sum(len(s.words) for s in test)) == (2012, 47377)
    assert len({tag for s in train for tag in s.chunks}) == 22


@pytest.mark.skipif(not (DATA / "ocr_letters").is_dir(), reason="../shared/data not present")
def test_ocr_letters_counts_match_source_md():
    words = load_ocr_letters(DATA / "ocr_letters" / "ocr_letters.data.gz")
    assert len(words.words) == 6877
    assert sum(len(labels) for labels in words.labels) == 52152
    assert np.bincount(words.folds)[1] == 704
    assert all(
        "".join(OCR_ALPHABET[i] for i in lab) == w for lab, w in zip(words.labels, words.words)
    )
