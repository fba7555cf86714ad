"""A localize run's start: the MaxBoxAcc kernels (numba, loaded from its disk cache) loaded while
the workers decode the first images (``Accumulator.warm_up``, the default) against loaded by the
first metric step, after the first batch has arrived (as before). Each run is a fresh process, as
a command is; the same images, weights and numbers (asserted). It prints both times (median of
``--reps``), the ``ratio`` (before / now) and the engine's split of the run.

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


def child(records_file: str, warm_up: bool, device: str, free_model: bool, workers: int, batch_size: int) -> None:
    """One timed ``localize`` in this process; prints its time, rows and split as JSON."""
    import torch
    from hand_over import free_forward
    from vs_peers import NUM_CLASSES

    from simpool_bench import tasks as ev
    from simpool_bench.engine import EngineConfig
    from simpool_bench.metrics.base import Accumulator
    from simpool_bench.metrics.boxacc import BoxAccumulator
    from simpool_bench.models import build_model

    if not warm_up:  # as before: the first metric step loads the kernels
        BoxAccumulator.warm_up = Accumulator.warm_up  # type: ignore[method-assign]
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
    p.add_argument("--child", nargs=2, metavar=("RECORDS", "ON"), help=argparse.SUPPRESS)
    args = p.parse_args()
    workers = resolve_workers(args.workers)
    if args.child:
        child(args.child[0], args.child[1] == "on", args.device, args.free_model, workers, args.batch_size)
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
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for rep in range(args.reps):
            for on in (True, False) if rep % 2 else (False, True):
                proc = subprocess.run(
                    [*base, "--child", str(records_file), "on" if on else "off"], capture_output=True, text=True, cwd=ROOT
                )
                if proc.returncode != 0:
                    raise SystemExit(f"error: the {'warm-up' if on else 'first-step'} run failed:\n{proc.stderr}")
                runs[on].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    same = all(r["rows"] == runs[True][0]["rows"] for r in runs[False] + runs[True])
    med = {on: statistics.median(r["seconds"] for r in rs) for on, rs in runs.items()}
    for on, label in ((False, "kernels loaded by the first step"), (True, "kernels loaded while decoding")):
        split = {k: statistics.median(r["split"][k] for r in runs[on]) for k in runs[on][0]["split"]}
        print(
            f"{label:34s} {med[on]:6.2f} s  {args.images / med[on]:7.1f} img/s  (loop {split['loop_s']:.2f} s: waiting for images "
            f"{split['data_wait_s']:.2f}, warm-up {split['warm_up_s']:.2f}, metric steps {split['step_s']:.2f})",
            flush=True,
        )
    print(f"ratio {med[False] / med[True]:.2f}x  (numbers {'identical' if same else 'DIFFER'}; load {os.getloadavg()[0]:.2f})")
    if not same:
        raise SystemExit("error: the two runs gave other numbers")


if __name__ == "__main__":
    main()
