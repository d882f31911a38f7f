"""Reading and writing the answers of the UAI inference tasks: MAP, MAR and PR files.

Formats of the UAI inference competitions: ``MAP`` (or ``MPE``) then ``n x_0 .. x_{n-1}``,
the state of every variable; ``MAR`` then ``n`` and, per variable, its cardinality and
probabilities; ``PR`` then ``log10 Z`` (base-10 logarithm of the partition function).
Variables are the model's, by index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..graph import FactorGraph
from ._text import TokenReader, format_counted, format_numbers, open_for_writing


def read_map(path, graph: FactorGraph | None = None) -> np.ndarray:
    """Read a MAP answer: the line ``MAP`` (or ``MPE``), then ``n x_0 x_1 ...``.

    Parameters
    ----------
    path : str or os.PathLike
    graph : FactorGraph, optional
        Checks the number of variables and every state.

    Returns
    -------
    ndarray of shape (n,), dtype=int64
        The state of every variable, by index.

    Raises
    ------
    ModelFileError
        Wrong header, truncated or extra data, a state out of range.
    """
    with TokenReader(path) as reader:
        reader.read_keyword("the header", ("MAP", "MPE"))
        n = _read_count(reader, graph)
        states = reader.read_numbers(n, f"the states of the {n} variables", np.int64)
        too_high = False if graph is None else states.values >= graph.n_states
        bad = np.flatnonzero((states.values < 0) | too_high)
        if bad.size:
            j = int(bad[0])
            limit = "" if graph is None else f"..{graph.n_states[j] - 1}"
            raise reader.error(
                f"expected the state of variable {j} (an integer in 0{limit}), found "
                f"{states.values[j]}",
                states.line_of(j),
            )
        reader.expect_end(f"the {n} states")
    return states.values


def write_map(target, assignment) -> None:
    """Write a MAP answer: ``MAP``, then ``n x_0 x_1 ...``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    assignment : array_like of int, shape (n,)
        State of every variable, by index (evidence included).
    """
    states = np.asarray(assignment, dtype=np.int64)
    with open_for_writing(target) as out:
        out.write(f"MAP\n{format_counted(states)}\n")


def read_mar(path, graph: FactorGraph | None = None) -> list[np.ndarray]:
    """Read a MAR answer: ``MAR``, then ``n`` and per variable ``k p_0 p_1 ...``.

    Parameters
    ----------
    path : str or os.PathLike
    graph : FactorGraph, optional
        Checks the number of variables and every cardinality.

    Returns
    -------
    list of n ndarrays of shape (k_i,), dtype=float64
        Marginal probabilities of every variable, by index.

    Raises
    ------
    ModelFileError
        Wrong header, truncated or extra data, a cardinality that disagrees with ``graph``,
        a probability outside [0, 1] or NaN.
    """
    with TokenReader(path) as reader:
        reader.read_keyword("the header", ("MAR",))
        n = _read_count(reader, graph)
        marginals = []
        for i in range(n):
            expected = None if graph is None else int(graph.n_states[i])
            k = reader.read_int(
                f"the cardinality of variable {i}", low=expected or 1, high=expected
            )
            numbers = reader.read_numbers(k, f"the {k} probabilities of variable {i}")
            bad = np.flatnonzero(~((numbers.values >= 0) & (numbers.values <= 1)))
            if bad.size:
                j = int(bad[0])
                raise reader.error(
                    f"expected probabilities in [0, 1] for variable {i}, found "
                    f"{numbers.values[j]}",
                    numbers.line_of(j),
                )
            marginals.append(numbers.values)
        reader.expect_end(f"the marginals of {n} variables")
    return marginals


def write_mar(target, marginals: Sequence) -> None:
    """Write a MAR answer: ``MAR``, then ``n`` and per variable ``k p_0 p_1 ...``.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    marginals : sequence of n array_like of shape (k_i,), float64
        Probabilities of every variable, by index.
    """
    parts = [str(len(marginals))]
    for probabilities in marginals:
        parts.append(f"{len(probabilities)} {format_numbers(np.asarray(probabilities, float))}")
    with open_for_writing(target) as out:
        out.write("MAR\n" + " ".join(parts) + "\n")


def read_pr(path) -> float:
    """Read a PR answer: the line ``PR``, then ``log10 Z``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    float
        log10 Z, the base-10 logarithm of the partition function (of the model conditioned
        on its evidence); ``-inf`` when Z = 0. ln Z = log10 Z * ln(10).

    Raises
    ------
    ModelFileError
        Wrong header, a value that is not a number, NaN or ``+inf``, extra data.
    """
    with TokenReader(path) as reader:
        reader.read_keyword("the header", ("PR",))
        numbers = reader.read_numbers(1, "log10 Z")
        value = float(numbers.values[0])
        if np.isnan(value) or value == np.inf:
            raise reader.error(f"expected log10 Z (a number or -inf), found {value!r}")
        reader.expect_end("log10 Z")
    return value


def write_pr(target, log10_z: float) -> None:
    """Write a PR answer: ``PR``, then ``log10 Z`` (base 10; ``-inf`` if Z = 0).

    Parameters
    ----------
    target : str, os.PathLike or writable text file
    log10_z : float
        ``ln Z / ln(10)``.
    """
    with open_for_writing(target) as out:
        out.write(f"PR\n{float(log10_z)!r}\n")


def _read_count(reader: TokenReader, graph: FactorGraph | None) -> int:
    n = reader.read_int("the number of variables", low=0)
    if graph is not None and n != graph.n_variables:
        raise reader.error(
            f"expected {graph.n_variables} variables (those of the model), found {n}"
        )
    return n
