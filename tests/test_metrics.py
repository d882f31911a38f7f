"""Token accuracy and conlleval chunk scores, on sequences worked out by hand from the
rules of the conlleval script (version 2004-01-26), and against span matching on IOB2."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factorgraph_ebm.exceptions import FactorGraphError
from factorgraph_ebm.metrics import chunk_scores, chunks, token_accuracy


def test_token_accuracy_counts_tokens_not_sequences():
    assert token_accuracy([["a", "b"], ["c"]], [["a", "x"], ["c"]]) == pytest.approx(2 / 3)
    assert token_accuracy([], []) == 0.0
    assert token_accuracy([[1, 2, 3]], [[1, 2, 3]]) == 1.0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "where"),
    [([["a"]], [["a"], ["b"]], "1 sequences"), ([["a", "b"]], [["a"]], "sequence 0")],
)
def test_token_accuracy_refuses_misaligned_input(y_true, y_pred, where):
    with pytest.raises(FactorGraphError, match=where):
        token_accuracy(y_true, y_pred)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # IOB2: B starts, I continues, O is outside.
        (["B-NP", "I-NP", "O", "B-VP"], [("NP", 0, 2), ("VP", 3, 4)]),
        # B after B starts a new chunk of the same type.
        (["B-NP", "B-NP", "I-NP"], [("NP", 0, 1), ("NP", 1, 3)]),
        # IOB1: "O I" starts a chunk; B separates two adjacent chunks of one type.
        (["I-NP", "I-NP", "B-NP", "O", "I-PP"], [("NP", 0, 2), ("NP", 2, 3), ("PP", 4, 5)]),
        # A type change without B ends one chunk and starts another.
        (["I-NP", "I-VP", "I-VP"], [("NP", 0, 1), ("VP", 1, 3)]),
        # A chunk running to the end of the sentence ends there.
        (["O", "B-ADJP", "I-ADJP"], [("ADJP", 1, 3)]),
        # IOE: E ends a chunk; "E I" starts the next one.
        (["I-NP", "E-NP", "I-NP", "E-NP"], [("NP", 0, 2), ("NP", 2, 4)]),
        # Types may contain hyphens: split at the first one only.
        (["B-PER-X", "I-PER-X"], [("PER-X", 0, 2)]),
        ([], []),
        (["O", "O"], []),
    ],
)
def test_chunks_follow_conlleval_rules(tags, expected):
    assert chunks(tags) == expected


def test_chunk_scores_hand_worked_example():
    # sentence 1: true NP(0,2) VP(2,3) PP(3,4) NP(4,6); predicted NP(0,2) NP(2,3) PP(3,4)
    # NP(4,5) NP(5,6): correct NP(0,2) and PP(3,4).
    # sentence 2 (IOB1-ish): true NP(0,1), NP(1,3); predicted NP(0,3): nothing correct.
    y_true = [
        ["B-NP", "I-NP", "B-VP", "B-PP", "B-NP", "I-NP"],
        ["I-NP", "B-NP", "I-NP"],
    ]
    y_pred = [
        ["B-NP", "I-NP", "B-NP", "B-PP", "B-NP", "B-NP"],
        ["I-NP", "I-NP", "I-NP"],
    ]
    scores = chunk_scores(y_true, y_pred)
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (2, 6, 6)
    assert scores.precision == pytest.approx(2 / 6)
    assert scores.recall == pytest.approx(2 / 6)
    assert scores.f1 == pytest.approx(2 / 6)
    assert scores.by_type["PP"].f1 == 1.0
    assert (scores.by_type["NP"].n_correct, scores.by_type["NP"].n_true,
            scores.by_type["NP"].n_pred) == (1, 4, 5)
    assert scores.by_type["VP"].n_pred == 0 and scores.by_type["VP"].recall == 0.0


def test_chunks_never_cross_sentence_boundaries():
    # The chunk that ends sentence 0 and the "I-NP" that starts sentence 1 are two chunks;
    # both predicted correctly.
    y = [["O", "B-NP", "I-NP"], ["I-NP", "O"]]
    scores = chunk_scores(y, y)
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (2, 2, 2)
    assert scores.f1 == 1.0


def test_a_chunk_with_the_right_span_but_wrong_type_is_wrong():
    scores = chunk_scores([["B-NP", "I-NP"]], [["B-VP", "I-VP"]])
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (0, 1, 1)
    assert scores.f1 == 0.0


def test_empty_predictions_give_zero_scores():
    scores = chunk_scores([["B-NP"]], [["O"]])
    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)


def test_chunk_scores_refuse_non_str_tags():
    with pytest.raises(FactorGraphError, match="sequence 0, position 1"):
        chunk_scores([["B-NP", 3]], [["B-NP", "I-NP"]])


TAGS = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]


@st.composite
def aligned_tags(draw):
    lengths = draw(st.lists(st.integers(0, 7), max_size=4))
    tags = st.sampled_from(TAGS)
    y_true = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    y_pred = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    return y_true, y_pred


@given(aligned_tags())
def test_on_iob_tags_a_chunk_is_correct_iff_its_span_and_type_match(pair):
    """For B/I/O tags the script's state machine equals exact span matching."""
    y_true, y_pred = pair
    scores = chunk_scores(y_true, y_pred)
    true_spans = [(i, c) for i, tags in enumerate(y_true) for c in chunks(tags)]
    pred_spans = [(i, c) for i, tags in enumerate(y_pred) for c in chunks(tags)]
    assert scores.n_true == len(true_spans)
    assert scores.n_pred == len(pred_spans)
    assert scores.n_correct == len(set(true_spans) & set(pred_spans))
