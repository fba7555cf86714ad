"""Demo scenes: objects cut from scikit-image's bundled photographs, pasted onto its bundled textures.

Every image comes from the files inside the ``skimage/data`` package folder (nothing is downloaded).
Each object kind is a class; its cut-out mask is a hand-chosen ellipse or an Otsu segmentation
(largest component, holes filled). A composite is a tinted random crop of a texture with one or more
objects pasted at a random scale, position and flip; an object's box is the bounding box of its
visible mask pixels (exact). Each image has its own generator seeded by (seed, split, index) and is
JPEG-encoded with fixed settings, so the output is a pure function of the parameters.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SimpoolBenchError

#: Bump when the generated files change for the same parameters (invalidates old stamps).
DEMO_DATA_VERSION = 1
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
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

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
        objects.append(
            DemoObject(
                label,
                (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                area,
                truncated,
                truncated and area < DIFFICULT_VISIBLE * mask.sum(),
                full_mask,
            )
        )
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
