"""The api module's docstring example runs as written, on a tiny dataset made here."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np

from simpool_bench import api


def test_api_docstring_example_runs(tmp_path, make_wsol_dataset, one_thread):
    wsol = make_wsol_dataset(tmp_path / "wsol", n=5)
    globs = {"images": wsol.image_root, "metadata": wsol.metadata, "out": tmp_path / "run"}
    finder = doctest.DocTestFinder()
    [test] = [t for t in finder.find(api, globs=globs) if t.name == "simpool_bench.api"]
    assert len(test.examples) >= 6
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries == len(test.examples)


def test_load_model_gives_an_eval_model_and_the_package_names_api(tmp_path):
    """load_model returned a model in training mode (BatchNorm on batch statistics: a batch of one
    image gave another output than the same image in a batch); ``simpool_bench.api`` needed its own
    import; a run's ``formats`` took only a sequence ('md' was read as 'm', 'd')."""
    import subprocess
    import sys

    import torch

    net, ckpt = api.load_model(api.ModelOptions(arch="resnet18", pool="gap", random_init=True, num_classes=3))
    assert ckpt is None and not net.training
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x).logits[:1], net(x[:1]).logits, atol=1e-5)  # in training mode: far apart
    code = "import sys, simpool_bench; print('torch' in sys.modules, simpool_bench.api.read_run.__module__)"
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert said == ["False", "simpool_bench.results.store"]  # the package stays light until api is used


def test_formats_take_a_comma_list(tmp_path, make_wsol_dataset, one_thread):
    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)
    result = api.run_localize(spec, engine, out=tmp_path / "run", formats="json, md")
    assert {"results.json", "results.md"} <= {p.name for p in result.files}


def test_the_readme_python_lines_are_the_docstring_examples_run_above():
    """README's 'From Python' block is made of lines of the api docstring example, which
    test_api_docstring_example_runs runs: so the README's code runs too."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### From Python") :]
    block = section[section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python\n") + 10)]
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert len(lines) >= 6
    examples = {" ".join(e.source.split()) for e in doctest.DocTestParser().get_examples(api.__doc__)}
    assert all(" ".join(ln.split()) in examples for ln in lines), [ln for ln in lines if " ".join(ln.split()) not in examples]


def test_classify_spec_interpolation_reaches_the_data_config_record(tmp_path):
    """ClassifySpec(interpolation=...) changed the transform but the table's data_config still said
    the model's (the CLI's --interpolation sets both); they agree now, and two different values are refused."""
    import pytest

    from simpool_bench.errors import SimpoolBenchError

    from conftest import build_image_folder, build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")[0]
    data = api.DataSpec("imagenet", data=build_image_folder(tmp_path / "imgs" / "val", counts=(1, 1, 1)).parent)
    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)
    spec = api.ClassifySpec(data, model=api.ModelOptions(checkpoint=ckpt), interpolation="bilinear")
    row = api.run_classify(spec, engine).table.iloc[0]
    assert "interpolation=bilinear" in row["data_config"] and '"interpolation": "bilinear"' in row["transform"]
    clash = api.ClassifySpec(data, model=api.ModelOptions(checkpoint=ckpt, interpolation="nearest"), interpolation="bilinear")
    with pytest.raises(SimpoolBenchError, match="interpolation 'bilinear' \\(ClassifySpec\\) and 'nearest' \\(ModelOptions\\) differ"):
        api.run_classify(clash, engine)


#: What a user runs and reads runs with: the specs, the run functions, the readers, the table
#: functions and the two metric accumulators.
API_NAMES = {
    *("ClassifySpec", "DataSpec", "DiscoverSpec", "ExtractSpec", "LocalizeSpec", "ModelOptions", "RunResult", "EngineConfig"),
    *("run_classify", "run_localize", "run_discover", "run_extract", "from_maps", "load_model", "UNSET", "DEFAULT_SPLITS"),
    *("read_classification_data", "read_localization_data", "read_discovery_data", "read_map_data", "read_data", "read_image_files"),
    *("read_run", "read_baseline", "compare", "check", "load_tolerances"),
    *("BoxAccumulator", "CorLocAccumulator", "resize_boxes_wsol", "wsol_transform", "SimpoolBenchError"),
}


def test_api_exports_the_user_api_and_no_plumbing():
    """api's ``__all__`` (and namespace) also held the run layer's plumbing (``finish_run``,
    ``provenance``, ``stored_provenance``, ``curve_csv``, ``data_overrides``, ...); it is the user API only."""
    import inspect

    from simpool_bench import readers, results, runs, specs
    from simpool_bench.metrics import boxacc, boxes, corloc

    assert set(api.__all__) == API_NAMES and len(api.__all__) == len(API_NAMES)
    public = {n for n, v in vars(api).items() if not n.startswith("_") and not inspect.ismodule(v)} - {"annotations"}
    assert public == API_NAMES
    # each name is the object of its home module, not a stand-in
    homes = {"run_localize": runs, "from_maps": runs, "RunResult": specs, "read_run": results, "check": results}
    homes |= {"read_map_data": readers, "BoxAccumulator": boxacc, "CorLocAccumulator": corloc, "resize_boxes_wsol": boxes}
    assert all(getattr(api, n) is getattr(m, n) for n, m in homes.items())
    for gone in ("finish", "finish_run", "provenance", "stored_provenance", "pos_interp_of", "curve_csv", "write_curve"):
        assert not hasattr(api, gone), gone


def test_a_run_records_the_api_function_or_the_cli_command_line_as_its_command(tmp_path, make_wsol_dataset, monkeypatch, one_thread):
    """A run from Python recorded the host process's argv as its command (pytest's here, a Jupyter
    kernel's in a notebook); it records the API function now, and the CLI its own command line
    (in process: the args given; from the shell: ``sys.argv``)."""
    import shlex
    import sys
    from pathlib import Path

    from simpool_bench.cli import main

    from conftest import invoke_cli

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    result = api.run_localize(spec, api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False), out=tmp_path / "py")
    host = Path(sys.argv[0]).name
    assert set(result.table["command"]) == set(api.read_run(tmp_path / "py")["command"]) == {"simpool_bench.api.run_localize"}
    assert host not in result.table["command"].iloc[0]  # it was shlex.join([host, *sys.argv[1:]])

    args = ["localize", "--data", str(wsol.image_root), "--metadata", str(wsol.metadata), "--baseline", "center-gaussian"]
    args += ["--device", "cpu", "--workers", "0", "--out", str(tmp_path / "cli dir")]
    assert invoke_cli(*args).exit_code == 0
    assert set(api.read_run(tmp_path / "cli dir")["command"]) == {shlex.join(["simpool-bench", *args])}

    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/simpool-bench", *args[:-1], str(tmp_path / "shell")])
    try:
        main()
    except SystemExit as done:
        assert not done.code
    assert set(api.read_run(tmp_path / "shell")["command"]) == {shlex.join(["simpool-bench", *args[:-1], str(tmp_path / "shell")])}

    monkeypatch.setattr(sys, "argv", ["/src/simpool_bench/cli/__main__.py", *args[:-1], str(tmp_path / "module")])  # python -m
    try:
        main()
    except SystemExit as done:
        assert not done.code
    assert set(api.read_run(tmp_path / "module")["command"]) == {shlex.join(["simpool-bench", *args[:-1], str(tmp_path / "module")])}


def test_result_files_are_every_file_the_run_wrote(tmp_path):
    """``RunResult.files`` left out results.manifest.json; it lists every file of the run now. The
    caches a run keeps in its folder (resume shards in .shards/, the k-NN bank's features in
    knn_bank/) are not the run's files and are not listed."""
    import json

    from conftest import build_image_folder, build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "tiny.pth.tar")[0]
    data = api.DataSpec("imagenet", data=build_image_folder(tmp_path / "imgs" / "val", counts=(2, 1, 1)).parent)
    bank = build_image_folder(tmp_path / "bank", counts=(2, 2, 2), seed=1)
    out = tmp_path / "run"
    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False, resume_dir=out / ".shards")
    spec = api.ClassifySpec(data, model=api.ModelOptions(checkpoint=ckpt), per_class=True, knn_train=bank, knn_k=(3,))
    result = api.run_classify(spec, engine, out=out, formats="json,md,latex,csv")

    on_disk = {p for p in out.rglob("*") if p.is_file()}
    caches = {p for p in on_disk if p.relative_to(out).parts[0] in (".shards", "knn_bank")}
    assert caches and {p.relative_to(out).parts[0] for p in caches} == {".shards", "knn_bank"}  # both caches are there
    assert len(result.files) == len(set(result.files)) and set(result.files) == on_disk - caches
    tables = {"results.csv", "results.parquet", "results.json", "results.md", "results.tex"}
    extras = {"per_class.csv", "per_image.parquet", "per_image.csv"}
    assert {p.name for p in result.files} == tables | extras | {"results.manifest.json"}
    manifest = json.loads((out / "results.manifest.json").read_text())
    assert set(manifest["files"]) == tables | extras  # the manifest lists every other file


def test_arguments_of_the_wrong_kind_are_one_error(tmp_path, make_wsol_dataset):
    """Found by a walkthrough of the API: swapped arguments, a path or a spec of another task, a
    str for ModelOptions each gave an AttributeError from inside the run; compare('run') read the
    characters of the path as runs."""
    import pytest

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    engine = api.EngineConfig(device="cpu", progress=False)
    with pytest.raises(
        api.SimpoolBenchError, match=r"run_localize: spec: expected LocalizeSpec, got simpool_bench.engine.config.EngineConfig"
    ):
        api.run_localize(engine, spec)  # type: ignore[arg-type]
    with pytest.raises(api.SimpoolBenchError, match=r"run_discover: spec: expected DiscoverSpec, got simpool_bench.specs.LocalizeSpec"):
        api.run_discover(spec, engine)  # type: ignore[arg-type]
    with pytest.raises(api.SimpoolBenchError, match=r"run_localize: engine: expected EngineConfig, got builtins.dict"):
        api.run_localize(spec, {"device": "cpu"})  # type: ignore[arg-type]
    with pytest.raises(
        api.SimpoolBenchError, match=r"load_model takes ModelOptions, e.g. ModelOptions\(checkpoint='model.pth'\), not a builtins.str"
    ):
        api.load_model("model.pth")  # type: ignore[arg-type]
    run = api.run_localize(spec, engine, out=tmp_path / "run")
    one = api.compare(str(tmp_path / "run"))  # one path: one run
    assert len(one) == 1 and one.equals(api.compare([tmp_path / "run"]))
    assert run.table is not None


def test_the_unpublished_data_warning_names_the_callers_line(tmp_path, make_wsol_dataset):
    """It named simpool_bench/caller.py (the run functions' wrapper), not the script that ran them."""
    import warnings

    from simpool_bench.data.inputs import UnpublishedDataWarning

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.run_localize(spec, api.EngineConfig(device="cpu", progress=False))
    [w] = [w for w in caught if issubclass(w.category, UnpublishedDataWarning)]
    assert w.filename == __file__, w.filename


def test_spec_and_engine_values_a_run_would_misread_are_one_error(tmp_path, make_wsol_dataset, monkeypatch):
    """Found by an audit of the API: ``subset=0`` (and ``knn_subset=0``) read every image, ``knn_k=[1.5]``
    ran k=1, ``max_pixels=0`` skipped every image and the run failed on 'no image was accumulated',
    ``amp='fp32'`` was refused only once the data was read; an EngineConfig field set after it was
    made (it is not frozen) was not checked at all (``batch_size = 0`` ran); ``mean=('a', 'b', 'c')``
    was a ValueError from float(); ``out=123``, ``formats=None``, ``formats=['json', 3]`` were a
    TypeError/AttributeError, and ``formats='xlsx'`` was refused after the run had computed everything."""
    import pytest

    from simpool_bench import tasks

    data = api.DataSpec("imagenet", data=tmp_path)
    for spec, match in (
        (lambda: api.DataSpec("imagenet", data=tmp_path, subset=0), r"DataSpec.subset = 0: expected an integer >= 1"),
        (lambda: api.ClassifySpec(data, knn_subset=0), r"ClassifySpec.knn_subset = 0: expected an integer >= 1"),
        (lambda: api.ClassifySpec(data, knn_k=[1.5]), r"ClassifySpec.knn_k = \[1.5\]: expected distinct whole numbers >= 1"),
        (lambda: api.ClassifySpec(data, knn_k=(20, "x")), r"ClassifySpec.knn_k = \(20, 'x'\): expected distinct whole numbers"),
        (lambda: api.ClassifySpec(data, knn_k=()), r"ClassifySpec.knn_k = \(\): expected distinct whole numbers >= 1"),  # no k-NN row
        (lambda: api.ClassifySpec(data, knn_k=(10, 10)), r"ClassifySpec.knn_k = \(10, 10\): expected distinct"),  # two equal rows
        (lambda: api.ClassifySpec(data, knn_k=0), r"ClassifySpec.knn_k = 0: expected distinct whole numbers >= 1"),
        (lambda: api.EngineConfig(max_pixels=0), r"EngineConfig.max_pixels = 0: expected an integer >= 1 or None"),
        (lambda: api.EngineConfig(amp="fp32"), r"EngineConfig.amp = 'fp32': expected one of off, bf16, fp16"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            spec()
    assert api.ClassifySpec(data, knn_k=np.int64(20)).knn_k == 20 and api.EngineConfig(max_pixels=None).max_pixels is None
    options = api.ModelOptions(arch="resnet18", pool="gap", random_init=True, num_classes=3, mean=("a", "b", "c"))
    with pytest.raises(api.SimpoolBenchError, match=r"--mean \('a', 'b', 'c'\): expected 3 numbers"):
        api.load_model(options)

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    engine = api.EngineConfig(device="cpu", progress=False)
    engine.batch_size = 0
    with pytest.raises(api.SimpoolBenchError, match=r"EngineConfig.batch_size = 0: expected an integer >= 1"):
        api.run_localize(spec, engine)
    engine.batch_size = 4

    def no_run(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(tasks, "localize", no_run)  # each mistake is refused before the run
    for kwargs, match in (
        ({"out": 123}, r"run_localize: out: expected a folder \(str or Path\) or None, got builtins.int"),
        ({"out": tmp_path / "o", "formats": None}, r"run_localize: formats None: expected a sequence or a comma list"),
        ({"out": tmp_path / "o", "formats": ["json", 3]}, r"unknown export format 3; expected one of csv"),
        ({"out": tmp_path / "o", "formats": "xlsx"}, r"unknown export format 'xlsx'"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            api.run_localize(spec, engine, **kwargs)
    with pytest.raises(
        api.SimpoolBenchError, match=r"run_extract: out: expected the map store's folder \(str or Path\), got builtins.NoneType"
    ):
        api.run_extract(api.ExtractSpec(spec.data, model=api.ModelOptions(arch="resnet18", random_init=True)), engine, None)  # type: ignore[arg-type]


def test_box_resizing_and_the_wsol_transform_refuse_what_they_cannot_mean():
    """Found by an audit of the API: ``resize_boxes_wsol`` with width 0 gave boxes of
    -9223372036854775808, a negative height negative boxes, a NaN box the same garbage, a (K, 5)
    array or width '500' a ValueError/TypeError from numpy; ``wsol_transform`` took the model's
    whole ``data_config`` dict (or 'imagenet') as the mean, and std (0, 0, 0), and failed (or
    divided by zero) only when an image went through it."""
    import pytest
    import torch

    box = np.array([[10, 20, 300, 200]])
    assert api.resize_boxes_wsol(box, 500, 375).tolist() == [[4, 11, 134, 119]]  # unchanged
    assert api.resize_boxes_wsol(torch.tensor([10, 20, 300, 200]), np.int64(500), np.float32(375)).tolist() == [[4, 11, 134, 119]]
    two = np.array([[10, 20, 300, 200], [10, 20, 300, 200]])  # several images' boxes in one call: a size per box
    assert api.resize_boxes_wsol(two, np.array([500, 300]), np.array([375, 200])).tolist() == [[4, 11, 134, 119], [7, 22, 224, 224]]
    with pytest.raises(
        api.SimpoolBenchError,
        match=r"resize_boxes_wsol: width array\(\[500, 300, 400\]\): expected a positive number of pixels, or one per box",
    ):
        api.resize_boxes_wsol(two, np.array([500, 300, 400]), 375)
    for args, match in (
        ((box, 0, 375), r"resize_boxes_wsol: width 0: expected a positive number of pixels"),
        ((box, 500, -375), r"resize_boxes_wsol: height -375"),
        ((box, "500", 375), r"resize_boxes_wsol: width '500'"),
        ((np.array([[np.nan, 20, 300, 200]]), 500, 375), r"resize_boxes_wsol: box \[nan, 20.0, 300.0, 200.0\] is not finite"),
        ((np.array([[10, 20, 300, 200, 1]]), 500, 375), r"resize_boxes_wsol: boxes of shape \(1, 5\) and dtype int64: expected \(K, 4\)"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            api.resize_boxes_wsol(*args)

    assert api.wsol_transform((0.5,) * 3, np.array([0.5] * 3)) is not None
    for args, match in (
        (({"mean": (0.5,) * 3, "std": (0.5,) * 3},), r"wsol_transform: mean \{'mean'.*: expected 3 numbers \(R, G, B\)"),
        (("imagenet", (0.5,) * 3), r"wsol_transform: mean 'imagenet'"),
        (((0.5,) * 3, (0, 0, 0)), r"wsol_transform: std \(0, 0, 0\): expected 3 numbers \(R, G, B\), all > 0"),
        (((0.5, 0.5), (0.5, 0.5)), r"wsol_transform: mean \(0.5, 0.5\)"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            api.wsol_transform(*args)


def test_table_functions_name_an_argument_of_the_wrong_kind(tmp_path, make_wsol_dataset):
    """Found by an audit of the API: read_run(a DataFrame / None / a list), read_baseline(a
    DataFrame), compare(None), compare([1, 2]), check([run, run], baseline),
    load_tolerances(None / a dict) were a TypeError from pathlib or len(); check(tolerances=0.5)
    and check(tolerances='tol.toml') an AttributeError ('str' object has no attribute 'items'):
    a tolerances file is now read as ``check --tolerances`` reads it."""
    import pytest

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    run = tmp_path / "run"
    api.run_localize(spec, api.EngineConfig(device="cpu", progress=False), out=run)
    df = api.read_run(str(run))
    for call, match in (
        (lambda: api.read_run(df), r"read_run: expected a results file or run folder \(str or Path\), got pandas.DataFrame"),
        (lambda: api.read_run(None), r"read_run: expected .* got builtins.NoneType"),
        (lambda: api.read_run([run, run]), r"read_run: expected .* got builtins.list"),
        (lambda: api.read_baseline(df), r"read_baseline: expected .* got pandas.DataFrame"),
        (
            lambda: api.compare(None),
            r"compare: runs: expected a list of run folders, results files or DataFrames \(or one\), got builtins.NoneType",
        ),
        (lambda: api.compare([run, 2]), r"compare: run 1: expected a results file or run folder \(str or Path\), got builtins.int"),
        (lambda: api.check([run, run], run), r"run \(or a DataFrame; several runs: compare\): expected a results file or run folder"),
        (lambda: api.load_tolerances(None), r"load_tolerances: expected a TOML file \(str or Path\), got builtins.NoneType"),
        (lambda: api.load_tolerances({"default": 0.5}), r"load_tolerances: expected a TOML file .* got builtins.dict"),
        (lambda: api.check(df, run, tolerances=0.5), r"check: tolerances 0.5: expected a dict such as"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            call()
    toml = tmp_path / "tol.toml"
    toml.write_text("default = 0.5\n")
    assert api.check(df, run, tolerances=str(toml)).passed and api.check(df, run, tolerances=toml).passed
    with pytest.raises(api.SimpoolBenchError, match=r"tolerances file not found: .*nope.toml"):
        api.check(df, run, tolerances=tmp_path / "nope.toml")


def test_readers_name_a_data_argument_of_the_wrong_kind():
    """Found by an audit of the API: read_localization_data('cub', None), read_discovery_data('voc07', 123),
    read_classification_data(123), read_image_files(None) were a TypeError from pathlib;
    read_data({'dataset': 'cub'}) an AttributeError."""
    import pytest

    for call, match in (
        (lambda: api.read_localization_data("cub", None), r"--data: expected a folder \(str or Path\), got builtins.NoneType"),
        (lambda: api.read_discovery_data("voc07", 123), r"--data: expected a folder \(str or Path\), got builtins.int"),
        (lambda: api.read_classification_data(123), r"--data: expected a folder .* got builtins.int"),
        (lambda: api.read_image_files(None), r"--data: expected a folder .* got builtins.NoneType"),
        (lambda: api.read_map_data("cub", None), r"--data: expected a folder .* got builtins.NoneType"),
        (lambda: api.read_data({"dataset": "cub"}), r"read_data: expected a DataSpec, e.g. DataSpec\('cub', data=...\), got builtins.dict"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            call()  # type: ignore[arg-type]
    with pytest.raises(api.SimpoolBenchError, match=r"--data .*test_api.py: a file, expected a folder"):  # it said 'no such directory'
        api.read_image_files(__file__)


def test_data_fields_a_run_does_not_read_and_check_options_given_as_a_str(tmp_path, make_wsol_dataset):
    """Found by an audit of the API: ``DataSpec(subset=2)`` (or ``labels=``) for localize, and
    ``metadata=`` for discover, were silently dropped (localize scored every image); check's
    ``allow_protocol_change='interval'`` was read as its characters ('i' refused), and
    ``default_tolerance='1'`` was taken (a TypeError once a value differed)."""
    import pytest

    engine = api.EngineConfig(device="cpu", progress=False)
    for call, match in (
        (
            lambda: api.run_localize(api.LocalizeSpec(api.DataSpec("cub", data=tmp_path, subset=2), baseline="center-gaussian"), engine),
            r"DataSpec.subset = 2: localize does not read it \(it reads dataset, data, split, label, metadata\); drop it",
        ),
        (
            lambda: api.run_localize(api.LocalizeSpec(api.DataSpec("cub", data=tmp_path, labels="l.txt"), baseline="full-box"), engine),
            r"DataSpec.labels = 'l.txt': localize does not read it",
        ),
        (
            lambda: api.run_discover(api.DiscoverSpec(api.DataSpec("voc07", data=tmp_path, metadata="m"), method="center"), engine),
            r"DataSpec.metadata = 'm': discover does not read it \(it reads dataset, data, split, label, no_hard, annotations, list_file\)",
        ),
        (
            lambda: api.run_classify(api.ClassifySpec(api.DataSpec("imagenet", data=tmp_path, no_hard=True)), engine),
            r"DataSpec.no_hard = True: classify does not read it",
        ),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            call()

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    run = tmp_path / "run"
    api.run_localize(spec, engine, out=run)
    assert api.check(run, run, allow_protocol_change="interval").passed
    with pytest.raises(api.SimpoolBenchError, match=r"check: default_tolerance '1': expected a non-negative number"):
        api.check(run, run, default_tolerance="1")  # type: ignore[arg-type]


def test_a_float32_or_nan_interval_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    """LocalizeSpec(interval=np.float32(0.01)) (its arange gives 101 thresholds) or NaN passed the
    spec's range check and was refused only by the run's accumulator, after the data was read."""
    import pytest

    from simpool_bench import runs

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setattr(runs, "read_localization_data", no_data)
    engine = api.EngineConfig(device="cpu", progress=False)
    for interval, match in (
        (np.float32(0.01), r"interval np.float32\(0.01\): a float32 step"),
        (float("nan"), r"interval nan: expected a number in \(0, 1\)"),
    ):
        with pytest.raises(api.SimpoolBenchError, match=match):
            api.run_localize(api.LocalizeSpec(api.DataSpec("cub", data=tmp_path), baseline="full-box", interval=interval), engine)


def test_preprocessing_options_are_checked_and_one_value_stands_for_three(tmp_path):
    """--mean/--std take 3 numbers or one for all three channels (finite; std > 0), --crop-pct a
    fraction in (0, 1], --interpolation one of PIL's three; weights from a checkpoint and from
    --pretrained together are refused: each is one error before any model is built."""
    import pytest

    from simpool_bench.loading import check_model_options, data_overrides

    def opts(**kw):
        return api.ModelOptions(arch="resnet18", random_init=True, **kw)

    assert data_overrides(opts(mean=(0.5,), std=(0.25,), crop_pct=1.0, interpolation="nearest")) == {
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "crop_pct": 1.0,
        "interpolation": "nearest",
    }
    for kw, msg in [
        (
            dict(std=(0.2, 0.0, 0.2)),
            r"--std 0\.2,0\.0,0\.2: expected 3 numbers \(R,G,B\), each in \[0\.001, 1\] \(pixels are read as 0\.\.1, ToTensor\)$",
        ),
        (dict(mean=(float("inf"), 0.5, 0.5)), r"--mean inf,0\.5,0\.5: expected 3 numbers \(R,G,B\), each in \[0, 1\] \(pixels"),
        (dict(crop_pct=1.5), r"--crop-pct 1\.5: expected a fraction in \(0, 1\]$"),
        (dict(interpolation="lanczos"), r"--interpolation 'lanczos': expected bilinear, bicubic or nearest$"),
    ]:
        with pytest.raises(api.SimpoolBenchError, match=msg):
            check_model_options(opts(**kw))
    with pytest.raises(api.SimpoolBenchError, match=r"^--checkpoint and --pretrained/--pretrained-file both give weights"):
        check_model_options(api.ModelOptions(checkpoint=tmp_path / "w.pth", pretrained=True))


def test_model_options_that_cannot_mean_one_run_are_one_error_each(tmp_path):
    """Before any model is built: random weights asked for with pretrained ones, a --pretrained-file
    that is not there, --mean/--std of two numbers (one stands for three, or three), a --crop-pct of 0
    (no image left to crop): one error each, naming the flag and what was expected."""
    import pytest

    from simpool_bench.loading import check_model_options

    def opts(**kw):
        return api.ModelOptions(**{"arch": "resnet18", "random_init": True, **kw})

    missing = tmp_path / "nope.safetensors"
    for kw, msg in [
        (dict(pretrained=True), r"^--random-init and --checkpoint/--pretrained/--pretrained-file: give weights or ask"),
        (dict(pretrained_file=tmp_path), r"^--random-init and --checkpoint/--pretrained/--pretrained-file"),
        (dict(random_init=False, pretrained_file=missing), rf"^--pretrained-file {missing}: no such file$"),
        (
            dict(mean=(0.5, 0.5)),
            r"^--mean 0\.5,0\.5: expected 3 numbers \(R,G,B\), each in \[0, 1\] \(pixels are read as 0\.\.1, ToTensor\)$",
        ),
        (dict(std=(0.2, 0.2, 0.2, 0.2)), r"^--std 0\.2,0\.2,0\.2,0\.2: expected 3 numbers \(R,G,B\), each in \[0\.001, 1\]"),
        (dict(crop_pct=0.0), r"^--crop-pct 0\.0: expected a fraction in \(0, 1\]$"),
    ]:
        with pytest.raises(api.SimpoolBenchError, match=msg):
            check_model_options(opts(**kw))
    given = tmp_path / "w.safetensors"
    given.write_bytes(b"weights")  # there: weights enough for the options (its content is read later)
    check_model_options(opts(random_init=False, pretrained_file=given))


def test_mean_and_std_outside_what_0_to_1_pixels_allow_are_refused_naming_the_flag(tmp_path):
    """``--mean 1e30`` or ``--std 1e-45`` ran, and failed with an error blaming the weights ("may hold
    NaN") or drew NaN maps; ImageNet's 0..255 values (123.675, ...) ran on 0..1 pixels as a model
    fed numbers near -500. Pixels are read as 0..1, so a mean lies in [0, 1]; a std in [0.001, 1].
    0..255 values are named with their /255 equivalents."""
    import pytest

    from simpool_bench.loading import data_overrides

    from conftest import build_image_folder, invoke_cli

    def opts(**kw):
        return api.ModelOptions(arch="resnet18", random_init=True, **kw)

    for kw in (dict(mean=(0.0, 1.0, 0.5), std=(0.001, 1.0, 0.5)), dict(mean=(0.0,), std=(1.0,))):  # the bounds themselves
        assert data_overrides(opts(**kw))["std"] == (kw["std"] * 3 if len(kw["std"]) == 1 else kw["std"])
    expected = {"mean": "expected 3 numbers (R,G,B), each in [0, 1]", "std": "expected 3 numbers (R,G,B), each in [0.001, 1]"}
    for name, values in [
        ("mean", (1e30, 0.5, 0.5)),
        ("mean", (-0.01, 0.5, 0.5)),
        ("mean", (float("nan"),)),
        ("std", (1e-45, 0.2, 0.2)),
        ("std", (0.0009, 0.2, 0.2)),
        ("std", (1.5,)),
        ("std", (-0.2, 0.2, 0.2)),
    ]:
        given = ",".join(map(str, values))
        with pytest.raises(api.SimpoolBenchError) as e:
            data_overrides(opts(**{name: values}))
        assert str(e.value) == f"--{name} {given}: {expected[name]} (pixels are read as 0..1, ToTensor)"
    with pytest.raises(api.SimpoolBenchError) as e:
        data_overrides(opts(mean=(123.675, 116.28, 103.53)))
    assert str(e.value) == (
        "--mean 123.675,116.28,103.53: expected 3 numbers (R,G,B), each in [0, 1]: pixels are read as 0..1 (ToTensor), "
        "so 0..255 values are 255 times too large: 0.485,0.456,0.406 is their 0..1 equivalent"
    )
    with pytest.raises(api.SimpoolBenchError) as e:
        data_overrides(opts(std=(58.395, 57.12, 57.375)))
    assert str(e.value).endswith("so 0..255 values are 255 times too large: 0.229,0.224,0.225 is their 0..1 equivalent")
    folder = build_image_folder(tmp_path / "imgs", counts=(1, 1))
    res = invoke_cli("classify", "--model", "resnet18", "--random-init", "--std", "1e-45", "--data", folder, "--device", "cpu")
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        "error: --std 1e-45: expected 3 numbers (R,G,B), each in [0.001, 1] (pixels are read as 0..1, ToTensor)"
    ], res.output


def test_random_init_model_is_built_as_the_options_say():
    """With neither weights nor --num-classes, a supervised model has timm's ImageNet head (1000
    classes) and a DINO one none (features); --pool unset is SimPool (the bench's model); a
    --pos-interp given reaches a ViT built without a DINO file (unset: timm's)."""
    import timm

    model, _ = api.load_model(api.ModelOptions(arch="resnet18", random_init=True))
    assert model.num_classes == timm.create_model("resnet18", pretrained=False).num_classes == 1000
    assert model.pool == "simpool"
    model, _ = api.load_model(api.ModelOptions(arch="resnet18", random_init=True, variant="dino", pool="gap"))
    assert (model.num_classes, model.pool) == (0, "gap")
    vit = "vit_tiny_patch16_224"
    assert api.load_model(api.ModelOptions(arch=vit, random_init=True, pool="cls", pos_interp="dino"))[0].pos_interp == "dino"
    assert api.load_model(api.ModelOptions(arch=vit, random_init=True, pool="cls"))[0].pos_interp == "timm"


def test_spec_names_ks_and_weights_a_run_would_misread_are_one_error(tmp_path, monkeypatch):
    """A name with spaces around it or a line break is another dataset in the table; ``True`` is
    no k; ``pretrained_file`` names weights as much as ``checkpoint`` does (so stored maps refuse it)."""
    import pytest

    from simpool_bench import runs

    for make, expected in (
        (lambda: api.DataSpec("cub "), "--dataset 'cub ': expected a name without spaces around it or line breaks ('cub'?)"),
        (lambda: api.DataSpec("cub", split="a\nb"), "--split 'a\\nb': expected a name without spaces around it or line breaks"),
        (lambda: api.DataSpec("cub", label=" "), "--data-label ' ': expected a name without spaces around it or line breaks"),
        (
            lambda: api.ClassifySpec(api.DataSpec("imagenet"), knn_k=(10, True)),
            "ClassifySpec.knn_k = (10, True): expected distinct whole numbers >= 1, e.g. (10, 20, 100, 200)",
        ),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            make()
        assert str(err.value) == expected
    weights = api.ModelOptions(pretrained_file="w.safetensors")
    assert weights.gives_weights and not api.ModelOptions(prefer="raw").gives_weights

    def no_maps(*args, **kwargs):
        raise AssertionError("the maps were scored")

    monkeypatch.setattr(runs, "from_maps", no_maps)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=tmp_path), model=weights, maps=tmp_path)
    with pytest.raises(api.SimpoolBenchError, match=r"^--maps needs no model: drop --model/--checkpoint/--pretrained/--baseline$"):
        api.run_localize(spec, api.EngineConfig(device="cpu", progress=False))


def test_numpy_integers_the_classify_spec_takes_run_as_the_same_ints(tmp_path, one_thread):
    """Found by a sweep of the API: ClassifySpec takes a numpy integer for ``knn_k``, ``resize`` and
    ``crop`` (its fields take any whole number), but ``knn_k=np.int64(3)`` was a TypeError ('not
    iterable') in the run and ``resize=np.int64(40)`` was refused as not 'a whole number of pixels'."""
    from simpool_bench.transforms import classification_config

    from conftest import build_image_folder

    data = api.DataSpec("imagenet", data=build_image_folder(tmp_path / "data", counts=(2, 2, 2)))
    model = api.ModelOptions(arch="vit_tiny_patch16_224", num_classes=3, img_size=64, random_init=True)
    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)

    def knn_rows(k):
        table = api.run_classify(api.ClassifySpec(data, model=model, knn_train=data.data, knn_k=k), engine).table
        return table[table.metric.str.startswith("knn")][["metric", "k", "value"]].values.tolist()

    assert knn_rows(np.int64(3)) == knn_rows(3) and [row[1] for row in knn_rows(3)] == [3, 3]
    cfg = {"input_size": (3, 64, 64), "crop_pct": 0.875, "interpolation": "bicubic", "mean": (0.5,) * 3, "std": (0.5,) * 3}
    given = classification_config(cfg, np.int64(40), np.int64(32))
    assert given == classification_config(cfg, 40, 32) and given["input_size"] == (3, 32, 32)
    assert type(given["input_size"][-1]) is int


def test_readers_name_an_option_argument_of_the_wrong_kind(tmp_path):
    """Found by a sweep of the API: the readers' arguments besides ``data`` were not checked:
    read_classification_data(subset=0) read every image (subset=True one per class, subset=1.5 was
    a TypeError), split=1 a TypeError from pathlib; read_localization_data(None, ...) an
    AttributeError ('upper'), metadata=0 a TypeError; read_discovery_data(no_hard='False') dropped
    the hard objects (a true string)."""
    import pytest

    from conftest import build_image_folder, build_voc_dataset

    folder = build_image_folder(tmp_path / "folder", counts=(2, 2))
    voc = build_voc_dataset(tmp_path / "voc", n=3)
    assert len(api.read_classification_data(folder, subset=1).records) == 2  # one per class, as asked
    for call, expected in (
        (
            lambda: api.read_classification_data(folder, subset=0),
            "read_classification_data: subset = 0: expected an integer >= 1 (the first N images per class) or None",
        ),
        (lambda: api.read_classification_data(folder, subset=True), "read_classification_data: subset = True: expected int or None"),
        (lambda: api.read_classification_data(folder, subset=1.5), "read_classification_data: subset = 1.5: expected int or None"),
        (lambda: api.read_classification_data(folder, split=1), "read_classification_data: split = 1: expected str or None"),
        (
            lambda: api.read_classification_data(folder, labels=3),
            "read_classification_data: labels = 3: expected a path (str or Path) or None",
        ),
        (lambda: api.read_localization_data(None, folder), "read_localization_data: dataset = None: expected str"),
        (
            lambda: api.read_localization_data("cub", folder, 0),
            "read_localization_data: metadata = 0: expected a path (str or Path) or None",
        ),
        (lambda: api.read_discovery_data("voc07", voc, no_hard="False"), "read_discovery_data: no_hard = 'False': expected bool"),
        (lambda: api.read_discovery_data("voc07", voc, split=None), "read_discovery_data: split = None: expected str"),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            call()  # type: ignore[arg-type]
        assert str(err.value) == expected


def test_model_options_a_model_without_checkpoint_would_ignore_or_misread_are_one_error():
    """Found by a sweep of the API: ``format`` without a checkpoint was ignored without a word (as
    ``prefer`` is refused there); an empty ``pool``/``variant`` ran as the default (SimPool,
    supervised) and an empty ``pos_interp`` as 'dino', DINO's position interpolation."""
    import pytest

    from simpool_bench.loading import check_model_options

    vit = dict(arch="vit_tiny_patch16_224", img_size=32, random_init=True)
    for kw, expected in (
        (
            dict(format="official-dino"),
            "--format 'official-dino': it forces the format of a --checkpoint file, and this run has none; drop --format",
        ),
        (dict(pool=""), "--pool '': expected a name, or None for the checkpoint's or the default"),
        (dict(variant=""), "--variant '': expected a name, or None for the checkpoint's or the default"),
        (dict(pos_interp=""), "ModelOptions.pos_interp '': expected a name, or None for the checkpoint's or the default"),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            api.load_model(api.ModelOptions(**vit, **kw))
        assert str(err.value) == expected
    check_model_options(api.ModelOptions(**vit, pool="cls", variant="supervised", pos_interp="timm"))  # names: fine


def test_a_vit_img_size_under_its_patch_size_is_one_error():
    """Found by a sweep of the API: ``img_size=3`` of a patch-16 ViT built a model with an empty
    position grid, which failed in its first forward with a RuntimeError from timm's reshape."""
    import pytest

    vit = dict(arch="vit_tiny_patch16_224", random_init=True)
    with pytest.raises(api.SimpoolBenchError) as err:
        api.load_model(api.ModelOptions(**vit, img_size=3))
    assert str(err.value) == "vit_tiny_patch16_224: img_size 3x3 is smaller than the patch size 16; expected at least 16 pixels a side"
    assert api.load_model(api.ModelOptions(**vit, img_size=16))[0].pos_grid == (1, 1)  # one patch: fine


def test_an_empty_str_is_no_path(tmp_path, make_wsol_dataset, monkeypatch):
    """Found by a sweep of the API: a path given as '' is Path('.'): ``EngineConfig(resume_dir='')``
    kept its shards in the current folder, ``out=''`` wrote the run's files there and
    ``read_classification_data('')`` read it as the data set."""
    import pytest

    wsol = make_wsol_dataset(tmp_path / "wsol", n=3)
    spec = api.LocalizeSpec(api.DataSpec("cub", data=wsol.image_root, metadata=wsol.metadata), baseline="center-gaussian")
    engine = api.EngineConfig(device="cpu", workers=0, progress=False)
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    for call, expected in (
        (
            lambda: api.EngineConfig(resume_dir=""),
            "EngineConfig.resume_dir = '': expected a path (str or Path) or None (not an empty str: '.' is the current folder)",
        ),
        (
            lambda: api.DataSpec("cub", data=""),
            "DataSpec.data = '': expected a path (str or Path) or None (not an empty str: '.' is the current folder)",
        ),
        (
            lambda: api.run_localize(spec, engine, out=""),
            "run_localize: out: expected a folder (str or Path) or None, got an empty str ('.' is the current folder)",
        ),
        (lambda: api.read_classification_data(""), "--data: expected a folder (str or Path), got an empty str ('.' is the current folder)"),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            call()
        assert str(err.value) == expected
    assert list(here.iterdir()) == []  # nothing written where the caller stands
    assert api.EngineConfig(resume_dir=".").resume_dir == "."  # the current folder, said so: taken


def test_box_accumulator_refuses_a_step_finer_than_a_run_takes():
    """Found by a sweep of the API: ``BoxAccumulator(interval=1e-300)`` was a ValueError from numpy
    ('Maximum allowed size exceeded') and 1e-9 asked for 8 GB of thresholds; localize refuses a step
    under 1e-4 before it builds one, the accumulator now does too."""
    import pytest

    with pytest.raises(api.SimpoolBenchError) as err:
        api.BoxAccumulator(interval=1e-300)
    assert str(err.value) == "interval 1e-300: 1e+300 thresholds; expected a step >= 0.0001 (wsolevaluation: 0.001 or 0.01)"
    with pytest.raises(api.SimpoolBenchError, match=r"^interval 1e-09: 1e\+09 thresholds; expected a step >= 0.0001"):
        api.BoxAccumulator(interval=1e-9)
    assert len(api.BoxAccumulator(interval=1e-4).thresholds) == 10_000  # the finest step: taken


def test_from_maps_names_a_maps_argument_or_kind_of_the_wrong_kind(tmp_path):
    """Found by a sweep of the API: ``from_maps('localize', 0, records)`` was a TypeError from
    pathlib, and an unknown ``kind`` was told only once the store had been opened (a folder that is
    no store: an error about the store, not the kind)."""
    import pytest

    for call, expected in (
        (lambda: api.from_maps("localize", 0, []), "from_maps: maps: expected the map store's folder (str or Path), got builtins.int"),
        (lambda: api.from_maps("localise", tmp_path, []), "from_maps: kind 'localise', expected localize or discover"),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            call()  # type: ignore[arg-type]
        assert str(err.value) == expected


def test_a_knn_temperature_whose_weights_overflow_is_one_error(tmp_path, one_thread):
    """Found by a sweep of the API: ``knn_temperature=1e-300`` made DINO's exp(similarity / T)
    weights infinite, their votes NaN, and the run reported k-NN top-1 0.0 for every k."""
    import pytest

    from conftest import build_image_folder

    data = api.DataSpec("imagenet", data=build_image_folder(tmp_path / "data", counts=(2, 2, 2)))
    model = api.ModelOptions(arch="vit_tiny_patch16_224", num_classes=3, img_size=64, random_init=True)
    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)
    spec = api.ClassifySpec(data, model=model, knn_train=data.data, knn_k=(1, 2), knn_temperature=1e-300)
    with pytest.raises(api.SimpoolBenchError, match=r"^--knn-temperature 1e-300: exp\(similarity / T\) overflows \(similarity 1\)"):
        api.run_classify(spec, engine)
    table = api.run_classify(dataclasses.replace(spec, knn_temperature=0.07), engine).table
    assert table.loc[table.metric == "knn_top1", "value"].tolist() == [100.0, 100.0]  # the bank is the test set: each finds itself


def test_accumulators_name_maps_or_boxes_of_the_wrong_kind():
    """Found by a sweep of the API: ``BoxAccumulator().update(0.5, ...)`` (or None) was a TypeError
    ('not iterable'), and gt_boxes given as a 0-d tensor a TypeError from len() in both accumulators."""
    import pytest
    import torch

    for call, expected in (
        (
            lambda: api.BoxAccumulator().update(0.5, []),
            "score_maps: expected a (B, h, w) array or tensor, or a sequence of (h, w) maps, got builtins.float",
        ),
        (
            lambda: api.BoxAccumulator().update(np.zeros((1, 8, 8)), torch.tensor(3)),
            "gt_boxes: expected a sequence of (K, 4) box arrays, one per score map, got torch.Tensor of 0 dimensions",
        ),
        (
            lambda: api.CorLocAccumulator().update(np.array([[1, 2, 3, 4]]), torch.tensor(3.0)),
            "gt_boxes: expected a sequence of (K, 4) box arrays, one per predicted box, got torch.Tensor of 0 dimensions",
        ),
    ):
        with pytest.raises(api.SimpoolBenchError) as err:
            call()
        assert str(err.value) == expected


def test_box_resizing_refuses_a_size_whose_scale_overflows():
    """Found by a sweep of the API: ``resize_boxes_wsol(box, 1e-300, 375)`` scaled x by 224 / 1e-300
    (inf) and returned int64's minimum, -9223372036854775808, as the box's x0 and x1."""
    import pytest

    box = np.array([[10, 20, 300, 200]])
    with pytest.raises(api.SimpoolBenchError) as err:
        api.resize_boxes_wsol(box, 1e-300, 375)
    assert str(err.value) == (
        "resize_boxes_wsol: width 1e-300, height 375: the boxes scaled by size / width and size / height overflow; "
        "expected the image's size in pixels (e.g. 500, 375)"
    )
    assert api.resize_boxes_wsol(box, 500, 375).tolist() == [[4, 11, 134, 119]]  # unchanged
    assert api.resize_boxes_wsol(np.array([10, 20, 300, 200]), 500.0, 375.0).dtype == np.int64


def test_classify_default_split_is_a_split_name_under_data(tmp_path):
    """Found by a sweep of the API: ``ClassifySpec.default_split`` was not checked as ``DataSpec.split``
    is: '..' read the folder above --data as the image folder, '' and ' val' silently read --data."""
    import pytest

    data = api.DataSpec("imagenet", data=tmp_path)
    for bad in ("..", "", " val", "/abs/val"):
        with pytest.raises(api.SimpoolBenchError) as err:
            api.ClassifySpec(data, default_split=bad)
        assert str(err.value) == (
            f"ClassifySpec.default_split = {bad!r}: expected a split name under --data (e.g. val), without spaces around it, "
            "not a path outside it"
        )
    assert api.ClassifySpec(data, default_split="val").default_split == "val"
