"""Run records: the tidy results table, its exports, ``compare`` and the CI gate ``check``.

One run is one tidy long table (SPEC section 6): a row per (dataset, split, metric, iou_threshold,
value), with the run's provenance repeated on every row. Accuracies are in percent, as in
wsolevaluation (``num_correct * 100 / cnt``) and LOST. ``maxboxacc`` has one row per IoU
threshold (30/50/70, wsolevaluation's ``iou_threshold_list``); ``maxboxacc_v2`` is their mean and
has no IoU threshold.

The record of a run is ``results.csv`` and ``results.parquet`` (``write_run`` always writes both);
JSON, Markdown and LaTeX (booktabs) are extra exports. ``read_run`` reads CSV, Parquet and JSON
back into an identical table and refuses foreign tables and other schema versions.

A run's files are all old or all new (``write_run``): every new file is first written complete
under a temporary name; only then is ``results.manifest.json`` replaced by one saying "writing",
the old run's files the new one lacks are removed, the new files renamed into place and, last, the
manifest replaced by the complete one (state, run_id, each file's sha256). A failed write before
the renames leaves the old set untouched; an interruption during them leaves the "writing"
manifest. Readers (``read_run``, ``compare``, ``check``, ``visualize``) refuse a file of a folder
whose manifest is not complete or does not list that file with that sha256, naming the folder; a
folder without a manifest (older versions, hand-made baselines) is read as before.

``check`` gates a run against a baseline with absolute per-metric tolerances (percentage points
for accuracies; see ``DEFAULT_TOLERANCES``). Direction: every metric is higher-is-better except
``n_failed`` (lower is better) and the ``exact`` metrics ``n_images`` (must not change) and
``best_threshold`` (a threshold, not a score: reported, never "best", and gated only if a finite
tolerance is given).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import sys
import tomllib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from .errors import SimpoolBenchError
from .files import atomic_write, commit, discard, make_dir, os_reason, sha256_file, write_temp

SCHEMA_VERSION = 2
"""Version of the results table layout; bump on any change of columns or their meaning.
2: ``attn_options``, ``weights``, ``data_config``, ``cls_head`` and ``pos_interp`` provenance columns."""

METRIC_COLUMNS: tuple[str, ...] = ("dataset", "split", "metric", "iou_threshold", "value")
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "run_id", "checkpoint", "checkpoint_sha256", "checkpoint_format", "model", "pool", "gamma",
    "min_scope", "attn_source", "attn_options", "cls_head", "pos_interp", "weights", "data_config", "method", "image_size",
    "n_images", "tool_version",
    "torch_version", "timm_version", "device", "amp", "date", "command", "schema_version",
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
RUN_EXTRA_FILES = ("boxacc_curve.csv", "per_class.csv")
_FORMAT_ALIASES = {"markdown": "md", "tex": "latex", "pq": "parquet"}

# Metric names used by the evaluations, in display order. Others are allowed in a table.
KNOWN_METRICS: tuple[str, ...] = (
    "top1", "top5", "knn_top1", "top1_loc", "gt_known_loc", "maxboxacc", "maxboxacc_v2",
    "maxboxacc_v1", "best_threshold", "corloc", "n_images", "n_failed", "n_nonfinite",
)
METRIC_LABELS = {
    "top1": "Top-1", "top5": "Top-5", "knn_top1": "k-NN Top-1", "top1_loc": "Top-1 Loc",
    "gt_known_loc": "GT-known Loc", "maxboxacc": "MaxBoxAcc", "maxboxacc_v2": "MaxBoxAccV2",
    "maxboxacc_v1": "MaxBoxAccV1", "best_threshold": "Best threshold", "corloc": "CorLoc",
    "n_images": "Images", "n_failed": "Failed", "n_nonfinite": "Non-finite",
}

Direction = Literal["higher", "lower", "exact"]
METRIC_DIRECTIONS: dict[str, Direction] = {"n_failed": "lower", "n_nonfinite": "lower", "n_images": "exact",
                                           "best_threshold": "exact"}
"""Which way is better; metrics not listed are higher-is-better. ``exact``: any move beyond the
tolerance is a regression, and no value is ever 'best'."""

DEFAULT_TOLERANCE = 0.1
"""Absolute tolerance for a metric without its own entry in ``DEFAULT_TOLERANCES``."""
DEFAULT_TOLERANCES: dict[str, float] = {
    # classification, percentage points: 0.1 pp = 50 ImageNet val images; AMP noise is far smaller
    "top1": 0.1, "top5": 0.1, "knn_top1": 0.1, "top1_loc": 0.1, "gt_known_loc": 0.1,
    # localization/discovery, percentage points: maxima over 1000 thresholds move a little more
    "maxboxacc": 0.2, "maxboxacc_v2": 0.2, "maxboxacc_v1": 0.2, "corloc": 0.2,
    # a threshold, not a score: reported, not gated unless given a finite tolerance
    "best_threshold": math.inf,
    # counts: must not change
    "n_images": 0.0, "n_failed": 0.0, "n_nonfinite": 0.0,
}
CHECK_PROVENANCE_FIELDS: tuple[str, ...] = (
    "model", "pool", "gamma", "min_scope", "attn_source", "cls_head", "pos_interp", "method", "image_size", "n_images",
)
"""Provenance a run must share with the baseline (where the baseline records it)."""

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2

_METRIC_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_EPS = 1e-9


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
    def collect(cls, model: str, pool: str, *, checkpoint: str | os.PathLike | None = None,
                argv: Sequence[str] | None = None, **known: Any) -> Provenance:
        """Provenance of a run made now: fills run_id, versions, UTC date, command line, and the
        checkpoint's sha256 (hashed from the file when not given)."""
        import torch

        from . import __version__

        ckpt = None if checkpoint is None else str(checkpoint)
        if ckpt is not None and known.get("checkpoint_sha256") is None and Path(ckpt).is_file():
            known["checkpoint_sha256"] = sha256_file(ckpt)
        argv = list(sys.argv if argv is None else argv)
        defaults = {
            "run_id": uuid.uuid4().hex[:12],
            "tool_version": __version__,
            "torch_version": torch.__version__,
            "timm_version": _timm_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
            rows += [{"dataset": dataset, "split": split, "metric": metric, "iou_threshold": int(i), "value": float(x)}
                     for i, x in v.items()]
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
            conv, dtype = ((_to_float, "float64") if col in _FLOAT_COLUMNS else
                           (_to_int, "Int64") if col in _INT_COLUMNS else (_to_str, "string"))
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
            raise SimpoolBenchError(f"{source}: row {i}: metric 'maxboxacc_v2' is the mean over IoU thresholds; "
                                    "its iou_threshold must be empty")
    keys = list(KEY_COLUMNS) + (["run_id"] if "run_id" in df.columns else [])
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise SimpoolBenchError(
            f"{source}: duplicate rows for dataset={r['dataset']} split={r['split']} metric={r['metric']} "
            f"iou_threshold={_fmt_iou(r['iou_threshold']) or 'none'}"
        )


# ------------------------------------------------------------------------------- write and read
def _json_bytes(df: pd.DataFrame) -> bytes:
    records = [{c: _py(v) for c, v in zip(df.columns, row)} for row in df.itertuples(index=False, name=None)]
    return (json.dumps(records, indent=1, allow_nan=False) + "\n").encode("utf-8")


def write_run(df: pd.DataFrame, out_dir: str | os.PathLike, formats: Iterable[str] = ("parquet", "csv", "json"),
              extra: Mapping[str, bytes] | None = None) -> dict[str, Path]:
    """Write a run into ``out_dir``: always ``results.csv`` and ``results.parquet`` (the record),
    plus any of ``json``, ``md``, ``latex`` and the ``extra`` files ({file name: bytes}, e.g. the
    BoxAcc curve), all or none (see the module docstring). Returns {format or file name: path}."""
    wanted = ["csv", "parquet"]
    for f in formats:
        f = _FORMAT_ALIASES.get(f.lower(), f.lower())
        if f not in EXPORT_FILES:
            raise SimpoolBenchError(f"unknown export format {f!r}; expected one of {', '.join(EXPORT_FILES)}")
        if f not in wanted:
            wanted.append(f)
    df = _coerce(df, "results table")
    _validate(df, "results table")
    out = make_dir(out_dir)
    writers = {
        "csv": lambda: df.to_csv(index=False).encode("utf-8"),
        "parquet": lambda: (lambda fh: df.to_parquet(fh, index=False)),
        "json": lambda: _json_bytes(df),
        "md": lambda: to_markdown(df).encode("utf-8"),
        "latex": lambda: to_latex(df).encode("utf-8"),
    }
    files: dict[str, Any] = {EXPORT_FILES[f]: writers[f]() for f in wanted}
    for name, data in (extra or {}).items():
        if name in files or name == RUN_MANIFEST or Path(name).name != name:
            raise SimpoolBenchError(f"write_run: extra file name {name!r} is taken or not a plain file name")
        files[name] = data
    run_ids = sorted({str(v) for v in df["run_id"].dropna()}) if "run_id" in df.columns else []
    tmps: dict[str, Path] = {}
    try:
        for name, data in files.items():  # 1. every new file complete under a temporary name
            tmps[name] = write_temp(out / name, data)
        manifest = {"schema": 1, "state": "complete", "run_id": run_ids[0] if len(run_ids) == 1 else None,
                    "files": {name: sha256_file(tmp) for name, tmp in tmps.items()}}
        tmps[RUN_MANIFEST] = write_temp(out / RUN_MANIFEST, _manifest_bytes(manifest))
        # 2. the folder is now being written: say so, and drop the old run's files the new one lacks
        atomic_write(out / RUN_MANIFEST, _manifest_bytes({"schema": 1, "state": "writing", "run_id": manifest["run_id"]}))
        for name in _run_file_names(out) - set(files):
            try:
                (out / name).unlink(missing_ok=True)
            except OSError as e:
                raise SimpoolBenchError(f"cannot remove the old {out / name}: {os_reason(e)}") from None
        # 3. the new files into place, the complete manifest last
        for name in list(tmps):
            commit(tmps[name], out / name)
            del tmps[name]
    finally:
        for tmp in tmps.values():
            discard(tmp)
    by_format = {f: out / EXPORT_FILES[f] for f in wanted}
    return {**by_format, **{name: out / name for name in (extra or {})}}


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _run_file_names(out: Path) -> set[str]:
    """The run files in ``out``: those of every known name present."""
    return {n for n in (*EXPORT_FILES.values(), *RUN_EXTRA_FILES) if (out / n).is_file()}


def add_run_file(out_dir: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write one more file into a run folder (atomically) and list it in the folder's complete
    manifest, if it has one (a file replaced but not yet listed is refused by readers, never trusted)."""
    out = Path(out_dir)
    path = atomic_write(out / name, data)
    man = out / RUN_MANIFEST
    if man.is_file():
        try:
            m = json.loads(man.read_text(encoding="utf-8"))
            complete = m.get("state") == "complete" and isinstance(m.get("files"), dict)
        except (OSError, ValueError, AttributeError):
            complete = False
        if complete:
            m["files"][name] = hashlib.sha256(data).hexdigest()
            atomic_write(man, _manifest_bytes(m))
    return path


def verify_run_file(path: str | os.PathLike, run_ids: Iterable[Any] | None = None) -> None:
    """Refuse ``path`` when its folder's ``results.manifest.json`` says a write did not finish, does
    not list the file, or the file is of another write: a table whose ``run_ids`` (its run_id
    column, when given) differ from the manifest's run, any other file whose sha256 differs. A
    folder without a manifest is accepted (older versions, hand-made baselines)."""
    path = Path(path)
    man = path.parent / RUN_MANIFEST
    if not man.is_file():
        return
    hint = f"run the command again, or delete {man} to accept the files as they are"
    try:
        m = json.loads(man.read_text(encoding="utf-8"))
        state, files, run_id = m["state"], dict(m.get("files") or {}), m.get("run_id")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SimpoolBenchError(f"{man}: not a readable results manifest ({type(e).__name__}); {hint}") from None
    if state != "complete":
        raise SimpoolBenchError(f"{path.parent}: a results write did not finish ({RUN_MANIFEST} says {state!r}): "
                                f"its files may mix two runs; {hint}")
    ids = None if run_ids is None else {str(v) for v in run_ids if not _is_na(v)}
    if path.name not in files:
        same = False
    elif ids is not None and run_id is not None:
        same = ids == {run_id}
    else:
        same = files[path.name] == sha256_file(path)
    if not same:
        raise SimpoolBenchError(f"{path}: not a file of run {run_id}, the run {RUN_MANIFEST} records (another write "
                                f"left it): the folder mixes results of different writes; {hint}")


def _load_frame(path: Path) -> pd.DataFrame:
    """A table from .parquet/.csv/.json as read, before any checks (a directory: its results file)."""
    if path.is_dir():
        for name in (RECORD_FILES["parquet"], RECORD_FILES["csv"], EXPORT_FILES["json"]):
            if (path / name).is_file():
                return _load_frame(path / name)
        raise SimpoolBenchError(f"{path}: directory holds no results.parquet, results.csv or results.json")
    if not path.is_file():
        raise SimpoolBenchError(f"results file not found: {path}")
    frame = _read_frame(path)
    verify_run_file(path, frame["run_id"].tolist() if "run_id" in frame.columns else None)
    return frame


def _read_frame(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise SimpoolBenchError(f"{path}: expected a JSON list of row objects, as written by simpool-bench")
            return pd.DataFrame.from_records(data)
    except SimpoolBenchError:
        raise
    except Exception as e:  # pyarrow, pandas and json raise many types for a corrupt file
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SimpoolBenchError(f"{path}: cannot read as {suffix[1:]}: {reason}") from None
    raise SimpoolBenchError(f"{path}: unknown results format {suffix or '(no suffix)'}; expected .parquet, .csv or .json")


def read_run(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results table written by ``write_run`` (.parquet, .csv or .json; a directory: its
    results file). A foreign table or another schema version -> SimpoolBenchError."""
    path = Path(path)
    raw = _load_frame(path)
    missing = [c for c in METRIC_COLUMNS if c not in raw.columns]
    if missing:
        raise SimpoolBenchError(f"{path}: not a simpool-bench results table (missing columns: {', '.join(missing)})")
    if "schema_version" not in raw.columns:
        raise SimpoolBenchError(f"{path}: no 'schema_version' column: not a results file written by simpool-bench")
    try:
        versions = {_to_int(v) for v in raw["schema_version"].tolist()}
    except (TypeError, ValueError):
        raise SimpoolBenchError(f"{path}: column 'schema_version' is not an integer") from None
    if len(versions) != 1 or any(v is pd.NA for v in versions):
        raise SimpoolBenchError(f"{path}: mixed or empty schema_version values {sorted(map(str, versions))}")
    (version,) = versions
    if version < SCHEMA_VERSION:
        raise SimpoolBenchError(f"{path}: older results schema version {version}; this simpool-bench reads "
                                f"version {SCHEMA_VERSION} (re-run the evaluation)")
    if version > SCHEMA_VERSION:
        raise SimpoolBenchError(f"{path}: newer results schema version {version}; this simpool-bench reads "
                                f"version {SCHEMA_VERSION} (upgrade simpool-bench)")
    df = _coerce(raw, str(path))
    _validate(df, str(path))
    return df


def read_baseline(path: str | os.PathLike) -> pd.DataFrame:
    """A baseline for ``check``: a results file of ours, or any CSV/Parquet/JSON table with at
    least ``dataset, split, metric, iou_threshold, value``."""
    path = Path(path)
    raw = _load_frame(path)
    if "schema_version" in raw.columns:
        return read_run(path)
    missing = [c for c in METRIC_COLUMNS if c not in raw.columns]
    if missing:
        raise SimpoolBenchError(f"{path}: a baseline needs columns {', '.join(METRIC_COLUMNS)}; missing {', '.join(missing)}")
    df = _coerce(raw, str(path))
    _validate(df, str(path), provenance=False)
    return df


def _as_table(x: pd.DataFrame | str | os.PathLike, what: str, *, baseline: bool = False) -> tuple[pd.DataFrame, str]:
    if isinstance(x, pd.DataFrame):
        df = _coerce(x, what)
        _validate(df, what, provenance=False)
        return df, what
    return (read_baseline(x) if baseline else read_run(x)), str(x)


# ------------------------------------------------------------------------------------ rendering
def _fmt_iou(iou: Any) -> str:
    return "" if _is_na(iou) else str(int(iou))


def _decimals(metric: str) -> int:
    return 3 if metric == "best_threshold" else 0 if metric in ("n_images", "n_failed") else 2


def format_value(metric: str, value: Any) -> str:
    """A value as shown in tables: 2 decimals (3 for best_threshold, none for counts)."""
    return "–" if _is_na(value) else f"{float(value):.{_decimals(metric)}f}"


def format_delta(metric: str, delta: Any) -> str:
    """A signed difference; tiny non-zero differences keep enough digits to be seen."""
    if _is_na(delta):
        return "–"
    d, n = float(delta), _decimals(metric)
    if d != 0 and abs(d) < 0.5 * 10.0 ** -n:
        return f"{d:+.2g}"
    return f"{d:+.{n}f}"


def metric_key(metric: str, iou: Any) -> str:
    """Column key of a metric: ``maxboxacc@50`` where an IoU threshold applies, else the name."""
    return metric if _is_na(iou) else f"{metric}@{int(iou)}"


def _metric_label(metric: str, iou: Any = None) -> str:
    label = METRIC_LABELS.get(metric, metric)
    return label if _is_na(iou) else f"{label}@{int(iou)}"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "γ": r"$\gamma$"}


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters (and the γ of run labels)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def _md_cell(s: str) -> str:
    return s.replace("|", r"\|").replace("\n", " ")


def _provenance_line(df: pd.DataFrame) -> str:
    if not all(c in df.columns for c in PROVENANCE_COLUMNS) or len(df) == 0:
        return ""
    p = Provenance.from_table(df)
    parts = [f"model {p.model}", f"pool {p.pool}"]
    if p.gamma is not None:
        parts.append(f"gamma {p.gamma:g}")
    for name, v in (("min-scope", p.min_scope), ("attention", p.attn_source), ("head", p.cls_head),
                    ("positions", p.pos_interp), ("method", p.method),
                    ("image size", p.image_size), ("images", p.n_images), ("device", p.device)):
        if v is not None:
            parts.append(f"{name} {v}")
    if p.checkpoint:
        sha = f", sha256 {p.checkpoint_sha256[:12]}" if p.checkpoint_sha256 else ""
        fmt = f", format {p.checkpoint_format}" if p.checkpoint_format else ""
        parts.append(f"checkpoint {p.checkpoint}{sha}{fmt}")
    parts.append(f"simpool-bench {p.tool_version}, torch {p.torch_version}, timm {p.timm_version}")
    parts.append(f"run {p.run_id}, {p.date}")
    return "; ".join(parts)


def to_markdown(df: pd.DataFrame) -> str:
    """A run as a Markdown table, with its provenance and command line underneath."""
    lines = ["| dataset | split | metric | IoU | value |", "|---|---|---|---:|---:|"]
    for r in df.itertuples(index=False):
        lines.append(f"| {_md_cell(r.dataset)} | {_md_cell(r.split)} | {_md_cell(r.metric)} | "
                     f"{_fmt_iou(r.iou_threshold)} | {format_value(r.metric, r.value)} |")
    prov = _provenance_line(df)
    if prov:
        lines += ["", f"Provenance: {_md_cell(prov)}."]
        cmd = _py(df["command"].iloc[0])
        if cmd:
            lines.append(f"Command: `{cmd}`")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    """A run as a LaTeX booktabs tabular (needs ``\\usepackage{booktabs}``)."""
    lines = []
    prov = _provenance_line(df)
    if prov:
        lines.append("% simpool-bench: " + " ".join(prov.splitlines()))
    lines += [r"\begin{tabular}{lllrr}", r"\toprule", r"Dataset & Split & Metric & IoU & Value \\", r"\midrule"]
    for r in df.itertuples(index=False):
        lines.append(f"{latex_escape(r.dataset)} & {latex_escape(r.split)} & {latex_escape(_metric_label(r.metric))} & "
                     f"{_fmt_iou(r.iou_threshold)} & {format_value(r.metric, r.value)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def console_table(df: pd.DataFrame) -> Table:
    """A run as a rich table; provenance in the caption."""
    title = None
    if "model" in df.columns and len(df):
        title = f"{_py(df['model'].iloc[0]) or '?'} / {_py(df['pool'].iloc[0]) or '?'}"
    table = Table(title=escape(title) if title else None, caption=escape(_provenance_line(df)) or None)
    for name, justify in (("dataset", "left"), ("split", "left"), ("metric", "left"), ("IoU", "right"), ("value", "right")):
        table.add_column(name, justify=justify)
    for r in df.itertuples(index=False):
        table.add_row(escape(r.dataset), escape(r.split), escape(r.metric), _fmt_iou(r.iou_threshold),
                      format_value(r.metric, r.value))
    return table


# --------------------------------------------------------------------------------------- compare
def _metric_order(metric: str) -> tuple[int, str]:
    return (KNOWN_METRICS.index(metric), "") if metric in KNOWN_METRICS else (len(KNOWN_METRICS) - 2, metric)


def _default_label(df: pd.DataFrame, i: int) -> str:
    if "model" not in df.columns or _py(df["model"].iloc[0]) is None:
        return f"run {i}"
    p = {c: _py(df[c].iloc[0]) if c in df.columns else None for c in ("model", "pool", "gamma", "checkpoint")}
    label = f"{p['model']}/{p['pool']}"
    if p["gamma"] is not None:
        label += f" γ={p['gamma']:g}"
    if p["checkpoint"]:
        label += f" [{Path(p['checkpoint']).name}]"
    return label


def compare(runs: Sequence[pd.DataFrame], reference: int | None = 0, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Runs side by side: one row per run (index 'run': its label), columns a MultiIndex
    (dataset, split, metric, stat) where metric is ``metric_key`` (e.g. ``maxboxacc@50``) and
    stat is 'value' or, when ``reference`` is a run index, 'delta' (value minus the reference
    run's value; 0 for the reference itself, NaN where either is missing). ``attrs['reference']``
    holds the reference label."""
    if len(runs) == 0:
        raise SimpoolBenchError("compare needs at least one run")
    if labels is not None and len(labels) != len(runs):
        raise SimpoolBenchError(f"compare: {len(labels)} labels given for {len(runs)} runs")
    if reference is not None and not -len(runs) <= reference < len(runs):
        raise SimpoolBenchError(f"compare: reference run {reference} does not exist ({len(runs)} runs)")
    tables = []
    for i, run in enumerate(runs):
        df, _ = _as_table(run, f"run {i}")
        if "run_id" in df.columns and df["run_id"].nunique(dropna=False) > 1:
            raise SimpoolBenchError(f"compare: run {i} holds {df['run_id'].nunique()} runs (run_id values); pass one table per run")
        tables.append(df)
    if labels is None:
        labels = [_default_label(df, i) for i, df in enumerate(tables)]
        seen: dict[str, int] = {}
        for lab in labels:
            seen[lab] = seen.get(lab, 0) + 1
        labels = [f"{lab} #{i}" if seen[lab] > 1 else lab for i, lab in enumerate(labels)]
    if len(set(labels)) != len(labels):
        raise SimpoolBenchError(f"compare: labels must be unique, got {list(labels)}")

    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    datasets: list[tuple[str, str]] = []
    order: dict[tuple[str, str, str], tuple] = {}
    for lab, df in zip(labels, tables):
        for r in df.itertuples(index=False):
            ds = (r.dataset, r.split)
            if ds not in datasets:
                datasets.append(ds)
            key = (r.dataset, r.split, metric_key(r.metric, r.iou_threshold))
            order[key] = (datasets.index(ds), *_metric_order(r.metric), -1 if _is_na(r.iou_threshold) else int(r.iou_threshold))
            cells.setdefault(key, {})[lab] = float(r.value)
    keys = sorted(cells, key=lambda k: order[k])
    stats = ("value",) if reference is None else ("value", "delta")
    columns = pd.MultiIndex.from_tuples([(*k, s) for k in keys for s in stats], names=["dataset", "split", "metric", "stat"])
    data = np.full((len(labels), len(columns)), np.nan)
    ref_label = None if reference is None else labels[reference]
    for j, k in enumerate(keys):
        vals = np.array([cells[k].get(lab, np.nan) for lab in labels], dtype=np.float64)
        data[:, j * len(stats)] = vals
        if ref_label is not None:
            data[:, j * len(stats) + 1] = vals - cells[k].get(ref_label, np.nan)
    out = pd.DataFrame(data, index=pd.Index(list(labels), name="run"), columns=columns)
    out.attrs["reference"] = ref_label
    return out


def _base_metric(key: str) -> str:
    return key.split("@", 1)[0]


def _best_rows(cmp: pd.DataFrame, col: tuple) -> set[int]:
    """Rows holding the best shown value of a value column (ties all count)."""
    metric = _base_metric(col[2])
    direction = METRIC_DIRECTIONS.get(metric, "higher")
    vals = cmp[col].to_numpy(dtype=np.float64)
    if direction == "exact" or np.all(np.isnan(vals)):
        return set()
    shown = np.round(vals, _decimals(metric))
    best = np.nanmax(shown) if direction == "higher" else np.nanmin(shown)
    return {i for i, v in enumerate(shown) if v == best}


def _compare_cells(cmp: pd.DataFrame, bold: tuple[str, str], delta_fmt: tuple[str, str]) -> tuple[list[tuple], list[list[str]]]:
    """(value column keys, rows of rendered cells) shared by the renderers."""
    value_cols = [c for c in cmp.columns if c[3] == "value"]
    ref = cmp.attrs.get("reference")
    rows = [[] for _ in range(len(cmp))]
    for col in value_cols:
        metric = _base_metric(col[2])
        best = _best_rows(cmp, col)
        has_delta = (*col[:3], "delta") in cmp.columns
        for i, label in enumerate(cmp.index):
            v = cmp[col].iloc[i]
            s = format_value(metric, v)
            if i in best:
                s = f"{bold[0]}{s}{bold[1]}"
            if has_delta and label != ref and not _is_na(v):
                s += f" {delta_fmt[0]}({format_delta(metric, cmp[(*col[:3], 'delta')].iloc[i])}){delta_fmt[1]}"
            rows[i].append(s)
    return value_cols, rows


def compare_to_markdown(cmp: pd.DataFrame) -> str:
    """A ``compare`` table as Markdown: best value per column in bold, delta vs the reference in
    parentheses."""
    cols, rows = _compare_cells(cmp, ("**", "**"), ("", ""))
    head = ["run"] + [f"{c[0]}/{c[1]} {c[2]}" for c in cols]
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|---" + "|---:" * len(cols) + "|"]
    ref = cmp.attrs.get("reference")
    for label, cells in zip(cmp.index, rows):
        name = f"{label} (ref)" if label == ref else label
        lines.append("| " + " | ".join([_md_cell(name), *cells]) + " |")
    return "\n".join(lines) + "\n"


def compare_to_latex(cmp: pd.DataFrame) -> str:
    """A ``compare`` table as a booktabs tabular: a header row per dataset/split, best value per
    column in bold, delta vs the reference in small type."""
    cols, rows = _compare_cells(cmp, (r"\textbf{", "}"), (r"{\scriptsize ", "}"))
    groups: list[tuple[str, int]] = []
    for c in cols:
        g = f"{c[0]}/{c[1]}"
        if groups and groups[-1][0] == g:
            groups[-1] = (g, groups[-1][1] + 1)
        else:
            groups.append((g, 1))
    lines = [rf"\begin{{tabular}}{{l{'r' * len(cols)}}}", r"\toprule"]
    top, rules, start = ["Run"], [], 2
    for g, n in groups:
        top.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(g)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" & ".join(top) + r" \\")
    lines.append(" ".join(rules))
    heads = [latex_escape(_metric_label(_base_metric(c[2]), c[2].split("@")[1] if "@" in c[2] else None)) for c in cols]
    lines.append(" & ".join(["", *heads]) + r" \\")
    lines.append(r"\midrule")
    ref = cmp.attrs.get("reference")
    for label, cells in zip(cmp.index, rows):
        name = latex_escape(label) + (" (ref)" if label == ref else "")
        lines.append(" & ".join([name, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def compare_console_table(cmp: pd.DataFrame) -> Table:
    """A ``compare`` table for the console (rich): best value per column in bold."""
    cols, rows = _compare_cells(cmp, ("[bold]", "[/bold]"), ("[dim]", "[/dim]"))
    table = Table(title="simpool-bench compare")
    table.add_column("run")
    for c in cols:
        table.add_column(escape(f"{c[0]}/{c[1]}\n{c[2]}"), justify="right")
    ref = cmp.attrs.get("reference")
    for label, cells in zip(cmp.index, rows):
        table.add_row(escape(f"{label} (ref)" if label == ref else str(label)), *cells)
    return table


# ----------------------------------------------------------------------------------------- check
Status = Literal["ok", "regressed", "improved", "missing", "provenance-mismatch"]


@dataclass(frozen=True)
class CheckRow:
    """One line of a check: a metric (or, for provenance-mismatch, 'provenance:<field>')."""

    dataset: str
    split: str
    metric: str
    iou: int | None
    baseline: float | str | None
    value: float | str | None
    delta: float | None
    tolerance: float | None
    status: Status
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.split} {metric_key(self.metric, self.iou)}"


@dataclass
class CheckReport:
    """The outcome of ``check``: passed, one row per baseline metric (plus provenance
    mismatches), and a Markdown summary for a CI job."""

    passed: bool
    rows: list[CheckRow]
    run_source: str = "run"
    baseline_source: str = "baseline"
    notes: list[str] = field(default_factory=list)

    def by_status(self, status: Status) -> list[CheckRow]:
        return [r for r in self.rows if r.status == status]

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame."""
        return pd.DataFrame([asdict(r) for r in self.rows],
                            columns=[f.name for f in fields(CheckRow)])

    @property
    def markdown(self) -> str:
        """Markdown naming what moved, by how much, against which tolerance."""
        counts = {s: len(self.by_status(s)) for s in ("regressed", "missing", "provenance-mismatch", "improved", "ok")}
        verdict = "PASSED" if self.passed else "FAILED"
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines = [f"### simpool-bench check: {verdict} ({summary})", "",
                 f"Run `{self.run_source}` against baseline `{self.baseline_source}`.", ""]
        lines += [f"- {n}" for n in self.notes]
        if self.notes:
            lines.append("")
        for status, title in (("regressed", "Regressed"), ("missing", "Missing"),
                              ("provenance-mismatch", "Provenance mismatch"), ("improved", "Improved")):
            rows = self.by_status(status)
            if not rows:
                continue
            lines.append(f"**{title}:**")
            for r in rows:
                lines.append(f"- {_describe(r)}")
            lines.append("")
        lines += ["| status | dataset | split | metric | IoU | baseline | value | delta | tolerance |",
                  "|---|---|---|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(" | ".join([
                f"| {r.status}", _md_cell(r.dataset), _md_cell(r.split), _md_cell(r.metric), _fmt_iou(r.iou),
                _cell(r.metric, r.baseline), _cell(r.metric, r.value),
                "" if r.delta is None else format_delta(r.metric, r.delta), _fmt_tol(r.tolerance),
            ]) + " |")
        return "\n".join(lines) + "\n"


def _cell(metric: str, v: float | str | None) -> str:
    if v is None:
        return "–"
    return _md_cell(v) if isinstance(v, str) else format_value(metric, v)


def _fmt_tol(t: float | None) -> str:
    return "" if t is None else "none" if math.isinf(t) else f"±{t:g}"


def _describe(r: CheckRow) -> str:
    if r.status == "provenance-mismatch":
        return f"`{r.dataset}/{r.split}` {r.metric.removeprefix('provenance:')}: baseline `{r.baseline}`, run `{r.value}`"
    if r.status == "missing":
        return f"`{r.key}`: baseline {_cell(r.metric, r.baseline)}, {r.note or 'absent from the run'}"
    return (f"`{r.key}`: {_cell(r.metric, r.baseline)} → {_cell(r.metric, r.value)} "
            f"(delta {format_delta(r.metric, r.delta)}, tolerance {_fmt_tol(r.tolerance)}"
            f"{', lower is better' if METRIC_DIRECTIONS.get(r.metric) == 'lower' else ''}"
            f"{', must not change' if METRIC_DIRECTIONS.get(r.metric) == 'exact' else ''})")


def _validate_tolerances(tol: Mapping[str, Any], source: str) -> dict[str, float]:
    out = {}
    for key, v in tol.items():
        if key != "default":
            metric, _, iou = str(key).partition("@")
            if metric not in KNOWN_METRICS:
                raise SimpoolBenchError(
                    f"{source}: unknown metric {key!r} in tolerances; expected 'default' or one of "
                    f"{', '.join(KNOWN_METRICS)} (optionally '@IOU', e.g. 'maxboxacc@70')"
                )
            if iou and not (iou.isdigit() and 0 < int(iou) <= 100):
                raise SimpoolBenchError(f"{source}: tolerance key {key!r}: IoU threshold after '@' must be an integer in (0, 100]")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise SimpoolBenchError(f"{source}: tolerance {key!r} = {v!r}; expected a non-negative number (absolute, in the metric's unit)")
        out[str(key)] = float(v)
    return out


def load_tolerances(path: str | os.PathLike) -> dict[str, float]:
    """Tolerances from a TOML file: top-level (or a ``[tolerances]`` table of) keys ``default``,
    a metric name (``top1``) or a metric at one IoU threshold (``"maxboxacc@70"``), each an
    absolute tolerance in the metric's unit (``inf`` = not gated)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise SimpoolBenchError(f"tolerances file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise SimpoolBenchError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise SimpoolBenchError(f"cannot read tolerances file {path}: {e.strerror}") from None
    if "tolerances" in doc:
        if not isinstance(doc["tolerances"], dict) or len(doc) != 1:
            raise SimpoolBenchError(f"{path}: 'tolerances' must be the only table when present")
        doc = doc["tolerances"]
    return _validate_tolerances(doc, str(path))


def tolerance_for(metric: str, iou: int | None, tolerances: Mapping[str, float] | None = None,
                  default_tolerance: float = DEFAULT_TOLERANCE) -> float:
    """The tolerance of one metric: given ``metric@iou``, given ``metric``, built-in
    ``DEFAULT_TOLERANCES[metric]``, given ``default``, then ``default_tolerance``."""
    tol = tolerances or {}
    if iou is not None and f"{metric}@{iou}" in tol:
        return tol[f"{metric}@{iou}"]
    if metric in tol:
        return tol[metric]
    if metric in DEFAULT_TOLERANCES:
        return DEFAULT_TOLERANCES[metric]
    return tol.get("default", default_tolerance)


def _judge(metric: str, base: float, value: float, tol: float) -> Status:
    delta = value - base
    direction = METRIC_DIRECTIONS.get(metric, "higher")
    if direction == "exact":
        return "regressed" if abs(delta) > tol + _EPS else "ok"
    gain = delta if direction == "higher" else -delta
    if gain < -(tol + _EPS):
        return "regressed"
    if gain > tol + _EPS:
        return "improved"
    return "ok"


def _prov_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def check(run: pd.DataFrame | str | os.PathLike, baseline: pd.DataFrame | str | os.PathLike,
          tolerances: Mapping[str, float] | None = None, default_tolerance: float = DEFAULT_TOLERANCE,
          provenance_fields: Sequence[str] = CHECK_PROVENANCE_FIELDS) -> CheckReport:
    """Gate ``run`` against ``baseline`` (DataFrames or files). Every baseline metric must be in
    the run (else 'missing') and within its tolerance (``tolerance_for``) in the bad direction
    (else 'regressed'); ``provenance_fields`` the baseline records must equal the run's (else
    'provenance-mismatch'). Metrics of the run absent from the baseline are noted, not gated."""
    tol = _validate_tolerances(tolerances or {}, "tolerances")
    run_df, run_src = _as_table(run, "run")
    base_df, base_src = _as_table(baseline, "baseline", baseline=True)

    def index(df: pd.DataFrame) -> dict[tuple, float]:
        return {(r.dataset, r.split, r.metric, None if _is_na(r.iou_threshold) else int(r.iou_threshold)): float(r.value)
                for r in df.itertuples(index=False)}

    run_vals, base_vals = index(run_df), index(base_df)
    nan = [k for k, v in base_vals.items() if math.isnan(v)]
    if nan:
        d, s_, m, i = nan[0]
        raise SimpoolBenchError(f"baseline {base_src}: value of {d}/{s_} {metric_key(m, i)} is NaN"
                                f"{f' ({len(nan)} NaN values)' if len(nan) > 1 else ''}; a baseline must hold numbers")
    rows: list[CheckRow] = []
    notes: list[str] = []
    run_sets = sorted({(d, s) for d, s, *_ in run_vals})
    base_sets = sorted({(d, s) for d, s, *_ in base_vals})
    if set(base_sets) - set(run_sets):
        notes.append(f"the run covers dataset/split {', '.join(f'{d}/{s}' for d, s in run_sets)}; "
                     f"the baseline expects {', '.join(f'{d}/{s}' for d, s in base_sets)}")

    # provenance, per dataset/split the baseline covers
    for d, s in base_sets:
        bsel = base_df[(base_df["dataset"] == d) & (base_df["split"] == s)]
        rsel = run_df[(run_df["dataset"] == d) & (run_df["split"] == s)]
        if len(rsel) == 0:
            continue
        for f in provenance_fields:
            if f not in bsel.columns:
                continue
            bvals = {_py(v) for v in bsel[f]} - {None}
            if not bvals:
                continue
            rvals = {_py(v) for v in rsel[f]} if f in rsel.columns else {None}
            bval, rval = ", ".join(map(str, sorted(bvals, key=str))), ", ".join(map(str, sorted(rvals, key=str)))
            if len(bvals) != 1 or len(rvals) != 1 or not _prov_equal(next(iter(bvals)), next(iter(rvals))):
                rows.append(CheckRow(d, s, f"provenance:{f}", None, bval, rval, None, None, "provenance-mismatch"))

    for (d, s, m, iou), base in base_vals.items():
        t = tolerance_for(m, iou, tol, default_tolerance)
        value = run_vals.get((d, s, m, iou))
        if value is None:
            rows.append(CheckRow(d, s, m, iou, base, None, None, t, "missing", "absent from the run"))
        elif math.isnan(value):
            rows.append(CheckRow(d, s, m, iou, base, value, None, t, "missing", "the run's value is NaN"))
        else:
            rows.append(CheckRow(d, s, m, iou, base, value, value - base, t, _judge(m, base, value, t)))
    extra = sorted(set(run_vals) - set(base_vals), key=str)
    if extra:
        notes.append(f"{len(extra)} metric(s) of the run are not in the baseline (not gated): "
                     + ", ".join(f"{d}/{s} {metric_key(m, i)}" for d, s, m, i in extra[:10]) + (" …" if len(extra) > 10 else ""))
    passed = not any(r.status in ("regressed", "missing", "provenance-mismatch") for r in rows)
    return CheckReport(passed, rows, run_src, base_src, notes)


def check_console_table(report: CheckReport) -> Table:
    """A check report for the console (rich), failing rows in red."""
    style = {"regressed": "red", "missing": "red", "provenance-mismatch": "red", "improved": "green", "ok": ""}
    table = Table(title=f"simpool-bench check: {'PASSED' if report.passed else 'FAILED'}")
    for name in ("status", "dataset", "split", "metric", "IoU", "baseline", "value", "delta", "tolerance"):
        table.add_column(name, justify="right" if name in ("IoU", "baseline", "value", "delta", "tolerance") else "left")
    for r in report.rows:
        table.add_row(r.status, escape(r.dataset), escape(r.split), escape(r.metric), _fmt_iou(r.iou),
                      escape(_cell(r.metric, r.baseline)), escape(_cell(r.metric, r.value)), "" if r.delta is None else format_delta(r.metric, r.delta),
                      _fmt_tol(r.tolerance), style=style[r.status])
    return table


def append_github_summary(markdown: str, path: str | os.PathLike | None = None) -> bool:
    """Append to the GitHub Actions job summary ($GITHUB_STEP_SUMMARY, or ``path``); False when
    there is none."""
    target = path if path is not None else os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    try:
        with open(target, "a", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as e:
        raise SimpoolBenchError(f"cannot append to GitHub step summary {target}: {e.strerror}") from None
    return True


def exit_code(outcome: CheckReport | BaseException) -> int:
    """Exit status of ``check``: 0 passed, 1 regression (anything failed in the report),
    2 usage or data error (any exception: a crash must never read as a regression)."""
    if isinstance(outcome, CheckReport):
        return EXIT_OK if outcome.passed else EXIT_REGRESSION
    if isinstance(outcome, BaseException):
        return EXIT_ERROR
    raise TypeError(f"exit_code expects a CheckReport or an exception, got {type(outcome).__name__}")
