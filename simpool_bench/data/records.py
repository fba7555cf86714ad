"""The per-image metadata record every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float64)


@dataclass
class Record:
    """Metadata of one image.

    Attributes:
        image_id: the dataset's own id (a relative path for wsol/ImageFolder, a file stem for VOC,
            a file name for COCO).
        path: the image file on disk.
        label: class index, or -1 where the dataset has none.
        width, height: original image size in pixels, or 0 where unknown until decoded.
        boxes: (K, 4) ground-truth boxes (x0, y0, x1, y1) in original pixels, in the protocol's
            own convention (see each reader).
    """

    image_id: str
    path: Path
    label: int = -1
    width: int = 0
    height: int = 0
    boxes: np.ndarray = field(default_factory=_no_boxes)
