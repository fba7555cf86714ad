"""Tests for simpool_bench.results (table, store, render): the tidy table, its files and exports."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

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
    text = p.read_text().splitlines()
    text[2] = text[2].replace("80.125", "eighty")
    p.write_text("\n".join(text) + "\n")
    with pytest.raises(SimpoolBenchError, match=r"results.csv: column 'value' row 1 \(line 3\): 'eighty' is not a number"):
        R.read_run(p)


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
    assert row["schema_version"] == R.SCHEMA_VERSION == 4
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
