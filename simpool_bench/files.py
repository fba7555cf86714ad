"""File helpers shared by the package: checksums, atomic writes, checksummed shards.

Every file the tool writes goes through ``atomic_write``: the bytes go to a temporary file beside
the target (``NAME.PID.RANDOM.tmp``), which is renamed over the target only once complete. A failed write
(disk full, read-only file system, a path under a file) removes its temporary file and becomes one
``SimpoolBenchError`` naming the file and the reason, so a later run never finds a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .errors import SimpoolBenchError


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A TOML file's document; a missing, unreadable or invalid file is one error naming ``what``
    (e.g. 'suite file') and ``path``."""
    import tomllib

    if is_special_file(path):  # open() of a FIFO with no writer waits forever
        raise SimpoolBenchError(f"{what} {path}: not a regular file (a pipe, socket or device), expected a TOML file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SimpoolBenchError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise SimpoolBenchError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8 by definition
        raise SimpoolBenchError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 4]!r}); TOML files are UTF-8"
        ) from None
    except OSError as e:
        raise SimpoolBenchError(f"cannot read {what} {path}: {e.strerror}") from None


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def checksum_path(path: Path) -> Path:
    """Where the sha256 of a checksummed file lives: ``shard_000003.pt`` -> ``shard_000003.sha256``."""
    return path.with_suffix(".sha256")


def os_reason(err: OSError) -> str:
    """The reason of an OSError in words ('No space left on device'), without the file name."""
    return err.strerror or str(err) or type(err).__name__


def make_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p path``; a failure is a one-line SimpoolBenchError naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where the folder should be
        raise SimpoolBenchError(f"cannot create folder {path}: {os.strerror(errno.ENOTDIR)}") from None
    except OSError as err:
        raise SimpoolBenchError(f"cannot create folder {path}: {os_reason(err)}") from None
    return path


def check_makeable(path: str | os.PathLike) -> None:
    """Whether ``make_dir(path)`` and writes in it can succeed, checked without making anything:
    the folder, else its nearest existing parent, must be a folder we may write in; else the
    SimpoolBenchError ``make_dir`` would raise (for a run that writes only at its end, before it starts)."""
    path = Path(path)
    there = next((p for p in (path, *path.parents) if p.exists()), None)
    if there is None:
        return
    if not there.is_dir():
        raise SimpoolBenchError(f"cannot create folder {path}: {os.strerror(errno.ENOTDIR)}")
    if not os.access(there, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(there).f_flag & os.ST_RDONLY)
        raise SimpoolBenchError(f"cannot create folder {path}: {os.strerror(errno.EROFS if read_only else errno.EACCES)}")


def temp_path(path: Path) -> Path:
    """A fresh temporary name (``NAME.PID.RANDOM.tmp``) a write of ``path`` uses until it is complete."""
    return path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_temp(path: Path, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``temp_path(path)`` and
    return it; on failure the temporary file is removed and a SimpoolBenchError raised."""
    path = Path(path)
    make_dir(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a crash cannot leave an empty file under the name
    except OSError as err:
        discard(tmp)
        raise SimpoolBenchError(f"cannot write {path}: {os_reason(err)}") from None
    except BaseException:
        discard(tmp)
        raise
    return tmp


def commit(tmp: Path, path: Path) -> None:
    """Rename a complete temporary file over ``path`` (atomic on one file system)."""
    try:
        os.replace(tmp, path)
    except OSError as err:
        discard(tmp)
        raise SimpoolBenchError(f"cannot write {path}: {os_reason(err)}") from None


def discard(tmp: Path) -> None:
    """Remove a temporary file if it is there (errors ignored: it is garbage either way)."""
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically: all of ``data`` or, on any failure, the old file untouched and no
    temporary file left (a SimpoolBenchError names the file and the reason)."""
    path = Path(path)
    check_file_target(path)
    commit(write_temp(path, data), path)
    return path


def check_file_target(path: str | os.PathLike) -> None:
    """``path`` is a file ``atomic_write`` may replace (or nothing yet): not a pipe, socket or
    device, where the rename would put a regular file in place of /dev/null, /dev/stdout or a FIFO
    (as root it does)."""
    if is_special_file(path):
        raise SimpoolBenchError(f"cannot write {path}: not a regular file (a pipe, socket or device); give the path of a file")


def is_special_file(path: str | os.PathLike) -> bool:
    """``path`` is there and is neither a regular file nor a folder: a pipe, socket or device (False
    where it is missing or cannot be looked up: opening it says why)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def damaged_zip_entry(path: str | os.PathLike) -> str | None:
    """Why a zip archive (the layout ``torch.save`` writes) is damaged: the first entry whose bytes
    fail the CRC-32 its directory records, or that cannot be read; None when every entry passes, or
    when the file is not a readable zip archive (its reader says why). ``torch.load`` never checks
    the CRCs: a byte changed in a tensor's data loads as a wrong weight, silently."""
    import zipfile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return None
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                try:
                    with z.open(info) as entry:
                        while entry.read(1 << 24):
                            pass
                except (zipfile.BadZipFile, EOFError) as e:
                    if str(e).startswith("Bad CRC-32"):
                        return f"damaged: its entry {info.filename!r} fails its CRC-32 check (its bytes are not those written: {_FAULTY}); fetch it again"
                    return (
                        f"damaged: its entry {info.filename!r} cannot be read ({' '.join(str(e).split())[:120]}: {_FAULTY}); fetch it again"
                    )
    except Exception:  # noqa: BLE001 - no directory, an unknown compression, unreadable: left to the file's reader
        return None
    return None


_FAULTY = "a faulty download, copy or disk?"


def check_zip_entries(path: str | os.PathLike, what: str) -> None:
    """One error naming ``what`` when ``path`` is a damaged zip archive (``damaged_zip_entry``)."""
    problem = damaged_zip_entry(path)
    if problem is not None:
        raise SimpoolBenchError(f"{what}: {problem}")


def save_checksummed(path: Path, payload: Any) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically, then its sha256 beside it. The old checksum
    goes first, so an interruption anywhere leaves a file that ``load_checksummed`` rejects."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    try:
        checksum_path(path).unlink(missing_ok=True)
    except OSError as err:
        raise SimpoolBenchError(f"cannot write {path}: {os_reason(err)}") from None
    atomic_write(path, data)
    atomic_write(checksum_path(path), (hashlib.sha256(data).hexdigest() + "\n").encode())


def load_checksummed(path: Path) -> tuple[str, Any]:
    """('ok', payload), ('missing', None) (no file or no checksum) or ('corrupt', None) (checksum
    mismatch or unreadable). Loads with ``weights_only=True``: tensors and plain containers only."""
    import torch

    digest = checksum_path(path)
    if not path.is_file() or not digest.is_file():
        return "missing", None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest().encode() != digest.read_bytes().strip():  # bytes: a damaged one is no text
        return "corrupt", None
    try:
        return "ok", torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged file is recomputed, never trusted
        return "corrupt", None
