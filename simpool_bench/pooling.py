"""SimPool: attention-based global pooling that also returns its attention map.

From "Keep It SimPool: Who Said Supervised Transformers Suffer from Attention Deficit?"
(Psomas et al., ICCV 2023), https://arxiv.org/abs/2309.06891; official code ``sp.py`` in
billpsomas/simpool. Parameter names (``wq``, ``wk``, ``norm_patches``, ``beta``) are the official ones,
so official state dicts load by name.

Where we differ from ``sp.py``, on purpose, each as a named argument:

* ``min_scope`` - the official code shifts the values by the minimum over the WHOLE batch tensor
  (``vv.min()``), so a sample's output depends on the rest of its batch. ``'sample'`` (our default)
  takes the minimum over one sample's tensor (equal to the official result at batch size 1 and
  independent of batch composition); ``'batch'`` is the official definition; ``'channel'`` takes it
  per sample, head and channel, as timm's ``SimPool1d/2d`` do.
* the official forward ends with ``x.squeeze()``, which drops the batch axis at batch size 1; we
  always return ``(B, d)``.
* the official module hard-codes CUDA tensors for ``gamma``/``eps``/``beta``; ours follows the input.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from .errors import SimpoolBenchError

MinScope = Literal["sample", "batch", "channel"]
MIN_SCOPES: tuple[str, ...] = ("sample", "batch", "channel")

# Official sp.py constants: LayerNorm eps of ``norm_patches`` and the shift added before the power.
SIMPOOL_NORM_EPS = 1e-6
SIMPOOL_SHIFT_EPS = 1e-6


class SimPool(nn.Module):
    """SimPool global pooling over patch tokens or a CNN feature map, returning (pooled, attention).

    q = GAP of the raw features; k = v = LayerNorm(features);
    a = softmax((Wq q)(Wk k)^T / sqrt(d_head)) over the N patches (per head);
    output = a v without gamma, or (a (v - m + 1e-6)^gamma)^(1/gamma) [+ beta] with gamma,
    where m is the minimum of v over ``min_scope``.

    Args:
        dim: feature dimension d (channels).
        num_heads: attention heads (every official model uses 1).
        gamma: power-mean exponent; ``None`` gives the plain attention-weighted mean.
        use_beta: add the learnable scalar ``beta`` after the power mean (official DINO ViT);
            only meaningful with a gamma, as in ``sp.py``.
        min_scope: where the minimum m is taken: ``'sample'`` (default), ``'batch'`` (official
            ``sp.py``) or ``'channel'`` (timm ``SimPool1d/2d``). See the module docstring.
        norm_eps: LayerNorm eps of ``norm_patches`` (official 1e-6; timm's SimPool uses 1e-5).
        device: parameter device.
        dtype: parameter dtype.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 1,
        gamma: float | None = None,
        use_beta: bool = False,
        min_scope: MinScope = "sample",
        norm_eps: float = SIMPOOL_NORM_EPS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise SimpoolBenchError(f"SimPool: dim {dim} must be a positive multiple of num_heads {num_heads}")
        if min_scope not in MIN_SCOPES:
            raise SimpoolBenchError(f"SimPool: min_scope {min_scope!r} is not one of {', '.join(MIN_SCOPES)}")
        if gamma is not None and not gamma > 0:
            raise SimpoolBenchError(f"SimPool: gamma {gamma!r} must be a positive number or None")
        if use_beta and gamma is None:
            raise SimpoolBenchError("SimPool: use_beta needs a gamma (official sp.py adds beta only on the gamma path)")
        dd: dict[str, Any] = {"device": device, "dtype": dtype}
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.gamma = None if gamma is None else float(gamma)
        self.use_beta = use_beta
        self.min_scope = min_scope
        self.norm_patches = nn.LayerNorm(dim, eps=norm_eps, **dd)
        self.wq = nn.Linear(dim, dim, bias=False, **dd)
        self.wk = nn.Linear(dim, dim, bias=False, **dd)
        if use_beta:
            self.beta = nn.Parameter(torch.zeros(1, **dd))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, gamma={self.gamma}, use_beta={self.use_beta}, min_scope={self.min_scope!r}"

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pool ``x`` of shape (B, N, d) (tokens) or (B, d, H, W) (feature map, read row-major).

        Returns ``(pooled, attn)``: pooled (B, d); attn (B, num_heads, N), each row summing to 1.
        """
        if x.ndim == 4:
            x = x.flatten(2).transpose(1, 2)
        elif x.ndim != 3:
            raise SimpoolBenchError(f"SimPool: input must be (B, N, d) or (B, d, H, W), got shape {tuple(x.shape)}")
        B, N, d = x.shape
        if d != self.dim:
            raise SimpoolBenchError(f"SimPool: input has {d} channels, the layer was built for {self.dim}")
        h, dh = self.num_heads, self.head_dim
        q = x.mean(dim=1, keepdim=True)  # (B, 1, d): GAP of the raw features
        kv = self.norm_patches(x)  # (B, N, d)
        qq = self.wq(q).reshape(B, 1, h, dh).transpose(1, 2)  # (B, h, 1, dh)
        kk = self.wk(kv).reshape(B, N, h, dh).transpose(1, 2)  # (B, h, N, dh)
        vv = kv.reshape(B, N, h, dh).transpose(1, 2)  # (B, h, N, dh)
        attn = ((qq @ kk.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, h, 1, N)
        if self.gamma is None:
            out = attn @ vv
        else:
            shifted = vv - self._minimum(vv) + SIMPOOL_SHIFT_EPS
            out = (attn @ shifted.pow(self.gamma)).pow(1.0 / self.gamma)
            if self.use_beta:
                out = out + self.beta
        pooled = out.transpose(1, 2).reshape(B, d)
        return pooled, attn[:, :, 0, :]

    def _minimum(self, vv: Tensor) -> Tensor:
        """Minimum of the values (B, h, N, dh) over ``min_scope``, broadcastable against them."""
        if self.min_scope == "batch":
            return vv.min()
        if self.min_scope == "sample":
            return vv.amin(dim=(1, 2, 3), keepdim=True)
        return vv.amin(dim=2, keepdim=True)
