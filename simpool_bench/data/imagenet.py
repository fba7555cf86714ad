"""ImageNet-style classification readers: class folders, a flat folder with a label file, and
per-class subsets (SimPool's ImageNet-20%).

Class order and file order follow torchvision's ``ImageFolder`` (what DINO/SimPool's k-NN uses):
class folders sorted by name, then files of each class from ``sorted(os.walk(class_dir))`` and
``sorted(filenames)``, keeping the extensions in ``IMG_EXTENSIONS``. Folder symlinks are followed as
ImageFolder follows them, except one that loops or leads to a folder read elsewhere (ImageFolder would
count its images again): it is skipped and counted in one ``DataWarning``. A real folder is read where
it lies (a link into a class folder, even another class's, is the one skipped). timm's own reader
(``find_images_and_targets``, what ``validate.py`` and ``train.py`` read) indexes the same class
folders in ``natural_key`` order instead: ``in_timm_class_order``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import SimpoolBenchError
from .inputs import MAX_CLASS_INDEX, clip, is_file, join_inside, not_found, read_lines, walk_files, warn_data
from .records import Record

# torchvision.datasets.folder.IMG_EXTENSIONS (lower case, compared case-insensitively).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# SimPool's "ImageNet-20%": the first 260 ImageFolder images of every class (``--subset 260``).
IMAGENET_20PCT_PER_CLASS = 260

# First-line field names taken as a CSV header in a label file.
_HEADER_WORDS = {"filename", "file", "file_name", "image", "image_id", "imageid", "path", "name", "id"}
# Header of the Kaggle ImageNet localization CSV (LOC_val_solution.csv): ``ImageId,PredictionString``
# where the prediction string is ``wnid x0 y0 x1 y1 [wnid ...]`` and the file is ``<ImageId>.JPEG``.
_KAGGLE_HEADER = "imageid,predictionstring"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def read_image_folder(root: str | Path) -> tuple[list[Record], list[str]]:
    """Read ``root/<class>/**/<image>`` (the ImageNet val/train class-folder layout).

    Labels are indices into the sorted class-folder names (hidden ``.``-folders are ignored); the
    image id is the path relative to ``root`` with ``/`` separators. Sizes are left 0 (unknown).

    Returns:
        (records, class_names).
    """
    root = Path(root)
    if not root.is_dir():
        raise SimpoolBenchError(f"image folder {root}: no such directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise SimpoolBenchError(f"image folder {root}: no class sub-folders (expected {root}/<class>/<image>)")
    records: list[Record] = []
    empty: list[str] = []
    seen = {os.path.realpath(root / cls) for cls in classes}
    roots = set(seen)  # the trees read: a link into one of them is left for the walk of that tree
    prefixes: dict[Path, str] = {}  # each folder's id prefix, worked out once (ImageNet train: 1.28M files in 1000 folders)
    skipped: list[Path] = []
    linked: dict[str, Path] = {}  # an empty class's first link not followed
    for label, cls in enumerate(classes):
        paths, links = walk_files(root / cls, _is_image, seen, roots)
        skipped += links
        records += [Record(_relative_id(p, root, prefixes), p, label) for p in paths]
        if not paths:
            empty.append(cls)
            if links:
                linked[cls] = links[0]
    if skipped:
        warn_data(
            f"image folder {root}: {len(skipped)} folder symlink(s) not followed because they loop or lead to a "
            f"folder read elsewhere (first: {skipped[0]}); each image is counted once"
        )
    if empty:
        why = f"; its folder symlink {linked[empty[0]]} leads to a folder read elsewhere" if empty[0] in linked else ""
        raise SimpoolBenchError(
            f"image folder {root}: class folder {empty[0]!r} has no image files "
            f"({len(empty)} such folder(s); extensions {', '.join(IMG_EXTENSIONS)}){why}"
        )
    return records, classes


def _relative_id(path: Path, root: Path, prefixes: dict[Path, str]) -> str:
    """``path.relative_to(root).as_posix()``, with the folder's part computed once per folder
    (``prefixes``: folder -> its relative posix path); ``path.name`` is one name from a listing."""
    folder = path.parent
    prefix = prefixes.get(folder)
    if prefix is None:
        prefix = prefixes[folder] = folder.relative_to(root).as_posix()
    return path.name if prefix == "." else f"{prefix}/{path.name}"


def natural_key(name: str) -> list[int | str]:
    """timm's ``natural_key`` (``timm.utils.misc``): lower-cased, digit runs compared as numbers."""
    return [int(s) if s.isdecimal() else s for s in re.split(r"(\d+)", name.lower())]  # (timm: isdigit, which fails on "²")


def in_timm_class_order(records: Sequence[Record], classes: Sequence[str]) -> tuple[list[Record], list[str]]:
    """``read_image_folder``'s records and classes relabelled as timm's ImageFolder reader indexes
    the class folders: sorted by ``natural_key`` ('9' before '10', 'a' before 'B'; names of equal
    key, which timm leaves in set order, by name). ImageNet's WordNet ids keep their indices."""
    order = sorted(classes, key=lambda c: (natural_key(c), c))
    if order == list(classes):
        return list(records), order
    index = {name: i for i, name in enumerate(order)}
    new = {old: index[name] for old, name in enumerate(classes)}
    return [replace(r, label=new[r.label]) if r.label >= 0 else r for r in records], order


def read_flat_folder(root: str | Path, label_file: str | Path, check_images: bool = True) -> tuple[list[Record], list[str]]:
    """Read a flat image folder with a label file (e.g. ImageNet val as ``ILSVRC2012_val_*.JPEG``).

    The label file has one image per line, ``filename label`` (whitespace) or ``filename,label``
    (CSV); blank lines and ``#`` comments are skipped, and so is a first line whose filename field
    is a header word (``filename``, ``image_id``, ``path``, ...). ``filename`` is relative to ``root``.
    Kaggle's ``LOC_val_solution.csv`` (header ``ImageId,PredictionString``) is read as
    ``<ImageId>.JPEG`` labelled with the first WordNet id of its prediction string.
    Labels are either all non-negative integers (used as they are; class names are then
    ``"0".."max"``; a negative one, or one over ``MAX_CLASS_INDEX``, is an error) or all class names (e.g. WordNet ids; mapped to their index in sorted order,
    which gives ImageFolder's indices for ImageNet synsets). Mixing the two is an error.

    Returns:
        (records, class_names), records in label-file order.
    """
    root, label_file = Path(root), Path(label_file)
    if not root.is_dir():
        raise SimpoolBenchError(f"image folder {root}: no such directory")
    if not label_file.is_file():
        raise SimpoolBenchError(f"label file {label_file} {not_found(label_file)}")
    entries: list[tuple[str, str, int]] = []
    seen: dict[str, int] = {}
    kaggle = False
    for lineno, raw in enumerate(read_lines(label_file), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not entries and line.replace(" ", "").lower() == _KAGGLE_HEADER:
            kaggle = True
            continue
        if kaggle:
            parts = line.split(",", 1)
            if len(parts) == 2 and parts[1].split():
                parts = [parts[0] + ".JPEG", parts[1].split()[0]]
        else:
            parts = line.rsplit(",", 1) if "," in line else line.rsplit(None, 1)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise SimpoolBenchError(f"{label_file}:{lineno}: expected 'filename label' or 'filename,label', got {raw!r}")
        name, label = parts[0].strip(), parts[1].strip()
        if not entries and not kaggle and name.lower() in _HEADER_WORDS:
            continue
        if name in seen:
            raise SimpoolBenchError(f"{label_file}:{lineno}: {name!r} already listed on line {seen[name]}")
        seen[name] = lineno
        entries.append((name, label, lineno))
    if not entries:
        raise SimpoolBenchError(f"label file {label_file}: no entries")

    negative = next(((lab, n) for _, lab, n in entries if lab[:1] == "-" and lab[1:].isdecimal()), None)
    if negative is not None:  # neither an index nor, surely, a class name
        raise SimpoolBenchError(f"{label_file}:{negative[1]}: label {negative[0]!r}; expected a class index >= 0 or a class name")
    numeric = [lab.isdecimal() for _, lab, _ in entries]  # what int() reads (isdigit() also takes "²")
    if all(numeric):
        huge = next(((lab, n) for _, lab, n in entries if len(lab) > 4000 or int(lab) > MAX_CLASS_INDEX), None)
        if huge is not None:  # the class list is "0".."max": 10**22 never finished building it
            raise SimpoolBenchError(
                f"{label_file}:{huge[1]}: label {clip(huge[0])!r} is over {MAX_CLASS_INDEX:,}; expected a class index "
                "(ImageNet's are 0..999) or a class name"
            )
        ids = [int(lab) for _, lab, _ in entries]
        classes = [str(c) for c in range(max(ids) + 1)]
    elif not any(numeric):
        classes = sorted({lab for _, lab, _ in entries})
        index = {c: i for i, c in enumerate(classes)}
        ids = [index[lab] for _, lab, _ in entries]
    else:
        k = numeric.index(not numeric[0])
        raise SimpoolBenchError(
            f"{label_file}:{entries[k][2]}: label {entries[k][1]!r} mixes with line {entries[0][2]}'s "
            f"{entries[0][1]!r}: labels must be all integers or all class names"
        )
    records = [Record(name, join_inside(root, name, f"{label_file}:{n}"), label) for (name, _, n), label in zip(entries, ids)]
    if check_images:
        _check_exist(records, f"label file {label_file}")
    return records, classes


def _check_exist(records: Sequence[Record], what: str) -> None:
    missing = [r for r in records if not is_file(r.path)]
    if missing:
        raise SimpoolBenchError(
            f"{what}: image {missing[0].path} {not_found(missing[0].path)} ({len(missing)} of {len(records)} listed images missing)"
        )


def subset_per_class(records: Sequence[Record], n: int, seed: int | None = None) -> list[Record]:
    """Keep ``n`` records per class (ImageNet-20% is ``n=260``).

    ``seed=None`` (default) is SimPool's subset (``utils.subset_of_ImageNet_train_split``): the first
    ``n`` records of each label in the given order, which for ``read_image_folder`` is sorted file
    order; deterministic. An integer ``seed`` instead draws ``n`` per class at random with
    ``numpy.random.default_rng(seed)``. The kept records stay in their input order. A class with
    fewer than ``n`` records, or a record without a label, is an error.
    """
    if n < 1:
        raise SimpoolBenchError(f"subset per class: n must be >= 1, got {n}")
    by_label: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.label < 0:
            raise SimpoolBenchError(f"subset per class: image {r.image_id} has no class label")
        by_label[r.label].append(i)
    short = sorted((lab, len(idx)) for lab, idx in by_label.items() if len(idx) < n)
    if short:
        lab, count = short[0]
        raise SimpoolBenchError(f"subset per class: class {lab} has {count} images, fewer than {n} ({len(short)} such classes)")
    rng = np.random.default_rng(seed) if seed is not None else None
    keep: list[int] = []
    for lab in sorted(by_label):
        idx = by_label[lab]
        keep += idx[:n] if rng is None else [idx[j] for j in rng.choice(len(idx), size=n, replace=False)]
    return [records[i] for i in sorted(keep)]
