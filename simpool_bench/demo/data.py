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

import io
import json
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..console import err_console, start_progress
from ..errors import SimpoolBenchError

#: Bump when the generated files change for the same parameters (invalidates old stamps).
DEMO_DATA_VERSION = 1
STAMP_NAME = "demo_data_stamp.json"

#: Object kinds, in sorted order (= ImageFolder / wsolevaluation label order).
DEMO_CLASSES: tuple[str, ...] = ("astronaut", "cat", "coffee", "coin", "horse", "rocket")
#: Texture photographs used as backgrounds.
DEMO_TEXTURES: tuple[str, ...] = ("brick.png", "grass.png", "gravel.png")

JPEG_QUALITY = 90
SPLIT_CODES: dict[str, int] = {"train": 0, "test": 1, "discovery": 2}
# Object long side as a fraction of the canvas' short side: single-object and multi-object images.
SINGLE_SCALE = (0.35, 0.75)
MULTI_SCALE = (0.25, 0.45)
# Number of objects of a discovery image and their probabilities.
DISCOVERY_COUNTS = ((1, 0.55), (2, 0.30), (3, 0.15))
TRUNCATE_PROB = 0.15  # a discovery object may stick out of the image by up to TRUNCATE_MAX of its size
TRUNCATE_MAX = 0.35
MIN_VISIBLE = 0.4  # a truncated object shows at least this fraction of its mask
PLACE_TRIES = 50
DIFFICULT_VISIBLE = 0.6  # a truncated object showing less than this fraction of its mask is 'difficult'
CROWD_PROB = 0.3  # a multi-object discovery image gets an extra iscrowd=1 COCO annotation
COCO_ID_RANGE = (1, 581930)  # COCO train2014 ids lie in this range
CUB_SPLIT_FLAG = {"train": 1, "test": 0}


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


@dataclass
class DemoObject:
    """One pasted object: its class, visible box (x0, y0, x1, y1 inclusive pixels), visible mask area,
    whether the image border cuts it, and its visible mask (image-sized, bool)."""

    label: int
    box: tuple[int, int, int, int]
    area: int
    truncated: bool
    difficult: bool
    mask: np.ndarray


@dataclass
class DemoImage:
    """A rendered composite: JPEG bytes, size and its objects."""

    split: str
    index: int
    width: int
    height: int
    jpeg: bytes
    objects: list[DemoObject]

    @property
    def label(self) -> int:
        return self.objects[0].label


@dataclass(frozen=True)
class Cutout:
    """An object cut from a photograph: RGB pixels and mask, cropped to the mask's bounding box."""

    rgb: np.ndarray
    mask: np.ndarray


# ----------------------------------------------------------------------------------------- sources
def skimage_data_dir() -> Path:
    """The ``skimage/data`` folder of the installed scikit-image (its bundled images)."""
    import skimage.data

    return Path(skimage.data.__file__).parent


def _bundled(name: str) -> np.ndarray:
    """A photograph shipped inside scikit-image's package, as an RGB (or L) uint8 array."""
    path = skimage_data_dir() / name
    if not path.is_file():
        raise SimpoolBenchError(f"demo data: {path} is missing from the installed scikit-image (expected its bundled sample images)")
    with Image.open(path) as img:
        return np.asarray(img.convert("L" if img.mode in ("L", "I;16", "1") else "RGB"))


def _ellipse(shape: tuple[int, ...], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _crop(rgb: np.ndarray, mask: np.ndarray) -> Cutout:
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    ys, xs = np.nonzero(mask)
    sl = np.s_[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return Cutout(np.ascontiguousarray(rgb[sl]), np.ascontiguousarray(mask[sl]))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    if n == 0:
        raise SimpoolBenchError("demo data: a segmentation of a bundled photograph came out empty")
    sizes = np.bincount(lab.ravel())[1:]
    return ndi.binary_fill_holes(lab == (int(np.argmax(sizes)) + 1))


@lru_cache(maxsize=1)
def object_cutouts() -> dict[str, tuple[Cutout, ...]]:
    """The cut-outs of every class (several for 'coin': one per coin of the photograph).

    astronaut (``astronaut.png``): ellipse around the head and the helmet ring; cat (``chelsea.png``):
    ellipse around the face; coffee (``coffee.png``): union of ellipses around the saucer and the cup;
    rocket (``rocket.jpg``): Otsu threshold of the luminance inside the rocket's column, largest
    component, holes filled; coin (``coins.png``): Otsu threshold, holes filled, each compact component
    (area >= 1000 px, solidity >= 0.9, i.e. one whole coin) as its convex hull; horse (``horse.png``):
    the dark pixels of the silhouette.
    """
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops
    from scipy import ndimage as ndi

    out: dict[str, tuple[Cutout, ...]] = {}
    a = _bundled("astronaut.png")
    out["astronaut"] = (_crop(a, _ellipse(a.shape, 208, 150, 100, 140)),)
    c = _bundled("chelsea.png")
    out["cat"] = (_crop(c, _ellipse(c.shape, 225, 160, 195, 140)),)
    co = _bundled("coffee.png")
    out["coffee"] = (_crop(co, _ellipse(co.shape, 278, 240, 202, 148) | _ellipse(co.shape, 290, 125, 118, 110)),)

    r = _bundled("rocket.jpg")
    lum = r.astype(np.float64).mean(axis=2)
    column = np.zeros(lum.shape, dtype=bool)
    column[120:410, 295:350] = True
    out["rocket"] = (_crop(r, _largest_component(column & (lum > threshold_otsu(lum[column])))),)

    g = _bundled("coins.png")
    filled = ndi.binary_fill_holes(g > threshold_otsu(g))
    coins = []
    for reg in regionprops(label(filled)):
        if reg.area >= 1000 and reg.solidity >= 0.9:
            y0, x0, y1, x1 = reg.bbox
            coins.append(_crop(g[y0:y1, x0:x1], reg.image_convex))
    out["coin"] = tuple(coins)

    h = _bundled("horse.png")
    out["horse"] = (_crop(h, h.mean(axis=2) < 128),)
    assert tuple(sorted(out)) == DEMO_CLASSES
    return out


@lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, ...]:
    """The background textures (grayscale uint8)."""
    out = []
    for name in DEMO_TEXTURES:
        tex = _bundled(name)
        out.append(tex if tex.ndim == 2 else tex.mean(axis=2).astype(np.uint8))
    return tuple(out)


# ----------------------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random crop of a random texture, resized to (height, width), flipped and tinted: RGB float."""
    texs = textures()
    tex = texs[int(rng.integers(len(texs)))]
    th, tw = tex.shape
    side = rng.uniform(0.3, 1.0) * min(th, tw)
    ch, cw = side * height / max(height, width), side * width / max(height, width)
    y0, x0 = rng.uniform(0, th - ch), rng.uniform(0, tw - cw)
    box = (int(x0), int(y0), int(x0 + cw), int(y0 + ch))
    img = Image.fromarray(tex).resize((width, height), Image.Resampling.BILINEAR, box=box)
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    tint = rng.uniform(0.45, 1.0, size=3).astype(np.float32)
    return arr[..., None] * tint


def _resized(cut: Cutout, long_side: float, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out resized so that its long side is ``long_side`` pixels (and flipped): RGB float, mask."""
    h, w = cut.mask.shape
    s = long_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    rgb = np.asarray(Image.fromarray(cut.rgb).resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    mask = np.asarray(Image.fromarray(cut.mask.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)) > 127
    if flip:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    return rgb, mask


def _place(rng: np.random.Generator, length: int, size: int, truncate: bool) -> int:
    """Top-left coordinate of an object of ``length`` pixels in a side of ``size`` pixels."""
    slack = int(TRUNCATE_MAX * length) if truncate else 0
    lo, hi = -slack, size - length + slack
    return int(rng.integers(lo, max(lo, hi) + 1))


def _render(
    rng: np.random.Generator, height: int, width: int, labels: list[int], scale: tuple[float, float], truncate_prob: float
) -> tuple[np.ndarray, list[DemoObject]]:
    """Paste objects of ``labels`` onto a texture; objects never overlap (their full boxes are 2 px
    apart) and a truncated one shows at least ``MIN_VISIBLE`` of its mask. An object that finds no
    such place in ``PLACE_TRIES`` tries is left out; the first one always fits (its last tries keep
    it inside the image), so every image has an object."""
    canvas = _background(rng, height, width)
    cuts = object_cutouts()
    placed: list[tuple[int, int, int, int]] = []
    objects: list[DemoObject] = []
    for label in labels:
        options = cuts[DEMO_CLASSES[label]]
        cut = options[int(rng.integers(len(options)))]
        long_side = rng.uniform(*scale) * min(height, width)
        flip = bool(rng.random() < 0.5)
        gain = np.float32(rng.uniform(0.8, 1.2))
        truncate = bool(rng.random() < truncate_prob)
        rgb, mask = _resized(cut, long_side, flip)
        oh, ow = mask.shape
        spot = None
        for attempt in range(PLACE_TRIES):
            # the last tries keep the object inside the image, so the first object always fits
            inside_only = attempt >= PLACE_TRIES - 10
            x0, y0 = _place(rng, ow, width, truncate and not inside_only), _place(rng, oh, height, truncate and not inside_only)
            full = (x0 - 2, y0 - 2, x0 + ow + 2, y0 + oh + 2)
            if any(full[0] < b[2] and b[0] < full[2] and full[1] < b[3] and b[1] < full[3] for b in placed):
                continue
            # visible part of the object in canvas coordinates
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + ow, width), min(y0 + oh, height)
            sub = mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            if sub.sum() >= MIN_VISIBLE * mask.sum():
                spot = (x0, y0)
                break
        if spot is None:
            continue
        placed.append((x0, y0, x0 + ow, y0 + oh))
        region = canvas[cy0:cy1, cx0:cx1]
        region[sub] = np.clip(rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0][sub] * gain, 0, 255)
        full_mask = np.zeros((height, width), dtype=bool)
        full_mask[cy0:cy1, cx0:cx1] = sub
        ys, xs = np.nonzero(full_mask)
        area = int(sub.sum())
        truncated = area < int(mask.sum())
        objects.append(DemoObject(
            label, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), area, truncated,
            truncated and area < DIFFICULT_VISIBLE * mask.sum(), full_mask,
        ))
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), objects


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=0)
    return buf.getvalue()


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def render_image(seed: int, split: str, index: int, image_size: int) -> DemoImage:
    """Render image ``index`` of ``split`` ('train' | 'test' | 'discovery'), independently of the others.

    train: ``image_size`` x ``image_size``, one object of class ``index % n_classes``; test: one object
    of class ``index % n_classes`` on a canvas of random size (each side in [0.85, 1.35] x image_size);
    discovery: random size as test, 1-3 objects of random classes, some truncated by the border.
    """
    rng = _image_rng(seed, split, index)
    k = len(DEMO_CLASSES)
    if split == "train":
        h = w = image_size
    else:
        lo, hi = round(0.85 * image_size), round(1.35 * image_size)
        h, w = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    if split == "discovery":
        counts, probs = zip(*DISCOVERY_COUNTS)
        n = int(rng.choice(counts, p=probs))
        labels = [int(x) for x in rng.integers(k, size=n)]
        arr, objects = _render(rng, h, w, labels, SINGLE_SCALE if n == 1 else MULTI_SCALE, TRUNCATE_PROB)
    else:
        arr, objects = _render(rng, h, w, [index % k], SINGLE_SCALE, 0.0)
    return DemoImage(split, index, w, h, _jpeg(arr), objects)


# ----------------------------------------------------------------------------------------- layouts
def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="\n")
    else:
        path.write_bytes(data)


def _file_name(img: DemoImage) -> str:
    return f"{DEMO_CLASSES[img.label]}_{img.split}_{img.index:05d}.jpg"


def _cub_folder(label: int) -> str:
    return f"{label + 1:03d}.{DEMO_CLASSES[label]}"


def _write_imagefolder(root: Path, images: list[DemoImage]) -> None:
    for img in images:
        _write(root / DEMO_CLASSES[img.label] / _file_name(img), img.jpeg)


def _write_cub(cub_root: Path, train: list[DemoImage], test: list[DemoImage]) -> dict[str, list[tuple[str, DemoImage]]]:
    """CUB-200-2011 native files; images numbered 1.. in (class folder, file name) order."""
    entries = sorted(((f"{_cub_folder(img.label)}/{_file_name(img)}", img) for img in train + test), key=lambda e: e[0])
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": [], "boxes": []}
    for n, (rel, img) in enumerate(entries, start=1):
        _write(cub_root / "images" / rel, img.jpeg)
        x0, y0, x1, y1 = img.objects[0].box
        lines["images"].append(f"{n} {rel}")
        lines["labels"].append(f"{n} {img.label + 1}")
        lines["split"].append(f"{n} {CUB_SPLIT_FLAG[img.split]}")
        lines["boxes"].append(f"{n} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}")
    files = {"images.txt": "images", "image_class_labels.txt": "labels", "train_test_split.txt": "split", "bounding_boxes.txt": "boxes"}
    for name, key in files.items():
        _write(cub_root / name, "\n".join(lines[key]) + "\n")
    _write(cub_root / "classes.txt", "".join(f"{i + 1} {_cub_folder(i)}\n" for i in range(len(DEMO_CLASSES))))
    by_split: dict[str, list[tuple[str, DemoImage]]] = {"train": [], "test": []}
    for rel, img in entries:
        by_split[img.split].append((rel, img))
    return by_split


def _write_wsol(meta_dir: Path, entries: list[tuple[str, DemoImage]]) -> None:
    """wsolevaluation metadata: image_ids, class_labels (0-based), image_sizes, localization."""
    ids, labels, sizes, boxes = [], [], [], []
    for rel, img in sorted(entries, key=lambda e: e[1].index):
        ids.append(rel)
        labels.append(f"{rel},{img.label}")
        sizes.append(f"{rel},{img.width},{img.height}")
        boxes += [f"{rel},{o.box[0]},{o.box[1]},{o.box[2]},{o.box[3]}" for o in img.objects]
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels), ("image_sizes.txt", sizes), ("localization.txt", boxes)):
        _write(meta_dir / name, "\n".join(lines) + "\n")


def _voc_xml(image_id: str, img: DemoImage) -> str:
    objs = []
    for o in img.objects:
        x0, y0, x1, y1 = o.box
        objs.append(
            "\t<object>\n"
            f"\t\t<name>{DEMO_CLASSES[o.label]}</name>\n"
            "\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{int(o.truncated)}</truncated>\n"
            f"\t\t<difficult>{int(o.difficult)}</difficult>\n"
            "\t\t<bndbox>\n"
            f"\t\t\t<xmin>{x0 + 1}</xmin>\n\t\t\t<ymin>{y0 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x1 + 1}</xmax>\n\t\t\t<ymax>{y1 + 1}</ymax>\n"
            "\t\t</bndbox>\n"
            "\t</object>\n"
        )
    return (
        "<annotation>\n"
        "\t<folder>VOC2007</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>simpool-bench demo</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{img.width}</width>\n\t\t<height>{img.height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n"
        + "".join(objs)
        + "</annotation>\n"
    )


def _write_voc(voc_root: Path, images: list[DemoImage], split: str) -> None:
    ids = []
    for img in images:
        image_id = f"{img.index + 1:06d}"
        ids.append(image_id)
        _write(voc_root / "JPEGImages" / f"{image_id}.jpg", img.jpeg)
        _write(voc_root / "Annotations" / f"{image_id}.xml", _voc_xml(image_id, img))
    _write(voc_root / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")


def _rle(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_coco(coco_root: Path, discovery: list[DemoImage], extra: list[DemoImage], seed: int) -> tuple[Path, Path, Path]:
    """train2014 images, instances json (discovery + extra images) and the 20k-style list (discovery)."""
    rng = np.random.default_rng([int(seed), 99])
    all_images = discovery + extra
    ids = rng.choice(np.arange(*COCO_ID_RANGE), size=len(all_images), replace=False)
    image_dir = coco_root / "train2014"
    images_json, anns, listed = [], [], []
    ann_id = 1
    for img, image_id in zip(all_images, ids):
        image_id = int(image_id)
        name = f"COCO_train2014_{image_id:012d}.jpg"
        _write(image_dir / name, img.jpeg)
        images_json.append({"id": image_id, "file_name": name, "width": img.width, "height": img.height, "license": 1})
        if img.split == "discovery":
            listed.append(f"train2014/{name}")
        for o in img.objects:
            x0, y0, x1, y1 = o.box
            anns.append({
                "id": ann_id, "image_id": image_id, "category_id": o.label + 1, "iscrowd": 0, "area": float(o.area),
                "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], "segmentation": _rle(o.mask),
            })
            ann_id += 1
        # a crowd region over all objects of some multi-object images (LOST removes iscrowd boxes)
        crowd_rng = np.random.default_rng([int(seed), 98, img.index, SPLIT_CODES[img.split]])
        if len(img.objects) > 1 and crowd_rng.random() < CROWD_PROB:
            union = np.logical_or.reduce([o.mask for o in img.objects])
            ys, xs = np.nonzero(union)
            anns.append({
                "id": ann_id, "image_id": image_id, "category_id": img.objects[0].label + 1, "iscrowd": 1,
                "area": float(union.sum()),
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                "segmentation": _rle(union),
            })
            ann_id += 1
    doc = {
        "info": {"description": "simpool-bench demo data (COCO train2014 layout)", "version": str(DEMO_DATA_VERSION)},
        "licenses": [{"id": 1, "name": "scikit-image sample data (see skimage/data/README)", "url": ""}],
        "images": images_json,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c, "supercategory": "demo"} for i, c in enumerate(DEMO_CLASSES)],
    }
    ann_file = coco_root / "annotations" / "instances_train2014.json"
    _write(ann_file, json.dumps(doc, separators=(",", ":")))
    list_file = coco_root / "coco_20k_filenames.txt"
    _write(list_file, "\n".join(listed) + "\n")
    return image_dir, ann_file, list_file


# ----------------------------------------------------------------------------------------- entry point
_OWNED = ("imagefolder", "cub", "wsol", "voc", "coco")


def _paths(root: Path, n_train: int, n_test: int, n_discovery: int) -> DemoPaths:
    cub = root / "cub" / "CUB_200_2011"
    return DemoPaths(
        root=root, classes=DEMO_CLASSES,
        imagefolder_train=root / "imagefolder" / "train", imagefolder_test=root / "imagefolder" / "test",
        cub_root=cub, wsol_image_root=cub / "images",
        wsol_metadata_train=root / "wsol" / "metadata" / "CUB" / "train",
        wsol_metadata_test=root / "wsol" / "metadata" / "CUB" / "test",
        voc_root=root / "voc" / "VOCdevkit" / "VOC2007", voc_split="trainval",
        coco_image_dir=root / "coco" / "train2014",
        coco_annotations=root / "coco" / "annotations" / "instances_train2014.json",
        coco_list=root / "coco" / "coco_20k_filenames.txt",
        stamp=root / STAMP_NAME, n_train=n_train, n_test=n_test, n_discovery=n_discovery,
    )


def _stamp_content(seed: int, n_train: int, n_test: int, n_discovery: int, image_size: int) -> dict[str, Any]:
    import PIL
    import skimage

    return {
        "version": DEMO_DATA_VERSION, "seed": seed, "n_train": n_train, "n_test": n_test, "n_discovery": n_discovery,
        "image_size": image_size, "classes": list(DEMO_CLASSES), "pillow": PIL.__version__, "scikit-image": skimage.__version__,
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
    for name, v, least in (("n_train", n_train, k), ("n_test", n_test, k), ("n_discovery", n_discovery, 1), ("image_size", image_size, 32)):
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
            err_console.print(f"  reusing the demo data in {root} (same seed, sizes and library versions)")
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
