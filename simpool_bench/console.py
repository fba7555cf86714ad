"""The package's rich consoles (results go to stdout, progress, notes and warnings to stderr), the
one progress style every long step uses, and ``--quiet``.

Progress on a terminal is a rich bar (done/total, rate, elapsed, ETA). When stderr is not a
terminal (a log file, CI), a bar would print nothing until it ends, so a plain line is printed
every ``PLAIN_EVERY_S`` seconds instead (``<description>: done/total images, N img/s, ETA m:ss``)
and one final line. ``set_quiet(True)`` (``simpool-bench -q``) silences progress and ``note``
lines; warnings and errors still print.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console()
err_console = Console(stderr=True)

#: Seconds between two plain progress lines when stderr is not a terminal.
PLAIN_EVERY_S = 5.0

_state = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress and no notes from now on (warnings and errors still print)."""
    _state["quiet"] = bool(quiet)


def is_quiet() -> bool:
    return _state["quiet"]


def say(text: str) -> None:
    """Output on stdout as it is (no rich markup, no highlighting) and whole: in a file or pipe a
    line is not wrapped at 80 columns (a path, a markdown table row)."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def note(message: str) -> None:
    """An informational line on stderr (``note: ...``), unless ``--quiet``."""
    if not _state["quiet"]:
        err_console.print(message, highlight=False, markup=False, soft_wrap=True)


class ProgressLike(Protocol):
    """What callers of ``start_progress`` use (rich's ``Progress`` has it)."""

    @property
    def task_ids(self) -> list[Any]: ...

    def advance(self, task_id: Any, advance: float = 1) -> None: ...

    def stop(self) -> None: ...


def rate_unit(unit: str) -> str:
    """``img/s`` for images, ``steps/s`` for steps."""
    return "img/s" if unit == "images" else f"{unit}/s"


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour)."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _SpeedColumn(ProgressColumn):
    """The bar's rate: ``N img/s`` (rich's estimate over the last 30 s)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = rate_unit(unit)

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} {self.unit}" if speed is not None else f"? {self.unit}", style="progress.data.speed")


class PlainProgress:
    """Progress as plain lines for logs: ``<description>: done/total <unit>, N img/s, ETA m:ss``
    every ``every_s`` seconds (the rate is the mean since the start), then one final line."""

    def __init__(self, description: str, total: int, unit: str = "images", every_s: float | None = None) -> None:
        self.description, self.total, self.unit = description, int(total), unit
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.task_ids: list[Any] = [0]
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.stopped = False

    def advance(self, task_id: Any = 0, advance: float = 1) -> None:
        self.done += int(advance)
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
            self._print(f"{self.done}/{self.total} {self.unit}, {rate:.1f} {rate_unit(self.unit)}, ETA {eta}")

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        elapsed = time.perf_counter() - self.start
        rate = self.done / max(elapsed, 1e-9)
        self._print(f"{self.done}/{self.total} {self.unit} in {clock(elapsed)}, {rate:.1f} {rate_unit(self.unit)}")

    def _print(self, text: str) -> None:
        err_console.print(f"{self.description}: {text}", highlight=False, markup=False, soft_wrap=True)


class _Silent:
    """No progress (``--quiet``)."""

    task_ids: list[Any] = [0]

    def advance(self, task_id: Any = 0, advance: float = 1) -> None:
        pass

    def stop(self) -> None:
        pass


def start_progress(description: str, total: int, unit: str = "images") -> ProgressLike:
    """A started progress display on stderr with one task (``total`` steps of ``unit``): a rich bar
    on a terminal, plain lines otherwise, nothing under ``--quiet``. Advance it with
    ``bar.advance(bar.task_ids[0], n)`` and ``stop()`` it when done."""
    if _state["quiet"]:
        return _Silent()
    if not (err_console.is_terminal or err_console.is_jupyter):
        return PlainProgress(description, total, unit)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        _SpeedColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    bar.start()
    bar.add_task(description, total=total)
    return bar
