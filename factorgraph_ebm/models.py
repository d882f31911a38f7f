"""Parameterizations of the energies of a fixed-structure factor graph.

A model maps parameters W (a flat float64 vector) and an input X to the flat energy vector
theta of shape (M,) of one graph (all factor tables, NumPy C order in declared scope order,
concatenated in factor order), and back-propagates a loss gradient dL/d(theta) to dL/dW.
Losses (:mod:`factorgraph_ebm.losses`) see only theta; the trainer
(:mod:`factorgraph_ebm.train`) sees only this interface:

- ``n_params``: the length of W;
- ``init_params(rng) -> W``;
- ``energies(params, x) -> theta``;
- ``backward(params, x, grad_energies) -> dL/dW``.

Any object with these members trains (e.g. a neural network that outputs energy tables, as in
``examples/energy_surfaces.py``). Entries that are ``+inf`` in the graph's own tables are hard
constraints: every model here keeps them ``+inf`` and gives them no gradient.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from . import _validation as V
from .compiled import require_tables
from .exceptions import FactorGraphError
from .graph import FactorGraph

__all__ = ["EnergyModel", "LinearModel", "TableModel"]


def _issparse(x) -> bool:
    """``scipy.sparse.issparse(x)``, without importing scipy when the caller has not (an
    object cannot be a scipy.sparse matrix unless scipy.sparse is loaded)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(x)


@runtime_checkable
class EnergyModel(Protocol):
    """What the trainer needs from a parameterization (see the module docstring)."""

    graph: FactorGraph
    n_params: int

    def init_params(self, rng: np.random.Generator) -> np.ndarray: ...

    def energies(self, params: np.ndarray, x) -> np.ndarray: ...

    def backward(self, params: np.ndarray, x, grad_energies: np.ndarray) -> np.ndarray: ...


def _table_positions(cg, factors: np.ndarray, label: str) -> np.ndarray:
    """int64 (n_factors, table_size): the flat theta index of every entry of each factor's
    table. The factors must share one table shape (same arity and states per position)."""
    if factors.size == 0:
        raise FactorGraphError(f"{label}: needs at least one factor")
    unknown = (factors < 0) | (factors >= cg.n_factors)
    if unknown.any():
        raise FactorGraphError(
            f"{label}: unknown factor {factors[unknown][0]}; the graph has {cg.n_factors}"
        )
    arity = cg.scope_ptr[factors + 1] - cg.scope_ptr[factors]
    if (arity != arity[0]).any():
        bad = np.argmax(arity != arity[0])
        raise FactorGraphError(
            f"{label}: factor {factors[bad]} has arity {arity[bad]}, factor {factors[0]} has "
            f"{arity[0]}; tied factors need one table shape"
        )
    states = cg.n_states[cg.scope_vars[cg.scope_ptr[factors][:, None] + np.arange(arity[0])]]
    mismatch = (states != states[0]).any(axis=1)
    if mismatch.any():
        bad = np.argmax(mismatch)
        raise FactorGraphError(
            f"{label}: factor {factors[bad]} has table shape {tuple(states[bad].tolist())}, "
            f"factor {factors[0]} has {tuple(states[0].tolist())}; tied factors need one "
            "table shape"
        )
    size = int(np.prod(states[0]))
    return cg.table_offset[factors][:, None] + np.arange(size)


def _factor_groups(cg, groups: Sequence, label: str) -> list[np.ndarray]:
    """Validate groups of factor indices (int64 arrays; no factor in two groups)."""
    arrays = []
    seen = np.zeros(cg.n_factors, dtype=bool)
    for k, members in enumerate(groups):
        factors = np.asarray(members)
        if factors.ndim != 1 or (factors.size and factors.dtype.kind not in "iu"):
            raise FactorGraphError(
                f"{label} {k}: expected a 1-D sequence of factor indices, got {members!r}"
            )
        factors = factors.astype(np.int64)
        _table_positions(cg, factors, f"{label} {k}")  # validates
        if len(np.unique(factors)) != len(factors):
            raise FactorGraphError(f"{label} {k}: lists a factor twice: {factors.tolist()}")
        if seen[factors].any():
            bad = factors[np.argmax(seen[factors])]
            raise FactorGraphError(f"{label} {k}: factor {bad} is already in another group")
        seen[factors] = True
        arrays.append(factors)
    return arrays


class TableModel:
    """Energies as parameters: every entry of every factor table is a parameter, optionally
    tied across factors (LeCun et al. 2006, sec. 6: the factor graph's energies themselves).

    Parameters
    ----------
    graph : FactorGraph
        The structure; its tables give the initial parameters and the hard constraints.
    tie : sequence of sequences of int, optional
        Groups of factor indices that share one table (they must have one table shape: the
        same arity and numbers of states per scope position). Other factors have their own.

    Attributes
    ----------
    n_params : int
        Number of parameters: the total size of the distinct tables.
    table_of_entry : ndarray of shape (M,), dtype=int64
        Parameter index of every entry of theta: ``theta = params[table_of_entry]`` (tables
        in the order of their first factor, each in C order).

    Notes
    -----
    ``x`` is ignored: the energies do not depend on an input. Back-propagation is one
    ``np.bincount`` (tied entries add up).

    Examples
    --------
    A chain of 4 binary variables whose 3 pairwise factors share one table:

    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(range(4), 2)
    >>> pairs = g.add_factors([(i, i + 1) for i in range(3)], np.zeros((2, 2)))
    >>> model = fe.TableModel(g, tie=[pairs])
    >>> model.n_params
    4
    >>> theta = model.energies(np.array([0.0, 1.0, 2.0, 3.0]))
    >>> theta.reshape(3, 2, 2)[2].tolist()            # every factor gets the table
    [[0.0, 1.0], [2.0, 3.0]]
    >>> model.backward(None, None, np.ones(12)).tolist()   # tied gradients add up
    [3.0, 3.0, 3.0, 3.0]
    """

    def __init__(self, graph: FactorGraph, tie: Sequence | None = None):
        require_tables(graph, "TableModel")
        cg = graph.compile()
        self.graph = graph
        owner = np.arange(cg.n_factors)
        for factors in _factor_groups(cg, tie or (), "TableModel tie group"):
            owner[factors] = factors.min()
        first, table_of_factor = np.unique(owner, return_inverse=True)
        sizes = np.diff(cg.table_offset)
        param_offset = np.concatenate([[0], np.cumsum(sizes[first])])
        factor_of_entry = np.repeat(np.arange(cg.n_factors), sizes)
        local = np.arange(cg.n_energy_entries) - cg.table_offset[factor_of_entry]
        self.table_of_entry = param_offset[table_of_factor[factor_of_entry]] + local
        self.n_params = int(param_offset[-1])
        self._hard = np.isinf(cg.energies)
        # Initial tables: the entries of each table's first factor, in factor order.
        is_first = np.zeros(cg.n_factors, dtype=bool)
        is_first[first] = True
        initial = cg.energies[is_first[factor_of_entry]]
        self._initial = np.where(np.isinf(initial), 0.0, initial)

    def init_params(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """The graph's own tables (a tied group takes its first factor's; ``+inf`` -> 0).

        Returns
        -------
        ndarray of shape (n_params,), dtype=float64
        """
        return self._initial.copy()

    def energies(self, params: np.ndarray, x=None) -> np.ndarray:
        """theta = params[table_of_entry], with the graph's ``+inf`` entries kept.

        Returns
        -------
        ndarray of shape (M,), dtype=float64
        """
        theta = np.asarray(params, dtype=np.float64)[self.table_of_entry]
        theta[self._hard] = np.inf
        return theta

    def backward(self, params: np.ndarray, x, grad_energies: np.ndarray) -> np.ndarray:
        """dL/d(params) from dL/d(theta) (shape (M,)): sums over tied entries.

        Returns
        -------
        ndarray of shape (n_params,), dtype=float64
        """
        weights = np.where(self._hard, 0.0, grad_energies)
        return np.bincount(self.table_of_entry, weights=weights, minlength=self.n_params)


class LinearModel:
    """Energies linear in features, with parameters tied across the factors of a group:

        E_f(y_f) = W_g[y_f] . phi_f(X)      for every factor f of group g,

    i.e. ``theta_f = W_g @ phi_f(X)`` with ``W_g`` of shape (table_size, n_features) (rows in
    the table's C order). This is the linear structured model of LeCun et al. 2006, sec. 7
    (CRF, max-margin Markov network or structured perceptron depending on the loss); a
    constant feature ``phi_f = [1]`` gives a tied table of free energies, e.g. the
    transition table of a chain.

    Parameters
    ----------
    graph : FactorGraph
        The structure. Factors outside every group keep the graph's tables (fixed energies);
        in the factors of a group, the graph's ``+inf`` entries stay ``+inf`` (hard
        constraints) and its finite values are ignored.
    groups : mapping group name -> sequence of int
        The factors of each group (one table shape per group; each factor in one group at
        most).
    n_features : int or mapping group name -> int
        Length of the feature vectors phi_f of each group, >= 1.
    init_scale : float, default=0.0
        :meth:`init_params` draws W from N(0, init_scale^2) (zeros by default).

    Attributes
    ----------
    n_params : int
        Total size of the weight matrices, concatenated in group order, each in C order.

    Notes
    -----
    Inputs ``x`` map each group name to its feature matrix of shape
    (n_factors_in_group, n_features), a dense array or a scipy.sparse matrix, row k for the
    group's k-th factor. Forward and backward passes are one matrix product per group:
    ``Phi_g @ W_g.T`` and ``(Phi_g.T @ G_g).T`` with ``G_g`` the gathered dL/d(theta), so
    no Python loop runs over factors.

    Examples
    --------
    Two binary outputs, each with a unary factor whose energies are linear in 3 features:

    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["y1", "y2"], 2)
    >>> unary = g.add_factors([["y1"], ["y2"]], np.zeros((2, 2)))
    >>> model = fe.LinearModel(g, {"unary": unary}, n_features=3)
    >>> model.n_params                                   # W: 2 states x 3 features
    6
    >>> W = np.array([[1.0, 0.0, 0.0],                   # E(state 0) = phi[0]
    ...               [0.0, 1.0, 0.0]])                  # E(state 1) = phi[1]
    >>> x = {"unary": np.array([[0.5, 2.0, 1.0],         # phi of y1's factor
    ...                         [3.0, 0.0, 1.0]])}       # phi of y2's factor
    >>> model.energies(W.ravel(), x).tolist()
    [0.5, 2.0, 3.0, 0.0]
    >>> fe.predict(model, W.ravel(), x)
    {'y1': 0, 'y2': 1}
    """

    def __init__(
        self,
        graph: FactorGraph,
        groups: Mapping[Hashable, Sequence[int]],
        n_features: int | Mapping[Hashable, int],
        *,
        init_scale: float = 0.0,
    ):
        require_tables(graph, "LinearModel")
        cg = graph.compile()
        self.graph = graph
        if not isinstance(groups, Mapping) or not groups:
            raise FactorGraphError(
                f"groups must be a non-empty mapping from group names to factor indices, "
                f"got {groups!r}"
            )
        self.group_names = list(groups)
        factors = _factor_groups(cg, [groups[g] for g in self.group_names], "LinearModel group")
        if not isinstance(n_features, Mapping):
            n_features = dict.fromkeys(self.group_names, n_features)
        self._positions, self._shapes, self._slices = {}, {}, {}
        start = 0
        theta = cg.energies.copy()
        for name, members in zip(self.group_names, factors):
            width = n_features.get(name)
            V.integer(width, f"n_features of group {name!r}", low=1)
            positions = _table_positions(cg, members, f"LinearModel group {name!r}")
            theta[positions] = np.where(np.isinf(theta[positions]), np.inf, 0.0)
            shape = (positions.shape[1], int(width))
            self._positions[name] = positions
            self._shapes[name] = shape
            self._slices[name] = slice(start, start + shape[0] * shape[1])
            start += shape[0] * shape[1]
        self.n_params = start
        self._base = theta
        self.init_scale = float(init_scale)

    def init_params(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Initial weights: zeros, or N(0, init_scale^2) draws from ``rng``.

        Returns
        -------
        ndarray of shape (n_params,), dtype=float64
        """
        if self.init_scale == 0.0:
            return np.zeros(self.n_params)
        return np.random.default_rng(rng).normal(scale=self.init_scale, size=self.n_params)

    def unpack(self, params: np.ndarray) -> dict:
        """Views of the weight matrices: group name -> ndarray (table_size, n_features)."""
        params = np.asarray(params, dtype=np.float64)
        return {g: params[self._slices[g]].reshape(self._shapes[g]) for g in self.group_names}

    def _features(self, x, name):
        if not isinstance(x, Mapping) or name not in x:
            raise FactorGraphError(
                f"x must map every group name to its feature matrix; group {name!r} is missing"
            )
        phi = x[name]
        if not _issparse(phi):
            phi = np.asarray(phi, dtype=np.float64)
        expected = (self._positions[name].shape[0], self._shapes[name][1])
        if phi.shape != expected:
            raise FactorGraphError(
                f"features of group {name!r} must have shape {expected} (one row per factor "
                f"of the group), got {phi.shape}"
            )
        return phi

    def energies(self, params: np.ndarray, x) -> np.ndarray:
        """theta for input ``x``: fixed factors from the graph, ``Phi_g @ W_g.T`` for groups.

        Returns
        -------
        ndarray of shape (M,), dtype=float64

        Raises
        ------
        FactorGraphError
            A group missing from ``x`` or features of the wrong shape.
        """
        theta = self._base.copy()
        for name, weights in self.unpack(params).items():
            theta[self._positions[name]] += np.asarray(self._features(x, name) @ weights.T)
        return theta

    def backward(self, params: np.ndarray, x, grad_energies: np.ndarray) -> np.ndarray:
        """dL/dW from dL/d(theta) (shape (M,)): ``(Phi_g.T @ G_g).T`` per group.

        Returns
        -------
        ndarray of shape (n_params,), dtype=float64
        """
        grad_energies = np.where(np.isinf(self._base), 0.0, grad_energies)
        out = np.empty(self.n_params)
        for name in self.group_names:
            gathered = grad_energies[self._positions[name]]
            out[self._slices[name]] = np.asarray(self._features(x, name).T @ gathered).T.ravel()
        return out
