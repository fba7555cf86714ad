"""The k-NN memory bank's features, cached in the run folder (``OUT/knn_bank/<key>.pt``).

The key is ``runkey.resume_key`` of the model (every tensor and setting), the bank's records (each
image's id, path, label, file size and mtime), the transform, ``--amp``, ``--max-pixels``, the
device type and the code version: a rerun with other ``--knn-k`` or ``--knn-temperature`` (or
another test split) reuses the features; anything that changes them extracts again. Files are
written atomically with a sha256 beside them; a damaged one is extracted again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..engine import EngineConfig, resolve_device
from ..files import load_checksummed, save_checksummed

if TYPE_CHECKING:
    from ..data.records import Record

#: The folder of OUT that holds the cached banks.
BANK_DIR = "knn_bank"


def bank_key(model: torch.nn.Module, records: Sequence[Record], transform: Callable, config: EngineConfig) -> str:
    """The cache key of a bank's features (see the module docstring)."""
    from ..runkey import resume_key

    params = {"max_pixels": config.max_pixels}
    return resume_key("knn-bank", model, records, transform, params, amp=config.amp, device=resolve_device(config.device).type)


def bank_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / BANK_DIR / f"{key}.pt"


def load_bank(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(dataset positions, raw features) stored under ``key``, or None (missing, damaged or foreign)."""
    state, payload = load_checksummed(path)
    if state != "ok" or not isinstance(payload, dict) or payload.get("key") != key:
        return None
    index, features = payload.get("index"), payload.get("features")
    if not isinstance(index, torch.Tensor) or not isinstance(features, torch.Tensor) or index.shape[0] != features.shape[0]:
        return None
    return index, features


def save_bank(path: Path, key: str, index: torch.Tensor, features: torch.Tensor) -> None:
    save_checksummed(path, {"key": key, "index": index.cpu(), "features": features.cpu()})


def reuse_note(path: Path, n: int) -> None:
    """One ``note:`` line on stderr: the bank's features come from the cache."""
    from ..console import note

    note(f"note: reusing the k-NN memory bank's features ({n} images) from {path}")
