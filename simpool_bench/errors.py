"""The one exception type for mistakes a user can make (bad flags, files, data)."""

from __future__ import annotations


class SimpoolBenchError(Exception):
    """A user-caused error.

    The message is one line that names the file, key or value at fault and what was expected.
    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """
