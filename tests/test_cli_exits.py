"""``cli.friendly``: how a command's exception reaches the user, as one line and an exit code
(2 bad input or an unusable file, 130 Ctrl-C, 143 SIGTERM), and warnings as one line."""

from __future__ import annotations

import errno
import signal
import warnings

import pytest
import typer
from typer.testing import CliRunner

from simpool_bench.cli import Terminated, friendly
from simpool_bench.errors import SimpoolBenchError

from conftest import invoke_cli

RESUME = "finished shards are kept; run the same command again to resume\n"


def _run(raised: BaseException):
    def command() -> None:
        raise raised

    tool = typer.Typer()
    tool.command()(friendly(command))
    return CliRunner().invoke(tool, [], catch_exceptions=False)


@pytest.mark.parametrize(
    "raised, code, output",
    [
        (SimpoolBenchError("--x 3: expected y"), 2, "error: --x 3: expected y\n"),
        (  # a library's multi-line error quoted in ours: one line (it printed as two)
            SimpoolBenchError("f.csv: not a table (ParserError: Error tokenizing data.\n  C error: Expected 2 fields)\n"),
            2,
            "error: f.csv: not a table (ParserError: Error tokenizing data. C error: Expected 2 fields)\n",
        ),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/no/f.pth"), 2, "error: /no/f.pth: No such file or directory\n"),
        (OSError(errno.ENOSPC, "No space left on device", "/out/results.csv"), 2, "error: /out/results.csv: No space left on device\n"),
        (OSError(errno.EIO, "Input/output error"), 2, "error: Input/output error\n"),
        (KeyboardInterrupt(), 130, f"interrupted: {RESUME}"),
        (Terminated(), 128 + signal.SIGTERM, f"terminated (SIGTERM): {RESUME}"),
    ],
)
def test_an_exception_is_one_line_and_its_exit_code(raised, code, output):
    res = _run(raised)
    assert (res.exit_code, res.output) == (code, output)


def test_a_warning_in_a_command_is_one_line():
    seen = []

    def command() -> None:
        seen.append(warnings.formatwarning("two\n  lines", UserWarning, "x.py", 3))

    friendly(command)()
    assert seen == ["warning: two lines\n"]
    assert warnings.formatwarning("a", UserWarning, "x.py", 3) != "warning: a\n"  # restored after the command


def test_quiet_ends_with_its_command():
    """-q silences its own command only: an API call after it in the same process prints its notes."""
    from simpool_bench.console import is_quiet

    res = invoke_cli("-q", "datasets", "list")
    assert res.exit_code == 0 and res.output.strip() and not is_quiet()
