"""Frozen descriptions of a run: which data, which model (or stored maps, or a baseline), which
protocol parameters; and what a run gives back (``RunResult``). ``runs`` turns them into tables.

"Gamma not given" has one spelling: ``unset.UNSET`` (``ModelOptions.gamma``'s default).
``protocol_of`` is the ``protocol`` provenance record of a spec.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .errors import SimpoolBenchError
from .fields import check_fields
from .registry import CLASSIFY_DEFAULT_SPLIT, DINO_KNN, LOST, WSOL
from .unset import UNSET

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelOptions:
    """Everything that decides which model is built and how it is loaded (the CLI's model flags).

    Attributes:
        arch: timm model name (``--model``), e.g. vit_small_patch16_224; ``hf-hub:ORG/NAME`` and
            ``torchvision:NAME`` too. None: the checkpoint's.
        pool: simpool | cls | gap | map (None: the checkpoint's, else simpool).
        gamma: SimPool's exponent; ``UNSET``: the checkpoint's or the paper's (1.25 transformers,
            2.0 CNNs); None: the plain attention-weighted mean.
        checkpoint: the checkpoint file (format detected; ``format`` forces one of
            ``checkpoints.FORMATS``); ``trust``: allow arbitrary unpickling (files you trust only).
        prefer: which weights of a checkpoint: auto (EMA, DINO teacher) | ema | raw | teacher | student.
        variant: ViT layout: supervised (norm before SimPool) | dino (norm after).
        min_scope: where SimPool's gamma shift takes its min: sample | batch (official) | channel (timm).
        attn_source: the map: simpool | cls | cam | map | rollout | gradcam (None: the pool's own);
            ``cls_head``: one head of a CLS map instead of their mean.
        num_classes: classifier size where the checkpoint does not tell; ``img_size``: input size
            (None: a ViT checkpoint's own position grid, else timm's pretrained config of ``arch``, else 224).
        dino_pos_quirk, pos_interp: DINO-code position-embedding resampling (None: from the file).
        pretrained, pretrained_file: timm's weights of ``arch`` (Hugging Face cache, or this file).
        mean, std, crop_pct, interpolation: override the model's pretrained data config.
        rollout_fusion, rollout_discard: attention rollout's head fusion and discarded fraction.
        random_init: run ``arch`` with random weights on purpose (refused without it)."""

    arch: str | None = None
    pool: str | None = None
    gamma: Any = UNSET
    checkpoint: Path | None = None
    format: str | None = None
    trust: bool = False
    prefer: str = "auto"
    variant: str | None = None
    min_scope: str = "sample"
    attn_source: str | None = None
    cls_head: int | None = None
    num_classes: int | None = None
    img_size: int | None = None
    dino_pos_quirk: bool | None = None
    pos_interp: str | None = None
    pretrained: bool = False
    pretrained_file: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    rollout_fusion: str = "mean"
    rollout_discard: float = 0.0
    random_init: bool = False  # run --model with random weights (refused without it; a warning and a provenance flag)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def gives_weights(self) -> bool:
        """A checkpoint or pretrained weights were named (the stored-maps and baseline runs take none)."""
        return bool(self.arch or self.checkpoint or self.pretrained or self.pretrained_file)


@dataclass(frozen=True)
class DataSpec:
    """Where a dataset is and how to read it; ``label`` is the name recorded in the table
    (default: ``dataset``), ``split`` None means the dataset's default split."""

    dataset: str
    data: Path | None = None
    split: str | None = None
    metadata: Path | None = None
    labels: Path | None = None
    subset: int | None = None
    annotations: Path | None = None
    list_file: Path | None = None
    no_hard: bool = False
    label: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        # the names recorded in the table: a name with spaces around it would be another dataset there
        for flag, value in (("--dataset", self.dataset), ("--split", self.split), ("--data-label", self.label)):
            if isinstance(value, str) and (not value.strip() or value != value.strip() or "\n" in value):
                raise SimpoolBenchError(
                    f"{flag} {value!r}: expected a name without spaces around it or line breaks"
                    + (f" ({value.strip()!r}?)" if value.strip() and "\n" not in value else "")
                )
        # a split is read under --data (data/<split>, ImageSets/Main/<split>.txt): a path there left it
        if isinstance(self.split, str) and (PurePath(self.split).is_absolute() or ".." in PurePath(self.split).parts):
            raise SimpoolBenchError(f"--split {self.split!r}: expected a split name under --data (e.g. val, test), not a path outside it")
        _at_least_one(self, "subset")  # 0 read as "no subset" (every image)

    @property
    def name(self) -> str:
        return self.label or self.dataset


@dataclass(frozen=True)
class ClassifySpec:
    """Top-1/top-5 and DINO's weighted k-NN; ``resize``/``crop``/``interpolation`` override the eval transform.

    k-NN: one row per k of ``knn_k``; ``knn_subset`` N keeps the first N bank images of every class
    (sorted file order, as ``--subset``); ``knn_chunks``: the test features go through DINO's
    ``knn_classifier`` in ``n // knn_chunks`` rows at a time (DINO 100, SimPool's copy 500).
    ``prefetcher``: normalise the pixels as timm's ``validate.py``/``train.py`` do by default
    (``transforms.PrefetcherNormalize``), not with ``ToTensor`` then ``Normalize``
    (``validate.py --no-prefetcher``, DINO)."""

    data: DataSpec
    model: ModelOptions = field(default_factory=ModelOptions)
    knn_train: Path | None = None
    knn_k: tuple[int, ...] | int = DINO_KNN.ks
    knn_temperature: float = DINO_KNN.temperature
    knn_chunks: int = DINO_KNN.chunks
    knn_subset: int | None = None
    per_class: bool = False
    resize: int | None = None
    crop: int | None = None
    interpolation: str | None = None
    prefetcher: bool = False
    default_split: str = CLASSIFY_DEFAULT_SPLIT

    def __post_init__(self) -> None:
        check_fields(self)
        _at_least_one(self, "knn_subset")  # 0 read as "no subset" (the whole bank)
        d = PurePath(self.default_split)  # read as data/default_split: '..' read the folder above --data, '' or ' val' none
        if not self.default_split.strip() or self.default_split != self.default_split.strip() or d.is_absolute() or ".." in d.parts:
            raise SimpoolBenchError(
                f"ClassifySpec.default_split = {self.default_split!r}: expected a split name under --data (e.g. val), "
                "without spaces around it, not a path outside it"
            )
        ks = self.knn_k if isinstance(self.knn_k, (tuple, list)) else (self.knn_k,)
        whole = all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in ks)  # int(1.5) was k=1
        if not ks or not whole or min(ks) < 1 or len(set(ks)) != len(ks):  # () gave no k-NN row; (10, 10) two equal rows
            raise SimpoolBenchError(f"ClassifySpec.knn_k = {self.knn_k!r}: expected distinct whole numbers >= 1, e.g. (10, 20, 100, 200)")


@dataclass(frozen=True)
class LocalizeSpec:
    """MaxBoxAccV2 of a model's maps, of stored maps (``maps``) or of a no-model ``baseline``."""

    data: DataSpec
    model: ModelOptions | None = None
    maps: Path | None = None
    baseline: str | None = None
    interval: float = WSOL.interval
    v1: bool = False
    cam_target: str = WSOL.cam_target

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DiscoverSpec:
    """CorLoc of a model's boxes (``method`` attn or lost), of stored maps or of a no-model box."""

    data: DataSpec
    model: ModelOptions | None = None
    maps: Path | None = None
    method: str = "attn"
    mass: float = LOST.mass
    lost_compat: bool = False
    k_patches: int = LOST.k_patches

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ExtractSpec:
    """Attention maps of a model to a map store (``dtype`` float16|float32, ``features`` too)."""

    data: DataSpec
    model: ModelOptions = field(default_factory=ModelOptions)
    dtype: str = "float16"
    features: bool = False
    cam_target: str = WSOL.cam_target
    resume: bool = True

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RunResult:
    """What a run gives back: the tidy table, the files it wrote, and anything else worth keeping
    (curves, per-class accuracy, hits, shard counts, an extract report).

    ``files``: every file of the run in its folder: the results files, the extra files
    (``boxacc_curve.csv``, ``per_class.csv``, ``per_image.*``) and ``results.manifest.json``
    that lists them; of ``run_extract``, the map store (``manifest.json`` and each shard with its
    checksum). Not the caches a run may keep there: finished shards for resuming (``.shards/``)
    and the k-NN bank's features (``knn_bank/``). Empty without ``out`` (and on ranks other than 0)."""

    table: pd.DataFrame | None
    files: tuple[Path, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)


#: The optional DataSpec fields each task reads (besides dataset, data, split and label); another
#: one given would be silently dropped (``subset=10`` for localize scored every image).
DATA_FIELDS_READ: dict[str, tuple[str, ...]] = {
    "classify": ("labels", "metadata", "subset"),
    "localize": ("metadata",),
    "discover": ("no_hard", "annotations", "list_file"),
}
OPTIONAL_DATA_FIELDS = ("metadata", "labels", "subset", "annotations", "list_file", "no_hard")


def unread_data_fields(data: DataSpec, task: str) -> list[str]:
    """The optional fields of ``data`` that are set although ``task`` does not read them."""
    return [n for n in OPTIONAL_DATA_FIELDS if n not in DATA_FIELDS_READ[task] and getattr(data, n) not in (None, False)]


def _at_least_one(spec: Any, name: str) -> None:
    value = getattr(spec, name)
    if value is not None and value < 1:
        raise SimpoolBenchError(
            f"{type(spec).__name__}.{name} = {value!r}: expected an integer >= 1 (the first N images per class) or None"
        )


def protocol_of(spec: ClassifySpec | LocalizeSpec | DiscoverSpec | ExtractSpec) -> dict[str, Any]:
    """The ``protocol`` provenance record of a run: its ``task`` and every protocol parameter it
    ran with. A parameter the run does not use (k-NN without a bank; ``cam_target`` of a no-model
    baseline; ``mass`` of ``--method lost``, ``k_patches`` of ``attn``, all three of ``center`` and
    ``full-image``) is None, so that changing it is not a protocol change."""
    if isinstance(spec, ClassifySpec):
        knn = spec.knn_train is not None
        ks = spec.knn_k if isinstance(spec.knn_k, (tuple, list)) else (spec.knn_k,)
        return {
            "task": "classify",
            "knn_train": str(spec.knn_train) if knn else None,
            "knn_k": [int(k) for k in ks] if knn else None,
            "knn_temperature": float(spec.knn_temperature) if knn else None,
            "knn_chunks": int(spec.knn_chunks) if knn else None,
            "knn_subset": getattr(spec, "knn_subset", None) if knn else None,
        }
    if isinstance(spec, LocalizeSpec):
        return {
            "task": "localize",
            "interval": float(spec.interval),
            "v1": bool(spec.v1),
            "cam_target": None if (spec.baseline is not None and spec.maps is None) else spec.cam_target,
            "image_size": WSOL.image_size,
        }
    if isinstance(spec, DiscoverSpec):
        attn, lost = spec.method == "attn", spec.method == "lost"
        return {
            "task": "discover",
            "method": spec.method,
            "mass": float(spec.mass) if attn else None,
            "lost_compat": bool(spec.lost_compat) if attn else None,
            "k_patches": int(spec.k_patches) if lost else None,
            "no_hard": bool(spec.data.no_hard),
        }
    if isinstance(spec, ExtractSpec):
        return {"task": "extract", "cam_target": spec.cam_target, "dtype": spec.dtype, "features": bool(spec.features)}
    raise TypeError(f"protocol_of: not a run spec: {type(spec).__name__}")
