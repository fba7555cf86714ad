"""Sharding, batching and the resume store of the inference engine."""

from __future__ import annotations

import pytest
import torch

from simpool_bench.engine import ShardStore, bucket_batches, chunk_batches, collate_with_failures, make_shards, my_shards, resolve_device
from simpool_bench.errors import SimpoolBenchError


def test_shards_cover_every_index_once_for_any_world_size():
    for n in (0, 1, 7, 100, 101):
        shards = make_shards(n, 8)
        for world in (1, 2, 3):
            seen = [i for r in range(world) for _, s in my_shards(shards, r, world) for i in s]
            assert sorted(seen) == list(range(n))


def test_bucket_batches_group_equal_keys_only():
    keys = [(32, 48), (48, 32), (32, 48), (32, 48), (48, 32), (16, 16)]
    batches = bucket_batches(range(6), keys, batch_size=2)
    assert batches == [[0, 2], [3], [1, 4], [5]]
    assert chunk_batches(range(5), 2) == [[0, 1], [2, 3], [4]]


def test_collate_replaces_failed_images_with_zeros_of_batch_shape():
    a, b = torch.ones(3, 4, 4), torch.ones(3, 1, 1)
    imgs, idx, ok = collate_with_failures([(a, 5, True), (b, 6, False)])
    assert imgs.shape == (2, 3, 4, 4)
    assert torch.equal(imgs[1], torch.zeros(3, 4, 4))
    assert idx.tolist() == [5, 6] and ok.tolist() == [True, False]


def test_shard_store_round_trip_and_corruption(tmp_path):
    store = ShardStore(tmp_path, "key")
    store.save(3, {"states": {"a": {"x": torch.arange(4)}}})
    assert torch.equal(store.load(3)["states"]["a"]["x"], torch.arange(4))
    assert store.load(4) is None
    path = tmp_path / "key" / "shard_000003.pt"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.load(3) is None  # checksum mismatch: recomputed, never trusted


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SimpoolBenchError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_engine_times_its_metric_steps_within_the_loop():
    import time

    from simpool_bench.engine import EngineConfig, evaluate

    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((3, 4, 4), float(i)), i, True

    res = evaluate(
        torch.nn.Identity(), Tiny(), dict, lambda batch, accs: time.sleep(0.05), EngineConfig(device="cpu", batch_size=2, progress=False)
    )
    extras = res.extras
    assert extras["step_s"] >= 3 * 0.05  # three batches, each step sleeps 50 ms
    assert extras["loop_s"] >= extras["step_s"] + extras["data_wait_s"]
