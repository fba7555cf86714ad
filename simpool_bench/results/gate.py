"""``check``: the CI gate of a run against a baseline, with absolute per-metric tolerances.

Tolerances are in the metric's unit (percentage points for accuracies); the defaults and the
direction of each metric come from ``metrics.catalog``, where the accumulators declare their
metrics: every metric is higher-is-better except ``n_failed`` and ``n_nonfinite`` (lower is better)
and the ``exact`` metrics ``n_images`` (must not change) and ``best_threshold`` (a threshold, not a
score: reported, never "best", and gated only if a finite tolerance is given).

A run must also share the baseline's protocol and transform records, parameter by parameter
(``results.protocols``): a difference is a 'protocol-mismatch' naming the parameter and both
values, unless accepted by name (``allow_protocol_change``, the CLI's ``--allow-protocol-change``).
A baseline without records (schema 2, hand-made) is noted, not failed. The k-NN parameters are
noted, not gated, against a baseline without k-NN rows, and so is the bank's folder where the
baseline records the bank's data (``knn_data_sha256``, a provenance field).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..errors import SimpoolBenchError
from ..fields import path_argument
from ..files import read_toml
from ..metrics import catalog
from ..metrics.catalog import Direction
from .protocols import KNN_PARAMETERS, PROTOCOL_PARAMETERS, has_bank, has_record, parameter_changes
from .render import _md_cell, format_delta, format_value
from .store import _as_table
from .table import KNN_METRIC_NAMES, KNOWN_METRICS, _fmt_iou, _is_na, _py, metric_key

METRIC_DIRECTIONS: dict[str, Direction] = {m.name: m.direction for m in catalog.METRICS}
"""Which way is better, per metric of the catalog; a metric not listed is higher-is-better."""
DEFAULT_TOLERANCE = 0.1
"""Absolute tolerance for a metric without its own entry in ``DEFAULT_TOLERANCES``."""
DEFAULT_TOLERANCES: dict[str, float] = {m.name: m.tolerance for m in catalog.METRICS}
"""The built-in tolerance of each metric of the catalog (``MetricSpec.tolerance``)."""
CHECK_PROVENANCE_FIELDS: tuple[str, ...] = (
    "model",
    "pool",
    "gamma",
    "min_scope",
    "attn_source",
    "cls_head",
    "pos_interp",
    "method",
    "image_size",
    "n_images",
    "data_sha256",
    "knn_data_sha256",
    "random_init",
)
"""Provenance a run must share with the baseline (where the baseline records it); the protocol
and transform records are compared parameter by parameter (``results.protocols``)."""

#: Counts a run writes only when they are not zero (``run_records.finish_run``): a run with rows of a
#: dataset/split but none of these has counted 0 there.
ZERO_WHEN_ABSENT: tuple[str, ...] = ("n_failed", "n_nonfinite")
EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
_EPS = 1e-9

Status = Literal["ok", "regressed", "improved", "missing", "provenance-mismatch", "protocol-mismatch"]
_FAILING: tuple[Status, ...] = ("regressed", "missing", "provenance-mismatch", "protocol-mismatch")


@dataclass(frozen=True)
class CheckRow:
    """One line of a check: a metric (or, for provenance-mismatch, 'provenance:<field>'; for
    protocol-mismatch, 'protocol:<name>' or 'transform:<name>', ``value``/``baseline`` as shown).
    ``k``: the k of a k-NN row."""

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
    k: int | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.split} {metric_key(self.metric, self.iou, self.k)}"

    @property
    def shown_metric(self) -> str:
        """The metric cell: the name, with ``@k`` for a k-NN row (the IoU has its own column)."""
        return metric_key(self.metric, None, self.k)


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
        return pd.DataFrame([asdict(r) for r in self.rows], columns=[f.name for f in fields(CheckRow)])

    @property
    def markdown(self) -> str:
        """Markdown naming what moved, by how much, against which tolerance."""
        counts = {s: len(self.by_status(s)) for s in (*_FAILING, "improved", "ok")}
        verdict = "PASSED" if self.passed else "FAILED"
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines = [
            f"### simpool-bench check: {verdict} ({summary})",
            "",
            f"Run `{self.run_source}` against baseline `{self.baseline_source}`.",
            "",
        ]
        lines += [f"- {n}" for n in self.notes]
        if self.notes:
            lines.append("")
        titles: tuple[tuple[Status, str], ...] = (
            ("regressed", "Regressed"),
            ("missing", "Missing"),
            ("provenance-mismatch", "Provenance mismatch"),
            ("protocol-mismatch", "Protocol mismatch"),
            ("improved", "Improved"),
        )
        for status, title in titles:
            rows = self.by_status(status)
            if not rows:
                continue
            lines.append(f"**{title}:**")
            for r in rows:
                lines.append(f"- {_describe(r)}")
            lines.append("")
        lines += [
            "| status | dataset | split | metric | IoU | baseline | value | delta | tolerance |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            lines.append(
                " | ".join(
                    [
                        f"| {r.status}",
                        _md_cell(r.dataset),
                        _md_cell(r.split),
                        _md_cell(r.shown_metric),
                        _fmt_iou(r.iou),
                        _cell(r.metric, r.baseline),
                        _cell(r.metric, r.value),
                        "" if r.delta is None else format_delta(r.metric, r.delta),
                        _fmt_tol(r.tolerance),
                    ]
                )
                + " |"
            )
        return "\n".join(lines) + "\n"


def _cell(metric: str, v: float | str | None) -> str:
    if v is None:
        return "–"
    return _md_cell(v) if isinstance(v, str) else format_value(metric, v)


def _listed(values: set[Any]) -> str:
    """A provenance field's values for a message: sorted, comma-separated; a missing one (a run
    without the field, or a pool without gamma) as 'none', not Python's 'None'."""
    return ", ".join("none" if v is None else str(v) for v in sorted(values, key=str))


def _fmt_tol(t: float | None) -> str:
    return "" if t is None else "none" if math.isinf(t) else f"±{t:g}"


def _describe(r: CheckRow) -> str:
    if r.status == "provenance-mismatch":
        return f"`{r.dataset}/{r.split}` {r.metric.removeprefix('provenance:')}: baseline `{r.baseline}`, run `{r.value}`"
    if r.status == "protocol-mismatch":
        record, _, name = r.metric.partition(":")
        return f"`{r.dataset}/{r.split}` {name}: run {r.value}, baseline {r.baseline} ({record})"
    if r.status == "missing":
        return f"`{r.key}`: baseline {_cell(r.metric, r.baseline)}, {r.note or 'absent from the run'}"
    return (
        f"`{r.key}`: {_cell(r.metric, r.baseline)} → {_cell(r.metric, r.value)} "
        f"(delta {format_delta(r.metric, r.delta)}, tolerance {_fmt_tol(r.tolerance)}"
        f"{', lower is better' if METRIC_DIRECTIONS.get(r.metric) == 'lower' else ''}"
        f"{', must not change' if METRIC_DIRECTIONS.get(r.metric) == 'exact' else ''})"
    )


def _validate_tolerances(tol: Mapping[str, Any], source: str) -> dict[str, float]:
    out = {}
    for key, v in tol.items():
        if key != "default":
            metric, _, iou = str(key).partition("@")
            if metric not in KNOWN_METRICS:
                raise SimpoolBenchError(
                    f"{source}: unknown metric {key!r} in tolerances; expected 'default' or one of "
                    f"{', '.join(KNOWN_METRICS)} (optionally '@IOU', e.g. 'maxboxacc@70', or '@K' for k-NN, e.g. 'knn_top1@20')"
                )
            if iou and metric in KNN_METRIC_NAMES:  # keyed by k: a tolerance 'knn_top1@200' is valid
                if not (iou.isdigit() and int(iou) > 0):
                    raise SimpoolBenchError(f"{source}: tolerance key {key!r}: the k after '@' must be a positive integer")
            elif iou and not (iou.isdigit() and 0 < int(iou) <= 100):
                raise SimpoolBenchError(f"{source}: tolerance key {key!r}: IoU threshold after '@' must be an integer in (0, 100]")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > sys.float_info.max:  # float(v): OverflowError
            raise SimpoolBenchError(
                f"{source}: tolerance {key!r}: an integer of {len(str(abs(v)))} digits; write inf for a metric not gated"
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise SimpoolBenchError(f"{source}: tolerance {key!r} = {v!r}; expected a non-negative number (absolute, in the metric's unit)")
        out[str(key)] = float(v)
    return out


def parse_tolerance(item: str) -> tuple[str, float]:
    """One ``METRIC=NUMBER`` override (``check --tol``), checked as a tolerances file's key and value."""
    name, sep, value = item.partition("=")
    try:
        number = float(value) if sep else math.nan
    except ValueError:
        number = math.nan
    if math.isnan(number):
        raise SimpoolBenchError(f"--tol {item!r}: expected METRIC=NUMBER, e.g. top1=0.2")
    ((key, tol),) = _validate_tolerances({name.strip(): number}, f"--tol {item!r}").items()
    return key, tol


def load_tolerances(path: str | os.PathLike) -> dict[str, float]:
    """Tolerances from a TOML file: top-level (or a ``[tolerances]`` table of) keys ``default``,
    a metric name (``top1``), a metric at one IoU threshold (``"maxboxacc@70"``) or a k-NN metric
    at one k (``"knn_top1@20"``), each an absolute tolerance in the metric's unit (``inf`` = not gated)."""
    path = path_argument(path, "load_tolerances", "a TOML file")
    doc = read_toml(path, "tolerances file")
    if "tolerances" in doc:
        if not isinstance(doc["tolerances"], dict) or len(doc) != 1:
            raise SimpoolBenchError(f"{path}: 'tolerances' must be the only table when present")
        doc = doc["tolerances"]
    return _validate_tolerances(doc, str(path))


def tolerance_for(
    metric: str,
    iou: int | None,
    tolerances: Mapping[str, float] | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    k: int | None = None,
) -> float:
    """The tolerance of one metric: given ``metric@iou`` (``metric@k`` for a k-NN row), given
    ``metric``, then for a score (higher is better: accuracies, MaxBoxAcc, CorLoc, any metric the
    catalog does not know) the given ``default``; then the built-in ``DEFAULT_TOLERANCES[metric]``,
    then ``default_tolerance``. Counts and the best threshold keep their built-in tolerance unless
    named: a ``default`` in points is not a count of images."""
    tol = tolerances or {}
    iou = iou if iou is not None else k
    if iou is not None and f"{metric}@{iou}" in tol:
        return tol[f"{metric}@{iou}"]
    if metric in tol:
        return tol[metric]
    if "default" in tol and catalog.direction(metric) == "higher":
        return tol["default"]
    if metric in DEFAULT_TOLERANCES:
        return DEFAULT_TOLERANCES[metric]
    return default_tolerance


def _judge(metric: str, base: float, value: float, tol: float) -> Status:
    delta = value - base
    direction = catalog.direction(metric)
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


def check(
    run: pd.DataFrame | str | os.PathLike,
    baseline: pd.DataFrame | str | os.PathLike,
    tolerances: Mapping[str, float] | str | os.PathLike | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    provenance_fields: Sequence[str] = CHECK_PROVENANCE_FIELDS,
    allow_protocol_change: Sequence[str] = (),
    run_source: str | None = None,
    baseline_source: str | None = None,
) -> CheckReport:
    """Gate ``run`` against ``baseline`` (DataFrames or files). Every baseline metric must be in
    the run (else 'missing') and within its tolerance (``tolerance_for``) in the bad direction
    (else 'regressed'); ``provenance_fields`` the baseline records must equal the run's (else
    'provenance-mismatch'); so must every protocol and transform parameter (else
    'protocol-mismatch'), but for the names in ``allow_protocol_change`` (protocol, transform or
    provenance field names; their changes are noted). Metrics of the run absent from the baseline
    are noted, not gated. ``tolerances``: {key: tolerance} (``load_tolerances``'s keys) or the TOML
    file itself. ``run_source``/``baseline_source`` name the tables in the summary
    (default: the file paths, or 'run'/'baseline' for DataFrames)."""
    if isinstance(tolerances, (str, os.PathLike)):  # the file, as ``check --tolerances FILE``
        tolerances = load_tolerances(tolerances)
    elif tolerances is not None and not isinstance(tolerances, Mapping):
        raise SimpoolBenchError(
            f"check: tolerances {tolerances!r}: expected a dict such as {{'default': 0.5, 'maxboxacc@70': 1.0}} or a TOML file"
        )
    tol = _validate_tolerances(tolerances or {}, "tolerances")
    if isinstance(default_tolerance, bool) or not isinstance(default_tolerance, (int, float)) or not default_tolerance >= 0:
        raise SimpoolBenchError(
            f"check: default_tolerance {default_tolerance!r}: expected a non-negative number (absolute, in the metric's unit)"
        )
    if isinstance(allow_protocol_change, str):  # one name, or a comma list as --allow-protocol-change takes it: not its characters
        allow_protocol_change = [n.strip() for n in allow_protocol_change.split(",") if n.strip()]
    allowed = _validate_allowed(allow_protocol_change, provenance_fields)
    run_df, run_src = _as_table(run, "run")
    base_df, base_src = _as_table(baseline, "baseline", baseline=True)
    run_src, base_src = run_source or run_src, baseline_source or base_src

    def index(df: pd.DataFrame, source: str, what: str) -> dict[tuple, float]:
        out: dict[tuple, float] = {}
        run_of: dict[tuple, str] = {}
        for r in df.itertuples(index=False):
            key = (
                r.dataset,
                r.split,
                r.metric,
                None if _is_na(r.iou_threshold) else int(r.iou_threshold),
                None if _is_na(r.k) else int(r.k),
            )
            run_id = str(getattr(r, "run_id", ""))
            if key in out:  # two values for one metric: which one is meant is not ours to guess
                d, s_, m, i, kk = key
                raise SimpoolBenchError(
                    f"{what} {source}: two values of {d}/{s_} {metric_key(m, i, kk)} (run_id {', '.join(sorted({run_of[key], run_id}))}); "
                    f"a {what} is one run's table: pick one run (e.g. rows of one run_id or one label of all_results.csv)"
                )
            out[key], run_of[key] = float(r.value), run_id
        return out

    run_vals, base_vals = index(run_df, run_src, "run"), index(base_df, base_src, "baseline")
    nan = [k for k, v in base_vals.items() if not math.isfinite(v)]
    if nan:
        d, s_, m, i, kk = nan[0]
        raise SimpoolBenchError(
            f"baseline {base_src}: value of {d}/{s_} {metric_key(m, i, kk)} is {'NaN' if math.isnan(base_vals[nan[0]]) else base_vals[nan[0]]}"
            f"{f' ({len(nan)} values not finite)' if len(nan) > 1 else ''}; a baseline must hold finite numbers"
        )
    rows: list[CheckRow] = []
    notes: list[str] = []
    run_sets = sorted({(d, s) for d, s, *_ in run_vals})  # keys: dataset, split, metric, iou, k
    base_sets = sorted({(d, s) for d, s, *_ in base_vals})
    if set(base_sets) - set(run_sets):
        notes.append(
            f"the run covers dataset/split {', '.join(f'{d}/{s}' for d, s in run_sets)}; "
            f"the baseline expects {', '.join(f'{d}/{s}' for d, s in base_sets)}"
        )

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
            bval, rval = _listed(bvals), _listed(rvals)
            if len(bvals) != 1 or len(rvals) != 1 or not _prov_equal(next(iter(bvals)), next(iter(rvals))):
                if f in allowed:
                    notes.append(f"accepted provenance change (`{d}/{s}`) {f}: run {rval}, baseline {bval}")
                else:
                    rows.append(CheckRow(d, s, f"provenance:{f}", None, bval, rval, None, None, "provenance-mismatch"))
        rows += _protocol_rows(d, s, rsel, bsel, allowed, notes)
    if base_sets and not has_record(base_df):
        notes.append(f"the baseline {base_src} has no protocol record (schema 2 or a hand-made table): protocol and transform not checked")

    for (d, s, m, iou, k), base in base_vals.items():
        t = tolerance_for(m, iou, tol, default_tolerance, k)
        value = run_vals.get((d, s, m, iou, k))
        if value is None and m in ZERO_WHEN_ABSENT and (d, s) in run_sets:
            value = 0.0
        if value is None:
            rows.append(CheckRow(d, s, m, iou, base, None, None, t, "missing", _absent(run_vals, d, s, m, iou, k), k))
        elif math.isnan(value):
            rows.append(CheckRow(d, s, m, iou, base, value, None, t, "missing", "the run's value is NaN", k))
        else:
            rows.append(CheckRow(d, s, m, iou, base, value, value - base, t, _judge(m, base, value, t), k=k))
    extra = sorted(set(run_vals) - set(base_vals), key=str)
    if extra:
        notes.append(
            f"{len(extra)} metric(s) of the run are not in the baseline (not gated): "
            + ", ".join(f"{d}/{s} {metric_key(m, i, kk)}" for d, s, m, i, kk in extra[:10])
            + (" …" if len(extra) > 10 else "")
        )
    passed = not any(r.status in _FAILING for r in rows)
    return CheckReport(passed, rows, run_src, base_src, notes)


def _absent(run_vals: Mapping[tuple, float], d: str, s: str, m: str, iou: int | None, k: int | None) -> str:
    """Why a baseline metric is missing; a k-NN row without k (schema 2, or hand-made) that the run
    has at some k is named so, with the run's k: check matches rows by k and guesses none."""
    ks = sorted(rk for rd, rs, rm, ri, rk in run_vals if (rd, rs, rm, ri) == (d, s, m, iou) and rk is not None)
    if k is None and ks:
        return (
            f"absent from the run: the baseline row has no k (a schema-2 or hand-made table) and the run has "
            f"{m} at k = {', '.join(map(str, ks))}; give the baseline row its k, or write the baseline again"
        )
    return "absent from the run"


def _validate_allowed(names: Sequence[str], provenance_fields: Sequence[str]) -> frozenset[str]:
    """The names ``--allow-protocol-change`` may take: a protocol/transform parameter or a
    provenance field ``check`` compares; anything else is a typo, refused."""
    known = (*PROTOCOL_PARAMETERS, *(f for f in provenance_fields if f not in PROTOCOL_PARAMETERS))
    for name in names:
        if name not in known:
            raise SimpoolBenchError(
                f"--allow-protocol-change {name!r}: not a protocol, transform or provenance parameter; expected one of {', '.join(known)}"
            )
    return frozenset(names)


def _protocol_rows(d: str, s: str, rsel: pd.DataFrame, bsel: pd.DataFrame, allowed: frozenset[str], notes: list[str]) -> list[CheckRow]:
    """'protocol-mismatch' rows of one dataset/split for every differing parameter not in
    ``allowed`` (whose changes go to ``notes``); none when the baseline has no protocol record.
    Two k-NN changes are noted, not gated: any k-NN parameter where the baseline has no k-NN rows
    (no gated value depends on it), and the bank's path (``knn_train``) where both ran a bank and the
    baseline records its data (``knn_data_sha256``, a provenance field: the bank's content is gated,
    not the folder it lies in on one machine)."""
    if not has_record(bsel):
        return []
    knn_rows = bool(bsel["metric"].isin(KNN_METRIC_NAMES).any())
    bank_digest = "knn_data_sha256" in bsel.columns and bool(bsel["knn_data_sha256"].notna().any())
    rows, unused = [], []
    for c in parameter_changes(rsel, bsel):
        if c.record == "protocol" and c.name in KNN_PARAMETERS and not knn_rows:
            unused.append(f"{c.name}: run {c.run}, baseline {c.baseline}")
        elif c.record == "protocol" and c.name == "knn_train" and bank_digest and has_bank(rsel) and has_bank(bsel):
            notes.append(
                f"k-NN bank at another path (`{d}/{s}`): run {c.run}, baseline {c.baseline}; its data are gated by knn_data_sha256"
            )
        elif c.name in allowed:
            notes.append(f"accepted {c.record} change (`{d}/{s}`) {c.name}: run {c.run}, baseline {c.baseline}")
        else:
            rows.append(CheckRow(d, s, f"{c.record}:{c.name}", None, c.baseline, c.run, None, None, "protocol-mismatch"))
    if unused:
        notes.append(f"k-NN parameters not gated (`{d}/{s}`: the baseline has no k-NN rows): " + "; ".join(unused))
    return rows


def check_console_table(report: CheckReport) -> Table:
    """A check report for the console (rich), failing rows in red."""
    style = {"regressed": "red", "missing": "red", "provenance-mismatch": "red", "protocol-mismatch": "red", "improved": "green", "ok": ""}
    table = Table(title=f"simpool-bench check: {'PASSED' if report.passed else 'FAILED'}")
    for name in ("status", "dataset", "split", "metric", "IoU", "baseline", "value", "delta", "tolerance"):
        table.add_column(name, justify="right" if name in ("IoU", "baseline", "value", "delta", "tolerance") else "left")
    for r in report.rows:
        table.add_row(
            r.status,
            escape(r.dataset),
            escape(r.split),
            escape(r.shown_metric),
            _fmt_iou(r.iou),
            escape(_cell(r.metric, r.baseline)),
            escape(_cell(r.metric, r.value)),
            "" if r.delta is None else format_delta(r.metric, r.delta),
            _fmt_tol(r.tolerance),
            style=style[r.status],
        )
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
