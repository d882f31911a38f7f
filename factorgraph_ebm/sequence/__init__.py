"""Sequence labeling on the trellis: :class:`SequenceLabeler` (a linear-chain labeler trained
with the losses, a scikit-learn estimator), its attribute features, its metrics, and readers
of the sequence datasets (CoNLL-2000 chunking, OCR letters).

The general engine (:mod:`factorgraph_ebm.trellis`, :mod:`factorgraph_ebm.losses`,
:mod:`factorgraph_ebm.optim`) does the work; this package is the application built on it.
It imports scipy.sparse and tqdm, so :mod:`factorgraph_ebm` loads it on first use.
"""

from .datasets import OCR_ALPHABET, OCR_SHAPE, ConllSentence, load_ocr_letters, read_conll2000
from .features import AttributeIndexer, AttributeMatrix, crfsuite_chunking_attributes
from .labeler import SequenceLabeler
from .metrics import ChunkScores, chunk_scores, chunks, token_accuracy

__all__ = [
    "OCR_ALPHABET",
    "OCR_SHAPE",
    "AttributeIndexer",
    "AttributeMatrix",
    "ChunkScores",
    "ConllSentence",
    "SequenceLabeler",
    "chunk_scores",
    "chunks",
    "crfsuite_chunking_attributes",
    "load_ocr_letters",
    "read_conll2000",
    "token_accuracy",
]
