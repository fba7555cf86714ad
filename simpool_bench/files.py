"""File helpers shared by the package."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any


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


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checksummed(path: Path, payload: Any) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically, then its sha256 beside it. The old checksum
    goes first, so an interruption anywhere leaves a file that ``load_checksummed`` rejects."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    checksum_path(path).unlink(missing_ok=True)
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
    if hashlib.sha256(data).hexdigest() != digest.read_text().strip():
        return "corrupt", None
    try:
        return "ok", torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged file is recomputed, never trusted
        return "corrupt", None
