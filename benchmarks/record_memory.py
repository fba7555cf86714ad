"""What the records of a large split cost in memory: ``data.records.Record`` (slotted, one shared
read-only empty boxes array) against the previous definition (a plain dataclass with its own
``__dict__`` and a new (0, 4) array per record; kept here), on ImageNet-train-like ids and paths
(1,281,167 by default), measured with ``tracemalloc`` in the same run. Every field must compare
equal, or it fails.

    python benchmarks/record_memory.py [--n 1281167]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simpool_bench.data.records import Record  # noqa: E402


@dataclass
class PreviousRecord:
    """``Record`` before it was slotted: a ``__dict__`` and a new empty boxes array per record."""

    image_id: str
    path: Path
    label: int = -1
    width: int = 0
    height: int = 0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float64))


def _build(cls: Callable[..., Any], n: int) -> tuple[list[Any], int]:
    """``n`` records of ImageNet-train-like ids (1300 per class folder) and the bytes they hold."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    records = []
    for i in range(n):
        wnid = f"n{i // 1300:08d}"
        rel = f"{wnid}/{wnid}_{i}.JPEG"
        records.append(cls(rel, Path("/data/imagenet/train") / rel, i // 1300))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return records, used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_281_167, help="records (ImageNet train: 1,281,167)")
    args = p.parse_args()
    old, old_bytes = _build(PreviousRecord, args.n)
    new, new_bytes = _build(Record, args.n)
    for a, b in zip(old, new, strict=True):
        if (a.image_id, a.path, a.label, a.width, a.height) != (
            b.image_id,
            b.path,
            b.label,
            b.width,
            b.height,
        ) or a.boxes.shape != b.boxes.shape:
            raise SystemExit(f"records differ: {a} != {b}")
    mib = 2**20
    print(
        f"{args.n:,} records: previous {old_bytes / mib:.0f} MiB ({old_bytes / args.n:.0f} B each), "
        f"now {new_bytes / mib:.0f} MiB ({new_bytes / args.n:.0f} B each), ratio {old_bytes / new_bytes:.2f}x less"
    )


if __name__ == "__main__":
    main()
