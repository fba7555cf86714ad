"""Box geometry shared by the metrics. Boxes are (x0, y0, x1, y1).

- ``iou_wsol``: wsolevaluation (MaxBoxAcc): inclusive pixel boxes, areas with +1.
- ``iou_continuous``: plain IoU of continuous boxes, no +1 (for display and tests). LOST's exact
  CorLoc IoU (float32 with its 1e-7 terms) is ``metrics.corloc.lost_iou_pairs``.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ..errors import SimpoolBenchError


def iou_wsol(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (A, B) with wsolevaluation's +1 convention; a non-positive union gives 0."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    iw = np.maximum(0.0, ix1 - ix0 + 1)
    ih = np.maximum(0.0, iy1 - iy0 + 1)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou


def iou_continuous(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (A, B) of continuous boxes in float64: areas without +1; a zero union gives 0."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou


def resize_boxes_wsol(boxes: np.ndarray, width: int, height: int, size: int = 224) -> np.ndarray:
    """wsolevaluation ``resize_bbox``: each coordinate scaled to ``size`` and truncated with int().

    ``boxes``: (K, 4) or (4,) x0, y0, x1, y1 in the image's pixels; ``width``, ``height``: the
    image's (PIL's ``image.size`` order), or (K,) arrays, one per box (several images' boxes in one
    call); anything else is a ``SimpoolBenchError``."""
    raw = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes)
    if raw.shape[-1:] != (4,) or raw.ndim > 2 or raw.dtype.kind not in "iuf":
        raise SimpoolBenchError(
            f"resize_boxes_wsol: boxes of shape {raw.shape} and dtype {raw.dtype}: expected (K, 4) numbers x0, y0, x1, y1"
        )
    b = raw.astype(np.float64).reshape(-1, 4)
    if not np.isfinite(b).all():
        raise SimpoolBenchError(f"resize_boxes_wsol: box {b[~np.isfinite(b).all(axis=1)][0].tolist()} is not finite")
    for name, value in (("width", width), ("height", height), ("size", size)):
        v = np.asarray(value) if isinstance(value, (numbers.Real, np.ndarray)) else np.asarray(None)
        per_box = name != "size" and v.shape == (len(b),)
        if v.dtype.kind not in "iuf" or not (v.ndim == 0 or per_box) or not np.isfinite(v).all() or not (v > 0).all():
            raise SimpoolBenchError(
                f"resize_boxes_wsol: {name} {value!r}: expected a positive number of pixels"
                + (", or one per box" if name != "size" else "")
            )
    with np.errstate(over="ignore"):
        scaled = [b[:, 0] * size / width, b[:, 1] * size / height, b[:, 2] * size / width, b[:, 3] * size / height]
    if not all((np.abs(c) < 2.0**62).all() for c in scaled):  # width 1e-300: inf, cast to int64's minimum without a word
        raise SimpoolBenchError(
            f"resize_boxes_wsol: width {width!r}, height {height!r}: the boxes scaled by size / width and size / height "
            "overflow; expected the image's size in pixels (e.g. 500, 375)"
        )
    return np.stack([c.astype(np.int64) for c in scaled], axis=1)
