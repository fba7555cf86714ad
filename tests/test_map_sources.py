"""Model families and map sources (map, rollout, gradcam) against timm's own models and literal
re-implementations of the references, on tiny random models (nothing downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.families import FAMILIES, source_applies
from simpool_bench.models import build_model

NC = 5
VIT_KW = dict(depth=3, embed_dim=32, num_heads=2, img_size=32, patch_size=8)
CNN_IN = (2, 3, 64, 64)
VIT_IN = (2, 3, 32, 48)  # a non-square grid (4 x 6)


def _randomize(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (timm zero-inits some heads and latents)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.ndim > 1:
                p.copy_(r * 1.5 / max(1, p[0].numel()) ** 0.5)
            else:
                p.copy_(1.0 + 0.1 * r if name.endswith("weight") else 0.1 * r)


def _plain(arch: str, model: nn.Module, **kw) -> nn.Module:
    """timm's own model with ``model``'s weights."""
    net = timm.create_model(arch, pretrained=False, num_classes=NC, **kw).eval()
    net.load_state_dict(model.state_dict())
    return net


# ------------------------------------------------------------------------------------ families
FAMILY_CASES = [
    ("vit_tiny_patch16_224", dict(pool="cls", **VIT_KW), dict(global_pool="token", dynamic_img_size=True, **VIT_KW)),
    ("vit_tiny_patch16_224", dict(pool="map", **VIT_KW), dict(global_pool="map", dynamic_img_size=True, **VIT_KW)),
    ("vit_small_patch8_224", dict(pool="gap", **{**VIT_KW, "patch_size": 8}), dict(global_pool="avg", dynamic_img_size=True, **VIT_KW)),
    ("deit_tiny_patch16_224", dict(pool="cls", **VIT_KW), dict(dynamic_img_size=True, **VIT_KW)),
    ("deit_tiny_distilled_patch16_224", dict(pool="cls", **VIT_KW), dict(dynamic_img_size=True, **VIT_KW)),
    ("resnet18", dict(pool="gap", drop_rate=0.5), dict(drop_rate=0.5)),  # dropout before the classifier: off at eval
    ("convnext_atto", dict(pool="gap", drop_rate=0.5), dict(drop_rate=0.5)),
    ("efficientnet_b0", dict(pool="gap", drop_rate=0.5), dict(drop_rate=0.5)),
    ("regnetx_002", dict(pool="gap", drop_rate=0.5), dict(drop_rate=0.5)),
]


@pytest.mark.parametrize("arch,kw,timm_kw", FAMILY_CASES, ids=[f"{a}-{k['pool']}" for a, k, _ in FAMILY_CASES])
def test_every_family_gives_timms_logits(arch, kw, timm_kw):
    model = build_model(arch, num_classes=NC, **kw).eval()
    _randomize(model)
    plain = _plain(arch, model, **timm_kw)
    x = torch.randn(*(VIT_IN if "pool" in kw and arch.startswith(("vit", "deit")) else CNN_IN))
    with torch.no_grad():
        out = model(x)
        want = plain(x)
    assert torch.equal(out.logits, want)
    with torch.no_grad():  # the features (k-NN's): timm's pre-logits (a distilled DeiT: the mean of its two tokens)
        assert torch.equal(out.features, plain.forward_head(plain.forward_features(x), pre_logits=True))
    if kw["pool"] != "gap" or not arch.startswith("vit"):  # a GAP ViT has no map of its own (cls/rollout/gradcam on request)
        assert out.attn is not None and out.attn.shape[0] == 2 and torch.isfinite(out.attn).all()
        assert out.attn.shape[1:] == (x.shape[-2] // model.stride, x.shape[-1] // model.stride)  # the grid, rows first


@pytest.mark.parametrize("arch", ["efficientnet_b0", "regnetx_002"])
def test_generic_cnn_simpool_and_cam(arch):
    """SimPool sits where timm's global pool was; CAM is wsolevaluation's on timm's feature map."""
    m = build_model(arch, pool="simpool", num_classes=NC).eval()
    key = FAMILIES[m.family].simpool_supervised
    assert any(k.startswith(key) for k in m.state_dict())
    x = torch.randn(*CNN_IN)
    with torch.no_grad():
        out = m(x)
    assert torch.allclose(out.attn.sum(dim=(1, 2)), torch.ones(2))
    seen = {}  # on a non-square map: SimPool's attention over the feature map's H*W, read row-major
    m.simpool_layer.register_forward_hook(lambda mod, i, o: seen.update(f=i[0], a=o[1]))
    with torch.no_grad():
        wide = m(torch.randn(2, 3, 64, 96))
    assert seen["f"].shape[-2:] == (2, 3) and torch.equal(wide.attn, seen["a"][:, 0].reshape(2, 2, 3))
    gap = build_model(arch, pool="gap", num_classes=NC, attn_source="cam").eval()
    _randomize(gap, 1)
    plain = _plain(arch, gap)
    with torch.no_grad():
        out = gap(x)
        feats = plain.forward_features(x)
        cls = plain(x).argmax(1)
    w = plain.get_classifier().weight[cls]
    assert torch.equal(out.attn, (w[:, :, None, None] * feats).mean(1))


def test_pool_and_source_rules_are_one_clear_error():
    with pytest.raises(SimpoolBenchError, match="pool 'map' needs a ViT"):
        build_model("resnet18", pool="map")
    with pytest.raises(SimpoolBenchError, match="'map' needs a ViT with timm's attention-pool head"):
        build_model("vit_tiny_patch16_224", pool="cls", attn_source="map", **VIT_KW)
    with pytest.raises(SimpoolBenchError, match="a resnet has no 'rollout' map"):
        build_model("resnet18", pool="gap", attn_source="rollout")
    with pytest.raises(SimpoolBenchError, match="distilled DeiT"):
        build_model("deit_tiny_distilled_patch16_224", pool="gap", **VIT_KW)
    with pytest.raises(SimpoolBenchError, match="'gradcam' needs a classifier"):
        build_model("resnet18", pool="gap", variant="dino", attn_source="gradcam")
    with pytest.raises(SimpoolBenchError, match="--rollout-fusion 'median'"):
        build_model("vit_tiny_patch16_224", pool="cls", attn_source="rollout", rollout_fusion="median", **VIT_KW)
    assert source_applies("vit", "simpool", "rollout", has_cls_token=False, has_classifier=True) is None


def test_family_table_agrees_with_timms_models():
    """Each family's classifier key is timm's own (its pretrained config's ``classifier``), and its
    key signature tells its models' state dicts, and only them (all signature keys, not any one);
    'cam' needs a classifier."""
    from simpool_bench.families import EXAMPLE_ARCHS, family_of_state_dict

    for arch in EXAMPLE_ARCHS:
        net = timm.create_model(arch, pretrained=False, num_classes=10, device="meta")
        fam = next(f for f in FAMILIES.values() if f.name == family_of_state_dict(net.state_dict()))
        assert fam.classifier == net.pretrained_cfg["classifier"] + ".weight" and fam.classifier in net.state_dict(), arch
    assert family_of_state_dict(["blocks.0.conv_pw.weight", "head.fc.weight"]) is None  # efficientnet's blocks. alone
    assert family_of_state_dict(["conv1.weight", "fc.weight"]) is None  # a resnet has layer4 too
    assert family_of_state_dict(["conv_stem.weight", "classifier.weight"]) is None  # an efficientnet has blocks. too
    why = source_applies("resnet", "gap", "cam", has_cls_token=False, has_classifier=False)
    assert why == "'cam' needs a GAP CNN with a classifier, not pool='gap' without a classifier"
    why = source_applies("vit", "cls", "simpool", has_cls_token=True, has_classifier=True)
    assert why == "'simpool' needs pool='simpool', not pool='cls'"


@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "resnet18", "convnext_atto", "efficientnet_b0", "regnetx_002"])
def test_supervised_simpool_sits_where_its_family_says(arch):
    """Each family's ``simpool_supervised`` prefix is where build_model puts SimPool (the official
    supervised layouts: ViT ``gp.pool.``, ResNet ``global_pool.pool.``, ConvNeXt ``head.global_pool.pool.``)."""
    from simpool_bench.families import family_of_state_dict

    keys = build_model(arch, pool="simpool", num_classes=3, **(VIT_KW if arch.startswith("vit") else {})).state_dict()
    fam = FAMILIES[family_of_state_dict(keys)]
    assert f"{fam.simpool_supervised}wq.weight" in keys


# ------------------------------------------------------------------------------------ map
def latent_pool_reference(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm AttentionPoolLatent.forward's non-fused branch, up to its softmax, line for line."""
    B, N, C = x.shape
    if pool.pos_embed is not None:
        x = x + pool.pos_embed.unsqueeze(0).to(x.dtype)
    q_latent = pool.latent.expand(B, -1, -1)
    q = pool.q(q_latent).reshape(B, pool.latent_len, pool.num_heads, pool.head_dim).transpose(1, 2)
    kv = pool.kv(x).reshape(B, N, 2, pool.num_heads, pool.head_dim).permute(2, 0, 3, 1, 4)
    k, v = kv.unbind(0)
    q, k = pool.q_norm(q), pool.k_norm(k)
    q = q * pool.scale
    attn = q @ k.transpose(-2, -1)
    return attn.softmax(dim=-1)


@pytest.mark.parametrize("class_token", [True, False])
def test_map_source_equals_attention_pool_latent(class_token):
    kw = dict(pool="map", **VIT_KW) if class_token else dict(pool="map", class_token=False, **VIT_KW)
    model = build_model("vit_tiny_patch16_224", num_classes=NC, attn_source="map", **kw).eval()
    _randomize(model, 2)
    plain = _plain("vit_tiny_patch16_224", model, global_pool="map", dynamic_img_size=True, class_token=class_token, **VIT_KW)
    seen = {}
    plain.attn_pool.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    x = torch.randn(*VIT_IN)
    with torch.no_grad():
        out = model(x)
        logits = plain(x)
        ref = latent_pool_reference(plain.attn_pool, seen["x"]).mean(dim=(1, 2)).reshape(2, 4, 6)
    assert torch.equal(out.logits, logits)
    assert torch.equal(out.attn, ref)
    assert torch.allclose(out.attn.sum(dim=(1, 2)), torch.ones(2))


def test_latent_pool_attention_adds_the_pools_own_position_embedding():
    """An ``AttentionPoolLatent`` built with ``pos_embed='abs'`` adds its embedding to the tokens
    before k (timm's forward): the map is that of the embedded tokens."""
    from timm.layers import AttentionPoolLatent

    from simpool_bench.map_sources import latent_pool_attention

    torch.manual_seed(0)
    pool = AttentionPoolLatent(8, num_heads=2, feat_size=5, pos_embed="abs").eval()
    with torch.no_grad():
        pool.pos_embed.normal_(0, 1.0)
        x = torch.randn(2, 5, 8)
        got, want = latent_pool_attention(pool, x), latent_pool_reference(pool, x)
        pool.pos_embed.zero_()
        assert not torch.allclose(got, latent_pool_reference(pool, x))  # the embedding matters here
    assert torch.equal(got, want)


def test_latent_pool_attention_applies_the_pools_q_and_k_norms():
    """An ``AttentionPoolLatent`` built with ``qk_norm=True`` normalises q and k before the product
    (timm's forward); the ViTs of the other tests have Identity norms there."""
    from timm.layers import AttentionPoolLatent

    from simpool_bench.map_sources import latent_pool_attention

    pool = AttentionPoolLatent(8, num_heads=2, qk_norm=True).eval()
    _randomize(pool, 9)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        got, want = latent_pool_attention(pool, x), latent_pool_reference(pool, x)
        pool.q_norm, pool.k_norm = nn.Identity(), nn.Identity()
        assert not torch.allclose(got, latent_pool_reference(pool, x), atol=1e-4)  # the norms matter here
    assert torch.equal(got, want)


# ------------------------------------------------------------------------------------ rollout
def rollout_reference(attentions, discard_ratio, head_fusion, num_prefix):
    """jacobgil/vit-explain ``rollout`` per image, with the paper's row normalisation (keepdim)."""
    out = []
    for b in range(attentions[0].shape[0]):
        result = torch.eye(attentions[0].size(-1))
        with torch.no_grad():
            for attention in attentions:
                attention = attention[b : b + 1]
                if head_fusion == "mean":
                    attention_heads_fused = attention.mean(axis=1)
                elif head_fusion == "max":
                    attention_heads_fused = attention.max(axis=1)[0]
                else:
                    attention_heads_fused = attention.min(axis=1)[0]
                flat = attention_heads_fused.view(attention_heads_fused.size(0), -1)
                _, indices = flat.topk(int(flat.size(-1) * discard_ratio), -1, False)
                indices = indices[indices != 0]
                flat[0, indices] = 0
                I = torch.eye(attention_heads_fused.size(-1))  # noqa: E741 (reference text)
                a = (attention_heads_fused + 1.0 * I) / 2
                a = a / a.sum(dim=-1, keepdim=True)
                result = torch.matmul(a, result)
        out.append(result[0, 0, num_prefix:] if num_prefix else result[0].mean(dim=0))
    return torch.stack(out)


@pytest.mark.parametrize("pool", ["cls", "simpool", "map"])
@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.9), ("min", 0.5)])
def test_rollout_equals_vit_explain_on_timms_attention(pool, fusion, discard):
    model = build_model(
        "vit_tiny_patch16_224", pool=pool, num_classes=NC, attn_source="rollout", rollout_fusion=fusion, rollout_discard=discard, **VIT_KW
    ).eval()
    _randomize(model, 3)
    # vit-explain's way to get the attentions: hooks on timm's (non-fused) attn_drop
    attns = []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, i, o: attns.append(o.detach()))
    x = torch.randn(*VIT_IN)
    with torch.no_grad():
        out = model(x)
    attns = attns[-len(model.blocks) :]  # the hooks saw timm's own forward of every block
    ref = rollout_reference(attns, discard, fusion, model.num_prefix_tokens).reshape(2, 4, 6)
    assert torch.equal(out.attn, ref)
    for blk in model.blocks:
        blk.attn.fused_attn = True
    with torch.no_grad():
        fused = model(x)
    assert torch.allclose(fused.attn, ref, rtol=1e-5, atol=1e-7) and torch.equal(fused.attn, model(x).attn)


# ------------------------------------------------------------------------------------ gradcam
def gradcam_reference(plain: nn.Module, layer: nn.Module, x: torch.Tensor, classes, reshape=None):
    """pytorch-grad-cam GradCAM (ActivationsAndGradients hooks, ClassifierOutputTarget summed,
    backward, mean-of-gradients weights, weighted sum, ReLU), its raw map before scaling."""
    store = {}

    def save(m, i, output):
        store["a"] = reshape(output) if reshape else output

        def keep(grad):
            store["g"] = reshape(grad) if reshape else grad

        output.register_hook(keep)

    h = layer.register_forward_hook(save)
    outputs = plain(x)
    h.remove()
    plain.zero_grad()
    loss = sum(output[c] for c, output in zip(classes, outputs))
    loss.backward(retain_graph=True)
    weights = store["g"].detach().mean(dim=(2, 3))
    cam = (weights[:, :, None, None] * store["a"].detach()).sum(dim=1)
    return cam.clamp_min(0.0)


GRADCAM_CASES = [
    ("resnet18", dict(pool="gap"), {}, "layer4"),
    ("convnext_atto", dict(pool="gap"), {}, "norm_pre"),
    ("efficientnet_b0", dict(pool="gap"), {}, "bn2"),
    ("regnetx_002", dict(pool="gap"), {}, "final_conv"),
    ("vit_tiny_patch16_224", dict(pool="cls", **VIT_KW), dict(global_pool="token", dynamic_img_size=True, **VIT_KW), "blocks.-1.norm1"),
    ("deit_tiny_patch16_224", dict(pool="gap", **VIT_KW), dict(global_pool="avg", dynamic_img_size=True, **VIT_KW), "blocks.-1.norm1"),
]


GRADCAM_RUNS = [(*c, False) for c in GRADCAM_CASES] + [(*GRADCAM_CASES[0], True), (*GRADCAM_CASES[4], True)]


@pytest.mark.parametrize(
    "arch,kw,timm_kw,layer,given_target", GRADCAM_RUNS, ids=[f"{c[0]}-{'gt' if c[-1] else 'pred'}" for c in GRADCAM_RUNS]
)
def test_gradcam_equals_pytorch_grad_cam_literal(arch, kw, timm_kw, layer, given_target):
    from simpool_bench.map_sources import resolve_layer

    model = build_model(arch, num_classes=NC, attn_source="gradcam", **kw).eval()
    _randomize(model, 4)
    plain = _plain(arch, model, **timm_kw)
    vit = arch.startswith(("vit", "deit"))
    x = torch.randn(*(VIT_IN if vit else CNN_IN))
    with torch.inference_mode():  # as the engine runs it, target made there too
        target = torch.tensor([3, 1]) if given_target else None
        out = model(x, target=target)
    classes = target.tolist() if given_target else plain(x).argmax(1).tolist()
    reshape = (lambda t: t[:, 1:].reshape(t.shape[0], 4, 6, t.shape[-1]).permute(0, 3, 1, 2)) if vit else None
    ref = gradcam_reference(plain, resolve_layer(plain, layer), x, classes, reshape)
    assert torch.equal(out.attn, ref)
    assert not out.logits.requires_grad and torch.equal(out.logits, plain(x).detach())


def test_localize_takes_cams_of_the_gt_class_or_of_the_prediction(tmp_path):
    """wsolevaluation scores the CAM of the ground-truth class: every map localize scores must be
    the model's CAM for the image's label (``cam_target='gt'``), or for its predicted class with
    'pred'; computed here by calling the model directly on the protocol's transform."""
    from PIL import Image

    from simpool_bench import api, tasks
    from simpool_bench.data.records import Record
    from simpool_bench.transforms import wsol_transform

    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)).save(path)
        records.append(Record(path.name, str(path), int(rng.integers(0, 3)), 48, 40 + i, np.array([[2.0, 3.0, 30.0, 25.0]])))
    net, _ = api.load_model(api.ModelOptions(arch="resnet18", pool="gap", random_init=True, num_classes=3))
    assert net.attn_source == "cam"
    transform = wsol_transform(net.data_config["mean"], net.data_config["std"])
    x = torch.stack([transform(Image.open(r.path).convert("RGB")) for r in records])
    labels = torch.tensor([r.label for r in records])
    with torch.no_grad():
        pred = net(x).logits.argmax(dim=1)
        want = {"gt": net(x, target=labels).attn.numpy(), "pred": net(x, target=pred).attn.numpy()}
    assert (pred != labels).any()  # else gt and pred would not tell apart
    engine = api.EngineConfig(device="cpu", batch_size=5, workers=0, progress=False)
    for target, expected in want.items():
        got = np.zeros_like(expected)

        def keep(idx, maps, got=got):
            got[np.asarray(idx)] = maps

        tasks.localize(net, records, engine, cam_target=target, interval=0.01, on_maps=keep)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=target)
    differ = [i for i in range(12) if pred[i] != labels[i]]
    assert not np.allclose(want["gt"][differ], want["pred"][differ])


def test_gt_cams_need_every_image_labelled_else_the_prediction_is_used():
    """``cam_target='gt'`` passes the labels as CAM targets only when every image has one: a label
    of -1 (no class) would otherwise index the last class's CAM; then every image takes its
    prediction (target None), as with 'pred'."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.tasks.wsol import WsolTask

    def records(labels):
        return [Record(f"{i}", Path(f"{i}.jpg"), lab, 10, 10, np.array([[0.0, 0.0, 5.0, 5.0]])) for i, lab in enumerate(labels)]

    seen = []

    def model(x, target=None):
        seen.append(None if target is None else target.tolist())

    x = torch.zeros(2, 3, 4, 4)
    WsolTask(records([2, 0, 1]), cam_target="gt").forward()(model, x, np.array([2, 0]))
    WsolTask(records([2, -1, 1]), cam_target="gt").forward()(model, x, np.array([2, 0]))
    WsolTask(records([2, 0, 1]), cam_target="pred").forward()(model, x, np.array([2, 0]))
    assert seen == [[1, 2], None, None]


# ------------------------------------------------------------------------------------ wsolevaluation CAM, end to end
def _wsolevaluation_tables(image_root, meta, net, interval, cam_target, batch_size):
    """clovaai/wsolevaluation's own pipeline, literally: ``data_loaders.py`` (its readers and test
    transform: Resize((224, 224)) on the PIL image, ToTensor, Normalize with its fixed ImageNet
    statistics), ``wsol/resnet.py`` ``ResNetCam.forward(return_cam=True)`` (layer4's output, after
    its last ReLU, times ``fc.weight[labels]``, mean over channels; the bias ignored),
    ``inference.py`` ``CAMComputer`` (``t2n``, ``cv2.resize(cam, images.shape[2:], INTER_CUBIC)``,
    ``normalize_scoremap``) and ``evaluation.py`` ``BoxEvaluator`` (``resize_bbox``,
    ``compute_bboxes_from_scoremaps``, ``calculate_multiple_iou``, the sliced max, ``compute``),
    for ``multi_contour_eval`` True (V2) and False (V1). Top-1 Loc as the maintainers describe it
    (issues #14, #50): an image counts when its box is right at IoU 50 AND its prediction is.
    ``cam_target``: 'gt' passes the loader's targets as the reference does; 'pred' the predictions."""
    import os

    import cv2
    from PIL import Image
    from torchvision import transforms

    import boxacc_oracle as oracle

    def lines(name):
        with open(os.path.join(meta, name)) as f:
            return [line.strip("\n") for line in f.readlines()]

    image_ids = lines("image_ids.txt")
    class_labels = {i: int(c) for i, c in (line.split(",") for line in lines("class_labels.txt"))}
    image_sizes = {i: (int(w), int(h)) for i, w, h in (line.split(",") for line in lines("image_sizes.txt"))}
    boxes = {}
    for line in lines("localization.txt"):
        image_id, x0s, x1s, y0s, y1s = line.split(",")
        boxes.setdefault(image_id, []).append((int(x0s), int(x1s), int(y0s), int(y1s)))

    def resize_bbox(box, image_size, resize_size):
        box_x0, box_y0, box_x1, box_y1 = map(float, box)
        image_w, image_h = map(float, image_size)
        new_image_w, new_image_h = map(float, resize_size)
        return (
            int(box_x0 * new_image_w / image_w),
            int(box_y0 * new_image_h / image_h),
            int(box_x1 * new_image_w / image_w),
            int(box_y1 * new_image_h / image_h),
        )

    gt_bboxes = {i: [resize_bbox(b, image_sizes[i], (224, 224)) for b in boxes[i]] for i in image_ids}
    transform = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )

    cam_threshold_list = list(np.arange(0, 1, interval))
    iou_threshold_list = [30, 50, 70]
    scoremaps, raw_cams, cls_right = {}, [], {}
    for s in range(0, len(image_ids), batch_size):
        batch = image_ids[s : s + batch_size]
        images = torch.stack([transform(Image.open(os.path.join(image_root, i)).convert("RGB")) for i in batch])
        targets = torch.tensor([class_labels[i] for i in batch])
        image_size = images.shape[2:]
        with torch.no_grad():
            x = net.maxpool(net.act1(net.bn1(net.conv1(images))))
            x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
            logits = net.fc(net.global_pool(x))
            labels = targets if cam_target == "gt" else logits.argmax(dim=1)
            feature_map = x.detach().clone()
            cam_weights = net.fc.weight[labels]
            cams = (cam_weights.view(*feature_map.shape[:2], 1, 1) * feature_map).mean(1, keepdim=False)
        cams = cams.detach().cpu().numpy().astype(np.float64)  # t2n
        for cam, image_id, right in zip(cams, batch, (logits.argmax(dim=1) == targets).tolist()):
            raw_cams.append(cam.astype(np.float32))
            scoremaps[image_id] = oracle.normalize_scoremap(cv2.resize(cam, image_size, interpolation=cv2.INTER_CUBIC))
            cls_right[image_id] = right

    tables = {}
    for multi_contour_eval in (True, False):
        num_correct = {t: np.zeros(len(cam_threshold_list)) for t in iou_threshold_list}
        num_top1 = np.zeros(len(cam_threshold_list))
        cnt = 0
        for image_id in image_ids:
            u8 = oracle.quantise(scoremaps[image_id])
            boxes_at_thresholds = [oracle.boxes_at_threshold(u8, t, multi_contour_eval) for t in cam_threshold_list]
            number_of_box_list = [len(b) for b in boxes_at_thresholds]
            multiple_iou = oracle.calculate_multiple_iou(np.concatenate(boxes_at_thresholds, axis=0), np.array(gt_bboxes[image_id]))
            idx, sliced_multiple_iou = 0, []
            for nr_box in number_of_box_list:
                sliced_multiple_iou.append(max(multiple_iou.max(1)[idx : idx + nr_box]))
                idx += nr_box
            for threshold in iou_threshold_list:
                correct = np.where(np.asarray(sliced_multiple_iou) >= (threshold / 100))[0]
                num_correct[threshold][correct] += 1
                if threshold == 50 and cls_right[image_id]:
                    num_top1[correct] += 1
            cnt += 1
        tables[multi_contour_eval] = [(num_correct[t] * 100.0 / float(cnt)).max() for t in iou_threshold_list]
        if multi_contour_eval:  # the best t (the first reaching the max, np.argmax) of each curve
            tables["best"] = [cam_threshold_list[int(np.argmax(num_correct[t]))] for t in iou_threshold_list]
        tables["top1"] = (num_top1 * 100.0 / float(cnt)).max()
    return tables, np.stack(raw_cams)


@pytest.mark.parametrize("cam_target", ["gt", "pred"])
def test_localize_cam_table_is_wsolevaluations_to_the_bit(cam_target, make_wsol_dataset, tmp_path):
    """``localize`` of a ResNet's CAMs against wsolevaluation's whole pipeline (above), on JPEGs of
    odd sizes (40-79 x 36-69), one image greyscale, several GT boxes per image, one of them the
    whole image (its resized box reaches 224): every raw CAM and every number of the table
    (MaxBoxAcc at 30/50/70, MaxBoxAccV2, the best thresholds, V1, GT-known and Top-1 Loc) bit for bit."""
    from PIL import Image

    from simpool_bench import api, tasks
    from simpool_bench.data.wsol import read_wsol_metadata

    data = make_wsol_dataset(tmp_path, n=17, seed=3)
    ids = (data.metadata / "image_ids.txt").read_text().splitlines()
    Image.open(data.image_root / ids[0]).convert("L").save(data.image_root / ids[0], format="JPEG")
    w, h = next(line.split(",")[1:] for line in (data.metadata / "image_sizes.txt").read_text().splitlines() if line.startswith(ids[3]))
    with open(data.metadata / "localization.txt", "a") as f:  # a third box for image 3 (it has two): the whole image
        f.write(f"{ids[3]},0,0,{w},{h}\n")
    torch.manual_seed(0)
    net, _ = api.load_model(api.ModelOptions(arch="resnet18", pool="gap", random_init=True, num_classes=3))
    _randomize(net, 2)
    net.eval()
    assert net.attn_source == "cam" and tuple(net.data_config["mean"]) == (0.485, 0.456, 0.406)
    interval, bs = 0.01, 5
    want, want_cams = _wsolevaluation_tables(data.image_root, data.metadata, net, interval, cam_target, bs)

    records = read_wsol_metadata(data.metadata, data.image_root)
    assert max(len(r.boxes) for r in records) == 3
    got_cams = np.zeros_like(want_cams)

    def keep(idx, maps):
        got_cams[np.asarray(idx)] = maps

    engine = api.EngineConfig(device="cpu", batch_size=bs, workers=0, progress=False)
    out = tasks.localize(net, records, engine, interval=interval, v1=True, cam_target=cam_target, on_maps=keep)
    got = {(r["metric"], r["iou_threshold"]): r["value"] for r in out.rows}
    assert np.array_equal(got_cams, want_cams)
    assert [got[("maxboxacc", t)] for t in (30, 50, 70)] == want[True]
    assert got[("maxboxacc_v2", None)] == np.average(want[True])
    assert [got[("best_threshold", t)] for t in (30, 50, 70)] == want["best"]
    assert got[("maxboxacc_v1", 50)] == want[False][1]
    assert got[("gt_known_loc", 50)] == want[True][1]
    assert got[("top1_loc", 50)] == want["top1"]
    assert 0 < want["top1"] <= want[True][1] < 100 and len(set(want[True])) == 3  # the numbers tell things apart


# ------------------------------------------------------------------------------------ mutation-testing gaps
@pytest.mark.parametrize("n,fusion,discard", [(5, "mean", 0.3), (5, "max", 0.9), (7, "min", 0.5), (6, "mean", 0.0)])
def test_rollout_equals_vit_explain_on_small_random_attention(n, fusion, discard):
    """``attention_rollout`` itself against vit-explain at sizes where ``int(N*N*ratio)`` is not the
    rounded count (25 * 0.3 = 7.5: 7 discarded, not 8) and with entry (0, 0) the lowest of every
    block (vit-explain never discards it), with and without prefix tokens."""
    from simpool_bench.map_sources import attention_rollout

    g = torch.Generator().manual_seed(n)
    attns = [torch.rand(2, 3, n, n, generator=g).softmax(dim=-1) for _ in range(3)]
    for a in attns:
        a[:, :, 0, 0] = 1e-4
    for num_prefix in (1, 0):
        got = attention_rollout([a.clone() for a in attns], num_prefix, fusion, discard)
        assert torch.equal(got, rollout_reference([a.clone() for a in attns], discard, fusion, num_prefix))
    # the defaults are the paper's: head mean, nothing discarded
    assert torch.equal(attention_rollout(attns, 1), rollout_reference(attns, 0.0, "mean", 1))


def test_rollout_options_are_checked():
    from simpool_bench.map_sources import attention_rollout, check_rollout_options

    for fusion, discard in (("sum", 0.0), ("mean", 1.0), ("mean", -0.1)):
        with pytest.raises(SimpoolBenchError, match="rollout"):
            check_rollout_options(fusion, discard)
    with pytest.raises(SimpoolBenchError, match="rollout"):
        attention_rollout([torch.ones(1, 1, 2, 2)], 1, "mean", 1.0)


def test_block_attention_is_timms_at_a_scale_that_is_no_power_of_two():
    """timm scales q before the product (``(q * scale) @ k^T``); at head_dim 12 the scale 12**-0.5
    is inexact, so scaling after the product would give other bits."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    from simpool_bench.map_sources import block_attention, standard_attention

    blk = Block(24, 2, qkv_bias=True, qk_norm=True).eval()
    _randomize(blk, 7)
    blk.attn.fused_attn = False
    seen = []
    blk.attn.attn_drop.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    t = torch.randn(2, 9, 24, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        blk(t)
        got = block_attention(blk, t)
    assert torch.equal(got, seen[0])
    gated = nn.Module()
    gated.attn = Attention(24, 2, gated=True)  # a gate on the output: the softmax is not its mixing
    with pytest.raises(SimpoolBenchError, match="standard timm ViT blocks"):
        standard_attention(gated, "gated")


def test_family_table_is_its_documented_table_and_each_rule_has_its_reason():
    """``families.FAMILIES`` against the table in that module's docstring (the README's), module
    names to families, and each ``source_applies`` rule."""
    from simpool_bench import families
    from simpool_bench.families import CNN_FAMILIES, family_of_module

    lines = families.__doc__.splitlines()
    ruler = next(i for i, line in enumerate(lines) if line.startswith("====="))
    cols = [i for i, ch in enumerate(lines[ruler]) if ch == "=" and (i == 0 or lines[ruler][i - 1] == " ")]
    rows = lines[ruler + 3 : ruler + 3 + len(FAMILIES)]
    documented = {r[: cols[1]].strip(): (tuple(r[cols[2] : cols[3]].split()), tuple(r[cols[3] :].split())) for r in rows}
    assert documented == {f.name: (f.pools, f.sources) for f in FAMILIES.values()}
    assert tuple(n for n in documented if n != "vit") == CNN_FAMILIES
    modules = ("vision_transformer", "deit", "resnet", "convnext", "efficientnet", "regnet", "swin_transformer")
    assert [family_of_module(m) for m in modules] == ["vit", "vit", "resnet", "convnext", "efficientnet", "regnet", None]

    def why(family, pool, source, cls=False, classifier=True):
        return source_applies(family, pool, source, has_cls_token=cls, has_classifier=classifier)

    assert why("resnet", "gap", "cls") == "a resnet has no 'cls' map (its sources: simpool, cam, gradcam)"
    assert why("vit", "simpool", "cls").startswith("'cls' needs a ViT with a CLS token")
    assert why("vit", "cls", "map", cls=True).startswith("'map' needs a ViT with timm's attention-pool head")
    assert why("resnet", "simpool", "cam") == "'cam' needs a GAP CNN with a classifier, not pool='simpool'"
    assert why("convnext", "gap", "gradcam", classifier=False).startswith("'gradcam' needs a classifier")
    ok = [("vit", "cls", "cls", True), ("vit", "map", "map", True), ("vit", "simpool", "simpool", False), ("resnet", "gap", "cam", False)]
    ok += [(f, "gap", "gradcam", f == "vit") for f in FAMILIES]
    assert all(why(f, p, s, cls=c) is None for f, p, s, c in ok)
