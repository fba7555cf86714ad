"""How many DataLoader worker processes decode images: min(8, cores) by default, and none (decoding
in the main process, with one notice) where worker processes cannot start or hand tensors back,
e.g. a too small or missing /dev/shm, or a sandbox without multiprocessing."""

from __future__ import annotations

import os
from collections.abc import Sized
from typing import cast

import torch
from torch.utils.data import DataLoader, Dataset

MAX_DEFAULT_WORKERS = 8


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """``--workers`` when not given: min(8, cores) (timm's validate uses 4)."""
    return min(MAX_DEFAULT_WORKERS, cpu_count())


class _Probe(Dataset):
    """Two small tensors: enough for a worker to start and pass a tensor through shared memory."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3, 64, 64), float(i))


def usable_workers(n: int, probe: Dataset | None = None) -> int:
    """``n`` if one DataLoader worker starts and returns a tensor here, else 0 after one notice.
    The answer for the default probe is kept for the life of the process."""
    if n <= 0:
        return 0
    if probe is not None:
        return n if _workers_start(probe) else 0
    if "ok" not in _CHECKED:
        _CHECKED["ok"] = _workers_start(_Probe())
    return n if _CHECKED["ok"] else 0


_CHECKED: dict[str, bool] = {}


def _workers_start(probe: Dataset) -> bool:
    try:
        batches = list(DataLoader(probe, batch_size=1, num_workers=1, timeout=120))
        size = len(cast(Sized, probe))  # a map-style dataset
        if len(batches) != size:
            raise RuntimeError(f"the worker returned {len(batches)} of {size} batches")
    except Exception as exc:  # noqa: BLE001 - any failure to start or talk to a worker means: no workers
        from .console import note

        text = str(exc).strip()  # a worker's error ends with its own "Type: message" line
        last = text.splitlines()[-1] if text else ""
        detail = last if last.startswith(type(exc).__name__) else f"{type(exc).__name__}: {last}"
        note(f"notice: DataLoader workers cannot start here ({detail}); decoding in the main process (--workers 0)")
        return False
    return True
