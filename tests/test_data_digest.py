"""``data_sha256``: every run records what data it evaluated (ids, labels, sizes, boxes; not paths or
file times), and ``check`` fails a run whose data differ from the baseline's, as it does for a
changed protocol, so that a gate never compares numbers of two different data sets."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simpool_bench import api
from simpool_bench.data.inputs import UnpublishedDataWarning
from simpool_bench.data.records import Record, records_sha256

from conftest import build_voc_dataset, build_wsol_dataset
from conftest import invoke_cli as invoke


def _records(boxes: list[list[float]], labels: list[int]) -> list[Record]:
    return [
        Record(f"cls/{i}.jpg", Path("/a") / f"{i}.jpg", label, 50 + i, 40, np.asarray([b], dtype=np.int64))
        for i, (b, label) in enumerate(zip(boxes, labels))
    ]


def test_digest_covers_ids_labels_sizes_boxes_and_order_not_paths():
    base = _records([[1, 2, 30, 20], [0, 0, 51, 40], [5, 5, 9, 9]], [0, 1, 2])
    same = [Record(r.image_id, Path("/elsewhere") / r.path.name, r.label, r.width, r.height, r.boxes.astype(np.float64)) for r in base]
    assert records_sha256(base) == records_sha256(same)  # other paths, boxes as floats: the same data
    changed = {
        "box": [*base[:1], Record(base[1].image_id, base[1].path, 1, 51, 40, np.asarray([[0, 0, 51, 39]])), base[2]],
        "label": [*base[:2], Record(base[2].image_id, base[2].path, 0, 52, 40, base[2].boxes)],
        "size": [Record(base[0].image_id, base[0].path, 0, 50, 41, base[0].boxes), *base[1:]],
        "id": [Record("cls/0.png", base[0].path, 0, 50, 40, base[0].boxes), *base[1:]],
        "order": [base[1], base[0], base[2]],
        "one fewer": base[:2],
        "a second box": [Record(base[0].image_id, base[0].path, 0, 50, 40, np.asarray([[1, 2, 30, 20], [1, 2, 30, 20]])), *base[1:]],
    }
    digests = {name: records_sha256(recs) for name, recs in changed.items()}
    assert records_sha256(base) not in digests.values() and len(set(digests.values())) == len(digests)
    # a k-NN run's evaluation images and bank are two groups: moving an image from one to the other is another data set
    assert records_sha256(base[:2], base[2:]) != records_sha256(base[:1], base[1:]) != records_sha256(base)


def _localize(data, out):
    res = invoke(
        "localize", "--data", data.image_root, "--metadata", data.metadata, "--baseline", "center-gaussian",
        "--device", "cpu", "--workers", "0", "--out", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return api.read_run(out)


def test_a_copy_of_the_data_elsewhere_has_the_same_digest_an_edited_box_fails_check(tmp_path):
    data = build_wsol_dataset(tmp_path / "a", n=6)
    base = _localize(data, tmp_path / "base")
    digest = base["data_sha256"].unique().tolist()
    assert len(digest) == 1 and len(digest[0]) == 64

    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same data on another disk, files touched
    for f in (tmp_path / "b" / "images").rglob("*.jpg"):
        os.utime(f, (1, 1))
    copy = type(data)(tmp_path / "b" / "images", tmp_path / "b" / "metadata" / "test", 6)
    assert _localize(copy, tmp_path / "same")["data_sha256"].unique().tolist() == digest
    assert invoke("check", tmp_path / "same", "--baseline", tmp_path / "base", "--no-github").exit_code == 0

    loc = copy.metadata / "localization.txt"
    lines = loc.read_text().splitlines()
    image_id, x0, y0, x1, y1 = lines[2].split(",")
    lines[2] = ",".join([image_id, x0, y0, str(int(x1) - 1), y1])  # one box one pixel narrower
    loc.write_text("\n".join(lines) + "\n")
    edited = _localize(copy, tmp_path / "edited")
    assert edited["data_sha256"].unique().tolist() != digest
    res = invoke("check", tmp_path / "edited", "--baseline", tmp_path / "base", "--no-github")
    assert res.exit_code == 1 and "provenance:data_sha256" in res.output and "provenance-mismatch" in res.output
    res = invoke("check", tmp_path / "edited", "--baseline", tmp_path / "base", "--no-github", "--allow-protocol-change", "data_sha256")
    assert res.exit_code == 0 and "accepted provenance change" in res.output and "data_sha256" in res.output


def test_a_baseline_without_the_digest_is_not_gated_on_it(tmp_path):
    """A schema-3 baseline (written before data_sha256) passes against a run of other data: there is
    nothing to compare (the schema-3 reading keeps the column empty)."""
    data = build_wsol_dataset(tmp_path / "a", n=5)
    _localize(data, tmp_path / "run")
    old = pd.read_csv(tmp_path / "run" / "results.csv")
    old = old.drop(columns=["data_sha256"]).assign(schema_version=3)
    old.to_csv(tmp_path / "old.csv", index=False)
    assert api.read_run(tmp_path / "old.csv")["data_sha256"].isna().all()
    other = tmp_path / "other.csv"
    run = pd.read_csv(tmp_path / "run" / "results.csv").assign(data_sha256="0" * 64)
    run.to_csv(other, index=False)
    res = invoke("check", other, "--baseline", tmp_path / "old.csv", "--no-github")
    assert res.exit_code == 0, res.output


def test_discover_records_the_digest_of_its_records(tmp_path):
    voc = build_voc_dataset(tmp_path / "voc", n=4)
    res = invoke("discover", "--dataset", "voc07", "--data", voc, "--method", "center", "--data-label", "my-voc", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    want = records_sha256(api.read_discovery_data("voc07", voc))
    table = api.read_run(tmp_path / "out")
    assert table["data_sha256"].unique().tolist() == [want] and table["dataset"].unique().tolist() == ["my-voc"]


# ------------------------------------------------------------------------------------ the published data
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wsol_metadata"
PUBLISHED = {  # manifest: (wsolevaluation metadata folder, the dataset/split a localize run records)
    "cub_test": ("CUB/test", "cub/test"),
    "cub_train": ("CUB/train", "cub/train"),
    "cub_val": ("CUB/val", "cub/val"),
    "imagenet_val": ("ILSVRC/test", "imagenet/test"),
    "imagenetv2_val": ("ILSVRC/val", "imagenet/val"),
}
needs_metadata = pytest.mark.skipif(not SHARED.is_dir(), reason=f"the real wsolevaluation metadata is not at {SHARED}")


@needs_metadata
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_digests_are_the_real_metadata_read_as_a_run_reads_it(name):
    from simpool_bench.data.manifests import load_manifest, published_data
    from simpool_bench.data.wsol import read_wsol_metadata

    folder, key = PUBLISHED[name]
    records = read_wsol_metadata(SHARED / folder, SHARED / "no-images", check_images=False)
    assert load_manifest(name)["data_sha256"] == {key: records_sha256(records)}
    dataset, split = key.split("/")
    got = published_data(dataset, split)
    assert got is not None and (got.manifest, got.images, got.data_sha256) == (name, len(records), records_sha256(records))
    assert published_data(dataset, "nosuchsplit") is None and published_data("voc07", "trainval") is None


@needs_metadata
def test_localize_on_other_than_the_published_data_says_so_once(tmp_path):
    """CUB val's real metadata over flat images of its listed sizes: silent as published; with one box
    edited (the verify command to run, which names the file), or read as another split than it is (that split named), one warning; the run completes."""
    from PIL import Image

    from simpool_bench.data.wsol import read_wsol_metadata

    meta = tmp_path / "metadata"
    shutil.copytree(SHARED / "CUB" / "val", meta)
    images = tmp_path / "images"
    for line in (meta / "image_sizes.txt").read_text().splitlines():
        image_id, w, h = line.rsplit(",", 2)
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (int(w), int(h)), (90, 120, 60)).save(images / image_id)

    def run(out, *flags):
        args = ["localize", "--dataset", "cub", "--data", images, "--metadata", meta, "--baseline", "full-box", "--interval", "0.01"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = invoke(*args, "--device", "cpu", "--workers", "0", "--out", tmp_path / out, *flags)
        assert res.exit_code == 0, res.output
        return [" ".join(str(w.message).split()) for w in caught if issubclass(w.category, UnpublishedDataWarning)]

    assert run("as-published", "--split", "val") == []
    warned = run("as-test", "--split", "test")  # CUB val's metadata, recorded as the test split
    published = records_sha256(read_wsol_metadata(SHARED / "CUB" / "test", SHARED, check_images=False))[:12]
    assert warned == [
        f"cub test: the 1000 images read are not the published data of manifest cub_test (5794 images; data_sha256 "
        f"{records_sha256(read_wsol_metadata(meta, images))[:12]}, published {published}): they are those of cub val: "
        "pass --split val; --data-label NAME records other data under their own name"
    ]
    assert run("labelled", "--split", "test", "--data-label", "cub-val-as-mine") == []  # other data, named as such
    assert api.read_run(tmp_path / "labelled")["dataset"].unique().tolist() == ["cub-val-as-mine"]
    loc = meta / "localization.txt"
    lines = loc.read_text().splitlines()
    image_id, x0, y0, x1, y1 = lines[10].split(",")
    lines[10] = ",".join([image_id, x0, y0, str(int(x1) - 1), y1])
    loc.write_text("\n".join(lines) + "\n")
    warned = run("edited", "--split", "val")
    assert len(warned) == 1 and warned[0].startswith(
        "cub val: the 1000 images read are not the published data of manifest cub_val (1000 images;"
    )
    verify = f"simpool-bench datasets verify cub_val {images} --metadata {meta}"  # edited: no split's data; the command to run
    assert warned[0].endswith(
        f"these numbers are not on the protocol's data; `{verify}` names what differs; "
        "--data-label NAME records other data under their own name"
    )
    res = invoke("datasets", "verify", "cub_val", images, "--metadata", meta)  # which, run as printed, names the file
    assert res.exit_code == 1 and "localization.txt" in res.output, res.output
    assert api.read_run(tmp_path / "edited")["n_images"].iloc[0] == 1000


def test_digest_covers_a_knn_bank():
    # README: knn_data_sha256 is of "its evaluated images, then its memory bank": the same evaluation
    # images with an edited bank label, or with no bank, are other data
    evals = _records([[1, 2, 30, 20]], [0])
    bank = _records([[0, 0, 51, 40], [5, 5, 9, 9]], [1, 2])
    edited = [bank[0], Record(bank[1].image_id, bank[1].path, 0, bank[1].width, bank[1].height, bank[1].boxes)]
    digests = {records_sha256(evals, bank), records_sha256(evals, edited), records_sha256(evals)}
    assert len(digests) == 3
