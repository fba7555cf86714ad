"""Tests for simpool_bench.plotting: PNG content of the overlay grid and the BoxAcc curves."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import colormaps
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
    with Image.open(out) as im:
        assert im.size == (200, 150)
    with pytest.raises(SimpoolBenchError, match="curve 'bad'"):
        V.boxacc_curves({"bad": (t, acc[:-1])}, tmp_path / "e.png")
    with pytest.raises(SimpoolBenchError, match="no curves"):
        V.boxacc_curves({}, tmp_path / "f.png")


def test_heatmap_overlay_blends_the_bicubic_normalised_map_at_alpha():
    """A (3, 4) map on a (6, 10) image: upsampled bicubically (OpenCV, the protocol's resize) to
    the image, min-max normalised from its own minimum, coloured with the colour map asked for and
    blended (1 - alpha) image + alpha heat; a map with a NaN shows as zeros."""
    import cv2

    rng = np.random.default_rng(4)
    img = rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)
    m = 2.0 + rng.random((3, 4))
    up = cv2.resize(m.astype(np.float32), (10, 6), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    heat = colormaps["viridis"]((up - up.min()) / (up.max() - up.min()))[..., :3] * 255.0
    want = 0.75 * img + 0.25 * heat
    got = V.heatmap_overlay(img, m, alpha=0.25, cmap="viridis")
    assert got.dtype == np.uint8 and np.abs(got - want).max() <= 0.5 + 1e-3
    m[1, 2] = np.nan
    zero = 0.75 * img + 0.25 * np.asarray(colormaps["viridis"](0.0)[:3]) * 255.0
    assert np.abs(V.heatmap_overlay(img, m, alpha=0.25, cmap="viridis") - zero).max() <= 0.5 + 1e-3


def test_boxes_are_clipped_ordered_and_rounded_to_the_image(tmp_path):
    """A box reaching out of the image is drawn on the image's border pixels, never on the padding
    or the next cell; corners given in either order and at fractional pixels (rounded) draw the
    same outline; cells are as wide as the widest image."""
    images = [np.zeros((20, 30, 3), np.uint8), np.zeros((10, 36, 3), np.uint8)]  # cells 36 wide
    maps = [[np.ones((2, 2)), np.ones((2, 2))]]
    gt = [np.array([[-5.0, 18.7, 100.0, 3.6]]), np.zeros((0, 4))]
    out = V.overlay_grid(images, maps, gt, [[np.array([29.0, 8.0, 27.4, 2.0]), None]], ["A"], tmp_path / "g.png", line_width=1)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape == (18 + 4 + 20 + 4 + 10 + 4, 4 + 2 * (36 + 4), 3)
    green = (png == V.GT_COLOR).all(-1)
    want = np.zeros_like(green)
    for ox in (4, 4 + 40):  # both cells of row 0: x 0..29, y 4..19 (18.7 and 3.6 rounded, then ordered)
        for y, x in _edge_pixels((0, 4, 29, 19), (ox, 22), width=1):
            want[y, x] = True
    red = (png == V.PRED_COLOR).all(-1)
    want_red = np.zeros_like(red)
    for y, x in _edge_pixels((27, 2, 29, 8), (4 + 40, 22), width=1):
        want_red[y, x] = True
    assert np.array_equal(red, want_red)
    assert np.array_equal(green | red, want | want_red)


def test_overlay_grid_refuses_malformed_predictions(tmp_path):
    img, maps, gt = [np.zeros((8, 8, 3), np.uint8)], [[np.ones((2, 2))]], [np.zeros((0, 4))]
    with pytest.raises(SimpoolBenchError, match="predicted box of model 0, image 0 must have 4 numbers"):
        V.overlay_grid(img, maps, gt, [[np.arange(5)]], ["A"], tmp_path / "x.png")
    with pytest.raises(SimpoolBenchError, match="pred_boxes must be 1 lists .one per model. of 1 boxes or None"):
        V.overlay_grid(img, maps, gt, [[None], [None]], ["A"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_boxacc_curves_draw_each_iou_and_mark_its_maximum(monkeypatch, tmp_path):
    """Per run and IoU threshold a line of that IoU's column, and a marker at its maximum; a curve of
    another number of IoU columns is refused."""
    figures = []

    class Kept(V.Figure):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            figures.append(self)

    monkeypatch.setattr(V, "Figure", Kept)
    t = np.linspace(0.0, 0.99, 100)
    acc = np.stack([100 * np.exp(-((t - c) ** 2) / 0.02) * f for c, f in ((0.2, 0.9), (0.5, 0.7), (0.7, 0.4))], axis=1)
    V.boxacc_curves({"run": (t, acc)}, tmp_path / "c.png")
    lines = figures[0].axes[0].lines
    assert len(lines) == 6  # a line and its maximum's marker per IoU
    for j, (c, f) in enumerate(((0.2, 0.9), (0.5, 0.7), (0.7, 0.4))):
        curve, marker = lines[2 * j], lines[2 * j + 1]
        assert np.array_equal(curve.get_ydata(), acc[:, j]) and curve.get_label() == f"run IoU {(30, 50, 70)[j]}"
        k = int(round(c * 100))  # the Gaussian's centre is the maximum
        assert list(marker.get_xdata()) == [t[k]] and list(marker.get_ydata()) == [pytest.approx(100 * f)]
    with pytest.raises(SimpoolBenchError, match=r"curve 'two': boxacc shape \(100, 2\) does not fit 100 thresholds"):
        V.boxacc_curves({"two": (t, acc[:, :2])}, tmp_path / "d.png")
