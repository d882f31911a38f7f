"""Batched inference against a Python loop of single calls (issue 18), in the same run.

Workloads (B items each, default B = 1,000): 20x20 grids with K = 2 and K = 8 states (loopy
BP, flooding schedule, ``--iters`` iterations at most, tol 0 so that an item stops early
only at an exact fixed point), and chains of ``--chain-length`` variables with K = 10
states (the exact two-pass schedule). The items share the pairwise tables and differ in
their unary energies (random normal per item), given as the rows of ``energies`` of shape
(B, M): the batch is "the same model on B inputs" (B images of one size, B sentences of one
length).

Engines, per workload and semiring (min-sum, and sum-product at beta = 1):

- ``batched``: :func:`factorgraph_ebm.batch.batch_belief_propagation` on the B rows, one
  call (items in parallel over Numba's threads); ``batched-1-thread``: the same with
  ``threads=1`` (what batching saves without parallelism);
- ``loop``: ``[fe.belief_propagation(g, energies=theta[b], ...) for b in range(B)]``
  (each call on one thread: these graphs are below the threading threshold);
- ``pgmax-vmap``: PGMax 0.6 (JAX on CPU), ``jax.jit(jax.vmap(f))`` of a function that
  sets the item's unary energies as evidence, runs the same number of flooding iterations
  and decodes (min-sum grids only: PGMax's max-product; float32 unless JAX_ENABLE_X64),
  when JAX and PGMax import; otherwise the row says why it was skipped.

Kernels are compiled beforehand on a small batch (not timed). Each engine runs ``--repeat``
times, ours interleaved (batched, loop, batched-1-thread in turn, each round), and the fastest
run counts; ``--clock cpu`` times CPU seconds of the process instead of wall-clock seconds.
The batched results are checked against the loop's: the decoded energies and the variable
beliefs of every item equal bit for bit (``identical``).

Usage::

    python benchmarks/batch_speed.py [--items 1000] [--iters 30] [--repeat 2]

Prints a Markdown table, then one JSON line ``{"rows": [...], "load": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import warnings

import numpy as np

import factorgraph_ebm as fe
from factorgraph_ebm.batch import batch_belief_propagation


def grid(n: int, k: int, seed: int):
    """An n x n grid of K-state variables: random pairwise tables, zero unary factors."""
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    ids = g.add_variables(range(n * n), k)
    g.add_factors(ids[:, None], np.zeros((n * n, k)), by_index=True)
    pairs = [(i * n + j, i * n + j + 1) for i in range(n) for j in range(n - 1)]
    pairs += [(i * n + j, (i + 1) * n + j) for i in range(n - 1) for j in range(n)]
    g.add_factors(np.array(pairs), rng.normal(size=(len(pairs), k, k)), by_index=True)
    return g


def chain(n: int, k: int, seed: int):
    """A chain of n K-state variables: random pairwise tables, zero unary factors."""
    rng = np.random.default_rng(seed)
    g = fe.FactorGraph()
    ids = g.add_variables(range(n), k)
    g.add_factors(ids[:, None], np.zeros((n, k)), by_index=True)
    pairs = np.stack([ids[:-1], ids[1:]], axis=1)
    g.add_factors(pairs, rng.normal(size=(n - 1, k, k)), by_index=True)
    return g


def item_energies(g, n_items: int, seed: int) -> np.ndarray:
    """(B, M): the graph's theta with its unary factors' entries redrawn per item."""
    cg = g.compile()
    theta = np.tile(cg.energies, (n_items, 1))
    unary = np.flatnonzero(np.diff(cg.scope_ptr) == 1)
    entries = np.concatenate([np.arange(cg.table_offset[a], cg.table_offset[a + 1])
                              for a in unary])
    theta[:, entries] = np.random.default_rng(seed).normal(size=(n_items, len(entries)))
    return theta


#: The clock of every figure: ``time.perf_counter`` (wall), or ``time.process_time`` (CPU
#: seconds of the process, all its threads: ``--clock cpu``, what survives a loaded machine).
CLOCK = [time.perf_counter]


def fastest(fn, repeat: int):
    """(best seconds, last result) of ``repeat`` runs."""
    best, out = math.inf, None
    for _ in range(repeat):
        started = CLOCK[0]()
        out = fn()
        best = min(best, CLOCK[0]() - started)
    return best, out


def interleaved(fns: dict, repeat: int) -> dict:
    """{name: (best seconds, last result)}: ``repeat`` rounds, each running every function
    once in turn, so that a change of load hits all of them alike."""
    best = {name: (math.inf, None) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            seconds, out = fastest(fn, 1)
            best[name] = (min(best[name][0], seconds), out)
    return best


def pgmax_vmap(g, theta: np.ndarray, iters: int, repeat: int):
    """(seconds, energies of the decoded states) of PGMax's vmap over the items, or a
    reason (str) why it cannot run here."""
    try:
        import jax
        from pgmax import fgraph, fgroup, infer, vgroup
    except Exception as exc:  # ImportError, or a JAX that does not fit this PGMax
        return (f"skipped: JAX/PGMax do not import ({type(exc).__name__}: {exc}); "
                'pip install "jax==0.4.30" "jaxlib==0.4.30" && pip install --no-deps '
                '"pgmax==0.6.1"')
    cg = g.compile()
    k = int(cg.n_states[0])
    arity = np.diff(cg.scope_ptr)
    pair = np.flatnonzero(arity == 2)
    unary = np.flatnonzero(arity == 1)
    variables = vgroup.NDVarArray(num_states=k, shape=(g.n_variables,))
    graph = fgraph.FactorGraph(variable_groups=variables)
    scopes = cg.scope_vars.reshape(-1)[np.repeat(arity == 2, arity)].reshape(-1, 2)
    tables = np.stack([theta[0, cg.table_offset[a]:cg.table_offset[a + 1]] for a in pair])
    graph.add_factors(fgroup.PairwiseFactorGroup(
        variables_for_factors=[[variables[int(u)], variables[int(v)]] for u, v in scopes],
        log_potential_matrix=-tables.reshape(-1, k, k)))
    bp = infer.build_inferer(graph.bp_state, backend="bp")
    starts = cg.table_offset[unary]
    evidence = -np.stack([theta[:, s:s + k] for s in starts], axis=1)  # (B, V, K)

    def one(item_evidence):
        arrays = bp.init(evidence_updates={variables: item_evidence})
        arrays = bp.run(arrays, num_iters=iters, damping=0.0, temperature=0.0)
        return infer.decode_map_states(bp.get_beliefs(arrays))[variables]

    batched = jax.jit(jax.vmap(one))
    jax.block_until_ready(batched(evidence[:2]))  # trace and compile (not timed)
    jax.block_until_ready(batched(evidence))
    seconds, states = fastest(lambda: np.asarray(jax.block_until_ready(batched(evidence))),
                              repeat)
    return seconds, energies_of_states(cg, theta, states.reshape(len(theta), -1))


def energies_of_states(cg, theta: np.ndarray, states: np.ndarray) -> np.ndarray:
    """E_b(states[b]) under energy rows theta[b] (B,), from the compiled layout: each
    factor's entry is table_offset + sum of edge_stride * state over its scope."""
    factor_of_edge = np.repeat(np.arange(cg.n_factors), np.diff(cg.scope_ptr))
    index = np.zeros((len(states), cg.n_factors), dtype=np.int64) + cg.table_offset[:-1]
    np.add.at(index.T, factor_of_edge, (cg.edge_stride * states[:, cg.scope_vars]).T)
    return np.take_along_axis(theta, index, axis=1).sum(axis=1)


def measure(name, g, theta, beta, options, repeat, with_pgmax, iters):
    """One row per engine for one workload and semiring."""
    n = len(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol 0: "not converged" is the point
        # Compile (or load) every kernel these calls use, on a few items: not timed.
        batch_belief_propagation(g, beta=beta, energies=theta[:4], **options)
        fe.belief_propagation(g, beta=beta, energies=theta[0], **options)
        runs = interleaved({
            "batched": lambda: batch_belief_propagation(g, beta=beta, energies=theta,
                                                        **options),
            "loop": lambda: [fe.belief_propagation(g, beta=beta, energies=theta[b], **options)
                             for b in range(n)],
            "batched-1-thread": lambda: batch_belief_propagation(
                g, beta=beta, energies=theta, threads=1, **options),
        }, repeat)
        (t_batch, batch), (t_loop, loop), (t_one, one) = (
            runs["batched"], runs["loop"], runs["batched-1-thread"])
    identical = all(
        batch[b].energy == loop[b].energy
        and np.array_equal(batch[b].variable_beliefs, loop[b].variable_beliefs)
        for b in range(n))
    semiring = "min-sum" if beta == math.inf else f"sum-product beta={beta:g}"
    common = dict(workload=name, semiring=semiring, items=n,
                  mean_iters=float(np.mean([r.n_iter for r in loop])))
    identical_one = all(one[b].energy == loop[b].energy
                        and np.array_equal(one[b].variable_beliefs, loop[b].variable_beliefs)
                        for b in range(n))
    rows = [
        dict(common, engine="batched", seconds=t_batch, us_per_item=1e6 * t_batch / n,
             speedup_vs_loop=t_loop / t_batch, identical_to_loop=identical),
        dict(common, engine="batched-1-thread", seconds=t_one, us_per_item=1e6 * t_one / n,
             speedup_vs_loop=t_loop / t_one, identical_to_loop=identical_one),
        dict(common, engine="loop", seconds=t_loop, us_per_item=1e6 * t_loop / n,
             speedup_vs_loop=1.0, identical_to_loop=True),
    ]
    if with_pgmax and beta == math.inf and name.startswith("grid"):
        got = pgmax_vmap(g, theta, iters, repeat)
        if isinstance(got, str):
            rows.append(dict(common, engine="pgmax-vmap", seconds=None, us_per_item=None,
                             speedup_vs_loop=None, identical_to_loop=None, note=got))
        else:
            seconds, energies = got
            ours = np.array([r.energy for r in batch])
            rows.append(dict(common, engine="pgmax-vmap", seconds=seconds,
                             us_per_item=1e6 * seconds / n, speedup_vs_loop=t_loop / seconds,
                             identical_to_loop=None,
                             note=f"float32; mean decoded energy {np.nanmean(energies):.6g} "
                                  f"(ours {ours.mean():.6g})"))
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000, help="batch size B")
    parser.add_argument("--size", type=int, default=20, help="grid side")
    parser.add_argument("--chain-length", type=int, default=100)
    parser.add_argument("--iters", type=int, default=30, help="flooding iterations at most")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workloads", default="grid-k2,grid-k8,chain")
    parser.add_argument("--no-pgmax", action="store_true")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock seconds, or CPU seconds of the process")
    args = parser.parse_args(argv)
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter

    builders = {
        "grid-k2": lambda: grid(args.size, 2, seed=0),
        "grid-k8": lambda: grid(args.size, 8, seed=0),
        "chain": lambda: chain(args.chain_length, 10, seed=0),
    }
    rows = []
    for name in args.workloads.split(","):
        g = builders[name]()
        theta = item_energies(g, args.items, seed=1)
        if name.startswith("grid"):
            options = dict(method="bp", schedule="parallel", max_iter=args.iters, tol=0.0)
            label = f"grid {args.size}x{args.size} K={g.n_states[0]}"
        else:
            options = {}
            label = f"chain n={args.chain_length} K=10"
        for beta in (math.inf, 1.0):
            rows += measure(label, g, theta, beta, options, args.repeat, not args.no_pgmax,
                            args.iters)

    print("| workload | semiring | engine | B | mean iters | seconds | us/item | "
          "speedup vs loop | identical |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if r["seconds"] is None:
            print(f"| {r['workload']} | {r['semiring']} | {r['engine']} | {r['items']} | "
                  f"| | | | {r['note']} |")
            continue
        print(f"| {r['workload']} | {r['semiring']} | {r['engine']} | {r['items']} | "
              f"{r['mean_iters']:.1f} | {r['seconds']:.3f} | {r['us_per_item']:.1f} | "
              f"{r['speedup_vs_loop']:.2f} | {r['identical_to_loop']} |")
    import numba

    report = {
        "rows": rows,
        "load": list(os.getloadavg()),
        "threads": numba.get_num_threads(),
        "clock": args.clock,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "factorgraph_ebm": fe.__version__,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
