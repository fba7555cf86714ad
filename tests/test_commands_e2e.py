"""localize and discover end to end on generated CUB/ImageNet/VOC layouts: planted maps score 100
and 0, baselines equal hand-computed values, and the batch size never changes a number."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from simpool_bench import tasks as ev
from simpool_bench.api import read_discovery_data, read_localization_data
from simpool_bench.cli import app
from simpool_bench.engine import EngineConfig
from simpool_bench.models import ModelOutput

runner = CliRunner()


def _write_layouts(root, n=12, seed=0):
    """Bright boxes in the top-left quadrant on dark noise, as CUB native AND wsolevaluation layouts."""
    rng = np.random.default_rng(seed)
    ids, sizes, boxes, labels = [], [], [], []
    for i in range(n):
        w, h = int(rng.integers(60, 120)), int(rng.integers(60, 120))
        x0, y0 = int(rng.integers(2, w // 8)), int(rng.integers(2, h // 8))
        x1, y1 = int(rng.integers(w // 4, w // 2 - 4)), int(rng.integers(h // 4, h // 2 - 4))
        img = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
        img[y0 : y1 + 1, x0 : x1 + 1] = 250
        name = f"c{i % 3}/img_{i:03d}.png"
        (root / "images" / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "images" / name)
        ids.append(name)
        sizes.append((w, h))
        boxes.append((x0, y0, x1, y1))
        labels.append(i % 3)
    meta = root / "metadata"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("\n".join(ids))
    (meta / "class_labels.txt").write_text("\n".join(f"{a},{b}" for a, b in zip(ids, labels)))
    (meta / "image_sizes.txt").write_text("\n".join(f"{a},{w},{h}" for a, (w, h) in zip(ids, sizes)))
    (meta / "localization.txt").write_text("\n".join(f"{a},{b[0]},{b[1]},{b[2]},{b[3]}" for a, b in zip(ids, boxes)))
    # CUB-200-2011 native files: 1-based ids, boxes as x, y, w, h, everything in the test split
    (root / "images.txt").write_text("".join(f"{k + 1} {a}\n" for k, a in enumerate(ids)))
    (root / "bounding_boxes.txt").write_text(
        "".join(f"{k + 1} {b[0]}.0 {b[1]}.0 {b[2] - b[0]}.0 {b[3] - b[1]}.0\n" for k, b in enumerate(boxes))
    )
    (root / "train_test_split.txt").write_text("".join(f"{k + 1} 0\n" for k in range(n)))
    (root / "image_class_labels.txt").write_text("".join(f"{k + 1} {lab + 1}\n" for k, lab in enumerate(labels)))
    return root


class PlantedModel(torch.nn.Module):
    """A 'model' whose attention marks the image's bright pixels at full resolution (stride 1):
    exactly on the box, or flipped to the opposite corner. (Raw noise would not do for the 0: with
    hundreds of contours per threshold, MaxBoxAccV2 finds some noise box with IoU > 0.3.)"""

    arch, family, pool, gamma, attn_source, num_classes, stride = "planted", "vit", "simpool", None, "simpool", 0, 1
    data_config = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

    def __init__(self, flip: bool) -> None:
        super().__init__()
        self.flip = flip

    def forward(self, x, target=None, return_keys=False):
        m = (x.mean(dim=1) > 0).float()  # normalised with mean = std = 0.5: bright box > 0, dark noise < 0
        if self.flip:
            m = m.flip(-1).flip(-2)
        return ModelOutput(logits=None, features=m.flatten(1)[:, :4], attn=m.float(), keys=None)


@pytest.fixture(scope="module")
def wsol(tmp_path_factory):
    return _write_layouts(tmp_path_factory.mktemp("wsol"))


@pytest.mark.parametrize("layout", ["wsol", "cub-native"])
def test_planted_map_scores_100_and_opposite_corner_0(wsol, layout):
    records = (
        read_localization_data("imagenet", wsol / "images", wsol / "metadata")
        if layout == "wsol"
        else read_localization_data("cub", wsol, None)
    )
    assert len(records) == 12
    cfg = EngineConfig(device="cpu", batch_size=5, progress=False)
    on = ev.localize(PlantedModel(flip=False), records, cfg, dataset="x", split="test")
    off = ev.localize(PlantedModel(flip=True), records, cfg, dataset="x", split="test")
    value = lambda o, m, iou=None: next(r["value"] for r in o.rows if r["metric"] == m and r["iou_threshold"] == iou)
    for iou in (30, 50, 70):
        assert value(on, "maxboxacc", iou) == 100.0
        assert value(off, "maxboxacc", iou) == 0.0
    assert value(on, "maxboxacc_v2") == 100.0 and value(off, "maxboxacc_v2") == 0.0


def test_localize_cli_runs_on_both_layouts_with_same_numbers(wsol, tmp_path):
    from tests.conftest import build_tiny_checkpoint

    ckpt, _ = build_tiny_checkpoint(tmp_path / "m.pth.tar")
    tables = []
    for args in (["--data", wsol / "images", "--metadata", wsol / "metadata"], ["--data", wsol]):
        out = tmp_path / f"out{len(tables)}"
        res = runner.invoke(
            app,
            ["localize", "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(out), "-b", "4", *map(str, args)],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        tables.append(pd.read_csv(out / "results.csv").set_index(["metric", "iou_threshold"])["value"])
        assert (out / "boxacc_curve.csv").exists()
    pd.testing.assert_series_equal(tables[0], tables[1])


def _hand_corloc(records, box_fn):
    hits = 0
    for r in records:
        px0, py0, px1, py1 = box_fn(r.width, r.height)
        best = 0.0
        for gx0, gy0, gx1, gy1 in r.boxes:
            iw = max(0.0, min(px1, gx1) - max(px0, gx0))
            ih = max(0.0, min(py1, gy1) - max(py0, gy0))
            inter = iw * ih
            union = (px1 - px0) * (py1 - py0) + (gx1 - gx0) * (gy1 - gy0) - inter
            best = max(best, inter / union)
        hits += best >= 0.5
    return 100.0 * hits / len(records)


def test_discover_baselines_equal_hand_computed_and_batch_size_is_invisible(tmp_path):
    from tests.conftest import build_tiny_checkpoint, build_voc_dataset

    voc = build_voc_dataset(tmp_path / "VOC2007", n=13)
    records = read_discovery_data("voc07", voc)
    cfg = EngineConfig(device="cpu", batch_size=16, progress=False)
    full = ev.discover(None, records, cfg, method="full-image")
    assert full.rows[0]["value"] == pytest.approx(_hand_corloc(records, lambda w, h: (0, 0, w, h)))
    ckpt, _ = build_tiny_checkpoint(tmp_path / "m.pth.tar")
    values = []
    for bs in ("1", "16"):
        out = tmp_path / f"d{bs}"
        res = runner.invoke(
            app,
            [
                "discover",
                "--dataset",
                "voc07",
                "--data",
                str(voc),
                "--checkpoint",
                str(ckpt),
                "--device",
                "cpu",
                "-b",
                bs,
                "--out",
                str(out),
                "--no-resume",
            ],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        values.append(pd.read_csv(out / "results.csv").query("metric == 'corloc'")["value"].item())
    assert values[0] == values[1]


def test_discover_bad_input_names_the_culprit(tmp_path):
    from tests.conftest import build_voc_dataset

    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    (voc / "Annotations" / "2007000001.xml").write_text("<annotation><size>")
    res = runner.invoke(app, ["discover", "--dataset", "voc07", "--data", str(voc), "--method", "center"], catch_exceptions=False)
    assert res.exit_code == 2 and "2007000001.xml" in res.output


def test_discover_no_hard_drops_hard_objects_and_all_hard_images_as_lost(tmp_path):
    """``discover --no-hard`` (LOST ``--no_hard``) end to end: hard objects (truncated or difficult)
    leave the ground truth and images left without an object leave the evaluation. Expected values
    from LOST's own loop: torchvision's VOCDetection targets, ``extract_gt_VOC(remove_hards=...)``,
    the skip of ``main_lost.py`` and its ``bbox_iou >= 0.5`` (tests/lost_reference.py), the
    centred box written out by hand (W // 4 .. W - W // 4)."""
    from tests.conftest import build_voc_dataset

    import lost_reference as ref

    voc = build_voc_dataset(tmp_path / "VOCdevkit" / "VOC2007", n=6)
    ids = (voc / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    # per image: (hit the centred box?, truncated, difficult) of each object
    plan = [
        [(True, 0, 0)],  # kept, hit
        [(True, 0, 1)],  # all hard (difficult): dropped by --no-hard
        [(False, 0, 0), (True, 1, 0)],  # kept; only the truncated object is hit: a miss with --no-hard
        [(False, 0, 0)],  # kept, miss
        [(False, 1, 1), (True, 1, 0)],  # all hard: dropped by --no-hard
        [(True, 0, 0), (False, 0, 1)],  # kept, hit
    ]
    for image_id, objects in zip(ids, plan):
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as im:
            w, h = im.size
        centre = (w // 4 + 1, h // 4 + 1, w - w // 4, h - h // 4)  # VOC's 1-based inclusive pixels
        corner = (1, 1, 3, 3)  # IoU 0 with the centred box
        xml = "".join(
            f"<object><name>thing</name><truncated>{t}</truncated><difficult>{d}</difficult><bndbox>"
            + "".join(f"<{tag}>{v}</{tag}>" for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), centre if hit else corner))
            + "</bndbox></object>"
            for hit, t, d in objects
        )
        size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        (voc / "Annotations" / f"{image_id}.xml").write_text(f"<annotation><filename>{image_id}.jpg</filename>{size}{xml}</annotation>")

    def lost_center_corloc(no_hard):
        hits = cnt = 0
        for img, target in ref.lost_voc_dataset(tmp_path):
            gt, _ = ref.extract_gt_voc(target, remove_hards=no_hard)
            if gt.shape[0] == 0 and no_hard:
                continue
            h, w = img.shape[1:]
            hits += ref.corloc_hit(np.array([w // 4, h // 4, w - w // 4, h - h // 4], dtype=np.int64), gt)
            cnt += 1
        return cnt, 100.0 * hits / cnt

    expected = {False: lost_center_corloc(False), True: lost_center_corloc(True)}
    assert expected == {False: (6, pytest.approx(500 / 6)), True: (4, 50.0)}  # the plan above, by hand: 5 of 6, 2 of 4
    for no_hard in (False, True):
        out = tmp_path / f"run_{no_hard}"
        flags = ["--no-hard"] if no_hard else []
        res = runner.invoke(
            app,
            ["discover", "--dataset", "voc07", "--data", str(voc), "--method", "center", *flags, "--out", str(out)],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.output
        table = pd.read_csv(out / "results.csv").set_index("metric")["value"]
        n, corloc = expected[no_hard]
        assert table["n_images"] == n and table["corloc"] == pytest.approx(corloc, abs=1e-9), (no_hard, table)
