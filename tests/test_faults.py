"""Faults (issue 14): huge ``max_iter``, Ctrl-C during long compiled loops, running out of
memory during inference, and the labeler's memory.

- ``max_iter`` allocates nothing in proportion (the residual history grows with the
  iterations done and keeps the last ``MAX_RESIDUALS``);
- loopy BP, trellis batches and perceptron epochs run in paced chunks, and the chunks
  change nothing, bit for bit;
- SIGINT stops a long BP call, a long perceptron epoch and a long trellis batch with a
  KeyboardInterrupt within seconds (a generous bound, for loaded machines: measured
  0.01-0.2 s);
- a MemoryError during inference is a plain MemoryError that leaks nothing (the kernels
  allocate nothing: their scratch comes from Python), never a SystemError, and later calls
  work;
- the SequenceLabeler builds no dense n_features x L array, and the online perceptron
  allocates nothing per sequence.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numba
import numpy as np
import pytest
from warmup import SUBPROCESS_TIMEOUT

import factorgraph_ebm as fe
from factorgraph_ebm import _pacing
from factorgraph_ebm import trellis as tr
from factorgraph_ebm.messages import schedules as S

THREADS = [1, 2] if numba.config.NUMBA_NUM_THREADS > 1 else [1]
#: Seconds from SIGINT to the KeyboardInterrupt that the tests accept: generous, for a
#: loaded machine (measured 0.01-0.2 s).
INTERRUPT_BOUND = 10.0


def spin_glass(side, seed=0):
    """A +-1 coupled Ising grid: loopy BP at low temperature keeps changing its messages."""
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables(range(side * side), 2)
    idx = np.arange(side * side).reshape(side, side)
    pairs = np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                            np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], 1)])
    j = rng.choice([-1.0, 1.0], size=len(pairs))
    g.add_factors(pairs, j[:, None, None] * np.array([[-1.0, 1.0], [1.0, -1.0]]) + 1.0,
                  by_index=True)
    g.add_factors(idx.reshape(-1, 1), rng.normal(0.0, 0.1, (side * side, 2)), by_index=True)
    return g


#: The same model in the subprocesses.
SPIN_GLASS = "import numpy as np\nimport factorgraph_ebm as fe\n" + inspect.getsource(spin_glass)


def grid(side: int, k: int, seed: int) -> fe.FactorGraph:
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    g.add_variables(range(side * side), k)
    idx = np.arange(side * side).reshape(side, side)
    pairs = np.concatenate([np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
                            np.stack([idx[:-1, :].ravel(), idx[1:, :].ravel()], 1)])
    g.add_factors(pairs, rng.random((len(pairs), k, k)), by_index=True)
    g.add_factors(np.arange(side * side)[:, None], rng.random((side * side, k)), by_index=True)
    return g


# --------------------------------------------------------------------------- max_iter
@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_max_iter_of_any_size_allocates_nothing_in_proportion(schedule):
    """max_iter=10**10 ("until convergence") used to preallocate 74.5 GiB of residuals."""
    g = grid(4, 3, seed=1)
    r = fe.sum_product(g, beta=1.0, method="bp", schedule=schedule, max_iter=10**10, tol=1e-9)
    assert r.converged and 1 < r.n_iter < 1000
    assert r.residuals.shape == (r.n_iter,) and r.residuals[-1] <= 1e-9 < r.residuals[0]


def test_residual_history_keeps_the_last_max_residuals(monkeypatch):
    g = spin_glass(4)
    options = dict(beta=3.0, method="bp", schedule="parallel", tol=0.0, warn=False)
    whole = fe.sum_product(g, max_iter=40, **options)
    assert not whole.converged and whole.residuals.shape == (40,)
    monkeypatch.setattr(S, "MAX_RESIDUALS", 7)
    monkeypatch.setattr(_pacing, "CHUNK_SECONDS", 0.0)  # chunks of one iteration
    capped = fe.sum_product(g, max_iter=40, **options)
    assert capped.n_iter == 40
    np.testing.assert_array_equal(capped.residuals, whole.residuals[-7:])
    np.testing.assert_array_equal(capped.messages, whole.messages)


# --------------------------------------------------------------------------- chunks
@pytest.mark.parametrize("beta", [math.inf, 1.0])
@pytest.mark.parametrize(("schedule", "threads"),
                         [("sequential", None)] + [("parallel", n) for n in THREADS])
def test_chunks_of_iterations_change_nothing(monkeypatch, beta, schedule, threads):
    """Loopy BP in one chunk, in chunks of one iteration, and paced as it runs: the same
    iterations, messages, beliefs and decoding, bit for bit (the messages are BP's whole
    state between iterations); the callback sees every chunk."""
    g = grid(5, 3, seed=2)
    options = dict(beta=beta, method="bp", schedule=schedule, threads=threads, damping=0.3,
                   max_iter=60, tol=1e-12, warn=False)
    with monkeypatch.context() as m:
        m.setattr(S, "paced", lambda n: iter([(0, n)]))
        whole = fe.belief_propagation(g, **options)
    paced = fe.belief_propagation(g, **options)
    reports = []
    monkeypatch.setattr(_pacing, "CHUNK_SECONDS", 0.0)
    single = fe.belief_propagation(g, callback=lambda *a: reports.append(a), **options)
    assert 1 < whole.n_iter
    for result in (paced, single):
        assert (result.n_iter, result.converged) == (whole.n_iter, whole.converged)
        for name in ("residuals", "messages", "variable_beliefs", "factor_beliefs",
                     "assignment"):
            np.testing.assert_array_equal(getattr(result, name), getattr(whole, name),
                                          err_msg=name)
        assert result.energy == whole.energy and result.free_energy == whole.free_energy
    assert reports == [(n, float(whole.residuals[n - 1])) for n in range(1, whole.n_iter + 1)]


def test_pacing_sizes_chunks_by_measured_time():
    ranges = list(_pacing.paced(100, seconds=math.inf))
    assert ranges[:4] == [(0, 1), (1, 3), (3, 7), (7, 15)]  # quick steps: twice as many
    assert ranges[-1][1] == 100 and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    slow = []
    for lo, hi in _pacing.paced(6, first=4, seconds=0.01):
        slow.append((lo, hi))
        time.sleep(0.05)  # a chunk 5x too long: the next ones shrink to one step
    assert slow == [(0, 4), (4, 5), (5, 6)]


# --------------------------------------------------------------------------- Ctrl-C
def interrupt_after_start(script: str, wait: float = 0.5
                          ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``script`` in a subprocess; ``wait`` seconds after it prints RUNNING, send SIGINT.
    Returns the finished process and the seconds from SIGINT to the KeyboardInterrupt it
    reports (``INTERRUPTED <perf_counter>``: CLOCK_MONOTONIC, shared by the processes)."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ)
    try:
        for line in process.stdout:
            if line.startswith("RUNNING"):
                break
        else:
            pytest.fail(f"the subprocess never started: {process.stderr.read()}")
        time.sleep(wait)  # well inside the long call
        sent = time.perf_counter()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        process.kill()
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    caught = [float(line.split()[1]) for line in out.splitlines()
              if line.startswith("INTERRUPTED")]
    assert done.returncode == 3 and caught, (done.returncode, out, err)
    return done, caught[0] - sent


@pytest.mark.parametrize(("schedule", "threads"),
                         [("sequential", 1)] + [("parallel", n) for n in THREADS])
def test_ctrl_c_stops_belief_propagation(warm_kernels, schedule, threads):
    """SIGINT during a BP call that would run for hours (a spin glass that never
    converges, max_iter=10**12): KeyboardInterrupt within a fraction of a second."""
    script = SPIN_GLASS + textwrap.dedent(f"""
        import sys, time
        g = spin_glass(30)
        started = []
        def report(n_iter, residual):
            if not started:
                started.append(n_iter)
                print("RUNNING", flush=True)
        try:
            fe.sum_product(g, beta=3.0, method="bp", schedule={schedule!r}, threads={threads},
                           max_iter=10**12, tol=0.0, warn=False, callback=report)
        except KeyboardInterrupt:
            print("INTERRUPTED", time.perf_counter(), flush=True)
            sys.exit(3)
        print("FINISHED", flush=True)
    """)
    _, latency = interrupt_after_start(script)
    assert latency < INTERRUPT_BOUND, f"KeyboardInterrupt {latency:.3f} s after SIGINT"


# --------------------------------------------------------------------------- trellis
def _trellis_batch(seed: int, wide: bool):
    """Sequences of lengths 0..29, K = 5, 10% forbidden states; ``wide``: a transition range
    that sends forward-backward to the log domain."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 30, size=40)
    unary = rng.uniform(0, 3, size=(lengths.sum(), 5))
    unary[rng.random(unary.shape) < 0.1] = np.inf
    transition = rng.uniform(0, 400 if wide else 3, size=(5, 5))
    return unary, transition, lengths, rng.integers(0, 5, size=lengths.sum())


def _trellis_answers(unary, transition, lengths, target):
    return (
        tr.viterbi(unary, transition, lengths),
        tr.forward_backward(unary, transition, lengths, beta=1.5),
        tr.forward_backward(unary, transition, lengths, beta=math.inf),
        tr.kbest(unary, transition, lengths, k=3),
        tr.best_incorrect(unary, transition, target, lengths),
        tr.path_energy(unary, transition, np.zeros(lengths.sum(), int), lengths),
    )


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("wide", [False, True])
def test_trellis_batches_in_chunks_change_nothing(monkeypatch, threaded, wide):
    """Trellis batch kernels run on paced ranges of sequences (forward-backward: of its
    fixed chunks of sequences), serially or on threads: one item per call gives the
    answers of one call for all, bit for bit."""
    batch = _trellis_batch(5, wide)
    if threaded:
        monkeypatch.setattr(tr._batch, "PARALLEL_WORK", 0)
    with monkeypatch.context() as m:
        m.setattr(tr._batch, "paced", lambda n, first=1: iter([(0, n)]))
        whole = _trellis_answers(*batch)
    monkeypatch.setattr(_pacing, "CHUNK_SECONDS", 0.0)  # one item per call
    single = _trellis_answers(*batch)
    for a, b in zip(whole, single):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            if x is not None:
                np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("call", ["forward_backward", "kbest"])
def test_ctrl_c_stops_a_long_trellis_batch(warm_kernels, call):
    """SIGINT during a trellis batch of tens of seconds (log-domain forward-backward; k-best
    paths): KeyboardInterrupt within a fraction of a second (forward-backward: within one
    of its 32 fixed chunks of sequences)."""
    script = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from factorgraph_ebm import trellis as tr
        rng = np.random.default_rng(0)
        k, n_seq, length = 50, 10_000, 20
        unary = rng.random((n_seq * length, k))
        transition = rng.random((k, k)) * 1000  # log domain
        lengths = np.full(n_seq, length)
        run = {{"forward_backward": lambda: tr.forward_backward(unary, transition, lengths),
               "kbest": lambda: tr.kbest(unary, transition, lengths, k=20)}}[{call!r}]
        print("RUNNING", flush=True)
        try:
            run()
        except KeyboardInterrupt:
            print("INTERRUPTED", time.perf_counter(), flush=True)
            sys.exit(3)
        print("FINISHED", flush=True)
    """)
    _, latency = interrupt_after_start(script, wait=1.0)
    assert latency < INTERRUPT_BOUND, f"KeyboardInterrupt {latency:.3f} s after SIGINT"


# --------------------------------------------------------------------------- labeler
PERCEPTRON_DATA = textwrap.dedent("""
    import numpy as np
    import scipy.sparse
    from factorgraph_ebm.sequence import chain as C, labeler as L
    from factorgraph_ebm.sequence.features import AttributeMatrix

    def perceptron_problem(n_seq, n_labels, length=20, n_features=1000, seed=0):
        # A labeler, its chain and design for n_seq random sequences: the arguments of
        # SequenceLabeler._fit_online, the online perceptron.
        rng = np.random.default_rng(seed)
        lengths = np.full(n_seq, length)
        n = int(lengths.sum())
        matrix = scipy.sparse.csr_matrix(  # 3 attributes per token
            (rng.random(3 * n), rng.integers(0, n_features, 3 * n), np.arange(n + 1) * 3),
            shape=(n, n_features))
        attributes = AttributeMatrix(matrix, lengths)
        codes = rng.integers(0, n_labels, n)
        chain = C._Chain.for_data(attributes, codes, n_labels, True, True)
        model = L.SequenceLabeler("perceptron", progress=False)
        return model, chain, C._Design.of(attributes), codes, np.zeros(chain.n_params)
""")


def test_perceptron_allocates_nothing_per_sequence(warm_kernels):
    """The online perceptron copied the L x L transition matrix (and Viterbi's scratch) for
    every sequence: Numba's allocation count of an epoch in one kernel call is now the
    same for 5, 50 and 500 sequences (the arrays passed in)."""
    script = PERCEPTRON_DATA + textwrap.dedent("""
        import json
        L.paced = lambda n, first=1: iter([(0, n)])  # the epoch in one kernel call

        def allocations(n_seq):
            from numba.core.runtime import rtsys
            model, chain, design, codes, theta = perceptron_problem(n_seq, 5, length=6)
            before = rtsys.get_allocation_stats().alloc
            model._fit_online(chain, design, codes, theta, 1, np.random.default_rng(0),
                              lambda *args: None)
            return rtsys.get_allocation_stats().alloc - before

        model, *args = perceptron_problem(3, 5)
        model._fit_online(*args, 1, np.random.default_rng(0), lambda *a: None)  # loaded
        print(json.dumps([allocations(n) for n in (5, 50, 500)]))
    """)
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts[0] == counts[1] == counts[2], counts


def test_ctrl_c_stops_a_perceptron_epoch(warm_kernels):
    """SIGINT during one online-perceptron epoch of tens of seconds (10**5 sequences, 256
    labels): KeyboardInterrupt within a fraction of a second."""
    script = PERCEPTRON_DATA + textwrap.dedent("""
        import sys, time
        model, *args = perceptron_problem(5, 4)
        model._fit_online(*args, 1, np.random.default_rng(0), lambda *a: None)  # loaded
        model, *args = perceptron_problem(100_000, 256)
        print("RUNNING", flush=True)
        try:
            model._fit_online(*args, 1, np.random.default_rng(0), lambda *a: None)
        except KeyboardInterrupt:
            print("INTERRUPTED", time.perf_counter(), flush=True)
            sys.exit(3)
        print("FINISHED", flush=True)
    """)
    _, latency = interrupt_after_start(script, wait=1.0)
    assert latency < INTERRUPT_BOUND, f"KeyboardInterrupt {latency:.3f} s after SIGINT"


@pytest.mark.parametrize("loss", ["perceptron", "nll", "hinge"])
def test_labeler_builds_no_dense_weight_array(loss):
    """Training and prediction built a dense n_features x L array (2,715,110 x 2,242: 45
    GiB) although only the stored (attribute, label) pairs are weights: with 2**20 hashed
    attributes and 64 labels (a dense array: 512 MiB) fit and predict now allocate a few
    MiB (NumPy's allocations, traced)."""
    rng = np.random.default_rng(0)
    X = [[{f"w={rng.integers(10**6)}": 1.0, "bias": 1.0} for _ in range(n)]
         for n in rng.integers(1, 8, size=40)]
    Y = [[int(label) for label in rng.integers(0, 64, size=len(x))] for x in X]
    model = fe.SequenceLabeler(loss, n_epochs=2, n_features=2**20, labels=list(range(64)),
                               progress=False)
    tracemalloc.start()
    try:
        model.fit(X, Y)
        model.predict(X)
        model.predict_marginals(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dense = 2**20 * 64 * 8
    assert peak < dense / 8, f"peak {peak / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- memory
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import factorgraph_ebm as fe

    def vm_bytes():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize"):
                    return int(line.split()[1]) * 1024

    def chain(k):
        g = fe.FactorGraph()
        g.add_variables(["a", "big", "c"], [2, k, 2])
        rng = np.random.default_rng(0)
        g.add_factor(["big"], rng.random(k))
        g.add_factor(["a", "big"], rng.random((2, k)))
        g.add_factor(["big", "c"], rng.random((k, 2)))
        return g

    schedule, threads, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = dict(method="bp", schedule=schedule, threads=threads, max_iter=3, warn=False)
    for beta in (np.inf, 1.0):
        fe.belief_propagation(chain(5), beta=beta, **options)  # kernels loaded, threads up
    g = chain(k)
    g.compile()
    expected = fe.belief_propagation(g, beta=1.0, **options)
""")


def _memory_script_tail(steps: int) -> str:
    return textwrap.dedent(f"""
    energy, messages = expected.energy, expected.messages.copy()
    del expected
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    base = vm_bytes()
    report = {{"errors": [], "growth": [], "k": k}}
    for step in range({steps}):
        resource.setrlimit(resource.RLIMIT_AS, (base + step * 24 * k, hard))
        try:
            fe.belief_propagation(g, beta=1.0, **options)
            report["errors"].append(None)
        except BaseException as exc:
            report["errors"].append(type(exc).__name__ + ": " + str(exc)[:80])
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        report["growth"].append(vm_bytes() - base)
    again = fe.belief_propagation(g, beta=1.0, **options)
    report["same"] = again.energy == energy and np.array_equal(again.messages, messages)
    print(json.dumps(report))
    """)


@pytest.mark.parametrize(("schedule", "threads"),
                         [("tree", 1), ("sequential", 1)] + [("parallel", n) for n in THREADS])
def test_out_of_memory_is_a_clean_memory_error(warm_kernels, schedule, threads):
    """Inference under an address-space limit raised step by step, from nothing to enough:
    every failure is a MemoryError (not the SystemError of a failing parallel kernel), the
    process's virtual memory returns to where it was after each (a kernel that allocated
    and failed leaked it all: 2.4 GB for good), and once the limit is lifted the call gives
    the answer it gave before."""

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (Linux)")
    k = 2**21  # 16 MiB per array of k floats: a leak of one is plain to see
    script = MEMORY_SCRIPT + _memory_script_tail(14)
    # glibc raises its mmap threshold after freeing a large block, and then keeps up to
    # 32 MiB of freed heap mapped: a fixed threshold maps and unmaps every large array, so
    # the virtual size measures what is held.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    done = subprocess.run([sys.executable, "-c", script, schedule, str(threads), str(k)],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    errors = [e for e in report["errors"] if e is not None]
    assert errors and report["errors"][-1] is None, report  # it failed, then fitted
    assert all(e.startswith("MemoryError") for e in errors), report
    assert max(report["growth"]) < 4 * 2**20, report  # nothing leaked (4 MiB of slack)
    assert report["same"]

