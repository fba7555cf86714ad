"""Top-k accuracy and DINO weighted k-NN against plain, literal computations."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import torch

from simpool_bench.metrics.classification import KNNAccumulator, MemoryBank, TopKAccumulator, knn_predict


def _literal_topk(logits: np.ndarray, targets: np.ndarray, k: int) -> float:
    hits = 0
    for row, t in zip(logits, targets):
        order = sorted(range(len(row)), key=lambda j: -row[j])  # distinct values: no ties
        hits += int(t in order[:k])
    return 100.0 * hits / len(targets)


def test_topk_matches_literal_over_batches():
    rng = np.random.default_rng(0)
    logits = rng.permutation(40 * 12).reshape(40, 12).astype(np.float32)  # distinct scores
    targets = rng.integers(0, 12, size=40)
    acc = TopKAccumulator(12)
    for s in range(0, 40, 7):
        acc.update(torch.from_numpy(logits[s : s + 7]), torch.from_numpy(targets[s : s + 7]))
    out = acc.compute()
    assert out["top1"] == _literal_topk(logits, targets, 1)
    assert out["top5"] == _literal_topk(logits, targets, 5)
    per = acc.per_class().numpy()
    for c in range(12):
        sel = targets == c
        if sel.any():
            assert math.isclose(per[c], _literal_topk(logits[sel], targets[sel], 1))
        else:
            assert math.isnan(per[c])


def test_topk_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(size=(30, 7)).astype(np.float32))
    targets = torch.from_numpy(rng.integers(0, 7, size=30))
    whole, a, b = TopKAccumulator(7), TopKAccumulator(7), TopKAccumulator(7)
    whole.update(logits, targets)
    a.update(logits[:11], targets[:11])
    b.update(logits[11:], targets[11:])
    a.merge(b)
    assert a.compute() == whole.compute()
    assert torch.equal(a.class_correct, whole.class_correct)


def _literal_knn(train_f, train_y, test_f, k, T, C):
    """DINO eval_knn.py written out one query at a time."""
    tr = train_f / np.linalg.norm(train_f, axis=1, keepdims=True)
    preds = []
    for q in test_f:
        q = q / np.linalg.norm(q)
        sims = tr @ q
        nn = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(C)
        for j in nn:
            votes[train_y[j]] += math.exp(sims[j] / T)
        preds.append(np.argsort(-votes, kind="stable"))
    return preds


def test_knn_matches_direct_computation_on_toy_bank():
    rng = np.random.default_rng(2)
    C, d = 4, 8
    centers = rng.normal(size=(C, d)) * 3
    train_y = rng.integers(0, C, size=60)
    train_f = centers[train_y] + rng.normal(size=(60, d))
    test_y = rng.integers(0, C, size=25)
    test_f = centers[test_y] + rng.normal(size=(25, d)) * 2
    bank = MemoryBank.from_features(torch.from_numpy(train_f), torch.from_numpy(train_y), C)
    k, T = 5, 0.07
    scores = knn_predict(torch.from_numpy(test_f), bank, k=k, temperature=T).double().numpy()
    preds = _literal_knn(train_f, train_y, test_f, k, T, C)
    assert [int(np.argmax(s)) for s in scores] == [int(p[0]) for p in preds]
    acc = KNNAccumulator(bank, ks=k, temperature=T)
    acc.update(torch.from_numpy(test_f[:10]), torch.from_numpy(test_y[:10]))
    acc.update(torch.from_numpy(test_f[10:]), torch.from_numpy(test_y[10:]))
    expected_top1 = 100.0 * sum(int(p[0] == t) for p, t in zip(preds, test_y)) / 25
    assert acc.compute()["knn_top1"][k] == expected_top1


def test_knn_votes_are_exponential_weights():
    # two neighbours of class 0 at cosine 1.0 and 0.0, one of class 1 at 0.9: weights exp(s / T)
    bank = MemoryBank.from_features(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, math.sqrt(1 - 0.81)]]), torch.tensor([0, 0, 1]), 2)
    votes = knn_predict(torch.tensor([[1.0, 0.0]]), bank, k=3, temperature=0.5).double()
    assert torch.allclose(votes[0], torch.tensor([math.exp(2.0) + math.exp(0.0), math.exp(1.8)], dtype=torch.float64), rtol=1e-5)


def test_topk_equals_timm_accuracy_on_heavy_ties_and_bf16_logits():
    """timm's validate.py counts with ``timm.utils.accuracy`` (``topk(maxk, 1, True, True)``); on tied
    scores (integer logits, bf16-rounded logits as under --amp) which tied class counts depends on
    that op, so ours must count exactly as timm does, batch by batch."""
    from timm.utils import accuracy

    rng = np.random.default_rng(3)
    cases = {
        "integers": torch.from_numpy(rng.integers(0, 4, size=(300, 10)).astype(np.float32)),  # many ties per row
        "bf16": torch.from_numpy(rng.normal(size=(300, 10)).astype(np.float32)).to(torch.bfloat16) * 0.01,
        "all equal": torch.zeros(300, 10),
    }
    targets = torch.from_numpy(rng.integers(0, 10, size=300))
    for name, logits in cases.items():
        acc = TopKAccumulator(10)
        timm_hits = np.zeros(2, dtype=np.int64)
        for s in range(0, 300, 64):
            out, tgt = logits[s : s + 64], targets[s : s + 64]
            acc.update(out, tgt)
            timm_hits += [round(float(a) * len(tgt) / 100) for a in accuracy(out, tgt, topk=(1, 5))]
        got = acc.compute()
        assert (got["top1"], got["top5"]) == (100.0 * timm_hits[0] / 300, 100.0 * timm_hits[1] / 300), name
        assert 0 < timm_hits[0] < timm_hits[1] < 300, name  # the ties decide: neither none nor all


def test_class_folders_are_indexed_as_timm_validate_reads_them(tmp_path):
    """timm's validate.py reads an ImageFolder with its own reader (``find_images_and_targets``):
    classes in ``natural_key`` order (lower-cased, digit runs compared as numbers), so '9' < '10'
    and 'a' < 'B', where torchvision's ImageFolder (sorted names) has '10' < '9' < 'B' < 'a'. A
    model with a head (trained by timm's train.py on the same reader) is scored against timm's
    indices: every image's label and the top-1/top-5 counts of a literal validate.py loop
    (``--no-prefetcher``: timm's ImageDataset, the eval transform, forward, ``accuracy``)."""
    import timm
    from timm.data import ImageDataset
    from timm.utils import accuracy

    from simpool_bench import api

    from conftest import CLASS_NAMES, TINY_VIT_ARCH, TINY_VIT_KWARGS, build_image_folder, build_tiny_checkpoint

    folder = build_image_folder(tmp_path / "gen", counts=(3, 3, 3, 3), seed=4)
    root = tmp_path / "val"
    root.mkdir()
    names = ("10", "9", "B", "a")
    for src, dst in zip(CLASS_NAMES, names):
        (folder / src).rename(root / dst)
    ckpt, ours = build_tiny_checkpoint(tmp_path / "tiny.pth.tar", pool="cls", num_classes=4, seed=3)

    net = timm.create_model(TINY_VIT_ARCH, pretrained=False, num_classes=4, global_pool="token", **TINY_VIT_KWARGS).eval()
    net.load_state_dict(ours.state_dict())
    transform = timm.data.create_transform(**ours.data_config, is_training=False)
    dataset = ImageDataset(str(root), transform=transform)
    timm_label = {os.path.relpath(path, root): int(t) for path, t in dataset.reader.samples}
    assert [timm_label[f"{n}/000.jpg"] for n in ("9", "10", "a", "B")] == [0, 1, 2, 3]  # natural_key order
    hits = np.zeros(2, dtype=np.int64)
    with torch.no_grad():
        for images, target in torch.utils.data.DataLoader(dataset, batch_size=5):
            hits += [round(float(a) * len(target) / 100) for a in accuracy(net(images), target, topk=(1, 5))]

    engine = api.EngineConfig(device="cpu", batch_size=4, workers=0, progress=False)
    res = api.run_classify(api.ClassifySpec(api.DataSpec("imagenet", data=root), model=api.ModelOptions(checkpoint=ckpt)), engine)
    frame = res.extras["per_image"]
    assert dict(zip(frame["id"], frame["label"].astype(int))) == timm_label
    got = {r.metric: r.value for r in res.table.itertuples()}
    assert (got["top1"], got["top5"]) == (100.0 * hits[0] / 12, 100.0 * hits[1] / 12)


def test_per_image_top5_hit_counts_the_label_at_any_of_the_five_ranks():
    """``hit_top5``: the label among the five highest logits (rank 1 to 5, here rank 5), ``hit_top1``
    at rank 1 only; ``top5`` lists the five classes by decreasing logit."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.engine import Batch
    from simpool_bench.tasks.classification import ClassificationTask

    labels = [2, 1]
    records = [Record(f"{i}", Path(f"{i}.jpg"), lab) for i, lab in enumerate(labels)]
    task = ClassificationTask(torch.tensor(labels), n_cls=7, has_head=True)
    accs = task.accumulators()
    logits = torch.tensor([[7.0, 6.0, 3.0, 5.0, 4.0, 1.0, 0.0], [0.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    out = SimpleNamespace(logits=logits, features=torch.zeros(2, 4))
    task.step(Batch(np.array([0, 1]), np.array([True, True]), torch.zeros(2, 3, 4, 4), out), accs)
    frame = task.per_image(accs, records, "val")
    assert frame["top5"].tolist() == [[0, 1, 3, 4, 2], [1, 6, 5, 4, 3]]
    assert frame["hit_top5"].tolist() == [True, True] and frame["hit_top1"].tolist() == [False, True]
    assert frame["pred"].tolist() == [0, 1]


def test_a_label_equal_to_the_class_count_is_refused():
    """Labels index the logits: with 3 classes, label 3 is outside them (an error naming both
    counts); labels 0..2 are accepted."""
    import pytest

    from simpool_bench.errors import SimpoolBenchError
    from simpool_bench.tasks.classification import _check_labels

    model = SimpleNamespace(num_classes=3)
    assert _check_labels(model, np.array([0, 2, 1]), [], knn=False)
    with pytest.raises(SimpoolBenchError, match="the dataset has 4 classes but the model has 3"):
        _check_labels(model, np.array([0, 3, 1]), [], knn=False)
