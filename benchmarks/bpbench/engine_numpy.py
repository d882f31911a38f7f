"""The baseline any Python user could write: vectorized NumPy min-sum flooding on a grid.

Four directional message arrays (into each variable from its right, left, lower and upper
factor), each update one broadcast ``(v2f[..., :, None] + table).min(axis=-2)`` over all
edges of one direction, messages shifted to minimum 0, damped, and decoding by the argmin
of the beliefs. Grids and chains (1 x n grids) only.

The unary energies enter the variable-to-factor messages from the first iteration, where
``factorgraph_ebm`` sends them as messages of unary factors, one iteration later: the two
runs meet at convergence (exactly on a chain), not iteration by iteration.
"""

from __future__ import annotations

import numpy as np

from .common import (
    CONVERGENCE_TOL,
    Options,
    make_row,
    message_bytes,
    minsum_bytes_per_iter,
    to_mb,
)
from .measure import best_of, peak_rss_mb, per_iteration, reset_peak, rss_mb, timed
from .workloads import Workload

NAME = "numpy"


def unavailable() -> str | None:
    """None: NumPy is always there."""
    return None


def too_big(workload: Workload, available: float) -> str | None:
    """Reason to skip: not a grid, or the (edges, K, K) temporaries do not fit."""
    if workload.grid_shape is None:
        return "the NumPy baseline is written for grids and chains only"
    k2 = workload.k * workload.k
    need = to_mb(8.0 * 2 * workload.n_factors * k2 + 3 * message_bytes(workload))
    if need > 0.7 * available:
        return f"needs ~{need:.0f} MiB, {available:.0f} MiB available"
    return None


class GridMinSum:
    """Min-sum flooding on an H x W grid with 4 directional message arrays.

    ``right[r, c]`` is the message into (r, c+1) from the factor joining it to (r, c);
    ``left[r, c]`` the message into (r, c) from the same factor; ``down`` / ``up`` the same
    for vertical factors ((r, c) above (r+1, c)).
    """

    def __init__(self, workload: Workload):
        height, width = workload.grid_shape
        k = workload.k
        self.unary = workload.unary.reshape(height, width, k)
        n_horizontal = height * (width - 1)
        if workload.shared:
            self.h_table = self.v_table = workload.tables
        else:
            self.h_table = workload.tables[:n_horizontal].reshape(height, width - 1, k, k)
            self.v_table = workload.tables[n_horizontal:].reshape(height - 1, width, k, k)
        self.reset()

    def reset(self) -> None:
        """All messages to zero."""
        height, width, k = self.unary.shape
        self.right = np.zeros((height, width - 1, k))
        self.left = np.zeros((height, width - 1, k))
        self.down = np.zeros((height - 1, width, k))
        self.up = np.zeros((height - 1, width, k))

    def beliefs(self) -> np.ndarray:
        """Unary energies plus all incoming messages, shape (H, W, K)."""
        total = self.unary.copy()
        total[:, 1:] += self.right
        total[:, :-1] += self.left
        total[1:] += self.down
        total[:-1] += self.up
        return total

    def step(self, damping: float) -> float:
        """One flooding iteration; returns the largest message change."""
        total = self.beliefs()
        new_right = _min_over_first(self.h_table, total[:, :-1] - self.left)
        new_left = _min_over_second(self.h_table, total[:, 1:] - self.right)
        new_down = _min_over_first(self.v_table, total[:-1] - self.up)
        new_up = _min_over_second(self.v_table, total[1:] - self.down)
        change = 0.0
        for name, new in (
            ("right", new_right),
            ("left", new_left),
            ("down", new_down),
            ("up", new_up),
        ):
            change = max(change, self._store(name, new, damping))
        return change

    def _store(self, name: str, new: np.ndarray, damping: float) -> float:
        """Shift ``new`` to minimum 0, damp it, store it; return the largest change."""
        old = getattr(self, name)
        new -= new.min(axis=-1, keepdims=True)
        if damping > 0.0:
            new = damping * old + (1.0 - damping) * new
        setattr(self, name, new)
        return float(np.abs(new - old).max(initial=0.0))

    def run(self, max_iter: int, tol: float, damping: float) -> tuple[np.ndarray, int, bool]:
        """Flood from zero messages until the change is <= tol or ``max_iter``; decode.
        Returns (assignment (H*W,), iterations, converged)."""
        self.reset()
        n_iter, converged = 0, False
        while n_iter < max_iter and not converged:
            converged = self.step(damping) <= tol
            n_iter += 1
        assignment = self.beliefs().argmin(axis=-1).reshape(-1)
        return assignment, n_iter, converged


def _min_over_first(table: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """m(y) = min_x table[x, y] + incoming[x], for every edge at once."""
    return (incoming[..., :, None] + table).min(axis=-2)


def _min_over_second(table: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """m(x) = min_y table[x, y] + incoming[y], for every edge at once."""
    return (incoming[..., None, :] + table).min(axis=-1)


def run(workload: Workload, options: Options) -> list[dict]:
    """Rows for the parallel (flooding) schedule at each damping."""
    method = reset_peak()
    before = rss_mb()
    build_s, engine = timed(lambda: GridMinSum(workload))
    table_entries = workload.k**2 if workload.shared else workload.table_entries
    common = {
        "build_s": build_s,
        "compile_s": 0.0,
        "msg_mb": to_mb(2 * message_bytes(workload)),
        "model_mb": to_mb(8.0 * table_entries),
        "bytes_per_iter": minsum_bytes_per_iter(workload, table_entries),
    }
    rows = []
    for damping in options.dampings:
        t_one, _ = best_of(lambda d=damping: engine.run(1, 0.0, d), options.repeat, options.budget)
        t_many, (_, n_many, _) = best_of(
            lambda d=damping: engine.run(options.iters, 0.0, d), options.repeat, options.budget
        )
        s_per_iter = per_iteration(t_one, t_many, n_many)
        n_iter = converged = None
        if options.cap > 0:  # cap 0: no convergence run, the energy of the timed run
            assignment, n_iter, converged = engine.run(options.cap, CONVERGENCE_TOL, damping)
        else:
            assignment = engine.run(options.iters, 0.0, damping)[0]
        rows.append(
            make_row(
                NAME,
                workload,
                "parallel",
                damping,
                s_per_iter=s_per_iter,
                fixed_s=max(t_one - s_per_iter, 0.0),
                n_iter=n_iter,
                converged=converged,
                energy=workload.energy(assignment),
                **common,
            )
        )
    peak = peak_rss_mb() - before
    for row in rows:
        row.update(peak_mb=peak, bp_peak_mb=peak, note=method)
    return rows
