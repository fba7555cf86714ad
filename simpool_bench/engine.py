"""Batched inference: device and AMP handling, sharding for resume and torch.distributed.

The unit of work is a *shard*: a fixed, ordered chunk of the dataset's indices. Shards are dealt to
ranks round-robin; each finished shard's accumulator states are saved (with a sha256) when a resume
folder is given, so that a rerun of the same command skips them. The per-shard accumulators are sums,
so the merged result is the same whatever the number of ranks, the batch size or the interruptions.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from .errors import SimpoolBenchError
from .metrics.base import Accumulator

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
def dist_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def dist_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_distributed(timeout_s: float = 600.0) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (no-op otherwise).

    NCCL is used when CUDA is available, gloo otherwise. The timeout makes a rank that died turn
    into an error on the others instead of a hang."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def make_shards(n: int, shard_size: int) -> list[range]:
    """Split ``range(n)`` into consecutive shards of ``shard_size`` (the last may be shorter)."""
    shard_size = max(1, int(shard_size))
    return [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def my_shards(shards: Sequence[range], rank: int, world: int) -> list[tuple[int, range]]:
    """The (shard id, indices) pairs that ``rank`` of ``world`` evaluates: round-robin."""
    return [(i, s) for i, s in enumerate(shards) if i % world == rank]


# --------------------------------------------------------------------------------------- resume store
class ShardStore:
    """Finished shards' accumulator states on disk, each with its sha256; a file whose checksum
    does not match is reported as missing (and so recomputed), never trusted."""

    def __init__(self, root: Path, run_key: str) -> None:
        self.dir = Path(root) / run_key
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, shard_id: int) -> Path:
        return self.dir / f"shard_{shard_id:06d}.pt"

    def load(self, shard_id: int) -> dict[str, Any] | None:
        path, digest = self._path(shard_id), self._path(shard_id).with_suffix(".sha256")
        if not (path.exists() and digest.exists()):
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest.read_text().strip():
            return None
        try:
            return torch.load(io.BytesIO(data), weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged shard is recomputed
            return None

    def save(self, shard_id: int, payload: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        path = self._path(shard_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        path.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")


def run_key(parts: dict[str, Any]) -> str:
    """A stable key for 'the same command': hash of everything the numbers depend on."""
    text = repr(sorted((k, repr(v)) for k, v in parts.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- batching
@dataclass
class Batch:
    """One evaluated batch: dataset indices, which images decoded, and the model's output."""

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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .console import err_console

    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    )
    prog.start()
    prog.add_task(description, total=total)
    return prog


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
    """What ``evaluate`` returns: merged accumulators plus bookkeeping."""

    accumulators: dict[str, Accumulator]
    n_images: int
    n_failed: int
    shards_total: int
    shards_resumed: int
    extras: dict[str, Any] = field(default_factory=dict)


def evaluate(
    model: torch.nn.Module,
    dataset: Dataset,
    make_accumulators: Callable[[], dict[str, Accumulator]],
    step: Callable[[Batch, dict[str, Accumulator]], None],
    config: EngineConfig,
    forward: Callable[[torch.nn.Module, torch.Tensor, np.ndarray], Any] | None = None,
    batches_for: Callable[[range], list[list[int]]] | None = None,
    key: str | None = None,
    description: str = "evaluating",
) -> EvalResult:
    """Run ``model`` over ``dataset`` shard by shard, feeding each batch to ``step``.

    Args:
        make_accumulators: builds a fresh, empty set of accumulators (one per shard).
        step: updates the accumulators with a Batch (called on every batch, failed images included:
            ``batch.ok`` says which decoded).
        forward: ``forward(model, images, indices) -> output``; default ``model(images)``.
        batches_for: turns a shard's index range into batches (default: consecutive chunks).
        key: the run key for resume (required when ``config.resume_dir`` is set).
    Returns the accumulators merged over every shard (and every rank), and counts.
    """
    device = resolve_device(config.device)
    rank, world = dist_rank(), dist_world()
    model = model.to(device).eval()
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if config.compile else model
    forward = forward or (lambda m, x, idx: m(x))
    batches_for = batches_for or (lambda r: chunk_batches(r, config.batch_size))

    shards = make_shards(len(dataset), config.shard_size)
    mine = my_shards(shards, rank, world)
    store = ShardStore(config.resume_dir, key or "default") if config.resume_dir is not None else None
    def fresh() -> dict[str, Accumulator]:
        accs = make_accumulators()
        accs["_failed"] = FailureCounter()
        return accs

    total = fresh()
    resumed = 0
    todo: list[tuple[int, range]] = []
    for sid, rng in mine:
        saved = store.load(sid) if store else None
        if saved is not None:
            part = fresh()
            if set(saved["states"]) != set(part):
                todo.append((sid, rng))
                continue
            for name, acc in part.items():
                acc.load_state_dict(saved["states"][name])
                total[name].merge(acc)
            resumed += 1
        else:
            todo.append((sid, rng))

    plan: list[tuple[int, list[int]]] = [(sid, b) for sid, rng in todo for b in batches_for(rng)]
    last_batch_of = {sid: i for i, (sid, _) in enumerate(plan)}
    n_todo = sum(len(b) for _, b in plan)
    loader = DataLoader(
        dataset, batch_sampler=_ListBatchSampler([b for _, b in plan]), num_workers=config.workers,
        collate_fn=collate_with_failures, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if config.workers > 0 else None,
    )
    prog = _progress(config.progress and rank == 0 and n_todo > 0, n_todo, description)
    part = fresh()
    try:
        for i, (images, idx, ok) in enumerate(loader):
            sid = plan[i][0]
            if config.strict and not bool(ok.all()):
                bad = int(idx[~ok][0])
                records = getattr(dataset, "records", None)
                name = records[bad].path if records is not None else f"#{bad}"
                raise SimpoolBenchError(f"image {name} does not decode (--strict fails on it; without it, it is skipped and counted)")
            images = images.to(device, non_blocking=True)
            if config.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            try:
                with torch.inference_mode(), autocast(device, config.amp):
                    output = forward(runner, images, idx.numpy())
            except torch.cuda.OutOfMemoryError as err:
                raise SimpoolBenchError(
                    f"--batch-size {config.batch_size} does not fit in the memory of {device}; "
                    f"try --batch-size {max(1, config.batch_size // 2)}"
                ) from err
            step(Batch(idx.numpy(), ok.numpy(), images, output), part)
            part["_failed"].update(ok.numpy())
            if prog is not None:
                prog.advance(prog.task_ids[0], len(idx))
            if last_batch_of[sid] == i:
                if store is not None:
                    store.save(sid, {"states": {n: a.state_dict() for n, a in part.items()}})
                for name, acc in part.items():
                    total[name].merge(acc)
                part = fresh()
    finally:
        if prog is not None:
            prog.stop()

    for acc in total.values():
        acc.sync()
    n_failed = total.pop("_failed").compute()
    return EvalResult(total, len(dataset) - n_failed, n_failed, len(shards), resumed)
