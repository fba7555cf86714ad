"""The per-image metadata record every reader produces."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The boxes of a record without any: one shared, read-only (0, 4) array, not one per record
#: (an ImageNet train split holds 1.28M records).
NO_BOXES = np.zeros((0, 4), dtype=np.float64)
NO_BOXES.flags.writeable = False


def _no_boxes() -> np.ndarray:
    return NO_BOXES


@dataclass(slots=True)
class Record:
    """Metadata of one image.

    Attributes:
        image_id: the dataset's own id (a relative path for wsol/ImageFolder, a file stem for VOC,
            a file name for COCO).
        path: the image file on disk.
        label: class index, or -1 where the dataset has none.
        width, height: original image size in pixels, or 0 where unknown until decoded.
        boxes: (K, 4) ground-truth boxes (x0, y0, x1, y1) in original pixels, in the protocol's
            own convention (see each reader); ``NO_BOXES`` (shared, read-only) by default.

    Slotted (no per-record ``__dict__``): the 1.28M records of an ImageNet train split hold 469
    instead of 801 MiB (``benchmarks/record_memory.py``).
    """

    image_id: str
    path: Path
    label: int = -1
    width: int = 0
    height: int = 0
    boxes: np.ndarray = field(default_factory=_no_boxes)


def records_sha256(*groups: Sequence[Record]) -> str:
    """sha256 of the data a run evaluates, as annotated: every record's id, label, size and
    ground-truth boxes, in order, group by group (e.g. a k-NN run's evaluation images, then its
    memory bank). Paths and file times are left out, so the same annotations give the same value
    on any machine, and an edited id, label, size or box gives another."""
    h = hashlib.sha256()
    for g, records in enumerate(groups):
        h.update(f"group {g}: {len(records)} records\n".encode())
        for r in records:
            boxes = np.ascontiguousarray(r.boxes, dtype=np.float64).reshape(-1, 4)
            h.update(f"{r.image_id!r} {int(r.label)} {int(r.width)}x{int(r.height)} {len(boxes)}\n".encode())
            h.update(boxes.tobytes())
    return h.hexdigest()
