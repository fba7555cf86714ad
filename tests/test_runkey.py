"""The resume key (``runkey.resume_key``): every input that can change a number changes the key, so
a stored shard of another setting is never merged; the same inputs give the same key."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from simpool_bench import runkey
from simpool_bench.data.records import Record


class _Model(torch.nn.Module):
    def __init__(self, gamma: float = 1.25) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.gamma = gamma  # a plain setting, as BenchModel's arch, pool, gamma, min_scope, ...


@pytest.fixture
def base(tmp_path: Path) -> dict:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"pixels")
    torch.manual_seed(0)
    return {
        "kind": "localize cub",
        "model": _Model(),
        "records": [Record("a.jpg", image, 1, 40, 30, np.array([[1.0, 2.0, 30.0, 20.0]]))],
        "transform": T.Compose([T.Resize((224, 224)), T.ToTensor()]),
        "params": {"interval": 0.001, "v1": False, "cam_target": "gt"},
        "amp": "off",
        "shard_size": 5,
        "device": "cpu",
    }


def _key(c: dict) -> str:
    return runkey.resume_key(
        c["kind"], c["model"], c["records"], c["transform"], c["params"], amp=c["amp"], shard_size=c["shard_size"], device=c["device"]
    )


def test_the_same_inputs_give_the_same_key(base: dict) -> None:
    again = dict(base, model=_Model(), transform=T.Compose([T.Resize((224, 224)), T.ToTensor()]))
    again["model"].load_state_dict(base["model"].state_dict())
    assert _key(base) == _key(again) and len(_key(base)) == 24


def test_each_input_that_changes_a_number_changes_the_key(base: dict) -> None:
    key = _key(base)
    image = base["records"][0].path
    other_weights = _Model()
    with torch.no_grad():
        other_weights.fc.weight.add_(1.0)
    other_setting = _Model(gamma=2.0)  # the same weights, another gamma
    other_setting.load_state_dict(base["model"].state_dict())
    changes = {
        "command": {"kind": "discover voc07"},
        "a protocol parameter": {"params": {**base["params"], "interval": 0.01}},
        "another protocol parameter": {"params": {**base["params"], "cam_target": "pred"}},
        "the model's tensors": {"model": other_weights},
        "a model setting": {"model": other_setting},
        "a box": {"records": [Record("a.jpg", image, 1, 40, 30, np.array([[1.0, 2.0, 30.0, 21.0]]))]},
        "a label": {"records": [Record("a.jpg", image, 2, 40, 30, np.array([[1.0, 2.0, 30.0, 20.0]]))]},
        "the transform": {"transform": T.Compose([T.Resize((256, 256)), T.ToTensor()])},
        "--amp": {"amp": "bf16"},
        "--shard-size": {"shard_size": 6},
        "the device type": {"device": "cuda"},
    }
    for what, change in changes.items():
        assert _key({**base, **change}) != key, what
    st = image.stat()  # a replaced image file: its modification time changes, nothing else
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert _key(base) != key, "the image file's time"


def test_a_submodules_setting_is_in_the_key_and_the_key_is_that_of_an_equal_model(base: dict) -> None:
    """Plain settings of submodules decide numbers too: timm's per-block ``fused_attn`` switch (set
    by ``TIMM_FUSED_ATTN`` or ``build_model(fused_attn=...)``), a norm's ``eps``. A model built alike
    with the same weights gives the same key."""
    from simpool_bench.models import build_model

    def vit(**kw):
        torch.manual_seed(0)
        return build_model("vit_tiny_patch16_224", pool="simpool", num_classes=3, img_size=32, **kw)

    default, explicit, eps = vit(), vit(fused_attn=False), vit()
    eps.norm.eps = 1e-5
    keys = [_key({**base, "model": m}) for m in (default, explicit, eps)]
    assert len(set(keys)) == 3
    assert _key({**base, "model": vit()}) == keys[0]
    assert runkey.model_fingerprint(explicit) == runkey.model_fingerprint(vit(fused_attn=False))


def test_a_functions_code_is_in_the_key_not_its_address(base: dict) -> None:
    """An API caller's function transform, or one in torchvision's ``Lambda``: every function
    described as 'builtins.function({})' and every Lambda as 'Lambda()' would resume on stale shards
    after an edit. Its code and values decide the key; its address and source line do not."""

    def double(x):
        return x * 2

    def triple(x):
        return x * 3

    def twice(x):
        return x * 2

    key = _key({**base, "transform": double})
    assert _key({**base, "transform": triple}) != key
    assert _key({**base, "transform": T.Compose([T.ToTensor(), T.Lambda(double)])}) != _key(
        {**base, "transform": T.Compose([T.ToTensor(), T.Lambda(triple)])}
    )
    by_two, by_three = T.Lambda(lambda x: x * 2), T.Lambda(lambda x: x * 3)  # one name, one bytecode: another constant
    assert _key({**base, "transform": by_two}) != _key({**base, "transform": by_three})
    scale = [2.0]
    lambdas = [T.Lambda(lambda x: x * scale[0]) for _ in range(2)]  # two objects, one code: one key
    assert _key({**base, "transform": lambdas[0]}) == _key({**base, "transform": lambdas[1]})
    same = runkey.describe_transform(lambdas[0])
    scale[0] = 3.0  # a closure value changes the numbers
    assert runkey.describe_transform(lambdas[0]) != same
    assert runkey.describe_function(twice) != runkey.describe_function(double)  # another name
    assert "0x" not in runkey.describe_transform(T.Lambda(lambda x, ref=object(): x))


SAME_SOURCE = """
from torchvision import transforms as T
from simpool_bench.runkey import describe_transform
def make():
    box = object()  # a closure value whose repr holds its address
    return lambda x: x if box else None
print(describe_transform(T.Compose([T.ToTensor(), T.Lambda(make())])))
"""


def test_a_function_transform_is_described_alike_in_every_process() -> None:
    """The same source run here and in another process (other addresses) gives one description."""
    import contextlib
    import io
    import subprocess
    import sys

    there = subprocess.run([sys.executable, "-c", SAME_SOURCE], capture_output=True, text=True, check=True).stdout
    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(SAME_SOURCE, {"__name__": "__main__"})
    assert here.getvalue() == there and "Lambda()" in there and "__main__.make.<locals>.<lambda>#" in there


def test_the_code_is_in_the_key(base: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change in a number-deciding source file (here: its hash, as ``code_version`` gives it)
    changes the key; ``code_version`` covers the metrics and models."""
    key = _key(base)
    monkeypatch.setattr(runkey, "code_version", lambda: "another version of the metrics")
    assert _key(base) != key
    assert {"metrics", "models", "discovery.py", "pooling.py", "transforms.py", "tasks"} <= set(runkey.CODE_FILES)


@pytest.mark.parametrize(
    "flag",
    [
        (torch.backends.cuda.matmul, "allow_tf32"),
        (torch.backends.cudnn, "allow_tf32"),
        (torch.backends.cudnn, "benchmark"),
        (torch.backends.cudnn, "deterministic"),
    ],
    ids=["matmul.allow_tf32", "cudnn.allow_tf32", "cudnn.benchmark", "cudnn.deterministic"],
)
def test_cuda_float32_settings_are_in_a_cuda_key_only(base: dict, flag) -> None:
    """timm's validate.py turns TF32 matrix products and cudnn.benchmark on; an API caller may too.
    Each changes a CUDA run's numbers, so its key; a CPU run's key stays (the flags act on CUDA only).
    The flags are only read here: no GPU is needed."""
    module, name = flag
    cpu, cuda, cuda1 = _key(base), _key({**base, "device": "cuda"}), _key({**base, "device": "cuda:1"})
    before = getattr(module, name)
    setattr(module, name, not before)  # torch's flag objects take no monkeypatch (custom __setattr__)
    try:
        assert _key(base) == cpu
        assert _key({**base, "device": "cuda"}) != cuda
        assert _key({**base, "device": "cuda:1"}) != cuda1  # an indexed device is CUDA too
    finally:
        setattr(module, name, before)
    assert getattr(module, name) == before and _key({**base, "device": "cuda"}) == cuda


class _Stats(torch.nn.Module):
    """A module whose only state is one buffer (as BatchNorm's running statistics)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("stat", value)


def test_buffers_and_each_tensors_dtype_and_shape_are_in_the_key(base: dict) -> None:
    """Buffers (BatchNorm's running mean and variance) change the numbers as weights do; so do a
    tensor's dtype and shape, even where its bytes are the same (zeros of float32 and of int32)."""
    keys = [
        _key({**base, "model": _Stats(value)})
        for value in (
            torch.zeros(2, 3),
            torch.ones(2, 3),  # another running statistic
            torch.zeros(3, 2),  # the same bytes, another shape
            torch.zeros(2, 3, dtype=torch.int32),  # the same bytes, another dtype
        )
    ]
    assert len(set(keys)) == 4


def _package_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's sources that ``code_version`` reads instead of the installed ones."""
    import shutil

    root = Path(runkey.__file__).resolve().parent
    copy = tmp_path / "simpool_bench"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    monkeypatch.setattr(runkey, "__file__", str(copy / "runkey.py"))
    return copy


#: The sources that compute numbers: the metrics, data decoding, the tasks, the engine, the models,
#: pooling, transforms, map extraction and the stored maps' reading.
_NUMBER_DECIDING = (
    "metrics",
    "data/images.py",
    "data/decode.py",
    "discovery.py",
    "engine",
    "tasks",
    "finite.py",
    "map_store.py",
    "extraction.py",
    "map_sources.py",
    "models",
    "pooling.py",
    "transforms.py",
)


def test_code_version_covers_every_code_file_and_the_library_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``CODE_FILES`` entry and every number-deciding source exists (a renamed file would
    silently leave the key), an edit of any one of them changes ``code_version``, an edit elsewhere
    does not; torch's and timm's versions are in it too."""
    import timm

    copy = _package_copy(tmp_path, monkeypatch)
    version = runkey.code_version()
    for name in sorted(set(runkey.CODE_FILES) | set(_NUMBER_DECIDING)):
        target = copy / name
        assert target.exists(), name
        edited = sorted(target.rglob("*.py"))[-1] if target.is_dir() else target
        before = edited.read_bytes()
        edited.write_bytes(before + b"\n# an edit\n")
        assert runkey.code_version() != version, name
        edited.write_bytes(before)
    assert runkey.code_version() == version
    (copy / "console.py").write_bytes((copy / "console.py").read_bytes() + b"\n# not a number-deciding file\n")
    assert runkey.code_version() == version
    for module in (torch, timm):
        with monkeypatch.context() as m:
            m.setattr(module, "__version__", "0.0.0")
            assert runkey.code_version() != version, module.__name__
