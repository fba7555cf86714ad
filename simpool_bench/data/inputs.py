"""Input hygiene shared by the readers: list files read as UTF-8 without a byte-order mark, ids that
must stay inside their data root, folder walks that read each real folder once, and the one
warning category (``DataWarning``) for input problems the reference tools let pass."""

from __future__ import annotations

import heapq
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from ..errors import SimpoolBenchError

#: The default ``--max-pixels``: PIL's own decompression-bomb threshold (``Image.MAX_IMAGE_PIXELS``,
#: 1024**3 // 4 // 3 = 89,478,485 pixels, e.g. 9459 x 9459), over which PIL warns.
DEFAULT_MAX_PIXELS = 89_478_485

#: The largest width or height an image file can have (PNG's limit, 2**31 - 1; JPEG's is 65535): a
#: larger size in the metadata is a mistake (and past float64's range, a traceback).
MAX_SIDE = 2**31 - 1

#: The largest class index (0-based) a label file may hold: ImageNet-21k has 21,843 classes; a flat
#: folder's integer labels make the class names "0".."max", and a label past int64 does not go in an array.
MAX_CLASS_INDEX = 999_999


class DataWarning(UserWarning):
    """An input problem the reference tool lets pass; we go on as it does, and say so once, counted."""


class UnpublishedDataWarning(UserWarning):
    """A run named as a published dataset and split whose data are not that split's
    (``manifests.note_unpublished``): nothing is wrong with the input, but its numbers are not
    the protocol's."""


def warn_data(message: str) -> None:
    """One counted data warning (printed by the CLI as one ``warning:`` line)."""
    warnings.warn(message, DataWarning, stacklevel=3)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to its first ``limit`` characters and an ellipsis ("…") when longer: for quoting
    a user's line in a one-line error (a one-line json of hundreds of MB must not flood the terminal)."""
    return text if len(text) <= limit else text[:limit] + "…"


def not_found(path: Path) -> str:
    """Why a file the data names cannot be read, for an error line: "not found", "is a folder, not
    a file" (or a pipe, socket or device) where one stands in its place, or why the OS cannot look it
    up ("File name too long")."""
    try:
        if path.is_dir():
            return "is a folder, not a file"
        return "is a pipe, socket or device, not a file" if path.exists() else "not found"
    except OSError as err:
        return f"cannot be looked up ({err.strerror or err})"


def is_file(path: Path) -> bool:
    """``path.is_file()`` for a file the data names, False where the OS cannot look it up at all (a
    listed id too long for the file system, ENAMETOOLONG): the reader then names it as missing
    (``not_found`` says why), not an OSError."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_text(path: str | Path) -> str:
    """The text of a list/metadata file: UTF-8, a leading byte-order mark dropped (``utf-8-sig``).

    Raises:
        SimpoolBenchError: the file is not UTF-8 (the byte offset named).
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SimpoolBenchError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 4]!r})") from None


def read_lines(path: str | Path) -> list[str]:
    """The lines of ``read_text(path)`` as the reference tools' ``open(path).readlines()`` splits them
    (universal newlines: ``\n``, ``\r\n`` and ``\r``), line ends dropped. ``str.splitlines`` would
    also split at form feeds, ``\x1c``-``\x1e``, NEL and the Unicode line separators, which a
    reference reads as part of an id."""
    lines = read_text(path).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def join_inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel``, refusing an absolute ``rel`` or one whose ``..`` parts lead out of ``root``.

    The check is on the path as written (symlinks inside ``root`` may point anywhere, as a data
    folder of links to another disk does); ``where`` names the file and line for the error.
    """
    if os.path.isabs(rel) or Path(rel).drive:
        raise SimpoolBenchError(f"{where}: image id {rel!r} is an absolute path; ids must be relative to {root}")
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith(".." + os.sep):
        raise SimpoolBenchError(f"{where}: image id {rel!r} points outside the data root {root}")
    return root / rel


def walk_files(
    root: Path, keep: Callable[[str], bool], seen: set[str] | None = None, roots: set[str] | None = None
) -> tuple[list[Path], list[Path]]:
    """Files under ``root`` whose name ``keep`` accepts, in torchvision ``ImageFolder``'s order
    (``sorted(os.walk(root, followlinks=True))``, then ``sorted(filenames)``), each real folder read once.

    A folder symlink is followed, as ImageFolder does, unless it would read a folder twice: its
    target is a folder already read or in ``seen`` (real paths; updated), an ancestor (a loop), or
    lies inside one of the walked trees ``roots`` (real paths of every tree the caller walks, e.g.
    all class folders; default ``root``'s own), where the walk reads it under its own path. So a
    real folder is always read where it lies, whichever name sorts first, and only links are
    skipped. Returns ``(files, skipped_links)``.
    """
    seen = set() if seen is None else seen
    seen.add(os.path.realpath(root))
    inside = tuple(r.rstrip(os.sep) + os.sep for r in (roots if roots is not None else {os.path.realpath(root)}))
    skipped: list[Path] = []
    listing: list[tuple[str, list[str]]] = []
    heap: list[tuple[str, str]] = [(str(root), "")]  # (folder, its parent's real path; "" for root)
    while heap:
        folder, parent_real = heapq.heappop(heap)  # the smallest path first: ImageFolder's order
        real = os.path.realpath(folder)
        if parent_real:
            if (
                real in seen
                or (parent_real + os.sep).startswith(real.rstrip(os.sep) + os.sep)
                or (os.path.islink(folder) and (real + os.sep).startswith(inside))
            ):
                skipped.append(Path(folder))
                continue
            seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable folder: os.walk skips it too
        names = []
        for e in entries:
            try:
                is_dir = e.is_dir()  # follows symlinks, as os.walk(followlinks=True) does
            except OSError:  # a link to itself (ELOOP): os.walk takes it as a file, so ImageFolder lists it
                is_dir = False
            if is_dir:
                heapq.heappush(heap, (os.path.join(folder, e.name), real))
            else:
                names.append(e.name)
        listing.append((folder, names))
    files: list[Path] = []
    for folder, names in listing:  # popped in sorted order
        base = Path(folder)  # once per folder
        files += [base / name for name in sorted(names) if keep(name)]
    return files, sorted(skipped)
