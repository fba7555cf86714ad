"""Pretrained weights without the network: an empty Hugging Face cache offline is one clear error;
a fake cached repository (timm tag, hf-hub: name), a --pretrained-file and torchvision: names load
exactly the file's weights; the data config comes from the pretrained config unless overridden,
and everything lands in the provenance. Then classify/localize/discover/extract/visualize with
``--model deit_tiny_patch16_224 --checkpoint FILE`` (a timm state dict) and a global_pool='map' ViT."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.models import build_model
from simpool_bench.weights import resolve_name

from conftest import build_image_folder, build_voc_dataset, build_wsol_dataset, invoke_cli, said

SMALL = dict(depth=2, embed_dim=32, num_heads=2)
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def fake_repo(cache, repo: str, files: dict) -> None:
    """A repository as huggingface_hub caches it: snapshots/<sha>/<file> and refs/main."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(SNAPSHOT)
    for name, content in files.items():
        if isinstance(content, dict) and all(isinstance(v, torch.Tensor) for v in content.values()):
            save_file({k: v.contiguous() for k, v in content.items()}, str(snap / name))
        else:
            (snap / name).write_text(json.dumps(content))


def _random_sd(arch: str, seed: int, **kw) -> dict:
    torch.manual_seed(seed)
    net = timm.create_model(arch, pretrained=False, **kw)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.state_dict()


def test_offline_without_a_cached_copy_is_one_clear_error(hf_cache, tmp_path):
    with pytest.raises(
        SimpoolBenchError, match=r"no cached copy of Hugging Face repository 'timm/deit_tiny_patch16_224.fb_in1k'.*HF_HUB_OFFLINE"
    ):
        build_model("deit_tiny_patch16_224", pool=None, pretrained=True)
    with pytest.raises(SimpoolBenchError, match="'someone/nothing'"):
        build_model("hf-hub:someone/nothing", pool=None, pretrained=True)
    folder = build_image_folder(tmp_path / "imgs", counts=(1, 1))
    res = invoke_cli("classify", "--model", "vit_small_patch8_224", "--pretrained", "--data", folder, "--device", "cpu")
    assert res.exit_code == 2 and said(res).startswith("error:") and "timm/vit_small_patch8_224.dino" in said(res)
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 3
    assert not any(hf_cache.iterdir())  # nothing was fetched


def test_pretrained_from_the_cache_of_a_timm_tag(hf_cache):
    arch = "vit_tiny_patch16_224"
    repo = timm.models.get_pretrained_cfg(arch).hf_hub_id  # timm's default tag
    sd = _random_sd(arch, 0, **SMALL)
    fake_repo(hf_cache, repo, {"model.safetensors": sd})
    m = build_model(arch, pool=None, pretrained=True, **SMALL)
    assert m.pool == "cls" and m.num_classes == 1000 and m.weights_source == f"hf-hub:{repo}"
    got = m.state_dict()
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    with pytest.raises(SimpoolBenchError, match="no SimPool layer"):
        build_model(arch, pool="simpool", pretrained=True, **SMALL)


def test_cache_folder_weight_file_and_revision_are_the_ones_huggingface_hub_and_timm_take(hf_cache, tmp_path, monkeypatch):
    """Where the weights are looked up: HF_HOME's cache is HF_HOME/hub (huggingface_hub's rule when
    HF_HUB_CACHE is unset); of a repository holding both weight files, timm's safetensors one
    (timm tries HF_SAFE_WEIGHTS_NAME before HF_WEIGHTS_NAME); and ``ORG/NAME@REV`` is that
    revision's snapshot, not main's."""
    from timm.models._hub import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    from simpool_bench.weights import ModelName, cached_hf_file, hf_cache_dir, locate_pretrained

    assert hf_cache_dir() == hf_cache
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))

    repo = "lab/both-files"
    fake_repo(hf_cache, repo, {HF_WEIGHTS_NAME: {"a": 1}, HF_SAFE_WEIGHTS_NAME: {"w": torch.zeros(1)}})
    got = locate_pretrained(ModelName("x", "vit_tiny_patch16_224"), {"hf_hub_id": repo}, None)
    assert got.file is not None and got.file.name == HF_SAFE_WEIGHTS_NAME and got.label == f"hf-hub:{repo}"

    other = "fedcba9876543210fedcba9876543210fedcba98"
    snap = hf_cache / ("models--" + repo.replace("/", "--")) / "snapshots" / other
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (hf_cache / "models--lab--both-files" / "snapshots" / SNAPSHOT / "config.json").write_text("{}")
    assert cached_hf_file(f"{repo}@{other}", ("config.json",)).parent.name == other
    assert cached_hf_file(repo, ("config.json",)).parent.name == SNAPSHOT


def test_a_pretrained_config_naming_its_weight_file_is_looked_up_as_timm_loads_it(hf_cache):
    """A pretrained config with ``hf_hub_filename`` (timm's OpenCLIP tags: open_clip_pytorch_model.bin)
    is loaded by timm's load_state_dict_from_hf from that file's safetensors alternative when the Hub
    has one, else from the file itself: the cached copy is looked up in that order, and
    ``model.safetensors`` of the same repository is not it."""
    from timm.models._hub import HF_OPEN_CLIP_SAFE_WEIGHTS_NAME, HF_OPEN_CLIP_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME

    from simpool_bench.weights import ModelName, locate_pretrained

    name = ModelName("x", "vit_base_patch16_clip_224.openai")
    fake_repo(hf_cache, "lab/bin-only", {HF_OPEN_CLIP_WEIGHTS_NAME: {"a": 1}, HF_SAFE_WEIGHTS_NAME: {"w": torch.zeros(1)}})
    cfg = {"hf_hub_id": "lab/bin-only", "hf_hub_filename": HF_OPEN_CLIP_WEIGHTS_NAME}
    assert locate_pretrained(name, cfg, None).file.name == HF_OPEN_CLIP_WEIGHTS_NAME
    fake_repo(hf_cache, "lab/safe-too", {HF_OPEN_CLIP_WEIGHTS_NAME: {"a": 1}, HF_OPEN_CLIP_SAFE_WEIGHTS_NAME: {"w": torch.zeros(1)}})
    cfg = {"hf_hub_id": "lab/safe-too", "hf_hub_filename": HF_OPEN_CLIP_WEIGHTS_NAME}
    assert locate_pretrained(name, cfg, None).file.name == HF_OPEN_CLIP_SAFE_WEIGHTS_NAME


def test_hf_hub_name_reads_config_and_weights_from_the_cache(hf_cache):
    args = dict(SMALL, global_pool="map", class_token=False)
    sd = _random_sd("vit_tiny_patch16_224", 1, num_classes=4, **args)
    cfg = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": 4,
        "model_args": args,
        "pretrained_cfg": {
            "input_size": [3, 224, 224],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "num_classes": 4,
        },
    }
    fake_repo(hf_cache, "lab/tiny-map-vit", {"config.json": cfg, "model.safetensors": sd})
    m = build_model("hf-hub:lab/tiny-map-vit", pool=None, num_classes=None, pretrained=True)
    alias = resolve_name("hf_hub:lab/tiny-map-vit")  # timm's older spelling, which it still takes
    assert (alias.source, alias.arch, alias.model_args) == ("hf-hub", "vit_tiny_patch16_224", args)
    assert (m.pool, m.attn_source, m.num_classes) == ("map", "map", 4)
    assert m.data_config["mean"] == (0.5, 0.5, 0.5) and m.data_config["crop_pct"] == 1.0
    assert m.data_config["interpolation"] == "bilinear"
    assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items())
    from simpool_bench.api import ModelOptions, load_model

    run, _ = load_model(ModelOptions(arch="hf-hub:lab/tiny-map-vit", pretrained=True))  # no --num-classes: the repository's 4
    assert (run.num_classes, run.pool) == (4, "map") and all(torch.equal(run.state_dict()[k], v) for k, v in sd.items())
    over = build_model(
        "hf-hub:lab/tiny-map-vit", pool=None, num_classes=None, pretrained=True, data_overrides={"mean": (0.1, 0.2, 0.3), "crop_pct": 0.8}
    )
    assert over.data_config["mean"] == (0.1, 0.2, 0.3) and over.data_config["crop_pct"] == 0.8
    assert over.data_config["std"] == (0.25, 0.25, 0.25)


def test_hf_hub_config_of_timms_own_writer_builds_and_takes_validate_pys_config(hf_cache, monkeypatch):
    """A repository pushed by timm itself: ``save_config_for_hf`` writes ``num_classes`` in
    ``model_args`` too, which build_model passed to timm beside its own (a TypeError: "got multiple
    values for keyword argument 'num_classes'"). It builds, with the file's weights and the data config
    of timm's validate.py for the same name (its test-time size, 288, and crop)."""
    from timm.data import resolve_data_config
    from timm.models._hub import save_config_for_hf

    net = timm.create_model("resnet18.a1_in1k", pretrained=False, num_classes=5)
    fake_repo(hf_cache, "lab/r18", {"model.safetensors": net.state_dict()})
    save_config_for_hf(net, str(next((hf_cache / "models--lab--r18" / "snapshots").iterdir()) / "config.json"))
    cfg = json.loads(next((hf_cache / "models--lab--r18" / "snapshots").iterdir()).joinpath("config.json").read_text())
    assert cfg.get("model_args", {}).get("num_classes", 5) == 5  # what timm writes (older timm: no model_args)
    m = build_model("hf-hub:lab/r18", pool=None, num_classes=None, pretrained=True)
    assert m.num_classes == 5 and all(torch.equal(m.state_dict()[k], v) for k, v in net.state_dict().items())
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as read at its import: timm's reading stays offline
    ref = timm.create_model("hf-hub:lab/r18", pretrained=False, cache_dir=str(hf_cache))  # the same config.json, read by timm
    validate_py = {k: tuple(v) if isinstance(v, list) else v for k, v in resolve_data_config({}, model=ref, use_test_size=True).items()}
    assert {k: m.data_config[k] for k in validate_py} == validate_py and validate_py["input_size"] == (3, 288, 288)


def test_hf_hub_config_that_is_not_a_timm_config_is_one_error_naming_the_entry(hf_cache):
    """A cached config.json that is not JSON (cut short, UTF-16), or whose entries timm reads are of
    another type: JSONDecodeError, UnicodeDecodeError, AttributeError (timm's) or ValueError (int() of
    the input size or class count) tracebacks; now one error naming the file and the entry."""
    good = {"architecture": "vit_tiny_patch16_224", "num_classes": 4, "model_args": SMALL, "pretrained_cfg": {"input_size": [3, 224, 224]}}
    cases = {
        "cut": (
            b'{"architecture": "vit_t',
            "is not JSON text (JSONDecodeError: Unterminated string starting at: line 1 column 18 (char 17))",
        ),
        "utf16": ('{"architecture": 1}'.encode("utf-16"), "is not JSON text (UnicodeDecodeError: "),
        "list": ([good], "holds a JSON list, expected an object (a timm model config)"),
        "arch": ({**good, "architecture": 5}, ": architecture is 5, expected a timm model name"),
        "args": ({**good, "model_args": [2]}, ": model_args is [2], expected an object of timm arguments"),
        "classes": ({**good, "num_classes": "4"}, ': num_classes is "4", expected an integer'),
        "size": (
            {**good, "pretrained_cfg": {"input_size": "224"}},
            ': pretrained_cfg.input_size is "224", expected [channels, height, width] integers',
        ),
    }
    for repo, (content, what) in cases.items():
        fake_repo(hf_cache, f"lab/{repo}", {})
        path = hf_cache / f"models--lab--{repo}" / "snapshots" / SNAPSHOT / "config.json"
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        with pytest.raises(SimpoolBenchError) as e:
            build_model(f"hf-hub:lab/{repo}", pool=None, num_classes=None)
        assert str(e.value).startswith(f"--model hf-hub:lab/{repo}: its config.json ({path}) {what}".replace(") :", "):")), str(e.value)
    fake_repo(hf_cache, "lab/good", {"config.json": good})
    assert build_model("hf-hub:lab/good", pool=None, num_classes=None).num_classes == 4


def test_pretrained_file_and_torchvision_names(tmp_path, hf_cache, monkeypatch):
    sd = _random_sd("deit_tiny_patch16_224", 2, **SMALL)
    f = tmp_path / "deit.safetensors"
    save_file(sd, str(f))
    m = build_model("deit_tiny_patch16_224", pool="cls", num_classes=None, pretrained_file=str(f), **SMALL)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in sd.items()) and m.weights_file == f
    tv = resolve_name("torchvision:resnet50")  # torchvision's IMAGENET1K_V2 transform: resize 232, crop 224, bilinear
    assert tv.arch == "resnet50" and tv.data_config["crop_pct"] == 224 / 232 and tv.data_config["interpolation"] == "bilinear"
    with pytest.raises(SimpoolBenchError, match="only torchvision ResNets"):
        resolve_name("torchvision:vit_b_16")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(SimpoolBenchError, match="not in the torch hub cache .* never downloads"):
        build_model("torchvision:resnet18", pool="gap", pretrained=True)
    rsd = _random_sd("resnet18", 3)
    rf = tmp_path / "resnet18-f37072fd.pth"
    torch.save(rsd, rf)
    r = build_model("torchvision:resnet18", pool="gap", num_classes=None, pretrained_file=str(rf))
    assert all(torch.equal(r.state_dict()[k], v) for k, v in rsd.items())
    assert r.data_config["interpolation"] == "bilinear" and r.data_config["crop_pct"] == 224 / 256
    assert r.data_config["input_size"] == (3, 224, 224)  # torchvision's crop, not timm's test size of resnet18 (288)


def test_pretrained_classifier_is_the_files_or_an_error_never_random(tmp_path, hf_cache):
    """--num-classes other than timm's pretrained config's (1000): timm's load_pretrained drops the
    file's classifier and loads the rest non-strictly, so the model ran with a random head (and any
    block missing from the file random) and exit 0. Now the file's classifier is loaded (a 3-class
    fine-tune: timm's model with load_state_dict(strict=True) gives the same logits) or the mismatch is
    one error; --num-classes 0 (features) still leaves the head out. torchvision: names alike."""
    arch = "vit_tiny_patch16_224"
    sd = _random_sd(arch, 7, num_classes=3, **SMALL)
    f = tmp_path / "ft3.safetensors"
    save_file(sd, str(f))
    ref = timm.create_model(arch, pretrained=False, num_classes=3, **SMALL).eval()
    ref.load_state_dict(sd, strict=True)
    m = build_model(arch, pool="cls", num_classes=3, pretrained_file=str(f), **SMALL)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(m(x).logits, ref(x))
    with pytest.raises(
        SimpoolBenchError, match=rf"--pretrained-file {f}: timm could not load it into {arch} .*size mismatch for head\.weight"
    ):
        build_model(arch, pool="cls", num_classes=10, pretrained_file=str(f), **SMALL)
    with pytest.raises(SimpoolBenchError, match=rf"--pretrained-file {f}: timm could not load it .*Missing key\(s\).*blocks\.2\."):
        build_model(arch, pool="cls", num_classes=3, pretrained_file=str(f), **{**SMALL, "depth": 3})
    feats = build_model(arch, pool="cls", num_classes=0, pretrained_file=str(f), **SMALL)
    assert all(torch.equal(feats.state_dict()[k], v) for k, v in sd.items() if not k.startswith("head."))
    rsd = _random_sd("resnet18", 8)
    rf = tmp_path / "resnet18-f37072fd.pth"
    torch.save(rsd, rf)
    with pytest.raises(SimpoolBenchError, match=rf"--pretrained-file {rf}: does not fit timm's ResNet .*size mismatch for fc\.weight"):
        build_model("torchvision:resnet18", pool="gap", num_classes=10, pretrained_file=str(rf))
    r0 = build_model("torchvision:resnet18", pool="gap", num_classes=0, pretrained_file=str(rf))
    assert all(torch.equal(r0.state_dict()[k], v) for k, v in rsd.items() if not k.startswith("fc."))
    torch.save({k: v for k, v in rsd.items() if not k.startswith("fc.")}, tmp_path / "headless.pth")
    with pytest.raises(SimpoolBenchError, match=r"headless\.pth: does not fit timm's ResNet: missing \['fc\.weight', 'fc\.bias'\]"):
        build_model("torchvision:resnet18", pool="gap", num_classes=None, pretrained_file=str(tmp_path / "headless.pth"))


class _RunsCode:
    """Unpickling this would run a shell command (a malicious weight file)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_torchvision_weights_load_strictly_and_safely(tmp_path):
    """A torchvision weight file loads strictly into timm's ResNet: a tensor the model has no place
    for (another architecture's file) is an error naming it, as a missing one is; and it is
    unpickled weights-only: a pickle that would run code is refused, never run."""
    from simpool_bench.weights import load_torchvision_weights

    net = timm.create_model("resnet18", pretrained=False, num_classes=3)
    sd = {**net.state_dict(), "layer5.0.conv1.weight": torch.zeros(1)}
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(
        SimpoolBenchError, match=r"^F: does not fit timm's ResNet: missing \[\], unexpected \['layer5\.0\.conv1\.weight'\]$"
    ):
        load_torchvision_weights(net, tmp_path / "extra.pth", "F")
    marker = tmp_path / "PWNED"
    torch.save({**net.state_dict(), "x": _RunsCode(marker)}, tmp_path / "evil.pth")
    with pytest.raises(SimpoolBenchError, match=r"^F: not a readable PyTorch weights file \(UnpicklingError\)$"):
        load_torchvision_weights(net, tmp_path / "evil.pth", "F")
    assert not marker.exists()


def test_features_only_pretrained_weights_lacking_a_block_are_an_error_not_random(tmp_path, hf_cache, caplog):
    """--num-classes 0: timm drops the file's classifier and loads the rest non-strictly, so a block
    missing from the file stayed random (timm only logs it at INFO) and the run went on. Now that is
    one error naming the missing tensors; a complete file loads every tensor but the head, timm's
    logger is left as it was and its other records still pass."""
    import logging

    arch = "vit_tiny_patch16_224"
    sd = _random_sd(arch, 9, **SMALL)
    short = tmp_path / "short.safetensors"
    save_file({k: v for k, v in sd.items() if not k.startswith("blocks.1.")}, str(short))
    builder_log = logging.getLogger("timm.models._builder")
    assert builder_log.level == logging.NOTSET
    with pytest.raises(
        SimpoolBenchError,
        match=rf"--pretrained-file {short}: timm could not load it into {arch}: missing blocks\.1\.norm1\.weight, .*\(\d+ in all\); they would stay random",
    ):
        build_model(arch, pool="cls", num_classes=0, pretrained_file=str(short), **SMALL)
    assert builder_log.level == logging.NOTSET and not builder_log.filters
    full = tmp_path / "full.safetensors"
    save_file({**sd, "extra.weight": torch.zeros(1)}, str(full))
    with caplog.at_level(logging.WARNING):
        feats = build_model(arch, pool="cls", num_classes=0, pretrained_file=str(full), **SMALL)
    assert all(torch.equal(feats.state_dict()[k], v) for k, v in sd.items() if not k.startswith("head."))
    assert [r.levelno for r in caplog.records if "Unexpected keys (extra.weight)" in r.getMessage()] == [logging.WARNING]
    assert not any("Missing keys" in r.getMessage() for r in caplog.records)
    with pytest.raises(SimpoolBenchError, match=rf"^--pretrained-file loads timm's own weights of {arch}, which have no SimPool layer"):
        build_model(arch, pool="simpool", num_classes=0, pretrained_file=str(full), **SMALL)


def test_pretrained_weights_of_a_384_model_run_at_384_as_timm_builds_it(tmp_path, hf_cache):
    """--model vit_*_384 --pretrained-file F was built at 224: timm resampled the file's 24x24
    position embeddings to 14x14 and the data config said 224, so top-1 was not timm's model's.
    Without --img-size the model is built at the input size of timm's pretrained config."""
    arch = "vit_tiny_patch16_384"
    sd = _random_sd(arch, 9, num_classes=5, **SMALL)
    assert tuple(sd["pos_embed"].shape) == (1, 1 + 24 * 24, 32)
    f = tmp_path / "ft384.safetensors"
    save_file(sd, str(f))
    ref = timm.create_model(arch, pretrained=False, num_classes=5, **SMALL).eval()
    ref.load_state_dict(sd, strict=True)
    m = build_model(arch, pool="cls", num_classes=5, pretrained_file=str(f), **SMALL)
    assert m.data_config["input_size"] == (3, 384, 384) == timm.data.resolve_model_data_config(ref)["input_size"]
    assert torch.equal(m.pos_embed, sd["pos_embed"])  # loaded as it is, not resampled
    x = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(m(x).logits, ref(x))
    assert build_model(arch, pool="cls", num_classes=5, img_size=224, **SMALL).data_config["input_size"] == (3, 224, 224)  # when asked


def test_unreadable_pretrained_file_is_one_error_naming_the_flag(tmp_path, hf_cache):
    """A truncated safetensors file, a PyTorch pickle under a .safetensors name and weights of
    another model, given to --pretrained-file: one line naming --pretrained-file and the file, exit 2."""
    sd = _random_sd("vit_tiny_patch16_224", 6, **SMALL)
    good = tmp_path / "good.safetensors"
    save_file(sd, str(good))
    (tmp_path / "w.safetensors").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save(sd, tmp_path / "p.safetensors")  # a torch.save zip under a safetensors name
    torch.save(sd, tmp_path / "small.pth")  # a 2-block model's weights: not the full-size model's
    folder = build_image_folder(tmp_path / "imgs", counts=(1, 1))
    expect = {
        "w.safetensors": "not a readable safetensors file (Error while deserializing header",
        "p.safetensors": "not a readable safetensors file (Error while deserializing header: header too large); "
        "it looks like a PyTorch pickle file (torch.save), not safetensors: rename it to .pth",
        "small.pth": "timm could not load it into vit_tiny_patch16_224 (RuntimeError: Error(s) in loading state_dict",
    }
    for name, what in expect.items():
        f = tmp_path / name
        res = invoke_cli("classify", "--model", "vit_tiny_patch16_224", "--pretrained-file", f, "--data", folder, "--device", "cpu")
        msg = said(res)
        assert res.exit_code == 2, res.output
        assert msg.startswith(f"error: --pretrained-file {f}: {what}"), msg
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    (tmp_path / "tv.pth").write_bytes(b"not a pickle")
    res = invoke_cli(
        "classify", "--model", "torchvision:resnet18", "--pretrained-file", tmp_path / "tv.pth", "--data", folder, "--device", "cpu"
    )
    assert res.exit_code == 2 and said(res).startswith(
        f"error: --pretrained-file {tmp_path / 'tv.pth'}: not a readable PyTorch weights file"
    )


def test_pretrained_file_holding_a_list_an_int_key_or_a_non_tensor_is_one_error(tmp_path, hf_cache):
    """timm's loader raises AttributeError on a file holding a list, an int key or (resnet18's first
    conv) a value that is not a tensor, and torch's load_state_dict on an int key of a torchvision
    file: tracebacks, now one error naming the flag and the file."""
    vit = _random_sd("vit_tiny_patch16_224", 7, **SMALL)
    resnet = timm.create_model("resnet18", num_classes=1000).state_dict()
    cases = [
        ("vit_tiny_patch16_224", SMALL, "list.pth", [vit]),
        ("vit_tiny_patch16_224", SMALL, "intkey.pth", {**vit, 5: torch.zeros(1)}),
        ("resnet18", {}, "text.pth", {**resnet, "conv1.weight": "x"}),
    ]
    for arch, kw, name, obj in cases:
        torch.save(obj, tmp_path / name)
        with pytest.raises(SimpoolBenchError) as e:
            build_model(arch, pool=None, num_classes=None, pretrained_file=str(tmp_path / name), **kw)
        msg = str(e.value)
        assert msg.startswith(f"--pretrained-file {tmp_path / name}: timm could not load it into {arch} (AttributeError: "), msg
    torch.save({**resnet, 5: torch.zeros(1)}, tmp_path / "tv.pth")
    with pytest.raises(SimpoolBenchError) as e:
        build_model("torchvision:resnet18", pool="gap", num_classes=None, pretrained_file=str(tmp_path / "tv.pth"))
    assert str(e.value) == f"--pretrained-file {tmp_path / 'tv.pth'}: key 5 is a int, expected a string (a parameter name)"


def test_pretrained_file_that_is_text_or_cut_short_says_what_it_is(tmp_path, hf_cache):
    """--pretrained-file given a text file, or a torch.save file cut short: what the file is, as
    --checkpoint says it, not timm's 'KeyError: 101'."""
    folder = build_image_folder(tmp_path / "imgs", counts=(1, 1))
    text = tmp_path / "weights.pth"
    text.write_text("hello world\n")
    whole = tmp_path / "whole.pth"
    torch.save(_random_sd("vit_tiny_patch16_224", 6, **SMALL), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:2000])
    expect = {
        text: "not a PyTorch checkpoint: it starts with b'hello world\\n', not as torch.save writes (a zip archive or a pickle)",
        cut: "a zip archive cut short at 2000 bytes (no central directory), not a whole checkpoint: an interrupted download or copy? fetch it again",
    }
    for f, what in expect.items():
        res = invoke_cli("classify", "--model", "vit_tiny_patch16_224", "--pretrained-file", f, "--data", folder, "--device", "cpu")
        assert res.exit_code == 2, res.output
        assert said(res) == f"error: --pretrained-file {f}: {what}", res.output


# ------------------------------------------------------------------------------------ commands
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return build_wsol_dataset(root / "wsol", n=6, seed=3), build_voc_dataset(root / "voc", n=5, seed=4)


def _timm_state_dict(path, arch, seed, **kw):
    sd = _random_sd(arch, seed, num_classes=3, **kw)
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("arch,kw,source", [("deit_tiny_patch16_224", {}, "cls"), ("vit_tiny_patch16_224", dict(global_pool="map"), "map")])
def test_commands_with_a_timm_state_dict(tmp_path, data, arch, kw, source):
    """A plain timm state dict (full-size tiny models, random weights) through every command."""
    wsol, voc = data
    ck = _timm_state_dict(tmp_path / "w.pth", arch, 5, **kw)
    model = ["--model", arch, "--checkpoint", ck, "--device", "cpu", "-b", 8]
    res = invoke_cli(
        "classify",
        "--data",
        wsol.image_root,
        "--metadata",
        wsol.metadata,
        *model,
        "--out",
        tmp_path / "c",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.2,0.2,0.2",
        "--crop-pct",
        "0.8",
    )
    assert res.exit_code == 0, res.output
    prov = pd.read_csv(tmp_path / "c" / "results.csv").iloc[0]
    assert prov["pool"] == source and prov["attn_source"] == source and prov["checkpoint_format"] == "state-dict"
    assert prov["data_config"].startswith("mean=0.5,0.5,0.5 std=0.2,0.2,0.2 crop_pct=0.8 interpolation=bicubic")
    res = invoke_cli(
        "localize",
        "--dataset",
        "cub",
        "--data",
        wsol.image_root,
        "--metadata",
        wsol.metadata,
        *model,
        "--attn-source",
        "rollout",
        "--rollout-fusion",
        "max",
        "--rollout-discard",
        "0.5",
        "--out",
        tmp_path / "l",
    )
    assert res.exit_code == 0, res.output
    loc = pd.read_csv(tmp_path / "l" / "results.csv")
    assert loc.iloc[0]["attn_source"] == "rollout" and loc.iloc[0]["attn_options"] == "fusion=max discard=0.5"
    assert {"maxboxacc_v2", "best_threshold"} <= set(loc["metric"])
    for src in (source, "gradcam"):
        res = invoke_cli("discover", "--dataset", "voc07", "--data", voc, *model, "--attn-source", src, "--out", tmp_path / f"d_{src}")
        assert res.exit_code == 0, res.output
        d = pd.read_csv(tmp_path / f"d_{src}" / "results.csv")
        assert d.iloc[0]["attn_source"] == src and "corloc" in set(d["metric"])
    res = invoke_cli(
        "extract", "--dataset", "voc07", "--data", voc, *model, "--attn-source", "gradcam", "--dtype", "float32", "--out", tmp_path / "maps"
    )
    assert res.exit_code == 0, res.output
    res = invoke_cli("discover", "--dataset", "voc07", "--data", voc, "--maps", tmp_path / "maps", "--out", tmp_path / "dm")
    assert res.exit_code == 0, res.output
    direct = pd.read_csv(tmp_path / "d_gradcam" / "results.csv")
    stored = pd.read_csv(tmp_path / "dm" / "results.csv")
    assert direct.loc[direct.metric == "corloc", "value"].item() == stored.loc[stored.metric == "corloc", "value"].item()
    res = invoke_cli(
        "visualize",
        "--dataset",
        "voc07",
        "--data",
        voc,
        *model,
        "--attn-source",
        f"{source},rollout,gradcam",
        "--n",
        2,
        "--format",
        "svg",
        "--out",
        tmp_path / "v",
    )
    assert res.exit_code == 0, res.output
    sel = pd.read_csv(tmp_path / "v" / "selection.csv")
    assert sel["column"].tolist() == [f"w: {source}", "w: rollout", "w: gradcam"] * 2
    assert (tmp_path / "v" / "figure.svg").read_text().lstrip().startswith("<?xml")


def test_timm_weights_are_evaluated_at_their_test_time_size_as_validate_py_does(tmp_path, hf_cache):
    """timm's validate.py resolves its data config with ``use_test_size`` (its default; timm's
    published results are at that setting): ``resnet18.a1_in1k`` trains at 224 (crop_pct 0.95) and
    is validated at 288 (crop_pct 1.0). ``--pretrained`` now takes validate.py's config; ``--img-size``
    and a checkpoint file (train.py validated at the training size) keep the training size."""
    arch = "resnet18"
    pcfg = timm.models.get_pretrained_cfg(arch)
    assert tuple(pcfg.test_input_size) == (3, 288, 288) and pcfg.test_crop_pct == 1.0 and pcfg.crop_pct == 0.95
    sd = _random_sd(arch, 4)
    fake_repo(hf_cache, pcfg.hf_hub_id, {"model.safetensors": sd})
    ref = timm.create_model(arch, pretrained=False).eval()
    validate_py = timm.data.resolve_data_config({}, model=ref, use_test_size=True)  # validate.py's default args
    m = build_model(arch, pool=None, pretrained=True)
    assert {k: m.data_config[k] for k in validate_py} == validate_py
    assert (m.data_config["input_size"], m.data_config["crop_pct"]) == ((3, 288, 288), 1.0)
    asked = build_model(arch, pool=None, pretrained=True, img_size=224)
    assert (asked.data_config["input_size"], asked.data_config["crop_pct"]) == ((3, 224, 224), 0.95)
    from simpool_bench.api import ModelOptions, load_model

    f = tmp_path / "r18.pth"
    torch.save(sd, f)
    from_file, _ = load_model(ModelOptions(arch=arch, checkpoint=f))
    assert (from_file.data_config["input_size"], from_file.data_config["crop_pct"]) == ((3, 224, 224), 0.95)

    data = build_image_folder(tmp_path / "val", counts=(2, 2), size=(300, 290), seed=2)
    res = invoke_cli("classify", "--model", arch, "--pretrained", "--data", data, "--out", tmp_path / "out", "--device", "cpu")
    assert res.exit_code == 0, res.output
    row = pd.read_csv(tmp_path / "out" / "results.csv").iloc[0]
    record = json.loads(row["transform"])
    assert (record["resize"], record["crop"], record["crop_pct"], int(row["image_size"])) == (288, [288, 288], 1.0, 288)


def test_offline_set_when_huggingface_hub_was_imported_counts_too(monkeypatch):
    """HF_HUB_OFFLINE is read now or, unset now, as huggingface_hub read it at its import (its
    constant): either way no download is tried; neither set, online."""
    from huggingface_hub import constants

    from simpool_bench.weights import hf_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hf_offline() is True
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert hf_offline() is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "Yes ")
    assert hf_offline() is True


@pytest.mark.parametrize("arch", ["resnet50", "wide_resnet50_2", "resnext50_32x4d"])
def test_torchvision_names_take_torchvisions_own_evaluation_transform(arch):
    """A torchvision: name's data config is the one torchvision's weights evaluate with: mean, std,
    crop and resize of ``Weights.DEFAULT.transforms()`` (ImageClassification), for each family
    (ResNet, wide ResNet, ResNeXt); the timm model of the same name is built."""
    from torchvision.models import get_model_weights

    t = get_model_weights(arch).DEFAULT.transforms()
    cfg = resolve_name(f"torchvision:{arch}").data_config
    assert resolve_name(f"torchvision:{arch}").arch == arch
    assert cfg["mean"] == tuple(t.mean) and cfg["std"] == tuple(t.std)
    assert cfg["input_size"] == (3, t.crop_size[0], t.crop_size[0]) and cfg["interpolation"] == t.interpolation.value
    assert cfg["crop_pct"] == pytest.approx(t.crop_size[0] / t.resize_size[0])


def _odd_images(root) -> None:
    """One class folder of the images a dataset holds: odd sizes (1 pixel wide or high), greyscale,
    RGBA, a palette with a transparent index and a JPEG; ``root/a/*``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    d = root / "a"
    d.mkdir(parents=True)
    for name, (w, h) in {"wide.png": (97, 61), "tall.png": (61, 97), "one_wide.png": (1, 40), "one_high.jpg": (40, 1)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / name)
    Image.fromarray(rng.integers(0, 256, (29, 53), dtype=np.uint8)).save(d / "grey.png")
    Image.fromarray(rng.integers(0, 256, (50, 31, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    palette = Image.fromarray(rng.integers(0, 256, (33, 45), dtype=np.uint8)).convert("P")
    palette.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    palette.save(d / "palette.png", transparency=3)


def _classify_transform(monkeypatch, root, model: str, prefetcher: bool, pretrained_file=None):
    """The transform ``run_classify`` builds for ``--model MODEL --pretrained [--prefetcher]`` (or
    ``--pretrained-file``; caught where it is handed to ``tasks.classify``)."""
    from simpool_bench import api, runs

    class Caught(Exception):
        pass

    def catch(net, records, transform, *args, **kwargs):
        raise Caught(transform)

    monkeypatch.setattr(runs.tasks, "classify", catch)
    weights = api.ModelOptions(arch=model, pretrained=pretrained_file is None, pretrained_file=pretrained_file)
    spec = api.ClassifySpec(api.DataSpec("imagenet", data=root), weights, prefetcher=prefetcher)
    with pytest.raises(Caught) as caught:
        api.run_classify(spec, api.EngineConfig(device="cpu", progress=False))
    return caught.value.args[0]


def _validate_py_inputs(root, arch: str, prefetcher: bool) -> dict:
    """timm's validate.py with its defaults: the data config of the tag (``use_test_size``), its
    ImageDataset (RGB) and create_loader, with or without the prefetcher; file name -> model input."""
    from pathlib import Path

    from timm.data import create_dataset, resolve_data_config

    from conftest import validate_py_loader

    with torch.device("meta"):  # the config only: no weights, no memory
        model = timm.create_model(arch, pretrained=False)
    try:
        from timm.data import resolve_input_data_config  # validate.py's (newer timm)

        config = resolve_input_data_config(model, {}, use_test_size=True)
    except ImportError:
        config = resolve_data_config({}, model=model, use_test_size=True)
    dataset = create_dataset(root=str(root), name="", split="validation", input_img_mode="RGB")
    loader = validate_py_loader(dataset, config, batch_size=1, prefetcher=prefetcher)
    return {Path(f).name: x[0] for f, (x, _) in zip(dataset.filenames(), loader)}


def _torchvision_inputs(root, weights) -> dict:
    """torchvision's reference evaluation: ImageFolder with the weights' own transforms()."""
    from pathlib import Path

    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(root), transform=weights.transforms())
    return {Path(p).name: dataset[i][0] for i, (p, _) in enumerate(dataset.samples)}


@pytest.mark.parametrize(
    "model",
    [
        "vit_tiny_patch16_224.augreg_in21k_ft_in1k",  # ViT: crop_pct 0.9, bicubic, mean/std 0.5
        "deit_tiny_patch16_224.fb_in1k",  # DeiT: crop_pct 0.9, ImageNet mean/std
        "convnext_atto.d2_in1k",  # test_input_size 288 (trained at 224), test crop_pct 0.95
        "efficientnet_b1.ra4_e3600_r240_in1k",  # test size 288, crop_pct 1.0, mean/std 0.5
        "convnextv2_nano.fcmae_ft_in22k_in1k_384",  # crop_mode squash at 384
        "resnet18.tv_in1k",  # bilinear
        "torchvision:resnet50",  # torchvision's IMAGENET1K_V2: resize 232, crop 224, bilinear
        "torchvision:resnet50.IMAGENET1K_V1",  # the weights named: resize 256 (its own file, resnet50-0676ba61.pth)
    ],
)
def test_classify_feeds_the_pixels_of_the_peers_own_evaluation(tmp_path, hf_cache, monkeypatch, model):
    """``classify --model M --pretrained`` (and ``--prefetcher``) hands the model exactly the floats of
    timm's validate.py with its defaults (its ImageDataset, create_loader, PrefetchLoader or not), or of
    torchvision's ImageFolder with the weights' ``transforms()``, bit for bit, on odd images: one config
    kind each (the sweep over every supported timm tag found 92 configs, all alike)."""
    from simpool_bench.api import read_classification_data
    from simpool_bench.data.images import ImageDataset

    root = tmp_path / "val"
    _odd_images(root)
    tv = model.startswith("torchvision:")
    arch, _, tv_tag = model.removeprefix("torchvision:").partition(".") if tv else (model, "", "")
    sd = timm.create_model(arch, pretrained=False).state_dict()
    tv_weights = None
    if tv:
        from torchvision.models import get_model_weights

        tv_weights = get_model_weights(arch)[tv_tag or "DEFAULT"]
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(sd, tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(tv_weights.url))  # only this file
    else:
        fake_repo(hf_cache, timm.models.get_pretrained_cfg(arch).hf_hub_id, {"model.safetensors": sd})
    records = read_classification_data(root).records
    for prefetcher in (False, True) if not tv else (False,):
        want = _torchvision_inputs(root, tv_weights) if tv else _validate_py_inputs(root, arch, prefetcher)
        transform = _classify_transform(monkeypatch, root, model, prefetcher)
        dataset = ImageDataset(records, transform, strict=True)
        host, on_device = dataset.deferred_normalize()  # the engine's uint8 hand-over
        assert len(records) == len(want) == 7
        for i, r in enumerate(records):
            expected = want[os.path.basename(r.path)]
            for got in (dataset[i][0], on_device(host[i][0][None])[0]):
                assert got.dtype == torch.float32 and got.shape == expected.shape
                assert torch.equal(got.view(torch.int32), expected.view(torch.int32)), (model, prefetcher, r.path)


def test_a_torchvision_weight_file_takes_the_transform_of_the_weights_it_is(tmp_path, monkeypatch):
    """``--model torchvision:resnet50 --pretrained-file resnet50-0676ba61.pth``: a file under the
    name torchvision gives IMAGENET1K_V1's weights is evaluated as torchvision evaluates them
    (resize 256; before, the DEFAULT V2's 232 for any file), bit for bit; a file of another name
    keeps the DEFAULT weights' transform; ``torchvision:NAME.WEIGHTS`` names the weights, and an
    unknown one is one error listing them."""
    from torchvision.models import get_model_weights

    from simpool_bench.data.images import ImageDataset
    from simpool_bench.readers import read_classification_data

    root = tmp_path / "val"
    _odd_images(root)
    records = read_classification_data(root).records
    sd = timm.create_model("resnet50", pretrained=False).state_dict()
    v1, v2 = get_model_weights("resnet50").IMAGENET1K_V1, get_model_weights("resnet50").DEFAULT
    assert (v1.transforms().resize_size, v2.transforms().resize_size) == ([256], [232])
    for file_name, weights in ((os.path.basename(v1.url), v1), ("my_resnet50.pth", v2)):
        f = tmp_path / file_name
        torch.save(sd, f)
        want = _torchvision_inputs(root, weights)
        transform = _classify_transform(monkeypatch, root, "torchvision:resnet50", False, pretrained_file=f)
        for i, r in enumerate(records):
            got = ImageDataset(records, transform, strict=True)[i][0]
            assert torch.equal(got.view(torch.int32), want[os.path.basename(r.path)].view(torch.int32)), (file_name, r.path)
    assert resolve_name("torchvision:resnet50.IMAGENET1K_V1").data_config["crop_pct"] == 224 / 256
    assert resolve_name("torchvision:resnet50").weights_url == v2.url
    with pytest.raises(SimpoolBenchError) as err:
        resolve_name("torchvision:resnet50.IMAGENET1K_V3")
    assert (
        str(err.value)
        == "--model torchvision:resnet50.IMAGENET1K_V3: torchvision's resnet50 has no weights 'IMAGENET1K_V3'; it has IMAGENET1K_V1, IMAGENET1K_V2"
    )


def test_a_missing_pretrained_file_is_one_error_before_timm_reads_anything(tmp_path, hf_cache):
    """--pretrained-file of no file, through the API as through the CLI: one error naming it, for a
    timm name and a torchvision: name, never timm's FileNotFoundError or a download."""
    from simpool_bench.weights import ModelName, locate_pretrained

    missing = tmp_path / "nope.safetensors"
    with pytest.raises(SimpoolBenchError, match=rf"^--pretrained-file {missing}: no such file$"):
        locate_pretrained(ModelName("x", "vit_tiny_patch16_224"), {"hf_hub_id": "timm/x"}, missing)
    with pytest.raises(SimpoolBenchError, match=rf"^--pretrained-file {missing}: no such file$"):
        locate_pretrained(resolve_name("torchvision:resnet18"), {}, missing)
    assert not any(hf_cache.iterdir())


@pytest.fixture
def online_no_cache(tmp_path, monkeypatch):
    """An empty cache, HF_HUB_OFFLINE unset, no proxy; returns the probe's calls, the Hub faked unreachable."""
    import socket

    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "HF_ENDPOINT"):
        monkeypatch.delenv(v, raising=False)
    calls: list = []

    def no_route(address, timeout=None):
        calls.append((address, timeout))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_route)
    return calls


def test_an_unreachable_hub_is_one_error_without_huggingface_hubs_retries(online_no_cache, monkeypatch):
    """Online (HF_HUB_OFFLINE unset), nothing cached and no route to the Hub: one probe, then one
    error naming repository, cache and cause. It waited through huggingface_hub's 5 retries per file
    (60 s for timm's two weight names) and 20 'Retrying in' lines, then gave the same error."""
    import huggingface_hub

    def no_download(*a, **k):
        raise AssertionError("huggingface_hub was asked to download")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_download)
    with pytest.raises(
        SimpoolBenchError,
        match=r"^--pretrained deit_tiny_patch16_224: no cached copy of Hugging Face repository 'timm/deit_tiny_patch16_224.fb_in1k' "
        r"in .*hf, and huggingface.co:443 cannot be reached \(Name or service not known\); .*--pretrained-file FILE$",
    ):
        build_model("deit_tiny_patch16_224", pool=None, pretrained=True)
    with pytest.raises(SimpoolBenchError, match=r"^--model hf-hub:someone/nothing: .*'someone/nothing'.*cannot be reached"):
        build_model("hf-hub:someone/nothing", pool=None, pretrained=True)
    assert online_no_cache == [(("huggingface.co", 443), 5.0)] * 2


def test_the_hub_probe_asks_hf_endpoint_and_leaves_a_proxy_to_decide(online_no_cache, monkeypatch):
    import socket

    from simpool_bench.weights import hub_unreachable

    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.lan:8080/hf")
    assert hub_unreachable() == "mirror.lan:8080 cannot be reached (Name or service not known)"
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    assert hub_unreachable() == "hub.example:443 cannot be reached (Name or service not known)"
    assert online_no_cache == [(("mirror.lan", 8080), 5.0), (("hub.example", 443), 5.0)]
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    assert hub_unreachable() is None and len(online_no_cache) == 2  # not probed: the proxy decides

    class Open:
        closed = False

        def close(self):
            Open.closed = True

    monkeypatch.delenv("https_proxy")
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout=None: Open())
    assert hub_unreachable() is None and Open.closed


def test_pretrained_file_with_a_changed_weight_byte_is_refused(tmp_path, hf_cache):
    """A --pretrained-file (read by timm's torch.load, which never checks the zip's CRC-32s) with
    one byte of a weight changed loaded that wrong weight silently; now one line naming the entry.
    A torchvision: name's file alike."""
    import zipfile

    for arch, f in (("vit_tiny_patch16_224", tmp_path / "vit.pth"), ("torchvision:resnet18", tmp_path / "resnet18-f37072fd.pth")):
        torch.save(_random_sd(arch.split(":")[-1], 9, **(SMALL if arch.startswith("vit") else {})), f)
        data = bytearray(f.read_bytes())
        with zipfile.ZipFile(f) as z:
            info = max(z.infolist(), key=lambda i: i.file_size)
        name_len, extra_len = (
            int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
            int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
        )
        data[info.header_offset + 30 + name_len + extra_len + 7] ^= 0x80
        f.write_bytes(bytes(data))
        with pytest.raises(SimpoolBenchError) as e:
            build_model(
                arch,
                pool="gap" if "resnet" in arch else "cls",
                num_classes=0,
                pretrained_file=str(f),
                **(SMALL if arch.startswith("vit") else {}),
            )
        assert str(e.value) == (
            f"--pretrained-file {f}: damaged: its entry {info.filename!r} fails its CRC-32 check "
            "(its bytes are not those written: a faulty download, copy or disk?); fetch it again"
        )
