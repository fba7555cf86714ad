"""Tests for simpool_bench.plotting: PNG content of the overlay grid and the BoxAcc curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simpool_bench import plotting as V
from simpool_bench.errors import SimpoolBenchError

H, W = 40, 50
GRAY = 100


def _grid(tmp_path, **kw):
    """Two gray images, two models. Row 0: a GT box and model A's predicted box. Row 1: no boxes;
    maps of A and B equal on the left half (both hold the extremes 0 and 1 there, so the per-image
    normalisation is the same) and different on the right half."""
    rng = np.random.default_rng(0)
    images = [np.full((H, W, 3), GRAY, np.uint8) for _ in range(2)]
    left = rng.uniform(0.1, 0.9, (H, W // 2))
    left[:, 0], left[:, 1] = 0.0, 1.0
    a1 = np.concatenate([left, rng.uniform(0.1, 0.9, (H, W - W // 2))], axis=1)
    b1 = np.concatenate([left, rng.uniform(0.1, 0.9, (H, W - W // 2))], axis=1)
    a0 = np.zeros((7, 7))
    a0[3, 3] = 1.0
    maps = [[a0, a1], [np.ones((7, 7)), b1]]
    gt = [np.array([[5, 6, 30, 25]]), np.zeros((0, 4))]
    pred = [[np.array([10, 12, 45, 35]), None], [None, None]]
    out = V.overlay_grid(images, maps, gt, pred, ["A", "B"], tmp_path / "grid.png", **kw)
    return np.asarray(Image.open(out).convert("RGB")), images, maps


# Layout (PAD=4, TITLE_HEIGHT=18, cells 50x40): cell (r, c) starts at x = 4 + 54 c, y = 22 + 44 r.
def _origin(r: int, c: int) -> tuple[int, int]:
    return 4 + 54 * c, 22 + 44 * r


def test_overlay_grid_size(tmp_path):
    png, _, _ = _grid(tmp_path)
    # 3 columns of 50 px and 4 px gaps around them; a title strip of 18 px, 2 rows of 40 px
    assert png.shape == (18 + 4 + 2 * (40 + 4), 4 + 3 * (50 + 4), 3) == (110, 166, 3)
    assert V.cell_origin([H, H], W, 1, 2) == _origin(1, 2)


def _edge_pixels(box, origin, width=2):
    """Pixels of an inward outline of an inclusive box, in grid coordinates (y, x)."""
    x0, y0, x1, y1 = box
    ox, oy = origin
    pts = set()
    for k in range(width):
        for x in range(x0, x1 + 1):
            pts |= {(oy + y0 + k, ox + x), (oy + y1 - k, ox + x)}
        for y in range(y0, y1 + 1):
            pts |= {(oy + y, ox + x0 + k), (oy + y, ox + x1 - k)}
    return pts


def test_boxes_drawn_on_their_edges(tmp_path):
    png, _, _ = _grid(tmp_path)
    gt_box, pred_box = (5, 6, 30, 25), (10, 12, 45, 35)
    for c in range(3):  # GT on every cell of row 0
        edges = _edge_pixels(gt_box, _origin(0, c))
        pred_edges = _edge_pixels(pred_box, _origin(0, 1)) if c == 1 else set()
        for y, x in edges - pred_edges:  # where the predicted box crosses it, the prediction is on top
            assert tuple(png[y, x]) == V.GT_COLOR, (c, y, x)
        ox, oy = _origin(0, c)
        # just outside and just inside the outline: not the GT colour
        assert tuple(png[oy + 5, ox + 15]) != V.GT_COLOR and tuple(png[oy + 15, ox + 4]) != V.GT_COLOR
        assert tuple(png[oy + 15, ox + 7]) != V.GT_COLOR
    for y, x in _edge_pixels(pred_box, _origin(0, 1)):
        assert tuple(png[y, x]) == V.PRED_COLOR, (y, x)
    # the prediction of model A is not drawn in the image column nor in model B's column
    for c in (0, 2):
        ox, oy = _origin(0, c)
        assert not any(
            tuple(png[y - _origin(0, 1)[1] + oy, x - _origin(0, 1)[0] + ox]) == V.PRED_COLOR
            for y, x in _edge_pixels(pred_box, _origin(0, 1))
        )
    # row 1 has no boxes at all
    ox, oy = _origin(1, 0)
    cell = png[oy : oy + H, ox : ox + 3 * 54 - 4]
    assert not (cell == V.GT_COLOR).all(-1).any() and not (cell == V.PRED_COLOR).all(-1).any()


def test_image_column_is_the_image(tmp_path):
    png, images, _ = _grid(tmp_path)
    ox, oy = _origin(1, 0)
    assert np.array_equal(png[oy : oy + H, ox : ox + W], images[1])


def test_heatmap_pixels_follow_the_maps(tmp_path):
    png, _, _ = _grid(tmp_path)
    (ax, ay), (bx, by) = _origin(1, 1), _origin(1, 2)
    cell_a = png[ay : ay + H, ax : ax + W].astype(int)
    cell_b = png[by : by + H, bx : bx + W].astype(int)
    half = W // 2
    # equal maps (at full resolution: no resampling) -> equal pixels; different maps -> different pixels
    assert np.array_equal(cell_a[:, :half], cell_b[:, :half])
    differs = np.any(cell_a[:, half:] != cell_b[:, half:], axis=-1)
    assert differs.mean() > 0.9
    # the overlay is not the plain image, and the colour map runs blue (0) to red (1) on the gray image
    assert np.any(cell_a != GRAY)
    low, high = cell_a[:, 0], cell_a[:, 1]
    assert (low[:, 2] > low[:, 0] + 40).all() and (high[:, 0] > high[:, 2] + 40).all()
    # a constant map shows as zeros (all blue), like wsolevaluation's normalize_scoremap
    cx, cy = _origin(0, 2)
    const = png[cy + 14 : cy + 20, cx + 35 : cx + 45].astype(int)
    assert (const[..., 2] > const[..., 0] + 40).all()
    # the 7x7 map with one peak is upsampled: the cell centre is red, its corners blue
    px, py = _origin(0, 1)
    centre, corner = png[py + H // 2, px + W // 2].astype(int), png[py + 38, px + 2].astype(int)
    assert centre[0] > centre[2] + 40 and corner[2] > corner[0] + 40


def test_overlay_grid_input_errors(tmp_path):
    img = [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(SimpoolBenchError, match="model 0 has 2 maps for 1 images"):
        V.overlay_grid(img, [[np.ones((2, 2))] * 2], [np.zeros((0, 4))], None, ["A"], tmp_path / "x.png")
    with pytest.raises(SimpoolBenchError, match="image 0 must be an .H, W, 3. uint8 array"):
        V.overlay_grid([np.zeros((8, 8))], [[np.ones((2, 2))]], [np.zeros((0, 4))], None, ["A"], tmp_path / "x.png")
    with pytest.raises(SimpoolBenchError, match="3 titles for 1 models"):
        V.overlay_grid(img, [[np.ones((2, 2))]], [np.zeros((0, 4))], None, ["a", "b", "c"], tmp_path / "x.png")
    out = V.overlay_grid(img, [[np.ones((2, 2))]], [np.zeros((0, 4))], None, ["image", "A"], tmp_path / "sub" / "ok.png")
    assert out.is_file()


def test_boxacc_curves(tmp_path):
    t = np.arange(0, 1, 0.01)
    acc = np.stack([100 * np.sin(np.pi * t) ** k for k in (1, 2, 3)], axis=1)
    out = V.boxacc_curves({"simpool": (t, acc), "gap": (t, acc * 0.5)}, tmp_path / "c.png")
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape == (500, 800, 3)  # figsize 8x5 inches at 100 dpi
    # the first two tab10 colours (one per run) are drawn
    for color in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(png.astype(int) - color).sum(-1) < 10).sum() > 200
    out = V.boxacc_curves({"one IoU": (t, acc[:, 1])}, tmp_path / "d.png", figsize=(4, 3), dpi=50)
    assert Image.open(out).size == (200, 150)
    with pytest.raises(SimpoolBenchError, match="curve 'bad'"):
        V.boxacc_curves({"bad": (t, acc[:-1])}, tmp_path / "e.png")
    with pytest.raises(SimpoolBenchError, match="no curves"):
        V.boxacc_curves({}, tmp_path / "f.png")
