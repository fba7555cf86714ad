"""``extract`` and ``visualize``: commands around stored attention maps (registered by cli.py).

Imported by ``cli`` once its shared options exist (it calls ``register``); import ``cli``, not this.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli import (
    AmpOpt, AttnOpt, BatchOpt, ChannelsLastOpt, CkptOpt, ClsHeadOpt, CompileOpt, DeviceOpt, DistTimeoutOpt, FormatOpt, GammaOpt,
    DEFAULT_MAX_PIXELS, MaxPixelsOpt, MinScopeOpt, ModelOpt, NonFiniteOpt, NumClassesOpt, PoolOpt, PreferOpt, QuirkOpt, ShardOpt,
    StrictOpt, TrustOpt, VariantOpt, WorkersOpt, Amp, MinScope, _engine, _model_options, PretrainedOpt, PretrainedFileOpt,
    MeanOpt, StdOpt, RolloutFusionOpt, RolloutDiscardOpt, _weights_options,
)
from .console import console
from .errors import SimpoolBenchError


class MapDataset(str, Enum):
    cub = "cub"
    imagenet = "imagenet"
    voc07 = "voc07"
    voc12 = "voc12"
    coco20k = "coco20k"
    folder = "folder"


class MapDtype(str, Enum):
    float16 = "float16"
    float32 = "float32"


class FigureFormat(str, Enum):
    png = "png"
    pdf = "pdf"
    svg = "svg"


class Select(str, Enum):
    first = "first"
    best = "best"
    worst = "worst"


DatasetOpt = Annotated[MapDataset, typer.Option("--dataset", help="cub | imagenet (224x224, wsolevaluation) | voc07 | voc12 | coco20k (full resolution, LOST) | folder (any images, 224x224).", rich_help_panel="Data")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", "-d", help="Image root (as localize/discover take it; folder: any folder of images).", rich_help_panel="Data")]
MetadataOpt = Annotated[Optional[Path], typer.Option("--metadata", help="cub/imagenet: wsolevaluation metadata folder (e.g. metadata/CUB/test).", rich_help_panel="Data")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Split (default: test for cub/imagenet, trainval for VOC).", rich_help_panel="Data")]
AnnOpt = Annotated[Optional[Path], typer.Option("--annotations", help="coco20k: instances_train2014.json.", rich_help_panel="Data")]
ListOpt = Annotated[Optional[Path], typer.Option("--list", help="coco20k: coco_20k_filenames.txt.", rich_help_panel="Data")]
NoHardOpt = Annotated[bool, typer.Option("--no-hard", help="VOC: drop images whose objects are all difficult/truncated.", rich_help_panel="Data")]
CamTargetOpt = Annotated[str, typer.Option("--cam-target", help="CAM class for cub/imagenet: gt (wsolevaluation) | pred.", rich_help_panel="Model")]


def _records(dataset: MapDataset, data: Path | None, metadata, split, no_hard, annotations, list_file):
    from . import api

    if data is None:
        raise SimpoolBenchError("--data is required (the image root of the dataset)")
    return api.read_map_data(dataset.value, data, metadata=metadata, split=split, no_hard=no_hard,
                             annotations=annotations, list_file=list_file)


def register(app: typer.Typer, friendly: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Add this module's commands to ``app``; ``friendly`` turns user errors into one line + exit 2."""

    @app.command()
    @friendly
    def extract(
        out: Annotated[Path, typer.Option("--out", "-o", help="The map store folder (created; resumed when it holds this command's maps).", rich_help_panel="Output")],
        dataset: DatasetOpt = MapDataset.cub, data: DataOpt = None, metadata: MetadataOpt = None, split: SplitOpt = None,
        annotations: AnnOpt = None, list_file: ListOpt = None, no_hard: NoHardOpt = False,
        dtype: Annotated[MapDtype, typer.Option("--dtype", help="float16 (half the size; numbers from the maps can differ slightly from the direct run) | float32 (exactly the direct run's numbers).", rich_help_panel="Output")] = MapDtype.float16,
        features: Annotated[bool, typer.Option("--features", help="Also store the pooled features (same dtype).", rich_help_panel="Output")] = False,
        resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Keep the intact shards already in OUT (default); --no-resume deletes them and starts over.", rich_help_panel="Run")] = True,
        cam_target: CamTargetOpt = "gt",
        model: ModelOpt = None, pool: PoolOpt = None, gamma: GammaOpt = None, checkpoint: CkptOpt = None,
        fmt: FormatOpt = None, trust_checkpoint: TrustOpt = False, variant: VariantOpt = None,
        min_scope: MinScopeOpt = MinScope.sample, attn_source: AttnOpt = None, cls_head: ClsHeadOpt = None,
        num_classes: NumClassesOpt = None, dino_pos_quirk: QuirkOpt = None, prefer: PreferOpt = "auto",
        pretrained: PretrainedOpt = False, pretrained_file: PretrainedFileOpt = None, mean: MeanOpt = None, std: StdOpt = None,
        rollout_fusion: RolloutFusionOpt = "mean", rollout_discard: RolloutDiscardOpt = 0.0,
        device: DeviceOpt = "auto", batch_size: BatchOpt = 64, workers: WorkersOpt = None, amp: AmpOpt = Amp.off,
        channels_last: ChannelsLastOpt = False, compile: CompileOpt = False, shard_size: ShardOpt = 1024,
        strict: StrictOpt = False, dist_timeout: DistTimeoutOpt = None, max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
        allow_nonfinite: NonFiniteOpt = False,
    ) -> None:
        """Attention maps to disk, in checksummed shards, so that localize/discover/visualize run without the model.

        Writes OUT/manifest.json (protocol, dataset, image ids, dtype, model provenance) and, per shard of
        --shard-size images, OUT/maps_NNNNNN.pt (image ids and indices, maps at the model's grid, top-1
        predictions, features with --features, images that did not decode) with OUT/maps_NNNNNN.sha256.
        Resumable: run the same command again after an interruption; intact shards are kept, missing
        ones and ones whose checksum fails are recomputed. Then: localize/discover --maps OUT, visualize --maps OUT.
        """
        from dataclasses import asdict

        from . import api
        from .map_store import extract_maps, protocol_for

        protocol = protocol_for(dataset.value)
        split = split or api.DEFAULT_SPLITS[dataset.value]
        config = _engine(device, batch_size, workers, amp, channels_last, compile, shard_size, False, strict, None, dist_timeout,
                         max_pixels, allow_nonfinite)
        records = _records(dataset, data, metadata, split, no_hard, annotations, list_file)
        opts = _model_options(model, pool, gamma, checkpoint, fmt, trust_checkpoint, variant, min_scope, attn_source, cls_head, num_classes, dino_pos_quirk, prefer,
                              **_weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard))
        net, ckpt = api.load_model(opts)
        prov = api.provenance(net, ckpt, config, image_size=224 if protocol == "localize" else None, n_images=len(records))
        info = {"dataset": dataset.value, "split": split, "data": str(data), "metadata": None if metadata is None else str(metadata),
                "provenance": asdict(prov)}
        rep = extract_maps(net, records, config, out, info=info, protocol=protocol, dtype=dtype.value,
                           features=features, cam_target=cam_target, resume=resume)
        fixed = f", {rep.shards_corrupt} of them after a checksum mismatch" if rep.shards_corrupt else ""
        if rep.n_nonfinite:
            fixed += f"; {rep.n_nonfinite} maps hold NaN or inf (readers need --allow-nonfinite)"
        console.print(
            f"maps of {rep.n_images} images ({rep.n_failed} not decodable) in {rep.shards_total} shards: "
            f"{rep.shards_reused} reused, {rep.shards_computed} computed{fixed}", highlight=False)
        console.print(f"wrote {Path(out) / 'manifest.json'} and {Path(out) / 'maps_*.pt'}", highlight=False)

    @app.command()
    @friendly
    def visualize(
        out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the PNGs and selection.csv.", rich_help_panel="Output")],
        checkpoint: Annotated[Optional[list[Path]], typer.Option("--checkpoint", "-c", help="A model's checkpoint; repeat for several columns (model flags apply to all).", rich_help_panel="Model")] = None,
        maps: Annotated[Optional[list[Path]], typer.Option("--maps", help="A map store written by extract, instead of a model; repeatable.", rich_help_panel="Model")] = None,
        label: Annotated[Optional[list[str]], typer.Option("--label", help="Column titles, one per checkpoint then map store (default: file/folder names).", rich_help_panel="Output")] = None,
        dataset: DatasetOpt = MapDataset.cub, data: DataOpt = None, metadata: MetadataOpt = None, split: SplitOpt = None,
        annotations: AnnOpt = None, list_file: ListOpt = None, no_hard: NoHardOpt = False,
        ids: Annotated[Optional[str], typer.Option("--ids", help="Comma-separated image ids to show, in this order.", rich_help_panel="Selection")] = None,
        select: Annotated[Select, typer.Option("--select", help="Without --ids: first N images, or best/worst N by the first column's IoU (ties: dataset order).", rich_help_panel="Selection")] = Select.first,
        n: Annotated[int, typer.Option("--n", min=1, help="How many images (rows).", rich_help_panel="Selection")] = 8,
        threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=0.999999, help="cub/imagenet: score-map threshold of the predicted box (wsolevaluation: boxes of all contours, the best IoU shown).", rich_help_panel="Selection")] = 0.5,
        threshold_from: Annotated[Optional[list[Path]], typer.Option("--threshold-from", help="A localize run (folder or results file) per column: use its best_threshold at IoU 50 instead of --threshold.", rich_help_panel="Selection")] = None,
        mass: Annotated[float, typer.Option("--mass", help="VOC/COCO: attention mass of the predicted box (LOST: 0.6).", rich_help_panel="Selection")] = 0.6,
        lost_compat: Annotated[bool, typer.Option("--lost-compat", help="VOC/COCO: LOST dino_seg's defaults (head 4 of a CLS map, its component choice).", rich_help_panel="Selection")] = False,
        curves: Annotated[Optional[list[Path]], typer.Option("--curves", help="A localize run folder (boxacc_curve.csv) to plot; repeatable, labelled by folder name.", rich_help_panel="Output")] = None,
        alpha: Annotated[float, typer.Option("--alpha", min=0.0, max=1.0, help="Heat-map opacity.", rich_help_panel="Output")] = 0.5,
        method: Annotated[str, typer.Option("--method", help="VOC/COCO: attn (box from each map) | lost (LOST's box, seed and expanded patches; ViTs).", rich_help_panel="Selection")] = "attn",
        k_patches: Annotated[int, typer.Option("--k-patches", min=1, help="--method lost: seed expansion size (LOST: 100).", rich_help_panel="Selection")] = 100,
        figure_format: Annotated[FigureFormat, typer.Option("--format", help="Paper figure OUT/figure.<format>: png | pdf | svg.", rich_help_panel="Output")] = FigureFormat.png,
        dpi: Annotated[int, typer.Option("--dpi", min=20, max=1200, help="Paper figure resolution (dots per inch).", rich_help_panel="Output")] = 200,
        cmap: Annotated[str, typer.Option("--cmap", help="Paper figure colour map (perceptual: inferno, viridis, magma, cividis).", rich_help_panel="Output")] = "inferno",
        cam_target: CamTargetOpt = "gt",
        model: ModelOpt = None, pool: PoolOpt = None, gamma: GammaOpt = None,
        fmt: Annotated[Optional[str], typer.Option("--checkpoint-format", help="Force the checkpoint format (what --format is in the other commands; here --format is the figure's).", rich_help_panel="Model")] = None,
        trust_checkpoint: TrustOpt = False, variant: VariantOpt = None,
        min_scope: MinScopeOpt = MinScope.sample,
        attn_source: Annotated[Optional[str], typer.Option("--attn-source", help="Map source(s), comma-separated for one column each per checkpoint: simpool | cls | cam | map | rollout | gradcam.", rich_help_panel="Model")] = None,
        cls_head: ClsHeadOpt = None,
        num_classes: NumClassesOpt = None, dino_pos_quirk: QuirkOpt = None, prefer: PreferOpt = "auto",
        pretrained: PretrainedOpt = False, pretrained_file: PretrainedFileOpt = None, mean: MeanOpt = None, std: StdOpt = None,
        rollout_fusion: RolloutFusionOpt = "mean", rollout_discard: RolloutDiscardOpt = 0.0,
        device: DeviceOpt = "auto", batch_size: BatchOpt = 16, workers: WorkersOpt = None, amp: AmpOpt = Amp.off,
    ) -> None:
        """Attention overlays (image, heat map, GT boxes in green, predicted box in red) of several models side by side, and BoxAcc-vs-threshold curves.

        Writes OUT/figure.png (or .pdf/.svg with --format): the paper figure, a row per image and a column per
        checkpoint x map source (or map store), captioned with image id, GT box, predicted box and IoU, in a
        perceptual colour map with a colour bar (--method lost: LOST's seed and expanded patches drawn);
        OUT/overlays.png (the same grid pixel-exact, jet, a quick look), OUT/selection.csv (per image and column: image id, threshold, predicted box, IoU) and, with
        --curves, OUT/boxacc_curves.png (BoxAcc of IoU 30/50/70 vs threshold, one colour per run).
        cub/imagenet images are shown at 224x224 as the protocol sees them; VOC/COCO at full resolution.
        """
        from dataclasses import replace

        from . import api
        from . import overlays as V
        from .map_store import MapStore, protocol_for

        checkpoint, maps, label, threshold_from, curves = (list(x or []) for x in (checkpoint, maps, label, threshold_from, curves))
        written: list[Path] = []
        if curves:
            written.append(V.plot_curves(curves, Path(out) / V.CURVES_PNG))
        want_maps = bool(checkpoint or maps or model)
        if method not in ("attn", "lost"):
            raise SimpoolBenchError(f"--method {method!r}: expected attn or lost")
        if want_maps:
            protocol = protocol_for(dataset.value)
            if method == "lost" and protocol != "discover":
                raise SimpoolBenchError(f"--method lost draws object discovery (voc07, voc12, coco20k), not --dataset {dataset.value}")
            records = _records(dataset, data, metadata, split, no_hard, annotations, list_file)
            config = _engine(device, batch_size, workers, amp, False, False, 1024, False, False, None)
            attn_list = [a.strip() for a in attn_source.split(",") if a.strip()] if attn_source else [None]
            opts = _model_options(model, pool, gamma, None, fmt, trust_checkpoint, variant, min_scope, None, cls_head, num_classes, dino_pos_quirk, prefer,
                                  **_weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard))
            sources: list[V.MapSource] = []
            for ck in checkpoint or ([None] if not maps else []):
                if method == "lost":
                    net, _ = api.load_model(replace(opts, checkpoint=ck, attn_source="none"))
                    name = Path(ck).name.split(".")[0] if ck is not None else net.arch
                    sources.append(V.lost_source(net, records, config, k_patches=k_patches, label=f"{name} (LOST)"))
                    continue
                for src in attn_list:
                    net, _ = api.load_model(replace(opts, checkpoint=ck, attn_source=src))
                    if lost_compat and protocol == "discover":
                        from .tasks import use_lost_head

                        use_lost_head(net)
                    name = Path(ck).name.split(".")[0] if ck is not None else net.arch
                    if len(attn_list) > 1:
                        name = f"{name}: {net.attn_source}"
                    sources.append(V.model_source(net, records, config, protocol=protocol, cam_target=cam_target, label=name))
            for d in maps:
                store = MapStore.open(d)
                store.check_records(records, protocol=protocol, dataset=dataset.value)
                sources.append(V.store_source(store, label=Path(d).name))
            if label:
                if len(label) != len(sources):
                    raise SimpoolBenchError(f"--label given {len(label)} times for {len(sources)} columns (checkpoints, then map stores)")
                sources = [replace(s, label=lab) for s, lab in zip(sources, label)]
            thresholds = [threshold] * len(sources)
            if threshold_from:
                if len(threshold_from) != len(sources):
                    raise SimpoolBenchError(f"--threshold-from given {len(threshold_from)} times for {len(sources)} columns")
                thresholds = [V.read_best_threshold(r) for r in threshold_from]
            id_list = [s.strip() for s in ids.split(",") if s.strip()] if ids else None
            res = V.render_overlays(sources, records, out, protocol=protocol, ids=id_list, select=select.value, n=n,
                                    thresholds=thresholds, mass=mass, lost_compat=lost_compat, alpha=alpha,
                                    figure_format=figure_format.value, dpi=dpi, cmap=cmap)
            written += [res.figure, res.png, res.selection]
        elif not curves:
            raise SimpoolBenchError("nothing to draw: give --checkpoint/--model or --maps (overlays), and/or --curves RUN")
        for p in written:
            console.print(f"wrote {p}", highlight=False)
