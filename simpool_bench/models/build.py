"""``build_model``: a timm model with the pooling, attention source and data config asked for.

The steps of one call (``_ModelBuild``): check the options against each other, resolve the
classifier size and timm's arguments, find pretrained weights, create the timm model, check the
pooling it ends up with, resolve its evaluation data config and wrap it in its family's
``BenchModel``.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import timm
from safetensors import SafetensorError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_model_data_config
from timm.layers import Attention
from timm.models import is_model, is_model_in_modules, split_model_name_tag
from torch import nn

from ..errors import SimpoolBenchError
from ..families import EXAMPLE_ARCHS, FAMILIES, MAP_SOURCES, POOLS, source_applies
from ..map_sources import DEFAULT_DISCARD_RATIO, DEFAULT_HEAD_FUSION, check_rollout_options, rollout_flags_given
from ..pooling import MIN_SCOPES, SIMPOOL_NORM_EPS
from ..unset import UNSET
from ..weights import Pretrained, hf_cache_dir, load_torchvision_weights, locate_pretrained, resolve_name, timm_missing_keys
from .base import BenchModel
from .convnext import ConvNeXtBenchModel
from .resnet import ResNetBenchModel
from .vit import ViTBenchModel

POS_INTERPS: tuple[str, ...] = ("timm", "dino")
VARIANTS: tuple[str, ...] = ("supervised", "dino")
ATTN_SOURCES: tuple[str, ...] = (*MAP_SOURCES, "none")
# timm module -> our family name
FAMILY_MODULES: dict[str, str] = {m: f.name for f in FAMILIES.values() for m in f.modules}
# Paper defaults (SimPool README: "1.25 for transformers, 2.0 for convolutional networks").
DEFAULT_GAMMA: dict[str, float] = {f.name: f.gamma for f in FAMILIES.values()}
# DINO's evaluation transform (eval_knn.py / eval_linear.py): Resize(256, bicubic), CenterCrop(224),
# ImageNet mean/std; given to timm's data-config resolver as overrides for variant='dino'.
DINO_EVAL_DATA_CONFIG: dict[str, Any] = {
    "crop_pct": 224 / 256,
    "interpolation": "bicubic",
    "mean": IMAGENET_DEFAULT_MEAN,
    "std": IMAGENET_DEFAULT_STD,
}
# timm arguments that build_model decides itself.
_RESERVED_TIMM_KWARGS = ("pretrained", "num_classes", "global_pool", "class_token", "fc_norm")
# What timm raises when it cannot read or load a pretrained weight file (a truncated file, a pickle
# it refuses, a state dict of another model, an unreadable safetensors header; AttributeError: a
# file holding a list, an int key or a value that is not a tensor).
_WEIGHT_LOAD_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
    AssertionError,
    EOFError,
    AttributeError,
    pickle.UnpicklingError,
    SafetensorError,
)
# What a timm model's constructor raises for arguments it rejects (an unknown keyword, a failed
# check such as "dim should be divisible by num_heads", a negative width: torch's RuntimeError,
# num_heads 0: ZeroDivisionError).
_ARGUMENT_ERRORS = (TypeError, AssertionError, ValueError, RuntimeError, ArithmeticError)


class TimmArgumentsError(SimpoolBenchError):
    """``timm.create_model`` rejected the model's arguments: ``arch``, the caller's timm ``kwargs``
    and timm's one-line ``reason`` (``load_model`` rewords it for a checkpoint's ``args.model_kwargs``)."""

    def __init__(self, arch: str, kwargs: dict[str, Any], err: BaseException) -> None:
        self.arch, self.kwargs = arch, dict(kwargs)
        self.reason = " ".join(str(err).split())[:300] or type(err).__name__
        super().__init__(f"model {arch!r}: timm rejected the arguments {sorted(kwargs)}: {self.reason}")


_FAMILY_CLASSES: dict[str, type[BenchModel]] = {"vit": ViTBenchModel, "resnet": ResNetBenchModel, "convnext": ConvNeXtBenchModel}


def _family_class(family: str) -> Callable[..., BenchModel]:
    if family in _FAMILY_CLASSES:
        return _FAMILY_CLASSES[family]
    from .cnn import CNNBenchModel  # EfficientNet, RegNet: timm's forward_features, pooled linear head

    return CNNBenchModel


def model_family(arch: str) -> str:
    """Our family ('vit', 'resnet', 'convnext', 'efficientnet', 'regnet') of a timm model name (a
    pretrained tag is allowed; ``hf-hub:``/``torchvision:`` names resolve through ``weights``)."""
    if arch.startswith(("hf-hub:", "hf_hub:", "torchvision:")):
        arch = resolve_name(arch).arch
    name, _ = split_model_name_tag(arch)
    if not is_model(name):
        raise SimpoolBenchError(
            f"unknown model {arch!r}: expected a timm model name of a supported family, such as {', '.join(EXAMPLE_ARCHS)}"
        )
    for module, family in FAMILY_MODULES.items():
        if is_model_in_modules(name, [module]):
            return family
    raise SimpoolBenchError(
        f"model {arch!r} is outside the supported timm families ({', '.join(FAMILIES)}), e.g. {', '.join(EXAMPLE_ARCHS)}"
    )


def resolve_gamma(gamma: Any, family: str, pool: str) -> float | None:
    """``UNSET`` -> paper default for the family; None/'none' -> None; a number (or its string)."""
    if pool != "simpool":
        if gamma is not UNSET and gamma is not None and not (isinstance(gamma, str) and gamma.lower() == "none"):
            raise SimpoolBenchError(f"gamma {gamma!r} applies only to pool='simpool', not pool={pool!r}")
        return None
    if isinstance(gamma, str):
        low = gamma.strip().lower()
        if low == "none":
            return None
        try:
            gamma = float(low)
        except ValueError:
            raise SimpoolBenchError(f"gamma {gamma!r}: expected a positive number or 'none'") from None
    if gamma is UNSET:
        return DEFAULT_GAMMA[family]
    if gamma is None:
        return None
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):  # np.float32(1.1) is not 1.1: the exponent would differ
        kind = f"{type(gamma).__module__}.{type(gamma).__qualname__}"
        raise SimpoolBenchError(f"gamma {gamma!r}: a {kind}; expected a Python int or float (a positive number) or 'none'")
    if not math.isfinite(gamma) or gamma <= 0:
        raise SimpoolBenchError(f"gamma {gamma!r}: expected a positive number or 'none'")
    return float(gamma)


def _resolve_attn_source(
    attn_source: str | None, family: str, pool: str, has_classifier: bool, has_cls_token: bool | None = None
) -> str | None:
    if has_cls_token is None:
        has_cls_token = family == "vit" and pool != "simpool"
    if attn_source is None:
        if pool in ("simpool", "cls", "map"):
            return pool
        return "cam" if family != "vit" and has_classifier else None
    if attn_source not in ATTN_SOURCES:
        raise SimpoolBenchError(f"--attn-source {attn_source!r}: expected one of {', '.join(ATTN_SOURCES)}")
    if attn_source == "none":
        return None
    why = source_applies(family, pool, attn_source, has_cls_token=has_cls_token, has_classifier=has_classifier)
    if why is not None:
        raise SimpoolBenchError(f"--attn-source {attn_source!r} does not apply to this {family} (pool={pool!r}): {why}")
    return attn_source


def _native_pool(net: nn.Module, family: str) -> str:
    """The pooling a timm model was built with: ViT global_pool token -> cls, avg -> gap, map -> map; CNNs gap."""
    if family != "vit":
        return "gap"
    gp = str(getattr(net, "global_pool", ""))
    native = {"token": "cls", "avg": "gap", "map": "map"}.get(gp)
    if native is None:
        raise SimpoolBenchError(f"this ViT pools with timm global_pool {gp!r}; simpool-bench reads token (cls), avg (gap) and map")
    return native


def build_model(
    arch: str,
    pool: str | None = "simpool",
    gamma: Any = UNSET,
    variant: str = "supervised",
    num_classes: int | None = 1000,
    img_size: int | tuple[int, int] | None = None,
    min_scope: str = "sample",
    attn_source: str | None = None,
    cls_head: int | None = None,
    use_beta: bool = False,
    dino_pos_quirk: bool = False,
    simpool_eps: float = SIMPOOL_NORM_EPS,
    pos_interp: str = "timm",
    fused_attn: bool | None = None,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    data_overrides: dict[str, Any] | None = None,
    rollout_fusion: str = DEFAULT_HEAD_FUSION,
    rollout_discard: float = DEFAULT_DISCARD_RATIO,
    **timm_kwargs: Any,
) -> BenchModel:
    """Build a timm model with the pooling and attention source asked for (random weights unless
    ``pretrained``/``pretrained_file``).

    Args:
        arch: timm name of a supported family (``families``: vit_*/deit_*, resnet*, convnext*,
            efficientnet*, regnet*; a pretrained tag is allowed), ``hf-hub:ORG/NAME`` or
            ``torchvision:NAME`` (see ``weights``).
        pool: ``'simpool'``, ``'cls'`` (ViTs with a CLS token), ``'gap'``, ``'map'`` (ViTs: timm's
            attention-pool head) or None: the model's own timm pooling (ViT token/avg/map, CNN gap).
        gamma: SimPool exponent: ``UNSET`` (not given: the paper default, 1.25 transformers, 2.0 CNNs), ``None``/'none' (plain
            attention-weighted mean) or a positive number. Only for pool='simpool'.
        variant: ``'supervised'`` (official timm fork layout, classifier) or ``'dino'`` (official DINO
            layout: features only, ``num_classes`` ignored; ViT pools 'simpool'/'cls', CNNs 'simpool'/'gap').
        num_classes: classifier outputs (supervised); None: the pretrained config's (else 1000).
        img_size: configured input size (ViT position grid; every family: ``data_config`` input size);
            None: the input size of timm's pretrained config of ``arch`` (``vit_*_384``: 384), else 224.
        min_scope: SimPool minimum scope, 'sample' | 'batch' | 'channel' (see ``pooling``).
        attn_source: 'simpool' | 'cls' | 'cam' | 'map' | 'rollout' | 'gradcam' | 'none'; default by
            pool (simpool, cls and map give their own map; CNN gap -> 'cam'; ViT gap -> none).
        cls_head: with attn_source 'cls', use this head instead of the mean over heads.
        use_beta: SimPool has the learnable scalar ``beta`` (needs a gamma).
        dino_pos_quirk: reproduce the official DINO position-embedding interpolation (variant
            'dino' ViTs only; on for official DINO files, never for our own models).
        simpool_eps: LayerNorm eps of SimPool's ``norm_patches`` (official 1e-6, timm's 1e-5).
        pos_interp: ViT position-embedding resize: ``'timm'`` (``resample_abs_pos_embed``) or ``'dino'``
            (the DINO code's ``interpolate_pos_encoding``; the default for DINO-code weights in
            ``api.load_model``).
        fused_attn: ViT attention kernel: None = timm's default (fused where available), False = the
            explicit ``softmax(q k^T * scale) v`` of the DINO code, True = fused.
        pretrained: load timm's pretrained weights (from the local Hugging Face cache, see ``weights``).
        pretrained_file: load timm's pretrained weights from this file (implies ``pretrained``).
        data_overrides: data-config entries that win over the pretrained config (mean, std,
            crop_pct, interpolation).
        rollout_fusion, rollout_discard: attention-rollout head fusion and discard ratio.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. depth, embed_dim, num_heads, patch_size).
    """
    return _ModelBuild(**locals()).run()  # every argument above, by name


@dataclass
class _ModelBuild:
    """One ``build_model`` call: its arguments (same names) and its steps, in ``run``'s order."""

    arch: str
    pool: str | None
    gamma: Any
    variant: str
    num_classes: int | None
    img_size: int | tuple[int, int] | None
    min_scope: str
    attn_source: str | None
    cls_head: int | None
    use_beta: bool
    dino_pos_quirk: bool
    simpool_eps: float
    pos_interp: str
    fused_attn: bool | None
    pretrained: bool
    pretrained_file: str | None
    data_overrides: dict[str, Any] | None
    rollout_fusion: str
    rollout_discard: float
    timm_kwargs: dict[str, Any]

    def run(self) -> BenchModel:
        """Check, create the timm model, check its pooling, wrap it in its family's BenchModel."""
        self.name = resolve_name(self.arch, self.pretrained_file)
        self.family = model_family(self.name.arch)
        self.pretrained = bool(self.pretrained or self.pretrained_file is not None)
        self.check_options()
        n_classes = self.classifier_outputs()
        img_size = self.img_size if self.img_size is not None else self.default_size()
        try:
            self.size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        except (TypeError, ValueError):  # e.g. a checkpoint's args.model_kwargs img_size 'big'
            why = ValueError(f"img_size {img_size!r}: expected an int or (height, width)")
            raise TimmArgumentsError(self.arch, self.timm_kwargs, why) from None
        net, where = self.create_net(n_classes)
        if self.pool is None:
            self.pool = _native_pool(net, self.family)
        gamma, source = self.check_pooling(net, n_classes)
        extra = {"family": self.family} if self.family not in _FAMILY_CLASSES else {}
        model = _family_class(self.family)(
            net,
            simpool_eps=self.simpool_eps,
            arch=self.arch,
            pool=self.pool,
            gamma=gamma,
            variant=self.variant,
            attn_source=source,
            cls_head=self.cls_head,
            min_scope=self.min_scope,
            use_beta=self.use_beta,
            dino_pos_quirk=self.dino_pos_quirk,
            data_config=self.data_config(net),
            pos_interp=self.pos_interp,
            **extra,
        )
        if self.fused_attn is not None:
            for m in model.modules():
                if isinstance(m, Attention):
                    m.fused_attn = bool(self.fused_attn)  # type: ignore[misc]  # timm marks it Final (for TorchScript); it is its own switch
        model.rollout_fusion, model.rollout_discard = self.rollout_fusion, float(self.rollout_discard)
        model.weights_source = where.label if where is not None else None
        model.weights_file = where.file if where is not None else None
        cls_head, heads = self.cls_head, getattr(model, "num_heads", 0)
        if cls_head is not None and not 0 <= cls_head < heads:
            raise SimpoolBenchError(f"--cls-head {cls_head}: out of range, the last block has {heads} heads (0 to {heads - 1})")
        return model

    def check_options(self) -> None:
        """The arguments against each other and the family, before anything is built."""
        arch, family, pool, variant, pretrained = self.arch, self.family, self.pool, self.variant, self.pretrained
        if pool is not None and pool not in POOLS:
            raise SimpoolBenchError(f"pool {pool!r} is not one of {', '.join(POOLS)}")
        if pool is not None and pool not in FAMILIES[family].pools:
            raise SimpoolBenchError(f"pool {pool!r} needs a ViT; {arch!r} is a {family}: use 'simpool' or 'gap'")
        if variant not in VARIANTS:
            raise SimpoolBenchError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        if self.min_scope not in MIN_SCOPES:
            raise SimpoolBenchError(f"min_scope {self.min_scope!r} is not one of {', '.join(MIN_SCOPES)}")
        if variant == "dino" and family == "vit" and pool in ("gap", "map"):
            raise SimpoolBenchError(f"variant 'dino' ViTs pool with 'simpool' or 'cls' (the official DINO models), not {pool!r}")
        flag = "--pretrained-file" if self.pretrained_file is not None else "--pretrained"
        if pretrained and pool == "simpool":
            raise SimpoolBenchError(
                f"{flag} loads timm's own weights of {arch}, which have no SimPool layer: use the model's pooling "
                f"(leave --pool out) or --pool cls|gap|map, or --checkpoint for a SimPool checkpoint"
            )
        if pretrained and variant != "supervised":
            raise SimpoolBenchError(f"{flag} builds timm's supervised layout; drop --variant dino")
        check_rollout_options(self.rollout_fusion, self.rollout_discard)
        if family == "vit" and "distilled" in self.name.arch and pool not in (None, "cls"):
            raise SimpoolBenchError(f"{arch}: a distilled DeiT reads its CLS and distillation tokens: use --pool cls, not {pool!r}")
        if self.dino_pos_quirk and not (family == "vit" and variant == "dino"):
            raise SimpoolBenchError(f"dino_pos_quirk applies to variant 'dino' ViTs only, not {variant} {family}")
        if self.pos_interp not in POS_INTERPS:
            raise SimpoolBenchError(f"pos_interp {self.pos_interp!r} is not one of {', '.join(POS_INTERPS)}")
        if self.pos_interp != "timm" and family != "vit":
            raise SimpoolBenchError(f"pos_interp {self.pos_interp!r} applies to ViTs only (position embeddings), not a {family}")
        if self.fused_attn is not None and family != "vit":
            raise SimpoolBenchError(f"fused_attn applies to ViTs only, not a {family}")
        own = ("class_token",) if pool in ("map", "gap") else ()  # e.g. SigLIP-style map ViTs have no CLS token
        bad = [k for k in _RESERVED_TIMM_KWARGS if k in self.timm_kwargs and k not in own]
        if bad:
            raise SimpoolBenchError(f"timm argument(s) {', '.join(bad)} are set by build_model (use pool/variant/num_classes)")

    def classifier_outputs(self) -> int:
        """Classifier outputs: ``num_classes``, else the pretrained config's, else 1000; 0 for DINO."""
        num_classes, name = self.num_classes, self.name
        if num_classes is None:
            cfg_classes = (name.pretrained_cfg or {}).get("num_classes") if name.pretrained_cfg else None
            if cfg_classes is None and self.pretrained:
                from timm.models import get_pretrained_cfg

                found = get_pretrained_cfg(name.arch)
                cfg_classes = getattr(found, "num_classes", None) if found is not None else None
            num_classes = int(cfg_classes) if cfg_classes else 1000
        n_classes = 0 if self.variant == "dino" else int(num_classes)
        if n_classes < 0:
            raise SimpoolBenchError(f"num_classes {num_classes!r} must be >= 0")
        return n_classes

    def default_size(self) -> tuple[int, int]:
        """The input size of timm's pretrained config of the name (its training size, as timm builds
        the model: ``vit_base_patch16_384`` at 384), else 224."""
        cfg: Any = self.name.pretrained_cfg
        if cfg is None and self.name.source == "timm":
            from timm.models import get_pretrained_cfg

            try:
                cfg = get_pretrained_cfg(self.name.arch)
            except (RuntimeError, ValueError):  # a name timm does not know: create_model names it
                cfg = None
        size = cfg.get("input_size") if isinstance(cfg, dict) else getattr(cfg, "input_size", None)
        return (int(size[-2]), int(size[-1])) if size and len(size) == 3 else (224, 224)

    def timm_arguments(self) -> dict[str, Any]:
        """``timm.create_model`` keywords: the name's, the caller's, the input size and the pooling."""
        # an hf-hub config.json's num_classes (timm's save_config_for_hf writes it in model_args too)
        # is its pretrained config's: build_model passes its own (classifier_outputs)
        model_args = {k: v for k, v in self.name.model_args.items() if k != "num_classes"}
        kw: dict[str, Any] = {**model_args, **self.timm_kwargs}
        if self.family == "vit":
            kw["img_size"] = self.size
            kw.setdefault("dynamic_img_size", True)
            if self.pool == "simpool":
                if kw.get("reg_tokens"):
                    raise SimpoolBenchError("SimPool ViTs have no prefix tokens: drop reg_tokens")
                kw.update(class_token=False, global_pool="", fc_norm=False)
            elif self.pool is not None:
                kw["global_pool"] = {"cls": "token", "gap": "avg", "map": "map"}[self.pool]
        return kw

    def locate_weights(self, kw: dict[str, Any]) -> Pretrained:
        """Where the pretrained weights are; sets timm's keywords (``kw``) to read them from there."""
        from timm.models import get_pretrained_cfg

        name = self.name
        cfg = name.pretrained_cfg
        if not cfg:
            found = get_pretrained_cfg(name.arch)
            cfg = found.to_dict() if found else {}
        where = locate_pretrained(name, cfg, self.pretrained_file)
        if not where.torchvision:
            kw["pretrained_cfg_overlay"] = where.overlay
        if where.file is None:  # online, not cached: timm downloads into the cache
            kw["cache_dir"] = str(hf_cache_dir())
        return where

    def create_net(self, n_classes: int) -> tuple[nn.Module, Pretrained | None]:
        """The timm model (with its pretrained weights, if asked) and where the weights came from."""
        arch, pretrained = self.arch, self.pretrained
        kw = self.timm_arguments()
        where = self.locate_weights(kw) if pretrained else None
        if self.name.pretrained_cfg is not None:
            kw["pretrained_cfg"] = self.name.pretrained_cfg
        timm_pretrained = pretrained and where is not None and not where.torchvision
        if timm_pretrained and n_classes > 0:
            # timm drops a classifier whose class count is not its pretrained config's and then loads
            # the rest non-strictly (a random head, random missing blocks): the file's head must fit
            kw["pretrained_cfg_overlay"] = {**kw.get("pretrained_cfg_overlay", {}), "num_classes": n_classes}
        try:
            with timm_missing_keys() as missing:
                net = timm.create_model(self.name.arch, pretrained=timm_pretrained, num_classes=n_classes, **kw)
        except TypeError as e:
            raise TimmArgumentsError(arch, self.timm_kwargs, e) from None
        except SimpoolBenchError:
            raise
        except (*_WEIGHT_LOAD_ERRORS, ArithmeticError) as e:
            if pretrained and isinstance(e, _WEIGHT_LOAD_ERRORS):
                raise self.weights_error(where, e) from None
            if not pretrained and isinstance(e, _ARGUMENT_ERRORS):  # random weights: only the arguments can be at fault
                raise TimmArgumentsError(arch, self.timm_kwargs, e) from None
            raise
        if missing:  # features only (no classifier): timm loaded the rest non-strictly
            raise self.missing_error(where, missing)
        if where is not None and where.torchvision:
            assert where.file is not None  # locate_pretrained always finds torchvision's file locally
            load_torchvision_weights(net, where.file, self.weights_flag(where))
        return net, where

    def weights_flag(self, where: Pretrained | None) -> str:
        """The flag that gave the weights, as the user gave it: ``--pretrained-file FILE``, or
        ``--pretrained NAME`` (with the file it found, if any)."""
        if self.pretrained_file is not None:
            return f"--pretrained-file {self.pretrained_file}"
        return f"--pretrained {self.arch}" + (f" ({where.file})" if where is not None and where.file is not None else "")

    def weights_error(self, where: Pretrained | None, e: BaseException) -> SimpoolBenchError:
        """The one error of pretrained weights that timm could not load, naming the flag that gave them."""
        if isinstance(e, SafetensorError) and where is not None and where.file is not None:
            from ..checkpoints.safe_load import unreadable_safetensors  # not at import: checkpoints imports models

            fix = "rename it to .pth (timm reads a .safetensors name as safetensors)"
            return unreadable_safetensors(self.weights_flag(where), where.file, e, fix)
        if self.pretrained_file is not None and where is not None and where.file is not None:
            from ..checkpoints.safe_load import not_a_torch_file  # not at import: checkpoints imports models

            not_torch = not_a_torch_file(where.file, self.weights_flag(where))
            if not_torch is not None:  # a text file, an HTML page, a zip cut short: what it is, not timm's KeyError
                return not_torch
        flag, what = self.flag_and_what(where)
        reason = " ".join(str(e).split())[:300] or "empty or truncated"
        return SimpoolBenchError(f"{flag}: timm could not load {what} into {self.name.arch} ({type(e).__name__}: {reason})")

    def missing_error(self, where: Pretrained | None, missing: list[str]) -> SimpoolBenchError:
        """The one error of pretrained weights that lack some of the model's tensors (timm would leave them random)."""
        flag, what = self.flag_and_what(where)
        shown = ", ".join(missing[:4]) + (f", ... ({len(missing)} in all)" if len(missing) > 4 else "")
        return SimpoolBenchError(f"{flag}: timm could not load {what} into {self.name.arch}: missing {shown}; they would stay random")

    def flag_and_what(self, where: Pretrained | None) -> tuple[str, str]:
        """The flag that gave the weights and how an error names them."""
        if self.pretrained_file is not None:
            return f"--pretrained-file {self.pretrained_file}", "it"
        return f"--pretrained {self.arch}", where.label if where is not None else "the weights"

    def check_pooling(self, net: nn.Module, n_classes: int) -> tuple[float | None, str | None]:
        """The pooling of the built model against the options: its gamma and its attention source."""
        arch, family, pool = self.arch, self.family, str(self.pool)
        if pool not in FAMILIES[family].pools:
            raise SimpoolBenchError(f"pool {pool!r} does not apply to {arch!r}, a {family}")
        if pool == "cls" and family == "vit" and not isinstance(getattr(net, "cls_token", None), nn.Parameter):
            raise SimpoolBenchError(f"pool 'cls' needs a CLS token; {arch!r} is built without one (class_token=False)")
        gamma_value = resolve_gamma(self.gamma, family, pool)
        if self.use_beta and (pool != "simpool" or gamma_value is None):
            raise SimpoolBenchError("use_beta needs pool='simpool' with a gamma (official SimPool adds beta only on the gamma path)")
        has_cls = family == "vit" and isinstance(getattr(net, "cls_token", None), nn.Parameter)
        source = _resolve_attn_source(self.attn_source, family, pool, n_classes > 0, has_cls)
        if self.cls_head is not None and source != "cls":
            raise SimpoolBenchError(f"--cls-head applies to --attn-source cls, not {source!r}")
        rollout_set = rollout_flags_given(self.rollout_fusion, self.rollout_discard)
        if rollout_set and source != "rollout":  # it would change nothing, and the table would not record it
            verb = "applies" if len(rollout_set) == 1 else "apply"
            raise SimpoolBenchError(f"{' and '.join(rollout_set)} {verb} to --attn-source rollout, not {source!r}")
        return gamma_value, source

    def data_config(self, net: nn.Module) -> dict[str, Any]:
        """timm's evaluation data config of ``net``: the input size, DINO's transform, then the name's and the caller's overrides.

        With timm's own weights (``--pretrained``, ``--pretrained-file``, ``hf-hub:``) and no
        ``--img-size``, the pretrained config's test-time size and crop (``test_input_size``,
        ``test_crop_pct``) where it has them, as timm's ``validate.py`` resolves it by default
        (``resnet50.a1_in1k``: 288 px, crop_pct 1.0), the setting of timm's published results."""
        test_time = self.test_time_config()
        overrides: dict[str, Any] = {} if test_time else {"input_size": (3, *self.size)}
        if self.variant == "dino":
            overrides.update(DINO_EVAL_DATA_CONFIG)
        overrides.update(self.name.data_config)
        overrides.update({k: v for k, v in (self.data_overrides or {}).items() if v is not None})
        data_config = resolve_model_data_config(net, args=overrides, use_test_size=test_time)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}  # JSON configs give lists

    def test_time_config(self) -> bool:
        """Whether the data config takes the pretrained config's test-time size and crop: pretrained
        weights (not a checkpoint file, whose train.py validated at the training size), no
        ``--img-size``, not DINO's protocol. A torchvision name's own size and crop win over it."""
        return self.pretrained and self.img_size is None and self.variant != "dino"
