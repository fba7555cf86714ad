"""The protocols and datasets the tool knows, in one place: frozen records of each protocol's
constants and of each dataset's protocol, default split and reader.

Light on purpose (no torch): the CLI takes its choices and defaults from here at start-up. The
numeric modules keep their own copies of the constants (``metrics.boxacc``, ``metrics.corloc``,
``metrics.classification``, ``discovery``, ``transforms``); ``tests/test_registry.py`` checks that
they agree with these records.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SimpoolBenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WsolProtocol:
    """wsolevaluation (Choe et al., CVPR 2020): MaxBoxAccV2 on 224x224 score maps."""

    image_size: int = 224
    iou_thresholds: tuple[int, ...] = (30, 50, 70)
    interval: float = 0.001
    cam_target: str = "gt"
    baselines: tuple[str, ...] = ("center-gaussian", "full-box")
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class LostProtocol:
    """LOST (Siméoni et al., BMVC 2021): CorLoc of one box per image, full resolution."""

    mass: float = 0.6
    k_patches: int = 100
    iou: float = 0.5
    eps: float = 1e-7
    dinoseg_head: int = 4
    methods: tuple[str, ...] = ("attn", "lost", "center", "full-image")
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class KnnProtocol:
    """DINO's weighted k-NN classifier on pooled features: every k of ``ks`` in one pass."""

    ks: tuple[int, ...] = (10, 20, 100, 200)
    temperature: float = 0.07
    chunks: int = 100  # test images in n // chunks per matrix product (SimPool's eval_knn.py: 500)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


WSOL = WsolProtocol()
#: The finest score-map threshold step localize and ``BoxAccumulator`` take: 10,000 thresholds
#: (wsolevaluation uses 0.001 and 0.01; 1e-9 was 8 GB of thresholds and days of contour searches).
MIN_INTERVAL = 1e-4
LOST = LostProtocol()
DINO_KNN = KnnProtocol()
#: The split classify reads (a sub-folder of --data when there is one) and records by default.
CLASSIFY_DEFAULT_SPLIT = "val"
#: Images that failed to decode (or were over --max-pixels) named one warning each in a run; the
#: rest are counted in one line (the engine's runner).
NAMED_FAILURES = 10


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset the map commands know by name: its protocol, default split and reader
    (``wsol``: wsolevaluation metadata or CUB's native files; ``voc``; ``coco20k``; ``folder``: any images)."""

    name: str
    protocol: str
    default_split: str
    reader: str


#: COCO20k is LOST's subset of COCO train2014 (LOST runs it with ``--set train``): split ``train``.
DATASETS: dict[str, DatasetRecord] = {
    r.name: r
    for r in (
        DatasetRecord("cub", "localize", "test", "wsol"),
        DatasetRecord("imagenet", "localize", "test", "wsol"),
        DatasetRecord("voc07", "discover", "trainval", "voc"),
        DatasetRecord("voc12", "discover", "trainval", "voc"),
        DatasetRecord("coco20k", "discover", "train", "coco20k"),
        DatasetRecord("folder", "localize", "all", "folder"),
    )
}
LOCALIZE_DATASETS = tuple(n for n, r in DATASETS.items() if r.protocol == "localize" and r.reader != "folder")
DISCOVER_DATASETS = tuple(n for n, r in DATASETS.items() if r.protocol == "discover")


def dataset(name: str) -> DatasetRecord:
    """The record of a dataset name, or a one-line error listing the known names."""
    if name not in DATASETS:
        raise SimpoolBenchError(f"--dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def default_split(name: str, fallback: str) -> str:
    """The default split of a known dataset; ``fallback`` for names the registry does not know
    (classify and localize record any --dataset name)."""
    return DATASETS[name].default_split if name in DATASETS else fallback
