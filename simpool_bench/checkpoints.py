"""Checkpoints: safe loading, format detection and key remapping to our model layout (SPEC section 3).

Formats (auto-detected from the file's content; ``format=`` forces one):

``official-supervised``
    timm ``train.py`` ``CheckpointSaver`` (the billpsomas/simpool ``supervised/`` timm fork, 0.8.x):
    a dict with ``state_dict`` and, with ``--model-ema``, ``state_dict_ema``, plus ``epoch``,
    ``arch`` (= ``args.model``), ``args`` (an ``argparse.Namespace``: ``model``, ``gp``, ``gamma``,
    ``num_classes``...), ``optimizer``, ``version`` and optionally ``amp_scaler``/``metric``.
    Like timm's ``load_state_dict(use_ema=True)`` we take ``state_dict_ema`` when present.
``official-dino``
    DINO ``main_dino.py`` (facebookresearch/dino, and its copy in billpsomas/simpool
    ``self_supervised/``): ``teacher``, ``student``, ``optimizer``, ``epoch``, ``args``,
    ``dino_loss`` [, ``fp16_scaler``]. Weights sit under ``module.`` (DDP) and ``backbone.``
    (MultiCropWrapper); ``head.*`` is the DINO projection head, which we drop. ``args`` has
    ``arch`` (``vit_small``...), ``patch_size``, ``mode`` (``official``/``simpool``) and ``gamma``.
``dino-backbone``
    a bare state dict of the DINO code's backbone, as DINO publishes it and LOST loads it
    (``dino_deitsmall16_pretrain.pth``, ``dino_vitbase8_pretrain.pth``, ``dino_resnet50_pretrain.pth``):
    a ViT with ``cls_token``, ``pos_embed`` (1, 1 + n*n, d), ``patch_embed.*``, ``blocks.*``,
    ``norm.*`` and no classifier (no ``head.*``, no ``fc_norm``), or a ResNet without ``fc.*``.
    Variant ``dino``: ImageNet mean/std, no classifier (a feature model), and for ViTs the DINO
    code's position interpolation and explicit attention. A headless timm export has the same keys:
    ``--format state-dict`` treats such a file as timm weights.
``timm-simpool``
    a state dict whose SimPool module uses timm's ``SimPool1d/2d`` names (``norm``, ``q``, ``k``)
    instead of the official ones (``norm_patches``, ``wq``, ``wk``).
``state-dict``
    a bare state dict (or one wrapped in ``model``/``state_dict``), e.g. an exported backbone.
``safetensors``
    a ``.safetensors`` file (its metadata may name ``arch``, ``pool``, ``gamma``, ``variant``).

Our layout (what :func:`load_checkpoint` maps to) is the official key layout: timm keys for the
backbone (the facebookresearch ConvNeXt names of the DINO ConvNeXt are mapped to timm's), SimPool at
``gp.pool.`` (supervised ViT), ``global_pool.pool.`` (supervised ResNet), ``head.global_pool.pool.``
(supervised ConvNeXt) and ``simpool.`` (every DINO model), as ``models.build_model`` lays them out.

Pickles are read with ``torch.load(weights_only=True)`` and only :data:`SAFE_GLOBALS` allowed;
anything else needs an explicit ``trust=True`` (CLI ``--trust-checkpoint``).
"""

from __future__ import annotations

import argparse
import inspect
import math
import pickle
import re
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import SimpoolBenchError
from .families import CNN_FAMILIES, FAMILIES, family_of_state_dict
from .files import sha256_file
from .models import POOLS, VARIANTS, build_model, model_family

FORMATS: tuple[str, ...] = (
    "official-supervised", "official-dino", "dino-backbone", "timm-simpool", "state-dict", "safetensors",
)
PREFER_CHOICES: tuple[str, ...] = ("auto", "ema", "raw", "teacher", "student")
TRUST_FLAG = "--trust-checkpoint"

# The only globals a pickle may name under safe loading: what the official files really hold
# (timm train.py and DINO main_dino.py both pickle their argparse.Namespace as ``args``).
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)

# DDP / torch.compile wrappers (timm ``clean_state_dict`` strips the same ones).
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
DINO_BACKBONE_PREFIX = "backbone."
DINO_HEAD_PREFIX = "head."

# Where SimPool sits in our (official) layout, per architecture family and variant.
SIMPOOL_PREFIX: dict[tuple[str, str], str] = {
    ("vit", "supervised"): "gp.pool.",
    ("vit", "dino"): "simpool.",
    ("resnet", "supervised"): "global_pool.pool.",
    ("resnet", "dino"): "simpool.",
    ("convnext", "supervised"): "head.global_pool.pool.",
    ("convnext", "dino"): "simpool.",
    **{(f.name, "supervised"): f.simpool_supervised for f in FAMILIES.values() if f.name not in ("vit", "resnet", "convnext")},
    **{(f.name, "dino"): "simpool." for f in FAMILIES.values() if f.name not in ("vit", "resnet", "convnext")},
}
KNOWN_SIMPOOL_PREFIXES: tuple[str, ...] = ("gp.pool.", "simpool.", "global_pool.pool.", "head.global_pool.pool.")
# timm SimPool1d/2d parameter names -> official sp.py names; timm's layer normalises with
# nn.LayerNorm's default eps (the official one uses 1e-6).
TIMM_SIMPOOL_RENAMES: dict[str, str] = {"norm": "norm_patches", "q": "wq", "k": "wk"}
TIMM_SIMPOOL_NORM_EPS = 1e-5
# Classifier weight per family (its first dimension is the class count).
CLASSIFIER_WEIGHT: dict[str, str] = {f.name: f.classifier for f in FAMILIES.values()}
# Buffers that are not parameters (left out of the parameter count).
BUFFER_SUFFIXES: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")

# timm train.py --gp values / DINO --mode values -> our pool names.
SUPERVISED_GP_TO_POOL: dict[str, str] = {"simpool": "simpool", "avg": "gap", "token": "cls", "map": "map"}
DINO_MODE_TO_POOL: dict[str, str] = {"simpool": "simpool"}  # 'official': cls for ViT, gap for CNNs
POOL_ALIASES: dict[str, str] = {"simpool": "simpool", "cls": "cls", "token": "cls", "gap": "gap", "avg": "gap", "map": "map"}

# Standard timm names recognised from key shapes (family, width, depths) -> name.
VIT_WIDTHS: dict[tuple[int, int], str] = {(192, 12): "tiny", (384, 12): "small", (768, 12): "base", (1024, 24): "large"}
RESNET_DEPTHS: dict[tuple[bool, tuple[int, ...]], str] = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}
CONVNEXT_DEPTHS: dict[tuple[int, tuple[int, ...]], str] = {
    (96, (3, 3, 9, 3)): "convnext_tiny",
    (96, (3, 3, 27, 3)): "convnext_small",
    (128, (3, 3, 27, 3)): "convnext_base",
    (192, (3, 3, 27, 3)): "convnext_large",
}

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
# Arguments build_model decides itself (never taken from a file's args.model_kwargs); img_size is
# the exception: a model trained at another input size needs it to rebuild its position embeddings.
_BUILD_OWN_ARGS: frozenset[str] = (frozenset(inspect.signature(build_model).parameters) - {"img_size"}) | {
    "pretrained", "num_classes", "global_pool", "class_token", "fc_norm",
}


class _Unset:
    """Type of :data:`UNSET` (a flag the user did not pass)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass
class LoadedCheckpoint:
    """A checkpoint read from disk, its weights mapped to our layout, and what it says about itself.

    ``gamma_known`` tells whether ``gamma`` comes from the file (``None`` then means "no gamma");
    ``*_known`` flags distinguish what the file states from what was guessed.
    """

    path: Path
    sha256: str
    format: str
    variant: str
    state_dict: dict[str, torch.Tensor]
    arch: str | None = None
    pool: str | None = None
    gamma: float | None = None
    gamma_known: bool = False
    has_beta: bool = False
    num_classes: int | None = None
    key_mapping: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    container_keys: list[str] = field(default_factory=list)
    source: str = ""
    arch_source: str = ""
    variant_known: bool = False
    epoch: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        """``'vit'``, ``'resnet'`` or ``'convnext'`` (from the keys), or None."""
        return family_of_keys(self.state_dict)

    @property
    def dino_pos_quirk(self) -> bool:
        """Default of the official DINO position-embedding quirk for this file: on for official DINO
        ViT SimPool checkpoints (their numbers carry it), off otherwise."""
        return self.format == "official-dino" and self.family == "vit" and self.pool == "simpool"

    @property
    def dino_code(self) -> bool:
        """Weights of the DINO code's models (DINO checkpoints and backbones, official SimPool DINO
        files): their ViTs resize position embeddings and attend as DINO's ``vision_transformer.py``."""
        return self.variant == "dino"

    @property
    def n_params(self) -> int:
        """Number of parameter values (BatchNorm running statistics excluded)."""
        return sum(v.numel() for k, v in self.state_dict.items() if not k.endswith(BUFFER_SUFFIXES))


# ------------------------------------------------------------------------------------------ files
def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise SimpoolBenchError(f"checkpoint {p}: no such file")
    if p.is_dir():
        raise SimpoolBenchError(f"checkpoint {p}: is a directory, expected a checkpoint file")
    try:
        with open(p, "rb"):
            pass
    except OSError as e:
        raise SimpoolBenchError(f"checkpoint {p}: cannot be read ({e.strerror or e})") from None
    return p


def _is_safetensors(path: Path) -> bool:
    """Sniff the safetensors layout: an 8-byte little-endian header length, then a JSON object."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{"


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(e).split())
    return (text[: limit - 3] + "...") if len(text) > limit else text


def _blocked_globals(path: Path, err: BaseException) -> list[str]:
    """Names of the pickle globals that safe loading refused (from the error, else by scanning)."""
    names = re.findall(r"GLOBAL ([A-Za-z_][\w.]*)", str(err))
    if not names and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        try:
            names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        except Exception:  # noqa: BLE001 - best effort, only used to word the message
            names = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    return sorted({n for n in names if n not in allowed})


def _torch_load(path: Path, trust: bool) -> Any:
    """``torch.load`` on CPU: restricted unpickling with :data:`SAFE_GLOBALS`, or full when trusted."""
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any failure of a trusted unpickle is "unreadable"
            raise SimpoolBenchError(
                f"checkpoint {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})"
            ) from None
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol N": we word our own error
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = _blocked_globals(path, e)
        if blocked:
            raise SimpoolBenchError(
                f"checkpoint {path}: refused by safe loading: its pickle needs {', '.join(blocked)}, which could run "
                f"arbitrary code when unpickled; if you trust this file, pass {TRUST_FLAG} (trust=True)"
            ) from None
        if "Weights only load failed" in str(e):
            detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(e), re.S)
            raise SimpoolBenchError(
                f"checkpoint {path}: not a file the safe (weights-only) loader can read "
                f"({_first_line(detail.group(1) if detail else e, 80)}); if it is a checkpoint you trust, pass {TRUST_FLAG}"
            ) from None
        raise SimpoolBenchError(
            f"checkpoint {path}: not a PyTorch checkpoint or safetensors file (unpickling failed: {_first_line(e)})"
        ) from None
    except Exception as e:  # noqa: BLE001 - zip/pickle/EOF errors all mean "not a checkpoint"
        raise SimpoolBenchError(
            f"checkpoint {path}: not a readable PyTorch checkpoint ({type(e).__name__}: {_first_line(e) or 'empty or truncated'})"
        ) from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends
        raise SimpoolBenchError(f"checkpoint {path}: not a readable safetensors file ({_first_line(e)})") from None
    return tensors, meta


# ------------------------------------------------------------------------------------------ key maps
def strip_wrappers(sd: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    """Remove DDP/torch.compile prefixes (``module.``, ``_orig_mod.``, in any order) from every key."""
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for k, v in sd.items():
        while k.startswith(WRAPPER_PREFIXES):
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    seen.add(p)
                    k = k[len(p):]
        out[k] = v
    if seen:
        rules.append("stripped " + " and ".join(sorted(seen)))
    return out


def split_dino_backbone(sd: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    """Keep the MultiCropWrapper's ``backbone.*`` weights (prefix removed) and drop the DINO ``head.*``."""
    if not any(k.startswith(DINO_BACKBONE_PREFIX) for k in sd):
        heads = [k for k in sd if k.startswith(DINO_HEAD_PREFIX)]
        if heads:
            rules.append(f"dropped {len(heads)} DINO head keys (head.*)")
        return {k: v for k, v in sd.items() if not k.startswith(DINO_HEAD_PREFIX)}
    out = {k[len(DINO_BACKBONE_PREFIX):]: v for k, v in sd.items() if k.startswith(DINO_BACKBONE_PREFIX)}
    dropped = [k for k in sd if not k.startswith(DINO_BACKBONE_PREFIX)]
    rules.append("stripped backbone.")
    if dropped:
        n_head = sum(k.startswith(DINO_HEAD_PREFIX) for k in dropped)
        others = len(dropped) - n_head
        rules.append(f"dropped {n_head} DINO head keys (head.*)" + (f" and {others} other non-backbone keys" if others else ""))
    return out


def convnext_fb_to_timm(sd: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    """facebookresearch/ConvNeXt key layout (used by the SimPool DINO ConvNeXt) -> timm's layout."""
    if "downsample_layers.0.0.weight" not in sd:
        return dict(sd)
    out: dict[str, Any] = {}
    for k, v in sd.items():
        n = k
        if n.startswith("downsample_layers.0."):
            n = "stem." + n[len("downsample_layers.0."):]
        n = re.sub(r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample.", n)
        n = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", n)
        n = n.replace(".dwconv.", ".conv_dw.").replace(".pwconv1.", ".mlp.fc1.").replace(".pwconv2.", ".mlp.fc2.")
        if n.startswith("norm."):
            n = "head." + n
        elif n.startswith("head.") and not n.startswith("head.norm."):
            n = "head.fc." + n[len("head."):]
        out[n] = v
    rules.append("ConvNeXt facebookresearch layout -> timm (downsample_layers/stages/dwconv/pwconv/norm/head)")
    return out


def find_timm_simpool_prefixes(sd: Mapping[str, Any]) -> list[str]:
    """Prefixes (ending in '.') of modules with timm SimPool1d/2d parameters: ``norm``, ``q``, ``k``
    and nothing an attention block would have (``v``, ``kv``, ``qkv``, ``proj``)."""
    found = []
    for key in sd:
        if not key.endswith("q.weight"):
            continue
        p = key[: -len("q.weight")]
        if p and not p.endswith("."):
            continue
        if f"{p}k.weight" in sd and f"{p}norm.weight" in sd and not any(
            f"{p}{x}.weight" in sd for x in ("v", "kv", "qkv", "proj")
        ):
            found.append(p)
    return sorted(found)


def rename_timm_simpool(sd: Mapping[str, Any], family: str | None, variant: str, rules: list[str]) -> tuple[dict[str, Any], bool]:
    """Rename timm ``SimPool1d/2d`` parameters (norm/q/k) to the official names (norm_patches/wq/wk),
    moving the module to our SimPool prefix when it sits elsewhere."""
    prefixes = find_timm_simpool_prefixes(sd)
    if not prefixes:
        return dict(sd), False
    out = dict(sd)
    for p in prefixes:
        target = p if p in KNOWN_SIMPOOL_PREFIXES or family is None else SIMPOOL_PREFIX[(family, variant)]
        moved = {}
        for k in list(out):
            if not k.startswith(p):
                continue
            rest = k[len(p):]
            head, _, tail = rest.partition(".")
            if head in TIMM_SIMPOOL_RENAMES and tail:
                moved[k] = f"{target}{TIMM_SIMPOOL_RENAMES[head]}.{tail}"
            elif head in ("q_norm", "k_norm") and target != p:
                moved[k] = f"{target}{rest}"
        for old, new in moved.items():
            out[new] = out.pop(old)
        where = f" (moved {p or '<root>'} -> {target})" if target != p else ""
        rules.append(f"timm SimPool names at {target}: norm->norm_patches, q->wq, k->wk{where}")
    return out, True


# ------------------------------------------------------------------------------------------ inference
def family_of_keys(sd: Mapping[str, Any]) -> str | None:
    """Architecture family told by the keys (our layout): one of ``families.FAMILIES`` or None."""
    if "patch_embed.proj.weight" in sd:
        return "vit"
    if "conv1.weight" in sd and any(k.startswith("layer4.") for k in sd):
        return "resnet"
    if "stem.0.weight" in sd and any(k.startswith("stages.") for k in sd):
        return "convnext"
    return family_of_state_dict(sd)


def family_of_arch(arch: str) -> str | None:
    """Architecture family of a timm model name ('vit', 'resnet', 'convnext'), or None if unsupported."""
    try:
        return model_family(arch)
    except SimpoolBenchError:
        return None


def _count_indices(sd: Mapping[str, Any], pattern: str) -> dict[int, set[int]]:
    groups: dict[int, set[int]] = {}
    for k in sd:
        m = re.match(pattern, k)
        if m:
            groups.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return groups


def infer_arch(sd: Mapping[str, Any]) -> str | None:
    """The standard timm name the key shapes match (e.g. ``vit_small_patch16_224``), or None."""
    import timm

    fam = family_of_keys(sd)
    name: str | None = None
    if fam == "vit":
        w = sd["patch_embed.proj.weight"]
        dim, patch = int(w.shape[0]), int(w.shape[-1])
        depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
        size = VIT_WIDTHS.get((dim, depth))
        pos = sd.get("pos_embed")
        if size and pos is not None and pos.ndim == 3:
            n = int(pos.shape[1]) - (1 if "cls_token" in sd else 0)
            grid = math.isqrt(n)
            if grid * grid == n:
                name = f"vit_{size}_patch{patch}_{grid * patch}"
    elif fam == "resnet":
        bottleneck = "layer1.0.conv3.weight" in sd
        blocks = _count_indices(sd, r"layer(\d)\.(\d+)\.")
        depths = tuple(len(blocks.get(i, ())) for i in (1, 2, 3, 4))
        first, last = sd.get("layer1.0.conv1.weight"), sd.get("layer4.0.conv1.weight")
        if first is not None and last is not None and (int(first.shape[0]), int(last.shape[0])) == (64, 512):
            name = RESNET_DEPTHS.get((bottleneck, depths))
    elif fam == "convnext":
        blocks = _count_indices(sd, r"stages\.(\d)\.blocks\.(\d+)\.")
        depths = tuple(len(blocks.get(i, ())) for i in (0, 1, 2, 3))
        width = int(sd["stem.0.weight"].shape[0])
        last = sd.get("stages.3.blocks.0.conv_dw.weight")
        if last is not None and int(last.shape[0]) == 8 * width:
            name = CONVNEXT_DEPTHS.get((width, depths))
    return name if name and timm.is_model(name) else None


def infer_pool(sd: Mapping[str, Any]) -> str | None:
    """Pooling told by the keys (our layout): 'simpool', 'cls' or 'gap'."""
    fam = family_of_keys(sd)
    if any(k.startswith(KNOWN_SIMPOOL_PREFIXES) for k in sd):
        return "simpool"
    if fam == "vit":
        if any(k.startswith("attn_pool.") for k in sd):
            return "map"
        if "fc_norm.weight" in sd:
            return "gap"
        return "cls" if "cls_token" in sd else "gap"
    return "gap" if fam in CNN_FAMILIES else None


def _beta_key(sd: Mapping[str, Any]) -> str | None:
    return next((f"{p}beta" for p in KNOWN_SIMPOOL_PREFIXES if f"{p}beta" in sd), None)


def _dino_arch(args: Any) -> str | None:
    """timm name for DINO ``args.arch`` (+ ``args.patch_size`` for ViTs): vit_small -> vit_small_patch16_224."""
    arch = str(getattr(args, "arch", "") or "").replace("deit", "vit")
    if re.fullmatch(r"vit_(tiny|small|base|large)", arch):
        return f"{arch}_patch{int(getattr(args, 'patch_size', 16))}_224"
    return arch or None


def _as_gamma(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    try:
        g = float(value)
    except (TypeError, ValueError):
        raise SimpoolBenchError(f"{what}: gamma {value!r} is not a number or 'none'") from None
    if not g > 0 or math.isinf(g):
        raise SimpoolBenchError(f"{what}: gamma {value!r} must be a positive number or 'none'")
    return g


# ------------------------------------------------------------------------------------------ loading
def _tensor_dict(sd: Any, path: Path, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise SimpoolBenchError(f"checkpoint {path}: {where} is a {type(sd).__name__}, expected a state dict")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        k = bad[0]
        raise SimpoolBenchError(
            f"checkpoint {path}: {where} entry {k!r} is a {type(sd[k]).__name__}, expected a tensor"
            + (f" ({len(bad)} such entries)" if len(bad) > 1 else "")
        )
    if not sd:
        raise SimpoolBenchError(f"checkpoint {path}: {where} is empty")
    return dict(sd)


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def is_dino_backbone(sd: Mapping[str, Any]) -> bool:
    """A bare DINO backbone state dict (``dino-backbone``): a DINO ViT (CLS token, square position
    grid, final ``norm``, no classifier, no SimPool) or a ResNet without ``fc``."""
    keys = strip_wrappers(sd, [])
    if any(k.startswith(KNOWN_SIMPOOL_PREFIXES + (DINO_BACKBONE_PREFIX,)) for k in keys) or find_timm_simpool_prefixes(keys):
        return False
    family = family_of_keys(keys)
    if family == "vit":
        pos = keys.get("pos_embed")
        if pos is None or getattr(pos, "ndim", 0) != 3 or "cls_token" not in keys or "norm.weight" not in keys:
            return False
        n = int(pos.shape[1]) - 1
        no_head = not any(k.startswith(("head.", "fc_norm.", "reg_token", "head_dist.")) for k in keys)
        return no_head and n > 0 and math.isqrt(n) ** 2 == n
    if family == "resnet":
        return not any(k.startswith("fc.") for k in keys)
    return False


def _detect(obj: Any, meta: dict[str, str] | None) -> str:
    if meta is not None:
        return "safetensors"
    if isinstance(obj, Mapping):
        if "teacher" in obj or "student" in obj:
            return "official-dino"
        if ("state_dict" in obj or "state_dict_ema" in obj) and any(k in obj for k in ("args", "arch", "version")):
            return "official-supervised"
        if _is_tensor_mapping(obj) and find_timm_simpool_prefixes(obj):
            return "timm-simpool"
        if _is_tensor_mapping(obj) and is_dino_backbone(obj):
            return "dino-backbone"
        if _is_tensor_mapping(obj) or any(k in obj for k in ("state_dict", "state_dict_ema", "model", "model_ema")):
            return "state-dict"
    return ""


def _pick(obj: Mapping[str, Any], options: tuple[str, ...], prefer_key: str | None, path: Path, rules: list[str], why: str) -> str:
    """Choose the container entry holding the weights: ``prefer_key`` if given, else the first present."""
    if prefer_key is not None:
        if prefer_key not in obj or obj[prefer_key] is None:
            raise SimpoolBenchError(
                f"checkpoint {path}: asked for {prefer_key!r} weights but the file has none (entries: {', '.join(map(str, obj))})"
            )
        rules.append(f"{prefer_key} used (asked for)")
        return prefer_key
    for k in options:
        if obj.get(k) is not None:
            rules.append(f"{k} used{why if k == options[0] else ''}")
            return k
    raise SimpoolBenchError(f"checkpoint {path}: none of {', '.join(options)} found (entries: {', '.join(map(str, obj))})")


def load_checkpoint(path: str | Path, format: str | None = None, trust: bool = False, prefer: str = "auto") -> LoadedCheckpoint:
    """Read a checkpoint, detect its format (``format`` forces one of :data:`FORMATS`) and map its
    weights to our layout.

    ``prefer``: ``'auto'`` (EMA weights and the DINO teacher when present), ``'ema'``, ``'raw'``
    (``state_dict``), ``'teacher'`` or ``'student'``. ``trust=True`` allows full unpickling (only
    for files you trust); otherwise only :data:`SAFE_GLOBALS` may be unpickled.
    """
    if format is not None and format not in FORMATS:
        raise SimpoolBenchError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if prefer not in PREFER_CHOICES:
        raise SimpoolBenchError(f"--prefer {prefer!r}: expected one of {', '.join(PREFER_CHOICES)}")
    p = _check_file(path)
    sha = sha256_file(p)
    meta: dict[str, str] | None = None
    if format == "safetensors" or (format is None and _is_safetensors(p)):
        obj, meta = _read_safetensors(p)
    else:
        obj = _torch_load(p, trust)
    detected = _detect(obj, meta)
    fmt = format or detected
    is_container = isinstance(obj, Mapping) and meta is None and not _is_tensor_mapping(obj)
    container_keys = [str(k) for k in obj] if is_container else []
    if not fmt:
        what = (
            f"a dict with entries {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
        )
        raise SimpoolBenchError(
            f"checkpoint {p}: not a checkpoint format this tool knows: it holds {what} (expected a state dict, a timm "
            f"train.py checkpoint with 'state_dict', or a DINO checkpoint with 'teacher'/'student')"
        )
    rules: list[str] = []
    notes: list[str] = []
    if trust:
        notes.append("loaded with trust=True (full unpickling)")
    args = obj.get("args") if isinstance(obj, Mapping) else None
    variant, variant_known, source = "supervised", False, ""
    arch: str | None = None
    arch_source = ""
    pool_from_file: str | None = None
    gamma: float | None = None
    gamma_known = False
    epoch = obj.get("epoch") if isinstance(obj, Mapping) and isinstance(obj.get("epoch"), int) else None
    model_kwargs: dict[str, Any] = {}

    if fmt == "official-dino":
        if not isinstance(obj, Mapping) or not ("teacher" in obj or "student" in obj):
            raise SimpoolBenchError(f"checkpoint {p}: --format official-dino expects a dict with 'teacher' or 'student' weights")
        if prefer in ("ema", "raw"):
            raise SimpoolBenchError(
                f"checkpoint {p}: --prefer {prefer} applies to timm train.py checkpoints; this DINO file has teacher/student"
            )
        source = _pick(obj, ("teacher", "student"), None if prefer == "auto" else prefer, p, rules, " (DINO default)")
        sd = strip_wrappers(_tensor_dict(obj[source], p, source), rules)
        sd = split_dino_backbone(sd, rules)
        variant, variant_known = "dino", True
        if args is not None:
            arch, arch_source = _dino_arch(args), "args.arch"
            mode = getattr(args, "mode", None)
            if mode is not None:
                pool_from_file = DINO_MODE_TO_POOL.get(str(mode))
            if hasattr(args, "gamma"):
                gamma, gamma_known = _as_gamma(args.gamma, f"checkpoint {p} args"), True
    elif fmt == "official-supervised":
        if not isinstance(obj, Mapping) or not ("state_dict" in obj or "state_dict_ema" in obj):
            raise SimpoolBenchError(f"checkpoint {p}: --format official-supervised expects a dict with 'state_dict' (timm train.py)")
        if prefer in ("teacher", "student"):
            raise SimpoolBenchError(f"checkpoint {p}: --prefer {prefer} applies to DINO checkpoints; this timm file has state_dict")
        key = {"ema": "state_dict_ema", "raw": "state_dict"}.get(prefer)
        source = _pick(obj, ("state_dict_ema", "state_dict"), key, p, rules, " (EMA weights, as timm does)")
        if source == "state_dict" and prefer == "auto":
            rules[-1] = "state_dict used (no state_dict_ema in the file)"
        sd = strip_wrappers(_tensor_dict(obj[source], p, source), rules)
        variant, variant_known = "supervised", True
        if args is not None and getattr(args, "model", None):
            arch, arch_source = str(args.model), "args.model"
        elif isinstance(obj.get("arch"), str):
            arch, arch_source = obj["arch"], "arch"
        if args is not None:
            gp = getattr(args, "gp", None)
            pool_from_file = SUPERVISED_GP_TO_POOL.get(str(gp)) if gp is not None else None
            if hasattr(args, "gamma"):
                gamma, gamma_known = _as_gamma(args.gamma, f"checkpoint {p} args"), True
            extra = getattr(args, "model_kwargs", None)
            if isinstance(extra, Mapping) and extra:
                model_kwargs = {k: v for k, v in extra.items() if k not in _BUILD_OWN_ARGS}
                dropped = sorted(set(extra) - set(model_kwargs))
                notes.append(
                    f"args.model_kwargs passed to the model: {sorted(model_kwargs)}"
                    + (f"; ignored (set by the tool): {dropped}" if dropped else "")
                )
    elif fmt == "safetensors":
        sd = strip_wrappers(_tensor_dict(obj, p, "the safetensors file"), rules)
        m = meta or {}
        if m.get("arch"):
            arch, arch_source = m["arch"], "metadata"
        if m.get("pool"):
            pool_from_file = POOL_ALIASES.get(m["pool"].lower())
        if "gamma" in m:
            gamma, gamma_known = _as_gamma(m["gamma"], f"checkpoint {p} metadata"), True
        if m.get("variant") in VARIANTS:
            variant, variant_known = m["variant"], True
    elif fmt == "dino-backbone":
        if not _is_tensor_mapping(obj) or not is_dino_backbone(obj):
            raise SimpoolBenchError(
                f"checkpoint {p}: --format dino-backbone expects a bare DINO backbone state dict (ViT: cls_token, "
                f"pos_embed, patch_embed, blocks, norm and no head; or a ResNet without fc)"
            )
        sd = strip_wrappers(_tensor_dict(obj, p, "the file"), rules)
        variant, variant_known = "dino", True
        notes.append(
            "DINO backbone (no classifier): variant dino, ImageNet mean/std"
            + ("; position interpolation and attention as DINO's vision_transformer.py" if family_of_keys(sd) == "vit" else "")
            + "; --format state-dict reads it as timm weights"
        )
    else:  # state-dict / timm-simpool
        if not isinstance(obj, Mapping):
            raise SimpoolBenchError(f"checkpoint {p}: --format {fmt} expects a state dict, found a {type(obj).__name__}")
        if _is_tensor_mapping(obj):
            sd_raw: Any = obj
        else:
            wrappers = ("state_dict", "model", "state_dict_ema", "model_ema")
            source = next((k for k in wrappers if isinstance(obj.get(k), Mapping)), "")
            if not source:
                _tensor_dict(obj, p, "the file")  # raises, naming the first non-tensor entry
            sd_raw = obj[source]
            rules.append(f"{source} used")
        sd = strip_wrappers(_tensor_dict(sd_raw, p, source or "the file"), rules)
    if fmt != "official-dino" and any(k.startswith(DINO_BACKBONE_PREFIX) for k in sd):
        sd = split_dino_backbone(sd, rules)  # a DINO teacher/student dict saved on its own
        variant, variant_known = "dino", True
    sd = convnext_fb_to_timm(sd, rules)
    family = family_of_keys(sd)
    if not variant_known:  # the SimPool prefix tells the layout: simpool.* is DINO, the others supervised
        if any(k.startswith("simpool.") for k in sd):
            variant, variant_known = "dino", True
        elif any(k.startswith(("gp.pool.", "global_pool.pool.", "head.global_pool.pool.")) for k in sd):
            variant, variant_known = "supervised", True
    sd, renamed = rename_timm_simpool(sd, family, variant, rules)
    if renamed:
        model_kwargs["simpool_eps"] = TIMM_SIMPOOL_NORM_EPS
        notes.append(
            f"timm SimPool1d/2d normalises with LayerNorm eps {TIMM_SIMPOOL_NORM_EPS:g} (used) and takes the minimum "
            "per channel: use --min-scope channel to reproduce its outputs"
        )
        if fmt == "state-dict" and format is None:
            fmt = "timm-simpool"
    elif fmt == "timm-simpool":
        raise SimpoolBenchError(f"checkpoint {p}: --format timm-simpool but no SimPool1d/2d keys (*.norm, *.q, *.k) found")

    pool = infer_pool(sd)
    if pool_from_file is not None and pool is not None and pool_from_file != pool:
        notes.append(f"the file's settings say pool {pool_from_file} but its keys hold {pool}; the keys win")
    if pool is None:
        pool = pool_from_file
    if pool != "simpool":
        gamma, gamma_known = None, True
    beta = _beta_key(sd)
    if beta is not None and gamma_known and gamma is None:
        notes.append(f"{beta} present although the file's settings say no gamma (beta is only used with a gamma)")
    key_arch = infer_arch(sd)
    if arch is None and key_arch is not None:
        arch, arch_source = key_arch, "keys"
    elif arch is not None and key_arch is not None and arch.split(".")[0] != key_arch:
        notes.append(f"the file names {arch} ({arch_source}) but its shapes match {key_arch}")
    if arch is not None and family is not None and family_of_arch(arch) not in (None, family):
        notes.append(f"the file names {arch} ({arch_source}) but its keys are a {family} layout")
    num_classes = None
    if family is not None and CLASSIFIER_WEIGHT[family] in sd:
        num_classes = int(sd[CLASSIFIER_WEIGHT[family]].shape[0])
    if fmt == "official-dino" and pool == "simpool" and family == "vit":
        notes.append(
            "official DINO SimPool ViT: its npatch=tokens-1 position interpolation is reproduced by default (dino_pos_quirk)"
        )
    return LoadedCheckpoint(
        path=p, sha256=sha, format=fmt, variant=variant, state_dict=sd, arch=arch, pool=pool, gamma=gamma,
        gamma_known=gamma_known, has_beta=beta is not None, num_classes=num_classes, key_mapping=rules, notes=notes,
        container_keys=container_keys, source=source, arch_source=arch_source, variant_known=variant_known,
        epoch=epoch, model_kwargs=model_kwargs,
    )


# ------------------------------------------------------------------------------------------ spec
def _supported_arch(arch: str) -> bool:
    return family_of_arch(arch) is not None


def _same_arch(a: str, b: str) -> bool:
    return a.split(".")[0] == b.split(".")[0]


def resolve_spec(
    ckpt: LoadedCheckpoint, arch: str | None = None, pool: str | None = None, gamma: Any = UNSET, variant: str | None = None
) -> tuple[str, str, Any, str]:
    """``(arch, pool, gamma, variant)`` for building the model of ``ckpt``.

    What the file states is used where the user passed nothing; a flag that contradicts the file is an
    error naming both values. ``gamma`` is :data:`UNSET` when not passed (any bare ``object()``
    sentinel counts as unset too); the returned gamma is a float, None (no gamma) or ``'default'``
    (neither the file nor the user tells: the paper default of the architecture).
    """
    name = ckpt.path.name
    if gamma is UNSET or type(gamma) is object or (isinstance(gamma, str) and gamma.strip().lower() == "default"):
        gamma = UNSET
    # architecture
    if arch is not None:
        # an arch guessed from key shapes alone does not bind (several timm names share shapes)
        if ckpt.arch is not None and ckpt.arch_source != "keys" and not _same_arch(arch, ckpt.arch):
            raise SimpoolBenchError(f"--model {arch} conflicts with {name}, which holds {ckpt.arch} (from its {ckpt.arch_source})")
        out_arch = arch
    elif ckpt.arch is not None:
        out_arch = ckpt.arch
    else:
        raise SimpoolBenchError(f"cannot tell the architecture of {name} ({ckpt.format}): pass --model (e.g. vit_small_patch16_224)")
    if not _supported_arch(out_arch):
        raise SimpoolBenchError(
            f"unknown architecture {out_arch!r}{'' if arch else f' (from {name})'}: expected a timm ViT, DeiT, ResNet, ConvNeXt, "
            f"EfficientNet or RegNet name such as vit_small_patch16_224, deit_small_patch16_224, resnet50, efficientnet_b0"
        )
    fam = family_of_arch(out_arch)
    if ckpt.family is not None and fam != ckpt.family:
        raise SimpoolBenchError(f"{'--model ' if arch else ''}{out_arch} is a {fam} but {name} holds {ckpt.family} weights")
    # pooling
    if pool is not None:
        user_pool = POOL_ALIASES.get(pool.lower())
        if user_pool is None:
            raise SimpoolBenchError(f"--pool {pool!r}: expected one of {', '.join(POOLS)}")
        if ckpt.pool is not None and user_pool != ckpt.pool:
            raise SimpoolBenchError(f"--pool {pool} conflicts with {name}, whose weights are for --pool {ckpt.pool}")
        out_pool = user_pool
    else:
        out_pool = ckpt.pool or "simpool"
    if out_pool == "cls" and fam != "vit":
        raise SimpoolBenchError(f"--pool cls needs a ViT (CLS token); {out_arch} has none")
    # variant
    if variant is not None:
        if variant not in VARIANTS:
            raise SimpoolBenchError(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        if ckpt.variant_known and variant != ckpt.variant:
            raise SimpoolBenchError(
                f"--variant {variant} conflicts with {name}, a {ckpt.variant} checkpoint ({ckpt.format})"
            )
        out_variant = variant
    else:
        out_variant = ckpt.variant
    # gamma
    if out_pool != "simpool":
        if gamma is not UNSET and _as_gamma(gamma, "--gamma") is not None:
            raise SimpoolBenchError(f"--gamma {gamma} applies to --pool simpool only (this model pools with {out_pool})")
        return out_arch, out_pool, None, out_variant
    if gamma is not UNSET:
        user_gamma = _as_gamma(gamma, "--gamma")
        if ckpt.gamma_known and not _same_gamma(user_gamma, ckpt.gamma):
            raise SimpoolBenchError(
                f"--gamma {_fmt_gamma(user_gamma)} conflicts with {name}, trained with gamma {_fmt_gamma(ckpt.gamma)}"
            )
        if ckpt.has_beta and user_gamma is None:
            raise SimpoolBenchError(f"--gamma none conflicts with {name}: it has a SimPool beta, which only exists with a gamma")
        return out_arch, out_pool, user_gamma, out_variant
    if ckpt.gamma_known:
        return out_arch, out_pool, ckpt.gamma, out_variant
    return out_arch, out_pool, "default", out_variant


def _same_gamma(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _fmt_gamma(g: float | None) -> str:
    return "none" if g is None else f"{g:g}"


# ------------------------------------------------------------------------------------------ loading into a model
def _short_list(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def load_into(model: torch.nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Load ``ckpt``'s weights into ``model`` strictly; any mismatch is ONE error listing missing and
    unexpected keys and shape mismatches, with the detected format (a class-count mismatch is named
    as such)."""
    expected = model.state_dict()
    sd = ckpt.state_dict
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        model.load_state_dict(sd, strict=True)
        return
    fam = ckpt.family or family_of_arch(str(getattr(model, "arch", "") or ""))
    what = f"{ckpt.path} ({ckpt.format}{', ' + ckpt.arch if ckpt.arch else ''})"
    model_name = getattr(model, "arch", None) or type(model).__name__
    head_w = CLASSIFIER_WEIGHT.get(fam or "", "")
    head_keys = {head_w, head_w[: -len("weight")] + "bias"} if head_w else set()
    problems = set(missing) | set(unexpected) | set(shapes)
    if head_keys and problems and problems <= head_keys:
        n_file = int(sd[head_w].shape[0]) if head_w in sd else 0
        n_model = int(expected[head_w].shape[0]) if head_w in expected else 0
        raise SimpoolBenchError(
            f"{what}: class-count mismatch: the checkpoint has {n_file or 'no'} classes"
            f"{'' if n_file else ' (no classifier head)'}, the model {model_name} was built with {n_model or 'no'} classifier"
            f"{'' if n_model else ' head'}; pass --num-classes {n_file}"
        )
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys [{_short_list(missing)}]")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys [{_short_list(unexpected)}]")
    if shapes:
        parts.append(
            f"{len(shapes)} shape mismatches "
            f"[{_short_list([f'{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}' for k in shapes], 4)}]"
        )
    raise SimpoolBenchError(f"{what} does not fit the model {model_name}: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------ inspect
def inspect_checkpoint(path: str | Path, trust: bool = False, format: str | None = None, prefer: str = "auto") -> dict[str, Any]:
    """What ``simpool-bench inspect`` prints: format, variant, arch, pool, gamma, beta, classes,
    parameter count, NaN/inf weights (count and tensors), the key mapping applied and the container's entries."""
    from .finite import describe_nonfinite, nonfinite_tensors

    c = load_checkpoint(path, format=format, trust=trust, prefer=prefer)
    return {
        "path": str(c.path),
        "sha256": c.sha256,
        "format": c.format,
        "variant": c.variant,
        "arch": c.arch,
        "arch_source": c.arch_source,
        "pool": c.pool,
        "gamma": c.gamma,
        "gamma_known": c.gamma_known,
        "beta": c.has_beta,
        "num_classes": c.num_classes,
        "n_params": c.n_params,
        "n_tensors": len(c.state_dict),
        "non_finite": describe_nonfinite(nonfinite_tensors(c.state_dict)),
        "weights": c.source,
        "epoch": c.epoch,
        "key_mapping": list(c.key_mapping),
        "container_keys": list(c.container_keys),
        "notes": list(c.notes),
    }
