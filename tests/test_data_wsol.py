"""wsolevaluation metadata reader and CUB-200-2011 native reader."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simpool_bench.data.wsol import cub_box_to_wsol, read_cub_native, read_wsol_metadata
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics.boxes import resize_boxes_wsol

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wsol_metadata"
needs_real = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real wsolevaluation metadata not found at {SHARED}")


# ------------------------------------------------------------------------------ generated metadata
def _make_split(tmp_path: Path, seed: int = 0, newline: str = "\n", trailing: bool = False):
    """Write a wsolevaluation split of random images with 1-3 boxes each; return (meta, root, truth)."""
    rng = np.random.default_rng(seed)
    meta, root = tmp_path / "metadata" / "CUB" / "test", tmp_path / "images"
    meta.mkdir(parents=True)
    truth = []
    for i in range(12):
        image_id = f"{i % 4:03d}.Class_{i % 4}/Img_{i:04d}_{rng.integers(1000)}.jpg"
        w, h = int(rng.integers(20, 600)), int(rng.integers(20, 600))
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, x1 = sorted(rng.integers(0, w, 2).tolist())
            y0, y1 = sorted(rng.integers(0, h, 2).tolist())
            boxes.append((x0, y0, x1, y1))
        truth.append((image_id, int(rng.integers(0, 200)), w, h, boxes))
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        (root / image_id).write_bytes(b"jpeg")

    def write(name, lines):
        (meta / name).write_text(newline.join(lines) + (newline if trailing else ""))

    write("image_ids.txt", [t[0] for t in truth])
    write("class_labels.txt", [f"{t[0]},{t[1]}" for t in truth])
    write("image_sizes.txt", [f"{t[0]},{t[2]},{t[3]}" for t in truth])
    # boxes of one image are not necessarily adjacent in localization.txt
    loc = [(t[0], b) for t in truth for b in t[4]]
    order = rng.permutation(len(loc))
    write("localization.txt", [f"{loc[k][0]},{','.join(map(str, loc[k][1]))}" for k in order])
    # the reader keeps each image's boxes in file order
    truth = [(i, lab, w, h, [loc[k][1] for k in order if loc[k][0] == i]) for i, lab, w, h, _ in truth]
    return meta, root, truth


@pytest.mark.parametrize("newline, trailing", [("\n", False), ("\n", True), ("\r\n", True)])
def test_read_wsol_metadata_generated(tmp_path, newline, trailing):
    meta, root, truth = _make_split(tmp_path, seed=1, newline=newline, trailing=trailing)
    records = read_wsol_metadata(meta, root)
    assert len(records) == len(truth)
    for r, (image_id, label, w, h, boxes) in zip(records, truth):
        assert (r.image_id, r.path, r.label, r.width, r.height) == (image_id, root / image_id, label, w, h)
        assert r.boxes.dtype == np.float64
        np.testing.assert_array_equal(r.boxes, np.asarray(boxes, dtype=np.float64))
    assert max(len(r.boxes) for r in records) > 1


def _rewrite(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


@pytest.mark.parametrize("name", ["image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"])
def test_missing_metadata_file_is_named(tmp_path, name):
    meta, root, _ = _make_split(tmp_path)
    (meta / name).unlink()
    with pytest.raises(SimpoolBenchError, match=f"metadata file .*{name} not found$"):
        read_wsol_metadata(meta, root)


def test_a_folder_in_place_of_a_file_is_named_as_a_folder(tmp_path):
    """A folder where the metadata names a file is not reported as missing: the path exists."""
    meta, root, _ = _make_split(tmp_path)
    sizes = (meta / "image_sizes.txt").read_bytes()
    (meta / "image_sizes.txt").unlink()
    (meta / "image_sizes.txt").mkdir()
    with pytest.raises(SimpoolBenchError, match=r"metadata file .*image_sizes\.txt is a folder, not a file$"):
        read_wsol_metadata(meta, root)
    (meta / "image_sizes.txt").rmdir()
    (meta / "image_sizes.txt").write_bytes(sizes)
    image = next(p for p in sorted(root.rglob("*")) if p.is_file())
    image.unlink()
    image.mkdir()
    with pytest.raises(SimpoolBenchError, match=f"image {image} is a folder, not a file \\(1 of"):
        read_wsol_metadata(meta, root)


def test_a_pipe_in_place_of_a_file_is_named_as_one(tmp_path):
    """A FIFO where the metadata names a file (or an image) was reported as "not found"; it is there."""
    import os

    meta, root, _ = _make_split(tmp_path)
    (meta / "class_labels.txt").unlink()
    os.mkfifo(meta / "class_labels.txt")
    with pytest.raises(SimpoolBenchError, match=r"metadata file .*class_labels\.txt is a pipe, socket or device, not a file$"):
        read_wsol_metadata(meta, root)


@pytest.mark.parametrize(
    "name, line, match",
    [
        ("class_labels.txt", "x.jpg,seven", r"class_labels\.txt:13"),
        ("image_sizes.txt", "x.jpg,100", r"image_sizes\.txt:13"),
        ("image_sizes.txt", "x.jpg,100,abc", r"image_sizes\.txt:13"),
        ("localization.txt", "x.jpg,1,2,3", r"localization\.txt:\d+"),
        ("localization.txt", "x.jpg,1,2,3,4.5", r"localization\.txt:\d+"),
    ],
)
def test_unparsable_line_names_file_and_line(tmp_path, name, line, match):
    meta, root, _ = _make_split(tmp_path)
    _rewrite(meta / name, lambda ls: ls + [line])
    with pytest.raises(SimpoolBenchError, match=match):
        read_wsol_metadata(meta, root)


@pytest.mark.parametrize("name, extra", [("class_labels.txt", ",7"), ("image_sizes.txt", ",3"), ("localization.txt", ",0")])
def test_a_line_with_an_extra_field_is_refused_not_read_as_another_id(tmp_path, name, extra):
    # wsolevaluation splits each line on every comma (its unpacking fails on a 6th field); read from
    # the right, "id,x0,y0,x1,y1,0" was the box (y0, x1, y1, 0) of an unlisted id "id,x0", ignored,
    # so an image with another line silently lost a box (or kept its other label or size)
    meta, root, truth = _make_split(tmp_path)
    lines = (meta / name).read_text().splitlines()
    k = next(k for k, line in enumerate(lines) if line.startswith(truth[0][0] + ","))
    _rewrite(meta / name, lambda ls: ls[: k + 1] + [ls[k] + extra] + ls[k + 1 :])
    with pytest.raises(SimpoolBenchError) as exc:
        read_wsol_metadata(meta, root)
    assert str(exc.value) == f"{meta / name}:{k + 2}: expected {_EXPECTED[name]}, got {lines[k] + extra!r}"


_EXPECTED = {
    "class_labels.txt": "'id,label' with an integer label",
    "image_sizes.txt": "'id,width,height' with integers",
    "localization.txt": "'id,x0,y0,x1,y1' with integers",
}


@pytest.mark.parametrize("name, what", [("class_labels.txt", "class label"), ("image_sizes.txt", "size"), ("localization.txt", "box")])
def test_id_without_label_size_or_box(tmp_path, name, what):
    meta, root, truth = _make_split(tmp_path)
    victim = truth[5][0]
    _rewrite(meta / name, lambda ls: [line for line in ls if not line.startswith(victim + ",")])
    with pytest.raises(SimpoolBenchError, match=f"{name}: image id '{victim}' has no {what} \\(1 of 12"):
        read_wsol_metadata(meta, root)


@pytest.mark.parametrize("delta", [(-1, 0, 0, 0), (0, -1, 0, 0), (0, 0, 10_000, 0), (0, 0, 0, 10_000)])
def test_box_outside_its_image(tmp_path, delta):
    meta, root, truth = _make_split(tmp_path)
    image_id, _, w, h, _ = truth[3]
    box = np.array([0, 0, w, h]) + np.array(delta)  # (0,0,w,h) itself is allowed
    _rewrite(meta / "localization.txt", lambda ls: ls + [f"{image_id},{','.join(map(str, box))}"])
    with pytest.raises(SimpoolBenchError, match=rf"localization\.txt:\d+: box .* outside its {w}x{h} image"):
        read_wsol_metadata(meta, root)


def test_inverted_box_and_duplicate_id(tmp_path):
    meta, root, truth = _make_split(tmp_path)
    _rewrite(meta / "localization.txt", lambda ls: ls + [f"{truth[0][0]},5,5,4,6"])
    with pytest.raises(SimpoolBenchError, match="inverted"):
        read_wsol_metadata(meta, root)
    meta, root, truth = _make_split(tmp_path / "b")
    _rewrite(meta / "image_ids.txt", lambda ls: ls + [truth[2][0]])
    with pytest.raises(SimpoolBenchError, match=r"image_ids\.txt:13: .*already listed on line 3"):
        read_wsol_metadata(meta, root)


def test_missing_images_first_and_count(tmp_path):
    meta, root, truth = _make_split(tmp_path)
    for k in (4, 7, 9):
        (root / truth[k][0]).unlink()
    with pytest.raises(SimpoolBenchError, match=rf"{Path(truth[4][0]).name} not found \(3 of 12 images missing\)"):
        read_wsol_metadata(meta, root)
    assert len(read_wsol_metadata(meta, root, check_images=False)) == 12
    with pytest.raises(SimpoolBenchError, match="no such directory"):
        read_wsol_metadata(tmp_path / "nometa", root)


def test_an_image_id_too_long_for_the_file_system_is_named_as_missing(tmp_path):
    """An id of 300 characters in all four files: Path.is_file() raised OSError (File name too long)."""
    meta, root, truth = _make_split(tmp_path)
    long_id = "c" * 300 + ".jpg"
    for name, line in (("image_ids.txt", long_id), ("class_labels.txt", f"{long_id},0"), ("image_sizes.txt", f"{long_id},9,9")):
        _rewrite(meta / name, lambda ls, line=line: ls + [line])
    _rewrite(meta / "localization.txt", lambda ls: ls + [f"{long_id},0,0,9,9"])
    with pytest.raises(SimpoolBenchError) as exc:
        read_wsol_metadata(meta, root)
    assert str(exc.value) == (
        f"wsol metadata {meta}: image {root / long_id} cannot be looked up (File name too long) (1 of 13 images missing)"
    )


# ------------------------------------------------------------------------------------- real metadata
REAL_SPLITS = {"CUB/test": 5794, "CUB/train": 5994, "CUB/val": 1000, "ILSVRC/test": 50000, "ILSVRC/val": 10000}


@functools.cache
def _real(split: str):
    return read_wsol_metadata(SHARED / split, Path("/nonexistent"), check_images=False)


@needs_real
@pytest.mark.parametrize("split, count", REAL_SPLITS.items())
def test_real_metadata(split, count):
    meta = SHARED / split
    records = _real(split)
    assert len(records) == count
    n_boxes = sum(1 for line in (meta / "localization.txt").read_text().splitlines() if line.strip())
    assert sum(len(r.boxes) for r in records) == n_boxes
    labels = {r.label for r in records}
    assert labels == set(range(200 if split.startswith("CUB") else 1000))
    # every box, resized as wsolevaluation does, lies inside the 224x224 image
    k = [len(r.boxes) for r in records]
    b = resize_boxes_wsol(
        np.concatenate([r.boxes for r in records]), np.repeat([r.width for r in records], k), np.repeat([r.height for r in records], k)
    )
    assert b.min() >= 0 and b.max() <= 223
    assert (b[:, 0] <= b[:, 2]).all() and (b[:, 1] <= b[:, 3]).all()
    one = records[len(records) // 2]  # spot check against the scalar form
    np.testing.assert_array_equal(
        resize_boxes_wsol(one.boxes, one.width, one.height),
        [
            [int(x0 * 224 / one.width), int(y0 * 224 / one.height), int(x1 * 224 / one.width), int(y1 * 224 / one.height)]
            for x0, y0, x1, y1 in one.boxes
        ],
    )


@needs_real
def test_imagenet_val_50000_is_the_wsol_test_split():
    """wsolevaluation's ILSVRC 'test' split is ILSVRC2012 val (50,000); its 'val' is ImageNetV2."""
    test = _real("ILSVRC/test")
    assert test[0].image_id == "val/ILSVRC2012_val_00000001.JPEG" and len(test) == 50000
    val = _real("ILSVRC/val")
    assert all(r.image_id.startswith("val2/") for r in val)


# Published first lines of CUB-200-2011's bounding_boxes.txt (x, y, width, height) and images.txt.
CUB_NATIVE_HEAD = {
    "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg": (60.0, 27.0, 325.0, 304.0),
    "001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg": (139.0, 30.0, 153.0, 264.0),
    "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg": (14.0, 112.0, 388.0, 186.0),
    "001.Black_footed_Albatross/Black_Footed_Albatross_0074_59.jpg": (112.0, 90.0, 255.0, 242.0),
    "001.Black_footed_Albatross/Black_Footed_Albatross_0014_89.jpg": (70.0, 50.0, 134.0, 303.0),
}


@needs_real
def test_cub_native_conversion_matches_wsolevaluation():
    loc = {}
    for split in ("train", "test"):
        for line in (SHARED / "CUB" / split / "localization.txt").read_text().splitlines():
            image_id, *box = line.split(",")
            loc[image_id] = tuple(int(v) for v in box)
    for image_id, xywh in CUB_NATIVE_HEAD.items():
        assert cub_box_to_wsol(*xywh) == loc[image_id]


# ------------------------------------------------------------------------------------- CUB native
def _make_cub(tmp_path: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    rows = []
    for n in range(1, 11):
        cls = int(rng.integers(1, 4))
        rel = f"{cls:03d}.Bird_{cls}/Bird_{cls}_{n:04d}_{rng.integers(99)}.jpg"
        w, h = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        x, y = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        bw, bh = int(rng.integers(1, w - x)), int(rng.integers(1, h - y))
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (n, 2 * n, 3 * n)).save(root / "images" / rel)
        rows.append((n, rel, cls, int(n % 3 != 0), (x, y, bw, bh), (w, h)))
    (root / "images.txt").write_text("".join(f"{n} {rel}\n" for n, rel, *_ in rows))
    (root / "image_class_labels.txt").write_text("".join(f"{r[0]} {r[2]}\n" for r in rows))
    (root / "train_test_split.txt").write_text("".join(f"{r[0]} {r[3]}\n" for r in rows))
    (root / "bounding_boxes.txt").write_text("".join(f"{r[0]} {r[4][0]:.1f} {r[4][1]:.1f} {r[4][2]:.1f} {r[4][3]:.1f}\n" for r in rows))
    return root, rows


@pytest.mark.parametrize("split, flag", [("test", 0), ("train", 1)])
def test_read_cub_native(tmp_path, split, flag):
    root, rows = _make_cub(tmp_path)
    records = read_cub_native(root, split)
    expect = [r for r in rows if r[3] == flag]
    assert len(records) == len(expect) > 0
    for rec, (_n, rel, cls, _, (x, y, bw, bh), (w, h)) in zip(records, expect):
        assert (rec.image_id, rec.path, rec.label, rec.width, rec.height) == (rel, root / "images" / rel, cls - 1, w, h)
        np.testing.assert_array_equal(rec.boxes, [[x, y, x + bw, y + bh]])


def test_read_cub_native_equals_wsol_metadata_reader(tmp_path):
    """The same data in both layouts gives the same records."""
    root, rows = _make_cub(tmp_path, seed=3)
    meta = tmp_path / "meta"
    meta.mkdir()
    test = [r for r in rows if r[3] == 0]
    (meta / "image_ids.txt").write_text("\n".join(r[1] for r in test))
    (meta / "class_labels.txt").write_text("\n".join(f"{r[1]},{r[2] - 1}" for r in test))
    (meta / "image_sizes.txt").write_text("\n".join(f"{r[1]},{r[5][0]},{r[5][1]}" for r in test))
    (meta / "localization.txt").write_text("\n".join(f"{r[1]},{r[4][0]},{r[4][1]},{r[4][0] + r[4][2]},{r[4][1] + r[4][3]}" for r in test))
    a, b = read_cub_native(root, "test"), read_wsol_metadata(meta, root / "images")
    assert [(r.image_id, r.path, r.label, r.width, r.height, r.boxes.tolist()) for r in a] == [
        (r.image_id, r.path, r.label, r.width, r.height, r.boxes.tolist()) for r in b
    ]


@pytest.mark.parametrize("name", ["images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"])
def test_read_cub_native_missing_file(tmp_path, name):
    root, _ = _make_cub(tmp_path)
    (root / name).unlink()
    with pytest.raises(SimpoolBenchError, match=name):
        read_cub_native(root)


def test_read_cub_native_errors(tmp_path):
    root, rows = _make_cub(tmp_path)
    with pytest.raises(SimpoolBenchError, match="'val'"):
        read_cub_native(root, "val")
    text = (root / "bounding_boxes.txt").read_text()
    (root / "bounding_boxes.txt").write_text(text + "11 1.0 2.0 x 4.0\n")
    with pytest.raises(SimpoolBenchError, match=r"bounding_boxes\.txt:11"):
        read_cub_native(root)
    # a test image's box wider than the image
    n, rel = next((r[0], r[1]) for r in rows if r[3] == 0)
    (root / "bounding_boxes.txt").write_text(
        "".join(
            f"{r[0]} 0.0 0.0 {r[5][0] + 1}.0 1.0\n" if r[0] == n else f"{r[0]} {r[4][0]:.1f} {r[4][1]:.1f} {r[4][2]:.1f} {r[4][3]:.1f}\n"
            for r in rows
        )
    )
    with pytest.raises(SimpoolBenchError, match=rf"outside.*{Path(rel).name}|{Path(rel).name}.*outside"):
        read_cub_native(root)


@pytest.mark.parametrize("split, flag", [("test", 1), ("train", 0)])
def test_read_cub_native_no_image_in_split_names_the_split_file(tmp_path, split, flag):
    """Every image marked for the other split: not 'the cub dataset is empty', but the split file
    and the split named."""
    root, rows = _make_cub(tmp_path)
    (root / "train_test_split.txt").write_text("".join(f"{r[0]} {flag}\n" for r in rows))
    with pytest.raises(SimpoolBenchError) as exc:
        read_cub_native(root, split)
    msg = str(exc.value)
    assert msg.startswith(f"{root / 'train_test_split.txt'}: none of the 10 images of images.txt is in split {split!r}")
    assert f"(is_training_image {1 - flag})" in msg and "\n" not in msg
    (root / "images.txt").write_text("")
    with pytest.raises(SimpoolBenchError, match=r"images\.txt: no images listed"):
        read_cub_native(root, split)


def test_read_cub_native_box_outside_plain_numbers_and_line(tmp_path):
    root, rows = _make_cub(tmp_path)
    n, rel, (w, h) = next((r[0], r[1], r[5]) for r in rows if r[3] == 0)
    lines = (root / "bounding_boxes.txt").read_text().splitlines()
    lines.insert(0, "")  # a blank line first: the box of image n is now on line n + 1
    lines[n] = f"{n} 5.0 6.0 {w}.0 1.5"
    (root / "bounding_boxes.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_cub_native(root, "test")
    assert str(exc.value) == (
        f"{root / 'bounding_boxes.txt'}:{n + 1} (image {n}, {rel}): box (x, y, x + width, y + height) = (5, 6, {w + 5}, 7) "
        f"is outside its {w}x{h} image (or inverted)"
    )


_BOX = "'<image_id> <x> <y> <width> <height>' (finite numbers)"
_FLAG = "'<image_id> <is_training_image>' (0 or 1)"


@pytest.mark.parametrize(
    "file, fields, expected",
    [
        # float() reads "nan" and "inf"; int() of them was a ValueError/OverflowError traceback
        *(("bounding_boxes.txt", f"1.0 2.0 {v} 4.0", _BOX) for v in ("nan", "inf", "-inf", "NaN")),
        # an image marked 2 was in neither split: a test run silently had one image fewer
        *(("train_test_split.txt", flag, _FLAG) for flag in ("2", "-1", "yes")),
    ],
)
def test_read_cub_native_bad_value_names_file_and_line(tmp_path, file, fields, expected):
    root, rows = _make_cub(tmp_path)
    n = next(r[0] for r in rows if r[3] == 0)
    lines = (root / file).read_text().splitlines()
    lines[n - 1] = f"{n} {fields}"
    (root / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_cub_native(root, "test")
    assert str(exc.value) == f"{root / file}:{n}: expected {expected}, got '{lines[n - 1]}'"


def test_read_cub_native_missing_image_and_unlisted(tmp_path):
    root, rows = _make_cub(tmp_path)
    test = [r for r in rows if r[3] == 0]
    (root / "images" / test[0][1]).unlink()
    with pytest.raises(SimpoolBenchError, match=rf"{Path(test[0][1]).name} not found \(1 of {len(test)}"):
        read_cub_native(root, "test")
    root, rows = _make_cub(tmp_path / "b")
    (root / "train_test_split.txt").write_text("".join(f"{r[0]} {r[3]}\n" for r in rows[:-1]))
    with pytest.raises(SimpoolBenchError, match=r"train_test_split\.txt: image 10 "):
        read_cub_native(root, "test")


def test_the_metadata_folder_names_the_split(tmp_path, make_wsol_dataset):
    """wsolevaluation's metadata/<DATASET>/<split>: a localize run on metadata/.../train recorded
    'test' (the default) without --split, and any --split given (a newcomer's 'tst') on test."""
    from simpool_bench import api
    from simpool_bench.readers import split_of

    wsol = make_wsol_dataset(tmp_path / "wsol", n=4)
    train = wsol.metadata.rename(wsol.metadata.parent / "train")
    engine = api.EngineConfig(device="cpu", workers=0, progress=False)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=train), baseline="center-gaussian")
    assert set(api.run_localize(spec, engine).table["split"]) == {"train"}
    with pytest.raises(SimpoolBenchError, match=r"--split tst: --metadata .*/train is wsolevaluation's 'train' split; drop --split"):
        api.run_localize(
            api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=train, split="tst"), baseline="full-box"), engine
        )
    assert split_of(api.DataSpec("cub", data=wsol.image_root, metadata=train, split="train"), "test") == "train"
    own = train.rename(train.parent / "fold3")  # not a wsolevaluation split name: --split labels it, else the default
    assert split_of(api.DataSpec("cub", metadata=own, split="fold3"), "test") == "fold3"
    assert split_of(api.DataSpec("cub", metadata=own), "test") == "test"
    assert split_of(api.DataSpec("voc07", split="trainval"), "trainval") == "trainval"


@pytest.mark.parametrize(
    "label, match",
    [
        ("3.7", r"class_labels\.txt:13: expected 'id,label' with an integer label"),
        ("-1", "negative class label -1"),
        # 10**30 was an OverflowError in localize's int64 label array; 2**63 became a negative label there
        (
            "1" + "0" * 30,
            r"class_labels\.txt:13: class label 1000000000000000000000000000000 is over 999,999; expected a 0-based class index$",
        ),
        (str(2**63), r"class_labels\.txt:13: class label 9223372036854775808 is over 999,999"),
        ("1000000", r"class_labels\.txt:13: class label 1000000 is over 999,999"),
    ],
)
def test_a_fractional_or_negative_class_label_is_refused(tmp_path, label, match):
    # wsolevaluation reads labels with int(): '3.7' is not a label (not 3), and labels are 0-based (-1 is none)
    meta, root, _ = _make_split(tmp_path)
    _rewrite(meta / "class_labels.txt", lambda ls: ls + [f"x.jpg,{label}"])
    with pytest.raises(SimpoolBenchError, match=match):
        read_wsol_metadata(meta, root)


def test_a_box_on_the_image_border_is_inside(tmp_path):
    """(0, 0, W, H), the whole image in wsolevaluation's convention, is read as it is."""
    meta, root, truth = _make_split(tmp_path)
    image_id, _, w, h, boxes = truth[3]
    _rewrite(meta / "localization.txt", lambda ls: ls + [f"{image_id},0,0,{w},{h}"])
    rec = read_wsol_metadata(meta, root)[3]
    assert rec.boxes.tolist() == [list(b) for b in boxes] + [[0, 0, w, h]]


def test_a_zero_image_size_is_refused(tmp_path):
    meta, root, truth = _make_split(tmp_path)
    _rewrite(meta / "image_sizes.txt", lambda ls: [f"{truth[0][0]},0,{truth[0][3]}"] + ls[1:])
    with pytest.raises(SimpoolBenchError) as exc:
        read_wsol_metadata(meta, root)
    assert str(exc.value) == f"{meta / 'image_sizes.txt'}:1: image size 0x{truth[0][3]} is not positive"


def test_an_image_size_larger_than_any_image_file_is_refused(tmp_path):
    """A size (and a box within it) of 10**400 pixels: the box array raised OverflowError (int too
    large to convert to float), a traceback; a size past 2**31 - 1 is now refused at its line."""
    meta, root, truth = _make_split(tmp_path)
    image_id, _, _, h, _ = truth[0]
    big = 10**400
    _rewrite(meta / "image_sizes.txt", lambda ls: [f"{image_id},{big},{h}"] + ls[1:])
    _rewrite(meta / "localization.txt", lambda ls: ls + [f"{image_id},0,0,{big},{h}"])
    with pytest.raises(SimpoolBenchError) as exc:
        read_wsol_metadata(meta, root)
    assert str(exc.value) == (
        f"{meta / 'image_sizes.txt'}:1: image size {big}x{h} is over 2147483647 pixels a side, more than an image file holds"
    )
    _rewrite(meta / "image_sizes.txt", lambda ls: [f"{image_id},2147483647,{h}"] + ls[1:])  # the largest a PNG can be: read
    _rewrite(meta / "localization.txt", lambda ls: ls[:-1])
    assert read_wsol_metadata(meta, root, check_images=False)[0].width == 2147483647


def test_read_cub_native_box_whose_far_corner_overflows_names_its_line(tmp_path):
    """x and width both finite (1e308) but x + width infinite: int() of it raised OverflowError."""
    root, rows = _make_cub(tmp_path)
    n = next(r[0] for r in rows if r[3] == 0)
    _rewrite(root / "bounding_boxes.txt", lambda ls: [f"{n} 1e308 0 1e308 1" if line.split()[0] == str(n) else line for line in ls])
    with pytest.raises(SimpoolBenchError) as exc:
        read_cub_native(root, "test")
    assert str(exc.value) == f"{root / 'bounding_boxes.txt'}:{n}: box 1e+308 0 1e+308 1 of image {n}: x + width or y + height is not finite"


def test_cub_fractional_box_truncates_the_sums():
    """int() of x + w, not int(x) + int(w): the far corner of (10.6, 5.5, 20.6, 7.7) is (31.2, 13.2) -> (31, 13)."""
    assert cub_box_to_wsol(10.6, 5.5, 20.6, 7.7) == (10, 5, 31, 13)


def test_read_cub_native_class_zero_is_refused(tmp_path):
    """CUB's image_class_labels.txt is 1-based: class 0 would be label -1, refused, not read as 'no label'."""
    root, rows = _make_cub(tmp_path)
    n = next(r[0] for r in rows if r[3] == 0)
    _rewrite(root / "image_class_labels.txt", lambda ls: [f"{n} 0" if line.split()[0] == str(n) else line for line in ls])
    with pytest.raises(SimpoolBenchError) as exc:
        read_cub_native(root, "test")
    assert str(exc.value) == f"{root / 'image_class_labels.txt'}: image {n} has class 0; CUB classes are 1-based"


def test_the_largest_class_label_reads(tmp_path):
    meta, root, truth = _make_split(tmp_path)
    _rewrite(meta / "class_labels.txt", lambda ls: [f"{truth[0][0]},999999"] + ls[1:])
    assert read_wsol_metadata(meta, root)[0].label == 999_999


def test_read_cub_native_class_past_the_largest_is_refused(tmp_path):
    """A class of 31 digits was kept as the label, an OverflowError in localize's int64 label array."""
    root, rows = _make_cub(tmp_path)
    n = next(r[0] for r in rows if r[3] == 0)
    for cls, label in (("1" + "0" * 30, None), ("1000001", None), ("1000000", 999_999)):
        _rewrite(root / "image_class_labels.txt", lambda ls, cls=cls: [f"{n} {cls}" if line.split()[0] == str(n) else line for line in ls])
        if label is not None:
            assert next(r for r in read_cub_native(root, "test") if r.image_id == rows[n - 1][1]).label == label
            continue
        with pytest.raises(SimpoolBenchError) as exc:
            read_cub_native(root, "test")
        assert str(exc.value) == f"{root / 'image_class_labels.txt'}: image {n} has class {cls}; expected a class id up to 1,000,000"
