"""Dataset manifests (``data_manifests/<name>.json``) and ``datasets verify``.

A manifest records what a correct copy of a dataset looks like, relative to the folder a user
passes (``PATH``):

- ``required``: files, and folders (ending in ``/``), that must exist;
- ``splits``: per split, the expected image count and how to count and find the images:
  ``layout`` ``"list"`` (a list file, one id per line; each ``files`` template with ``{id}`` must
  exist), ``"image_folder"`` (class folders under ``folder``; ``classes`` and ``images`` counts) or
  ``"cub_native"`` (``images.txt`` + ``train_test_split.txt``); ``optional`` splits are only
  checked when their list file exists;
- ``sha256``: checksums of list and metadata files, where known;
- ``data_sha256``: the published data as a run reads it (``records.records_sha256``), keyed by
  the ``dataset/split`` a run records, where the annotations are at hand to compute it (the
  wsolevaluation metadata); a run on other data says so (``published_data``).

Paths may start with ``{metadata}``: the wsolevaluation metadata folder of the split, by default
``PATH/<metadata_default>``, or the folder given to ``verify_dataset``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SimpoolBenchError
from ..files import sha256_file
from .inputs import UnpublishedDataWarning, join_inside, read_lines, walk_files


def _default_manifest_dir() -> Path:
    """The project's ``data_manifests/`` in a source checkout (editable install), else the copy that
    wheels carry as the resource package ``simpool_bench.data_manifests``."""
    checkout = Path(__file__).resolve().parents[2] / "data_manifests"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("simpool_bench.data_manifests")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return checkout


MANIFEST_DIR = _default_manifest_dir()
_LAYOUTS = ("list", "image_folder", "cub_native")
_IMG_EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _manifest_dir(directory: str | Path | None) -> Path:
    d = Path(directory) if directory is not None else MANIFEST_DIR
    if not d.is_dir():
        raise SimpoolBenchError(
            f"dataset manifests folder {d} not found (expected the project's data_manifests/ or the copy "
            "installed with the package; reinstall simpool-bench)"
        )
    return d


def list_manifests(directory: str | Path | None = None) -> list[str]:
    """Names of the known dataset manifests, sorted."""
    return sorted(p.stem for p in _manifest_dir(directory).glob("*.json"))


def load_manifest(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """The manifest of dataset ``name`` (see the module docstring for its fields)."""
    d = _manifest_dir(directory)
    path = d / f"{name}.json"
    if path.parent != d or not path.is_file():  # a NAME with a folder in it ("../tests/x") names no manifest of d
        raise SimpoolBenchError(f"unknown dataset {name!r}: expected one of {', '.join(list_manifests(d))}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SimpoolBenchError(f"dataset manifest {path}: invalid JSON ({exc})") from None
    for key in ("name", "splits"):
        if key not in manifest:
            raise SimpoolBenchError(f"dataset manifest {path}: missing key {key!r}")
    for split, spec in manifest["splits"].items():
        if spec.get("layout") not in _LAYOUTS or not isinstance(spec.get("images"), int):
            raise SimpoolBenchError(f"dataset manifest {path}: split {split!r} needs 'images' (int) and 'layout' in {_LAYOUTS}")
    return manifest


@dataclass(frozen=True)
class PublishedData:
    """The published data of one ``dataset/split``: its manifest's name, its image count and its
    ``records_sha256``."""

    manifest: str
    images: int
    data_sha256: str


def published_data(dataset: str, split: str, directory: str | Path | None = None) -> PublishedData | None:
    """The published data a run of ``dataset`` ``split`` is on when its ``data_sha256`` is this one
    (the manifests' ``data_sha256`` entries); None where no manifest knows it."""
    key = f"{dataset}/{split}"
    for name in list_manifests(directory):
        manifest = load_manifest(name, directory)
        digest = manifest.get("data_sha256", {}).get(key)
        if digest is not None:
            images = (
                next(iter(manifest["splits"].values()))["images"] if len(manifest["splits"]) == 1 else manifest["splits"][split]["images"]
            )
            return PublishedData(name, int(images), str(digest))
    return None


def published_as(data_sha256: str, directory: str | Path | None = None) -> tuple[str, str] | None:
    """The ``(dataset, split)`` whose published data have this ``data_sha256`` (any manifest); None if none."""
    for name in list_manifests(directory):
        for key, digest in load_manifest(name, directory).get("data_sha256", {}).items():
            if digest == data_sha256:
                dataset, split = key.split("/", 1)
                return dataset, split
    return None


def note_unpublished(
    dataset: str, split: str, data_sha256: str, n_images: int, data: Path | None = None, metadata: Path | None = None
) -> None:
    """One ``UnpublishedDataWarning`` when a run recorded as ``dataset/split`` (the table's names: a run labelled
    otherwise, as the demo's 'demo-cub', claims no published data) that has published data
    (``published_data``) read other data: its numbers are not the protocol's (another metadata
    folder than ``--split`` says, an edited box or label, images left out). Where the data read are
    another split's published data, it names that split; else the ``datasets verify`` command
    (with ``data`` and ``metadata``, the run's folders) that names what differs."""
    published = published_data(dataset, split)
    if published is None or published.data_sha256 == data_sha256:
        return
    head = (
        f"{dataset} {split}: the {n_images} images read are not the published data of manifest {published.manifest} "
        f"({published.images} images; data_sha256 {data_sha256[:12]}, published {published.data_sha256[:12]})"
    )
    other = published_as(data_sha256)
    if other is not None:
        said = f"they are those of {other[0]} {other[1]}: pass --split {other[1]}" + (
            f" --dataset {other[0]}" if other[0] != dataset else ""
        )
    else:
        where = "PATH" if data is None else str(data)
        if metadata is not None:
            verify = f"simpool-bench datasets verify {published.manifest} {where} --metadata {metadata}"
        else:  # the native CUB layout (or a caller that did not say): its own manifest
            verify = f"simpool-bench datasets verify {'cub_native' if dataset == 'cub' else published.manifest} {where}"
        said = f"these numbers are not on the protocol's data; `{verify}` names what differs"
    warnings.warn(
        f"{head}: {said}; --data-label NAME records other data under their own name", UnpublishedDataWarning, stacklevel=_callers_level()
    )


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside simpool_bench: a warning then names the line
    of the script (or the command) that started the run, not the package's own."""
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("simpool_bench"):
        frame, level = frame.f_back, level + 1
    return level


@dataclass
class VerifyReport:
    """Outcome of ``verify_dataset``: ``ok`` when no problem was found.

    Attributes:
        name: dataset name.
        path: the folder checked.
        problems: one human-readable line per problem (missing files, wrong counts, checksums).
        checked: one line per check that passed.
    """

    name: str
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    #: when none of the required files is at ``path`` but they all are one or two folders off: that folder
    meant: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = f"{self.name} at {self.path}: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        return "\n".join([head] + [f"  ok: {c}" for c in self.checked] + [f"  problem: {p}" for p in self.problems])


def verify_dataset(
    name: str, path: str | Path, metadata_dir: str | Path | None = None, directory: str | Path | None = None
) -> VerifyReport:
    """Check a user's copy of dataset ``name`` at ``path`` against its manifest.

    Args:
        name: manifest name (``list_manifests()``).
        path: the dataset folder (what the manifest's ``path`` field describes).
        metadata_dir: the wsolevaluation metadata folder for ``{metadata}`` paths (default
            ``path / manifest["metadata_default"]``).
        directory: manifests folder (default: the project's ``data_manifests/``).

    Returns:
        A ``VerifyReport``; nothing is raised for problems with the data, only for an unknown name.
    """
    manifest = load_manifest(name, directory)
    root = Path(path)
    report = VerifyReport(name, root)
    if not root.is_dir():
        report.problems.append(f"{root}: no such directory ({manifest.get('path', 'the dataset folder')})")
        return report
    meta = Path(metadata_dir) if metadata_dir is not None else root / manifest.get("metadata_default", "metadata")

    def resolve(rel: str) -> Path:
        return meta / rel[len("{metadata}/") :] if rel.startswith("{metadata}/") else root / rel

    for rel in manifest.get("required", []):
        p = resolve(rel)
        if rel.endswith("/"):
            (report.checked if p.is_dir() else report.problems).append(f"{'folder' if p.is_dir() else 'missing folder'} {p}")
        else:
            (report.checked if p.is_file() else report.problems).append(f"{'file' if p.is_file() else 'missing file'} {p}")
    own = [rel for rel in manifest.get("required", []) if not rel.startswith("{metadata}/")]
    if own and not any((root / rel).exists() for rel in own):  # the wrong folder level, not a copy that differs
        report.meant = next((q for q in _near_folders(root) if all((q / rel).exists() for rel in own)), None)
    for rel, expected in manifest.get("sha256", {}).items():
        p = resolve(rel)
        if not p.is_file():
            if rel not in manifest.get("required", []):
                report.problems.append(f"missing file {p} (checksum expected)")
            continue
        try:
            got = sha256_file(p)
        except OSError as err:  # permissions, I/O errors: a problem of this copy, the other checks still run
            report.problems.append(f"cannot read {p}: {err.strerror or err}")
            continue
        if got == expected:
            report.checked.append(f"sha256 of {p}")
        else:
            report.problems.append(f"checksum mismatch for {p}: sha256 {got}, expected {expected} (another version of the file?)")
    for split, spec in manifest["splits"].items():
        _verify_split(split, spec, resolve, report)
    return report


def _near_folders(root: Path, most: int = 20) -> list[Path]:
    """The folder above ``root``, then its sub-folders and theirs (at most ``most`` of each folder:
    a class folder of thousands is not a dataset root one level off)."""

    def subs(q: Path) -> list[Path]:
        try:
            return sorted(e for e in q.iterdir() if e.is_dir() and not e.name.startswith("."))[:most]
        except OSError:  # unreadable: nothing to suggest there
            return []

    first = subs(root)
    return [root.parent, *first, *(q for f in first for q in subs(f))]


def _verify_split(split: str, spec: dict[str, Any], resolve, report: VerifyReport) -> None:
    expected = spec["images"]
    layout = spec["layout"]
    if layout == "image_folder":
        folder = resolve(spec.get("folder", "."))
        if not folder.is_dir():
            report.problems.append(f"split {split}: missing folder {folder}")
            return
        try:
            classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
            seen = {os.path.realpath(folder / c) for c in classes}  # each folder counted once, as read_image_folder reads it
            roots = set(seen)
            n_img = sum(len(walk_files(folder / c, lambda f: f.lower().endswith(_IMG_EXT), seen, roots)[0]) for c in classes)
        except OSError as err:
            report.problems.append(f"split {split}: cannot read {err.filename or folder}: {err.strerror or err}")
            return
        if "classes" in spec and len(classes) != spec["classes"]:
            report.problems.append(f"split {split}: {len(classes)} class folders in {folder}, expected {spec['classes']}")
        _count(report, split, n_img, expected, f"images in {folder}")
        return

    if layout == "cub_native":
        ids = _cub_split_paths(resolve, spec, split, report)
        if ids is None:
            return
        _refused_ids(report, split, ids, resolve("images.txt"))
        paths = [resolve(spec.get("image_prefix", "images/") + p) for p in ids]
    else:
        list_file = resolve(spec["list"])
        if not list_file.is_file():
            if spec.get("optional"):
                report.checked.append(f"split {split}: list {list_file} absent (optional split, not checked)")
            else:
                report.problems.append(f"split {split}: missing list file {list_file}")
            return
        try:
            ids = [line.strip() for line in read_lines(list_file) if line.strip()]  # as the readers read it
        except SimpoolBenchError as err:
            report.problems.append(f"split {split}: {err}")
            return
        except OSError as err:
            report.problems.append(f"split {split}: cannot read {list_file}: {err.strerror or err}")
            return
        _refused_ids(report, split, ids, list_file)
        repeated = [i for i, n in Counter(ids).items() if n > 1]
        if repeated:  # the readers refuse the list: a repeat would stand in for a missing image here
            report.problems.append(
                f"split {split}: {len(repeated)} id{'s' * (len(repeated) > 1)} listed more than once in {list_file}, first {repeated[0]!r}"
            )
        paths = [resolve(t.replace("{id}", i)) for t in spec.get("files", []) for i in ids]
    _count(report, split, len(ids), expected, "images listed")
    try:
        missing = [p for p in paths if not p.is_file()]
    except OSError as err:  # an id too long for the file system (ENAMETOOLONG), a folder denied: a problem, not a traceback
        report.problems.append(f"split {split}: cannot check {err.filename or 'a listed file'}: {err.strerror or err}")
        return
    if missing:
        report.problems.append(f"split {split}: {len(missing)} of {len(paths)} listed files missing, first {missing[0]}")
    elif paths:
        report.checked.append(f"split {split}: all {len(paths)} listed files present")


def _count(report: VerifyReport, split: str, got: int, expected: int, what: str) -> None:
    if got == expected:
        report.checked.append(f"split {split}: {got} {what}")
    else:
        report.problems.append(f"split {split}: {got} {what}, expected {expected}")


def _cub_split_paths(resolve, spec: dict[str, Any], split: str, report: VerifyReport) -> list[str] | None:
    """Image paths of a CUB native split (``spec['is_train']`` = 1 or 0), read as ``read_cub_native``
    reads them, or None when unreadable (the reason is a problem of ``report``)."""
    from .wsol import cub_images_and_splits

    images_f, split_f = resolve("images.txt"), resolve("train_test_split.txt")
    if not (images_f.is_file() and split_f.is_file()):
        return None  # reported by "required"
    try:
        paths, flags = cub_images_and_splits(images_f.parent)
    except SimpoolBenchError as err:
        report.problems.append(f"split {split}: {err}")
        return None
    except OSError as err:
        report.problems.append(f"split {split}: cannot read {err.filename or images_f.parent}: {err.strerror or err}")
        return None
    unsplit = [n for n in paths if n not in flags]
    if unsplit:  # read_cub_native refuses such an image: it would be in neither split
        report.problems.append(f"split {split}: {len(unsplit)} image(s) of {images_f} not in {split_f}, first image {unsplit[0]}")
    return [p for n, p in paths.items() if flags.get(n) == spec["is_train"]]


def _refused_ids(report: VerifyReport, split: str, ids: list[str], where: Path) -> None:
    """A problem for the ids every reader refuses (``join_inside``): absolute, or leading out of the
    data folder with ``..``."""
    refused = []
    for i in ids:
        try:
            join_inside(Path("."), i, str(where))
        except SimpoolBenchError:
            refused.append(i)
    if refused:
        report.problems.append(
            f"split {split}: {len(refused)} id{'s' * (len(refused) > 1)} in {where} absolute or leading out of the data folder "
            f"(the readers refuse them), first {refused[0]!r}"
        )
