"""Full-resolution discovery batches images by padded size over the whole dataset (shards take the
images sorted by size), and the boxes stay those of batch size 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simpool_bench import api
from simpool_bench import tasks as ev
from simpool_bench.engine import EngineConfig, make_shards, size_order
from tests.conftest import _random_box, _render, build_tiny_checkpoint

from voc_files import write_voc_image, write_voc_split

# six shapes whose sizes padded to 16 all differ: (48,48) (64,48) (48,64) (80,48) (48,80) (64,64)
SHAPES = [(40, 40), (56, 40), (40, 56), (72, 40), (40, 72), (56, 56)]


def _voc_interleaved(root: Path, per_shape: int = 3, seed: int = 0) -> Path:
    """A VOC2007 layout whose image i has shape SHAPES[i % 6]: equal sizes never adjacent."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(per_shape * len(SHAPES)):
        w, h = SHAPES[i % len(SHAPES)]
        box = _random_box(rng, w, h, 0.4, 0.9)
        ids.append(f"{2007_000000 + i:06d}")
        write_voc_image(root, ids[-1], _render(rng, w, h, [box]), box)
    return write_voc_split(root, ids)


def test_size_order_shards_are_a_stable_sort_and_check_the_permutation():
    keys = [(64, 48), (48, 48), (64, 48), (48, 48), (80, 48)]
    assert size_order(keys) == [1, 3, 0, 2, 4]
    assert make_shards(5, 2, size_order(keys)) == [[1, 3], [0, 2], [4]]
    assert [list(s) for s in make_shards(5, 2)] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        make_shards(3, 2, [0, 0, 1])


@pytest.mark.parametrize("method", ["attn", "lost"])
def test_interleaved_sizes_fill_batches_and_keep_batch_size_one_boxes(tmp_path, method):
    voc = _voc_interleaved(tmp_path / "VOC2007")
    records = api.read_discovery_data("voc07", voc)
    ckpt, _ = build_tiny_checkpoint(tmp_path / "m.pth.tar")
    model, _ = api.load_model(api.ModelOptions(checkpoint=ckpt))
    runs = {}
    for bs in (1, 4):
        seen: dict[int, tuple[int, ...]] = {}
        batches: list[int] = []

        def on_boxes(idx, boxes, hits, seen=seen, batches=batches):
            batches.append(len(idx))
            for i, b in zip(idx, boxes):
                seen[int(i)] = tuple(int(v) for v in b)

        # shards of 6 images: in file order each would hold one image of every size (18 batches of 1)
        cfg = EngineConfig(device="cpu", batch_size=bs, shard_size=6, progress=False)
        ev.discover(model, records, cfg, method=method, on_boxes=on_boxes)
        runs[bs] = (seen, batches)
    assert sorted(runs[1][0]) == list(range(18))
    assert runs[4][0] == runs[1][0]  # every box identical to batch size 1
    assert runs[4][1] == [3] * 6  # each padded size is one full batch (3 images of it in the set)


def test_discover_step_lays_each_mask_on_the_padded_images_rows_and_columns():
    """The step of ``discover --method attn`` reads a batch's masks (B, gh * gw) row-major on the
    grid of the batch's padded size (H // stride rows, W // stride columns): on a 32x48 input with
    stride 16 (2 rows, 3 columns), patch 2 is row 0, column 2, the box (32, 0, 48, 16)."""
    from types import SimpleNamespace

    import torch

    from simpool_bench.data.records import Record
    from simpool_bench.engine import Batch
    from simpool_bench.tasks.discovery import DiscoveryTask

    task = DiscoveryTask([Record("a", Path("a.jpg"), -1, 48, 32, np.array([[32.0, 0.0, 48.0, 16.0]]))])
    accs = task.accumulators()
    mask = torch.zeros(1, 6, dtype=torch.bool)
    mask[0, 2] = True
    out = SimpleNamespace(attn=torch.ones(1, 2, 3), keys=None)
    task.model_step(16)(Batch(np.array([0]), np.array([True]), torch.zeros(1, 3, 32, 48), (out, mask)), accs)
    assert accs["per_image"].compute()["box"].tolist() == [[32, 0, 48, 16]]
    assert accs["corloc"].compute()["hits"] == 1
