"""A run's files: write them all or none, read them back, and refuse a mixed folder.

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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import SimpoolBenchError
from ..fields import path_argument
from ..files import atomic_write, commit, discard, make_dir, os_reason, sha256_file, write_temp
from .render import to_latex, to_markdown
from .table import (
    _FORMAT_ALIASES,
    EXPORT_FILES,
    OLDEST_READABLE_SCHEMA,
    RECORD_FILES,
    REQUIRED_METRIC_COLUMNS,
    RUN_EXTRA_FILES,
    RUN_MANIFEST,
    SCHEMA_VERSION,
    _coerce,
    _is_na,
    _py,
    _to_int,
    _validate,
    upgrade_table,
)

RESULTS_PATH = "a results file or run folder"
"""What ``read_run``, ``read_baseline`` and ``compare`` take besides a DataFrame."""


def _json_bytes(df: pd.DataFrame) -> bytes:
    records = [{c: _py(v) for c, v in zip(df.columns, row)} for row in df.itertuples(index=False, name=None)]
    for i, r in enumerate(records):  # NaN is null (an empty cell); JSON has no infinity
        for c, v in r.items():
            if isinstance(v, float) and math.isinf(v):
                raise SimpoolBenchError(
                    f"{EXPORT_FILES['json']}: column '{c}' row {i}: {v} cannot be written as JSON; leave json out of the formats"
                )
    return (json.dumps(records, indent=1, allow_nan=False) + "\n").encode("utf-8")


def export_format(name: Any) -> str:
    """One ``formats`` item by its canonical name ('latex' for 'tex'); anything else is one error."""
    f = _FORMAT_ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else None
    if f not in EXPORT_FILES:
        raise SimpoolBenchError(f"unknown export format {name!r}; expected one of {', '.join(EXPORT_FILES)}")
    return f


def write_run(
    df: pd.DataFrame,
    out_dir: str | os.PathLike,
    formats: Iterable[str] = ("parquet", "csv", "json"),
    extra: Mapping[str, bytes] | None = None,
) -> dict[str, Path]:
    """Write a run into ``out_dir``: always ``results.csv`` and ``results.parquet`` (the record),
    plus any of ``json``, ``md``, ``latex`` and the ``extra`` files ({file name: bytes}, e.g. the
    BoxAcc curve), all or none (see the module docstring). Returns {format or file name: path} of
    every file written, ``results.manifest.json`` (under its name) included."""
    wanted = ["csv", "parquet"]
    for f in map(export_format, formats):
        if f not in wanted:
            wanted.append(f)
    df = _coerce(df, "results table")
    _validate(df, "results table")
    out = make_dir(out_dir)
    writers = {
        "csv": lambda: df.to_csv(index=False).encode("utf-8"),
        "parquet": lambda: lambda fh: df.to_parquet(fh, index=False),
        "json": lambda: _json_bytes(df),
        "md": lambda: to_markdown(df).encode("utf-8"),
        "latex": lambda: to_latex(df).encode("utf-8"),
    }
    files: dict[str, Any] = {EXPORT_FILES[f]: writers[f]() for f in wanted}
    for name, data in (extra or {}).items():
        if name in files or name == RUN_MANIFEST or not _plain_file_name(name):
            raise SimpoolBenchError(f"write_run: extra file name {name!r} is taken or not a plain file name")
        files[name] = data
    run_ids = sorted({str(v) for v in df["run_id"].dropna()}) if "run_id" in df.columns else []
    tmps: dict[str, Path] = {}
    try:
        for name, data in files.items():  # 1. every new file complete under a temporary name
            tmps[name] = write_temp(out / name, data)
        manifest = {
            "schema": 1,
            "state": "complete",
            "run_id": run_ids[0] if len(run_ids) == 1 else None,
            "files": {name: sha256_file(tmp) for name, tmp in tmps.items()},
        }
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
    return {**by_format, **{name: out / name for name in (extra or {})}, RUN_MANIFEST: out / RUN_MANIFEST}


def _plain_file_name(name: Any) -> bool:
    """``name`` names a file of the folder itself: a non-empty string, no folder part, not '.' or '..'."""
    return isinstance(name, str) and name not in ("", ".", "..") and "\x00" not in name and Path(name).name == name


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def _run_file_names(out: Path) -> set[str]:
    """The run files in ``out``: those of every known name present."""
    return {n for n in (*EXPORT_FILES.values(), *RUN_EXTRA_FILES) if (out / n).is_file()}


def add_run_file(out_dir: str | os.PathLike, name: str, data: bytes) -> Path:
    """Write one more file into a run folder (atomically) and list it in the folder's complete
    manifest, if it has one (a file replaced but not yet listed is refused by readers, never trusted).
    ``name`` is a plain file name other than those ``write_run`` writes (the results files and the
    manifest, which only a whole ``write_run`` replaces)."""
    if not _plain_file_name(name) or name == RUN_MANIFEST or name in EXPORT_FILES.values():
        raise SimpoolBenchError(f"add_run_file: file name {name!r} is a results file of write_run or not a plain file name")
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
    column, when given) differ from the manifest's run, any other file whose sha256 differs; or the
    file was changed since (a table of the run whose cells were edited: its sha256 differs too). A
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
    for key, value in (("state", state), ("run_id", run_id)):
        if value is not None and not isinstance(value, str):
            raise SimpoolBenchError(f"{man}: '{key}' is {value!r}; expected a string, as simpool-bench writes it; {hint}")
    if state != "complete":
        raise SimpoolBenchError(
            f"{path.parent}: a results write did not finish ({RUN_MANIFEST} says {state!r}): its files may mix two runs; {hint}"
        )
    ids = None if run_ids is None else {str(v) for v in run_ids if not _is_na(v)}
    unchanged = path.name in files and files[path.name] == sha256_file(path)
    if path.name not in files:
        same = False
    elif ids is not None and run_id is not None:
        same = ids == {run_id}
    else:
        same = unchanged
    if not same and ids is None and path.name in files:  # no run_id column: edited or another write's
        raise SimpoolBenchError(
            f"{path}: not the file run {run_id} wrote (its sha256 is not the one {RUN_MANIFEST} records): "
            f"changed since, or left by another write; {hint}"
        )
    if not same:
        raise SimpoolBenchError(
            f"{path}: not a file of run {run_id}, the run {RUN_MANIFEST} records (another write "
            f"left it): the folder mixes results of different writes; {hint}"
        )
    if not unchanged:  # a table of this run whose cells were changed after it was written
        raise SimpoolBenchError(
            f"{path}: changed since run {run_id} wrote it (its sha256 is not the one {RUN_MANIFEST} records): "
            f"its numbers are not the run's; {hint}"
        )


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


def _no_spaced_column_names(raw: pd.DataFrame, path: Path) -> None:
    """A header with spaces around a name (``dataset, split, value``: a hand edit) names the
    column, rather than saying that ``split`` is missing."""
    spaced = [str(c) for c in raw.columns if str(c) != str(c).strip()]
    if spaced:
        raise SimpoolBenchError(
            f"{path}: column name {spaced[0]!r} has spaces around it; expected {spaced[0].strip()!r}"
            + (f" ({len(spaced)} such names)" if len(spaced) > 1 else "")
        )


def read_run(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results table written by ``write_run`` (.parquet, .csv or .json; a directory: its
    results file). A foreign table or another schema version -> SimpoolBenchError."""
    path = path_argument(path, "read_run", RESULTS_PATH)
    raw = _load_frame(path)
    _no_spaced_column_names(raw, path)
    missing = [c for c in REQUIRED_METRIC_COLUMNS if c not in raw.columns]
    if missing:
        raise SimpoolBenchError(f"{path}: not a simpool-bench results table (missing columns: {', '.join(missing)})")
    if "schema_version" not in raw.columns:
        raise SimpoolBenchError(f"{path}: no 'schema_version' column: not a results file written by simpool-bench")
    if len(raw) == 0:  # as _validate says it, before the schema_version check finds no value
        raise SimpoolBenchError(f"{path}: the table has no rows")
    try:
        versions = {_to_int(v) for v in raw["schema_version"].tolist()}
    except (TypeError, ValueError):
        raise SimpoolBenchError(f"{path}: column 'schema_version' is not an integer") from None
    if len(versions) != 1 or any(v is pd.NA for v in versions):
        raise SimpoolBenchError(f"{path}: mixed or empty schema_version values {sorted(map(str, versions))}")
    (version,) = versions
    if version < OLDEST_READABLE_SCHEMA:
        raise SimpoolBenchError(
            f"{path}: older results schema version {version}; this simpool-bench reads versions "
            f"{OLDEST_READABLE_SCHEMA} to {SCHEMA_VERSION} (re-run the evaluation)"
        )
    if version > SCHEMA_VERSION:
        raise SimpoolBenchError(
            f"{path}: newer results schema version {version}; this simpool-bench reads version {SCHEMA_VERSION} (upgrade simpool-bench)"
        )
    df = _coerce(upgrade_table(raw, version), str(path))
    _validate(df, str(path))
    return df


def read_baseline(path: str | os.PathLike) -> pd.DataFrame:
    """A baseline for ``check``: a results file of ours, or any CSV/Parquet/JSON table with at
    least ``dataset, split, metric, iou_threshold, value``."""
    path = path_argument(path, "read_baseline", RESULTS_PATH)
    raw = _load_frame(path)
    if "schema_version" in raw.columns:
        return read_run(path)  # (which checks the column names too)
    _no_spaced_column_names(raw, path)
    missing = [c for c in REQUIRED_METRIC_COLUMNS if c not in raw.columns]
    if missing:
        raise SimpoolBenchError(
            f"{path}: a baseline needs columns {', '.join(REQUIRED_METRIC_COLUMNS)} (and k for k-NN rows); missing {', '.join(missing)}"
        )
    df = _coerce(raw, str(path))
    _validate(df, str(path), provenance=False)
    _known_metrics(df, str(path))
    return df


def _known_metrics(df: pd.DataFrame, source: str) -> None:
    """A hand-made baseline names metrics of the catalog: another name ('maxboxacc_2', 'top-1') can
    never be in a run, and check would call it missing, a regression, for a typo."""
    from ..metrics.catalog import METRICS
    from .table import _row

    names = [m.name for m in METRICS]
    for i, m in enumerate(df["metric"].tolist()):
        if m not in names:
            raise SimpoolBenchError(f"{source}: {_row(source, i)}: unknown metric {m!r}; expected one of {', '.join(names)}")


def _as_table(x: pd.DataFrame | str | os.PathLike, what: str, *, baseline: bool = False) -> tuple[pd.DataFrame, str]:
    if isinstance(x, pd.DataFrame):
        df = _coerce(x, what)
        _validate(df, what, provenance=False)
        return df, what
    path = path_argument(x, f"{what} (or a DataFrame; several runs: compare)", RESULTS_PATH)
    return (read_baseline(path) if baseline else read_run(path)), str(x)
