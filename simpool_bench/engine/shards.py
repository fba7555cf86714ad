"""Shards (the unit of resume and of distributed work) and the resume store of finished shards.

The unit of work is a *shard*: a fixed, ordered chunk of the dataset's indices. Shards are dealt to
ranks round-robin; each finished shard's accumulator states are saved (with a sha256) when a resume
folder is given, so that a rerun of the same command skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import load_checksummed, make_dir, save_checksummed


def make_shards(n: int, shard_size: int, order: Sequence[int] | None = None) -> list[Sequence[int]]:
    """Split ``range(n)`` into consecutive shards of ``shard_size`` (the last may be shorter); with
    ``order`` (a permutation of ``range(n)``), consecutive chunks of ``order`` instead."""
    shard_size = max(1, int(shard_size))
    if order is None:
        return [range(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
    order = [int(i) for i in order]
    if sorted(order) != list(range(n)):
        raise ValueError(f"order: not a permutation of range({n})")
    return [order[s : s + shard_size] for s in range(0, n, shard_size)]


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

    def others(self) -> int:
        """How many finished shards other runs (other keys) left beside this run's folder."""
        return sum(1 for d in self.dir.parent.iterdir() if d.is_dir() and d.name != self.key for _ in d.glob("shard_*.pt"))

    def load(self, shard_id: int) -> dict[str, Any] | None:
        return self.status(shard_id)[1]

    def save(self, shard_id: int, payload: dict[str, Any]) -> None:
        save_checksummed(self._path(shard_id), {**payload, "key": self.key, "shard": shard_id})


def recompute_notice(store: ShardStore, bad: dict[str, int], total: int) -> None:
    """One line on stderr when stored shards are recomputed instead of reused."""
    if not any(bad.values()):
        return
    from ..console import note

    why = {"foreign": "written by another run (other data, model, settings or code)", "corrupt": "failing their checksum"}
    parts = [f"{n} {why[k]}" for k, n in bad.items() if n]
    note(f"note: recomputing {sum(bad.values())} of {total} stored shards in {store.dir}: {'; '.join(parts)}")


def stale_notice(store: ShardStore, others: int, total: int) -> None:
    """One line on stderr when the resume folder holds finished shards of other runs only: the same
    command after a change (data, model, settings, code) computes everything again, and says so."""
    from ..console import note

    note(
        f"note: the {others} finished shards in {store.dir.parent} are of another run (other data, model, "
        f"settings or code): none is reused, all {total} shards are computed"
    )
