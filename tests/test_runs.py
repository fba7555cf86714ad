"""The run layer: the CLI is parse -> spec -> run -> print (same table from both), specs are
checked in the run layer (so Python users get the CLI's errors), and the cli package has no
import cycle."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from simpool_bench import api
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from tests.conftest import invoke_cli

CLI_DIR = Path(api.__file__).parent / "cli"


def test_cli_and_run_layer_give_the_same_table(tmp_path, make_voc_dataset):
    voc = make_voc_dataset(tmp_path / "VOC2007", n=7)
    res = invoke_cli("discover", "--data", voc, "--method", "full-image", "--out", tmp_path / "cli")
    assert res.exit_code == 0, res.output
    spec = api.DiscoverSpec(api.DataSpec("voc07", data=voc), method="full-image")
    result = api.run_discover(spec, EngineConfig(device="cpu", workers=0, progress=False), tmp_path / "api")
    cli = pd.read_csv(tmp_path / "cli" / "results.csv")
    cols = ["dataset", "split", "metric", "value"]
    pd.testing.assert_frame_equal(cli[cols], result.table[cols].reset_index(drop=True), check_dtype=False)
    assert (cli["split"] == "trainval").all()  # VOC's default split, from the registry
    assert {p.name for p in result.files} >= {"results.csv", "results.parquet", "results.json"}
    assert result.extras["n_images"] == 7


@pytest.mark.parametrize(
    "spec, needle",
    [
        (lambda d: api.LocalizeSpec(d, baseline="full-box", maps=Path("m")), "--maps needs no model"),
        (lambda d: api.LocalizeSpec(d, model=api.ModelOptions(arch="resnet18"), baseline="full-box"), "--baseline needs no model"),
        (lambda d: api.LocalizeSpec(d, interval=1.5, baseline="full-box"), "--interval 1.5"),
        (lambda d: api.LocalizeSpec(d, cam_target="top", baseline="full-box"), "--cam-target 'top'"),
        (lambda d: api.LocalizeSpec(api.DataSpec("cub"), baseline="full-box"), "--data is required"),
    ],
)
def test_localize_spec_errors_are_the_cli_errors(tmp_path, spec, needle):
    with pytest.raises(SimpoolBenchError, match=needle.replace("(", r"\(")):
        api.run_localize(spec(api.DataSpec("cub", data=tmp_path)), EngineConfig(device="cpu", workers=0))


def test_cli_modules_import_no_cli_package_module_but_options():
    for path in CLI_DIR.glob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        relative = {(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert relative <= {(1, "options")}, f"{path.name} imports {relative}"
        absolute = [
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("simpool_bench.cli")
        ]
        assert not absolute, f"{path.name} imports {absolute}"


# ------------------------------------------------------------------ each spec field reaches its task
class _Reached(Exception):
    """Raised by a stand-in task with the keyword arguments the run gave it."""

    def __init__(self, kwargs: dict) -> None:
        super().__init__("reached")
        self.kwargs = kwargs


def _stop_at(monkeypatch, owner, name: str) -> None:
    def stand_in(*args, **kwargs):
        raise _Reached({"args": args, **kwargs})

    monkeypatch.setattr(owner, name, stand_in)


def _reached(call) -> dict:
    with pytest.raises(_Reached) as got:
        call()
    return got.value.kwargs


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    from conftest import build_image_folder, build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset

    root = tmp_path_factory.mktemp("wired")
    return {
        "ckpt": build_tiny_checkpoint(root / "tiny.pth.tar")[0],
        "voc": build_voc_dataset(root / "VOC2007", n=2),
        "wsol": build_wsol_dataset(root / "wsol", n=3),
        "val": build_image_folder(root / "imgs" / "val", counts=(1, 1, 1)),
        "train": build_image_folder(root / "bank", counts=(2, 2, 2), seed=1),
    }


def test_every_protocol_field_of_a_spec_reaches_the_task(wired, monkeypatch):
    """A spec value left out of the task call would run the default without a word: each
    non-default value given here is the one the task gets (its own stand-in stops the run)."""
    from simpool_bench import extraction, runs, tasks

    engine = EngineConfig(device="cpu", workers=0, progress=False, allow_nonfinite=True)
    model = api.ModelOptions(checkpoint=wired["ckpt"])
    wsol = wired["wsol"]
    cub = api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata, label="mine")

    _stop_at(monkeypatch, tasks, "classify")
    spec = api.ClassifySpec(
        api.DataSpec("imagenet", data=wired["val"].parent), model=model, knn_train=wired["train"], knn_k=(2, 3), knn_temperature=0.2, knn_chunks=3
    )  # fmt: skip
    got = _reached(lambda: api.run_classify(spec, engine))
    assert (got["knn_k"], got["knn_temperature"], got["knn_chunks"], got["split"], got["dataset"]) == ((2, 3), 0.2, 3, "val", "imagenet")
    assert [r.path.name for r in got["knn_train"]] == ["000.jpg", "001.jpg"] * 3  # the bank, in class order

    _stop_at(monkeypatch, tasks, "localize")
    got = _reached(lambda: api.run_localize(api.LocalizeSpec(cub, model=model, interval=0.01, v1=True, cam_target="pred"), engine))
    assert (got["interval"], got["v1"], got["cam_target"], got["baseline"], got["dataset"]) == (0.01, True, "pred", None, "mine")
    got = _reached(lambda: api.run_localize(api.LocalizeSpec(cub, baseline="full-box", interval=0.01, v1=True), engine))
    assert (got["interval"], got["v1"], got["baseline"]) == (0.01, True, "full-box")

    _stop_at(monkeypatch, runs, "from_maps")
    got = _reached(lambda: api.run_localize(api.LocalizeSpec(cub, maps=Path("maps"), interval=0.01, v1=True, cam_target="pred"), engine))
    assert (got["interval"], got["v1"], got["cam_target"]) == (0.01, True, "pred")
    assert (got["allow_nonfinite"], got["store_dataset"]) == (True, "cub")
    assert got["protocol"] == {"task": "localize", "interval": 0.01, "v1": True, "cam_target": "pred", "image_size": 224}
    voc = api.DataSpec("voc07", data=wired["voc"])
    got = _reached(lambda: api.run_discover(api.DiscoverSpec(voc, maps=Path("maps"), mass=0.3, lost_compat=True), engine))
    assert (got["mass"], got["lost_compat"], got["allow_nonfinite"], got["split"]) == (0.3, True, True, "trainval")

    _stop_at(monkeypatch, tasks, "discover")
    for method in ("attn", "lost"):
        spec = api.DiscoverSpec(voc, model=model, method=method, mass=0.3, lost_compat=True, k_patches=7)
        got = _reached(lambda spec=spec: api.run_discover(spec, engine))
        assert (got["method"], got["mass"], got["lost_compat"], got["k_patches"]) == (method, 0.3, True, 7)

    _stop_at(monkeypatch, extraction, "extract_maps")
    spec = api.ExtractSpec(cub, model=model, dtype="float32", features=True, cam_target="pred", resume=False)
    got = _reached(lambda: api.run_extract(spec, engine, Path("store")))
    assert (got["dtype"], got["features"], got["cam_target"]) == ("float32", True, "pred")
    assert (got["resume"], got["protocol"]) == (False, "localize")
    assert json.loads(got["info"]["provenance"]["protocol"]) == {
        "task": "extract", "cam_target": "pred", "dtype": "float32", "features": True, "maps_for": "localize",
    }  # fmt: skip


def test_from_maps_without_a_protocol_records_the_parameters_it_was_given():
    """``api.from_maps`` called without ``protocol``: the spec's defaults with the given values; a
    CAM store's own ``cam_target`` where none is given (it recorded 'gt' for CAMs of the predicted
    class)."""
    from simpool_bench.runs import _stored_protocol

    attn = {"cam_target": "gt", "provenance": {"attn_source": "simpool"}}
    given = {"dataset": "cub", "split": "test", "interval": 0.01, "v1": True, "cam_target": "pred", "allow_nonfinite": False}
    assert _stored_protocol("localize", Path("m"), given, attn) == {
        "task": "localize", "interval": 0.01, "v1": True, "cam_target": "pred", "image_size": 224,
    }  # fmt: skip
    assert _stored_protocol("localize", Path("m"), {"dataset": "cub"}, attn) == {
        "task": "localize", "interval": 0.001, "v1": False, "cam_target": "gt", "image_size": 224,
    }  # fmt: skip
    cams = {"cam_target": "pred", "provenance": {"attn_source": "cam"}}
    assert _stored_protocol("localize", Path("m"), {"dataset": "cub"}, cams)["cam_target"] == "pred"
    assert _stored_protocol("localize", Path("m"), {"dataset": "cub"}, {**cams, "cam_target": "gt"})["cam_target"] == "gt"
    assert _stored_protocol("localize", Path("m"), {"dataset": "cub"}, {**attn, "cam_target": "pred"})["cam_target"] == "gt"
    assert _stored_protocol("discover", Path("m"), {"dataset": "voc07", "mass": 0.3, "lost_compat": True, "split": "trainval"}, attn) == {
        "task": "discover", "method": "attn", "mass": 0.3, "lost_compat": True, "k_patches": None, "no_hard": False,
    }  # fmt: skip


def test_trust_checkpoint_on_a_run_without_a_model_is_named_by_its_flag(tmp_path):
    spec = api.LocalizeSpec(api.DataSpec("cub", data=tmp_path), baseline="full-box", model=api.ModelOptions(trust=True))
    with pytest.raises(SimpoolBenchError) as err:
        api.run_localize(spec, EngineConfig(device="cpu", progress=False))
    assert str(err.value) == "--trust-checkpoint: a run with --baseline builds no model, so it would not be used; drop --trust-checkpoint"


def test_a_no_model_run_names_its_box_as_the_model(wired, one_thread):
    """The table's model of a run without one is the box it scored ('baseline:center'), so that
    compare and check tell two baselines apart."""
    engine = EngineConfig(device="cpu", workers=0, progress=False)
    voc = api.DataSpec("voc07", data=wired["voc"])
    for method in ("center", "full-image"):
        table = api.run_discover(api.DiscoverSpec(voc, method=method), engine).table
        assert set(table["model"]) == {f"baseline:{method}"}
    wsol = wired["wsol"]
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="full-box", interval=0.1)
    assert set(api.run_localize(spec, engine).table["model"]) == {"baseline:full-box"}


def test_classify_and_localize_values_are_refused_before_the_data_is_read(tmp_path, monkeypatch):
    """Each is one error naming the flag and the value, before the (possibly long) read of the data."""
    from simpool_bench import runs

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read")

    for name in ("read_classification_data", "read_localization_data"):
        monkeypatch.setattr(runs, name, no_data)
    engine = EngineConfig(device="cpu", progress=False)
    imagenet, cub = api.DataSpec("imagenet", data=tmp_path), api.DataSpec("cub", data=tmp_path)
    drawn = api.ModelOptions(arch="resnet18", random_init=True)
    for call, expected in (
        (
            lambda: api.run_classify(api.ClassifySpec(imagenet, drawn, knn_train=tmp_path, knn_chunks=0), engine),
            "--knn-chunks 0: expected a whole number >= 1 (DINO's eval_knn.py: 100; SimPool's: 500)",
        ),
        (
            lambda: api.run_classify(api.ClassifySpec(imagenet, drawn, knn_subset=2), engine),
            "--knn-subset picks part of the k-NN memory bank: give --knn-train DIR too",
        ),
        (
            lambda: api.run_classify(api.ClassifySpec(imagenet, replace(drawn, interpolation="bilinear"), interpolation="bicubic"), engine),
            "interpolation 'bicubic' (ClassifySpec) and 'bilinear' (ModelOptions) differ; give one of them",
        ),
        (
            lambda: api.run_localize(api.LocalizeSpec(cub, baseline="full-box", interval=1.0), engine),
            "--interval 1.0: expected a step in (0, 1), e.g. 0.001 or 0.01",
        ),
    ):  # fmt: skip
        with pytest.raises(SimpoolBenchError) as err:
            call()
        assert str(err.value) == expected


def test_classify_records_the_folder_it_read_and_pairs_bank_classes_in_timm_order(wired, tmp_path, monkeypatch):
    """``--data DIR`` without a val sub-folder records DIR's name as the split; with a head, test
    and bank records are both relabelled in timm's natural class order (c9 before c10), so that
    a bank image and a test image of one folder carry one label."""
    import shutil

    from simpool_bench import tasks

    image = next(wired["val"].rglob("*.jpg"))
    for root in ("mini", "bank"):
        for name in ("c10", "c9"):
            (tmp_path / root / name).mkdir(parents=True)
            shutil.copy(image, tmp_path / root / name / "0.jpg")
    _stop_at(monkeypatch, tasks, "classify")
    engine = EngineConfig(device="cpu", workers=0, progress=False)
    spec = api.ClassifySpec(
        api.DataSpec("imagenet", data=tmp_path / "mini"), api.ModelOptions(checkpoint=wired["ckpt"]), knn_train=tmp_path / "bank"
    )
    got = _reached(lambda: api.run_classify(spec, engine))
    assert got["split"] == "mini"
    label = {r.path.parent.name: r.label for r in got["args"][1]}
    assert label == {"c9": 0, "c10": 1} and {r.path.parent.name: r.label for r in got["knn_train"]} == label


def test_formats_skip_empty_entries_and_a_wrong_engine_is_one_error(tmp_path):
    from simpool_bench.runs import _formats

    assert _formats(" json , ,md,") == ["json", "md"]
    spec = api.DiscoverSpec(api.DataSpec("voc07", data=tmp_path), method="center")
    with pytest.raises(SimpoolBenchError) as err:
        api.run_discover(spec, "cpu")  # type: ignore[arg-type]
    assert str(err.value) == "run_discover: engine: expected EngineConfig, got builtins.str"


def test_a_cam_store_is_scored_only_with_its_own_cam_target():
    """Stored CAMs are of the class they were extracted for: localize_stored refuses another
    cam_target, and only a store whose provenance says 'cam' counts as one (map_store.holds_cams)."""
    import numpy as np

    from simpool_bench.data.records import Record
    from simpool_bench.map_store import holds_cams
    from simpool_bench.tasks.wsol import localize_stored

    class CamStore:
        root = Path("cams")
        manifest = {"cam_target": "pred", "provenance": {"attn_source": "cam"}}

        def check_records(self, *args, **kwargs):
            pass

    records = [Record("a.jpg", Path("a.jpg"), 0, 8, 8, np.array([[0.0, 0.0, 4.0, 4.0]]))]
    with pytest.raises(SimpoolBenchError) as err:
        localize_stored(CamStore(), records, cam_target="gt")
    assert str(err.value) == "--maps cams: CAMs extracted with --cam-target pred, not gt"
    assert holds_cams(CamStore.manifest)
    assert not holds_cams({"provenance": None}) and not holds_cams({"provenance": {"attn_source": "simpool"}}) and not holds_cams({})
