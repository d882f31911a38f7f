"""Reading and writing UAI evidence files (``.evid``).

Format of the UAI inference competitions: ``N v_1 x_1 .. v_N x_N``, the ``N`` observed
variables (0-based indices of the model's variables) and their states (2014 layout), or the
older layout that starts with a number of samples ``S`` followed by ``S`` such blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..exceptions import FactorGraphError
from ..graph import FactorGraph
from ._text import (
    ModelFileError,
    Numbers,
    TokenReader,
    bounds_text,
    first_repeat,
    format_counted,
    open_for_writing,
)


def read_evidence(path, graph: FactorGraph | None = None) -> dict[int, int]:
    """Read a ``.evid`` file holding one evidence sample.

    Parameters
    ----------
    path : str or os.PathLike
        ``N v_1 x_1 .. v_N x_N`` (UAI 2014), or the older layout ``1 N v_1 x_1 ..`` with a
        sample count of 1 (see :func:`read_evidence_samples` for how they are told apart).
    graph : FactorGraph, optional
        The model (read with :func:`read_uai`): variables and states are checked against it.

    Returns
    -------
    dict of int to int
        Observed state of each observed variable, by variable index; ``{}`` for ``0``.

    Raises
    ------
    ModelFileError
        A malformed or truncated file, a count that disagrees with the pairs that follow, a
        variable observed twice, an index or state out of range, or several samples (read
        those with :func:`read_evidence_samples`).
    """
    samples = read_evidence_samples(path, graph)
    if len(samples) != 1:
        raise ModelFileError(
            path, 1, f"expected one evidence sample, found {len(samples)} (older multi-sample "
            "layout); use read_evidence_samples"
        )
    return samples[0]


def read_evidence_samples(path, graph: FactorGraph | None = None) -> list[dict[int, int]]:
    """Read every evidence sample of a ``.evid`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The 2014 layout ``N v_1 x_1 .. v_N x_N`` (one sample) when the number of integers
        is ``1 + 2N``; otherwise the older layout: ``S``, then ``S`` blocks ``N v_1 x_1 ..``.
    graph : FactorGraph, optional
        As in :func:`read_evidence`.

    Returns
    -------
    list of dict of int to int
        One ``{variable index: state}`` per sample.

    Raises
    ------
    ModelFileError
        As :func:`read_evidence` (except for the number of samples).
    """
    with TokenReader(path) as reader:
        numbers = reader.read_numbers(None, "evidence integers", np.int64)
        ints = numbers.values
        if len(ints) == 0 or ints[0] < 0:
            found = "end of file" if len(ints) == 0 else str(ints[0])
            raise reader.error(
                f"expected the number of observed variables (an integer >= 0), found {found}",
                numbers.line_of(0) if len(ints) else None,
            )
        spans = _sample_spans(ints.tolist())
        if spans is None:
            raise reader.error(
                f"expected {ints[0]} observed variables, then {2 * ints[0]} integers "
                f"'variable state' (or the older layout: a number of samples, then each "
                f"sample's count and pairs), found {len(ints) - 1} integers after the count",
                numbers.line_of(0),
            )
        return [_evidence_block(reader, numbers, start, stop, graph) for start, stop in spans]


def _sample_spans(ints: list[int]) -> list[tuple[int, int]] | None:
    """``(start, stop)`` of each sample's block ``N v_1 x_1 ..`` in ``ints``, or None if
    neither layout fits (``ints[0] >= 0``)."""
    if len(ints) == 1 + 2 * ints[0]:
        return [(0, len(ints))]
    spans, at = [], 1
    for _ in range(ints[0]):
        if at >= len(ints) or ints[at] < 0 or at + 1 + 2 * ints[at] > len(ints):
            return None
        spans.append((at, at + 1 + 2 * ints[at]))
        at = spans[-1][1]
    return spans if at == len(ints) else None


def _evidence_block(reader, numbers: Numbers, start: int, stop: int, graph) -> dict[int, int]:
    """Check one sample ``N v_1 x_1 ..`` at ``numbers.values[start:stop]``."""
    pairs = numbers.values[start + 1 : stop]
    variables, states = pairs[0::2], pairs[1::2]
    n = None if graph is None else graph.n_variables
    for j, (var, state) in enumerate(zip(variables.tolist(), states.tolist(), strict=True)):
        if var < 0 or (n is not None and var >= n):
            valid = "a variable index" + bounds_text(0, None if n is None else n - 1)
            raise reader.error(
                f"expected {valid} in evidence pair {j}, found {var}",
                numbers.line_of(start + 1 + 2 * j),
            )
        high = None if graph is None else int(graph.n_states[var]) - 1
        if state < 0 or (high is not None and state > high):
            raise reader.error(
                f"expected a state{bounds_text(0, high)} for observed variable {var}, found "
                f"{state}",
                numbers.line_of(start + 2 + 2 * j),
            )
    j = first_repeat(variables)
    if j >= 0:
        raise reader.error(
            f"expected each variable observed once, found variable {variables[j]} again",
            numbers.line_of(start + 1 + 2 * j),
        )
    return dict(zip(variables.tolist(), states.tolist(), strict=True))


def write_evidence(target, evidence: Mapping, graph: FactorGraph | None = None) -> None:
    """Write one evidence sample in the UAI 2014 layout ``N v_1 x_1 v_2 x_2 ...``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    evidence : mapping of variable to int state
        Keys are variable indices, or names of ``graph`` when it is given.
    graph : FactorGraph, optional
        Maps names to indices (and checks them).

    Raises
    ------
    FactorGraphError
        An unknown variable name (with ``graph``), or a key that is not an index >= 0
        (without).
    """
    items = [(_evidence_index(name, graph), int(state)) for name, state in evidence.items()]
    flat = [value for pair in items for value in pair]
    with open_for_writing(target) as out:
        out.write(format_counted(flat, count=len(items)) + "\n")


def _evidence_index(name, graph: FactorGraph | None) -> int:
    if graph is not None:
        return graph.index_of(name)
    if isinstance(name, bool) or not isinstance(name, (int, np.integer)) or name < 0:
        raise FactorGraphError(
            f"evidence variable {name!r}: without a graph, keys must be variable indices >= 0"
        )
    return int(name)
