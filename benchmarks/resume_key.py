"""What the keys cost before a run at ImageNet scale: ``runkey.data_fingerprint`` (the data part
of the resume key and of the k-NN bank's cache key: every record's fields and its file's size and
mtime) against the previous one-update-per-line version (the baseline, kept here), in the same
run; the digests must be identical, or it fails. Also times, for context, the reading of the
ImageFolder and ``records_sha256``.

    python benchmarks/resume_key.py [--n 50000] [--dir IMAGEFOLDER]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simpool_bench.data.imagenet import read_image_folder  # noqa: E402
from simpool_bench.data.records import records_sha256  # noqa: E402
from simpool_bench.runkey import data_fingerprint  # noqa: E402


def baseline_fingerprint(records) -> str:
    """``data_fingerprint`` before: one hash update per line."""
    h = hashlib.sha256()
    for r in records:
        for f in dataclasses.fields(r):
            v = getattr(r, f.name)
            if isinstance(v, np.ndarray):
                h.update(f"{f.name} {v.dtype} {v.shape}\n".encode())
                h.update(np.ascontiguousarray(v).tobytes())
            else:
                h.update(f"{f.name}={v!r}\n".encode())
        try:
            st = os.stat(r.path)
            h.update(f"file {st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(b"file missing\n")
    return h.hexdigest()


def _folder(root: Path, n: int) -> Path:
    """``n`` small files in 1000 class folders (ImageNet val's layout; the contents are not read)."""
    for i in range(n):
        d = root / f"n{i % 1000:08d}"
        d.mkdir(exist_ok=True)
        (d / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(b"\xff\xd8")
    return root


def _best(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--dir", type=Path, default=None, help="an existing ImageFolder (class folders of images) instead")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir if args.dir is not None else _folder(Path(tmp), args.n)
        read_s, (records, _) = _best(lambda: read_image_folder(folder), 1)
        sha_s, _ = _best(lambda: records_sha256(records), args.repeat)
        base_s, base = _best(lambda: baseline_fingerprint(records), args.repeat)
        new_s, new = _best(lambda: data_fingerprint(records), args.repeat)
        assert new == base, "fingerprints differ"
        n = len(records)
        print(
            f"{n} records: read_image_folder {read_s:.2f} s, records_sha256 {sha_s:.2f} s; data_fingerprint before "
            f"{base_s:.2f} s ({base_s / n * 1e6:.1f} us/record), now {new_s:.2f} s ({new_s / n * 1e6:.1f} us/record): ratio {base_s / new_s:.2f}x"
        )


if __name__ == "__main__":
    main()
