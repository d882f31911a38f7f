"""Slow, obviously correct references for testing factorgraph_ebm.

Everything here is plain NumPy / itertools and is written independently of the package's
kernels: the only things read from a :class:`FactorGraph` are its public views
``n_variables``, ``n_states``, ``variables``, ``n_factors``, ``factor_scope(f)`` and
``factor_energies(f)``. In particular :meth:`FactorGraph.energy` and anything compiled are
never used, so the references can be compared against the package.

Conventions: energies (lower is better, ``+inf`` forbidden); temperature T = 1/beta;
``log_z`` is the natural log of Z = sum_y exp(-beta E(y)); an infeasible model (every
configuration has energy ``+inf``) has ``log_z == -inf`` and free energy ``+inf``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

INF = math.inf


# --------------------------------------------------------------------------- plain model
def factor_table(graph, f):
    """A copy of factor f's energy table, via the public ``factor_energies`` (a 0-d array
    for a constant factor)."""
    return np.array(graph.factor_energies(f), dtype=np.float64)


class Model:
    """A plain snapshot of a factor graph: lists of Python objects, nothing compiled."""

    def __init__(self, graph, evidence=None):
        self.names = list(graph.variables)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.n_states = [int(k) for k in graph.n_states]
        self.scopes = []
        self.tables = []
        for f in range(graph.n_factors):
            self.scopes.append(tuple(self.index[v] for v in graph.factor_scope(f)))
            self.tables.append(factor_table(graph, f))
        # evidence as unary energies (0 at the observed state, +inf elsewhere)
        self.unary = [np.zeros(k) for k in self.n_states]
        for name, state in (evidence or {}).items():
            u = np.full(self.n_states[self.index[name]], INF)
            u[state] = 0.0
            self.unary[self.index[name]] = u

    @property
    def n_variables(self):
        return len(self.n_states)

    def edges(self):
        """Edges ``(factor, position, variable)`` numbered factor by factor in scope order
        (the documented layout of the package's flat message vector)."""
        return [(f, q, v) for f, scope in enumerate(self.scopes) for q, v in enumerate(scope)]

    def message_offsets(self):
        """Start of each edge's message in a flat message vector (prefix sum of n_states)."""
        sizes = [self.n_states[v] for (_, _, v) in self.edges()]
        return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)

    def energy(self, y):
        """E(y) by a plain loop over factors (unary evidence included)."""
        total = 0.0
        for i, x in enumerate(y):
            total += self.unary[i][x]
        for scope, table in zip(self.scopes, self.tables):
            total += table[tuple(y[v] for v in scope)]
        return total


# --------------------------------------------------------------------------- brute force
def logsumexp(values):
    """ln sum exp(values), stable; ``-inf`` for an empty input or all ``-inf``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return -INF
    top = values.max()
    if top == -INF:
        return -INF
    return float(top + np.log(np.sum(np.exp(values - top))))


class BruteForce:
    """Enumerate every configuration of a small factor graph.

    Parameters
    ----------
    graph : FactorGraph
    evidence : mapping name -> state, optional
        Configurations that disagree get energy ``+inf`` (conditioning).
    """

    def __init__(self, graph, evidence=None):
        self.model = Model(graph, evidence)
        m = self.model
        configs = list(itertools.product(*[range(k) for k in m.n_states]))
        self.configs = np.array(configs, dtype=np.int64).reshape(len(configs), m.n_variables)
        # E(y) for every configuration: a plain loop over variables and factors, each
        # vectorized over the configurations.
        energies = np.zeros(len(self.configs))
        for i in range(m.n_variables):
            energies = energies + m.unary[i][self.configs[:, i]]
        for scope, table in zip(m.scopes, m.tables):
            energies = energies + table[self._entries(scope)]
        self.energies = energies

    def _entries(self, scope):
        """Index tuple of each configuration's entry in a table of this scope."""
        return tuple(self.configs[:, v] for v in scope) if scope else ()

    # -- min-sum
    @property
    def min_energy(self):
        """Lowest energy (``+inf`` if the model is infeasible)."""
        return float(self.energies.min()) if self.energies.size else INF

    @property
    def feasible(self):
        return self.min_energy < INF

    def minimizers(self, atol=1e-9):
        """Set of tuples: every configuration whose energy is within ``atol`` of the min."""
        if not self.feasible:
            return set()
        keep = self.energies <= self.min_energy + atol
        return {tuple(int(s) for s in y) for y in self.configs[keep]}

    def min_marginals(self):
        """List of arrays: [i][x] = min energy of any configuration with y_i = x."""
        m = self.model
        out = []
        for i in range(m.n_variables):
            row = np.full(m.n_states[i], INF)
            for x in range(m.n_states[i]):
                sel = self.configs[:, i] == x
                if sel.any():
                    row[x] = self.energies[sel].min()
            out.append(row)
        return out

    def factor_min_marginals(self, f):
        """Table of factor f: min energy of any configuration agreeing with each entry."""
        m = self.model
        scope = m.scopes[f]
        out = np.full(tuple(m.n_states[v] for v in scope), INF)
        if scope:
            np.minimum.at(out, self._entries(scope), self.energies)
        else:
            out[()] = self.min_energy
        return out

    # -- sum-product
    def log_z(self, beta):
        """ln Z at inverse temperature beta (``-inf`` for an infeasible model)."""
        return logsumexp(-beta * self.energies)

    def free_energy(self, beta):
        """F = -1/beta ln Z (``+inf`` for an infeasible model)."""
        return -self.log_z(beta) / beta

    def probabilities(self, beta):
        """Boltzmann probability of every configuration (needs a feasible model)."""
        log_z = self.log_z(beta)
        assert log_z > -INF, "probabilities of an infeasible model"
        return np.exp(-beta * self.energies - log_z)

    def marginals(self, beta):
        """List of arrays: [i][x] = P_beta(y_i = x)."""
        p = self.probabilities(beta)
        m = self.model
        out = []
        for i in range(m.n_variables):
            out.append(np.bincount(self.configs[:, i], weights=p, minlength=m.n_states[i]))
        return out

    def factor_marginals(self, f, beta):
        """Table of factor f: P_beta(y_scope = entry)."""
        p = self.probabilities(beta)
        m = self.model
        scope = m.scopes[f]
        out = np.zeros(tuple(m.n_states[v] for v in scope))
        if scope:
            np.add.at(out, self._entries(scope), p)
        else:
            out[()] = p.sum()
        return out


# --------------------------------------------------------------------------- plain BP
def _softmin(z, temperature, axis):
    """-T log sum exp(-z/T) along ``axis`` (min when T == 0); +inf where all z are +inf."""
    low = np.min(z, axis=axis, keepdims=True)
    if temperature == 0.0:
        return np.squeeze(low, axis=axis)
    safe_low = np.where(np.isfinite(low), low, 0.0)
    with np.errstate(invalid="ignore"):
        terms = np.exp(-(z - safe_low) / temperature)
    terms = np.where(np.isfinite(z), terms, 0.0)
    total = np.sum(terms, axis=axis)
    low = np.squeeze(low, axis=axis)
    out = np.full(total.shape, INF)
    ok = np.isfinite(low)
    out[ok] = low[ok] - temperature * np.log(total[ok])
    return out


def _normalize(message):
    low = message.min()
    return message - low if np.isfinite(low) else message.copy()


class PlainBP:
    """Flooding belief propagation on dicts of arrays, in the energy (negative log) domain.

    ``f2v[(f, q)]`` is the message from factor f to the variable at position q of its
    scope, ``v2f[(f, q)]`` the message from that variable to f. Factor-to-variable messages
    are normalized to minimum 0 (as the package documents), then damped.
    """

    def __init__(self, graph, beta=INF, evidence=None):
        self.model = Model(graph, evidence)
        self.temperature = 0.0 if math.isinf(beta) else 1.0 / beta
        m = self.model
        self.keys = [(f, q) for (f, q, _) in m.edges()]
        self.var_of = {(f, q): v for (f, q, v) in m.edges()}
        self.f2v = {key: np.zeros(m.n_states[self.var_of[key]]) for key in self.keys}

    # -- conversion to and from the package's flat layout
    def set_flat(self, flat):
        offsets = self.model.message_offsets()
        for k, key in enumerate(self.keys):
            self.f2v[key] = np.array(flat[offsets[k] : offsets[k + 1]], dtype=np.float64)

    def flat(self):
        if not self.keys:
            return np.zeros(0)
        return np.concatenate([self.f2v[key] for key in self.keys])

    # -- updates
    def variable_to_factor(self):
        m = self.model
        v2f = {}
        for key in self.keys:
            v = self.var_of[key]
            msg = m.unary[v].copy()
            for other in self.keys:
                if other != key and self.var_of[other] == v:
                    msg = msg + self.f2v[other]
            v2f[key] = msg
        return v2f

    def factor_to_variable(self, v2f):
        """New (normalized, undamped) factor-to-variable messages from ``v2f``."""
        m = self.model
        new = {}
        for key in self.keys:
            f, q = key
            scope = m.scopes[f]
            z = m.tables[f].copy()
            for r, _ in enumerate(scope):
                if r == q:
                    continue
                shape = [1] * len(scope)
                shape[r] = -1
                z = z + v2f[(f, r)].reshape(shape)
            z = np.moveaxis(z, q, 0).reshape(z.shape[q], -1)
            new[key] = _normalize(_softmin(z, self.temperature, axis=1))
        return new

    def sweep(self, damping=0.0):
        """One flooding iteration; returns the largest absolute message change."""
        new = self.factor_to_variable(self.variable_to_factor())
        change = 0.0
        for key in self.keys:
            old = self.f2v[key]
            value = new[key]
            if damping > 0.0:
                value = damping * old + (1.0 - damping) * value
            with np.errstate(invalid="ignore"):
                diff = np.where(value == old, 0.0, np.abs(value - old))
            change = max(change, float(diff.max(initial=0.0)))
            self.f2v[key] = value
        return change

    def run(self, max_iter=1000, tol=1e-12, damping=0.0):
        for it in range(max_iter):
            if self.sweep(damping) <= tol:
                return it + 1, True
        return max_iter, False

    # -- beliefs
    def variable_beliefs(self):
        """Unnormalized energy-domain beliefs per variable (unary + incoming messages)."""
        m = self.model
        out = [u.copy() for u in m.unary]
        for key in self.keys:
            out[self.var_of[key]] = out[self.var_of[key]] + self.f2v[key]
        return out

    def factor_beliefs(self):
        """Unnormalized energy-domain factor beliefs (table + incoming v2f messages)."""
        m = self.model
        v2f = self.variable_to_factor()
        out = []
        for f, scope in enumerate(m.scopes):
            z = m.tables[f].copy()
            for r, _ in enumerate(scope):
                shape = [1] * len(scope)
                shape[r] = -1
                z = z + v2f[(f, r)].reshape(shape)
            out.append(z)
        return out

    def marginals(self):
        """Normalized variable beliefs as probabilities (T > 0)."""
        return [_boltzmann(b, self.temperature) for b in self.variable_beliefs()]

    def factor_marginals(self):
        return [_boltzmann(b, self.temperature) for b in self.factor_beliefs()]

    def bethe_free_energy(self):
        """Bethe free energy in energy form at T > 0 (Yedidia, Freeman & Weiss 2005):

        F = sum_a [<b_a, E_a> - T H(b_a)] + sum_i [<b_i, U_i> + T (d_i - 1) H(b_i)]
        """
        t = self.temperature
        m = self.model
        total = 0.0
        for table, belief in zip(m.tables, self.factor_beliefs()):
            if not np.isfinite(belief).any():
                return INF
            b = _boltzmann(belief, t)
            total += _expect(b, table) - t * _entropy(b)
        degree = [0] * m.n_variables
        for (_, _, v) in m.edges():
            degree[v] += 1
        for i, belief in enumerate(self.variable_beliefs()):
            if not np.isfinite(belief).any():
                return INF
            b = _boltzmann(belief, t)
            total += _expect(b, m.unary[i]) + t * (degree[i] - 1) * _entropy(b)
        return total


def _boltzmann(belief, temperature):
    belief = np.asarray(belief, dtype=np.float64)
    low = belief.min()
    if not np.isfinite(low):
        return np.zeros_like(belief)
    finite = np.isfinite(belief)
    w = np.where(finite, np.exp(-(np.where(finite, belief, low) - low) / temperature), 0.0)
    return w / w.sum()


def _expect(p, energy):
    """<p, energy>, with 0 * inf = 0."""
    mask = p > 0
    return float(np.sum(p[mask] * np.asarray(energy)[mask]))


def _entropy(p):
    mask = p > 0
    return float(-np.sum(p[mask] * np.log(p[mask])))


# --------------------------------------------------------------------------- chains
def chain_viterbi(unaries, pairwise):
    """Min energy of a chain: E(y) = sum_i unaries[i][y_i] + sum_i pairwise[i][y_i, y_i+1].

    Plain forward dynamic programming in NumPy (vectorized over states, not over i).
    """
    cost = np.asarray(unaries[0], dtype=np.float64).copy()
    for i in range(1, len(unaries)):
        cost = np.min(cost[:, None] + pairwise[i - 1], axis=0) + unaries[i]
    return float(cost.min())


def chain_log_z(unaries, pairwise, beta):
    """ln Z of the same chain by the forward algorithm in the log domain."""
    alpha = -beta * np.asarray(unaries[0], dtype=np.float64)
    for i in range(1, len(unaries)):
        s = alpha[:, None] - beta * pairwise[i - 1]
        top = s.max(axis=0)
        alpha = top + np.log(np.exp(s - top).sum(axis=0)) - beta * unaries[i]
    return logsumexp(alpha)


def chain_min_marginals(unaries, pairwise):
    """Absolute min-marginals of every variable of the chain (forward and backward DP)."""
    n = len(unaries)
    forward = [np.asarray(unaries[0], dtype=np.float64)]
    for i in range(1, n):
        forward.append(np.min(forward[-1][:, None] + pairwise[i - 1], axis=0) + unaries[i])
    backward = [np.zeros(len(unaries[-1]))]
    for i in range(n - 2, -1, -1):
        backward.append(np.min(pairwise[i] + (unaries[i + 1] + backward[-1])[None, :], axis=1))
    backward.reverse()
    return [f + b for f, b in zip(forward, backward)]


def chain_marginals(unaries, pairwise, beta):
    """Marginals P_beta(y_i = x) of every variable of the chain (forward-backward, logs)."""
    n = len(unaries)

    def lse(s, axis):
        top = s.max(axis=axis, keepdims=True)
        return np.squeeze(top, axis=axis) + np.log(np.exp(s - top).sum(axis=axis))

    forward = [-beta * np.asarray(unaries[0], dtype=np.float64)]
    for i in range(1, n):
        forward.append(lse(forward[-1][:, None] - beta * pairwise[i - 1], 0) - beta * unaries[i])
    backward = [np.zeros(len(unaries[-1]))]
    for i in range(n - 2, -1, -1):
        inner = -beta * np.asarray(unaries[i + 1], dtype=np.float64) + backward[-1]
        backward.append(lse(-beta * pairwise[i] + inner[None, :], 1))
    backward.reverse()
    out = []
    for f, b in zip(forward, backward):
        log_p = f + b
        log_p = log_p - logsumexp(log_p)
        out.append(np.exp(log_p))
    return out
