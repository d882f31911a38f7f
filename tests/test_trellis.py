"""Chains and trellises (factorgraph_ebm.trellis) against brute-force enumeration of every
state path, finite differences, the general belief-propagation engine and hand-made
extreme cases.

The brute force here is independent of the package: it lists all K^T paths of each sequence
with itertools and sums their energies with NumPy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from reference import logsumexp

import factorgraph_ebm as fg
from factorgraph_ebm import trellis as tr
from factorgraph_ebm._config import njit
from factorgraph_ebm.exceptions import FactorGraphError

ATOL = 1e-9
BETAS = (0.5, 1.0, 3.0)


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """A random ragged batch and everything the public functions take."""

    unary: np.ndarray
    transition: np.ndarray
    lengths: list
    start: np.ndarray | None
    end: np.ndarray | None
    state_label: np.ndarray | None
    n_labels: int | None
    clamp: np.ndarray | None
    integer: bool

    @property
    def k(self):
        return self.unary.shape[1]

    @property
    def per_position(self):
        return self.transition.ndim == 3

    @property
    def labels(self):
        return np.arange(self.k) if self.state_label is None else self.state_label

    @property
    def n_lab(self):
        if self.n_labels is not None:
            return self.n_labels
        return int(self.labels.max()) + 1

    def kwargs(self, clamp=True):
        out = {"start": self.start, "end": self.end, "state_label": self.state_label}
        out["n_labels"] = self.n_labels
        if clamp:
            out["clamp"] = self.clamp
        return out

    def offsets(self):
        tok = np.concatenate([[0], np.cumsum(self.lengths)]).astype(int)
        pos = np.concatenate([[0], np.cumsum([max(n - 1, 0) for n in self.lengths])])
        return tok, pos.astype(int)

    def sequence(self, s):
        """(unary, list of T-1 transition matrices, clamp or None, token slice, position
        slice) of sequence s."""
        tok, pos = self.offsets()
        sl = slice(tok[s], tok[s + 1])
        n = self.lengths[s]
        if self.per_position:
            mats = [self.transition[pos[s] + t] for t in range(max(n - 1, 0))]
        else:
            mats = [self.transition] * max(n - 1, 0)
        clamp = None if self.clamp is None else self.clamp[sl]
        return self.unary[sl], mats, clamp, sl, slice(pos[s], pos[s + 1])

    def single(self, s):
        """The arguments of a one-sequence call equivalent to sequence s of the batch."""
        unary, _, clamp, sl, ps = self.sequence(s)
        transition = self.transition[ps] if self.per_position else self.transition
        kwargs = self.kwargs(clamp=False)
        kwargs["clamp"] = clamp
        return unary, transition, kwargs


class Brute:
    """Every path of one sequence and its energy (``+inf`` when clamping excludes it)."""

    def __init__(self, case: Case, s: int):
        unary, mats, clamp, _, _ = case.sequence(s)
        n, k = unary.shape
        self.n, self.k = n, k
        self.label = case.labels
        paths = list(itertools.product(range(k), repeat=n))
        self.paths = np.array(paths, dtype=np.int64).reshape(len(paths), n)
        energy = np.zeros(len(self.paths))
        for t in range(n):
            energy = energy + unary[t, self.paths[:, t]]
        for t in range(1, n):
            energy = energy + mats[t - 1][self.paths[:, t - 1], self.paths[:, t]]
        if n:
            if case.start is not None:
                energy = energy + case.start[self.paths[:, 0]]
            if case.end is not None:
                energy = energy + case.end[self.paths[:, -1]]
        self.unclamped = energy
        if clamp is not None and n:
            ok = np.all((clamp[None, :] < 0) | (self.label[self.paths] == clamp[None, :]), axis=1)
            energy = np.where(ok, energy, np.inf)
        self.energy = energy

    @property
    def feasible(self):
        return bool(np.isfinite(self.energy).any())

    def log_z(self, beta):
        return logsumexp(-beta * self.energy)

    def probabilities(self, beta):
        if not self.feasible:
            return np.zeros(len(self.energy))
        return np.exp(-beta * self.energy - self.log_z(beta))

    def marginals(self, beta):
        p = self.probabilities(beta)
        out = np.zeros((self.n, self.k))
        for t in range(self.n):
            np.add.at(out[t], self.paths[:, t], p)
        return out

    def transition_counts(self, beta):
        """(T-1, K, K) expected transition counts per position."""
        p = self.probabilities(beta)
        out = np.zeros((max(self.n - 1, 0), self.k, self.k))
        for t in range(1, self.n):
            np.add.at(out[t - 1], (self.paths[:, t - 1], self.paths[:, t]), p)
        return out

    def min_marginals(self):
        out = np.full((self.n, self.k), np.inf)
        for t in range(self.n):
            np.minimum.at(out[t], self.paths[:, t], self.energy)
        return out

    def sorted_paths(self):
        """Indices of the paths by (energy, reversed path): the documented tie rule."""
        keys = [tuple(p[::-1]) for p in self.paths]
        return sorted(range(len(self.paths)), key=lambda i: (self.energy[i], keys[i]))


@st.composite
def cases(draw, per_position=None, latent=None, clamp=None, max_len=5, inf_levels=None):
    k = draw(st.integers(1, 4))
    n_seq = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(0, max_len), min_size=n_seq, max_size=n_seq))
    seed = draw(st.integers(0, 2**32 - 1))
    integer = draw(st.booleans())
    p_inf = draw(st.sampled_from(inf_levels or (0.0, 0.0, 0.15, 0.4)))
    rng = np.random.default_rng(seed)

    def make(shape):
        if integer:
            table = rng.integers(-1, 3, size=shape).astype(np.float64)
        else:
            table = rng.uniform(-2.0, 2.0, size=shape)
        return np.where(rng.random(shape) < p_inf, np.inf, table)

    n_tokens = sum(lengths)
    n_pos = sum(max(n - 1, 0) for n in lengths)
    pp = draw(st.booleans()) if per_position is None else per_position
    transition = make((n_pos, k, k)) if pp else make((k, k))
    start = make((k,)) if draw(st.booleans()) else None
    end = make((k,)) if draw(st.booleans()) else None
    use_latent = draw(st.booleans()) if latent is None else latent
    state_label, n_labels = None, None
    if use_latent:
        n_labels = draw(st.integers(1, k))
        state_label = rng.integers(0, n_labels, size=k)
        if draw(st.booleans()):
            n_labels = None
            state_label[rng.integers(0, k)] = 0  # max + 1 labels, at least one used
    labels = np.arange(k) if state_label is None else state_label
    n_lab = n_labels if n_labels is not None else int(labels.max()) + 1
    use_clamp = draw(st.booleans()) if clamp is None else clamp
    clamp_arr = None
    if use_clamp:
        clamp_arr = np.where(
            rng.random(n_tokens) < 0.5, -1, rng.integers(0, n_lab, size=n_tokens)
        ).astype(np.int64)
    return Case(
        make((n_tokens, k)),
        transition,
        lengths,
        start,
        end,
        state_label,
        n_labels,
        clamp_arr,
        integer,
    )


def show(case):
    note(repr(case))


def close(actual, expected, atol=ATOL, rtol=1e-9, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert not np.isnan(actual).any(), f"{what}: NaN in {actual}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


# --------------------------------------------------------------------------- brute force
@given(cases())
def test_viterbi_against_brute_force(case):
    show(case)
    result = tr.viterbi(case.unary, case.transition, case.lengths, **case.kwargs())
    assert result.states.dtype == np.int64 and result.states.shape == (sum(case.lengths),)
    np.testing.assert_array_equal(result.labels, case.labels[result.states])
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        sl = case.sequence(s)[3]
        path = result.states[sl]
        if not bf.feasible:
            assert result.energy[s] == np.inf
            assert (path == 0).all()
            continue
        low = bf.energy.min()
        assert result.energy[s] == pytest.approx(low, abs=ATOL)
        index = int(np.flatnonzero((bf.paths == path).all(axis=1))[0])
        assert bf.energy[index] == pytest.approx(result.energy[s], abs=ATOL)
        if case.integer:  # exact sums: the documented tie rule is checkable
            np.testing.assert_array_equal(path, bf.paths[bf.sorted_paths()[0]])


@given(cases())
def test_path_energy_against_brute_force(case):
    show(case)
    rng = np.random.default_rng(len(case.lengths))
    states = rng.integers(0, case.k, size=sum(case.lengths))
    got = tr.path_energy(
        case.unary, case.transition, states, case.lengths, start=case.start, end=case.end
    )
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        path = states[case.sequence(s)[3]]
        index = int(np.flatnonzero((bf.paths == path).all(axis=1))[0])
        assert got[s] == pytest.approx(bf.unclamped[index], abs=ATOL)
    # the Viterbi energy is reproduced exactly
    best = tr.viterbi(case.unary, case.transition, case.lengths, start=case.start, end=case.end)
    again = tr.path_energy(
        case.unary, case.transition, best.states, case.lengths, start=case.start, end=case.end
    )
    finite = np.isfinite(best.energy)
    np.testing.assert_array_equal(again[finite], best.energy[finite])


@pytest.mark.parametrize("beta", BETAS)
@given(case=cases())
def test_forward_backward_against_brute_force(case, beta):
    show(case)
    result = tr.forward_backward(
        case.unary, case.transition, case.lengths, beta=beta, **case.kwargs()
    )
    k = case.k
    start_m = np.zeros(k)
    end_m = np.zeros(k)
    shared_xi = np.zeros((k, k))
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        _, _, _, sl, ps = case.sequence(s)
        log_z = bf.log_z(beta)
        if bf.n == 0:
            assert result.log_partition[s] == 0.0
        if math.isinf(log_z):
            assert result.log_partition[s] == -np.inf
            assert result.free_energy[s] == np.inf
        else:
            assert result.log_partition[s] == pytest.approx(log_z, abs=ATOL, rel=1e-12)
            assert result.free_energy[s] == pytest.approx(-log_z / beta, abs=ATOL, rel=1e-12)
        marg = bf.marginals(beta)
        close(result.marginals[sl], marg, what=f"marginals of sequence {s}")
        labels = np.zeros((bf.n, case.n_lab))
        for lab in range(case.n_lab):
            labels[:, lab] = marg[:, case.labels == lab].sum(axis=1)
        close(result.label_marginals[sl], labels, what="label marginals")
        counts = bf.transition_counts(beta)
        if case.per_position:
            close(result.transition_marginals[ps], counts, what="transition marginals")
        else:
            shared_xi += counts.sum(axis=0)
        if bf.n:
            start_m += marg[0]
            end_m += marg[-1]
    if not case.per_position:
        close(result.transition_marginals, shared_xi, what="shared transition marginals")
    close(result.start_marginals, start_m, what="start marginals")
    close(result.end_marginals, end_m, what="end marginals")


@given(cases())
def test_min_marginals_against_brute_force(case):
    show(case)
    result = tr.forward_backward(
        case.unary, case.transition, case.lengths, beta=np.inf, **case.kwargs()
    )
    assert np.isnan(result.log_partition).all()
    assert result.transition_marginals is None
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        sl = case.sequence(s)[3]
        mm = bf.min_marginals()
        close(result.marginals[sl], mm, what=f"min-marginals of sequence {s}")
        low = bf.energy.min() if bf.n else 0.0
        assert result.free_energy[s] == pytest.approx(low, abs=ATOL)
        labels = np.full((bf.n, case.n_lab), np.inf)
        for lab in range(case.n_lab):
            if (case.labels == lab).any():
                labels[:, lab] = mm[:, case.labels == lab].min(axis=1)
        close(result.label_marginals[sl], labels, what="label min-marginals")


@pytest.mark.parametrize("k", [1, 2, 5])
@given(case=cases())
def test_kbest_against_sorted_enumeration(case, k):
    show(case)
    result = tr.kbest(case.unary, case.transition, case.lengths, k=k, **case.kwargs())
    assert result.states.shape == (k, sum(case.lengths))
    assert result.energy.shape == (len(case.lengths), k)
    np.testing.assert_array_equal(result.labels, case.labels[result.states])
    best = tr.viterbi(case.unary, case.transition, case.lengths, **case.kwargs())
    np.testing.assert_array_equal(result.states[0], best.states)
    np.testing.assert_array_equal(result.energy[:, 0], best.energy)
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        sl = case.sequence(s)[3]
        want = np.sort(bf.energy)[:k]
        want = np.concatenate([want, np.full(k - len(want), np.inf)])
        close(result.energy[s], want, what=f"k-best energies of sequence {s}")
        assert (np.diff(result.energy[s][np.isfinite(result.energy[s])]) >= 0).all()
        seen = set()
        for q in range(k):
            path = result.states[q, sl]
            if not np.isfinite(result.energy[s, q]):
                assert (path == 0).all()
                continue
            assert tuple(path) not in seen, "k-best paths must be distinct"
            seen.add(tuple(path))
            index = int(np.flatnonzero((bf.paths == path).all(axis=1))[0])
            assert bf.energy[index] == pytest.approx(result.energy[s, q], abs=ATOL)
        if case.integer:
            order = bf.sorted_paths()
            for q in range(min(k, len(order))):
                if np.isfinite(bf.energy[order[q]]):
                    np.testing.assert_array_equal(result.states[q, sl], bf.paths[order[q]])


@given(cases(), st.booleans())
def test_best_incorrect_against_brute_force(case, from_best):
    show(case)
    rng = np.random.default_rng(sum(case.lengths))
    if from_best:  # the usual use: the desired answer is the best labeling
        target = tr.viterbi(case.unary, case.transition, case.lengths, **case.kwargs()).labels
    else:
        target = rng.integers(0, case.n_lab, size=sum(case.lengths))
    result = tr.best_incorrect(case.unary, case.transition, target, case.lengths, **case.kwargs())
    np.testing.assert_array_equal(result.labels, case.labels[result.states])
    for s in range(len(case.lengths)):
        bf = Brute(case, s)
        sl = case.sequence(s)[3]
        if bf.n == 0:
            assert result.energy[s] == np.inf
            continue
        wrong = (case.labels[bf.paths] != target[sl][None, :]).any(axis=1)
        energies = np.where(wrong, bf.energy, np.inf)
        low = energies.min()
        if not np.isfinite(low):
            assert result.energy[s] == np.inf
            assert (result.states[sl] == 0).all()
            continue
        assert result.energy[s] == pytest.approx(low, abs=ATOL)
        path = result.states[sl]
        assert (case.labels[path] != target[sl]).any(), "the path must be incorrect"
        index = int(np.flatnonzero((bf.paths == path).all(axis=1))[0])
        assert bf.energy[index] == pytest.approx(result.energy[s], abs=ATOL)


@given(cases(latent=True, clamp=True))
def test_clamped_energy_is_min_over_latent_states(case):
    """Clamping every token gives min_Z E(Y, Z) and the free energy over Z."""
    show(case)
    rng = np.random.default_rng(7)
    y = rng.integers(0, case.n_lab, size=sum(case.lengths))
    kwargs = case.kwargs(clamp=False)
    best = tr.viterbi(case.unary, case.transition, case.lengths, clamp=y, **kwargs)
    fb = tr.forward_backward(case.unary, case.transition, case.lengths, clamp=y, **kwargs)
    for s in range(len(case.lengths)):
        case_s = Case(**{**case.__dict__, "clamp": y})
        bf = Brute(case_s, s)
        sl = case.sequence(s)[3]
        energies = bf.energy
        low = energies.min() if bf.n else 0.0
        assert best.energy[s] == pytest.approx(low, abs=ATOL)
        if np.isfinite(low):
            np.testing.assert_array_equal(best.labels[sl], y[sl])
        assert fb.log_partition[s] == pytest.approx(bf.log_z(1.0), abs=ATOL)


# --------------------------------------------------------------------------- batches
@given(cases(max_len=6))
def test_batch_equals_one_by_one(case):
    show(case)
    args = (case.unary, case.transition, case.lengths)
    vit = tr.viterbi(*args, **case.kwargs())
    fb = tr.forward_backward(*args, beta=0.7, **case.kwargs())
    ms = tr.forward_backward(*args, beta=np.inf, **case.kwargs())
    kb = tr.kbest(*args, k=3, **case.kwargs())
    target = np.zeros(sum(case.lengths), dtype=np.int64)
    bi = tr.best_incorrect(case.unary, case.transition, target, case.lengths, **case.kwargs())
    xi = np.zeros((case.k, case.k))
    for s in range(len(case.lengths)):
        unary, transition, kwargs = case.single(s)
        _, _, _, sl, ps = case.sequence(s)
        one = tr.viterbi(unary, transition, **kwargs)
        np.testing.assert_array_equal(one.states, vit.states[sl])
        np.testing.assert_array_equal(one.energy, vit.energy[s : s + 1])
        one = tr.forward_backward(unary, transition, beta=0.7, **kwargs)
        np.testing.assert_array_equal(one.marginals, fb.marginals[sl])
        np.testing.assert_array_equal(one.log_partition, fb.log_partition[s : s + 1])
        if case.per_position:
            np.testing.assert_array_equal(one.transition_marginals, fb.transition_marginals[ps])
        else:
            xi += one.transition_marginals
        one = tr.forward_backward(unary, transition, beta=np.inf, **kwargs)
        np.testing.assert_array_equal(one.marginals, ms.marginals[sl])
        one = tr.kbest(unary, transition, k=3, **kwargs)
        np.testing.assert_array_equal(one.states, kb.states[:, sl])
        np.testing.assert_array_equal(one.energy, kb.energy[s : s + 1])
        one = tr.best_incorrect(unary, transition, target[sl], **kwargs)
        np.testing.assert_array_equal(one.states, bi.states[sl])
        np.testing.assert_array_equal(one.energy, bi.energy[s : s + 1])
    if not case.per_position:
        close(fb.transition_marginals, xi, atol=1e-12, rtol=1e-12)


def test_many_sequences_use_all_chunks():
    """More sequences than partial sums of the transition marginals."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(0, 8, size=200)
    unary = rng.uniform(0, 2, size=(lengths.sum(), 3))
    transition = rng.uniform(0, 2, size=(3, 3))
    fb = tr.forward_backward(unary, transition, lengths)
    expected = np.zeros((3, 3))
    tok = np.concatenate([[0], np.cumsum(lengths)])
    for s in range(len(lengths)):
        one = tr.forward_backward(unary[tok[s] : tok[s + 1]], transition)
        expected += one.transition_marginals
        assert one.log_partition[0] == fb.log_partition[s]
    close(fb.transition_marginals, expected, atol=1e-12)
    assert fb.transition_marginals.sum() == pytest.approx(np.maximum(lengths - 1, 0).sum())


# --------------------------------------------------------------------------- gradients
def _free_energy(unary, transition, lengths, start, end, beta):
    fb = tr.forward_backward(unary, transition, lengths, beta=beta, start=start, end=end)
    return fb.free_energy.sum()


@pytest.mark.parametrize("per_position", [False, True])
@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_gradients_are_marginals_by_finite_differences(per_position, beta):
    rng = np.random.default_rng(11 + per_position)
    k, lengths = 3, [4, 0, 3, 1]
    n_tokens, n_pos = sum(lengths), sum(max(n - 1, 0) for n in lengths)
    unary = rng.uniform(-1, 1, size=(n_tokens, k))
    unary[2, 1] = np.inf
    transition = rng.uniform(-1, 1, size=(n_pos, k, k) if per_position else (k, k))
    transition[..., 0, 2] = np.inf
    start, end = rng.uniform(-1, 1, k), rng.uniform(-1, 1, k)
    fb = tr.forward_backward(unary, transition, lengths, beta=beta, start=start, end=end)
    h = 1e-6

    def numeric(array, index):
        plus, minus = array.copy(), array.copy()
        plus[index] += h
        minus[index] -= h
        args = {"unary": unary, "transition": transition, "start": start, "end": end}
        name = next(n for n, a in args.items() if a is array)
        f_plus = _free_energy(**{**args, name: plus}, lengths=lengths, beta=beta)
        f_minus = _free_energy(**{**args, name: minus}, lengths=lengths, beta=beta)
        return (f_plus - f_minus) / (2 * h)

    for array, grad in (
        (unary, fb.marginals),
        (transition, fb.transition_marginals),
        (start, fb.start_marginals),
        (end, fb.end_marginals),
    ):
        assert grad.shape == array.shape
        for index in np.ndindex(array.shape):
            if np.isinf(array[index]):
                assert grad[index] == 0.0
                continue
            assert grad[index] == pytest.approx(numeric(array, index), abs=1e-7), index


# --------------------------------------------------------------------------- BP engine
def _chain_graph(unary, transition, start, end):
    n, k = unary.shape
    graph = fg.FactorGraph()
    graph.add_variables(range(n), k)
    for t in range(n):
        table = unary[t].copy()
        if t == 0:
            table = table + start
        if t == n - 1:
            table = table + end
        graph.add_factor((t,), table)
    for t in range(1, n):
        graph.add_factor((t - 1, t), transition if transition.ndim == 2 else transition[t - 1])
    return graph


@given(cases(latent=False, clamp=False, inf_levels=(0.0, 0.1)))
def test_agrees_with_belief_propagation_on_a_chain(case):
    show(case)
    for s in range(len(case.lengths)):
        unary, transition, _ = case.single(s)
        if unary.shape[0] == 0:
            continue
        start = np.zeros(case.k) if case.start is None else case.start
        end = np.zeros(case.k) if case.end is None else case.end
        assume(np.isfinite(Brute(case, s).energy).any())
        graph = _chain_graph(unary, transition, start, end)
        ms = fg.min_sum(graph)
        vit = tr.viterbi(unary, transition, start=start, end=end)
        assert vit.energy[0] == pytest.approx(ms.energy, abs=ATOL)
        mm = tr.forward_backward(unary, transition, beta=np.inf, start=start, end=end)
        close(mm.marginals, np.array(ms.min_marginals), what="min-marginals vs min_sum")
        for beta in (0.5, 2.0):
            sp = fg.sum_product(graph, beta=beta)
            fb = tr.forward_backward(unary, transition, beta=beta, start=start, end=end)
            close(fb.marginals, np.array(sp.marginals), what="marginals vs sum_product")
            assert fb.log_partition[0] == pytest.approx(sp.log_partition, abs=1e-8)


# --------------------------------------------------------------------------- numerics
def test_scaled_domain_agrees_with_log_domain_on_long_chains():
    """Shared transitions run the scaled kernel; the same matrix given per position runs
    the log-domain kernel."""
    rng = np.random.default_rng(5)
    lengths = [300, 1, 0, 57]
    k = 6
    unary = rng.uniform(0, 4, size=(sum(lengths), k))
    unary[rng.random(unary.shape) < 0.2] = np.inf
    transition = rng.uniform(0, 4, size=(k, k))
    transition[rng.random((k, k)) < 0.2] = np.inf
    per_pos = np.broadcast_to(transition, (sum(lengths) - 3, k, k))
    for beta in (0.3, 1.0, 20.0):
        a = tr.forward_backward(unary, transition, lengths, beta=beta)
        b = tr.forward_backward(unary, per_pos, lengths, beta=beta)
        close(a.marginals, b.marginals, atol=1e-11)
        close(a.log_partition, b.log_partition, rtol=1e-12)
        close(a.transition_marginals, b.transition_marginals.sum(axis=0), atol=1e-9)


def test_scaled_domain_falls_back_when_a_route_would_underflow():
    """Two disconnected blocks of states: block 1 loses 1 unit per token for 800 tokens
    (a relative weight e^-800, below the double range), then block 0 pays 500 per token for
    10 tokens, so that block 1 carries nearly all the probability in the end."""
    transition = np.array([[0.0, np.inf], [np.inf, 0.0]])
    unary = np.vstack([np.tile([0.0, 1.0], (800, 1)), np.tile([500.0, 0.0], (10, 1))])
    fb = tr.forward_backward(unary, transition)
    assert fb.marginals[:, 1] == pytest.approx(1.0)
    assert fb.free_energy[0] == pytest.approx(800.0)
    assert fb.transition_marginals == pytest.approx(np.array([[0.0, 0.0], [0.0, 809.0]]))


@pytest.mark.parametrize("per_position", [False, True])
def test_large_energies_and_large_beta(per_position):
    rng = np.random.default_rng(2)
    k, lengths = 3, [4, 3]
    n_pos = sum(lengths) - 2
    unary = rng.uniform(0, 1e6, size=(sum(lengths), k))
    transition = rng.uniform(0, 1e6, size=(n_pos, k, k) if per_position else (k, k))
    case = Case(unary, transition, lengths, None, None, None, None, None, False)
    beta = 1e3
    fb = tr.forward_backward(unary, transition, lengths, beta=beta)
    vit = tr.viterbi(unary, transition, lengths)
    for s in range(2):
        bf = Brute(case, s)
        sl = case.sequence(s)[3]
        assert fb.log_partition[s] == pytest.approx(bf.log_z(beta), rel=1e-12)
        close(fb.marginals[sl], bf.marginals(beta), atol=1e-6)
        # at this temperature the Gibbs distribution sits on the Viterbi path
        np.testing.assert_array_equal(fb.marginals[sl].argmax(axis=1), vit.states[sl])
        assert fb.free_energy[s] == pytest.approx(vit.energy[s], rel=1e-9)
    assert np.isfinite(fb.transition_marginals).all()


def test_extreme_energies_never_give_nan():
    k = 4
    unary = np.full((6, k), np.inf)
    unary[:, 2] = 1e300  # finite but enormous
    unary[3, 1] = -1e300
    transition = np.full((k, k), np.inf)
    transition[2, 2] = 1e-300
    transition[2, 1] = 0.0
    transition[1, 2] = 0.0
    for beta in (1e-300, 1e-3, 1.0, 1e300, np.inf):
        fb = tr.forward_backward(unary, transition, beta=beta)
        for value in fb[:4]:
            assert not np.isnan(value).any() or beta == np.inf
        if beta != np.inf:
            assert not np.isnan(fb.transition_marginals).any()
    vit = tr.viterbi(unary, transition)
    assert not np.isnan(vit.energy).any()


def test_all_forbidden_sequences():
    k = 3
    unary = np.zeros((5, k))
    unary[1] = np.inf  # sequence 0 (tokens 0..2) has no feasible path
    transition = np.zeros((k, k))
    lengths = [3, 2]
    vit = tr.viterbi(unary, transition, lengths)
    assert vit.energy[0] == np.inf and vit.energy[1] == 0.0
    assert (vit.states[:3] == 0).all()
    fb = tr.forward_backward(unary, transition, lengths)
    assert fb.log_partition[0] == -np.inf and fb.free_energy[0] == np.inf
    assert (fb.marginals[:3] == 0).all()
    assert fb.log_partition[1] == pytest.approx(2 * math.log(3))
    assert fb.transition_marginals.sum() == pytest.approx(1.0)
    ms = tr.forward_backward(unary, transition, lengths, beta=np.inf)
    assert (ms.marginals[:3] == np.inf).all() and (ms.marginals[3:] == 0).all()
    kb = tr.kbest(unary, transition, lengths, k=2)
    assert (kb.energy[0] == np.inf).all()
    bi = tr.best_incorrect(unary, transition, np.zeros(5, dtype=int), lengths)
    assert bi.energy[0] == np.inf and bi.energy[1] == 0.0
    # every transition forbidden
    fb = tr.forward_backward(np.zeros((3, k)), np.full((k, k), np.inf))
    assert fb.log_partition[0] == -np.inf and (fb.marginals == 0).all()


def test_one_state_and_empty_sequences():
    unary = np.array([[1.0], [2.0], [3.0]])
    transition = np.array([[0.5]])
    lengths = [0, 2, 0, 1, 0]
    vit = tr.viterbi(unary, transition, lengths, start=[1.0], end=[10.0])
    np.testing.assert_array_equal(vit.energy, [0.0, 14.5, 0.0, 14.0, 0.0])
    fb = tr.forward_backward(unary, transition, lengths, beta=2.0)
    np.testing.assert_array_equal(fb.log_partition, [0.0, -7.0, 0.0, -6.0, 0.0])
    assert (fb.marginals == 1.0).all()
    assert fb.transition_marginals[0, 0] == pytest.approx(1.0)
    np.testing.assert_array_equal(fb.start_marginals, [2.0])
    kb = tr.kbest(unary, transition, lengths, k=2)
    np.testing.assert_array_equal(kb.energy[:, 0], [0.0, 3.5, 0.0, 3.0, 0.0])
    assert (kb.energy[:, 1] == np.inf).all()
    bi = tr.best_incorrect(unary, transition, [0, 0, 0], lengths)
    assert (bi.energy == np.inf).all()  # one label: nothing is incorrect
    # no tokens at all
    empty = tr.forward_backward(np.zeros((0, 2)), np.zeros((2, 2)))
    assert empty.marginals.shape == (0, 2) and empty.log_partition[0] == 0.0
    none = tr.viterbi(np.zeros((0, 2)), np.zeros((2, 2)), [])
    assert none.energy.shape == (0,)


def test_latent_states_share_a_label():
    # states 0, 1 -> label 0 ; state 2 -> label 1
    label = np.array([0, 0, 1])
    unary = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0]])
    transition = np.zeros((3, 3))
    vit = tr.viterbi(unary, transition, state_label=label)
    np.testing.assert_array_equal(vit.states, [0, 1])
    np.testing.assert_array_equal(vit.labels, [0, 0])
    # the desired labels (1, 0): min over hidden states = 0.5 + 0.0
    clamped = tr.viterbi(unary, transition, state_label=label, clamp=[1, 0])
    assert clamped.energy[0] == 0.5
    # most offending incorrect answer w.r.t. (0, 0): labels differ somewhere
    bi = tr.best_incorrect(unary, transition, [0, 0], state_label=label)
    assert bi.energy[0] == 0.5 and tuple(bi.labels) == (1, 0)
    fb = tr.forward_backward(unary, transition, state_label=label, beta=np.inf)
    np.testing.assert_array_equal(fb.label_marginals, [[0.0, 0.5], [0.0, 1.0]])


def test_kernels_callable_from_njit_code():
    @njit
    def decode_all(unary, transition, start, end, lengths):
        states = np.zeros(unary.shape[0], dtype=np.int64)
        total = 0.0
        pos = 0
        for n in lengths:
            e = tr.viterbi_kernel(
                unary[pos : pos + n], transition, start, end, states[pos : pos + n]
            )
            total += (
                tr.path_energy_kernel(
                    unary[pos : pos + n], transition, start, end, states[pos : pos + n]
                )
                - e
            )
            pos += n
        return states, total

    rng = np.random.default_rng(0)
    lengths = np.array([3, 0, 5])
    unary = rng.uniform(size=(8, 4))
    transition = rng.uniform(size=(4, 4))
    start, end = rng.uniform(size=4), rng.uniform(size=4)
    states, total = decode_all(unary, transition, start, end, lengths)
    expected = tr.viterbi(unary, transition, lengths, start=start, end=end)
    np.testing.assert_array_equal(states, expected.states)
    assert total == 0.0


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: tr.viterbi(np.zeros(3), np.zeros((2, 2))), r"unary must have shape"),
        (
            lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((3, 3))),
            r"\(K, K\) = \(2, 2\) .*got \(3, 3\)",
        ),
        (
            lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((3, 2, 2))),
            r"= \(2, 2, 2\) .*got \(3, 2, 2\)",
        ),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), [1, 1]), r"sum to .* 3"),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), [4, -1]), r"lengths\[1\]"),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), [1.5, 1.5]), r"integers"),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), start=[0.0]), r"start"),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), end=np.ones(3)), r"end"),
        (
            lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), state_label=[0, -1]),
            r"state_label\[1\] = -1",
        ),
        (
            lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), state_label=[0, 3], n_labels=2),
            r"state_label\[1\] = 3 is out of range",
        ),
        (
            lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), [1, 2], clamp=[0, -1, 2]),
            r"clamp\[2\] \(sequence 1, position 1\) = 2 is out of range",
        ),
        (lambda: tr.viterbi(np.zeros((3, 2)), np.zeros((2, 2)), clamp=[0, 1]), r"clamp"),
        (
            lambda: tr.best_incorrect(np.zeros((3, 2)), np.zeros((2, 2)), [0, 5, 0]),
            r"target\[1\] .* = 5 is out of range",
        ),
        (
            lambda: tr.path_energy(np.zeros((3, 2)), np.zeros((2, 2)), [0, 2, 0]),
            r"states\[1\] .* = 2 is out of range",
        ),
        (lambda: tr.forward_backward(np.zeros((3, 2)), np.zeros((2, 2)), beta=0), r"beta"),
        (lambda: tr.forward_backward(np.zeros((3, 2)), np.zeros((2, 2)), beta=-1), r"beta"),
        (lambda: tr.forward_backward(np.zeros((3, 2)), np.zeros((2, 2)), beta="x"), r"beta"),
        (lambda: tr.kbest(np.zeros((3, 2)), np.zeros((2, 2)), k=0), r"k must be"),
        (lambda: tr.viterbi(np.zeros((3, 2)), "ab"), r"real numbers"),
    ],
)
def test_invalid_input_raises(call, match):
    with pytest.raises(FactorGraphError, match=match):
        call()


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_bad_energies_are_named(bad):
    unary = np.zeros((5, 2))
    unary[3, 1] = bad
    with pytest.raises(FactorGraphError, match=r"unary\[3, 1\] \(sequence 1, position 1\)"):
        tr.viterbi(unary, np.zeros((2, 2)), [2, 3])
    transition = np.zeros((3, 2, 2))
    transition[2, 0, 1] = bad
    with pytest.raises(
        FactorGraphError, match=r"transition\[2, 0, 1\] \(sequence 1, between positions 1 and 2\)"
    ):
        tr.forward_backward(np.zeros((5, 2)), transition, [2, 3])
    with pytest.raises(FactorGraphError, match=r"transition\[0, 1\] is"):
        tr.kbest(np.zeros((5, 2)), transition[2], [2, 3])
    with pytest.raises(FactorGraphError, match=r"start\[1\] is"):
        tr.viterbi(np.zeros((5, 2)), np.zeros((2, 2)), start=[0.0, bad])
    with pytest.raises(FactorGraphError, match=r"end\[0\] is"):
        tr.path_energy(np.zeros((5, 2)), np.zeros((2, 2)), np.zeros(5, int), end=[bad, 0.0])


def test_parallel_and_serial_kernels_agree(monkeypatch):
    """Batches run on several threads above PARALLEL_WORK; results must not change."""
    rng = np.random.default_rng(9)
    lengths = rng.integers(0, 30, size=40)
    k = 5
    unary = rng.uniform(0, 3, size=(lengths.sum(), k))
    unary[rng.random(unary.shape) < 0.1] = np.inf
    transition = rng.uniform(0, 3, size=(k, k))
    target = rng.integers(0, k, size=lengths.sum())

    def run():
        return (
            tr.viterbi(unary, transition, lengths),
            tr.forward_backward(unary, transition, lengths, beta=1.5),
            tr.forward_backward(unary, transition, lengths, beta=np.inf),
            tr.kbest(unary, transition, lengths, k=3),
            tr.best_incorrect(unary, transition, target, lengths),
            tr.path_energy(unary, transition, np.zeros(lengths.sum(), int), lengths),
        )

    serial = run()
    monkeypatch.setattr(tr._batch, "PARALLEL_WORK", 0)
    parallel = run()
    for a, b in zip(serial, parallel):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            if x is not None:
                np.testing.assert_array_equal(x, y)
