"""Chains (trellises): Viterbi, forward-backward, k-best paths, the most offending incorrect
path and latent states, on ragged batches of sequences.

Energy of one state path y = (y_0, ..., y_{T-1}) of a sequence of length T::

    E(y) = sum_t unary[t, y_t] + sum_{t >= 1} transition_t[y_{t-1}, y_t] + start[y_0] + end[y_{T-1}]

Energies are unitless, lower is better, ``+inf`` forbids a state or a transition (a hard
constraint); NaN and ``-inf`` are refused. Logarithms are natural. A chain is the simplest
factor graph (unary factors on the tokens, pairwise factors between neighbours), on which
min-sum and sum-product belief propagation are exact; this module runs the same dynamic
programs directly on the trellis, many sequences at once, with no graph to build
(Viterbi 1967; Rabiner 1989, "A tutorial on hidden Markov models", sec. III and V.A for the
scaled forward-backward; Seshadri & Sundberg 1994, "List Viterbi decoding algorithms" for
k-best paths; LeCun, Chopra, Hadsell, Ranzato & Huang 2006, "A Tutorial on Energy-Based
Learning", sec. 2.2 and 6, for the most offending incorrect answer and free energies).

Batch layout (ragged)
---------------------
``unary`` : float64 (n_tokens, K), all sequences concatenated. ``lengths`` : int (n_seq,),
each >= 0, summing to n_tokens; ``None`` means one sequence of all n_tokens tokens.
``transition`` : (K, K) shared by all positions of all sequences, or per position
(n_tokens - n_nonempty_sequences, K, K): for each sequence in order, its T_i - 1 matrices
(matrix p between tokens t - 1 and t), concatenated. ``start``, ``end`` : optional (K,),
zero when absent. Tables are NumPy C order, ``transition[i, j]`` being the energy of
moving from state i (at t - 1) to state j (at t).

Latent states
-------------
``state_label`` : optional int (K,) maps each hidden state to a label in 0..L-1 (several
states may share a label: the trellis form of the tutorial's latent variable Z; default the
identity, L = K). ``clamp`` : optional int (n_tokens,) of labels restricts position t to the
states whose label is ``clamp[t]`` (-1 leaves it free). Clamped Viterbi gives the energy of
the desired answer with latent states, ``min_Z E(Y^i, Z)``; clamped forward-backward gives its
free energy ``-1/beta ln sum_Z exp(-beta E(Y^i, Z))`` and the marginals its gradient needs.

Tie rule and infeasible sequences
---------------------------------
Viterbi and k-best order paths by the energy the dynamic program computes (left-to-right
sums: ``((E_0 + tr) + E_1) + ...``, the order :func:`path_energy` uses, so that the two agree
bit for bit) and break exact ties in reverse lexicographic order of the state path: the
path with the lower last state first, then the lower second-to-last state, and so on.
A sequence whose every path has energy ``+inf`` gets energy ``+inf`` and the all-zero state
path; an empty sequence has one path, the empty one, of energy 0.

Numerics of forward-backward
----------------------------
With a shared transition matrix the forward and backward recursions run in the scaled
probability domain (Rabiner's scaling): ``M = exp(-beta (transition - min))`` once, then per
token one (K,) vector-matrix product and K exponentials, the vectors renormalized and their
log scales summed. Every quantity kept is either exactly zero because no feasible path
reaches it (checked) or at least 1e-290, so nothing underflows silently; when that cannot be
guaranteed (a transition range ``beta * (max - min)`` above 300, a state that would
underflow, per-position transitions) that sequence runs the log-domain recursion instead:
max-shifted soft minima kept in energy units (so that ``beta * energy`` never overflows),
about 3 K^2 exponentials per token, tens of times slower. Free energies are accumulated in
energy units, ln Z = -beta F derived from them. Results never contain NaN.

Batches and threads
-------------------
Sequences are independent: a batch of several sequences with enough work (tokens x K^2 at
least :data:`PARALLEL_WORK`) runs on Numba's threads (``prange``), a small one serially.
Every per-sequence result is the same as that of a one-sequence call; the shared transition
marginals are summed over fixed chunks of sequences in a fixed order, so they do not depend
on the number of threads either (they may differ from a sum of one-sequence calls in the
last bits). A batch runs as several kernel calls on ranges of its sequences (of its fixed
chunks, for forward-backward) of about 0.1 s each, so that Ctrl-C stops it
(:mod:`factorgraph_ebm._pacing`); the results are those of one call, bit for bit. The
kernels' work arrays are allocated in Python, one row per thread.

Numba kernels for other njit code
---------------------------------
:func:`viterbi_kernel` ``(unary (T, K), transition (K, K), start (K,), end (K,),
out_states (T,) int64) -> float`` and :func:`path_energy_kernel` ``(unary, transition,
start, end, states) -> float`` are ``@njit`` functions on one sequence, callable from other
``@njit`` code (e.g. a perceptron training loop): float64 arrays (start and end as zero
arrays when absent), validated by the caller; the tie rule is the one above. They allocate
only NumPy scratch arrays and never raise.

Modules: :mod:`.paths` (Viterbi, path energies, the ``@njit`` kernels), :mod:`.marginals`
(forward-backward, min-marginals), :mod:`.ranked` (k-best), :mod:`.offending` (most offending
incorrect path), over the batch layout of :mod:`._batch` and the inner loops of
:mod:`._semiring`.
"""

from .marginals import ForwardBackwardResult, forward_backward
from .offending import best_incorrect
from .paths import ViterbiResult, path_energy, path_energy_kernel, viterbi, viterbi_kernel
from .ranked import KBestResult, kbest

__all__ = [
    "ForwardBackwardResult",
    "KBestResult",
    "ViterbiResult",
    "best_incorrect",
    "forward_backward",
    "kbest",
    "path_energy",
    "path_energy_kernel",
    "viterbi",
    "viterbi_kernel",
]
