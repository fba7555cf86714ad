"""What the keys cost before a run at ImageNet scale: ``runkey.data_fingerprint`` (the data part
of the resume key and of the k-NN bank's cache key: every record's fields and its file's size and
mtime) against the previous one-update-per-line version (the baseline, kept here),
``read_image_folder`` (ids worked out once per folder) against the previous reading (a folder
parsed again for each file, each id by ``relative_to``; kept here), and localize's GT boxes at 224
(``tasks.wsol_gt_boxes``, one numpy pass) against ``resize_boxes_wsol`` per record, in the same run;
digests, records and boxes must be identical, or it fails. ``records_sha256`` is timed for context.

    python benchmarks/resume_key.py [--n 50000] [--dir IMAGEFOLDER]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the literal previous fingerprint lives beside the tests
sys.path.insert(0, str(ROOT))

from fingerprint_reference import fingerprint_per_line  # noqa: E402

from simpool_bench.data.imagenet import _is_image, read_image_folder  # noqa: E402
from simpool_bench.data.records import Record, records_sha256  # noqa: E402
from simpool_bench.metrics.boxes import resize_boxes_wsol  # noqa: E402
from simpool_bench.runkey import data_fingerprint  # noqa: E402
from simpool_bench.tasks import wsol_gt_boxes  # noqa: E402


def _baseline_walk(root: Path, keep: Callable[[str], bool], seen: set[str]) -> list[Path]:
    """``data.inputs.walk_files`` before (its listing unchanged; the folder parsed per file)."""
    seen.add(os.path.realpath(root))
    listing: list[tuple[str, list[str]]] = []
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        names = []
        for e in sorted(os.scandir(folder), key=lambda e: e.name, reverse=True):
            if not e.is_dir():
                names.append(e.name)
                continue
            path = os.path.join(folder, e.name)
            real = os.path.realpath(path)
            if not (real in seen or (os.path.realpath(folder) + os.sep).startswith(real.rstrip(os.sep) + os.sep)):
                seen.add(real)
                stack.append(path)
        listing.append((folder, names))
    return [Path(folder) / name for folder, names in sorted(listing) for name in sorted(names) if keep(name)]


def baseline_read_image_folder(root: Path) -> list[Record]:
    """``read_image_folder``'s records before: each id ``path.relative_to(root).as_posix()``."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    seen = {os.path.realpath(root / cls) for cls in classes}
    records: list[Record] = []
    for label, cls in enumerate(classes):
        records += [Record(p.relative_to(root).as_posix(), p, label) for p in _baseline_walk(root / cls, _is_image, seen)]
    return records


def _folder(root: Path, n: int) -> Path:
    """``n`` small files in 1000 class folders (ImageNet val's layout; the contents are not read)."""
    for i in range(n):
        d = root / f"n{i % 1000:08d}"
        d.mkdir(exist_ok=True)
        (d / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(b"\xff\xd8")
    return root


def _with_boxes(records: list[Record], seed: int = 0) -> list[Record]:
    """The records with an image size and 1 to 3 fractional boxes each, as a wsolevaluation reader gives."""
    rng = np.random.default_rng(seed)
    out = []
    for r in records:
        w, h, k = int(rng.integers(64, 1000)), int(rng.integers(64, 1000)), int(rng.integers(1, 4))
        x0, y0 = rng.uniform(0, w, k), rng.uniform(0, h, k)
        out.append(replace(r, width=w, height=h, boxes=np.stack([x0, y0, rng.uniform(x0, w), rng.uniform(y0, h)], axis=1)))
    return out


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
        folder = Path(folder)
        old_read_s, old_records = _best(lambda: baseline_read_image_folder(folder), args.repeat)
        read_s, (records, _) = _best(lambda: read_image_folder(folder), args.repeat)
        assert [(r.image_id, r.path, r.label) for r in records] == [(r.image_id, r.path, r.label) for r in old_records], "records differ"
        del old_records
        sha_s, _ = _best(lambda: records_sha256(records), args.repeat)
        base_s, base = _best(lambda: fingerprint_per_line(records), args.repeat)
        new_s, new = _best(lambda: data_fingerprint(records), args.repeat)
        assert new == base, "fingerprints differ"
        n = len(records)
        print(
            f"{n} records: read_image_folder before {old_read_s:.2f} s, now {read_s:.2f} s: ratio {old_read_s / read_s:.2f}x; "
            f"records_sha256 {sha_s:.2f} s; data_fingerprint before "
            f"{base_s:.2f} s ({base_s / n * 1e6:.1f} us/record), now {new_s:.2f} s ({new_s / n * 1e6:.1f} us/record): ratio {base_s / new_s:.2f}x"
        )
        boxed = _with_boxes(records)
        per_s, per = _best(lambda: [resize_boxes_wsol(r.boxes, r.width, r.height) for r in boxed], args.repeat)
        one_s, one = _best(lambda: wsol_gt_boxes(boxed), args.repeat)
        assert len(one) == len(per) and all(np.array_equal(a, b) for a, b in zip(one, per)), "GT boxes differ"
        print(f"localize's GT boxes at 224 (1-3 per image): per record {per_s:.2f} s, one pass {one_s:.2f} s: ratio {per_s / one_s:.2f}x")


if __name__ == "__main__":
    main()
