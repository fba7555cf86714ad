"""``extract`` and ``visualize``: commands around stored attention maps (registered by cli.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def register(app: typer.Typer, friendly: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Add this module's commands to ``app``; ``friendly`` turns user errors into one line + exit 2."""
