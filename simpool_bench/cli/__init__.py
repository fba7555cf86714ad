"""The ``simpool-bench`` command line: each command parses its options, turns them into a spec
(``options.Parsed``), runs it (``simpool_bench.runs``) and prints the result.

``run_commands`` (classify, localize, discover), ``map_commands`` (extract, visualize) and
``table_commands`` (inspect, compare, check, datasets, demo) and ``suite_commands`` (suite validate,
suite run) hold the commands; this module makes the app (with the global ``--version`` and
``-q/--quiet``), registers them and turns every user mistake (a ``SimpoolBenchError``) into one
``error:`` line and exit code 2.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from ..caller import command_line, recording
from ..console import err_console, set_quiet
from ..errors import SimpoolBenchError, one_line
from . import map_commands, run_commands, suite_commands, table_commands

_GLOBAL_OPTIONS = ("-q", "--quiet", "--version")
# click's UsageError (typer may vendor click, so it is found through typer's own BadParameter).
_UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    """A bad flag value, a missing or unknown option: one ``error:`` line and exit 2, not a usage box."""
    try:
        yield
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # no arguments: the help, as asked
            raise
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) is not None else ""
        message = " ".join(err.format_message().split())
        if getattr(err, "option_name", None) in _GLOBAL_OPTIONS and getattr(err, "ctx", None) is not None and err.ctx.parent is not None:
            message += f"; {err.option_name} is a global option: it goes before the command (simpool-bench {err.option_name} COMMAND ...)"
        err_console.print(f"[bold red]error:[/] {escape(where + message)} (see --help)", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _flags_without_a_type(params: list[Any]) -> list[Any]:
    """``params`` with the on/off flags' type column left empty in --help: Typer 0.29 shows
    ``<bool>`` beside them (``--v1 <bool>``), which reads as if they took a value."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def _names_a_path(annotation: Any) -> bool:
    """``Path``, ``Optional[Path]``, ``list[Path]``..."""
    return annotation is Path or any(_names_a_path(a) for a in typing.get_args(annotation))


def _empty_paths_refused(params: list[Any]) -> list[Any]:
    """``params`` whose path options and arguments refuse an empty value: ``Path('')`` is the
    current folder, so ``--out ''`` (an unset shell variable) wrote the run there, ``--data ''``
    read it."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(param, "_refuses_empty_path", False) or descriptor is None or not _names_a_path(descriptor.annotation):
            continue

        def process_value(ctx: Any, value: Any, _process: Callable[..., Any] = param.process_value, _param: Any = param) -> Any:
            if any(v == "" for v in (value if isinstance(value, (list, tuple)) else [value])):
                raise typer.BadParameter("'' is not a path (for the current folder, write .)", ctx=ctx, param=_param)
            return _process(ctx, value)

        param.process_value = process_value
        param._refuses_empty_path = True
    return params


class _FlagCommand(TyperCommand):
    """A command whose --help shows its flags without a type (``_flags_without_a_type``) and whose
    path options refuse an empty value (``_empty_paths_refused``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _empty_paths_refused(_flags_without_a_type(super().get_params(ctx)))


class _FlagGroup(TyperGroup):
    """A command group whose --help shows its flags without a type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_a_type(super().get_params(ctx))


class _OneLineUsageGroup(_FlagGroup):
    """The command group, with usage errors as one line (see ``_one_line_usage``)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, *rest: Any, **kwargs: Any) -> Any:
        """Runs made by this command line record it as their ``command`` (``caller``): the
        arguments (``sys.argv``'s from the shell) after the tool's name, however it was started
        (the ``simpool-bench`` script, ``python -m simpool_bench.cli``, a test's runner)."""
        argv = ["simpool-bench", *(sys.argv[1:] if args is None else args)]
        with recording(command_line(argv)):
            return super().main(args, prog_name, *rest, **kwargs)


app = typer.Typer(
    cls=_OneLineUsageGroup,
    name="simpool-bench",
    help="Evaluate attention-based pooling (SimPool, CLS, GAP) by the published protocols: "
    "classification, localization (MaxBoxAccV2) and object discovery (CorLoc).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"simpool-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, expose_value=False, help="Print the version and exit.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            envvar="SIMPOOL_BENCH_QUIET",
            help="No progress bars or lines and no notes (warnings, errors and results still print). Before the command: simpool-bench -q classify ...",
        ),
    ] = False,
) -> None:
    set_quiet(quiet)
    ctx.call_on_close(lambda: set_quiet(False))


datasets_app = typer.Typer(cls=_FlagGroup, help="Check dataset copies against data_manifests/.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
suite_app = typer.Typer(cls=_FlagGroup, help="Run an evaluation plan (checkpoints x evaluations) from a TOML file.", no_args_is_help=True)
app.add_typer(suite_app, name="suite")


class Terminated(KeyboardInterrupt):
    """SIGTERM in the command's process (a scheduler's time limit or pre-emption, ``kill``, torchrun
    stopping a rank): unwinds as Ctrl-C does, so that finished shards are kept and workers stop."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the command runs, SIGTERM raises ``Terminated`` in this process; a forked decoding
    worker that inherits the handler dies of the signal as by default."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one line and exit code 2; Ctrl-C into a resume hint and 130, SIGTERM
    into the same hint and 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = warnings.formatwarning
        warnings.formatwarning = _one_line_warning
        try:
            with _sigterm_unwinds():
                return fn(*args, **kwargs)
        except SimpoolBenchError as err:
            err_console.print(f"[bold red]error:[/] {escape(one_line(err))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
            err_console.print(
                f"[bold red]error:[/] {escape(str(err.filename))}: {escape(str(err.strerror))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except OSError as err:  # disk full, read-only file system, I/O errors: one line, not a traceback
            where = f"{err.filename}: " if err.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (err.strerror or str(err)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Terminated:
            err_console.print("terminated (SIGTERM): finished shards are kept; run the same command again to resume", soft_wrap=True)
            raise typer.Exit(128 + signal.SIGTERM) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished shards are kept; run the same command again to resume", soft_wrap=True)
            raise typer.Exit(130) from None
        finally:
            warnings.formatwarning = before

    return wrapper


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """Warnings shown as ``warning: <message>`` (one line; no source file, line and code)."""
    return f"warning: {' '.join(str(message).split())}\n"


def _register() -> None:
    """Every command on the app, each through ``friendly``."""
    for module, names in (
        (run_commands, ("classify", "localize", "discover")),
        (table_commands, ("inspect", "compare", "check", "demo")),
        (map_commands, ("extract", "visualize")),
    ):
        for name in names:
            app.command(name, cls=_FlagCommand)(friendly(getattr(module, name)))
    datasets_app.command("verify", cls=_FlagCommand)(friendly(table_commands.datasets_verify))
    datasets_app.command("list", cls=_FlagCommand)(friendly(table_commands.datasets_list))
    suite_app.command("validate", cls=_FlagCommand)(friendly(suite_commands.validate))
    suite_app.command("run", cls=_FlagCommand)(friendly(suite_commands.run))


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
