"""File helpers shared by the package: checksums and checksummed, atomic writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checksummed(path: str | os.PathLike, data: bytes, checksum_path: str | os.PathLike) -> None:
    """Write ``data`` atomically, then its sha256 beside it (so a file without a valid checksum
    is never mistaken for a finished one)."""
    atomic_write(path, data)
    atomic_write(checksum_path, (hashlib.sha256(data).hexdigest() + "\n").encode())


def read_checksummed(path: str | os.PathLike, checksum_path: str | os.PathLike) -> bytes | None:
    """The bytes of ``path`` when its sha256 matches ``checksum_path``; None when either file is
    missing or they disagree."""
    path, checksum_path = Path(path), Path(checksum_path)
    if not (path.exists() and checksum_path.exists()):
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != checksum_path.read_text().strip():
        return None
    return data
