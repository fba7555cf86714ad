"""PASCAL VOC07/VOC12 reader for object discovery (CorLoc) as LOST does it (Simeoni et al., BMVC
2021; valeoai/LOST ``datasets.py``: ``extract_gt_VOC``, ``discard_hard_voc``; ``main_lost.py``).

Layout (the ``VOCdevkit/VOC2007`` or ``VOC2012`` folder): ``Annotations/<id>.xml``,
``ImageSets/Main/<split>.txt`` (one image id per line) and ``JPEGImages/<id>.jpg``.

Ground truth: every ``<object>`` of the annotation, difficult and truncated included, as
``(xmin - 1, ymin - 1, xmax, ymax)``: VOC's 1-based inclusive pixel indices as continuous
coordinates, so a box covering the image is (0, 0, W, H). With ``no_hard`` (LOST's ``--no_hard``)
the hard objects (``truncated`` or ``difficult`` equal to "1") are dropped from the ground truth,
and the images left without a box (all objects hard) are dropped from the evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
import numpy as np
from defusedxml import DefusedXmlException

from ..errors import SimpoolBenchError
from .images import sizes_from_files
from .inputs import MAX_SIDE, clip, is_file, join_inside, not_found, read_lines, warn_data
from .records import Record

VOC_SPLITS_DIR = Path("ImageSets") / "Main"
VOC_HARD_FLAGS = ("truncated", "difficult")


def _text(node: Element | None) -> str | None:
    return node.text.strip() if node is not None and node.text is not None else None


def _coord(text: str | None, tag: str, xml: Path, integer_coords: bool = False) -> float:
    """A coordinate as LOST reads it (``int(text)``); a fractional value (which LOST cannot read)
    is kept as a float, or refused with ``integer_coords`` (discover: LOST's CorLoc takes integer
    pixel boxes). An integral value written as a float ("24.0") is kept either way."""
    if text is None:
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: an <object> has no <bndbox>/<{tag}>")
    try:
        return float(int(text))
    except OverflowError:  # an integer past float64's range ("9" * 400): refused as not finite
        return -math.inf if text.startswith("-") else math.inf
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise SimpoolBenchError(f"malformed VOC annotation {xml}: <{tag}> is {text!r}, not a number") from None
    if integer_coords and not value.is_integer():
        raise SimpoolBenchError(f"VOC annotation {xml}: <{tag}> is {clip(text)!r}; LOST reads integer pixel coordinates")
    return value


def _size(text: str | None, tag: str, xml: Path) -> int:
    """A ``<size>`` value in pixels (0 when absent): an integer, or one written as a float ("500.0")."""
    if not text:
        return 0
    try:
        return _side(int(text), text, tag, xml)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
    if not value.is_integer():
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: <size>/<{tag}> is {clip(text)!r}; expected a whole number of pixels")
    return _side(int(value), text, tag, xml)


def _side(value: int, text: str, tag: str, xml: Path) -> int:
    """A ``<size>`` value up to ``MAX_SIDE`` (a larger one, kept where the image does not decode,
    compared with the boxes past float64's range: an OverflowError)."""
    if value > MAX_SIDE:
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: <size>/<{tag}> is {clip(text)!r}; expected at most {MAX_SIDE} pixels")
    return value


def parse_voc_annotation(xml: str | Path, no_hard: bool = False, integer_coords: bool = False) -> tuple[int, int, np.ndarray]:
    """(width, height, boxes) of one VOC annotation file; boxes (K, 4) in LOST's convention.

    The size is 0 x 0 when ``<size>`` is absent. A box is not checked against the size here
    (``read_voc`` warns about boxes outside their image and keeps them, as LOST does); a
    non-finite or inverted box is an error. With ``integer_coords`` a fractional coordinate of a
    box kept is an error.
    """
    xml = Path(xml)
    try:
        root = SafeET.parse(xml).getroot()
    except (ParseError, DefusedXmlException) as exc:
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: {exc}") from None
    except LookupError as exc:  # expat's answer to <?xml ... encoding="bogus"?>
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: {exc} in its <?xml ...?> declaration") from None
    if root.tag != "annotation":
        raise SimpoolBenchError(f"malformed VOC annotation {xml}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    width, height = (_size(_text(size.find(t)) if size is not None else None, t, xml) for t in ("width", "height"))
    boxes = []
    for obj in root.findall("object"):
        if no_hard and any(_text(obj.find(flag)) == "1" for flag in VOC_HARD_FLAGS):
            continue
        bb = obj.find("bndbox")
        xmin, ymin, xmax, ymax = (
            _coord(None if bb is None or bb.find(t) is None else (_text(bb.find(t)) or ""), t, xml, integer_coords)
            for t in ("xmin", "ymin", "xmax", "ymax")
        )
        box = (xmin - 1, ymin - 1, xmax, ymax)
        said = f"VOC annotation {xml}: box (xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g})"
        if not all(math.isfinite(v) for v in box):
            raise SimpoolBenchError(f"{said} is not four finite numbers")
        if box[0] > box[2] or box[1] > box[3]:
            raise SimpoolBenchError(f"{said} is inverted: xmax below xmin - 1 or ymax below ymin - 1")
        boxes.append(box)
    return width, height, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def warn_boxes_outside(records: Sequence[Record], ann_dir: Path) -> int:
    """One ``DataWarning`` counting the ground-truth boxes that reach outside their image (the
    decoded file's size), the first one named as its annotation writes it; they are kept as they
    are, as LOST keeps them (its IoU takes them unclipped). Returns the count."""
    first: tuple[Record, np.ndarray] | None = None
    n_boxes = n_images = 0
    for r in records:
        b = r.boxes
        if r.width <= 0 or r.height <= 0 or not len(b):
            continue
        out = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > r.width) | (b[:, 3] > r.height)
        if out.any():
            n_boxes, n_images = n_boxes + int(out.sum()), n_images + 1
            first = first or (r, b[int(np.argmax(out))])
    if first is not None:
        r, (x0, y0, x1, y1) = first
        warn_data(
            f"VOC annotations {ann_dir}: {n_boxes} box(es) in {n_images} of {len(records)} images reach outside the image (first: "
            f"{ann_dir / (r.image_id + '.xml')} box (xmin={x0 + 1:g}, ymin={y0 + 1:g}, xmax={x1:g}, ymax={y1:g}) in its "
            f"{r.width}x{r.height} image); kept as they are, as LOST keeps them"
        )
    return n_boxes


def read_voc(root: str | Path, split: str = "trainval", no_hard: bool = False, integer_coords: bool = False) -> list[Record]:
    """Read a VOC07/VOC12 split (``root`` = the ``VOC2007``/``VOC2012`` folder) for CorLoc.

    Records come in split-file order; ``image_id`` is the VOC id (file stem), ``label`` is -1,
    ``width``/``height`` are the image file's (LOST works on the decoded image; a ``<size>`` that
    differs is counted in one ``DataWarning``, and so are boxes that reach outside their image,
    which are kept as LOST keeps them). With ``no_hard`` images whose
    objects are all hard are left out and hard objects are dropped (see the module docstring).
    ``integer_coords`` (discover) refuses a fractional box coordinate, which LOST's ``int()``
    cannot read; without it such a value is kept as a float.

    Raises:
        SimpoolBenchError: a missing ``Annotations``/``JPEGImages`` folder or split file (the path
            named), listed images or annotations that are missing (the first and the count),
            malformed XML (the file named), a <size> not a whole number up to ``MAX_SIDE``, an inverted or
            non-finite box (the file named), with
            ``integer_coords`` a fractional coordinate (the file, tag and value named).
    """
    root = Path(root)
    if not root.is_dir():
        raise SimpoolBenchError(f"VOC folder {root}: no such directory")
    ann_dir, img_dir, split_file = root / "Annotations", root / "JPEGImages", root / VOC_SPLITS_DIR / f"{split}.txt"
    for d in (ann_dir, img_dir):
        if not d.is_dir():
            inner = sorted(
                str(q) for q in (*root.glob("VOC20[0-9][0-9]"), *root.glob("VOCdevkit/VOC20[0-9][0-9]")) if (q / d.name).is_dir()
            )
            hint = f"; did you mean --data {' or '.join(inner)}?" if inner else ""
            raise SimpoolBenchError(
                f"VOC folder {root}: missing {d} (expected VOCdevkit/VOC20XX with Annotations, ImageSets, JPEGImages){hint}"
            )
    if not split_file.is_file():
        raise SimpoolBenchError(f"VOC folder {root}: split file {split_file} {not_found(split_file)}")

    ids: list[str] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(read_lines(split_file), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise SimpoolBenchError(f"{split_file}:{n}: expected one image id per line, got {raw!r}")
        join_inside(img_dir, line, f"{split_file}:{n}")
        if line in seen:
            raise SimpoolBenchError(f"{split_file}:{n}: image id {line!r} already listed on line {seen[line]}")
        seen[line] = n
        ids.append(line)
    if not ids:
        raise SimpoolBenchError(f"{split_file}: no image ids")

    for folder, suffix, what in ((ann_dir, ".xml", "annotation"), (img_dir, ".jpg", "image")):
        missing = [i for i in ids if not is_file(folder / f"{i}{suffix}")]
        if missing:
            raise SimpoolBenchError(
                f"{split_file}: {what} {folder / (missing[0] + suffix)} {not_found(folder / (missing[0] + suffix))} ({len(missing)} of {len(ids)} listed {what}s missing)"
            )

    records = []
    for image_id in ids:
        width, height, boxes = parse_voc_annotation(ann_dir / f"{image_id}.xml", no_hard=no_hard, integer_coords=integer_coords)
        if no_hard and len(boxes) == 0:
            continue
        records.append(Record(image_id, img_dir / f"{image_id}.jpg", -1, width, height, boxes))
    sizes_from_files(records, f"VOC annotations {ann_dir}", "LOST")
    warn_boxes_outside(records, ann_dir)
    return records
