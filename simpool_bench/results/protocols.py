"""The ``protocol`` and ``transform`` records of two tables, parameter by parameter: what ``check``
gates on besides the metrics (a run and its baseline must share every protocol parameter and the
image transform, unless a change is accepted by name).

A record is a JSON object per row (``table.as_json``); a table without the columns, or with them
empty (schema 2, a hand-made baseline), has no record. Values compare as JSON values, integers
equal to floats (``100`` == ``100.0``); a parameter one record lacks differs from any value, but
for those recorded since a later version (``RECORDED_SINCE``), which a record from before them
reads as the value it ran with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..registry import DINO_KNN
from .table import RECORD_COLUMNS, _py, from_json

#: Every parameter name the tool records (``specs.protocol_of`` of every spec and
#: ``transforms.transform_record``; ``tests/test_protocol_gate.py`` keeps them in step): the names
#: ``--allow-protocol-change`` accepts besides the provenance fields ``check`` compares.
PROTOCOL_PARAMETERS: tuple[str, ...] = (
    "task",
    "knn_train",
    "knn_k",
    "knn_temperature",
    "knn_chunks",
    "knn_subset",
    "interval",
    "v1",
    "cam_target",
    "image_size",
    "method",
    "mass",
    "lost_compat",
    "k_patches",
    "no_hard",
    "dtype",
    "features",
    "maps_for",
    "resize",
    "crop",
    "crop_pct",
    "crop_mode",
    "interpolation",
    "mean",
    "std",
    "normalize",
)
#: The protocol parameters of a k-NN memory bank: they change a run's k-NN rows alone.
KNN_PARAMETERS: tuple[str, ...] = ("knn_train", "knn_k", "knn_temperature", "knn_chunks", "knn_subset")


def _old_crop_mode(record: dict[str, Any]) -> str | None:
    """The timm ``crop_mode`` of a transform record from before it was recorded, read off its
    resize: none without a crop (wsolevaluation's, LOST's), ``center`` for a short-side resize (a
    whole number), ``squash`` for a resize to both sides, the one a timm tag uses (a record of
    ``border``, which no tag uses, or of ``center`` at a non-square size, read the same then)."""
    if record.get("crop") is None:
        return None
    resize = record.get("resize")
    return "center" if not isinstance(resize, list) or len(resize) == 1 else "squash"


#: Parameters recorded since a later version, with the value a record from before ran with:
#: ``normalize`` (``transforms.transform_record``), before ``--prefetcher``, was ToTensor's;
#: ``knn_chunks``, before ``--knn-chunks``, DINO's 100 where the run had a k-NN bank, else unused;
#: ``crop_mode``: see :func:`_old_crop_mode`.
RECORDED_SINCE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "normalize": lambda record: "to-tensor",
    "knn_chunks": lambda record: DINO_KNN.chunks if record.get("knn_train") is not None else None,
    "crop_mode": _old_crop_mode,
}


_ABSENT = object()


@dataclass(frozen=True)
class ParameterChange:
    """One parameter that differs: which record (``protocol``/``transform``), its name, and the
    run's and the baseline's values as shown (``show``)."""

    record: str
    name: str
    run: str
    baseline: str


def show(value: Any) -> str:
    """A parameter value as reports print it: strings bare, the rest as JSON; 'not recorded' for
    a parameter the record lacks."""
    if value is _ABSENT:
        return "not recorded"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _canonical(value: Any) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return "<absent>" if value is _ABSENT else json.dumps(norm(value), sort_keys=True)


def _records(sel: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    """The distinct records of ``column`` in ``sel`` (an empty cell: an empty record)."""
    cells = {_py(v) for v in sel[column]} if column in sel.columns else {None}
    return [from_json(c) or {} for c in sorted(cells, key=lambda c: "" if c is None else str(c))]


def has_record(sel: pd.DataFrame) -> bool:
    """Whether the rows ``sel`` record their protocol (a schema 3 table of the tool does, on every row)."""
    return "protocol" in sel.columns and bool(sel["protocol"].notna().any())


def has_bank(sel: pd.DataFrame) -> bool:
    """Whether every protocol record of the rows ``sel`` names a k-NN memory bank (``knn_train``)."""
    return all(r.get("knn_train") is not None for r in _records(sel, "protocol"))


def parameter_changes(run: pd.DataFrame, baseline: pd.DataFrame) -> list[ParameterChange]:
    """Every protocol or transform parameter whose values differ between the rows ``run`` and
    ``baseline`` (of one dataset/split), by record then name."""
    changes = []
    for column in RECORD_COLUMNS:
        rrecs, brecs = _records(run, column), _records(baseline, column)
        names = sorted({k for r in (*rrecs, *brecs) for k in r})
        for name in names:
            rvals = _distinct(_value(r, name) for r in rrecs)
            bvals = _distinct(_value(r, name) for r in brecs)
            if len(rvals) != 1 or len(bvals) != 1 or set(rvals) != set(bvals):
                changes.append(ParameterChange(column, name, _joined(rvals), _joined(bvals)))
    return changes


def _value(record: dict[str, Any], name: str) -> Any:
    """``record``'s value of ``name``: absent, or ``RECORDED_SINCE``'s for a record older than it.
    An empty record (no record at all) keeps it absent."""
    if name in record:
        return record[name]
    return RECORDED_SINCE[name](record) if record and name in RECORDED_SINCE else _ABSENT


def _distinct(values: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        out.setdefault(_canonical(v), v)
    return out


def _joined(values: dict[str, Any]) -> str:
    return " | ".join(show(v) for v in values.values())
