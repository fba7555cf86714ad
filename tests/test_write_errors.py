"""Writes that fail (``files``, ``results.write_run``): a full disk, a read-only file system or an
``--out`` under a file give one ``error:`` line and exit 2, leave no ``.tmp`` file, and a run's
result files are all old or all new; ``compare``/``check`` never read a mixed set, and ``check``
refuses a baseline holding NaN."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest

from simpool_bench import files, results

from conftest import build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, said
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")
TABLE = ["dataset", "split", "metric", "iou_threshold", "value"]


class _FullFile:
    """A file on a disk that fills up: the first write stores half its bytes, then ENOSPC."""

    def __init__(self, f):
        self.f = f

    def write(self, b):
        self.f.write(bytes(b)[: max(1, len(b) // 2)])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fail_writes(monkeypatch, match: str, err: int = errno.ENOSPC) -> None:
    """Every file the package writes whose name contains ``match``: ENOSPC half-way through the
    write (a full disk), or EROFS when opened (``err=errno.EROFS``: a read-only file system; chmod
    does not stop root, who runs these tests)."""
    real = open

    def fake_open(path, mode="r", *args, **kwargs):
        if "w" in mode and match in os.path.basename(path):
            if err != errno.ENOSPC:
                raise OSError(err, os.strerror(err), str(path))
            return _FullFile(real(path, mode, *args, **kwargs))
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", fake_open, raising=False)


def _one_error(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.output
    return " ".join(errors[0].split())


def _no_tmp(root) -> None:
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _snapshot(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("writes")
    wsol = build_wsol_dataset(root / "wsol", n=6, seed=4)
    ckpt, _ = build_tiny_checkpoint(root / "tiny.pth.tar", seed=2)
    return root, wsol, ckpt


def _localize(setup, out, *extra):
    root, wsol, ckpt = setup
    return invoke(
        "localize",
        "--dataset",
        "cub",
        "--data",
        wsol.image_root,
        "--metadata",
        wsol.metadata,
        "--checkpoint",
        ckpt,
        "--out",
        out,
        "--device",
        "cpu",
        "-b",
        "3",
        "--shard-size",
        "3",
        "--formats",
        "json,md",
        *extra,
    )


def test_full_disk_on_results_keeps_the_old_set_whole(setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _localize(setup, out).exit_code == 0
    old = _snapshot(out)
    assert set(old) == {
        "results.csv",
        "results.parquet",
        "results.json",
        "results.md",
        "boxacc_curve.csv",
        "per_image.parquet",
        results.RUN_MANIFEST,
    }

    with monkeypatch.context() as m:
        _fail_writes(m, "results.parquet")  # the second table: the csv was already written (under its tmp name)
        line = _one_error(_localize(setup, out, "--interval", "0.01"))
    assert line == f"error: cannot write {out / 'results.parquet'}: No space left on device"
    _no_tmp(out)
    assert _snapshot(out) == old  # all old: every file byte for byte
    res = invoke("compare", out, out / "results.json", "--markdown", tmp_path / "cmp.md")
    assert res.exit_code == 0, res.output

    assert _localize(setup, out, "--interval", "0.01").exit_code == 0  # then all new
    new = _snapshot(out)
    assert all(new[k] != old[k] for k in ("results.csv", "results.parquet", "results.json", "boxacc_curve.csv"))
    assert results.read_run(out / "results.csv")["run_id"].nunique() == 1
    pd.testing.assert_frame_equal(results.read_run(out / "results.csv"), results.read_run(out / "results.parquet"))


def test_interrupted_renames_are_refused_by_compare_and_check(setup, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _localize(setup, out).exit_code == 0
    real, calls = results.store.commit, []

    def dies_after_one(tmp, path):  # the process is killed after the first rename
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(tmp, path)

    with monkeypatch.context() as m:
        m.setattr(results.store, "commit", dies_after_one)
        res = _localize(setup, out, "--interval", "0.01")
    assert res.exit_code == 130
    _no_tmp(out)
    # results.csv is new, the others are gone or old: nothing reads this folder
    for cmd in (
        ["compare", out / "results.parquet", out / "results.csv"],
        ["check", out, "--baseline", out / "results.csv", "--no-github"],
    ):
        line = _one_error(invoke(*cmd))
        assert f"error: {out}: a results write did not finish (results.manifest.json says 'writing')" in line
    assert _localize(setup, out, "--interval", "0.01").exit_code == 0  # the same command again: all new
    assert invoke("compare", out / "results.parquet", out / "results.csv").exit_code == 0


def test_a_file_of_another_write_is_refused(setup, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _localize(setup, a).exit_code == 0 and _localize(setup, b).exit_code == 0
    (a / "results.csv").write_bytes((b / "results.csv").read_bytes())  # e.g. an older tool version wrote only this
    line = _one_error(invoke("compare", a / "results.csv", b))
    assert f"error: {a / 'results.csv'}: not a file of run" in line and "mixes results of different writes" in line
    (a / "boxacc_curve.csv").write_text("threshold,boxacc_30\n0.5,1.0\n")
    line = _one_error(invoke("visualize", "--curves", a, "--out", tmp_path / "viz"))
    assert f"{a / 'boxacc_curve.csv'}: not the file run" in line and "left by another write" in line
    (a / results.RUN_MANIFEST).unlink()  # the escape hatch the message names
    assert invoke("compare", a / "results.csv", b).exit_code == 0


def test_check_refuses_a_nan_or_inf_baseline(setup, tmp_path):
    out = tmp_path / "run"
    assert _localize(setup, out).exit_code == 0
    for bad, shown in ((float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "-inf")):
        base = pd.read_csv(out / "results.csv")[TABLE]
        base.loc[base.metric == "maxboxacc_v2", "value"] = bad
        base.to_csv(tmp_path / "base.csv", index=False)
        line = _one_error(invoke("check", out, "--baseline", tmp_path / "base.csv", "--no-github"))
        assert (
            line
            == f"error: baseline {tmp_path / 'base.csv'}: value of cub/test maxboxacc_v2 is {shown}; a baseline must hold finite numbers"
        )


@pytest.mark.parametrize("where", ["full", "read-only", "under-a-file"])
def test_localize_resume_out_unwritable(setup, tmp_path, monkeypatch, where):
    out = tmp_path / "run"
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:
        _fail_writes(monkeypatch, "shard_" if where == "full" else "", errno.ENOSPC if where == "full" else errno.EROFS)
    line = _one_error(_localize(setup, out))
    reason = {"full": "No space left on device", "read-only": "Read-only file system", "under-a-file": "Not a directory"}[where]
    assert line.startswith("error: cannot ") and line.endswith(reason) and str(out) in line
    _no_tmp(tmp_path)
    if where != "under-a-file":
        assert not list(out.glob("results*")) and not list(out.rglob("*.pt"))


def test_compare_writes_its_files_before_it_prints_the_table(setup, tmp_path):
    """A --markdown path under a file was an error after the whole table had printed; now the
    error line is all the output, and a good path still gets the table and a 'wrote' line."""
    run = tmp_path / "run"
    assert _localize(setup, run).exit_code == 0
    (tmp_path / "file").write_text("x")
    res = invoke("compare", run, run / "results.json", "--markdown", tmp_path / "file" / "cmp.md")
    line = _one_error(res)
    assert line.endswith("Not a directory") and len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
    res = invoke("compare", run, run / "results.json", "--markdown", tmp_path / "cmp.md")
    assert res.exit_code == 0 and "simpool-bench compare" in res.output and f"wrote {tmp_path / 'cmp.md'}" in " ".join(res.output.split())


@pytest.mark.parametrize("where", ["full", "read-only", "under-a-file"])
def test_extract_visualize_compare_out_unwritable(setup, tmp_path, monkeypatch, where):
    root, wsol, ckpt = setup
    run = tmp_path / "run"
    assert _localize(setup, run).exit_code == 0
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        base = tmp_path / "file"
    else:
        base = tmp_path / "ro"
        base.mkdir()
        _fail_writes(monkeypatch, "", errno.ENOSPC if where == "full" else errno.EROFS)
    reason = {"full": "No space left on device", "read-only": "Read-only file system", "under-a-file": "Not a directory"}[where]
    commands = {
        "extract": [
            "extract",
            "--dataset",
            "cub",
            "--data",
            wsol.image_root,
            "--metadata",
            wsol.metadata,
            "--checkpoint",
            ckpt,
            "--device",
            "cpu",
            "--out",
            base / "maps",
        ],
        "visualize": ["visualize", "--curves", run, "--out", base / "viz"],
        "compare": ["compare", run, run / "results.json", "--markdown", base / "cmp.md"],
    }
    for name, args in commands.items():
        line = _one_error(invoke(*args))
        assert line.startswith("error: cannot ") and line.endswith(reason), (name, line)
    _no_tmp(tmp_path)
    if where != "under-a-file":
        assert not [p for p in base.rglob("*") if p.is_file() and p.suffix in (".pt", ".png", ".md", ".json")]


@pytest.mark.parametrize("where", ["under-a-file", "not-writable"])
def test_no_resume_out_unwritable_is_refused_before_the_model_runs(setup, tmp_path, monkeypatch, where):
    """Without --resume nothing is written before the results: an --out that cannot be made or
    written was one error after the whole evaluation; now it is one error before the model loads."""
    from simpool_bench import runs

    def no_model(*_a, **_k):
        raise AssertionError("the model was loaded: the run went ahead")

    monkeypatch.setattr(runs, "load_model", no_model)
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out, reason = tmp_path / "file" / "run", "Not a directory"
    else:
        real, ro = os.access, tmp_path / "ro"  # chmod does not stop root, who runs these tests
        monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if str(p) == str(ro) else real(p, mode, *a, **k))
        ro.mkdir()
        out, reason = ro / "run", "Permission denied"
    line = _one_error(_localize(setup, out, "--no-resume"))
    assert line == f"error: cannot create folder {out}: {reason}", line
    assert not out.exists()


def test_results_of_another_run_are_replaced_with_a_note(tmp_path):
    """A run into an --out holding another run's results (here another method) says so; the same
    command again (the same run) says nothing."""
    voc = build_voc_dataset(tmp_path / "VOC2007", n=3)
    out = tmp_path / "out"
    base = ["discover", "--dataset", "voc07", "--data", voc, "--out", out]
    first = invoke(*base, "--method", "center")
    assert first.exit_code == 0, first.output
    again = invoke(*base, "--method", "center")
    assert again.exit_code == 0 and "another run" not in said(again)
    other = invoke(*base, "--method", "full-image")
    assert other.exit_code == 0, other.output
    assert (
        f"note: {out} held the results of another run (model baseline:center -> baseline:full-image; method center -> full-image); "
        "they are replaced (another --out keeps both)"
    ) in said(other)
    assert set(pd.read_csv(out / "results.csv")["method"]) == {"full-image"}
