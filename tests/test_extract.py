"""``extract`` and the map store: stored maps reproduce the direct localize/discover tables, shards
are checksummed, resumed after Ctrl-C, recomputed when corrupt and refused by readers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.map_store import MapStore
from simpool_bench.transforms import discovery_transform

from conftest import TINY_VIT_ARCH as ARCH
from conftest import build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, said
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")

N_WSOL = 24  # images of the generated WSOL set: 5 shards of 5 (the last of 4)


# ------------------------------------------------------------------------------------ helpers


def table_values(outcome: ev.Outcome) -> list[tuple]:
    return [(r["metric"], r["iou_threshold"], r["value"]) for r in outcome.rows]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    wsol = build_wsol_dataset(root / "wsol", n=N_WSOL)
    images, meta = wsol.image_root, wsol.metadata
    voc = build_voc_dataset(root / "VOC2007", n=10)
    ckpt, model = build_tiny_checkpoint(root / "tiny_a.pth.tar", seed=0)
    records = api.read_localization_data("cub", images, meta)
    voc_records = api.read_discovery_data("voc07", voc)
    return dict(root=root, images=images, meta=meta, voc=voc, ckpt=ckpt, model=model, records=records, voc_records=voc_records)


def _extract(world, out, *extra, shard=5, batch=4):
    return invoke(
        "extract",
        "--dataset",
        "cub",
        "--data",
        world["images"],
        "--metadata",
        world["meta"],
        "--checkpoint",
        world["ckpt"],
        "--out",
        out,
        "--device",
        "cpu",
        "-b",
        batch,
        "--shard-size",
        shard,
        *extra,
    )


def _config(shard=5, batch=4) -> EngineConfig:
    return EngineConfig(device="cpu", batch_size=batch, shard_size=shard, progress=False)


def _store_content(store: MapStore) -> list[tuple]:
    return [
        (sh.indices.tolist(), sh.ids, [m.tobytes() for m in sh.maps], sh.preds.tolist(), sh.failed.tolist()) for sh in store.iter_shards()
    ]


# ------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def f32_store(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("f32") / "maps"
    res = _extract(world, out, "--dtype", "float32")
    assert res.exit_code == 0, res.output
    assert "0 reused, 5 computed" in said(res)
    return MapStore.open(out)


def test_float32_store_gives_the_direct_localize_table_exactly(world, f32_store):
    records = world["records"]
    store = f32_store
    assert store.n_shards == 5 and store.manifest["dtype"] == "float32" and store.manifest["protocol"] == "localize"
    assert store.manifest["provenance"]["checkpoint_sha256"] and store.manifest["provenance"]["model"] == ARCH
    direct = ev.localize(world["model"], records, _config(), dataset="cub", split="test")
    stored = ev.localize_stored(store, records, dataset="cub", split="test")
    assert table_values(stored) == table_values(direct)  # bit for bit, top1_loc included
    assert any(r["metric"] == "top1_loc" for r in stored.rows)
    np.testing.assert_array_equal(stored.extras["curve"], direct.extras["curve"])
    assert (stored.n_images, stored.n_failed) == (N_WSOL, 0)
    # the API behind `localize --maps`: the same outcome, with the extracting model's provenance
    outcome, prov = api.from_maps("localize", store.root, records, dataset="cub", split="test")
    assert table_values(outcome) == table_values(direct)
    assert (prov.model, prov.checkpoint_sha256, prov.n_images) == (ARCH, store.manifest["provenance"]["checkpoint_sha256"], N_WSOL)
    # the transform is the extraction's (the one the direct run records); the protocol this run's
    from simpool_bench.run_records import map_transform_record

    assert (
        prov.transform
        == store.manifest["provenance"]["transform"]
        == json.dumps(map_transform_record(world["model"], "localize"), sort_keys=True)
    )
    assert json.loads(prov.protocol)["task"] == "localize" and prov.random_init is False
    # the stored maps are the model's own (independent forward, batch of one; within float32 noise)
    # and the predictions its logits' argmax
    shard = store.read_shard(2)
    from simpool_bench.transforms import wsol_transform

    tf = wsol_transform(world["model"].data_config["mean"], world["model"].data_config["std"])
    for j, i in enumerate(shard.indices[:3]):
        x = tf(Image.open(records[i].path).convert("RGB"))[None]
        with torch.no_grad():
            out = world["model"](x, target=torch.tensor([records[i].label]))
        np.testing.assert_allclose(shard.maps[j], out.attn[0].numpy(), rtol=1e-5, atol=1e-7)
        assert shard.preds[j] == int(out.logits.argmax())
        assert shard.ids[j] == records[i].image_id


def test_float16_store_holds_the_rounded_maps_and_features(world, f32_store, tmp_path):
    out = tmp_path / "f16"
    res = _extract(world, out, "--features")
    assert res.exit_code == 0, res.output
    store = MapStore.open(out)
    assert store.manifest["dtype"] == "float16" and store.manifest["features"] is True
    for a, b in zip(store.iter_shards(), f32_store.iter_shards()):
        assert a.maps[0].dtype == np.float16
        for m16, m32 in zip(a.maps, b.maps):
            np.testing.assert_array_equal(m16, m32.astype(np.float16))  # exactly the rounded float32 maps
        assert a.features.shape == (len(a.indices), world["model"].num_features) and a.features.dtype == np.float16
    # features are the pooled features of the model
    rec = world["records"][0]
    from simpool_bench.transforms import wsol_transform

    x = wsol_transform(world["model"].data_config["mean"], world["model"].data_config["std"])(Image.open(rec.path).convert("RGB"))[None]
    with torch.no_grad():
        feat = world["model"](x).features[0].numpy()
    np.testing.assert_allclose(store.read_shard(0).features[0].astype(np.float32), feat, rtol=2e-3, atol=1e-3)
    # the stored-map table is the table of the float16-rounded maps, evaluated directly
    from simpool_bench.metrics.boxacc import BoxAccumulator

    acc = BoxAccumulator()
    gts = ev.wsol_gt_boxes(world["records"])
    for sh in store.iter_shards():
        acc.update(np.stack([m.astype(np.float32) for m in sh.maps]), [gts[i] for i in sh.indices])
    stored = ev.localize_stored(store, world["records"], dataset="cub")
    v2 = next(r["value"] for r in stored.rows if r["metric"] == "maxboxacc_v2")
    assert v2 == acc.compute().maxboxacc_v2
    exact = next(r["value"] for r in ev.localize_stored(f32_store, world["records"], dataset="cub").rows if r["metric"] == "maxboxacc_v2")
    assert abs(v2 - exact) <= 100.0 / N_WSOL  # float16 rounding: at most one image here


@pytest.mark.filterwarnings("ignore:cannot decode image")
def test_discover_store_gives_the_direct_corloc_exactly(world, tmp_path):
    voc = tmp_path / "VOC2007"
    shutil.copytree(world["voc"], voc)
    broken = sorted((voc / "JPEGImages").iterdir())[7]
    broken.write_bytes(b"not a jpeg")  # skipped and counted by both runs
    records = world["voc_records"]
    out = tmp_path / "voc_maps"
    res = invoke(
        "extract",
        "--dataset",
        "voc07",
        "--data",
        voc,
        "--checkpoint",
        world["ckpt"],
        "--out",
        out,
        "--device",
        "cpu",
        "-b",
        3,
        "--shard-size",
        4,
        "--dtype",
        "float32",
    )
    assert res.exit_code == 0, res.output
    store = MapStore.open(out)
    assert store.protocol == "discover" and store.manifest["stride"] == 16
    assert [int(i) for sh in store.iter_shards() for i in sh.failed] == [7]
    shapes = {tuple(m.shape) for sh in store.iter_shards() for m in sh.maps}
    expected = {(math.ceil(r.height / 16), math.ceil(r.width / 16)) for i, r in enumerate(records) if i != 7}
    assert shapes == expected and len(shapes) > 1  # one grid per padded image size
    # each map is the model's on the full-resolution, zero-padded image
    model = world["model"]
    x = discovery_transform(16, model.data_config["mean"], model.data_config["std"])(Image.open(records[5].path).convert("RGB"))[None]
    with torch.no_grad():
        np.testing.assert_allclose(store.read([5])[5], model(x).attn[0].numpy(), rtol=1e-5, atol=1e-7)
    direct_boxes, stored_boxes = {}, {}
    records = api.read_discovery_data("voc07", voc)
    direct = ev.discover(
        model,
        records,
        _config(shard=4, batch=3),
        dataset="voc07",
        on_boxes=lambda idx, b, h: direct_boxes.update(zip(idx.tolist(), b.tolist())),
    )
    stored = ev.discover_stored(
        store, records, dataset="voc07", on_boxes=lambda idx, b, h: stored_boxes.update(zip(idx.tolist(), b.tolist()))
    )
    assert table_values(stored) == table_values(direct) and stored.extras["hits"] == direct.extras["hits"]
    assert stored_boxes == direct_boxes and len(stored_boxes) == len(records) - 1
    assert (stored.n_images, stored.n_failed) == (direct.n_images, direct.n_failed) == (len(records) - 1, 1)
    with pytest.raises(SimpoolBenchError, match="not for localize"):
        ev.localize_stored(store, records, dataset="voc07")


def test_extract_resumes_after_ctrl_c_and_recomputes_a_corrupt_shard(world, f32_store, tmp_path, monkeypatch):
    out = tmp_path / "resume"
    real = MapStore.write_shard
    calls = {"n": 0}

    def interrupted(self, shard):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the fourth shard is being written
        calls["n"] += 1
        return real(self, shard)

    monkeypatch.setattr(MapStore, "write_shard", interrupted)
    res = _extract(world, out, "--dtype", "float32")
    assert res.exit_code == 130 and "run the same command again to resume" in said(res)
    assert sorted(p.name for p in out.glob("maps_*.pt")) == [f"maps_{i:06d}.pt" for i in range(3)]
    monkeypatch.setattr(MapStore, "write_shard", real)
    with pytest.raises(SimpoolBenchError, match=r"maps_000003\.pt: missing"):
        ev.localize_stored(MapStore.open(out), world["records"], dataset="cub")
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("maps_*.pt")}
    res = _extract(world, out, "--dtype", "float32")
    assert res.exit_code == 0 and "3 reused, 2 computed" in said(res), res.output
    assert all(out.joinpath(k).stat().st_mtime_ns == v for k, v in before.items())  # finished shards untouched
    assert _store_content(MapStore.open(out)) == _store_content(f32_store)  # as the uninterrupted run

    # a corrupted shard: refused by readers (naming it), recomputed by extract
    path = out / "maps_000001.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    assert MapStore.open(out).status(1) == "corrupt"
    with pytest.raises(SimpoolBenchError, match=r"maps_000001\.pt: checksum mismatch"):
        ev.localize_stored(MapStore.open(out), world["records"], dataset="cub")
    res = _extract(world, out, "--dtype", "float32")
    assert res.exit_code == 0 and "4 reused, 1 computed, 1 of them after a checksum mismatch" in said(res), res.output
    assert _store_content(MapStore.open(out)) == _store_content(f32_store)


def test_store_is_refused_for_other_data_and_other_runs(world, f32_store, tmp_path):
    records = world["records"]
    with pytest.raises(SimpoolBenchError, match="use the same --data/--metadata/--split"):
        ev.localize_stored(f32_store, records[:-1], dataset="cub")
    swapped = [records[1], records[0], *records[2:]]
    with pytest.raises(SimpoolBenchError, match="with other ids"):
        ev.localize_stored(f32_store, swapped, dataset="cub")
    with pytest.raises(SimpoolBenchError, match="dataset 'cub'"):
        ev.localize_stored(f32_store, records, dataset="imagenet")
    with pytest.raises(SimpoolBenchError, match="no manifest.json"):
        MapStore.open(tmp_path)
    # another command into the same folder: an error, unless --no-resume replaces the maps
    res = _extract(world, f32_store.root, "--dtype", "float16")
    assert res.exit_code == 2 and "holds the maps of another extract run" in said(res)
    out = tmp_path / "replace"
    shutil.copytree(f32_store.root, out)
    (out / "notes.txt").write_text("mine")
    res = _extract(world, out, "--dtype", "float16", "--no-resume")
    assert res.exit_code == 0 and "0 reused, 5 computed" in said(res)
    assert sorted(p.name for p in out.glob("maps_*.pt")) == [f"maps_{i:06d}.pt" for i in range(5)]
    assert MapStore.open(out).manifest["dtype"] == "float16" and (out / "notes.txt").read_text() == "mine"


def test_localize_cli_scores_stored_maps(world, f32_store, tmp_path):
    out = tmp_path / "stored"
    res = invoke(
        "localize", "--dataset", "cub", "--data", world["images"], "--metadata", world["meta"], "--maps", f32_store.root, "--out", out
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    direct = ev.localize(world["model"], world["records"], _config(), dataset="cub", split="test")
    got = table[table.metric != "n_images"]
    assert got["metric"].tolist() == [m for m, _, _ in table_values(direct)]
    assert got["value"].tolist() == [v for _, _, v in table_values(direct)]
    assert set(table["checkpoint_sha256"]) == {f32_store.manifest["provenance"]["checkpoint_sha256"]}
    assert (out / "boxacc_curve.csv").exists()
    res = invoke(
        "localize",
        "--dataset",
        "cub",
        "--data",
        world["images"],
        "--metadata",
        world["meta"],
        "--maps",
        f32_store.root,
        "--checkpoint",
        world["ckpt"],
    )
    assert res.exit_code == 2 and "--maps needs no model" in said(res)


def test_stored_maps_score_under_a_data_label(world, f32_store, tmp_path):
    """--data-label names the table's dataset; the maps stay those of --dataset (extract records
    the dataset, it has no label): both were refused as 'maps of dataset 'cub', but --dataset is
    'mine'', naming a --dataset the user never gave."""
    plain, labelled = tmp_path / "plain", tmp_path / "labelled"
    common = ("localize", "--dataset", "cub", "--data", world["images"], "--metadata", world["meta"], "--maps", f32_store.root)
    assert invoke(*common, "--out", plain).exit_code == 0
    res = invoke(*common, "--data-label", "mine", "--out", labelled)
    assert res.exit_code == 0, res.output
    a, b = pd.read_csv(plain / "results.csv"), pd.read_csv(labelled / "results.csv")
    assert set(b["dataset"]) == {"mine"} and b["value"].tolist() == a["value"].tolist()
    res = invoke(*common[:2], "imagenet", *common[3:], "--data-label", "mine")
    assert res.exit_code == 2 and said(res) == f"error: --maps {f32_store.root}: maps of dataset 'cub', but --dataset is 'imagenet'"
    voc_maps, plain, labelled = tmp_path / "voc_maps", tmp_path / "voc_plain", tmp_path / "voc_labelled"
    extract = ("extract", "--dataset", "voc07", "--data", world["voc"], "--checkpoint", world["ckpt"], "--out", voc_maps, "--device", "cpu")
    assert invoke(*extract).exit_code == 0
    common = ("discover", "--dataset", "voc07", "--data", world["voc"], "--maps", voc_maps)
    assert invoke(*common, "--out", plain).exit_code == 0
    res = invoke(*common, "--data-label", "mine", "--out", labelled)
    assert res.exit_code == 0, res.output
    a, b = pd.read_csv(plain / "results.csv"), pd.read_csv(labelled / "results.csv")
    assert set(b["dataset"]) == {"mine"} and b["value"].tolist() == a["value"].tolist()


def test_extract_help_documents_its_outputs():
    res = invoke("extract", "--help")
    assert res.exit_code == 0
    text = said(res)
    for needle in ("manifest.json", "maps_NNNNNN.pt", "maps_NNNNNN.sha256", "--dtype", "--features", "Resumable"):
        assert needle in text, needle


def test_strict_extract_fails_on_an_undecodable_image_of_a_finished_shard(world, tmp_path):
    """--strict fails on an image that does not decode, also when an earlier extract without
    --strict stored its shard (the image skipped and counted): a reused shard is no way around it."""
    data = tmp_path / "wsol"
    shutil.copytree(world["images"].parent, data)
    bad_id = (world["meta"] / "image_ids.txt").read_text().split()[7]  # in shard 1 of 5
    (data / "images" / bad_id).write_bytes(b"not an image")
    here = {**world, "images": data / "images"}
    out = tmp_path / "maps"
    res = _extract(here, out, "-j", "0")
    assert res.exit_code == 0 and "1 not decodable" in said(res), res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    for res in (_extract(here, tmp_path / "fresh", "-j", "0", "--strict"), _extract(here, out, "-j", "0", "--strict")):
        assert res.exit_code == 2, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in res.output
        assert bad_id in said(res) and "--strict fails on it" in said(res)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the stored shards stay as they were


def _tiny_store(root, key: str) -> MapStore:
    """A map store of four records (shards of two) with shard 0 written, no model or image."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import MapShard, make_manifest

    records = [Record(f"img{i}", Path(f"img{i}.jpg")) for i in range(4)]
    store = MapStore.create(root, make_manifest(records, key=key, protocol="localize", shard_size=2, dtype="float32"))
    maps = [np.full((2, 3), 1.0, np.float32), np.full((2, 3), 2.0, np.float32)]
    store.write_shard(MapShard(0, np.array([0, 1]), ["img0", "img1"], maps, np.array([-1, -1]), None, np.zeros(0, np.int64)))
    return store


def test_a_shard_file_under_another_shard_number_or_of_another_run_is_refused(tmp_path):
    """A shard file whose own checksum holds, copied to another shard's name or from another run's
    store, is never read as that shard: its maps are other images' maps."""
    store = _tiny_store(tmp_path / "a", "run-a")
    for suffix in (".pt", ".sha256"):
        shutil.copy(store.root / f"maps_000000{suffix}", store.root / f"maps_000001{suffix}")
    assert [store.status(0), store.status(1)] == ["ok", "corrupt"]
    with pytest.raises(SimpoolBenchError, match=r"maps_000001\.pt: checksum mismatch or unreadable"):
        store.read_shard(1)
    other = _tiny_store(tmp_path / "b", "run-b")
    for suffix in (".pt", ".sha256"):
        shutil.copy(store.root / f"maps_000000{suffix}", other.root / f"maps_000000{suffix}")
    assert other.status(0) == "corrupt"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.update(shapes=p["shapes"] * 2), id="shapes-beyond-the-maps"),
        pytest.param(lambda p: p.update(shapes=p["shapes"][:, 0]), id="shapes-1d"),
        pytest.param(lambda p: p.update(maps=p["maps"][:-1]), id="maps-short"),
        pytest.param(lambda p: p.update(maps=p["maps"].to(torch.int64)), id="maps-of-another-dtype"),
        pytest.param(lambda p: p.update(maps=[1.0, 2.0]), id="maps-a-list"),
        pytest.param(lambda p: p.update(preds=None), id="preds-none"),
        pytest.param(lambda p: p.update(preds=p["preds"][:1]), id="preds-short"),
        pytest.param(lambda p: p.update(indices=p["indices"] + 2), id="indices-of-shard-1"),
        pytest.param(lambda p: p.update(indices=torch.zeros_like(p["indices"])), id="index-twice"),
        pytest.param(lambda p: p.update(failed="0"), id="failed-a-string"),
        pytest.param(lambda p: p.update(features=torch.zeros(1, 3)), id="features-of-one-image"),
        pytest.param(lambda p: p.pop("shapes"), id="no-shapes"),
    ],
)
def test_a_shard_whose_checksum_holds_but_whose_content_is_no_extracts_is_refused(tmp_path, damage):
    """A shard file whose sha256 beside it matches (rewritten with it) but whose fields do not fit
    together (shapes vs maps, one entry per image, indices of its own shard, the store's dtype) is
    refused like a corrupt one, naming the file, never read (a numpy error, or maps of other
    images); its status is "corrupt", which extract recomputes."""
    import hashlib
    import io

    store = _tiny_store(tmp_path, "k")
    path = store.shard_path(0)
    payload = torch.load(path, weights_only=True)
    damage(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.write_bytes(buf.getvalue())
    store.checksum_path(0).write_text(hashlib.sha256(buf.getvalue()).hexdigest() + "\n")
    assert store.status(0) == "corrupt"
    with pytest.raises(SimpoolBenchError, match=r"maps_000000\.pt: checksum mismatch or unreadable: refused"):
        store.read([0])


@pytest.mark.parametrize("has_classifier", [False, True])
def test_stored_maps_of_a_model_without_classifier_give_no_top1_loc(tmp_path, has_classifier):
    """Top-1 Loc needs the model's predictions: a store of a model without a classifier (its
    predictions are -1) gives no Top-1 Loc row, never one of 0; with one, its stored predictions
    decide (here: image 0's is right, image 1's wrong). GT-known Loc needs none."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import MapShard, make_manifest

    records = [Record(f"img{i}", Path(f"img{i}.jpg"), 1, 20, 20, np.array([[0.0, 0.0, 20.0, 20.0]])) for i in range(2)]
    manifest = make_manifest(
        records, key="k", protocol="localize", shard_size=2, dtype="float32", has_classifier=has_classifier, info={"dataset": "cub"}
    )
    store = MapStore.create(tmp_path, manifest)
    preds = np.array([1, 0]) if has_classifier else np.array([-1, -1])
    maps = [np.arange(49, dtype=np.float32).reshape(7, 7) + 1] * 2
    store.write_shard(MapShard(0, np.array([0, 1]), ["img0", "img1"], maps, preds, None, np.zeros(0, np.int64)))
    metrics = {r["metric"]: r["value"] for r in ev.localize_stored(store, records, dataset="cub", interval=0.1).rows}
    assert ("top1_loc" in metrics) is has_classifier and metrics["gt_known_loc"] == 100.0
    if has_classifier:
        assert metrics["top1_loc"] == 50.0


def test_store_read_takes_each_index_from_its_own_shard(tmp_path):
    """``MapStore.read`` (visualize's maps): indices of several shards, each map from its shard,
    float32; an image without a stored map (did not decode) is absent."""
    from simpool_bench.map_store import MapShard

    store = _tiny_store(tmp_path, "k")  # shard 0: images 0, 1
    store.write_shard(MapShard(1, np.array([3]), ["img3"], [np.full((2, 3), 4.0, np.float32)], np.array([-1]), None, np.array([2])))
    got = store.read([3, 0, 2])
    assert sorted(got) == [0, 3] and all(m.dtype == np.float32 for m in got.values())
    assert np.array_equal(got[0], np.full((2, 3), 1.0)) and np.array_equal(got[3], np.full((2, 3), 4.0))


def test_a_float16_store_refuses_a_map_beyond_float16(tmp_path):
    """float16 holds magnitudes up to 65504: a larger (finite) map would be stored as inf, so
    the shard is refused, naming the image (NaN/inf maps are counted, not refused)."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import MapShard, make_manifest

    records = [Record(f"img{i}", Path(f"img{i}.jpg")) for i in range(2)]
    store = MapStore.create(tmp_path, make_manifest(records, key="k", protocol="localize", shard_size=2, dtype="float16"))
    fits, beyond = np.array([[65504.0, -65504.0]], np.float32), np.array([[1.0, -70000.0]], np.float32)
    store.write_shard(
        MapShard(
            0,
            np.array([0, 1]),
            ["img0", "img1"],
            [fits, np.full((1, 2), np.inf, np.float32)],
            np.array([-1, -1]),
            None,
            np.zeros(0, np.int64),
        )
    )
    assert np.array_equal(store.read_shard(0).maps[0], fits)
    with pytest.raises(SimpoolBenchError, match="the map of image img1 exceeds the float16 range"):
        store.write_shard(MapShard(0, np.array([0, 1]), ["img0", "img1"], [fits, beyond], np.array([-1, -1]), None, np.zeros(0, np.int64)))


def test_no_resume_replaces_the_shards_of_the_same_run(tmp_path):
    """``MapStore.create(resume=False)`` (``extract --no-resume``) starts over even under the same
    run key: the finished shards are deleted, never kept."""
    store = _tiny_store(tmp_path, "k")
    assert store.status(0) == "ok"
    again = MapStore.create(tmp_path, store.manifest, resume=False)
    assert again.status(0) == "missing" and not list(tmp_path.glob("maps_*"))
    assert MapStore.create(tmp_path, store.manifest).status(0) == "missing"


@pytest.mark.parametrize("manifest_text", ["{not json", '{"schema": 0}'])
def test_no_resume_replaces_a_store_whose_manifest_is_damaged_or_of_another_schema(tmp_path, manifest_text):
    """``--no-resume`` means start over: it must not first need to read what it replaces. Resuming
    over such a manifest stays an error, and it says how to start over."""
    store = _tiny_store(tmp_path, "k")
    (tmp_path / "manifest.json").write_text(manifest_text)
    with pytest.raises(SimpoolBenchError) as err:
        MapStore.create(tmp_path, store.manifest)
    assert str(err.value).startswith(f"{tmp_path / 'manifest.json'}: ") and str(err.value).endswith(
        "; use another --out, or --no-resume to replace the maps"
    )
    assert (tmp_path / "maps_000000.pt").is_file()  # nothing deleted without --no-resume
    again = MapStore.create(tmp_path, store.manifest, resume=False)
    assert again.status(0) == "missing" and not list(tmp_path.glob("maps_*"))
    assert json.loads((tmp_path / "manifest.json").read_text()) == store.manifest


def test_reading_an_index_outside_the_store_says_so(tmp_path):
    store = _tiny_store(tmp_path, "k")  # four images, shard 0 (images 0 and 1) written
    assert sorted(store.read([1, 0])) == [0, 1]
    for bad in (4, -1):
        with pytest.raises(
            SimpoolBenchError, match=rf"^--maps {tmp_path}: image index {bad} is out of range: the store holds 4 images \(0 to 3\)$"
        ):
            store.read([0, bad])
    with pytest.raises(SimpoolBenchError, match=r"maps_000001\.pt: missing \(shard 1 of 2\)"):
        store.read([3])  # in range, its shard not written: that message stays


def test_a_shard_keeps_the_maps_predictions_and_features_of_its_decoded_images_only():
    """``extraction._ShardBuffer``: the images of a shard arrive in any order (size buckets); the
    shard lists the decoded ones in index order with their own map, prediction and features (rows
    aligned), and the others as failed."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.extraction import _ShardBuffer

    records = [Record(f"img{i}", Path(f"img{i}.jpg")) for i in range(6)]
    buf = _ShardBuffer(1, [3, 4, 5])
    for i, ok in ((5, True), (3, True), (4, False)):
        buf.add(i, ok, np.full((2, 2), float(i), np.float32), 10 + i, np.full(3, 100.0 + i, np.float32))
    assert buf.complete
    shard = buf.to_shard(records, features=True)
    assert shard.indices.tolist() == [3, 5] and shard.ids == ["img3", "img5"] and shard.failed.tolist() == [4]
    assert [float(m[0, 0]) for m in shard.maps] == [3.0, 5.0] and shard.preds.tolist() == [13, 15]
    assert shard.features is not None and shard.features[:, 0].tolist() == [103.0, 105.0]


def test_discover_maps_are_of_the_predicted_class_whatever_the_labels(tmp_path):
    """``compute_maps``: 'gt' CAMs (the labels as targets) are localize's; discover's maps are those
    of the predicted class, as the direct discover run computes them, even for labelled records
    (the manifest says 'pred')."""
    from types import SimpleNamespace

    from simpool_bench.data.records import Record
    from simpool_bench.extraction import compute_maps
    from simpool_bench.map_store import make_manifest

    records = []
    for i in range(2):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 16), (i, 0, 0)).save(path)
        records.append(Record(f"{i}", path, label=1, width=16, height=16))

    class Cam(torch.nn.Module):
        attn_source, stride, data_config = "cam", 16, {}

        def __init__(self) -> None:
            super().__init__()
            self.targets: list = []

        def forward(self, x, target=None):
            self.targets.append(None if target is None else target.tolist())
            b = x.shape[0]
            return SimpleNamespace(
                attn=torch.ones(b, x.shape[-2] // 16, x.shape[-1] // 16), logits=torch.zeros(b, 2), features=torch.zeros(b, 2)
            )

    config = EngineConfig(device="cpu", batch_size=2, progress=False)
    for protocol, want in (("localize", [[1, 1]]), ("discover", [None])):
        model = Cam()
        compute_maps(model, records, config, lambda b: None, protocol=protocol, cam_target="gt")
        assert model.targets == want, protocol
    assert make_manifest(records, key="k", protocol="discover", shard_size=2, cam_target="gt")["cam_target"] == "pred"


def test_a_store_of_another_schema_or_with_a_shard_missing_is_refused_naming_the_file(tmp_path):
    """A manifest of another schema is not read as this one; a missing shard is an error naming
    the shard's own file; ``iter_shards`` reads every shard, the last one too."""
    store = _tiny_store(tmp_path / "a", "k")  # 4 images, shards of 2: shard 1 not written
    with pytest.raises(SimpoolBenchError, match=r"maps_000001\.pt: missing \(shard 1 of 2\)"):
        list(store.iter_shards())
    manifest = json.loads((store.root / "manifest.json").read_text())
    (store.root / "manifest.json").write_text(json.dumps({**manifest, "schema": 2}))
    with pytest.raises(SimpoolBenchError, match=r"manifest\.json: map-store schema 2, expected 1"):
        MapStore.open(store.root)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("n_images", "4", "'n_images' is '4'; expected an integer >= 1"),
        ("shard_size", 0, "'shard_size' is 0; expected an integer >= 1"),
        ("dtype", "float64", "'dtype' is 'float64'; expected one of float16, float32"),
        ("dtype", ["float32"], "'dtype' is \\['float32'\\]; expected one of float16, float32"),
        ("protocol", None, "'protocol' is None; expected one of localize, discover"),
        ("stride", 1e400, "'stride' is inf; expected an integer >= 0"),
        ("has_classifier", 0, "'has_classifier' is 0; expected true or false"),
        ("provenance", [], "'provenance' is \\[\\]; expected an object"),
        ("key", ..., "no 'key'; expected a non-empty string"),
    ],
)
def test_a_hand_edited_map_store_manifest_is_one_error_naming_the_key(tmp_path, key, value, problem):
    """The manifest fields readers compute with (image count, shard size, dtype, protocol, stride,
    classifier, key) are checked when the store is opened: a damaged value is one error naming
    the manifest and the key, never a KeyError/ValueError/ZeroDivisionError while scoring. (With
    its ``manifest_sha256`` kept, the edit itself is the error; these manifests lack the entry, as
    stores written before it did, or with it deleted to read an edit as it is.)"""
    store = _tiny_store(tmp_path, "k")
    path = store.root / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["manifest_sha256"]
    if value is ...:
        del manifest[key]
    else:
        manifest[key] = value
    path.write_text(json.dumps(manifest))
    with pytest.raises(SimpoolBenchError, match=rf"manifest\.json: {problem}, as `simpool-bench extract` writes it"):
        MapStore.open(store.root)


def test_a_shard_size_edited_in_the_manifest_refuses_the_shards_rather_than_dropping_images(tmp_path):
    """With another shard size each shard file would stand for other images (shard 0 of size 4:
    images 0 to 3, of which it holds 0 and 1): refused, never read as two images that failed."""
    store = _tiny_store(tmp_path, "k")
    path = store.root / "manifest.json"
    edited = {k: v for k, v in json.loads(path.read_text()).items() if k != "manifest_sha256"}  # read as it is
    path.write_text(json.dumps({**edited, "shard_size": 4}))
    with pytest.raises(SimpoolBenchError, match=r"maps_000000\.pt: checksum mismatch or unreadable: refused"):
        MapStore.open(store.root).read([0])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("has_classifier", True),
        ("cam_target", "pred"),
        ("stride", 8),
        ("shard_size", 4),
        ("split", "train"),
        ("provenance", {"arch": "resnet18"}),
    ],
)
def test_a_manifest_value_changed_to_another_valid_one_is_refused(tmp_path, key, value):
    """A manifest entry edited to another value extract could have written (a store with no
    classifier marked as having one, CAMs of the GT marked as of the prediction, another grid) was
    read as true: nothing checked the manifest itself. Its ``manifest_sha256`` (the sha256 of its
    other entries as sorted-key JSON) is now checked when the store is opened; deleting that entry
    reads the manifest as it is."""
    import hashlib

    store = _tiny_store(tmp_path, "k")
    path = store.root / "manifest.json"
    written = json.loads(path.read_text())
    body = {k: v for k, v in written.items() if k != "manifest_sha256"}
    assert written["manifest_sha256"] == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    assert MapStore.open(store.root).manifest == written  # as written: read
    assert written[key] != value
    path.write_text(json.dumps({**written, key: value}, indent=2))
    with pytest.raises(SimpoolBenchError) as e:
        MapStore.open(store.root)
    assert str(e.value) == (
        f"{path}: changed after `simpool-bench extract` wrote it (its content does not match its manifest_sha256): a damaged or "
        "hand-edited manifest; extract the maps again, or delete its 'manifest_sha256' entry to read it as it is"
    )
    path.write_text(json.dumps({**body, key: value}))
    assert MapStore.open(store.root).manifest[key] == value


def test_stored_maps_are_refused_for_ids_that_differ_only_where_they_join(tmp_path):
    """The store's ids digest keeps each id apart: ids 'ab', 'c' are not the ids 'a', 'bc' (the
    same characters in order), and the same number of other ids is refused too."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import make_manifest

    def records(*ids):
        return [Record(i, Path(f"{i}.jpg")) for i in ids]

    store = MapStore.create(tmp_path, make_manifest(records("ab", "c"), key="k", protocol="localize", shard_size=2, dtype="float32"))
    store.check_records(records("ab", "c"))
    for other in (records("a", "bc"), records("ab", "d")):
        with pytest.raises(SimpoolBenchError, match="but the given data has 2 images with other ids"):
            store.check_records(other)


class _FakeCam(torch.nn.Module):
    """A map model of one constant map per image: ``value`` (NaN possible), logits or none."""

    attn_source, stride, data_config = "cam", 16, {}

    def __init__(self, value: float = 1.0, logits: bool = True, num_classes: int = 2) -> None:
        super().__init__()
        self.value, self.logits, self.num_classes = value, logits, num_classes
        self.targets: list = []

    def forward(self, x, target=None):
        from types import SimpleNamespace

        self.targets.append(None if target is None else target.tolist())
        b = x.shape[0]
        attn = torch.full((b, x.shape[-2] // 16, x.shape[-1] // 16), self.value)
        logits = torch.tensor([[0.0, 1.0]]).repeat(b, 1) if self.logits else None
        return SimpleNamespace(attn=attn, logits=logits, features=torch.zeros(b, 2))


def _png_records(tmp_path, labels):
    from simpool_bench.data.records import Record

    records = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 16), (i, 0, 0)).save(path)
        records.append(Record(f"{i}", path, label=label, width=16, height=16))
    return records


def test_compute_maps_targets_labels_only_when_all_are_known_and_says_minus_one_without_logits(tmp_path):
    """'gt' CAMs need every label: with one unlabelled image (-1) the predicted class is used for
    all; a model without logits gives predictions of -1; an unknown --cam-target is one line."""
    from simpool_bench.extraction import compute_maps

    config = EngineConfig(device="cpu", batch_size=2, progress=False)
    model = _FakeCam()
    compute_maps(model, _png_records(tmp_path, [1, -1]), config, lambda b: None, protocol="localize", cam_target="gt")
    assert model.targets == [None]
    got = []
    compute_maps(_FakeCam(logits=False), _png_records(tmp_path, [1, 0]), config, got.append, protocol="localize", cam_target="pred")
    assert [b.preds.tolist() for b in got] == [[-1, -1]]
    got = []  # an image over --max-pixels is not decoded (a failed image, as an undecodable one)
    small = EngineConfig(device="cpu", batch_size=2, progress=False, max_pixels=255)
    with pytest.warns(RuntimeWarning, match="over the limit of 255"):
        compute_maps(_FakeCam(), _png_records(tmp_path, [1, 0]), small, got.append, protocol="localize", cam_target="pred")
    assert [b.ok.tolist() for b in got] == [[False, False]]
    with pytest.raises(SimpoolBenchError, match=r"^--cam-target 'x': expected gt or pred$"):
        compute_maps(_FakeCam(), _png_records(tmp_path, [1, 0]), config, lambda b: None, protocol="localize", cam_target="x")


def test_extract_maps_defaults_records_the_classifier_and_counts_nonfinite_maps(tmp_path):
    """``extract_maps``: float16 by default, has_classifier from the model's classes, an empty
    dataset is one line, and NaN maps are counted (stored with --allow-nonfinite, else one line)."""
    from simpool_bench.extraction import extract_maps

    records = _png_records(tmp_path, [1, 0, 1])
    config = EngineConfig(device="cpu", batch_size=2, shard_size=2, progress=False)
    info = {"dataset": "cub"}
    rep = extract_maps(_FakeCam(num_classes=0), records, config, tmp_path / "a", key="k", info=info, protocol="localize")
    assert (rep.store.manifest["dtype"], rep.store.manifest["has_classifier"]) == ("float16", False)
    assert (rep.n_images, rep.shards_total, rep.shards_computed, rep.n_nonfinite) == (3, 2, 2, 0)
    rep = extract_maps(_FakeCam(), records, config, tmp_path / "b", key="k", info=info, protocol="localize", dtype="float32")
    assert (rep.store.manifest["dtype"], rep.store.manifest["has_classifier"]) == ("float32", True)
    with pytest.raises(SimpoolBenchError, match=r"^the dataset is empty: no image to extract maps from$"):
        extract_maps(_FakeCam(), [], config, tmp_path / "c", key="k", info=info, protocol="localize")
    nan = _FakeCam(value=float("nan"))
    with pytest.raises(SimpoolBenchError, match=r"^3 of 3 images gave non-finite maps"):
        extract_maps(nan, records, config, tmp_path / "d", key="k", info=info, protocol="localize")
    allow = EngineConfig(device="cpu", batch_size=2, shard_size=2, progress=False, allow_nonfinite=True)
    rep = extract_maps(nan, records, allow, tmp_path / "e", key="k", info=info, protocol="localize")
    assert (rep.n_images, rep.n_nonfinite, rep.shards_corrupt) == (3, 3, 0)


def test_the_extract_key_changes_with_every_setting_that_changes_the_maps(tmp_path):
    """The run key (resume): the CAM target, --max-pixels, the split and the dtype each make another
    extraction, whose shards are never resumed as this one's."""
    from simpool_bench.extraction import _extract_key

    records = _png_records(tmp_path, [1, 0])
    model = _FakeCam()
    base = dict(protocol="localize", dtype="float16", features=False, cam_target="gt")
    cfg = EngineConfig(device="cpu", batch_size=2, progress=False)
    info = {"dataset": "cub", "split": "test"}
    key = _extract_key(model, records, cfg, info, **base)
    assert key == _extract_key(model, records, cfg, dict(info), **base)
    others = [
        _extract_key(model, records, cfg, info, **{**base, "cam_target": "pred"}),
        _extract_key(model, records, EngineConfig(device="cpu", batch_size=2, progress=False, max_pixels=100), info, **base),
        _extract_key(model, records, cfg, {**info, "split": "val"}, **base),
        _extract_key(model, records, cfg, info, **{**base, "dtype": "float32"}),
    ]
    assert len({key, *others}) == 5


def test_ids_digest_tells_apart_ids_split_at_a_newline():
    """Ids holding newlines (a file name may) are digested so that ['a\\nb', 'c'] and ['a', 'b\\nc']
    differ (both were sha256('a\\nb\\nc'), so a store of one was read as the other's maps); ids
    without newlines keep the newline-joined digest that stores already written hold."""
    import hashlib

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import ids_sha256

    def recs(*ids):
        return [Record(i, Path(i), -1) for i in ids]

    assert ids_sha256(recs("a\nb", "c")) != ids_sha256(recs("a", "b\nc"))
    assert ids_sha256(recs("a\nb", "c")) == hashlib.sha256(b'\x00["a\\nb", "c"]').hexdigest()
    assert ids_sha256(recs("x/1.jpg", "y/2.jpg")) == hashlib.sha256(b"x/1.jpg\ny/2.jpg").hexdigest()
