"""The engine registry and the worker that runs one (engine, workload) pair."""

from __future__ import annotations

import importlib
import traceback

from .common import Options, skipped_row
from .measure import available_mb
from .workloads import make_workload

#: Engine name -> adapter module (each has NAME, unavailable(), too_big(), run()).
MODULES = {
    "ours": "engine_ours",
    "numpy": "engine_numpy",
    "numba-dense": "engine_roofline",
    "pgmax": "engine_pgmax",
    "pgmpy": "engine_pgmpy",
    "pyagrum": "engine_pyagrum",
}
ALIASES = {"roofline": "numba-dense", "numba": "numba-dense"}
ALL = tuple(MODULES)


def canonical(name: str) -> str:
    """The registered name of engine ``name`` (accepts the aliases)."""
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in MODULES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ALL)}")
    return name


def adapter(name: str):
    """The adapter module of engine ``name``."""
    return importlib.import_module(f"{__package__}.{MODULES[canonical(name)]}")


def run_case(engine: str, kind: str, n: int, k: int, seed: int, options: Options) -> list[dict]:
    """Rows of one engine on one workload; skips and failures become rows with a note."""
    workload = make_workload(kind, n, k, seed)
    module = adapter(engine)
    reason = module.unavailable() or module.too_big(workload, available_mb())
    if reason:
        return [skipped_row(module.NAME, workload, f"skipped: {reason}")]
    try:
        return module.run(workload, options)
    except Exception as exc:  # report, and let the other engines run
        last = traceback.format_exc(limit=-1).strip().splitlines()[-1]
        return [skipped_row(module.NAME, workload, f"failed: {type(exc).__name__}: {last}")]
