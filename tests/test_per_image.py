"""Per-image records (``per_image``): one row per image, whose hits summed over the images give
every rate of the table exactly; the same rows from stored maps, from resumed shards, and
(tests/test_distributed.py) from two ranks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from simpool_bench import api
from simpool_bench.data.records import Record
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.files import save_checksummed
from simpool_bench.finite import NONFINITE_METRIC
from simpool_bench.per_image import PerImageAccumulator, rank_ids, with_extra_columns
from simpool_bench.tasks.wsol import WsolTask

import boxacc_oracle as oracle
from conftest import build_image_folder, build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")

N, BATCH, SHARD = 11, 2, 3
#: Table metric (metric, IoU) -> the per-image column whose sum is its count.
HIT_OF = {
    ("top1", None): "hit_top1",
    ("top5", None): "hit_top5",
    ("maxboxacc", 30): "hit_30",
    ("maxboxacc", 50): "hit_50",
    ("maxboxacc", 70): "hit_70",
    ("gt_known_loc", 50): "hit_50",
    ("top1_loc", 50): "hit_top1_loc",
    ("maxboxacc_v1", 50): "hit_v1",
    ("corloc", None): "hit",
}
NOT_RATES = {"best_threshold", "n_images", "n_failed", NONFINITE_METRIC}


def _break_one(files: list) -> str:
    """Overwrite the 5th image with bytes that do not decode; its name."""
    bad = sorted(files)[4]
    bad.write_bytes(b"not an image")
    return bad.name


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("per_image")
    wsol = build_wsol_dataset(root / "wsol", n=N, seed=1)
    voc = build_voc_dataset(root / "voc", n=N, seed=2)
    folder = build_image_folder(root / "folder", seed=3)
    broken = [_break_one(list(wsol.image_root.rglob("*.jpg"))), _break_one(list((voc / "JPEGImages").glob("*.jpg")))]
    _break_one(list(folder.rglob("*.jpg")))
    ckpt, _ = build_tiny_checkpoint(root / "tiny.pth.tar", seed=4)
    return {"root": root, "wsol": wsol, "voc": voc, "folder": folder, "ckpt": ckpt, "broken": broken}


def _engine(**kw) -> EngineConfig:
    return EngineConfig(device="cpu", workers=0, progress=False, batch_size=BATCH, shard_size=SHARD, **kw)


def _model(world) -> api.ModelOptions:
    return api.ModelOptions(checkpoint=world["ckpt"])


def _wsol(world) -> api.DataSpec:
    return api.DataSpec("cub", data=world["wsol"].image_root, metadata=world["wsol"].metadata)


def _voc(world) -> api.DataSpec:
    return api.DataSpec("voc07", data=world["voc"])


def assert_hits_give_the_table(table: pd.DataFrame, frame: pd.DataFrame) -> set[str]:
    """Every rate of ``table`` equals 100 * (its hits summed over the images) / images, exactly
    (the table's own expression); MaxBoxAccV2 the mean of the three. Returns the metrics checked."""
    ok = frame[~frame["failed"]]
    n = len(ok)
    assert n == table.loc[table.metric == "n_images", "value"].item()
    assert int(frame["failed"].sum()) == int(table.loc[table.metric == "n_failed", "value"].sum())

    def rate(col: str) -> float:
        assert ok[col].notna().all() and frame.loc[frame["failed"], col].isna().all()
        return 100.0 * int(ok[col].astype(bool).sum()) / n

    checked = set()
    for metric, iou, value in zip(table.metric, table.iou_threshold, table.value):
        if metric in NOT_RATES:
            continue
        if metric == "maxboxacc_v2":
            expected = float(np.average([rate(f"hit_{t}") for t in (30, 50, 70)]))
        else:
            key = (metric, None if pd.isna(iou) else int(iou))
            assert key in HIT_OF, f"table metric {key} has no per-image column"
            expected = rate(HIT_OF[key])
        assert value == expected, (metric, iou, value, expected)
        checked.add(metric)
    return checked


def _files(out) -> set[str]:
    return set(json.loads((out / "results.manifest.json").read_text())["files"])


@pytest.fixture(scope="module")
def localized(world):
    out = world["root"] / "localize"
    return api.run_localize(api.LocalizeSpec(_wsol(world), model=_model(world), v1=True), _engine(), out, formats=("csv",)), out


@pytest.fixture(scope="module")
def discovered(world):
    out = world["root"] / "discover"
    return api.run_discover(api.DiscoverSpec(_voc(world), model=_model(world)), _engine(), out, formats=("json",)), out


def test_localize_rows_give_every_table_metric(world, localized):
    res, out = localized
    frame = res.extras["per_image"]
    checked = assert_hits_give_the_table(res.table, frame)
    assert checked == {"maxboxacc", "maxboxacc_v2", "gt_known_loc", "top1_loc", "maxboxacc_v1"}
    assert list(frame["index"]) == list(range(N)) and frame["failed"].sum() == 1
    assert frame.loc[frame.failed, "path"].item().endswith(world["broken"][0])
    assert res.extras["per_image_s"] > 0  # the time the table took after the loop, kept in the extras
    # the box is OpenCV's best contour box at the best threshold of IoU 50, and its IoU decides hit_50
    ok = frame[~frame.failed]
    assert ((ok["iou"] >= 0.5) == ok["hit_50"]).all()
    gt_iou = [oracle.calculate_multiple_iou(np.asarray([b]), np.asarray(g)).max() for b, g in zip(ok["box"], ok["gt_boxes"])]
    np.testing.assert_array_equal(np.asarray(gt_iou), ok["iou"].to_numpy(dtype=float))
    # the files: parquet always, csv (boxes as JSON) with csv among the formats, both in the manifest
    assert {"per_image.parquet", "per_image.csv"} <= _files(out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "per_image.parquet"), frame, check_dtype=False)
    csv = pd.read_csv(out / "per_image.csv")
    assert [json.loads(b) for b in csv["gt_boxes"]] == list(frame["gt_boxes"])


def test_discover_rows_give_corloc(world, discovered):
    res, out = discovered
    frame = res.extras["per_image"]
    assert assert_hits_give_the_table(res.table, frame) == {"corloc"}
    ok = frame[~frame.failed]
    assert ((ok["iou"] >= 0.5) == ok["hit"]).all()
    assert "per_image.csv" not in _files(out) and "per_image.parquet" in _files(out)  # csv only on request


def test_classify_rows_give_top1_and_top5(world):
    res = api.run_classify(api.ClassifySpec(api.DataSpec("imagenet", data=world["folder"]), model=_model(world)), _engine())
    frame = res.extras["per_image"]
    assert assert_hits_give_the_table(res.table, frame) == {"top1", "top5"}
    ok = frame[~frame.failed]
    assert (ok["pred"] == [t[0] for t in ok["top5"]]).all() and ((ok["pred"] == ok["label"]) == ok["hit_top1"]).all()
    assert all(sorted(t) == [0, 1, 2] for t in ok["top5"])  # 3 classes: every class once


@pytest.mark.parametrize("baseline", ["full-box", "center-gaussian"])
def test_localize_baseline_rows(world, baseline):
    res = api.run_localize(api.LocalizeSpec(_wsol(world), baseline=baseline), _engine())
    frame = res.extras["per_image"]
    assert_hits_give_the_table(res.table, frame)
    if baseline == "full-box":
        assert all(b == [0, 0, 223, 223] for b in frame["box"])


@pytest.mark.parametrize("method", ["center", "full-image"])
def test_discover_no_model_rows(world, method):
    res = api.run_discover(api.DiscoverSpec(_voc(world), method=method), _engine())
    assert assert_hits_give_the_table(res.table, res.extras["per_image"]) == {"corloc"}


def test_base_frame_lays_rows_on_the_records_they_name():
    """``base_frame``: rows of indices 0 and 2 (image 1 did not decode): ``failed`` marks record 1,
    and image 2's non-finite flag lands on record 2, not on the second row of the table."""
    from simpool_bench.per_image import base_frame

    records = [Record(f"id{i}", Path(f"/data/val/{i}.jpg")) for i in range(3)]
    frame = base_frame(records, "val", np.array([0, 2]), np.array([False, True]))
    assert frame["failed"].tolist() == [False, True, False] and frame["nonfinite"].tolist() == [False, False, True]
    assert frame["id"].tolist() == ["id0", "id1", "id2"] and frame["index"].tolist() == [0, 1, 2]
    assert frame["split"].tolist() == ["val"] * 3 and frame["path"].tolist() == [f"/data/val/{i}.jpg" for i in range(3)]


def test_center_gaussian_baseline_is_centred_on_the_middle_of_the_pixel_grid():
    """The no-model map: exp(-d^2 / (2 sigma^2)) around the grid's centre ((size - 1) / 2 in pixel
    coordinates, symmetric under every flip), sigma = size / 4."""
    from simpool_bench.tasks.wsol import baseline_scoremap

    m = baseline_scoremap("center-gaussian", 8)
    x = np.arange(8.0)
    d2 = (x[None, :] - 3.5) ** 2 + (x[:, None] - 3.5) ** 2
    np.testing.assert_allclose(m, np.exp(-d2 / (2 * 2.0**2)), rtol=1e-6)
    assert np.array_equal(m, m[::-1]) and np.array_equal(m, m[:, ::-1])


def test_localize_baseline_over_many_batches_keeps_each_images_row(tmp_path):
    """A no-model localize run scores its images 256 at a time: 260 records, every other one with
    its object filling the image (the full-box baseline hits it) and the others a small corner
    object (missed at IoU 30): half the images, and exactly the even rows, are hits."""
    from simpool_bench import tasks

    whole, corner = np.array([[0.0, 0.0, 100.0, 100.0]]), np.array([[0.0, 0.0, 10.0, 10.0]])
    records = [Record(f"{i}", tmp_path / f"{i}.jpg", 0, 100, 100, whole if i % 2 == 0 else corner) for i in range(260)]
    out = tasks.localize(None, records, EngineConfig(device="cpu", progress=False), baseline="full-box", interval=0.1)
    values = {(r["metric"], r["iou_threshold"]): r["value"] for r in out.rows}
    assert values[("maxboxacc", 30)] == values[("maxboxacc", 70)] == 50.0
    frame = out.per_image
    assert frame["hit_70"].tolist() == [i % 2 == 0 for i in range(260)] and not frame["failed"].any()


def test_discover_no_model_boxes_are_the_centre_box_or_the_whole_image():
    """``--method center``: the box of half of each side, centred (x0 = floor(W / 4)); ``full-image``:
    (0, 0, W, H); in original pixels, per record."""
    from simpool_bench import tasks

    records = [Record("a", Path("a.jpg"), -1, 100, 60, np.array([[0.0, 0.0, 50.0, 30.0]])),
               Record("b", Path("b.jpg"), -1, 41, 7, np.array([[0.0, 0.0, 41.0, 7.0]]))]  # fmt: skip
    config = EngineConfig(device="cpu", progress=False)
    centre = tasks.discover(None, records, config, method="center").per_image
    assert centre["box"].tolist() == [[25, 15, 75, 45], [10, 1, 31, 6]]
    full = tasks.discover(None, records, config, method="full-image").per_image
    assert full["box"].tolist() == [[0, 0, 100, 60], [0, 0, 41, 7]] and full["hit"].tolist() == [False, True]


@pytest.fixture(scope="module")
def extracted(world):
    """{protocol: the extract RunResult}, into ROOT/maps_<protocol>."""
    out = {}
    for name, data in (("localize", _wsol(world)), ("discover", _voc(world))):
        out[name] = api.run_extract(api.ExtractSpec(data, model=_model(world), dtype="float32"), _engine(), world["root"] / f"maps_{name}")
    return out


@pytest.fixture(scope="module")
def stores(world, extracted):
    return {name: world["root"] / f"maps_{name}" for name in extracted}


def test_extract_files_are_the_whole_store(world, extracted):
    """An extract's ``RunResult.files`` was its manifest alone; it is every file of the store."""
    for name, result in extracted.items():
        root = world["root"] / f"maps_{name}"
        assert set(result.files) == {p for p in root.rglob("*") if p.is_file()} and len(result.files) == len(set(result.files))
        n = result.extras["report"].shards_total
        assert n >= 2 and len(result.files) == 1 + 2 * n  # manifest.json, and a .pt and a .sha256 per shard


def test_stored_maps_give_the_direct_rows(world, localized, discovered, stores):
    loc = api.run_localize(api.LocalizeSpec(_wsol(world), maps=stores["localize"], v1=True), _engine())
    pd.testing.assert_frame_equal(loc.extras["per_image"], localized[0].extras["per_image"])
    dis = api.run_discover(api.DiscoverSpec(_voc(world), maps=stores["discover"]), _engine())
    pd.testing.assert_frame_equal(dis.extras["per_image"], discovered[0].extras["per_image"])


def test_resumed_and_partial_shards_give_the_uninterrupted_rows(world, localized, tmp_path):
    spec = api.LocalizeSpec(_wsol(world), model=_model(world), v1=True)
    shards = tmp_path / ".shards"
    api.run_localize(spec, _engine(resume_dir=shards))
    files = sorted(shards.glob("*/shard_*.pt"))
    assert len(files) == 4  # 11 images in shards of 3
    files[1].unlink()  # interrupted before shard 1 was saved
    old = torch.load(files[2], weights_only=True)  # a shard of a version without per-image records
    del old["states"]["per_image"]
    save_checksummed(files[2], {k: v for k, v in old.items() if k not in ("key", "shard")})
    again = api.run_localize(spec, _engine(resume_dir=shards))
    assert again.extras["shards_resumed"] == 2
    pd.testing.assert_frame_equal(again.extras["per_image"], localized[0].extras["per_image"])
    pd.testing.assert_frame_equal(again.table[["metric", "value"]], localized[0].table[["metric", "value"]])


def _oracle_iou(cam: np.ndarray, threshold: float, gt: np.ndarray) -> float:
    """The best IoU of the map's boxes at ``threshold`` with the GT boxes, all by the literal
    wsolevaluation copy (cubic resize, normalise, quantise, cv2 contours, its IoU)."""
    u8 = oracle.quantise(oracle.reference_scoremap(cam))
    return float(oracle.calculate_multiple_iou(oracle.boxes_at_threshold(u8, threshold), gt).max())


def test_an_empty_dataset_is_one_error_in_every_task():
    """No image to evaluate is a user error, before any model or metric runs (no 0-image table)."""
    from simpool_bench import tasks

    config = EngineConfig(device="cpu", progress=False)
    with pytest.raises(SimpoolBenchError, match="the cub dataset is empty"):
        tasks.localize(None, [], config, baseline="full-box")
    with pytest.raises(SimpoolBenchError, match="the voc07 dataset is empty"):
        tasks.discover(None, [], config, method="center")
    with pytest.raises(SimpoolBenchError, match="the imagenet dataset is empty"):
        tasks.classify(None, [], None, config)


def test_random_maps_with_ties_and_a_nonfinite_one():
    """The per-image hits of random integer maps (many ties) against the literal OpenCV boxes."""
    rng = np.random.default_rng(7)

    def box() -> np.ndarray:
        (x0, x1), (y0, y1) = sorted(rng.integers(0, 224, 2)), sorted(rng.integers(0, 224, 2))
        return np.asarray([[x0, y0, x1, y1]])

    records = [Record(f"im{i}", f"im{i}.jpg", label=i % 3, width=224, height=224, boxes=box()) for i in range(9)]
    task = WsolTask(records, interval=0.01)
    accs = task.accumulators()
    maps = rng.integers(0, 4, size=(9, 7, 7)).astype(np.float32)
    maps[3, 2, 2] = np.nan
    fin = np.isfinite(maps).reshape(9, -1).all(axis=1)
    correct = rng.random(9) < 0.5
    task.score(accs, maps, np.arange(9), fin, correct, True)
    frame = task.per_image(accs)
    res = accs["boxacc"].compute()
    assert frame["nonfinite"].tolist() == [i == 3 for i in range(9)] and pd.isna(frame.loc[3, "iou"])
    for iou in res.iou_thresholds:
        t = float(res.best_threshold[iou])
        literal = [i != 3 and _oracle_iou(maps[i], t, task.gts[i]) >= iou / 100 for i in range(9)]
        assert frame[f"hit_{iou}"].tolist() == literal
        assert res.maxboxacc[iou] == 100.0 * sum(literal) / 9
    t1 = float(res.top1_best_threshold)
    literal = [i != 3 and correct[i] and _oracle_iou(maps[i], t1, task.gts[i]) >= 0.5 for i in range(9)]
    assert frame["hit_top1_loc"].tolist() == literal and res.top1_loc == 100.0 * sum(literal) / 9


def test_accumulator_merges_and_refuses_an_image_twice():
    a, b = PerImageAccumulator(["x"]), PerImageAccumulator(["x"])
    a.update([4, 0], x=np.array([[1, 2], [3, 4]]))
    b.update([2], x=np.array([[5, 6]]))
    c = PerImageAccumulator(["x"])
    c.load_state_dict(b.state_dict())
    a.merge(c)
    got = a.compute()
    assert got["index"].tolist() == [0, 2, 4] and got["x"].tolist() == [[3, 4], [5, 6], [1, 2]]
    a.merge(b)
    with pytest.raises(SimpoolBenchError, match="counted twice"):
        a.compute()
    # a task that gives other columns, or rows of another count, is a programming error, said at once
    with pytest.raises(ValueError, match=r"per-image columns \['y'\], expected \['x'\]"):
        a.update([5], y=np.array([[7, 8]]))
    with pytest.raises(ValueError, match=r"per-image column 'x': \(1, 2\) rows for 2 indices"):
        a.update([5, 6], x=np.array([[7, 8]]))
    with pytest.raises(TypeError, match="cannot merge PerImageAccumulator into PerImageAccumulator"):
        a.merge(PerImageAccumulator(["y"]))


def test_task_columns_are_appended_in_record_order():
    frame = pd.DataFrame({"index": [0, 1, 2]})
    got = with_extra_columns(
        frame, {"per_image_columns": {"knn_pred_k20": np.array([2, 0, 1]), "pair": np.array([[1, 2], [3, 4], [5, 6]])}}
    )
    assert got["knn_pred_k20"].tolist() == [2, 0, 1] and got["pair"].tolist() == [[1, 2], [3, 4], [5, 6]]
    assert with_extra_columns(frame, {}) is frame
    with pytest.raises(SimpoolBenchError, match="'x': 2 values for 3 records"):
        with_extra_columns(frame, {"per_image_columns": {"x": np.zeros(2)}})


def test_rank_ids_orders_by_iou_then_dataset_order():
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "iou": [0.5, np.nan, 0.2, 0.5]})
    assert rank_ids(frame, ["a", "b", "c", "d"], "best", 2) == ["a", "d"]
    assert rank_ids(frame, ["a", "b", "c", "d"], "worst", 10) == ["c", "a", "d"]
    # dataset order, not the ids' own order, breaks the tie
    assert rank_ids(frame, ["d", "c", "b", "a"], "best", 2) == ["d", "a"]
    with pytest.raises(SimpoolBenchError, match="'z' is not in the dataset"):
        rank_ids(pd.DataFrame({"id": ["z"], "iou": [1.0]}), ["a"], "best", 1)


def test_rank_ids_names_an_iou_cell_that_is_not_a_number():
    """A word in the iou column is damage, named with its row; it was read as NaN and the image
    silently left out as if it had failed. Empty and 'nan' cells are failed images, and an
    infinite IoU (no IoU can be) is left out with them, not ranked first."""
    ids = ["a", "b", "c", "d"]
    frame = pd.DataFrame({"id": ids, "iou": ["0.5", "", "0.2", "nan"]})
    assert rank_ids(frame, ids, "best", 4) == ["a", "c"]
    frame = pd.DataFrame({"id": ids, "iou": [0.5, np.inf, 0.2, None]})
    assert rank_ids(frame, ids, "best", 4) == ["a", "c"]
    frame = pd.DataFrame({"id": ids, "iou": ["0.5", "0.9", " high ", "0.1"]})
    with pytest.raises(SimpoolBenchError, match=r"^run/per_image.csv: row 3 \(image 'c'\): iou 'high' is not a number$"):
        rank_ids(frame, ids, "best", 2, source="run/per_image.csv")


def test_visualize_select_worst_reads_per_image(world, localized, stores, tmp_path):
    run = localized[1]
    frame = pd.read_parquet(run / "per_image.parquet")
    ok = frame[frame["iou"].notna()]
    worst = ok.sort_values(["iou", "index"], kind="stable")["id"].tolist()[:3]
    w = world["wsol"]
    args = ["visualize", "--dataset", "cub", "--data", w.image_root, "--metadata", w.metadata, "--maps", stores["localize"]]
    res = invoke(*args, "--per-image", run, "--select", "worst", "--n", 3, "--out", tmp_path / "v", "--format", "png")
    assert res.exit_code == 0 and "note:" not in res.output, res.output  # one column: no note
    sel = pd.read_csv(tmp_path / "v" / "selection.csv")
    assert sel["image_id"].tolist() == worst
    # drawn at the run's best threshold of IoU 50: the boxes and IoUs of the records
    thr = localized[0].table.query("metric == 'best_threshold' and iou_threshold == 50")["value"].item()
    assert (sel["threshold"] == thr).all()
    assert np.allclose(sel["iou"], ok.set_index("id").loc[worst, "iou"].astype(float))
    res = invoke(*args, "--per-image", tmp_path, "--select", "worst", "--out", tmp_path / "v2")
    assert res.exit_code == 2 and "no per_image.parquet" in res.output
    # two columns at one run's threshold: a note says so and how to give each its own
    res = invoke(*args, "--maps", stores["localize"], "--per-image", run, "--select", "worst", "--n", 2, "--out", tmp_path / "v3")
    assert res.exit_code == 0 and f"note: every column's boxes are at {run}'s best threshold ({thr:g}); --threshold-from RUN" in " ".join(
        res.output.split()
    )


def test_visualize_ids_with_per_image_draws_at_the_runs_threshold(world, localized, stores, tmp_path):
    """--per-image RUN with --ids: the images given, their boxes at the run's best threshold (as the
    help says), i.e. the run's own per-image boxes; it drew them at --threshold 0.5, silently."""
    run = localized[1]
    frame = pd.read_parquet(run / "per_image.parquet")
    ok = frame[frame["iou"].notna()]
    ids = ok["id"].tolist()[::-1][:3]
    w = world["wsol"]
    args = ["visualize", "--dataset", "cub", "--data", w.image_root, "--metadata", w.metadata, "--maps", stores["localize"]]
    res = invoke(*args, "--per-image", run, "--ids", ",".join(ids), "--out", tmp_path / "v", "--format", "png")
    assert res.exit_code == 0, res.output
    sel = pd.read_csv(tmp_path / "v" / "selection.csv")
    thr = localized[0].table.query("metric == 'best_threshold' and iou_threshold == 50")["value"].item()
    assert sel["image_id"].tolist() == ids and (sel["threshold"] == thr).all()
    want = ok.set_index("id").loc[ids]
    assert sel[["x0", "y0", "x1", "y1"]].to_numpy().tolist() == [list(b) for b in want["box"]]
    assert np.allclose(sel["iou"], want["iou"].astype(float))


def test_the_box_pass_gives_the_same_table_on_any_number_of_threads():
    rng = np.random.default_rng(7)
    n = 23
    records = [Record(f"im{i}", f"im{i}.jpg", label=0, width=90 + i, height=70, boxes=np.array([[5, 6, 60 + i, 50]])) for i in range(n)]
    task = WsolTask(records)
    accs = task.accumulators()
    maps = rng.random((n, 14, 14)).astype(np.float32)
    task.score(accs, maps, np.arange(n), np.ones(n, dtype=bool), None, False)
    one = task.per_image(accs, num_threads=1)
    assert one["box"].notna().all() and one["iou"].notna().all()
    for threads in (2, 3, 64):
        pd.testing.assert_frame_equal(task.per_image(accs, num_threads=threads), one)


def test_per_image_csv_keeps_ids_as_written(tmp_path):
    """per_image.csv read back by --per-image: ids are the dataset's strings (VOC's "000005", an id
    "NA"), not numbers or missing values; an empty IoU (a failed image) is missing."""
    from simpool_bench.per_image import csv_bytes, read_per_image

    frame = pd.DataFrame({"index": [0, 1, 2, 3], "id": ["000005", "000012", "NA", "1e3"], "iou": [0.25, 0.75, 0.5, None]})
    (tmp_path / "per_image.csv").write_bytes(csv_bytes(frame))
    got, run = read_per_image(tmp_path / "per_image.csv")
    assert run == tmp_path and got["id"].tolist() == ["000005", "000012", "NA", "1e3"]
    assert rank_ids(got, ["000005", "000012", "NA", "1e3"], "best", 4) == ["000012", "NA", "000005"]


def test_box_lists_and_csv_cells_are_the_values_as_json():
    """GT boxes (floats as read) are listed as ints; list cells of any kind (strings, booleans,
    nested boxes) are written to per_image.csv as JSON that reads back to the same lists."""
    from simpool_bench.per_image import box_lists, csv_bytes

    boxes = box_lists([np.array([[120.0, 140.0, 200.0, 210.0]]), np.zeros((0, 4)), np.array([1.0, 2.0, 3.0, 4.0])])
    assert boxes == [[[120, 140, 200, 210]], [], [[1, 2, 3, 4]]]
    assert all(type(v) is int for b in boxes for box in b for v in box)
    frame = pd.DataFrame({"id": ["a", "b"], "names": [["cat", "dog"], None], "flags": [[True, False], [False, False]]})
    csv = pd.read_csv(io.BytesIO(csv_bytes(frame)), keep_default_na=False, na_values=[""])
    assert [json.loads(v) for v in csv["names"].dropna()] == [["cat", "dog"]] and pd.isna(csv.loc[1, "names"])
    assert [json.loads(v) for v in csv["flags"]] == [[True, False], [False, False]]


def test_extra_columns_twice_is_an_error_and_the_frame_is_kept():
    frame = pd.DataFrame({"index": [0, 1], "iou": [0.5, 0.25]})
    with pytest.raises(SimpoolBenchError, match="per-image column 'iou' is given twice"):
        with_extra_columns(frame, {"per_image_columns": {"iou": np.zeros(2)}})
    got = with_extra_columns(frame, {"per_image_columns": {"k": np.array([3, 4])}})
    assert got["k"].tolist() == [3, 4] and list(frame.columns) == ["index", "iou"]  # the caller's frame unchanged


def test_read_per_image_errors_name_the_file(tmp_path):
    """--per-image: a table without IoUs, a file that is not a table, and a folder without one are
    each one error naming the path; rank_ids without any IoU or by an unknown order, too."""
    from simpool_bench.per_image import read_per_image

    (tmp_path / "classify").mkdir()
    pd.DataFrame({"index": [0], "id": ["a"], "pred": [1]}).to_parquet(tmp_path / "classify" / "per_image.parquet")
    with pytest.raises(SimpoolBenchError, match=r"per_image.parquet: no column 'iou' \(expected a localize or discover"):
        read_per_image(tmp_path / "classify")
    (tmp_path / "garbage.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(SimpoolBenchError, match="garbage.parquet: not a readable per-image table"):
        read_per_image(tmp_path / "garbage.parquet")
    with pytest.raises(SimpoolBenchError, match="no per_image.parquet in this folder"):
        read_per_image(tmp_path)
    frame = pd.DataFrame({"id": ["a", "b"], "iou": [np.nan, np.nan]})
    with pytest.raises(SimpoolBenchError, match="RUN: no image has an IoU to rank by"):
        rank_ids(frame, ["a", "b"], "best", 1, source="RUN")
    with pytest.raises(SimpoolBenchError, match="--select 'first': ranking by per-image records takes best or worst"):
        rank_ids(frame, ["a", "b"], "first", 1)


def test_read_per_image_refuses_an_edited_or_half_written_runs_table(tmp_path):
    """--per-image reads a run folder's per_image table only as its results.manifest.json records
    it: an IoU changed after the run (it would re-rank the images) or a folder whose write did not
    finish is one error naming the file; a copy without the manifest is read as it is."""
    from simpool_bench import results as R
    from simpool_bench.per_image import parquet_bytes, read_per_image

    from results_helpers import _run

    frame = pd.DataFrame({"index": [0, 1], "id": ["a", "b"], "iou": [0.25, 0.75]})
    R.write_run(_run(), tmp_path, extra={"per_image.parquet": parquet_bytes(frame)})
    assert read_per_image(tmp_path)[0]["iou"].tolist() == [0.25, 0.75]
    (tmp_path / "per_image.parquet").write_bytes(parquet_bytes(frame.assign(iou=[0.9, 0.75])))
    with pytest.raises(
        SimpoolBenchError, match=r"per_image\.parquet: not the file run run0 wrote .*: changed since, or left by another write"
    ):
        read_per_image(tmp_path)
    man = tmp_path / R.RUN_MANIFEST
    man.write_text(json.dumps({"schema": 1, "state": "writing", "run_id": "run0"}))
    with pytest.raises(SimpoolBenchError, match=r"a results write did not finish \(results\.manifest\.json says 'writing'\)"):
        read_per_image(tmp_path / "per_image.parquet")
    man.unlink()  # a hand-made copy
    assert rank_ids(read_per_image(tmp_path)[0], ["a", "b"], "best", 1) == ["a"]
