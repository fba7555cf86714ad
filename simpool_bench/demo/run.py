"""``simpool-bench demo``: the whole tool end to end on the embedded demo data.

Steps (each shows progress, and each reuses what an earlier run already made):
1. build the demo data (every layout) from scikit-image's bundled photographs;
2. train two tiny ViTs, SimPool and CLS (official supervised checkpoint layout);
3. classify (ImageFolder), localize (wsolevaluation metadata; MaxBoxAccV2 with the center-gaussian
   baseline beside it; the CUB native layout checked to give the same numbers), discover (VOC07 and
   COCO20k layouts; CorLoc with the centered-box baseline beside it);
4. compare: one table, models and baselines as rows;
5. visualize: an overlay grid SimPool vs CLS, and the BoxAcc-vs-threshold curves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import api
from .. import tasks as ev
from ..console import console
from ..engine import EngineConfig
from ..results import compare, compare_console_table, compare_to_latex, compare_to_markdown
from .data import build_demo_data
from .train import DEMO_MODEL_KINDS, TrainSettings, train_demo_model

DEMO_LABELS = {"vit-simpool": "ViT-demo SimPool", "vit-cls": "ViT-demo CLS"}
#: The headline metrics of the demo's compare table (every metric stays in all_results.csv).
HEADLINE_METRICS = ("top1", "maxboxacc_v2", "corloc")
BASELINE_LABEL = "no-model baseline"


@dataclass
class DemoSettings:
    """Sizes of the demo; ``small()`` is the CI setting (fewer images, fewer steps)."""

    seed: int = 0
    n_train: int = 480
    n_test: int = 120
    n_discovery: int = 120
    image_size: int = 160
    train: TrainSettings | None = None
    time_budget_s: float | None = 60.0
    batch_size: int = 32
    n_overlays: int = 6

    @classmethod
    def small(cls) -> "DemoSettings":
        return cls(n_train=36, n_test=12, n_discovery=8, image_size=64,
                   train=TrainSettings(epochs=1, batch_size=12), time_budget_s=None, batch_size=8, n_overlays=3)


@dataclass
class DemoResult:
    """Where the demo put everything."""

    out: Path
    runs: dict[str, Path] = field(default_factory=dict)
    compare_md: Path | None = None
    compare_tex: Path | None = None
    overlays: Path | None = None
    curves: Path | None = None
    table: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _step(name: str) -> None:
    console.print(f"[bold cyan]▶ {name}[/]")


def _run(result: DemoResult, name: str, outcome: ev.Outcome, prov: Any) -> pd.DataFrame:
    path = result.out / "runs" / name
    table = api.finish(outcome, prov, path, ("parquet", "csv", "json", "md"))  # with boxacc_curve.csv
    result.runs[name] = path
    return table


def _one_run(tables: list[pd.DataFrame], label: str) -> pd.DataFrame:
    """Several commands' tables of one model as one run (one run_id), for ``compare``."""
    table = pd.concat(tables, ignore_index=True)
    table["run_id"] = label
    return table


def _headline(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["metric"].isin(HEADLINE_METRICS)].reset_index(drop=True)


def run_demo(out: str | Path = "demo_out", settings: DemoSettings | None = None, device: str = "cpu") -> DemoResult:
    """Run every step of the demo into ``out`` and return where the outputs are."""
    s = settings or DemoSettings()
    out = Path(out)
    result = DemoResult(out)
    config = EngineConfig(device=device, batch_size=s.batch_size, workers=0, resume_dir=None, shard_size=100000)
    t0 = time.perf_counter()

    _step("1/5 demo data: objects from scikit-image photographs on its textures, every layout")
    data = build_demo_data(out / "data", seed=s.seed, n_train=s.n_train, n_test=s.n_test,
                           n_discovery=s.n_discovery, image_size=s.image_size)
    result.seconds["data"] = time.perf_counter() - t0

    _step("2/5 demo models: tiny ViTs with SimPool and with the CLS token (cached after the first run)")
    ckpts: dict[str, Path] = {}
    for kind in DEMO_MODEL_KINDS:
        t = time.perf_counter()
        ckpts[kind] = train_demo_model(kind, data, out / "models" / DEMO_MODEL_KINDS[kind].file_name, seed=s.seed,
                                       settings=s.train, time_budget_s=s.time_budget_s)
        result.seconds[f"train {kind}"] = time.perf_counter() - t

    _step("3/5 evaluations: classify, localize (MaxBoxAccV2), discover (CorLoc)")
    loc_records = api.read_localization_data("cub", data.wsol_image_root, data.wsol_metadata_test)
    cls_records, _ = api.read_classification_data(data.imagefolder_test)
    voc_records = api.read_discovery_data("voc07", data.voc_root, split=data.voc_split)
    coco_records = api.read_discovery_data("coco20k", data.coco_image_dir, annotations=data.coco_annotations,
                                           list_file=data.coco_list)
    per_model: dict[str, list[pd.DataFrame]] = {}
    for kind, path in ckpts.items():
        t = time.perf_counter()
        model, ckpt = api.load_model(api.ModelOptions(checkpoint=path))
        tables = per_model.setdefault(DEMO_LABELS[kind], [])
        from ..transforms import classification_transform

        o = ev.classify(model, cls_records, classification_transform(model.data_config), config, dataset="demo", split="test")
        tables.append(_run(result, f"{kind}-classify", o, api.provenance(model, ckpt, config, image_size=model.data_config["input_size"][-1], n_images=o.n_images)))
        o = ev.localize(model, loc_records, config, dataset="demo-cub", split="test")
        tables.append(_run(result, f"{kind}-localize", o, api.provenance(model, ckpt, config, image_size=224, n_images=o.n_images)))
        for ds, recs in (("demo-voc07", voc_records), ("demo-coco20k", coco_records)):
            o = ev.discover(model, recs, config, dataset=ds, split="trainval", method="attn")
            tables.append(_run(result, f"{kind}-discover-{ds.split('-')[1]}", o,
                               api.provenance(model, ckpt, config, image_size=None, n_images=o.n_images, method="attn")))
        result.seconds[f"evaluate {kind}"] = time.perf_counter() - t

    base: list[pd.DataFrame] = []
    o = ev.localize(None, loc_records, config, dataset="demo-cub", split="test", baseline="center-gaussian")
    base.append(_run(result, "baseline-center-gaussian-localize", o,
                     api.provenance(None, None, config, image_size=224, n_images=o.n_images, baseline="center-gaussian")))
    for ds, recs in (("demo-voc07", voc_records), ("demo-coco20k", coco_records)):
        o = ev.discover(None, recs, config, dataset=ds, split="trainval", method="center")
        base.append(_run(result, f"baseline-center-discover-{ds.split('-')[1]}", o,
                         api.provenance(None, None, config, image_size=None, n_images=o.n_images, method="center", baseline="center")))
    per_model[BASELINE_LABEL] = base

    # the CUB native layout must give the wsol-metadata numbers
    native = api.read_localization_data("cub", data.cub_root, None)
    simpool_model, _ = api.load_model(api.ModelOptions(checkpoint=ckpts["vit-simpool"]))
    o_native = ev.localize(simpool_model, native, config, dataset="demo-cub", split="test")
    wsol_v2 = per_model[DEMO_LABELS["vit-simpool"]][1].query("metric == 'maxboxacc_v2'")["value"].item()
    native_v2 = next(r["value"] for r in o_native.rows if r["metric"] == "maxboxacc_v2")
    same = "same" if native_v2 == wsol_v2 else f"DIFFERENT ({native_v2:.2f} vs {wsol_v2:.2f})"
    console.print(f"  CUB native layout: MaxBoxAccV2 {native_v2:.2f}, {same} as the wsolevaluation layout")

    _step("4/5 compare: one table, models and baselines as rows")
    labels = list(per_model)
    runs = [_one_run(per_model[k], k) for k in labels]
    table = compare([_headline(r) for r in runs], reference=labels.index(DEMO_LABELS["vit-cls"]), labels=labels)
    summary = out / "summary"
    summary.mkdir(parents=True, exist_ok=True)
    result.compare_md = summary / "compare.md"
    result.compare_md.write_text(compare_to_markdown(table))
    result.compare_tex = summary / "compare.tex"
    result.compare_tex.write_text(compare_to_latex(table))
    pd.concat(runs, ignore_index=True).to_csv(summary / "all_results.csv", index=False)
    result.table = table
    console.print(compare_console_table(table))

    _step("5/5 visualize: SimPool vs CLS attention overlays, BoxAcc-vs-threshold curves")
    from ..overlays import model_source, plot_curves, read_best_threshold, render_overlays

    figures = out / "figures"
    sources, thresholds = [], []
    for kind, path in ckpts.items():
        model, _ = api.load_model(api.ModelOptions(checkpoint=path))
        sources.append(model_source(model, loc_records, config, protocol="localize", label=DEMO_LABELS[kind]))
        thresholds.append(read_best_threshold(result.runs[f"{kind}-localize"]))
    ov = render_overlays(sources, loc_records, figures, protocol="localize", select="first", n=s.n_overlays, thresholds=thresholds)
    result.overlays = ov.png
    curve_runs = [result.runs[f"{k}-localize"] for k in ckpts] + [result.runs["baseline-center-gaussian-localize"]]
    result.curves = plot_curves(curve_runs, figures / "boxacc_curves.png",
                                labels=[DEMO_LABELS[k] for k in ckpts] + ["center-gaussian"])
    result.seconds["total"] = time.perf_counter() - t0

    console.print(f"\n[bold green]demo finished in {result.seconds['total']:.0f} s[/]; everything is under {out}/")
    console.print(f"  tables:  {result.compare_md}  {result.compare_tex}  {summary / 'all_results.csv'}")
    console.print(f"  runs:    {out / 'runs'}/<model>-<command>/results.csv (and .parquet, .json, .md)")
    console.print(f"  figures: {result.overlays}  {result.curves}")
    return result
