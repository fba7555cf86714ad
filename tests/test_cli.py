"""End-to-end CLI: classify on generated data, inspect, compare, check, and one-line errors."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from simpool_bench.models import build_model
from simpool_bench.transforms import classification_transform

from conftest import CLASS_NAMES, build_image_folder, build_tiny_checkpoint
from conftest import invoke_cli as _invoke

TINY = dict(img_size=32, embed_dim=48, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny supervised SimPool ViT saved in the official timm train.py layout, and an ImageFolder."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = build_model("vit_tiny_patch16_224", num_classes=3, **TINY).eval()
    ckpt = root / "tiny.pth.tar"
    sd = model.state_dict()
    torch.save(
        {
            "state_dict": sd,
            "state_dict_ema": sd,
            "epoch": 3,
            "arch": "vit_tiny_patch16_224",
            "args": argparse.Namespace(model="vit_tiny_patch16_224", gp="simpool", gamma=1.25, model_kwargs=TINY),
        },
        ckpt,
    )
    rng = np.random.default_rng(0)
    data = root / "data"
    for c in ("ant", "bee", "cat"):
        (data / "val" / c).mkdir(parents=True)
        for i in range(5):
            arr = rng.integers(0, 255, size=(36 + i, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(data / "val" / c / f"{i}.png")
    return model, ckpt, data, root


def test_help_lists_every_command_with_one_line():
    res = _invoke("--help")
    assert res.exit_code == 0
    for cmd in ("classify", "localize", "discover", "inspect", "compare", "check", "datasets"):
        assert cmd in res.output


def test_classify_matches_independent_top1(tiny, tmp_path):
    model, ckpt, data, _ = tiny
    out = tmp_path / "run"
    res = _invoke(
        "classify",
        "--data",
        data,
        "--split",
        "val",
        "--checkpoint",
        ckpt,
        "--out",
        out,
        "--device",
        "cpu",
        "-b",
        "4",
        "--formats",
        "json,md,latex",
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    for name in ("results.parquet", "results.json", "results.md", "results.tex"):
        assert (out / name).exists()
    # independent: the in-memory model, the same timm transform, images in ImageFolder order
    tf = classification_transform(model.data_config)
    hits1 = hits3 = n = 0
    for label, c in enumerate(("ant", "bee", "cat")):
        for i in range(5):
            x = tf(Image.open(data / "val" / c / f"{i}.png").convert("RGB"))[None]
            with torch.no_grad():
                logits = model(x).logits[0]
            hits1 += int(logits.argmax()) == label
            hits3 += label in logits.topk(3).indices.tolist()
            n += 1
    top1 = table.loc[table.metric == "top1", "value"].item()
    assert top1 == pytest.approx(100.0 * hits1 / n, abs=1e-9)
    assert table.loc[table.metric == "top5", "value"].item() == pytest.approx(100.0 * hits3 / n)
    assert table.loc[table.metric == "n_images", "value"].item() == n
    assert set(table["checkpoint_format"]) == {"official-supervised"}


def test_classify_skips_undecodable_image_or_fails_with_strict(tiny, tmp_path):
    _, ckpt, data, root = tiny
    bad = root / "bad"
    import shutil

    shutil.copytree(data / "val", bad / "val")
    (bad / "val" / "ant" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "skip"
    with pytest.warns(RuntimeWarning, match=r"cannot decode image .*broken\.png.*counted as failed and skipped"):
        # the warning comes from this process, whatever decodes (the engine names failed images)
        res = _invoke("classify", "--data", bad, "--checkpoint", ckpt, "--out", out, "--device", "cpu", "-j", "2")
    assert res.exit_code == 0
    table = pd.read_csv(out / "results.csv")
    assert table.loc[table.metric == "n_failed", "value"].item() == 1
    assert table.loc[table.metric == "n_images", "value"].item() == 15
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # --strict fails instead of warning
        res = _invoke("classify", "--data", bad, "--checkpoint", ckpt, "--device", "cpu", "--strict", "--no-resume")
    assert res.exit_code == 2
    assert "broken.png" in res.output
    assert "Traceback" not in res.output  # the worker's error arrives as one line


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "nonexistent_net", "--random-init"], "nonexistent_net"),
        (["--checkpoint", "/no/such/file.pth"], "/no/such/file.pth"),
        (["--model", "vit_tiny_patch16_224", "--random-init", "--pool", "cls", "--gamma", "abc"], "--gamma"),
        (["--model", "resnet18", "--random-init", "--dist-timeout", "0"], "--dist-timeout=0.0: expected a number of seconds > 0"),
    ],
)
def test_bad_model_flags_give_one_line(tiny, args, needle):
    _, _, data, _ = tiny
    res = _invoke("classify", "--data", data, "--device", "cpu", *args)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_class_count_mismatch_and_empty_dataset(tiny, tmp_path):
    _, ckpt, data, _ = tiny
    res = _invoke("classify", "--data", data, "--model", "resnet18", "--random-init", "--num-classes", "2", "--device", "cpu")
    assert res.exit_code == 2 and "3 classes" in res.output and "2" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _invoke("classify", "--data", empty, "--checkpoint", ckpt, "--device", "cpu")
    assert res.exit_code == 2 and "error:" in res.output


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/simpool_bench_pwned_marker",))


def test_malicious_pickle_is_refused(tiny, tmp_path):
    _, _, data, _ = tiny
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"state_dict": _Evil()}, fh)
    if os.path.exists("/tmp/simpool_bench_pwned_marker"):
        os.remove("/tmp/simpool_bench_pwned_marker")
    res = _invoke("classify", "--data", data, "--checkpoint", evil, "--device", "cpu")
    assert res.exit_code == 2 and "--trust-checkpoint" in res.output
    assert not os.path.exists("/tmp/simpool_bench_pwned_marker")


def test_inspect_reports_format_and_arch(tiny):
    _, ckpt, _, _ = tiny
    res = _invoke("inspect", ckpt)
    assert res.exit_code == 0
    assert "official-supervised" in res.output and "vit_tiny_patch16_224" in res.output
    # in a file or pipe (as here) the whole sha256 stands on one line, to copy or grep (it was cut at 80 columns with '…')
    digest = hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()
    assert any(digest in line and "sha256" in line for line in res.output.splitlines()), res.output


def test_run_log_keeps_the_provenance_line_whole(tiny, tmp_path):
    """In a log (stdout not a terminal) the provenance stands whole on one line under the table: the
    checkpoint's path and sha256 prefix, the run id (a caption folded them mid-word at 80 columns)."""
    _, ckpt, data, _ = tiny
    res = _invoke("classify", "--data", data, "--checkpoint", ckpt, "--device", "cpu", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    run = pd.read_csv(tmp_path / "r" / "results.csv")
    sha, run_id = run["checkpoint_sha256"].iloc[0][:12], run["run_id"].iloc[0]
    line = [ln for ln in res.output.splitlines() if ln.startswith("model ")]
    assert len(line) == 1 and f"checkpoint {ckpt}, sha256 {sha}" in line[0] and f"run {run_id}," in line[0], res.output


def test_compare_and_check_exit_codes(tiny, tmp_path):
    _, ckpt, data, _ = tiny
    out = tmp_path / "base"
    assert _invoke("classify", "--data", data, "--checkpoint", ckpt, "--out", out, "--device", "cpu").exit_code == 0
    res = _invoke("compare", out / "results.parquet", out / "results.csv", "--markdown", tmp_path / "cmp.md")
    assert res.exit_code == 0 and (tmp_path / "cmp.md").exists()
    # same run against itself: passes
    assert _invoke("check", out / "results.csv", "--baseline", out / "results.csv", "--no-github").exit_code == 0
    # a baseline 5 points higher on top1: regression, exit 1, summary names the metric
    base = pd.read_csv(out / "results.csv")
    base.loc[base.metric == "top1", "value"] += 5.0
    high = tmp_path / "high.csv"
    base[["dataset", "split", "metric", "iou_threshold", "value"]].to_csv(high, index=False)
    res = _invoke("check", out / "results.csv", "--baseline", high, "--no-github")
    assert res.exit_code == 1 and "top1" in res.output
    # a missing baseline file: usage/data error, exit 2
    assert _invoke("check", out / "results.csv", "--baseline", tmp_path / "nope.csv", "--no-github").exit_code == 2


# ------------------------------------------------------------------------- --per-class, --subset
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Four classes of three images and a tiny GAP ViT (seed 3) whose predictions differ from class to
    class: per-class top-1 is not the same read backwards, so a class named wrongly shows."""
    root = tmp_path_factory.mktemp("mixed")
    data = build_image_folder(root / "data", counts=(3, 3, 3, 3))
    ckpt, model = build_tiny_checkpoint(root / "gap.pth.tar", pool="gap", num_classes=4, seed=3)
    tf = classification_transform(model.data_config)  # what run_classify builds with no --resize/--crop
    pred = {}  # (class name, file name) -> predicted class index, one image at a time
    for name in CLASS_NAMES[:4]:
        for f in sorted((data / name).iterdir()):
            with torch.no_grad():
                pred[name, f.name] = int(model(tf(Image.open(f).convert("RGB"))[None]).logits[0].argmax())
    return data, ckpt, pred


def _top1(pred, keep=lambda name, file: True):
    """{class name: top-1 in percent} of the predictions kept; the label is the class's index in
    the sorted folder names (ImageFolder)."""
    names = sorted({name for name, _ in pred})
    per = {n: [pred[n, f] == names.index(n) for m, f in sorted(pred) if m == n and keep(n, f)] for n in names}
    return {n: 100.0 * sum(hits) / len(hits) for n, hits in per.items()}


def test_classify_per_class_csv_equals_independent_per_class_top1(mixed, tmp_path):
    data, ckpt, pred = mixed
    expected = _top1(pred)
    values = [expected[n] for n in sorted(expected)]
    assert values != values[::-1] and len(set(values)) > 1, values  # names reversed or shifted would show
    out = tmp_path / "run"
    res = _invoke("classify", "--data", data, "--checkpoint", ckpt, "--device", "cpu", "-j", "0", "--per-class", "--out", out)
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(out / "per_class.csv")
    assert list(rows.columns) == ["class_index", "class_name", "top1"]
    assert sorted(rows["class_name"]) == sorted(expected) and len(rows) == len(expected)
    assert dict(zip(rows["class_name"], rows["top1"])) == pytest.approx(expected, abs=1e-9)  # joined by class name
    assert [sorted(expected).index(n) for n in rows["class_name"]] == rows["class_index"].tolist()  # ImageFolder's labels
    table = pd.read_csv(out / "results.csv")
    assert table.loc[table.metric == "top1", "value"].item() == pytest.approx(np.mean(values))  # 3 images in every class


def test_classify_subset_is_the_first_images_of_each_class(mixed, tmp_path):
    """--subset 1 (ImageNet-20%'s first N per class) == a run on a folder of only the first image
    (sorted file order) of each class == the in-memory model's top-1 on those images."""
    data, ckpt, pred = mixed
    only = tmp_path / "first"
    for cls in sorted(p.name for p in data.iterdir()):
        (only / cls).mkdir(parents=True)
        shutil.copy2(sorted((data / cls).iterdir())[0], only / cls)
    first = {(n, sorted(f for m, f in pred if m == n)[0]) for n, _ in pred}
    per = _top1(pred, keep=lambda n, f: (n, f) in first)
    expected_top1 = float(np.mean(list(per.values())))  # one image per class: the mean of 0s and 100s
    assert expected_top1 != pytest.approx(np.mean(list(_top1(pred).values())))  # the subset changes the number

    def run(folder, *flags):
        out = tmp_path / f"run_{folder.name}{'_'.join(flags)}"
        res = _invoke("classify", "--data", folder, "--checkpoint", ckpt, "--device", "cpu", "-j", "0", *flags, "--out", out)
        assert res.exit_code == 0, res.output
        return pd.read_csv(out / "results.csv").set_index("metric")["value"]

    sub, ref = run(data, "--subset", "1"), run(only)
    assert sub["n_images"] == ref["n_images"] == len(first) == 4
    assert sub["top1"] == ref["top1"] == pytest.approx(expected_top1, abs=1e-9)
    assert sub["top5"] == ref["top5"]


def test_classify_top5_over_six_classes_equals_timm_accuracy(tmp_path):
    """With 3 classes top-5 is always 100; over 6 classes (top-5 misses the lowest-scored class)
    the command's top-1/top-5 equal timm.utils.accuracy on the model's own logits."""
    from timm.utils import accuracy

    data = build_image_folder(tmp_path / "data" / "val", counts=(4,) * 6)
    ckpt, model = build_tiny_checkpoint(tmp_path / "six.pth.tar", pool="gap", num_classes=6, seed=5)
    out = tmp_path / "run"
    res = _invoke("classify", "--data", data.parent, "--checkpoint", ckpt, "--out", out, "--device", "cpu", "-b", "5")
    assert res.exit_code == 0, res.output
    tf = classification_transform(model.data_config)
    x = torch.stack([tf(Image.open(p).convert("RGB")) for c in CLASS_NAMES for p in sorted((data / c).iterdir())])
    target = torch.arange(6).repeat_interleave(4)
    with torch.no_grad():  # timm gives float32 percents: back to hit counts
        hits1, hits5 = (round(float(a) * 24 / 100) for a in accuracy(model(x).logits, target, topk=(1, 5)))
    table = pd.read_csv(out / "results.csv")
    assert table.loc[table.metric == "top1", "value"].item() == 100.0 * hits1 / 24
    assert table.loc[table.metric == "top5", "value"].item() == 100.0 * hits5 / 24
    assert hits1 < hits5 < 24  # the top-5 counting is exercised: some images miss it
