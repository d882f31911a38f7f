"""Comparing energies that went through ``exp``, ``log`` and text (the model file formats).

A model file stores potentials ``exp(-E)``, written with ``repr`` (shortest round trip: the
text itself is exact), and a reader takes ``E = -ln(potential)``. NumPy's ``exp`` and
``log`` are not correctly rounded, and their results differ in the last bit between CPUs
(NumPy picks an AVX-512, AVX2 or baseline code path at run time): ``-ln(exp(-E))`` is
within a few ulps of ``max(|E|, 1)`` of ``E``, but bit for bit only on some machines. So
finite energies are compared within :data:`ROUND_TRIP`, ``+inf`` entries (potential 0,
which is written and read as the exact text ``0.0``) exactly.
"""

from __future__ import annotations

import numpy as np

#: Relative and absolute tolerance of an energy after E -> exp(-E) -> text -> -ln: a few
#: ulps of max(|E|, 1) (one ulp of 1 is 2.2e-16; NumPy documents up to ~4 ulps for its
#: SIMD exp and log). A wrong entry, order or number of digits is far outside.
ROUND_TRIP = {"rtol": 1e-14, "atol": 1e-15}


def assert_same_energies(actual, expected, what: str = "") -> None:
    """Same shape, the same infinite entries exactly (``+inf`` where ``expected`` has it,
    no NaN), the finite energies within :data:`ROUND_TRIP`."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), finite,
                                  err_msg=f"{what}: finite entries differ")
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=what)
    np.testing.assert_allclose(actual[finite], expected[finite], err_msg=what, **ROUND_TRIP)


def lowest_finite(table) -> float:
    """The lowest finite entry of an energy table, 0.0 if it has none: the shift ``c_a``
    that the writers apply to each factor (computed here without the writer's code)."""
    table = np.asarray(table, dtype=np.float64)
    finite = table[np.isfinite(table)]
    return float(finite.min()) if finite.size else 0.0


def assert_written_up_to_offsets(read_back, graph, offsets) -> None:
    """``read_back``, a graph read from a file that a writer made from ``graph``, starts
    with ``graph``'s factors (same scopes by variable index), each with the table
    ``E_a - c_a``, ``c_a`` its lowest finite energy, which the writer returned in
    ``offsets``; within :data:`ROUND_TRIP` (``c_a`` and ``E_a - c_a`` computed here)."""
    ca, cb = graph.compile(), read_back.compile()
    m, edges, entries = ca.n_factors, ca.n_edges, ca.n_energy_entries
    np.testing.assert_array_equal(ca.n_states, cb.n_states)
    np.testing.assert_array_equal(ca.scope_ptr, cb.scope_ptr[: m + 1])
    np.testing.assert_array_equal(ca.scope_vars, cb.scope_vars[:edges])
    tables = np.split(ca.energies, ca.table_offset[1:-1]) if m else []
    expected = np.array([lowest_finite(table) for table in tables])
    np.testing.assert_array_equal(np.asarray(offsets), expected, err_msg="offsets")
    shifted = ca.energies - np.repeat(expected, np.diff(ca.table_offset))
    assert_same_energies(cb.energies[:entries], shifted, "energies minus offsets")
