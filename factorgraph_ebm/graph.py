"""Building factor graphs: variables, factors with energy tables, validation, energies.

An energy-based model over discrete variables y = (y_1, ..., y_n) is written as a sum of
factors, E(y) = sum_a E_a(y_{scope(a)}). Lower energy is better; ``+inf`` marks a forbidden
configuration (a hard constraint). Energy tables are float64 arrays in NumPy C order, in the
factor's declared variable order: ``table[x_1, ..., x_k]`` is the energy of the factor when
its first scope variable is in state ``x_1``, and so on (the last variable changes fastest
in the flattened table, as in the UAI file format; libDAI's ``.fg`` format is the opposite).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import _validation as V
from . import structured as S
from ._names import NameTable, integer_run
from .exceptions import FactorGraphError

if TYPE_CHECKING:  # networkx is imported where it is used (saves ~0.2 s per import)
    import networkx as nx


@dataclass(frozen=True)
class FactorNode:
    """The node of factor ``index`` in :meth:`FactorGraph.to_networkx` (variables are keyed
    by their own names, so factor nodes get a type of their own that cannot collide)."""

    index: int


@dataclass
class _FactorBlock:
    """Factors added in one call: ``scopes`` int64 (n, arity) and ``tables`` float64
    (n, K_1, ..., K_arity) (a read-only broadcast view when one table is shared) of shape
    ``(n, *shape)``, both re-pointed to read-only views of the compiled arrays by
    :func:`~factorgraph_ebm.compiled.compile_graph` (the scopes then of its index dtype)
    when the block has :data:`~factorgraph_ebm.compiled.REPOINT_ENTRIES` entries or more;
    ``first`` is the index of the block's first factor; ``kind`` and ``params`` (n, 2)
    (weight, truncation) describe structured pairwise factors (see :mod:`.messages`);
    ``compact`` blocks (structured factors added with ``dense=False``) keep no tables at all
    (``tables`` is None) and no entries in theta."""

    first: int
    scopes: np.ndarray
    tables: np.ndarray | None
    shape: tuple
    names: list | None
    kind: int = 0
    params: np.ndarray | None = None

    @property
    def compact(self) -> bool:
        return self.tables is None


class FactorGraph:
    """A factor graph of discrete variables and energy factors.

    Variables are added by name (any hashable) with a number of states; factors by scope (a
    sequence of variable names) and an energy table of shape ``(K_1, ..., K_k)``, float64, in
    NumPy C order in the declared scope order. ``+inf`` entries are legal; NaN and ``-inf``
    are refused. Factors with an empty scope are constant energies. Several factors may share
    one scope: their energies add.

    Every insertion is validated at once; errors are :class:`FactorGraphError` naming the
    factor and the variable. Inference runs on the frozen flat-array form returned by
    :meth:`compile` (cached until the graph changes).

    Examples
    --------
    >>> import factorgraph_ebm as fe
    >>> g = fe.FactorGraph()
    >>> g.add_variables(["a", "b"], 2).tolist()
    [0, 1]
    >>> g.add_factor(("a", "b"), [[0.0, 1.0], [1.0, 0.0]])
    0
    >>> g.energy({"a": 1, "b": 0})
    1.0
    >>> g.n_variables, g.n_factors, g.is_forest()
    (2, 1, True)
    """

    def __init__(self) -> None:
        self._names = NameTable()  # a range per run of integer names (see _names)
        self._n_states_chunks: list[np.ndarray] = []
        self._n_states_cache: np.ndarray | None = None
        self._blocks: list[_FactorBlock] = []
        self._block_starts = np.zeros(0, dtype=np.int64)
        self._n_factors = 0
        # Running totals, checked against MAX_ENTRIES at insertion (see _validation).
        self._n_state_entries = 0
        self._n_table_entries = 0
        self._n_message_entries = 0
        self._n_edges = 0
        self._compiled = None

    # ------------------------------------------------------------------ variables
    @property
    def n_variables(self) -> int:
        """Number of variables."""
        return len(self._names)

    @property
    def n_factors(self) -> int:
        """Number of factors (including empty-scope constants)."""
        return self._n_factors

    @property
    def variables(self) -> list:
        """Variable names, in index order (a copy)."""
        return list(self._names)

    @property
    def n_states(self) -> np.ndarray:
        """ndarray of shape (n_variables,), dtype=int64: number of states of each variable."""
        if self._n_states_cache is None or len(self._n_states_cache) != self.n_variables:
            chunks = self._n_states_chunks
            self._n_states_cache = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
            self._n_states_chunks = [self._n_states_cache]
            self._n_states_cache.flags.writeable = False
        return self._n_states_cache

    def add_variable(self, name: Hashable, n_states: int) -> int:
        """Add one variable with states ``0 .. n_states - 1``; return its index.

        Raises
        ------
        FactorGraphError
            If the name is already used or not hashable, or ``n_states`` is not an integer
            in 1 .. ``MAX_ENTRIES`` (2**40; see :meth:`add_variables`).

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variable("weather", 3), g.add_variable(("pixel", 0, 0), 2)
        (0, 1)
        >>> g.n_states.tolist()
        [3, 2]
        """
        return int(self.add_variables([name], n_states)[0])

    def add_variables(self, names: Iterable[Hashable], n_states) -> np.ndarray:
        """Add many variables at once.

        Parameters
        ----------
        names : iterable of hashable
            New, distinct variable names. Consecutive integers given as a ``range`` (step
            1) or a 1-d integer array are stored as one range, in O(1) memory (a list or
            dict of names takes ~120 bytes per variable); they are then Python ints.
        n_states : int or array_like of int, shape (n_new,)
            Number of states of every new variable (one value for all, or one each).

        Returns
        -------
        ndarray of shape (n_new,), dtype=int64
            The indices given to the new variables.

        Raises
        ------
        FactorGraphError
            If a name repeats, already exists or is not hashable, or a number of states is
            not an integer >= 1; if a number of states, or the graph's number of states in
            all, would exceed ``MAX_ENTRIES`` = 2**40 (the message says how much memory one
            float64 vector over them would take).

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(["x", "y", "z"], [2, 3, 2]).tolist()
        [0, 1, 2]
        >>> g.add_variables(range(2), 4).tolist()  # names 0 and 1, four states each
        [3, 4]
        """
        run = integer_run(names)
        if run is not None:
            names = run
        else:
            names = [V.hashable(name, "a variable name")
                     for name in V.iterable(names, "names")]
        start = self.n_variables
        states = np.asarray(n_states)
        if states.ndim == 0:
            states = np.full(len(names), states)
        if states.shape != (len(names),):
            raise FactorGraphError(
                f"n_states must be one integer or one per variable: expected shape "
                f"({len(names)},), got {states.shape}"
            )
        if states.dtype.kind == "O" and all(
            isinstance(k, int) and not isinstance(k, bool) for k in states.flat
        ):  # Python integers beyond int64
            big = int(np.argmax(states))
            V.check_count(int(states[big]), f"variable {names[big]!r}: its number of states")
        if states.dtype.kind not in "iu" and not (
            states.dtype.kind == "f" and np.all(np.mod(states, 1) == 0)
        ):
            raise FactorGraphError(f"n_states must be integers, got dtype {states.dtype}")
        bad = np.flatnonzero(states < 1)
        if bad.size:
            raise FactorGraphError(
                f"variable {names[bad[0]]!r}: number of states must be >= 1, got {states[bad[0]]}"
            )
        if states.size and states.max() > V.MAX_ENTRIES:
            big = int(np.argmax(states))
            V.check_count(int(states[big]), f"variable {names[big]!r}: its number of states")
        # Each is at most 2**40 now; a float64 sum is exact enough to compare with the limit.
        if self._n_state_entries + float(states.sum(dtype=np.float64)) > V.MAX_ENTRIES:
            V.check_count(self._n_state_entries + int(states.sum(dtype=object)),
                          f"variables {names[0]!r}..: the graph's number of states in all")
        states = states.astype(np.int64)
        self._names.extend(names)  # raises on a repeated name, before any change
        self._n_states_chunks.append(states)
        self._n_state_entries += int(states.sum())
        self._compiled = None
        return np.arange(start, start + len(names), dtype=np.int64)

    def _same_variables(self) -> FactorGraph:
        """A new graph with this graph's variables (names and states) and no factors."""
        other = FactorGraph()
        other._names = self._names.copy()
        other._n_states_chunks = [self.n_states]
        other._n_state_entries = self._n_state_entries
        return other

    def index_of(self, names) -> np.ndarray | int:
        """Index of one variable name, or int64 array of indices for a sequence of names.

        Raises
        ------
        FactorGraphError
            If a name is not a variable of the graph.
        """
        if isinstance(names, list):
            return np.array([self._lookup(n) for n in names], dtype=np.int64)
        return self._lookup(names)

    def _lookup(self, name, factor_label: str = "") -> int:
        index = self._names.find(name)
        if index is None:
            where = f"{factor_label}: " if factor_label else ""
            raise FactorGraphError(
                f"{where}unknown variable {name!r}; add it with add_variable() first"
            )
        return index

    # ------------------------------------------------------------------ factors
    def add_factor(self, scope: Sequence[Hashable], energies, name=None) -> int:
        """Add one factor; return its index.

        Parameters
        ----------
        scope : sequence of variable names
            The variables the factor depends on, in table-axis order (may be empty).
        energies : array_like of shape (K_1, ..., K_k), float64
            Energy table in NumPy C order in the declared scope order; ``+inf`` allowed.
        name : hashable, optional
            A label used in error messages.

        Raises
        ------
        FactorGraphError
            Unknown variable, a variable repeated in the scope, a scope given as a string,
            wrong table shape, energies that are not real numbers (strings, complex), NaN or
            ``-inf`` energies; more than ``MAX_ENTRIES`` (2**40) table or message entries in
            all.

        Examples
        --------
        >>> import numpy as np
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(["a", "b"], [2, 3]).tolist()
        [0, 1]
        >>> g.add_factor(["a"], [0.0, 0.5])               # unary: table[x_a]
        0
        >>> g.add_factor(["a", "b"], [[0, 1, np.inf],    # table[x_a, x_b]; +inf forbids
        ...                           [1, 0, 2]])
        1
        >>> g.add_factor([], 3.0)                          # a constant energy
        2
        >>> g.energy({"a": 1, "b": 2})                     # 0.5 + 2 + 3
        5.5
        >>> g.energy({"a": 0, "b": 2})
        inf
        """
        scope = V.scope(scope, f"factor {self._n_factors}")
        label = self._factor_label(self._n_factors, name, scope)
        index = np.array([[self._lookup(v, label) for v in scope]], dtype=np.int64)
        table = self._as_energy_array(energies, label)
        return int(self._add_block(index, table[None], None if name is None else [name])[0])

    def add_factors(self, scopes, energies, *, by_index: bool = False) -> np.ndarray:
        """Add many factors of the same arity and table shape at once.

        Parameters
        ----------
        scopes : sequence of scopes, or array_like of int, shape (n_factors, arity)
            Variable names per factor, or, with ``by_index=True``, variable indices.
        energies : array_like, shape (n_factors, K_1, ..., K_k) or (K_1, ..., K_k)
            One energy table per factor, or one table shared by all (copied per factor at
            compile time). C order in declared scope order; ``+inf`` allowed.
        by_index : bool, default=False
            Interpret ``scopes`` as variable indices (fast path for large graphs).

        Returns
        -------
        ndarray of shape (n_factors,), dtype=int64
            The indices of the new factors.

        Raises
        ------
        FactorGraphError
            As :meth:`add_factor`, naming the first offending factor.

        Examples
        --------
        A chain of 5 binary variables with one shared pairwise table, built by index:

        >>> import numpy as np
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(range(5), 2).tolist()
        [0, 1, 2, 3, 4]
        >>> pairs = np.array([[i, i + 1] for i in range(4)])
        >>> g.add_factors(pairs, [[0.0, 1.0], [1.0, 0.0]], by_index=True).tolist()
        [0, 1, 2, 3]
        >>> g.add_factors([[0], [4]], [[0.0, 2.0], [3.0, 0.0]]).tolist()  # one table each
        [4, 5]
        >>> g.energy([0, 0, 0, 1, 1])
        1.0
        """
        index = self._scope_index(scopes, by_index)
        n_new, arity = index.shape
        table = self._as_energy_array(energies, f"factors {self._n_factors}..")
        shape = tuple(self.n_states[index[0]]) if n_new else table.shape[-arity:]
        if table.shape == shape or (arity == 0 and table.ndim == 0):
            table = np.broadcast_to(table, (n_new, *table.shape))
        return self._add_block(index, table, None)

    def add_potts_factors(
        self, scopes, weight, *, by_index: bool = False, dense: bool = True
    ) -> np.ndarray:
        """Add pairwise Potts factors ``E(x_i, x_j) = weight * [x_i != x_j]``.

        Belief propagation computes their messages in O(K) instead of O(K^2) (min-sum and
        sum-product), with the same results as for the dense table. The dense table is still
        part of the energy vector theta (``compile().energies``), so learning, factor beliefs
        and the Bethe free energy see an ordinary factor; when a replacement ``energies``
        vector changes such a table, that factor falls back to the dense path.

        Parameters
        ----------
        scopes : sequence of pairs of variable names, or (with ``by_index=True``) int array
            of shape (n_factors, 2). Both variables of a factor have the same number of
            states K, and all factors of one call the same K.
        weight : float or array_like of shape (n_factors,)
            Finite or ``+inf`` (equality constraint); negative weights favour disagreement.
        by_index : bool, default=False
            Interpret ``scopes`` as variable indices.
        dense : bool, default=True
            Keep each factor's dense K x K table in theta. With False the factors are
            *compact*: only their weight (and truncation) is stored, they have no entries in
            theta (``compile().table_offset`` gives them an empty table), and the memory is
            O(1) per factor instead of O(K^2). Belief propagation, decoding, energies, the
            Bethe free energy and :meth:`factor_energies` work as for dense factors;
            ``result.factor_beliefs`` has no entries for them
            (``result.factor_belief(f)`` raises); the learning API (losses, models) and the
            file writers need every table in theta and raise :class:`FactorGraphError`
            naming the first compact factor.

        Returns
        -------
        ndarray of shape (n_factors,), dtype=int64
            The indices of the new factors.

        Raises
        ------
        FactorGraphError
            As :meth:`add_factors`; a scope that is not a pair, states that differ, or a
            NaN or ``-inf`` weight.

        Examples
        --------
        A 2 x 2 grid of 3-state variables; a unary term pulls one corner to state 2:

        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables([(0, 0), (0, 1), (1, 0), (1, 1)], 3).tolist()
        [0, 1, 2, 3]
        >>> edges = [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, 0), (1, 0)], [(0, 1), (1, 1)]]
        >>> g.add_potts_factors(edges, 0.5).tolist()
        [0, 1, 2, 3]
        >>> g.add_factor([(0, 0)], [1.0, 1.0, 0.0])
        4
        >>> g.factor_energies(0).tolist()
        [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]
        >>> best = fe.min_sum(g)
        >>> best.energy, best.assignment.tolist()    # all four agree on state 2
        (0.0, [2, 2, 2, 2])
        """
        return self._add_structured(scopes, by_index, S.KIND_POTTS, weight, np.inf, dense)

    def add_truncated_linear_factors(
        self, scopes, weight, truncation=np.inf, *, by_index: bool = False, dense: bool = True
    ) -> np.ndarray:
        """Add pairwise factors ``E(x_i, x_j) = min(weight * |x_i - x_j|, truncation)``
        (ordinal states, e.g. disparities or intensities).

        Min-sum messages cost O(K) (a distance transform, Felzenszwalb & Huttenlocher 2006)
        instead of O(K^2), equal to the dense table's up to rounding; sum-product uses the
        dense table. Otherwise as :meth:`add_potts_factors`.

        Parameters
        ----------
        scopes : as in :meth:`add_potts_factors`
        weight : float or array_like of shape (n_factors,), finite, >= 0
        truncation : float or array_like of shape (n_factors,), >= 0, default=inf
        by_index : bool, default=False
        dense : bool, default=True
            False: compact factors without tables in theta (see :meth:`add_potts_factors`).

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(["left", "right"], 4).tolist()
        [0, 1]
        >>> g.add_truncated_linear_factors([("left", "right")], 1.0, truncation=2.0).tolist()
        [0]
        >>> g.factor_energies(0)[0].tolist()      # min(|0 - x|, 2) for x = 0..3
        [0.0, 1.0, 2.0, 2.0]
        """
        return self._add_structured(
            scopes, by_index, S.KIND_TRUNCATED_LINEAR, weight, truncation, dense
        )

    def add_truncated_quadratic_factors(
        self, scopes, weight, truncation=np.inf, *, by_index: bool = False, dense: bool = True
    ) -> np.ndarray:
        """Add pairwise factors ``E(x_i, x_j) = min(weight * (x_i - x_j)**2, truncation)``.

        Min-sum messages cost O(K) (the lower envelope of parabolas, Felzenszwalb &
        Huttenlocher 2006) instead of O(K^2), equal to the dense table's up to rounding;
        sum-product uses the dense table. Otherwise as :meth:`add_truncated_linear_factors`.

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(["left", "right"], 4).tolist()
        [0, 1]
        >>> g.add_truncated_quadratic_factors([("left", "right")], 1.0, 5.0).tolist()
        [0]
        >>> g.factor_energies(0)[0].tolist()      # min((0 - x)**2, 5) for x = 0..3
        [0.0, 1.0, 4.0, 5.0]
        """
        return self._add_structured(
            scopes, by_index, S.KIND_TRUNCATED_QUADRATIC, weight, truncation, dense
        )

    def _add_structured(self, scopes, by_index, kind, weight, truncation, dense) -> np.ndarray:
        if not isinstance(dense, (bool, np.bool_)):
            raise FactorGraphError(f"dense must be True or False, got {dense!r}")

        index = self._scope_index(scopes, by_index)
        n_new, arity = index.shape
        label = f"factors {self._n_factors}.."
        if arity != 2 and n_new:
            raise FactorGraphError(
                f"{label}: structured factors are pairwise, got scopes of {arity} variables"
            )
        index = index.reshape(n_new, 2)
        states = self.n_states[index]
        if n_new and (states != states[0, 0]).any():
            row = int(np.argwhere(states != states[0, 0])[0, 0])
            raise FactorGraphError(
                f"{self._factor_label(self._n_factors + row, None, index[row])}: both "
                f"variables of every factor of one call need the same number of states "
                f"(got {tuple(int(k) for k in states[row])}, first factor {states[0, 0]})"
            )
        k = int(states[0, 0]) if n_new else 1
        params = np.empty((n_new, 2))
        for col, (what, value) in enumerate((("weight", weight), ("truncation", truncation))):
            values = V.real_array(value, f"{label}: {what}")
            if values.ndim not in (0, 1) or (values.ndim == 1 and values.shape != (n_new,)):
                raise FactorGraphError(
                    f"{label}: {what} must be one number or one per factor ({n_new},), "
                    f"got shape {values.shape}"
                )
            low = -np.inf if (kind == S.KIND_POTTS and col == 0) else 0.0
            finite = col == 0 and kind != S.KIND_POTTS
            bad = np.isnan(values) | (values < low) | (values == -np.inf)
            if finite:
                bad |= ~np.isfinite(values)
            if bad.any():
                got = values.flat[int(np.flatnonzero(bad.ravel())[0])]
                need = "finite and >= 0" if finite else ("not NaN or -inf" if col == 0
                                                         else ">= 0 (inf allowed)")
                raise FactorGraphError(f"{label}: {what} must be {need}, got {got}")
            params[:, col] = values
            if col == 0:
                shared = values.ndim == 0
            else:
                shared = shared and values.ndim == 0
        if kind == S.KIND_POTTS:
            params[:, 1] = np.inf
        # Compact factors have no table at all: O(1) per factor, whatever K.
        tables = S.dense_tables(kind, params, k, shared) if dense else None
        return self._add_block(index, tables, None, kind=kind, params=params, shape=(k, k))

    def _scope_index(self, scopes, by_index: bool) -> np.ndarray:
        """Scopes as an int64 (n_factors, arity) array of variable indices, validated."""
        if by_index:
            try:
                index = np.asarray(scopes)
            except (TypeError, ValueError) as exc:  # ragged: scopes of several arities
                raise FactorGraphError(
                    f"with by_index=True, scopes must be an integer array of shape "
                    f"(n_factors, arity): {exc}"
                ) from None
            if index.ndim != 2 or (index.size and index.dtype.kind not in "iu"):
                raise FactorGraphError(
                    f"with by_index=True, scopes must be an integer array of shape "
                    f"(n_factors, arity), got shape {index.shape} dtype {index.dtype}"
                )
            index = index.astype(np.int64)
            out_of_range = (index < 0) | (index >= self.n_variables)
            if out_of_range.any():
                row, col = np.argwhere(out_of_range)[0]
                raise FactorGraphError(
                    f"factor {self._n_factors + row}: unknown variable index "
                    f"{index[row, col]} (the graph has {self.n_variables} variables)"
                )
        else:
            scopes = [
                V.scope(s, f"factor {self._n_factors + row}")
                for row, s in enumerate(V.iterable(scopes, "scopes"))
            ]
            arities = {len(s) for s in scopes}
            if len(arities) > 1:
                raise FactorGraphError(
                    f"add_factors needs scopes of one arity, got arities {sorted(arities)}; "
                    "call it once per arity"
                )
            arity = arities.pop() if arities else 0
            index = np.empty((len(scopes), arity), dtype=np.int64)
            for row, scope in enumerate(scopes):
                label = self._factor_label(self._n_factors + row, None, scope)
                index[row] = [self._lookup(v, label) for v in scope]
        return index

    def _add_block(self, index: np.ndarray, tables: np.ndarray | None, names, *,
                   kind: int = 0, params: np.ndarray | None = None,
                   shape: tuple | None = None) -> np.ndarray:
        """Validate and append one block of factors (see :class:`_FactorBlock`); compact
        structured factors come with ``tables=None`` and their ``shape``, validated by the
        caller."""
        n_new, arity = index.shape
        first = self._n_factors
        self._check_scopes(index, first, names)
        if tables is not None:
            self._check_tables(index, tables, first, names)
            shape = tables.shape[1:]
        n_table = 0 if tables is None else n_new * math.prod(shape)
        n_message = n_new * sum(shape)
        what = f"factors {first}..{first + n_new - 1}" if n_new > 1 else f"factor {first}"
        V.check_count(self._n_table_entries + n_table,
                      f"{what}: the graph's energy-table entries in all")
        V.check_count(self._n_message_entries + n_message,
                      f"{what}: the graph's message entries in all (states summed over the "
                      "scopes)")
        self._blocks.append(_FactorBlock(first, index, tables, tuple(shape), names, kind,
                                         params))
        self._n_factors += n_new
        self._n_table_entries += n_table
        self._n_message_entries += n_message
        self._n_edges += n_new * arity
        self._compiled = None
        return np.arange(first, first + n_new, dtype=np.int64)

    def _check_tables(self, index: np.ndarray, tables: np.ndarray, first: int, names) -> None:
        """Refuse tables of the wrong shape, or with NaN or -inf entries."""
        n_new, arity = index.shape
        expected = self.n_states[index] if n_new else np.zeros((0, arity), dtype=np.int64)
        if tables.shape[0] != n_new or tables.ndim != arity + 1:
            if n_new == 1:
                label = self._factor_label(first, names and names[0], index[0])
                raise FactorGraphError(
                    f"{label}: energy table has shape {tables.shape[1:]}, expected "
                    f"{tuple(int(k) for k in expected[0])} (one axis per scope variable)"
                )
            raise FactorGraphError(
                f"factors {first}..{first + n_new - 1}: expected {n_new} energy tables of "
                f"{arity} axes (or one shared table), got an array of shape {tables.shape}"
            )
        mismatch = expected != np.asarray(tables.shape[1:], dtype=np.int64)
        if mismatch.any():
            row, col = np.argwhere(mismatch)[0]
            label = self._factor_label(first + row, names and names[row], index[row])
            raise FactorGraphError(
                f"{label}: energy table has shape {tables.shape[1:]}, expected "
                f"{tuple(int(k) for k in expected[row])} (axis {col} is variable "
                f"{self._names[index[row, col]]!r} with {expected[row, col]} states)"
            )
        # A table shared by the factors (a broadcast view) is checked once.
        check = tables[:1] if tables.ndim and tables.strides[0] == 0 else tables
        bad = np.isnan(check) | (check == -np.inf)
        if bad.any():
            where = np.argwhere(bad)[0]
            row, entry = where[0], tuple(int(i) for i in where[1:])
            label = self._factor_label(first + row, names and names[row], index[row])
            raise FactorGraphError(
                f"{label}: energy at {entry} is {tables[(row, *entry)]}; energies must be "
                "finite or +inf (use +inf for a forbidden configuration)"
            )

    def _check_scopes(self, index: np.ndarray, first: int, names) -> None:
        if index.shape[1] < 2 or index.shape[0] == 0:
            return
        ordered = np.sort(index, axis=1)
        repeated = ordered[:, 1:] == ordered[:, :-1]
        if repeated.any():
            row, col = np.argwhere(repeated)[0]
            label = self._factor_label(first + row, names and names[row], index[row])
            raise FactorGraphError(
                f"{label}: variable {self._names[ordered[row, col]]!r} appears twice in the "
                "scope; a factor's scope must list distinct variables"
            )

    @staticmethod
    def _as_energy_array(energies, label: str) -> np.ndarray:
        # A copy: later edits by the caller must not bypass validation.
        return V.real_array(energies, f"{label}: energies")

    def _factor_label(self, index: int, name, scope) -> str:
        """'factor 3 ('f', scope ('a', 'b'))'; ``scope`` holds names, or indices as an array."""
        if isinstance(scope, np.ndarray):
            scope = tuple(self._names[v] for v in scope)
        if name is not None:
            return f"factor {index} ({name!r}, scope {tuple(scope)})"
        return f"factor {index} (scope {tuple(scope)})"

    # ------------------------------------------------------------------ views
    def factor_scope(self, factor: int) -> tuple:
        """Scope of factor ``factor`` as a tuple of variable names."""
        block = self._block_of(factor)
        return tuple(self._names[v] for v in block.scopes[factor - block.first])

    def factor_energies(self, factor: int) -> np.ndarray:
        """Energy table of factor ``factor`` (read-only view), C order in scope order.

        For a compact structured factor (``dense=False``) the table is computed from its
        weight and truncation."""
        block = self._block_of(factor)
        if block.compact:
            row = factor - block.first
            k = int(self.n_states[block.scopes[row, 0]])
            table = S.dense_tables(block.kind, block.params[row : row + 1], k, True)[0]
            table.flags.writeable = False
            return table
        table = block.tables[factor - block.first, ...].view()  # 0-d array for a constant
        table.flags.writeable = False
        return table

    def _block_of(self, factor: int) -> _FactorBlock:
        if not 0 <= factor < self._n_factors:
            raise FactorGraphError(
                f"unknown factor {factor}; the graph has {self._n_factors} factors"
            )
        if len(self._block_starts) != len(self._blocks):
            self._block_starts = np.array([b.first for b in self._blocks], dtype=np.int64)
        return self._blocks[int(np.searchsorted(self._block_starts, factor, side="right")) - 1]

    def compile(self):
        """Freeze the graph into flat arrays for the inference kernels.

        Returns
        -------
        CompiledGraph
            Cached: compiling again without changes returns the same object.
        """
        if self._compiled is None:
            from .compiled import compile_graph

            self._compiled = compile_graph(self.n_states, self._blocks)
        return self._compiled

    def inference_bytes(self) -> int:
        """A rough estimate of the bytes that compiling the graph and running belief
        propagation on it take, known before anything is allocated.

        It counts the compiled arrays (int64 per variable, factor and edge, and theta), two
        message buffers, two float64 vectors over all states and the factor beliefs (soft
        evidence and the flooding schedule add up to 2.5 vectors over all states); the
        junction tree's tables are bounded apart by ``memory_limit`` (see
        :func:`~factorgraph_ebm.belief_propagation`). Inference refuses a graph whose
        estimate exceeds the machine's physical memory.

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(range(1000), 2).tolist()[-1]
        999
        >>> g.add_factors([[i, i + 1] for i in range(999)], [[0.0, 1.0], [1.0, 0.0]],
        ...               by_index=True).size
        999
        >>> g.inference_bytes() < 2**20       # about 0.3 MiB
        True
        """
        return V.inference_bytes(self.n_variables, self._n_factors, self._n_edges,
                                 self._n_state_entries, self._n_table_entries,
                                 self._n_message_entries)

    # ------------------------------------------------------------------ energies
    def assignment_array(self, assignment) -> np.ndarray:
        """Validate an assignment and return it as int64 array.

        Parameters
        ----------
        assignment : mapping name -> state, or array_like of int, shape (n_variables,) or
            (n_samples, n_variables) in variable index order.

        Returns
        -------
        ndarray of dtype int64, shape (n_variables,) or (n_samples, n_variables)

        Raises
        ------
        FactorGraphError
            Missing or unknown variables, wrong shape, or a state out of range.
        """
        if isinstance(assignment, Mapping):
            missing = [n for n in self._names if n not in assignment]
            if missing:
                raise FactorGraphError(
                    f"assignment has no state for variable {missing[0]!r} ({len(missing)} missing)"
                )
            unknown = [n for n in assignment if n not in self._names]
            if unknown:
                raise FactorGraphError(f"assignment names unknown variable {unknown[0]!r}")
            assignment = [assignment[n] for n in self._names]
        try:
            states = np.asarray(assignment)
        except (TypeError, ValueError) as exc:  # ragged
            raise FactorGraphError(f"assignment must be an array of states: {exc}") from None
        if states.shape[-1:] != (self.n_variables,) or states.ndim not in (1, 2):
            raise FactorGraphError(
                f"assignment must have shape ({self.n_variables},) or (n_samples, "
                f"{self.n_variables}), got {states.shape}"
            )
        if states.size and states.dtype.kind not in "iu":
            raise FactorGraphError(f"states must be integers, got dtype {states.dtype}")
        states = states.astype(np.int64)
        bad = (states < 0) | (states >= self.n_states)
        if bad.any():
            where = tuple(np.argwhere(bad)[0])
            var = where[-1]
            raise FactorGraphError(
                f"variable {self._names[var]!r}: state {states[where]} is out of range "
                f"0..{self.n_states[var] - 1}"
            )
        return states

    def energy(self, assignment):
        """Energy E(y) = sum_a E_a(y_a) of one assignment or a batch.

        Parameters
        ----------
        assignment : mapping name -> state, or array_like of int, shape (n_variables,) or
            (n_samples, n_variables)

        Returns
        -------
        float, or ndarray of shape (n_samples,), dtype=float64
            Energies (``+inf`` for a forbidden configuration).

        Raises
        ------
        FactorGraphError
            As :meth:`assignment_array`.

        Examples
        --------
        >>> import factorgraph_ebm as fe
        >>> g = fe.FactorGraph()
        >>> g.add_variables(["a", "b"], 2).tolist()
        [0, 1]
        >>> g.add_factor(["a", "b"], [[0.0, 1.0], [2.0, 3.0]])
        0
        >>> g.energy({"a": 1, "b": 0})
        2.0
        >>> g.energy([[0, 0], [0, 1], [1, 1]]).tolist()   # a batch, in variable index order
        [0.0, 1.0, 3.0]
        """
        from .energy import energies_of

        states = self.assignment_array(assignment)
        compiled = self.compile()
        if states.ndim == 1:
            return float(energies_of(compiled, compiled.energies, states[None])[0])
        return energies_of(compiled, compiled.energies, states)

    # ------------------------------------------------------------------ structure
    def to_networkx(self) -> nx.Graph:
        """The bipartite factor graph as a :class:`networkx.Graph`.

        Variable nodes are keyed by their names (attribute ``bipartite=0``, ``n_states``);
        factor nodes by :class:`FactorNode` (``bipartite=1``); one edge per scope entry.
        """
        import networkx as nx

        graph = nx.Graph()
        for name, k in zip(self._names, self.n_states.tolist()):
            graph.add_node(name, bipartite=0, n_states=k)
        for block in self._blocks:
            for row, scope in enumerate(block.scopes.tolist()):
                node = FactorNode(block.first + row)
                graph.add_node(node, bipartite=1)
                graph.add_edges_from((node, self._names[v]) for v in scope)
        return graph

    def is_forest(self) -> bool:
        """Whether the bipartite factor graph has no cycle (every component is a tree).

        Belief propagation is exact on forests. Two factors sharing two variables form a
        cycle. Read off the compiled graph's breadth-first schedule
        (:attr:`CompiledGraph.is_forest <factorgraph_ebm.compiled.CompiledGraph>`), which
        the engine uses to choose its method.
        """
        return self.compile().is_forest

    def connected_components(self) -> list[set]:
        """Connected components as sets of variable names (constant factors excluded), in
        the order of their first variable.

        Read off the compiled graph's breadth-first schedule: each root variable
        (``var_parent_edge == -1``) starts the run of ``var_order`` that is its component.
        """
        cg = self.compile()
        order = cg.var_order
        roots = np.flatnonzero(cg.var_parent_edge[order] < 0)
        names = self._names
        return [{names[int(v)] for v in block} for block in np.split(order, roots[1:])]

    def __repr__(self) -> str:
        return f"FactorGraph(n_variables={self.n_variables}, n_factors={self.n_factors})"
