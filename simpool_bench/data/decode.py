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

from .images import load_rgb

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")


def load_rgb_array(path: str | Path) -> Any:
    """(H, W, 3) uint8 array of a JPEG via torchvision.io, else (and on any problem) the RGB
    ``PIL.Image`` of :func:`load_rgb`; ``ToTensor`` turns both into the same tensor."""
    if str(path).lower().endswith(_JPEG_SUFFIXES):
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
    return load_rgb(path)
