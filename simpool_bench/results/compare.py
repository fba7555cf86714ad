"""``compare``: runs side by side (one row per run, per checkpoint or per label), with deltas
against a reference row. The renderers are in ``render``.

Inputs are tables or paths, read alike: a run folder, a results file (.parquet/.csv/.json), an
``all_results.csv`` (several runs' tables one after the other), a folder holding one, or a folder
of run folders. Every input is split into runs by ``run_id``. The rows are then:

- ``by="run"``: one per run (the inputs' order, then each input's run order);
- ``by="checkpoint"``: one per checkpoint (its sha256, else its path; no-model baselines share one
  row, a model without weights has a row per architecture), across tasks and datasets;
- ``by="label"``: one per label: ``labels`` name the inputs, else a ``label`` column, else the
  run's own label (model/pool [checkpoint file]).

A row that gets two different runs' values for the same cell is an error (never a silent pick),
unless both runs give the same value on the same data (a k-NN run's ``top1`` beside a plain run's).
Columns: datasets in order of appearance (with ``metrics``: those of the first metric asked for
first), and within a dataset the metrics in ``metrics`` order (else the catalog's), IoU and k ascending.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import SimpoolBenchError
from ..fields import path_argument
from ..metrics import catalog
from .store import RESULTS_PATH, _as_table, read_run
from .table import EXPORT_FILES, KEY_COLUMNS, KNN_METRIC_NAMES, KNOWN_METRICS, RECORD_FILES, _is_na, _py, _to_int, metric_key

By = Literal["run", "checkpoint", "label"]
BY_CHOICES: tuple[str, ...] = ("run", "checkpoint", "label")
#: The file ``suite run`` and the demo write: several runs' tables concatenated.
ALL_RESULTS = "all_results.csv"
NO_MODEL_LABEL = "no-model baseline"
#: The key columns of a metric row; ``k`` (the k of a k-NN row) is read when a table has it.
_KEYS: tuple[str, ...] = tuple(KEY_COLUMNS)
_RUN_FILES = (RECORD_FILES["parquet"], RECORD_FILES["csv"], EXPORT_FILES["json"])


# ------------------------------------------------------------------------------------ metrics
@dataclass(frozen=True)
class MetricSelector:
    """One ``--metrics`` item: a catalog metric, optionally ``@N``: one IoU threshold or one k."""

    name: str
    at: int | None = None

    def matches(self, metric: str, iou: Any, k: Any) -> bool:
        return metric == self.name and (self.at is None or self.at in (iou, k))

    def __str__(self) -> str:
        return self.name if self.at is None else f"{self.name}@{self.at}"


def parse_metrics(spec: str | Sequence[str]) -> tuple[MetricSelector, ...]:
    """``"top1,maxboxacc@50,knn_top1@20"`` (or a list of items) as selectors; a name the catalog
    (``metrics.catalog``) does not know -> SimpoolBenchError listing the known names."""
    if not isinstance(spec, str) and not (isinstance(spec, Sequence) and all(isinstance(s, str) for s in spec)):  # 3: a TypeError
        raise SimpoolBenchError(f"--metrics {spec!r}: expected a comma list or a sequence of metric names (str), e.g. 'top1,maxboxacc@50'")
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[MetricSelector] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        name, at_sign, at = item.partition("@")
        if name not in catalog.BY_NAME:
            raise SimpoolBenchError(f"--metrics: unknown metric {name!r}; known: {', '.join(KNOWN_METRICS)}")
        n = None
        if at_sign:
            try:
                n = int(at)
            except ValueError:
                raise SimpoolBenchError(f"--metrics {item!r}: after '@' comes an IoU threshold or a k (an integer)") from None
        if MetricSelector(name, n) not in out:
            out.append(MetricSelector(name, n))
    if not out:
        raise SimpoolBenchError("--metrics: no metric named")
    return tuple(out)


# ------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class _Run:
    """One run of one input: its rows, where they came from, its input's index."""

    table: pd.DataFrame
    source: str
    input_index: int
    run_id: str | None


def _run_files(path: Path) -> list[Path]:
    """The tables a path stands for: itself (a file or run folder), its all_results.csv, or every
    run folder below it (sorted, hidden folders skipped)."""
    if not path.is_dir():
        return [path]
    if any((path / n).is_file() for n in _RUN_FILES):
        return [path]
    if (path / ALL_RESULTS).is_file():
        return [path / ALL_RESULTS]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(n in files for n in _RUN_FILES):
            found.append(Path(root))
            dirs[:] = []
    if not found:
        raise SimpoolBenchError(f"{path}: folder holds no {', '.join(_RUN_FILES)} or {ALL_RESULTS}, nor any run folder")
    return found


def read_inputs(inputs: Sequence[pd.DataFrame | str | os.PathLike]) -> list[tuple[str, pd.DataFrame]]:
    """(name, table) of every input; a folder of run folders gives one per run folder."""
    out = []
    for i, x in enumerate(inputs):
        if isinstance(x, pd.DataFrame):
            df, name = _as_table(x, f"run {i}")
            out.append((name, df))
        else:
            out += [(str(p), read_run(p)) for p in _run_files(path_argument(x, f"compare: run {i}", RESULTS_PATH))]
    return out


def _split_runs(tables: Sequence[tuple[str, pd.DataFrame]]) -> list[_Run]:
    runs = []
    for i, (source, df) in enumerate(tables):
        if "run_id" not in df.columns:
            runs.append(_Run(df.reset_index(drop=True), source, i, None))
            continue
        ids = df["run_id"].astype(object).where(df["run_id"].notna(), None)
        for rid in dict.fromkeys(ids.tolist()):
            part = df[(ids == rid) if rid is not None else ids.isna()].reset_index(drop=True)
            runs.append(_Run(part, source, i, None if rid is None else str(rid)))
    return runs


# ------------------------------------------------------------------------------------ row keys
def _cell(df: pd.DataFrame, r: int, col: str) -> Any:
    return _py(df[col].iat[r]) if col in df.columns else None


def _default_label(df: pd.DataFrame, i: int) -> str:
    if "model" not in df.columns or _py(df["model"].iloc[0]) is None:
        return f"run {i}"
    p = {c: _cell(df, 0, c) for c in ("model", "pool", "gamma", "checkpoint")}
    label = f"{p['model']}/{p['pool']}"
    if p["gamma"] is not None:
        label += f" γ={float(p['gamma']):g}"
    if p["checkpoint"]:
        label += f" [{Path(p['checkpoint']).name}]"
    return label


def _checkpoint_key(df: pd.DataFrame, r: int, run_index: int) -> tuple[tuple, str]:
    """(group key, default label) of a row by its checkpoint: sha256, else path; no-model
    baselines share one; a model without weights groups by architecture."""
    if "model" not in df.columns or _cell(df, r, "model") is None:
        return ("run", run_index), f"run {run_index}"
    sha, ckpt, model = _cell(df, r, "checkpoint_sha256"), _cell(df, r, "checkpoint"), str(_cell(df, r, "model"))
    row = df.iloc[[r]].reset_index(drop=True)
    if sha:
        return ("sha256", sha), _default_label(row, run_index)
    if ckpt:
        return ("checkpoint", ckpt), _default_label(row, run_index)
    if model.startswith("baseline:"):
        return ("no-model",), NO_MODEL_LABEL
    pool, gamma = _cell(df, r, "pool"), _cell(df, r, "gamma")
    return ("no-weights", model, pool, gamma), f"{_default_label(row, run_index)} (no weights)"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
    return [f"{lab} #{i}" if seen[lab] > 1 else lab for i, lab in enumerate(labels)]


def _key_value(v: Any) -> int | None:
    return None if _is_na(v) else _to_int(v)


def cell_name(metric: str, iou: Any = None, k: Any = None) -> str:
    """Column name of a metric row: ``maxboxacc@50`` (an IoU threshold), ``knn_top1@20`` (a k)."""
    name = metric_key(metric, iou)
    return name if _is_na(k) else f"{name}@{int(k)}"


def _metric_order(metric: str, selectors: Sequence[MetricSelector] | None) -> int:
    if selectors:
        return min(i for i, s in enumerate(selectors) if s.name == metric)
    return KNOWN_METRICS.index(metric) if metric in KNOWN_METRICS else len(KNOWN_METRICS) - 2


# ------------------------------------------------------------------------------------ compare
#: A cell's value, the run it came from (its origin and the input it was read from) and its data
#: (``_data_digest``: two runs agree on a cell only with the same value on the same data).
_Cell = tuple[float, tuple, str, "tuple[str, str] | None"]


def compare(
    runs: Sequence[pd.DataFrame | str | os.PathLike] | pd.DataFrame | str | os.PathLike,
    reference: int | str | None = 0,
    labels: Sequence[str] | None = None,
    *,
    by: By = "run",
    metrics: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Runs side by side: one row per run, checkpoint or label (``by``, see the module docstring;
    index: the row labels), columns a MultiIndex (dataset, split, metric, stat) where metric is
    ``cell_name`` (e.g. ``maxboxacc@50``) and stat is 'value' or, when ``reference`` names a row
    (index or label), 'delta' (value minus the reference row's; NaN where either is missing).

    ``runs``: tables or paths (run folders, results files, all_results.csv), or one of them. ``labels``: by run
    and checkpoint, one per row in order; by label, one per input (the grouping). ``metrics``:
    catalog names, ``name@N`` for one IoU threshold or k (``parse_metrics``); default all.
    ``attrs``: 'reference' (its label), 'by', 'show_split' (a dataset holds several splits, or
    by run), 'unmatched' (the ``metrics`` items no input has), 'mixed_data' (one line per
    dataset/split whose columns hold values of runs of different data, naming them: not
    comparable; the counts aside; k-NN rows are of their ``knn_data_sha256``, the others of ``data_sha256``)."""
    if by not in BY_CHOICES:
        raise SimpoolBenchError(f"compare: by={by!r}; expected one of {', '.join(BY_CHOICES)}")
    if isinstance(runs, (str, os.PathLike, pd.DataFrame)):  # one input (a str is not a list of its characters)
        runs = [runs]
    if not isinstance(runs, Sequence):  # None, a dict, a generator
        raise SimpoolBenchError(
            f"compare: runs: expected a list of run folders, results files or DataFrames (or one), got {type(runs).__module__}.{type(runs).__qualname__}"
        )
    if len(runs) == 0:
        raise SimpoolBenchError("compare needs at least one run")
    if labels is not None and (isinstance(labels, str) or not isinstance(labels, Sequence) or not all(isinstance(x, str) for x in labels)):
        raise SimpoolBenchError(  # 'AB' labelled two rows 'A' and 'B'; 3 was a TypeError
            f"compare: labels {labels!r}: expected a list of str (one per row; by label: one per input) or None"
        )
    selectors = parse_metrics(metrics) if metrics is not None else None
    if by == "label" and labels is not None and len(labels) != len(runs):
        raise SimpoolBenchError(f"compare --by label: {len(labels)} labels given for {len(runs)} inputs")
    inputs = read_inputs(runs)
    if by == "label" and labels is not None and len(inputs) != len(runs):
        raise SimpoolBenchError("compare --by label: labels name the inputs; a folder of run folders cannot take one label each")
    all_runs = _split_runs(inputs)

    groups: dict[tuple, str] = {}  # group key -> default label, in first-appearance order
    cells: dict[tuple, dict[tuple, _Cell]] = {}  # group -> cell key -> its value and where it came from
    datasets: list[tuple[str, str]] = []
    data_of: dict[tuple, dict[tuple[str, str], str]] = {}  # column -> (digest column, digest) -> the first input with it
    matched: set[MetricSelector] = set()
    for j, run in enumerate(all_runs):
        df = run.table
        origin = ("run_id", run.run_id) if run.run_id is not None else ("input", run.input_index, j)
        where = run.source if run.run_id is None else f"{run.source}, run_id {run.run_id}"
        run_label = _default_label(df, j)
        for r in range(len(df)):
            gkey: tuple
            if by == "run":
                gkey, glabel = ("run", j), run_label
            elif by == "checkpoint":
                gkey, glabel = _checkpoint_key(df, r, j)
            else:
                own = _cell(df, r, "label")
                glabel = labels[run.input_index] if labels is not None else (str(own) if own is not None else run_label)
                gkey = ("label", glabel)
            groups.setdefault(gkey, glabel)
            row = {c: _cell(df, r, c) for c in _KEYS}
            iou, k = _key_value(row.get("iou_threshold")), _key_value(row.get("k"))
            hit = [s for s in selectors if s.matches(row["metric"], iou, k)] if selectors is not None else None
            if hit is not None and not hit:
                continue
            matched.update(hit or ())
            ds = (str(row["dataset"]), str(row["split"]))
            if ds not in datasets:
                datasets.append(ds)
            key = (ds, row["metric"], iou, k)
            digest = _data_digest(df, r)
            if digest is not None and row["metric"] not in _COUNTS:
                data_of.setdefault(key, {}).setdefault(digest, where)
            value = float(df["value"].iat[r])
            seen = cells.setdefault(gkey, {}).get(key)
            if seen is not None:
                same_value = seen[0] == value or np.isnan(seen[0]) and np.isnan(value)
                if not (same_value and (seen[1] == origin or (digest is not None and seen[3] == digest))):
                    raise SimpoolBenchError(
                        f"compare --by {by}: row {glabel!r} gets two values for {ds[0]}/{ds[1]} {cell_name(row['metric'], iou, k)}: "
                        f"{seen[0]:g} ({seen[2]}) and {value:g} ({where})"
                        + (", on other data" if same_value else "")
                        + "; compare them --by run, or leave one out"
                    )
            cells[gkey][key] = (value, origin, where, digest)

    row_keys = list(groups)
    if by != "label" and labels is not None:
        if len(labels) != len(row_keys):
            what = "runs" if by == "run" else f"rows ({', '.join(groups.values())})"
            raise SimpoolBenchError(f"compare --by {by}: {len(labels)} labels given for {len(row_keys)} {what}")
        row_labels = [str(x) for x in labels]
        if len(set(row_labels)) != len(row_labels):
            raise SimpoolBenchError(f"compare: labels must be unique, got {row_labels}")
    else:
        row_labels = _unique([groups[g] for g in row_keys])
    ref = _reference_index(reference, row_labels)

    present = {key for g in cells.values() for key in g}
    # datasets in order of appearance; with --metrics, first those of the first metric asked for
    first_metric = {ds: min(_metric_order(c[1], selectors) for c in present if c[0] == ds) for ds in datasets}
    rank = {ds: (first_metric[ds] if selectors else 0, i) for i, ds in enumerate(datasets)}
    keys = sorted(present, key=lambda c: (rank[c[0]], _metric_order(c[1], selectors), c[1], c[2] or -1, c[3] or -1))
    stats = ("value",) if ref is None else ("value", "delta")
    columns = pd.MultiIndex.from_tuples(
        [(*c[0], cell_name(*c[1:]), s) for c in keys for s in stats], names=["dataset", "split", "metric", "stat"]
    )
    data = np.full((len(row_keys), len(columns)), np.nan)
    for j, c in enumerate(keys):
        vals = np.array([cells.get(g, {}).get(c, (np.nan,))[0] for g in row_keys], dtype=np.float64)
        data[:, j * len(stats)] = vals
        if ref is not None:
            data[:, j * len(stats) + 1] = vals - vals[ref]
    out = pd.DataFrame(data, index=pd.Index(row_labels, name=by), columns=columns)
    splits: dict[str, set[str]] = {}
    for ds, split in {c[0] for c in keys}:
        splits.setdefault(ds, set()).add(split)
    out.attrs.update(
        reference=None if ref is None else row_labels[ref],
        by=by,
        show_split=by == "run" or any(len(s) > 1 for s in splits.values()),
        unmatched=[str(s) for s in selectors if s not in matched] if selectors is not None else [],
        mixed_data=_mixed_data(data_of, [c for c in keys if c in data_of]),
    )
    return out


#: Counts every run has (its images, failed, non-finite): they differ with the data, and say so themselves.
_COUNTS = frozenset(m.name for m in (*catalog.RUN_METRICS, *catalog.NONFINITE_METRICS))


def _data_digest(df: pd.DataFrame, r: int) -> tuple[str, str] | None:
    """The data row ``r`` of a table is of, as (column, digest): a k-NN row's ``knn_data_sha256``
    (its evaluation images, then its memory bank), any other row's ``data_sha256`` (the evaluation
    images); a k-NN row without the first (a hand-made table) gives the second. None: not recorded."""
    if df["metric"].iat[r] in KNN_METRIC_NAMES:
        knn = _cell(df, r, "knn_data_sha256")
        if knn:
            return "knn_data_sha256", str(knn)
    sha = _cell(df, r, "data_sha256")
    return ("data_sha256", str(sha)) if sha else None


def _mixed_data(data_of: dict[tuple, dict[tuple[str, str], str]], columns: list[tuple]) -> list[str]:
    """One line per dataset/split whose columns hold values of runs of different data (``_data_digest``),
    naming those columns. A k-NN run's ``top1`` beside a plain run's on the same images is no mix:
    only its ``knn_*`` rows are of its memory bank too."""
    by_split: dict[tuple[str, str], tuple[list[str], dict[tuple[str, str], str]]] = {}
    for c in columns:
        shas = data_of[c]
        if len(shas) > 1:
            names, seen = by_split.setdefault(c[0], ([], {}))
            names.append(cell_name(*c[1:]))
            for sha, where in shas.items():
                seen.setdefault(sha, where)
    lines = []
    for (d, sp), (names, shas) in by_split.items():
        shown = ", ".join(names[:4]) + (f", ... ({len(names)} columns)" if len(names) > 4 else "")
        lines.append(
            f"{d}/{sp}: the runs are of different data ("
            + "; ".join(f"{column} {sha[:12]} in {where}" for (column, sha), where in shas.items())
            + f"): their values in {shown} are not comparable"
        )
    return lines


def _reference_index(reference: int | str | None, labels: list[str]) -> int | None:
    if reference is None:
        return None
    if isinstance(reference, str):
        if reference in labels:
            return labels.index(reference)
        raise SimpoolBenchError(f"compare: reference row {reference!r} does not exist; rows: {', '.join(labels)}")
    if isinstance(reference, bool) or not isinstance(reference, numbers.Integral):  # a Path: a TypeError; 1.0 a float row
        raise SimpoolBenchError(
            f"compare: reference {reference!r}: expected a row index (int), a row label (str) or None, "
            f"got {type(reference).__module__}.{type(reference).__qualname__}"
        )
    if not -len(labels) <= reference < len(labels):
        raise SimpoolBenchError(f"compare: reference run {reference} does not exist ({len(labels)} rows)")
    return reference % len(labels)


def compare_by_checkpoint(
    runs: Sequence[pd.DataFrame | str | os.PathLike],
    metrics: str | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    reference: int | str | None = None,
) -> pd.DataFrame:
    """One row per checkpoint across tasks and datasets (a paper table): ``compare(by="checkpoint")``."""
    return compare(runs, reference=reference, labels=labels, by="checkpoint", metrics=metrics)


def parse_reference(text: str | None) -> int | str | None:
    """``--reference``: a row index, a row label, or 'none' (no deltas)."""
    if text is None or text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        return text
