"""What a run leaves behind: its provenance, its tidy table and the files written with it
(``results.*``, ``boxacc_curve.csv``, ``per_class.csv``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .engine import EngineConfig, dist_rank
from .finite import NONFINITE_METRIC
from .loading import describe_data_config
from .per_image import PER_IMAGE_CSV, PER_IMAGE_PARQUET, csv_bytes, parquet_bytes, with_extra_columns
from .results import Provenance, add_run_file, make_table, write_run
from .results.table import as_json
from .tasks import Outcome

if TYPE_CHECKING:
    from .checkpoints import LoadedCheckpoint
    from .models import BenchModel


def provenance(
    model: BenchModel | None,
    ckpt: LoadedCheckpoint | None,
    config: EngineConfig,
    *,
    image_size: int | None,
    n_images: int,
    method: str | None = None,
    baseline: str | None = None,
    protocol: Mapping[str, Any] | None = None,
    transform: Mapping[str, Any] | None = None,
    data_sha256: str | None = None,
    knn_data_sha256: str | None = None,
) -> Provenance:
    """The run's provenance (what produced these numbers); ``image_size`` None = full resolution;
    ``protocol`` and ``transform``: the records of ``specs.protocol_of`` and ``transforms.transform_record``.
    ``random_init``: the model ran without weights (no checkpoint, no pretrained weights).
    ``data_sha256``: ``data.records.records_sha256`` of the evaluated records; ``knn_data_sha256``:
    of the evaluated records, then the k-NN memory bank's (a run with k-NN rows)."""
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
        attn_options=(
            f"fusion={model.rollout_fusion} discard={model.rollout_discard:g}" if (model is not None and attn == "rollout") else None
        ),
        gamma=model.gamma if model is not None else None,
        min_scope=getattr(model, "min_scope", None) if model is not None else None,
        attn_source=getattr(model, "attn_source", None) if model is not None else None,
        cls_head=getattr(model, "cls_head", None) if getattr(model, "attn_source", None) == "cls" else None,
        pos_interp=pos_interp_of(model),
        protocol=as_json(protocol),
        transform=as_json(transform),
        random_init=model is not None and (ck_fmt == "random-init" or bool(getattr(model, "random_init", False))),
        method=method,
        image_size=image_size,
        n_images=n_images,
        data_sha256=data_sha256,
        knn_data_sha256=knn_data_sha256,
        device=str(resolve_device(config.device)),
        amp=config.amp if model is not None else "off",  # no model ran: --amp changed nothing
    )


def map_transform_record(model: BenchModel | None, protocol: str) -> dict[str, Any] | None:
    """The ``transform`` record of ``localize``/``discover`` (``protocol``) with ``model``: the
    transform its task builds (``extraction.map_transform``); None without a model."""
    if model is None:
        return None
    from .extraction import map_transform
    from .transforms import transform_record

    return transform_record(map_transform(model, protocol))


def pos_interp_of(model: BenchModel | None) -> str | None:
    """The position-embedding resize a ViT ran with ('timm' | 'dino' | 'dino-quirk'); None otherwise."""
    if model is None or getattr(model, "family", None) != "vit":
        return None
    return "dino-quirk" if model.dino_pos_quirk else model.pos_interp


def finish_run(
    outcome: Outcome,
    prov: Provenance,
    out: Path | None,
    formats: Sequence[str] = ("parquet", "csv", "json"),
    *,
    per_class: bool = False,
    classes: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, tuple[Path, ...]]:
    """Tidy table with provenance; on rank 0 written to ``out`` as one set (``results.write_run``):
    results.csv and results.parquet always, ``formats``, per_image.parquet (and per_image.csv
    with csv among ``formats``) when the outcome has per-image records, boxacc_curve.csv
    (localize) and, with ``per_class``, per_class.csv (classify)."""
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
        frame = per_image_of(outcome)
        if frame is not None:
            extra[PER_IMAGE_PARQUET] = parquet_bytes(frame)
            if any(f.lower() == "csv" for f in formats):
                extra[PER_IMAGE_CSV] = csv_bytes(frame)
        replaced = _other_run_in(Path(out), table)
        written = write_run(table, Path(out), formats=tuple(formats), extra=extra)
        if replaced:
            from .console import note

            note(f"note: {out} held the results of another run ({replaced}); they are replaced (another --out keeps both)")
        return table, tuple(written.values())
    return table, ()


#: What a run measured: a folder whose results differ in one of these held another run's results.
RUN_IDENTITY: tuple[str, ...] = (
    "dataset",
    "split",
    "checkpoint_sha256",
    "model",
    "pool",
    "attn_source",
    "method",
    "data_sha256",
    "knn_data_sha256",
)


def _other_run_in(out: Path, table: pd.DataFrame) -> str:
    """How the run whose results.csv is in ``out`` differs from ``table`` in ``RUN_IDENTITY``
    ('field old -> new', the first two fields that differ); '' for none, or no readable results."""
    try:
        old = pd.read_csv(out / "results.csv", usecols=lambda c: c in RUN_IDENTITY, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return ""
    if old.empty:
        return ""
    new = table.astype(object).where(table.notna(), "")
    differ = []
    for col in RUN_IDENTITY:
        if col in old.columns and col in new.columns:
            was, now = str(old[col].iat[0]), str(new[col].iat[0])
            if was != now:
                differ.append(f"{col} {_short(was)} -> {_short(now)}")
    return "; ".join(differ[:2])


def _short(value: str) -> str:
    """A value for a one-line note: digests cut to 12 characters, '' shown as 'none'."""
    if not value:
        return "none"
    return value[:12] if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else value


def per_image_of(outcome: Outcome) -> pd.DataFrame | None:
    """The outcome's per-image records with the task's extra columns (``extras['per_image_columns']``)."""
    return with_extra_columns(outcome.per_image, outcome.extras)


def per_class_csv(per_class_top1: Any, classes: Sequence[str] | None) -> bytes:
    """Per-class top-1 accuracy as CSV bytes (class_index, class_name, top1)."""
    import numpy as np

    acc = np.asarray(per_class_top1, dtype=float)
    names = list(classes) if classes is not None and len(classes) == len(acc) else [str(i) for i in range(len(acc))]
    frame = pd.DataFrame({"class_index": np.arange(len(acc)), "class_name": names, "top1": acc})
    return frame.to_csv(index=False).encode("utf-8")


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


def stored_provenance(
    store: Any, *, n_images: int, method: str | None = None, protocol: Mapping[str, Any] | None = None, data_sha256: str | None = None
) -> Provenance:
    """Provenance of a run computed from stored maps: the extracting model's (from the store's
    manifest: its transform and random_init too, where recorded), with this run's id, date,
    command line and ``protocol`` record."""
    known = dict(store.manifest.get("provenance") or {})
    for k in ("run_id", "date", "command", "n_images", "data_sha256", "knn_data_sha256", "method", "schema_version", "protocol"):
        known.pop(k, None)
    known = {k: v for k, v in known.items() if k in Provenance.__dataclass_fields__}
    if protocol is not None:
        known["protocol"] = as_json(protocol)
    model, pool = known.pop("model", "unknown"), known.pop("pool", "unknown")
    known.setdefault("random_init", known.get("checkpoint_format") == "random-init")  # stores from before the flag
    return Provenance.collect(model=model, pool=pool, n_images=n_images, data_sha256=data_sha256, method=method, **known)
