"""``simpool-bench demo``: the whole tool end to end on the embedded demo data.

Steps (each shows progress, and each reuses what an earlier run already made):
1. build the demo data (every layout) from scikit-image's bundled photographs;
2. train two tiny ViTs, SimPool and CLS (official supervised checkpoint layout);
3. the suite ``suites/demo.toml`` (``suite_run``): classify (ImageFolder), localize (wsolevaluation
   metadata; MaxBoxAccV2 with the center-gaussian baseline beside it), discover (VOC07 and COCO20k
   layouts; CorLoc with the centered-box baseline beside it); the CUB native layout checked to give
   the same numbers;
4. compare: the suite's table, models and baselines as rows;
5. visualize: an overlay grid SimPool vs CLS, and the BoxAcc-vs-threshold curves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import runs
from ..console import console
from ..engine import EngineConfig, resolve_device
from ..errors import SimpoolBenchError
from ..loading import load_model
from ..results import compare_console_table
from ..specs import DataSpec, LocalizeSpec, ModelOptions
from ..suite import load_suite, shipped_suite
from ..suite_run import SuiteReport, run_suite
from .data import DemoPaths, build_demo_data
from .train import DEMO_MODEL_KINDS, TrainSettings, train_demo_model

DEMO_LABELS = {"vit-simpool": "ViT-demo SimPool", "vit-cls": "ViT-demo CLS"}
BASELINE_LABEL = "no-model baseline"
#: The files of each demo run besides results.csv and results.parquet.
DEMO_FORMATS = ("parquet", "csv", "json", "md")


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


def _run_suite(result: DemoResult, config: EngineConfig) -> SuiteReport:
    """The demo's evaluations: ``suites/demo.toml`` with the demo folder as root, into OUT/suite
    (no resume: every run is rewritten); any failing entry stops the demo."""
    suite = load_suite(shipped_suite("demo"), root=result.out)
    report = run_suite(suite, result.out / "suite", config, DEMO_FORMATS, resume=False)
    if report.failed:
        o = report.failed[0]
        raise SimpoolBenchError(f"demo suite entry {o.entry.id} failed: {o.message}")
    for o in report.outcomes:
        if o.status == "ok":
            result.runs[f"{o.entry.checkpoint.name}-{o.entry.evaluation.name}"] = o.folder
    return report


def _check_native_cub(data: DemoPaths, ckpts: dict[str, Path], report: SuiteReport, config: EngineConfig) -> None:
    """The CUB native layout must give the wsol-metadata numbers."""
    native = DataSpec("cub", data=data.cub_root, split="test", label="demo-cub")
    table = runs.run_localize(LocalizeSpec(native, ModelOptions(checkpoint=ckpts["vit-simpool"])), config).table
    assert table is not None
    (wsol,) = [o.table for o in report.outcomes if o.entry.id == "vit-simpool/localize"]
    assert wsol is not None
    wsol_v2 = wsol.query("metric == 'maxboxacc_v2'")["value"].item()
    native_v2 = table.query("metric == 'maxboxacc_v2'")["value"].item()
    same = "same" if native_v2 == wsol_v2 else f"DIFFERENT ({native_v2:.2f} vs {wsol_v2:.2f})"
    console.print(f"  CUB native layout: MaxBoxAccV2 {native_v2:.2f}, {same} as the wsolevaluation layout")


def run_demo(out: str | Path = "demo_out", settings: DemoSettings | None = None, device: str = "cpu") -> DemoResult:
    """Run every step of the demo into ``out`` and return where the outputs are."""
    s = settings or DemoSettings()
    out = Path(out)
    result = DemoResult(out)
    resolve_device(device)  # a device that is not there fails now, not after the data and training
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

    _step("3/5 evaluations (suites/demo.toml): classify, localize (MaxBoxAccV2), discover (CorLoc)")
    report = _run_suite(result, config)
    _check_native_cub(data, ckpts, report, config)

    _step("4/5 compare: one table, models and baselines as rows")
    suite_dir = result.out / "suite"
    result.compare_md, result.compare_tex = suite_dir / "compare.md", suite_dir / "compare.tex"
    result.table = report.compare
    assert result.table is not None
    console.print(compare_console_table(result.table, width=console.width))

    _step("5/5 visualize: SimPool vs CLS attention overlays, BoxAcc-vs-threshold curves")
    result.overlays, result.curves = _figures(result, ckpts, data, config, s.n_overlays, out / "figures")
    result.seconds["total"] = time.perf_counter() - t0

    console.print(f"\n[bold green]demo finished in {result.seconds['total']:.0f} s[/]; everything is under {out}/")
    console.print(f"  tables:  {result.compare_md}  {result.compare_tex}  {out / 'suite' / 'all_results.csv'}")
    console.print(f"  runs:    {out / 'suite'}/<checkpoint>/<entry>/results.csv (and .parquet, .json, .md)")
    console.print(f"  figures: {result.overlays}  {result.curves}")
    return result


def _figures(result: DemoResult, ckpts: dict[str, Path], data: DemoPaths, config: EngineConfig, n: int, figures: Path) -> tuple[Path, Path]:
    """SimPool vs CLS overlays at each run's best threshold, and the BoxAcc-vs-threshold curves."""
    from ..overlays import model_source, plot_curves, read_best_threshold, render_overlays
    from ..readers import read_localization_data

    records = read_localization_data("cub", data.wsol_image_root, data.wsol_metadata_test)
    sources, thresholds = [], []
    for kind, path in ckpts.items():
        model, _ = load_model(ModelOptions(checkpoint=path))
        sources.append(model_source(model, records, config, protocol="localize", label=DEMO_LABELS[kind]))
        thresholds.append(read_best_threshold(result.runs[f"{kind}-localize"]))
    ov = render_overlays(sources, records, figures, protocol="localize", select="first", n=n, thresholds=thresholds)
    curve_runs = [result.runs[f"{k}-localize"] for k in ckpts] + [result.runs["baseline-localize"]]
    curves = plot_curves(curve_runs, figures / "boxacc_curves.png", labels=[DEMO_LABELS[k] for k in ckpts] + ["center-gaussian"])
    return ov.png, curves
