"""Demo data: determinism, stamp reuse, every layout through the project's readers, and exact boxes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import defusedxml.ElementTree as ET
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
    coco = [{k for k in files if k.startswith("coco/train2014/")} for files in (a, other)]
    assert len(coco[0]) == len(coco[1]) == SMALL["n_discovery"] + SMALL["n_test"] and not coco[0] & coco[1]  # ids of the seed


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


def test_bad_parameters_name_the_parameter(tmp_path: Path):
    """Every size is checked: a count of 0 discovery images, a 31-pixel side, a bool or a float."""
    bad = [dict(n_test=5), dict(n_discovery=0), dict(image_size=31), dict(n_discovery=True), dict(n_discovery=2.0)]
    for kw in bad:
        (name,) = kw
        with pytest.raises(SimpoolBenchError, match=f"^demo data: {name}="):
            build_demo_data(tmp_path / "x", **{**SMALL, **kw})
    assert not (tmp_path / "x").exists()


def test_a_negative_or_fractional_seed_is_one_line_error(tmp_path: Path):
    """seed=-1 was numpy's traceback (``expected non-negative integer``) from the first image; 1.5
    gave seed 1's files under a stamp saying 1.5."""
    for seed in (-1, 1.5, True):
        with pytest.raises(SimpoolBenchError, match=rf"^demo data: seed={seed!r} must be an integer >= 0$"):
            build_demo_data(tmp_path / "x", seed=seed, **SMALL)
    assert not (tmp_path / "x").exists()


def test_defaults_are_the_readme_demo():
    """The README's demo: 480 training, 120 test and 120 discovery images at 160x160."""
    import inspect

    from simpool_bench.demo.run import DemoSettings

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    m = re.search(r"(\d+) training images, (\d+) held-out test images, (\d+) discovery images", readme)
    assert m is not None
    side = int(re.search(r"(\d+)x\1 input", readme).group(1))
    want = dict(n_train=int(m[1]), n_test=int(m[2]), n_discovery=int(m[3]), image_size=side)
    assert want == dict(n_train=480, n_test=120, n_discovery=120, image_size=160)
    params = inspect.signature(build_demo_data).parameters
    assert {k: params[k].default for k in want} == want and params["seed"].default == 0
    s = DemoSettings()
    assert {k: getattr(s, k) for k in want} == want and s.seed == 0


def test_a_rebuild_leaves_no_file_of_the_old_build(tmp_path: Path):
    """Other seed or another discovery count: every layout is rewritten (no stale COCO image of the
    old seed's ids), and an interrupted rebuild leaves no stamp that a later call would trust."""
    root = tmp_path / "d"
    small = dict(n_train=6, n_test=6, n_discovery=2, image_size=32)
    build_demo_data(root, seed=0, **small)
    p = build_demo_data(root, seed=1, **{**small, "n_discovery": 3})
    doc = json.loads(p.coco_annotations.read_text())
    assert sorted(f.name for f in p.coco_image_dir.iterdir()) == sorted(i["file_name"] for i in doc["images"])
    assert len(read_voc(p.voc_root, split=p.voc_split)) == 3
    assert json.loads(p.stamp.read_text())["n_discovery"] == 3

    def boom(*a, **k):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo_data, "render_image", boom)
        with pytest.raises(KeyboardInterrupt):
            build_demo_data(root, seed=1, force=True, **{**small, "n_discovery": 3})
    assert not p.stamp.exists()


def _xml_objects(xml: Path) -> tuple[ET.Element, list[tuple[str, str, str, list[int]]]]:
    root = ET.parse(xml).getroot()
    objs = []
    for o in root.findall("object"):
        bb = o.find("bndbox")
        box = [int(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax")]
        objs.append((o.find("name").text, o.find("truncated").text, o.find("difficult").text, box))
    return root, objs


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_voc_and_coco_files_read_as_the_real_datasets_write_them(small: demo_data.DemoPaths):
    """Read with plain parsers: VOC ids 000001.., <size> of the image file, 1-based inclusive boxes;
    COCO [x, y, w, h] boxes of the same objects, the category of the VOC name, area = the RLE mask's
    pixels and bbox = the mask's extent; a crowd region covers the objects of a multi-object image."""
    from pycocotools import mask as mask_utils

    ids = small.voc_root.joinpath("ImageSets", "Main", "trainval.txt").read_text().split()
    assert ids == [f"{i:06d}" for i in range(1, SMALL["n_discovery"] + 1)]
    doc = json.loads(small.coco_annotations.read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert names == {i + 1: c for i, c in enumerate(DEMO_CLASSES)}
    by_name = {i["file_name"]: i for i in doc["images"]}
    listed = [line.split("/")[1] for line in small.coco_list.read_text().split()]
    flags = set()
    for image_id, coco_name in zip(ids, listed, strict=True):
        root, objs = _xml_objects(small.voc_root / "Annotations" / f"{image_id}.xml")
        jpg = small.voc_root / "JPEGImages" / f"{image_id}.jpg"
        assert root.find("filename").text == jpg.name
        with Image.open(jpg) as im:
            size = im.size
        assert (int(root.find("size/width").text), int(root.find("size/height").text)) == size
        image = by_name[coco_name]
        assert (image["width"], image["height"]) == size and jpg.read_bytes() == (small.coco_image_dir / coco_name).read_bytes()
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        plain, crowd = [a for a in anns if not a["iscrowd"]], [a for a in anns if a["iscrowd"]]
        assert len(plain) == len(objs)
        for a, (name, truncated, difficult, (x0, y0, x1, y1)) in zip(plain, objs):
            flags.add((truncated, difficult))
            assert names[a["category_id"]] == name
            assert a["bbox"] == [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]
            m = mask_utils.decode(a["segmentation"]).astype(bool)
            assert m.shape == (size[1], size[0]) and a["area"] == m.sum()
            ys, xs = np.nonzero(m)
            assert [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1]
        for c in crowd:  # over every object of a multi-object image, as the first one's category
            assert len(plain) > 1 and c["category_id"] == plain[0]["category_id"]
            assert c["area"] == sum(a["area"] for a in plain) == mask_utils.decode(c["segmentation"]).sum()
            x0, y0 = min(a["bbox"][0] for a in plain), min(a["bbox"][1] for a in plain)
            x1, y1 = max(a["bbox"][0] + a["bbox"][2] for a in plain), max(a["bbox"][1] + a["bbox"][3] for a in plain)
            assert c["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    assert ("1", "0") in flags  # truncated but mostly visible: not difficult
    assert all(1 <= i["id"] < 581930 for i in doc["images"])


def test_wsol_metadata_lists_a_split_in_image_order(small: demo_data.DemoPaths):
    """image_ids.txt and the files beside it list a split's images in their index order (the
    ``_NNNNN`` of the file name), one line each, in the same order."""
    for meta, n in ((small.wsol_metadata_train, SMALL["n_train"]), (small.wsol_metadata_test, SMALL["n_test"])):
        ids = (meta / "image_ids.txt").read_text().split()
        assert [int(i[-9:-4]) for i in ids] == list(range(n))
        for name in ("class_labels.txt", "image_sizes.txt", "localization.txt"):
            assert [line.split(",")[0] for line in (meta / name).read_text().split()] == ids


def test_boxes_and_sizes_are_pinned_for_a_seed(small: demo_data.DemoPaths):
    """The demo's numbers (README table) need the same data digit for digit: the boxes and sizes of
    seed 3 (text files only; the JPEG bytes depend on libjpeg) are a function of numpy's generators
    and Pillow's resizing. A change here is a new DEMO_DATA_VERSION and new README numbers."""
    import hashlib

    files = [small.wsol_metadata_train / "localization.txt", small.wsol_metadata_test / "localization.txt"]
    files += [small.wsol_metadata_test / "image_sizes.txt", *sorted((small.voc_root / "Annotations").glob("*.xml"))]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    assert digest == "8be769a9d47c61e6a40110a08c64ebc01b37d250eb0863b935194c707c6941da"


def test_objects_of_one_image_are_apart_and_only_discovery_objects_are_cut(small: demo_data.DemoPaths):
    """The objects of a discovery image never overlap (their full boxes are 2 px apart, so their
    visible boxes are too); train and test objects are never cut by the border."""
    multi = 0
    for xml in sorted((small.voc_root / "Annotations").glob("*.xml")):
        boxes = [b for *_, b in _xml_objects(xml)[1]]
        multi += len(boxes) > 1
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] + 2 < b[0] or b[2] + 2 < a[0] or a[3] + 2 < b[1] or b[3] + 2 < a[1], (xml.name, a, b)
    assert multi >= 3
    for split in ("train", "test"):
        assert not any(o.truncated for i in range(12) for o in scenes.render_image(3, split, i, 48).objects)


def test_a_missing_bundled_photograph_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scenes, "skimage_data_dir", lambda: tmp_path)
    object_cutouts.cache_clear()
    try:
        with pytest.raises(SimpoolBenchError, match=r"astronaut\.png is missing from the installed scikit-image"):
            object_cutouts()
    finally:
        object_cutouts.cache_clear()


def test_pixels_are_pinned_for_a_seed(monkeypatch: pytest.MonkeyPatch):
    """The rendered pixels before JPEG encoding (so independent of libjpeg) of a few images of each
    split: background crop, flip and tint, pasted objects and rounding are the demo's."""
    import hashlib

    monkeypatch.setattr(scenes, "_jpeg", lambda arr: arr.tobytes())
    h = hashlib.sha256()
    for split in ("train", "test", "discovery"):
        for i in range(4):
            h.update(scenes.render_image(3, split, i, 48).jpeg)
    assert h.hexdigest() == "c163cecfe1e85b3bd577739c2e5aa4325b43ec8e5486854bbb406260c68bb6a4"


def test_paths_as_dict_is_json_and_a_folder_without_stamp_is_one_line(small: demo_data.DemoPaths, tmp_path: Path):
    d = json.loads(json.dumps(demo_data.paths_as_dict(small)))
    assert d["voc_root"] == str(small.voc_root) and d["classes"] == list(DEMO_CLASSES) and d["n_test"] == SMALL["n_test"]
    assert demo_data.stamp_parameters(small)["seed"] == 3
    with pytest.raises(SimpoolBenchError, match="no stamp file demo_data_stamp.json"):
        demo_data.stamp_parameters(demo_data._paths(tmp_path, 6, 6, 1))
