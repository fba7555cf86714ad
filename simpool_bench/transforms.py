"""Evaluation transforms: classification from the model's timm config, the fixed protocols of
wsolevaluation (224x224, no crop) and LOST (full resolution, zero-padded to the stride).

Classification normalises the pixels one of two ways, which differ by about one float32 ulp:
``to-tensor`` (``ToTensor`` then ``Normalize``: timm's ``validate.py --no-prefetcher``, DINO's
``eval_knn.py``, DeiT, torchvision's references) and ``timm-prefetcher`` (timm's ``validate.py`` and
``train.py`` by default: uint8 pixels, then ``PrefetchLoader``'s ``(v - 255 mean) / (255 std)``)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .errors import SimpoolBenchError

if TYPE_CHECKING:  # torchvision takes seconds to import: only where a transform is built
    from torchvision import transforms as T

#: wsolevaluation resizes every image to 224x224 without cropping (``data_loaders.py``).
WSOL_IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: The ``normalize`` value of a transform record: ToTensor then Normalize, or timm's prefetcher.
TO_TENSOR, TIMM_PREFETCHER = "to-tensor", "timm-prefetcher"


class PrefetcherNormalize:
    """timm's ``PrefetchLoader`` normalisation of one image: the uint8 (C, H, W) tensor of timm's
    ``MaybePILToTensor`` as float32, minus ``255 * mean``, divided by ``255 * std``, each constant
    the float32 of the Python product (``timm.data.loader.PrefetchLoader``). Element by element,
    so an image alone gives what a batch on the device gives (IEEE float32 subtract and divide)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._mean = torch.tensor([v * 255 for v in self.mean], dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor([v * 255 for v in self.std], dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != len(self.mean):
            got = f"{img.dtype} {tuple(img.shape)}" if isinstance(img, torch.Tensor) else type(img).__name__
            raise SimpoolBenchError(f"PrefetcherNormalize: image {got}, expected a uint8 ({len(self.mean)}, H, W) tensor")
        return img.to(torch.float32).sub_(self._mean).div_(self._std)

    def __repr__(self) -> str:
        return f"PrefetcherNormalize(mean={self.mean}, std={self.std})"


def classification_transform(
    data_config: dict[str, Any],
    resize: int | None = None,
    crop: int | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    prefetcher: bool = False,
) -> T.Compose:
    """timm's eval transform for the model's data config, with optional overrides.

    Without overrides this is ``timm.data.create_transform(**data_config)`` (resize the short side
    to size / crop_pct, center crop, normalise); ``prefetcher``: see :func:`eval_transform`."""
    return eval_transform(classification_config(data_config, resize, crop, interpolation, mean, std), prefetcher)


def eval_transform(cfg: dict[str, Any], prefetcher: bool = False) -> T.Compose:
    """timm's eval transform of a data config (``classification_config``'s).

    With ``prefetcher``, timm's transform for its prefetcher (ending in uint8 ``MaybePILToTensor``)
    followed by :class:`PrefetcherNormalize`: the pixels of ``validate.py`` without ``--no-prefetcher``."""
    from timm.data import create_transform

    transform = create_transform(
        input_size=cfg["input_size"],
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg.get("crop_pct", 0.875),
        crop_mode=cfg.get("crop_mode", "center"),
        is_training=False,
        use_prefetcher=prefetcher,
    )
    if prefetcher:
        transform.transforms.append(PrefetcherNormalize(cfg["mean"], cfg["std"]))
    return transform


# The largest --resize and --crop: an image side PIL can make (10**30 overflowed inside PIL's resize,
# a traceback) and, squared, about 1e9 pixels, far beyond any evaluation protocol.
MAX_SIDE = 32768


def classification_config(
    data_config: dict[str, Any],
    resize: int | None = None,
    crop: int | None = None,
    interpolation: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The data config ``classification_transform`` builds from: the model's, with the overrides."""
    cfg = dict(data_config)
    for flag, value in (("--resize", resize), ("--crop", crop)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= MAX_SIDE):
            raise SimpoolBenchError(f"{flag} {value!r}: expected a whole number of pixels >= 1 and <= {MAX_SIDE}")
    resize = None if resize is None else int(resize)  # a numpy integer (ClassifySpec takes one) as the int the config records
    crop = None if crop is None else int(crop)
    if interpolation is not None:
        if interpolation not in _INTERPOLATIONS:
            raise SimpoolBenchError(f"--interpolation {interpolation!r}: expected one of {', '.join(_INTERPOLATIONS)}")
        cfg["interpolation"] = interpolation
    if mean is not None:
        cfg["mean"] = tuple(mean)
    if std is not None:
        cfg["std"] = tuple(std)
    if crop is not None:
        cfg["input_size"] = (3, crop, crop)
    if resize is not None:
        cfg["crop_pct"] = crop_pct_for(cfg["input_size"][-1], resize)
    elif cfg.get("crop_pct") is not None and cfg["input_size"][-1] / cfg["crop_pct"] >= MAX_SIDE + 1:  # (0, 1] is checked before
        side = cfg["input_size"][-1] / cfg["crop_pct"]  # 1e-300: an OverflowError in PIL's resize
        raise SimpoolBenchError(
            f"--crop-pct {cfg['crop_pct']:g}: resizes the short side to {side:.4g} pixels (crop {cfg['input_size'][-1]} / crop_pct); "
            f"expected at most {MAX_SIDE} (a crop_pct >= {cfg['input_size'][-1] / (MAX_SIDE + 1):.3g})"
        )
    return cfg


def crop_pct_for(crop: int, resize: int) -> float:
    """The ``crop_pct`` with which timm's eval transform resizes to ``resize`` before its ``crop``.

    timm resizes to ``floor(crop / crop_pct)``, and ``crop / (crop / resize)`` can fall one ulp short
    of ``resize`` (224 / (224 / 354) = 353.99999999999994): the largest crop_pct that gives it."""
    crop_pct = crop / resize
    while math.floor(crop / crop_pct) < resize:
        crop_pct = math.nextafter(crop_pct, 0.0)
    return crop_pct


def transform_record(
    transform: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None, crop_pct: float | None = None
) -> dict[str, Any]:
    """The ``transform`` provenance record of an image transform: ``resize`` and ``interpolation``
    (of its resize step), ``crop`` (its crop size), ``crop_pct``, ``crop_mode`` (timm's, read off
    the steps: see :func:`crop_mode_of`), ``mean``, ``std`` and ``normalize`` (``to-tensor`` or
    ``timm-prefetcher``); None where it has no such step. ``mean``/``std`` default to its Normalize
    step's (give them for timm's transforms, which keep them as float32 tensors)."""
    record: dict[str, Any] = {
        "resize": None,
        "crop": None,
        "crop_pct": None if crop_pct is None else float(crop_pct),
        "crop_mode": None,
        "interpolation": None,
        "normalize": TO_TENSOR,
    }
    resize_step = None
    for step in getattr(transform, "transforms", ()):
        name, size = type(step).__name__, getattr(step, "size", None)
        if "Resize" in name and size is not None:
            resize_step = step
            record["resize"] = [int(v) for v in size] if isinstance(size, (tuple, list)) else int(size)
            mode = getattr(step, "interpolation", None)
            record["interpolation"] = None if mode is None else str(getattr(mode, "value", mode))
        elif "Crop" in name and size is not None:
            record["crop"] = [int(v) for v in size] if isinstance(size, (tuple, list)) else int(size)
            record["crop_mode"] = crop_mode_of(resize_step, step)
        elif name == "Normalize":
            mean = step.mean if mean is None else mean
            std = step.std if std is None else std
        elif isinstance(step, PrefetcherNormalize):
            record["normalize"] = TIMM_PREFETCHER
            mean = step.mean if mean is None else mean
            std = step.std if std is None else std
    if mean is None or std is None:
        raise ValueError(f"transform_record: no mean/std given and no Normalize step in {transform!r}")
    record["mean"] = [float(v) for v in mean]
    record["std"] = [float(v) for v in std]
    return record


def crop_mode_of(resize_step: Any, crop_step: Any) -> str:
    """timm's eval ``crop_mode`` of a resize step then a crop step (``transforms_imagenet_eval``):
    ``border`` (``ResizeKeepRatio`` of the longest side, then ``CenterCropOrPad`` with the mean's
    fill), ``squash`` (``Resize`` of both sides, then ``CenterCrop``) or ``center`` (the short side,
    ``Resize(int)``, or ``ResizeKeepRatio`` of the shortest side at a non-square size): what the
    resize record alone cannot tell apart (``[s, s]`` for squash and border alike)."""
    if type(crop_step).__name__ == "CenterCropOrPad" or float(getattr(resize_step, "longest", 0.0) or 0.0) > 0:
        return "border"
    size = getattr(resize_step, "size", None)
    if resize_step is None or type(resize_step).__name__ == "ResizeKeepRatio" or not isinstance(size, (tuple, list)) or len(size) == 1:
        return "center"
    return "squash"


def wsol_transform(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, size: int = WSOL_IMAGE_SIZE) -> T.Compose:
    """wsolevaluation's test transform: Resize((224, 224)) (bilinear), ToTensor, Normalize.
    ``mean``, ``std``: 3 numbers each (the model's ``data_config['mean']``, ``['std']``), std > 0."""
    from torchvision import transforms as T

    for name, v in (("mean", mean), ("std", std)):
        try:
            values = [float(x) for x in v] if not isinstance(v, (str, bytes, dict)) else []
        except (TypeError, ValueError):
            values = []
        if len(values) not in (1, 3) or not all(math.isfinite(x) and (name == "mean" or x > 0) for x in values):
            raise SimpoolBenchError(
                f"wsol_transform: {name} {v!r}: expected 3 numbers (R, G, B){', all > 0' if name == 'std' else ''}, "
                f"e.g. model.data_config['{name}']"
            )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise SimpoolBenchError(f"wsol_transform: size {size!r}: expected a whole number of pixels >= 1 (wsolevaluation: 224)")
    return T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(mean, std)])


class PadToMultiple:
    """Zero-pad a (C, H, W) tensor right and bottom to a multiple of ``stride`` (LOST's padding,
    applied after normalisation as LOST does)."""

    def __init__(self, stride: int) -> None:
        self.stride = int(stride)

    def __repr__(self) -> str:
        return f"PadToMultiple(stride={self.stride})"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        ph, pw = padded_size(h, self.stride) - h, padded_size(w, self.stride) - w
        return F.pad(img, (0, pw, 0, ph)) if (ph or pw) else img


def padded_size(n: int, stride: int) -> int:
    """``n`` rounded up to a multiple of ``stride``."""
    return int(math.ceil(n / stride) * stride)


def discovery_transform(stride: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """LOST's transform: full resolution, ToTensor, Normalize, zero-pad to the stride."""
    from torchvision import transforms as T

    return T.Compose([T.ToTensor(), T.Normalize(mean, std), PadToMultiple(stride)])
