"""Rendering one run's table: values and deltas as shown, Markdown, LaTeX (booktabs), the console."""

from __future__ import annotations

from typing import Any

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
}


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
    for name, v in (
        ("min-scope", p.min_scope),
        ("attention", p.attn_source),
        ("head", p.cls_head),
        ("positions", p.pos_interp),
        ("method", p.method),
        ("image size", p.image_size),
        ("images", p.n_images),
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
            lines.append(f"Command: `{cmd}`")
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
            f"{_fmt_iou(r.iou_threshold)} & {f'{_fmt_iou(r.k)} & ' if has_k else ''}{format_value(r.metric, r.value)} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def console_table(df: pd.DataFrame) -> Table:
    """A run as a rich table; provenance in the caption."""
    title = None
    if "model" in df.columns and len(df):
        title = f"{_py(df['model'].iloc[0]) or '?'} / {_py(df['pool'].iloc[0]) or '?'}"
    table = Table(title=escape(title) if title else None, caption=escape(_provenance_line(df)) or None)
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
