"""Shared fixtures: tiny generated datasets in every layout the tool reads, tiny checkpoints, and
the CLI helpers of the end-to-end tests.

Every builder is seeded and writes only under the folder it is given (use ``tmp_path``). Images are
JPEGs of a noisy background with one or more brighter rectangles (the ground-truth objects), so
that attention maps and boxes are not degenerate. The fixtures return the builder functions:

    def test_x(make_image_folder, make_tiny_checkpoint, tmp_path):
        data = make_image_folder(tmp_path / "data", counts=(4, 4, 3))
        ckpt, model = make_tiny_checkpoint(tmp_path / "tiny.pth.tar")
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from voc_files import write_voc_split

#: A ViT small enough for tests: 2 blocks of width 48 (32x32 classification input, any multiple of 16 else).
TINY_VIT_KWARGS: dict[str, Any] = {"img_size": 32, "embed_dim": 48, "depth": 2, "num_heads": 2}
TINY_VIT_ARCH = "vit_tiny_patch16_224"
CLASS_NAMES = ("ant", "bee", "cat", "dog", "eel", "fox")


def _render(rng: np.random.Generator, width: int, height: int, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Noise background, each inclusive box (x0, y0, x1, y1) filled with a brighter random colour."""
    img = rng.integers(0, 110, size=(height, width, 3), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        colour = rng.integers(150, 256, size=3, dtype=np.uint8)
        img[y0 : y1 + 1, x0 : x1 + 1] = colour
    return img


def _random_box(rng: np.random.Generator, width: int, height: int, lo: float = 0.2, hi: float = 0.7) -> tuple[int, int, int, int]:
    """An inclusive pixel box covering a fraction in [lo, hi) of each side."""
    bw = int(rng.integers(max(2, int(lo * width)), max(3, int(hi * width))))
    bh = int(rng.integers(max(2, int(lo * height)), max(3, int(hi * height))))
    x0 = int(rng.integers(0, width - bw))
    y0 = int(rng.integers(0, height - bh))
    return x0, y0, x0 + bw - 1, y0 + bh - 1


def write_jpeg(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=90)


def build_image_folder(root: Path, counts: Sequence[int] = (4, 4, 3), size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """``root/<class>/<i>.jpg`` (ImageFolder), ``counts[c]`` images of class ``CLASS_NAMES[c]``.

    Image ``i`` of a class is ``size[0] + i`` wide and ``size[1]`` high. Returns ``root``."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        for i in range(n):
            w, h = size[0] + i, size[1]
            write_jpeg(root / CLASS_NAMES[c] / f"{i:03d}.jpg", _render(rng, w, h, [_random_box(rng, w, h)]))
    return root


class WsolData(NamedTuple):
    """A wsolevaluation-layout dataset: images under ``image_root``, metadata in ``metadata``."""

    image_root: Path
    metadata: Path
    n: int


def build_wsol_dataset(root: Path, n: int = 11, num_classes: int = 3, seed: int = 0) -> WsolData:
    """``root/images/<class>/<i>.jpg`` and ``root/metadata/test/{image_ids,class_labels,image_sizes,
    localization}.txt``; sizes vary (40-79 x 36-69), one box per image (two for every fourth image)."""
    rng = np.random.default_rng(seed)
    image_root, meta = root / "images", root / "metadata" / "test"
    meta.mkdir(parents=True, exist_ok=True)
    ids, labels, sizes, locs = [], [], [], []
    for i in range(n):
        label = i % num_classes
        w, h = int(rng.integers(40, 80)), int(rng.integers(36, 70))
        boxes = [_random_box(rng, w, h) for _ in range(2 if i % 4 == 3 else 1)]
        image_id = f"{CLASS_NAMES[label]}/{i:03d}.jpg"
        write_jpeg(image_root / image_id, _render(rng, w, h, boxes))
        ids.append(image_id)
        labels.append(f"{image_id},{label}")
        sizes.append(f"{image_id},{w},{h}")
        locs += [f"{image_id},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in boxes]
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes), ("localization", locs)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return WsolData(image_root, meta, n)


def build_voc_dataset(root: Path, n: int = 11, split: str = "trainval", seed: int = 0) -> Path:
    """A VOC2007-style folder (``Annotations``, ``ImageSets/Main/<split>.txt``, ``JPEGImages``) of
    ``n`` images of a few different sizes (several padded-size buckets), 1-2 large objects each, VOC's
    1-based inclusive boxes. Returns ``root``."""
    rng = np.random.default_rng(seed)
    shapes = [(48, 40), (64, 48), (50, 33), (80, 64)]
    ids = []
    for i in range(n):
        w, h = shapes[int(rng.integers(0, len(shapes)))]
        boxes = [_random_box(rng, w, h, 0.5, 0.95) for _ in range(1 + int(i % 3 == 2))]
        image_id = f"{2007_000000 + i:06d}"
        write_jpeg(root / "JPEGImages" / f"{image_id}.jpg", _render(rng, w, h, boxes))
        objects = "".join(
            f"<object><name>thing</name><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>"
            for x0, y0, x1, y1 in boxes
        )
        xml = f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        ids.append(image_id)
    return write_voc_split(root, ids, split)


def build_tiny_checkpoint(
    path: Path,
    arch: str = TINY_VIT_ARCH,
    pool: str = "simpool",
    gamma: float | None = 1.25,
    num_classes: int = 3,
    seed: int = 0,
    **model_kwargs: Any,
) -> tuple[Path, torch.nn.Module]:
    """A randomly initialised (seeded) supervised model saved in the official timm ``train.py``
    layout (``state_dict`` + ``args`` with ``model``, ``gp``, ``gamma`` and ``model_kwargs``), which
    the CLI rebuilds from ``--checkpoint`` alone. ``model_kwargs`` default to ``TINY_VIT_KWARGS``.
    Returns the file and the in-memory model (eval mode)."""
    from simpool_bench.models import build_model

    kwargs = dict(model_kwargs if model_kwargs else TINY_VIT_KWARGS)
    torch.manual_seed(seed)
    model = build_model(arch, pool=pool, gamma=gamma if pool == "simpool" else None, num_classes=num_classes, **kwargs).eval()
    gp = {"simpool": "simpool", "gap": "avg", "cls": "token"}[pool]
    args = argparse.Namespace(model=arch, gp=gp, gamma=gamma if pool == "simpool" else None, num_classes=num_classes, model_kwargs=kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "epoch": 0, "arch": arch, "args": args, "version": 2}, path)
    return path, model


@pytest.fixture(scope="session")
def make_image_folder():
    """Builder: ``make_image_folder(root, counts=(4, 4, 3), size=(48, 40), seed=0) -> root``."""
    return build_image_folder


@pytest.fixture(scope="session")
def make_wsol_dataset():
    """Builder: ``make_wsol_dataset(root, n=11, num_classes=3, seed=0) -> WsolData``."""
    return build_wsol_dataset


@pytest.fixture(scope="session")
def make_voc_dataset():
    """Builder: ``make_voc_dataset(root, n=11, split='trainval', seed=0) -> root``."""
    return build_voc_dataset


@pytest.fixture(scope="session")
def make_tiny_checkpoint():
    """Builder: ``make_tiny_checkpoint(path, arch=..., pool='simpool', gamma=1.25, num_classes=3,
    seed=0, **model_kwargs) -> (path, model)``."""
    return build_tiny_checkpoint


# ----------------------------------------------------------------------------------- CLI helpers
def validate_py_loader(dataset: Any, config: dict, batch_size: int, prefetcher: bool) -> Any:
    """timm's ``create_loader`` as validate.py calls it for a data config (on the CPU, float32
    batches, no workers), with or without its PrefetchLoader."""
    from timm.data import create_loader

    return create_loader(
        dataset,
        input_size=config["input_size"],
        batch_size=batch_size,
        use_prefetcher=prefetcher,
        interpolation=config["interpolation"],
        mean=config["mean"],
        std=config["std"],
        num_workers=0,
        crop_pct=config["crop_pct"],
        crop_mode=config.get("crop_mode", "center"),
        device=torch.device("cpu"),
        img_dtype=torch.float32,
    )


def invoke_cli(*args: Any):
    """Run ``simpool-bench ARGS`` in process (arguments str()-ed); exceptions propagate."""
    from simpool_bench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def outcome_metrics(outcome: Any) -> dict[tuple[str, int | None], float]:
    """A run's rows (``tasks.Outcome``) as {(metric, iou_threshold): value}."""
    return {(r["metric"], r["iou_threshold"]): r["value"] for r in outcome.rows}


def said(res) -> str:
    """A command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (the tiny models run faster so on a busy machine, with the
    same bits in a child process); restored after. Use ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
