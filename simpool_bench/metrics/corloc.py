"""CorLoc (LOST, Simeoni et al. BMVC 2021; valeoai/LOST ``main_lost.py``, ``datasets.bbox_iou``).

An image is correct when its one predicted box has IoU >= 0.5 with ANY of its ground-truth boxes;
CorLoc = 100 * correct / images evaluated. An image with no ground-truth box counts as evaluated and
missed (LOST's counter runs unless ``--no_hard`` dropped the image beforehand).

The IoU is LOST's ``bbox_iou`` to the bit: no +1, eps = 1e-7 added to both box heights and to the
union, and, because LOST's boxes are int64 (ViT predictions ``patch * int``, VOC ``int()``, COCO
``int(round())``), float32 arithmetic (an int64 tensor plus a Python float gives float32). This
differs from ``boxes.iou_continuous`` (float64, no eps) where an IoU is exactly 0.5: e.g. prediction
(0, 0, 2, 1) and ground truth (0, 0, 1, 1) is a hit there and a miss in LOST. Boxes must therefore
be integral (any dtype); anything else is refused rather than silently rounded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import SimpoolBenchError
from .base import Accumulator, check_box_sequence, image_count
from .catalog import CORLOC_METRICS

#: LOST ``main_lost.py``: ``torch.any(ious >= 0.5)``.
CORLOC_IOU_THRESHOLD = 0.5
#: LOST ``datasets.bbox_iou`` default ``eps``.
LOST_IOU_EPS = 1e-7


def _int_boxes(boxes: object, name: str) -> np.ndarray:
    arr = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise SimpoolBenchError(f"{name}: expected (K, 4) boxes (x0, y0, x1, y1), got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.floor(arr)):
        bad = arr.reshape(-1)[:4].tolist()
        raise SimpoolBenchError(f"{name}: LOST's CorLoc takes integer pixel boxes, got {arr.dtype} {bad}...; round them first")
    return arr.astype(np.int64)


def lost_iou_pairs(pred: np.ndarray, gt: np.ndarray) -> torch.Tensor:
    """LOST ``bbox_iou`` of row-aligned int64 box pairs (M, 4), (M, 4) -> float32 (M,).

    The same tensor ops in the same dtypes as the reference (int64 coordinates, float32 from the
    first ``+ eps`` on), applied elementwise, so every value equals the reference's bit for bit.
    """
    a = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.int64))
    b = torch.from_numpy(np.ascontiguousarray(gt, dtype=np.int64))
    a_x1, a_y1, a_x2, a_y2 = a.unbind(1)
    b_x1, b_y1, b_x2, b_y2 = b.unbind(1)
    inter = (torch.min(a_x2, b_x2) - torch.max(a_x1, b_x1)).clamp(0) * (torch.min(a_y2, b_y2) - torch.max(a_y1, b_y1)).clamp(0)
    w1, h1 = a_x2 - a_x1, a_y2 - a_y1 + LOST_IOU_EPS
    w2, h2 = b_x2 - b_x1, b_y2 - b_y1 + LOST_IOU_EPS
    union = w1 * h1 + w2 * h2 - inter + LOST_IOU_EPS
    return inter / union


def corloc_hits(pred_boxes: object, gt_boxes: Sequence[object]) -> np.ndarray:
    """Per-image CorLoc hits (B,) bool: IoU (LOST ``bbox_iou``) >= 0.5 with any ground-truth box.

    Args:
        pred_boxes: (B, 4) one predicted box per image, integral pixels.
        gt_boxes: B arrays (K_i, 4) of integral ground-truth boxes; K_i = 0 gives a miss.
    """
    pred = _int_boxes(pred_boxes, "pred_boxes")
    check_box_sequence(gt_boxes, "predicted box")
    if len(pred) != len(gt_boxes):
        raise SimpoolBenchError(f"gt_boxes: expected one (K, 4) array per predicted box ({len(pred)}), got {len(gt_boxes)}")
    gts = [_int_boxes(g, f"gt_boxes[{i}]") for i, g in enumerate(gt_boxes)]
    counts = np.array([len(g) for g in gts], dtype=np.int64)
    hits = np.zeros(len(pred), dtype=bool)
    if counts.sum() == 0:
        return hits
    owner = np.repeat(np.arange(len(pred)), counts)
    iou = lost_iou_pairs(pred[owner], np.concatenate(gts))
    ok = (iou >= CORLOC_IOU_THRESHOLD).numpy()
    hits[np.unique(owner[ok])] = True
    return hits


class CorLocAccumulator(Accumulator):
    """Streaming CorLoc (LOST protocol): summed ``hits`` and ``total`` image counts (exact merges)."""

    METRICS = CORLOC_METRICS
    hits: torch.Tensor
    total: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hits", torch.zeros((), dtype=torch.int64))
        self.add_state("total", torch.zeros((), dtype=torch.int64))

    def update(self, pred_boxes: object, gt_boxes: Sequence[object]) -> np.ndarray:
        """Score one batch: ``pred_boxes`` (B, 4) and ``gt_boxes`` B arrays (K, 4), whole-pixel
        ``(x0, y0, x1, y1)`` boxes of the image at its full resolution, LOST's convention (see
        ``corloc_hits``); returns the per-image hits (B,) bool."""
        hits = corloc_hits(pred_boxes, gt_boxes)
        self.hits = self.hits + int(hits.sum())
        self.total = self.total + len(hits)
        return hits

    def add_misses(self, n: int) -> None:
        """Count ``n`` images without a correct box (e.g. non-finite maps)."""
        self.total = self.total + image_count(n)

    def compute(self) -> dict[str, float | int]:
        """``corloc`` in percent, ``hits``, ``total``. No image seen: ``corloc`` NaN, ``hits`` and
        ``total`` 0, no error (``BoxAccumulator.compute`` raises there: it has no curve to report)."""
        hits, total = int(self.hits), int(self.total)
        return {"corloc": 100.0 * hits / total if total else float("nan"), "hits": hits, "total": total}
