"""Belief propagation: Numba kernels in the energy (negative log) domain, and their schedules.

One code path serves both semirings through a scalar ``temperature`` T = 1/beta:

    m_{a->i}(x_i) = softmin_T over x_{a - i} of [E_a(x_a) + sum_{j in a, j != i} m_{j->a}(x_j)]
    softmin_T(z) = -T log sum exp(-z / T),   softmin_0(z) = min(z)

so min-sum is the T -> 0 (beta -> inf) limit of log-domain sum-product (Yedidia, Freeman &
Weiss 2005, "Constructing free-energy approximations and generalized belief propagation
algorithms"; LeCun et al. 2006, "A Tutorial on Energy-Based Learning", sec. 6). Kernels
branch on ``temperature == 0.0`` once per message, never per table entry.

Every factor-to-variable message is shifted so that its minimum is 0 (a message that is
``+inf`` everywhere, an infeasible factor, stays ``+inf``), then damped as
``m <- damping * m_old + (1 - damping) * m_new`` (0 means no damping, as in libDAI and
PGMax). Infinite energies never meet ``inf - inf``: a variable's outgoing messages are
built from prefix and suffix sums of its incoming ones, or, in flooding, as the sum of the
finite incoming terms minus the factor's own message, with a separate count of the infinite
terms (exact in exact arithmetic; in floating point within a few ulps of the total).

Structured pairwise factors (``kinds[a]`` != ``KIND_DENSE``, with weight ``w`` and
truncation ``tau`` in ``params[a]``; :mod:`factorgraph_ebm.structured`) get their min-sum
messages in O(K) without reading a table (:mod:`.pairwise`); the truncated kinds use the
dense path at T > 0, and every kind keeps its dense table in ``energies`` (for factor
beliefs, the Bethe free energy, decoding and learning), except *compact* factors
(``dense=False``, an empty table in ``energies``), whose entries the kernels compute with
:func:`~factorgraph_ebm.structured.pair_entry` wherever a table would be read.

Plain graphs. The kernels that take ``kinds`` (:func:`factor_sweep`, :func:`edge_message`,
:func:`run_two_pass`, :func:`decode` and the flooding drivers) accept ``kinds=None`` for a
*plain* graph: every factor of arity <= 2 with a dense table (no structured kind), the
graphs of most models. Numba prunes the branches on ``kinds is None`` before typing, so that
specialization compiles neither the structured messages nor the generic (arity >= 3) ones:
with the flooding split below, a first tree-BP call compiles in half the time (measured
17.4 -> 8.7 s CPU).

Performance notes. Numba charges ~100 ns per call of a function with array arguments, and
keeps per-array reference counting in loops that call helpers taking the compiled graph
(a NamedTuple). So each kernel unpacks the arrays it needs once, the per-edge work is
written in the loop bodies or in helpers inlined at the Numba IR level that take plain
arrays, and only the generic (arity >= 3) factor message is a real call. Flooding runs its
variable side and its factor side as ``prange`` loops over chunks balanced by work: each new
message depends only on the previous iteration's messages, so the result is the same, bit
for bit, on any number of threads, and in any order of the factors: flooding takes each
class of factors with its own kernel (:func:`~.schedules.flood_order`), so that a call
compiles only the kernels of the classes its graph has.

The kernels assume validated input (see :mod:`factorgraph_ebm.inference`) and never raise.
Nor do they allocate: their work arrays come from Python (:class:`Scratch`), because an
allocation that fails inside a kernel leaks every array the kernel allocated before it
(measured: 2.4 GB for good after one failed call), and inside a ``prange`` loop surfaces as a
``SystemError``; in Python it is a plain ``MemoryError`` that frees what it must.
Tables are NumPy C order in the factor's declared scope order.

Modules, each importing only those before it:

- :mod:`.scratch`: the work arrays (:class:`Scratch`), allocated in Python;
- :mod:`.pairwise`: a pairwise factor's message, dense or structured;
- :mod:`.generic`: a factor's message for any arity (a walk over its table);
- :mod:`.factor`: one message of any factor (:func:`edge_message`), and storing it (shift,
  damping: :func:`store_message`);
- :mod:`.variables`: the variable side;
- :mod:`.sweeps`: flooding (a kernel per class of factors), the sequential sweep (from
  per-variable totals updated factor by factor), the exact two-pass schedule on forests;
- :mod:`.residual`: residual BP (Elidan et al. 2006), an indexed max-heap of message
  changes;
- :mod:`.beliefs`: variable and factor beliefs, Bethe terms;
- :mod:`.decode`: decoding an assignment, infeasible factors under evidence;
- :mod:`.schedules`: the Python drivers of the loopy schedules, in paced chunks.
"""

from .beliefs import (
    belief_totals,
    beliefs_from_totals,
    factor_beliefs,
    normalize_segments,
    normalized_factor_beliefs,
    variable_beliefs,
    variable_bethe_terms,
)
from .decode import decode, decode_order, infeasible_factors
from .factor import edge_message, store_message
from .generic import generic_message
from .pairwise import pair_message, table_pair_message
from .scratch import Scratch, scratch, unclamped, untouched_zeros
from .sweeps import (
    MODE_FRESH,
    MODE_FUSED,
    MODE_FUSED_FINITE,
    MODE_READ,
    MODE_SEQUENTIAL,
    PARALLEL_OPTIONS,
    factor_sweep,
    flood_dense_min_sum,
    flood_factors,
    flood_phase,
    flood_structured_min_sum,
    flood_sweeps,
    flood_unary,
    run_two_pass,
    sequential_sweep,
)
from .variables import variable_message, variable_messages, variable_sweep, variable_totals

__all__ = [
    "MODE_FRESH", "MODE_FUSED", "MODE_FUSED_FINITE", "MODE_READ", "MODE_SEQUENTIAL",
    "PARALLEL_OPTIONS", "Scratch", "belief_totals", "beliefs_from_totals", "decode",
    "decode_order", "edge_message", "factor_beliefs", "factor_sweep", "flood_dense_min_sum",
    "flood_factors", "flood_phase", "flood_structured_min_sum", "flood_sweeps", "flood_unary",
    "generic_message", "infeasible_factors", "normalize_segments",
    "normalized_factor_beliefs", "pair_message",
    "run_two_pass", "scratch", "sequential_sweep", "store_message", "table_pair_message",
    "unclamped", "untouched_zeros", "variable_beliefs", "variable_bethe_terms",
    "variable_message", "variable_messages", "variable_sweep", "variable_totals",
]
