"""MaxBoxAcc / MaxBoxAccV2: the fast component-tree path against the literal OpenCV pipeline of
wsolevaluation (tests/boxacc_oracle.py), bit for bit, on random and adversarial maps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch

from simpool_bench.errors import SimpoolBenchError
from simpool_bench.metrics import _components
from simpool_bench.metrics.boxacc import BoxAccumulator, _gt_boxes_fast, box_hits, cam_thresholds, prepare_scoremap
from simpool_bench.metrics.boxes import resize_boxes_wsol
from simpool_bench.metrics.corloc import CorLocAccumulator

import boxacc_oracle as oracle

IOUS = (30, 50, 70)
INTERVALS = (0.001, 0.01)


# ------------------------------------------------------------------------------ map generators
def _u8_small(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """Quantised maps of any size, of the shapes that stress contour finding."""
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "few_levels":  # plateaus, holes and diagonal contacts galore
        return rng.integers(0, rng.integers(1, 6) + 1, (h, w)).astype(np.uint8)
    if kind == "noise":  # up to 24 distinct values anywhere in 0..255
        values = np.sort(rng.choice(256, rng.integers(2, 25), replace=False)).astype(np.uint8)
        return values[rng.integers(0, len(values), (h, w))]
    if kind == "binary_sparse":
        return ((rng.random((h, w)) < rng.uniform(0.05, 0.95)) * rng.integers(1, 256)).astype(np.uint8)
    if kind == "smooth":
        s = rng.integers(2, 6)
        m = cv2.resize(rng.random((s, s)), (w, h), interpolation=cv2.INTER_CUBIC)
        step = rng.integers(1, 24)
        return (oracle.quantise(oracle.normalize_scoremap(m)) // step * step).astype(np.uint8)
    if kind == "rings":  # concentric rings around a random centre: nested holes
        cy, cx = rng.uniform(-2, h + 1), rng.uniform(-2, w + 1)
        period = rng.uniform(1.5, 6)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        return (np.floor(r / period) % rng.integers(2, 5) * rng.integers(1, 60)).astype(np.uint8)
    if kind == "checker":
        b = rng.integers(1, 4)
        return (((yy // b + xx // b) % 2) * rng.integers(1, 256) + rng.integers(0, 2, (h, w))).astype(np.uint8)
    if kind == "pixels":  # a few single pixels, often on the border or in corners
        m = np.zeros((h, w), dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            y = rng.choice([0, h - 1, rng.integers(0, h)])
            x = rng.choice([0, w - 1, rng.integers(0, w)])
            m[y, x] = rng.integers(1, 256)
        return m
    if kind == "frame":  # foreground touching the border, background holes inside
        m = np.full((h, w), rng.integers(0, 3), dtype=np.uint8)
        m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = rng.integers(3, 256)
        if h > 4 and w > 4:
            m[h // 2, :] = rng.integers(3, 256)
            m[rng.integers(1, h - 1), rng.integers(1, w - 1)] = 255
        return m
    if kind == "holes":  # a blob with punched holes at several depths
        m = np.zeros((h, w), dtype=np.uint8)
        m[rng.integers(0, 2) : h - rng.integers(0, 2), rng.integers(0, 2) : w - rng.integers(0, 2)] = 200
        holes = rng.random((h, w)) < 0.25
        m[holes] = rng.integers(0, 200, holes.sum())
        return m
    if kind == "zero":
        return np.zeros((h, w), dtype=np.uint8)
    if kind == "constant":
        return np.full((h, w), rng.integers(1, 256), dtype=np.uint8)
    raise AssertionError(kind)


SMALL_KINDS = ("few_levels", "noise", "binary_sparse", "smooth", "rings", "checker", "pixels", "frame", "holes", "zero", "constant")


def _raw_map(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Score maps at model resolution (or 224) for the full pipeline."""
    if kind == "smooth14":
        return rng.random((14, 14)).astype(np.float32)
    if kind == "smooth7":
        return rng.standard_normal((7, 7))
    if kind == "noise224":
        return rng.random((224, 224))
    if kind == "nan":
        m = rng.random((14, 14))
        m[rng.integers(0, 14), rng.integers(0, 14)] = np.nan
        return m
    if kind == "constant":
        return np.full((14, 14), rng.uniform(-3, 3))
    if kind == "zero":
        return np.zeros((7, 7), dtype=np.float32)
    if kind == "hot_pixel":
        m = np.zeros((14, 14))
        m[rng.integers(0, 14), rng.integers(0, 14)] = 1.0
        return m
    if kind == "checker14":
        return (np.add.outer(np.arange(14), np.arange(14)) % 2) + 0.01 * rng.random((14, 14))
    if kind == "rings224":
        yy, xx = np.mgrid[0:224, 0:224]
        r = np.hypot(yy - rng.uniform(0, 224), xx - rng.uniform(0, 224))
        return np.cos(r / rng.uniform(3, 12)) + 0.1 * np.cos(r / 2.3)
    if kind == "nested224":  # nested square rings, touching the 223 edge
        yy, xx = np.mgrid[0:224, 0:224]
        d = np.maximum(np.abs(yy - 111.5), np.abs(xx - 111.5))
        return (np.floor(d / rng.integers(3, 9)) % 2) * (1 + 0.2 * rng.random((224, 224)))
    if kind == "blocks224":
        b = rng.integers(2, 9)
        return np.kron(rng.random((224 // b + 1, 224 // b + 1)), np.ones((b, b)))[:224, :224]
    if kind == "int_map":
        return rng.integers(-5, 6, (7, 14))
    raise AssertionError(kind)


RAW_KINDS = ("smooth14", "smooth7", "nan", "constant", "zero", "hot_pixel", "checker14", "rings224", "nested224", "blocks224", "int_map")


def _gt_boxes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1 to 4 GT boxes: random, full, tiny at the origin, or touching the last row/column."""
    boxes = []
    for _ in range(rng.integers(1, 5)):
        style = rng.integers(0, 5)
        if style == 0:
            boxes.append([0, 0, w - 1, h - 1])
        elif style == 1:
            boxes.append([0, 0, rng.integers(0, 2), rng.integers(0, 2)])
        else:
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            x1 = w - 1 if style == 2 else rng.integers(x0, w)
            y1 = h - 1 if style == 2 else rng.integers(y0, h)
            boxes.append([x0, y0, x1, y1])
    return np.asarray(boxes, dtype=np.int64)


# ------------------------------------------------------------------------------------- helpers
def _check_level_boxes(u8: np.ndarray, per_level: dict[int, np.ndarray]) -> None:
    """The kernel's boxes equal OpenCV's at every level, as multisets."""
    rows = _components.level_box_rows(np.ascontiguousarray(u8))
    if u8.max() == 0:
        assert rows.shape == (0, 5)
        return
    ref = np.concatenate([np.column_stack([np.full(len(b), level), b]) for level, b in per_level.items()])
    rows, ref = rows[np.lexsort(rows.T[::-1])], ref[np.lexsort(ref.T[::-1])]
    if not np.array_equal(rows, ref):
        first = next(i for i in range(min(len(rows), len(ref)) + 1) if i == min(len(rows), len(ref)) or (rows[i] != ref[i]).any())
        raise AssertionError(
            f"boxes differ from OpenCV's (level, x0, y0, x1, y1) at row {first}: "
            f"{rows[first : first + 3].tolist()} vs {ref[first : first + 3].tolist()}; map:\n{u8}"
        )


def _check_hits(u8s: np.ndarray, gts: list[np.ndarray], per_levels: list[dict[int, np.ndarray]]) -> None:
    """Fast per-threshold correctness equals the oracle's for both intervals, every image."""
    for interval in INTERVALS:
        thr = cam_thresholds(interval)
        fast = box_hits(u8s, gts, thr, IOUS)
        for i, u8 in enumerate(u8s):
            ref = oracle.level_cached_hits(u8, gts[i], thr, IOUS, per_level=per_levels[i])
            if not np.array_equal(fast[i], ref):
                bad = np.argwhere(fast[i] != ref)[0]
                raise AssertionError(
                    f"interval {interval}: map {i} differs at IoU {IOUS[bad[0]]}, t={thr[bad[1]]}: "
                    f"fast {fast[i][tuple(bad)]}, oracle {ref[tuple(bad)]}\nmap:\n{u8}\ngt {gts[i]}"
                )


def _check_best_boxes(
    u8: np.ndarray, gt: np.ndarray, per_level: dict[int, np.ndarray], own_box: np.random.Generator | None = None
) -> tuple[int, int]:
    """``best_box_at_level`` at every level against the oracle's boxes: the first box of best IoU,
    or -1 where boxes of other coordinates tie for it. With ``own_box``, each level is also checked
    against one of its own boxes (picked by that generator) as the GT. Returns (unique, tied) counts."""
    unique = tied = 0
    out = np.zeros(4, dtype=np.int64)
    u8c = np.ascontiguousarray(u8)
    for level, boxes in per_level.items():
        gts = [gt] if own_box is None else [gt, boxes[own_box.integers(0, len(boxes))][None, :]]
        for g in (np.ascontiguousarray(g, dtype=np.int64) for g in gts):
            per_box = oracle.calculate_multiple_iou(boxes, g).max(axis=1)
            iou = _components.best_box_at_level(u8c, level, g, out)
            n_best = len(np.unique(boxes[per_box == per_box.max()], axis=0))
            if iou >= 0:
                assert n_best == 1 and out.tolist() == boxes[int(np.argmax(per_box))].tolist() and iou == per_box.max(), (level, u8, g)
                unique += 1
            else:
                assert iou == -1.0 and n_best > 1, (level, u8, g)
                tied += 1
    return unique, tied


def _small_batches(seed: int, n_batches: int, per_batch: int, max_side: int) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    for b in range(n_batches):
        h, w = (int(v) for v in rng.integers(1, max_side + 1, 2))
        kinds = [SMALL_KINDS[(b + i) % len(SMALL_KINDS)] for i in range(per_batch)]
        u8s = np.stack([_u8_small(rng, k, h, w) for k in kinds])
        yield u8s, [_gt_boxes(rng, h, w) for _ in kinds]


def _pipeline_batch(rng: np.random.Generator, kinds: list[str]) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    raw = [_raw_map(rng, k) for k in kinds]
    u8s = np.stack([oracle.quantise(oracle.reference_scoremap(m)) for m in raw])
    return raw, u8s, [_gt_boxes(rng, 224, 224) for _ in kinds]


def _run_small(seed: int, n_batches: int, per_batch: int, max_side: int) -> int:
    n = 0
    for u8s, gts in _small_batches(seed, n_batches, per_batch, max_side):
        per_levels = [oracle.level_boxes(u8) for u8 in u8s]
        for i, (u8, gt, per_level) in enumerate(zip(u8s, gts, per_levels)):
            _check_level_boxes(u8, per_level)
            if i % 8 == 0:  # the per-image box kernel on an eighth of the maps (at every level: the slow part)
                _check_best_boxes(u8, gt, per_level)
        _check_hits(u8s, gts, per_levels)
        n += len(u8s)
    return n


def _run_pipeline(seed: int, kinds: list[str], batch: int, box_every: int) -> int:
    rng = np.random.default_rng(seed)
    n = 0
    for s in range(0, len(kinds), batch):
        raw, u8s, gts = _pipeline_batch(rng, kinds[s : s + batch])
        for m, u8 in zip(raw, u8s):
            np.testing.assert_array_equal(prepare_scoremap(m), u8)
        per_levels = [oracle.level_boxes(u8) for u8 in u8s]
        for i in range(0, len(u8s), box_every):
            _check_level_boxes(u8s[i], per_levels[i])
            _check_best_boxes(u8s[i], gts[i], per_levels[i])
        _check_hits(u8s, gts, per_levels)
        n += len(u8s)
    return n


# ---------------------------------------------------------------------------------- quick tests
def test_retr_tree_boxes_per_level_match_opencv() -> None:
    """Component-tree boxes == OpenCV RETR_TREE boxes (8-connected foreground components plus
    4-connected holes grown by one pixel), level by level, and counts per threshold agree."""
    assert _run_small(seed=1, n_batches=16, per_batch=11, max_side=24) == 176


def test_full_pipeline_matches_oracle() -> None:
    kinds = list(RAW_KINDS) * 2
    assert _run_pipeline(seed=2, kinds=kinds, batch=11, box_every=2) == len(kinds)


def test_literal_reference_per_threshold() -> None:
    """The fast path against the literal reference: one findContours per threshold."""
    rng = np.random.default_rng(3)
    kinds = ["smooth14", "smooth7", "rings224", "nan", "zero", "hot_pixel", "checker14", "nested224"]
    raw, u8s, gts = _pipeline_batch(rng, kinds)
    for interval, subset in ((0.01, range(len(kinds))), (0.001, range(2))):
        thr = oracle.reference_thresholds(interval)
        fast = box_hits(u8s[list(subset)], [gts[i] for i in subset], np.asarray(thr), IOUS)
        for k, i in enumerate(subset):
            np.testing.assert_array_equal(fast[k], oracle.reference_hits(u8s[i], gts[i], thr, IOUS))


def test_v1_largest_contour_matches_oracle() -> None:
    rng = np.random.default_rng(4)
    kinds = ["smooth14", "smooth7", "rings224", "checker14", "zero", "blocks224"]
    raw, u8s, gts = _pipeline_batch(rng, kinds)
    for interval, subset in ((0.01, range(len(kinds))), (0.001, range(1))):
        thr = oracle.reference_thresholds(interval)
        fast = box_hits(u8s[list(subset)], [gts[i] for i in subset], np.asarray(thr), IOUS, multi_contour=False)
        for k, i in enumerate(subset):
            np.testing.assert_array_equal(fast[k], oracle.reference_hits(u8s[i], gts[i], thr, IOUS, multi_contour=False))


def test_prepare_scoremap_matches_reference() -> None:
    rng = np.random.default_rng(5)
    maps: list[np.ndarray] = [_raw_map(rng, k) for k in RAW_KINDS + ("noise224",)]
    maps += [
        rng.random((7, 14)) * 1e-9,
        -rng.random((16, 9)),
        rng.random((224, 224)).astype(np.float32),
        np.array([[0.0, 1.0], [1.0, 1.0]]),
    ]
    for m in maps:
        np.testing.assert_array_equal(prepare_scoremap(m), oracle.quantise(oracle.reference_scoremap(m)))
    half = torch.rand(14, 14, generator=torch.Generator().manual_seed(0)).half()
    np.testing.assert_array_equal(prepare_scoremap(half), oracle.quantise(oracle.reference_scoremap(half.float().numpy())))
    assert prepare_scoremap(np.full((5, 5), np.nan)).max() == 0
    assert prepare_scoremap(np.ones((14, 14))).max() == 0
    assert prepare_scoremap(rng.random((14, 14)), size=(32, 48)).shape == (32, 48)


def test_accumulator_equals_oracle_counts_and_top1() -> None:
    rng = np.random.default_rng(6)
    kinds = ["smooth14", "smooth7", "hot_pixel", "rings224", "zero", "checker14"] * 2
    raw, u8s, gts = _pipeline_batch(rng, kinds)
    cls = rng.random(len(kinds)) < 0.5
    acc = BoxAccumulator(interval=0.01)
    acc.update(raw[:5], gts[:5], correct_cls=cls[:5])
    acc.update(raw[5:], gts[5:], correct_cls=torch.from_numpy(cls[5:]))
    thr = oracle.reference_thresholds(0.01)
    ref = np.stack([oracle.level_cached_hits(u8, gt, thr, IOUS) for u8, gt in zip(u8s, gts)])
    np.testing.assert_array_equal(acc.correct.numpy(), ref.sum(0))
    np.testing.assert_array_equal(acc.correct_top1.numpy(), ref[cls].sum(0))
    res = acc.compute()
    n = len(kinds)
    curve = ref.sum(0).T * 100.0 / n
    np.testing.assert_array_equal(res.curve, curve)
    assert res.maxboxacc == {iou: curve[:, j].max() for j, iou in enumerate(IOUS)}
    assert res.best_threshold == {iou: thr[int(np.argmax(curve[:, j]))] for j, iou in enumerate(IOUS)}
    assert res.maxboxacc_v2 == pytest.approx(np.mean([curve[:, j].max() for j in range(3)]), abs=0)
    assert res.gt_known_loc == res.maxboxacc[50]
    assert res.top1_loc == (ref[cls].sum(0)[1] * 100.0 / n).max()
    assert res.n_images == n and res.multi_contour


def test_tensor_batches_and_threads_agree() -> None:
    g = torch.Generator().manual_seed(7)
    maps = torch.rand(6, 14, 14, generator=g)
    gts = [np.array([[10 * i, 20, 100 + 10 * i, 223]]) for i in range(6)]
    one = BoxAccumulator(interval=0.01, num_threads=1)
    one.update(maps, gts)
    two = BoxAccumulator(interval=0.01, num_threads=2)
    two.update(list(maps.numpy()), gts)
    np.testing.assert_array_equal(one.correct.numpy(), two.correct.numpy())
    thr = oracle.reference_thresholds(0.01)
    ref = sum(oracle.level_cached_hits(oracle.quantise(oracle.reference_scoremap(m.numpy())), gt, thr, IOUS) for m, gt in zip(maps, gts))
    np.testing.assert_array_equal(one.correct.numpy(), ref)
    assert one.compute().top1_loc is None  # no correct_cls given


def test_merge_equals_single_pass_and_state_roundtrip() -> None:
    rng = np.random.default_rng(8)
    maps = [rng.random((14, 14)) for _ in range(10)]
    gts = [_gt_boxes(rng, 224, 224) for _ in range(10)]
    cls = rng.random(10) < 0.7
    whole = BoxAccumulator(interval=0.01)
    whole.update(maps, gts, correct_cls=cls)
    a, b = BoxAccumulator(interval=0.01), BoxAccumulator(interval=0.01)
    a.update(maps[:3], gts[:3], correct_cls=cls[:3])
    b.update(maps[3:], gts[3:], correct_cls=cls[3:])
    a.merge(b)
    for name in ("correct", "correct_top1", "n_images", "n_with_cls"):
        assert torch.equal(getattr(a, name), getattr(whole, name)), name
    assert a.compute().maxboxacc == whole.compute().maxboxacc
    c = BoxAccumulator(interval=0.01)
    c.load_state_dict(a.state_dict())
    assert c.compute().top1_loc == whole.compute().top1_loc
    with pytest.raises(SimpoolBenchError):
        a.merge(BoxAccumulator(interval=0.01, multi_contour=False))


def _box_map(box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((224, 224))
    m[box[1] : box[3] + 1, box[0] : box[2] + 1] = 1.0
    return m


def test_known_answers() -> None:
    """Hand-computed: a map exactly on the GT box predicts (x0, y0, x1 + 1, y1 + 1), IoU
    100*120/(101*121) = 0.98 at every threshold; a map in the opposite corner never overlaps;
    an all-zero map predicts (0, 0, 0, 0): IoU 1/2 with GT (0, 0, 0, 1), 1/4 with (0, 0, 1, 1)."""
    acc = BoxAccumulator(interval=0.01)
    acc.update(
        [_box_map((50, 60, 149, 179)), _box_map((100, 100, 223, 223))],
        [np.array([[50, 60, 149, 179]]), np.array([[100, 100, 223, 223]])],
        correct_cls=[True, False],
    )
    res = acc.compute()
    assert res.maxboxacc == {30: 100.0, 50: 100.0, 70: 100.0} and res.maxboxacc_v2 == 100.0
    assert (res.curve == 100.0).all() and res.best_threshold == {30: 0.0, 50: 0.0, 70: 0.0}
    assert res.top1_loc == 50.0 and res.gt_known_loc == 100.0

    acc = BoxAccumulator(interval=0.001)
    acc.update([_box_map((0, 0, 50, 50))], [np.array([[150, 150, 223, 223]])])
    res = acc.compute()
    assert res.maxboxacc == {30: 0.0, 50: 0.0, 70: 0.0} and (res.curve == 0).all()

    acc = BoxAccumulator(interval=0.01)
    acc.update(np.zeros((2, 7, 7)), [np.array([[0, 0, 0, 1]]), np.array([[0, 0, 1, 1]])])
    res = acc.compute()
    assert res.maxboxacc == {30: 50.0, 50: 50.0, 70: 0.0}
    assert res.maxboxacc_v2 == (50.0 + 50.0 + 0.0) / 3  # the mean of the three (their median would be 50)


def test_resize_boxes_wsol_truncates_each_coordinate_as_resize_bbox() -> None:
    """wsolevaluation ``resize_bbox``: ``int(x * 224 / width)``, ``int(y * 224 / height)``, i.e.
    truncation, never rounding. By hand, in a 300x200 image:
    (100, 20, 299, 199) -> 74.67, 22.4, 223.25, 222.88 -> (74, 22, 223, 222);
    (4, 5, 202, 199) -> 2.99, 5.6, 150.83, 222.88 -> (2, 5, 150, 222) (each one would round up)."""
    boxes = np.array([[100, 20, 299, 199], [4, 5, 202, 199]])
    assert resize_boxes_wsol(boxes, 300, 200).tolist() == [[74, 22, 223, 222], [2, 5, 150, 222]]


def test_wsol_gt_boxes_in_one_pass_equal_resize_bbox_per_record() -> None:
    """``tasks.wsol_gt_boxes`` resizes every record's boxes in one numpy pass; each equals
    ``resize_boxes_wsol`` of that record (wsolevaluation's ``int(x * 224 / width)``, checked by hand
    above) on random boxes, boxes at the image's edge (x1 = width), fractional ones (CUB's
    ``bounding_boxes.txt``), 1-pixel and odd-sized images, several boxes per image; records the
    pass does not take (integer boxes, a size of 0) go through ``resize_boxes_wsol`` per record,
    which names what is wrong."""
    from pathlib import Path

    from simpool_bench.data.records import Record
    from simpool_bench.tasks import wsol_gt_boxes

    rng = np.random.default_rng(7)
    records = []
    for i in range(500):
        w, h = (1, 1) if i == 0 else (int(rng.integers(1, 1200)), int(rng.integers(1, 1200)))
        k = int(rng.integers(1, 5))
        x0, y0 = rng.uniform(0, w, k), rng.uniform(0, h, k)
        x1, y1 = rng.uniform(x0, w), rng.uniform(y0, h)
        boxes = np.stack([x0, y0, x1, y1], axis=1)
        if i % 3 == 0:
            boxes = np.floor(boxes)
        if i % 7 == 0:
            boxes[0] = (0, 0, w, h)  # the whole image: x1 = width gives 224
        records.append(Record(str(i), Path(f"{i}.jpg"), 0, w, h, boxes))
    for w in (7, 55, 71, 80, 110, 300, 375, 500):  # every whole coordinate; at 55, 71, 80, 110 x * (224 / w) truncates lower
        x = np.arange(w + 1, dtype=np.float64)
        records.append(Record(f"dense{w}", Path(f"d{w}.jpg"), 0, w, w + 1, np.stack([x, x, x, x + 1], axis=1)))
    expected = [resize_boxes_wsol(r.boxes, r.width, r.height) for r in records]
    got = wsol_gt_boxes(records)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype == np.int64 and np.array_equal(g, e)
    assert max(int(e.max()) for e in expected) == 224 and any((e[:, 2] < e[:, 0] + 1).any() for e in expected)

    mixed = [*records[:3], Record("int", Path("int.jpg"), 0, 300, 200, np.array([[100, 20, 299, 199]]))]
    assert wsol_gt_boxes(mixed)[-1].tolist() == [[74, 22, 223, 222]]  # the per-record path
    with pytest.raises(SimpoolBenchError, match="width 0: expected a positive number"):
        wsol_gt_boxes([*records[:3], Record("zero", Path("z.jpg"), 0, 0, 200, np.array([[1.0, 2.0, 3.0, 4.0]]))])
    with pytest.raises(SimpoolBenchError, match=r"box \[1.0, nan, 3.0, 4.0\] is not finite"):  # never cast to an integer
        wsol_gt_boxes([*records[:3], Record("nan", Path("n.jpg"), 0, 300, 200, np.array([[1.0, np.nan, 3.0, 4.0]]))])


def test_iou_wsol_counts_pixels_inclusively() -> None:
    """``calculate_multiple_iou``'s +1 convention, by hand: (0, 0, 9, 9) is 10x10 = 100 pixels;
    against (5, 5, 14, 14) they share 5x5 = 25 pixels: 25 / (100 + 100 - 25) = 1/7; boxes sharing
    only a corner line overlap 1 pixel: (9, 9, 18, 18) gives 1 / 199; a 1-pixel box in a 1x2 box: 1/2;
    disjoint (10, 10, 19, 19): 0."""
    from simpool_bench.metrics.boxes import iou_wsol

    iou = iou_wsol(np.array([[0, 0, 9, 9]]), np.array([[5, 5, 14, 14], [9, 9, 18, 18], [10, 10, 19, 19], [0, 0, 9, 9]]))
    assert iou.tolist() == [[25 / 175, 1 / 199, 0.0, 1.0]]
    assert iou_wsol(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 1]])).tolist() == [[0.5]]


def test_oracle_iou_keeps_the_dtype_of_its_boxes() -> None:
    """The oracle's ``calculate_multiple_iou`` computes in the dtype it is given, as the reference's
    tiled arrays do: a float box (0, 0, 9.5, 9.5) against (0, 0, 9, 9) shares 10 x 10 = 100 of its
    10.5 x 10.5 = 110.25 pixels (IoU 100 / 110.25), where an int64 cast would truncate it to the
    same box (IoU 1); integer boxes give ``iou_wsol``'s values, pair by pair, (A, B) as the reference."""
    from simpool_bench.metrics.boxes import iou_wsol

    frac = oracle.calculate_multiple_iou(np.array([[0, 0, 9.5, 9.5]]), np.array([[0.0, 0.0, 9.0, 9.0]]))
    assert frac.tolist() == [[100 / 110.25]]
    rng = np.random.default_rng(0)
    a = np.sort(rng.integers(0, 225, (5, 2, 2)), axis=1).reshape(5, 4)  # (x0, y0) <= (x1, y1)
    b = np.sort(rng.integers(0, 225, (3, 2, 2)), axis=1).reshape(3, 4)
    assert oracle.calculate_multiple_iou(a, b).tolist() == iou_wsol(a, b).tolist()


def test_v1_binarises_strictly_above_the_level() -> None:
    """V1 (largest contour) keeps ``u8 > int(t * max)``, strictly. A 50x50 square of 255 on the GT
    and, away from it, a 224x40 band of exactly 100 (larger). t = 0.39: level int(99.45) = 99, the
    band is in and, larger, is V1's box: a miss. t = 0.393: level int(100.2) = 100, the band (== 100)
    is out: the square's box (100, 100, 150, 150) has IoU 2500 / 51^2 = 0.96 with the GT: a hit.
    (Keeping ``>=`` the level would keep the band at both.)"""
    u8 = np.zeros((1, 224, 224), dtype=np.uint8)
    u8[0, 100:150, 100:150] = 255
    u8[0, 0:40, :] = 100
    gt = [np.array([[100, 100, 149, 149]])]
    hits = box_hits(u8, gt, np.array([0.39, 0.393]), IOUS, multi_contour=False)
    assert hits[0].tolist() == [[False, True]] * 3
    assert box_hits(u8, gt, np.array([0.39, 0.393]), IOUS)[0].tolist() == [[True, True]] * 3  # V2 sees the square at both


def test_v1_known_answer_and_two_blobs() -> None:
    """Two blobs: V2 finds the small one on the GT, V1 keeps only the larger one."""
    m = np.zeros((224, 224))
    m[10:110, 10:110] = 1.0  # large, off target
    m[150:170, 150:170] = 0.9  # small, on target
    gt = [np.array([[150, 150, 169, 169]])]
    v2, v1 = BoxAccumulator(interval=0.01), BoxAccumulator(interval=0.01, multi_contour=False)
    v2.update([m], gt)
    v1.update([m], gt)
    assert v2.compute().maxboxacc[50] == 100.0
    assert v1.compute().maxboxacc[50] == 0.0


def test_bad_inputs_raise() -> None:
    acc = BoxAccumulator(interval=0.01)
    good = [np.array([[0, 0, 10, 10]])]
    with pytest.raises(SimpoolBenchError, match="gt_boxes"):
        acc.update(np.zeros((2, 7, 7)), good)
    with pytest.raises(SimpoolBenchError, match=r"gt_boxes\[0\]"):
        acc.update(np.zeros((1, 7, 7)), [np.zeros((0, 4))])
    with pytest.raises(SimpoolBenchError, match=r"box \[5, 0, 4, 10\] is inverted"):
        acc.update(np.zeros((1, 7, 7)), [np.array([[5, 0, 4, 10]])])
    with pytest.raises(SimpoolBenchError, match=r"box \[0.5, 0, 4, 10\] is not whole pixels"):
        acc.update(np.zeros((1, 7, 7)), [np.array([[0.5, 0, 4, 10]])])
    with pytest.raises(SimpoolBenchError, match="infinite"):
        acc.update(np.full((1, 7, 7), np.inf), good)
    with pytest.raises(SimpoolBenchError, match="score_maps"):
        acc.update(np.zeros((7, 7)), good)
    with pytest.raises(SimpoolBenchError, match="correct_cls"):
        acc.update(np.zeros((1, 7, 7)), good, correct_cls=[True, False])
    with pytest.raises(SimpoolBenchError, match="interval"):
        BoxAccumulator(interval=0)
    with pytest.raises(SimpoolBenchError, match="iou_thresholds"):
        BoxAccumulator(iou_thresholds=(0.5,))
    with pytest.raises(SimpoolBenchError, match="no image"):
        BoxAccumulator().compute()


def test_gt_boxes_outside_the_resized_image_are_refused_naming_the_box() -> None:
    """A box in original-image pixels (past 224) was scored as given: wrong numbers, no error. It is
    refused now, in one line naming the box and what is expected, before anything is counted;
    a box reaching 224 (an edge box through wsolevaluation's resize_bbox) is valid and scored."""
    acc = BoxAccumulator(interval=0.1)
    maps = np.random.default_rng(0).random((2, 14, 14))
    ok = np.array([[10, 10, 100, 100]])
    cases = {
        "[10, 20, 500, 375] reaches past the 224x224 map": np.array([[10, 20, 500, 375]]),
        "[0, 0, 10, 225] reaches past the 224x224 map": torch.tensor([[0, 0, 10, 5], [0, 0, 10, 225]]),
        "[nan, 0, 10, 10] is not finite": np.array([[np.nan, 0, 10, 10]]),
        "[0, -3, 10, 10] has a negative coordinate": [[0, -3, 10, 10]],
        "[0, 50, 10, 40] is inverted (x0 > x1 or y0 > y1)": np.array([[0.0, 50.0, 10.0, 40.0]]),
    }
    for said, box in cases.items():
        with pytest.raises(SimpoolBenchError) as err:
            acc.update(maps, [ok, box])
        message = str(err.value)
        assert message.startswith(f"gt_boxes[1]: box {said}; expected whole pixels with 0 <= x0 <= x1 <= 224 and 0 <= y0 <= y1 <= 224")
        assert "resize_boxes_wsol" in message and "\n" not in message
    assert int(acc.n_images) == 0 and int(acc.correct.sum()) == 0  # nothing counted
    # the image's edge maps to 224 exactly (wsolevaluation: x1 * 224 / w), and it is scored
    edge = resize_boxes_wsol(np.array([[240.0, 0.0, 480.0, 375.0]]), 480, 375)
    assert edge.tolist() == [[112, 0, 224, 224]]
    full = np.ones((224, 224))
    full[0, 0] = 0.0  # every threshold below 1 keeps the whole image: the box (0, 0, 223, 223)
    acc.update([full], [edge])
    iou = (112 * 224) / (224 * 224 + 113 * 225 - 112 * 224)  # (0, 0, 223, 223) vs (112, 0, 224, 224), +1 convention
    assert 0.3 <= iou < 0.5  # 0.4967: a hit at IoU 30, a miss at 50 and 70
    assert acc.compute().maxboxacc == {30: 100.0, 50: 0.0, 70: 0.0}


def test_hole_counts_per_level_match_opencv() -> None:
    """The Euler-number hole counts that cut the background sweep short equal OpenCV's: the
    RETR_CCOMP contours with a parent (hole borders), level by level, on adversarial maps."""
    checked = 0
    for u8s, _ in _small_batches(seed=9, n_batches=12, per_batch=11, max_side=24):
        for u8 in u8s:
            counts = _components.level_hole_counts(np.ascontiguousarray(u8))
            for level in range(int(u8.max())):
                binary = (u8 > level).astype(np.uint8) * 255
                _, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
                ref = 0 if hierarchy is None else int((hierarchy[0, :, 3] >= 0).sum())
                assert counts[level] == ref, (level, counts[level], ref, u8)
                checked += 1
    assert checked > 1000, checked


def test_best_box_at_level_is_the_first_best_opencv_box_or_says_tie() -> None:
    """``best_box_at_level`` (the per-image box of localize's records and of visualize, without
    the GIL) against OpenCV's boxes at every level of adversarial maps: where one box (of one
    set of coordinates) has the best IoU it is that box and IoU, the one the reference's
    ``np.argmax`` takes; where boxes of other coordinates tie it says so (-1), and the caller asks
    OpenCV for its contour order. GT boxes include one of the level's own boxes (IoU 1, often
    shared by an outer border and a hole of the same box); both outcomes occur."""
    rng = np.random.default_rng(12)
    unique = tied = 0
    for u8s, gts in _small_batches(seed=12, n_batches=14, per_batch=11, max_side=22):
        for u8, gt in zip(u8s, gts):
            u, t = _check_best_boxes(u8, gt, oracle.level_boxes(u8), own_box=rng)
            unique, tied = unique + u, tied + t
    assert min(unique, tied) >= 100, (unique, tied)


def test_gt_boxes_fast_path_equals_per_image_path() -> None:
    """One vectorised validation of the GT boxes gives what the per-image path gives, and any
    entry it cannot vouch for goes through the per-image path (which names the bad entry)."""
    rng = np.random.default_rng(10)
    gts = [_gt_boxes(rng, 224, 224) for _ in range(7)]
    fast = _gt_boxes_fast(gts, 224, 224)
    assert fast is not None
    slow_gt = np.concatenate(gts).astype(np.int64)
    np.testing.assert_array_equal(fast[0], slow_gt)
    np.testing.assert_array_equal(fast[1], np.concatenate([[0], np.cumsum([len(g) for g in gts])]))
    assert _gt_boxes_fast([gts[0], gts[1].astype(np.float32)], 224, 224) is None  # mixed dtypes
    assert _gt_boxes_fast([gts[0], np.array([[0.5, 0, 3, 3]])], 224, 224) is None
    assert _gt_boxes_fast([np.array([[4, 0, 3, 3]])], 224, 224) is None
    assert _gt_boxes_fast([np.array([[0, 0, 224, 224]])], 224, 224) is not None  # the map's side itself is in
    assert _gt_boxes_fast([np.array([[0, 0, 225, 224]])], 224, 224) is None
    with pytest.raises(SimpoolBenchError, match=r"gt_boxes\[1\]"):
        box_hits(np.zeros((2, 8, 8), np.uint8), [np.array([[0, 0, 3, 3]]), np.array([[-1, 0, 3, 3]])], cam_thresholds(0.1))


# ----------------------------------------------------------------------------------- the sweep
@pytest.mark.slow
def test_exactness_sweep() -> None:
    """>= 10,000 maps, every per-threshold count at intervals 0.001 and 0.01 equal to the
    oracle's, the per-level box multisets equal to OpenCV's, and (on a share of the maps) the
    per-image box at every level equal to OpenCV's first best box."""
    t0 = time.perf_counter()
    n = _run_small(seed=100, n_batches=410, per_batch=22, max_side=20)  # 9,020 small maps
    smooth = ["smooth14", "smooth7"] * 400  # 800 maps as from a real attention head
    n += _run_pipeline(seed=101, kinds=smooth, batch=50, box_every=25)
    n += _run_pipeline(seed=102, kinds=list(RAW_KINDS) * 20, batch=22, box_every=11)
    n += _run_pipeline(seed=103, kinds=["noise224"] * 2, batch=2, box_every=2)
    assert n >= 10_000, n
    print(f"exactness sweep: {n} maps in {time.perf_counter() - t0:.0f} s")


def test_api_misuses_of_the_accumulators_are_one_error() -> None:
    """Found by an audit of the API: gt_boxes=None or a generator, iou_thresholds=50,
    num_threads='4', merging a CorLocAccumulator, load_state_dict({}) were a TypeError or KeyError
    from inside; multi_contour='False' ran V2, class ids or scores as correct_cls were read as
    booleans, a bool (mask) array was read as boxes, add_misses(-1) took an image off the count;
    a float32 interval was refused as 'not a number in (0, 1)'; a copy.copy of the accumulator
    changed with the original (its counts were updated in place)."""
    import copy

    maps = np.random.default_rng(0).random((2, 14, 14)).astype(np.float32)
    gts = [np.array([[10, 10, 100, 100]]), np.array([[0, 0, 50, 60]])]
    cases = [
        (
            lambda: BoxAccumulator(interval=0.01).update(maps, None),
            r"gt_boxes: expected a sequence of \(K, 4\) box arrays, one per score map, got builtins.NoneType",
        ),
        (lambda: BoxAccumulator(interval=0.01).update(maps, (g for g in gts)), r"gt_boxes: expected a sequence .* got builtins.generator"),
        (lambda: BoxAccumulator(interval=0.01).update(maps, [np.ones((1, 4), bool)] * 2), r"gt_boxes\[0\]: dtype bool, expected numbers"),
        (
            lambda: BoxAccumulator(interval=0.01).update(maps, gts, correct_cls=np.array([2, 0])),
            r"correct_cls: int64 \[2, 0\]\.\.\.: expected \(2,\) booleans",
        ),
        (lambda: BoxAccumulator(interval=0.01).update(maps, gts, correct_cls=np.array([0.3, 0.9])), r"correct_cls: float64 \[0.3, 0.9\]"),
        (lambda: BoxAccumulator(iou_thresholds=50), r"iou_thresholds 50: expected 1 to 16 distinct whole percents"),
        (lambda: BoxAccumulator(iou_thresholds=0.5), r"iou_thresholds 0.5: expected"),
        (lambda: BoxAccumulator(num_threads="4"), r"num_threads '4': expected a whole number >= 1, or None"),
        (lambda: BoxAccumulator(num_threads=0), r"num_threads 0: expected a whole number >= 1"),
        (lambda: BoxAccumulator(multi_contour="False"), r"multi_contour 'False': expected True \(MaxBoxAccV2\) or False \(V1\)"),
        (lambda: BoxAccumulator(interval=np.float32(0.01)), r"interval np.float32\(0.01\): a float32 step is not the decimal one"),
        (lambda: BoxAccumulator().add_misses(-1), r"add_misses: n = -1: expected a whole number of images >= 0"),
        (lambda: BoxAccumulator().add_misses(2.7), r"add_misses: n = 2.7"),
        (
            lambda: BoxAccumulator().merge(CorLocAccumulator()),
            r"cannot merge CorLocAccumulator into BoxAccumulator: expected another BoxAccumulator",
        ),
        (lambda: BoxAccumulator().merge(None), r"cannot merge NoneType into BoxAccumulator"),
        (lambda: BoxAccumulator().load_state_dict({}), r"BoxAccumulator.load_state_dict: state 'correct' missing"),
    ]
    for call, match in cases:
        with pytest.raises(SimpoolBenchError, match=match):
            call()
    # what is right still runs: 0/1 and bools as correct_cls, numpy ints, a 0-d tensor count
    acc = BoxAccumulator(interval=0.01, iou_thresholds=np.array([30, 50, 70]), num_threads=np.int64(1), multi_contour=np.bool_(True))
    acc.update(maps, gts, correct_cls=np.array([1, 0]))
    acc.add_misses(torch.tensor(1), with_cls=True)
    assert acc.compute().n_images == 3 and acc.compute().top1_loc is not None
    snapshot = copy.copy(acc)
    acc.update(maps, gts)
    assert snapshot.compute().n_images == 3 and acc.compute().n_images == 5
