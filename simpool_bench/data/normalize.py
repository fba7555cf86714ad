"""Normalisation on the device: workers hand over uint8 images, the device makes the floats.

A transform ``[PIL steps..., ToTensor, Normalize...]`` is split in two. The workers run the PIL
steps and hand over the image as uint8 (a quarter of the bytes of float32, through shared and
pinned memory and to the device). ``DeviceNormalize`` then turns every value into the float32 that
``ToTensor`` + ``Normalize`` give it. Both steps act on each value alone (divide by 255, subtract
the channel's mean, divide by its std), so the result is a function of (channel, value): a table of
3 x 256 floats, computed once by running the transform's own steps over the 256 values of each
channel. A lookup in that table is the transform's output bit for bit, on any device, with no
assumption about how a device rounds a division. (It matters: PyTorch on CUDA divides by a Python
number as a product with its reciprocal, and in float32 ``v * (1 / 255)`` differs from ``v / 255``
for 126 of the 256 values.)

timm's prefetcher transform (``transforms.eval_transform(..., prefetcher=True)``: PIL steps, timm's
uint8 ``MaybePILToTensor``, then ``PrefetcherNormalize``) is split the same way: its arithmetic,
``(v - 255 mean) / (255 std)``, is a function of (channel, value) too.

Only transforms of exactly those shapes are split (``split_normalize`` returns None otherwise):
anything after ``Normalize``, such as LOST's zero padding, keeps the float path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import SimpoolBenchError

#: The conversions to [0, 1] floats that are split off: torchvision's ToTensor and timm's
#: MaybeToTensor (a ToTensor that passes tensors through), by exact class.
_TO_TENSOR = frozenset({"torchvision.transforms.transforms.ToTensor", "timm.data.transforms.MaybeToTensor"})
_NORMALIZE = "torchvision.transforms.transforms.Normalize"
#: timm's prefetcher pair: its uint8 conversion, then the prefetcher's normalisation.
_TO_UINT8 = "timm.data.transforms.MaybePILToTensor"
_PREFETCHER_NORMALIZE = "simpool_bench.transforms.PrefetcherNormalize"


def _qualname(step: Any) -> str:
    return f"{type(step).__module__}.{type(step).__qualname__}"


class PilToUint8:
    """An RGB PIL image -> a (3, H, W) uint8 tensor: the values ``ToTensor`` would divide by 255."""

    def __call__(self, pic: Any) -> torch.Tensor:
        if not isinstance(pic, Image.Image) or pic.mode != "RGB":
            got = f"a {pic.mode} PIL image" if isinstance(pic, Image.Image) else type(pic).__name__
            raise SimpoolBenchError(f"normalising on the device needs RGB PIL images before ToTensor, got {got}")
        return torch.from_numpy(np.array(pic, dtype=np.uint8, copy=True)).permute(2, 0, 1)

    def __repr__(self) -> str:
        return "PilToUint8()"


class HostSteps:
    """The PIL steps of a split transform, then ``PilToUint8`` (picklable for DataLoader workers)."""

    def __init__(self, steps: Sequence[Callable[[Any], Any]]) -> None:
        self.steps = list(steps)
        self.to_uint8 = PilToUint8()

    def __call__(self, img: Any) -> torch.Tensor:
        for step in self.steps:
            img = step(img)
        return self.to_uint8(img)

    def __repr__(self) -> str:
        return f"HostSteps({self.steps!r})"


class DeviceNormalize:
    """uint8 images (B, 3, H, W), on any device -> float32 images as the transform gives them.

    ``table`` (3, 256) float32: ``table[c, v]`` is the transform's output for value ``v`` of
    channel ``c``."""

    def __init__(self, table: torch.Tensor) -> None:
        if table.shape != (3, 256) or table.dtype != torch.float32:
            raise ValueError(f"DeviceNormalize: table {tuple(table.shape)} {table.dtype}, expected (3, 256) float32")
        self.table = table.contiguous()
        self._tables: dict[torch.device, torch.Tensor] = {}

    def _table_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._tables:
            self._tables[device] = self.table.to(device)
        return self._tables[device]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise SimpoolBenchError(f"DeviceNormalize: images {images.dtype} {tuple(images.shape)}, expected uint8 (B, 3, H, W)")
        table = self._table_on(images.device)
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        for c in range(3):
            out[:, c] = table[c][images[:, c].int()]
        return out

    def __repr__(self) -> str:
        return "DeviceNormalize(table=(3, 256))"


def normalize_table(steps: Sequence[Callable[[Any], Any]]) -> torch.Tensor:
    """(3, 256) float32: ``steps`` (a ToTensor, then Normalize steps; or timm's MaybePILToTensor,
    then PrefetcherNormalize) applied to an RGB image that holds every value 0..255 in every channel."""
    values = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # (1, 256, 3): H=1, W=256
    out: Any = Image.fromarray(values)  # (H, W, 3) uint8: an RGB image
    for step in steps:
        out = step(out)
    if not isinstance(out, torch.Tensor) or out.shape != (3, 1, 256) or out.dtype != torch.float32:
        raise ValueError(f"normalize_table: the steps gave {type(out).__name__} {getattr(out, 'shape', '')}, expected (3, 1, 256) float32")
    return out[:, 0, :].clone()


def split_normalize(transform: Any) -> tuple[HostSteps, DeviceNormalize] | None:
    """``transform`` (a Compose of PIL steps, then ToTensor and only Normalize steps, or timm's
    MaybePILToTensor and PrefetcherNormalize) as the workers' part (PIL steps -> uint8) and the
    device's (``DeviceNormalize``); None for any other shape."""
    steps = list(getattr(transform, "transforms", ()))
    if type(transform).__name__ != "Compose" or not steps:
        return None
    names = [_qualname(s) for s in steps]
    at = [i for i, name in enumerate(names) if name in _TO_TENSOR or name == _TO_UINT8]
    if len(at) != 1:
        return None
    tail = names[at[0] :]
    if tail[0] == _TO_UINT8:
        if tail[1:] != [_PREFETCHER_NORMALIZE]:
            return None
    elif not all(name == _NORMALIZE for name in tail[1:]):
        return None
    return HostSteps(steps[: at[0]]), DeviceNormalize(normalize_table(steps[at[0] :]))
