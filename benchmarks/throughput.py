"""Inference throughput and memory: a plain timm forward against simpool-bench's forward with
attention maps and metric updates, same weights, same batches, same run.

For each model (ViT-S/16, ResNet-50), pooling and precision, on the same pre-decoded batches:

* ``plain``: ``timm.create_model`` with the same configuration and weights; for SimPool, timm's
  backbone + timm's own ``SimPool1d/2d`` layer + the classifier (our model is built with
  ``min_scope='channel'`` and eps 1e-5 so that the two compute the same function; the script
  prints the largest logit difference);
* ``ours``: our ``BenchModel`` forward: logits, features and the attention map from one pass
  (SimPool attention, the last block's CLS attention, or the CAM), inside the whole engine
  (``engine.evaluate``: DataLoader, shards, host copies) with the localize workflow's metric
  updates: top-k on the logits and MaxBoxAccV2 (``BoxAccumulator``, interval 0.001, Top-1 Loc).

``--mode paired`` (default on CPU): one engine pass in which every batch runs the plain forward
and ours back to back (alternating the order), each timed, and the metric step timed. The
overhead is the median per-batch ratio ours/plain - 1 (maps), plus the median step/plain
(metrics), plus the rest of the engine's loop time over the plain time (engine). Pairing makes the
ratio robust to cores shared with other work, where whole-pass timings drift by more than 5%.
``--mode pass`` (default on GPU, where the engine overlaps host work with the device): whole
passes of plain, ours-without-metrics and the engine, interleaved, median of ``--reps``; the engine
collates batches in ``--engine-workers`` DataLoader workers (default: min(8, cores) on a GPU, as a run).
The pre-decoded images are uint8 normalised by ``ToTensor`` + ``Normalize``'s table; the engine
passes hand the device uint8 images off the CPU and float32 on it, as a run does (``--hand-over``).

It also prints the decoding speed of the data pipeline (JPEG 500x375, timm eval transform) per
worker against the model's, and the peak host memory (VmHWM) of a full ``evaluate.localize`` run
(workers 0) over 1x and 10x the images, each in its own process. Targets: overhead <= 5% on CPU;
peak memory at 10x within 10% of 1x.

    python benchmarks/throughput.py                                  # CPU, fp32 and bf16
    python benchmarks/throughput.py --device cuda --batch-size 128 --images 1024
    python benchmarks/throughput.py --models resnet50 --amp off --reps 7 --no-memory
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
from timm.layers import SimPool1d, SimPool2d  # noqa: E402

from simpool_bench.data.records import Record  # noqa: E402
from simpool_bench.engine import Batch, EngineConfig, autocast, evaluate, resolve_device  # noqa: E402
from simpool_bench.metrics.boxacc import BoxAccumulator  # noqa: E402
from simpool_bench.metrics.classification import TopKAccumulator  # noqa: E402
from simpool_bench.models import BenchModel, build_model  # noqa: E402
from simpool_bench.workers import default_workers  # noqa: E402

POOLS = {"vit_small_patch16_224": ("simpool", "cls"), "resnet50": ("simpool", "gap")}
NUM_CLASSES = 1000
SIDE = 224
TIMM_SIMPOOL_EPS = 1e-5  # timm SimPool1d/2d: nn.LayerNorm default eps
JPEG_SIZE = (500, 375)  # a typical ImageNet/VOC photograph
OVERHEAD_TARGET = 0.05
MEMORY_TARGET = 0.10
HAND_OVER = {"auto": None, "uint8": True, "float32": False}  # EngineConfig.normalize_on_device


# ------------------------------------------------------------------------------------------ models
def build_pair(arch: str, pool: str) -> tuple[BenchModel, Callable[[torch.Tensor], torch.Tensor], torch.nn.Module]:
    """Our model and a plain timm forward with the same configuration and the same weights."""
    ours = build_model(arch, pool=pool, num_classes=NUM_CLASSES, min_scope="channel", simpool_eps=TIMM_SIMPOOL_EPS).eval()
    sd = ours.state_dict()
    if ours.family == "vit":
        if pool == "simpool":
            net = timm.create_model(
                arch, pretrained=False, num_classes=NUM_CLASSES, class_token=False, global_pool="", fc_norm=False, dynamic_img_size=True
            )
        else:
            net = timm.create_model(
                arch, pretrained=False, num_classes=NUM_CLASSES, global_pool="token" if pool == "cls" else "avg", dynamic_img_size=True
            )
    else:
        net = timm.create_model(arch, pretrained=False, num_classes=NUM_CLASSES)
    if pool != "simpool":
        net.load_state_dict(sd)
        net.eval()
        return ours, net, net
    prefix = "gp.pool." if ours.family == "vit" else "global_pool.pool."
    backbone = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    missing, unexpected = net.load_state_dict(backbone, strict=False)
    assert not unexpected and all(k.startswith(("global_pool", "head.global_pool")) for k in missing), (missing, unexpected)
    gamma = ours.gamma
    layer = (SimPool1d if ours.family == "vit" else SimPool2d)(ours.num_features, gamma=gamma)
    layer.load_state_dict(
        {
            "q.weight": sd[prefix + "wq.weight"],
            "k.weight": sd[prefix + "wk.weight"],
            "norm.weight": sd[prefix + "norm_patches.weight"],
            "norm.bias": sd[prefix + "norm_patches.bias"],
        }
    )
    holder = torch.nn.ModuleDict({"net": net.eval(), "pool": layer.eval()})
    head = net.head if ours.family == "vit" else net.fc

    def plain(x: torch.Tensor) -> torch.Tensor:
        return head(layer(net.forward_features(x)))

    return ours, plain, holder


# ------------------------------------------------------------------------------------------ data
def synthetic_batches(n: int, batch: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor, list[np.ndarray], Decoded]:
    """224x224 images (smooth noise with a bright box) as uint8, normalised (ImageNet mean/std) by
    the table ``ToTensor`` + ``Normalize`` give: float batches, labels, GT boxes (224 pixels) and
    the engine's dataset of them."""
    from torchvision import transforms as T

    from simpool_bench.data.normalize import split_normalize
    from simpool_bench.transforms import IMAGENET_MEAN, IMAGENET_STD

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    images = torch.nn.functional.interpolate(torch.rand(n, 3, 28, 28, generator=g), size=(SIDE, SIDE), mode="bilinear")
    boxes = []
    for i in range(n):
        x0, y0 = rng.integers(0, 120, size=2)
        x1, y1 = x0 + rng.integers(40, 100), y0 + rng.integers(40, 100)
        images[i, :, y0:y1, x0:x1] += 1.0
        boxes.append(np.array([[x0, y0, x1, y1]], dtype=np.int64))
    u8 = (images / images.max() * 255).round().to(torch.uint8)
    split = split_normalize(T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]))
    assert split is not None
    data = Decoded(u8, split[1])
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return list(data.images.split(batch)), labels, boxes, data


class _Items(torch.utils.data.Dataset):
    """Item ``i`` of stacked images: ``(images[i], i, ok)``."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], i, True


class Decoded(_Items):
    """Pre-decoded float32 images for the engine, made from uint8 ones by the transform's table; as
    an ``ImageDataset`` does, it offers the engine the uint8 images and the device step
    (``deferred_normalize``), which the engine takes off the CPU."""

    def __init__(self, u8: torch.Tensor, on_device: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__(on_device(u8))
        self.u8, self.on_device = u8, on_device

    def head(self, n: int) -> Decoded:
        return Decoded(self.u8[:n], self.on_device)

    def deferred_normalize(self) -> tuple[_Items, Callable[[torch.Tensor], torch.Tensor]]:
        return _Items(self.u8), self.on_device


def write_jpegs(folder: Path, n: int, seed: int = 0) -> list[Record]:
    """``n`` JPEG photographs-to-be (500x375 noise with a bright box) and their records (one box each)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    w, h = JPEG_SIZE
    for i in range(n):
        arr = rng.integers(0, 120, size=(h // 8, w // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(arr).resize((w, h), Image.BILINEAR)).copy()
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x1, y1 = x0 + int(rng.integers(60, w // 2)), y0 + int(rng.integers(60, h // 2))
        img[y0:y1, x0:x1] = rng.integers(150, 256, size=3, dtype=np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        records.append(Record(path.stem, path, i % NUM_CLASSES, w, h, np.array([[x0, y0, x1 - 1, y1 - 1]], dtype=np.float64)))
    return records


# ------------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_plain(fn: Callable[[torch.Tensor], Any], batches: list[torch.Tensor], device: torch.device, amp: str) -> float:
    _sync(device)
    t = time.perf_counter()
    with torch.inference_mode(), autocast(device, amp):
        for x in batches:
            out = fn(x.to(device, non_blocking=True))
    del out
    _sync(device)
    return time.perf_counter() - t


def time_maps(model: BenchModel, batches: list[torch.Tensor], device: torch.device, amp: str) -> float:
    _sync(device)
    t = time.perf_counter()
    with torch.inference_mode(), autocast(device, amp):
        for x in batches:
            out = model(x.to(device, non_blocking=True))
            assert out.attn is not None
    del out
    _sync(device)
    return time.perf_counter() - t


def _localize_accumulators() -> dict[str, Any]:
    return {"topk": TopKAccumulator(NUM_CLASSES), "boxacc": BoxAccumulator()}


def _localize_step(labels: torch.Tensor, boxes: list[np.ndarray]) -> Callable[[Batch, dict[str, Any]], None]:
    """The localize workflow's metric updates, as ``evaluate.localize``'s step makes them."""

    def step(batch: Batch, accs: dict[str, Any]) -> None:
        tgt = labels[torch.as_tensor(batch.indices)]
        hits = accs["topk"].update(batch.output.logits, tgt)
        accs["boxacc"].update(batch.output.attn.float().numpy(), [boxes[i] for i in batch.indices], correct_cls=hits.numpy())

    return step


def time_engine(model: BenchModel, images: Decoded, labels: torch.Tensor, boxes: list[np.ndarray], config: EngineConfig) -> float:
    """One whole pass of the engine with the localize workflow's updates."""
    has_cam = model.attn_source == "cam"

    def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
        return m(x, target=labels[torch.as_tensor(idx)].to(x.device) if has_cam else None)

    device = resolve_device(config.device)
    _sync(device)
    t = time.perf_counter()
    evaluate(model, images, _localize_accumulators, _localize_step(labels, boxes), config, forward=forward)
    _sync(device)
    return time.perf_counter() - t


def paired_engine_pass(
    ours: BenchModel,
    plain: Callable[[torch.Tensor], Any],
    images: Decoded,
    labels: torch.Tensor,
    boxes: list[np.ndarray],
    config: EngineConfig,
) -> dict[str, Any]:
    """One engine pass in which every batch also runs the plain timm forward, back to back with
    ours (alternating which goes first), each timed, and the metric step timed: paired per-batch
    ratios are robust to a machine whose load drifts (other processes on the same cores)."""
    device = resolve_device(config.device)
    has_cam = ours.attn_source == "cam"
    t_plain: list[float] = []
    t_ours: list[float] = []
    t_step: list[float] = []
    step = _localize_step(labels, boxes)

    def forward(m: torch.nn.Module, x: torch.Tensor, idx: np.ndarray) -> Any:
        target = labels[torch.as_tensor(idx)].to(x.device) if has_cam else None
        first_plain = len(t_plain) % 2 == 0
        if first_plain:
            _sync(device)
            t = time.perf_counter()
            plain(x)
            _sync(device)
            t_plain.append(time.perf_counter() - t)  # noqa: E702
        _sync(device)
        t = time.perf_counter()
        out = m(x, target=target)
        _sync(device)
        t_ours.append(time.perf_counter() - t)  # noqa: E702
        if not first_plain:
            _sync(device)
            t = time.perf_counter()
            plain(x)
            _sync(device)
            t_plain.append(time.perf_counter() - t)  # noqa: E702
        return out

    def timed_step(batch: Batch, accs: dict[str, Any]) -> None:
        t = time.perf_counter()
        step(batch, accs)
        t_step.append(time.perf_counter() - t)

    t = time.perf_counter()
    evaluate(ours, images, _localize_accumulators, timed_step, config, forward=forward)
    total = time.perf_counter() - t
    return {"plain": t_plain, "ours": t_ours, "step": t_step, "engine_rest": total - sum(t_plain) - sum(t_ours) - sum(t_step)}


def engine_workers(args: argparse.Namespace, device: torch.device) -> int:
    """``--engine-workers``, else 0 on the CPU and min(8, cores) on a GPU."""
    if args.engine_workers is not None:
        return args.engine_workers
    return 0 if device.type == "cpu" else default_workers()


def bench_overhead(arch: str, pool: str, amp: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    ours, plain, holder = build_pair(arch, pool)
    ours.to(device)
    holder.to(device)
    batches, labels, boxes, images = synthetic_batches(args.images, args.batch_size)
    with torch.inference_mode():
        x = batches[0][:2].to(device)
        diff = float((ours(x).logits - plain(x)).abs().max())
    config = EngineConfig(
        device=str(device),
        batch_size=args.batch_size,
        amp=amp,
        progress=False,
        shard_size=args.images,
        workers=engine_workers(args, device),
        normalize_on_device=HAND_OVER[args.hand_over],
    )
    out: dict[str, Any] = {"arch": arch, "pool": pool, "amp": amp, "diff": diff}
    if args.mode == "paired":
        paired_engine_pass(ours, plain, images.head(args.batch_size), labels, boxes, config)  # warm-up
        runs = [paired_engine_pass(ours, plain, images, labels, boxes, config) for _ in range(args.reps)]
        p = np.concatenate([r["plain"] for r in runs])
        o = np.concatenate([r["ours"] for r in runs])
        st = np.concatenate([r["step"] for r in runs])
        rest = sum(r["engine_rest"] for r in runs) / p.sum()
        out["overhead_maps"] = float(np.median(o / p) - 1)
        out["overhead_metrics"] = float(np.median(st / p))
        out["overhead_engine"] = float(rest)
        out["overhead_total"] = out["overhead_maps"] + out["overhead_metrics"] + out["overhead_engine"]
        out["img_s"] = {
            "plain": float(len(p) * args.batch_size / p.sum() if args.images % args.batch_size == 0 else float("nan")),
            "ours": float(len(o) * args.batch_size / o.sum() if args.images % args.batch_size == 0 else float("nan")),
        }
        out["pairs"] = len(p)
        return out
    timers = {
        "plain": lambda: time_plain(plain, batches, device, amp),
        "maps": lambda: time_maps(ours, batches, device, amp),
        "engine": lambda: time_engine(ours, images, labels, boxes, config),
    }
    for name in timers:  # warm-up (lazy init, numba kernels, allocator), not counted
        timers[name]()
    runs: dict[str, list[float]] = {k: [] for k in timers}
    order = list(timers)
    for rep in range(args.reps):
        for name in order[rep % 3 :] + order[: rep % 3]:
            runs[name].append(timers[name]())
    med = {k: statistics.median(v) for k, v in runs.items()}
    out.update(
        runs=runs,
        img_s={k: args.images / v for k, v in med.items()},
        overhead_maps=med["maps"] / med["plain"] - 1,
        overhead_total=med["engine"] / med["plain"] - 1,
    )
    return out


# ------------------------------------------------------------------------------------------ decoding
DECODE_BATCH = 16  # small batches keep every worker busy (a worker decodes one whole batch)


def bench_decode(records: list[Record], workers: int, batch: int = DECODE_BATCH, uint8: bool = False) -> float:
    """Images/s of the data pipeline alone: JPEG decode + timm eval transform + collate, over the
    records repeated to 32 batches per worker (steady state: worker start-up is a small share);
    ``uint8``: the workers' part of the transform only, as handed to a GPU (``deferred_normalize``),
    2 batches in flight per worker as in the engine."""
    from simpool_bench.data.images import ImageDataset
    from simpool_bench.engine import collate_with_failures
    from simpool_bench.transforms import classification_transform

    cfg = build_model("resnet50", pool="gap", num_classes=NUM_CLASSES).data_config
    n = max(len(records), 32 * batch * max(1, workers))
    ds: Any = ImageDataset([records[i % len(records)] for i in range(n)], classification_transform(cfg))
    if uint8:
        ds = ds.deferred_normalize()[0]
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch, num_workers=workers, collate_fn=collate_with_failures, prefetch_factor=2 if workers else None
    )
    t = time.perf_counter()
    n = sum(len(b[1]) for b in loader)
    return n / (time.perf_counter() - t)


# ------------------------------------------------------------------------------------------ memory
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def memory_child(spec: dict[str, Any]) -> None:
    """One full ``evaluate.localize`` run in this process; prints JSON with the peak RSS."""
    from simpool_bench import tasks as ev

    base = json.loads(Path(spec["records"]).read_text())
    records = [
        Record(
            f"{i}",
            Path(base[i % len(base)]["path"]),
            base[i % len(base)]["label"],
            *JPEG_SIZE,
            np.asarray(base[i % len(base)]["boxes"], dtype=np.float64),
        )
        for i in range(spec["n"])
    ]
    torch.manual_seed(0)
    model = build_model(spec["arch"], pool=spec["pool"], num_classes=NUM_CLASSES)
    config = EngineConfig(
        device=spec["device"], batch_size=spec["batch_size"], amp=spec["amp"], progress=False, workers=0, shard_size=spec["shard_size"]
    )
    rss_start = _status_kib("VmRSS")
    t = time.perf_counter()
    out = ev.localize(model, records, config)
    wall = time.perf_counter() - t
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and spec["device"].startswith("cuda") else None
    print(
        json.dumps(
            {
                "n": spec["n"],
                "vmhwm_mib": _status_kib("VmHWM") / 1024,
                "rss_start_mib": rss_start / 1024,
                "gpu_peak_mib": gpu,
                "wall_s": wall,
                "n_images": out.n_images,
            }
        )
    )


def bench_memory(arch: str, pool: str, amp: str, n: int, records_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "arch": arch,
        "pool": pool,
        "amp": amp,
        "n": n,
        "records": str(records_file),
        "device": args.device,
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
    }
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"memory run {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", default=",".join(POOLS), help="comma-separated: vit_small_patch16_224, resnet50")
    p.add_argument("--pools", default=None, help="comma-separated pools (default: simpool and cls for ViTs, simpool and gap for CNNs)")
    p.add_argument("--amp", default="off,bf16", help="comma-separated: off, bf16, fp16")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--images", type=int, default=32, help="images per timed pass")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per variant (median)")
    p.add_argument(
        "--memory-images",
        type=int,
        default=64,
        help="the 1x image count of the memory runs (10x also runs); several batches, so that 1x already reaches the allocator's steady state",
    )
    p.add_argument("--memory-amp", default="off", help="precisions of the memory runs")
    p.add_argument("--shard-size", type=int, default=64, help="engine shard size in the memory runs")
    p.add_argument("--decode-workers", default="0,1,2")
    p.add_argument(
        "--mode",
        choices=("auto", "paired", "pass"),
        default="auto",
        help="paired: per-batch plain/ours pairs inside one engine pass (default on CPU, robust to shared cores); "
        "pass: whole interleaved passes (default on GPU, where the engine overlaps host work with the device)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument(
        "--engine-workers",
        type=int,
        default=None,
        help="DataLoader workers of the engine passes (default 0 on CPU; on a GPU min(8, cores), as a real run, so that batches "
        "are collated off the main thread)",
    )
    p.add_argument(
        "--hand-over",
        choices=tuple(HAND_OVER),
        default="auto",
        help="what the engine passes hand the device: auto (uint8 off the CPU, as a run), uint8 or float32",
    )
    p.add_argument("--no-overhead", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(json.loads(args.memory_child))
        return

    device = resolve_device(args.device)
    if args.mode == "auto":
        args.mode = "pass" if device.type == "cuda" else "paired"
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    amps = [a.strip() for a in args.amp.split(",") if a.strip()]
    print(
        f"# simpool-bench throughput: device {device}, torch {torch.__version__}, timm {timm.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, "
        f"batch {args.batch_size}, {args.images} images x {args.reps} reps, mode {args.mode}, engine workers {engine_workers(args, device)}, hand-over {args.hand_over}"
    )
    results = []
    for arch in models if not args.no_overhead else []:
        pools = args.pools.split(",") if args.pools else POOLS.get(arch, ("simpool",))
        for pool in pools:
            for amp in amps:
                r = bench_overhead(arch, pool, amp, args, device)
                results.append(r)
                i = r["img_s"]
                if args.mode == "paired":
                    print(
                        f"{arch:22s} {pool:7s} {amp:4s} plain {i['plain']:7.2f} img/s, ours {i['ours']:7.2f} img/s | "
                        f"maps {100 * r['overhead_maps']:+5.1f}%  metrics {100 * r['overhead_metrics']:+5.1f}%  "
                        f"engine {100 * r['overhead_engine']:+5.1f}%  => overhead {100 * r['overhead_total']:5.1f}%  "
                        f"({r['pairs']} paired batches; max |logit diff| vs timm {r['diff']:.1e})",
                        flush=True,
                    )
                else:
                    print(
                        f"{arch:22s} {pool:7s} {amp:4s} plain {i['plain']:8.2f} img/s | +maps {i['maps']:8.2f} img/s  "
                        f"overhead {100 * r['overhead_maps']:5.1f}% | +maps+metrics (engine) {i['engine']:8.2f} img/s  "
                        f"overhead {100 * r['overhead_total']:5.1f}%   (max |logit diff| vs timm {r['diff']:.1e})",
                        flush=True,
                    )
                    print(
                        "    runs (s): " + "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in vs) for k, vs in r["runs"].items()), flush=True
                    )
    if results:
        worst = max(results, key=lambda r: r["overhead_total"])
        verdict = "OK" if worst["overhead_total"] <= OVERHEAD_TARGET else "MISSED"
        print(
            f"overhead target <= {100 * OVERHEAD_TARGET:.0f}% ({device.type}): worst {100 * worst['overhead_total']:.1f}% "
            f"({worst['arch']} {worst['pool']} {worst['amp']}): {verdict}",
            flush=True,
        )

    with tempfile.TemporaryDirectory() as tmp:
        records = None
        if not (args.no_decode and args.no_memory):
            records = write_jpegs(Path(tmp) / "jpeg", max(64, args.memory_images))
        if not args.no_decode:
            fastest = max([r["img_s"]["plain"] for r in results if r["img_s"]["plain"] == r["img_s"]["plain"]] or [float("nan")])
            for w in [int(x) for x in args.decode_workers.split(",") if x.strip()]:
                rate = bench_decode(records, w)
                rate_u8 = bench_decode(records, w, uint8=True)
                per = rate / max(1, w)
                need = (
                    ""
                    if fastest != fastest
                    else (f"; the fastest model above ({fastest:.1f} img/s) needs >= {int(np.ceil(fastest / per))} worker(s)")
                )
                print(
                    f"decode 500x375 JPEG + eval transform, {w} workers, batch {DECODE_BATCH}: {rate:8.1f} img/s ({per:.1f} per worker){need}; "
                    f"handing over uint8 (a GPU run) {rate_u8:8.1f} img/s, ratio {rate_u8 / rate:.2f}x",
                    flush=True,
                )
        if not args.no_memory:
            rec_file = Path(tmp) / "records.json"
            rec_file.write_text(json.dumps([{"path": str(r.path), "label": r.label, "boxes": r.boxes.tolist()} for r in records]))
            for arch in models:
                pool = (args.pools.split(",") if args.pools else POOLS.get(arch, ("simpool",)))[0]
                for amp in [a.strip() for a in args.memory_amp.split(",") if a.strip()]:
                    one = bench_memory(arch, pool, amp, args.memory_images, rec_file, args)
                    ten = bench_memory(arch, pool, amp, 10 * args.memory_images, rec_file, args)
                    growth = ten["vmhwm_mib"] / one["vmhwm_mib"] - 1
                    gpu = "" if one["gpu_peak_mib"] is None else f"; GPU peak {one['gpu_peak_mib']:.0f} -> {ten['gpu_peak_mib']:.0f} MiB"
                    verdict = "OK" if growth <= MEMORY_TARGET else "MISSED"
                    print(
                        f"memory {arch} {pool} {amp} localize: peak RSS {one['vmhwm_mib']:.0f} MiB ({one['n']} images, "
                        f"{one['wall_s']:.0f} s) -> {ten['vmhwm_mib']:.0f} MiB ({ten['n']} images, {ten['wall_s']:.0f} s): "
                        f"{100 * growth:+.1f}% (above start {one['vmhwm_mib'] - one['rss_start_mib']:.0f} -> "
                        f"{ten['vmhwm_mib'] - ten['rss_start_mib']:.0f} MiB){gpu}  target <= {100 * MEMORY_TARGET:.0f}%: {verdict}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
