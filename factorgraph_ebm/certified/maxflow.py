"""Minimum s-t cuts of sparse graphs with terminal links: the augmenting-path algorithm
of Boykov & Kolmogorov (2004, "An experimental comparison of min-cut/max-flow algorithms
for energy minimization in vision", TPAMI 26(9)), after their reference implementation
(maxflow 3.0): two search trees, grown from the source and from the sink, are reused
between augmentations, and orphaned nodes are re-adopted instead of searching afresh.

Written here because the expansion moves of :mod:`.expansion` need thousands of cuts of
grid-like graphs: SciPy's ``maximum_flow`` (Dinic's algorithm) took 0.4-1.7 s per cut of a
300x300 grid, this kernel (see ``benchmarks/README.md``, issue 17) a few hundredths of a
second. Capacities are int64 so that augmentations are exact and the search terminates.

The graph: ``n`` nodes; arcs in CSR order (the arcs leaving node i are
``first[i]:first[i + 1]``), ``head[a]`` the node arc a enters, ``sister[a]`` its reverse
arc (every arc has one; give it capacity 0 for a one-way edge); ``tr_cap[i]`` the terminal
link of i: ``tr_cap[i] > 0`` an edge source -> i of that capacity, ``< 0`` an edge i -> sink
of capacity ``-tr_cap[i]`` (a node's two terminal edges enter as their difference, which
changes the flow by a constant and not the cut).
"""

from __future__ import annotations

import numpy as np

from .._config import NJIT_OPTIONS, njit

#: ``parent`` values other than an arc: a terminal's child, an orphan, a free node.
TERMINAL = -1
ORPHAN = -2
FREE = -3
_INFINITE_DISTANCE = 1 << 62


@njit(inline="always", **NJIT_OPTIONS)
def _set_active(i, nxt, queue):
    """Append i to the FIFO of active nodes unless it is in it (``nxt[i] >= 0``; the last
    node points to itself); ``queue`` = [first, last], -1 when empty."""
    if nxt[i] < 0:
        if queue[1] >= 0:
            nxt[queue[1]] = i
        else:
            queue[0] = i
        queue[1] = i
        nxt[i] = i


@njit(inline="always", **NJIT_OPTIONS)
def _next_active(nxt, queue, parent):
    """The next active node that is still in a tree, -1 when there is none."""
    while True:
        i = queue[0]
        if i < 0:
            return -1
        if nxt[i] == i:
            queue[0] = -1
            queue[1] = -1
        else:
            queue[0] = nxt[i]
        nxt[i] = -1
        if parent[i] != FREE:
            return i


@njit(inline="always", **NJIT_OPTIONS)
def _push_orphan(i, front, parent, orphans, state):
    """Make i an orphan, at the front or the back of the ring ``orphans``
    (``state`` = [start, count])."""
    parent[i] = ORPHAN
    size = len(orphans)
    if front:
        state[0] = (state[0] - 1) % size
        orphans[state[0]] = i
    else:
        orphans[(state[0] + state[1]) % size] = i
    state[1] += 1


@njit(**NJIT_OPTIONS)
def _augment(middle, head, sister, r_cap, tr_cap, parent, orphans, state):
    """Push the bottleneck along source -> ... -> (arc ``middle``) -> ... -> sink; nodes
    whose tree arc saturates become orphans. Returns the flow pushed."""
    bottleneck = r_cap[middle]
    i = head[sister[middle]]
    while parent[i] != TERMINAL:
        a = parent[i]
        bottleneck = min(bottleneck, r_cap[sister[a]])
        i = head[a]
    bottleneck = min(bottleneck, tr_cap[i])
    i = head[middle]
    while parent[i] != TERMINAL:
        a = parent[i]
        bottleneck = min(bottleneck, r_cap[a])
        i = head[a]
    bottleneck = min(bottleneck, -tr_cap[i])

    r_cap[sister[middle]] += bottleneck
    r_cap[middle] -= bottleneck
    i = head[sister[middle]]
    while parent[i] != TERMINAL:
        a = parent[i]
        r_cap[a] += bottleneck
        r_cap[sister[a]] -= bottleneck
        if r_cap[sister[a]] == 0:
            _push_orphan(i, True, parent, orphans, state)
        i = head[a]
    tr_cap[i] -= bottleneck
    if tr_cap[i] == 0:
        _push_orphan(i, True, parent, orphans, state)
    i = head[middle]
    while parent[i] != TERMINAL:
        a = parent[i]
        r_cap[sister[a]] += bottleneck
        r_cap[a] -= bottleneck
        if r_cap[a] == 0:
            _push_orphan(i, True, parent, orphans, state)
        i = head[a]
    tr_cap[i] += bottleneck
    if tr_cap[i] == 0:
        _push_orphan(i, True, parent, orphans, state)
    return bottleneck


@njit(**NJIT_OPTIONS)
def _adopt(i, first, head, sister, r_cap, parent, sink, ts, dist, time, nxt, queue,
           orphans, state):
    """Find orphan i a new parent in its tree (the one of least distance to the terminal
    among neighbours whose path to it is intact), or free it and orphan its children."""
    in_sink = sink[i]
    best_arc = -1
    best_d = _INFINITE_DISTANCE
    for a0 in range(first[i], first[i + 1]):
        # Source tree: flow would come from j into i (the residual of j -> i).
        residual = r_cap[a0] if in_sink else r_cap[sister[a0]]
        if residual == 0:
            continue
        j = head[a0]
        if sink[j] != in_sink or parent[j] == FREE:
            continue
        d = 0
        while True:  # the origin of j: a terminal (finite d) or an orphan
            if ts[j] == time:
                d += dist[j]
                break
            a = parent[j]
            d += 1
            if a == TERMINAL:
                ts[j] = time
                dist[j] = 1
                break
            if a == ORPHAN:
                d = _INFINITE_DISTANCE
                break
            j = head[a]
        if d < _INFINITE_DISTANCE:
            if d < best_d:
                best_arc = a0
                best_d = d
            j = head[a0]
            while ts[j] != time:  # mark the distances along the path
                ts[j] = time
                dist[j] = d
                d -= 1
                j = head[parent[j]]
    if best_arc >= 0:
        parent[i] = best_arc
        ts[i] = time
        dist[i] = best_d + 1
        return
    parent[i] = FREE
    for a0 in range(first[i], first[i + 1]):
        j = head[a0]
        if sink[j] != in_sink or parent[j] == FREE:
            continue
        residual = r_cap[a0] if in_sink else r_cap[sister[a0]]
        if residual > 0:
            _set_active(j, nxt, queue)
        a = parent[j]
        if a >= 0 and head[a] == i:
            _push_orphan(j, False, parent, orphans, state)


@njit(**NJIT_OPTIONS)
def min_cut(first, head, sister, r_cap, tr_cap, sink_side):
    """A maximum flow and a minimum cut of the graph (see the module docstring).

    Parameters
    ----------
    first : ndarray of shape (n + 1,), dtype=int64
    head, sister : ndarray of shape (m,), dtype=int64
    r_cap : ndarray of shape (m,), dtype=int64
        Arc capacities (>= 0); overwritten by the residual capacities.
    tr_cap : ndarray of shape (n,), dtype=int64
        Terminal links; overwritten by their residuals.
    sink_side : ndarray of shape (n,), dtype=bool
        Output: True for the nodes on the sink's side of a minimum cut (those from which
        the sink is reachable in the residual graph; every other node is on the source's).

    Returns
    -------
    int
        The maximum flow (from the terminal links as given), = the cut's capacity.
    """
    n = len(first) - 1
    parent = np.full(n, FREE, dtype=np.int64)
    sink = np.zeros(n, dtype=np.bool_)
    ts = np.zeros(n, dtype=np.int64)
    dist = np.zeros(n, dtype=np.int64)
    nxt = np.full(n, -1, dtype=np.int64)
    queue = np.full(2, -1, dtype=np.int64)
    orphans = np.empty(max(n, 1), dtype=np.int64)
    state = np.zeros(2, dtype=np.int64)
    for i in range(n):
        if tr_cap[i] != 0:
            sink[i] = tr_cap[i] < 0
            parent[i] = TERMINAL
            dist[i] = 1
            _set_active(i, nxt, queue)
    flow = 0
    time = 0
    current = -1
    while True:
        i = current
        if i >= 0:
            nxt[i] = -1
            if parent[i] == FREE:
                i = -1
        if i < 0:
            i = _next_active(nxt, queue, parent)
            if i < 0:
                break
        middle = -1  # an arc from the source tree into the sink tree
        if not sink[i]:
            for a in range(first[i], first[i + 1]):
                if r_cap[a] == 0:
                    continue
                j = head[a]
                if parent[j] == FREE:
                    sink[j] = False
                    parent[j] = sister[a]
                    ts[j] = ts[i]
                    dist[j] = dist[i] + 1
                    _set_active(j, nxt, queue)
                elif sink[j]:
                    middle = a
                    break
                elif ts[j] <= ts[i] and dist[j] > dist[i]:
                    parent[j] = sister[a]
                    ts[j] = ts[i]
                    dist[j] = dist[i] + 1
        else:
            for a in range(first[i], first[i + 1]):
                if r_cap[sister[a]] == 0:
                    continue
                j = head[a]
                if parent[j] == FREE:
                    sink[j] = True
                    parent[j] = sister[a]
                    ts[j] = ts[i]
                    dist[j] = dist[i] + 1
                    _set_active(j, nxt, queue)
                elif not sink[j]:
                    middle = sister[a]
                    break
                elif ts[j] <= ts[i] and dist[j] > dist[i]:
                    parent[j] = sister[a]
                    ts[j] = ts[i]
                    dist[j] = dist[i] + 1
        time += 1
        if middle < 0:
            current = -1
            continue
        nxt[i] = i  # i is being processed: not queued again until the next round
        current = i
        flow += _augment(middle, head, sister, r_cap, tr_cap, parent, orphans, state)
        while state[1] > 0:
            v = orphans[state[0]]
            state[0] = (state[0] + 1) % len(orphans)
            state[1] -= 1
            _adopt(v, first, head, sister, r_cap, parent, sink, ts, dist, time, nxt, queue,
                   orphans, state)
    for i in range(n):
        sink_side[i] = parent[i] != FREE and sink[i]
    return flow
