"""Classification metrics: top-k accuracy (with per-class counts); DINO's weighted k-NN lives in
``metrics.knn`` (re-exported here).

Top-k keeps integer counts only, so sharded runs merge exactly.
"""

from __future__ import annotations

import torch

from .base import Accumulator
from .catalog import TOPK_METRICS
from .knn import DINO_KNN_KS, DINO_KNN_TEMPERATURE, KNNAccumulator, MemoryBank, knn_classify, knn_predict

__all__ = [
    "DINO_KNN_KS",
    "DINO_KNN_TEMPERATURE",
    "KNNAccumulator",
    "MemoryBank",
    "TopKAccumulator",
    "knn_classify",
    "knn_predict",
    "topk_correct",
]


def top_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The (B, min(k, C)) classes of the highest scores, best first (the op ``topk_correct`` counts with)."""
    return scores.topk(min(k, scores.shape[1]), dim=1, largest=True, sorted=True).indices


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """Per-sample hits (B, len(ks)) as bool: target among the ``k`` highest scores."""
    maxk = min(max(ks), scores.shape[1])
    top = top_indices(scores, maxk)
    hit = top.eq(targets.view(-1, 1))
    return torch.stack([hit[:, : min(k, maxk)].any(dim=1) for k in ks], dim=1)


class TopKAccumulator(Accumulator):
    """Top-k accuracy over a split, with per-class top-1 counts.

    Args:
        num_classes: number of classes of the logits.
        ks: the k of each reported accuracy (default top-1 and top-5).
    """

    METRICS = TOPK_METRICS
    correct: torch.Tensor
    total: torch.Tensor
    class_correct: torch.Tensor
    class_total: torch.Tensor

    def __init__(self, num_classes: int, ks: tuple[int, ...] = (1, 5)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ks = tuple(ks)
        self.add_state("correct", torch.zeros(len(self.ks), dtype=torch.int64))
        self.add_state("total", torch.zeros((), dtype=torch.int64))
        self.add_state("class_correct", torch.zeros(num_classes, dtype=torch.int64))
        self.add_state("class_total", torch.zeros(num_classes, dtype=torch.int64))

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Count a batch; returns the per-sample top-1 hits (for Top-1 Loc)."""
        logits = logits.detach().float()
        targets = targets.to(logits.device).long()
        hits = topk_correct(logits, targets, self.ks)
        dev = self.correct.device
        self.correct = self.correct + hits.sum(dim=0).to(dev, torch.int64)
        self.total = self.total + targets.numel()
        self.class_total = self.class_total + torch.bincount(targets.to(dev), minlength=self.num_classes)
        self.class_correct = self.class_correct + torch.bincount(
            targets.to(dev), weights=hits[:, 0].to(dev, torch.float64), minlength=self.num_classes
        ).to(torch.int64)
        return hits[:, 0]

    def add_misses(self, targets: torch.Tensor) -> None:
        """Count images of class ``targets`` as wrong at every k (e.g. non-finite logits)."""
        targets = torch.as_tensor(targets).long().reshape(-1).to(self.class_total.device)
        self.total = self.total + targets.numel()
        self.class_total = self.class_total + torch.bincount(targets, minlength=self.num_classes)

    def compute(self) -> dict[str, float]:
        """``{'top1': %, 'top5': %, ...}`` (NaN when nothing was counted)."""
        total = int(self.total)
        return {f"top{k}": (100.0 * int(c) / total if total else float("nan")) for k, c in zip(self.ks, self.correct)}

    def per_class(self) -> torch.Tensor:
        """Top-1 accuracy per class in percent (NaN for classes with no image)."""
        tot = self.class_total.double()
        return torch.where(tot > 0, 100.0 * self.class_correct.double() / tot.clamp(min=1), torch.nan)
