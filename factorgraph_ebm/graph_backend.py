"""The graph backend of the losses on a batch: n samples of one factor graph, each kind of
inference run once for the whole batch.

A loss (:mod:`factorgraph_ebm.losses`) is its rule over two energy terms; a backend supplies
the terms (:meth:`~factorgraph_ebm.losses.Loss.evaluate`). The one-sample graph backend
(``losses._Sample``) runs one :func:`~factorgraph_ebm.inference.infer_checked` per term;
:class:`GraphBatch` holds n such samples (their energies, desired answers, one-hot parts and
the steps of the most offending answer stay theirs: one home per rule) and runs each
inference of a term as one :func:`~factorgraph_ebm.batch.batch_infer_checked` call, whose
item b is the single call on sample b bit for bit. So every term, value and gradient is that
of the samples one by one, bit for bit; what is saved is the Python overhead of n calls and
n kernel launches.

Batched calls take no warm-start messages, so :func:`~factorgraph_ebm.train.fit` uses this
backend only where the single calls would not read them either (:func:`warm_start_unused`),
or when warm start is off.
"""

from __future__ import annotations

import math

import numpy as np

from .batch import batch_infer_checked
from .exceptions import EvidenceError
from .inference import check_method_for_beta
from .losses import (
    INF,
    EnergyLoss,
    MarginLoss,
    MostOffending,
    Term,
    _allowed_states,
    _FreeEnergyDifference,
    _hamming_unary,
    _offending_from_decoded,
    _offending_from_free,
)

__all__ = ["GraphBatch", "batches_loss", "warm_start_unused"]

#: The ``terms`` of the package's losses, which ask the backend only for ``correct``,
#: ``lowest`` and ``offending``; a loss with other terms runs sample by sample.
_BATCHED_TERMS = (EnergyLoss.terms, _FreeEnergyDifference.terms, MarginLoss.terms)


def batches_loss(loss) -> bool:
    """Whether :class:`GraphBatch` can give the loss's terms (the package's losses)."""
    return getattr(type(loss), "terms", None) in _BATCHED_TERMS


def warm_start_unused(cg, options) -> bool:
    """Whether inference with these options never reads warm-start messages on this graph:
    the junction tree (``method="exact"``), TRW-S (``method="trws"``), and belief
    propagation's two-pass schedule on a forest (``method`` "auto" or "bp" with
    ``schedule`` "auto" or "tree"), which computes every message from the energies alone.
    Loopy BP (also "auto" on a loopy graph, where sum-product may fall back to BP when the
    junction tree does not fit) does read them."""
    if options.method in ("exact", "trws"):
        return True
    return bool(cg.is_forest) and options.schedule in ("auto", "tree")


class GraphBatch:
    """The graph backend on n samples of one graph (see the module docstring).

    Parameters
    ----------
    samples : sequence of _Sample
        n >= 1 samples of one graph with the same inference options and latent variables,
        without warm-start stores (``messages=None``).

    Notes
    -----
    Terms are those of :class:`~factorgraph_ebm.losses.Term` over the batch: ``energy`` of
    shape (n,), ``grad`` a list of n per-sample gradients (ndarray (M,) or None), ``answer``
    a list of n configurations (or None) for min-sum terms, ``exact`` whether every
    sample's inference was exact. :meth:`gradient` returns an ndarray (n, M): each row the
    gradient of that sample's loss, as the one-sample backend computes it.
    """

    def __init__(self, samples):
        self.samples = list(samples)
        first = self.samples[0]
        self.graph, self.cg, self.options = first.graph, first.cg, first.options
        self.thetas = np.stack([s.theta for s in self.samples])
        self.desired = np.stack([s.desired for s in self.samples])
        self.has_latent = any(s.has_latent for s in self.samples)

    def infer(self, beta, observed=None, unary=None, items=None) -> list:
        """One batched inference on the samples ``items`` (default all): a list of their
        :class:`~factorgraph_ebm.InferenceResult`; ``observed`` (k, n_variables) int64 and
        ``unary`` (k, S) per item as :func:`~factorgraph_ebm.batch.batch_infer_checked`."""
        check_method_for_beta(self.options.method, beta)
        thetas = self.thetas if items is None else self.thetas[items]
        return list(batch_infer_checked(self.graph, self.cg, thetas, beta, self.options,
                                        observed=observed, unary=unary))

    def _soft_min(self, beta, clamped) -> Term:
        """As the one-sample ``_soft_min``, for the whole batch in one inference."""
        if clamped and not self.has_latent:
            return _stacked([s._soft_min(beta, clamped=True) for s in self.samples])
        results = self.infer(beta, observed=self.desired if clamped else None)
        return _stacked([s.term_of(r, beta) for s, r in zip(self.samples, results)])

    def correct(self, beta) -> Term:
        """E_C of every sample at inverse temperature beta.

        Raises
        ------
        TargetError
            That of the first sample whose E_C is +inf, as the one-sample backend raises it.
        """
        try:
            term = self._soft_min(beta, clamped=True)
        except EvidenceError:
            for sample in self.samples:  # the first sample that fails, and its message
                sample.correct(beta)
            raise
        infinite = np.flatnonzero(term.energy == INF)
        if infinite.size:
            raise self.samples[infinite[0]].infinite_target()
        return term

    def lowest(self, beta) -> Term:
        """``min_Y E`` (beta = inf, with the minimizers) or F_beta of every free graph."""
        return self._soft_min(beta, clamped=False)

    def offending(self, radius, distance, hamming) -> Term:
        """The (loss-augmented) energy of every sample's most offending incorrect answer
        (:func:`~factorgraph_ebm.losses.most_offending`): one batched min-sum, then one
        for the samples whose minimum is excluded (decoded with a clamp)."""
        samples = self.samples
        allowed = [_allowed_states(s, radius, distance) for s in samples]
        unary = np.stack([_hamming_unary(s, hamming) for s in samples]) if hamming else None
        free = self.infer(math.inf, unary=unary)
        found = [_offending_from_free(s, f, a, hamming)
                 for s, f, a in zip(samples, free, allowed)]
        pending = [b for b, f in enumerate(found) if not isinstance(f, MostOffending)]
        if pending:
            decoded = self.infer(math.inf, observed=np.stack([found[b] for b in pending]),
                                 unary=None if unary is None else unary[pending],
                                 items=pending)
            for b, result in zip(pending, decoded):
                found[b] = _offending_from_decoded(samples[b], result, free[b].exact, hamming)
        return Term(np.array([f.augmented_energy for f in found]),
                    [None if f.assignment is None else s.parts(f.assignment)
                     for s, f in zip(samples, found)],
                    all(f.exact for f in found), [f.assignment for f in found])

    def gradient(self, pairs) -> np.ndarray:
        """ndarray (n, M): row b is ``sum coef[b] * dTerm_b/d(theta)`` over the
        ``(term, coef)`` pairs, coef of shape (n,)."""
        return np.stack([
            sample.combined([(term.grad[b], float(coef[b])) for term, coef in pairs])
            for b, sample in enumerate(self.samples)
        ])


def _stacked(terms) -> Term:
    """One batch term from n one-sample terms."""
    answers = [t.answer for t in terms]
    return Term(np.concatenate([t.energy for t in terms]), [t.grad for t in terms],
                all(t.exact for t in terms),
                None if all(a is None for a in answers) else answers)

