"""The package's rich consoles: results go to stdout, progress and warnings to stderr."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
