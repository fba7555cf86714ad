"""Demo models: bit-identical retraining, the official supervised checkpoint layout (auto-detected
and rebuilt by the loader), and the stamp cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from simpool_bench.api import ModelOptions, load_model
from simpool_bench.checkpoints import load_checkpoint
from simpool_bench.demo.data import build_demo_data
from simpool_bench.demo.train import DEMO_MODEL_KINDS, _official_simpool_init, read_stamp, stamp_path, train_demo_model
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.models import build_model

# A few optimiser steps on a few images (the demo's 2 threads): enough to move every weight.
QUICK = dict(epochs=2, batch_size=6, max_images=12, warmup_steps=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    return build_demo_data(tmp_path_factory.mktemp("demo") / "data", seed=0, n_train=12, n_test=6, n_discovery=1, image_size=48)


def _load(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def simpool_ckpt(data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_demo_model("vit-simpool", data, tmp_path_factory.mktemp("m") / "a.pth.tar", seed=0, time_budget_s=None, **QUICK)


def test_retraining_is_bit_identical_and_the_seed_matters(data, simpool_ckpt: Path, tmp_path: Path):
    again = train_demo_model("vit-simpool", data, tmp_path / "b.pth.tar", seed=0, time_budget_s=None, **QUICK)
    a, b = _load(simpool_ckpt), _load(again)
    assert _same(a["state_dict"], b["state_dict"]) and _same(a["state_dict_ema"], b["state_dict_ema"])
    # training moved the weights away from the seed's initialisation
    torch.manual_seed(0)
    spec = DEMO_MODEL_KINDS["vit-simpool"]
    model = build_model(spec.arch, pool=spec.pool, gamma=spec.gamma, num_classes=6, **spec.model_kwargs)
    _official_simpool_init(model)
    init = model.state_dict()
    assert init.keys() == a["state_dict"].keys()
    moved = [k for k in init if k.startswith(("blocks.0.attn", "gp.pool.w", "head."))]
    assert moved and all(not torch.equal(init[k], a["state_dict"][k]) for k in moved)
    other = _load(train_demo_model("vit-simpool", data, tmp_path / "c.pth.tar", seed=1, time_budget_s=None, **QUICK))
    assert not torch.equal(other["state_dict"]["head.weight"], a["state_dict"]["head.weight"])


def test_simpool_projections_start_as_in_the_official_fork():
    """The official timm fork initialises gp.pool.wq/wk with timm's ViT init (trunc normal, std .02)."""
    spec = DEMO_MODEL_KINDS["vit-simpool"]
    torch.manual_seed(0)
    model = build_model(spec.arch, pool=spec.pool, gamma=spec.gamma, num_classes=6, **spec.model_kwargs)
    default_std = model.gp.pool.wq.weight.std().item()  # PyTorch's Linear default: U(+-1/sqrt(d))
    _official_simpool_init(model)
    for w in (model.gp.pool.wq.weight, model.gp.pool.wk.weight):
        assert abs(w.std().item() - 0.02) < 0.002  # timm's trunc_normal_ cuts at +-2 (absolute): a plain N(0, .02)
    assert abs(default_std - (1 / (3 * spec.model_kwargs["embed_dim"])) ** 0.5) < 0.005


def test_official_supervised_layout_is_detected_and_rebuilt(data, simpool_ckpt: Path):
    obj = _load(simpool_ckpt)  # loads under weights_only with only Namespace allowed
    assert {"state_dict", "state_dict_ema", "epoch", "arch", "args", "optimizer", "version"} <= obj.keys()
    spec = DEMO_MODEL_KINDS["vit-simpool"]
    assert obj["arch"] == obj["args"].model == spec.arch and obj["args"].gp == "simpool"
    assert obj["args"].model_kwargs == spec.model_kwargs and obj["epoch"] == QUICK["epochs"] - 1
    assert {"gp.pool.wq.weight", "gp.pool.wk.weight", "gp.pool.norm_patches.weight"} <= obj["state_dict"].keys()
    assert "cls_token" not in obj["state_dict"]

    ck = load_checkpoint(simpool_ckpt)
    assert (ck.format, ck.variant, ck.pool, ck.gamma, ck.num_classes) == ("official-supervised", "supervised", "simpool", 1.25, 6)
    model, _ = load_model(ModelOptions(checkpoint=simpool_ckpt))
    assert _same(model.state_dict(), obj["state_dict_ema"])  # the EMA weights, as timm prefers
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (2, 6) and out.attn.shape == (2, 4, 6)


def test_cls_baseline_same_layout(data, tmp_path: Path):
    path = train_demo_model("vit-cls", data, tmp_path / "cls.pth.tar", seed=0, time_budget_s=None, **{**QUICK, "epochs": 1})
    ck = load_checkpoint(path)
    assert (ck.format, ck.pool, ck.gamma) == ("official-supervised", "cls", None)
    assert _load(path)["args"].gp == "token"  # timm train.py's --gp of the CLS token
    assert "cls_token" in ck.state_dict and not any(k.startswith("gp.") for k in ck.state_dict)
    model, _ = load_model(ModelOptions(checkpoint=path))
    assert model.attn_source == "cls"


def test_stamp_reuse_and_retrain(data, tmp_path: Path):
    path = tmp_path / "s.pth.tar"
    train_demo_model("vit-simpool", data, path, seed=0, time_budget_s=None, **{**QUICK, "epochs": 1})
    stamp = read_stamp(path)
    assert stamp["kind"] == "vit-simpool" and stamp["seed"] == 0 and stamp["train_seconds"] > 0
    before = (path.stat().st_mtime_ns, stamp_path(path).stat().st_mtime_ns)
    assert train_demo_model("vit-simpool", data, path, seed=0, time_budget_s=None, **{**QUICK, "epochs": 1}) == path
    assert (path.stat().st_mtime_ns, stamp_path(path).stat().st_mtime_ns) == before  # reused, not retrained
    # a changed file (its sha256 no longer the stamp's) is retrained, and so is a changed setting
    path.write_bytes(path.read_bytes() + b"x")
    train_demo_model("vit-simpool", data, path, seed=0, time_budget_s=None, **{**QUICK, "epochs": 1})
    assert load_checkpoint(path).format == "official-supervised"
    mtime = path.stat().st_mtime_ns
    train_demo_model("vit-simpool", data, path, seed=0, time_budget_s=None, **{**QUICK, "epochs": 1, "lr": 1e-3})
    assert path.stat().st_mtime_ns != mtime and json.loads(stamp_path(path).read_text())["settings"]["lr"] == 1e-3


def test_bad_kind_and_budget_warning(data, tmp_path: Path):
    with pytest.raises(SimpoolBenchError, match="vit-simpool"):
        train_demo_model("vit-gap-please", data, tmp_path / "x.pth.tar")
    with pytest.warns(RuntimeWarning, match="budget"):
        train_demo_model("vit-cls", data, tmp_path / "w.pth.tar", time_budget_s=1e-9, **{**QUICK, "epochs": 1})


@pytest.mark.slow
def test_default_demo_simpool_beats_the_no_model_baselines(tmp_path: Path):
    """The acceptance of the embedded demo: the default SimPool model, trained by the default recipe
    on the default data, localises better than the no-model baselines (center-gaussian map for
    MaxBoxAccV2, a centered box for CorLoc). About 1-2 minutes on 2 idle cores."""
    from simpool_bench import tasks as ev
    from simpool_bench.data.voc import read_voc
    from simpool_bench.data.wsol import read_wsol_metadata
    from simpool_bench.engine import EngineConfig

    d = build_demo_data(tmp_path / "demo")
    model, _ = load_model(ModelOptions(checkpoint=train_demo_model("vit-simpool", d, time_budget_s=None)))
    model.eval()
    cfg = EngineConfig(device="cpu", batch_size=32, progress=False)

    def value(out: ev.Outcome, metric: str) -> float:
        return next(r["value"] for r in out.rows if r["metric"] == metric)

    wsol = read_wsol_metadata(d.wsol_metadata_test, d.wsol_image_root)
    voc = read_voc(d.voc_root)
    assert (
        value(ev.localize(model, wsol, cfg), "maxboxacc_v2")
        > value(ev.localize(None, wsol, cfg, baseline="center-gaussian"), "maxboxacc_v2") + 10
    )
    assert value(ev.discover(model, voc, cfg, method="attn"), "corloc") > value(ev.discover(None, voc, cfg, method="center"), "corloc")


def test_recipe_and_model_size_are_the_readme_s():
    """README: two tiny ViTs (4 blocks, width 96, 3 heads, 160x160 input), trained with 2 threads;
    the recipe's values are those of the README's numbers."""
    from simpool_bench.demo.train import TrainSettings

    for kind, pool, gamma in (("vit-simpool", "simpool", 1.25), ("vit-cls", "cls", None)):
        spec = DEMO_MODEL_KINDS[kind]
        assert (spec.arch, spec.pool, spec.gamma) == ("vit_tiny_patch16_224", pool, gamma)
        assert spec.model_kwargs == {"img_size": 160, "embed_dim": 96, "depth": 4, "num_heads": 3, "mlp_ratio": 2.0}
    assert TrainSettings() == TrainSettings(
        epochs=16,
        batch_size=48,
        lr=2e-3,
        weight_decay=0.05,
        warmup_steps=15,
        label_smoothing=0.1,
        ema_decay=0.98,
        crop_scale=(0.5, 1.0),
        cutmix_prob=1.0,
        threads=2,
        max_images=None,
    )


def test_training_runs_on_2_deterministic_threads_and_restores_the_callers(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from simpool_bench.demo import train as demo_train

    seen = []
    real = demo_train._train

    def spy(*a, **k):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))
        return real(*a, **k)

    monkeypatch.setattr(demo_train, "_train", spy)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(False)
        train_demo_model("vit-cls", data, tmp_path / "t.pth.tar", seed=0, time_budget_s=None, **{**QUICK, "epochs": 1, "max_images": 6})
        assert seen == [(2, True)]
        assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (1, False)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def test_the_seed_also_orders_and_augments_the_batches(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With the initialisation held fixed, another seed still gives other weights: the seed reaches
    the generator of the batch order, crops, flips and CutMix."""
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: real(0))
    quick = {**QUICK, "epochs": 1, "max_images": 6}
    a, b = (_load(train_demo_model("vit-cls", data, tmp_path / f"{s}.pth.tar", seed=s, time_budget_s=None, **quick)) for s in (0, 1))
    assert not torch.equal(a["state_dict"]["head.weight"], b["state_dict"]["head.weight"])


def test_training_starts_from_the_official_simpool_init(data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from simpool_bench.demo import train as demo_train

    stds = []
    real = demo_train._official_simpool_init

    def spy(model):
        real(model)
        stds.append(model.gp.pool.wq.weight.std().item())

    monkeypatch.setattr(demo_train, "_official_simpool_init", spy)
    train_demo_model("vit-simpool", data, tmp_path / "i.pth.tar", seed=0, time_budget_s=None, **{**QUICK, "epochs": 1, "max_images": 6})
    assert len(stds) == 1 and abs(stds[0] - 0.02) < 0.002
