"""What the benchmarks share: the flags and the opening line of the host-side runs
(``hand_over.py``, ``warm_up.py``), the DataLoader workers a benchmark resolves as a run does, and
the MaxBoxAcc kernels compiled in another process before timing (``warm_up.py``, ``vs_peers.py``).

A plain module beside the scripts, imported by bare name as they import each other (each script
puts ``benchmarks/`` and the repository root on ``sys.path`` first)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def host_parser(doc: str, images: int, tasks: str | None = None) -> argparse.ArgumentParser:
    """The flags of a host-side run: ``--images`` (default ``images``), ``--device``,
    ``--batch-size``, ``--workers``, ``--reps``, ``--tasks`` where ``tasks`` (its default) is given,
    and ``--free-model``; the description is the first paragraph of ``doc``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--images", type=int, default=images)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="default min(8, cores)")
    p.add_argument("--reps", type=int, default=3)
    if tasks is not None:
        p.add_argument("--tasks", default=tasks)
    p.add_argument("--free-model", action="store_true", help="no forward: the host's side alone")
    return p


def resolve_workers(workers: int | None) -> int:
    """``--workers``, or the engine's own default (min(8, cores); 0 where workers cannot start)."""
    from simpool_bench.workers import default_workers, usable_workers

    return usable_workers(default_workers()) if workers is None else workers


def host_header(device: str, workers: int, args: argparse.Namespace) -> str:
    """The opening line of a host-side run (``device`` as it is to be shown)."""
    return (
        f"device {device}, cores {os.cpu_count()}, workers {workers}, images {args.images}, batch {args.batch_size}, "
        f"free model {args.free_model}, load {os.getloadavg()[0]:.2f}"
    )


def compile_kernels_elsewhere() -> None:
    """numba compiles the MaxBoxAcc kernels once and caches them on disk; compile them in another
    process, so that the timed one loads them as every run after the first does."""
    subprocess.run(
        [sys.executable, "-c", "from simpool_bench.metrics.boxacc import compile_kernels; compile_kernels()"], check=True, cwd=ROOT
    )
