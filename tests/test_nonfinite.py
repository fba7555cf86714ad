"""Non-finite numbers (``finite``): ``inspect`` names NaN weights; classify, localize, discover and
extract fail with one line saying how many images gave NaN/inf outputs, or, with
``--allow-nonfinite``, count them as misses and add an ``n_nonfinite`` row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.engine import EngineConfig
from simpool_bench.finite import describe_nonfinite, finite_rows, nonfinite_tensors
from simpool_bench.metrics.boxacc import BoxAccumulator

from conftest import build_image_folder, build_tiny_checkpoint, build_voc_dataset, build_wsol_dataset
from conftest import invoke_cli as invoke

pytestmark = pytest.mark.usefixtures("one_thread")
NAN_KEY = "gp.pool.wq.weight"


@pytest.fixture(scope="module")
def nan_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("nonfinite")
    good, _ = build_tiny_checkpoint(root / "good.pth.tar", seed=1)
    blob = torch.load(good, weights_only=False)
    blob["state_dict"][NAN_KEY][0, 0] = float("nan")
    blob["state_dict"][NAN_KEY][1, :3] = float("inf")
    bad = root / "nan.pth.tar"
    torch.save(blob, bad)
    return {
        "root": root,
        "good": good,
        "bad": bad,
        "wsol": build_wsol_dataset(root / "wsol", n=6, seed=2),
        "voc": build_voc_dataset(root / "voc", n=5, seed=2),
        "folder": build_image_folder(root / "folder", counts=(2, 2, 2)),
    }


def _one_error(res) -> str:
    """The run failed with exit 2 and exactly one line, the last, 'error: ...'; no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.output
    return errors[0]


def test_finite_rows_and_weight_report():
    x = torch.zeros(4, 2, 3)
    x[1, 0, 2] = float("nan")
    x[3, 1, 1] = float("-inf")
    assert finite_rows(x).tolist() == [True, False, True, False]
    assert finite_rows(x, torch.tensor([[0.0], [0.0], [float("inf")], [0.0]])).tolist() == [True, False, False, False]
    sd = {"a": torch.tensor([1.0, float("nan"), float("inf")]), "b": torch.ones(2), "c": torch.tensor([3])}
    assert nonfinite_tensors(sd) == [("a", 2)]
    assert describe_nonfinite(nonfinite_tensors(sd)) == "2 values in 1 tensors: a (2)"
    assert describe_nonfinite([]) == "none"


def test_inspect_names_the_nonfinite_tensor(nan_setup):
    res = invoke("inspect", nan_setup["bad"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"warning: non-finite weights (NaN or inf): 4 values in 1 tensors: {NAN_KEY} (4)" in text
    clean = invoke("inspect", nan_setup["good"])
    assert clean.exit_code == 0 and "non_finite" in clean.output and "warning" not in clean.output


@pytest.mark.parametrize("command", ["classify", "localize", "discover", "extract"])
def test_nonfinite_outputs_fail_with_one_line_or_count_as_misses(nan_setup, tmp_path, command):
    d = nan_setup
    data = {
        "classify": ["--data", d["folder"]],
        "localize": ["--data", d["wsol"].image_root, "--metadata", d["wsol"].metadata],
        "discover": ["--data", d["voc"]],
        "extract": ["--dataset", "cub", "--data", d["wsol"].image_root, "--metadata", d["wsol"].metadata],
    }[command]
    n = {"classify": 6, "localize": 6, "discover": 5, "extract": 6}[command]
    out = tmp_path / "out"
    args = [command, *data, "--checkpoint", d["bad"], "--device", "cpu", "-b", "4", "--out", out]
    line = _one_error(invoke(*args))
    assert f"{n} of {n} images gave non-finite" in line and "--allow-nonfinite" in line
    assert not list(out.glob("results.*")) and not list(out.rglob("*.tmp"))

    res = invoke(*args, "--allow-nonfinite")
    assert res.exit_code == 0, res.output
    if command == "extract":
        assert f"{n} maps hold NaN or inf" in " ".join(res.output.split())
        # and the readers of the stored maps fail the same way, or count misses with the flag
        line = _one_error(invoke("localize", *data[2:], "--maps", out, "--out", tmp_path / "loc"))
        assert f"{n} of {n} images gave non-finite maps in {out}" in " ".join(line.split())
        res = invoke("localize", *data[2:], "--maps", out, "--out", tmp_path / "loc", "--allow-nonfinite")
        assert res.exit_code == 0, res.output
        out = tmp_path / "loc"
    table = pd.read_csv(out / "results.csv")
    value = dict(zip(table.metric + table.iou_threshold.fillna(0).astype(int).astype(str), table.value))
    assert value["n_nonfinite0"] == n and value["n_images0"] == n
    headline = {"classify": "top10", "localize": "maxboxacc_v20", "discover": "corloc0", "extract": "maxboxacc_v20"}[command]
    assert value[headline] == 0.0  # every image a miss


def test_nonfinite_maps_of_some_images_are_misses(nan_setup):
    """Two of six images get NaN maps: MaxBoxAcc is the other four's correct counts over all six."""
    records = api.read_localization_data("cub", nan_setup["wsol"].image_root, nan_setup["wsol"].metadata)
    model, _ = api.load_model(api.ModelOptions(checkpoint=nan_setup["good"]))
    bad = {1, 4}

    class Poisoned(torch.nn.Module):  # NaN maps for the images of dataset index 1 and 4 (batch size 1)
        def __init__(self, inner):
            super().__init__()
            self.inner, self.seen = inner, 0
            for k in ("arch", "pool", "attn_source", "data_config", "num_classes", "stride"):
                setattr(self, k, getattr(inner, k))

        def forward(self, x, target=None):
            out = self.inner(x, target=target)
            if self.seen in bad:
                out.attn[:] = float("nan")
            self.seen += x.shape[0]
            return out

    config = EngineConfig(device="cpu", batch_size=1, progress=False, allow_nonfinite=True)
    outcome = ev.localize(Poisoned(model), records, config, dataset="cub", split="test")
    assert outcome.n_nonfinite == 2 and outcome.n_images == 6

    # independently: the four finite images' maps through a fresh accumulator, counts over all six
    from simpool_bench.data.images import load_rgb
    from simpool_bench.transforms import wsol_transform

    tf = wsol_transform(model.data_config["mean"], model.data_config["std"])
    keep = [i for i in range(6) if i not in bad]
    with torch.inference_mode():
        maps = np.stack([model(tf(load_rgb(records[i].path))[None], target=torch.tensor([records[i].label])).attn[0].numpy() for i in keep])
    acc = BoxAccumulator()
    acc.update(maps, [ev.wsol_gt_boxes([records[i]])[0] for i in keep])
    want = {iou: float((acc.correct.numpy().T * 100.0 / 6.0)[:, j].max()) for j, iou in enumerate(acc.iou_thresholds)}
    got = {r["iou_threshold"]: r["value"] for r in outcome.rows if r["metric"] == "maxboxacc"}
    assert got == want and max(want.values()) > 0

    config = EngineConfig(device="cpu", batch_size=1, progress=False)  # without the flag: one clear error
    from simpool_bench.errors import SimpoolBenchError

    with pytest.raises(SimpoolBenchError, match=r"^2 of 6 images gave non-finite maps"):
        ev.localize(Poisoned(model), records, config, dataset="cub", split="test")


def test_a_finite_map_with_nonfinite_logits_is_a_nonfinite_image():
    """localize with a classifier scores Top-1 Loc from the logits: an image whose logits hold NaN
    is non-finite (a miss, counted) even where its map is finite; its map is never scored."""
    from pathlib import Path
    from types import SimpleNamespace

    from simpool_bench.data.records import Record
    from simpool_bench.engine import Batch
    from simpool_bench.tasks.wsol import WsolTask

    records = [Record(f"{i}", Path(f"{i}.jpg"), i, 20, 20, np.array([[0.0, 0.0, 20.0, 20.0]])) for i in range(2)]
    task = WsolTask(records, interval=0.1)
    accs = task.accumulators()
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, float("nan"), 0.0]])
    out = SimpleNamespace(attn=torch.rand(2, 7, 7) + 0.1, logits=logits)
    batch = Batch(np.array([0, 1]), np.array([True, True]), torch.zeros(2, 3, 224, 224), out)
    task.model_step(SimpleNamespace(num_classes=3))(batch, accs)
    assert accs["nonfinite"].compute() == 1
    assert accs["per_image"].compute()["nonfinite"].tolist() == [False, True]
    assert accs["boxacc"].compute().top1_loc == 50.0  # image 0: its class and its whole-image box


def test_weight_report_counts_complex_and_single_values_and_names_five_tensors():
    """A complex tensor is checked too, a tensor with one NaN is reported, the report names five
    tensors and counts the rest."""
    sd = {"z": torch.tensor([1 + 1j, complex(float("nan"), 0.0)]), "one": torch.tensor([float("inf"), 0.0]), "ints": torch.tensor([1, 2])}
    assert nonfinite_tensors(sd) == [("z", 1), ("one", 1)]
    five = [(f"t{i}", i + 1) for i in range(5)]
    assert describe_nonfinite(five) == "15 values in 5 tensors: t0 (1), t1 (2), t2 (3), t3 (4), t4 (5)"
    six = [*five, ("t5", 6)]
    assert describe_nonfinite(six) == "21 values in 6 tensors: t0 (1), t1 (2), t2 (3), t3 (4), t4 (5), ... (1 more)"


def test_finite_rows_checks_every_value_of_every_given_tensor():
    x = torch.zeros(3, 2, 2)
    x[0, 1, 1] = float("inf")  # the last value of row 0 only
    x[2, 0, 0] = float("-inf")
    assert finite_rows(x).tolist() == [False, True, False]
    assert finite_rows(None, x, None).tolist() == [False, True, False]  # None entries, first too, are skipped
    assert finite_rows(np.array([1.0, np.nan, 2.0]), x).tolist() == [False, False, False]
    with pytest.raises(ValueError, match="finite_rows: no tensor given"):
        finite_rows(None)


def test_the_nonfinite_counter_sums_and_one_image_fails_the_run_unless_allowed():
    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.finite import NonFiniteCounter, check_nonfinite

    counter = NonFiniteCounter()
    counter.update(3)
    counter.update(2)
    assert counter.compute() == 5
    with pytest.raises(SimpoolBenchError) as err:
        check_nonfinite(1, 10, "maps", allow=False)
    assert str(err.value) == (
        "1 of 10 images gave non-finite maps (NaN or inf): the weights may hold NaN (see `simpool-bench inspect`); "
        "--allow-nonfinite counts them as misses and reports n_nonfinite"
    )
    check_nonfinite(1, 10, "maps", allow=True)
    check_nonfinite(0, 10, "maps", allow=False)
