"""``load_checkpoint``: read a file safely, detect its format, run that format's reader, map the
weights to our layout and reconcile what the file says with what its keys show; ``load_into`` and
``inspect_checkpoint`` on top."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import SimpoolBenchError
from ..files import sha256_file
from .formats import READERS, FileFacts, _detect, _is_tensor_mapping, _tensor_dict
from .keys import (
    CLASSIFIER_WEIGHT,
    DINO_BACKBONE_PREFIX,
    DINO_HEAD_NAMES,
    TIMM_SIMPOOL_NORM_EPS,
    _beta_key,
    convnext_fb_to_timm,
    family_of_arch,
    family_of_keys,
    infer_arch,
    infer_pool,
    is_dino_backbone,
    rename_timm_simpool,
    split_dino_backbone,
)
from .loaded import FORMATS, PREFER_CHOICES, LoadedCheckpoint
from .safe_load import _is_safetensors, _read_safetensors, _torch_load, check_checkpoint_file


def _read_file(p: Path, format: str | None, trust: bool) -> tuple[Any, dict[str, str] | None]:
    """The file's content (safetensors or a safe unpickle) and the safetensors metadata (else None)."""
    if format == "safetensors" or (format is None and _is_safetensors(p)):
        return _read_safetensors(p)
    return _torch_load(p, trust), None


def _unknown_format(p: Path, obj: Any) -> SimpoolBenchError:
    if isinstance(obj, Mapping) and not obj:
        return SimpoolBenchError(f"checkpoint {p}: holds an empty dict, expected a state dict (parameter names and tensors)")
    if isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values()):
        _tensor_dict(obj, p, "the file")  # a state dict with other entries: raises, naming the first of them
    what = f"a dict with entries {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    return SimpoolBenchError(
        f"checkpoint {p}: not a checkpoint format this tool knows: it holds {what} (expected a state dict, a timm "
        f"train.py checkpoint with 'state_dict', or a DINO checkpoint with 'teacher'/'student')"
    )


def _split_backbone(facts: FileFacts) -> None:
    """A state dict under ``backbone.``: DINO's teacher/student saved on its own (DINO's head beside
    it, or a bare DINO backbone inside) is read as variant ``dino``; any other (a classifier model
    saved as some wrapper's ``backbone``) keeps the variant its keys give, and ``head.*`` keys beside
    it that are not DINO's head are dropped with a note naming them (they are not read)."""
    sd = facts.sd
    dino_head = any(k.startswith(DINO_HEAD_NAMES) for k in sd)
    beside = [k for k in sd if not k.startswith(DINO_BACKBONE_PREFIX) and not k.startswith(DINO_HEAD_NAMES)]
    facts.sd = split_dino_backbone(sd, facts.rules)
    if dino_head or (not beside and is_dino_backbone(facts.sd)):
        facts.variant, facts.variant_known = "dino", True
        return
    if beside:
        shown = ", ".join(beside[:4]) + (f", ... ({len(beside)} in all)" if len(beside) > 4 else "")
        facts.notes.append(f"{shown} beside backbone.*: not DINO's head (head.mlp, head.last_layer), and not read (only the backbone is)")
    facts.notes.append(
        "backbone.* without DINO's head beside it: read as the model its keys give, not as DINO (--variant dino reads it so)"
    )


def _to_our_layout(facts: FileFacts, fmt: str, forced: bool, p: Path) -> tuple[str, str | None]:
    """Map ``facts.sd`` to our layout (DINO backbone split, ConvNeXt names, timm SimPool names) and
    settle the variant from the SimPool prefix where the file did not state it; returns the format
    (a plain state dict with timm SimPool names is ``timm-simpool``) and the family of the keys."""
    rules = facts.rules
    if fmt != "official-dino" and any(k.startswith(DINO_BACKBONE_PREFIX) for k in facts.sd):
        _split_backbone(facts)
    try:
        facts.sd = convnext_fb_to_timm(facts.sd, rules)
    except SimpoolBenchError as e:
        raise SimpoolBenchError(f"checkpoint {p}: {e}") from None
    family = family_of_keys(facts.sd)
    if not facts.variant_known:  # the SimPool prefix tells the layout: simpool.* is DINO, the others supervised
        if any(k.startswith("simpool.") for k in facts.sd):
            facts.variant, facts.variant_known = "dino", True
        elif any(k.startswith(("gp.pool.", "global_pool.pool.", "head.global_pool.pool.")) for k in facts.sd):
            facts.variant, facts.variant_known = "supervised", True
    try:
        facts.sd, renamed = rename_timm_simpool(facts.sd, family, facts.variant, rules)
    except SimpoolBenchError as e:
        raise SimpoolBenchError(f"checkpoint {p}: {e}") from None
    if renamed:
        facts.model_kwargs["simpool_eps"] = TIMM_SIMPOOL_NORM_EPS
        facts.notes.append(
            f"timm SimPool1d/2d normalises with LayerNorm eps {TIMM_SIMPOOL_NORM_EPS:g} (used) and takes the minimum "
            "per channel: use --min-scope channel to reproduce its outputs"
        )
        if fmt == "state-dict" and not forced:
            fmt = "timm-simpool"
    elif fmt == "timm-simpool":
        raise SimpoolBenchError(f"checkpoint {p}: --format timm-simpool but no SimPool1d/2d keys (*.norm, *.q, *.k) found")
    return fmt, family


def _reconcile(facts: FileFacts, fmt: str, family: str | None) -> tuple[str | None, int | None, bool]:
    """Settle pooling, gamma and architecture between the file's settings and its keys (the keys
    win; each disagreement is a note); returns (pool, num_classes, has_beta)."""
    sd, notes = facts.sd, facts.notes
    pool = infer_pool(sd)
    if facts.pool is not None and pool is not None and facts.pool != pool:
        notes.append(f"the file's settings say pool {facts.pool} but its keys hold {pool}; the keys win")
    if pool is None:
        pool = facts.pool
    if pool != "simpool":
        facts.gamma, facts.gamma_known = None, True
    beta = _beta_key(sd)
    if beta is not None and facts.gamma_known and facts.gamma is None:
        # sp.py adds beta only with a gamma: the official no-gamma forward never reads it (DINO's
        # eval scripts load non-strictly and leave it out), so neither do we
        del sd[beta]
        facts.rules.append(f"dropped {beta} (the file's settings say no gamma; sp.py adds beta only with a gamma)")
        beta = None
    key_arch = infer_arch(sd)
    if facts.arch is None and key_arch is not None:
        facts.arch, facts.arch_source = key_arch, "keys"
    elif facts.arch is not None and key_arch is not None and facts.arch.split(".")[0] != key_arch:
        notes.append(f"the file names {facts.arch} ({facts.arch_source}) but its shapes match {key_arch}")
    if facts.arch is not None and family is not None and family_of_arch(facts.arch) not in (None, family):
        notes.append(f"the file names {facts.arch} ({facts.arch_source}) but its keys are a {family} layout")
    num_classes = None
    if family is not None and CLASSIFIER_WEIGHT[family] in sd and sd[CLASSIFIER_WEIGHT[family]].ndim:
        num_classes = int(sd[CLASSIFIER_WEIGHT[family]].shape[0])
    if fmt == "official-dino" and pool == "simpool" and family == "vit":
        notes.append("official DINO SimPool ViT: its npatch=tokens-1 position interpolation is reproduced by default (dino_pos_quirk)")
    return pool, num_classes, beta is not None


def load_checkpoint(path: str | Path, format: str | None = None, trust: bool = False, prefer: str = "auto") -> LoadedCheckpoint:
    """Read a checkpoint, detect its format (``format`` forces one of :data:`FORMATS`) and map its
    weights to our layout.

    ``prefer``: ``'auto'`` (EMA weights and the DINO teacher when present), ``'ema'``, ``'raw'``
    (``state_dict``), ``'teacher'`` or ``'student'``. ``trust=True`` allows full unpickling (only
    for files you trust); otherwise only :data:`SAFE_GLOBALS` may be unpickled.
    """
    if format is not None and format not in FORMATS:
        raise SimpoolBenchError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if prefer not in PREFER_CHOICES:
        raise SimpoolBenchError(f"--prefer {prefer!r}: expected one of {', '.join(PREFER_CHOICES)}")
    p = check_checkpoint_file(path)
    sha = sha256_file(p)
    obj, meta = _read_file(p, format, trust)
    fmt = format or _detect(obj, meta)
    is_container = isinstance(obj, Mapping) and meta is None and not _is_tensor_mapping(obj)
    container_keys = [str(k) for k in obj] if is_container else []
    if not fmt:
        raise _unknown_format(p, obj)
    facts = FileFacts(notes=["loaded with trust=True (full unpickling)"] if trust else [])
    epoch = obj.get("epoch") if isinstance(obj, Mapping) and isinstance(obj.get("epoch"), int) else None
    READERS[fmt](obj, meta, p, prefer, facts)
    fmt, family = _to_our_layout(facts, fmt, format is not None, p)
    pool, num_classes, has_beta = _reconcile(facts, fmt, family)
    return LoadedCheckpoint(
        path=p,
        sha256=sha,
        format=fmt,
        variant=facts.variant,
        state_dict=facts.sd,
        arch=facts.arch,
        pool=pool,
        gamma=facts.gamma,
        gamma_known=facts.gamma_known,
        has_beta=has_beta,
        num_classes=num_classes,
        key_mapping=facts.rules,
        notes=facts.notes,
        container_keys=container_keys,
        source=facts.source,
        arch_source=facts.arch_source,
        variant_known=facts.variant_known,
        epoch=epoch,
        model_kwargs=facts.model_kwargs,
        train_eval=facts.train_eval,
    )


def _short_list(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def load_into(model: torch.nn.Module, ckpt: LoadedCheckpoint) -> None:
    """Load ``ckpt``'s weights into ``model`` strictly (as torch does, a missing BatchNorm
    ``num_batches_tracked`` is allowed); any mismatch is ONE error listing missing and unexpected
    keys and shape mismatches, with the detected format (a class-count mismatch is named as such)."""
    expected = model.state_dict()
    sd = ckpt.state_dict
    # BatchNorm's num_batches_tracked (torch >= 0.4.1) may be absent: torch's strict load accepts that,
    # as for files saved before it existed, and the module keeps its own counter; it plays no part in evaluation
    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    shapes = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        model.load_state_dict(sd, strict=True)
        return
    fam = ckpt.family or family_of_arch(str(getattr(model, "arch", "") or ""))
    what = f"{ckpt.path} ({ckpt.format}{', ' + ckpt.arch if ckpt.arch else ''})"
    model_name = getattr(model, "arch", None) or type(model).__name__
    head_w = CLASSIFIER_WEIGHT.get(fam or "", "")
    head_keys = {head_w, head_w[: -len("weight")] + "bias"} if head_w else set()
    problems = set(missing) | set(unexpected) | set(shapes)
    file_w, model_w = (sd.get(head_w), expected.get(head_w)) if head_w else (None, None)
    n_file = int(file_w.shape[0]) if file_w is not None and file_w.ndim else 0
    n_model = int(model_w.shape[0]) if model_w is not None and model_w.ndim else 0
    # a class-count mismatch: the heads differ in their number of rows only (or one side has none),
    # not e.g. a head of another width, transposed or a scalar (listed as shape mismatches below)
    same_inputs = file_w is None or model_w is None or (file_w.ndim == model_w.ndim and file_w.shape[1:] == model_w.shape[1:])
    if head_keys and problems and problems <= head_keys and n_file != n_model and same_inputs:
        if n_file and getattr(model, "variant", None) == "dino":  # a DINO feature model: --num-classes does not apply
            raise SimpoolBenchError(
                f"{what}: class-count mismatch: the checkpoint has {n_file} classes, the model {model_name} is a dino "
                f"(feature) model, built without a classifier whatever --num-classes says; drop --variant dino "
                f"to load the classifier"
            )
        raise SimpoolBenchError(
            f"{what}: class-count mismatch: the checkpoint has {n_file or 'no'} classes"
            f"{'' if n_file else ' (no classifier head)'}, the model {model_name} was built with "
            f"{f'{n_model} classes' if n_model else 'no classifier head'}; pass --num-classes {n_file}"
        )
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys [{_short_list(missing)}]")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys [{_short_list(unexpected)}]")
    if shapes:
        parts.append(
            f"{len(shapes)} shape mismatches "
            f"[{_short_list([f'{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}' for k in shapes], 4)}]"
        )
    raise SimpoolBenchError(f"{what} does not fit the model {model_name}: " + "; ".join(parts))


# ------------------------------------------------------------------------------------------ inspect
def inspect_checkpoint(path: str | Path, trust: bool = False, format: str | None = None, prefer: str = "auto") -> dict[str, Any]:
    """What ``simpool-bench inspect`` prints: format, variant, arch, pool, gamma, beta, classes,
    parameter count, NaN/inf weights (count and tensors), the key mapping applied and the container's entries."""
    from ..finite import describe_nonfinite, nonfinite_tensors

    c = load_checkpoint(path, format=format, trust=trust, prefer=prefer)
    return {
        "path": str(c.path),
        "sha256": c.sha256,
        "format": c.format,
        "variant": c.variant,
        "arch": c.arch,
        "arch_source": c.arch_source,
        "pool": c.pool,
        "gamma": c.gamma,
        "gamma_known": c.gamma_known,
        "beta": c.has_beta,
        "num_classes": c.num_classes,
        "n_params": c.n_params,
        "n_tensors": len(c.state_dict),
        "non_finite": describe_nonfinite(nonfinite_tensors(c.state_dict)),
        "weights": c.source,
        "epoch": c.epoch,
        "key_mapping": list(c.key_mapping),
        "container_keys": list(c.container_keys),
        "notes": list(c.notes),
    }
