"""Tests for simpool_bench.results (table, store, render): the tidy table, its files and exports."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from simpool_bench import results as R
from simpool_bench.errors import SimpoolBenchError

from results_helpers import _prov, _rows, _run


# ------------------------------------------------------------------------------------ the table
def test_make_table_columns_and_rows():
    df = _run()
    assert list(df.columns) == list(R.COLUMNS)
    assert list(df.columns[:6]) == ["dataset", "split", "metric", "iou_threshold", "k", "value"]
    mb = df[df.metric == "maxboxacc"]
    assert mb["iou_threshold"].tolist() == [30, 50, 70]
    assert mb["value"].tolist() == [96.5, 80.125, 40.0]
    v2 = df[df.metric == "maxboxacc_v2"]
    assert len(v2) == 1 and v2["iou_threshold"].isna().all()
    assert v2["value"].iloc[0] == pytest.approx((96.5 + 80.125 + 40.0) / 3)
    # provenance repeated on every row
    assert (df["model"] == "vit_small_patch16_224").all() and (df["gamma"] == 1.25).all()
    assert df["method"].isna().all() and (df["schema_version"] == R.SCHEMA_VERSION).all()


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "at least one"),
        ([{"dataset": "cub", "split": "test", "metric": "top1"}], "missing keys"),
        ([{"dataset": "cub", "split": "test", "metric": "top1", "value": 1.0, "extra": 2}], "unknown keys"),
        ([{"dataset": "cub", "split": "test", "metric": "maxboxacc", "value": 1.0}], "needs an iou_threshold"),
        ([{"dataset": "cub", "split": "test", "metric": "maxboxacc_v2", "iou_threshold": 50, "value": 1.0}], "must be empty"),
        ([{"dataset": "cub", "split": "test", "metric": "top1", "value": "high"}], "'value' row 0"),
        ([{"dataset": "cub", "split": "test", "metric": "top1", "value": 1.0}] * 2, "duplicate rows"),
        ([{"dataset": "cub", "split": "test", "metric": "corloc", "iou_threshold": 150, "value": 1.0}], "iou_threshold 150"),
    ],
)
def test_make_table_rejects_bad_rows(rows, match):
    with pytest.raises(SimpoolBenchError, match=match):
        R.make_table(rows, _prov())


def test_provenance_collect(tmp_path):
    ck = tmp_path / "model.pth"
    ck.write_bytes(b"abc")
    p = R.Provenance.collect("resnet50", "simpool", checkpoint=ck, gamma=2.0, argv=["/usr/bin/simpool-bench", "check", "a b.parquet"])
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
    assert abs((datetime.now(UTC) - when).total_seconds()) < 120
    assert re.fullmatch(r"r[0-9a-f]{12}", p.run_id)  # a letter first: plain pandas never reads it as a number
    q = R.Provenance.collect("resnet50", "gap")
    assert q.run_id != p.run_id and q.checkpoint is None and q.checkpoint_sha256 is None
    # a given sha is kept, not recomputed
    assert R.Provenance.collect("r", "gap", checkpoint=ck, checkpoint_sha256="given").checkpoint_sha256 == "given"


# ------------------------------------------------------------------------------- write and read
def _tricky_run() -> pd.DataFrame:
    rows = _rows(
        {
            "top1": 100 / 3,
            "top5": 0.1 + 0.2,
            "knn_top1": float("nan"),
            "corloc": 61.9,
            "maxboxacc": {30: 1e-17, 50: 12345.678901234567, 70: 0.0},
            "maxboxacc_v2": 5.0,
        }
    )
    rows.append({"dataset": "NA", "split": "null", "metric": "n_images", "value": 7.0})
    return R.make_table(rows, _prov(checkpoint_sha256="00123", method=None, gamma=None, device="NA", command="x \"y\" 'z', w\nnext"))


def test_round_trip_every_readable_format(tmp_path):
    df = _tricky_run()
    paths = R.write_run(df, tmp_path / "out", formats=("json", "md", "latex"))
    assert set(paths) == {"csv", "parquet", "json", "md", "latex", R.RUN_MANIFEST}
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
    assert set(paths) == {"csv", "parquet", R.RUN_MANIFEST} and all(p.is_file() for p in paths.values())
    with pytest.raises(SimpoolBenchError, match="unknown export format 'xlsx'"):
        R.write_run(_run(), tmp_path, formats=("xlsx",))


def test_markdown_export_lists_every_row(tmp_path):
    df = _run()
    md = R.write_run(df, tmp_path, formats=("md",))["md"].read_text()
    body = [ln for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| dataset")]
    parsed = [[c.strip() for c in ln.strip("|").split("|")] for ln in body]
    expected = [
        [d, s, m, "" if pd.isna(i) else str(int(i)), f"{v:.{3 if m == 'best_threshold' else 0 if m == 'n_failed' else 2}f}"]
        for d, s, m, i, v in df[[c for c in R.METRIC_COLUMNS if c != "k"]].itertuples(index=False)  # no k-NN rows: no k column
    ]
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
    # in LaTeX's default (OT1) font encoding < > | print as other glyphs; "–" (a missing value) as ASCII
    assert R.latex_escape("a<b>c|d–") == r"a\textless{}b\textgreater{}c\textbar{}d--"


def test_console_table_has_every_row():
    t = R.console_table(_run())
    assert t.row_count == len(_run()) and [c.header for c in t.columns] == ["dataset", "split", "metric", "IoU", "value"]


def test_read_run_rejects_foreign_table(tmp_path):
    p = tmp_path / "foreign.csv"
    pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}).to_csv(p, index=False)
    with pytest.raises(
        SimpoolBenchError,
        match=r"foreign\.csv: not a simpool-bench results table \(missing columns: dataset, split, metric, iou_threshold, value\)",
    ):
        R.read_run(p)
    # the five columns but no schema_version: a plain table, not a record of ours
    plain = tmp_path / "plain.csv"
    pd.DataFrame({"dataset": ["cub"], "split": ["test"], "metric": ["top1"], "iou_threshold": [None], "value": [1.0]}).to_csv(
        plain, index=False
    )
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
    {
        "csv": lambda: df.to_csv(p, index=False),
        "parquet": lambda: df.to_parquet(p, index=False),
        "json": lambda: p.write_text(df.to_json(orient="records")),
    }[fmt]()
    with pytest.raises(SimpoolBenchError, match=rf"old\.{fmt}: {word} results schema version {version}"):
        R.read_run(p)


def test_read_run_names_bad_value(tmp_path):
    p = R.write_run(_run(), tmp_path)["csv"]
    (tmp_path / R.RUN_MANIFEST).unlink()  # a hand-edited copy
    text = p.read_text().splitlines()
    text[2] = text[2].replace("80.125", "eighty")
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(SimpoolBenchError, match=r"results.csv: column 'value' row 1 \(line 3\): 'eighty' is not a number"):
        R.read_run(p)


def test_an_edited_file_without_run_ids_is_not_called_another_writes(tmp_path):
    """A file of the run that holds no run_id column (boxacc_curve.csv, per_image.parquet) edited
    after the run: the sha256 the manifest records cannot say whether it was edited or left by
    another write, so the error names both, not 'the folder mixes results of different writes'."""
    paths = R.write_run(_run(), tmp_path, extra={"boxacc_curve.csv": b"threshold,boxacc_50\n0.5,40.0\n"})
    paths["boxacc_curve.csv"].write_bytes(b"threshold,boxacc_50\n0.5,41.0\n")
    with pytest.raises(SimpoolBenchError) as e:
        R.store.verify_run_file(paths["boxacc_curve.csv"])
    assert "boxacc_curve.csv: not the file run run0 wrote (its sha256 is not the one results.manifest.json records)" in str(e.value)
    assert "changed since, or left by another write" in str(e.value) and "mixes results of different writes" not in str(e.value)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_a_table_edited_after_its_run_wrote_it_is_refused_while_the_manifest_lists_it(tmp_path, fmt):
    """A value changed in a run's table (its run_id kept) no longer matches the sha256 the manifest
    records: refused, naming the file, never read as the run's numbers; without the manifest (a
    hand-made copy) the edit is read as it is."""
    paths = R.write_run(_run(), tmp_path, formats=("json",))
    p = paths[fmt]
    edited = R.read_run(p).copy()
    edited.loc[edited["metric"] == "top1_loc", "value"] = 99.0
    if fmt == "parquet":
        edited.to_parquet(p, index=False)
    elif fmt == "csv":
        p.write_text(edited.to_csv(index=False))
    else:
        p.write_bytes(R.store._json_bytes(edited))
    with pytest.raises(
        SimpoolBenchError,
        match=rf"results\.{fmt}: changed since run run0 wrote it \(its sha256 is not the one results\.manifest\.json records\)",
    ):
        R.read_run(p)
    with pytest.raises(SimpoolBenchError, match=rf"results\.{fmt}: changed since run run0"):
        R.check(p, paths["csv"])
    (tmp_path / R.RUN_MANIFEST).unlink()
    back = R.read_run(p)
    assert back.loc[back["metric"] == "top1_loc", "value"].tolist() == [99.0]


@pytest.mark.parametrize("run_id", [["run0"], {"id": "run0"}, 7])
def test_a_manifest_whose_run_id_is_not_a_string_is_one_error(tmp_path, run_id):
    p = R.write_run(_run(), tmp_path)["csv"]
    man = tmp_path / R.RUN_MANIFEST
    m = json.loads(man.read_text())
    m["run_id"] = run_id
    man.write_text(json.dumps(m))
    with pytest.raises(SimpoolBenchError, match=rf"results\.manifest\.json: 'run_id' is {re.escape(repr(run_id))}; expected a string"):
        R.read_run(p)


@pytest.mark.parametrize("cell", ["99999999999999999999999", "-9223372036854775809", "1e30"])
def test_an_integer_cell_beyond_64_bits_is_one_error(tmp_path, cell):
    p = R.write_run(_run(), tmp_path)["csv"]
    (tmp_path / R.RUN_MANIFEST).unlink()  # a hand-edited copy
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df.loc[1, "iou_threshold"] = cell
    p.write_text(df.to_csv(index=False))
    with pytest.raises(SimpoolBenchError, match=rf"results\.csv: column 'iou_threshold' row 1 \(line 3\): '{cell}' is out of range"):
        R.read_run(p)
    df.loc[1, "iou_threshold"] = "9223372036854775807"  # the largest Int64 is read (and refused as a threshold, not as a number)
    p.write_text(df.to_csv(index=False))
    with pytest.raises(SimpoolBenchError) as err:
        R.read_run(p)
    assert "out of range" not in str(err.value) and "9223372036854775807" in str(err.value)


def test_sha256_file_matches_hashlib(tmp_path):
    data = np.random.default_rng(0).bytes(3 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert R.sha256_file(p, chunk_size=1024) == hashlib.sha256(data).hexdigest()


def test_stored_provenance_takes_this_schema_version_and_new_columns():
    """Maps extracted by an older version (schema 1, no cls_head/pos_interp) score into a table of
    this version: the layout is the writer's, the model facts the store's."""
    from types import SimpleNamespace

    from simpool_bench.run_records import stored_provenance

    store = SimpleNamespace(
        manifest={"provenance": {"model": "vit_small_patch16_224", "pool": "cls", "schema_version": 1, "attn_source": "cls"}}
    )
    prov = stored_provenance(store, n_images=3, method="attn")
    row = prov.as_row()
    assert row["schema_version"] == R.SCHEMA_VERSION == 5
    assert row["attn_source"] == "cls" and row["cls_head"] is None and row["pos_interp"] is None
    assert list(row) == list(R.PROVENANCE_COLUMNS)


def test_a_new_write_replaces_the_whole_set_of_files(tmp_path):
    # README: a run's result files are "replaced as one set under results.manifest.json": a second run
    # into the folder without md/latex/json and without per_class.csv leaves none of the first's behind
    out = tmp_path / "out"
    R.write_run(_run(run_id="first"), out, formats=("json", "md", "latex"), extra={"per_class.csv": b"class,top1\n"})
    R.write_run(_run(run_id="second"), out, formats=())
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.manifest.json", "results.parquet"]
    manifest = json.loads((out / R.RUN_MANIFEST).read_text())
    assert (manifest["state"], manifest["run_id"], sorted(manifest["files"])) == ("complete", "second", ["results.csv", "results.parquet"])
    assert set(R.read_run(out)["run_id"]) == {"second"}


# ---------------------------------------------------- one run as Markdown, LaTeX and on the console
def _knn_run() -> pd.DataFrame:
    """A classification run with k-NN rows (a k column) and a missing value."""
    rows = _rows({"top1": 76.5})
    rows += [{"dataset": "in1k", "split": "val", "metric": "knn_top1", "k": k, "value": v} for k, v in ((10, 70.25), (20, float("nan")))]
    rows[0].update(dataset="in1k", split="val")
    prov = _prov(gamma=2.0, checkpoint_sha256="a" * 64, data_sha256="f" * 64, knn_data_sha256="e" * 64, cls_head=4, pos_interp="dino")
    return R.make_table(rows, prov)


PROVENANCE = (
    "model vit_small_patch16_224; pool simpool; gamma 2; min-scope sample; attention simpool; head 4; positions dino; "
    "image size 224; images 5794; data sha256 ffffffffffff; k-NN data sha256 eeeeeeeeeeee; device cpu; "
    "checkpoint ckpt/vits_simpool.pth.tar, sha256 aaaaaaaaaaaa, format official-supervised; "
    "simpool-bench 0.1.0, torch 2.x, timm 1.x; run run0, 2025-01-02T03:04:05+00:00"
)


def test_markdown_of_a_knn_run_by_hand():
    # every line written out: the k column right-aligned, a missing value "–", provenance and command underneath
    assert R.to_markdown(_knn_run()).splitlines() == [
        "| dataset | split | metric | IoU | k | value |",
        "|---|---|---|---:|---:|---:|",
        "| in1k | val | top1 |  |  | 76.50 |",
        "| in1k | val | knn_top1 |  | 10 | 70.25 |",
        "| in1k | val | knn_top1 |  | 20 | – |",
        "",
        f"Provenance: {PROVENANCE}.",
        'Command: `simpool-bench localize --out "a b" --x=1,2`',
    ]


def test_latex_of_a_knn_run_by_hand():
    # six columns (lllrrr), labels of the catalog, a missing value as ASCII "--"
    assert R.to_latex(_knn_run()).splitlines() == [
        f"% simpool-bench: {PROVENANCE}",
        r"\begin{tabular}{lllrrr}",
        r"\toprule",
        r"Dataset & Split & Metric & IoU & k & Value \\",
        r"\midrule",
        r"in1k & val & Top-1 &  &  & 76.50 \\",
        r"in1k & val & k-NN Top-1 &  & 10 & 70.25 \\",
        r"in1k & val & k-NN Top-1 &  & 20 & -- \\",
        r"\bottomrule",
        r"\end{tabular}",
    ]


def test_run_exports_keep_cells_whole_and_markup_as_text():
    """A '|' or a newline in a dataset name cannot break a Markdown row; a newline in the checkpoint
    path cannot end the LaTeX comment; '[b]' in a name is text on the console, not rich markup."""
    rows = [{"dataset": "a|b\nc", "split": "[b]x[/b]", "metric": "top1", "value": 1.0}]
    df = R.make_table(rows, _prov(checkpoint="ck\npt", gamma=0.0))
    md = R.to_markdown(df).splitlines()
    assert md[2] == r"| a\|b c | [b]x[/b] | top1 |  | 1.00 |"
    assert "; gamma 0; " in md[4]
    tex = R.to_latex(df).splitlines()
    assert tex[0].startswith("% simpool-bench: ") and "checkpoint ck pt, sha256" in tex[0] and tex[1].startswith(r"\begin{tabular}")
    console = Console(record=True, width=300)
    console.print(R.console_table(df))
    text = console.export_text()
    assert "[b]x[/b]" in text and "vit_small_patch16_224 / simpool" in text


# ----------------------------------------------------------------------------- a bad cell, schema 2
@pytest.mark.parametrize(
    "row, match",
    [
        ({"value": True}, r"column 'value' row 0: True is not a number"),
        ({"metric": "corloc", "iou_threshold": 50.5}, r"column 'iou_threshold' row 0: 50.5 is not an integer"),
        ({"metric": "corloc", "iou_threshold": 0}, r"row 0: iou_threshold 0 is not a percentage in \(0, 100\]"),
        ({"metric": "knn_top1", "k": 0}, r"row 0: k 0 is not a positive number of neighbours"),
        ({"dataset": ""}, r"column 'dataset' is empty in row 0"),
        ({"split": " test"}, r"row 0: split ' test' has spaces around it; expected 'test'"),
        ({"metric": "top1 (x)"}, r"row 0: metric name 'top1 \(x\)' must be letters, digits"),
    ],
)
def test_make_table_names_the_bad_cell(row, match):
    base = {"dataset": "cub", "split": "test", "metric": "top1", "value": 1.0}
    with pytest.raises(SimpoolBenchError, match=match):
        R.make_table([{**base, **row}], _prov())


def test_make_table_random_init_and_record_cells():
    with pytest.raises(SimpoolBenchError, match=r"column 'random_init' row 0: 2 is not true or false"):
        _run({"top1": 1.0}, random_init=2)
    assert _run({"top1": 1.0}, random_init=1)["random_init"].tolist() == [True]
    with pytest.raises(SimpoolBenchError, match=r"column 'protocol' row 0: '\[1, 2\]' is not a JSON object"):
        _run({"top1": 1.0}, protocol="[1, 2]")


def test_provenance_of_a_table_without_rows_is_an_error():
    with pytest.raises(SimpoolBenchError, match=r"table has no provenance \(missing columns: rows\)"):
        R.Provenance.from_table(_run().iloc[:0])
    assert R.Provenance.from_table(_run()) == _prov(schema_version=R.SCHEMA_VERSION)


def test_a_schema_2_table_reads_with_the_later_columns(tmp_path):
    """Schema 2 had no k, protocol, transform, random_init or data_sha256: they read empty, but
    random_init, which its checkpoint_format ('random-init') gives."""
    for fmt, ran in (("random-init", True), ("official-supervised", False)):
        old = _run({"top1": 1.0, "top5": 2.0}, checkpoint_format=fmt).drop(
            columns=["k", "protocol", "transform", "random_init", "data_sha256"]
        )
        old["schema_version"] = 2
        p = tmp_path / f"{fmt}.csv"
        old.to_csv(p, index=False)
        back = R.read_run(p)
        assert list(back.columns) == list(R.COLUMNS)
        assert back["random_init"].tolist() == [ran, ran] and back["schema_version"].tolist() == [2, 2]
        assert back[["k", "protocol", "transform", "data_sha256"]].isna().all().all()


def _schema_4_csv(table: pd.DataFrame, path) -> None:
    """``table`` as a schema-4 results.csv: no knn_data_sha256 column, schema_version 4."""
    old = table.drop(columns=["knn_data_sha256"])
    old["schema_version"] = 4
    old.to_csv(path, index=False)


def test_a_schema_4_knn_table_reads_its_one_digest_as_the_knn_rows_data(tmp_path):
    """Schema 4 kept one data_sha256 per run, of a k-NN run's images and bank together: that is what
    knn_data_sha256 holds now, so it is read there, and data_sha256 (of the images alone) reads empty.
    A schema-4 table without k-NN rows keeps its data_sha256 and reads no knn_data_sha256."""
    both, images = "b" * 64, "a" * 64
    rows = _rows({"top1": 76.5}, "in1k", "val") + [{"dataset": "in1k", "split": "val", "metric": "knn_top1", "k": 20, "value": 70.0}]
    _schema_4_csv(R.make_table(rows, _prov(data_sha256=both)), tmp_path / "knn.csv")
    back = R.read_run(tmp_path / "knn.csv")
    assert back["data_sha256"].isna().all() and back["knn_data_sha256"].tolist() == [both, both]
    assert back["schema_version"].tolist() == [4, 4] and list(back.columns) == list(R.COLUMNS)

    _schema_4_csv(R.make_table(_rows({"top1": 76.5}, "in1k", "val"), _prov(data_sha256=images)), tmp_path / "plain.csv")
    back = R.read_run(tmp_path / "plain.csv")
    assert back["data_sha256"].tolist() == [images] and back["knn_data_sha256"].isna().all()

    # several runs in one file (an all_results.csv): only the k-NN run's digest moves
    two = pd.concat([R.read_run(tmp_path / "plain.csv").assign(run_id="p"), R.read_run(tmp_path / "knn.csv").assign(run_id="k")])
    two["data_sha256"] = [images, both, both]
    _schema_4_csv(two, tmp_path / "all_results.csv")
    back = R.read_run(tmp_path / "all_results.csv")
    assert back["data_sha256"].fillna("").tolist() == [images, "", ""] and back["knn_data_sha256"].fillna("").tolist() == ["", both, both]


# ----------------------------------------------- formats, extra files, the manifest, schema_version
def test_export_formats_any_case_and_aliases(tmp_path):
    paths = R.write_run(_run(), tmp_path, formats=("MD", "tex", "Json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "results.csv",
        "results.json",
        "results.manifest.json",
        "results.md",
        "results.parquet",
        "results.tex",
    ]
    assert set(paths) == {"csv", "parquet", "md", "latex", "json", R.RUN_MANIFEST}


@pytest.mark.parametrize("name", ["results.manifest.json", "sub/per_class.csv", "results.csv", "", ".", "..", "a\x00b"])
def test_write_run_refuses_an_extra_file_name_it_cannot_take(tmp_path, name):
    with pytest.raises(SimpoolBenchError, match=rf"write_run: extra file name {re.escape(repr(name))} is taken or not a plain file name"):
        R.write_run(_run(), tmp_path / "out", extra={name: b"x"})
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_manifest_of_a_table_of_several_runs_names_no_run(tmp_path):
    two = pd.concat([_run(run_id="x"), _run(run_id="y")], ignore_index=True)
    R.write_run(two, tmp_path)
    manifest = json.loads((tmp_path / R.RUN_MANIFEST).read_text())
    assert manifest["run_id"] is None and manifest["state"] == "complete"
    pd.testing.assert_frame_equal(R.read_run(tmp_path / "results.csv"), two)  # read by the file's sha256


@pytest.mark.parametrize("name", ["results.manifest.json", "results.csv", "results.parquet", "results.md", "", ".", "..", "sub/x.csv"])
def test_add_run_file_refuses_a_results_file_or_a_path(tmp_path, name):
    """add_run_file replaces no file of write_run's (it replaced results.csv and listed the new
    sha256, so readers trusted a table write_run never wrote) and takes only a plain file name
    ('sub/x.csv' was written into a sub-folder; '', '.' and '..' failed as "cannot write <folder>")."""
    R.write_run(_run(), tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(
        SimpoolBenchError, match=rf"add_run_file: file name '{re.escape(name)}' is a results file of write_run or not a plain file name"
    ):
        R.add_run_file(tmp_path / "run", name, b"x")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_add_run_file_lists_the_file_in_the_manifest(tmp_path):
    R.write_run(_run(), tmp_path)
    R.add_run_file(tmp_path, "per_class.csv", b"class,top1\n")
    files = json.loads((tmp_path / R.RUN_MANIFEST).read_text())["files"]
    assert files["per_class.csv"] == hashlib.sha256(b"class,top1\n").hexdigest()
    R.verify_run_file(tmp_path / "per_class.csv")  # listed with its sha256: accepted


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.replace(",5\n", ",1\n"), r"older results schema version 1; this simpool-bench reads versions 2 to 5"),
        (lambda t: t[: t.rindex(",5\n")] + ",3\n", r"mixed or empty schema_version values \['3', '5'\]"),
        (lambda t: t.splitlines()[0] + "\n", r"results.csv: the table has no rows"),
    ],
    ids=["schema-1", "mixed", "header-only"],
)
def test_read_run_refuses_a_hand_edited_schema_version(tmp_path, edit, match):
    p = R.write_run(_run(), tmp_path)["csv"]
    (tmp_path / R.RUN_MANIFEST).unlink()  # a hand-edited copy
    p.write_text(edit(p.read_text()))
    with pytest.raises(SimpoolBenchError, match=match):
        R.read_run(p)


def test_read_run_names_a_column_name_with_spaces_around_it(tmp_path):
    p = R.write_run(_run(), tmp_path)["csv"]
    (tmp_path / R.RUN_MANIFEST).unlink()  # a hand-edited copy
    p.write_text(p.read_text().replace("dataset,split,", "dataset, split,", 1))
    with pytest.raises(SimpoolBenchError, match=r"results.csv: column name ' split' has spaces around it; expected 'split'$"):
        R.read_run(p)


def test_read_run_refuses_a_json_list_of_other_things(tmp_path):
    p = tmp_path / "rows.json"
    p.write_text("[1, 2]")
    with pytest.raises(SimpoolBenchError, match=r"rows.json: expected a JSON list of row objects"):
        R.read_run(p)


def test_an_infinite_value_is_one_error_before_any_file_is_written(tmp_path):
    """JSON has no infinity: a table holding one is refused naming the cell, not a ValueError, and
    the folder keeps the run it had; CSV and Parquet keep it."""
    old = R.write_run(_run({"top1": 1.0}, run_id="old"), tmp_path, formats=("json",))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    inf = _run({"top1": 1.0, "top5": float("inf")}, run_id="new")
    with pytest.raises(SimpoolBenchError, match=r"^results.json: column 'value' row 1: inf cannot be written as JSON; leave json out"):
        R.write_run(inf, tmp_path, formats=("json",))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before and set(old) == {"csv", "parquet", "json", R.RUN_MANIFEST}
    back = R.read_run(R.write_run(inf, tmp_path / "no_json", formats=())["csv"])
    assert back["value"].tolist() == [1.0, float("inf")]


def test_markdown_command_with_backticks_stays_one_code_span():
    """A shell's `...` in a recorded command (quoted in a path) ended the Markdown code span early:
    the fence is now longer than any run of backticks in the command."""
    from markdown_it import MarkdownIt

    cmd = "simpool-bench localize --out 'runs/`date`'"
    line = R.to_markdown(_run({"top1": 1.0}, command=cmd)).splitlines()[-1]
    assert line == "Command: ``simpool-bench localize --out 'runs/`date`'``"
    assert MarkdownIt().render(line) == "<p>Command: <code>simpool-bench localize --out 'runs/`date`'</code></p>\n"
    assert R.to_markdown(_run({"top1": 1.0}, command="`x` y`")).splitlines()[-1] == "Command: `` `x` y` ``"
