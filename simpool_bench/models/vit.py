"""Vision Transformers (timm ``VisionTransformer`` modules) with CLS, GAP, MAP or SimPool pooling.

ViTs accept any input size divisible by the patch size. ``pos_interp`` says how position
embeddings are resized: ``'timm'`` as timm's ``dynamic_img_size`` does (``resample_abs_pos_embed``),
``'dino'`` as the DINO code's ``interpolate_pos_encoding`` does (``dino_interpolate_pos_encoding``).
The last block is taken apart only when its CLS attention or its keys are asked for.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Attention, AttentionPoolLatent, resample_abs_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from ..errors import SimpoolBenchError
from ..map_sources import attention_rollout, block_attention, latent_pool_attention
from .base import BenchModel, ModelOutput, PoolSlot


def _heads_mean(attn: Tensor, head: int | None) -> Tensor:
    """(B, heads, N) -> (B, N): mean over heads, or one head."""
    return attn.mean(dim=1) if head is None else attn[:, head]


def dino_interpolate_pos_encoding(
    pos_embed: Tensor, num_prefix: int, num_patches: int, img_hw: tuple[int, int], patch_size: int, npatch_slip: bool = True
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
    # timm VisionTransformer children and parameters, registered on this module by BenchModel
    patch_embed: nn.Module
    pos_embed: Tensor
    pos_drop: nn.Module
    patch_drop: nn.Module
    norm_pre: nn.Module
    blocks: nn.Sequential
    norm: nn.Module
    attn_pool: AttentionPoolLatent  # global_pool='map' only
    fc_norm: nn.Module
    head_drop: nn.Module
    head: nn.Module
    head_dist: nn.Module  # distilled DeiT only
    gp: PoolSlot  # SimPool in the supervised layout

    def __init__(self, net: VisionTransformer, *, simpool_eps: float, **kw: Any) -> None:
        super().__init__(net, **kw)
        ph, pw = net.patch_embed.patch_size
        if ph != pw:
            raise SimpoolBenchError(f"{self.arch}: non-square patches {ph}x{pw} are not supported")
        self.stride = int(ph)
        self.pos_grid = tuple(net.patch_embed.grid_size)
        if min(self.pos_grid) < 1:  # img_size 8 of a patch-16 ViT: no position to embed (a RuntimeError in the forward)
            size = "x".join(str(int(s)) for s in net.patch_embed.img_size)
            raise SimpoolBenchError(
                f"{self.arch}: img_size {size} is smaller than the patch size {ph}; expected at least {ph} pixels a side"
            )
        self.no_embed_class = bool(getattr(net, "no_embed_class", False))
        self.prefix_names = [n for n in ("cls_token", "dist_token", "reg_token") if isinstance(getattr(net, n, None), nn.Parameter)]
        self.num_prefix_tokens = int(getattr(net, "num_prefix_tokens", len(self.prefix_names)))
        self.has_cls_token = isinstance(getattr(net, "cls_token", None), nn.Parameter)
        self.distilled = isinstance(getattr(net, "head_dist", None), nn.Module)
        self.pool_include_prefix = bool(getattr(net, "pool_include_prefix", False))
        if self.distilled and self.pool != "cls":
            raise SimpoolBenchError(
                f"{self.arch}: a distilled DeiT reads its CLS and distillation tokens: use --pool cls, not {self.pool!r}"
            )
        if self.pool == "map" and getattr(net, "attn_pool", None) is None:
            raise SimpoolBenchError(f"{self.arch}: pool 'map' needs timm's attention-pool head (global_pool='map')")
        if self.pool == "simpool":
            layer = self._new_simpool(net, simpool_eps)
            if self.variant == "dino":
                self.simpool = layer
            else:
                self.gp = PoolSlot(layer)
        last: Any = self.blocks[-1]  # a timm Block, or any block (its attn is read only if present)
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
        keys = k.transpose(1, 2).reshape(B, N, -1)[:, self.num_prefix_tokens :] if need_keys else None
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
            pooled_in = t if self.pool_include_prefix else t[:, self.num_prefix_tokens :]
            feats = self.attn_pool(pooled_in)
            if self.attn_source == "map":
                skip = self.num_prefix_tokens if self.pool_include_prefix else 0
                attn_map = latent_pool_attention(self.attn_pool, pooled_in)[..., skip:].mean(dim=(1, 2))
        else:
            t = self.norm(t)
            feats = t[:, 0] if self.pool == "cls" else t[:, self.num_prefix_tokens :].mean(dim=1)
        if cls_attn is not None:
            attn_map = _heads_mean(cls_attn[:, :, 0, self.num_prefix_tokens :], self.cls_head)
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
