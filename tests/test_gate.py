"""Tests for simpool_bench.results.gate: ``check`` against a baseline, tolerances, exit codes."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError

from results_helpers import _prov, _rows, _run

# ----------------------------------------------------------------------------------------- check
BASE = {"top1": 80.0, "maxboxacc": {30: 90.0, 50: 70.0, 70: 30.0}, "maxboxacc_v2": 63.0, "best_threshold": {50: 0.25}, "n_failed": 0}


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
    # a run without a value (a pool without gamma) reads 'none', not Python's None
    rep = R.check(_run(BASE, gamma=None), _run(BASE, gamma=1.25))
    assert "gamma: baseline `1.25`, run `none`" in rep.markdown and "None" not in rep.markdown
    rep = R.check(_run(BASE, gamma=None), _run(BASE, gamma=1.25), allow_protocol_change=("gamma",))
    assert "accepted provenance change (`cub/test`) gamma: run none, baseline 1.25" in rep.notes


def test_check_simple_baseline_csv_and_files(tmp_path):
    base = tmp_path / "baseline.csv"
    base.write_text(
        "dataset,split,metric,iou_threshold,value\ncub,test,top1,,80.0\ncub,test,maxboxacc,50,70.0\ncub,test,maxboxacc_v2,,63.0\n"
    )
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
    assert R.tolerance_for("maxboxacc", 50, tol) == 0.5  # the file's default beats the built-in 0.2
    assert R.tolerance_for("maxboxacc", 50, {}) == R.DEFAULT_TOLERANCES["maxboxacc"] == 0.2
    assert R.tolerance_for("knn_top1", None, tol, k=20) == R.tolerance_for("corloc", None, tol) == 0.5
    # counts and the best threshold are not scores: a default in points leaves them as built in
    assert R.tolerance_for("n_images", None, tol) == 0.0 and R.tolerance_for("n_failed", None, tol) == 0.0
    assert R.tolerance_for("best_threshold", 50, {"default": 0.5}) == math.inf
    assert R.tolerance_for("custom_metric", None, tol) == 0.5
    assert R.tolerance_for("custom_metric", None, {}) == R.DEFAULT_TOLERANCE
    q = tmp_path / "table.toml"
    q.write_text("[tolerances]\ncorloc = 0.3\n")
    assert R.load_tolerances(q) == {"corloc": 0.3}
    # used by check
    run = _run(_moved(top1=79.85))
    assert not R.check(run, _run(BASE)).passed and R.check(run, _run(BASE), R.load_tolerances(p)).passed
    # a file's `default` is what gates every score it does not name (was shadowed by the built-ins)
    d = tmp_path / "default.toml"
    d.write_text("default = 10\n")
    down = _run(_moved(maxboxacc_v2=58.0))
    assert [r.key for r in R.check(down, _run(BASE)).by_status("regressed")] == ["cub/test maxboxacc_v2"]
    assert R.check(down, _run(BASE), R.load_tolerances(d)).passed


@pytest.mark.parametrize(
    "text, match",
    [
        ("top1 = ", r"tol\.toml: invalid TOML"),
        ("top_1 = 0.2", r"tol\.toml: unknown metric 'top_1'"),
        ('"maxboxacc@x" = 0.2', r"tol\.toml: tolerance key 'maxboxacc@x'"),
        ("top1 = -0.2", r"tol\.toml: tolerance 'top1' = -0.2"),
        ('top1 = "small"', r"tol\.toml: tolerance 'top1' = 'small'"),
        ("top1 = true", r"tol\.toml: tolerance 'top1' = True"),
        ("top1 = nan", r"tol\.toml: tolerance 'top1' = nan"),
        ("top1 = 1" + "0" * 400, r"tol\.toml: tolerance 'top1': an integer of 401 digits; write inf for a metric not gated"),
        ("top1 = -1" + "0" * 400, r"tol\.toml: tolerance 'top1': an integer of 401 digits"),
        ("[tolerances]\ntop1 = 1\n[other]\nx = 1", r"tol\.toml: 'tolerances' must be the only table"),
    ],
)
def test_load_tolerances_errors(tmp_path, text, match):
    p = tmp_path / "tol.toml"
    p.write_text(text)
    with pytest.raises(SimpoolBenchError, match=match):
        R.load_tolerances(p)


def test_load_tolerances_not_utf8(tmp_path):
    p = tmp_path / "tol.toml"
    p.write_bytes(b"maxboxacc_v2 = 0.5 # r\xe9f\n")
    with pytest.raises(SimpoolBenchError, match=r"tol\.toml: not UTF-8 text \(byte 22: .*\); TOML files are UTF-8$"):
        R.load_tolerances(p)


def test_load_tolerances_missing_file_and_bad_dict(tmp_path):
    with pytest.raises(SimpoolBenchError, match="tolerances file not found: .*nope.toml"):
        R.load_tolerances(tmp_path / "nope.toml")
    with pytest.raises(SimpoolBenchError, match="unknown metric 'accuracy'"):
        R.check(_run(BASE), _run(BASE), tolerances={"accuracy": 1.0})


def test_a_table_with_two_values_of_one_metric_is_refused_whatever_the_row_order(tmp_path):
    """Two runs in one file (all_results.csv, concatenated results.csv): check would keep whichever
    row came last; it refuses, naming the metric and the run ids."""
    import pandas as pd

    a = _run(BASE, run_id="aaa")
    b = _run(_moved(maxboxacc_v2=99.0), run_id="bbb")
    for order in ((a, b), (b, a)):
        both = pd.concat(order, ignore_index=True)
        both.to_csv(tmp_path / "both.csv", index=False)
        with pytest.raises(SimpoolBenchError, match=r"baseline .*both\.csv: two values of cub/test top1 \(run_id aaa, bbb\)"):
            R.check(a, tmp_path / "both.csv")
        with pytest.raises(SimpoolBenchError, match=r"^run run: two values of cub/test top1 \(run_id aaa, bbb\)"):
            R.check(both, a)
    assert R.check(a, a).passed  # one run each: as before


def test_check_prints_its_markdown_unwrapped_to_a_file_or_pipe(tmp_path):
    """`simpool-bench check ... > summary.md` (stdout not a terminal, so rich's 80 columns) holds
    the report's markdown line for line: no table row or bullet broken in two."""
    from conftest import invoke_cli

    base = R.write_run(_run(BASE, checkpoint="/a/long/folder/name/for/checkpoints/vits_simpool.pth.tar"), tmp_path / "base")["csv"]
    run = R.write_run(_run(_moved(top1=79.0), checkpoint="/a/long/folder/name/for/checkpoints/vits_simpool.pth.tar"), tmp_path / "run")
    res = invoke_cli("check", run["parquet"], "--baseline", base)
    assert res.exit_code == 1, res.output
    expected = R.check(run["parquet"], base).markdown
    assert max(len(line) for line in expected.splitlines()) > 80  # long enough to have been wrapped
    assert res.stdout.rstrip("\n") == expected.rstrip("\n")


def test_hand_edited_baseline_with_spaces_is_bad_input_naming_the_cell(tmp_path):
    """A baseline CSV edited by hand with a space after a comma: a spaced dataset/split/metric would
    be another key (a 'missing' regression, exit 1) and a spaced header name a 'missing column';
    both are bad input (exit 2) naming the file, the line an editor shows and the value."""
    from conftest import invoke_cli

    run = R.write_run(_run(BASE), tmp_path / "run")["parquet"]
    good = "dataset,split,metric,iou_threshold,value\ncub,test,top1,,80.0\ncub,test,maxboxacc_v2,,63.0\n"
    (tmp_path / "good.csv").write_text(good)
    assert R.check(run, tmp_path / "good.csv").passed
    cases = {
        "split.csv": (good.replace("cub,test,maxboxacc_v2", "cub, test,maxboxacc_v2"), "row 1 (line 3): split ' test' has spaces around it; expected 'test'"),
        "dataset.csv": (good.replace("cub,test,top1", "cub ,test,top1"), "row 0 (line 2): dataset 'cub ' has spaces around it; expected 'cub'"),
        "header.csv": (good.replace("metric,iou_threshold,value", "metric,iou_threshold, value"), "column name ' value' has spaces around it; expected 'value'"),
    }  # fmt: skip
    for name, (text, said) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SimpoolBenchError) as e:
            R.check(run, tmp_path / name)
        assert str(e.value) == f"{tmp_path / name}: {said}"
        res = invoke_cli("check", run, "--baseline", tmp_path / name)
        assert res.exit_code == 2 and res.output.startswith("error: ") and said in " ".join(res.output.split()), res.output
    (tmp_path / "number.csv").write_text(good.replace(",80.0", ", 80.0"))  # a number read with its space, as Python's float does
    assert R.check(run, tmp_path / "number.csv").passed


def test_hand_made_baseline_with_an_unknown_metric_is_bad_input(tmp_path):
    """A typo'd metric in a hand-made baseline ('maxboxacc_2', 'top-1') can never be in a run: it
    was a 'missing' regression, exit 1; it is bad input naming the file, line and name, exit 2."""
    from conftest import invoke_cli

    run = R.write_run(_run(BASE), tmp_path / "run")["parquet"]
    for bad in ("maxboxacc_2", "top-1"):
        f = tmp_path / f"{bad}.csv"
        f.write_text(f"dataset,split,metric,iou_threshold,value\ncub,test,top1,,80.0\ncub,test,{bad},,63.0\n")
        said = f"{f}: row 1 (line 3): unknown metric '{bad}'; expected one of top1, top5, knn_top1, knn_top5, top1_loc, gt_known_loc,"
        with pytest.raises(SimpoolBenchError) as e:
            R.check(run, f)
        assert str(e.value).startswith(said), str(e.value)
        res = invoke_cli("check", run, "--baseline", f)
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert " ".join(res.output.split()).startswith(f"error: {said}"), res.output


@pytest.mark.parametrize("count", ["n_nonfinite", "n_failed"])
def test_a_count_the_run_does_not_write_is_zero_not_missing(count, tmp_path):
    """A run writes n_failed and n_nonfinite only when they are not zero: a baseline that counted 2
    such images, against a run with none, is an improvement (exit 0), not a missing metric (exit 1)."""
    from conftest import invoke_cli
    from results_helpers import LOC

    clean = {k: v for k, v in LOC.items() if k != "n_failed"}  # as a run without failed images writes it
    R.write_run(_run({**clean, count: 2}, run_id="base"), tmp_path / "base")
    R.write_run(_run(clean, run_id="run"), tmp_path / "run")
    report = R.check(tmp_path / "run", tmp_path / "base")
    (row,) = [r for r in report.rows if r.metric == count]
    assert (row.status, row.value, row.baseline, row.delta) == ("improved", 0.0, 2.0, -2.0)
    assert report.passed
    res = invoke_cli("check", tmp_path / "run", "--baseline", tmp_path / "base", "--no-github")
    assert res.exit_code == 0, res.output


# README: "without a file, 0.1 points for accuracies, 0.2 for MaxBoxAcc and CorLoc, 0 for image
# counts, and the best threshold is not gated". Every metric the tool writes, each dropped by 0.15
# (between the two tolerances) and by 0.25 (beyond both): the accuracies regress at 0.15 already,
# the MaxBoxAcc family and CorLoc only at 0.25. 'my_acc' (a name the catalog does not know) is a
# score with the 0.1 default. Expected statuses written out by hand from the README's list.
_POINT_TOLERANCE = {
    "top1": 0.1, "top5": 0.1, "knn_top1": 0.1, "knn_top5": 0.1, "top1_loc": 0.1, "gt_known_loc": 0.1, "my_acc": 0.1,
    "maxboxacc": 0.2, "maxboxacc_v2": 0.2, "maxboxacc_v1": 0.2, "corloc": 0.2,
}  # fmt: skip


@pytest.mark.parametrize("drop", [0.15, 0.25])
def test_default_tolerances_per_metric_as_the_readme_lists_them(drop):
    base_vals = {m: ({30: 60.0, 50: 60.0, 70: 60.0} if m == "maxboxacc" else 60.0) for m in _POINT_TOLERANCE}
    run_vals = {m: ({i: v - drop for i, v in x.items()} if isinstance(x, dict) else x - drop) for m, x in base_vals.items()}
    rep = R.check(_run(run_vals), _run(base_vals))
    got = {(r.metric, r.iou): r.status for r in rep.rows}
    want = {
        (m, i): ("regressed" if drop > tol else "ok")
        for m, tol in _POINT_TOLERANCE.items()
        for i in ((30, 50, 70) if m == "maxboxacc" else (None,))
    }
    assert got == want
    # counts: 0 (one image more or fewer fails); best threshold: any move passes
    counts = {"n_images": 100, "n_failed": 1, "n_nonfinite": 1, "best_threshold": {50: 0.2}}
    moved = {"n_images": 101, "n_failed": 2, "n_nonfinite": 2, "best_threshold": {50: 0.9}}
    got = {r.metric: r.status for r in R.check(_run(moved), _run(counts)).rows}
    assert got == {"n_images": "regressed", "n_failed": "regressed", "n_nonfinite": "regressed", "best_threshold": "ok"}


def test_a_tolerance_at_one_iou_wins_over_the_metric_wide_one():
    # maxboxacc@70 = 0.1 beats maxboxacc = 1.0 at IoU 70 only: the same 0.5 drop regresses at 70, not at 30/50
    run = _run(_moved(**{"maxboxacc@30": 89.5, "maxboxacc@50": 69.5, "maxboxacc@70": 29.5}))
    rep = R.check(run, _run(BASE), tolerances={"maxboxacc": 1.0, "maxboxacc@70": 0.1})
    st = {(r.metric, r.iou): (r.status, r.tolerance) for r in rep.rows if r.metric == "maxboxacc"}
    assert st == {("maxboxacc", 30): ("ok", 1.0), ("maxboxacc", 50): ("ok", 1.0), ("maxboxacc", 70): ("regressed", 0.1)}


def test_tolerance_bounds_iou_100_and_zero_accepted(tmp_path):
    # IoU after '@' is in (0, 100]: 100 is a threshold (a perfect box), 0 and 101 are not
    assert R.check(_run(BASE), _run(BASE), tolerances={"maxboxacc@100": 1.0}).passed
    for bad in ("maxboxacc@0", "maxboxacc@101"):
        with pytest.raises(SimpoolBenchError, match=r"\(0, 100\]"):
            R.check(_run(BASE), _run(BASE), tolerances={bad: 1.0})
    # a tolerance of 0 is valid ('non-negative'): any drop of top1 regresses, none passes
    path = tmp_path / "tol.toml"
    path.write_text("top1 = 0\n", encoding="utf-8")
    assert R.load_tolerances(path) == {"top1": 0.0}
    assert R.check(_run(BASE), _run(BASE), tolerances={"top1": 0}).passed
    rep = R.check(_run(_moved(top1=79.99)), _run(BASE), tolerances={"top1": 0})
    assert [r.metric for r in rep.by_status("regressed")] == ["top1"]


# README: "any provenance field that differs (model, pool, gamma, min-scope, attention source, CLS
# head, position resize, method, image size, image count, the data's data_sha256 and knn_data_sha256,
# random init)";
# each changed alone fails with exactly its own provenance-mismatch row, and passes when accepted.
_PROVENANCE_CHANGES = {
    "model": ("vit_small_patch16_224", "vit_base_patch16_224"),
    "pool": ("simpool", "cls"),
    "gamma": (1.25, 2.0),
    "min_scope": ("sample", "batch"),
    "attn_source": ("simpool", "cls"),
    "cls_head": (None, 4),
    "pos_interp": ("timm", "dino"),
    "method": ("attn", "lost"),
    "image_size": (224, 448),
    "n_images": (5794, 5793),
    "data_sha256": ("a" * 64, "b" * 64),
    "knn_data_sha256": ("c" * 64, "d" * 64),
    "random_init": (False, True),
}


@pytest.mark.parametrize("name", list(_PROVENANCE_CHANGES))
def test_each_readme_provenance_field_changed_alone_is_a_mismatch(name):
    before, after = _PROVENANCE_CHANGES[name]
    base = _run(BASE, **{name: before if before is not None else after})
    run = _run(BASE, **{name: after if before is not None else None})  # cls_head: the run lacks it
    rep = R.check(run, base)
    assert [r.metric for r in rep.by_status("provenance-mismatch")] == [f"provenance:{name}"] and not rep.passed
    assert R.check(run, base, allow_protocol_change=(name,)).passed


def test_the_readme_provenance_fields_are_those_check_compares():
    from simpool_bench.results.gate import CHECK_PROVENANCE_FIELDS

    assert set(_PROVENANCE_CHANGES) == set(CHECK_PROVENANCE_FIELDS)


def _classify(knn: dict | None, top1: float = 80.0, **prov) -> pd.DataFrame:
    """A classify table; with ``knn`` (its protocol's k-NN parameters) a knn_top1 row at k 20 too."""
    rows = _rows({"top1": top1, "n_images": 50}, "imagenet", "val")
    protocol = {"task": "classify", "knn_train": None, "knn_k": None, "knn_temperature": None, "knn_chunks": None, "knn_subset": None}
    if knn is not None:
        rows.append({"dataset": "imagenet", "split": "val", "metric": "knn_top1", "k": 20, "value": 70.0})
        protocol.update(knn)
    return R.make_table(rows, _prov(n_images=50, protocol=json.dumps(protocol, sort_keys=True), **prov))


_BANK = {"knn_train": "/data/train", "knn_k": [20], "knn_temperature": 0.07, "knn_chunks": 100}


def test_a_plain_baseline_gates_no_knn_parameter_and_the_bank_is_gated_by_its_data_not_its_path():
    """The k-NN parameters change a run's k-NN rows alone: against a baseline without k-NN rows they
    are noted, not gated. The bank's folder is a path on one machine: where the baseline records the
    bank's data (knn_data_sha256) it is gated by them; a baseline without (schema 3) still gates the path."""
    images, bank = "a" * 64, "b" * 64
    run = _classify(_BANK, data_sha256=images, knn_data_sha256=bank)
    rep = R.check(run, _classify(None, data_sha256=images))
    assert rep.passed and [r.status for r in rep.rows] == ["ok", "ok"]
    assert rep.notes[0] == (
        "k-NN parameters not gated (`imagenet/val`: the baseline has no k-NN rows): knn_chunks: run 100, baseline null; "
        "knn_k: run [20], baseline null; knn_temperature: run 0.07, baseline null; knn_train: run /data/train, baseline null"
    )

    moved = _classify({**_BANK, "knn_train": "/mnt/imagenet/train"}, data_sha256=images, knn_data_sha256=bank)
    rep = R.check(moved, run)
    assert rep.passed and {r.status for r in rep.rows} == {"ok"}
    assert rep.notes == [
        "k-NN bank at another path (`imagenet/val`): run /mnt/imagenet/train, baseline /data/train; its data are gated by knn_data_sha256"
    ]
    rep = R.check(moved, _classify(_BANK, data_sha256=images))  # the baseline does not record the bank's data
    assert [(r.metric, r.status) for r in rep.rows if r.status != "ok"] == [("protocol:knn_train", "protocol-mismatch")]
    rep = R.check(_classify({**_BANK, "knn_k": [10]}, data_sha256=images, knn_data_sha256=bank), run)  # other parameters stay gated
    assert [(r.metric, r.status) for r in rep.rows if r.status != "ok"] == [("protocol:knn_k", "protocol-mismatch")]
    rep = R.check(_classify(None, data_sha256=images), run)  # a run without the bank the baseline had
    assert {(r.metric, r.status) for r in rep.rows if r.status != "ok"} == {
        ("provenance:knn_data_sha256", "provenance-mismatch"),
        *((f"protocol:{name}", "protocol-mismatch") for name in _BANK),
        ("knn_top1", "missing"),
    }


def test_a_schema_4_knn_baseline_is_gated_on_the_same_data_as_before(tmp_path):
    """A schema-4 k-NN baseline's one data_sha256 (images, then bank) reads as its knn_data_sha256: a
    run on the same images and bank passes, one on another bank is a provenance mismatch."""
    from simpool_bench.data.records import Record, records_sha256

    images = [Record(f"v{i}", f"v{i}.jpg", i % 2, 8, 8) for i in range(4)]
    bank = [Record(f"t{i}", f"t{i}.jpg", i % 2, 8, 8) for i in range(6)]
    old = _classify(_BANK, data_sha256=records_sha256(images, bank), knn_data_sha256=None).drop(columns=["knn_data_sha256"])
    old["schema_version"] = 4
    old.to_csv(tmp_path / "baseline.csv", index=False)
    same = _classify(_BANK, data_sha256=records_sha256(images), knn_data_sha256=records_sha256(images, bank))
    rep = R.check(same, tmp_path / "baseline.csv")
    assert rep.passed and {r.status for r in rep.rows} == {"ok"}
    other = _classify(_BANK, data_sha256=records_sha256(images), knn_data_sha256=records_sha256(images, bank[:-1]))
    rep = R.check(other, tmp_path / "baseline.csv")
    assert [(r.metric, r.status) for r in rep.rows if r.status != "ok"] == [("provenance:knn_data_sha256", "provenance-mismatch")]


def test_a_run_with_two_values_of_a_provenance_field_is_a_mismatch():
    # the run's rows of cub/test were made at two image sizes (two tables pasted together): one of
    # them equals the baseline's 224, which must not hide the other; the row names both
    base = _run(BASE, image_size=224)
    run = pd.concat([_run({"top1": 80.0}, image_size=224), _run({k: v for k, v in BASE.items() if k != "top1"}, image_size=448)])
    rep = R.check(run, base)
    (row,) = rep.by_status("provenance-mismatch")
    assert (row.metric, row.baseline, row.value) == ("provenance:image_size", "224", "224, 448") and not rep.passed


def test_cli_check_appends_its_summary_to_github_and_writes_summary_file(tmp_path, monkeypatch):
    # README: check "appends to $GITHUB_STEP_SUMMARY" (earlier steps' lines kept); --summary FILE
    # holds the same Markdown; --no-github leaves the step summary alone
    from conftest import invoke_cli

    base = R.write_run(_run(BASE), tmp_path / "base")["csv"]
    run = R.write_run(_run(_moved(top1=79.0)), tmp_path / "run")["csv"]
    expected = R.check(run, base).markdown
    step = tmp_path / "step_summary.md"
    step.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    res = invoke_cli("check", run, "--baseline", base, "--summary", tmp_path / "summary.md")
    assert res.exit_code == 1, res.output
    assert step.read_text(encoding="utf-8") == "earlier step\n" + expected
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == expected
    assert invoke_cli("check", run, "--baseline", base, "--no-github").exit_code == 1
    assert step.read_text(encoding="utf-8") == "earlier step\n" + expected


def test_cli_check_tol_overrides_the_tolerances_file_and_a_crash_exits_2(tmp_path, monkeypatch):
    # --tol METRIC=VALUE wins over the file's entry: top1 -0.5 passes at the file's 1.0, regresses at --tol 0.05
    from conftest import invoke_cli

    base = R.write_run(_run(BASE), tmp_path / "base")["csv"]
    run = R.write_run(_run(_moved(top1=79.5)), tmp_path / "run")["csv"]
    (tmp_path / "tol.toml").write_text("top1 = 1.0\n", encoding="utf-8")
    args = ("check", run, "--baseline", base, "--tolerances", tmp_path / "tol.toml", "--no-github")
    assert invoke_cli(*args).exit_code == 0
    res = invoke_cli(*args, "--tol", "top1=0.05")
    assert res.exit_code == 1 and "tolerance ±0.05" in res.output
    # a crash inside the gate is bad input or a bug (exit 2), never read as a regression (exit 1)
    monkeypatch.setattr(R, "check", lambda *a, **k: 1 / 0)
    res = invoke_cli(*args)
    assert res.exit_code == 2 and "error: check failed on" in res.output and "ZeroDivisionError" in res.output


def test_a_knn_tolerance_at_one_k_applies_to_that_k_only():
    # 'knn_top1@20' = 1.0: the 0.5 drop at k=20 is within it; the same drop at k=10 meets the default 0.1
    prov = R.Provenance(model="vit_small_patch16_224", pool="cls", run_id="r")

    def table(v: float):
        return R.make_table([{"dataset": "imagenet", "split": "val", "metric": "knn_top1", "k": k, "value": v} for k in (10, 20)], prov)

    rep = R.check(table(69.5), table(70.0), tolerances={"knn_top1@20": 1.0})
    assert {r.k: (r.status, r.tolerance) for r in rep.rows} == {10: ("regressed", 0.1), 20: ("ok", 1.0)}
