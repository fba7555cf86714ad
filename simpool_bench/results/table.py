"""The results table of one run: its schema, provenance, construction and checks (SPEC section 6).

One run is one tidy long table: a row per (dataset, split, metric, iou_threshold, value), with the
run's provenance repeated on every row. Accuracies are in percent, as in wsolevaluation
(``num_correct * 100 / cnt``) and LOST. ``maxboxacc`` has one row per IoU threshold (30/50/70,
wsolevaluation's ``iou_threshold_list``); ``maxboxacc_v2`` is their mean and has no IoU threshold.
The metrics the tool writes are declared in ``metrics.catalog``; other names are allowed.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SimpoolBenchError
from ..files import sha256_file
from ..metrics import catalog

SCHEMA_VERSION = 2
"""Version of the results table layout; bump on any change of columns or their meaning.
2: ``attn_options``, ``weights``, ``data_config``, ``cls_head`` and ``pos_interp`` provenance columns."""

METRIC_COLUMNS: tuple[str, ...] = ("dataset", "split", "metric", "iou_threshold", "value")
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "run_id",
    "checkpoint",
    "checkpoint_sha256",
    "checkpoint_format",
    "model",
    "pool",
    "gamma",
    "min_scope",
    "attn_source",
    "attn_options",
    "cls_head",
    "pos_interp",
    "weights",
    "data_config",
    "method",
    "image_size",
    "n_images",
    "tool_version",
    "torch_version",
    "timm_version",
    "device",
    "amp",
    "date",
    "command",
    "schema_version",
)
COLUMNS: tuple[str, ...] = METRIC_COLUMNS + PROVENANCE_COLUMNS
KEY_COLUMNS: tuple[str, ...] = ("dataset", "split", "metric", "iou_threshold")

_FLOAT_COLUMNS = frozenset({"value", "gamma"})
_INT_COLUMNS = frozenset({"iou_threshold", "cls_head", "image_size", "n_images", "schema_version"})

RECORD_FILES = {"csv": "results.csv", "parquet": "results.parquet"}
EXPORT_FILES = {**RECORD_FILES, "json": "results.json", "md": "results.md", "latex": "results.tex"}
#: Written last by ``write_run``: which files make up the run in a folder (see the module docstring).
RUN_MANIFEST = "results.manifest.json"
#: Every file a run may write beside the tables (removed when a new run in the folder lacks it).
RUN_EXTRA_FILES = ("boxacc_curve.csv", "per_class.csv", "per_image.parquet", "per_image.csv")
_FORMAT_ALIASES = {"markdown": "md", "tex": "latex", "pq": "parquet"}
#: Metric names of the catalog (``metrics.catalog``), in display order. Others are allowed in a table.
KNOWN_METRICS: tuple[str, ...] = tuple(m.name for m in catalog.METRICS)
_METRIC_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


# ------------------------------------------------------------------------------------ provenance
def _timm_version() -> str:
    """timm's version, without importing timm (seconds) when no model was built."""
    if "timm" in sys.modules:
        return sys.modules["timm"].__version__
    from importlib.metadata import version

    return version("timm")


@dataclass(frozen=True)
class Provenance:
    """Where a run's numbers come from; one value per provenance column of the table.

    ``cls_head``: the head of a CLS attention map (None = the head mean, or no CLS map; 4 under
    ``discover --lost-compat``). ``pos_interp``: how a ViT resized its position embeddings:
    ``'timm'``, ``'dino'`` (DINO's ``interpolate_pos_encoding``) or ``'dino-quirk'`` (the official
    SimPool DINO code's ``npatch`` slip); None for CNNs."""

    model: str
    pool: str
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_format: str | None = None
    gamma: float | None = None
    min_scope: str | None = None
    attn_source: str | None = None
    attn_options: str | None = None
    weights: str | None = None
    data_config: str | None = None
    cls_head: int | None = None
    pos_interp: str | None = None
    method: str | None = None
    image_size: int | None = None
    n_images: int | None = None
    device: str | None = None
    amp: str | None = None
    run_id: str | None = None
    tool_version: str | None = None
    torch_version: str | None = None
    timm_version: str | None = None
    date: str | None = None
    command: str | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def collect(
        cls, model: str, pool: str, *, checkpoint: str | os.PathLike | None = None, argv: Sequence[str] | None = None, **known: Any
    ) -> Provenance:
        """Provenance of a run made now: fills run_id, versions, UTC date, command line, and the
        checkpoint's sha256 (hashed from the file when not given)."""
        import torch

        from .. import __version__

        ckpt = None if checkpoint is None else str(checkpoint)
        if ckpt is not None and known.get("checkpoint_sha256") is None and Path(ckpt).is_file():
            known["checkpoint_sha256"] = sha256_file(ckpt)
        argv = list(sys.argv if argv is None else argv)
        defaults = {
            "run_id": uuid.uuid4().hex[:12],
            "tool_version": __version__,
            "torch_version": torch.__version__,
            "timm_version": _timm_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else None,
        }
        for k, v in defaults.items():
            if known.get(k) is None:
                known[k] = v
        return cls(model=model, pool=pool, checkpoint=ckpt, **known)

    @classmethod
    def from_table(cls, df: pd.DataFrame) -> Provenance:
        """The provenance recorded in a results table (its first row)."""
        missing = [c for c in PROVENANCE_COLUMNS if c not in df.columns]
        if missing or len(df) == 0:
            raise SimpoolBenchError(f"table has no provenance (missing columns: {', '.join(missing) or 'rows'})")
        row = df.iloc[0]
        return cls(**{f.name: _py(row[f.name]) for f in fields(cls)})

    def as_row(self) -> dict[str, Any]:
        """The provenance columns, in table order."""
        d = asdict(self)
        return {c: d[c] for c in PROVENANCE_COLUMNS}


# ------------------------------------------------------------------------------------ the table
def metric_rows(dataset: str, split: str, values: Mapping[str, float | Mapping[int, float]]) -> list[dict[str, Any]]:
    """Rows for ``make_table`` from {metric: value} or {metric: {iou_threshold: value}}."""
    rows: list[dict[str, Any]] = []
    for metric, v in values.items():
        if isinstance(v, Mapping):
            rows += [
                {"dataset": dataset, "split": split, "metric": metric, "iou_threshold": int(i), "value": float(x)} for i, x in v.items()
            ]
        else:
            rows.append({"dataset": dataset, "split": split, "metric": metric, "iou_threshold": None, "value": float(v)})
    return rows


def make_table(rows: Sequence[Mapping[str, Any]], provenance: Provenance) -> pd.DataFrame:
    """The tidy table of one run: ``rows`` (dataset, split, metric, value, optional
    iou_threshold) with ``provenance`` repeated on every row."""
    if len(rows) == 0:
        raise SimpoolBenchError("a results table needs at least one metric row; got none")
    allowed = set(METRIC_COLUMNS)
    prov = provenance.as_row()
    records = []
    for i, r in enumerate(rows):
        extra = set(r) - allowed
        missing = {"dataset", "split", "metric", "value"} - set(r)
        if extra or missing:
            what = f"unknown keys {sorted(extra)}" if extra else f"missing keys {sorted(missing)}"
            raise SimpoolBenchError(f"metric row {i} ({dict(r)!r}): {what}; expected {', '.join(METRIC_COLUMNS)}")
        records.append({**{c: r.get(c) for c in METRIC_COLUMNS}, **prov})
    df = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    df = _coerce(df, "results table")
    _validate(df, "results table")
    return df


def _py(x: Any) -> Any:
    """A table cell as a plain Python value (NA -> None)."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return None
    if isinstance(x, np.generic):
        return x.item()
    return x


def _is_na(x: Any) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) or (isinstance(x, np.floating) and np.isnan(x))


def _to_str(x: Any) -> Any:
    if _is_na(x):
        return pd.NA
    s = str(x)
    return pd.NA if s == "" else s


def _to_float(x: Any) -> float:
    if _is_na(x) or (isinstance(x, str) and x.strip() == ""):
        return math.nan
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(repr(x))
    return float(x)


def _to_int(x: Any) -> Any:
    if _is_na(x) or (isinstance(x, str) and x.strip() == ""):
        return pd.NA
    if isinstance(x, (bool, np.bool_)):
        raise ValueError(repr(x))
    if isinstance(x, str):
        x = x.strip()
        try:
            return int(x)
        except ValueError:
            x = float(x)
    if isinstance(x, (float, np.floating)):
        if not float(x).is_integer():
            raise ValueError(repr(x))
        return int(x)
    return int(x)


def _coerce(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Fix the dtypes of the known columns (strings: 'string' with NA for empty; integers: Int64;
    floats: float64). Values are converted one by one with Python's exact parsers."""
    out = {}
    for col in df.columns:
        values = df[col].tolist()
        if col in COLUMNS:
            conv, dtype = (
                (_to_float, "float64") if col in _FLOAT_COLUMNS else (_to_int, "Int64") if col in _INT_COLUMNS else (_to_str, "string")
            )
            converted = []
            for i, v in enumerate(values):
                try:
                    converted.append(conv(v))
                except (TypeError, ValueError):
                    raise SimpoolBenchError(
                        f"{source}: column '{col}' row {i}: {v!r} is not {'a number' if dtype == 'float64' else 'an integer'}"
                    ) from None
            out[col] = np.asarray(converted, dtype=np.float64) if dtype == "float64" else pd.array(converted, dtype=dtype)
        else:
            out[col] = df[col].to_numpy()
    ordered = [c for c in COLUMNS if c in out] + [c for c in df.columns if c not in COLUMNS]
    return pd.DataFrame({c: out[c] for c in ordered})


def _validate(df: pd.DataFrame, source: str, *, provenance: bool = True) -> None:
    """Check a coerced table: required columns, metric names, IoU thresholds, unique keys."""
    need = COLUMNS if provenance else METRIC_COLUMNS
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SimpoolBenchError(f"{source}: missing columns {', '.join(missing)}")
    if len(df) == 0:
        raise SimpoolBenchError(f"{source}: the table has no rows")
    for col in ("dataset", "split", "metric"):
        bad = df.index[df[col].isna()]
        if len(bad):
            raise SimpoolBenchError(f"{source}: column '{col}' is empty in row {int(bad[0])}")
    for i, (m, iou) in enumerate(zip(df["metric"], df["iou_threshold"])):
        if not _METRIC_RE.match(m):
            raise SimpoolBenchError(f"{source}: row {i}: metric name {m!r} must be letters, digits, '_', '.' or '-'")
        if iou is not pd.NA and not 0 < iou <= 100:
            raise SimpoolBenchError(f"{source}: row {i}: iou_threshold {iou} is not a percentage in (0, 100]")
        if m == "maxboxacc" and iou is pd.NA:
            raise SimpoolBenchError(f"{source}: row {i}: metric 'maxboxacc' needs an iou_threshold (30, 50 or 70)")
        if m == "maxboxacc_v2" and iou is not pd.NA:
            raise SimpoolBenchError(
                f"{source}: row {i}: metric 'maxboxacc_v2' is the mean over IoU thresholds; its iou_threshold must be empty"
            )
    keys = list(KEY_COLUMNS) + (["run_id"] if "run_id" in df.columns else [])
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise SimpoolBenchError(
            f"{source}: duplicate rows for dataset={r['dataset']} split={r['split']} metric={r['metric']} "
            f"iou_threshold={_fmt_iou(r['iou_threshold']) or 'none'}"
        )


def _fmt_iou(iou: Any) -> str:
    return "" if _is_na(iou) else str(int(iou))


def metric_key(metric: str, iou: Any) -> str:
    """Column key of a metric: ``maxboxacc@50`` where an IoU threshold applies, else the name."""
    return metric if _is_na(iou) else f"{metric}@{int(iou)}"
