"""``extract`` and ``visualize``: the commands around stored attention maps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..console import console, note, say
from ..errors import SimpoolBenchError
from ..registry import LOST
from .options import (
    ENGINE_OPTIONS,
    MODEL_OPTIONS,
    UNUSED_BECAUSE,
    AnnOpt,
    CamTargetOpt,
    DataOpt,
    DatasetOpt,
    FigureFormat,
    ListOpt,
    MapDataset,
    MapDtype,
    MetadataOpt,
    NoHardOpt,
    Parsed,
    Select,
    SplitOpt,
    refuse_given,
    shared_options,
)

#: visualize's --checkpoint-format (its --format is the figure's) and --attn-source (a comma list).
CheckpointFormatOpt = Annotated[
    Optional[str],
    typer.Option(
        "--checkpoint-format",
        help="Force the checkpoint format (what --format is in the other commands; here --format is the figure's).",
        rich_help_panel="Model",
    ),
]
AttnSourcesOpt = Annotated[
    Optional[str],
    typer.Option(
        "--attn-source",
        help="Map source(s), comma-separated for one column each per checkpoint: simpool | cls | cam | map | rollout | gradcam.",
        rich_help_panel="Model",
    ),
]


@shared_options(MODEL_OPTIONS, ENGINE_OPTIONS.without("resume"))
def extract(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="The map store folder (created; resumed when it holds this command's maps).", rich_help_panel="Output")],
    dataset: DatasetOpt = MapDataset("cub"), data: DataOpt = None, metadata: MetadataOpt = None, split: SplitOpt = None,
    annotations: AnnOpt = None, list_file: ListOpt = None, no_hard: NoHardOpt = False,
    dtype: Annotated[MapDtype, typer.Option("--dtype", help="float16 (half the size; numbers from the maps can differ slightly from the direct run) | float32 (exactly the direct run's numbers).", rich_help_panel="Output")] = MapDtype.float16,
    features: Annotated[bool, typer.Option("--features", help="Also store the pooled features (same dtype).", rich_help_panel="Output")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Keep the intact shards already in OUT (default); --no-resume deletes them and starts over.", rich_help_panel="Run")] = True,
    cam_target: CamTargetOpt = "gt",
    **shared: Any,
) -> None:  # fmt: skip
    """Attention maps to disk, in checksummed shards, so that localize/discover/visualize run without the model.

    Writes OUT/manifest.json (protocol, dataset, image ids, dtype, model provenance) and, per shard of
    --shard-size images, OUT/maps_NNNNNN.pt (image ids and indices, maps at the model's grid, top-1
    predictions, features with --features, images that did not decode) with OUT/maps_NNNNNN.sha256.
    Resumable: run the same command again after an interruption; intact shards are kept, missing
    ones and ones whose checksum fails are recomputed. Then: localize/discover --maps OUT, visualize --maps OUT.
    """
    from .. import runs
    from ..specs import ExtractSpec

    p = Parsed(ctx.params)
    spec = ExtractSpec(p.data(), p.model(), dtype=dtype.value, features=features, cam_target=cam_target, resume=resume)
    rep = runs.run_extract(spec, p.engine(shards=False), out).extras["report"]
    fixed = f", {rep.shards_corrupt} of them after a checksum mismatch" if rep.shards_corrupt else ""
    if rep.n_nonfinite:
        fixed += f"; {rep.n_nonfinite} maps hold NaN or inf (readers need --allow-nonfinite)"
    console.print(
        f"maps of {rep.n_images} images ({rep.n_failed} not decodable) in {rep.shards_total} shards: "
        f"{rep.shards_reused} reused, {rep.shards_computed} computed{fixed}",
        highlight=False,
        soft_wrap=True,
    )
    say(f"wrote {Path(out) / 'manifest.json'} and {Path(out) / 'maps_*.pt'}")


@shared_options(
    MODEL_OPTIONS.without("checkpoint").replacing(fmt=CheckpointFormatOpt, attn_source=AttnSourcesOpt),
    ENGINE_OPTIONS.only("device", "batch_size", "workers", "amp").with_defaults(batch_size=16),
)
def visualize(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the PNGs and selection.csv.", rich_help_panel="Output")],
    checkpoint: Annotated[Optional[list[Path]], typer.Option("--checkpoint", "-c", help="A model's checkpoint; repeat for several columns (model flags apply to all).", rich_help_panel="Model")] = None,
    maps: Annotated[Optional[list[Path]], typer.Option("--maps", help="A map store written by extract, instead of a model; repeatable.", rich_help_panel="Model")] = None,
    label: Annotated[Optional[list[str]], typer.Option("--label", help="Column titles, one per checkpoint then map store (default: file/folder names).", rich_help_panel="Output")] = None,
    dataset: DatasetOpt = MapDataset("cub"), data: DataOpt = None, metadata: MetadataOpt = None, split: SplitOpt = None,
    annotations: AnnOpt = None, list_file: ListOpt = None, no_hard: NoHardOpt = False,
    ids: Annotated[Optional[str], typer.Option("--ids", help="Comma-separated image ids to show, in this order.", rich_help_panel="Selection")] = None,
    select: Annotated[Select, typer.Option("--select", help="Without --ids: first N images, or best/worst N by the first column's IoU (ties: dataset order).", rich_help_panel="Selection")] = Select.first,
    per_image: Annotated[Optional[Path], typer.Option("--per-image", help="A run folder (or its per_image.parquet): --select best/worst ranks by its per-image IoU instead of the first column's, and cub/imagenet boxes use its best threshold (unless --threshold-from).", rich_help_panel="Selection")] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="How many images (rows).", rich_help_panel="Selection")] = 8,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=0.999999, help="cub/imagenet: score-map threshold of the predicted box (wsolevaluation: boxes of all contours, the best IoU shown).", rich_help_panel="Selection")] = 0.5,
    threshold_from: Annotated[Optional[list[Path]], typer.Option("--threshold-from", help="A localize run (folder or results file) per column: use its best_threshold at IoU 50 instead of --threshold.", rich_help_panel="Selection")] = None,
    mass: Annotated[float, typer.Option("--mass", help="VOC/COCO: attention mass of the predicted box (LOST: 0.6).", rich_help_panel="Selection")] = LOST.mass,
    lost_compat: Annotated[bool, typer.Option("--lost-compat", help="VOC/COCO: LOST dino_seg's defaults (head 4 of a CLS map, its component choice).", rich_help_panel="Selection")] = False,
    curves: Annotated[Optional[list[Path]], typer.Option("--curves", help="A localize run folder (boxacc_curve.csv) to plot; repeatable, labelled by folder name.", rich_help_panel="Output")] = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0, help="Heat-map opacity.", rich_help_panel="Output")] = 0.5,
    method: Annotated[str, typer.Option("--method", help="VOC/COCO: attn (box from each map) | lost (LOST's box, seed and expanded patches; ViTs).", rich_help_panel="Selection")] = "attn",
    k_patches: Annotated[int, typer.Option("--k-patches", min=1, help="--method lost: seed expansion size (LOST: 100).", rich_help_panel="Selection")] = LOST.k_patches,
    figure_format: Annotated[FigureFormat, typer.Option("--format", help="Paper figure OUT/figure.<format>: png | pdf | svg.", rich_help_panel="Output")] = FigureFormat.png,
    dpi: Annotated[int, typer.Option("--dpi", min=20, max=1200, help="Paper figure resolution (dots per inch).", rich_help_panel="Output")] = 200,
    cmap: Annotated[str, typer.Option("--cmap", help="Paper figure colour map (perceptual: inferno, viridis, magma, cividis).", rich_help_panel="Output")] = "inferno",
    cam_target: CamTargetOpt = "gt",
    **shared: Any,
) -> None:  # fmt: skip
    """Attention overlays (image, heat map, GT boxes in green, predicted box in red) of several models side by side, and BoxAcc-vs-threshold curves.

    Writes OUT/figure.png (or .pdf/.svg with --format): the paper figure, a row per image and a column per
    checkpoint x map source (or map store), captioned with image id, GT box, predicted box and IoU, in a
    perceptual colour map with a colour bar (--method lost: LOST's seed and expanded patches drawn);
    OUT/overlays.png (the same grid pixel-exact, jet, a quick look), OUT/selection.csv (per image and column: image id, threshold, predicted box, IoU) and, with
    --curves, OUT/boxacc_curves.png (BoxAcc of IoU 30/50/70 vs threshold, one colour per run).
    cub/imagenet images are shown at 224x224 as the protocol sees them; VOC/COCO at full resolution.
    """
    from .. import overlays as V
    from ..map_store import protocol_for

    p = Parsed(ctx.params)
    refuse_given(ctx, _UNUSED_BY_VISUALIZE[protocol_for(p["dataset"])])
    if method != "lost":
        refuse_given(ctx, {"k_patches": UNUSED_BECAUSE["k_patches"]})
    else:  # LOST's own box and seed: dino_seg's defaults are for the attention-map box (as discover says)
        refuse_given(ctx, {"lost_compat": UNUSED_BECAUSE["lost_compat"]})
    if threshold_from:
        refuse_given(ctx, {"threshold": "--threshold-from gives each column's threshold"})
    elif per_image is not None:
        refuse_given(
            ctx, {"threshold": "with --per-image RUN the boxes are at that run's best threshold (--threshold-from RUN sets a column's)"}
        )
    if method not in ("attn", "lost"):  # flags are checked before any figure is written
        raise SimpoolBenchError(f"--method {method!r}: expected attn or lost")
    _attn_sources(p["attn_source"])
    if p["ids"] is not None:
        _id_list(p["ids"])
    written: list[Path] = []
    if curves:
        written.append(V.plot_curves(list(curves), Path(out) / V.CURVES_PNG))
    if checkpoint or maps or p["model"]:
        written += _overlays(p)
    elif not curves:
        raise SimpoolBenchError("nothing to draw: give --checkpoint/--model or --maps (overlays), and/or --curves RUN")
    for path in written:
        say(f"wrote {path}")


#: The options of one kind of data set that visualize does not use on the other.
_MASS_NOT_THRESHOLD = "VOC/COCO boxes keep a fraction of the attention mass (--mass), not a score-map threshold"
_UNUSED_BY_VISUALIZE = {
    "discover": {"threshold": _MASS_NOT_THRESHOLD, "threshold_from": _MASS_NOT_THRESHOLD},
    "localize": {
        "mass": "cub/imagenet boxes come from a score-map threshold (--threshold)",
        "lost_compat": "LOST's defaults apply to VOC/COCO discovery",
        "k_patches": "LOST's seed expansion applies to VOC/COCO discovery",
    },
}


def _overlays(p: Parsed) -> list[Path]:
    """visualize's overlay figure: one column per checkpoint x map source, then per map store."""
    from .. import overlays as V
    from ..figures import check_figure_options
    from ..map_store import protocol_for
    from ..readers import read_data
    from ..runs import check_before_data, check_discovery_values

    check_figure_options(p["figure_format"], p["cmap"], p["dpi"])  # a typo fails now, not after the maps
    protocol = protocol_for(p["dataset"])
    if protocol == "discover":
        check_discovery_values(p["mass"], p["k_patches"])
    if p["method"] == "lost" and protocol != "discover":
        raise SimpoolBenchError(f"--method lost draws object discovery (voc07, voc12, coco20k), not --dataset {p['dataset']}")
    config = p.engine(shards=False)
    opts = p.model(checkpoint=None, attn_source=None)
    for ck in _checkpoints(p):  # a typo in a flag is one error before the data are read
        check_before_data(config, replace(opts, checkpoint=ck))
    if p["method"] != "lost":
        _column_options(opts, _attn_sources(p["attn_source"]))
    records = read_data(p.data())
    sources = _model_sources(p, records, protocol, config) + _store_sources(p, records, protocol)
    labels, threshold_from = list(p["label"] or []), list(p["threshold_from"] or [])
    if labels:
        if len(labels) != len(sources):
            raise SimpoolBenchError(f"--label given {len(labels)} times for {len(sources)} columns (checkpoints, then map stores)")
        sources = [replace(s, label=lab) for s, lab in zip(sources, labels)]
    thresholds = [p["threshold"]] * len(sources)
    if threshold_from:
        if len(threshold_from) != len(sources):
            raise SimpoolBenchError(f"--threshold-from given {len(threshold_from)} times for {len(sources)} columns")
        thresholds = [V.read_best_threshold(r) for r in threshold_from]
    id_list = _id_list(p["ids"]) if p["ids"] is not None else None
    if p["per_image"] is not None:
        if id_list:  # the images named: the run gives only its threshold
            from ..per_image import read_per_image

            run = read_per_image(p["per_image"])[1]
        else:
            id_list, run = _ranked_ids(p, records)
        if protocol == "localize" and not threshold_from:
            thresholds = [V.read_best_threshold(run)] * len(sources)
            if len(sources) > 1:  # one run's threshold on other models' maps: say so
                note(
                    f"note: every column's boxes are at {run}'s best threshold ({thresholds[0]:g}); "
                    "--threshold-from RUN, once per column, draws each at its own"
                )
    res = V.render_overlays(
        sources,
        records,
        p["out"],
        protocol=protocol,
        ids=id_list,
        select=p["select"],
        n=p["n"],
        thresholds=thresholds,
        mass=p["mass"],
        lost_compat=p["lost_compat"],
        alpha=p["alpha"],
        figure_format=p["figure_format"],
        dpi=p["dpi"],
        cmap=p["cmap"],
    )
    return [path for path in (res.figure, res.png, res.selection) if path is not None]


def _attn_sources(value: str | None) -> list[str | None]:
    """``--attn-source``: one column per name, in order (not given: the model's default source)."""
    if value is None:
        return [None]
    names = [a.strip() for a in value.split(",")]
    if not all(names) or len(set(names)) != len(names):  # '', ',', 'simpool,,cls': a dropped name; 'cls,cls': one column twice
        raise SimpoolBenchError(
            f"--attn-source {value!r}: expected distinct map sources separated by commas, e.g. simpool,rollout "
            "(simpool, cls, cam, map, rollout, gradcam)"
        )
    return list(names)


def _column_options(opts: Any, attn_list: list[str | None]) -> list[Any]:
    """Each --attn-source column's model options: with several columns, --cls-head goes to the cls
    column only and the --rollout-* flags to the rollout column only (a flag no column takes is an
    error); a single column keeps them all (``build_model`` refuses one its source does not take)."""
    from ..map_sources import DEFAULT_DISCARD_RATIO, DEFAULT_HEAD_FUSION, rollout_flags_given

    if len(attn_list) < 2:
        return [replace(opts, attn_source=src) for src in attn_list]
    rollout_given = bool(rollout_flags_given(opts.rollout_fusion, opts.rollout_discard))
    for given, source, flags in (
        (opts.cls_head is not None, "cls", "--cls-head"),
        (rollout_given, "rollout", "--rollout-fusion/--rollout-discard"),
    ):
        if given and source not in attn_list:
            raise SimpoolBenchError(
                f"{flags} applies to an --attn-source {source} column; --attn-source {','.join(map(str, attn_list))} has none"
            )
    columns = []
    for src in attn_list:
        column = replace(opts, attn_source=src)
        if src != "cls":
            column = replace(column, cls_head=None)
        if src != "rollout":
            column = replace(column, rollout_fusion=DEFAULT_HEAD_FUSION, rollout_discard=DEFAULT_DISCARD_RATIO)
        columns.append(column)
    return columns


def _id_list(ids: str) -> list[str]:
    """``--ids``: the comma-separated image ids, spaces around each dropped; none, or one named twice
    (a figure row drawn twice), is an error."""
    names = [s.strip() for s in ids.split(",") if s.strip()]
    if not names:
        raise SimpoolBenchError(f"--ids {ids!r}: expected comma-separated image ids, e.g. 2007_000027,2007_000032")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SimpoolBenchError(f"--ids {ids!r}: {', '.join(twice)} named twice; expected distinct image ids (one figure row each)")
    return names


def _ranked_ids(p: Parsed, records: list) -> tuple[list[str], Path]:
    """``--per-image RUN`` with ``--select best|worst``: the ``--n`` image ids of that run's best
    or worst per-image IoU, and the run folder."""
    from ..per_image import rank_ids, read_per_image

    if p["select"] == "first":
        raise SimpoolBenchError("--per-image ranks images: use it with --select best or --select worst")
    frame, run = read_per_image(p["per_image"])
    return rank_ids(frame, [r.image_id for r in records], p["select"], p["n"], f"--per-image {p['per_image']}"), run


def _checkpoints(p: Parsed) -> list[Path | None]:
    """The model columns' checkpoints: every --checkpoint, or None for the --model alone (none with --maps alone)."""
    return list(p["checkpoint"] or ([None] if not p["maps"] else []))


def _model_sources(p: Parsed, records: list, protocol: str, config: Any) -> list:
    """One column per --checkpoint (or the --model alone) and --attn-source (LOST: one per checkpoint)."""
    from .. import overlays as V
    from ..loading import load_model
    from ..tasks import use_lost_head

    attn_list = _attn_sources(p["attn_source"])
    opts = p.model(checkpoint=None, attn_source=None)
    sources = []
    for ck in _checkpoints(p):
        if p["method"] == "lost":
            net, _ = load_model(replace(opts, checkpoint=ck, attn_source="none"))
            name = Path(ck).name.split(".")[0] if ck is not None else net.arch
            sources.append(V.lost_source(net, records, config, k_patches=p["k_patches"], label=f"{name} (LOST)"))
            continue
        for column in _column_options(replace(opts, checkpoint=ck), attn_list):
            net, _ = load_model(column)
            if p["lost_compat"] and protocol == "discover":
                use_lost_head(net)
            name = Path(ck).name.split(".")[0] if ck is not None else net.arch
            if len(attn_list) > 1:
                name = f"{name}: {net.attn_source}"
            sources.append(V.model_source(net, records, config, protocol=protocol, cam_target=p["cam_target"], label=name))
    return sources


def _store_sources(p: Parsed, records: list, protocol: str) -> list:
    """One column per --maps store (checked against the records)."""
    from .. import overlays as V
    from ..map_store import MapStore

    sources = []
    for d in p["maps"] or []:
        store = MapStore.open(d)
        store.check_records(records, protocol=protocol, dataset=p["dataset"])
        sources.append(V.store_source(store, label=Path(d).name))
    return sources
