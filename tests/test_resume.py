"""Resumable runs: a localize run killed with SIGKILL mid-way, started again with the same command,
gives the table of an uninterrupted run without recomputing its finished shards; a corrupted or
unchecked shard is recomputed, never trusted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.engine import EngineConfig

from conftest import build_tiny_checkpoint, build_wsol_dataset
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")

N_IMAGES, SHARD = 40, 5  # 8 shards
TABLE = ["dataset", "split", "metric", "iou_threshold", "value"]

# The CLI in a child process, slowed down after each finished shard so that it can be killed mid-way.
SLOW_CLI = """
import sys, time
import torch
torch.set_num_threads(1)  # as this test process (one_thread): the same bits in both
import simpool_bench.engine as engine
_save = engine.ShardStore.save
def slow_save(self, *args, **kwargs):
    _save(self, *args, **kwargs)
    time.sleep(0.5)
engine.ShardStore.save = slow_save
from simpool_bench.cli import app
sys.argv = ["simpool-bench", *sys.argv[1:]]
app()
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    wsol = build_wsol_dataset(root / "wsol", n=N_IMAGES, seed=3)
    ckpt, _ = build_tiny_checkpoint(root / "tiny.pth.tar", seed=5)
    return root, wsol.image_root, wsol.metadata, ckpt


def _args(images, meta, ckpt, out):
    return [
        "localize",
        "--dataset",
        "cub",
        "--data",
        str(images),
        "--metadata",
        str(meta),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--device",
        "cpu",
        "-b",
        "3",
        "--shard-size",
        str(SHARD),
    ]


def _table(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")[TABLE]


@pytest.fixture(scope="module")
def reference(setup):
    root, images, meta, ckpt = setup
    out = root / "uninterrupted"
    res = invoke(*_args(images, meta, ckpt, out))
    assert res.exit_code == 0, res.output
    return _table(out)


def _shard_files(out) -> list:
    return sorted((out / ".shards").glob("*/shard_*.pt"))


def test_killed_run_resumes_to_the_uninterrupted_table(setup, reference):
    root, images, meta, ckpt = setup
    out = root / "killed"
    with open(root / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *_args(images, meta, ckpt, out)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 240
            while len(list((out / ".shards").glob("*/shard_*.sha256"))) < 3:
                assert proc.poll() is None, (root / "killed.log").read_text()
                assert time.monotonic() < deadline, "the child wrote no shard in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not (out / "results.csv").exists()
    done = _shard_files(out)
    assert 3 <= len(done) < N_IMAGES // SHARD  # killed mid-way
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in done}

    res = invoke(*_args(images, meta, ckpt, out))  # the same command again
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(_table(out), reference)
    # the per-image records of the resumed run are those of the uninterrupted one
    pd.testing.assert_frame_equal(pd.read_parquet(out / "per_image.parquet"), pd.read_parquet(root / "uninterrupted" / "per_image.parquet"))
    assert len(_shard_files(out)) == N_IMAGES // SHARD
    for p, (mtime, data) in stamps.items():  # the finished shards were reused, not recomputed
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data


def test_sigterm_keeps_the_shards_and_says_how_to_resume(setup, reference):
    """A scheduler's time limit (SIGTERM) unwinds as Ctrl-C: exit 143, the resume hint, the finished
    shards kept (none half-written), and the same command then ends with the uninterrupted table."""
    root, images, meta, ckpt = setup
    out = root / "terminated"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *_args(images, meta, ckpt, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while len(list((out / ".shards").glob("*/shard_*.sha256"))) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child wrote no shard in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated (SIGTERM): finished shards are kept; run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    done = _shard_files(out)
    assert 2 <= len(done) < N_IMAGES // SHARD and not list(out.rglob("*.tmp"))
    stamps = {p: p.stat().st_mtime_ns for p in done}

    res = invoke(*_args(images, meta, ckpt, out))
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(_table(out), reference)
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in stamps.items())  # reused, not recomputed


def test_corrupt_or_unchecked_shards_are_recomputed(setup, reference):
    root, images, meta, ckpt = setup
    out = root / "uninterrupted"
    (key_dir,) = (out / ".shards").iterdir()
    shards = sorted(key_dir.glob("shard_*.pt"))
    assert len(shards) == N_IMAGES // SHARD
    bad = shards[2]
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flipped bits: the checksum no longer matches
    bad.write_bytes(bytes(data))
    shards[5].with_suffix(".sha256").unlink()  # a shard whose checksum was never written
    untouched = {p: p.stat().st_mtime_ns for p in shards if p not in (bad, shards[5])}

    # the API tells how many shards it reused (same resume folder and key as the CLI run)
    records = api.read_localization_data("cub", images, meta)
    model, _ = api.load_model(api.ModelOptions(checkpoint=ckpt))
    config = EngineConfig(device="cpu", batch_size=3, shard_size=SHARD, resume_dir=out / ".shards", progress=False)
    outcome = ev.localize(model, records, config, dataset="cub", split="test", key=key_dir.name)
    assert (outcome.extras["shards_total"], outcome.extras["shards_resumed"]) == (8, 6)
    got = pd.DataFrame(outcome.rows)[TABLE]
    want = reference[~reference.metric.isin(["n_images", "n_failed"])].reset_index(drop=True)
    assert got["metric"].tolist() == want["metric"].tolist()
    assert got["value"].tolist() == want["value"].tolist()
    assert all(p.stat().st_mtime_ns == m for p, m in untouched.items())
    assert bad.read_bytes() != bytes(data) and shards[5].with_suffix(".sha256").exists()  # both rewritten

    # and the CLI, run again, now reuses all of them and gives the same table
    res = invoke(*_args(images, meta, ckpt, out))
    assert res.exit_code == 0
    pd.testing.assert_frame_equal(_table(out), reference)


# ----------------------------------------------------------------------------------- what the key covers
SMALL, SMALL_SHARD = 12, 4


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("key")
    wsol = build_wsol_dataset(root / "wsol", n=SMALL, seed=7)
    ckpt_a, _ = build_tiny_checkpoint(root / "a.pth.tar", seed=5)
    ckpt_b, _ = build_tiny_checkpoint(root / "b.pth.tar", seed=6)
    return root, wsol, ckpt_a, ckpt_b


def _small_args(wsol, ckpt, out, *extra):
    return [
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
        "4",
        "--shard-size",
        str(SMALL_SHARD),
        *extra,
    ]


def _v2(out) -> float:
    t = pd.read_csv(out / "results.csv")
    return float(t.loc[t.metric == "maxboxacc_v2", "value"].item())


def test_edited_boxes_are_recomputed_not_resumed(small, tmp_path):
    root, wsol, ckpt, _ = small
    data = tmp_path / "wsol"
    import shutil

    shutil.copytree(wsol.image_root.parent, data)
    images, meta = data / "images", data / "metadata" / "test"
    out = tmp_path / "out"
    assert invoke(*_small_args(type(wsol)(images, meta, SMALL), ckpt, out)).exit_code == 0
    before = _v2(out)
    lines = (meta / "localization.txt").read_text().splitlines()
    for j in (0, 5):  # two boxes moved to a corner sliver: no threshold finds them any more
        image_id = lines[j].split(",")[0]
        lines[j] = f"{image_id},0,0,1,1"
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")

    res = invoke(*_small_args(type(wsol)(images, meta, SMALL), ckpt, out))  # same --out, edited data
    assert res.exit_code == 0, res.output
    fresh = tmp_path / "fresh"  # the truth: the edited data without any stored shard
    assert invoke(*_small_args(type(wsol)(images, meta, SMALL), ckpt, fresh, "--no-resume")).exit_code == 0
    assert _v2(out) == _v2(fresh) != before
    assert len(list((out / ".shards").iterdir())) == 2  # a key per data version, the old one untouched

    # a replaced image (same name, other pixels) changes the key as well
    first = sorted(images.rglob("*.jpg"))[0]
    from PIL import Image

    Image.open(first).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(first, format="JPEG", quality=90)
    assert invoke(*_small_args(type(wsol)(images, meta, SMALL), ckpt, out)).exit_code == 0
    assert len(list((out / ".shards").iterdir())) == 3


def test_shard_copied_from_another_run_is_recomputed_with_a_notice(small, tmp_path):
    root, wsol, ckpt_a, ckpt_b = small
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert invoke(*_small_args(wsol, ckpt_a, out_a)).exit_code == 0
    assert invoke(*_small_args(wsol, ckpt_b, out_b)).exit_code == 0
    truth = pd.read_csv(out_b / "results.csv")[TABLE]
    (dir_a,), (dir_b,) = (out_a / ".shards").iterdir(), (out_b / ".shards").iterdir()
    assert dir_a.name != dir_b.name  # another model: another key
    for name in ("shard_000001.pt", "shard_000001.sha256"):  # another model's intact shard, copied in
        (dir_b / name).write_bytes((dir_a / name).read_bytes())
    copied = (dir_b / "shard_000001.pt").read_bytes()

    res = invoke(*_small_args(wsol, ckpt_b, out_b))
    assert res.exit_code == 0, res.output
    notes = [ln for ln in res.output.splitlines() if ln.startswith("note: recomputing")]
    assert len(notes) == 1 and "1 of 3 stored shards" in " ".join(res.output.split())
    assert "written by another run" in " ".join(res.output.split())
    pd.testing.assert_frame_equal(pd.read_csv(out_b / "results.csv")[TABLE], truth)
    assert (dir_b / "shard_000001.pt").read_bytes() != copied  # recomputed under this run's key
    assert torch.load(dir_b / "shard_000001.pt", weights_only=True)["key"] == dir_b.name


def test_strict_rerun_fails_on_an_undecodable_image_of_a_finished_shard(small, tmp_path):
    """--strict fails on an image that does not decode, also when the shard holding it was finished
    (skipped and counted) by an earlier run without --strict: a resumed shard is no way around it."""
    import shutil

    root, wsol, ckpt, _ = small
    data = tmp_path / "wsol"
    shutil.copytree(wsol.image_root.parent, data)
    images, meta = data / "images", data / "metadata" / "test"
    bad_id = (meta / "image_ids.txt").read_text().split()[5]  # in shard 1 of 3
    (images / bad_id).write_bytes(b"not an image")
    run = type(wsol)(images, meta, SMALL)
    out = tmp_path / "out"
    res = invoke(*_small_args(run, ckpt, out, "-j", "0"))
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    assert table.loc[table.metric == "n_failed", "value"].tolist() == [1.0]
    before = (out / "results.csv").read_bytes()

    fresh = invoke(*_small_args(run, ckpt, tmp_path / "fresh", "-j", "0", "--strict"))  # what --strict says on its own
    resumed = invoke(*_small_args(run, ckpt, out, "-j", "0", "--strict"))  # every shard finished before
    for res in (fresh, resumed):
        assert res.exit_code == 2, res.output
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in res.output
        assert bad_id in " ".join(res.output.split()) and "--strict fails on it" in " ".join(res.output.split())
    assert (out / "results.csv").read_bytes() == before  # the earlier run's results stay as they were


def test_rerun_says_what_it_resumed_and_why_it_resumed_nothing(small, tmp_path):
    """The same command again says how many finished shards it took over; after a change that makes
    them another run's (here a replaced image: its file time changes), one note says that none is
    reused, and the table is that of a fresh run."""
    import os
    import shutil

    root, wsol, ckpt, _ = small
    data = tmp_path / "wsol"
    shutil.copytree(wsol.image_root.parent, data)
    run = type(wsol)(data / "images", data / "metadata" / "test", SMALL)
    out = tmp_path / "out"
    first = invoke(*_small_args(run, ckpt, out))
    assert first.exit_code == 0 and "note:" not in first.output, first.output

    again = invoke(*_small_args(run, ckpt, out))
    assert again.exit_code == 0, again.output
    notes = [" ".join(ln.split()) for ln in " ".join(again.output.split("\n")).split("note:")[1:]]
    assert len(notes) == 1 and "resumed 3 of 3 shards" in notes[0] and str(out / ".shards") in notes[0], again.output

    image = sorted(run.image_root.rglob("*.jpg"))[0]
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed = invoke(*_small_args(run, ckpt, out))
    assert changed.exit_code == 0, changed.output
    notes = [" ".join(ln.split()) for ln in " ".join(changed.output.split("\n")).split("note:")[1:]]
    assert len(notes) == 1 and "of another run" in notes[0] and "none is reused" in notes[0], changed.output
    assert "3 shards" in notes[0] and str(out / ".shards") in notes[0]
    fresh = tmp_path / "fresh"
    assert invoke(*_small_args(run, ckpt, fresh, "--no-resume")).exit_code == 0
    pd.testing.assert_frame_equal(_table(out), _table(fresh))


@pytest.mark.parametrize(
    "command,setting",
    [
        ("discover", ("--mass", "0.2")),
        ("discover", ("--method", "lost")),
        ("localize", ("--interval", "0.01")),
        ("localize", ("--v1",)),
        ("localize-cam", ("--cam-target", "pred")),
    ],
)
def test_a_rerun_with_another_protocol_value_is_recomputed_not_resumed(command, setting, tmp_path):
    """The same command with another protocol value (the mass of the attention boxes, the box
    method, the threshold step, V1 boxes too, the CAM's class), into the same --out, is another
    run: its table is that of a fresh run with that value, not made of the stored shards of the
    first (which a resume key without that value would merge)."""
    from conftest import build_voc_dataset

    ckpt, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar", seed=5)
    model = ["--checkpoint", ckpt]
    if command == "localize-cam":  # a GAP CNN: its map is the CAM of the class --cam-target names
        command, model = "localize", ["--model", "resnet18", "--pool", "gap", "--random-init", "--num-classes", "3"]
    if command == "discover":
        data = ["--dataset", "voc07", "--data", build_voc_dataset(tmp_path / "voc", n=12, seed=4)]
    else:
        wsol = build_wsol_dataset(tmp_path / "wsol", n=12, seed=3)
        data = ["--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata]
    base = [command, *data, *model, "--device", "cpu", "-b", "4", "--shard-size", "4"]
    out = tmp_path / "out"
    assert invoke(*base, "--out", out).exit_code == 0
    first = _table(out)
    res = invoke(*base, *setting, "--out", out)
    assert res.exit_code == 0, res.output
    fresh = tmp_path / "fresh"
    assert invoke(*base, *setting, "--out", fresh, "--no-resume").exit_code == 0
    pd.testing.assert_frame_equal(_table(out), _table(fresh))
    if setting != ("--interval", "0.01"):  # (a finer step may find the same maxima)
        assert not _table(out).equals(first)
