"""Checkpoint keys: our (official) layout, the maps from other layouts to it, and what keys tell
about a model (family, timm architecture, pooling)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import SimpoolBenchError
from ..families import CNN_FAMILIES, FAMILIES, family_of_state_dict
from ..models import model_family

# DDP / torch.compile wrappers (timm ``clean_state_dict`` strips the same ones).
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
DINO_BACKBONE_PREFIX = "backbone."
DINO_HEAD_PREFIX = "head."
#: The names of DINO's projection head (``DINOHead``: ``mlp`` and the weight-normed ``last_layer``)
#: beside the backbone in its ``MultiCropWrapper``.
DINO_HEAD_NAMES = ("head.mlp.", "head.mlp.weight", "head.mlp.bias", "head.last_layer.")

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


def strip_wrappers(sd: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    """Remove DDP/torch.compile prefixes (``module.``, ``_orig_mod.``, in any order) from every key."""
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for k, v in sd.items():
        while k.startswith(WRAPPER_PREFIXES):
            for p in WRAPPER_PREFIXES:
                if k.startswith(p):
                    seen.add(p)
                    k = k[len(p) :]
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
    out = {k[len(DINO_BACKBONE_PREFIX) :]: v for k, v in sd.items() if k.startswith(DINO_BACKBONE_PREFIX)}
    dropped = [k for k in sd if not k.startswith(DINO_BACKBONE_PREFIX)]
    rules.append("stripped backbone.")
    if dropped:
        n_head = sum(k.startswith(DINO_HEAD_NAMES) for k in dropped)
        others = len(dropped) - n_head
        parts = ([f"{n_head} DINO head keys (head.*)"] if n_head else []) + ([f"{others} other non-backbone keys"] if others else [])
        rules.append("dropped " + " and ".join(parts))
    return out


def convnext_fb_to_timm(sd: Mapping[str, Any], rules: list[str]) -> dict[str, Any]:
    """facebookresearch/ConvNeXt key layout (used by the SimPool DINO ConvNeXt) -> timm's layout."""
    if "downsample_layers.0.0.weight" not in sd:
        return dict(sd)
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for k, v in sd.items():
        n = k
        if n.startswith("downsample_layers.0."):
            n = "stem." + n[len("downsample_layers.0.") :]
        n = re.sub(r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample.", n)
        n = re.sub(r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2.", n)
        n = n.replace(".dwconv.", ".conv_dw.").replace(".pwconv1.", ".mlp.fc1.").replace(".pwconv2.", ".mlp.fc2.")
        if n.startswith("norm."):
            n = "head." + n
        elif n.startswith("head.") and not n.startswith("head.norm."):
            n = "head.fc." + n[len("head.") :]
        if n in out:  # one would silently replace the other
            raise SimpoolBenchError(
                f"holds both {source[n]!r} and {k!r}, which are the same ConvNeXt weight {n!r} in timm's names; expected one of them"
            )
        out[n], source[n] = v, k
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
        if f"{p}k.weight" in sd and f"{p}norm.weight" in sd and not any(f"{p}{x}.weight" in sd for x in ("v", "kv", "qkv", "proj")):
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
            rest = k[len(p) :]
            head, _, tail = rest.partition(".")
            if head in TIMM_SIMPOOL_RENAMES and tail:
                moved[k] = f"{target}{TIMM_SIMPOOL_RENAMES[head]}.{tail}"
            elif head in ("q_norm", "k_norm") and target != p:
                moved[k] = f"{target}{rest}"
        clash = next(((old, new) for old, new in moved.items() if new in out and new not in moved), None)
        if clash is not None:  # renaming would silently replace the weights already under the official name
            raise SimpoolBenchError(
                f"holds both {clash[0]!r} (a timm SimPool1d/2d name) and {clash[1]!r}, the official name it maps to; expected one of them"
            )
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
        if w.ndim != 4:  # not a conv weight: nothing to tell (load_into names the shape)
            return None
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
        if first is not None and last is not None and first.ndim and last.ndim and (int(first.shape[0]), int(last.shape[0])) == (64, 512):
            name = RESNET_DEPTHS.get((bottleneck, depths))
    elif fam == "convnext":
        blocks = _count_indices(sd, r"stages\.(\d)\.blocks\.(\d+)\.")
        depths = tuple(len(blocks.get(i, ())) for i in (0, 1, 2, 3))
        stem, last = sd["stem.0.weight"], sd.get("stages.3.blocks.0.conv_dw.weight")
        if stem.ndim and last is not None and last.ndim and int(last.shape[0]) == 8 * int(stem.shape[0]):
            width = int(stem.shape[0])
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
