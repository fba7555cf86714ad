"""Sharding, batching and the resume store of the inference engine."""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import replace

import pytest
import torch

from simpool_bench.engine import ShardStore, bucket_batches, chunk_batches, collate_with_failures, make_shards, my_shards, resolve_device
from simpool_bench.errors import SimpoolBenchError


def test_shards_cover_every_index_once_for_any_world_size():
    for n in (0, 1, 7, 100, 101):
        shards = make_shards(n, 8)
        for world in (1, 2, 3):
            seen = [i for r in range(world) for _, s in my_shards(shards, r, world) for i in s]
            assert sorted(seen) == list(range(n))
    assert make_shards(3, 1) == [range(0, 1), range(1, 2), range(2, 3)]  # one image a shard: the finest resume


def test_bucket_batches_group_equal_keys_only():
    keys = [(32, 48), (48, 32), (32, 48), (32, 48), (48, 32), (16, 16)]
    batches = bucket_batches(range(6), keys, batch_size=2)
    assert batches == [[0, 2], [3], [1, 4], [5]]
    assert chunk_batches(range(5), 2) == [[0, 1], [2, 3], [4]]


def test_collate_replaces_failed_images_with_zeros_of_batch_shape():
    a, b = torch.ones(3, 4, 4), torch.ones(3, 1, 1)
    imgs, idx, ok = collate_with_failures([(a, 5, True), (b, 6, False)])
    assert imgs.shape == (2, 3, 4, 4)
    assert torch.equal(imgs[1], torch.zeros(3, 4, 4))
    assert idx.tolist() == [5, 6] and ok.tolist() == [True, False]


def test_collate_takes_the_batch_shape_from_a_decoded_image_when_the_first_failed():
    """A failed image first in the batch (its placeholder 1x1: size unknown or over --max-pixels)
    neither sets the batch's shape nor zeroes the decoded images after it."""
    a, b = torch.rand(3, 4, 4), torch.ones(3, 1, 1)
    imgs, idx, ok = collate_with_failures([(b, 0, False), (a, 1, True), (2 * a, 2, True)])
    assert imgs.shape == (3, 3, 4, 4)
    assert torch.equal(imgs[0], torch.zeros(3, 4, 4))
    assert torch.equal(imgs[1], a) and torch.equal(imgs[2], 2 * a)
    assert ok.tolist() == [False, True, True]


def test_collate_refuses_decoded_images_of_different_shapes():
    """A decoded image is never replaced by zeros and counted as evaluated: images of another shape
    in one batch (a record size that is not its file's, under size buckets) are an error."""
    a, c = torch.ones(3, 4, 4), torch.ones(3, 4, 8)
    with pytest.raises(SimpoolBenchError, match=r"image #7 .*\(3, 4, 8\).*\(3, 4, 4\)"):
        collate_with_failures([(a, 6, True), (c, 7, True)])


class _Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return torch.full((3, 5, 7), float(i)), i, i != 2


def _collate_in_worker(items):
    """collate_with_failures, and whether its images were stacked straight into shared memory."""
    imgs, idx, ok = collate_with_failures(items)
    return imgs, idx, ok, imgs.is_shared()


def test_collate_stacks_into_shared_memory_in_a_worker_only():
    """In a DataLoader worker the batch is stacked straight into shared memory (no second copy to
    send it); in the main process it is an ordinary tensor; the values are the same either way."""
    worker = next(iter(torch.utils.data.DataLoader(_Items(), batch_size=4, num_workers=1, collate_fn=_collate_in_worker)))
    main = _collate_in_worker([_Items()[i] for i in range(4)])
    assert worker[3] is True and main[3] is False
    for got, want in zip(worker[:3], main[:3]):
        assert torch.equal(got, want)
    assert torch.equal(main[0][2], torch.zeros(3, 5, 7)) and main[2].tolist() == [True, True, False, True]


def test_shard_store_round_trip_and_corruption(tmp_path):
    store = ShardStore(tmp_path, "key")
    store.save(3, {"states": {"a": {"x": torch.arange(4)}}})
    assert torch.equal(store.load(3)["states"]["a"]["x"], torch.arange(4))
    assert store.load(4) is None
    path = tmp_path / "key" / "shard_000003.pt"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.load(3) is None  # checksum mismatch: recomputed, never trusted


def test_shard_store_refuses_a_shard_file_under_another_shard_id_or_run_key(tmp_path):
    """A shard file (with its own, valid checksum) copied to another shard's name, or into another
    run's folder, is 'foreign': merging it would count its images twice or count another run's."""
    import shutil

    store = ShardStore(tmp_path, "key")
    store.save(3, {"states": {"a": {"x": torch.arange(4)}}})
    for suffix in (".pt", ".sha256"):
        shutil.copy(tmp_path / "key" / f"shard_000003{suffix}", tmp_path / "key" / f"shard_000004{suffix}")
    assert store.status(3)[0] == "ok"
    assert store.status(4) == ("foreign", None)
    other = ShardStore(tmp_path, "other")
    for suffix in (".pt", ".sha256"):
        shutil.copy(tmp_path / "key" / f"shard_000003{suffix}", tmp_path / "other" / f"shard_000003{suffix}")
    assert other.status(3) == ("foreign", None)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SimpoolBenchError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_engine_times_its_metric_steps_within_the_loop():
    import time

    from simpool_bench.engine import EngineConfig, evaluate

    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((3, 4, 4), float(i)), i, True

    res = evaluate(
        torch.nn.Identity(), Tiny(), dict, lambda batch, accs: time.sleep(0.05), EngineConfig(device="cpu", batch_size=2, progress=False)
    )
    extras = res.extras
    assert extras["step_s"] >= 3 * 0.05  # three batches, each step sleeps 50 ms
    assert extras["loop_s"] >= extras["step_s"] + extras["data_wait_s"]


class _SignalsDecoding(torch.utils.data.Dataset):
    """Eight tiny images; decoding any of them sets ``started`` (a multiprocessing event)."""

    def __init__(self, started) -> None:
        self.started = started

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        self.started.set()
        return torch.full((3, 4, 4), float(i)), i, True


def test_metrics_warm_up_once_while_the_workers_decode_and_not_when_all_is_resumed(tmp_path):
    """``Accumulator.warm_up`` runs once per run, after the workers started decoding and before the
    first metric step; a run with nothing left to compute does not call it."""
    from simpool_bench.engine import EngineConfig, evaluate
    from simpool_bench.metrics.base import Accumulator

    started = multiprocessing.Event()
    log: list[tuple] = []

    class Spy(Accumulator):
        def __init__(self) -> None:
            super().__init__()
            self.add_state("n", torch.zeros((), dtype=torch.int64))

        def warm_up(self) -> None:  # did a worker decode while the main process had not asked for a batch?
            log.append(("warm_up", started.wait(timeout=120)))

        def update(self, k: int) -> None:
            self.n += k

        def compute(self) -> int:
            return int(self.n)

    def step(batch, accs) -> None:
        log.append(("step", len(batch.indices)))
        accs["spy"].update(len(batch.indices))

    config = EngineConfig(device="cpu", batch_size=3, workers=2, shard_size=4, resume_dir=tmp_path, progress=False)
    res = evaluate(torch.nn.Identity(), _SignalsDecoding(started), lambda: {"spy": Spy()}, step, config, key="k")
    assert log[0] == ("warm_up", True)
    assert [e[0] for e in log[1:]] == ["step"] * 4 and sum(e[1] for e in log[1:]) == 8  # batches 3+1, 3+1
    assert res.accumulators["spy"].compute() == 8
    assert 0 <= res.extras["warm_up_s"] <= res.extras["loop_s"]
    log.clear()
    res = evaluate(torch.nn.Identity(), _SignalsDecoding(started), lambda: {"spy": Spy()}, step, config, key="k")
    assert res.shards_resumed == 2 and log == [] and res.accumulators["spy"].compute() == 8


class _WarmUpSpy:
    """An accumulator factory whose ``warm_up`` runs ``body`` and logs which thread ran it."""

    def __init__(self, body) -> None:
        from simpool_bench.metrics.base import Accumulator

        log: list[tuple] = []
        self.log = log

        class Spy(Accumulator):
            def __init__(self) -> None:
                super().__init__()
                self.add_state("n", torch.zeros((), dtype=torch.int64))

            def warm_up(self) -> None:
                log.append(("warm_up", threading.current_thread() is threading.main_thread()))
                body()
                log.append(("warmed", None))

            def update(self, k: int) -> None:
                log.append(("step", k))
                self.n += k

            def compute(self) -> int:
                return int(self.n)

        self.spy_type = Spy

    def __call__(self) -> dict:
        return {"spy": self.spy_type()}


def test_metrics_warm_up_runs_beside_the_forward_passes_and_the_first_step_waits_for_it():
    """The warm-up runs in a thread of its own while the main thread takes batches and runs their
    forward passes (here it waits for the second forward pass, which in line would never come);
    no metric step runs before it has finished, and ``warm_up_s`` is the time the loop waited."""
    from simpool_bench.engine import EngineConfig, evaluate

    second_forward = threading.Event()
    calls: list[int] = []

    def body() -> None:
        assert second_forward.wait(timeout=60), "the forward passes did not run while the kernels loaded"
        time.sleep(0.3)

    def forward(model, x, idx):
        calls.append(len(idx))
        if len(calls) == 2:
            second_forward.set()
        return x

    spy = _WarmUpSpy(body)
    res = evaluate(
        torch.nn.Identity(),
        _SignalsDecoding(multiprocessing.Event()),
        spy,
        lambda b, a: a["spy"].update(len(b.indices)),
        EngineConfig(device="cpu", batch_size=3, workers=0, progress=False),
        forward=forward,
    )
    assert spy.log[:2] == [("warm_up", False), ("warmed", None)]  # not the main thread; done before any step
    assert spy.log[2:] == [("step", 3), ("step", 3), ("step", 2)]
    assert res.accumulators["spy"].compute() == 8
    assert 0.25 <= res.extras["warm_up_s"] <= res.extras["loop_s"]  # the first step waited for the sleep


def test_an_error_in_the_metrics_warm_up_stops_the_run_before_any_step():
    """What the warm-up raises (e.g. a kernel that does not load) is raised by ``evaluate`` itself,
    before any metric step; a user's mistake stays a one-line ``SimpoolBenchError``."""
    from simpool_bench.engine import EngineConfig, evaluate

    def body() -> None:
        raise SimpoolBenchError("the kernels did not load")

    spy = _WarmUpSpy(body)
    with pytest.raises(SimpoolBenchError, match="the kernels did not load"):
        evaluate(
            torch.nn.Identity(),
            _SignalsDecoding(multiprocessing.Event()),
            spy,
            lambda b, a: a["spy"].update(len(b.indices)),
            EngineConfig(device="cpu", batch_size=3, workers=0, progress=False),
        )
    assert spy.log == [("warm_up", False)]


class _DecodeFails(torch.utils.data.Dataset):
    """64 tiny images; decoding item ``bad`` raises (a dataset bug, not a failed image)."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int):
        if i == self.bad:
            raise ValueError(f"item {i} is broken")
        return torch.zeros(3, 4, 4), i, True


def _raise(error: BaseException):
    def fail(*args) -> None:
        raise error

    return fail


@pytest.mark.parametrize("where", ["a metric step", "Ctrl-C in a forward pass", "a worker's decoding"])
def test_a_run_that_stops_on_an_error_stops_its_decoding_workers_while_the_error_is_kept(where):
    """An error (or Ctrl-C) in the loop stops the decoding workers at once, though the error, kept
    as an interactive session keeps the last one, still holds the loop's frames."""
    from simpool_bench.engine import EngineConfig, evaluate

    before = {p.pid for p in multiprocessing.active_children()}
    step, forward, bad = (lambda b, a: None), None, -1
    if where == "a metric step":
        step, error = _raise(RuntimeError("boom")), RuntimeError
    elif where == "Ctrl-C in a forward pass":
        forward, error = _raise(KeyboardInterrupt()), KeyboardInterrupt
    else:
        bad, error = 9, ValueError
    config = EngineConfig(device="cpu", batch_size=4, workers=2, progress=False)
    with pytest.raises(error) as kept:
        evaluate(torch.nn.Identity(), _DecodeFails(bad), dict, step, config, forward=forward)
    assert kept.tb is not None  # the traceback, and with it the loop's frames, is still held
    alive = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert alive == []


class _Indexed(torch.utils.data.Dataset):
    """Item ``i`` is the one-value image ``[i]``; its records give ``evaluate`` a derived resume key."""

    def __init__(self, n: int) -> None:
        from pathlib import Path

        from simpool_bench.data.records import Record

        self.records = [Record(f"img{i}", Path(f"/nonexistent/img{i}.jpg")) for i in range(n)]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        return torch.tensor([float(i)]), i, True


def _seen_counts(n: int):
    """Accumulators counting how many times each dataset index was seen, and the engine step."""
    from simpool_bench.metrics.base import Accumulator

    class Seen(Accumulator):
        def __init__(self) -> None:
            super().__init__()
            self.add_state("counts", torch.zeros(n, dtype=torch.int64))

        def update(self, index) -> None:
            self.counts = self.counts + torch.bincount(torch.as_tensor(index), minlength=n)

        def compute(self) -> list[int]:
            return self.counts.tolist()

    def step(batch, accs) -> None:
        accs["seen"].update(batch.indices)

    return (lambda: {"seen": Seen()}), step


@pytest.mark.parametrize("key", [None, "given-key"])
def test_a_stored_shard_of_another_order_is_never_merged(tmp_path, monkeypatch, key):
    """Shards are chunks of ``order``: under another order shard 0 holds other images, so a shard
    stored under one order is not reused under another (with a given key or the derived one). A
    partial run under order A then a run under order B counts every image exactly once."""
    from simpool_bench import runkey
    from simpool_bench.engine import EngineConfig, evaluate

    monkeypatch.setattr(runkey, "code_version", lambda: "this code")  # (its timm import costs seconds alone)
    n = 6
    make, step = _seen_counts(n)
    config = EngineConfig(device="cpu", batch_size=2, shard_size=2, resume_dir=tmp_path, progress=False)
    first = evaluate(torch.nn.Identity(), _Indexed(n), make, step, config, key=key, order=[0, 1, 2, 3, 4, 5])
    assert first.accumulators["seen"].compute() == [1] * n
    for folder in [d for d in tmp_path.iterdir() if d.is_dir()]:  # keep only shard 0 (images 0, 1) of order A
        for f in folder.glob("shard_00000[12].*"):
            f.unlink()
    second = evaluate(torch.nn.Identity(), _Indexed(n), make, step, config, key=key, order=[5, 4, 3, 2, 1, 0])
    assert second.shards_resumed == 0
    assert second.accumulators["seen"].compute() == [1] * n
    again = evaluate(torch.nn.Identity(), _Indexed(n), make, step, config, key=key, order=[5, 4, 3, 2, 1, 0])
    assert again.shards_resumed == 3 and again.accumulators["seen"].compute() == [1] * n


class _OneFails(_Indexed):
    """``_Indexed`` whose image 3 does not decode."""

    def __getitem__(self, i: int):
        return torch.tensor([float(i)]), i, i != 3


def test_a_rerun_reuses_a_shard_that_counted_an_undecodable_image_unless_strict(tmp_path):
    """Without --strict a finished shard that skipped an undecodable image is final: the rerun reuses
    it (the failure still counted); only --strict computes it again (and fails on the image)."""
    from simpool_bench.engine import EngineConfig, evaluate

    n = 6
    make, step = _seen_counts(n)
    config = EngineConfig(device="cpu", batch_size=2, shard_size=2, resume_dir=tmp_path, progress=False)
    for resumed in (0, 3):
        res = evaluate(torch.nn.Identity(), _OneFails(n), make, step, config, key="k")
        assert (res.shards_resumed, res.n_failed, res.n_images) == (resumed, 1, n - 1)
    with pytest.raises(SimpoolBenchError, match="--strict"):
        evaluate(torch.nn.Identity(), _OneFails(n), make, step, replace(config, strict=True), key="k")


def test_a_stored_shard_of_other_accumulators_is_recomputed(tmp_path):
    """A stored shard (same key) whose accumulators are not this run's (another protocol under a
    reused --resume key) is foreign: computed again, never half loaded."""
    from simpool_bench.engine import EngineConfig, evaluate

    n = 4
    make, step = _seen_counts(n)
    config = EngineConfig(device="cpu", batch_size=2, shard_size=2, resume_dir=tmp_path, progress=False)
    evaluate(torch.nn.Identity(), _Indexed(n), make, step, config, key="k")

    def make_two():
        return {**make(), "again": make()["seen"]}

    def step_two(batch, accs) -> None:
        accs["seen"].update(batch.indices)
        accs["again"].update(batch.indices)

    res = evaluate(torch.nn.Identity(), _Indexed(n), make_two, step_two, config, key="k")
    assert res.shards_resumed == 0
    assert res.accumulators["seen"].compute() == res.accumulators["again"].compute() == [1] * n


class _OneWider(_Indexed):
    """``_Indexed`` whose image 2 decodes to another shape than the rest of its batch."""

    def __getitem__(self, i: int):
        return torch.full((2 if i == 2 else 1,), float(i)), i, True


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_of_another_shape_in_its_batch_is_named_by_its_file(workers):
    """In the main process or a decoding worker, the error names the record's file, in one line."""
    from simpool_bench.engine import EngineConfig, evaluate
    from simpool_bench.errors import one_line

    make, step = _seen_counts(4)
    config = EngineConfig(device="cpu", batch_size=4, workers=workers, progress=False)
    with pytest.raises(SimpoolBenchError) as err:
        evaluate(torch.nn.Identity(), _OneWider(4), make, step, config)
    assert one_line(err.value).startswith("image /nonexistent/img2.jpg decoded to shape (2,), another image of its batch to (1,)")


@pytest.mark.parametrize("workers", [0, 2])
def test_failed_images_are_named_up_to_ten_then_counted_in_one_line(tmp_path, capfd, workers):
    """13 files that do not decode among 16: the main process names the first 10 (why each failed,
    read again from its file) and ends with one line counting the other 3; the decoding workers
    print nothing of their own (before, each printed a line per image: 120 lines for 120 images)."""
    import warnings

    from PIL import Image

    from simpool_bench.data.images import ImageDataset
    from simpool_bench.data.records import Record
    from simpool_bench.engine import EngineConfig, evaluate
    from simpool_bench.registry import NAMED_FAILURES

    records = []
    for i in range(16):
        path = tmp_path / f"img{i:02d}.png"
        if i in (0, 7, 12):
            Image.new("RGB", (5, 4), (i, 0, 0)).save(path)
        else:
            path.write_bytes(b"not an image %d" % i)
        records.append(Record(path.name, path, 0, 5, 4))
    make, step = _seen_counts(16)
    config = EngineConfig(device="cpu", batch_size=4, workers=workers, progress=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = evaluate(torch.nn.Identity(), ImageDataset(records, None), make, step, config, failures_listed="the list marks them")
    assert (res.n_failed, res.n_images) == (13, 3)
    lines = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
    assert NAMED_FAILURES == 10 and len(lines) == 11
    broken = [r.path for i, r in enumerate(records) if i not in (0, 7, 12)]
    for line, path in zip(lines[:10], broken[:10]):
        assert line.startswith(f"cannot decode image {path}") and line.endswith("; counted as failed and skipped")
    counted = "3 more images failed to decode or were refused, 13 in all: counted as failed and skipped (only the first 10 are named"
    assert lines[10] == counted + "; the list marks them)"
    assert "counted as failed" not in capfd.readouterr().err  # nothing from the workers
    broken_only = [r for i, r in enumerate(records) if i not in (0, 7, 12)]
    for dataset, listed in ((ImageDataset(broken_only, None), "the list marks them"), (ImageDataset(records, None), None)):
        with warnings.catch_warnings(record=True) as seen:  # none decodes (the run ends in an error, listing none), or no list
            warnings.simplefilter("always")
            evaluate(torch.nn.Identity(), dataset, make, step, config, failures_listed=listed)
        lines = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
        assert len(lines) == 11 and lines[10] == counted + ")"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(torch.nn.Identity(), ImageDataset(records, None, warn=False), make, step, config)
    assert [w for w in seen if issubclass(w.category, RuntimeWarning)] == []  # a dataset built not to warn stays silent
