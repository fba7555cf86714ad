"""Checkpoint formats, key remapping and safe loading (simpool_bench/checkpoints.py).

Every official layout is written here the way its trainer writes it (container entries and key names
as in timm train.py's CheckpointSaver and DINO main_dino.py), then read back through auto-detection
and loaded into a fresh model, which must reproduce the source model's outputs exactly. Tiny models
(timm kwargs shrink depth/width), CPU only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pathlib
import pickle
import struct
import zipfile

import pytest
import timm
import torch
from safetensors.torch import save_file

from simpool_bench.checkpoints import (
    FORMATS,
    UNSET,
    LoadedCheckpoint,
    infer_arch,
    infer_pool,
    inspect_checkpoint,
    is_dino_backbone,
    load_checkpoint,
    load_into,
    resolve_spec,
)
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.files import sha256_file
from simpool_bench.models import build_model

from conftest import build_image_folder, build_tiny_checkpoint, invoke_cli, said

# Tiny stand-ins for the real architectures (the names are the real timm names).
TINY = {
    "vit_small_patch16_224": dict(img_size=32, embed_dim=32, depth=2, num_heads=2),
    "resnet18": dict(channels=(8, 16, 16, 16), stem_width=8),
    "convnext_tiny": dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)),
}
IMG = {"vit_small_patch16_224": 32, "resnet18": 64, "convnext_tiny": 64}


def tiny(arch: str, seed: int, **kw) -> torch.nn.Module:
    """A tiny model with every float tensor randomised (LayerNorm/beta included) from ``seed``."""
    m = build_model(arch, **kw, **TINY[arch])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in m.state_dict().items():
            if not v.is_floating_point():
                continue
            r = torch.randn(v.shape, generator=g) * 0.2
            v.copy_(r.abs() + 0.5 if k.endswith("running_var") else r + (1.0 if k.endswith(("norm.weight", "bn1.weight")) else 0.0))
    return m.eval()


def rebuild(expect_arch: str, ckpt: LoadedCheckpoint, **flags) -> torch.nn.Module:
    """The model the loader's answers describe, with the checkpoint loaded (as the CLI does)."""
    a, pool, gamma, variant = resolve_spec(ckpt, **flags)
    assert a == expect_arch
    arch = a
    m = build_model(
        a,
        pool=pool,
        gamma=gamma,
        variant=variant,
        use_beta=ckpt.has_beta,
        num_classes=ckpt.num_classes or 0,
        **{**TINY[arch], **ckpt.model_kwargs},  # what the file says wins
    )
    load_into(m, ckpt)
    return m.eval()


def _rebuild_as(arch: str, ckpt: LoadedCheckpoint) -> torch.nn.Module:
    """Build ``arch`` (the tiny layout) with the checkpoint's pool/gamma/variant, bypassing its arch name."""
    m = build_model(arch, pool=ckpt.pool, gamma=ckpt.gamma, variant=ckpt.variant, use_beta=ckpt.has_beta, **TINY[arch])
    load_into(m, ckpt)
    return m.eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, arch: str) -> bool:
    x = torch.randn(3, 3, IMG[arch], IMG[arch], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        oa, ob = a(x), b(x)

    def eq(u, v):
        return (u is None and v is None) or (u is not None and v is not None and torch.equal(u, v))

    return eq(oa.features, ob.features) and eq(oa.attn, ob.attn) and eq(oa.logits, ob.logits)


def adamw_state(model: torch.nn.Module) -> dict:
    """A real optimizer state dict (tensors, param groups), as the trainers save it."""
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return opt.state_dict()


def timm_train_args(**kw) -> argparse.Namespace:
    """An argparse.Namespace like the SimPool timm fork's train.py pickles (a realistic subset)."""
    base = dict(
        data=None,
        data_dir="/data/imagenet",
        dataset="torch/folder",
        train_split="train",
        val_split="validation",
        subset=-1,
        model="vit_small_patch16_224",
        pretrained=False,
        initial_checkpoint="",
        resume="",
        num_classes=1000,
        gp="simpool",
        gamma=1.25,
        img_size=None,
        in_chans=None,
        input_size=None,
        crop_pct=None,
        mean=None,
        std=None,
        interpolation="",
        batch_size=74,
        model_kwargs={},
        opt="adamw",
        opt_eps=None,
        opt_betas=None,
        momentum=0.9,
        weight_decay=0.05,
        lr=5e-4,
        sched="cosine",
        epochs=100,
        scale=[0.08, 1.0],
        ratio=[3 / 4, 4 / 3],
        aa="rand-m9-mstd0.5-inc1",
        mixup=0.2,
        smoothing=0.1,
        drop=0.1,
        drop_path=0.1,
        model_ema=True,
        model_ema_decay=0.99996,
        seed=42,
        amp=False,
        output="/out",
        experiment="vits_supervised_simpool",
        prefetcher=True,
        distributed=True,
        world_size=8,
        rank=0,
        local_rank=0,
        device="cuda:0",
    )
    base.update(kw)
    return argparse.Namespace(**base)


def write_timm_train_checkpoint(path, args, raw: torch.nn.Module, ema: torch.nn.Module | None, metric=74.3) -> None:
    """timm CheckpointSaver._save: epoch, arch, optimizer, version, args, amp_scaler, state_dict(_ema), metric."""
    state = {"epoch": 99, "arch": type(raw).__name__.lower(), "optimizer": adamw_state(raw), "version": 2}
    state["arch"] = args.model
    state["args"] = args
    state["amp_scaler"] = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}
    state["state_dict"] = raw.state_dict()
    if ema is not None:
        state["state_dict_ema"] = ema.state_dict()
    state["metric"] = metric
    torch.save(state, path)


def dino_args(**kw) -> argparse.Namespace:
    base = dict(
        arch="vit_small",
        mode="simpool",
        gamma=1.25,
        patch_size=16,
        out_dim=10,
        norm_last_layer=False,
        momentum_teacher=0.996,
        use_bn_in_head=False,
        warmup_teacher_temp=0.04,
        teacher_temp=0.07,
        warmup_teacher_temp_epochs=30,
        use_fp16=False,
        weight_decay=0.04,
        weight_decay_end=0.4,
        clip_grad=0.0,
        batch_size_per_gpu=100,
        epochs=100,
        freeze_last_layer=1,
        lr=0.0005,
        warmup_epochs=10,
        min_lr=1e-5,
        optimizer="adamw",
        drop_path_rate=0.1,
        global_crops_scale=(0.25, 1.0),
        local_crops_number=6,
        local_crops_scale=(0.05, 0.25),
        backend="nccl",
        data_path="/data/imagenet",
        output_dir="/out",
        saveckp_freq=20,
        seed=0,
        num_workers=10,
        dist_url="env://",
        local_rank=0,
        subset=-1,
        eval_every=5,
        nb_knn=[10, 20, 100, 200],
        temperature=0.07,
        rank=0,
        world_size=8,
        gpu=0,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def dino_head(dim: int, use_bn: bool, seed: int) -> dict[str, torch.Tensor]:
    """DINOHead state dict (3-layer MLP [+BN], weight-normed last layer), official key names."""
    g = torch.Generator().manual_seed(seed)
    hid, bott, out = 16, 8, 10
    sd: dict[str, torch.Tensor] = {}
    layers = [(dim, hid), (hid, hid), (hid, bott)]
    i = 0
    for n, (a, b) in enumerate(layers):
        sd[f"mlp.{i}.weight"], sd[f"mlp.{i}.bias"] = torch.randn(b, a, generator=g), torch.randn(b, generator=g)
        i += 1
        if use_bn and n < 2:
            for s in ("weight", "bias", "running_mean", "running_var"):
                sd[f"mlp.{i}.{s}"] = torch.rand(b, generator=g) + 0.5
            sd[f"mlp.{i}.num_batches_tracked"] = torch.tensor(7)
            i += 1
        if n < 2:
            i += 1  # GELU
    sd["last_layer.weight_g"] = torch.ones(out, 1)
    sd["last_layer.weight_v"] = torch.randn(out, bott, generator=g)
    return sd


def write_dino_checkpoint(path, args, teacher_sd, student_sd, dim, teacher_ddp: bool, use_bn: bool) -> None:
    """DINO main_dino.py save_dict: student (DDP: module.), teacher (DDP only with BN: module.),
    both through MultiCropWrapper (backbone., head.), optimizer, epoch, args, dino_loss."""

    def wrap(sd, ddp, seed):
        out = {f"backbone.{k}": v for k, v in sd.items()}
        out.update({f"head.{k}": v for k, v in dino_head(dim, use_bn, seed).items()})
        return {f"module.{k}": v for k, v in out.items()} if ddp else out

    opt = {
        "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
        "param_groups": [
            {"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.4, "params": [0]},
            {"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": []},
        ],
    }
    torch.save(
        {
            "student": wrap(student_sd, True, 1),
            "teacher": wrap(teacher_sd, teacher_ddp, 2),
            "optimizer": opt,
            "epoch": 100,
            "args": args,
            "dino_loss": {"center": torch.zeros(1, 10)},
        },
        path,
    )


# ------------------------------------------------------------------------------------------ official supervised
@pytest.mark.parametrize(
    "arch,gamma,pool_prefix",
    [
        ("vit_small_patch16_224", 1.25, "gp.pool."),
        ("resnet18", 2.0, "global_pool.pool."),
        ("convnext_tiny", None, "head.global_pool.pool."),
    ],
)
def test_official_supervised_round_trip_prefers_ema(tmp_path, arch, gamma, pool_prefix):
    raw = tiny(arch, 1, pool="simpool", gamma=gamma, num_classes=7)
    ema = tiny(arch, 2, pool="simpool", gamma=gamma, num_classes=7)
    assert f"{pool_prefix}wq.weight" in ema.state_dict() and f"{pool_prefix}norm_patches.bias" in ema.state_dict()
    path = tmp_path / "model_best.pth.tar"
    write_timm_train_checkpoint(path, timm_train_args(model=arch, gp="simpool", gamma=gamma, num_classes=7), raw, ema)

    c = load_checkpoint(path)
    assert (c.format, c.variant, c.arch, c.pool, c.num_classes, c.source) == (
        "official-supervised",
        "supervised",
        arch,
        "simpool",
        7,
        "state_dict_ema",
    )
    assert c.gamma_known and c.gamma == gamma and not c.has_beta
    assert c.container_keys == ["epoch", "arch", "optimizer", "version", "args", "amp_scaler", "state_dict", "state_dict_ema", "metric"]
    assert any("state_dict_ema" in r for r in c.key_mapping)
    loaded = rebuild(arch, c)
    assert same_outputs(loaded, ema, arch) and not same_outputs(loaded, raw, arch)

    c_raw = load_checkpoint(path, prefer="raw")
    assert c_raw.source == "state_dict"
    assert same_outputs(rebuild(arch, c_raw), raw, arch)


def test_official_supervised_without_ema_and_baselines(tmp_path):
    arch = "vit_small_patch16_224"
    for pool, gp in (("cls", "token"), ("gap", "avg")):
        raw = tiny(arch, 3, pool=pool, num_classes=4)
        path = tmp_path / f"{pool}.pth.tar"
        args = timm_train_args(gp=gp, gamma=None, num_classes=4, model_kwargs={"drop_path_rate": 0.0, "img_size": 32})
        write_timm_train_checkpoint(path, args, raw, None)
        c = load_checkpoint(path)
        # img_size is the one build_model argument a file may set (to rebuild its position embeddings)
        assert c.model_kwargs == {"drop_path_rate": 0.0, "img_size": 32}
        assert (c.format, c.pool, c.source, c.gamma) == ("official-supervised", pool, "state_dict", None)
        assert not any("keys win" in n for n in c.notes), c.notes  # --gp token/avg is what the keys hold
        assert "state_dict used (no state_dict_ema in the file)" in c.key_mapping
        assert same_outputs(rebuild(arch, c), raw, arch)
        with pytest.raises(SimpoolBenchError, match="state_dict_ema"):
            load_checkpoint(path, prefer="ema")


def test_ddp_prefixed_weights_are_stripped(tmp_path):
    arch = "resnet18"
    m = tiny(arch, 4, pool="gap", num_classes=3)
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}, "epoch": 1, "arch": arch, "version": 2}, tmp_path / "c.pth"
    )
    c = load_checkpoint(tmp_path / "c.pth")
    assert c.format == "official-supervised" and "stripped module." in c.key_mapping
    assert same_outputs(rebuild(arch, c), m, arch)
    # torch.compile's _orig_mod. around or inside DDP's module.: stripped as timm's clean_state_dict strips them
    for wrap in ("_orig_mod.", "_orig_mod.module.", "module._orig_mod."):
        sd = {f"{wrap}{k}": v for k, v in m.state_dict().items()}
        torch.save({"state_dict": sd, "epoch": 1, "arch": arch, "version": 2}, tmp_path / "c.pth")
        c = load_checkpoint(tmp_path / "c.pth")
        assert list(c.state_dict) == list(timm.models.clean_state_dict(sd)) == list(m.state_dict()), wrap
        assert all(torch.equal(c.state_dict[k], v) for k, v in timm.models.clean_state_dict(sd).items())


def test_timm_saver_file_without_args_names_its_class_not_an_architecture(tmp_path):
    """timm's CheckpointSaver without ``args`` (scripts other than train.py) records ``arch`` as the
    model's class name (``resnet``): that file was refused as 'unknown architecture resnet', and with
    --model resnet18 as a conflict with 'resnet'. The class name is not taken for an architecture:
    --model decides, and the weights load exactly (timm's own model's logits)."""
    from timm.utils import CheckpointSaver

    net = timm.create_model("resnet18", pretrained=False, num_classes=3, **TINY["resnet18"]).eval()
    saver = CheckpointSaver(net, torch.optim.SGD(net.parameters(), lr=0.1), args=None, checkpoint_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(0, metric=1.0)
    c = load_checkpoint(tmp_path / "last.pth.tar")
    assert (c.format, c.arch, c.source) == ("official-supervised", None, "state_dict")
    assert any("'resnet' is not a timm model name" in n for n in c.notes), c.notes
    assert resolve_spec(c, arch="resnet18") == ("resnet18", "gap", None, "supervised")
    loaded = rebuild("resnet18", c, arch="resnet18")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, net(x))


@pytest.mark.parametrize("raw_key,ema_key", [("state_dict", "state_dict_ema"), ("model", "model_ema")])
def test_plain_container_with_ema_weights_follows_prefer(tmp_path, raw_key, ema_key):
    """A container without train.py's args (timm ModelEma / DeiT main.py style): ``auto`` takes the
    EMA weights as timm's ``load_state_dict(use_ema=True)`` does, ``--prefer raw|ema`` picks, and a
    choice the file does not offer is an error, never silently the other weights."""
    arch = "vit_small_patch16_224"
    raw, ema = tiny(arch, 17, pool="cls", num_classes=3), tiny(arch, 18, pool="cls", num_classes=3)
    path = tmp_path / "ckpt.pth"
    torch.save({raw_key: raw.state_dict(), ema_key: ema.state_dict(), "epoch": 3}, path)
    timm_choice = timm.models.load_state_dict(str(path), use_ema=True)
    c = load_checkpoint(path)
    assert (c.format, c.source) == ("state-dict", ema_key)
    assert c.state_dict.keys() == timm_choice.keys() and all(torch.equal(c.state_dict[k], timm_choice[k]) for k in timm_choice)
    assert same_outputs(rebuild(arch, c, arch=arch), ema, arch)
    assert load_checkpoint(path, prefer="ema").source == ema_key
    c_raw = load_checkpoint(path, prefer="raw")
    assert c_raw.source == raw_key and same_outputs(rebuild(arch, c_raw, arch=arch), raw, arch)
    for prefer in ("teacher", "student"):
        with pytest.raises(SimpoolBenchError, match=rf"ckpt\.pth: --prefer {prefer} applies to DINO checkpoints"):
            load_checkpoint(path, prefer=prefer)
    torch.save({raw_key: raw.state_dict(), "epoch": 3}, tmp_path / "raw_only.pth")
    with pytest.raises(
        SimpoolBenchError, match=rf"raw_only\.pth: asked for ema weights \(state_dict_ema or model_ema\).*entries: {raw_key}, epoch"
    ):
        load_checkpoint(tmp_path / "raw_only.pth", prefer="ema")
    torch.save(raw.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(SimpoolBenchError, match=r"bare\.pth: --prefer ema: the file is a bare state dict \(one set of weights\)"):
        load_checkpoint(tmp_path / "bare.pth", prefer="ema")


# ------------------------------------------------------------------------------------------ official DINO
def test_official_dino_vit_teacher_default_student_on_request(tmp_path):
    arch = "vit_small_patch16_224"
    teacher = tiny(arch, 5, pool="simpool", gamma=1.25, variant="dino", use_beta=True)
    student = tiny(arch, 6, pool="simpool", gamma=1.25, variant="dino", use_beta=True)
    assert "simpool.beta" in teacher.state_dict() and "cls_token" not in teacher.state_dict()
    path = tmp_path / "checkpoint.pth"
    write_dino_checkpoint(path, dino_args(), teacher.state_dict(), student.state_dict(), 32, teacher_ddp=False, use_bn=False)

    c = load_checkpoint(path)
    assert (c.format, c.variant, c.arch, c.pool, c.gamma, c.has_beta, c.num_classes) == (
        "official-dino",
        "dino",
        arch,
        "simpool",
        1.25,
        True,
        None,
    )
    assert c.source == "teacher" and c.dino_pos_quirk
    assert "dropped 8 DINO head keys (head.*)" in c.key_mapping and "stripped backbone." in c.key_mapping
    assert not any(k.startswith(("head.", "backbone.", "module.")) for k in c.state_dict)
    assert same_outputs(rebuild(arch, c), teacher, arch)

    s = load_checkpoint(path, prefer="student")
    assert s.source == "student" and "stripped module." in s.key_mapping
    assert same_outputs(rebuild(arch, s), student, arch)
    # inspect shows the weights --prefer picks, as a run loads them
    shown = said(invoke_cli("inspect", path, "--prefer", "student"))
    assert "│ weights │ student" in shown and "stripped module." in shown
    assert "│ weights │ teacher" in said(invoke_cli("inspect", path))


def test_official_dino_resnet_ddp_teacher_with_bn_head(tmp_path):
    arch = "resnet18"
    teacher = tiny(arch, 7, pool="simpool", gamma=2.0, variant="dino")
    path = tmp_path / "checkpoint.pth"
    write_dino_checkpoint(
        path, dino_args(arch="resnet50", gamma=2.0), teacher.state_dict(), teacher.state_dict(), 16, teacher_ddp=True, use_bn=True
    )
    c = load_checkpoint(path)
    assert (c.format, c.variant, c.pool, c.gamma, c.has_beta) == ("official-dino", "dino", "simpool", 2.0, False)
    assert c.arch == "resnet50"  # what the file says; the tiny test model is a resnet18 layout
    assert "stripped module." in c.key_mapping and "dropped 18 DINO head keys (head.*)" in c.key_mapping
    assert same_outputs(_rebuild_as(arch, c), teacher, arch)


def test_dino_args_name_the_model_main_dino_builds(tmp_path):
    """DINO main_dino.py builds ``vits.__dict__[args.arch.replace("deit", "vit")](patch_size=args.patch_size)``
    (argparse default 16) or a torchvision CNN of that name: the timm name is that model's; a file
    that keeps only the teacher (the student dropped to save space) is still a DINO checkpoint."""
    sd = tiny("vit_small_patch16_224", 21, pool="simpool", gamma=1.25, variant="dino").state_dict()
    path = tmp_path / "checkpoint.pth"
    no_patch = dino_args()
    del no_patch.patch_size
    for args, arch in [
        (dino_args(arch="deit_small"), "vit_small_patch16_224"),
        (dino_args(arch="vit_base", patch_size=8), "vit_base_patch8_224"),
        (no_patch, "vit_small_patch16_224"),
        (dino_args(arch="resnet50"), "resnet50"),
    ]:
        write_dino_checkpoint(path, args, sd, sd, 32, teacher_ddp=False, use_bn=False)
        assert load_checkpoint(path).arch == arch, vars(args)
    obj = torch.load(path, weights_only=False)
    torch.save(obj["teacher"], tmp_path / "teacher_dict.pth")  # the MultiCropWrapper's state dict saved on its own
    c = load_checkpoint(tmp_path / "teacher_dict.pth")
    assert (c.format, c.variant, c.variant_known) == ("state-dict", "dino", True) and c.state_dict.keys() == sd.keys()
    obj["teacher"] = {k[len("backbone.") :] if k.startswith("backbone.") else k: v for k, v in obj["teacher"].items()}
    torch.save(obj, tmp_path / "unwrapped.pth")  # a teacher saved without the MultiCropWrapper: its head.* still dropped
    c = load_checkpoint(tmp_path / "unwrapped.pth")
    assert c.state_dict.keys() == sd.keys() and "dropped 8 DINO head keys (head.*)" in c.key_mapping
    torch.save(sd, tmp_path / "bare_simpool.pth")  # a bare DINO SimPool backbone: its simpool.* keys tell the variant
    c = load_checkpoint(tmp_path / "bare_simpool.pth")
    assert (c.format, c.variant, c.variant_known, c.pool) == ("state-dict", "dino", True, "simpool")
    assert c.dino_code and not c.dino_pos_quirk  # DINO's ViT code; its quirk kept by default for official DINO files only
    del obj["student"]
    torch.save(obj, tmp_path / "teacher_only.pth")
    c = load_checkpoint(tmp_path / "teacher_only.pth")
    assert (c.format, c.source, c.variant, c.pool, c.gamma) == ("official-dino", "teacher", "dino", "simpool", 1.25)
    assert c.state_dict.keys() == sd.keys()


def test_dino_patch_size_that_is_not_an_integer_is_named(tmp_path):
    """``args.patch_size`` None or text raised TypeError/ValueError from int(); 16.5 became patch16."""
    sd = tiny("vit_small_patch16_224", 23, pool="simpool", gamma=1.25, variant="dino").state_dict()
    path = tmp_path / "checkpoint.pth"
    for patch in (None, "sixteen", 16.5, True):
        write_dino_checkpoint(path, dino_args(patch_size=patch), sd, sd, 32, teacher_ddp=False, use_bn=False)
        with pytest.raises(SimpoolBenchError) as e:
            load_checkpoint(path)
        assert str(e.value) == f"checkpoint {path} args: patch_size {patch!r} is not an integer (main_dino.py's --patch_size, e.g. 16)"
    write_dino_checkpoint(path, dino_args(patch_size=8), sd, sd, 32, teacher_ddp=False, use_bn=False)
    assert load_checkpoint(path).arch == "vit_small_patch8_224"


def test_model_kwargs_key_that_is_not_a_string_is_named(tmp_path):
    """An int key in ``args.model_kwargs`` raised TypeError ('<' not supported between int and str)."""

    def int_key(obj):
        obj["args"].model_kwargs[3] = 1

    bad = _edited_tiny_checkpoint(tmp_path, "intkw.pth.tar", int_key)
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(bad)
    assert str(e.value) == f"checkpoint {bad}: args.model_kwargs key 3 is a int, expected a string (a timm argument name)"


def test_what_a_file_records_is_checked_against_its_keys_and_the_known_values(tmp_path):
    """gamma 0 (sp.py would take the 0th root) and inf are refused where the file is read, naming it;
    'none' and an empty value mean no gamma, as --gamma none does. A variant the tool does not know
    is not taken; a pool other than the keys' is a note (the keys win); an empty state dict is named."""
    m = tiny("vit_small_patch16_224", 22, pool="simpool", gamma=None, num_classes=3)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"), metadata={"variant": "teacher", "pool": "cls"})
    c = load_checkpoint(tmp_path / "w.safetensors")
    assert (c.variant, c.pool) == ("supervised", "simpool")
    assert "the file's settings say pool cls but its keys hold simpool; the keys win" in c.notes
    save_file(sd, str(tmp_path / "w.safetensors"), metadata={"variant": "dino"})
    assert load_checkpoint(tmp_path / "w.safetensors").variant == "dino"
    # the architecture a file names wins over the timm name its shapes match (a DeiT is shaped as a ViT)
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=0, depth=12)
    save_file(deit.state_dict(), str(tmp_path / "deit.safetensors"), metadata={"arch": "deit_tiny_patch16_224"})
    c = load_checkpoint(tmp_path / "deit.safetensors")
    assert (c.arch, c.arch_source) == ("deit_tiny_patch16_224", "metadata") and infer_arch(c.state_dict) == "vit_tiny_patch16_224"
    write_timm_train_checkpoint(tmp_path / "gp.pth.tar", timm_train_args(gp="avg", gamma=None, num_classes=3), m, None)
    assert "the file's settings say pool gap but its keys hold simpool; the keys win" in load_checkpoint(tmp_path / "gp.pth.tar").notes
    # a SimPool beta in a file that records no gamma is kept (dropped only when the file says no gamma)
    beta = tiny("vit_small_patch16_224", 24, pool="simpool", gamma=1.25, use_beta=True, num_classes=3)
    torch.save(beta.state_dict(), tmp_path / "beta.pth")
    c = load_checkpoint(tmp_path / "beta.pth")
    assert c.has_beta and not c.gamma_known and torch.equal(c.state_dict["gp.pool.beta"], beta.state_dict()["gp.pool.beta"])
    torch.save({"state_dict": {}, "epoch": 1}, tmp_path / "empty_sd.pth")
    with pytest.raises(SimpoolBenchError, match=r"empty_sd\.pth: state_dict is empty$"):
        load_checkpoint(tmp_path / "empty_sd.pth")
    for value, gamma in [("2", 2.0), ("none", None), ("None", None), ("", None)]:
        save_file(sd, str(tmp_path / "w.safetensors"), metadata={"gamma": value})
        c = load_checkpoint(tmp_path / "w.safetensors")
        assert (c.gamma, c.gamma_known) == (gamma, True), value
    for value in ("0", "-1", "inf", "nan", "two"):
        save_file(sd, str(tmp_path / "w.safetensors"), metadata={"gamma": value})
        with pytest.raises(
            SimpoolBenchError, match=rf"w\.safetensors metadata: gamma '{value}' (must be a positive number|is not a number)"
        ):
            load_checkpoint(tmp_path / "w.safetensors")
    write_timm_train_checkpoint(tmp_path / "g0.pth.tar", timm_train_args(gamma=0.0, num_classes=3), m, None)
    with pytest.raises(SimpoolBenchError, match=r"g0\.pth\.tar args: gamma 0\.0 must be a positive number or 'none'"):
        load_checkpoint(tmp_path / "g0.pth.tar")


def test_train_py_validation_size_is_the_one_timm_resolves_from_its_args(tmp_path):
    """timm train.py validates at ``resolve_data_config(vars(args))['input_size']``: ``--input-size``
    when given, else ``--img-size``; the file's train_eval says the same."""
    m = tiny("vit_small_patch16_224", 23, pool="simpool", gamma=1.25, num_classes=3)
    for kw in (dict(input_size=[3, 256, 256], img_size=224), dict(img_size=288), dict(input_size=[3, 320, 320])):
        args = timm_train_args(num_classes=3, **kw)
        write_timm_train_checkpoint(tmp_path / "t.pth.tar", args, m, None)
        expected = timm.data.resolve_data_config(vars(args))["input_size"]
        assert load_checkpoint(tmp_path / "t.pth.tar").train_eval["input_size"] == expected, kw


def test_train_py_args_that_are_not_finite_are_left_out(tmp_path, capsys):
    """``args.img_size`` inf raised OverflowError (int(inf)); a NaN mean or crop_pct became a warning
    advising ``--mean nan,nan,nan --crop-pct nan``, flags every run refuses. Such values say nothing."""
    from simpool_bench.api import ModelOptions, load_model

    arch = "vit_small_patch16_224"
    net = tiny(arch, 24, pool="simpool", gamma=1.25, num_classes=3)
    path = tmp_path / "t.pth.tar"
    nan, inf = float("nan"), float("inf")
    for kw in (dict(img_size=inf), dict(input_size=[3, inf, inf]), dict(mean=[nan] * 3, std=[0.2, inf, 0.2], crop_pct=nan)):
        write_timm_train_checkpoint(path, timm_train_args(num_classes=3, model_kwargs=TINY[arch], **kw), net, None)
        assert load_checkpoint(path).train_eval == {}, kw
        load_model(ModelOptions(checkpoint=path))
        assert capsys.readouterr().err == "", kw
    write_timm_train_checkpoint(path, timm_train_args(num_classes=3, model_kwargs=TINY[arch], mean=[0.4] * 3, crop_pct=nan), net, None)
    assert load_checkpoint(path).train_eval == {"mean": (0.4, 0.4, 0.4)}


def to_fb_convnext(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm ConvNeXt keys -> the facebookresearch/ConvNeXt names of the official DINO ConvNeXt."""
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "stem":
            n = "downsample_layers.0." + ".".join(parts[1:])
        elif parts[0] == "stages" and parts[2] == "downsample":
            n = f"downsample_layers.{parts[1]}." + ".".join(parts[3:])
        elif parts[0] == "stages" and parts[2] == "blocks":
            name = {"conv_dw": "dwconv", "norm": "norm", "gamma": "gamma"}.get(parts[4])
            if parts[4] == "mlp":
                name = {"fc1": "pwconv1", "fc2": "pwconv2"}[parts[5]]
                rest = parts[6:]
            else:
                rest = parts[5:]
            n = ".".join(["stages", parts[1], parts[3], name, *rest])
        elif k.startswith("head.norm."):
            n = k[len("head.") :]
        else:
            n = k
        out[n] = v
    return out


def test_official_dino_convnext_facebook_layout(tmp_path):
    arch = "convnext_tiny"
    teacher = tiny(arch, 8, pool="simpool", gamma=2.0, variant="dino")
    fb = to_fb_convnext(teacher.state_dict())
    assert "downsample_layers.0.0.weight" in fb and "stages.0.0.pwconv1.weight" in fb and "norm.weight" in fb
    path = tmp_path / "checkpoint.pth"
    write_dino_checkpoint(path, dino_args(arch="convnext_small", gamma=2.0), fb, fb, 32, teacher_ddp=False, use_bn=False)
    c = load_checkpoint(path)
    assert c.format == "official-dino" and c.arch == "convnext_small"
    assert any("ConvNeXt facebookresearch layout" in r for r in c.key_mapping)
    assert same_outputs(_rebuild_as(arch, c), teacher, arch)


def test_convnext_weight_under_both_layouts_is_refused(tmp_path):
    """A ConvNeXt state dict holding a weight under its facebookresearch name and under timm's
    (downsample_layers.0.0.weight and stem.0.weight): mapping the names kept whichever came last and
    the file loaded strictly, silently."""
    sd = tiny("convnext_tiny", 27, pool="simpool", gamma=2.0, variant="dino").state_dict()
    fb = to_fb_convnext(sd)
    torch.save({**fb, "stem.0.weight": torch.zeros_like(sd["stem.0.weight"])}, tmp_path / "both.pth")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(tmp_path / "both.pth")
    assert str(e.value) == (
        f"checkpoint {tmp_path / 'both.pth'}: holds both 'downsample_layers.0.0.weight' and 'stem.0.weight', which are the same "
        "ConvNeXt weight 'stem.0.weight' in timm's names; expected one of them"
    )


def test_official_dino_cls_baseline(tmp_path):
    arch = "vit_small_patch16_224"
    teacher = tiny(arch, 9, pool="cls", variant="dino")
    path = tmp_path / "checkpoint.pth"
    write_dino_checkpoint(path, dino_args(mode="official"), teacher.state_dict(), teacher.state_dict(), 32, teacher_ddp=False, use_bn=False)
    c = load_checkpoint(path)
    assert (c.pool, c.gamma, c.variant, c.dino_pos_quirk) == ("cls", None, "dino", False)
    assert resolve_spec(c) == (arch, "cls", None, "dino")
    assert same_outputs(rebuild(arch, c), teacher, arch)


# ------------------------------------------------------------------------------------------ timm SimPool1d/2d
OFFICIAL_FROM_TIMM = {
    "norm.weight": "norm_patches.weight",
    "norm.bias": "norm_patches.bias",
    "q.weight": "wq.weight",
    "k.weight": "wk.weight",
}


def as_timm_simpool(sd: dict[str, torch.Tensor], ours: str, theirs: str) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in sd.items() if not k.startswith(ours)}
    out.update({theirs + t: sd[ours + o] for t, o in OFFICIAL_FROM_TIMM.items()})
    return out


@pytest.mark.parametrize(
    "arch,ours,theirs,layer",
    [
        ("vit_small_patch16_224", "gp.pool.", "gp.pool.", "SimPool1d"),
        ("convnext_tiny", "head.global_pool.pool.", "head.global_pool.pool.", "SimPool2d"),
        ("resnet18", "global_pool.pool.", "global_pool.", "SimPool2d"),  # timm layer put in place of global_pool
    ],
)
def test_timm_simpool_keys(tmp_path, arch, ours, theirs, layer):
    src = tiny(arch, 10, pool="simpool", gamma=None, num_classes=5, simpool_eps=1e-5)
    dim = src.num_features
    timm_layer = getattr(timm.layers, layer)(dim, gamma=None)
    assert set(timm_layer.state_dict()) == set(OFFICIAL_FROM_TIMM)  # the names timm really uses
    sd = as_timm_simpool(src.state_dict(), ours, theirs)
    torch.save(sd, tmp_path / "timm.pth")
    c = load_checkpoint(tmp_path / "timm.pth")
    assert c.format == "timm-simpool" and c.model_kwargs == {"simpool_eps": 1e-5}
    assert any("norm->norm_patches, q->wq, k->wk" in r for r in c.key_mapping)
    assert any("min-scope channel" in n for n in c.notes)
    assert not c.gamma_known  # timm's layer keeps gamma out of its state dict
    assert load_checkpoint(tmp_path / "timm.pth", format="state-dict").format == "state-dict"  # forced: stays what was asked
    loaded = rebuild(arch, c, arch=arch, gamma=None)
    assert same_outputs(loaded, src, arch)
    # the renaming is the right one: timm's own layer with these weights computes our layer's output
    timm_layer.load_state_dict({t: sd[theirs + t] for t in OFFICIAL_FROM_TIMM})
    x = torch.randn(2, dim, 3, 3) if layer == "SimPool2d" else torch.randn(2, 9, dim)
    with torch.no_grad():
        ours_out, _ = loaded.simpool_layer(x)
        torch.testing.assert_close(ours_out, timm_layer.eval()(x), rtol=1e-5, atol=1e-5)


def test_timm_and_official_simpool_names_together_are_refused(tmp_path):
    """A state dict holding SimPool's weights under both timm's names (norm, q, k) and the official
    ones (norm_patches, wq, wk): the renaming replaced the official tensors with the timm ones and the
    file loaded strictly, silently; which set is meant cannot be told."""
    arch = "vit_small_patch16_224"
    sd = tiny(arch, 26, pool="simpool", gamma=None, num_classes=5).state_dict()
    both = {**sd, **{k: -v for k, v in as_timm_simpool(sd, "gp.pool.", "gp.pool.").items() if k not in sd}}
    torch.save(both, tmp_path / "both.pth")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(tmp_path / "both.pth")
    assert str(e.value) == (
        f"checkpoint {tmp_path / 'both.pth'}: holds both 'gp.pool.norm.weight' (a timm SimPool1d/2d name) and "
        "'gp.pool.norm_patches.weight', the official name it maps to; expected one of them"
    )


# ------------------------------------------------------------------------------------------ plain / safetensors
def test_plain_state_dict_needs_arch_flag(tmp_path):
    arch = "vit_small_patch16_224"
    m = tiny(arch, 11, pool="simpool", gamma=1.25, num_classes=6)
    torch.save({f"module.{k}": v for k, v in m.state_dict().items()}, tmp_path / "plain.pth")
    c = load_checkpoint(tmp_path / "plain.pth")
    assert (c.format, c.variant, c.variant_known, c.arch, c.pool, c.num_classes) == ("state-dict", "supervised", True, None, "simpool", 6)
    assert not c.gamma_known and c.container_keys == [] and "stripped module." in c.key_mapping
    with pytest.raises(SimpoolBenchError, match="cannot tell the architecture of plain.pth"):
        resolve_spec(c)
    assert resolve_spec(c, arch=arch) == (arch, "simpool", UNSET, "supervised")
    assert same_outputs(rebuild(arch, c, arch=arch, gamma=1.25), m, arch)


def test_safetensors_with_and_without_metadata(tmp_path):
    arch = "vit_small_patch16_224"
    m = tiny(arch, 12, pool="simpool", gamma=2.5, num_classes=3)
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"), metadata={"arch": arch, "pool": "simpool", "gamma": "2.5", "variant": "supervised"})
    c = load_checkpoint(tmp_path / "w.safetensors")
    assert (c.format, c.arch, c.pool, c.gamma, c.gamma_known) == ("safetensors", arch, "simpool", 2.5, True)
    assert same_outputs(rebuild(arch, c), m, arch)
    save_file(sd, str(tmp_path / "weights.bin"))  # detected by content, not by name
    c2 = load_checkpoint(tmp_path / "weights.bin")
    assert c2.format == "safetensors" and c2.arch is None and not c2.gamma_known
    assert same_outputs(rebuild(arch, c2, arch=arch, gamma=2.5), m, arch)
    with pytest.raises(SimpoolBenchError, match="safetensors"):
        torch.save(sd, tmp_path / "t.pth")
        load_checkpoint(tmp_path / "t.pth", format="safetensors")


# ------------------------------------------------------------------------------------------ bad inputs
def test_missing_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(SimpoolBenchError, match=r"nope\.pth: no such file"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(SimpoolBenchError, match="is a directory"):
        load_checkpoint(tmp_path)
    cases = {"garbage.pth": os.urandom(4096), "empty.pth": b"", "text.pth": b'{"not": "a checkpoint"}\n', "trunc.pth": b""}
    good = tmp_path / "good.pth"
    torch.save({"a": torch.zeros(3)}, good)
    cases["trunc.pth"] = good.read_bytes()[:200]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SimpoolBenchError) as e:
            load_checkpoint(tmp_path / name)
        msg = str(e.value)
        assert name in msg and "\n" not in msg and "not a" in msg, msg
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(SimpoolBenchError, match="not a checkpoint format this tool knows"):
        load_checkpoint(tmp_path / "list.pth")
    torch.save({"state_dict": {"w": torch.zeros(2), "step": 3}, "epoch": 1}, tmp_path / "nontensor.pth")
    with pytest.raises(SimpoolBenchError, match="entry 'step' is a int, expected a tensor"):
        load_checkpoint(tmp_path / "nontensor.pth")


def test_a_named_pipe_or_device_is_refused_at_once(tmp_path):
    """A FIFO given as the checkpoint: opening it waited for a writer, forever (here a thread keeps
    opening its write end so that the old behaviour ends, reading nothing, instead of hanging)."""
    import threading

    fifo = tmp_path / "ckpt.pth"
    os.mkfifo(fifo)
    stop = threading.Event()

    def unblock() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # ENXIO: nobody reads it
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            stop.wait(0.05)

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        with pytest.raises(SimpoolBenchError) as e:
            load_checkpoint(fifo)
    finally:
        stop.set()
        thread.join()
    assert str(e.value) == f"checkpoint {fifo}: not a regular file (a pipe, socket or device), expected a checkpoint file"
    with pytest.raises(SimpoolBenchError, match=r"^checkpoint /dev/null: not a regular file \(a pipe, socket or device\)"):
        load_checkpoint("/dev/null")


def test_a_key_that_is_not_a_string_is_named(tmp_path):
    """State-dict keys are strings: an int key (at the top or inside ``state_dict``) is one error
    naming the file and the key, not an AttributeError traceback or "a Tensor, expected a tensor"."""
    torch.save({0: torch.zeros(2), "a": torch.zeros(1)}, tmp_path / "intkey.pth")
    res = invoke_cli("inspect", tmp_path / "intkey.pth")
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert said(res).startswith(f"error: checkpoint {tmp_path / 'intkey.pth'}: "), res.output
    assert said(res).endswith("the file key 0 is a int, expected a string (a parameter name)"), res.output
    torch.save({"state_dict": {"w": torch.zeros(2), 3: torch.zeros(1)}, "epoch": 1}, tmp_path / "nested.pth")
    with pytest.raises(SimpoolBenchError, match=r"nested\.pth: state_dict key 3 is a int, expected a string \(a parameter name\)$"):
        load_checkpoint(tmp_path / "nested.pth")


def test_a_bare_state_dict_with_an_entry_that_is_no_tensor_names_it(tmp_path):
    """A bare state dict with one entry that is not a tensor was "not a checkpoint format this tool
    knows: it holds a dict with entries cls_token, pos_embed, ..." (which entry?), an empty dict
    "a dict with entries " (nothing)."""
    sd = tiny("resnet18", 25, pool="gap", num_classes=3).state_dict()
    torch.save({**sd, "layer1.0.conv1.weight": 0.5}, tmp_path / "one.pth")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(tmp_path / "one.pth")
    assert str(e.value) == f"checkpoint {tmp_path / 'one.pth'}: the file entry 'layer1.0.conv1.weight' is a float, expected a tensor"
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(tmp_path / "empty.pth")
    assert str(e.value) == f"checkpoint {tmp_path / 'empty.pth'}: holds an empty dict, expected a state dict (parameter names and tensors)"
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "other.pth")  # no tensor at all: still an unknown format
    with pytest.raises(
        SimpoolBenchError, match=r"other\.pth: not a checkpoint format this tool knows: it holds a dict with entries epoch, note \("
    ):
        load_checkpoint(tmp_path / "other.pth")


def test_a_tensor_without_dense_values_is_named(tmp_path):
    """A meta tensor (no values: a state dict saved from a model built on the meta device) or a
    sparse one: ``inspect`` raised torch's RuntimeError/NotImplementedError counting NaNs, a run
    torch's multi-line load_state_dict RuntimeError. Now one error naming the file and the entry."""
    arch = "vit_small_patch16_224"
    sd = tiny(arch, 20, pool="simpool", num_classes=3).state_dict()
    cases = {
        "meta.pth": ({**sd, "blocks.0.attn.qkv.weight": torch.empty(96, 32, device="meta")}, "on the meta device (no values)"),
        "sparse.pth": ({**sd, "head.weight": sd["head.weight"].to_sparse()}, "sparse (torch.sparse_coo)"),
    }
    for name, (weights, kind) in cases.items():
        torch.save({"state_dict": weights, "epoch": 1}, tmp_path / name)
        key = next(k for k, v in weights.items() if v.is_meta or v.is_sparse)
        expected = f"checkpoint {tmp_path / name}: state_dict entry {key!r} is a tensor {kind}, expected a dense tensor of values"
        for fn in (load_checkpoint, inspect_checkpoint):
            with pytest.raises(SimpoolBenchError) as e:
                fn(tmp_path / name)
            assert str(e.value) == expected
        res = invoke_cli("inspect", tmp_path / name)
        assert res.exit_code == 2 and res.output.count("\n") == 1 and said(res) == f"error: {expected}", res.output


@pytest.mark.parametrize("trust", [False, True])
def test_a_file_that_is_not_a_torch_save_file_says_what_it_starts_with(tmp_path, trust):
    """An HTML page saved under the checkpoint's name (a failed download) or any other text: one
    message saying what the file starts with, and not that --trust-checkpoint would read it."""
    from conftest import invoke_cli

    page = tmp_path / "vits_simpool.pth.tar"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title></head></html>\n")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(page, trust=trust)
    msg = str(e.value)
    assert msg.startswith(f"checkpoint {page}: not a PyTorch checkpoint: it starts with b'<!DOCTYPE html>")
    assert "an HTML page" in msg and "trust" not in msg, msg
    text = tmp_path / "notes.pth"
    text.write_text("weights are on the shared drive")
    with pytest.raises(SimpoolBenchError, match=r"notes\.pth: not a PyTorch checkpoint: it starts with b'weights are on t'") as e:
        load_checkpoint(text, trust=trust)
    assert "HTML" not in str(e.value)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(SimpoolBenchError, match=r"empty\.pth: not a PyTorch checkpoint: the file is empty \(0 bytes\)"):
        load_checkpoint(empty, trust=trust)
    res = invoke_cli("inspect", page, *(["--trust-checkpoint"] if trust else []))
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "an HTML page" in res.output, res.output


def test_bad_flags(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "a.pth")
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(tmp_path / "a.pth", format="onnx")
    assert "'onnx'" in str(e.value) and all(f in str(e.value) for f in FORMATS)
    with pytest.raises(SimpoolBenchError, match="--prefer 'best'"):
        load_checkpoint(tmp_path / "a.pth", prefer="best")
    with pytest.raises(SimpoolBenchError, match="official-dino expects"):
        load_checkpoint(tmp_path / "a.pth", format="official-dino")
    with pytest.raises(SimpoolBenchError, match="no SimPool1d/2d keys"):
        load_checkpoint(tmp_path / "a.pth", format="timm-simpool")


def test_other_architecture_lists_missing_and_unexpected_keys(tmp_path):
    torch.save(tiny("resnet18", 13, pool="gap", num_classes=5).state_dict(), tmp_path / "r18.pth")
    c = load_checkpoint(tmp_path / "r18.pth")
    vit = build_model("vit_small_patch16_224", pool="simpool", num_classes=5, **TINY["vit_small_patch16_224"])
    with pytest.raises(SimpoolBenchError) as e:
        load_into(vit, c)
    msg = str(e.value)
    assert "\n" not in msg and "r18.pth (state-dict) does not fit the model vit_small_patch16_224" in msg
    assert "missing keys [pos_embed, patch_embed.proj.weight" in msg and "unexpected keys [conv1.weight, bn1.weight" in msg
    assert "more)" in msg  # truncated
    with pytest.raises(SimpoolBenchError, match="is a vit but r18.pth holds resnet weights"):
        resolve_spec(c, arch="vit_small_patch16_224", pool="gap")


def test_shape_and_class_count_mismatch(tmp_path):
    arch = "vit_small_patch16_224"
    torch.save(tiny(arch, 14, pool="simpool", num_classes=7).state_dict(), tmp_path / "c7.pth")
    c = load_checkpoint(tmp_path / "c7.pth")
    m5 = build_model(arch, pool="simpool", num_classes=5, **TINY[arch])
    with pytest.raises(
        SimpoolBenchError,
        match=r"class-count mismatch: the checkpoint has 7 classes, the model .* was built with 5 classes; pass --num-classes 7",
    ):
        load_into(m5, c)
    wide = build_model(arch, pool="simpool", num_classes=7, **{**TINY[arch], "embed_dim": 48})
    with pytest.raises(SimpoolBenchError, match=r"shape mismatches \[pos_embed: file \(1, 4, 32\) vs model \(1, 4, 48\)"):
        load_into(wide, c)


@pytest.mark.parametrize(
    "arch, key",
    [
        ("vit_small_patch16_224", "patch_embed.proj.weight"),
        ("vit_small_patch16_224", "head.weight"),
        ("resnet18", "layer1.0.conv1.weight"),
        ("convnext_tiny", "stem.0.weight"),
    ],
)
def test_a_scalar_where_the_shapes_tell_the_model_is_a_shape_mismatch(tmp_path, arch, key):
    """A 0-d tensor under a key whose shape names the architecture or the class count: loading
    raised IndexError (tuple index out of range) while guessing them; now the file loads and the
    model it is loaded into names the key and both shapes."""
    m = tiny(arch, 21, pool="gap", num_classes=3)
    sd = {**m.state_dict(), key: torch.tensor(0.5)}
    torch.save(sd, tmp_path / "scalar.pth")
    c = load_checkpoint(tmp_path / "scalar.pth")
    assert c.num_classes == (None if key == "head.weight" else 3)
    model = build_model(arch, pool="gap", num_classes=3, **TINY[arch])
    shape = tuple(model.state_dict()[key].shape)
    with pytest.raises(SimpoolBenchError) as e:
        load_into(model, c)
    assert (
        str(e.value)
        == f"{tmp_path / 'scalar.pth'} (state-dict) does not fit the model {arch}: 1 shape mismatches [{key}: file () vs model {shape}]"
    )


def test_a_classifier_of_another_width_is_not_called_a_class_count_mismatch(tmp_path):
    """A head whose rows match the model but not its inputs (here transposed: 32 rows of 3) was
    "class-count mismatch: the checkpoint has 32 classes, the model ... was built with 32 classes;
    pass --num-classes 32", advice that cannot help; it is a shape mismatch of that key."""
    arch = "vit_small_patch16_224"
    sd = tiny(arch, 22, pool="gap", num_classes=3).state_dict()
    torch.save({**sd, "head.weight": sd["head.weight"].t().contiguous()}, tmp_path / "t.pth")
    c = load_checkpoint(tmp_path / "t.pth")
    assert c.num_classes == 32
    with pytest.raises(SimpoolBenchError) as e:
        rebuild(arch, c, arch=arch)
    msg = str(e.value)
    assert msg.endswith(
        "does not fit the model vit_small_patch16_224: 2 shape mismatches [head.weight: file (32, 3) vs model (32, 32), head.bias: file (3,) vs model (32,)]"
    ), msg


def test_classifier_file_read_as_dino_names_the_variant_not_num_classes(tmp_path):
    """A supervised ResNet with a 3-class fc run with --variant dino (a feature model, which
    --num-classes does not change): the error said "pass --num-classes 3", which failed the same way."""
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict(), tmp_path / "r3.pth")
    for extra in ((), ("--num-classes", "3")):
        msg = _classify_error(tmp_path, "--checkpoint", tmp_path / "r3.pth", "--model", "resnet18", "--variant", "dino", *extra)
        assert msg.startswith(f"error: {tmp_path / 'r3.pth'} (state-dict, resnet18): class-count mismatch: the checkpoint has 3 classes"), (
            msg
        )
        assert "--variant dino" in msg and "pass --num-classes" not in msg, msg


def test_batchnorm_counters_may_be_absent_as_torch_allows(tmp_path):
    """A ResNet file without BatchNorm's ``num_batches_tracked`` (saved before torch 0.4.1, e.g. the
    first torchvision releases, or with the counters filtered out) loads exactly: torch's strict
    ``load_state_dict`` accepts it, and the counter plays no part in evaluation. Any other missing
    BatchNorm tensor is still an error."""
    arch = "resnet18"
    m = tiny(arch, 19, pool="gap", num_classes=3)
    sd = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    ref = timm.create_model(arch, num_classes=3, **TINY[arch]).eval()
    ref.load_state_dict(sd, strict=True)
    torch.save(sd, tmp_path / "old.pth")
    loaded = rebuild(arch, load_checkpoint(tmp_path / "old.pth"), arch=arch)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, ref(x))
    assert same_outputs(loaded, m, arch)
    torch.save({k: v for k, v in sd.items() if k != "layer1.0.bn1.running_var"}, tmp_path / "no_var.pth")
    with pytest.raises(SimpoolBenchError, match=r"1 missing keys \[layer1\.0\.bn1\.running_var\]$"):
        rebuild(arch, load_checkpoint(tmp_path / "no_var.pth"), arch=arch)


def _edited_tiny_checkpoint(tmp_path, name: str, edit) -> pathlib.Path:
    """conftest's tiny timm train.py checkpoint, read back safely (its ``args`` is an argparse
    Namespace, the one global safe loading allows), changed by ``edit`` and saved as ``name``."""
    src, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(src, map_location="cpu", weights_only=True)
    edit(obj)
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def _classify_error(tmp_path, *model_flags) -> str:
    """``classify`` with these model flags must stop with one ``error:`` line and exit 2; that line."""
    folder = build_image_folder(tmp_path / "imgs", counts=(1, 1))
    res = invoke_cli("classify", *model_flags, "--data", folder, "--device", "cpu", "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    return said(res)


def test_model_kwargs_timm_rejects_are_one_error_naming_the_file(tmp_path):
    def five_heads(obj):
        obj["args"].model_kwargs["num_heads"] = 5  # embed_dim 48 is not divisible by 5: timm asserts

    bad = _edited_tiny_checkpoint(tmp_path, "badkw.pth.tar", five_heads)
    msg = _classify_error(tmp_path, "--checkpoint", bad)
    assert msg.startswith(f"error: {bad}: args.model_kwargs {{"), msg
    assert "'img_size': 32" in msg and "'num_heads': 5" in msg, msg
    assert msg.endswith("rejected by timm vit_tiny_patch16_224: dim should be divisible by num_heads")


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("embed_dim", -4, "Trying to create tensor with negative dimension -4: [-4, 3, 16, 16]"),  # torch's RuntimeError
        ("num_heads", 0, "integer modulo by zero"),  # timm's ZeroDivisionError
        ("img_size", "big", "img_size 'big': expected an int or (height, width)"),  # was int('b'): ValueError
    ],
)
def test_model_kwargs_timm_fails_on_are_one_error_naming_the_file(tmp_path, name, value, reason):
    """args.model_kwargs that make timm's constructor raise something other than TypeError,
    AssertionError or ValueError (or an img_size that is no size) gave a traceback."""

    def edit(obj):
        obj["args"].model_kwargs[name] = value

    bad = _edited_tiny_checkpoint(tmp_path, "badkw.pth.tar", edit)
    msg = _classify_error(tmp_path, "--checkpoint", bad)
    assert msg.startswith(f"error: {bad}: args.model_kwargs {{") and f"{name!r}: {value!r}" in msg, msg
    assert msg.endswith(f"rejected by timm vit_tiny_patch16_224: {reason}"), msg


def test_weights_entry_that_is_none_is_named(tmp_path):
    def no_weights(obj):
        obj["state_dict"] = None

    bad = _edited_tiny_checkpoint(tmp_path, "none.pth.tar", no_weights)
    msg = _classify_error(tmp_path, "--checkpoint", bad)
    assert msg == f"error: checkpoint {bad}: 'state_dict' is None; expected a dict of tensors", msg
    torch.save({"state_dict": None, "epoch": 3}, tmp_path / "plain.pth")  # no args: read as a plain state dict
    with pytest.raises(SimpoolBenchError, match=r"plain\.pth: 'state_dict' is None; expected a dict of tensors"):
        load_checkpoint(tmp_path / "plain.pth")
    torch.save({"teacher": None, "student": None, "epoch": 3}, tmp_path / "dino.pth")
    with pytest.raises(SimpoolBenchError, match=r"dino\.pth: 'teacher' and 'student' are None; expected a dict of tensors"):
        load_checkpoint(tmp_path / "dino.pth")


@pytest.mark.parametrize("trust", [False, True])
def test_a_zip_cut_short_or_of_other_files_is_said_to_be_one(tmp_path, trust):
    """A torch.save zip cut short (an interrupted download: no central directory) was 'not a
    readable PyTorch checkpoint (RuntimeError: PytorchStreamReader failed ... there is a h...)';
    a zip archive of other files under a checkpoint or safetensors name was said to be a PyTorch
    pickle. Each is now what it is, in one line."""
    import zipfile

    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(whole.read_bytes()[:1500])
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(cut, trust=trust)
    assert str(e.value) == (
        f"checkpoint {cut}: a zip archive cut short at 1500 bytes (no central directory), not a whole checkpoint: an interrupted download or copy? fetch it again"
    )
    for name in ("model.pth", "model.safetensors"):
        archive = tmp_path / name
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("README.txt", "weights")
        with pytest.raises(SimpoolBenchError) as e:
            load_checkpoint(archive, trust=trust)
        msg = str(e.value)
        assert msg.startswith(f"checkpoint {archive}: "), msg
        assert msg.endswith("a zip archive of README.txt, not a checkpoint torch.save wrote: extract the checkpoint from it"), msg
        assert "PyTorch pickle" not in msg
    assert load_checkpoint(whole).format == "state-dict"


@pytest.mark.parametrize("trust", [False, True])
def test_a_zip_with_a_damaged_directory_is_said_to_be_one(tmp_path, trust):
    """A torch.save zip with a byte of its central directory changed (a file name that is no longer
    UTF-8): wording torch's failure, zipfile raised UnicodeDecodeError, a traceback."""
    import struct

    path = tmp_path / "damaged.pth"
    torch.save({"w": torch.zeros(1000)}, path)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the first central-directory entry: its name starts 46 bytes in
    assert struct.unpack("<H", data[entry + 8 : entry + 10])[0] & 0x800  # torch.save marks its names UTF-8
    data[entry + 47] = 0xC8  # 'archive/...' -> 'a\xc8chive/...'
    path.write_bytes(bytes(data))
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(path, trust=trust)
    assert str(e.value) == (
        f"checkpoint {path}: a damaged zip archive (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xc8 in position 1: "
        "invalid continuation byte), not a readable checkpoint: fetch it again"
    )


def test_pickle_under_a_safetensors_name_is_said_to_be_one(tmp_path):
    """torch.save's file named .safetensors (torch.load, too, reads that name as safetensors) or
    forced with --format safetensors: safetensors' error, and what the file really is."""
    torch.save({"w": torch.zeros(2)}, tmp_path / "p.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "p.pth")
    cases = [
        ("p.safetensors", None, "rename it to .pth"),
        ("p.safetensors", "safetensors", "rename it to .pth and drop --format safetensors"),
    ]
    for name, fmt, fix in [*cases, ("p.pth", "safetensors", "drop --format safetensors")]:
        with pytest.raises(SimpoolBenchError) as e:
            load_checkpoint(tmp_path / name, format=fmt)
        msg = str(e.value)
        assert msg.startswith(f"checkpoint {tmp_path / name}: not a readable safetensors file (Error while deserializing header"), msg
        assert f"; it looks like a PyTorch pickle file (torch.save), not safetensors: {fix}" in msg, msg
    assert load_checkpoint(tmp_path / "p.pth").format == "state-dict"


class _RunsCode:
    """Unpickling this would run a shell command (a malicious checkpoint)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "args": _RunsCode(marker), "version": 2}, tmp_path / "evil.pth.tar")
    with open(tmp_path / "evil_legacy.pth", "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(2)}, "x": _RunsCode(marker)}, f, protocol=2)
    for name in ("evil.pth.tar", "evil_legacy.pth"):
        for fn in (load_checkpoint, inspect_checkpoint):
            with pytest.raises(SimpoolBenchError) as e:
                fn(tmp_path / name)
            assert name in str(e.value) and "\n" not in str(e.value)
            assert not marker.exists()
    with pytest.raises(SimpoolBenchError, match=r"needs posix\.system, which could run arbitrary code.*pass --trust-checkpoint"):
        load_checkpoint(tmp_path / "evil.pth.tar")
    # a protocol-2 pickle (legacy torch.save) is refused as one too, not called "not a PyTorch checkpoint"
    with pytest.raises(SimpoolBenchError, match=r"evil_legacy\.pth: refused by safe loading: its pickle needs \S+, which could run"):
        load_checkpoint(tmp_path / "evil_legacy.pth")
    assert not marker.exists()


def test_trust_loads_a_checkpoint_needing_other_globals(tmp_path):
    arch = "resnet18"
    m = tiny(arch, 15, pool="simpool", gamma=2.0, num_classes=4)
    args = timm_train_args(model=arch, gamma=2.0, num_classes=4, output=pathlib.PurePosixPath("/out/run"))
    write_timm_train_checkpoint(tmp_path / "p.pth.tar", args, m, m)
    with pytest.raises(SimpoolBenchError, match=r"needs pathlib\.PurePosixPath.*pass --trust-checkpoint"):
        load_checkpoint(tmp_path / "p.pth.tar")
    c = load_checkpoint(tmp_path / "p.pth.tar", trust=True)
    assert c.format == "official-supervised" and any("trust=True" in n for n in c.notes)
    assert same_outputs(rebuild(arch, c), m, arch)


# ------------------------------------------------------------------------------------------ resolve_spec
def _ckpt(**kw) -> LoadedCheckpoint:
    base = dict(
        path=pathlib.Path("/x/file.pth"),
        sha256="0",
        format="official-supervised",
        variant="supervised",
        state_dict={},
        arch="vit_small_patch16_224",
        pool="simpool",
        gamma=1.25,
        gamma_known=True,
        arch_source="args.model",
        variant_known=True,
    )
    base.update(kw)
    return LoadedCheckpoint(**base)


def test_resolve_spec_flags_and_conflicts():
    c = _ckpt()
    assert resolve_spec(c) == ("vit_small_patch16_224", "simpool", 1.25, "supervised")
    assert resolve_spec(c, arch="vit_small_patch16_224.augreg_in21k", pool="simpool", gamma=1.25, variant="supervised")[2] == 1.25
    assert resolve_spec(c, gamma=UNSET)[2] == 1.25  # the one "not given" value
    for flags, both in [
        (dict(arch="resnet50"), ("resnet50", "vit_small_patch16_224")),
        (dict(pool="cls"), ("cls", "simpool")),
        (dict(gamma=2.0), ("2", "1.25")),
        (dict(gamma=1.26), ("1.26", "1.25")),
        (dict(gamma=None), ("none", "1.25")),
        (dict(variant="dino"), ("dino", "supervised")),
    ]:
        with pytest.raises(SimpoolBenchError) as e:
            resolve_spec(c, **flags)
        assert all(v in str(e.value) for v in both) and "file.pth" in str(e.value), str(e.value)
    guessed = _ckpt(arch_source="keys")  # an arch read off key shapes is a guess: the flag wins
    assert resolve_spec(guessed, arch="vit_small_patch16_384")[0] == "vit_small_patch16_384"
    unknown = _ckpt(arch=None, gamma=None, gamma_known=False, variant_known=False, pool=None)
    assert resolve_spec(unknown, arch="resnet50") == ("resnet50", "simpool", UNSET, "supervised")
    assert resolve_spec(unknown, arch="resnet50", pool="gap", variant="dino") == ("resnet50", "gap", None, "dino")
    assert resolve_spec(unknown, arch="resnet50", pool="GAP")[1] == "gap" and resolve_spec(c, pool="SimPool")[1] == "simpool"
    assert resolve_spec(unknown, arch="resnet50", gamma="none") == ("resnet50", "simpool", None, "supervised")
    assert resolve_spec(unknown, arch="convnext_tiny", gamma=UNSET)[2] is UNSET
    with pytest.raises(SimpoolBenchError, match="unknown architecture 'foo_net'"):
        resolve_spec(unknown, arch="foo_net")
    with pytest.raises(SimpoolBenchError, match="unknown architecture 'swin_tiny_patch4_window7_224'"):
        resolve_spec(unknown, arch="swin_tiny_patch4_window7_224")  # efficientnet: supported since issue 14
    with pytest.raises(SimpoolBenchError, match="--gamma 2.0 applies to --pool simpool only"):
        resolve_spec(unknown, arch="resnet50", pool="gap", gamma=2.0)
    with pytest.raises(SimpoolBenchError, match="--pool cls needs a ViT"):
        resolve_spec(unknown, arch="resnet50", pool="cls")
    with pytest.raises(SimpoolBenchError, match="has a SimPool beta"):
        resolve_spec(_ckpt(has_beta=True, gamma=None, gamma_known=False), gamma="none")
    with pytest.raises(SimpoolBenchError, match="--pool 'max'"):
        resolve_spec(c, pool="max")


# ------------------------------------------------------------------------------------------ inference, inspect, sha
@pytest.mark.parametrize(
    "name,kw,pool",
    [
        ("vit_tiny_patch16_224", {}, "cls"),
        ("vit_small_patch16_224", {"global_pool": "avg"}, "gap"),
        ("vit_base_patch16_224", {}, "cls"),
        ("resnet18", {}, "gap"),
        ("resnet50", {}, "gap"),
        ("convnext_tiny", {}, "gap"),
        ("convnext_small", {}, "gap"),
    ],
)
def test_arch_and_pool_from_full_size_key_shapes(name, kw, pool):
    sd = timm.create_model(name, pretrained=False, device="meta", **kw).state_dict()  # shapes only, no memory
    assert infer_arch(sd) == name and infer_pool(sd) == pool


def test_key_shapes_that_name_an_architecture_or_a_timm_simpool_layer():
    """A SimPool ViT has no CLS token (pos_embed (1, 196, d)): its shapes still name vit_small_patch16_224;
    a ConvNeXt whose last stage is not 8x the stem width is no standard name; timm's attention-pool
    head (q, kv, norm: global_pool='map') and look-alike names are no SimPool1d layer, timm's SimPool2d is."""
    from simpool_bench.checkpoints import find_timm_simpool_prefixes

    no_cls = timm.create_model("vit_small_patch16_224", class_token=False, global_pool="avg", device="meta").state_dict()
    assert "cls_token" not in no_cls and infer_arch(no_cls) == "vit_small_patch16_224"
    odd = timm.create_model("convnext_tiny", dims=(96, 192, 384, 1024), device="meta").state_dict()
    assert infer_arch(odd) is None
    mapped = timm.create_model("vit_tiny_patch16_224", global_pool="map", device="meta").state_dict()
    assert {"attn_pool.q.weight", "attn_pool.kv.weight", "attn_pool.norm.weight"} <= mapped.keys()
    assert find_timm_simpool_prefixes(mapped) == [] and infer_pool(mapped) == "map"
    look_alike = {k: torch.zeros(1) for k in ("to_q.weight", "to_k.weight", "to_norm.weight")}
    assert find_timm_simpool_prefixes(look_alike) == []
    layer = {f"head.pool.{k}": v for k, v in timm.layers.SimPool2d(8).state_dict().items()}
    assert find_timm_simpool_prefixes(layer) == ["head.pool."]


def test_inspect_reports_the_file(tmp_path):
    arch = "resnet18"
    m = tiny(arch, 16, pool="simpool", gamma=2.0, num_classes=4)
    write_timm_train_checkpoint(tmp_path / "r.pth.tar", timm_train_args(model=arch, gamma=2.0, num_classes=4), m, m)
    info = inspect_checkpoint(tmp_path / "r.pth.tar")
    assert {k: info[k] for k in ("format", "variant", "arch", "pool", "gamma", "beta", "num_classes", "weights", "epoch")} == dict(
        format="official-supervised",
        variant="supervised",
        arch=arch,
        pool="simpool",
        gamma=2.0,
        beta=False,
        num_classes=4,
        weights="state_dict_ema",
        epoch=99,
    )
    assert info["n_params"] == sum(p.numel() for p in m.parameters())
    assert info["container_keys"][:5] == ["epoch", "arch", "optimizer", "version", "args"]
    assert info["sha256"] == hashlib.sha256((tmp_path / "r.pth.tar").read_bytes()).hexdigest()
    assert info["key_mapping"] == ["state_dict_ema used (EMA weights, as timm does)"]


def test_sha256_file_streams(tmp_path):
    data = os.urandom(3 * (1 << 20) + 123)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk_size=1 << 16) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------- DINO backbones
@pytest.fixture
def tiny_api(monkeypatch):
    """``simpool_bench.api`` whose load_model builds the tiny stand-ins of TINY (load_model imports
    ``models.build_model`` when called, so the stand-in goes there)."""
    from simpool_bench import api, models

    def build(arch, **kw):
        return build_model(arch, **{**kw, **{k: v for k, v in TINY[arch].items() if k != "img_size"}})

    monkeypatch.setattr(models, "build_model", build)
    return api


def test_plain_dino_backbone_is_detected_and_runs_as_dino(tmp_path, tiny_api):
    """DINO's published layout (a bare VisionTransformer state dict, no head): format dino-backbone,
    variant dino, ImageNet mean/std, no classifier, DINO's position interpolation and attention."""
    arch = "vit_small_patch16_224"
    net = tiny(arch, 11, pool="cls", variant="dino")
    path = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(net.state_dict(), path)
    info = inspect_checkpoint(path)
    assert (info["format"], info["variant"], info["pool"], info["num_classes"]) == ("dino-backbone", "dino", "cls", None)
    assert any("DINO backbone" in n for n in info["notes"])
    api = tiny_api
    model, ckpt = api.load_model(api.ModelOptions(arch=arch, checkpoint=path, img_size=32))
    assert (model.variant, model.num_classes, model.pos_interp) == ("dino", 0, "dino")
    assert model.data_config["mean"] == (0.485, 0.456, 0.406) and model.data_config["std"] == (0.229, 0.224, 0.225)
    assert not any(b.attn.fused_attn for b in model.blocks)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 32)).logits is None
    # a headless timm export has the same keys: --format state-dict reads it as timm weights
    forced = load_checkpoint(path, format="state-dict")
    assert (forced.format, forced.variant, forced.dino_code) == ("state-dict", "supervised", False)
    timm_model, _ = api.load_model(api.ModelOptions(arch=arch, checkpoint=path, img_size=32, format="state-dict", num_classes=0))
    assert timm_model.pos_interp == "timm" and timm_model.data_config["mean"] == (0.5, 0.5, 0.5)


def test_dino_training_checkpoint_and_official_simpool_run_dino_code(tmp_path, tiny_api):
    api = tiny_api
    arch = "vit_small_patch16_224"
    teacher = tiny(arch, 12, pool="cls", variant="dino")
    path = tmp_path / "checkpoint.pth"
    write_dino_checkpoint(path, dino_args(mode="official"), teacher.state_dict(), teacher.state_dict(), 32, teacher_ddp=False, use_bn=False)
    model, ckpt = api.load_model(api.ModelOptions(checkpoint=path, img_size=32))
    assert (ckpt.format, model.pos_interp, model.dino_pos_quirk) == ("official-dino", "dino", False)
    simpool = tiny(arch, 13, pool="simpool", gamma=1.25, variant="dino")
    write_dino_checkpoint(path, dino_args(), simpool.state_dict(), simpool.state_dict(), 32, teacher_ddp=False, use_bn=False)
    model, _ = api.load_model(api.ModelOptions(checkpoint=path, img_size=32))
    assert (model.pos_interp, model.dino_pos_quirk) == ("dino", True)  # SPEC quirk 1 kept for official SimPool DINO
    model, _ = api.load_model(api.ModelOptions(checkpoint=path, img_size=32, pos_interp="timm"))
    assert model.pos_interp == "timm"


def test_dino_backbone_detection_edges(tmp_path):
    resnet = {k: v for k, v in tiny("resnet18", 14, pool="gap").state_dict().items() if not k.startswith("fc.")}
    torch.save(resnet, tmp_path / "dino_resnet50_pretrain.pth")
    c = load_checkpoint(tmp_path / "dino_resnet50_pretrain.pth")
    assert (c.format, c.variant, c.pool) == ("dino-backbone", "dino", "gap")
    with_head = tiny("vit_small_patch16_224", 15, pool="cls", num_classes=5).state_dict()
    torch.save(with_head, tmp_path / "vit_head.pth")
    assert load_checkpoint(tmp_path / "vit_head.pth").format == "state-dict"
    with pytest.raises(SimpoolBenchError, match="dino-backbone expects a bare DINO backbone"):
        load_checkpoint(tmp_path / "vit_head.pth", format="dino-backbone")
    # a DINO backbone saved from its DDP wrapper is one too
    dino_vit = tiny("vit_small_patch16_224", 16, pool="cls", variant="dino").state_dict()
    torch.save({f"module.{k}": v for k, v in dino_vit.items()}, tmp_path / "ddp_backbone.pth")
    c = load_checkpoint(tmp_path / "ddp_backbone.pth")
    assert (c.format, c.variant) == ("dino-backbone", "dino") and c.state_dict.keys() == dino_vit.keys()
    # headless timm exports that are no DINO backbone (they run as timm's model, with its preprocessing):
    # a GAP ViT (fc_norm), one with register tokens, one without a final norm
    from simpool_bench.checkpoints import is_dino_backbone

    assert is_dino_backbone(dino_vit)
    for kw in (dict(global_pool="avg"), dict(reg_tokens=4)):
        headless = timm.create_model("vit_tiny_patch16_224", num_classes=0, device="meta", **kw).state_dict()
        assert "head.weight" not in headless and not is_dino_backbone(headless), kw
    assert not is_dino_backbone({k: v for k, v in dino_vit.items() if not k.startswith("norm.")})


# ---------------------------------------------------------------------------------- position grids
def test_vit_checkpoint_of_another_position_grid_is_built_at_its_own_size(tmp_path):
    """A ViT trained at 384 (timm train.py --model vit_*_384, args.model_kwargs without img_size; or
    a plain state dict) holds a 24x24 position grid: it is built at that grid, so its weights load
    exactly and it computes timm's own model's logits, and is evaluated at timm's input size for it;
    it was built at 224 and refused ('does not fit the model vit_tiny_patch16_384: pos_embed: file
    (1, 577, 192) vs model (1, 197, 192)')."""
    from simpool_bench import api

    arch = "vit_tiny_patch16_384"
    torch.manual_seed(0)
    ref = timm.create_model(arch, pretrained=False, depth=1, num_classes=3).eval()
    args = argparse.Namespace(model=arch, gp="token", gamma=None, num_classes=3, model_kwargs={"depth": 1}, img_size=None)
    path = tmp_path / "vit384.pth.tar"
    torch.save({"state_dict": ref.state_dict(), "epoch": 0, "arch": arch, "args": args, "version": 2}, path)
    model, _ = api.load_model(api.ModelOptions(checkpoint=path))
    assert model.data_config["input_size"] == timm.data.resolve_model_data_config(ref)["input_size"] == (3, 384, 384)
    x = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref(x))


@pytest.mark.parametrize(
    "name,kw",
    [
        ("deit_tiny_distilled_patch16_224", {}),
        ("vit_tiny_patch16_224", dict(reg_tokens=4)),
        ("vit_tiny_patch16_224", dict(reg_tokens=4, no_embed_class=True)),
    ],
)
def test_position_grid_of_files_with_distillation_or_register_tokens(name, kw):
    """The size a ViT file is built at counts its position embeddings without the prefix tokens that
    have one (CLS, distillation, registers): timm's model built at 384 has a file that says 384."""
    from simpool_bench.loading import checkpoint_img_size

    sd = timm.create_model(name, pretrained=False, img_size=384, device="meta", **kw).state_dict()  # shapes only
    c = LoadedCheckpoint(path=pathlib.Path("f.pth"), sha256="0", format="state-dict", variant="supervised", state_dict=sd)
    assert checkpoint_img_size(c) == 384


@pytest.mark.parametrize("arch,img_size", [("vit_small_patch8_224", 128), ("vit_tiny_patch16_224", 160)])
def test_position_grid_size_is_grid_times_the_files_patch_size(arch, img_size):
    """The input size of a ViT file: its position grid side times its own patch size (8 or 16)."""
    from simpool_bench.loading import checkpoint_img_size

    sd = timm.create_model(arch, pretrained=False, img_size=img_size, device="meta").state_dict()  # shapes only
    c = LoadedCheckpoint(path=pathlib.Path("f.pth"), sha256="0", format="state-dict", variant="supervised", state_dict=sd)
    assert checkpoint_img_size(c) == img_size


def test_plain_vit_state_dict_of_another_position_grid(tmp_path, tiny_api):
    """A plain state dict at another grid (the tiny stand-in, 4x4 patches of 16 = 64 pixels), given --model."""
    small = "vit_small_patch16_224"
    torch.manual_seed(20)
    src = build_model(small, pool="simpool", gamma=1.25, num_classes=3, **{**TINY[small], "img_size": 64}).eval()
    torch.save(src.state_dict(), tmp_path / "plain64.pth")
    model, _ = tiny_api.load_model(tiny_api.ModelOptions(arch=small, checkpoint=tmp_path / "plain64.pth", gamma=1.25))
    assert model.data_config["input_size"] == (3, 64, 64)
    assert same_outputs(model, src, small)
    # an explicit img_size still decides (the file's grid then has to match it)
    with pytest.raises(SimpoolBenchError, match=r"pos_embed: file \(1, 16, 32\) vs model \(1, 4, 32\)"):
        tiny_api.load_model(tiny_api.ModelOptions(arch=small, checkpoint=tmp_path / "plain64.pth", gamma=1.25, img_size=32))


def test_img_size_given_and_in_the_files_model_kwargs(tmp_path):
    """--img-size given for a train.py file whose args.model_kwargs hold img_size too: the flag's
    value is the one built (passed once: twice would be a TypeError), here the file's own grid."""
    from simpool_bench.api import ModelOptions, load_model

    path, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")
    model, ckpt = load_model(ModelOptions(checkpoint=path, img_size=32))
    assert ckpt.model_kwargs["img_size"] == 32 and model.data_config["input_size"] == (3, 32, 32)
    with pytest.raises(SimpoolBenchError, match=r"pos_embed: file \(1, 4, 48\) vs model \(1, 9, 48\)"):
        load_model(ModelOptions(checkpoint=path, img_size=48))


def test_a_simpool_file_without_gamma_runs_with_the_default_and_says_so(tmp_path, capsys):
    """A SimPool file that records no gamma (a train.py file whose args lack it; a bare state dict;
    timm's SimPool layer, whose default is none, stores none either) runs with the paper's default,
    and one warning line says so; a --gamma given, or a file that records it, runs without it."""
    from simpool_bench.api import ModelOptions, load_model

    recorded, _ = build_tiny_checkpoint(tmp_path / "recorded.pth.tar", gamma=2.0)
    obj = torch.load(recorded, weights_only=False)
    del obj["args"].gamma
    silent = tmp_path / "no_gamma.pth.tar"
    torch.save(obj, silent)

    model, _ = load_model(ModelOptions(checkpoint=silent))
    assert model.gamma == 1.25
    assert " ".join(capsys.readouterr().err.split()) == (
        f"warning: checkpoint {silent} records no SimPool gamma; it runs with 1.25, the paper's default for this family: "
        "pass --gamma to say which it was trained with"
    )
    model, _ = load_model(ModelOptions(checkpoint=silent, gamma=None))
    assert model.gamma is None and capsys.readouterr().err == ""
    model, _ = load_model(ModelOptions(checkpoint=recorded))
    assert model.gamma == 2.0 and capsys.readouterr().err == ""


def test_an_architecture_guessed_from_shapes_says_whose_preprocessing_it_runs_with(tmp_path, capsys):
    """A bare supervised ViT state dict names no architecture: it runs as the timm name its shapes
    match, with that name's mean, std and crop (a DeiT file would want others), and one warning line
    says so; --model, or the preprocessing flags, run without it."""
    from simpool_bench.api import ModelOptions, load_model

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4)
    bare = tmp_path / "bare.pth"
    torch.save({"model": net.state_dict()}, bare)
    model, ckpt = load_model(ModelOptions(checkpoint=bare))
    assert ckpt.arch_source == "keys" and model.arch == "vit_tiny_patch16_224"
    cfg = timm.data.resolve_model_data_config(net)
    assert " ".join(capsys.readouterr().err.split()) == (
        f"warning: checkpoint {bare} names no architecture; its shapes match vit_tiny_patch16_224, run with that timm name's "
        f"preprocessing (mean {tuple(cfg['mean'])}, std {tuple(cfg['std'])}, crop_pct {cfg['crop_pct']}): pass --model "
        "(e.g. deit_small_patch16_224), or --mean/--std/--crop-pct, if it was trained otherwise"
    )
    load_model(ModelOptions(checkpoint=bare, arch="deit_tiny_patch16_224"))
    load_model(ModelOptions(checkpoint=bare, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)))
    assert capsys.readouterr().err == ""


def test_a_train_py_file_validated_with_other_preprocessing_says_so(tmp_path, capsys):
    """timm train.py validates with resolve_data_config(vars(args)): a file trained with --crop-pct
    0.95 --interpolation bilinear logged its top-1 with those. Runs keep the model's pretrained config
    (timm validate.py's), and one warning line names the file's values, ours and the flags that give
    the file's; inspect lists them. Unset arguments (None, '') say nothing; given flags silence it."""
    from simpool_bench.api import ModelOptions, load_model

    arch = "vit_small_patch16_224"
    net = tiny(arch, 5, pool="simpool", gamma=1.25, num_classes=4)
    plain = tmp_path / "plain.pth.tar"
    write_timm_train_checkpoint(plain, timm_train_args(num_classes=4, model_kwargs=TINY[arch]), net, None)
    model, ckpt = load_model(ModelOptions(checkpoint=plain))
    assert ckpt.train_eval == {} and capsys.readouterr().err == ""

    args = timm_train_args(num_classes=4, model_kwargs=TINY[arch], crop_pct=0.95, interpolation="bilinear", mean=[0.5, 0.5, 0.5])
    tuned = tmp_path / "tuned.pth.tar"
    write_timm_train_checkpoint(tuned, args, net, None)
    model, ckpt = load_model(ModelOptions(checkpoint=tuned))
    assert ckpt.train_eval == {"crop_pct": 0.95, "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5)}
    cfg = timm.data.resolve_model_data_config(timm.create_model(arch, pretrained=False))
    assert (cfg["crop_pct"], cfg["interpolation"], tuple(cfg["mean"])) == (0.9, "bicubic", (0.5, 0.5, 0.5))  # the mean agrees
    assert (model.data_config["crop_pct"], model.data_config["interpolation"]) == (0.9, "bicubic")
    assert " ".join(capsys.readouterr().err.split()) == (
        f"warning: checkpoint {tuned} was validated in train.py with interpolation bilinear, crop_pct 0.95 (its args); "
        "this run uses interpolation bicubic, crop_pct 0.9, the model's pretrained config at its training size: "
        "pass --interpolation bilinear --crop-pct 0.95 to evaluate as train.py did"
    )
    model, _ = load_model(ModelOptions(checkpoint=tuned, crop_pct=0.95, interpolation="bilinear"))
    assert model.data_config["crop_pct"] == 0.95 and capsys.readouterr().err == ""
    assert any(
        n.startswith("train.py validated it with interpolation bilinear, mean (0.5, 0.5, 0.5), crop_pct 0.95")
        for n in inspect_checkpoint(tuned)["notes"]
    )


def _entry_data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where an entry's bytes begin: after its local header (30 bytes, then its name and extra field)."""
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def _with_one_weight_byte_changed(src: pathlib.Path, dst: pathlib.Path) -> str:
    """``src`` with one bit flipped in the middle of its largest tensor's bytes, written to ``dst``;
    the name of that zip entry."""
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data[_entry_data_start(data, info) + info.file_size // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    return info.filename


def _damaged(entry: str) -> str:
    return f"damaged: its entry {entry!r} fails its CRC-32 check (its bytes are not those written: a faulty download, copy or disk?); fetch it again"


@pytest.mark.parametrize("trust", [False, True])
def test_a_weight_byte_changed_after_saving_is_refused_not_loaded(tmp_path, trust):
    """``torch.load`` never checks the CRC-32 its zip records for each entry: a checkpoint with one
    byte of a weight changed (a faulty copy, download or disk) loaded that wrong weight without a
    word. The CRC-32s are now checked before anything is read."""
    src, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")
    bad = tmp_path / "flipped.pth.tar"
    entry = _with_one_weight_byte_changed(src, bad)
    with torch.serialization.safe_globals([argparse.Namespace]):
        before = torch.load(src, map_location="cpu", weights_only=True)["state_dict"]
        after = torch.load(bad, map_location="cpu", weights_only=True)["state_dict"]
    assert [k for k in before if not torch.equal(before[k], after[k])] != []  # torch.load alone: a wrong weight
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(bad, trust=trust)
    assert str(e.value) == f"checkpoint {bad}: {_damaged(entry)}"
    loaded = load_checkpoint(src, trust=trust)  # the file as saved still loads, every weight its own
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in before.items())
    assert _classify_error(tmp_path, "--checkpoint", bad) == f"error: checkpoint {bad}: {_damaged(entry)}"


def test_a_zip_entry_whose_local_header_was_changed_is_damaged(tmp_path):
    """A local header that no longer matches the zip's directory (its name changed) cannot be
    checked: one line saying the file is damaged, not the reader's detail."""
    src, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo("tiny.pth/data.pkl")
    data[info.header_offset + 30] ^= 0x20  # the first letter of the entry's name: 't' -> 'T'
    bad = tmp_path / "renamed.pth.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(SimpoolBenchError) as e:
        load_checkpoint(bad)
    assert str(e.value) == (
        f"checkpoint {bad}: damaged: its entry 'tiny.pth/data.pkl' cannot be read (File name in directory 'tiny.pth/data.pkl' "
        "and header b'Tiny.pth/data.pkl' differ.: a faulty download, copy or disk?); fetch it again"
    )


def test_a_backbone_prefix_means_dino_only_with_dinos_head_or_a_bare_dino_backbone_inside(tmp_path):
    """``backbone.*`` was always read as DINO's MultiCropWrapper (variant dino, head.* dropped). A
    supervised classifier saved as some wrapper's ``backbone`` then lost its timm transform and
    model code, and a linear head beside it was dropped as "DINO head keys". Now: DINO's head
    beside it (head.mlp.*, head.last_layer.*) or a bare DINO backbone inside (no classifier) is
    DINO, as before; anything else keeps the variant its keys give, with a note."""
    arch = "vit_small_patch16_224"
    sup = tiny(arch, 3, pool="cls", num_classes=5)  # a supervised ViT with its classifier (head.weight)
    path = tmp_path / "wrapped_supervised.pth"
    torch.save({f"backbone.{k}": v for k, v in sup.state_dict().items()}, path)
    c = load_checkpoint(path)
    assert (c.variant, c.num_classes, c.key_mapping) == ("supervised", 5, ["stripped backbone."])
    assert c.notes == [
        "backbone.* without DINO's head beside it: read as the model its keys give, not as DINO (--variant dino reads it so)"
    ]
    assert same_outputs(rebuild(arch, c, arch=arch), sup, arch)  # the classifier and timm's model code, as saved
    assert resolve_spec(c, arch=arch, variant="dino")[3] == "dino"  # the way out the note names

    body = tiny(arch, 4, pool="cls", num_classes=0)
    g = torch.Generator().manual_seed(0)
    linear = {"head.weight": torch.randn(5, 32, generator=g), "head.bias": torch.randn(5, generator=g)}
    path = tmp_path / "backbone_and_linear.pth"
    torch.save({**{f"backbone.{k}": v for k, v in body.state_dict().items()}, **linear}, path)
    c = load_checkpoint(path)
    assert (c.variant, c.num_classes) == ("supervised", None)
    assert c.key_mapping == ["stripped backbone.", "dropped 2 other non-backbone keys"]  # before: "2 DINO head keys"
    assert (
        c.notes[0]
        == "head.weight, head.bias beside backbone.*: not DINO's head (head.mlp, head.last_layer), and not read (only the backbone is)"
    )

    dino = tiny(arch, 5, pool="cls", variant="dino")  # a bare DINO backbone: DINO with or without its head beside it
    assert is_dino_backbone(dino.state_dict())
    for name, extra in (("bare", {}), ("with_head", {f"head.{k}": v for k, v in dino_head(32, False, 6).items()})):
        path = tmp_path / f"dino_{name}.pth"
        torch.save({**{f"backbone.{k}": v for k, v in dino.state_dict().items()}, **extra}, path)
        c = load_checkpoint(path)
        assert (c.variant, c.num_classes, c.notes) == ("dino", None, [])
        assert c.key_mapping == ["stripped backbone."] + ([f"dropped {len(extra)} DINO head keys (head.*)"] if extra else [])
        assert same_outputs(rebuild(arch, c, arch=arch), dino, arch)
