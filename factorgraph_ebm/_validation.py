"""Input validation shared by the package: numbers, names, arrays and sizes.

Public functions check what they are given here, so that bad input raises a
:class:`~factorgraph_ebm.exceptions.FactorGraphError` (or the subclass passed as ``error``)
with one message shape, ``<what> must be <expected>, got <found>``, instead of a
``TypeError``, an ``AttributeError`` or a NumPy error from deeper down.

Sizes: every count the engine stores in int64 and allocates as float64 (the states of one
variable and of all variables, the entries of all energy tables, of all messages) is at
most :data:`MAX_ENTRIES`, so that no offset or byte count overflows; what an inference
needs is estimated by :func:`inference_bytes` and compared with the machine's memory by
:func:`require_memory` before anything is allocated.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from collections.abc import Hashable, Mapping

import numpy as np

from .exceptions import FactorGraphError

#: The largest count of states of one variable, of states in all, of energy-table entries in
#: all or of message entries in all: 2**40 (about 1.1e12; 8 TiB as float64), beyond any one
#: machine's memory, and far enough below 2**63 that no int64 offset or byte count built from
#: such counts overflows.
MAX_ENTRIES = 2**40

#: The smallest inverse temperature accepted. Free energies and messages are kept in energy
#: units, where the temperature T = 1/beta multiplies logarithms of numbers of
#: configurations: at beta = 1e-300 they stay finite while ln Z < 1.8e8 (e.g. up to 2.6e8
#: binary variables); at 1e-308 a 50-token chain's ln Z was +inf, at 5e-324 (1/beta = +inf)
#: a 2-variable graph's was NaN.
MIN_BETA = 1e-300


# --------------------------------------------------------------------------- numbers
def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(value, what: str, *, low: int | None = None, high: int | None = None,
            error=FactorGraphError) -> int:
    """``int(value)`` after checking that it is an ``int`` or NumPy integer (not a bool) in
    ``low .. high`` (inclusive; None: unbounded).

    Raises
    ------
    FactorGraphError (or ``error``)
        "``what`` must be an integer >= 1, got 'x'".
    """
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f" in {low}..{high}"
        elif low is not None:
            bounds = f" >= {low}"
        else:
            bounds = "" if high is None else f" <= {high}"
        raise error(f"{what} must be an integer{bounds}, got {value!r}")
    return int(value)


def number(value, what: str, *, allow_zero: bool = False, allow_inf: bool = False,
           below: float | None = None, expected: str | None = None,
           error=FactorGraphError) -> float:
    """``float(value)`` after checking that it is a real number (an ``int``, ``float`` or
    NumPy real scalar; not a bool, a string or a complex) that is > 0 (>= 0 with
    ``allow_zero``), finite unless ``allow_inf``, and < ``below`` if given.

    Raises
    ------
    FactorGraphError (or ``error``)
        "``what`` must be a number > 0, got '1'" (``expected`` replaces "a number > 0").
    """
    ok = _is_real(value)
    if ok:
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond the float64 range
            as_float = np.inf if value > 0 else -np.inf
        ok = as_float >= 0 if allow_zero else as_float > 0
        ok = ok and (allow_inf or math.isfinite(as_float)) and (below is None or as_float < below)
    if not ok:
        bound = (">= 0" if allow_zero else "> 0") + ("" if below is None else f" and < {below}")
        raise error(f"{what} must be {expected or 'a number ' + bound}, got {value!r}")
    return as_float


def parameter(owner: str, name: str, value, *, allow_zero: bool = False,
              allow_inf: bool = False, below=None) -> float:
    """:func:`number` for parameter ``name`` of ``owner``, e.g. "the 'beta' parameter of
    NLLLoss must be a number > 0, got 0.0"."""
    return number(value, f"the {name!r} parameter of {owner}", allow_zero=allow_zero,
                  allow_inf=allow_inf, below=below)


def inverse_temperature(beta, what: str = "beta", error=FactorGraphError) -> float:
    """``beta`` as a float in [:data:`MIN_BETA`, inf] (inf: min-sum).

    Raises
    ------
    FactorGraphError (or ``error``)
        Not a real number, <= 0, NaN, or below :data:`MIN_BETA`.
    """
    if not _is_real(beta):
        raise error(f"{what} must be a positive number or inf, got {beta!r}")
    value = number(beta, what, allow_inf=True, expected="> 0 (inf for min-sum)", error=error)
    if value < MIN_BETA:
        raise error(
            f"{what} must be >= {MIN_BETA:g} (below, the temperature 1/beta times ln Z "
            f"overflows float64), got {beta!r}"
        )
    return value


# --------------------------------------------------------------------------- names
def hashable(name, what: str, error=FactorGraphError):
    """``name`` after checking that it can be a dictionary key (a variable name)."""
    if not isinstance(name, Hashable):
        raise error(f"{what} must be hashable, got {name!r} ({type(name).__name__})")
    try:
        hash(name)
    except TypeError:  # a tuple that holds a list
        raise error(f"{what} must be hashable, got {name!r}") from None
    return name


def scope(names, what: str, error=FactorGraphError) -> tuple:
    """A factor's scope as a tuple of names; a string is refused, since ``tuple("ab")`` would
    silently be the scope ``("a", "b")``."""
    if isinstance(names, (str, bytes)):
        raise error(
            f"{what}: a scope must be a sequence of variable names, got the string {names!r}; "
            f"for one variable named {names!r} write ({names!r},)"
        )
    try:
        return tuple(names)
    except TypeError:
        raise error(f"{what}: a scope must be a sequence of variable names, got "
                    f"{names!r}") from None


def iterable(value, what: str, error=FactorGraphError):
    """``iter(value)``, or the error "``what`` must be iterable, got int 5"."""
    try:
        return iter(value)
    except TypeError:
        raise error(f"{what} must be iterable, got {type(value).__name__} "
                    f"{_shown(value)}") from None


def mapping(value, what: str, error=FactorGraphError) -> Mapping:
    """``value`` after checking that it is a mapping (e.g. a dict)."""
    if not isinstance(value, Mapping):
        raise error(f"{what} must be a mapping (e.g. a dict), got {type(value).__name__} "
                    f"{_shown(value)}")
    return value


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- arrays
def real_array(values, what: str, error=FactorGraphError, *, copy: bool = True) -> np.ndarray:
    """``values`` as a float64 array (a new one unless ``copy`` is False and it is one
    already), from real numbers only.

    Booleans, integers and floats are taken; strings (which NumPy would parse), complex
    numbers (whose imaginary part it would drop with only a warning), ragged nesting and
    other objects are refused. An object array is taken when every element is a real number
    (e.g. Python integers beyond int64). More than :data:`MAX_ENTRIES` entries (say a
    broadcast view) are refused before any copy.

    Raises
    ------
    FactorGraphError (or ``error``)
        Naming ``what`` and the offending dtype or element.
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise error(f"{what} must be numeric (an array of real numbers): {exc}") from None
    check_count(array.size, f"{what}: its entries", error)  # before a copy of a broadcast view
    kind = array.dtype.kind
    if kind == "O":
        bad = next((x for x in array.flat if not _is_real(x)), None)
        if bad is not None:
            raise error(f"{what} must be numeric (real numbers), got {_shown(bad)} "
                        f"({type(bad).__name__})")
    elif kind not in "biuf":
        first = f" (first entry {_shown(array.flat[0].item())})" if array.size else ""
        raise error(f"{what} must be numeric (real numbers), got an array of dtype "
                    f"{array.dtype}{first}")
    try:
        return np.array(array, dtype=np.float64, copy=True if copy else None)
    except (OverflowError, TypeError, ValueError) as exc:
        raise error(f"{what} must be numeric (real numbers): {exc}") from None


def integer_array(values, what: str, error=FactorGraphError) -> np.ndarray:
    """``values`` as an int64 array, from integers only (an empty array may have any dtype).

    Raises
    ------
    FactorGraphError (or ``error``)
        Ragged nesting, or a dtype other than (unsigned) integers: "``what`` must be
        integers, got dtype float64".
    """
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise error(f"{what} must be integers (an array of them): {exc}") from None
    if array.size and array.dtype.kind not in "iu":
        raise error(f"{what} must be integers, got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        raise error(f"{what} must be integers within int64, got {array.max()}")
    return array.astype(np.int64, copy=False)


# --------------------------------------------------------------------------- sizes
def check_count(count: int, what: str, error=FactorGraphError, *,
                per_entry_bytes: int = 8) -> int:
    """``count`` after checking that it is at most :data:`MAX_ENTRIES`.

    Raises
    ------
    FactorGraphError (or ``error``)
        "``what`` would be ``count``, more than MAX_ENTRIES = 2**40 ...; one float64 array
        over them would take X".
    """
    if count > MAX_ENTRIES:
        raise error(
            f"{what} would be {count}, more than MAX_ENTRIES = 2**40 ({MAX_ENTRIES}); one "
            f"float64 array over them would take {format_bytes(count * per_entry_bytes)}"
        )
    return count


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in binary units: ``'512 B'``, ``'3.2 GiB'``, ``'32 EiB'``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} EiB"


def inference_bytes(n_variables: int, n_factors: int, n_edges: int, n_states_total: int,
                    n_table_entries: int, n_message_entries: int) -> int:
    """A rough estimate of the bytes that compiling a model and running belief propagation
    on it take at least: the compiled arrays (int64 per variable, factor and edge, theta),
    two message buffers, two float64 vectors over all states (evidence, beliefs) and the
    factor beliefs (as long as theta). Soft evidence and the flooding schedule add up to
    2.5 vectors over all states; the junction tree's tables are bounded apart, by its
    ``memory_limit``."""
    words = (6 * n_variables + 7 * n_factors + 9 * n_edges + 2 * n_states_total
             + 2 * n_table_entries + 2 * n_message_entries)
    return 8 * int(words)


@functools.cache
def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def require_memory(n_bytes: int, what: str, error=FactorGraphError) -> None:
    """Refuse, before allocating, a task that needs more than the machine's physical memory.

    Raises
    ------
    FactorGraphError (or ``error``)
        "``what`` needs about X, more than the Y of memory of this machine".
    """
    total = physical_memory()
    if total is not None and n_bytes > total:
        raise error(f"{what} needs about {format_bytes(n_bytes)}, more than the "
                    f"{format_bytes(total)} of memory of this machine")
