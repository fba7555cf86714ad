"""uint8 batches normalised on the device (``EngineConfig.normalize_on_device``) against float32
batches from the workers: same images, same weights, same run; ``localize`` and ``classify``
alternate between the two, median of ``--reps``; identical numbers asserted.

Per task it prints both rates, the ``ratio`` (uint8 / float32), the bytes each image takes on its
way to the device, and the peak of /dev/shm (workers' batches) and, on CUDA, of pinned host memory.

``--free-model`` replaces the forward by a stored output (everything else is run): the host's side
alone, as on a GPU much faster than the decoding. On the CPU that is where the table lookup runs,
in the main process: hence the CPU default (off).

    python benchmarks/hand_over.py --device cuda --images 2048
    python benchmarks/hand_over.py --images 1024 --free-model      # CPU, host side only
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_common import host_header, host_parser, resolve_workers  # noqa: E402
from vs_peers import NUM_CLASSES, labelled_records  # noqa: E402

from simpool_bench import tasks as ev  # noqa: E402
from simpool_bench.engine import EngineConfig  # noqa: E402
from simpool_bench.models import build_model  # noqa: E402
from simpool_bench.models.base import ModelOutput  # noqa: E402
from simpool_bench.transforms import classification_transform  # noqa: E402


class ShmPeak:
    """The peak of /dev/shm's used bytes over a block, sampled every 5 ms."""

    def __enter__(self) -> ShmPeak:
        self.peak, self._stop = 0, threading.Event()
        self._base = self._used()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _used() -> int:
        try:
            return shutil.disk_usage("/dev/shm").used
        except OSError:
            return 0

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._used() - self._base)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def free_forward(model: torch.nn.Module, batch_size: int) -> None:
    """Replace ``model``'s forward by a stored output, its maps plus a sample of the input's
    pixels (so the numbers depend on the images, as the metrics need)."""
    with torch.inference_mode():
        ref = model._forward(torch.randn(batch_size, 3, 224, 224), None, False)

    def forward(x: torch.Tensor, target, return_keys: bool) -> ModelOutput:
        b, (h, w) = x.shape[0], ref.attn.shape[1:]
        attn = ref.attn[:b].to(x.device) + 0.1 * x[:, 0, :: x.shape[2] // h, :: x.shape[3] // w][:, :h, :w].float()
        return ModelOutput(ref.logits[:b].to(x.device), ref.features[:b].to(x.device), attn)

    model._forward = forward


def pinned_reset() -> None:
    """Empty the pinned host cache (each run starts cold, as a command does) and zero its peaks."""
    for name in ("_host_emptyCache",):
        fn = getattr(torch._C, name, None)
        if fn is not None:
            fn()
    reset = getattr(torch.cuda, "reset_peak_host_memory_stats", None)
    if reset is not None:
        reset()


def pinned_stats() -> tuple[int, float]:
    """(peak pinned bytes, total ms spent allocating pinned blocks) since ``pinned_reset``; zeros
    where this torch has no host allocator statistics."""
    stats = getattr(torch.cuda, "host_memory_stats", lambda: {})()
    return int(stats.get("allocated_bytes.peak", 0)), float(stats.get("host_alloc_time.total", 0)) / 1e3


def main() -> None:
    args = host_parser(__doc__, images=256, tasks="localize,classify").parse_args()
    workers = resolve_workers(args.workers)
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name(torch.device(args.device)) if cuda else "cpu"
    print(host_header(f"{args.device} ({name})", workers, args), flush=True)
    torch.manual_seed(1)
    model = build_model("vit_small_patch16_224", pool="simpool", num_classes=NUM_CLASSES).eval()
    if args.free_model:
        free_forward(model, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        records = labelled_records(Path(tmp) / "labelled", args.images, 1)
        transform = classification_transform(model.data_config)
        run = {
            "localize": lambda cfg: ev.localize(model, records, cfg, interval=0.001),
            "classify": lambda cfg: ev.classify(model, records, transform, cfg, num_classes=NUM_CLASSES),
        }
        differ: list[str] = []
        for task in args.tasks.split(","):
            times: dict[bool, list[float]] = {False: [], True: []}
            shm: dict[bool, int] = {False: 0, True: 0}
            pinned: dict[bool, tuple[int, float]] = {False: (0, 0.0), True: (0, 0.0)}
            rows: dict[bool, list] = {}
            for rep in range(args.reps + 1):  # rep 0 warms up (not timed)
                for flag in (False, True) if rep % 2 else (True, False):
                    cfg = EngineConfig(
                        device=args.device, batch_size=args.batch_size, workers=workers, progress=False, normalize_on_device=flag
                    )
                    if cuda:
                        torch.cuda.synchronize()
                        pinned_reset()
                        alloc_ms = pinned_stats()[1]
                    with ShmPeak() as peak:
                        t0 = time.perf_counter()
                        out = run[task](cfg)
                        dt = time.perf_counter() - t0
                    rows[flag] = out.rows
                    if rep:
                        times[flag].append(dt)
                        shm[flag] = max(shm[flag], peak.peak)
                        if cuda:
                            peak_bytes, ms = pinned_stats()
                            pinned[flag] = (max(pinned[flag][0], peak_bytes), max(pinned[flag][1], ms - alloc_ms))
            same = rows[True] == rows[False]
            differ += [] if same else [task]
            rate = {f: args.images / statistics.median(t) for f, t in times.items()}
            pin = ""
            if cuda:
                (b0, ms0), (b1, ms1) = pinned[False], pinned[True]
                pin = f", pinned peak {b0 / 2**20:.0f} -> {b1 / 2**20:.0f} MiB, pinning {ms0:.0f} -> {ms1:.0f} ms a run"
            print(
                f"{task:9s} float32 {rate[False]:8.1f} img/s  uint8 {rate[True]:8.1f} img/s  ratio {rate[True] / rate[False]:.2f}x  "
                f"(bytes/image {3 * 224 * 224 * 4:,} -> {3 * 224 * 224:,}; /dev/shm peak {shm[False] / 2**20:.0f} -> "
                f"{shm[True] / 2**20:.0f} MiB{pin}; numbers {'identical' if same else 'DIFFER'}; load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    if differ:
        raise SystemExit(f"error: uint8 and float32 hand-overs gave other numbers for {', '.join(differ)}")


if __name__ == "__main__":
    main()
