"""Exceptions and warnings raised by factorgraph_ebm."""


class FactorGraphError(ValueError):
    """Invalid model, option or input.

    Raised at the point where bad input enters the library (adding a variable or a factor,
    giving evidence, reading a file, passing options to inference). The message names the
    offending factor, variable, file and line where there is one, says what was expected and
    what was found.
    """


class EvidenceError(FactorGraphError):
    """Evidence that names an unknown variable, an out-of-range state, or that contradicts a
    hard constraint (a factor whose every configuration consistent with the evidence has
    energy ``+inf``)."""


class TargetError(FactorGraphError):
    """A desired answer (or list of latent variables) that does not fit the graph: an unknown
    variable, a state out of range, a latent variable given a desired state, an output
    variable without one, or a desired answer of infinite energy."""


class ConvergenceWarning(UserWarning):
    """Belief propagation stopped at ``max_iter`` before the largest message change fell
    below ``tol``. The result is still returned, with ``converged=False``."""


class NoFiniteAssignmentWarning(UserWarning):
    """Loopy belief propagation decoded an assignment of energy ``+inf`` on a model that is
    not proven infeasible: no finite-energy assignment was found, but one may exist. The
    result says ``feasible=None``; exact inference (``method="exact"``) settles it."""


class NotFittedError(FactorGraphError, AttributeError):
    """An estimator used before ``fit``: its fitted attributes (``weights_``, ...) and its
    prediction methods raise it.

    Like scikit-learn's ``sklearn.exceptions.NotFittedError`` it is both a ``ValueError`` and
    an ``AttributeError`` (so ``hasattr(estimator, "weights_")`` is False before ``fit``);
    :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` raises a subclass of scikit-learn's
    class once scikit-learn is imported, so ``except NotFittedError`` works with either.
    """

    def __reduce__(self):
        # that subclass is made at run time: a pickle (e.g. from a joblib worker) holds this
        # class, which every process has
        return NotFittedError, self.args
