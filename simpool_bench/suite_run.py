"""``suite run``: every checkpoint x evaluation of a ``suite.Suite`` through the run layer, then the
suite's own files, and the gate against a baseline suite folder.

Layout of ``OUT`` (a baseline folder has the same)::

    OUT/<checkpoint name>/<task>-<dataset>/   one run folder per entry (results.csv, .parquet, ...;
                                              finished shards under .shards: a rerun resumes)
    OUT/all_results.csv                       every entry's table, with `label` and `entry` columns
    OUT/per_image/<checkpoint>__<entry>.parquet   each entry's per_image.parquet, when it has one
    OUT/compare.md, OUT/compare.tex           one row per checkpoint label (``compare_table``)

A failing entry is one line in the report and the others go on (``SuiteReport.failed``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .caller import called_as
from .errors import SimpoolBenchError, one_line
from .suite import Suite, SuiteEntry

if TYPE_CHECKING:
    import pandas as pd

    from .engine import EngineConfig
    from .results import CheckReport

ALL_RESULTS = "all_results.csv"
#: The columns ``all_results.csv`` adds to each entry's table: the checkpoint's label, the entry folder.
SUITE_COLUMNS = ("label", "entry")

EntryStatus = Literal["ok", "failed", "skipped"]


@dataclass
class EntryOutcome:
    """How one entry went: ``message`` is the one-line error of a failed entry."""

    entry: SuiteEntry
    status: EntryStatus
    folder: Path
    table: pd.DataFrame | None = None
    message: str = ""
    shards: tuple[int, int] | None = None  # (resumed, total)


@dataclass
class SuiteReport:
    """What ``run_suite`` did and wrote."""

    out: Path
    outcomes: list[EntryOutcome] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    compare: pd.DataFrame | None = None

    @property
    def failed(self) -> list[EntryOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _run_entry(
    entry: SuiteEntry, engine: EngineConfig, folder: Path, formats: Sequence[str]
) -> tuple[pd.DataFrame | None, tuple[int | None, int | None]]:
    from . import runs

    run = {"classify": runs.run_classify, "localize": runs.run_localize, "discover": runs.run_discover}[entry.evaluation.task]
    result = run(entry.spec, engine, folder, formats)  # type: ignore[operator]
    return result.table, (result.extras.get("shards_resumed"), result.extras.get("shards_total"))


def _joined(message: str) -> str:
    """A message of several lines (a library's error quoted in ours) as one: its lines, stripped,
    joined by spaces, so that each entry stays one line of the report and the log."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


@called_as("simpool_bench.suite_run.run_suite")
def run_suite(
    suite: Suite,
    out: str | os.PathLike,
    engine: EngineConfig,
    formats: Sequence[str] = ("json",),  # as runs.DEFAULT_FORMATS and the CLI
    resume: bool = True,
    on_entry: Callable[[EntryOutcome], None] | None = None,
) -> SuiteReport:
    """Run every entry of ``suite`` into ``out`` (see the module docstring), each resuming from its
    folder's ``.shards`` when ``resume``; then write all_results.csv, per_image/ and compare.md/.tex.
    ``on_entry`` is told of each entry as it ends."""
    out = Path(out)
    report = SuiteReport(out)
    for entry in suite.entries():
        folder = out / entry.folder
        if entry.spec is None:
            outcome = EntryOutcome(entry, "skipped", folder, message="no model and no baseline for this task")
        else:
            config = replace(engine, resume_dir=(folder / ".shards") if resume else None)
            try:
                table, shards = _run_entry(entry, config, folder, formats)
                outcome = EntryOutcome(entry, "ok", folder, table, shards=None if None in shards else shards)  # type: ignore[arg-type]
            except KeyboardInterrupt:
                raise
            except SimpoolBenchError as err:
                outcome = EntryOutcome(entry, "failed", folder, message=one_line(err))
            except OSError as err:
                where = f"{err.filename}: " if err.filename else ""
                outcome = EntryOutcome(entry, "failed", folder, message=_joined(where + (err.strerror or str(err))))
            except Exception as err:  # a bug in one entry must not lose the others' results
                kept = _keep_traceback(folder)
                message = f"{type(err).__name__}: {' '.join(str(err).split())} (traceback in {kept})"
                outcome = EntryOutcome(entry, "failed", folder, message=message)
        report.outcomes.append(outcome)
        if on_entry is not None:
            on_entry(outcome)
    write_suite_files(suite, report)
    return report


def _keep_traceback(folder: Path) -> Path:
    """The traceback of an unexpected error, in FOLDER/error.txt (the report shows one line)."""
    import traceback

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "error.txt"
    path.write_text(traceback.format_exc())
    return path


def write_suite_files(suite: Suite, report: SuiteReport) -> None:
    """all_results.csv, per_image/ and compare.md/.tex of the entries that ran (per_image/ holds
    copies of exactly those entries' tables)."""
    import pandas as pd

    from .engine import dist_rank
    from .files import atomic_write
    from .per_image import PER_IMAGE_PARQUET
    from .results import compare_to_latex, compare_to_markdown

    ok = [o for o in report.outcomes if o.status == "ok" and o.table is not None]
    if dist_rank() != 0:  # under torchrun, rank 0 writes
        return
    out = report.out
    copies = out / "per_image"
    if not ok:  # nothing ran: an earlier run's files must not stand as this run's
        for name in (ALL_RESULTS, "compare.md", "compare.tex"):
            (out / name).unlink(missing_ok=True)
        _remove_stale_copies(copies, report.files)
        return
    tables = [o.table.assign(label=o.entry.checkpoint.label, entry=o.entry.evaluation.name) for o in ok]  # type: ignore[union-attr]
    all_results = pd.concat(tables, ignore_index=True)
    report.files["all_results"] = atomic_write(out / ALL_RESULTS, all_results.to_csv(index=False).encode())
    for o in ok:
        src = o.folder / PER_IMAGE_PARQUET
        if src.is_file():
            dest = copies / f"{o.entry.checkpoint.name}__{o.entry.evaluation.name}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            report.files[f"per_image/{dest.name}"] = dest
    _remove_stale_copies(copies, report.files)
    per_label: dict[str, list[pd.DataFrame]] = {}
    for o in ok:
        per_label.setdefault(o.entry.checkpoint.label, []).append(o.table)  # type: ignore[arg-type]
    table = compare_table(per_label, suite.reference or suite.checkpoints[0].label, suite.metrics)
    report.files["compare_md"] = atomic_write(out / "compare.md", compare_to_markdown(table).encode())
    report.files["compare_tex"] = atomic_write(out / "compare.tex", compare_to_latex(table).encode())
    report.compare = table


def _remove_stale_copies(copies: Path, written: Mapping[str, Path]) -> None:
    """Delete the per-image copies in ``copies`` that this run did not write (``written``): an
    earlier run's entry that failed now or left the plan; its entry folder keeps the original."""
    for stale in sorted(copies.glob("*.parquet")) if copies.is_dir() else []:
        if f"per_image/{stale.name}" not in written:
            stale.unlink()


def compare_table(per_label: Mapping[str, Sequence[pd.DataFrame]], reference: str, metrics: Sequence[str] | None) -> pd.DataFrame:
    """The suite's compare table: ``results.compare --by label``, one row per checkpoint label
    across its entries' tables, deltas against ``reference`` (when it ran), only ``metrics`` when
    given (``name``, ``name@iou`` or ``name@k``)."""
    from .results import compare

    tables = [t for label in per_label for t in per_label[label]]
    labels = [label for label in per_label for _ in per_label[label]]
    if not tables:
        raise SimpoolBenchError("compare: no entry of the suite produced a table")
    table = compare(tables, reference=None, labels=labels, by="label", metrics=list(metrics) if metrics else None)
    if reference in table.index:
        table = compare(tables, reference=reference, labels=labels, by="label", metrics=list(metrics) if metrics else None)
    return table


# -------------------------------------------------------------------------------------------- gate
@dataclass
class SuiteCheck:
    """The gate of a suite folder against a baseline folder: one ``check`` per entry."""

    reports: list[tuple[str, CheckReport]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and all(r.passed for _, r in self.reports)

    @property
    def exit_code(self) -> int:
        """0 passed, 1 a regression (or an entry missing), 2 an error reading or comparing."""
        from .results import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION

        return EXIT_ERROR if self.errors else EXIT_OK if self.passed else EXIT_REGRESSION

    @property
    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        bad = sum(not r.passed for _, r in self.reports)
        lines = [f"## simpool-bench suite check: {verdict} ({len(self.reports)} entries, {bad} failing)", ""]
        lines += [f"- error: {e}" for e in self.errors] + [f"- {n}" for n in self.notes]
        text = "\n".join(lines) + "\n"
        for entry, r in self.reports:
            text += f"\n#### {entry}\n\n" + r.markdown
        return text


def _results_file(folder: Path) -> Path | None:
    for name in ("results.parquet", "results.csv", "results.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def check_baseline_folder(baseline: str | os.PathLike) -> None:
    """``baseline`` must be a suite output folder, results under ``<checkpoint>/<entry>/``: one
    without any (the suite folder's parent, a typo'd folder) would gate nothing and pass."""
    baseline = Path(baseline)
    if not baseline.is_dir():
        raise SimpoolBenchError(f"--baseline {baseline}: not a folder (expected a suite output folder)")
    if any(_results_file(f) is not None for f in baseline.glob("*/*/")):
        return
    inner = sorted({str(f.parent.parent) for f in baseline.glob("*/*/*/") if _results_file(f) is not None})
    hint = f"; did you mean --baseline {inner[0]}?" if len(inner) == 1 else ""
    raise SimpoolBenchError(
        f"--baseline {baseline}: no results in it (expected a suite output folder: <checkpoint>/<entry>/results.parquet, .csv or .json){hint}"
    )


def check_suite(report: SuiteReport, baseline: str | os.PathLike, tolerances: Mapping[str, float] | None = None) -> SuiteCheck:
    """Gate every entry of ``report`` against ``baseline/<checkpoint>/<entry>/`` with ``results.check``.
    An entry without a baseline, and a baseline entry the suite does not have, are notes (an entry
    that failed already fails the suite)."""
    from .results import check

    baseline = Path(baseline)
    gate = SuiteCheck()
    try:
        check_baseline_folder(baseline)
    except SimpoolBenchError as err:
        gate.errors.append(str(err))
        return gate
    ran = {o.entry.id: o for o in report.outcomes if o.status == "ok"}
    for o in report.outcomes:
        if o.status == "skipped":
            continue
        base = _results_file(baseline / o.entry.folder)
        if base is None:
            if o.status == "ok":
                gate.notes.append(f"{o.entry.id}: no baseline in {baseline / o.entry.folder} (not gated)")
            continue
        if o.entry.id not in ran:
            gate.notes.append(f"{o.entry.id}: failed in this run, its baseline not checked")
            continue
        try:
            gate.reports.append((o.entry.id, check(_results_file(o.folder) or o.folder, base, tolerances=tolerances)))
        except SimpoolBenchError as err:
            gate.errors.append(f"{o.entry.id}: {one_line(err)}")
        except Exception as err:  # a crash must never read as a regression
            gate.errors.append(f"{o.entry.id}: check failed: {type(err).__name__}: {err}")
    known = {o.entry.folder for o in report.outcomes}
    for found in sorted(baseline.glob("*/*/")):
        rel = found.relative_to(baseline)
        if rel not in known and _results_file(found) is not None:
            gate.notes.append(f"{rel.as_posix()}: in the baseline, not in this suite (not gated)")
    return gate
