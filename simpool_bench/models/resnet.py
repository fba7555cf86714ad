"""ResNet (timm ``ResNet`` modules): GAP or SimPool on the layer4 output."""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from .base import BenchModel, ModelOutput, PoolSlot, cam, cam_classes, feature_stride


class ResNetBenchModel(BenchModel):
    """ResNet (timm ``ResNet`` modules): GAP or SimPool on the layer4 output."""

    family = "resnet"
    # timm ResNet children, registered on this module by BenchModel
    conv1: nn.Module
    bn1: nn.Module
    act1: nn.Module
    maxpool: nn.Module
    layer1: nn.Module
    layer2: nn.Module
    layer3: nn.Module
    layer4: nn.Module
    global_pool: nn.Module  # timm's pool, or a PoolSlot holding SimPool
    fc: nn.Module  # nn.Linear, or nn.Identity without a classifier

    def __init__(self, net: nn.Module, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        self.stride = feature_stride(net)
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
            feats, a = (self.simpool if self.variant == "dino" else cast(PoolSlot, self.global_pool).pool)(f)
        else:
            feats = self.global_pool(f)
        logits = None
        if self.num_classes > 0:
            z = F.dropout(feats, p=self.drop_rate, training=self.training) if self.drop_rate else feats
            logits = self.fc(z)
        attn_map = None
        if self.attn_source == "simpool":
            assert a is not None  # attn_source 'simpool' comes with pool 'simpool'
            attn_map = a.mean(dim=1).reshape(-1, f.shape[-2], f.shape[-1])
        elif self.attn_source == "cam":
            cls = cam_classes(logits, target, x.shape[0])
            attn_map = cam(f, cast(nn.Linear, self.fc).weight[cls])
        return ModelOutput(logits=logits, features=feats, attn=None if attn_map is None else attn_map.float())
