"""JPEG decoding through torchvision.io (libjpeg-turbo, no PIL image in between) for the protocols
whose transform starts with ``ToTensor`` on the full image (LOST's discovery): there the decoded
array goes through the same ``ToTensor`` arithmetic, and the pixels equal PIL's
``Image.open(path).convert("RGB")`` (tests/test_decode.py compares them on baseline, progressive,
4:4:4/4:2:2/4:2:0, grayscale, CMYK and EXIF-rotated JPEGs). Any other file, and any JPEG that
torchvision reports a problem with (truncated, corrupt), goes through PIL as before, so errors and
warnings are PIL's. Protocols that resize a PIL image (wsolevaluation, timm) keep PIL."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .images import header_size, load_rgb

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


def load_rgb_array(path: str | Path, max_pixels: int | None = None) -> Any:
    """(H, W, 3) uint8 array of a JPEG via torchvision.io, else (and on any problem) the RGB
    ``PIL.Image`` of :func:`load_rgb`; ``ToTensor`` turns both into the same tensor. An image over
    ``max_pixels`` (read from the header) goes to :func:`load_rgb`, which refuses it undecoded."""
    if str(path).lower().endswith(_JPEG_SUFFIXES) and _within(path, max_pixels):
        try:
            import torch
            from torchvision.io import ImageReadMode, decode_jpeg

            with open(path, "rb") as f:
                data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a libjpeg warning (e.g. premature end): let PIL decide
                warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points at TorchCodec
                img = decode_jpeg(data, mode=ImageReadMode.RGB)
            return np.ascontiguousarray(img.permute(1, 2, 0).numpy())
        except Exception:  # noqa: BLE001 - PIL decodes or names the problem, exactly as without this path
            pass
    return load_rgb(path, max_pixels)


def _within(path: str | Path, max_pixels: int | None) -> bool:
    """Whether the header gives at most ``max_pixels`` pixels (no limit: True; unreadable: False)."""
    if max_pixels is None:
        return True
    try:
        w, h = header_size(path)
    except Exception:  # noqa: BLE001 - load_rgb names the problem
        return False
    return w * h <= max_pixels
