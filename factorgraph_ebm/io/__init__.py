"""Reading and writing factor graphs, evidence and answers in standard text formats.

- UAI inference-competition formats: models ``.uai`` (:mod:`factorgraph_ebm.io.uai`),
  evidence ``.evid`` (:mod:`factorgraph_ebm.io.evidence`), and the MAP, MAR and PR answer
  formats (:mod:`factorgraph_ebm.io.answers`).
- libDAI's ``.fg`` format (:mod:`factorgraph_ebm.io.fg`).
- pgmpy's and pyAgrum's model objects (:mod:`factorgraph_ebm.io.convert`; optional
  dependencies).

Every reader takes plain or gzip-compressed text with any line ending; the writers shift
each table by its lowest finite energy and return those shifts (the constant by which the
written model's energies differ).

What the formats share lives in private modules: the text reader, its error type and the
number formatting of the writers in ``_text``; the checks of scopes and potentials, the
conversion between potentials and energies, and the assembly of a graph in ``_potentials``.

Energies are ``-ln(potential)`` (natural log); a potential of 0 is energy ``+inf``. Every
reader streams its file and reports bad input as :class:`ModelFileError`, a
:class:`~factorgraph_ebm.exceptions.FactorGraphError` whose message reads
``file:line: what was expected, what was found``.
"""

from pathlib import Path

from ..exceptions import FactorGraphError
from ..graph import FactorGraph
from ._potentials import MAX_ENERGY_SPREAD
from ._text import ModelFileError
from .answers import read_map, read_mar, read_pr, write_map, write_mar, write_pr
from .convert import from_pgmpy, from_pyagrum, to_pgmpy
from .evidence import read_evidence, read_evidence_samples, write_evidence
from .fg import read_fg, write_fg
from .uai import read_uai, write_uai

#: Model readers by file extension (lower case).
MODEL_READERS = {".uai": read_uai, ".fg": read_fg}


def read_model(path, *, max_entries: int | None = None) -> FactorGraph:
    """Read a model, choosing the format by the file extension (``.uai`` or ``.fg``).

    Parameters
    ----------
    path : str or os.PathLike
        A trailing ``.gz`` is looked through (``model.uai.gz`` is a ``.uai`` model); every
        reader takes gzip-compressed files, whatever their name.
    max_entries : int, optional
        The budget of dense table entries of a ``.fg`` file (see :func:`read_fg`; default
        its ``MAX_FILE_ENTRIES``). A ``.uai`` file lists every entry, so its size bounds
        its tables.

    Returns
    -------
    FactorGraph

    Raises
    ------
    FactorGraphError
        If the extension is not one of :data:`MODEL_READERS`.
    ModelFileError
        As :func:`read_uai` and :func:`read_fg`.
    OSError
        If the file cannot be read.
    """
    name = Path(path)
    if name.suffix.lower() == ".gz":
        name = name.with_suffix("")
    reader = MODEL_READERS.get(name.suffix.lower())
    if reader is None:
        raise FactorGraphError(
            f"{path}: unknown model format {name.suffix!r}; expected one of "
            f"{', '.join(MODEL_READERS)} (optionally followed by .gz)"
        )
    if max_entries is not None and reader is read_fg:
        return read_fg(path, max_entries=max_entries)
    return reader(path)


__all__ = [
    "MAX_ENERGY_SPREAD",
    "MODEL_READERS",
    "ModelFileError",
    "from_pgmpy",
    "from_pyagrum",
    "read_evidence",
    "read_evidence_samples",
    "read_fg",
    "read_map",
    "read_mar",
    "read_model",
    "read_pr",
    "read_uai",
    "to_pgmpy",
    "write_evidence",
    "write_fg",
    "write_map",
    "write_mar",
    "write_pr",
    "write_uai",
]
