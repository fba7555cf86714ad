"""MaxBoxAccV2 speed: the literal OpenCV pipeline of wsolevaluation against simpool-bench's exact
component-tree path, on the same maps and the real CUB test boxes.

Both paths start from score maps at model resolution and end with the per-threshold counts
(resize, normalisation, quantisation, boxes, IoU). The oracle runs in a single process, one
``cv2.findContours`` per threshold and image as the reference does; the fast path is
``BoxAccumulator.update`` (all cores). Counts must be identical, or the benchmark fails.

    python benchmarks/boxacc_speed.py [--smooth-001 40] [--noisy-001 3] [--metadata DIR]

Map kinds: ``smooth`` (random 14x14 and 7x7 maps, cubic-upsampled like real attention) and
``noisy`` (a smooth map plus pixel noise at 224x224: thousands of small contours per level,
where OpenCV is slowest).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the literal oracle lives beside the tests
sys.path.insert(0, str(ROOT))

from simpool_bench.metrics.boxacc import WSOL_IOU_THRESHOLDS, BoxAccumulator  # noqa: E402
from simpool_bench.metrics.boxes import resize_boxes_wsol  # noqa: E402

import boxacc_oracle as oracle  # noqa: E402


def default_metadata(start: Path = ROOT) -> Path:
    """The CUB test metadata of the nearest ``shared/data/wsol_metadata`` folder above ``start``
    (the main checkout has ``../shared``; a worktree may sit deeper), else the main checkout's."""
    for folder in (start, *start.parents):
        candidate = folder / "shared" / "data" / "wsol_metadata"
        if candidate.is_dir():
            return candidate / "CUB" / "test"
    return ROOT.parent / "shared" / "data" / "wsol_metadata" / "CUB" / "test"


def read_cub_boxes(metadata: Path) -> list[np.ndarray]:
    """GT boxes of every image of a wsolevaluation metadata folder, resized to 224 (resize_bbox)."""
    sizes = {}
    for line in (metadata / "image_sizes.txt").read_text().splitlines():
        if line.strip():
            image_id, w, h = line.strip().split(",")
            sizes[image_id] = (int(w), int(h))
    boxes: dict[str, list[list[float]]] = {}
    for line in (metadata / "localization.txt").read_text().splitlines():
        if line.strip():
            image_id, *coords = line.strip().split(",")
            boxes.setdefault(image_id, []).append([float(c) for c in coords])
    return [resize_boxes_wsol(np.asarray(b), *sizes[i]) for i, b in boxes.items()]


def make_maps(kind: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    maps = []
    for i in range(n):
        side = 14 if i % 2 == 0 else 7
        smooth = rng.random((side, side)).astype(np.float32)
        if kind == "smooth":
            maps.append(smooth)
        else:
            import cv2

            up = cv2.resize(smooth, (224, 224), interpolation=cv2.INTER_CUBIC)
            maps.append((up + rng.random((224, 224)).astype(np.float32)).astype(np.float32))
    return maps


def run_oracle(maps: list[np.ndarray], gts: list[np.ndarray], interval: float) -> tuple[np.ndarray, float, float]:
    """Counts, wall seconds and CPU seconds of the literal reference over the maps."""
    thresholds = oracle.reference_thresholds(interval)
    counts = np.zeros((len(WSOL_IOU_THRESHOLDS), len(thresholds)), dtype=np.int64)
    t0, c0 = time.perf_counter(), time.process_time()
    for m, gt in zip(maps, gts):
        u8 = oracle.quantise(oracle.reference_scoremap(m))
        counts += oracle.reference_hits(u8, gt, thresholds, WSOL_IOU_THRESHOLDS)
    return counts, time.perf_counter() - t0, time.process_time() - c0


def run_fast(
    maps: list[np.ndarray], gts: list[np.ndarray], interval: float, threads: int | None, min_seconds: float
) -> tuple[np.ndarray, float, float]:
    """Counts of one pass, and the wall and CPU (all threads) seconds per pass (passes repeated
    for at least min_seconds)."""
    passes, elapsed, cpu, counts = 0, 0.0, 0.0, None
    while passes == 0 or elapsed < min_seconds:
        acc = BoxAccumulator(interval=interval, num_threads=threads)
        t0, c0 = time.perf_counter(), time.process_time()
        acc.update(maps, gts)
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        passes += 1
        counts = acc.correct.numpy()
    return counts, elapsed / passes, cpu / passes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--metadata",
        type=Path,
        default=None,
        help="wsolevaluation metadata folder (CUB test; default: shared/data/wsol_metadata/CUB/test "
        "in the nearest folder above this checkout that has one)",
    )
    p.add_argument("--smooth-001", type=int, default=40, help="smooth maps at interval 0.001")
    p.add_argument("--smooth-01", type=int, default=300, help="smooth maps at interval 0.01")
    p.add_argument("--noisy-001", type=int, default=2, help="noisy maps at interval 0.001")
    p.add_argument("--noisy-01", type=int, default=10, help="noisy maps at interval 0.01")
    p.add_argument("--threads", type=int, default=None, help="fast-path threads (default: all cores)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="repeat the fast path for at least this long")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.metadata is None:
        args.metadata = default_metadata()
    if not (args.metadata / "localization.txt").is_file():
        raise SystemExit(
            f"error: --metadata {args.metadata}: no localization.txt there "
            "(expected a wsolevaluation metadata folder such as .../wsol_metadata/CUB/test)"
        )
    all_boxes = read_cub_boxes(args.metadata)
    print(
        f"CUB test boxes: {len(all_boxes)} images from {args.metadata}; cores: {os.cpu_count()}; "
        f"fast-path threads: {args.threads or 'all'}; load average: {os.getloadavg()[0]:.2f}"
    )
    t0 = time.perf_counter()
    BoxAccumulator(interval=0.01).update(make_maps("smooth", 2, rng), all_boxes[:2])  # numba compile / cache load
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - t0:.1f} s")

    runs = [
        ("smooth", 0.001, args.smooth_001),
        ("smooth", 0.01, args.smooth_01),
        ("noisy", 0.001, args.noisy_001),
        ("noisy", 0.01, args.noisy_01),
    ]
    for kind, interval, n in runs:
        if n <= 0:
            continue
        maps = make_maps(kind, n, rng)
        gts = [all_boxes[i] for i in rng.choice(len(all_boxes), n, replace=False)]
        ref_counts, ref_s, ref_cpu = run_oracle(maps, gts, interval)
        fast_counts, fast_s, fast_cpu = run_fast(maps, gts, interval, args.threads, args.min_seconds)
        if not np.array_equal(ref_counts, fast_counts):
            raise SystemExit(f"{kind} interval {interval}: counts differ between the OpenCV oracle and the fast path")
        print(
            f"{kind:6s} interval={interval:<5} n={n:<4d} opencv-oracle {n / ref_s:9.2f} img/s   "
            f"fast {n / fast_s:9.1f} img/s   speedup {ref_s / fast_s:7.1f}x   "
            f"(CPU-time ratio {ref_cpu / fast_cpu:.1f}x; counts identical)",
            flush=True,
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
