"""Who is making runs now, recorded as each run's provenance ``command``: the command line when the
CLI runs them, the API function a Python user called otherwise (never the host process's argv,
which under pytest or a Jupyter kernel says nothing about the run). Imports nothing heavy: the CLI
records its command line before it parses anything."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

_COMMAND: ContextVar[str | None] = ContextVar("simpool_bench_command", default=None)


def command_line(argv: Sequence[str]) -> str | None:
    """``argv`` as a shell command line, the program by its file name ('simpool-bench localize ...')."""
    return shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else None


def recorded_command() -> str | None:
    """The command the runs made now record (None outside the CLI and the API functions)."""
    return _COMMAND.get()


@contextmanager
def recording(command: str | None) -> Iterator[None]:
    """Runs made inside record ``command``; inside another ``recording`` the outer command stays
    (the CLI's command line over the API function it calls)."""
    if _COMMAND.get() is not None or command is None:
        yield
        return
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def called_as(name: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorator: runs made by the function record ``name`` (e.g. 'simpool_bench.api.run_localize')
    as their command, unless its caller records one (``recording``)."""

    def decorate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            with recording(name):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
