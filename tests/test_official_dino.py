"""End to end against the official SimPool DINO code (``tests/simpool_official_reference.py``: the
ViT, ResNet-50 and ConvNeXt of billpsomas/simpool ``self_supervised/`` in simpool mode, DINO's
MultiCropWrapper/DINOHead and ``main_dino.py``'s ``save_dict``): the teacher (default) or student
backbone, ``module.``/``backbone.`` stripped and the DINO head dropped, gives the official pooled
features and SimPool attention, with the ViT's ``npatch = tokens - 1`` position quirk; see
``test_official_code.py`` for the comparison conventions (batch scope; batch of two copies).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import simpool_official_reference as R
import torch
from PIL import Image
from simpool_official_reference import assert_same, close, official_run, trained
from torchvision import transforms as T

from simpool_bench import api
from simpool_bench.checkpoints import inspect_checkpoint
from simpool_bench.transforms import classification_config, eval_transform

pytestmark = pytest.mark.usefixtures("one_thread")


def ours(path: Path, x: torch.Tensor, **options):
    model, ckpt = api.load_model(api.ModelOptions(checkpoint=path, **options))
    with torch.no_grad():
        out = model(x)
    return out, model, ckpt


def _dino_vit(tmp_path: Path, gamma: float | None):
    """main_dino.py's save_dict of a vit_tiny SimPool run (DINO args hold no depth/width to shrink)."""
    torch.manual_seed(1)
    vit = {"embed_dim": 192, "depth": 12, "num_heads": 3}
    student = R.MultiCropWrapper(trained(R.DinoSimPoolViT(gamma=gamma, **vit)), R.DINOHead(192, 10))
    teacher = R.MultiCropWrapper(trained(R.DinoSimPoolViT(gamma=gamma, **vit)), R.DINOHead(192, 10)).eval()
    args = R.dino_args(arch="vit_tiny", gamma=gamma)
    return R.save_dino_checkpoint(tmp_path / "checkpoint.pth", args, student, teacher, teacher_ddp=False), student, teacher


def test_dino_vit_teacher_gives_the_official_forward_with_its_position_quirk(tmp_path):
    path, student, teacher = _dino_vit(tmp_path, 1.25)
    bb = teacher.backbone
    facts = inspect_checkpoint(path)
    assert (facts["format"], facts["variant"], facts["arch"], facts["pool"], facts["gamma"], facts["beta"], facts["weights"]) == (
        "official-dino",
        "dino",
        "vit_tiny_patch16_224",
        "simpool",
        1.25,
        True,  # DINO's ViT SimPool is built with use_beta=True
        "teacher",
    )
    for hw in ((224, 224), (96, 160)):  # the trained size, and an odd non-square one
        x = torch.randn(2, 3, *hw)
        out, model, _ = ours(path, x, min_scope="batch")
        assert out.logits is None and model.dino_pos_quirk and model.simpool_layer.use_beta
        assert_same(out, None, *official_run(bb, bb.simpool, x, bb)[1:], f"dino {hw}")
        alone = official_run(bb, bb.simpool, torch.cat([x[:1]] * 2), bb)
        with torch.no_grad():
            one = model(x[:1])  # a batch of one: the batch minimum is the sample's
        assert_same(one, None, alone[1][:1], alone[2][:1], f"dino {hw} batch of one")
    # its images as eval_knn.py / eval_linear.py transform them (a 73x50 image: resize and crop at work)
    dino_eval = T.Compose(
        [T.Resize(256, interpolation=3), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 73, 3), dtype=np.uint8))
    assert torch.equal(eval_transform(classification_config(model.data_config))(image), dino_eval(image))
    # the quirk is what makes the official numbers at 224: without it they differ
    x = torch.randn(2, 3, 224, 224)
    off, _, _ = ours(path, x, min_scope="batch", dino_pos_quirk=False)
    assert not close(off.features, official_run(bb, bb.simpool, x, bb)[1], atol=1e-3)
    # the student on request (DDP's module. and backbone. stripped, DINO head dropped)
    sb = student.backbone.eval()
    out, _, ckpt = ours(path, x, prefer="student", min_scope="batch")
    assert ckpt.source == "student"
    assert_same(out, None, *official_run(sb, sb.simpool, x, sb)[1:], "dino student")


def test_dino_vit_without_gamma_whose_teacher_holds_a_beta_runs_as_the_official_eval(tmp_path):
    """main_dino.py builds the ViT teacher without ``gamma=args.gamma`` (so with the default 1.25 and a
    beta) whatever ``--gamma`` says. A ``--gamma None`` file whose teacher holds ``simpool.beta``:
    eval_knn.py ``--gamma None`` builds SimPool without gamma (and so without beta) and loads the
    teacher non-strictly, beta left out. We did not load it at all (use_beta without a gamma)."""
    torch.manual_seed(3)
    vit = {"embed_dim": 192, "depth": 12, "num_heads": 3}
    student = R.MultiCropWrapper(trained(R.DinoSimPoolViT(gamma=None, **vit)), R.DINOHead(192, 10))
    teacher = R.MultiCropWrapper(trained(R.DinoSimPoolViT(**vit)), R.DINOHead(192, 10))  # as main_dino.py: no gamma passed
    assert "backbone.simpool.beta" in teacher.state_dict()
    path = R.save_dino_checkpoint(tmp_path / "checkpoint.pth", R.dino_args(arch="vit_tiny", gamma=None), student, teacher, False)
    evaluated = R.DinoSimPoolViT(gamma=None, **vit).eval()  # eval_knn.py --gamma None
    missing, unexpected = R.load_pretrained_weights(evaluated, path, "teacher")
    assert missing == [] and "simpool.beta" in unexpected
    facts = inspect_checkpoint(path)
    assert (facts["gamma"], facts["beta"]) == (None, False)
    assert any("dropped simpool.beta" in r for r in facts["key_mapping"])
    x = torch.randn(2, 3, 224, 224)
    out, model, _ = ours(path, x, min_scope="batch")
    assert model.gamma is None and not model.simpool_layer.use_beta
    assert_same(out, None, *official_run(evaluated, evaluated.simpool, x, evaluated)[1:], "dino no gamma")


def test_dino_cnn_teachers_give_the_official_forward(tmp_path):
    torch.manual_seed(2)
    # ResNet-50 with a BatchNorm DINO head: the teacher is DDP-wrapped too (module.backbone.*)
    te = R.MultiCropWrapper(trained(R.DinoSimPoolResNet(gamma=2.0)), R.DINOHead(2048, 10, use_bn=True)).eval()
    st = copy.deepcopy(te)  # main_dino.py starts the teacher from the student; only the teacher is read here
    path = R.save_dino_checkpoint(tmp_path / "r50.pth", R.dino_args(arch="resnet50", gamma=2.0, use_bn_in_head=True), st, te, True)
    x = torch.randn(2, 3, 96, 80)
    out, _, ckpt = ours(path, x, min_scope="batch")
    assert (ckpt.format, ckpt.arch, ckpt.gamma, ckpt.has_beta, ckpt.source) == ("official-dino", "resnet50", 2.0, False, "teacher")
    bb = te.backbone
    assert_same(out, None, *official_run(bb, bb.simpool, x, bb)[1:], "dino resnet50")
    # ConvNeXt (facebookresearch layout), no gamma: SimPool, then the final norm
    te = R.MultiCropWrapper(trained(R.DinoSimPoolConvNeXt(gamma=None)), R.DINOHead(768, 10)).eval()
    st = copy.deepcopy(te)
    path = R.save_dino_checkpoint(tmp_path / "cnx.pth", R.dino_args(arch="convnext_tiny", gamma=None), st, te, False)
    x = torch.randn(2, 3, 64, 96)
    out, _, ckpt = ours(path, x)
    assert (ckpt.format, ckpt.arch, ckpt.gamma, ckpt.gamma_known, ckpt.has_beta) == ("official-dino", "convnext_tiny", None, True, False)
    bb = te.backbone
    assert_same(out, None, *official_run(bb, bb.simpool, x, bb)[1:], "dino convnext")
