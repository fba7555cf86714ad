"""Full provenance and the protocol-aware ``check``: every run records its protocol parameters and
image transform (schema 3), ``check`` fails on any difference naming the parameter and both values
unless ``--allow-protocol-change`` accepts it, knows every catalog metric, names the real paths,
and still reads schema-2 baselines (with a note)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from simpool_bench import api
from simpool_bench import results as R
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics import catalog
from simpool_bench.results.protocols import PROTOCOL_PARAMETERS
from simpool_bench.specs import protocol_of
from simpool_bench.transforms import classification_transform, discovery_transform, transform_record, wsol_transform

from conftest import build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, said
from conftest import invoke_cli as invoke
from results_helpers import _prov, _rows

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "crop_pct": 0.875,
}


def _engine() -> EngineConfig:
    return EngineConfig(device="cpu", workers=0, progress=False)


def _table(values: dict, protocol: dict | None, transform: dict | None, **kw) -> pd.DataFrame:
    prov = _prov(protocol=R.table.as_json(protocol), transform=R.table.as_json(transform), random_init=False, **kw)
    return R.make_table(_rows(values), prov)


# ------------------------------------------------------------------------------------ the CLI gate
def test_discover_mass_change_fails_check_naming_mass_unless_allowed(tmp_path):
    voc = build_voc_dataset(tmp_path / "VOC2007", n=5)
    ckpt, _ = build_tiny_checkpoint(tmp_path / "m.pth.tar")
    common = ("discover", "--dataset", "voc07", "--data", voc, "--checkpoint", ckpt, "--device", "cpu", "--no-resume")
    assert invoke(*common, "--out", tmp_path / "base").exit_code == 0
    assert invoke(*common, "--mass", "0.3", "--out", tmp_path / "run").exit_code == 0
    run, base = tmp_path / "run" / "results.parquet", tmp_path / "base" / "results.parquet"
    table = R.read_run(run)
    assert json.loads(table["protocol"].iloc[0]) == {
        "task": "discover",
        "method": "attn",
        "mass": 0.3,
        "lost_compat": False,
        "k_patches": None,
        "no_hard": False,
    }
    summary = tmp_path / "summary.md"
    res = invoke("check", tmp_path / "run", "--baseline", tmp_path / "base", "--no-github", "--summary", summary)
    assert res.exit_code == 1, res.output
    md = summary.read_text()
    assert "- `voc07/trainval` mass: run 0.3, baseline 0.6 (protocol)" in md
    assert "| protocol-mismatch | voc07 | trainval | protocol:mass |  | 0.6 | 0.3 |" in md
    assert f"Run `{run}` against baseline `{base}`." in md  # the real paths, not 'run'/'baseline'
    # accepted knowingly: a note, no mismatch row; CorLoc is still gated (here given the whole range)
    res = invoke(
        "check", tmp_path / "run", "--baseline", tmp_path / "base", "--no-github", "--summary", summary,
        "--allow-protocol-change", "mass", "--tol", "corloc=100",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    md = summary.read_text()
    assert "protocol-mismatch" not in md and "accepted protocol change (`voc07/trainval`) mass: run 0.3, baseline 0.6" in md
    res = invoke("check", tmp_path / "run", "--baseline", tmp_path / "base", "--no-github", "--allow-protocol-change", "maas")
    assert res.exit_code == 2 and "--allow-protocol-change 'maas': not a protocol, transform or provenance parameter" in said(res)


def test_check_tol_takes_every_catalog_metric(tmp_path):
    base = R.write_run(_table({"knn_top1": 70.0, "knn_top5": 90.0}, {"task": "classify"}, None), tmp_path / "base")["csv"]
    run = R.write_run(_table({"knn_top1": 70.0, "knn_top5": 89.6}, {"task": "classify"}, None), tmp_path / "run")["csv"]
    res = invoke("check", run, "--baseline", base, "--no-github")
    assert res.exit_code == 1 and "knn_top5`: 90.00 → 89.60" in said(res)
    res = invoke("check", run, "--baseline", base, "--no-github", "--tol", "knn_top5=0.5")
    assert res.exit_code == 0, res.output
    assert "| ok | cub | test | knn_top5 |  | 90.00 | 89.60 | -0.40 | ±0.5 |" in res.output
    # every metric the tool writes is a tolerance key
    assert R.check(run, base, tolerances={m.name: 1.0 for m in catalog.METRICS}).passed


# ------------------------------------------------------------------------------------ check, in Python
def test_transform_mismatch_names_each_parameter_and_both_values():
    default = transform_record(classification_transform(CFG), CFG["mean"], CFG["std"], CFG["crop_pct"])
    other_cfg = {**CFG, "interpolation": "bilinear", "crop_pct": 224 / 232}
    other = transform_record(classification_transform(other_cfg), CFG["mean"], CFG["std"], other_cfg["crop_pct"])
    proto = {"task": "classify", "knn_k": None}
    rep = R.check(_table({"top1": 80.0}, proto, other), _table({"top1": 80.0}, proto, default))
    bad = {r.metric: (r.value, r.baseline) for r in rep.by_status("protocol-mismatch")}
    assert bad == {
        "transform:resize": ("232", "256"),
        "transform:interpolation": ("bilinear", "bicubic"),
        "transform:crop_pct": (json.dumps(224 / 232), "0.875"),
    }
    assert not rep.passed and R.exit_code(rep) == 1
    assert "- `cub/test` resize: run 232, baseline 256 (transform)" in rep.markdown
    rep = R.check(_table({"top1": 80.0}, proto, other), _table({"top1": 80.0}, proto, default), allow_protocol_change=["resize"])
    assert {r.metric for r in rep.by_status("protocol-mismatch")} == {"transform:interpolation", "transform:crop_pct"}
    assert any("resize: run 232, baseline 256" in n for n in rep.notes)
    # mean/std: a list per value; a missing record (no model) differs from any value
    shifted = {**default, "mean": [0.5, 0.5, 0.5]}
    rep = R.check(_table({"top1": 80.0}, proto, shifted), _table({"top1": 80.0}, proto, default))
    assert [(r.metric, r.value, r.baseline) for r in rep.by_status("protocol-mismatch")] == [
        ("transform:mean", "[0.5, 0.5, 0.5]", "[0.485, 0.456, 0.406]")
    ]
    rep = R.check(_table({"top1": 80.0}, proto, None), _table({"top1": 80.0}, proto, {"resize": 256}))
    assert [(r.metric, r.value, r.baseline) for r in rep.by_status("protocol-mismatch")] == [("transform:resize", "not recorded", "256")]
    # equal records pass; 100 and 100.0 are one value
    assert R.check(_table({"top1": 80.0}, {"k_patches": 100}, default), _table({"top1": 80.0}, {"k_patches": 100.0}, default)).passed


def test_schema_2_baseline_is_read_and_checked_with_a_note(tmp_path):
    table = _table({"top1": 80.0, "top5": 95.0}, {"task": "classify"}, None)
    old = table.drop(columns=["protocol", "transform", "random_init"]).assign(schema_version=2)
    path = tmp_path / "old.csv"
    old.to_csv(path, index=False)
    back = R.read_run(path)
    assert list(back.columns) == list(R.COLUMNS) and back["protocol"].isna().all()
    # the flag of a schema-2 table: its checkpoint_format said 'random-init' or not
    assert back["random_init"].tolist() == [f == "random-init" for f in old["checkpoint_format"]]
    assert (back["schema_version"] == 2).all()
    rep = R.check(_table({"top1": 80.0, "top5": 95.0}, {"task": "classify", "mass": 0.3}, None), path, run_source="ci/run.csv")
    assert rep.passed and not rep.by_status("protocol-mismatch")
    assert any(f"the baseline {path} has no protocol record" in n for n in rep.notes)
    assert "Run `ci/run.csv` against baseline" in rep.markdown
    # a record that is not a JSON object is named
    bad = table.assign(protocol=["{not json", table["protocol"].iloc[1]])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SimpoolBenchError, match=r"bad.csv: column 'protocol' row 0 \(line 2\): '\{not json' is not a JSON object"):
        R.read_run(tmp_path / "bad.csv")
    # and a schema-3 table round-trips its records through every format
    written = R.write_run(table, tmp_path / "new", formats=("json",))
    for f in ("csv", "parquet", "json"):
        pd.testing.assert_frame_equal(R.read_run(written[f]), table)


# ------------------------------------------------------------------------------------ the records
def test_transform_record_of_each_protocol():
    rec = transform_record(classification_transform(CFG), CFG["mean"], CFG["std"], CFG["crop_pct"])
    assert rec == {
        "resize": math.floor(224 / 0.875),  # timm: scale_size = floor(img_size / crop_pct)
        "crop": [224, 224],
        "crop_pct": 0.875,
        "crop_mode": "center",
        "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "normalize": "to-tensor",
    }
    assert transform_record(wsol_transform((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))) == {
        "resize": [224, 224],
        "crop": None,
        "crop_pct": None,
        "crop_mode": None,
        "interpolation": "bilinear",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "normalize": "to-tensor",
    }
    rec = transform_record(discovery_transform(16))
    assert (rec["resize"], rec["crop"], rec["crop_mode"], rec["interpolation"], rec["mean"], rec["normalize"]) == (
        None,
        None,
        None,
        None,
        [0.485, 0.456, 0.406],
        "to-tensor",
    )
    # LOST's and wsolevaluation's default normalisation: ImageNet's mean and std (timm's constants)
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    for default in (rec, transform_record(wsol_transform())):
        assert (default["mean"], default["std"]) == (list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD))


def test_transform_record_tells_each_timm_crop_mode_apart():
    """timm's three eval crop modes, at a square and a non-square size: squash and border resize to
    the same ``[s, s]`` (center and squash to the same ``[h, w]`` off the square), so only
    ``crop_mode`` tells their records apart. Each record names the mode the images went through:
    timm's own ``create_transform`` of that mode, whose pixels differ from the other modes'."""
    import numpy as np
    import timm.data
    import torch
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    resize_of = {}
    for size in ((32, 32), (24, 40)):
        pixels = {}
        for mode in ("center", "squash", "border"):
            cfg = {**CFG, "input_size": (3, *size), "crop_pct": 0.8, "interpolation": "bilinear", "crop_mode": mode}
            tf = classification_transform(cfg)
            rec = transform_record(tf, CFG["mean"], CFG["std"], 0.8)
            assert (rec["crop_mode"], rec["crop"]) == (mode, list(size)), (mode, size)
            resize_of[mode, size] = rec["resize"]
            timm_tf = timm.data.create_transform(**cfg, is_training=False)
            pixels[mode] = tf(image)
            assert torch.equal(pixels[mode], timm_tf(image)), (mode, size)
        for a, b in (("center", "squash"), ("center", "border"), ("squash", "border")):
            assert not torch.equal(pixels[a], pixels[b]), (a, b, size)
    # the collisions crop_mode resolves: timm's floor(size / crop_pct) on both sides, the same resize record
    assert resize_of["squash", (32, 32)] == resize_of["border", (32, 32)] == [40, 40]
    assert resize_of["center", (32, 32)] == 40
    assert resize_of["squash", (24, 40)] == resize_of["center", (24, 40)] == resize_of["border", (24, 40)] == [30, 50]


def test_transform_overrides_are_the_torchvision_steps_they_name():
    """``--resize R --crop C --interpolation I --mean M --std S`` is torchvision's Resize(R, I) (short
    side), CenterCrop(C), ToTensor, Normalize(M, S): R exactly, also where timm's
    ``floor(C / (C / R))`` falls one short of R (354 and 224, 41 and 23), C the new crop (not the
    model's), the given interpolation, mean and std (not the config's)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 73, 3), dtype=np.uint8))
    mean, std = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
    for resize, crop, interpolation in ((41, 23, "bilinear"), (354, 224, "nearest"), (40, 32, "bilinear"), (256, 224, "bicubic")):
        tf = classification_transform(CFG, resize=resize, crop=crop, interpolation=interpolation, mean=mean, std=std)
        want = T.Compose(
            [T.Resize(resize, interpolation=T.InterpolationMode(interpolation)), T.CenterCrop(crop), T.ToTensor(), T.Normalize(mean, std)]
        )
        assert torch.equal(tf(image), want(image)), (resize, crop, interpolation)
        assert transform_record(tf, mean, std)["resize"] == resize
    # a partial config (the API's) is completed as timm's resolve_data_config completes it
    import timm.data

    partial = {"input_size": (3, 32, 32), "mean": mean, "std": std}
    want = timm.data.create_transform(**timm.data.resolve_data_config(args=partial), is_training=False)
    assert torch.equal(classification_transform(partial)(image), want(image))
    for flag in ("resize", "crop"):  # 0 pixels: refused by name, not a ZeroDivisionError or an empty crop
        with pytest.raises(SimpoolBenchError, match=f"--{flag} 0: expected a whole number of pixels >= 1"):
            classification_transform(CFG, **{flag: 0})


def test_discovery_transform_pads_right_and_bottom_to_the_stride():
    """LOST's input: the normalised image at full size, zeros after it on the right and at the
    bottom up to a multiple of the patch size, whichever sides need it (both, width or height only)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    rng = np.random.default_rng(1)
    for h, w in ((50, 73), (48, 73), (50, 64), (32, 48)):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        want = torch.zeros(3, -(-h // 16) * 16, -(-w // 16) * 16)
        want[:, :h, :w] = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(T.ToTensor()(image))
        assert torch.equal(discovery_transform(16)(image), want), (h, w)


def test_protocol_parameters_name_every_recorded_key():
    d = api.DataSpec("voc07")
    specs = [
        api.ClassifySpec(d, knn_train=Path("bank")),
        api.LocalizeSpec(d),
        *(api.DiscoverSpec(d, method=m) for m in ("attn", "lost", "center", "full-image")),
        api.ExtractSpec(d),
    ]
    keys = {k for s in specs for k in protocol_of(s)} | {"maps_for"}
    keys |= set(transform_record(discovery_transform(16)))
    assert keys == set(PROTOCOL_PARAMETERS)
    # a parameter the run does not use is None
    assert protocol_of(api.DiscoverSpec(d, method="lost", mass=0.3))["mass"] is None
    assert protocol_of(api.DiscoverSpec(d, method="center"))["k_patches"] is None
    assert protocol_of(api.ClassifySpec(d, knn_temperature=0.1))["knn_temperature"] is None
    assert protocol_of(api.LocalizeSpec(d, baseline="full-box"))["cam_target"] is None


def test_every_run_kind_fills_protocol_transform_and_random_init(tmp_path, make_image_folder):
    voc = build_voc_dataset(tmp_path / "VOC2007", n=4)
    full = api.run_discover(api.DiscoverSpec(api.DataSpec("voc07", data=voc), method="full-image"), _engine()).table
    assert json.loads(full["protocol"].iloc[0]) == {
        "task": "discover", "method": "full-image", "mass": None, "lost_compat": None, "k_patches": None, "no_hard": False,
    }  # fmt: skip
    assert full["transform"].isna().all() and not full["random_init"].any()
    wsol = build_wsol_dataset(tmp_path / "cub", n=4)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="full-box", interval=0.01)
    loc = api.run_localize(spec, _engine()).table
    assert json.loads(loc["protocol"].iloc[0]) == {"task": "localize", "interval": 0.01, "v1": False, "cam_target": None, "image_size": 224}
    assert loc["transform"].isna().all() and not loc["random_init"].any()
    data = make_image_folder(tmp_path / "img", counts=(2, 2, 2))
    ckpt, model = build_tiny_checkpoint(tmp_path / "m.pth.tar")
    spec = api.ClassifySpec(api.DataSpec("folder", data=data), api.ModelOptions(checkpoint=ckpt), resize=40, default_split="all")
    cls = api.run_classify(spec, _engine()).table
    assert json.loads(cls["protocol"].iloc[0]) == {
        "task": "classify", "knn_train": None, "knn_k": None, "knn_temperature": None, "knn_chunks": None, "knn_subset": None,
    }  # fmt: skip
    cfg = model.data_config
    assert json.loads(cls["transform"].iloc[0]) == {
        "resize": 40,
        "crop": [32, 32],
        "crop_pct": 32 / 40,
        "crop_mode": "center",
        "interpolation": cfg["interpolation"],
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "normalize": "to-tensor",
    }
    assert not cls["random_init"].any()


def test_random_init_flag_of_a_model_without_weights():
    from simpool_bench.models import build_model
    from simpool_bench.run_records import provenance

    from conftest import TINY_VIT_ARCH, TINY_VIT_KWARGS

    net = build_model(TINY_VIT_ARCH, num_classes=3, **TINY_VIT_KWARGS)
    assert provenance(net, None, _engine(), image_size=32, n_images=1).random_init is True
    assert provenance(None, None, _engine(), image_size=None, n_images=1, baseline="center").random_init is False


def test_allow_protocol_change_refuses_unknown_names():
    t = _table({"top1": 80.0}, {"task": "classify"}, None)
    with pytest.raises(SimpoolBenchError, match="--allow-protocol-change 'masss'"):
        R.check(t, t, allow_protocol_change=["masss"])
    assert R.check(t, t, allow_protocol_change=["mass", "mean", "model"]).passed


def test_a_parameter_only_the_run_records_is_a_mismatch():
    # "a parameter one record lacks differs from any value", in either direction: the run records
    # mass, the baseline (an older run) does not
    run = _table({"top1": 80.0}, {"task": "discover", "mass": 0.6}, None)
    base = _table({"top1": 80.0}, {"task": "discover"}, None)
    rep = R.check(run, base)
    assert [(r.metric, r.value, r.baseline) for r in rep.by_status("protocol-mismatch")] == [("protocol:mass", "0.6", "not recorded")]
    assert R.check(run, base, allow_protocol_change=["mass"]).passed


def test_crop_pct_for_gives_timms_resize_exactly():
    """timm's eval transform resizes to ``floor(crop / crop_pct)``: ``crop_pct_for`` gives ``resize``
    there for every pair up to 600 (``crop / resize`` itself falls one short for many), and is the
    plain quotient wherever that already does."""
    from simpool_bench.transforms import crop_pct_for

    short = 0
    for resize in range(1, 601):
        for crop in range(1, resize + 1):
            pct = crop_pct_for(crop, resize)
            assert math.floor(crop / pct) == resize, (crop, resize)
            short += pct != crop / resize
            assert pct == crop / resize or math.floor(crop / (crop / resize)) == resize - 1
    assert short > 0  # the case the function exists for occurs in this range


def test_a_record_from_before_a_parameter_was_recorded_reads_as_the_value_it_ran_with():
    """``normalize`` (transform) was ToTensor's before ``--prefetcher``; ``knn_chunks`` (protocol) was
    DINO's 100 for a run with a k-NN bank and unused (None) without one. Any other missing parameter
    still differs from every value."""
    from simpool_bench.results.protocols import parameter_changes

    def table(protocol: dict, transform: dict) -> pd.DataFrame:
        return pd.DataFrame({"protocol": [json.dumps(protocol)], "transform": [json.dumps(transform)]})

    top1 = {"task": "classify", "knn_train": None}
    knn = {"task": "classify", "knn_train": "/data/train"}
    tf = {"resize": 256}
    assert parameter_changes(table({**top1, "knn_chunks": None}, {**tf, "normalize": "to-tensor"}), table(top1, tf)) == []
    assert parameter_changes(table({**knn, "knn_chunks": 100}, tf), table(knn, tf)) == []
    changed = parameter_changes(table({**knn, "knn_chunks": 500}, {**tf, "normalize": "timm-prefetcher"}), table(knn, tf))
    assert [(c.record, c.name, c.run, c.baseline) for c in changed] == [
        ("protocol", "knn_chunks", "500", "100"),
        ("transform", "normalize", "timm-prefetcher", "to-tensor"),
    ]
    assert [(c.name, c.baseline) for c in parameter_changes(table({**top1, "mass": 0.6}, tf), table(top1, tf))] == [
        ("mass", "not recorded")
    ]


# ---------------------------------------------------------- parameters compared (results.protocols)
def _records(protocols: list, transform: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"protocol": [None if p is None else json.dumps(p) for p in protocols], "transform": [json.dumps(transform or {})] * len(protocols)}
    )


def test_parameter_values_compare_as_json_values():
    from simpool_bench.results.protocols import parameter_changes

    def changes(run: dict, base: dict) -> list[tuple]:
        return [(c.record, c.name, c.run, c.baseline) for c in parameter_changes(_records([run]), _records([base]))]

    # integers equal floats, also inside lists and objects
    assert changes({"mean": [1, 2], "crop": {"h": 224}}, {"mean": [1.0, 2.0], "crop": {"h": 224.0}}) == []
    # true is not 1, nor false 0 and None; strings print bare, the rest as JSON
    assert changes({"no_hard": True, "lost_compat": False, "dtype": "fp16"}, {"no_hard": 1, "lost_compat": None, "dtype": "bf16"}) == [
        ("protocol", "dtype", "fp16", "bf16"),
        ("protocol", "lost_compat", "false", "null"),
        ("protocol", "no_hard", "true", "1"),
    ]


def test_rows_of_several_protocols_differ_from_one():
    """A run whose rows hold two protocols (mass 0.6 and 0.7) against a baseline of one: the values
    are listed, joined by " | ", even where one of them is the baseline's."""
    from simpool_bench.results.protocols import has_record, parameter_changes

    run = _records([{"mass": 0.6}, {"mass": 0.7}])
    (change,) = parameter_changes(run, _records([{"mass": 0.6}]))
    assert (change.name, change.run, change.baseline) == ("mass", "0.6 | 0.7", "0.6")
    (change,) = parameter_changes(_records([{"mass": 0.6}]), run)
    assert (change.run, change.baseline) == ("0.6", "0.6 | 0.7")
    (change,) = parameter_changes(run, run)  # two values on each side: never one protocol
    assert (change.run, change.baseline) == ("0.6 | 0.7", "0.6 | 0.7")
    assert has_record(_records([None, {"mass": 0.6}])) and not has_record(_records([None, None]))


def test_a_record_from_before_crop_mode_reads_as_the_mode_it_ran_with():
    """A transform record without ``crop_mode`` (before it was recorded) gates as the mode its
    resize implies: none for wsolevaluation's and LOST's (no crop), ``center`` for timm's
    short-side resize, ``squash`` for a resize of both sides (the mode timm tags use; ``border``,
    which no tag uses, recorded the same resize and now shows as a change)."""
    from simpool_bench.results.protocols import parameter_changes

    def record(tf, crop_pct=None) -> dict:
        return transform_record(tf, CFG["mean"], CFG["std"], crop_pct)

    def changes(run: dict, base: dict) -> list[tuple]:
        return [(c.name, c.run, c.baseline) for c in parameter_changes(_records([{}], run), _records([{}], base))]

    new = {mode: record(classification_transform({**CFG, "crop_mode": mode}), 0.875) for mode in ("center", "squash", "border")}
    new["wsol"], new["lost"] = record(wsol_transform()), record(discovery_transform(16))
    old = {name: {k: v for k, v in rec.items() if k != "crop_mode"} for name, rec in new.items()}
    assert [new[n]["crop_mode"] for n in new] == ["center", "squash", "border", None, None]
    for name in ("center", "squash", "wsol", "lost"):
        assert changes(new[name], old[name]) == [] and changes(old[name], new[name]) == [], name
    assert changes(new["border"], old["border"]) == [("crop_mode", "border", "squash")]
    assert changes(new["center"], old["squash"]) == [("crop_mode", "center", "squash"), ("resize", "256", "[256, 256]")]


def test_a_table_without_a_record_lacks_even_the_parameters_recorded_later():
    """RECORDED_SINCE fills a parameter into an older record, never into no record at all (a
    hand-made baseline): that one still differs, as "not recorded"."""
    from simpool_bench.results.protocols import parameter_changes

    run = _records([{"task": "classify"}], {"normalize": "to-tensor"})
    changes = parameter_changes(run, _records([{"task": "classify"}], {}))
    assert [(c.record, c.name, c.run, c.baseline) for c in changes] == [("transform", "normalize", "to-tensor", "not recorded")]


def test_protocol_records_of_each_spec_written_out():
    """``protocol_of`` by hand: the published defaults (DINO k-NN 10/20/100/200 at T 0.07 in 100
    chunks; wsolevaluation's 0.001 step at 224 with gt CAMs; LOST's mass 0.6 and 100 patches), each
    parameter the run uses, and None for what it does not (k-NN without a bank, the knn_subset too)."""
    d, v = api.DataSpec("imagenet"), api.DataSpec("voc07")
    no_knn = {"task": "classify", "knn_train": None, "knn_k": None, "knn_temperature": None, "knn_chunks": None, "knn_subset": None}
    cases = [
        (api.ClassifySpec(d), no_knn),
        (api.ClassifySpec(d, knn_subset=3, knn_k=20, knn_chunks=7), no_knn),
        (
            api.ClassifySpec(d, knn_train=Path("bank")),
            {"task": "classify", "knn_train": "bank", "knn_k": [10, 20, 100, 200], "knn_temperature": 0.07, "knn_chunks": 100, "knn_subset": None},
        ),
        (
            api.ClassifySpec(d, knn_train="bank", knn_k=20, knn_temperature=0.1, knn_chunks=500, knn_subset=2),
            {"task": "classify", "knn_train": "bank", "knn_k": [20], "knn_temperature": 0.1, "knn_chunks": 500, "knn_subset": 2},
        ),
        (api.LocalizeSpec(d), {"task": "localize", "interval": 0.001, "v1": False, "cam_target": "gt", "image_size": 224}),
        (
            api.LocalizeSpec(d, interval=0.01, v1=True, cam_target="pred"),
            {"task": "localize", "interval": 0.01, "v1": True, "cam_target": "pred", "image_size": 224},
        ),
        (
            api.LocalizeSpec(d, maps=Path("m"), cam_target="pred"),
            {"task": "localize", "interval": 0.001, "v1": False, "cam_target": "pred", "image_size": 224},
        ),
        (
            api.LocalizeSpec(d, baseline="full-box", v1=True),
            {"task": "localize", "interval": 0.001, "v1": True, "cam_target": None, "image_size": 224},
        ),
        (
            api.DiscoverSpec(v),
            {"task": "discover", "method": "attn", "mass": 0.6, "lost_compat": False, "k_patches": None, "no_hard": False},
        ),
        (
            api.DiscoverSpec(v, mass=0.3, lost_compat=True, k_patches=5),
            {"task": "discover", "method": "attn", "mass": 0.3, "lost_compat": True, "k_patches": None, "no_hard": False},
        ),
        (
            api.DiscoverSpec(v, method="lost", mass=0.3, lost_compat=True),
            {"task": "discover", "method": "lost", "mass": None, "lost_compat": None, "k_patches": 100, "no_hard": False},
        ),
        (
            api.DiscoverSpec(api.DataSpec("voc07", no_hard=True), method="center", k_patches=5),
            {"task": "discover", "method": "center", "mass": None, "lost_compat": None, "k_patches": None, "no_hard": True},
        ),
        (api.ExtractSpec(d), {"task": "extract", "cam_target": "gt", "dtype": "float16", "features": False}),
        (
            api.ExtractSpec(d, cam_target="pred", dtype="float32", features=True),
            {"task": "extract", "cam_target": "pred", "dtype": "float32", "features": True},
        ),
    ]  # fmt: skip
    for spec, expected in cases:
        assert protocol_of(spec) == expected, spec
    assert api.ExtractSpec(d).resume is True  # extract resumes unless told not to
