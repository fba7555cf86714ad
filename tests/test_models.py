"""build_model / BenchModel against timm's own models and literal re-implementations of the official
SimPool placements (timm fork, DINO), attention sources (SimPool, CLS, CAM) and the key layouts."""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.models import BenchModel, ModelOutput, build_model, dino_interpolate_pos_encoding

VIT = "vit_small_patch16_224"
VIT_KW = dict(embed_dim=48, depth=2, num_heads=3)
CNX_KW = dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
NC = 7
ATOL = 1e-5


def official_simpool(x, sd, gamma=None):
    """billpsomas/simpool sp.py on (B, N, d) tokens or a (B, d, H, W) map, one head, min over the
    whole batch tensor, LN eps 1e-6; ``sd`` holds wq.weight, wk.weight, norm_patches.*, [beta]."""
    if x.dim() == 4:
        x = x.flatten(2).transpose(1, 2)
    B, N, d = x.shape
    q = x.mean(1, keepdim=True)
    k = v = F.layer_norm(x, (d,), sd["norm_patches.weight"], sd["norm_patches.bias"], eps=1e-6)
    attn = ((q @ sd["wq.weight"].t()) @ (k @ sd["wk.weight"].t()).transpose(1, 2) * d**-0.5).softmax(-1)
    if gamma is None:
        out = attn @ v
    else:
        out = torch.pow(attn @ torch.pow(v - v.min() + 1e-6, gamma), 1 / gamma)
        if "beta" in sd:
            out = out + sd["beta"]
    return out[:, 0], attn[:, 0]


def official_dino_pos(pos_embed, n_tokens, w, h, patch, mode):
    """simpool self_supervised/vision_transformer.py interpolate_pos_encoding, line for line
    (``B, nc, w, h = x.shape``: w is the image height)."""
    npatch = n_tokens - 1
    N = pos_embed.shape[1] - 1 if mode == "official" else pos_embed.shape[1]
    if npatch == N and w == h:
        return pos_embed
    if mode == "official":
        class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
    else:
        patch_pos_embed = pos_embed
    dim = pos_embed.shape[-1]
    w0, h0 = w // patch + 0.1, h // patch + 0.1
    patch_pos_embed = F.interpolate(
        patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
        mode="bicubic",
    )
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    if mode == "official":
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)
    return patch_pos_embed


def randomize(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial values for the pooling and final-norm parameters (beta non-zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("norm_patches.weight", "norm.weight")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(("norm_patches.bias", "wq.weight", "wk.weight")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.endswith("beta"):
                p.fill_(0.3)


def split_pool_keys(sd: dict, prefix: str) -> tuple[dict, dict]:
    """(state dict without the pooling keys, pooling keys with ``prefix`` stripped)."""
    rest = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    pool = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return rest, pool


def timm_vit(img, **kw):
    return timm.create_model(VIT, pretrained=False, img_size=img, dynamic_img_size=True, **VIT_KW, **kw).eval()


def images(b, h, w, seed=0):
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------- ViT + SimPool
def test_vit_supervised_simpool_is_official_fork_math():
    """timm fork: tokens through the final norm (no CLS), SimPool at gp.pool, then the head."""
    torch.manual_seed(0)
    model = build_model(VIT, img_size=32, num_classes=NC, gamma=1.25, use_beta=True, min_scope="batch", **VIT_KW).eval()
    randomize(model)
    ref = timm_vit(32, num_classes=NC, class_token=False, global_pool="", fc_norm=False)
    rest, pool_sd = split_pool_keys(model.state_dict(), "gp.pool.")
    ref.load_state_dict(rest, strict=True)
    assert set(pool_sd) == {"wq.weight", "wk.weight", "norm_patches.weight", "norm_patches.bias", "beta"}
    x = images(2, 32, 48)  # 2x3 grid: position embeddings resampled the timm way
    with torch.no_grad():
        out = model(x)
        tokens = ref.forward_features(x)
        feats, attn = official_simpool(tokens, pool_sd, gamma=1.25)
        logits = ref.head(feats)
    assert isinstance(out, ModelOutput)
    torch.testing.assert_close(out.features, feats, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.logits, logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn.reshape(2, 2, 3), atol=ATOL, rtol=ATOL)
    assert out.attn.dtype == torch.float32 and out.keys is None


@pytest.mark.parametrize("quirk", [False, True])
@pytest.mark.parametrize("hw", [(32, 32), (48, 80)])
def test_vit_dino_simpool_is_official_dino_math(quirk, hw):
    """DINO: SimPool on the raw last-block tokens, norm after pooling, no classifier; with the
    quirk, position embeddings exactly as the official interpolate_pos_encoding makes them."""
    model = build_model(
        VIT, variant="dino", img_size=32, gamma=1.25, use_beta=True, min_scope="batch", dino_pos_quirk=quirk, **VIT_KW
    ).eval()
    randomize(model, seed=1)
    ref = timm_vit(32, num_classes=0, class_token=False, global_pool="")
    rest, pool_sd = split_pool_keys(model.state_dict(), "simpool.")
    ref.load_state_dict(rest, strict=True)
    x = images(2, *hw, seed=1)
    with torch.no_grad():
        out = model(x)
        t = ref.patch_embed(x).flatten(1, 2)
        if quirk:
            t = t + official_dino_pos(ref.pos_embed, t.shape[1], hw[0], hw[1], 16, mode="simpool")
        else:
            t = t + timm.layers.resample_abs_pos_embed(ref.pos_embed, (hw[0] // 16, hw[1] // 16), (2, 2), num_prefix_tokens=0)
        pooled, attn = official_simpool(ref.blocks(t), pool_sd, gamma=1.25)
        feats = ref.norm(pooled)
    assert out.logits is None
    torch.testing.assert_close(out.features, feats, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn.reshape(2, hw[0] // 16, hw[1] // 16), atol=ATOL, rtol=ATOL)


def test_dino_quirk_is_not_identity_at_224():
    model = build_model(VIT, variant="dino", gamma=None, **VIT_KW).eval()
    quirky = build_model(VIT, variant="dino", gamma=None, dino_pos_quirk=True, **VIT_KW).eval()
    quirky.load_state_dict(model.state_dict())
    pos = dino_interpolate_pos_encoding(model.pos_embed.detach(), 0, 196, (224, 224), 16)
    ref = official_dino_pos(model.pos_embed.detach(), 196, 224, 224, 16, mode="simpool")
    torch.testing.assert_close(pos, ref, atol=0, rtol=0)
    assert pos.shape == (1, 196, 48) and (pos - model.pos_embed).abs().max() > 1e-3
    x = images(1, 224, 224)
    with torch.no_grad():
        assert (model(x).features - quirky(x).features).abs().max() > 1e-4


def test_dino_cls_quirk_only_off_grid():
    """Official DINO (CLS) mode: identity at the trained square size, DINO's own resize elsewhere."""
    plain = build_model(VIT, pool="cls", variant="dino", img_size=32, **VIT_KW).eval()
    quirky = build_model(VIT, pool="cls", variant="dino", img_size=32, dino_pos_quirk=True, **VIT_KW).eval()
    quirky.load_state_dict(plain.state_dict())
    pos = plain.pos_embed.detach()
    assert dino_interpolate_pos_encoding(pos, 1, 4, (32, 32), 16) is pos
    torch.testing.assert_close(
        dino_interpolate_pos_encoding(pos, 1, 15, (48, 80), 16), official_dino_pos(pos, 16, 48, 80, 16, mode="official"), atol=0, rtol=0
    )
    x = images(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(plain(x).features, quirky(x).features, atol=0, rtol=0)
    # DINO's early return needs npatch == N AND a square input: a 1x4 grid has the 4 patches of the
    # trained 2x2 one and is still interpolated
    wide = dino_interpolate_pos_encoding(pos, 1, 4, (16, 64), 16)
    torch.testing.assert_close(wide, official_dino_pos(pos, 5, 16, 64, 16, mode="official"), atol=0, rtol=0)
    assert (wide - pos).abs().max() > 1e-3


def test_dino_pos_interp_without_the_quirk_is_identity_at_the_trained_size():
    """pos_interp='dino' with the npatch slip turned off (a DINO-code SimPool ViT, --no-dino-pos-quirk):
    DINO's interpolate_pos_encoding with the right patch count returns pos_embed unchanged at the
    trained square size, as timm's resample does."""
    dino_way = build_model(VIT, variant="dino", img_size=32, gamma=None, pos_interp="dino", **VIT_KW).eval()
    timm_way = build_model(VIT, variant="dino", img_size=32, gamma=None, **VIT_KW).eval()
    timm_way.load_state_dict(dino_way.state_dict())
    x = images(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dino_way(x).features, timm_way(x).features, atol=0, rtol=0)


# ---------------------------------------------------------------------------------- ViT baselines
@pytest.mark.parametrize("pool", ["cls", "gap"])
@pytest.mark.parametrize("hw", [(32, 32), (48, 80)])
def test_vit_baselines_equal_timm(pool, hw):
    model = build_model(VIT, pool=pool, img_size=32, num_classes=NC, **VIT_KW).eval()
    ref = timm_vit(32, num_classes=NC, global_pool="token" if pool == "cls" else "avg")
    ref.load_state_dict(model.state_dict(), strict=True)  # plain timm keys
    x = images(2, *hw)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out.logits, ref(x), atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(out.features, ref.forward_head(ref.forward_features(x), pre_logits=True), atol=ATOL, rtol=ATOL)
    assert (out.attn is None) == (pool == "gap")


def test_cls_attention_and_keys_equal_lost_style_hook():
    """CLS map = raw softmax row of the last block (CLS query, patch columns), mean over heads or
    one head; keys = last-block qkv keys of the patches (LOST's hook)."""
    model = build_model(VIT, pool="cls", img_size=32, num_classes=NC, **VIT_KW).eval()
    one_head = build_model(VIT, pool="cls", img_size=32, num_classes=NC, cls_head=2, **VIT_KW).eval()
    one_head.load_state_dict(model.state_dict())
    ref = timm_vit(32, num_classes=NC)
    ref.load_state_dict(model.state_dict(), strict=True)
    seen = {}
    ref.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: seen.__setitem__("qkv", o))
    x = images(2, 48, 32)
    with torch.no_grad():
        out = model(x, return_keys=True)
        logits = ref(x)
        qkv = seen["qkv"]
        B, N, _ = qkv.shape
        q, k, _ = qkv.reshape(B, N, 3, 3, 16).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * 16**-0.5).softmax(-1)
        head2 = one_head(x).attn
    torch.testing.assert_close(out.logits, logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn[:, :, 0, 1:].mean(1).reshape(2, 3, 2), atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(head2, attn[:, 2, 0, 1:].reshape(2, 3, 2), atol=ATOL, rtol=ATOL)
    # not renormalised: patches + CLS-to-CLS make 1
    torch.testing.assert_close(out.attn.sum((1, 2)) + attn[:, :, 0, 0].mean(1), torch.ones(2), atol=ATOL, rtol=0)
    assert (out.attn.sum((1, 2)) < 1 - 1e-4).all()
    torch.testing.assert_close(out.keys, k.transpose(1, 2).reshape(B, N, -1)[:, 1:], atol=ATOL, rtol=ATOL)


def test_last_block_taken_apart_equals_timms_block_with_every_part():
    """A ViT with 2 register tokens (no_embed_class: position embeddings for the patches only),
    LayerScale, q/k norms and the scaled attention norm, CLS map and keys requested: the logits are
    timm's; the map is the softmax row timm's unfused Attention computes (caught at its attn_drop),
    patch columns only (prefix = CLS + 2 registers); the keys are the k that enters its k_norm."""
    kw = dict(reg_tokens=2, no_embed_class=True, init_values=0.5, qk_norm=True, scale_attn_norm=True, attn_drop_rate=0.5)
    model = build_model(VIT, pool="cls", img_size=32, num_classes=NC, **kw, **VIT_KW).eval()
    randomize(model, seed=5)
    ref = timm_vit(32, num_classes=NC, **kw)
    ref.load_state_dict(model.state_dict(), strict=True)
    last = ref.blocks[-1].attn
    last.fused_attn = False
    seen = {}
    last.attn_drop.register_forward_hook(lambda m, i, o: seen.__setitem__("attn", o))
    last.k_norm.register_forward_hook(lambda m, i, o: seen.__setitem__("k", i[0]))
    x = images(2, 32, 48)  # a 2x3 grid: position embeddings resampled
    with torch.no_grad():
        out = model(x, return_keys=True)
        logits = ref(x)
    attn, k = seen["attn"], seen["k"]  # attention dropout (attn_drop_rate) is off at eval, on both sides
    torch.testing.assert_close(out.logits, logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn[:, :, 0, 3:].mean(1).reshape(2, 2, 3), atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.keys, k.transpose(1, 2).reshape(2, 9, 48)[:, 3:], atol=ATOL, rtol=ATOL)


def test_vit_runs_at_other_sizes():
    model = build_model(VIT, num_classes=NC, **VIT_KW).eval()  # configured for 224
    with torch.no_grad():
        out = model(images(2, 48, 80), return_keys=True)
    assert out.logits.shape == (2, NC) and out.features.shape == (2, 48)
    assert out.attn.shape == (2, 3, 5) and out.keys.shape == (2, 15, 48)
    torch.testing.assert_close(out.attn.sum((1, 2)), torch.ones(2), atol=ATOL, rtol=0)
    with pytest.raises(SimpoolBenchError, match="multiple of the patch size"):
        model(images(1, 50, 80))
    with pytest.raises(SimpoolBenchError, match="input 48x88 is not a multiple of the patch size 16"):
        model(images(1, 48, 88))


def test_planted_simpool_peak_vit():
    """Identity blocks, one planted position embedding: the SimPool map must peak at that patch,
    row-major on a non-square 2x3 grid (token 2 = row 0, column 2)."""
    model = build_model(VIT, img_size=(32, 48), num_classes=NC, gamma=None, **VIT_KW).eval()
    with torch.no_grad():
        model.patch_embed.proj.weight.zero_()
        model.patch_embed.proj.bias.zero_()
        for blk in model.blocks:
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
        model.pos_embed.zero_()
        model.pos_embed[0, 2] = torch.randn(48, generator=torch.Generator().manual_seed(0)) * 5
        model.gp.pool.wq.weight.copy_(torch.eye(48) * 3)
        model.gp.pool.wk.weight.copy_(torch.eye(48) * 3)
        out = model(images(1, 32, 48))
    assert out.attn.shape == (1, 2, 3)
    assert torch.nonzero(out.attn[0] == out.attn[0].max()).tolist() == [[0, 2]]
    assert out.attn[0, 0, 2] > 0.9


# ---------------------------------------------------------------------------------- CNNs
class Planted(nn.Module):
    """Stands in for the last stage: returns a fixed feature map, whatever the input."""

    def __init__(self, fmap: torch.Tensor) -> None:
        super().__init__()
        self.fmap = fmap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fmap.expand(x.shape[0], -1, -1, -1)


@pytest.mark.parametrize("variant", ["supervised", "dino"])
def test_resnet_simpool_is_official_math(variant):
    model = build_model("resnet18", variant=variant, num_classes=NC, min_scope="batch").eval()
    prefix = "global_pool.pool." if variant == "supervised" else "simpool."
    randomize(model, seed=2)
    ref = timm.create_model("resnet18", pretrained=False, num_classes=NC if variant == "supervised" else 0).eval()
    rest, pool_sd = split_pool_keys(model.state_dict(), prefix)
    ref.load_state_dict(rest, strict=True)
    x = images(2, 64, 96)
    with torch.no_grad():
        out = model(x)
        feats, attn = official_simpool(ref.forward_features(x), pool_sd, gamma=2.0)
    torch.testing.assert_close(out.features, feats, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn.reshape(2, 2, 3), atol=ATOL, rtol=ATOL)
    if variant == "supervised":
        torch.testing.assert_close(out.logits, ref.fc(feats), atol=ATOL, rtol=ATOL)
    else:
        assert out.logits is None


@pytest.mark.parametrize("variant", ["supervised", "dino"])
def test_convnext_simpool_is_official_math(variant):
    """SimPool before the head norm (LayerNorm over channels of the pooled vector), then fc."""
    model = build_model("convnext_tiny", variant=variant, num_classes=NC, min_scope="batch", **CNX_KW).eval()
    prefix = "head.global_pool.pool." if variant == "supervised" else "simpool."
    randomize(model, seed=3)
    ref = timm.create_model("convnext_tiny", pretrained=False, num_classes=NC if variant == "supervised" else 0, **CNX_KW).eval()
    rest, pool_sd = split_pool_keys(model.state_dict(), prefix)
    ref.load_state_dict(rest, strict=True)
    x = images(2, 64, 96)
    with torch.no_grad():
        out = model(x)
        pooled, attn = official_simpool(ref.forward_features(x), pool_sd, gamma=2.0)
        feats = F.layer_norm(pooled, (32,), ref.head.norm.weight, ref.head.norm.bias, eps=1e-6)
    torch.testing.assert_close(out.features, feats, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(out.attn, attn.reshape(2, 2, 3), atol=ATOL, rtol=ATOL)
    if variant == "supervised":
        torch.testing.assert_close(out.logits, ref.head.fc(feats), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("arch,kw", [("resnet18", {}), ("convnext_tiny", CNX_KW)])
def test_cnn_gap_equals_timm(arch, kw):
    model = build_model(arch, pool="gap", num_classes=NC, **kw).eval()
    ref = timm.create_model(arch, pretrained=False, num_classes=NC, **kw).eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    x = images(2, 64, 64)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out.logits, ref(x), atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(out.features, ref.forward_head(ref.forward_features(x), pre_logits=True), atol=ATOL, rtol=ATOL)
    assert model.attn_source == "cam" and out.attn.shape == (2, 2, 2)


def test_resnet_cam_is_wsolevaluation_cam():
    model = build_model("resnet18", pool="gap", num_classes=NC).eval()
    seen = {}
    model.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("f", o))
    x = images(3, 64, 64)
    target = torch.tensor([1, 5, 0])
    with torch.no_grad():
        given = model(x, target=target)
        f = seen["f"]
        predicted = model(x)
    for cams, labels in ((given.attn, target), (predicted.attn, predicted.logits.argmax(1))):
        ref = (model.fc.weight[labels].view(*f.shape[:2], 1, 1) * f).mean(1)
        torch.testing.assert_close(cams, ref, atol=ATOL, rtol=ATOL)
    with pytest.raises(SimpoolBenchError, match=r"one class per image, shape \(3,\), got \(1,\)"):  # not broadcast to all 3
        model(x, target=torch.tensor([1]))
    # a GAP CNN without a classifier (DINO layout) has no CAM by default: features only
    dino = build_model("resnet18", pool="gap", variant="dino").eval()
    with torch.no_grad():
        out = dino(images(1, 64, 64))
    assert dino.attn_source is None and out.attn is None and out.logits is None


def test_planted_cam_and_simpool_peaks_resnet():
    fmap = torch.zeros(1, 512, 2, 3)
    fmap[0, 5, 1, 0] = 4.0
    cam_model = build_model("resnet18", pool="gap", num_classes=NC).eval()
    cam_model.layer4 = Planted(fmap)
    with torch.no_grad():
        cam_model.fc.weight.zero_()
        cam_model.fc.weight[3, 5] = 1.0
        cams = cam_model(images(2, 64, 64), target=torch.tensor([3, 3])).attn
    assert cams.shape == (2, 2, 3)
    assert torch.nonzero(cams[0] == cams[0].max()).tolist() == [[1, 0]]

    planted = torch.zeros(1, 512, 2, 3)
    planted[0, :, 0, 2] = torch.randn(512, generator=torch.Generator().manual_seed(0)) * 3
    sp_model = build_model("resnet18", num_classes=NC).eval()
    sp_model.layer4 = Planted(planted)
    with torch.no_grad():
        sp_model.global_pool.pool.wq.weight.copy_(torch.eye(512) * 3)
        sp_model.global_pool.pool.wk.weight.copy_(torch.eye(512) * 3)
        attn = sp_model(images(2, 64, 64)).attn
    assert torch.nonzero(attn[1] == attn[1].max()).tolist() == [[0, 2]] and attn[1, 0, 2] > 0.9


def test_convnext_cam_is_exact_logit_decomposition():
    """logit_c = (C * mean_xy cam_c - mu * sum(w_c * g)) / sigma + sum(w_c * b) + bias_c, with mu,
    sigma of the pooled vector (head LayerNorm scale g, shift b): the map is the exact CAM."""
    model = build_model("convnext_tiny", pool="gap", num_classes=NC, **CNX_KW).eval()
    randomize(model, seed=4)
    with torch.no_grad():
        model.head.norm.bias.normal_(0, 0.5)
    seen = {}
    model.stages.register_forward_hook(lambda m, i, o: seen.__setitem__("f", o))
    x = images(2, 64, 64)
    head = model.head
    with torch.no_grad():
        logits = model(x).logits
        p = seen["f"].mean((2, 3))
        mu = p.mean(1)
        sigma = (p.var(1, unbiased=False) + head.norm.eps).sqrt()
        for c in range(NC):
            cam = model(x, target=torch.full((2,), c)).attn
            wg = head.fc.weight[c] * head.norm.weight
            expect = (32 * cam.mean((1, 2)) - mu * wg.sum()) / sigma + (head.fc.weight[c] * head.norm.bias).sum() + head.fc.bias[c]
            torch.testing.assert_close(logits[:, c], expect, atol=1e-4, rtol=1e-4)


def test_every_family_builds_with_maps_summing_to_one():
    cases = [
        (VIT, "supervised", VIT_KW, (2, 3)),
        (VIT, "dino", VIT_KW, (2, 3)),
        ("resnet18", "supervised", {}, (2, 3)),
        ("resnet50", "dino", {}, (1, 2)),
        ("convnext_tiny", "supervised", CNX_KW, (2, 3)),
        ("convnext_small", "dino", CNX_KW, (2, 3)),
    ]
    for arch, variant, kw, grid in cases:
        model = build_model(arch, variant=variant, num_classes=NC, img_size=32, **kw).eval()
        assert isinstance(model, BenchModel) and model.pool == "simpool" and model.attn_source == "simpool"
        assert model.gamma == (1.25 if model.family == "vit" else 2.0)
        assert model.stride == (16 if model.family == "vit" else 32)
        h, w = grid[0] * model.stride, grid[1] * model.stride
        with torch.no_grad():
            out = model(images(2, h, w))
        assert out.features.shape == (2, model.num_features)
        assert (out.logits is None) == (variant == "dino")
        if out.logits is not None:
            assert out.logits.shape == (2, NC)
        assert out.attn.shape == (2, *grid) and out.attn.dtype == torch.float32
        torch.testing.assert_close(out.attn.sum((1, 2)), torch.ones(2), atol=ATOL, rtol=0)


def test_sample_scope_makes_outputs_batch_independent():
    model = build_model("resnet18", num_classes=NC).eval()
    x = images(3, 64, 64)
    x[2] = x[2] * 10 - 3
    with torch.no_grad():
        alone = model(x[:1])
        together = model(x)
    torch.testing.assert_close(together.logits[:1], alone.logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(together.attn[:1], alone.attn, atol=ATOL, rtol=ATOL)


# ---------------------------------------------------------------------------------- contract
SIMPOOL_KEYS = {"wq.weight", "wk.weight", "norm_patches.weight", "norm_patches.bias"}


@pytest.mark.parametrize(
    "arch,variant,pool,timm_kw,prefix",
    [
        (VIT, "supervised", "simpool", dict(class_token=False, global_pool="", fc_norm=False), "gp.pool."),
        (VIT, "dino", "simpool", dict(class_token=False, global_pool="", num_classes=0), "simpool."),
        (VIT, "dino", "cls", dict(num_classes=0), None),
        (VIT, "supervised", "cls", {}, None),
        ("resnet18", "supervised", "simpool", {}, "global_pool.pool."),
        ("resnet18", "dino", "simpool", dict(num_classes=0), "simpool."),
        ("resnet18", "supervised", "gap", {}, None),
        ("convnext_tiny", "supervised", "simpool", {}, "head.global_pool.pool."),
        ("convnext_tiny", "dino", "simpool", dict(num_classes=0), "simpool."),
        ("convnext_tiny", "supervised", "gap", {}, None),
    ],
)
def test_state_dict_key_layout(arch, variant, pool, timm_kw, prefix):
    arch_kw = VIT_KW if arch == VIT else CNX_KW if arch.startswith("convnext") else {}
    extra = dict(img_size=32) if arch == VIT else {}
    beta = dict(use_beta=True) if pool == "simpool" else {}
    model = build_model(arch, pool=pool, variant=variant, num_classes=NC, **beta, **extra, **arch_kw)
    timm_kw = {"num_classes": NC, **timm_kw}
    plain = timm.create_model(arch, pretrained=False, **extra, **arch_kw, **timm_kw)
    expected = set(plain.state_dict())
    if prefix:
        expected |= {prefix + k for k in SIMPOOL_KEYS | {"beta"}}
    assert set(model.state_dict()) == expected
    for k, v in plain.state_dict().items():
        assert model.state_dict()[k].shape == v.shape, k
    keys = set(model.state_dict())
    if arch == VIT:
        assert ("cls_token" in keys) == (pool == "cls")
        assert model.state_dict()["pos_embed"].shape == (1, 4 + (pool == "cls"), 48)
    if variant == "dino":
        assert not any(k.startswith(("head.fc", "fc.")) or k in ("head.weight", "head.bias") for k in keys)


def test_data_config_comes_from_timm():
    sup = build_model(VIT, img_size=32, **VIT_KW)
    cfg = timm.data.resolve_model_data_config(timm_vit(32))
    assert sup.data_config == {**cfg, "input_size": (3, 32, 32)}
    dino = build_model(VIT, variant="dino", **VIT_KW)
    assert dino.data_config["crop_pct"] == 0.875 and dino.data_config["interpolation"] == "bicubic"
    assert dino.data_config["mean"] == timm.data.IMAGENET_DEFAULT_MEAN and dino.data_config["std"] == timm.data.IMAGENET_DEFAULT_STD
    tv = build_model("torchvision:resnet18", pool="gap")  # torchvision's IMAGENET1K_V1 eval transform
    assert (tv.data_config["interpolation"], tv.data_config["crop_pct"]) == ("bilinear", 224 / 256)
    mine = build_model("torchvision:resnet18", pool="gap", data_overrides={"interpolation": "bicubic", "crop_pct": 0.9})
    assert (mine.data_config["interpolation"], mine.data_config["crop_pct"]) == ("bicubic", 0.9)
    res = build_model("resnet18", pool="gap")
    assert res.data_config == timm.data.resolve_model_data_config(timm.create_model("resnet18", pretrained=False))


def test_model_moves_as_one():
    model = build_model("convnext_tiny", num_classes=NC, **CNX_KW).eval()
    x = images(2, 64, 64)
    with torch.no_grad():
        ref = model(x).logits
        model.double()
        assert all(p.dtype == torch.float64 for p in model.parameters())
        out = model(x.double())
    assert out.logits.dtype == torch.float64 and out.attn.dtype == torch.float32
    torch.testing.assert_close(out.logits.float(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        (("swin_tiny_patch4_window7_224",), {}, "outside the supported"),  # efficientnet: supported since issue 14
        (("not_a_model",), {}, "unknown model 'not_a_model'"),
        ((VIT,), dict(pool="max"), "pool 'max'"),
        (("resnet18",), dict(pool="cls"), "pool 'cls' needs a ViT"),
        (("resnet18",), dict(pool="gap", gamma=2.0), "gamma 2.0 applies only"),
        ((VIT,), dict(gamma="huge"), "gamma 'huge'"),
        ((VIT,), dict(gamma=-1.0), "gamma -1.0"),
        ((VIT,), dict(variant="mae"), "variant 'mae'"),
        ((VIT,), dict(variant="dino", pool="gap"), "'dino' ViTs"),
        ((VIT,), dict(dino_pos_quirk=True), "dino_pos_quirk"),
        ((VIT,), dict(use_beta=True, gamma=None), "use_beta"),
        ((VIT,), dict(min_scope="global"), "min_scope 'global'"),
        ((VIT,), dict(attn_source="cls"), "--attn-source 'cls'"),
        ((VIT,), dict(pool="gap", attn_source="cam"), "--attn-source 'cam'"),
        (("resnet18",), dict(pool="gap", attn_source="simpool"), "--attn-source 'simpool'"),
        ((VIT,), dict(attn_source="grad"), "--attn-source 'grad'"),
        ((VIT,), dict(pool="cls", cls_head=3), "--cls-head 3: out of range, the last block has 3 heads \\(0 to 2\\)"),
        ((VIT,), dict(cls_head=0), "--cls-head applies to --attn-source cls, not .simpool."),
        ((VIT,), dict(rollout_fusion="max"), "^--rollout-fusion max applies to --attn-source rollout, not 'simpool'$"),
        ((VIT,), dict(pool="cls", rollout_discard=0.5), "^--rollout-discard 0.5 applies to --attn-source rollout, not 'cls'$"),
        (
            ("resnet18",),
            dict(pool="gap", rollout_fusion="min", rollout_discard=0.1),
            "^--rollout-fusion min and --rollout-discard 0.1 apply to --attn-source rollout, not 'cam'$",
        ),
        ((VIT,), dict(global_pool="avg"), "global_pool"),
        ((VIT,), dict(bogus_arg=1), "timm rejected"),
    ],
)
def test_bad_requests_name_the_culprit(args, kwargs, match):
    kw = dict(kwargs)
    if args[0] == VIT:
        kw = {**VIT_KW, "img_size": 32, **kw}
    with pytest.raises(SimpoolBenchError, match=match):
        build_model(*args, **kw)


def test_attention_source_overrides():
    gap_vit = build_model(VIT, pool="gap", img_size=32, num_classes=NC, attn_source="cls", **VIT_KW).eval()
    quiet = build_model(VIT, img_size=32, num_classes=NC, attn_source="none", **VIT_KW).eval()
    with torch.no_grad():
        assert gap_vit(images(1, 32, 32)).attn.shape == (1, 2, 2)
        assert quiet(images(1, 32, 32)).attn is None
    with pytest.raises(SimpoolBenchError, match="return_keys"):
        build_model("resnet18")(images(1, 64, 64), return_keys=True)


# ---------------------------------------------------------------------------------- DINO code, bit for bit
@pytest.mark.parametrize("hw", [(32, 32), (48, 80), (80, 48), (112, 64)])
def test_dino_code_vit_is_dino_vision_transformer_bit_for_bit(hw):
    """pos_interp='dino' + explicit attention = DINO's vision_transformer.py (tests/dino_reference.py):
    LOST's keys (qkv hook), the CLS attention of head 4 and the features identical on the same
    batch; timm's way is not."""
    import dino_reference

    torch.manual_seed(3)
    ref = dino_reference.vit_small(depth=2).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(
                torch.randn(p.shape) * (0.5 if name in ("pos_embed", "cls_token") else 0.05)
                + (1.0 if name.endswith("norm1.weight") else 0.0)
            )
    ours = build_model(VIT, pool="cls", variant="dino", depth=2, pos_interp="dino", fused_attn=False, cls_head=4).eval()
    ours.load_state_dict(ref.state_dict())
    timm_way = build_model(VIT, pool="cls", variant="dino", depth=2, cls_head=4).eval()
    timm_way.load_state_dict(ref.state_dict())
    x = images(3, *hw, seed=4)
    with torch.no_grad():
        out = ours(x, return_keys=True)
        feat = {}
        hook = ref.blocks[-1].attn.qkv.register_forward_hook(lambda m, a, o: feat.__setitem__("qkv", o))
        attn = ref.get_last_selfattention(x)
        hook.remove()
        nt = attn.shape[2]
        k = feat["qkv"].reshape(3, nt, 3, 6, -1).permute(2, 0, 3, 1, 4)[1].transpose(1, 2).reshape(3, nt, -1)
        torch.testing.assert_close(out.keys, k[:, 1:], atol=0, rtol=0)
        torch.testing.assert_close(out.attn.flatten(1), attn[:, 4, 0, 1:], atol=0, rtol=0)
        torch.testing.assert_close(out.features, ref(x), atol=0, rtol=0)
        if hw != (32, 32):  # timm resamples with antialias: only the trained grid agrees
            assert (timm_way(x, return_keys=True).keys - out.keys).abs().max() > 1e-4


def test_pos_interp_and_fused_attn_requests():
    m = build_model(VIT, pool="cls", variant="dino", img_size=32, pos_interp="dino", **VIT_KW)
    assert m.pos_interp == "dino" and all(b.attn.fused_attn == timm.layers.use_fused_attn() for b in m.blocks)
    assert not any(b.attn.fused_attn for b in build_model(VIT, img_size=32, fused_attn=False, **VIT_KW).blocks)
    with pytest.raises(SimpoolBenchError, match="pos_interp 'bilinear'"):
        build_model(VIT, img_size=32, pos_interp="bilinear", **VIT_KW)
    with pytest.raises(SimpoolBenchError, match="ViTs only"):
        build_model("resnet18", pool="gap", pos_interp="dino")
    with pytest.raises(SimpoolBenchError, match="ViTs only"):
        build_model("resnet18", pool="gap", fused_attn=False)


def test_a_numpy_float32_gamma_is_named_as_such_not_called_non_positive():
    """``gamma=np.float32(1.25)`` was refused as 'expected a positive number' (it is one): a float32
    exponent is not the decimal it prints as (``np.float32(1.1)`` is 1.100000023841858), so it stays
    refused, the message naming its type; a numpy float64 (a Python float) and an int pass."""
    import numpy as np

    from simpool_bench.models.build import resolve_gamma

    with pytest.raises(SimpoolBenchError, match=r"gamma np\.float32\(1\.25\): a numpy\.float32; expected a Python int or float"):
        resolve_gamma(np.float32(1.25), "vit", "simpool")
    with pytest.raises(SimpoolBenchError, match=r"gamma -1\.0: expected a positive number or 'none'"):
        resolve_gamma(-1.0, "vit", "simpool")
    assert resolve_gamma(np.float64(1.25), "vit", "simpool") == 1.25 and resolve_gamma(2, "resnet", "simpool") == 2.0
    for bad in (float("inf"), "inf", 0, 0.0, "0"):  # x ** inf, x ** (1 / 0): no power mean
        with pytest.raises(SimpoolBenchError, match=r"expected a positive number or 'none'"):
            resolve_gamma(bad, "vit", "simpool")
