"""``runkey.data_fingerprint`` hashes every record in one pass per chunk of records (faster at
ImageNet scale); the digest must stay what the one-update-per-line version gave, so that the
finished shards and k-NN banks of earlier runs keep their keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from fingerprint_reference import fingerprint_per_line

from simpool_bench.data.records import Record
from simpool_bench.runkey import data_fingerprint


@dataclasses.dataclass
class _Other:
    """Another record type: an array between plain fields, a non-contiguous one, a tuple."""

    path: Path
    mask: np.ndarray
    name: str
    extra: tuple = (1, "a")


def test_the_digest_is_the_one_update_per_line_digest(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
        f = tmp_path / f"im{i}.jpg"
        f.write_bytes(b"x" * (i + 1))
        files.append(f)
    records = [
        Record(f"c/{i}.jpg", files[i % 5] if i % 7 else tmp_path / "missing.jpg", i % 3, 40 + i, 30, rng.random((i % 4, 4)))
        for i in range(20000)  # past one chunk of lines
    ]
    records.append(Record("int boxes", files[0], -1, 1, 1, np.array([[1, 2, 3, 4]], dtype=np.int32)))
    records.append(Record("float32 boxes", files[1], 2, 9, 9, np.zeros((2, 4), dtype=np.float32)))
    records.append(Record("odd id 'é' \\n", str(files[2]), 1))  # a str path, a quote and a non-ASCII id
    others = [_Other(files[i % 5], rng.random((3, 6))[:, ::2], f"o{i}") for i in range(10)]
    for group in (records, others, records[:1], [], records[:5] + others[:3]):
        assert data_fingerprint(group) == fingerprint_per_line(group)
    assert data_fingerprint(iter(records)) == fingerprint_per_line(records)  # any iterable, once through
    moved = list(records)
    moved[-1] = dataclasses.replace(moved[-1], width=2)
    assert data_fingerprint(moved) != data_fingerprint(records)
