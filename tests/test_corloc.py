"""CorLoc (LOST protocol) against hand-computed values and the literal LOST oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simpool_bench.discovery import boxes_from_attention
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics.boxes import iou_continuous
from simpool_bench.metrics.corloc import CorLocAccumulator, corloc_hits, lost_iou_pairs

import lost_reference as ref


def test_hand_computed_set() -> None:
    preds = np.array([[0, 0, 10, 10]] * 7)
    preds[3] = [0, 0, 2, 1]
    gts = [
        np.array([[0, 0, 10, 20]]),  # 100 / 200 = 0.5: hit
        np.array([[5, 5, 15, 15]]),  # 25 / 175: miss
        np.array([[50, 50, 60, 60], [1, 1, 10, 10]]),  # 0 and 81 / 100: hit (any box)
        np.array([[0, 0, 1, 1]]),  # exactly 0.5, but a height-1 box: LOST's eps makes it a miss
        np.zeros((0, 4)),  # no ground truth: evaluated, missed
        np.array([[0.0, 0.0, 10.0, 10.0]]),  # float64 but integral (as the VOC reader stores them)
        np.array([[0, 0, 10, 21]]),  # 100 / 210: miss
    ]
    acc = CorLocAccumulator()
    hits = acc.update(preds, gts)
    assert hits.tolist() == [True, False, True, False, False, True, False]
    out = acc.compute()
    assert out == {"corloc": 100.0 * 3 / 7, "hits": 3, "total": 7}


def test_lost_eps_differs_from_float64_iou_at_exactly_half() -> None:
    pred, gt = np.array([[0, 0, 2, 1]]), np.array([[0, 0, 1, 1]])
    assert iou_continuous(pred, gt)[0, 0] == 0.5  # float64, no eps: would count a hit
    assert ref.corloc_hit(pred[0], gt) is False
    assert corloc_hits(pred, [gt]).tolist() == [False]


def random_boxes(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    x = np.sort(rng.integers(0, size, (n, 2)), axis=1)
    y = np.sort(rng.integers(0, size, (n, 2)), axis=1)
    degenerate = rng.random(n) < 0.05  # some zero-width / zero-height boxes
    x[degenerate, 1] = x[degenerate, 0]
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.int64)


def test_hits_and_ious_equal_lost_oracle_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    n_half, n_float64_disagree = 0, 0
    for size in (4, 8, 13, 40, 600):
        b = 600
        preds = random_boxes(rng, b, size)
        gts = [random_boxes(rng, int(rng.integers(1, 5)), size) for _ in range(b)]
        # plant exact-0.5 pairs: a box and its half (split along x or y)
        for i in range(0, b, 5):
            x0, y0, x1, y1 = preds[i]
            x1, y1 = max(x1, x0 + 2), max(y1, y0 + 1)
            preds[i] = [x0, y0, x1, y1]
            if (x1 - x0) % 2 == 0:
                gts[i][0] = [x0, y0, x0 + (x1 - x0) // 2, y1]
        hits = corloc_hits(preds, gts)
        for i in range(b):
            want_iou = ref.bbox_iou(torch.from_numpy(preds[i]), torch.from_numpy(gts[i]))
            got_iou = lost_iou_pairs(np.repeat(preds[i : i + 1], len(gts[i]), axis=0), gts[i])
            assert got_iou.dtype == want_iou.dtype == torch.float32
            assert torch.equal(got_iou, want_iou), (preds[i], gts[i])
            assert hits[i] == ref.corloc_hit(preds[i], gts[i])
            f64 = iou_continuous(preds[i : i + 1], gts[i])[0]
            n_half += bool(np.any(f64 == 0.5))
            n_float64_disagree += bool(np.any(f64 >= 0.5)) != hits[i]
    assert n_half >= 100
    assert n_float64_disagree >= 1  # the eps terms matter (height-1 boxes at exactly 0.5)


def test_planted_box_on_object_100_on_background_0() -> None:
    gts = [np.array([[64, 48, 160, 128]]), np.array([[0, 0, 32, 32], [100, 90, 200, 180]])]
    on_object = np.array([[64, 48, 160, 128], [100, 90, 200, 180]])
    on_background = np.array([[200, 150, 300, 200], [40, 40, 90, 85]])
    acc = CorLocAccumulator()
    acc.update(on_object, gts)
    assert acc.compute()["corloc"] == 100.0
    acc.reset()
    acc.update(on_background, gts)
    assert acc.compute() == {"corloc": 0.0, "hits": 0, "total": 2}


def test_planted_attention_object_through_discovery() -> None:
    # image 200x300, stride 16 -> 13x19 grid; the object's patches hold all the attention
    gt = np.array([[64, 48, 160, 128]])
    attn = torch.zeros(1, 13, 19)
    attn[0, 3:8, 4:10] = torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) + 0.5
    box = boxes_from_attention(attn, np.array([[200, 300]]), 16, mass=1.0)
    assert box.tolist() == gt.tolist()
    acc = CorLocAccumulator()
    assert acc.update(box, [gt]).tolist() == [True]
    assert acc.update(box, [np.array([[200, 150, 300, 200]])]).tolist() == [False]
    assert acc.compute()["corloc"] == 50.0


def test_merge_and_state_dict_are_exact() -> None:
    rng = np.random.default_rng(1)
    preds = random_boxes(rng, 300, 20)
    gts = [random_boxes(rng, int(rng.integers(0, 4)), 20) for _ in range(300)]
    whole = CorLocAccumulator()
    whole.update(preds, gts)
    shards = [CorLocAccumulator() for _ in range(3)]
    for s, (lo, hi) in zip(shards, [(0, 97), (97, 250), (250, 300)]):
        s.update(preds[lo:hi], gts[lo:hi])
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert merged.compute() == whole.compute()
    assert whole.compute()["hits"] == sum(ref.corloc_hit(p, g) for p, g in zip(preds, gts) if len(g))
    restored = CorLocAccumulator()
    restored.load_state_dict(whole.state_dict())
    assert restored.compute() == whole.compute()
    merged.sync()  # no process group: a no-op
    assert merged.compute()["total"] == 300


def test_empty_and_errors() -> None:
    acc = CorLocAccumulator()
    out = acc.compute()
    assert np.isnan(out["corloc"]) and out["hits"] == 0 and out["total"] == 0
    assert acc.update(np.zeros((0, 4), np.int64), []).tolist() == []
    with pytest.raises(SimpoolBenchError, match="integer pixel boxes"):
        acc.update(np.array([[0.5, 0, 10, 10]]), [np.array([[0, 0, 10, 10]])])
    with pytest.raises(SimpoolBenchError, match=r"gt_boxes\[0\]"):
        acc.update(np.array([[0, 0, 10, 10]]), [np.array([[0, 0, np.nan, 10]])])
    with pytest.raises(SimpoolBenchError, match="one \\(K, 4\\) array per predicted box"):
        acc.update(np.array([[0, 0, 10, 10]]), [])
    with pytest.raises(SimpoolBenchError, match="pred_boxes"):
        acc.update(np.array([[0, 0, 10]]), [np.array([[0, 0, 10, 10]])])
    assert acc.compute()["total"] == 0


def test_api_misuses_of_corloc_are_one_error() -> None:
    """Found by an audit of the API: gt_boxes=None or a generator was a TypeError from len();
    add_misses(-2) made the total negative (CorLoc -0.0), add_misses(1.5) counted 1; merging a
    BoxAccumulator was a TypeError."""
    from simpool_bench.metrics.boxacc import BoxAccumulator

    pred = np.array([[0, 0, 10, 10]])
    for call, match in (
        (
            lambda: CorLocAccumulator().update(pred, None),
            r"gt_boxes: expected a sequence of \(K, 4\) box arrays, one per predicted box, got builtins.NoneType",
        ),
        (lambda: CorLocAccumulator().update(pred, (g for g in [pred])), r"gt_boxes: expected a sequence .* got builtins.generator"),
        (lambda: CorLocAccumulator().add_misses(-2), r"add_misses: n = -2: expected a whole number of images >= 0"),
        (lambda: CorLocAccumulator().add_misses(1.5), r"add_misses: n = 1.5"),
        (lambda: CorLocAccumulator().merge(BoxAccumulator()), r"cannot merge BoxAccumulator into CorLocAccumulator"),
    ):
        with pytest.raises(SimpoolBenchError, match=match):
            call()
    acc = CorLocAccumulator()
    acc.update(pred, [pred])
    acc.add_misses(np.int64(1))
    assert acc.compute() == {"corloc": 50.0, "hits": 1, "total": 2}
