"""Demo data: determinism, stamp reuse, every layout through the project's readers, and exact boxes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simpool_bench.data.coco20k import read_coco20k
from simpool_bench.data.imagenet import read_image_folder
from simpool_bench.data.voc import read_voc
from simpool_bench.data.wsol import read_cub_native, read_wsol_metadata
from simpool_bench.demo import data as demo_data
from simpool_bench.demo import scenes
from simpool_bench.demo.data import DEMO_CLASSES, build_demo_data, object_cutouts
from simpool_bench.errors import SimpoolBenchError

SMALL = dict(n_train=12, n_test=6, n_discovery=16, image_size=48)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> demo_data.DemoPaths:
    return build_demo_data(tmp_path_factory.mktemp("demo") / "data", seed=3, **SMALL)


def test_cutouts_are_clean_masks_from_the_bundled_photographs():
    cuts = object_cutouts()
    assert tuple(sorted(cuts)) == DEMO_CLASSES
    assert len(cuts["coin"]) >= 10  # one cut-out per whole coin of coins.png
    for name, options in cuts.items():
        for c in options:
            assert c.rgb.shape[:2] == c.mask.shape and c.rgb.dtype == np.uint8
            # cropped to the mask: every border row and column of the crop touches the mask
            assert c.mask[0].any() and c.mask[-1].any() and c.mask[:, 0].any() and c.mask[:, -1].any(), name
            assert c.mask.mean() > 0.3, name  # a solid object, not speckle


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, small: demo_data.DemoPaths):
    again = build_demo_data(tmp_path / "again", seed=3, **SMALL)
    a, b = _files(small.root), _files(again.root)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)  # byte-identical, json and jpegs included
    other = _files(build_demo_data(tmp_path / "other", seed=4, **SMALL).root)
    jpgs = [k for k in a if k.endswith(".jpg") and k in other]  # COCO names depend on the seed
    assert len(jpgs) > 40 and all(a[k] != other[k] for k in jpgs)


def test_stamp_reuse_and_rebuild(tmp_path: Path):
    p = build_demo_data(tmp_path / "d", seed=0, **SMALL)
    sentinel = p.imagefolder_train / "sentinel.txt"
    sentinel.write_text("kept while the stamp matches")
    first = p.stamp.stat().st_mtime_ns
    assert build_demo_data(tmp_path / "d", seed=0, **SMALL) == p
    assert sentinel.exists() and p.stamp.stat().st_mtime_ns == first
    # other parameters: the folders it owns are rebuilt (the sentinel goes), other files stay
    (tmp_path / "d" / "mine.txt").write_text("not ours")
    p2 = build_demo_data(tmp_path / "d", seed=0, **{**SMALL, "n_test": 12})
    assert not sentinel.exists() and (tmp_path / "d" / "mine.txt").exists()
    assert json.loads(p2.stamp.read_text())["n_test"] == 12
    assert len(read_image_folder(p2.imagefolder_test)[0]) == 12
    # force rebuilds with the same parameters
    sentinel.write_text("x")
    build_demo_data(tmp_path / "d", seed=0, force=True, **{**SMALL, "n_test": 12})
    assert not sentinel.exists()


def test_bad_parameters_are_one_line_errors(tmp_path: Path):
    with pytest.raises(SimpoolBenchError, match="n_train"):
        build_demo_data(tmp_path / "x", n_train=3)
    (tmp_path / "file").write_text("")
    with pytest.raises(SimpoolBenchError, match="is a file"):
        build_demo_data(tmp_path / "file", **SMALL)


def test_every_layout_parses_with_consistent_counts_labels_and_boxes(small: demo_data.DemoPaths):
    k = len(DEMO_CLASSES)
    train, classes = read_image_folder(small.imagefolder_train)
    test, classes_t = read_image_folder(small.imagefolder_test)
    assert tuple(classes) == tuple(classes_t) == DEMO_CLASSES
    assert len(train) == SMALL["n_train"] and len(test) == SMALL["n_test"]
    assert np.bincount([r.label for r in train], minlength=k).tolist() == [SMALL["n_train"] // k] * k
    for r in train + test:
        assert r.path.parent.name == DEMO_CLASSES[r.label]
    with Image.open(train[0].path) as im:
        assert im.size == (SMALL["image_size"],) * 2

    for split, n in (("train", SMALL["n_train"]), ("test", SMALL["n_test"])):
        meta = small.wsol_metadata_train if split == "train" else small.wsol_metadata_test
        wsol = read_wsol_metadata(meta, small.wsol_image_root)
        cub = {r.image_id: r for r in read_cub_native(small.cub_root, split=split)}
        assert len(wsol) == n and len(cub) == n
        for r in wsol:
            c = cub[r.image_id]  # the same ids, labels, sizes and boxes in both layouts
            assert (c.label, c.width, c.height) == (r.label, r.width, r.height)
            np.testing.assert_array_equal(c.boxes, r.boxes)
            assert r.boxes.shape == (1, 4)
            assert r.image_id.split("/")[0] == f"{r.label + 1:03d}.{DEMO_CLASSES[r.label]}"
            with Image.open(r.path) as im:
                assert im.size == (r.width, r.height)
    cub_classes = (small.cub_root / "classes.txt").read_text().split("\n")[:k]
    assert [line.split(" ", 1)[1] for line in cub_classes] == [f"{i + 1:03d}.{c}" for i, c in enumerate(DEMO_CLASSES)]

    voc = read_voc(small.voc_root, split=small.voc_split)
    coco = read_coco20k(small.coco_image_dir, small.coco_annotations, small.coco_list)
    assert len(voc) == len(coco) == SMALL["n_discovery"]
    counts = [len(r.boxes) for r in voc]
    assert max(counts) >= 2 and min(counts) >= 1  # some images hold several objects
    for v, c in zip(voc, coco):  # same images, in order; both readers give (x0, y0, x1 + 1, y1 + 1)
        assert Path(v.path).read_bytes() == Path(c.path).read_bytes()
        assert (v.width, v.height) == (c.width, c.height)
        np.testing.assert_array_equal(v.boxes, c.boxes)
    doc = json.loads(small.coco_annotations.read_text())
    assert len(doc["images"]) == SMALL["n_discovery"] + SMALL["n_test"]  # the list selects a subset
    listed_ids = {i["id"] for i in doc["images"] if i["file_name"] in {r.image_id for r in coco}}
    crowd = [a for a in doc["annotations"] if a["iscrowd"] == 1]
    assert crowd and {a["image_id"] for a in crowd} <= listed_ids  # crowds exist, and the reader drops them
    assert sum(a["iscrowd"] == 0 and a["image_id"] in listed_ids for a in doc["annotations"]) == sum(counts)
    for line in small.coco_list.read_text().split():
        assert re.fullmatch(r"train2014/COCO_train2014_\d{12}\.jpg", line), line


def test_voc_hard_flags_and_no_hard(small: demo_data.DemoPaths):
    import defusedxml.ElementTree as ET

    flags = []
    for xml in sorted((small.voc_root / "Annotations").glob("*.xml")):
        for obj in ET.parse(xml).getroot().findall("object"):
            flags.append((obj.find("truncated").text, obj.find("difficult").text))
    assert set(flags) <= {("0", "0"), ("1", "0"), ("1", "1")}  # difficult only when truncated
    n_hard = sum(t == "1" or d == "1" for t, d in flags)
    easy = read_voc(small.voc_root, no_hard=True)
    assert sum(len(r.boxes) for r in easy) == len(flags) - n_hard


def _changed_pixels(img: np.ndarray) -> np.ndarray:
    """Pixels that differ from the (uniform) background colour, taken as the most common colour."""
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    bg = colours[np.argmax(counts)]
    return (img != bg).any(axis=2)


def test_gt_boxes_are_exactly_the_pasted_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With a uniform background and lossless files, the pixels an object changed are exactly inside
    its box and touch all four sides of it (an independent check from the image content)."""
    flat = np.full((64, 64), 255, dtype=np.uint8)
    monkeypatch.setattr(scenes, "textures", lambda: (flat,))

    def png(arr: np.ndarray) -> bytes:
        import io

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    monkeypatch.setattr(scenes, "_jpeg", png)
    p = build_demo_data(tmp_path / "flat", seed=1, n_train=6, n_test=6, n_discovery=24, image_size=64)
    # wsolevaluation boxes are inclusive (x0, y0, x1, y1); the VOC reader gives (x0, y0, x1 + 1, y1 + 1)
    wsol = [(r, 0) for r in read_wsol_metadata(p.wsol_metadata_test, p.wsol_image_root)]
    voc = [(r, 1) for r in read_voc(p.voc_root)]
    assert sum(len(r.boxes) > 1 for r, _ in voc) >= 3
    for r, end in wsol + voc:
        changed = _changed_pixels(np.asarray(Image.open(r.path).convert("RGB")))
        inside = np.zeros_like(changed)
        for x0, y0, x1, y1 in r.boxes.astype(int):
            region = changed[y0 : y1 + 1 - end, x0 : x1 + 1 - end]
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any(), r.image_id
            inside[y0 : y1 + 1 - end, x0 : x1 + 1 - end] = True
        assert not (changed & ~inside).any(), f"{r.image_id}: object pixels outside every GT box"


def test_no_download_only_package_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The sources are read from skimage's package folder, never through its fetcher (pooch)."""
    import skimage.data

    def boom(*a, **k):
        raise AssertionError("skimage data fetcher called")

    monkeypatch.setattr(skimage.data, "_fetch", boom, raising=False)
    object_cutouts.cache_clear()
    demo_data.textures.cache_clear()
    try:
        build_demo_data(tmp_path / "n", seed=0, n_train=6, n_test=6, n_discovery=1, image_size=32)
    finally:
        object_cutouts.cache_clear()
        demo_data.textures.cache_clear()
    assert os.path.isdir(demo_data.skimage_data_dir())
