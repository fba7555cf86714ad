"""The one exception type for mistakes a user can make (bad flags, files, data)."""

from __future__ import annotations


class SimpoolBenchError(Exception):
    """A user-caused error.

    The message is one line that names the file, key or value at fault and what was expected.
    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """


def one_line(err: BaseException) -> str:
    """The user's message of ``err`` on one line: a DataLoader worker re-raises it in the main process
    wrapped in "Caught ... in DataLoader worker process N" and the worker's traceback, of which only
    the message is kept; a message of several lines (a library's error quoted in ours) has its
    lines stripped and joined by spaces."""
    text = str(err)
    if "Original Traceback" not in text:
        return " ".join(line.strip() for line in text.splitlines() if line.strip())
    last = text.rstrip().splitlines()[-1]
    kind = type(err)
    for prefix in (f"{kind.__module__}.{kind.__qualname__}: ", f"{kind.__qualname__}: "):  # traceback qualifies the name
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last
