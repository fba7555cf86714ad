"""The embedded demo: data made from the photographs scikit-image ships, and tiny models trained on it.

``build_demo_data`` writes composite images with exact ground-truth boxes in every layout the tool
reads; ``train_demo_model`` trains a tiny ViT (SimPool or CLS) on them and saves it in the official
supervised checkpoint layout. Both are deterministic in their seed and reuse their output when called
again with the same arguments.
"""

from __future__ import annotations

from .data import DEMO_CLASSES, DemoPaths, build_demo_data
from .train import DEMO_MODEL_KINDS, DemoModelSpec, TrainSettings, train_demo_model

__all__ = ["DEMO_CLASSES", "DEMO_MODEL_KINDS", "DemoModelSpec", "DemoPaths", "TrainSettings", "build_demo_data", "train_demo_model"]
