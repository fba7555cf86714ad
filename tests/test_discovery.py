"""Box extraction for object discovery against the literal LOST/DINO oracle (tests/lost_reference.py)."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import scipy.ndimage
import torch

from simpool_bench.discovery import boxes_from_attention, boxes_lost, center_boxes, full_image_boxes, largest_component_extent
from simpool_bench.errors import SimpoolBenchError

import lost_reference as ref


# ------------------------------------------------------------------------------ plain references
def largest_component_reference(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Breadth-first 4-connected components in row-major discovery order; the largest, ties to
    the first discovered; its patch extent (x0, y0, x1, y1). Empty mask: the whole grid."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for y in range(h):
        for x in range(w):
            if not mask[y, x] or seen[y, x]:
                continue
            comp, queue = [], deque([(y, x)])
            seen[y, x] = True
            while queue:
                cy, cx = queue.popleft()
                comp.append((cy, cx))
                for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
            if len(comp) > len(best):
                best = comp
    if not best:
        return 0, 0, w, h
    ys = [p[0] for p in best]
    xs = [p[1] for p in best]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def image_size_for(grid: int, stride: int, rng: np.random.Generator) -> int:
    """A pixel size whose patch grid (zero-padded to the stride) is ``grid``."""
    return int(rng.integers((grid - 1) * stride + 1, grid * stride + 1))


def random_map(rng: np.random.Generator, gh: int, gw: int) -> np.ndarray:
    """Adversarial float32 attention maps: continuous, heavy ties, blobs, constant, all-zero."""
    kind = rng.integers(0, 7)
    if kind == 0:
        return rng.random((gh, gw)).astype(np.float32) ** float(rng.uniform(1, 6))
    if kind == 1:
        return rng.integers(0, 4, (gh, gw)).astype(np.float32)
    if kind == 2:
        m = (rng.random((gh, gw)) * 0.05).astype(np.float32)
        for _ in range(rng.integers(1, 4)):
            y0, x0 = rng.integers(0, gh), rng.integers(0, gw)
            m[y0 : y0 + rng.integers(1, 5), x0 : x0 + rng.integers(1, 5)] += np.float32(rng.uniform(0.5, 2))
        return m
    if kind == 3:
        return np.full((gh, gw), np.float32(rng.choice([1.0, 0.3])), dtype=np.float32)
    if kind == 4:
        m = np.zeros((gh, gw), np.float32)
        m.flat[rng.integers(0, gh * gw, rng.integers(1, 4))] = 1.0
        return m
    if kind == 5:  # softmax-like maps, as a CLS row
        z = rng.normal(0, rng.uniform(0.5, 4), (gh, gw))
        e = np.exp(z - z.max())
        return (e / e.sum()).astype(np.float32)
    return (rng.random((gh, gw)) < 0.5).astype(np.float32) * rng.integers(1, 3, (gh, gw)).astype(np.float32)


def oracle_attention_box(m: np.ndarray, stride: int, hw: tuple[int, int], mass: float, lost_compat: bool) -> list[int]:
    """LOST dino_seg (compat) or the plain largest component (default) on one cropped map."""
    gh, gw = m.shape
    row = torch.from_numpy(m.reshape(1, -1).copy())
    if lost_compat:
        try:
            return [int(v) for v in ref.dino_seg(row, (gh, gw), stride, official_th=mass)]
        except ValueError:  # LOST fails on an empty selection: we return the whole grid
            return [0, 0, gw * stride, gh * stride]
    mask = ref.dino_seg_mask(row, (gh, gw), official_th=mass)
    x0, y0, x1, y1 = (v * stride for v in largest_component_reference(mask))
    h, w = hw
    return [min(x0, w), min(y0, h), min(x1, w), min(y1, h)]


# ------------------------------------------------------------------------------ attention boxes
def test_attention_boxes_equal_oracle_on_random_padded_batches() -> None:
    rng = np.random.default_rng(0)
    n_maps, n_differ, n_last_label = 0, 0, 0
    while n_maps < 1200:
        stride = int(rng.choice([8, 14, 16]))
        mass = float(rng.choice([0.6, 0.6, 0.3, 0.9, 1.0]))
        b = int(rng.integers(1, 12))
        grids = rng.integers(1, 15, (b, 2))
        big = grids.max(axis=0) + rng.integers(0, 3, 2)
        # padding patches get huge attention: any leak would dominate the mass rule
        attn = (rng.random((b, *big)) * 1e4 + 1e4).astype(np.float32)
        hws, maps = [], []
        for i, (gh, gw) in enumerate(grids):
            m = random_map(rng, int(gh), int(gw))
            attn[i, :gh, :gw] = m
            maps.append(m)
            hws.append((image_size_for(int(gh), stride, rng), image_size_for(int(gw), stride, rng)))
        hws = np.array(hws)
        got_default = boxes_from_attention(torch.from_numpy(attn), hws, stride, mass=mass)
        got_compat = boxes_from_attention(torch.from_numpy(attn), hws, stride, mass=mass, lost_compat=True)
        for i, m in enumerate(maps):
            hw = (int(hws[i, 0]), int(hws[i, 1]))
            exp_default = oracle_attention_box(m, stride, hw, mass, lost_compat=False)
            exp_compat = oracle_attention_box(m, stride, hw, mass, lost_compat=True)
            assert got_default[i].tolist() == exp_default, (i, m, mass)
            assert got_compat[i].tolist() == exp_compat, (i, m, mass)
            # default boxes stay inside the image; compat ones inside LOST's padded image
            assert 0 <= got_default[i, 0] < got_default[i, 2] <= hw[1]
            assert 0 <= got_default[i, 1] < got_default[i, 3] <= hw[0]
            assert got_compat[i, 2] <= m.shape[1] * stride and got_compat[i, 3] <= m.shape[0] * stride
            n_maps += 1
            clipped = np.minimum(got_compat[i], [hw[1], hw[0], hw[1], hw[0]])
            n_differ += got_default[i].tolist() != clipped.tolist()
            mask = ref.dino_seg_mask(torch.from_numpy(m.reshape(1, -1).copy()), m.shape, official_th=mass)
            labels, n = scipy.ndimage.label(mask)
            if n >= 2 and np.bincount(labels.ravel())[1:].argmax() + 1 == n:
                n_last_label += 1
    assert n_last_label >= 30 and n_differ >= 30, (n_last_label, n_differ)


def test_attention_batched_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    stride = 16
    b = 24
    grids = rng.integers(1, 12, (b, 2))
    attn = rng.random((b, 13, 13)).astype(np.float32)
    for i, (gh, gw) in enumerate(grids):
        attn[i, :gh, :gw] = random_map(rng, int(gh), int(gw))
    hws = np.array([(image_size_for(int(gh), stride, rng), image_size_for(int(gw), stride, rng)) for gh, gw in grids])
    for compat in (False, True):
        batched = boxes_from_attention(torch.from_numpy(attn), hws, stride, lost_compat=compat)
        for i in range(b):
            gh, gw = grids[i]
            one = torch.from_numpy(attn[i : i + 1, :gh, :gw].copy())
            alone = boxes_from_attention(one, hws[i : i + 1], stride, lost_compat=compat)
            assert batched[i].tolist() == alone[0].tolist()


def test_last_label_largest_compat_differs_exactly_as_lost() -> None:
    # mass=1.0 keeps exactly the positive patches: a 1-patch component (label 1) and a 12-patch
    # one (label 2, the last): LOST's range(max(labels)) never sees label 2.
    m = np.zeros((6, 6), np.float32)
    m[0, 0] = 1.0
    m[4:, :] = 1.0
    attn = torch.from_numpy(m[None])
    hw = np.array([[90, 85]])  # grid 6x6 at stride 16 (padded to 96x96)
    assert boxes_from_attention(attn, hw, 16, mass=1.0).tolist() == [[0, 64, 85, 90]]
    assert boxes_from_attention(attn, hw, 16, mass=1.0, lost_compat=True).tolist() == [[0, 0, 16, 16]]
    assert ref.dino_seg(attn.reshape(1, -1), (6, 6), 16, official_th=1.0) == [0, 0, 16, 16]
    # one component: LOST picks label 0, the background (rows 0..3), and does not clip
    m1 = np.zeros((6, 6), np.float32)
    m1[4:, 2:4] = 1.0
    a1 = torch.from_numpy(m1[None])
    assert boxes_from_attention(a1, hw, 16, mass=1.0).tolist() == [[32, 64, 64, 90]]
    assert boxes_from_attention(a1, hw, 16, mass=1.0, lost_compat=True).tolist() == [[0, 0, 96, 96]]
    assert boxes_from_attention(a1, hw, 16, mass=1.0, lost_compat=True, clip=True).tolist() == [[0, 0, 85, 90]]
    assert ref.dino_seg(a1.reshape(1, -1), (6, 6), 16, official_th=1.0) == [0, 0, 96, 96]


def test_equal_size_components_tie_to_first_in_row_major_order() -> None:
    mask = np.zeros((5, 5), bool)
    mask[3, 0:2] = True  # found second in row-major order
    mask[0, 3:5] = True  # found first
    assert largest_component_extent(mask) == (3, 0, 5, 1)
    assert largest_component_reference(mask) == (3, 0, 5, 1)
    # compat with two components: labels 1 only (label 2 skipped)
    assert largest_component_extent(mask, lost_compat=True) == (3, 0, 5, 1)


def test_mass_rule_ties_drop_lower_index_first() -> None:
    # 4 equal patches, mass 0.6: cumsum 0.25, 0.5, 0.75, 1 > 0.4 keeps the last three in stable order
    attn = torch.ones(1, 1, 4)
    box = boxes_from_attention(attn, np.array([[16, 64]]), 16)
    assert box.tolist() == [[16, 0, 64, 16]]


def test_padding_never_leaks_and_valid_hw_crops() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        gh, gw = (int(v) for v in rng.integers(1, 8, 2))
        m = random_map(rng, gh, gw)
        hw = np.array([[image_size_for(gh, 16, rng), image_size_for(gw, 16, rng)]])
        padded = np.full((1, gh + 3, gw + 2), 1e6, np.float32)
        padded[0, :gh, :gw] = m
        want = boxes_from_attention(torch.from_numpy(m[None].copy()), hw, 16)
        assert boxes_from_attention(torch.from_numpy(padded), hw, 16).tolist() == want.tolist()
        assert boxes_from_attention(torch.from_numpy(padded), hw, 16, valid_hw=[[gh, gw]]).tolist() == want.tolist()
        assert want[0, 2] <= hw[0, 1] and want[0, 3] <= hw[0, 0]


def test_attention_input_errors() -> None:
    with pytest.raises(SimpoolBenchError, match="patch grid"):
        boxes_from_attention(torch.ones(1, 2, 2), np.array([[40, 20]]), 16)
    with pytest.raises(SimpoolBenchError, match="mass"):
        boxes_from_attention(torch.ones(1, 2, 2), np.array([[32, 32]]), 16, mass=0.0)
    with pytest.raises(SimpoolBenchError, match="stride"):
        boxes_from_attention(torch.ones(1, 2, 2), np.array([[32, 32]]), 0)
    with pytest.raises(SimpoolBenchError, match="image_hw"):
        boxes_from_attention(torch.ones(2, 2, 2), np.array([[32, 32, 1]]), 16)
    with pytest.raises(SimpoolBenchError, match="attn"):
        boxes_from_attention(torch.ones(2, 2), np.array([[32, 32]]), 16)


# ------------------------------------------------------------------------------ LOST boxes
def random_keys(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    d = int(rng.choice([2, 3, 4, 8, 16]))
    kind = rng.integers(0, 3)
    if kind == 0:  # small integers: exact products, heavy degree ties, zero keys
        return rng.integers(-2, 3, (b, n, d)).astype(np.float32)
    if kind == 1:
        return rng.normal(0, 1, (b, n, d)).astype(np.float32)
    return (rng.normal(0, 1, (b, n, d)) + rng.normal(0, 1.5, (1, 1, d))).astype(np.float32)


def oracle_lost_box(keys: np.ndarray, gh: int, gw: int, hw: tuple[int, int], stride: int, k: int) -> tuple[list[int], bool]:
    """LOST's box for one image; on LOST's ValueError the seed patch's box (our documented fallback)."""
    feats = torch.from_numpy(keys[None].copy())
    try:
        pred, *_ = ref.lost(feats, [gh, gw], [stride, stride], (3, *hw), k_patches=k)
        return [int(v) for v in pred], False
    except ValueError:
        A = (feats @ feats.transpose(1, 2)).squeeze()
        seed = int(ref.patch_scoring(A.reshape(gh * gw, gh * gw))[0][0])
        sy, sx = divmod(seed, gw)
        return [sx * stride, sy * stride, min((sx + 1) * stride, hw[1]), min((sy + 1) * stride, hw[0])], True


def test_lost_boxes_equal_oracle_on_random_features() -> None:
    rng = np.random.default_rng(3)
    n_sets, n_fallback = 0, 0
    while n_sets < 1000:
        stride = int(rng.choice([8, 16]))
        gh, gw = (int(v) for v in rng.integers(1, 13, 2))
        if gh * gw == 1:  # LOST's squeeze() makes A 0-d there and fails: see the 1x1 test
            continue
        b = int(rng.integers(1, 9))
        k = int(rng.choice([1, 3, 10, 100]))
        keys = random_keys(rng, b, gh * gw)
        hws = np.array([(image_size_for(gh, stride, rng), image_size_for(gw, stride, rng)) for _ in range(b)])
        got = boxes_lost(torch.from_numpy(keys), (gh, gw), hws, stride, k_patches=k)
        for i in range(b):
            want, fell_back = oracle_lost_box(keys[i], gh, gw, (int(hws[i, 0]), int(hws[i, 1])), stride, k)
            assert got[i].tolist() == want, (i, gh, gw, k)
            n_fallback += fell_back
            n_sets += 1
    assert n_fallback >= 5, n_fallback


def test_lost_default_k_is_losts_100() -> None:
    """``boxes_lost`` without ``k_patches`` is LOST's ``--k_patches`` default, 100: on a 12x14 grid
    (168 patches, more than 100) of random keys its boxes are LOST's at k = 100, and this set is one
    where k = 50 and k = 150 give other boxes (so another default could not pass)."""
    rng = np.random.default_rng(0)
    gh, gw, stride = 12, 14, 16
    keys = rng.normal(0, 1, (12, gh * gw, 4)).astype(np.float32)
    hws = np.tile([gh * stride, gw * stride], (12, 1))
    got = boxes_lost(torch.from_numpy(keys), (gh, gw), hws, stride)
    want = {k: [oracle_lost_box(keys[i], gh, gw, (gh * stride, gw * stride), stride, k)[0] for i in range(12)] for k in (50, 100, 150)}
    assert got.tolist() == want[100]
    assert want[50] != want[100] and want[150] != want[100]


def test_lost_batched_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(4)
    gh, gw, b = 7, 9, 16
    keys = torch.from_numpy(random_keys(rng, b, gh * gw))
    hws = np.array([(image_size_for(gh, 16, rng), image_size_for(gw, 16, rng)) for _ in range(b)])
    batched = boxes_lost(keys, np.tile([gh, gw], (b, 1)), hws, 16)
    for i in range(b):
        assert batched[i].tolist() == boxes_lost(keys[i : i + 1], (gh, gw), hws[i : i + 1], 16)[0].tolist()


def test_lost_planted_object() -> None:
    # keys: background patches share one direction, object patches an orthogonal one. Every
    # background patch is similar to the many others (high degree); the seed is an object patch.
    gh, gw = 8, 10
    keys = torch.zeros(1, gh * gw, 4)
    keys[0, :, 0] = 1.0
    obj = [(y, x) for y in range(2, 5) for x in range(3, 7)]
    for y, x in obj:
        keys[0, y * gw + x] = torch.tensor([-1.0, 1.0, 0.0, 0.0])
    box = boxes_lost(keys, (gh, gw), np.array([[120, 150]]), 16)
    assert box.tolist() == [[48, 32, 112, 80]]


def test_lost_single_patch_grid() -> None:
    keys = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    assert boxes_lost(keys, (1, 1), np.array([[10, 12], [16, 16]]), 16).tolist() == [[0, 0, 12, 10], [0, 0, 16, 16]]


def test_lost_input_errors() -> None:
    with pytest.raises(SimpoolBenchError, match="grid_hw"):
        boxes_lost(torch.ones(1, 6, 2), (2, 2), np.array([[32, 32]]), 16)
    with pytest.raises(SimpoolBenchError, match="grid_hw"):
        boxes_lost(torch.ones(2, 4, 2), np.array([[2, 2], [1, 4]]), np.array([[32, 32], [16, 64]]), 16)
    with pytest.raises(SimpoolBenchError, match="k_patches"):
        boxes_lost(torch.ones(1, 4, 2), (2, 2), np.array([[32, 32]]), 16, k_patches=0)
    with pytest.raises(SimpoolBenchError, match="keys"):
        boxes_lost(torch.ones(4, 2), (2, 2), np.array([[32, 32]]), 16)


# ------------------------------------------------------------------------------ baselines
def test_center_and_full_image_boxes() -> None:
    hw = np.array([[10, 20], [1, 1], [7, 5], [375, 500]])
    assert center_boxes(hw).tolist() == [[5, 2, 15, 8], [0, 0, 1, 1], [1, 1, 4, 6], [125, 93, 375, 282]]
    for (h, w), box in zip(hw, center_boxes(hw)):
        assert box[2] - box[0] >= w / 2 and box[3] - box[1] >= h / 2
        assert box[0] == w - box[2] and box[1] == h - box[3]  # centred
        assert box[0] == math.floor(w / 4) and box[1] == math.floor(h / 4)
    assert center_boxes(hw, fraction=1.0).tolist() == full_image_boxes(hw).tolist()
    assert full_image_boxes(hw).tolist() == [[0, 0, 20, 10], [0, 0, 1, 1], [0, 0, 5, 7], [0, 0, 500, 375]]
    assert full_image_boxes(np.array([[3, 4]])).dtype == np.int64
    with pytest.raises(SimpoolBenchError, match="image_hw"):
        full_image_boxes(np.array([[0, 4]]))


# ------------------------------------------------------------------------------ ties: LOST's own sort ops
def tied_similarity(rng: np.random.Generator, n: int) -> torch.Tensor:
    """A symmetric (n, n) float32 similarity whose degrees are integer counts with many ties:
    patches fall in a few groups, positive within a group and with random other groups."""
    groups = rng.integers(0, int(rng.integers(2, 6)), n)
    link = rng.random((6, 6)) < 0.4
    link = link | link.T | np.eye(6, dtype=bool)
    sign = np.where(link[groups][:, groups], 1.0, -1.0)
    mag = rng.integers(1, 4, (n, n)).astype(np.float32)
    mag = np.triu(mag) + np.triu(mag, 1).T
    return torch.from_numpy((sign * mag).astype(np.float32))


@pytest.mark.parametrize("n", [9, 16, 17, 40, 100, 257, 1000])
def test_degree_order_is_lost_patch_scoring_on_tied_degrees(n) -> None:
    from simpool_bench.discovery import lost_degree_order

    rng = np.random.default_rng(n)
    n_unstable = 0
    for _ in range(4):
        sim = tied_similarity(rng, n)
        want, cent = ref.patch_scoring(sim.clone())
        assert len(torch.unique(cent)) <= max(n // 2, 6)  # ties are the rule
        got = lost_degree_order(sim.clone())
        assert torch.equal(got, want)
        assert torch.equal(lost_degree_order(sim[None].expand(2, n, n).clone())[1], want)  # batched = per image
        n_unstable += int(not torch.equal(want, torch.argsort(cent, descending=True, stable=True)))
    assert (n_unstable > 0) == (n > 16)  # the stable order is LOST's only up to 16 patches (CPU)


@pytest.mark.parametrize("n", [9, 16, 17, 40, 100, 257, 1000])
def test_mass_mask_is_dino_seg_sort_on_tied_attention(n) -> None:
    from simpool_bench.discovery import attention_mass_mask

    rng = np.random.default_rng(100 + n)
    gh = int(next(d for d in range(int(math.isqrt(n)), 0, -1) if n % d == 0))
    gw = n // gh
    differs_from_stable = 0
    for _ in range(4):
        maps = torch.from_numpy(rng.integers(1, 4, (3, n)).astype(np.float32))
        got = attention_mass_mask(maps.clone()).numpy()
        for h in range(3):
            assert np.array_equal(got[h].reshape(gh, gw), ref.dino_seg_mask(maps.clone(), (gh, gw), head=h))
        val, idx = torch.sort(maps, dim=1, stable=True)
        keep = torch.cumsum(val / val.sum(dim=1, keepdim=True), dim=1) > 0.4
        stable = torch.empty_like(keep).scatter_(1, idx, keep).numpy()
        differs_from_stable += int(not np.array_equal(stable, got))
    assert (differs_from_stable > 0) == (n > 16)


@pytest.mark.parametrize("gh,gw", [(3, 3), (4, 5), (10, 10), (25, 40)])
def test_lost_boxes_equal_oracle_on_tied_keys(gh, gw) -> None:
    """Keys drawn from a few discrete vectors: integer degrees tie in blocks and the seed and the
    seed expansion follow LOST's tie order."""
    rng = np.random.default_rng(gh * 100 + gw)
    stride = 16
    for _ in range(6):
        protos = rng.integers(-2, 3, (int(rng.integers(2, 5)), 6)).astype(np.float32)
        keys = protos[rng.integers(0, len(protos), (2, gh * gw))]
        hws = np.array([(image_size_for(gh, stride, rng), image_size_for(gw, stride, rng)) for _ in range(2)])
        got = boxes_lost(torch.from_numpy(keys), (gh, gw), hws, stride)
        for i in range(2):
            want, _ = oracle_lost_box(keys[i], gh, gw, (int(hws[i, 0]), int(hws[i, 1])), stride, 100)
            assert got[i].tolist() == want


# ------------------------------------------------------------------------------ mutation-testing gaps
def test_lost_degree_skips_the_diagonal_so_a_zero_key_ties_an_isolated_patch() -> None:
    """LOST ``patch_scoring`` zeroes the diagonal before counting: an isolated patch (negative
    similarity to every other) and a zero key both have degree 0, and the tie goes to the isolated
    patch 0 (LOST's sort, stable at 6 patches). Counting the diagonal (|k|^2 > 0) would give the
    isolated patch degree 1 and make the zero key the seed (LOST raises there: its own box)."""
    keys = torch.tensor([[[-1.0, 0.0], [1.0, 0.0], [1.0, 0.5], [2.0, 0.0], [1.0, -0.5], [0.0, 0.0]]])
    hw = (32, 48)  # grid 2x3 at stride 16
    want, fell_back = oracle_lost_box(keys[0].numpy(), 2, 3, hw, 16, 100)
    assert want == [0, 0, 16, 16] and not fell_back
    assert boxes_lost(keys, (2, 3), np.array([hw]), 16).tolist() == [want]


def test_lost_float64_keys_are_cast_to_float32_where_detect_box_casts() -> None:
    """float64 keys are kept for the similarity and the degrees (the seed), and LOST's
    ``detect_box`` casts the expanded map to float32 (``.float()``) before ``> 0``: keys of size
    1e-30 give similarities of 1e-60, positive in float64 and 0 in float32."""
    gh, gw = 3, 4
    keys = np.zeros((gh * gw, 2))
    keys[:, 0] = 1.0
    keys[[5, 6]] = [-1.0, 1.0]  # a 2-patch object at row 1, columns 1-2
    keys *= 1e-30
    hw = (48, 64)
    got = boxes_lost(torch.from_numpy(keys[None]), (gh, gw), np.array([hw]), 16)
    want, fell_back = oracle_lost_box(keys, gh, gw, hw, 16, 100)
    # seed 5 (degree 1, found in float64); its map 4e-60 > 0 is 0 in float32: LOST raises, the seed's box
    assert fell_back and want == [16, 16, 32, 32] and got.tolist() == [want]
    # the same keys at scale 1: the 2-patch component
    assert boxes_lost(torch.from_numpy(keys[None] * 1e30), (gh, gw), np.array([hw]), 16).tolist() == [[16, 16, 48, 32]]


def test_float64_attention_keeps_its_precision() -> None:
    """Maps are normalised in float64 when given in float64: mass 1.0 keeps exactly the positive
    patches, here values of 1e-50 that are 0 in float32."""
    m = np.zeros((1, 3, 4))
    m[0, 1, 1:3] = 1e-50
    got = boxes_from_attention(torch.from_numpy(m), np.array([[48, 64]]), 16, mass=1.0)
    assert got.tolist() == [[16, 16, 48, 32]]


def test_discovery_misuses_are_one_error() -> None:
    """Each bad argument is a SimpoolBenchError naming it, never a silent reading or a traceback."""
    attn, hw = torch.ones(1, 2, 2), np.array([[32, 32]])
    for stride in (True, 16.5):  # True is no stride of 1 (a 2x2 image has a 2x2 grid at stride 1)
        with pytest.raises(SimpoolBenchError, match="stride: expected"):
            boxes_from_attention(attn, np.array([[2, 2]]), stride)
    with pytest.raises(SimpoolBenchError, match="image_hw"):
        boxes_from_attention(attn, np.array([[31.5, 32.0]]), 16)
    with pytest.raises(SimpoolBenchError, match="mass"):
        boxes_from_attention(attn, hw, 16, mass=1.5)
    with pytest.raises(SimpoolBenchError, match="patch grid"):  # the map is narrower than the image's grid
        boxes_from_attention(torch.ones(1, 2, 1), hw, 16)
    with pytest.raises(SimpoolBenchError, match="valid_hw"):
        boxes_from_attention(attn, hw, 16, valid_hw=[[0, 2]])
    keys = torch.ones(1, 4, 2)
    for k in (True, 2.5, -1):
        with pytest.raises(SimpoolBenchError, match="k_patches"):
            boxes_lost(keys, (2, 2), hw, 16, k_patches=k)
    with pytest.raises(SimpoolBenchError, match="image_hw"):
        boxes_lost(keys, (2, 2), np.array([[32, 0]]), 16)
    with pytest.raises(SimpoolBenchError, match="fraction"):
        center_boxes(hw, fraction=1.5)
    with pytest.raises(SimpoolBenchError, match="fraction"):
        center_boxes(hw, fraction=0.0)
