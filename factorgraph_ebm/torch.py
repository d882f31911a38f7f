"""PyTorch bridge: the library's inference and losses as differentiable torch operations.

Energy-based learning trains the whole system end to end (LeCun, Chopra, Hadsell, Ranzato &
Huang 2006, "A Tutorial on Energy-Based Learning", sec. 1 and 7): an energy network of any
architecture produces the energies of a factor graph, inference and a loss run on the
graph, and dL/d(energies) flows back into the network. The functions here are
:class:`torch.autograd.Function` s whose forward pass runs this library's inference and
losses and whose backward pass returns the library's own dL/d(energies):

- on a fixed-structure :class:`~factorgraph_ebm.FactorGraph`, from its flat energy vector
  theta (shape ``(M,)`` or a batch ``(B, M)``; see
  :class:`~factorgraph_ebm.compiled.CompiledGraph` for the layout):
  :func:`graph_min_energy` (``min_Y E``, gradient the one-hot of the minimizer),
  :func:`graph_free_energy` (``F_beta``, gradient the factor marginals) and
  :func:`graph_loss` (any :class:`~factorgraph_ebm.losses.Loss`, through its
  ``value_and_grad``, latent variables included);
- on chains (:mod:`factorgraph_ebm.trellis`), from padded unary energies ``(B, T, K)`` with
  sequence lengths and a transition table ``(K, K)`` (optional start and end energies
  ``(K,)``): :func:`chain_min_energy` (Viterbi), :func:`chain_free_energy`
  (forward-backward) and :func:`chain_loss` (every loss of the chain backend
  :class:`~factorgraph_ebm.chain_backend.ChainBatch`: energy, NLL, MEE, perceptron and the
  margin losses, Hamming-augmented or not; a forbidden sphere is graph-only), the whole
  batch in one call of the trellis kernels.

:class:`GraphEnergyModel` and :class:`ChainEnergyModel` (:class:`torch.nn.Module`) make an
energy network plus a factor graph (or a chain with a learned transition table) a trainable
model.

Conventions
-----------
- Every computation runs in float64 NumPy on the CPU. Float32 and float64 tensors are
  accepted; values and gradients come back in the input's dtype. Tensors on another device
  (a GPU) are copied to the CPU for inference and the results copied back to that device:
  correct, but each call pays the two transfers.
- The min-sum quantities (minimum energy, perceptron and margin losses) are piecewise linear
  in the energies: the backward pass returns the gradient of the piece the forward pass
  found (a subgradient at ties), as the library's trainer does.
- Exactness is the library's: exact on forests and chains and wherever
  :func:`~factorgraph_ebm.belief_propagation` picks the junction tree (``method="auto"`` on
  small loopy graphs, or ``method="exact"``); with ``method="bp"`` on a loopy graph the free
  energy is the Bethe free energy and its gradient the converged beliefs (the derivative of
  the Bethe free energy at a fixed point).
- Backward passes are not themselves differentiable (no double backward).

Installation: ``pip install 'factorgraph-ebm[torch]'`` (PyTorch >= 2.1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

try:
    import torch
    from torch.autograd.function import once_differentiable
except ImportError as _error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "factorgraph_ebm.torch needs PyTorch, which is not installed: install the optional "
        "extra with  pip install 'factorgraph-ebm[torch]'  (or pip install torch)"
    ) from _error

import numpy as np

from .batch import batch_belief_propagation
from .chain_backend import ChainBatch, check_loss
from .compiled import require_tables
from .energy import table_entries_of
from .exceptions import FactorGraphError, TargetError
from .graph import FactorGraph
from .graph_backend import GraphBatch, batches_loss
from .inference import Options, belief_propagation, check_method_for_beta, checked_beta
from .losses import Loss, _Sample
from .trellis import viterbi

__all__ = [
    "ChainEnergyModel",
    "GraphEnergyModel",
    "chain_free_energy",
    "chain_loss",
    "chain_min_energy",
    "graph_free_energy",
    "graph_loss",
    "graph_min_energy",
]


# --------------------------------------------------------------------------- the bridge
def _to_numpy(tensor) -> np.ndarray | None:
    """float64 NumPy copy on the CPU (None stays None)."""
    if tensor is None:
        return None
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy()


class _Bridge(torch.autograd.Function):
    """Runs ``compute(*float64 arrays) -> (values, vjp)`` in the forward pass and
    ``vjp(dL/dvalues) -> (dL/d input for each input)`` in the backward pass (NumPy,
    float64, CPU), converting to and from the tensors' dtype and device."""

    @staticmethod
    def forward(ctx, compute, reference, *tensors):
        values, vjp = compute(*(_to_numpy(t) for t in tensors))
        ctx.vjp = vjp
        ctx.like = [None if t is None else (t.dtype, t.device) for t in tensors]
        return torch.as_tensor(values, dtype=reference.dtype).to(reference.device)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grads = ctx.vjp(_to_numpy(grad_output))
        out = [None, None]
        for grad, like, needed in zip(grads, ctx.like, ctx.needs_input_grad[2:]):
            if grad is None or like is None or not needed:
                out.append(None)
            else:
                out.append(torch.as_tensor(grad).to(dtype=like[0], device=like[1]))
        return tuple(out)


def _check_float(name, tensor, ndims) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise FactorGraphError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise FactorGraphError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if tensor.dim() not in ndims:
        expected = " or ".join(str(n) for n in ndims)
        raise FactorGraphError(
            f"{name} must have {expected} dimensions, got shape {tuple(tensor.shape)}"
        )


# --------------------------------------------------------------------------- factor graphs
def _graph_theta(graph, theta, what) -> tuple[torch.Tensor, bool]:
    """(theta as (B, M), whether the input was a single (M,) vector)."""
    if not isinstance(graph, FactorGraph):
        raise FactorGraphError(f"graph must be a FactorGraph, got {type(graph).__name__}")
    require_tables(graph, what)
    _check_float("theta", theta, (1, 2))
    m = graph.compile().n_energy_entries
    if theta.shape[-1] != m:
        raise FactorGraphError(
            f"theta must have {m} entries per sample (the graph's flat energy vector), got "
            f"shape {tuple(theta.shape)}"
        )
    single = theta.dim() == 1
    return (theta[None] if single else theta), single


def _apply(compute, theta, single):
    values = _Bridge.apply(compute, theta, theta)
    return values[0] if single else values


def _onehot(cg, assignment, size) -> np.ndarray:
    """dE(assignment)/d(theta): 1.0 at the table entry each factor selects."""
    return np.bincount(table_entries_of(cg, assignment), minlength=size).astype(np.float64)


def _rowwise(grads):
    """vjp of per-sample values whose gradients are the rows of ``grads`` (B, M)."""
    return lambda g: (g[:, None] * grads,)


#: Options of :func:`~factorgraph_ebm.belief_propagation` that batched inference takes
#: none of: with either, the bridge runs one single call per sample.
_UNBATCHED_OPTIONS = ("init_messages", "callback")


def _infer_rows(graph, thetas, beta, bp_options) -> list:
    """The :class:`~factorgraph_ebm.InferenceResult` of every row of ``thetas`` (B, M):
    one :func:`~factorgraph_ebm.batch.batch_belief_propagation` call, whose item b is the
    single call on row b bit for bit; one single call per row when ``bp_options`` carry
    warm-start messages or a callback, which batched inference does not take."""
    if len(thetas) == 0:
        return []
    if any(bp_options.get(name) is not None for name in _UNBATCHED_OPTIONS):
        return [belief_propagation(graph, beta=beta, energies=row, **bp_options)
                for row in thetas]
    return list(batch_belief_propagation(graph, beta=beta, energies=thetas, **bp_options))


def graph_min_energy(graph: FactorGraph, theta: torch.Tensor, **bp_options) -> torch.Tensor:
    """The lowest energy ``min_Y E(Y)`` of a factor graph with energies theta,
    differentiable in theta.

    Parameters
    ----------
    graph : FactorGraph
        The structure (every factor with a table: no compact structured factors).
    theta : torch.Tensor of shape (M,) or (B, M), float32 or float64
        Flat energy vectors (one per sample), in the layout of ``graph.compile().energies``.
    **bp_options
        Passed to :func:`~factorgraph_ebm.belief_propagation` with ``beta=inf`` (e.g.
        ``evidence``, ``method``, ``max_iter``). The batch runs as one call of
        :func:`~factorgraph_ebm.batch.batch_belief_propagation` (each sample's result that
        of a single call, bit for bit), except with ``init_messages`` or a ``callback``,
        which batched inference does not take: then one single call per sample.

    Returns
    -------
    torch.Tensor of shape () or (B,)
        The minimum energy of each sample (``+inf`` when every configuration is forbidden),
        theta's dtype and device. Its gradient is the one-hot vector of the table entries
        that the minimizer selects (a subgradient at ties).

    Raises
    ------
    FactorGraphError
        A graph with compact structured factors, theta of the wrong shape or dtype, or
        what :func:`~factorgraph_ebm.belief_propagation` raises.

    Examples
    --------
    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import graph_min_energy
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> theta = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    >>> low = graph_min_energy(g, theta)
    >>> low.backward()
    >>> low.item(), theta.grad.tolist()
    (1.0, [1.0, 0.0, 0.0, 0.0])
    """
    batch, single = _graph_theta(graph, theta, "graph_min_energy")
    cg = graph.compile()

    def compute(thetas):
        values = np.empty(len(thetas))
        grads = np.zeros_like(thetas)
        for b, result in enumerate(_infer_rows(graph, thetas, math.inf, bp_options)):
            values[b] = result.energy
            grads[b] = _onehot(cg, result.assignment, thetas.shape[1])
        return values, _rowwise(grads)

    return _apply(compute, batch, single)


def graph_free_energy(
    graph: FactorGraph, theta: torch.Tensor, *, beta: float = 1.0, **bp_options
) -> torch.Tensor:
    """The free energy ``F_beta = -1/beta ln sum_Y exp(-beta E(Y))`` of a factor graph with
    energies theta, differentiable in theta.

    Parameters
    ----------
    graph : FactorGraph
        The structure (every factor with a table).
    theta : torch.Tensor of shape (M,) or (B, M), float32 or float64
        Flat energy vectors, in the layout of ``graph.compile().energies``.
    beta : float, default=1.0
        Inverse temperature, > 0 (``inf`` gives :func:`graph_min_energy`).
    **bp_options
        Passed to :func:`~factorgraph_ebm.belief_propagation` (e.g. ``evidence``,
        ``method``, ``tol``). One batched call for the whole batch, as in
        :func:`graph_min_energy` (one single call per sample with ``init_messages`` or a
        ``callback``).

    Returns
    -------
    torch.Tensor of shape () or (B,)
        F_beta of each sample; its gradient is the vector of factor marginals
        (``result.factor_beliefs``). Exact on forests and with the junction tree; with
        ``method="bp"`` on a loopy graph, the Bethe free energy and the beliefs of the
        converged BP (its gradient at the fixed point).

    Raises
    ------
    FactorGraphError
        As :func:`graph_min_energy`, and a beta that is not > 0.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import graph_free_energy
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> theta = torch.tensor([1.0, 3.0, 2.0, 4.0], dtype=torch.float64, requires_grad=True)
    >>> free = graph_free_energy(g, theta)
    >>> free.backward()
    >>> round(free.item(), 6), round(-math.log(sum(math.exp(-e) for e in (1, 3, 2, 4))), 6)
    (0.55981, 0.55981)
    >>> [round(p, 4) for p in theta.grad.tolist()]      # P(a, b)
    [0.6439, 0.0871, 0.2369, 0.0321]
    """
    beta = checked_beta(beta)
    if math.isinf(beta):
        return graph_min_energy(graph, theta, **bp_options)
    batch, single = _graph_theta(graph, theta, "graph_free_energy")

    def compute(thetas):
        values = np.empty(len(thetas))
        grads = np.zeros_like(thetas)
        for b, result in enumerate(_infer_rows(graph, thetas, beta, bp_options)):
            values[b] = result.free_energy
            grads[b] = result.factor_beliefs
        return values, _rowwise(grads)

    return _apply(compute, batch, single)


def _per_sample(name, value, n, kind):
    """``value`` as a list of n items: one shared ``kind`` instance, or a sequence of n."""
    if isinstance(value, kind):
        return [value] * n
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n:
        raise TargetError(
            f"{name} must be one {kind.__name__} or a sequence of {n} (one per sample), "
            f"got {type(value).__name__}"
            + (f" of length {len(value)}" if isinstance(value, Sequence) else "")
        )
    return list(value)


def graph_loss(
    graph: FactorGraph,
    theta: torch.Tensor,
    loss: Loss,
    targets,
    *,
    latent: Iterable = (),
    messages: Sequence[dict] | None = None,
    **bp_options,
) -> torch.Tensor:
    """The value of a per-sample loss of energy-based learning, differentiable in theta.

    Sample b's loss is ``loss.value_and_grad(graph, target, energies=theta[b], latent=...)``
    (:class:`~factorgraph_ebm.losses.Loss`): the forward pass returns its ``value``, the
    backward pass its ``grad`` (dL/d(theta)) times the incoming gradient. The batch runs as
    the trainer's does: each inference of the loss one batched call for all samples
    (:class:`~factorgraph_ebm.graph_backend.GraphBatch`; values and gradients those of the
    samples one by one, bit for bit). It runs sample by sample with warm-start
    ``messages``, an inference ``callback`` (batched inference takes neither), or a loss
    whose terms are not the package's
    (:func:`~factorgraph_ebm.graph_backend.batches_loss`).

    Parameters
    ----------
    graph : FactorGraph
        The structure (every factor with a table).
    theta : torch.Tensor of shape (M,) or (B, M), float32 or float64
        Flat energy vectors, in the layout of ``graph.compile().energies``.
    loss : Loss
        Any loss of :mod:`factorgraph_ebm.losses` (e.g. ``HingeLoss(margin=1.0)``,
        ``NLLLoss(beta=1.0)``).
    targets : mapping or sequence of B mappings
        The desired answer Y^i (output variable name -> state) of every sample, or one
        mapping shared by all.
    latent : iterable of variable names, default=()
        Latent variables Z (no desired state): minimized over, or summed over at the
        loss's beta.
    messages : sequence of B dicts, optional
        Warm-start stores of belief propagation, one per sample (see
        :meth:`~factorgraph_ebm.losses.Loss.value_and_grad`).
    **bp_options
        Inference options of :func:`~factorgraph_ebm.belief_propagation` (``method``,
        ``schedule``, ``max_iter``, ``tol``, ``damping``, ``warn``, ...), checked once.

    Returns
    -------
    torch.Tensor of shape () or (B,)
        The loss of each sample, theta's dtype and device.

    Raises
    ------
    TargetError
        Bad targets (see :meth:`~factorgraph_ebm.losses.Loss.value_and_grad`), or targets
        that are neither one mapping nor B of them.
    FactorGraphError
        As :func:`graph_min_energy`.

    Examples
    --------
    The hinge loss of :class:`~factorgraph_ebm.HingeLoss`'s example, on a batch of two
    copies of the energies with different desired answers:

    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import graph_loss
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[1.0, 3.0], [2.0, 4.0]])
    >>> theta = torch.tensor([[1.0, 3.0, 2.0, 4.0]] * 2, requires_grad=True)
    >>> value = graph_loss(g, theta, fe.HingeLoss(margin=1.0),
    ...                    [{"a": 1, "b": 0}, {"a": 0, "b": 0}])
    >>> value.tolist()                  # max(0, 1 + 2 - 1), max(0, 1 + 1 - 2)
    [2.0, 0.0]
    >>> value.sum().backward()
    >>> theta.grad.tolist()             # onehot(1, 0) - onehot(0, 0); zero
    [[-1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    if not isinstance(loss, Loss):
        raise FactorGraphError(f"loss must be a Loss, got {type(loss).__name__}")
    batch, single = _graph_theta(graph, theta, "graph_loss")
    n = batch.shape[0]
    targets = _per_sample("targets", targets, n, Mapping)
    stores = [None] * n if messages is None else _per_sample("messages", messages, n, dict)
    latent = list(latent)
    options = Options.checked(**bp_options)
    # Refused before any sample, as the trainer does: the loop and the batch would
    # otherwise meet it at different samples, after different errors of their own.
    check_method_for_beta(options.method, getattr(loss, "beta", math.inf))
    batched = n > 0 and messages is None and options.callback is None and batches_loss(loss)

    def compute(thetas):
        if batched:
            # The first sample checks the memory the inference needs, with the options.
            first = _Sample(graph, targets[0], thetas[0], latent, None, bp_options)
            samples = [first] + [_Sample(graph, targets[b], thetas[b], latent, None,
                                         first.options) for b in range(1, n)]
            found = loss.evaluate(GraphBatch(samples))
            return found.value, _rowwise(found.grad)
        values = np.empty(n)
        grads = np.zeros_like(thetas)
        for b, row in enumerate(thetas):
            step = loss.value_and_grad(graph, targets[b], energies=row, latent=latent,
                                       messages=stores[b], **bp_options)
            values[b] = step.value
            grads[b] = step.grad
        return values, _rowwise(grads)

    return _apply(compute, batch, single)


# --------------------------------------------------------------------------- chains
class _Chains:
    """A padded batch (B, T, K) and its ragged trellis layout (n_tokens, K)."""

    def __init__(self, unary, transition, lengths, start, end):
        _check_float("unary", unary, (2, 3))
        self.single = unary.dim() == 2
        if self.single:
            unary = unary[None]
        self.unary = unary
        n, t, k = unary.shape
        for name, tensor, shape in (("transition", transition, (k, k)), ("start", start, (k,)),
                                    ("end", end, (k,))):
            if tensor is None and name != "transition":
                continue
            _check_float(name, tensor, (len(shape),))
            if tuple(tensor.shape) != shape:
                raise FactorGraphError(
                    f"{name} must have shape {shape} for K = {k} states, got "
                    f"{tuple(tensor.shape)}"
                )
        if lengths is None:
            lengths = np.full(n, t, dtype=np.int64)
        else:
            if isinstance(lengths, torch.Tensor):
                lengths = lengths.detach().cpu().numpy()
            lengths = np.asarray(lengths)
            if lengths.shape != (n,) or (lengths.size and lengths.dtype.kind not in "iu"):
                raise FactorGraphError(
                    f"lengths must be {n} integers (one per sequence), got {lengths!r}"
                )
            lengths = lengths.astype(np.int64)
            bad = np.flatnonzero((lengths < 0) | (lengths > t))
            if bad.size:
                raise FactorGraphError(
                    f"lengths[{bad[0]}] = {lengths[bad[0]]} is out of range 0..{t} (the "
                    "padded length of unary)"
                )
        self.lengths = lengths
        self.mask = np.arange(t)[None, :] < lengths[:, None]
        self.shape = (n, t, k)

    def flat(self, padded: np.ndarray) -> np.ndarray:
        """(n_tokens, ...) from a padded (B, T, ...) array."""
        return np.ascontiguousarray(padded[self.mask])

    def padded(self, flat: np.ndarray) -> np.ndarray:
        out = np.zeros(self.mask.shape + flat.shape[1:])
        out[self.mask] = flat
        return out

    def labels(self, labels) -> np.ndarray:
        """The desired labels, flat int64 (n_tokens,), from (B, T) (or (T,) for a single
        sequence); padding is ignored."""
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if self.single and labels.ndim == 1:
            labels = labels[None]
        if labels.shape != self.mask.shape or (labels.size and labels.dtype.kind not in "iu"):
            raise TargetError(
                f"labels must be integers of shape {self.mask.shape[1 - self.single:]} (the "
                f"padded batch), got {labels.dtype} of shape {labels.shape}"
            )
        flat = labels[self.mask].astype(np.int64)
        bad = np.flatnonzero((flat < 0) | (flat >= self.shape[2]))
        if bad.size:
            b, t = np.argwhere(self.mask)[bad[0]]
            raise TargetError(
                f"labels[{b}, {t}] = {flat[bad[0]]} is out of range 0..{self.shape[2] - 1}"
            )
        return flat

    def batch(self, unary, transition, start, end, labels=None) -> ChainBatch:
        """The chain backend of the losses on the float64 arrays of the padded batch."""
        return ChainBatch(self.flat(unary), transition, start, end, labels, self.lengths)

    def apply(self, compute, unary, transition, start, end):
        values = _Bridge.apply(compute, unary, unary, transition, start, end)
        return values[0] if self.single else values

    def backward(self, batch: ChainBatch, pairs, g):
        """vjp: ``sum_b g_b sum_(term, coef) coef_b dTerm_b/d(unary, transition, start,
        end)`` by the backend (:meth:`ChainBatch.gradient`); a term of energy ``+inf`` (no
        path, or no incorrect path) is constant: it contributes nothing."""
        grad = batch.gradient([(term, np.where(np.isfinite(term.energy), g * coef, 0.0))
                               for term, coef in pairs])
        boundary = batch.start is not None
        return (self.padded(grad.unary), grad.transition,
                grad.start if boundary else None, grad.end if boundary else None)


def _lowest(chains, beta, unary, trans, start, end):
    """(``min_y E`` or F_beta per sequence, vjp) by the chain backend."""
    batch = chains.batch(unary, trans, start, end)
    term = batch.lowest(beta)
    return term.energy, lambda g: chains.backward(batch, [(term, 1.0)], g)


def chain_min_energy(
    unary: torch.Tensor,
    transition: torch.Tensor,
    lengths=None,
    *,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
) -> torch.Tensor:
    """The lowest path energy of every sequence of a padded batch (Viterbi), differentiable
    in the energies.

    A path's energy is ``sum_t unary[t, y_t] + sum_{t>=1} transition[y_{t-1}, y_t]
    + start[y_0] + end[y_{T-1}]`` (:mod:`factorgraph_ebm.trellis`).

    Parameters
    ----------
    unary : torch.Tensor of shape (B, T, K) or (T, K), float32 or float64
        Per-token state energies, padded to the longest sequence (padding is ignored and
        gets zero gradient); ``+inf`` forbids.
    transition : torch.Tensor of shape (K, K)
        ``transition[i, j]``: the energy of state i followed by state j.
    lengths : array_like or torch.Tensor of int, shape (B,), optional
        Sequence lengths, 0..T (default: all T).
    start, end : torch.Tensor of shape (K,), optional
        Energies of the first and of the last state.

    Returns
    -------
    torch.Tensor of shape (B,) or ()
        ``min_y E(y)`` per sequence (0 for an empty one, ``+inf`` if every path is
        forbidden); its gradient is the one-hot of the Viterbi path's entries.

    Raises
    ------
    FactorGraphError
        Wrong shapes or dtypes, lengths out of range, and what
        :func:`~factorgraph_ebm.trellis.viterbi` raises (NaN or ``-inf`` energies).

    Examples
    --------
    The batch of :func:`~factorgraph_ebm.trellis.viterbi`'s example, padded:

    >>> import torch
    >>> from factorgraph_ebm.torch import chain_min_energy
    >>> unary = torch.tensor([[[0, 1.5], [1, 0.25], [0, 2]],
    ...                       [[2, 0], [0.5, 0], [0, 0]]], requires_grad=True)
    >>> transition = torch.tensor([[0.0, 1.0], [1.5, 0.0]], requires_grad=True)
    >>> low = chain_min_energy(unary, transition, lengths=[3, 2])
    >>> low.tolist()
    [1.0, 0.0]
    >>> low.sum().backward()
    >>> transition.grad.tolist()          # paths 0 0 0 and 1 1
    [[2.0, 0.0], [0.0, 1.0]]
    """
    chains = _Chains(unary, transition, lengths, start, end)
    return chains.apply(lambda u, a, s, e: _lowest(chains, math.inf, u, a, s, e),
                        chains.unary, transition, start, end)


def chain_free_energy(
    unary: torch.Tensor,
    transition: torch.Tensor,
    lengths=None,
    *,
    beta: float = 1.0,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
) -> torch.Tensor:
    """The free energy ``F_beta = -1/beta ln sum_y exp(-beta E(y))`` of every sequence of a
    padded batch (forward-backward), differentiable in the energies.

    Parameters
    ----------
    unary, transition, lengths, start, end
        As in :func:`chain_min_energy`.
    beta : float, default=1.0
        Inverse temperature, > 0 (``inf``: :func:`chain_min_energy`).

    Returns
    -------
    torch.Tensor of shape (B,) or ()
        F_beta per sequence (0 for an empty one, ``+inf`` if every path is forbidden); its
        gradient is the state marginals (unary), the transition, start and end marginals.

    Raises
    ------
    FactorGraphError
        As :func:`chain_min_energy`, and a beta that is not > 0.

    Examples
    --------
    >>> import math
    >>> import torch
    >>> from factorgraph_ebm.torch import chain_free_energy
    >>> unary = torch.tensor([[2.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    >>> transition = torch.tensor([[0.0, 1.0], [1.5, 0.0]], dtype=torch.float64)
    >>> free = chain_free_energy(unary, transition)       # one sequence, four paths
    >>> round(free.item(), 6), round(-math.log(sum(math.exp(-e) for e in (2.5, 3, 2, 0))), 6)
    (-0.236816, -0.236816)
    """
    beta = checked_beta(beta)
    if math.isinf(beta):
        return chain_min_energy(unary, transition, lengths, start=start, end=end)
    chains = _Chains(unary, transition, lengths, start, end)
    return chains.apply(lambda u, a, s, e: _lowest(chains, beta, u, a, s, e),
                        chains.unary, transition, start, end)


def _chain_loss_value(chains, loss, labels, unary, trans, start, end):
    """(losses (B,), vjp) of ``loss`` on every sequence, by the chain backend."""
    batch = chains.batch(unary, trans, start, end, labels)
    value, pairs = loss.linearize(batch)
    forbidden = np.flatnonzero(np.isinf(pairs[0][0].energy))
    if forbidden.size:
        raise TargetError(
            f"the desired labels of sequence {forbidden[0]} have energy +inf (a forbidden "
            "state or transition); a loss needs a desired answer of finite energy"
        )
    return value, lambda g: chains.backward(batch, pairs, g)


def chain_loss(
    unary: torch.Tensor,
    transition: torch.Tensor,
    labels,
    loss: Loss,
    lengths=None,
    *,
    start: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
) -> torch.Tensor:
    """A loss of energy-based learning on every sequence of a padded batch, differentiable
    in the energies: the trellis form of :func:`graph_loss`, the whole batch in one call of
    the chain backend of the losses (:class:`~factorgraph_ebm.chain_backend.ChainBatch`,
    the one that :class:`~factorgraph_ebm.sequence.SequenceLabeler` trains with: the loss's
    own rule over energy terms that the trellis kernels compute).

    Parameters
    ----------
    unary, transition, lengths, start, end
        As in :func:`chain_min_energy`.
    labels : array_like or torch.Tensor of int, shape (B, T) or (T,)
        The desired state of every token (padding ignored).
    loss : Loss
        Any loss the chain backend evaluates:
        :class:`~factorgraph_ebm.losses.EnergyLoss` (``E(Y^i)``),
        :class:`~factorgraph_ebm.losses.NLLLoss` (``E(Y^i) - F_beta``, forward-backward),
        :class:`~factorgraph_ebm.losses.MEELoss` (``1 - exp(-beta (E(Y^i) - F_beta))``),
        :class:`~factorgraph_ebm.losses.PerceptronLoss` (``E(Y^i) - min_Y E``, Viterbi) and
        every :class:`~factorgraph_ebm.losses.MarginLoss` (hinge, log, LVQ2, MCE,
        square-square, square-exp: ``Q(E(Y^i), E_I)`` with the most offending incorrect
        path from :func:`~factorgraph_ebm.trellis.best_incorrect`; ``hamming > 0``
        subtracts ``hamming`` per token that differs from Y^i, the margin-rescaled
        structured hinge). A margin loss with a forbidden sphere (``radius > 0`` or a
        ``distance``) is graph-only: use :func:`graph_loss` on the chain's factor graph.

    Returns
    -------
    torch.Tensor of shape (B,) or ()
        The loss of each sequence, unary's dtype and device.

    Raises
    ------
    TargetError
        Labels of the wrong shape, out of range, or of energy ``+inf``.
    FactorGraphError
        As :func:`chain_min_energy`; a loss that is not a
        :class:`~factorgraph_ebm.losses.Loss`, or a margin loss with a forbidden sphere
        (:func:`~factorgraph_ebm.chain_backend.check_loss`).

    Examples
    --------
    The Hamming-augmented hinge on the second sequence of
    :func:`~factorgraph_ebm.trellis.best_incorrect`'s example:

    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import chain_loss
    >>> unary = torch.tensor([[2.0, 0.0], [0.5, 0.0]], requires_grad=True)
    >>> transition = torch.tensor([[0.0, 1.0], [1.5, 0.0]], requires_grad=True)
    >>> value = chain_loss(unary, transition, [1, 1], fe.HingeLoss(margin=1.0, hamming=1.0))
    >>> value.item()           # E_C = E(1, 1) = 0; E_I = E(0, 0) - 2 = 0.5: max(0, 1 + 0 - 0.5)
    0.5
    >>> value.backward()
    >>> unary.grad.tolist()    # onehot(1, 1) - onehot(0, 0)
    [[-1.0, 1.0], [-1.0, 1.0]]
    """
    if not isinstance(loss, Loss):
        raise FactorGraphError(f"loss must be a Loss, got {type(loss).__name__}")
    check_loss(loss)
    chains = _Chains(unary, transition, lengths, start, end)
    flat_labels = chains.labels(labels)
    return chains.apply(
        lambda u, a, s, e: _chain_loss_value(chains, loss, flat_labels, u, a, s, e),
        chains.unary, transition, start, end,
    )


# --------------------------------------------------------------------------- modules
class GraphEnergyModel(torch.nn.Module):
    """An energy network plus a fixed-structure factor graph: a trainable model.

    ``network(x)`` maps a batch of inputs to the graph's flat energy vectors theta
    ``(B, M)``; :meth:`forward` returns the loss of each sample (:func:`graph_loss`), whose
    ``.mean().backward()`` trains the network end to end with any torch optimizer;
    :meth:`predict` runs min-sum inference.

    Parameters
    ----------
    network : torch.nn.Module
        Inputs -> theta of shape (B, M) (M = ``graph.compile().n_energy_entries``).
    graph : FactorGraph
        The structure (every factor with a table).
    loss : Loss
        The training loss.
    latent : iterable of variable names, default=()
        Latent variables Z (never supervised).
    **bp_options
        Options of :func:`graph_loss` / :func:`~factorgraph_ebm.belief_propagation`.

    Examples
    --------
    Two binary outputs whose table is a linear function of a 3-feature input:

    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import GraphEnergyModel
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[0.0, 0.0], [0.0, 0.0]])
    >>> _ = torch.manual_seed(0)
    >>> model = GraphEnergyModel(torch.nn.Linear(3, 4), g, fe.NLLLoss())
    >>> x = torch.eye(3)
    >>> targets = [{"a": 0, "b": 0}, {"a": 1, "b": 0}, {"a": 1, "b": 1}]
    >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    >>> for _ in range(100):
    ...     optimizer.zero_grad()
    ...     model(x, targets).mean().backward()
    ...     optimizer.step()
    >>> model.predict(x).tolist()
    [[0, 0], [1, 0], [1, 1]]
    """

    def __init__(self, network, graph: FactorGraph, loss: Loss, *, latent: Iterable = (),
                 **bp_options):
        super().__init__()
        require_tables(graph, "GraphEnergyModel")
        self.network = network
        self.graph = graph
        self.loss = loss
        self.latent = list(latent)
        self.bp_options = bp_options

    def energies(self, x) -> torch.Tensor:
        """theta = network(x), shape (B, M)."""
        return self.network(x)

    def forward(self, x, targets) -> torch.Tensor:
        """The loss of every sample, shape (B,) (see :func:`graph_loss`)."""
        return graph_loss(self.graph, self.energies(x), self.loss, targets,
                          latent=self.latent, **self.bp_options)

    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        """Min-sum inference: int64 tensor (B, n_variables), the states of the graph's
        variables (in ``graph.variables`` order, latent ones included)."""
        theta = _to_numpy(self.energies(x))
        options = {k: v for k, v in self.bp_options.items() if k != "messages"}
        rows = [r.assignment for r in _infer_rows(self.graph, theta, math.inf, options)]
        return torch.as_tensor(np.array(rows, dtype=np.int64).reshape(len(theta), -1))


class ChainEnergyModel(torch.nn.Module):
    """A network emitting per-token energies plus a learned transition table: a trainable
    chain (the energy-based form of a neural CRF or structured SVM).

    ``network(x)`` maps a padded batch to unary energies ``(B, T, K)``; the model owns the
    transition table (K, K) (and start/end energies with ``boundary=True``) as parameters,
    initialized to zero. :meth:`forward` returns the loss of each sequence
    (:func:`chain_loss`), :meth:`predict` the Viterbi labels.

    Parameters
    ----------
    network : torch.nn.Module
        Inputs -> unary energies of shape (B, T, K).
    n_states : int
        K.
    loss : Loss
        As in :func:`chain_loss`.
    boundary : bool, default=False
        Learn start and end energies too.

    Examples
    --------
    >>> import torch
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.torch import ChainEnergyModel
    >>> _ = torch.manual_seed(0)
    >>> model = ChainEnergyModel(torch.nn.Linear(4, 3), 3, fe.NLLLoss())
    >>> x = torch.randn(2, 5, 4)                     # 2 sequences, padded to 5 tokens
    >>> labels = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    >>> model(x, labels, lengths=[5, 3]).shape
    torch.Size([2])
    >>> model.predict(x, lengths=[5, 3]).shape        # -1 beyond each length
    torch.Size([2, 5])
    """

    def __init__(self, network, n_states: int, loss: Loss, *, boundary: bool = False):
        super().__init__()
        self.network = network
        self.loss = loss
        self.transition = torch.nn.Parameter(torch.zeros(n_states, n_states))
        self.start = torch.nn.Parameter(torch.zeros(n_states)) if boundary else None
        self.end = torch.nn.Parameter(torch.zeros(n_states)) if boundary else None

    def unary(self, x) -> torch.Tensor:
        """network(x), shape (B, T, K)."""
        return self.network(x)

    def _tables(self, unary):
        cast = [None if p is None else p.to(unary.dtype)
                for p in (self.transition, self.start, self.end)]
        return cast

    def forward(self, x, labels, lengths=None) -> torch.Tensor:
        """The loss of every sequence, shape (B,) (see :func:`chain_loss`)."""
        unary = self.unary(x)
        trans, start, end = self._tables(unary)
        return chain_loss(unary, trans, labels, self.loss, lengths, start=start, end=end)

    @torch.no_grad()
    def predict(self, x, lengths=None) -> torch.Tensor:
        """Viterbi labels, int64 tensor (B, T), -1 beyond each sequence's length."""
        unary = self.unary(x)
        trans, start, end = self._tables(unary)
        chains = _Chains(unary, trans, lengths, start, end)
        best = viterbi(chains.flat(_to_numpy(chains.unary)), _to_numpy(trans), chains.lengths,
                       start=_to_numpy(start), end=_to_numpy(end))
        out = np.full(chains.mask.shape, -1, dtype=np.int64)
        out[chains.mask] = best.states
        return torch.as_tensor(out[0] if chains.single else out)
