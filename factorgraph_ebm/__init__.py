"""factorgraph_ebm: energy-based models on factor graphs.

Build a :class:`FactorGraph` of discrete variables and energy factors, then run min-sum
belief propagation (:func:`min_sum`: lowest-energy configuration and min-marginals) or
log-domain sum-product at inverse temperature beta (:func:`sum_product`: marginals and the
free energy F = -1/beta ln Z). Both are exact wherever the junction tree's tables fit a
memory budget (:mod:`.exact`), and on trees and forests; loopy BP answers otherwise. The
losses of LeCun et al.'s tutorial (:mod:`.losses`) turn those results into gradients with
respect to the energies; :mod:`.models` maps parameters to energies and :func:`fit` trains
them.
Chains have dedicated trellis kernels (:mod:`.trellis`: Viterbi, forward-backward, k-best,
the most offending incorrect path), on which :class:`SequenceLabeler` trains linear-chain
labelers.
"""

# The package's one version string: pyproject.toml reads it (setuptools' dynamic version),
# and the kernel cache's directory name starts with it.
__version__ = "0.1.0"

from .compiled import CompiledGraph
from .exceptions import (
    ConvergenceWarning,
    EvidenceError,
    FactorGraphError,
    NoFiniteAssignmentWarning,
    NotFittedError,
    TargetError,
)
from .graph import FactorGraph, FactorNode
from .inference import belief_propagation, min_sum, sum_product
from .losses import (
    EnergyLoss,
    HingeLoss,
    LogLoss,
    Loss,
    LossResult,
    LVQ2Loss,
    MarginLoss,
    MCELoss,
    MEELoss,
    MostOffending,
    NLLLoss,
    PerceptronLoss,
    SquareExpLoss,
    SquareSquareLoss,
    most_offending,
    value_distance,
)
from .models import EnergyModel, LinearModel, TableModel
from .optim import LBFGS, SGD, Adam, History
from .results import InferenceResult
from .train import TrainResult, fit, predict, score
from .trellis import best_incorrect, forward_backward, kbest, path_energy, viterbi

# Sequence labeling pulls in scipy.sparse and tqdm: loaded on first use, not with the package.
_LAZY = {
    "SequenceLabeler": "sequence.labeler",
    "AttributeIndexer": "sequence.features",
    "AttributeMatrix": "sequence.features",
    "crfsuite_chunking_attributes": "sequence.features",
    "ChunkScores": "sequence.metrics",
    "chunk_scores": "sequence.metrics",
    "chunks": "sequence.metrics",
    "token_accuracy": "sequence.metrics",
    # Batches of same-structure problems in one kernel call; Dask (optional) for many models.
    "BatchResult": "batch",
    "batch_belief_propagation": "batch",
    "batch_min_sum": "batch",
    "batch_sum_product": "batch",
    "map_inference": "distributed",
    "infer_many": "distributed",
    # The kernel cache: compile everything ahead of time; the warning of an unusable cache.
    "compile_kernels": "_jit_cache",
    "JitCacheWarning": "_jit_cache",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = [
    "LBFGS",
    "SGD",
    "Adam",
    "CompiledGraph",
    "EnergyLoss",
    "EnergyModel",
    "HingeLoss",
    "History",
    "LVQ2Loss",
    "LinearModel",
    "LogLoss",
    "Loss",
    "LossResult",
    "MCELoss",
    "MEELoss",
    "MarginLoss",
    "MostOffending",
    "NLLLoss",
    "PerceptronLoss",
    "SquareExpLoss",
    "SquareSquareLoss",
    "TableModel",
    "TargetError",
    "TrainResult",
    "fit",
    "most_offending",
    "predict",
    "score",
    "value_distance",
    "ConvergenceWarning",
    "NoFiniteAssignmentWarning",
    "NotFittedError",
    "EvidenceError",
    "FactorGraph",
    "FactorGraphError",
    "FactorNode",
    "InferenceResult",
    "belief_propagation",
    "min_sum",
    "sum_product",
    "__version__",
    "best_incorrect",
    "forward_backward",
    "kbest",
    "path_energy",
    "viterbi",
    *_LAZY,
]
