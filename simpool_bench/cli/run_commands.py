"""``classify``, ``localize``, ``discover``: parse -> spec -> ``runs`` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..console import console, note, say
from ..registry import DATASETS, DINO_KNN, DISCOVER_DATASETS, LOCALIZE_DATASETS, LOST, WSOL
from .options import (
    ENGINE_OPTIONS,
    KNN_KS_DEFAULT,
    MODEL_OPTIONS,
    OUTPUT_OPTIONS,
    DataLabelOpt,
    Parsed,
    parse_ks,
    refuse_unused,
    shared_options,
)


def show(result: Any, out: Path | None) -> None:
    """The run's table on the console (rank 0), and the files it wrote."""
    from ..engine import dist_rank
    from ..results import console_table, provenance_line

    if dist_rank() != 0:
        return
    resumed, total = result.extras.get("shards_resumed"), result.extras.get("shards_total")
    if out is not None and resumed:
        note(f"note: resumed {resumed} of {total} shards from {Path(out) / '.shards'} (finished by an earlier run of this command)")
    if console.is_terminal:
        console.print(console_table(result.table))
    else:  # a log or pipe: the provenance line whole below the table (a caption folds paths mid-word at 80 columns)
        console.print(console_table(result.table, caption=False))
        say(provenance_line(result.table))
    if out is not None and result.files:
        names = ", ".join(sorted(Path(f).name for f in result.files if Path(f).name != "results.manifest.json"))
        say(f"wrote {Path(out)}/: {names}")


@shared_options(MODEL_OPTIONS, ENGINE_OPTIONS, OUTPUT_OPTIONS)
def classify(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", "-d", help="ImageFolder root (class folders), a flat folder with --labels, or the image root of --metadata.")],
    split: Annotated[Optional[str], typer.Option("--split", help="Split: the sub-folder of --data to read (it must exist; default: val when there is one, else --data itself); the table records the folder read.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name recorded in the table.")] = "imagenet",
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Label file for a flat folder: 'filename label' lines or CSV.")] = None,
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (image_ids.txt, class_labels.txt, ...).")] = None,
    subset: Annotated[Optional[int], typer.Option("--subset", min=1, help="Only the first N images per class (ImageNet-20%: 260).")] = None,
    knn_train: Annotated[Optional[Path], typer.Option("--knn-train", help="ImageFolder train split: memory bank for DINO's weighted k-NN (its features are cached in OUT/knn_bank/).")] = None,
    knn_k: Annotated[str, typer.Option("--knn-k", help="Comma list of k, one row each, all in one pass (DINO: 10,20,100,200).")] = KNN_KS_DEFAULT,
    knn_temperature: Annotated[float, typer.Option("--knn-temperature", help="Temperature T of the exp(sim / T) vote weights.")] = DINO_KNN.temperature,
    knn_chunks: Annotated[int, typer.Option("--knn-chunks", min=1, help="Split the test features into this many chunks for the k-NN matrix products, as DINO's eval_knn.py (100) or SimPool's (500) do: a chunk's size sets the products' rounding.")] = DINO_KNN.chunks,
    knn_subset: Annotated[Optional[int], typer.Option("--knn-subset", min=1, help="Only the first N bank images of every class (sorted file order, as --subset).")] = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also write per_class.csv (top-1 per class).")] = False,
    resize: Annotated[Optional[int], typer.Option("--resize", min=1, help="Override the resize (short side) of the timm eval transform.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", min=1, help="Override the center-crop size.")] = None,
    interpolation: Annotated[Optional[str], typer.Option("--interpolation", help="bilinear | bicubic | nearest.")] = None,
    prefetcher: Annotated[bool, typer.Option("--prefetcher", help="Normalise the pixels as timm's validate.py and train.py do by default (uint8, then (v - 255 mean) / (255 std)), not ToTensor then Normalize (validate.py --no-prefetcher, DINO).")] = False,
    crop_pct: Annotated[Optional[float], typer.Option("--crop-pct", help="Center-crop fraction (resize = crop size / crop_pct; default: the model's pretrained config).")] = None,
    **shared: Any,
) -> None:  # fmt: skip
    """Top-1/top-5 accuracy (and weighted k-NN for self-supervised checkpoints). Writes OUT/results.csv."""
    from .. import runs
    from ..specs import ClassifySpec

    p = Parsed(ctx.params)
    fmts = p.formats()
    spec = ClassifySpec(
        p.data(),
        p.model(),
        knn_train=knn_train,
        knn_k=parse_ks(knn_k),
        knn_temperature=knn_temperature,
        knn_chunks=knn_chunks,
        knn_subset=knn_subset,
        per_class=per_class,
        resize=resize,
        crop=crop,
        interpolation=interpolation,
        prefetcher=prefetcher,
    )
    refuse_unused(ctx, spec)
    show(runs.run_classify(spec, p.engine(), p["out"], fmts), p["out"])


@shared_options(MODEL_OPTIONS, ENGINE_OPTIONS, OUTPUT_OPTIONS)
def localize(
    ctx: typer.Context,
    data: Annotated[
        Path,
        typer.Option("--data", "-d", help="Image root (the folder the metadata's image ids are relative to), or a CUB_200_2011 folder."),
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", help=f"{' | '.join(LOCALIZE_DATASETS)} (recorded in the table).")
    ] = LOCALIZE_DATASETS[0],
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (e.g. metadata/CUB/test).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split recorded in the table (and CUB native split).")] = DATASETS[
        "cub"
    ].default_split,
    data_label: DataLabelOpt = None,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", help="CAM threshold step: 0.001 (reference train/eval pipeline) or 0.01 (its standalone evaluation.py)."
        ),
    ] = WSOL.interval,
    v1: Annotated[bool, typer.Option("--v1", help="Also MaxBoxAccV1 (largest contour, IoU 50).")] = False,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="No-model baseline map: center-gaussian | full-box.")] = None,
    cam_target: Annotated[str, typer.Option("--cam-target", help="CAM class: gt (wsolevaluation) | pred.")] = WSOL.cam_target,
    maps: Annotated[
        Optional[Path],
        typer.Option(
            "--maps",
            help="Score the maps stored by `extract` in this folder instead of running a model (float32 maps: the direct run's numbers exactly).",
        ),
    ] = None,
    **shared: Any,
) -> None:
    """MaxBoxAccV2 of attention maps (wsolevaluation protocol, exact and fast). Writes OUT/results.csv."""
    from .. import runs
    from ..specs import LocalizeSpec

    p = Parsed(ctx.params)
    fmts = p.formats()
    spec = LocalizeSpec(p.data(), p.model(), maps=maps, baseline=baseline, interval=interval, v1=v1, cam_target=cam_target)
    refuse_unused(ctx, spec)
    show(runs.run_localize(spec, p.engine(), p["out"], fmts), p["out"])


@shared_options(MODEL_OPTIONS, ENGINE_OPTIONS.with_defaults(batch_size=16), OUTPUT_OPTIONS)
def discover(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", "-d", help="VOC: the VOC2007/VOC2012 folder; COCO20k: the train2014 image folder.")],
    dataset: Annotated[str, typer.Option("--dataset", help=f"{' | '.join(DISCOVER_DATASETS)}.")] = DISCOVER_DATASETS[0],
    split: Annotated[
        Optional[str],
        typer.Option(
            "--split",
            help="VOC ImageSets/Main split; recorded in the table (default: trainval for VOC, the protocol's; train for coco20k).",
        ),
    ] = None,
    data_label: DataLabelOpt = None,
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="COCO20k: instances_train2014.json.")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="COCO20k: coco_20k_filenames.txt (LOST).")] = None,
    method: Annotated[
        str, typer.Option("--method", help="attn (attention map) | lost (ViT keys) | center | full-image (no model).")
    ] = LOST.methods[0],
    mass: Annotated[float, typer.Option("--mass", help="attn: fraction of attention mass kept (DINO/LOST: 0.6).")] = LOST.mass,
    lost_compat: Annotated[
        bool,
        typer.Option(
            "--lost-compat",
            help="attn: all of LOST dino_seg's defaults: head 4 of a CLS map (unless --cls-head), its component choice (off-by-one included), its unclipped box.",
        ),
    ] = False,
    k_patches: Annotated[int, typer.Option("--k-patches", help="lost: seed expansion size (LOST: 100).")] = LOST.k_patches,
    no_hard: Annotated[
        bool, typer.Option("--no-hard", help="VOC: drop images whose objects are all difficult/truncated (LOST --no_hard).")
    ] = False,
    maps: Annotated[
        Optional[Path],
        typer.Option("--maps", help="--method attn on the maps stored by `extract` in this folder instead of running a model."),
    ] = None,
    **shared: Any,
) -> None:
    """CorLoc of unsupervised object discovery (LOST protocol, full resolution). Writes OUT/results.csv."""
    from .. import runs
    from ..specs import DiscoverSpec

    p = Parsed(ctx.params)
    fmts = p.formats()
    spec = DiscoverSpec(p.data(), p.model(), maps=maps, method=method, mass=mass, lost_compat=lost_compat, k_patches=k_patches)
    refuse_unused(ctx, spec)
    show(runs.run_discover(spec, p.engine(), p["out"], fmts), p["out"])
