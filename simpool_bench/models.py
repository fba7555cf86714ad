"""Build (arch, pool, gamma) on timm, and run the model once for logits, features and attention.

``build_model`` creates a timm ViT / ResNet / ConvNeXt (``pretrained=False``), puts the pooling
where the official SimPool code puts it, and returns a ``BenchModel`` whose ``forward`` gives a
``ModelOutput``: logits, pooled features, the attention map on the feature grid and (ViT, on
request) the last block's patch keys - all from ONE forward pass.

Where SimPool sits (billpsomas/simpool):

* supervised ViT (timm 0.8.8 fork, ``VisionTransformer(global_pool='simpool')``): no CLS token and
  no CLS position embedding (``pos_embed`` is (1, N, d)); SimPool on the tokens AFTER the final
  ``norm``; attribute path ``gp.pool``;
* DINO ViT (``self_supervised/vision_transformer.py``, ``mode='simpool'``): SimPool on the RAW
  last-block output, ``norm`` applied to the pooled vector; attribute ``simpool``; no classifier;
* ResNet: on the layer4 output, ``global_pool.pool`` (supervised) or ``simpool`` (DINO);
* ConvNeXt: on the last stage output, before the head norm: ``head.global_pool.pool``
  (supervised) or ``simpool`` (DINO).

State-dict keys (``model.state_dict()``), equal to the official checkpoint keys of each kind after
container/prefix stripping (``state_dict``/``teacher``, ``module.``, ``backbone.``):

=================================  =========================================================
model                              keys
=================================  =========================================================
ViT supervised simpool             timm ViT keys without ``cls_token``: ``pos_embed`` (1, N, d),
                                   ``patch_embed.*``, ``blocks.*``, ``norm.*``, ``head.*``, plus
                                   ``gp.pool.wq.weight``, ``gp.pool.wk.weight``,
                                   ``gp.pool.norm_patches.{weight,bias}`` [``gp.pool.beta``]
ViT dino simpool                   ``pos_embed`` (1, N, d), ``patch_embed.*``, ``blocks.*``,
                                   ``norm.*``, ``simpool.{wq.weight,wk.weight}``,
                                   ``simpool.norm_patches.{weight,bias}`` [``simpool.beta``]; no head
ViT dino cls                       DINO backbone: ``cls_token``, ``pos_embed`` (1, N+1, d),
                                   ``patch_embed.*``, ``blocks.*``, ``norm.*``; no head
ViT cls / gap (supervised)         plain timm keys (gap = timm's ``global_pool='avg'`` ViT: CLS
                                   token kept, ``fc_norm.*`` instead of ``norm.*``)
ResNet supervised simpool          timm ResNet keys + ``global_pool.pool.*``
ResNet dino simpool                timm ResNet keys without ``fc.*`` + ``simpool.*`` (the
                                   torchvision names of the official DINO ResNet are timm's)
ConvNeXt supervised simpool        timm ConvNeXt keys + ``head.global_pool.pool.*``
ConvNeXt dino simpool              timm ConvNeXt keys without ``head.fc.*`` + ``simpool.*``;
                                   official DINO ConvNeXt files use the FB names
                                   (``downsample_layers``, ``dwconv``, ``pwconv``, ``norm``):
                                   ``timm.models.convnext.checkpoint_filter_fn`` maps them
CNN gap                            plain timm keys (dino: without the classifier)
=================================  =========================================================

Attention sources (``attn_source``), all float32 maps (B, h, w) on the feature grid, row-major:

* ``'simpool'``: SimPool's attention, mean over its heads; each map sums to 1.
* ``'cls'``: the last block's CLS-to-patch attention after the softmax, restricted to the patch
  columns, mean over heads (or head ``cls_head``). NOT renormalised: a map sums to 1 minus the
  CLS-to-prefix-token attention. Only that row's softmax is computed explicitly (O(N)); every
  block's output, the last one's included, is timm's fused attention.
* ``'cam'`` (GAP CNNs): class activation map of ``target`` (or the predicted class), as
  wsolevaluation computes it: ``(fc.weight[c] * features).mean(channels)`` on the last feature
  map. For ConvNeXt, whose head normalises the pooled vector before ``fc``, the class weights are
  multiplied by the head norm's scale, which makes the map exact up to a per-image positive scale
  and shift (removed by the min-max normalisation of every localisation protocol).

* ``'map'`` (ViTs with timm's attention-pool head, pool 'map'), ``'rollout'`` (any ViT) and
  ``'gradcam'`` (any model with a classifier): see ``map_sources``.

Families beyond the official ones (``families``): DeiT (distilled ones: pool 'cls', the mean of
the two heads as timm), EfficientNet and RegNet (``cnn.CNNBenchModel``: timm's ``forward_features``,
SimPool in place of timm's global pool); ``pool='map'`` keeps timm's ``AttentionPoolLatent``.

ViTs accept any input size divisible by the patch size. ``pos_interp`` says how position
embeddings are resized: ``'timm'`` as timm's ``dynamic_img_size`` does (``resample_abs_pos_embed``,
bicubic with antialias), ``'dino'`` as the DINO code's ``interpolate_pos_encoding`` does (bicubic,
no antialias, ``scale_factor=((H//p + 0.1)/sqrt(N), (W//p + 0.1)/sqrt(N))``, identity only for
the trained grid on a square input); the two agree only at the trained size. ``dino_pos_quirk``
adds the official DINO/SimPool ``npatch = tokens - 1`` slip of simpool mode. ``fused_attn=False``
runs every block's attention as explicit ``softmax(q k^T * scale) v`` (the DINO code's ops, bit for
bit where the scale is a power of two, as for 64-dim heads) instead of timm's fused kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_model_data_config
from timm.layers import Attention, resample_abs_pos_embed
from timm.models import is_model, is_model_in_modules, split_model_name_tag
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from .errors import SimpoolBenchError
from .map_sources import DEFAULT_DISCARD_RATIO, DEFAULT_HEAD_FUSION, attention_rollout, block_attention, check_rollout_options, latent_pool_attention
from .families import EXAMPLE_ARCHS, FAMILIES, MAP_SOURCES, POOLS, source_applies
from .pooling import MIN_SCOPES, SIMPOOL_NORM_EPS, SimPool

POS_INTERPS: tuple[str, ...] = ("timm", "dino")
VARIANTS: tuple[str, ...] = ("supervised", "dino")
ATTN_SOURCES: tuple[str, ...] = (*MAP_SOURCES, "none")
# timm module -> our family name
FAMILY_MODULES: dict[str, str] = {m: f.name for f in FAMILIES.values() for m in f.modules}
# Paper defaults (SimPool README: "1.25 for transformers, 2.0 for convolutional networks").
DEFAULT_GAMMA: dict[str, float] = {f.name: f.gamma for f in FAMILIES.values()}
# Grad-CAM target layer per family (map_sources): CNNs their last feature map, ViTs the last
# block's norm1 (pytorch-grad-cam's recommendation for ViTs).
GRADCAM_LAYERS: dict[str, str] = {
    "vit": "blocks.-1.norm1", "resnet": "layer4", "convnext": "norm_pre", "efficientnet": "bn2", "regnet": "final_conv",
}
# DINO's evaluation transform (eval_knn.py / eval_linear.py): Resize(256, bicubic), CenterCrop(224),
# ImageNet mean/std; given to timm's data-config resolver as overrides for variant='dino'.
DINO_EVAL_DATA_CONFIG: dict[str, Any] = {
    "crop_pct": 224 / 256, "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
}
# timm arguments that build_model decides itself.
_RESERVED_TIMM_KWARGS = ("pretrained", "num_classes", "global_pool", "class_token", "fc_norm")


@dataclass
class ModelOutput:
    """What one forward pass gives.

    logits: (B, C) or None (features-only models, e.g. DINO backbones).
    features: (B, d) pooled embedding before the classifier (DINO: after the final norm).
    attn: (B, h, w) float32 attention on the feature grid, row-major, or None.
    keys: (B, N, d_k) last-block patch keys (ViT, heads concatenated), only when requested.
    """

    logits: Tensor | None
    features: Tensor
    attn: Tensor | None = None
    keys: Tensor | None = None


class PoolSlot(nn.Module):
    """Holds a pooling layer under the attribute ``pool`` (official paths ``gp.pool``,
    ``global_pool.pool``, ``head.global_pool.pool``)."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Any:
        return self.pool(x)


class BenchModel(nn.Module):
    """A timm backbone with its pooling, returning ``ModelOutput`` from one forward pass.

    The timm model's own modules and parameters are registered directly on this module (no
    wrapper prefix), so ``state_dict()`` keys are timm's / the official ones (module docstring).

    Attributes:
        arch, family ('vit' | 'resnet' | 'convnext'), pool ('simpool' | 'cls' | 'gap'),
        gamma (float | None), variant ('supervised' | 'dino'), attn_source (str | None),
        cls_head, min_scope, use_beta, dino_pos_quirk, pos_interp ('timm' | 'dino', ViTs), stride (patch
        size or CNN total stride),
        num_classes (0 = no classifier), num_features (d), data_config (timm's resolved eval
        config: input_size, interpolation, mean, std, crop_pct, crop_mode).
    """

    family: str = ""

    def __init__(
        self,
        net: nn.Module,
        *,
        arch: str,
        pool: str,
        gamma: float | None,
        variant: str,
        attn_source: str | None,
        cls_head: int | None,
        min_scope: str,
        use_beta: bool,
        dino_pos_quirk: bool,
        data_config: dict[str, Any],
        pos_interp: str = "timm",
    ) -> None:
        super().__init__()
        for name, p in net.named_parameters(recurse=False):
            self.register_parameter(name, p)
        non_persistent = getattr(net, "_non_persistent_buffers_set", set())
        for name, b in net.named_buffers(recurse=False):
            self.register_buffer(name, b, persistent=name not in non_persistent)
        for name, m in net.named_children():
            self.add_module(name, m)
        self.arch = arch
        self.pool = pool
        self.gamma = gamma
        self.variant = variant
        self.attn_source = attn_source
        self.cls_head = cls_head
        self.min_scope = min_scope
        self.use_beta = use_beta
        self.dino_pos_quirk = dino_pos_quirk
        self.pos_interp = pos_interp
        self.num_classes = int(getattr(net, "num_classes", 0))
        self.num_features = int(getattr(net, "num_features"))
        self.data_config = data_config
        self.stride = 0

    def _new_simpool(self, net: nn.Module, norm_eps: float) -> SimPool:
        p = next(net.parameters())
        return SimPool(
            self.num_features, num_heads=1, gamma=self.gamma, use_beta=self.use_beta, min_scope=self.min_scope,
            norm_eps=norm_eps, device=p.device, dtype=p.dtype,
        )

    @property
    def simpool_layer(self) -> SimPool | None:
        """The SimPool layer, wherever it sits, or None."""
        for m in self.modules():
            if isinstance(m, SimPool):
                return m
        return None

    def forward(self, x: Tensor, target: Tensor | None = None, return_keys: bool = False) -> ModelOutput:
        """Run images ``x`` (B, 3, H, W) once. ``target`` (B,) picks the CAM class (default: the
        predicted one); ``return_keys`` adds the last-block patch keys (ViT only)."""
        if x.ndim != 4:
            raise SimpoolBenchError(f"{self.arch}: input must be (B, C, H, W) images, got shape {tuple(x.shape)}")
        if return_keys and self.family != "vit":
            raise SimpoolBenchError(f"{self.arch}: return_keys needs a ViT (last-block keys), not a {self.family}")
        if self.attn_source == "gradcam":
            from .map_sources import gradcam_forward

            return gradcam_forward(self, x, target, return_keys, GRADCAM_LAYERS[self.family])
        return self._forward(x, target, return_keys)

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        raise NotImplementedError


def _heads_mean(attn: Tensor, head: int | None) -> Tensor:
    """(B, heads, N) -> (B, N): mean over heads, or one head."""
    return attn.mean(dim=1) if head is None else attn[:, head]


def dino_interpolate_pos_encoding(
    pos_embed: Tensor, num_prefix: int, num_patches: int, img_hw: tuple[int, int], patch_size: int,
    npatch_slip: bool = True,
) -> Tensor:
    """Position embeddings as the DINO / SimPool ViT ``interpolate_pos_encoding`` gives them.

    ``num_prefix`` = prefix (CLS) tokens in the sequence and in ``pos_embed`` (0 in simpool mode).
    DINO returns ``pos_embed`` unchanged when ``npatch == N`` and the input is square; otherwise it
    runs ``F.interpolate(..., scale_factor=((H//p + 0.1)/sqrt(N), (W//p + 0.1)/sqrt(N)),
    mode='bicubic')`` on the (1, d, sqrt(N), sqrt(N)) patch grid. The official code takes
    ``npatch = tokens - 1`` whatever the mode (``npatch_slip``, default): with no CLS token it never
    takes the early return, which is not the identity even at the trained size. With a CLS token
    the slip changes nothing.
    """
    npatch = num_patches + num_prefix - 1 if npatch_slip else num_patches
    n_pos = pos_embed.shape[1] - num_prefix
    h, w = img_hw
    if npatch == n_pos and h == w:
        return pos_embed
    prefix, patch_pos = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = pos_embed.shape[-1]
    side = math.sqrt(n_pos)
    h0, w0 = h // patch_size + 0.1, w // patch_size + 0.1
    grid = patch_pos.reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), scale_factor=(h0 / side, w0 / side), mode="bicubic")
    if grid.shape[-2:] != (int(h0), int(w0)):
        raise SimpoolBenchError(f"DINO position interpolation gave grid {tuple(grid.shape[-2:])}, expected {(int(h0), int(w0))}")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat((prefix, patch_pos), dim=1)


class ViTBenchModel(BenchModel):
    """Vision Transformer (timm ``VisionTransformer`` modules) with CLS, GAP or SimPool pooling."""

    family = "vit"

    def __init__(self, net: nn.Module, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        ph, pw = net.patch_embed.patch_size
        if ph != pw:
            raise SimpoolBenchError(f"{self.arch}: non-square patches {ph}x{pw} are not supported")
        self.stride = int(ph)
        self.pos_grid = tuple(net.patch_embed.grid_size)
        self.no_embed_class = bool(getattr(net, "no_embed_class", False))
        self.prefix_names = [n for n in ("cls_token", "dist_token", "reg_token") if isinstance(getattr(net, n, None), nn.Parameter)]
        self.num_prefix_tokens = int(getattr(net, "num_prefix_tokens", len(self.prefix_names)))
        self.has_cls_token = isinstance(getattr(net, "cls_token", None), nn.Parameter)
        self.distilled = isinstance(getattr(net, "head_dist", None), nn.Module)
        self.pool_include_prefix = bool(getattr(net, "pool_include_prefix", False))
        if self.distilled and self.pool != "cls":
            raise SimpoolBenchError(f"{self.arch}: a distilled DeiT reads its CLS and distillation tokens: use --pool cls, not {self.pool!r}")
        if self.pool == "map" and getattr(net, "attn_pool", None) is None:
            raise SimpoolBenchError(f"{self.arch}: pool 'map' needs timm's attention-pool head (global_pool='map')")
        if self.pool == "simpool":
            layer = self._new_simpool(net, simpool_eps)
            if self.variant == "dino":
                self.simpool = layer
            else:
                self.gp = PoolSlot(layer)
        last = self.blocks[-1]
        self.num_heads = int(last.attn.num_heads) if hasattr(last, "attn") else 0

    def _positions(self, n_patches: int, gh: int, gw: int, img_hw: tuple[int, int]) -> Tensor:
        n_prefix_pos = 0 if self.no_embed_class else self.num_prefix_tokens
        if self.dino_pos_quirk or self.pos_interp == "dino":
            return dino_interpolate_pos_encoding(
                self.pos_embed, n_prefix_pos, n_patches, img_hw, self.stride, npatch_slip=self.dino_pos_quirk
            )
        return resample_abs_pos_embed(self.pos_embed, new_size=(gh, gw), old_size=self.pos_grid, num_prefix_tokens=n_prefix_pos)

    def _tokens(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Patch embedding + prefix tokens + positions: (B, prefix + gh*gw, d), gh, gw."""
        B, _, H, W = x.shape
        p = self.stride
        if H % p or W % p:
            raise SimpoolBenchError(f"{self.arch}: input {H}x{W} is not a multiple of the patch size {p} (pad it first)")
        t = self.patch_embed(x)
        if t.ndim == 4:  # dynamic_img_size: NHWC
            gh, gw = t.shape[1], t.shape[2]
            t = t.flatten(1, 2)
        else:
            gh, gw = self.pos_grid
        pos = self._positions(gh * gw, gh, gw, (H, W))
        prefix = [getattr(self, n).expand(B, -1, -1) for n in self.prefix_names]
        if self.no_embed_class:
            t = torch.cat(prefix + [t + pos], dim=1)
        else:
            t = torch.cat(prefix + [t], dim=1) + pos
        return self.pos_drop(t), gh, gw

    def _last_block(self, t: Tensor, need_attn: bool, need_keys: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Run the last block, taking its qkv apart when its CLS attention or keys are needed; the
        block's output is timm's fused attention, or (``fused_attn`` off) the explicit one whose CLS row
        is the attention returned. Returns (tokens, attn (B, heads, 1, N) or None, keys)."""
        blk = self.blocks[-1]
        if not (need_attn or need_keys):
            return blk(t), None, None
        a = getattr(blk, "attn", None)
        if type(blk) is not Block or not isinstance(a, Attention) or getattr(a, "gate", None) is not None:
            raise SimpoolBenchError(f"{self.arch}: last-block attention/keys need a standard timm ViT Block, got {type(blk).__name__}")
        B, N, _ = t.shape
        hdn = blk.norm1(t)
        qkv = a.qkv(hdn).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        keys = k.transpose(1, 2).reshape(B, N, -1)[:, self.num_prefix_tokens:] if need_keys else None
        q, k = a.q_norm(q), a.k_norm(k)
        attn = None
        if not a.fused_attn:  # explicit, as the DINO code (and timm's unfused path): the CLS row is row 0
            full = ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            attn = full[:, :, :1] if need_attn else None
            o = a.attn_drop(full) @ v
        else:
            if need_attn:  # the CLS query's row only (B, heads, 1, N): O(N) beside the fused attention
                attn = ((q[:, :, :1] * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=a.attn_drop.p if self.training else 0.0)
        o = a.proj_drop(a.proj(a.norm(o.transpose(1, 2).reshape(B, N, a.attn_dim))))
        t = t + blk.drop_path1(blk.ls1(o))
        t = t + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(t))))
        return t, attn, keys

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        t, gh, gw = self._tokens(x)
        t = self.norm_pre(self.patch_drop(t)) if hasattr(self, "patch_drop") else self.norm_pre(t)
        block_attns: list[Tensor] | None = [] if self.attn_source == "rollout" else None
        for blk in list(self.blocks)[:-1]:
            if block_attns is not None:
                block_attns.append(block_attention(blk, t, self.arch))
            t = blk(t)
        if block_attns is not None:
            block_attns.append(block_attention(self.blocks[-1], t, self.arch))
        t, cls_attn, keys = self._last_block(t, self.attn_source == "cls", return_keys)
        attn_map = None
        if self.pool == "simpool":
            if self.variant == "dino":  # official DINO: pool the raw tokens, then norm
                feats, a = self.simpool(t)
                feats = self.norm(feats)
            else:  # official supervised fork: norm, then pool
                feats, a = self.gp.pool(self.norm(t))
            if self.attn_source == "simpool":
                attn_map = a.mean(dim=1)
        elif self.pool == "map":  # timm's AttentionPoolLatent on the normed (patch) tokens
            t = self.norm(t)
            pooled_in = t if self.pool_include_prefix else t[:, self.num_prefix_tokens:]
            feats = self.attn_pool(pooled_in)
            if self.attn_source == "map":
                skip = self.num_prefix_tokens if self.pool_include_prefix else 0
                attn_map = latent_pool_attention(self.attn_pool, pooled_in)[..., skip:].mean(dim=(1, 2))
        else:
            t = self.norm(t)
            feats = t[:, 0] if self.pool == "cls" else t[:, self.num_prefix_tokens:].mean(dim=1)
        if cls_attn is not None:
            attn_map = _heads_mean(cls_attn[:, :, 0, self.num_prefix_tokens:], self.cls_head)
        if block_attns is not None:
            attn_map = attention_rollout(block_attns, self.num_prefix_tokens, self.rollout_fusion, self.rollout_discard)
        if self.distilled:  # timm VisionTransformerDistilled at eval: mean of the two heads
            feats, dist = (feats + t[:, 1]) / 2, t[:, 1]
            logits = (self.head(t[:, 0]) + self.head_dist(dist)) / 2 if self.num_classes > 0 else None
            if attn_map is not None:
                attn_map = attn_map.float().reshape(-1, gh, gw)
            return ModelOutput(logits=logits, features=feats, attn=attn_map, keys=keys)
        feats = self.fc_norm(feats)
        logits = self.head(self.head_drop(feats)) if self.num_classes > 0 else None
        if attn_map is not None:
            attn_map = attn_map.float().reshape(-1, gh, gw)
        return ModelOutput(logits=logits, features=feats, attn=attn_map, keys=keys)


def _cam(features: Tensor, class_weights: Tensor) -> Tensor:
    """wsolevaluation CAM: (weights[c].view(B, C, 1, 1) * feature_map).mean(1)."""
    return (class_weights[:, :, None, None] * features).mean(dim=1)


def _cam_classes(logits: Tensor | None, target: Tensor | None, batch: int) -> Tensor:
    if target is None:
        if logits is None:
            raise SimpoolBenchError("cam needs a classifier or a target class")
        return logits.argmax(dim=1)
    target = torch.as_tensor(target)
    if target.shape != (batch,):
        raise SimpoolBenchError(f"target must hold one class per image, shape ({batch},), got {tuple(target.shape)}")
    return target.long().to(logits.device if logits is not None else target.device)


class ResNetBenchModel(BenchModel):
    """ResNet (timm ``ResNet`` modules): GAP or SimPool on the layer4 output."""

    family = "resnet"

    def __init__(self, net: nn.Module, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        self.stride = int(net.feature_info[-1]["reduction"])
        self.drop_rate = float(getattr(net, "drop_rate", 0.0))
        if self.pool == "simpool":
            layer = self._new_simpool(net, simpool_eps)
            if self.variant == "dino":
                self.simpool = layer
            else:
                self.global_pool = PoolSlot(layer)

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        f = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(f))))
        a = None
        if self.pool == "simpool":
            feats, a = (self.simpool if self.variant == "dino" else self.global_pool.pool)(f)
        else:
            feats = self.global_pool(f)
        logits = None
        if self.num_classes > 0:
            z = F.dropout(feats, p=self.drop_rate, training=self.training) if self.drop_rate else feats
            logits = self.fc(z)
        attn_map = None
        if self.attn_source == "simpool":
            attn_map = a.mean(dim=1).reshape(-1, f.shape[-2], f.shape[-1])
        elif self.attn_source == "cam":
            cls = _cam_classes(logits, target, x.shape[0])
            attn_map = _cam(f, self.fc.weight[cls])
        return ModelOutput(logits=logits, features=feats, attn=None if attn_map is None else attn_map.float())


class ConvNeXtBenchModel(BenchModel):
    """ConvNeXt (timm ``ConvNeXt`` modules): GAP or SimPool on the last stage, before the head norm."""

    family = "convnext"

    def __init__(self, net: nn.Module, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        self.stride = int(net.feature_info[-1]["reduction"])
        if self.pool == "simpool":
            layer = self._new_simpool(net, simpool_eps)
            if self.variant == "dino":
                self.simpool = layer
            else:
                self.head.global_pool = PoolSlot(layer)

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        f = self.norm_pre(self.stages(self.stem(x)))
        a = None
        if self.pool == "simpool":
            pooled, a = (self.simpool if self.variant == "dino" else self.head.global_pool.pool)(f)
            pooled = pooled[:, :, None, None]
        else:
            pooled = self.head.global_pool(f)
        head = self.head
        feats = head.pre_logits(head.flatten(head.norm(pooled)))
        logits = head.fc(head.drop(feats)) if self.num_classes > 0 else None
        attn_map = None
        if self.attn_source == "simpool":
            attn_map = a.mean(dim=1).reshape(-1, f.shape[-2], f.shape[-1])
        elif self.attn_source == "cam":
            cls = _cam_classes(logits, target, x.shape[0])
            # logit = w . LN(mean f): exact CAM up to a per-image affine map uses w * ln_scale.
            attn_map = _cam(f, head.fc.weight[cls] * head.norm.weight)
        return ModelOutput(logits=logits, features=feats, attn=None if attn_map is None else attn_map.float())


_FAMILY_CLASSES: dict[str, type[BenchModel]] = {
    "vit": ViTBenchModel, "resnet": ResNetBenchModel, "convnext": ConvNeXtBenchModel,
}


def _family_class(family: str) -> type[BenchModel]:
    if family in _FAMILY_CLASSES:
        return _FAMILY_CLASSES[family]
    from .cnn import CNNBenchModel  # EfficientNet, RegNet: timm's forward_features, pooled linear head

    return CNNBenchModel


def model_family(arch: str) -> str:
    """Our family ('vit', 'resnet', 'convnext', 'efficientnet', 'regnet') of a timm model name (a
    pretrained tag is allowed; ``hf-hub:``/``torchvision:`` names resolve through ``weights``)."""
    if arch.startswith(("hf-hub:", "hf_hub:", "torchvision:")):
        from .weights import resolve_name

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
    """'default' -> paper default for the family; None/'none' -> None; a number (or its string)."""
    if pool != "simpool":
        if gamma not in ("default", None) and not (isinstance(gamma, str) and gamma.lower() == "none"):
            raise SimpoolBenchError(f"gamma {gamma!r} applies only to pool='simpool', not pool={pool!r}")
        return None
    if isinstance(gamma, str):
        low = gamma.strip().lower()
        if low == "default":
            return DEFAULT_GAMMA[family]
        if low == "none":
            return None
        try:
            gamma = float(low)
        except ValueError:
            raise SimpoolBenchError(f"gamma {gamma!r}: expected a positive number, 'none' or 'default'") from None
    if gamma is None:
        return None
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise SimpoolBenchError(f"gamma {gamma!r}: expected a positive number, 'none' or 'default'")
    return float(gamma)


def _resolve_attn_source(attn_source: str | None, family: str, pool: str, has_classifier: bool,
                         has_cls_token: bool | None = None) -> str | None:
    if has_cls_token is None:
        has_cls_token = family == "vit" and pool != "simpool"
    if attn_source is None:
        if pool in ("simpool", "cls", "map"):
            return pool
        return "cam" if family != "vit" and has_classifier else None
    if attn_source not in ATTN_SOURCES:
        raise SimpoolBenchError(f"attn_source {attn_source!r} is not one of {', '.join(ATTN_SOURCES)}")
    if attn_source == "none":
        return None
    why = source_applies(family, pool, attn_source, has_cls_token=has_cls_token, has_classifier=has_classifier)
    if why is not None:
        raise SimpoolBenchError(f"attn_source {attn_source!r} does not apply to this {family} (pool={pool!r}): {why}")
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
    gamma: Any = "default",
    variant: str = "supervised",
    num_classes: int | None = 1000,
    img_size: int | tuple[int, int] = 224,
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
        gamma: SimPool exponent: ``'default'`` (1.25 transformers, 2.0 CNNs), ``None``/'none' (plain
            attention-weighted mean) or a positive number. Only for pool='simpool'.
        variant: ``'supervised'`` (official timm fork layout, classifier) or ``'dino'`` (official DINO
            layout: features only, ``num_classes`` ignored; ViT pools 'simpool'/'cls', CNNs 'simpool'/'gap').
        num_classes: classifier outputs (supervised); None: the pretrained config's (else 1000).
        img_size: configured input size (ViT position grid; every family: ``data_config`` input size).
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
    from .weights import locate_pretrained, resolve_name

    name = resolve_name(arch)
    family = model_family(name.arch)
    pretrained = bool(pretrained or pretrained_file is not None)
    if pool is not None and pool not in POOLS:
        raise SimpoolBenchError(f"pool {pool!r} is not one of {', '.join(POOLS)}")
    if pool is not None and pool not in FAMILIES[family].pools:
        raise SimpoolBenchError(f"pool {pool!r} needs a ViT; {arch!r} is a {family}: use 'simpool' or 'gap'")
    if variant not in VARIANTS:
        raise SimpoolBenchError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if min_scope not in MIN_SCOPES:
        raise SimpoolBenchError(f"min_scope {min_scope!r} is not one of {', '.join(MIN_SCOPES)}")
    if variant == "dino" and family == "vit" and pool in ("gap", "map"):
        raise SimpoolBenchError(f"variant 'dino' ViTs pool with 'simpool' or 'cls' (the official DINO models), not {pool!r}")
    if pretrained and pool == "simpool":
        raise SimpoolBenchError(
            f"--pretrained loads timm's own weights of {arch}, which have no SimPool layer: use the model's pooling "
            f"(leave --pool out) or --pool cls|gap|map, or --checkpoint for a SimPool checkpoint"
        )
    if pretrained and variant != "supervised":
        raise SimpoolBenchError("--pretrained builds timm's supervised layout; drop --variant dino")
    check_rollout_options(rollout_fusion, rollout_discard)
    if family == "vit" and "distilled" in name.arch and pool not in (None, "cls"):
        raise SimpoolBenchError(f"{arch}: a distilled DeiT reads its CLS and distillation tokens: use --pool cls, not {pool!r}")
    if dino_pos_quirk and not (family == "vit" and variant == "dino"):
        raise SimpoolBenchError(f"dino_pos_quirk applies to variant 'dino' ViTs only, not {variant} {family}")
    if pos_interp not in POS_INTERPS:
        raise SimpoolBenchError(f"pos_interp {pos_interp!r} is not one of {', '.join(POS_INTERPS)}")
    if pos_interp != "timm" and family != "vit":
        raise SimpoolBenchError(f"pos_interp {pos_interp!r} applies to ViTs only (position embeddings), not a {family}")
    if fused_attn is not None and family != "vit":
        raise SimpoolBenchError(f"fused_attn applies to ViTs only, not a {family}")
    own = ("class_token",) if pool in ("map", "gap") else ()  # e.g. SigLIP-style map ViTs have no CLS token
    bad = [k for k in _RESERVED_TIMM_KWARGS if k in timm_kwargs and k not in own]
    if bad:
        raise SimpoolBenchError(f"timm argument(s) {', '.join(bad)} are set by build_model (use pool/variant/num_classes)")
    if num_classes is None:
        cfg_classes = (name.pretrained_cfg or {}).get("num_classes") if name.pretrained_cfg else None
        if cfg_classes is None and pretrained:
            from timm.models import get_pretrained_cfg

            found = get_pretrained_cfg(name.arch)
            cfg_classes = getattr(found, "num_classes", None) if found is not None else None
        num_classes = int(cfg_classes) if cfg_classes else 1000
    n_classes = 0 if variant == "dino" else int(num_classes)
    if n_classes < 0:
        raise SimpoolBenchError(f"num_classes {num_classes!r} must be >= 0")

    size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
    kw: dict[str, Any] = {**name.model_args, **timm_kwargs}
    if family == "vit":
        kw["img_size"] = size
        kw.setdefault("dynamic_img_size", True)
        if pool == "simpool":
            if kw.get("reg_tokens"):
                raise SimpoolBenchError("SimPool ViTs have no prefix tokens: drop reg_tokens")
            kw.update(class_token=False, global_pool="", fc_norm=False)
        elif pool is not None:
            kw["global_pool"] = {"cls": "token", "gap": "avg", "map": "map"}[pool]
    where = None
    if pretrained:
        from timm.models import get_pretrained_cfg

        cfg = name.pretrained_cfg or (get_pretrained_cfg(name.arch).to_dict() if get_pretrained_cfg(name.arch) else {})
        where = locate_pretrained(name, cfg, pretrained_file)
        if not where.torchvision:
            kw["pretrained_cfg_overlay"] = where.overlay
        if where.file is None:  # online, not cached: timm downloads into the cache
            from .weights import hf_cache_dir

            kw["cache_dir"] = str(hf_cache_dir())
    if name.pretrained_cfg is not None:
        kw["pretrained_cfg"] = name.pretrained_cfg
    timm_pretrained = pretrained and where is not None and not where.torchvision
    try:
        net = timm.create_model(name.arch, pretrained=timm_pretrained, num_classes=n_classes, **kw)
    except TypeError as e:
        raise SimpoolBenchError(f"model {arch!r}: timm rejected the arguments {sorted(timm_kwargs)}: {e}") from None
    except SimpoolBenchError:
        raise
    except (RuntimeError, OSError, ValueError, KeyError, AssertionError) as e:
        if not pretrained:
            raise
        raise SimpoolBenchError(f"--pretrained {arch}: timm could not load {where.label if where else 'the weights'} "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None
    if where is not None and where.torchvision:
        from .weights import load_torchvision_weights

        load_torchvision_weights(net, where.file, arch)
    if pool is None:
        pool = _native_pool(net, family)
    if pool not in FAMILIES[family].pools:
        raise SimpoolBenchError(f"pool {pool!r} does not apply to {arch!r}, a {family}")
    if pool == "cls" and family == "vit" and not isinstance(getattr(net, "cls_token", None), nn.Parameter):
        raise SimpoolBenchError(f"pool 'cls' needs a CLS token; {arch!r} is built without one (class_token=False)")
    gamma_value = resolve_gamma(gamma, family, pool)
    if use_beta and (pool != "simpool" or gamma_value is None):
        raise SimpoolBenchError("use_beta needs pool='simpool' with a gamma (official SimPool adds beta only on the gamma path)")
    has_cls = family == "vit" and isinstance(getattr(net, "cls_token", None), nn.Parameter)
    source = _resolve_attn_source(attn_source, family, pool, n_classes > 0, has_cls)
    if cls_head is not None and source != "cls":
        raise SimpoolBenchError(f"cls_head applies to attn_source 'cls', not {source!r}")

    overrides: dict[str, Any] = {"input_size": (3, *size)}
    if variant == "dino":
        overrides.update(DINO_EVAL_DATA_CONFIG)
    overrides.update(name.data_config)
    overrides.update({k: v for k, v in (data_overrides or {}).items() if v is not None})
    data_config = resolve_model_data_config(net, args=overrides)
    data_config = {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}  # JSON configs give lists

    extra = {"family": family} if family not in _FAMILY_CLASSES else {}
    model = _family_class(family)(
        net, simpool_eps=simpool_eps, arch=arch, pool=pool, gamma=gamma_value, variant=variant,
        attn_source=source, cls_head=cls_head, min_scope=min_scope, use_beta=use_beta,
        dino_pos_quirk=dino_pos_quirk, data_config=data_config, pos_interp=pos_interp, **extra,
    )
    if fused_attn is not None:
        for m in model.modules():
            if isinstance(m, Attention):
                m.fused_attn = bool(fused_attn)
    model.rollout_fusion, model.rollout_discard = rollout_fusion, float(rollout_discard)
    model.weights_source = where.label if where is not None else None
    model.weights_file = where.file if where is not None else None
    if cls_head is not None and not 0 <= cls_head < getattr(model, "num_heads", 0):
        raise SimpoolBenchError(f"cls_head {cls_head} is out of range: the last block has {getattr(model, 'num_heads', 0)} heads")
    return model
