"""Attribute dicts -> sparse design matrices, and CRFsuite's chunking attributes."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from factorgraph_ebm.exceptions import FactorGraphError
from factorgraph_ebm.sequence.datasets import ConllSentence, read_conll2000
from factorgraph_ebm.sequence.features import (
    CHUNKING_TEMPLATES,
    AttributeIndexer,
    crfsuite_chunking_attributes,
    stable_hash,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

X = [
    [{"w": "the", "bias": 1.0}, {"w": "dog", "len": 3, "cap": False}],
    [["w=dog", "__BOS__"]],
]


def test_indexer_builds_a_vocabulary_in_order_of_appearance():
    indexer = AttributeIndexer()
    result = indexer.fit_transform(X)
    assert indexer.attributes_ == ["w=the", "bias", "w=dog", "len", "__BOS__"]
    assert result.lengths.tolist() == [2, 1]
    assert result.offsets.tolist() == [0, 2, 3]
    dense = result.matrix.toarray()
    np.testing.assert_array_equal(
        dense, [[1, 1, 0, 0, 0], [0, 0, 1, 3, 0], [0, 0, 1, 0, 1]]
    )
    assert result.matrix.dtype == np.float64 and result.matrix.has_canonical_format


def test_unknown_attributes_are_ignored_and_duplicates_add_up():
    indexer = AttributeIndexer().fit(X)
    result = indexer.transform([[{"w": "cat", "bias": 2.5}, ["__BOS__", "__BOS__"]]])
    np.testing.assert_array_equal(result.matrix.toarray(), [[0, 2.5, 0, 0, 0], [0, 0, 0, 0, 2]])


def test_empty_sequences_have_no_rows():
    indexer = AttributeIndexer().fit([[], *X, []])
    assert indexer.attributes_ == AttributeIndexer().fit(X).attributes_
    result = indexer.transform([[], X[0], []])
    assert result.lengths.tolist() == [0, 2, 0] and result.offsets.tolist() == [0, 0, 2, 2]
    assert (result.matrix != indexer.transform(X[:1]).matrix).nnz == 0
    assert indexer.transform([[]]).matrix.shape == (0, 5)


def features_of(items, indexer=None):
    """Per token: {attribute name: weight} of the nonzero entries of our design matrix."""
    indexer = indexer or AttributeIndexer().fit([items])
    matrix = indexer.transform([items]).matrix
    names = indexer.attributes_
    return [{names[j]: matrix[t, j] for j in matrix[t].indices} for t in range(len(items))]


def test_nested_dicts_lists_and_bytes_as_python_crfsuite_reads_them():
    items = [
        {"p": {"w": "x"}},                        # python-crfsuite: "p:w:x"
        {"p": ["a", "b"], "q": {"r": {"s": 2.0}}},  # "p:a", "p:b"; "q:r:s" weight 2
        {"w": b"v", b"k": "u", "z": {b"y": b"\xc3\xa9"}},  # bytes are UTF-8 text
        {"p": ("c", "d"), "s": {"b", "a"}, "f": False, "n": np.float32(0.5), "e": {}, "l": []},
        [b"__BOS__", "x"],
    ]
    assert features_of(items) == [
        {"p:w=x": 1.0},
        {"p:a": 1.0, "p:b": 1.0, "q:r:s": 2.0},
        {"w=v": 1.0, "k=u": 1.0, "z:y=é": 1.0},
        {"p:c": 1.0, "p:d": 1.0, "s:a": 1.0, "s:b": 1.0, "n": 0.5},
        {"__BOS__": 1.0, "x": 1.0},
    ]
    # a repeated attribute adds up, nested or not (as CRFsuite sums repeated attributes)
    assert features_of([{"p:a": 1.0, "p": ["a"]}]) == [{"p:a": 2.0}]
    hashed = AttributeIndexer(n_features=64).fit([items]).transform([items]).matrix
    assert hashed[0, stable_hash("p:w=x") % 64] == 1.0


# Names and text values without ':' and '=' (so that python-crfsuite's names, which use ':'
# where ours put '=' before a text value, map one to one); no repeated list members (its
# ItemSequence.items() keeps one of them, a dict).
_text = st.text(alphabet="abcdé_", min_size=1, max_size=3)
_leaf = st.one_of(
    _text,
    _text.map(lambda v: v.encode("utf-8")),
    st.floats(-3, 3, allow_nan=False).filter(lambda w: w != 0),
    st.just(True),
    st.lists(_text, min_size=1, max_size=3, unique=True),
)
_value = st.recursive(_leaf, lambda inner: st.dictionaries(_text, inner, min_size=1, max_size=3),
                      max_leaves=6)
_item = st.dictionaries(st.one_of(_text, _text.map(lambda v: v.encode("utf-8"))), _value,
                        min_size=1, max_size=4).filter(
    lambda item: len({k.decode() if isinstance(k, bytes) else k for k in item}) == len(item))


@given(st.lists(_item, min_size=1, max_size=4))
def test_flattening_matches_python_crfsuite_item_sequence(items):
    pycrfsuite = pytest.importorskip("pycrfsuite", reason="python-crfsuite is not installed")
    theirs = [{name: weight for name, weight in token.items() if weight != 0}
              for token in pycrfsuite.ItemSequence(items).items()]
    ours = [{name.replace("=", ":"): weight for name, weight in token.items()}
            for token in features_of(items)]
    assert ours == theirs


def test_min_freq_counts_tokens():
    indexer = AttributeIndexer(min_freq=2).fit(X)
    assert indexer.attributes_ == ["w=dog"]


def test_hashing_is_stable_and_needs_no_vocabulary():
    # CRC-32, fixed: the same columns on every machine and in every process
    assert stable_hash("w=dog") == 0xF1FC0BD1
    indexer = AttributeIndexer(n_features=16).fit(X)
    result = indexer.transform(X)
    assert result.matrix.shape == (3, 16)
    column = stable_hash("w=dog") % 16
    assert result.matrix[1, column] >= 1.0 and result.matrix[2, column] >= 1.0
    assert AttributeIndexer.from_state(indexer.get_state()).transform(X).matrix.nnz == (
        result.matrix.nnz
    )


def test_stable_hash_is_crc32_of_utf8():
    import zlib

    assert stable_hash("é=1") == zlib.crc32("é=1".encode("utf-8"))


def test_state_round_trip_gives_the_same_matrix():
    indexer = AttributeIndexer().fit(X)
    again = AttributeIndexer.from_state(indexer.get_state())
    assert (again.transform(X).matrix != indexer.transform(X).matrix).nnz == 0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[{"w": None}]], r"sequence 0, position 0: attribute 'w' has value None"),
        ([[{"w": 1.0}], [{"x": float("nan")}]], r"sequence 1, position 0: .*'x'.*finite"),
        ([[{"w": 1.0}, 7]], r"sequence 0, position 1: an item must be"),
        ([[]], r"no attribute occurs"),  # an empty sequence is legal; no token is not
        ("abc", r"X must be a list of sequences"),
        ([[{3: 1.0}]], r"sequence 0, position 0: attribute names must be str"),
        ([[{"a": "b"}, {3: "x"}]], r"sequence 0, position 1: attribute names must be str"),
        ([[{"a": 1.0}], [{"p": [1, 2]}]], r"sequence 1, position 0: .*'p'.*list value holds"),
        ([[{"a": 1.0}, {"p": {"w": None}}]], r"sequence 0, position 1: .*'p:w' has value None"),
        ([[{"p": {3: 1.0}}]], r"sequence 0, position 0: attribute names must be str"),
        ([[{"w": b"\xff"}]], r"sequence 0, position 0: attribute values must be UTF-8"),
        ([[[b"a", b"\xfe"]]], r"sequence 0, position 0: attribute names must be UTF-8"),
        ([[{"p": {"w": float("inf")}}]], r"sequence 0, position 0: .*'p:w'.*finite"),
        ([[{"p": {"a", 1}}]], r"sequence 0, position 0: .*'p'.*list value holds"),
        ([[{"a", 1}]], r"sequence 0, position 0: attribute names must be str"),
    ],
)
def test_bad_input_names_the_place(bad, match):
    with pytest.raises(FactorGraphError, match=match):
        AttributeIndexer().fit(bad)


def test_bad_options_and_unfitted_use():
    with pytest.raises(FactorGraphError, match="min_freq"):
        AttributeIndexer(min_freq=0)
    with pytest.raises(FactorGraphError, match="n_features"):
        AttributeIndexer(n_features=0)
    with pytest.raises(FactorGraphError, match="not fitted"):
        AttributeIndexer().transform(X)
    with pytest.raises(FactorGraphError, match="min_freq=5"):
        AttributeIndexer(min_freq=5).fit(X)


def reference_chunking_attributes(words, pos):
    """CRFsuite's example/template.py ``apply`` plus chunking.py's BOS/EOS and crfutils'
    escape, restated literally."""
    items = [{"w": w, "pos": p, "F": []} for w, p in zip(words, pos)]
    for template in CHUNKING_TEMPLATES:
        name = "|".join("%s[%d]" % (f, o) for f, o in template)
        for t in range(len(items)):
            values = []
            for field, offset in template:
                p = t + offset
                if p not in range(len(items)):
                    values = []
                    break
                values.append(items[p][field])
            if values:
                items[t]["F"].append("%s=%s" % (name, "|".join(values)))
    if items:
        items[0]["F"].append("__BOS__")
        items[-1]["F"].append("__EOS__")
    return [[a.replace(":", "__COLON__") for a in item["F"]] for item in items]


def test_chunking_attributes_by_hand():
    sentence = ConllSentence(("He", "reckons", ":"), ("PRP", "VBZ", ":"), ("B-NP", "B-VP", "O"))
    items = crfsuite_chunking_attributes(sentence)
    assert list(items[0]) == [
        "w[0]=He", "w[1]=reckons", "w[2]=__COLON__", "w[0]|w[1]=He|reckons",
        "pos[0]=PRP", "pos[1]=VBZ", "pos[2]=__COLON__", "pos[0]|pos[1]=PRP|VBZ",
        "pos[1]|pos[2]=VBZ|__COLON__", "pos[0]|pos[1]|pos[2]=PRP|VBZ|__COLON__", "__BOS__",
    ]
    assert "pos[-1]|pos[0]|pos[1]=PRP|VBZ|__COLON__" in items[1]
    assert list(items[2])[-1] == "__EOS__"
    assert all(value == 1.0 for item in items for value in item.values())
    single = crfsuite_chunking_attributes(ConllSentence(("Hi",), ("UH",), ("O",)))
    assert list(single[0]) == ["w[0]=Hi", "pos[0]=UH", "__BOS__", "__EOS__"]


def test_chunking_attributes_refuse_misaligned_sentences():
    with pytest.raises(FactorGraphError, match="2 words, 1 tags"):
        crfsuite_chunking_attributes(ConllSentence(("a", "b"), ("DT",), ("O", "O")))


def test_chunking_attributes_match_crfsuite_on_conll2000():
    path = DATA / "conll2000" / "test.txt"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    for sentence in read_conll2000(path)[:300]:
        ours = [list(item) for item in crfsuite_chunking_attributes(sentence)]
        assert ours == reference_chunking_attributes(sentence.words, sentence.pos)


def test_chunking_attributes_match_python_crfsuite_items():
    pycrfsuite = pytest.importorskip("pycrfsuite")
    sentence = ConllSentence(("He", "reckons", ":"), ("PRP", "VBZ", ":"), ("B-NP", "B-VP", "O"))
    items = crfsuite_chunking_attributes(sentence)
    assert pycrfsuite.ItemSequence(items).items() == items
