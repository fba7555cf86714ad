"""The torchvision.io JPEG path gives PIL's pixels (discovery's ``ToTensor`` and the resizing
protocols' PIL transforms the same tensors), falls back to PIL's errors, warnings and silence, and
DataLoader workers fall back to the main process when they cannot start."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from simpool_bench.data import decode
from simpool_bench.data.decode import jpeg_pixels, load_rgb_array
from simpool_bench.data.images import ImageDataset, load_rgb
from simpool_bench.data.records import Record
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.transforms import classification_transform, discovery_transform, wsol_transform
from simpool_bench.workers import default_workers, usable_workers


def _jpegs(tmp_path, size=(101, 75)):
    """One JPEG of each kind, ``size`` (width, height) pixels, named by kind (and size when not 101x75)."""
    w, h = size
    rng = np.random.default_rng(w * h)
    yy, xx = np.mgrid[0:h, 0:w]
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
        "restarts": (im, dict(quality=90, restart_marker_blocks=3)),
        "gray": (im.convert("L"), dict(quality=90)),
        "cmyk": (im.convert("CMYK"), dict(quality=90)),
        "q100": (im, dict(quality=100)),
        "exif": (im, dict(quality=90, exif=exif)),
    }
    suffix = "" if size == (101, 75) else f"_{w}x{h}"
    paths = {}
    for name, (img, kw) in kinds.items():
        paths[name + suffix] = tmp_path / f"{name}{suffix}.jpg"
        img.save(paths[name + suffix], format="JPEG", **kw)
    return paths


#: Odd sizes (width, height): portrait, tiny, a single pixel, odd widths for chroma subsampling.
ODD_SIZES = ((333, 500), (17, 9), (1, 1), (501, 375))


def test_torchvision_jpeg_path_equals_pil_on_every_kind(tmp_path):
    paths = _jpegs(tmp_path)
    transform = discovery_transform(16)
    for name, path in paths.items():
        via_tv = load_rgb_array(path)
        assert isinstance(via_tv, np.ndarray), name  # the fast path was taken
        pil = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(via_tv, pil), name
        assert torch.equal(transform(via_tv), transform(Image.open(path).convert("RGB"))), name


@pytest.fixture(scope="module")
def eval_transforms():
    """The protocols' PIL transforms: wsolevaluation's, and timm's eval transform of ViT-S/16's and
    ResNet-50's data configs, bicubic (theirs) and bilinear."""
    from simpool_bench.models import build_model

    transforms = {"wsol": wsol_transform()}
    for arch, pool in (("vit_small_patch16_224", "cls"), ("resnet50", "gap")):
        cfg = build_model(arch, pool=pool, num_classes=10).data_config
        for interpolation in ("bicubic", "bilinear"):
            transforms[f"{arch} {interpolation}"] = classification_transform(cfg, interpolation=interpolation)
    return transforms


def test_pil_image_of_the_libjpeg_path_gives_the_protocols_transforms_the_same_tensors(tmp_path, eval_transforms):
    paths = _jpegs(tmp_path)
    for size in ODD_SIZES:
        paths.update(_jpegs(tmp_path, size))
    for name, path in paths.items():
        assert jpeg_pixels(path) is not None, name  # the libjpeg-turbo path is taken
        img, pil = Image.fromarray(jpeg_pixels(path)), Image.open(path).convert("RGB")
        assert img.mode == "RGB" and img.size == pil.size, name
        for tf_name, tf in eval_transforms.items():
            assert torch.equal(tf(img), tf(pil)), (name, tf_name)
        assert np.array_equal(load_rgb_array(path), np.asarray(pil)), name


def test_bad_jpegs_go_through_pil_and_keep_its_errors(tmp_path):
    load = load_rgb_array
    good = _jpegs(tmp_path)["q90_420"]
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("trunc.jpg", "text.jpg"):
        with pytest.raises(SimpoolBenchError, match=name) as raised:
            load(tmp_path / name)
        assert str(raised.value) == _outcome(load_rgb, tmp_path / name)
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((5, 7, 3), np.uint8)).save(png)
    assert isinstance(load(png), Image.Image)  # not a JPEG: PIL as before
    rec = Record(image_id="trunc", path=str(tmp_path / "trunc.jpg"), width=101, height=75)
    transform = discovery_transform(16)
    with pytest.warns(RuntimeWarning, match="trunc.jpg"):
        _, _, ok = ImageDataset([rec], transform, decode=load)[0]
    assert not ok


def _outcome(load, path):
    """What ``load`` gives ``path``: its pixels, or its error's message."""
    try:
        return np.asarray(load(path))
    except SimpoolBenchError as exc:
        return str(exc)


def test_corrupt_jpegs_give_pils_pixels_or_error_and_print_nothing(tmp_path, capfd):
    """Bytes flipped or cut out of the entropy-coded data: libjpeg recovers from some with a
    warning it prints on stderr (PIL recovers silently, from the same data): those go through PIL;
    either way the outcome is PIL's, and nothing is printed."""
    data = _jpegs(tmp_path)["q90_420"].read_bytes()
    sos = data.find(b"\xff\xda")
    fell_back = decoded = 0
    for k in range(24):
        bad = bytearray(data)
        at = sos + 20 + (k * 97) % (len(data) - sos - 30)
        if k % 2:
            bad[at] ^= 0x5A
        else:
            del bad[at : at + 7]
        path = tmp_path / f"corrupt{k}.jpg"
        path.write_bytes(bytes(bad))
        want = _outcome(load_rgb, path)
        got = _outcome(load_rgb_array, path)
        assert type(got) is type(want) and np.array_equal(got, want), k
        if isinstance(want, np.ndarray):
            fast = jpeg_pixels(path) is not None
            fell_back, decoded = fell_back + (not fast), decoded + fast
    assert fell_back and decoded, (fell_back, decoded)  # both cases were met
    assert capfd.readouterr().err == ""


def test_pils_own_pixel_limit_applies_without_max_pixels(tmp_path, monkeypatch):
    """``max_pixels=None``: PIL's decompression-bomb limit, as load_rgb has it (warn over it,
    refuse over twice it), before libjpeg decodes anything."""
    path = _jpegs(tmp_path)["q90_420"]  # 101x75 = 7575 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    assert jpeg_pixels(path) is None
    with pytest.warns(Image.DecompressionBombWarning):
        assert isinstance(load_rgb_array(path), Image.Image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    with pytest.raises(SimpoolBenchError, match="DecompressionBombError") as refused:
        load_rgb_array(path)
    assert str(refused.value) == _outcome(load_rgb, path)
    assert isinstance(load_rgb_array(path, max_pixels=7575), np.ndarray)  # --max-pixels replaces PIL's limit
    with pytest.raises(SimpoolBenchError, match="over the limit of 7,574"):
        load_rgb_array(path, max_pixels=7574)


class _Fast(Dataset):
    def __init__(self, paths) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> bool:
        return jpeg_pixels(self.paths[i]) is not None


def test_what_other_threads_print_meanwhile_is_kept(tmp_path, monkeypatch, capfd):
    """While libjpeg decodes, fd 2 points at a file: libjpeg's warning lines are dropped (and the
    image goes through PIL), anything else written there meanwhile reaches stderr."""
    import torchvision.io

    path = _jpegs(tmp_path)["q90_420"]
    real = torchvision.io.decode_jpeg

    def printing(text: bytes):
        def decode_jpeg(*args, **kwargs):
            os.write(2, text)
            return real(*args, **kwargs)

        return decode_jpeg

    monkeypatch.setattr(torchvision.io, "decode_jpeg", printing(b"another thread\nCorrupt JPEG data: bad Huffman code\n"))
    assert jpeg_pixels(path) is None
    assert capfd.readouterr().err == "another thread\n"
    monkeypatch.setattr(torchvision.io, "decode_jpeg", printing(b"Premature end of JPEG file\n"))
    assert jpeg_pixels(path) is None
    assert capfd.readouterr().err == ""
    monkeypatch.setattr(torchvision.io, "decode_jpeg", real)
    assert jpeg_pixels(path) is not None  # the sink was emptied


def test_threads_decoding_at_once_leave_stderr_where_it_was(tmp_path, capfd):
    """Four threads through the libjpeg path at once: every image decodes, and fd 2 ends where it
    started (unguarded, one thread's restore could leave the sink in place: stderr lost)."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(_jpegs(tmp_path).values())
    before = os.fstat(2)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(jpeg_pixels, paths * 8))
    after = os.fstat(2)
    assert all(r is not None for r in results)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"


def test_workers_take_the_libjpeg_path_and_a_switch_turns_it_off(tmp_path, monkeypatch):
    paths = list(_jpegs(tmp_path).values())
    assert all(DataLoader(_Fast(paths), batch_size=None, num_workers=1))  # a forked worker has its own sink
    monkeypatch.setattr(decode, "ENABLED", False)
    assert not any(_Fast(paths)[i] for i in range(len(paths)))
    assert isinstance(load_rgb_array(paths[0]), Image.Image)


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


@pytest.mark.parametrize("cores,expected", [(1, 1), (3, 3), (8, 8), (64, 8)])
def test_default_workers_is_the_cores_up_to_eight(monkeypatch, cores, expected):
    """--workers unset: one worker a core this process may run on, at most 8."""
    from simpool_bench import workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert workers.cpu_count() == cores and default_workers() == expected


def test_no_workers_asked_for_starts_no_probe(capsys):
    """--workers 0 decodes in the main process without trying a worker: where none can start, no notice."""
    assert usable_workers(0, probe=_Broken()) == 0 and capsys.readouterr().err == ""


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


def test_every_jpeg_suffix_takes_the_libjpeg_path(tmp_path):
    """.jpg, .jpeg (ImageNet's .JPEG, any case) and .jpe all decode through libjpeg-turbo, to PIL's pixels."""
    arr = np.random.default_rng(2).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for name in ("a.jpg", "b.JPEG", "c.jpeg", "d.JPE"):
        Image.fromarray(arr).save(tmp_path / name, format="JPEG", quality=90)
        pixels = jpeg_pixels(tmp_path / name)
        assert pixels is not None, name
        np.testing.assert_array_equal(pixels, np.asarray(load_rgb(tmp_path / name)))
    Image.fromarray(arr).save(tmp_path / "e.png")
    assert jpeg_pixels(tmp_path / "e.png") is None
