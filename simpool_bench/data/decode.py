"""JPEG decoding through torchvision.io (libjpeg-turbo) that gives PIL's pixels.

The references decode with ``PIL.Image.open(path).convert("RGB")``. For an 8-bit greyscale, colour
or CMYK JPEG, libjpeg-turbo through ``torchvision.io.decode_jpeg`` gives the same pixels
(tests/test_decode.py compares baseline, progressive, 4:4:4/4:2:2/4:2:0, restart-marker, greyscale,
CMYK and EXIF-tagged JPEGs, odd sizes down to 1x1, and corrupted ones):

* ``load_rgb_array`` hands discovery (whose transform starts with ``ToTensor`` on the full image)
  the (H, W, 3) array: ``ToTensor`` does the same arithmetic on it, and skips PIL's repacking;
* localization and classification keep PIL's own decode: they resize the PIL image, and handing
  their PIL transforms libjpeg-turbo's pixels as a PIL image (``Image.fromarray``), which gives the
  same tensors bit for bit (tested), measured no faster (``benchmarks/decode_paths.py``, README).

Anything else goes through :func:`~simpool_bench.data.images.load_rgb`, so errors, warnings and
pixels are PIL's: another suffix, a file PIL does not read as an 8-bit L/RGB/CMYK JPEG, a header over
the pixel limit (``max_pixels``, else PIL's own, over which PIL warns or refuses), a JPEG libjpeg
reports anything about (an error, such as a truncated file, or a warning about corrupt data), and
the path switched off (``ENABLED``, for tests). libjpeg prints its warnings on stderr, where PIL
stays silent, so fd 2 points at a file of its own while libjpeg decodes: libjpeg's lines are
dropped, anything another thread wrote meanwhile is written on (a little later)."""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .images import load_rgb, read_header

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")
_PLAIN_MODES = ("RGB", "L", "CMYK")  # 8-bit JPEGs (PIL and torchvision both read CMYK as Adobe's inverted)

#: The libjpeg-turbo path on (False: every image through ``load_rgb``, as tests compare).
ENABLED = True


def load_rgb_array(path: str | Path, max_pixels: int | None = None) -> Any:
    """(H, W, 3) uint8 array of a JPEG where :func:`jpeg_pixels` can, else the RGB ``PIL.Image``
    of :func:`load_rgb`; ``ToTensor`` turns both into the same tensor."""
    pixels = jpeg_pixels(path, max_pixels)
    return load_rgb(path, max_pixels) if pixels is None else pixels


def jpeg_pixels(path: str | Path, max_pixels: int | None = None) -> np.ndarray | None:
    """(H, W, 3) uint8: ``path`` decoded by libjpeg-turbo, the pixels of PIL's ``convert("RGB")``;
    None where PIL has to decide (see the module's docstring). The size limit is checked on PIL's
    reading of the header, before any pixel is decoded."""
    if not ENABLED or not str(path).lower().endswith(_JPEG_SUFFIXES):
        return None
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS  # over it, PIL warns or refuses
    try:
        with open(path, "rb") as f:
            data = f.read()
        fmt, mode, (w, h) = read_header(io.BytesIO(data))
        if fmt != "JPEG" or mode not in _PLAIN_MODES or (limit is not None and w * h > limit):
            return None
        pixels = _libjpeg_rgb(data)
    except Exception:  # noqa: BLE001 - load_rgb decodes or names the problem, exactly as without this path
        return None
    return pixels if pixels is not None and pixels.shape == (h, w, 3) else None


def _libjpeg_rgb(data: bytes) -> np.ndarray | None:
    """``decode_jpeg`` of ``data`` in RGB mode as (H, W, 3); None when libjpeg printed a warning."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    with _REDIRECT_LOCK:  # one thread at a time moves fd 2 (two would restore each other's sink)
        sink = _stderr_sink()
        saved = os.dup(2)
        try:
            os.dup2(sink, 2)  # libjpeg prints its warnings (corrupt data) there; PIL prints nothing
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points at TorchCodec
                img = decode_jpeg(encoded, mode=ImageReadMode.RGB)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        printed = _drain(sink)
    if not printed:
        return img.permute(1, 2, 0).numpy()  # decode_jpeg's CHW is a view of a contiguous HWC
    others = b"".join(line for line in printed.splitlines(keepends=True) if not _LIBJPEG_WARNING.match(line))
    while others:  # another thread's output, written while fd 2 pointed at the sink
        others = others[os.write(2, others) :]
    return None


#: The start of each warning libjpeg(-turbo) prints (jerror.h's JWRN_ messages).
_LIBJPEG_WARNING = re.compile(
    rb"Corrupt JPEG data: |Premature end of JPEG file|Inconsistent progression sequence |Invalid SOS parameters |"
    rb"Unknown Adobe color transform code |Warning: unknown JFIF revision number |Application transferred too many scanlines"
)
_REDIRECT_LOCK = threading.Lock()
_sink: tuple[int, int] | None = None  # (pid, fd): a process's own, never a forked parent's


def _stderr_sink() -> int:
    """This process's unnamed file (in memory where the OS can) that takes stderr while libjpeg decodes."""
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("simpool-bench-libjpeg")
        else:
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())  # the unnamed file lives on through this descriptor
        _sink = (os.getpid(), fd)
    return _sink[1]


def _drain(fd: int) -> bytes:
    """What was written to ``fd`` (from its start), which is then emptied."""
    size = os.fstat(fd).st_size
    if not size:
        return b""
    os.lseek(fd, 0, os.SEEK_SET)  # fd 2 shared this offset
    chunks = []
    while chunk := os.read(fd, size):
        chunks.append(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    return b"".join(chunks)
