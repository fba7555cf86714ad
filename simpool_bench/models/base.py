"""The model wrapper every family shares: ``BenchModel`` (timm modules, one forward pass) and ``ModelOutput``.

Also the class activation map (CAM) as wsolevaluation computes it, used by the CNN families.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..errors import SimpoolBenchError
from ..pooling import MinScope, SimPool

# Grad-CAM target layer per family (map_sources): CNNs their last feature map, ViTs the last
# block's norm1 (pytorch-grad-cam's recommendation for ViTs).
GRADCAM_LAYERS: dict[str, str] = {
    "vit": "blocks.-1.norm1",
    "resnet": "layer4",
    "convnext": "norm_pre",
    "efficientnet": "bn2",
    "regnet": "final_conv",
}


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
    simpool: SimPool  # the SimPool layer of the DINO layout (variant 'dino')
    # set by build_model after construction
    rollout_fusion: str
    rollout_discard: float
    weights_source: str | None
    weights_file: Path | None

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
        non_persistent: set[str] = getattr(net, "_non_persistent_buffers_set", set())
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
        self.num_features = int(getattr(net, "num_features"))  # noqa: B009 - nn.Module attributes are untyped
        self.data_config = data_config
        self.stride = 0

    def _new_simpool(self, net: nn.Module, norm_eps: float) -> SimPool:
        p = next(net.parameters())
        return SimPool(
            self.num_features,
            num_heads=1,
            gamma=self.gamma,
            use_beta=self.use_beta,
            min_scope=cast("MinScope", self.min_scope),
            norm_eps=norm_eps,
            device=p.device,
            dtype=p.dtype,
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
            from ..map_sources import gradcam_forward

            return gradcam_forward(self, x, target, return_keys, GRADCAM_LAYERS[self.family])
        return self._forward(x, target, return_keys)

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        raise NotImplementedError


def feature_stride(net: nn.Module) -> int:
    """Total stride of a timm CNN's last feature map (``feature_info[-1]['reduction']``)."""
    return int(cast("list[dict[str, Any]]", net.feature_info)[-1]["reduction"])


def cam(features: Tensor, class_weights: Tensor) -> Tensor:
    """wsolevaluation CAM: (weights[c].view(B, C, 1, 1) * feature_map).mean(1)."""
    return (class_weights[:, :, None, None] * features).mean(dim=1)


def cam_classes(logits: Tensor | None, target: Tensor | None, batch: int) -> Tensor:
    if target is None:
        if logits is None:
            raise SimpoolBenchError("cam needs a classifier or a target class")
        return logits.argmax(dim=1)
    target = torch.as_tensor(target)
    if target.shape != (batch,):
        raise SimpoolBenchError(f"target must hold one class per image, shape ({batch},), got {tuple(target.shape)}")
    return target.long().to(logits.device if logits is not None else target.device)
