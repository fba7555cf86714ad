"""VOC07/VOC12 reader against LOST's pipeline (torchvision VOCDetection + extract_gt_VOC)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import VOCDetection

from simpool_bench.data.voc import read_voc
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.readers import read_discovery_data, read_map_data

CLASSES = ["person", "dog", "car", "bottle", "chair"]


def _object_xml(name: str, box: tuple[int, int, int, int], truncated: int, difficult: int, part: bool) -> str:
    xmin, ymin, xmax, ymax = box
    extra = ""
    if part:  # VOC person-layout parts carry their own <bndbox>: not objects
        extra = "<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>"
    return (
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>{truncated}</truncated>\n"
        f"\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
        f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>{extra}\n\t</object>\n"
    )


def _annotation_xml(image_id: str, w: int, h: int, objects: list[str]) -> str:
    return (
        f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t\t<annotation>PASCAL VOC2007</annotation>\n"
        "\t\t<image>flickr</image>\n\t</source>\n\t<owner>\n\t\t<name>?</name>\n\t</owner>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n" + "".join(objects) + "</annotation>\n"
    )


def _make_voc(tmp_path: Path, seed: int = 0, n: int = 14, year: str = "2007") -> Path:
    """A VOCdevkit/VOC<year> tree with odd image sizes, 0-4 objects per image (all-hard images too)."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "VOCdevkit" / f"VOC{year}"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    ids = []
    for k in range(n):
        image_id = f"{year}_{k:06d}" if year == "2012" else f"{k * 3 + 5:06d}"
        w, h = int(rng.integers(17, 90)), int(rng.integers(13, 90))
        objs = []
        n_obj = [1, 2, 3, 4, 0][k % 5]
        all_hard = k % 7 == 3
        for j in range(n_obj):
            x0, x1 = sorted(rng.integers(1, w + 1, 2).tolist())
            y0, y1 = sorted(rng.integers(1, h + 1, 2).tolist())
            if j == 0 and k % 4 == 0:
                x0, y0, x1, y1 = 1, 1, w, h  # covers the whole image
            trunc = 1 if all_hard else int(rng.random() < 0.3)
            diff = 1 if (all_hard and not trunc) else int(rng.random() < 0.2)
            objs.append(_object_xml(CLASSES[int(rng.integers(len(CLASSES)))], (x0, y0, x1, y1), trunc, diff, part=bool(j == 1)))
        (root / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, w, h, objs))
        Image.new("RGB", (w, h), (k, 0, 0)).save(root / "JPEGImages" / f"{image_id}.jpg")
        ids.append(image_id)
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids[::2]) + "\n")
    return root


def _write_50x40(root: Path, image_id: str, objects: list[str]) -> None:
    """Image ``image_id`` made 50x40, its annotation with ``objects`` (the <size> is the file's)."""
    (root / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, 50, 40, objects))
    Image.new("RGB", (50, 40)).save(root / "JPEGImages" / f"{image_id}.jpg")


def _lost_reference(root: Path, year: str, split: str, no_hard: bool):
    """LOST: torchvision VOCDetection targets -> extract_gt_VOC; with --no_hard, images whose GT is
    empty after removing hard objects are skipped (main_lost.py)."""
    ds = VOCDetection(str(root.parent.parent), year=year, image_set=split, download=False)
    out = []
    for k in range(len(ds)):
        _, target = ds[k]
        objects = target["annotation"]["object"]
        boxes = []
        for o in objects:
            if no_hard and (o["truncated"] == "1" or o["difficult"] == "1"):
                continue
            bb = o["bndbox"]
            x1y1x2y2 = [int(bb["xmin"]), int(bb["ymin"]), int(bb["xmax"]), int(bb["ymax"])]
            x1y1x2y2[0] -= 1
            x1y1x2y2[1] -= 1
            boxes.append(x1y1x2y2)
        if no_hard and len(boxes) == 0:
            continue
        size = target["annotation"]["size"]
        out.append((Path(ds.images[k]).stem, int(size["width"]), int(size["height"]), boxes))
    return out


@pytest.mark.parametrize("no_hard", [False, True])
@pytest.mark.parametrize("year", ["2007", "2012"])
def test_read_voc_matches_lost(tmp_path, year, no_hard):
    root = _make_voc(tmp_path, seed=int(year), year=year)
    records = read_voc(root, "trainval", no_hard=no_hard)
    ref = _lost_reference(root, year, "trainval", no_hard)
    assert [r.image_id for r in records] == [x[0] for x in ref]
    for r, (image_id, w, h, boxes) in zip(records, ref):
        assert (r.path, r.label, r.width, r.height) == (root / "JPEGImages" / f"{image_id}.jpg", -1, w, h)
        np.testing.assert_array_equal(r.boxes, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    n_all = len((root / "ImageSets/Main/trainval.txt").read_text().split())
    if no_hard:
        assert len(records) < n_all  # the all-hard and object-less images are gone
    else:
        assert len(records) == n_all
        assert any(len(r.boxes) == 0 for r in records) and max(len(r.boxes) for r in records) == 4


def test_read_voc_conventions_by_hand(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    objs = [
        _object_xml("dog", (1, 1, 33, 21), 0, 0, False),  # whole image -> (0, 0, W, H)
        _object_xml("cat", (5, 6, 10, 12), 1, 0, True),  # truncated
        _object_xml("cat", (2, 3, 4, 5), 0, 1, False),  # difficult
    ]
    (root / "Annotations" / "000001.xml").write_text(_annotation_xml("000001", 33, 21, objs))
    (root / "Annotations" / "000002.xml").write_text(_annotation_xml("000002", 10, 12, [objs[1]]))
    for i in ("000001", "000002"):
        (root / "JPEGImages" / f"{i}.jpg").write_bytes(b"x")
    (root / "ImageSets/Main/trainval.txt").write_text("000001\n000002\n")
    recs = read_voc(root)
    assert recs[0].boxes.tolist() == [[0, 0, 33, 21], [4, 5, 10, 12], [1, 2, 4, 5]]
    assert recs[1].boxes.tolist() == [[4, 5, 10, 12]]
    hard = read_voc(root, no_hard=True)
    assert [r.image_id for r in hard] == ["000001"] and hard[0].boxes.tolist() == [[0, 0, 33, 21]]


def test_read_voc_other_split_and_fractional(tmp_path):
    root = _make_voc(tmp_path)
    ids = (root / "ImageSets/Main/train.txt").read_text().split()
    assert [r.image_id for r in read_voc(root, "train")] == ids
    _write_50x40(root, ids[1], [_object_xml("dog", (2, 3, 4, 5), 0, 0, False).replace("<xmax>4<", "<xmax>4.5<")])
    rec = next(r for r in read_voc(root, "train") if r.image_id == ids[1])
    assert rec.boxes.tolist() == [[1, 2, 4.5, 5]]


@pytest.mark.parametrize("value", ["24.5", "4.999", "nan"])
def test_fractional_coordinate_refused_for_discover_named(tmp_path, value):
    """LOST's int() cannot read '24.5': discover (integer_coords) refuses it while reading, naming
    the XML file, the tag and the value; extract/visualize (read_map_data) keep reading it as a float."""
    root = _make_voc(tmp_path, n=4)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    xml = root / "Annotations" / f"{ids[1]}.xml"
    _write_50x40(root, ids[1], [_object_xml("dog", (2, 3, 30, 5), 0, 0, False).replace("<xmin>2<", f"<xmin>{value}<")])
    want = f"VOC annotation {xml}: <xmin> is {value!r}; LOST reads integer pixel coordinates"
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root, integer_coords=True)
    assert str(exc.value) == want
    with pytest.raises(SimpoolBenchError) as exc:
        read_discovery_data("voc07", root)
    assert str(exc.value) == want
    if value != "nan":  # a NaN box is refused as not finite either way
        rec = next(r for r in read_map_data("voc07", root) if r.image_id == ids[1])
        assert rec.boxes.tolist() == [[float(value) - 1, 2, 30, 5]]


def test_integral_float_coordinate_kept_for_discover(tmp_path):
    """'24.0' is not what LOST's int() reads either, but it scored before as 24: unchanged."""
    root = _make_voc(tmp_path, n=4)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    _write_50x40(root, ids[1], [_object_xml("dog", (2, 3, 30, 5), 0, 0, False).replace("<xmax>30<", "<xmax>30.0<")])
    for records in (read_voc(root, integer_coords=True), read_voc(root)):
        assert next(r for r in records if r.image_id == ids[1]).boxes.tolist() == [[1, 2, 30, 5]]


def test_fractional_hard_object_dropped_by_no_hard_is_not_read(tmp_path):
    """As LOST's extract_gt_VOC: with --no_hard a hard object is skipped before its box is read."""
    root = _make_voc(tmp_path, n=4)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    objs = [
        _object_xml("dog", (2, 3, 30, 5), 0, 0, False),
        _object_xml("cat", (2, 3, 30, 5), 0, 1, False).replace("<xmin>2<", "<xmin>2.5<"),
    ]
    _write_50x40(root, ids[1], objs)
    rec = next(r for r in read_voc(root, no_hard=True, integer_coords=True) if r.image_id == ids[1])
    assert rec.boxes.tolist() == [[1, 2, 30, 5]]
    with pytest.raises(SimpoolBenchError, match=r"<xmin> is '2\.5'"):
        read_voc(root, integer_coords=True)


@pytest.mark.parametrize("missing", ["Annotations", "JPEGImages", "ImageSets/Main/trainval.txt"])
def test_read_voc_missing_layout_named(tmp_path, missing):
    root = _make_voc(tmp_path, n=3)
    target = root / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(SimpoolBenchError, match=str(target).replace("/", ".")):
        read_voc(root)


def test_read_voc_missing_images_and_annotations(tmp_path):
    root = _make_voc(tmp_path)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    (root / "JPEGImages" / f"{ids[2]}.jpg").unlink()
    (root / "JPEGImages" / f"{ids[5]}.jpg").unlink()
    with pytest.raises(SimpoolBenchError, match=rf"image .*{ids[2]}\.jpg not found \(2 of {len(ids)}"):
        read_voc(root)
    (root / "Annotations" / f"{ids[7]}.xml").unlink()
    with pytest.raises(SimpoolBenchError, match=rf"annotation .*{ids[7]}\.xml not found \(1 of"):
        read_voc(root)


@pytest.mark.parametrize(
    "xml, match",
    [
        ("<annotation><object><name>dog</name>", "malformed"),  # truncated XML
        ("<annotation><size><width>9</width><height>9</height></size><object><name>d</name></object></annotation>", "no <bndbox>"),
        (
            "<annotation><object><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>",
            "not a number",
        ),
        (  # an empty tag is there: it is not a number, not "no <bndbox>/<xmin>"
            "<annotation><object><bndbox><xmin></xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>",
            "<xmin> is '', not a number",
        ),
        ("<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object></annotation>", "no <bndbox>/<ymax>"),
        ("<notvoc/>", "root element"),
        ('<!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>', "malformed"),  # entities refused (defusedxml)
        # an encoding Python does not know: expat's LookupError was a traceback
        ('<?xml version="1.0" encoding="bogus"?><annotation/>', ": unknown encoding: bogus in its <?xml ...?> declaration"),
    ],
)
def test_read_voc_malformed_xml_named(tmp_path, xml, match):
    root = _make_voc(tmp_path, n=4)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    (root / "Annotations" / f"{ids[1]}.xml").write_text(xml)
    with pytest.raises(SimpoolBenchError, match=rf"{ids[1]}\.xml") as exc:
        read_voc(root)
    assert match in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("box", [(0, 1, 5, 5), (1, 0, 5, 5), (1, 1, 21, 5), (1, 1, 5, 11), (-3, 2, 25, 14)])
def test_a_box_outside_its_image_is_kept_as_lost_keeps_it_with_one_warning(tmp_path, box):
    """LOST's extract_gt_VOC takes every box as written and its IoU does not clip: a box reaching
    outside its image (xmin 0, xmax beyond the width, ...) is kept as LOST's, counted in one
    DataWarning that names the first (it was an error, which refused the whole split)."""
    from simpool_bench.data.inputs import DataWarning

    root = _make_voc(tmp_path, n=5)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    for image_id in (ids[1], ids[3]):
        (root / "Annotations" / f"{image_id}.xml").write_text(
            _annotation_xml(image_id, 20, 10, [_object_xml("dog", (2, 2, 6, 6), 0, 0, False), _object_xml("cat", box, 0, 0, False)])
        )
        Image.new("RGB", (20, 10)).save(root / "JPEGImages" / f"{image_id}.jpg")
    with pytest.warns(DataWarning) as caught:
        records = read_voc(root)
    for r, (image_id, _, _, boxes) in zip(records, _lost_reference(root, "2007", "trainval", no_hard=False), strict=True):
        assert r.image_id == image_id
        np.testing.assert_array_equal(r.boxes, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    assert records[1].boxes.tolist()[1] == [box[0] - 1, box[1] - 1, box[2], box[3]]
    said = [str(c.message) for c in caught if issubclass(c.category, DataWarning)]
    xmin, ymin, xmax, ymax = box
    assert said == [
        f"VOC annotations {root / 'Annotations'}: 2 box(es) in 2 of 5 images reach outside the image (first: "
        f"{root / 'Annotations' / (ids[1] + '.xml')} box (xmin={xmin}, ymin={ymin}, xmax={xmax}, ymax={ymax}) in its 20x10 image); "
        "kept as they are, as LOST keeps them"
    ]


def test_boxes_on_the_image_border_are_inside(tmp_path):
    """(1, 1, W, H), VOC's whole image, is (0, 0, W, H): inside, no warning."""
    import warnings

    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    (root / "Annotations" / f"{ids[0]}.xml").write_text(_annotation_xml(ids[0], 20, 10, [_object_xml("dog", (1, 1, 20, 10), 0, 0, False)]))
    Image.new("RGB", (20, 10)).save(root / "JPEGImages" / f"{ids[0]}.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_voc(root)[0].boxes.tolist() == [[0, 0, 20, 10]]


@pytest.mark.parametrize(
    "box, said",
    [
        ((6, 1, 4, 5), "is inverted: xmax below xmin - 1 or ymax below ymin - 1"),
        ((1, 5, 4, 3), "is inverted"),
        ((1, 1, "inf", 5), "is not four finite numbers"),
    ],
)
def test_an_inverted_or_infinite_box_is_refused_naming_its_file(tmp_path, box, said):
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    (root / "Annotations" / f"{ids[0]}.xml").write_text(_annotation_xml(ids[0], 20, 10, [_object_xml("dog", box, 0, 0, False)]))
    with pytest.raises(SimpoolBenchError, match=rf"VOC annotation .*{ids[0]}\.xml: box \(xmin=.*\) {said}"):
        read_voc(root)


def test_read_voc_bad_split_file(tmp_path):
    root = _make_voc(tmp_path, n=3)
    split = root / "ImageSets/Main/trainval.txt"
    split.write_text("000005 -1\n")
    with pytest.raises(SimpoolBenchError, match=r"trainval\.txt:1: expected one image id"):
        read_voc(root)
    split.write_text("000005\n000005\n")
    with pytest.raises(SimpoolBenchError, match=r"trainval\.txt:2: .*already listed"):
        read_voc(root)


def test_size_differing_from_the_image_file_is_the_files_with_one_warning(tmp_path):
    """LOST never reads <size>: it pads, boxes and clips on the decoded image. A <size> that is not
    the file's gives way to the file's (its header, as PIL reads it), counted in one DataWarning."""
    from simpool_bench.data.inputs import DataWarning

    root = _make_voc(tmp_path)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    for image_id, (dw, dh) in ((ids[2], (30, 0)), (ids[5], (7, 11))):
        xml = root / "Annotations" / f"{image_id}.xml"
        with Image.open(root / "JPEGImages" / f"{image_id}.jpg") as im:
            w, h = im.size
        text = xml.read_text()
        xml.write_text(
            text.replace(f"<width>{w}</width>", f"<width>{w + dw}</width>").replace(f"<height>{h}</height>", f"<height>{h + dh}</height>")
        )
    with pytest.warns(DataWarning) as caught:
        records = read_voc(root)
    for r in records:
        with Image.open(r.path) as im:
            assert (r.width, r.height) == im.size
    with Image.open(root / "JPEGImages" / f"{ids[2]}.jpg") as im:
        w, h = im.size
    said = [str(c.message) for c in caught if issubclass(c.category, DataWarning)]
    assert said == [
        f"VOC annotations {root / 'Annotations'}: 2 of {len(ids)} image sizes differ from the image files "
        f"(first: {ids[2]} listed {w + 30}x{h}, file {w}x{h}); the files' sizes are used, as LOST does"
    ]


def test_size_written_as_an_integral_float_reads_as_that_integer(tmp_path):
    """LOST never reads <size>: "50.0" (as some converters write it) is 50, as "24.0" is for a box
    coordinate; it was refused as 'not integers'."""
    import warnings

    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    _write_50x40(root, ids[1], [_object_xml("dog", (1, 1, 50, 40), 0, 0, False)])
    xml = root / "Annotations" / f"{ids[1]}.xml"
    xml.write_text(
        xml.read_text().replace("<width>50</width>", "<width>50.0</width>").replace("<height>40</height>", "<height>40.</height>")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the size is the file's: no size warning
        records = read_voc(root)
    assert (records[1].width, records[1].height) == (50, 40)
    np.testing.assert_array_equal(records[1].boxes, [[0, 0, 50, 40]])


@pytest.mark.parametrize("tag, value", [("width", "50.5"), ("height", "forty"), ("height", "nan")])
def test_size_not_a_whole_number_names_the_tag_and_value(tmp_path, tag, value):
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    _write_50x40(root, ids[1], [_object_xml("dog", (1, 1, 5, 5), 0, 0, False)])
    xml = root / "Annotations" / f"{ids[1]}.xml"
    old = {"width": "<width>50</width>", "height": "<height>40</height>"}[tag]
    xml.write_text(xml.read_text().replace(old, f"<{tag}>{value}</{tag}>"))
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root)
    assert str(exc.value) == f"malformed VOC annotation {xml}: <size>/<{tag}> is {value!r}; expected a whole number of pixels"


def test_records_come_in_split_file_order_not_sorted(tmp_path):
    """LOST's VOCDetection reads the split file in its own order; so does read_voc (not sorted by id)."""
    root = _make_voc(tmp_path, n=5)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    shuffled = [ids[3], ids[0], ids[4], ids[2], ids[1]]
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(shuffled) + "\n")
    records = read_voc(root)
    assert [r.image_id for r in records] == shuffled
    assert [r.image_id for r in records] == [x[0] for x in _lost_reference(root, "2007", "trainval", no_hard=False)]


def test_an_object_without_hard_flags_is_not_hard(tmp_path):
    """Hard means <truncated> or <difficult> written "1" (surrounding spaces aside); an object that
    has neither tag stays under no_hard (LOST itself would fail with a KeyError on it)."""
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    plain = _object_xml("dog", (2, 3, 10, 12), 0, 0, False).replace("\t\t<truncated>0</truncated>\n", "")
    plain = plain.replace("\t\t<difficult>0</difficult>\n", "")
    spaced = _object_xml("cat", (4, 4, 8, 8), 0, 0, False).replace("<difficult>0<", "<difficult> 1 <")
    _write_50x40(root, ids[1], [plain, spaced])
    rec = next(r for r in read_voc(root, no_hard=True) if r.image_id == ids[1])
    assert rec.boxes.tolist() == [[1, 2, 10, 12]]


def test_a_zero_width_box_is_not_inverted(tmp_path):
    """xmax = xmin - 1 is the empty box (xmin - 1, ., xmax, .): kept, as LOST keeps it; one less is inverted."""
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    _write_50x40(root, ids[1], [_object_xml("dog", (5, 6, 4, 5), 0, 0, False)])
    assert next(r for r in read_voc(root) if r.image_id == ids[1]).boxes.tolist() == [[4, 5, 4, 5]]


def test_an_empty_split_file_is_refused(tmp_path):
    root = _make_voc(tmp_path, n=3)
    split = root / "ImageSets/Main/trainval.txt"
    split.write_text("\n  \n")
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root)
    assert str(exc.value) == f"{split}: no image ids"


def test_an_id_too_long_for_the_file_system_is_named_as_missing(tmp_path):
    """A split line of 300 characters: Path.is_file() raised OSError (File name too long)."""
    root = _make_voc(tmp_path, n=4)
    split = root / "ImageSets/Main/trainval.txt"
    long_id = "a" * 300
    split.write_text(split.read_text() + long_id + "\n")
    xml = root / "Annotations" / f"{long_id}.xml"
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root)
    assert str(exc.value) == f"{split}: annotation {xml} cannot be looked up (File name too long) (1 of 5 listed annotations missing)"


@pytest.mark.parametrize("integer_coords", [False, True])
@pytest.mark.parametrize(
    "xmin, xmax, said", [("1", "9" * 400, "xmin=1, ymin=1, xmax=inf"), ("-" + "9" * 400, "4", "xmin=-inf, ymin=1, xmax=4")]
)
def test_an_integer_coordinate_past_float_range_is_not_finite(tmp_path, integer_coords, xmin, xmax, said):
    """<xmax> of 400 digits: float(int(text)) raised OverflowError (int too large to convert to float)."""
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    xml = root / "Annotations" / f"{ids[0]}.xml"
    xml.write_text(_annotation_xml(ids[0], 20, 10, [_object_xml("dog", (xmin, 1, xmax, 5), 0, 0, False)]))
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root, integer_coords=integer_coords)
    assert str(exc.value) == f"VOC annotation {xml}: box ({said}, ymax=5) is not four finite numbers"


@pytest.mark.parametrize("value", ["9" * 400, "1e300", "2147483648"])
def test_a_size_larger_than_any_image_file_is_refused(tmp_path, value):
    """A <width> of 400 digits, kept where the image does not decode, was compared with the boxes
    past float64's range: OverflowError in warn_boxes_outside."""
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    xml = root / "Annotations" / f"{ids[0]}.xml"
    xml.write_text(_annotation_xml(ids[0], value, 10, [_object_xml("dog", (1, 1, 4, 5), 0, 0, False)]))
    (root / "JPEGImages" / f"{ids[0]}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SimpoolBenchError) as exc:
        read_voc(root)
    shown = value if len(value) <= 80 else value[:80] + "…"
    assert str(exc.value) == f"malformed VOC annotation {xml}: <size>/<width> is {shown!r}; expected at most 2147483647 pixels"


def test_the_largest_size_an_image_file_can_have_reads(tmp_path):
    root = _make_voc(tmp_path, n=3)
    ids = (root / "ImageSets/Main/trainval.txt").read_text().split()
    xml = root / "Annotations" / f"{ids[0]}.xml"
    xml.write_text(_annotation_xml(ids[0], "2147483647", 10, [_object_xml("dog", (1, 1, 4, 5), 0, 0, False)]))
    (root / "JPEGImages" / f"{ids[0]}.jpg").write_bytes(b"not a jpeg")  # the size stays the annotation's
    assert read_voc(root)[0].width == 2147483647
