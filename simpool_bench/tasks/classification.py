"""Classification: top-1/top-5 of a model's logits and DINO's weighted k-NN on its pooled features."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
import torch

from ..data.images import ImageDataset
from ..data.records import Record
from ..engine import Batch, EngineConfig, EvalResult, all_gather_indexed, dist_rank, evaluate, resolve_device
from ..errors import SimpoolBenchError
from ..finite import NonFiniteCounter, check_nonfinite, finite_rows
from ..metrics.base import Accumulator
from ..metrics.classification import KNNAccumulator, MemoryBank, TopKAccumulator, top_indices
from ..metrics.knn import check_chunks, check_ks
from ..per_image import PerImageAccumulator, base_frame, scatter, scatter_lists
from ..registry import DINO_KNN
from . import knn_bank
from .common import PER_IMAGE_FAILURES, Outcome, decode_failures, engine_extras, no_resume, require, require_evaluated, row

if TYPE_CHECKING:
    from ..models.base import BenchModel


def collect_features(
    model: BenchModel, records: Sequence[Record], transform: Callable, config: EngineConfig, cache: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, d) and labels of every decodable image (k-NN memory bank). With
    ``cache`` (the run folder), the features are read from / written to ``cache/knn_bank/``."""
    key = path = None
    got = None
    if cache is not None:
        key = knn_bank.bank_key(model, records, transform, config)
        path = knn_bank.bank_path(cache, key)
        got = knn_bank.load_bank(path, key)
        if got is not None:
            knn_bank.reuse_note(path, int(got[0].numel()))
    if got is None:
        got = _extract(model, records, transform, config)
        if path is not None and key is not None and dist_rank() == 0:
            knn_bank.save_bank(path, key, *got)
    index, features = got
    fin = torch.as_tensor(finite_rows(features)) if index.numel() else torch.ones(0, dtype=torch.bool)
    if not bool(fin.all()):
        check_nonfinite(int((~fin).sum()), int(index.numel()), "k-NN memory-bank features", config.allow_nonfinite)
        index, features = index[fin], features[fin]  # allowed: left out of the bank
    if index.numel() == 0:
        raise SimpoolBenchError("the k-NN train split has no decodable image")
    return features, torch.tensor([records[int(i)].label for i in index])


def _extract(model: BenchModel, records: Sequence[Record], transform: Callable, config: EngineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(dataset positions, raw pooled features) of the decodable bank images, gathered from every rank."""
    feats: dict[int, torch.Tensor] = {}

    def step(batch: Batch, accs: dict[str, Accumulator]) -> None:
        for j, i in enumerate(batch.indices):
            if batch.ok[j]:
                feats[int(i)] = batch.output.features[j].float().cpu()

    evaluate(
        model, ImageDataset(records, transform, max_pixels=config.max_pixels), dict, step, no_resume(config), description="memory bank"
    )
    order = sorted(feats)
    local = torch.stack([feats[i] for i in order]) if order else torch.zeros(0, int(model.num_features))
    return all_gather_indexed(torch.tensor(order, dtype=torch.int64), local)  # every rank's shards


#: The classes kept per image (``top5``).
TOP_K = 5


@dataclass
class ClassificationTask:
    """The classification protocol's accumulators, its step over model outputs and its rows."""

    targets: torch.Tensor
    n_cls: int
    has_head: bool
    bank: MemoryBank | None = None
    knn_k: tuple[int, ...] = DINO_KNN.ks
    knn_temperature: float = DINO_KNN.temperature
    knn_chunks: int = DINO_KNN.chunks

    def accumulators(self) -> dict[str, Any]:
        accs: dict[str, Any] = {"nonfinite": NonFiniteCounter()}
        accs["per_image"] = PerImageAccumulator(("nonfinite", "top") if self.has_head else ("nonfinite",))
        if self.has_head:
            accs["topk"] = TopKAccumulator(self.n_cls)
        if self.bank is not None:
            accs["knn"] = KNNAccumulator(self.bank, self.knn_k, self.knn_temperature, self.knn_chunks)
        return accs

    def step(self, batch: Batch, accs: dict[str, Any]) -> None:
        """Logits/features of the decodable images into the accumulators; non-finite ones as misses."""
        ok = np.asarray(batch.ok, dtype=bool)
        if not ok.any():
            return
        out = batch.output
        fin = finite_rows(out.logits if "topk" in accs else None, out.features if "knn" in accs else None)
        good, bad = torch.as_tensor(ok & fin), torch.as_tensor(ok & ~fin)
        tgt = self.targets[torch.as_tensor(batch.indices)]
        self._record(accs["per_image"], batch.indices, ok, fin, out.logits if "topk" in accs else None)
        if good.any():
            if "topk" in accs:
                accs["topk"].update(out.logits[good], tgt[good])
            if "knn" in accs:
                accs["knn"].update(out.features[good], tgt[good], torch.as_tensor(batch.indices)[good])
        if bad.any():  # non-finite outputs: misses (or, by default, an error after the run)
            accs["nonfinite"].update(int(bad.sum()))
            if "topk" in accs:
                accs["topk"].add_misses(tgt[bad])
            if "knn" in accs:
                accs["knn"].add_misses(int(bad.sum()))

    @staticmethod
    def _record(per: PerImageAccumulator, indices: np.ndarray, ok: np.ndarray, fin: np.ndarray, logits: torch.Tensor | None) -> None:
        """Per-image rows of the decoded images: non-finite or not, and the top-5 classes (-1 where
        non-finite or fewer classes), from the same op on the same logits as the top-k counts."""
        keep = np.flatnonzero(ok)
        cols: dict[str, Any] = {"nonfinite": ~fin[keep]}
        if logits is not None:
            top = np.full((len(keep), TOP_K), -1, dtype=np.int64)
            good = np.flatnonzero(fin[keep])
            if good.size:
                got = top_indices(logits[torch.as_tensor(keep[good])].detach().float(), TOP_K).numpy()
                top[good, : got.shape[1]] = got
            cols["top"] = top
        per.update(np.asarray(indices)[keep], **cols)

    def per_image(self, accs: dict[str, Any], records: Sequence[Record], split: str) -> pd.DataFrame:
        """One row per record: ``label`` and, with a classifier, ``pred`` (top-1), ``top5`` and
        ``hit_top1``/``hit_top5`` (their sums over images are the table's counts). Images that did
        not decode (``failed``) hold missing values."""
        state = accs["per_image"].compute()
        idx, n = state["index"], len(records)
        frame = base_frame(records, split, idx, state["nonfinite"])
        frame["label"] = self.targets.numpy().astype(np.int64)
        if "top" in state:
            # (n, TOP_K) rows; with no image decoded, no row came and the column is 1-D
            top, lab = state["top"].reshape(len(idx), TOP_K), self.targets.numpy()[idx]
            frame["pred"] = scatter(n, idx, top[:, 0], "Int64").where(~frame["nonfinite"])
            frame["top5"] = scatter_lists(n, idx, [None if bad else t[t >= 0] for t, bad in zip(top, state["nonfinite"])])
            frame["hit_top1"] = scatter(n, idx, top[:, 0] == lab, "boolean")
            frame["hit_top5"] = scatter(n, idx, (top == lab[:, None]).any(axis=1), "boolean")
        return frame

    @staticmethod
    def rows(res: EvalResult, dataset: str, split: str, n_records: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        extras = engine_extras(res)
        if "topk" in res.accumulators:
            topk: Any = res.accumulators["topk"]
            for m, v in topk.compute().items():
                rows.append(row(dataset, split, m, v))
            extras["per_class_top1"] = topk.per_class().numpy()
        if "knn" in res.accumulators:
            knn: Any = res.accumulators["knn"]
            for m, by_k in knn.compute().items():
                rows += [row(dataset, split, m, v, k=k) for k, v in by_k.items()]
            extras["knn_k"], extras["knn_temperature"], extras["knn_chunks"] = list(knn.ks), knn.temperature, knn.chunks
            extras["per_image_columns"] = {**extras.get("per_image_columns", {}), **knn.per_image_columns(n_records)}
        return rows, extras


def _check_labels(model: BenchModel, labels: np.ndarray, records: Sequence[Record], knn: bool) -> bool:
    """Every image labelled, within the model's classes; a model without a head needs a k-NN bank."""
    if (labels < 0).any():
        raise SimpoolBenchError(f"{records[int(np.argmax(labels < 0))].path}: image has no class label")
    has_head = getattr(model, "num_classes", 0) > 0
    if has_head and labels.max() >= model.num_classes:
        raise SimpoolBenchError(
            f"the dataset has {int(labels.max()) + 1} classes but the model has {model.num_classes} "
            f"(checkpoint and dataset disagree on the class count)"
        )
    if not has_head and not knn:
        raise SimpoolBenchError("the model has no classifier head (self-supervised): give --knn-train DIR for a k-NN memory bank")
    return has_head


def classify(
    model: BenchModel,
    records: Sequence[Record],
    transform: Callable,
    config: EngineConfig,
    *,
    dataset: str = "imagenet",
    split: str = "val",
    num_classes: int | None = None,
    knn_train: Sequence[Record] | None = None,
    knn_k: int | Sequence[int] = DINO_KNN.ks,
    knn_temperature: float = DINO_KNN.temperature,
    knn_chunks: int = DINO_KNN.chunks,
    key: str | None = None,
    bank_cache: Path | None = None,
) -> Outcome:
    """Top-1/top-5 of the model's logits, and/or DINO's weighted k-NN on its pooled features (one
    row per k of ``knn_k``; per-image hits in ``extras['per_image_columns']``).

    Models without a classifier (DINO backbones) need ``knn_train`` (the memory bank's records);
    with ``bank_cache`` (the run folder) its features are cached there (``knn_bank``)."""
    require(records, dataset)
    knn_chunks = check_chunks(knn_chunks)
    labels = np.array([r.label for r in records])
    has_head = _check_labels(model, labels, records, knn_train is not None)
    n_cls = num_classes or (int(model.num_classes) if has_head else int(labels.max()) + 1)
    bank = None
    ks = (int(knn_k),) if isinstance(knn_k, numbers.Integral) else tuple(cast(Sequence[int], knn_k))  # numpy's too
    if knn_train is not None:
        require(knn_train, "k-NN train")
        ks = check_ks(ks, len(knn_train), "the k-NN train split")  # before extracting
        feats, blabels = collect_features(model, knn_train, transform, config, bank_cache)
        ks = check_ks(ks, len(blabels), "the k-NN memory bank (decodable, finite images)")
        dev = resolve_device(config.device)  # k-NN votes on the device (a GPU holds the bank)
        bank = MemoryBank.from_features(feats.to(dev), blabels.to(dev), max(n_cls, int(blabels.max()) + 1))
    task = ClassificationTask(torch.as_tensor(labels), n_cls, has_head, bank, ks, knn_temperature, knn_chunks)
    res = evaluate(
        model,
        ImageDataset(records, transform, max_pixels=config.max_pixels),
        task.accumulators,
        task.step,
        config,
        key=key,
        description=f"classify {dataset}",
        failures_listed=PER_IMAGE_FAILURES,
        params={
            "num_classes": n_cls,
            "knn": bank is not None,  # k-NN shards keep test features: any k, T and bank can reuse them
        },
    )
    require_evaluated(res.n_images, res.n_failed, decode_failures(config))
    n_bad = res.accumulators["nonfinite"].compute()
    check_nonfinite(n_bad, res.n_images, "logits or features", config.allow_nonfinite)
    rows, extras = task.rows(res, dataset, split, len(records))
    return Outcome(rows, res.n_images, res.n_failed, extras, n_bad, task.per_image(res.accumulators, records, split))
