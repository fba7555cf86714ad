"""Attention-map sources that SimPool is compared against, computed from the model's own forward.

* ``map``: the attention of timm's ``AttentionPoolLatent`` (``global_pool='map'`` ViTs): the
  softmax of its latent query against the pooled tokens, replicating its q/k math
  (``q = q_norm(q(latent))``, ``k = k_norm(kv(x)[k])``, ``softmax(q * scale @ k^T)``) on the very
  tokens the pool receives; mean over heads (and latents). Each map sums to 1.
* ``rollout``: attention rollout (Abnar & Zuidema, ACL 2020, https://arxiv.org/abs/2005.00928):
  per block, heads fused (``mean`` | ``max`` | ``min``, as jacobgil/vit-explain offers), the
  lowest ``discard_ratio`` of the fused entries set to 0 (vit-explain; entry (0, 0) is never
  discarded), the residual added and rows re-normalised, ``A = (W + I) / 2; A /= A.sum(-1)``,
  and the product ``A_L ... A_1``. The map is the CLS token's row over the patch columns; a ViT
  without prefix tokens (SimPool) takes the mean over rows. Two departures from vit-explain, on
  purpose: rows are normalised (``keepdim``, as the paper and its attention_flow code; vit-explain's
  ``a / a.sum(dim=-1)`` divides columns), and the discard is per image (vit-explain edits image 0
  of the batch only). No final ``/ max``: every protocol normalises the map itself.
* ``gradcam``: Grad-CAM (Selvaraju et al., ICCV 2017) as jacobgil/pytorch-grad-cam computes it:
  activations A of the target layer, gradients G of the target class's logit (the GT class when
  given, else the predicted one; the batch's logits summed), weights ``G.mean(spatial)``,
  ``relu(sum_c w_c A_c)`` on the feature grid (no resize, no min-max: the protocols do both).
  Target layers: CNNs their last feature map; ViTs the last block's ``norm1`` patch tokens, the
  layer pytorch-grad-cam recommends for ViTs (a CLS model's last-block outputs get no patch gradient).

Every source is computed on the same forward pass that gives the logits; only ``gradcam`` adds a
backward pass (under ``torch.enable_grad`` even inside the engine's inference mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from .errors import SimpoolBenchError

if TYPE_CHECKING:  # timm and the models load on first use
    from timm.layers import Attention, AttentionPoolLatent

    from .models.base import BenchModel, ModelOutput

HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")
#: Defaults of attention rollout: the paper's (head mean, nothing discarded).
DEFAULT_HEAD_FUSION = "mean"
DEFAULT_DISCARD_RATIO = 0.0


def rollout_flags_given(head_fusion: str, discard_ratio: float) -> list[str]:
    """The rollout flags set to other than their defaults, as ``--flag value`` (empty: none)."""
    return [
        f"{flag} {value}"
        for flag, value, default in (
            ("--rollout-fusion", head_fusion, DEFAULT_HEAD_FUSION),
            ("--rollout-discard", discard_ratio, DEFAULT_DISCARD_RATIO),
        )
        if value != default
    ]


def check_rollout_options(head_fusion: str, discard_ratio: float) -> None:
    """Raise a SimpoolBenchError unless the rollout options are valid."""
    if head_fusion not in HEAD_FUSIONS:
        raise SimpoolBenchError(f"--rollout-fusion {head_fusion!r}: expected one of {', '.join(HEAD_FUSIONS)}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise SimpoolBenchError(f"--rollout-discard {discard_ratio!r}: expected a fraction in [0, 1)")


def standard_attention(blk: nn.Module, arch: str) -> Attention:
    """The block's timm ``Attention`` (qkv, num_heads, head_dim, scale, q_norm, k_norm), or an error."""
    from timm.layers import Attention

    a = getattr(blk, "attn", None)
    if not isinstance(a, Attention) or getattr(a, "gate", None) is not None:
        raise SimpoolBenchError(f"{arch}: attention maps need standard timm ViT blocks, got {type(blk).__name__}")
    return a


def block_attention(blk: nn.Module, t: Tensor, arch: str = "model") -> Tensor:
    """Softmax attention (B, heads, N, N) of a timm ViT block on its input tokens ``t`` (B, N, d),
    as timm's non-fused path computes it: ``softmax((q * scale) @ k^T)`` after q/k norm."""
    a = standard_attention(blk, arch)
    B, N, _ = t.shape
    qkv = a.qkv(cast(nn.Module, blk.norm1)(t)).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = a.q_norm(q), a.k_norm(k)
    return ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def latent_pool_attention(pool: AttentionPoolLatent, x: Tensor) -> Tensor:
    """Attention (B, heads, latents, N) of timm's ``AttentionPoolLatent`` on the tokens ``x`` it pools."""
    B, N, _ = x.shape
    if getattr(pool, "pos_embed", None) is not None:
        x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
    q = pool.q(pool.latent.expand(B, -1, -1)).reshape(B, pool.latent_len, pool.num_heads, pool.head_dim).transpose(1, 2)
    kv = pool.kv(x).reshape(B, N, 2, pool.num_heads, pool.head_dim).permute(2, 0, 3, 1, 4)
    k = kv[0]
    q, k = pool.q_norm(q), pool.k_norm(k)
    return ((q * pool.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def attention_rollout(
    attentions: Sequence[Tensor], num_prefix: int, head_fusion: str = DEFAULT_HEAD_FUSION, discard_ratio: float = DEFAULT_DISCARD_RATIO
) -> Tensor:
    """Attention rollout (module docstring) of per-block attentions (B, heads, N, N), first block
    first: (B, N - num_prefix), the CLS row over the patches (mean over rows without prefix tokens)."""
    check_rollout_options(head_fusion, discard_ratio)
    if not attentions:
        raise SimpoolBenchError("attention rollout needs at least one block's attention")
    B, _, N, _ = attentions[0].shape
    eye = torch.eye(N, dtype=torch.float32, device=attentions[0].device)
    result = eye.expand(B, N, N)
    for attn in attentions:
        attn = attn.float()
        if head_fusion == "mean":
            fused = attn.mean(dim=1)
        elif head_fusion == "max":
            fused = attn.amax(dim=1)
        else:
            fused = attn.amin(dim=1)
        if discard_ratio > 0:
            flat = fused.reshape(B, N * N)
            _, idx = flat.topk(int(N * N * discard_ratio), dim=-1, largest=False)
            drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)
            drop[:, 0] = False
            fused = flat.masked_fill(drop, 0.0).reshape(B, N, N)
        a = (fused + eye) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    if num_prefix > 0:
        return result[:, 0, num_prefix:]
    return result.mean(dim=1)


def gradcam_from(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM (B, h, w) of activations and their gradients (B, C, h, w):
    ``relu(sum_c mean_hw(G)_c * A_c)``."""
    weights = gradients.float().mean(dim=(2, 3))
    cam = (weights[:, :, None, None] * activations.float()).sum(dim=1)
    return cam.clamp_min(0.0)


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """A submodule by dotted path, where an integer part (``-1`` too) indexes a container."""
    m: Any = model
    for part in path.split("."):
        m = m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


def gradcam_forward(model: BenchModel, x: Tensor, target: Tensor | None, return_keys: bool, layer_path: str) -> ModelOutput:
    """Run ``model._forward`` once with gradients on, and replace its map by Grad-CAM of the
    ``layer_path`` output (a CNN feature map (B, C, h, w), or ViT tokens (B, N, C) whose patch
    tokens are laid on the grid). Returns the model's ``ModelOutput`` with ``attn`` set."""
    from .models.base import cam_classes

    layer = resolve_layer(model, layer_path)
    store: dict[str, Tensor] = {}

    def hook(_m: nn.Module, _inp: Any, out: Tensor) -> Tensor:
        if not out.requires_grad:
            out = out.detach().requires_grad_()
        store["act"] = out
        return out

    with torch.inference_mode(False), torch.enable_grad():
        xx = x.clone()
        handle = layer.register_forward_hook(hook)
        try:
            out = model._forward(xx, target, return_keys)
        finally:
            handle.remove()
        if out.logits is None:
            raise SimpoolBenchError(f"{model.arch}: gradcam needs a classifier (its gradients are those of a class logit)")
        cls = cam_classes(out.logits, target, x.shape[0]).clone()  # a target made in inference mode cannot index a graph
        score = out.logits.gather(1, cls[:, None]).sum()
        (grad,) = torch.autograd.grad(score, store["act"])
    act = store["act"].detach()
    if act.ndim == 3:  # ViT tokens: drop prefix tokens, lay the patches on the grid
        gh, gw = x.shape[-2] // model.stride, x.shape[-1] // model.stride
        prefix = act.shape[1] - gh * gw

        def grid(t: Tensor) -> Tensor:
            return t[:, prefix:].reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

        act, grad = grid(act), grid(grad)
    out.attn = gradcam_from(act, grad)
    out.logits = out.logits.detach()
    out.features = out.features.detach()
    if out.keys is not None:
        out.keys = out.keys.detach()
    return out
