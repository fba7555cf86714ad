"""The commands around tables, checkpoints and datasets: ``inspect``, ``compare``, ``check``,
``datasets verify|list`` and ``demo``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..console import console, err_console, note, say
from ..errors import SimpoolBenchError
from ..files import atomic_write, check_file_target
from .options import DeviceOpt, FormatOpt, PreferOpt, TrustOpt, check_out_folder


def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file.")],
    trust_checkpoint: TrustOpt = False,
    fmt: FormatOpt = None,
    prefer: PreferOpt = "auto",
) -> None:
    """Show a checkpoint's format, architecture, pooling, gamma, parameters and key mapping."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    from ..checkpoints import inspect_checkpoint

    info = inspect_checkpoint(checkpoint, trust=trust_checkpoint, format=fmt, prefer=prefer)
    table = Table(title=Text(str(checkpoint)), show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")  # a sha256 or path folds whole onto the next line, never cut with '…'
    for k, v in info.items():
        if isinstance(v, (list, tuple)):
            v = "\n".join(map(str, v)) if v else "-"
        table.add_row(str(k), Text(str(v)))  # values as text, not rich markup ('[x]' in a path stays)
    # on a terminal the value column folds; in a file or pipe each value stays on one line (a sha256 to copy or grep)
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=Measurement.get(console, console.options.update_width(10_000), table).maximum).print(table)
    if info.get("non_finite", "none") != "none":
        err_console.print(f"warning: non-finite weights (NaN or inf): {info['non_finite']}", highlight=False, markup=False, soft_wrap=True)


class By(str, Enum):
    run = "run"
    checkpoint = "checkpoint"
    label = "label"


def compare(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders, results files (.parquet/.csv/.json) or all_results.csv (several runs, split by run_id); "
            "a folder of run folders reads each."
        ),
    ],
    by: Annotated[By, typer.Option("--by", help="Rows: one per run, per checkpoint (across tasks and datasets), or per label.")] = By.run,
    metrics: Annotated[
        Optional[str],
        typer.Option(
            "--metrics",
            help="Comma-separated metrics, in this order within each dataset (maxboxacc@50: one IoU threshold, knn_top1@20: one k).",
        ),
    ] = None,
    reference: Annotated[
        str, typer.Option("--reference", "-r", help="Row (index or label) the deltas are taken against; 'none': no deltas.")
    ] = "0",
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the table as Markdown.")] = None,
    latex: Annotated[Optional[Path], typer.Option("--latex", help="Also write the table as LaTeX (booktabs, best bold).")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the table as CSV (full precision).")] = None,
    labels: Annotated[
        Optional[str], typer.Option("--labels", help="Comma-separated row labels, one per row (--by label: one per input, the grouping).")
    ] = None,
) -> None:
    """Side-by-side table of runs, checkpoints or labels, with deltas against a reference row."""
    from .. import results as R

    _outputs_apart((("--markdown", markdown), ("--latex", latex), ("--csv", csv)), list(runs))
    lab = [s.strip() for s in labels.split(",")] if labels else None
    table = R.compare(runs, reference=R.parse_reference(reference), labels=lab, by=by.value, metrics=metrics)
    for item in table.attrs.get("unmatched", []):
        note(f"note: --metrics {item}: no input has this metric")
    for line in table.attrs.get("mixed_data", []):
        err_console.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    written = []  # the files first: a path that cannot be written is one error, not one after the table
    for path, render in ((markdown, R.compare_to_markdown), (latex, R.compare_to_latex), (csv, R.compare_to_csv)):
        if path is not None:
            atomic_write(path, render(table).encode())
            written.append(path)
    console.print(R.compare_console_table(table, width=console.width))
    for path in written:
        say(f"wrote {path}")


#: The files compare and check read in a run folder (or a folder of run folders).
_READ_NAMES = ("results.parquet", "results.csv", "results.json", "results.manifest.json", "all_results.csv")


def _outputs_apart(outputs: tuple[tuple[str, Path | None], ...], inputs: list[Path]) -> None:
    """Each output file its own, and none of them a file the command reads: written first, it
    would replace a run's results (``compare RUN --csv RUN/results.csv``) or another output."""
    seen: dict[Path, str] = {}
    for flag, path in outputs:
        if path is None:
            continue
        where = Path(path).resolve()
        if where in seen:
            raise SimpoolBenchError(f"{seen[where]} and {flag} are both {path}: give each its own file")
        seen[where] = flag
        check_file_target(path)  # before the table, not after it is printed
        for given in inputs:
            source = Path(given).resolve()
            if where == source or (source.is_dir() and where.is_relative_to(source) and where.name in _READ_NAMES):
                raise SimpoolBenchError(f"{flag} {path}: a results file this command reads ({given}); write it elsewhere")


def _result_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("results.parquet", "results.csv", "results.json"):
            if (path / name).exists():
                return path / name
        raise SimpoolBenchError(f"{path}: no results.parquet, results.csv or results.json in this folder")
    return path


def check(
    run: Annotated[Path, typer.Argument(help="The run's result file (or folder).")],
    baseline: Annotated[
        Path, typer.Option("--baseline", help="Baseline results file (ours, or a CSV with dataset,split,metric,iou_threshold,value).")
    ],
    tolerances: Annotated[Optional[Path], typer.Option("--tolerances", help="TOML file of per-metric absolute tolerances.")] = None,
    tol: Annotated[Optional[list[str]], typer.Option("--tol", help="Override one tolerance: METRIC=VALUE (repeatable).")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Also write the Markdown summary to this file.")] = None,
    github: Annotated[bool, typer.Option("--github/--no-github", help="Append the summary to $GITHUB_STEP_SUMMARY when set.")] = True,
    allow_protocol_change: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-protocol-change",
            metavar="NAME",
            help="Accept a changed protocol/transform parameter (e.g. mass, interval, mean) or provenance field (repeatable).",
        ),
    ] = None,
) -> None:
    """CI gate: compare a run with a baseline; exit 0 within tolerance, 1 on a regression, 2 on bad input.

    A changed protocol or transform parameter, or provenance field, fails the gate too (exit 1)
    unless accepted with --allow-protocol-change."""
    from .. import results as R

    _outputs_apart((("--summary", summary),), [run, baseline, *([tolerances] if tolerances is not None else [])])
    tols = dict(R.load_tolerances(tolerances)) if tolerances is not None else {}
    tols.update(R.parse_tolerance(item) for item in tol or [])  # a typo names its --tol, not "tolerances"
    try:
        report = R.check(  # read_run / read_baseline
            _result_file(run), _result_file(baseline), tolerances=tols, allow_protocol_change=tuple(allow_protocol_change or ())
        )
    except SimpoolBenchError:
        raise
    except Exception as err:  # a crash must never read as a regression (exit 1)
        raise SimpoolBenchError(f"check failed on {run} vs {baseline}: {type(err).__name__}: {err}") from err
    say(report.markdown)  # a file or pipe gets whole table rows
    if summary is not None:
        atomic_write(summary, report.markdown.encode())
    if github:
        R.append_github_summary(report.markdown)
    raise typer.Exit(R.exit_code(report))


def datasets_verify(
    name: Annotated[str, typer.Argument(help="Manifest name (see `simpool-bench datasets list`).")],
    path: Annotated[Path, typer.Argument(help="Root folder of your copy.")],
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (default PATH/metadata).")] = None,
) -> None:
    """Check a dataset copy's layout, counts and checksums against its manifest.

    Exit 0 when the copy matches, 1 when it differs, 2 on bad input (an unknown NAME, a PATH or --metadata that is not a folder)."""
    from ..data.manifests import verify_dataset

    if metadata is not None and not metadata.is_dir():  # a wrong --metadata is bad input (exit 2), checked before any file is read
        raise SimpoolBenchError(f"--metadata {metadata}: no such folder (the wsolevaluation metadata folder, e.g. metadata/CUB/test)")
    report = verify_dataset(name, path, metadata_dir=metadata)
    if not Path(path).is_dir():  # a wrong PATH is bad input (exit 2), not a copy that differs (exit 1)
        raise SimpoolBenchError(report.problems[0])
    if report.meant is not None:  # so is the folder above or below the dataset's
        raise SimpoolBenchError(f"{path}: none of {name}'s required files are here; did you mean {report.meant}?")
    for line in report.checked:
        console.print(f"[green]✓[/] {escape(line)}", highlight=False, soft_wrap=True)
    for line in report.problems:
        console.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print(f"[green]✓[/] {escape(name)} at {escape(str(path))} matches its manifest", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


def datasets_list() -> None:
    """List the dataset manifests shipped in data_manifests/."""
    from ..data.manifests import list_manifests

    for name in list_manifests():
        console.print(name)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (data, models, suite, figures).")] = Path("demo_out"),
    small: Annotated[bool, typer.Option("--small", help="A quick setting (few images, one epoch): what CI runs.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the demo data and training.")] = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Everything end to end on demo data the tool makes itself: data, two trained tiny ViTs, evaluated (classify, localize, discover), compared and drawn.

    Writes OUT/data (every dataset layout), OUT/models (official checkpoint layout), then runs the suite
    suites/demo.toml into OUT/suite (<checkpoint>/<entry>/results.csv, all_results.csv, compare.md|.tex), and
    OUT/figures/overlays.png and boxacc_curves.png. A second run reuses data and models."""
    from dataclasses import replace as _replace

    from ..demo.run import DemoSettings, run_demo

    check_out_folder(out)
    settings = DemoSettings.small() if small else DemoSettings()
    run_demo(out, _replace(settings, seed=seed), device=device)
