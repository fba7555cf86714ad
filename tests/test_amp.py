"""Mixed precision on CPU, device and memory errors of the engine.

Stated tolerance (SPEC section 7, ``--amp bf16``): on a tiny model, bf16 autocast and fp32 give
top-1 and every MaxBoxAcc (IoU 30/50/70) and MaxBoxAccV2 within ONE IMAGE of each other
(100 / N percentage points), and a top-1 flip only happens on an image whose fp32 top-1 margin is
below twice the largest bf16 logit error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.cli import app
from simpool_bench.data.images import ImageDataset
from simpool_bench.engine import Batch, EngineConfig, autocast, evaluate
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics.classification import TopKAccumulator
from simpool_bench.transforms import classification_transform

from conftest import outcome_metrics

N = 24
RIDGE = 1e-2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, make_image_folder, make_wsol_dataset, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("amp")
    ckpt, model = make_tiny_checkpoint(root / "tiny.pth.tar", seed=1)
    folder = make_image_folder(root / "folder", counts=(8, 8, 8), seed=3)
    wsol = make_wsol_dataset(root / "wsol", n=N, seed=3)
    records, _ = api.read_classification_data(folder)
    loc_records = api.read_localization_data("cub", wsol.image_root, wsol.metadata)
    train, _ = api.read_classification_data(make_image_folder(root / "train", counts=(8, 8, 8), seed=4))
    _fit_head(model, train)
    return model, ckpt, records, loc_records


def _fit_head(model: torch.nn.Module, records) -> None:
    """Ridge-regress the classifier on the (random) features of other images, so that predictions
    differ between images (a random head predicts one class everywhere) without being perfect."""
    tf = classification_transform(model.data_config)
    x = torch.stack([tf(Image.open(r.path).convert("RGB")) for r in records])
    with torch.no_grad():
        f = model(x).features.double()
        f = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], dim=1)
        y = torch.nn.functional.one_hot(torch.tensor([r.label for r in records]), 3).double()
        w = torch.linalg.solve(f.T @ f + RIDGE * torch.eye(f.shape[1], dtype=f.dtype), f.T @ y)
        model.head.weight.copy_(w[:-1].T.float())
        model.head.bias.copy_(w[-1].float())


def _config(amp: str) -> EngineConfig:
    return EngineConfig(device="cpu", batch_size=8, amp=amp, progress=False)


def test_bf16_agrees_with_fp32_within_one_image(tiny):
    model, _, records, loc_records = tiny
    tf = classification_transform(model.data_config)
    one_image = 100.0 / N
    # independent fp32 and bf16 logits, image by image
    x = torch.stack([tf(Image.open(r.path).convert("RGB")) for r in records])
    with torch.inference_mode():
        ref = model(x).logits.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).logits.float()
    err = float((low - ref).abs().max())
    assert 0 < err < 0.05 * float(ref.abs().max())  # autocast really ran, and stayed close
    labels = torch.tensor([r.label for r in records])
    top2 = ref.topk(2, dim=1).values
    near_ties = int(((top2[:, 0] - top2[:, 1]) <= 2 * err).sum())
    assert len(set(ref.argmax(1).tolist())) > 1  # predictions are spread over classes
    ref_top1 = 100.0 * float((ref.argmax(1) == labels).double().mean())

    # the engine really runs under autocast: its bf16 logits moved off fp32, by bf16's error only
    e32, e16 = _engine_logits(model, records, tf, "off"), _engine_logits(model, records, tf, "bf16")
    torch.testing.assert_close(e32, ref, atol=1e-4, rtol=1e-4)
    assert 0 < float((e16 - e32).abs().max()) <= 2 * err

    c32 = outcome_metrics(ev.classify(model, records, tf, _config("off")))
    c16 = outcome_metrics(ev.classify(model, records, tf, _config("bf16")))
    assert c32[("top1", None)] == pytest.approx(ref_top1, abs=1e-9)
    assert abs(c16[("top1", None)] - c32[("top1", None)]) <= min(one_image, 100.0 * near_ties / N) + 1e-9

    l32 = outcome_metrics(ev.localize(model, loc_records, _config("off")))
    l16 = outcome_metrics(ev.localize(model, loc_records, _config("bf16")))
    for key in [("maxboxacc", 30), ("maxboxacc", 50), ("maxboxacc", 70), ("maxboxacc_v2", None)]:
        assert abs(l16[key] - l32[key]) <= one_image + 1e-9, key
    assert 0 < l32[("maxboxacc_v2", None)] < 100


def _engine_logits(model: torch.nn.Module, records, tf, amp: str) -> torch.Tensor:
    got: dict[int, torch.Tensor] = {}

    def step(batch: Batch, accs) -> None:
        for j, i in enumerate(batch.indices):
            got[int(i)] = batch.output.logits[j].float()

    evaluate(model, ImageDataset(records, tf), dict, step, _config(amp))
    return torch.stack([got[i] for i in range(len(records))])


def test_fp16_autocast_runs_on_cpu_and_agrees(tiny):
    model, _, records, _ = tiny
    tf = classification_transform(model.data_config)
    c32 = outcome_metrics(ev.classify(model, records, tf, _config("off")))
    c16 = outcome_metrics(ev.classify(model, records, tf, _config("fp16")))
    assert abs(c16[("top1", None)] - c32[("top1", None)]) <= 100.0 / N + 1e-9


def test_each_amp_value_autocasts_to_its_own_dtype():
    """--amp bf16 computes in bfloat16, fp16 in float16, off in float32 (a matmul, as in the model)."""
    x = torch.ones(2, 2)
    for amp, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("off", torch.float32)):
        with autocast(torch.device("cpu"), amp):
            assert (x @ x).dtype == dtype, amp


def test_unknown_amp_is_a_clear_error(tiny):
    model, _, records, _ = tiny
    with pytest.raises(SimpoolBenchError, match="EngineConfig.amp = 'fp8': expected one of off, bf16, fp16"):
        _config("fp8")  # refused when made, not once a run has read its data
    config = _config("off")
    config.amp = "fp8"  # set afterwards (EngineConfig is not frozen): the evaluation still refuses it
    with pytest.raises(SimpoolBenchError, match="--amp 'fp8' is not one of off, bf16, fp16"):
        ev.classify(model, records, classification_transform(model.data_config), config)
    with pytest.raises(SimpoolBenchError, match="--amp"):
        autocast(torch.device("cpu"), "half")


def test_cli_device_cuda_without_gpu_is_one_line_error(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _, ckpt, records, _ = tiny
    res = CliRunner().invoke(
        app,
        [
            "classify",
            "--data",
            str(records[0].path.parent.parent),
            "--checkpoint",
            str(ckpt),
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda") and "no CUDA GPU" in lines[0]


class _Exploding(torch.nn.Module):
    """A model whose forward fails like an allocator that ran out of memory."""

    def __init__(self, err: BaseException) -> None:
        super().__init__()
        self.err = err
        self.lin = torch.nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.err


class _Tensors(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full((3, 4, 4), float(i)), i, True


@pytest.mark.parametrize(
    "err",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes."),
        MemoryError(),
    ],
)
def test_batch_that_does_not_fit_suggests_a_smaller_one(err):
    cfg = EngineConfig(device="cpu", batch_size=64, progress=False)
    with pytest.raises(SimpoolBenchError, match=r"--batch-size 64 does not fit in the memory of cpu; try --batch-size 32"):
        evaluate(_Exploding(err), _Tensors(5), dict, lambda b, a: None, cfg)
    cfg.batch_size = 1
    with pytest.raises(SimpoolBenchError, match="even one image does not fit"):
        evaluate(_Exploding(err), _Tensors(5), dict, lambda b, a: None, cfg)


def test_other_runtime_errors_are_not_reported_as_memory():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        evaluate(
            _Exploding(RuntimeError("shape mismatch")), _Tensors(5), dict, lambda b, a: None, EngineConfig(device="cpu", progress=False)
        )


def test_every_batch_reaches_step_once_with_host_outputs_and_exact_shard_merges():
    """10 items, shards of 4, batches of 3: batches [0,1,2] [3] [4,5,6] [7] [8,9]; counts are exact."""

    class Sum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).mean(1)

    seen: list[list[int]] = []

    def step(batch: Batch, accs) -> None:
        assert batch.output.device.type == "cpu"
        assert "_failed" not in accs
        seen.append(batch.indices.tolist())
        np.testing.assert_array_equal(batch.output.numpy(), batch.indices.astype(np.float32))
        accs["topk"].update(torch.nn.functional.one_hot(torch.as_tensor(batch.indices) % 3, 3).float(), torch.zeros(len(batch.indices)))

    cfg = EngineConfig(device="cpu", batch_size=3, shard_size=4, progress=False)
    res = evaluate(Sum(), _Tensors(10), lambda: {"topk": TopKAccumulator(3, ks=(1,))}, step, cfg)
    assert seen == [[0, 1, 2], [3], [4, 5, 6], [7], [8, 9]]
    assert int(res.accumulators["topk"].total) == 10 and int(res.accumulators["topk"].correct[0]) == 4  # 0, 3, 6, 9
    assert res.shards_total == 3 and res.n_images == 10 and res.n_failed == 0
    assert res.extras["images_per_s"] > 0 and 0 <= res.extras["data_wait_s"] <= res.extras["loop_s"]


def test_a_run_without_a_model_records_amp_off(tiny, tmp_path, make_wsol_dataset):
    """``--amp bf16`` on a no-model baseline changed nothing, yet the table recorded ``amp=bf16``
    (a stored-maps run recorded ``off``); a run without a model records ``off``, a model run its amp."""
    wsol = make_wsol_dataset(tmp_path / "wsol", n=4, seed=5)
    data = api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata)
    config = EngineConfig(device="cpu", batch_size=2, amp="bf16", workers=0, progress=False)
    baseline = api.run_localize(api.LocalizeSpec(data, baseline="center-gaussian"), config)
    assert set(baseline.table["amp"]) == {"off"}
    ckpt = tiny[1]
    model = api.run_localize(api.LocalizeSpec(data, model=api.ModelOptions(checkpoint=ckpt)), config)
    assert set(model.table["amp"]) == {"bf16"}
