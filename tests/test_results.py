"""Tests for simpool_bench.results: the tidy table, exports, compare, check."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError


def _prov(**kw) -> R.Provenance:
    base = dict(model="vit_small_patch16_224", pool="simpool", checkpoint="ckpt/vits_simpool.pth.tar",
                checkpoint_sha256="0123456789", checkpoint_format="official-supervised", gamma=1.25,
                min_scope="sample", attn_source="simpool", method=None, image_size=224, n_images=5794,
                device="cpu", run_id="run0", tool_version="0.1.0", torch_version="2.x", timm_version="1.x",
                date="2025-01-02T03:04:05+00:00", command='simpool-bench localize --out "a b" --x=1,2', )
    base.update(kw)
    return R.Provenance(**base)


def _rows(values: dict, dataset: str = "cub", split: str = "test") -> list[dict]:
    return R.metric_rows(dataset, split, values)


LOC = {"maxboxacc": {30: 96.5, 50: 80.125, 70: 40.0}, "maxboxacc_v2": (96.5 + 80.125 + 40.0) / 3,
       "maxboxacc_v1": 78.0, "best_threshold": {30: 0.12, 50: 0.2, 70: 0.31}, "top1_loc": 60.0,
       "gt_known_loc": 80.0, "n_failed": 0}


def _run(values: dict = LOC, **kw) -> pd.DataFrame:
    return R.make_table(_rows(values), _prov(**kw))


# ------------------------------------------------------------------------------------ the table
def test_make_table_columns_and_rows():
    df = _run()
    assert list(df.columns) == list(R.COLUMNS)
    assert list(df.columns[:5]) == ["dataset", "split", "metric", "iou_threshold", "value"]
    mb = df[df.metric == "maxboxacc"]
    assert mb["iou_threshold"].tolist() == [30, 50, 70]
    assert mb["value"].tolist() == [96.5, 80.125, 40.0]
    v2 = df[df.metric == "maxboxacc_v2"]
    assert len(v2) == 1 and v2["iou_threshold"].isna().all()
    assert v2["value"].iloc[0] == pytest.approx((96.5 + 80.125 + 40.0) / 3)
    # provenance repeated on every row
    assert (df["model"] == "vit_small_patch16_224").all() and (df["gamma"] == 1.25).all()
    assert df["method"].isna().all() and (df["schema_version"] == R.SCHEMA_VERSION).all()


@pytest.mark.parametrize("rows, match", [
    ([], "at least one"),
    ([{"dataset": "cub", "split": "test", "metric": "top1"}], "missing keys"),
    ([{"dataset": "cub", "split": "test", "metric": "top1", "value": 1.0, "extra": 2}], "unknown keys"),
    ([{"dataset": "cub", "split": "test", "metric": "maxboxacc", "value": 1.0}], "needs an iou_threshold"),
    ([{"dataset": "cub", "split": "test", "metric": "maxboxacc_v2", "iou_threshold": 50, "value": 1.0}], "must be empty"),
    ([{"dataset": "cub", "split": "test", "metric": "top1", "value": "high"}], "'value' row 0"),
    ([{"dataset": "cub", "split": "test", "metric": "top1", "value": 1.0}] * 2, "duplicate rows"),
    ([{"dataset": "cub", "split": "test", "metric": "corloc", "iou_threshold": 150, "value": 1.0}], "iou_threshold 150"),
])
def test_make_table_rejects_bad_rows(rows, match):
    with pytest.raises(SimpoolBenchError, match=match):
        R.make_table(rows, _prov())


def test_provenance_collect(tmp_path):
    ck = tmp_path / "model.pth"
    ck.write_bytes(b"abc")
    p = R.Provenance.collect("resnet50", "simpool", checkpoint=ck, gamma=2.0,
                             argv=["/usr/bin/simpool-bench", "check", "a b.parquet"])
    import timm
    import torch

    import simpool_bench
    # sha256("abc"), the FIPS 180-2 test vector
    assert p.checkpoint_sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert p.checkpoint == str(ck) and p.gamma == 2.0
    assert (p.torch_version, p.timm_version, p.tool_version) == (torch.__version__, timm.__version__, simpool_bench.__version__)
    assert p.command == "simpool-bench check 'a b.parquet'"
    when = datetime.fromisoformat(p.date)
    assert when.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 120
    assert re.fullmatch(r"[0-9a-f]{12}", p.run_id)
    q = R.Provenance.collect("resnet50", "gap")
    assert q.run_id != p.run_id and q.checkpoint is None and q.checkpoint_sha256 is None
    # a given sha is kept, not recomputed
    assert R.Provenance.collect("r", "gap", checkpoint=ck, checkpoint_sha256="given").checkpoint_sha256 == "given"


# ------------------------------------------------------------------------------- write and read
def _tricky_run() -> pd.DataFrame:
    rows = _rows({"top1": 100 / 3, "top5": 0.1 + 0.2, "knn_top1": float("nan"), "corloc": 61.9,
                  "maxboxacc": {30: 1e-17, 50: 12345.678901234567, 70: 0.0}, "maxboxacc_v2": 5.0})
    rows.append({"dataset": "NA", "split": "null", "metric": "n_images", "value": 7.0})
    return R.make_table(rows, _prov(checkpoint_sha256="00123", method=None, gamma=None, device="NA",
                                    command='x "y" \'z\', w\nnext'))


def test_round_trip_every_readable_format(tmp_path):
    df = _tricky_run()
    paths = R.write_run(df, tmp_path / "out", formats=("json", "md", "latex"))
    assert set(paths) == {"csv", "parquet", "json", "md", "latex"}
    assert paths["csv"].name == "results.csv" and paths["parquet"].name == "results.parquet"
    for fmt in ("csv", "parquet", "json"):
        back = R.read_run(paths[fmt])
        pd.testing.assert_frame_equal(back, df, check_exact=True)
    # a directory reads its record
    pd.testing.assert_frame_equal(R.read_run(tmp_path / "out"), df, check_exact=True)
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*R.EXPORT_FILES.values(), R.RUN_MANIFEST])


def test_record_always_written(tmp_path):
    paths = R.write_run(_run(), tmp_path, formats=())
    assert set(paths) == {"csv", "parquet"} and all(p.is_file() for p in paths.values())
    with pytest.raises(SimpoolBenchError, match="unknown export format 'xlsx'"):
        R.write_run(_run(), tmp_path, formats=("xlsx",))


def test_markdown_export_lists_every_row(tmp_path):
    df = _run()
    md = R.write_run(df, tmp_path, formats=("md",))["md"].read_text()
    body = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| dataset")]
    parsed = [[c.strip() for c in ln.strip("|").split("|")] for ln in body]
    expected = [[d, s, m, "" if pd.isna(i) else str(int(i)), f"{v:.{3 if m == 'best_threshold' else 0 if m == 'n_failed' else 2}f}"]
                for d, s, m, i, v in df[list(R.METRIC_COLUMNS)].itertuples(index=False)]
    assert parsed == expected
    assert "vit_small_patch16_224" in md and "ckpt/vits_simpool.pth.tar" in md
    assert "80.12" in md or "80.13" in md


def test_latex_export_is_booktabs_and_escaped(tmp_path):
    df = _run()
    tex = R.write_run(df, tmp_path, formats=("latex",))["latex"].read_text()
    lines = tex.splitlines()
    assert lines[1].startswith(r"\begin{tabular}") and r"\toprule" in lines and r"\midrule" in lines
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    data = [ln for ln in lines if ln.startswith("cub & test")]
    assert len(data) == len(df)
    assert r"cub & test & MaxBoxAcc & 70 & 40.00 \\" in data
    assert lines[0].startswith("% simpool-bench: model vit_small_patch16_224; pool simpool")  # a comment
    assert R.latex_escape("a_b&c%d$#{}") == r"a\_b\&c\%d\$\#\{\}"


def test_console_table_has_every_row():
    t = R.console_table(_run())
    assert t.row_count == len(_run()) and [c.header for c in t.columns] == ["dataset", "split", "metric", "IoU", "value"]


def test_read_run_rejects_foreign_table(tmp_path):
    p = tmp_path / "foreign.csv"
    pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}).to_csv(p, index=False)
    with pytest.raises(SimpoolBenchError, match=r"foreign\.csv: not a simpool-bench results table \(missing columns: dataset, split, metric, iou_threshold, value\)"):
        R.read_run(p)
    # the five columns but no schema_version: a plain table, not a record of ours
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"dataset": ["cub"], "split": ["test"], "metric": ["top1"], "iou_threshold": [None], "value": [1.0]}).to_csv(plain, index=False)
    with pytest.raises(SimpoolBenchError, match="plain.csv: no 'schema_version' column"):
        R.read_run(plain)
    j = tmp_path / "dict.json"
    j.write_text(json.dumps({"rows": []}))
    with pytest.raises(SimpoolBenchError, match="dict.json: expected a JSON list"):
        R.read_run(j)
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SimpoolBenchError, match="broken.parquet: cannot read as parquet"):
        R.read_run(bad)
    with pytest.raises(SimpoolBenchError, match="unknown results format .xlsx"):
        (tmp_path / "r.xlsx").write_text("x")
        R.read_run(tmp_path / "r.xlsx")
    with pytest.raises(SimpoolBenchError, match="results file not found"):
        R.read_run(tmp_path / "nope.csv")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
@pytest.mark.parametrize("version, word", [(0, "older"), (R.SCHEMA_VERSION + 1, "newer")])
def test_read_run_rejects_other_schema_version(tmp_path, fmt, version, word):
    df = _run()
    df["schema_version"] = pd.array([version] * len(df), dtype="Int64")
    p = tmp_path / f"old.{fmt}"
    {"csv": lambda: df.to_csv(p, index=False), "parquet": lambda: df.to_parquet(p, index=False),
     "json": lambda: p.write_text(df.to_json(orient="records"))}[fmt]()
    with pytest.raises(SimpoolBenchError, match=rf"old\.{fmt}: {word} results schema version {version}"):
        R.read_run(p)


def test_read_run_names_bad_value(tmp_path):
    p = R.write_run(_run(), tmp_path)["csv"]
    text = p.read_text().splitlines()
    text[2] = text[2].replace("80.125", "eighty")
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(SimpoolBenchError, match=r"results.csv: column 'value' row 1: 'eighty' is not a number"):
        R.read_run(p)


# --------------------------------------------------------------------------------------- compare
def test_compare_three_runs_deltas():
    a = {"top1": 80.0, "maxboxacc": {50: 70.0, 70: 30.0}, "maxboxacc_v2": 55.0}
    b = {"top1": 81.5, "maxboxacc": {50: 69.25, 70: 33.0}, "maxboxacc_v2": 56.0}
    c = {"top1": 79.0, "maxboxacc": {50: 72.0}, "corloc": 61.9}  # no @70, no v2; a metric the others lack
    runs = [_run(a, model="m_a", run_id="a"), _run(b, model="m_b", run_id="b"), _run(c, model="m_c", run_id="c")]
    cmp = R.compare(runs)
    assert list(cmp.index) == [f"m_{x}/simpool γ=1.25 [vits_simpool.pth.tar]" for x in "abc"]
    # labels survive the renderers: rich markup and LaTeX specials are escaped
    console = Console(record=True, width=400)
    console.print(R.compare_console_table(cmp))
    assert "m_b/simpool γ=1.25 [vits_simpool.pth.tar]" in console.export_text()
    assert r"m\_b/simpool $\gamma$=1.25 [vits\_simpool.pth.tar] &" in R.compare_to_latex(cmp)
    for ref in (0, 1):
        cmp = R.compare(runs, reference=ref, labels=["A", "B", "C"])
        vals = [a, b, c]
        for key, getter in (("top1", lambda d: d.get("top1")), ("maxboxacc@50", lambda d: d.get("maxboxacc", {}).get(50)),
                            ("maxboxacc@70", lambda d: d.get("maxboxacc", {}).get(70)),
                            ("maxboxacc_v2", lambda d: d.get("maxboxacc_v2")), ("corloc", lambda d: d.get("corloc"))):
            for i, lab in enumerate("ABC"):
                v, r = getter(vals[i]), getter(vals[ref])
                got_v = cmp.loc[lab, ("cub", "test", key, "value")]
                got_d = cmp.loc[lab, ("cub", "test", key, "delta")]
                if v is None:
                    assert math.isnan(got_v) and math.isnan(got_d)
                else:
                    assert got_v == v
                    if r is None:
                        assert math.isnan(got_d)
                    else:
                        assert got_d == pytest.approx(v - r, abs=1e-12)
    assert cmp.attrs["reference"] == "B"
    # column order: metric display order, IoU ascending
    metrics = list(dict.fromkeys(k[2] for k in cmp.columns))
    assert metrics == ["top1", "maxboxacc@50", "maxboxacc@70", "maxboxacc_v2", "corloc"]
    no_ref = R.compare(runs, reference=None)
    assert set(k[3] for k in no_ref.columns) == {"value"}


def test_compare_renderers_bold_the_best():
    runs = [_run({"top1": 80.0, "n_failed": 3, "best_threshold": 0.2}, run_id="a"),
            _run({"top1": 81.5, "n_failed": 1, "best_threshold": 0.4}, run_id="b"),
            _run({"top1": 79.0, "n_failed": 2, "best_threshold": 0.6}, run_id="c")]
    cmp = R.compare(runs, labels=["A", "B", "C"])
    md = R.compare_to_markdown(cmp)
    lines = md.splitlines()
    assert lines[0] == "| run | cub/test top1 | cub/test best_threshold | cub/test n_failed |"
    row = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")[1:]] for ln in lines[2:]}
    assert row["A (ref)"] == ["80.00", "0.200", "3"]
    assert row["B"] == ["**81.50** (+1.50)", "0.400 (+0.200)", "**1** (-2)"]  # n_failed: lower is better
    assert row["C"] == ["79.00 (-1.00)", "0.600 (+0.400)", "2 (-1)"]  # best_threshold never bold
    tex = R.compare_to_latex(cmp)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\multicolumn{3}{c}{cub/test}" in tex
    assert r"B & \textbf{81.50} {\scriptsize (+1.50)} & 0.400 {\scriptsize (+0.200)} & \textbf{1} {\scriptsize (-2)} \\" in tex
    assert R.compare_console_table(cmp).row_count == 3


def test_compare_errors():
    with pytest.raises(SimpoolBenchError, match="2 labels given for 1 runs"):
        R.compare([_run()], labels=["a", "b"])
    with pytest.raises(SimpoolBenchError, match="reference run 3 does not exist"):
        R.compare([_run()], reference=3)
    two = pd.concat([_run(run_id="x"), _run(run_id="y")], ignore_index=True)
    with pytest.raises(SimpoolBenchError, match="holds 2 runs"):
        R.compare([two])
    labs = list(R.compare([_run(run_id="x"), _run(run_id="y")]).index)
    assert len(set(labs)) == 2 and labs[0].endswith("#0")


# ----------------------------------------------------------------------------------------- check
BASE = {"top1": 80.0, "maxboxacc": {30: 90.0, 50: 70.0, 70: 30.0}, "maxboxacc_v2": 63.0,
        "best_threshold": {50: 0.25}, "n_failed": 0}


def _moved(**changes) -> dict:
    d = json.loads(json.dumps(BASE))
    d["maxboxacc"] = {int(k): v for k, v in d["maxboxacc"].items()}
    d["best_threshold"] = {int(k): v for k, v in d["best_threshold"].items()}
    for k, v in changes.items():
        if "@" in k:
            m, i = k.split("@")
            d[m][int(i)] = v
        else:
            d[k] = v
    return d


def test_check_identical_passes():
    rep = R.check(_run(BASE), _run(BASE))
    assert rep.passed and {r.status for r in rep.rows} == {"ok"} and len(rep.rows) == 7
    assert R.exit_code(rep) == R.EXIT_OK == 0
    assert "PASSED" in rep.markdown


def test_check_regression_named_with_delta_and_tolerance():
    run = _run(_moved(top1=79.5, **{"maxboxacc@70": 30.15, "maxboxacc@30": 95.0}))
    rep = R.check(run, _run(BASE))
    st = {(r.metric, r.iou): r for r in rep.rows}
    assert st[("top1", None)].status == "regressed" and st[("top1", None)].delta == pytest.approx(-0.5)
    assert st[("top1", None)].tolerance == R.DEFAULT_TOLERANCES["top1"]
    assert st[("maxboxacc", 70)].status == "ok"  # +0.15 within 0.2
    assert st[("maxboxacc", 30)].status == "improved"
    assert not rep.passed and R.exit_code(rep) == R.EXIT_REGRESSION == 1
    md = rep.markdown
    assert "FAILED" in md
    assert "- `cub/test top1`: 80.00 → 79.50 (delta -0.50, tolerance ±0.1)" in md
    assert "cub/test maxboxacc@30" in md.split("**Improved:**")[1]


def test_check_tolerance_edges_and_overrides():
    run = _run(_moved(top1=79.9, **{"maxboxacc@70": 29.0}))
    rep = R.check(run, _run(BASE))  # top1 -0.1 == tolerance: ok; @70 -1.0 > 0.2: regressed
    st = {(r.metric, r.iou): r.status for r in rep.rows}
    assert st[("top1", None)] == "ok" and st[("maxboxacc", 70)] == "regressed"
    rep = R.check(run, _run(BASE), tolerances={"maxboxacc@70": 1.0, "top1": 0.05})
    st = {(r.metric, r.iou): r.status for r in rep.rows}
    assert st[("maxboxacc", 70)] == "ok" and st[("top1", None)] == "regressed"
    # a metric-wide override applies to every IoU threshold
    rep = R.check(_run(_moved(**{"maxboxacc@30": 89.0, "maxboxacc@50": 69.0})), _run(BASE), tolerances={"maxboxacc": 1.0})
    assert rep.passed


def test_check_directions():
    # n_failed: lower is better; best_threshold: not gated by default, gated when given a tolerance
    rep = R.check(_run(_moved(n_failed=2, **{"best_threshold@50": 0.6})), _run(BASE))
    st = {(r.metric, r.iou): r.status for r in rep.rows}
    assert st[("n_failed", None)] == "regressed" and st[("best_threshold", 50)] == "ok"
    rep = R.check(_run(_moved(**{"best_threshold@50": 0.6})), _run(BASE), tolerances={"best_threshold": 0.1})
    assert not rep.passed and [r.metric for r in rep.by_status("regressed")] == ["best_threshold"]
    rep = R.check(_run(_moved(**{"best_threshold@50": 0.0})), _run(BASE), tolerances={"best_threshold": 0.1})
    assert not rep.passed  # any move beyond the tolerance, either way
    rep = R.check(_run(BASE), _run(_moved(n_failed=3)))
    assert rep.passed and [r.metric for r in rep.by_status("improved")] == ["n_failed"]


def test_check_missing_metric_fails():
    d = _moved()
    del d["maxboxacc_v2"]
    d["maxboxacc"] = {30: 90.0, 50: 70.0}
    rep = R.check(_run(d), _run(BASE))
    missing = rep.by_status("missing")
    assert {(r.metric, r.iou) for r in missing} == {("maxboxacc_v2", None), ("maxboxacc", 70)}
    assert not rep.passed and R.exit_code(rep) == 1
    assert "`cub/test maxboxacc@70`: baseline 30.00, absent from the run" in rep.markdown
    # a NaN value counts as missing
    rep = R.check(_run(_moved(top1=float("nan"))), _run(BASE))
    assert [r.metric for r in rep.by_status("missing")] == ["top1"] and not rep.passed
    # the run's extra metrics are noted, not gated
    rep = R.check(_run(_moved(corloc=50.0)), _run(BASE))
    assert rep.passed and any("corloc" in n for n in rep.notes)


def test_check_other_dataset_fails():
    run = R.make_table(_rows(BASE, dataset="ilsvrc", split="val"), _prov())
    rep = R.check(run, _run(BASE))
    assert not rep.passed and len(rep.by_status("missing")) == 7 and not rep.by_status("ok")
    assert "the run covers dataset/split ilsvrc/val; the baseline expects cub/test" in rep.markdown
    run = R.make_table(_rows(BASE, split="val"), _prov())
    assert not R.check(run, _run(BASE)).passed


def test_check_provenance_mismatch():
    rep = R.check(_run(BASE, model="resnet50", gamma=2.0), _run(BASE))
    bad = {r.metric: r for r in rep.by_status("provenance-mismatch")}
    assert set(bad) == {"provenance:model", "provenance:gamma"}
    assert (bad["provenance:model"].baseline, bad["provenance:model"].value) == ("vit_small_patch16_224", "resnet50")
    assert not rep.passed and R.exit_code(rep) == 1
    assert "model: baseline `vit_small_patch16_224`, run `resnet50`" in rep.markdown
    # other checkpoint, date, device: not a mismatch; fewer images: a mismatch
    assert R.check(_run(BASE, checkpoint="other.pth", checkpoint_sha256="ff", device="cuda:0", run_id="z"), _run(BASE)).passed
    assert not R.check(_run(BASE, n_images=100), _run(BASE)).passed
    assert R.check(_run(BASE, model="resnet50"), _run(BASE), provenance_fields=()).passed


def test_check_simple_baseline_csv_and_files(tmp_path):
    base = tmp_path / "baseline.csv"
    base.write_text("dataset,split,metric,iou_threshold,value\n"
                    "cub,test,top1,,80.0\ncub,test,maxboxacc,50,70.0\ncub,test,maxboxacc_v2,,63.0\n")
    run_path = R.write_run(_run(_moved(top1=79.0)), tmp_path / "run")["parquet"]
    rep = R.check(run_path, base)
    assert [(r.metric, r.status) for r in rep.rows] == [("top1", "regressed"), ("maxboxacc", "ok"), ("maxboxacc_v2", "ok")]
    assert rep.run_source == str(run_path) and rep.baseline_source == str(base)
    assert f"Run `{run_path}` against baseline `{base}`" in rep.markdown
    # our own record as baseline
    assert R.check(run_path, run_path).passed
    # a baseline without the needed columns, or with no rows
    bad = tmp_path / "bad.csv"
    bad.write_text("metric,value\ntop1,80\n")
    with pytest.raises(SimpoolBenchError, match="bad.csv: a baseline needs columns .* missing dataset, split, iou_threshold"):
        R.check(run_path, bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("dataset,split,metric,iou_threshold,value\n")
    with pytest.raises(SimpoolBenchError, match="empty.csv: the table has no rows"):
        R.check(run_path, empty)


def test_exit_code_mapping():
    assert R.exit_code(R.CheckReport(True, [])) == 0
    assert R.exit_code(R.CheckReport(False, [])) == 1
    assert R.exit_code(SimpoolBenchError("bad file")) == 2
    assert R.exit_code(RuntimeError("crash")) == 2
    with pytest.raises(TypeError):
        R.exit_code("passed")


def test_append_github_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert R.append_github_summary("x") is False
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    summary.write_text("earlier\n")
    assert R.append_github_summary("### one") is True
    assert R.append_github_summary("two\n") is True
    assert summary.read_text() == "earlier\n### one\ntwo\n"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "no" / "dir" / "s.md"))
    with pytest.raises(SimpoolBenchError, match="cannot append to GitHub step summary"):
        R.append_github_summary("x")


# ------------------------------------------------------------------------------------ tolerances
def test_load_tolerances(tmp_path):
    p = tmp_path / "tol.toml"
    p.write_text('default = 0.5\ntop1 = 0.2\n"maxboxacc@70" = 1\nbest_threshold = inf\n')
    tol = R.load_tolerances(p)
    assert tol == {"default": 0.5, "top1": 0.2, "maxboxacc@70": 1.0, "best_threshold": math.inf}
    assert R.tolerance_for("maxboxacc", 70, tol) == 1.0
    assert R.tolerance_for("maxboxacc", 50, tol) == R.DEFAULT_TOLERANCES["maxboxacc"]
    assert R.tolerance_for("custom_metric", None, tol) == 0.5
    assert R.tolerance_for("custom_metric", None, {}) == R.DEFAULT_TOLERANCE
    q = tmp_path / "table.toml"
    q.write_text("[tolerances]\ncorloc = 0.3\n")
    assert R.load_tolerances(q) == {"corloc": 0.3}
    # used by check
    run = _run(_moved(top1=79.85))
    assert not R.check(run, _run(BASE)).passed and R.check(run, _run(BASE), R.load_tolerances(p)).passed


@pytest.mark.parametrize("text, match", [
    ("top1 = ", r"tol\.toml: invalid TOML"),
    ("top_1 = 0.2", r"tol\.toml: unknown metric 'top_1'"),
    ('"maxboxacc@x" = 0.2', r"tol\.toml: tolerance key 'maxboxacc@x'"),
    ("top1 = -0.2", r"tol\.toml: tolerance 'top1' = -0.2"),
    ('top1 = "small"', r"tol\.toml: tolerance 'top1' = 'small'"),
    ("top1 = true", r"tol\.toml: tolerance 'top1' = True"),
    ("top1 = nan", r"tol\.toml: tolerance 'top1' = nan"),
    ("[tolerances]\ntop1 = 1\n[other]\nx = 1", r"tol\.toml: 'tolerances' must be the only table"),
])
def test_load_tolerances_errors(tmp_path, text, match):
    p = tmp_path / "tol.toml"
    p.write_text(text)
    with pytest.raises(SimpoolBenchError, match=match):
        R.load_tolerances(p)


def test_load_tolerances_missing_file_and_bad_dict(tmp_path):
    with pytest.raises(SimpoolBenchError, match="tolerances file not found: .*nope.toml"):
        R.load_tolerances(tmp_path / "nope.toml")
    with pytest.raises(SimpoolBenchError, match="unknown metric 'accuracy'"):
        R.check(_run(BASE), _run(BASE), tolerances={"accuracy": 1.0})


def test_sha256_file_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert R.sha256_file(p, chunk_size=1024) == hashlib.sha256(data).hexdigest()


def test_stored_provenance_takes_this_schema_version_and_new_columns():
    """Maps extracted by an older version (schema 1, no cls_head/pos_interp) score into a table of
    this version: the layout is the writer's, the model facts the store's."""
    from types import SimpleNamespace

    from simpool_bench.api import stored_provenance

    store = SimpleNamespace(manifest={"provenance": {"model": "vit_small_patch16_224", "pool": "cls", "schema_version": 1,
                                                     "attn_source": "cls"}})
    prov = stored_provenance(store, n_images=3, method="attn")
    row = prov.as_row()
    assert row["schema_version"] == R.SCHEMA_VERSION == 2
    assert row["attn_source"] == "cls" and row["cls_head"] is None and row["pos_interp"] is None
    assert list(row) == list(R.PROVENANCE_COLUMNS)
