"""Generic timm CNNs (EfficientNet, RegNet, ...): GAP or SimPool on the final feature map.

Any timm CNN whose head is ``global_pool -> (dropout) -> Linear`` fits: the features are timm's own
``forward_features`` (called on this module, which holds the timm model's children and settings),
the pooled vector goes straight to the linear classifier, so CAM is exact (wsolevaluation:
``(fc.weight[c] * features).mean(channels)``). SimPool replaces the global pool where timm keeps
it: ``global_pool.pool.*`` (EfficientNet) or ``head.global_pool.pool.*`` (RegNet); ``simpool.*``
for the DINO layout. Official SimPool code has no such models: this layout is ours.
"""

from __future__ import annotations

from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SimpoolBenchError
from .base import BenchModel, ModelOutput, PoolSlot, cam, cam_classes, feature_stride


class CNNBenchModel(BenchModel):
    """A timm CNN with a final feature map and a linear head, pooled by GAP or SimPool."""

    family = "cnn"

    def __init__(self, net: Any, *, simpool_eps: float, family: str, **kw: Any) -> None:
        """``net``: any timm CNN (its class's ``forward_features`` is called on this module)."""
        super().__init__(net, **kw)
        self.family = family
        for k, v in vars(net).items():  # settings forward_features reads (grad_checkpointing, ...)
            if not k.startswith("_") and k != "training" and not hasattr(self, k):
                setattr(self, k, v)
        self._timm_forward_features = type(net).forward_features
        self.stride = feature_stride(net)
        if isinstance(getattr(net, "global_pool", None), nn.Module):
            self.pool_path = "global_pool"
        elif isinstance(getattr(getattr(net, "head", None), "global_pool", None), nn.Module):
            self.pool_path = "head.global_pool"
        else:
            raise SimpoolBenchError(f"{self.arch}: no global_pool module found (not a timm CNN with a pooled linear head)")
        self.classifier_path = "classifier" if hasattr(net, "classifier") else "head.fc"
        if self.num_classes > 0 and not isinstance(self.get_submodule(self.classifier_path), nn.Linear):
            raise SimpoolBenchError(f"{self.arch}: its classifier is not a single Linear layer after the pool")
        self.drop_rate = float(getattr(net, "drop_rate", 0.0))
        if self.pool == "simpool":
            layer = self._new_simpool(net, simpool_eps)
            if self.variant == "dino":
                self.simpool = layer
            else:
                owner, _, name = self.pool_path.rpartition(".")
                setattr(self.get_submodule(owner) if owner else self, name, PoolSlot(layer))

    def _forward(self, x: Tensor, target: Tensor | None, return_keys: bool) -> ModelOutput:
        f = self._timm_forward_features(self, x)
        a = None
        if self.pool == "simpool":
            layer = self.simpool if self.variant == "dino" else cast(PoolSlot, self.get_submodule(self.pool_path)).pool
            feats, a = layer(f)
        else:
            feats = self.get_submodule(self.pool_path)(f).flatten(1)
        logits = None
        classifier = cast(nn.Linear, self.get_submodule(self.classifier_path)) if self.num_classes > 0 else None  # checked in __init__
        if classifier is not None:
            z = F.dropout(feats, p=self.drop_rate, training=self.training) if self.drop_rate else feats
            logits = classifier(z)
        attn_map = None
        if self.attn_source == "simpool":
            assert a is not None  # attn_source 'simpool' comes with pool 'simpool'
            attn_map = a.mean(dim=1).reshape(-1, f.shape[-2], f.shape[-1])
        elif self.attn_source == "cam":
            assert classifier is not None  # attn_source 'cam' needs a classifier (build_model checks it)
            cls = cam_classes(logits, target, x.shape[0])
            attn_map = cam(f, classifier.weight[cls])
        return ModelOutput(logits=logits, features=feats, attn=None if attn_map is None else attn_map.float())
