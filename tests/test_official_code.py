"""End to end against the official SimPool code (``tests/simpool_official_reference.py``, a literal
re-statement of billpsomas/simpool's ``sp.py``, timm-fork ViT/ResNet/ConvNeXt and DINO models):
checkpoints saved exactly as the official ``train.py`` / ``main_dino.py`` save them (official key
names and containers, small random weights) give, through the API and the CLI, the official
logits, top-1 decisions, pooled features and SimPool attention ``a``, and ``inspect`` reports what
the files hold.

The official forward couples the images of a batch (``vv.min()`` over the whole batch tensor) and
cannot run a batch of one (``x.squeeze()``). So: ``--min-scope batch`` is compared with the official
forward on the same batch; the default ``sample`` scope, at any batch size, with the official
forward on a batch of two copies of each image (the batch minimum is then that image's own, and the
squeeze keeps the batch axis).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simpool_official_reference as R
import torch
from PIL import Image
from simpool_official_reference import assert_same, official_run, per_image_official, trained

from simpool_bench import api
from simpool_bench.checkpoints import inspect_checkpoint
from simpool_bench.map_store import MapStore

from conftest import build_image_folder, build_wsol_dataset, invoke_cli, said

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_VIT = {"embed_dim": 48, "depth": 2, "num_heads": 2}
TINY_CONVNEXT = {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}
# The fork's default cfg of vit_small_patch16_224 (``_cfg``): what its validate.py evaluates with.
FORK_VIT_EVAL = {"crop_pct": 0.9, "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def ours(path: Path, x: torch.Tensor, **options):
    model, ckpt = api.load_model(api.ModelOptions(checkpoint=path, **options))
    with torch.no_grad():
        out = model(x)
    return out, model, ckpt


# --------------------------------------------------------------------------- supervised (timm fork)
def _supervised(kind: str, gamma, tmp_path: Path, pool: str = "simpool"):
    """(file, official EMA model, its SimPool, pre-logits fn, image size) of a fork train.py checkpoint."""
    torch.manual_seed(0)
    if kind == "vit":
        make = lambda: trained(R.SupervisedViT(num_classes=5, global_pool=pool, gamma=gamma, **TINY_VIT))  # noqa: E731
        args = R.timm_train_args(model="vit_small_patch16_224", gp=pool, gamma=gamma, num_classes=5, model_kwargs=TINY_VIT)
    elif kind == "resnet":
        make = lambda: trained(R.SupervisedResNet("resnet18", num_classes=5, gamma=gamma))  # noqa: E731
        args = R.timm_train_args(model="resnet18", gp="simpool", gamma=gamma, num_classes=5)
    else:
        make = lambda: trained(R.SupervisedConvNeXt("convnext_tiny", num_classes=5, gamma=gamma, **TINY_CONVNEXT))  # noqa: E731
        args = R.timm_train_args(model="convnext_tiny", gp="simpool", gamma=gamma, num_classes=5, model_kwargs=TINY_CONVNEXT)
    raw, ema = make(), make()
    path = R.save_timm_train_checkpoint(tmp_path / f"{kind}_supervised_simpool.pth.tar", args, raw, ema)
    if kind == "vit":
        sp = ema.gp.pool if pool == "simpool" else None
        return path, ema, sp, lambda x: ema.forward_head(ema.forward_features(x), pre_logits=True), (224, 224)
    if kind == "resnet":
        return path, ema, ema.global_pool.pool, lambda x: ema.forward_head(ema._body(ema, x), pre_logits=True), (96, 80)
    return path, ema, ema.head.global_pool.pool, lambda x: ema.forward_head(ema.forward_features(x), pre_logits=True), (96, 80)


@pytest.mark.parametrize("kind,gamma", [("vit", 1.25), ("vit", None), ("resnet", 2.0), ("convnext", 2.0), ("convnext", None)])
def test_supervised_files_give_the_official_forward(tmp_path, kind, gamma):
    path, official, sp, pre, hw = _supervised(kind, gamma, tmp_path)
    x = torch.randn(3, 3, *hw)

    facts = inspect_checkpoint(path)
    arch = {"vit": "vit_small_patch16_224", "resnet": "resnet18", "convnext": "convnext_tiny"}[kind]
    assert (facts["format"], facts["variant"], facts["arch"], facts["pool"], facts["weights"]) == (
        "official-supervised",
        "supervised",
        arch,
        "simpool",
        "state_dict_ema",  # EMA, as timm's train.py reports its accuracy
    )
    assert facts["gamma_known"] and facts["gamma"] == gamma and facts["beta"] is False and facts["num_classes"] == 5

    # the official coupling of the batch, reproduced by --min-scope batch
    out, model, _ = ours(path, x, min_scope="batch")
    assert model.gamma == gamma and model.simpool_layer.use_beta is False
    assert_same(out, *official_run(official, sp, x, pre), f"{kind} batch scope")
    # the default scope: each image as the official code gives it alone, at batch size 3 and 1
    alone = per_image_official(official, sp, x, pre)
    out, model, _ = ours(path, x)
    assert_same(out, *alone, f"{kind} sample scope")
    with torch.no_grad():
        one = model(x[1:2])
    assert_same(one, *(t[1:2] for t in alone), f"{kind} batch of one")
    # ...which the official code itself cannot run: sp.py squeezes the batch axis away
    with pytest.raises((IndexError, RuntimeError)):
        official(x[:1])


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_supervised_vit_baselines_give_the_official_forward(tmp_path, pool):
    path, official, _, pre, hw = _supervised("vit", None, tmp_path, pool=pool)
    x = torch.randn(2, 3, *hw)
    out, _, ckpt = ours(path, x)
    assert (ckpt.pool, ckpt.gamma) == ({"avg": "gap", "token": "cls"}[pool], None)
    assert_same(out, *official_run(official, None, x, pre), pool)


def test_supervised_vit_file_with_a_beta_adds_it_after_the_power_mean(tmp_path):
    """The released supervised ViT-S gamma-1.25 file is ``vits_gem1.25_supervised_beta.pth.tar``: a
    ``gp.pool.beta`` the published fork does not build. sp.py with ``use_beta`` adds it after the
    power mean; so do we (not silently dropped, not a load error)."""
    torch.manual_seed(4)
    models = []
    for _ in range(2):
        m = R.SupervisedViT(num_classes=5, gamma=1.25, **TINY_VIT)
        m.gp.pool = R.SimPool(dim=TINY_VIT["embed_dim"], gamma=1.25, use_beta=True)
        models.append(trained(m))
    raw, ema = models
    args = R.timm_train_args(model="vit_small_patch16_224", gp="simpool", gamma=1.25, num_classes=5, model_kwargs=TINY_VIT)
    path = R.save_timm_train_checkpoint(tmp_path / "vits_gem1.25_supervised_beta.pth.tar", args, raw, ema)
    assert "gp.pool.beta" in torch.load(path, weights_only=False)["state_dict_ema"]
    x = torch.randn(2, 3, 224, 224)
    out, model, ckpt = ours(path, x, min_scope="batch")
    assert ckpt.has_beta and model.simpool_layer.use_beta
    pre = lambda x: ema.forward_head(ema.forward_features(x), pre_logits=True)  # noqa: E731
    assert_same(out, *official_run(ema, ema.gp.pool, x, pre), "beta")


def test_supervised_raw_weights_on_request(tmp_path):
    path, official, sp, pre, hw = _supervised("convnext", 2.0, tmp_path)
    raw = R.SupervisedConvNeXt("convnext_tiny", num_classes=5, gamma=2.0, **TINY_CONVNEXT).eval()
    raw.load_state_dict(torch.load(path, weights_only=False)["state_dict"])
    x = torch.randn(2, 3, *hw)
    out, _, ckpt = ours(path, x, prefer="raw", min_scope="batch")
    assert ckpt.source == "state_dict"
    assert_same(
        out, *official_run(raw, raw.head.global_pool.pool, x, lambda x: raw.forward_head(raw.forward_features(x), pre_logits=True)), "raw"
    )


# -------------------------------------------------------------------------------------------- CLI
def _fork_eval_tensor(path: Path) -> torch.Tensor:
    """The fork's validate.py transform of vit_small_patch16_224 (timm's eval transform of its cfg)."""
    from timm.data import create_transform

    t = create_transform(input_size=(3, 224, 224), is_training=False, **FORK_VIT_EVAL)
    return t(Image.open(path).convert("RGB"))


def test_cli_classify_inspect_and_extract_give_the_official_decisions_features_and_maps(tmp_path):
    path, official, sp, pre, _ = _supervised("vit", 1.25, tmp_path)
    shown = said(invoke_cli("inspect", path))
    for needle in ("official-supervised", "vit_small_patch16_224", "state_dict_ema", "1.25"):
        assert needle in shown, shown

    # classify: top-1 of each image, at batch size 4 and 1
    data = build_image_folder(tmp_path / "imgs", counts=(2, 2, 1), size=(60, 50))
    files = sorted(data.rglob("*.jpg"))
    x = torch.stack([_fork_eval_tensor(f) for f in files])
    logits = per_image_official(official, sp, x, pre)[0]
    for batch in ("4", "1"):
        out = tmp_path / f"cls{batch}"
        res = invoke_cli("classify", "--checkpoint", path, "--data", data, "--out", out, "--device", "cpu", "-b", batch, "-j", "0")
        assert res.exit_code == 0, res.output
        frame = api.read_run(out)  # the table
        per = pd.read_parquet(out / "per_image.parquet")
        got = {Path(p).relative_to(data).as_posix(): int(k) for p, k in zip(per["path"], per["pred"])}
        want = {f.relative_to(data).as_posix(): int(k) for f, k in zip(files, logits.argmax(1))}
        assert got == want
        assert not frame.empty

    # extract: maps (SimPool's a on the 14x14 grid), features and top-1 of the wsolevaluation inputs
    wsol = build_wsol_dataset(tmp_path / "wsol", n=3)
    out = tmp_path / "maps"
    res = invoke_cli(
        "extract", "--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata, "--checkpoint", path,
        "--out", out, "--device", "cpu", "-b", "2", "--dtype", "float32", "--features",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    store = MapStore.open(out)
    recorded = json.loads(store.manifest["provenance"]["transform"])
    mean, std = recorded["mean"], recorded["std"]
    from torchvision import transforms as T

    wsol_t = T.Compose([T.Resize((224, 224)), T.ToTensor(), T.Normalize(mean, std)])
    ids = [line.strip() for line in (wsol.metadata / "image_ids.txt").read_text().splitlines() if line.strip()]
    x = torch.stack([wsol_t(Image.open(wsol.image_root / i).convert("RGB")) for i in ids])
    logits, feats, attn = per_image_official(official, sp, x, pre)
    shard_maps, shard_feats, shard_preds = [], [], []
    for sh in store.iter_shards():
        shard_maps += list(sh.maps)
        shard_feats.append(sh.features)
        shard_preds += sh.preds.tolist()
    assert np.allclose(np.stack(shard_maps).reshape(len(ids), -1), attn.numpy(), atol=1e-6)
    assert np.allclose(np.concatenate(shard_feats), feats.numpy(), rtol=1e-4, atol=2e-5)
    assert shard_preds == logits.argmax(1).tolist()
