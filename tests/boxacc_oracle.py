"""The literal MaxBoxAcc pipeline of wsolevaluation (Choe et al., CVPR 2020), with OpenCV.

A plain re-implementation of clovaai/wsolevaluation ``inference.py`` (``normalize_scoremap``,
the cubic resize in ``CAMComputer``) and ``evaluation.py`` (``compute_bboxes_from_scoremaps``,
``calculate_multiple_iou``, ``BoxEvaluator.accumulate``): one ``cv2.findContours`` per
threshold per image, as the reference does. It is the oracle of tests/test_boxacc.py and of
benchmarks/boxacc_speed.py; it is deliberately slow and obvious.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """inference.py ``normalize_scoremap``: NaN anywhere or a constant map -> zeros, else min-max."""
    cam = cam.copy()
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def reference_scoremap(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """``t2n`` (float64), ``cv2.resize(..., INTER_CUBIC)`` to size x size, then normalisation."""
    cam = np.asarray(cam).astype(np.float64)
    resized = cv2.resize(cam, (size, size), interpolation=cv2.INTER_CUBIC)
    return normalize_scoremap(resized)


def quantise(scoremap: np.ndarray) -> np.ndarray:
    """evaluation.py: ``(scoremap * 255).astype(np.uint8)``."""
    return (scoremap * 255).astype(np.uint8)


def boxes_of_binary(binary: np.ndarray, multi_contour: bool = True) -> np.ndarray:
    """``scoremap2bbox`` after the threshold: RETR_TREE contours -> clipped boundingRect boxes."""
    height, width = binary.shape[:2]
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.asarray([[0, 0, 0, 0]])
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return np.asarray(boxes)


def boxes_at_threshold(u8: np.ndarray, threshold: float, multi_contour: bool = True) -> np.ndarray:
    """One threshold of ``compute_bboxes_from_scoremaps``: ``cv2.threshold`` at
    ``int(threshold * max)`` (THRESH_BINARY: value > thresh), then the contour boxes."""
    image = np.expand_dims(u8, 2)
    _, binary = cv2.threshold(src=image, thresh=int(threshold * np.max(image)), maxval=255, type=cv2.THRESH_BINARY)
    return boxes_of_binary(binary, multi_contour)


def calculate_multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """evaluation.py ``calculate_multiple_iou`` with its own ops and dtypes: (A, 4) and (B, 4)
    arrays tiled to (A, B, 4) by ``np.tile``, ``expand_dims``, ``reshape`` and ``transpose``, kept in
    the dtype they come in (the reference's boxes are int64 arrays of Python ints; float boxes are
    not truncated), +1 areas, ``inter / union``, a non-positive union giving 0. (Its
    ``check_box_convention`` calls only raise on bad boxes; they are left out.)"""
    n_a, n_b = box_a.shape[0], box_b.shape[0]
    a = np.expand_dims(np.tile(box_a, n_b), axis=1).reshape((n_a, n_b, -1))
    b = np.transpose(np.expand_dims(np.tile(box_b, n_a), axis=1).reshape((n_b, n_a, -1)), (1, 0, 2))
    min_x = np.maximum(a[:, :, 0], b[:, :, 0])
    min_y = np.maximum(a[:, :, 1], b[:, :, 1])
    max_x = np.minimum(a[:, :, 2], b[:, :, 2])
    max_y = np.minimum(a[:, :, 3], b[:, :, 3])
    inter = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (a[:, :, 2] - a[:, :, 0] + 1) * (a[:, :, 3] - a[:, :, 1] + 1)
    area_b = (b[:, :, 2] - b[:, :, 0] + 1) * (b[:, :, 3] - b[:, :, 1] + 1)
    denominator = area_a + area_b - inter
    degenerate = np.where(denominator <= 0)
    denominator[degenerate] = 1
    ious = inter / denominator
    ious[degenerate] = 0
    return ious


def _correct_per_threshold(boxes_per_thr: Sequence[np.ndarray], gt_boxes: np.ndarray, iou_thresholds: Sequence[int]) -> np.ndarray:
    """``BoxEvaluator.accumulate``: best IoU over all (box, GT) pairs per threshold, then
    ``>= IoU / 100``; returns (J, T) bool."""
    counts = [len(b) for b in boxes_per_thr]
    multiple_iou = calculate_multiple_iou(np.concatenate(boxes_per_thr, axis=0), np.asarray(gt_boxes))
    best_per_box = multiple_iou.max(1)
    sliced, idx = [], 0
    for nr in counts:
        sliced.append(max(best_per_box[idx : idx + nr]))
        idx += nr
    sliced = np.asarray(sliced)
    return np.stack([sliced >= (thr / 100) for thr in iou_thresholds])


def reference_hits(
    u8: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float],
    iou_thresholds: Sequence[int] = (30, 50, 70),
    multi_contour: bool = True,
) -> np.ndarray:
    """(J, T) correctness of one quantised map, one findContours per threshold (the reference)."""
    boxes = [boxes_at_threshold(u8, t, multi_contour) for t in thresholds]
    return _correct_per_threshold(boxes, gt_boxes, iou_thresholds)


def level_boxes(u8: np.ndarray, multi_contour: bool = True) -> dict[int, np.ndarray]:
    """Boxes of every level L = 0..max-1 (binary ``u8 > L``); the reference's threshold t gives
    exactly level ``int(t * max)``. With max 0 the only level is 0, with the box (0, 0, 0, 0).
    findContours runs once per distinct pixel value below the max (and once for "every pixel"
    if the min is above 0): between two consecutive values v < v' the binary ``u8 > L`` is the
    same for every L in [v, v'), so those levels share one array."""
    top = int(u8.max())
    if top == 0:
        return {0: boxes_of_binary(np.zeros_like(u8), multi_contour)}
    values = np.unique(u8)
    out: dict[int, np.ndarray] = {}
    boxes = None
    for level in range(top):
        if boxes is None or level in values:
            _, binary = cv2.threshold(u8, level, 255, cv2.THRESH_BINARY)
            boxes = boxes_of_binary(binary, multi_contour)
        out[level] = boxes
    return out


def level_cached_hits(
    u8: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float],
    iou_thresholds: Sequence[int] = (30, 50, 70),
    multi_contour: bool = True,
    per_level: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Same as ``reference_hits`` with findContours and the IoU computed once per distinct binary
    image instead of once per threshold (the binary depends on t only through ``int(t * max)``)."""
    per_level = level_boxes(u8, multi_contour) if per_level is None else per_level
    best_of: dict[int, float] = {}
    for boxes in per_level.values():
        if id(boxes) not in best_of:
            best_of[id(boxes)] = calculate_multiple_iou(boxes, np.asarray(gt_boxes)).max()
    top = np.max(u8)
    best_per_thr = np.asarray([best_of[id(per_level[int(t * top)])] for t in thresholds])
    return np.stack([best_per_thr >= (thr / 100) for thr in iou_thresholds])


def reference_thresholds(interval: float) -> list[float]:
    """inference.py: ``list(np.arange(0, 1, cam_curve_interval))``."""
    return list(np.arange(0, 1, interval))
