"""WSOL localization (wsolevaluation): MaxBoxAccV2 of score maps at 224x224.

``WsolTask`` is the protocol once: its transform, forward options, the step that scores maps
(from a model or from a map store) into the box accumulators, and its rows; ``best_wsol_box`` is
the box ``visualize`` draws, as MaxBoxAccV2 scores an image."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..data.images import ImageDataset
from ..data.records import Record
from ..engine import Batch, EngineConfig, evaluate
from ..errors import SimpoolBenchError
from ..finite import NonFiniteCounter, check_nonfinite, finite_rows
from ..metrics.base import Accumulator
from ..metrics.boxes import iou_wsol, resize_boxes_wsol
from ..per_image import PerImageAccumulator, base_frame, box_lists, pack_hits, packed_bit, scatter, scatter_lists
from ..registry import WSOL
from ..transforms import wsol_transform
from .common import PER_IMAGE_FAILURES, STORED_FAILURES, Outcome, decode_failures, engine_extras, require, require_evaluated, row

if TYPE_CHECKING:
    from ..models.base import BenchModel

LOCALIZE_BASELINES = WSOL.baselines


def baseline_scoremap(kind: str, size: int = WSOL.image_size) -> np.ndarray:
    """No-model score maps that show where chance lies.

    ``center-gaussian``: an isotropic Gaussian at the image centre, sigma = size / 4.
    ``full-box``: 1 everywhere except the corner pixel (0, 0), so that after the protocol's
    min-max normalisation every threshold below 1 keeps the whole image: the box (0, 0, 223, 223).
    """
    if kind == "center-gaussian":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        c, s = (size - 1) / 2.0, size / 4.0
        return np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * s * s)).astype(np.float32)
    if kind == "full-box":
        m = np.ones((size, size), dtype=np.float32)
        m[0, 0] = 0.0
        return m
    raise SimpoolBenchError(f"--baseline {kind!r}: expected one of {', '.join(LOCALIZE_BASELINES)}")


def wsol_gt_boxes(records: Sequence[Record], size: int = WSOL.image_size) -> list[np.ndarray]:
    """Every record's GT boxes resized to ``size`` with wsolevaluation's ``resize_bbox``: one numpy
    pass over all boxes where every record holds a float64 (K, 4) array, a positive integer size
    and finite boxes (what the readers give; the same arithmetic, element by element, as
    ``resize_boxes_wsol``), else ``resize_boxes_wsol`` per record, which names what is wrong."""
    boxes = [r.boxes for r in records]
    plain = all(
        type(b) is np.ndarray
        and b.dtype == np.float64
        and b.ndim == 2
        and b.shape[1] == 4
        and type(r.width) is int
        and type(r.height) is int
        for b, r in zip(boxes, records)
    )
    if plain and records and type(size) is int and size > 0:
        counts = np.fromiter((len(b) for b in boxes), dtype=np.int64, count=len(boxes))
        widths = np.repeat(np.fromiter((r.width for r in records), dtype=np.int64, count=len(records)), counts)
        heights = np.repeat(np.fromiter((r.height for r in records), dtype=np.int64, count=len(records)), counts)
        b = np.concatenate(boxes, axis=0)
        if (widths > 0).all() and (heights > 0).all() and np.isfinite(b).all():
            out = np.empty(b.shape, dtype=np.int64)
            w, h = widths.astype(np.float64), heights.astype(np.float64)  # (as int / int in the per-record path)
            out[:, 0] = (b[:, 0] * size / w).astype(np.int64)
            out[:, 2] = (b[:, 2] * size / w).astype(np.int64)
            out[:, 1] = (b[:, 1] * size / h).astype(np.int64)
            out[:, 3] = (b[:, 3] * size / h).astype(np.int64)
            return np.split(out, np.cumsum(counts)[:-1])
    return [resize_boxes_wsol(r.boxes, r.width, r.height, size) for r in records]


@dataclass
class WsolTask:
    """The WSOL protocol over one dataset: accumulators, the map -> accumulator step, rows."""

    records: Sequence[Record]
    dataset: str = "cub"
    split: str = "test"
    interval: float = WSOL.interval
    v1: bool = False
    cam_target: str = WSOL.cam_target
    keep_maps: bool = True

    def __post_init__(self) -> None:
        require(self.records, self.dataset)
        self.gts = wsol_gt_boxes(self.records)
        self.labels = np.array([r.label for r in self.records])

    def accumulators(self) -> dict[str, Any]:
        from ..metrics.boxacc import BoxAccumulator  # numba kernels: imported only where used

        accs: dict[str, Any] = {"boxacc": BoxAccumulator(interval=self.interval), "nonfinite": NonFiniteCounter()}
        if self.v1:
            accs["boxacc_v1"] = BoxAccumulator(interval=self.interval, multi_contour=False)
        cols = ["nonfinite", "hits", "cls", *(["map"] if self.keep_maps else []), *(["hits_v1"] if self.v1 else [])]
        accs["per_image"] = PerImageAccumulator(cols)
        return accs

    @staticmethod
    def transform(model: BenchModel, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Callable:
        cfg = getattr(model, "data_config", {})
        return wsol_transform(mean or cfg.get("mean", WSOL.mean), std or cfg.get("std", WSOL.std))

    def forward(self) -> Callable[[torch.nn.Module, torch.Tensor, np.ndarray], Any]:
        """The model call: CAMs of the GT class (``cam_target='gt'``, every image labelled) or of the prediction."""
        labels = torch.as_tensor(self.labels)
        use_gt = self.cam_target == "gt" and bool((self.labels >= 0).all())

        def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
            return m(x, target=labels[torch.as_tensor(idx)].to(x.device) if use_gt else None)

        return forward

    def score(
        self, accs: dict[str, Any], maps: np.ndarray, idx: np.ndarray, fin: np.ndarray, correct: np.ndarray | None, with_cls: bool
    ) -> np.ndarray:
        """Maps (float32, one per dataset index ``idx``) into the box accumulators; the non-finite
        ones (``~fin``) as misses. Returns the indices scored."""
        boxes: dict[str, Any] = {k: accs[k] for k in ("boxacc", "boxacc_v1") if k in accs}
        per = accs.get("per_image")
        n_bad = int((~fin).sum())
        if n_bad:  # non-finite maps or logits: misses (or, by default, an error after the run)
            accs["nonfinite"].update(n_bad)
            for acc in boxes.values():
                acc.add_misses(n_bad, with_cls=with_cls)
            if per is not None:
                bad = np.flatnonzero(~fin)
                self._record(per, idx[bad], None, np.zeros_like(maps[bad]), None if correct is None else correct[bad])
        keep = np.flatnonzero(fin)
        if keep.size == 0:
            return keep
        cls = None if correct is None else correct[keep]
        hits: dict[str, np.ndarray] = {
            k: acc.update(maps[keep], [self.gts[i] for i in idx[keep]], correct_cls=cls) for k, acc in boxes.items()
        }
        if per is not None:
            self._record(per, idx[keep], hits, maps[keep], cls)
        return keep

    def _record(self, per: PerImageAccumulator, idx: np.ndarray, hits: dict[str, np.ndarray] | None, maps: np.ndarray, cls: Any) -> None:
        """Per-image rows: the packed (IoU, threshold) hits (zeros for non-finite maps, ``hits``
        None), the classification's correctness (-1 unknown) and, with ``keep_maps``, the raw map."""
        from ..metrics.boxacc import cam_thresholds

        n, n_thr, n_iou = len(idx), len(cam_thresholds(self.interval)), len(WSOL.iou_thresholds)
        v2 = hits["boxacc"] if hits is not None else np.zeros((n, n_iou, n_thr), dtype=bool)
        cols: dict[str, Any] = {
            "nonfinite": np.full(n, hits is None),
            "hits": pack_hits(v2),
            "cls": np.full(n, -1, dtype=np.int8) if cls is None else np.asarray(cls, dtype=np.int8),
        }
        if self.keep_maps:
            cols["map"] = np.asarray(maps, dtype=np.float32)
        if self.v1:  # V1 reports IoU 50 only
            v1 = hits["boxacc_v1"][:, WSOL.iou_thresholds.index(50)] if hits is not None else np.zeros((n, n_thr), dtype=bool)
            cols["hits_v1"] = pack_hits(v1)
        per.update(idx, **cols)

    def per_image(
        self, accs: dict[str, Any], map_of: Callable[[int], np.ndarray] | None = None, num_threads: int | None = None
    ) -> pd.DataFrame:
        """One row per record: label, GT boxes (224 pixels), ``box`` (the best-IoU contour box at
        the best threshold of IoU 50) and its ``iou``, ``hit_30/50/70`` (each at its own best
        threshold: their sums over images are the table's MaxBoxAcc counts), and where the table
        has them ``cls_correct``, ``hit_top1_loc``, ``hit_v1``. Rows of images that did not
        decode (``failed``) hold missing values. ``map_of(i)``: the map of image ``i`` when the
        maps were not kept (baselines). ``num_threads``: for the boxes (default: one per core)."""
        state = accs["per_image"].compute()
        res = accs["boxacc"].compute()
        idx, n, n_thr = state["index"], len(self.records), len(res.thresholds)
        frame = base_frame(self.records, self.split, idx, state["nonfinite"])
        frame["label"] = self.labels.astype(np.int64)
        frame["gt_boxes"] = box_lists(self.gts)
        for j, iou in enumerate(res.iou_thresholds):
            t = int(res.curve[:, j].argmax())  # compute()'s best threshold (the first maximum)
            frame[f"hit_{iou}"] = scatter(n, idx, packed_bit(state["hits"], j * n_thr + t), "boolean")
        from ..metrics.boxacc import run_chunks

        thr = res.best_threshold[50]
        boxes: list[np.ndarray | None] = [None] * len(idx)  # None: a non-finite map
        ious = np.full(len(idx), np.nan)

        def best_boxes(lo: int, hi: int) -> None:  # the numba kernel per image (nogil): threads over the rows
            for r in range(lo, hi):
                if not state["nonfinite"][r]:
                    i = int(idx[r])
                    boxes[r], ious[r] = best_wsol_box(state["map"][r] if map_of is None else map_of(i), self.gts[i], thr)

        run_chunks(best_boxes, len(idx), num_threads)
        frame["box"] = scatter_lists(n, idx, boxes)
        frame["iou"] = scatter(n, idx, ious, "Float64")
        if res.top1_loc is not None:
            t1 = int(np.flatnonzero(res.thresholds == res.top1_best_threshold)[0])
            right = state["cls"] == 1
            frame["cls_correct"] = scatter(n, idx, right, "boolean")
            frame["hit_top1_loc"] = scatter(n, idx, right & packed_bit(state["hits"], res.iou_thresholds.index(50) * n_thr + t1), "boolean")
        if "boxacc_v1" in accs:
            t = int(accs["boxacc_v1"].compute().curve[:, WSOL.iou_thresholds.index(50)].argmax())
            frame["hit_v1"] = scatter(n, idx, packed_bit(state["hits_v1"], t), "boolean")
        return frame

    def rows(self, accs: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        res, v1, ds, sp = accs["boxacc"].compute(), accs.get("boxacc_v1"), self.dataset, self.split
        rows = [row(ds, sp, "maxboxacc", res.maxboxacc[iou], iou) for iou in res.iou_thresholds]
        rows.append(row(ds, sp, "maxboxacc_v2", res.maxboxacc_v2))
        rows += [row(ds, sp, "best_threshold", res.best_threshold[iou], iou) for iou in res.iou_thresholds]
        if res.top1_loc is not None:
            rows.append(row(ds, sp, "top1_loc", res.top1_loc, 50))
        if res.gt_known_loc is not None:
            rows.append(row(ds, sp, "gt_known_loc", res.gt_known_loc, 50))
        if v1 is not None:
            rows.append(row(ds, sp, "maxboxacc_v1", v1.compute().maxboxacc[50], 50))
        return rows, {"curve_thresholds": res.thresholds, "curve": res.curve}

    def model_step(self, model: BenchModel, on_maps: Callable[[np.ndarray, np.ndarray], None] | None = None) -> Callable:
        """The engine's step: a batch of model outputs into the accumulators."""
        use_cls = getattr(model, "num_classes", 0) > 0 and bool((self.labels >= 0).all())

        def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
            ok = np.asarray(batch.ok, dtype=bool)
            if not ok.any():
                return
            logits = batch.output.logits if (use_cls and batch.output.logits is not None) else None
            fin = finite_rows(batch.output.attn, logits)[ok]
            idx = batch.indices[ok]
            correct = None
            if logits is not None:
                correct = logits.float().argmax(dim=1).cpu().numpy()[ok] == self.labels[idx]
            maps = batch.output.attn.float().cpu().numpy()[ok]
            keep = self.score(accs, maps, idx, fin, correct, logits is not None)
            if on_maps is not None and keep.size:
                on_maps(idx[keep], maps[keep])

        return step


def _baseline_outcome(task: WsolTask, baseline: str) -> Outcome:
    smap = baseline_scoremap(baseline)
    task.keep_maps = False  # one map for every image: not kept per image
    accs = task.accumulators()
    bs, n_all = 256, len(task.records)
    for s in range(0, n_all, bs):
        n = min(bs, n_all - s)
        maps = np.broadcast_to(smap, (n, *smap.shape))
        task.score(accs, maps, np.arange(s, s + n), np.ones(n, dtype=bool), None, False)
    rows, extras = task.rows(accs)
    return Outcome(rows, n_all, 0, extras, per_image=task.per_image(accs, lambda i: smap))


def localize(
    model: BenchModel | None,
    records: Sequence[Record],
    config: EngineConfig,
    *,
    dataset: str = "cub",
    split: str = "test",
    interval: float = WSOL.interval,
    v1: bool = False,
    baseline: str | None = None,
    cam_target: str = WSOL.cam_target,
    key: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    on_maps: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Outcome:
    """MaxBoxAccV2 (and V1 on request) of the model's attention maps, or of a no-model baseline.

    Images are resized to 224x224 without crop; maps go through the wsolevaluation pipeline inside
    ``BoxAccumulator``. ``cam_target``: 'gt' (the GT class, as wsolevaluation) or 'pred' for CAMs.
    ``on_maps(indices, maps)`` receives every batch's raw maps (for extract/visualize)."""
    task = WsolTask(records, dataset, split, interval, v1, cam_target)
    if model is None:
        if baseline is None:
            raise SimpoolBenchError("localize needs a model (--model/--checkpoint) or --baseline")
        return _baseline_outcome(task, baseline)
    if getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(
            f"model {getattr(model, 'arch', '?')} with pool {getattr(model, 'pool', '?')} gives no attention map to localize with"
        )
    n_classes = getattr(model, "num_classes", 0)
    if n_classes > 0 and len(task.labels) and int(task.labels.max()) >= n_classes:  # as classify refuses it
        raise SimpoolBenchError(
            f"the metadata's class labels go up to {int(task.labels.max())} but the model has {n_classes} classes "
            "(checkpoint and dataset disagree on the class count; Top-1 Loc would count those images as misclassified)"
        )
    data = ImageDataset(records, task.transform(model, mean, std), max_pixels=config.max_pixels)
    res = evaluate(
        model,
        data,
        task.accumulators,
        task.model_step(model, on_maps),
        config,
        forward=task.forward(),
        key=key,
        description=f"localize {dataset}",
        failures_listed=PER_IMAGE_FAILURES,
        params={"interval": interval, "v1": v1, "cam_target": cam_target},
    )
    require_evaluated(res.n_images, res.n_failed, decode_failures(config))
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "maps", config.allow_nonfinite)
    rows, extras = task.rows(res.accumulators)
    extras.update(engine_extras(res))
    t0 = time.perf_counter()
    per_image = task.per_image(res.accumulators)
    extras["per_image_s"] = time.perf_counter() - t0  # the per-image table, its boxes at the best threshold: after the loop
    return Outcome(rows, res.n_images, res.n_failed, extras, n_bad, per_image)


def localize_stored(
    store: Any,
    records: Sequence[Record],
    *,
    dataset: str = "cub",
    split: str = "test",
    interval: float = WSOL.interval,
    v1: bool = False,
    cam_target: str | None = None,
    allow_nonfinite: bool = False,
    store_dataset: str | None = None,
) -> Outcome:
    """``localize`` from a map store (``map_store.MapStore`` of protocol 'localize') instead of a model.

    The same accumulators see the same maps as the direct run, so float32 stores give its table
    exactly; float16 stores give the table of the float16-rounded maps (see ``map_store``). A given
    ``cam_target`` must be the one CAMs were extracted with. ``store_dataset``: the dataset the
    maps were extracted from, when the rows name another (``--data-label``; default ``dataset``)."""
    task = WsolTask(records, dataset, split, interval, v1)
    store.check_records(records, protocol="localize", dataset=store_dataset or dataset)
    from ..map_store import holds_cams

    stored_target = store.manifest.get("cam_target")
    if cam_target is not None and holds_cams(store.manifest) and cam_target != stored_target:
        raise SimpoolBenchError(f"--maps {store.root}: CAMs extracted with --cam-target {stored_target}, not {cam_target}")
    use_cls = bool(store.manifest.get("has_classifier")) and bool((task.labels >= 0).all())
    accs = task.accumulators()
    n_ok = n_failed = 0
    for shard in store.iter_shards():
        n_failed += len(shard.failed)
        if len(shard.indices) == 0:
            continue
        maps = np.stack([m.astype(np.float32) for m in shard.maps])
        n_ok += len(maps)
        correct = shard.preds == task.labels[shard.indices] if use_cls else None
        task.score(accs, maps, shard.indices, finite_rows(maps), correct, use_cls)
    require_evaluated(n_ok, n_failed, STORED_FAILURES)
    n_bad = accs["nonfinite"].compute()
    check_nonfinite(n_bad, n_ok, f"maps in {store.root}", allow_nonfinite)
    rows, extras = task.rows(accs)
    extras["maps"] = str(store.root)
    return Outcome(rows, n_ok, n_failed, extras, n_bad, task.per_image(accs))


# ------------------------------------------------------------------------------------ boxes drawn by visualize
def _contours(u8: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 4) int64 and areas (K,) of the contours of ``u8 > int(threshold * max(u8))``."""
    import cv2

    h, w = u8.shape
    _, binary = cv2.threshold(u8, int(threshold * np.max(u8)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64), np.zeros(1)
    boxes = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        boxes.append((x, y, min(x + bw, w - 1), min(y + bh, h - 1)))
    return np.asarray(boxes, dtype=np.int64), np.asarray([cv2.contourArea(c) for c in contours])


def wsol_boxes_at(scoremap: np.ndarray, threshold: float, size: int = WSOL.image_size) -> np.ndarray:
    """Every contour's box (K, 4) at ``threshold`` of a raw score map, in ``size`` x ``size``
    pixels, as wsolevaluation ``compute_bboxes_from_scoremaps(multi_contour_eval=True)``."""
    from ..metrics.boxacc import prepare_scoremap

    return _contours(prepare_scoremap(scoremap, (size, size)), threshold)[0]


def best_wsol_box(scoremap: np.ndarray, gt_boxes: np.ndarray, threshold: float, size: int = WSOL.image_size) -> tuple[np.ndarray, float]:
    """The contour box at ``threshold`` with the best IoU (+1 convention) against ``gt_boxes``
    (already in ``size`` pixels) and that IoU, the first such box in OpenCV's contour order as the
    reference's ``np.argmax`` takes it; without GT boxes, the largest contour's box and NaN.
    Whole-pixel GT boxes go through the kernel ``best_box_at_level`` (no GIL: threads scale),
    which leaves to OpenCV only the maps whose best IoU two boxes of other coordinates share."""
    from ..metrics.boxacc import _kernels, prepare_scoremap

    u8 = prepare_scoremap(scoremap, (size, size))
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if len(gt) and np.isfinite(gt).all() and (gt == np.round(gt)).all():  # whole pixels: the kernel, without the GIL
        box = np.zeros(4, dtype=np.int64)
        iou = _kernels().best_box_at_level(u8, int(threshold * np.max(u8)), np.ascontiguousarray(gt, dtype=np.int64), box)
        if iou >= 0:  # else two boxes tie: OpenCV's contour order picks one
            return box, float(iou)
    return best_box_opencv(u8, gt, threshold)


def best_box_opencv(u8: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """``best_wsol_box`` of a quantised map from OpenCV's contours, the reference's way (one
    ``findContours``, a ``boundingRect`` per contour, the first best IoU): what the kernel leaves
    to it (ties, no GT box, GT boxes not in whole pixels), and the baseline of
    ``benchmarks/per_image_cost.py``."""
    boxes, areas = _contours(u8, threshold)
    if len(gt) == 0:
        return boxes[int(np.argmax(areas))], float("nan")
    ious = iou_wsol(boxes, gt).max(axis=1)
    j = int(np.argmax(ious))
    return boxes[j], float(ious[j])
