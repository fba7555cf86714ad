"""A checkpoint as loaded (``LoadedCheckpoint``) and the formats it may have."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .keys import BUFFER_SUFFIXES, family_of_keys

FORMATS: tuple[str, ...] = ("official-supervised", "official-dino", "dino-backbone", "timm-simpool", "state-dict", "safetensors")
PREFER_CHOICES: tuple[str, ...] = ("auto", "ema", "raw", "teacher", "student")


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
    state_dict: dict[str, torch.Tensor] = field(repr=False)  # every tensor of the model
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
    train_eval: dict[str, Any] = field(default_factory=dict)  # timm train.py's validation preprocessing (args)

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
