"""Run records: the tidy results table, its files, rendering, ``compare`` and the CI gate ``check``.

- ``table``: the schema (columns, version), ``Provenance``, ``make_table`` and the table checks;
- ``store``: ``write_run`` (all files or none, with a manifest), ``read_run``, ``read_baseline``;
- ``render``: values as shown; Markdown, LaTeX, CSV and console tables of one run and of ``compare``;
- ``compare``: runs side by side (per run, checkpoint or label) with deltas;
- ``gate``: ``check`` against a baseline with per-metric tolerances, and its exit codes.

Every name is re-exported here: ``from simpool_bench.results import write_run`` keeps working.
"""

from __future__ import annotations

from ..files import sha256_file
from ..metrics.catalog import Direction
from .compare import (
    ALL_RESULTS,
    BY_CHOICES,
    MetricSelector,
    cell_name,
    compare,
    compare_by_checkpoint,
    parse_metrics,
    parse_reference,
    read_inputs,
)
from .gate import (
    CHECK_PROVENANCE_FIELDS,
    DEFAULT_TOLERANCE,
    DEFAULT_TOLERANCES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REGRESSION,
    METRIC_DIRECTIONS,
    CheckReport,
    CheckRow,
    Status,
    append_github_summary,
    check,
    check_console_table,
    exit_code,
    load_tolerances,
    parse_tolerance,
    tolerance_for,
)
from .render import (
    METRIC_LABELS,
    compare_console_table,
    compare_to_csv,
    compare_to_latex,
    compare_to_markdown,
    console_table,
    format_delta,
    format_value,
    latex_escape,
    provenance_line,
    to_latex,
    to_markdown,
)
from .store import add_run_file, read_baseline, read_run, verify_run_file, write_run
from .table import (
    COLUMNS,
    EXPORT_FILES,
    KEY_COLUMNS,
    KNOWN_METRICS,
    METRIC_COLUMNS,
    PROVENANCE_COLUMNS,
    RECORD_FILES,
    RUN_EXTRA_FILES,
    RUN_MANIFEST,
    SCHEMA_VERSION,
    Provenance,
    make_table,
    metric_key,
    metric_rows,
)

__all__ = [
    "ALL_RESULTS",
    "BY_CHOICES",
    "MetricSelector",
    "cell_name",
    "compare_by_checkpoint",
    "compare_to_csv",
    "parse_metrics",
    "parse_reference",
    "read_inputs",
    "CHECK_PROVENANCE_FIELDS",
    "COLUMNS",
    "DEFAULT_TOLERANCE",
    "DEFAULT_TOLERANCES",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "EXPORT_FILES",
    "KEY_COLUMNS",
    "KNOWN_METRICS",
    "METRIC_COLUMNS",
    "METRIC_DIRECTIONS",
    "METRIC_LABELS",
    "PROVENANCE_COLUMNS",
    "RECORD_FILES",
    "RUN_EXTRA_FILES",
    "RUN_MANIFEST",
    "SCHEMA_VERSION",
    "CheckReport",
    "CheckRow",
    "Direction",
    "Provenance",
    "Status",
    "add_run_file",
    "append_github_summary",
    "check",
    "check_console_table",
    "compare",
    "compare_console_table",
    "compare_to_latex",
    "compare_to_markdown",
    "console_table",
    "provenance_line",
    "exit_code",
    "format_delta",
    "format_value",
    "latex_escape",
    "load_tolerances",
    "parse_tolerance",
    "make_table",
    "metric_key",
    "metric_rows",
    "read_baseline",
    "read_run",
    "sha256_file",
    "tolerance_for",
    "to_latex",
    "to_markdown",
    "verify_run_file",
    "write_run",
]
