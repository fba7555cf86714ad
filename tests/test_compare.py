"""Tests for simpool_bench.results.compare: runs side by side, deltas, renderers."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest
from rich.console import Console

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError

from results_helpers import _prov, _rows, _run, _with_k


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
        for key, getter in (
            ("top1", lambda d: d.get("top1")),
            ("maxboxacc@50", lambda d: d.get("maxboxacc", {}).get(50)),
            ("maxboxacc@70", lambda d: d.get("maxboxacc", {}).get(70)),
            ("maxboxacc_v2", lambda d: d.get("maxboxacc_v2")),
            ("corloc", lambda d: d.get("corloc")),
        ):
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
    assert {k[3] for k in no_ref.columns} == {"value"}


def test_compare_renderers_bold_the_best():
    runs = [
        _run({"top1": 80.0, "n_failed": 3, "best_threshold": 0.2}, run_id="a"),
        _run({"top1": 81.5, "n_failed": 1, "best_threshold": 0.4}, run_id="b"),
        _run({"top1": 79.0, "n_failed": 2, "best_threshold": 0.6}, run_id="c"),
    ]
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


def test_bold_follows_the_values_as_shown():
    """The best is the best value as printed: 52.535 prints "52.53" (the float is just below), so it
    is not bold beside "52.54", and ties as printed are bold together."""
    runs = [_run({"top1": v}, run_id=r) for v, r in ((52.535, "a"), (52.536, "b"), (52.534, "c"), (52.5351, "d"))]
    cmp = R.compare(runs, labels=["A", "B", "C", "D"], reference=None)
    md = R.compare_to_markdown(cmp).splitlines()[2:]
    assert md == ["| A | 52.53 |", "| B | **52.54** |", "| C | 52.53 |", "| D | **52.54** |"]
    runs = [_run({"top1": v}, run_id=r) for v, r in ((52.535, "a"), (52.534, "c"))]
    tex = R.compare_to_latex(R.compare(runs, labels=["A", "C"], reference=None))
    assert r"A & \textbf{52.53} \\" in tex and r"C & \textbf{52.53} \\" in tex


def test_latex_cells_are_ascii_and_labels_escaped():
    """A missing value is "--" in LaTeX (the Markdown "–" needs a UTF-8 input encoding); < > | in a
    label print as other glyphs in LaTeX's default font encoding unless escaped."""
    runs = [_run({"top1": 80.0, "corloc": 50.0}, run_id="a"), _run({"top1": 81.0}, run_id="b")]
    cmp = R.compare(runs, labels=["A<B", "C|D>"], reference=None)
    assert R.compare_to_markdown(cmp).splitlines()[3] == r"| C\|D> | **81.00** | – |"
    tex = R.compare_to_latex(cmp)
    assert r"A\textless{}B & 80.00 & \textbf{50.00} \\" in tex
    assert r"C\textbar{}D\textgreater{} & \textbf{81.00} & -- \\" in tex
    assert tex.isascii()


def test_compare_errors():
    with pytest.raises(SimpoolBenchError, match="2 labels given for 1 runs"):
        R.compare([_run()], labels=["a", "b"])
    with pytest.raises(SimpoolBenchError, match="reference run 3 does not exist"):
        R.compare([_run()], reference=3)
    two = pd.concat([_run(run_id="x"), _run(run_id="y")], ignore_index=True)
    assert len(R.compare([two])) == 2  # a table of several runs (all_results.csv) is split by run_id
    labs = list(R.compare([_run(run_id="x"), _run(run_id="y")]).index)
    assert len(set(labs)) == 2 and labs[0].endswith("#0")


def test_mixed_data_names_the_columns_two_runs_of_different_data_fill_and_never_counts():
    """Only a column two runs of different data fill is a mix, the counts (n_images, n_failed) aside;
    the line names the columns. A k-NN row is of its knn_data_sha256 (the evaluation images, then the
    memory bank), any other row of its data_sha256 (the images): a k-NN run's top1 beside a plain
    run's on the same images is no mix (schema 4 kept one digest, of both, and called it one), its
    knn_top1 beside that of a run on another bank is."""
    from simpool_bench.metrics.catalog import RUN_METRICS

    val, bank, other_bank, other_val = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    plain = R.make_table(_rows({"top1": 80.0, "top5": 95.0, "n_images": 50}, "imagenet", "val"), _prov(run_id="p", data_sha256=val))

    def knn(run_id: str, images: str, knn_data: str) -> pd.DataFrame:
        rows = _rows({"top1": 79.0, "top5": 94.0, "knn_top1": 71.0, "n_images": 50}, "imagenet", "val")
        return _with_k(R.make_table(rows, _prov(run_id=run_id, data_sha256=images, knn_data_sha256=knn_data)), 20)

    assert {m.name for m in RUN_METRICS} == {"n_images", "n_failed"}
    assert R.compare([plain, knn("k", val, bank)]).attrs["mixed_data"] == []
    assert R.compare([plain, knn("k", val, bank), knn("k2", val, bank)]).attrs["mixed_data"] == []
    assert R.compare([plain, knn("k", val, bank), knn("o", val, other_bank)]).attrs["mixed_data"] == [
        f"imagenet/val: the runs are of different data (knn_data_sha256 {bank[:12]} in run 1, run_id k; "
        f"knn_data_sha256 {other_bank[:12]} in run 2, run_id o): their values in knn_top1@20 are not comparable"
    ]
    assert R.compare([knn("k", val, bank), plain, knn("v", other_val, other_bank)]).attrs["mixed_data"] == [
        f"imagenet/val: the runs are of different data (data_sha256 {val[:12]} in run 0, run_id k; data_sha256 {other_val[:12]} in run 2, run_id v; "
        f"knn_data_sha256 {bank[:12]} in run 0, run_id k; knn_data_sha256 {other_bank[:12]} in run 2, run_id v): "
        "their values in top1, top5, knn_top1@20 are not comparable"
    ]
    # a k-NN row of a table without knn_data_sha256 (hand-made) is of its data_sha256
    bare = knn("h", val, bank).drop(columns=["knn_data_sha256"])
    assert R.compare([bare, knn("k", val, bank)]).attrs["mixed_data"] == [
        f"imagenet/val: the runs are of different data (data_sha256 {val[:12]} in run 0, run_id h; "
        f"knn_data_sha256 {bank[:12]} in run 1, run_id k): their values in knn_top1@20 are not comparable"
    ]


def test_compare_says_when_a_column_holds_runs_of_different_data(tmp_path):
    """Two runs recorded as cub/test on different data (another image list, an edited box): compare
    still shows them, with one warning line naming the column, both data_sha256 and both files."""
    from conftest import invoke_cli

    same, other = "a" * 64, "b" * 64
    folders = {}
    for name, run_id, sha in (("a", "ra", same), ("b", "rb", same), ("c", "rc", other)):
        folders[name] = tmp_path / name
        R.write_run(_run(run_id=run_id, data_sha256=sha), folders[name])
    assert R.compare([folders["a"], folders["b"]]).attrs["mixed_data"] == []  # the same data: nothing to say
    res = invoke_cli("compare", folders["a"], folders["b"])
    assert res.exit_code == 0 and "warning" not in res.output

    res = invoke_cli("compare", folders["a"], folders["b"], folders["c"])
    assert res.exit_code == 0, res.output
    (line,) = [ln.removeprefix("warning: ") for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert line.startswith("cub/test: ") and "not comparable" in line
    assert f"data_sha256 {same[:12]}" in line and f"data_sha256 {other[:12]}" in line
    assert f"in {folders['a']}, run_id ra" in line and f"in {folders['c']}, run_id rc" in line


def test_console_table_turns_to_a_row_per_metric_when_runs_as_rows_do_not_fit():
    """Two runs of eleven metrics at 80 columns wrapped into columns a few characters wide (a
    newcomer's walkthrough); a row per metric then fits, every name and value whole."""
    a = {"top1": 80.0, "top5": 95.0, "maxboxacc": {30: 90.0, 50: 70.0, 70: 30.0}, "maxboxacc_v2": 63.33, "gt_known_loc": 70.0}
    b = {"top1": 81.5, "top5": 95.5, "maxboxacc": {30: 91.0, 50: 69.25, 70: 33.0}, "maxboxacc_v2": 64.42, "gt_known_loc": 69.25}
    cmp = R.compare([_run(a, model="m_a", run_id="a"), _run(b, model="m_b", run_id="b")], labels=["SimPool", "CLS"])
    wide, narrow = (R.compare_console_table(cmp, width=w) for w in (400, 80))
    assert wide.row_count == 2 and narrow.row_count == len(cmp.columns.get_level_values(2).unique())
    console = Console(record=True, width=80)
    console.print(narrow)
    lines = console.export_text().splitlines()
    assert any("cub/test maxboxacc_v2" in ln and "63.33" in ln and "64.42 (+1.09)" in ln for ln in lines), lines
    assert any("SimPool (ref)" in ln and "CLS" in ln for ln in lines)
    assert R.compare_console_table(cmp).row_count == 2  # no width: a row per run, as before


def test_parse_reference_index_label_or_none():
    # README: --reference LABEL|INDEX|none; 'none' (any case, spaces around) means no deltas
    assert [R.parse_reference(t) for t in ("none", "None", " NONE ", None)] == [None, None, None, None]
    assert R.parse_reference("2") == 2 and R.parse_reference("-1") == -1
    assert R.parse_reference("ViT-demo CLS") == "ViT-demo CLS"
    runs = [_run({"top1": 80.0}, run_id="a"), _run({"top1": 81.25}, run_id="b")]
    cmp = R.compare(runs, reference=R.parse_reference("none"), labels=["A", "B"])
    assert [c[3] for c in cmp.columns] == ["value"] and cmp.attrs["reference"] is None


def test_latex_escape_backslash_tilde_caret_and_gamma():
    # each special character by hand: \ -> \textbackslash{}, ~ -> \textasciitilde{}, ^ -> \textasciicircum{}, γ -> $\gamma$
    assert R.latex_escape(r"C:\runs~a^2 γ=1") == r"C:\textbackslash{}runs\textasciitilde{}a\textasciicircum{}2 $\gamma$=1"


def test_parse_metrics_items_suffixes_and_repeats():
    # spaces and empty items are dropped, '@N' kept as an int, a repeated item counted once
    sel = R.parse_metrics(" top1, ,maxboxacc@50,knn_top1@20,top1")
    assert [(s.name, s.at) for s in sel] == [("top1", None), ("maxboxacc", 50), ("knn_top1", 20)]
    assert [str(s) for s in sel] == ["top1", "maxboxacc@50", "knn_top1@20"]


def test_compare_csv_keeps_every_digit():
    # README: "--csv writes full precision": 100/3 and 200/3 come back bit for bit, and so does their delta
    a, b = 100.0 / 3.0, 200.0 / 3.0
    cmp = R.compare([_run({"top1": a}, run_id="a"), _run({"top1": b}, run_id="b")], labels=["A", "B"], reference=0)
    head, *rows = list(csv.reader(io.StringIO(R.compare_to_csv(cmp))))
    assert head == ["run", "cub/test top1", "cub/test top1 delta"]
    assert [[lab, float(v), float(d)] for lab, v, d in rows] == [["A", a, 0.0], ["B", b, b - a]]  # float(): Python's exact parse


def test_a_tiny_delta_keeps_digits_enough_to_be_seen():
    # two decimals would print +0.00 for 0.004: two significant digits are kept instead; at or above 0.005 it rounds as usual
    assert [R.format_delta("top1", d) for d in (0.004, -0.000123, 0.0, 0.5, 0.005)] == ["+0.004", "-0.00012", "+0.00", "+0.50", "+0.01"]
    assert R.format_delta("n_images", 0.3) == "+0.3" and R.format_delta("n_images", 2.0) == "+2"


# -------------------------------------------------------------- compare as Markdown, LaTeX, console
def test_compare_markdown_and_latex_of_two_datasets_by_hand():
    """Two datasets: a header group and a cmidrule per dataset, right-aligned value columns, and a
    run lacking a value shows "–" (Markdown) or "--" (LaTeX) with no delta."""
    a = _run({"top1": 80.0, "maxboxacc": {50: 70.0}}, run_id="a")
    b = _run({"top1": 81.0}, run_id="b")
    c = R.make_table(_rows({"corloc": 60.0}, dataset="voc07", split="trainval"), _prov(run_id="a"))
    b2 = R.make_table(_rows({"corloc": 62.5}, dataset="voc07", split="trainval"), _prov(run_id="b"))
    cmp = R.compare([pd.concat([a, c], ignore_index=True), pd.concat([b, b2], ignore_index=True)], labels=["A", "B"])
    assert R.compare_to_markdown(cmp).splitlines() == [
        "| run | cub/test top1 | cub/test maxboxacc@50 | voc07/trainval corloc |",
        "|---|---:|---:|---:|",
        "| A (ref) | 80.00 | **70.00** | 60.00 |",
        "| B | **81.00** (+1.00) | – | **62.50** (+2.50) |",
    ]
    assert R.compare_to_latex(cmp).splitlines() == [
        r"\begin{tabular}{lrrr}",
        r"\toprule",
        r"Run & \multicolumn{2}{c}{cub/test} & \multicolumn{1}{c}{voc07/trainval} \\",
        r"\cmidrule(lr){2-3} \cmidrule(lr){4-4}",
        r" & Top-1 & MaxBoxAcc@50 & CorLoc \\",
        r"\midrule",
        r"A (ref) & 80.00 & \textbf{70.00} & 60.00 \\",
        r"B & \textbf{81.00} {\scriptsize (+1.00)} & -- & \textbf{62.50} {\scriptsize (+2.50)} \\",
        r"\bottomrule",
        r"\end{tabular}",
    ]


def _text_width(table) -> int:
    console = Console(record=True, width=10_000)
    console.print(table)
    return max(len(ln.rstrip()) for ln in console.export_text().splitlines())


def test_compare_console_keeps_a_row_per_run_that_just_fits_or_is_narrower():
    a = {"top1": 80.0, "top5": 95.0, "maxboxacc": {30: 90.0, 50: 70.0, 70: 30.0}, "maxboxacc_v2": 63.33}
    b = {"top1": 81.5, "top5": 95.5, "maxboxacc": {30: 91.0, 50: 69.25, 70: 33.0}, "maxboxacc_v2": 64.42}
    cmp = R.compare([_run(a, run_id="a"), _run(b, run_id="b")], labels=["SimPool", "CLS"])
    wide = _text_width(R.compare_console_table(cmp))
    assert R.compare_console_table(cmp, width=wide).row_count == 2  # exactly the console's width: it fits
    assert R.compare_console_table(cmp, width=wide - 1).row_count == 6  # a column too wide: a row per metric
    # five runs of one metric: a row per metric would be wider still, so a row per run stays
    runs = [_run({"top1": 80.0 + i}, run_id=str(i)) for i in range(5)]
    cmp = R.compare(runs, labels=[f"a long label of run {i}" for i in range(5)])
    assert R.compare_console_table(cmp, width=20).row_count == 5


def test_compare_reference_of_another_kind_is_one_error():
    """Found by a sweep of the API: ``reference=Path(...)`` (a run's folder, not its row) was a
    TypeError from the range check, ``reference=True`` picked row 1 and ``reference=1.0`` a float row."""
    from pathlib import Path

    runs = [_run({"top1": 80.0}, model="m_a", run_id="a"), _run({"top1": 81.0}, model="m_b", run_id="b")]
    for ref, kind in ((Path("run_a"), "pathlib.PosixPath"), (True, "builtins.bool"), (1.0, "builtins.float")):
        with pytest.raises(SimpoolBenchError) as err:
            R.compare(runs, reference=ref, labels=["A", "B"])
        assert str(err.value) == f"compare: reference {ref!r}: expected a row index (int), a row label (str) or None, got {kind}"
    assert R.compare(runs, reference=1, labels=["A", "B"]).attrs["reference"] == "B"


def test_compare_labels_and_metrics_of_another_kind_are_one_error():
    """Found by a sweep of the API: ``labels='AB'`` named two rows 'A' and 'B' (a str read as its
    characters), ``labels=3`` was a TypeError ('no len()'); ``metrics=3`` a TypeError and
    ``metrics=[1, 2]`` an AttributeError ('strip')."""
    runs = [_run({"top1": 80.0}, model="m_a", run_id="a"), _run({"top1": 81.0}, model="m_b", run_id="b")]
    for kwargs, expected in (
        ({"labels": "AB"}, "compare: labels 'AB': expected a list of str (one per row; by label: one per input) or None"),
        ({"labels": 3}, "compare: labels 3: expected a list of str (one per row; by label: one per input) or None"),
        ({"metrics": 3}, "--metrics 3: expected a comma list or a sequence of metric names (str), e.g. 'top1,maxboxacc@50'"),
        ({"metrics": [1, 2]}, "--metrics [1, 2]: expected a comma list or a sequence of metric names (str), e.g. 'top1,maxboxacc@50'"),
    ):
        with pytest.raises(SimpoolBenchError) as err:
            R.compare(runs, **kwargs)
        assert str(err.value) == expected
    assert list(R.compare(runs, labels=["A", "B"], metrics=["top1"]).index) == ["A", "B"]
