"""What per-image records cost a localize run: time and memory of ``WsolTask`` scoring random maps
with its ``PerImageAccumulator`` (and the per-image table: one box per image at the end) against
the same scoring without it, in the same run. Counts must be identical, or it fails. Then the
table's box pass alone, on one thread against one per core (identical tables asserted), and its
boxes from the kernel (``best_wsol_box``) against OpenCV's contours (``best_box_opencv``, the
reference's way), both on one thread per core (identical boxes and IoUs asserted).

    python benchmarks/per_image_cost.py [--n 2000] [--grid 14] [--interval 0.001]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simpool_bench.data.records import Record  # noqa: E402
from simpool_bench.metrics.boxacc import prepare_scoremap, run_chunks  # noqa: E402
from simpool_bench.tasks.wsol import WsolTask, best_box_opencv, best_wsol_box  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--grid", type=int, default=14)
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    xs, ys = np.sort(rng.integers(0, 400, (args.n, 2)), axis=1), np.sort(rng.integers(0, 300, (args.n, 2)), axis=1)
    records = [
        Record(f"im{i}", Path(f"im{i}.jpg"), label=0, width=400, height=300, boxes=np.array([[xs[i, 0], ys[i, 0], xs[i, 1], ys[i, 1]]]))
        for i in range(args.n)
    ]
    maps = rng.random((args.n, args.grid, args.grid)).astype(np.float32)
    task = WsolTask(records, interval=args.interval)

    def run(per_image: bool) -> tuple[float, dict]:
        accs = task.accumulators()
        if not per_image:
            del accs["per_image"]
        t0 = time.perf_counter()
        for s in range(0, args.n, args.batch):
            idx = np.arange(s, min(s + args.batch, args.n))
            task.score(accs, maps[idx], idx, np.ones(len(idx), dtype=bool), None, False)
        if per_image:
            task.per_image(accs)
        return time.perf_counter() - t0, accs

    run(True)  # compile the kernels
    base_s, base = run(False)
    per_s, per = run(True)
    assert np.array_equal(base["boxacc"].correct.numpy(), per["boxacc"].correct.numpy()), "counts differ"
    state = per["per_image"].state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    print(
        f"{args.n} maps {args.grid}x{args.grid}, interval {args.interval}: without per-image {base_s:.2f} s, with {per_s:.2f} s "
        f"(ratio {per_s / base_s:.2f}); state {nbytes / args.n:.0f} bytes per image "
        + ", ".join(f"{k} {t[0].numel() * t.element_size() if t.numel() else 0}" for k, t in state.items())
    )
    times: dict[int | None, list[float]] = {1: [], None: []}
    tables = {}
    for _ in range(3):
        for threads in (1, None):
            t0 = time.perf_counter()
            tables[threads] = task.per_image(per, num_threads=threads)
            times[threads].append(time.perf_counter() - t0)
    assert tables[1].equals(tables[None]), "per-image tables differ"
    one, every = min(times[1]), min(times[None])
    print(
        f"per-image table ({args.n} boxes): one thread {one:.2f} s, one per core ({os.cpu_count()}) {every:.2f} s (ratio {one / every:.2f}x)"
    )
    thr = float(per["boxacc"].compute().best_threshold[50])
    found: dict[str, list] = {"kernel": [None] * args.n, "opencv": [None] * args.n}

    def kernel(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            found["kernel"][i] = best_wsol_box(maps[i], task.gts[i], thr)

    def opencv(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            found["opencv"][i] = best_box_opencv(prepare_scoremap(maps[i]), task.gts[i].astype(np.float64), thr)

    best = {"kernel": np.inf, "opencv": np.inf}
    for _ in range(3):
        for name, fn in (("opencv", opencv), ("kernel", kernel)):
            t0 = time.perf_counter()
            run_chunks(fn, args.n)
            best[name] = min(best[name], time.perf_counter() - t0)
    same = all(a[0].tolist() == b[0].tolist() and a[1] == b[1] for a, b in zip(found["kernel"], found["opencv"]))
    assert same, "boxes differ"
    print(
        f"per-image boxes at threshold {thr:.3f} ({args.n} maps, one thread per core): OpenCV contours {best['opencv']:.2f} s, "
        f"kernel {best['kernel']:.2f} s (ratio {best['opencv'] / best['kernel']:.2f}x; boxes and IoUs identical)"
    )


if __name__ == "__main__":
    main()
