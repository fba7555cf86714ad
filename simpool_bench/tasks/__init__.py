"""One task object per protocol, shared by the direct run, the stored-maps run and visualize:
``classification`` (top-1/top-5, k-NN), ``wsol`` (MaxBoxAccV2), ``discovery`` (LOST CorLoc).

Each task has its transform, forward options, a step turning model outputs or stored maps into
accumulator updates, and its rows; ``classify``, ``localize``, ``discover``, ``localize_stored``
and ``discover_stored`` run them over a dataset and return an ``Outcome``."""

from .classification import ClassificationTask, classify, collect_features
from .common import Outcome
from .discovery import DISCOVER_METHODS, DiscoveryTask, discover, discover_forward, discover_stored, use_lost_head
from .wsol import LOCALIZE_BASELINES, WsolTask, baseline_scoremap, localize, localize_stored, wsol_gt_boxes

__all__ = [
    "DISCOVER_METHODS",
    "LOCALIZE_BASELINES",
    "ClassificationTask",
    "DiscoveryTask",
    "Outcome",
    "WsolTask",
    "baseline_scoremap",
    "classify",
    "collect_features",
    "discover",
    "discover_forward",
    "discover_stored",
    "localize",
    "localize_stored",
    "use_lost_head",
    "wsol_gt_boxes",
]
