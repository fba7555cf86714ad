"""simpool-bench against the peers' own evaluation loops: one run, the same generated images, the
same random weights, identical numbers asserted, one ``ratio`` line per task (peer time / ours).

* discovery, LOST ``main_lost.py``: one image per forward at full resolution (PIL decode,
  ToTensor, Normalize, zero-pad to 16), the last block's keys of a DINO ViT-S/16, then LOST's own
  ``lost()`` (tests/lost_reference.py, a literal copy) and ``corloc``; ours: ``evaluate.discover``
  (``--method lost``), which also forwards one image at a time. Same boxes for every image, same CorLoc.
* localization, wsolevaluation: batches through Resize(224x224)/ToTensor/Normalize (the model's
  mean and std, as ``localize`` uses them), the model's
  map, then per image ``cv2.resize``, ``normalize_scoremap`` and one ``cv2.findContours`` per
  threshold at interval 0.001 (tests/boxacc_oracle.py); ours: ``evaluate.localize``. Same
  MaxBoxAcc at IoU 30/50/70, and the same BoxAcc at every threshold.
* classification, timm ``validate.py`` with its defaults: a plain timm model, timm's own
  ``create_loader`` (its prefetcher transform, ``fast_collate`` and ``PrefetchLoader``, which
  normalises on the device), forward and ``timm.utils.accuracy`` top-1/top-5; ours:
  ``evaluate.classify`` with ``--prefetcher``'s transform (which also computes the maps path's
  features). Same top-1/top-5 counts.

Both sides decode with the same number of DataLoader workers (simpool-bench's default,
min(8, cores)); the peers keep their own batch sizes (LOST 1, wsolevaluation 64, timm 256 capped
at the image count). Weights are random (seeded): no download. Our MaxBoxAcc kernels are compiled
(numba, cached on disk) in another process before timing, as any run after the first finds them;
loading them is counted. ``--profile`` prints a cProfile of our localize run. ``--free-model``
replaces localization's forward on both sides by one stored output (``hand_over.free_forward``):
what is left is each side's host work (decoding, maps, boxes), the CPU's stand-in for a GPU whose
forward costs next to nothing.

    python benchmarks/vs_peers.py                 # --images 24: a couple of minutes on 2 cores
    python benchmarks/vs_peers.py --tasks timm --reps 5   # medians of 5 runs of both sides
    python benchmarks/vs_peers.py --images 96 --tasks lost,wsol
    python benchmarks/vs_peers.py --device cuda --images 512   # both sides on the GPU (fp32)
    python benchmarks/vs_peers.py --tasks wsol --images 512 --free-model   # host sides only
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the literal references live beside the tests
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_common import compile_kernels_elsewhere, resolve_workers  # noqa: E402

from simpool_bench import api  # noqa: E402
from simpool_bench import tasks as ev  # noqa: E402
from simpool_bench.data.records import Record  # noqa: E402
from simpool_bench.engine import EngineConfig  # noqa: E402
from simpool_bench.metrics.boxes import resize_boxes_wsol  # noqa: E402
from simpool_bench.models import build_model  # noqa: E402
from simpool_bench.transforms import IMAGENET_MEAN, IMAGENET_STD, classification_config, eval_transform, wsol_transform  # noqa: E402

import boxacc_oracle as oracle  # noqa: E402
import lost_reference as lost_ref  # noqa: E402
from voc_files import write_voc_image, write_voc_split  # noqa: E402

# VOC-like full-resolution sizes (width, height): several images share a padded size
SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 400), (480, 360)]
NUM_CLASSES = 10


# ------------------------------------------------------------------------------------------ data
def _image(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    img = rng.integers(0, 110, (h, w, 3), dtype=np.uint8)
    bw, bh = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    img[y0 : y0 + bh, x0 : x0 + bw] = rng.integers(150, 256, 3, dtype=np.uint8)
    return img, (x0, y0, x0 + bw - 1, y0 + bh - 1)


def write_voc(root: Path, n: int, seed: int) -> Path:
    """A VOC2007 layout of n JPEGs of the SIZES (interleaved), one object each."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        img, box = _image(rng, w, h)
        ids.append(f"{2007_000000 + i:06d}")
        write_voc_image(root, ids[-1], img, box)
    return write_voc_split(root, ids)


def labelled_records(folder: Path, n: int, seed: int) -> list[Record]:
    """n JPEGs with a class label and one box (wsolevaluation convention, original pixels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        img, box = _image(rng, w, h)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        out.append(
            Record(
                image_id=path.name,
                path=str(path),
                label=int(rng.integers(0, NUM_CLASSES)),
                width=w,
                height=h,
                boxes=np.asarray([box], dtype=np.float64),
            )
        )
    return out


class _PilDataset(torch.utils.data.Dataset):
    """What the peers' loaders do: PIL open + convert("RGB"), the transform, the label (and the index,
    unless ``with_index`` is off: timm's loader takes (image, label), and ``create_loader`` sets the
    transform itself)."""

    def __init__(self, records: list[Record], transform=None, with_index: bool = True) -> None:
        self.records, self.transform, self.with_index = records, transform, with_index

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        rec = self.records[i]
        with open(rec.path, "rb") as f:
            img = Image.open(f).convert("RGB")
        img = img if self.transform is None else self.transform(img)
        return (img, rec.label, i) if self.with_index else (img, rec.label)


# ------------------------------------------------------------------------------------------ tasks
def task_lost(records: list[Record], workers: int, batch_size: int, device: str) -> tuple[float, float, str]:
    """LOST's loop against ``evaluate.discover --method lost``: boxes and CorLoc identical."""
    from torchvision import transforms as T

    torch.manual_seed(0)
    model = build_model("vit_small_patch16_224", pool="cls", variant="dino", num_classes=0).eval().to(device)
    to_tensor = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = torch.utils.data.DataLoader(_PilDataset(records, to_tensor), batch_size=1, num_workers=workers)
    t0 = time.perf_counter()
    peer_boxes, hits = {}, 0
    with torch.no_grad():
        for img, _, idx in loader:  # main_lost.py: one image per forward
            img = img[0]
            init_image_size = img.shape
            size_im = (img.shape[0], int(np.ceil(img.shape[1] / 16) * 16), int(np.ceil(img.shape[2] / 16) * 16))
            paded = torch.zeros(size_im)
            paded[:, : img.shape[1], : img.shape[2]] = img
            w_featmap, h_featmap = paded.shape[-2] // 16, paded.shape[-1] // 16
            feats = model(paded[None].to(device), return_keys=True).keys  # the last block's keys of the patches
            pred, _, _, _ = lost_ref.lost(feats, [w_featmap, h_featmap], [16, 16], init_image_size, k_patches=100)
            i = int(idx)
            peer_boxes[i] = tuple(int(v) for v in pred)
            hits += lost_ref.corloc_hit(np.asarray(pred).astype(np.int64), np.asarray(records[i].boxes, dtype=np.int64))
    peer_s = time.perf_counter() - t0
    ours_boxes = {}

    def keep(idx, boxes, _hits):
        for i, b in zip(idx, boxes):
            ours_boxes[int(i)] = tuple(int(v) for v in b)

    cfg = EngineConfig(device=device, batch_size=batch_size, workers=workers, progress=False)
    t0 = time.perf_counter()
    out = ev.discover(model, records, cfg, method="lost", on_boxes=keep)
    ours_s = time.perf_counter() - t0
    assert ours_boxes == peer_boxes, "LOST: boxes differ"
    corloc = out.rows[0]["value"]
    assert corloc == 100.0 * hits / len(records), (corloc, hits)
    return peer_s, ours_s, f"CorLoc {corloc:.2f}, {len(records)} boxes identical"


def task_wsol(records: list[Record], workers: int, batch_size: int, device: str) -> tuple[float, float, str]:
    """wsolevaluation's CAMComputer + BoxEvaluator (OpenCV per threshold) against ``evaluate.localize``."""
    torch.manual_seed(1)
    model = build_model("vit_small_patch16_224", pool="cls", num_classes=NUM_CLASSES).eval().to(device)
    if FREE_MODEL["wsol"]:  # both sides get the same stored output: the hosts' sides alone, as on a fast GPU
        from hand_over import free_forward

        free_forward(model, min(64, len(records)))
    # wsolevaluation's transform with the model's own mean/std (as localize and any user adapting it does)
    transform = wsol_transform(model.data_config["mean"], model.data_config["std"])
    loader = torch.utils.data.DataLoader(_PilDataset(records, transform), batch_size=min(64, len(records)), num_workers=workers)
    thresholds = oracle.reference_thresholds(0.001)
    ious = (30, 50, 70)
    counts = np.zeros((len(ious), len(thresholds)), dtype=np.int64)
    t0 = time.perf_counter()
    with torch.no_grad():
        for images, _, idx in loader:
            cams = model(images.to(device)).attn.float().cpu().numpy()
            for cam, i in zip(cams, idx.tolist()):
                rec = records[i]
                u8 = oracle.quantise(oracle.reference_scoremap(cam))
                gt = resize_boxes_wsol(np.asarray(rec.boxes), rec.width, rec.height)
                counts += oracle.reference_hits(u8, gt, thresholds, ious)
    peer_s = time.perf_counter() - t0
    peer = {iou: float((counts[j] * 100.0 / len(records)).max()) for j, iou in enumerate(ious)}
    cfg = EngineConfig(device=device, batch_size=batch_size, workers=workers, progress=False)
    profiler = cProfile.Profile() if PROFILE["wsol"] else None
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    out = ev.localize(model, records, cfg, interval=0.001)
    if profiler is not None:
        profiler.disable()
    ours_s = time.perf_counter() - t0
    main_cpu, workers_cpu = (b - a for a, b in zip(cpu0, _cpu_seconds()))  # the workers have exited: counted
    if profiler is not None:  # the main thread's own time, heaviest first (time outside Python shows as waits)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats(PROFILE["sort"]).print_stats(25)
    ours = {r["iou_threshold"]: r["value"] for r in out.rows if r["metric"] == "maxboxacc"}
    assert ours == peer, (ours, peer)
    # BoxAcc at every threshold, not only its maxima (which runs of these images can saturate at 100)
    curve = out.extras["curve"]  # (T, J) percent, as BoxAccumulator.compute divides
    assert np.array_equal(curve, counts.T * 100.0 / float(len(records))), "BoxAcc curves differ"
    loop_s, wait_s, step_s, warm_s = (out.extras[k] for k in ("loop_s", "data_wait_s", "step_s", "warm_up_s"))
    return (
        peer_s,
        ours_s,
        "MaxBoxAcc@30/50/70 "
        + "/".join(f"{peer[i]:.2f}" for i in ious)
        + f" and BoxAcc at all {len(thresholds)} thresholds identical; ours: {ours_s:.2f} s = batch loop {loop_s:.2f} s (of it {wait_s:.2f} s waiting for images,"
        + f" {warm_s:.2f} s waiting for the kernels, which load in a thread meanwhile, {step_s:.2f} s in metric steps)"
        + f" + {ours_s - loop_s:.2f} s outside it ({out.extras['per_image_s']:.2f} s of it the per-image boxes);"
        + f" CPU per image: main process {1e3 * main_cpu / len(records):.2f} ms,"
        + f" decoding workers {1e3 * workers_cpu / len(records):.2f} ms",
    )


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its children that have exited (DataLoader workers)."""
    import resource

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def task_timm(records: list[Record], workers: int, batch_size: int, device: str) -> tuple[float, float, str]:
    """timm validate.py's default loop (plain timm model, timm's create_loader with its prefetcher,
    accuracy) against ``evaluate.classify`` with the prefetcher's pixels."""
    import timm
    from timm.data import create_loader
    from timm.utils import accuracy

    torch.manual_seed(2)
    ours_model = build_model("vit_small_patch16_224", pool="cls", num_classes=NUM_CLASSES).eval()
    net = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=NUM_CLASSES).eval()
    net.load_state_dict(ours_model.state_dict())
    net = net.to(device)
    data_cfg = ours_model.data_config
    transform = eval_transform(classification_config(data_cfg), prefetcher=True)
    loader = create_loader(
        _PilDataset(records, with_index=False),
        input_size=data_cfg["input_size"],
        batch_size=min(256, len(records)),
        use_prefetcher=True,
        interpolation=data_cfg["interpolation"],
        mean=data_cfg["mean"],
        std=data_cfg["std"],
        num_workers=workers,
        crop_pct=data_cfg["crop_pct"],
        crop_mode=data_cfg.get("crop_mode", "center"),
        device=torch.device(device),
        img_dtype=torch.float32,
    )
    correct1 = correct5 = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for images, target in loader:
            output = net(images)
            acc1, acc5 = accuracy(output, target, topk=(1, 5))  # percent of the batch
            correct1 += int(round(acc1.item() * images.shape[0] / 100))
            correct5 += int(round(acc5.item() * images.shape[0] / 100))
    peer_s = time.perf_counter() - t0
    cfg = EngineConfig(device=device, batch_size=batch_size, workers=workers, progress=False)
    t0 = time.perf_counter()
    out = ev.classify(ours_model, records, transform, cfg, num_classes=NUM_CLASSES)
    ours_s = time.perf_counter() - t0
    vals = {r["metric"]: r["value"] for r in out.rows}
    n = len(records)
    assert round(vals["top1"] * n / 100) == correct1 and round(vals["top5"] * n / 100) == correct5, (vals, correct1, correct5)
    return peer_s, ours_s, f"top-1 {vals['top1']:.2f} top-5 {vals['top5']:.2f} identical"


#: --profile: profile our localize run (main thread, cProfile) and print its heaviest functions.
PROFILE: dict[str, Any] = {"wsol": False, "sort": "tottime"}
#: --free-model: localization's forward replaced by a stored output on both sides.
FREE_MODEL = {"wsol": False}

TASKS = {
    "lost": ("discovery vs LOST main_lost.py", task_lost, 16),
    "wsol": ("localization vs wsolevaluation", task_wsol, 64),
    "timm": ("classification vs timm validate", task_timm, 64),
}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda: no CUDA device is visible")
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=24, help="images per task (the size flag)")
    p.add_argument("--tasks", default="lost,wsol,timm")
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers on both sides (default min(8, cores); 0 where workers cannot start)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reps",
        type=int,
        default=1,
        help="run each task's pair this many times and print the median times (at 24 images, timm's loop and ours are one batch each: one forward pass, whose time varies by 10-20%% from run to run)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda: both sides run there (fp32, as the peers do)")
    p.add_argument(
        "--profile",
        nargs="?",
        const="tottime",
        choices=("tottime", "cumtime"),
        help="profile our localize run (cProfile, main thread): its 25 heaviest functions by own time (default) or cumulative time",
    )
    p.add_argument(
        "--free-model",
        action="store_true",
        help="localization only: both sides' forward replaced by a stored output (the hosts' sides alone, as on a GPU much faster than them)",
    )
    args = p.parse_args()
    if args.reps < 1:
        p.error(f"--reps {args.reps}: expected 1 or more")
    PROFILE.update(wsol=args.profile is not None, sort=args.profile or "tottime")
    FREE_MODEL["wsol"] = args.free_model
    workers = resolve_workers(args.workers)  # the engine's own fallback
    print(
        f"device {_device_name(args.device)}, cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, workers {workers}, "
        f"images {args.images}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    if "wsol" in args.tasks.split(","):
        # numba compiles our MaxBoxAcc kernels once and caches them on disk; every later run loads
        # them (counted below). Compile in another process, so this one still loads them as a run does.
        t0 = time.perf_counter()
        compile_kernels_elsewhere()
        print(
            f"numba kernels ready on disk before timing: {time.perf_counter() - t0:.1f} s (a first-ever run compiles them once)", flush=True
        )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        voc = api.read_discovery_data("voc07", write_voc(tmp / "VOC2007", args.images, args.seed))
        labelled = labelled_records(tmp / "labelled", args.images, args.seed + 1)
        for name in args.tasks.split(","):
            title, fn, bs = TASKS[name]
            recs = voc if name == "lost" else labelled
            times = []
            for _ in range(args.reps):  # both sides, numbers asserted, each time
                peer_s, ours_s, what = fn(recs, workers, bs, args.device)
                times.append((peer_s, ours_s))
            peer_s, ours_s = (statistics.median(t) for t in zip(*times))
            ratios = sorted(peer / ours for peer, ours in times)
            spread = (
                f"; median of {args.reps}: ratios {ratios[0]:.2f}-{ratios[-1]:.2f}, the details the last run's" if args.reps > 1 else ""
            )
            print(
                f"{title:34s} peer {len(recs) / peer_s:7.2f} img/s  simpool-bench {len(recs) / ours_s:7.2f} img/s  "
                f"ratio {peer_s / ours_s:.1f}x  ({what}; load {os.getloadavg()[0]:.2f}{spread})",
                flush=True,
            )


if __name__ == "__main__":
    main()
