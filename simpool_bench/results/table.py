"""The results table of one run: its schema, provenance, construction and checks (SPEC section 6).

One run is one tidy long table: a row per (dataset, split, metric, iou_threshold, k, value), with
the run's provenance repeated on every row. Accuracies are in percent, as in wsolevaluation
(``num_correct * 100 / cnt``) and LOST. ``maxboxacc`` has one row per IoU threshold (30/50/70,
wsolevaluation's ``iou_threshold_list``); ``maxboxacc_v2`` is their mean and has no IoU threshold.
``knn_top1``/``knn_top5`` have one row per k of the k-NN classifier (``k``; empty elsewhere).
The metrics the tool writes are declared in ``metrics.catalog``; other names are allowed.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..caller import command_line, recorded_command
from ..errors import SimpoolBenchError
from ..files import sha256_file
from ..metrics import catalog

SCHEMA_VERSION = 5
"""Version of the results table layout; bump on any change of columns or their meaning.
2: ``attn_options``, ``weights``, ``data_config``, ``cls_head`` and ``pos_interp`` provenance columns.
3: the ``k`` key column (the k of a k-NN row); ``protocol``, ``transform`` (JSON objects, sorted keys) and
``random_init`` provenance columns. Version-2 tables are read with these columns empty.
4: the ``data_sha256`` provenance column (``data.records.records_sha256`` of the evaluated data);
older tables are read with it empty.
5: ``knn_data_sha256``, the data of a run's k-NN rows (its evaluation images, then its memory bank:
``records_sha256(records, bank)``); ``data_sha256`` is of the evaluation images alone in every run,
and both are of the records as read (before a head relabels them in timm's class order).
In a schema-4 table with k-NN rows, ``data_sha256`` held what ``knn_data_sha256`` holds now: it is
read there, and ``data_sha256`` reads empty (``upgrade_table``)."""
#: The oldest schema ``read_run`` still reads; the columns added since (``ADDED_COLUMNS``) read as empty.
OLDEST_READABLE_SCHEMA = 2

METRIC_COLUMNS: tuple[str, ...] = ("dataset", "split", "metric", "iou_threshold", "k", "value")
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
    "transform",
    "protocol",
    "random_init",
    "method",
    "image_size",
    "n_images",
    "data_sha256",
    "knn_data_sha256",
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
KEY_COLUMNS: tuple[str, ...] = ("dataset", "split", "metric", "iou_threshold", "k")
#: Columns a table of an older schema may lack; ``upgrade_table`` adds them empty.
ADDED_COLUMNS: dict[int, tuple[str, ...]] = {3: ("k", "protocol", "transform", "random_init"), 4: ("data_sha256",), 5: ("knn_data_sha256",)}

_FLOAT_COLUMNS = frozenset({"value", "gamma"})
_INT_COLUMNS = frozenset({"iou_threshold", "k", "cls_head", "image_size", "n_images", "schema_version"})
_BOOL_COLUMNS = frozenset({"random_init"})
#: Provenance columns holding a JSON object per row (``as_json``).
RECORD_COLUMNS: tuple[str, ...] = ("protocol", "transform")

RECORD_FILES = {"csv": "results.csv", "parquet": "results.parquet"}
EXPORT_FILES = {**RECORD_FILES, "json": "results.json", "md": "results.md", "latex": "results.tex"}
#: Written last by ``write_run``: which files make up the run in a folder (see the module docstring).
RUN_MANIFEST = "results.manifest.json"
#: Every file a run may write beside the tables (removed when a new run in the folder lacks it).
RUN_EXTRA_FILES = ("boxacc_curve.csv", "per_class.csv", "per_image.parquet", "per_image.csv")
_FORMAT_ALIASES = {"markdown": "md", "tex": "latex", "pq": "parquet"}
#: Metric names of the catalog (``metrics.catalog``), in display order. Others are allowed in a table.
KNOWN_METRICS: tuple[str, ...] = tuple(m.name for m in catalog.METRICS)
#: The metrics of a k-NN memory bank: ``knn_data_sha256`` is their data.
KNN_METRIC_NAMES = frozenset(m.name for m in catalog.KNN_METRICS)
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
    SimPool DINO code's ``npatch`` slip); None for CNNs. ``protocol``: every protocol parameter of
    the command and its ``task`` (``specs.protocol_of``); ``transform``: the image transform the
    run used (resize, crop, crop_pct, crop_mode, interpolation, mean, std, normalize; None without a model); both JSON
    objects with sorted keys (``as_json``). ``random_init``: a model ran without any weights.
    ``data_sha256``: the evaluated images' ids, labels, sizes and boxes (``records_sha256``);
    ``knn_data_sha256``: a k-NN run's evaluated images, then its memory bank (the data of its
    ``knn_*`` rows; None without a bank)."""

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
    transform: str | None = None
    protocol: str | None = None
    random_init: bool | None = None
    cls_head: int | None = None
    pos_interp: str | None = None
    method: str | None = None
    image_size: int | None = None
    n_images: int | None = None
    data_sha256: str | None = None
    knn_data_sha256: str | None = None
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
        """Provenance of a run made now: fills run_id, versions, UTC date, the checkpoint's sha256
        (hashed from the file when not given) and ``command``: ``argv`` as a command line when
        given, else what ``caller.recorded_command`` says (the CLI's command line or the API
        function called; None outside both: the host process's argv is not this run's)."""
        import torch

        from .. import __version__

        ckpt = None if checkpoint is None else str(checkpoint)
        if ckpt is not None and known.get("checkpoint_sha256") is None and Path(ckpt).is_file():
            known["checkpoint_sha256"] = sha256_file(ckpt)
        defaults = {
            "run_id": "r" + uuid.uuid4().hex[:12],  # a letter first: pandas.read_csv reads '72997801e351' as inf
            "tool_version": __version__,
            "torch_version": torch.__version__,
            "timm_version": _timm_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": recorded_command() if argv is None else command_line(argv),
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


def as_json(record: Mapping[str, Any] | None) -> str | None:
    """A ``protocol``/``transform`` record as its column value: a JSON object with sorted keys
    (tuples as lists); None stays None."""
    return None if record is None else json.dumps(dict(record), sort_keys=True)


def from_json(cell: Any) -> dict[str, Any] | None:
    """A ``protocol``/``transform`` cell back as a dict; None for an empty cell."""
    if _is_na(cell):
        return None
    try:
        out = json.loads(str(cell))
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise SimpoolBenchError(f"protocol/transform cell {str(cell)[:80]!r} is not a JSON object")
    return out


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
    iou_threshold and k) with ``provenance`` repeated on every row."""
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
            x = int(x)
        except ValueError:
            x = float(x)
    if isinstance(x, (float, np.floating)) and not float(x).is_integer():
        raise ValueError(repr(x))
    n = int(x)
    if not -(2**63) <= n < 2**63:  # an Int64 column holds no more (pandas would raise OverflowError)
        raise _OutOfRange(repr(x))
    return n


class _OutOfRange(ValueError):
    """An integer cell beyond the 64-bit range of the table's integer columns."""


def _to_bool(x: Any) -> Any:
    if _is_na(x) or (isinstance(x, str) and x.strip() == ""):
        return pd.NA
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, str) and x.strip().lower() in ("true", "false"):
        return x.strip().lower() == "true"
    if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
        return bool(x)
    raise ValueError(repr(x))


def _converter(col: str) -> tuple[Any, str]:
    if col in _FLOAT_COLUMNS:
        return _to_float, "float64"
    if col in _INT_COLUMNS:
        return _to_int, "Int64"
    if col in _BOOL_COLUMNS:
        return _to_bool, "boolean"
    return _to_str, "string"


_EXPECTED = {"float64": "a number", "Int64": "an integer", "boolean": "true or false"}


def _coerce(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Fix the dtypes of the known columns (strings: 'string' with NA for empty; integers: Int64;
    floats: float64; booleans: boolean). Values are converted one by one with Python's exact parsers. A table
    without the ``k`` column (schema 2, a hand-made baseline) gets it, empty."""
    if "k" not in df.columns:
        df = df.assign(k=None)
    out = {}
    for col in df.columns:
        values = df[col].tolist()
        if col in COLUMNS:
            conv, dtype = _converter(col)
            converted = []
            for i, v in enumerate(values):
                try:
                    converted.append(conv(v))
                except _OutOfRange:
                    raise SimpoolBenchError(
                        f"{source}: column '{col}' {_row(source, i)}: {v!r} is out of range; expected an integer of at most 19 digits"
                    ) from None
                except (TypeError, ValueError):
                    raise SimpoolBenchError(f"{source}: column '{col}' {_row(source, i)}: {v!r} is not {_EXPECTED[dtype]}") from None
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
            raise SimpoolBenchError(f"{source}: column '{col}' is empty in {_row(source, int(bad[0]))}")
        for i, v in enumerate(df[col].tolist()):
            if v != v.strip():  # ' test' (a hand edit) would be another split: a missing row, not a bad file
                raise SimpoolBenchError(f"{source}: {_row(source, i)}: {col} {v!r} has spaces around it; expected {v.strip()!r}")
    for i, (m, iou, k) in enumerate(zip(df["metric"], df["iou_threshold"], df["k"])):
        if not _METRIC_RE.match(m):
            raise SimpoolBenchError(f"{source}: {_row(source, i)}: metric name {m!r} must be letters, digits, '_', '.' or '-'")
        if iou is not pd.NA and not 0 < iou <= 100:
            raise SimpoolBenchError(f"{source}: {_row(source, i)}: iou_threshold {iou} is not a percentage in (0, 100]")
        if k is not pd.NA and k < 1:
            raise SimpoolBenchError(f"{source}: {_row(source, i)}: k {k} is not a positive number of neighbours")
        if m == "maxboxacc" and iou is pd.NA:
            raise SimpoolBenchError(f"{source}: {_row(source, i)}: metric 'maxboxacc' needs an iou_threshold (30, 50 or 70)")
        if m == "maxboxacc_v2" and iou is not pd.NA:
            raise SimpoolBenchError(
                f"{source}: {_row(source, i)}: metric 'maxboxacc_v2' is the mean over IoU thresholds; its iou_threshold must be empty"
            )
    for col in RECORD_COLUMNS:
        for i, cell in enumerate(df[col].tolist() if col in df.columns else []):
            try:
                from_json(cell)
            except SimpoolBenchError:
                raise SimpoolBenchError(f"{source}: column '{col}' {_row(source, i)}: {str(cell)[:80]!r} is not a JSON object") from None
    keys = list(KEY_COLUMNS) + (["run_id"] if "run_id" in df.columns else [])
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise SimpoolBenchError(
            f"{source}: duplicate rows for dataset={r['dataset']} split={r['split']} metric={r['metric']} "
            f"iou_threshold={_fmt_iou(r['iou_threshold']) or 'none'} k={_fmt_iou(r['k']) or 'none'}"
        )


def _row(source: str, i: int) -> str:
    """Where row ``i`` (0-based, after the header) of a table is: in a CSV file also its line
    number, as an editor shows it (a hand-edited baseline)."""
    return f"row {i} (line {i + 2})" if source.lower().endswith(".csv") else f"row {i}"


def _fmt_iou(iou: Any) -> str:
    return "" if _is_na(iou) else str(int(iou))


def metric_key(metric: str, iou: Any, k: Any = None) -> str:
    """Column key of a metric: ``maxboxacc@50`` where an IoU threshold applies, ``knn_top1@20``
    where a k applies, else the name."""
    return "@".join([metric] + [str(int(x)) for x in (iou, k) if not _is_na(x)])


#: The columns every table must hold (a table without ``k`` is read with ``k`` empty).
REQUIRED_METRIC_COLUMNS: tuple[str, ...] = tuple(c for c in METRIC_COLUMNS if c != "k")


def upgrade_table(raw: pd.DataFrame, version: int) -> pd.DataFrame:
    """A raw table of schema ``version`` with the columns later versions added, empty (k: None),
    except ``random_init``, which a schema-2 table gives by its ``checkpoint_format`` ('random-init'),
    and ``knn_data_sha256``, which a schema-4 table with k-NN rows gives by its ``data_sha256`` (then
    read empty: it covered the memory bank too); its ``schema_version`` column still says what it
    was written with."""
    raw = raw.copy()
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for col in ADDED_COLUMNS.get(v, ()):
            if col == "random_init" and col not in raw.columns and "checkpoint_format" in raw.columns:
                raw[col] = [None if _is_na(f) else f == "random-init" for f in raw["checkpoint_format"]]
            elif col == "knn_data_sha256" and col not in raw.columns and "data_sha256" in raw.columns:
                knn = _rows_of_knn_runs(raw)
                raw[col] = raw["data_sha256"].astype(object).where(knn, None)
                raw["data_sha256"] = raw["data_sha256"].astype(object).where(~knn, None)
            elif col not in raw.columns:
                raw[col] = None
    return raw


def _rows_of_knn_runs(raw: pd.DataFrame) -> pd.Series:
    """Which rows of a raw table belong to a run with k-NN rows (``knn_top1``/``knn_top5``): its runs
    told apart by ``run_id`` (an all_results.csv holds several), else the whole table is one."""
    is_knn = raw["metric"].map(lambda m: str(m).strip() in KNN_METRIC_NAMES) if "metric" in raw.columns else pd.Series(False, raw.index)
    if "run_id" not in raw.columns:
        return pd.Series(bool(is_knn.any()), raw.index)
    runs = raw["run_id"].astype(object).where(raw["run_id"].notna(), "")
    return runs.isin(set(runs[is_knn]))
