"""Batches: how indices become batches, how decoded items are stacked, and host copies of outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import SimpoolBenchError
from ..metrics.base import Accumulator


@dataclass
class Batch:
    """One evaluated batch: dataset indices, which images decoded, and the model's output.

    ``output`` holds host (CPU) tensors; ``images`` is the batch as it went into the model (on the
    device; its shape tells the padded input size)."""

    indices: np.ndarray
    ok: np.ndarray
    images: torch.Tensor
    output: Any


def collate_with_failures(
    items: list[tuple[torch.Tensor, int, bool]], describe: Callable[[int], str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack (image, index, ok) items; an image that failed to decode becomes zeros of the batch's shape
    (that of its decoded images). Decoded images of different shapes are an error, never zeros; it
    names the image by ``describe(index)`` (the engine's: its file), else by its index.

    The images are stacked by ``default_collate``, which in a DataLoader worker stacks straight into
    shared memory (``torch.stack`` there would stack, then copy the batch into shared memory to send it)."""
    from torch.utils.data import default_collate

    shape = next((img.shape for img, _, ok in items if ok), items[0][0].shape)
    for img, i, ok in items:
        if ok and img.shape != shape:
            raise SimpoolBenchError(
                f"image {describe(i) if describe else f'#{i}'} decoded to shape {tuple(img.shape)}, another image of its batch to {tuple(shape)}: images "
                "batched together must have one size (is a record's width/height not its file's?)"
            )
    imgs = [img if ok else torch.zeros(shape, dtype=img.dtype) for img, _, ok in items]
    idx = torch.tensor([i for _, i, _ in items], dtype=torch.int64)
    oks = torch.tensor([bool(ok) for _, _, ok in items], dtype=torch.bool)
    return default_collate(imgs), idx, oks


def chunk_batches(indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of ``batch_size`` indices."""
    idx = list(indices)
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def bucket_batches(indices: Sequence[int], keys: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Batches whose members share a key (e.g. the padded image size), in first-seen key order.

    Grouping identical sizes keeps a full-resolution batch exact: no image is padded beyond what
    the protocol pads it to, so batch size never changes a number."""
    groups: dict[Any, list[int]] = {}
    for i in indices:
        groups.setdefault(keys[i], []).append(i)
    out: list[list[int]] = []
    for members in groups.values():
        out.extend(chunk_batches(members, batch_size))
    return out


class ListBatchSampler:
    """A batch sampler over a fixed list of batches (the planned ones, in order)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class FailureCounter(Accumulator):
    """Counts images that did not decode (so the count survives resume and merges across ranks)."""

    failed: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("failed", torch.zeros((), dtype=torch.int64))

    def update(self, ok: np.ndarray) -> None:
        self.failed = self.failed + int((~np.asarray(ok, dtype=bool)).sum())

    def compute(self) -> int:
        return int(self.failed)


def to_host(obj: Any) -> Any:
    """Copy every tensor of ``obj`` (a tensor, dataclass, tuple, list or dict of them) to the CPU;
    from CUDA the copies are non-blocking into pinned memory (wait on an event before reading)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.to("cpu", non_blocking=obj.device.type == "cuda")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_host(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(x) for x in obj)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    return obj
