"""Paper figures: formats, resolution, captions (image id, GT box, predicted box, IoU), and LOST's
seed and expanded patches equal to the literal LOST oracle's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from simpool_bench import api, figures
from simpool_bench import overlays as V
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.extraction import map_transform
from simpool_bench.figures import GT_RGB, PRED_RGB, LostPatches, check_figure_options, normalized_map, paper_figure
from simpool_bench.models import build_model

from conftest import build_voc_dataset
from lost_reference import lost as lost_reference
from lost_reference import patch_scoring


def _inputs(n=2, m=2):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(n)]
    maps = [[rng.random((5, 7)).astype(np.float32) for _ in range(n)] for _ in range(m)]
    gts = [np.array([[3, 4, 20, 30]]) for _ in range(n)]
    preds = [[np.array([5, 6, 22, 33]) for _ in range(n)] for _ in range(m)]
    ious = [[0.5, float("nan")] for _ in range(m)]
    return images, maps, gts, preds, ious, [f"img_{i}" for i in range(n)], [f"ckpt: src{j}" for j in range(m)]


def test_formats_resolution_and_captions(tmp_path):
    args = _inputs()
    with (
        Image.open(paper_figure(*args, tmp_path / "a.png", dpi=100)) as a,
        Image.open(paper_figure(*args, tmp_path / "b.png", dpi=200)) as b,
    ):
        a_size, b_size = a.size, b.size
    assert abs(b_size[0] - 2 * a_size[0]) <= 2 and abs(b_size[1] - 2 * a_size[1]) <= 2
    pdf = paper_figure(*args, tmp_path / "f.pdf", fmt="pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType text, editable
    svg = paper_figure(*args, tmp_path / "f.svg", fmt="svg").read_text()
    for text in ("img_0", "GT (3, 4, 20, 30)", "pred (5, 6, 22, 33)", "IoU 0.50", "IoU -", "src1", "normalised map (per image)"):
        assert f">{text}</text>" in svg, text  # text elements, not glyph paths
    images, maps, gts, preds, ious, ids, titles = args
    coco = [np.array([[3.25, 4.0, 20.5, 30.75]]), np.array([[0.0, 0.0, 1.0, 1.0]])]  # COCO's xywh in float pixels
    svg = paper_figure(images, maps, coco, preds, ious, ids, titles, tmp_path / "coco.svg", fmt="svg").read_text()
    assert ">GT (3.25, 4, 20.5, 30.75)</text>" in svg  # was (3, 4, 20, 30): the box drawn is not the box named
    for bad, match in ((dict(fmt="jpg"), "--format 'jpg'"), (dict(dpi=5), "--dpi 5"), (dict(cmap="nope"), "--cmap 'nope'")):
        with pytest.raises(SimpoolBenchError, match=match):
            paper_figure(*args, tmp_path / "x", **bad)


def test_an_interrupted_figure_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A figure is written whole or not at all: the old one stays when savefig fails half way."""
    from matplotlib.figure import Figure

    args = _inputs()
    for fmt in ("png", "pdf", "svg"):
        out = paper_figure(*args, tmp_path / f"f.{fmt}", fmt=fmt)
        old = out.read_bytes()

        def broken(self, f, **kwargs):
            f.write(b"half a figure")
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(Figure, "savefig", broken)
            with pytest.raises(KeyboardInterrupt):
                paper_figure(*args, tmp_path / f"f.{fmt}", fmt=fmt)
        assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "f.svg"]  # no temporary left


def test_normalized_map_is_the_protocols_view():
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = normalized_map(m, (2, 3))
    assert np.array_equal(out, m / 5.0)
    assert not normalized_map(np.ones((2, 2)), (4, 4)).any() and not normalized_map(np.full((2, 2), np.nan), (4, 4)).any()


def test_lost_columns_show_losts_seed_expansion_and_box(tmp_path):
    voc = build_voc_dataset(tmp_path / "voc", n=4, seed=5)
    records = api.read_discovery_data("voc07", voc)
    torch.manual_seed(0)
    model = build_model(
        "vit_tiny_patch16_224", pool="cls", num_classes=3, depth=2, embed_dim=32, num_heads=2, patch_size=8, img_size=32
    ).eval()
    src = V.lost_source(model, records, EngineConfig(device="cpu", batch_size=2, progress=False), k_patches=10, label="t")
    got = src.fetch(range(len(records)))
    tf = map_transform(model, "discover")
    for i, r in enumerate(records):
        x = tf(Image.open(r.path).convert("RGB"))[None]
        with torch.no_grad():
            keys = model(x, return_keys=True).keys
        gh, gw = x.shape[-2] // 8, x.shape[-1] // 8
        pred, A, _, seed = lost_reference(keys, (gh, gw), (8, 8), (3, r.height, r.width), k_patches=10)
        order, _ = patch_scoring(A)
        potentials = order[:10]
        similars = potentials[A[seed, potentials] > 0.0]
        box, lp = src.lost[i]
        assert np.array_equal(box, pred) and lp.seed == int(seed) and np.array_equal(lp.expanded, similars.numpy())
        assert np.allclose(got[i], A[similars, :].sum(0).reshape(gh, gw).numpy())
        assert isinstance(lp, LostPatches) and lp.grid_w == gw and lp.stride == 8
    res = V.render_overlays([src], records, tmp_path / "out", protocol="discover", n=2, figure_format="png")
    assert res.figure.exists()
    assert [tuple(b) for b in res.table[["x0", "y0", "x1", "y1"]].to_numpy()] == [tuple(src.lost[i][0]) for i in res.table["index"]]


def _drawn(monkeypatch, tmp_path, *args, **kw):
    """The Figure ``paper_figure`` draws, taken where it would be saved (its axes: the cells row by
    row, then the colour bar)."""
    got = {}

    def keep(fig, out, fmt, dpi):
        got["fig"] = fig
        return out

    monkeypatch.setattr(figures, "_save", keep)
    paper_figure(*args, tmp_path / "f.png", **kw)
    return got["fig"]


def _rgb(colour) -> tuple[float, ...]:
    return tuple(round(float(v), 3) for v in colour[:3])


def _extent(patch) -> tuple[float, float, float, float]:
    x, y = patch.get_xy()
    return x, y, x + patch.get_width(), y + patch.get_height()


def test_cells_show_their_columns_map_and_boxes_on_the_upright_image(monkeypatch, tmp_path):
    """Each map cell shows its own column's map, upsampled to the (non-square) image bicubically
    and min-max normalised, in the colour map and alpha asked for; boxes outline the inclusive
    pixels x0..x1 (pixel edges at x0 - 0.5 and x1 + 0.5); the image is upright (row 0 on top);
    captions name up to two GT boxes, then '...'."""
    import cv2

    rng = np.random.default_rng(3)
    h, w = 12, 20
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(2)]
    maps = [[5.0 + rng.random((3, 5)).astype(np.float32) for _ in range(2)] for _ in range(2)]
    gts = [np.array([[1, 2, 5, 6], [7, 1, 9, 3], [0, 0, 19, 11]]), np.array([[3, 3, 8, 9]])]
    preds = [[np.array([2, 3, 10, 8]), np.array([0, 1, 4, 5])], [np.array([4, 4, 6, 9]), None]]
    ious = [[0.25, 0.5], [0.75, float("nan")]]
    fig = _drawn(monkeypatch, tmp_path, images, maps, gts, preds, ious, ["a", "b"], ["A", "B"], cmap="viridis", alpha=0.3)
    for r in range(2):
        for c in range(3):
            ax = fig.axes[3 * r + c]
            assert ax.get_ylim() == (h - 0.5, -0.5) and ax.get_xlim() == (-0.5, w - 0.5)
            assert np.array_equal(ax.images[0].get_array(), images[r])
            boxes = {_extent(p): _rgb(p.get_edgecolor()) for p in ax.patches}
            want = {(x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5): GT_RGB for x0, y0, x1, y1 in gts[r]}
            if c == 0:
                gt_text = " ".join(f"({', '.join(map(str, b))})" for b in gts[r][:2]) + (" ..." if r == 0 else "")
                assert ax.texts[0].get_text() == f"{'ab'[r]}\nGT {gt_text}" and len(ax.images) == 1
            else:
                up = cv2.resize(maps[c - 1][r], (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float64)
                heat = ax.images[1]
                np.testing.assert_allclose(heat.get_array(), (up - up.min()) / (up.max() - up.min()), atol=1e-6)
                assert heat.get_alpha() == 0.3 and heat.get_cmap().name == "viridis" and heat.get_clim() == (0.0, 1.0)
                p = preds[c - 1][r]
                if p is not None:
                    want[(p[0] - 0.5, p[1] - 0.5, p[2] + 0.5, p[3] + 0.5)] = PRED_RGB
                iou = "-" if np.isnan(ious[c - 1][r]) else f"{ious[c - 1][r]:.2f}"
                box = "-" if p is None else f"({', '.join(map(str, p))})"
                assert ax.texts[0].get_text() == f"pred {box}\nIoU {iou}"
            assert boxes == want and len(ax.patches) == len(want), (r, c)


def test_lost_cells_and_exclusive_boxes(monkeypatch, tmp_path):
    """LOST's patches lie where their row-major index puts them on a non-square grid (index j:
    row j // grid_w, column j % grid_w, stride pixels each); boxes with an exclusive max (LOST's)
    end on pixel x1 - 1, and an empty one still covers one pixel; a LOST cell has no heat map."""
    h, w, s = 12, 20, 4  # a 3 x 5 patch grid
    image = np.zeros((h, w, 3), dtype=np.uint8)
    lp = LostPatches(seed=7, expanded=np.array([7, 3, 9]), grid_w=5, stride=s)
    gt, pred = np.array([[2, 3, 10, 8], [4, 4, 4, 4]]), np.array([1, 1, 6, 5])
    fig = _drawn(monkeypatch, tmp_path, [image], [[np.ones((3, 5))]], [gt], [[pred]], [[0.5]], ["a"], ["lost"], lost=[[lp]], exclusive=True)
    ax = fig.axes[1]
    assert len(ax.images) == 1  # the image alone: LOST's picture is its patches
    seed = [_extent(p) for p in ax.patches if not p.get_fill()]
    expanded = sorted(_extent(p) for p in ax.patches if p.get_fill())
    boxes = {_extent(p) for p in ax.patches if not p.get_fill() and _rgb(p.get_edgecolor()) != figures.SEED_RGB}
    assert (7.5, 3.5, 11.5, 7.5) in seed  # patch 7: row 1, column 2
    assert expanded == [(7.5, 3.5, 11.5, 7.5), (11.5, -0.5, 15.5, 3.5), (15.5, 3.5, 19.5, 7.5)]
    assert boxes == {(1.5, 2.5, 9.5, 7.5), (3.5, 3.5, 4.5, 4.5), (0.5, 0.5, 5.5, 4.5)}
    assert {_extent(p) for p in fig.axes[0].patches} == {(1.5, 2.5, 9.5, 7.5), (3.5, 3.5, 4.5, 4.5)}


def test_figure_options_and_shapes_are_checked(tmp_path):
    for dpi in (20, 1200):
        check_figure_options("png", "inferno", dpi)
    for dpi in (19, 1201):
        with pytest.raises(SimpoolBenchError, match=f"--dpi {dpi}: expected 20 to 1200"):
            check_figure_options("png", "inferno", dpi)
    images, maps, gts, preds, ious, ids, titles = _inputs()
    with pytest.raises(SimpoolBenchError, match="ious must hold 2 columns of 2 entries"):
        paper_figure(images, maps, gts, preds, [ious[0], ious[1][:1]], ids, titles, tmp_path / "x.png")
    with pytest.raises(SimpoolBenchError, match="nothing to draw"):
        paper_figure([], [], [], [], [], [], [], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_normalized_map_upsamples_to_a_non_square_image():
    """(h, w) as given (not swapped), bicubic (OpenCV), min-max from the map's own minimum."""
    import cv2

    m = np.array([[2.0, 3.0, 7.0], [4.0, 2.5, 3.0]], dtype=np.float32)
    up = cv2.resize(m, (9, 4), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    out = normalized_map(m, (4, 9))
    assert out.shape == (4, 9) and out.min() == 0.0 and out.max() == pytest.approx(1.0)
    np.testing.assert_allclose(out, (up - up.min()) / (up.max() - up.min()), atol=1e-6)
