"""Seeded benchmark workloads: energies as plain arrays, shared by every engine.

A :class:`Workload` is an energy function over ``n_vars`` variables of ``k`` states each:

    E(x) = sum_i unary[i, x_i] + sum_f table_f[x_{scope[f, 0]}, ..., x_{scope[f, r-1]}]

Kinds (``n`` and ``k`` are the command-line ``--n`` and ``--k``):

- ``grid-potts``: n x n 4-connected grid, unary U(0, 1), one shared Potts table
  ``0.5 * [x_i != x_j]``;
- ``grid-dense``: the same grid with one random U(0, 1) K x K table per edge (stacked);
- ``chain``: a chain of ``n`` variables (a 1 x n grid) with one random table per edge;
- ``random``: ``n`` variables and ``n`` factors of arity 3 on distinct random variables,
  one random U(0, 1) K x K x K table each.

Grid variables are numbered row by row (``v = row * width + col``); the pairwise factors are
the horizontal edges row by row, then the vertical edges row by row, each scope ordered
(left, right) or (top, bottom). The grid engines (NumPy, hand-written Numba) rely on that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("grid-potts", "grid-dense", "chain", "random")
DEFAULT_N = {"grid-potts": 100, "grid-dense": 100, "chain": 10_000, "random": 1_000}
DEFAULT_K = {"grid-potts": 8, "grid-dense": 8, "chain": 50, "random": 4}
POTTS_WEIGHT = 0.5
RANDOM_ARITY = 3


@dataclass(frozen=True)
class Workload:
    """One seeded model. ``tables`` is one shared table of shape (k,) * arity when
    ``shared``, else stacked of shape (n_factors,) + (k,) * arity."""

    kind: str
    n: int
    k: int
    seed: int
    unary: np.ndarray
    scopes: np.ndarray
    tables: np.ndarray
    shared: bool
    grid_shape: tuple[int, int] | None

    @property
    def label(self) -> str:
        """Short human name, e.g. ``grid-potts 300x300 K=32``."""
        return workload_label(self.kind, self.n, self.k)

    @property
    def n_vars(self) -> int:
        """Number of variables."""
        return self.unary.shape[0]

    @property
    def n_factors(self) -> int:
        """Number of non-unary factors."""
        return self.scopes.shape[0]

    @property
    def arity(self) -> int:
        """Arity of the non-unary factors."""
        return self.scopes.shape[1]

    @property
    def n_edges(self) -> int:
        """Factor-graph edges of the non-unary factors (scope entries): the number of
        factor-to-variable messages one iteration updates (grid edges times 2 on grids)."""
        return self.scopes.size

    @property
    def table_entries(self) -> int:
        """Entries of all non-unary tables as a per-factor (unshared) engine stores them."""
        return self.n_factors * self.k**self.arity

    def stacked_tables(self) -> np.ndarray:
        """Tables of shape (n_factors,) + (k,) * arity (a read-only broadcast view if shared)."""
        if self.shared:
            return np.broadcast_to(self.tables, (self.n_factors, *self.tables.shape))
        return self.tables

    def energy(self, assignment) -> float:
        """E(assignment), evaluated here independently of every engine."""
        x = np.asarray(assignment, dtype=np.int64)
        total = self.unary[np.arange(self.n_vars), x].sum()
        states = tuple(x[self.scopes[:, q]] for q in range(self.arity))
        if self.shared:
            total += self.tables[states].sum()
        else:
            total += self.tables[(np.arange(self.n_factors), *states)].sum()
        return float(total)


def workload_label(kind: str, n: int, k: int) -> str:
    """Short human name of a workload, e.g. ``grid-potts 300x300 K=32``, ``chain n=10000
    K=50``."""
    if kind.startswith("grid"):
        return f"{kind} {n}x{n} K={k}"
    return f"{kind} n={n} K={k}"


def make_workload(kind: str, n: int, k: int, seed: int = 0) -> Workload:
    """The workload ``kind`` of size ``n`` with ``k`` states, the same for every engine."""
    if kind not in KINDS:
        raise ValueError(f"unknown workload {kind!r}; choose from {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind), n, k])
    if kind == "random":
        return _random_hypergraph(rng, n, k, seed)
    height, width = (1, n) if kind == "chain" else (n, n)
    unary = rng.random((height * width, k))
    scopes = grid_scopes(height, width)
    if kind == "grid-potts":
        tables, shared = POTTS_WEIGHT * (1.0 - np.eye(k)), True
    else:
        tables, shared = rng.random((len(scopes), k, k)), False
    return Workload(kind, n, k, seed, unary, scopes, tables, shared, (height, width))


def grid_scopes(height: int, width: int) -> np.ndarray:
    """Scopes (n_edges, 2) of a 4-connected grid: horizontal edges, then vertical ones."""
    index = np.arange(height * width, dtype=np.int64).reshape(height, width)
    horizontal = np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], axis=1)
    vertical = np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical])


def _random_hypergraph(rng, n: int, k: int, seed: int) -> Workload:
    """``n`` variables, ``n`` factors of arity 3 over distinct variables, random tables."""
    scopes = rng.integers(0, n, size=(n, RANDOM_ARITY))
    while True:
        ordered = np.sort(scopes, axis=1)
        bad = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not bad.any():
            break
        scopes[bad] = rng.integers(0, n, size=(int(bad.sum()), RANDOM_ARITY))
    unary = rng.random((n, k))
    tables = rng.random((n,) + (k,) * RANDOM_ARITY)
    return Workload("random", n, k, seed, unary, scopes, tables, False, None)


def tiny_like(workload: Workload) -> Workload:
    """A tiny workload with the same kinds of factors (for JIT warm-up calls)."""
    n = 6 if workload.kind == "random" else 3
    return make_workload(workload.kind, n, 2, workload.seed)
