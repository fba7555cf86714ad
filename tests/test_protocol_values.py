"""Protocol values out of their range, and flags named as the user gave them: one ``error:`` line,
exit 2, before any model is loaded or anything is written (found by a bad-input audit: these ran
to the end and wrote a table, or named the wrong flag)."""

from __future__ import annotations

import pytest

from conftest import build_image_folder, build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset, invoke_cli, said


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol_values")
    return {
        "ckpt": build_tiny_checkpoint(root / "tiny.pth.tar")[0],
        "voc": build_voc_dataset(root / "VOC2007", n=3),
        "wsol": build_wsol_dataset(root / "wsol", n=3),
        "train": build_image_folder(root / "imgs" / "train", counts=(2, 2)),
        "val": build_image_folder(root / "imgs" / "val", counts=(2, 2)),
    }


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a model is loaded: a bad value must be refused before that."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad value was refused")

    monkeypatch.setattr("simpool_bench.runs.load_model", refuse)


def _one_error(res, expected: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and said(res) == expected, res.output


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--mass", "0", "error: --mass 0.0: expected a fraction of the attention mass in (0, 1] (DINO/LOST: 0.6)"),
        ("--mass", "1.5", "error: --mass 1.5: expected a fraction of the attention mass in (0, 1] (DINO/LOST: 0.6)"),
        ("--mass", "nan", "error: --mass nan: expected a fraction of the attention mass in (0, 1] (DINO/LOST: 0.6)"),
        ("--k-patches", "0", "error: --k-patches 0: expected an integer >= 1 (LOST: 100)"),
        ("--k-patches", "-5", "error: --k-patches -5: expected an integer >= 1 (LOST: 100)"),
    ],
)
def test_discover_refuses_values_outside_the_protocol(data, tmp_path, no_model, flag, value, expected):
    out = tmp_path / "out"
    method = "lost" if flag == "--k-patches" else "attn"  # the method that uses the flag
    res = invoke_cli(
        "discover", "--checkpoint", data["ckpt"], "--data", data["voc"], "--method", method, "--device", "cpu", "--out", out, flag, value
    )
    _one_error(res, expected)
    assert not out.exists()


def test_discover_keeps_the_edges_of_the_ranges(data, tmp_path):
    """mass 1 (the whole map) and k 1 (the seed alone) are valid protocol values: they run."""
    for args in (("--method", "attn", "--mass", "1"), ("--method", "lost", "--k-patches", "1")):
        res = invoke_cli(
            "discover", "--checkpoint", data["ckpt"], "--data", data["voc"], "--device", "cpu", "--out", tmp_path / args[1], *args
        )
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_classify_refuses_a_knn_temperature_not_above_zero(data, tmp_path, no_model, value):
    res = invoke_cli(
        "classify", "--data", data["val"].parent, "--checkpoint", data["ckpt"], "--knn-train", data["train"], "--knn-temperature", value,
        "--device", "cpu", "--out", tmp_path / "out",
    )  # fmt: skip
    _one_error(res, f"error: --knn-temperature {float(value)}: expected a number > 0 (DINO: 0.07)")


def test_a_missing_knn_bank_is_named_by_its_own_flag_before_the_model_loads(data, tmp_path, no_model):
    nope = data["train"].parent / "nope"
    res = invoke_cli("classify", "--data", data["val"].parent, "--checkpoint", data["ckpt"], "--knn-train", nope, "--device", "cpu")
    _one_error(res, f"error: --knn-train {nope}: no such directory")


def test_localize_takes_only_its_datasets(data, tmp_path, no_model):
    wsol = data["wsol"]
    res = invoke_cli(
        "localize", "--dataset", "voc07", "--checkpoint", data["ckpt"], "--data", wsol.image_root, "--metadata", wsol.metadata,
        "--device", "cpu", "--out", tmp_path / "out",
    )  # fmt: skip
    _one_error(res, "error: --dataset 'voc07': localize takes cub | imagenet (wsolevaluation's datasets)")


def test_a_results_table_with_a_header_only_is_refused_as_empty(tmp_path):
    """A header and no rows: compare and check said 'mixed or empty schema_version values []'."""
    from simpool_bench import results as R

    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(R.COLUMNS) + "\n")
    run = tmp_path / "run.csv"
    R.make_table([{"dataset": "cub", "split": "test", "metric": "top1", "value": 70.0}], R.Provenance(model="m", pool="p")).to_csv(
        run, index=False
    )
    _one_error(invoke_cli("compare", empty, run), f"error: {empty}: the table has no rows")
    _one_error(invoke_cli("check", run, "--baseline", empty, "--no-github"), f"error: {empty}: the table has no rows")


def test_demo_refuses_a_device_that_is_not_there_before_building_anything(tmp_path):
    out = tmp_path / "demo"
    _one_error(
        invoke_cli("demo", "--out", out, "--small", "--device", "tpu"),
        "error: --device 'tpu' is not a device name (expected auto, cpu, cuda, cuda:N, mps)",
    )
    assert not (out / "data").exists() and not (out / "models").exists()


def test_localize_refuses_labels_beyond_the_models_classes(data, tmp_path):
    """classify refused such metadata; localize counted those images as misclassified in Top-1 Loc."""
    wsol = build_wsol_dataset(tmp_path / "wsol5", n=6, num_classes=5)  # labels 0..4, the model has 3 classes
    res = invoke_cli(
        "localize", "--checkpoint", data["ckpt"], "--data", wsol.image_root, "--metadata", wsol.metadata,
        "--device", "cpu", "--out", tmp_path / "out",
    )  # fmt: skip
    _one_error(
        res,
        "error: the metadata's class labels go up to 4 but the model has 3 classes (checkpoint and dataset disagree on the class "
        "count; Top-1 Loc would count those images as misclassified)",
    )


def test_out_that_is_a_file_is_named_by_the_flag(data, tmp_path):
    """--out on a file: the run said 'cannot create folder FILE/.shards/<hash>', and a suite failed
    every entry on its own and exited 1."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    wsol = data["wsol"]
    res = invoke_cli(
        "localize", "--checkpoint", data["ckpt"], "--data", wsol.image_root, "--metadata", wsol.metadata, "--device", "cpu", "--out", afile
    )
    _one_error(res, f"error: --out {afile}: a file is there; expected a folder (made when missing)")
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'[[checkpoints]]\nlabel = "a"\ncheckpoint = "{data["ckpt"]}"\n\n'
        f'[[evaluations]]\ntask = "localize"\ndataset = "cub"\ndata = "{wsol.image_root}"\nmetadata = "{wsol.metadata}"\n'
    )
    _one_error(
        invoke_cli("suite", "run", suite, "--out", afile, "--device", "cpu"),
        f"error: --out {afile}: a file is there; expected a folder (made when missing)",
    )
    assert afile.read_text() == "not a folder"


def test_visualize_refuses_a_mass_outside_the_protocol(data, tmp_path, no_model):
    out = tmp_path / "viz"
    res = invoke_cli("visualize", "--dataset", "voc07", "--data", data["voc"], "--checkpoint", data["ckpt"], "--mass", "1.5", "--out", out)
    _one_error(res, "error: --mass 1.5: expected a fraction of the attention mass in (0, 1] (DINO/LOST: 0.6)")
    assert not out.exists()


# ------------------------------------------------------------------ flags the run does not use
KNN_ONLY = "only the k-NN classifier uses it (give --knn-train DIR)"
ATTN_MASS = "only --method attn keeps a fraction of the attention mass"


@pytest.mark.parametrize(
    "command, args, expected",
    [
        ("classify", ("--knn-k", "5"), f"--knn-k is not used by this run: {KNN_ONLY}"),
        ("classify", ("--knn-temperature", "0.07"), f"--knn-temperature is not used by this run: {KNN_ONLY}"),  # even its default
        ("localize", ("--baseline", "center-gaussian", "--cam-target", "pred"), "--cam-target is not used by this run: a no-model --baseline has no class to take a CAM of"),
        ("discover", ("--method", "center", "--mass", "0.3"), f"--mass is not used by this run: {ATTN_MASS}"),
        ("discover", ("--method", "lost", "--mass", "0.6"), f"--mass is not used by this run: {ATTN_MASS}"),
        ("discover", ("--method", "attn", "--k-patches", "5"), "--k-patches is not used by this run: only --method lost expands a seed"),
        ("discover", ("--method", "lost", "--lost-compat"), "--lost-compat is not used by this run: only --method attn takes LOST dino_seg's defaults"),
        ("visualize", ("--dataset", "voc07", "--threshold", "0.3"), "--threshold is not used by this run: VOC/COCO boxes keep a fraction of the attention mass (--mass), not a score-map threshold"),
        ("visualize", ("--dataset", "cub", "--mass", "0.3"), "--mass is not used by this run: cub/imagenet boxes come from a score-map threshold (--threshold)"),
        ("visualize", ("--dataset", "voc07", "--k-patches", "5"), "--k-patches is not used by this run: only --method lost expands a seed"),
        ("visualize", ("--dataset", "cub", "--threshold", "0.3", "--threshold-from", "run"), "--threshold is not used by this run: --threshold-from gives each column's threshold"),
        ("visualize", ("--dataset", "cub", "--threshold", "0.5", "--per-image", "run"), "--threshold is not used by this run: with --per-image RUN the boxes are at that run's best threshold (--threshold-from RUN sets a column's)"),
    ],
)  # fmt: skip
def test_a_flag_the_run_does_not_use_is_an_error(data, tmp_path, no_model, command, args, expected):
    """Given on the command line, a protocol flag the run ignores was silently dropped (found by a
    newcomer's walkthrough: `discover --method center --mass 0.3` ran and recorded nothing of it)."""
    wsol = data["wsol"]
    where = {
        "classify": ("--data", data["val"].parent, "--checkpoint", data["ckpt"]),
        "localize": ("--data", wsol.image_root, "--metadata", wsol.metadata),
        "discover": ("--dataset", "voc07", "--data", data["voc"], *(() if "center" in args else ("--checkpoint", data["ckpt"]))),
        "visualize": ("--checkpoint", data["ckpt"]),
    }[command]
    data_of = {"voc07": ("--data", data["voc"]), "cub": ("--data", wsol.image_root, "--metadata", wsol.metadata)}
    extra = data_of[args[1]] if command == "visualize" else ()
    out = tmp_path / "out"
    res = invoke_cli(command, *where, *args, *extra, "--device", "cpu", "--out", out)
    _one_error(res, f"error: {expected}")
    assert not out.exists()


def test_discover_without_a_model_refuses_one(data, tmp_path):
    """`discover --method center --checkpoint X` ran the centred box and left the checkpoint out
    without a word (localize's --baseline already refused a model)."""
    out = tmp_path / "out"
    res = invoke_cli("discover", "--data", data["voc"], "--method", "center", "--checkpoint", data["ckpt"], "--device", "cpu", "--out", out)
    _one_error(res, "error: --method center needs no model: drop --model/--checkpoint/--pretrained")
    assert not out.exists()


# ------------------------------------------------------------------ refused before the data are read
@pytest.fixture()
def no_data(monkeypatch):
    """Fail the test if a run reads its data: a wrong model flag or device must be refused first
    (reading ImageNet takes a while, and a run on unpublished data warns about it first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data were read before the options were checked")

    for name in ("read_classification_data", "read_localization_data", "read_discovery_data", "read_data"):
        monkeypatch.setattr(f"simpool_bench.runs.{name}", refuse)
    monkeypatch.setattr("simpool_bench.readers.read_data", refuse)  # visualize's


def _model_flags_cases(tmp_path, ckpt):
    nope, text = tmp_path / "nope.pth", tmp_path / "dir.pth"
    text.mkdir()
    return [
        (("--checkpoint", nope), f"checkpoint {nope}: no such file"),
        (("--checkpoint", text), f"checkpoint {text}: is a directory, expected a checkpoint file"),
        (("--model", "vit_smal_patch16_224", "--random-init"), "unknown model 'vit_smal_patch16_224': expected a timm model name"),
        (("--model", "resnet18"), "--model resnet18 has no weights: give --checkpoint FILE"),
        (("--model", "resnet18", "--random-init", "--pretrained"), "--random-init and --checkpoint/--pretrained/--pretrained-file"),
        (("--checkpoint", ckpt, "--pretrained-file", tmp_path / "w.safetensors"), "--checkpoint and --pretrained/--pretrained-file both"),
        (
            ("--model", "resnet18", "--pretrained-file", tmp_path / "w.safetensors"),
            f"--pretrained-file {tmp_path / 'w.safetensors'}: no such file",
        ),
        (("--checkpoint", ckpt, "--mean", "1,2"), "--mean 1.0,2.0: expected 3 numbers (R,G,B)"),
        (("--checkpoint", ckpt, "--device", "tpu"), "--device 'tpu' is not a device name"),
    ]


@pytest.mark.parametrize("command", ["classify", "localize", "discover", "extract", "visualize"])
def test_model_flags_and_device_are_checked_before_the_data(data, tmp_path, no_data, command):
    wsol = data["wsol"]
    where = {"classify": ("--data", data["val"].parent), "discover": ("--data", data["voc"])}.get(
        command, ("--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata)
    )
    for i, (flags, expected) in enumerate(_model_flags_cases(tmp_path, data["ckpt"])):
        out = tmp_path / f"out{i}"
        res = invoke_cli(command, *where, *flags, "--out", out)
        assert res.exit_code == 2 and "Traceback" not in res.output, (flags, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and said(res).startswith(f"error: {expected}"), (flags, res.output)
        assert not out.exists()
