"""Extraction: a model's attention maps of a dataset, computed through the engine
(``compute_maps``) and written to a map store shard by shard (``extract_maps``, resumable)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data.images import ImageDataset
from .data.records import Record
from .engine import Batch, EngineConfig, EvalResult, bucket_batches, evaluate, make_shards
from .errors import SimpoolBenchError
from .finite import check_nonfinite
from .map_store import PROTOCOLS, MapShard, MapStore, _barrier, make_manifest
from .transforms import IMAGENET_MEAN, IMAGENET_STD, discovery_transform, padded_size, wsol_transform

if TYPE_CHECKING:
    from .models.base import BenchModel


@dataclass
class MapBatch:
    """A batch of maps for ``on_batch``: global dataset indices, which decoded, maps (B, h, w)
    float32 (garbage where not ok), top-1 predictions (B,) (-1 without classifier), features or None."""

    indices: np.ndarray
    ok: np.ndarray
    maps: np.ndarray
    preds: np.ndarray
    features: np.ndarray | None


def map_transform(model: BenchModel, protocol: str) -> Callable:
    """The image transform of ``protocol`` for ``model`` (as ``tasks.localize``/``discover``)."""
    cfg = getattr(model, "data_config", {})
    mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
    if protocol == "localize":
        return wsol_transform(mean, std)
    if protocol == "discover":
        return discovery_transform(int(model.stride), mean, std)
    raise SimpoolBenchError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")


def compute_maps(
    model: BenchModel,
    records: Sequence[Record],
    config: EngineConfig,
    on_batch: Callable[[MapBatch], None],
    *,
    protocol: str,
    indices: Sequence[int] | None = None,
    cam_target: str = "gt",
    features: bool = False,
    description: str = "maps",
) -> EvalResult:
    """Run ``model`` over ``records`` (or only ``indices`` of them) as ``protocol`` feeds it and
    hand every batch's maps to ``on_batch``. No resume here (``config.resume_dir`` is ignored).

    ``cam_target`` (localize): 'gt' gives CAMs of the GT class when every record has a label (as
    ``tasks.localize``), 'pred' of the predicted class; discover always uses the predicted one."""
    if getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(f"model {getattr(model, 'arch', '?')} with pool {getattr(model, 'pool', '?')} gives no attention map")
    if cam_target not in ("gt", "pred"):
        raise SimpoolBenchError(f"--cam-target {cam_target!r}: expected gt or pred")
    order = np.arange(len(records), dtype=np.int64) if indices is None else np.asarray(list(indices), dtype=np.int64)
    subset = [records[int(i)] for i in order]
    labels = torch.as_tensor([r.label for r in subset], dtype=torch.int64)
    use_labels = protocol == "localize" and cam_target == "gt" and bool((labels >= 0).all())

    def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
        return m(x, target=labels[torch.as_tensor(idx)].to(x.device) if use_labels else None)

    def step(batch: Batch, accs: dict) -> None:
        out = batch.output
        logits = out.logits
        preds = logits.float().argmax(dim=1).cpu().numpy() if logits is not None else np.full(len(batch.indices), -1)
        feats = out.features.float().cpu().numpy() if features else None
        on_batch(
            MapBatch(order[batch.indices], np.asarray(batch.ok, dtype=bool), out.attn.float().cpu().numpy(), preds.astype(np.int64), feats)
        )

    batches_for = None
    if protocol == "discover":
        stride = int(model.stride)
        keys = [(padded_size(int(r.height), stride), padded_size(int(r.width), stride)) for r in subset]
        batches_for = lambda r: bucket_batches(r, keys, config.batch_size)  # noqa: E731
    transform = map_transform(model, protocol)
    return evaluate(
        model,
        ImageDataset(subset, transform, max_pixels=config.max_pixels),
        dict,
        step,
        replace(config, resume_dir=None),
        forward=forward,
        batches_for=batches_for,
        description=description,
    )


class _ShardBuffer:
    """Collects one shard's images until all have come through (decoded or not)."""

    def __init__(self, shard: int, members: Sequence[int]) -> None:
        self.shard, self.members = shard, members
        self.seen: dict[int, tuple[bool, np.ndarray | None, int, np.ndarray | None]] = {}

    def add(self, index: int, ok: bool, m: np.ndarray, pred: int, feat: np.ndarray | None) -> None:
        self.seen[index] = (ok, m.copy() if ok else None, pred, None if feat is None else feat.copy())

    @property
    def complete(self) -> bool:
        return len(self.seen) == len(self.members)

    def to_shard(self, records: Sequence[Record], features: bool) -> MapShard:
        good = [i for i in self.members if self.seen[i][0]]
        maps = [m for i in good if (m := self.seen[i][1]) is not None]  # every good image has its map
        feats = [f for i in good if (f := self.seen[i][3]) is not None]
        return MapShard(
            shard=self.shard,
            indices=np.asarray(good, dtype=np.int64),
            ids=[records[i].image_id for i in good],
            maps=maps,
            preds=np.asarray([self.seen[i][2] for i in good], dtype=np.int64),
            features=(np.stack(feats) if good else np.zeros((0, 0), np.float32)) if features else None,
            failed=np.asarray([i for i in self.members if not self.seen[i][0]], dtype=np.int64),
        )


@dataclass
class ExtractReport:
    """What ``extract_maps`` did: the store, image counts and shard bookkeeping.

    ``shards_reused``: finished shards found intact and kept; ``shards_computed``: computed now;
    ``shards_corrupt``: of those, how many were on disk but failed their checksum.
    ``n_nonfinite``: stored maps holding NaN or inf (only with ``allow_nonfinite``; else an error)."""

    store: MapStore
    n_images: int
    n_failed: int
    shards_total: int
    shards_reused: int
    shards_computed: int
    shards_corrupt: int
    n_nonfinite: int = 0


def _extract_key(
    model: BenchModel,
    records: Sequence[Record],
    config: EngineConfig,
    info: dict[str, Any],
    *,
    protocol: str,
    dtype: str,
    features: bool,
    cam_target: str,
) -> str:
    """``runkey.resume_key`` of an extraction: the model, records, transform and these settings."""
    from .engine import resolve_device
    from .runkey import resume_key

    params = {
        "protocol": protocol,
        "dtype": dtype,
        "features": features,
        "cam_target": cam_target,
        "dataset": info.get("dataset"),
        "split": info.get("split"),
        "max_pixels": config.max_pixels,
    }
    return resume_key(
        "extract",
        model,
        records,
        map_transform(model, protocol),
        params,
        amp=config.amp,
        shard_size=config.shard_size,
        device=resolve_device(config.device).type,
    )


def _compute_missing(
    model: BenchModel,
    records: Sequence[Record],
    config: EngineConfig,
    store: MapStore,
    shards: Sequence[Sequence[int]],
    todo: Sequence[int],
    *,
    protocol: str,
    cam_target: str,
    features: bool,
) -> None:
    """Compute the shards ``todo`` and write each to ``store`` as soon as all its images are in."""
    pending: dict[int, _ShardBuffer] = {}

    def on_batch(b: MapBatch) -> None:
        for j, i in enumerate(b.indices.tolist()):
            sid = i // config.shard_size
            buf = pending.setdefault(sid, _ShardBuffer(sid, shards[sid]))
            buf.add(i, bool(b.ok[j]), b.maps[j], int(b.preds[j]), None if b.features is None else b.features[j])
            if buf.complete:
                store.write_shard(buf.to_shard(records, features))
                del pending[sid]

    # The missing shards are whole shards (only the dataset's last can be short, and it comes
    # last), so the engine's own shards of this list are exactly them: each is done by one rank.
    order = [i for sid in todo for i in shards[sid]]
    compute_maps(
        model, records, config, on_batch, protocol=protocol, indices=order, cam_target=cam_target, features=features, description="extract"
    )


def extract_maps(
    model: BenchModel,
    records: Sequence[Record],
    config: EngineConfig,
    out: str | os.PathLike,
    *,
    key: str | None = None,
    info: dict[str, Any],
    protocol: str,
    dtype: str = "float16",
    features: bool = False,
    cam_target: str = "gt",
    resume: bool = True,
) -> ExtractReport:
    """Write the model's attention maps of ``records`` to the map store ``out``, shard by shard.

    Resumable: shards already in ``out`` for the same ``key`` that pass their checksum are kept;
    missing and corrupt ones are computed (shard boundaries are fixed by ``config.shard_size``, so
    the result does not depend on interruptions). ``info`` goes into the manifest (dataset, split,
    data, provenance). Under torchrun each rank computes its round-robin share of the shards.
    ``key`` defaults to ``runkey.resume_key`` of the model, records, transform and these settings.
    Maps holding NaN or inf are stored but fail the extraction (one line with their count) unless
    ``config.allow_nonfinite``; readers then count them as misses (with their own flag)."""
    if not records:
        raise SimpoolBenchError("the dataset is empty: no image to extract maps from")
    if getattr(model, "attn_source", None) is None:
        raise SimpoolBenchError(
            f"model {getattr(model, 'arch', '?')} with pool {getattr(model, 'pool', '?')} gives no attention map to extract"
        )
    if key is None:
        key = _extract_key(model, records, config, info, protocol=protocol, dtype=dtype, features=features, cam_target=cam_target)
    manifest = make_manifest(
        records,
        key=key,
        protocol=protocol,
        shard_size=config.shard_size,
        dtype=dtype,
        features=features,
        cam_target=cam_target,
        stride=int(getattr(model, "stride", 0)),
        has_classifier=int(getattr(model, "num_classes", 0)) > 0,
        info=info,
    )
    store = MapStore.create(out, manifest, resume=resume)
    shards = make_shards(len(records), config.shard_size)
    states = [store.status(sid) for sid in range(len(shards))]
    if config.strict:  # a stored shard that skipped an undecodable image is computed again: the image fails the run
        states = [s if s != "ok" or not len(store.read_shard(sid).failed) else "failed" for sid, s in enumerate(states)]
    todo = [sid for sid, s in enumerate(states) if s != "ok"]
    _barrier()  # every rank has seen the same finished shards before any is written
    if todo:
        _compute_missing(model, records, config, store, shards, todo, protocol=protocol, cam_target=cam_target, features=features)
    _barrier()
    n_ok = n_failed = n_bad = 0
    for sh in store.iter_shards():
        n_ok += len(sh.indices)
        n_failed += len(sh.failed)
        n_bad += sum(not np.isfinite(m).all() for m in sh.maps)
    check_nonfinite(n_bad, n_ok, "maps", config.allow_nonfinite)
    return ExtractReport(store, n_ok, n_failed, len(shards), len(shards) - len(todo), len(todo), sum(s == "corrupt" for s in states), n_bad)
