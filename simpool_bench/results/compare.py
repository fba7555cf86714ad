"""``compare``: runs side by side, with deltas against a reference run, and its renderers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..errors import SimpoolBenchError
from ..metrics import catalog
from .render import _decimals, _md_cell, _metric_label, format_delta, format_value, latex_escape
from .store import _as_table
from .table import KNOWN_METRICS, _is_na, _py, metric_key


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
    (dataset, split, metric, stat) where metric is ``metric_key`` (e.g. ``maxboxacc@50``, ``knn_top1@20``) and
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
            key = (r.dataset, r.split, metric_key(r.metric, r.iou_threshold, r.k))
            order[key] = (
                datasets.index(ds),
                *_metric_order(r.metric),
                -1 if _is_na(r.iou_threshold) else int(r.iou_threshold),
                -1 if _is_na(r.k) else int(r.k),
            )
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
    direction = catalog.direction(metric)
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
    rows: list[list[str]] = [[] for _ in range(len(cmp))]
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
