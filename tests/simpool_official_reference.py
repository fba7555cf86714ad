"""Test oracle: the official SimPool code (billpsomas/simpool), literally, and its checkpoint containers.

Written from the reference files op for op (no simpool_bench imports):

* ``sp.py`` -> :class:`SimPool`: ``prepare_input`` (GAP of the raw features as the query; a CNN map
  read ``reshape(B, d, H*W).permute(0, 2, 1)``), ``norm_patches`` (LayerNorm eps 1e-6) for keys AND
  values, ``wq``/``wk`` without bias, ``(vv - vv.min() + eps) ** gamma`` with the min over the WHOLE
  batch tensor, ``+ beta`` only with ``use_beta``, and the final ``x.squeeze()`` (which drops the batch
  axis at batch size 1). The CUDA-only tensors (``device='cuda'``) follow the input here.
* ``supervised/timm/layers/adaptive_avgmax_pool.py`` -> :class:`SelectAdaptivePool2d` (the
  ``'simpool'`` branch: ``SimPool(dim=dim, gamma=gamma)``, so no beta; ``flatten`` = ``nn.Flatten(1)``).
* ``supervised/timm/models/vision_transformer.py`` -> :class:`SupervisedViT`: with
  ``global_pool='simpool'`` no CLS token, ``pos_embed`` (1, N, d), blocks with explicit attention,
  final ``norm`` (eps 1e-6) BEFORE ``self.gp``, ``fc_norm`` Identity, ``head``; the fork's ``'avg'``
  (CLS token kept but not pooled, ``norm`` Identity, ``fc_norm``) and ``'token'`` baselines too.
* ``supervised/timm/models/resnet.py`` -> :func:`supervised_resnet`: timm's ResNet body, then
  ``forward_head`` = ``global_pool`` (``create_classifier``: flatten in the pool) -> ``fc``.
* ``supervised/timm/models/convnext.py`` -> :func:`supervised_convnext`: timm's ConvNeXt body, then the
  fork's head ``nn.Sequential(global_pool, norm, flatten, drop, fc)`` run by ``forward_head`` (a 2-D
  pooled output is unsqueezed to (B, d, 1, 1) before the LayerNorm2d ``norm``).
* ``self_supervised/vision_transformer.py`` (mode ``'simpool'``) -> :class:`DinoSimPoolViT`:
  ``SimPool(..., gamma=gamma, use_beta=True)`` on the raw last-block tokens, ``norm`` AFTER pooling,
  ``interpolate_pos_encoding`` with ``npatch = x.shape[1] - 1`` (no CLS token in this mode).
* ``self_supervised/main_dino.py`` + DINO ``utils.MultiCropWrapper``/``DINOHead`` -> the containers.

Only the timm model bodies (stem, stages, layers) come from timm: the fork's are timm 0.8's, whose
modules and key names the current timm keeps.
"""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.layers import LayerNorm2d


# --------------------------------------------------------------------------------------------- sp.py
class SimPool(nn.Module):
    def __init__(self, dim, num_heads=1, qkv_bias=False, qk_scale=None, gamma=None, use_beta=False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5

        self.norm_patches = nn.LayerNorm(dim, eps=1e-6)

        self.wq = nn.Linear(dim, dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=qkv_bias)

        if gamma is not None:
            self.gamma = torch.tensor([gamma])
            if use_beta:
                self.beta = nn.Parameter(torch.tensor([0.0]))
        self.eps = torch.tensor([1e-6])

        self.gamma = gamma
        self.use_beta = use_beta
        self.last_attn = None  # test hook: the softmax ``attn`` of the last forward (not in sp.py)

    def prepare_input(self, x):
        if len(x.shape) == 3:  # Transformer
            B, N, d = x.shape
            gap_cls = x.mean(-2)
            gap_cls = gap_cls.unsqueeze(1)
            return gap_cls, x
        if len(x.shape) == 4:  # CNN
            B, d, H, W = x.shape
            gap_cls = x.mean([-2, -1])
            x = x.reshape(B, d, H * W).permute(0, 2, 1)
            gap_cls = gap_cls.unsqueeze(1)
            return gap_cls, x
        else:
            raise ValueError(f"Unsupported number of dimensions in input tensor: {len(x.shape)}")

    def forward(self, x):
        gap_cls, x = self.prepare_input(x)
        q, k, v = gap_cls, self.norm_patches(x), self.norm_patches(x)
        Bq, Nq, dq = q.shape
        Bk, Nk, dk = k.shape
        Bv, Nv, dv = v.shape
        assert Bq == Bk == Bv
        assert dq == dk == dv
        qq = self.wq(q).reshape(Bq, Nq, self.num_heads, dq // self.num_heads).permute(0, 2, 1, 3)
        kk = self.wk(k).reshape(Bk, Nk, self.num_heads, dk // self.num_heads).permute(0, 2, 1, 3)
        vv = v.reshape(Bv, Nv, self.num_heads, dv // self.num_heads).permute(0, 2, 1, 3)
        attn = (qq @ kk.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        self.last_attn = attn
        if self.gamma is not None:
            eps = self.eps.to(vv.device)
            x = torch.pow(attn @ torch.pow((vv - vv.min() + eps), self.gamma), 1 / self.gamma)
            if self.use_beta:
                x = x + self.beta
        else:
            x = (attn @ vv).transpose(1, 2).reshape(Bq, Nq, dq)
        return x.squeeze()


class SelectAdaptivePool2d(nn.Module):
    """The fork's pool wrapper, ``pool_type='simpool'`` only."""

    def __init__(self, dim, output_size=1, pool_type="simpool", gamma=2.0, flatten=False):
        super().__init__()
        assert pool_type == "simpool"
        self.pool_type = pool_type
        self.flatten = nn.Flatten(1) if flatten else nn.Identity()
        self.pool = SimPool(dim=dim, gamma=gamma)

    def forward(self, x):
        x = self.pool(x)
        x = self.flatten(x)
        return x


# ------------------------------------------------------------------------- supervised ViT (timm fork)
class Mlp(nn.Module):  # timm.layers.Mlp: fc1, act, drop1, norm (Identity), fc2, drop2
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class PatchEmbed(nn.Module):  # timm.layers.PatchEmbed (flatten, no norm); fixed image size
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        B, C, H, W = x.shape
        assert self.img_size[0] == H and self.img_size[1] == W, "Input image size doesn't match model."
        return self.proj(x).flatten(2).transpose(1, 2)


class SupervisedViT(nn.Module):
    """``VisionTransformer(global_pool='simpool', gamma=...)`` of the fork (eval: no dropout/drop path)."""

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        num_classes=1000,
        global_pool="simpool",
        gamma=None,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
    ):
        super().__init__()
        assert global_pool in ("avg", "token", "simpool")
        class_token = False if global_pool == "simpool" else True  # noqa: SIM211 (the fork's line)
        use_fc_norm = global_pool == "avg"
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.global_pool = global_pool
        self.num_prefix_tokens = 1 if class_token else 0
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        if global_pool == "simpool":  # the fork builds SelectAdaptivePool2d for every pool; only simpool's has weights
            self.gp = SelectAdaptivePool2d(dim=embed_dim, pool_type=self.global_pool, gamma=gamma, flatten=True)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02) if class_token else None
        embed_len = num_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, embed_len, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer) for _ in range(depth)])
        self.norm = norm_layer(embed_dim) if not use_fc_norm else nn.Identity()
        self.fc_norm = norm_layer(embed_dim) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed(self, x):
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return x + self.pos_embed

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.blocks(x)
        x = self.norm(x)
        return x

    def forward_head(self, x, pre_logits=False):
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "simpool":
            x = self.gp(x)
        x = self.fc_norm(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# -------------------------------------------------------------------- supervised ResNet / ConvNeXt
class SupervisedResNet(nn.Module):
    """timm ``ResNet(global_pool='simpool', gamma=...)`` of the fork: timm's body, the fork's head."""

    def __init__(self, arch="resnet18", num_classes=1000, gamma=None, **kwargs):
        super().__init__()
        net = timm.create_model(arch, num_classes=num_classes, **kwargs)
        for name, child in net.named_children():
            self.add_module(name, child)
        self._body = type(net).forward_features
        self.grad_checkpointing = False
        self.drop_rate = 0.0
        # create_classifier(num_features, num_classes, pool_type='simpool', gamma=gamma): flatten in the pool
        self.global_pool = SelectAdaptivePool2d(dim=net.num_features, pool_type="simpool", gamma=gamma, flatten=True)

    def forward_head(self, x, pre_logits=False):
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self._body(self, x))


class SupervisedConvNeXt(nn.Module):
    """timm ``ConvNeXt(global_pool='simpool', gamma=...)`` of the fork: timm's body, the fork's head."""

    def __init__(self, arch="convnext_tiny", num_classes=1000, gamma=None, **kwargs):
        super().__init__()
        net = timm.create_model(arch, num_classes=num_classes, **kwargs)
        self.stem, self.stages, self.norm_pre = net.stem, net.stages, net.norm_pre
        d = net.num_features
        self.head = nn.Sequential(
            OrderedDict(
                [
                    ("global_pool", SelectAdaptivePool2d(dim=d, pool_type="simpool", gamma=gamma)),
                    ("norm", LayerNorm2d(d)),
                    ("flatten", nn.Flatten(1)),
                    ("drop", nn.Dropout(0.0)),
                    ("fc", nn.Linear(d, num_classes)),
                ]
            )
        )
        with torch.no_grad():  # the trained head's values (LayerNorm affine not the identity)
            self.head.norm.weight.copy_(1 + 0.1 * torch.randn(d))
            self.head.norm.bias.copy_(0.1 * torch.randn(d))
            self.head.fc.weight.copy_(net.get_classifier().weight)
            self.head.fc.bias.copy_(0.1 * torch.randn(num_classes))

    def forward_features(self, x):
        return self.norm_pre(self.stages(self.stem(x)))

    def forward_head(self, x, pre_logits=False):
        x = self.head.global_pool(x)
        if x.dim() == 2:
            x = x.unsqueeze(-1).unsqueeze(-1)
        x = self.head.norm(x)
        x = self.head.flatten(x)
        x = self.head.drop(x)
        return x if pre_logits else self.head.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------ DINO ViT in simpool mode
class DinoPatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        num_patches = (img_size // patch_size) * (img_size // patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_patches = num_patches
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        B, C, H, W = x.shape
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoSimPoolViT(nn.Module):
    """``VisionTransformer(mode='simpool', gamma=gamma)`` of ``self_supervised/vision_transformer.py``."""

    def __init__(self, gamma=1.25, img_size=(224,), patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        self.mode = "simpool"
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = DinoPatchEmbed(img_size=img_size[0], patch_size=patch_size, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, num_patches, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer) for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.simpool = SimPool(embed_dim, num_heads=1, qkv_bias=False, qk_scale=None, gamma=gamma, use_beta=True)
        self.head = nn.Identity()

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1]
        if npatch == N and w == h:
            return self.pos_embed
        patch_pos_embed = self.pos_embed
        dim = x.shape[-1]
        w0 = w // self.patch_embed.patch_size
        h0 = h // self.patch_embed.patch_size
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
        return patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        x = x + self.interpolate_pos_encoding(x, w, h)
        return x

    def forward(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.simpool(x)
        return self.norm(x)


class DinoSimPoolResNet(nn.Module):
    """``resnet50(mode='simpool', gamma=gamma)`` of ``self_supervised/resnet.py`` (torchvision's body,
    whose module names it copies): SimPool (no beta) on layer4, then ``fc`` (Identity in DINO's wrapper)."""

    def __init__(self, gamma=2.0, num_classes=1000):
        super().__init__()
        import torchvision

        net = torchvision.models.resnet50(num_classes=num_classes)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc"):
            self.add_module(name, getattr(net, name))
        self.mode = "simpool"
        self.simpool = SimPool(512 * 4, num_heads=1, qkv_bias=False, qk_scale=None, gamma=gamma)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.simpool(x)
        x = self.fc(x)
        return x


class FbLayerNorm(nn.Module):  # self_supervised/convnext.py LayerNorm (channels_first computed by hand)
    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x):
        if self.data_format == "channels_last":
            return nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class FbBlock(nn.Module):
    def __init__(self, dim, layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = FbLayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x):
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return input + x


class DinoSimPoolConvNeXt(nn.Module):
    """``ConvNeXt(mode='simpool', gamma=gamma)`` of ``self_supervised/convnext.py`` (facebookresearch
    layout): SimPool (no beta) on the last stage, then the final ``norm`` (channels last), ``head``."""

    def __init__(self, gamma=2.0, num_classes=1, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)):
        super().__init__()
        self.mode = "simpool"
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), FbLayerNorm(dims[0], eps=1e-6, data_format="channels_first"))
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    FbLayerNorm(dims[i], eps=1e-6, data_format="channels_first"), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
                )
            )
        self.stages = nn.ModuleList(nn.Sequential(*[FbBlock(dims[i]) for _ in range(depths[i])]) for i in range(4))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        self.simpool = SimPool(dims[-1], num_heads=1, qkv_bias=False, qk_scale=None, gamma=gamma)

    def forward_features(self, x):
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        x = self.simpool(x)
        return self.norm(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, use_bn=False, nlayers=3, hidden_dim=32, bottleneck_dim=16):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        for _ in range(nlayers - 2):
            layers.append(nn.Linear(hidden_dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))


class MultiCropWrapper(nn.Module):  # DINO utils.MultiCropWrapper: backbone + head
    def __init__(self, backbone, head):
        super().__init__()
        backbone.fc, backbone.head = nn.Identity(), nn.Identity()
        self.backbone = backbone
        self.head = head


# ------------------------------------------------------------------------------------ containers
def timm_train_args(**kw: Any) -> argparse.Namespace:
    """The fork's ``train.py`` args that matter here (others at their defaults)."""
    base = dict(
        model="resnet50", gp=None, gamma=None, num_classes=None, model_kwargs={}, model_ema=True, img_size=None, input_size=None, epochs=300
    )
    base.update(kw)
    return argparse.Namespace(**base)


def save_timm_train_checkpoint(path: Path, args: argparse.Namespace, model: nn.Module, ema: nn.Module | None, epoch: int = 299) -> Path:
    """timm 0.8 ``CheckpointSaver._save``: arch from args.model, ``state_dict`` (unwrapped), optimizer,
    version 2, args, amp scaler, ``state_dict_ema`` (ModelEmaV2 unwrapped) and metric."""
    save_state: dict[str, Any] = {
        "epoch": epoch,
        "arch": type(model).__name__.lower(),
        "state_dict": model.state_dict(),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": []}]},
        "version": 2,
    }
    save_state["arch"] = args.model
    save_state["args"] = args
    save_state["amp_scaler"] = {"scale": 65536.0, "growth_factor": 2.0}
    if ema is not None:
        save_state["state_dict_ema"] = ema.state_dict()
    save_state["metric"] = 12.5
    torch.save(save_state, path)
    return path


def dino_args(**kw: Any) -> argparse.Namespace:
    base = dict(arch="vit_small", mode="simpool", gamma=2.0, patch_size=16, out_dim=10, use_bn_in_head=False, norm_last_layer=True)
    base.update(kw)
    return argparse.Namespace(**base)


def save_dino_checkpoint(
    path: Path, args: argparse.Namespace, student: MultiCropWrapper, teacher: MultiCropWrapper, teacher_ddp: bool
) -> Path:
    """``main_dino.py``'s ``save_dict``: the student is DDP-wrapped (``module.``), the teacher only when
    the model has BatchNorms (``teacher.state_dict()`` then carries ``module.`` too)."""
    wrap = lambda sd, ddp: OrderedDict((("module." + k) if ddp else k, v) for k, v in sd.items())  # noqa: E731
    save_dict = {
        "student": wrap(student.state_dict(), True),
        "teacher": wrap(teacher.state_dict(), teacher_ddp),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": []}]},
        "epoch": 100,
        "args": args,
        "dino_loss": {"center": torch.zeros(1, args.out_dim)},
    }
    torch.save(save_dict, path)
    return path


def load_pretrained_weights(model: nn.Module, pretrained_weights: Path, checkpoint_key: str = "teacher") -> Any:
    """DINO ``utils.load_pretrained_weights`` as ``eval_knn.py``/``eval_linear.py`` call it: the key's
    dict, ``module.``/``backbone.`` removed, loaded NON-strictly (what does not fit is left out)."""
    state_dict = torch.load(pretrained_weights, map_location="cpu", weights_only=False)
    if checkpoint_key is not None and checkpoint_key in state_dict:
        state_dict = state_dict[checkpoint_key]
    state_dict = {k.replace("module.", ""): v for k, v in state_dict.items()}
    state_dict = {k.replace("backbone.", ""): v for k, v in state_dict.items()}
    return model.load_state_dict(state_dict, strict=False)


# ------------------------------------------------------------------------------ comparison helpers
def trained(model: nn.Module) -> nn.Module:
    """Random weights away from their init values (norms, biases, layer scales, BatchNorm statistics,
    a rough position embedding), eval mode."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bn" in name or name.endswith(("bias", "beta", "gamma")) or "downsample.1" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif name == "pos_embed":  # rough, as trained ones are: position resampling shows
                p.normal_(0.0, 1.0)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_(0.0, 0.1)
    return model.eval()


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 2e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=1e-4, atol=atol))


def official_run(model: nn.Module, pool: SimPool | None, x: torch.Tensor, pre_logits: Any) -> tuple[Any, torch.Tensor, Any]:
    """(model output, pooled features, SimPool attention ``a`` (B, N) or None) of the official forward."""
    with torch.no_grad():
        logits = model(x)
        attn = None if pool is None else pool.last_attn[:, 0, 0]
        feats = pre_logits(x)
    return logits, feats, attn


def per_image_official(model: nn.Module, pool: SimPool | None, x: torch.Tensor, pre_logits: Any) -> tuple[Any, ...]:
    """The official outputs of each image alone: a batch of two copies of it, first row (the batch
    minimum is then the image's own and ``squeeze()`` keeps the batch axis)."""
    rows = [official_run(model, pool, torch.cat([x[i : i + 1]] * 2), pre_logits) for i in range(len(x))]
    return tuple(None if rows[0][k] is None else torch.cat([r[k][:1] for r in rows]) for k in range(3))


def assert_same(out: Any, logits: Any, feats: torch.Tensor, attn: Any, what: str) -> None:
    """Our ``ModelOutput`` against official logits (and their top-1), features and attention."""
    if logits is not None:
        assert close(out.logits, logits), what
        assert torch.equal(out.logits.argmax(1), logits.argmax(1)), what
    assert close(out.features, feats), what
    if attn is not None:
        assert close(out.attn.flatten(1), attn, atol=1e-6), what
        assert torch.allclose(out.attn.flatten(1).sum(1), torch.ones(len(attn)), atol=1e-5)
