"""Image decoding and the map-style dataset every evaluation uses.

Decoding follows the references (wsolevaluation, LOST via torchvision's VOC/COCO datasets, timm's
ImageFolder): ``PIL.Image.open(path).convert("RGB")``, no EXIF rotation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image

from ..errors import SimpoolBenchError
from .inputs import DEFAULT_MAX_PIXELS, warn_data
from .records import Record

# What PIL raises on a file that is missing, truncated, not an image, or too large.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageTooLarge(SimpoolBenchError):
    """An image whose header size is over the pixel limit (it is not decoded)."""


@contextlib.contextmanager
def _no_pil_bomb_check() -> Iterator[None]:
    """PIL's decompression-bomb check off while a header is read, when our own size check comes
    next (PIL would warn, or refuse past twice its limit, before we see the size)."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, nothing decoded, whatever the size (no bomb check).

    Raises:
        OSError, ValueError, SyntaxError: the file is missing or not an image.
    """
    return read_header(path)[2]


def read_header(source: str | Path | IO[bytes]) -> tuple[str | None, str, tuple[int, int]]:
    """(format, mode, (width, height)) as PIL reads them from a file's header (``source``: a path
    or the file's bytes as a binary stream), nothing decoded, whatever the size (no bomb check).

    Raises:
        OSError, ValueError, SyntaxError: the file is missing or not an image.
    """
    with _no_pil_bomb_check(), Image.open(source) as img:
        return img.format, img.mode, img.size


def warn_size_differences(records: Sequence[Record], source: str, consequence: str) -> list[tuple[Record, tuple[int, int]]]:
    """``(record, (width, height) of its file's header)`` for each record whose listed size (from
    ``source``) is not its file's, counted in one ``DataWarning`` that names the first and ends with
    ``consequence`` (what the protocol does about it). A file whose header does not read is left
    out: decoding reports it, per image."""
    differ = []
    for r in records:
        try:
            size = header_size(r.path)
        except _DECODE_ERRORS:
            continue
        if size != (r.width, r.height):
            differ.append((r, size))
    if differ:
        r, (w, h) = differ[0]
        warn_data(
            f"{source}: {len(differ)} of {len(records)} image sizes differ from the image files (first: {r.image_id} "
            f"listed {r.width}x{r.height}, file {w}x{h}); {consequence}"
        )
    return differ


def sizes_from_files(records: Sequence[Record], source: str, protocol: str) -> None:
    """Set each record's ``width``/``height`` to its file's header size, the size ``protocol`` works
    with (LOST pads, boxes and clips on the decoded image, never on the annotation's size), and say
    in one ``DataWarning`` how many differed from ``source``'s sizes (the first one named)."""
    for r, (w, h) in warn_size_differences(records, source, f"the files' sizes are used, as {protocol} does"):
        r.width, r.height = w, h


def load_rgb(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Decode ``path`` into an RGB ``PIL.Image`` (fully loaded, file closed).

    With ``max_pixels``, the size is read from the header first and an image of more pixels is
    refused before any pixel is decoded (``ImageTooLarge``); without it, PIL's own limit applies.

    Raises:
        SimpoolBenchError: naming the file, when it is missing, does not decode or is too large.
    """
    try:
        with open(path, "rb") as f:
            with _no_pil_bomb_check() if max_pixels is not None else contextlib.nullcontext():
                img = Image.open(f)
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageTooLarge(f"image {path} is {w}x{h} ({w * h:,} pixels), over the limit of {max_pixels:,} (--max-pixels)")
            return img.convert("RGB")  # convert() loads the pixels while the file is open
    except _DECODE_ERRORS as exc:
        raise SimpoolBenchError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from None


class ImageDataset(torch.utils.data.Dataset):
    """Images of a list of ``Record`` through a transform; item ``i`` is ``(image, i, ok)``.

    An image that does not decode, or whose header says it has more than ``max_pixels`` pixels
    (checked before decoding), raises ``SimpoolBenchError`` (naming the file) when ``strict``;
    otherwise it warns and returns ``ok=False`` with a zero placeholder: the transform applied to a
    black RGB image of the record's size (1x1 when the size is unknown or over ``max_pixels``), then zeroed. Its shape is
    therefore what the transform would give a real image of that size (fixed for resize/crop
    transforms, the record's own size for LOST's full-resolution transform). The engine counts
    and skips such images. Picklable when ``transform`` is (torchvision/timm transforms are).

    Args:
        records: image metadata (only ``path``, ``width`` and ``height`` are used here).
        transform: PIL image -> tensor; ``None`` means ``torchvision.transforms.ToTensor()``.
        strict: raise instead of warning on an image that does not decode.
        warn: warn about an image that does not decode (run by the engine, its main process
            names the first ``NAMED_FAILURES`` of a run and counts the rest; False: silent there too).
        max_pixels: the pixel limit (``--max-pixels``); ``None``: PIL's own.
        decode: ``(path, max_pixels)`` -> what ``transform`` takes (default :func:`load_rgb`;
            ``data.decode`` has a faster JPEG path for transforms that start with ``ToTensor``).
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: Callable[[Image.Image], Any] | None,
        strict: bool = False,
        warn: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        decode: Callable[[str | Path, int | None], Any] = load_rgb,
    ):
        self.records = list(records)
        if transform is None:
            from torchvision.transforms import ToTensor  # (torchvision takes seconds to import)

            transform = ToTensor()
        self.transform = transform
        self.strict = strict
        self.warn = warn
        self.max_pixels = max_pixels
        self.decode = decode

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, bool]:
        rec = self.records[i]
        try:
            img = self.decode(rec.path, self.max_pixels)
        except SimpoolBenchError as exc:
            if self.strict:
                raise
            if self.warn:
                warnings.warn(f"{exc}; counted as failed and skipped", RuntimeWarning, stacklevel=2)
            return self.placeholder(i), i, False
        return self.transform(img), i, True

    def deferred_normalize(self) -> tuple[ImageDataset, Callable[[torch.Tensor], torch.Tensor]] | None:
        """This dataset handing over uint8 images, and the step that makes them the transform's
        floats on the device (``data.normalize``); None when the transform does not split so."""
        from .normalize import split_normalize

        split = split_normalize(self.transform) if self.decode is load_rgb else None
        if split is None:
            return None
        host, on_device = split
        return ImageDataset(
            self.records, host, strict=self.strict, warn=self.warn, max_pixels=self.max_pixels, decode=self.decode
        ), on_device

    def placeholder(self, i: int) -> torch.Tensor:
        """Zeros shaped like the transform's output for record ``i``'s image size."""
        rec = self.records[i]
        size = (rec.width if rec.width > 0 else 1, rec.height if rec.height > 0 else 1)
        if self.max_pixels is not None and size[0] * size[1] > self.max_pixels:
            size = (1, 1)  # never build a huge tensor for an image refused as too large
        out = self.transform(Image.new("RGB", size))
        return torch.zeros_like(torch.as_tensor(out))

    def failure(self, i: int) -> str:
        """Why item ``i`` did not load (its file is read again), for a one-line error."""
        try:
            self.decode(self.records[i].path, self.max_pixels)
        except SimpoolBenchError as exc:
            return str(exc)
        return f"image {self.records[i].path} did not load"
