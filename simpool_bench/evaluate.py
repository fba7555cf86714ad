"""The three evaluations as Python functions: ``classify``, ``localize``, ``discover``.

Each takes a model (or none, for the no-model baselines), the dataset's records and an
EngineConfig, runs the model once per image, and returns tidy rows
(``dataset, split, metric, iou_threshold, value``) plus extras (curves, per-class accuracy).
The CLI is a thin layer over these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .data.decode import load_rgb_array
from .data.images import ImageDataset
from .data.records import Record
from .discovery import (
    LOST_DINOSEG_HEAD, attention_mass_mask, boxes_from_attention, boxes_from_masks, boxes_from_seed_maps, center_boxes,
    full_image_boxes, lost_seed_maps,
)
from .engine import Batch, EngineConfig, EvalResult, all_gather_indexed, bucket_batches, evaluate, resolve_device, size_order
from .errors import SimpoolBenchError
from .finite import NonFiniteCounter, check_nonfinite, finite_rows
from .metrics.base import Accumulator
from .metrics.boxes import resize_boxes_wsol
from .metrics.classification import KNNAccumulator, MemoryBank, TopKAccumulator
from .metrics.corloc import CorLocAccumulator
from .models import ModelOutput
from .transforms import WSOL_IMAGE_SIZE, discovery_transform, padded_size, wsol_transform

LOCALIZE_BASELINES = ("center-gaussian", "full-box")
DISCOVER_METHODS = ("attn", "lost", "center", "full-image")


@dataclass
class Outcome:
    """Rows of the tidy table, images counted, and anything else worth keeping."""

    rows: list[dict[str, Any]]
    n_images: int
    n_failed: int
    extras: dict[str, Any] = field(default_factory=dict)
    n_nonfinite: int = 0


def _row(dataset: str, split: str, metric: str, value: float, iou: int | None = None) -> dict[str, Any]:
    return {"dataset": dataset, "split": split, "metric": metric, "iou_threshold": iou, "value": float(value)}


def _require(records: Sequence[Record], what: str) -> None:
    if len(records) == 0:
        raise SimpoolBenchError(f"the {what} dataset is empty: no image was found")


def _engine_extras(res: EvalResult) -> dict[str, Any]:
    return {"shards_total": res.shards_total, "shards_resumed": res.shards_resumed}


# ----------------------------------------------------------------------------------- classify
def collect_features(model: torch.nn.Module, records: Sequence[Record], transform: Callable, config: EngineConfig, key: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, d) and labels of every decodable image (k-NN memory bank)."""
    feats: dict[int, torch.Tensor] = {}

    def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
        for j, i in enumerate(batch.indices):
            if batch.ok[j]:
                feats[int(i)] = batch.output.features[j].float().cpu()

    evaluate(model, ImageDataset(records, transform, warn=not config.strict, max_pixels=config.max_pixels), dict, step, _no_resume(config), description="memory bank")
    order = sorted(feats)
    local = torch.stack([feats[i] for i in order]) if order else torch.zeros(0, int(model.num_features))
    index, features = all_gather_indexed(torch.tensor(order, dtype=torch.int64), local)  # every rank's shards
    fin = torch.as_tensor(finite_rows(features)) if index.numel() else torch.ones(0, dtype=torch.bool)
    if not bool(fin.all()):
        check_nonfinite(int((~fin).sum()), int(index.numel()), "k-NN memory-bank features", config.allow_nonfinite)
        index, features = index[fin], features[fin]  # allowed: left out of the bank
    if index.numel() == 0:
        raise SimpoolBenchError("the k-NN train split has no decodable image")
    return features, torch.tensor([records[int(i)].label for i in index])


def _no_resume(config: EngineConfig) -> EngineConfig:
    from dataclasses import replace

    return replace(config, resume_dir=None)


def classify(
    model: torch.nn.Module,
    records: Sequence[Record],
    transform: Callable,
    config: EngineConfig,
    *,
    dataset: str = "imagenet",
    split: str = "val",
    num_classes: int | None = None,
    knn_train: Sequence[Record] | None = None,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
    key: str | None = None,
) -> Outcome:
    """Top-1/top-5 of the model's logits, and/or weighted k-NN on its pooled features.

    Models without a classifier (DINO backbones) need ``knn_train`` (the memory bank's records)."""
    _require(records, dataset)
    labels = np.array([r.label for r in records])
    if (labels < 0).any():
        raise SimpoolBenchError(f"{records[int(np.argmax(labels < 0))].path}: image has no class label")
    has_head = getattr(model, "num_classes", 0) > 0
    n_cls = num_classes or (int(model.num_classes) if has_head else int(labels.max()) + 1)
    if has_head and labels.max() >= model.num_classes:
        raise SimpoolBenchError(
            f"the dataset has {int(labels.max()) + 1} classes but the model has {model.num_classes} "
            f"(checkpoint and dataset disagree on the class count)"
        )
    if not has_head and knn_train is None:
        raise SimpoolBenchError("the model has no classifier head (self-supervised): give --knn-train DIR for a k-NN memory bank")
    bank = None
    if knn_train is not None:
        _require(knn_train, "k-NN train")
        feats, blabels = collect_features(model, knn_train, transform, config)
        dev = resolve_device(config.device)  # k-NN votes on the device (a GPU holds the bank)
        bank = MemoryBank.from_features(feats.to(dev), blabels.to(dev), max(n_cls, int(blabels.max()) + 1))

    def make() -> dict[str, Accumulator]:
        accs: dict[str, Accumulator] = {"nonfinite": NonFiniteCounter()}
        if has_head:
            accs["topk"] = TopKAccumulator(n_cls)
        if bank is not None:
            accs["knn"] = KNNAccumulator(bank, knn_k, knn_temperature)
        return accs

    targets = torch.as_tensor(labels)

    def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
        ok = np.asarray(batch.ok, dtype=bool)
        if not ok.any():
            return
        out = batch.output
        fin = finite_rows(out.logits if "topk" in accs else None, out.features if "knn" in accs else None)
        good, bad = torch.as_tensor(ok & fin), torch.as_tensor(ok & ~fin)
        tgt = targets[torch.as_tensor(batch.indices)]
        if good.any():
            if "topk" in accs:
                accs["topk"].update(out.logits[good], tgt[good])
            if "knn" in accs:
                accs["knn"].update(out.features[good], tgt[good])
        if bad.any():  # non-finite outputs: misses (or, by default, an error after the run)
            accs["nonfinite"].update(int(bad.sum()))
            if "topk" in accs:
                accs["topk"].add_misses(tgt[bad])
            if "knn" in accs:
                accs["knn"].add_misses(int(bad.sum()))

    res = evaluate(model, ImageDataset(records, transform, warn=not config.strict, max_pixels=config.max_pixels), make, step, config, key=key,
                   description=f"classify {dataset}",
                   params={"num_classes": n_cls, "knn": bank is not None, "knn_k": knn_k, "knn_t": knn_temperature,
                           "knn_bank": None if knn_train is None else _bank_fingerprint(knn_train)})
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "logits or features", config.allow_nonfinite)
    rows: list[dict[str, Any]] = []
    extras = _engine_extras(res)
    if "topk" in res.accumulators:
        for m, v in res.accumulators["topk"].compute().items():
            rows.append(_row(dataset, split, m, v))
        extras["per_class_top1"] = res.accumulators["topk"].per_class().numpy()
    if "knn" in res.accumulators:
        for m, v in res.accumulators["knn"].compute().items():
            rows.append(_row(dataset, split, m, v))
    return Outcome(rows, res.n_images, res.n_failed, extras, n_bad)


def _bank_fingerprint(records: Sequence[Record]) -> str:
    from .runkey import data_fingerprint

    return data_fingerprint(records)


# ----------------------------------------------------------------------------------- localize
def baseline_scoremap(kind: str, size: int = WSOL_IMAGE_SIZE) -> np.ndarray:
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


def wsol_gt_boxes(records: Sequence[Record], size: int = WSOL_IMAGE_SIZE) -> list[np.ndarray]:
    """Every record's GT boxes resized to ``size`` with wsolevaluation's ``resize_bbox``."""
    return [resize_boxes_wsol(r.boxes, r.width, r.height, size) for r in records]


def _boxacc_rows(acc: Any, dataset: str, split: str, v1: Any | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    res = acc.compute()
    rows = [_row(dataset, split, "maxboxacc", res.maxboxacc[iou], iou) for iou in res.iou_thresholds]
    rows.append(_row(dataset, split, "maxboxacc_v2", res.maxboxacc_v2))
    rows += [_row(dataset, split, "best_threshold", res.best_threshold[iou], iou) for iou in res.iou_thresholds]
    if res.top1_loc is not None:
        rows.append(_row(dataset, split, "top1_loc", res.top1_loc, 50))
    if res.gt_known_loc is not None:
        rows.append(_row(dataset, split, "gt_known_loc", res.gt_known_loc, 50))
    if v1 is not None:
        rows.append(_row(dataset, split, "maxboxacc_v1", v1.compute().maxboxacc[50], 50))
    return rows, {"curve_thresholds": res.thresholds, "curve": res.curve}


def localize(
    model: torch.nn.Module | None,
    records: Sequence[Record],
    config: EngineConfig,
    *,
    dataset: str = "cub",
    split: str = "test",
    interval: float = 0.001,
    v1: bool = False,
    baseline: str | None = None,
    cam_target: str = "gt",
    key: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    on_maps: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> Outcome:
    """MaxBoxAccV2 (and V1 on request) of the model's attention maps, or of a no-model baseline.

    Images are resized to 224x224 without crop; maps go through the wsolevaluation pipeline inside
    ``BoxAccumulator``. ``cam_target``: 'gt' (the GT class, as wsolevaluation) or 'pred' for CAMs.
    ``on_maps(indices, maps)`` receives every batch's raw maps (for extract/visualize)."""
    from .metrics.boxacc import BoxAccumulator  # numba kernels: imported only where used

    _require(records, dataset)
    gts = wsol_gt_boxes(records)
    labels = torch.as_tensor([r.label for r in records])

    def make() -> dict[str, Accumulator]:
        accs: dict[str, Accumulator] = {"boxacc": BoxAccumulator(interval=interval)}
        if v1:
            accs["boxacc_v1"] = BoxAccumulator(interval=interval, multi_contour=False)
        return accs

    def make_run() -> dict[str, Accumulator]:
        return {**make(), "nonfinite": NonFiniteCounter()}

    if model is None:
        if baseline is None:
            raise SimpoolBenchError("localize needs a model (--model/--checkpoint) or --baseline")
        smap = baseline_scoremap(baseline)
        accs = make()
        bs = 256
        for s in range(0, len(records), bs):
            n = min(bs, len(records) - s)
            maps = np.broadcast_to(smap, (n, *smap.shape))
            for acc in accs.values():
                acc.update(maps, gts[s : s + n])
        rows, extras = _boxacc_rows(accs["boxacc"], dataset, split, accs.get("boxacc_v1"))
        return Outcome(rows, len(records), 0, extras)

    if getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(f"model {getattr(model, 'arch', '?')} with pool {getattr(model, 'pool', '?')} gives no attention map to localize with")
    cfg = getattr(model, "data_config", {})
    transform = wsol_transform(mean or cfg.get("mean", (0.485, 0.456, 0.406)), std or cfg.get("std", (0.229, 0.224, 0.225)))
    use_labels = bool((labels >= 0).all())
    has_head = getattr(model, "num_classes", 0) > 0

    def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
        target = labels[torch.as_tensor(idx)].to(x.device) if (cam_target == "gt" and use_labels) else None
        return m(x, target=target)

    def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
        ok = np.asarray(batch.ok, dtype=bool)
        if not ok.any():
            return
        logits = batch.output.logits if (has_head and use_labels and batch.output.logits is not None) else None
        fin = finite_rows(batch.output.attn, logits)
        boxes = [accs[k] for k in ("boxacc", "boxacc_v1") if k in accs]
        n_bad = int((ok & ~fin).sum())
        if n_bad:  # non-finite maps or logits: misses (or, by default, an error after the run)
            accs["nonfinite"].update(n_bad)
            for acc in boxes:
                acc.add_misses(n_bad, with_cls=logits is not None)
        keep = np.flatnonzero(ok & fin)
        if keep.size == 0:
            return
        maps = batch.output.attn.float().cpu().numpy()[keep]
        idx = batch.indices[keep]
        correct = None
        if logits is not None:
            pred = logits.float().argmax(dim=1).cpu().numpy()[keep]
            correct = pred == labels.numpy()[idx]
        for acc in boxes:
            acc.update(maps, [gts[i] for i in idx], correct_cls=correct)
        if on_maps is not None:
            on_maps(idx, maps)

    res = evaluate(model, ImageDataset(records, transform, warn=not config.strict, max_pixels=config.max_pixels), make_run, step, config, forward=forward,
                   key=key, description=f"localize {dataset}", params={"interval": interval, "v1": v1, "cam_target": cam_target})
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "maps", config.allow_nonfinite)
    rows, extras = _boxacc_rows(res.accumulators["boxacc"], dataset, split, res.accumulators.get("boxacc_v1"))
    extras.update(_engine_extras(res))
    return Outcome(rows, res.n_images, res.n_failed, extras, n_bad)


# ----------------------------------------------------------------------------------- discover
def use_lost_head(model: torch.nn.Module) -> bool:
    """``--lost-compat``: LOST's ``dino_seg`` boxes head ``LOST_DINOSEG_HEAD`` (4, its ``--dinoseg_head``
    default) of the last block's CLS row. A model whose map is that row's head mean is switched to
    head 4 (True); a head chosen by the user, or a map of another source, is kept (False)."""
    if getattr(model, "attn_source", None) != "cls" or getattr(model, "cls_head", None) is not None:
        return False
    heads = int(getattr(model, "num_heads", 0))
    if heads <= LOST_DINOSEG_HEAD:
        raise SimpoolBenchError(
            f"--lost-compat boxes head {LOST_DINOSEG_HEAD} of the CLS attention (LOST --dinoseg_head), but {model.arch} "
            f"has {heads} heads: pass --cls-head (0..{heads - 1})"
        )
    model.cls_head = LOST_DINOSEG_HEAD
    return True


def discover_forward(model: torch.nn.Module, x: torch.Tensor, method: str, *, mass: float = 0.6,
                     k_patches: int = 100, one_by_one: bool = True) -> tuple[ModelOutput, Any]:
    """``discover``'s forward pass, then the sort-dependent half of each box on the model's device
    in float32 (LOST's tie order there): the mass masks (``method='attn'``) or the seeds and
    expanded maps (``'lost'``). ``one_by_one``: LOST ``main_lost.py``'s loop, one image per forward
    pass, so no kernel chosen by the batch shape can change a key or a map by a rounding; otherwise
    the batch (of one padded size) goes through in one pass.

    Returns (the images' outputs concatenated, masks (B, N) | (seeds (B,), positive (B, N)))."""
    keys = method == "lost"
    outs = [model(x[i : i + 1], return_keys=keys) for i in range(len(x))] if one_by_one else [model(x, return_keys=keys)]

    def cat(name: str) -> torch.Tensor | None:
        return None if getattr(outs[0], name) is None else torch.cat([getattr(o, name) for o in outs])

    output = ModelOutput(logits=cat("logits"), features=cat("features"), attn=cat("attn"), keys=cat("keys"))
    with torch.autocast(x.device.type, enabled=False):
        if method == "attn":
            return output, attention_mass_mask(output.attn.flatten(1).float(), mass)
        return output, lost_seed_maps(output.keys.float(), k_patches)


def discover(
    model: torch.nn.Module | None,
    records: Sequence[Record],
    config: EngineConfig,
    *,
    dataset: str = "voc07",
    split: str = "trainval",
    method: str = "attn",
    mass: float = 0.6,
    lost_compat: bool = False,
    k_patches: int = 100,
    key: str | None = None,
    on_boxes: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> Outcome:
    """CorLoc of one predicted box per image (LOST protocol).

    Images are evaluated at full resolution, zero-padded right/bottom to the model's stride. LOST's
    own modes (``method='lost'``, ``lost_compat``) go through the model one image at a time, as in
    LOST's loop (``discover_forward``), so ``batch_size`` only sets how many are decoded together;
    plain ``attn`` runs batches of one padded size (the same boxes as batch size 1 on CPU, tested;
    a GPU may pick other kernels for other batch shapes). Shards take the images sorted by padded
    size (over the whole dataset), so equal sizes fill whole batches. LOST's sorts run on the
    model's device (see ``discovery``). ``lost_compat`` with ``method='attn'`` is all of LOST
    ``dino_seg``'s defaults: head 4 of a CLS map (``use_lost_head``, unless a head was chosen) and
    its component choice.
    ``on_boxes(indices, boxes, hits)`` receives every batch's predictions (for visualize)."""
    if method not in DISCOVER_METHODS:
        raise SimpoolBenchError(f"--method {method!r}: expected one of {', '.join(DISCOVER_METHODS)}")
    _require(records, dataset)
    gts = [r.boxes for r in records]
    sizes = np.array([[r.height, r.width] for r in records], dtype=np.int64)

    if method in ("center", "full-image"):
        acc = CorLocAccumulator()
        fn = center_boxes if method == "center" else full_image_boxes
        for s in range(0, len(records), 1024):
            idx = np.arange(s, min(s + 1024, len(records)))
            boxes = fn(sizes[idx])
            hits = acc.update(boxes, [gts[i] for i in idx])
            if on_boxes is not None:
                on_boxes(idx, boxes, hits)
        out = acc.compute()
        return Outcome([_row(dataset, split, "corloc", out["corloc"])], len(records), 0, {"hits": out["hits"]})

    if model is None:
        raise SimpoolBenchError(f"--method {method} needs a model (--model/--checkpoint)")
    stride = int(model.stride)
    if method == "lost" and getattr(model, "family", "") != "vit":
        raise SimpoolBenchError(f"--method lost needs a ViT (it uses the last block's keys); {model.arch} is a {model.family}")
    if method == "attn" and getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(f"model {model.arch} with pool {model.pool} gives no attention map; use --method lost, center or full-image")
    if method == "attn" and lost_compat:
        use_lost_head(model)
    cfg = getattr(model, "data_config", {})
    transform = discovery_transform(stride, cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))
    pad_keys = [(padded_size(int(h), stride), padded_size(int(w), stride)) for h, w in sizes]
    lost_loop = method == "lost" or lost_compat  # LOST's own modes: its one-image loop, bit for bit on any device

    def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
        return discover_forward(m, x, method, mass=mass, k_patches=k_patches, one_by_one=lost_loop)

    def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
        ok = np.asarray(batch.ok, dtype=bool)
        if not ok.any():
            return
        output, prep = batch.output
        fin = finite_rows(output.attn if method == "attn" else output.keys)
        n_bad = int((ok & ~fin).sum())
        if n_bad:  # non-finite maps or keys: misses (or, by default, an error after the run)
            accs["nonfinite"].update(n_bad)
            accs["corloc"].add_misses(n_bad)
        keep = np.flatnonzero(ok & fin)
        if keep.size == 0:
            return
        idx = batch.indices[keep]
        hw = sizes[idx]
        gh, gw = batch.images.shape[-2] // stride, batch.images.shape[-1] // stride
        if method == "attn":  # the padded grid is each image's own (padded to the stride only)
            boxes = boxes_from_masks(prep.numpy()[keep].reshape(-1, gh, gw), hw, stride, lost_compat=lost_compat)
        else:
            seeds, positive = prep
            boxes = boxes_from_seed_maps(seeds[keep], positive[keep], (gh, gw), hw, stride)
        hits = accs["corloc"].update(boxes, [gts[i] for i in idx])
        if on_boxes is not None:
            on_boxes(idx, boxes, hits)

    res = evaluate(
        model, ImageDataset(records, transform, warn=not config.strict, max_pixels=config.max_pixels,
                     decode=load_rgb_array),
        lambda: {"corloc": CorLocAccumulator(), "nonfinite": NonFiniteCounter()}, step, config,
        forward=forward, batches_for=lambda r: bucket_batches(r, pad_keys, config.batch_size), key=key,
        description=f"discover {dataset}", order=size_order(pad_keys),
        params={"method": method, "mass": mass, "lost_compat": lost_compat, "k_patches": k_patches},
    )
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "maps" if method == "attn" else "keys", config.allow_nonfinite)
    out = res.accumulators["corloc"].compute()
    extras = {"hits": out["hits"], **_engine_extras(res)}
    return Outcome([_row(dataset, split, "corloc", out["corloc"])], res.n_images, res.n_failed, extras, n_bad)


# ----------------------------------------------------------------------------------- from stored maps
def localize_stored(store: Any, records: Sequence[Record], *, dataset: str = "cub", split: str = "test",
                    interval: float = 0.001, v1: bool = False, cam_target: str | None = None,
                    allow_nonfinite: bool = False) -> Outcome:
    """``localize`` from a map store (``map_store.MapStore`` of protocol 'localize') instead of a model.

    The same accumulators see the same maps as the direct run, so float32 stores give its table
    exactly; float16 stores give the table of the float16-rounded maps (see ``maps``). A given
    ``cam_target`` must be the one CAMs were extracted with."""
    from .metrics.boxacc import BoxAccumulator

    _require(records, dataset)
    store.check_records(records, protocol="localize", dataset=dataset)
    stored_target = store.manifest.get("cam_target")
    if cam_target is not None and (store.manifest.get("provenance") or {}).get("attn_source") == "cam" and cam_target != stored_target:
        raise SimpoolBenchError(f"--maps {store.root}: CAMs extracted with --cam-target {stored_target}, not {cam_target}")
    gts = wsol_gt_boxes(records)
    labels = np.array([r.label for r in records])
    use_cls = bool(store.manifest.get("has_classifier")) and bool((labels >= 0).all())
    accs = {"boxacc": BoxAccumulator(interval=interval)}
    if v1:
        accs["boxacc_v1"] = BoxAccumulator(interval=interval, multi_contour=False)
    n_ok = n_failed = n_bad = 0
    for shard in store.iter_shards():
        n_failed += len(shard.failed)
        if len(shard.indices) == 0:
            continue
        maps = np.stack([m.astype(np.float32) for m in shard.maps])
        fin = finite_rows(maps)
        n_ok += len(fin)
        if not fin.all():
            n_bad += int((~fin).sum())
            for acc in accs.values():
                acc.add_misses(int((~fin).sum()), with_cls=use_cls)
            if not fin.any():
                continue
        idx = shard.indices[fin]
        correct = shard.preds[fin] == labels[idx] if use_cls else None
        for acc in accs.values():
            acc.update(maps[fin], [gts[i] for i in idx], correct_cls=correct)
    check_nonfinite(n_bad, n_ok, f"maps in {store.root}", allow_nonfinite)
    rows, extras = _boxacc_rows(accs["boxacc"], dataset, split, accs.get("boxacc_v1"))
    extras["maps"] = str(store.root)
    return Outcome(rows, n_ok, n_failed, extras, n_bad)


def discover_stored(store: Any, records: Sequence[Record], *, dataset: str = "voc07", split: str = "trainval",
                    mass: float = 0.6, lost_compat: bool = False,
                    on_boxes: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
                    allow_nonfinite: bool = False) -> Outcome:
    """``discover --method attn`` from a map store (protocol 'discover') instead of a model; maps of
    one padded size are boxed together, as the direct run's size-bucketed batches."""
    _require(records, dataset)
    store.check_records(records, protocol="discover", dataset=dataset)
    stride = int(store.manifest["stride"])
    gts = [r.boxes for r in records]
    sizes = np.array([[r.height, r.width] for r in records], dtype=np.int64)
    acc = CorLocAccumulator()
    n_failed = n_bad = 0
    for shard in store.iter_shards():
        n_failed += len(shard.failed)
        groups: dict[tuple[int, int], list[int]] = {}
        for j, m in enumerate(shard.maps):
            if not np.isfinite(m).all():
                n_bad += 1
                acc.add_misses(1)
                continue
            groups.setdefault(m.shape, []).append(j)
        for members in groups.values():
            idx = shard.indices[members]
            attn = torch.from_numpy(np.stack([shard.maps[j].astype(np.float32) for j in members]))
            boxes = boxes_from_attention(attn, sizes[idx], stride, mass=mass, lost_compat=lost_compat)
            hits = acc.update(boxes, [gts[i] for i in idx])
            if on_boxes is not None:
                on_boxes(idx, boxes, hits)
    check_nonfinite(n_bad, int(acc.total), f"maps in {store.root}", allow_nonfinite)
    out = acc.compute()
    extras = {"hits": out["hits"], "maps": str(store.root)}
    return Outcome([_row(dataset, split, "corloc", out["corloc"])], int(out["total"]), n_failed, extras, n_bad)
