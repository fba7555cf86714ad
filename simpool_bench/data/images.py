"""Image decoding and the map-style dataset every evaluation uses.

Decoding follows the references (wsolevaluation, LOST via torchvision's VOC/COCO datasets, timm's
ImageFolder): ``PIL.Image.open(path).convert("RGB")``, no EXIF rotation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import SimpoolBenchError
from .records import Record

# What PIL raises on a file that is missing, truncated, not an image, or too large.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` into an RGB ``PIL.Image`` (fully loaded, file closed).

    Raises:
        SimpoolBenchError: naming the file, when it is missing or does not decode.
    """
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() loads the pixels while the file is open
    except _DECODE_ERRORS as exc:
        raise SimpoolBenchError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from None


class ImageDataset(torch.utils.data.Dataset):
    """Images of a list of ``Record`` through a transform; item ``i`` is ``(image, i, ok)``.

    An image that does not decode raises ``SimpoolBenchError`` (naming the file) when ``strict``;
    otherwise it warns and returns ``ok=False`` with a zero placeholder: the transform applied to a
    black RGB image of the record's size (1x1 when the size is unknown), then zeroed. Its shape is
    therefore what the transform would give a real image of that size (fixed for resize/crop
    transforms, the record's own size for LOST's full-resolution transform). The engine counts
    and skips such images. Picklable when ``transform`` is (torchvision/timm transforms are).

    Args:
        records: image metadata (only ``path``, ``width`` and ``height`` are used here).
        transform: PIL image -> tensor; ``None`` means ``torchvision.transforms.ToTensor()``.
        strict: raise instead of warning on an image that does not decode.
        warn: warn about an image that does not decode (off when the caller fails on it anyway,
            as the engine does under ``--strict``).
        decode: path -> what ``transform`` takes (default :func:`load_rgb`; ``data.decode`` has a
            faster JPEG path for transforms that start with ``ToTensor``).
    """

    def __init__(self, records: Sequence[Record], transform: Callable[[Image.Image], Any] | None, strict: bool = False,
                 warn: bool = True, decode: Callable[[str | Path], Any] = load_rgb):
        self.records = list(records)
        if transform is None:
            from torchvision.transforms import ToTensor  # (torchvision takes seconds to import)

            transform = ToTensor()
        self.transform = transform
        self.strict = strict
        self.warn = warn
        self.decode = decode

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, bool]:
        rec = self.records[i]
        try:
            img = self.decode(rec.path)
        except SimpoolBenchError as exc:
            if self.strict:
                raise
            if self.warn:
                warnings.warn(f"{exc}; counted as failed and skipped", RuntimeWarning, stacklevel=2)
            return self.placeholder(i), i, False
        return self.transform(img), i, True

    def placeholder(self, i: int) -> torch.Tensor:
        """Zeros shaped like the transform's output for record ``i``'s image size."""
        rec = self.records[i]
        size = (rec.width if rec.width > 0 else 1, rec.height if rec.height > 0 else 1)
        out = self.transform(Image.new("RGB", size))
        return torch.zeros_like(torch.as_tensor(out))
