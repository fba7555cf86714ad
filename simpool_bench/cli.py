"""The ``simpool-bench`` command line: one thin function per command over ``simpool_bench.api``.

Every user mistake (a ``SimpoolBenchError``) is printed as one ``error:`` line and exits with 2.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .console import console, err_console
from .data.inputs import DEFAULT_MAX_PIXELS
from .errors import SimpoolBenchError, one_line
from .files import atomic_write

# click's UsageError (typer may vendor click, so it is found through typer's own BadParameter).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    """A bad flag value, a missing or unknown option: one ``error:`` line and exit 2, not a usage box."""
    try:
        yield
    except _UsageError as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # no arguments: the help, as asked
            raise
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) is not None else ""
        message = " ".join(err.format_message().split())
        err_console.print(f"[bold red]error:[/] {escape(where + message)} (see --help)", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


class _OneLineUsageGroup(TyperGroup):
    """The command group, with usage errors as one line (see ``_one_line_usage``)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_OneLineUsageGroup,
    name="simpool-bench",
    help="Evaluate attention-based pooling (SimPool, CLS, GAP) by the published protocols: "
    "classification, localization (MaxBoxAccV2) and object discovery (CorLoc).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
datasets_app = typer.Typer(help="Check dataset copies against data_manifests/.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one line and exit code 2; Ctrl-C into a resume hint and 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = warnings.formatwarning
        warnings.formatwarning = _one_line_warning
        try:
            return fn(*args, **kwargs)
        except SimpoolBenchError as err:
            err_console.print(f"[bold red]error:[/] {escape(one_line(err))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
            err_console.print(f"[bold red]error:[/] {escape(str(err.filename))}: {escape(str(err.strerror))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as err:  # disk full, read-only file system, I/O errors: one line, not a traceback
            where = f"{err.filename}: " if err.filename else ""
            err_console.print(f"[bold red]error:[/] {escape(where + (err.strerror or str(err)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished shards are kept; run the same command again to resume")
            raise typer.Exit(130) from None
        finally:
            warnings.formatwarning = before

    return wrapper


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None) -> str:
    """Warnings shown as ``warning: <message>`` (one line; no source file, line and code)."""
    return f"warning: {' '.join(str(message).split())}\n"


# ------------------------------------------------------------------------------------ shared options
class Pool(str, Enum):
    simpool = "simpool"
    cls = "cls"
    gap = "gap"
    map = "map"


class Amp(str, Enum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


class MinScope(str, Enum):
    sample = "sample"
    batch = "batch"
    channel = "channel"


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="timm architecture, e.g. vit_small_patch16_224, resnet50, convnext_tiny (inferred from the checkpoint when it says).", rich_help_panel="Model")]
PoolOpt = Annotated[Optional[Pool], typer.Option("--pool", help="Pooling: simpool | cls (ViTs) | gap | map (ViTs, timm's attention pool) (inferred from the checkpoint).", rich_help_panel="Model")]
GammaOpt = Annotated[Optional[str], typer.Option("--gamma", help="SimPool gamma: a float, or 'none' for the plain attention-weighted mean (default 1.25 transformers, 2.0 CNNs).", rich_help_panel="Model")]
CkptOpt = Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint file (.pth, .pth.tar, .safetensors); format auto-detected.", rich_help_panel="Model")]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="Force the checkpoint format: official-supervised | official-dino | dino-backbone | timm-simpool | state-dict | safetensors.", rich_help_panel="Model")]
TrustOpt = Annotated[bool, typer.Option("--trust-checkpoint", help="Allow arbitrary unpickling (only for files you trust).", rich_help_panel="Model")]
PreferOpt = Annotated[str, typer.Option("--prefer", help="Which weights of a checkpoint: auto (EMA, DINO teacher) | ema | raw | teacher | student.", rich_help_panel="Model")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", help="ViT layout: supervised (norm before SimPool) | dino (norm after).", rich_help_panel="Model")]
MinScopeOpt = Annotated[MinScope, typer.Option("--min-scope", help="Where SimPool's gamma shift takes its min: sample (default, batch-independent) | batch (official) | channel (timm).", rich_help_panel="Model")]
AttnOpt = Annotated[Optional[str], typer.Option("--attn-source", help="Attention map: simpool | cls | cam | map | rollout | gradcam (default from --pool).", rich_help_panel="Model")]
ClsHeadOpt = Annotated[Optional[int], typer.Option("--cls-head", help="For --attn-source cls: one head instead of the mean over heads.", rich_help_panel="Model")]
NumClassesOpt = Annotated[Optional[int], typer.Option("--num-classes", help="Classifier size when the checkpoint does not tell.", rich_help_panel="Model")]
QuirkOpt = Annotated[Optional[bool], typer.Option("--dino-pos-quirk/--no-dino-pos-quirk", help="Reproduce the official DINO-SimPool position-embedding interpolation (default: on for official DINO files).", rich_help_panel="Model")]

PretrainedOpt = Annotated[bool, typer.Option("--pretrained", help="timm's pretrained weights of --model, from the local Hugging Face cache (HF_HUB_CACHE / HF_HOME; honours HF_HUB_OFFLINE=1: no cached copy is an error). Default pool: the model's own.", rich_help_panel="Model")]
PretrainedFileOpt = Annotated[Optional[Path], typer.Option("--pretrained-file", help="timm pretrained weights of --model from this file (model.safetensors, pytorch_model.bin), loaded as timm loads them.", rich_help_panel="Model")]
MeanOpt = Annotated[Optional[str], typer.Option("--mean", help="Normalisation mean R,G,B (default: the model's pretrained config).", rich_help_panel="Model")]
StdOpt = Annotated[Optional[str], typer.Option("--std", help="Normalisation std R,G,B (default: the model's pretrained config).", rich_help_panel="Model")]
RolloutFusionOpt = Annotated[str, typer.Option("--rollout-fusion", help="--attn-source rollout: head fusion mean | max | min.", rich_help_panel="Model")]
RolloutDiscardOpt = Annotated[float, typer.Option("--rollout-discard", help="--attn-source rollout: fraction of the lowest fused attentions discarded per block (0 = the paper).", rich_help_panel="Model")]

DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.", rich_help_panel="Run")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.", rich_help_panel="Run")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="DataLoader workers decoding images (default: min(8, cores); 0: in the main process).", rich_help_panel="Run", show_default=False)]
AmpOpt = Annotated[Amp, typer.Option("--amp", help="Mixed precision: off | bf16 | fp16.", rich_help_panel="Run")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="channels_last memory format (CNNs on GPU).", rich_help_panel="Run")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.", rich_help_panel="Run")]
ShardOpt = Annotated[int, typer.Option("--shard-size", min=1, help="Images per shard (unit of resume and of multi-GPU work).", rich_help_panel="Run")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Keep finished shards under OUT/.shards and reuse them when the same command runs again.", rich_help_panel="Run")]
DistTimeoutOpt = Annotated[Optional[float], typer.Option("--dist-timeout", help="torchrun: seconds a collective may wait for the other ranks before the run stops with an error (default $SIMPOOL_BENCH_DIST_TIMEOUT or 600).", rich_help_panel="Run")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on an image that does not decode or is over --max-pixels (default: skip it, warn and count it).", rich_help_panel="Run")]
MaxPixelsOpt = Annotated[int, typer.Option("--max-pixels", min=1, help="Images with more pixels (read from the header, before decoding) are skipped and counted like undecodable ones (--strict: an error). Default: PIL's bomb limit.", rich_help_panel="Run")]
NonFiniteOpt = Annotated[bool, typer.Option("--allow-nonfinite", help="Images whose logits or maps hold NaN/inf count as misses and the table gets an n_nonfinite row (default: the run fails, saying how many).", rich_help_panel="Run")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder: results.csv and results.parquet always, plus --formats.", rich_help_panel="Output")]
FormatsOpt = Annotated[str, typer.Option("--formats", help="Extra export formats, comma-separated: json, md, latex.", rich_help_panel="Output")]


def _gamma(value: str | None) -> Any:
    from .checkpoints import UNSET

    if value is None:
        return UNSET
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise SimpoolBenchError(f"--gamma {value!r}: expected a number or 'none'") from None


def _model_options(model, pool, gamma, checkpoint, fmt, trust, variant, min_scope, attn_source, cls_head, num_classes, quirk, prefer="auto", img_size=None, **extra):
    from .api import ModelOptions

    return ModelOptions(
        arch=model, pool=pool.value if pool else None, gamma=_gamma(gamma), checkpoint=checkpoint, format=fmt,
        trust=trust, variant=variant, min_scope=min_scope.value, attn_source=attn_source, cls_head=cls_head,
        num_classes=num_classes, img_size=img_size, dino_pos_quirk=quirk, prefer=prefer, **extra,
    )


def _floats(flag: str, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise SimpoolBenchError(f"{flag} {value!r}: expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def _weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard, crop_pct=None, interpolation=None) -> dict:
    """The ModelOptions fields of --pretrained/--pretrained-file, the data config and the rollout flags."""
    return dict(pretrained=pretrained, pretrained_file=pretrained_file, mean=_floats("--mean", mean), std=_floats("--std", std),
                crop_pct=crop_pct, interpolation=interpolation, rollout_fusion=rollout_fusion, rollout_discard=rollout_discard)


def _engine(device, batch_size, workers, amp, channels_last, compile_, shard_size, resume, strict, out, dist_timeout=None,
            max_pixels=DEFAULT_MAX_PIXELS, allow_nonfinite=False):
    from .engine import EngineConfig, dist_timeout_s, init_distributed
    from .workers import default_workers

    if workers is None:
        workers = default_workers()
    if dist_timeout is not None:
        dist_timeout_s(dist_timeout)  # validate (> 0) even in a single process
    init_distributed(dist_timeout)
    return EngineConfig(
        device=device, batch_size=batch_size, workers=workers, amp=amp.value, channels_last=channels_last,
        compile=compile_, shard_size=shard_size, resume_dir=(Path(out) / ".shards") if (resume and out) else None,
        strict=strict, max_pixels=max_pixels, allow_nonfinite=allow_nonfinite,
    )


def _formats(formats: str) -> tuple[str, ...]:
    extra = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    allowed = {"csv", "parquet", "json", "md", "latex"}
    bad = [f for f in extra if f not in allowed]
    if bad:
        raise SimpoolBenchError(f"--formats {bad[0]!r}: expected some of {', '.join(sorted(allowed))}")
    return tuple(dict.fromkeys(("parquet", "csv", *extra)))


def _show(table, out: Path | None) -> None:
    from .engine import dist_rank
    from .results import console_table

    if dist_rank() != 0:
        return
    console.print(console_table(table))
    if out is not None:
        console.print(f"wrote {Path(out) / 'results.csv'} (and results.parquet)")


# ------------------------------------------------------------------------------------ commands
@app.command()
@friendly
def classify(
    data: Annotated[Path, typer.Option("--data", "-d", help="ImageFolder root (class folders), a flat folder with --labels, or the image root of --metadata.")],
    split: Annotated[Optional[str], typer.Option("--split", help="Split: the sub-folder of --data to read (it must exist; default: val when there is one, else --data itself); recorded in the table.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name recorded in the table.")] = "imagenet",
    labels: Annotated[Optional[Path], typer.Option("--labels", help="Label file for a flat folder: 'filename label' lines or CSV.")] = None,
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (image_ids.txt, class_labels.txt, ...).")] = None,
    subset: Annotated[Optional[int], typer.Option("--subset", min=1, help="Only the first N images per class (ImageNet-20%: 260).")] = None,
    knn_train: Annotated[Optional[Path], typer.Option("--knn-train", help="ImageFolder train split: memory bank for weighted k-NN (DINO: k=20, T=0.07).")] = None,
    knn_k: Annotated[int, typer.Option("--knn-k", min=1)] = 20,
    knn_temperature: Annotated[float, typer.Option("--knn-temperature")] = 0.07,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also write per_class.csv (top-1 per class).")] = False,
    resize: Annotated[Optional[int], typer.Option("--resize", min=1, help="Override the resize (short side) of the timm eval transform.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", min=1, help="Override the center-crop size.")] = None,
    interpolation: Annotated[Optional[str], typer.Option("--interpolation", help="bilinear | bicubic | nearest.")] = None,
    crop_pct: Annotated[Optional[float], typer.Option("--crop-pct", help="Center-crop fraction (resize = crop size / crop_pct; default: the model's pretrained config).")] = None,
    model: ModelOpt = None, pool: PoolOpt = None, gamma: GammaOpt = None, checkpoint: CkptOpt = None,
    fmt: FormatOpt = None, trust_checkpoint: TrustOpt = False, variant: VariantOpt = None,
    min_scope: MinScopeOpt = MinScope.sample, attn_source: AttnOpt = None, cls_head: ClsHeadOpt = None,
    num_classes: NumClassesOpt = None, dino_pos_quirk: QuirkOpt = None, prefer: PreferOpt = "auto",
    pretrained: PretrainedOpt = False, pretrained_file: PretrainedFileOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    rollout_fusion: RolloutFusionOpt = "mean", rollout_discard: RolloutDiscardOpt = 0.0,
    device: DeviceOpt = "auto", batch_size: BatchOpt = 64, workers: WorkersOpt = None, amp: AmpOpt = Amp.off,
    channels_last: ChannelsLastOpt = False, compile: CompileOpt = False, shard_size: ShardOpt = 1024,
    resume: ResumeOpt = True, strict: StrictOpt = False, dist_timeout: DistTimeoutOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS, allow_nonfinite: NonFiniteOpt = False, out: OutOpt = None,
    formats: FormatsOpt = "json",
) -> None:
    """Top-1/top-5 accuracy (and weighted k-NN for self-supervised checkpoints). Writes OUT/results.csv."""
    from . import api
    from . import tasks as ev
    from .transforms import classification_transform

    fmts = _formats(formats)
    opts = _model_options(model, pool, gamma, checkpoint, fmt, trust_checkpoint, variant, min_scope, attn_source, cls_head, num_classes, dino_pos_quirk, prefer,
                          **_weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard, crop_pct, interpolation))
    config = _engine(device, batch_size, workers, amp, channels_last, compile, shard_size, resume, strict, out, dist_timeout, max_pixels, allow_nonfinite)
    records, classes = api.read_classification_data(data, split, labels, metadata, subset, default_split="val")
    split = split or "val"
    net, ckpt = api.load_model(opts)
    transform = classification_transform(net.data_config, resize, crop, interpolation)
    bank = api.read_classification_data(knn_train)[0] if knn_train is not None else None
    outcome = ev.classify(net, records, transform, config, dataset=dataset, split=split, knn_train=bank,
                          knn_k=knn_k, knn_temperature=knn_temperature)
    size = net.data_config.get("input_size", (3, 0, 0))[-1] if crop is None else crop
    prov = api.provenance(net, ckpt, config, image_size=int(size), n_images=outcome.n_images)
    table = api.finish(outcome, prov, out, fmts, per_class=per_class, classes=classes)
    _show(table, out)


@app.command()
@friendly
def localize(
    dataset: Annotated[str, typer.Option("--dataset", help="cub | imagenet (recorded in the table).")] = "cub",
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Image root (the folder the metadata's image ids are relative to), or a CUB_200_2011 folder.")] = None,
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (e.g. metadata/CUB/test).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split recorded in the table (and CUB native split).")] = "test",
    interval: Annotated[float, typer.Option("--interval", help="CAM threshold step: 0.001 (reference train/eval pipeline) or 0.01 (its standalone evaluation.py).")] = 0.001,
    v1: Annotated[bool, typer.Option("--v1", help="Also MaxBoxAccV1 (largest contour, IoU 50).")] = False,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="No-model baseline map: center-gaussian | full-box.")] = None,
    cam_target: Annotated[str, typer.Option("--cam-target", help="CAM class: gt (wsolevaluation) | pred.")] = "gt",
    maps: Annotated[Optional[Path], typer.Option("--maps", help="Score the maps stored by `extract` in this folder instead of running a model (float32 maps: the direct run's numbers exactly).")] = None,
    model: ModelOpt = None, pool: PoolOpt = None, gamma: GammaOpt = None, checkpoint: CkptOpt = None,
    fmt: FormatOpt = None, trust_checkpoint: TrustOpt = False, variant: VariantOpt = None,
    min_scope: MinScopeOpt = MinScope.sample, attn_source: AttnOpt = None, cls_head: ClsHeadOpt = None,
    num_classes: NumClassesOpt = None, dino_pos_quirk: QuirkOpt = None, prefer: PreferOpt = "auto",
    pretrained: PretrainedOpt = False, pretrained_file: PretrainedFileOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    rollout_fusion: RolloutFusionOpt = "mean", rollout_discard: RolloutDiscardOpt = 0.0,
    device: DeviceOpt = "auto", batch_size: BatchOpt = 64, workers: WorkersOpt = None, amp: AmpOpt = Amp.off,
    channels_last: ChannelsLastOpt = False, compile: CompileOpt = False, shard_size: ShardOpt = 1024,
    resume: ResumeOpt = True, strict: StrictOpt = False, dist_timeout: DistTimeoutOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS, allow_nonfinite: NonFiniteOpt = False, out: OutOpt = None,
    formats: FormatsOpt = "json",
) -> None:
    """MaxBoxAccV2 of attention maps (wsolevaluation protocol, exact and fast). Writes OUT/results.csv."""
    from . import api
    from . import tasks as ev

    fmts = _formats(formats)
    if data is None:
        raise SimpoolBenchError("--data is required (the image root of the dataset)")
    if interval <= 0 or interval >= 1:
        raise SimpoolBenchError(f"--interval {interval}: expected a step in (0, 1), e.g. 0.001 or 0.01")
    if cam_target not in ("gt", "pred"):
        raise SimpoolBenchError(f"--cam-target {cam_target!r}: expected gt or pred")
    config = _engine(device, batch_size, workers, amp, channels_last, compile, shard_size, resume, strict, out, dist_timeout, max_pixels, allow_nonfinite)
    records = api.read_localization_data(dataset, data, metadata, split)
    if maps is not None:  # no model: the stored maps
        if baseline or model or checkpoint or pretrained or pretrained_file:
            raise SimpoolBenchError("--maps needs no model: drop --model/--checkpoint/--pretrained/--baseline")
        outcome, prov = api.from_maps("localize", maps, records, dataset=dataset, split=split, interval=interval, v1=v1,
                                      cam_target=cam_target, allow_nonfinite=allow_nonfinite)
        return _show(api.finish(outcome, prov, out, fmts), out)
    net = ckpt = opts = None
    if baseline is None:
        opts = _model_options(model, pool, gamma, checkpoint, fmt, trust_checkpoint, variant, min_scope, attn_source, cls_head, num_classes, dino_pos_quirk, prefer,
                              **_weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard))
        net, ckpt = api.load_model(opts)
    elif model or checkpoint or pretrained or pretrained_file:
        raise SimpoolBenchError("--baseline needs no model: drop --model/--checkpoint/--pretrained")
    outcome = ev.localize(net, records, config, dataset=dataset, split=split, interval=interval, v1=v1,
                          baseline=baseline, cam_target=cam_target)
    prov = api.provenance(net, ckpt, config, image_size=224, n_images=outcome.n_images, baseline=baseline)
    _show(api.finish(outcome, prov, out, fmts), out)


@app.command()
@friendly
def discover(
    dataset: Annotated[str, typer.Option("--dataset", help="voc07 | voc12 | coco20k.")] = "voc07",
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="VOC: the VOC2007/VOC2012 folder; COCO20k: the train2014 image folder.")] = None,
    split: Annotated[str, typer.Option("--split", help="VOC ImageSets/Main split (trainval for the protocol).")] = "trainval",
    annotations: Annotated[Optional[Path], typer.Option("--annotations", help="COCO20k: instances_train2014.json.")] = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="COCO20k: coco_20k_filenames.txt (LOST).")] = None,
    method: Annotated[str, typer.Option("--method", help="attn (attention map) | lost (ViT keys) | center | full-image (no model).")] = "attn",
    mass: Annotated[float, typer.Option("--mass", help="attn: fraction of attention mass kept (DINO/LOST: 0.6).")] = 0.6,
    lost_compat: Annotated[bool, typer.Option("--lost-compat", help="attn: all of LOST dino_seg's defaults: head 4 of a CLS map (unless --cls-head), its component choice (off-by-one included), its unclipped box.")] = False,
    k_patches: Annotated[int, typer.Option("--k-patches", help="lost: seed expansion size (LOST: 100).")] = 100,
    no_hard: Annotated[bool, typer.Option("--no-hard", help="VOC: drop images whose objects are all difficult/truncated (LOST --no_hard).")] = False,
    maps: Annotated[Optional[Path], typer.Option("--maps", help="--method attn on the maps stored by `extract` in this folder instead of running a model.")] = None,
    model: ModelOpt = None, pool: PoolOpt = None, gamma: GammaOpt = None, checkpoint: CkptOpt = None,
    fmt: FormatOpt = None, trust_checkpoint: TrustOpt = False, variant: VariantOpt = None,
    min_scope: MinScopeOpt = MinScope.sample, attn_source: AttnOpt = None, cls_head: ClsHeadOpt = None,
    num_classes: NumClassesOpt = None, dino_pos_quirk: QuirkOpt = None, prefer: PreferOpt = "auto",
    pretrained: PretrainedOpt = False, pretrained_file: PretrainedFileOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    rollout_fusion: RolloutFusionOpt = "mean", rollout_discard: RolloutDiscardOpt = 0.0,
    device: DeviceOpt = "auto", batch_size: BatchOpt = 16, workers: WorkersOpt = None, amp: AmpOpt = Amp.off,
    channels_last: ChannelsLastOpt = False, compile: CompileOpt = False, shard_size: ShardOpt = 1024,
    resume: ResumeOpt = True, strict: StrictOpt = False, dist_timeout: DistTimeoutOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS, allow_nonfinite: NonFiniteOpt = False, out: OutOpt = None,
    formats: FormatsOpt = "json",
) -> None:
    """CorLoc of unsupervised object discovery (LOST protocol, full resolution). Writes OUT/results.csv."""
    from . import api
    from . import tasks as ev

    fmts = _formats(formats)
    if data is None:
        raise SimpoolBenchError("--data is required (VOC20XX folder or COCO train2014 images)")
    config = _engine(device, batch_size, workers, amp, channels_last, compile, shard_size, resume, strict, out, dist_timeout, max_pixels, allow_nonfinite)
    records = api.read_discovery_data(dataset, data, split, no_hard, annotations, list_file)
    if maps is not None:  # no model: the stored maps
        if method != "attn" or model or checkpoint:
            raise SimpoolBenchError("--maps scores stored attention maps: use --method attn, without --model/--checkpoint")
        outcome, prov = api.from_maps("discover", maps, records, dataset=dataset, split=split, mass=mass, lost_compat=lost_compat,
                                      allow_nonfinite=allow_nonfinite)
        return _show(api.finish(outcome, prov, out, fmts), out)
    net = ckpt = opts = None
    if method not in ("center", "full-image"):
        opts = _model_options(model, pool, gamma, checkpoint, fmt, trust_checkpoint, variant, min_scope, attn_source, cls_head, num_classes, dino_pos_quirk, prefer,
                              **_weights_options(pretrained, pretrained_file, mean, std, rollout_fusion, rollout_discard))
        net, ckpt = api.load_model(opts)
    outcome = ev.discover(net, records, config, dataset=dataset, split=split, method=method, mass=mass,
                          lost_compat=lost_compat, k_patches=k_patches)
    prov = api.provenance(net, ckpt, config, image_size=None, n_images=outcome.n_images, method=method,
                          baseline=method if net is None else None)
    table = api.finish(outcome, prov, out, fmts)
    _show(table, out)


@app.command()
@friendly
def inspect(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file.")],
    trust_checkpoint: TrustOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Show a checkpoint's format, architecture, pooling, gamma, parameters and key mapping."""
    from rich.table import Table

    from .checkpoints import inspect_checkpoint

    info = inspect_checkpoint(checkpoint, trust=trust_checkpoint, format=fmt)
    table = Table(title=str(checkpoint), show_header=False)
    for k, v in info.items():
        if isinstance(v, (list, tuple)):
            v = "\n".join(map(str, v)) if v else "-"
        table.add_row(str(k), str(v))
    console.print(table)
    if info.get("non_finite", "none") != "none":
        err_console.print(f"warning: non-finite weights (NaN or inf): {info['non_finite']}", highlight=False, markup=False, soft_wrap=True)


@app.command()
@friendly
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Result files (results.parquet/.csv/.json) or run folders.")],
    reference: Annotated[int, typer.Option("--reference", "-r", help="Index of the run the deltas are taken against.")] = 0,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the table as Markdown.")] = None,
    latex: Annotated[Optional[Path], typer.Option("--latex", help="Also write the table as LaTeX (booktabs, best bold).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="Comma-separated row labels, one per run.")] = None,
) -> None:
    """Side-by-side table of several runs, with deltas against a reference run."""
    from . import results as R

    frames = [R.read_run(_result_file(p)) for p in runs]
    lab = [s.strip() for s in labels.split(",")] if labels else None
    table = R.compare(frames, reference=reference, labels=lab)
    console.print(R.compare_console_table(table))
    if markdown is not None:
        atomic_write(markdown, R.compare_to_markdown(table).encode())
        console.print(f"wrote {markdown}")
    if latex is not None:
        atomic_write(latex, R.compare_to_latex(table).encode())
        console.print(f"wrote {latex}")


def _result_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("results.parquet", "results.csv", "results.json"):
            if (path / name).exists():
                return path / name
        raise SimpoolBenchError(f"{path}: no results.parquet, results.csv or results.json in this folder")
    return path


@app.command()
@friendly
def check(
    run: Annotated[Path, typer.Argument(help="The run's result file (or folder).")],
    baseline: Annotated[Path, typer.Option("--baseline", help="Baseline results file (ours, or a CSV with dataset,split,metric,iou_threshold,value).")],
    tolerances: Annotated[Optional[Path], typer.Option("--tolerances", help="TOML file of per-metric absolute tolerances.")] = None,
    tol: Annotated[Optional[list[str]], typer.Option("--tol", help="Override one tolerance: METRIC=VALUE (repeatable).")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Also write the Markdown summary to this file.")] = None,
    github: Annotated[bool, typer.Option("--github/--no-github", help="Append the summary to $GITHUB_STEP_SUMMARY when set.")] = True,
) -> None:
    """CI gate: compare a run with a baseline; exit 0 within tolerance, 1 on regression, 2 on bad input."""
    from . import results as R

    tols = dict(R.load_tolerances(tolerances)) if tolerances is not None else {}
    for item in tol or []:
        name, _, value = item.partition("=")
        try:
            tols[name.strip()] = float(value)
        except ValueError:
            raise SimpoolBenchError(f"--tol {item!r}: expected METRIC=NUMBER") from None
    try:
        report = R.check(_result_file(run), _result_file(baseline), tolerances=tols)  # read_run / read_baseline
    except SimpoolBenchError:
        raise
    except Exception as err:  # a crash must never read as a regression (exit 1)
        raise SimpoolBenchError(f"check failed on {run} vs {baseline}: {type(err).__name__}: {err}") from err
    console.print(report.markdown, markup=False, highlight=False)
    if summary is not None:
        atomic_write(summary, report.markdown.encode())
    if github:
        R.append_github_summary(report.markdown)
    raise typer.Exit(R.exit_code(report))


@datasets_app.command("verify")
@friendly
def datasets_verify(
    name: Annotated[str, typer.Argument(help="Manifest name (see `simpool-bench datasets list`).")],
    path: Annotated[Path, typer.Argument(help="Root folder of your copy.")],
    metadata: Annotated[Optional[Path], typer.Option("--metadata", help="wsolevaluation metadata folder (default PATH/metadata).")] = None,
) -> None:
    """Check a dataset copy's layout, counts and checksums against its manifest."""
    from .data.manifests import verify_dataset

    report = verify_dataset(name, path, metadata_dir=metadata)
    for line in report.checked:
        console.print(f"[green]✓[/] {line}", highlight=False)
    for line in report.problems:
        console.print(f"[red]✗[/] {line}", highlight=False)
    if report.ok:
        console.print(f"[green]✓[/] {name} at {path} matches its manifest", highlight=False)
    raise typer.Exit(0 if report.ok else 1)


@datasets_app.command("list")
@friendly
def datasets_list() -> None:
    """List the dataset manifests shipped in data_manifests/."""
    from .data.manifests import list_manifests

    for name in list_manifests():
        console.print(name)


@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (data, models, runs, summary, figures).")] = Path("demo_out"),
    small: Annotated[bool, typer.Option("--small", help="A quick setting (few images, one epoch): what CI runs.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo data and training.")] = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Everything end to end on demo data the tool makes itself: data, two trained tiny ViTs, every command.

    Writes OUT/data (every dataset layout), OUT/models (official checkpoint layout), OUT/runs/*/results.csv,
    OUT/summary/compare.md|.tex, OUT/figures/overlays.png and boxacc_curves.png. A second run reuses data and models."""
    from dataclasses import replace as _replace

    from .demo.run import DemoSettings, run_demo

    settings = DemoSettings.small() if small else DemoSettings()
    run_demo(out, _replace(settings, seed=seed), device=device)


def _register_extra_commands() -> None:
    """Commands kept in their own modules (each exposes ``register(app, friendly)``)."""
    from . import cli_maps

    cli_maps.register(app, friendly)


_register_extra_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
