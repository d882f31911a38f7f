"""Reading and writing UAI ``.uai`` models.

Format of the UAI inference competitions (2008-2022; described at
http://www.hlt.utdallas.edu/~vgogate/uai14-competition/modelformat.html and, with comment
lines, http://www.hlt.utdallas.edu/~vgogate/uai16-evaluation/uaiformat.html): the preamble
``MARKOV`` or ``BAYES``, the number of variables ``n``, ``n`` cardinalities, the number of
factors ``m``, ``m`` scopes ``k v_1 .. v_k`` (0-based variable indices) and ``m`` tables
``size p_1 .. p_size`` of non-negative potentials in row-major order of the scope (the last
scope variable changes fastest). A ``BAYES`` file lists one conditional probability table
per variable with scope ``parents..., child``; as a factor graph it is the same product of
potentials. Lines starting with ``c`` are comments (UAI 2016), and so is text from ``#`` to
the end of a line (pyAgrum writes ``# name`` after scopes and counts).

**Other writers' table orders.** The format's order is C order of the scope as written.
Some tools write other orders, and their files then read as a different model (with no
error: every size fits). Measured with pyAgrum 3.3.1 and pgmpy 1.1.2:

- pyAgrum (``gum.saveBN``/``gum.saveMRF``): a ``BAYES`` CPT with two or more parents
  lists its values with the child fastest, then the *first* parent, ..., the last parent
  slowest, under the scope ``parents..., child``; ``MARKOV`` factors of two or more
  variables list their values in pyAgrum's internal order (its first variable fastest),
  while the scope line need not be the reverse of that order (in our test, 2 of 3 factors
  were not). pyAgrum reads its own files back consistently; it writes 6 significant
  digits.
- pgmpy (``UAIWriter``): ``MARKOV`` factors follow the format; a ``BAYES`` CPT with parents
  lists its values in C order of ``child, parents...`` (pgmpy's ``TabularCPD`` layout),
  under the scope ``last parent, ..., first parent, child``.

Convert such models from the objects instead (:func:`factorgraph_ebm.io.from_pyagrum`,
:func:`factorgraph_ebm.io.from_pgmpy`), whose tables carry variable names on their axes.

Energies are ``E = -ln(potential)`` (natural log); a potential of 0 is a forbidden
configuration, energy ``+inf``. Variables of a graph read from a ``.uai`` file are named by
their integer index ``0 .. n-1``. Evidence files are read by
:mod:`~factorgraph_ebm.io.evidence`, the MAP, MAR and PR answers by
:mod:`~factorgraph_ebm.io.answers`.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import MAX_ENTRIES
from ..graph import FactorGraph
from ._potentials import (
    build_graph,
    check_cardinalities,
    check_distinct,
    factor_tables,
    first_bad_potential,
    too_many_entries,
)
from ._text import TokenReader, format_counted, format_numbers, open_for_writing


def read_uai(path) -> FactorGraph:
    """Read a ``.uai`` model (``MARKOV`` or ``BAYES``).

    Parameters
    ----------
    path : str or os.PathLike
        Plain or gzip-compressed text, any line ending. Whitespace between tokens is free
        (line breaks included); lines starting with ``c`` are comments, and so is text from
        ``#`` to the end of a line.

    Returns
    -------
    FactorGraph
        Variables named ``0 .. n-1`` (int) with the file's cardinalities; factor ``i`` is the
        file's factor ``i`` with energies ``-ln(potential)`` (``+inf`` for a potential of 0),
        float64 in C order of the file's scope order.

    Raises
    ------
    ModelFileError
        ``file:line: ...`` for a wrong preamble, a non-integer or out-of-range count, index
        or cardinality, a scope naming an unknown variable or one variable twice, a table
        whose size disagrees with its scope, a NaN, infinite or negative potential, a
        truncated file or data after the last table; a cardinality, a number of states in
        all or of table entries in all above ``MAX_ENTRIES`` = 2**40 (the message gives the
        memory one float64 array of them would take).
    OSError
        If the file cannot be read.

    Examples
    --------
    Two variables (2 and 3 states), a unary factor on variable 0 and a pairwise one:

    >>> from pathlib import Path
    >>> import numpy as np
    >>> from factorgraph_ebm.io import read_uai
    >>> _ = Path("tiny.uai").write_text('''MARKOV
    ... 2
    ... 2 3
    ... 2
    ... 1 0
    ... 2 0 1
    ... 2  1.0 0.5
    ... 6  1.0 0.5 0.25  0.5 1.0 0.0
    ... ''')
    >>> g = read_uai("tiny.uai")
    >>> g.variables, g.n_states.tolist(), g.factor_scope(1)
    ([0, 1], [2, 3], (0, 1))
    >>> np.round(np.exp(-g.factor_energies(1)), 4).tolist()   # energies are -ln(potential)
    [[1.0, 0.5, 0.25], [0.5, 1.0, 0.0]]
    """
    with TokenReader(path, comment="c", inline_comment="#") as reader:
        reader.read_keyword("the preamble", ("MARKOV", "BAYES"), ignore_case=True)
        n = reader.read_int("the number of variables", low=0)
        cards = reader.read_numbers(n, f"the cardinalities of the {n} variables", np.int64)
        check_cardinalities(reader, cards, lambda j: f"variable {j}")
        cards = cards.values
        m = reader.read_int("the number of factors", low=0)
        scopes = [_read_scope(reader, a, n) for a in range(m)]
        tables, total = [], 0
        for a, scope in enumerate(scopes):
            tables.append(_read_table(reader, a, cards[scope], total))
            total += len(tables[-1])
        reader.expect_end(f"the {m} tables")
    # One array of every table, then the graph's own copy: twice the tables at most.
    potentials = np.concatenate(tables) if tables else np.zeros(0)
    del tables
    return build_graph(range(n), cards, scopes, potentials)


def _read_scope(reader: TokenReader, factor: int, n: int) -> np.ndarray:
    k = reader.read_int(f"the number of variables in the scope of factor {factor}", low=0)
    scope = reader.read_numbers(k, f"the variable indices of factor {factor}", np.int64)
    indices = scope.values.tolist()
    if indices and (min(indices) < 0 or max(indices) >= n):
        j = next(j for j, v in enumerate(indices) if not 0 <= v < n)
        raise reader.error(
            f"expected the variables of factor {factor} to be indices in 0..{n - 1}, "
            f"found {indices[j]}",
            scope.line_of(j),
        )
    check_distinct(reader, scope, f"factor {factor}")
    return scope.values


def _read_table(reader: TokenReader, factor: int, shape: np.ndarray, before: int) -> np.ndarray:
    """The potentials of factor ``factor``, flat; ``before``: the entries of the earlier
    tables."""
    expected = math.prod(shape.tolist())
    size = reader.read_int(f"the table size of factor {factor}", low=0)
    if size != expected:
        dims = "x".join(map(str, shape.tolist())) or "no variables"
        raise reader.error(
            f"expected table size {expected} for factor {factor} (cardinalities {dims}), "
            f"found {size}"
        )
    if before + size > MAX_ENTRIES:
        raise reader.error(too_many_entries(factor, before + size, MAX_ENTRIES, "MAX_ENTRIES"))
    numbers = reader.read_numbers(size, f"the table of factor {factor}")
    j = first_bad_potential(numbers.values)
    if j >= 0:
        raise reader.error(
            f"expected a potential (a finite number >= 0) at entry {j} of the table of factor "
            f"{factor}, found {numbers.values[j]}",
            numbers.line_of(j),
        )
    return numbers.values


def write_uai(target, graph: FactorGraph) -> np.ndarray:
    """Write ``graph`` as a ``MARKOV`` ``.uai`` model; return each factor's energy shift.

    Variables are written by index (names are not stored; :func:`read_uai` names them
    ``0 .. n-1``); factors in graph order with their scope order. Each table is shifted by
    its lowest finite energy ``c_a`` before ``exp``: the potentials written are
    ``exp(-(E - c_a))`` (1 at the lowest entry, 0 for ``+inf``), as the shortest text that
    reads back to the same float64 (at most 17 significant digits), so that no energy
    overflows or underflows however large or small. Reading the file back gives energies
    ``E_a - c_a`` within a few ulps of ``max(|E_a - c_a|, 1)`` (NumPy's ``exp`` and ``log``
    are not correctly rounded: bit for bit on some CPUs only); the model of the file is the
    graph's up to the constant ``C = offsets.sum()``: ``E(y) = E_file(y) + C`` for every
    ``y``, and ``ln Z = ln Z_file - beta * C`` at inverse temperature ``beta`` (the UAI
    ``PR`` task is ``beta = 1``).

    Parameters
    ----------
    target : str, os.PathLike or writable text file
        A path ending in ``.gz`` is written gzip-compressed.
    graph : FactorGraph

    Returns
    -------
    offsets : ndarray of shape (n_factors,), dtype=float64
        ``c_a`` of every factor (0 for a table without finite entries).

    Raises
    ------
    FactorGraphError
        If a factor's finite energies spread over more than
        :data:`~factorgraph_ebm.io.MAX_ENERGY_SPREAD` (about 708.4; the
        potential of the highest would not be a normal float64), or if the graph has
        compact structured factors.

    Examples
    --------
    >>> import numpy as np
    >>> import factorgraph_ebm as fe
    >>> from factorgraph_ebm.io import read_uai, write_uai
    >>> g = fe.FactorGraph()
    >>> _ = g.add_variables(["a", "b"], 2)
    >>> _ = g.add_factor(["a", "b"], [[2.0, 3.5], [np.inf, 2.25]])
    >>> offsets = write_uai("model.uai", g)     # potentials exp(-(E - 2.0))
    >>> offsets.tolist()
    [2.0]
    >>> h = read_uai("model.uai")                 # variables are named 0 .. n-1
    >>> h.variables, h.factor_scope(0)
    ([0, 1], (0, 1))
    >>> (np.round(h.factor_energies(0), 12) + 0.0).tolist()   # E - 2.0; 0 potential: +inf
    [[0.0, 1.5], [inf, 0.25]]
    >>> lnz_g, lnz_h = fe.sum_product(g).log_partition, fe.sum_product(h).log_partition
    >>> bool(abs(lnz_h - offsets.sum() - lnz_g) < 1e-12)     # ln Z = ln Z_file - C
    True
    """
    cg = graph.compile()
    factors, offsets = factor_tables(graph)
    with open_for_writing(target) as out:
        out.write(f"MARKOV\n{cg.n_variables}\n{format_numbers(cg.n_states)}\n{cg.n_factors}\n")
        for scope, _ in factors:
            out.write(format_counted(scope) + "\n")
        for _, table in factors:
            out.write(f"\n{len(table)}\n{format_numbers(table)}\n")
    return offsets
