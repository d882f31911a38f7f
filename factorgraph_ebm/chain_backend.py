"""The linear chain as an inference backend of the losses: batches of labeled sequences on
the trellis.

A loss (:mod:`factorgraph_ebm.losses`) is its rule over two energy terms; a backend supplies
the terms and their gradients (:meth:`~factorgraph_ebm.losses.Loss.evaluate`). The graph
backend runs belief propagation or the junction tree on one sample; this one runs the
trellis kernels (:mod:`factorgraph_ebm.trellis`) over a whole batch of sequences at once:

- ``E(Y^i)``: :func:`~factorgraph_ebm.trellis.path_energy`;
- ``min_Y E``: :func:`~factorgraph_ebm.trellis.viterbi`; the free energy F_beta and its
  gradient (the marginals): :func:`~factorgraph_ebm.trellis.forward_backward`;
- the most offending incorrect answer ``argmin_{Y != Y^i} E(Y)``, loss-augmented by
  :func:`~factorgraph_ebm.losses.hamming_energies` on the unary energies:
  :func:`~factorgraph_ebm.trellis.best_incorrect`.

Every figure is exact (a chain is a tree). The energy of a label sequence y of length T is

    E(y) = sum_t U[t, y_t] + sum_{t>=1} A[y_{t-1}, y_t] + s[y_0] + e[y_{T-1}],

and gradients come back with respect to (U, A, s, e).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .exceptions import FactorGraphError
from .losses import Term, hamming_energies
from .trellis import best_incorrect, forward_backward, path_energy, viterbi

__all__ = ["ChainBatch", "ChainGradient"]

#: Float64 entries of per-position transition marginals held at once when marginals are
#: weighted per sequence (MEE): 2**22 entries (32 MiB) per chunk of sequences.
_CHUNK_ENTRIES = 2**22


class ChainGradient(NamedTuple):
    """A gradient with respect to the chain's energies.

    Attributes
    ----------
    unary : ndarray of shape (n_tokens, L), float64
    transition : ndarray of shape (L, L), float64
    start, end : ndarray of shape (L,), float64
        Zeros when the batch has no start and end energies.
    """

    unary: np.ndarray
    transition: np.ndarray
    start: np.ndarray
    end: np.ndarray


class ChainBatch:
    """A batch of labeled sequences with their energies, as the losses see it.

    Parameters
    ----------
    unary : ndarray of shape (n_tokens, L), float64
        Unary energies, sequences concatenated.
    transition : ndarray of shape (L, L), float64
        Shared transition energies ``A[previous, next]``.
    start, end : ndarray of shape (L,), float64, or None
        Energies of the first and last label of each sequence (None: none).
    target : ndarray of shape (n_tokens,), int64, or None
        The desired labels Y^i, in 0..L-1 (None: only :meth:`lowest` is available).
    lengths : ndarray of shape (n_seq,), int64
        Sequence lengths, >= 0, summing to n_tokens (an empty sequence has energy 0 and no
        incorrect answer).

    Notes
    -----
    A chain has no latent variables and no forbidden sphere: the most offending answer is
    any ``Y != Y^i`` (a loss with ``radius > 0`` or a ``distance`` is refused).
    """

    has_latent = False

    def __init__(self, unary, transition, start, end, target, lengths):
        self.unary, self.transition, self.start, self.end = unary, transition, start, end
        self.target, self.lengths = target, lengths

    @property
    def n(self) -> int:
        """The number of sequences."""
        return len(self.lengths)

    def _trellis(self, unary=None) -> dict:
        return dict(unary=self.unary if unary is None else unary,
                    transition=self.transition, lengths=self.lengths, start=self.start,
                    end=self.end)

    def correct(self, beta) -> Term:
        """E(Y^i) per sequence (no latent variables: the same at every beta)."""
        energy = path_energy(**self._trellis(), states=self.target)
        return Term(energy, ("path", self.target), True, self.target)

    def lowest(self, beta) -> Term:
        """``min_Y E`` with the Viterbi paths (beta = inf), or the free energy F_beta with
        the marginals."""
        if math.isinf(beta):
            best = viterbi(**self._trellis())
            return Term(best.energy, ("path", best.states), True, best.states)
        fb = forward_backward(**self._trellis(), beta=beta)
        return Term(fb.free_energy, ("marginals", fb, beta), True)

    def offending(self, radius, distance, hamming) -> Term:
        """The (loss-augmented) energy of ``argmin_{Y != Y^i} E(Y) - hamming * Hamming(Y,
        Y^i)`` per sequence, ``+inf`` where no other path exists (L = 1).

        Raises
        ------
        FactorGraphError
            ``radius > 0`` or a ``distance`` (see :func:`check_loss`).
        """
        if radius or distance is not None:
            raise FactorGraphError(_NO_SPHERE)
        unary = self.unary
        if hamming:
            n_labels = unary.shape[1]
            unary = unary + hamming_energies(self.target[:, None],
                                             np.arange(n_labels)[None, :], hamming)
        bad = best_incorrect(**self._trellis(unary), target=self.target)
        return Term(bad.energy, ("path", bad.states), True, bad.states)

    def gradient(self, pairs) -> ChainGradient:
        """``sum_i coef_i * dTerm_i/d(U, A, s, e)`` over ``(term, coef)`` pairs, coef of
        shape (n_seq,) (zero where a term has no answer, e.g. no incorrect path)."""
        k = self.unary.shape[1]
        grad = ChainGradient(np.zeros_like(self.unary), np.zeros((k, k)), np.zeros(k),
                             np.zeros(k))
        for term, coef in pairs:
            kind = term.grad[0]
            if not np.any(coef):
                continue
            if kind == "path":
                self._add_paths(term.grad[1], coef, grad)
            else:
                self._add_marginals(term.grad[1], term.grad[2], coef, grad)
        return grad

    def _add_paths(self, states, weights, grad: ChainGradient) -> None:
        """Add ``weights[i] * dE(states_i)/d(U, A, s, e)`` of every sequence i."""
        k = self.unary.shape[1]
        lengths = self.lengths
        token_weight = np.repeat(weights, lengths)
        np.add.at(grad.unary, (np.arange(len(states)), states), token_weight)
        first, last, nonempty = self._bounds()
        inner = np.ones(len(states), dtype=bool)
        inner[first] = False
        pairs = states[:-1][inner[1:]] * k + states[1:][inner[1:]]
        grad.transition[...] += np.bincount(pairs, token_weight[1:][inner[1:]],
                                            minlength=k * k).reshape(k, k)
        if self.start is not None:
            grad.start[...] += np.bincount(states[first], weights[nonempty], minlength=k)
            grad.end[...] += np.bincount(states[last], weights[nonempty], minlength=k)

    def _bounds(self):
        """(first token, last token) of every nonempty sequence, and the nonempty mask."""
        ends = np.cumsum(self.lengths)
        nonempty = self.lengths > 0
        return (ends - self.lengths)[nonempty], ends[nonempty] - 1, nonempty

    def _add_marginals(self, fb, beta, weights, grad: ChainGradient) -> None:
        """Add ``weights[i] * dF_i/d(U, A, s, e)``: the marginals of sequence i."""
        if np.all(weights == weights[0]):  # NLL: the batch's summed marginals serve
            w = weights[0]
            grad.unary[...] += w * fb.marginals
            grad.transition[...] += w * fb.transition_marginals
            if self.start is not None:
                grad.start[...] += w * fb.start_marginals
                grad.end[...] += w * fb.end_marginals
            return
        # Weights that differ per sequence (MEE): the summed transition marginals do not
        # serve; per-position ones, chunk by chunk of sequences, do.
        grad.unary[...] += np.repeat(weights, self.lengths)[:, None] * fb.marginals
        first, last, nonempty = self._bounds()
        if self.start is not None:
            grad.start[...] += weights[nonempty] @ fb.marginals[first]
            grad.end[...] += weights[nonempty] @ fb.marginals[last]
        ends = np.cumsum(self.lengths)
        first = ends - self.lengths
        k = self.unary.shape[1]
        per_chunk = max(1, _CHUNK_ENTRIES // (k * k))
        lo = 0
        while lo < self.n:
            hi = int(np.searchsorted(ends, ends[lo] - self.lengths[lo] + per_chunk,
                                     side="right"))
            hi = max(hi, lo + 1)
            rows = slice(int(first[lo]), int(ends[hi - 1]))
            lengths = self.lengths[lo:hi]
            n_pairs = int(np.maximum(lengths - 1, 0).sum())
            if n_pairs:
                xi = forward_backward(
                    self.unary[rows], np.broadcast_to(self.transition, (n_pairs, k, k)),
                    lengths, beta=beta, start=self.start, end=self.end,
                ).transition_marginals
                pair_weight = np.repeat(weights[lo:hi], np.maximum(lengths - 1, 0))
                grad.transition[...] += np.tensordot(pair_weight, xi, axes=1)
            lo = hi


_NO_SPHERE = ("a forbidden sphere (radius > 0 or a distance) is not defined for sequence "
              "labels; on a chain the most offending answer is any Y != Y^i")


def check_loss(loss) -> None:
    """Refuse, before any training, a margin loss that a chain cannot evaluate.

    Raises
    ------
    FactorGraphError
        A loss with a forbidden sphere (``radius > 0`` or a ``distance``).
    """
    if getattr(loss, "radius", 0.0) or getattr(loss, "distance", None) is not None:
        raise FactorGraphError(f"{loss!r}: {_NO_SPHERE}")
