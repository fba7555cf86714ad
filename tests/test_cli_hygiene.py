"""CLI hygiene (issue 13, items 6 and 7): no silent random weights (``--random-init``, its warning and
provenance flag), progress lines in logs, ``--version`` and ``-q/--quiet``; on generated data."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer

import simpool_bench
from simpool_bench import api, console
from simpool_bench.cli import app

from conftest import invoke_cli, said

ROOT = Path(__file__).resolve().parents[1]
MODEL_COMMANDS = ("classify", "localize", "discover", "extract", "visualize")
PROGRESS = re.compile(r"^classify imagenet: (\d+)/(\d+) images, \d+\.\d img/s, ETA \d+:\d\d$")
FINAL = re.compile(r"^classify imagenet: (\d+)/(\d+) images in \d+:\d\d, \d+\.\d img/s$")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory, make_image_folder, make_wsol_dataset, make_voc_dataset, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("hygiene")
    folder = make_image_folder(root / "folder", counts=(2, 2, 1))
    wsol = make_wsol_dataset(root / "wsol", n=3)
    voc = make_voc_dataset(root / "VOC2007", n=3)
    ckpt, _ = make_tiny_checkpoint(root / "tiny.pth.tar")
    return {"folder": folder, "wsol": wsol, "voc": voc, "ckpt": ckpt}


def _args(command: str, data: dict, out: Path) -> list:
    wsol = ["--dataset", "cub", "--data", data["wsol"].image_root, "--metadata", data["wsol"].metadata]
    return {
        "classify": ["classify", "--data", data["folder"]],
        "localize": ["localize", *wsol],
        "discover": ["discover", "--dataset", "voc07", "--data", data["voc"]],
        "extract": ["extract", *wsol, "--out", out],
        "visualize": ["visualize", *wsol, "--out", out],
    }[command] + ["--device", "cpu", "-j", "0"]


def test_every_model_command_has_random_init():
    group = typer.main.get_command(app)
    for name in MODEL_COMMANDS:
        flags = {o for p in group.commands[name].params for o in getattr(p, "opts", [])}
        assert "--random-init" in flags, name


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_a_model_without_weights_is_one_error_line(data, tmp_path, command):
    res = invoke_cli(*_args(command, data, tmp_path / "out"), "--model", "resnet18")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --model resnet18 has no weights")
    assert all(way in lines[0] for way in ("--checkpoint", "--pretrained", "--random-init"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_random_init_and_a_checkpoint_is_an_error(data, tmp_path):
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--random-init")
    assert res.exit_code == 2 and res.output.startswith("error: --random-init and --checkpoint")


@pytest.mark.parametrize("weights", [["--random-init"], ["--pretrained"]])
def test_prefer_without_a_checkpoint_is_an_error(tmp_path, weights):
    """--prefer picks the weights inside a checkpoint file; without one it was ignored without a word."""
    res = invoke_cli("classify", "--data", tmp_path, "--model", "resnet18", *weights, "--prefer", "ema", "--device", "cpu")
    assert res.exit_code == 2
    assert res.output.splitlines() == [
        "error: --prefer ema: it chooses the weights inside a --checkpoint file, and this run has none; drop --prefer"
    ]


@pytest.mark.parametrize(
    "command, extra, why",
    [
        ("localize", ["--baseline", "center-gaussian"], "--baseline"),
        ("discover", ["--method", "center"], "--method center"),
        ("discover", ["--method", "full-image"], "--method full-image"),
    ],
)
def test_random_init_on_a_run_without_a_model_is_an_error(data, tmp_path, command, extra, why):
    out = tmp_path / "out"
    res = invoke_cli(*_args(command, data, out), *extra, "--random-init", "--out", out)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: --random-init: a run with {why} builds no model, so there are no weights to draw; drop --random-init"
    ]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "command, extra, flag",
    [
        ("localize", ["--baseline", "center-gaussian", "--prefer", "ema"], "--prefer"),
        ("localize", ["--baseline", "full-box", "--pool", "simpool"], "--pool"),
        ("discover", ["--method", "center", "--gamma", "none"], "--gamma"),
        ("discover", ["--method", "full-image", "--no-dino-pos-quirk"], "--dino-pos-quirk/--no-dino-pos-quirk"),
        ("localize", ["--maps", "store", "--attn-source", "cls"], "--attn-source"),
        ("discover", ["--maps", "store", "--mean", "0.5,0.5,0.5"], "--mean"),
    ],
)
def test_a_model_option_on_a_run_without_a_model_is_an_error(data, tmp_path, command, extra, flag):
    """A model flag where no model is built was ignored without a word (a typo such as --prefer emaa passed)."""
    out = tmp_path / "out"
    res = invoke_cli(*_args(command, data, out), *extra, "--out", out)
    why = "--maps" if "--maps" in extra else " ".join(extra[:2]) if command == "discover" else "--baseline"
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"error: {flag}: a run with {why} builds no model, so it would not be used; drop {flag}"]
    assert not out.exists() or not any(out.iterdir())


def test_a_model_option_the_command_line_lacks_is_named_as_the_api_field(tmp_path):
    spec = api.LocalizeSpec(
        api.DataSpec("cub", data=tmp_path, metadata=tmp_path), baseline="center-gaussian", model=api.ModelOptions(img_size=96)
    )
    with pytest.raises(api.SimpoolBenchError, match=r"^ModelOptions.img_size: a run with --baseline builds no model"):
        api.run_localize(spec, api.EngineConfig(device="cpu", progress=False))


def _flags(out: Path) -> list[list]:
    """The random_init column as read back from both result files, by pandas alone."""
    return [pd.read_parquet(out / "results.parquet")["random_init"].tolist(), pd.read_csv(out / "results.csv")["random_init"].tolist()]


def test_random_init_warns_once_and_flags_the_provenance(data, tmp_path):
    out = tmp_path / "rand"
    res = invoke_cli(*_args("classify", data, out), "--model", "resnet18", "--random-init", "--num-classes", "3", "-b", "5", "--out", out)
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "resnet18" in warnings[0] and "--random-init" in warnings[0]
    n_rows = len(pd.read_csv(out / "results.csv"))
    assert _flags(out) == [[True] * n_rows, [True] * n_rows]
    assert set(pd.read_csv(out / "results.csv")["checkpoint_format"]) == {"random-init"}

    trained = tmp_path / "trained"
    res = invoke_cli(*_args("classify", data, trained), "--checkpoint", data["ckpt"], "--out", trained)
    assert res.exit_code == 0 and "warning:" not in res.stderr
    baseline = tmp_path / "baseline"
    wsol = data["wsol"]
    args = ["localize", "--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata, "--baseline", "center-gaussian"]
    assert invoke_cli(*args, "--out", baseline).exit_code == 0
    for run in (trained, baseline):
        n_rows = len(pd.read_csv(run / "results.csv"))
        assert _flags(run) == [[False] * n_rows, [False] * n_rows]


@pytest.mark.parametrize("command, extra", [("extract", ["--dtype", "float32"]), ("visualize", ["--n", "1"])])
def test_random_init_reaches_extract_and_visualize(data, tmp_path, command, extra):
    out = tmp_path / command
    res = invoke_cli(*_args(command, data, out), "--model", "resnet18", "--random-init", *extra)
    assert res.exit_code == 0, res.output
    assert sum(ln.startswith("warning:") and "random weights" in ln for ln in res.stderr.splitlines()) == 1
    if command == "extract":  # a run on the stored maps keeps the extracting model's flag
        wsol = data["wsol"]
        scored = tmp_path / "scored"
        args = ["localize", "--dataset", "cub", "--data", wsol.image_root, "--metadata", wsol.metadata, "--maps", out, "--out", scored]
        assert invoke_cli(*args).exit_code == 0
        n_rows = len(pd.read_csv(scored / "results.csv"))
        assert _flags(scored) == [[True] * n_rows, [True] * n_rows]


def test_progress_lines_when_stderr_is_not_a_terminal(data, tmp_path, monkeypatch):
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)  # a line after every batch instead of every 5 s
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "-b", "1", "--no-resume")
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("classify imagenet:")]
    n = 5
    assert [tuple(map(int, PROGRESS.match(ln).groups())) for ln in lines[:-1]] == [(i, n) for i in range(1, n)]
    assert FINAL.match(lines[-1]) and tuple(map(int, FINAL.match(lines[-1]).groups())) == (n, n)
    assert "classify imagenet" not in res.stdout  # progress goes to stderr, results to stdout


def test_quiet_drops_progress_and_notes_not_warnings_or_results(data, tmp_path, monkeypatch):
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)
    args = [*_args("classify", data, tmp_path), "--model", "resnet18", "--random-init", "--num-classes", "3", "-b", "1"]
    loud = invoke_cli(*args)
    assert loud.exit_code == 0 and PROGRESS.search(loud.stderr.splitlines()[1]) is not None
    for quiet in (["-q"], ["--quiet"]):
        res = invoke_cli(*quiet, *args)
        assert res.exit_code == 0, res.output
        assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [loud.stderr.splitlines()[0]]  # the warning alone
        assert loud.stdout.splitlines()[:8] == res.stdout.splitlines()[:8]  # the same table (random init is seeded)
    monkeypatch.setenv("SIMPOOL_BENCH_QUIET", "1")
    assert not any(PROGRESS.match(ln) or FINAL.match(ln) for ln in invoke_cli(*args).stderr.splitlines())
    monkeypatch.delenv("SIMPOOL_BENCH_QUIET")
    assert any(FINAL.match(ln) for ln in invoke_cli(*args).stderr.splitlines())  # -q does not outlive its command


def test_quiet_after_the_command_names_where_it_goes(data, tmp_path):
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "-q")
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "global option" in lines[0] and "simpool-bench -q COMMAND" in lines[0]


def test_version_is_the_package_version():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    res = invoke_cli("--version")
    assert res.exit_code == 0 and res.stdout == f"simpool-bench {declared}\n"
    assert simpool_bench.__version__ == declared


def test_random_init_weights_are_seeded_and_leave_the_callers_rng_alone():
    import torch

    from simpool_bench.api import ModelOptions, load_model

    opts = ModelOptions(arch="vit_tiny_patch16_224", img_size=32, num_classes=3, random_init=True)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = load_model(opts)[0].state_dict()
    assert torch.equal(torch.rand(3), expected)
    second = load_model(opts)[0].state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_table_from_before_the_flag_still_reads(data, tmp_path):
    from simpool_bench.results.store import read_run

    out = tmp_path / "run"
    res = invoke_cli(*_args("classify", data, out), "--model", "resnet18", "--random-init", "--num-classes", "3", "--out", out)
    assert res.exit_code == 0, res.output
    old = pd.read_csv(out / "results.csv")
    for fmt, flag in (("random-init", True), ("official-supervised", False)):
        path = tmp_path / f"old-{fmt}.csv"
        schema2 = old.drop(columns=["random_init", "protocol", "transform", "k"]).assign(checkpoint_format=fmt, schema_version=2)
        schema2.to_csv(path, index=False)
        assert read_run(path)["random_init"].tolist() == [flag] * len(old)


def _commands(command, path=()):
    """(path, click command) of every leaf command under ``command`` (a group has ``commands``)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_every_command_summary_is_one_paragraph_line():
    """The first paragraph of a command's help is its summary in `--help`'s command list, and rich
    keeps its line breaks: `check`'s docstring, wrapped at 100 columns, printed 'or a changed' on
    one line and 'protocol/transform parameter' on the next."""
    leaves = list(_commands(typer.main.get_command(app)))
    assert len(leaves) >= 12
    broken = [" ".join(path) for path, c in leaves if "\n" in (c.help or "").strip().split("\n\n")[0]]
    assert broken == []


def test_help_shows_flags_without_a_type():
    """Typer 0.29 wrote `--v1 <bool>` in --help, as if the flag took a value (`--v1 true` is then
    an error); flags now show no type, options with a value keep theirs."""
    leaves = [" ".join(path) for path, _ in _commands(typer.main.get_command(app))]
    for command in ["", *leaves]:
        res = invoke_cli(*command.split(), "--help")
        assert res.exit_code == 0, (command, res.output)
        assert "<bool>" not in res.output, command
    localize = invoke_cli("localize", "--help").output
    assert "<float>" in localize and "<int" in localize and "<path>" in localize


@pytest.mark.parametrize("command", ["classify", "localize", "discover"])
def test_data_is_a_required_option_of_the_run_commands(command):
    """--data was optional in localize's and discover's --help, though both refuse to run without it."""
    assert "[required]" in " ".join(invoke_cli(command, "--help").output.split()[:60])
    res = invoke_cli(command, "--device", "cpu")
    assert res.exit_code == 2 and said(res) == f"error: simpool-bench {command}: Missing option '--data' / '-d'. (see --help)", res.output


# ------------------------------------------------------------------- flag fuzzing: odd values
def _one_error_line(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in " ".join(res.output.split()), (needle, res.output)
    return lines[0]


@pytest.mark.parametrize("workers", [str(10**30), "1025"])
def test_workers_beyond_the_most_is_one_error_line_not_a_fork_storm(data, tmp_path, workers):
    # before: every value >= 0 was taken and DataLoader started that many processes (10**30: it
    # forked until the machine ran out of processes)
    args = [a for a in _args("classify", data, tmp_path / "out") if a not in ("-j", "0")]
    res = invoke_cli(*args, "--checkpoint", data["ckpt"], "--workers", workers, "--out", tmp_path / "out")
    _one_error_line(res, "--workers", "less than or equal to 1024")
    assert not (tmp_path / "out").exists()


def test_workers_beyond_the_batches_start_one_process_per_batch(data, tmp_path, monkeypatch):
    from simpool_bench.engine import runner

    asked: list[int] = []
    real = runner.DataLoader

    def loader(*args, num_workers=0, prefetch_factor=None, **kwargs):
        asked.append(num_workers)
        return real(*args, num_workers=0, **kwargs)  # decode here: the test counts, it starts nothing

    monkeypatch.setattr(runner, "DataLoader", loader)
    monkeypatch.setattr(runner, "usable_workers", lambda n: n)
    args = [a for a in _args("classify", data, tmp_path) if a not in ("-j", "0")]
    res = invoke_cli(*args, "--checkpoint", data["ckpt"], "--batch-size", "2", "--workers", "1024")
    assert res.exit_code == 0, res.output
    n_images = sum(1 for p in data["folder"].rglob("*.jpg"))
    assert asked == [math.ceil(n_images / 2)]  # 5 images, batches of 2: 3 batches, 3 workers (not 1024)


@pytest.mark.parametrize("flag", ["--resize", "--crop"])
def test_a_resize_or_crop_no_image_can_have_is_one_error_line(data, tmp_path, flag):
    # before: 10**30 reached PIL's resize, an OverflowError traceback after the model had loaded
    huge = str(10**30)
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], flag, huge, "--out", tmp_path / "out")
    _one_error_line(res, f"{flag} {huge}: expected a whole number of pixels >= 1 and <= 32768")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_empty_device_is_one_error_line_not_auto(data, tmp_path):
    # before: --device '' ran as --device auto (a GPU where there is one), while ' ' was refused
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--device", "", "--out", tmp_path / "out")
    _one_error_line(res, "--device '' is not a device name (expected auto, cpu, cuda, cuda:N, mps)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, flag",
    [
        ("classify", "--out"),
        ("classify", "--data"),
        ("discover", "--checkpoint"),
        ("inspect", "checkpoint"),
        ("compare", "runs"),
        ("compare", "--markdown"),
        ("compare", "--csv"),
        ("check", "--baseline"),
        ("check", "--summary"),
    ],
)
def test_an_empty_path_is_one_error_line_not_the_current_folder(data, tmp_path, monkeypatch, command, flag):
    # before: typer made Path('') of it, the current folder: --out '' wrote the run's files there
    # (the output said 'wrote ./'), --data '' read it; compare --markdown/--csv '' and check
    # --summary '' ended in a traceback (ValueError: PosixPath('.') has an empty name)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    run = tmp_path / "run"
    if command in ("compare", "check"):
        assert invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--out", run).exit_code == 0
    args = {
        "classify": [*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"]],
        "discover": [*_args("discover", data, tmp_path), "--checkpoint", data["ckpt"]],
        "inspect": ["inspect"],
        "compare": ["compare", run],
        "check": ["check", run, *(["--baseline", run / "results.csv"] if flag == "--summary" else [])],
    }[command]
    if flag in ("--markdown", "--csv"):
        args.append(run)
    res = invoke_cli(*args, *([flag] if flag.startswith("--") else []), "")
    _one_error_line(res, f"Invalid value for '{flag}'", "'' is not a path (for the current folder, write .)")
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("command", ["localize", "discover"])
def test_an_empty_data_label_is_one_error_line_as_a_blank_one_is(data, tmp_path, command):
    # before: '' was read as "not given" and the table said --dataset's name, while ' ' was refused
    res = invoke_cli(*_args(command, data, tmp_path), "--checkpoint", data["ckpt"], "--data-label", "", "--out", tmp_path / "out")
    _one_error_line(res, "--data-label '': expected a name without spaces around it or line breaks")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["classify", "discover"])
@pytest.mark.parametrize("where", ["absolute", "up"])
def test_a_split_that_is_a_path_outside_data_is_one_error_line(data, tmp_path, command, where):
    # before: the run read data / '/abs/folder', i.e. /abs/folder itself (Path's join), as the
    # split (classify: an ImageFolder; discover: ImageSets/Main/<split>.txt); '..' climbed out of
    # --data the same way. Both point at real data here, so that only the new check refuses them.
    if command == "classify":
        split = str(data["folder"]) if where == "absolute" else f"../{data['folder'].name}"
    else:
        listed = data["voc"] / "ImageSets" / "Main" / "trainval"
        split = str(listed) if where == "absolute" else f"../../../{data['voc'].name}/ImageSets/Main/trainval"
    res = invoke_cli(*_args(command, data, tmp_path), "--checkpoint", data["ckpt"], "--split", split, "--out", tmp_path / "out")
    _one_error_line(res, f"--split {split!r}: expected a split name under --data (e.g. val, test), not a path outside it")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command, dataset, flags, named",
    [
        ("extract", "voc07", ["--metadata", "META"], "--metadata"),
        ("visualize", "voc07", ["--metadata", "META"], "--metadata"),
        ("extract", "cub", ["--no-hard"], "--no-hard"),
        ("extract", "cub", ["--annotations", "CKPT", "--list", "CKPT"], "--annotations and --list"),
        ("visualize", "folder", ["--metadata", "META", "--no-hard"], "--metadata and --no-hard"),
    ],
)
def test_a_data_flag_the_dataset_does_not_read_is_one_error_line(data, tmp_path, command, dataset, flags, named):
    # before: extract/visualize ran and ignored it (e.g. --dataset voc07 --metadata M: exit 0)
    root = {"voc07": data["voc"], "cub": data["wsol"].image_root, "folder": data["folder"]}[dataset]
    meta = ["--metadata", data["wsol"].metadata] if dataset == "cub" else []
    given = [{"META": str(data["wsol"].metadata), "CKPT": str(data["ckpt"])}.get(f, f) for f in flags]
    out = tmp_path / "out"
    res = invoke_cli(
        command,
        "--dataset",
        dataset,
        "--data",
        root,
        *meta,
        *given,
        "--checkpoint",
        data["ckpt"],
        "--device",
        "cpu",
        "-j",
        "0",
        "--out",
        out,
    )
    _one_error_line(res, f"{named}: --dataset {dataset} does not read {'them' if ' and ' in named else 'it'}; drop {named}")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("suffix", [".pth.tar", ".zip", ".xz"])
def test_curves_of_a_file_named_as_an_archive_is_one_error_line(data, tmp_path, suffix):
    # before: pandas guessed the compression from the name: tarfile.ReadError (or zipfile's,
    # lzma's), a traceback; the same bytes under another name were one error line
    path = tmp_path / f"curve{suffix}"
    path.write_bytes(data["ckpt"].read_bytes()[:4096])
    res = invoke_cli("visualize", "--curves", path, "--out", tmp_path / "out")
    _one_error_line(res, f"{path}: not a readable CSV")


def test_curves_of_a_damaged_csv_is_one_error_line(data, tmp_path):
    # before: pandas' message (which ends in a line break) went into the error as it was: two lines
    path = tmp_path / "boxacc_curve.csv"
    path.write_text("threshold,boxacc_50\n0.1,2\n0.2,3,4\n")
    res = invoke_cli("visualize", "--curves", path, "--out", tmp_path / "out")
    _one_error_line(res, f"{path}: not a readable CSV (Error tokenizing data. C error: Expected 2 fields in line 3, saw 3)")


@pytest.mark.parametrize("device", ["meta", "xla", "XPU"])
def test_a_device_type_the_runs_cannot_use_is_one_error_line(data, tmp_path, device):
    # before: torch.device() took the name, then the run failed inside torch: meta 'Cannot copy
    # out of meta tensor' (NotImplementedError), xla 'PyTorch is not linked with support' (RuntimeError)
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--device", device, "--out", tmp_path / "out")
    _one_error_line(res, f"--device '{device.lower()}': not a device the runs use (expected auto, cpu, cuda, cuda:N, mps)")
    assert not (tmp_path / "out").exists()


def test_a_crop_pct_that_resizes_beyond_the_largest_side_is_one_error_line(data, tmp_path):
    # before: (0, 1] was all that was checked: 1e-300 resized the short side to 3.2e301 pixels, an
    # OverflowError in PIL's resize (a traceback)
    crop = 32  # the tiny ViT's input size (conftest's TINY_VIT_KWARGS)
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--crop-pct", "1e-300", "--out", tmp_path / "out")
    _one_error_line(res, f"--crop-pct 1e-300: resizes the short side to {crop / 1e-300:.4g} pixels", "expected at most 32768")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.transforms import classification_config

    cfg = {"input_size": (3, crop, crop), "crop_pct": crop / 32768, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    assert classification_config(cfg)["crop_pct"] == crop / 32768  # a 32768-pixel short side: taken
    with pytest.raises(SimpoolBenchError, match=r"resizes the short side to 3\.277e\+04 pixels"):
        classification_config({**cfg, "crop_pct": crop / 32770})


def test_compare_and_check_never_write_over_what_they_read_or_one_output_over_another(data, tmp_path):
    # before: compare RUN --csv RUN/results.csv replaced the run's results with the comparison
    # table (exit 0; the run then failed its manifest check), check --summary RUN/results.parquet
    # the same, and --markdown X --latex X wrote X twice, keeping only the LaTeX
    run = tmp_path / "run"
    assert invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--out", run).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    res = invoke_cli("compare", run, "--csv", run / "results.csv")
    _one_error_line(res, f"--csv {run / 'results.csv'}: a results file this command reads ({run}); write it elsewhere")
    res = invoke_cli("compare", tmp_path, "--markdown", run / "results.json")  # a folder of run folders
    _one_error_line(res, f"--markdown {run / 'results.json'}: a results file this command reads ({tmp_path})")
    res = invoke_cli("check", run, "--baseline", run / "results.csv", "--summary", run / "results.parquet", "--no-github")
    _one_error_line(res, f"--summary {run / 'results.parquet'}: a results file this command reads ({run})")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    same = tmp_path / "table.txt"
    res = invoke_cli("compare", run, "--markdown", same, "--latex", same)
    _one_error_line(res, f"--markdown and --latex are both {same}: give each its own file")
    assert not same.exists()
    res = invoke_cli("compare", run, "--markdown", run / "table.md")  # another name in a run folder: written
    assert res.exit_code == 0 and (run / "table.md").read_text().startswith("|")


@pytest.mark.parametrize("interval", ["1e-9", "0.00009"])
def test_an_interval_of_more_thresholds_than_a_run_can_make_is_one_error_line(data, tmp_path, interval):
    # before: any step in (0, 1) was taken: 1e-9 built np.arange(0, 1, 1e-9) (8 GB) and a contour
    # search per threshold and image, a run that never ended
    step = float(interval)
    n = len(np.arange(0, 1, step)) if step > 1e-6 else math.ceil(1 / step)  # (np.arange of 1e-9: 8 GB)
    assert n > 10_000
    res = invoke_cli(*_args("localize", data, tmp_path), "--checkpoint", data["ckpt"], "--interval", interval, "--out", tmp_path / "out")
    _one_error_line(res, f"--interval {step:g}: {n:,} thresholds; expected a step >= 0.0001 (wsolevaluation: 0.001 or 0.01)")
    assert not (tmp_path / "out").exists()


def test_a_dist_timeout_no_process_group_can_take_is_one_error_line(data, tmp_path, monkeypatch):
    # before: only > 0 was checked; under torchrun 1e30 s overflowed the process group's
    # timedelta ('OverflowError: Python int too large to convert to C int'), a traceback
    import datetime

    with pytest.raises(OverflowError):
        datetime.timedelta(seconds=1e30)
    res = invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--dist-timeout", "1e30", "--out", tmp_path / "out")
    _one_error_line(res, "--dist-timeout=1e+30: expected a number of seconds > 0 and <= 1e+09 (default 600)")
    assert not (tmp_path / "out").exists()
    from simpool_bench.engine.distributed import dist_timeout_s
    from simpool_bench.errors import SimpoolBenchError

    monkeypatch.setenv("SIMPOOL_BENCH_DIST_TIMEOUT", "1e30")  # what torchrun's ranks read without the flag
    with pytest.raises(SimpoolBenchError, match=r"SIMPOOL_BENCH_DIST_TIMEOUT='1e30': expected a number of seconds > 0 and <= 1e\+09"):
        dist_timeout_s()
    assert dist_timeout_s(1e9) == 1e9  # the longest is still taken


def test_visualize_lost_compat_with_method_lost_is_one_error_line_as_in_discover(data, tmp_path):
    # before: visualize --method lost --lost-compat drew LOST's boxes and ignored --lost-compat
    # (dino_seg's defaults are for the attention-map box); discover already refused it
    args = (
        "--dataset",
        "voc07",
        "--data",
        data["voc"],
        "--checkpoint",
        data["ckpt"],
        "--device",
        "cpu",
        "-j",
        "0",
        "--method",
        "lost",
        "--lost-compat",
    )
    expected = "--lost-compat is not used by this run: only --method attn takes LOST dino_seg's defaults"
    _one_error_line(invoke_cli("discover", *args), expected)
    res = invoke_cli("visualize", *args, "--out", tmp_path / "out")
    _one_error_line(res, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["", ",", "simpool,,rollout", "simpool,simpool"])
def test_visualize_attn_source_list_with_an_empty_or_repeated_name_is_one_error_line(data, tmp_path, value):
    # before: '' drew the default source, 'simpool,,rollout' dropped the empty name, 'simpool,simpool'
    # drew one column twice (all exit 0), and ',' said 'no model or map store to draw'
    res = invoke_cli(*_args("visualize", data, tmp_path / "out"), "--checkpoint", data["ckpt"], "--n", "1", "--attn-source", value)
    _one_error_line(res, f"--attn-source {value!r}: expected distinct map sources separated by commas, e.g. simpool,rollout")
    assert not (tmp_path / "out").exists()
    ok = invoke_cli(
        *_args("visualize", data, tmp_path / "ok"), "--checkpoint", data["ckpt"], "--n", "1", "--attn-source", "simpool,rollout"
    )
    assert ok.exit_code == 0, ok.output
    assert sorted(pd.read_csv(tmp_path / "ok" / "selection.csv")["column"].unique()) == ["tiny: rollout", "tiny: simpool"]


@pytest.mark.parametrize("command", ["suite validate", "check --tolerances"])
def test_a_toml_file_that_is_a_fifo_is_one_error_line_not_a_hang(data, tmp_path, command):
    # before: open() of the FIFO waited for a writer forever (the sweep killed it after 20 s); here a
    # thread writes to it after 10 s, so that without the check the test fails instead of hanging
    import os
    import threading
    import time

    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer() -> None:
        if stop.wait(10):
            return
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) when no one is reading
        except OSError:
            return
        os.write(fd, b"x = 1\n")
        os.close(fd)

    threading.Thread(target=writer, daemon=True).start()
    start = time.monotonic()
    if command == "suite validate":
        res, what = invoke_cli("suite", "validate", fifo), "suite file"
    else:
        run = tmp_path / "run"
        assert invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--out", run).exit_code == 0
        res, what = invoke_cli("check", run, "--baseline", run / "results.csv", "--tolerances", fifo, "--no-github"), "tolerances file"
    stop.set()
    _one_error_line(res, f"{what} {fifo}: not a regular file (a pipe, socket or device), expected a TOML file")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("flag", ["--markdown", "--summary"])
def test_an_output_file_that_is_a_fifo_is_one_error_line_and_stays_a_fifo(data, tmp_path, flag):
    # before: atomic_write renamed a regular file over it: a FIFO (or, for root, /dev/null or
    # /dev/stdout: --summary /dev/stdout) was replaced by a file, exit 0
    import os
    import stat

    fifo = tmp_path / "table.md"
    os.mkfifo(fifo)
    run = tmp_path / "run"
    assert invoke_cli(*_args("classify", data, tmp_path), "--checkpoint", data["ckpt"], "--out", run).exit_code == 0
    if flag == "--markdown":
        res = invoke_cli("compare", run, "--markdown", fifo)
    else:
        res = invoke_cli("check", run, "--baseline", run / "results.csv", "--summary", fifo, "--no-github")
    _one_error_line(res, f"cannot write {fifo}: not a regular file (a pipe, socket or device); give the path of a file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "table.md"]  # no temporary file left


def test_visualize_gives_cls_head_and_rollout_flags_to_their_own_column_only(data, tmp_path):
    """--attn-source simpool,rollout --rollout-fusion max: the rollout column takes the flag, the
    simpool column (which refuses it, as build_model refuses a flag its source does not use) is
    built without it; a flag that no column takes is one error line, before any data are read."""
    from simpool_bench.cli.map_commands import _column_options
    from simpool_bench.specs import ModelOptions

    opts = ModelOptions(arch="vit_tiny_patch16_224", cls_head=2, rollout_fusion="max", rollout_discard=0.5)
    got = [(o.attn_source, o.cls_head, o.rollout_fusion, o.rollout_discard) for o in _column_options(opts, ["simpool", "cls", "rollout"])]
    assert got == [("simpool", None, "mean", 0.0), ("cls", 2, "mean", 0.0), ("rollout", None, "max", 0.5)]
    assert [(o.attn_source, o.cls_head) for o in _column_options(opts, ["cls"])] == [("cls", 2)]  # one column: as given

    base = (*_args("visualize", data, tmp_path / "out"), "--checkpoint", data["ckpt"], "--n", "1")
    ok_args = (*_args("visualize", data, tmp_path / "ok"), "--checkpoint", data["ckpt"], "--n", "1")
    ok = invoke_cli(*ok_args, "--attn-source", "simpool,rollout", "--rollout-fusion", "max")
    assert ok.exit_code == 0, ok.output
    for flags, expected in (
        (
            ("--attn-source", "simpool,cls", "--rollout-discard", "0.5"),
            "--rollout-fusion/--rollout-discard applies to an --attn-source rollout column; --attn-source simpool,cls has none",
        ),
        (
            ("--attn-source", "simpool,rollout", "--cls-head", "0"),
            "--cls-head applies to an --attn-source cls column; --attn-source simpool,rollout has none",
        ),
        (("--attn-source", "simpool", "--rollout-fusion", "min"), "--rollout-fusion min applies to --attn-source rollout, not 'simpool'"),
    ):
        _one_error_line(invoke_cli(*base, *flags), expected)
        assert not (tmp_path / "out").exists()
