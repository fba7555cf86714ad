"""COCO20k reader against LOST's select_coco_20k + extract_gt_COCO, done on the raw json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from simpool_bench.data.coco20k import COCO20K_IMAGES, coco_box_to_lost, image_id_from_name, read_coco20k
from simpool_bench.errors import SimpoolBenchError

LOST_LIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lost" / "coco_20k_filenames.txt"


def _name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def _make_coco(tmp_path: Path, seed: int = 0):
    """A real-format instances json (some crowd annotations, .5 coordinates), the train2014 folder,
    and a 20k-style list of a subset of its images. Returns (image_dir, json, list, dataset)."""
    rng = np.random.default_rng(seed)
    image_dir = tmp_path / "images" / "train2014"
    image_dir.mkdir(parents=True)
    ids = sorted(rng.choice(600000, size=16, replace=False).tolist())
    images, anns = [], []
    for k, i in enumerate(ids):
        w, h = int(rng.integers(100, 640)), int(rng.integers(100, 640))
        images.append(
            {"license": 1, "file_name": _name(i), "coco_url": "", "height": h, "width": w, "date_captured": "", "flickr_url": "", "id": i}
        )
        (image_dir / _name(i)).write_bytes(b"jpeg")
        n_ann = [0, 1, 2, 3, 5][k % 5]
        for j in range(n_ann):
            x, y = float(rng.integers(0, w // 2)) + [0, 0.5, 0.25, 0.75][j % 4], float(rng.integers(0, h // 2)) + 0.5 * (k % 2)
            bw, bh = float(rng.integers(1, w // 2)) + [0.5, 0, 0.49, 0.51][j % 4], float(rng.integers(1, h // 2)) + 0.5
            crowd = int(k % 6 == 1 or (j == 2 and k % 3 == 0))  # k % 6 == 1: a crowd-only image
            anns.append(
                {
                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh]],
                    "area": bw * bh,
                    "iscrowd": crowd,
                    "image_id": i,
                    "bbox": [x, y, bw, bh],
                    "category_id": int(rng.integers(1, 91)),
                    "id": len(anns) + 1,
                }
            )
    rng.shuffle(anns)
    data = {
        "info": {"description": "COCO 2014"},
        "licenses": [{"id": 1, "name": "x"}],
        "images": images,
        "annotations": anns,
        "categories": [{"supercategory": "x", "id": c, "name": f"c{c}"} for c in range(1, 91)],
    }
    ann_file = tmp_path / "annotations" / "instances_train2014.json"
    ann_file.parent.mkdir()
    ann_file.write_text(json.dumps(data))
    listed = [ids[k] for k in rng.permutation(len(ids))[:12]]
    list_file = tmp_path / "coco_20k_filenames.txt"
    list_file.write_text("\n".join(f"train2014/{_name(i)}" for i in listed) + "\n")
    return image_dir, ann_file, list_file, data


def _lost_reference(data: dict, list_file: Path):
    """LOST: select_coco_20k (ids from the list, annotations in json order) and extract_gt_COCO, per
    image in list order (LOST's CocoDetection then visits the images by id; see read_coco20k)."""
    sel = [s.replace("\n", "") for s in list_file.read_text().splitlines(keepends=True)]
    im20k = [int(s.split("_")[-1].split(".")[0]) for s in sel]
    out = []
    for i in im20k:
        info = next(a for a in data["images"] if a["id"] == i)
        boxes = []
        for o in (a for a in data["annotations"] if a["image_id"] == i):
            if o["iscrowd"] == 1:
                continue
            bbx = o["bbox"]
            boxes.append([int(round(v)) for v in [bbx[0], bbx[1], bbx[0] + bbx[2], bbx[1] + bbx[3]]])
        out.append((info["file_name"], info["width"], info["height"], boxes))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_read_coco20k_matches_lost(tmp_path, seed):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path, seed)
    records = read_coco20k(image_dir, ann_file, list_file)
    ref = _lost_reference(data, list_file)
    assert len(records) == len(ref) == 12
    for r, (file_name, w, h, boxes) in zip(records, ref):
        assert (r.image_id, r.path, r.label, r.width, r.height) == (file_name, image_dir / file_name, -1, w, h)
        np.testing.assert_array_equal(r.boxes, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    assert any(len(r.boxes) == 0 for r in records)


def test_coco_box_rounding_by_hand():
    # Python's round: half to even (LOST's int(round(x)))
    assert coco_box_to_lost([2.5, 3.5, 3.0, 1.0]) == (2, 4, 6, 4)
    assert coco_box_to_lost([0.49, 10.51, 0.02, 0.0]) == (0, 11, 1, 11)
    assert image_id_from_name("train2014/COCO_train2014_000000560992.jpg") == 560992


def test_crowd_only_and_unannotated_images_keep_empty_boxes(tmp_path):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path, 0)
    list_file.write_text("\n".join(f"train2014/{img['file_name']}" for img in data["images"]))
    records = read_coco20k(image_dir, ann_file, list_file)
    by_id = {r.image_id: r for r in records}
    crowd_only = {a["image_id"] for a in data["annotations"]} - {a["image_id"] for a in data["annotations"] if not a["iscrowd"]}
    unannotated = {img["id"] for img in data["images"]} - {a["image_id"] for a in data["annotations"]}
    assert crowd_only and unannotated
    for i in crowd_only | unannotated:
        assert by_id[_name(i)].boxes.shape == (0, 4)


def test_missing_files_named(tmp_path):
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    with pytest.raises(SimpoolBenchError, match="nodir"):
        read_coco20k(tmp_path / "nodir", ann_file, list_file)
    with pytest.raises(SimpoolBenchError, match="nope.json"):
        read_coco20k(image_dir, tmp_path / "nope.json", list_file)
    with pytest.raises(SimpoolBenchError, match="nolist.txt"):
        read_coco20k(image_dir, ann_file, tmp_path / "nolist.txt")


def test_json_without_the_listed_images(tmp_path):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    other = tmp_path / "instances_val2014.json"
    other.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "COCO_val2014_000000000001.jpg", "width": 9, "height": 9}],
                "annotations": [],
                "categories": [],
            }
        )
    )
    with pytest.raises(SimpoolBenchError, match=r"instances_val2014\.json holds none of the 12 images"):
        read_coco20k(image_dir, other, list_file)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SimpoolBenchError, match=r"bad\.json"):
        read_coco20k(image_dir, bad, list_file)


def test_list_names_not_in_json_first_and_count(tmp_path):
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    lines = list_file.read_text().splitlines()
    list_file.write_text("\n".join(lines[:3] + [f"train2014/{_name(999999999)}", f"train2014/{_name(999999998)}"] + lines[3:]))
    with pytest.raises(
        SimpoolBenchError, match=rf"coco_20k_filenames\.txt:4: .*{_name(999999999)} is not in .*\(2 of 14 listed images absent\)"
    ):
        read_coco20k(image_dir, ann_file, list_file)


def test_bad_list_lines(tmp_path):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    lines = list_file.read_text().splitlines()
    list_file.write_text("\n".join(lines + ["train2014/not_a_coco_name.jpg"]))
    with pytest.raises(SimpoolBenchError, match=r"coco_20k_filenames\.txt:13: .*not a COCO file name"):
        read_coco20k(image_dir, ann_file, list_file)
    list_file.write_text("\n".join(lines + [lines[0]]))
    with pytest.raises(SimpoolBenchError, match=r":13: image id \d+ already listed on line 1"):
        read_coco20k(image_dir, ann_file, list_file)
    # an id that exists in the json under another file name
    i = image_id_from_name(lines[0])
    list_file.write_text("\n".join([f"val2014/COCO_val2014_{i:012d}.jpg"] + lines[1:]))
    with pytest.raises(SimpoolBenchError, match="whose file_name"):
        read_coco20k(image_dir, ann_file, list_file)


def test_missing_images_first_and_count_with_hint(tmp_path):
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    first = list_file.read_text().split()[0].split("/")[-1]
    (image_dir / first).unlink()
    with pytest.raises(SimpoolBenchError, match=rf"{first} not found \(1 of 12"):
        read_coco20k(image_dir, ann_file, list_file)
    assert len(read_coco20k(image_dir, ann_file, list_file, check_images=False)) == 12
    with pytest.raises(SimpoolBenchError, match="should be the train2014 folder"):
        read_coco20k(image_dir.parent, ann_file, list_file)


@pytest.mark.skipif(not LOST_LIST.is_file(), reason=f"LOST's coco_20k_filenames.txt not found at {LOST_LIST}")
def test_real_coco20k_list():
    lines = LOST_LIST.read_text().splitlines()
    assert len(lines) == COCO20K_IMAGES == 19817
    pattern = re.compile(r"train2014/COCO_train2014_(\d{12})\.jpg")
    matches = [pattern.fullmatch(line) for line in lines]
    assert all(matches)
    ids = [image_id_from_name(line) for line in lines]
    assert ids == [int(m.group(1)) for m in matches]
    assert len(set(ids)) == len(ids)


def test_json_without_annotations_is_named(tmp_path):
    """An image_info_*.json (images, no 'annotations') would score every image a miss: refused, named."""
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    info = tmp_path / "coco" / "image_info.json"
    info.parent.mkdir()
    info.write_text(json.dumps({k: v for k, v in data.items() if k != "annotations"}))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, info, list_file)
    msg = str(exc.value)
    assert f"{info} has no 'annotations' list" in msg and "image_info" in msg and "instances_train2014.json" in msg
    assert "\n" not in msg
    # a valid file whose listed images have no annotation at all still reads (empty boxes, as LOST)
    ann_file.write_text(json.dumps({**data, "annotations": []}))
    assert all(r.boxes.shape == (0, 4) for r in read_coco20k(image_dir, ann_file, list_file))


@pytest.mark.parametrize(
    "value, said",
    [("64px", "has 'width' '64px'"), (None, "has no 'width'"), (0, "has 'width' 0"), (-3, "has 'width' -3"), (True, "has 'width' True")],
)
def test_image_width_not_a_positive_integer_is_named(tmp_path, value, said):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = image_id_from_name(list_file.read_text().split()[2])
    for img in data["images"]:
        if img["id"] == listed:
            if value is None:
                del img["width"]
            else:
                img["width"] = value
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    msg = str(exc.value)
    assert f"COCO annotation file {ann_file}: image id {listed} {said}; expected a positive integer" in msg


def test_image_height_not_an_integer_is_named(tmp_path):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = image_id_from_name(list_file.read_text().split()[0])
    next(img for img in data["images"] if img["id"] == listed)["height"] = "48 px"
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError, match=rf"instances_train2014\.json: image id {listed} has 'height' '48 px'; expected a positive"):
        read_coco20k(image_dir, ann_file, list_file)


def test_list_and_annotations_swapped_quote_is_capped(tmp_path):
    """The json given as the list: its (one, huge) first line is quoted cut to 80 characters."""
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    assert len(ann_file.read_text()) > 1000
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, list_file, ann_file)
    msg = str(exc.value)
    first = ann_file.read_text().splitlines()[0]
    assert msg.startswith(f"{ann_file}:1: {first[:80] + '…'!r} is not a COCO file name")
    assert (
        "coco_20k_filenames.txt" in msg and len(msg) - len(str(ann_file)) < 200 and "\n" not in msg
    )  # the quote is capped, whatever the path


def test_json_given_as_the_list_is_refused_from_its_head(tmp_path):
    """A json as the list fails on its first bytes, before the rest (450 MB for the real
    instances_train2014.json) is read: bytes past 4 KiB that are not UTF-8 are never decoded."""
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    big = tmp_path / "instances.json"
    big.write_bytes(b"\n\n" + ann_file.read_bytes()[:5000] + b"\xff\xfe" * 1000)
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, big)
    first = ann_file.read_text()[:80]
    assert str(exc.value) == (
        f"{big}:3: {first + '…'!r} is not a COCO file name (expected ..._<id>.jpg; a json file? the list is LOST's coco_20k_filenames.txt)"
    )


@pytest.mark.parametrize("value, said", [(64.7, "has 'width' 64.7"), ("64.7", "has 'width' '64.7'"), (float("inf"), "has 'width' inf")])
def test_image_width_fractional_is_refused_not_truncated(tmp_path, value, said):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = image_id_from_name(list_file.read_text().split()[1])
    next(img for img in data["images"] if img["id"] == listed)["width"] = value
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    assert f"COCO annotation file {ann_file}: image id {listed} {said}; expected a positive integer (pixels)" == str(exc.value)


def test_integral_float_size_reads_as_that_integer(tmp_path):
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = image_id_from_name(list_file.read_text().split()[0])
    info = next(img for img in data["images"] if img["id"] == listed)
    want = (info["width"], info["height"])
    info["width"], info["height"] = float(info["width"]), str(info["height"])
    ann_file.write_text(json.dumps(data))
    rec = read_coco20k(image_dir, ann_file, list_file)[0]
    assert (rec.width, rec.height) == want and type(rec.width) is int


def test_size_differing_from_the_image_file_is_the_files_with_one_warning(tmp_path):
    """LOST works on the decoded image; a json size that is not the file's gives way to it."""
    from PIL import Image

    from simpool_bench.data.inputs import DataWarning

    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = [image_id_from_name(s) for s in list_file.read_text().split()]
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    for k, i in enumerate(listed):  # real JPEGs: the json's size, but images 1 and 4 a few pixels narrower/taller
        w, h = sizes[i]
        Image.new("RGB", (w - 3 * (k == 1), h + 5 * (k == 4)), (k, 0, 0)).save(image_dir / _name(i))
    with pytest.warns(DataWarning) as caught:
        records = read_coco20k(image_dir, ann_file, list_file)
    for r in records:
        with Image.open(r.path) as im:
            assert (r.width, r.height) == im.size
    w, h = sizes[listed[1]]
    said = [str(c.message) for c in caught if issubclass(c.category, DataWarning)]
    assert said == [
        f"COCO annotation file {ann_file}: 2 of {len(listed)} image sizes differ from the image files "
        f"(first: {_name(listed[1])} listed {w}x{h}, file {w - 3}x{h}); the files' sizes are used, as LOST does"
    ]


def _error_of_a_bbox(tmp_path, bbox) -> tuple[str, str]:
    """(read_coco20k's error, its expected start 'FILE: annotation id N (image M) has bbox') with
    ``bbox`` given to one listed non-crowd annotation."""
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = {image_id_from_name(n) for n in list_file.read_text().split()}
    ann = next(a for a in data["annotations"] if a["image_id"] in listed and not a["iscrowd"])
    ann["bbox"] = bbox
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    return str(exc.value), f"{ann_file}: annotation id {ann['id']} (image {ann['image_id']}) has bbox"


@pytest.mark.parametrize("bbox", [[10.0, 20.0, -5.0, 8.0], [10.0, 20.0, 6.0, -0.5], [10.0, 20.0, float("nan"), 8.0]])
def test_annotation_with_a_negative_or_non_finite_size_is_named(tmp_path, bbox):
    # an inverted box (x + w < x) was read as LOST reads it and scored its image a miss, silently
    said, where = _error_of_a_bbox(tmp_path, bbox)
    assert said == f"{where} {bbox!r}; expected [x, y, width, height], four finite numbers, width and height >= 0"


def test_annotation_of_zero_width_or_height_reads(tmp_path):
    # COCO has boxes under a pixel wide: LOST's rounding makes them zero-width, and they stay
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = {image_id_from_name(n) for n in list_file.read_text().split()}
    ann = next(a for a in data["annotations"] if a["image_id"] in listed and not a["iscrowd"])
    ann["bbox"] = [10.0, 20.0, 0.0, 0.4]
    ann_file.write_text(json.dumps(data))
    rec = next(r for r in read_coco20k(image_dir, ann_file, list_file) if r.image_id == _name(ann["image_id"]))
    assert [10.0, 20.0, 10.0, 20.0] in rec.boxes.tolist()


def test_list_entry_with_underscores_before_the_file_name_takes_the_last_field():
    # LOST: int(name.split("_")[-1].split(".")[0]), the last "_" field whatever the folder is called
    assert image_id_from_name("my_coco/train_2014/COCO_train2014_000000000042.jpg") == 42


def test_an_empty_list_file_is_refused(tmp_path):
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    list_file.write_text("\n \n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    assert str(exc.value) == f"{list_file}: no image names"


def test_an_annotation_without_iscrowd_is_kept(tmp_path):
    """Only iscrowd == 1 is removed; an annotation without the key (LOST would fail on it) keeps its box."""
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = {image_id_from_name(n) for n in list_file.read_text().split()}
    ann = next(a for a in data["annotations"] if a["image_id"] in listed and not a["iscrowd"])
    del ann["iscrowd"]
    ann["bbox"] = [10.0, 20.0, 5.5, 3.0]
    ann_file.write_text(json.dumps(data))
    rec = next(r for r in read_coco20k(image_dir, ann_file, list_file) if r.image_id == _name(ann["image_id"]))
    assert [10.0, 20.0, 16.0, 23.0] in rec.boxes.tolist()


def test_a_boolean_in_a_bbox_is_refused(tmp_path):
    # json true is a Python bool, an int subclass: [true, 0, 3, 4] is not a box
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = {image_id_from_name(n) for n in list_file.read_text().split()}
    ann = next(a for a in data["annotations"] if a["image_id"] in listed and not a["iscrowd"])
    ann["bbox"] = [True, 0, 3, 4]
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    assert str(exc.value) == (
        f"{ann_file}: annotation id {ann['id']} (image {ann['image_id']}) has bbox [True, 0, 3, 4]; "
        "expected [x, y, width, height], four finite numbers, width and height >= 0"
    )


@pytest.mark.parametrize(
    "bbox, expected",
    [
        # math.isfinite(10**400) raised OverflowError (int too large to convert to float)
        ([10**400, 0, 3, 4], "expected [x, y, width, height], four finite numbers, width and height >= 0"),
        # each value finite, x + w not: int(round(inf)) raised OverflowError
        ([1e308, 0, 1e308, 4], "expected x + width and y + height finite"),
        ([0, 1e308, 3, 1e308], "expected x + width and y + height finite"),
    ],
)
def test_a_bbox_past_float_range_is_named_not_a_traceback(tmp_path, bbox, expected):
    said, where = _error_of_a_bbox(tmp_path, bbox)
    quoted = repr(bbox) if len(repr(bbox)) <= 80 else repr(bbox)[:80] + "…"
    assert said == f"{where} {quoted}; {expected}"


def test_a_json_nested_too_deep_is_named(tmp_path):
    """json's decoder raised RecursionError on 100,000 nested arrays: a traceback."""
    image_dir, ann_file, list_file, _ = _make_coco(tmp_path)
    ann_file.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    assert str(exc.value) == f"COCO annotation file {ann_file}: not a COCO instances json (nested too deep to parse)"


def test_an_image_name_too_long_for_the_file_system_is_named_as_missing(tmp_path):
    """A file name of 300 characters (list and json agreeing): Path.is_file() raised OSError (File name too long)."""
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    lines = list_file.read_text().split()
    i = image_id_from_name(lines[0])
    long_name = "COCO_train2014_" + "0" * 300 + f"{i}.jpg"
    next(img for img in data["images"] if img["id"] == i)["file_name"] = long_name
    ann_file.write_text(json.dumps(data))
    list_file.write_text("\n".join([f"train2014/{long_name}", *lines[1:]]) + "\n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file)
    assert str(exc.value) == (
        f"COCO20k: image {image_dir / long_name} cannot be looked up (File name too long) (1 of {len(lines)} listed images missing)"
    )


@pytest.mark.parametrize("value", [10**400, 2**31, 1e300])
def test_image_width_larger_than_any_image_file_is_named(tmp_path, value):
    """A width of 10**400 was kept where the image does not decode: discover's int64 size array
    raised OverflowError on it."""
    image_dir, ann_file, list_file, data = _make_coco(tmp_path)
    listed = image_id_from_name(list_file.read_text().split()[2])
    next(img for img in data["images"] if img["id"] == listed)["width"] = value
    ann_file.write_text(json.dumps(data))
    with pytest.raises(SimpoolBenchError) as exc:
        read_coco20k(image_dir, ann_file, list_file, check_images=False)
    said = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "…"
    assert str(exc.value) == (f"COCO annotation file {ann_file}: image id {listed} has 'width' {said}; expected at most 2147483647 pixels")
    next(img for img in data["images"] if img["id"] == listed)["width"] = 2**31 - 1  # the largest an image file can have
    ann_file.write_text(json.dumps(data))
    assert any(r.width == 2**31 - 1 for r in read_coco20k(image_dir, ann_file, list_file, check_images=False))
