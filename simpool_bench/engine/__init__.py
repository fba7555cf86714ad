"""Batched inference: device and AMP handling, sharding for resume and torch.distributed.

The unit of work is a *shard*: a fixed, ordered chunk of the dataset's indices. Shards are dealt to
ranks round-robin; each finished shard's accumulator states are saved (with a sha256) when a resume
folder is given, so that a rerun of the same command skips them. The per-shard accumulators are sums,
so the merged result is the same whatever the number of ranks, the batch size or the interruptions.

Speed: images are decoded by DataLoader workers into pinned memory and copied to the device
asynchronously (off the CPU as uint8, normalised on the device bit for bit: ``data.normalize``);
on a GPU, batch ``i``'s outputs are copied back (non-blocking) while batch ``i + 1`` runs, so the
metric updates on the host overlap the next forward pass (one host sync per batch, never per image).
``EvalResult.extras`` reports how long the loop waited for decoded images and ran metric steps.

Distributed (``torchrun``): see ``engine.distributed``.

Modules: ``config`` (EngineConfig, device, autocast), ``distributed`` (process group, collectives,
RankMonitor, all_gather_indexed), ``shards`` (shards and the resume store), ``batching`` (batches,
collate, host copies) and ``runner`` (``EvalRunner``: plan, resume, loop, merge; ``evaluate``).
"""

from .batching import Batch, FailureCounter, ListBatchSampler, bucket_batches, chunk_batches, collate_with_failures, to_host
from .config import AMP_DTYPES, EngineConfig, autocast, resolve_device
from .distributed import (
    DEFAULT_DIST_TIMEOUT_S,
    DIST_TIMEOUT_ENV,
    FAULT_ENV,
    FAULT_EXIT_CODE,
    HEARTBEAT_S,
    LIVENESS_TIMEOUT_S,
    RankMonitor,
    all_gather_indexed,
    collective,
    dist_rank,
    dist_timeout_s,
    dist_world,
    init_distributed,
    shutdown_distributed,
)
from .runner import DATA_BOUND_HINT, EvalResult, EvalRunner, evaluate
from .shards import ShardStore, make_shards, my_shards, size_order

__all__ = [
    "AMP_DTYPES",
    "DATA_BOUND_HINT",
    "DEFAULT_DIST_TIMEOUT_S",
    "DIST_TIMEOUT_ENV",
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "HEARTBEAT_S",
    "LIVENESS_TIMEOUT_S",
    "Batch",
    "EngineConfig",
    "EvalResult",
    "EvalRunner",
    "FailureCounter",
    "ListBatchSampler",
    "RankMonitor",
    "ShardStore",
    "all_gather_indexed",
    "autocast",
    "bucket_batches",
    "chunk_batches",
    "collate_with_failures",
    "collective",
    "dist_rank",
    "dist_timeout_s",
    "dist_world",
    "evaluate",
    "init_distributed",
    "make_shards",
    "my_shards",
    "resolve_device",
    "shutdown_distributed",
    "size_order",
    "to_host",
]
