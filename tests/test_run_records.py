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
