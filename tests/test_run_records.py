"""Tests for simpool_bench.run_records: the counts ``finish_run`` adds to a task's rows."""

from __future__ import annotations

import pytest

from simpool_bench.run_records import finish_run
from simpool_bench.tasks.common import Outcome, row

from results_helpers import _prov


@pytest.mark.parametrize("n_failed, n_nonfinite", [(0, 0), (2, 0), (0, 3), (2, 3)])
def test_finish_run_writes_the_failure_counts_only_when_not_zero(n_failed, n_nonfinite):
    # README: n_images always; n_failed "when an image did not decode"; n_nonfinite under
    # --allow-nonfinite when some image was not finite (``check`` reads an absent one as 0)
    outcome = Outcome([row("cub", "test", "top1", 75.0)], n_images=10, n_failed=n_failed, n_nonfinite=n_nonfinite)
    table, _ = finish_run(outcome, _prov(), None)
    want = {"top1": 75.0, "n_images": 10.0}
    want |= {"n_failed": 2.0} if n_failed else {}
    want |= {"n_nonfinite": 3.0} if n_nonfinite else {}
    assert dict(zip(table["metric"], table["value"])) == want
    assert set(table["dataset"]) == {"cub"} and set(table["split"]) == {"test"}


def test_a_run_into_a_folder_of_another_run_says_what_differs(tmp_path, monkeypatch):
    """The note names the first two ``RUN_IDENTITY`` fields that differ, old -> new (digests cut to
    12 characters, an empty one shown as 'none'); the same run again is no other run: no note."""
    from simpool_bench import console

    said = []
    monkeypatch.setattr(console, "note", said.append)
    outcome = Outcome([row("cub", "test", "top1", 75.0)], n_images=10, n_failed=0)
    finish_run(outcome, _prov(), tmp_path, formats=("csv",))
    finish_run(outcome, _prov(), tmp_path, formats=("csv",))
    assert said == []
    finish_run(outcome, _prov(checkpoint_sha256="ab" * 32), tmp_path, formats=("csv",))
    assert len(said) == 1 and "(checkpoint_sha256 0123456789 -> abababababab)" in said[0]
    finish_run(outcome, _prov(checkpoint_sha256="ab" * 32, pool="gap", method="cam", data_sha256="cd" * 32), tmp_path, formats=("csv",))
    assert len(said) == 2 and "(pool simpool -> gap; method none -> cam)" in said[1]


def test_stored_provenance_keeps_the_stores_model_facts_and_takes_this_runs():
    """Maps scored from a store: the extracting model's checkpoint digest and random_init flag as
    the store recorded them; this run's n_images, data digest and method; fields the provenance
    does not have (a newer store's) are left out."""
    from types import SimpleNamespace

    from simpool_bench.run_records import stored_provenance

    recorded = {
        "model": "vit_small_patch16_224",
        "pool": "simpool",
        "checkpoint": "a.pth",
        "checkpoint_sha256": "ef" * 32,
        "checkpoint_format": "official-supervised",
        "random_init": True,
        "n_images": 99,
        "data_sha256": "old",
        "method": "old",
        "a_field_of_a_newer_version": 1,
    }
    prov = stored_provenance(SimpleNamespace(manifest={"provenance": recorded}), n_images=3, method="attn", data_sha256="new")
    row = prov.as_row()
    assert (row["model"], row["pool"], row["checkpoint"]) == ("vit_small_patch16_224", "simpool", "a.pth")
    assert row["checkpoint_sha256"] == "ef" * 32 and row["random_init"] is True
    assert (row["n_images"], row["data_sha256"], row["method"]) == (3, "new", "attn")
    assert "a_field_of_a_newer_version" not in row
