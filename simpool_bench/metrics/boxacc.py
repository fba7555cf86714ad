"""MaxBoxAcc and MaxBoxAccV2 (Choe et al., "Evaluating Weakly Supervised Object Localization
Methods Right", CVPR 2020), exactly as clovaai/wsolevaluation computes them, and fast.

The reference pipeline (``inference.py`` then ``evaluation.py``), per image:
1. the score map (float64, as ``t2n``) is resized to 224x224 with ``cv2.resize(INTER_CUBIC)`` and
   min-max normalised (``normalize_scoremap``: a NaN anywhere, or a constant map, gives zeros);
2. ``u8 = (map * 255).astype(np.uint8)``; for each threshold t of ``np.arange(0, 1, interval)``
   the binary image ``u8 > int(t * u8.max())`` goes through ``cv2.findContours(RETR_TREE,
   CHAIN_APPROX_SIMPLE)``; each contour gives the box ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``
   of its ``boundingRect``; no contour gives (0, 0, 0, 0). V2 (``multi_contour``) keeps every
   contour, V1 only the largest by ``cv2.contourArea``;
3. the image is correct at (t, IoU) when the best IoU (+1 convention) over all its boxes and all
   its GT boxes is ``>= IoU / 100``. BoxAcc(t) = 100 * correct / images; MaxBoxAcc = max over t;
   MaxBoxAccV2 = the mean of MaxBoxAcc over IoU 30, 50, 70.

The reference calls OpenCV once per threshold and image (1000 times at interval 0.001). Here the
binary images of a map are seen as its nested level sets (at most 255 distinct ones) and all
their boxes come from one union-find sweep per map (``_components``), giving identical counts.
V1 uses OpenCV itself (for ``contourArea``), once per distinct level instead of per threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import SimpoolBenchError
from ..registry import MIN_INTERVAL
from ..transforms import WSOL_IMAGE_SIZE
from ..workers import cpu_count
from .base import Accumulator, check_box_sequence, image_count
from .boxes import iou_wsol
from .catalog import BOXACC_METRICS

WSOL_IOU_THRESHOLDS = (30, 50, 70)
"""wsolevaluation ``config.py`` ``--iou_threshold_list``: the IoU thresholds (percent) of MaxBoxAccV2."""
WSOL_CAM_CURVE_INTERVAL = 0.001
"""wsolevaluation ``config.py`` ``--cam_curve_interval`` (train/eval pipeline); its standalone
``evaluation.py`` defaults to 0.01."""
TOP1_LOC_IOU = 50
"""IoU threshold (percent) of Top-1 Loc and GT-known Loc (the classic localisation accuracies)."""


def cam_thresholds(interval: float = WSOL_CAM_CURVE_INTERVAL) -> np.ndarray:
    """Score-map thresholds of wsolevaluation: ``np.arange(0, 1, interval)``."""
    if isinstance(interval, np.floating) and not isinstance(interval, float):  # np.float32(0.01) is 0.0099999998: 101 thresholds
        raise SimpoolBenchError(
            f"interval {interval!r}: a {interval.dtype} step is not the decimal one it prints as (np.arange(0, 1, it) gives "
            "other thresholds); expected a Python float in (0, 1), e.g. 0.001"
        )
    if not (isinstance(interval, (int, float)) and not isinstance(interval, bool) and 0 < interval < 1):
        raise SimpoolBenchError(f"interval {interval!r}: expected a number in (0, 1), e.g. 0.001")
    if interval < MIN_INTERVAL:
        raise SimpoolBenchError(
            f"interval {interval!r}: {1 / interval:.3g} thresholds; expected a step >= {MIN_INTERVAL:g} (wsolevaluation: 0.001 or 0.01)"
        )
    return np.arange(0, 1, interval)


def _as_float64_map(score_map: Any, index: int | None = None) -> np.ndarray:
    where = "score map" if index is None else f"score map {index}"
    if isinstance(score_map, torch.Tensor):
        score_map = score_map.detach().cpu()
        if not score_map.is_floating_point():
            score_map = score_map.double()
        score_map = score_map.float().numpy() if score_map.dtype in (torch.float16, torch.bfloat16) else score_map.numpy()
    m = np.asarray(score_map)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise SimpoolBenchError(f"{where}: shape {m.shape}, expected a non-empty 2-D (h, w) map")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer) or m.dtype == np.bool_):
        raise SimpoolBenchError(f"{where}: dtype {m.dtype}, expected real numbers")
    m = m.astype(np.float64)  # wsolevaluation t2n: .astype(np.float)
    if np.isinf(m).any():
        raise SimpoolBenchError(f"{where}: contains infinite values (the reference's result is undefined there)")
    return m


def prepare_scoremap(score_map: np.ndarray | torch.Tensor, size: tuple[int, int] = (WSOL_IMAGE_SIZE, WSOL_IMAGE_SIZE)) -> np.ndarray:
    """The quantised score map of wsolevaluation: float64, ``cv2.resize(INTER_CUBIC)`` to ``size``
    (height, width), ``normalize_scoremap`` (NaN or constant -> zeros, else min-max), then
    ``(map * 255).astype(np.uint8)``. Maps already at ``size`` go through the same steps."""
    m = _as_float64_map(score_map)
    h, w = int(size[0]), int(size[1])
    out = np.empty((h, w), dtype=np.uint8)
    _prepare_into(m, out)
    return out


def _prepare_into(m: np.ndarray, out: np.ndarray) -> None:
    h, w = out.shape
    resized = cv2.resize(m, (w, h), interpolation=cv2.INTER_CUBIC)
    _kernels().normalise_quantise(np.ascontiguousarray(resized, dtype=np.float64), out)


def _plain(v: float) -> str:
    return str(int(v)) if np.isfinite(v) and float(v).is_integer() else repr(float(v))


def _box_fault(box: np.ndarray, width: int, height: int) -> str | None:
    """What is wrong with one GT box ``(x0, y0, x1, y1)`` of a ``width`` x ``height`` map; None if nothing."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite(box).all():
        return "is not finite"
    if any(v != round(v) for v in (x0, y0, x1, y1)):
        return "is not whole pixels"
    if min(x0, y0) < 0:
        return "has a negative coordinate"
    if x0 > x1 or y0 > y1:
        return "is inverted (x0 > x1 or y0 > y1)"
    if x1 > width or y1 > height:
        return f"reaches past the {width}x{height} map"
    return None


def _as_gt_boxes(gt_boxes: Sequence[Any], n: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated (N, 4) int64 GT boxes and (n + 1,) offsets, each box checked: whole, finite
    pixels with 0 <= x0 <= x1 <= ``width`` and 0 <= y0 <= y1 <= ``height`` (the reference's
    ``check_box_convention``, and the map's bounds: wsolevaluation's ``resize_bbox`` gives at most
    the resized side, reached by a box at the image's edge)."""
    check_box_sequence(gt_boxes, "score map")
    if len(gt_boxes) != n:
        raise SimpoolBenchError(f"gt_boxes: {len(gt_boxes)} entries for {n} score maps")
    fast = _gt_boxes_fast(gt_boxes, width, height)
    if fast is not None:
        return fast
    parts, offsets = [], np.zeros(n + 1, dtype=np.int64)
    for i, boxes in enumerate(gt_boxes):
        b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes)
        if b.shape == (4,):
            b = b.reshape(1, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise SimpoolBenchError(f"gt_boxes[{i}]: shape {np.shape(boxes)}, expected (K, 4) boxes x0, y0, x1, y1")
        if b.shape[0] == 0:
            raise SimpoolBenchError(f"gt_boxes[{i}]: no ground-truth box (every image needs at least one)")
        if b.dtype.kind not in "iuf":  # a bool array (a mask?) read as boxes of 0s and 1s
            raise SimpoolBenchError(f"gt_boxes[{i}]: dtype {b.dtype}, expected numbers (pixel coordinates)")
        f = b.astype(np.float64)
        for box in f:
            fault = _box_fault(box, width, height)
            if fault is not None:
                raise SimpoolBenchError(
                    f"gt_boxes[{i}]: box [{', '.join(map(_plain, box))}] {fault}; expected whole pixels with "
                    f"0 <= x0 <= x1 <= {width} and 0 <= y0 <= y1 <= {height}, in the {width}x{height} resized image "
                    "(boxes in the original image's pixels: map them with resize_boxes_wsol(boxes, width, height))"
                )
        parts.append(f.astype(np.int64))
        offsets[i + 1] = offsets[i] + b.shape[0]
    gt = np.ascontiguousarray(np.concatenate(parts, axis=0)) if parts else np.zeros((0, 4), dtype=np.int64)
    return gt, offsets


def _gt_boxes_fast(gt_boxes: Sequence[Any], width: int, height: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``_as_gt_boxes`` in one vectorised check when every entry is a valid (K >= 1, 4) array of
    whole x0y0x1y1 boxes within the ``width`` x ``height`` map; None otherwise (the per-entry path
    then names the bad one)."""
    if len(gt_boxes) == 0 or not isinstance(gt_boxes[0], np.ndarray):
        return None
    dtype = gt_boxes[0].dtype  # one dtype: concatenating converts nothing
    if not all(isinstance(b, np.ndarray) and b.dtype == dtype and b.ndim == 2 and b.shape[1] == 4 and b.shape[0] > 0 for b in gt_boxes):
        return None
    cat = np.concatenate(gt_boxes, axis=0)
    if not (np.issubdtype(cat.dtype, np.integer) or np.issubdtype(cat.dtype, np.floating)):
        return None
    f = cat.astype(np.float64)
    if not np.isfinite(f).all() or (f != np.round(f)).any():
        return None
    b = cat.astype(np.int64)
    if (b < 0).any() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any() or (b[:, 2] > width).any() or (b[:, 3] > height).any():
        return None
    offsets = np.zeros(len(gt_boxes) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in gt_boxes], out=offsets[1:])
    return np.ascontiguousarray(b), offsets


def _iou_fractions(iou_thresholds: Sequence[int]) -> np.ndarray:
    """``_THRESHOLD / 100`` exactly as the reference compares (Python true division)."""
    return np.array([t / 100 for t in iou_thresholds], dtype=np.float64)


@lru_cache(maxsize=1)
def _kernels() -> Any:
    """The numba kernels (``_components``), imported on first use: importing numba and loading the
    cached kernels takes about half a second, which ``BoxAccumulator.warm_up`` lets a run spend
    while its first images decode."""
    from . import _components

    return _components


@lru_cache(maxsize=4)
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="boxacc")


def run_chunks(fn: Any, n: int, num_threads: int | None = None) -> None:
    """Call fn(lo, hi) over [0, n) split into one contiguous chunk per thread (default: a thread
    per core; OpenCV and the numba kernels release the GIL)."""
    threads = min(n, num_threads or cpu_count())
    if threads <= 1:
        fn(0, n)
        return
    bounds = np.linspace(0, n, threads + 1).astype(int)
    futures = [_pool(threads).submit(fn, int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    for f in futures:
        f.result()


def _opencv_v1_hits(u8: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, iou_thr: np.ndarray) -> np.ndarray:
    """(J, T) correctness with the largest contour only (MaxBoxAcc V1), through OpenCV: one
    findContours per distinct level ``int(t * max)`` (the binary image depends on t only through
    it) instead of one per threshold."""
    H, W = u8.shape
    top = np.max(u8)
    levels = (thresholds * top).astype(np.int64)  # == int(t * np.max(u8)) for each t
    ok_of_level: dict[int, np.ndarray] = {}
    for level in np.unique(levels):
        _, binary = cv2.threshold(u8, int(level), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            box = (0, 0, 0, 0)
        else:
            x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
            box = (x, y, min(x + w, W - 1), min(y + h, H - 1))
        best = iou_wsol(np.asarray([box]), gt).max()
        ok_of_level[int(level)] = best >= iou_thr
    return np.stack([ok_of_level[int(level)] for level in levels], axis=1)


def box_hits(
    u8_maps: np.ndarray,
    gt_boxes: Sequence[Any],
    thresholds: np.ndarray,
    iou_thresholds: Sequence[int] = WSOL_IOU_THRESHOLDS,
    multi_contour: bool = True,
    num_threads: int | None = None,
) -> np.ndarray:
    """Per-image correctness (B, J, T) bool of quantised maps ``u8_maps`` (B, H, W) uint8 against
    ``gt_boxes`` (B entries of (K, 4) boxes in map pixels, within the map: 0 <= x0 <= x1 <= W,
    0 <= y0 <= y1 <= H, else a ``SimpoolBenchError`` naming the box), at every score-map threshold and IoU
    threshold: wsolevaluation ``BoxEvaluator.accumulate`` before the sum over images.

    ``multi_contour=True`` (V2) runs the exact component-tree kernel, in parallel over images
    (``num_threads``, default all cores); ``False`` (V1) runs OpenCV per distinct level."""
    u8 = np.ascontiguousarray(u8_maps, dtype=np.uint8)
    if u8.ndim != 3:
        raise SimpoolBenchError(f"u8_maps: shape {u8.shape}, expected (B, H, W)")
    n = u8.shape[0]
    gt, offsets = _as_gt_boxes(gt_boxes, n, width=u8.shape[2], height=u8.shape[1])
    thr = np.ascontiguousarray(thresholds, dtype=np.float64)
    iou_thr = _iou_fractions(iou_thresholds)
    hits = np.zeros((n, len(iou_thr), len(thr)), dtype=np.uint8)
    if n == 0:
        return hits.astype(bool)
    if multi_contour:
        kernels = _kernels()

        def work(lo: int, hi: int) -> None:
            kernels.batch_hits(u8[lo:hi], gt[offsets[lo] : offsets[hi]], offsets[lo : hi + 1] - offsets[lo], thr, iou_thr, hits[lo:hi])
    else:

        def work(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                hits[i] = _opencv_v1_hits(u8[i], gt[offsets[i] : offsets[i + 1]], thr, iou_thr)

    run_chunks(work, n, num_threads)
    return hits.astype(bool)


@dataclass(frozen=True)
class BoxAccResult:
    """What ``BoxAccumulator.compute`` returns (accuracies in percent, as wsolevaluation).

    Attributes:
        iou_thresholds: the IoU thresholds (percent), e.g. (30, 50, 70).
        thresholds: (T,) score-map thresholds ``np.arange(0, 1, interval)``.
        curve: (T, J) BoxAcc at each score-map threshold and IoU threshold.
        maxboxacc: {IoU: max over thresholds of BoxAcc}.
        best_threshold: {IoU: the first threshold reaching that maximum}.
        maxboxacc_v2: mean of ``maxboxacc`` over the IoU thresholds (MaxBoxAccV2 when
            ``multi_contour`` and the IoUs are 30/50/70).
        multi_contour: True for V2 boxes (all contours), False for V1 (largest contour; its
            headline number is ``maxboxacc[50]``).
        n_images: images accumulated.
        gt_known_loc: ``maxboxacc[50]``: box correct at IoU 50 whatever the predicted class, at
            the best threshold (None without IoU 50).
        top1_loc: max over thresholds of the percentage of images whose box is correct at IoU 50
            AND whose class prediction is right (wsolevaluation issues #14/#50: MaxBoxAcc with the
            classification folded into the per-image correctness). None unless every update gave
            ``correct_cls`` and IoU 50 is among the thresholds.
        top1_best_threshold: the first threshold reaching ``top1_loc`` (None with it).
    """

    iou_thresholds: tuple[int, ...]
    thresholds: np.ndarray = field(repr=False)  # 1000 of them at interval 0.001
    curve: np.ndarray = field(repr=False)
    maxboxacc: dict[int, float]
    best_threshold: dict[int, float]
    maxboxacc_v2: float
    multi_contour: bool
    n_images: int
    gt_known_loc: float | None
    top1_loc: float | None
    top1_best_threshold: float | None


class BoxAccumulator(Accumulator):
    """Streaming MaxBoxAcc / MaxBoxAccV2 (wsolevaluation ``BoxEvaluator``), exact and fast.

    States are integer counts per (IoU threshold, score-map threshold), so ``merge``/``sync`` are
    exact: the result over shards equals the result over the whole set.

    Args:
        interval: score-map threshold step (``np.arange(0, 1, interval)``); 0.001 as wsolevaluation's
            training pipeline, 0.01 as its standalone ``evaluation.py``.
        iou_thresholds: IoU thresholds in percent.
        multi_contour: True: every contour's box (V2, fast component-tree kernel). False: the
            largest contour by ``cv2.contourArea`` (V1), computed through OpenCV once per distinct
            level (slower; its headline is ``maxboxacc[50]``).
        image_size: side of the square the maps are resized to (wsolevaluation: 224).
        num_threads: threads for a batch (default: all cores).
    """

    METRICS = BOXACC_METRICS
    correct: torch.Tensor
    correct_top1: torch.Tensor
    n_images: torch.Tensor
    n_with_cls: torch.Tensor

    def __init__(
        self,
        interval: float = WSOL_CAM_CURVE_INTERVAL,
        iou_thresholds: Sequence[int] = WSOL_IOU_THRESHOLDS,
        multi_contour: bool = True,
        image_size: int = WSOL_IMAGE_SIZE,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.thresholds = cam_thresholds(interval)
        ious = tuple(iou_thresholds) if isinstance(iou_thresholds, (Sequence, np.ndarray)) else ()  # 50, 0.5: not a list of them
        if (
            not ious
            or len(ious) > 16
            or len(set(ious)) != len(ious)
            or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 < t <= 100 for t in ious)
        ):
            raise SimpoolBenchError(
                f"iou_thresholds {iou_thresholds!r}: expected 1 to 16 distinct whole percents in 1..100, e.g. (30, 50, 70)"
            )
        if not (isinstance(image_size, (int, np.integer)) and image_size > 0):
            raise SimpoolBenchError(f"image_size {image_size!r}: expected a positive number of pixels, e.g. 224")
        if not isinstance(multi_contour, (bool, np.bool_)):  # 'False' is a true value
            raise SimpoolBenchError(f"multi_contour {multi_contour!r}: expected True (MaxBoxAccV2) or False (V1)")
        if num_threads is not None and not (
            isinstance(num_threads, (int, np.integer)) and not isinstance(num_threads, bool) and num_threads >= 1
        ):
            raise SimpoolBenchError(f"num_threads {num_threads!r}: expected a whole number >= 1, or None (a thread per core)")
        self.interval = float(interval)
        self.iou_thresholds = tuple(int(t) for t in ious)
        self.multi_contour = bool(multi_contour)
        self.image_size = int(image_size)
        self.num_threads = num_threads
        shape = (len(self.iou_thresholds), len(self.thresholds))
        self.add_state("correct", torch.zeros(shape, dtype=torch.int64))
        self.add_state("correct_top1", torch.zeros(shape, dtype=torch.int64))
        self.add_state("n_images", torch.zeros((), dtype=torch.int64))
        self.add_state("n_with_cls", torch.zeros((), dtype=torch.int64))

    def _config(self) -> tuple[Any, ...]:
        return (self.interval, self.iou_thresholds, self.multi_contour, self.image_size)

    def merge(self, other: Accumulator) -> BoxAccumulator:
        """Add the counts of ``other``, which must have the same configuration."""
        if isinstance(other, BoxAccumulator) and other._config() != self._config():
            raise SimpoolBenchError(f"cannot merge BoxAccumulators with different settings: {other._config()} vs {self._config()}")
        super().merge(other)
        return self

    def update(self, score_maps: Any, gt_boxes: Sequence[Any], correct_cls: Any = None) -> np.ndarray:
        """Accumulate a batch; returns its per-image correctness (B, J, T) bool (``box_hits``), the
        counts' summands (per-image records keep it).

        Args:
            score_maps: a (B, h, w) array/tensor or a sequence of (h, w) maps (any size, any real
                dtype), at the model's resolution: they are resized to ``image_size`` here.
            gt_boxes: B arrays of (K, 4) boxes x0, y0, x1, y1 ALREADY in ``image_size`` pixels:
                whole numbers with 0 <= x0 <= x1 <= image_size and 0 <= y0 <= y1 <= image_size
                (``metrics.boxes.resize_boxes_wsol`` maps a box of the original image there; one
                reaching the image's edge gives image_size itself). Any other box (original-image
                coordinates, inverted, NaN) raises a ``SimpoolBenchError`` naming it, before
                anything is counted.
            correct_cls: optional (B,) bools, the classification is right (for Top-1 Loc).
        """
        if isinstance(score_maps, torch.Tensor):
            score_maps = score_maps.detach().cpu()
            if score_maps.ndim != 3:
                raise SimpoolBenchError(f"score_maps: tensor of shape {tuple(score_maps.shape)}, expected (B, h, w)")
        elif isinstance(score_maps, np.ndarray) and score_maps.ndim != 3:
            raise SimpoolBenchError(f"score_maps: array of shape {score_maps.shape}, expected (B, h, w)")
        elif isinstance(score_maps, (str, bytes, dict)) or not hasattr(score_maps, "__iter__"):  # 0.5, None: a TypeError
            kind = f"{type(score_maps).__module__}.{type(score_maps).__qualname__}"
            raise SimpoolBenchError(f"score_maps: expected a (B, h, w) array or tensor, or a sequence of (h, w) maps, got {kind}")
        maps = [_as_float64_map(m, i) for i, m in enumerate(score_maps)]
        n = len(maps)
        size = self.image_size
        u8 = np.empty((n, size, size), dtype=np.uint8)

        def prepare(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                _prepare_into(maps[i], u8[i])

        run_chunks(prepare, n, self.num_threads)
        return self.update_quantised(u8, gt_boxes, correct_cls)

    def update_quantised(self, u8_maps: np.ndarray, gt_boxes: Sequence[Any], correct_cls: Any = None) -> np.ndarray:
        """``update`` for maps already through ``prepare_scoremap`` ((B, S, S) uint8, S = image_size)."""
        u8 = np.asarray(u8_maps)
        if u8.dtype != np.uint8 or u8.ndim != 3 or u8.shape[1:] != (self.image_size, self.image_size):
            raise SimpoolBenchError(f"quantised maps: {u8.dtype} {u8.shape}, expected uint8 (B, {self.image_size}, {self.image_size})")
        n = u8.shape[0]
        cls = None
        if correct_cls is not None:
            c = correct_cls.detach().cpu().numpy() if isinstance(correct_cls, torch.Tensor) else np.asarray(correct_cls)
            if c.shape != (n,):
                raise SimpoolBenchError(f"correct_cls: shape {c.shape}, expected ({n},) booleans")
            if c.dtype != bool and not (c.dtype.kind in "iuf" and np.isin(c, (0, 1)).all()):  # class ids or scores read as bools
                raise SimpoolBenchError(
                    f"correct_cls: {c.dtype} {c[:4].tolist()}...: expected ({n},) booleans (prediction == label), or 0/1, one per map"
                )
            cls = c.astype(bool)
        hits = box_hits(u8, gt_boxes, self.thresholds, self.iou_thresholds, self.multi_contour, self.num_threads)
        # new state tensors, not in place: a copy.copy of the accumulator (a snapshot) keeps its counts
        self.correct = self.correct + torch.from_numpy(hits.sum(axis=0, dtype=np.int64))
        if cls is not None:
            self.correct_top1 = self.correct_top1 + torch.from_numpy(hits[cls].sum(axis=0, dtype=np.int64))
            self.n_with_cls = self.n_with_cls + n
        self.n_images = self.n_images + n
        return hits

    def warm_up(self) -> None:
        """Import numba and load the kernels from numba's disk cache (compile them on a first-ever
        run), as the first ``update`` would: the engine calls this in a thread while the first images decode."""
        compile_kernels()

    def add_misses(self, n: int, with_cls: bool = False) -> None:
        """Count ``n`` images as wrong at every threshold (e.g. non-finite maps); ``with_cls``: as
        ``update`` with ``correct_cls`` given (they count in Top-1 Loc's denominator too)."""
        n = image_count(n)
        self.n_images = self.n_images + n
        if with_cls:
            self.n_with_cls = self.n_with_cls + n

    def compute(self) -> BoxAccResult:
        """Accuracies (percent) as wsolevaluation ``BoxEvaluator.compute``: ``num_correct * 100 / cnt``.
        No image accumulated: a ``SimpoolBenchError`` (there is no curve to take a maximum of;
        ``CorLocAccumulator.compute`` gives NaN there instead)."""
        n = int(self.n_images)
        if n == 0:
            raise SimpoolBenchError("BoxAccumulator.compute: no image was accumulated")
        curve = self.correct.numpy().T * 100.0 / float(n)
        best = curve.argmax(axis=0)
        maxboxacc = {iou: float(curve[:, j].max()) for j, iou in enumerate(self.iou_thresholds)}
        best_thr = {iou: float(self.thresholds[best[j]]) for j, iou in enumerate(self.iou_thresholds)}
        gt_known = top1 = top1_thr = None
        if TOP1_LOC_IOU in self.iou_thresholds:
            j = self.iou_thresholds.index(TOP1_LOC_IOU)
            gt_known = maxboxacc[TOP1_LOC_IOU]
            if int(self.n_with_cls) == n:
                top1_curve = self.correct_top1.numpy()[j] * 100.0 / float(n)
                top1 = float(top1_curve.max())
                top1_thr = float(self.thresholds[top1_curve.argmax()])
        return BoxAccResult(
            iou_thresholds=self.iou_thresholds,
            thresholds=self.thresholds.copy(),
            curve=curve,
            maxboxacc=maxboxacc,
            best_threshold=best_thr,
            maxboxacc_v2=float(np.average([maxboxacc[iou] for iou in self.iou_thresholds])),
            multi_contour=self.multi_contour,
            n_images=n,
            gt_known_loc=gt_known,
            top1_loc=top1,
            top1_best_threshold=top1_thr,
        )


_KERNELS_READY = False


def compile_kernels() -> None:
    """Run the MaxBoxAccV2 kernels (and the per-image box's) once on two tiny maps, so that numba
    compiles them and caches them on disk (``_numba_cache``): the one-time cost a first run would
    otherwise pay (about 14 s on 2 cores; a later run loads them in under a second). Once per
    process; later calls return at once."""
    global _KERNELS_READY
    if _KERNELS_READY:
        return
    maps = np.linspace(0.0, 1.0, 2 * 14 * 14, dtype=np.float32).reshape(2, 14, 14)
    gts = [np.array([[10, 10, 100, 100]]), np.array([[0, 0, 50, 60], [20, 30, 200, 210]])]
    BoxAccumulator(interval=0.001).update(maps, gts)
    _kernels().best_box_at_level(prepare_scoremap(maps[0]), 100, gts[1], np.zeros(4, dtype=np.int64))  # per-image boxes
    _KERNELS_READY = True
