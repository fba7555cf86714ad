"""``resolve_spec``: the model to build for a checkpoint, from what the file states and the user's flags."""

from __future__ import annotations

import math
from typing import Any

from ..errors import SimpoolBenchError
from ..models import POOLS, VARIANTS
from ..unset import UNSET
from .formats import POOL_ALIASES, _as_gamma
from .keys import family_of_arch
from .loaded import LoadedCheckpoint


def _supported_arch(arch: str) -> bool:
    return family_of_arch(arch) is not None


def _same_arch(a: str, b: str) -> bool:
    return a.split(".")[0] == b.split(".")[0]


def resolve_spec(
    ckpt: LoadedCheckpoint, arch: str | None = None, pool: str | None = None, gamma: Any = UNSET, variant: str | None = None
) -> tuple[str, str, Any, str]:
    """``(arch, pool, gamma, variant)`` for building the model of ``ckpt``.

    What the file states is used where the user passed nothing; a flag that contradicts the file is an
    error naming both values. ``gamma`` is :data:`UNSET` when not passed; the returned gamma is a
    float, None (no gamma) or :data:`UNSET` (neither the file nor the user tells: the paper default
    of the architecture, which ``build_model`` applies).
    """
    name = ckpt.path.name
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
            raise SimpoolBenchError(f"--variant {variant} conflicts with {name}, a {ckpt.variant} checkpoint ({ckpt.format})")
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
            raise SimpoolBenchError(f"--gamma {_fmt_gamma(user_gamma)} conflicts with {name}, trained with gamma {_fmt_gamma(ckpt.gamma)}")
        if ckpt.has_beta and user_gamma is None:
            raise SimpoolBenchError(f"--gamma none conflicts with {name}: it has a SimPool beta, which only exists with a gamma")
        return out_arch, out_pool, user_gamma, out_variant
    if ckpt.gamma_known:
        return out_arch, out_pool, ckpt.gamma, out_variant
    return out_arch, out_pool, UNSET, out_variant


def _same_gamma(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _fmt_gamma(g: float | None) -> str:
    return "none" if g is None else f"{g:g}"
