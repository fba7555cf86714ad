"""The metrics a run writes: name, label, which way is better, default gate tolerance, decimals.

Each accumulator names its metrics in a ``METRICS`` class attribute built from the declarations
here (``TopKAccumulator.METRICS``, ``BoxAccumulator.METRICS``...); the run counts ``n_images`` and
``n_failed`` come from the engine. This module imports nothing heavy (no torch), so ``check`` and
``compare`` read the catalog without loading a model library; ``tests/test_metric_catalog.py``
checks that every accumulator's ``compute()`` names only its declared metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower", "exact"]
"""``higher``/``lower``: which way is better. ``exact``: any move beyond the tolerance is a
regression, and no value is ever 'best'."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the results table.

    Args:
        name: the ``metric`` column value (e.g. ``maxboxacc``).
        label: how tables print it (e.g. ``MaxBoxAcc``).
        direction: which way is better (see :data:`Direction`).
        tolerance: the default absolute ``check`` tolerance, in the metric's unit (``inf``: not gated).
        decimals: digits shown in tables.
    """

    name: str
    label: str
    direction: Direction = "higher"
    tolerance: float = 0.1
    decimals: int = 2


# classification, percentage points: 0.1 pp = 50 ImageNet val images; AMP noise is far smaller
TOPK_METRICS = (MetricSpec("top1", "Top-1"), MetricSpec("top5", "Top-5"))
KNN_METRICS = (MetricSpec("knn_top1", "k-NN Top-1"), MetricSpec("knn_top5", "k-NN Top-5"))
# localization/discovery, percentage points: maxima over 1000 thresholds move a little more
BOXACC_METRICS = (
    MetricSpec("top1_loc", "Top-1 Loc"),
    MetricSpec("gt_known_loc", "GT-known Loc"),
    MetricSpec("maxboxacc", "MaxBoxAcc", tolerance=0.2),
    MetricSpec("maxboxacc_v2", "MaxBoxAccV2", tolerance=0.2),
    MetricSpec("maxboxacc_v1", "MaxBoxAccV1", tolerance=0.2),
    # a threshold, not a score: reported, not gated unless given a finite tolerance
    MetricSpec("best_threshold", "Best threshold", "exact", math.inf, decimals=3),
)
CORLOC_METRICS = (MetricSpec("corloc", "CorLoc", tolerance=0.2),)
# counts: must not change
RUN_METRICS = (MetricSpec("n_images", "Images", "exact", 0.0, decimals=0), MetricSpec("n_failed", "Failed", "lower", 0.0, decimals=0))
NONFINITE_METRICS = (MetricSpec("n_nonfinite", "Non-finite", "lower", 0.0, decimals=0),)  # an image count

#: Every metric the tool writes, in display order. Other names are allowed in a table.
METRICS: tuple[MetricSpec, ...] = TOPK_METRICS + KNN_METRICS + BOXACC_METRICS + CORLOC_METRICS + RUN_METRICS + NONFINITE_METRICS
BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}


def direction(metric: str) -> Direction:
    """Which way ``metric`` is better; a metric the catalog does not know is higher-is-better."""
    spec = BY_NAME.get(metric)
    return "higher" if spec is None else spec.direction


def decimals(metric: str) -> int:
    """Digits a table shows for ``metric`` (2 for one the catalog does not know)."""
    spec = BY_NAME.get(metric)
    return 2 if spec is None else spec.decimals
