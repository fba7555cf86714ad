"""The demo pipeline on its small (CI) setting: every output exists, parses and holds its rows."""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from simpool_bench.demo.run import BASELINE_LABEL, DEMO_LABELS, DemoSettings, run_demo
from simpool_bench.results import read_run


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, DemoSettings.small(), device="cpu")


def test_every_run_writes_a_parsable_table_with_expected_rows(demo):
    expected = {
        "vit-simpool-classify": {"top1", "top5", "n_images"},
        "vit-cls-classify": {"top1", "top5", "n_images"},
        "vit-simpool-localize": {"maxboxacc", "maxboxacc_v2", "best_threshold", "top1_loc", "gt_known_loc"},
        "vit-cls-localize": {"maxboxacc", "maxboxacc_v2", "best_threshold"},
        "vit-simpool-discover-voc07": {"corloc"},
        "vit-simpool-discover-coco20k": {"corloc"},
        "baseline-localize": {"maxboxacc_v2"},
        "baseline-discover-voc07": {"corloc"},
        "baseline-discover-coco20k": {"corloc"},
    }
    for name, metrics in expected.items():
        run = demo.runs[name]
        for f in ("results.csv", "results.parquet", "results.json", "results.md"):
            assert (run / f).exists(), f"{name}/{f}"
        table = read_run(run / "results.parquet")
        assert metrics <= set(table["metric"]), name
        assert table.equals(read_run(run / "results.csv")), name
        if "localize" in name:
            assert sorted(table.query("metric == 'maxboxacc'")["iou_threshold"].tolist()) == [30, 50, 70]
            curve = pd.read_csv(run / "boxacc_curve.csv")
            assert list(curve.columns) == ["threshold", "boxacc_30", "boxacc_50", "boxacc_70"] and len(curve) == 1000


def test_compare_table_has_models_and_baselines_as_rows(demo):
    labels = list(demo.table.index)
    assert labels[0] == DEMO_LABELS["vit-simpool"] and BASELINE_LABEL in labels
    text = demo.compare_md.read_text()
    for label in (*DEMO_LABELS.values(), BASELINE_LABEL):
        assert label in text
    assert demo.compare_tex.read_text().count(r"\toprule") == 1
    allres = pd.read_csv(demo.out / "suite" / "all_results.csv")
    assert set(allres["label"]) == {*DEMO_LABELS.values(), BASELINE_LABEL}


def test_figures_are_pngs(demo):
    for png in (demo.overlays, demo.curves):
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100


def test_second_run_reuses_data_and_models_and_gives_same_tables(demo):
    before = {p: p.stat().st_mtime_ns for p in (demo.out / "models").glob("*.pth.tar")}
    data_stamp = (demo.out / "data").stat().st_mtime_ns
    cols = ["dataset", "split", "metric", "iou_threshold", "value"]
    first = {name: read_run(run / "results.parquet")[cols] for name, run in demo.runs.items()}
    first_ids = {name: read_run(run / "results.parquet")["run_id"].iloc[0] for name, run in demo.runs.items()}
    again = run_demo(demo.out, DemoSettings.small(), device="cpu")
    assert before and {p: p.stat().st_mtime_ns for p in (demo.out / "models").glob("*.pth.tar")} == before
    assert (demo.out / "data").stat().st_mtime_ns == data_stamp
    for name, table in first.items():
        second = read_run(again.runs[name] / "results.parquet")
        assert second["run_id"].iloc[0] != first_ids[name]  # really rewritten by the second run
        pd.testing.assert_frame_equal(table, second[cols])
