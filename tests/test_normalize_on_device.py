"""uint8 hand-over with normalisation on the device (``data.normalize``) gives the transform's own
floats bit for bit, and every evaluation through it the same numbers as the float path.

The reference is the transform itself (torchvision's ToTensor + Normalize, timm's MaybeToTensor),
run on the same decoded images; images have odd sizes (vector tails) and every channel value."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.data.images import ImageDataset, load_rgb
from simpool_bench.data.normalize import DeviceNormalize, PilToUint8, split_normalize
from simpool_bench.engine import EngineConfig, evaluate
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.transforms import classification_transform, discovery_transform, wsol_transform

# means/stds with long binary expansions (the division rounds differently from a reciprocal product)
ODD_MEAN, ODD_STD = (0.123456, 0.987654, 0.4999), (0.0371, 0.3333333, 1.7)


def _transforms():
    from simpool_bench.models import build_model

    vit = build_model("vit_small_patch16_224", pool="simpool", num_classes=3).data_config
    cnn = build_model("resnet50", pool="gap", num_classes=3).data_config
    return {
        "wsol_imagenet": wsol_transform(),
        "wsol_half": wsol_transform((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        "wsol_odd": wsol_transform(ODD_MEAN, ODD_STD, size=37),
        "timm_vit": classification_transform(vit),
        "timm_resnet": classification_transform(cnn),
        "timm_odd_crop": classification_transform(cnn, resize=41, crop=33, interpolation="bilinear", mean=ODD_MEAN, std=ODD_STD),
    }


def _images(tmp_path):
    """Decoded RGB images of odd sizes: noise over every value, gradients, grey and CMYK files."""
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h) in enumerate([(1, 1), (17, 3), (255, 1), (301, 223), (64, 97), (5, 129)]):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        if i == 3:
            arr[0, :256, :] = np.arange(256, dtype=np.uint8)[:, None]  # every value in every channel
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    grey = Image.fromarray(rng.integers(0, 256, size=(50, 70), dtype=np.uint8))
    grey.save(tmp_path / "grey.jpg", quality=90)
    grey.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    return [load_rgb(p) for p in [*paths, tmp_path / "grey.jpg", tmp_path / "cmyk.jpg"]]


def test_device_floats_equal_the_transform_bit_for_bit(tmp_path):
    images = _images(tmp_path)
    for name, transform in _transforms().items():
        split = split_normalize(transform)
        assert split is not None, name
        host, on_device = split
        for img in images:
            u8 = host(img)
            assert u8.dtype == torch.uint8, name
            got, want = on_device(u8[None])[0], transform(img)
            assert got.dtype == want.dtype == torch.float32
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (name, img.size)


def test_the_table_is_the_transform_of_each_value():
    transform = wsol_transform(ODD_MEAN, ODD_STD)
    _, on_device = split_normalize(transform)
    f32 = np.float32
    for c in range(3):
        for v in range(256):  # numpy's float32 scalar ops: IEEE division and subtraction, one value at a time
            plain = (f32(v) / f32(255) - f32(ODD_MEAN[c])) / f32(ODD_STD[c])
            assert on_device.table[c, v].numpy().tobytes() == plain.tobytes(), (c, v)


def test_other_transform_shapes_keep_the_float_path():
    from torchvision import transforms as T

    assert split_normalize(discovery_transform(16)) is None  # LOST's padding comes after Normalize
    assert split_normalize(T.Compose([T.Resize(8), T.PILToTensor()])) is None  # no ToTensor
    assert split_normalize(T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3), T.Lambda(lambda x: x * 2)])) is None
    assert split_normalize(T.Compose([T.ToTensor(), T.ToTensor()])) is None
    # any step but Normalize right after ToTensor: a flip is no function of (channel, value)
    assert split_normalize(T.Compose([T.ToTensor(), T.RandomHorizontalFlip(p=1.0)])) is None
    assert split_normalize(lambda img: img) is None  # not a Compose
    # other containers with .transforms apply them by chance or in any order: not split
    norm = T.Normalize((0.5,) * 3, (0.5,) * 3)
    assert split_normalize(T.RandomApply([T.ToTensor(), norm], p=0.5)) is None
    assert split_normalize(T.RandomOrder([T.Resize(4), T.ToTensor(), norm])) is None
    host, _ = split_normalize(T.Compose([T.Resize((4, 4)), T.ToTensor()]))  # no Normalize: [0, 1] floats
    assert host(Image.new("RGB", (9, 9))).shape == (3, 4, 4)


def test_a_dataset_whose_decode_is_not_pils_keeps_the_float_path(tmp_path):
    """Only PIL images split (PilToUint8 takes an RGB PIL image): a dataset decoding otherwise
    (discovery's libjpeg arrays, whose ToTensor takes them as they are) is not split."""
    from simpool_bench.data.decode import load_rgb_array
    from simpool_bench.data.records import Record

    Image.new("RGB", (5, 4), (9, 99, 199)).save(tmp_path / "a.jpg")
    records = [Record("a.jpg", tmp_path / "a.jpg", 0, 5, 4)]
    assert ImageDataset(records, wsol_transform(), decode=load_rgb_array).deferred_normalize() is None
    assert ImageDataset(records, wsol_transform()).deferred_normalize() is not None


def test_the_split_dataset_keeps_strict_and_the_pixel_limit(tmp_path):
    from simpool_bench.data.images import ImageTooLarge
    from simpool_bench.data.records import Record

    Image.new("RGB", (5, 4)).save(tmp_path / "a.png")
    ds = ImageDataset([Record("a.png", tmp_path / "a.png", 0, 5, 4)], wsol_transform(), strict=True, max_pixels=19)
    host, _ = ds.deferred_normalize()
    with pytest.raises(ImageTooLarge, match=r"is 5x4 \(20 pixels\), over the limit of 19"):
        host[0]


def test_wrong_inputs_are_one_line_errors():
    with pytest.raises(SimpoolBenchError, match="RGB PIL images before ToTensor, got a L PIL image"):
        PilToUint8()(Image.new("L", (3, 3)))
    _, on_device = split_normalize(wsol_transform())
    with pytest.raises(SimpoolBenchError, match=r"expected uint8 \(B, 3, H, W\)"):
        on_device(torch.zeros(1, 3, 4, 4))
    for table in (torch.zeros(3, 255), torch.zeros(3, 256, dtype=torch.float64), torch.zeros(1, 256)):
        with pytest.raises(ValueError, match=r"DeviceNormalize: table .*, expected \(3, 256\) float32"):
            DeviceNormalize(table)


def _broken(records, tmp_path):
    """``records`` with the fourth image's file replaced by one that does not decode."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    return [*records[:3], replace(records[3], path=bad), *records[4:]]


@pytest.mark.parametrize("workers", [0, 2])
def test_the_engine_hands_the_model_the_same_floats(tmp_path, make_wsol_dataset, workers):
    wsol = make_wsol_dataset(tmp_path / "wsol", n=10, seed=4)
    records = _broken(api.read_localization_data("cub", wsol.image_root, wsol.metadata), tmp_path)
    data = ImageDataset(records, wsol_transform(ODD_MEAN, ODD_STD), warn=False)
    seen = {}
    for flag in (False, True):

        def step(batch, accs, flag=flag):
            for i, ok, img in zip(batch.indices, batch.ok, batch.images):
                if ok:
                    seen.setdefault(flag, {})[int(i)] = img.clone()

        res = evaluate(
            torch.nn.Identity(),
            data,
            dict,
            step,
            EngineConfig(device="cpu", batch_size=4, workers=workers, progress=False, normalize_on_device=flag),
        )
        assert res.n_failed == 1
    assert seen[True].keys() == seen[False].keys() == set(range(10)) - {3}
    for i in seen[False]:
        assert torch.equal(seen[True][i].view(torch.int32), seen[False][i].view(torch.int32)), i


def test_localize_and_classify_give_the_same_numbers(tmp_path, make_wsol_dataset, make_image_folder, make_tiny_checkpoint, monkeypatch):
    _, model = make_tiny_checkpoint(tmp_path / "tiny.pth.tar", seed=6)
    wsol = make_wsol_dataset(tmp_path / "wsol", n=12, seed=6)
    loc = _broken(api.read_localization_data("cub", wsol.image_root, wsol.metadata), tmp_path)
    cls = api.read_classification_data(make_image_folder(tmp_path / "folder", counts=(4, 4, 4), seed=6)).records
    calls = []
    real_call = DeviceNormalize.__call__
    monkeypatch.setattr(DeviceNormalize, "__call__", lambda self, x: calls.append(x.shape[0]) or real_call(self, x))

    def run(flag):
        cfg = EngineConfig(device="cpu", batch_size=5, workers=0, progress=False, normalize_on_device=flag)
        maps: dict[int, np.ndarray] = {}
        out_loc = ev.localize(model, loc, cfg, on_maps=lambda idx, m: maps.update(zip(idx.tolist(), m)))
        out_cls = ev.classify(model, cls, classification_transform(model.data_config), cfg)
        return out_loc, out_cls, maps

    float_loc, float_cls, float_maps = run(False)
    assert calls == []
    dev_loc, dev_cls, dev_maps = run(True)
    assert sum(calls) == len(loc) + len(cls)  # every image went through the device step
    assert dev_loc.rows == float_loc.rows and dev_cls.rows == float_cls.rows
    assert dev_loc.n_failed == float_loc.n_failed == 1
    assert dev_loc.per_image.equals(float_loc.per_image) and dev_cls.per_image.equals(float_cls.per_image)
    assert dev_maps.keys() == float_maps.keys() and all(np.array_equal(dev_maps[i], float_maps[i]) for i in dev_maps)
    calls.clear()
    run(None)  # the default on the CPU: the float path
    assert calls == []


def test_the_split_is_picklable_for_workers():
    import pickle

    host, on_device = split_normalize(classification_transform({"input_size": (3, 32, 32), "mean": ODD_MEAN, "std": ODD_STD}))
    again = pickle.loads(pickle.dumps(host))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    assert torch.equal(again(img), host(img))
    assert torch.equal(pickle.loads(pickle.dumps(on_device))(host(img)[None]), on_device(host(img)[None]))
