"""``visualize``: boxes as the protocols score them, deterministic selection, and PNGs whose pixels
are checked (size, heat map where the maps differ, GT and predicted boxes where expected)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from simpool_bench import api, overlays
from simpool_bench import plotting as V
from simpool_bench.data.images import load_rgb
from simpool_bench.data.records import Record
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.figures import LostPatches
from simpool_bench.map_store import MapShard, MapStore, make_manifest
from simpool_bench.metrics.boxacc import cam_thresholds
from simpool_bench.overlays import MapSource, best_wsol_box, discovery_box, read_best_threshold, select_indices
from simpool_bench.results import Provenance, make_table, write_run
from simpool_bench.run_records import write_curve
from simpool_bench.tasks import wsol_gt_boxes
from simpool_bench.transforms import wsol_transform

import boxacc_oracle as oracle
from conftest import build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, said
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")


S = 224
GT_ORIG = (60, 70, 100, 105)  # in a 112x112 image -> (120, 140, 200, 210) at 224
BLOCK = (slice(40, 100), slice(30, 120))  # rows, cols of the hot block: wsol box (30, 40, 120, 100)
EXTRA = (slice(150, 200), slice(150, 210))  # where map B differs: value 0.5, wsol box (150, 150, 210, 200)


def _cell(png: np.ndarray, heights: list[int], width: int, row: int, col: int) -> np.ndarray:
    x, y = V.cell_origin(heights, width, row, col)
    return png[y : y + heights[row], x : x + width]


def _inclusive(box) -> tuple[int, int, int, int]:
    """A LOST box (max exclusive) as the inclusive pixels the overlay draws."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)


def _outline(boxes, hw, width: int = 2) -> np.ndarray:
    """Pixels covered by the 2-px inward outlines of inclusive boxes."""
    mask = np.zeros(hw, dtype=bool)
    for x0, y0, x1, y1 in boxes:
        x1, y1 = min(x1, hw[1] - 1), min(y1, hw[0] - 1)
        mask[y0 : y0 + width, x0 : x1 + 1] = mask[y1 - width + 1 : y1 + 1, x0 : x1 + 1] = True
        mask[y0 : y1 + 1, x0 : x0 + width] = mask[y0 : y1 + 1, x1 - width + 1 : x1 + 1] = True
    return mask


def _store(root, records, maps: dict[int, np.ndarray], protocol: str, stride: int = 16) -> MapStore:
    """A hand-made map store (one shard) holding ``maps`` for the records' indices."""
    man = make_manifest(
        records,
        key=root.name,
        protocol=protocol,
        shard_size=len(records),
        dtype="float32",
        stride=stride,
        info={"dataset": "cub" if protocol == "localize" else "voc07", "split": "test"},
    )
    store = MapStore.create(root, man)
    idx = sorted(maps)
    store.write_shard(
        MapShard(
            0,
            np.array(idx),
            [records[i].image_id for i in idx],
            [maps[i] for i in idx],
            np.full(len(idx), -1),
            None,
            np.zeros(0, dtype=np.int64),
        )
    )
    return store


def _localize_run(root, best_threshold: float) -> None:
    """A localize run folder: results with best_threshold rows, and a BoxAcc curve."""
    rows = [
        {"dataset": "cub", "split": "test", "metric": "best_threshold", "iou_threshold": iou, "value": v}
        for iou, v in ((30, 0.1), (50, best_threshold), (70, 0.9))
    ]
    write_run(make_table(rows, Provenance(model="m", pool="simpool")), root)
    thr = cam_thresholds(0.01)
    curve = np.stack([100 * np.exp(-((thr - best_threshold) ** 2) / 0.02) * f for f in (1.0, 0.8, 0.5)], axis=1)
    write_curve({"curve": curve, "curve_thresholds": thr}, root / "boxacc_curve.csv")


# ------------------------------------------------------------------------------------ boxes and selection
def _oracle_best_box(cam: np.ndarray, gt_boxes: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """What ``best_wsol_box`` must give, by the literal wsolevaluation copy alone: the map's contour
    boxes at ``threshold`` (cubic resize to 224, ``normalize_scoremap``, quantise, one
    ``cv2.findContours``, clipped ``boundingRect``), each box's best IoU over all the GT boxes
    (``calculate_multiple_iou``, +1 areas, then the max over GT boxes as ``BoxEvaluator.accumulate``
    takes it) and the first box reaching the maximum in findContours order (wsolevaluation keeps only
    that maximum, so tied boxes score alike; the first one is the one its ``max`` and ``np.argmax``
    stop at)."""
    u8 = oracle.quantise(oracle.reference_scoremap(cam))
    boxes = oracle.boxes_at_threshold(u8, threshold)
    per_box = oracle.calculate_multiple_iou(boxes, np.asarray(gt_boxes).reshape(-1, 4)).max(axis=1)
    j = int(np.argmax(per_box))
    return boxes[j], float(per_box[j])


def test_best_wsol_box_is_the_literal_wsolevaluation_best_box():
    """Boxes and IoUs of random maps (several contours at most levels) against 1-3 GT boxes each,
    checked against the literal OpenCV copy; the data is checked to hold the cases that tell a right
    answer from a near miss: a best box other than the first contour, a best GT other than the first,
    ties between contours, and overlaps (where an IoU without the +1 pixel would differ)."""
    rng = np.random.default_rng(0)
    maps, gts = [], []
    for i in range(40):
        h = (7, 14, 10)[i % 3]
        m = rng.random((h, h)) ** 3
        m[rng.integers(0, h), :] += rng.random()  # stripes and blobs: several contours at most levels
        maps.append(m)
        g = []
        for _ in range(1 + i % 3):  # 1, 2 or 3 GT boxes (224 pixels, inclusive)
            x0, y0 = rng.integers(0, 150, size=2)
            g.append([x0, y0, x0 + rng.integers(10, 70), y0 + rng.integers(10, 70)])
        gts.append(np.array(g))
    u8s = [oracle.quantise(oracle.reference_scoremap(m)) for m in maps]
    thresholds = oracle.reference_thresholds(0.01)
    seen = {"best_box_not_first": 0, "best_gt_not_first": 0, "tied_boxes": 0, "overlap": 0}
    for k in (0, 7, 25, 38, 50, 61, 77, 93):
        t = thresholds[k]
        for m, u8, g in zip(maps, u8s, gts):
            box, iou = best_wsol_box(m, g, t)
            want_box, want_iou = _oracle_best_box(m, g, t)
            assert box.tolist() == want_box.tolist() and iou == want_iou, (k, box, iou, want_box, want_iou)
            # and so the image is a hit exactly where wsolevaluation counts one at this threshold
            assert [iou >= j / 100 for j in (30, 50, 70)] == oracle.reference_hits(u8, g, [t])[:, 0].tolist()
            pair = oracle.calculate_multiple_iou(oracle.boxes_at_threshold(u8, t), g)
            per_box = pair.max(axis=1)
            seen["best_box_not_first"] += bool(per_box.max() > per_box[0])
            seen["best_gt_not_first"] += bool(want_iou > pair[:, 0].max())
            seen["tied_boxes"] += bool((per_box == want_iou).sum() > 1)
            seen["overlap"] += bool(want_iou > 0)
    assert min(seen.values()) >= 20, seen
    # without GT boxes: the largest contour's box (wsolevaluation's single-contour box) and no IoU
    for m, u8 in zip(maps[:6], u8s):
        box, iou = best_wsol_box(m, np.zeros((0, 4)), 0.25)
        assert box.tolist() == oracle.boxes_at_threshold(u8, 0.25, multi_contour=False)[0].tolist() and np.isnan(iou)


def test_selection_is_deterministic():
    scores = {0: 0.5, 1: 0.9, 2: 0.5, 3: 0.1, 4: 0.9}
    assert select_indices(scores, "first", 3) == [0, 1, 2]
    assert select_indices(scores, "best", 3) == [1, 4, 0]  # ties keep dataset order
    assert select_indices(scores, "worst", 2) == [3, 0]
    with pytest.raises(SimpoolBenchError, match="no ground-truth boxes"):
        select_indices({0: float("nan")}, "best", 1)
    # an image without GT boxes (COCO20k: only crowd annotations) has no IoU: left out of the ranking,
    # as --per-image ranks, not an error about the whole dataset
    nan = float("nan")
    assert select_indices({0: 0.5, 1: nan, 2: 0.2, 3: 0.7}, "worst", 3) == [2, 0, 3]
    assert select_indices({0: 0.5, 1: nan, 2: 0.2, 3: 0.7}, "best", 9) == [3, 0, 2]
    assert select_indices({0: nan, 1: 0.4}, "first", 2) == [0, 1]


# ------------------------------------------------------------------------------------ pixels
@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """Two 112x112 images with wsol metadata, two stores of 224x224 maps (A; B = A plus EXTRA) and
    two localize runs whose best thresholds are 0.5 and 0.3."""
    root = tmp_path_factory.mktemp("hand")
    rng = np.random.default_rng(1)
    (root / "images").mkdir()
    lines = {"image_ids.txt": [], "class_labels.txt": [], "image_sizes.txt": [], "localization.txt": []}
    for name in ("p.png", "q.png"):
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(root / "images" / name)
        lines["image_ids.txt"].append(name)
        lines["class_labels.txt"].append(f"{name},0")
        lines["image_sizes.txt"].append(f"{name},112,112")
        lines["localization.txt"].append(f"{name}," + ",".join(map(str, GT_ORIG)))
    (root / "meta").mkdir()
    for f, ls in lines.items():
        (root / "meta" / f).write_text("\n".join(ls) + "\n")
    records = api.read_localization_data("cub", root / "images", root / "meta")
    a = np.zeros((S, S), dtype=np.float32)
    a[BLOCK] = 1.0
    b = a.copy()
    b[EXTRA] = 0.5
    _store(root / "A", records, {0: a, 1: a}, "localize")
    _store(root / "B", records, {0: b, 1: b}, "localize")
    _localize_run(root / "runA", 0.5)
    _localize_run(root / "runB", 0.3)
    return root, records, a, b


def test_overlay_pixels_show_maps_and_boxes_where_expected(hand, tmp_path):
    root, records, a, b = hand
    out = tmp_path / "viz"
    res = invoke(
        "visualize",
        "--dataset",
        "cub",
        "--data",
        root / "images",
        "--metadata",
        root / "meta",
        "--maps",
        root / "A",
        "--maps",
        root / "B",
        "--threshold-from",
        root / "runA",
        "--threshold-from",
        root / "runB",
        "--ids",
        "q.png",
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    png = np.asarray(Image.open(out / "overlays.png").convert("RGB"))
    assert png.shape == (V.TITLE_HEIGHT + V.PAD + S + V.PAD, V.PAD + 3 * (S + V.PAD), 3)
    image, cell_a, cell_b = (_cell(png, [S], S, 0, c) for c in range(3))

    # the image column is the image as the protocol sees it (224x224, bilinear)
    shown = np.asarray(Image.open(root / "images" / "q.png").convert("RGB").resize((S, S), Image.BILINEAR))
    np.testing.assert_array_equal(image[:120], shown[:120])
    # heat maps: alpha 0.5 blend with jet of the min-max normalised map, pixel for pixel
    for cell, m in ((cell_a, a), (cell_b, b)):
        heat = colormaps["jet"](m)[..., :3] * 255.0
        want = np.clip(np.rint(0.5 * shown.astype(np.float32) + 0.5 * heat.astype(np.float32)), 0, 255)
        np.testing.assert_array_equal(cell[:38], want[:38])  # above every box
        np.testing.assert_array_equal(cell[160:190, 160:195], want[160:190, 160:195])
    for rows, cols in ((slice(0, 38), slice(None)), (slice(45, 95), slice(35, 115)), (slice(102, 138), slice(None))):
        np.testing.assert_array_equal(cell_a[rows, cols], cell_b[rows, cols])  # the maps agree there: so do the pixels
    assert (cell_a[160:190, 160:195] != cell_b[160:190, 160:195]).any(axis=-1).all()  # they differ there

    # GT box (120, 140, 200, 210) in green on every cell, 2 px inwards (B's red box crosses its right edge)
    for cell in (image, cell_a, cell_b):
        assert (cell[140:142, 120:201] == V.GT_COLOR).all() and (cell[140:211, 120:122] == V.GT_COLOR).all()
        assert (cell[209:211, 120:201] == V.GT_COLOR).all() and (cell[140:150, 199:201] == V.GT_COLOR).all()
    assert (cell_a[140:211, 199:201] == V.GT_COLOR).all()
    # predicted boxes in red: A at 0.5 -> the block's box; B at 0.3 -> the best-IoU contour, EXTRA's box
    assert (cell_a[40:42, 30:121] == V.PRED_COLOR).all() and (cell_a[40:101, 30:32] == V.PRED_COLOR).all()
    assert (cell_b[150:152, 152:199] == V.PRED_COLOR).all() and (cell_b[150:201, 209:211] == V.PRED_COLOR).all()
    assert not (cell_b[40:42, 30:121] == V.PRED_COLOR).all(axis=-1).any()
    assert not (image == V.PRED_COLOR).all(axis=-1).any()

    sel = pd.read_csv(out / "selection.csv")
    assert sel["image_id"].tolist() == ["q.png", "q.png"] and sel["threshold"].tolist() == [0.5, 0.3]
    assert sel[["x0", "y0", "x1", "y1"]].values.tolist() == [[30, 40, 120, 100], [150, 150, 210, 200]]
    gt = np.array([[120, 140, 200, 210]])
    assert sel["iou"].tolist() == [0.0, pytest.approx(oracle.calculate_multiple_iou(np.array([[150, 150, 210, 200]]), gt)[0, 0])]
    assert read_best_threshold(root / "runB") == 0.3


def test_discovery_overlay_at_full_resolution_with_patch_maps(tmp_path):
    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    records = api.read_discovery_data("voc07", voc)
    maps = {}
    for i, r in enumerate(records):
        m = np.zeros((-(-r.height // 16), -(-r.width // 16)), dtype=np.float32)
        m[1:3, 1:3] = 1.0  # 4 equal patches: the 60% mass keeps 3 of them, one component spanning all 4 cells
        maps[i] = m
    _store(tmp_path / "maps", records, maps, "discover")
    out = tmp_path / "viz"
    res = invoke("visualize", "--dataset", "voc07", "--data", voc, "--maps", tmp_path / "maps", "--select", "first", "--n", 2, "--out", out)
    assert res.exit_code == 0, res.output
    png = np.asarray(Image.open(out / "overlays.png").convert("RGB"))
    heights, width = [records[0].height, records[1].height], max(records[0].width, records[1].width)
    assert png.shape[:2] == (V.TITLE_HEIGHT + V.PAD + sum(h + V.PAD for h in heights), V.PAD + 2 * (width + V.PAD))
    sel = pd.read_csv(out / "selection.csv")
    for r in range(2):
        rec = records[r]
        box = [16, 16, min(48, rec.width), min(48, rec.height)]
        assert sel.loc[r, ["x0", "y0", "x1", "y1"]].tolist() == box
        cell = _cell(png, heights, width, r, 1)
        assert (cell[16:18, 16 : box[2]] == V.PRED_COLOR).all()  # LOST boxes end before x1: drawn to x1 - 1
        x0, y0, x1, y1 = (int(v) for v in rec.boxes[0])
        assert (_cell(png, heights, width, r, 0)[y0 : y0 + 2, x0:x1] == V.GT_COLOR).all()
        # the heat map is patch-exact: each patch's value over its 16x16 pixels, blended with the image
        img = np.asarray(load_rgb(rec.path))
        up = np.kron(maps[r], np.ones((16, 16), dtype=np.float32))[: rec.height, : rec.width]
        want = np.clip(np.rint(0.5 * img.astype(np.float32) + 0.5 * (colormaps["jet"](up)[..., :3] * 255.0).astype(np.float32)), 0, 255)
        lines = _outline([*(_inclusive(g) for g in rec.boxes), _inclusive(box)], img.shape[:2])
        np.testing.assert_array_equal(cell[: rec.height, : rec.width][~lines], want[~lines])


def test_discovery_figure_captions_the_protocols_boxes(tmp_path):
    """The paper figure's captions give LOST's boxes as selection.csv and per_image.parquet do
    (max exclusive: the patch block 16..48 is "(16, 16, 48, 48)"), and the GT boxes as read
    (VOC xmin - 1, xmax); drawn, both still end on pixel x1 - 1."""
    voc = build_voc_dataset(tmp_path / "VOC2007", n=2)
    records = api.read_discovery_data("voc07", voc)
    maps = {}
    for i, r in enumerate(records):
        m = np.zeros((-(-r.height // 16), -(-r.width // 16)), dtype=np.float32)
        m[1:3, 1:3] = 1.0
        maps[i] = m
    _store(tmp_path / "maps", records, maps, "discover")
    out = tmp_path / "viz"
    res = invoke("visualize", "--dataset", "voc07", "--data", voc, "--maps", tmp_path / "maps", "--n", 2, "--format", "svg", "--out", out)
    assert res.exit_code == 0, res.output
    svg = (out / "figure.svg").read_text()
    sel = pd.read_csv(out / "selection.csv")
    for r, rec in enumerate(records[:2]):
        box = [16, 16, min(48, rec.width), min(48, rec.height)]
        assert sel.loc[r, ["x0", "y0", "x1", "y1"]].tolist() == box
        assert f"pred ({', '.join(map(str, box))})" in svg
        assert f"GT ({', '.join(str(int(v)) for v in rec.boxes[0])})" in svg


# ------------------------------------------------------------------------------------ with models
def test_two_checkpoints_side_by_side_best_images(tmp_path):
    wsol = build_wsol_dataset(tmp_path / "wsol", n=12, seed=7)
    images, meta = wsol.image_root, wsol.metadata
    ck_a, model_a = build_tiny_checkpoint(tmp_path / "tiny_a.pth.tar", seed=0)
    ck_b, model_b = build_tiny_checkpoint(tmp_path / "tiny_b.pth.tar", seed=1)
    out = tmp_path / "viz"
    res = invoke(
        "visualize",
        "--dataset",
        "cub",
        "--data",
        images,
        "--metadata",
        meta,
        "-c",
        ck_a,
        "-c",
        ck_b,
        "--select",
        "best",
        "--n",
        3,
        "--threshold",
        0.3,
        "--device",
        "cpu",
        "-b",
        16,
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    records = api.read_localization_data("cub", images, meta)
    gts = wsol_gt_boxes(records)
    tf = wsol_transform(model_a.data_config["mean"], model_a.data_config["std"])
    x = torch.stack([tf(Image.open(r.path).convert("RGB")) for r in records])
    labels = torch.tensor([r.label for r in records])
    with torch.no_grad():  # one batch of all 12, as visualize ranks them
        maps_a = model_a(x, target=labels).attn.numpy()
    # the reference: the literal wsolevaluation boxes (every fourth image has two GT boxes)
    ref_a = {i: _oracle_best_box(maps_a[i], gts[i], 0.3) for i in range(len(records))}
    ious = {i: ref_a[i][1] for i in ref_a}
    best = sorted(ious, key=lambda i: (-ious[i], i))[:3]
    sel = pd.read_csv(out / "selection.csv")
    assert sel["column"].tolist() == ["tiny_a", "tiny_b"] * 3
    a_rows, b_rows = sel[sel.column == "tiny_a"], sel[sel.column == "tiny_b"]
    assert a_rows["index"].tolist() == best and b_rows["index"].tolist() == best
    np.testing.assert_allclose(a_rows["iou"], [ious[i] for i in best], rtol=0, atol=1e-12)
    assert a_rows[["x0", "y0", "x1", "y1"]].values.tolist() == [ref_a[i][0].tolist() for i in best]
    with torch.no_grad():
        maps_b = model_b(x[best], target=labels[best]).attn.numpy()
    ref_b = [_oracle_best_box(maps_b[j], gts[i], 0.3) for j, i in enumerate(best)]
    np.testing.assert_allclose(b_rows["iou"], [iou for _, iou in ref_b], rtol=0, atol=1e-12)
    assert b_rows[["x0", "y0", "x1", "y1"]].values.tolist() == [box.tolist() for box, _ in ref_b]
    with Image.open(out / "overlays.png") as png:
        size = png.size
    assert size == (V.PAD + 3 * (S + V.PAD), V.TITLE_HEIGHT + V.PAD + 3 * (S + V.PAD))


def test_curves_of_several_runs(hand, tmp_path):
    root = hand[0]
    out = tmp_path / "curves"
    res = invoke("visualize", "--curves", root / "runA", "--curves", root / "runB", "--out", out)
    assert res.exit_code == 0, res.output
    img = np.asarray(Image.open(out / "boxacc_curves.png").convert("RGB"))
    assert img.shape == (500, 800, 3)  # figsize 8x5 at 100 dpi
    for k in (0, 1):  # one colour per run
        color = (np.array(colormaps["tab10"](k)[:3]) * 255).round().astype(np.uint8)
        assert (np.abs(img.astype(int) - color).sum(axis=-1) <= 3).sum() > 200


def test_visualize_errors_are_one_line(hand, tmp_path):
    root = hand[0]
    common = ["visualize", "--dataset", "cub", "--data", root / "images", "--metadata", root / "meta", "--out", tmp_path]
    for extra, needle in (
        (["--maps", root / "A", "--ids", "nope.png"], "'nope.png' is not in the dataset"),
        (["--maps", root / "A", "--label", "x", "--label", "y"], "--label given 2 times for 1 columns"),
        (["--maps", root / "A", "--threshold-from", root / "A"], "no results.parquet"),
        ([], "nothing to draw"),
    ):
        res = invoke(*common, *extra)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and needle in said(res), res.output


def test_visualize_help_documents_its_outputs():
    res = invoke("visualize", "--help")
    assert res.exit_code == 0
    for needle in ("OUT/overlays.png", "OUT/selection.csv", "OUT/boxacc_curves.png", "--ids", "--select", "--curves"):
        assert needle in said(res), needle


# ------------------------------------------------------------------------------------ hand-made columns
_PATCHES = np.zeros((3, 3), dtype=np.float32)
_PATCHES[1:3, 1:3] = 1.0  # on a 40x40 image at stride 16: LOST's box (16, 16, 40, 40)
_GTS = np.array([[0, 0, 8, 8], [16, 16, 40, 40]])  # the second GT box is the predicted one


def _records(tmp_path, n: int = 3) -> list[Record]:
    out = []
    for i in range(n):
        Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(tmp_path / f"im{i}.png")
        out.append(Record(f"im{i}", tmp_path / f"im{i}.png", -1, 40, 40, _GTS))
    return out


def _column(label: str, have, calls: list | None = None, lost=None) -> MapSource:
    """A column whose maps are ``_PATCHES`` for the indices in ``have`` (the others do not decode)."""

    def fetch(indices):
        if calls is not None:
            calls.append(list(indices))
        return {i: _PATCHES.copy() for i in indices if i in have}

    return MapSource(label, fetch, 16, lost)


def test_discover_iou_is_the_best_over_the_gt_boxes(tmp_path):
    """An image's IoU is its box's best over all its GT boxes (LOST's CorLoc), here the second one,
    for a map column and for a LOST column; NaN without GT boxes; --select first fetches the maps of
    the first n images only."""
    box, iou = discovery_box(_PATCHES, (40, 40), _GTS, 16)
    assert box.tolist() == [16, 16, 40, 40] and iou == pytest.approx(1.0, abs=1e-4)
    assert np.isnan(discovery_box(_PATCHES, (40, 40), np.zeros((0, 4)), 16)[1])
    records, calls = _records(tmp_path), []
    lost = {i: (np.array([16, 16, 40, 40]), LostPatches(4, np.array([4]), 3, 16)) for i in range(3)}
    cols = [_column("maps", range(3), calls), _column("lost", range(3), lost=lost)]
    res = overlays.render_overlays(cols, records, tmp_path / "out", protocol="discover", n=2, figure_format=None)
    assert calls == [[0, 1]]  # not a map of every record for the first two
    assert res.table["index"].tolist() == [0, 0, 1, 1] and res.table["column"].tolist() == ["maps", "lost"] * 2
    assert res.table["iou"].tolist() == pytest.approx([1.0] * 4, abs=1e-4)
    # the padded 3x3 patch grid covers 48x48 pixels: shown cropped to the 40x40 image, not squeezed
    png = np.asarray(Image.open(res.png).convert("RGB"))
    up = np.kron(_PATCHES, np.ones((16, 16), dtype=np.float32))[:40, :40]
    heat = (colormaps["jet"](up)[..., :3] * 255.0).astype(np.float32)
    want = np.clip(np.rint(0.5 * np.float32(50) + 0.5 * heat), 0, 255)  # image 1: gray 50
    lines = _outline([_inclusive(g) for g in _GTS] + [_inclusive((16, 16, 40, 40))], (40, 40))
    np.testing.assert_array_equal(_cell(png, [40, 40], 40, 1, 1)[~lines], want[~lines])


def test_render_overlays_errors_name_the_value(tmp_path):
    """Each mistake is one error before any file is written."""
    records = _records(tmp_path)
    out = tmp_path / "out"
    for cols, kw, needle in (
        ([_column("A", range(3))], dict(thresholds=[1.0]), r"threshold 1.0: expected a score-map threshold in \[0, 1\)"),
        ([_column("A", range(3))], dict(thresholds=[0.5, 0.3]), "visualize: 2 thresholds for 1 columns"),
        ([_column("A", range(3))], dict(n=0), "--n 0: expected at least 1"),
        ([_column("A", {0, 2})], dict(ids=["im2", "im1"]), "--ids: image 'im1' does not decode"),
        ([_column("A", range(3)), _column("B", {1})], dict(n=2), "column 'B': no map for image 'im0'"),
    ):
        with pytest.raises(SimpoolBenchError, match=needle):
            overlays.render_overlays(cols, records, out, protocol="discover", figure_format=None, **kw)
    assert not out.exists()


def _curve(path, ious=(30, 50, 70)) -> None:
    """A boxacc_curve.csv written by hand: two thresholds, a column per IoU in ``ious``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.array([0.0, 0.5])
    pd.DataFrame({"threshold": t, **{f"boxacc_{i}": [10.0, 20.0] for i in ious}}).to_csv(path, index=False)


def test_curves_are_labelled_by_run_folder_and_kept_apart(monkeypatch, tmp_path):
    """Two runs in folders of one name are two curves ("run", "run (2)"); a curve file is labelled by
    its folder; runs of other IoU thresholds, or labels of another count, are refused."""
    got = {}
    monkeypatch.setattr(
        overlays, "boxacc_curves", lambda curves, out, iou_thresholds: got.update(curves=curves, ious=iou_thresholds) or out
    )
    for d in ("a/run", "b/run", "c/other"):
        _curve(tmp_path / d / "boxacc_curve.csv")
    overlays.plot_curves([tmp_path / "a/run", tmp_path / "b/run", tmp_path / "c/other/boxacc_curve.csv"], tmp_path / "c.png")
    assert list(got["curves"]) == ["run", "run (2)", "other"] and got["ious"] == (30, 50, 70)
    assert got["curves"]["run (2)"][1].tolist() == [[10.0] * 3, [20.0] * 3]
    _curve(tmp_path / "d/run50/boxacc_curve.csv", ious=(50,))
    with pytest.raises(SimpoolBenchError, match=r"run50: IoU thresholds \(50,\) differ from the first run's \(30, 50, 70\)"):
        overlays.plot_curves([tmp_path / "a/run", tmp_path / "d/run50"], tmp_path / "c.png")
    with pytest.raises(SimpoolBenchError, match="1 labels for 2 curves"):
        overlays.plot_curves([tmp_path / "a/run", tmp_path / "b/run"], tmp_path / "c.png", labels=["x"])


def test_a_curve_cell_that_is_not_a_number_is_one_error(tmp_path):
    """A damaged or hand-edited boxacc_curve.csv: one line naming the file, line, column and value
    (it was a ValueError traceback from the plot)."""
    _curve(tmp_path / "run" / "boxacc_curve.csv")
    with (tmp_path / "run" / "boxacc_curve.csv").open("a") as f:
        f.write("0.9,5.0,abc,1.0\n")
    res = invoke("visualize", "--curves", tmp_path / "run", "--out", tmp_path / "out")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "boxacc_curve.csv: line 4, column 'boxacc_50': 'abc' is not a number" in said(res)
    assert not (tmp_path / "out" / "boxacc_curves.png").exists()


def test_best_threshold_is_the_row_of_the_iou_asked_for(tmp_path):
    """The best_threshold row of exactly that IoU, wherever the table lists it."""
    rows = [
        {"dataset": "cub", "split": "test", "metric": "best_threshold", "iou_threshold": iou, "value": v}
        for iou, v in ((70, 0.9), (50, 0.4), (30, 0.1))
    ]
    write_run(make_table(rows, Provenance(model="m", pool="simpool")), tmp_path / "run")
    assert [read_best_threshold(tmp_path / "run", iou) for iou in (30, 50, 70)] == [0.1, 0.4, 0.9]
    assert read_best_threshold(tmp_path / "run") == 0.4  # IoU 50 by default
