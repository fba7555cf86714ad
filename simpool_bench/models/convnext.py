"""ConvNeXt (timm ``ConvNeXt`` modules): GAP or SimPool on the last stage, before the head norm."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import BenchModel, ModelOutput, PoolSlot, cam, cam_classes, feature_stride


class ConvNeXtBenchModel(BenchModel):
    """ConvNeXt (timm ``ConvNeXt`` modules): GAP or SimPool on the last stage, before the head norm."""

    family = "convnext"
    # timm ConvNeXt children, registered on this module by BenchModel
    stem: nn.Module
    stages: nn.Module
    norm_pre: nn.Module
    head: Any  # timm NormMlpClassifierHead: global_pool (or a PoolSlot), norm, flatten, pre_logits, drop, fc

    def __init__(self, net: nn.Module, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        self.stride = feature_stride(net)
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
            assert a is not None  # attn_source 'simpool' comes with pool 'simpool'
            attn_map = a.mean(dim=1).reshape(-1, f.shape[-2], f.shape[-1])
        elif self.attn_source == "cam":
            cls = cam_classes(logits, target, x.shape[0])
            # logit = w . LN(mean f): exact CAM up to a per-image affine map uses w * ln_scale.
            attn_map = cam(f, head.fc.weight[cls] * head.norm.weight)
        return ModelOutput(logits=logits, features=feats, attn=None if attn_map is None else attn_map.float())
