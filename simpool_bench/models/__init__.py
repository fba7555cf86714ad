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

Modules: ``base`` (ModelOutput, BenchModel, CAM), ``vit``, ``resnet``, ``convnext`` and ``cnn``
(one per family) and ``build`` (``build_model``: options, timm, data config).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..families import EXAMPLE_ARCHS, FAMILIES, MAP_SOURCES, POOLS
from ..pooling import MIN_SCOPES, SIMPOOL_NORM_EPS, SimPool
from .base import GRADCAM_LAYERS, BenchModel, ModelOutput, PoolSlot, cam, cam_classes
from .convnext import ConvNeXtBenchModel
from .resnet import ResNetBenchModel

if TYPE_CHECKING:
    from .build import (
        ATTN_SOURCES,
        DEFAULT_GAMMA,
        DINO_EVAL_DATA_CONFIG,
        FAMILY_MODULES,
        POS_INTERPS,
        VARIANTS,
        build_model,
        model_family,
        resolve_gamma,
    )
    from .vit import ViTBenchModel, dino_interpolate_pos_encoding

#: Names whose modules import timm, loaded on first use: ``from simpool_bench.models import
#: ModelOutput`` (e.g. for a command that runs no model) stays free of timm.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "ATTN_SOURCES",
            "DEFAULT_GAMMA",
            "DINO_EVAL_DATA_CONFIG",
            "FAMILY_MODULES",
            "POS_INTERPS",
            "VARIANTS",
            "build_model",
            "model_family",
            "resolve_gamma",
        ),
        "build",
    ),
    **dict.fromkeys(("ViTBenchModel", "dino_interpolate_pos_encoding"), "vit"),
}

# the names these had in the single models.py module this package replaces
_cam, _cam_classes = cam, cam_classes


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups (and monkeypatching) see a plain module attribute
    return value


__all__ = [
    "ATTN_SOURCES",
    "DEFAULT_GAMMA",
    "DINO_EVAL_DATA_CONFIG",
    "EXAMPLE_ARCHS",
    "FAMILIES",
    "FAMILY_MODULES",
    "GRADCAM_LAYERS",
    "MAP_SOURCES",
    "MIN_SCOPES",
    "POOLS",
    "POS_INTERPS",
    "SIMPOOL_NORM_EPS",
    "VARIANTS",
    "BenchModel",
    "ConvNeXtBenchModel",
    "ModelOutput",
    "PoolSlot",
    "ResNetBenchModel",
    "SimPool",
    "ViTBenchModel",
    "build_model",
    "cam",
    "cam_classes",
    "dino_interpolate_pos_encoding",
    "model_family",
    "resolve_gamma",
]
