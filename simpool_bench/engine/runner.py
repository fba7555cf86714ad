"""The evaluation loop: ``evaluate`` runs a model over a dataset shard by shard (``EvalRunner``).

``EvalRunner`` does it in four steps: ``plan`` (device, shards of this rank, the resume store),
``resume`` (load finished shards, list the rest), ``loop`` (decode, forward, metric step) and
``merge`` (sum the accumulators over the ranks). Images are decoded by DataLoader workers into
pinned memory and copied to the device asynchronously (off the CPU as uint8 where the transform
allows, normalised there: ``data.normalize``); on a GPU, batch ``i``'s outputs are copied
back (non-blocking) while batch ``i + 1`` runs, so the metric updates on the host overlap the next
forward pass (one host sync per batch, never per image).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from ..errors import SimpoolBenchError
from ..metrics.base import Accumulator
from ..registry import NAMED_FAILURES
from ..workers import usable_workers
from .batching import Batch, FailureCounter, ListBatchSampler, chunk_batches, collate_with_failures, to_host
from .config import EngineConfig, autocast, resolve_device
from .distributed import RankMonitor, check_same_work, collective, dist_rank, dist_world, fault_after_shard, first_line, next_monitor_tag
from .shards import ShardStore, make_shards, my_shards, recompute_notice, stale_notice

if TYPE_CHECKING:
    from ..console import ProgressLike

#: Fraction of the loop's time spent waiting for decoded images above which a hint is printed.
DATA_BOUND_HINT = 0.5

Forward = Callable[[torch.nn.Module, torch.Tensor, np.ndarray], Any]
Step = Callable[[Batch, dict[str, Accumulator]], None]


@dataclass
class EvalResult:
    """What ``evaluate`` returns: merged accumulators plus bookkeeping.

    ``extras``: ``data_wait_s`` (this rank's time blocked on image decoding), ``step_s`` (in the
    metric steps), ``warm_up_s`` (waiting for the metrics' ``warm_up``, which runs in a thread while
    the first images decode and the first batches go forward),
    ``loop_s`` (this rank's time in the batch loop, all three included) and ``images_per_s``
    (this rank's computed images / loop_s)."""

    accumulators: dict[str, Accumulator]
    n_images: int
    n_failed: int
    shards_total: int
    shards_resumed: int
    extras: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- the loop
_OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate")


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _OOM_MARKERS)


def _oom_error(batch_size: int, device: torch.device, err: BaseException) -> SimpoolBenchError:
    if batch_size > 1:
        hint = f"try --batch-size {max(1, batch_size // 2)}"
    else:
        hint = "even one image does not fit: use another device, a smaller input or --amp bf16"
    return SimpoolBenchError(f"--batch-size {batch_size} does not fit in the memory of {device}; {hint} ({first_line(err, 120)})")


def _size(dataset: Dataset) -> int:
    """Items in a map-style dataset (``Dataset`` itself declares no ``__len__``)."""
    return len(cast(Sized, dataset))


def _describe(dataset: Dataset, i: int) -> str:
    """The file behind item ``i`` (``dataset.describe(i)`` or ``dataset.records[i].path``), else its index."""
    describe = getattr(dataset, "describe", None)
    if callable(describe):
        return str(describe(i))
    records = getattr(dataset, "records", None)
    if records is not None and hasattr(records[i], "path"):
        return str(records[i].path)
    return f"#{i}"


def _without_own_warnings(dataset: Dataset) -> Dataset:
    """The dataset without its own warning per failed image (``ImageDataset.warn``, printed by each
    worker): the runner names failures itself, the first ``NAMED_FAILURES`` of them."""
    if getattr(dataset, "warn", None) is True:
        dataset = copy.copy(dataset)
        dataset.warn = False  # type: ignore[attr-defined]
    return dataset


def _progress(enabled: bool, total: int, description: str) -> ProgressLike | None:
    """The loop's progress (``console.start_progress``: a bar, plain lines in logs, nothing under --quiet)."""
    if not enabled:
        return None
    from ..console import start_progress

    return start_progress(description, total, "images")


class EvalRunner:
    """One evaluation: ``plan`` -> ``resume`` -> ``loop`` -> ``merge`` (``run`` does all four).

    Arguments as ``evaluate``'s. The state between steps lives on the object: the device and the
    model on it, this rank's shards and resume store (``plan``), the merged totals and the batches
    still to compute (``resume``), the time spent (``loop``)."""

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Dataset,
        make_accumulators: Callable[[], dict[str, Accumulator]],
        step: Step,
        config: EngineConfig,
        forward: Forward | None = None,
        batches_for: Callable[[Sequence[int]], list[list[int]]] | None = None,
        key: str | None = None,
        description: str = "evaluating",
        params: dict[str, Any] | None = None,
        order: Sequence[int] | None = None,
        failures_listed: str | None = None,
    ) -> None:
        self.model, self.dataset, self.config = model, dataset, config
        self.make_accumulators, self.step = make_accumulators, step
        self.forward: Forward = forward or (lambda m, x, idx: m(x))
        self.batches_for = batches_for or (lambda r: chunk_batches(r, config.batch_size))
        self.key, self.description, self.params, self.order = key, description, params, order
        self.failures_listed = failures_listed
        self.rank, self.world = dist_rank(), dist_world()
        self.store: ShardStore | None = None
        self.resumed = 0
        self.wait_s = self.loop_s = self.step_s = self.warm_up_s = 0.0
        self.prog: Any = None
        self.on_device: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.monitor: RankMonitor | None = None
        self.n_named = self.n_unnamed = 0

    def run(self) -> EvalResult:
        """Evaluate: the accumulators merged over every shard (and every rank), and counts."""
        self.plan()
        self.resume()
        self.loop()
        return self.merge()

    def fresh(self) -> dict[str, Accumulator]:
        """A new, empty set of accumulators (one per shard), with the count of failed images."""
        accs = self.make_accumulators()
        accs["_failed"] = FailureCounter()
        return accs

    # ----------------------------------------------------------------------------------- plan
    def plan(self) -> None:
        """Put the model on its device, cut the dataset into shards, pick this rank's, open the store."""
        config = self.config
        self.device = resolve_device(config.device)
        autocast(self.device, config.amp)  # validates --amp before any work
        model = self.model.to(self.device).eval()
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.runner = cast(torch.nn.Module, torch.compile(model)) if config.compile else model  # compile wraps a Module in a Module
        self.shards = make_shards(_size(self.dataset), config.shard_size, self.order)
        if self.world > 1:
            check_same_work(_size(self.dataset), len(self.shards))
        self.mine = my_shards(self.shards, self.rank, self.world)
        if config.resume_dir is not None:
            self.store = ShardStore(config.resume_dir, self._run_key())

    def _run_key(self) -> str:
        """The resume key: the given one (under another order, a key of both), else derived."""
        # another order makes other shards: keep their resume stores apart
        order_id = None if self.order is None else hashlib.sha256(repr(list(self.order)).encode()).hexdigest()
        if self.key is not None:
            if order_id is None:
                return self.key
            return hashlib.sha256(f"{self.key} order {order_id}".encode()).hexdigest()[:24]
        from ..runkey import resume_key

        if not hasattr(self.dataset, "records"):
            raise ValueError("evaluate: resume needs a key for a dataset without records")
        config = self.config
        return resume_key(
            self.description,
            self.model,
            self.dataset.records,
            getattr(self.dataset, "transform", None),
            {**(self.params or {}), "max_pixels": config.max_pixels, "order": order_id},
            amp=config.amp,
            shard_size=config.shard_size,
            device=self.device.type,
        )

    # ----------------------------------------------------------------------------------- resume
    def resume(self) -> None:
        """Merge the stored shards that are good into the totals; plan batches for the others (under
        ``strict``, also for a stored shard that counted an undecodable image: it fails the run)."""
        self.total = self.fresh()
        todo: list[tuple[int, Sequence[int]]] = []
        bad = {"foreign": 0, "corrupt": 0}
        for sid, rng in self.mine:
            state, saved = self.store.status(sid) if self.store else ("missing", None)
            if state in bad:
                bad[state] += 1
            if saved is None:
                todo.append((sid, rng))
                continue
            part = self.fresh()
            if not isinstance(saved.get("states"), dict) or set(saved["states"]) != set(part):
                bad["foreign"] += 1
                todo.append((sid, rng))
                continue
            for name, acc in part.items():
                acc.load_state_dict(saved["states"][name])
            if self.config.strict and part["_failed"].compute():  # its undecodable image fails the run, as computed now
                todo.append((sid, rng))
                continue
            for name, acc in part.items():
                self.total[name].merge(acc)
            self.resumed += 1
        if self.store is not None:
            recompute_notice(self.store, bad, len(self.mine))
            others = 0 if self.resumed or any(bad.values()) else self.store.others()
            if others:
                stale_notice(self.store, others, len(self.mine))
        self.batch_plan: list[tuple[int, list[int]]] = [(sid, b) for sid, rng in todo for b in self.batches_for(rng)]
        self.last_batch_of = {sid: i for i, (sid, _) in enumerate(self.batch_plan)}
        self.n_todo = sum(len(b) for _, b in self.batch_plan)

    # ----------------------------------------------------------------------------------- loop
    def loop(self) -> None:
        """Compute the planned batches (decode, forward, metric step), saving each finished shard."""
        config = self.config
        self.cuda = self.device.type == "cuda"
        # 0 where workers cannot start; never more than there are batches (a worker without one only starts and stops)
        workers = usable_workers(min(config.workers, len(self.batch_plan))) if self.n_todo > 0 else 0
        dataset, self.on_device = self._hand_over()
        loader = DataLoader(
            dataset,
            batch_sampler=ListBatchSampler([b for _, b in self.batch_plan]),
            num_workers=workers,
            collate_fn=functools.partial(collate_with_failures, describe=functools.partial(_describe, self.dataset)),
            pin_memory=self.cuda,
            persistent_workers=False,
            prefetch_factor=2 if workers > 0 else None,  # in flight: 2 batches per worker (PyTorch's default)
        )
        self.prog = _progress(config.progress and self.rank == 0 and self.n_todo > 0, self.n_todo, self.description)
        self.part = self.fresh()
        self.faulted = False
        if self.world > 1:
            self.monitor = RankMonitor(next_monitor_tag())
        try:
            self._run_batches(loader)
            if self.prog is not None:
                self.prog.stop()
                self.prog = None
            if self.monitor is not None:
                self.monitor.wait_for_all()
        finally:
            if self.prog is not None:
                self.prog.stop()
            if self.monitor is not None:
                self.monitor.close()
        self._unnamed_failures_warning()
        self._data_bound_hint()

    def _hand_over(self) -> tuple[Dataset, Callable[[torch.Tensor], torch.Tensor] | None]:
        """What the workers hand over: uint8 images and the device step that normalises them, where
        the dataset offers it (``normalize_on_device``; by default off the CPU); else the dataset's
        own tensors."""
        wanted = self.config.normalize_on_device
        if wanted is None:
            wanted = self.device.type != "cpu"
        split = getattr(self.dataset, "deferred_normalize", None)
        got = split() if wanted and callable(split) else None
        dataset, on_device = (self.dataset, None) if got is None else got
        return _without_own_warnings(dataset), on_device

    def _run_batches(self, loader: DataLoader) -> None:
        """The batch loop (``_compute``) over the loader's batches; its workers stop when it ends."""
        t_start = time.perf_counter()
        batches = iter(loader)  # the workers start decoding the first batches now
        try:
            self._compute(batches)
            self.loop_s = time.perf_counter() - t_start
        finally:
            _stop_workers(batches)

    def _compute(self, batches: Iterator) -> None:
        """Decode, forward, metric step; on a GPU, batch ``i``'s step runs while batch ``i + 1`` is computed."""
        pending: tuple | None = None
        # while the workers decode, in a thread, the metrics load what their first update needs
        warming = _WarmUp(list(self.part.values())) if self.batch_plan else None
        for i in range(len(self.batch_plan)):
            t0 = time.perf_counter()
            images, idx, ok = next(batches)
            self.wait_s += time.perf_counter() - t0
            self._check_strict(idx, ok)
            self._name_failures(idx, ok)
            images, output = self._forward_batch(images, idx)
            ready = None
            if self.cuda:
                ready = torch.cuda.Event()
                ready.record()
            if pending is not None:
                self._await(warming)
                self._finish(*pending)
            pending = (i, idx, ok, images, output, ready)
        if pending is not None:
            self._await(warming)
            self._finish(*pending)

    def _await(self, warming: _WarmUp | None) -> None:
        """Before a metric step: the metrics' warm-up done (the time waited for it, ``warm_up_s``)."""
        if warming is not None and not warming.done:
            self.warm_up_s += warming.wait()

    def _check_strict(self, idx: torch.Tensor, ok: torch.Tensor) -> None:
        """Under ``strict``, an image that did not decode stops the run."""
        if self.config.strict and not bool(ok.all()):
            why = self._why_failed(int(idx[~ok][0]))
            raise SimpoolBenchError(f"{why} (--strict fails on it; without it, it is skipped and counted)")

    def _why_failed(self, i: int) -> str:
        """Why item ``i`` did not decode: ``dataset.failure(i)`` (its file read again), else its file named."""
        failure = getattr(self.dataset, "failure", None)
        return failure(i) if callable(failure) else f"image {_describe(self.dataset, i)} does not decode"

    def _name_failures(self, idx: torch.Tensor, ok: torch.Tensor) -> None:
        """One warning per image that did not decode, for the first ``NAMED_FAILURES`` of the run;
        the others are counted (``_unnamed_failures_warning`` says how many at the end). A dataset
        built not to warn (``ImageDataset(warn=False)``) stays silent."""
        if bool(ok.all()) or getattr(self.dataset, "warn", True) is False:
            return
        for bad in idx[~ok].tolist():
            if self.n_named >= NAMED_FAILURES:
                self.n_unnamed += 1
                continue
            warnings.warn(f"{self._why_failed(bad)}; counted as failed and skipped", RuntimeWarning, stacklevel=2)
            self.n_named += 1

    def _unnamed_failures_warning(self) -> None:
        """One line counting the failures not named; it says where every one is listed
        (``failures_listed``) unless every image of the run failed (such a run ends in an error and
        lists none)."""
        if not self.n_unnamed:
            return
        failed = self.n_named + self.n_unnamed
        every_one = failed == self.n_todo and not self.resumed and self.world == 1
        listed = f"; {self.failures_listed}" if self.failures_listed and not every_one else ""
        warnings.warn(
            f"{self.n_unnamed} more images failed to decode or were refused, {failed} in all: "
            f"counted as failed and skipped (only the first {NAMED_FAILURES} are named{listed})",
            RuntimeWarning,
            stacklevel=2,
        )

    def _forward_batch(self, images: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The batch on the device and the model's output (host copies); running out of memory is a hint."""
        config = self.config
        try:
            images = images.to(self.device, non_blocking=True)
            if self.on_device is not None:
                images = self.on_device(images)
            if config.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(self.device, config.amp):
                output = self.forward(self.runner, images, idx.numpy())
            return images, to_host(output)
        except SimpoolBenchError:
            raise
        except (RuntimeError, MemoryError) as err:
            if _is_oom(err):
                raise _oom_error(config.batch_size, self.device, err) from None
            raise

    def _finish(self, i: int, idx: torch.Tensor, ok: torch.Tensor, images: torch.Tensor, output: Any, ready: Any) -> None:
        """Metric updates of batch ``i`` (its outputs are host copies; ``ready`` their CUDA event)."""
        if ready is not None:
            ready.synchronize()
        part = self.part
        t0 = time.perf_counter()
        self.step(Batch(idx.numpy(), ok.numpy(), images, output), {k: a for k, a in part.items() if k != "_failed"})
        self.step_s += time.perf_counter() - t0
        part["_failed"].update(ok.numpy())
        if self.prog is not None:
            self.prog.advance(self.prog.task_ids[0], len(idx))
        if self.monitor is not None:
            self.monitor.progress()
        sid = self.batch_plan[i][0]
        if self.last_batch_of[sid] == i:
            if self.store is not None:
                self.store.save(sid, {"states": {n: a.state_dict() for n, a in part.items()}})
            for name, acc in part.items():
                self.total[name].merge(acc)
            self.part = self.fresh()
            if not self.faulted:
                self.faulted = True
                fault_after_shard(self.rank)

    def _data_bound_hint(self) -> None:
        """One line when most of the loop waited for decoded images."""
        config, wait_s, loop_s = self.config, self.wait_s, self.loop_s
        if config.progress and self.rank == 0 and self.n_todo >= 4 * config.batch_size and wait_s > DATA_BOUND_HINT * loop_s:
            from ..console import note

            note(
                f"note: {100 * wait_s / loop_s:.0f}% of the time went to decoding images; "
                f"more --workers (now {config.workers}) would be faster"
            )

    # ----------------------------------------------------------------------------------- merge
    def merge(self) -> EvalResult:
        """Sum the totals (and the resumed count) over the ranks; the result with its extras."""
        total = self.total
        if self.world > 1:
            for acc in total.values():
                collective("merging the results", acc.sync)
            counts = torch.tensor([self.resumed], dtype=torch.int64)
            collective("merging the results", lambda: dist.all_reduce(counts))
            self.resumed = int(counts[0])
        n_failed = total.pop("_failed").compute()
        loop_s = self.loop_s
        extras = {
            "data_wait_s": self.wait_s,
            "step_s": self.step_s,
            "warm_up_s": self.warm_up_s,
            "loop_s": loop_s,
            "images_per_s": (self.n_todo / loop_s) if loop_s > 0 else float("nan"),
        }
        return EvalResult(total, _size(self.dataset) - n_failed, n_failed, len(self.shards), self.resumed, extras)


def _stop_workers(batches: Iterator) -> None:
    """Stop a DataLoader iterator's decoding workers (and free their batches in shared memory).
    Collecting the iterator would, but a run that stops on an error or Ctrl-C keeps it alive in
    the traceback's frames for as long as the error is kept (an interactive session keeps the last
    one), and with it every worker. PyTorch has no public call for this: its iterator's own
    ``_shutdown_workers`` (which may be called again), where it has one."""
    stop = getattr(batches, "_shutdown_workers", None)
    if callable(stop):
        stop()


class _WarmUp:
    """The accumulators' ``warm_up`` (loading the MaxBoxAcc kernels: about half a second) in a
    thread, so that it overlaps the decoding of the first images and the first forward passes
    (on a GPU, its own first-call set-up); ``wait`` joins it before the first metric step and
    raises what it raised."""

    def __init__(self, accumulators: Sequence[Accumulator]) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(accumulators,), name="simpool-bench-warm-up", daemon=True)
        self.thread.start()

    def _run(self, accumulators: Sequence[Accumulator]) -> None:
        try:
            for acc in accumulators:
                acc.warm_up()
        except BaseException as err:  # raised in the loop, by wait
            self.error = err

    def wait(self) -> float:
        """Block until the warm-up has finished; the seconds waited."""
        t0 = time.perf_counter()
        self.thread.join()
        self.done = True
        if self.error is not None:
            raise self.error
        return time.perf_counter() - t0


def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    make_accumulators: Callable[[], dict[str, Accumulator]],
    step: Step,
    config: EngineConfig,
    forward: Forward | None = None,
    batches_for: Callable[[Sequence[int]], list[list[int]]] | None = None,
    key: str | None = None,
    description: str = "evaluating",
    params: dict[str, Any] | None = None,
    order: Sequence[int] | None = None,
    failures_listed: str | None = None,
) -> EvalResult:
    """Run ``model`` over ``dataset`` shard by shard, feeding each batch to ``step``.

    Args:
        make_accumulators: builds a fresh, empty set of accumulators (one per shard).
        step: updates the accumulators with a Batch (called on every batch, failed images included:
            ``batch.ok`` says which decoded). Its outputs are on the host; on a GPU the step of
            batch ``i`` runs while batch ``i + 1`` is computed.
        forward: ``forward(model, images, indices) -> output``; default ``model(images)``.
        batches_for: turns a shard's index range into batches (default: consecutive chunks).
        key: the run key for resume; by default ``runkey.resume_key`` of the model, the dataset's
            records and transform, ``params`` (the protocol's parameters) and the config.
        params: what the numbers depend on besides model, data and transform (resume key).
        order: shards are consecutive chunks of this permutation of the indices (default: 0..n-1);
            a stored shard is reused only under the same order.
        failures_listed: where the run lists every image that failed (the task's output), for the
            line that counts the failures beyond the first ``NAMED_FAILURES``; None: nowhere.
    Returns the accumulators merged over every shard (and every rank), and counts.
    """
    return EvalRunner(
        model, dataset, make_accumulators, step, config, forward, batches_for, key, description, params, order, failures_listed
    ).run()
