"""The torchvision.io JPEG path gives discovery the same tensors as PIL, falls back to PIL's errors,
and DataLoader workers fall back to the main process when they cannot start."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from simpool_bench.data.decode import load_rgb_array
from simpool_bench.data.images import ImageDataset
from simpool_bench.data.records import Record
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.transforms import discovery_transform
from simpool_bench.workers import default_workers, usable_workers


def _jpegs(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:75, 0:101]
    base = np.stack([(xx * 3) % 256, (yy * 5) % 256, ((xx + yy) * 2) % 256], -1)
    arr = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90": neither path applies it (the references do not)
    kinds = {
        "q90_420": (im, dict(quality=90)),
        "q90_444": (im, dict(quality=90, subsampling=0)),
        "q75_422": (im, dict(quality=75, subsampling=1)),
        "progressive": (im, dict(quality=85, progressive=True)),
        "gray": (im.convert("L"), dict(quality=90)),
        "cmyk": (im.convert("CMYK"), dict(quality=90)),
        "q100": (im, dict(quality=100)),
        "exif": (im, dict(quality=90, exif=exif)),
    }
    paths = {}
    for name, (img, kw) in kinds.items():
        paths[name] = tmp_path / f"{name}.jpg"
        img.save(paths[name], format="JPEG", **kw)
    return paths


def test_torchvision_jpeg_path_equals_pil_on_every_kind(tmp_path):
    paths = _jpegs(tmp_path)
    transform = discovery_transform(16)
    for name, path in paths.items():
        via_tv = load_rgb_array(path)
        assert isinstance(via_tv, np.ndarray), name  # the fast path was taken
        pil = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(via_tv, pil), name
        assert torch.equal(transform(via_tv), transform(Image.open(path).convert("RGB"))), name


def test_bad_jpegs_go_through_pil_and_keep_its_errors(tmp_path):
    good = _jpegs(tmp_path)["q90_420"]
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("trunc.jpg", "text.jpg"):
        with pytest.raises(SimpoolBenchError, match=name):
            load_rgb_array(tmp_path / name)
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(png)
    assert isinstance(load_rgb_array(png), Image.Image)  # not a JPEG: PIL as before
    rec = Record(image_id="trunc", path=str(tmp_path / "trunc.jpg"), width=101, height=75)
    with pytest.warns(RuntimeWarning, match="trunc.jpg"):
        _, _, ok = ImageDataset([rec], discovery_transform(16), decode=load_rgb_array)[0]
    assert not ok


class _Broken(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> torch.Tensor:
        raise OSError("No space left on device (simulated full /dev/shm)")


def test_workers_default_and_fallback(capsys):
    assert 1 <= default_workers() <= 8
    assert usable_workers(0) == 0
    assert usable_workers(3) == 3  # workers start on this machine
    assert usable_workers(2, probe=_Broken()) == 0
    err = capsys.readouterr().err
    assert err.count("notice: DataLoader workers cannot start") == 1 and "simulated" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvjpeg needs a CUDA device")
def test_nvjpeg_pixels_differ_from_pil_so_discovery_decodes_on_the_cpu(tmp_path):
    """The README's choice: nvjpeg (torchvision.io.decode_jpeg on CUDA, one batched call) gives
    other pixels than PIL on chroma-subsampled JPEGs (4:2:0, 4:2:2, progressive: most photos), and
    PIL's on 4:4:4 (seen on an H200, torchvision 0.26), so discovery keeps libjpeg-turbo on the CPU
    workers. If this fails, nvjpeg has changed here: revisit that choice (benchmarks/nvjpeg_check.py)."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    paths = {k: v for k, v in _jpegs(tmp_path).items() if k not in ("gray", "cmyk")}
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
    same = {}
    for (name, path), img in zip(paths.items(), decoded):
        pil = np.asarray(Image.open(path).convert("RGB"))
        got = img.permute(1, 2, 0).cpu().numpy()
        assert got.shape == pil.shape, name
        assert float(np.abs(got.astype(np.float64) - pil).mean()) < 8, name  # the same picture, other pixels
        same[name] = bool(np.array_equal(got, pil))
        assert np.array_equal(load_rgb_array(path), pil), name  # what discovery decodes: PIL's pixels
    assert not same["q90_420"] and not same["q75_422"] and not same["progressive"], same
    assert same["q90_444"], same
