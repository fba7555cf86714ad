"""Each command-line flag reaches its own field of the spec and ``EngineConfig`` the run layer gets,
and a flag left out reaches it as its documented default; no model is built and nothing is read
(``runs.run_*`` replaced by a catcher that stops the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simpool_bench import runs
from simpool_bench.data.inputs import DEFAULT_MAX_PIXELS
from simpool_bench.specs import ClassifySpec, DataSpec, ExtractSpec, ModelOptions
from simpool_bench.unset import UNSET
from simpool_bench.workers import default_workers

from conftest import invoke_cli


class _Caught(Exception):
    """Raised by the stand-in run function once it has the arguments."""


@pytest.fixture()
def caught(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments the command passed to ``runs.run_<task>`` (spec, engine, out, formats)."""
    seen: dict[str, Any] = {}

    def catcher(task: str):
        def run(spec: Any, engine: Any, out: Any = None, formats: Any = None) -> Any:
            seen.update(task=task, spec=spec, engine=engine, out=out, formats=formats)
            raise _Caught

        return run

    for task in ("classify", "localize", "discover", "extract"):
        monkeypatch.setattr(runs, f"run_{task}", catcher(task))
    return seen


def _call(*args: Any) -> None:
    with pytest.raises(_Caught):
        invoke_cli(*args)


#: Every model flag at a value other than its default, and the ``ModelOptions`` it must make.
MODEL_FLAGS = (
    *("--model", "vit_tiny_patch16_224", "--pool", "gap", "--gamma", "3.5", "--checkpoint", "w.pth", "--format", "state-dict"),
    *("--trust-checkpoint", "--variant", "dino", "--min-scope", "channel", "--attn-source", "cls", "--cls-head", "1"),
    *("--num-classes", "7", "--no-dino-pos-quirk", "--prefer", "raw", "--pretrained-file", "p.safetensors"),
    *("--mean", "0.1,0.2,0.3", "--std", "0.4, 0.5, 0.6", "--rollout-fusion", "min", "--rollout-discard", "0.25"),
)
MODEL = ModelOptions(
    arch="vit_tiny_patch16_224",
    pool="gap",
    gamma=3.5,
    checkpoint=Path("w.pth"),
    format="state-dict",
    trust=True,
    variant="dino",
    min_scope="channel",
    attn_source="cls",
    cls_head=1,
    num_classes=7,
    dino_pos_quirk=False,
    prefer="raw",
    pretrained_file=Path("p.safetensors"),
    mean=(0.1, 0.2, 0.3),
    std=(0.4, 0.5, 0.6),
    rollout_fusion="min",
    rollout_discard=0.25,
)
#: Every run flag at a value other than its default.
ENGINE_FLAGS = (
    *("--device", "cpu", "--batch-size", "3", "-j", "0", "--amp", "bf16", "--channels-last", "--compile"),
    *("--shard-size", "5", "--strict", "--max-pixels", "1000", "--allow-nonfinite"),
)
ENGINE = dict(
    device="cpu",
    batch_size=3,
    workers=0,
    amp="bf16",
    channels_last=True,
    compile=True,
    shard_size=5,
    strict=True,
    max_pixels=1000,
    allow_nonfinite=True,
)


def _engine_fields(engine: Any) -> dict[str, Any]:
    return {name: getattr(engine, name) for name in ENGINE}


def test_classify_passes_every_flag_to_its_own_field(caught, tmp_path):
    out = tmp_path / "out"
    flags = (
        *("--data", "d", "--split", "s", "--dataset", "mine", "--labels", "l.txt", "--metadata", "m", "--subset", "3"),
        *("--knn-train", "k", "--knn-k", "5,7", "--knn-temperature", "0.2", "--knn-chunks", "3", "--knn-subset", "4"),
        *("--per-class", "--resize", "40", "--crop", "32", "--interpolation", "bicubic", "--prefetcher", "--crop-pct", "0.8"),
    )
    _call("classify", *flags, *MODEL_FLAGS, *ENGINE_FLAGS, "--out", out, "--formats", "MD, latex")
    spec = caught["spec"]
    assert spec.data == DataSpec("mine", data=Path("d"), split="s", metadata=Path("m"), labels=Path("l.txt"), subset=3)
    assert spec.model == ModelOptions(**{**MODEL.__dict__, "crop_pct": 0.8, "interpolation": "bicubic"})
    assert (spec.knn_train, spec.knn_k, spec.knn_temperature, spec.knn_chunks, spec.knn_subset) == (Path("k"), (5, 7), 0.2, 3, 4)
    assert (spec.per_class, spec.resize, spec.crop, spec.interpolation, spec.prefetcher) == (True, 40, 32, "bicubic", True)
    assert _engine_fields(caught["engine"]) == ENGINE
    assert caught["engine"].resume_dir == out / ".shards"  # --resume is the default
    assert (caught["out"], caught["formats"]) == (out, ("md", "latex"))


def test_classify_defaults_are_the_documented_ones(caught):
    _call("classify", "--data", "d")
    spec, engine = caught["spec"], caught["engine"]
    assert spec == ClassifySpec(DataSpec("imagenet", data=Path("d")), ModelOptions())
    assert spec.model.gamma is UNSET and spec.knn_k == (10, 20, 100, 200)
    # plain values, not the CLI's enums (they are recorded in the tables' provenance)
    assert type(spec.model.min_scope) is str and type(engine.amp) is str
    expected = dict(device="auto", batch_size=64, workers=default_workers(), amp="off", channels_last=False, compile=False)
    expected.update(shard_size=1024, strict=False, max_pixels=DEFAULT_MAX_PIXELS, allow_nonfinite=False)
    assert _engine_fields(engine) == expected
    assert engine.resume_dir is None and caught["out"] is None and caught["formats"] == ("json",)


@pytest.mark.parametrize("value, gamma", [("none", None), ("None", None), ("2", 2.0)])
def test_gamma_none_is_the_plain_weighted_mean(caught, value, gamma):
    _call("classify", "--data", "d", "--gamma", value)
    assert caught["spec"].model.gamma == gamma and type(caught["spec"].model.gamma) is type(gamma)


def test_no_resume_keeps_no_shards(caught, tmp_path):
    _call("classify", "--data", "d", "--out", tmp_path / "out", "--no-resume")
    assert caught["engine"].resume_dir is None


def test_localize_passes_its_flags(caught):
    flags = ("--dataset", "imagenet", "--metadata", "m", "--split", "val", "--data-label", "mine", "--interval", "0.01", "--v1")
    _call("localize", "--data", "d", *flags, "--cam-target", "pred", *MODEL_FLAGS)
    spec = caught["spec"]
    assert spec.data == DataSpec("imagenet", data=Path("d"), split="val", metadata=Path("m"), label="mine")
    assert spec.model == MODEL
    assert (spec.interval, spec.v1, spec.cam_target, spec.maps, spec.baseline) == (0.01, True, "pred", None, None)


def test_localize_defaults(caught):
    _call("localize", "--data", "d")
    spec = caught["spec"]
    assert spec.data == DataSpec("cub", data=Path("d"), split="test")
    assert (spec.interval, spec.v1, spec.cam_target) == (0.001, False, "gt")


@pytest.mark.parametrize(
    "flags, fields",
    [
        (["--mass", "0.4", "--lost-compat"], dict(method="attn", mass=0.4, lost_compat=True, k_patches=100)),
        (["--method", "lost", "--k-patches", "50"], dict(method="lost", mass=0.6, lost_compat=False, k_patches=50)),
        ([], dict(method="attn", mass=0.6, lost_compat=False, k_patches=100)),
    ],
)
def test_discover_passes_its_flags(caught, flags, fields):
    _call("discover", "--data", "d", *flags)
    spec = caught["spec"]
    assert {name: getattr(spec, name) for name in fields} == fields
    assert spec.data == DataSpec("voc07", data=Path("d")) and caught["engine"].batch_size == 16


def test_discover_passes_its_data_flags(caught):
    data = ("--dataset", "coco20k", "--split", "train", "--data-label", "mine", "--annotations", "a.json", "--list", "l.txt")
    _call("discover", "--data", "d", *data, "--no-hard")
    assert caught["spec"].data == DataSpec(
        "coco20k", data=Path("d"), split="train", annotations=Path("a.json"), list_file=Path("l.txt"), no_hard=True, label="mine"
    )


def test_extract_passes_its_flags_and_keeps_no_engine_shards(caught, tmp_path):
    out = tmp_path / "maps"
    _call("extract", "--data", "d", "--out", out, "--dtype", "float32", "--features", "--cam-target", "pred", "--no-resume")
    spec = caught["spec"]
    assert (spec.dtype, spec.features, spec.cam_target, spec.resume) == ("float32", True, "pred", False)
    assert caught["engine"].resume_dir is None and caught["out"] == out  # the map store resumes itself
    _call("extract", "--data", "d", "--out", out, *MODEL_FLAGS)
    assert caught["spec"] == ExtractSpec(DataSpec("cub", data=Path("d")), MODEL)


@pytest.mark.parametrize("value", ["0,5", "-3", "10,10", "x"])
def test_knn_k_not_distinct_positive_integers_is_one_line(caught, value):
    res = invoke_cli("classify", "--data", "d", "--knn-train", "k", "--knn-k", value)
    assert res.exit_code == 2 and "task" not in caught
    assert res.output == f"error: --knn-k {value!r}: expected distinct positive integers separated by commas, e.g. 10,20,100,200\n"


# ---------------------------------------------------------------------------------------- visualize
@pytest.fixture()
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """visualize up to its figure, with two model columns labelled 'a' and 'b' and no data read:
    the arguments of ``overlays.render_overlays`` (sources, then keywords)."""
    from simpool_bench import overlays, readers
    from simpool_bench.cli import map_commands

    seen: dict[str, Any] = {}

    def render(sources: Any, records: Any, out: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, labels=[s.label for s in sources], out=out)
        raise _Caught

    monkeypatch.setattr(readers, "read_data", lambda spec: [])
    monkeypatch.setattr(runs, "check_before_data", lambda engine, model: None)
    monkeypatch.setattr(map_commands, "_model_sources", lambda p, *a: [overlays.MapSource(x, dict, 16) for x in "ab"])
    monkeypatch.setattr(overlays, "render_overlays", render)
    return seen


VISUALIZE = ("visualize", "--data", "d", "--model", "vit_tiny_patch16_224", "--random-init")


def test_visualize_passes_its_flags_to_the_figure(drawn, tmp_path):
    flags = ("--ids", " x.jpg, y.jpg ,,", "--select", "worst", "--n", "3", "--threshold", "0.3", "--alpha", "0.2")
    _call(*VISUALIZE, "--out", tmp_path, *flags, "--format", "svg", "--dpi", "100", "--cmap", "viridis", "--label", "A", "--label", "B")
    got = {k: drawn[k] for k in ("protocol", "ids", "select", "n", "thresholds", "alpha", "figure_format", "dpi", "cmap", "labels", "out")}
    expected = dict(protocol="localize", ids=["x.jpg", "y.jpg"], select="worst", n=3, thresholds=[0.3, 0.3], alpha=0.2)
    expected.update(figure_format="svg", dpi=100, cmap="viridis", labels=["A", "B"], out=tmp_path)
    assert got == expected


def test_visualize_defaults_and_discovery_values(drawn, tmp_path):
    _call(*VISUALIZE, "--out", tmp_path)
    assert {k: drawn[k] for k in ("ids", "select", "n", "thresholds", "alpha", "figure_format", "dpi", "cmap", "labels")} == dict(
        ids=None, select="first", n=8, thresholds=[0.5, 0.5], alpha=0.5, figure_format="png", dpi=200, cmap="inferno", labels=["a", "b"]
    )
    _call(*VISUALIZE, "--out", tmp_path, "--dataset", "voc07", "--mass", "0.4", "--lost-compat")
    assert (drawn["protocol"], drawn["mass"], drawn["lost_compat"]) == ("discover", 0.4, True)


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--label", "A"], "--label given 1 times for 2 columns (checkpoints, then map stores)"),
        (["--threshold-from", "run"], "--threshold-from given 1 times for 2 columns"),
        (["--per-image", "run"], "--per-image ranks images: use it with --select best or --select worst"),
        (["--method", "box"], "--method 'box': expected attn or lost"),
        (["--ids", " ,, "], "--ids ' ,, ': expected comma-separated image ids"),  # it drew the first --n images
        (
            ["--ids", "b.png, a.png,b.png,a.png"],
            "--ids 'b.png, a.png,b.png,a.png': a.png, b.png named twice; expected distinct",
        ),  # drawn twice
        (["--dataset", "voc07", "--k-patches", "5"], "--k-patches is not used by this run: only --method lost expands a seed"),
        (["--k-patches", "5"], "--k-patches is not used by this run: LOST's seed expansion applies to VOC/COCO discovery"),
        (["--dataset", "voc07", "--threshold", "0.3"], "--threshold is not used by this run: VOC/COCO boxes keep a fraction of"),
        (["--dataset", "voc07", "--threshold-from", "run"], "--threshold-from is not used by this run: VOC/COCO boxes keep a"),
        (["--mass", "0.4"], "--mass is not used by this run: cub/imagenet boxes come from a score-map threshold"),
    ],
)
def test_visualize_flags_that_do_not_fit_are_one_line(drawn, tmp_path, flags, said):
    res = invoke_cli(*VISUALIZE, "--out", tmp_path, *flags)
    assert res.exit_code == 2 and res.output.startswith(f"error: {said}") and res.output.count("\n") == 1, res.output
    assert not drawn


@pytest.mark.parametrize("flags", [["--method", "box"], ["--ids", ","], ["--ids", "a,a"]])
def test_visualize_checks_its_flags_before_it_writes_the_curves(drawn, tmp_path, flags):
    """A typo in an overlay flag fails before ``--curves`` writes its figure (it wrote it, then failed)."""
    curve = tmp_path / "run"
    curve.mkdir()
    (curve / "boxacc_curve.csv").write_text("threshold,boxacc_50\n0.0,10.0\n0.5,40.0\n")
    res = invoke_cli(*VISUALIZE, "--out", tmp_path / "out", "--curves", curve, *flags)
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "out").exists() and not drawn


def test_visualize_column_names_name_the_map_source_only_when_there_are_several(monkeypatch, tmp_path):
    """One column per --checkpoint x --attn-source, named by the file (and the source when several)."""
    from types import SimpleNamespace

    from simpool_bench import loading, overlays
    from simpool_bench.cli.map_commands import _model_sources
    from simpool_bench.cli.options import Parsed

    monkeypatch.setattr(loading, "load_model", lambda o: (SimpleNamespace(arch=o.arch, attn_source=o.attn_source), None))
    monkeypatch.setattr(overlays, "model_source", lambda net, records, config, **kw: kw["label"])
    params = dict(checkpoint=[Path("x/a.pth.tar"), Path("b.pth")], maps=None, method="attn", lost_compat=False, cam_target="gt")
    one = _model_sources(Parsed({**params, "attn_source": "cls"}), [], "localize", None)
    two = _model_sources(Parsed({**params, "attn_source": "cls, simpool"}), [], "localize", None)
    assert (one, two) == (["a", "b"], ["a: cls", "a: simpool", "b: cls", "b: simpool"])


@pytest.mark.parametrize(
    "command, flags, said",
    [
        ("discover", ["--k-patches", "5"], "--k-patches is not used by this run: only --method lost expands a seed"),
        ("discover", ["--method", "lost", "--mass", "0.4"], "--mass is not used by this run: only --method attn keeps a fraction"),
        ("localize", ["--baseline", "full-box", "--cam-target", "pred"], "--cam-target is not used by this run: a no-model --baseline"),
        ("classify", ["--knn-k", "5"], "--knn-k is not used by this run: only the k-NN classifier uses it (give --knn-train DIR)"),
    ],
)
def test_a_protocol_flag_the_run_does_not_use_is_refused_before_it_runs(caught, command, flags, said):
    res = invoke_cli(command, "--data", "d", *flags)
    assert res.exit_code == 2 and res.output.startswith(f"error: {said}") and "task" not in caught, res.output
