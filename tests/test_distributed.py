"""torchrun on CPU (gloo): two ranks give exactly the tables of one process; a dead rank is a clear error.

Datasets hold 11 images (not divisible by 2); ``--shard-size 3`` makes 4 shards (3, 3, 3, 2
images), dealt round-robin, so rank 0 evaluates shards 0 and 2 and rank 1 shards 1 and 3;
``--batch-size 2`` leaves a partial batch in every shard. Both runs use one thread per process
(torchrun's default), so that even the floating-point work is the same.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from simpool_bench.cli import app
from simpool_bench.engine import DIST_TIMEOUT_ENV, FAULT_ENV, FAULT_EXIT_CODE, all_gather_indexed, dist_timeout_s, init_distributed
from simpool_bench.errors import SimpoolBenchError

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")

N_IMAGES = 11
SHARD, BATCH = 3, 2
SHARD_SIZES = [3, 3, 3, 2]
VALUE_COLUMNS = ["dataset", "split", "metric", "iou_threshold", "value"]
# Runs every command given as JSON in ONE interpreter (one import of torch/timm per rank), through
# the same Typer app as the `simpool-bench` script.
DRIVER = (
    "import json, sys\n"
    "from simpool_bench.cli import app\n"
    "for args in json.loads(sys.argv[1]):\n"
    "    rc = app(args, standalone_mode=False)\n"
    "    if rc:\n"
    "        sys.exit(rc)\n"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_image_folder, make_wsol_dataset, make_voc_dataset, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("dist")
    folder = make_image_folder(root / "folder", counts=(4, 4, 3))
    wsol = make_wsol_dataset(root / "wsol", n=N_IMAGES)
    voc = make_voc_dataset(root / "voc", n=N_IMAGES)
    ckpt, _ = make_tiny_checkpoint(root / "tiny.pth.tar")
    return {"root": root, "folder": folder, "wsol": wsol, "voc": voc, "ckpt": ckpt}


def _commands(d: dict, out: Path) -> dict[str, list[str]]:
    run = ["--checkpoint", str(d["ckpt"]), "--device", "cpu", "-b", str(BATCH), "--shard-size", str(SHARD)]
    return {
        "classify": [
            "classify",
            "--data",
            str(d["folder"]),
            "--knn-train",
            str(d["folder"]),
            "--knn-k",
            "3",
            *run,
            "--out",
            str(out / "classify"),
        ],
        "localize": [
            "localize",
            "--data",
            str(d["wsol"].image_root),
            "--metadata",
            str(d["wsol"].metadata),
            *run,
            "--out",
            str(out / "localize"),
        ],
        "discover": ["discover", "--data", str(d["voc"]), *run, "--out", str(out / "discover")],
    }


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, DIST_TIMEOUT_ENV, "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200", **extra)
    return env


def _values(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)[VALUE_COLUMNS]
    return table.sort_values(["metric", "iou_threshold"], na_position="first").reset_index(drop=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_totals(run_dir: Path, state: tuple[str, str]) -> list[int]:
    """Images counted by each stored shard (accumulator ``state[0]``, field ``state[1]``), by shard id."""
    (key_dir,) = (run_dir / ".shards").iterdir()
    files = sorted(key_dir.glob("shard_*.pt"))
    return [int(torch.load(f, weights_only=True)["states"][state[0]][state[1]]) for f in files]


def test_torchrun_two_ranks_give_exactly_the_tables_of_one_process(tiny):
    out2, out1 = tiny["root"] / "two", tiny["root"] / "one"
    cmds2 = _commands(tiny, out2)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
            sys.executable,
            "-c",
            DRIVER,
            json.dumps(list(cmds2.values())),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for args in _commands(tiny, out1).values():
            res = CliRunner().invoke(app, args, catch_exceptions=False)
            assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)

    for name in cmds2:
        one, two = _values(out1 / name / "results.csv"), _values(out2 / name / "results.csv")
        pd.testing.assert_frame_equal(one, two, check_exact=True)
        assert one.loc[one.metric == "n_images", "value"].item() == N_IMAGES
        # the per-image records too: every image once, the same rows from one process and two ranks
        rows1, rows2 = pd.read_parquet(out1 / name / "per_image.parquet"), pd.read_parquet(out2 / name / "per_image.parquet")
        pd.testing.assert_frame_equal(rows1, rows2, check_exact=True)
        assert len(rows2) == N_IMAGES and not rows2["failed"].any()
    # the tables are not trivial: every metric was computed
    for name, metrics in {
        "classify": {"top1", "top5", "knn_top1"},
        "localize": {"maxboxacc_v2", "top1_loc"},
        "discover": {"corloc"},
    }.items():
        table = _values(out2 / name / "results.csv")
        assert metrics <= set(table.metric) and table.value.notna().all()
    # every image counted exactly once, each in its own shard: the stored per-shard counts (written by both ranks)
    assert _shard_totals(out2 / "classify", ("topk", "total")) == SHARD_SIZES
    assert _shard_totals(out2 / "localize", ("boxacc", "n_images")) == SHARD_SIZES
    assert _shard_totals(out2 / "discover", ("corloc", "total")) == SHARD_SIZES
    # only rank 0 printed the table
    assert proc.stdout.count("n_images") == len(cmds2)


@pytest.mark.slow
def test_console_script_runs_unchanged_under_torchrun(tiny):
    """``torchrun --nproc-per-node 2 --no-python simpool-bench classify ...`` (~30-60 s on 2 cores)."""
    script = Path(sys.executable).with_name("simpool-bench")
    if not script.exists():
        pytest.skip("the simpool-bench console script is not installed beside this interpreter")
    out2, out1 = tiny["root"] / "script2", tiny["root"] / "script1"
    args2 = _commands(tiny, out2)["classify"]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python", str(script), *args2],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(app, _commands(tiny, out1)["classify"], catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    pd.testing.assert_frame_equal(_values(out1 / "classify" / "results.csv"), _values(out2 / "classify" / "results.csv"), check_exact=True)


def _launch_two(cmd: list[str], fault: str, timeout_s: int, via_flag: bool = False) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two ranks started by hand, as two nodes would be (no torchrun agent to stop the survivor); the
    collective timeout through ``--dist-timeout`` (``via_flag``) or the environment."""
    port = str(_free_port())
    procs = []
    if via_flag:
        cmd = [*cmd, "--dist-timeout", str(timeout_s)]
    for rank in (0, 1):
        timeout_env = {} if via_flag else {DIST_TIMEOUT_ENV: str(timeout_s)}
        env = _env(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            **{FAULT_ENV: fault, **timeout_env},
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DRIVER, json.dumps([cmd])], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return procs[0], procs[1]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_rank_that_dies_is_a_clear_error_on_the_others(tiny):
    cmd = _commands(tiny, tiny["root"] / "dies")["classify"]
    cmd = [a for i, a in enumerate(cmd) if not (a.startswith("--knn") or (i and cmd[i - 1].startswith("--knn")))]
    r0, r1 = _launch_two(cmd, fault="1:exit", timeout_s=10, via_flag=True)  # 10 s, not the default 30 s: the flag
    try:
        _, err1 = r1.communicate(timeout=300)
        t_dead = time.monotonic()
        _, err0 = r0.communicate(timeout=120)
    finally:
        for p in (r0, r1):
            if p.poll() is None:
                p.kill()
    assert r1.returncode == FAULT_EXIT_CODE, err1[-2000:]
    assert r0.returncode == 2, err0[-3000:]
    assert time.monotonic() - t_dead < 100  # bounded by the timeout, not a hang
    (line,) = _error_lines(err0)
    assert "rank 0 of 2: rank 1 died (no sign of life for 10 s) before finishing its shards" in line
    assert "Traceback" not in err0
    assert not (tiny["root"] / "dies" / "classify" / "results.csv").exists()


@pytest.mark.slow
def test_a_rank_that_hangs_times_out_with_a_clear_error(tiny):
    """~30-60 s on 2 cores: the survivor waits exactly the collective timeout, then fails."""
    cmd = _commands(tiny, tiny["root"] / "hangs")["classify"]
    r0, r1 = _launch_two(cmd, fault="1:hang", timeout_s=8)
    try:
        _, err0 = r0.communicate(timeout=300)
    finally:
        r1.kill()
        r1.communicate()
    assert r0.returncode == 2, err0[-3000:]
    (line,) = _error_lines(err0)
    assert "rank 0 of 2: rank 1 hangs (no progress for 8 s)" in line


# ------------------------------------------------------------------------------------ in-process
def test_join_without_rendezvous_settings_is_a_clear_error(monkeypatch):
    for k in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SimpoolBenchError, match="MASTER_ADDR, MASTER_PORT not set: launch with torchrun"):
        init_distributed()


def test_timeout_setting_is_validated(monkeypatch):
    monkeypatch.setenv(DIST_TIMEOUT_ENV, "45")
    assert dist_timeout_s() == 45.0
    monkeypatch.delenv(DIST_TIMEOUT_ENV)
    assert dist_timeout_s() == 600.0
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv(DIST_TIMEOUT_ENV, bad)
        with pytest.raises(SimpoolBenchError, match=DIST_TIMEOUT_ENV):
            dist_timeout_s()


def test_all_gather_indexed_outside_distributed_sorts_by_index():
    idx = torch.tensor([5, 1, 3])
    vals = torch.tensor([[5.0, 5.5], [1.0, 1.5], [3.0, 3.5]])
    i, v = all_gather_indexed(idx, vals)
    assert i.tolist() == [1, 3, 5]
    assert torch.equal(v[:, 0], i.float())
