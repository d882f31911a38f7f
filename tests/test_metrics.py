"""Token accuracy and chunk scores: on sequences worked out by hand from the rules of the
conlleval script (version 2004-01-26), against a line-by-line port of that script on IOB and
IOE tags (where it is right), against its published output on CoNLL-2000, and against
seqeval (when installed) on IOBES and in strict mode."""

import collections
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from factorgraph_ebm.exceptions import FactorGraphError
from factorgraph_ebm.sequence.datasets import read_conll2000
from factorgraph_ebm.sequence.metrics import chunk_scores, chunks, token_accuracy

try:
    from seqeval import scheme as seqeval_scheme
    from seqeval.metrics import sequence_labeling as seqeval_labeling
except ImportError:  # an optional cross-check (the dev extra installs it)
    seqeval_scheme = seqeval_labeling = None
needs_seqeval = pytest.mark.skipif(seqeval_scheme is None, reason="seqeval is not installed")

CONLL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2000"


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


# --------------------------------------------------------------------------- E and S tags
@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        # conlleval reads these as one chunk: it has no boundary between E and B.
        (["B-X", "E-X", "B-X", "E-X"], [("X", 0, 2), ("X", 2, 4)]),
        # S is a chunk of one token (conlleval does not know S: one chunk of two).
        (["S-X", "S-X"], [("X", 0, 1), ("X", 1, 2)]),
        (["B-X", "I-X", "E-X", "S-X", "B-Y", "E-Y", "O", "S-Y"],
         [("X", 0, 3), ("X", 3, 4), ("Y", 4, 6), ("Y", 7, 8)]),
        # A chunk before S ends there; E always ends a chunk.
        (["B-X", "S-X", "I-X", "E-X", "E-X"], [("X", 0, 1), ("X", 1, 2), ("X", 2, 4),
                                               ("X", 4, 5)]),
    ],
)
def test_e_and_s_tags_are_exact_boundaries(tags, expected):
    assert chunks(tags) == expected


def test_one_predicted_chunk_for_two_true_ones_scores_zero():
    """The issue's case: gold B E B E, predicted one chunk over the four tokens."""
    y_true, y_pred = [["B-X", "E-X", "B-X", "E-X"]], [["B-X", "I-X", "I-X", "E-X"]]
    scores = chunk_scores(y_true, y_pred)
    assert (scores.n_correct, scores.n_true, scores.n_pred, scores.f1) == (0, 2, 1, 0.0)
    assert conlleval_counts(y_true, y_pred) == (1, 1, 1)  # the script's F1 = 1.0
    scores = chunk_scores([["S-X", "S-X"]], [["B-X", "E-X"]])
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (0, 2, 1)


# --------------------------------------------------------------------------- strict mode
@pytest.mark.parametrize(
    ("tags", "scheme", "expected"),
    [
        # IOB2: a chunk starts with B; an I that continues no chunk is in none.
        (["I-NP", "I-NP", "B-NP", "I-NP", "O", "I-PP"], "IOB2", [("NP", 2, 4)]),
        (["B-NP", "I-NP", "I-VP", "B-VP"], "IOB2", [("NP", 0, 2), ("VP", 3, 4)]),
        (["B-NP", "B-NP", "I-NP"], "IOB2", [("NP", 0, 1), ("NP", 1, 3)]),
        # IOBES: S alone, or B I* E of one type; anything else is in no chunk.
        (["B-X", "I-X", "E-X", "S-Y"], "IOBES", [("X", 0, 3), ("Y", 3, 4)]),
        (["B-X", "I-X", "O", "S-X"], "IOBES", [("X", 3, 4)]),  # no E: invalid
        (["B-X", "E-Y", "I-X", "E-X"], "IOBES", []),
        (["B-X", "B-X", "E-X", "E-X"], "IOBES", [("X", 1, 3)]),
        (["B-X", "I-X"], "IOBES", []),  # the sentence ends before the E
        ([], "IOBES", []),
    ],
)
def test_strict_mode_counts_only_well_formed_chunks(tags, scheme, expected):
    assert chunks(tags, mode="strict", scheme=scheme) == expected


def test_strict_mode_scores():
    # True NP(0,2) and VP(3,4); the prediction starts its VP with I: one chunk short.
    y_true = [["B-NP", "I-NP", "O", "B-VP"]]
    y_pred = [["B-NP", "I-NP", "O", "I-VP"]]
    assert chunk_scores(y_true, y_pred).f1 == 1.0
    scores = chunk_scores(y_true, y_pred, mode="strict", scheme="IOB2")
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (1, 2, 1)
    assert scores.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "strict"}, "needs scheme='IOB2' or 'IOBES', got None"),
        ({"mode": "strict", "scheme": "BILOU"}, "needs scheme='IOB2' or 'IOBES'"),
        ({"scheme": "IOB2"}, "is for mode='strict'"),
        ({"mode": "lenient"}, "mode must be one of"),
    ],
)
def test_bad_mode_or_scheme(kwargs, message):
    with pytest.raises(FactorGraphError, match=message):
        chunk_scores([["O"]], [["O"]], **kwargs)


def test_strict_mode_refuses_tags_outside_the_scheme():
    with pytest.raises(FactorGraphError, match=r"sequence 1, position 2: 'E-NP' is not a tag "
                       r"of scheme 'IOB2' \(chunk tags B, I, O\)"):
        chunk_scores([["O"], ["B-NP", "I-NP", "E-NP"]], [["O"], ["O", "O", "O"]],
                     mode="strict", scheme="IOB2")


# --------------------------------------------------------------------------- untyped tags
@pytest.mark.parametrize(
    ("tags", "mode", "scheme", "expected"),
    [
        (["B", "I", "O", "I", "B", "B"], "conlleval", None,
         [("", 0, 2), ("", 3, 4), ("", 4, 5), ("", 5, 6)]),
        (["B", "I", "O", "I", "B", "B"], "strict", "IOB2", [("", 0, 2), ("", 4, 5), ("", 5, 6)]),
        (["B", "E", "S", "B", "I", "E"], "conlleval", None, [("", 0, 2), ("", 2, 3), ("", 3, 6)]),
        (["B", "E", "S", "B", "I", "O"], "strict", "IOBES", [("", 0, 2), ("", 2, 3)]),
    ],
)
def test_untyped_tags(tags, mode, scheme, expected):
    assert chunks(tags, mode=mode, scheme=scheme) == expected


def test_untyped_tags_score_but_have_no_per_type_row():
    scores = chunk_scores([["B", "I", "O", "B"]], [["B", "I", "O", "O"]])
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (1, 2, 1)
    assert scores.recall == 0.5 and scores.by_type == {}


# --------------------------------------------------------------------------- conlleval itself
def conlleval_counts(y_true, y_pred) -> tuple[int, int, int]:
    """(correct, true, predicted) chunks by a line-by-line port of conlleval.pl (2004-01-26):
    its main loop over tokens with a sentence break ("O") after each sentence, and its
    endOfChunk / startOfChunk rules as written (E followed by B is no boundary; S unknown)."""

    def split(tag):
        head, dash, kind = tag.partition("-")
        return (head, kind) if dash else (tag, "")

    def end_of_chunk(prev_tag, tag, prev_type, kind):
        return ((prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"),
                                    ("E", "E"), ("E", "I"), ("E", "O")}
                or (prev_tag not in ("O", ".") and prev_type != kind)
                or prev_tag in ("]", "["))

    def start_of_chunk(prev_tag, tag, prev_type, kind):
        return ((prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"),
                                    ("E", "E"), ("E", "I"), ("O", "E")}
                or (tag not in ("O", ".") and prev_type != kind)
                or tag in ("[", "]"))

    correct = found_correct = found_guessed = 0
    in_correct = False
    last_c, last_c_type, last_g, last_g_type = "O", "", "O", ""
    for true_tags, pred_tags in zip(y_true, y_pred):
        for c_tag, g_tag in [*zip(true_tags, pred_tags), ("O", "O")]:
            c, c_type = split(c_tag)
            g, g_type = split(g_tag)
            end_c = end_of_chunk(last_c, c, last_c_type, c_type)
            end_g = end_of_chunk(last_g, g, last_g_type, g_type)
            start_c = start_of_chunk(last_c, c, last_c_type, c_type)
            start_g = start_of_chunk(last_g, g, last_g_type, g_type)
            if in_correct:
                if end_c and end_g and last_g_type == last_c_type:
                    in_correct = False
                    correct += 1
                elif end_c != end_g or g_type != c_type:
                    in_correct = False
            if start_c and start_g and g_type == c_type:
                in_correct = True
            found_correct += start_c
            found_guessed += start_g
            last_c, last_c_type, last_g, last_g_type = c, c_type, g, g_type
    return correct + in_correct, found_correct, found_guessed


@st.composite
def aligned_from(draw, alphabet):
    lengths = draw(st.lists(st.integers(0, 7), max_size=4))
    tags = st.sampled_from(alphabet)
    return tuple([draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
                 for _ in range(2))


IOB = ["O", "B-NP", "I-NP", "B-VP", "I-VP", "B", "I"]
IOE = ["O", "I-NP", "E-NP", "I-VP", "E-VP", "I", "E"]


@given(st.one_of(aligned_from(IOB), aligned_from(IOE)))
def test_on_iob_and_ioe_tags_the_counts_are_conllevals(pair):
    scores = chunk_scores(*pair)
    assert (scores.n_correct, scores.n_true, scores.n_pred) == conlleval_counts(*pair)


def _baseline(train, test):
    """The CoNLL-2000 baseline: each token gets the chunk tag most often seen with its
    part-of-speech tag in the training data (ties: first seen)."""
    seen = collections.defaultdict(collections.Counter)
    for sentence in train:
        for pos, tag in zip(sentence.pos, sentence.chunks):
            seen[pos][tag] += 1
    best = {pos: counter.most_common(1)[0][0] for pos, counter in seen.items()}
    return [list(s.chunks) for s in test], [[best.get(p, "O") for p in s.pos] for s in test]


@pytest.fixture(scope="module")
def conll_baseline():
    if not CONLL.is_dir():
        pytest.skip("../shared/data/conll2000 is absent")
    return _baseline(read_conll2000(CONLL / "train.txt"), read_conll2000(CONLL / "test.txt"))


def test_conll2000_baseline_scores_as_published(conll_baseline):
    """README.original's table: baseline precision 72.58 %, recall 82.14 %, F1 77.07; and
    `perl conlleval.pl` (2004-01-26) on these predictions printed "processed 47377 tokens
    with 23852 phrases; found: 26992 phrases; correct: 19592." The baseline starts chunks
    with I- (after O), which the conlleval mode counts as chunks."""
    y_true, y_pred = conll_baseline
    scores = chunk_scores(y_true, y_pred)
    assert (scores.n_correct, scores.n_true, scores.n_pred) == (19592, 23852, 26992)
    assert [round(100 * x, 2) for x in scores[:3]] == [72.58, 82.14, 77.07]
    assert conlleval_counts(y_true, y_pred) == (19592, 23852, 26992)
    strict = chunk_scores(y_true, y_pred, mode="strict", scheme="IOB2")
    # The gold tags are valid IOB2; 8,173 predicted chunks start with I- and are dropped
    # (seqeval's strict IOB2 mode gave the same counts, see below).
    assert (strict.n_correct, strict.n_true, strict.n_pred) == (14178, 23852, 18819)


# --------------------------------------------------------------------------- seqeval
IOBES = ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"]


@needs_seqeval
@given(st.lists(st.sampled_from(IOBES), max_size=9))
def test_conlleval_mode_reads_chunks_as_seqeval_default(tags):
    expected = [(kind, start, end + 1) for kind, start, end in
                seqeval_labeling.get_entities(list(tags))]
    assert chunks(tags) == expected


@needs_seqeval
@pytest.mark.parametrize("scheme", ["IOB2", "IOBES"])
@given(tags=st.lists(st.sampled_from(IOBES), max_size=9))
def test_strict_mode_reads_chunks_as_seqeval_strict(scheme, tags):
    if scheme == "IOB2":
        tags = [t.replace("E-", "I-").replace("S-", "B-") for t in tags]
    entities = seqeval_scheme.Tokens(tags, getattr(seqeval_scheme, scheme)).entities
    expected = [(e.tag, e.start, e.end) for e in entities]
    assert chunks(tags, mode="strict", scheme=scheme) == expected


@needs_seqeval
def test_conll2000_baseline_strict_scores_as_seqeval(conll_baseline):
    y_true, y_pred = conll_baseline
    strict = chunk_scores(y_true, y_pred, mode="strict", scheme="IOB2")
    for ours, theirs in [(strict.precision, seqeval_labeling.precision_score),
                         (strict.recall, seqeval_labeling.recall_score),
                         (strict.f1, seqeval_labeling.f1_score)]:
        assert ours == pytest.approx(
            theirs(y_true, y_pred, mode="strict", scheme=seqeval_scheme.IOB2), rel=1e-12)


def test_metrics_accept_numpy_arrays():
    y_true = [["B-NP", "I-NP", "O"], ["B-VP", "O"]]
    y_pred = [["B-NP", "I-NP", "B-VP"], ["B-VP", "B-NP"]]
    arrays = np.array([np.array(y) for y in y_true], dtype=object), [np.array(y) for y in y_pred]
    assert token_accuracy(*arrays) == token_accuracy(y_true, y_pred) == 0.6
    assert chunk_scores(*arrays) == chunk_scores(y_true, y_pred)
    square = np.array([["A", "B"], ["B", "B"]]), np.array([["A", "A"], ["B", "B"]])  # 2-D
    assert token_accuracy(*square) == 0.75
    assert token_accuracy(np.array([[1, 2, 3]]), [[1, 2, 0]]) == pytest.approx(2 / 3)
