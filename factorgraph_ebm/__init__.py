"""factorgraph_ebm: energy-based models on factor graphs.

Build a :class:`FactorGraph` of discrete variables and energy factors, then run min-sum
belief propagation (:func:`min_sum`: lowest-energy configuration and min-marginals) or
log-domain sum-product at inverse temperature beta (:func:`sum_product`: marginals and the
free energy F = -1/beta ln Z). Both are exact on trees and forests.
"""

from . import _config  # noqa: F401  (sets Numba's cache directory before numba loads)
from .compiled import CompiledGraph
from .exceptions import ConvergenceWarning, EvidenceError, FactorGraphError
from .graph import FactorGraph, FactorNode
from .inference import belief_propagation, min_sum, sum_product
from .results import InferenceResult

__version__ = "0.1.0"

__all__ = [
    "CompiledGraph",
    "ConvergenceWarning",
    "EvidenceError",
    "FactorGraph",
    "FactorGraphError",
    "FactorNode",
    "InferenceResult",
    "belief_propagation",
    "min_sum",
    "sum_product",
    "__version__",
]
