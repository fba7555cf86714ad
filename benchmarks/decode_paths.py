"""A DataLoader worker's cost per image, decode + transform: PIL's decode (``load_rgb``, what
localize and classify use) against libjpeg-turbo through torchvision.io wrapped as a PIL image
(``Image.fromarray`` of ``data.decode.jpeg_pixels``, ``libjpeg_image`` here), the same transform after both (outputs asserted identical); and
discovery's path (``load_rgb_array``: the array, no PIL image) against PIL.

Transforms: wsolevaluation's (Resize 224x224 bilinear, ToTensor, Normalize) and timm's eval
transform of ResNet-50's and ViT-S/16's data configs. Images: 500x375 q90 4:2:0 JPEGs of two kinds,
the smooth ones the other benchmarks write (``throughput.write_jpegs``) and photo-like scenes
(``nvjpeg_check.scene``: texture and noise, so more entropy-coded data). Timing: CPU time of this
process on one torch thread, in paired rounds (A B, then B A) so that a shared machine's load
falls on both sides; the median per image and the median of the per-round ratios are printed,
with the load average before and after.

    python benchmarks/decode_paths.py [--images 16] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from nvjpeg_check import scene  # noqa: E402
from throughput import write_jpegs  # noqa: E402

from simpool_bench.data import decode  # noqa: E402
from simpool_bench.data.images import load_rgb  # noqa: E402
from simpool_bench.models import build_model  # noqa: E402
from simpool_bench.transforms import classification_transform, discovery_transform, wsol_transform  # noqa: E402


def libjpeg_image(path: Path) -> Any:
    """libjpeg-turbo's pixels (``decode.jpeg_pixels``) as an RGB PIL image, PIL's ``load_rgb`` where it declines."""
    from PIL import Image

    pixels = decode.jpeg_pixels(path)
    return load_rgb(path) if pixels is None else Image.fromarray(pixels)


def scenes(folder: Path, n: int) -> list[Path]:
    """``n`` photo-like 500x375 q90 JPEGs."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i:05d}.jpg")
        scene(rng, 500, 375).save(paths[-1], quality=90)
    return paths


def paired(paths: list[Path], a: Callable[[Path], Any], b: Callable[[Path], Any], rounds: int) -> tuple[float, float, float]:
    """(median ms per image of ``a``, of ``b``, median of the per-round ratios a/b)."""
    times: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(rounds):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            f = a if side == "a" else b
            t0 = time.process_time()
            for p in paths:
                f(p)
            times[side].append((time.process_time() - t0) / len(paths) * 1e3)
    ratio = statistics.median(x / y for x, y in zip(times["a"], times["b"]))
    return statistics.median(times["a"]), statistics.median(times["b"]), ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=16, help="images of each kind")
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    transforms: dict[str, Callable[[Any], Any]] = {
        "decode only": lambda img: img,
        "wsol (Resize 224 bilinear)": wsol_transform(),
        "timm eval, resnet50": classification_transform(build_model("resnet50", pool="gap", num_classes=10).data_config),
        "timm eval, vit_small_patch16_224": classification_transform(
            build_model("vit_small_patch16_224", pool="cls", num_classes=10).data_config
        ),
    }
    lost = discovery_transform(16)
    print(f"cores {os.cpu_count()}, torch threads 1, load {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        kinds = {
            "smooth (write_jpegs)": [Path(r.path) for r in write_jpegs(Path(tmp) / "smooth", args.images)],
            "photo-like (scene)": scenes(Path(tmp) / "scene", args.images),
        }
        for kind, paths in kinds.items():
            assert all(decode.jpeg_pixels(q) is not None for q in paths), "the libjpeg-turbo path was not taken"
            for name, tf in transforms.items():
                for q in paths[:4]:
                    x, y = tf(load_rgb(q)), tf(libjpeg_image(q))
                    assert np.array_equal(np.asarray(x), np.asarray(y)), f"{kind}, {name}: outputs differ"
                pil, fast, ratio = paired(paths, lambda q, tf=tf: tf(load_rgb(q)), lambda q, tf=tf: tf(libjpeg_image(q)), args.rounds)
                report(kind, name, "libjpeg-turbo+fromarray", pil, fast, ratio)
            for q in paths[:4]:
                assert torch.equal(lost(load_rgb(q)), lost(decode.load_rgb_array(q))), f"{kind}, discovery: outputs differ"
            pil, fast, ratio = paired(paths, lambda q: lost(load_rgb(q)), lambda q: lost(decode.load_rgb_array(q)), args.rounds)
            report(kind, "discovery (ToTensor, pad 16)", "libjpeg-turbo array   ", pil, fast, ratio)


def report(kind: str, name: str, fast_name: str, pil: float, fast: float, ratio: float) -> None:
    """One line of figures."""
    print(
        f"{kind:22s} {name:34s} PIL {pil:6.3f} ms/img  {fast_name} {fast:6.3f} ms/img  speed-up {ratio:5.3f}x  "
        f"(load {os.getloadavg()[0]:.2f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
