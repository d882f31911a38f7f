"""Reading and writing factor graphs, evidence and answers in standard text formats.

- UAI inference-competition formats (:mod:`factorgraph_ebm.io.uai`): models ``.uai``,
  evidence ``.evid``, and the MAP, MAR and PR answer formats.
- libDAI's ``.fg`` format (:mod:`factorgraph_ebm.io.fg`).

Energies are ``-ln(potential)`` (natural log); a potential of 0 is energy ``+inf``. Every
reader streams its file and reports bad input as :class:`ModelFileError`, a
:class:`~factorgraph_ebm.exceptions.FactorGraphError` whose message reads
``file:line: what was expected, what was found``.
"""

from pathlib import Path

from ..exceptions import FactorGraphError
from ..graph import FactorGraph
from .fg import read_fg, write_fg
from .uai import (
    ModelFileError,
    read_evidence,
    read_evidence_samples,
    read_map,
    read_mar,
    read_pr,
    read_uai,
    write_evidence,
    write_map,
    write_mar,
    write_pr,
    write_uai,
)

#: Model readers by file extension (lower case).
MODEL_READERS = {".uai": read_uai, ".fg": read_fg}


def read_model(path) -> FactorGraph:
    """Read a model, choosing the format by the file extension (``.uai`` or ``.fg``).

    Parameters
    ----------
    path : str or os.PathLike

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
    reader = MODEL_READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise FactorGraphError(
            f"{path}: unknown model format {Path(path).suffix!r}; expected one of "
            f"{', '.join(MODEL_READERS)}"
        )
    return reader(path)


__all__ = [
    "MODEL_READERS",
    "ModelFileError",
    "read_evidence",
    "read_evidence_samples",
    "read_fg",
    "read_map",
    "read_mar",
    "read_model",
    "read_pr",
    "read_uai",
    "write_evidence",
    "write_fg",
    "write_map",
    "write_mar",
    "write_pr",
    "write_uai",
]
