"""torch.distributed for the engine: joining the group, collectives with a timeout, waiting for ranks.

gloo carries the merges of the (CPU) accumulator counts, NCCL is registered for CUDA tensors when
GPUs are present. Before merging, a rank that is done waits for the others as long as they make
progress (``RankMonitor``: liveness and progress counts in the process group's store), so a slower
rank never trips a deadline; a rank that died (silent for ``min(timeout, 30 s)``) or hangs (no
progress for ``timeout``) is a one-line ``SimpoolBenchError`` on the others, and so is any
collective that fails or exceeds the timeout (``--dist-timeout`` or ``SIMPOOL_BENCH_DIST_TIMEOUT``
seconds, default 600).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import functools
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from ..errors import SimpoolBenchError

#: Seconds a collective (or joining the group) may wait for the other ranks before failing.
DIST_TIMEOUT_ENV = "SIMPOOL_BENCH_DIST_TIMEOUT"
DEFAULT_DIST_TIMEOUT_S = 600.0
#: The longest timeout: about 31 years (1e30 s overflowed the group's timedelta under torchrun, a traceback).
MAX_DIST_TIMEOUT_S = 1e9
#: Test-only fault injection: ``RANK`` or ``RANK:exit`` makes that rank exit (code 17) after its
#: first finished shard; ``RANK:hang`` makes it sleep forever instead.
FAULT_ENV = "SIMPOOL_BENCH_FAULT"
FAULT_EXIT_CODE = 17
#: Liveness beats of every rank (a thread) and how long a silent rank may stay silent at most.
HEARTBEAT_S = 1.0
LIVENESS_TIMEOUT_S = 30.0

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
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DIST_TIMEOUT_S):
        name = DIST_TIMEOUT_ENV if value is None else "--dist-timeout"
        raise SimpoolBenchError(
            f"{name}={raw!r}: expected a number of seconds > 0 and <= {MAX_DIST_TIMEOUT_S:g} (default {DEFAULT_DIST_TIMEOUT_S:g})"
        )
    return seconds


def first_line(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()
    line = text[0].strip() if text else type(err).__name__
    line = line.replace("[", "(").replace("]", ")")  # no console-markup look-alikes in a one-line error
    return line if len(line) <= limit else line[: limit - 3] + "..."


def init_distributed(timeout_s: float | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (no-op otherwise).

    gloo carries CPU tensors (every merge of the accumulators); with CUDA present NCCL is
    registered for CUDA tensors (``cpu:gloo,cuda:nccl``) and each rank takes GPU ``LOCAL_RANK``.
    ``timeout_s`` (default ``$SIMPOOL_BENCH_DIST_TIMEOUT`` or 600 s) bounds joining the group and
    every collective, so a rank that died turns into an error on the others instead of a hang. In a
    group joined before (API use, a second command in one interpreter) it still sets how long
    ``RankMonitor`` waits; the group's own collective timeout stays the one it was joined with."""
    raw_world = os.environ.get("WORLD_SIZE", "").strip() or "1"
    if not raw_world.isdigit():
        raise SimpoolBenchError(f"WORLD_SIZE={raw_world!r}: expected a whole number of processes (torchrun sets it)")
    if int(raw_world) <= 1 or not dist.is_available():
        return False
    timeout = dist_timeout_s(timeout_s)
    if dist.is_initialized():
        _DIST["timeout_s"] = timeout
        return True
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
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {timeout:g} s ({first_line(err)})"
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
            f"{_DIST['timeout_s']:g} s (--dist-timeout or {DIST_TIMEOUT_ENV} to wait longer): {first_line(err)}"
        ) from None


class RankMonitor:
    """Waits for the other ranks at the end of an evaluation without a fixed deadline.

    A rank that is slower (more shards, a slower node) is waited for as long as it makes progress;
    through the process group's store every rank publishes a liveness count (a thread, every
    ``HEARTBEAT_S``) and a progress count (per batch). A rank whose liveness stops for
    ``min(timeout, LIVENESS_TIMEOUT_S)`` died; one whose progress stops for ``timeout`` hangs.
    Either is a one-line SimpoolBenchError on the ranks that wait. Beats and progress are published
    at least four times per limit, so a short ``--dist-timeout`` never takes a live rank for dead."""

    def __init__(self, tag: str) -> None:
        from torch.distributed.distributed_c10d import _get_default_store

        base = _get_default_store()
        self.prefix = f"simpool_bench/{tag}/"
        self.store = dist.PrefixStore(self.prefix, base)
        self.rank, self.world = dist_rank(), dist_world()
        self.timeout = float(_DIST["timeout_s"])
        self.liveness = min(self.timeout, LIVENESS_TIMEOUT_S)
        self.beat_s = min(HEARTBEAT_S, self.liveness / 4)
        self.publish_s = min(HEARTBEAT_S / 2, self.timeout / 4)
        self._last_progress = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(dist.PrefixStore(self.prefix, base.clone()),), name="simpool-bench-heartbeat", daemon=True
        )
        collective("publishing progress", lambda: self.store.add(f"progress/{self.rank}", 1))
        self._thread.start()

    def _beat(self, store: Any) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                store.add(f"alive/{self.rank}", 1)
            except Exception:  # noqa: BLE001 - the store is gone: the waiting side reports it
                return

    def progress(self) -> None:
        """Count a finished batch (published at most every ``publish_s``)."""
        now = time.monotonic()
        if now - self._last_progress >= self.publish_s:
            self._last_progress = now
            collective("publishing progress", lambda: self.store.add(f"progress/{self.rank}", 1))

    def wait_for_all(self, poll_s: float = 0.1) -> None:
        """Mark this rank done and return when every rank is; raise if one died or hangs."""
        collective("waiting for the other ranks", lambda: self.store.set(f"done/{self.rank}", "1"))
        seen: dict[tuple[str, int], tuple[int, float]] = {}
        while True:
            pending = collective(
                "waiting for the other ranks",
                lambda: [r for r in range(self.world) if r != self.rank and not self.store.check([f"done/{r}"])],
            )
            if not pending:
                return
            now = time.monotonic()
            for r in pending:
                for kind, limit in (("alive", self.liveness), ("progress", self.timeout)):
                    value = collective("waiting for the other ranks", functools.partial(self.store.add, f"{kind}/{r}", 0))
                    last = seen.get((kind, r))
                    if last is None or last[0] != value:
                        seen[(kind, r)] = (value, now)
                    elif now - last[1] > limit:
                        what = "died (no sign of life" if kind == "alive" else "hangs (no progress"
                        _DIST["broken"] = True  # a peer is gone: leaving the group could wait for it
                        raise SimpoolBenchError(
                            f"rank {self.rank} of {self.world}: rank {r} {what} for {limit:g} s) before finishing its "
                            f"shards; stopping (--dist-timeout or {DIST_TIMEOUT_ENV} to wait longer)"
                        )
            time.sleep(poll_s)

    def close(self) -> None:
        self._stop.set()


def check_same_work(n: int, n_shards: int) -> None:
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


def next_monitor_tag() -> str:
    """A tag for this evaluation's ``RankMonitor`` (every rank runs the same sequence of evaluations)."""
    _DIST["calls"] += 1
    return f"evaluate{_DIST['calls']}"


def fault_after_shard(rank: int) -> None:
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
