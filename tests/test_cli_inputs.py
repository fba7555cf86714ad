"""Damaged inputs through the CLI (issue 11, items 6, 8 and 10): each is one ``error:`` line and exit
2 with nothing written, or a run that goes on as the reference does with ONE counted warning.

Expected counts come from the files as written here (os.walk without links, the lines changed),
and the order of a linked ImageFolder tree from torchvision's own ImageFolder."""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import pandas as pd
import pytest
from PIL import Image

from simpool_bench.data.imagenet import read_image_folder
from simpool_bench.data.images import ImageTooLarge, load_rgb
from simpool_bench.data.inputs import DataWarning, walk_files
from simpool_bench.errors import SimpoolBenchError

from conftest import build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, invoke_cli, said

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_error(res, *needles: str, progress: bool = False) -> str:
    """Exit 2, one non-blank line starting ``error:``, no traceback, every needle in it. With
    ``progress``, the error came mid-run and the progress bar's own line may stand above it."""
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    if progress:
        lines = [ln for ln in lines if not re.search(r"\d+/\d+ images", ln)]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in said(res), (needle, res.output)
    return lines[0]


def _data_warnings(record) -> list[str]:
    out = [str(w.message) for w in record if issubclass(w.category, DataWarning)]
    assert all("\n" not in m for m in out)
    return out


def _value(out, metric: str) -> float:
    table = pd.read_csv(out / "results.csv")
    return float(table.loc[table.metric == metric, "value"].item())


def _no_temp_files(out) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth.tar")[0]


# ------------------------------------------------------------------------------ item 6: folders
def _image_size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _image(path, size=(40, 36), value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 2 * value % 256, 3 * value % 256)).save(path)


def test_symlink_loop_counts_each_image_once_with_one_warning(tmp_path, ckpt):
    root = tmp_path / "data" / "val"
    for c, n in (("ant", 3), ("bee", 3), ("cat", 2)):
        for i in range(n):
            _image(root / c / f"{i}.png", value=10 * i + len(c))
    os.symlink(root, root / "ant" / "loop")  # ImageFolder would go round this until ELOOP
    os.symlink(root / "bee", root / "cat" / "again")  # and read bee's images again as cat
    real = sum(len([f for f in files if f.endswith(".png")]) for _, _, files in os.walk(root))
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = invoke_cli("classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--device", "cpu", "--out", out)
    assert res.exit_code == 0, res.output
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and "2 folder symlink(s) not followed" in msgs[0]
    assert _value(out, "n_images") == real == 8
    _no_temp_files(out)


def test_linked_folders_keep_torchvision_imagefolder_order(tmp_path):
    """Without loops, links are followed and the order is ImageFolder's (sorted dirpaths: 'x-y' < 'x/z')."""
    from torchvision.datasets import ImageFolder

    root = tmp_path / "tree"
    for rel in ("a/x/1.png", "a/x/z/2.png", "a/x-y/3.png", "a/0.png", "b/q.png"):
        _image(root / rel)
    _image(tmp_path / "elsewhere" / "4.png")
    os.symlink(tmp_path / "elsewhere", root / "a" / "x" / "link")
    records, classes = read_image_folder(root)
    ref = ImageFolder(str(root))
    assert classes == ref.classes
    assert [(str(r.path), r.label) for r in records] == [(p, t) for p, t in ref.samples]
    files, skipped = walk_files(root / "a", lambda n: True)
    assert skipped == [] and len(files) == 5


def test_a_real_folder_listed_before_a_link_to_it_is_read_there(tmp_path):
    """'c/a' (a folder) and 'c/b' (a link to it): ImageFolder's order reaches c/a first, so its
    images are read there and the link is the one skipped and named (the walk claimed folders in
    reverse name order: it read c/b/x.png and named the real c/a as a symlink not followed)."""
    root = tmp_path / "tree"
    _image(root / "c" / "a" / "x.png")
    _image(root / "c" / "a" / "deep" / "y.png")
    os.symlink(root / "c" / "a", root / "c" / "b")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        records, _ = read_image_folder(root)
    assert [r.image_id for r in records] == ["c/a/x.png", "c/a/deep/y.png"]  # ImageFolder's order, less c/b
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and "1 folder symlink(s) not followed" in msgs[0] and f"(first: {root / 'c' / 'b'})" in msgs[0]
    files, skipped = walk_files(root / "c", lambda n: True)
    assert files == [root / "c" / "a" / "x.png", root / "c" / "a" / "deep" / "y.png"] and skipped == [root / "c" / "b"]


def test_a_link_listed_before_the_real_folder_is_the_one_skipped(tmp_path):
    """'c/a' (a link) and 'c/b' (the real folder): the link's name comes first in ImageFolder's order,
    yet the real folder is read where it lies and the link is skipped and named (the walk read
    c/a/x.png and named the real c/b as a symlink not followed)."""
    root = tmp_path / "tree"
    _image(root / "c" / "b" / "x.png")
    _image(root / "c" / "b" / "deep" / "y.png")
    os.symlink(root / "c" / "b", root / "c" / "a")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        records, _ = read_image_folder(root)
    assert [r.image_id for r in records] == ["c/b/x.png", "c/b/deep/y.png"]
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and "1 folder symlink(s) not followed" in msgs[0] and f"(first: {root / 'c' / 'a'})" in msgs[0]
    files, skipped = walk_files(root / "c", lambda n: True)
    assert files == [root / "c" / "b" / "x.png", root / "c" / "b" / "deep" / "y.png"] and skipped == [root / "c" / "a"]


def test_a_link_into_a_later_class_leaves_its_images_to_that_class(tmp_path):
    """ant/link -> bee/sub: bee/sub's images keep bee's label (where they lie), read once; only the
    link is skipped. ant keeps its own image. (They were labelled ant, and bee/sub reported as a link.)"""
    root = tmp_path / "tree"
    _image(root / "ant" / "0.png")
    _image(root / "bee" / "1.png")
    _image(root / "bee" / "sub" / "2.png")
    os.symlink(root / "bee" / "sub", root / "ant" / "link")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        records, classes = read_image_folder(root)
    assert classes == ["ant", "bee"]
    assert [(r.image_id, r.label) for r in records] == [("ant/0.png", 0), ("bee/1.png", 1), ("bee/sub/2.png", 1)]
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and f"(first: {root / 'ant' / 'link'})" in msgs[0]


def test_a_class_of_only_a_link_into_another_class_is_empty_and_says_why(tmp_path):
    """ant/ holds only a link to bee/sub, whose images are bee's: ant is an empty class, and the
    error names the link that was not followed (not only 'has no image files')."""
    root = tmp_path / "tree"
    _image(root / "bee" / "sub" / "2.png")
    (root / "ant").mkdir()
    os.symlink(root / "bee" / "sub", root / "ant" / "link")
    with warnings.catch_warnings(record=True), pytest.raises(SimpoolBenchError) as err:
        warnings.simplefilter("always")
        read_image_folder(root)
    assert str(err.value).startswith(f"image folder {root}: class folder 'ant' has no image files (1 such folder(s); ")
    assert str(err.value).endswith(f"; its folder symlink {root / 'ant' / 'link'} leads to a folder read elsewhere")


def test_missing_split_is_an_error_not_classes(tmp_path, ckpt):
    for c in ("ant", "bee"):
        _image(tmp_path / "data" / "val" / c / "0.png")
    out = tmp_path / "out"
    res = invoke_cli("classify", "--data", tmp_path / "data", "--split", "vall", "--checkpoint", ckpt, "--device", "cpu", "--out", out)
    _one_error(res, "--split 'vall'", str(tmp_path / "data" / "vall"), "val")
    assert not out.exists()


def test_split_folder_check_closes_its_folder_listings(tmp_path):
    """The check for split folders read as classes stops at the first sub-folder it finds; the
    listing it stops in is closed, not left to the garbage collector (a ResourceWarning)."""
    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.readers import refuse_split_folders_as_classes

    for split in ("test", "train"):
        for c in ("ant", "bee", "cat"):
            _image(tmp_path / "data" / split / c / "0.png")
    (tmp_path / "classes" / "ant").mkdir(parents=True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(SimpoolBenchError, match="are splits, not classes"):
            refuse_split_folders_as_classes(tmp_path / "data")
        refuse_split_folders_as_classes(tmp_path / "classes")
    assert [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)] == []


def test_data_root_holding_split_folders_is_an_error_not_classes(tmp_path, ckpt):
    """--data one level too high (its folders train/ and test/, no val/ for the default split):
    the splits would be scored as two classes; one error naming them and the --split to pass.
    The k-NN bank given at that level says which folder to pass instead."""
    for split in ("test", "train"):
        for c in ("ant", "bee"):
            _image(tmp_path / "data" / split / c / "0.png")
    out = tmp_path / "out"
    res = invoke_cli("classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--device", "cpu", "--out", out)
    _one_error(res, f"--data {tmp_path / 'data'}", "(test, train) are splits, not classes", "--split test")
    assert not out.exists()
    res = invoke_cli(
        "classify", "--data", tmp_path / "data", "--split", "test", "--knn-train", tmp_path / "data",
        "--checkpoint", ckpt, "--device", "cpu", "--out", out,
    )  # fmt: skip
    _one_error(res, f"--knn-train {tmp_path / 'data'}", f"pass --knn-train {tmp_path / 'data' / 'train'}")
    res = invoke_cli("classify", "--data", tmp_path / "data", "--split", "test", "--checkpoint", ckpt, "--device", "cpu", "--out", out)
    assert res.exit_code == 0, res.output
    assert _value(out, "n_images") == 2


def test_classes_named_like_splits_without_sub_folders_are_read(tmp_path, ckpt):
    """Class folders that only happen to be named 'train' and 'test' (images directly inside) are classes."""
    for c in ("test", "train"):
        _image(tmp_path / "data" / c / "0.png")
    out = tmp_path / "out"
    res = invoke_cli("classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--device", "cpu", "--out", out)
    assert res.exit_code == 0, res.output
    assert _value(out, "n_images") == 2


# ------------------------------------------------------------------------------ item 6: metadata
@pytest.fixture()
def wsol(tmp_path):
    return build_wsol_dataset(tmp_path / "cub", n=8)


def _localize(wsol, out, *extra):
    return invoke_cli(
        "localize",
        "--dataset",
        "cub",
        "--data",
        wsol.image_root,
        "--metadata",
        wsol.metadata,
        "--baseline",
        "center-gaussian",
        "--device",
        "cpu",
        "--out",
        out,
        *extra,
    )


def _edit(path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


@pytest.mark.parametrize("bad", ["../../x.jpg", "ant/../../x.jpg", "/etc/hostname"])
def test_metadata_id_outside_the_data_root(wsol, tmp_path, bad):
    _edit(wsol.metadata / "image_ids.txt", lambda ls: ls[:1] + [bad] + ls[1:])
    out = tmp_path / "out"
    _one_error(_localize(wsol, out), "image_ids.txt:2", repr(bad))
    assert not out.exists()


def test_image_sizes_differing_from_files_warn_once_counted(wsol, tmp_path):
    sizes = wsol.metadata / "image_sizes.txt"
    _edit(
        sizes,
        lambda ls: [f"{ln.split(',')[0]},{int(ln.split(',')[1]) + 3},{ln.split(',')[2]}" if i in (2, 5) else ln for i, ln in enumerate(ls)],
    )
    differ = 0
    for line in sizes.read_text().splitlines():
        image_id, w, h = line.split(",")
        with Image.open(wsol.image_root / image_id) as im:
            differ += im.size != (int(w), int(h))
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = _localize(wsol, out)
    assert res.exit_code == 0, res.output
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and f"{differ} of 8 image sizes differ" in msgs[0] and differ == 2
    assert _value(out, "n_images") == 8
    _no_temp_files(out)


def test_class_labels_conflicting_is_an_error_repeated_is_counted(wsol, tmp_path):
    labels = wsol.metadata / "class_labels.txt"
    first = labels.read_text().splitlines()[0]
    image_id, label = first.split(",")
    original = labels.read_text()
    labels.write_text(original + f"{image_id},{int(label) + 1}\n")
    out = tmp_path / "out"
    _one_error(_localize(wsol, out), "class_labels.txt:9", "line 1")
    assert not out.exists()
    labels.write_text(original + first + "\n" + first + "\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = _localize(wsol, out)
    assert res.exit_code == 0, res.output
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and "2 repeated line(s)" in msgs[0] and "class_labels.txt" in msgs[0]


@pytest.mark.parametrize("name", ["class_labels.txt", "localization.txt", "image_ids.txt"])
def test_metadata_id_with_a_space_around_it_is_named_at_its_line(wsol, tmp_path, name):
    """'id ,0' (a hand edit) made another id: the error said image_ids.txt's id had no class label
    (or its image was not found), not where the space is."""
    f = wsol.metadata / name
    _edit(f, lambda ls: [ls[0]] + [ls[1].replace(",", " ,", 1) if "," in ls[1] else ls[1] + " "] + ls[2:])
    image_id = f.read_text().splitlines()[1].split(",")[0]
    out = tmp_path / "out"
    line = _one_error(_localize(wsol, out))
    assert line == f"error: {f}:2: image id {image_id!r} has spaces around it; expected {image_id.strip()!r}"
    assert not out.exists()


def test_byte_order_mark_is_dropped(wsol, tmp_path):
    plain = tmp_path / "plain"
    assert _localize(wsol, plain).exit_code == 0
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        f = wsol.metadata / name
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    bom = tmp_path / "bom"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = _localize(wsol, bom)
    assert res.exit_code == 0, res.output and not _data_warnings(rec)
    a, b = pd.read_csv(plain / "results.csv"), pd.read_csv(bom / "results.csv")
    pd.testing.assert_series_equal(a["value"], b["value"])
    assert _value(bom, "n_images") == 8


def _cub(root, n=6):
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(1, n + 1):
        rel = f"001.Bird/{i}.jpg"
        _image(root / "images" / rel, size=(50, 40), value=i)
        rows.append((i, rel))
    (root / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{i} 1\n" for i, _ in rows))
    (root / "train_test_split.txt").write_text("".join(f"{i} 0\n" for i, _ in rows))
    (root / "bounding_boxes.txt").write_text("".join(f"{i} 5.0 6.0 20.0 15.0\n" for i, _ in rows))
    return root


def test_cub_bounding_boxes_repeated_counted_conflicting_error(tmp_path):
    root = _cub(tmp_path / "CUB_200_2011")
    boxes = root / "bounding_boxes.txt"
    original = boxes.read_text()
    args = ("localize", "--dataset", "cub", "--data", root, "--baseline", "full-box", "--device", "cpu")
    boxes.write_text(original + "3 5.0 6.0 20.0 15.0\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = invoke_cli(*args, "--out", tmp_path / "ok")
    assert res.exit_code == 0, res.output
    msgs = _data_warnings(rec)
    assert len(msgs) == 1 and "1 repeated line(s)" in msgs[0] and "line 7 repeats line 3" in msgs[0]
    assert _value(tmp_path / "ok", "n_images") == 6
    boxes.write_text(original + "3 5.0 6.0 21.0 15.0\n")
    _one_error(invoke_cli(*args, "--out", tmp_path / "bad"), "bounding_boxes.txt:7", "line 3")
    assert not (tmp_path / "bad").exists()


def test_cub_no_image_in_split_and_box_outside_named(tmp_path):
    """train_test_split.txt marking every image train: the file and the split named, not 'the cub
    dataset is empty'; a box outside its image: plain numbers and bounding_boxes.txt:line."""
    root = _cub(tmp_path / "CUB_200_2011")
    args = ("localize", "--dataset", "cub", "--data", root, "--baseline", "full-box", "--device", "cpu", "--out", tmp_path / "bad")
    split = root / "train_test_split.txt"
    split.write_text(split.read_text().replace(" 0", " 1"))
    _one_error(invoke_cli(*args), str(split), "split 'test'", "none of the 6 images")
    split.write_text(split.read_text().replace(" 1", " 0"))
    boxes = root / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace("4 5.0 6.0 20.0 15.0", "4 5.0 6.0 50.0 15.0"))
    line = _one_error(invoke_cli(*args), f"{boxes}:4 (image 4, 001.Bird/4.jpg)", "(5, 6, 55, 21) is outside its 50x40 image")
    assert "np.float64" not in line
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------ item 8: inputs
def _coco(tmp_path, bbox):
    image_dir = tmp_path / "train2014"
    images, anns = [], []
    for k, i in enumerate((11, 22, 33)):
        name = f"COCO_train2014_{i:012d}.jpg"
        _image(image_dir / name, size=(64, 48), value=k)
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        anns.append(
            {"id": 100 + k, "image_id": i, "bbox": bbox if k == 1 else [2, 3, 30.5, 20], "iscrowd": 0, "category_id": 1, "area": 1.0}
        )
    ann_file = tmp_path / "instances_train2014.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    list_file = tmp_path / "coco_20k_filenames.txt"
    list_file.write_text("".join(f"train2014/{im['file_name']}\n" for im in images))
    return image_dir, ann_file, list_file


def _discover_coco(image_dir, ann_file, list_file, out):
    return invoke_cli(
        "discover",
        "--dataset",
        "coco20k",
        "--data",
        image_dir,
        "--annotations",
        ann_file,
        "--list",
        list_file,
        "--method",
        "center",
        "--out",
        out,
    )


@pytest.mark.parametrize("bbox", ["12 3 4 5", None, [1, 2], [1.0, 2.0, math.nan, 4.0], [1, 2, 3, math.inf]])
def test_coco_bbox_not_four_numbers(tmp_path, bbox):
    image_dir, ann_file, list_file = _coco(tmp_path, bbox)
    out = tmp_path / "out"
    res = _discover_coco(image_dir, ann_file, list_file, out)
    _one_error(res, "annotation id 101", "image 22", str(ann_file))
    assert not out.exists()


def test_coco_image_info_json_without_annotations(tmp_path):
    """COCO's image_info_*.json has the images but no 'annotations': an error, not CorLoc 0.00."""
    image_dir, ann_file, list_file = _coco(tmp_path, [1, 2, 3, 4])
    info = tmp_path / "coco" / "image_info.json"
    info.parent.mkdir()
    info.write_text(json.dumps({k: v for k, v in json.loads(ann_file.read_text()).items() if k != "annotations"}))
    out = tmp_path / "out"
    _one_error(_discover_coco(image_dir, info, list_file, out), f"{info} has no 'annotations' list", "instances_train2014.json")
    assert not out.exists()


@pytest.mark.parametrize("width, said", [("64px", "has 'width' '64px'"), (None, "has no 'width'")])
def test_coco_image_width_not_an_integer(tmp_path, width, said):
    image_dir, ann_file, list_file = _coco(tmp_path, [1, 2, 3, 4])
    data = json.loads(ann_file.read_text())
    data["images"][1].pop("width")
    if width is not None:
        data["images"][1]["width"] = width
    ann_file.write_text(json.dumps(data))
    out = tmp_path / "out"
    _one_error(_discover_coco(image_dir, ann_file, list_file, out), str(ann_file), f"image id 22 {said}", "positive integer")
    assert not out.exists()


def test_coco_list_and_annotations_swapped(tmp_path):
    image_dir, ann_file, list_file = _coco(tmp_path, [1, 2, 3, 4])
    out = tmp_path / "out"
    line = _one_error(_discover_coco(image_dir, list_file, ann_file, out), f"{ann_file}:1:", "…' is not a COCO file name")
    assert len(line) < 300 + len(str(ann_file)), line
    assert not out.exists()


def test_coco20k_flag_missing_or_a_folder_is_named(tmp_path):
    """One of --annotations/--list left out: the one missing named; a folder given for the json: said so."""
    image_dir, ann_file, list_file = _coco(tmp_path, [1, 2, 3, 4])
    base = ["discover", "--dataset", "coco20k", "--data", image_dir, "--method", "center", "--out", tmp_path / "out"]
    line = _one_error(invoke_cli(*base, "--annotations", ann_file), "coco20k needs --list coco_20k_filenames.txt (missing)")
    assert "--annotations" not in line
    line = _one_error(invoke_cli(*base, "--list", list_file), "coco20k needs --annotations instances_train2014.json (missing)")
    assert "--list" not in line
    _one_error(invoke_cli(*base, "--annotations", tmp_path, "--list", list_file), f"COCO annotation file {tmp_path}: a directory")
    _one_error(invoke_cli(*base, "--annotations", ann_file, "--list", list_file, "--no-hard"), "--no-hard", "COCO20k has none")
    assert not (tmp_path / "out").exists()


def test_coco20k_files_left_out_are_named_where_the_coco_layouts_keep_them(tmp_path):
    """``--annotations``/``--list`` left out while the files lie where COCO and LOST keep them
    (COCO/annotations/instances_train2014.json beside COCO/images/train2014/, the 20k list further
    up): the error names the files found, as the flags to pass."""
    coco = tmp_path / "datasets" / "COCO"
    image_dir, ann_file, list_file = _coco(coco / "images", [1, 2, 3, 4])
    assert image_dir == coco / "images" / "train2014"
    (coco / "annotations").mkdir()
    ann_file = ann_file.rename(coco / "annotations" / "instances_train2014.json")
    list_file = list_file.rename(tmp_path / "datasets" / "coco_20k_filenames.txt")
    base = ["discover", "--dataset", "coco20k", "--data", image_dir, "--method", "center", "--out", tmp_path / "out"]
    line = _one_error(invoke_cli(*base))
    assert line == (
        "error: coco20k needs --annotations instances_train2014.json and --list coco_20k_filenames.txt (missing); "
        f"found beside --data: pass --annotations {ann_file} --list {list_file}"
    ), line
    line = _one_error(invoke_cli(*base, "--annotations", ann_file))
    assert line == f"error: coco20k needs --list coco_20k_filenames.txt (missing); found beside --data: pass --list {list_file}", line
    list_file.unlink()
    line = _one_error(invoke_cli(*base, "--annotations", ann_file))
    assert line == "error: coco20k needs --list coco_20k_filenames.txt (missing)", line
    assert not (tmp_path / "out").exists()


def test_voc_flags_that_it_would_ignore_and_the_other_years_folder_are_errors(tmp_path):
    """VOC with COCO20k's --annotations/--list (silently ignored before), and VOC2007's folder given
    as voc12 (recorded as voc12 before): one error each saying what to pass."""
    voc = build_voc_dataset(tmp_path / "VOCdevkit" / "VOC2007", n=3)
    out = tmp_path / "out"
    base = ["discover", "--data", voc, "--method", "center", "--out", out]
    _one_error(invoke_cli(*base, "--dataset", "voc07", "--list", tmp_path / "x.txt"), "--list: COCO20k's files", "drop --list")
    _one_error(
        invoke_cli(*base, "--dataset", "voc07", "--annotations", tmp_path / "a.json", "--list", tmp_path / "x.txt"),
        "--annotations and --list: COCO20k's files",
    )
    line = _one_error(invoke_cli(*base, "--dataset", "voc12"), f"--data {voc} is VOC2007 but --dataset is voc12: pass --dataset voc07")
    assert "VOC2012" not in line  # no VOC2012 folder beside it to suggest
    (voc.parent / "VOC2012").mkdir()
    _one_error(invoke_cli(*base, "--dataset", "voc12"), f"pass --dataset voc07, or --data {voc.parent / 'VOC2012'}")
    assert not out.exists()
    assert invoke_cli(*base, "--dataset", "voc07").exit_code == 0  # the matching year runs
    missing = tmp_path / "nowhere" / "VOC2012"  # not there: said so, not "pass --dataset voc12"
    _one_error(invoke_cli("discover", "--data", missing, "--method", "center", "--out", out), f"VOC folder {missing}: no such directory")


def test_a_recorded_name_with_spaces_around_it_is_refused_before_the_run(tmp_path, ckpt):
    """--data-label ' mine ' (or classify's free --dataset) would be written to the table, which then
    refuses it as a hand edit: refused at once, naming the flag, nothing written."""
    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    out = tmp_path / "out"
    base = ["discover", "--dataset", "voc07", "--data", voc, "--method", "center", "--out", out]
    _one_error(invoke_cli(*base, "--data-label", " mine "), "--data-label ' mine ': expected a name without spaces", "('mine'?)")
    _one_error(invoke_cli(*base, "--data-label", "two\nlines"), "--data-label 'two\\nlines'")
    _one_error(invoke_cli(*base, "--split", "trainval "), "--split 'trainval ': expected a name without spaces")
    assert not out.exists()
    for c in ("ant", "bee"):
        _image(tmp_path / "data" / c / "0.png")
    res = invoke_cli("classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--dataset", "imagenet ", "--out", out)
    _one_error(res, "--dataset 'imagenet ': expected a name without spaces")
    assert not out.exists()
    assert invoke_cli(*base, "--data-label", "mine").exit_code == 0


def test_voc_fractional_box_coordinate_named_while_reading(tmp_path):
    """'<xmin>24.5</xmin>', which LOST's int() cannot read: an error naming the XML, the tag and the
    value before the run, not 'gt_boxes[0]: LOST's CorLoc takes integer pixel boxes' after it."""
    voc = build_voc_dataset(tmp_path / "vocf", n=3)
    xml = voc / "Annotations" / "2007000001.xml"
    xml.write_text(re.sub(r"<xmin>\d+</xmin>", "<xmin>24.5</xmin>", xml.read_text(), count=1))
    out = tmp_path / "out"
    res = invoke_cli("discover", "--dataset", "voc07", "--data", voc, "--method", "center", "--out", out)
    _one_error(res, f"{xml}: <xmin> is '24.5'; LOST reads integer pixel coordinates")
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--crop", "0"), ("--resize", "-5"), ("--batch-size", "0"), ("--max-pixels", "0")])
def test_bad_numbers_one_line(tmp_path, ckpt, flag, value):
    _image(tmp_path / "data" / "val" / "ant" / "0.png")
    out = tmp_path / "out"
    res = invoke_cli("classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--device", "cpu", "--out", out, flag, value)
    _one_error(res, flag, "classify")
    assert not out.exists()


def test_help_still_works():
    res = invoke_cli("classify", "--help")
    assert res.exit_code == 0 and "--max-pixels" in said(res)


# ------------------------------------------------------------------------------ item 10: huge
def _huge_png(path, side=10000) -> None:
    """A 10000 x 10000 1-bit image: a few kB on disk, 100 megapixels in its header."""
    Image.new("1", (side, side), 0).save(path, format="PNG")


def test_huge_image_is_refused_from_its_header(tmp_path, monkeypatch):
    path = tmp_path / "huge.jpg"
    _huge_png(path)
    assert path.stat().st_size < 100_000

    def no_decoding(*_a, **_k):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(Image.Image, "convert", no_decoding)
    with pytest.raises(ImageTooLarge, match=r"10000x10000 \(100,000,000 pixels\), over the limit of 89,478,485"):
        load_rgb(path, 89_478_485)


def test_huge_image_in_voc_skipped_and_counted_or_strict_error(tmp_path, ckpt):
    voc = build_voc_dataset(tmp_path / "VOC2007", n=5)
    ids = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    _huge_png(voc / "JPEGImages" / f"{ids[1]}.jpg")
    xml = voc / "Annotations" / f"{ids[1]}.xml"  # the annotation says so too: no huge placeholder either
    text = xml.read_text()
    xml.write_text(text[: text.index("<width>")] + "<width>10000</width><height>10000</height>" + text[text.index("<depth>") :])
    # -j 0: decode here, so that the warning is raised in this process (workers print theirs)
    args = ("discover", "--dataset", "voc07", "--data", voc, "--checkpoint", ckpt, "--device", "cpu", "-j", "0")
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = invoke_cli(*args, "--out", out)
    assert res.exit_code == 0, res.output
    too_large = [str(w.message) for w in rec if "--max-pixels" in str(w.message)]
    assert len(too_large) == 1 and f"{ids[1]}.jpg is 10000x10000" in too_large[0]
    assert (_value(out, "n_images"), _value(out, "n_failed")) == (4, 1)
    _no_temp_files(out)

    res = invoke_cli(*args, "--strict", "--out", tmp_path / "strict")
    _one_error(res, f"{ids[1]}.jpg is 10000x10000", "--max-pixels", "--strict", progress=True)
    assert not (tmp_path / "strict" / "results.csv").exists()

    # a low limit: every image over it is skipped (sizes read independently from the files)
    limit = 2500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        over = sum(1 for i in ids if math.prod(_image_size(voc / "JPEGImages" / f"{i}.jpg")) > limit)
    low = tmp_path / "low"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = invoke_cli(*args, "--max-pixels", limit, "--out", low)
    assert res.exit_code == 0, res.output
    assert 1 < over < len(ids) and _value(low, "n_failed") == over


def test_a_run_with_every_image_over_max_pixels_is_one_error_not_a_table_of_nan(tmp_path, ckpt):
    """No image decoded: classify once gave an IndexError traceback (per_image's top-5 column came
    back 1-D), then a table of NaN with exit 0, as discover did; localize failed on "BoxAccumulator.compute:
    no image was accumulated", naming neither the cause nor the flag. Each is now one error saying
    that none of the N images could be evaluated and why, and writes nothing."""
    root = tmp_path / "data" / "val"
    sizes = {"ant": [(40, 36), (41, 36)], "bee": [(40, 37)], "cat": [(42, 36), (40, 38)]}
    for c, shapes in sizes.items():
        for i, size in enumerate(shapes):
            _image(root / c / f"{i}.png", size=size)
    n = sum(len(v) for v in sizes.values())
    assert min(w * h for v in sizes.values() for w, h in v) > 1000
    out = tmp_path / "out"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = invoke_cli(
            "classify", "--data", tmp_path / "data", "--checkpoint", ckpt, "--device", "cpu", "-j", "0", "--max-pixels", 1000, "--out", out
        )
    said_ = (
        f"error: none of the {n} images could be evaluated: every one failed to decode or was over --max-pixels 1,000 "
        "(warnings name up to 10 of them); nothing to score"
    )
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == said_, res.output
    assert not (out / "results.csv").exists()
    wsol = build_wsol_dataset(tmp_path / "wsol", n=4)
    voc = build_voc_dataset(tmp_path / "voc" / "VOC2007", n=3)
    for command, data in (
        ("localize", ("--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata)),
        ("discover", ("--data", voc, "--method", "lost")),
    ):
        out = tmp_path / command
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            res = invoke_cli(command, *data, "--checkpoint", ckpt, "--device", "cpu", "-j", "0", "--max-pixels", 10, "--out", out)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and lines[-1].startswith("error: none of the ") and "--max-pixels 10 " in lines[-1], res.output
        assert "Traceback" not in res.output and not (out / "results.csv").exists()
    store, out = tmp_path / "maps", tmp_path / "from_maps"
    wsol_flags = ("--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = invoke_cli("extract", *wsol_flags, "--checkpoint", ckpt, "--device", "cpu", "-j", "0", "--max-pixels", 10, "--out", store)
    assert res.exit_code == 0, res.output  # a store of 4 failed images
    res = invoke_cli("localize", *wsol_flags, "--maps", store, "--out", out)
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == (
        "error: none of the 4 images could be evaluated: every one failed to decode when extract stored the maps "
        "(its warnings named up to 10 of them); nothing to score"
    ), res.output
    assert not (out / "results.csv").exists()


def test_the_failure_count_line_points_to_the_per_image_table_where_a_command_writes_one(tmp_path, ckpt):
    """12 of 14 images do not decode: localize names 10, then counts the other 2 in one line that
    points to its per-image table (which marks all 12); extract, which writes no such table (its
    store keeps them), and a run in which every image fails (an error, no table) end that line
    after "only the first 10 are named"."""
    wsol = build_wsol_dataset(tmp_path / "wsol", n=14)
    ids = (wsol.metadata / "image_ids.txt").read_text().split()
    for image_id in ids[2:]:
        (wsol.image_root / image_id).write_bytes(b"not a JPEG")
    flags = ("--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata, "--checkpoint", ckpt, "--device", "cpu", "-j", "0")
    counted = "2 more images failed to decode or were refused, 12 in all: counted as failed and skipped (only the first 10 are named"

    def count_line(*args) -> str:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            res = invoke_cli(*args)
        lines = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
        assert len(lines) == 11 and all("counted as failed and skipped" in ln for ln in lines), (res.output, lines)
        return lines[10]

    out = tmp_path / "localize"
    assert count_line("localize", *flags, "--out", out) == counted + (
        "; the per-image table (per_image.parquet under --out) marks every one in its `failed` column)"
    )
    per_image = pd.read_parquet(out / "per_image.parquet")
    assert sorted(per_image.loc[per_image["failed"], "id"]) == sorted(ids[2:])
    assert count_line("extract", *flags, "--out", tmp_path / "maps") == counted + ")"
    for image_id in ids[:2]:
        (wsol.image_root / image_id).write_bytes(b"not a JPEG either")
    counted = "4 more images failed to decode or were refused, 14 in all: counted as failed and skipped (only the first 10 are named"
    assert count_line("localize", *flags, "--out", tmp_path / "none") == counted + ")"


# ------------------------------------------------------------------------------ the other readers
def test_other_readers_refuse_ids_outside_and_drop_the_bom(tmp_path):
    from simpool_bench.data.imagenet import read_flat_folder
    from simpool_bench.data.voc import read_voc

    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    split = voc / "ImageSets" / "Main" / "trainval.txt"
    ids = split.read_text().split()
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())
    assert [r.image_id for r in read_voc(voc)] == ids  # no '\ufeff' on the first id
    split.write_text("\n".join(ids + ["../../etc/x"]) + "\n")
    with pytest.raises(SimpoolBenchError, match=r"trainval\.txt:4: image id '\.\./\.\./etc/x' points outside"):
        read_voc(voc)

    flat = tmp_path / "flat"
    _image(flat / "a.png")
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeffa.png 0\n".encode())
    assert [r.image_id for r in read_flat_folder(flat, labels)[0]] == ["a.png"]
    labels.write_text("a.png 0\n../flat/a.png 1\n")
    with pytest.raises(SimpoolBenchError, match=r"labels\.txt:2: image id '\.\./flat/a\.png' points outside"):
        read_flat_folder(flat, labels)


@pytest.mark.parametrize("rel", ["..", "a/../..", "../x.jpg", "a/../../x.jpg"])
def test_join_inside_refuses_what_normalises_out_of_the_root(tmp_path, rel):
    from simpool_bench.data.inputs import join_inside
    from simpool_bench.errors import SimpoolBenchError

    with pytest.raises(SimpoolBenchError) as exc:
        join_inside(tmp_path, rel, "list.txt:3")
    assert str(exc.value) == f"list.txt:3: image id {rel!r} points outside the data root {tmp_path}"


@pytest.mark.parametrize("rel", ["..x.jpg", "a/..b/c.jpg", "a/..", "./b.jpg"])
def test_join_inside_keeps_names_that_only_start_with_dots(tmp_path, rel):
    from simpool_bench.data.inputs import join_inside

    assert join_inside(tmp_path, rel, "list.txt:3") == tmp_path / rel


def test_data_one_folder_level_off_says_which_folder_was_meant(tmp_path):
    """The usual wrong --data levels: VOCdevkit (or its parent) for VOCdevkit/VOC2007, CUB_200_2011
    with wsolevaluation metadata (its images/ was meant), CUB_200_2011's parent in the native
    layout: the error names the folder to pass."""
    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.readers import read_discovery_data, read_localization_data

    voc = build_voc_dataset(tmp_path / "voc" / "VOCdevkit" / "VOC2007", n=3)
    for wrong in (tmp_path / "voc" / "VOCdevkit", tmp_path / "voc"):
        with pytest.raises(SimpoolBenchError) as e:
            read_discovery_data("voc07", wrong)
        assert str(e.value).endswith(f"; did you mean --data {voc}?"), str(e.value)
    cub = _cub(tmp_path / "cub" / "CUB_200_2011")
    with pytest.raises(SimpoolBenchError) as e:
        read_localization_data("cub", tmp_path / "cub")
    assert str(e.value).endswith(f"not found either; did you mean --data {cub}?"), str(e.value)
    assert len(read_localization_data("cub", cub)) == 6
    wsol = build_wsol_dataset(tmp_path / "wsol", n=4)
    top = tmp_path / "wsol"  # holds images/ (the image root) and metadata/
    with pytest.raises(SimpoolBenchError) as e:
        read_localization_data("cub", top, wsol.metadata)
    assert str(e.value).endswith(f"(4 of 4 images missing); did you mean --data {wsol.image_root}?"), str(e.value)
    res = invoke_cli(
        "localize", "--dataset", "cub", "--data", top, "--metadata", wsol.metadata, "--baseline", "full-box",
        "--device", "cpu", "--workers", "0", "--out", tmp_path / "out",
    )  # fmt: skip
    _one_error(res, f"did you mean --data {wsol.image_root}?")
    (wsol.image_root / "ant").rename(wsol.image_root / "moved")  # some images really missing: no guess
    with pytest.raises(SimpoolBenchError) as e:
        read_localization_data("cub", top, wsol.metadata)
    assert "did you mean" not in str(e.value)


def test_localize_data_missing_a_file_or_a_child_folder_is_named(tmp_path):
    """localize --data that does not exist, is a file, or is CUB_200_2011/images in the native layout
    (no --metadata): the error names --data and what was expected, not '--metadata is required'."""
    cub = _cub(tmp_path / "CUB_200_2011")
    base = ("--baseline", "full-box", "--device", "cpu", "--workers", "0")
    for data, needle in (
        (cub / "nope", f"--data {cub / 'nope'}: no such directory"),
        (cub / "images.txt", f"--data {cub / 'images.txt'}: a file, expected a folder"),
        (cub / "images", f"did you mean --data {cub}?"),
    ):
        out = tmp_path / "out"
        _one_error(invoke_cli("localize", "--dataset", "cub", "--data", data, *base, "--out", out), needle)
        assert not out.exists()
    wsol = build_wsol_dataset(tmp_path / "wsol", n=3)
    res = invoke_cli("localize", "--data", tmp_path / "nope", "--metadata", wsol.metadata, *base, "--out", tmp_path / "out")
    _one_error(res, f"--data {tmp_path / 'nope'}: no such directory")


def test_localize_imagenet_without_metadata_does_not_call_images_txt_missing(tmp_path):
    """localize --dataset imagenet without --metadata on a CUB_200_2011 folder said its images.txt
    '(CUB native layout) not found either', though it is there: only CUB has a native layout."""
    cub = _cub(tmp_path / "CUB_200_2011")
    base = ("--baseline", "full-box", "--device", "cpu", "--workers", "0", "--out", tmp_path / "out")
    need = "error: --metadata is required for imagenet (wsolevaluation metadata folder, e.g. metadata/IMAGENET/test)"
    line = _one_error(invoke_cli("localize", "--dataset", "imagenet", "--data", cub, *base))
    assert line == f"{need}; --data holds CUB-200-2011's native files: pass --dataset cub"
    assert _one_error(invoke_cli("localize", "--dataset", "imagenet", "--data", cub / "images", *base)) == need


def test_metadata_parent_of_the_split_folders_says_which_was_meant(tmp_path):
    """--metadata metadata/CUB (the folder of the split folders) for metadata/CUB/test."""
    wsol = build_wsol_dataset(tmp_path / "wsol", n=3)
    (wsol.metadata.parent / "train").mkdir()
    (wsol.metadata.parent / "train" / "image_ids.txt").write_text("")
    res = invoke_cli(
        "localize", "--data", wsol.image_root, "--metadata", wsol.metadata.parent, "--baseline", "full-box",
        "--device", "cpu", "--workers", "0", "--out", tmp_path / "out",
    )  # fmt: skip
    _one_error(res, f"holds the metadata of test, train; did you mean --metadata {wsol.metadata}?")
    assert not (tmp_path / "out").exists()


def test_visualize_cmap_typo_fails_before_any_model_or_data(tmp_path, ckpt, monkeypatch):
    """A --cmap that matplotlib does not know is one error before the model is loaded (it was only
    found when the figure was drawn, after every map had been computed)."""
    import simpool_bench.loading

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --cmap was checked")

    monkeypatch.setattr(simpool_bench.loading, "load_model", no_model)
    voc = build_voc_dataset(tmp_path / "VOC2007", n=2)
    out = tmp_path / "out"
    res = invoke_cli(
        "visualize", "--checkpoint", ckpt, "--dataset", "voc07", "--data", voc, "--cmap", "jet2",
        "--device", "cpu", "--workers", "0", "--out", out,
    )  # fmt: skip
    _one_error(res, "--cmap 'jet2': not a matplotlib colour map")
    assert not out.exists()


def test_demo_out_that_is_a_file_is_one_line_naming_it(tmp_path):
    """demo --out FILE: the error every other command gives, before the demo's first step (it named
    FILE/data/demo_data_stamp.json under a progress line)."""
    out = tmp_path / "demo_out"
    out.write_text("notes\n")
    line = _one_error(invoke_cli("demo", "--small", "--out", out))
    assert line == f"error: --out {out}: a file is there; expected a folder (made when missing)"
    assert out.read_text() == "notes\n"


def test_demo_negative_seed_is_one_line(tmp_path):
    """demo --seed -1 was numpy's traceback from the first demo image."""
    out = tmp_path / "demo_out"
    _one_error(invoke_cli("demo", "--small", "--seed", "-1", "--out", out), "--seed", "greater than or equal to 0")
    assert not out.exists()


@pytest.mark.parametrize(
    "text", ["a\x0cb\nc\x1dd\r\ne\x85f\u2028g\rh", "one\n", "one\n\n", "", "\n", "x\r\n\r\ny", "tail\r", "a\u2029b\x0bc\x1ed\x1ce"]
)
def test_read_lines_splits_as_the_references_readlines(tmp_path, text):
    """read_lines splits where ``open(path).readlines()`` does (what wsolevaluation, LOST and
    torchvision's VOC read lists with), not at form feeds, \\x1c-\\x1e, NEL or U+2028/9, which
    str.splitlines also breaks at: an id holding one was read as two lines."""
    from simpool_bench.data.inputs import read_lines

    path = tmp_path / "list.txt"
    path.write_bytes(text.encode("utf-8"))
    with open(path, encoding="utf-8") as f:
        reference = [line.replace("\n", "") for line in f.readlines()]
    assert read_lines(path) == reference


@pytest.mark.parametrize("name", ["results.parquet", "results.manifest.json", "boxacc_curve.csv"])
def test_a_folder_under_a_run_file_name_in_out_is_one_line_before_the_run(tmp_path, monkeypatch, name):
    """--out holding a folder named as a file the run writes (results.parquet/, ...): one error
    before any image is read; the run found it only when writing its results, which were lost."""
    import simpool_bench.readers

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before --out was checked")

    monkeypatch.setattr(simpool_bench.readers, "read_localization_data", no_data)
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    wsol = build_wsol_dataset(tmp_path / "wsol", n=2)
    res = invoke_cli(
        "localize", "--baseline", "center-gaussian", "--dataset", "cub", "--data", wsol.image_root,
        "--metadata", wsol.metadata, "--out", out, "--device", "cpu",
    )  # fmt: skip
    line = _one_error(res)
    assert line == f"error: --out {out}: {name} is a folder; expected the file a run writes there (move the folder away)"
    assert sorted(p.name for p in out.iterdir()) == [name]
