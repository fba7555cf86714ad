"""The importable API behind every command: build/load a model, read a dataset, run an evaluation,
and turn the outcome into a tidy, provenance-stamped table.

    >>> from simpool_bench import api
    >>> model, ckpt = api.load_model(checkpoint="vits_supervised_simpool_ep300.pth.tar")
    >>> table = api.run_localize(model, ckpt, dataset="cub", data="/data/CUB_200_2011/images",
    ...                          metadata="wsol/CUB/test", out="results/")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import tasks as ev
from .data.coco20k import read_coco20k
from .data.imagenet import read_flat_folder, read_image_folder, subset_per_class
from .data.records import Record
from .data.voc import read_voc
from .data.wsol import read_cub_native, read_wsol_metadata
from .engine import EngineConfig, dist_rank
from .errors import SimpoolBenchError
from .finite import NONFINITE_METRIC
from .registry import DATASETS
from .results import Provenance, add_run_file, make_table, write_run
from .specs import ModelOptions

if TYPE_CHECKING:  # timm and the checkpoint loaders are imported only when a model is built
    from .checkpoints import LoadedCheckpoint
    from .models import BenchModel


# ------------------------------------------------------------------------------------------ models
def load_model(options: ModelOptions) -> tuple[BenchModel, LoadedCheckpoint | None]:
    """Build the model the options describe and load its checkpoint (auto-detected format).

    The checkpoint tells arch/pool/gamma/variant where it can; explicit options win, and an option
    that contradicts the file is an error. Without a checkpoint the model is randomly initialised.
    ViTs from DINO-code weights (``ckpt.dino_code``: DINO checkpoints and backbones, official SimPool
    DINO files) run as DINO's ``vision_transformer.py``: its position interpolation
    (``pos_interp='dino'`` unless ``options.pos_interp`` says otherwise) and its explicit attention;
    other weights keep timm's way."""
    from .checkpoints import UNSET, load_checkpoint, load_into, resolve_spec
    from .models import build_model

    ckpt = None
    arch, pool, gamma, variant = options.arch, options.pool, options.gamma, options.variant
    extra: dict[str, Any] = {}
    pretrained = bool(options.pretrained or options.pretrained_file is not None)
    if pretrained and options.checkpoint is not None:
        raise SimpoolBenchError("--checkpoint and --pretrained/--pretrained-file both give weights: use one")
    if options.checkpoint is not None:
        ckpt = load_checkpoint(options.checkpoint, format=options.format, trust=options.trust, prefer=options.prefer)
        arch, pool, gamma, variant = resolve_spec(ckpt, arch=arch, pool=pool, gamma=gamma, variant=variant)
        extra = dict(getattr(ckpt, "model_kwargs", None) or {})
    if arch is None:
        raise SimpoolBenchError("no architecture: give --model (e.g. vit_small_patch16_224) or a --checkpoint that names one")
    num_classes = options.num_classes
    if num_classes is None and not pretrained:
        num_classes = ckpt.num_classes if (ckpt is not None and ckpt.num_classes is not None) else (0 if variant == "dino" else 1000)
    quirk = options.dino_pos_quirk
    if quirk is None:
        quirk = bool(ckpt is not None and ckpt.dino_pos_quirk)
    kwargs: dict[str, Any] = dict(
        pool=pool or (None if pretrained else "simpool"), variant=variant or "supervised", num_classes=num_classes,
        min_scope=options.min_scope, attn_source=options.attn_source, cls_head=options.cls_head, dino_pos_quirk=quirk,
        use_beta=bool(ckpt is not None and ckpt.has_beta), pretrained=pretrained,
        pretrained_file=None if options.pretrained_file is None else str(options.pretrained_file),
        data_overrides=data_overrides(options), rollout_fusion=options.rollout_fusion,
        rollout_discard=options.rollout_discard,
    )
    dino_vit = ckpt is not None and ckpt.dino_code and ckpt.family == "vit"
    if options.pos_interp is not None or dino_vit:
        kwargs["pos_interp"] = options.pos_interp or "dino"
    if dino_vit:
        kwargs["fused_attn"] = False
    if gamma is not UNSET:
        kwargs["gamma"] = gamma
    if options.img_size is not None:
        kwargs["img_size"] = options.img_size
        extra.pop("img_size", None)
    model = build_model(arch, **kwargs, **extra)
    if ckpt is not None:
        load_into(model, ckpt)
    return model, ckpt


def data_overrides(options: ModelOptions) -> dict[str, Any]:
    """The data-config entries the user set (``--mean``, ``--std``, ``--crop-pct``, ``--interpolation``),
    checked; they win over the model's pretrained config."""
    out: dict[str, Any] = {}
    for name in ("mean", "std"):
        v = getattr(options, name)
        if v is None:
            continue
        v = tuple(float(x) for x in v)
        if len(v) not in (1, 3) or (name == "std" and any(x <= 0 for x in v)):
            raise SimpoolBenchError(f"--{name} {','.join(map(str, v))}: expected 3 numbers (R,G,B){', all > 0' if name == 'std' else ''}")
        out[name] = v * 3 if len(v) == 1 else v
    if options.crop_pct is not None:
        if not 0.0 < float(options.crop_pct) <= 1.0:
            raise SimpoolBenchError(f"--crop-pct {options.crop_pct}: expected a fraction in (0, 1]")
        out["crop_pct"] = float(options.crop_pct)
    if options.interpolation is not None:
        if options.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise SimpoolBenchError(f"--interpolation {options.interpolation!r}: expected bilinear, bicubic or nearest")
        out["interpolation"] = options.interpolation
    return out


def describe_data_config(cfg: dict[str, Any]) -> str:
    """One provenance string of a data config: mean, std, crop_pct, interpolation, input size."""
    def nums(v: Any) -> str:
        return ",".join(f"{float(x):g}" for x in v)

    size = cfg.get("input_size", (3, 0, 0))
    return (f"mean={nums(cfg.get('mean', ()))} std={nums(cfg.get('std', ()))} crop_pct={float(cfg.get('crop_pct', 0)):g} "
            f"interpolation={cfg.get('interpolation', '')} input={size[-2]}x{size[-1]}")


# ------------------------------------------------------------------------------------------ data
def read_classification_data(
    data: Path, split: str | None = None, labels: Path | None = None, metadata: Path | None = None, subset: int | None = None,
    default_split: str | None = None,
) -> tuple[list[Record], list[str] | None]:
    """Records of a classification split: wsol metadata (``metadata``), a flat folder with a label
    file (``labels``), or an ImageFolder tree: ``data/split``, which must exist (otherwise the
    split folders would be read as classes); without ``split``, ``data/default_split`` when it
    exists, else ``data``."""
    data = Path(data)
    if not data.exists():
        raise SimpoolBenchError(f"--data {data}: no such directory")
    classes: list[str] | None = None
    if metadata is not None:
        records = read_wsol_metadata(metadata, data)
    elif labels is not None:
        records, classes = read_flat_folder(data, labels)
    else:
        if split:
            root = data / split
            if not root.is_dir():
                there = sorted(e.name for e in os.scandir(data) if e.is_dir() and not e.name.startswith(".")) if data.is_dir() else []
                raise SimpoolBenchError(
                    f"--split {split!r}: no folder {root} (sub-folders of {data}: {', '.join(there[:8]) or 'none'}"
                    f"{', ...' if len(there) > 8 else ''})"
                )
        else:
            root = data / default_split if (default_split and (data / default_split).is_dir()) else data
        records, classes = read_image_folder(root)
    if subset:
        records = subset_per_class(records, subset)
    return records, classes


def read_localization_data(dataset: str, data: Path, metadata: Path | None = None, split: str = "test") -> list[Record]:
    """Records with GT boxes for localize: wsolevaluation metadata, or CUB-200-2011's native files
    when ``metadata`` is not given and ``data`` holds ``images.txt``."""
    data = Path(data)
    if metadata is not None:
        return read_wsol_metadata(metadata, data)
    if dataset == "cub" and (data / "images.txt").exists():
        return read_cub_native(data, split=split)
    raise SimpoolBenchError(
        f"--metadata is required for {dataset} (wsolevaluation metadata folder, e.g. metadata/{dataset.upper()}/{split}); "
        f"{data / 'images.txt'} (CUB native layout) not found either"
    )


def read_discovery_data(
    dataset: str, data: Path, split: str = "trainval", no_hard: bool = False,
    annotations: Path | None = None, list_file: Path | None = None,
) -> list[Record]:
    """Records for discover: VOC07/VOC12 (``data`` = the VOC20XX folder) or COCO20k
    (``data`` = train2014 images, ``annotations`` = instances_train2014.json, ``list_file`` = the 20k list)."""
    if dataset in ("voc07", "voc12"):
        return read_voc(data, split=split, no_hard=no_hard)
    if dataset == "coco20k":
        if annotations is None or list_file is None:
            raise SimpoolBenchError("coco20k needs --annotations instances_train2014.json and --list coco_20k_filenames.txt")
        return read_coco20k(data, annotations, list_file)
    raise SimpoolBenchError(f"--dataset {dataset!r}: expected voc07, voc12 or coco20k")


# ------------------------------------------------------------------------------------------ records
def provenance(
    model: BenchModel | None, ckpt: LoadedCheckpoint | None, config: EngineConfig, *,
    image_size: int | None, n_images: int, method: str | None = None, baseline: str | None = None,
) -> Provenance:
    """The run's provenance (what produced these numbers); ``image_size`` None = full resolution."""
    from .engine import resolve_device

    wfile = getattr(model, "weights_file", None) if model is not None else None
    wsrc = getattr(model, "weights_source", None) if model is not None else None
    if ckpt:
        ck, ck_fmt = str(ckpt.path), ckpt.format
    elif wsrc is not None:
        ck = str(wfile) if wfile is not None else wsrc
        ck_fmt = "torchvision-pretrained" if wsrc.startswith("torchvision:") else "timm-pretrained"
    else:
        ck, ck_fmt = None, ("none" if model is None else "random-init")
    attn = getattr(model, "attn_source", None) if model is not None else None
    return Provenance.collect(
        model=(model.arch if model is not None else f"baseline:{baseline}"),
        pool=model.pool if model is not None else "none",
        checkpoint=ck,
        checkpoint_sha256=ckpt.sha256 if ckpt else None,
        checkpoint_format=ck_fmt,
        weights=wsrc,
        data_config=describe_data_config(model.data_config) if model is not None else None,
        attn_options=(f"fusion={model.rollout_fusion} discard={model.rollout_discard:g}" if attn == "rollout" else None),
        gamma=model.gamma if model is not None else None,
        min_scope=getattr(model, "min_scope", None) if model is not None else None,
        attn_source=getattr(model, "attn_source", None) if model is not None else None,
        cls_head=getattr(model, "cls_head", None) if getattr(model, "attn_source", None) == "cls" else None,
        pos_interp=pos_interp_of(model),
        method=method, image_size=image_size, n_images=n_images,
        device=str(resolve_device(config.device)), amp=config.amp,
    )


def pos_interp_of(model: BenchModel | None) -> str | None:
    """The position-embedding resize a ViT ran with ('timm' | 'dino' | 'dino-quirk'); None otherwise."""
    if getattr(model, "family", None) != "vit":
        return None
    return "dino-quirk" if model.dino_pos_quirk else model.pos_interp


def finish(outcome: ev.Outcome, prov: Provenance, out: Path | None, formats: Sequence[str] = ("parquet", "csv", "json"),
           *, per_class: bool = False, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy table with provenance; on rank 0 written to ``out`` as one set (``results.write_run``):
    results.csv and results.parquet always, ``formats``, boxacc_curve.csv (localize) and, with
    ``per_class``, per_class.csv (classify)."""
    rows = list(outcome.rows)
    ds, sp = (rows[0]["dataset"], rows[0]["split"]) if rows else ("", "")
    rows.append({"dataset": ds, "split": sp, "metric": "n_images", "iou_threshold": None, "value": float(outcome.n_images)})
    if outcome.n_failed:
        rows.append({"dataset": ds, "split": sp, "metric": "n_failed", "iou_threshold": None, "value": float(outcome.n_failed)})
    if outcome.n_nonfinite:
        rows.append({"dataset": ds, "split": sp, "metric": NONFINITE_METRIC, "iou_threshold": None, "value": float(outcome.n_nonfinite)})
    table = make_table(rows, prov)
    if out is not None and dist_rank() == 0:
        extra = {}
        if "curve" in outcome.extras:
            extra["boxacc_curve.csv"] = curve_csv(outcome.extras)
        if per_class and "per_class_top1" in outcome.extras:
            extra["per_class.csv"] = per_class_csv(outcome.extras["per_class_top1"], classes)
        write_run(table, Path(out), formats=tuple(formats), extra=extra)
    return table


def per_class_csv(per_class_top1: Any, classes: Sequence[str] | None) -> bytes:
    """Per-class top-1 accuracy as CSV bytes (class_index, class_name, top1)."""
    import numpy as np

    acc = np.asarray(per_class_top1, dtype=float)
    names = list(classes) if classes is not None and len(classes) == len(acc) else [str(i) for i in range(len(acc))]
    frame = pd.DataFrame({"class_index": np.arange(len(acc)), "class_name": names, "top1": acc})
    return frame.to_csv(index=False).encode("utf-8")


def write_per_class(per_class_top1: Any, classes: Sequence[str] | None, path: Path) -> Path:
    """``per_class_csv`` written (atomically) to ``path``, added to the run in that folder, if any."""
    return add_run_file(Path(path).parent, Path(path).name, per_class_csv(per_class_top1, classes))


def curve_csv(extras: dict[str, Any]) -> bytes:
    """The BoxAcc-vs-threshold curve as CSV bytes (threshold, boxacc_30, boxacc_50, boxacc_70)."""
    import numpy as np

    curve = np.asarray(extras["curve"], dtype=float)
    cols = {"threshold": np.asarray(extras["curve_thresholds"], dtype=float)}
    for j, iou in enumerate(extras.get("curve_ious", (30, 50, 70))):
        cols[f"boxacc_{iou}"] = curve[:, j]
    return pd.DataFrame(cols).to_csv(index=False).encode("utf-8")


def write_curve(extras: dict[str, Any], path: Path) -> Path | None:
    """``curve_csv`` written (atomically) to ``path``, added to the run in that folder, if any; None
    without a curve."""
    if "curve" not in extras:
        return None
    return add_run_file(Path(path).parent, Path(path).name, curve_csv(extras))


# ------------------------------------------------------------------------------------------ stored maps
#: The split recorded (and, for VOC/CUB native, read) when ``--split`` is not given.
DEFAULT_SPLITS = {name: record.default_split for name, record in DATASETS.items()}


def read_image_files(root: Path) -> list[Record]:
    """Every image under ``root`` (recursively, sorted by relative path), without labels or boxes;
    the size is read from each file's header (unreadable files get 0 x 0 and fail at decoding)."""
    from .data.imagenet import IMG_EXTENSIONS
    from .data.images import header_size

    root = Path(root)
    if not root.is_dir():
        raise SimpoolBenchError(f"--data {root}: no such directory")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not paths:
        raise SimpoolBenchError(f"--data {root}: no image files ({', '.join(IMG_EXTENSIONS)})")
    records = []
    for p in paths:
        try:
            w, h = header_size(p)
        except Exception:  # noqa: BLE001 - decoding reports it later, per image
            w = h = 0
        records.append(Record(p.relative_to(root).as_posix(), p, -1, w, h))
    return records


def read_map_data(
    dataset: str, data: Path, *, metadata: Path | None = None, split: str | None = None, no_hard: bool = False,
    annotations: Path | None = None, list_file: Path | None = None,
) -> list[Record]:
    """Records for ``extract``/``visualize``: cub/imagenet as ``localize`` reads them, voc07/voc12/
    coco20k as ``discover`` does, or ``folder``: every image under ``data``."""
    from .map_store import protocol_for

    protocol_for(dataset)  # validates the name
    split = split or DEFAULT_SPLITS[dataset]
    if dataset == "folder":
        return read_image_files(data)
    if dataset in ("cub", "imagenet"):
        return read_localization_data(dataset, data, metadata, split)
    return read_discovery_data(dataset, data, split, no_hard, annotations, list_file)


def stored_provenance(store: Any, *, n_images: int, method: str | None = None) -> Provenance:
    """Provenance of a run computed from stored maps: the extracting model's (from the store's
    manifest), with this run's id, date and command line."""
    known = dict(store.manifest.get("provenance") or {})
    for k in ("run_id", "date", "command", "n_images", "method", "schema_version"):
        known.pop(k, None)
    model, pool = known.pop("model", "unknown"), known.pop("pool", "unknown")
    return Provenance.collect(model=model, pool=pool, n_images=n_images, method=method, **known)


def from_maps(kind: str, maps: Path, records: Sequence[Record], **kwargs: Any) -> tuple[ev.Outcome, Provenance]:
    """``localize`` or ``discover`` (method attn) scored on the maps stored by ``extract`` in
    ``maps`` instead of a model's; ``kwargs`` go to ``tasks.localize_stored``/``discover_stored``.
    The provenance is the extracting model's (from the store's manifest)."""
    from .map_store import MapStore

    store = MapStore.open(maps)
    if kind == "localize":
        outcome = ev.localize_stored(store, records, **kwargs)
        method = None
    elif kind == "discover":
        outcome = ev.discover_stored(store, records, **kwargs)
        method = "attn"
    else:
        raise SimpoolBenchError(f"from_maps: kind {kind!r}, expected localize or discover")
    return outcome, stored_provenance(store, n_images=outcome.n_images, method=method)
