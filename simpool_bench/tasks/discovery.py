"""LOST object discovery: CorLoc of one box per image at full resolution.

``DiscoveryTask`` is the protocol once: its transform, forward pass (``discover_forward``), the
steps that turn model outputs or stored maps into boxes and CorLoc updates, and its rows; the
box ``visualize`` draws from a map is ``DiscoveryTask.map_boxes``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..data.decode import load_rgb_array
from ..data.images import ImageDataset
from ..data.records import Record
from ..discovery import (
    attention_mass_mask,
    boxes_from_attention,
    boxes_from_masks,
    boxes_from_seed_maps,
    center_boxes,
    full_image_boxes,
    lost_seed_maps,
)
from ..engine import Batch, EngineConfig, bucket_batches, evaluate, size_order
from ..errors import SimpoolBenchError
from ..finite import NonFiniteCounter, check_nonfinite, finite_rows
from ..metrics.base import Accumulator
from ..metrics.corloc import CorLocAccumulator, lost_iou_pairs
from ..per_image import PerImageAccumulator, base_frame, box_lists, scatter, scatter_lists
from ..registry import LOST
from ..transforms import discovery_transform, padded_size
from .common import PER_IMAGE_FAILURES, STORED_FAILURES, Outcome, decode_failures, engine_extras, require, require_evaluated, row

DISCOVER_METHODS = LOST.methods
if TYPE_CHECKING:
    from ..models import ModelOutput
    from ..models.base import BenchModel

OnBoxes = Callable[[np.ndarray, np.ndarray, np.ndarray], None]
#: The per-image state of a discovery run (``PerImageAccumulator`` columns).
PER_IMAGE_STATE = ("nonfinite", "box", "iou", "hit")


def best_ious(boxes: Any, gts: Sequence[np.ndarray]) -> np.ndarray:
    """Each predicted box's best LOST ``bbox_iou`` (float32) over its GT boxes; NaN without any."""
    pred = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    out = np.full(len(pred), np.nan, dtype=np.float32)
    for r, g in enumerate(gts):
        g = np.asarray(g).reshape(-1, 4).astype(np.int64)
        if len(g):
            out[r] = float(lost_iou_pairs(np.repeat(pred[r : r + 1], len(g), axis=0), g).max())
    return out


def use_lost_head(model: BenchModel) -> bool:
    """``--lost-compat``: LOST's ``dino_seg`` boxes head ``LOST.dinoseg_head`` (4, its ``--dinoseg_head``
    default) of the last block's CLS row. A model whose map is that row's head mean is switched to
    head 4 (True); a head chosen by the user, or a map of another source, is kept (False)."""
    if getattr(model, "attn_source", None) != "cls" or getattr(model, "cls_head", None) is not None:
        return False
    heads, head = int(getattr(model, "num_heads", 0)), LOST.dinoseg_head
    if heads <= head:
        raise SimpoolBenchError(
            f"--lost-compat boxes head {head} of the CLS attention (LOST --dinoseg_head), but {model.arch} "
            f"has {heads} heads: pass --cls-head (0..{heads - 1})"
        )
    model.cls_head = head
    return True


def discover_forward(
    model: BenchModel, x: torch.Tensor, method: str, *, mass: float = LOST.mass, k_patches: int = LOST.k_patches, one_by_one: bool = True
) -> tuple[ModelOutput, Any]:
    """``discover``'s forward pass, then the sort-dependent half of each box on the model's device
    in float32 (LOST's tie order there): the mass masks (``method='attn'``) or the seeds and
    expanded maps (``'lost'``). ``one_by_one``: LOST ``main_lost.py``'s loop, one image per forward
    pass, so no kernel chosen by the batch shape can change a key or a map by a rounding; otherwise
    the batch (of one padded size) goes through in one pass.

    Returns (the images' outputs concatenated, masks (B, N) | (seeds (B,), positive (B, N)))."""
    from ..models import ModelOutput  # timm: imported only when a model runs

    keys = method == "lost"
    outs = [model(x[i : i + 1], return_keys=keys) for i in range(len(x))] if one_by_one else [model(x, return_keys=keys)]

    def cat(name: str) -> torch.Tensor | None:
        return None if getattr(outs[0], name) is None else torch.cat([getattr(o, name) for o in outs])

    features = cat("features")
    assert features is not None  # every model gives its pooled features
    output = ModelOutput(logits=cat("logits"), features=features, attn=cat("attn"), keys=cat("keys"))
    with torch.autocast(x.device.type, enabled=False):
        if method == "attn":
            assert output.attn is not None
            return output, attention_mass_mask(output.attn.flatten(1).float(), mass)
        assert output.keys is not None
        return output, lost_seed_maps(output.keys.float(), k_patches)


def map_boxes(attn: torch.Tensor, hw: np.ndarray, stride: int, *, mass: float = LOST.mass, lost_compat: bool = False) -> np.ndarray:
    """LOST-protocol boxes of attention maps (B, gh, gw) on the padded grid: ``mass`` of the
    attention, its largest component (the stored-maps run and visualize)."""
    return boxes_from_attention(attn, hw, stride, mass=mass, lost_compat=lost_compat)


@dataclass
class DiscoveryTask:
    """The LOST protocol over one dataset: accumulators, the boxes -> CorLoc step, rows."""

    records: Sequence[Record]
    dataset: str = "voc07"
    split: str = "trainval"
    method: str = "attn"
    mass: float = LOST.mass
    lost_compat: bool = False
    k_patches: int = LOST.k_patches
    on_boxes: OnBoxes | None = None

    def __post_init__(self) -> None:
        if self.method not in DISCOVER_METHODS:
            raise SimpoolBenchError(f"--method {self.method!r}: expected one of {', '.join(DISCOVER_METHODS)}")
        require(self.records, self.dataset)
        self.gts = [r.boxes for r in self.records]
        self.sizes = np.array([[r.height, r.width] for r in self.records], dtype=np.int64)

    @staticmethod
    def accumulators() -> dict[str, Any]:
        return {"corloc": CorLocAccumulator(), "nonfinite": NonFiniteCounter(), "per_image": PerImageAccumulator(PER_IMAGE_STATE)}

    def score(self, accs: dict[str, Any], boxes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Predicted boxes of dataset indices ``idx`` into CorLoc (and the per-image rows); the hits."""
        gts = [self.gts[i] for i in idx]
        hits = accs["corloc"].update(boxes, gts)
        if self.on_boxes is not None:
            self.on_boxes(idx, boxes, hits)
        if "per_image" in accs:
            n = len(idx)
            accs["per_image"].update(
                idx,
                nonfinite=np.zeros(n, dtype=bool),
                box=np.asarray(boxes, dtype=np.int64).reshape(n, 4),
                iou=best_ious(boxes, gts),
                hit=hits,
            )
        return hits

    def misses(self, accs: dict[str, Any], idx: np.ndarray) -> None:
        """Images ``idx`` with non-finite maps or keys: misses (or, by default, an error after the run)."""
        n_bad = len(idx)
        if n_bad:
            accs["nonfinite"].update(n_bad)
            accs["corloc"].add_misses(n_bad)
            if "per_image" in accs:
                accs["per_image"].update(
                    idx,
                    nonfinite=np.ones(n_bad, dtype=bool),
                    box=np.full((n_bad, 4), -1, dtype=np.int64),
                    iou=np.full(n_bad, np.nan, dtype=np.float32),
                    hit=np.zeros(n_bad, dtype=bool),
                )

    def per_image(self, accs: dict[str, Any]) -> pd.DataFrame:
        """One row per record: GT boxes (original pixels), the predicted ``box``, ``iou`` (LOST's
        ``bbox_iou``, best over the GT boxes; NaN without any) and ``hit`` (CorLoc: their sum
        over images is the table's count). Images that did not decode (``failed``) hold missing values."""
        state = accs["per_image"].compute()
        idx, n, nf = state["index"], len(self.records), state["nonfinite"]
        frame = base_frame(self.records, self.split, idx, nf)
        frame["gt_boxes"] = box_lists(self.gts)
        frame["box"] = scatter_lists(n, idx, [None if bad else b for b, bad in zip(state["box"], nf)])
        frame["iou"] = scatter(n, idx, state["iou"].astype(np.float64), "Float64")
        frame["hit"] = scatter(n, idx, state["hit"], "boolean")
        return frame

    def map_boxes(self, attn: torch.Tensor, hw: np.ndarray, stride: int) -> np.ndarray:
        """Boxes of attention maps (B, gh, gw) on the padded grid (``map_boxes`` with this task's options)."""
        return map_boxes(attn, hw, stride, mass=self.mass, lost_compat=self.lost_compat)

    def rows(self, accs: dict[str, Any], n_images: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        out = accs["corloc"].compute()
        return [row(self.dataset, self.split, "corloc", out["corloc"])], {"hits": out["hits"], "total": out["total"]}

    def model_step(self, stride: int) -> Callable[[Batch, dict[str, Accumulator]], None]:
        """The engine's step: a batch's masks (attn) or seeds (lost) into boxes and CorLoc."""

        def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
            ok = np.asarray(batch.ok, dtype=bool)
            if not ok.any():
                return
            output, prep = batch.output
            fin = finite_rows(output.attn if self.method == "attn" else output.keys)
            self.misses(accs, batch.indices[ok & ~fin])
            keep = np.flatnonzero(ok & fin)
            if keep.size == 0:
                return
            idx = batch.indices[keep]
            hw = self.sizes[idx]
            gh, gw = batch.images.shape[-2] // stride, batch.images.shape[-1] // stride
            if self.method == "attn":  # the padded grid is each image's own (padded to the stride only)
                boxes = boxes_from_masks(prep.numpy()[keep].reshape(-1, gh, gw), hw, stride, lost_compat=self.lost_compat)
            else:
                seeds, positive = prep
                boxes = boxes_from_seed_maps(seeds[keep], positive[keep], (gh, gw), hw, stride)
            self.score(accs, boxes, idx)

        return step


def _no_model_outcome(task: DiscoveryTask) -> Outcome:
    acc = {"corloc": CorLocAccumulator(), "per_image": PerImageAccumulator(PER_IMAGE_STATE)}
    fn = center_boxes if task.method == "center" else full_image_boxes
    n = len(task.records)
    for s in range(0, n, 1024):
        idx = np.arange(s, min(s + 1024, n))
        task.score(acc, fn(task.sizes[idx]), idx)
    rows, extras = task.rows(acc)
    return Outcome(rows, n, 0, {"hits": extras["hits"]}, per_image=task.per_image(acc))


def _check_model(model: BenchModel | None, method: str) -> BenchModel:
    if model is None:
        raise SimpoolBenchError(f"--method {method} needs a model (--model/--checkpoint)")
    if method == "lost" and getattr(model, "family", "") != "vit":
        raise SimpoolBenchError(f"--method lost needs a ViT (it uses the last block's keys); {model.arch} is a {model.family}")
    if method == "attn" and getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(
            f"model {model.arch} with pool {model.pool} gives no attention map; use --method lost, center or full-image"
        )
    return model


def discover(
    model: BenchModel | None,
    records: Sequence[Record],
    config: EngineConfig,
    *,
    dataset: str = "voc07",
    split: str = "trainval",
    method: str = "attn",
    mass: float = LOST.mass,
    lost_compat: bool = False,
    k_patches: int = LOST.k_patches,
    key: str | None = None,
    on_boxes: OnBoxes | None = None,
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
    task = DiscoveryTask(records, dataset, split, method, mass, lost_compat, k_patches, on_boxes)
    if method in ("center", "full-image"):
        return _no_model_outcome(task)
    model = _check_model(model, method)
    stride = int(model.stride)
    if method == "attn" and lost_compat:
        use_lost_head(model)
    cfg = getattr(model, "data_config", {})
    transform = discovery_transform(stride, cfg.get("mean", LOST.mean), cfg.get("std", LOST.std))
    pad_keys = [(padded_size(int(h), stride), padded_size(int(w), stride)) for h, w in task.sizes]
    lost_loop = method == "lost" or lost_compat  # LOST's own modes: its one-image loop, bit for bit on any device

    def forward(m: Any, x: torch.Tensor, idx: np.ndarray) -> Any:  # m: the BenchModel the engine moved
        return discover_forward(m, x, method, mass=mass, k_patches=k_patches, one_by_one=lost_loop)

    res = evaluate(
        model,
        ImageDataset(records, transform, max_pixels=config.max_pixels, decode=load_rgb_array),
        task.accumulators,
        task.model_step(stride),
        config,
        forward=forward,
        batches_for=lambda r: bucket_batches(r, pad_keys, config.batch_size),
        key=key,
        description=f"discover {dataset}",
        failures_listed=PER_IMAGE_FAILURES,
        order=size_order(pad_keys),
        params={"method": method, "mass": mass, "lost_compat": lost_compat, "k_patches": k_patches},
    )
    require_evaluated(res.n_images, res.n_failed, decode_failures(config))
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "maps" if method == "attn" else "keys", config.allow_nonfinite)
    rows, extras = task.rows(res.accumulators)
    return Outcome(
        rows, res.n_images, res.n_failed, {"hits": extras["hits"], **engine_extras(res)}, n_bad, task.per_image(res.accumulators)
    )


def discover_stored(
    store: Any,
    records: Sequence[Record],
    *,
    dataset: str = "voc07",
    split: str = "trainval",
    mass: float = LOST.mass,
    lost_compat: bool = False,
    on_boxes: OnBoxes | None = None,
    allow_nonfinite: bool = False,
    store_dataset: str | None = None,
) -> Outcome:
    """``discover --method attn`` from a map store (protocol 'discover') instead of a model; maps of
    one padded size are boxed together, as the direct run's size-bucketed batches. ``store_dataset``:
    the dataset the maps were extracted from, when the rows name another (``--data-label``)."""
    task = DiscoveryTask(records, dataset, split, "attn", mass, lost_compat, on_boxes=on_boxes)
    store.check_records(records, protocol="discover", dataset=store_dataset or dataset)
    stride = int(store.manifest["stride"])
    accs = task.accumulators()
    n_failed = 0
    for shard in store.iter_shards():
        n_failed += len(shard.failed)
        groups: dict[tuple[int, int], list[int]] = {}
        for j, m in enumerate(shard.maps):
            if not np.isfinite(m).all():
                task.misses(accs, shard.indices[j : j + 1])
                continue
            groups.setdefault(m.shape, []).append(j)
        for members in groups.values():
            idx = shard.indices[members]
            attn = torch.from_numpy(np.stack([shard.maps[j].astype(np.float32) for j in members]))
            task.score(accs, task.map_boxes(attn, task.sizes[idx], stride), idx)
    require_evaluated(int(accs["corloc"].total), n_failed, STORED_FAILURES)
    n_bad = accs["nonfinite"].compute()
    check_nonfinite(n_bad, int(accs["corloc"].total), f"maps in {store.root}", allow_nonfinite)
    rows, extras = task.rows(accs)
    kept = {"hits": extras["hits"], "maps": str(store.root)}
    return Outcome(rows, int(extras["total"]), n_failed, kept, n_bad, task.per_image(accs))
