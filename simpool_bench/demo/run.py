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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import runs
from ..console import console
from ..engine import EngineConfig
from ..loading import load_model
from ..results import compare, compare_console_table, compare_to_latex, compare_to_markdown
from ..specs import ClassifySpec, DataSpec, DiscoverSpec, LocalizeSpec, ModelOptions, RunResult
from .data import DemoPaths, build_demo_data
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
    def small(cls) -> DemoSettings:
        return cls(
            n_train=36,
            n_test=12,
            n_discovery=8,
            image_size=64,
            train=TrainSettings(epochs=1, batch_size=12),
            time_budget_s=None,
            batch_size=8,
            n_overlays=3,
        )


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


def _run(result: DemoResult, name: str, run: Callable[..., RunResult], spec: Any, config: EngineConfig) -> pd.DataFrame:
    """One command of the run layer into OUT/runs/NAME (with boxacc_curve.csv for localize)."""
    path = result.out / "runs" / name
    table = run(spec, config, path, ("parquet", "csv", "json", "md")).table
    assert table is not None
    result.runs[name] = path
    return table


@dataclass(frozen=True)
class _DemoSpecs:
    """The demo's data as specs; the tables record the demo's own dataset names."""

    classify: DataSpec
    localize: DataSpec
    discover: tuple[DataSpec, ...]

    @classmethod
    def of(cls, data: DemoPaths) -> _DemoSpecs:
        # split 'test' recorded and, with no such sub-folder, the folder itself read (as before)
        classify = DataSpec("demo", data=data.imagefolder_test)
        localize = DataSpec("cub", data=data.wsol_image_root, metadata=data.wsol_metadata_test, split="test", label="demo-cub")
        voc = DataSpec("voc07", data=data.voc_root, split=data.voc_split, label="demo-voc07")
        coco = DataSpec(
            "coco20k",
            data=data.coco_image_dir,
            annotations=data.coco_annotations,
            list_file=data.coco_list,
            split="trainval",
            label="demo-coco20k",
        )  # the demo tables keep the split they always recorded
        return cls(classify, localize, (voc, coco))


def _evaluate(result: DemoResult, ckpts: dict[str, Path], specs: _DemoSpecs, config: EngineConfig) -> dict[str, list[pd.DataFrame]]:
    """classify, localize and discover of each demo model, then the no-model baselines."""
    per_model: dict[str, list[pd.DataFrame]] = {}
    for kind, path in ckpts.items():
        t = time.perf_counter()
        model = ModelOptions(checkpoint=path)
        tables = per_model.setdefault(DEMO_LABELS[kind], [])
        tables.append(
            _run(result, f"{kind}-classify", runs.run_classify, ClassifySpec(specs.classify, model, default_split="test"), config)
        )
        tables.append(_run(result, f"{kind}-localize", runs.run_localize, LocalizeSpec(specs.localize, model), config))
        for d in specs.discover:
            tables.append(_run(result, f"{kind}-discover-{d.dataset}", runs.run_discover, DiscoverSpec(d, model), config))
        result.seconds[f"evaluate {kind}"] = time.perf_counter() - t
    base = [
        _run(
            result, "baseline-center-gaussian-localize", runs.run_localize, LocalizeSpec(specs.localize, baseline="center-gaussian"), config
        )
    ]
    for d in specs.discover:
        base.append(_run(result, f"baseline-center-discover-{d.dataset}", runs.run_discover, DiscoverSpec(d, method="center"), config))
    per_model[BASELINE_LABEL] = base
    return per_model


def _check_native_cub(data: DemoPaths, ckpts: dict[str, Path], per_model: dict[str, list[pd.DataFrame]], config: EngineConfig) -> None:
    """The CUB native layout must give the wsol-metadata numbers."""
    native = DataSpec("cub", data=data.cub_root, split="test", label="demo-cub")
    table = runs.run_localize(LocalizeSpec(native, ModelOptions(checkpoint=ckpts["vit-simpool"])), config).table
    assert table is not None
    wsol_v2 = per_model[DEMO_LABELS["vit-simpool"]][1].query("metric == 'maxboxacc_v2'")["value"].item()
    native_v2 = table.query("metric == 'maxboxacc_v2'")["value"].item()
    same = "same" if native_v2 == wsol_v2 else f"DIFFERENT ({native_v2:.2f} vs {wsol_v2:.2f})"
    console.print(f"  CUB native layout: MaxBoxAccV2 {native_v2:.2f}, {same} as the wsolevaluation layout")


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
    data = build_demo_data(
        out / "data", seed=s.seed, n_train=s.n_train, n_test=s.n_test, n_discovery=s.n_discovery, image_size=s.image_size
    )
    result.seconds["data"] = time.perf_counter() - t0

    _step("2/5 demo models: tiny ViTs with SimPool and with the CLS token (cached after the first run)")
    ckpts: dict[str, Path] = {}
    for kind in DEMO_MODEL_KINDS:
        t = time.perf_counter()
        ckpts[kind] = train_demo_model(
            kind, data, out / "models" / DEMO_MODEL_KINDS[kind].file_name, seed=s.seed, settings=s.train, time_budget_s=s.time_budget_s
        )
        result.seconds[f"train {kind}"] = time.perf_counter() - t

    _step("3/5 evaluations: classify, localize (MaxBoxAccV2), discover (CorLoc)")
    specs = _DemoSpecs.of(data)
    per_model = _evaluate(result, ckpts, specs, config)
    _check_native_cub(data, ckpts, per_model, config)

    _step("4/5 compare: one table, models and baselines as rows")
    labels = list(per_model)
    run_tables = [_one_run(per_model[k], k) for k in labels]
    table = compare([_headline(r) for r in run_tables], reference=labels.index(DEMO_LABELS["vit-cls"]), labels=labels)
    summary = out / "summary"
    summary.mkdir(parents=True, exist_ok=True)
    result.compare_md = summary / "compare.md"
    result.compare_md.write_text(compare_to_markdown(table))
    result.compare_tex = summary / "compare.tex"
    result.compare_tex.write_text(compare_to_latex(table))
    pd.concat(run_tables, ignore_index=True).to_csv(summary / "all_results.csv", index=False)
    result.table = table
    console.print(compare_console_table(table))

    _step("5/5 visualize: SimPool vs CLS attention overlays, BoxAcc-vs-threshold curves")
    result.overlays, result.curves = _figures(result, ckpts, specs, config, s.n_overlays, out / "figures")
    result.seconds["total"] = time.perf_counter() - t0

    console.print(f"\n[bold green]demo finished in {result.seconds['total']:.0f} s[/]; everything is under {out}/")
    console.print(f"  tables:  {result.compare_md}  {result.compare_tex}  {summary / 'all_results.csv'}")
    console.print(f"  runs:    {out / 'runs'}/<model>-<command>/results.csv (and .parquet, .json, .md)")
    console.print(f"  figures: {result.overlays}  {result.curves}")
    return result


def _figures(
    result: DemoResult, ckpts: dict[str, Path], specs: _DemoSpecs, config: EngineConfig, n: int, figures: Path
) -> tuple[Path, Path]:
    """SimPool vs CLS overlays at each run's best threshold, and the BoxAcc-vs-threshold curves."""
    from ..overlays import model_source, plot_curves, read_best_threshold, render_overlays
    from ..readers import read_localization_data

    d = specs.localize
    records = read_localization_data(d.dataset, d.data, d.metadata)  # type: ignore[arg-type]
    sources, thresholds = [], []
    for kind, path in ckpts.items():
        model, _ = load_model(ModelOptions(checkpoint=path))
        sources.append(model_source(model, records, config, protocol="localize", label=DEMO_LABELS[kind]))
        thresholds.append(read_best_threshold(result.runs[f"{kind}-localize"]))
    ov = render_overlays(sources, records, figures, protocol="localize", select="first", n=n, thresholds=thresholds)
    curve_runs = [result.runs[f"{k}-localize"] for k in ckpts] + [result.runs["baseline-center-gaussian-localize"]]
    curves = plot_curves(curve_runs, figures / "boxacc_curves.png", labels=[DEMO_LABELS[k] for k in ckpts] + ["center-gaussian"])
    return ov.png, curves
