"""Demo models: tiny ViTs (SimPool or CLS) trained on the demo data, saved as official checkpoints.

Each model is built by ``simpool_bench.models.build_model`` and trained from scratch on the demo
train split (classification, cross-entropy) with fixed seeds, deterministic algorithms and a fixed
thread count, so that the same call gives bit-identical weights on the same machine. The file is
in the official supervised layout (timm ``train.py`` ``CheckpointSaver`` as in billpsomas/simpool):
``state_dict``, ``state_dict_ema``, ``epoch``, ``arch``, ``args`` (an ``argparse.Namespace`` with
``model``, ``gp``, ``gamma``, ``num_classes``, ``img_size`` and ``model_kwargs``, the arguments that
rebuild the tiny model), ``version`` - so that loading it exercises format auto-detection.

A stamp file next to the checkpoint (``<name>.stamp.json``) records the kind, the seed, the training
settings, the demo data's own stamp and a hash of the code that trained it; a second call with the
same ones returns the existing file without training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..console import note, start_progress
from ..errors import SimpoolBenchError
from ..unset import UNSET
from .data import DemoPaths, stamp_parameters

#: Bump when training changes in a way the code hash would not show.
DEMO_TRAIN_VERSION = 1
#: timm ``CheckpointSaver`` writes this ``version`` entry.
TIMM_CHECKPOINT_VERSION = 2
#: The official supervised ``train.py`` names its pooling flag ``--gp``; its values per pool.
POOL_TO_GP = {"simpool": "simpool", "cls": "token", "gap": "avg"}


@dataclass(frozen=True)
class DemoModelSpec:
    """What a demo model is: timm name, pooling, gamma and the timm arguments of its tiny size."""

    arch: str
    pool: str
    gamma: float | None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    file_name: str = ""


# A ViT-Tiny/16 made smaller: 4 blocks of width 96 with 3 heads, at 160x160 (10x10 patches).
_TINY_VIT = {"img_size": 160, "embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 2.0}

DEMO_MODEL_KINDS: dict[str, DemoModelSpec] = {
    "vit-simpool": DemoModelSpec("vit_tiny_patch16_224", "simpool", 1.25, dict(_TINY_VIT), "vit_demo_supervised_simpool.pth.tar"),
    "vit-cls": DemoModelSpec("vit_tiny_patch16_224", "cls", None, dict(_TINY_VIT), "vit_demo_supervised_cls.pth.tar"),
}


@dataclass(frozen=True)
class TrainSettings:
    """Training recipe (AdamW, linear warm-up then cosine, label smoothing, EMA of the weights).

    ``crop_scale``: area range of the random-resized crop (aspect ratio in [3/4, 4/3]); flips p=0.5.
    ``cutmix_prob``: CutMix (Yun et al., ICCV 2019; in DeiT's and SimPool's recipes): with this
    probability a batch gets a box from a shuffled copy of itself, box area ~ U(0, 1), and the loss
    mixes the two labels by the exact pasted area.
    ``threads``: torch intra-op threads during training (results are bit-identical for a fixed count).
    ``max_images``: train on the first N images of the split only (None = all; for quick tests).
    """

    epochs: int = 16
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 15
    label_smoothing: float = 0.1
    ema_decay: float = 0.98
    crop_scale: tuple[float, float] = (0.5, 1.0)
    cutmix_prob: float = 1.0
    threads: int = 2
    max_images: int | None = None


# ----------------------------------------------------------------------------------------- data
def _load_train_split(data: DemoPaths, size: int, max_images: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All train images as one uint8 tensor (N, 3, size, size) and their labels (ImageFolder order)."""
    from ..data.imagenet import read_image_folder

    records, classes = read_image_folder(data.imagefolder_train)
    if tuple(classes) != tuple(data.classes):
        raise SimpoolBenchError(f"demo data {data.imagefolder_train}: classes {classes} differ from {list(data.classes)}")
    if max_images is not None:
        records = records[:max_images]
    images = []
    for r in records:
        with Image.open(r.path) as opened:
            img = opened.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
    return torch.stack(images), torch.tensor([r.label for r in records], dtype=torch.long)


def _augment(x: torch.Tensor, g: torch.Generator, scale: tuple[float, float]) -> torch.Tensor:
    """Random-resized crop (area ``scale``, aspect [3/4, 4/3]) back to the input size, and flips.

    x: (B, 3, S, S) float. Deterministic given the generator ``g``.
    """
    b, _, s, _ = x.shape
    u = torch.rand(b, 5, generator=g, dtype=torch.float64)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    ratio = torch.exp(log_r)
    cw = torch.clamp(torch.sqrt(area * ratio) * s, 8, s).round().long()
    ch = torch.clamp(torch.sqrt(area / ratio) * s, 8, s).round().long()
    x0 = (u[:, 2] * (s - cw + 1)).floor().long().clamp(max=s - 1)
    y0 = (u[:, 3] * (s - ch + 1)).floor().long().clamp(max=s - 1)
    out = torch.empty_like(x)
    for i in range(b):
        crop = x[i : i + 1, :, y0[i] : y0[i] + ch[i], x0[i] : x0[i] + cw[i]]
        out[i] = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)[0]
    flip = u[:, 4] < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _cutmix(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, float, torch.Tensor]:
    """CutMix: paste one random box of a shuffled copy of the batch; returns (x, kept area, perm)."""
    b, _, s, _ = x.shape
    perm = torch.randperm(b, generator=g)
    u = torch.rand(3, generator=g, dtype=torch.float64)
    side = math.sqrt(float(u[0]))  # box area fraction ~ U(0, 1) (Beta(1, 1))
    cw = ch = int(round(s * side))
    cx, cy = int(u[1] * s), int(u[2] * s)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw - cw // 2, s)
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch - ch // 2, s)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return out, 1.0 - (x1 - x0) * (y1 - y0) / (s * s), perm


# ----------------------------------------------------------------------------------------- stamp
def _code_hash() -> str:
    """sha256 of the sources that decide the trained weights (this file, models, pooling)."""
    from .. import models, pooling

    h = hashlib.sha256()
    for module in (Path(__file__), Path(models.__file__), Path(pooling.__file__)):
        # a package counts with every module in it (sorted), a module on its own
        sources = sorted(module.parent.rglob("*.py")) if module.name == "__init__.py" else [module]
        for source in sources:
            h.update(source.read_bytes())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_path(out_path: Path) -> Path:
    """The stamp file of a demo checkpoint."""
    return out_path.with_name(out_path.name + ".stamp.json")


def _stamp(kind: str, spec: DemoModelSpec, seed: int, settings: TrainSettings, data: DemoPaths) -> dict[str, Any]:
    import timm

    return {
        "version": DEMO_TRAIN_VERSION,
        "kind": kind,
        "spec": asdict(spec),
        "seed": seed,
        "settings": asdict(settings),
        "data": stamp_parameters(data),
        "code_sha256": _code_hash(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def read_stamp(out_path: str | Path) -> dict[str, Any] | None:
    """The stamp of a demo checkpoint (with ``train_seconds`` and ``checkpoint_sha256``), or None."""
    p = stamp_path(Path(out_path))
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------- training
def _lr_at(step: int, total: int, settings: TrainSettings) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    t = (step - settings.warmup_steps) / max(1, total - settings.warmup_steps)
    return settings.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's rule: no weight decay on biases and norms (1-d), position embedding and CLS token."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _official_simpool_init(model: torch.nn.Module) -> None:
    """Initialise SimPool's projections as the official supervised fork does.

    billpsomas/simpool ``supervised/timm/models/vision_transformer.py`` builds ``self.gp`` inside
    ``VisionTransformer.__init__``, before ``init_weights``, so ``init_weights_vit_timm`` gives its
    ``wq``/``wk`` a truncated normal (std .02) like every other Linear; a SimPool layer added after
    timm's init keeps PyTorch's default (about 3x larger), which makes the attention much sharper
    from the first step. LayerNorm stays at ones/zeros in both.
    """
    from timm.layers import trunc_normal_

    layer = getattr(model, "simpool_layer", None)
    if layer is not None and getattr(model, "family", "") == "vit":
        trunc_normal_(layer.wq.weight, std=0.02)
        trunc_normal_(layer.wk.weight, std=0.02)


def _train(
    spec: DemoModelSpec, data: DemoPaths, seed: int, settings: TrainSettings
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Train one model; returns (state_dict, EMA state_dict, optimizer state)."""
    from ..models import build_model

    torch.manual_seed(seed)
    gamma = spec.gamma if spec.pool == "simpool" else UNSET
    model = build_model(spec.arch, pool=spec.pool, gamma=gamma, num_classes=len(data.classes), **spec.model_kwargs)
    _official_simpool_init(model)
    size = int(model.data_config["input_size"][-1])
    mean = torch.tensor(model.data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.data_config["std"]).view(1, 3, 1, 1)
    images, labels = _load_train_split(data, size, settings.max_images)
    n = len(labels)
    g = torch.Generator().manual_seed(seed)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.999))
    bs = min(settings.batch_size, n)
    steps_per_epoch = max(1, n // bs)  # drop the last partial batch (fixed batch size)
    total = steps_per_epoch * settings.epochs
    step = 0
    model.train()
    bar = start_progress(f"train demo ViT ({spec.pool})", total, "steps")
    try:
        for _ in range(settings.epochs):
            order = torch.randperm(n, generator=g)
            for b in range(steps_per_epoch):
                idx = order[b * bs : (b + 1) * bs]
                x = _augment(images[idx].float() / 255.0, g, settings.crop_scale)
                x = (x - mean) / std
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, settings)
                y = labels[idx]
                lam, y2 = 1.0, y
                if settings.cutmix_prob > 0 and float(torch.rand((), generator=g)) < settings.cutmix_prob:
                    x, lam, perm = _cutmix(x, g)
                    y2 = y[perm]
                logits = model(x).logits
                loss = lam * F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
                if lam < 1.0:
                    loss = loss + (1.0 - lam) * F.cross_entropy(logits, y2, label_smoothing=settings.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                decay = min(settings.ema_decay, (1.0 + step) / (10.0 + step))  # EMA warm-up
                with torch.no_grad():
                    for k, v in model.state_dict().items():
                        if v.dtype.is_floating_point:
                            ema[k].mul_(decay).add_(v.detach(), alpha=1.0 - decay)
                        else:
                            ema[k].copy_(v)
                bar.advance(bar.task_ids[0])
    finally:
        bar.stop()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, ema, opt.state_dict()


def _checkpoint(
    spec: DemoModelSpec, settings: TrainSettings, state: dict, ema: dict, opt_state: dict, num_classes: int, seed: int
) -> dict[str, Any]:
    """The official supervised layout (timm ``CheckpointSaver``)."""
    args = argparse.Namespace(  # timm train.py's argument names, plus model_kwargs to rebuild the tiny size
        model=spec.arch,
        gp=POOL_TO_GP[spec.pool],
        gamma=spec.gamma,
        num_classes=num_classes,
        img_size=spec.model_kwargs.get("img_size"),
        pretrained=False,
        seed=seed,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        opt="adamw",
        sched="cosine",
        warmup_epochs=0,
        smoothing=settings.label_smoothing,
        cutmix=1.0,
        mixup=0.0,
        cutmix_minmax=None,
        mixup_prob=settings.cutmix_prob,
        model_ema=True,
        model_ema_decay=settings.ema_decay,
        model_kwargs=dict(spec.model_kwargs),
    )
    return {
        "epoch": settings.epochs - 1,
        "arch": spec.arch,
        "state_dict": state,
        "state_dict_ema": ema,
        "optimizer": opt_state,
        "version": TIMM_CHECKPOINT_VERSION,
        "args": args,
    }


def train_demo_model(
    kind: str,
    data: DemoPaths,
    out_path: str | Path | None = None,
    seed: int = 0,
    settings: TrainSettings | None = None,
    time_budget_s: float | None = 60.0,
    force: bool = False,
    **overrides: Any,
) -> Path:
    """Train (or reuse) the demo model ``kind`` on ``data``'s train split; return the checkpoint path.

    Args:
        kind: one of ``DEMO_MODEL_KINDS`` ('vit-simpool', 'vit-cls').
        data: the demo data (``build_demo_data``).
        out_path: checkpoint file (default ``data.root / 'models' / <official-style name>``).
        seed: seeds the initialisation, the batch order and the augmentation.
        settings: training recipe (default ``TrainSettings()``); ``overrides`` replace its fields
            (e.g. ``epochs=1, max_images=12``).
        time_budget_s: warn when training takes longer (training is never cut short: that would
            make the weights depend on the machine's speed). None: no check.
        force: retrain even when the stamp matches.

    The checkpoint is reused when its stamp (kind, seed, settings, data stamp, code hash, torch and
    timm versions) matches and the file's sha256 is the recorded one.
    """
    if kind not in DEMO_MODEL_KINDS:
        raise SimpoolBenchError(f"demo model kind {kind!r}: expected one of {', '.join(DEMO_MODEL_KINDS)}")
    spec = DEMO_MODEL_KINDS[kind]
    settings = replace(settings or TrainSettings(), **overrides)
    out = Path(out_path) if out_path is not None else data.root / "models" / spec.file_name
    want = _stamp(kind, spec, seed, settings, data)
    have = read_stamp(out)
    if not force and have is not None and out.is_file():
        recorded = {k: have.get(k) for k in want}
        if recorded == json.loads(json.dumps(want)) and have.get("checkpoint_sha256") == _file_sha256(out):
            note(f"  reusing {out} (trained earlier in {have.get('train_seconds', 0):.0f} s; same recipe, data and code)")
            return out

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    try:
        state, ema, opt_state = _train(spec, data, seed, settings)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    seconds = time.perf_counter() - start
    if time_budget_s is not None and seconds > time_budget_s:
        warnings.warn(
            f"demo model {kind} took {seconds:.0f} s to train, over its {time_budget_s:.0f} s budget", RuntimeWarning, stacklevel=2
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    stamp_path(out).unlink(missing_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(_checkpoint(spec, settings, state, ema, opt_state, len(data.classes), seed), tmp)
    tmp.replace(out)
    done = {**want, "train_seconds": round(seconds, 2), "checkpoint_sha256": _file_sha256(out)}
    stamp_path(out).write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
    return out
