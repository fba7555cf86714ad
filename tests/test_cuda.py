"""The GPU path, against the CPU path on the same weights and images (skipped without CUDA; run on
a lent GPU by ``benchmarks/device_check.sh``).

Stated tolerance: fp32 on CUDA computes the same functions with other kernels, so logits, maps and
keys agree with the CPU's to float rounding (checked: 1e-4), and each metric (top-1/5, MaxBoxAcc at
IoU 30/50/70, MaxBoxAccV2, CorLoc) agrees within ONE IMAGE (100 / N points). bf16 autocast on CUDA
keeps that same one-image bound against fp32 on the CPU (``test_amp`` states it on the CPU alone).
LOST's modes sort the patches on the model's device, as ``main_lost.py`` does; its exact boxes
on CUDA are ``test_lost_e2e``'s (which runs on CUDA when there is one).
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.engine import EngineConfig
from simpool_bench.transforms import classification_transform

from conftest import invoke_cli, outcome_metrics

# SIMPOOL_BENCH_TEST_GPU=cpu runs these on the CPU against itself (a dry run of the code paths)
GPU = os.environ.get("SIMPOOL_BENCH_TEST_GPU", "cuda")
pytestmark = pytest.mark.skipif(GPU == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

N = 24
ONE_IMAGE = 100.0 / N + 1e-9


@pytest.fixture(scope="module")
def case(tmp_path_factory, make_image_folder, make_wsol_dataset, make_voc_dataset, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("cuda")
    ckpt, model = make_tiny_checkpoint(root / "tiny.pth.tar", seed=5)
    folder = make_image_folder(root / "folder", counts=(8, 8, 8), seed=5)
    wsol = make_wsol_dataset(root / "wsol", n=N, seed=5)
    voc = make_voc_dataset(root / "voc", n=N, seed=5)
    return {
        "ckpt": ckpt,
        "model": model,
        "wsol": wsol,
        "cls": api.read_classification_data(folder)[0],
        "loc": api.read_localization_data("cub", wsol.image_root, wsol.metadata),
        "disc": api.read_discovery_data("voc07", voc),
    }


def _cfg(device: str, amp: str = "off") -> EngineConfig:
    return EngineConfig(device=device, batch_size=8, amp=amp, progress=False, workers=0)


def _within_one_image(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= ONE_IMAGE, (key, a[key], b[key])


def test_forward_on_cuda_equals_cpu_to_rounding(case):
    model = case["model"]
    tf = classification_transform(model.data_config)
    x = torch.stack([tf(Image.open(r.path).convert("RGB")) for r in case["cls"]])
    with torch.inference_mode():
        cpu = model(x)
        gpu = copy.deepcopy(model).to(GPU)(x.to(GPU))  # the shared model stays on the CPU
    torch.testing.assert_close(gpu.logits.cpu(), cpu.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gpu.attn.float().cpu(), cpu.attn.float(), atol=1e-4, rtol=1e-4)
    assert gpu.logits.device.type == torch.device(GPU).type


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_every_metric_on_cuda_within_one_image_of_cpu_fp32(case, amp):
    model = case["model"]
    tf = classification_transform(model.data_config)
    cpu = {
        "classify": outcome_metrics(ev.classify(model, case["cls"], tf, _cfg("cpu"))),
        "localize": outcome_metrics(ev.localize(model, case["loc"], _cfg("cpu"))),
        "discover": outcome_metrics(ev.discover(model, case["disc"], _cfg("cpu"), method="lost")),
    }
    gpu = {
        "classify": outcome_metrics(ev.classify(model, case["cls"], tf, _cfg(GPU, amp))),
        "localize": outcome_metrics(ev.localize(model, case["loc"], _cfg(GPU, amp))),
        "discover": outcome_metrics(ev.discover(model, case["disc"], _cfg(GPU, amp), method="lost")),
    }
    model.to("cpu")
    for task in cpu:
        _within_one_image(gpu[task], cpu[task])
    assert 0 < cpu["localize"][("maxboxacc_v2", None)] < 100  # not a degenerate case


def test_cli_runs_on_the_gpu_and_records_the_device(case, tmp_path):
    out = tmp_path / "loc"
    res = invoke_cli(
        "localize",
        "--dataset",
        "cub",
        "--data",
        case["wsol"].image_root,
        "--metadata",
        case["wsol"].metadata,
        "--checkpoint",
        case["ckpt"],
        "--device",
        GPU,
        "--amp",
        "bf16",
        "--out",
        out,
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "results.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows and all(str(r["device"]).startswith(GPU) for r in rows)
    assert any(r["metric"] == "maxboxacc_v2" for r in rows)


def test_uint8_hand_over_normalises_on_the_gpu_bit_for_bit(case):
    """The GPU's table lookup gives the CPU transform's floats, and localize through it (the GPU
    default) the same numbers and maps as with float32 batches from the workers."""
    from simpool_bench.data.images import load_rgb
    from simpool_bench.data.normalize import split_normalize
    from simpool_bench.transforms import wsol_transform

    transform = wsol_transform((0.123456, 0.987654, 0.4999), (0.0371, 0.3333333, 1.7))
    host, on_device = split_normalize(transform)
    images = [load_rgb(r.path) for r in case["loc"]]
    got = on_device(torch.stack([host(img) for img in images]).to(GPU)).cpu()
    want = torch.stack([transform(img) for img in images])
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    model = copy.deepcopy(case["model"])
    runs = {}
    for flag in (False, None):
        maps: dict = {}
        cfg = EngineConfig(device=GPU, batch_size=8, progress=False, workers=2, normalize_on_device=flag)
        out = ev.localize(model, case["loc"], cfg, on_maps=lambda idx, m, maps=maps: maps.update(zip(idx.tolist(), m)))
        runs[flag] = (out.rows, maps)
    assert runs[None][0] == runs[False][0]
    assert all(np.array_equal(runs[None][1][i], runs[False][1][i]) for i in runs[False][1])


def test_prefetcher_pixels_on_the_gpu_are_timms_prefetch_loader_on_the_gpu_bit_for_bit(case):
    """``--prefetcher``'s table lookup on the GPU against timm's own PrefetchLoader on the GPU (its
    sub_/div_ by 255 mean/std there), and against our CPU floats: the same bits."""
    from timm.data.loader import PrefetchLoader, fast_collate

    from simpool_bench.data.images import load_rgb
    from simpool_bench.data.normalize import split_normalize
    from simpool_bench.transforms import eval_transform

    mean, std = (0.123456, 0.987654, 0.4999), (0.0371, 0.3333333, 1.7)
    transform = eval_transform({"input_size": (3, 40, 40), "interpolation": "bilinear", "mean": mean, "std": std, "crop_pct": 0.875}, True)
    host, on_device = split_normalize(transform)
    images = [load_rgb(r.path) for r in case["cls"]]
    raw = torch.stack([host(img) for img in images])
    got = on_device(raw.to(GPU)).cpu()
    batch = fast_collate([(host(img), 0) for img in images])
    (timm_gpu, _), *_ = list(PrefetchLoader([batch], mean=mean, std=std, device=torch.device(GPU), img_dtype=torch.float32))
    cpu = torch.stack([transform(img) for img in images])
    assert torch.equal(got.view(torch.int32), timm_gpu.cpu().view(torch.int32))
    assert torch.equal(got.view(torch.int32), cpu.view(torch.int32))
