"""Read a dataset's records by the registry's facts: classification folders, wsolevaluation
metadata or CUB's native files, VOC, COCO20k, or any folder of images."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from .data.coco20k import read_coco20k
from .data.imagenet import read_flat_folder, read_image_folder, subset_per_class
from .data.records import Record
from .data.voc import read_voc
from .data.wsol import read_cub_native, read_wsol_metadata
from .errors import SimpoolBenchError
from .fields import check_argument, path_argument
from .registry import DATASETS, default_split
from .registry import dataset as registry_dataset
from .specs import DataSpec


class ClassificationData(NamedTuple):
    """A classification split as ``read_classification_data`` reads it (unpacks as ``records, classes``)."""

    records: list[Record]
    """One record per image, its label the class index (class folders: sorted file order; a label
    file or metadata: the file's order)."""
    classes: list[str] | None
    """Class names in label order (the class folders; a label file's names, or "0".."max" for
    integer labels); None for wsolevaluation metadata, which names no class."""


def read_classification_data(
    data: Path,
    split: str | None = None,
    labels: Path | None = None,
    metadata: Path | None = None,
    subset: int | None = None,
    default_split: str | None = None,
) -> ClassificationData:
    """Records (and class names) of a classification split: wsol metadata (``metadata``), a flat
    folder with a label file (``labels``), or an ImageFolder tree: ``data/split``, which must exist
    (otherwise the split folders would be read as classes); without ``split``,
    ``data/default_split`` when it exists, else ``data`` (an error when its folders are all named
    as splits: ``train``, ``test``, ...)."""
    data = path_argument(data, "--data", "a folder")
    for arg, passed, kind in (
        ("split", split, str | None),
        ("labels", labels, Path | None),
        ("metadata", metadata, Path | None),
        ("subset", subset, int | None),
        ("default_split", default_split, str | None),
    ):
        check_argument(passed, kind, f"read_classification_data: {arg}")
    if subset is not None and subset < 1:  # 0 read every image
        raise SimpoolBenchError(
            f"read_classification_data: subset = {subset!r}: expected an integer >= 1 (the first N images per class) or None"
        )
    if not data.exists():
        raise SimpoolBenchError(f"--data {data}: no such directory")
    classes: list[str] | None = None
    if metadata is not None:
        records = read_wsol_metadata(metadata, data)
    elif labels is not None:
        records, classes = read_flat_folder(data, labels)
    else:
        if split:
            root = data / split
            if not root.is_dir():
                there = sorted(e.name for e in os.scandir(data) if e.is_dir() and not e.name.startswith(".")) if data.is_dir() else []
                raise SimpoolBenchError(
                    f"--split {split!r}: no folder {root} (sub-folders of {data}: {', '.join(there[:8]) or 'none'}"
                    f"{', ...' if len(there) > 8 else ''})"
                )
        else:
            root = _default_root(data, default_split)
            if root == data:
                refuse_split_folders_as_classes(data)
        records, classes = read_image_folder(root)
    if subset:
        records = subset_per_class(records, subset)
    return ClassificationData(records, classes)


def _default_root(data: Path, default_split: str | None) -> Path:
    """The ImageFolder read without ``--split``: ``data/default_split`` where it is a folder, else ``data``."""
    return data / default_split if (default_split and (data / default_split).is_dir()) else data


def classification_split(
    data: Path, split: str | None = None, labels: Path | None = None, metadata: Path | None = None, default_split: str | None = None
) -> str | None:
    """The split a classification run of ``read_classification_data``'s arguments records: ``split``
    when given; else the name of the folder the images are read from (``data/default_split``, or
    ``data`` itself, as an ImageFolder or a flat folder with ``labels``), so that ``--data
    imagenet/val`` records ``val`` and a folder without a ``val`` is not recorded as one;
    wsolevaluation ``metadata`` names no folder split: ``default_split``."""
    if split:
        return split
    if metadata is not None:
        return default_split
    return (Path(data) if labels is not None else _default_root(Path(data), default_split)).name


#: Folder names that are a data set's splits, not its classes (``--data`` one level too high).
SPLIT_FOLDER_NAMES = frozenset({"train", "val", "valid", "validation", "test", "trainval", "eval"})


def _holds_a_folder(folder: Path) -> bool:
    """Whether ``folder`` has a sub-folder (the listing closed even when one is found early)."""
    with os.scandir(folder) as entries:
        return any(e.is_dir() for e in entries)


def refuse_split_folders_as_classes(data: Path, flag: str = "--data") -> None:
    """``data`` read as an ImageFolder whose every class folder is named as a split (``train``,
    ``val``, ``test``, ...) and holds folders itself: the data set's root was given, and its splits
    would be scored as classes. One error naming them and what to pass instead (``flag``: the
    option that gave the folder; ``--data`` can also take ``--split``, a k-NN bank its train split)."""
    subs = sorted(e.name for e in os.scandir(data) if e.is_dir() and not e.name.startswith(".")) if data.is_dir() else []
    if not subs or any(s.lower() not in SPLIT_FOLDER_NAMES for s in subs):
        return
    if not any(_holds_a_folder(data / s) for s in subs):
        return
    order = ("val", "validation", "valid", "test", "eval") if flag == "--data" else ("train", "trainval")
    pick = next((s for o in order for s in subs if s.lower() == o), subs[0])
    fix = f"pass --split {pick} (or --data {data / pick})" if flag == "--data" else f"pass {flag} {data / pick}"
    raise SimpoolBenchError(f"{flag} {data}: its sub-folders ({', '.join(subs)}) are splits, not classes; {fix}")


def read_localization_data(dataset: str, data: Path, metadata: Path | None = None, split: str = "test") -> list[Record]:
    """Records with GT boxes for localize: wsolevaluation metadata, or CUB-200-2011's native files
    when ``metadata`` is not given and ``data`` holds ``images.txt``."""
    data = path_argument(data, "--data", "a folder")
    for arg, passed, kind in (("dataset", dataset, str), ("metadata", metadata, Path | None), ("split", split, str)):
        check_argument(passed, kind, f"read_localization_data: {arg}")
    if not data.is_dir():
        raise SimpoolBenchError(f"--data {data}: {'a file, expected a folder' if data.exists() else 'no such directory'}")
    if metadata is not None:
        return read_wsol_metadata(metadata, data)
    need = f"--metadata is required for {dataset} (wsolevaluation metadata folder, e.g. metadata/{dataset.upper()}/{split})"
    if dataset != "cub":  # only CUB has a native layout: do not say its images.txt is missing
        native = (data / "images.txt").is_file()
        raise SimpoolBenchError(need + ("; --data holds CUB-200-2011's native files: pass --dataset cub" if native else ""))
    if (data / "images.txt").exists():
        return read_cub_native(data, split=split)
    inner = sorted(str(q) for q in data.glob("*/images.txt"))  # the CUB_200_2011 folder one level down
    if (data.parent / "images.txt").is_file():  # its images/ (or another sub-folder) given
        inner = [str(data.parent / "images.txt")]
    hint = f"; did you mean --data {Path(inner[0]).parent}?" if len(inner) == 1 else ""
    raise SimpoolBenchError(f"{need}; {data / 'images.txt'} (CUB native layout) not found either{hint}")


def read_discovery_data(
    dataset: str,
    data: Path,
    split: str = "trainval",
    no_hard: bool = False,
    annotations: Path | None = None,
    list_file: Path | None = None,
    integer_coords: bool = True,
) -> list[Record]:
    """Records for discover: VOC07/VOC12 (``data`` = the VOC20XX folder) or COCO20k
    (``data`` = train2014 images, ``annotations`` = instances_train2014.json, ``list_file`` = the 20k list).

    ``integer_coords`` (the default: LOST's CorLoc takes integer pixel boxes) refuses a fractional
    VOC box coordinate while reading, naming the XML file; ``read_map_data`` (extract, visualize)
    reads them as floats."""
    data = path_argument(data, "--data", "a folder")
    for arg, passed, kind in (
        ("dataset", dataset, str),
        ("split", split, str),
        ("no_hard", no_hard, bool),  # the string 'False' is true
        ("annotations", annotations, Path | None),
        ("list_file", list_file, Path | None),
    ):
        check_argument(passed, kind, f"read_discovery_data: {arg}")
    if dataset in ("voc07", "voc12"):
        given = [flag for flag, value in (("--annotations", annotations), ("--list", list_file)) if value is not None]
        if given:
            raise SimpoolBenchError(
                f"{' and '.join(given)}: COCO20k's files; {dataset} reads Annotations/ and ImageSets/Main/{split}.txt "
                f"under --data (the VOC20XX folder): drop {' and '.join(given)}, or pass --dataset coco20k"
            )
        _same_voc_year(dataset, Path(data))
        return read_voc(data, split=split, no_hard=no_hard, integer_coords=integer_coords)
    if dataset == "coco20k":
        if no_hard:
            raise SimpoolBenchError("--no-hard: VOC's difficult/truncated flags; COCO20k has none (LOST's --no_hard is for VOC)")
        missing = [need for need, value in ((ANNOTATIONS_NEED, annotations), (LIST_NEED, list_file)) if value is None]
        if missing:
            found = [f"{need.split()[0]} {hint}" for need in missing if (hint := _coco_file_near(Path(data), need.split()[1])) is not None]
            seen = f"; found beside --data: pass {' '.join(found)}" if found else ""
            raise SimpoolBenchError(f"coco20k needs {' and '.join(missing)} (missing){seen}")
        return read_coco20k(data, annotations, list_file)  # type: ignore[arg-type]
    raise SimpoolBenchError(f"--dataset {dataset!r}: expected voc07, voc12 or coco20k")


ANNOTATIONS_NEED = "--annotations instances_train2014.json"
LIST_NEED = "--list coco_20k_filenames.txt"


def _coco_file_near(data: Path, name: str) -> Path | None:
    """COCO20k's file ``name`` where the COCO and LOST layouts keep it, near the train2014 folder
    ``data``: in it, beside it, or in an ``annotations`` folder of it, its parent or grandparent
    (COCO/annotations/ beside COCO/images/train2014/); None when in none of those places."""
    from .data.inputs import is_file

    for base in (data, data.parent, data.parent.parent, data.parent.parent.parent):
        for where in (base / "annotations" / name, base / name):
            if is_file(where):
                return where
    return None


def _same_voc_year(dataset: str, data: Path) -> None:
    """``--data`` named VOC2007 or VOC2012 (as VOCdevkit has them) for the other year's dataset:
    the table would record the wrong data set under the wrong name."""
    m = re.fullmatch(r"VOC(\d{4})", data.name)
    if m and m.group(1)[2:] != dataset[-2:] and data.is_dir():  # a folder that is not there: read_voc says so
        sibling = data.with_name(f"VOC20{dataset[-2:]}")  # the dataset's own folder beside it
        raise SimpoolBenchError(
            f"--data {data} is VOC{m.group(1)} but --dataset is {dataset}: pass --dataset voc{m.group(1)[2:]}"
            + (f", or --data {sibling}" if sibling.is_dir() else "")
        )


#: The split recorded (and, for VOC/CUB native, read) when ``--split`` is not given.
DEFAULT_SPLITS = {name: record.default_split for name, record in DATASETS.items()}


def read_image_files(root: Path) -> list[Record]:
    """Every image under ``root`` (recursively, sorted by relative path), without labels or boxes;
    the size is read from each file's header (unreadable files get 0 x 0 and fail at decoding)."""
    from .data.imagenet import IMG_EXTENSIONS
    from .data.images import header_size

    root = path_argument(root, "--data", "a folder")
    if not root.is_dir():
        raise SimpoolBenchError(f"--data {root}: {'a file, expected a folder' if root.exists() else 'no such directory'}")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not paths:
        raise SimpoolBenchError(f"--data {root}: no image files ({', '.join(IMG_EXTENSIONS)})")
    records = []
    for p in paths:
        try:
            w, h = header_size(p)
        except Exception:  # noqa: BLE001 - decoding reports it later, per image
            w = h = 0
        records.append(Record(p.relative_to(root).as_posix(), p, -1, w, h))
    return records


def read_map_data(
    dataset: str,
    data: Path,
    *,
    metadata: Path | None = None,
    split: str | None = None,
    no_hard: bool = False,
    annotations: Path | None = None,
    list_file: Path | None = None,
) -> list[Record]:
    """Records for ``extract``/``visualize``: cub/imagenet as ``localize`` reads them, voc07/voc12/
    coco20k as ``discover`` does, or ``folder``: every image under ``data``."""
    record = registry_dataset(dataset)
    split = split or record.default_split
    # a file this dataset's reader does not read: an error, not a run that ignores it
    # (voc07 --annotations/--list and coco20k --no-hard: read_discovery_data says so)
    unread = {"folder": ("--metadata", "--annotations", "--list", "--no-hard"), "wsol": ("--annotations", "--list", "--no-hard")}.get(
        record.reader, ("--metadata",)
    )
    given = [
        flag
        for flag, value in (("--metadata", metadata), ("--annotations", annotations), ("--list", list_file), ("--no-hard", no_hard or None))
        if value is not None
    ]
    ignored = [flag for flag in given if flag in unread]
    if ignored:
        raise SimpoolBenchError(
            f"{' and '.join(ignored)}: --dataset {dataset} does not read {'it' if len(ignored) == 1 else 'them'}; drop {' and '.join(ignored)}"
        )
    if record.reader == "folder":
        return read_image_files(data)
    if record.reader == "wsol":
        return read_localization_data(dataset, data, metadata, split)
    return read_discovery_data(dataset, data, split, no_hard, annotations, list_file, integer_coords=False)


def read_data(spec: DataSpec) -> list[Record]:
    """The records of a localize/discover/extract/visualize data spec (``read_map_data`` of its fields)."""
    if not isinstance(spec, DataSpec):
        raise SimpoolBenchError(
            f"read_data: expected a DataSpec, e.g. DataSpec('cub', data=...), got {type(spec).__module__}.{type(spec).__qualname__}"
        )
    if spec.data is None:
        raise SimpoolBenchError("--data is required (the image root of the dataset)")
    return read_map_data(
        spec.dataset,
        spec.data,
        metadata=spec.metadata,
        split=spec.split,
        no_hard=spec.no_hard,
        annotations=spec.annotations,
        list_file=spec.list_file,
    )


#: wsolevaluation's split folders, ``metadata/<DATASET>/<split>`` (ILSVRC's test is ImageNet val,
#: its val ImageNetV2): a metadata folder of one of these names is that split.
WSOL_SPLITS = ("train", "val", "test")


def split_of(spec: DataSpec, fallback: str) -> str:
    """The split a run records: the given one, else that of its wsolevaluation metadata folder
    (``metadata/CUB/val`` is split val), else the dataset's default (``fallback`` for unknown
    names). A given split that contradicts the metadata folder's is an error: the numbers would be
    recorded under another split than they are on."""
    named = Path(spec.metadata).name if spec.metadata is not None and Path(spec.metadata).name in WSOL_SPLITS else None
    if spec.split and named and spec.split != named:
        raise SimpoolBenchError(
            f"--split {spec.split}: --metadata {spec.metadata} is wsolevaluation's {named!r} split; "
            f"drop --split (or give --split {named}), or --data-label NAME for data of your own"
        )
    return spec.split or named or default_split(spec.dataset, fallback)
