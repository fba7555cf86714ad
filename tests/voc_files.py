"""VOC2007 files of generated images, for the tests and benchmarks/vs_peers.py: an image and its
one-object annotation (``write_voc_image``) and the split list (``write_voc_split``).

A plain module (numpy and PIL only, no pytest), imported by bare name like the literal references
beside it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def write_voc_image(root: Path, image_id: str, img: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """``JPEGImages/<image_id>.jpg`` (quality 90) and ``Annotations/<image_id>.xml`` with the
    image's size and one object ``a`` at ``box`` (inclusive 0-based pixels, written 1-based as VOC's
    annotations are)."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", format="JPEG", quality=90)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / f"{image_id}.xml").write_text(
        f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size><object><name>a</name>"
        f"<truncated>0</truncated><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object></annotation>"
    )


def write_voc_split(root: Path, ids: Sequence[str], split: str = "trainval") -> Path:
    """``ImageSets/Main/<split>.txt``: the image ids, one a line. Returns ``root``."""
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
