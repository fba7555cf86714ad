"""Batched inference: device and AMP handling, sharding for resume and torch.distributed.

The unit of work is a *shard*: a fixed, ordered chunk of the dataset's indices. Shards are dealt to
ranks round-robin; each finished shard's accumulator states are saved (with a sha256) when a resume
folder is given, so that a rerun of the same command skips them. The per-shard accumulators are sums,
so the merged result is the same whatever the number of ranks, the batch size or the interruptions.

Speed: images are decoded by DataLoader workers into pinned memory and copied to the device
asynchronously; on a GPU, batch ``i``'s outputs are copied back (non-blocking) while batch ``i + 1``
runs, so the metric updates on the host overlap the next forward pass (one host sync per batch,
never per image). ``EvalResult.extras`` reports how long the loop waited for decoded images.

Distributed (``torchrun``): gloo carries the merges of the (CPU) accumulator counts, NCCL is
registered for CUDA tensors when GPUs are present. Before merging, a rank that is done waits for
the others as long as they make progress (``RankMonitor``: liveness and progress counts in the
process group's store), so a slower rank never trips a deadline; a rank that died (silent for
``min(timeout, 30 s)``) or hangs (no progress for ``timeout``) is a one-line ``SimpoolBenchError``
on the others, and so is any collective that fails or exceeds the timeout
(``--dist-timeout`` or ``SIMPOOL_BENCH_DIST_TIMEOUT`` seconds, default 600).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from .errors import SimpoolBenchError
from .data.inputs import DEFAULT_MAX_PIXELS
from .files import load_checksummed, make_dir, save_checksummed
from .metrics.base import Accumulator
from .workers import usable_workers

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Seconds a collective (or joining the group) may wait for the other ranks before failing.
DIST_TIMEOUT_ENV = "SIMPOOL_BENCH_DIST_TIMEOUT"
DEFAULT_DIST_TIMEOUT_S = 600.0
#: Test-only fault injection: ``RANK`` or ``RANK:exit`` makes that rank exit (code 17) after its
#: first finished shard; ``RANK:hang`` makes it sleep forever instead.
FAULT_ENV = "SIMPOOL_BENCH_FAULT"
FAULT_EXIT_CODE = 17
#: Liveness beats of every rank (a thread) and how long a silent rank may stay silent at most.
HEARTBEAT_S = 1.0
LIVENESS_TIMEOUT_S = 30.0
#: Fraction of the loop's time spent waiting for decoded images above which a hint is printed.
DATA_BOUND_HINT = 0.5


@dataclass
class EngineConfig:
    """How to run a model over a dataset.

    Args:
        device: 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N', 'mps'.
        batch_size: images per forward pass.
        workers: DataLoader worker processes (0 = decode in the main process).
        amp: 'off', 'bf16' or 'fp16' autocast.
        channels_last: use channels_last memory format (helps CNNs on GPUs).
        compile: wrap the model with torch.compile.
        shard_size: images per shard (the unit of resume and of distributed work).
        resume_dir: where finished shards are stored; None disables resume.
        progress: show a rich progress bar (rank 0 only).
        strict: fail on an image that does not decode instead of skipping it.
        max_pixels: images whose header gives more pixels are not decoded (skipped and counted,
            or an error under ``strict``); ``None``: PIL's own limit.
        allow_nonfinite: count images with non-finite outputs as misses instead of failing the run
            (the evaluations check it; see ``finite``).
    """

    device: str = "auto"
    batch_size: int = 64
    workers: int = 0
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    shard_size: int = 1024
    resume_dir: Path | None = None
    progress: bool = True
    strict: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    allow_nonfinite: bool = False


def resolve_device(name: str) -> torch.device:
    """Turn a ``--device`` value into a torch.device, with a clear error when it is not there."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{local % torch.cuda.device_count()}")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise SimpoolBenchError(f"--device {name!r} is not a device name (expected auto, cpu, cuda, cuda:N, mps)") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SimpoolBenchError(f"--device {name} was asked for but no CUDA GPU is available here; use --device cpu")
        if dev.index is None and dist_world() > 1:
            dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SimpoolBenchError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SimpoolBenchError(f"--device {name} was asked for but MPS is not available here; use --device cpu")
    return dev


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``--amp`` (a null context when off)."""
    if amp not in AMP_DTYPES:
        raise SimpoolBenchError(f"--amp {amp!r} is not one of {', '.join(AMP_DTYPES)}")
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------- distributed
_DIST: dict[str, Any] = {"timeout_s": DEFAULT_DIST_TIMEOUT_S, "broken": False, "calls": 0}


def dist_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def dist_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def dist_timeout_s(value: float | str | None = None) -> float:
    """The collective timeout in seconds: ``value``, else ``$SIMPOOL_BENCH_DIST_TIMEOUT``, else 600."""
    raw = os.environ.get(DIST_TIMEOUT_ENV, "") if value is None else value
    if raw in ("", None):
        return DEFAULT_DIST_TIMEOUT_S
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        name = DIST_TIMEOUT_ENV if value is None else "--dist-timeout"
        raise SimpoolBenchError(f"{name}={raw!r}: expected a number of seconds > 0 (default {DEFAULT_DIST_TIMEOUT_S:g})")
    return seconds


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    line = text[0].strip() if text else type(err).__name__
    line = line.replace("[", "(").replace("]", ")")  # no console-markup look-alikes in a one-line error
    return line if len(line) <= limit else line[: limit - 3] + "..."


def init_distributed(timeout_s: float | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (no-op otherwise).

    gloo carries CPU tensors (every merge of the accumulators); with CUDA present NCCL is
    registered for CUDA tensors (``cpu:gloo,cuda:nccl``) and each rank takes GPU ``LOCAL_RANK``.
    ``timeout_s`` (default ``$SIMPOOL_BENCH_DIST_TIMEOUT`` or 600 s) bounds joining the group and
    every collective, so a rank that died turns into an error on the others instead of a hang."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    timeout = dist_timeout_s(timeout_s)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise SimpoolBenchError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: launch with torchrun "
            f"(e.g. torchrun --nproc-per-node 2 $(which simpool-bench) ...)"
        )
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    try:
        dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout))
    except (RuntimeError, ValueError, OSError) as err:
        raise SimpoolBenchError(
            f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: could not join the process group at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {timeout:g} s ({_first_line(err)})"
        ) from None
    _DIST.update(timeout_s=timeout, broken=False)
    atexit.register(shutdown_distributed)
    return True


def shutdown_distributed() -> None:
    """Leave the process group (skipped after a failed collective: the group is unusable)."""
    if dist.is_available() and dist.is_initialized() and not _DIST["broken"]:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def collective(what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` (torch.distributed calls); a failure or timeout becomes a one-line SimpoolBenchError."""
    try:
        return fn()
    except SimpoolBenchError:
        raise
    except RuntimeError as err:  # DistBackendError, gloo "Connection closed by peer", timeouts
        _DIST["broken"] = True
        raise SimpoolBenchError(
            f"rank {dist_rank()} of {dist_world()}: {what} failed: another rank died or did not answer within "
            f"{_DIST['timeout_s']:g} s (--dist-timeout or {DIST_TIMEOUT_ENV} to wait longer): {_first_line(err)}"
        ) from None


class RankMonitor:
    """Waits for the other ranks at the end of an evaluation without a fixed deadline.

    A rank that is slower (more shards, a slower node) is waited for as long as it makes progress;
    through the process group's store every rank publishes a liveness count (a thread, every
    ``HEARTBEAT_S``) and a progress count (per batch). A rank whose liveness stops for
    ``min(timeout, LIVENESS_TIMEOUT_S)`` died; one whose progress stops for ``timeout`` hangs.
    Either is a one-line SimpoolBenchError on the ranks that wait."""

    def __init__(self, tag: str) -> None:
        from torch.distributed.distributed_c10d import _get_default_store

        base = _get_default_store()
        self.prefix = f"simpool_bench/{tag}/"
        self.store = dist.PrefixStore(self.prefix, base)
        self.rank, self.world = dist_rank(), dist_world()
        self.timeout = float(_DIST["timeout_s"])
        self.liveness = min(self.timeout, LIVENESS_TIMEOUT_S)
        self._last_progress = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(dist.PrefixStore(self.prefix, base.clone()),),
                                        name="simpool-bench-heartbeat", daemon=True)
        collective("publishing progress", lambda: self.store.add(f"progress/{self.rank}", 1))
        self._thread.start()

    def _beat(self, store: Any) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                store.add(f"alive/{self.rank}", 1)
            except Exception:  # noqa: BLE001 - the store is gone: the waiting side reports it
                return

    def progress(self) -> None:
        """Count a finished batch (published at most every HEARTBEAT_S / 2)."""
        now = time.monotonic()
        if now - self._last_progress >= HEARTBEAT_S / 2:
            self._last_progress = now
            collective("publishing progress", lambda: self.store.add(f"progress/{self.rank}", 1))

    def wait_for_all(self, poll_s: float = 0.1) -> None:
        """Mark this rank done and return when every rank is; raise if one died or hangs."""
        collective("waiting for the other ranks", lambda: self.store.set(f"done/{self.rank}", "1"))
        seen: dict[tuple[str, int], tuple[int, float]] = {}
        while True:
            pending = collective("waiting for the other ranks", lambda: [
                r for r in range(self.world) if r != self.rank and not self.store.check([f"done/{r}"])])
            if not pending:
                return
            now = time.monotonic()
            for r in pending:
                for kind, limit in (("alive", self.liveness), ("progress", self.timeout)):
                    value = collective("waiting for the other ranks", lambda: self.store.add(f"{kind}/{r}", 0))
                    last = seen.get((kind, r))
                    if last is None or last[0] != value:
                        seen[(kind, r)] = (value, now)
                    elif now - last[1] > limit:
                        what = "died (no sign of life" if kind == "alive" else "hangs (no progress"
                        raise SimpoolBenchError(
                            f"rank {self.rank} of {self.world}: rank {r} {what} for {limit:g} s) before finishing its "
                            f"shards; stopping (--dist-timeout or {DIST_TIMEOUT_ENV} to wait longer)"
                        )
            time.sleep(poll_s)

    def close(self) -> None:
        self._stop.set()


def _check_same_work(n: int, n_shards: int) -> None:
    """Every rank must see the same dataset size and sharding (else the shards would not line up)."""
    mine = torch.tensor([n, n_shards], dtype=torch.int64)
    everyone = [torch.zeros_like(mine) for _ in range(dist_world())]
    collective("agreeing on the work", lambda: dist.all_gather(everyone, mine))
    for r, other in enumerate(everyone):
        if not torch.equal(other, mine):
            raise SimpoolBenchError(
                f"rank {r} sees {int(other[0])} images in {int(other[1])} shards, rank {dist_rank()} sees {n} in "
                f"{n_shards}: every rank must read the same data with the same --shard-size"
            )


def all_gather_indexed(index: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``values`` (n, ...) keyed by dataset ``index`` (n,) from every rank, sorted by index.

    Outside torch.distributed this only sorts. Used for what is not a sum (the k-NN memory bank)."""
    index = index.detach().cpu().long()
    values = values.detach().cpu()
    if dist_world() > 1:
        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(dist_world())]
        collective("gathering features", lambda: dist.all_gather(sizes, torch.tensor([index.numel()])))
        top = int(max(int(s) for s in sizes))
        pad_i = torch.full((top,), -1, dtype=torch.int64)
        pad_i[: index.numel()] = index
        pad_v = torch.zeros((top, *values.shape[1:]), dtype=values.dtype)
        pad_v[: values.shape[0]] = values
        all_i = [torch.empty_like(pad_i) for _ in sizes]
        all_v = [torch.empty_like(pad_v) for _ in sizes]
        collective("gathering features", lambda: (dist.all_gather(all_i, pad_i), dist.all_gather(all_v, pad_v)))
        index = torch.cat([i[: int(s)] for i, s in zip(all_i, sizes)])
        values = torch.cat([v[: int(s)] for v, s in zip(all_v, sizes)])
    order = torch.argsort(index)
    return index[order], values[order]


def _fault_after_shard(rank: int) -> None:
    """Test-only hook (``$SIMPOOL_BENCH_FAULT``): simulate a rank that dies or hangs mid-run."""
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return
    who, _, action = spec.partition(":")
    if not who.isdigit() or action not in ("", "exit", "hang"):
        raise SimpoolBenchError(f"{FAULT_ENV}={spec!r}: expected RANK, RANK:exit or RANK:hang")
    if int(who) != rank:
        return
    if action == "hang":
        while True:
            time.sleep(3600)
    os._exit(FAULT_EXIT_CODE)


def make_shards(n: int, shard_size: int, order: Sequence[int] | None = None) -> list[Sequence[int]]:
    """Split ``range(n)`` into consecutive shards of ``shard_size`` (the last may be shorter); with
    ``order`` (a permutation of ``range(n)``), consecutive chunks of ``order`` instead."""
    shard_size = max(1, int(shard_size))
    if order is None:
        return [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    order = [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise ValueError(f"order: not a permutation of range({n})")
    return [order[s:s + shard_size] for s in range(0, n, shard_size)]


def size_order(keys: Sequence[Any]) -> list[int]:
    """Indices sorted by key (e.g. the padded image size), stable: as shards of this order, equal
    keys of the whole dataset land in as few shards (hence full batches) as possible."""
    return sorted(range(len(keys)), key=lambda i: keys[i])


def my_shards(shards: Sequence[Sequence[int]], rank: int, world: int) -> list[tuple[int, Sequence[int]]]:
    """The (shard id, indices) pairs that ``rank`` of ``world`` evaluates: round-robin."""
    return [(i, s) for i, s in enumerate(shards) if i % world == rank]


# --------------------------------------------------------------------------------------- resume store
class ShardStore:
    """Finished shards' accumulator states on disk, each with its sha256 and the run key inside
    (``runkey.resume_key``, which ``evaluate`` derives when none is given).

    A file whose checksum does not match is 'corrupt', one written under another run key (copied
    from another run, or stale) is 'foreign': both are recomputed, never trusted."""

    def __init__(self, root: Path, run_key: str) -> None:
        self.key = run_key
        self.dir = make_dir(Path(root) / run_key)

    def _path(self, shard_id: int) -> Path:
        return self.dir / f"shard_{shard_id:06d}.pt"

    def status(self, shard_id: int) -> tuple[str, dict[str, Any] | None]:
        """('ok', payload), ('missing', None), ('corrupt', None) or ('foreign', None)."""
        state, payload = load_checksummed(self._path(shard_id))
        if state != "ok":
            return state, None
        if not isinstance(payload, dict) or payload.get("key") != self.key or payload.get("shard") != shard_id:
            return "foreign", None
        return "ok", payload

    def load(self, shard_id: int) -> dict[str, Any] | None:
        return self.status(shard_id)[1]

    def save(self, shard_id: int, payload: dict[str, Any]) -> None:
        save_checksummed(self._path(shard_id), {**payload, "key": self.key, "shard": shard_id})


def _recompute_notice(store: ShardStore, bad: dict[str, int], total: int) -> None:
    """One line on stderr when stored shards are recomputed instead of reused."""
    if not any(bad.values()):
        return
    from .console import err_console

    why = {"foreign": "written by another run (other data, model, settings or code)", "corrupt": "failing their checksum"}
    parts = [f"{n} {why[k]}" for k, n in bad.items() if n]
    err_console.print(f"note: recomputing {sum(bad.values())} of {total} stored shards in {store.dir}: {'; '.join(parts)}",
                      highlight=False, markup=False, soft_wrap=True)


# --------------------------------------------------------------------------------------- batching
@dataclass
class Batch:
    """One evaluated batch: dataset indices, which images decoded, and the model's output.

    ``output`` holds host (CPU) tensors; ``images`` is the batch as it went into the model (on the
    device; its shape tells the padded input size)."""

    indices: np.ndarray
    ok: np.ndarray
    images: torch.Tensor
    output: Any


def collate_with_failures(items: list[tuple[torch.Tensor, int, bool]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack (image, index, ok) items; an image that failed to decode becomes zeros of the batch's shape."""
    shape = next((img.shape for img, _, ok in items if ok), items[0][0].shape)
    imgs = [img if (ok and img.shape == shape) else torch.zeros(shape, dtype=img.dtype) for img, _, ok in items]
    idx = torch.tensor([i for _, i, _ in items], dtype=torch.int64)
    oks = torch.tensor([bool(ok) for _, _, ok in items], dtype=torch.bool)
    return torch.stack(imgs), idx, oks


def chunk_batches(indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of ``batch_size`` indices."""
    idx = list(indices)
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def bucket_batches(indices: Sequence[int], keys: Sequence[Any], batch_size: int) -> list[list[int]]:
    """Batches whose members share a key (e.g. the padded image size), in first-seen key order.

    Grouping identical sizes keeps a full-resolution batch exact: no image is padded beyond what
    the protocol pads it to, so batch size never changes a number."""
    groups: dict[Any, list[int]] = {}
    for i in indices:
        groups.setdefault(keys[i], []).append(i)
    out: list[list[int]] = []
    for members in groups.values():
        out.extend(chunk_batches(members, batch_size))
    return out


class _ListBatchSampler:
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _progress(enabled: bool, total: int, description: str):
    if not enabled:
        return None
    from .console import start_progress

    return start_progress(description, total, "images")


class FailureCounter(Accumulator):
    """Counts images that did not decode (so the count survives resume and merges across ranks)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("failed", torch.zeros((), dtype=torch.int64))

    def update(self, ok: np.ndarray) -> None:
        self.failed = self.failed + int((~np.asarray(ok, dtype=bool)).sum())

    def compute(self) -> int:
        return int(self.failed)


@dataclass
class EvalResult:
    """What ``evaluate`` returns: merged accumulators plus bookkeeping.

    ``extras``: ``data_wait_s`` (this rank's time blocked on image decoding), ``loop_s`` (this
    rank's time in the batch loop) and ``images_per_s`` (this rank's computed images / loop_s)."""

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
    return SimpoolBenchError(f"--batch-size {batch_size} does not fit in the memory of {device}; {hint} ({_first_line(err, 120)})")


def _describe(dataset: Dataset, i: int) -> str:
    """The file behind item ``i`` (``dataset.describe(i)`` or ``dataset.records[i].path``), else its index."""
    if callable(getattr(dataset, "describe", None)):
        return str(dataset.describe(i))
    records = getattr(dataset, "records", None)
    if records is not None and hasattr(records[i], "path"):
        return str(records[i].path)
    return f"#{i}"


def to_host(obj: Any) -> Any:
    """Copy every tensor of ``obj`` (a tensor, dataclass, tuple, list or dict of them) to the CPU;
    from CUDA the copies are non-blocking into pinned memory (wait on an event before reading)."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.to("cpu", non_blocking=obj.device.type == "cuda")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: to_host(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_host(x) for x in obj)
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    return obj


def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    make_accumulators: Callable[[], dict[str, Accumulator]],
    step: Callable[[Batch, dict[str, Accumulator]], None],
    config: EngineConfig,
    forward: Callable[[torch.nn.Module, torch.Tensor, np.ndarray], Any] | None = None,
    batches_for: Callable[[Sequence[int]], list[list[int]]] | None = None,
    key: str | None = None,
    description: str = "evaluating",
    params: dict[str, Any] | None = None,
    order: Sequence[int] | None = None,
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
    Returns the accumulators merged over every shard (and every rank), and counts.
    """
    device = resolve_device(config.device)
    autocast(device, config.amp)  # validates --amp before any work
    rank, world = dist_rank(), dist_world()
    model = model.to(device).eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if config.compile else model
    forward = forward or (lambda m, x, idx: m(x))
    batches_for = batches_for or (lambda r: chunk_batches(r, config.batch_size))

    shards = make_shards(len(dataset), config.shard_size, order)
    # another order makes other shards: keep their resume stores apart
    order_id = None if order is None else hashlib.sha256(repr(list(order)).encode()).hexdigest()
    if world > 1:
        _check_same_work(len(dataset), len(shards))
    mine = my_shards(shards, rank, world)
    store = None
    if config.resume_dir is not None:
        if key is None:
            from .runkey import resume_key

            if not hasattr(dataset, "records"):
                raise ValueError("evaluate: resume needs a key for a dataset without records")
            key = resume_key(description, model, dataset.records, getattr(dataset, "transform", None),
                             {**(params or {}), "max_pixels": config.max_pixels, "order": order_id},
                             amp=config.amp, shard_size=config.shard_size, device=device.type)
        elif order_id is not None:
            key = hashlib.sha256(f"{key} order {order_id}".encode()).hexdigest()[:24]
        store = ShardStore(config.resume_dir, key)

    def fresh() -> dict[str, Accumulator]:
        accs = make_accumulators()
        accs["_failed"] = FailureCounter()
        return accs

    total = fresh()
    resumed = 0
    todo: list[tuple[int, Sequence[int]]] = []
    bad = {"foreign": 0, "corrupt": 0}
    for sid, rng in mine:
        state, saved = store.status(sid) if store else ("missing", None)
        if state in bad:
            bad[state] += 1
        if saved is not None:
            part = fresh()
            if not isinstance(saved.get("states"), dict) or set(saved["states"]) != set(part):
                bad["foreign"] += 1
                todo.append((sid, rng))
                continue
            for name, acc in part.items():
                acc.load_state_dict(saved["states"][name])
                total[name].merge(acc)
            resumed += 1
        else:
            todo.append((sid, rng))

    if store is not None:
        _recompute_notice(store, bad, len(mine))
    plan: list[tuple[int, list[int]]] = [(sid, b) for sid, rng in todo for b in batches_for(rng)]
    last_batch_of = {sid: i for i, (sid, _) in enumerate(plan)}
    n_todo = sum(len(b) for _, b in plan)
    cuda = device.type == "cuda"
    workers = usable_workers(config.workers) if n_todo > 0 else 0  # 0 where workers cannot start
    loader = DataLoader(
        dataset, batch_sampler=_ListBatchSampler([b for _, b in plan]), num_workers=workers,
        collate_fn=collate_with_failures, pin_memory=cuda,
        persistent_workers=False, prefetch_factor=4 if workers > 0 else None,
    )
    prog = _progress(config.progress and rank == 0 and n_todo > 0, n_todo, description)
    state: dict[str, Any] = {"part": fresh(), "faulted": False}
    monitor = None
    if world > 1:
        _DIST["calls"] += 1  # the same sequence of evaluations on every rank
        monitor = RankMonitor(f"evaluate{_DIST['calls']}")

    def finish(i: int, idx: torch.Tensor, ok: torch.Tensor, images: torch.Tensor, output: Any, ready: Any) -> None:
        """Metric updates of batch ``i`` (its outputs are host copies; ``ready`` their CUDA event)."""
        if ready is not None:
            ready.synchronize()
        part = state["part"]
        step(Batch(idx.numpy(), ok.numpy(), images, output), {k: a for k, a in part.items() if k != "_failed"})
        part["_failed"].update(ok.numpy())
        if prog is not None:
            prog.advance(prog.task_ids[0], len(idx))
        if monitor is not None:
            monitor.progress()
        sid = plan[i][0]
        if last_batch_of[sid] == i:
            if store is not None:
                store.save(sid, {"states": {n: a.state_dict() for n, a in part.items()}})
            for name, acc in part.items():
                total[name].merge(acc)
            state["part"] = fresh()
            if not state["faulted"]:
                state["faulted"] = True
                _fault_after_shard(rank)

    pending: tuple | None = None
    wait_s = 0.0
    t_start = time.perf_counter()
    try:
        batches = iter(loader)
        for i in range(len(plan)):
            t0 = time.perf_counter()
            images, idx, ok = next(batches)
            wait_s += time.perf_counter() - t0
            if config.strict and not bool(ok.all()):
                bad = int(idx[~ok][0])
                why = dataset.failure(bad) if callable(getattr(dataset, "failure", None)) else f"image {_describe(dataset, bad)} does not decode"
                raise SimpoolBenchError(f"{why} (--strict fails on it; without it, it is skipped and counted)")
            try:
                images = images.to(device, non_blocking=True)
                if config.channels_last and images.dim() == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast(device, config.amp):
                    output = forward(runner, images, idx.numpy())
                output = to_host(output)
            except SimpoolBenchError:
                raise
            except (RuntimeError, MemoryError) as err:
                if _is_oom(err):
                    raise _oom_error(config.batch_size, device, err) from None
                raise
            ready = None
            if cuda:
                ready = torch.cuda.Event()
                ready.record()
            if pending is not None:
                finish(*pending)
            pending = (i, idx, ok, images, output, ready)
        if pending is not None:
            finish(*pending)
            pending = None
        loop_s = time.perf_counter() - t_start
        if prog is not None:
            prog.stop()
            prog = None
        if monitor is not None:
            monitor.wait_for_all()
    finally:
        if prog is not None:
            prog.stop()
        if monitor is not None:
            monitor.close()
    if config.progress and rank == 0 and n_todo >= 4 * config.batch_size and wait_s > DATA_BOUND_HINT * loop_s:
        from .console import err_console

        err_console.print(
            f"note: {100 * wait_s / loop_s:.0f}% of the time went to decoding images; "
            f"more --workers (now {config.workers}) would be faster", highlight=False,
        )

    if world > 1:
        for acc in total.values():
            collective("merging the results", acc.sync)
        counts = torch.tensor([resumed], dtype=torch.int64)
        collective("merging the results", lambda: dist.all_reduce(counts))
        resumed = int(counts[0])
    n_failed = total.pop("_failed").compute()
    extras = {"data_wait_s": wait_s, "loop_s": loop_s, "images_per_s": (n_todo / loop_s) if loop_s > 0 else float("nan")}
    return EvalResult(total, len(dataset) - n_failed, n_failed, len(shards), resumed, extras)
