"""Type checks of the run descriptions (the specs, ``EngineConfig``) when they are made: a value of
the wrong kind is one ``SimpoolBenchError`` naming the field and what it takes, not a ``TypeError``
deep inside a run, nor a value read in another meaning (the string ``'False'`` is a true bool).

The field annotations say what a field takes. Checked: ``bool``, ``int`` (no bool), ``float`` (any
real number, no bool), ``str``, ``Path`` (a non-empty ``str`` or any path-like), tuples (a tuple or a list;
the items are the run's to check), dataclasses (that class), ``None`` and unions of these.
Anything else (``Any``, callables) is not checked."""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from pathlib import Path
from typing import Any, Union

from .errors import SimpoolBenchError


def check_fields(obj: Any) -> None:
    """Raise one error for the first field of the dataclass ``obj`` whose value its annotation refuses."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints.get(f.name)
        value = getattr(obj, f.name)
        if hint is not None and not _accepts(value, hint):
            empty = (
                " (not an empty str: '.' is the current folder)" if isinstance(value, str) and value == "" and _accepts(".", hint) else ""
            )
            raise SimpoolBenchError(f"{type(obj).__name__}.{f.name} = {_shown(value)}: expected {_described(hint)}{empty}")


def check_argument(value: Any, hint: Any, what: str) -> None:
    """One error naming ``what`` when ``value`` is not what the annotation ``hint`` takes (as
    ``check_fields`` checks a field): the readers' own arguments, which no spec checked."""
    if not _accepts(value, hint):
        raise SimpoolBenchError(f"{what} = {_shown(value)}: expected {_described(hint)}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``cls``'s resolved field annotations (once per class); none where one names a type only a
    type checker sees."""
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):  # pragma: no cover - an annotation under TYPE_CHECKING only
            _HINTS[cls] = {}
    return _HINTS[cls]


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else None


def _accepts(value: Any, hint: Any) -> bool:
    options = _union_args(hint)
    if options is not None:
        return any(_accepts(value, h) for h in options)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:  # '' is Path('.'): resume_dir='' wrote the shards into the current folder
        return isinstance(value, os.PathLike) or (isinstance(value, str) and value != "")
    if typing.get_origin(hint) is tuple:
        return isinstance(value, (tuple, list))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True


def _described(hint: Any) -> str:
    options = _union_args(hint)
    if options is not None:
        return " or ".join(_described(h) for h in options)
    if hint is type(None):
        return "None"
    if hint is Path:
        return "a path (str or Path)"
    if typing.get_origin(hint) is tuple:
        return "a tuple"
    return getattr(hint, "__name__", str(hint))


def _shown(value: Any) -> str:
    """A short picture of ``value``: its repr for plain values, else its type (a model's repr is pages long)."""
    if value is None or isinstance(value, (bool, numbers.Number, str, os.PathLike)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def path_argument(value: Any, what: str, expected: str, none_too: bool = False) -> Path:
    """``value`` (a str or path-like) as a Path; anything else (None, a number, a DataFrame) is one
    error naming ``what`` and the ``expected`` path (a folder, a results file...), not a TypeError
    from pathlib. ``none_too``: the message says None is taken too (the caller lets it through)."""
    empty = isinstance(value, str) and value == ""  # '' is Path('.'): out='' wrote into the current folder
    if not isinstance(value, (str, os.PathLike)) or empty:
        kind = "an empty str ('.' is the current folder)" if empty else f"{type(value).__module__}.{type(value).__qualname__}"
        raise SimpoolBenchError(f"{what}: expected {expected} (str or Path){' or None' if none_too else ''}, got {kind}")
    return Path(value)
