"""DINO's weighted k-NN classifier (``eval_knn.knn_classifier``), every k in one pass.

``knn_classify`` runs DINO's loop once over the test features: the same chunks (``n // 100``
images; ``n // 500`` in SimPool's own ``eval_knn.py``: ``chunks``), the same ops (``torch.mm``
against the transposed bank, ``topk(k)``, a one-hot ``scatter_``, ``exp(sim / T)`` weights, ``sum``
over the neighbours, ``sort`` of the 1000 class scores), so each k's hits are bit-identical to a
separate ``knn_classifier(..., k, T)`` call. The similarity of a chunk is computed once and shared
by every k; each k takes its own ``topk`` (a prefix of one ``topk(max k)`` may break ties at the
k-th neighbour differently).

``KNNAccumulator`` keeps the test features themselves (indexed by dataset position; merged by
concatenation, across resume shards and ranks) and classifies them all at the end, so the numbers
do not depend on batch or shard size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SimpoolBenchError
from .base import Accumulator
from .catalog import KNN_METRICS

#: DINO's weighted k-NN protocol (Caron et al. 2021, ``eval_knn.py``): k = 10, 20, 100, 200; T = 0.07.
DINO_KNN_KS = (10, 20, 100, 200)
DINO_KNN_TEMPERATURE = 0.07
#: DINO splits the test features into this many chunks (``num_chunks = 100``); SimPool's copy of
#: ``eval_knn.py`` (billpsomas/simpool ``self_supervised/``) into 500. A chunk's ``torch.mm`` rounds
#: by its row count (the BLAS kernel), so the chunking is part of the protocol's bits.
DINO_KNN_CHUNKS = 100
SIMPOOL_KNN_CHUNKS = 500
#: DINO's ``knn_classifier`` votes over ``num_classes=1000`` columns (its default, which ``eval_knn``
#: never changes): ``sort`` breaks ties among that many, whatever the data set's class count.
DINO_KNN_NUM_CLASSES = 1000


@dataclass
class MemoryBank:
    """k-NN memory bank: L2-normalised train features (N, d) and their labels (N,)."""

    features: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @classmethod
    def from_features(cls, features: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> MemoryBank:
        labels = labels.long()
        n = int(labels.max()) + 1 if num_classes is None else num_classes
        return cls(F.normalize(features.float(), dim=1, p=2), labels, n)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def check_ks(ks: Sequence[int], bank_size: int, what: str = "the memory bank") -> tuple[int, ...]:
    """``ks`` as a tuple of distinct positive ints, each at most ``bank_size`` (DINO's topk fails beyond)."""
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise SimpoolBenchError(f"--knn-k {','.join(map(str, ks))}: expected distinct positive integers, e.g. 10,20,100,200")
    big = [k for k in ks if k > bank_size]
    if big:
        raise SimpoolBenchError(
            f"--knn-k {','.join(map(str, big))}: {what} has only {bank_size} images; every k must be at most that (e.g. --knn-k "
            f"{','.join(str(k) for k in ks if k <= bank_size) or min(bank_size, 10)})"
        )
    return ks


def check_chunks(chunks: int) -> int:
    """``--knn-chunks``: a whole number >= 1 (DINO: 100; SimPool's eval_knn.py: 500)."""
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise SimpoolBenchError(
            f"--knn-chunks {chunks!r}: expected a whole number >= 1 (DINO's eval_knn.py: {DINO_KNN_CHUNKS}; SimPool's: {SIMPOOL_KNN_CHUNKS})"
        )
    return int(chunks)


def knn_votes(similarity: torch.Tensor, train_labels: torch.Tensor, k: int, T: float, num_classes: int) -> torch.Tensor:
    """DINO's class scores (b, C) of one chunk's ``similarity`` (b, N) for one k, op for op."""
    batch_size = similarity.shape[0]
    distances, indices = similarity.topk(k, largest=True, sorted=True)
    candidates = train_labels.view(1, -1).expand(batch_size, -1)
    retrieved_neighbors = torch.gather(candidates, 1, indices)
    retrieval_one_hot = torch.zeros(batch_size * k, num_classes, device=similarity.device)
    retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
    distances_transform = distances.clone().div_(T).exp_()
    if not bool(torch.isfinite(distances_transform).all()):  # inf weights: inf * 0 votes are NaN, every image a miss
        raise SimpoolBenchError(
            f"--knn-temperature {T:g}: exp(similarity / T) overflows (similarity {distances.max().item():.3g}); "
            "expected a larger temperature (DINO: 0.07)"
        )
    return torch.sum(torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)), 1)


def knn_predict(features: torch.Tensor, bank: MemoryBank, k: int = 20, temperature: float = DINO_KNN_TEMPERATURE) -> torch.Tensor:
    """DINO's weighted k-NN class scores (B, C) of ``features`` (normalised here) for one k."""
    q = F.normalize(features.float().to(bank.features.device), dim=1, p=2)
    return knn_votes(torch.mm(q, bank.features.t()), bank.labels, min(k, len(bank)), temperature, bank.num_classes)


@dataclass
class KnnHits:
    """Per test image (in the given order) and per k: top-1 prediction, top-1 and top-5 hits."""

    pred: dict[int, np.ndarray]
    top1: dict[int, np.ndarray]
    top5: dict[int, np.ndarray]


def knn_classify(
    test_features: torch.Tensor, test_labels: torch.Tensor, bank: MemoryBank, ks: Sequence[int], T: float, chunks: int = DINO_KNN_CHUNKS
) -> KnnHits:
    """Every k of DINO's ``knn_classifier`` in one loop over its ``chunks`` (see the module docstring).

    ``test_features`` are raw (normalised here over the whole matrix, as DINO's extraction does).
    The votes are ``DINO_KNN_NUM_CLASSES`` wide as DINO's call has them (the bank's class count
    where larger: DINO fails there), so ties in class scores sort as in DINO."""
    dev = bank.features.device
    num_classes = max(DINO_KNN_NUM_CLASSES, bank.num_classes)
    test_features = F.normalize(test_features.float().to(dev), dim=1, p=2)
    test_labels = test_labels.long().to(dev)
    ks = tuple(ks)
    train_features = bank.features.t()
    num_test_images = test_labels.shape[0]
    imgs_per_chunk = max(1, num_test_images // int(chunks))  # DINO: n // 100 (it fails below 100 images)
    parts: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {k: [] for k in ks}
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx : min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx : min((idx + imgs_per_chunk), num_test_images)]
        similarity = torch.mm(features, train_features)
        for k in ks:
            probs = knn_votes(similarity, bank.labels, k, T, num_classes)
            _, predictions = probs.sort(1, True)
            correct = predictions.eq(targets.data.view(-1, 1))
            hit5 = correct.narrow(1, 0, min(5, k)).sum(1) > 0  # DINO: "top5 does not make sense if k < 5"
            parts[k].append((predictions[:, 0].cpu(), correct[:, 0].cpu(), hit5.cpu()))
    out = KnnHits({}, {}, {})
    for k in ks:
        if parts[k]:
            pred, top1, top5 = (torch.cat(c) for c in zip(*parts[k]))
        else:
            pred, top1, top5 = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.bool)
        out.pred[k], out.top1[k], out.top5[k] = pred.numpy().astype(np.int64), top1.numpy().astype(bool), top5.numpy().astype(bool)
    return out


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    full = [t for t in tensors if t.shape[0] > 0]
    return torch.cat(full) if full else tensors[0]


class KNNAccumulator(Accumulator):
    """Weighted k-NN top-1/top-5 (DINO protocol) for every k in ``ks``, against a fixed bank.

    State: the test images' dataset positions, raw features and labels (merged by concatenation),
    and a count of images counted as misses (e.g. non-finite features). ``compute`` classifies all
    of them at once (``knn_classify``) in dataset order."""

    METRICS = KNN_METRICS

    def __init__(
        self,
        bank: MemoryBank,
        ks: int | Sequence[int] = DINO_KNN_KS,
        temperature: float = DINO_KNN_TEMPERATURE,
        chunks: int = DINO_KNN_CHUNKS,
    ) -> None:
        super().__init__()
        self.bank, self.temperature, self.chunks = bank, float(temperature), check_chunks(chunks)
        self.ks = check_ks((ks,) if isinstance(ks, int) else ks, len(bank))
        self.reset()

    def reset(self) -> None:
        self.index = torch.zeros(0, dtype=torch.int64)
        self.features = torch.zeros(0, 0)
        self.targets = torch.zeros(0, dtype=torch.int64)
        self.misses = torch.zeros((), dtype=torch.int64)
        self._hits: KnnHits | None = None

    def update(self, features: torch.Tensor, targets: torch.Tensor, index: Sequence[int] | torch.Tensor | None = None) -> None:
        """Keep a batch's features; ``index``: their dataset positions (default: after the last kept)."""
        n = int(features.shape[0])
        if index is None:
            start = int(self.index.max()) + 1 if self.index.numel() else 0
            index = torch.arange(start, start + n)
        self.index = _cat([self.index, torch.as_tensor(np.asarray(index), dtype=torch.int64).reshape(-1).cpu()])
        self.features = _cat([self.features, features.detach().float().cpu()])
        self.targets = _cat([self.targets, torch.as_tensor(targets).long().reshape(-1).cpu()])
        self._hits = None

    def add_misses(self, n: int) -> None:
        """Count ``n`` images as wrong at every k (e.g. non-finite features)."""
        self.misses = self.misses + int(n)

    def merge(self, other: Accumulator) -> KNNAccumulator:
        if not isinstance(other, KNNAccumulator):
            raise TypeError(f"cannot merge {type(other).__name__} into KNNAccumulator")
        self.index = _cat([self.index, other.index])
        self.features = _cat([self.features, other.features])
        self.targets = _cat([self.targets, other.targets])
        self.misses = self.misses + other.misses
        self._hits = None
        return self

    def sync(self, group: Any = None) -> None:
        """Every rank's features (ordered by dataset position) and the summed miss count."""
        import torch.distributed as dist

        from ..engine.distributed import all_gather_indexed

        if not (dist.is_available() and dist.is_initialized()):
            return
        d = torch.tensor([self.features.shape[1] if self.features.numel() else 0])
        dist.all_reduce(d, op=dist.ReduceOp.MAX, group=group)
        feats = self.features if self.features.numel() else torch.zeros(0, int(d))
        index, feats = all_gather_indexed(self.index, feats)
        _, self.targets = all_gather_indexed(self.index, self.targets)
        self.index, self.features = index, feats
        misses = self.misses.clone()
        dist.all_reduce(misses, op=dist.ReduceOp.SUM, group=group)
        self.misses, self._hits = misses, None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "index": self.index.clone(),
            "features": self.features.clone(),
            "targets": self.targets.clone(),
            "misses": self.misses.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("index", "features", "targets", "misses"):
            if name not in state:
                raise KeyError(f"accumulator state {name!r} missing")
            setattr(self, name, state[name].clone())
        self._hits = None

    def hits(self) -> tuple[torch.Tensor, KnnHits]:
        """(dataset positions, per-k hits) of the kept images, in dataset order (computed once)."""
        order = torch.argsort(self.index)
        if self._hits is None:
            self._hits = knn_classify(self.features[order], self.targets[order], self.bank, self.ks, self.temperature, self.chunks)
        return self.index[order], self._hits

    def compute(self) -> dict[str, dict[int, float]]:
        """``{'knn_top1': {k: %}, 'knn_top5': {k: %}}`` (NaN when nothing was counted)."""
        total = int(self.index.numel()) + int(self.misses)
        if self.index.numel() == 0:
            nan = {k: float("nan") if total == 0 else 0.0 for k in self.ks}
            return {"knn_top1": dict(nan), "knn_top5": dict(nan)}
        _, h = self.hits()
        return {
            "knn_top1": {k: float(h.top1[k].sum()) * 100.0 / total for k in self.ks},
            "knn_top5": {k: float(h.top5[k].sum()) * 100.0 / total for k in self.ks},
        }

    def per_image_columns(self, n_records: int) -> dict[str, np.ndarray]:
        """``knn_pred_k{k}`` (-1 where not classified), ``knn_top1_k{k}``, ``knn_top5_k{k}`` (bool), in record order."""
        cols: dict[str, np.ndarray] = {}
        index, h = self.hits() if self.index.numel() else (torch.zeros(0, dtype=torch.int64), None)
        pos = index.numpy()
        for k in self.ks:
            pred, top1, top5 = np.full(n_records, -1, dtype=np.int64), np.zeros(n_records, bool), np.zeros(n_records, bool)
            if h is not None:
                pred[pos], top1[pos], top5[pos] = h.pred[k], h.top1[k], h.top5[k]
            cols[f"knn_pred_k{k}"], cols[f"knn_top1_k{k}"], cols[f"knn_top5_k{k}"] = pred, top1, top5
        return cols
