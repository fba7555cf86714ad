"""A localize run's start: the MaxBoxAcc kernels (numba, loaded from its disk cache) loaded in a
thread while the workers decode the first images and the first batches go forward (the engine's
``_WarmUp``, now), against loaded in the main thread while the workers decode (``warm_up`` called
in line, as before) and loaded by the first metric step, after the first batch has arrived. Each
run is a fresh process, as a command is; the same images, weights and numbers (asserted). It prints
the three times (median of ``--reps``), the ``ratio`` of each earlier way to now and the engine's
split of the run.

``--free-model`` replaces the forward by a stored output (``hand_over.free_forward``): the host's
side alone, as on a GPU, where a run's fixed costs weigh most.

    python benchmarks/warm_up.py --images 512 --free-model
    python benchmarks/warm_up.py --images 512 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_common import compile_kernels_elsewhere, host_header, host_parser, resolve_workers  # noqa: E402

#: The three ways a run loads the kernels, in the order printed: (name, label).
WAYS = (
    ("first-step", "kernels loaded by the first step"),
    ("in-line", "loaded in line while decoding"),
    ("thread", "loaded in a thread (now)"),
)


class _InLineWarmUp:
    """The warm-up as the engine ran it before ``_WarmUp``: in the main thread, right after the
    workers started (``wait`` then has nothing left to wait for)."""

    def __init__(self, accumulators) -> None:
        t0 = time.perf_counter()
        for acc in accumulators:
            acc.warm_up()
        self.done, self.seconds = False, time.perf_counter() - t0

    def wait(self) -> float:
        self.done = True
        return self.seconds


def child(records_file: str, way: str, device: str, free_model: bool, workers: int, batch_size: int) -> None:
    """One timed ``localize`` in this process; prints its time, rows and split as JSON."""
    import torch
    from hand_over import free_forward
    from vs_peers import NUM_CLASSES

    from simpool_bench import tasks as ev
    from simpool_bench.engine import EngineConfig, runner
    from simpool_bench.metrics.base import Accumulator
    from simpool_bench.metrics.boxacc import BoxAccumulator
    from simpool_bench.models import build_model

    if way == "first-step":  # the first metric step loads the kernels
        BoxAccumulator.warm_up = Accumulator.warm_up  # type: ignore[method-assign]
    elif way == "in-line":
        runner._WarmUp = _InLineWarmUp  # type: ignore[assignment,misc]
    with open(records_file, "rb") as f:
        records = pickle.load(f)
    torch.manual_seed(1)
    model = build_model("vit_small_patch16_224", pool="cls", num_classes=NUM_CLASSES).eval().to(device)
    if free_model:
        free_forward(model, batch_size)
    cfg = EngineConfig(device=device, batch_size=batch_size, workers=workers, progress=False)
    t0 = time.perf_counter()
    out = ev.localize(model, records, cfg, interval=0.001)
    seconds = time.perf_counter() - t0
    split = {k: out.extras[k] for k in ("loop_s", "data_wait_s", "step_s", "warm_up_s")}
    print(json.dumps({"seconds": seconds, "rows": out.rows, "split": split}, default=str))


def main() -> None:
    p = host_parser(__doc__, images=512)
    p.add_argument("--child", nargs=2, metavar=("RECORDS", "WAY"), help=argparse.SUPPRESS)
    args = p.parse_args()
    workers = resolve_workers(args.workers)
    if args.child:
        child(args.child[0], args.child[1], args.device, args.free_model, workers, args.batch_size)
        return
    from vs_peers import labelled_records

    print(host_header(args.device, workers, args), flush=True)
    # the kernels on disk first (a first-ever run compiles them once: not what is measured here)
    compile_kernels_elsewhere()
    with tempfile.TemporaryDirectory() as tmp:
        records_file = Path(tmp) / "records.pkl"
        records_file.write_bytes(pickle.dumps(labelled_records(Path(tmp) / "labelled", args.images, 1)))
        base = [sys.executable, __file__, "--device", args.device, "--batch-size", str(args.batch_size), "--workers", str(workers)]
        base += ["--free-model"] if args.free_model else []
        runs: dict[str, list[dict]] = {way: [] for way, _ in WAYS}
        for rep in range(args.reps):
            for way, _ in WAYS[rep % len(WAYS) :] + WAYS[: rep % len(WAYS)]:  # each way first in turn
                proc = subprocess.run([*base, "--child", str(records_file), way], capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    raise SystemExit(f"error: the {way} run failed:\n{proc.stderr}")
                runs[way].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first = runs["thread"][0]["rows"]
    same = all(r["rows"] == first for rs in runs.values() for r in rs)
    med = {way: statistics.median(r["seconds"] for r in rs) for way, rs in runs.items()}
    for way, label in WAYS:
        split = {k: statistics.median(r["split"][k] for r in runs[way]) for k in runs[way][0]["split"]}
        print(
            f"{label:34s} {med[way]:6.2f} s  {args.images / med[way]:7.1f} img/s  (loop {split['loop_s']:.2f} s: waiting for images "
            f"{split['data_wait_s']:.2f}, for the kernels {split['warm_up_s']:.2f}, metric steps {split['step_s']:.2f})",
            flush=True,
        )
    print(
        f"ratio {med['first-step'] / med['thread']:.2f}x against the first step, {med['in-line'] / med['thread']:.2f}x against in line"
        f"  (numbers {'identical' if same else 'DIFFER'}; load {os.getloadavg()[0]:.2f})"
    )
    if not same:
        raise SystemExit("error: the three ways gave other numbers")


if __name__ == "__main__":
    main()
