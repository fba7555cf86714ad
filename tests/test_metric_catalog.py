"""The metric catalog (``metrics.catalog``): accumulators name their metrics, and ``check``,
``compare`` and the renderers derive their known metrics, directions and tolerances from them."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from simpool_bench import results as R
from simpool_bench.finite import NONFINITE_METRIC, NonFiniteCounter
from simpool_bench.metrics import catalog
from simpool_bench.metrics.boxacc import BoxAccResult, BoxAccumulator
from simpool_bench.metrics.classification import KNNAccumulator, MemoryBank, TopKAccumulator
from simpool_bench.metrics.corloc import CorLocAccumulator

ACCUMULATORS = (TopKAccumulator, KNNAccumulator, BoxAccumulator, CorLocAccumulator, NonFiniteCounter)
# What evaluate/api write into a results table (read from their code), written out by hand.
WRITTEN = {
    "top1",
    "top5",
    "knn_top1",
    "knn_top5",
    "maxboxacc",
    "maxboxacc_v2",
    "maxboxacc_v1",
    "best_threshold",
    "top1_loc",
    "gt_known_loc",
    "corloc",
    "n_images",
    "n_failed",
    "n_nonfinite",
}


def _names(acc: type) -> set[str]:
    return {m.name for m in acc.METRICS}


def test_every_written_metric_is_named_by_one_accumulator_or_the_run_counts():
    declared = [m.name for a in ACCUMULATORS for m in a.METRICS] + [m.name for m in catalog.RUN_METRICS]
    assert len(declared) == len(set(declared))  # each metric has one owner
    assert set(declared) == WRITTEN == set(R.KNOWN_METRICS)
    assert NONFINITE_METRIC == "n_nonfinite" and _names(NonFiniteCounter) == {NONFINITE_METRIC}


def test_compute_names_only_declared_metrics():
    topk = TopKAccumulator(3)
    topk.update(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([1, 2]))
    assert set(topk.compute()) == _names(TopKAccumulator) == {"top1", "top5"}
    bank = MemoryBank.from_features(torch.eye(3), torch.tensor([0, 1, 2]))
    knn = KNNAccumulator(bank, ks=2)
    knn.update(torch.eye(3), torch.tensor([0, 1, 2]))
    assert set(knn.compute()) == _names(KNNAccumulator)
    corloc = CorLocAccumulator()
    corloc.update(np.array([[0, 0, 4, 4]]), [np.array([[0, 0, 4, 4]])])
    assert "corloc" in corloc.compute() and _names(CorLocAccumulator) == {"corloc"}
    # BoxAcc: the result's metric fields, plus maxboxacc_v1 (a V1 accumulator's maxboxacc@50)
    result_metrics = {f.name for f in fields(BoxAccResult)} & WRITTEN - {"n_images"}  # n_images: a run count
    assert result_metrics | {"maxboxacc_v1"} == _names(BoxAccumulator)


def test_check_derives_directions_and_tolerances_from_the_catalog():
    assert {m: d for m, d in R.METRIC_DIRECTIONS.items() if d != "higher"} == {
        "n_failed": "lower",
        "n_nonfinite": "lower",
        "n_images": "exact",
        "best_threshold": "exact",
    }
    assert R.DEFAULT_TOLERANCES["knn_top5"] == R.DEFAULT_TOLERANCES["top5"] == 0.1
    assert math.isinf(R.DEFAULT_TOLERANCES["best_threshold"]) and R.DEFAULT_TOLERANCES["corloc"] == 0.2
    # knn_top5 is a known metric: a tolerance key for it is accepted, and a drop beyond it regresses
    prov = R.Provenance(model="m", pool="cls", run_id="r")
    base = R.make_table(R.metric_rows("imagenet", "val", {"knn_top1": 70.0, "knn_top5": 90.0}), prov)
    run = R.make_table(R.metric_rows("imagenet", "val", {"knn_top1": 70.0, "knn_top5": 89.5}), prov)
    rep = R.check(run, base, tolerances={"knn_top5": 0.4})
    assert not rep.passed and [r.metric for r in rep.by_status("regressed")] == ["knn_top5"]
    assert R.check(run, base, tolerances={"knn_top5": 0.6}).passed
    with pytest.raises(Exception, match="unknown metric 'knn_top3'"):
        R.check(run, base, tolerances={"knn_top3": 1.0})


def test_labels_and_decimals_come_from_the_catalog():
    assert R.METRIC_LABELS["knn_top5"] == "k-NN Top-5" and R.METRIC_LABELS["maxboxacc_v2"] == "MaxBoxAccV2"
    assert [R.format_value(m, 3.14159) for m in ("best_threshold", "n_images", "n_failed", "n_nonfinite", "top1")] == [
        "3.142",
        "3",
        "3",
        "3",  # n_nonfinite counts images, as n_failed
        "3.14",
    ]
