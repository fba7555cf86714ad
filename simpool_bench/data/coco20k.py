"""COCO20k reader for object discovery (CorLoc) as LOST does it (Simeoni et al., BMVC 2021;
valeoai/LOST ``datasets.py``: ``select_coco_20k``, ``extract_gt_COCO``).

COCO20k is the 19,817 COCO train2014 images listed in LOST's ``coco_20k_filenames.txt`` (lines
like ``train2014/COCO_train2014_000000560992.jpg``), annotated by ``instances_train2014.json``.
LOST takes the image id from a list entry as ``int(name.split("_")[-1].split(".")[0])``; the ground
truth of an image is each non-crowd annotation's box ``(x, y, x + w, y + h)``, every coordinate
``int(round(v))`` (Python's round: half to even); ``iscrowd == 1`` annotations are removed.
An image whose annotations are all crowds keeps an empty box list (LOST counts it, never correct).
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SimpoolBenchError
from .images import sizes_from_files
from .inputs import MAX_SIDE, clip, is_file, join_inside, not_found, read_lines
from .records import Record

COCO20K_IMAGES = 19817


def coco_box_to_lost(bbox: list[float]) -> tuple[int, int, int, int]:
    """COCO ``[x, y, w, h]`` -> LOST's ``(x, y, x + w, y + h)``, each ``int(round(v))``."""
    x, y, w, h = bbox
    return int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))


_BBOX_EXPECTED = "expected [x, y, width, height], four finite numbers, width and height >= 0"


def _bbox_problem(ann: object) -> str | None:
    """None for a COCO annotation whose ``bbox`` is four finite numbers (``[x, y, w, h]``), ``w, h >= 0``
    (a negative size is an inverted box, never a real one), ``x + w`` and ``y + h`` finite; else
    what was expected."""
    bbox = ann.get("bbox") if isinstance(ann, dict) else None
    if not (
        isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return _BBOX_EXPECTED
    try:
        x, y, w, h = (float(v) for v in bbox)
    except OverflowError:  # a json integer past float64's range (10**400)
        return _BBOX_EXPECTED
    if not (all(math.isfinite(v) for v in (x, y, w, h)) and w >= 0 and h >= 0):
        return _BBOX_EXPECTED
    if not (math.isfinite(x + w) and math.isfinite(y + h)):  # 1e308 + 1e308
        return "expected x + width and y + height finite"
    return None


def image_id_from_name(name: str) -> int:
    """LOST's image id of a list entry: the digits after the last ``_`` and before the first ``.``."""
    return int(name.split("_")[-1].split(".")[0])


def _load_coco(annotation_file: Path):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(annotation_file))
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise SimpoolBenchError(
            f"COCO annotation file {annotation_file}: not a COCO instances json ({type(exc).__name__}: {exc})"
        ) from None
    except RecursionError:  # json's decoder on arrays or objects nested thousands deep
        raise SimpoolBenchError(f"COCO annotation file {annotation_file}: not a COCO instances json (nested too deep to parse)") from None


def _image_size(info: dict, key: str, image_id: int, annotation_file: Path) -> int:
    """An image's ``width`` or ``height`` from the json: a whole number >= 1 (``640``, ``640.0`` or
    ``"640"``; ``64.7`` is refused, not truncated)."""
    value: Any = info.get(key)
    try:
        if isinstance(value, bool):
            size = 0
        elif isinstance(value, float):
            size = int(value) if value.is_integer() else 0
        else:
            size = int(value)
    except (TypeError, ValueError, OverflowError):
        size = 0
    if size < 1:
        got = f"has no {key!r}" if value is None else f"has {key!r} {clip(repr(value))}"
        raise SimpoolBenchError(f"COCO annotation file {annotation_file}: image id {image_id} {got}; expected a positive integer (pixels)")
    if size > MAX_SIDE:  # kept where the image does not decode: past int64 in the per-image table
        raise SimpoolBenchError(
            f"COCO annotation file {annotation_file}: image id {image_id} has {key!r} {clip(repr(value))}; expected at most {MAX_SIDE} pixels"
        )
    return size


_JSON_HINT = "; a json file? the list is LOST's coco_20k_filenames.txt"


def _refuse_json_list(list_file: Path) -> None:
    """Fail at once on a json given as the list (e.g. ``--list`` and ``--annotations`` swapped),
    from its first 4 KiB: instances_train2014.json is one line of about 450 MB."""
    with open(list_file, "rb") as f:
        head = f.read(4096).decode("utf-8-sig", errors="replace")
    for n, line in enumerate(head.splitlines(), start=1):
        if line.strip():
            if line.lstrip().startswith(("{", "[")):
                raise SimpoolBenchError(
                    f"{list_file}:{n}: {clip(line.strip())!r} is not a COCO file name (expected ..._<id>.jpg{_JSON_HINT})"
                )
            return


def _read_list(list_file: Path) -> list[tuple[int, str, int]]:
    """(line number, file name, image id) of each name of LOST's list file, ids unique."""
    _refuse_json_list(list_file)
    names: list[tuple[int, str, int]] = []
    seen: dict[int, int] = {}
    for n, raw in enumerate(read_lines(list_file), start=1):
        name = raw.strip()
        if not name:
            continue
        try:
            image_id = image_id_from_name(name)
        except ValueError:
            hint = _JSON_HINT if name.startswith(("{", "[")) else ""
            raise SimpoolBenchError(f"{list_file}:{n}: {clip(name)!r} is not a COCO file name (expected ..._<id>.jpg{hint})") from None
        if image_id in seen:
            raise SimpoolBenchError(f"{list_file}:{n}: image id {image_id} already listed on line {seen[image_id]}")
        seen[image_id] = n
        names.append((n, name, image_id))
    if not names:
        raise SimpoolBenchError(f"{list_file}: no image names")
    return names


def read_coco20k(image_dir: str | Path, annotation_file: str | Path, list_file: str | Path, check_images: bool = True) -> list[Record]:
    """Read COCO20k: the images of ``list_file`` with their ``annotation_file`` boxes.

    Args:
        image_dir: the ``train2014`` image folder (images are ``image_dir / file_name`` from the json).
        annotation_file: ``instances_train2014.json``.
        list_file: LOST's ``coco_20k_filenames.txt``.
        check_images: fail when listed images are missing from ``image_dir``.

    Records come in list order (LOST's loop, torchvision's ``CocoDetection`` over the selected json,
    visits them by image id instead: every box and the CorLoc are the same, only the order of the
    per-image rows differs); ``image_id`` is the json's ``file_name``, ``label`` -1, size the
    image file's with ``check_images`` (LOST works on the decoded image; a json size that differs is
    counted in one ``DataWarning``), else the json's; boxes (K, 4) in LOST's convention (see the module docstring).

    Raises:
        SimpoolBenchError: a missing folder or file; a list line whose id does not parse or repeats
            (file:line, a long line cut short); a json without an ``annotations`` list (e.g. an
            ``image_info`` file), or that holds none of the listed images, or list entries not in it
            (the first one and the count), or whose ``file_name`` differs or leads out of
            ``image_dir``, or whose ``width``/``height`` is not a positive integer (the image id
            named); an annotation whose ``bbox`` is not four finite numbers with width and height >= 0,
            or whose x + width or y + height overflows (its id named); missing images.
    """
    image_dir, annotation_file, list_file = Path(image_dir), Path(annotation_file), Path(list_file)
    if not image_dir.is_dir():
        raise SimpoolBenchError(f"COCO image folder {image_dir}: no such directory")
    for f, what in ((annotation_file, "COCO annotation file"), (list_file, "COCO20k list file")):
        if not f.is_file():
            raise SimpoolBenchError(f"{what} {f}: " + ("a directory, expected the file itself" if f.is_dir() else "no such file"))

    names = _read_list(list_file)
    coco = _load_coco(annotation_file)
    if not isinstance(coco.dataset.get("annotations"), list):
        raise SimpoolBenchError(
            f"COCO annotation file {annotation_file} has no 'annotations' list (an image_info file? expected instances_train2014.json)"
        )
    absent = [(n, name) for n, name, i in names if i not in coco.imgs]
    if len(absent) == len(names):
        raise SimpoolBenchError(
            f"COCO annotation file {annotation_file} holds none of the {len(names)} images of {list_file} "
            "(expected instances_train2014.json)"
        )
    if absent:
        n, name = absent[0]
        raise SimpoolBenchError(f"{list_file}:{n}: {name} is not in {annotation_file} ({len(absent)} of {len(names)} listed images absent)")

    records = []
    for n, name, image_id in names:
        info = coco.imgs[image_id]
        file_name = str(info.get("file_name", ""))
        if Path(file_name).name != Path(name).name:
            raise SimpoolBenchError(
                f"{list_file}:{n}: {name} is image id {image_id}, whose file_name in {annotation_file} is {file_name!r}"
            )
        anns = [a for a in coco.imgToAnns.get(image_id, []) if a.get("iscrowd", 0) != 1]
        for a in anns:
            problem = _bbox_problem(a)
            if problem is not None:
                raise SimpoolBenchError(
                    f"{annotation_file}: annotation id {a.get('id')!r} (image {image_id}) has bbox {clip(repr(a.get('bbox')))}; {problem}"
                )
        boxes = [coco_box_to_lost(a["bbox"]) for a in anns]
        records.append(
            Record(
                file_name,
                join_inside(image_dir, file_name, f"{annotation_file} (image {image_id})"),
                -1,
                _image_size(info, "width", image_id, annotation_file),
                _image_size(info, "height", image_id, annotation_file),
                np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            )
        )
    if check_images:
        missing = [r for r in records if not is_file(r.path)]
        if missing:
            hint = f"; {image_dir} should be the train2014 folder itself" if (image_dir / "train2014").is_dir() else ""
            raise SimpoolBenchError(
                f"COCO20k: image {missing[0].path} {not_found(missing[0].path)} ({len(missing)} of {len(records)} listed images missing){hint}"
            )
        sizes_from_files(records, f"COCO annotation file {annotation_file}", "LOST")
    return records
