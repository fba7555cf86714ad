"""Shared builders of the results tests (test_results, test_compare, test_gate): a provenance, rows, a run."""

from __future__ import annotations

import pandas as pd

from simpool_bench import results as R


def _prov(**kw) -> R.Provenance:
    base = dict(
        model="vit_small_patch16_224",
        pool="simpool",
        checkpoint="ckpt/vits_simpool.pth.tar",
        checkpoint_sha256="0123456789",
        checkpoint_format="official-supervised",
        gamma=1.25,
        min_scope="sample",
        attn_source="simpool",
        method=None,
        image_size=224,
        n_images=5794,
        device="cpu",
        run_id="run0",
        tool_version="0.1.0",
        torch_version="2.x",
        timm_version="1.x",
        date="2025-01-02T03:04:05+00:00",
        command='simpool-bench localize --out "a b" --x=1,2',
    )
    base.update(kw)
    return R.Provenance(**base)


def _rows(values: dict, dataset: str = "cub", split: str = "test") -> list[dict]:
    return R.metric_rows(dataset, split, values)


LOC = {
    "maxboxacc": {30: 96.5, 50: 80.125, 70: 40.0},
    "maxboxacc_v2": (96.5 + 80.125 + 40.0) / 3,
    "maxboxacc_v1": 78.0,
    "best_threshold": {30: 0.12, 50: 0.2, 70: 0.31},
    "top1_loc": 60.0,
    "gt_known_loc": 80.0,
    "n_failed": 0,
}


def _run(values: dict = LOC, **kw) -> pd.DataFrame:
    return R.make_table(_rows(values), _prov(**kw))


def _with_k(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """The table with a ``k`` key column (schema 3): k on k-NN rows, empty elsewhere."""
    df = df.copy()
    vals = pd.array([k if m.startswith("knn_") else None for m in df["metric"]], dtype="Int64")
    if "k" in df.columns:
        df["k"] = vals
    else:
        df.insert(df.columns.get_loc("iou_threshold") + 1, "k", vals)
    return df
