"""One reader per checkpoint format: each takes what the file holds (weights, variant, architecture,
pooling, gamma, extra model arguments) into a :class:`FileFacts`; ``load.load_checkpoint`` then maps
the weights to our layout and reconciles the facts with the keys. See the package docstring for
the formats."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import SimpoolBenchError
from ..models import VARIANTS, build_model
from .keys import family_of_keys, find_timm_simpool_prefixes, is_dino_backbone, split_dino_backbone, strip_wrappers

# timm train.py --gp values / DINO --mode values -> our pool names.
SUPERVISED_GP_TO_POOL: dict[str, str] = {"simpool": "simpool", "avg": "gap", "token": "cls", "map": "map"}
DINO_MODE_TO_POOL: dict[str, str] = {"simpool": "simpool"}  # 'official': cls for ViT, gap for CNNs
POOL_ALIASES: dict[str, str] = {"simpool": "simpool", "cls": "cls", "token": "cls", "gap": "gap", "avg": "gap", "map": "map"}
# Arguments build_model decides itself (never taken from a file's args.model_kwargs); img_size is
# the exception: a model trained at another input size needs it to rebuild its position embeddings.
_BUILD_OWN_ARGS: frozenset[str] = (frozenset(inspect.signature(build_model).parameters) - {"img_size"}) | {
    "pretrained",
    "num_classes",
    "global_pool",
    "class_token",
    "fc_norm",
}


def _dino_arch(args: Any, p: Path) -> str | None:
    """timm name for DINO ``args.arch`` (+ ``args.patch_size`` for ViTs): vit_small -> vit_small_patch16_224."""
    arch = str(getattr(args, "arch", "") or "").replace("deit", "vit")
    if re.fullmatch(r"vit_(tiny|small|base|large)", arch):
        patch = getattr(args, "patch_size", 16)
        try:
            size = int(patch)
        except (TypeError, ValueError):
            size = None
        if size is None or isinstance(patch, bool) or (isinstance(patch, float) and patch != size):
            raise SimpoolBenchError(f"checkpoint {p} args: patch_size {patch!r} is not an integer (main_dino.py's --patch_size, e.g. 16)")
        return f"{arch}_patch{size}_224"
    return arch or None


def _is_timm_name(name: str) -> bool:
    """A timm model name (a pretrained tag allowed), not e.g. a class name such as ``resnet``."""
    from timm.models import is_model, split_model_name_tag

    return is_model(split_model_name_tag(name)[0])


def _as_gamma(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    try:
        g = float(value)
    except (TypeError, ValueError):
        raise SimpoolBenchError(f"{what}: gamma {value!r} is not a number or 'none'") from None
    if not g > 0 or math.isinf(g):
        raise SimpoolBenchError(f"{what}: gamma {value!r} must be a positive number or 'none'")
    return g


def _tensor_dict(sd: Any, path: Path, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise SimpoolBenchError(f"checkpoint {path}: {where} is a {type(sd).__name__}, expected a state dict")
    key = next((k for k in sd if not isinstance(k, str)), None)
    if key is not None:
        raise SimpoolBenchError(f"checkpoint {path}: {where} key {key!r} is a {type(key).__name__}, expected a string (a parameter name)")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        k = bad[0]
        raise SimpoolBenchError(
            f"checkpoint {path}: {where} entry {k!r} is a {type(sd[k]).__name__}, expected a tensor"
            + (f" ({len(bad)} such entries)" if len(bad) > 1 else "")
        )
    if not sd:
        raise SimpoolBenchError(f"checkpoint {path}: {where} is empty")
    odd = [k for k, v in sd.items() if v.is_meta or v.is_quantized or v.layout != torch.strided]
    if odd:  # torch's load_state_dict fails on them with a multi-line RuntimeError; a meta tensor holds no values
        k, v = odd[0], sd[odd[0]]
        kind = "on the meta device (no values)" if v.is_meta else f"quantized ({v.dtype})" if v.is_quantized else f"sparse ({v.layout})"
        raise SimpoolBenchError(
            f"checkpoint {path}: {where} entry {k!r} is a tensor {kind}, expected a dense tensor of values"
            + (f" ({len(odd)} such entries)" if len(odd) > 1 else "")
        )
    return dict(sd)


def _is_tensor_mapping(obj: Any, names: bool = True) -> bool:
    """A non-empty mapping of tensors, with string keys unless ``names`` is False."""
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) and (isinstance(k, str) or not names) for k, v in obj.items())
    )


def _detect(obj: Any, meta: dict[str, str] | None) -> str:
    if meta is not None:
        return "safetensors"
    if isinstance(obj, Mapping):
        if "teacher" in obj or "student" in obj:
            return "official-dino"
        if ("state_dict" in obj or "state_dict_ema" in obj) and any(k in obj for k in ("args", "arch", "version")):
            return "official-supervised"
        if _is_tensor_mapping(obj) and find_timm_simpool_prefixes(obj):
            return "timm-simpool"
        if _is_tensor_mapping(obj) and is_dino_backbone(obj):
            return "dino-backbone"
        if _is_tensor_mapping(obj, names=False) or any(k in obj for k in ("state_dict", "state_dict_ema", "model", "model_ema")):
            return "state-dict"
    return ""


def _none_entry(path: Path, keys: list[str]) -> SimpoolBenchError:
    """The error of weight entries that are there but None (``{'state_dict': None}``)."""
    names = " and ".join(map(repr, keys))
    return SimpoolBenchError(f"checkpoint {path}: {names} {'is' if len(keys) == 1 else 'are'} None; expected a dict of tensors")


def _pick(obj: Mapping[str, Any], options: tuple[str, ...], prefer_key: str | None, path: Path, rules: list[str], why: str) -> str:
    """Choose the container entry holding the weights: ``prefer_key`` if given, else the first present
    (an entry that is there but None is named as such when no other entry holds weights)."""
    if prefer_key is not None:
        if prefer_key in obj and obj[prefer_key] is None:
            raise _none_entry(path, [prefer_key])
        if prefer_key not in obj:
            raise SimpoolBenchError(
                f"checkpoint {path}: asked for {prefer_key!r} weights but the file has none (entries: {', '.join(map(str, obj))})"
            )
        rules.append(f"{prefer_key} used (asked for)")
        return prefer_key
    for k in options:
        if obj.get(k) is not None:
            rules.append(f"{k} used{why if k == options[0] else ''}")
            return k
    present = [k for k in options if k in obj]  # there, but None
    if present:
        raise _none_entry(path, present)
    raise SimpoolBenchError(f"checkpoint {path}: none of {', '.join(options)} found (entries: {', '.join(map(str, obj))})")


@dataclass
class FileFacts:
    """What a format's reader takes from a file; ``rules`` (key mapping) and ``notes`` in order."""

    rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sd: dict[str, torch.Tensor] = field(default_factory=dict)
    variant: str = "supervised"
    variant_known: bool = False
    source: str = ""
    arch: str | None = None
    arch_source: str = ""
    pool: str | None = None
    gamma: float | None = None
    gamma_known: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_eval: dict[str, Any] = field(default_factory=dict)


def _train_eval_config(args: Any) -> dict[str, Any]:
    """The preprocessing timm ``train.py`` validated with, as its ``resolve_data_config(vars(args))``
    takes it from the arguments: ``input_size`` (else ``img_size``), ``interpolation`` (when not
    empty), ``mean``, ``std``, ``crop_pct`` (when not None). Values of another type, and numbers that
    are not finite (NaN, inf: no preprocessing, and flags no run takes), are left out."""
    out: dict[str, Any] = {}
    try:
        size, img = getattr(args, "input_size", None), getattr(args, "img_size", None)
        if size is not None and len(size) == 3:
            out["input_size"] = tuple(int(v) for v in size)
        elif img is not None:
            out["input_size"] = (3, int(img), int(img))
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        pass
    if isinstance(getattr(args, "interpolation", None), str) and args.interpolation:
        out["interpolation"] = args.interpolation
    for name in ("mean", "std"):
        try:
            value = getattr(args, name, None)
            if value is not None and len(value) == 3:
                out[name] = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            pass
    try:
        if getattr(args, "crop_pct", None) is not None:
            out["crop_pct"] = float(args.crop_pct)
    except (TypeError, ValueError):
        pass
    finite = {k: v for k, v in out.items() if k == "interpolation" or all(map(math.isfinite, v if isinstance(v, tuple) else (v,)))}
    return finite


def _file_gamma(facts: FileFacts, args: Any, p: Path) -> None:
    if hasattr(args, "gamma"):
        facts.gamma, facts.gamma_known = _as_gamma(args.gamma, f"checkpoint {p} args"), True


# The entries of a state-dict container each ``--prefer`` takes, in timm ``load_state_dict``'s order
# (``use_ema=True``: EMA weights first).
_CONTAINER_ENTRIES: dict[str, tuple[str, ...]] = {
    "auto": ("state_dict_ema", "model_ema", "state_dict", "model"),
    "ema": ("state_dict_ema", "model_ema"),
    "raw": ("state_dict", "model"),
}


def _one_set_of_weights(p: Path, prefer: str, what: str) -> None:
    """``--prefer`` other than auto on a file that holds one set of weights: an error, not ignored."""
    if prefer != "auto":
        raise SimpoolBenchError(f"checkpoint {p}: --prefer {prefer}: the file is {what} (one set of weights); drop --prefer")


def read_official_dino(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts) -> None:
    """DINO ``main_dino.py``: the teacher (or student) backbone; arch, mode and gamma from ``args``."""
    if not isinstance(obj, Mapping) or not ("teacher" in obj or "student" in obj):
        raise SimpoolBenchError(f"checkpoint {p}: --format official-dino expects a dict with 'teacher' or 'student' weights")
    if prefer in ("ema", "raw"):
        raise SimpoolBenchError(
            f"checkpoint {p}: --prefer {prefer} applies to timm train.py checkpoints; this DINO file has teacher/student"
        )
    rules = facts.rules
    facts.source = _pick(obj, ("teacher", "student"), None if prefer == "auto" else prefer, p, rules, " (DINO default)")
    sd = strip_wrappers(_tensor_dict(obj[facts.source], p, facts.source), rules)
    facts.sd = split_dino_backbone(sd, rules)
    facts.variant, facts.variant_known = "dino", True
    args = obj.get("args")
    if args is not None:
        facts.arch, facts.arch_source = _dino_arch(args, p), "args.arch"
        mode = getattr(args, "mode", None)
        if mode is not None:
            facts.pool = DINO_MODE_TO_POOL.get(str(mode))
        _file_gamma(facts, args, p)


def read_official_supervised(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts) -> None:
    """timm ``train.py``: EMA weights when present; arch, ``--gp``, gamma and model kwargs from ``args``."""
    if not isinstance(obj, Mapping) or not ("state_dict" in obj or "state_dict_ema" in obj):
        raise SimpoolBenchError(f"checkpoint {p}: --format official-supervised expects a dict with 'state_dict' (timm train.py)")
    if prefer in ("teacher", "student"):
        raise SimpoolBenchError(f"checkpoint {p}: --prefer {prefer} applies to DINO checkpoints; this timm file has state_dict")
    rules = facts.rules
    key = {"ema": "state_dict_ema", "raw": "state_dict"}.get(prefer)
    facts.source = _pick(obj, ("state_dict_ema", "state_dict"), key, p, rules, " (EMA weights, as timm does)")
    if facts.source == "state_dict" and prefer == "auto":
        rules[-1] = "state_dict used (no state_dict_ema in the file)"
    facts.sd = strip_wrappers(_tensor_dict(obj[facts.source], p, facts.source), rules)
    facts.variant, facts.variant_known = "supervised", True
    args = obj.get("args")
    if args is not None and getattr(args, "model", None):
        facts.arch, facts.arch_source = str(args.model), "args.model"
    elif isinstance(obj.get("arch"), str) and _is_timm_name(obj["arch"]):
        facts.arch, facts.arch_source = obj["arch"], "arch"
    elif isinstance(obj.get("arch"), str):
        facts.notes.append(
            f"its 'arch' entry {obj['arch']!r} is not a timm model name (timm's CheckpointSaver records the model's class "
            "name when it has no args): the architecture comes from the keys or --model"
        )
    if args is None:
        return
    gp = getattr(args, "gp", None)
    facts.pool = SUPERVISED_GP_TO_POOL.get(str(gp)) if gp is not None else None
    _file_gamma(facts, args, p)
    facts.train_eval = _train_eval_config(args)
    if facts.train_eval:
        shown = ", ".join(f"{k} {v}" for k, v in facts.train_eval.items())
        facts.notes.append(f"train.py validated it with {shown} (args); runs use the model's pretrained config unless flags say otherwise")
    extra = getattr(args, "model_kwargs", None)
    if isinstance(extra, Mapping) and extra:
        key = next((k for k in extra if not isinstance(k, str)), None)
        if key is not None:  # timm's create_model(**args.model_kwargs) fails on it too, with a TypeError
            raise SimpoolBenchError(
                f"checkpoint {p}: args.model_kwargs key {key!r} is a {type(key).__name__}, expected a string (a timm argument name)"
            )
        facts.model_kwargs = {k: v for k, v in extra.items() if k not in _BUILD_OWN_ARGS}
        dropped = sorted(set(extra) - set(facts.model_kwargs))
        facts.notes.append(
            f"args.model_kwargs passed to the model: {sorted(facts.model_kwargs)}"
            + (f"; ignored (set by the tool): {dropped}" if dropped else "")
        )


def read_safetensors(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts) -> None:
    """A ``.safetensors`` file: arch, pool, gamma and variant from its metadata when it names them."""
    _one_set_of_weights(p, prefer, "a safetensors file")
    facts.sd = strip_wrappers(_tensor_dict(obj, p, "the safetensors file"), facts.rules)
    m = meta or {}
    if m.get("arch"):
        facts.arch, facts.arch_source = m["arch"], "metadata"
    if m.get("pool"):
        facts.pool = POOL_ALIASES.get(m["pool"].lower())
    if "gamma" in m:
        facts.gamma, facts.gamma_known = _as_gamma(m["gamma"], f"checkpoint {p} metadata"), True
    if m.get("variant") in VARIANTS:
        facts.variant, facts.variant_known = m["variant"], True


def read_dino_backbone(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts) -> None:
    """A bare DINO backbone as DINO publishes it: variant ``dino``, no classifier."""
    if not _is_tensor_mapping(obj) or not is_dino_backbone(obj):
        raise SimpoolBenchError(
            f"checkpoint {p}: --format dino-backbone expects a bare DINO backbone state dict (ViT: cls_token, "
            f"pos_embed, patch_embed, blocks, norm and no head; or a ResNet without fc)"
        )
    _one_set_of_weights(p, prefer, "a bare DINO backbone")
    facts.sd = strip_wrappers(_tensor_dict(obj, p, "the file"), facts.rules)
    facts.variant, facts.variant_known = "dino", True
    facts.notes.append(
        "DINO backbone (no classifier): variant dino, ImageNet mean/std"
        + ("; position interpolation and attention as DINO's vision_transformer.py" if family_of_keys(facts.sd) == "vit" else "")
        + "; --format state-dict reads it as timm weights"
    )


def read_state_dict(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts, fmt: str = "state-dict") -> None:
    """A bare state dict, or one wrapped in ``state_dict_ema``/``model_ema``/``state_dict``/``model``
    (EMA weights first, as timm's ``load_state_dict`` takes them; ``prefer`` ``ema``/``raw`` picks)."""
    if not isinstance(obj, Mapping):
        raise SimpoolBenchError(f"checkpoint {p}: --format {fmt} expects a state dict, found a {type(obj).__name__}")
    if _is_tensor_mapping(obj):
        _one_set_of_weights(p, prefer, "a bare state dict")
        sd_raw: Any = obj
    else:
        if prefer in ("teacher", "student"):
            raise SimpoolBenchError(
                f"checkpoint {p}: --prefer {prefer} applies to DINO checkpoints; this file has no teacher/student "
                f"(entries: {', '.join(map(str, obj))})"
            )
        wrappers = _CONTAINER_ENTRIES[prefer]
        facts.source = next((k for k in wrappers if isinstance(obj.get(k), Mapping)), "")
        nones = [k for k in wrappers if k in obj and obj[k] is None]
        if not facts.source and nones:
            raise _none_entry(p, nones)
        if not facts.source and prefer != "auto":
            raise SimpoolBenchError(
                f"checkpoint {p}: asked for {prefer} weights ({' or '.join(wrappers)}) but the file has none "
                f"(entries: {', '.join(map(str, obj))})"
            )
        if not facts.source:
            _tensor_dict(obj, p, "the file")  # raises, naming the first non-tensor entry
        sd_raw = obj[facts.source]
        why = " (asked for)" if prefer != "auto" else " (EMA weights, as timm does)" if facts.source.endswith("_ema") else ""
        facts.rules.append(f"{facts.source} used{why}")
    facts.sd = strip_wrappers(_tensor_dict(sd_raw, p, facts.source or "the file"), facts.rules)


def read_timm_simpool(obj: Any, meta: dict[str, str] | None, p: Path, prefer: str, facts: FileFacts) -> None:
    """A state dict with timm ``SimPool1d/2d`` names (renamed afterwards, as for any state dict)."""
    read_state_dict(obj, meta, p, prefer, facts, fmt="timm-simpool")


Reader = Callable[[Any, "dict[str, str] | None", Path, str, FileFacts], None]
READERS: dict[str, Reader] = {
    "official-dino": read_official_dino,
    "official-supervised": read_official_supervised,
    "safetensors": read_safetensors,
    "dino-backbone": read_dino_backbone,
    "state-dict": read_state_dict,
    "timm-simpool": read_timm_simpool,
}
"""The reader of each format of :data:`loaded.FORMATS`."""
