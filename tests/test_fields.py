"""The run descriptions check their fields' types when they are made (``fields.check_fields``):
an API user's wrong kind of value is one error naming the field, found by a walkthrough of the
Python API where these ran into raw TypeErrors mid-run, or, for ``v1='False'``, turned V1 on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simpool_bench import api
from simpool_bench.errors import SimpoolBenchError

CUB = api.DataSpec("cub")


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: api.LocalizeSpec(CUB, interval="0.01"), "LocalizeSpec.interval = '0.01': expected float"),
        (lambda: api.LocalizeSpec(CUB, v1="False"), "LocalizeSpec.v1 = 'False': expected bool"),
        (lambda: api.DiscoverSpec(api.DataSpec("voc07"), mass="0.6"), "DiscoverSpec.mass = '0.6': expected float"),
        (lambda: api.DataSpec("cub", subset="2"), "DataSpec.subset = '2': expected int or None"),
        (lambda: api.DataSpec("cub", data=3), "DataSpec.data = 3: expected a path (str or Path) or None"),
        (lambda: api.ModelOptions(img_size="160"), "ModelOptions.img_size = '160': expected int or None"),
        (lambda: api.ModelOptions(checkpoint=3), "ModelOptions.checkpoint = 3: expected a path (str or Path) or None"),
        (lambda: api.ModelOptions(cls_head=True), "ModelOptions.cls_head = True: expected int or None"),
        (lambda: api.ClassifySpec(CUB, knn_k="10,20"), "ClassifySpec.knn_k = '10,20': expected a tuple or int"),
        (lambda: api.LocalizeSpec(CUB, model=Path("x.pth")), "LocalizeSpec.model = PosixPath('x.pth'): expected ModelOptions or None"),
        (lambda: api.LocalizeSpec(CUB, model=torch.nn.Linear(2, 2)), "LocalizeSpec.model = a torch.nn.modules.linear.Linear: expected ModelOptions"),
        (lambda: api.LocalizeSpec("cub"), "LocalizeSpec.data = 'cub': expected DataSpec"),
        (lambda: api.EngineConfig(batch_size="8"), "EngineConfig.batch_size = '8': expected int"),
        (lambda: api.EngineConfig(batch_size=0), "EngineConfig.batch_size = 0: expected an integer >= 1"),
        (lambda: api.EngineConfig(workers=-1), "EngineConfig.workers = -1: expected an integer >= 0"),
        (lambda: api.EngineConfig(shard_size=0), "EngineConfig.shard_size = 0: expected an integer >= 1"),
        (lambda: api.EngineConfig(max_pixels=0), "EngineConfig.max_pixels = 0: expected an integer >= 1 or None"),
        (lambda: api.EngineConfig(progress="no"), "EngineConfig.progress = 'no': expected bool"),
    ],
)  # fmt: skip
def test_a_field_of_the_wrong_kind_is_one_error_naming_it(make, expected):
    with pytest.raises(SimpoolBenchError) as err:
        make()
    assert str(err.value).startswith(expected), str(err.value)


def test_the_kinds_a_field_takes_are_accepted():
    """Paths as str or Path, ints where floats go, numpy numbers, lists for tuples, a single k."""
    data = api.DataSpec("cub", data="/data/cub", metadata=Path("/m"), subset=np.int64(2))
    assert api.LocalizeSpec(data, interval=1e-3).interval == 1e-3
    assert api.DiscoverSpec(api.DataSpec("voc07"), mass=np.float32(0.6), k_patches=np.int32(100), lost_compat=np.bool_(True))
    assert api.ClassifySpec(data, knn_k=[10, 20]).knn_k == [10, 20] and api.ClassifySpec(data, knn_k=20).knn_k == 20
    assert api.ModelOptions(arch="resnet18", gamma="none", mean=[0.5, 0.5, 0.5], crop_pct=1).crop_pct == 1
    assert api.EngineConfig(device="cpu", batch_size=np.int64(8), resume_dir="runs/x", max_pixels=None).batch_size == 8


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: api.LocalizeSpec(CUB, v1=1), "LocalizeSpec.v1 = 1: expected bool"),  # an int is no bool
        (lambda: api.LocalizeSpec(CUB, interval=True), "LocalizeSpec.interval = True: expected float"),  # nor a bool a number
        (lambda: api.DiscoverSpec(api.DataSpec("voc07"), k_patches=True), "DiscoverSpec.k_patches = True: expected int"),
        (lambda: api.DiscoverSpec(api.DataSpec("voc07"), method=3), "DiscoverSpec.method = 3: expected str"),
        (lambda: api.DataSpec(None), "DataSpec.dataset = None: expected str"),
        (lambda: api.DataSpec("cub", data=b"/data"), "DataSpec.data = a builtins.bytes: expected a path (str or Path) or None"),
        (lambda: api.ModelOptions(mean=0.5), "ModelOptions.mean = 0.5: expected a tuple or None"),
        (lambda: api.LocalizeSpec(CUB, model=CUB), "LocalizeSpec.model = a simpool_bench.specs.DataSpec: expected ModelOptions or None"),
        (lambda: api.DataSpec("cub", subset="9" * 100), "DataSpec.subset = '" + "9" * 76 + "...: expected int or None"),
    ],
)  # fmt: skip
def test_near_miss_kinds_are_refused_and_a_long_value_is_cut(make, expected):
    """Bool and int are not each other, bytes are no path (Path(b'...') is a TypeError), a
    dataclass must be the field's own class, None is refused where it is not in the annotation."""
    with pytest.raises(SimpoolBenchError) as err:
        make()
    assert str(err.value) == expected
