"""Paper figures: formats, resolution, captions (image id, GT box, predicted box, IoU), and LOST's
seed and expanded patches equal to the literal LOST oracle's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from simpool_bench import api
from simpool_bench import overlays as V
from simpool_bench.engine import EngineConfig
from simpool_bench.errors import SimpoolBenchError
from simpool_bench.extraction import map_transform
from simpool_bench.figures import LostPatches, normalized_map, paper_figure
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
    a = Image.open(paper_figure(*args, tmp_path / "a.png", dpi=100))
    b = Image.open(paper_figure(*args, tmp_path / "b.png", dpi=200))
    assert abs(b.size[0] - 2 * a.size[0]) <= 2 and abs(b.size[1] - 2 * a.size[1]) <= 2
    assert paper_figure(*args, tmp_path / "f.pdf", fmt="pdf").read_bytes().startswith(b"%PDF")
    svg = paper_figure(*args, tmp_path / "f.svg", fmt="svg").read_text()
    for text in ("img_0", "GT (3, 4, 20, 30)", "pred (5, 6, 22, 33)", "IoU 0.50", "IoU -", "src1", "normalised map"):
        assert text in svg, text
    for bad, match in ((dict(fmt="jpg"), "--format 'jpg'"), (dict(dpi=5), "--dpi 5"), (dict(cmap="nope"), "--cmap 'nope'")):
        with pytest.raises(SimpoolBenchError, match=match):
            paper_figure(*args, tmp_path / "x", **bad)


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
