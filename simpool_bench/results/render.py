"""Rendering tables: values and deltas as shown; one run, and a ``compare`` table, as Markdown, LaTeX
(booktabs), CSV and the console. Files never cut a cell; the console wraps a long one (never "…")."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from rich.console import JustifyMethod
from rich.markup import escape
from rich.table import Table

from ..metrics import catalog
from .table import PROVENANCE_COLUMNS, Provenance, _fmt_iou, _is_na, _py

#: Labels of the metrics in the catalog (``metrics.catalog``); others print their name.
METRIC_LABELS: dict[str, str] = {m.name: m.label for m in catalog.METRICS}


def _decimals(metric: str) -> int:
    return catalog.decimals(metric)


def format_value(metric: str, value: Any) -> str:
    """A value as shown in tables: 2 decimals (3 for best_threshold, none for counts)."""
    return "–" if _is_na(value) else f"{float(value):.{_decimals(metric)}f}"


def format_delta(metric: str, delta: Any) -> str:
    """A signed difference; tiny non-zero differences keep enough digits to be seen."""
    if _is_na(delta):
        return "–"
    d, n = float(delta), _decimals(metric)
    if d != 0 and abs(d) < 0.5 * 10.0**-n:
        return f"{d:+.2g}"
    return f"{d:+.{n}f}"


def _metric_label(metric: str, iou: Any = None) -> str:
    label = METRIC_LABELS.get(metric, metric)
    return label if _is_na(iou) else f"{label}@{int(iou)}"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "γ": r"$\gamma$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "–": "--",
}


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters, and ``< > |`` (other glyphs in LaTeX's default font
    encoding), the γ of run labels and the "–" of a missing value (``--``: plain ASCII)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def _md_cell(s: str) -> str:
    return s.replace("|", r"\|").replace("\n", " ")


def _md_code(s: str) -> str:
    """``s`` as a Markdown code span whole: fenced by more backticks than any run of them in it
    (a shell's `...` in a path), with a space inside where it starts or ends with one (CommonMark)."""
    fence = "`" * (max(map(len, re.findall("`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _provenance_line(df: pd.DataFrame) -> str:
    if not all(c in df.columns for c in PROVENANCE_COLUMNS) or len(df) == 0:
        return ""
    p = Provenance.from_table(df)
    parts = [f"model {p.model}", f"pool {p.pool}"]
    if p.gamma is not None:
        parts.append(f"gamma {p.gamma:g}")
    for name, v in (
        ("min-scope", p.min_scope),
        ("attention", p.attn_source),
        ("head", p.cls_head),
        ("positions", p.pos_interp),
        ("method", p.method),
        ("image size", p.image_size),
        ("images", p.n_images),
        ("data sha256", p.data_sha256[:12] if p.data_sha256 else None),
        ("k-NN data sha256", p.knn_data_sha256[:12] if p.knn_data_sha256 else None),
        ("device", p.device),
    ):
        if v is not None:
            parts.append(f"{name} {v}")
    if p.checkpoint:
        sha = f", sha256 {p.checkpoint_sha256[:12]}" if p.checkpoint_sha256 else ""
        fmt = f", format {p.checkpoint_format}" if p.checkpoint_format else ""
        parts.append(f"checkpoint {p.checkpoint}{sha}{fmt}")
    parts.append(f"simpool-bench {p.tool_version}, torch {p.torch_version}, timm {p.timm_version}")
    parts.append(f"run {p.run_id}, {p.date}")
    return "; ".join(parts)


def _has_k(df: pd.DataFrame) -> bool:
    """The table has k-NN rows: show a ``k`` column (tables without one look as before)."""
    return "k" in df.columns and bool(df["k"].notna().any())


def to_markdown(df: pd.DataFrame) -> str:
    """A run as a Markdown table, with its provenance and command line underneath."""
    has_k = _has_k(df)
    lines = [f"| dataset | split | metric | IoU |{' k |' if has_k else ''} value |", f"|---|---|---|---:|{'---:|' if has_k else ''}---:|"]
    for r in df.itertuples(index=False):
        lines.append(
            f"| {_md_cell(r.dataset)} | {_md_cell(r.split)} | {_md_cell(r.metric)} | "
            f"{_fmt_iou(r.iou_threshold)} |{f' {_fmt_iou(r.k)} |' if has_k else ''} {format_value(r.metric, r.value)} |"
        )
    prov = _provenance_line(df)
    if prov:
        lines += ["", f"Provenance: {_md_cell(prov)}."]
        cmd = _py(df["command"].iloc[0])
        if cmd:
            lines.append(f"Command: {_md_code(cmd)}")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    """A run as a LaTeX booktabs tabular (needs ``\\usepackage{booktabs}``)."""
    lines = []
    prov = _provenance_line(df)
    if prov:
        lines.append("% simpool-bench: " + " ".join(prov.splitlines()))
    has_k = _has_k(df)
    lines += [
        r"\begin{tabular}{lllrr" + ("r}" if has_k else "}"),
        r"\toprule",
        r"Dataset & Split & Metric & IoU & " + ("k & " if has_k else "") + r"Value \\",
        r"\midrule",
    ]
    for r in df.itertuples(index=False):
        lines.append(
            f"{latex_escape(r.dataset)} & {latex_escape(r.split)} & {latex_escape(_metric_label(r.metric))} & "
            f"{_fmt_iou(r.iou_threshold)} & {f'{_fmt_iou(r.k)} & ' if has_k else ''}{latex_escape(format_value(r.metric, r.value))} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def provenance_line(df: pd.DataFrame) -> str:
    """A run's provenance in one line (model, pooling, data, checkpoint, versions, run id); empty
    for a table without provenance columns."""
    return _provenance_line(df)


def console_table(df: pd.DataFrame, caption: bool = True) -> Table:
    """A run as a rich table; provenance in the caption (``caption=False``: left out, for the
    caller to print it whole: a caption folds long paths at the table's width)."""
    title = None
    if "model" in df.columns and len(df):
        title = f"{_py(df['model'].iloc[0]) or '?'} / {_py(df['pool'].iloc[0]) or '?'}"
    table = Table(title=escape(title) if title else None, caption=(escape(_provenance_line(df)) or None) if caption else None)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("dataset", "left"),
        ("split", "left"),
        ("metric", "left"),
        ("IoU", "right"),
        *((("k", "right"),) if _has_k(df) else ()),
        ("value", "right"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    for r in df.itertuples(index=False):
        k = (_fmt_iou(r.k),) if _has_k(df) else ()
        table.add_row(escape(r.dataset), escape(r.split), escape(r.metric), _fmt_iou(r.iou_threshold), *k, format_value(r.metric, r.value))
    return table


# ------------------------------------------------------------------------------------ compare tables
def _base_metric(key: str) -> str:
    return key.split("@", 1)[0]


def _best_rows(cmp: pd.DataFrame, col: tuple) -> set[int]:
    """Rows holding the best shown value of a value column (ties all count)."""
    metric = _base_metric(col[2])
    direction = catalog.direction(metric)
    vals = cmp[col].to_numpy(dtype=np.float64)
    if direction == "exact" or np.all(np.isnan(vals)):
        return set()
    shown = np.array([np.nan if np.isnan(v) else float(format_value(metric, v)) for v in vals])  # as printed
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


def _dataset_head(cmp: pd.DataFrame, col: tuple) -> str:
    """``cub/test`` (by run, or a dataset with several splits) or ``cub``."""
    return f"{col[0]}/{col[1]}" if cmp.attrs.get("show_split", True) else str(col[0])


def _row_name(cmp: pd.DataFrame, label: Any) -> str:
    return f"{label} (ref)" if label == cmp.attrs.get("reference") else str(label)


def compare_to_markdown(cmp: pd.DataFrame) -> str:
    """A ``compare`` table as Markdown: best value per column in bold, delta vs the reference in
    parentheses."""
    cols, rows = _compare_cells(cmp, ("**", "**"), ("", ""))
    head = [cmp.index.name or "run"] + [f"{_dataset_head(cmp, c)} {c[2]}" for c in cols]
    lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|---" + "|---:" * len(cols) + "|"]
    for label, cells in zip(cmp.index, rows):
        lines.append("| " + " | ".join([_md_cell(_row_name(cmp, label)), *cells]) + " |")
    return "\n".join(lines) + "\n"


def compare_to_latex(cmp: pd.DataFrame) -> str:
    """A ``compare`` table as a booktabs tabular: a header row per dataset(/split), best value per
    column in bold, delta vs the reference in small type."""
    cols, rows = _compare_cells(cmp, (r"\textbf{", "}"), (r"{\scriptsize ", "}"))
    groups: list[tuple[str, int]] = []
    for c in cols:
        g = _dataset_head(cmp, c)
        if groups and groups[-1][0] == g:
            groups[-1] = (g, groups[-1][1] + 1)
        else:
            groups.append((g, 1))
    lines = [rf"\begin{{tabular}}{{l{'r' * len(cols)}}}", r"\toprule"]
    top, rules, start = [str(cmp.index.name or "run").capitalize()], [], 2
    for g, n in groups:
        top.append(rf"\multicolumn{{{n}}}{{c}}{{{latex_escape(g)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    lines.append(" & ".join(top) + r" \\")
    lines.append(" ".join(rules))
    heads = [latex_escape(_metric_label(_base_metric(c[2])) + (c[2][len(_base_metric(c[2])) :])) for c in cols]
    lines.append(" & ".join(["", *heads]) + r" \\")
    lines.append(r"\midrule")
    ref = cmp.attrs.get("reference")
    for label, cells in zip(cmp.index, rows):
        name = latex_escape(str(label)) + (" (ref)" if label == ref else "")
        lines.append(" & ".join([name, *(c.replace("–", "--") for c in cells)]) + r" \\")  # a missing value: ASCII
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def compare_to_csv(cmp: pd.DataFrame) -> str:
    """A ``compare`` table as CSV, every value in full precision: the row label, then per column
    ``DATASET[/SPLIT] METRIC`` (and ``... delta`` against the reference)."""
    out = pd.DataFrame(index=range(len(cmp)))
    out[cmp.index.name or "run"] = [str(x) for x in cmp.index]
    for col in cmp.columns:
        head = f"{_dataset_head(cmp, col)} {col[2]}" + ("" if col[3] == "value" else " delta")
        out[head] = cmp[col].to_numpy(dtype=np.float64)
    return out.to_csv(index=False, float_format=None)


def compare_console_table(cmp: pd.DataFrame, width: int | None = None) -> Table:
    """A ``compare`` table for the console (rich): best value per column in bold; a cell too wide
    for the terminal wraps, it is never cut. A row per run; where that is wider than ``width``
    (the console's) and a row per metric is narrower, a row per metric and a column per run (two
    runs of a dozen metrics no longer wrap into columns a few characters wide)."""
    cols, rows = _compare_cells(cmp, ("[bold]", "[/bold]"), ("[dim]", "[/dim]"))
    names = [escape(_row_name(cmp, label)) for label in cmp.index]
    table = Table(title="simpool-bench compare")
    table.add_column(cmp.index.name or "run", overflow="fold")
    for c in cols:
        table.add_column(escape(f"{_dataset_head(cmp, c)}\n{c[2]}"), justify="right", overflow="fold")
    for name, cells in zip(names, rows):
        table.add_row(name, *cells)
    if width is None or (wide := _natural_width(table)) <= width:
        return table
    tall = Table(title="simpool-bench compare")
    tall.add_column("metric", overflow="fold")
    for name in names:
        tall.add_column(name, justify="right", overflow="fold")
    for j, c in enumerate(cols):
        tall.add_row(escape(f"{_dataset_head(cmp, c)} {c[2]}"), *(cells[j] for cells in rows))
    return tall if _natural_width(tall) < wide else table


def _natural_width(table: Table) -> int:
    """The width ``table`` takes unwrapped."""
    from rich.console import Console
    from rich.measure import Measurement

    wide = Console(width=100_000)
    return Measurement.get(wide, wide.options, table).maximum
