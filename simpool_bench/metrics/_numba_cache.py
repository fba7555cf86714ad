"""Where numba keeps the compiled MaxBoxAcc kernels, so that only the first run compiles them.

numba's ``cache=True`` writes beside the source (``__pycache__``), else in the user's cache folder;
when neither is writable (a read-only install and home) it would fail at import. Here that case
falls back to a folder under the system temp dir, and, when even that is not writable, to
compiling in memory on every run (slower start, same results)."""

from __future__ import annotations

import os
import tempfile


def _probe() -> None:
    """A function for numba's cache locators to place (never called)."""


def _locatable() -> bool:
    from numba.core.caching import FunctionCache

    try:
        FunctionCache(_probe)  # raises RuntimeError when no locator has a writable folder for this file
    except RuntimeError:
        return False
    return True


def cache_enabled() -> bool:
    """True when numba can cache kernels defined in this package (after at most one fallback to
    ``NUMBA_CACHE_DIR`` = ``$TMPDIR/simpool-bench-numba-<uid>``); False: compile without caching."""
    if _locatable():
        return True
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False
    from numba.core import config

    uid = os.getuid() if hasattr(os, "getuid") else "user"
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"simpool-bench-numba-{uid}")
    config.reload_config()
    return _locatable()
