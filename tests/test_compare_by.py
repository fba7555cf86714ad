"""``compare`` for paper tables: rows by checkpoint or label, ``--metrics`` (with @IoU / @k), inputs
as run folders, results files and all_results.csv alike, and nothing ever cut to "…"."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError

from conftest import invoke_cli, said
from results_helpers import _prov, _with_k

LABELS = ["ViT-demo SimPool", "ViT-demo CLS", "no-model baseline"]


def _table(rows: list[dict], **prov) -> pd.DataFrame:
    return R.make_table(rows, _prov(**prov))


def _demo_runs(rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, float]]]:
    """The demo's nine run tables (two checkpoints x classify/localize/discover x2, and the no-model
    baselines), random values; and the headline values each table row should land in."""
    tables: dict[str, pd.DataFrame] = {}
    expect: dict[str, dict[str, float]] = {lab: {} for lab in LABELS}
    v = lambda: float(np.round(rng.uniform(0, 100), 6))  # noqa: E731
    for kind, label, sha in (("vit-simpool", LABELS[0], "aa11"), ("vit-cls", LABELS[1], "bb22")):
        prov = dict(checkpoint=f"models/{kind}.pth.tar", checkpoint_sha256=sha)
        top1, v2, voc, coco = v(), v(), v(), v()
        tables[f"{kind}-classify"] = _table(
            R.metric_rows("demo", "test", {"top1": top1, "top5": v(), "n_images": 12}), run_id=f"{kind}-c", **prov
        )
        loc = {"maxboxacc": {30: v(), 50: v(), 70: v()}, "maxboxacc_v2": v2, "best_threshold": {30: 0.1, 50: 0.2, 70: 0.3}}
        tables[f"{kind}-localize"] = _table(R.metric_rows("demo-cub", "test", loc), run_id=f"{kind}-l", **prov)
        tables[f"{kind}-discover-voc07"] = _table(R.metric_rows("demo-voc07", "trainval", {"corloc": voc}), run_id=f"{kind}-v", **prov)
        tables[f"{kind}-discover-coco20k"] = _table(R.metric_rows("demo-coco20k", "trainval", {"corloc": coco}), run_id=f"{kind}-o", **prov)
        expect[label] = {"demo top1": top1, "demo-cub maxboxacc_v2": v2, "demo-voc07 corloc": voc, "demo-coco20k corloc": coco}
    base = dict(checkpoint=None, checkpoint_sha256=None, checkpoint_format="none", gamma=None, min_scope=None, attn_source=None)
    v2, voc, coco = v(), v(), v()
    tables["baseline-center-gaussian-localize"] = _table(
        R.metric_rows("demo-cub", "test", {"maxboxacc": {50: v()}, "maxboxacc_v2": v2}),
        model="baseline:center-gaussian",
        pool="none",
        run_id="b-l",
        **base,
    )
    for name, ds, val in (("voc07", "demo-voc07", voc), ("coco20k", "demo-coco20k", coco)):
        tables[f"baseline-center-discover-{name}"] = _table(
            R.metric_rows(ds, "trainval", {"corloc": val}), model="baseline:center", pool="none", run_id=f"b-{name}", **base
        )
    expect[LABELS[2]] = {"demo-cub maxboxacc_v2": v2, "demo-voc07 corloc": voc, "demo-coco20k corloc": coco}
    return tables, expect


def _expected_markdown(expect: dict[str, dict[str, float]], ref: str) -> str:
    """The headline table written out by hand: 2 decimals, best of a column bold, delta vs ``ref``."""
    cols = ["demo top1", "demo-cub maxboxacc_v2", "demo-voc07 corloc", "demo-coco20k corloc"]
    lines = ["| checkpoint | " + " | ".join(cols) + " |", "|---" + "|---:" * len(cols) + "|"]
    best = {c: max(round(e[c], 2) for e in expect.values() if c in e) for c in cols}
    for label, vals in expect.items():
        cells = []
        for c in cols:
            if c not in vals:
                cells.append("–")
                continue
            s = f"{vals[c]:.2f}"
            if round(vals[c], 2) == best[c]:
                s = f"**{s}**"
            if label != ref:
                s += f" ({vals[c] - expect[ref][c]:+.2f})" if c in expect[ref] else " (–)"
            cells.append(s)
        name = f"{label} (ref)" if label == ref else label
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


@pytest.fixture
def demo_runs(tmp_path):
    tables, expect = _demo_runs(np.random.default_rng(7))
    folders = []
    for name, t in tables.items():
        R.write_run(t, tmp_path / "runs" / name, formats=("parquet", "csv"))
        folders.append(tmp_path / "runs" / name)
    allres = tmp_path / "suite" / R.ALL_RESULTS
    allres.parent.mkdir()
    pd.concat(list(tables.values()), ignore_index=True).to_csv(allres, index=False)
    return folders, allres, expect


def test_by_checkpoint_builds_the_demo_headline_table(demo_runs, tmp_path):
    folders, allres, expect = demo_runs
    md, tex, csv = tmp_path / "cmp.md", tmp_path / "cmp.tex", tmp_path / "cmp.csv"
    args = ["--by", "checkpoint", "--metrics", "top1,maxboxacc_v2,corloc", "--labels", ",".join(LABELS), "--reference", "1"]
    res = invoke_cli("compare", *folders, *args, "--markdown", md, "--latex", tex, "--csv", csv)
    assert res.exit_code == 0, res.output
    assert md.read_text() == _expected_markdown(expect, LABELS[1])
    # the CSV keeps every value in full, and deltas against the reference row
    got = pd.read_csv(csv)
    assert list(got["checkpoint"]) == LABELS
    for i, label in enumerate(LABELS):
        for col in ("demo top1", "demo-cub maxboxacc_v2", "demo-voc07 corloc", "demo-coco20k corloc"):
            want = expect[label].get(col, math.nan)
            assert got[col][i] == want or (math.isnan(want) and math.isnan(got[col][i]))
            ref = expect[LABELS[1]][col]
            assert got[f"{col} delta"][i] == pytest.approx(want - ref, abs=1e-12, nan_ok=True)
    assert tex.read_text().count(r"\toprule") == 1 and r"\multicolumn{1}{c}{demo-cub}" in tex.read_text()
    assert r"\textbf{" in tex.read_text() and "MaxBoxAccV2" in tex.read_text()
    # the same table from all_results.csv, from the folder holding it, and from the Python API
    for source in ([allres], [allres.parent]):
        res = invoke_cli("compare", *source, *args, "--markdown", tmp_path / "b.md")
        assert res.exit_code == 0, res.output
        assert (tmp_path / "b.md").read_text() == md.read_text()
    api = R.compare_by_checkpoint(folders, metrics=["top1", "maxboxacc_v2", "corloc"], labels=LABELS, reference=LABELS[1])
    assert R.compare_to_markdown(api) == md.read_text()
    # a folder of run folders: every run below it (sorted), the same cells
    whole = R.compare([folders[0].parent], by="checkpoint", metrics="top1,maxboxacc_v2,corloc", reference=None)
    assert sorted(whole.index) == sorted(
        [
            "vit_small_patch16_224/simpool γ=1.25 [vit-cls.pth.tar]",
            "vit_small_patch16_224/simpool γ=1.25 [vit-simpool.pth.tar]",
            "no-model baseline",
        ]
    )
    same = R.compare(folders, by="checkpoint", metrics="top1,maxboxacc_v2,corloc", reference=None)
    # columns: datasets of the first metric asked for first, then in order of appearance (sorted folders)
    assert [c[0] for c in whole.columns] == ["demo", "demo-cub", "demo-coco20k", "demo-voc07"]
    pd.testing.assert_frame_equal(whole.loc[same.index, same.columns], same)


def test_by_run_and_by_label(demo_runs):
    folders, allres, expect = demo_runs
    by_run = R.compare([allres], metrics="corloc", reference=None)
    assert len(by_run) == 11  # one row per run_id of all_results.csv; runs without corloc stay as empty rows
    assert by_run[("demo-voc07", "trainval", "corloc", "value")].notna().sum() == 3
    labels = ["A"] * 4 + ["B"] * 4 + ["base"] * 3
    by_label = R.compare(folders, by="label", labels=labels, metrics="top1,corloc", reference="A")
    assert list(by_label.index) == ["A", "B", "base"]
    assert by_label.loc["B", ("demo-voc07", "trainval", "corloc", "value")] == expect[LABELS[1]]["demo-voc07 corloc"]
    assert by_label.loc["B", ("demo", "test", "top1", "delta")] == pytest.approx(
        expect[LABELS[1]]["demo top1"] - expect[LABELS[0]]["demo top1"], abs=1e-12
    )
    # a `label` column (as a suite may write) groups too
    table = pd.read_csv(allres)
    table["label"] = [{"vit-simpool": "x", "vit-cls": "y"}.get(str(r)[: str(r).rfind("-")], "z") for r in table["run_id"]]
    grouped = R.compare([table], by="label", metrics="corloc", reference=None)
    assert list(grouped.index) == ["x", "y", "z"]
    assert grouped.loc["z", ("demo-coco20k", "trainval", "corloc", "value")] == expect[LABELS[2]]["demo-coco20k corloc"]
    with pytest.raises(SimpoolBenchError, match="gets two values for demo-voc07/trainval corloc"):
        R.compare([table.assign(label="same")], by="label", metrics="corloc")


def test_metrics_suffixes_select_an_iou_threshold_or_a_k():
    loc = {"maxboxacc": {30: 90.0, 50: 70.5, 70: 30.25}, "maxboxacc_v2": 63.58}
    a = _with_k(_table(R.metric_rows("cub", "test", {**loc, "knn_top1": 71.5, "knn_top5": 88.0}), run_id="a"), 10)
    b = _with_k(_table(R.metric_rows("imagenet", "val", {"top1": 75.0, "knn_top1": 72.25}), run_id="b"), 20)
    c = _with_k(_table(R.metric_rows("imagenet", "val", {"knn_top1": 73.0}), run_id="c"), 100)
    cmp = R.compare([a, b, c], by="checkpoint", metrics="maxboxacc@50,knn_top1@20,knn_top1@10", reference=None)
    assert len(cmp) == 1  # one checkpoint
    assert [k[:3] for k in cmp.columns] == [
        ("cub", "test", "maxboxacc@50"),
        ("cub", "test", "knn_top1@10"),
        ("imagenet", "val", "knn_top1@20"),
    ]
    assert cmp.iloc[0].tolist() == [70.5, 71.5, 72.25]
    every_k = R.compare([a, b, c], by="checkpoint", metrics="knn_top1", reference=None)
    assert [k[2] for k in every_k.columns] == ["knn_top1@10", "knn_top1@20", "knn_top1@100"]
    assert every_k.iloc[0].tolist() == [71.5, 72.25, 73.0]
    by_run = R.compare([a, b, c], metrics="knn_top1@100,top5")
    assert by_run.attrs["unmatched"] == ["top5"] and by_run[("imagenet", "val", "knn_top1@100", "value")].tolist()[2] == 73.0
    # without a k column (an older table) k is empty: the plain name selects, an @k does not
    plain = a.drop(columns="k")
    assert R.compare([plain], metrics="knn_top1", reference=None).iloc[0].tolist() == [71.5]
    assert R.compare([plain], metrics="knn_top1@10", reference=None).attrs["unmatched"] == ["knn_top1@10"]


def test_one_checkpoints_plain_and_knn_runs_fill_one_row_where_they_agree_on_the_same_data():
    """A plain classify run and a k-NN run of the same checkpoint on the same images both give top1:
    the same value on the same data is one cell (no pick to make); another value, or the same value on
    other data, is still an error naming both runs."""
    images, bank, other = "a" * 64, "b" * 64, "c" * 64
    plain = _table(R.metric_rows("imagenet", "val", {"top1": 80.0, "n_images": 50}), run_id="p", data_sha256=images)
    knn = _with_k(
        _table(
            R.metric_rows("imagenet", "val", {"top1": 80.0, "knn_top1": 70.0, "n_images": 50}),
            run_id="k",
            data_sha256=images,
            knn_data_sha256=bank,
        ),
        20,
    )
    cmp = R.compare([plain, knn], by="checkpoint", reference=None)
    assert len(cmp) == 1 and [c[2] for c in cmp.columns] == ["top1", "knn_top1@20", "n_images"]
    assert cmp.iloc[0].tolist() == [80.0, 70.0, 50.0] and cmp.attrs["mixed_data"] == []
    moved = knn.assign(run_id="m")
    moved.loc[moved["metric"] == "top1", "value"] = 80.5
    with pytest.raises(
        SimpoolBenchError, match=r"gets two values for imagenet/val top1: 80 \(run 0, run_id p\) and 80.5 \(run 1, run_id m\); compare"
    ):
        R.compare([plain, moved], by="checkpoint")
    elsewhere = plain.assign(run_id="o", data_sha256=other)
    with pytest.raises(
        SimpoolBenchError, match=r"top1: 80 \(run 0, run_id p\) and 80 \(run 1, run_id o\), on other data; compare them --by run"
    ):
        R.compare([plain, elsewhere], by="checkpoint")


def test_metrics_errors_and_conflicts(demo_runs, tmp_path):
    folders, _, _ = demo_runs
    res = invoke_cli("compare", *folders, "--metrics", "top1,maxboxaccv2")
    assert res.exit_code == 2
    assert said(res).startswith("error: --metrics: unknown metric 'maxboxaccv2'; known: top1, top5, knn_top1, knn_top5, top1_loc")
    res = invoke_cli("compare", *folders, "--metrics", "maxboxacc@fifty")
    assert res.exit_code == 2 and "after '@' comes an IoU threshold or a k" in res.output
    res = invoke_cli("compare", *folders, "--by", "checkpoint", "--metrics", "top1,corloc@50")
    assert res.exit_code == 0 and "note: --metrics corloc@50: no input has this metric" in said(res)
    # the same run read twice (its parquet and its csv) is one run; another run of the checkpoint is a conflict
    run = folders[0]
    assert len(R.compare([run / "results.parquet", run / "results.csv"], by="checkpoint")) == 1
    assert len(R.compare([run / "results.parquet", run / "results.csv"])) == 2  # by run: as before
    again = R.read_run(run).assign(run_id="rerun")
    again.loc[again["metric"] == "top1", "value"] += 1.0
    R.write_run(again, tmp_path / "rerun", formats=())
    res = invoke_cli("compare", run, tmp_path / "rerun", "--by", "checkpoint")
    assert res.exit_code == 2 and "gets two values for demo/test top1" in said(res) and str(tmp_path / "rerun") in said(res)
    assert invoke_cli("compare", run, tmp_path / "rerun", "--by", "checkpoint", "--labels", "a,b").exit_code == 2
    res = invoke_cli("compare", *folders, "--by", "checkpoint", "--labels", "a,b")
    assert res.exit_code == 2 and "2 labels given for 3 rows" in said(res)
    res = invoke_cli("compare", *folders, "--by", "checkpoint", "--reference", "nobody")
    assert res.exit_code == 2 and "reference row 'nobody' does not exist" in said(res)
    res = invoke_cli("compare", tmp_path / "empty_dir_missing")
    assert res.exit_code == 2
    (tmp_path / "empty").mkdir()
    res = invoke_cli("compare", tmp_path / "empty")
    assert res.exit_code == 2 and "nor any run folder" in said(res)


def test_no_cell_is_ever_cut(tmp_path):
    """Five runs with long labels: the files hold every label and value whole; the console wraps."""
    runs, labels = [], []
    for i in range(5):
        values = {"top1": 70.0 + i / 3, "maxboxacc": {30: 90.0 - i, 50: 60.0 + i / 7, 70: 20.0 + i}, "maxboxacc_v2": 55.5 + i}
        runs.append(
            _table(R.metric_rows("imagenet-validation", "val", values), run_id=f"r{i}", checkpoint=f"ckpt/long_checkpoint_name_{i}.pth.tar")
        )
        labels.append(f"a rather long label for run number {i} of five")
    cmp = R.compare(runs, labels=labels)
    for width in (40, 80):
        console = Console(record=True, width=width)
        console.print(R.compare_console_table(cmp))
        assert "…" not in console.export_text()
    for text in (R.compare_to_markdown(cmp), R.compare_to_latex(cmp), R.compare_to_csv(cmp)):
        assert "…" not in text
        for lab in labels:
            assert lab in text
    md = R.compare_to_markdown(cmp)
    assert "70.33 (+0.33)" in md and "**60.57** (+0.57)" in md
    for i, r in enumerate(runs):
        R.write_run(r, tmp_path / f"r{i}", formats=())
    res = invoke_cli("compare", *[tmp_path / f"r{i}" for i in range(5)], "--labels", ",".join(labels))
    assert res.exit_code == 0 and "…" not in res.output


def test_checkpoint_rows_follow_sha256_then_path():
    rows = lambda ds, v: R.metric_rows(ds, "val", {"top1": v})  # noqa: E731
    same_sha = [
        _table(rows("a", 1.0), run_id="1", checkpoint="x/ck.pth", checkpoint_sha256="s1"),
        _table(rows("b", 2.0), run_id="2", checkpoint="copy/of/ck.pth", checkpoint_sha256="s1"),  # a copy: same row
    ]
    by_path = [
        _table(rows("a", 3.0), run_id="3", checkpoint="timm:vit_small", checkpoint_sha256=None),
        _table(rows("b", 4.0), run_id="4", checkpoint="timm:vit_small", checkpoint_sha256=None),
    ]
    no_weights = _table(rows("a", 5.0), run_id="5", checkpoint=None, checkpoint_sha256=None, checkpoint_format="random-init")
    nomodel = dict(checkpoint=None, checkpoint_sha256=None, pool="none", gamma=None)
    baselines = [_table(rows("c", 6.0), run_id="6", model="baseline:center", **nomodel)]
    baselines.append(_table(rows("d", 7.0), run_id="7", model="baseline:center-gaussian", **nomodel))
    cmp = R.compare([*same_sha, *by_path, no_weights, *baselines], by="checkpoint", reference=None)
    assert list(cmp.index) == [
        "vit_small_patch16_224/simpool γ=1.25 [ck.pth]",
        "vit_small_patch16_224/simpool γ=1.25 [timm:vit_small]",
        "vit_small_patch16_224/simpool γ=1.25 (no weights)",
        "no-model baseline",
    ]
    got = {(lab, c[0]): v for lab, row in cmp.iterrows() for c, v in row.items() if not math.isnan(v)}
    assert got == {
        (cmp.index[0], "a"): 1.0,
        (cmp.index[0], "b"): 2.0,
        (cmp.index[1], "a"): 3.0,
        (cmp.index[1], "b"): 4.0,
        (cmp.index[2], "a"): 5.0,
        ("no-model baseline", "c"): 6.0,
        ("no-model baseline", "d"): 7.0,
    }
