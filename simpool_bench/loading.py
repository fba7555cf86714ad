"""Build and load a model from ``ModelOptions``: the checkpoint's own facts, the user's flags, the data config."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SimpoolBenchError
from .specs import ModelOptions

#: The torch seed of ``--random-init`` weights.
RANDOM_INIT_SEED = 0

if TYPE_CHECKING:  # timm and the checkpoint loaders are imported only when a model is built
    from .checkpoints import LoadedCheckpoint
    from .models import BenchModel


def load_model(options: ModelOptions) -> tuple[BenchModel, LoadedCheckpoint | None]:
    """Build the model the options describe and load its checkpoint (auto-detected format);
    returns ``(model in eval mode, the loaded checkpoint or None)``.

    The checkpoint tells arch/pool/gamma/variant where it can; explicit options win, and an option
    that contradicts the file is an error. A model without weights (no checkpoint, no pretrained
    weights) is an error unless ``options.random_init``: then it runs randomly initialised, with one
    ``warning:`` line once it is built (``check_weights``, ``warn_random_init``); its weights are
    drawn under ``torch.manual_seed(RANDOM_INIT_SEED)``, so such a run repeats.
    ViTs from DINO-code weights (``ckpt.dino_code``: DINO checkpoints and backbones, official SimPool
    DINO files) run as DINO's ``vision_transformer.py``: its position interpolation
    (``pos_interp='dino'`` unless ``options.pos_interp`` says otherwise) and its explicit attention;
    other weights keep timm's way. A ViT checkpoint is built at its own position grid (``checkpoint_img_size``:
    a ``vit_*_384`` at 384) unless ``options.img_size`` or the file's ``args.model_kwargs`` give the size."""
    from .checkpoints import UNSET, load_checkpoint, load_into, resolve_spec

    check_model_options(options)
    ckpt = None
    arch, pool, gamma, variant = options.arch, options.pool, options.gamma, options.variant
    extra: dict[str, Any] = {}
    pretrained = bool(options.pretrained or options.pretrained_file is not None)
    if options.checkpoint is not None:
        ckpt = load_checkpoint(options.checkpoint, format=options.format, trust=options.trust, prefer=options.prefer)
        arch, pool, gamma, variant = resolve_spec(ckpt, arch=arch, pool=pool, gamma=gamma, variant=variant)
        extra = dict(getattr(ckpt, "model_kwargs", None) or {})
    if arch is None:
        raise SimpoolBenchError(NO_ARCH)
    num_classes = options.num_classes
    if num_classes is None and not pretrained:
        num_classes = ckpt.num_classes if (ckpt is not None and ckpt.num_classes is not None) else (0 if variant == "dino" else 1000)
    quirk = options.dino_pos_quirk
    if quirk is None:
        quirk = bool(ckpt is not None and ckpt.dino_pos_quirk)
    kwargs: dict[str, Any] = dict(
        pool=pool or (None if pretrained else "simpool"),
        variant=variant or "supervised",
        num_classes=num_classes,
        min_scope=options.min_scope,
        attn_source=options.attn_source,
        cls_head=options.cls_head,
        dino_pos_quirk=quirk,
        use_beta=bool(ckpt is not None and ckpt.has_beta),
        pretrained=pretrained,
        pretrained_file=None if options.pretrained_file is None else str(options.pretrained_file),
        data_overrides=data_overrides(options),
        rollout_fusion=options.rollout_fusion,
        rollout_discard=options.rollout_discard,
    )
    dino_vit = ckpt is not None and ckpt.dino_code and ckpt.family == "vit"
    if options.pos_interp is not None or dino_vit:
        kwargs["pos_interp"] = options.pos_interp or "dino"
    if dino_vit:
        kwargs["fused_attn"] = False
    if gamma is not UNSET:
        kwargs["gamma"] = gamma
    if options.img_size is not None:
        kwargs["img_size"] = options.img_size
        extra.pop("img_size", None)
    elif ckpt is not None and "img_size" not in extra:
        grid_size = checkpoint_img_size(ckpt)
        if grid_size is not None:  # a ViT trained at another size (vit_*_384): built at its own position grid
            kwargs["img_size"] = grid_size
    if options.random_init:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded, so a random-init run repeats; the caller's RNG untouched
            torch.manual_seed(RANDOM_INIT_SEED)
            model = _build(arch, kwargs, extra, ckpt)
        warn_random_init(arch)
        return model.eval(), ckpt
    model = _build(arch, kwargs, extra, ckpt)
    if ckpt is not None:
        load_into(model, ckpt)
        if kwargs["pool"] == "simpool" and gamma is UNSET:
            warn_default_gamma(ckpt, getattr(model, "gamma", None))
        if options.arch is None and ckpt.arch_source == "keys" and model.variant != "dino" and not kwargs["data_overrides"]:
            warn_guessed_arch(ckpt, arch, model.data_config)
        warn_train_eval(ckpt, model.data_config)
    return model.eval(), ckpt  # evaluation: BatchNorm's running statistics, no dropout


def checkpoint_img_size(ckpt: LoadedCheckpoint) -> int | None:
    """The input size a ViT checkpoint's position embeddings were trained at (square grid x patch
    size), or None (not a ViT, or no square grid): the model is built at it unless ``img_size`` is
    given, so that its ``pos_embed`` loads as it is, never resampled (timm builds ``vit_*_384`` at 384)."""
    sd = ckpt.state_dict
    pos, proj = sd.get("pos_embed"), sd.get("patch_embed.proj.weight")
    if ckpt.family != "vit" or pos is None or proj is None or pos.ndim != 3 or proj.ndim != 4:
        return None
    n_prefix = sum(int(sd[k].shape[1]) for k in ("cls_token", "dist_token", "reg_token") if k in sd and sd[k].ndim == 3)
    for n in (int(pos.shape[1]) - n_prefix, int(pos.shape[1])):  # prefix tokens with positions, else without (no_embed_class)
        side = math.isqrt(max(n, 0))
        if n > 0 and side * side == n:
            return side * int(proj.shape[-1])
    return None


def check_model_options(options: ModelOptions) -> None:
    """What ``load_model`` refuses without reading a checkpoint or building a model: weight flags
    that exclude each other, a checkpoint or ``--pretrained-file`` that is not there, a model name
    timm does not know, a model without weights, bad ``--mean``/``--std``/``--crop-pct``/
    ``--interpolation``. Runs call it before they read their data, so that a typo is one error at
    once, not after a scan of the data set."""
    from .checkpoints.safe_load import check_checkpoint_file
    from .models.build import model_family

    if not isinstance(options, ModelOptions):
        raise SimpoolBenchError(
            f"load_model takes ModelOptions, e.g. ModelOptions(checkpoint='model.pth'), not a {type(options).__module__}.{type(options).__qualname__}"
        )
    pretrained = bool(options.pretrained or options.pretrained_file is not None)
    if pretrained and options.checkpoint is not None:
        raise SimpoolBenchError("--checkpoint and --pretrained/--pretrained-file both give weights: use one")
    if options.random_init and (pretrained or options.checkpoint is not None):
        raise SimpoolBenchError(
            "--random-init and --checkpoint/--pretrained/--pretrained-file: give weights or ask for random ones, not both"
        )
    if options.checkpoint is None and options.prefer != "auto":  # it picks an entry of a checkpoint file
        raise SimpoolBenchError(
            f"--prefer {options.prefer}: it chooses the weights inside a --checkpoint file, and this run has none; drop --prefer"
        )
    if options.checkpoint is None and options.format is not None:  # it forces the reader of a checkpoint file
        raise SimpoolBenchError(
            f"--format {options.format!r}: it forces the format of a --checkpoint file, and this run has none; drop --format"
        )
    for name, flag in (("pool", "--pool"), ("variant", "--variant"), ("pos_interp", "ModelOptions.pos_interp")):
        if getattr(options, name) == "":  # read as not given: '' ran as the default (pos_interp '' as 'dino')
            raise SimpoolBenchError(f"{flag} '': expected a name, or None for the checkpoint's or the default")
    if options.checkpoint is not None:
        check_checkpoint_file(options.checkpoint)
    elif options.arch is None:
        raise SimpoolBenchError(NO_ARCH)
    if options.pretrained_file is not None and not Path(options.pretrained_file).is_file():
        raise SimpoolBenchError(f"--pretrained-file {options.pretrained_file}: no such file")
    if options.arch is not None:
        model_family(options.arch)  # an unknown name: one error naming it
        check_weights(options, options.arch)
    data_overrides(options)


#: A model run with neither --model nor a checkpoint that names its architecture.
NO_ARCH = "no architecture: give --model (e.g. vit_small_patch16_224) or a --checkpoint that names one"


def _build(arch: str, kwargs: dict[str, Any], extra: dict[str, Any], ckpt: LoadedCheckpoint | None) -> BenchModel:
    """``build_model``; timm's rejection of the model arguments a checkpoint gave (its
    ``args.model_kwargs``) is one error naming the file, the arguments and timm's reason."""
    from .models import build_model
    from .models.build import TimmArgumentsError

    try:
        return build_model(arch, **kwargs, **extra)
    except TimmArgumentsError as e:
        from_file = {k: v for k, v in extra.items() if k in e.kwargs or k == "img_size"}  # not e.g. simpool_eps
        if ckpt is None or not from_file:
            raise
        raise SimpoolBenchError(f"{ckpt.path}: args.model_kwargs {from_file} rejected by timm {e.arch}: {e.reason}") from None


def check_weights(options: ModelOptions, arch: str) -> None:
    """A model with no weights runs only with ``random_init``; without it, an error naming the
    model and the three ways out."""
    if options.checkpoint is not None or options.pretrained or options.pretrained_file is not None or options.random_init:
        return
    raise SimpoolBenchError(
        f"--model {arch} has no weights: give --checkpoint FILE, --pretrained (timm's weights; "
        "or --pretrained-file FILE), or --random-init to run it with random weights on purpose"
    )


def _warn(message: str) -> None:
    """One ``warning:`` line on stderr (rank 0 only), whole at any width."""
    from .console import err_console
    from .engine import dist_rank

    if dist_rank() == 0:
        err_console.print(f"warning: {message}", highlight=False, markup=False, soft_wrap=True)


def warn_default_gamma(ckpt: LoadedCheckpoint, used: float | None) -> None:
    """A SimPool checkpoint that records no gamma runs with the paper's default: gamma changes every
    number, and the file cannot say which it had."""
    timm = " (timm's SimPool layer defaults to none)" if ckpt.format == "timm-simpool" else ""
    _warn(
        f"checkpoint {ckpt.path} records no SimPool gamma; it runs with {used if used is not None else 'none'}, "
        f"the paper's default for this family{timm}: pass --gamma to say which it was trained with"
    )


def warn_guessed_arch(ckpt: LoadedCheckpoint, arch: str, data_config: dict[str, Any]) -> None:
    """A supervised checkpoint that names no architecture runs as the timm name its shapes match,
    with that name's preprocessing, which may not be the one it was trained with (a DeiT file is
    shaped as vit_*, whose timm config has other mean, std and crop)."""
    _warn(
        f"checkpoint {ckpt.path} names no architecture; its shapes match {arch}, run with that timm name's preprocessing "
        f"(mean {tuple(data_config['mean'])}, std {tuple(data_config['std'])}, crop_pct {data_config['crop_pct']}): "
        "pass --model (e.g. deit_small_patch16_224), or --mean/--std/--crop-pct, if it was trained otherwise"
    )


TRAIN_EVAL_FLAGS: dict[str, str] = {"crop_pct": "--crop-pct", "interpolation": "--interpolation", "mean": "--mean", "std": "--std"}


def warn_train_eval(ckpt: LoadedCheckpoint, data_config: dict[str, Any]) -> None:
    """A timm ``train.py`` checkpoint whose arguments set a validation preprocessing other than the one
    this run uses (the model's pretrained config at its training size, or the flags):
    the top-1 its training logged came from the file's."""

    def same(a: Any, b: Any) -> bool:
        return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) else a == b

    differ = {k: v for k, v in ckpt.train_eval.items() if k in data_config and not same(v, data_config[k])}
    if not differ:
        return

    def shown(v: Any) -> str:
        return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) and all(isinstance(x, float) for x in v) else str(v)

    theirs = ", ".join(f"{k} {shown(v)}" for k, v in differ.items())
    ours = ", ".join(f"{k} {shown(data_config[k])}" for k in differ)
    flags = " ".join(f"{TRAIN_EVAL_FLAGS[k]} {shown(v)}" for k, v in differ.items() if k in TRAIN_EVAL_FLAGS)
    _warn(
        f"checkpoint {ckpt.path} was validated in train.py with {theirs} (its args); this run uses {ours}, the model's "
        "pretrained config at its training size" + (f": pass {flags} to evaluate as train.py did" if flags else "")
    )


def warn_random_init(arch: str) -> None:
    """A model that runs with random weights (``--random-init``)."""
    _warn(
        f"{arch} runs with random weights (--random-init): its numbers say nothing about a trained model "
        "(recorded as random_init in the provenance)"
    )


#: What ``--mean`` and ``--std`` may be: the mean of pixels read as 0..1 lies in [0, 1]; a std of 1
#: (with mean 0: no normalisation) is the largest in use, and one under 0.001 blows 0..1 pixels up
#: past 1000 (1e-45 gave infinities that looked like NaN weights).
NORMALISE_RANGES: dict[str, tuple[float, float]] = {"mean": (0.0, 1.0), "std": (0.001, 1.0)}


def data_overrides(options: ModelOptions) -> dict[str, Any]:
    """The data-config entries the user set (``--mean``, ``--std``, ``--crop-pct``, ``--interpolation``),
    checked; they win over the model's pretrained config."""
    out: dict[str, Any] = {}
    for name, (low, high) in NORMALISE_RANGES.items():
        v = getattr(options, name)
        if v is None:
            continue
        expected = f"expected 3 numbers (R,G,B), each in [{low:g}, {high:g}]"
        try:
            v = tuple(float(x) for x in v)
        except (TypeError, ValueError):  # ('a', 'b', 'c'), (None, ...): a ValueError from float()
            raise SimpoolBenchError(f"--{name} {v!r}: {expected}") from None
        if len(v) not in (1, 3) or not all(low <= x <= high for x in v):  # NaN fails too
            given = ",".join(map(str, v))
            if len(v) in (1, 3) and all(math.isfinite(x) and x > 1 and low <= x / 255 <= high for x in v) and max(v) >= 10:  # 0..255 values
                scaled = ",".join(f"{x / 255:.6g}" for x in v)
                raise SimpoolBenchError(
                    f"--{name} {given}: {expected}: pixels are read as 0..1 (ToTensor), so 0..255 values are "
                    f"255 times too large: {scaled} is their 0..1 equivalent"
                )
            raise SimpoolBenchError(f"--{name} {given}: {expected} (pixels are read as 0..1, ToTensor)")
        out[name] = v * 3 if len(v) == 1 else v
    if options.crop_pct is not None:
        if not 0.0 < float(options.crop_pct) <= 1.0:
            raise SimpoolBenchError(f"--crop-pct {options.crop_pct}: expected a fraction in (0, 1]")
        out["crop_pct"] = float(options.crop_pct)
    if options.interpolation is not None:
        if options.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise SimpoolBenchError(f"--interpolation {options.interpolation!r}: expected bilinear, bicubic or nearest")
        out["interpolation"] = options.interpolation
    return out


def describe_data_config(cfg: dict[str, Any]) -> str:
    """One provenance string of a data config: mean, std, crop_pct, interpolation, input size."""

    def nums(v: Any) -> str:
        return ",".join(f"{float(x):g}" for x in v)

    size = cfg.get("input_size", (3, 0, 0))
    return (
        f"mean={nums(cfg.get('mean', ()))} std={nums(cfg.get('std', ()))} crop_pct={float(cfg.get('crop_pct', 0)):g} "
        f"interpolation={cfg.get('interpolation', '')} input={size[-2]}x{size[-1]}"
    )
