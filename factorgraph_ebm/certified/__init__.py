"""Certified MAP on loopy graphs: an assignment, a proven lower bound on the minimum energy,
and the gap between them.

- :mod:`.problem`: the MAP problem as flat arrays for the dual (per-state energies, the
  variable order, coupling factors before and after each variable);
- :mod:`.trws`: TRW-S passes (Kolmogorov 2006; SRMP, Kolmogorov 2015, for arity >= 3) and
  the dual bound;
- :mod:`.consistency`: arc consistency over ``+inf`` energies, with a trail;
- :mod:`.decode`: decoding with clamping, propagation and bounded backtracking;
- :mod:`.local_search`: iterated conditional modes, one variable or one factor's scope at a
  time;
- :mod:`.chains`: exact moves of whole chains of variables (Viterbi on induced paths);
- :mod:`.expansion`: expansion moves by a minimum cut (SciPy's maximum flow);
- :mod:`.api`: :func:`trws`, which puts them together.
"""

from .api import DECODE_BUDGET, OPTIMALITY_ATOL, OPTIMALITY_RTOL, run_trws, trws

__all__ = ["DECODE_BUDGET", "OPTIMALITY_ATOL", "OPTIMALITY_RTOL", "run_trws", "trws"]
