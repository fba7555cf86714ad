"""k-NN: every k in one pass (``knn_classify``) against DINO's ``knn_classifier`` called once per k,
on the same random features. Hits must be identical, or the benchmark fails.

    python benchmarks/knn_all_k.py [--bank 20000] [--test 2000] [--dim 384] [--classes 1000] [--device cpu]

One pass shares each chunk's similarity matmul between the ks; DINO recomputes it for every k.
(The larger saving of issue 13, not re-extracting the bank for other k, is the feature cache.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the literal reference lives beside the tests
sys.path.insert(0, str(ROOT))

from test_knn import dino_knn_classifier  # noqa: E402

from simpool_bench.metrics.knn import DINO_KNN_KS, DINO_KNN_TEMPERATURE, MemoryBank, knn_classify  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", type=int, default=20000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    train = torch.randn(a.bank, a.dim, generator=g).to(a.device)
    test = torch.randn(a.test, a.dim, generator=g).to(a.device)
    ytr = torch.randint(0, a.classes, (a.bank,), generator=g).to(a.device)
    yte = torch.randint(0, a.classes, (a.test,), generator=g).to(a.device)
    bank = MemoryBank.from_features(train, ytr, a.classes)
    te = torch.nn.functional.normalize(test, dim=1, p=2)

    t0 = time.perf_counter()
    ref = {k: dino_knn_classifier(bank.features, ytr, te, yte, k, DINO_KNN_TEMPERATURE, a.classes) for k in DINO_KNN_KS}
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = knn_classify(test, yte, bank, DINO_KNN_KS, DINO_KNN_TEMPERATURE)
    t_ours = time.perf_counter() - t0
    for k in DINO_KNN_KS:
        if not ((ours.top1[k] == ref[k][3]).all() and (ours.top5[k] == ref[k][4]).all()):
            raise SystemExit(f"k={k}: hits differ from DINO's knn_classifier")
    print(f"bank {a.bank} x {a.dim}, {a.test} test images, {a.classes} classes, ks {DINO_KNN_KS}, {a.device}")
    print(f"DINO knn_classifier once per k: {t_ref:.2f} s; one pass: {t_ours:.2f} s; ratio {t_ref / t_ours:.2f}x (hits identical)")


if __name__ == "__main__":
    main()
