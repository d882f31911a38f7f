"""What a saved :class:`~factorgraph_ebm.sequence.labeler.SequenceLabeler` is made of: the
loss by short name or by class and parameters, the label set, and the ``.npz`` file format
(:data:`FORMAT_NAME`, :data:`FORMAT_VERSION`): reading an archive and checking every field of
its header (see :meth:`SequenceLabeler.save <factorgraph_ebm.sequence.labeler.SequenceLabeler.save>`
for the format)."""

from __future__ import annotations

import json
import math

import numpy as np

from .. import losses as _losses
from ..chain_backend import check_loss
from ..exceptions import FactorGraphError, TargetError
from ..losses import Loss, PerceptronLoss
from .features import AttributeIndexer

__all__ = ["FORMAT_NAME", "FORMAT_VERSION"]


#: The ``format`` field of the JSON header of a saved model.
FORMAT_NAME = "factorgraph_ebm.SequenceLabeler"


#: The newest file format version this module writes and reads.
FORMAT_VERSION = 1


_LOSS_NAMES = {
    "perceptron": lambda: PerceptronLoss(),
    "hinge": lambda: _losses.HingeLoss(margin=1.0),
    "hinge_hamming": lambda: _losses.HingeLoss(margin=0.0, hamming=1.0),
    "log": lambda: _losses.LogLoss(),
    "lvq2": lambda: _losses.LVQ2Loss(),
    "mce": lambda: _losses.MCELoss(),
    "square_square": lambda: _losses.SquareSquareLoss(),
    "square_exp": lambda: _losses.SquareExpLoss(),
    "energy": lambda: _losses.EnergyLoss(),
    "nll": lambda: _losses.NLLLoss(1.0),
    "crf": lambda: _losses.NLLLoss(1.0),
    "mee": lambda: _losses.MEELoss(1.0),
}


def _resolve_loss(loss) -> Loss:
    """A Loss instance from a Loss or a short name (see :class:`SequenceLabeler`); every
    loss trains a labeler but a forbidden sphere, which sequence labels do not define."""
    if isinstance(loss, str):
        if loss not in _LOSS_NAMES:
            raise FactorGraphError(
                f"unknown loss {loss!r}; use one of {sorted(_LOSS_NAMES)} or a Loss instance"
            )
        return _LOSS_NAMES[loss]()
    if not isinstance(loss, Loss) or not hasattr(loss, "name"):  # a base class has none
        raise FactorGraphError(
            f"loss must be a Loss (factorgraph_ebm.losses) or one of the names "
            f"{sorted(_LOSS_NAMES)}; got {loss!r}"
        )
    check_loss(loss)
    return loss


def _loss_state(loss: Loss) -> dict:
    """JSON-able ``{"class", "params"}`` of a loss (rebuilt by :meth:`SequenceLabeler.load`)."""
    params = {k: v for k, v in vars(loss).items() if k != "distance"}
    return {"class": type(loss).__name__, "params": params}


def _check_labels(labels) -> list:
    """The sorted distinct labels (str, or int as Python int); TargetError for other types
    or a mix."""
    distinct = set(labels)
    for label in distinct:
        if not isinstance(label, (str, int, np.integer)) or isinstance(label, (bool, np.bool_)):
            raise TargetError(f"labels must be str or int, got {label!r}")
    try:
        ordered = sorted(distinct)
    except TypeError:
        raise TargetError("labels must all be str or all be int") from None
    return [c if isinstance(c, str) else int(c) for c in ordered]


def _read_archive(path: str) -> dict:
    """Every array of the ``.npz`` file ``path``, read with ``allow_pickle=False``; the file
    is closed in every case (``np.load`` of a path leaves it open when the archive is
    truncated)."""
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except MemoryError:
        raise FactorGraphError(f"{path}: its arrays do not fit in memory") from None
    except Exception as error:  # noqa: BLE001 - the zip and npy readers raise many kinds
        # (OSError, EOFError, zipfile.BadZipFile, NotImplementedError, zlib.error,
        # ValueError, ...): every one means this is not a readable model file.
        raise FactorGraphError(f"{path}: not a SequenceLabeler .npz file, or a damaged one "
                               f"({type(error).__name__}: {error})") from None


def _checked_header(path: str, arrays: dict) -> dict:
    """The JSON header of a saved model, every field checked (see
    :meth:`SequenceLabeler.save` for the format), and its arrays checked against it.
    Returns the header with three more keys: ``loss`` (the Loss), ``indexer`` (the
    AttributeIndexer, None for numeric features) and ``n_features``.

    Raises
    ------
    FactorGraphError
        "<path>: <what is wrong>", for the first problem found.
    """
    def bad(problem: str) -> FactorGraphError:
        return FactorGraphError(f"{path}: {problem}")

    blob = arrays.get("header")
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise bad("no 'header' array (uint8 JSON bytes); not a SequenceLabeler file")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f"unreadable JSON header ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        found = header.get("format") if isinstance(header, dict) else None
        raise bad(f"format {found!r}, expected {FORMAT_NAME!r}")
    version = header.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise bad(f"file format version {version!r}; this factorgraph_ebm reads versions "
                  f"1..{FORMAT_VERSION} (a newer version needs a newer factorgraph_ebm)")

    def field(where: dict, key: str, name: str, check, expected: str, default=...):
        if key not in where:
            if default is not ...:
                return default
            raise bad(f"header field {name!r} is missing")
        value = where[key]
        if not check(value):
            raise bad(f"header field {name!r} must be {expected}, got {value!r}")
        return value

    def is_int(value, low=0):
        return type(value) is int and value >= low

    def is_weight(value):
        return type(value) in (int, float) and math.isfinite(value) and value >= 0

    labels = field(header, "labels", "labels", lambda v: isinstance(v, list) and v,
                   "a non-empty list")
    try:
        ordered = _check_labels(labels)
    except (TargetError, TypeError) as error:
        raise bad(f"header field 'labels': {error}") from None
    if ordered != labels:
        raise bad(f"header field 'labels' must list distinct labels in sorted order (as "
                  f"save writes classes_), got {labels!r}")
    features = field(header, "features", "features", lambda v: isinstance(v, dict),
                     "an object")
    kind = field(features, "kind", "features.kind",
                 lambda v: v in ("numeric", "attributes"), "'numeric' or 'attributes'")
    if kind == "numeric":
        indexer = None
        n_features = field(features, "n_features", "features.n_features",
                           lambda v: is_int(v, 1), "an integer >= 1")
    else:
        field(features, "min_freq", "features.min_freq", lambda v: is_int(v, 1),
              "an integer >= 1")
        field(features, "n_features", "features.n_features",
              lambda v: v is None or is_int(v, 1), "null or an integer >= 1")
        field(features, "attributes", "features.attributes",
              lambda v: v is None or (isinstance(v, list)
                                      and all(isinstance(a, str) for a in v)),
              "null or a list of strings")
        try:
            indexer = AttributeIndexer.from_state(features)
        except FactorGraphError as error:
            raise bad(f"header field 'features': {error}") from None
        n_features = indexer.n_features_
    options = field(header, "options", "options", lambda v: isinstance(v, dict), "an object")
    state = field(options, "loss", "options.loss",
                  lambda v: (isinstance(v, dict) and isinstance(v.get("class"), str)
                             and isinstance(v.get("params"), dict)),
                  'an object {"class": name, "params": {...}}')
    loss_class = getattr(_losses, state["class"], None)
    if not (isinstance(loss_class, type) and issubclass(loss_class, Loss)):
        raise bad(f"header field 'options.loss' names an unknown loss class "
                  f"{state['class']!r}")
    try:
        loss = _resolve_loss(loss_class(**state["params"]))
    except (FactorGraphError, TypeError, ValueError) as error:
        raise bad(f"header field 'options.loss' ({state['class']}): {error}") from None
    for key in ("l2", "l1"):
        field(options, key, f"options.{key}", is_weight, "a finite number >= 0",
              default=0.0 if key == "l1" else ...)
    for key in ("boundary", "all_possible_states", "averaging"):
        field(options, key, f"options.{key}", lambda v: type(v) is bool, "true or false")
    field(options, "seed", "options.seed", lambda v: v is None or is_int(v), "null or an "
          "integer >= 0")
    field(options, "labels", "options.labels", lambda v: v is None or v == labels,
          "null or the header's labels", default=None)
    field(options, "n_epochs_", "options.n_epochs_", is_int, "an integer >= 0", default=0)

    k = len(labels)
    n_weights = arrays["weight_label"].shape if "weight_label" in arrays else None
    expected = {"weight_ptr": ((n_features + 1,), "iu"), "weight_label": (n_weights, "iu"),
                "weight_value": (n_weights, "f"), "transition": ((k, k), "f"),
                "start": ((k,), "f"), "end": ((k,), "f")}
    for name, (shape, kinds) in expected.items():
        got = arrays.get(name)
        want = "integers" if kinds == "iu" else "floats"
        if got is None or shape is None:
            raise bad(f"array {name!r} is missing")
        if got.shape != shape or got.dtype.kind not in kinds:
            raise bad(f"array {name!r} has shape {got.shape} and dtype {got.dtype}, expected "
                      f"{want} of shape {shape}")
        if kinds == "f" and not np.isfinite(got).all():
            raise bad(f"array {name!r} has entries that are not finite")
    ptr, lab = arrays["weight_ptr"], arrays["weight_label"]
    valid = ptr[0] == 0 and ptr[-1] == len(lab) and (np.diff(ptr) >= 0).all()
    if valid:
        same_row = np.ones(len(lab), dtype=bool)  # entry j is in the row of entry j - 1
        same_row[ptr[:-1][ptr[:-1] < ptr[1:]]] = False
        valid = (not ((lab < 0) | (lab >= k)).any()
                 and not (np.diff(lab)[same_row[1:]] <= 0).any())
    if not valid:
        raise bad(f"weight_ptr/weight_label are not a CSR pattern of {n_features} x {k} "
                  "weights (labels in 0..L-1, increasing within each attribute)")
    return {**header, "loss": loss, "indexer": indexer, "n_features": n_features}
