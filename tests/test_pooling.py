"""SimPool layer against literal re-implementations of the official sp.py and of timm's SimPool."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import SimPool1d, SimPool2d

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.pooling import SimPool

DIM = 12
ATOL = 1e-6


def official_simpool(x, wq, wk, ln_w, ln_b, num_heads=1, gamma=None, beta=None):
    """billpsomas/simpool sp.py, written out: batch-coupled vv.min(), LN eps 1e-6, then the
    official timm-fork flatten (nn.Flatten(1) after the squeeze; here without the squeeze)."""
    if x.dim() == 4:
        B, d, H, W = x.shape
        gap_cls = x.mean([-2, -1]).unsqueeze(1)
        x = x.reshape(B, d, H * W).permute(0, 2, 1)
    else:
        B, N, d = x.shape
        gap_cls = x.mean(-2).unsqueeze(1)
    N = x.shape[1]
    q = gap_cls
    k = v = F.layer_norm(x, (d,), ln_w, ln_b, eps=1e-6)
    hd = d // num_heads
    qq = (q @ wq.t()).reshape(B, 1, num_heads, hd).permute(0, 2, 1, 3)
    kk = (k @ wk.t()).reshape(B, N, num_heads, hd).permute(0, 2, 1, 3)
    vv = v.reshape(B, N, num_heads, hd).permute(0, 2, 1, 3)
    attn = ((qq @ kk.transpose(-2, -1)) * hd**-0.5).softmax(dim=-1)
    if gamma is not None:
        g = torch.tensor([gamma])
        eps = torch.tensor([1e-6])
        out = torch.pow(attn @ torch.pow(vv - vv.min() + eps, g), 1 / g)
        if beta is not None:
            out = out + beta
        out = out.reshape(B, -1)  # (B, heads, 1, hd) -> squeeze + Flatten(1)
    else:
        out = (attn @ vv).transpose(1, 2).reshape(B, d)
    return out, attn[:, :, 0, :]


def random_layer(num_heads=1, gamma=None, use_beta=False, min_scope="batch", seed=0, **kw):
    torch.manual_seed(seed)
    layer = SimPool(DIM, num_heads=num_heads, gamma=gamma, use_beta=use_beta, min_scope=min_scope, **kw)
    with torch.no_grad():
        layer.wq.weight.normal_(0, 0.5)
        layer.wk.weight.normal_(0, 0.5)
        layer.norm_patches.weight.uniform_(0.5, 1.5)
        layer.norm_patches.bias.normal_(0, 0.3)
        if use_beta:
            layer.beta.fill_(0.37)
    return layer


def official_of(layer, x):
    beta = layer.beta.detach() if layer.use_beta else None
    return official_simpool(
        x,
        layer.wq.weight.detach(),
        layer.wk.weight.detach(),
        layer.norm_patches.weight.detach(),
        layer.norm_patches.bias.detach(),
        layer.num_heads,
        layer.gamma,
        beta,
    )


CASES = [(g, b) for g in (None, 1.25, 2.0) for b in (False, True) if not (b and g is None)]


@pytest.mark.parametrize("gamma,use_beta", CASES)
@pytest.mark.parametrize("num_heads", [1, 3])
@pytest.mark.parametrize("layout", ["tokens", "map"])
def test_batch_scope_equals_official(gamma, use_beta, num_heads, layout):
    layer = random_layer(num_heads, gamma, use_beta, "batch")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 10, DIM, generator=g) * 2 + 0.5 if layout == "tokens" else torch.randn(4, DIM, 2, 5, generator=g) * 2
    with torch.no_grad():
        pooled, attn = layer(x)
        ref, ref_attn = official_of(layer, x)
    assert pooled.shape == (4, DIM) and attn.shape == (4, num_heads, 10)
    torch.testing.assert_close(pooled, ref, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(attn, ref_attn, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, num_heads), atol=ATOL, rtol=0)


@pytest.mark.parametrize("gamma,use_beta", CASES)
@pytest.mark.parametrize("num_heads", [1, 3])
def test_sample_scope_is_official_at_batch_size_one_and_batch_independent(gamma, use_beta, num_heads):
    layer = random_layer(num_heads, gamma, use_beta, "sample")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, DIM, 3, 3, generator=g)
    x[2, :, 1, 1] = 0.0
    x[2, 0, 1, 1] = -10.0  # a token whose normalised values reach far below the others'
    with torch.no_grad():
        pooled, attn = layer(x)
        for i in range(5):
            ref, ref_attn = official_of(layer, x[i : i + 1])
            torch.testing.assert_close(pooled[i : i + 1], ref, atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(attn[i : i + 1], ref_attn, atol=ATOL, rtol=ATOL)
        # same sample, other company: identical output
        alone, _ = layer(x[[0]])
        mixed, _ = layer(x[[3, 0, 2]])
        torch.testing.assert_close(mixed[1:2], alone, atol=ATOL, rtol=ATOL)


def test_official_batch_scope_couples_samples():
    """The official min over the whole batch makes a sample's output depend on its batch mates."""
    layer = random_layer(1, 2.0, False, "batch")
    with torch.no_grad():
        layer.norm_patches.weight.fill_(1.0)
        layer.norm_patches.bias.zero_()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, DIM, generator=g)
    x[2, 0] = 0.0
    x[2, 0, 0] = -10.0  # after LayerNorm: one value near -sqrt(DIM - 1), below anything in sample 0
    with torch.no_grad():
        assert layer.norm_patches(x[2]).min() < layer.norm_patches(x[0]).min() - 0.5
        alone, _ = layer(x[:1])
        together, _ = layer(x)
    assert (alone - together[:1]).abs().max() > 1e-3


def timm_reference(layer: SimPool, x: torch.Tensor) -> torch.Tensor:
    """timm SimPool1d/2d (keys norm/q/k, min per sample, head and channel) with our weights copied."""
    cls = SimPool2d if x.dim() == 4 else SimPool1d
    ref = cls(DIM, num_heads=layer.num_heads, gamma=layer.gamma)
    ref.load_state_dict(
        {
            "norm.weight": layer.norm_patches.weight,
            "norm.bias": layer.norm_patches.bias,
            "q.weight": layer.wq.weight,
            "k.weight": layer.wk.weight,
        }
    )
    assert ref.norm.eps == 1e-5
    return ref(x)


@pytest.mark.parametrize("gamma", [None, 1.25, 2.0])
@pytest.mark.parametrize("num_heads", [1, 3])
@pytest.mark.parametrize("layout", ["tokens", "map"])
def test_channel_scope_equals_timm(gamma, num_heads, layout):
    layer = random_layer(num_heads, gamma, False, "channel", norm_eps=1e-5)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 7, DIM, generator=g) if layout == "tokens" else torch.randn(3, DIM, 2, 4, generator=g)
    with torch.no_grad():
        pooled, _ = layer(x)
        ref = timm_reference(layer, x)
    torch.testing.assert_close(pooled, ref, atol=2 * ATOL, rtol=2 * ATOL)


def test_scopes_differ_where_they_should():
    layer = random_layer(1, 2.0, False, "sample")
    x = torch.randn(2, 6, DIM, generator=torch.Generator().manual_seed(5))
    x[1, 0] = 0.0
    x[1, 0, 0] = -10.0
    outs = {}
    with torch.no_grad():
        for scope in ("sample", "batch", "channel"):
            layer.min_scope = scope
            outs[scope] = layer(x)[0]
    assert (outs["sample"] - outs["channel"]).abs().max() > 1e-4
    assert (outs["sample"] - outs["batch"]).abs().max() > 1e-4


def test_batch_of_one_keeps_batch_axis():
    layer = random_layer(1, 1.25, True)
    pooled, attn = layer(torch.randn(1, 9, DIM))
    assert pooled.shape == (1, DIM) and attn.shape == (1, 1, 9)


def test_official_state_dict_loads_by_name():
    layer = SimPool(DIM, gamma=1.25, use_beta=True)
    official = {
        "wq.weight": torch.randn(DIM, DIM),
        "wk.weight": torch.randn(DIM, DIM),
        "norm_patches.weight": torch.rand(DIM),
        "norm_patches.bias": torch.randn(DIM),
        "beta": torch.tensor([0.25]),
    }
    assert set(layer.state_dict()) == set(official)
    layer.load_state_dict(official, strict=True)
    assert layer.norm_patches.eps == 1e-6 and layer.wq.bias is None and layer.wk.bias is None
    assert set(SimPool(DIM, gamma=None).state_dict()) == set(official) - {"beta"}


def test_a_new_beta_starts_as_the_official_one():
    """A layer built without a checkpoint (trained from scratch, or run as built) starts with sp.py's
    ``beta = nn.Parameter(torch.tensor([0.0]))``."""
    import simpool_official_reference as R

    ours, theirs = SimPool(DIM, gamma=1.25, use_beta=True).beta, R.SimPool(DIM, gamma=1.25, use_beta=True).beta
    assert ours.shape == theirs.shape and torch.equal(ours.detach(), theirs.detach())


def test_any_dtype_and_device():
    layer = SimPool(DIM, gamma=2.0, use_beta=True, dtype=torch.float64)
    x = torch.randn(2, DIM, 3, 3, dtype=torch.float64)
    pooled, attn = layer(x)
    assert pooled.dtype == torch.float64 and attn.dtype == torch.float64
    meta = SimPool(DIM, gamma=2.0, device="meta")
    pooled, attn = meta(torch.empty(2, 5, DIM, device="meta"))
    assert pooled.device.type == "meta" and pooled.shape == (2, DIM) and attn.shape == (2, 1, 5)


def test_bad_arguments():
    with pytest.raises(SimpoolBenchError, match="min_scope"):
        SimPool(DIM, min_scope="global")
    with pytest.raises(SimpoolBenchError, match="beta"):
        SimPool(DIM, gamma=None, use_beta=True)
    with pytest.raises(SimpoolBenchError, match="num_heads"):
        SimPool(DIM, num_heads=5)
    with pytest.raises(SimpoolBenchError, match="gamma"):
        SimPool(DIM, gamma=0.0)
    with pytest.raises(SimpoolBenchError, match="shape"):
        SimPool(DIM)(torch.randn(DIM, 4))
    with pytest.raises(SimpoolBenchError, match="channels"):
        SimPool(DIM)(torch.randn(2, 4, DIM + 1))


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0])
def test_gamma_path_equals_sp_py_in_float64(gamma):
    """sp.py's gamma path to float64 precision, where its 1e-6 shift is far above the tolerance:
    ``(a (v - min + 1e-6)^gamma)^(1/gamma)``, gamma = 1 included (there it is ``a v - min + 1e-6``,
    not the plain mean ``a v`` of gamma=None)."""
    import simpool_official_reference as R

    layer = random_layer(1, gamma, False, "sample").double()
    theirs = R.SimPool(DIM, gamma=gamma).double()
    theirs.load_state_dict(layer.state_dict())
    x = 3.0 * torch.randn(1, 7, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        pooled, attn = layer(x)
        want = theirs(x).reshape(1, DIM)
    torch.testing.assert_close(pooled, want, atol=1e-12, rtol=1e-12)
    if gamma == 1.0:
        vv = layer.norm_patches(x)
        plain = attn[:, 0] @ vv[0]
        torch.testing.assert_close(pooled, plain - vv.min() + 1e-6, atol=1e-12, rtol=1e-12)
        assert (pooled - plain).abs().max() > 0.1


def test_num_heads_below_one_is_refused():
    for heads in (0, -1, -12):
        with pytest.raises(SimpoolBenchError, match="num_heads"):
            SimPool(DIM, num_heads=heads)


def test_default_min_scope_is_the_sample():
    """By default a sample's output does not depend on its batch (``min_scope='sample'``): a batch
    mate with a far lower value leaves it as pooled alone, where sp.py's batch minimum would not."""
    layer = random_layer(1, 2.0, False, min_scope="sample")
    default = SimPool(DIM, gamma=2.0)
    default.load_state_dict(layer.state_dict())
    assert default.min_scope == "sample"
    x = torch.randn(2, 6, DIM, generator=torch.Generator().manual_seed(9))
    x[1, 0, 0] = -50.0
    with torch.no_grad():
        together, alone = default(x)[0][0], default(x[:1])[0][0]
    torch.testing.assert_close(together, alone, atol=ATOL, rtol=ATOL)
    assert (together - official_of(default, x)[0][0]).abs().max() > 1e-3
