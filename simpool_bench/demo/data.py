"""Demo data: objects cut from scikit-image's bundled photographs, pasted onto its bundled textures.

Everything comes from the image files installed inside the ``skimage/data`` package folder (read
directly, so nothing is ever downloaded). Each object kind is a class; its cut-out mask is either a
hand-chosen ellipse around the object in the photograph or a segmentation computed here (Otsu
threshold, largest component, holes filled). A composite image is a random crop of a texture
(brick, grass, gravel), tinted, with one or more objects pasted at a random scale, position and
horizontal flip. The ground-truth box of an object is the bounding box of its pasted (visible) mask
pixels, so it is exact.

Splits: ``train`` and ``test`` hold one object per image, classes balanced; ``discovery`` holds 1-3
objects per image, some cut by the image border (truncated). All three are written in every layout the
tool reads (see ``DemoPaths``). Box conventions, per layout, for an object whose visible mask spans
the 0-based pixel columns x0..x1 and rows y0..y1 (inclusive):

* wsolevaluation ``localization.txt``: ``x0,y0,x1,y1`` (inclusive pixel indices);
* CUB ``bounding_boxes.txt``: ``x0 y0 (x1 - x0) (y1 - y0)``, so that the usual conversion
  ``(x, y, x + w, y + h)`` gives back exactly the wsolevaluation box (as for the real CUB metadata);
* VOC XML: ``xmin = x0 + 1, ymin = y0 + 1, xmax = x1 + 1, ymax = y1 + 1`` (1-based inclusive);
* COCO json: ``bbox = [x0, y0, x1 - x0 + 1, y1 - y0 + 1]``; ``area`` = visible mask pixels.

The output is a pure function of the seed and the parameters: every image has its own random
generator seeded by (seed, split, index), images are JPEG-encoded with fixed settings, and the text
and json files are written in a fixed order. A stamp file records the parameters; a second call with
the same ones reuses the folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..console import note, start_progress
from ..errors import SimpoolBenchError
from .layouts import _write, _write_coco, _write_cub, _write_imagefolder, _write_voc, _write_wsol
from .scenes import (
    DEMO_CLASSES,
    DEMO_DATA_VERSION,
    DEMO_TEXTURES,
    Cutout,
    DemoImage,
    DemoObject,
    object_cutouts,
    render_image,
    skimage_data_dir,
    textures,
)

__all__ = [
    "DEMO_CLASSES",
    "DEMO_DATA_VERSION",
    "DEMO_TEXTURES",
    "STAMP_NAME",
    "Cutout",
    "DemoImage",
    "DemoObject",
    "DemoPaths",
    "build_demo_data",
    "object_cutouts",
    "paths_as_dict",
    "render_image",
    "skimage_data_dir",
    "stamp_parameters",
    "textures",
]

STAMP_NAME = "demo_data_stamp.json"


@dataclass(frozen=True)
class DemoPaths:
    """Where each layout of the demo data lives (all under ``root``).

    Attributes:
        root: the demo data folder.
        classes: class names in label order.
        imagefolder_train, imagefolder_test: ``<split>/<class>/<image>.jpg`` class folders.
        cub_root: CUB-200-2011 native layout (``images.txt``, ``bounding_boxes.txt``, ...,
            ``images/NNN.<class>/``), train and test splits.
        wsol_image_root: the images the wsolevaluation metadata ids are relative to (``cub_root/images``,
            as wsolevaluation's ``dataset/CUB``).
        wsol_metadata_train, wsol_metadata_test: wsolevaluation metadata folders (``metadata/CUB/<split>``).
        voc_root: VOC2007-style folder of the discovery split (``Annotations``, ``ImageSets/Main``,
            ``JPEGImages``); voc_split: its split file name (``trainval``).
        coco_image_dir: ``train2014`` folder; coco_annotations: ``instances_train2014.json`` (the
            discovery images, plus the test images as images that the list leaves out);
            coco_list: the COCO20k-style list (``train2014/COCO_train2014_%012d.jpg``, discovery images).
        stamp: the stamp file.
        n_train, n_test, n_discovery: image counts.
    """

    root: Path
    classes: tuple[str, ...]
    imagefolder_train: Path
    imagefolder_test: Path
    cub_root: Path
    wsol_image_root: Path
    wsol_metadata_train: Path
    wsol_metadata_test: Path
    voc_root: Path
    voc_split: str
    coco_image_dir: Path
    coco_annotations: Path
    coco_list: Path
    stamp: Path
    n_train: int
    n_test: int
    n_discovery: int


# ----------------------------------------------------------------------------------------- entry point
_OWNED = ("imagefolder", "cub", "wsol", "voc", "coco")


def _paths(root: Path, n_train: int, n_test: int, n_discovery: int) -> DemoPaths:
    cub = root / "cub" / "CUB_200_2011"
    return DemoPaths(
        root=root,
        classes=DEMO_CLASSES,
        imagefolder_train=root / "imagefolder" / "train",
        imagefolder_test=root / "imagefolder" / "test",
        cub_root=cub,
        wsol_image_root=cub / "images",
        wsol_metadata_train=root / "wsol" / "metadata" / "CUB" / "train",
        wsol_metadata_test=root / "wsol" / "metadata" / "CUB" / "test",
        voc_root=root / "voc" / "VOCdevkit" / "VOC2007",
        voc_split="trainval",
        coco_image_dir=root / "coco" / "train2014",
        coco_annotations=root / "coco" / "annotations" / "instances_train2014.json",
        coco_list=root / "coco" / "coco_20k_filenames.txt",
        stamp=root / STAMP_NAME,
        n_train=n_train,
        n_test=n_test,
        n_discovery=n_discovery,
    )


def _stamp_content(seed: int, n_train: int, n_test: int, n_discovery: int, image_size: int) -> dict[str, Any]:
    import PIL
    import skimage

    return {
        "version": DEMO_DATA_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_test": n_test,
        "n_discovery": n_discovery,
        "image_size": image_size,
        "classes": list(DEMO_CLASSES),
        "pillow": PIL.__version__,
        "scikit-image": skimage.__version__,  # type: ignore[attr-defined]  # its __init__.pyi omits it
    }


def build_demo_data(
    root: str | Path,
    seed: int = 0,
    n_train: int = 480,
    n_test: int = 120,
    n_discovery: int = 120,
    image_size: int = 160,
    force: bool = False,
) -> DemoPaths:
    """Build (or reuse) the demo data under ``root`` and return where each layout is.

    Args:
        root: output folder (created; only its own sub-folders ``imagefolder``, ``cub``, ``wsol``,
            ``voc``, ``coco`` and the stamp file are ever written or removed).
        seed: the random seed; the same seed and parameters give byte-identical files.
        n_train, n_test: single-object images of the train and test splits (classes balanced:
            image ``i`` has class ``i % 6``).
        n_discovery: images of the discovery split (1-3 objects each) for VOC and COCO20k.
        image_size: side of the square train images; test/discovery sides vary in [0.85, 1.35] x it.
        force: rebuild even when the stamp matches.

    Returns:
        DemoPaths. When ``root`` holds a stamp with the same parameters (and library versions) and
        ``force`` is false, nothing is written.
    """
    k = len(DEMO_CLASSES)
    sizes = (("n_train", n_train, k), ("n_test", n_test, k), ("n_discovery", n_discovery, 1), ("image_size", image_size, 32))
    for name, v, least in (("seed", seed, 0), *sizes):  # numpy's seed sequences take no negative integer
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise SimpoolBenchError(f"demo data: {name}={v!r} must be an integer >= {least}")
    root = Path(root)
    paths = _paths(root, n_train, n_test, n_discovery)
    want = _stamp_content(seed, n_train, n_test, n_discovery, image_size)
    if not force and paths.stamp.is_file():
        try:
            have = json.loads(paths.stamp.read_text())
        except (OSError, ValueError):
            have = None
        if have == want:
            note(f"  reusing the demo data in {root} (same seed, sizes and library versions)")
            return paths
    if root.exists() and not root.is_dir():
        raise SimpoolBenchError(f"demo data folder {root} is a file, expected a directory")
    paths.stamp.unlink(missing_ok=True)
    for sub in _OWNED:
        shutil.rmtree(root / sub, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)

    bar = start_progress("demo images", n_train + n_test + n_discovery)
    try:
        rendered: dict[str, list[DemoImage]] = {}
        for split, n in (("train", n_train), ("test", n_test), ("discovery", n_discovery)):
            rendered[split] = []
            for i in range(n):
                rendered[split].append(render_image(seed, split, i, image_size))
                bar.advance(bar.task_ids[0])
    finally:
        bar.stop()
    train, test, disc = rendered["train"], rendered["test"], rendered["discovery"]

    _write_imagefolder(paths.imagefolder_train, train)
    _write_imagefolder(paths.imagefolder_test, test)
    by_split = _write_cub(paths.cub_root, train, test)
    _write_wsol(paths.wsol_metadata_train, by_split["train"])
    _write_wsol(paths.wsol_metadata_test, by_split["test"])
    _write_voc(paths.voc_root, disc, paths.voc_split)
    _write_coco(root / "coco", disc, test, seed)
    _write(paths.stamp, json.dumps(want, indent=1, sort_keys=True) + "\n")
    return paths


def stamp_parameters(paths: DemoPaths) -> dict[str, Any]:
    """The parameters recorded in the stamp of a built demo folder (``asdict``-friendly)."""
    if not paths.stamp.is_file():
        raise SimpoolBenchError(f"demo data {paths.root}: no stamp file {paths.stamp.name} (build it with build_demo_data)")
    return json.loads(paths.stamp.read_text())


def paths_as_dict(paths: DemoPaths) -> dict[str, Any]:
    """DemoPaths as plain strings/ints (for json)."""
    return {k: (str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)) for k, v in asdict(paths).items()}
