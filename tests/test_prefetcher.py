"""``--prefetcher``: the pixels of timm's ``validate.py`` (and ``train.py``) by default, against
timm's own code path: its prefetcher transform, ``fast_collate`` and ``PrefetchLoader`` (which runs
on the CPU too), then forward and top-k as ``validate.py``. The floats are compared bit for bit,
through the float path and through the uint8 hand-over (``data.normalize``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from simpool_bench import api
from simpool_bench.data.images import ImageDataset
from simpool_bench.data.normalize import split_normalize
from simpool_bench.engine import EngineConfig, evaluate
from simpool_bench.results.protocols import RECORDED_SINCE, parameter_changes
from simpool_bench.transforms import TIMM_PREFETCHER, TO_TENSOR, classification_config, eval_transform, transform_record

from conftest import build_image_folder, build_tiny_checkpoint, invoke_cli

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
ODD = ((0.123456, 0.987654, 0.4999), (0.0371, 0.3333333, 1.7))  # long binary expansions


def _configs() -> dict[str, dict]:
    base = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center"}
    return {
        "imagenet": {**base, "mean": IMAGENET[0], "std": IMAGENET[1]},
        "half": {**base, "mean": (0.5,) * 3, "std": (0.5,) * 3},
        "odd crop": classification_config({**base, "mean": ODD[0], "std": ODD[1]}, resize=41, crop=33, interpolation="bilinear"),
    }


def _images() -> list[Image.Image]:
    """RGB images of odd sizes; the first holds every value 0..255 in every channel, uncropped."""
    rng = np.random.default_rng(7)
    out = []
    for w, h in [(256, 40), (45, 37), (301, 223), (33, 97)]:
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        out.append(arr)
    out[0][:, :, :] = np.arange(256, dtype=np.uint8)[None, :, None]
    return [Image.fromarray(a) for a in out]


def _timm_prefetched(cfg: dict, images: list[Image.Image]) -> torch.Tensor:
    """timm's own path: its prefetcher transform, fast_collate, PrefetchLoader (float32, on the CPU)."""
    from timm.data import create_transform
    from timm.data.loader import PrefetchLoader, fast_collate

    tf = create_transform(
        input_size=cfg["input_size"],
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg["crop_mode"],
        is_training=False,
        use_prefetcher=True,
    )
    batch = fast_collate([(tf(img), 0) for img in images])
    loader = PrefetchLoader([batch], mean=cfg["mean"], std=cfg["std"], device=torch.device("cpu"), img_dtype=torch.float32)
    (got, _), *rest = list(loader)
    assert not rest
    return got


@pytest.mark.parametrize("name", sorted(_configs()))
def test_prefetcher_floats_are_timms_prefetch_loader_bit_for_bit(name):
    cfg, images = _configs()[name], _images()
    want = _timm_prefetched(cfg, images)
    transform = eval_transform(cfg, prefetcher=True)
    floats = torch.stack([transform(img) for img in images])
    split = split_normalize(transform)
    assert split is not None
    host, on_device = split
    handed = on_device(torch.stack([host(img) for img in images]))
    for got in (floats, handed):
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    # not the ToTensor + Normalize floats: they differ somewhere, by about one float32 ulp
    plain = torch.stack([eval_transform(cfg)(img) for img in images])
    assert not torch.equal(plain.view(torch.int32), want.view(torch.int32))
    if name == "imagenet":  # the bound the README gives
        assert float((plain - want).abs().max()) <= 4.8e-7


def test_the_prefetcher_table_covers_every_value_as_timm_computes_it():
    """The device table (3 x 256) of each config equals PrefetchLoader's output for every value."""
    for cfg in _configs().values():
        every = Image.fromarray(np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2))
        from timm.data.loader import PrefetchLoader

        raw = torch.from_numpy(np.array(every)).permute(2, 0, 1)[None].contiguous()
        (want, _), *_ = list(PrefetchLoader([(raw, torch.zeros(1))], mean=cfg["mean"], std=cfg["std"], device=torch.device("cpu")))
        _, on_device = split_normalize(eval_transform(cfg, prefetcher=True))
        assert torch.equal(on_device.table.view(torch.int32), want[0, :, 0, :].view(torch.int32))


def test_transform_record_names_the_normalisation():
    cfg = _configs()["imagenet"]
    assert transform_record(eval_transform(cfg), *IMAGENET)["normalize"] == TO_TENSOR
    record = transform_record(eval_transform(cfg, prefetcher=True))  # mean/std read from the step
    assert record["normalize"] == TIMM_PREFETCHER
    assert (record["mean"], record["std"]) == (list(IMAGENET[0]), list(IMAGENET[1]))
    assert RECORDED_SINCE["normalize"]({}) == TO_TENSOR


@pytest.mark.parametrize("on_device", [False, True])
def test_classify_with_prefetcher_is_timms_validate_default(tmp_path, on_device):
    """A literal validate.py loop without --no-prefetcher (timm's ImageDataset and create_loader with
    its PrefetchLoader, forward, top-k) against ``run_classify(prefetcher=True)``: every model input
    bit for bit, every image's top-5 and the top-1/top-5 counts."""
    import timm
    from timm.data import ImageDataset as TimmImageDataset

    from conftest import TINY_VIT_ARCH, TINY_VIT_KWARGS, validate_py_loader

    root = build_image_folder(tmp_path / "val", counts=(4, 3, 4), size=(37, 29), seed=11)
    ckpt, ours = build_tiny_checkpoint(tmp_path / "tiny.pth.tar", pool="gap", num_classes=3, seed=5)
    net = timm.create_model(TINY_VIT_ARCH, pretrained=False, num_classes=3, global_pool="avg", **TINY_VIT_KWARGS).eval()
    net.load_state_dict(ours.state_dict())
    cfg = dict(ours.data_config)
    loader = validate_py_loader(TimmImageDataset(str(root)), cfg, batch_size=5, prefetcher=True)
    inputs, top5, hits = [], [], np.zeros(2, dtype=np.int64)
    with torch.no_grad():
        for images, target in loader:
            out = net(images)
            inputs.append(images)
            top5 += out.topk(5 if out.shape[1] >= 5 else out.shape[1], dim=1).indices.tolist()
            hits += [int((out.argmax(1) == target).sum()), len(target)]  # 3 classes: every label in the top 5
    want_inputs = torch.cat(inputs)

    seen: dict[int, torch.Tensor] = {}
    records = api.read_classification_data(root).records
    data = ImageDataset(records, eval_transform(classification_config(cfg), prefetcher=True))
    engine = EngineConfig(device="cpu", batch_size=4, workers=0, progress=False, normalize_on_device=on_device)

    def keep(batch, accs):
        seen.update({int(i): img.clone() for i, img in zip(batch.indices, batch.images)})

    evaluate(torch.nn.Identity(), data, dict, keep, engine)
    got_inputs = torch.stack([seen[i] for i in range(len(records))])
    assert torch.equal(got_inputs.view(torch.int32), want_inputs.view(torch.int32))

    res = api.run_classify(
        api.ClassifySpec(api.DataSpec("imagenet", data=root), api.ModelOptions(checkpoint=ckpt), prefetcher=True), engine
    )
    got = {r.metric: r.value for r in res.table.itertuples()}
    assert (got["top1"], got["top5"]) == (100.0 * hits[0] / hits[1], 100.0)
    assert res.extras["per_image"]["top5"].map(list).tolist() == [t[:3] for t in top5]
    assert 0 < hits[0] < hits[1]  # some hits, some misses: the counts are not trivially equal


def test_cli_prefetcher_is_recorded_and_gated(tmp_path):
    """``--prefetcher`` records ``normalize: timm-prefetcher``; ``check`` calls that a protocol change
    against a run without it, while a table written before ``normalize`` was recorded reads as ToTensor's."""
    root = build_image_folder(tmp_path / "val", counts=(2, 2, 2), seed=3)
    ckpt, _ = build_tiny_checkpoint(tmp_path / "tiny.pth.tar", num_classes=3, seed=1)
    tables = {}
    for name, extra in (("plain", ()), ("prefetcher", ("--prefetcher",))):
        res = invoke_cli("classify", "--checkpoint", ckpt, "--data", root, "--out", tmp_path / name, "--device", "cpu", *extra)
        assert res.exit_code == 0, res.output
        tables[name] = pd.read_csv(tmp_path / name / "results.csv")
    records = {n: {str(json) for json in t["transform"]} for n, t in tables.items()}
    assert all('"normalize": "to-tensor"' in r for r in records["plain"])
    assert all('"normalize": "timm-prefetcher"' in r for r in records["prefetcher"])

    changes = parameter_changes(tables["prefetcher"], tables["plain"])
    assert [(c.record, c.name, c.run, c.baseline) for c in changes] == [("transform", "normalize", TIMM_PREFETCHER, TO_TENSOR)]
    old = tables["plain"].copy()
    old["transform"] = old["transform"].str.replace(', "normalize": "to-tensor"', "", regex=False)
    assert all("normalize" not in t for t in old["transform"])
    assert parameter_changes(tables["plain"], old) == []
    assert [c.name for c in parameter_changes(tables["prefetcher"], old)] == ["normalize"]


def test_only_the_prefetcher_pair_is_split_and_its_step_takes_uint8_images_only():
    """timm's bare prefetcher transform (uint8 out: the normalisation is the loader's) and one with a
    step after PrefetcherNormalize keep their own path; a float image is refused, naming what it got."""
    from timm.data import create_transform

    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.transforms import PadToMultiple, PrefetcherNormalize

    cfg = _configs()["imagenet"]
    bare = create_transform(**{k: cfg[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct")}, use_prefetcher=True)
    assert split_normalize(bare) is None
    padded = eval_transform(cfg, prefetcher=True)
    padded.transforms.append(PadToMultiple(16))
    assert split_normalize(padded) is None
    with pytest.raises(
        SimpoolBenchError, match=r"PrefetcherNormalize: image torch\.float32 \(3, 4, 4\), expected a uint8 \(3, H, W\) tensor"
    ):
        PrefetcherNormalize(*IMAGENET)(torch.zeros(3, 4, 4))
