"""Attention maps on disk: ``extract`` writes them shard by shard; localize, discover and visualize
read them back without the model.

A map store is a folder::

    manifest.json        what the maps are: protocol, dataset, image ids (their sha256), shard
                         size, dtype, grid, the model's provenance and the extraction's run key,
                         and the sha256 of all that (``manifest_sha256``)
    maps_000012.pt       shard 12: dataset indices and image ids of the images that decoded, their
                         maps (flattened, with each map's (h, w)), top-1 predictions, optional
                         pooled features, and the indices of the images that did not decode
    maps_000012.sha256   sha256 of the shard file

A shard whose checksum does not match (or that is missing) is recomputed by ``extract_maps`` and
refused by every reader, with a message naming the file: a stored map is never trusted unchecked.
A manifest whose content no longer matches its ``manifest_sha256`` (damaged, or edited by hand) is
refused when the store is opened; one without the entry (written before it existed, or with it
deleted on purpose) is read as it is.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .data.records import Record
from .engine import dist_rank, dist_world, make_shards
from .errors import SimpoolBenchError
from .files import atomic_write, checksum_path, load_checksummed, make_dir, os_reason, save_checksummed
from .registry import DATASETS
from .transforms import WSOL_IMAGE_SIZE

if TYPE_CHECKING:
    pass

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


def holds_cams(manifest: dict[str, Any]) -> bool:
    """Whether a store's maps are CAMs (of the class its ``cam_target`` names), from its manifest."""
    return (manifest.get("provenance") or {}).get("attn_source") == "cam"


def ids_sha256(records: Sequence[Record]) -> str:
    """sha256 of the image ids in order (what a reader checks it reads the maps of its images): of
    the ids joined by newlines, or, where an id holds a newline itself (a file name may), of a NUL
    byte and their JSON list, so that ids split otherwise never share a digest."""
    ids = [r.image_id for r in records]
    if any("\n" in i for i in ids):
        return hashlib.sha256(b"\x00" + json.dumps(ids).encode()).hexdigest()
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


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


#: The manifest's own checksum: the sha256 of its other entries (``manifest_digest``).
MANIFEST_DIGEST = "manifest_sha256"


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of a manifest's entries other than :data:`MANIFEST_DIGEST`, as sorted-key JSON (what
    ``json.loads`` of the written file gives back, entry for entry)."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _is_int(v: Any, least: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


#: What readers take from a store's manifest: key -> (check, what it must be).
_MANIFEST_FIELDS: dict[str, tuple[Any, str]] = {
    "key": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "protocol": (lambda v: v in PROTOCOLS, f"one of {', '.join(PROTOCOLS)}"),
    "n_images": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "ids_sha256": (lambda v: isinstance(v, str), "a string"),
    "shard_size": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "dtype": (lambda v: isinstance(v, str) and v in MAP_DTYPES, f"one of {', '.join(MAP_DTYPES)}"),
    "stride": (lambda v: _is_int(v, 0) and v < 2**31, "an integer >= 0"),
    "dataset": (lambda v: v is None or isinstance(v, str), "a string"),
    "split": (lambda v: v is None or isinstance(v, str), "a string"),
    "has_classifier": (lambda v: isinstance(v, bool), "true or false"),
    "provenance": (lambda v: isinstance(v, dict), "an object"),
}


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """The first field of a map-store manifest that is missing or not what ``make_manifest`` writes (None: none)."""
    for key, (ok, what) in _MANIFEST_FIELDS.items():
        if key not in m:
            return f"no {key!r}; expected {what}"
        try:
            good = bool(ok(m[key]))
        except TypeError:  # an unhashable value for a choice
            good = False
        if not good:
            return f"{key!r} is {m[key]!r}; expected {what}"
    return None


def _payload_problem(p: dict[str, Any], span: range, dtype: torch.dtype) -> str | None:
    """What makes a shard payload one ``MapShard.from_payload`` cannot read as the maps of the
    images in ``span`` in the store's ``dtype`` (None: none): a missing or non-tensor field, maps
    of another dtype, shapes that are not (n, 2) or do not add up to the maps, per-image fields of
    another length, indices outside the shard."""
    tensors = ("indices", "shapes", "maps", "preds", "failed")
    bad = [k for k in tensors if not isinstance(p.get(k), torch.Tensor)]
    if bad or not isinstance(p.get("ids"), list) or not (p.get("features") is None or isinstance(p["features"], torch.Tensor)):
        return f"field {(bad or ['ids or features'])[0]!r} missing or of another type"
    idx, shapes, n = p["indices"], p["shapes"], len(p["ids"])
    if shapes.ndim != 2 or shapes.shape[1] != 2 or shapes.dtype.is_floating_point or bool((shapes < 0).any()):
        return "shapes is not an (n, 2) integer tensor"
    if p["maps"].numel() and p["maps"].dtype != dtype:
        return f"maps of dtype {p['maps'].dtype}, the store's is {dtype}"
    if p["maps"].ndim != 1 or int(shapes.prod(dim=1).sum()) != p["maps"].numel():
        return "maps do not hold the sizes shapes gives"
    if not (idx.ndim == p["preds"].ndim == p["failed"].ndim == 1) or not (len(idx) == len(shapes) == len(p["preds"]) == n):
        return "indices, ids, shapes and preds of different lengths"
    if p["features"] is not None and (p["features"].ndim != 2 or len(p["features"]) != n):
        return "features is not one row per image"
    inside = sorted(int(i) for i in torch.cat([idx, p["failed"]]).tolist())
    if inside != list(span):  # each image of the shard once, decoded or failed (another shard size: other images)
        return f"indices are not the shard's images {span.start} to {span.stop - 1}, each once"
    return None


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
        if MANIFEST_DIGEST in manifest and manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
            raise SimpoolBenchError(
                f"{path}: changed after `simpool-bench extract` wrote it (its content does not match its {MANIFEST_DIGEST}): "
                f"a damaged or hand-edited manifest; extract the maps again, or delete its {MANIFEST_DIGEST!r} entry to read it as it is"
            )
        problem = _manifest_problem(manifest)
        if problem is not None:
            raise SimpoolBenchError(f"{path}: {problem}, as `simpool-bench extract` writes it (a damaged or hand-edited manifest)")
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
            if old.exists() and not resume:
                cls(root, manifest).clear()  # replaced unread: a damaged or older manifest too
            elif old.exists():
                try:
                    existing = cls.open(root)
                except SimpoolBenchError as err:
                    raise SimpoolBenchError(f"{err}; use another --out, or --no-resume to replace the maps") from None
                if existing.manifest.get("key") == manifest["key"]:
                    return existing
                raise SimpoolBenchError(
                    f"{root} holds the maps of another extract run ({existing.describe()}); use another --out, "
                    f"or --no-resume to replace them"
                )
            make_dir(root)
            manifest = {**manifest, MANIFEST_DIGEST: manifest_digest(manifest)}
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
        if _payload_problem(payload, self._span(shard), self.dtype) is not None:  # its checksum matches a content no extract writes
            return "corrupt", None
        return "ok", payload

    def _span(self, shard: int) -> range:
        """The dataset indices of shard ``shard``."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.n_images))

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
        if want and (want[0] < 0 or want[-1] >= self.n_images):
            bad = want[0] if want[0] < 0 else want[-1]
            raise SimpoolBenchError(
                f"--maps {self.root}: image index {bad} is out of range: the store holds {self.n_images} images (0 to {self.n_images - 1})"
            )
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


def _barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if dist_world() > 1:
        torch.distributed.barrier()
