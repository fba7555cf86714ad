"""``suite validate`` and ``suite run``: an evaluation plan from a TOML file (see ``simpool_bench.suite``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.markup import escape

from ..console import console, err_console, say
from .options import ENGINE_OPTIONS, OUTPUT_OPTIONS, Parsed, shared_options

SuiteFile = Annotated[Path, typer.Argument(help="Suite file (TOML): checkpoints (rows) and evaluations (task, dataset, data, options).")]
RootOpt = Annotated[
    Optional[Path],
    typer.Option("--root", help="Folder the suite's relative paths are taken from (default: the suite file's folder).", show_default=False),
]


def _problems(err: Any) -> NoReturn:
    """Every problem of a suite file as its own ``error:`` line; exit 2."""
    for line in getattr(err, "problems", None) or [str(err)]:
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def validate(
    suite_file: SuiteFile,
    root: RootOpt = None,
    check_paths: Annotated[
        bool,
        typer.Option(
            "--check-paths",
            help="Also require every path to exist, every ${VAR} to be set and every model name to be one timm knows (default: types and names only).",
        ),
    ] = False,
) -> None:
    """Check a suite file without running it: one error line per problem (exit 2), else the entries it would run."""
    from ..suite import SuiteError, load_suite

    try:
        suite = load_suite(suite_file, root, check_paths=check_paths)
    except SuiteError as err:
        _problems(err)
    entries = suite.entries()
    skipped = sum(e.spec is None for e in entries)
    console.print(
        f"{suite_file}: OK — {len(suite.checkpoints)} checkpoint(s) x {len(suite.evaluations)} evaluation(s) = "
        f"{len(entries) - skipped} run(s)" + (f" ({skipped} skipped: no model and no baseline for the task)" if skipped else ""),
        highlight=False,
        markup=False,  # a path is no markup
        soft_wrap=True,  # one line in a log, not cut at 80 columns
    )
    for e in entries:
        console.print(f"  {escape(e.id)}{'  (skipped)' if e.spec is None else ''}", highlight=False, soft_wrap=True)


@shared_options(ENGINE_OPTIONS.without("compile", "dist_timeout"), OUTPUT_OPTIONS.only("formats"))
def run(
    ctx: typer.Context,
    suite_file: SuiteFile,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: OUT/<checkpoint>/<entry>/, all_results.csv, compare.md.")],
    root: RootOpt = None,
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", help="A suite output folder to gate against (same layout); exit 1 on a regression.")
    ] = None,
    tolerances: Annotated[Optional[Path], typer.Option("--tolerances", help="TOML file of per-metric absolute tolerances (as check).")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Also write the gate's Markdown summary to this file.")] = None,
    github: Annotated[bool, typer.Option("--github/--no-github", help="Append the gate's summary to $GITHUB_STEP_SUMMARY when set.")] = True,
    **shared: Any,
) -> None:  # fmt: skip
    """Run every checkpoint x evaluation of a suite; exit 0 all ran (and passed the gate), 1 one failed or regressed, 2 bad input.

    Each entry resumes in its own folder; a failing entry is reported and the others go on."""
    from .. import results as R
    from ..files import atomic_write
    from ..suite import SuiteError, load_suite
    from ..suite_run import check_baseline_folder, check_suite, run_suite

    try:
        suite = load_suite(suite_file, root, check_paths="vars")  # an unset ${VAR} fails now, not as a missing file in each entry
    except SuiteError as err:
        _problems(err)
    tols = R.load_tolerances(tolerances) if tolerances is not None else None
    if baseline is not None:  # now, not after every entry has run
        check_baseline_folder(baseline)
    p = Parsed(ctx.params)
    engine = p.engine(shards=False)
    from ..engine import dist_rank

    if dist_rank() != 0:  # under torchrun: every rank runs the entries, rank 0 reports, writes and gates
        raise typer.Exit(1 if run_suite(suite, out, engine, p.formats(), resume=p["resume"]).failed else 0)
    report = run_suite(suite, out, engine, p.formats(), resume=p["resume"], on_entry=_print_entry)
    if report.compare is not None:
        console.print(R.compare_console_table(report.compare, width=console.width))
        say(f"wrote {out / 'all_results.csv'}, {out / 'compare.md'}, {out / 'compare.tex'}")
    failed = report.failed
    if failed:
        err_console.print(f"{len(failed)} of {len(report.outcomes)} suite entries failed:", highlight=False)
        for o in failed:
            err_console.print(f"  [red]✗[/] {escape(o.entry.id)}: {escape(o.message)}", highlight=False, soft_wrap=True)
    code = 1 if failed else 0
    if baseline is not None:
        gate = check_suite(report, baseline, tols)
        say(gate.markdown)
        if summary is not None:
            atomic_write(summary, gate.markdown.encode())
        if github:
            R.append_github_summary(gate.markdown)
        code = max(code, gate.exit_code)
    raise typer.Exit(code)


def _print_entry(o: Any) -> None:
    mark = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[dim]-[/]"}[o.status]
    extra = f"  (resumed {o.shards[0]} of {o.shards[1]} shards)" if o.status == "ok" and o.shards and o.shards[0] else ""
    text = escape(o.message) if o.status != "ok" else escape(str(o.folder))
    console.print(f"{mark} {escape(o.entry.id)}: {text}{extra}", highlight=False, soft_wrap=True)
