"""Reading and writing libDAI's ``.fg`` factor-graph format.

Format (libDAI, Mooij 2010, "libDAI: A free and open source C++ library for discrete
approximate inference in graphical models", JMLR 11; ``doc/fileformats.txt`` and
``FactorGraph::ReadFromFile`` of libDAI): the number of factors, then one block per factor:
the number of variables ``k``, their labels (integers), their cardinalities, the number of
listed entries, and that many lines ``linear_index potential``, one entry per line. Entries
not listed are 0. Lines starting with ``#`` are comments. The reader holds the entries to
their lines: a block whose entry count is not met (an entry line deleted or commented out)
is an error at the first line that is not an entry, never a silent read of the next
factor's header as entries.

**Index order.** The linear index has the *first* listed variable changing fastest
(Fortran / column-major order), the opposite of NumPy C order and of the UAI format. A
table with cardinalities ``(K_1, .., K_k)`` therefore maps to the C-order energy table
``-ln(values.reshape((K_1, .., K_k), order="F"))`` in the same scope order.

Variables are named by their label (int) and ordered by label, as libDAI orders them.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validation as V
from ..graph import FactorGraph
from ._potentials import (
    build_graph,
    check_distinct,
    factor_tables,
    first_bad_potential,
    too_many_entries,
)
from ._text import TokenReader, first_repeat, format_numbers, open_for_writing

#: Default budget of :func:`read_fg`: the dense table entries of a file in all. A ``.fg``
#: file lists only non-zero entries, so nothing in the file bounds its dense tables (an
#: 18-byte file can ask for 2**27 entries: 2 GiB and 12 s to read). 2**26 float64 entries
#: are 512 MiB, which reading holds twice at most (the file's tables, then the graph's);
#: a 2000 x 2000 binary grid has 40 million.
MAX_FILE_ENTRIES = 2**26


def read_fg(path, *, max_entries: int = MAX_FILE_ENTRIES) -> FactorGraph:
    """Read a libDAI ``.fg`` factor graph.

    Parameters
    ----------
    path : str or os.PathLike
        Plain or gzip-compressed text, any line ending.
    max_entries : int, default=MAX_FILE_ENTRIES (2**26)
        The most dense table entries (listed or not) of the whole file; at most
        ``MAX_ENTRIES`` (2**40). Reading takes about 16 bytes per entry at its peak.

    Returns
    -------
    FactorGraph
        One variable per label (named by the int label, ordered by label); factor ``i`` is
        the file's factor ``i`` with its scope in file order and energies
        ``-ln(potential)`` (``+inf`` for entries that are 0 or not listed), float64, C order.

    Raises
    ------
    ModelFileError
        ``file:line: ...`` for a non-integer or negative count, label or cardinality, a
        variable listed twice in a scope or with two different cardinalities, tables of
        more than ``max_entries`` entries in all (the message gives the memory they would
        take), an entry line that does not hold exactly one entry
        ``index value`` (fewer entries than declared included), a linear index that is not
        an integer in range or is listed twice, a NaN, infinite or negative potential, a
        truncated file or data after the last factor.
    OSError
        If the file cannot be read.

    Examples
    --------
    One factor over variables 0 (2 states) and 1 (3 states); libDAI lists the table
    with the first variable changing fastest, and only its nonzero entries:

    >>> from pathlib import Path
    >>> import numpy as np
    >>> from factorgraph_ebm.io import read_fg
    >>> _ = Path("tiny.fg").write_text('''1
    ...
    ... 2
    ... 0 1
    ... 2 3
    ... 5
    ... 0 1.0
    ... 1 0.5
    ... 2 0.5
    ... 3 1.0
    ... 4 0.25
    ... ''')
    >>> g = read_fg("tiny.fg")
    >>> g.variables, g.n_states.tolist()
    ([0, 1], [2, 3])
    >>> np.round(np.exp(-g.factor_energies(0)), 4).tolist()   # C order: [x_0, x_1]
    [[1.0, 0.5, 0.25], [0.5, 1.0, 0.0]]
    """
    max_entries = V.integer(max_entries, "max_entries", low=0, high=V.MAX_ENTRIES)
    with TokenReader(path, comment="#") as reader:
        m = reader.read_int("the number of factors", low=0)
        cards: dict[int, int] = {}
        scopes, entries, offsets = [], [], [0]
        for a in range(m):
            labels, dims = _read_variables(reader, a, cards)
            size = math.prod(dims)
            if offsets[-1] + size > max_entries:
                raise reader.error(
                    too_many_entries(a, offsets[-1] + size, max_entries, "max_entries")
                    + "; raise max_entries (read_fg and read_model; fgebm --max-entries) "
                    "to read it")
            scopes.append(labels)
            entries.append(_read_entries(reader, a, dims))
            offsets.append(offsets[-1] + size)
        reader.expect_end(f"the {m} factors")
    # The listed entries go into one array of every dense table (entries not listed are 0).
    potentials = np.zeros(offsets[-1])
    for offset, where in zip(offsets, entries, strict=False):
        potentials[offset + where[0]] = where[1]
    del entries
    names = np.array(sorted(cards), dtype=np.int64)
    index = [np.searchsorted(names, labels) for labels in scopes]
    return build_graph(names.tolist(), np.array([cards[v] for v in names.tolist()]), index,
                       potentials)


def _read_variables(reader: TokenReader, factor: int, cards: dict) -> tuple[np.ndarray, list]:
    """Labels and cardinalities of a factor, checked against those seen before."""
    k = reader.read_int(f"the number of variables of factor {factor}", low=0)
    labels = reader.read_numbers(k, f"the variable labels of factor {factor}", np.int64)
    negative = np.flatnonzero(labels.values < 0)
    if negative.size:
        j = int(negative[0])
        raise reader.error(
            f"expected the labels of factor {factor} to be integers >= 0, found "
            f"{labels.values[j]}",
            labels.line_of(j),
        )
    check_distinct(reader, labels, f"factor {factor}")
    dims = reader.read_numbers(k, f"the cardinalities of factor {factor}", np.int64)
    pairs = zip(labels.values.tolist(), dims.values.tolist(), strict=True)
    for j, (label, dim) in enumerate(pairs):
        known = cards.setdefault(label, dim)
        if dim < 1 or dim != known:
            found = f"{dim}" if dim < 1 else f"{dim}, but it had {known} in an earlier factor"
            raise reader.error(
                f"expected the cardinality of variable {label} in factor {factor} (an integer "
                f">= 1, the same in every factor), found {found}",
                dims.line_of(j),
            )
    return labels.values, dims.values.tolist()


def _read_entries(reader: TokenReader, factor: int, dims: list) -> tuple[np.ndarray, np.ndarray]:
    """The listed ``index value`` pairs of a factor: the C-order positions of the entries in
    the factor's table (int64) and their potentials."""
    size = math.prod(dims)
    nnz = reader.read_int(f"the number of listed entries of factor {factor}", low=0, high=size)
    pairs = reader.read_numbers(2 * nnz, f"the 'index value' entries of factor {factor}")
    _check_entry_lines(reader, factor, nnz, pairs)
    indices, values = pairs.values[0::2], pairs.values[1::2]
    bad = np.flatnonzero(~((indices >= 0) & (indices < size) & (indices == np.floor(indices))))
    if bad.size:
        j = int(bad[0])
        raise reader.error(
            f"expected a linear index of factor {factor} (an integer in 0..{size - 1}), found "
            f"{indices[j]}",
            pairs.line_of(2 * j),
        )
    j = first_repeat(indices)
    if j >= 0:
        raise reader.error(
            f"expected each linear index of factor {factor} listed once, found "
            f"{int(indices[j])} again",
            pairs.line_of(2 * j),
        )
    j = first_bad_potential(values)
    if j >= 0:
        raise reader.error(
            f"expected a potential (a finite number >= 0) at index {int(indices[j])} of "
            f"factor {factor}, found {values[j]}",
            pairs.line_of(2 * j + 1),
        )
    positions = indices.astype(np.int64)
    if len(dims) > 1:  # libDAI's order (first variable fastest) to C order
        positions = np.ravel_multi_index(np.unravel_index(positions, dims, order="F"), dims)
    return positions, values


def _check_entry_lines(reader: TokenReader, factor: int, nnz: int, pairs) -> None:
    """Refuse entries that are not one ``index value`` pair per line.

    ``pairs`` was read as 2 * nnz numbers regardless of lines (fast); here the numbers each
    line gave are counted. The first line with other than 2 (or a last entry line with more
    tokens after it) is the error: typically a missing entry line, whose place the next
    factor's header (a lone variable count) took.
    """
    if not nnz:
        return
    lines = np.asarray(pairs.lines)
    counts = np.diff(np.append(pairs.starts, 2 * nnz))
    first_of_line = np.flatnonzero(np.diff(lines, prepend=-1) != 0)
    per_line = np.add.reduceat(counts, first_of_line)
    bad = np.flatnonzero(per_line != 2)
    if bad.size:
        j = int(bad[0])
        entry, count = int(np.sum(per_line[:j]) // 2), int(per_line[j])
        raise reader.error(
            f"expected entry {entry} of the {nnz} listed entries of factor {factor} on a line "
            f"of its own ('index value'), found a line of {count} number"
            f"{'' if count == 1 else 's'} (an entry line missing or commented out?)",
            int(lines[first_of_line[j]]),
        )
    if not reader.line_is_done():
        raise reader.error(
            f"expected the last of the {nnz} listed entries of factor {factor} to end its "
            f"line ('index value'), found {reader.next_token_on_line()!r} after it"
        )


def write_fg(target, graph: FactorGraph) -> np.ndarray:
    """Write ``graph`` as a libDAI ``.fg`` file.

    Factors are written in graph order, each with its scope order and its non-zero
    potentials in libDAI's index order (first scope variable fastest), one entry per line.
    As :func:`~factorgraph_ebm.io.write_uai` does, each table is shifted by its lowest
    finite energy ``c_a``: the potentials are ``exp(-(E - c_a))`` (shortest round-trip
    text, at most 17 significant digits), and the file's model is the graph's up to the
    constant ``C = offsets.sum()`` (``E = E_file + C``, ``ln Z = ln Z_file - beta * C``),
    which a comment line of the file also states. Variables are labelled by their name
    when every name is an int, else by their index. A variable in no factor gets a factor
    of potentials 1 (energy 0), since a ``.fg`` file knows variables only through factors.

    Parameters
    ----------
    target : str, os.PathLike or writable text file
        A path ending in ``.gz`` is written gzip-compressed.
    graph : FactorGraph

    Returns
    -------
    offsets : ndarray of shape (n_factors,), dtype=float64
        ``c_a`` of every factor of ``graph`` (0 for a table without finite entries; the
        factors added for isolated variables have none).

    Raises
    ------
    FactorGraphError
        As :func:`~factorgraph_ebm.io.write_uai`.

    Examples
    --------
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.io import read_fg, write_fg
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], [2, 3])
    >>> _ = g.add_factor(["a", "b"], [[-1.0, 1.0, 2.0], [3.0, 0.5, np.inf]])
    >>> write_fg("model.fg", g).tolist()          # the shift of each factor
    [-1.0]
    >>> h = read_fg("model.fg")
    >>> h.n_states.tolist(), h.factor_scope(0)
    ([2, 3], (0, 1))
    >>> fe.min_sum(h).assignment.tolist() == fe.min_sum(g).assignment.tolist()
    True
    """
    cg = graph.compile()
    factors, offsets = factor_tables(graph)
    names = graph.variables
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in names):
        names = list(range(len(names)))
    isolated = np.flatnonzero(np.diff(cg.var_edge_ptr) == 0).tolist()
    with open_for_writing(target) as out:
        out.write(
            "# written by factorgraph_ebm: potentials exp(-(E - c)), c the lowest finite "
            f"energy of each factor; sum of the c: {float(offsets.sum())!r}\n"
            f"{cg.n_factors + len(isolated)}\n"
        )
        for scope, table in factors:
            shape = tuple(cg.n_states[scope].tolist())
            fortran_values = table.reshape(shape).ravel(order="F")
            _write_factor(out, [names[v] for v in scope.tolist()], shape, fortran_values)
        for v in isolated:
            _write_factor(out, [names[v]], (int(cg.n_states[v]),), np.ones(cg.n_states[v]))
    return offsets


def _write_factor(out, labels: list, shape: tuple, fortran_values: np.ndarray) -> None:
    nonzero = np.flatnonzero(fortran_values)
    out.write(f"\n{len(labels)}\n{format_numbers(labels)}\n{format_numbers(shape)}\n")
    out.write(f"{len(nonzero)}\n")
    entries = zip(nonzero.tolist(), fortran_values[nonzero].tolist(), strict=True)
    out.writelines(f"{i} {p!r}\n" for i, p in entries)
