"""torchrun on CPU (gloo): two ranks give exactly the tables of one process; a dead rank is a clear error.

Datasets hold 11 images (not divisible by 2); ``--shard-size 3`` makes 4 shards (3, 3, 3, 2
images), dealt round-robin, so rank 0 evaluates shards 0 and 2 and rank 1 shards 1 and 3;
``--batch-size 2`` leaves a partial batch in every shard. Both runs use one thread per process
(torchrun's default), so that even the floating-point work is the same.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

from simpool_bench.cli import app
from simpool_bench.engine import DIST_TIMEOUT_ENV, FAULT_ENV, FAULT_EXIT_CODE, all_gather_indexed, dist_timeout_s, init_distributed
from simpool_bench.engine import distributed as D
from simpool_bench.engine.distributed import first_line
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


def test_a_world_size_that_is_not_a_number_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "abc")
    with pytest.raises(SimpoolBenchError, match=r"^WORLD_SIZE='abc': expected a whole number of processes \(torchrun sets it\)$"):
        init_distributed()
    for alone in ("", "1", " 1 "):  # unset, empty or one process: no group
        monkeypatch.setenv("WORLD_SIZE", alone)
        assert init_distributed() is False


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


def test_an_empty_timeout_setting_means_the_default(monkeypatch):
    monkeypatch.setenv(DIST_TIMEOUT_ENV, "")  # e.g. `SIMPOOL_BENCH_DIST_TIMEOUT= simpool-bench ...`
    assert dist_timeout_s() == 600.0
    assert dist_timeout_s(2.5) == 2.5  # the flag wins over the environment
    with pytest.raises(SimpoolBenchError, match="^--dist-timeout=0: expected"):
        dist_timeout_s(0)


def test_first_line_is_one_short_line_without_markup_brackets():
    err = RuntimeError("  [../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500 \nException raised from ...")
    assert first_line(err) == "(../gloo/transport/tcp/pair.cc:534) Connection closed by peer (127.0.0.1):29500"
    assert first_line(RuntimeError("  \n")) == "RuntimeError"
    assert first_line(RuntimeError("x" * 200)) == "x" * 200  # at the limit: whole
    assert first_line(RuntimeError("y" * 201)) == "y" * 197 + "..."  # over it: cut to the limit, "..." included
    assert first_line(ValueError("abcdef"), limit=5) == "ab..."


def _rendezvous_env(monkeypatch, rank: int) -> int:
    port = _free_port()
    for k, v in {
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }.items():
        monkeypatch.setenv(k, v)
    return port


def test_joining_waits_the_timeout_then_is_a_clear_error(monkeypatch):
    """Rank 0 of 2 alone: torch's own timeout error (a RuntimeError) becomes one line naming the rendezvous."""
    port = _rendezvous_env(monkeypatch, 0)
    real, timeouts = dist.init_process_group, []

    def spy(*args, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return real(*args, **{**kwargs, "timeout": kwargs.get("timeout") or datetime.timedelta(seconds=1)})

    monkeypatch.setattr(dist, "init_process_group", spy)
    with pytest.raises(SimpoolBenchError) as err:
        init_distributed(1.5)
    assert timeouts == [datetime.timedelta(seconds=1.5)]
    assert str(err.value).startswith(f"rank 0 of 2: could not join the process group at 127.0.0.1:{port} within 1.5 s (")
    assert not dist.is_initialized()


def test_joining_keeps_the_timeout_for_the_collectives_and_leaves_the_group_at_exit(monkeypatch):
    _rendezvous_env(monkeypatch, 1)
    joined, registered = [], []
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: joined.append(kwargs["timeout"]))
    monkeypatch.setattr(D, "atexit", SimpleNamespace(register=registered.append))
    monkeypatch.setitem(D._DIST, "timeout_s", 600.0)
    monkeypatch.setitem(D._DIST, "broken", True)
    assert init_distributed(7) is True
    assert joined == [datetime.timedelta(seconds=7)]
    assert D._DIST["timeout_s"] == 7.0 and D._DIST["broken"] is False
    assert registered == [D.shutdown_distributed]


@pytest.fixture
def one_rank_group(monkeypatch):
    """A real gloo process group of this one process (an in-memory store); the module's state restored after."""
    assert not dist.is_initialized()
    for key in ("timeout_s", "broken", "calls"):
        monkeypatch.setitem(D._DIST, key, D._DIST[key])
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_group_joined_before_still_takes_the_timeout_for_waiting_on_ranks(one_rank_group, monkeypatch):
    """API use, or a second command in one interpreter: the group exists; --dist-timeout must not be
    dropped silently (it sets how long RankMonitor waits), and a bad one is still refused."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    D._DIST["timeout_s"] = 600.0
    assert init_distributed(7) is True
    assert D._DIST["timeout_s"] == 7.0
    assert D.RankMonitor("joined-before").timeout == 7.0
    with pytest.raises(SimpoolBenchError, match="^--dist-timeout=-1: expected"):
        init_distributed(-1)


def test_shutdown_leaves_the_group_unless_a_collective_broke_it(one_rank_group):
    D._DIST["broken"] = True
    D.shutdown_distributed()
    assert dist.is_initialized()  # a broken group is left alone (destroying it can hang)
    D._DIST["broken"] = False
    D.shutdown_distributed()
    assert not dist.is_initialized()


def test_a_failed_collective_is_one_line_and_marks_the_group_broken(monkeypatch):
    monkeypatch.setitem(D._DIST, "timeout_s", 45.0)
    monkeypatch.setitem(D._DIST, "broken", False)
    assert D.collective("merging the results", lambda: 42) == 42
    assert D._DIST["broken"] is False

    def peer_gone():
        raise dist.DistBackendError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4321\nmore")

    with pytest.raises(SimpoolBenchError) as err:
        D.collective("merging the results", peer_gone)
    assert str(err.value) == (
        "rank 0 of 1: merging the results failed: another rank died or did not answer within 45 s (--dist-timeout or "
        "SIMPOOL_BENCH_DIST_TIMEOUT to wait longer): (../third_party/gloo/gloo/transport/tcp/pair.cc:534) Connection closed by "
        "peer (127.0.0.1):4321"
    )
    assert D._DIST["broken"] is True


class _Clock:
    """The monitor's time: ``sleep`` moves it on and lets the simulated rank 1 act at the new time.

    Reading it 100 times without a sleep is an error: the monitor would poll the store in a busy loop."""

    def __init__(self, rank1):
        self.start = self.t = 1000.0
        self.rank1 = rank1
        self.reads = 0

    def monotonic(self) -> float:
        self.reads += 1
        assert self.reads <= 100, "polling without sleeping"
        return self.t

    def sleep(self, seconds: float) -> None:
        self.reads = 0
        self.t += seconds
        self.rank1(self.t - self.start)


def _monitor_of_two(monkeypatch, rank1, timeout_s: float = 100.0):
    """Rank 0's RankMonitor (timeout 100 s: liveness 30 s) in a group it shares with a rank 1 that the
    test plays through the store: ``rank1(elapsed, store)`` after every poll."""
    monkeypatch.setitem(D._DIST, "timeout_s", timeout_s)
    monitor = D.RankMonitor(D.next_monitor_tag())
    monitor.world = 2
    monitor.store.add("alive/1", 1)
    monitor.store.add("progress/1", 1)
    clock = _Clock(lambda elapsed: rank1(elapsed, monitor.store))
    monkeypatch.setattr(D, "time", clock)
    return monitor, clock


def _wait(monitor, clock) -> float:
    try:
        monitor.wait_for_all(poll_s=1.0)
    finally:
        monitor.close()
    return clock.t - clock.start


def test_monitor_waits_for_a_slow_rank_that_lives_and_progresses(one_rank_group, monkeypatch):
    def slow(elapsed, store):  # beats every second, one batch a minute (longer than the liveness limit), done at 250 s
        store.add("alive/1", 1)
        if elapsed % 60 == 0:
            store.add("progress/1", 1)
        if elapsed == 250:
            store.set("done/1", "1")

    assert _wait(*_monitor_of_two(monkeypatch, slow)) == 250


def test_monitor_reports_a_rank_that_died_after_the_liveness_limit(one_rank_group, monkeypatch):
    monitor, clock = _monitor_of_two(monkeypatch, lambda elapsed, store: None)
    with pytest.raises(SimpoolBenchError) as err:
        _wait(monitor, clock)
    assert str(err.value) == (
        "rank 0 of 2: rank 1 died (no sign of life for 30 s) before finishing its shards; stopping (--dist-timeout or "
        "SIMPOOL_BENCH_DIST_TIMEOUT to wait longer)"
    )
    assert 30 < clock.t - clock.start <= 31
    assert D._DIST["broken"] is True  # a peer is gone: leaving the group at exit is skipped (it could wait)


def test_monitor_reports_a_rank_that_lives_but_makes_no_progress_after_the_timeout(one_rank_group, monkeypatch):
    monitor, clock = _monitor_of_two(monkeypatch, lambda elapsed, store: store.add("alive/1", 1))
    with pytest.raises(SimpoolBenchError, match=r"^rank 0 of 2: rank 1 hangs \(no progress for 100 s\) before finishing"):
        _wait(monitor, clock)
    assert 100 < clock.t - clock.start <= 101
    assert D._DIST["broken"] is True


def test_a_short_timeout_beats_and_publishes_four_times_per_limit(one_rank_group, monkeypatch):
    """A live rank must never look dead: with --dist-timeout 0.4 the beats come every 0.1 s (not the
    usual 1 s, longer than the 0.4 s liveness limit) and progress is published every 0.1 s (not 0.5 s)."""
    monitor, clock = _monitor_of_two(monkeypatch, lambda elapsed, store: None, timeout_s=0.4)
    monitor.close()
    assert (monitor.liveness, monitor.beat_s, monitor.publish_s) == (0.4, 0.1, 0.1)
    waits = []

    class Stop:  # the heartbeat thread's stop event: record the wait, beat once, then stop
        def wait(self, seconds):
            waits.append(seconds)
            return len(waits) > 1

    monitor._stop = Stop()
    before = monitor.store.add("alive/0", 0)
    monitor._beat(monitor.store)
    assert waits == [0.1, 0.1] and monitor.store.add("alive/0", 0) == before + 1
    counts = []
    for t in (0.0, 0.05, 0.1, 0.15, 0.25):
        clock.t = clock.start + t
        monitor.progress()
        counts.append(monitor.store.add("progress/0", 0))
    assert counts == [2, 2, 3, 3, 4]
    default, _ = _monitor_of_two(monkeypatch, lambda elapsed, store: None)  # 100 s: the usual 1 s and 0.5 s
    default.close()
    assert (default.liveness, default.beat_s, default.publish_s) == (30.0, 1.0, 0.5)


def test_monitor_publishes_progress_at_most_twice_a_heartbeat(one_rank_group, monkeypatch):
    monitor, clock = _monitor_of_two(monkeypatch, lambda elapsed, store: None)
    monitor.close()
    counts = []
    for t in (0.0, 0.2, 0.49, 0.5, 0.6, 1.7):
        clock.t = clock.start + t
        monitor.progress()
        counts.append(monitor.store.add("progress/0", 0))
    assert counts == [2, 2, 2, 3, 3, 4]  # 1 when the monitor started, then a batch at 0, 0.5 and 1.7 s


def test_monitor_heartbeat_counts_up_until_closed(one_rank_group, monkeypatch):
    monkeypatch.setattr(D, "HEARTBEAT_S", 0.01)
    monitor = D.RankMonitor("beats")
    try:
        for _ in range(1000):  # at most ~10 s
            if monitor.store.add("alive/0", 0) >= 3:
                break
            time.sleep(0.01)
    finally:
        monitor.close()
    assert monitor.store.add("alive/0", 0) >= 3
    monitor._thread.join(timeout=10)
    assert not monitor._thread.is_alive()


def test_each_evaluation_waits_on_its_own_monitor_keys(one_rank_group, monkeypatch):
    first, _ = _monitor_of_two(monkeypatch, lambda elapsed, store: None)
    first.store.set("done/1", "1")
    first.wait_for_all()
    first.close()
    second = D.RankMonitor(D.next_monitor_tag())
    second.close()
    assert second.prefix != first.prefix
    assert not second.store.check(["done/1"])  # rank 1 finished the first evaluation, not this one


def test_fault_injection_spec_is_validated(monkeypatch):
    for bad in ("one", "1:boom", "-1"):
        monkeypatch.setenv(FAULT_ENV, bad)
        with pytest.raises(SimpoolBenchError, match=f"{FAULT_ENV}="):
            D.fault_after_shard(0)
    monkeypatch.setenv(FAULT_ENV, "1:exit")
    assert D.fault_after_shard(0) is None  # another rank's fault


# Two real ranks (gloo) in two processes: uneven shares for all_gather_indexed, and disagreeing work.
TWO_RANKS = """
import json, torch
from simpool_bench.engine import all_gather_indexed, dist_rank, init_distributed
from simpool_bench.engine.distributed import check_same_work
from simpool_bench.errors import SimpoolBenchError
assert init_distributed(60)
rank = dist_rank()
mine = {0: [9, 0, 4, 2, 7], 1: [8, 1, 3]}[rank]
values = torch.tensor([[p, 10 * p + 0.5] for p in mine], dtype=torch.float64)
index, gathered = all_gather_indexed(torch.tensor(mine), values)
out = {"index": index.tolist(), "values": gathered.tolist(), "dtype": str(gathered.dtype)}
try:
    check_same_work(11 + rank, 4)
except SimpoolBenchError as err:
    out["mismatch"] = str(err)
check_same_work(11, 4)
print(json.dumps(out))
"""


def test_two_ranks_gather_uneven_shares_by_index_and_must_agree_on_the_work():
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_RANKS],
            env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    res = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    everyone = sorted([9, 0, 4, 2, 7, 8, 1, 3])
    for r in res:
        assert r["index"] == everyone
        assert r["values"] == [[p, 10 * p + 0.5] for p in everyone]
        assert r["dtype"] == "torch.float64"
    tail = ": every rank must read the same data with the same --shard-size"
    assert res[0]["mismatch"] == "rank 1 sees 12 images in 4 shards, rank 0 sees 11 in 4" + tail
    assert res[1]["mismatch"] == "rank 0 sees 11 images in 4 shards, rank 1 sees 12 in 4" + tail
