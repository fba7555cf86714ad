"""``UNSET``: the one spelling of "the user did not give this value" (e.g. ``--gamma``), distinct from
``None``, which is a value (``--gamma none``: no gamma). Imports nothing, so every layer can use it."""

from __future__ import annotations

from typing import Any


class _Unset:
    """Type of :data:`UNSET` (a single instance)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
