"""nvjpeg against PIL: does ``torchvision.io.decode_jpeg(..., device="cuda")`` (one batched call)
give discovery the same pixels as ``Image.open(path).convert("RGB")``, and how fast is it?

For each kind of JPEG (baseline 4:2:0 / 4:2:2 / 4:4:4 at several qualities, progressive, grayscale,
CMYK, EXIF-tagged; VOC-like 500x375 and odd sizes) it prints ``exact`` or the largest absolute
difference and the share of differing values, for nvjpeg and for torchvision's CPU decoder
(libjpeg-turbo, which simpool-bench's discovery uses). Then decoding speed on ``--images`` 500x375
JPEGs (q90, 4:2:0), bytes already in memory: PIL, torchvision on the CPU (one thread), nvjpeg in
batches of ``--batch`` (synchronised), in img/s.

    python benchmarks/nvjpeg_check.py              # needs a CUDA device
    python benchmarks/nvjpeg_check.py --images 1024 --batch 128
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings

import numpy as np
import torch
from PIL import Image

warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision 0.29 points at TorchCodec
warnings.filterwarnings("ignore", category=UserWarning)


def scene(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like picture: smooth gradients, a few flat and textured shapes, mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 90 * np.sin(xx / (17 + 7 * c) + yy / (29 + 5 * c) + c) for c in range(3)], -1)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = int(rng.integers(x0 + 4, w)), int(rng.integers(y0 + 4, h))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3) + (rng.normal(0, 25, (y1 - y0, x1 - x0, 3)) if rng.random() < 0.5 else 0)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encode(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def kinds(rng: np.random.Generator) -> dict[str, bytes]:
    base = scene(rng, 500, 375)
    odd = scene(rng, 333, 251)
    exif = base.getexif()
    exif[0x0112] = 6
    return {
        "500x375 q90 4:2:0": encode(base, quality=90),
        "500x375 q75 4:2:0": encode(base, quality=75),
        "500x375 q95 4:2:0": encode(base, quality=95),
        "500x375 q90 4:2:2": encode(base, quality=90, subsampling=1),
        "500x375 q90 4:4:4": encode(base, quality=90, subsampling=0),
        "500x375 q100 4:4:4": encode(base, quality=100, subsampling=0),
        "500x375 progressive": encode(base, quality=85, progressive=True),
        "333x251 q90 4:2:0": encode(odd, quality=90),
        "333x251 q90 4:4:4": encode(odd, quality=90, subsampling=0),
        "500x375 grayscale": encode(base.convert("L"), quality=90),
        "500x375 CMYK": encode(base.convert("CMYK"), quality=90),
        "500x375 EXIF rotate": encode(base, quality=90, exif=exif),
    }


def pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def compare(ref: np.ndarray, got: np.ndarray) -> str:
    if got.shape != ref.shape:
        return f"shape {got.shape} vs {ref.shape}"
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    if not diff.any():
        return "exact"
    return f"max |diff| {int(diff.max())}, {100.0 * float((diff > 0).mean()):.2f}% of values differ"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA device: nvjpeg needs one")
    import torchvision
    from torchvision.io import ImageReadMode, decode_jpeg

    print(f"device {torch.cuda.get_device_name(0)}; torch {torch.__version__}, torchvision {torchvision.__version__}")
    rng = np.random.default_rng(0)
    mode = ImageReadMode.RGB
    all_exact = True
    for name, data in kinds(rng).items():
        ref = pil_rgb(data)
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            cpu = compare(ref, decode_jpeg(t, mode=mode).permute(1, 2, 0).numpy())
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            cpu = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        try:
            gpu_img = decode_jpeg([t], mode=mode, device="cuda")[0]
            gpu = compare(ref, gpu_img.permute(1, 2, 0).cpu().numpy())
        except Exception as exc:  # noqa: BLE001
            gpu = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        all_exact &= gpu == "exact"
        print(f"{name:22s} libjpeg-turbo (CPU): {cpu:44s} nvjpeg: {gpu}")
    print(f"nvjpeg gives PIL's pixels on every kind: {all_exact}")

    datas = [encode(scene(rng, 500, 375), quality=90) for _ in range(min(args.images, 64))]
    datas = (datas * (args.images // len(datas) + 1))[: args.images]
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    torch.set_num_threads(1)

    def timed(fn) -> float:
        fn()  # warm-up (nvjpeg handles, allocations)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return args.images / (time.perf_counter() - t0)

    def run_pil() -> None:
        for d in datas:
            pil_rgb(d)

    def run_cpu() -> None:
        for t in tensors:
            decode_jpeg(t, mode=mode)

    def run_gpu() -> None:
        for i in range(0, len(tensors), args.batch):
            decode_jpeg(tensors[i : i + args.batch], mode=mode, device="cuda")

    pil, cpu, gpu = timed(run_pil), timed(run_cpu), timed(run_gpu)
    print(
        f"decode 500x375 q90 4:2:0, {args.images} images: PIL {pil:.0f} img/s, libjpeg-turbo {cpu:.0f} img/s (1 thread), "
        f"nvjpeg batch {args.batch} {gpu:.0f} img/s ({gpu / pil:.1f}x PIL)"
    )


if __name__ == "__main__":
    main()
