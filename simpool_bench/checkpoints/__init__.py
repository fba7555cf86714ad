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
    a bare state dict (or one wrapped in ``model``/``state_dict``, with ``model_ema``/``state_dict_ema``
    taken first as timm's ``load_state_dict`` takes them), e.g. an exported backbone.
``safetensors``
    a ``.safetensors`` file (its metadata may name ``arch``, ``pool``, ``gamma``, ``variant``).

Our layout (what :func:`load_checkpoint` maps to) is the official key layout: timm keys for the
backbone (the facebookresearch ConvNeXt names of the DINO ConvNeXt are mapped to timm's), SimPool at
``gp.pool.`` (supervised ViT), ``global_pool.pool.`` (supervised ResNet), ``head.global_pool.pool.``
(supervised ConvNeXt) and ``simpool.`` (every DINO model), as ``models.build_model`` lays them out.

Pickles are read with ``torch.load(weights_only=True)`` and only :data:`SAFE_GLOBALS` allowed;
anything else needs an explicit ``trust=True`` (CLI ``--trust-checkpoint``). A zip checkpoint's
entries are checked against their CRC-32s first (``files.damaged_zip_entry``).

Modules: ``safe_load`` (the only unpickling), ``formats`` (one reader per format), ``keys`` (our
layout, key maps, what keys tell), ``loaded`` (``LoadedCheckpoint``), ``load`` (``load_checkpoint``,
``load_into``, ``inspect_checkpoint``), ``spec`` (``resolve_spec``). Every name is re-exported here.
"""

from __future__ import annotations

from ..unset import UNSET
from .formats import DINO_MODE_TO_POOL, POOL_ALIASES, READERS, SUPERVISED_GP_TO_POOL, FileFacts
from .keys import (
    BUFFER_SUFFIXES,
    CLASSIFIER_WEIGHT,
    CONVNEXT_DEPTHS,
    DINO_BACKBONE_PREFIX,
    DINO_HEAD_PREFIX,
    KNOWN_SIMPOOL_PREFIXES,
    RESNET_DEPTHS,
    SIMPOOL_PREFIX,
    TIMM_SIMPOOL_NORM_EPS,
    TIMM_SIMPOOL_RENAMES,
    VIT_WIDTHS,
    WRAPPER_PREFIXES,
    convnext_fb_to_timm,
    family_of_arch,
    family_of_keys,
    find_timm_simpool_prefixes,
    infer_arch,
    infer_pool,
    is_dino_backbone,
    rename_timm_simpool,
    split_dino_backbone,
    strip_wrappers,
)
from .load import inspect_checkpoint, load_checkpoint, load_into
from .loaded import FORMATS, PREFER_CHOICES, LoadedCheckpoint
from .safe_load import SAFE_GLOBALS, TRUST_FLAG
from .spec import resolve_spec

__all__ = [
    "BUFFER_SUFFIXES",
    "CLASSIFIER_WEIGHT",
    "CONVNEXT_DEPTHS",
    "DINO_BACKBONE_PREFIX",
    "DINO_HEAD_PREFIX",
    "DINO_MODE_TO_POOL",
    "FORMATS",
    "KNOWN_SIMPOOL_PREFIXES",
    "POOL_ALIASES",
    "PREFER_CHOICES",
    "READERS",
    "RESNET_DEPTHS",
    "SAFE_GLOBALS",
    "SIMPOOL_PREFIX",
    "SUPERVISED_GP_TO_POOL",
    "TIMM_SIMPOOL_NORM_EPS",
    "TIMM_SIMPOOL_RENAMES",
    "TRUST_FLAG",
    "UNSET",
    "VIT_WIDTHS",
    "WRAPPER_PREFIXES",
    "FileFacts",
    "LoadedCheckpoint",
    "convnext_fb_to_timm",
    "family_of_arch",
    "family_of_keys",
    "find_timm_simpool_prefixes",
    "infer_arch",
    "infer_pool",
    "inspect_checkpoint",
    "is_dino_backbone",
    "load_checkpoint",
    "load_into",
    "rename_timm_simpool",
    "resolve_spec",
    "split_dino_backbone",
    "strip_wrappers",
]
