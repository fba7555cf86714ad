"""The command line's shared options (``Annotated`` aliases, choices and defaults from the
registry), the option groups several commands declare at once (``shared_options``) and the ONE
conversion of parsed options into specs: ``Parsed(ctx.params)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from ..data.inputs import DEFAULT_MAX_PIXELS
from ..errors import SimpoolBenchError
from ..families import POOLS
from ..registry import DATASETS, DINO_KNN

if TYPE_CHECKING:
    from ..engine import EngineConfig
    from ..specs import DataSpec, ModelOptions

__all__ = ["DEFAULT_MAX_PIXELS"]


# the pools build_model knows (families.POOLS: simpool, cls, gap, map), one list for both
Pool = Enum("Pool", {name: name for name in POOLS}, type=str)  # type: ignore[misc]


class Amp(str, Enum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


class MinScope(str, Enum):
    sample = "sample"
    batch = "batch"
    channel = "channel"


ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="timm architecture, e.g. vit_small_patch16_224, resnet50, convnext_tiny (inferred from the checkpoint when it says).",
        rich_help_panel="Model",
    ),
]
PoolOpt = Annotated[
    Optional[Pool],
    typer.Option(
        "--pool",
        help="Pooling: simpool | cls (ViTs) | gap | map (ViTs, timm's attention pool) (inferred from the checkpoint).",
        rich_help_panel="Model",
    ),
]
GammaOpt = Annotated[
    Optional[str],
    typer.Option(
        "--gamma",
        help="SimPool gamma: a float, or 'none' for the plain attention-weighted mean (default 1.25 transformers, 2.0 CNNs).",
        rich_help_panel="Model",
    ),
]
CkptOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint", "-c", help="Checkpoint file (.pth, .pth.tar, .safetensors); format auto-detected.", rich_help_panel="Model"
    ),
]
FormatOpt = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        help="Force the checkpoint format: official-supervised | official-dino | dino-backbone | timm-simpool | state-dict | safetensors.",
        rich_help_panel="Model",
    ),
]
TrustOpt = Annotated[
    bool, typer.Option("--trust-checkpoint", help="Allow arbitrary unpickling (only for files you trust).", rich_help_panel="Model")
]
PreferOpt = Annotated[
    str,
    typer.Option(
        "--prefer", help="Which weights of a checkpoint: auto (EMA, DINO teacher) | ema | raw | teacher | student.", rich_help_panel="Model"
    ),
]
VariantOpt = Annotated[
    Optional[str],
    typer.Option("--variant", help="ViT layout: supervised (norm before SimPool) | dino (norm after).", rich_help_panel="Model"),
]
MinScopeOpt = Annotated[
    MinScope,
    typer.Option(
        "--min-scope",
        help="Where SimPool's gamma shift takes its min: sample (default, batch-independent) | batch (official) | channel (timm).",
        rich_help_panel="Model",
    ),
]
AttnOpt = Annotated[
    Optional[str],
    typer.Option(
        "--attn-source", help="Attention map: simpool | cls | cam | map | rollout | gradcam (default from --pool).", rich_help_panel="Model"
    ),
]
ClsHeadOpt = Annotated[
    Optional[int],
    typer.Option("--cls-head", help="For --attn-source cls: one head instead of the mean over heads.", rich_help_panel="Model"),
]
NumClassesOpt = Annotated[
    Optional[int], typer.Option("--num-classes", help="Classifier size when the checkpoint does not tell.", rich_help_panel="Model")
]
QuirkOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--dino-pos-quirk/--no-dino-pos-quirk",
        help="Reproduce the official DINO-SimPool position-embedding interpolation (default: on for official DINO files).",
        rich_help_panel="Model",
    ),
]

PretrainedOpt = Annotated[
    bool,
    typer.Option(
        "--pretrained",
        help="timm's pretrained weights of --model, from the local Hugging Face cache (HF_HUB_CACHE / HF_HOME; honours HF_HUB_OFFLINE=1: no cached copy is an error). Default pool: the model's own.",
        rich_help_panel="Model",
    ),
]
PretrainedFileOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--pretrained-file",
        help="timm pretrained weights of --model from this file (model.safetensors, pytorch_model.bin), loaded as timm loads them.",
        rich_help_panel="Model",
    ),
]
RandomInitOpt = Annotated[
    bool,
    typer.Option(
        "--random-init",
        help="Run --model with random weights on purpose (a warning; random_init=True in the provenance). Without weights and without it: an error.",
        rich_help_panel="Model",
    ),
]
MeanOpt = Annotated[
    Optional[str],
    typer.Option("--mean", help="Normalisation mean R,G,B (default: the model's pretrained config).", rich_help_panel="Model"),
]
StdOpt = Annotated[
    Optional[str], typer.Option("--std", help="Normalisation std R,G,B (default: the model's pretrained config).", rich_help_panel="Model")
]
RolloutFusionOpt = Annotated[
    str, typer.Option("--rollout-fusion", help="--attn-source rollout: head fusion mean | max | min.", rich_help_panel="Model")
]
RolloutDiscardOpt = Annotated[
    float,
    typer.Option(
        "--rollout-discard",
        help="--attn-source rollout: fraction of the lowest fused attentions discarded per block (0 = the paper).",
        rich_help_panel="Model",
    ),
]

DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.", rich_help_panel="Run")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per forward pass.", rich_help_panel="Run")]
# The most --workers takes: each is a process, started whether or not it gets a batch (10**30 went
# on forking until the machine ran out of processes).
MAX_WORKERS = 1024
WorkersOpt = Annotated[
    Optional[int],
    typer.Option(
        "--workers",
        "-j",
        min=0,
        max=MAX_WORKERS,
        help=f"DataLoader workers decoding images (default: min(8, cores); 0: in the main process; at most {MAX_WORKERS}).",
        rich_help_panel="Run",
        show_default=False,
    ),
]
AmpOpt = Annotated[Amp, typer.Option("--amp", help="Mixed precision: off | bf16 | fp16.", rich_help_panel="Run")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="channels_last memory format (CNNs on GPU).", rich_help_panel="Run")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model.", rich_help_panel="Run")]
ShardOpt = Annotated[
    int, typer.Option("--shard-size", min=1, help="Images per shard (unit of resume and of multi-GPU work).", rich_help_panel="Run")
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Keep finished shards under OUT/.shards and reuse them when the same command runs again.",
        rich_help_panel="Run",
    ),
]
DistTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--dist-timeout",
        help="torchrun: seconds a collective may wait for the other ranks before the run stops with an error (default $SIMPOOL_BENCH_DIST_TIMEOUT or 600).",
        rich_help_panel="Run",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail on an image that does not decode or is over --max-pixels (default: skip it, warn and count it).",
        rich_help_panel="Run",
    ),
]
MaxPixelsOpt = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Images with more pixels (read from the header, before decoding) are skipped and counted like undecodable ones (--strict: an error). Default: PIL's bomb limit.",
        rich_help_panel="Run",
    ),
]
NonFiniteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-nonfinite",
        help="Images whose logits or maps hold NaN/inf count as misses and the table gets an n_nonfinite row (default: the run fails, saying how many).",
        rich_help_panel="Run",
    ),
]
OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--out",
        "-o",
        help="Output folder: results.csv/.parquet, per_image.parquet, plus --formats (without it the table is only printed; nothing is written).",
        rich_help_panel="Output",
    ),
]
FormatsOpt = Annotated[
    str,
    typer.Option(
        "--formats",
        help="Formats besides results.csv and .parquet (always written), comma-separated: json, md, latex, csv (per_image.csv); the flag replaces the default.",
        rich_help_panel="Output",
    ),
]


# ---------------------------------------------------------------------------------- option groups
@dataclass(frozen=True)
class OptionGroup:
    """Options several commands share, in their --help order: keyword-only parameters whose
    annotation is the flag's ``Annotated`` alias, as a command would declare them."""

    parameters: tuple[inspect.Parameter, ...]

    @classmethod
    def of(cls, **options: tuple[Any, Any]) -> OptionGroup:
        """The group of ``name=(Annotated alias, default)``, in this order."""
        keyword = inspect.Parameter.KEYWORD_ONLY
        return cls(tuple(inspect.Parameter(name, keyword, annotation=alias, default=default) for name, (alias, default) in options.items()))

    @property
    def names(self) -> tuple[str, ...]:
        """The options' parameter names (``ctx.params`` keys), in order."""
        return tuple(p.name for p in self.parameters)

    def _known(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise KeyError(f"not options of this group: {', '.join(unknown)}")

    def only(self, *names: str) -> OptionGroup:
        """These options alone (in the group's order)."""
        self._known(names)
        return OptionGroup(tuple(p for p in self.parameters if p.name in names))

    def without(self, *names: str) -> OptionGroup:
        """The group less these options."""
        self._known(names)
        return OptionGroup(tuple(p for p in self.parameters if p.name not in names))

    def with_defaults(self, **defaults: Any) -> OptionGroup:
        """The same options, some with another default."""
        self._known(defaults)
        return OptionGroup(tuple(p.replace(default=defaults[p.name]) if p.name in defaults else p for p in self.parameters))

    def replacing(self, **aliases: Any) -> OptionGroup:
        """The same options (names, places, defaults), some declared by another ``Annotated`` alias."""
        self._known(aliases)
        return OptionGroup(tuple(p.replace(annotation=aliases[p.name]) if p.name in aliases else p for p in self.parameters))


#: The model flags of every command that loads a model.
MODEL_OPTIONS = OptionGroup.of(
    model=(ModelOpt, None),
    pool=(PoolOpt, None),
    gamma=(GammaOpt, None),
    checkpoint=(CkptOpt, None),
    fmt=(FormatOpt, None),
    trust_checkpoint=(TrustOpt, False),
    variant=(VariantOpt, None),
    min_scope=(MinScopeOpt, MinScope.sample),
    attn_source=(AttnOpt, None),
    cls_head=(ClsHeadOpt, None),
    num_classes=(NumClassesOpt, None),
    dino_pos_quirk=(QuirkOpt, None),
    prefer=(PreferOpt, "auto"),
    pretrained=(PretrainedOpt, False),
    pretrained_file=(PretrainedFileOpt, None),
    random_init=(RandomInitOpt, False),
    mean=(MeanOpt, None),
    std=(StdOpt, None),
    rollout_fusion=(RolloutFusionOpt, "mean"),
    rollout_discard=(RolloutDiscardOpt, 0.0),
)
#: The run flags (``Parsed.engine``): device, batching, shards, bad images.
ENGINE_OPTIONS = OptionGroup.of(
    device=(DeviceOpt, "auto"),
    batch_size=(BatchOpt, 64),
    workers=(WorkersOpt, None),
    amp=(AmpOpt, Amp.off),
    channels_last=(ChannelsLastOpt, False),
    compile=(CompileOpt, False),
    shard_size=(ShardOpt, 1024),
    resume=(ResumeOpt, True),
    strict=(StrictOpt, False),
    dist_timeout=(DistTimeoutOpt, None),
    max_pixels=(MaxPixelsOpt, DEFAULT_MAX_PIXELS),
    allow_nonfinite=(NonFiniteOpt, False),
)
#: Where a run's table goes and in which extra formats.
OUTPUT_OPTIONS = OptionGroup.of(out=(OutOpt, None), formats=(FormatsOpt, "json"))

Command = TypeVar("Command", bound=Callable[..., Any])


def shared_options(*groups: OptionGroup) -> Callable[[Command], Command]:
    """Declare the groups' options on a command in place of its last parameter, ``**shared``: its
    own options come first in --help, then the groups' in order. Typer reads the command's
    ``__signature__`` (and ``__annotations__``, set to match); the values arrive in ``**shared``
    (and, as all options, in ``ctx.params``)."""

    def declare(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        *own, shared = signature.parameters.values()
        if shared.kind is not inspect.Parameter.VAR_KEYWORD:
            raise TypeError(f"{command.__name__}: shared options need a last **shared parameter to arrive in")
        parameters = [*own, *(p for group in groups for p in group.parameters)]
        names = [p.name for p in parameters]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise TypeError(f"{command.__name__}: options declared twice: {', '.join(twice)}")
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters if p.annotation is not p.empty}
        if signature.return_annotation is not signature.empty:
            command.__annotations__["return"] = signature.return_annotation
        return command

    return declare


#: The datasets extract/visualize know (the registry's names).
MapDataset = Enum("MapDataset", {name: name for name in DATASETS}, type=str)  # type: ignore[misc]


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


DatasetOpt = Annotated[
    MapDataset,
    typer.Option(
        "--dataset",
        help="cub | imagenet (224x224, wsolevaluation) | voc07 | voc12 | coco20k (full resolution, LOST) | folder (any images, 224x224).",
        rich_help_panel="Data",
    ),
]
DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", "-d", help="Image root (as localize/discover take it; folder: any folder of images).", rich_help_panel="Data"),
]
MetadataOpt = Annotated[
    Optional[Path],
    typer.Option("--metadata", help="cub/imagenet: wsolevaluation metadata folder (e.g. metadata/CUB/test).", rich_help_panel="Data"),
]
SplitOpt = Annotated[
    Optional[str],
    typer.Option("--split", help="Split (default: test for cub/imagenet, trainval for VOC, train for coco20k).", rich_help_panel="Data"),
]
DataLabelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--data-label",
        help="Name recorded in the table's dataset column instead of --dataset: your own data in a published layout (default: --dataset).",
    ),
]
AnnOpt = Annotated[Optional[Path], typer.Option("--annotations", help="coco20k: instances_train2014.json.", rich_help_panel="Data")]
ListOpt = Annotated[Optional[Path], typer.Option("--list", help="coco20k: coco_20k_filenames.txt.", rich_help_panel="Data")]
NoHardOpt = Annotated[
    bool, typer.Option("--no-hard", help="VOC: drop images whose objects are all difficult/truncated.", rich_help_panel="Data")
]
CamTargetOpt = Annotated[
    str, typer.Option("--cam-target", help="CAM class for cub/imagenet: gt (wsolevaluation) | pred.", rich_help_panel="Model")
]


# ------------------------------------------------------------------------------------ the conversion
def check_out_folder(out: str | Path) -> None:
    """``--out`` names a folder that can be made (or is one), checked before anything runs."""
    from ..files import check_makeable

    if Path(out).exists() and not Path(out).is_dir():
        raise SimpoolBenchError(f"--out {out}: a file is there; expected a folder (made when missing)")
    check_makeable(out)
    from ..results.table import EXPORT_FILES, RUN_EXTRA_FILES, RUN_MANIFEST

    for name in (*EXPORT_FILES.values(), *RUN_EXTRA_FILES, RUN_MANIFEST):  # else the results are computed, then cannot be written
        if (Path(out) / name).is_dir():
            raise SimpoolBenchError(f"--out {out}: {name} is a folder; expected the file a run writes there (move the folder away)")


def parse_gamma(value: str | None) -> Any:
    """``--gamma``: a number, 'none' (the plain attention-weighted mean), or not given (``unset.UNSET``)."""
    from ..unset import UNSET

    if value is None:
        return UNSET
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise SimpoolBenchError(f"--gamma {value!r}: expected a number or 'none'") from None


def parse_floats(flag: str, value: str | None) -> tuple[float, ...] | None:
    """``--mean``/``--std``: comma-separated numbers."""
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise SimpoolBenchError(f"{flag} {value!r}: expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None


#: ``--knn-k``'s default: DINO's k list, as the comma list the flag takes.
KNN_KS_DEFAULT = ",".join(map(str, DINO_KNN.ks))


def parse_ks(value: str) -> tuple[int, ...]:
    """``--knn-k``: comma-separated distinct positive integers, e.g. 10,20,100,200."""
    try:
        ks = tuple(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1 or len(set(ks)) != len(ks):
        raise SimpoolBenchError(f"--knn-k {value!r}: expected distinct positive integers separated by commas, e.g. 10,20,100,200")
    return ks


def parse_formats(formats: str) -> tuple[str, ...]:
    """``--formats``: results.csv and results.parquet always, plus these."""
    extra = tuple(f.strip().lower() for f in formats.split(",") if f.strip())
    allowed = {"csv", "parquet", "json", "md", "latex"}
    bad = [f for f in extra if f not in allowed]
    if bad:
        raise SimpoolBenchError(f"--formats {bad[0]!r}: expected some of {', '.join(sorted(allowed))}")
    return tuple(dict.fromkeys(extra))  # results.csv/.parquet are written whatever the formats


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or by its environment variable),
    rather than leaving it at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _flag(ctx: typer.Context, name: str) -> str:
    """The long flag of parameter ``name`` of ``ctx``'s command (``k_patches`` -> ``--k-patches``)."""
    opts = next((p.opts for p in ctx.command.params if p.name == name), [])
    return next((o for o in opts if o.startswith("--")), "--" + name.replace("_", "-"))


def refuse_given(ctx: typer.Context, unused: Mapping[str, str]) -> None:
    """One error for an option the user gave that this run does not use (``unused``: parameter
    name -> why), instead of ignoring it without a word."""
    for name, why in unused.items():
        if given(ctx, name):
            raise SimpoolBenchError(f"{_flag(ctx, name)} is not used by this run: {why}")


#: Why a protocol parameter is unused where ``specs.protocol_of`` records it as None (``--knn-subset``
#: without a bank is the run layer's own error).
UNUSED_BECAUSE = {
    "knn_k": "only the k-NN classifier uses it (give --knn-train DIR)",
    "knn_temperature": "only the k-NN classifier uses it (give --knn-train DIR)",
    "knn_chunks": "only the k-NN classifier uses it (give --knn-train DIR)",
    "cam_target": "a no-model --baseline has no class to take a CAM of",
    "mass": "only --method attn keeps a fraction of the attention mass",
    "lost_compat": "only --method attn takes LOST dino_seg's defaults",
    "k_patches": "only --method lost expands a seed",
}


def refuse_unused(ctx: typer.Context, spec: Any) -> None:
    """``refuse_given`` of the protocol parameters the run's spec leaves unused (``specs.protocol_of``
    records them as None: ``--mass`` of ``--method lost``, ``--knn-k`` without ``--knn-train``, ...)."""
    from ..specs import protocol_of

    record = protocol_of(spec)
    refuse_given(ctx, {name: why for name, why in UNUSED_BECAUSE.items() if name in record and record[name] is None})


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


class Parsed:
    """A command's parsed options (``ctx.params``: parameter name -> value) turned into specs;
    options a command does not have take the run layer's defaults."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = {k: _plain(v) for k, v in params.items()}

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    def get(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name, default)
        return default if value is None and default is not None else value

    def formats(self) -> tuple[str, ...]:
        return parse_formats(self.get("formats", ""))

    def model(self, **override: Any) -> ModelOptions:
        """``ModelOptions`` of the model flags (``override``: fields set by the command itself)."""
        from ..specs import ModelOptions

        g = self.get
        fields = dict(
            arch=g("model"),
            pool=g("pool"),
            gamma=parse_gamma(g("gamma")),
            checkpoint=g("checkpoint"),
            format=g("fmt"),
            trust=g("trust_checkpoint", False),
            variant=g("variant"),
            min_scope=g("min_scope", "sample"),
            attn_source=g("attn_source"),
            cls_head=g("cls_head"),
            num_classes=g("num_classes"),
            dino_pos_quirk=g("dino_pos_quirk"),
            prefer=g("prefer", "auto"),
            pretrained=g("pretrained", False),
            pretrained_file=g("pretrained_file"),
            random_init=g("random_init", False),
            mean=parse_floats("--mean", g("mean")),
            std=parse_floats("--std", g("std")),
            crop_pct=g("crop_pct"),
            interpolation=g("interpolation"),
            rollout_fusion=g("rollout_fusion", "mean"),
            rollout_discard=g("rollout_discard", 0.0),
        )
        return ModelOptions(**{**fields, **override})

    def data(self, **override: Any) -> DataSpec:
        """``DataSpec`` of the data flags."""
        from ..specs import DataSpec

        g = self.get
        fields = dict(
            dataset=g("dataset"),
            data=g("data"),
            split=g("split"),
            metadata=g("metadata"),
            labels=g("labels"),
            subset=g("subset"),
            annotations=g("annotations"),
            list_file=g("list_file"),
            no_hard=g("no_hard", False),
            label=g("data_label"),
        )
        return DataSpec(**{**fields, **override})

    def engine(self, *, shards: bool = True) -> EngineConfig:
        """``EngineConfig`` of the run flags; finished shards under OUT/.shards when resuming (``shards``)."""
        from ..engine import EngineConfig, dist_timeout_s, init_distributed
        from ..workers import default_workers

        g = self.get
        workers = g("workers")
        if workers is None:
            workers = default_workers()
        dist_timeout = g("dist_timeout")
        if dist_timeout is not None:
            dist_timeout_s(dist_timeout)  # validate (> 0) even in a single process
        out = g("out")
        if out is not None:  # now, not after the run (without --resume nothing is written before the results)
            check_out_folder(out)
        init_distributed(dist_timeout)
        resume_dir = (Path(out) / ".shards") if (shards and g("resume", False) and out) else None
        return EngineConfig(
            device=g("device", "auto"),
            batch_size=g("batch_size"),
            workers=workers,
            amp=g("amp", "off"),
            channels_last=g("channels_last", False),
            compile=g("compile", False),
            shard_size=g("shard_size", 1024),
            resume_dir=resume_dir,
            strict=g("strict", False),
            max_pixels=g("max_pixels", DEFAULT_MAX_PIXELS),
            allow_nonfinite=g("allow_nonfinite", False),
        )
