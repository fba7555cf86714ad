"""Image decoding, ImageDataset, and the ImageNet-style readers (class folders, flat + labels, subsets)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets as tv_datasets
from torchvision import transforms as T

from simpool_bench.data.imagenet import read_flat_folder, read_image_folder, subset_per_class
from simpool_bench.data.images import ImageDataset, load_rgb
from simpool_bench.data.records import Record
from simpool_bench.errors import SimpoolBenchError


def _save(path: Path, arr: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format=fmt)
    return path


# ----------------------------------------------------------------------------------------- load_rgb
def test_load_rgb_modes(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    rgba = rng.integers(0, 256, (3, 3, 4), dtype=np.uint8)

    img = load_rgb(_save(tmp_path / "rgb.png", rgb))
    assert img.mode == "RGB" and img.size == (5, 7)
    np.testing.assert_array_equal(np.asarray(img), rgb)

    img = load_rgb(_save(tmp_path / "gray.png", gray))
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), np.repeat(gray[:, :, None], 3, axis=2))

    img = load_rgb(_save(tmp_path / "rgba.png", rgba))
    np.testing.assert_array_equal(np.asarray(img), rgba[:, :, :3])  # alpha dropped, not blended

    pal = Image.fromarray(rgb).quantize(colors=8)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "pal.png")), np.asarray(pal.convert("RGB")))


def test_load_rgb_max_pixels_is_the_largest_size_decoded(tmp_path):
    """--max-pixels N decodes an image of exactly N pixels and refuses N + 1 (before decoding),
    leaving PIL's own bomb limit as it was."""
    from simpool_bench.data.images import ImageTooLarge

    path = _save(tmp_path / "rgb.png", np.zeros((3, 4, 3), dtype=np.uint8))  # 4 x 3 = 12 pixels
    before = Image.MAX_IMAGE_PIXELS
    assert load_rgb(path, max_pixels=12).size == (4, 3)
    with pytest.raises(ImageTooLarge, match=r"is 4x3 \(12 pixels\), over the limit of 11"):
        load_rgb(path, max_pixels=11)
    assert before == Image.MAX_IMAGE_PIXELS


def test_the_placeholder_of_an_image_over_max_pixels_is_never_built_at_its_size(tmp_path):
    """An image refused as too large gets the transform of a 1x1 black image as its placeholder
    (zeros), never one of its own (huge) size; an ordinary failed image one of its record's size."""
    sizes = []

    def spy(img):
        sizes.append(img.size)
        return torch.ones(3, img.size[1], img.size[0])

    records = [Record("big", tmp_path / "big.png", 0, 20000, 10000), Record("small", tmp_path / "small.png", 0, 5, 4)]
    ds = ImageDataset(records, spy, warn=False, max_pixels=1000)
    (img, _, ok), (img2, _, ok2) = ds[0], ds[1]
    assert sizes == [(1, 1), (5, 4)] and not ok and not ok2
    assert img.shape == (3, 1, 1) and img2.shape == (3, 4, 5) and not img.any() and not img2.any()


@pytest.mark.parametrize("kind", ["garbage", "truncated_jpeg", "missing", "empty"])
def test_load_rgb_bad_files_name_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.jpg"
    if kind == "garbage":
        path.write_bytes(b"this is not an image" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated_jpeg":
        rng = np.random.default_rng(1)
        _save(path, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), fmt="JPEG")
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(SimpoolBenchError, match=path.name) as exc:
        load_rgb(path)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------- ImageDataset
def _records(tmp_path: Path) -> list[Record]:
    rng = np.random.default_rng(2)
    good = _save(tmp_path / "good.png", rng.integers(0, 256, (9, 13, 3), dtype=np.uint8))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    return [Record("good.png", good, 0, 13, 9), Record("bad.jpg", bad, 1, 5, 3), Record("bad2", bad, 1, 0, 0)]


def test_image_dataset_items_and_placeholders(tmp_path):
    recs = _records(tmp_path)
    fixed = T.Compose([T.Resize((8, 6)), T.ToTensor()])
    ds = ImageDataset(recs, fixed)
    assert len(ds) == 3
    img, i, ok = ds[0]
    assert (i, ok) == (0, True)
    assert img.shape == (3, 8, 6)
    torch.testing.assert_close(img, fixed(Image.open(recs[0].path).convert("RGB")))

    with pytest.warns(RuntimeWarning, match="bad.jpg"):
        img, i, ok = ds[1]
    assert (i, ok) == (1, False)
    assert img.shape == (3, 8, 6) and not img.any()

    # variable-size transform (LOST: full resolution): the placeholder has the record's size,
    # or 1x1 when the size is unknown; normalisation does not leak non-zeros
    full = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = ImageDataset(recs, full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ds[1][0].shape == (3, 3, 5) and not ds[1][0].any()
        assert ds[2][0].shape == (3, 1, 1) and ds[2][2] is False
    assert ds[0][0].shape == (3, 9, 13)


def test_image_dataset_strict_raises_naming_the_file(tmp_path):
    recs = _records(tmp_path)
    ds = ImageDataset(recs, T.ToTensor(), strict=True)
    assert ds[0][2] is True
    with pytest.raises(SimpoolBenchError, match="bad.jpg"):
        ds[1]


def test_image_dataset_warns_once_per_failure_unless_told_not_to(tmp_path):
    recs = _records(tmp_path)
    with pytest.warns(RuntimeWarning, match="bad.jpg.*counted as failed and skipped"):
        assert ImageDataset(recs, T.ToTensor())[1][2] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ImageDataset(recs, T.ToTensor(), warn=False)[1][2] is False


def test_image_dataset_pickles_and_runs_in_workers(tmp_path):
    recs = _records(tmp_path)
    ds = ImageDataset(recs[:1] * 3, T.Compose([T.Resize((4, 4)), T.ToTensor()]))
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[0][0], ds[0][0])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    imgs, idx, ok = next(iter(loader))
    assert imgs.shape == (3, 3, 4, 4) and idx.tolist() == [0, 1, 2] and ok.tolist() == [True] * 3
    assert ImageDataset(recs[:1], None)[0][0].shape == (3, 9, 13)  # None -> ToTensor


# --------------------------------------------------------------------------------- read_image_folder
def _tree(root: Path) -> None:
    files = [
        "n02/b.JPEG",
        "n02/a.jpeg",
        "n02/sub/z.png",
        "n02/sub-x/y.png",
        "n02/notes.txt",
        "n01/c.jpg",
        "n01/B.jpg",
        "n01/a.PNG",
        "n10/x.webp",
        "n03 space/q.bmp",
    ]
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_read_image_folder_matches_torchvision(tmp_path):
    _tree(tmp_path)
    records, classes = read_image_folder(tmp_path)
    ref = tv_datasets.ImageFolder(str(tmp_path), loader=lambda p: p)
    assert classes == ref.classes == ["n01", "n02", "n03 space", "n10"]
    assert [(str(r.path), r.label) for r in records] == [(p, t) for p, t in ref.samples]
    assert records[0].image_id == "n01/B.jpg"
    assert all(r.width == 0 and r.height == 0 and r.boxes.shape == (0, 4) for r in records)


def test_read_image_folder_a_file_link_to_itself_is_listed_as_torchvision_lists_it(tmp_path):
    """``n01/loop.jpg -> loop.jpg``: is_dir() raised OSError (too many levels of symbolic links), a
    traceback; os.walk takes such an entry as a file, so ImageFolder lists it (its decoding then fails,
    per image)."""
    _tree(tmp_path)
    (tmp_path / "n01" / "loop.jpg").symlink_to("loop.jpg")
    records, classes = read_image_folder(tmp_path)
    ref = tv_datasets.ImageFolder(str(tmp_path), loader=lambda p: p)
    assert [(str(r.path), r.label) for r in records] == [(p, t) for p, t in ref.samples]
    assert "n01/loop.jpg" in [r.image_id for r in records]


def test_read_image_folder_ids_are_the_paths_relative_to_the_root(tmp_path):
    """Ids (worked out once per folder) are ``path.relative_to(root).as_posix()``: nested folders,
    a followed folder link, names with spaces, a backslash, non-ASCII letters."""
    root = tmp_path / "data"
    arr = np.zeros((4, 5, 3), np.uint8)
    for rel in ("a/x.jpg", "a/sub/deeper/y b.jpg", "a/sub/z\\w.png", "b ü/é.jpeg", "b ü/1.jpg", "c/only.jpg"):
        _save(root / rel, arr)
    _save(tmp_path / "outside" / "linked.jpg", arr)
    (root / "c" / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    records, classes = read_image_folder(root)
    assert classes == ["a", "b ü", "c"]
    assert [r.image_id for r in records] == [r.path.relative_to(root).as_posix() for r in records]
    assert "c/link/linked.jpg" in [r.image_id for r in records] and "a/sub/deeper/y b.jpg" in [r.image_id for r in records]
    assert all(type(r.path) is type(root) for r in records)


def test_read_image_folder_ignores_hidden_and_fails_clearly(tmp_path):
    _tree(tmp_path)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "a.jpg").write_bytes(b"x")
    _, classes = read_image_folder(tmp_path)
    assert classes[0] == "n01"
    with pytest.raises(SimpoolBenchError, match="nope"):
        read_image_folder(tmp_path / "nope")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    with pytest.raises(SimpoolBenchError, match="no class sub-folders"):
        read_image_folder(flat)
    (tmp_path / "n05_empty").mkdir()
    with pytest.raises(SimpoolBenchError, match="n05_empty"):
        read_image_folder(tmp_path)


# --------------------------------------------------------------------------------- read_flat_folder
def _flat(tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "val"
    root.mkdir()
    for n in names:
        (root / n).write_bytes(b"x")
    return root


def test_read_flat_folder_int_labels_whitespace(tmp_path):
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)]
    root = _flat(tmp_path, names)
    labels = [65, 970, 230, 0, 65]
    lf = tmp_path / "val.txt"
    lf.write_text("\n".join(f"{n} {lab}" for n, lab in zip(names, labels)) + "\n\n")
    records, classes = read_flat_folder(root, lf)
    assert [(r.image_id, r.path, r.label) for r in records] == [(n, root / n, lab) for n, lab in zip(names, labels)]
    assert classes == [str(i) for i in range(971)]


def test_read_flat_folder_class_names_csv_with_header(tmp_path):
    names = ["a.jpg", "b.jpg", "c d.jpg", "e.jpg"]
    root = _flat(tmp_path, names)
    wnids = ["n03", "n01", "n02", "n01"]
    lf = tmp_path / "labels.csv"
    lf.write_text("filename,label\r\n" + "".join(f"{n},{w}\r\n" for n, w in zip(names, wnids)))
    records, classes = read_flat_folder(root, lf)
    assert classes == ["n01", "n02", "n03"]
    assert [r.label for r in records] == [2, 0, 1, 0]
    assert records[2].image_id == "c d.jpg"


def test_read_flat_folder_kaggle_loc_csv(tmp_path):
    names = ["ILSVRC2012_val_00008726", "ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"]
    root = _flat(tmp_path, [n + ".JPEG" for n in names])
    lf = tmp_path / "LOC_val_solution.csv"
    lf.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295 \n"
        "ILSVRC2012_val_00000001,n01751748 111 108 441 193 \n"
        "ILSVRC2012_val_00000002,n09193705 31 1 500 221 \n"
    )
    records, classes = read_flat_folder(root, lf)
    assert classes == ["n01751748", "n02119789", "n09193705"]
    assert [(r.image_id, r.label) for r in records] == [(names[0] + ".JPEG", 1), (names[1] + ".JPEG", 0), (names[2] + ".JPEG", 2)]


@pytest.mark.parametrize(
    "content, match",
    [
        ("a.jpg 1\nb.jpg n01\n", r"labels\.txt:2"),  # mixed ints and names
        ("a.jpg 1\nb.jpg\n", r"labels\.txt:2"),  # no label
        ("a.jpg 1\na.jpg 2\n", r"labels\.txt:2.*a\.jpg"),  # duplicate
        ("a.jpg 1\nzz.jpg 2\n", r"zz\.jpg.*1 of 2"),  # image missing on disk
        ("\n# only a comment\n", "no entries"),
        ("a.jpg 1\nb.jpg -1\n", r"labels\.txt:2: label '-1'; expected a class index >= 0 or a class name$"),
        ("a.jpg -2\nb.jpg -1\n", r"labels\.txt:1: label '-2'; expected a class index >= 0"),  # not two class names
        # the class list "0".."max" of a label 10**22 never finished (a hang), one of 5000 digits was a ValueError
        (
            "a.jpg 1\nb.jpg 10000000000000000000000\n",
            r"labels\.txt:2: label '10000000000000000000000' is over 999,999; expected a class index",
        ),
        ("a.jpg 1\nb.jpg " + "9" * 5000 + "\n", r"labels\.txt:2: label '9{80}…' is over 999,999"),
        ("a.jpg 1\nb.jpg 1000000\n", r"labels\.txt:2: label '1000000' is over 999,999"),
    ],
)
def test_read_flat_folder_errors(tmp_path, content, match):
    root = _flat(tmp_path, ["a.jpg", "b.jpg"])
    lf = tmp_path / "labels.txt"
    lf.write_text(content)
    with pytest.raises(SimpoolBenchError, match=match):
        read_flat_folder(root, lf)


@pytest.mark.parametrize("label", ["\u00b2", "\u2460", "\u00bd"])
def test_read_flat_folder_digit_like_label_is_a_class_name(tmp_path, label):
    # str.isdigit() is true for "²" and "①", which int() does not read: a ValueError traceback
    root = _flat(tmp_path, ["a.jpg", "b.jpg"])
    lf = tmp_path / "labels.txt"
    lf.write_text(f"a.jpg 1\nb.jpg {label}\n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_flat_folder(root, lf)
    assert str(exc.value) == f"{lf}:2: label {label!r} mixes with line 1's '1': labels must be all integers or all class names"
    lf.write_text(f"a.jpg x\nb.jpg {label}\n")
    records, classes = read_flat_folder(root, lf)
    assert classes == sorted(["x", label]) and [r.label for r in records] == [classes.index("x"), classes.index(label)]


def test_read_flat_folder_missing_files(tmp_path):
    root = _flat(tmp_path, ["a.jpg"])
    with pytest.raises(SimpoolBenchError, match="missing_labels.txt"):
        read_flat_folder(root, tmp_path / "missing_labels.txt")
    (tmp_path / "l.txt").write_text("a.jpg 0\n")
    with pytest.raises(SimpoolBenchError, match="nodir"):
        read_flat_folder(tmp_path / "nodir", tmp_path / "l.txt")


# --------------------------------------------------------------------------------- subset_per_class
def _simpool_subset(records: list[Record], n: int) -> list[Record]:
    """SimPool's utils.subset_of_ImageNet_train_split: first n indices of each label, labels in order
    of first appearance."""
    label2inds: dict[int, list[int]] = {}
    for idx, r in enumerate(records):
        label2inds.setdefault(r.label, []).append(idx)
    keep = [i for inds in label2inds.values() for i in inds[:n]]
    return [records[i] for i in keep]


def _class_records(seed: int, n_classes: int = 6) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        for j in range(int(rng.integers(5, 12))):
            out.append(Record(f"c{c}/{j:03d}.jpg", Path(f"c{c}/{j:03d}.jpg"), c))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subset_per_class_first_n_is_simpool(seed):
    records = _class_records(seed)
    for n in (1, 3, 5):
        got = subset_per_class(records, n)
        assert got == _simpool_subset(records, n)
        assert len(got) == 6 * n


def test_subset_per_class_seeded_and_errors():
    records = _class_records(3)
    a, b = subset_per_class(records, 4, seed=7), subset_per_class(records, 4, seed=7)
    assert a == b
    counts = np.bincount([r.label for r in a])
    assert counts.tolist() == [4] * 6
    pos = [records.index(r) for r in a]
    assert pos == sorted(pos)  # input order kept
    assert a != subset_per_class(records, 4)  # seed 7 is not the first-n subset here
    with pytest.raises(SimpoolBenchError, match="fewer than 50"):
        subset_per_class(records, 50)
    with pytest.raises(SimpoolBenchError, match="no class label"):
        subset_per_class([Record("x", Path("x"))], 1)
    with pytest.raises(SimpoolBenchError, match="n must be"):
        subset_per_class(records, 0)


def test_read_classification_data_names_its_parts(tmp_path, make_image_folder, make_wsol_dataset):
    """api.read_classification_data: ``.records`` and ``.classes`` by name (and still unpacks as a
    pair), with the class folders' names, a label file's, or None for wsolevaluation metadata."""
    from simpool_bench import api

    folder = api.read_classification_data(make_image_folder(tmp_path / "tree", counts=(2, 1)))
    records, classes = folder
    assert (records, classes) == (folder.records, folder.classes)
    assert folder.classes == ["ant", "bee"]
    assert [(r.image_id, r.label) for r in folder.records] == [("ant/000.jpg", 0), ("ant/001.jpg", 0), ("bee/000.jpg", 1)]
    root = _flat(tmp_path, ["a.jpg", "b.jpg"])
    (tmp_path / "labels.txt").write_text("a.jpg n02\nb.jpg n01\n")
    flat = api.read_classification_data(root, labels=tmp_path / "labels.txt")
    assert flat.classes == ["n01", "n02"] and [r.label for r in flat.records] == [1, 0]
    wsol = make_wsol_dataset(tmp_path / "wsol", n=4)
    meta = api.read_classification_data(wsol.image_root, metadata=wsol.metadata)
    assert meta.classes is None and len(meta.records) == 4


def test_classification_split_is_the_folder_read(tmp_path, make_image_folder):
    """The split a classify run records: --split, else the folder the images come from, so a class
    tree given directly (no val/ in it) is not recorded as 'val'; metadata: the default."""
    from simpool_bench.readers import classification_split

    root = tmp_path / "imagenet"
    make_image_folder(root / "val", counts=(1, 1))
    make_image_folder(tmp_path / "demo" / "test", counts=(1, 1))
    assert classification_split(root, None, default_split="val") == "val"  # imagenet/val, read as the default
    assert classification_split(root / "val", None, default_split="val") == "val"  # --data imagenet/val
    assert classification_split(tmp_path / "demo" / "test", None, default_split="val") == "test"  # no val/ inside: the tree itself
    assert classification_split(tmp_path / "demo", "test", default_split="val") == "test"  # --split
    flat = tmp_path / "held_out"  # a flat folder with a label file
    flat.mkdir()
    assert classification_split(flat, None, labels=tmp_path / "labels.txt", default_split="val") == "held_out"
    assert classification_split(flat, "val", labels=tmp_path / "labels.txt", default_split="val") == "val"
    assert classification_split(root, None, metadata=tmp_path / "meta", default_split="val") == "val"


def test_classify_records_the_folder_it_read(tmp_path, make_image_folder, make_tiny_checkpoint):
    """``classify --data DIR/test`` (class folders, no val/ inside) records split 'test' in its table."""
    from simpool_bench import api

    data = make_image_folder(tmp_path / "demo" / "test", counts=(2, 2))
    ckpt, _ = make_tiny_checkpoint(tmp_path / "tiny.pth.tar")
    spec = api.ClassifySpec(api.DataSpec("demo", data=data), api.ModelOptions(checkpoint=ckpt))
    res = api.run_classify(spec, api.EngineConfig(device="cpu", workers=0, progress=False))
    assert set(res.table["split"]) == {"test"}


def test_read_flat_folder_label_is_the_last_field_of_its_line(tmp_path):
    # the label is what follows the LAST separator: a file name may hold spaces (whitespace file) or commas (CSV)
    root = _flat(tmp_path, ["a b.jpg", "c,d.jpg"])
    lf = tmp_path / "val.txt"
    lf.write_text("a b.jpg 3\n")
    records, _ = read_flat_folder(root, lf)
    assert [(r.image_id, r.label) for r in records] == [("a b.jpg", 3)]
    lf.write_text("c,d.jpg,1\n")
    records, _ = read_flat_folder(root, lf)
    assert [(r.image_id, r.label) for r in records] == [("c,d.jpg", 1)]


def test_read_classification_data_subset_keeps_the_first_n_per_class(tmp_path, make_image_folder):
    # --subset N: the first N images of each class in sorted file order (counts 3, 2, 4 -> 2 of each)
    from simpool_bench.readers import read_classification_data

    root = make_image_folder(tmp_path / "tree", counts=(3, 2, 4))
    every = read_classification_data(root).records
    got = read_classification_data(root, subset=2).records
    ids = [r.image_id for r in every]
    assert ids == sorted(ids, key=lambda i: (i.split("/")[0], i))
    assert [r.image_id for r in got] == [i for i in ids if i.rsplit("/", 1)[1] in ("000.jpg", "001.jpg")]
    assert [r.label for r in got] == [0, 0, 1, 1, 2, 2]


def test_records_are_slotted_share_one_read_only_empty_box_array_and_pickle():
    """A split of 1.28M records (ImageNet train) holds no per-record ``__dict__`` and no per-record
    empty boxes array (benchmarks/record_memory.py: 801 -> 469 MiB); the shared array cannot be
    written through one record, and a record still pickles (spawned workers, ranks) and replaces."""
    import pickle
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from simpool_bench.data.records import NO_BOXES, Record

    a, b = Record("a.jpg", Path("/x/a.jpg"), 3), Record("b.jpg", Path("/x/b.jpg"), 4)
    assert not hasattr(a, "__dict__") and a.boxes is b.boxes is NO_BOXES and a.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="read-only"):
        a.boxes[...] = 1.0
    again = pickle.loads(pickle.dumps(replace(a, width=7, boxes=np.array([[1.0, 2.0, 3.0, 4.0]]))))
    assert (again.image_id, again.path, again.label, again.width, again.boxes.tolist()) == ("a.jpg", Path("/x/a.jpg"), 3, 7, [[1, 2, 3, 4]])
    assert pickle.loads(pickle.dumps(b)).boxes.shape == (0, 4)


def test_read_flat_folder_header_word_is_a_file_name_after_the_first_line(tmp_path):
    """Only a first line can be a header: a later entry named 'image' is an image (files without suffix exist)."""
    root = _flat(tmp_path, ["a.jpg", "image"])
    lf = tmp_path / "labels.txt"
    lf.write_text("a.jpg,n02\nimage,n01\n")
    records, classes = read_flat_folder(root, lf)
    assert [(r.image_id, r.label) for r in records] == [("a.jpg", 1), ("image", 0)] and classes == ["n01", "n02"]


def test_load_rgb_ignores_exif_orientation(tmp_path):
    """The references decode with Image.open(path).convert("RGB"): an EXIF Orientation (6: rotate
    90) is not applied, so the pixels and size are the stored ones (boxes refer to them)."""
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "rot.png", exif=exif.tobytes())
    with Image.open(tmp_path / "rot.png") as im:
        assert im.getexif()[0x0112] == 6
    img = load_rgb(tmp_path / "rot.png")
    assert img.size == (6, 4)
    np.testing.assert_array_equal(np.asarray(img), arr)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG of ``width`` x ``height`` (8-bit RGB) holding one byte of pixel data: the size without the pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    return path


def test_image_dataset_default_pixel_limit_is_pils(tmp_path):
    """Without max_pixels, ImageDataset refuses what PIL would warn about (--max-pixels' default), by its header."""
    from simpool_bench.data.images import ImageTooLarge

    path = _png_header(tmp_path / "big.png", 9460, 9460)  # 89,491,600 pixels, over 89,478,485
    ds = ImageDataset([Record("big.png", path, 0, 9460, 9460)], None, strict=True)
    with pytest.raises(ImageTooLarge) as exc:
        ds[0]
    assert str(exc.value) == f"image {path} is 9460x9460 (89,491,600 pixels), over the limit of 89,478,485 (--max-pixels)"


def test_image_dataset_failure_names_the_file_when_it_loads_on_a_second_read(tmp_path):
    """failure(i) reads the file again for the one-line error; a file that now loads (it was
    replaced meanwhile) is still named."""
    path = _save(tmp_path / "ok.png", np.zeros((2, 3, 3), np.uint8))
    ds = ImageDataset([Record("ok.png", path, 0, 3, 2)], None)
    assert ds.failure(0) == f"image {path} did not load"
    path.write_bytes(b"not an image")
    assert ds.failure(0).startswith(f"cannot decode image {path}: UnidentifiedImageError")


def test_read_flat_folder_largest_class_index_reads(tmp_path):
    """MAX_CLASS_INDEX itself is a class index: its 1,000,000 class names are built."""
    root = _flat(tmp_path, ["a.jpg", "b.jpg"])
    lf = tmp_path / "labels.txt"
    lf.write_text("a.jpg 999999\nb.jpg 3\n")
    records, classes = read_flat_folder(root, lf)
    assert [r.label for r in records] == [999_999, 3]
    assert len(classes) == 1_000_000 and classes[-1] == "999999"


def test_read_flat_folder_a_name_too_long_for_the_file_system_is_named_as_missing(tmp_path):
    """A label-file name of 300 characters: Path.is_file() raised OSError (File name too long)."""
    root = _flat(tmp_path, ["a.jpg"])
    lf = tmp_path / "labels.txt"
    long_name = "b" * 300 + ".jpg"
    lf.write_text(f"a.jpg 0\n{long_name} 1\n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_flat_folder(root, lf)
    assert str(exc.value) == (
        f"label file {lf}: image {root / long_name} cannot be looked up (File name too long) (1 of 2 listed images missing)"
    )
