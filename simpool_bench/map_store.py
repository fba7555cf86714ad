"""Attention maps on disk: ``extract`` writes them shard by shard; localize, discover and visualize
read them back without the model.

A map store is a folder::

    manifest.json        what the maps are: protocol, dataset, image ids (their sha256), shard
                         size, dtype, grid, the model's provenance and the extraction's run key
    maps_000012.pt       shard 12: dataset indices and image ids of the images that decoded, their
                         maps (flattened, with each map's (h, w)), top-1 predictions, optional
                         pooled features, and the indices of the images that did not decode
    maps_000012.sha256   sha256 of the shard file

A shard whose checksum does not match (or that is missing) is recomputed by ``extract_maps`` and
refused by every reader, with a message naming the file: a stored map is never trusted unchecked.

Protocols (how images reach the model, as the evaluation that will read the maps):
- ``localize``: wsolevaluation, every image resized to 224x224; all maps share the model's grid.
- ``discover``: LOST, full resolution zero-padded to the stride; one grid per padded image size.

Maps are kept as the model gives them (float32), rounded to ``dtype``. float16 (the default)
halves the size; results computed from float16 maps can differ slightly from the direct run (the
protocols quantise min-max normalised maps to 255 levels, and rounding can move a pixel across a
level). float32 maps give exactly the direct run's numbers when extracted with the same
``--batch-size`` and ``--shard-size`` (the batches are then the same; another batch composition can
change a float32 map in its last bits, as it can change the direct run's).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data.images import ImageDataset
from .data.records import Record
from .engine import Batch, EngineConfig, EvalResult, bucket_batches, dist_rank, dist_world, evaluate, make_shards
from .errors import SimpoolBenchError
from .files import atomic_write, checksum_path, load_checksummed, make_dir, os_reason, save_checksummed
from .finite import check_nonfinite
from .registry import DATASETS
from .transforms import IMAGENET_MEAN, IMAGENET_STD, WSOL_IMAGE_SIZE, discovery_transform, padded_size, wsol_transform

if TYPE_CHECKING:
    from .models.base import BenchModel

MAP_STORE_SCHEMA = 1
MANIFEST_NAME = "manifest.json"
SHARD_PREFIX = "maps_"
PROTOCOLS = ("localize", "discover")
MAP_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "float32": torch.float32}
#: Which protocol each dataset is evaluated with (``folder``: any images, localize-style).
DATASET_PROTOCOL: dict[str, str] = {name: record.protocol for name, record in DATASETS.items()}
FLOAT16_MAX = float(torch.finfo(torch.float16).max)


def protocol_for(dataset: str) -> str:
    """The protocol (``localize`` or ``discover``) a dataset name is evaluated with."""
    if dataset not in DATASET_PROTOCOL:
        raise SimpoolBenchError(f"--dataset {dataset!r}: expected one of {', '.join(DATASET_PROTOCOL)}")
    return DATASET_PROTOCOL[dataset]


def ids_sha256(records: Sequence[Record]) -> str:
    """sha256 of the image ids in order (what a reader checks it reads the maps of its images)."""
    return hashlib.sha256("\n".join(r.image_id for r in records).encode()).hexdigest()


# ------------------------------------------------------------------------------------ one shard
@dataclass
class MapShard:
    """The content of one shard file.

    Attributes:
        shard: shard number (images ``shard * shard_size`` onwards).
        indices: (n,) int64 dataset indices of the images that decoded, ascending.
        ids: their image ids.
        maps: n maps (h, w) in the store's dtype (the model's grid for that image).
        preds: (n,) int64 top-1 class of the logits, -1 for models without a classifier.
        features: (n, d) pooled features in the store's dtype, or None.
        failed: int64 dataset indices of the shard's images that did not decode.
    """

    shard: int
    indices: np.ndarray
    ids: list[str]
    maps: list[np.ndarray]
    preds: np.ndarray
    features: np.ndarray | None
    failed: np.ndarray

    def to_payload(self, key: str, dtype: torch.dtype) -> dict[str, Any]:
        shapes = torch.tensor([m.shape for m in self.maps], dtype=torch.int64).reshape(-1, 2)
        flat = torch.cat([torch.from_numpy(np.ascontiguousarray(m)).reshape(-1) for m in self.maps]) if self.maps else torch.zeros(0)
        return {
            "schema": MAP_STORE_SCHEMA,
            "key": key,
            "shard": int(self.shard),
            "indices": torch.as_tensor(self.indices, dtype=torch.int64),
            "ids": list(self.ids),
            "shapes": shapes,
            "maps": flat.to(dtype),
            "preds": torch.as_tensor(self.preds, dtype=torch.int64),
            "features": None if self.features is None else torch.from_numpy(np.ascontiguousarray(self.features)).to(dtype),
            "failed": torch.as_tensor(self.failed, dtype=torch.int64),
        }

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> MapShard:
        shapes = p["shapes"].tolist()
        sizes = [h * w for h, w in shapes]
        flat = p["maps"].numpy()
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        maps = [flat[offsets[i] : offsets[i + 1]].reshape(h, w) for i, (h, w) in enumerate(shapes)]
        feats = p["features"]
        return cls(
            int(p["shard"]),
            p["indices"].numpy(),
            list(p["ids"]),
            maps,
            p["preds"].numpy(),
            None if feats is None else feats.numpy(),
            p["failed"].numpy(),
        )


# ------------------------------------------------------------------------------------ the store
def make_manifest(
    records: Sequence[Record],
    *,
    key: str,
    protocol: str,
    shard_size: int,
    dtype: str = "float16",
    features: bool = False,
    cam_target: str = "gt",
    stride: int = 0,
    has_classifier: bool = False,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A store's manifest: what readers check (protocol, image ids, shard size, dtype, run key)
    plus ``info`` (dataset, split, data, provenance of the model)."""
    if protocol not in PROTOCOLS:
        raise SimpoolBenchError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if dtype not in MAP_DTYPES:
        raise SimpoolBenchError(f"--dtype {dtype!r}: expected one of {', '.join(MAP_DTYPES)}")
    return {
        "schema": MAP_STORE_SCHEMA,
        "key": key,
        "protocol": protocol,
        "n_images": len(records),
        "ids_sha256": ids_sha256(records),
        "shard_size": int(shard_size),
        "dtype": dtype,
        "features": bool(features),
        "cam_target": cam_target if protocol == "localize" else "pred",
        "stride": int(stride),
        "image_size": WSOL_IMAGE_SIZE if protocol == "localize" else None,
        "has_classifier": bool(has_classifier),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dataset": None,
        "split": None,
        "data": None,
        "provenance": {},
        **(info or {}),
    }


class MapStore:
    """A folder of map shards with a manifest (see the module docstring).

    Open an existing store with ``MapStore.open(dir)``; ``extract_maps`` creates one."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest

    # -- creation and opening
    @classmethod
    def open(cls, root: str | os.PathLike) -> MapStore:
        """Open the store in ``root`` (its manifest must be there and readable)."""
        root = Path(root)
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise SimpoolBenchError(f"--maps {root}: no {MANIFEST_NAME} here (not a folder written by `simpool-bench extract`)")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SimpoolBenchError(f"{path}: not a readable map-store manifest ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("schema") != MAP_STORE_SCHEMA:
            raise SimpoolBenchError(
                f"{path}: map-store schema {manifest.get('schema') if isinstance(manifest, dict) else '?'}, expected {MAP_STORE_SCHEMA}"
            )
        return cls(root, manifest)

    @classmethod
    def create(cls, root: str | os.PathLike, manifest: dict[str, Any], resume: bool = True) -> MapStore:
        """The store for ``manifest`` in ``root``: the existing one when it has the same run key
        (``resume``), else a fresh one (``resume=False`` deletes the old shards). A store of another
        run is never mixed with this one: with ``resume`` that is an error. Under torchrun rank 0
        decides and writes; the other ranks then open what it wrote."""
        root = Path(root)
        if dist_world() > 1 and dist_rank() != 0:
            _barrier()
            store = cls.open(root)
            if store.manifest.get("key") != manifest["key"]:
                raise SimpoolBenchError(f"{root}: rank {dist_rank()} computes another run key than rank 0 (same command on every rank?)")
            return store
        try:
            old = root / MANIFEST_NAME
            if old.exists():
                existing = cls.open(root)
                if resume and existing.manifest.get("key") == manifest["key"]:
                    return existing
                if resume:
                    raise SimpoolBenchError(
                        f"{root} holds the maps of another extract run ({existing.describe()}); use another --out, "
                        f"or --no-resume to replace them"
                    )
                existing.clear()
            make_dir(root)
            atomic_write(old, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
            return cls(root, manifest)
        finally:
            if dist_world() > 1:
                _barrier()

    def clear(self) -> None:
        """Delete this store's own files (shards, checksums, manifest), nothing else."""
        try:
            for p in self.root.iterdir():
                if p.name.startswith(SHARD_PREFIX) and p.suffix in (".pt", ".sha256", ".tmp"):
                    p.unlink()
            (self.root / MANIFEST_NAME).unlink(missing_ok=True)
        except OSError as err:
            raise SimpoolBenchError(f"cannot clear the map store {self.root}: {os_reason(err)}") from None

    def describe(self) -> str:
        m = self.manifest
        prov = m.get("provenance") or {}
        return (
            f"{m.get('dataset')} {m.get('split')}, {m.get('n_images')} images, model {prov.get('model')} "
            f"pool {prov.get('pool')}, checkpoint {prov.get('checkpoint')}"
        )

    # -- geometry
    @property
    def protocol(self) -> str:
        return str(self.manifest["protocol"])

    @property
    def n_images(self) -> int:
        return int(self.manifest["n_images"])

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    @property
    def n_shards(self) -> int:
        return len(make_shards(self.n_images, self.shard_size))

    @property
    def dtype(self) -> torch.dtype:
        return MAP_DTYPES[self.manifest["dtype"]]

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.n_images))

    def shard_path(self, shard: int) -> Path:
        return self.root / f"{SHARD_PREFIX}{shard:06d}.pt"

    def checksum_path(self, shard: int) -> Path:
        return checksum_path(self.shard_path(shard))

    # -- shards
    def _load(self, shard: int) -> tuple[str, dict[str, Any] | None]:
        """('ok', payload) | ('missing', None) | ('corrupt', None)."""
        state, payload = load_checksummed(self.shard_path(shard))
        if state != "ok":
            return state, None
        if not isinstance(payload, dict) or payload.get("key") != self.manifest["key"] or payload.get("shard") != shard:
            return "corrupt", None
        return "ok", payload

    def status(self, shard: int) -> str:
        """'ok', 'missing' or 'corrupt' (checksum mismatch, unreadable, or another run's shard)."""
        return self._load(shard)[0]

    def write_shard(self, shard: MapShard) -> Path:
        """Write a shard atomically, then its checksum (a shard without a matching checksum is
        recomputed, so an interruption between the two is harmless)."""
        dtype = self.dtype
        if dtype == torch.float16:
            for i, m in zip(shard.ids, shard.maps):
                if np.abs(m[np.isfinite(m)]).max(initial=0.0) > FLOAT16_MAX:  # NaN/inf: counted by extract_maps
                    raise SimpoolBenchError(f"the map of image {i} exceeds the float16 range; extract with --dtype float32")
        path = self.shard_path(shard.shard)
        save_checksummed(path, shard.to_payload(self.manifest["key"], dtype))
        return path

    def read_shard(self, shard: int) -> MapShard:
        """One verified shard; a missing or corrupt one is a SimpoolBenchError naming the file."""
        state, payload = self._load(shard)
        if state == "missing":
            raise SimpoolBenchError(
                f"{self.shard_path(shard)}: missing (shard {shard} of {self.n_shards}); run the same extract command again to finish the store"
            )
        if state == "corrupt":
            raise SimpoolBenchError(
                f"{self.shard_path(shard)}: checksum mismatch or unreadable: refused; run the same extract command again to recompute it"
            )
        assert payload is not None
        return MapShard.from_payload(payload)

    def iter_shards(self) -> Iterator[MapShard]:
        """Every shard in order, each verified."""
        for sid in range(self.n_shards):
            yield self.read_shard(sid)

    def read(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        """The maps (float32) of the given dataset indices that decoded, reading only their shards."""
        want = sorted({int(i) for i in indices})
        out: dict[int, np.ndarray] = {}
        for sid in sorted({i // self.shard_size for i in want}):
            sh = self.read_shard(sid)
            pos = {int(i): j for j, i in enumerate(sh.indices)}
            for i in want:
                if i in pos:
                    out[i] = sh.maps[pos[i]].astype(np.float32)
        return out

    # -- checks
    def check_records(self, records: Sequence[Record], *, protocol: str | None = None, dataset: str | None = None) -> None:
        """Fail unless these maps were extracted from exactly ``records`` (ids, in order) with
        ``protocol`` (and, when given, under the dataset name ``dataset``)."""
        m = self.manifest
        if protocol is not None and m["protocol"] != protocol:
            raise SimpoolBenchError(
                f"--maps {self.root}: maps extracted for {m['protocol']} ({m['dataset']}), not for {protocol}; "
                f"extract them with a {protocol} dataset"
            )
        if dataset is not None and m["dataset"] != dataset:
            raise SimpoolBenchError(f"--maps {self.root}: maps of dataset {m['dataset']!r}, but --dataset is {dataset!r}")
        if len(records) != self.n_images or ids_sha256(records) != m["ids_sha256"]:
            raise SimpoolBenchError(
                f"--maps {self.root}: maps of {self.n_images} images of {m['dataset']} {m['split']} (from {m.get('data')}), "
                f"but the given data has {len(records)} images{' with other ids' if len(records) == self.n_images else ''}; "
                f"use the same --data/--metadata/--split as the extract run"
            )


# ------------------------------------------------------------------------------------ computing maps
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
        ImageDataset(subset, transform, warn=not config.strict, max_pixels=config.max_pixels),
        dict,
        step,
        replace(config, resume_dir=None),
        forward=forward,
        batches_for=batches_for,
        description=description,
    )


class _ShardBuffer:
    """Collects one shard's images until all have come through (decoded or not)."""

    def __init__(self, shard: int, members: range) -> None:
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


def _barrier() -> None:
    if dist_world() > 1:
        torch.distributed.barrier()


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
        key = resume_key(
            "extract",
            model,
            records,
            map_transform(model, protocol),
            params,
            amp=config.amp,
            shard_size=config.shard_size,
            device=resolve_device(config.device).type,
        )
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
    todo = [sid for sid, s in enumerate(states) if s != "ok"]
    _barrier()  # every rank has seen the same finished shards before any is written
    if todo:
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
            model,
            records,
            config,
            on_batch,
            protocol=protocol,
            indices=order,
            cam_target=cam_target,
            features=features,
            description="extract",
        )
    _barrier()
    n_ok = n_failed = n_bad = 0
    for sh in store.iter_shards():
        n_ok += len(sh.indices)
        n_failed += len(sh.failed)
        n_bad += sum(not np.isfinite(m).all() for m in sh.maps)
    check_nonfinite(n_bad, n_ok, "maps", config.allow_nonfinite)
    return ExtractReport(store, n_ok, n_failed, len(shards), len(shards) - len(todo), len(todo), sum(s == "corrupt" for s in states), n_bad)
