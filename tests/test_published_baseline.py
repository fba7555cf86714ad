"""``suites/simpool_paper_published``: the official SimPool READMEs' numbers laid out as a baseline
folder of ``suites/simpool_paper.toml``. No checkpoint or ImageNet copy is here: these tests check
that the folder lines up with the suite (every baseline is an entry the suite runs, with the rows
that entry writes) and that its tolerances gate those rows as its README says."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simpool_bench.results import check, load_tolerances, read_baseline
from simpool_bench.suite import load_suite, shipped_suite
from simpool_bench.suite_run import check_baseline_folder

PUBLISHED = Path(__file__).resolve().parents[1] / "suites" / "simpool_paper_published"


@pytest.fixture(scope="module")
def entries(monkeypatch_module):
    for var in ("SIMPOOL_CKPT", "IMAGENET", "WSOL", "VOC", "COCO", "LOST"):
        monkeypatch_module.setenv(var, f"/nowhere/{var}")
    return {e.folder: e for e in load_suite(shipped_suite("simpool_paper")).entries() if e.spec is not None}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


def _baselines() -> list[Path]:
    return sorted(p.relative_to(PUBLISHED).parent for p in PUBLISHED.glob("*/*/results.csv"))


def test_every_published_number_is_an_entry_of_the_paper_suite_with_the_row_it_writes(entries):
    """13 files (3 supervised top-1, 10 DINO k-NN), each the baseline of an entry the suite runs:
    classify entries write ``top1`` (no k), with timm's prefetcher pixels; k-NN entries write
    ``knn_top1`` at each k of their evaluation, 20 (the READMEs' 20-NN) among them, with DINO's pixels
    and SimPool's eval_knn.py chunks."""
    found = _baselines()
    assert len(found) == 13
    check_baseline_folder(PUBLISHED)  # what suite run --baseline accepts
    for folder in found:
        assert folder in entries, f"{folder}: not an entry of suites/simpool_paper.toml"
        spec = entries[folder].spec
        rows = read_baseline(PUBLISHED / folder / "results.csv")
        assert len(rows) == 1 and rows.loc[0, "dataset"] == "imagenet" and rows.loc[0, "split"] == "val"
        if spec.knn_train is None:  # timm train.py's figures, validated through its default prefetcher
            assert rows.loc[0, "metric"] == "top1" and pd.isna(rows.loc[0, "k"]) and spec.prefetcher
        else:  # DINO's eval_knn.py: ToTensor then Normalize
            ks = spec.knn_k if isinstance(spec.knn_k, (tuple, list)) else (spec.knn_k,)
            assert rows.loc[0, "metric"] == "knn_top1" and rows.loc[0, "k"] == 20 and 20 in ks and not spec.prefetcher
            assert spec.knn_chunks == 500  # SimPool's eval_knn.py: num_chunks=500 (DINO's: 100)
        assert 50 < rows.loc[0, "value"] < 80  # a published percentage, not a fraction


def test_the_tolerances_let_a_run_be_at_most_half_a_rounding_step_below(tmp_path):
    """The published values are rounded to 0.1: a run 0.05 below passes, 0.07 below regresses,
    above passes ('improved'), for both rows' keys (``top1``, ``knn_top1@20``), which the default
    tolerance (0.1 for accuracies) would not catch."""
    tol = load_tolerances(PUBLISHED / "tolerances.toml")
    for folder in ("vits-sup-simpool/classify-imagenet", "vits-dino-simpool/knn-imagenet"):
        base = read_baseline(PUBLISHED / folder / "results.csv")
        for delta, passed in ((-0.05, True), (-0.07, False), (0.3, True)):
            run = base.assign(value=base["value"] + delta)
            assert check(run, base, tolerances=tol).passed is passed, (folder, delta)
            if delta == -0.07:
                assert check(run, base).passed  # the default alone lets it through
