"""Dataset manifests and ``verify_dataset``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from simpool_bench.data import manifests as M
from simpool_bench.data import wsol as W
from simpool_bench.data.inputs import join_inside
from simpool_bench.data.manifests import list_manifests, load_manifest, verify_dataset
from simpool_bench.data.wsol import read_cub_native
from simpool_bench.errors import SimpoolBenchError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO_MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests"

# Image counts the protocols rely on (SPEC.md sections 4-5; wsolevaluation; LOST).
EXPECTED_COUNTS = {
    ("cub_test", "test"): 5794,
    ("cub_native", "test"): 5794,
    ("imagenet_val", "test"): 50000,
    ("imagenet_val_folder", "val"): 50000,
    ("voc07", "trainval"): 5011,
    ("voc12", "trainval"): 11540,
    ("coco20k", "train"): 19817,
}


def test_manifests_are_found_next_to_the_package():
    assert M.MANIFEST_DIR == REPO_MANIFESTS
    names = list_manifests()
    assert names == sorted(p.stem for p in REPO_MANIFESTS.glob("*.json"))
    for name in names:
        m = load_manifest(name)
        assert m["name"] == name and m["splits"]
        assert json.loads((REPO_MANIFESTS / f"{name}.json").read_text()) == m


@pytest.mark.parametrize("key, count", EXPECTED_COUNTS.items())
def test_manifest_counts(key, count):
    name, split = key
    assert load_manifest(name)["splits"][split]["images"] == count


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared data not found at {SHARED}")
def test_manifest_checksums_are_those_of_the_real_files():
    sources = {
        "cub_test": SHARED / "wsol_metadata/CUB/test",
        "cub_train": SHARED / "wsol_metadata/CUB/train",
        "cub_val": SHARED / "wsol_metadata/CUB/val",
        "imagenet_val": SHARED / "wsol_metadata/ILSVRC/test",
        "imagenetv2_val": SHARED / "wsol_metadata/ILSVRC/val",
    }
    n = 0
    for name, folder in sources.items():
        for rel, digest in load_manifest(name)["sha256"].items():
            assert rel.startswith("{metadata}/")
            assert hashlib.sha256((folder / rel.split("/", 1)[1]).read_bytes()).hexdigest() == digest
            n += 1
        split = next(iter(load_manifest(name)["splits"].values()))
        assert split["images"] == len((folder / "image_ids.txt").read_text().split("\n"))
    coco = load_manifest("coco20k")["sha256"]["coco_20k_filenames.txt"]
    assert hashlib.sha256((SHARED / "lost/coco_20k_filenames.txt").read_bytes()).hexdigest() == coco
    assert n == 20


def test_unknown_name_and_missing_folder():
    with pytest.raises(SimpoolBenchError, match=r"unknown dataset 'voc99'.*voc07"):
        load_manifest("voc99")
    with pytest.raises(SimpoolBenchError, match="manifests folder .*nowhere"):
        list_manifests("/nowhere")


def test_a_name_with_a_folder_in_it_is_unknown_not_a_file_outside_the_manifests(tmp_path):
    """NAME '../outside' read <manifests>/../outside.json, a file outside the manifests folder."""
    mdir = tmp_path / "manifests"
    _write_manifest(mdir, {"name": "a", "splits": {}})
    (tmp_path / "outside.json").write_text(json.dumps({"name": "outside", "splits": {}}))
    for name in ("../outside", "sub/a", str(tmp_path / "outside")):
        with pytest.raises(SimpoolBenchError) as exc:
            load_manifest(name, mdir)
        assert str(exc.value) == f"unknown dataset {name!r}: expected one of a"
    assert load_manifest("a", mdir)["name"] == "a"


def test_bad_manifest(tmp_path):
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(SimpoolBenchError, match=r"x\.json: invalid JSON"):
        load_manifest("x", tmp_path)
    (tmp_path / "y.json").write_text(json.dumps({"name": "y", "splits": {"a": {"images": 3, "layout": "zip"}}}))
    with pytest.raises(SimpoolBenchError, match="split 'a'"):
        load_manifest("y", tmp_path)


# ------------------------------------------------------------------------- verify: real manifests
@pytest.mark.skipif(not (SHARED / "wsol_metadata/CUB/test").is_dir(), reason="real CUB metadata not found")
def test_verify_cub_test_with_real_metadata(tmp_path):
    root = tmp_path / "CUB"
    shutil.copytree(SHARED / "wsol_metadata/CUB/test", root / "metadata")
    ids = (root / "metadata/image_ids.txt").read_text().splitlines()
    for d in {i.split("/")[0] for i in ids}:
        (root / d).mkdir()
    for i in ids:
        (root / i).touch()
    report = verify_dataset("cub_test", root)
    assert report.ok, report.summary()
    assert "split test: 5794 images listed" in report.checked

    # the same check with the metadata elsewhere
    meta = tmp_path / "elsewhere"
    (root / "metadata").rename(meta)
    assert not verify_dataset("cub_test", root).ok
    assert verify_dataset("cub_test", root, metadata_dir=meta).ok

    # broken: a missing image, an edited metadata file
    (root / ids[10]).unlink()
    (root / ids[20]).unlink()
    loc = meta / "localization.txt"
    loc.write_text(loc.read_text().replace(",60,27,385,331", ",61,27,385,331", 1))
    report = verify_dataset("cub_test", root, metadata_dir=meta)
    assert not report.ok
    assert any(p.startswith("split test: 2 of 5794 listed files missing, first") and ids[10] in p for p in report.problems)
    assert any("checksum mismatch" in p and "localization.txt" in p for p in report.problems)
    assert len(report.problems) == 2


def _voc_tree(root: Path, n: int, missing: int = -1) -> list[str]:
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    ids = [f"{k:06d}" for k in range(n)]
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(ids) + "\n")
    for k, i in enumerate(ids):
        (root / "Annotations" / f"{i}.xml").touch()
        if k != missing:
            (root / "JPEGImages" / f"{i}.jpg").touch()
    return ids


def test_verify_voc07_counts_and_missing(tmp_path):
    root = tmp_path / "VOC2007"
    ids = _voc_tree(root, 5011)
    report = verify_dataset("voc07", root)
    assert report.ok, report.summary()
    assert any("optional split" in c and "test.txt" in c for c in report.checked)

    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(ids[:-1]))
    (root / "ImageSets/Main/test.txt").write_text("1\n2\n")
    (root / "JPEGImages" / f"{ids[7]}.jpg").unlink()
    report = verify_dataset("voc07", root)
    assert not report.ok
    assert "split trainval: 5010 images listed, expected 5011" in report.problems
    assert any(p.startswith("split trainval: 1 of 10020 listed files missing") and f"{ids[7]}.jpg" in p for p in report.problems)
    assert any(p.startswith("split test: 2 images listed, expected 4952") for p in report.problems)


def test_verify_refuses_an_id_listed_twice(tmp_path):
    """A list with one id twice and one missing has the published count and no missing file: verify
    passed it, while `discover` refuses the list."""
    root = tmp_path / "VOC2007"
    ids = _voc_tree(root, 5011)
    trainval = root / "ImageSets/Main/trainval.txt"
    trainval.write_text("\n".join([*ids[:-1], ids[3]]) + "\n")
    report = verify_dataset("voc07", root)
    assert report.problems == [f"split trainval: 1 id listed more than once in {trainval}, first {ids[3]!r}"]


def test_verify_reads_a_list_as_the_reader_does(tmp_path):
    """A byte-order mark and CRLF line ends are read as `discover` reads them (the first id was
    reported missing with the mark in its name); a list that is not UTF-8 is a problem of the
    report (it was a UnicodeDecodeError traceback)."""
    root = tmp_path / "VOC2007"
    ids = _voc_tree(root, 5011)
    trainval = root / "ImageSets/Main/trainval.txt"
    trainval.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(ids).encode() + b"\r\n")
    report = verify_dataset("voc07", root)
    assert report.ok, report.summary()
    assert "split trainval: all 10022 listed files present" in report.checked
    trainval.write_bytes(b"\n".join(i.encode() for i in ids[:-1]) + b"\n\xe9t\xe9\n")
    report = verify_dataset("voc07", root)
    assert report.problems == [f"split trainval: {trainval}: not UTF-8 text (byte {7 * 5010}: b'\\xe9t\\xe9\\n')"]


def test_verify_missing_layout_named(tmp_path):
    root = tmp_path / "VOC2012"
    root.mkdir()
    report = verify_dataset("voc12", root)
    assert not report.ok
    assert f"missing folder {root / 'Annotations'}" in report.problems
    assert f"missing file {root / 'ImageSets/Main/trainval.txt'}" in report.problems
    assert f"split trainval: missing list file {root / 'ImageSets/Main/trainval.txt'}" in report.problems
    report = verify_dataset("voc12", tmp_path / "absent")
    assert not report.ok and "no such directory" in report.problems[0]
    assert "1 problem(s)" in report.summary()


def test_verify_cli_prints_each_line_whole_and_paths_as_they_are(tmp_path):
    """`datasets verify` to a file or pipe (rich's 80 columns): one line per check, the path whole,
    a '[...]' in a folder name printed as it is (not read as markup)."""
    from conftest import invoke_cli

    root = tmp_path / "a_rather_long_folder_name_for_datasets[copy]" / "VOCdevkit" / "VOC2012"
    root.mkdir(parents=True)
    res = invoke_cli("datasets", "verify", "voc12", root)
    assert res.exit_code == 1, res.output
    assert f"✗ missing folder {root / 'Annotations'}" in res.stdout.splitlines()
    assert f"✗ split trainval: missing list file {root / 'ImageSets/Main/trainval.txt'}" in res.stdout.splitlines()


def test_verify_cli_exit_codes_tell_a_differing_copy_from_bad_input(tmp_path):
    """1: the copy differs from its manifest; 2, one error line: a PATH that is no folder or an
    unknown NAME (a missing PATH exited 1, as a copy that differs)."""
    from conftest import invoke_cli, said

    (tmp_path / "VOC2012").mkdir()
    assert invoke_cli("datasets", "verify", "voc12", tmp_path / "VOC2012").exit_code == 1
    res = invoke_cli("datasets", "verify", "voc12", tmp_path / "absent")
    assert res.exit_code == 2 and said(res).startswith(f"error: {tmp_path / 'absent'}: no such directory"), res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    res = invoke_cli("datasets", "verify", "voc13", tmp_path / "VOC2012")
    assert res.exit_code == 2 and said(res).startswith("error:"), res.output
    (tmp_path / "CUB").mkdir()  # a --metadata folder that is not there is bad input too (it exited 1, a copy that differs)
    res = invoke_cli("datasets", "verify", "cub_test", tmp_path / "CUB", "--metadata", tmp_path / "meta")
    assert (
        res.exit_code == 2
        and said(res)
        == f"error: --metadata {tmp_path / 'meta'}: no such folder (the wsolevaluation metadata folder, e.g. metadata/CUB/test)"
    )


def test_verify_a_folder_one_level_off_is_bad_input_naming_the_folder_meant(tmp_path):
    """VOCdevkit (or its parent) for VOCdevkit/VOC2012, or a sub-folder of it: every required file
    was listed missing, exit 1 as a copy that differs; it is the wrong folder, exit 2 in one line
    naming the folder meant. An empty folder still lists what is missing (exit 1)."""
    from conftest import invoke_cli, said

    root = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    (root / "ImageSets/Main/trainval.txt").write_text("2008_000001\n")
    for wrong in (root.parent, tmp_path / "voc", root / "JPEGImages"):
        assert verify_dataset("voc12", wrong).meant == root
        res = invoke_cli("datasets", "verify", "voc12", wrong)
        assert res.exit_code == 2, res.output
        assert said(res) == f"error: {wrong}: none of voc12's required files are here; did you mean {root}?"
        assert len(res.output.strip().splitlines()) == 1
    assert verify_dataset("voc12", root).meant is None
    (tmp_path / "empty").mkdir()
    assert verify_dataset("voc12", tmp_path / "empty").meant is None
    assert invoke_cli("datasets", "verify", "voc12", tmp_path / "empty").exit_code == 1


# ------------------------------------------------------------------- verify: generated manifests
def _write_manifest(d: Path, m: dict) -> None:
    d.mkdir(exist_ok=True)
    (d / f"{m['name']}.json").write_text(json.dumps(m))


def _tiny_image_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest 'tiny' of one ImageFolder split (6 images, 3 classes) and such a copy: (manifests, root)."""
    mdir = tmp_path / "manifests"
    split = {"images": 6, "classes": 3, "layout": "image_folder", "folder": "."}
    _write_manifest(mdir, {"name": "tiny", "required": [], "sha256": {}, "splits": {"val": split}})
    root = tmp_path / "val"
    for c in ("n1", "n2", "n3"):
        for j in range(2):
            p = root / c / f"{j}.JPEG"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    return mdir, root


def test_verify_image_folder_layout(tmp_path):
    mdir, root = _tiny_image_folder(tmp_path)
    (root / "n1" / "readme.txt").touch()
    assert verify_dataset("tiny", root, directory=mdir).ok
    (root / "n4").mkdir()
    (root / "n4" / "a.jpg").touch()
    report = verify_dataset("tiny", root, directory=mdir)
    assert report.problems == [
        f"split val: 4 class folders in {root / '.'}, expected 3",
        f"split val: 7 images in {root / '.'}, expected 6",
    ]


def test_verify_image_folder_counts_each_image_once_as_the_reader(tmp_path):
    """A folder symlink that loops, or leads to a folder already counted, is not followed (as
    `classify` reads the tree); verify followed it and counted 451 images of a 6-image copy."""
    from simpool_bench.data.imagenet import read_image_folder

    mdir, root = _tiny_image_folder(tmp_path)
    (root / "n1" / "loop").symlink_to("..")
    (root / "n2" / "again").symlink_to(root / "n3")
    with pytest.warns(UserWarning, match="2 folder symlink"):
        assert len(read_image_folder(root)[0]) == 6
    report = verify_dataset("tiny", root, directory=mdir)
    assert report.ok, report.summary()
    assert f"split val: 6 images in {root / '.'}" in report.checked


def test_verify_cub_native_layout(tmp_path):
    mdir = tmp_path / "manifests"
    manifest = load_manifest("cub_native")
    manifest["splits"]["test"]["images"] = 2
    manifest["splits"]["train"]["images"] = 3
    _write_manifest(mdir, manifest)
    root = tmp_path / "CUB_200_2011"
    (root / "images/001.A").mkdir(parents=True)
    names = [f"001.A/{k}.jpg" for k in range(5)]
    for n in names:
        (root / "images" / n).touch()
    (root / "images.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(names)))
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 1\n4 0\n5 1\n")
    for f in ("image_class_labels.txt", "bounding_boxes.txt"):
        (root / f).touch()
    report = verify_dataset("cub_native", root, directory=mdir)
    assert report.ok, report.summary()
    (root / "images" / names[3]).unlink()
    (root / "bounding_boxes.txt").unlink()
    report = verify_dataset("cub_native", root, directory=mdir)
    assert f"missing file {root / 'bounding_boxes.txt'}" in report.problems
    assert f"split test: 1 of 2 listed files missing, first {root / 'images' / names[3]}" in report.problems
    assert len(report.problems) == 2


def test_verify_checksum_of_optional_file(tmp_path):
    mdir = tmp_path / "manifests"
    body = b"train2014/COCO_train2014_000000000001.jpg\n"
    _write_manifest(
        mdir,
        {
            "name": "c",
            "required": [],
            "sha256": {"list.txt": hashlib.sha256(body).hexdigest()},
            "splits": {"train": {"images": 1, "layout": "list", "list": "list.txt", "files": ["{id}"]}},
        },
    )
    root = tmp_path / "coco"
    (root / "train2014").mkdir(parents=True)
    report = verify_dataset("c", root, directory=mdir)
    assert f"missing file {root / 'list.txt'} (checksum expected)" in report.problems
    (root / "list.txt").write_bytes(body)
    (root / "train2014/COCO_train2014_000000000001.jpg").touch()
    assert verify_dataset("c", root, directory=mdir).ok


def test_bad_manifest_missing_key_or_image_count(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps({"splits": {}}))
    with pytest.raises(SimpoolBenchError, match=r"n\.json: missing key 'name'$"):
        load_manifest("n", tmp_path)
    (tmp_path / "s.json").write_text(json.dumps({"name": "s"}))
    with pytest.raises(SimpoolBenchError, match=r"s\.json: missing key 'splits'$"):
        load_manifest("s", tmp_path)
    (tmp_path / "i.json").write_text(json.dumps({"name": "i", "splits": {"a": {"images": "3", "layout": "list"}}}))
    with pytest.raises(SimpoolBenchError, match=r"i\.json: split 'a' needs 'images' \(int\)"):
        load_manifest("i", tmp_path)


def test_verify_a_missing_path_is_its_one_problem(tmp_path):
    report = verify_dataset("voc12", tmp_path / "absent")
    assert report.problems == [f"{tmp_path / 'absent'}: no such directory (the VOCdevkit/VOC2012 folder)"]
    assert report.checked == [] and report.meant is None


def test_verify_a_file_where_a_folder_is_required_and_the_reverse(tmp_path):
    mdir = tmp_path / "manifests"
    split = {"images": 1, "layout": "list", "list": "list.txt", "files": []}
    _write_manifest(mdir, {"name": "r", "required": ["ann/", "list.txt"], "sha256": {}, "splits": {"s": split}})
    root = tmp_path / "copy"
    (root / "list.txt").mkdir(parents=True)
    (root / "ann").write_text("")
    report = verify_dataset("r", root, directory=mdir)
    assert report.problems == [
        f"missing folder {root / 'ann'}",
        f"missing file {root / 'list.txt'}",
        f"split s: missing list file {root / 'list.txt'}",
    ]


def test_verify_a_partial_copy_is_not_taken_for_a_folder_one_level_off(tmp_path):
    """Some required files here: the copy differs (exit 1), even with a whole copy beside it; none
    here and a folder near that holds only some of them: no folder to suggest either."""
    root = tmp_path / "VOC2012"
    _voc_tree(root, 3)
    shutil.rmtree(root / "Annotations")
    whole = root / "whole"
    _voc_tree(whole, 3)
    assert verify_dataset("voc12", root).meant is None
    part = tmp_path / "up" / "part"
    (part / "JPEGImages").mkdir(parents=True)
    assert verify_dataset("voc12", tmp_path / "up").meant is None


def test_verify_a_missing_checksummed_required_file_is_one_problem(tmp_path):
    mdir = tmp_path / "manifests"
    split = {"images": 1, "layout": "list", "list": "list.txt", "files": ["{id}"]}
    _write_manifest(mdir, {"name": "c", "required": ["list.txt"], "sha256": {"list.txt": "0" * 64}, "splits": {"s": split}})
    root = tmp_path / "copy"
    root.mkdir()
    report = verify_dataset("c", root, directory=mdir)
    assert report.problems == [f"missing file {root / 'list.txt'}", f"split s: missing list file {root / 'list.txt'}"]


def test_verify_image_folder_counts_class_folders_as_the_reader(tmp_path):
    """A file beside the class folders is no class; a hidden folder is not read (``read_image_folder``)."""
    from simpool_bench.data.imagenet import read_image_folder

    mdir, root = _tiny_image_folder(tmp_path)
    (root / "LICENSE.jpg").touch()
    (root / ".cache").mkdir()
    (root / ".cache" / "0.jpg").touch()
    records, classes = read_image_folder(root)[:2]
    assert len(records) == 6 and len(classes) == 3
    report = verify_dataset("tiny", root, directory=mdir)
    assert report.ok, report.summary()
    assert report.checked == [f"split val: 6 images in {root / '.'}"]


def test_verify_a_list_counts_its_ids_not_blank_lines_or_padding(tmp_path):
    mdir = tmp_path / "manifests"
    split = {"images": 2, "layout": "list", "list": "list.txt", "files": ["img/{id}.jpg"]}
    _write_manifest(mdir, {"name": "l", "required": [], "sha256": {}, "splits": {"s": split}})
    root = tmp_path / "copy"
    (root / "img").mkdir(parents=True)
    for i in ("a", "b"):
        (root / "img" / f"{i}.jpg").touch()
    (root / "list.txt").write_text("a  \n\n  \nb\n\n")
    report = verify_dataset("l", root, directory=mdir)
    assert report.ok, report.summary()
    assert report.checked == ["split s: 2 images listed", "split s: all 2 listed files present"]
    (root / "list.txt").write_text("a\nb\nb\na\nc\n")
    report = verify_dataset("l", root, directory=mdir)
    assert report.problems == [
        f"split s: 2 ids listed more than once in {root / 'list.txt'}, first 'a'",
        "split s: 5 images listed, expected 2",
        f"split s: 1 of 5 listed files missing, first {root / 'img' / 'c.jpg'}",
    ]


def test_verify_a_list_without_files_checks_the_count_only(tmp_path):
    mdir = tmp_path / "manifests"
    _write_manifest(mdir, {"name": "n", "required": [], "splits": {"s": {"images": 1, "layout": "list", "list": "l.txt"}}})
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "l.txt").write_text("x\n")
    assert verify_dataset("n", tmp_path / "copy", directory=mdir).checked == ["split s: 1 images listed"]


def test_verify_cub_native_paths_with_spaces_and_unparsable_lists(tmp_path):
    mdir = tmp_path / "manifests"
    manifest = load_manifest("cub_native")
    manifest["splits"] = {"test": {**manifest["splits"]["test"], "images": 1}}
    _write_manifest(mdir, manifest)
    root = tmp_path / "CUB_200_2011"
    (root / "images/001.A").mkdir(parents=True)
    (root / "images/001.A/a b.jpg").touch()
    (root / "images.txt").write_text("1 001.A/a b.jpg\n2 001.A/c.jpg\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n")
    for f in ("image_class_labels.txt", "bounding_boxes.txt"):
        (root / f).touch()
    report = verify_dataset("cub_native", root, directory=mdir)
    assert report.ok, report.summary()
    (root / "train_test_split.txt").write_text("1 0\n2\n")
    report = verify_dataset("cub_native", root, directory=mdir)
    expected = "expected '<image_id> <is_training_image>' (0 or 1), got '2'"
    assert report.problems == [f"split test: {root / 'train_test_split.txt'}:2: {expected}"]


def test_verify_reads_cub_native_lists_as_read_cub_native_does(tmp_path):
    """A byte-order mark, CRLF ends and ids written "01" are read as the reader reads them (verify
    split the lines itself and compared the ids as text: the first image fell out of its split); an
    image without a split line and a path leading out of images/ are problems, as the reader
    refuses both."""
    mdir = tmp_path / "manifests"
    manifest = load_manifest("cub_native")
    manifest["splits"] = {"test": {**manifest["splits"]["test"], "images": 2}}
    _write_manifest(mdir, manifest)
    root = tmp_path / "CUB_200_2011"
    (root / "images/001.A").mkdir(parents=True)
    for n in ("a", "b", "c"):
        (root / f"images/001.A/{n}.jpg").touch()
    (root / "images.txt").write_bytes(b"\xef\xbb\xbf1 001.A/a.jpg\r\n2 001.A/b.jpg\r\n3 001.A/c.jpg\r\n")
    (root / "train_test_split.txt").write_text("01 0\n2 1\n3 0\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 1\n")
    (root / "bounding_boxes.txt").write_text("1 0 0 1 1\n2 0 0 1 1\n3 0 0 1 1\n")
    report = verify_dataset("cub_native", root, directory=mdir)
    assert report.ok, report.summary()
    assert "split test: all 2 listed files present" in report.checked

    (root / "train_test_split.txt").write_text("1 0\n3 0\n")
    (root / "images.txt").write_text("1 001.A/a.jpg\n2 001.A/b.jpg\n3 ../../c.jpg\n")
    report = verify_dataset("cub_native", root, directory=mdir)
    assert report.problems == [
        f"split test: 1 image(s) of {root / 'images.txt'} not in {root / 'train_test_split.txt'}, first image 2",
        f"split test: 1 id in {root / 'images.txt'} absolute or leading out of the data folder (the readers refuse them), first '../../c.jpg'",
        f"split test: 1 of 2 listed files missing, first {root / 'images' / '../../c.jpg'}",
    ]
    with pytest.raises(SimpoolBenchError, match=r"train_test_split.txt: image 2 \(001.A/b.jpg\) of images.txt is not listed"):
        read_cub_native(root, "test")


def test_verify_refuses_the_list_ids_the_readers_refuse(tmp_path):
    """An id that is absolute or leads out of the data folder passed verify when the file it names
    exists, while `discover` refuses the list (join_inside)."""
    root = tmp_path / "VOC2007"
    ids = _voc_tree(root, 5011)
    outside = tmp_path / "x"
    outside.mkdir()
    for f in ("y.jpg", "y.xml", "z.jpg", "z.xml"):
        (outside / f).touch()
    trainval = root / "ImageSets/Main/trainval.txt"
    bad = ["../../x/y", "../../x/z"]  # JPEGImages/../../x/y.jpg and Annotations/../../x/y.xml exist
    trainval.write_text("\n".join([*ids[:-2], *bad]) + "\n")
    report = verify_dataset("voc07", root)
    assert report.problems == [
        f"split trainval: 2 ids in {trainval} absolute or leading out of the data folder (the readers refuse them), first '../../x/y'"
    ]
    absolute = str(outside / "y")
    trainval.write_text("\n".join([*ids[:-1], absolute]) + "\n")
    report = verify_dataset("voc07", root)
    assert report.problems[0] == (
        f"split trainval: 1 id in {trainval} absolute or leading out of the data folder (the readers refuse them), first {absolute!r}"
    )
    for reader_id in [*bad, absolute]:  # the reader's own verdict on each
        with pytest.raises(SimpoolBenchError, match="absolute path|points outside"):
            join_inside(root / "JPEGImages", reader_id, str(trainval))
    trainval.write_text("\n".join([*ids[:-1], "./" + ids[-1]]) + "\n")  # inside: the readers take it
    assert verify_dataset("voc07", root).ok


def test_verify_reports_an_unreadable_file_and_goes_on(tmp_path, monkeypatch):
    """A file the user cannot read (permissions, I/O errors) is one problem of the report, and the
    other checks still run; it was an OSError out of verify_dataset."""
    root = tmp_path / "VOC2007"
    _voc_tree(root, 5011)
    trainval = root / "ImageSets/Main/trainval.txt"
    sha_file = root / "ImageSets/Main/test.txt"
    mdir = tmp_path / "manifests"
    manifest = load_manifest("voc07")
    manifest["sha256"] = {"ImageSets/Main/test.txt": "0" * 64}
    _write_manifest(mdir, manifest)
    sha_file.write_text("1\n")
    real_read_lines = M.read_lines

    def deny(path):
        if Path(path) in (trainval, sha_file):
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_lines(path)

    def deny_hash(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(M, "read_lines", deny)
    monkeypatch.setattr(M, "sha256_file", deny_hash)
    report = verify_dataset("voc07", root, directory=mdir)
    assert report.problems == [
        f"cannot read {sha_file}: Permission denied",
        f"split trainval: cannot read {trainval}: Permission denied",
        f"split test: cannot read {sha_file}: Permission denied",
    ]
    assert f"file {root / 'ImageSets/Main/trainval.txt'}" in report.checked

    (root / "train_test_split.txt").touch()
    (root / "images.txt").touch()
    mdir2 = tmp_path / "manifests2"
    _write_manifest(
        mdir2, {"name": "c", "required": [], "sha256": {}, "splits": {"test": {"images": 0, "layout": "cub_native", "is_train": 0}}}
    )
    monkeypatch.setattr(W, "read_lines", lambda path: deny(root / "ImageSets/Main/trainval.txt"))
    assert verify_dataset("c", root, directory=mdir2).problems == [f"split test: cannot read {trainval}: Permission denied"]


def test_published_data_of_a_split_of_a_manifest_of_several(tmp_path):
    mdir = tmp_path / "manifests"
    splits = {"a": {"images": 3, "layout": "list", "list": "a.txt"}, "b": {"images": 5, "layout": "list", "list": "b.txt"}}
    _write_manifest(mdir, {"name": "two", "splits": splits, "data_sha256": {"d/b": "1" * 64}})
    assert M.published_data("d", "b", mdir) == M.PublishedData("two", 5, "1" * 64)
    assert M.published_data("d", "a", mdir) is None
    assert M.published_as("1" * 64, mdir) == ("d", "b") and M.published_as("2" * 64, mdir) is None


def test_unpublished_data_names_the_manifest_to_verify_against():
    """CUB read without a metadata folder is its native layout: ``cub_native`` is the manifest that
    names what differs; other data, the split's own manifest."""
    from simpool_bench.data.inputs import UnpublishedDataWarning

    for dataset, split, manifest in (("cub", "val", "cub_native"), ("imagenet", "test", "imagenet_val")):
        with pytest.warns(UnpublishedDataWarning) as caught:
            M.note_unpublished(dataset, split, "0" * 64, 3, data=Path("/d"))
        assert len(caught) == 1
        assert f"`simpool-bench datasets verify {manifest} /d` names what differs" in str(caught[0].message)


def test_verify_looks_for_the_folder_meant_among_twenty_sub_folders_of_each(tmp_path):
    """A folder of thousands (a class folder) is not searched whole for a dataset root."""
    up = tmp_path / "up"
    for k in range(21):
        (up / f"d{k:02d}").mkdir(parents=True)
    _voc_tree(up / "d20", 1)
    assert verify_dataset("voc12", up).meant is None
    _voc_tree(up / "d05", 1)
    assert verify_dataset("voc12", up).meant == up / "d05"


def test_verify_metadata_paths_default_to_path_metadata(tmp_path):
    mdir = tmp_path / "manifests"
    split = {"images": 1, "layout": "list", "list": "{metadata}/ids.txt", "files": ["{id}"]}
    _write_manifest(mdir, {"name": "w", "required": ["{metadata}/ids.txt"], "splits": {"s": split}})
    root = tmp_path / "copy"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "ids.txt").write_text("a.jpg\n")
    (root / "a.jpg").touch()
    report = verify_dataset("w", root, directory=mdir)
    assert report.ok and report.checked[0] == f"file {root / 'metadata' / 'ids.txt'}", report.summary()


def test_verify_an_id_too_long_for_the_file_system_is_a_problem_not_a_traceback(tmp_path):
    """A list line of 300 characters names a file the OS refuses to look up (ENAMETOOLONG): is_file()
    raised OSError out of verify_dataset, which reports problems with the data and goes on."""
    root = tmp_path / "VOC2007"
    ids = _voc_tree(root, 5011)
    long_id = "a" * 300
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join([*ids[:-1], long_id]) + "\n")
    report = verify_dataset("voc07", root)
    assert report.problems == [f"split trainval: cannot check {root / 'JPEGImages' / (long_id + '.jpg')}: File name too long"]
    assert "split trainval: 5011 images listed" in report.checked
