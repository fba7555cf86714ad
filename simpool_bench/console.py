"""The package's rich consoles (results go to stdout, progress and warnings to stderr) and the
one progress-bar style every long step uses."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


def start_progress(description: str, total: int, unit: str = "images") -> Progress:
    """A started progress bar on stderr with one task (``total`` steps of ``unit``); advance it
    with ``bar.advance(bar.task_ids[0], n)`` and ``stop()`` it when done."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    bar.start()
    bar.add_task(description, total=total)
    return bar
