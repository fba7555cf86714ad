"""Readers for the WSOL localization data (Choe et al., CVPR 2020; clovaai/wsolevaluation).

Two layouts:
- wsolevaluation metadata (``data_loaders.py``): a split folder with ``image_ids.txt`` (one image id
  per line, a path relative to the image root), ``class_labels.txt`` (``id,label``, 0-based),
  ``image_sizes.txt`` (``id,width,height``) and ``localization.txt`` (``id,x0,y0,x1,y1``, integer
  original-pixel boxes, one line per box, several lines per image possible).
- CUB-200-2011 native files: ``images.txt`` (``n path``), ``image_class_labels.txt`` (``n class``,
  1-based), ``train_test_split.txt`` (``n is_train``), ``bounding_boxes.txt`` (``n x y w h``, floats)
  and ``images/``. The boxes convert as wsolevaluation's CUB metadata has them:
  ``(x, y, x + w, y + h)`` (checked against its ``metadata/CUB/{train,test}/localization.txt``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SimpoolBenchError
from .images import header_size, warn_size_differences
from .inputs import MAX_CLASS_INDEX, MAX_SIDE, clip, is_file, join_inside, not_found, read_lines, warn_data
from .records import Record

WSOL_METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
CUB_NATIVE_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")
CUB_SPLITS = {"train": 1, "test": 0}  # value of is_training_image in train_test_split.txt


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of the non-blank lines of ``path``."""
    if not path.is_file():
        raise SimpoolBenchError(f"metadata file {path} {not_found(path)}")
    return [(n, line) for n, line in enumerate(read_lines(path), start=1) if line.strip()]


def _unique(path: Path, rows: Sequence[tuple[int, object, object]], what: str, line_of: dict | None = None) -> dict:
    """``{key: value}`` of ``(line, key, value)`` rows, one value per key; ``line_of`` (if given)
    is filled with each key's line number.

    A key listed again with the same value is dropped and counted in one ``DataWarning`` (the
    references keep the last line, which is then the same); with another value it is an error."""
    table: dict = {}
    line_of = {} if line_of is None else line_of
    repeats: list[tuple[int, int]] = []
    for n, key, value in rows:
        if key in table:
            if table[key] != value:
                raise SimpoolBenchError(
                    f"{path}:{n}: {what} {value} for image {key!r} conflicts with line {line_of[key]} ({table[key]}); "
                    "expected one value per image"
                )
            repeats.append((n, line_of[key]))
            continue
        table[key], line_of[key] = value, n
    if repeats:
        warn_data(f"{path}: {len(repeats)} repeated line(s) ignored (first: line {repeats[0][0]} repeats line {repeats[0][1]})")
    return table


def _fields(path: Path, lineno: int, line: str, n: int, conv: Callable[[str], object], what: str, sep: str | None = ",") -> list:
    """Split an id-first line into the id and ``n`` converted fields, or fail naming file and line.

    With ``sep`` every separator splits, as wsolevaluation's ``line.split(',')`` does: a line with
    one field too many is refused, not read as another image id holding a comma."""
    parts = line.split(sep) if sep else line.split(None, n)
    if len(parts) != n + 1 or not parts[0]:
        raise SimpoolBenchError(f"{path}:{lineno}: expected {what}, got {line!r}")
    _unspaced_id(path, lineno, parts[0])
    try:
        return [parts[0]] + [conv(p) for p in parts[1:]]
    except ValueError:
        raise SimpoolBenchError(f"{path}:{lineno}: expected {what}, got {line!r}") from None


def _unspaced_id(path: Path, lineno: int, image_id: str) -> None:
    """An image id with spaces around it (a hand edit: 'id ,0') would be another id, found in no
    other file: say so at its line, not that the id of image_ids.txt has no label."""
    if image_id != image_id.strip():
        raise SimpoolBenchError(f"{path}:{lineno}: image id {image_id!r} has spaces around it; expected {image_id.strip()!r}")


def _plain(v: float) -> str:
    """A number plainly (not ``np.float64(5.0)``): ``5`` for 5 or 5.0, ``5.5`` otherwise."""
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


def _check_box(box: Sequence[float], width: int, height: int, where: str, what: str = "box") -> None:
    """A box must satisfy 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
        raise SimpoolBenchError(f"{where}: {what} ({', '.join(map(_plain, box))}) is outside its {width}x{height} image (or inverted)")


def _check_images(records: list[Record], where: str, root: Path | None = None) -> None:
    """Every image is there; when none is and ``root/images`` (a CUB_200_2011 folder given for its
    images/) holds the first, the error says which ``--data`` was meant."""
    missing = [r for r in records if not is_file(r.path)]
    if missing:
        hint = ""
        if root is not None and len(missing) == len(records) and is_file(root / "images" / records[0].image_id):
            hint = f"; did you mean --data {root / 'images'}?"
        raise SimpoolBenchError(
            f"{where}: image {missing[0].path} {not_found(missing[0].path)} ({len(missing)} of {len(records)} images missing){hint}"
        )


def read_wsol_metadata(metadata_dir: str | Path, image_root: str | Path, check_images: bool = True) -> list[Record]:
    """Read one wsolevaluation metadata split (e.g. ``metadata/CUB/test``) over ``image_root``.

    Records come in ``image_ids.txt`` order, with the 0-based label, the original size and every
    box of the image in original pixels (K, 4). Entries of the other files for ids not in
    ``image_ids.txt`` are ignored, as the reference does.

    Raises:
        SimpoolBenchError: a missing metadata file; a line that does not parse (file:line); an id
            listed twice, absolute or leading out of ``image_root``, or without a label, a size or a
            box; two different labels or sizes for one id; a size not positive or over ``MAX_SIDE``;
            a box outside its image; with ``check_images``, ids whose image file is missing (the
            first one and the count).

    Warns (``DataWarning``, once, counted): label or size lines repeated with the same value;
    with ``check_images``, image files whose size differs from ``image_sizes.txt`` (the boxes
    are scaled by ``image_sizes.txt`` all the same, as wsolevaluation does).
    """
    metadata_dir, image_root = Path(metadata_dir), Path(image_root)
    if not metadata_dir.is_dir():
        raise SimpoolBenchError(f"wsol metadata folder {metadata_dir}: no such directory")
    ids_f, labels_f, sizes_f, loc_f = (metadata_dir / name for name in WSOL_METADATA_FILES)
    splits = sorted(q.parent.name for q in metadata_dir.glob(f"*/{ids_f.name}")) if not ids_f.exists() else []
    if splits:  # metadata/CUB given for metadata/CUB/test
        pick = "test" if "test" in splits else splits[0]
        raise SimpoolBenchError(
            f"metadata file {ids_f} not found: {metadata_dir} holds the metadata of {', '.join(splits)}; "
            f"did you mean --metadata {metadata_dir / pick}?"
        )

    ids: list[str] = []
    first_line: dict[str, int] = {}
    for n, line in _lines(ids_f):
        _unspaced_id(ids_f, n, line)
        if line in first_line:
            raise SimpoolBenchError(f"{ids_f}:{n}: image id {line!r} already listed on line {first_line[line]}")
        join_inside(image_root, line, f"{ids_f}:{n}")
        first_line[line] = n
        ids.append(line)
    if not ids:
        raise SimpoolBenchError(f"{ids_f}: no image ids")

    rows = []
    for n, line in _lines(labels_f):
        image_id, label = _fields(labels_f, n, line, 1, int, "'id,label' with an integer label")
        if label < 0:
            raise SimpoolBenchError(f"{labels_f}:{n}: negative class label {label}")
        if label > MAX_CLASS_INDEX:  # (10**30 was an OverflowError in localize's label array, 2**63 a negative label)
            raise SimpoolBenchError(
                f"{labels_f}:{n}: class label {clip(str(label))} is over {MAX_CLASS_INDEX:,}; expected a 0-based class index"
            )
        rows.append((n, image_id, label))
    labels: dict[str, int] = _unique(labels_f, rows, "class label")

    rows = []
    for n, line in _lines(sizes_f):
        image_id, w, h = _fields(sizes_f, n, line, 2, int, "'id,width,height' with integers")
        if w <= 0 or h <= 0:
            raise SimpoolBenchError(f"{sizes_f}:{n}: image size {w}x{h} is not positive")
        if max(w, h) > MAX_SIDE:  # (a box within it would not convert to a float64 array)
            raise SimpoolBenchError(f"{sizes_f}:{n}: image size {w}x{h} is over {MAX_SIDE} pixels a side, more than an image file holds")
        rows.append((n, image_id, (w, h)))
    sizes: dict[str, tuple[int, int]] = _unique(sizes_f, rows, "size")

    boxes: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    for n, line in _lines(loc_f):
        image_id, *box = _fields(loc_f, n, line, 4, int, "'id,x0,y0,x1,y1' with integers")
        if image_id in sizes:
            _check_box(box, *sizes[image_id], f"{loc_f}:{n}")
        boxes[image_id].append(tuple(box))

    records = []
    for image_id in ids:
        for table, f, what in ((labels, labels_f, "class label"), (sizes, sizes_f, "size"), (boxes, loc_f, "box")):
            if image_id not in table:
                missing = sum(1 for i in ids if i not in table)
                raise SimpoolBenchError(f"{f}: image id {image_id!r} has no {what} ({missing} of {len(ids)} ids without one)")
        w, h = sizes[image_id]
        records.append(Record(image_id, image_root / image_id, labels[image_id], w, h, np.asarray(boxes[image_id], dtype=np.float64)))
    if check_images:
        _check_images(records, f"wsol metadata {metadata_dir}", Path(image_root))
        _check_sizes(records, sizes_f)
    return records


def _check_sizes(records: list[Record], sizes_f: Path) -> None:
    """One ``DataWarning`` counting the images whose header size differs from ``image_sizes.txt``.

    wsolevaluation scales the boxes by ``image_sizes.txt`` and never looks at the image's own
    size; we do the same (the numbers stay the reference's), and say how many disagree."""
    warn_size_differences(records, str(sizes_f), f"boxes are scaled by {sizes_f.name}, as wsolevaluation does")


def cub_box_to_wsol(x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
    """CUB ``bounding_boxes.txt`` (x, y, width, height) -> wsolevaluation (x0, y0, x1, y1) = (x, y, x+w, y+h).

    CUB's values are integral floats ("60.0"); ``int()`` truncates anything else.
    """
    return int(x), int(y), int(x + w), int(y + h)


def read_cub_native(root: str | Path, split: str = "test") -> list[Record]:
    """Read CUB-200-2011 in its native layout (``root`` = the ``CUB_200_2011`` folder).

    Records come in ``images.txt`` order restricted to ``split`` ('test': 5794 images, 'train':
    5994), with 0-based labels, one box each (see ``cub_box_to_wsol``) and sizes read from the image
    headers. The image ids are the ``images.txt`` paths, the same ids as wsolevaluation's metadata.

    Raises:
        SimpoolBenchError: unknown split, a missing file, a line that does not parse (file:line),
            an image without a label, split entry or box, or with two different ones, a path
            leading out of ``images/``, no image in ``split`` (``train_test_split.txt`` named), a
            missing or unreadable image, a box outside its image or whose x + width or y + height is
            not finite (``bounding_boxes.txt:line``).

    Warns (``DataWarning``, once per file, counted): lines repeated with the same value.
    """
    if split not in CUB_SPLITS:
        raise SimpoolBenchError(f"CUB split {split!r}: expected one of {', '.join(CUB_SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise SimpoolBenchError(f"CUB-200-2011 folder {root}: no such directory")
    images_f, labels_f, split_f, boxes_f = (root / name for name in CUB_NATIVE_FILES)

    paths, is_train = cub_images_and_splits(root)
    labels: dict[int, int] = _id_table(labels_f, 1, int, "'<image_id> <class_id>'", "class")
    box_line: dict[int, int] = {}
    boxes: dict[int, tuple] = _id_table(boxes_f, 4, _finite, "'<image_id> <x> <y> <width> <height>' (finite numbers)", "box", box_line)

    records: list[Record] = []
    nums: list[int] = []
    for num, rel in paths.items():
        for table, f in ((is_train, split_f), (labels, labels_f), (boxes, boxes_f)):
            if num not in table:
                raise SimpoolBenchError(f"{f}: image {num} ({rel}) of {images_f.name} is not listed")
        if is_train[num] != CUB_SPLITS[split]:
            continue
        if labels[num] < 1:
            raise SimpoolBenchError(f"{labels_f}: image {num} has class {labels[num]}; CUB classes are 1-based")
        if labels[num] > MAX_CLASS_INDEX + 1:
            raise SimpoolBenchError(
                f"{labels_f}: image {num} has class {clip(str(labels[num]))}; expected a class id up to {MAX_CLASS_INDEX + 1:,}"
            )
        x, y, w, h = boxes[num]
        if not (math.isfinite(x + w) and math.isfinite(y + h)):  # each is finite (_finite), a sum may not be
            raise SimpoolBenchError(
                f"{boxes_f}:{box_line[num]}: box {x:g} {y:g} {w:g} {h:g} of image {num}: x + width or y + height is not finite"
            )
        box = np.asarray([cub_box_to_wsol(x, y, w, h)], dtype=np.float64)
        path = join_inside(root / "images", rel, f"{images_f} (image {num})")
        records.append(Record(rel, path, labels[num] - 1, 0, 0, box))
        nums.append(num)
    if not records:
        flag = CUB_SPLITS[split]
        raise SimpoolBenchError(
            f"{split_f}: none of the {len(paths)} images of {images_f.name} is in split {split!r} "
            f"(is_training_image {flag}); expected 1 for train and 0 for test images"
            if paths
            else f"{images_f}: no images listed"
        )

    _check_images(records, f"CUB-200-2011 {root}")
    for r, num in zip(records, nums):
        try:
            r.width, r.height = header_size(r.path)
        except (OSError, ValueError, SyntaxError) as exc:
            raise SimpoolBenchError(f"cannot read the size of image {r.path}: {exc}") from None
        _check_box(
            tuple(r.boxes[0]),
            r.width,
            r.height,
            f"{boxes_f}:{box_line[num]} (image {num}, {r.image_id})",
            "box (x, y, x + width, y + height) =",
        )
    return records


def cub_images_and_splits(root: Path) -> tuple[dict[int, str], dict[int, int]]:
    """CUB's ``images.txt`` as ``{image number: path}`` and ``train_test_split.txt`` as ``{image
    number: is_training_image}``, parsed as ``read_cub_native`` parses them (``datasets verify``
    counts a split with them).

    Raises:
        SimpoolBenchError: a missing file or a line that does not parse (file:line).
    """
    images_f, split_f = root / "images.txt", root / "train_test_split.txt"
    paths: dict[int, str] = _id_table(images_f, 1, str, "'<image_id> <path>'", "path")
    is_train: dict[int, int] = _id_table(split_f, 1, _split_flag, "'<image_id> <is_training_image>' (0 or 1)", "is_training_image")
    return paths, is_train


def _split_flag(text: str) -> int:
    """A ``train_test_split.txt`` flag: 0 or 1 (anything else would be in neither split)."""
    flag = int(text)
    if flag not in CUB_SPLITS.values():
        raise ValueError(text)
    return flag


def _finite(text: str) -> float:
    """A ``bounding_boxes.txt`` value: a finite float ("nan" and "inf" do not convert to pixels)."""
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(text)
    return value


def _int(path: Path, lineno: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SimpoolBenchError(f"{path}:{lineno}: expected an integer image id, got {text!r}") from None


def _id_table(path: Path, n: int, conv: Callable[[str], object], what: str, name: str, line_of: dict | None = None) -> dict[int, Any]:
    """``{image number: value}`` of the whitespace-separated ``id v1 .. vn`` lines of a CUB file
    (the value alone for ``n == 1``, else a tuple); a repeated line is counted, a conflicting one an
    error. ``line_of`` (if given) is filled with each image number's line."""
    rows = []
    for lineno, line in _lines(path):
        num, *values = _fields(path, lineno, line, n, conv, what, sep=None)
        rows.append((lineno, _int(path, lineno, num), values[0] if n == 1 else tuple(values)))
    return _unique(path, rows, name, line_of)
